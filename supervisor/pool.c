/*
 * Worker pools: the workers' table.  Each configured pool owns `workers`
 * positions (the N of "priority#N"), each served by one slot of the
 * scoreboard.  This file starts workers in slots (forked by proc.c, which
 * hands each death back here), classifies why they died (crash, oom,
 * stall, recycle, reload), restarts them with a per-slot backoff, kills
 * stalled ones, hands a dead worker's job to the requeue child, and rolls
 * workers on reload: a replacement is started in a fresh slot and the old
 * worker is told to retire only once the replacement is ready.
 *
 * A slot has one of three roles in the supervisor's private table:
 *   ACTIVE      serves its position; respawned when it dies;
 *   SUPERSEDED  an old worker whose replacement is starting; told to
 *               retire when the replacement is ready, never respawned;
 *   RETIRING    told to finish (SB_CMD_RETIRE or SB_CMD_DRAIN); freed
 *               when it exits.
 */
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "backoff.h"
#include "log.h"
#include "pool.h"
#include "proc.h"
#include "queue.h"
#include "requeue.h"
#include "util.h"
#include "worker/worker.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_SANITIZER 1
#endif
#endif
#ifndef POOL_SANITIZER
#define POOL_SANITIZER 0
#endif

enum slot_role { ROLE_NONE, ROLE_ACTIVE, ROLE_SUPERSEDED, ROLE_RETIRING };

struct pslot {
	int role;		/* enum slot_role; ROLE_NONE: free */
	int reg;		/* pool registry index */
	int pos;		/* position in the pool */
	char queue[SB_NAME_MAX]; /* the queue its worker consumes */
	pid_t pid;		/* 0: no process */
	int64_t spawned_ns;
	int64_t death_ns;	/* when the previous worker was reaped; 0 */
	int ready;
	int told;		/* RETIRE or DRAIN sent */
	int told_reload;	/* ... because of a reload */
	int killed_stall;	/* we sent SIGKILL after a stall */
	int killed_timeout;	/* ... after job_timeout */
	int killed_by_us;	/* we sent SIGKILL to stop */
	struct backoff bo;
	struct event *timer;	/* pending restart */
	int timer_armed;
};

static struct supervisor *psup;
static struct pslot slots[SB_MAX_SLOTS];
static int notify_r = -1, notify_w = -1;
static struct event *notify_ev;
static int stopping;
static int stop_fast;		/* SIGQUIT rather than a drain */
static int64_t drain_deadline_ns;
static int64_t oom_kills_seen = -1;
static int64_t slot_warned_ns;
static int sanitizer_warned;
/*
 * Generations count spawns over all slots, not per slot: the consumer name
 * (pool, position, generation) must never be shared by two workers, and
 * a position moves to another slot at each reload.
 */
static uint64_t spawn_gen;
static char oom_events_path[PATH_MAX + 64];

static void pool_spawn(int);
static void pool_converge(void);

static const char *
reg_name(int reg)
{
	return psup->sb->pools[reg].name;
}

static int64_t
ms_since(int64_t then_ns, int64_t now_ns)
{
	return (now_ns - then_ns) / 1000000;
}

/*
 * The cgroup's count of kernel OOM kills (v2 memory.events, or v1
 * memory.oom_control), so that a SIGKILL we did not send can be told
 * apart: -1 when unknown.  A small read of a pseudo-file: never blocks.
 */
