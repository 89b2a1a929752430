/*
 * The delayed set of a queue (see delayq.h): jobs waiting for a time.
 * Every call is one command or one single-key script on the queue Redis.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "delayq.h"
#include "rconn.h"
#include "util.h"

int
delayq_key(char *buf, size_t len, const struct config *cfg, const char *queue)
{
	return rkey(buf, len, cfg->redis.key_prefix, "digest:delayed:%s",
	    queue) == NULL ? -1 : 0;
}

char *
delayq_member(const struct job *j)
{
	return job_encode_json(j);
}

/* An error reply or a lost connection as text in err; frees r. */
static int
delayq_fail(redisContext *c, redisReply *r, const char *what, char *err,
    size_t errlen)
{
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		snprintf(err, errlen, "%s: %s", what, r->str);
	else if (c->err)
		snprintf(err, errlen, "%s: %s", what, c->errstr);
	else
		snprintf(err, errlen, "%s: unexpected reply", what);
	if (r != NULL)
		freeReplyObject(r);
	return -1;
}

static const char delayq_add_lua[] =
    "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "return 1\n";

int
delayq_add(redisContext *c, const struct config *cfg, const char *queue,
    const struct job *j, double due, char *err, size_t errlen)
{
	char key[512], score[48], ttl[16];
	const char *argv[7];
	size_t argvlen[7];
	redisReply *r;
	char *member;
	int i;

	if (delayq_key(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	if ((member = delayq_member(j)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(score, sizeof(score), "%.3f", due);
	snprintf(ttl, sizeof(ttl), "%d", DELAYQ_TTL_S);
	argv[0] = "EVAL";
	argv[1] = delayq_add_lua;
	argv[2] = "1";
	argv[3] = key;
	argv[4] = score;
	argv[5] = member;
	argv[6] = ttl;
	for (i = 0; i < 7; i++)
		argvlen[i] = strlen(argv[i]);
	r = redisCommandArgv(c, 7, argv, argvlen);
	free(member);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		return delayq_fail(c, r, "delay", err, errlen);
	freeReplyObject(r);
	return 0;
}

int
delayq_due(redisContext *c, const struct config *cfg, const char *queue,
    double now, struct delayq_item *items, int max, char *err, size_t errlen)
{
	char key[512], jerr[128];
	redisReply *r;
	struct delayq_item *it;
	size_t i;
	int n = 0;

	if (delayq_key(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	r = redisCommand(c, "ZRANGEBYSCORE %s -inf %.3f WITHSCORES LIMIT 0 %d",
	    key, now, max);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2)
		return delayq_fail(c, r, "delayed", err, errlen);
	for (i = 0; i + 1 < r->elements && n < max; i += 2) {
		const redisReply *m = r->element[i], *s = r->element[i + 1];

		if (m->type != REDIS_REPLY_STRING ||
		    s->type != REDIS_REPLY_STRING)
			continue;
		it = &items[n++];
		memset(it, 0, sizeof(*it));
		it->member = wmalloc(m->len + 1);
		memcpy(it->member, m->str, m->len);
		it->member[m->len] = '\0';
		it->memberlen = m->len;
		strlcpy(it->score, s->str, sizeof(it->score));
		it->decoded = job_decode_json(&it->job, m->str, m->len, jerr,
		    sizeof(jerr)) == 0 &&
		    job_validate(&it->job, jerr, sizeof(jerr)) == 0;
	}
	freeReplyObject(r);	/* the members were copied */
	return n;
}

static const char delayq_take_lua[] =
    "if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end\n"
    "redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])\n"
    "return 1\n";

static const char delayq_remove_lua[] =
    "if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "return 1\n";

/* Run one of the two scripts above on it; 1, 0 or -1. */
static int
delayq_if_score(redisContext *c, const struct config *cfg, const char *queue,
    const char *lua, const struct delayq_item *it, const char *arg,
    const char *what, char *err, size_t errlen)
{
	char key[512];
	const char *argv[7];
	size_t argvlen[7];
	redisReply *r;
	int i, rc, argc = 6;

	if (delayq_key(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	argv[0] = "EVAL";
	argv[1] = lua;
	argv[2] = "1";
	argv[3] = key;
	argv[4] = it->member;
	argv[5] = it->score;
	if (arg != NULL)
		argv[argc++] = arg;
	for (i = 0; i < argc; i++)
		argvlen[i] = strlen(argv[i]);
	argvlen[4] = it->memberlen;
	r = redisCommandArgv(c, argc, argv, argvlen);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		return delayq_fail(c, r, what, err, errlen);
	rc = r->integer == 1;
	freeReplyObject(r);
	return rc;
}

int
delayq_take(redisContext *c, const struct config *cfg, const char *queue,
    struct delayq_item *it, double until, char *err, size_t errlen)
{
	char score[48];
	int rc;

	snprintf(score, sizeof(score), "%.3f", until);
	rc = delayq_if_score(c, cfg, queue, delayq_take_lua, it, score,
	    "take delayed", err, errlen);
	if (rc == 1) {
		/* Our lease is the score now: what delayq_remove checks. */
		redisReply *r;
		char key[512];

		if (delayq_key(key, sizeof(key), cfg, queue) == -1)
			return -1;
		r = redisCommand(c, "ZSCORE %s %b", key, it->member,
		    it->memberlen);
		if (r == NULL || r->type != REDIS_REPLY_STRING)
			return delayq_fail(c, r, "take delayed", err, errlen);
		strlcpy(it->score, r->str, sizeof(it->score));
		freeReplyObject(r);
	}
	return rc;
}

int
delayq_remove(redisContext *c, const struct config *cfg, const char *queue,
    const struct delayq_item *it, char *err, size_t errlen)
{
	return delayq_if_score(c, cfg, queue, delayq_remove_lua, it, NULL,
	    "remove delayed", err, errlen);
}

int
delayq_stats(redisContext *c, const struct config *cfg, const char *queue,
    int64_t *n, double *next_due, char *err, size_t errlen)
{
	char key[512];
	redisReply *r;

	*n = 0;
	*next_due = 0;
	if (delayq_key(key, sizeof(key), cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	redisAppendCommand(c, "ZCARD %s", key);
	redisAppendCommand(c, "ZRANGE %s 0 0 WITHSCORES", key);
	if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
	    r->type != REDIS_REPLY_INTEGER) {
		delayq_fail(c, r, "ZCARD delayed", err, errlen);
		/* Keep the connection in step with the second reply. */
		if (!c->err && redisGetReply(c, (void **)&r) == REDIS_OK &&
		    r != NULL)
			freeReplyObject(r);
		return -1;
	}
	*n = r->integer;
	freeReplyObject(r);
	if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
	    r->type != REDIS_REPLY_ARRAY)
		return delayq_fail(c, r, "ZRANGE delayed", err, errlen);
	if (r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING)
		(void)parse_double(r->element[1]->str, next_due);
	freeReplyObject(r);
	return 0;
}

void
delayq_items_clear(struct delayq_item *items, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		free(items[i].member);
		items[i].member = NULL;
	}
}
