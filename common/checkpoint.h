/*
 * A job's checkpoint: the hash digest:job:{job_id} on the queue Redis,
 * which this module alone builds, reads and expires (7 days, refreshed at
 * every write).  Its fields:
 *
 *   state         running, waiting, done, dead, cancelled (an operator
 *                 cancelled its run: finished, as done is)
 *   cursor        the last member done (a user id), cursor_score its score
 *   sent, skipped counts of this job so far
 *   attempts      deliveries of the job, each counted when it starts
 *   last_error    why the previous attempt ended
 *   due_at        while waiting: when the job is retried (unix time)
 *   deferred      how many recipients wait for a retry, each in a field
 *                 d:{uid} = "first_ms:next_ms:tries" (their first 4xx, the
 *                 time of their next try, their 4xx answers so far)
 *   updated_at    unix time of the last write
 *   holder        while running: the worker whose attempt it is (its
 *                 consumer name, host:supervisor pid:pool#slot.gen),
 *                 written as the attempt starts, cleared as it ends
 *                 (finished, waiting, given back) or, for a worker that
 *                 died, by its supervisor once it has saved the cursor
 *                 from the worker's slot
 *
 * Progress is written as it happens without waiting for Redis to answer
 * (checkpoint_progress appends to the connection and sends it at once);
 * the replies are read back at the end of each flush (checkpoint_sync),
 * so that a whole instance lost re-sends at most the message in flight per
 * job, for one write and no round trip per message.  Every other call
 * reads what is pending first.
 *
 * A queue that redelivers (AMQP) hands the job of a worker that died to
 * another worker at once, maybe before the dead worker's supervisor has
 * saved its cursor (Redis was away): a worker that finds the job running
 * under another holder waits, bounded, for the holder to be cleared
 * before it loads the checkpoint (docs/design.md#jobs).
 */
#ifndef DIGESTD_CHECKPOINT_H
#define DIGESTD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "cursor.h"
#include "feedback.h"
#include "job.h"

#define CHECKPOINT_TTL_S (7 * 86400)

/* A recipient the server deferred (4xx), waiting for its next try. */
struct parked {
	int64_t uid;
	int64_t first_ms;	/* unix ms of its first 4xx */
	int64_t next_ms;	/* unix ms its next try is due */
	int tries;		/* 4xx answers so far */
};

/* Parked recipients Redis could not take yet, kept for the next save. */
#define CP_UNSAVED_MAX 16

/*
 * A recipient given up whose record (digest:rejected, and the suppression
 * of its address) Redis could not take yet: written before the cursor by
 * the next checkpoint_save.
 */
struct cp_reject {
	int64_t uid;
	int permanent;
	char email[FEEDBACK_EMAIL_MAX + 1];
	char reply[160];
};
#define CP_REJECTS_MAX 16

struct checkpoint {
	struct cursor cursor;	/* the last member done; unset at first */
	int64_t sent;
	int64_t skipped;
	int attempts;		/* this delivery included */
	int outage;		/* set by digest_run: the attempt ended because a
				   server (SMTP, broker, Redis) was unreachable
				   or refusing for reasons of its own, not
				   because of the job */
	int64_t due_ms;		/* DIGEST_WAIT: when the job is due again */
	char last_error[128];	/* why the previous attempt ended, if known */
	int pending;		/* replies not read back yet */
	/*
	 * Recipients deferred while Redis was away: the cursor may be past
	 * them, so they are written with it by the next checkpoint_save,
	 * before or together with the cursor.  parked is their total count.
	 */
	struct parked unsaved[CP_UNSAVED_MAX];
	int nunsaved;
	size_t parked;
	/*
	 * Set by checkpoint_start when the checkpoint says no recipient
	 * waits for a retry (`deferred` absent or 0): the parked list need
	 * not be read.
	 */
	int none_parked;
	/* Likewise the records of recipients given up meanwhile. */
	struct cp_reject rejects[CP_REJECTS_MAX];
	int nrejects;
};

/*
 * Count this delivery as an attempt (HINCRBY), mark the job running with
 * holder as its holder, refresh the TTL and load cursor, counts and the
 * last error.  A job already done, or cancelled, returns 1 (acknowledge
 * it and move on).  0, 1, or -1 on a Redis error.
 */
