/*
 * The Redis Streams queue source (SPEC 4): a worker reads digest:q:{queue}
 * as a consumer of the group "digestd" with XREADGROUP ... BLOCK, so that
 * an idle worker wakes at least once per fetch timeout to heartbeat.
 *
 * Leases: a delivered entry stays pending under this worker's consumer
 * name until it is acknowledged (XACK), given back (jobq_requeue_owned) or
 * dead-lettered.  While a job runs, keepalive re-claims the entry to
 * ourselves (XCLAIM ... JUSTID), which resets its idle time, so that no
 * other instance's reclaim ever takes it; but only while the entry is
 * still ours, in one script (jobq_keepalive_owned): one that another
 * instance reclaimed after a partition is left to it, and the worker
 * stops.  Jobs left pending by a whole instance that died are taken over
 * by idle workers with XAUTOCLAIM once they have been idle for
 * queue.visibility_timeout.
 *
 * An error reply that says the queue Redis cannot serve now (loading,
 * read-only, out of memory: rconn_reply_is_outage) is an outage like a
 * lost connection, never a reason to give up on something for good.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "jobq.h"
#include "log.h"
#include "rconn.h"
#include "source.h"
#include "util.h"

/* How often, at most, an idle worker looks for abandoned entries. */
#define RECLAIM_EVERY_NS (5LL * 1000000000)
/* Tries of an ack refused for an outage: 100 ms apart, doubling (3 s). */
#define ACK_TRIES 6

struct redis_src {
	redisContext *c;
	char key[512];
	int64_t next_reclaim_ns;
	char autoclaim_cursor[SB_ENTRY_MAX];
};

/* A job's raw fields, kept for the dead letters of one that did not decode. */
struct raw_fields {
	size_t n;
	char **names;
	char **values;
};

static void
raw_free(struct raw_fields *rf)
{
	size_t i;

	if (rf == NULL)
		return;
	for (i = 0; i < rf->n; i++) {
		free(rf->names[i]);
		free(rf->values[i]);
	}
	free(rf->names);
	free(rf->values);
	free(rf);
}

/* A NULL reply with an OOM error ends the worker with its OOM code. */
static redisReply *
src_command(redisContext *c, const char *fmt, ...)
{
	redisReply *r;
	va_list ap;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (r == NULL && c->err == REDIS_ERR_OOM)
		worker_oom();
	return r;
}

static int
src_open(struct source *src, char *err, size_t errlen)
{
	struct redis_src *rs;
	struct timeval tv;
	int64_t ms;

	if ((rs = src->priv) == NULL) {
		rs = wcalloc(1, sizeof(*rs));
		src->priv = rs;
		strlcpy(rs->autoclaim_cursor, "0-0",
		    sizeof(rs->autoclaim_cursor));
		/* Spread the reclaim scans of a pool's workers. */
		rs->next_reclaim_ns = now_mono_ns() +
		    (int64_t)(arc4random() % 5000) * 1000000;
	}
	if (rs->c != NULL) {
		redisFree(rs->c);
		rs->c = NULL;
	}
	if (rkey(rs->key, sizeof(rs->key), src->cfg->redis.key_prefix,
	    "digest:q:%s", src->queue) == NULL) {
		snprintf(err, errlen, "queue key too long");
		return -1;
	}
	if ((rs->c = rconn_connect(&src->cfg->queue_redis, err, errlen)) ==
	    NULL)
		return -1;
	/*
	 * A blocking read holds the socket for up to the fetch timeout:
	 * the reply deadline must allow for it on top of redis.timeout.
	 */
	ms = src->cfg->queue_redis.timeout_ms + 2000;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	redisSetTimeout(rs->c, tv);
	if (jobq_ensure(rs->c, src->cfg, src->queue, err, errlen) == -1) {
		redisFree(rs->c);
		rs->c = NULL;
		return -1;
	}
	return 0;
}

static void
src_close(struct source *src)
{
	struct redis_src *rs = src->priv;
	redisReply *r;

	if (rs == NULL)
		return;
	if (rs->c != NULL && rs->c->err == 0) {
		/*
		 * Consumer names are unique per worker: leave no empty one
		 * behind in the group.  One with entries pending stays, for
		 * the supervisor's requeue or the visibility timeout.
		 */
		r = redisCommand(rs->c, "XPENDING %s %s - + 1 %s", rs->key,
		    JOBQ_GROUP, src->consumer);
		if (r != NULL && r->type == REDIS_REPLY_ARRAY &&
		    r->elements == 0) {
			freeReplyObject(r);
			r = redisCommand(rs->c, "XGROUP DELCONSUMER %s %s %s",
			    rs->key, JOBQ_GROUP, src->consumer);
		}
		if (r != NULL)
			freeReplyObject(r);
	}
	if (rs->c != NULL)
		redisFree(rs->c);
	free(rs);
	src->priv = NULL;
}

/*
 * Fill m from one stream entry reply: [id, [f1, v1, f2, v2 ...]].
 * 1 when filled, 0 when the entry is empty (deleted while pending).
 */
