/*
 * The worker process: after fork, the supervisor calls worker_main, which
 * connects to the queue, the activity store and the transport, reports
 * ready through the notify pipe, and then takes one job at a time until
 * told to stop through its scoreboard slot.
 *
 * The supervisor talks to a worker only through the slot's cmd (RUN,
 * RETIRE: finish the job in hand and exit, DRAIN: checkpoint it and give
 * it back), never by signals, so that no Redis or SMTP exchange is cut
 * half-way by EINTR: SIGINT, SIGHUP, SIGQUIT and SIGUSR1 are ignored and
 * SIGTERM only raises a drain flag.  The worker heartbeats in the slot on
 * every loop, idle or busy: its queue reads time out after about a second,
 * and a running job calls back at least once a second.  Exit status tells
 * the supervisor why it left: 0 when told or after max_jobs,
 * EXIT_WORKER_OOM when an allocation failed under memory_limit.
 *
 * An operator's pause or cancel (queue.h: queue_control_poll) is looked
 * at before each fetch, before a job starts and between the batches of a
 * job: a paused worker takes no job and holds no consumer (so that the
 * broker keeps no message for it), a job in hand is checkpointed and
 * given back without an attempt counted, and a job of a cancelled run
 * stops where it is, its checkpoint saying cancelled.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "backoff.h"
#include "digest.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "rconn.h"
#include "render.h"
#include "transport.h"
#include "util.h"
#include "worker.h"

#define FETCH_TIMEOUT_MS 1000
#define CONNECT_BACKOFF_MIN_MS 100
#define CONNECT_BACKOFF_MAX_MS 5000
/* How long a worker told to stop still tries to give back a job. */
#define GIVEBACK_HOLD_MS 10000
/* After a job given back: 250 ms doubling to 8 s, reset by a job done. */
#define RETRY_BACKOFF_MIN_MS 250
#define RETRY_BACKOFF_MAX_MS 8000
/*
 * After the mail server refused the envelope sender (5xx to MAIL FROM) or
 * AUTH, which an operator has to fix: 5 s, doubling to 5 minutes, so that
 * a pool does not hammer the server with sessions it refuses, and still
 * notices a fix within minutes.
 */
#define REFUSED_BACKOFF_MIN_MS 5000
#define REFUSED_BACKOFF_MAX_MS 300000
#define KEEPALIVE_EVERY_NS 1000000000LL
#define PROMOTE_EVERY_NS 1000000000LL
/* How often a paused worker looks again: well inside the 2 s promised. */
#define PAUSE_POLL_MS 500

/* Why a job stopped between two batches (worker_batch_end). */
enum worker_stop {
	WORKER_STOP_NONE,
	WORKER_STOP_PAUSED,	/* its queue was paused: give it back */
	WORKER_STOP_CANCELLED,	/* its run was cancelled: finish it so */
};

struct worker {
	const struct config *cfg;
	struct scoreboard *sb;
	struct sb_slot *slot;
	int slotno;
	int notify_fd;
	const struct pool_config *pc;
	const char *pool;
	int pos;
	uint64_t log_gen;
	struct queue_consumer qc;	/* the pool's queue */
	int qc_open;
	redisContext *data;
	redisContext *queue;	/* == data unless [queue_redis] is set */
	struct digest_ctx dctx;
	struct queue_msg *cur;	/* the job in hand, for keepalive */
	int64_t last_keepalive_ns;
	int64_t last_rss_ns;
	int64_t next_promote_ns;	/* when to look at the delayed set */
	int64_t promote_warned_ns;	/* no warning again before */
	int keepalive_failed;
	int retries;		/* jobs given back in a row */
	int refusals;		/* attempts in a row ended by a sender or
				   AUTH refused */
	/*
	 * The job in hand could not be given back (its Redis was down): it
	 * stays in our slot, so that the supervisor requeues it if we exit,
	 * and is given back once we have reconnected.
	 */
	int giveback_failed;
	char giveback_reason[256];
	int64_t giveback_hold_ns;	/* until then, not even a stop */
	/*
	 * The attempt an outage cost could not be taken back either (the
	 * queue Redis refused every write): it is, before the give-back.
	 */
	int giveback_refund;
	/*
	 * The job in hand was taken over by another instance (its entry is
	 * pending under another consumer): it is theirs, stop at once.
	 */
	int job_lost;
	/* Its progress, which Redis may not have taken either. */
	struct checkpoint giveback_cp;
	int giveback_has_cp;
	enum worker_stop stop;	/* the job in hand, between batches */
	int paused;		/* the queue was paused at the last look */
};

static volatile sig_atomic_t got_term;

static void
term_handler(int sig)
{
	got_term = 1;
}

