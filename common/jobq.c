/*
 * The Redis Streams job queue (SPEC 3 and 4): one stream per queue with
 * the consumer group "digestd", the dead-letter stream, the enqueue
 * markers that make scheduling idempotent, and the per-job hash where the
 * reason of a failed attempt is kept.
 *
 * Every call is blocking and sends its commands on the connection it is
 * given, which must be the queue Redis.  Arguments go through
 * redisCommandArgv so that nothing in a job (or a raw dead letter) is ever
 * interpreted by a format string.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "delayq.h"
#include "jobq.h"
#include "log.h"
#include "rconn.h"
#include "util.h"

#define JOBQ_KEY_MAX 512
#define JOBQ_ARGV_MAX 64
#define JOBQ_CLAIM_TTL_S 300		/* a marker before its entry */

/* A command line for redisCommandArgv; strings are borrowed, not owned. */
struct jobq_argv {
	int argc;
	const char *argv[JOBQ_ARGV_MAX];
	size_t argvlen[JOBQ_ARGV_MAX];
};

/* An XADD/XRANGE id as its two numbers, for comparing ids. */
struct jobq_id {
	uint64_t ms;
	uint64_t seq;
};

static void
jobq_arg(struct jobq_argv *a, const char *s)
{
	if (a->argc < JOBQ_ARGV_MAX) {
		a->argv[a->argc] = s;
		a->argvlen[a->argc] = strlen(s);
		a->argc++;
	}
}

