/*
 * Inside the AMQP backend (queue.h), between its files: queue_amqp.c, a
 * worker's side of one queue, queue_amqp_admin.c, enqueueing, counts and
 * the dead letters, and queue_amqp_control.c, purging a queue and removing
 * a cancelled run's waiting jobs.  Nothing else includes this.
 *
 *   digest.{queue}   a durable queue per queue, whose dead-letter exchange
 *                    is digest.dlx; jobs are persistent JSON messages
 *                    (content_type application/json, message_id the job
 *                    id)
 *   digest.dlx       a fanout exchange, bound to
 *   digest.dlq       the durable dead-letter queue: our dead letters carry
 *                    the reason, attempts, queue and time in x-digest-*
 *                    headers, the broker's its x-death record
 *
 * What one file writes the other reads, so both take the names, the
 * declarations and the message properties from here.
 */
#ifndef DIGESTD_QUEUE_AMQP_H
#define DIGESTD_QUEUE_AMQP_H

#include <stddef.h>
#include <stdint.h>

#include <amqp.h>

#include "amqp_link.h"
#include "queue.h"

#define QUEUE_AMQP_DLX "digest.dlx"
#define QUEUE_AMQP_DLQ "digest.dlq"
#define QUEUE_AMQP_QNAME_MAX (CONFIG_NAME_MAX + 16)

/* digest.{queue} into buf; 0, or -1 with err if too long. */
int queue_amqp_qname(char *buf, size_t len, const char *queue, char *err,
    size_t errlen);
/* Declare digest.dlx, digest.dlq and digest.{queue} (idempotent).  0 / -1. */
int queue_amqp_declare(struct amqp_link *, const char *queue, char *err,
    size_t errlen);
/*
 * The properties of a job message: persistent JSON, message_id job_id
 * (none when NULL or empty), timestamp at (none when 0).
 */
void queue_amqp_props(amqp_basic_properties_t *, const char *job_id,
    double at);
/* The reason given for a body over AMQP_LINK_BODY_MAX. */
void queue_amqp_too_large(char *buf, size_t len, size_t size);

/* The administration side and a dead worker's (queue_amqp_admin.c). */
int queue_amqp_enqueue(struct queue_admin *, const char *queue,
    const struct job *jobs, size_t n, int force, int *added, char *err,
    size_t errlen);
int queue_amqp_stats(struct queue_admin *, const char *queue,
    struct queue_stats *, char *err, size_t errlen);
int64_t queue_amqp_dlq_len(struct queue_admin *, char *err, size_t errlen);
int queue_amqp_dlq_walk(struct queue_admin *, enum queue_dlq_op,
    const char *id, queue_letter_cb cb, void *arg, char *err,
    size_t errlen);
/* The operator's controls (queue_amqp_control.c). */
int64_t queue_amqp_purge(struct queue_admin *, const char *queue, char *err,
    size_t errlen);
int64_t queue_amqp_remove_run(struct queue_admin *, const char *queue,
    const char *period, int64_t window_end, queue_job_cb cb, void *arg,
    char *err, size_t errlen);
/*
 * The handle's connection, opened if need be, with queue declared on it
 * (none when NULL); NULL with err.  queue_amqp_admin_drop closes it after
 * a failure.
 */
struct amqp_link *queue_amqp_admin_link(struct queue_admin *,
    const char *queue, char *err, size_t errlen);
void queue_amqp_admin_drop(struct queue_admin *);
int queue_amqp_trim(struct queue_admin *, const char *queue, char *err,
    size_t errlen);
void queue_amqp_admin_clear(struct queue_admin *);
enum queue_orphan_plan queue_amqp_orphaned(struct scoreboard *,
    const struct queue_orphan *);
int queue_amqp_give_back_consumer(redisContext *, const struct config *,
    const char *queue, const char *consumer, const char *reason, char *err,
    size_t errlen);

#endif
