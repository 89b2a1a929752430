/*
 * digestctl's connections and its view of the queue backend: the Redis
 * Streams queue (jobq) or AMQP (jobq_amqp), behind the few calls the
 * commands need.  The enqueue marker stays in the queue Redis for both
 * backends, so that scheduling is idempotent whatever carries the jobs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_link.h"
#include "ctl.h"
#include "jobq.h"
#include "jobq_amqp.h"
#include "rconn.h"
#include "util.h"

#define CTL_CLAIM_TTL_S 300	/* an enqueue marker before its message */

/* AMQP queues declared by this process, so each is declared once. */
static char ctl_declared[CTL_MAX_QUEUES][CONFIG_NAME_MAX];
static int ctl_ndeclared;
/* Redis streams whose group this process has made sure of. */
static char ctl_ensured[CTL_MAX_QUEUES][CONFIG_NAME_MAX];
static int ctl_nensured;

const char *
ctl_vis(const char *s)
{
	static char *ring[CTL_VIS_RING];
	static size_t cap[CTL_VIS_RING];
	static int next;
	size_t need;
	int i;

	if (s == NULL)
		return "-";
	i = next;
	next = (next + 1) % CTL_VIS_RING;
	need = str_vis(NULL, 0, s) + 1;
	if (need > cap[i]) {
		ring[i] = xrealloc(ring[i], need);
		cap[i] = need;
	}
	str_vis(ring[i], need, s);
	return ring[i];
}

int
ctl_connect(struct ctl *c)
{
	c->data = rconn_connect(&c->cfg->redis, c->err, sizeof(c->err));
	if (c->data == NULL)
		return -1;
	if (!c->cfg->has_queue_redis) {
		c->qr = c->data;
		return 0;
	}
	c->qr = rconn_connect(&c->cfg->queue_redis, c->err, sizeof(c->err));
	return c->qr == NULL ? -1 : 0;
}

void
ctl_close(struct ctl *c)
{
	if (c->qr != NULL && c->qr != c->data)
		redisFree(c->qr);
	if (c->data != NULL)
		redisFree(c->data);
	c->qr = c->data = NULL;
	if (c->amqp != NULL)
		amqp_link_close(c->amqp);
	c->amqp = NULL;
}

int
ctl_queues(const struct config *cfg, const char *names[CTL_MAX_QUEUES])
{
	int i, j, n = 0;

	names[n++] = "priority";
	names[n++] = "standard";
	for (i = 0; i < cfg->npools; i++) {
		for (j = 0; j < n; j++)
			if (strcmp(names[j], cfg->pools[i].queue) == 0)
				break;
		if (j == n && n < CTL_MAX_QUEUES)
			names[n++] = cfg->pools[i].queue;
	}
	return n;
}

const char *
ctl_optarg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "digestctl: %s needs a value\n", argv[*i]);
		return NULL;
	}
	return argv[++*i];
}

static int
ctl_amqp(struct ctl *c, const char *queue)
{
	int i;

	if (c->amqp == NULL &&
	    (c->amqp = amqp_link_open(c->cfg, c->err, sizeof(c->err))) == NULL)
		return -1;
	if (queue == NULL)
		return 0;
	for (i = 0; i < ctl_ndeclared; i++)
		if (strcmp(ctl_declared[i], queue) == 0)
			return 0;
	if (jobq_amqp_declare(c->amqp, queue, c->err, sizeof(c->err)) == -1)
		return -1;
	if (ctl_ndeclared < CTL_MAX_QUEUES)
		strlcpy(ctl_declared[ctl_ndeclared++], queue, CONFIG_NAME_MAX);
	return 0;
}

