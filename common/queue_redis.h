/*
 * Inside the Redis Streams backend (queue.h), between its two files:
 * queue_redis.c, a worker's side of one queue and the scripts that move
 * its entries, queue_redis_admin.c, enqueueing, counts, the dead letters
 * and dead consumers, and queue_redis_control.c, purging a queue and
 * removing a cancelled run's waiting jobs.  Nothing else includes this.
 *
 *   digest:q:{queue}   a stream per queue, consumer group "digestd"
 *   digest:dlq         the dead-letter stream (capped)
 *
 * Every key carries the [redis] key_prefix.  Commands go through
 * redisCommandArgv so that nothing in a job (or a raw dead letter) is ever
 * interpreted by a format string.
 */
#ifndef DIGESTD_QUEUE_REDIS_H
#define DIGESTD_QUEUE_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "queue.h"

#define QUEUE_REDIS_GROUP "digestd"
#define QUEUE_REDIS_DLQ_MAXLEN 100000		/* dead letters kept */
#define QUEUE_REDIS_TRIM_AGE_S (14 * 86400)	/* two weekly periods */
#define QUEUE_REDIS_KEY_MAX 512
#define QUEUE_REDIS_ARGV_MAX 64

/* A command line for redisCommandArgv; strings are borrowed, not owned. */
struct queue_redis_argv {
	int argc;
	const char *argv[QUEUE_REDIS_ARGV_MAX];
	size_t argvlen[QUEUE_REDIS_ARGV_MAX];
};

/* Append s to a (past QUEUE_REDIS_ARGV_MAX, queue_redis_run refuses it). */
void queue_redis_arg(struct queue_redis_argv *, const char *s);
/* Append the job's fields to a; values point into buf, JOB_ENCODE_MAX long. */
void queue_redis_args_job(struct queue_redis_argv *, const struct job *,
    char *buf);
/* Send a and take its reply; NULL with err on an I/O or error reply. */
redisReply *queue_redis_run(redisContext *, struct queue_redis_argv *,
    char *err, size_t errlen);
/* digest:q:{queue} into buf; 0, or -1 if too long. */
int queue_redis_qkey(char *buf, size_t len, const struct config *,
    const char *queue);

/* Create the stream and its group from id 0 (MKSTREAM) if missing. 0 / -1. */
int queue_redis_ensure(redisContext *, const struct config *,
    const char *queue, char *err, size_t errlen);

/*
 * Dead-letter: XADD to digest:dlq the job's fields (or the raw fields of
 * one that did not decode) plus reason, attempts, failed_at, queue, and
 * XACK the entry, in one transaction.  names/values/n are the raw fields;
 * j may be NULL.  0 / -1.
 */
int queue_redis_dlq_add(redisContext *, const struct config *,
    const char *queue, const char *entry, const struct job *j,
    const char *const *names, const char *const *values, size_t n,
    const char *reason, int attempts, char *err, size_t errlen);

/*
 * Put a delivered job back at the end of its queue (XADD a copy, XACK the
 * old entry), but only while entry is still pending under consumer, in
 * one script: a job another instance reclaimed meanwhile (its owner was cut
 * off past visibility_timeout) stays with whoever holds it now, so it never
 * runs twice.  1 if put back, 0 if no longer ours, -1 on error.
 */
int queue_redis_give_back_owned(redisContext *, const struct config *,
    const char *queue, const char *entry, const char *consumer,
    const struct job *, char *err, size_t errlen);

/* The administration side and a dead worker's (queue_redis_admin.c). */
int queue_redis_enqueue(struct queue_admin *, const char *queue,
    const struct job *jobs, size_t n, int force, int *added, char *err,
    size_t errlen);
int queue_redis_stats(struct queue_admin *, const char *queue,
    struct queue_stats *, char *err, size_t errlen);
int64_t queue_redis_dlq_len(struct queue_admin *, char *err, size_t errlen);
int queue_redis_dlq_walk(struct queue_admin *, enum queue_dlq_op,
    const char *id, queue_letter_cb cb, void *arg, char *err,
    size_t errlen);
/* The operator's controls (queue_redis_control.c). */
int64_t queue_redis_purge(struct queue_admin *, const char *queue, char *err,
    size_t errlen);
int64_t queue_redis_remove_run(struct queue_admin *, const char *queue,
    const char *period, int64_t window_end, queue_job_cb cb, void *arg,
    char *err, size_t errlen);
int queue_redis_trim(struct queue_admin *, const char *queue, char *err,
    size_t errlen);
void queue_redis_admin_clear(struct queue_admin *);
enum queue_orphan_plan queue_redis_orphaned(struct scoreboard *,
    const struct queue_orphan *);
int queue_redis_give_back_consumer(redisContext *, const struct config *,
    const char *queue, const char *consumer, const char *reason, char *err,
    size_t errlen);

#endif
