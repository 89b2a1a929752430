/*
 * A queue source: where a worker takes its jobs from.  Backends plug in
 * behind struct source_ops (source_redis.c, source_amqp.c), in the manner
 * of OpenSMTPD's table backends.
 *
 * A delivered job is held in a struct source_msg until the worker acks it,
 * gives it back (retry) or dead-letters it; the backend keeps whatever it
 * needs to do so (stream entry id, delivery tag, the raw fields of a job
 * that did not decode) inside the message.
 */
#ifndef DIGESTD_SOURCE_H
#define DIGESTD_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "job.h"
#include "scoreboard.h"

struct source;

struct source_msg {
	struct job job;			/* valid when decoded */
	int decoded;			/* 0: malformed; err says why */
	char err[256];
	char entry[SB_ENTRY_MAX];	/* stream id, or the delivery tag as text */
	uint64_t tag;			/* AMQP delivery tag */
	int redelivered;		/* the broker says it was delivered before */
	void *raw;			/* backend-owned copy of the raw job */
	size_t rawlen;
};

struct source_ops {
	const char *name;
	/*
	 * Connect and declare (idempotently): the stream and its group, or
	 * the AMQP queues.  0, or -1 with err; the worker retries with
	 * backoff and stays "starting" meanwhile.
	 */
	int (*open)(struct source *, char *err, size_t errlen);
	/*
	 * Wait up to timeout_ms for one job.  1: *m holds it; 0: none came;
	 * -1: the connection failed (err says why; call open again).
	 */
	int (*fetch)(struct source *, struct source_msg *m, int timeout_ms,
	    char *err, size_t errlen);
	/* The job is done: acknowledge it.  0 or -1. */
	int (*ack)(struct source *, struct source_msg *);
	/* Give the job back to its queue, to run again (from its checkpoint). */
	int (*retry)(struct source *, struct source_msg *, const char *reason);
	/*
	 * Move the job to its queue's delayed set (delayq.h), due at the
	 * unix time due: only recipients the server deferred are left, and
	 * the job waits for their retry holding no worker.  q is the queue
	 * Redis.  0, or -1 (then give it back instead).
	 */
	int (*defer)(struct source *, struct source_msg *, redisContext *q,
	    double due);
	/*
	 * Move the jobs of the delayed set that are due back to the queue;
	 * called by an idle worker about once a second.  Returns how many,
	 * or -1 with err.
	 */
	int (*promote)(struct source *, redisContext *q, char *err,
	    size_t errlen);
	/* Move the job to the dead letters with reason and attempts. */
	int (*dead_letter)(struct source *, struct source_msg *,
	    const char *reason, int attempts);
	/*
	 * Called often while a job runs (at least once a second): keep the
	 * job's lease fresh (XCLAIM JUSTID) and the connection alive (AMQP
	 * heartbeats).  0, -1 on error, or 1 when the job is no longer ours
	 * (another instance reclaimed it): the worker then stops working on
	 * it, and neither acks, gives back nor dead-letters it.
	 */
	int (*keepalive)(struct source *, struct source_msg *);
	/* Release what the message holds (not the message itself). */
	void (*msg_clear)(struct source *, struct source_msg *);
	void (*close)(struct source *);
};

struct source {
	const struct source_ops *ops;
	const struct config *cfg;
	const char *queue;		/* the pool's queue name */
	char consumer[128];		/* this worker's consumer name */
	/*
	 * The worker's connection to the queue Redis (NULL while it has
	 * none), where the amqp source counts the deliveries of a message.
	 */
	struct redisContext *const *qredis;
	void *priv;			/* backend state */
};

extern const struct source_ops source_redis_ops;
extern const struct source_ops source_amqp_ops;

#endif