int checkpoint_start(redisContext *q, const struct config *, const struct job *,
    const char *holder, struct checkpoint *cp);

/*
 * The holder of a job running (copied into holder): 1 when there is one,
 * 0 when the job is not running or nobody holds it, -1 on error.
 */
int checkpoint_holder(redisContext *q, const struct config *,
    const struct job *, char *holder, size_t len);

/*
 * An attempt ends without finishing or waiting (given back): clear the
 * holder if it is still holder.  0 or -1.
 */
int checkpoint_release(redisContext *q, const struct config *,
    const struct job *, const char *holder);

/*
 * Save cursor and counts, with the parked recipients and the records of
 * rejects not saved yet (before the cursor), and read back what was
 * pending.  0 or -1.
 */
int checkpoint_save(redisContext *q, const struct config *, const struct job *,
    struct checkpoint *cp);

/*
 * Send cursor and counts without waiting for the reply (it is read by the
 * next checkpoint_sync).  0, or -1 when the connection failed.
 */
int checkpoint_progress(redisContext *q, const struct config *,
    const struct job *, struct checkpoint *cp);

/* Read back every pending reply.  0, or -1 if a write failed. */
int checkpoint_sync(redisContext *q, struct checkpoint *cp);

/*
 * Record p (new or updated) in the parked recipients, or remove uid from
 * them (checkpoint_unpark), with the new count; sent at once, read back at
 * the next checkpoint_sync.  0 or -1.
 */
int checkpoint_park(redisContext *q, const struct config *, const struct job *,
    struct checkpoint *cp, const struct parked *p, size_t count);
int checkpoint_unpark(redisContext *q, const struct config *,
    const struct job *, struct checkpoint *cp, int64_t uid, size_t count);

/*
 * Load the parked recipients into a malloc'd array (*out, *n; NULL and 0
 * when there are none).  0 or -1.
 */
int checkpoint_parked_load(redisContext *q, const struct config *,
    const struct job *, struct parked **out, size_t *n);

/* The job waits for cp->due_ms, because of why.  0 or -1. */
int checkpoint_wait(redisContext *q, const struct config *, const struct job *,
    struct checkpoint *cp, const char *why);

/* Set state (done, dead) and last_error; 0 or -1. */
int checkpoint_finish(redisContext *q, const struct config *,
    const struct job *, const char *state, const char *reason);

/*
 * Take back the attempt counted by checkpoint_start: the delivery ended in
 * a clean give-back that says nothing about the job (a drain, an outage,
 * or a wait for deferred recipients).  0 / -1.
 */
int checkpoint_refund(redisContext *q, const struct config *,
    const struct job *);

/* Record why an attempt ended.  0 / -1. */
int checkpoint_note_error(redisContext *q, const struct config *,
    const char *job_id, const char *reason);

/*
 * An operator put the dead job back (digestctl dlq requeue): a fresh
 * count of attempts, no state.  0, or -1 with err.
 */
int checkpoint_reset(redisContext *q, const struct config *,
    const char *job_id, char *err, size_t errlen);

/*
 * An operator enqueues the job again by force (digestctl enqueue --force):
 * a finished checkpoint (done, dead, cancelled) is removed, so that the
 * job runs again from its first member; a running or waiting one is
 * kept (the job resumes from it).  1
 * removed, 0 kept or none, -1 with err.
 */
int checkpoint_forget(redisContext *q, const struct config *,
    const char *job_id, char *err, size_t errlen);

/*
 * After a checkpoint call failed: 1 when the failure says nothing about
 * the job (the connection was lost, or the server refused for an outage:
 * loading, busy, out of memory, read-only), 0 when the reply was about
 * the data (WRONGTYPE on the checkpoint, an unexpected reply).
 */
int checkpoint_failed_outage(const redisContext *q);

/*
 * Move job_id's cursor forward to c if set (never back, never creating
 * the checkpoint): the supervisor saves where a dead worker had got to,
 * from its slot, and with holder (the dead worker's; NULL: none) clears
 * the holder if it is still that worker, in the same step.  1 if moved,
 * 0 if not, -1 on error.
 */
int checkpoint_save_cursor(redisContext *q, const struct config *,
    const char *job_id, const struct cursor *c, const char *holder,
    char *err, size_t errlen);

#endif
