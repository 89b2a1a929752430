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

#include "checkpoint.h"
#include "config.h"
#include "job.h"
#include "scoreboard.h"

struct transport;
struct transport_ops;

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
	/*
	 * Called between two batches of the walk, once the checkpoint is
	 * saved and the queue connection has nothing pending (tick_arg too):
	 * returns 1 to stop the job there (DIGEST_STOPPED), as an operator's
	 * pause or cancel asks.  May be NULL.
	 */
	int (*batch_end)(void *arg);
	void *tick_arg;
	void *priv;			/* digest.c's own per-worker state */
};

enum digest_result {
	DIGEST_DONE,		/* every member done: ack */
	DIGEST_RETRY,		/* transient failure: give back, retry later */
	DIGEST_STOPPED,		/* told to drain, or stopped by batch_end:
				   checkpointed, give back */
	DIGEST_WAIT,		/* only deferred recipients are left: the job
				   waits in its queue's delayed set until
				   cp->due_ms, holding no worker */
};

/*
 * Run job from cp->cursor.  On return the checkpoint in Redis is up to
 * date; reason says why when the result is not DIGEST_DONE.
 */
enum digest_result digest_run(struct digest_ctx *, const struct job *,
    struct checkpoint *cp, char *reason, size_t reasonlen);

/* Free digest.c's per-worker state. */
void digest_ctx_clear(struct digest_ctx *);

#endif
