/*
 * The Redis Streams backend, administration side (queue.h): enqueueing
 * with the enqueue markers, a queue's depth, pending count and oldest job,
 * trimming the streams, the dead-letter stream, and putting back what a
 * dead worker's consumer still held.  Used by digestctl, the sampler and
 * the supervisor's requeue child; the worker's side is queue_redis.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "log.h"
#include "queue_redis.h"
#include "rconn.h"
#include "util.h"

#define QUEUE_REDIS_DLQ_PAGE 500	/* dead letters read per XRANGE */
#define QUEUE_REDIS_DLQ_FIELDS 32	/* fields of a dead letter looked at */
#define QUEUE_REDIS_ENSURED_MAX (CONFIG_MAX_POOLS + 2)

/* An administration handle's own state. */
struct queue_redis_admin {
	/* The streams whose group this handle has made sure of. */
	char ensured[QUEUE_REDIS_ENSURED_MAX][CONFIG_NAME_MAX];
	int nensured;
};

/* One dead letter's fields; the strings point into the XRANGE reply. */
struct queue_redis_letter {
	const char *id;
	size_t n;
	const char *names[QUEUE_REDIS_DLQ_FIELDS];
	const char *values[QUEUE_REDIS_DLQ_FIELDS];
};

/* The handle's queue Redis, or NULL with err while it has none. */
static redisContext *
queue_redis_conn(struct queue_admin *qa, char *err, size_t errlen)
{
	if (qa->qr == NULL)
		snprintf(err, errlen, "queue redis: not connected");
	return qa->qr;
}

/* An XADD/XRANGE id as its two numbers, for comparing ids. */
struct queue_redis_id {
	uint64_t ms;
	uint64_t seq;
};

static int
queue_redis_parse_id(const char *s, struct queue_redis_id *id)
{
	char *end;

	id->ms = strtoull(s, &end, 10);
	if (end == s)
		return -1;
	id->seq = 0;
	if (*end == '-')
		id->seq = strtoull(end + 1, &end, 10);
	return *end == '\0' ? 0 : -1;
}