static int64_t
cgroup_oom_kills(void)
{
	char line[256];
	FILE *fp;
	int64_t n = -1;
	long long v;

	if (oom_events_path[0] == '\0')
		return -1;
	if ((fp = fopen(oom_events_path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (sscanf(line, "oom_kill %lld", &v) == 1) {
			n = v;
			break;
		}
	}
	fclose(fp);
	return n;
}

static void
cgroup_oom_init(void)
{
	char line[1024], *p;
	FILE *fp;

	if ((fp = fopen("/proc/self/cgroup", "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "0::", 3) == 0) {
			p = line + 3;
			snprintf(oom_events_path, sizeof(oom_events_path),
			    "/sys/fs/cgroup%s/memory.events",
			    strcmp(p, "/") == 0 ? "" : p);
			if (access(oom_events_path, R_OK) == 0)
				break;
			oom_events_path[0] = '\0';
		} else if ((p = strstr(line, ":memory:")) != NULL) {
			p += strlen(":memory:");
			snprintf(oom_events_path, sizeof(oom_events_path),
			    "/sys/fs/cgroup/memory%s/memory.oom_control",
			    strcmp(p, "/") == 0 ? "" : p);
			if (access(oom_events_path, R_OK) == 0)
				break;
			oom_events_path[0] = '\0';
		}
	}
	fclose(fp);
	oom_kills_seen = cgroup_oom_kills();
	log_debug("kernel OOM kills from %s",
	    oom_events_path[0] ? oom_events_path : "(none)");
}

/* The worker's side of a spawn, in the child proc_fork set up. */
static void
pool_worker_run(void *arg)
{
	const struct pool_config *pc;
	struct rlimit rl;
	int i = (int)(intptr_t)arg;

	log_set_proc("worker", reg_name(slots[i].reg), slots[i].pos);
	pc = config_pool(psup->cfg, reg_name(slots[i].reg));
	if (pc != NULL && pc->memory_limit > 0) {
		/*
		 * Not under a sanitizer: its shadow memory is reserved as
		 * data, and any data limit fails the first allocation
		 * (pool_spawn says so once).
		 */
		if (!POOL_SANITIZER) {
			rl.rlim_cur = rl.rlim_max = pc->memory_limit;
			if (setrlimit(RLIMIT_DATA, &rl) == -1)
				log_warn("setrlimit RLIMIT_DATA");
		}
	}
	worker_main(psup->cfg, psup->sb, i, notify_w);
}

static void pool_worker_exited(pid_t, int, void *);

static const struct proc_type worker_proc = {
	.name = "worker",
	.run = pool_worker_run,
	.exited = pool_worker_exited,
};

static void
restart_cb(evutil_socket_t fd, short ev, void *arg)
{
	int i = (int)(intptr_t)arg;

	slots[i].timer_armed = 0;
	if (stopping || slots[i].role != ROLE_ACTIVE || slots[i].pid != 0)
		return;
	pool_spawn(i);
}

static void
slot_cancel_timer(int i)
{
	if (slots[i].timer_armed) {
		evtimer_del(slots[i].timer);
		slots[i].timer_armed = 0;
	}
}

static void
slot_free(int i)
{
	struct sb_slot *s = &psup->sb->slots[i];

	slot_cancel_timer(i);
	slots[i].role = ROLE_NONE;
	slots[i].pid = 0;
	slots[i].death_ns = 0;
	backoff_reset(&slots[i].bo);
	atomic_store(&s->pid, 0);
	atomic_store(&s->state, SB_FREE);
}

/* A free slot of the scoreboard, or -1. */
static int
slot_alloc(int reg, int pos)
{
	struct sb_slot *s;
	struct event *ev;
	int i;

	for (i = 0; i < SB_MAX_SLOTS; i++) {
		s = &psup->sb->slots[i];
		if (slots[i].role != ROLE_NONE || slots[i].pid != 0 ||
		    atomic_load(&s->state) != SB_FREE)
			continue;
		ev = slots[i].timer;
		memset(&slots[i], 0, sizeof(slots[i]));
		slots[i].timer = ev;
		slots[i].role = ROLE_ACTIVE;
		slots[i].reg = reg;
		slots[i].pos = pos;
		return i;
	}
	return -1;
}

static void
pool_spawn(int i)
{
	struct pslot *ps = &slots[i];
	struct sb_slot *s = &psup->sb->slots[i];
	const struct pool_config *pc;
	struct timeval tv;
	char num[32], sbn[16], pidbuf[16], fork_us[32], mono[32];
	int64_t now;
	pid_t pid;

	pc = config_pool(psup->cfg, reg_name(ps->reg));
	if (pc == NULL) {
		slot_free(i);
		return;
	}
	strlcpy(ps->queue, pc->queue, sizeof(ps->queue));
	if (POOL_SANITIZER && pc->memory_limit > 0 && !sanitizer_warned) {
		sanitizer_warned = 1;
		log_info("sanitizer build: memory_limit not applied");
	}
	atomic_store(&s->gen, ++spawn_gen);
	atomic_store(&s->cmd, SB_CMD_RUN);
	atomic_store(&s->pool, ps->reg);
	atomic_store(&s->pool_slot, ps->pos);
	sb_cursor_set(s, &(struct cursor){ 0 });
	atomic_store(&s->jobs_done, 0);
	atomic_store(&s->rss_bytes, 0);
	sb_job_clear(s);
	now = now_mono_ns();
	atomic_store(&s->spawned_ns, now);
	atomic_store(&s->state, SB_STARTING);
	ps->ready = ps->told = ps->told_reload = 0;
	ps->killed_stall = ps->killed_by_us = ps->killed_timeout = 0;
	ps->spawned_ns = now;

	if ((pid = proc_fork(&worker_proc, (void *)(intptr_t)i, &notify_w,
	    1)) == -1) {
		log_warn("fork worker %s#%d", reg_name(ps->reg), ps->pos);
		atomic_store(&s->state, SB_FREE);
		ps->death_ns = ps->death_ns ? ps->death_ns : now;
		/* Try again after a backoff: the next tick will not spin. */
		evtimer_add(ps->timer, tv_ms(&tv, 200));
		ps->timer_armed = 1;
		return;
	}
	ps->pid = pid;
	atomic_store(&s->pid, pid);
	snprintf(num, sizeof(num), "%d", ps->pos);
	snprintf(sbn, sizeof(sbn), "%d", i);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	snprintf(fork_us, sizeof(fork_us), "%lld", ps->death_ns ?
	    (long long)((now - ps->death_ns) / 1000) : -1LL);
	snprintf(mono, sizeof(mono), "%lld", (long long)now);
	/* mono_ns lets a test relate the fork to its own clock. */
	log_kv(LOG_LEVEL_DEBUG, "worker started", "pool", reg_name(ps->reg),
	    "slot", num, "sb_slot", sbn, "worker", pidbuf,
	    "death_to_fork_us", fork_us,
	    "mono_ns", mono, NULL);
}

/* A worker said it is ready (notify pipe, or seen idle at a tick). */
static void
pool_ready(int i)
{
	struct pslot *ps = &slots[i];
	char num[32], sbn[16], pidbuf[16], us[32], mono[32];
	int64_t now = now_mono_ns();
	int j;

	if (ps->pid == 0 || ps->ready)
		return;
	ps->ready = 1;
	snprintf(num, sizeof(num), "%d", ps->pos);
	snprintf(sbn, sizeof(sbn), "%d", i);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)ps->pid);
	snprintf(us, sizeof(us), "%lld", ps->death_ns ?
	    (long long)((now - ps->death_ns) / 1000) : -1LL);
	snprintf(mono, sizeof(mono), "%lld", (long long)now);
	log_kv(LOG_LEVEL_DEBUG, "worker ready", "pool", reg_name(ps->reg),
	    "slot", num, "sb_slot", sbn, "worker", pidbuf,
	    "death_to_ready_us", us,
	    "mono_ns", mono, NULL);
	ps->death_ns = 0;
	if (ps->role != ROLE_ACTIVE)
		return;

	/* The replacement is live: its predecessor may now finish and go. */
	for (j = 0; j < SB_MAX_SLOTS; j++) {
		if (slots[j].role != ROLE_SUPERSEDED ||
		    slots[j].reg != ps->reg || slots[j].pos != ps->pos)
			continue;
		slots[j].role = ROLE_RETIRING;
		if (slots[j].pid == 0) {
			slot_free(j);
			continue;
		}
		slots[j].told = slots[j].told_reload = 1;
		atomic_store(&psup->sb->slots[j].cmd, SB_CMD_RETIRE);
	}
}

static void
notify_cb(evutil_socket_t fd, short ev, void *arg)
{
	unsigned char buf[256];
	ssize_t n, k;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (k = 0; k < n; k++) {
			if (slots[buf[k]].pid != 0 &&
			    atomic_load(&psup->sb->slots[buf[k]].state) >=
			    SB_IDLE)
				pool_ready(buf[k]);
		}
	}
}

