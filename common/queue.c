/*
 * Choosing the queue backend, and what its two backends share: the
 * consumer names of workers, and the enqueue markers that make scheduling
 * idempotent whatever carries the jobs (queue.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "queue.h"
#include "rconn.h"
#include "util.h"

/* Indexed by queue.backend, in the order of its choices in config.c. */
static const struct queue_backend *const queue_backends[] = {
	[QUEUE_BACKEND_REDIS] = &queue_redis_backend,
	[QUEUE_BACKEND_AMQP] = &queue_amqp_backend,
};
#define QUEUE_NBACKENDS (sizeof(queue_backends) / sizeof(queue_backends[0]))

const struct queue_backend *
queue_backend_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < QUEUE_NBACKENDS; i++)
		if (strcmp(queue_backends[i]->name, name) == 0)
			return queue_backends[i];
	return NULL;
}

const struct queue_backend *
queue_backend_for(const struct config *cfg)
{
	/* The parser takes only the names of the table: never out of it. */
	if (cfg->queue.backend < 0 ||
	    (size_t)cfg->queue.backend >= QUEUE_NBACKENDS)
		fatalx("queue.backend %d: no such backend", cfg->queue.backend);
	return queue_backends[cfg->queue.backend];
}

void
queue_admin_init(struct queue_admin *qa, const struct config *cfg,
    redisContext *qr)
{
	memset(qa, 0, sizeof(*qa));
	qa->qb = queue_backend_for(cfg);
	qa->cfg = cfg;
	qa->qr = qr;
}

void
queue_admin_clear(struct queue_admin *qa)
{
	if (qa->qb != NULL)
		qa->qb->admin_clear(qa);
	qa->priv = NULL;
}

void
queue_consumer_name(char *buf, size_t len, int supervisor_pid,
    const char *pool, int pos, uint64_t gen)
{
	char host[64];

	if (gethostname(host, sizeof(host)) == -1)
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len, "%s:%d:%s#%d.%" PRIu64, host, supervisor_pid, pool,
	    pos, gen);
}

int
queue_enq_key(char *buf, size_t len, const struct config *cfg,
    const char *job_id)
{
	return rkey(buf, len, cfg->redis.key_prefix, "digest:enq:%s",
	    job_id) == NULL ? -1 : 0;
}

int64_t
queue_enq_ttl(const struct job *j)
{
	return 2 * (int64_t)(strcmp(j->period, "weekly") == 0 ? 7 * 86400 :
	    86400);
}
