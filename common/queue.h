/*
 * The job queue, behind one struct of operations per backend, in the
 * manner of OpenSMTPD's table backends: Redis Streams (queue_redis.c,
 * queue_redis_admin.c) and AMQP (queue_amqp.c, queue_amqp_admin.c).  The
 * backend is picked once by name (queue_backend_lookup, or
 * queue_backend_for the configuration's queue.backend); everything else
 * calls through the struct and never asks which backend it has.
 *
 * Two sides:
 *
 *   consumer       a worker's own connection to its queue (struct
 *                  queue_consumer): fetch one job at a time, then ack it,
 *                  give it back, defer it to the delayed set or
 *                  dead-letter it, keeping its lease while it runs;
 *   administration digestctl's and the sampler's view of every queue
 *                  (struct queue_admin): enqueue, counts, the dead letters,
 *                  the operator's controls (purge, the waiting jobs of a
 *                  cancelled run); and the supervisor's part when a
 *                  worker dies holding a job (orphaned, then
 *                  give_back_consumer in its requeue child).
 *
 * The operator's controls that are the same whatever carries the jobs
 * live in the queue Redis, in queue_control.c: a queue's pause
 * (digest:paused:{queue}), a cancelled run (digest:cancel:{period}:{end}),
 * and the worker's look at both (queue_control_poll).  Each is a function
 * that prints nothing, for digestctl and the web console alike.
 *
 * Both backends keep in the queue Redis what digestd owns beside the jobs:
 * the enqueue markers (digest:enq:{id}, here), the checkpoints
 * (checkpoint.h), the delayed sets (delayq.h).  Every call blocks.
 */
#ifndef DIGESTD_QUEUE_H
#define DIGESTD_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "cursor.h"
#include "job.h"
#include "scoreboard.h"

#define QUEUE_CONSUMER_MAX 160
/* An enqueue marker's first life, a claim, before its job is in. */
#define QUEUE_CLAIM_TTL_S 300

/* The server a failed call failed on, for the error counters. */
enum queue_server {
	QUEUE_SERVER_REDIS,	/* the queue Redis */
	QUEUE_SERVER_BROKER,	/* RabbitMQ */
};

/*
 * A delivered job, held until the worker acks it, gives it back, defers
 * or dead-letters it.  The backend keeps whatever it needs to do so (the
 * raw fields of a job that did not decode, the delivery tag) in raw.
 */
struct queue_msg {
	struct job job;			/* valid when decoded */
	int decoded;			/* 0: malformed; err says why */
	char err[256];
	char entry[SB_ENTRY_MAX];	/* stream id, or the delivery tag */
	void *raw;			/* the backend's */
};

/* A worker's connection to its queue; the worker fills the first five. */
struct queue_consumer {
	const struct queue_backend *qb;
	const struct config *cfg;
	const char *queue;		/* the pool's queue name */
	char name[QUEUE_CONSUMER_MAX];	/* queue_consumer_name's */
	/*
	 * The worker's connection to the queue Redis (NULL while it has
	 * none), where the AMQP backend counts the deliveries of a message.
	 */
	redisContext *const *qredis;
	/* After a call that failed: the server it failed on. */
	enum queue_server failed_on;
	void *priv;			/* the backend's */
};

/* digestctl's or the sampler's view of the queues; queue_admin_init. */
struct queue_admin {
	const struct queue_backend *qb;
	const struct config *cfg;
	/*
	 * The queue Redis, the caller's connection, which it may replace
	 * between calls (NULL while it has none: the calls that need it
	 * then fail).
	 */
	redisContext *qr;
	void *priv;			/* the backend's: a broker connection */
};

struct queue_stats {
	int64_t depth;			/* never delivered */
	int64_t pending;		/* delivered, not acked; -1: unknown */
	double oldest_enqueued;		/* the oldest job's; 0: none, unknown */
};

/*
 * One dead letter, as dlq_walk hands it to its callback.  The strings
 * belong to the walk and live for the call; each is NULL when the letter
 * does not say.  They came from whoever wrote the letter: print them
 * made safe.
 */
