/*
 * The Redis Streams backend, a worker's side (queue.h): a worker reads
 * digest:q:{queue} as a consumer of the group "digestd" with XREADGROUP
 * ... BLOCK, so that an idle worker wakes at least once per fetch timeout
 * to heartbeat; and the scripts that move a delivered entry, which the
 * supervisor's requeue child shares (queue_redis_admin.c).
 *
 * Leases: a delivered entry stays pending under this worker's consumer
 * name until it is acknowledged (XACK), given back or dead-lettered.
 * While a job runs, keepalive re-claims the entry to ourselves (XCLAIM
 * ... JUSTID), which resets its idle time, so that no other instance's
 * reclaim ever takes it; but only while the entry is still ours, in one
 * script: one that another instance reclaimed after a partition is left
 * to it, and the worker stops.  Giving back, deferring and the requeue of
 * a dead worker's entries check the same way, so a job never runs twice.
 * Jobs left pending by a whole instance that died are taken over by idle
 * workers with XAUTOCLAIM once they have been idle for
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

#include "delayq.h"
#include "log.h"
#include "queue_redis.h"
#include "rconn.h"
#include "util.h"

/* How often, at most, an idle worker looks for abandoned entries. */
#define QUEUE_REDIS_RECLAIM_NS (5LL * 1000000000)
/* Tries of an ack refused for an outage: 100 ms apart, doubling (3 s). */
#define QUEUE_REDIS_ACK_TRIES 6

/* A worker's connection to its stream. */
struct queue_redis_consumer {
	redisContext *c;
	char key[QUEUE_REDIS_KEY_MAX];
	int64_t next_reclaim_ns;
	char autoclaim_cursor[SB_ENTRY_MAX];
};

/* A job's raw fields, kept for the dead letters of one that did not decode. */
struct queue_redis_raw {
	size_t n;
	char **names;
	char **values;
};

void
queue_redis_arg(struct queue_redis_argv *a, const char *s)
{
	if (a->argc < QUEUE_REDIS_ARGV_MAX) {
		a->argv[a->argc] = s;
		a->argvlen[a->argc] = strlen(s);
		a->argc++;
	}
}

