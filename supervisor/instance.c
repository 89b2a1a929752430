/*
 * The registry of live instances.  Each instance's sampler, which already
 * holds a queue Redis connection and reads the shared segment, writes the
 * instance's record every round, so the supervisor's own loop never waits
 * on Redis for it:
 *
 *   digest:instance:{host:pid}  HASH, TTL INSTANCE_TTL_S: host, pid,
 *                               version, started_at, seen_at, draining,
 *                               console (its console_listen), workers (as
 *                               /status lists them, JSON) and rates (sent
 *                               emails per second per queue, JSON);
 *   digest:instances            ZSET of ids scored by when their record
 *                               expires; entries past that are dropped at
 *                               each write, and the set itself expires a
 *                               day after the last write.
 *
 * The rate is the emails the live workers sent since the previous round,
 * over its duration: a worker replaced in between starts again from 0,
 * and what a dead worker sent since the previous round is not counted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "exposition.h"
#include "instance.h"
#include "log.h"
#include "rconn.h"
#include "util.h"

#define INSTANCES_TTL_S 86400

void
instance_id(char *buf, size_t len)
{
	char host[256];

	if (gethostname(host, sizeof(host)) == -1)
		strlcpy(host, "unknown", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len, "%s:%d", host, (int)getpid());
}

/* Emails sent per second by queue since the last round, as JSON. */
static json_t *
instance_rates_json(struct scoreboard *sb, struct instance_rates *r,
    double now)
{
	double per_queue[SB_MAX_POOLS];
	uint64_t sent, gen, delta;
	json_t *o;
	int i, t, pool, j;
	uint32_t state;

	memset(per_queue, 0, sizeof(per_queue));
	for (i = 0; i < SB_MAX_SLOTS; i++) {
		struct sb_slot *sl = &sb->slots[i];

		state = atomic_load_explicit(&sl->state, memory_order_acquire);
		gen = atomic_load_explicit(&sl->gen, memory_order_relaxed);
		pool = atomic_load_explicit(&sl->pool, memory_order_relaxed);
		for (sent = 0, t = 0; t < TRANSPORT_N; t++)
			sent += atomic_load_explicit(&sl->cells[MC_EMAIL(t,
			    EMAIL_SENT)], memory_order_relaxed);
		if (state < SB_STARTING || state > SB_DEAD) {
			r->gen[i] = 0;
			r->sent[i] = 0;
			continue;
		}
		delta = gen == r->gen[i] && sent >= r->sent[i] ?
		    sent - r->sent[i] : sent;
		r->gen[i] = gen;
		r->sent[i] = sent;
		if (pool >= 0 && pool < SB_MAX_POOLS)
			per_queue[pool] += (double)delta;
	}
	o = json_object();
	for (i = 0; i < SB_MAX_POOLS; i++) {
		const char *q = sb->pools[i].queue;
		json_t *cur;
		double v;

		if (sb->pools[i].name[0] == '\0' || q[0] == '\0')
			continue;
		v = r->at > 0 && now > r->at ? per_queue[i] / (now - r->at) : 0;
		/* Two pools may share a queue. */
		cur = json_object_get(o, q);
		if (cur != NULL)
			v += json_real_value(cur);
		for (j = 0; q[j] != '\0'; j++)
			if ((unsigned char)q[j] < 0x20)
				break;
		if (q[j] == '\0')
			json_object_set_new(o, q, json_real(v));
	}
	r->at = now;
	return o;
}

int
instance_publish(redisContext *c, const struct config *cfg,
    struct scoreboard *sb, const char *id, double started_at,
    struct instance_rates *r, char *err, size_t errlen)
{
	char key[512], set[512], host[256], pid[16], sa[32], seen[32];
	char expires[32], *workers, *rates;
	const char *colon;
	json_t *w, *rt;
	redisReply *rep;
	double now = now_real();
	int i, n = 0, rc = 0;