struct queue_letter {
	/*
	 * Its own id in the dead letters: the entry id (Redis), or the job
	 * id, the message's own where the body is not a job (AMQP).
	 */
	const char *id;
	const char *job_id;
	const char *queue;		/* the queue it came from */
	const char *reason;
	const char *attempts;
	const char *failed_at;		/* unix time, as written */
	/* Requeueing: back on its queue, with a fresh count of attempts. */
	int requeued;
	/* Requeueing: why it stays in the dead letters, as a sentence; NULL. */
	const char *kept;
	/* Requeued, but its checkpoint could not be reset: why; NULL. */
	const char *error;
	/* Deleting: gone from the dead letters. */
	int deleted;
	/*
	 * Everything the letter holds, for `dlq show`: its fields (Redis),
	 * or its headers as fields and its body (AMQP; NULL when the body
	 * was too large to read).
	 */
	size_t nfields;
	const char *const *names;
	const char *const *values;
	const char *body;
	size_t bodylen;
};

/* What dlq_walk does with each dead letter it matches. */
enum queue_dlq_op {
	QUEUE_DLQ_LIST,			/* hand it to the callback */
	QUEUE_DLQ_REQUEUE,		/* back on its queue, when it can go */
	QUEUE_DLQ_DELETE,		/* gone for good */
};

typedef void (*queue_letter_cb)(void *arg, const struct queue_letter *);
/* A job a control removed from its queue. */
typedef void (*queue_job_cb)(void *arg, const struct job *);

/* A worker that died, as its slot told the supervisor. */
struct queue_orphan {
	char queue[SB_NAME_MAX];
	char consumer[QUEUE_CONSUMER_MAX];	/* the dead worker's */
	char reason[32];		/* why its attempt ended: crash... */
	int clean;			/* it exited 0 */
	/*
	 * Its job in hand: 1 job and cursor hold it, 0 none, -1 unknown
	 * (the worker died writing it in its slot).
	 */
	int has_job;
	struct job job;
	struct cursor cursor;		/* the last member it had done */
};

/* What the supervisor's requeue child does for a dead worker. */
enum queue_orphan_plan {
	QUEUE_ORPHAN_NONE,		/* nothing */
	QUEUE_ORPHAN_CURSOR,		/* save its job's cursor */
	QUEUE_ORPHAN_GIVE_BACK,		/* that, then give_back_consumer */
};

struct queue_backend {
	const char *name;		/* queue.backend: "redis", "amqp" */

	/*
	 * 1 when a job in hand goes back to its queue by itself as soon as
	 * its worker's connection closes (AMQP: the broker redelivers what
	 * was not acknowledged), possibly to another worker before Redis has
	 * the progress of the first.  So a worker whose queue Redis went away
	 * during a job holds the job until Redis takes its progress, a job it
	 * lost with its connection is not given back again, and a worker
	 * starting a job resumes after the furthest of its checkpoint and the
	 * cursor a dead worker left in the shared segment (orphaned).  0 when
	 * a delivered job stays with its worker until given back, or
	 * reclaimed past queue.visibility_timeout (Redis).
	 */
	int redelivers;
	/*
	 * What a dead letter is.  0: a record of the job's fields with an id
	 * of its own, the reason, attempts, time of failure and queue
	 * (Redis); dlq_walk requeues it as a job, and one that does not
	 * decode is an error.  1: the job's message as it was, with the
	 * reason and queue beside it (AMQP); dlq_walk publishes it back as
	 * it is, and one that cannot go back (too large to be a job, naming
	 * no queue) is reported and kept.  `digestctl dlq` shows and counts
	 * them accordingly.
	 */
	int dlq_opaque;

	/* The consumer side, in a worker. */

