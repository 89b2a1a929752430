/*
 * The operator's controls that are the same on both queue backends
 * (queue.h), because they live in the queue Redis beside the checkpoints:
 *
 *   digest:paused:{queue}          a HASH (reason, by, at) while the queue
 *                                  is paused; the one digest:* key without
 *                                  a TTL, since a pause lasts until lifted
 *   digest:cancel:{period}:{end}   a cancelled run (by, at), as long-lived
 *                                  as the run's enqueue markers
 *
 * Workers look at both with queue_control_poll: before each fetch (so a
 * pause reaches every instance within a fetch timeout, about a second),
 * before a job starts, and between the batches of a job.  Purging and the
 * removal of a cancelled run's waiting jobs go through the backend; the
 * delayed sets (delayq.h) are the same for both and are emptied here.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delayq.h"
#include "queue.h"
#include "rconn.h"
#include "util.h"

static int
queue_pause_key(char *buf, size_t len, const struct config *cfg,
    const char *queue)
{
	return rkey(buf, len, cfg->redis.key_prefix, "digest:paused:%s",
	    queue) == NULL ? -1 : 0;
}

static int
queue_cancel_key(char *buf, size_t len, const struct config *cfg,
    const char *period, int64_t window_end)
{
	return rkey(buf, len, cfg->redis.key_prefix, "digest:cancel:%s:%" PRId64,
	    period, window_end) == NULL ? -1 : 0;
}

/* The handle's queue Redis, or NULL with err. */
static redisContext *
queue_control_conn(struct queue_admin *qa, char *err, size_t errlen)
{
	if (qa->qr == NULL)
		snprintf(err, errlen, "queue redis: not connected");
	return qa->qr;
}

/* Say why r (maybe NULL) is a failure of c; frees r.  Always -1. */
static int
queue_control_fail(redisContext *c, redisReply *r, const char *what,
    char *err, size_t errlen)
{
	snprintf(err, errlen, "redis %s: %s", what, r == NULL ? (c->err ?
	    c->errstr : "no reply") : r->type == REDIS_REPLY_ERROR ? r->str :
	    "unexpected reply");
	if (r != NULL)
		freeReplyObject(r);
	return -1;
}