static int
queue_redis_id_cmp(const struct queue_redis_id *a,
    const struct queue_redis_id *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

/* Read n pipelined replies; fn sees each (NULL after an I/O error). */
static int
queue_redis_read_replies(redisContext *c, size_t n, char *err, size_t errlen,
    void (*fn)(void *, size_t, redisReply *), void *arg)
{
	redisReply *r;
	size_t i;
	int rv = 0;

	for (i = 0; i < n; i++) {
		if (c->err != 0 || redisGetReply(c, (void **)&r) != REDIS_OK ||
		    r == NULL) {
			if (rv == 0)
				snprintf(err, errlen, "redis: %s",
				    c->err ? c->errstr : "no reply");
			fn(arg, i, NULL);
			rv = -1;
			continue;
		}
		if (r->type == REDIS_REPLY_ERROR && rv == 0) {
			snprintf(err, errlen, "redis: %s", r->str);
			rv = -1;
		}
		fn(arg, i, r);
		freeReplyObject(r);
	}
	return rv;
}

struct queue_redis_many {
	int *added;
	const size_t *idx;	/* reply i is about job idx[i] */
};

static void
queue_redis_marker_cb(void *arg, size_t i, redisReply *r)
{
	struct queue_redis_many *m = arg;

	/* SET ... NX answers OK when it set the marker, else nil. */
	m->added[i] = r != NULL && r->type == REDIS_REPLY_STATUS;
}

static void
queue_redis_xadd_cb(void *arg, size_t i, redisReply *r)
{
	struct queue_redis_many *m = arg;

	if (r == NULL || r->type != REDIS_REPLY_STRING)
		m->added[m->idx[i]] = -1;
}

static void
queue_redis_ignore_cb(void *arg, size_t i, redisReply *r)
{
}

static int
queue_redis_append(redisContext *c, struct queue_redis_argv *a)
{
	return redisAppendCommandArgv(c, a->argc, a->argv, a->argvlen) ==
	    REDIS_OK ? 0 : -1;
}

/*
 * Enqueue jobs[0..n) on the stream of queue, pipelined: one round trip for
 * the markers, one for the entries (queue.h's enqueue).
 */
static int
queue_redis_enqueue_jobs(redisContext *c, const struct config *cfg,
    const char *queue, const struct job *jobs, size_t n, int force,
    int *added, char *err, size_t errlen)
{
	struct queue_redis_argv a;
	struct queue_redis_many m;
	char key[QUEUE_REDIS_KEY_MAX], mkey[QUEUE_REDIS_KEY_MAX];
	char ttl[32], claim[32];
	char buf[JOB_ENCODE_MAX], scratch[128];
	size_t i, nx = 0, ndel = 0, *idx;
	int rv = 0, count = 0;

	memset(added, 0, n * sizeof(*added));
	if (n == 0)
		return 0;
	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	/*
	 * The markers first, as short claims: only the jobs whose marker we
	 * set are added, and a claim whose entry never made it (the
	 * connection died in between) lapses soon, so the next run adds the
	 * job instead of taking it for done.  The claim gets its full TTL in
	 * the same round trip as the entry.
	 */
	snprintf(claim, sizeof(claim), "%d", QUEUE_CLAIM_TTL_S);
	for (i = 0; i < n; i++) {
		if (queue_enq_key(mkey, sizeof(mkey), cfg, jobs[i].job_id) ==
		    -1) {
			snprintf(err, errlen, "job id too long");
			queue_redis_read_replies(c, i, err, errlen,
			    queue_redis_ignore_cb, NULL);
			return -1;
		}
		memset(&a, 0, sizeof(a));
		queue_redis_arg(&a, "SET");
		queue_redis_arg(&a, mkey);
		queue_redis_arg(&a, queue);
		if (!force)
			queue_redis_arg(&a, "NX");
		queue_redis_arg(&a, "EX");
		queue_redis_arg(&a, claim);
		if (queue_redis_append(c, &a) == -1) {
			snprintf(err, errlen, "redis: out of memory");
			return -1;
		}
	}
	m.added = added;
	m.idx = NULL;
	if (queue_redis_read_replies(c, n, err, errlen, queue_redis_marker_cb,
	    &m) == -1)
		rv = -1;

	idx = xcalloc(n, sizeof(*idx));
	for (i = 0; i < n; i++) {
		if (!added[i])
			continue;
		memset(&a, 0, sizeof(a));
		queue_redis_arg(&a, "XADD");
		queue_redis_arg(&a, key);
		queue_redis_arg(&a, "*");
		queue_redis_args_job(&a, &jobs[i], buf);
		if (queue_redis_append(c, &a) == -1) {
			snprintf(err, errlen, "redis: out of memory");
			added[i] = -1;
			rv = -1;
			continue;
		}
		idx[nx++] = i;
	}
	for (i = 0; i < nx; i++) {
		queue_enq_key(mkey, sizeof(mkey), cfg, jobs[idx[i]].job_id);
		snprintf(ttl, sizeof(ttl), "%" PRId64,
		    queue_enq_ttl(&jobs[idx[i]]));
		memset(&a, 0, sizeof(a));
		queue_redis_arg(&a, "EXPIRE");
		queue_redis_arg(&a, mkey);
		queue_redis_arg(&a, ttl);
		if (queue_redis_append(c, &a) == -1) {
			snprintf(err, errlen, "redis: out of memory");
			free(idx);
			return -1;
		}
	}
	m.idx = idx;
	if (queue_redis_read_replies(c, nx, err, errlen, queue_redis_xadd_cb,
	    &m) == -1)
		rv = -1;
	if (queue_redis_read_replies(c, nx, err, errlen, queue_redis_ignore_cb,
	    NULL) == -1)
		rv = -1;

	/*
	 * A marker without its entry would hide the job from every later
	 * run of the schedule: take those back (best effort; if the
	 * connection is gone, so is our chance).
	 */
	for (i = 0; i < n; i++) {
		if (added[i] != -1)
			continue;
		added[i] = 0;
		if (queue_enq_key(mkey, sizeof(mkey), cfg, jobs[i].job_id) ==
		    -1)
			continue;
		memset(&a, 0, sizeof(a));
		queue_redis_arg(&a, "DEL");
		queue_redis_arg(&a, mkey);
		if (c->err == 0 && queue_redis_append(c, &a) == 0)
			ndel++;
	}
	if (ndel > 0)
		queue_redis_read_replies(c, ndel, scratch, sizeof(scratch),
		    queue_redis_ignore_cb, NULL);
	free(idx);
	for (i = 0; i < n; i++)
		count += added[i];
	return rv == -1 ? -1 : count;
}

/* Make sure of queue's stream and group, once per handle. */
static int
queue_redis_ensure_once(struct queue_admin *qa, redisContext *c,
    const char *queue, char *err, size_t errlen)
{
	struct queue_redis_admin *ra;
	int i;

	if ((ra = qa->priv) == NULL)
		ra = qa->priv = xcalloc(1, sizeof(*ra));
	for (i = 0; i < ra->nensured; i++)
		if (strcmp(ra->ensured[i], queue) == 0)
			return 0;
	if (queue_redis_ensure(c, qa->cfg, queue, err, errlen) == -1)
		return -1;
	if (ra->nensured < QUEUE_REDIS_ENSURED_MAX)
		strlcpy(ra->ensured[ra->nensured++], queue, CONFIG_NAME_MAX);
	return 0;
}

int
queue_redis_enqueue(struct queue_admin *qa, const char *queue,
    const struct job *jobs, size_t n, int force, int *added, char *err,
    size_t errlen)
{
	redisContext *c;

	memset(added, 0, n * sizeof(*added));
	if ((c = queue_redis_conn(qa, err, errlen)) == NULL ||
	    queue_redis_ensure_once(qa, c, queue, err, errlen) == -1)
		return -1;
	return queue_redis_enqueue_jobs(c, qa->cfg, queue, jobs, n, force,
	    added, err, errlen);
}

/* The field named name in a flat [name, value, ...] reply, or NULL. */
static redisReply *
queue_redis_field(redisReply *r, const char *name)
{
	size_t i;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (i = 0; i + 1 < r->elements; i += 2)
		if (r->element[i]->type == REDIS_REPLY_STRING ||
		    r->element[i]->type == REDIS_REPLY_STATUS)
			if (strcmp(r->element[i]->str, name) == 0)
				return r->element[i + 1];
	return NULL;
}

struct queue_redis_group {
	int exists;			/* the stream exists */
	int has_group;
	int64_t pending;
	int64_t lag;			/* -1: unknown */
	int64_t entries_read;		/* -1: unknown */
	char last_delivered[64];
};

/* XINFO GROUPS for our group; a missing stream is not an error. */
static int
queue_redis_group_info(redisContext *c, const char *key,
    struct queue_redis_group *gi, char *err, size_t errlen)
{
	struct queue_redis_argv a = { 0 };
	redisReply *r, *g, *v;
	size_t i;

	memset(gi, 0, sizeof(*gi));
	gi->lag = gi->entries_read = -1;
	queue_redis_arg(&a, "XINFO");
	queue_redis_arg(&a, "GROUPS");
	queue_redis_arg(&a, key);
	r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
	if (r == NULL) {
		snprintf(err, errlen, "redis: %s",
		    c->err ? c->errstr : "no reply");
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		if (strstr(r->str, "no such key") != NULL) {
			freeReplyObject(r);
			return 0;
		}
		snprintf(err, errlen, "redis XINFO GROUPS %s: %s", key, r->str);
		freeReplyObject(r);
		return -1;
	}
	gi->exists = 1;
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		g = r->element[i];
		v = queue_redis_field(g, "name");
		if (v == NULL || v->type != REDIS_REPLY_STRING ||
		    strcmp(v->str, QUEUE_REDIS_GROUP) != 0)
			continue;
		gi->has_group = 1;
		if ((v = queue_redis_field(g, "pending")) != NULL &&
		    v->type == REDIS_REPLY_INTEGER)
			gi->pending = v->integer;
		if ((v = queue_redis_field(g, "lag")) != NULL &&
		    v->type == REDIS_REPLY_INTEGER)
			gi->lag = v->integer;
		if ((v = queue_redis_field(g, "entries-read")) != NULL &&
		    v->type == REDIS_REPLY_INTEGER)
			gi->entries_read = v->integer;
		if ((v = queue_redis_field(g, "last-delivered-id")) != NULL &&
		    v->type == REDIS_REPLY_STRING)
			strlcpy(gi->last_delivered, v->str,
			    sizeof(gi->last_delivered));
	}
	freeReplyObject(r);
	return 0;
}