int
pool_registry_fits(const struct config *cfg, char *err, size_t errlen)
{
	struct scoreboard *sb = psup->sb;
	int i, r, used = 0, need = 0;

	for (r = 0; r < SB_MAX_POOLS; r++)
		if (sb->pools[r].name[0] != '\0')
			used++;
	for (i = 0; i < cfg->npools; i++) {
		for (r = 0; r < SB_MAX_POOLS; r++)
			if (strcmp(sb->pools[r].name, cfg->pools[i].name) == 0)
				break;
		if (r == SB_MAX_POOLS)
			need++;
	}
	if (used + need > SB_MAX_POOLS) {
		snprintf(err, errlen, "more than %d pool names since start; "
		    "restart digestd to add pools", SB_MAX_POOLS);
		return 0;
	}
	return 1;
}

/* Registry entries for every pool of the config (names keep their index). */
static void
registry_update(void)
{
	struct scoreboard *sb = psup->sb;
	const struct pool_config *pc;
	int i, r;

	for (i = 0; i < psup->cfg->npools; i++) {
		pc = &psup->cfg->pools[i];
		for (r = 0; r < SB_MAX_POOLS; r++)
			if (strcmp(sb->pools[r].name, pc->name) == 0)
				break;
		if (r == SB_MAX_POOLS) {
			for (r = 0; r < SB_MAX_POOLS; r++)
				if (sb->pools[r].name[0] == '\0')
					break;
			if (r == SB_MAX_POOLS) {
				log_warnx("pool registry full: pool %s not "
				    "started", pc->name);
				continue;
			}
			strlcpy(sb->pools[r].name, pc->name,
			    sizeof(sb->pools[r].name));
		}
		strlcpy(sb->pools[r].queue, pc->queue,
		    sizeof(sb->pools[r].queue));
	}
}

