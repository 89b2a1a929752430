/*
 * What the web console does to the queues, through the queue interface
 * (queue.h), in one place: read a queue's pause, pause and resume it,
 * requeue and delete dead letters.  console.c calls these and never the
 * backends themselves.
 */
#include <stdio.h>
#include <string.h>

#include "console_ops.h"
#include "util.h"

int
console_pause_get(struct queue_admin *qa, const char *queue,
    struct console_pause *p, char *err, size_t errlen)
{
	struct queue_pause qp;

	memset(p, 0, sizeof(*p));
	if (queue_pause_get(qa, queue, &qp, err, errlen) == -1)
		return -1;
	p->paused = qp.paused;
	strlcpy(p->reason, qp.reason, sizeof(p->reason));
	strlcpy(p->by, qp.by, sizeof(p->by));
	p->at = qp.at;
	return 0;
}

int
console_pause(struct queue_admin *qa, const char *queue, const char *reason,
    const char *by, char *err, size_t errlen)
{
	return queue_pause(qa, queue, reason, by, err, errlen);
}

int
console_resume(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	return queue_resume(qa, queue, err, errlen) == -1 ? -1 : 0;
}

int
console_dlq_list(struct queue_admin *qa, queue_letter_cb cb, void *arg,
    char *err, size_t errlen)
{
	return qa->qb->dlq_walk(qa, QUEUE_DLQ_LIST, NULL, cb, arg, err,
	    errlen);
}

int
console_dlq_requeue(struct queue_admin *qa, const char *id,
    queue_letter_cb cb, void *arg, char *err, size_t errlen)
{
	return qa->qb->dlq_walk(qa, QUEUE_DLQ_REQUEUE, id, cb, arg, err,
	    errlen);
}

int
console_dlq_delete(struct queue_admin *qa, const char *id,
    queue_letter_cb cb, void *arg, char *err, size_t errlen)
{
	return qa->qb->dlq_walk(qa, QUEUE_DLQ_DELETE, id, cb, arg, err,
	    errlen);
}
