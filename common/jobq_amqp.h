/*
 * Jobs on the AMQP backend (SPEC 4), shared by the worker's source and
 * digestctl: a durable queue digest.{queue} per queue, persistent JSON
 * messages (content_type application/json), and dead letters through the
 * exchange digest.dlx to the durable queue digest.dlq, with the reason in
 * a header.
 *
 * One struct amqp_link is one connection and one channel, kept open by
 * its owner for as long as it lives.
 */
#ifndef DIGESTD_JOBQ_AMQP_H
#define DIGESTD_JOBQ_AMQP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "job.h"

/*
 * The largest job body taken: a job is a few hundred bytes of JSON, and a
 * worker must never hold in memory what a publisher could make as large
 * as the broker allows (128 MB by default).  A larger body is
 * dead-lettered unread.
 */
#define JOBQ_AMQP_BODY_MAX	65536

struct amqp_link;

/* Declare digest.dlx, digest.dlq and digest.{queue} (idempotent).  0 / -1. */
int jobq_amqp_declare(struct amqp_link *, const char *queue, char *err,
    size_t errlen);

/*
 * Publish j to digest.{queue} as a persistent JSON message, waiting for
 * the broker's confirm.  Idempotence (digest:enq) stays in Redis: the
 * caller checks the marker first.  0 / -1.
 */
int jobq_amqp_enqueue(struct amqp_link *, const char *queue, const struct job *,
    char *err, size_t errlen);

struct jobq_amqp_stats {
	int64_t depth;		/* ready messages */
	int64_t pending;	/* consumers' unacknowledged: -1 if unknown */
};

/* Message counts of digest.{queue} (passive declare).  0 / -1. */
int jobq_amqp_stats(struct amqp_link *, const char *queue,
    struct jobq_amqp_stats *, char *err, size_t errlen);
/* Messages in digest.dlq; -1 on error. */
int64_t jobq_amqp_dlq_len(struct amqp_link *, char *err, size_t errlen);

/* One dead letter, as the walk hands it to its callback. */
struct jobq_amqp_letter {
	const char *body;	/* NULL: too large, never read */
	size_t len;		/* the body's size */
	const char *job_id;	/* from the body or message_id; "" unknown */
	const char *reason;	/* "" unknown */
	const char *queue;	/* the queue it came from; "" unknown */
	int requeued;		/* requeue: put back on its queue */
};

/*
 * Walk the dead letters: cb gets each one (listing), or with requeue each
 * matching one (job_id, or all when NULL), which is published back to its
 * queue and removed from digest.dlq when it can be: a letter too large to
 * be a job, or naming no queue, stays (requeued 0).  Returns the number
 * listed or requeued, or -1.
 */
typedef void (*jobq_amqp_dlq_cb)(void *arg, const struct jobq_amqp_letter *);
int jobq_amqp_dlq_walk(struct amqp_link *, int requeue, const char *job_id,
    jobq_amqp_dlq_cb cb, void *arg, char *err, size_t errlen);

/* The reason shown for a body over JOBQ_AMQP_BODY_MAX. */
void jobq_amqp_too_large(char *buf, size_t len, size_t size);

#endif