int
queue_pause(struct queue_admin *qa, const char *queue, const char *reason,
    const char *by, char *err, size_t errlen)
{
	redisContext *c;
	redisReply *r;
	char key[512], at[32];

	if ((c = queue_control_conn(qa, err, errlen)) == NULL)
		return -1;
	if (queue_pause_key(key, sizeof(key), qa->cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	snprintf(at, sizeof(at), "%.3f", now_real());
	r = redisCommand(c, "HSET %s reason %s by %s at %s", key,
	    reason != NULL ? reason : "", by != NULL ? by : "", at);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		return queue_control_fail(c, r, "HSET", err, errlen);
	freeReplyObject(r);
	return 0;
}

int
queue_resume(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	redisContext *c;
	redisReply *r;
	char key[512];
	int was;

	if ((c = queue_control_conn(qa, err, errlen)) == NULL)
		return -1;
	if (queue_pause_key(key, sizeof(key), qa->cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	r = redisCommand(c, "DEL %s", key);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		return queue_control_fail(c, r, "DEL", err, errlen);
	was = r->integer > 0;
	freeReplyObject(r);
	return was;
}

int
queue_pause_read(redisContext *c, const struct config *cfg, const char *queue,
    struct queue_pause *p, char *err, size_t errlen)
{
	redisReply *r;
	char key[512];

	memset(p, 0, sizeof(*p));
	if (c == NULL) {
		snprintf(err, errlen, "queue redis: not connected");
		return -1;
	}
	if (queue_pause_key(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	r = redisCommand(c, "HMGET %s reason by at", key);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		return queue_control_fail(c, r, "HMGET", err, errlen);
	/* HSET writes all three: any one says the hash exists. */
	if (r->element[0]->type == REDIS_REPLY_STRING) {
		p->paused = 1;
		strlcpy(p->reason, r->element[0]->str, sizeof(p->reason));
	}
	if (r->element[1]->type == REDIS_REPLY_STRING) {
		p->paused = 1;
		strlcpy(p->by, r->element[1]->str, sizeof(p->by));
	}
	if (r->element[2]->type == REDIS_REPLY_STRING) {
		p->paused = 1;
		if (parse_double(r->element[2]->str, &p->at) == -1)
			p->at = 0;
	}
	freeReplyObject(r);	/* the strings were copied out */
	return 0;
}

int
queue_pause_get(struct queue_admin *qa, const char *queue,
    struct queue_pause *p, char *err, size_t errlen)
{
	return queue_pause_read(qa->qr, qa->cfg, queue, p, err, errlen);
}

/* Two of period's lengths: the life of the run's enqueue markers. */
static int64_t
queue_run_ttl(const char *period)
{
	return 2 * (int64_t)(strcmp(period, "weekly") == 0 ? 7 * 86400 :
	    86400);
}

int
queue_cancel_run(struct queue_admin *qa, const char *period,
    int64_t window_end, const char *by, char *err, size_t errlen)
{
	redisContext *c;
	redisReply *r;
	char key[512], at[32], ttl[32];

	if ((c = queue_control_conn(qa, err, errlen)) == NULL)
		return -1;
	if (queue_cancel_key(key, sizeof(key), qa->cfg, period,
	    window_end) == -1) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	snprintf(at, sizeof(at), "%.3f", now_real());
	snprintf(ttl, sizeof(ttl), "%" PRId64, queue_run_ttl(period));
	redisAppendCommand(c, "HSET %s by %s at %s", key, by != NULL ? by : "",
	    at);
	redisAppendCommand(c, "EXPIRE %s %s", key, ttl);
	if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
	    r->type != REDIS_REPLY_INTEGER) {
		queue_control_fail(c, r, "HSET", err, errlen);
		/* Read the EXPIRE's reply too: the connection stays usable. */
		if (c->err == 0 && redisGetReply(c, (void **)&r) == REDIS_OK &&
		    r != NULL)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
	    r->type != REDIS_REPLY_INTEGER)
		return queue_control_fail(c, r, "EXPIRE", err, errlen);
	freeReplyObject(r);
	return 0;
}

int
queue_run_cancelled(struct queue_admin *qa, const char *period,
    int64_t window_end, char *err, size_t errlen)
{
	redisContext *c;
	redisReply *r;
	char key[512];
	int rv;

	if ((c = queue_control_conn(qa, err, errlen)) == NULL)
		return -1;
	if (queue_cancel_key(key, sizeof(key), qa->cfg, period,
	    window_end) == -1) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	r = redisCommand(c, "EXISTS %s", key);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		return queue_control_fail(c, r, "EXISTS", err, errlen);
	rv = r->integer > 0;
	freeReplyObject(r);
	return rv;
}

int64_t
queue_purge(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	redisContext *c;
	redisReply *r;
	char key[512];
	int64_t n, d;

	if ((n = qa->qb->purge(qa, queue, err, errlen)) == -1)
		return -1;
	/* The jobs waiting for deferred recipients wait in this queue too. */
	if ((c = queue_control_conn(qa, err, errlen)) == NULL)
		return -1;
	if (delayq_key(key, sizeof(key), qa->cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	redisAppendCommand(c, "ZCARD %s", key);
	redisAppendCommand(c, "DEL %s", key);
	if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
	    r->type != REDIS_REPLY_INTEGER) {
		queue_control_fail(c, r, "ZCARD", err, errlen);
		if (c->err == 0 && redisGetReply(c, (void **)&r) == REDIS_OK &&
		    r != NULL)
			freeReplyObject(r);
		return -1;
	}
	d = r->integer;
	freeReplyObject(r);
	if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
	    r->type != REDIS_REPLY_INTEGER)
		return queue_control_fail(c, r, "DEL", err, errlen);
	freeReplyObject(r);
	return n + d;
}

int
queue_control_poll(redisContext *q, const struct config *cfg,
    const char *queue, const struct job *j, int *paused, int *cancelled)
{
	redisReply *r;
	char pkey[512], ckey[512];
	int i, n = 1, rv = 0, v[2] = { 0, 0 };

	*paused = *cancelled = 0;
	if (q == NULL || q->err != 0 ||
	    queue_pause_key(pkey, sizeof(pkey), cfg, queue) == -1)
		return -1;
	redisAppendCommand(q, "EXISTS %s", pkey);
	if (j != NULL && queue_cancel_key(ckey, sizeof(ckey), cfg, j->period,
	    j->window_end) == 0) {
		redisAppendCommand(q, "EXISTS %s", ckey);
		n = 2;
	}
	for (i = 0; i < n; i++) {
		if (redisGetReply(q, (void **)&r) != REDIS_OK || r == NULL) {
			if (q->err == REDIS_ERR_OOM)
				worker_oom();
			return -1;
		}
		if (r->type == REDIS_REPLY_INTEGER)
			v[i] = r->integer > 0;
		else
			rv = -1;
		freeReplyObject(r);
	}
	if (rv == 0) {
		*paused = v[0];
		*cancelled = v[1];
	}
	return rv;
}