	if (rkey(key, sizeof(key), cfg->redis.key_prefix,
	    "digest:instance:%s", id) == NULL ||
	    rkey(set, sizeof(set), cfg->redis.key_prefix,
	    "digest:instances") == NULL) {
		snprintf(err, errlen, "instance key too long");
		return -1;
	}
	colon = strrchr(id, ':');
	snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - id) :
	    (int)strlen(id), id);
	snprintf(pid, sizeof(pid), "%s", colon ? colon + 1 : "");
	snprintf(sa, sizeof(sa), "%.3f", started_at);
	snprintf(seen, sizeof(seen), "%.3f", now);
	snprintf(expires, sizeof(expires), "%.3f", now + INSTANCE_TTL_S);
	w = status_workers_json(sb);
	rt = instance_rates_json(sb, r, now);
	workers = json_dumps(w, JSON_COMPACT);
	rates = json_dumps(rt, JSON_COMPACT);
	json_decref(w);
	json_decref(rt);
	if (workers == NULL || rates == NULL) {
		free(workers);
		free(rates);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	redisAppendCommand(c, "MULTI");
	redisAppendCommand(c, "DEL %s", key);
	redisAppendCommand(c, "HSET %s id %s host %s pid %s version %s "
	    "started_at %s seen_at %s draining %d console %s workers %s "
	    "rates %s", key, id, host, pid, DIGESTD_VERSION, sa, seen,
	    (int)atomic_load(&sb->draining), cfg->supervisor.console_listen,
	    workers, rates);
	redisAppendCommand(c, "EXPIRE %s %d", key, INSTANCE_TTL_S);
	redisAppendCommand(c, "ZADD %s %s %s", set, expires, id);
	redisAppendCommand(c, "ZREMRANGEBYSCORE %s -inf (%s", set, seen);
	redisAppendCommand(c, "EXPIRE %s %d", set, INSTANCES_TTL_S);
	redisAppendCommand(c, "EXEC");
	n = 8;
	free(workers);
	free(rates);
	for (i = 0; i < n; i++) {
		if (redisGetReply(c, (void **)&rep) != REDIS_OK) {
			snprintf(err, errlen, "%s", c->errstr);
			return -1;
		}
		if (rep->type == REDIS_REPLY_ERROR && rc == 0) {
			snprintf(err, errlen, "%s", rep->str);
			rc = -1;
		}
		if (i == n - 1 && rep->type == REDIS_REPLY_ARRAY) {
			size_t k;

			for (k = 0; k < rep->elements; k++)
				if (rep->element[k]->type ==
				    REDIS_REPLY_ERROR && rc == 0) {
					snprintf(err, errlen, "%s",
					    rep->element[k]->str);
					rc = -1;
				}
		}
		freeReplyObject(rep);
	}
	return rc;
}

static int
instance_cmp(const void *a, const void *b)
{
	return strcmp(((const struct instance_record *)a)->id,
	    ((const struct instance_record *)b)->id);
}

static char *
instance_field(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING ? e->str : NULL;
}

int
instance_list(redisContext *c, const struct config *cfg,
    struct instance_record **out, char *err, size_t errlen)
{
	struct instance_record *recs = NULL;
	redisReply *ids, *rep;
	char set[512], key[512], now[32];
	const char *v;
	size_t i;
	int n = 0;
	double d;

	*out = NULL;
	if (rkey(set, sizeof(set), cfg->redis.key_prefix,
	    "digest:instances") == NULL) {
		snprintf(err, errlen, "instance key too long");
		return -1;
	}
	snprintf(now, sizeof(now), "%.3f", now_real());
	ids = redisCommand(c, "ZRANGEBYSCORE %s %s +inf", set, now);
	if (ids == NULL) {
		snprintf(err, errlen, "%s", c->errstr);
		return -1;
	}
	if (ids->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "ZRANGEBYSCORE digest:instances: %s",
		    ids->type == REDIS_REPLY_ERROR ? ids->str : "not a list");
		freeReplyObject(ids);
		return -1;
	}
	recs = xcalloc(ids->elements + 1, sizeof(*recs));
	for (i = 0; i < ids->elements; i++) {
		struct instance_record *ir = &recs[n];

		if (ids->element[i]->type != REDIS_REPLY_STRING ||
		    rkey(key, sizeof(key), cfg->redis.key_prefix,
		    "digest:instance:%s", ids->element[i]->str) == NULL)
			continue;
		rep = redisCommand(c, "HMGET %s id host pid version console "
		    "started_at seen_at draining workers rates", key);
		if (rep == NULL) {
			snprintf(err, errlen, "%s", c->errstr);
			instance_list_free(recs, n);
			freeReplyObject(ids);
			return -1;
		}
		/* Expired between the two reads: gone. */
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 10 ||
		    instance_field(rep->element[0]) == NULL) {
			freeReplyObject(rep);
			continue;
		}
		strlcpy(ir->id, instance_field(rep->element[0]),
		    sizeof(ir->id));
		if ((v = instance_field(rep->element[1])) != NULL)
			strlcpy(ir->host, v, sizeof(ir->host));
		if ((v = instance_field(rep->element[2])) != NULL)
			strlcpy(ir->pid, v, sizeof(ir->pid));
		if ((v = instance_field(rep->element[3])) != NULL)
			strlcpy(ir->version, v, sizeof(ir->version));
		if ((v = instance_field(rep->element[4])) != NULL)
			strlcpy(ir->console, v, sizeof(ir->console));
		if ((v = instance_field(rep->element[5])) != NULL &&
		    parse_double(v, &d) == 0)
			ir->started_at = d;
		if ((v = instance_field(rep->element[6])) != NULL &&
		    parse_double(v, &d) == 0)
			ir->seen_at = d;
		v = instance_field(rep->element[7]);
		ir->draining = v != NULL && strcmp(v, "1") == 0;
		if ((v = instance_field(rep->element[8])) != NULL)
			ir->workers = strdup(v);
		if ((v = instance_field(rep->element[9])) != NULL)
			ir->rates = strdup(v);
		freeReplyObject(rep);
		n++;
	}
	freeReplyObject(ids);
	qsort(recs, (size_t)n, sizeof(*recs), instance_cmp);
	*out = recs;
	return n;
}

void
instance_list_free(struct instance_record *recs, int n)
{
	int i;

	if (recs == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(recs[i].workers);
		free(recs[i].rates);
	}
	free(recs);
}
