/*
 * Putting a dead worker's job back in its queue at once.  The supervisor
 * knows the job from the worker's slot, but must never block on Redis, so
 * the dead workers are handed to a short-lived child that connects to the
 * queue Redis and does what the queue backend planned for each
 * (queue.h: orphaned), retrying with backoff while Redis is down.  Deaths
 * of the same loop iteration share one child.
 *
 * First the child saves the cursor of the worker's job in hand, for the
 * instance that takes the job next, and in the same step clears the
 * worker's name from the checkpoint's holder, which a worker given the
 * job meanwhile waits for (checkpoint.h).  Then, on a backend whose jobs stay
 * with a consumer (Redis), it puts back everything still pending under
 * the dead worker's consumer (give_back_consumer), which is unique to that
 * worker: the job in its slot, and also one delivered an instant before it
 * died, before it could record it in the slot, and records why its
 * attempt ended.  A job it had acknowledged or given back is no longer
 * pending, so no job ever runs twice because of this.  On a backend that
 * redelivers (AMQP), the broker has put the job back itself: saving the
 * cursor is all.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "backoff.h"
#include "checkpoint.h"
#include "log.h"
#include "proc.h"
#include "queue.h"
#include "rconn.h"
#include "requeue.h"
#include "util.h"

/* How long a child keeps trying while the queue Redis is unreachable. */
#define REQUEUE_GIVE_UP_MS 60000
/* The wait between tries meanwhile; back to the least after each job. */
#define REQUEUE_RETRY_MIN_MS 100
#define REQUEUE_RETRY_MAX_MS 2000
#define REQUEUE_MAX_CHILDREN 16

struct requeue_item {
	struct queue_orphan o;
	enum queue_orphan_plan plan;
};

static struct supervisor *rsup;
static struct requeue_item pending[SB_MAX_SLOTS];
static int npending;
static pid_t children[REQUEUE_MAX_CHILDREN];
static struct event *flush_ev;

static void requeue_run(void *);
static void requeue_exited(pid_t, int, void *);

/*
 * No child outlives the supervisor: what a requeue child could not finish
 * is left pending, and visibility_timeout (another instance, or this one
 * restarted) takes it from there.
 */
static const struct proc_type requeue_proc = {
	.name = "requeue",
	.run = requeue_run,
	.exited = requeue_exited,
};

static void
flush_cb(evutil_socket_t fd, short ev, void *arg)
{
	requeue_flush();
}

void
requeue_init(struct supervisor *s)
{
	rsup = s;
	flush_ev = evtimer_new(s->base, flush_cb, NULL);
	if (flush_ev == NULL)
		fatalx("requeue: evtimer_new");
}

void
requeue_add(const struct queue_orphan *o, enum queue_orphan_plan plan)
{
	struct requeue_item *it;
	struct timeval tv;

	if (npending == SB_MAX_SLOTS)
		requeue_flush();
	if (npending == SB_MAX_SLOTS) {
		log_warnx("requeue backlog full; left to the visibility "
		    "timeout");
		return;
	}
	it = &pending[npending++];
	it->o = *o;
	it->plan = plan;
	/* Batch the deaths of this loop iteration into one child. */
	evtimer_add(flush_ev, tv_ms(&tv, 0));
}

/*
 * Whether a failed call met an outage (no connection, or a reply such as
 * LOADING, READONLY or OOM: worth retrying) rather than the data (a key
 * of the wrong type, a deleted stream: no retry can help).  err reads
 * "what: reply", as the queue backends format it.
 */
static int
requeue_outage(const redisContext *c, const char *err)
{
	const char *p = err;

	if (c == NULL || c->err)
		return 1;
	for (;;) {
		if (rconn_error_is_outage(p))
			return 1;
		if ((p = strstr(p, ": ")) == NULL)
			return 0;
		p += 2;
	}
}