static void
slot_retire(int i, int reload)
{
	struct pslot *ps = &slots[i];

	ps->role = ROLE_RETIRING;
	slot_cancel_timer(i);
	if (ps->pid == 0) {
		slot_free(i);
		return;
	}
	ps->told = 1;
	ps->told_reload = reload;
	atomic_store(&psup->sb->slots[i].cmd, SB_CMD_RETIRE);
}

/*
 * Bring the pools to the config: a worker for every position, nothing for
 * positions or pools that are gone.  Also retries what found no free slot.
 */
static void
pool_converge(void)
{
	const struct pool_config *pc;
	unsigned char covered[SB_MAX_POOLS][256];
	int i, r, n, k;

	if (stopping)
		return;
	memset(covered, 0, sizeof(covered));
	for (i = 0; i < SB_MAX_SLOTS; i++) {
		if (slots[i].role == ROLE_NONE)
			continue;
		pc = config_pool(psup->cfg, reg_name(slots[i].reg));
		if (pc == NULL || slots[i].pos >= pc->workers) {
			if (slots[i].role != ROLE_RETIRING)
				slot_retire(i, 1);
			continue;
		}
		if (slots[i].role == ROLE_ACTIVE && slots[i].pos < 256)
			covered[slots[i].reg][slots[i].pos] = 1;
	}
	for (r = 0; r < SB_MAX_POOLS; r++) {
		if (psup->sb->pools[r].name[0] == '\0')
			continue;
		if ((pc = config_pool(psup->cfg, reg_name(r))) == NULL)
			continue;
		n = pc->workers < 256 ? pc->workers : 256;
		for (k = 0; k < n; k++) {
			if (covered[r][k])
				continue;
			if ((i = slot_alloc(r, k)) == -1) {
				/* Once per 10 s: this runs at every tick. */
				if (now_mono_ns() - slot_warned_ns >
				    10000000000LL) {
					slot_warned_ns = now_mono_ns();
					log_warnx("no free worker slot for "
					    "%s#%d; retrying", pc->name, k);
				}
				return;
			}
			pool_spawn(i);
		}
	}
}

int
pool_start(struct supervisor *s, int rfd, int wfd, char *err, size_t errlen)
{
	int i;

	psup = s;
	notify_r = rfd;
	notify_w = wfd;
	for (i = 0; i < SB_MAX_SLOTS; i++)
		slots[i].timer = evtimer_new(s->base, restart_cb,
		    (void *)(intptr_t)i);
	notify_ev = event_new(s->base, rfd, EV_READ | EV_PERSIST, notify_cb,
	    NULL);
	if (notify_ev == NULL || event_add(notify_ev, NULL) == -1) {
		snprintf(err, errlen, "notify pipe event");
		return -1;
	}
	cgroup_oom_init();
	requeue_init(s);
	registry_update();
	pool_converge();
	return 0;
}