static redisReply *
jobq_run(redisContext *c, struct jobq_argv *a, char *err, size_t errlen)
{
	redisReply *r;

	if (a->argc >= JOBQ_ARGV_MAX) {
		snprintf(err, errlen, "redis: command too long");
		return NULL;
	}
	r = redisCommandArgv(c, a->argc, a->argv, a->argvlen);
	if (r == NULL) {
		snprintf(err, errlen, "redis: %s",
		    c->err ? c->errstr : "no reply");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis %s: %s", a->argv[0], r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static int
jobq_qkey(char *buf, size_t len, const struct config *cfg, const char *queue)
{
	return rkey(buf, len, cfg->redis.key_prefix, "digest:q:%s", queue) ==
	    NULL ? -1 : 0;
}

static int
jobq_parse_id(const char *s, struct jobq_id *id)
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
jobq_id_cmp(const struct jobq_id *a, const struct jobq_id *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

static int64_t
jobq_period_s(const char *period)
{
	return strcmp(period, "weekly") == 0 ? 7 * 86400 : 86400;
}

int
jobq_ensure(redisContext *c, const struct config *cfg, const char *queue,
    char *err, size_t errlen)
{
	struct jobq_argv a = { 0 };
	redisReply *r;
	char key[JOBQ_KEY_MAX];

	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	jobq_arg(&a, "XGROUP");
	jobq_arg(&a, "CREATE");
	jobq_arg(&a, key);
	jobq_arg(&a, JOBQ_GROUP);
	jobq_arg(&a, "0");
	jobq_arg(&a, "MKSTREAM");
	r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
	if (r == NULL) {
		snprintf(err, errlen, "redis: %s",
		    c->err ? c->errstr : "no reply");
		return -1;
	}
	/* Whoever touched the stream first created the group: that is fine. */
	if (r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "BUSYGROUP", 9) != 0) {
		snprintf(err, errlen, "redis XGROUP CREATE %s: %s", key,
		    r->str);
		freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

/* Append the job's fields to a; values point into buf. */
static void
jobq_args_job(struct jobq_argv *a, const struct job *j, char *buf)
{
	const char *values[JOB_NFIELDS];
	int i, n;

	n = job_encode_fields(j, buf, values);
	for (i = 0; i < n; i++) {
		jobq_arg(a, job_field_names[i]);
		jobq_arg(a, values[i]);
	}
}

int
jobq_enqueue(redisContext *c, const struct config *cfg, const char *queue,
    const struct job *j, int force, char *err, size_t errlen)
{
	int added;

	if (jobq_enqueue_many(c, cfg, queue, j, 1, force, &added, err,
	    errlen) == -1)
		return -1;
	return added;
}

/* Read n pipelined replies; fn sees each (NULL after an I/O error). */
static int
jobq_read_replies(redisContext *c, size_t n, char *err, size_t errlen,
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

struct jobq_many {
	int *added;
	const size_t *idx;	/* reply i is about job idx[i] */
};

static void
jobq_marker_cb(void *arg, size_t i, redisReply *r)
{
	struct jobq_many *m = arg;

	/* SET ... NX answers OK when it set the marker, else nil. */
	m->added[i] = r != NULL && r->type == REDIS_REPLY_STATUS;
}

static void
jobq_xadd_cb(void *arg, size_t i, redisReply *r)
{
	struct jobq_many *m = arg;

	if (r == NULL || r->type != REDIS_REPLY_STRING)
		m->added[m->idx[i]] = -1;
}

static void
jobq_ignore_cb(void *arg, size_t i, redisReply *r)
{
}

static int
jobq_append(redisContext *c, struct jobq_argv *a)
{
	return redisAppendCommandArgv(c, a->argc, a->argv, a->argvlen) ==
	    REDIS_OK ? 0 : -1;
}

int
jobq_enqueue_many(redisContext *c, const struct config *cfg, const char *queue,
    const struct job *jobs, size_t n, int force, int *added, char *err,
    size_t errlen)
{
	struct jobq_argv a;
	struct jobq_many m;
	char key[JOBQ_KEY_MAX], mkey[JOBQ_KEY_MAX], ttl[32], claim[32];
	char buf[JOB_ENCODE_MAX], scratch[128];
	size_t i, nx = 0, ndel = 0, *idx;
	int rv = 0, count = 0;

	memset(added, 0, n * sizeof(*added));
	if (n == 0)
		return 0;
	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1) {
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
	snprintf(claim, sizeof(claim), "%d", JOBQ_CLAIM_TTL_S);
	for (i = 0; i < n; i++) {
		if (rkey(mkey, sizeof(mkey), cfg->redis.key_prefix,
		    "digest:enq:%s", jobs[i].job_id) == NULL) {
			snprintf(err, errlen, "job id too long");
			jobq_read_replies(c, i, err, errlen, jobq_ignore_cb,
			    NULL);
			return -1;
		}
		memset(&a, 0, sizeof(a));
		jobq_arg(&a, "SET");
		jobq_arg(&a, mkey);
		jobq_arg(&a, queue);
		if (!force)
			jobq_arg(&a, "NX");
		jobq_arg(&a, "EX");
		jobq_arg(&a, claim);
		if (jobq_append(c, &a) == -1) {
			snprintf(err, errlen, "redis: out of memory");
			return -1;
		}
	}
	m.added = added;
	m.idx = NULL;
	if (jobq_read_replies(c, n, err, errlen, jobq_marker_cb, &m) == -1)
		rv = -1;

	idx = xcalloc(n, sizeof(*idx));
	for (i = 0; i < n; i++) {
		if (!added[i])
			continue;
		memset(&a, 0, sizeof(a));
		jobq_arg(&a, "XADD");
		jobq_arg(&a, key);
		jobq_arg(&a, "*");
		jobq_args_job(&a, &jobs[i], buf);
		if (jobq_append(c, &a) == -1) {
			snprintf(err, errlen, "redis: out of memory");
			added[i] = -1;
			rv = -1;
			continue;
		}
		idx[nx++] = i;
	}
	for (i = 0; i < nx; i++) {
		rkey(mkey, sizeof(mkey), cfg->redis.key_prefix, "digest:enq:%s",
		    jobs[idx[i]].job_id);
		snprintf(ttl, sizeof(ttl), "%" PRId64,
		    2 * jobq_period_s(jobs[idx[i]].period));
		memset(&a, 0, sizeof(a));
		jobq_arg(&a, "EXPIRE");
		jobq_arg(&a, mkey);
		jobq_arg(&a, ttl);
		if (jobq_append(c, &a) == -1) {
			snprintf(err, errlen, "redis: out of memory");
			free(idx);
			return -1;
		}
	}
	m.idx = idx;
	if (jobq_read_replies(c, nx, err, errlen, jobq_xadd_cb, &m) == -1)
		rv = -1;
	if (jobq_read_replies(c, nx, err, errlen, jobq_ignore_cb, NULL) == -1)
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
		if (rkey(mkey, sizeof(mkey), cfg->redis.key_prefix,
		    "digest:enq:%s", jobs[i].job_id) == NULL)
			continue;
		memset(&a, 0, sizeof(a));
		jobq_arg(&a, "DEL");
		jobq_arg(&a, mkey);
		if (c->err == 0 && jobq_append(c, &a) == 0)
			ndel++;
	}
	if (ndel > 0)
		jobq_read_replies(c, ndel, scratch, sizeof(scratch),
		    jobq_ignore_cb, NULL);
	free(idx);
	for (i = 0; i < n; i++)
		count += added[i];
	return rv == -1 ? -1 : count;
}

/*
 * Run the commands queued in cmds (each a struct jobq_argv) inside
 * MULTI/EXEC, and check that none of them failed.
 */
static int
jobq_transaction(redisContext *c, struct jobq_argv *cmds, int n, char *err,
    size_t errlen)
{
	redisReply *r;
	int i, rv = 0;
	size_t k;

	if (redisAppendCommand(c, "MULTI") != REDIS_OK)
		goto ioerr;
	for (i = 0; i < n; i++)
		if (redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv,
		    cmds[i].argvlen) != REDIS_OK)
			goto ioerr;
	if (redisAppendCommand(c, "EXEC") != REDIS_OK)
		goto ioerr;
	/* MULTI, one QUEUED per command, then EXEC: read them all. */
	for (i = 0; i < n + 2; i++) {
		if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL)
			goto ioerr;
		if (r->type == REDIS_REPLY_ERROR && rv == 0) {
			snprintf(err, errlen, "redis transaction: %s", r->str);
			rv = -1;
		}
		if (i == n + 1 && rv == 0) {
			if (r->type != REDIS_REPLY_ARRAY) {
				snprintf(err, errlen, "redis EXEC: aborted");
				rv = -1;
			} else {
				for (k = 0; k < r->elements; k++) {
					if (r->element[k]->type ==
					    REDIS_REPLY_ERROR) {
						snprintf(err, errlen,
						    "redis %s: %s",
						    cmds[k].argv[0],
						    r->element[k]->str);
						rv = -1;
						break;
					}
				}
			}
		}
		freeReplyObject(r);
	}
	return rv;
ioerr:
	snprintf(err, errlen, "redis: %s", c->err ? c->errstr : "no reply");
	return -1;
}

int
jobq_dead_letter(redisContext *c, const struct config *cfg, const char *queue,
    const char *entry, const struct job *j, const char *const *names,
    const char *const *values, size_t n, const char *reason, int attempts,
    char *err, size_t errlen)
{
	struct jobq_argv cmds[2];
	char key[JOBQ_KEY_MAX], dkey[JOBQ_KEY_MAX], buf[JOB_ENCODE_MAX];
	char maxlen[32], natt[32], failed[32];
	size_t i;

	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1 ||
	    rkey(dkey, sizeof(dkey), cfg->redis.key_prefix, "digest:dlq") ==
	    NULL) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	snprintf(maxlen, sizeof(maxlen), "%d", JOBQ_DLQ_MAXLEN);
	snprintf(natt, sizeof(natt), "%d", attempts);
	snprintf(failed, sizeof(failed), "%.6f", now_real());
	memset(cmds, 0, sizeof(cmds));
	jobq_arg(&cmds[0], "XADD");
	jobq_arg(&cmds[0], dkey);
	jobq_arg(&cmds[0], "MAXLEN");
	jobq_arg(&cmds[0], "~");
	jobq_arg(&cmds[0], maxlen);
	jobq_arg(&cmds[0], "*");
	if (j != NULL)
		jobq_args_job(&cmds[0], j, buf);
	else {
		/* Keep what arrived, minus our own fields, within the limit. */
		for (i = 0; i < n && cmds[0].argc + 2 + 8 < JOBQ_ARGV_MAX;
		    i++) {
			if (strcmp(names[i], "reason") == 0 ||
			    strcmp(names[i], "attempts") == 0 ||
			    strcmp(names[i], "failed_at") == 0 ||
			    strcmp(names[i], "queue") == 0)
				continue;
			jobq_arg(&cmds[0], names[i]);
			jobq_arg(&cmds[0], values[i]);
		}
	}
	jobq_arg(&cmds[0], "reason");
	jobq_arg(&cmds[0], reason != NULL ? reason : "unknown");
	jobq_arg(&cmds[0], "attempts");
	jobq_arg(&cmds[0], natt);
	jobq_arg(&cmds[0], "failed_at");
	jobq_arg(&cmds[0], failed);
	jobq_arg(&cmds[0], "queue");
	jobq_arg(&cmds[0], queue);
	if (cmds[0].argc >= JOBQ_ARGV_MAX) {
		snprintf(err, errlen, "redis: command too long");
		return -1;
	}
	if (entry != NULL) {
		jobq_arg(&cmds[1], "XACK");
		jobq_arg(&cmds[1], key);
		jobq_arg(&cmds[1], JOBQ_GROUP);
		jobq_arg(&cmds[1], entry);
	}
	return jobq_transaction(c, cmds, entry != NULL ? 2 : 1, err, errlen);
}

/* The field named name in a flat [name, value, ...] reply, or NULL. */
static redisReply *
jobq_field(redisReply *r, const char *name)
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

struct jobq_group_info {
	int exists;			/* the stream exists */
	int has_group;
	int64_t pending;
	int64_t lag;			/* -1: unknown */
	int64_t entries_read;		/* -1: unknown */
	char last_delivered[64];
};

/* XINFO GROUPS for our group; a missing stream is not an error. */
static int
jobq_group_info(redisContext *c, const char *key, struct jobq_group_info *gi,
    char *err, size_t errlen)
{
	struct jobq_argv a = { 0 };
	redisReply *r, *g, *v;
	size_t i;

	memset(gi, 0, sizeof(*gi));
	gi->lag = gi->entries_read = -1;
	jobq_arg(&a, "XINFO");
	jobq_arg(&a, "GROUPS");
	jobq_arg(&a, key);
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
		v = jobq_field(g, "name");
		if (v == NULL || v->type != REDIS_REPLY_STRING ||
		    strcmp(v->str, JOBQ_GROUP) != 0)
			continue;
		gi->has_group = 1;
		if ((v = jobq_field(g, "pending")) != NULL &&
		    v->type == REDIS_REPLY_INTEGER)
			gi->pending = v->integer;
		if ((v = jobq_field(g, "lag")) != NULL &&
		    v->type == REDIS_REPLY_INTEGER)
			gi->lag = v->integer;
		if ((v = jobq_field(g, "entries-read")) != NULL &&
		    v->type == REDIS_REPLY_INTEGER)
			gi->entries_read = v->integer;
		if ((v = jobq_field(g, "last-delivered-id")) != NULL &&
		    v->type == REDIS_REPLY_STRING)
			strlcpy(gi->last_delivered, v->str,
			    sizeof(gi->last_delivered));
	}
	freeReplyObject(r);
	return 0;
}

