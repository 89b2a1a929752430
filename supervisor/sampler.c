/*
 * The queue sampler (docs/design.md#processes-and-signals,
 * #http-endpoint-and-metrics): a child of the supervisor that every
 * SAMPLER_INTERVAL_MS reads each configured queue's depth, pending count,
 * oldest enqueue time and pause (digest:paused:{queue}), the dead letters, and
 * the scheduler's last successful runs, and publishes them in the shared
 * segment (sb_stats_write) for /metrics and /status.
 *
 * It exists so that the supervisor's loop never waits on Redis or the
 * broker: those calls block, for up to the configured timeout, here.
 *
 * digest:sched:{period} is written by `digestctl schedule`: a HASH with
 * start, end, status (ok | failed), window_start, window_end,
 * jobs_priority, jobs_standard, ... and last_success, the end of the last
 * run whose status was ok (kept across failed runs).  The gauge takes
 * last_success, or end when status is ok for a record written before
 * last_success existed.
 *
 * The sampler runs with the configuration it was forked with; a
 * successful reload replaces it at once (sampler_reload): SIGTERM, and
 * its reaping forks the new one.
 *
 * The sampler can die in the middle of publishing (a kill, the SIGTERM of
 * a reload): the supervisor's reads are bounded and fall back on the last
 * good copy it holds (sampler_stats), and the reaping puts that copy back
 * in the segment, so the torn record is never read again.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "amqp_link.h"
#include "backoff.h"
#include "delayq.h"
#include "instance.h"
#include "log.h"
#include "proc.h"
#include "queue.h"
#include "rconn.h"
#include "sampler.h"
#include "util.h"

#define SAMPLER_INTERVAL_MS 5000
#define SAMPLER_RESPAWN_MIN_MS 1000	/* after a crash */
#define SAMPLER_RESPAWN_MAX_MS 30000
#define SAMPLER_HEALTHY_MS 60000	/* a run this long resets the delay */

static const char *const sampler_periods[2] = { "daily", "weekly" };

static struct event *sampler_timer;	/* respawn */
static int64_t sampler_spawned_ns;
static struct backoff sampler_backoff;

/*
 * The supervisor's last good copy of the published stats, refreshed at
 * each read and before a reload's SIGTERM: what /metrics shows while the
 * record cannot be read, and what is put back when a sampler dies in the
 * middle of writing it.
 */
static struct sb_stats stats_last;
static const struct scoreboard *stats_last_sb;	/* NULL: none yet */

/* The child's state, kept across rounds. */
struct sampler {
	const struct config *cfg;
	struct scoreboard *sb;
	redisContext *rc;
	struct queue_admin qa;	/* the queues, through rc */
	struct sb_stats st;	/* the last values published */
	int failing;		/* the previous round failed: log recovery */
	const char *instance;	/* this instance's id */
	double started_at;	/* when the supervisor started */
	struct instance_rates rates;
};

static void
sampler_fail(struct sampler *sm, const char *what, const char *err)
{
	/* One line per outage, not one per round. */
	if (!sm->failing)
		log_warnx("sampler: %s: %s", what, err);
	sm->failing = 1;
	sm->st.ok = 0;
}

static redisContext *
sampler_redis(struct sampler *sm)
{
	char err[256];

	if (sm->rc != NULL && sm->rc->err == 0)
		return sm->rc;
	if (sm->rc != NULL)
		redisFree(sm->rc);
	sm->rc = rconn_connect(&sm->cfg->queue_redis, err, sizeof(err));
	if (sm->rc == NULL)
		sampler_fail(sm, "queue redis", err);
	return sm->rc;
}