/* The AMQP path: the marker in Redis first, then the message. */
static int
ctl_enqueue_amqp(struct ctl *c, const char *queue, const struct job *j,
    int force)
{
	redisReply *r;
	char key[512];
	long long ttl;
	int added;

	if (ctl_amqp(c, queue) == -1)
		return -1;
	if (rkey(key, sizeof(key), c->cfg->redis.key_prefix, "digest:enq:%s",
	    j->job_id) == NULL) {
		snprintf(c->err, sizeof(c->err), "job id too long");
		return -1;
	}
	ttl = 2LL * (strcmp(j->period, "weekly") == 0 ? 7 * 86400 : 86400);
	/* A short claim first, as jobq does: it lapses if the publish fails. */
	r = redisCommand(c->qr, force ? "SET %s %s EX %d" :
	    "SET %s %s NX EX %d", key, queue, CTL_CLAIM_TTL_S);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		snprintf(c->err, sizeof(c->err), "redis SET %s: %s", key,
		    r ? r->str : c->qr->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	added = r->type == REDIS_REPLY_STATUS;
	freeReplyObject(r);
	if (!added)
		return 0;
	if (jobq_amqp_enqueue(c->amqp, queue, j, c->err,
	    sizeof(c->err)) == -1) {
		/* Without the message, the marker would hide the job. */
		if ((r = redisCommand(c->qr, "DEL %s", key)) != NULL)
			freeReplyObject(r);
		return -1;
	}
	r = redisCommand(c->qr, "EXPIRE %s %lld", key, ttl);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		snprintf(c->err, sizeof(c->err), "redis EXPIRE %s: %s", key,
		    r ? r->str : c->qr->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 1;
}

/* The stream and its group, once per queue and process. */
static int
ctl_ensure(struct ctl *c, const char *queue)
{
	int i;

	for (i = 0; i < ctl_nensured; i++)
		if (strcmp(ctl_ensured[i], queue) == 0)
			return 0;
	if (jobq_ensure(c->qr, c->cfg, queue, c->err, sizeof(c->err)) == -1)
		return -1;
	if (ctl_nensured < CTL_MAX_QUEUES)
		strlcpy(ctl_ensured[ctl_nensured++], queue, CONFIG_NAME_MAX);
	return 0;
}

int
ctl_enqueue(struct ctl *c, const char *queue, const struct job *j, int force)
{
	if (c->cfg->queue.backend == QUEUE_BACKEND_AMQP)
		return ctl_enqueue_amqp(c, queue, j, force);
	if (ctl_ensure(c, queue) == -1)
		return -1;
	return jobq_enqueue(c->qr, c->cfg, queue, j, force, c->err,
	    sizeof(c->err));
}

int
ctl_enqueue_many(struct ctl *c, const char *queue, const struct job *jobs,
    size_t n, int force, int *added)
{
	size_t i;
	int rv, count = 0;

	if (c->cfg->queue.backend == QUEUE_BACKEND_AMQP) {
		/* Each publish waits for its confirm anyway. */
		for (i = 0; i < n; i++) {
			if ((rv = ctl_enqueue_amqp(c, queue, &jobs[i],
			    force)) == -1)
				return -1;
			added[i] = rv;
			count += rv;
		}
		return count;
	}
	if (ctl_ensure(c, queue) == -1)
		return -1;
	return jobq_enqueue_many(c->qr, c->cfg, queue, jobs, n, force, added,
	    c->err, sizeof(c->err));
}

int
ctl_queue_stats(struct ctl *c, const char *queue, struct ctl_qstats *st)
{
	struct jobq_amqp_stats as;
	struct jobq_stats js;

	memset(st, 0, sizeof(*st));
	if (c->cfg->queue.backend == QUEUE_BACKEND_AMQP) {
		if (ctl_amqp(c, queue) == -1 ||
		    jobq_amqp_stats(c->amqp, queue, &as, c->err,
		    sizeof(c->err)) == -1)
			return -1;
		st->depth = as.depth;
		st->pending = as.pending;
		return 0;
	}
	if (jobq_stats(c->qr, c->cfg, queue, &js, c->err, sizeof(c->err)) == -1)
		return -1;
	st->depth = js.depth;
	st->pending = js.pending;
	st->oldest_enqueued = js.oldest_enqueued;
	return 0;
}

int64_t
ctl_dlq_len(struct ctl *c)
{
	int64_t n;

	if (c->cfg->queue.backend == QUEUE_BACKEND_AMQP) {
		if (ctl_amqp(c, NULL) == -1)
			return -1;
		return jobq_amqp_dlq_len(c->amqp, c->err, sizeof(c->err));
	}
	if ((n = jobq_dlq_len(c->qr, c->cfg)) == -1)
		snprintf(c->err, sizeof(c->err), "redis XLEN digest:dlq: %s",
		    c->qr->err ? c->qr->errstr : "failed");
	return n;
}
