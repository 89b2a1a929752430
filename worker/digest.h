/*
 * One job in a worker: read the group and its window's posts, walk the
 * members from the checkpoint in batches, render and hand each eligible
 * member's email to the transport, and advance the checkpoint.
 */
#ifndef DIGESTD_DIGEST_H
#define DIGESTD_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "job.h"
#include "scoreboard.h"

struct transport;
struct transport_ops;

/* The job's checkpoint, digest:job:{job_id} (SPEC 3). */
struct checkpoint {
	int64_t cursor;		/* last user id done; member_min - 1 at first */
	int64_t sent;
	int64_t skipped;
	int attempts;		/* this delivery included */
	/*
	 * The recipients parked for a 4xx ("uid:tries,..."), as digest_run
	 * last wanted them in the `deferred` field.  While deferred_dirty,
	 * checkpoint_save writes them too, so that a worker saving its
	 * progress after an outage also records who was sent meanwhile.
	 */
	char deferred[4864];
	int deferred_dirty;
	int outage;		/* set by digest_run: the attempt ended because a
				   server (SMTP, broker, Redis) was unreachable
				   or deferring everyone, not because of the job */
	char last_error[128];	/* why the previous attempt ended, if known */
};

/* What a worker keeps across jobs. */
struct digest_ctx {
	const struct config *cfg;
	struct sb_slot *slot;		/* metrics cells, cursor, cmd */
	redisContext *data;		/* the activity store, [redis] */
	redisContext *queue;		/* digest:* keys: [queue_redis] or == data */
	const struct transport_ops *tp_ops;
	struct transport *tp;
	/*
	 * Called at least once a second while the job runs: heartbeat and
	 * the source's keepalive.  Returns -1 if the job must stop (the
	 * queue connection is gone).
	 */
	int (*tick)(void *arg);
	void *tick_arg;
	void *priv;			/* digest.c's own per-worker state */
};

enum digest_result {
	DIGEST_DONE,		/* every member done: ack */
	DIGEST_RETRY,		/* transient failure: give back, retry later */
	DIGEST_STOPPED,		/* told to drain: checkpointed, give back */
};

/*
 * Run job from cp->cursor.  On return the checkpoint in Redis is up to
 * date; reason says why when the result is not DIGEST_DONE.
 */
enum digest_result digest_run(struct digest_ctx *, const struct job *,
    struct checkpoint *cp, char *reason, size_t reasonlen);

/* Free digest.c's per-worker state. */
void digest_ctx_clear(struct digest_ctx *);

/*
 * Checkpoints (checkpoint.c), on ctx->queue.
 *
 * checkpoint_start counts this delivery as an attempt (HINCRBY), marks the
 * job running, refreshes the 7-day TTL and loads cursor, sent, skipped and
 * the last error.  A job already `done` returns 1 (ack it and move on).
 * Returns 0, 1, or -1 on a Redis error.
 */
int checkpoint_start(redisContext *q, const struct config *, const struct job *,
    struct checkpoint *cp);
/* Save cursor, sent, skipped; 0 or -1. */
int checkpoint_save(redisContext *q, const struct config *, const struct job *,
    const struct checkpoint *cp);
/* Set state (done, dead) and last_error; 0 or -1. */
int checkpoint_finish(redisContext *q, const struct config *,
    const struct job *, const char *state, const char *reason);
/*
 * Take back the attempt counted by checkpoint_start: the delivery ended in
 * a clean give-back that says nothing about the job (a drain, or an outage
 * during which the job made no progress).  0 / -1.
 */
int checkpoint_refund(redisContext *q, const struct config *,
    const struct job *);
/* Record why an attempt ended (set by whoever requeues a dead worker's job). */
int checkpoint_note_error(redisContext *q, const struct config *,
    const char *job_id, const char *reason);
/*
 * After a checkpoint call failed: 1 when the failure says nothing about
 * the job (the connection was lost, or the server refused for an outage:
 * loading, busy, out of memory, read-only), 0 when the reply was about
 * the data (WRONGTYPE on the checkpoint, an unexpected reply).
 */
int checkpoint_failed_outage(const redisContext *q);

#endif