redisReply *
queue_redis_run(redisContext *c, struct queue_redis_argv *a, char *err,
    size_t errlen)
{
	redisReply *r;

	if (a->argc >= QUEUE_REDIS_ARGV_MAX) {
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

int
queue_redis_qkey(char *buf, size_t len, const struct config *cfg,
    const char *queue)
{
	return rkey(buf, len, cfg->redis.key_prefix, "digest:q:%s", queue) ==
	    NULL ? -1 : 0;
}

int
queue_redis_ensure(redisContext *c, const struct config *cfg, const char *queue,
    char *err, size_t errlen)
{
	struct queue_redis_argv a = { 0 };
	redisReply *r;
	char key[QUEUE_REDIS_KEY_MAX];

	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	queue_redis_arg(&a, "XGROUP");
	queue_redis_arg(&a, "CREATE");
	queue_redis_arg(&a, key);
	queue_redis_arg(&a, QUEUE_REDIS_GROUP);
	queue_redis_arg(&a, "0");
	queue_redis_arg(&a, "MKSTREAM");
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

void
queue_redis_args_job(struct queue_redis_argv *a, const struct job *j,
    char *buf)
{
	const char *values[JOB_NFIELDS];
	int i, n;

	n = job_encode_fields(j, buf, values);
	for (i = 0; i < n; i++) {
		queue_redis_arg(a, job_field_names[i]);
		queue_redis_arg(a, values[i]);
	}
}

/*
 * Run the commands queued in cmds (each a struct queue_redis_argv) inside
 * MULTI/EXEC, and check that none of them failed.
 */
static int
queue_redis_transaction(redisContext *c, struct queue_redis_argv *cmds, int n,
    char *err, size_t errlen)
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
queue_redis_dlq_add(redisContext *c, const struct config *cfg,
    const char *queue, const char *entry, const struct job *j,
    const char *const *names, const char *const *values, size_t n,
    const char *reason, int attempts, char *err, size_t errlen)
{
	struct queue_redis_argv cmds[2];
	char key[QUEUE_REDIS_KEY_MAX], dkey[QUEUE_REDIS_KEY_MAX];
	char buf[JOB_ENCODE_MAX], maxlen[32], natt[32], failed[32];
	size_t i;

	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1 ||
	    rkey(dkey, sizeof(dkey), cfg->redis.key_prefix, "digest:dlq") ==
	    NULL) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	snprintf(maxlen, sizeof(maxlen), "%d", QUEUE_REDIS_DLQ_MAXLEN);
	snprintf(natt, sizeof(natt), "%d", attempts);
	snprintf(failed, sizeof(failed), "%.6f", now_real());
	memset(cmds, 0, sizeof(cmds));
	queue_redis_arg(&cmds[0], "XADD");
	queue_redis_arg(&cmds[0], dkey);
	queue_redis_arg(&cmds[0], "MAXLEN");
	queue_redis_arg(&cmds[0], "~");
	queue_redis_arg(&cmds[0], maxlen);
	queue_redis_arg(&cmds[0], "*");
	if (j != NULL)
		queue_redis_args_job(&cmds[0], j, buf);
	else {
		/* Keep what arrived, minus our own fields, within the limit. */
		for (i = 0; i < n &&
		    cmds[0].argc + 2 + 8 < QUEUE_REDIS_ARGV_MAX; i++) {
			if (strcmp(names[i], "reason") == 0 ||
			    strcmp(names[i], "attempts") == 0 ||
			    strcmp(names[i], "failed_at") == 0 ||
			    strcmp(names[i], "queue") == 0)
				continue;
			queue_redis_arg(&cmds[0], names[i]);
			queue_redis_arg(&cmds[0], values[i]);
		}
	}
	queue_redis_arg(&cmds[0], "reason");
	queue_redis_arg(&cmds[0], reason != NULL ? reason : "unknown");
	queue_redis_arg(&cmds[0], "attempts");
	queue_redis_arg(&cmds[0], natt);
	queue_redis_arg(&cmds[0], "failed_at");
	queue_redis_arg(&cmds[0], failed);
	queue_redis_arg(&cmds[0], "queue");
	queue_redis_arg(&cmds[0], queue);
	if (cmds[0].argc >= QUEUE_REDIS_ARGV_MAX) {
		snprintf(err, errlen, "redis: command too long");
		return -1;
	}
	if (entry != NULL) {
		queue_redis_arg(&cmds[1], "XACK");
		queue_redis_arg(&cmds[1], key);
		queue_redis_arg(&cmds[1], QUEUE_REDIS_GROUP);
		queue_redis_arg(&cmds[1], entry);
	}
	return queue_redis_transaction(c, cmds, entry != NULL ? 2 : 1, err,
	    errlen);
}

/*
 * The outcome of one of our scripts, which answer 1 (done) or 0 (not
 * needed): 1, 0, or -1 with err.  Frees the reply.
 */
static int
queue_redis_script_result(redisContext *c, redisReply *r, const char *what,
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
static const char queue_redis_give_back_owned_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "return 1\n";

int
queue_redis_give_back_owned(redisContext *c, const struct config *cfg,
    const char *queue, const char *entry, const char *consumer,
    const struct job *j, char *err, size_t errlen)
{
	struct queue_redis_argv a;
	char key[QUEUE_REDIS_KEY_MAX], buf[JOB_ENCODE_MAX];
	redisReply *r;

	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	memset(&a, 0, sizeof(a));
	queue_redis_arg(&a, "EVAL");
	queue_redis_arg(&a, queue_redis_give_back_owned_lua);
	queue_redis_arg(&a, "1");
	queue_redis_arg(&a, key);
	queue_redis_arg(&a, QUEUE_REDIS_GROUP);
	queue_redis_arg(&a, entry);
	queue_redis_arg(&a, consumer);
	queue_redis_args_job(&a, j, buf);
	r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
	return queue_redis_script_result(c, r, "give back", err, errlen);
}

/*
 * Keep a delivered job's lease fresh: claim entry to consumer (XCLAIM
 * JUSTID, which resets its idle time), but only while it is still pending
 * under consumer, in one script: an entry another instance reclaimed
 * (this one was cut off past visibility_timeout) stays with its new
 * owner.  1 if still ours, 0 if no longer ours, -1 on error.
 *
 * KEYS[1] the stream; ARGV: group, entry, consumer.
 */
static const char queue_redis_keepalive_owned_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')\n"
    "return 1\n";

static int
queue_redis_keepalive_owned(redisContext *c, const struct config *cfg,
    const char *queue, const char *entry, const char *consumer, char *err,
    size_t errlen)
{
	struct queue_redis_argv a;
	char key[QUEUE_REDIS_KEY_MAX];
	redisReply *r;

	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	memset(&a, 0, sizeof(a));
	queue_redis_arg(&a, "EVAL");
	queue_redis_arg(&a, queue_redis_keepalive_owned_lua);
	queue_redis_arg(&a, "1");
	queue_redis_arg(&a, key);
	queue_redis_arg(&a, QUEUE_REDIS_GROUP);
	queue_redis_arg(&a, entry);
	queue_redis_arg(&a, consumer);
	r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
	return queue_redis_script_result(c, r, "keepalive", err, errlen);
}

/*
 * Move a delivered job to its queue's delayed set (delayq.h), due at the
 * unix time due, and acknowledge its entry, but only while the entry is
 * still pending under consumer, in one script.  1 if moved, 0 if no
 * longer ours, -1 on error.
 *
 * KEYS[1] the stream, KEYS[2] the delayed set; ARGV: group, entry,
 * consumer, due, the job as member, the set's TTL.
 */
static const char queue_redis_defer_owned_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[6])\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "return 1\n";

static int
queue_redis_defer_owned(redisContext *c, const struct config *cfg,
    const char *queue, const char *entry, const char *consumer,
    const struct job *j, double due, char *err, size_t errlen)
{
	struct queue_redis_argv a;
	char key[QUEUE_REDIS_KEY_MAX], dkey[QUEUE_REDIS_KEY_MAX];
	char score[48], ttl[16];
	redisReply *r;
	char *member;

	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1 ||
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
	queue_redis_arg(&a, "EVAL");
	queue_redis_arg(&a, queue_redis_defer_owned_lua);
	queue_redis_arg(&a, "2");
	queue_redis_arg(&a, key);
	queue_redis_arg(&a, dkey);
	queue_redis_arg(&a, QUEUE_REDIS_GROUP);
	queue_redis_arg(&a, entry);
	queue_redis_arg(&a, consumer);
	queue_redis_arg(&a, score);
	queue_redis_arg(&a, member);
	queue_redis_arg(&a, ttl);
	r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
	free(member);
	return queue_redis_script_result(c, r, "defer", err, errlen);
}

/*
 * Move the jobs of queue's delayed set that are due back into the queue
 * (at most DELAYQ_BATCH a call), each in one step.  Returns how many were
 * moved, or -1 with err.
 *
 * KEYS[1] the delayed set, KEYS[2] the stream; ARGV: the member, then the
 * job's fields.  The member leaves the set and the job enters the stream
 * in one step, so a due job is moved exactly once, whoever moves it.
 */
static const char queue_redis_promote_lua[] =
    "if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))\n"
    "return 1\n";

static int
queue_redis_promote_due(redisContext *c, const struct config *cfg,
    const char *queue, char *err, size_t errlen)
{
	struct delayq_item items[DELAYQ_BATCH];
	struct queue_redis_argv a;
	char key[QUEUE_REDIS_KEY_MAX], dkey[QUEUE_REDIS_KEY_MAX];
	char buf[JOB_ENCODE_MAX];
	redisReply *r;
	int i, n, rc, moved = 0;

	if (queue_redis_qkey(key, sizeof(key), cfg, queue) == -1 ||
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
		queue_redis_arg(&a, "EVAL");
		queue_redis_arg(&a, queue_redis_promote_lua);
		queue_redis_arg(&a, "2");
		queue_redis_arg(&a, dkey);
		queue_redis_arg(&a, key);
		a.argv[a.argc] = items[i].member;
		a.argvlen[a.argc++] = items[i].memberlen;
		queue_redis_args_job(&a, &items[i].job, buf);
		r = redisCommandArgv(c, a.argc, a.argv, a.argvlen);
		if ((rc = queue_redis_script_result(c, r, "promote", err,
		    errlen)) == -1)
			break;
		moved += rc;
	}
	delayq_items_clear(items, n);
	return i < n ? -1 : moved;
}


static void
queue_redis_raw_free(struct queue_redis_raw *rf)
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
queue_redis_command(redisContext *c, const char *fmt, ...)
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
queue_redis_open(struct queue_consumer *qc, char *err, size_t errlen)
{
	struct queue_redis_consumer *rs;
	struct timeval tv;
	int64_t ms;

	/* Whatever fails here fails on the queue Redis. */
	qc->failed_on = QUEUE_SERVER_REDIS;
	if ((rs = qc->priv) == NULL) {
		rs = wcalloc(1, sizeof(*rs));
		qc->priv = rs;
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
	if (queue_redis_qkey(rs->key, sizeof(rs->key), qc->cfg, qc->queue) ==
	    -1) {
		snprintf(err, errlen, "queue key too long");
		return -1;
	}
	if ((rs->c = rconn_connect(&qc->cfg->queue_redis, err, errlen)) ==
	    NULL)
		return -1;
	/*
	 * A blocking read holds the socket for up to the fetch timeout:
	 * the reply deadline must allow for it on top of redis.timeout.
	 */
	ms = qc->cfg->queue_redis.timeout_ms + 2000;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	redisSetTimeout(rs->c, tv);
	if (queue_redis_ensure(rs->c, qc->cfg, qc->queue, err, errlen) == -1) {
		redisFree(rs->c);
		rs->c = NULL;
		return -1;
	}
	return 0;
}

static void
queue_redis_close(struct queue_consumer *qc)
{
	struct queue_redis_consumer *rs = qc->priv;
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
		    QUEUE_REDIS_GROUP, qc->name);
		if (r != NULL && r->type == REDIS_REPLY_ARRAY &&
		    r->elements == 0) {
			freeReplyObject(r);
			r = redisCommand(rs->c, "XGROUP DELCONSUMER %s %s %s",
			    rs->key, QUEUE_REDIS_GROUP, qc->name);
		}
		if (r != NULL)
			freeReplyObject(r);
	}
	if (rs->c != NULL)
		redisFree(rs->c);
	free(rs);
	qc->priv = NULL;
}

/*
 * Fill m from one stream entry reply: [id, [f1, v1, f2, v2 ...]].
 * 1 when filled, 0 when the entry is empty (deleted while pending).
 */
static int
queue_redis_msg_fill(struct queue_msg *m, const redisReply *e)
{
	const redisReply *f;
	struct queue_redis_raw *rf;
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
queue_redis_reclaim(struct queue_consumer *qc, struct queue_redis_consumer *rs,
    struct queue_msg *m, char *err, size_t errlen)
{
	redisReply *r;
	const redisReply *list;
	size_t i;
	int rc = 0;

	r = queue_redis_command(rs->c, "XAUTOCLAIM %s %s %s %lld %s COUNT 1",
	    rs->key, QUEUE_REDIS_GROUP, qc->name,
	    (long long)qc->cfg->queue.visibility_timeout_ms,
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
			if (queue_redis_msg_fill(m, list->element[i]) == 1) {
				log_info("reclaimed entry %s idle for over "
				    "visibility_timeout", m->entry);
				rc = 1;
			}
		}
	}
	/* queue_redis_msg_fill copied what it keeps. */
	freeReplyObject(r);
	return rc;
}

static int
queue_redis_fetch(struct queue_consumer *qc, struct queue_msg *m,
    int timeout_ms, char *err, size_t errlen)
{
	struct queue_redis_consumer *rs = qc->priv;
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
		rs->next_reclaim_ns = now + QUEUE_REDIS_RECLAIM_NS;
		if ((rc = queue_redis_reclaim(qc, rs, m, err, errlen)) != 0)
			return rc;
	}
	r = queue_redis_command(rs->c, "XREADGROUP GROUP %s %s COUNT 1 "
	    "BLOCK %d STREAMS %s >", QUEUE_REDIS_GROUP, qc->name, timeout_ms,
	    rs->key);
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
				rc = queue_redis_msg_fill(m,
				    entries->element[0]);
		}
	}
	/* queue_redis_msg_fill copied what it keeps. */
	freeReplyObject(r);
	return rc;
}