	/*
	 * Connect and declare (idempotently): the stream and its group, or
	 * the AMQP queues.  0, or -1 with err; the worker retries with
	 * backoff and stays "starting" meanwhile.  Called again after any
	 * failure, on the same consumer: it drops what it held first.
	 */
	int (*open)(struct queue_consumer *, char *err, size_t errlen);
	/*
	 * Wait up to timeout_ms for one job.  1: *m holds it (release it
	 * with msg_clear); 0: none came; -1: the connection failed (err says
	 * why; call open again).
	 */
	int (*fetch)(struct queue_consumer *, struct queue_msg *m,
	    int timeout_ms, char *err, size_t errlen);
	/* The job is done: acknowledge it.  0 or -1. */
	int (*ack)(struct queue_consumer *, struct queue_msg *);
	/*
	 * Give the job back to the tail of its queue, to run again from its
	 * checkpoint (reason is for the log).  0, also when the job was no
	 * longer ours to give (another instance holds it now), or -1: it
	 * stays with us, pending.
	 */
	int (*give_back)(struct queue_consumer *, struct queue_msg *,
	    const char *reason);
	/*
	 * Move the job to its queue's delayed set (delayq.h), due at the
	 * unix time due: only recipients the server deferred are left, and
	 * the job waits for their retry holding no worker.  q is the queue
	 * Redis.  0, or -1 (then give it back instead).
	 */
	int (*defer)(struct queue_consumer *, struct queue_msg *,
	    redisContext *q, double due);
	/*
	 * Move the jobs of the delayed set that are due back to the queue;
	 * called by an idle worker about once a second.  Returns how many,
	 * or -1 with err.
	 */
	int (*promote)(struct queue_consumer *, redisContext *q, char *err,
	    size_t errlen);
	/* Move the job to the dead letters, with reason and attempts. 0/-1. */
	int (*dead_letter)(struct queue_consumer *, struct queue_msg *,
	    const char *reason, int attempts);
	/*
	 * Called often while a job runs (at least once a second): keep the
	 * job's lease fresh (XCLAIM JUSTID) and the connection alive (AMQP
	 * heartbeats).  0, -1 on error, or 1 when the job is no longer ours
	 * (another instance reclaimed it): the worker then stops working on
	 * it, and neither acks, gives back nor dead-letters it.
	 */
	int (*keepalive)(struct queue_consumer *, struct queue_msg *);
	/* Release what the message holds (not the message itself). */
	void (*msg_clear)(struct queue_consumer *, struct queue_msg *);
	/* Disconnect and free the backend's state; open may follow. */
	void (*close)(struct queue_consumer *);

	/* The administration side: digestctl and the sampler. */

	/*
	 * Enqueue jobs[0..n) on queue, each unless its enqueue marker exists
	 * (force: whatever the marker says), creating the queue if need be.
	 * added[i] tells whether jobs[i] was added.  Returns how many were,
	 * or -1 with err (added[] then still tells which ones were).
	 */
	int (*enqueue)(struct queue_admin *, const char *queue,
	    const struct job *jobs, size_t n, int force, int *added,
	    char *err, size_t errlen);
	/* Depth, pending and oldest job of a queue (none: zeroes).  0 / -1. */
	int (*stats)(struct queue_admin *, const char *queue,
	    struct queue_stats *, char *err, size_t errlen);
	/* The number of dead letters, or -1 with err. */
	int64_t (*dlq_len)(struct queue_admin *, char *err, size_t errlen);
	/*
	 * Walk the dead letters, oldest first, and hand cb each one whose
	 * id or job id is id (every one when NULL) after doing op to it:
	 * listing, requeueing (back on its queue when it can, with a fresh
	 * count of attempts in its checkpoint, and out of the dead letters;
	 * one that cannot go is kept and said so, see dlq_opaque), or
	 * deleting.  0, or -1 with err: then the walk stopped there.
	 */
	int (*dlq_walk)(struct queue_admin *, enum queue_dlq_op op,
	    const char *id, queue_letter_cb cb, void *arg, char *err,
	    size_t errlen);
	/*
	 * Remove every job waiting in queue (not those delivered to a
	 * worker).  Returns how many, or -1 with err.
	 */
	int64_t (*purge)(struct queue_admin *, const char *queue, char *err,
	    size_t errlen);
	/*
	 * Remove the jobs waiting in queue that belong to the run of period
	 * ending at window_end, handing cb each one removed.  Returns how
	 * many, or -1 with err (those handed to cb are gone all the same).
	 */
	int64_t (*remove_run)(struct queue_admin *, const char *queue,
	    const char *period, int64_t window_end, queue_job_cb cb,
	    void *arg, char *err, size_t errlen);
	/*
	 * Drop what a queue no longer needs to keep (Redis: acknowledged
	 * entries older than two weekly periods; `digestctl schedule` calls
	 * it each run).  0 / -1.
	 */
	int (*trim)(struct queue_admin *, const char *queue, char *err,
	    size_t errlen);
	/* Free the handle's backend state (its broker connection). */
	void (*admin_clear)(struct queue_admin *);

	/* A dead worker: the supervisor, then its requeue child. */

