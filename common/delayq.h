/*
 * The delayed set of a queue: digest:delayed:{queue} on the queue Redis, a
 * sorted set of jobs waiting for a time, the job's JSON as member and the
 * unix time it is due as score.  A job whose only recipients left were
 * deferred by the mail server (4xx: greylisting, throttling) waits here,
 * holding no worker, until its next retry is due; then a worker of its
 * pool moves it back to its queue.  Both queue backends keep their
 * waiting jobs here: the set survives restarts of digestd (and of Redis,
 * with persistence), and its TTL is refreshed at every add.
 *
 * The member is the job's JSON (job_encode_json), the same for every wait
 * of one job, so that a job deferred twice waits once.
 */
#ifndef DIGESTD_DELAYQ_H
#define DIGESTD_DELAYQ_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "job.h"

#define DELAYQ_TTL_S (14 * 86400)	/* refreshed at every add */
#define DELAYQ_BATCH 16			/* jobs moved per call, at most */

/* One due job, as read from the set. */
struct delayq_item {
	struct job job;
	int decoded;		/* 0: the member is not a job; drop it */
	char *member;		/* the member as stored, malloc'd */
	size_t memberlen;
	char score[48];		/* the score as Redis wrote it */
};

/* digest:delayed:{queue} with the key prefix; 0, or -1 if too long. */
int delayq_key(char *buf, size_t len, const struct config *,
    const char *queue);

/*
 * The member that stands for j: its JSON, malloc'd (NULL on OOM).  It
 * omits nothing the job needs to run again.
 */
char *delayq_member(const struct job *j);

/* Add j to queue's set, due at unix time due.  0, or -1 with err. */
int delayq_add(redisContext *, const struct config *, const char *queue,
    const struct job *j, double due, char *err, size_t errlen);

/*
 * Read up to max jobs of queue due at or before now, oldest due first,
 * into items (the caller frees them with delayq_items_clear).  Returns how
 * many, or -1 with err.
 */
int delayq_due(redisContext *, const struct config *, const char *queue,
    double now, struct delayq_item *items, int max, char *err,
    size_t errlen);

/*
 * Take it for ourselves until the unix time until, if its score is still
 * the one read (else another worker moved it): 1 taken, 0 not, -1 error.
 * Used where the move back cannot be done in one script (amqp backend):
 * a worker that dies after taking it only delays it by the lease.
 */
int delayq_take(redisContext *, const struct config *, const char *queue,
    struct delayq_item *it, double until, char *err, size_t errlen);

/* Remove it if its score is still it->score: 1 removed, 0 not, -1 error. */
int delayq_remove(redisContext *, const struct config *, const char *queue,
    const struct delayq_item *it, char *err, size_t errlen);

/* Jobs waiting in queue's set and the earliest due time (0 if none). */
int delayq_stats(redisContext *, const struct config *, const char *queue,
    int64_t *n, double *next_due, char *err, size_t errlen);

void delayq_items_clear(struct delayq_item *items, int n);

#endif