static int
queue_redis_ack(struct queue_consumer *qc, struct queue_msg *m)
{
	struct queue_redis_consumer *rs = qc->priv;
	struct timespec ts;
	redisReply *r;
	int64_t ms = 100;
	int rc, tries;

	if (rs == NULL || rs->c == NULL)
		return -1;
	for (tries = 1;; tries++) {
		r = queue_redis_command(rs->c, "XACK %s %s %s", rs->key,
		    QUEUE_REDIS_GROUP, m->entry);
		if (r == NULL)
			return -1;
		/*
		 * A failover or a full Redis refuses the ack for a moment:
		 * worth a few tries, as the entry would otherwise wait for
		 * visibility_timeout to be reclaimed and found done.
		 */
		if (!rconn_reply_is_outage(r) || tries == QUEUE_REDIS_ACK_TRIES)
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
queue_redis_give_back(struct queue_consumer *qc, struct queue_msg *m,
    const char *reason)
{
	struct queue_redis_consumer *rs = qc->priv;
	char err[256];

	if (rs == NULL || rs->c == NULL || !m->decoded)
		return -1;
	switch (queue_redis_give_back_owned(rs->c, qc->cfg, qc->queue,
	    m->entry, qc->name, &m->job, err, sizeof(err))) {
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
queue_redis_dead_letter(struct queue_consumer *qc, struct queue_msg *m,
    const char *reason, int attempts)
{
	struct queue_redis_consumer *rs = qc->priv;
	struct queue_redis_raw *rf = m->raw;
	char err[256];

	if (rs == NULL || rs->c == NULL)
		return -1;
	if (queue_redis_dlq_add(rs->c, qc->cfg, qc->queue, m->entry,
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
queue_redis_defer(struct queue_consumer *qc, struct queue_msg *m,
    redisContext *q, double due)
{
	struct queue_redis_consumer *rs = qc->priv;
	char err[256];

	if (rs == NULL || rs->c == NULL || !m->decoded)
		return -1;
	switch (queue_redis_defer_owned(rs->c, qc->cfg, qc->queue, m->entry,
	    qc->name, &m->job, due, err, sizeof(err))) {
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
queue_redis_promote(struct queue_consumer *qc, redisContext *q, char *err,
    size_t errlen)
{
	struct queue_redis_consumer *rs = qc->priv;

	if (rs == NULL || rs->c == NULL) {
		snprintf(err, errlen, "not connected");
		return -1;
	}
	return queue_redis_promote_due(rs->c, qc->cfg, qc->queue, err, errlen);
}

static int
queue_redis_keepalive(struct queue_consumer *qc, struct queue_msg *m)
{
	struct queue_redis_consumer *rs = qc->priv;
	char err[256];

	if (rs == NULL || rs->c == NULL)
		return -1;
	/* Claiming to ourselves resets the entry's idle time. */
	switch (queue_redis_keepalive_owned(rs->c, qc->cfg, qc->queue,
	    m->entry, qc->name, err, sizeof(err))) {
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
queue_redis_msg_clear(struct queue_consumer *qc, struct queue_msg *m)
{
	queue_redis_raw_free(m->raw);
	m->raw = NULL;
}

const struct queue_backend queue_redis_backend = {
	.name = "redis",
	.redelivers = 0,
	.dlq_opaque = 0,

	.open = queue_redis_open,
	.fetch = queue_redis_fetch,
	.ack = queue_redis_ack,
	.give_back = queue_redis_give_back,
	.defer = queue_redis_defer,
	.promote = queue_redis_promote,
	.dead_letter = queue_redis_dead_letter,
	.keepalive = queue_redis_keepalive,
	.msg_clear = queue_redis_msg_clear,
	.close = queue_redis_close,

	.enqueue = queue_redis_enqueue,
	.stats = queue_redis_stats,
	.dlq_len = queue_redis_dlq_len,
	.dlq_walk = queue_redis_dlq_walk,
	.purge = queue_redis_purge,
	.remove_run = queue_redis_remove_run,
	.trim = queue_redis_trim,
	.admin_clear = queue_redis_admin_clear,

	.orphaned = queue_redis_orphaned,
	.give_back_consumer = queue_redis_give_back_consumer,
};