static int
msg_from_entry(struct source_msg *m, const redisReply *e)
{
	const redisReply *f;
	struct raw_fields *rf;
	size_t i, n;

	memset(m, 0, sizeof(*m));
	if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING)
		return 0;
	strlcpy(m->entry, e->element[0]->str, sizeof(m->entry));
	f = e->element[1];
	rf = wcalloc(1, sizeof(*rf));
	if (f == NULL || f->type != REDIS_REPLY_ARRAY) {
		/* Deleted from the stream while pending: nothing to run. */
		m->raw = rf;
		snprintf(m->err, sizeof(m->err), "entry %s has no fields",
		    m->entry);
		return 1;
	}
	n = f->elements / 2;
	rf->names = wcalloc(n ? n : 1, sizeof(char *));
	rf->values = wcalloc(n ? n : 1, sizeof(char *));
	for (i = 0; i < n; i++) {
		if (f->element[2 * i]->type != REDIS_REPLY_STRING ||
		    f->element[2 * i + 1]->type != REDIS_REPLY_STRING)
			continue;
		rf->names[rf->n] = wstrdup(f->element[2 * i]->str);
		rf->values[rf->n] = wstrdup(f->element[2 * i + 1]->str);
		rf->n++;
	}
	m->raw = rf;
	m->rawlen = rf->n;
	if (job_decode_fields(&m->job, (const char *const *)rf->names,
	    (const char *const *)rf->values, rf->n, m->err,
	    sizeof(m->err)) == 0 &&
	    job_validate(&m->job, m->err, sizeof(m->err)) == 0)
		m->decoded = 1;
	return 1;
}

/*
 * Take over one entry abandoned by a dead instance (idle for longer than
 * visibility_timeout).  1 with m filled, 0 if none, -1 on error.
 */
static int
src_reclaim(struct source *src, struct redis_src *rs, struct source_msg *m,
    char *err, size_t errlen)
{
	redisReply *r;
	const redisReply *list;
	size_t i;
	int rc = 0;

	r = src_command(rs->c, "XAUTOCLAIM %s %s %s %lld %s COUNT 1", rs->key,
	    JOBQ_GROUP, src->consumer,
	    (long long)src->cfg->queue.visibility_timeout_ms,
	    rs->autoclaim_cursor);
	if (r == NULL) {
		snprintf(err, errlen, "XAUTOCLAIM: %s", rs->c->errstr);
		return -1;
	}
	if (rconn_reply_is_outage(r)) {
		snprintf(err, errlen, "XAUTOCLAIM: %s", r->str);
		freeReplyObject(r);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		/* Redis before 6.2 has no XAUTOCLAIM: no reclaim, no harm. */
		log_debug("XAUTOCLAIM: %s", r->str);
		freeReplyObject(r);
		rs->next_reclaim_ns = INT64_MAX;
		return 0;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING) {
		strlcpy(rs->autoclaim_cursor, r->element[0]->str,
		    sizeof(rs->autoclaim_cursor));
		list = r->element[1];
		for (i = 0; list->type == REDIS_REPLY_ARRAY &&
		    i < list->elements && rc == 0; i++) {
			if (msg_from_entry(m, list->element[i]) == 1) {
				log_info("reclaimed entry %s idle for over "
				    "visibility_timeout", m->entry);
				rc = 1;
			}
		}
	}
	freeReplyObject(r);	/* msg_from_entry copied what it keeps */
	return rc;
}

static int
src_fetch(struct source *src, struct source_msg *m, int timeout_ms,
    char *err, size_t errlen)
{
	struct redis_src *rs = src->priv;
	const redisReply *streams, *entries;
	redisReply *r;
	int64_t now;
	int rc;

	if (rs == NULL || rs->c == NULL) {
		snprintf(err, errlen, "not connected");
		return -1;
	}
	now = now_mono_ns();
	if (now >= rs->next_reclaim_ns) {
		rs->next_reclaim_ns = now + RECLAIM_EVERY_NS;
		if ((rc = src_reclaim(src, rs, m, err, errlen)) != 0)
			return rc;
	}
	r = src_command(rs->c, "XREADGROUP GROUP %s %s COUNT 1 BLOCK %d "
	    "STREAMS %s >", JOBQ_GROUP, src->consumer, timeout_ms, rs->key);
	if (r == NULL) {
		snprintf(err, errlen, "XREADGROUP: %s", rs->c->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_NIL) {
		freeReplyObject(r);
		return 0;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "XREADGROUP: %s", r->str);
		freeReplyObject(r);
		/* NOGROUP: the stream was deleted; open recreates it. */
		return -1;
	}
	rc = 0;
	/* [[key, [[id, [fields]]]]] */
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1) {
		streams = r->element[0];
		if (streams->type == REDIS_REPLY_ARRAY &&
		    streams->elements >= 2) {
			entries = streams->element[1];
			if (entries->type == REDIS_REPLY_ARRAY &&
			    entries->elements >= 1)
				rc = msg_from_entry(m, entries->element[0]);
		}
	}
	freeReplyObject(r);	/* msg_from_entry copied what it keeps */
	return rc;
}