/* The id of the oldest pending entry into id; 1 if any, 0 if none, -1. */
static int
jobq_oldest_pending(redisContext *c, const char *key, char *id, size_t idlen,
    char *err, size_t errlen)
{
	struct jobq_argv a = { 0 };
	redisReply *r;
	int rv = 0;

	jobq_arg(&a, "XPENDING");
	jobq_arg(&a, key);
	jobq_arg(&a, JOBQ_GROUP);
	if ((r = jobq_run(c, &a, err, errlen)) == NULL)
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
static const char jobq_forget_lua[] =
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
jobq_forget_consumers(redisContext *c, const char *key, int64_t idle_ms,
    char *err, size_t errlen)
{
	struct jobq_argv a = { 0 };
	redisReply *r;
	char idle[32];

	snprintf(idle, sizeof(idle), "%lld", (long long)idle_ms);
	jobq_arg(&a, "EVAL");
	jobq_arg(&a, jobq_forget_lua);
	jobq_arg(&a, "1");
	jobq_arg(&a, key);
	jobq_arg(&a, JOBQ_GROUP);
	jobq_arg(&a, idle);
	if ((r = jobq_run(c, &a, err, errlen)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

int
jobq_trim(redisContext *c, const struct config *cfg, const char *queue,
    char *err, size_t errlen)
{
	struct jobq_group_info gi;
	struct jobq_argv a = { 0 };
	struct jobq_id cut, other;
	redisReply *r;
	char key[JOBQ_KEY_MAX], id[64], minid[64];
	int n;

	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	if (jobq_group_info(c, key, &gi, err, errlen) == -1)
		return -1;
	if (!gi.exists || !gi.has_group)
		return 0;
	cut.ms = (uint64_t)(now_real_ns() / 1000000) -
	    (uint64_t)JOBQ_TRIM_AGE_S * 1000;
	cut.seq = 0;
	/*
	 * Only acknowledged entries may go: nothing at or after the oldest
	 * pending entry, nor after the last one delivered to the group.
	 */
	n = jobq_oldest_pending(c, key, id, sizeof(id), err, errlen);
	if (n == -1)
		return -1;
	if (n == 1 && jobq_parse_id(id, &other) == 0 &&
	    jobq_id_cmp(&other, &cut) < 0)
		cut = other;
	if (jobq_parse_id(gi.last_delivered, &other) == 0) {
		other.seq++;
		if (jobq_id_cmp(&other, &cut) < 0)
			cut = other;
	}
	snprintf(minid, sizeof(minid), "%" PRIu64 "-%" PRIu64, cut.ms, cut.seq);
	/*
	 * Exact, not "~": an approximate trim only drops whole radix nodes
	 * (100 entries), so a small stream would keep its old entries for
	 * ever.  Called once per schedule run, the cost is the entries removed.
	 */
	jobq_arg(&a, "XTRIM");
	jobq_arg(&a, key);
	jobq_arg(&a, "MINID");
	jobq_arg(&a, minid);
	if ((r = jobq_run(c, &a, err, errlen)) == NULL)
		return -1;
	freeReplyObject(r);
	return jobq_forget_consumers(c, key, cfg->queue.visibility_timeout_ms,
	    err, errlen);
}

/*
 * The enqueued_at of the first entry of XRANGE key start + COUNT 1 into
 * *at; 1 if found, 0 if none, -1 on error.
 */
static int
jobq_enqueued_at(redisContext *c, const char *key, const char *start,
    double *at, char *err, size_t errlen)
{
	struct jobq_argv a = { 0 };
	redisReply *r, *v;
	int rv = 0;

	jobq_arg(&a, "XRANGE");
	jobq_arg(&a, key);
	jobq_arg(&a, start);
	jobq_arg(&a, "+");
	jobq_arg(&a, "COUNT");
	jobq_arg(&a, "1");
	if ((r = jobq_run(c, &a, err, errlen)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 2) {
		v = jobq_field(r->element[0]->element[1], "enqueued_at");
		if (v != NULL && v->type == REDIS_REPLY_STRING &&
		    parse_double(v->str, at) == 0)
			rv = 1;
	}
	freeReplyObject(r);
	return rv;
}

/* Count entries after the group's last delivered id, by pages. */
static int
jobq_count_after(redisContext *c, const char *key, const char *last,
    int64_t *count, char *err, size_t errlen)
{
	struct jobq_argv a;
	redisReply *r;
	char start[80];
	int64_t n = 0;
	int pages;

	snprintf(start, sizeof(start), "(%s", last[0] ? last : "0-0");
	/* Bounded: a million entries at most, after which we say so. */
	for (pages = 0; pages < 100; pages++) {
		memset(&a, 0, sizeof(a));
		jobq_arg(&a, "XRANGE");
		jobq_arg(&a, key);
		jobq_arg(&a, start);
		jobq_arg(&a, "+");
		jobq_arg(&a, "COUNT");
		jobq_arg(&a, "10000");
		if ((r = jobq_run(c, &a, err, errlen)) == NULL)
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
jobq_stats(redisContext *c, const struct config *cfg, const char *queue,
    struct jobq_stats *st, char *err, size_t errlen)
{
	struct jobq_group_info gi;
	struct jobq_argv a = { 0 };
	redisReply *r;
	char key[JOBQ_KEY_MAX], id[64], start[80];
	double at;
	int n;

	memset(st, 0, sizeof(*st));
	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	if (jobq_group_info(c, key, &gi, err, errlen) == -1)
		return -1;
	if (!gi.exists)
		return 0;
	if (!gi.has_group) {
		/* Nothing was ever delivered: every entry waits. */
		jobq_arg(&a, "XLEN");
		jobq_arg(&a, key);
		if ((r = jobq_run(c, &a, err, errlen)) == NULL)
			return -1;
		st->depth = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
		freeReplyObject(r);
		if (jobq_enqueued_at(c, key, "-", &at, err, errlen) == 1)
			st->oldest_enqueued = at;
		return 0;
	}
	st->pending = gi.pending;
	if (gi.lag >= 0)
		st->depth = gi.lag;
	else if (jobq_count_after(c, key, gi.last_delivered, &st->depth, err,
	    errlen) == -1)
		return -1;

	if (st->depth > 0) {
		snprintf(start, sizeof(start), "(%s",
		    gi.last_delivered[0] ? gi.last_delivered : "0-0");
		if (jobq_enqueued_at(c, key, start, &at, err, errlen) == 1)
			st->oldest_enqueued = at;
	}
	if (st->pending > 0) {
		if ((n = jobq_oldest_pending(c, key, id, sizeof(id), err,
		    errlen)) == -1)
			return -1;
		if (n == 1 && jobq_enqueued_at(c, key, id, &at, err,
		    errlen) == 1 && (st->oldest_enqueued == 0 ||
		    at < st->oldest_enqueued))
			st->oldest_enqueued = at;
	}
	return 0;
}

int64_t
jobq_dlq_len(redisContext *c, const struct config *cfg)
{
	struct jobq_argv a = { 0 };
	redisReply *r;
	char key[JOBQ_KEY_MAX], err[256];
	int64_t n;

	if (rkey(key, sizeof(key), cfg->redis.key_prefix, "digest:dlq") == NULL)
		return -1;
	jobq_arg(&a, "XLEN");
	jobq_arg(&a, key);
	if ((r = jobq_run(c, &a, err, sizeof(err))) == NULL)
		return -1;
	n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
	freeReplyObject(r);
	return n;
}

void
jobq_consumer_name(char *buf, size_t len, int supervisor_pid, const char *pool,
    int pos, uint64_t gen)
{
	char host[64];

	if (gethostname(host, sizeof(host)) == -1)
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len, "%s:%d:%s#%d.%" PRIu64, host, supervisor_pid, pool,
	    pos, gen);
}

/* Put back (or dead-letter) one pending entry of a dead consumer. */
static int
jobq_requeue_entry(redisContext *c, const struct config *cfg,
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
		r = redisCommand(c, "XACK %s %s %s", key, JOBQ_GROUP, id);
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
		rc = jobq_requeue_owned(c, cfg, queue, id, consumer, &j, err,
		    errlen);
		if (rc == 1 && checkpoint_note_error(c, cfg, j.job_id, reason) == -1)
			rc = -1;
		else if (rc == 1)
			rc = 0;
	} else
		rc = jobq_dead_letter(c, cfg, queue, id, NULL, names, values,
		    n, derr, 1, err, errlen);
	freeReplyObject(r);	/* names and values pointed into it */
	return rc;
}

int
jobq_requeue_consumer(redisContext *c, const struct config *cfg,
    const char *queue, const char *consumer, const char *reason, char *err,
    size_t errlen)
{
	char key[JOBQ_KEY_MAX], id[64];
	redisReply *r;
	size_t i;
	int n = 0, rounds;

	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	/* Each round removes what it lists; the bound is a safety net. */
	for (rounds = 0; rounds < 1000; rounds++) {
		r = redisCommand(c, "XPENDING %s %s - + 64 %s", key, JOBQ_GROUP,
		    consumer);
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
			if (jobq_requeue_entry(c, cfg, queue, key, id,
			    consumer, reason, err, errlen) == -1) {
				freeReplyObject(r);
				return -1;
			}
			n++;
		}
		freeReplyObject(r);
	}
	r = redisCommand(c, "XGROUP DELCONSUMER %s %s %s", key, JOBQ_GROUP,
	    consumer);
	if (r != NULL)
		freeReplyObject(r);	/* a missing group or consumer is fine */
	return n;
}

/*
 * The outcome of one of our scripts, which answer 1 (done) or 0 (not
 * needed): 1, 0, or -1 with err.  Frees the reply.
 */
static int
jobq_script_result(redisContext *c, redisReply *r, const char *what,
    char *err, size_t errlen)
{
	int rc;

	if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
		snprintf(err, errlen, "%s: %s", what, r != NULL && r->str ?
		    r->str : c->errstr);
		if (r != NULL)
			freeReplyObject(r);
		return -1;
	}
	rc = r->integer == 1;
	freeReplyObject(r);
	return rc;
}

/* KEYS[1] the stream; ARGV: group, entry, consumer, then the job's fields. */
static const char jobq_requeue_owned_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "return 1\n";

int
jobq_requeue_owned(redisContext *c, const struct config *cfg,
    const char *queue, const char *entry, const char *consumer,
    const struct job *j, char *err, size_t errlen)
{
	struct jobq_argv a;
	char key[JOBQ_KEY_MAX], buf[JOB_ENCODE_MAX];
	redisReply *r;

	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	memset(&a, 0, sizeof(a));
	jobq_arg(&a, "EVAL");
	jobq_arg(&a, jobq_requeue_owned_lua);
	jobq_arg(&a, "1");
	jobq_arg(&a, key);
	jobq_arg(&a, JOBQ_GROUP);
	jobq_arg(&a, entry);
	jobq_arg(&a, consumer);
	jobq_args_job(&a, j, buf);
	r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
	return jobq_script_result(c, r, "requeue", err, errlen);
}

/* KEYS[1] the stream; ARGV: group, entry, consumer. */
static const char jobq_keepalive_owned_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')\n"
    "return 1\n";

int
jobq_keepalive_owned(redisContext *c, const struct config *cfg,
    const char *queue, const char *entry, const char *consumer, char *err,
    size_t errlen)
{
	struct jobq_argv a;
	char key[JOBQ_KEY_MAX];
	redisReply *r;

	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	memset(&a, 0, sizeof(a));
	jobq_arg(&a, "EVAL");
	jobq_arg(&a, jobq_keepalive_owned_lua);
	jobq_arg(&a, "1");
	jobq_arg(&a, key);
	jobq_arg(&a, JOBQ_GROUP);
	jobq_arg(&a, entry);
	jobq_arg(&a, consumer);
	r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
	return jobq_script_result(c, r, "keepalive", err, errlen);
}

/*
 * KEYS[1] the stream, KEYS[2] the delayed set; ARGV: group, entry,
 * consumer, due, the job as member, the set's TTL.
 */
static const char jobq_defer_owned_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[6])\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "return 1\n";

int
jobq_defer_owned(redisContext *c, const struct config *cfg, const char *queue,
    const char *entry, const char *consumer, const struct job *j, double due,
    char *err, size_t errlen)
{
	struct jobq_argv a;
	char key[JOBQ_KEY_MAX], dkey[JOBQ_KEY_MAX], score[48], ttl[16];
	redisReply *r;
	char *member;

	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1 ||
	    delayq_key(dkey, sizeof(dkey), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	if ((member = delayq_member(j)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(score, sizeof(score), "%.3f", due);
	snprintf(ttl, sizeof(ttl), "%d", DELAYQ_TTL_S);
	memset(&a, 0, sizeof(a));
	jobq_arg(&a, "EVAL");
	jobq_arg(&a, jobq_defer_owned_lua);
	jobq_arg(&a, "2");
	jobq_arg(&a, key);
	jobq_arg(&a, dkey);
	jobq_arg(&a, JOBQ_GROUP);
	jobq_arg(&a, entry);
	jobq_arg(&a, consumer);
	jobq_arg(&a, score);
	jobq_arg(&a, member);
	jobq_arg(&a, ttl);
	r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
	free(member);
	return jobq_script_result(c, r, "defer", err, errlen);
}

/*
 * KEYS[1] the delayed set, KEYS[2] the stream; ARGV: the member, then the
 * job's fields.  The member leaves the set and the job enters the stream
 * in one step, so a due job is moved exactly once, whoever moves it.
 */
static const char jobq_promote_lua[] =
    "if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))\n"
    "return 1\n";

int
jobq_promote(redisContext *c, const struct config *cfg, const char *queue,
    char *err, size_t errlen)
{
	struct delayq_item items[DELAYQ_BATCH];
	struct jobq_argv a;
	char key[JOBQ_KEY_MAX], dkey[JOBQ_KEY_MAX], buf[JOB_ENCODE_MAX];
	redisReply *r;
	int i, n, rc, moved = 0;

	if (jobq_qkey(key, sizeof(key), cfg, queue) == -1 ||
	    delayq_key(dkey, sizeof(dkey), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	if ((n = delayq_due(c, cfg, queue, now_real(), items, DELAYQ_BATCH,
	    err, errlen)) <= 0)
		return n;
	for (i = 0; i < n; i++) {
		if (!items[i].decoded) {
			/* Not a job: it can never run; drop it, say so. */
			log_warnx("delayed set of %s: dropped a member that is "
			    "not a job", queue);
			if (delayq_remove(c, cfg, queue, &items[i], err,
			    errlen) == -1)
				break;
			continue;
		}
		memset(&a, 0, sizeof(a));
		jobq_arg(&a, "EVAL");
		jobq_arg(&a, jobq_promote_lua);
		jobq_arg(&a, "2");
		jobq_arg(&a, dkey);
		jobq_arg(&a, key);
		a.argv[a.argc] = items[i].member;
		a.argvlen[a.argc++] = items[i].memberlen;
		jobq_args_job(&a, &items[i].job, buf);
		r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
		if ((rc = jobq_script_result(c, r, "promote", err, errlen))
		    == -1)
			break;
		moved += rc;
	}
	delayq_items_clear(items, n);
	return i < n ? -1 : moved;
}