static void
worker_signals(void)
{
	struct sigaction sa;
	sigset_t none;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	/* A terminal's ^\ reaches the whole group: the supervisor decides. */
	sigaction(SIGQUIT, &sa, NULL);
	/* SIGTERM asks for a drain: a flag, and no EINTR in a read. */
	sa.sa_handler = term_handler;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static void
worker_title(struct worker *w, const char *job_id)
{
	if (job_id != NULL)
		setproctitle("-digestd: worker %s#%d job=%s", w->pool, w->pos,
		    job_id);
	else
		setproctitle("-digestd: worker %s#%d idle", w->pool, w->pos);
}

static int
worker_cmd(struct worker *w)
{
	int cmd = atomic_load(&w->slot->cmd);

	if (got_term || atomic_load(&w->sb->draining))
		return SB_CMD_DRAIN;
	return cmd;
}

/* Heartbeat, RSS and the log file: done on every loop, idle or busy. */
static void
worker_housekeeping(struct worker *w)
{
	int64_t now = now_mono_ns();
	uint64_t g;

	sb_heartbeat(w->slot);
	/* /proc costs a few syscalls: four times a second is plenty. */
	if (now - w->last_rss_ns >= 250000000) {
		w->last_rss_ns = now;
		atomic_store_explicit(&w->slot->rss_bytes, proc_rss_bytes(0),
		    memory_order_relaxed);
	}
	g = atomic_load(&w->sb->log_gen);
	if (g != w->log_gen) {
		w->log_gen = g;
		if (log_open_file(w->cfg->supervisor.log_file) == -1)
			log_warn("reopen %s", w->cfg->supervisor.log_file);
	}
}

/* Sleep ms in short steps, heartbeating; 1 if told to stop meanwhile. */
static int
worker_sleep(struct worker *w, int64_t ms)
{
	int64_t end = now_mono_ns() + ms * 1000000, left;
	struct timespec ts;

	for (;;) {
		worker_housekeeping(w);
		if (worker_cmd(w) != SB_CMD_RUN)
			return 1;
		left = (end - now_mono_ns()) / 1000000;
		if (left <= 0)
			return 0;
		if (left > 100)
			left = 100;
		ts.tv_sec = 0;
		ts.tv_nsec = left * 1000000;
		nanosleep(&ts, NULL);
	}
}

static void
worker_pause(int64_t ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	nanosleep(&ts, NULL);
}

/* Count a failed call of the queue against the server it failed on. */
static void
worker_queue_error(struct worker *w)
{
	metric_inc(w->slot->cells, w->qc.failed_on == QUEUE_SERVER_BROKER ?
	    MC_BROKER_ERRORS : MC_REDIS_ERRORS);
}

static void __attribute__((noreturn))
worker_exit(struct worker *w, int code)
{
	if (w->qc_open)
		w->qc.qb->close(&w->qc);
	if (w->queue != NULL && w->queue != w->data)
		redisFree(w->queue);
	if (w->data != NULL)
		redisFree(w->data);
	if (w->dctx.tp != NULL)
		w->dctx.tp_ops->close(w->dctx.tp);
	digest_ctx_clear(&w->dctx);
	exit(code);
}

static void
worker_disconnect(struct worker *w)
{
	if (w->qc_open) {
		w->qc.qb->close(&w->qc);
		w->qc_open = 0;
	}
	if (w->queue != NULL && w->queue != w->data)
		redisFree(w->queue);
	if (w->data != NULL)
		redisFree(w->data);
	w->queue = w->data = NULL;
	w->dctx.data = w->dctx.queue = NULL;
}

/* Connect what is not connected; a failure is counted.  0 / -1. */
static int
worker_try_connect(struct worker *w, char *err, size_t errlen)
{
	if (!w->qc_open) {
		if (w->qc.qb->open(&w->qc, err, errlen) == -1) {
			worker_queue_error(w);
			return -1;
		}
		w->qc_open = 1;
	}
	if (w->data == NULL &&
	    (w->data = rconn_connect(&w->cfg->redis, err, errlen)) == NULL) {
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		return -1;
	}
	if (w->queue == NULL) {
		if (!w->cfg->has_queue_redis)
			w->queue = w->data;
		else if ((w->queue = rconn_connect(&w->cfg->queue_redis, err,
		    errlen)) == NULL) {
			metric_inc(w->slot->cells, MC_REDIS_ERRORS);
			return -1;
		}
	}
	w->dctx.data = w->data;
	w->dctx.queue = w->queue;
	return 0;
}

/*
 * Connect everything, retrying with backoff while heartbeating; exits
 * when told to stop meanwhile (there is no job in hand).  Tells the
 * supervisor it is ready when done.
 */
static void
worker_connect(struct worker *w)
{
	char err[512];
	int64_t delay;
	int failures = 0;
	unsigned char b = (unsigned char)(w->slotno % 256);

	sb_set_state(w->slot, SB_STARTING);
	while (worker_try_connect(w, err, sizeof(err)) == -1) {
		delay = backoff_delay(CONNECT_BACKOFF_MIN_MS,
		    CONNECT_BACKOFF_MAX_MS, failures + 1);
		/* Every failure at first, then one line in ten. */
		if (failures++ < 3 || failures % 10 == 0)
			log_warnx("connect: %s; retrying in %lld ms", err,
			    (long long)delay);
		if (worker_sleep(w, delay)) {
			/*
			 * Told to stop.  A job whose progress and give-back
			 * wait for Redis is worth a few seconds more: else
			 * its next attempt re-sends what this one sent.
			 */
			if (!w->giveback_failed ||
			    now_mono_ns() >= w->giveback_hold_ns)
				worker_exit(w, 0);
			worker_housekeeping(w);
			worker_pause(delay);
		}
	}
	if (failures > 0)
		log_info("connected after %d attempt(s)", failures + 1);
	sb_set_state(w->slot, SB_IDLE);
	if (write(w->notify_fd, &b, 1) == -1 && errno != EAGAIN)
		log_warn("notify supervisor");
}

/* digest_run's callback: heartbeat, keep the lease, say whether to stop. */
static int
worker_tick(void *arg)
{
	struct worker *w = arg;
	int64_t now, every;
	int rc;

	worker_housekeeping(w);
	if (w->job_lost)
		return -1;
	now = now_mono_ns();
	/* Well inside visibility_timeout, however short it is set. */
	every = KEEPALIVE_EVERY_NS;
	if (w->cfg->queue.visibility_timeout_ms * 250000LL < every)
		every = w->cfg->queue.visibility_timeout_ms * 250000LL;
	if (w->cur != NULL && now - w->last_keepalive_ns >= every) {
		w->last_keepalive_ns = now;
		if ((rc = w->qc.qb->keepalive(&w->qc, w->cur)) == 1) {
			log_warnx("job %s was taken over by another instance; "
			    "stopping it", w->cur->job.job_id);
			w->job_lost = 1;
			return -1;
		}
		if (rc == -1) {
			worker_queue_error(w);
			w->keepalive_failed = 1;
			return -1;
		}
	}
	if (worker_cmd(w) != SB_CMD_RUN) {
		/* Told to go: the job in hand is the last (shown as draining). */
		if (atomic_load(&w->slot->state) == SB_BUSY)
			sb_set_state(w->slot, SB_DRAINING);
		if (worker_cmd(w) == SB_CMD_DRAIN)
			return -1;
	}
	return 0;
}

static void
worker_dead_letter(struct worker *w, struct queue_msg *m,
    const char *reason, int attempts)
{
	log_kv(LOG_LEVEL_WARN, "job dead-lettered", "entry", m->entry,
	    "reason", reason, NULL);
	if (w->qc.qb->dead_letter(&w->qc, m, reason, attempts) == -1) {
		worker_queue_error(w);
		return;
	}
	if (m->decoded && checkpoint_finish(w->queue, w->cfg, &m->job, "dead",
	    reason) == -1)
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
	metric_inc(w->slot->cells, MC_JOBS + JOB_DEAD_LETTERED);
}

/*
 * Keep the job in hand, to give it back once reconnected (or for the
 * supervisor to requeue, should this worker exit meanwhile).
 */
static void
worker_keep(struct worker *w, const char *reason)
{
	w->giveback_failed = 1;
	w->giveback_hold_ns = now_mono_ns() + GIVEBACK_HOLD_MS * 1000000LL;
	strlcpy(w->giveback_reason, reason, sizeof(w->giveback_reason));
}

/* Give a job back to its queue; 0 or -1. */
static int
worker_give_back(struct worker *w, struct queue_msg *m, const char *reason)
{
	if (w->qc.qb->give_back(&w->qc, m, reason) == -1) {
		worker_queue_error(w);
		log_warnx("job %s could not be given back (%s); left pending",
		    m->job.job_id, reason);
		worker_keep(w, reason);
		return -1;
	}
	return 0;
}

/*
 * The slot's cursor moves with each message, and so does the checkpoint,
 * but Redis may not have taken the last writes (it was away): the slot
 * knows best how far a job cut short got.
 */
static int
worker_save_slot_cursor(struct worker *w, const struct job *j)
{
	struct cursor c;
	char err[256];

	if (sb_cursor_read(w->slot, &c) == -1 || !c.set)
		return 0;
	if (checkpoint_save_cursor(w->queue, w->cfg, j->job_id, &c, NULL, err,
	    sizeof(err)) == -1) {
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		log_warnx("%s", err);
		return -1;
	}
	return 0;
}

/*
 * Our attempt ends and the job goes back to its queue (or went, with the
 * connection): clear our name from its checkpoint first, so that the
 * worker that takes it next need not wait for it (worker_wait_holder).
 */
static void
worker_release(struct worker *w, struct queue_msg *m)
{
	if (checkpoint_release(w->queue, w->cfg, &m->job, w->qc.name) == -1)
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
}

/*
 * Give back, now that we are connected again, the job whose give-back
 * failed; else it would wait for visibility_timeout although this
 * instance lives.  A queue that redelivers (queue.h) has put it back
 * already, when the connection dropped.  If this fails too, exit: the
 * job is still in our slot and the supervisor requeues it.
 */
static void
worker_give_back_again(struct worker *w, struct queue_msg *m)
{
	w->giveback_failed = 0;
	worker_release(w, m);
	if (w->giveback_refund) {
		w->giveback_refund = 0;
		if (checkpoint_refund(w->queue, w->cfg, &m->job) == -1)
			metric_inc(w->slot->cells, MC_REDIS_ERRORS);
	}
	if (!w->qc.qb->redelivers) {
		/*
		 * Record first how far the job got: what the transport took
		 * while Redis was away is then not sent again.
		 */
		if (w->giveback_has_cp && checkpoint_save(w->queue, w->cfg,
		    &m->job, &w->giveback_cp) == -1)
			metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		worker_save_slot_cursor(w, &m->job);
		if (worker_give_back(w, m, w->giveback_reason) == -1) {
			log_warnx("job %s still not given back; exiting so "
			    "that the supervisor requeues it", m->job.job_id);
			worker_exit(w, 1);
		}
		log_info("job %s given back after reconnecting",
		    m->job.job_id);
	}
	sb_job_clear(w->slot);
}

/*
 * Wait ms while holding a job: heartbeat in the slot and on the queue
 * connection (while it lives), but unlike worker_sleep, a stop does not
 * cut the wait short.
 */
static void
worker_hold(struct worker *w, struct queue_msg *m, int64_t ms)
{
	int64_t end = now_mono_ns() + ms * 1000000;

	while (now_mono_ns() < end) {
		worker_housekeeping(w);
		if (!w->keepalive_failed && now_mono_ns() -
		    w->last_keepalive_ns >= KEEPALIVE_EVERY_NS) {
			w->last_keepalive_ns = now_mono_ns();
			if (w->qc.qb->keepalive(&w->qc, m) == -1)
				w->keepalive_failed = 1;
		}
		worker_pause(100);
	}
}

/*
 * A queue that redelivers (queue.h: AMQP) takes a job back at once, and
 * another worker may start it before this one has recorded how far it
 * got.  When the Redis holding the checkpoints went away during the job,
 * reconnect to Redis alone (the job stays ours on the queue meanwhile)
 * and save the progress before giving the job back, so that what the
 * transport took while Redis was away is not sent again.  A stop (a
 * reload retiring this worker, a drain) waits for it too: a drain past
 * drain_timeout ends in SIGKILL anyway.  Bounded: a Redis still away after SAVE_HOLD_MS
 * leaves the job to be given back as it is.
 */
#define SAVE_HOLD_MS	30000

static void
worker_save_progress(struct worker *w, struct queue_msg *m,
    struct checkpoint *cp)
{
	const struct job *j = &m->job;
	char err[256];
	int64_t delay;
	int64_t until = now_mono_ns() + SAVE_HOLD_MS * 1000000LL;
	int tries = 0;

	if (!w->qc.qb->redelivers || w->queue == NULL || w->queue->err == 0)
		return;
	for (;;) {
		if (w->queue != w->data && w->queue != NULL)
			redisFree(w->queue);
		if (w->data != NULL)
			redisFree(w->data);
		w->queue = w->data = NULL;
		w->dctx.data = w->dctx.queue = NULL;
		strlcpy(err, "the checkpoint was not saved", sizeof(err));
		if ((w->data = rconn_connect(&w->cfg->redis, err,
		    sizeof(err))) != NULL) {
			w->queue = w->cfg->has_queue_redis ? rconn_connect(
			    &w->cfg->queue_redis, err, sizeof(err)) : w->data;
			w->dctx.data = w->data;
			w->dctx.queue = w->queue;
			if (w->queue != NULL &&
			    checkpoint_save(w->queue, w->cfg, j, cp) == 0 &&
			    worker_save_slot_cursor(w, j) == 0) {
				log_info("progress saved at %lld after "
				    "reconnecting to Redis",
				    (long long)cp->cursor.uid);
				return;
			}
		}
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		if (tries++ == 0)
			log_warnx("holding the job until Redis takes its "
			    "progress: %s", err);
		delay = backoff_delay(CONNECT_BACKOFF_MIN_MS,
		    CONNECT_BACKOFF_MAX_MS, tries);
		if (now_mono_ns() + delay * 1000000LL >= until)
			break;
		worker_hold(w, m, delay);
	}
	log_warnx("progress not saved: Redis still away after %d s",
	    SAVE_HOLD_MS / 1000);
	/* Whatever is left half-open is replaced by the main loop. */
	w->keepalive_failed = 1;
}

/*
 * A queue that redelivers hands us the job of a worker that died with it
 * in hand at once, maybe before its supervisor has saved the dead
 * worker's cursor from its slot (Redis was away): the checkpoint would
 * have us send again what it sent meanwhile.  While another worker holds
 * the job, wait, heartbeating and keeping the delivery, for the holder
 * to be cleared (it is, with the cursor saved, in one step), then load
 * the checkpoint.  Bounded: when a whole instance died, nobody clears it,
 * and the checkpoint, written after each message, is as far as it got
 * but for the message in flight.
 */
#define HOLDER_WAIT_MS	10000

static void
worker_wait_holder(struct worker *w, struct queue_msg *m)
{
	char holder[QUEUE_CONSUMER_MAX];
	int64_t start = now_mono_ns();
	int rc, waited = 0;

	if (!w->qc.qb->redelivers)
		return;
	/*
	 * The job is ours from now, in the slot too, without the cursor of
	 * an earlier job: should we die meanwhile, none is saved for it.
	 */
	sb_cursor_set(w->slot, &(struct cursor){ .set = 0 });
	sb_job_set(w->slot, &m->job, m->entry);
	w->keepalive_failed = 0;
	w->last_keepalive_ns = start;
	while ((rc = checkpoint_holder(w->queue, w->cfg, &m->job, holder,
	    sizeof(holder))) == 1 && strcmp(holder, w->qc.name) != 0) {
		if (now_mono_ns() - start >= HOLDER_WAIT_MS * 1000000LL) {
			log_warnx("job %s: still held by %s after %d s; going "
			    "on from its checkpoint", m->job.job_id, holder,
			    HOLDER_WAIT_MS / 1000);
			return;
		}
		if (waited++ == 0)
			log_info("job %s: held by %s; waiting for it to be "
			    "let go", m->job.job_id, holder);
		worker_hold(w, m, 100);
	}
	/* A failure is met again, and handled, by checkpoint_start. */
	if (rc == -1)
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
	else if (waited > 0)
		log_info("job %s: let go after %.1f s", m->job.job_id,
		    (now_mono_ns() - start) / 1e9);
}

/*
 * Move the jobs of our queue's delayed set that are due back to the
 * queue: an idle worker does it about once a second, so a job waiting
 * for deferred recipients needs no worker of its own.
 */
static void
worker_promote(struct worker *w)
{
	char err[256];
	int64_t now = now_mono_ns();
	int n;

	if (now < w->next_promote_ns)
		return;
	w->next_promote_ns = now + PROMOTE_EVERY_NS;
	/*
	 * A failure here leaves the connection to whoever uses it next: the
	 * fetch or the job reconnects, with backoff.  One line a minute.
	 */
	if ((n = w->qc.qb->promote(&w->qc, w->queue, err, sizeof(err))) ==
	    -1) {
		worker_queue_error(w);
		if (now >= w->promote_warned_ns) {
			log_warnx("delayed jobs: %s", err);
			w->promote_warned_ns = now + 60000000000LL;
		}
	} else if (n > 0)
		log_info("%d waiting job%s due: back in the queue", n,
		    n == 1 ? "" : "s");
}

/*
 * Count by kind the transport errors of the attempt that just ended
 * (digest_run counts them; the transport knows why the last one
 * happened), and keep the run of sender and AUTH refusals for the backoff.
 */
static void
worker_transport_failures(struct worker *w, uint64_t errors_before,
    int64_t sent_before, const struct checkpoint *cp, enum digest_result res)
{
	const struct transport_ops *ops = w->dctx.tp_ops;
	uint64_t n;
	int kind = -1;

	n = atomic_load_explicit(&w->slot->cells[MC_TRANSPORT_ERRORS +
	    ops->type], memory_order_relaxed) - errors_before;
	if (n > 0) {
		kind = ops->failure != NULL ? (int)ops->failure(w->dctx.tp) :
		    TF_PROTOCOL;
		if (kind < 0 || kind >= TF_N)
			kind = TF_PROTOCOL;
		metric_add(w->slot->cells, MC_TRANSPORT_FAILURE(ops->type,
		    kind), n);
	}
	if (kind == TF_SENDER || kind == TF_AUTH)
		w->refusals++;
	else if (res == DIGEST_DONE || cp->sent > sent_before)
		w->refusals = 0;
}

/*
 * Look at the operator's controls for our queue and, with j, its run:
 * sets *paused and *cancelled.  A failed look counts as neither (the
 * queue Redis away stops the job by itself) and is counted.
 */
static void
worker_controls(struct worker *w, const struct job *j, int *paused,
    int *cancelled)
{
	if (queue_control_poll(w->queue, w->cfg, w->qc.queue, j, paused,
	    cancelled) == -1) {
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		*paused = *cancelled = 0;
	}
}

/*
 * Before a fetch: 1 while our queue is paused.  A worker that pauses
 * lets its consumer go, so that a broker's prefetch holds nothing for it,
 * and opens it again once resumed.
 */
static int
worker_paused(struct worker *w)
{
	int paused, cancelled;

	worker_controls(w, NULL, &paused, &cancelled);
	if (paused && !w->paused) {
		log_info("queue %s paused: taking no job", w->qc.queue);
		if (w->qc_open) {
			w->qc.qb->close(&w->qc);
			w->qc_open = 0;
		}
	} else if (!paused && w->paused)
		log_info("queue %s resumed", w->qc.queue);
	w->paused = paused;
	if (!paused && !w->qc_open)
		worker_connect(w);
	return paused;
}

/* digest_run's batch_end: stop the job in hand if paused or cancelled. */
static int
worker_batch_end(void *arg)
{
	struct worker *w = arg;
	int paused, cancelled;

	if (w->cur == NULL)
		return 0;
	worker_controls(w, &w->cur->job, &paused, &cancelled);
	if (cancelled)
		w->stop = WORKER_STOP_CANCELLED;
	else if (paused)
		w->stop = WORKER_STOP_PAUSED;
	return w->stop != WORKER_STOP_NONE;
}

/* The job's run was cancelled: it ends here, acknowledged, never resent. */
static void
worker_cancelled(struct worker *w, struct queue_msg *m)
{
	log_info("job %s: its run was cancelled; acknowledged",
	    m->job.job_id);
	if (checkpoint_finish(w->queue, w->cfg, &m->job, "cancelled",
	    "cancelled by an operator") == -1)
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
	if (w->qc.qb->ack(&w->qc, m) == -1)
		worker_queue_error(w);
}

/* Run one delivered job, from decoding to ack, give-back or dead letter. */
static void
worker_run(struct worker *w, struct queue_msg *m)
{
	struct checkpoint cp;
	enum digest_result res = DIGEST_DONE;	/* until the job runs */
	char reason[256];
	int64_t t0, ran, sent0;
	struct cursor orphan;
	uint64_t terr0;
	double wait;
	int rc, paused, cancelled;

	if (!m->decoded) {
		worker_dead_letter(w, m, m->err, 1);
		return;
	}
	log_set_job(m->job.job_id);
	w->stop = WORKER_STOP_NONE;
	/* Paused or cancelled while we waited for it: no attempt counted. */
	worker_controls(w, &m->job, &paused, &cancelled);
	if (cancelled) {
		worker_cancelled(w, m);
		goto out;
	}
	if (paused) {
		log_info("job %s given back: its queue is paused",
		    m->job.job_id);
		worker_give_back(w, m, "paused");
		goto out;
	}
	worker_wait_holder(w, m);
	rc = checkpoint_start(w->queue, w->cfg, &m->job, w->qc.name, &cp);
	if (rc == -1) {
		metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		log_warnx("checkpoint: %s", w->queue->err ? w->queue->errstr :
		    "refused or unexpected reply");
		if (!checkpoint_failed_outage(w->queue)) {
			/*
			 * The checkpoint itself cannot be read or written
			 * (not a hash): the job could never run, and given
			 * back it would come round again at once, for ever.
			 */
			worker_dead_letter(w, m, "checkpoint unreadable", 1);
			goto out;
		}
		/* No attempt was counted: give it back, and back off. */
		if (worker_give_back(w, m, "redis") == 0)
			metric_inc(w->slot->cells, MC_JOBS + JOB_RETRIED);
		w->retries++;
		goto out;
	}
	if (rc == 1) {
		log_info("job already done; acknowledged");
		if (w->qc.qb->ack(&w->qc, m) == -1)
			worker_queue_error(w);
		goto out;
	}
	/*
	 * A worker that died with this job in hand may have got further
	 * than Redis knows (a queue that redelivers gave it to us at once).
	 */
	if (w->qc.qb->redelivers &&
	    sb_orphan_cursor(w->sb, m->job.job_id, &orphan) &&
	    cursor_cmp(&orphan, &cp.cursor) > 0) {
		log_info("resuming after %lld, where a worker that died left "
		    "it (the checkpoint says %lld)", (long long)orphan.uid,
		    (long long)cp.cursor.uid);
		cp.cursor = orphan;
	}
	if (cp.attempts > w->cfg->queue.max_attempts) {
		snprintf(reason, sizeof(reason), "%s", cp.last_error[0] ?
		    cp.last_error : "max_attempts");
		worker_dead_letter(w, m, reason, cp.attempts);
		goto out;
	}

	/*
	 * The cursor first: a death between the two writes must never pair
	 * this job with the cursor of the one before (saved for it, that
	 * would skip members).
	 */
	sb_cursor_set(w->slot, &cp.cursor);
	sb_job_set(w->slot, &m->job, m->entry);
	sb_set_state(w->slot, SB_BUSY);
	worker_title(w, m->job.job_id);
	wait = now_real() - m->job.enqueued_at;
	metric_observe(w->slot->cells, HIST_QUEUE_WAIT,
	    (int64_t)(wait * 1e9));
	log_debug("job started: attempt %d from cursor %lld", cp.attempts,
	    cp.cursor.set ? (long long)cp.cursor.uid : -1LL);

	w->cur = m;
	w->keepalive_failed = 0;
	w->last_keepalive_ns = now_mono_ns();
	reason[0] = '\0';
	sent0 = cp.sent;
	terr0 = atomic_load_explicit(&w->slot->cells[MC_TRANSPORT_ERRORS +
	    w->dctx.tp_ops->type], memory_order_relaxed);
	t0 = now_mono_ns();
	res = digest_run(&w->dctx, &m->job, &cp, reason, sizeof(reason));
	ran = now_mono_ns() - t0;
	w->cur = NULL;
	worker_transport_failures(w, terr0, sent0, &cp, res);
	metric_observe(w->slot->cells, HIST_JOB_DURATION, ran);
	if (w->job_lost) {
		/*
		 * Another instance reclaimed the entry while this one was
		 * cut off: no ack, give-back, dead letter nor attempt refund,
		 * which would all act on its run.
		 */
		w->job_lost = 0;
		log_info("job %s left to the instance that holds it now",
		    m->job.job_id);
		goto out;
	}
	/* The queue Redis failed the lease: not the job's fault either. */
	if (res == DIGEST_RETRY && w->keepalive_failed)
		cp.outage = 1;
	if (res == DIGEST_RETRY && worker_cmd(w) == SB_CMD_DRAIN &&
	    !w->keepalive_failed)
		res = DIGEST_STOPPED;
	if (res != DIGEST_DONE)
		worker_save_progress(w, m, &cp);
	/* Finished or waiting, the checkpoint says so, and no one waits. */
	if (res == DIGEST_RETRY || (res == DIGEST_STOPPED &&
	    w->stop != WORKER_STOP_CANCELLED))
		worker_release(w, m);

	switch (res) {
	case DIGEST_DONE:
		if (checkpoint_finish(w->queue, w->cfg, &m->job, "done",
		    NULL) == -1)
			metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		if (w->qc.qb->ack(&w->qc, m) == -1) {
			worker_queue_error(w);
			log_warnx("ack failed; the job stays pending");
		}
		metric_inc(w->slot->cells, MC_JOBS + JOB_OK);
		w->retries = 0;
		log_info("job done in %.3f s: %lld sent, %lld skipped",
		    ran / 1e9, (long long)cp.sent, (long long)cp.skipped);
		break;
	case DIGEST_RETRY:
		if (reason[0] == '\0')
			strlcpy(reason, "retry", sizeof(reason));
		if (checkpoint_note_error(w->queue, w->cfg, m->job.job_id,
		    reason) == -1)
			metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		/*
		 * An attempt ended by an outage (a server or Redis away, or
		 * deferring everyone) says nothing about the job: it is taken
		 * back, so an outage of any length never dead-letters good
		 * jobs, and the backoff below keeps the retries cheap; the
		 * checkpoint, saved per message, bounds what a retry re-sends
		 * to one.  A failure of the job's own (bad data, a recipient
		 * deferred for good) counts, and ends in the dead letters.
		 */
		if (cp.outage && checkpoint_refund(w->queue, w->cfg,
		    &m->job) == -1) {
			/*
			 * The queue Redis takes no write now: the refund,
			 * then the give-back, once it does.
			 */
			metric_inc(w->slot->cells, MC_REDIS_ERRORS);
			log_kv(LOG_LEVEL_WARN, "job held until Redis takes "
			    "writes again", "reason", reason, NULL);
			w->giveback_refund = 1;
			worker_keep(w, reason);
			w->retries++;
			break;
		}
		if (!cp.outage && cp.attempts >= w->cfg->queue.max_attempts) {
			worker_dead_letter(w, m, reason, cp.attempts);
			metric_inc(w->slot->cells, MC_JOBS + JOB_FAILED);
			break;
		}
		log_kv(LOG_LEVEL_WARN, "job given back to retry", "reason",
		    reason, NULL);
		if (worker_give_back(w, m, reason) == 0)
			metric_inc(w->slot->cells, MC_JOBS + JOB_RETRIED);
		w->retries++;
		break;
	case DIGEST_WAIT:
		/*
		 * Only recipients the server deferred are left: the job
		 * waits in its queue's delayed set until the first of them
		 * is due, holding no worker.  Waiting says nothing about
		 * the job: no attempt is spent.
		 */
		if (checkpoint_wait(w->queue, w->cfg, &m->job, &cp, reason)
		    == -1 || checkpoint_refund(w->queue, w->cfg, &m->job) == -1)
			metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		log_kv(LOG_LEVEL_INFO, "job waits for deferred recipients",
		    "reason", reason, NULL);
		if (w->qc.qb->defer(&w->qc, m, w->queue, cp.due_ms / 1000.0)
		    == -1) {
			worker_queue_error(w);
			/* It runs again, and waits again. */
			if (worker_give_back(w, m, reason) == -1)
				break;
		}
		metric_inc(w->slot->cells, MC_JOBS + JOB_RETRIED);
		break;
	case DIGEST_STOPPED:
		if (w->stop == WORKER_STOP_CANCELLED) {
			worker_cancelled(w, m);
			break;
		}
		log_info("job checkpointed at %lld and given back%s",
		    cp.cursor.set ? (long long)cp.cursor.uid : -1LL,
		    w->stop == WORKER_STOP_PAUSED ? ": its queue is paused" :
		    "");
		/* A drain or a pause is ours, not the job's: no attempt used. */
		if (checkpoint_refund(w->queue, w->cfg, &m->job) == -1)
			metric_inc(w->slot->cells, MC_REDIS_ERRORS);
		worker_give_back(w, m, w->stop == WORKER_STOP_PAUSED ?
		    "paused" : "drain");
		break;
	}
out:
	w->giveback_has_cp = 0;
	if (w->giveback_failed && (res == DIGEST_RETRY ||
	    res == DIGEST_STOPPED)) {
		w->giveback_cp = cp;
		w->giveback_has_cp = 1;
	}
	if (!w->giveback_failed)
		sb_job_clear(w->slot);
	sb_set_state(w->slot, SB_IDLE);
	log_set_job(NULL);
	worker_title(w, NULL);
}

int
worker_check_config(const struct config *cfg, char *err, size_t errlen)
{
	return render_check_config(cfg, err, errlen);
}

void
worker_main(const struct config *cfg, struct scoreboard *sb, int slot,
    int notify_fd)
{
	struct worker w;
	struct queue_msg m;
	char err[512];
	int64_t delay;
	int rc, reg;

	memset(&w, 0, sizeof(w));
	w.cfg = cfg;
	w.sb = sb;
	w.slot = &sb->slots[slot];
	w.slotno = slot;
	w.notify_fd = notify_fd;
	reg = atomic_load(&w.slot->pool);
	w.pool = sb->pools[reg].name;
	w.pos = atomic_load(&w.slot->pool_slot);
	w.log_gen = atomic_load(&sb->log_gen);
	worker_signals();
	log_set_proc("worker", w.pool, w.pos);
	worker_title(&w, NULL);
	sb_set_state(w.slot, SB_STARTING);

	if ((w.pc = config_pool(cfg, w.pool)) == NULL) {
		log_error("pool %s is not in the configuration", w.pool);
		exit(1);
	}
	w.qc.qb = queue_backend_for(cfg);
	w.qc.cfg = cfg;
	w.qc.queue = w.pc->queue;
	w.qc.qredis = &w.queue;
	/* Unique to this worker: the supervisor requeues by it if we die. */
	queue_consumer_name(w.qc.name, sizeof(w.qc.name), (int)getppid(),
	    w.pool, w.pos, atomic_load(&w.slot->gen));

	w.dctx.cfg = cfg;
	w.dctx.slot = w.slot;
	w.dctx.tick = worker_tick;
	w.dctx.batch_end = worker_batch_end;
	w.dctx.tick_arg = &w;
	w.dctx.tp_ops = transport_ops_for(cfg);
	if (w.dctx.tp_ops == NULL) {
		log_error("no transport for transport.type");
		exit(1);
	}
	/* The transport connects lazily: opening it checks settings only. */
	if ((w.dctx.tp = w.dctx.tp_ops->open(cfg, err, sizeof(err))) == NULL) {
		log_error("transport %s: %s", w.dctx.tp_ops->name, err);
		exit(1);
	}

	worker_connect(&w);
	for (;;) {
		worker_housekeeping(&w);
		if (worker_cmd(&w) != SB_CMD_RUN) {
			log_debug("told to stop; exiting");
			worker_exit(&w, 0);
		}
		worker_promote(&w);
		if (worker_paused(&w)) {
			worker_sleep(&w, PAUSE_POLL_MS);
			continue;
		}
		memset(&m, 0, sizeof(m));
		rc = w.qc.qb->fetch(&w.qc, &m, FETCH_TIMEOUT_MS, err,
		    sizeof(err));
		if (rc == -1) {
			worker_queue_error(&w);
			log_warnx("queue: %s; reconnecting", err);
			w.qc.qb->msg_clear(&w.qc, &m);
			worker_disconnect(&w);
			worker_connect(&w);
			continue;
		}
		if (rc == 0)
			continue;
		/* The fetch may have waited across a SIGUSR1: log to the new file. */
		worker_housekeeping(&w);
		worker_run(&w, &m);
		w.qc.qb->msg_clear(&w.qc, &m);
		atomic_fetch_add(&w.slot->jobs_done, 1);

		/*
		 * A connection lost during the job is replaced now; so are
		 * those of a job that Redis would not take back, so that the
		 * give-back waits (in worker_connect) until it serves again.
		 */
		if ((w.data != NULL && w.data->err) ||
		    (w.queue != NULL && w.queue->err) || w.keepalive_failed ||
		    w.giveback_failed) {
			log_warnx("%s; reconnecting", w.giveback_failed ?
			    "the job waits for Redis to take it back" :
			    "connection lost during the job");
			worker_disconnect(&w);
			worker_connect(&w);
		}
		if (w.giveback_failed)
			worker_give_back_again(&w, &m);
		if (w.pc->max_jobs > 0 &&
		    (int64_t)atomic_load(&w.slot->jobs_done) >= w.pc->max_jobs) {
			log_info("max_jobs reached (%lld): recycling",
			    (long long)w.pc->max_jobs);
			worker_exit(&w, 0);
		}
		if (w.retries > 0) {
			delay = backoff_delay(RETRY_BACKOFF_MIN_MS,
			    RETRY_BACKOFF_MAX_MS, w.retries);
			/*
			 * The job went back to its queue: the wait holds
			 * nothing but this worker, which heartbeats.
			 */
			if (w.refusals > 0) {
				delay = backoff_delay(REFUSED_BACKOFF_MIN_MS,
				    REFUSED_BACKOFF_MAX_MS, w.refusals);
				log_warnx("the mail server refuses us (sender "
				    "or AUTH); next attempt in %lld s",
				    (long long)delay / 1000);
			}
			worker_sleep(&w, delay);
		}
	}
}
