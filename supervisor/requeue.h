/*
 * Requeue (requeue.c): put a dead worker's job back in its queue at once,
 * from a short-lived child, so that the supervisor never blocks on Redis.
 * Everything runs in the supervisor's event loop.
 */
#ifndef DIGESTD_REQUEUE_H
#define DIGESTD_REQUEUE_H

#include "queue.h"
#include "supervisor.h"

/* Set the module up (its flush timer on s->base). */
void requeue_init(struct supervisor *);

/*
 * Hand a dead worker to a requeue child, which does what plan says (its
 * backend's orphaned); the child is forked from the event loop.
 */
void requeue_add(const struct queue_orphan *, enum queue_orphan_plan);

/* 1 while jobs wait to be requeued or a requeue child runs. */
int requeue_busy(void);

/* Fork for what is pending now (also called at exit, before waiting). */
void requeue_flush(void);

#endif
