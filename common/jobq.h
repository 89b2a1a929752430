/*
 * Jobs on the Redis Streams backend (SPEC 3 and 4), shared by the worker's
 * source, the supervisor's requeue child, and digestctl:
 *
 *   digest:q:{queue}   a stream per queue, consumer group "digestd"
 *   digest:dlq         the dead-letter stream (capped)
 *   digest:enq:{id}    makes enqueueing idempotent (TTL: two periods)
 *
 * Every key carries the [redis] key_prefix.  All calls are blocking, on a
 * connection to the queue Redis ([queue_redis], or [redis] when absent).
 */
#ifndef DIGESTD_JOBQ_H
#define DIGESTD_JOBQ_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "job.h"

#define JOBQ_GROUP "digestd"
#define JOBQ_DLQ_MAXLEN 100000		/* dead letters kept */
#define JOBQ_TRIM_AGE_S (14 * 86400)	/* two weekly periods */

/* Create the stream and its group from id 0 (MKSTREAM) if missing. 0 / -1. */
int jobq_ensure(redisContext *, const struct config *, const char *queue,
    char *err, size_t errlen);

/*
 * Enqueue j on queue unless its digest:enq marker exists (SET NX with the
 * TTL, then XADD).  Returns 1 if added, 0 if it was there already, -1 on
 * error.  With force, the marker is ignored (dlq requeue).
 */
int jobq_enqueue(redisContext *, const struct config *, const char *queue,
    const struct job *, int force, char *err, size_t errlen);

/*
 * Enqueue jobs[0..n) on queue as jobq_enqueue does, pipelined: one round
 * trip for the markers, one for the entries.  added[i] is set to 1 if
 * jobs[i] was added, else 0.  Returns how many were added, or -1 with err
 * (added[] then still tells which ones were).
 */
int jobq_enqueue_many(redisContext *, const struct config *, const char *queue,
    const struct job *jobs, size_t n, int force, int *added, char *err,
    size_t errlen);

/*
 * Put a delivered job back at the end of its queue (XADD a copy, XACK the
 * old entry), but only while entry is still pending under consumer, in
 * one script: a job another instance reclaimed meanwhile (its owner was cut
 * off past visibility_timeout) stays with whoever holds it now, so it never
 * runs twice.  1 if put back, 0 if no longer ours, -1 on error.
 */
int jobq_requeue_owned(redisContext *, const struct config *, const char *queue,
    const char *entry, const char *consumer, const struct job *,
    char *err, size_t errlen);

/*
 * Keep a delivered job's lease fresh: claim entry to consumer (XCLAIM
 * JUSTID, which resets its idle time), but only while it is still pending
 * under consumer, in one script: an entry another instance reclaimed
 * (this one was cut off past visibility_timeout) stays with its new
 * owner.  1 if still ours, 0 if no longer ours, -1 on error.
 */
int jobq_keepalive_owned(redisContext *, const struct config *,
    const char *queue, const char *entry, const char *consumer,
    char *err, size_t errlen);

/*
 * Move a delivered job to its queue's delayed set (delayq.h), due at the
 * unix time due, and acknowledge its entry, but only while the entry is
 * still pending under consumer, in one script.  1 if moved, 0 if no
 * longer ours, -1 on error.
 */
int jobq_defer_owned(redisContext *, const struct config *, const char *queue,
    const char *entry, const char *consumer, const struct job *, double due,
    char *err, size_t errlen);

/*
 * Move the jobs of queue's delayed set that are due back into the queue
 * (at most DELAYQ_BATCH a call), each in one step.  Returns how many were
 * moved, or -1 with err.
 */
int jobq_promote(redisContext *, const struct config *, const char *queue,
    char *err, size_t errlen);

/*
 * Dead-letter: XADD to digest:dlq the job's fields (or the raw fields of
 * one that did not decode) plus reason, attempts, failed_at, queue; XACK
 * the entry.  names/values/n are the raw fields; j may be NULL.  0 / -1.
 */
int jobq_dead_letter(redisContext *, const struct config *, const char *queue,
    const char *entry, const struct job *j, const char *const *names,
    const char *const *values, size_t n, const char *reason, int attempts,
    char *err, size_t errlen);

/* Trim acknowledged entries older than JOBQ_TRIM_AGE_S (XTRIM MINID). */
int jobq_trim(redisContext *, const struct config *, const char *queue,
    char *err, size_t errlen);

struct jobq_stats {
	int64_t depth;			/* never delivered (lag) */
	int64_t pending;		/* delivered, not acknowledged */
	double oldest_enqueued;		/* enqueued_at of the oldest waiting job; 0 */
};

/* Depth, pending and oldest age of a queue.  0 / -1. */
int jobq_stats(redisContext *, const struct config *, const char *queue,
    struct jobq_stats *, char *err, size_t errlen);
/*
 * The consumer name of one worker incarnation: host:supervisor-pid:pool#pos.gen.
 * The generation makes it unique, so that the supervisor can put back
 * everything a dead worker had pending, even an entry delivered an instant
 * before it died, without touching what its replacement takes.
 */
void jobq_consumer_name(char *buf, size_t len, int supervisor_pid,
    const char *pool, int pos, uint64_t gen);

/*
 * Put back every entry pending under consumer (a dead worker's) and remove
 * the consumer: each is requeued (XADD and XACK, its checkpoint noting
 * reason) or, if it does not decode, dead-lettered.  Returns the number put
 * back, or -1 (err) on a Redis error; a partial run is safe to repeat.
 */
int jobq_requeue_consumer(redisContext *, const struct config *,
    const char *queue, const char *consumer, const char *reason,
    char *err, size_t errlen);

/* Number of dead letters; -1 on error. */
int64_t jobq_dlq_len(redisContext *, const struct config *);

#endif