/* digest:sched:{period}'s last success, or -1 on error (0: never). */
static double
sampler_sched(struct sampler *sm, redisContext *rc, const char *period)
{
	redisReply *r;
	char key[512];
	double v = 0, t;

	if (rkey(key, sizeof(key), sm->cfg->redis.key_prefix,
	    "digest:sched:%s", period) == NULL)
		return -1;
	r = redisCommand(rc, "HMGET %s last_success status end", key);
	if (r == NULL) {
		sampler_fail(sm, "HMGET digest:sched", rc->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
		if (r->element[0]->type == REDIS_REPLY_STRING &&
		    parse_double(r->element[0]->str, &t) == 0)
			v = t;
		else if (r->element[1]->type == REDIS_REPLY_STRING &&
		    strcmp(r->element[1]->str, "ok") == 0 &&
		    r->element[2]->type == REDIS_REPLY_STRING &&
		    parse_double(r->element[2]->str, &t) == 0)
			v = t;
	} else if (r->type == REDIS_REPLY_ERROR) {
		sampler_fail(sm, "HMGET digest:sched", r->str);
		v = -1;
	}
	freeReplyObject(r);
	return v;
}

static int
sampler_queue_index(struct sb_stats *st, const char *name)
{
	int i;

	for (i = 0; i < st->nqueues; i++)
		if (strcmp(st->queues[i].name, name) == 0)
			return i;
	if (st->nqueues == SB_MAX_QUEUES)
		return -1;
	i = st->nqueues++;
	memset(&st->queues[i], 0, sizeof(st->queues[i]));
	strlcpy(st->queues[i].name, name, sizeof(st->queues[i].name));
	/* Never read yet: unknown, not 0, until a round reads them. */
	st->queues[i].depth = st->queues[i].pending = -1;
	st->queues[i].delayed = -1;
	return i;
}

/*
 * One round.  Values that could not be read keep their last good reading
 * (a gauge that drops to 0 when Redis hiccups would page someone), and
 * sampled_at only moves when the whole round succeeded.
 */
static void
sampler_round(struct sampler *sm)
{
	const struct config *cfg = sm->cfg;
	struct queue_stats qs;
	struct queue_pause pz;
	struct sb_stats prev;
	redisContext *rc;
	char err[256];
	int64_t n;
	double t;
	int i, j, q, ok = 1;

	sm->st.ok = 1;
	/*
	 * The configured queues, in order, each with its last reading (a
	 * respawned sampler starts from what was published); a queue that is
	 * no longer configured is dropped.
	 */
	prev = sm->st;
	sm->st.nqueues = 0;
	for (i = 0; i < cfg->npools; i++) {
		if ((q = sampler_queue_index(&sm->st, cfg->pools[i].queue)) < 0)
			continue;
		for (j = 0; j < prev.nqueues && j < SB_MAX_QUEUES; j++)
			if (strcmp(prev.queues[j].name,
			    sm->st.queues[q].name) == 0)
				sm->st.queues[q] = prev.queues[j];
	}

	/*
	 * The queues, through the backend; on AMQP the broker answers for
	 * them even while the queue Redis is away.  A failed call leaves the
	 * rest of them to the next round.
	 */
	rc = sampler_redis(sm);
	sm->qa.qr = rc;
	for (i = 0; i < sm->st.nqueues; i++) {
		if (sm->qa.qb->stats(&sm->qa, sm->st.queues[i].name, &qs, err,
		    sizeof(err)) == -1) {
			sampler_fail(sm, "queue stats", err);
			break;
		}
		sm->st.queues[i].depth = qs.depth;
		sm->st.queues[i].pending = qs.pending;
		sm->st.queues[i].oldest_enqueued = qs.oldest_enqueued;
	}
	if (i == sm->st.nqueues) {
		if ((n = sm->qa.qb->dlq_len(&sm->qa, err, sizeof(err))) < 0)
			sampler_fail(sm, "dead letters", err);
		else
			sm->st.dead_letters = n;
	}
	/* So do the pauses, the delayed sets and the scheduler's record. */
	for (i = 0; rc != NULL && rc->err == 0 && i < sm->st.nqueues; i++) {
		if (queue_pause_read(rc, cfg, sm->st.queues[i].name, &pz, err,
		    sizeof(err)) == -1) {
			sampler_fail(sm, "paused queues", err);
			break;
		}
		sm->st.queues[i].paused = pz.paused;
		sm->st.queues[i].paused_at = pz.paused ? pz.at : 0;
	}
	for (i = 0; rc != NULL && rc->err == 0 && i < sm->st.nqueues; i++) {
		if (delayq_stats(rc, cfg, sm->st.queues[i].name,
		    &sm->st.queues[i].delayed, &sm->st.queues[i].next_due, err,
		    sizeof(err)) == -1) {
			sampler_fail(sm, "delayed jobs", err);
			break;
		}
	}
	for (q = 0; rc != NULL && rc->err == 0 && q < 2; q++) {
		if ((t = sampler_sched(sm, rc, sampler_periods[q])) >= 0)
			sm->st.sched_last_success[q] = t;
	}
	/* This instance in the registry the web consoles read. */
	if (rc != NULL && rc->err == 0 && instance_publish(rc, cfg, sm->sb,
	    sm->instance, sm->started_at, &sm->rates, err, sizeof(err)) == -1)
		sampler_fail(sm, "instance record", err);
	if (rc != NULL && rc->err != 0)
		sampler_fail(sm, "queue redis", rc->errstr);

	ok = sm->st.ok;
	if (ok) {
		sm->st.sampled_at = now_real();
		if (sm->failing)
			log_info("sampler: sampling again");
		sm->failing = 0;
	}
	sb_stats_write(sm->sb, &sm->st);
}

/*
 * The child proc_fork set up, arg the supervisor: sample until the
 * supervisor goes.  Never returns.
 */
static void
sampler_run(void *arg)
{
	struct supervisor *s = arg;
	struct sampler sm;
	struct timespec next;
	pid_t parent = getppid();

	/* No SIGPIPE from a server that closed on us. */
	signal(SIGPIPE, SIG_IGN);

	memset(&sm, 0, sizeof(sm));
	sm.cfg = s->cfg;
	sm.sb = s->sb;
	sm.instance = s->instance_id;
	sm.started_at = s->started_at;
	queue_admin_init(&sm.qa, sm.cfg, NULL);
	/*
	 * Start from what is published, so a respawn never resets gauges
	 * (unreadable, it is zeroes: the first round fills them in).
	 */
	if (sb_stats_read(sm.sb, &sm.st) == -1) {
		memset(&sm.st, 0, sizeof(sm.st));
		sm.st.dead_letters = -1;
	}

	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		if (getppid() != parent)
			_exit(0);
		sampler_round(&sm);
		next.tv_sec += SAMPLER_INTERVAL_MS / 1000;
		next.tv_nsec += (SAMPLER_INTERVAL_MS % 1000) * 1000000L;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next,
		    NULL) == EINTR)
			;
	}
}