void
pool_reconfigure(void)
{
	const struct pool_config *pc;
	int i;

	registry_update();
	for (i = 0; i < SB_MAX_SLOTS; i++) {
		if (slots[i].role != ROLE_ACTIVE)
			continue;
		pc = config_pool(psup->cfg, reg_name(slots[i].reg));
		if (pc == NULL || slots[i].pos >= pc->workers)
			continue;	/* pool_converge retires it */
		/*
		 * A slot waiting out its backoff keeps its place: its next
		 * worker starts with the new configuration anyway.
		 */
		if (slots[i].pid == 0)
			continue;
		slots[i].role = ROLE_SUPERSEDED;
	}
	pool_converge();
}

/* Why the worker of slot i died; -1 for a planned exit (no restart counted). */
static int
classify(int i, int status)
{
	struct pslot *ps = &slots[i];
	int64_t k;

	if (WIFEXITED(status)) {
		if (WEXITSTATUS(status) == 0) {
			if (ps->told)
				return ps->told_reload ? RESTART_RELOAD : -1;
			return RESTART_RECYCLE;
		}
		if (WEXITSTATUS(status) == EXIT_WORKER_OOM)
			return RESTART_OOM;
		return RESTART_CRASH;
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
		if (ps->killed_stall || ps->killed_timeout)
			return RESTART_STALL;
		if (ps->killed_by_us)
			return -1;
		k = cgroup_oom_kills();
		if (k > oom_kills_seen && oom_kills_seen >= 0) {
			oom_kills_seen = k;
			return RESTART_OOM;
		}
		if (k >= 0)
			oom_kills_seen = k;
	}
	return RESTART_CRASH;
}

static void
describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "status %d", status);
}

static void
pool_worker_died(int i, int status)
{
	struct pslot *ps = &slots[i];
	struct sb_slot *s = &psup->sb->slots[i];
	struct timeval tv;
	struct queue_orphan o;
	enum queue_orphan_plan plan;
	struct job job;
	char entry[SB_ENTRY_MAX], how[32], num[16], sbn[16], pidbuf[16];
	char ran[32];
	char mono[32];
	const char *reason_name, *why;
	int64_t now = now_mono_ns(), delay;
	struct cursor cursor;
	int reason, has_job;
	pid_t pid = ps->pid;

	reason = classify(i, status);
	/*
	 * -1: it died in the middle of writing its job in hand.  Then only
	 * the queue knows the job, and that is where it is looked for.
	 */
	has_job = sb_job_read(s, &job, entry, NULL);
	/*
	 * The last member it had done: the worker is gone, this is final.
	 * One that died while writing it leaves it unknown (and the slot's
	 * lock is released for the next worker).
	 */
	if (sb_cursor_read(s, &cursor) == -1) {
		log_warnx("slot %d: the cursor of the dead worker is unknown", i);
		sb_cursor_repair(s);
	}
	ps->pid = 0;
	ps->death_ns = now;
	atomic_store(&s->state, SB_DEAD);
	if (reason >= 0)
		psup->totals[ps->reg].restarts[reason]++;

	reason_name = reason >= 0 ? restart_reason_names[reason] : "stopped";
	describe_status(status, how, sizeof(how));
	snprintf(num, sizeof(num), "%d", ps->pos);
	snprintf(sbn, sizeof(sbn), "%d", i);
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	snprintf(ran, sizeof(ran), "%lld", (long long)ms_since(ps->spawned_ns,
	    now));
	snprintf(mono, sizeof(mono), "%lld", (long long)now);
	log_kv(reason == RESTART_CRASH || reason == RESTART_OOM ||
	    reason == RESTART_STALL ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
	    "worker exited", "pool", reg_name(ps->reg), "slot", num,
	    "sb_slot", sbn,
	    "worker", pidbuf, "reason", reason_name, "status", how,
	    "ran_ms", ran, "job", has_job == 1 ? job.job_id : "",
	    "mono_ns", mono, NULL);
	if (has_job == -1)
		log_kv(LOG_LEVEL_WARN, "worker died writing its job in hand: "
		    "job unknown", "pool", reg_name(ps->reg), "slot", num,
		    "sb_slot", sbn, "worker", pidbuf, NULL);

	/*
	 * The job in hand goes back to its queue now rather than after the
	 * visibility timeout, as its backend says (queue.h: orphaned), from
	 * a requeue child.  That skips a job the worker had already
	 * acknowledged or given back.  An unknown job is requeued as none:
	 * everything its consumer still holds goes back, from the job's last
	 * checkpoint.
	 */
	why = reason >= 0 ? reason_name :
	    (stopping && !stop_fast ? "drain_timeout" : "stopped");
	if (ps->killed_timeout)
		why = "job_timeout";
	memset(&o, 0, sizeof(o));
	strlcpy(o.queue, ps->queue, sizeof(o.queue));
	strlcpy(o.reason, why, sizeof(o.reason));
	queue_consumer_name(o.consumer, sizeof(o.consumer), (int)getpid(),
	    reg_name(ps->reg), ps->pos, atomic_load(&s->gen));
	o.clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	o.has_job = has_job;
	if (has_job == 1) {
		o.job = job;
		o.cursor = cursor;
	}
	plan = queue_backend_for(psup->cfg)->orphaned(psup->sb, &o);
	if (plan != QUEUE_ORPHAN_NONE)
		requeue_add(&o, plan);
	metrics_fold_slot(psup, i);
	/* Before anything reads or reuses the slot: its job may be torn. */
	sb_job_reset(s);
	atomic_store(&s->pid, 0);
	atomic_store(&s->state, SB_FREE);

	if (stopping || ps->role != ROLE_ACTIVE) {
		slot_free(i);
		return;
	}
	if (reason == RESTART_RECYCLE || reason == RESTART_RELOAD) {
		backoff_reset(&ps->bo);
		delay = 0;
	} else {
		delay = backoff_next(&ps->bo, ms_since(ps->spawned_ns, now),
		    psup->cfg->supervisor.restart_backoff_min_ms,
		    psup->cfg->supervisor.restart_backoff_max_ms,
		    arc4random());
	}
	if (delay == 0) {
		pool_spawn(i);
		return;
	}
	log_info("restarting %s#%d in %lld ms", reg_name(ps->reg), ps->pos,
	    (long long)delay);
	evtimer_add(ps->timer, tv_ms(&tv, delay));
	ps->timer_armed = 1;
}