	/*
	 * A worker died holding what o says.  Called in the supervisor's
	 * event loop, so it never blocks: it may publish in the shared
	 * segment what this instance's workers need at once, and says what
	 * the requeue child is to do for it.
	 */
	enum queue_orphan_plan (*orphaned)(struct scoreboard *,
	    const struct queue_orphan *);
	/*
	 * In the requeue child, once the dead worker's cursor is saved: put
	 * back on queue everything still pending under consumer, recording
	 * reason in each job's checkpoint (one that does not decode is
	 * dead-lettered), and forget the consumer.  c is the queue Redis.
	 * Returns the number put back, or -1 with err; a partial run is
	 * safe to repeat.
	 */
	int (*give_back_consumer)(redisContext *c, const struct config *,
	    const char *queue, const char *consumer, const char *reason,
	    char *err, size_t errlen);
};

extern const struct queue_backend queue_redis_backend;
extern const struct queue_backend queue_amqp_backend;

/* The backend called name, or NULL. */
const struct queue_backend *queue_backend_lookup(const char *name);
/* The backend of cfg's queue.backend. */
const struct queue_backend *queue_backend_for(const struct config *);

/* Ready an administration handle on cfg's backend; qr is the queue Redis. */
void queue_admin_init(struct queue_admin *, const struct config *,
    redisContext *qr);
/* Free what the handle holds; a zeroed or cleared handle is fine. */
void queue_admin_clear(struct queue_admin *);

/*
 * The consumer name of one worker incarnation,
 * host:supervisor-pid:pool#pos.gen.  The generation makes it unique, so
 * that the supervisor can put back everything a dead worker had pending,
 * even a job delivered an instant before it died, without touching what
 * its replacement takes.
 */
void queue_consumer_name(char *buf, size_t len, int supervisor_pid,
    const char *pool, int pos, uint64_t gen);

/*
 * The enqueue marker of job_id, digest:enq:{id}, which makes enqueueing
 * idempotent on both backends: set first as a claim (QUEUE_CLAIM_TTL_S,
 * NX unless forced), so that a claim whose job never made it lapses soon,
 * then given queue_enq_ttl once the job is in.  0, or -1 if too long.
 */
int queue_enq_key(char *buf, size_t len, const struct config *,
    const char *job_id);
/* A marker's whole life: two of its job's periods. */
int64_t queue_enq_ttl(const struct job *);

/* The operator's controls kept in the queue Redis (queue_control.c). */

/* A queue's pause as digest:paused:{queue} holds it. */
struct queue_pause {
	int paused;
	char reason[256];
	char by[128];			/* who paused it: user@host */
	double at;			/* unix time */
};

/*
 * Pause queue: no worker of any instance takes a job from it, and a job
 * in hand goes back at its next batch, until queue_resume.  The pause
 * (reason, by) has no TTL: it lasts until lifted.  0, or -1 with err.
 */
int queue_pause(struct queue_admin *, const char *queue, const char *reason,
    const char *by, char *err, size_t errlen);
/* Lift queue's pause: 1 if it was paused, 0 if not, -1 with err. */
int queue_resume(struct queue_admin *, const char *queue, char *err,
    size_t errlen);
/* Read queue's pause into *p (paused 0 when none).  0, or -1 with err. */
int queue_pause_get(struct queue_admin *, const char *queue,
    struct queue_pause *p, char *err, size_t errlen);
/* The same on a bare connection (the sampler's, a worker's).  0 / -1. */
int queue_pause_read(redisContext *, const struct config *, const char *queue,
    struct queue_pause *p, char *err, size_t errlen);

/*
 * Cancel the run of period ending at window_end: a marker that lives as
 * long as the run's enqueue markers, which schedule and enqueue refuse,
 * and which stops a worker in one of its jobs at the next batch.  0, or
 * -1 with err.
 */
int queue_cancel_run(struct queue_admin *, const char *period,
    int64_t window_end, const char *by, char *err, size_t errlen);
/* 1 when the run of period ending at window_end was cancelled, 0, -1. */
int queue_run_cancelled(struct queue_admin *, const char *period,
    int64_t window_end, char *err, size_t errlen);

/*
 * Every job waiting in queue removed: the backend's purge, then the
 * queue's delayed set.  Returns how many, or -1 with err.
 */
int64_t queue_purge(struct queue_admin *, const char *queue, char *err,
    size_t errlen);

/*
 * What a worker looks at before it takes a job, before it starts one and
 * between the batches of one (j, NULL when idle): whether queue is paused
 * and whether j's run was cancelled, in one round trip on q.  0, or -1
 * (the connection or the server failed: neither is known).
 */
int queue_control_poll(redisContext *q, const struct config *,
    const char *queue, const struct job *j, int *paused, int *cancelled);

#endif