static int
src_ack(struct source *src, struct source_msg *m)
{
	struct redis_src *rs = src->priv;
	struct timespec ts;
	redisReply *r;
	int64_t ms = 100;
	int rc, tries;

	if (rs == NULL || rs->c == NULL)
		return -1;
	for (tries = 1;; tries++) {
		r = src_command(rs->c, "XACK %s %s %s", rs->key, JOBQ_GROUP,
		    m->entry);
		if (r == NULL)
			return -1;
		/*
		 * A failover or a full Redis refuses the ack for a moment:
		 * worth a few tries, as the entry would otherwise wait for
		 * visibility_timeout to be reclaimed and found done.
		 */
		if (!rconn_reply_is_outage(r) || tries == ACK_TRIES)
			break;
		log_debug("XACK %s: %s; trying again", m->entry, r->str);
		freeReplyObject(r);
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = (ms % 1000) * 1000000;
		nanosleep(&ts, NULL);
		ms *= 2;
	}
	if (r->type == REDIS_REPLY_ERROR)
		log_warnx("XACK %s: %s", m->entry, r->str);
	rc = r->type == REDIS_REPLY_INTEGER ? 0 : -1;
	freeReplyObject(r);
	return rc;
}

static int
src_retry(struct source *src, struct source_msg *m, const char *reason)
{
	struct redis_src *rs = src->priv;
	char err[256];

	if (rs == NULL || rs->c == NULL || !m->decoded)
		return -1;
	switch (jobq_requeue_owned(rs->c, src->cfg, src->queue, m->entry,
	    src->consumer, &m->job, err, sizeof(err))) {
	case -1:
		log_warnx("give back %s: %s", m->job.job_id, err);
		return -1;
	case 0:
		/* Reclaimed by another instance while we were cut off. */
		log_warnx("job %s is no longer ours; left to its new owner",
		    m->job.job_id);
		break;
	}
	return 0;
}

static int
src_dead_letter(struct source *src, struct source_msg *m, const char *reason,
    int attempts)
{
	struct redis_src *rs = src->priv;
	struct raw_fields *rf = m->raw;
	char err[256];

	if (rs == NULL || rs->c == NULL)
		return -1;
	if (jobq_dead_letter(rs->c, src->cfg, src->queue, m->entry,
	    m->decoded ? &m->job : NULL,
	    rf ? (const char *const *)rf->names : NULL,
	    rf ? (const char *const *)rf->values : NULL, rf ? rf->n : 0,
	    reason, attempts, err, sizeof(err)) == -1) {
		log_warnx("dead-letter %s: %s", m->entry, err);
		return -1;
	}
	return 0;
}

static int
src_defer(struct source *src, struct source_msg *m, redisContext *q, double due)
{
	struct redis_src *rs = src->priv;
	char err[256];

	if (rs == NULL || rs->c == NULL || !m->decoded)
		return -1;
	switch (jobq_defer_owned(rs->c, src->cfg, src->queue, m->entry,
	    src->consumer, &m->job, due, err, sizeof(err))) {
	case -1:
		log_warnx("defer %s: %s", m->job.job_id, err);
		return -1;
	case 0:
		log_warnx("job %s is no longer ours; left to its new owner",
		    m->job.job_id);
		break;
	}
	return 0;
}

static int
src_promote(struct source *src, redisContext *q, char *err, size_t errlen)
{
	struct redis_src *rs = src->priv;

	if (rs == NULL || rs->c == NULL) {
		snprintf(err, errlen, "not connected");
		return -1;
	}
	return jobq_promote(rs->c, src->cfg, src->queue, err, errlen);
}

static int
src_keepalive(struct source *src, struct source_msg *m)
{
	struct redis_src *rs = src->priv;
	char err[256];

	if (rs == NULL || rs->c == NULL)
		return -1;
	/* Claiming to ourselves resets the entry's idle time. */
	switch (jobq_keepalive_owned(rs->c, src->cfg, src->queue, m->entry,
	    src->consumer, err, sizeof(err))) {
	case 1:
		return 0;
	case 0:
		return 1;
	}
	if (rs->c->err == REDIS_ERR_OOM)
		worker_oom();
	log_warnx("%s", err);
	return -1;
}

static void
src_msg_clear(struct source *src, struct source_msg *m)
{
	raw_free(m->raw);
	m->raw = NULL;
	m->rawlen = 0;
}

const struct source_ops source_redis_ops = {
	.name = "redis",
	.open = src_open,
	.fetch = src_fetch,
	.ack = src_ack,
	.retry = src_retry,
	.defer = src_defer,
	.promote = src_promote,
	.dead_letter = src_dead_letter,
	.keepalive = src_keepalive,
	.msg_clear = src_msg_clear,
	.close = src_close,
};