/* A worker was reaped (proc.c); arg is its slot. */
static void
pool_worker_exited(pid_t pid, int status, void *arg)
{
	int i = (int)(intptr_t)arg;

	if (slots[i].pid != pid) {
		log_warnx("worker %d reaped, but slot %d holds %d", (int)pid,
		    i, (int)slots[i].pid);
		return;
	}
	pool_worker_died(i, status);
}

/*
 * 1 when the job in hand has run longer than its pool's job_timeout: a
 * job that heartbeats but never ends holds its queue entry forever.
 */
static int
slot_job_timed_out(int i)
{
	const struct pool_config *pc;
	int64_t started;

	if (atomic_load(&psup->sb->slots[i].state) != SB_BUSY &&
	    atomic_load(&psup->sb->slots[i].state) != SB_DRAINING)
		return 0;
	pc = config_pool(psup->cfg, reg_name(slots[i].reg));
	if (pc == NULL || pc->job_timeout_ms <= 0)
		return 0;
	/* Idle, or unknown for now: the next tick looks again. */
	if (sb_job_read(&psup->sb->slots[i], NULL, NULL, &started) != 1)
		return 0;
	return (now_real_ns() - started) / 1000000 > pc->job_timeout_ms;
}

void
pool_tick(void)
{
	struct sb_slot *s;
	int64_t now = now_mono_ns(), hb, stall_ns;
	char num[16], sbn[16], pidbuf[16];
	int i;

	stall_ns = psup->cfg->supervisor.stall_timeout_ms * 1000000;
	for (i = 0; i < SB_MAX_SLOTS; i++) {
		if (slots[i].pid == 0)
			continue;
		s = &psup->sb->slots[i];
		/* A ready byte can be lost only if the pipe was full. */
		if (!slots[i].ready && atomic_load(&s->state) >= SB_IDLE &&
		    atomic_load(&s->state) <= SB_BUSY)
			pool_ready(i);
		if (slots[i].killed_stall || slots[i].killed_by_us ||
		    slots[i].killed_timeout)
			continue;
		hb = atomic_load(&s->heartbeat_ns);
		if (hb < slots[i].spawned_ns)
			hb = slots[i].spawned_ns;
		if (slot_job_timed_out(i)) {
			snprintf(num, sizeof(num), "%d", slots[i].pos);
			snprintf(sbn, sizeof(sbn), "%d", i);
			snprintf(pidbuf, sizeof(pidbuf), "%d",
			    (int)slots[i].pid);
			log_kv(LOG_LEVEL_WARN, "job over job_timeout: SIGKILL",
			    "pool", reg_name(slots[i].reg), "slot", num,
			    "sb_slot", sbn,
			    "worker", pidbuf, NULL);
			slots[i].killed_timeout = 1;
			kill(slots[i].pid, SIGKILL);
			continue;
		}
		if (now - hb > stall_ns) {
			snprintf(num, sizeof(num), "%d", slots[i].pos);
			snprintf(sbn, sizeof(sbn), "%d", i);
			snprintf(pidbuf, sizeof(pidbuf), "%d",
			    (int)slots[i].pid);
			log_kv(LOG_LEVEL_WARN, "worker stalled: SIGKILL",
			    "pool", reg_name(slots[i].reg), "slot", num,
			    "sb_slot", sbn,
			    "worker", pidbuf, NULL);
			slots[i].killed_stall = 1;
			kill(slots[i].pid, SIGKILL);
		}
	}
	if (stopping && drain_deadline_ns != 0 && now >= drain_deadline_ns &&
	    pool_live() > 0) {
		log_warnx("drain_timeout reached: SIGKILL %d worker(s)",
		    pool_live());
		drain_deadline_ns = 0;
		pool_kill_all();
	}
	pool_converge();
}

