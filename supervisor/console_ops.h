/*
 * The web console's operations on the queues (console_ops.c): each is a
 * call through the queue interface, 0 or -1 with err.
 */
#ifndef DIGESTD_CONSOLE_OPS_H
#define DIGESTD_CONSOLE_OPS_H

#include <stddef.h>

#include "queue.h"

struct console_pause {
	int paused;
	char reason[256];
	char by[128];
	double at;
};

/* Whether queue is paused, with the reason, who and when. */
int console_pause_get(struct queue_admin *, const char *queue,
    struct console_pause *, char *err, size_t errlen);
/* Pause queue for every instance, until resumed. */
int console_pause(struct queue_admin *, const char *queue, const char *reason,
    const char *by, char *err, size_t errlen);
/* Lift the pause of queue. */
int console_resume(struct queue_admin *, const char *queue, char *err,
    size_t errlen);
/* Each dead letter to cb, oldest first. */
int console_dlq_list(struct queue_admin *, queue_letter_cb cb, void *arg,
    char *err, size_t errlen);
/* The dead letters of id back on their queue; each to cb. */
int console_dlq_requeue(struct queue_admin *, const char *id,
    queue_letter_cb cb, void *arg, char *err, size_t errlen);
/* The dead letters of id deleted; each to cb. */
int console_dlq_delete(struct queue_admin *, const char *id,
    queue_letter_cb cb, void *arg, char *err, size_t errlen);

#endif