/* The id of the oldest pending entry into id; 1 if any, 0 if none, -1. */
static int
queue_redis_oldest_pending(redisContext *c, const char *key, char *id,
    size_t idlen, char *err, size_t errlen)
{
	struct queue_redis_argv a = { 0 };
	redisReply *r;
	int rv = 0;

	queue_redis_arg(&a, "XPENDING");
	queue_redis_arg(&a, key);
	queue_redis_arg(&a, QUEUE_REDIS_GROUP);
	if ((r = queue_redis_run(c, &a, err, errlen)) == NULL)
		return -1;
	/* Summary form: [count, smallest id, greatest id, consumers]. */
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[0]->integer > 0 &&
	    r->element[1]->type == REDIS_REPLY_STRING) {
		strlcpy(id, r->element[1]->str, idlen);
		rv = 1;
	}
	freeReplyObject(r);
	return rv;
}

/*
 * Every worker process reads as its own consumer (host:pid:pool#slot), so
 * each restart of an instance leaves its old consumers in the group for
 * ever.  Remove those that hold no entry and have not been seen for
 * idle_ms; in one script, so that none can be handed an entry between the
 * check and the removal.  A live one removed while between jobs is
 * harmless: its next read creates it again.
 */
static const char queue_redis_forget_lua[] =
    "local n = 0\n"
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], "
    "ARGV[1])) do\n"
    "  local f = {}\n"
    "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
    "  if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