/* Ready now: a worker reconnecting to its queue is back to starting. */
static int
slot_connected(int i)
{
	uint32_t st = atomic_load(&psup->sb->slots[i].state);

	return st >= SB_IDLE && st <= SB_DRAINING;
}

int
pool_all_ready(void)
{
	return pool_readiness(NULL, 0);
}

int
pool_readiness(char *why, size_t len)
{
	const struct pool_config *pc;
	size_t off = 0;
	int i, r, ok, live, all = 1;

	if (why != NULL && len > 0)
		why[0] = '\0';
	for (i = 0; i < psup->cfg->npools; i++) {
		pc = &psup->cfg->pools[i];
		ok = live = 0;
		for (r = 0; r < SB_MAX_SLOTS; r++) {
			if (slots[r].role == ROLE_NONE || slots[r].pid == 0 ||
			    strcmp(reg_name(slots[r].reg), pc->name) != 0)
				continue;
			live++;
			if (slots[r].ready && slot_connected(r))
				ok = 1;
		}
		if (ok)
			continue;
		all = 0;
		if (why == NULL)
			break;
		/* Every pool that is not ready, each on its own line. */
		if (off < len)
			off += (size_t)snprintf(why + off, len - off,
			    "%spool %s: no worker ready (%d of %d running, "
			    "none connected to its queue yet)", off > 0 ?
			    "\n" : "", pc->name, live, pc->workers);
	}
	return all;
}

int
pool_live(void)
{
	int i, n = 0;

	for (i = 0; i < SB_MAX_SLOTS; i++)
		if (slots[i].pid != 0)
			n++;
	return n;
}

void
pool_kill_all(void)
{
	int i;

	for (i = 0; i < SB_MAX_SLOTS; i++) {
		if (slots[i].pid == 0)
			continue;
		slots[i].killed_by_us = 1;
		kill(slots[i].pid, SIGKILL);
	}
}

void
pool_stop(int fast)
{
	int i;

	stopping = 1;
	stop_fast |= fast;
	for (i = 0; i < SB_MAX_SLOTS; i++) {
		if (slots[i].role == ROLE_NONE)
			continue;
		slot_cancel_timer(i);
		if (slots[i].pid == 0) {
			slot_free(i);
			continue;
		}
		slots[i].role = ROLE_RETIRING;
		slots[i].told = 1;
		slots[i].told_reload = 0;
		atomic_store(&psup->sb->slots[i].cmd, SB_CMD_DRAIN);
	}
	if (fast)
		pool_kill_all();
	else
		drain_deadline_ns = now_mono_ns() +
		    psup->cfg->supervisor.drain_timeout_ms * 1000000;
}
