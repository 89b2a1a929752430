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

struct amqp_link;

/*
 * Connect to cfg->amqp.url; NULL with err.  For occasional callers
 * (digestctl, the queue sampler) that never pump the connection between
 * calls: it negotiates no AMQP heartbeat and uses TCP keepalive instead.
 */
struct amqp_link *amqp_link_open(const struct config *, char *err, size_t errlen);
void amqp_link_close(struct amqp_link *);

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

/*
 * Walk the dead letters: for each, cb gets the body, the reason header and
 * the original queue; with requeue, each matching one (job_id, or all when
 * NULL) is published back to its queue and removed from digest.dlq.
 * Returns the number handled, or -1.
 */
typedef void (*jobq_amqp_dlq_cb)(void *arg, const char *body, size_t len,
    const char *reason, const char *queue);
int jobq_amqp_dlq_walk(struct amqp_link *, int requeue, const char *job_id,
    jobq_amqp_dlq_cb cb, void *arg, char *err, size_t errlen);

#endif