static void
sampler_exited(pid_t pid, int status, void *arg)
{
	sampler_reaped(arg, pid, status);
}

static const struct proc_type sampler_proc = {
	.name = "sampler",
	.run = sampler_run,
	.exited = sampler_exited,
};

static void sampler_respawn_in(struct supervisor *, int64_t);

int
sampler_stats(const struct supervisor *s, struct sb_stats *st)
{
	if (sb_stats_read(s->sb, st) == 0) {
		stats_last = *st;
		stats_last_sb = s->sb;
		return 0;
	}
	if (stats_last_sb != s->sb)
		return -1;
	*st = stats_last;
	return 1;
}

void
sampler_reload(struct supervisor *s)
{
	struct sb_stats st;

	if (s->draining || s->sampler_pid <= 0)
		return;
	/* The copy a torn record would be repaired from, fresh. */
	(void)sampler_stats(s, &st);
	log_debug("configuration reloaded: replacing sampler %d",
	    (int)s->sampler_pid);
	kill(s->sampler_pid, SIGTERM);
}

void
sampler_stop(struct supervisor *s)
{
	if (s->sampler_pid > 0)
		kill(s->sampler_pid, SIGKILL);
}

pid_t
sampler_spawn(struct supervisor *s)
{
	pid_t pid;

	if ((pid = proc_fork(&sampler_proc, s, NULL, 0)) == -1) {
		log_warn("fork sampler");
		sampler_respawn_in(s, SAMPLER_RESPAWN_MAX_MS);
		return -1;
	}
	s->sampler_pid = pid;
	sampler_spawned_ns = now_mono_ns();
	log_debug("sampler started: pid %d", (int)pid);
	return pid;
}

static void
sampler_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervisor *s = arg;

	if (s->draining || s->sampler_pid > 0)
		return;
	sampler_spawn(s);
}

static void
sampler_respawn_in(struct supervisor *s, int64_t ms)
{
	struct timeval tv;

	if (s->base == NULL)
		return;
	if (sampler_timer == NULL &&
	    (sampler_timer = evtimer_new(s->base, sampler_timer_cb, s)) ==
	    NULL) {
		log_warnx("sampler: no timer; not restarted");
		return;
	}
	evtimer_add(sampler_timer, tv_ms(&tv, ms));
}

void
sampler_reaped(struct supervisor *s, pid_t pid, int status)
{
	int64_t ran_ms, delay;

	if (pid != s->sampler_pid)
		return;
	s->sampler_pid = 0;
	/*
	 * Killed in the middle of publishing (a SIGTERM at a reload comes at
	 * any instant): the record is torn and its sequence odd.  Put back
	 * the last good figures before anything reads them again.
	 */
	if (sb_stats_repair(s->sb, stats_last_sb == s->sb ? &stats_last :
	    NULL))
		log_warnx("sampler %d died while publishing the queue figures; "
		    "the last good ones are restored", (int)pid);
	if (s->draining)
		return;
	ran_ms = (now_mono_ns() - sampler_spawned_ns) / 1000000;
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) {
		/* Replaced on purpose (a reload): no reason to wait. */
		delay = 0;
	} else {
		log_warnx("sampler %d exited (%s %d); restarting", (int)pid,
		    WIFSIGNALED(status) ? "signal" : "status",
		    WIFSIGNALED(status) ? WTERMSIG(status) :
		    WEXITSTATUS(status));
		/* Back off when it keeps dying, so a crash cannot spin. */
		if (ran_ms >= SAMPLER_HEALTHY_MS)
			backoff_reset(&sampler_backoff);
		delay = backoff_step(&sampler_backoff, SAMPLER_RESPAWN_MIN_MS,
		    SAMPLER_RESPAWN_MAX_MS);
	}
	sampler_respawn_in(s, delay);
}
