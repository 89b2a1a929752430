/*
 * The supervisor's state, shared by its modules (main, proc, pool,
 * requeue, sampler, reload, http, exposition).  One instance, owned by
 * main.c; everything here is touched only from the supervisor's event loop
 * (single-threaded).
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
	char instance_id[160];		/* host:pid, in digest:instance:{id} */
};

extern struct supervisor *sup;

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

#endif
