/*
 * The supervisor's state, shared by its modules (main, pool, reload, http,
 * exposition, sampler).  One instance, owned by main.c; everything here is
 * touched only from the supervisor's event loop (single-threaded).
 */
#ifndef DIGESTD_SUPERVISOR_H
#define DIGESTD_SUPERVISOR_H

#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "metrics.h"
#include "scoreboard.h"

struct event_base;

enum restart_reason {
	RESTART_CRASH,
	RESTART_OOM,
	RESTART_STALL,
	RESTART_RECYCLE,
	RESTART_RELOAD,
	RESTART_N
};

extern const char *const restart_reason_names[RESTART_N];

/*
 * Totals per entry of the pool registry (sb->pools): the cells of workers
 * that are gone, folded in when they were reaped, and the restarts.  They
 * only grow, so counters stay monotonic across deaths and reloads.
 */
struct pool_totals {
	uint64_t cells[MC_NCELLS];
	uint64_t restarts[RESTART_N];
};

struct supervisor {
	struct event_base *base;
	struct config *cfg;		/* the configuration in force */
	struct scoreboard *sb;
	struct pool_totals totals[SB_MAX_POOLS];
	/* Per slot: the generation last folded, so a fold never counts twice. */
	uint64_t folded_gen[SB_MAX_SLOTS];

	uint64_t reloads_ok;
	uint64_t reloads_failed;
	double last_reload_ok;		/* unix time; start-up counts as one */
	double started_at;		/* unix time */
	int draining;			/* SIGTERM/SIGINT/SIGQUIT received */
	pid_t sampler_pid;		/* the queue sampler child, 0 if none */
	pid_t console_pid;		/* the web console child, 0 if none */
	pid_t unsub_pid;		/* the unsubscribe child, 0 if none */
	char instance_id[160];		/* host:pid, in digest:instance:{id} */
};

extern struct supervisor *sup;

/* config_load plus the checks of what it names (templates). */
struct config *supervisor_load_config(const char *file, char *err,
    size_t errlen);
/* Apply the config's core_dumps to this process and its future children. */
void supervisor_core_dumps(const struct config *);

/* Log the warnings of the configuration check (supervisor/check.c). */
void supervisor_check_warnings(const struct config *);

/* 1 when every pool of the config has a ready worker and no drain runs. */
int supervisor_ready(const struct supervisor *);

/* The same, with why it is not ready in why (len bytes), for /readyz. */
int supervisor_readiness(const struct supervisor *, char *why, size_t len);

/*
 * Fold the cells of a dead worker's slot into its pool's totals and zero
 * them, unless that generation was folded already (metrics.c).
 */
void metrics_fold_slot(struct supervisor *, int slot);

/* HTTP endpoint (http.c): bind before privileges drop; 0 or -1 with err. */
int http_listen(struct supervisor *, const char *listen, char *err, size_t);

/* The queue sampler child (sampler.c). */
pid_t sampler_spawn(struct supervisor *);
/* Tell sampler.c its child was reaped (it is respawned by a timer). */
void sampler_reaped(struct supervisor *, pid_t, int status);
/*
 * The queue figures the sampler published: 0 when read now, 1 when they
 * cannot be read now and *st is the last good copy, -1 when there is none.
 */
int sampler_stats(const struct supervisor *, struct sb_stats *st);

/*
 * The web console (console.c).  console_bind, at start before privileges
 * drop: bind console_listen if set (0, or -1 with err).  console_spawn
 * forks the child that serves it; console_reaped tells console.c its
 * child was reaped (it is restarted with backoff).
 */
int console_bind(struct supervisor *, char *err, size_t errlen);
void console_spawn(struct supervisor *);
void console_reaped(struct supervisor *, pid_t, int status);

/*
 * The one-click unsubscribe endpoint (unsub_child.c), in the console's
 * shape: unsub_bind at start before privileges drop, unsub_spawn forks
 * the child that serves it, unsub_reaped restarts it with backoff.
 */
int unsub_bind(struct supervisor *, char *err, size_t errlen);
void unsub_spawn(struct supervisor *);
void unsub_reaped(struct supervisor *, pid_t, int status);

#endif