static int
queue_redis_forget_consumers(redisContext *c, const char *key, int64_t idle_ms,
    char *err, size_t errlen)
{
	struct queue_redis_argv a = { 0 };
	redisReply *r;
	char idle[32];

	snprintf(idle, sizeof(idle), "%lld", (long long)idle_ms);
	queue_redis_arg(&a, "EVAL");
	queue_redis_arg(&a, queue_redis_forget_lua);
	queue_redis_arg(&a, "1");
	queue_redis_arg(&a, key);
	queue_redis_arg(&a, QUEUE_REDIS_GROUP);
	queue_redis_arg(&a, idle);
	if ((r = queue_redis_run(c, &a, err, errlen)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* Trim acknowledged entries older than QUEUE_REDIS_TRIM_AGE_S (XTRIM MINID). */
int
queue_redis_trim(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	const struct config *cfg = qa->cfg;
	struct queue_redis_group gi;
	struct queue_redis_argv a = { 0 };
	struct queue_redis_id cut, other;
	redisContext *c;
	redisReply *r;
	char key[QUEUE_REDIS_KEY_MAX], id[64], minid[64];
	int n;

	if ((c = queue_redis_conn(qa, err, errlen)) == NULL)
		return -1;
	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	if (queue_redis_group_info(c, key, &gi, err, errlen) == -1)
		return -1;
	if (!gi.exists || !gi.has_group)
		return 0;
	cut.ms = (uint64_t)(now_real_ns() / 1000000) -
	    (uint64_t)QUEUE_REDIS_TRIM_AGE_S * 1000;
	cut.seq = 0;
	/*
	 * Only acknowledged entries may go: nothing at or after the oldest
	 * pending entry, nor after the last one delivered to the group.
	 */
	n = queue_redis_oldest_pending(c, key, id, sizeof(id), err, errlen);
	if (n == -1)
		return -1;
	if (n == 1 && queue_redis_parse_id(id, &other) == 0 &&
	    queue_redis_id_cmp(&other, &cut) < 0)
		cut = other;
	if (queue_redis_parse_id(gi.last_delivered, &other) == 0) {
		other.seq++;
		if (queue_redis_id_cmp(&other, &cut) < 0)
			cut = other;
	}
	snprintf(minid, sizeof(minid), "%" PRIu64 "-%" PRIu64, cut.ms, cut.seq);
	/*
	 * Exact, not "~": an approximate trim only drops whole radix nodes
	 * (100 entries), so a small stream would keep its old entries for
	 * ever.  Called once per schedule run, the cost is the entries removed.
	 */
	queue_redis_arg(&a, "XTRIM");
	queue_redis_arg(&a, key);
	queue_redis_arg(&a, "MINID");
	queue_redis_arg(&a, minid);
	if ((r = queue_redis_run(c, &a, err, errlen)) == NULL)
		return -1;
	freeReplyObject(r);
	return queue_redis_forget_consumers(c, key,
	    cfg->queue.visibility_timeout_ms, err, errlen);
}

/*
 * The enqueued_at of the first entry of XRANGE key start + COUNT 1 into
 * *at; 1 if found, 0 if none, -1 on error.
 */
static int
queue_redis_enqueued_at(redisContext *c, const char *key, const char *start,
    double *at, char *err, size_t errlen)
{
	struct queue_redis_argv a = { 0 };
	redisReply *r, *v;
	int rv = 0;

	queue_redis_arg(&a, "XRANGE");
	queue_redis_arg(&a, key);
	queue_redis_arg(&a, start);
	queue_redis_arg(&a, "+");
	queue_redis_arg(&a, "COUNT");
	queue_redis_arg(&a, "1");
	if ((r = queue_redis_run(c, &a, err, errlen)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 2) {
		v = queue_redis_field(r->element[0]->element[1], "enqueued_at");
		if (v != NULL && v->type == REDIS_REPLY_STRING &&
		    parse_double(v->str, at) == 0)
			rv = 1;
	}
	freeReplyObject(r);
	return rv;
}

/* Count entries after the group's last delivered id, by pages. */
static int
queue_redis_count_after(redisContext *c, const char *key, const char *last,
    int64_t *count, char *err, size_t errlen)
{
	struct queue_redis_argv a;
	redisReply *r;
	char start[80];
	int64_t n = 0;
	int pages;

	snprintf(start, sizeof(start), "(%s", last[0] ? last : "0-0");
	/* Bounded: a million entries at most, after which we say so. */
	for (pages = 0; pages < 100; pages++) {
		memset(&a, 0, sizeof(a));
		queue_redis_arg(&a, "XRANGE");
		queue_redis_arg(&a, key);
		queue_redis_arg(&a, start);
		queue_redis_arg(&a, "+");
		queue_redis_arg(&a, "COUNT");
		queue_redis_arg(&a, "10000");
		if ((r = queue_redis_run(c, &a, err, errlen)) == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
			freeReplyObject(r);
			break;
		}
		n += (int64_t)r->elements;
		snprintf(start, sizeof(start), "(%s",
		    r->element[r->elements - 1]->element[0]->str);
		freeReplyObject(r);
	}
	*count = n;
	return 0;
}

int
queue_redis_stats(struct queue_admin *qa, const char *queue,
    struct queue_stats *st, char *err, size_t errlen)
{
	const struct config *cfg = qa->cfg;
	struct queue_redis_group gi;
	struct queue_redis_argv a = { 0 };
	redisContext *c;
	redisReply *r;
	char key[QUEUE_REDIS_KEY_MAX], id[64], start[80];
	double at;
	int n;

	memset(st, 0, sizeof(*st));
	if ((c = queue_redis_conn(qa, err, errlen)) == NULL)
		return -1;
	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	if (queue_redis_group_info(c, key, &gi, err, errlen) == -1)
		return -1;
	if (!gi.exists)
		return 0;
	if (!gi.has_group) {
		/* Nothing was ever delivered: every entry waits. */
		queue_redis_arg(&a, "XLEN");
		queue_redis_arg(&a, key);
		if ((r = queue_redis_run(c, &a, err, errlen)) == NULL)
			return -1;
		st->depth = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
		freeReplyObject(r);
		if (queue_redis_enqueued_at(c, key, "-", &at, err, errlen) == 1)
			st->oldest_enqueued = at;
		return 0;
	}
	st->pending = gi.pending;
	if (gi.lag >= 0)
		st->depth = gi.lag;
	else if (queue_redis_count_after(c, key, gi.last_delivered, &st->depth,
	    err, errlen) == -1)
		return -1;

	if (st->depth > 0) {
		snprintf(start, sizeof(start), "(%s",
		    gi.last_delivered[0] ? gi.last_delivered : "0-0");
		if (queue_redis_enqueued_at(c, key, start, &at, err,
		    errlen) == 1)
			st->oldest_enqueued = at;
	}
	if (st->pending > 0) {
		if ((n = queue_redis_oldest_pending(c, key, id, sizeof(id), err,
		    errlen)) == -1)
			return -1;
		if (n == 1 && queue_redis_enqueued_at(c, key, id, &at, err,
		    errlen) == 1 && (st->oldest_enqueued == 0 ||
		    at < st->oldest_enqueued))
			st->oldest_enqueued = at;
	}
	return 0;
}

int64_t
queue_redis_dlq_len(struct queue_admin *qa, char *err, size_t errlen)
{
	struct queue_redis_argv a = { 0 };
	redisContext *c;
	redisReply *r;
	char key[QUEUE_REDIS_KEY_MAX];
	int64_t n;

	if ((c = queue_redis_conn(qa, err, errlen)) == NULL)
		return -1;
	if (rkey(key, sizeof(key), qa->cfg->redis.key_prefix, "digest:dlq") ==
	    NULL) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	queue_redis_arg(&a, "XLEN");
	queue_redis_arg(&a, key);
	if ((r = queue_redis_run(c, &a, err, errlen)) == NULL)
		return -1;
	n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
	if (n == -1)
		snprintf(err, errlen, "redis XLEN digest:dlq: unexpected "
		    "reply");
	freeReplyObject(r);
	return n;
}

/* The value of the field name of a dead letter, or NULL. */
static const char *
queue_redis_letter_get(const struct queue_redis_letter *e, const char *name)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		if (strcmp(e->names[i], name) == 0)
			return e->values[i];
	return NULL;
}

/* Read one XRANGE entry [id, [name, value, ...]] into e.  0 / -1. */
static int
queue_redis_letter_read(const redisReply *r, struct queue_redis_letter *e)
{
	const redisReply *f;
	size_t i;

	memset(e, 0, sizeof(*e));
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return -1;
	e->id = r->element[0]->str;
	f = r->element[1];
	if (f->type != REDIS_REPLY_ARRAY)
		return -1;
	for (i = 0; i + 1 < f->elements && e->n < QUEUE_REDIS_DLQ_FIELDS;
	    i += 2) {
		if (f->element[i]->type != REDIS_REPLY_STRING ||
		    f->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		e->names[e->n] = f->element[i]->str;
		e->values[e->n] = f->element[i + 1]->str;
		e->n++;
	}
	return 0;
}

/*
 * Requeue one dead letter: enqueue its job by force (its marker is no
 * reason to refuse it), give it a fresh count of attempts, then remove
 * the letter.  lt says what became of it: requeued, or kept (a letter
 * that is not a job, or names no queue, stays for a human to look at,
 * with kept saying why, in kbuf).  0, or -1 with err.
 */
static int
queue_redis_letter_requeue(struct queue_admin *qa, redisContext *c,
    const char *dkey, const struct queue_redis_letter *e, struct job *j,
    struct queue_letter *lt, char *kbuf, size_t klen, char *err,
    size_t errlen)
{
	redisReply *r;
	char why[256];
	int added;

	if (job_decode_fields(j, e->names, e->values, e->n, why,
	    sizeof(why)) == -1 || job_validate(j, why, sizeof(why)) == -1) {
		snprintf(kbuf, klen, "entry %s cannot be requeued: %s", e->id,
		    why);
		lt->kept = kbuf;
		return 0;
	}
	if (lt->queue == NULL || lt->queue[0] == '\0') {
		snprintf(kbuf, klen, "entry %s names no queue", e->id);
		lt->kept = kbuf;
		return 0;
	}
	j->enqueued_at = now_real();
	if (queue_redis_enqueue(qa, lt->queue, j, 1, 1, &added, err,
	    errlen) == -1 ||
	    checkpoint_reset(c, qa->cfg, j->job_id, err, errlen) == -1)
		return -1;
	r = redisCommand(c, "XDEL %s %s", dkey, e->id);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis XDEL: %s", r ? r->str : c->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	lt->job_id = j->job_id;
	lt->requeued = 1;
	return 0;
}

/* XDEL one dead letter.  0, or -1 with err. */
static int
queue_redis_letter_delete(redisContext *c, const char *dkey, const char *id,
    char *err, size_t errlen)
{
	redisReply *r;

	r = redisCommand(c, "XDEL %s %s", dkey, id);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis XDEL: %s", r ? r->str : c->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

int
queue_redis_dlq_walk(struct queue_admin *qa, enum queue_dlq_op op,
    const char *id, queue_letter_cb cb, void *arg, char *err, size_t errlen)
{
	struct queue_redis_letter e;
	struct queue_letter lt;
	struct job j;
	redisContext *c;
	redisReply *r;
	char key[QUEUE_REDIS_KEY_MAX], start[80], kept[512];
	size_t i;

	if ((c = queue_redis_conn(qa, err, errlen)) == NULL)
		return -1;
	if (rkey(key, sizeof(key), qa->cfg->redis.key_prefix, "digest:dlq") ==
	    NULL) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	strlcpy(start, "-", sizeof(start));
	for (;;) {
		r = redisCommand(c, "XRANGE %s %s + COUNT %d", key, start,
		    QUEUE_REDIS_DLQ_PAGE);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
			snprintf(err, errlen, "redis XRANGE: %s", r == NULL ?
			    c->errstr : r->type == REDIS_REPLY_ERROR ? r->str :
			    "bad reply");
			if (r)
				freeReplyObject(r);
			return -1;
		}
		if (r->elements == 0) {
			freeReplyObject(r);
			break;
		}
		for (i = 0; i < r->elements; i++) {
			if (queue_redis_letter_read(r->element[i], &e) == -1)
				continue;
			snprintf(start, sizeof(start), "(%s", e.id);
			memset(&lt, 0, sizeof(lt));
			lt.id = e.id;
			lt.job_id = queue_redis_letter_get(&e, "job_id");
			lt.queue = queue_redis_letter_get(&e, "queue");
			lt.reason = queue_redis_letter_get(&e, "reason");
			lt.attempts = queue_redis_letter_get(&e, "attempts");
			lt.failed_at = queue_redis_letter_get(&e, "failed_at");
			lt.nfields = e.n;
			lt.names = e.names;
			lt.values = e.values;
			if (id != NULL && strcmp(e.id, id) != 0 &&
			    (lt.job_id == NULL || strcmp(lt.job_id, id) != 0))
				continue;
			if (op == QUEUE_DLQ_REQUEUE &&
			    queue_redis_letter_requeue(qa, c, key, &e, &j, &lt,
			    kept, sizeof(kept), err, errlen) == -1) {
				freeReplyObject(r);
				return -1;
			}
			if (op == QUEUE_DLQ_DELETE) {
				if (queue_redis_letter_delete(c, key, e.id, err,
				    errlen) == -1) {
					freeReplyObject(r);
					return -1;
				}
				lt.deleted = 1;
			}
			if (cb != NULL)
				cb(arg, &lt);
		}
		/* The letters' strings pointed into it. */
		freeReplyObject(r);
	}
	return 0;
}

/* Put back (or dead-letter) one pending entry of a dead consumer. */
static int
queue_redis_give_back_entry(redisContext *c, const struct config *cfg,
    const char *queue, const char *key, const char *id, const char *consumer,
    const char *reason, char *err, size_t errlen)
{
	const char *names[64], *values[64];
	const redisReply *e, *f;
	redisReply *r;
	struct job j;
	char derr[256];
	size_t i, n = 0;
	int rc;

	r = redisCommand(c, "XRANGE %s %s %s", key, id, id);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "XRANGE: %s", r != NULL && r->str ?
		    r->str : c->errstr);
		if (r != NULL)
			freeReplyObject(r);
		return -1;
	}
	if (r->elements == 0) {
		/* Trimmed or deleted while pending: nothing left to run. */
		freeReplyObject(r);
		r = redisCommand(c, "XACK %s %s %s", key, QUEUE_REDIS_GROUP,
		    id);
		rc = r != NULL && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
		if (rc == -1)
			snprintf(err, errlen, "XACK: %s", c->errstr);
		if (r != NULL)
			freeReplyObject(r);
		return rc;
	}
	e = r->element[0];
	if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
	    (f = e->element[1])->type == REDIS_REPLY_ARRAY) {
		for (i = 0; i + 1 < f->elements && n < 64; i += 2, n++) {
			names[n] = f->element[i]->str ? f->element[i]->str : "";
			values[n] = f->element[i + 1]->str ?
			    f->element[i + 1]->str : "";
		}
	}
	if (job_decode_fields(&j, names, values, n, derr, sizeof(derr)) == 0) {
		rc = queue_redis_give_back_owned(c, cfg, queue, id, consumer,
		    &j, err, errlen);
		if (rc == 1 && checkpoint_note_error(c, cfg, j.job_id,
		    reason) == -1)
			rc = -1;
		else if (rc == 1)
			rc = 0;
	} else
		rc = queue_redis_dlq_add(c, cfg, queue, id, NULL, names,
		    values, n, derr, 1, err, errlen);
	freeReplyObject(r);	/* names and values pointed into it */
	return rc;
}

int
queue_redis_give_back_consumer(redisContext *c, const struct config *cfg,
    const char *queue, const char *consumer, const char *reason, char *err,
    size_t errlen)
{
	char key[QUEUE_REDIS_KEY_MAX], id[64];
	redisReply *r;
	size_t i;
	int n = 0, rounds;

	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	/* Each round removes what it lists; the bound is a safety net. */
	for (rounds = 0; rounds < 1000; rounds++) {
		r = redisCommand(c, "XPENDING %s %s - + 64 %s", key,
		    QUEUE_REDIS_GROUP, consumer);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
			snprintf(err, errlen, "XPENDING: %s", r != NULL &&
			    r->str ? r->str : c->errstr);
			if (r != NULL)
				freeReplyObject(r);
			return -1;
		}
		if (r->elements == 0) {
			freeReplyObject(r);
			break;
		}
		for (i = 0; i < r->elements; i++) {
			if (r->element[i]->type != REDIS_REPLY_ARRAY ||
			    r->element[i]->elements < 1 ||
			    r->element[i]->element[0]->str == NULL)
				continue;
			strlcpy(id, r->element[i]->element[0]->str, sizeof(id));
			if (queue_redis_give_back_entry(c, cfg, queue, key, id,
			    consumer, reason, err, errlen) == -1) {
				freeReplyObject(r);
				return -1;
			}
			n++;
		}
		freeReplyObject(r);
	}
	r = redisCommand(c, "XGROUP DELCONSUMER %s %s %s", key,
	    QUEUE_REDIS_GROUP, consumer);
	if (r != NULL)
		freeReplyObject(r);	/* no group or consumer: fine */
	return n;
}

enum queue_orphan_plan
queue_redis_orphaned(struct scoreboard *sb, const struct queue_orphan *o)
{
	/*
	 * What its consumer holds stays pending until put back: the job in
	 * its slot, and, after a death that was not a clean exit, maybe an
	 * entry delivered an instant before it could record it.
	 */
	if (o->has_job == 0 && o->clean)
		return QUEUE_ORPHAN_NONE;
	return QUEUE_ORPHAN_GIVE_BACK;
}

void
queue_redis_admin_clear(struct queue_admin *qa)
{
	free(qa->priv);
	qa->priv = NULL;
}
