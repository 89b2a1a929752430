/*
 * Worker pools (pool.c), the supervisor-side requeue of dead workers' jobs
 * (requeue.c) and reload (reload.c): the supervisor's internal interfaces
 * beyond supervisor.h.  Everything runs in the supervisor's event loop.
 */
#ifndef DIGESTD_POOL_H
#define DIGESTD_POOL_H

#include <sys/time.h>
#include <sys/types.h>

#include <stdint.h>

#include "config.h"
#include "job.h"
#include "queue.h"
#include "supervisor.h"

/*
 * Set up pools for sup->cfg and start every worker.  notify_rfd is the
 * read end of the notify pipe (watched here), notify_wfd the write end
 * given to workers.  0, or -1 with err.
 */
int pool_start(struct supervisor *, int notify_rfd, int notify_wfd,
    char *err, size_t errlen);

/* Reap every child that exited (SIGCHLD): workers, requeue children, sampler. */
void pool_reap(void);

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

/*
 * In a child forked from the supervisor: default signal dispositions, an
 * empty signal mask, and every descriptor closed but stdin, stdout,
 * stderr and keep (-1 for none); the log is reopened after.
 */
void pool_child_reset(int keep);

/*
 * Requeue (requeue.c): put a dead worker's job back in its queue at once,
 * from a short-lived child so that the supervisor never blocks on Redis.
 */
void requeue_init(struct supervisor *);
/*
 * Hand a dead worker to a requeue child, which does what plan says (its
 * backend's orphaned); the child is forked from the event loop.
 */
void requeue_add(const struct queue_orphan *, enum queue_orphan_plan);
/* 1 if pid was a requeue child (it is accounted for), else 0. */
int requeue_reaped(pid_t, int status);
/* 1 while jobs wait to be requeued or a requeue child runs. */
int requeue_busy(void);
/* Fork for what is pending now (also called at exit, before waiting). */
void requeue_flush(void);

/* SIGHUP (reload.c): reload the configuration file. */
void reload_config(struct supervisor *);

#endif
