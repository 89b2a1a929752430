/*
 * Worker pools (pool.c): start, restart, roll and stop the workers.
 * Everything runs in the supervisor's event loop.
 */
#ifndef DIGESTD_POOL_H
#define DIGESTD_POOL_H

#include <stddef.h>

#include "config.h"
#include "supervisor.h"

/*
 * Set up pools for sup->cfg and start every worker.  notify_rfd is the
 * read end of the notify pipe (watched here), notify_wfd the write end
 * given to workers.  0, or -1 with err.
 */
int pool_start(struct supervisor *, int notify_rfd, int notify_wfd,
    char *err, size_t errlen);

/* Periodic work: stall checks, pools to fill, the drain deadline. */
void pool_tick(void);

/* 1 when every configured pool has a ready worker. */
int pool_all_ready(void);

/*
 * The same, and when not, why in why (len bytes; NULL for none): a line
 * per pool without a ready worker.
 */
int pool_readiness(char *why, size_t len);

/* Number of worker processes still alive. */
int pool_live(void);

/*
 * 1 if cfg's pools fit in the registry (pool names ever seen keep their
 * entry), else 0 with err.
 */
int pool_registry_fits(const struct config *, char *err, size_t errlen);

/*
 * Apply sup->cfg after a reload: registry entries for new pools, workers
 * of removed pools and surplus workers retired, and every other worker
 * rolled (its replacement started first, the old one retired only once
 * the replacement is ready).
 */
void pool_reconfigure(void);

/*
 * Stop every worker: fast == 0 drains (SB_CMD_DRAIN, SIGKILL after
 * drain_timeout), fast == 1 SIGKILLs at once.  Jobs of killed workers are
 * requeued.
 */
void pool_stop(int fast);

/* SIGKILL every live worker at once (drain timeout, exit). */
void pool_kill_all(void);

#endif
