/*
 * A job's checkpoint, the hash digest:job:{job_id} on the queue Redis
 * (SPEC 3): state (running, done, dead), cursor (the last user id done),
 * sent, skipped, attempts, updated_at and last_error, with a 7-day TTL
 * refreshed at every write.  It is what lets a job that was killed,
 * drained or retried resume after the last member done, and what counts
 * attempts towards queue.max_attempts.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "rconn.h"
#include "util.h"

#define CHECKPOINT_TTL_S (7 * 86400)

/*
 * Whether the last call that failed was refused for an outage (the
 * server loading, busy, out of memory, read-only...) rather than for the
 * data: set by every call that reads replies.  A worker is one thread.
 */
static int cp_outage;

/* The checkpoint's key.  Every call starts here: a fresh failure kind. */
static int
cp_key(char *buf, size_t len, const struct config *cfg, const char *job_id)
{
	cp_outage = 0;
	return rkey(buf, len, cfg->redis.key_prefix, "digest:job:%s",
	    job_id) == NULL ? -1 : 0;
}

/*
 * Read every reply of a pipeline of n commands; -1 if any is missing or
 * an error.  A missing reply after an allocation failure means the
 * worker ran out of memory: that ends the worker with its OOM code.
 */
static int
cp_replies(redisContext *c, int n, redisReply **out)
{
	redisReply *r;
	int i, rc = 0;

	for (i = 0; i < n; i++) {
		r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL) {
			if (c->err == REDIS_ERR_OOM)
				worker_oom();
			return -1;
		}
		if (r->type == REDIS_REPLY_ERROR)
			rc = -1;
		if (rconn_reply_is_outage(r))
			cp_outage = 1;
		if (out != NULL && out[i] == NULL)
			out[i] = r;
		else
			freeReplyObject(r);
	}
	return rc;
}

static void
reply_str(const redisReply *r, char *buf, size_t len)
{
	buf[0] = '\0';
	if (r != NULL && (r->type == REDIS_REPLY_STRING ||
	    r->type == REDIS_REPLY_STATUS))
		strlcpy(buf, r->str, len);
}

int
checkpoint_start(redisContext *q, const struct config *cfg,
    const struct job *j, struct checkpoint *cp)
{
	redisReply *r, *rs[4] = { NULL, NULL, NULL, NULL };
	char key[512], state[16], num[32];
	int64_t v;
	int rc = -1, i;

	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	memset(cp, 0, sizeof(*cp));
	cp->cursor = j->member_min - 1;

	r = redisCommand(q, "HMGET %s state cursor sent skipped last_error",
	    key);
	if (r == NULL) {
		if (q->err == REDIS_ERR_OOM)
			worker_oom();
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
		cp_outage = rconn_reply_is_outage(r);
		freeReplyObject(r);
		return -1;
	}
	reply_str(r->element[0], state, sizeof(state));
	if (strcmp(state, "done") == 0) {
		freeReplyObject(r);
		return 1;
	}
	reply_str(r->element[1], num, sizeof(num));
	if (num[0] != '\0' && parse_i64(num, INT64_MIN, INT64_MAX, &v) == 0)
		cp->cursor = v;
	reply_str(r->element[2], num, sizeof(num));
	if (num[0] != '\0' && parse_i64(num, 0, INT64_MAX, &v) == 0)
		cp->sent = v;
	reply_str(r->element[3], num, sizeof(num));
	if (num[0] != '\0' && parse_i64(num, 0, INT64_MAX, &v) == 0)
		cp->skipped = v;
	reply_str(r->element[4], cp->last_error, sizeof(cp->last_error));
	freeReplyObject(r);	/* ours: the strings were copied out */

	/*
	 * A job marked dead that is delivered again was put back by an
	 * operator (digestctl dlq requeue): it starts a fresh count.
	 */
	if (strcmp(state, "dead") == 0)
		redisAppendCommand(q, "HSET %s attempts 0", key);
	else
		redisAppendCommand(q, "PING");
	redisAppendCommand(q, "HINCRBY %s attempts 1", key);
	redisAppendCommand(q, "HSET %s state running updated_at %.3f", key,
	    now_real());
	redisAppendCommand(q, "EXPIRE %s %d", key, CHECKPOINT_TTL_S);
	if (cp_replies(q, 4, rs) == -1)
		goto out;
	if (rs[1]->type != REDIS_REPLY_INTEGER)
		goto out;
	cp->attempts = rs[1]->integer > INT32_MAX ? INT32_MAX :
	    (int)rs[1]->integer;
	rc = 0;
out:
	for (i = 0; i < 4; i++)
		if (rs[i] != NULL)
			freeReplyObject(rs[i]);
	return rc;
}

int
checkpoint_save(redisContext *q, const struct config *cfg,
    const struct job *j, const struct checkpoint *cp)
{
	char key[512];

	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	/*
	 * The cursor and a parked list grown past it go in one HSET: a
	 * cursor beyond a parked recipient never stands without the list.
	 */
	if (cp->deferred_dirty && cp->deferred[0] != '\0')
		redisAppendCommand(q, "HSET %s cursor %" PRId64 " sent %" PRId64
		    " skipped %" PRId64 " updated_at %.3f deferred %s", key,
		    cp->cursor, cp->sent, cp->skipped, now_real(),
		    cp->deferred);
	else
		redisAppendCommand(q, "HSET %s cursor %" PRId64 " sent %" PRId64
		    " skipped %" PRId64 " updated_at %.3f", key, cp->cursor,
		    cp->sent, cp->skipped, now_real());
	redisAppendCommand(q, "EXPIRE %s %d", key, CHECKPOINT_TTL_S);
	if (!cp->deferred_dirty || cp->deferred[0] != '\0')
		return cp_replies(q, 2, NULL);
	redisAppendCommand(q, "HDEL %s deferred", key);
	return cp_replies(q, 3, NULL);
}

int
checkpoint_finish(redisContext *q, const struct config *cfg,
    const struct job *j, const char *state, const char *reason)
{
	char key[512];

	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	if (reason != NULL && reason[0] != '\0')
		redisAppendCommand(q, "HSET %s state %s last_error %s "
		    "updated_at %.3f", key, state, reason, now_real());
	else
		redisAppendCommand(q, "HSET %s state %s updated_at %.3f", key,
		    state, now_real());
	redisAppendCommand(q, "EXPIRE %s %d", key, CHECKPOINT_TTL_S);
	return cp_replies(q, 2, NULL);
}

int
checkpoint_note_error(redisContext *q, const struct config *cfg,
    const char *job_id, const char *reason)
{
	char key[512];

	if (q == NULL || cp_key(key, sizeof(key), cfg, job_id) == -1)
		return -1;
	redisAppendCommand(q, "HSET %s last_error %s updated_at %.3f", key,
	    reason, now_real());
	redisAppendCommand(q, "EXPIRE %s %d", key, CHECKPOINT_TTL_S);
	return cp_replies(q, 2, NULL);
}

int
checkpoint_refund(redisContext *q, const struct config *cfg,
    const struct job *j)
{
	char key[512];

	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	redisAppendCommand(q, "HINCRBY %s attempts -1", key);
	redisAppendCommand(q, "EXPIRE %s %d", key, CHECKPOINT_TTL_S);
	return cp_replies(q, 2, NULL);
}

int
checkpoint_failed_outage(const redisContext *q)
{
	return q == NULL || q->err != 0 || cp_outage;
}
