/*
 * What the web console does to the queues, through the queue interface
 * (queue.h), in one place: read a queue's pause, pause and resume it,
 * requeue and delete dead letters.  console.c calls these and never the
 * backends themselves.
 */
#include <stdio.h>
#include <string.h>

#include "console_ops.h"

int
console_pause_get(struct queue_admin *qa, const char *queue,
    struct console_pause *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	return 0;
}

int
console_pause(struct queue_admin *qa, const char *queue, const char *reason,
    const char *by, char *err, size_t errlen)
{
	snprintf(err, errlen, "pausing is not available in this build");
	return -1;
}

int
console_resume(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	snprintf(err, errlen, "resuming is not available in this build");
	return -1;
}

int
console_dlq_list(struct queue_admin *qa, queue_letter_cb cb, void *arg,
    char *err, size_t errlen)
{
	return qa->qb->dlq_walk(qa, 0, NULL, cb, arg, err, errlen);
}

int
console_dlq_requeue(struct queue_admin *qa, const char *id,
    queue_letter_cb cb, void *arg, char *err, size_t errlen)
{
	return qa->qb->dlq_walk(qa, 1, id, cb, arg, err, errlen);
}

int
console_dlq_delete(struct queue_admin *qa, const char *id,
    queue_letter_cb cb, void *arg, char *err, size_t errlen)
{
	snprintf(err, errlen, "deleting is not available in this build");
	return -1;
}