/* The child: requeue every item, retrying while Redis is down. */
static void __attribute__((noreturn))
requeue_child(const struct config *cfg, struct requeue_item *items, int n)
{
	const struct queue_backend *qb = queue_backend_for(cfg);
	const struct queue_orphan *o;
	redisContext *c = NULL;
	char err[512];
	struct backoff bo;
	int64_t start = now_mono_ns(), delay_ms;
	int i = 0, p, moved;

	backoff_reset(&bo);
	while (i < n) {
		if (c == NULL && (c = rconn_connect(&cfg->queue_redis, err,
		    sizeof(err))) == NULL)
			goto retry;
		o = &items[i].o;
		/*
		 * The worker moved its cursor in the slot after each message,
		 * and sent it to Redis, which may not have taken the last of
		 * it: save it first, so that the requeued job resumes after
		 * the last message done.
		 */
		moved = 0;
		if (o->has_job == 1 && (moved = checkpoint_save_cursor(c, cfg,
		    o->job.job_id, &o->cursor, o->consumer, err,
		    sizeof(err))) == -1) {
			if (requeue_outage(c, err))
				goto retry;
			log_warnx("job %s: cursor not saved: %s", o->job.job_id,
			    err);
			moved = 0;
		}
		if (items[i].plan == QUEUE_ORPHAN_CURSOR) {
			if (moved > 0)
				log_info("job %s: cursor %lld saved",
				    o->job.job_id, (long long)o->cursor.uid);
			else
				log_debug("job %s: the checkpoint is at or "
				    "past %lld already", o->job.job_id,
				    (long long)o->cursor.uid);
			i++;
			backoff_reset(&bo);
			continue;
		}
		p = qb->give_back_consumer(c, cfg, o->queue, o->consumer,
		    o->reason, err, sizeof(err));
		if (p == -1 && !requeue_outage(c, err)) {
			/* Not for a retry: the others need not wait for it. */
			log_error("requeue of %s on %s: %s; left to the "
			    "visibility timeout", o->consumer, o->queue, err);
			i++;
			backoff_reset(&bo);
			continue;
		}
		if (p == -1)
			goto retry;
		if (p > 0)
			log_info("%d job(s) of %s requeued on %s (%s)", p,
			    o->consumer, o->queue, o->reason);
		else if (o->has_job == 1)
			log_info("job %s: already acknowledged or given back",
			    o->job.job_id);
		i++;
		backoff_reset(&bo);
		continue;
retry:
		if (c != NULL) {
			redisFree(c);
			c = NULL;
		}
		if ((now_mono_ns() - start) / 1000000 > REQUEUE_GIVE_UP_MS) {
			log_error("requeue gave up after %d s: %s; %d job(s) "
			    "left to the visibility timeout",
			    REQUEUE_GIVE_UP_MS / 1000, err, n - i);
			_exit(1);
		}
		delay_ms = backoff_step(&bo, REQUEUE_RETRY_MIN_MS,
		    REQUEUE_RETRY_MAX_MS);
		log_warnx("requeue: %s; retrying in %lld ms", err,
		    (long long)delay_ms);
		nanosleep(&(struct timespec){ delay_ms / 1000,
		    (delay_ms % 1000) * 1000000 }, NULL);
	}
	if (c != NULL)
		redisFree(c);
	_exit(0);
}

/*
 * The child proc_fork set up: the items are its own copy of what was
 * pending at the fork.
 */
static void
requeue_run(void *arg)
{
	requeue_child(rsup->cfg, pending, npending);
}

void
requeue_flush(void)
{
	struct timeval tv;
	pid_t pid;
	int k;

	if (npending == 0)
		return;
	for (k = 0; k < REQUEUE_MAX_CHILDREN; k++)
		if (children[k] == 0)
			break;
	if (k == REQUEUE_MAX_CHILDREN) {
		/* Try again once a child is gone (requeue_exited). */
		return;
	}
	if ((pid = proc_fork(&requeue_proc, (void *)(intptr_t)k, NULL, 0)) ==
	    -1) {
		log_warn("fork requeue child");
		evtimer_add(flush_ev, tv_ms(&tv, 200));
		return;
	}
	children[k] = pid;
	log_debug("requeue child %d for %d job(s)", (int)pid, npending);
	npending = 0;
}

/* A requeue child was reaped (proc.c); arg is its place in children. */
static void
requeue_exited(pid_t pid, int status, void *arg)
{
	int k = (int)(intptr_t)arg;

	children[k] = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		log_warnx("requeue child %d failed", (int)pid);
	if (npending > 0)
		requeue_flush();
}

int
requeue_busy(void)
{
	int k;

	if (npending > 0)
		return 1;
	for (k = 0; k < REQUEUE_MAX_CHILDREN; k++)
		if (children[k] != 0)
			return 1;
	return 0;
}
