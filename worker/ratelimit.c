/*
 * The cluster's rate limits and its reject brake (docs/design.md#rate-limits).
 *
 * Each limit is a token bucket in the queue Redis, one hash per bucket:
 *
 *   digest:ratelimit            limits.rate, the whole cluster
 *   digest:ratelimit:{domain}   each domain named in limits.domain_rate
 *
 * A single-key script refills the bucket from Redis's own clock (so that
 * instances with skewed clocks share one notion of time) and grants what
 * it holds, up to what was asked: a worker asks once for a batch, not
 * once per email.  An empty bucket answers how long until a worthwhile
 * grant (ratelimit_chunk: a tenth of a second's worth), so that waiting
 * workers come back for chunks rather than single tokens.
 *
 * The reject brake keeps the outcomes of the cluster's last 1,000 emails
 * in digest:rejects, one 132-byte string: bits 0 to 999 are a ring (1 for
 * a 5xx), and a 32-bit write position follows at bit 1024.  One script
 * call per flush writes the flush's outcomes and counts the ring's ones
 * with BITCOUNT, so the share costs no extra round trip per email and
 * stays exact over the window, which two counters in a ring of slots
 * would only approximate.  The caller whose outcomes take the share past
 * limits.reject_pause empties the ring, so one spike pauses the queues
 * once, and a resume starts from a clean window.
 *
 * Both scripts touch one key each, so a proxy (twemproxy) can route them;
 * they are run with EVALSHA, falling back to EVAL on NOSCRIPT, which loads
 * them on that server for next time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ctype.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "queue.h"
#include "ratelimit.h"
#include "rconn.h"
#include "util.h"

/* A bucket nobody used for this long is forgotten (and starts full). */
#define BUCKET_TTL_MS	60000
/* The reject ring of a cluster that sends nothing for a day is forgotten. */
#define RING_TTL_MS	(86400 * 1000)

struct script {
	const char *text;
	char sha[41];		/* "": not computed yet */
};

/* Keep in step with ratelimit_bucket_take, its model in C. */
static struct script bucket_script = { .text =
	"if redis.replicate_commands then redis.replicate_commands() end\n"
	"local rate = tonumber(ARGV[1])\n"
	"local want = tonumber(ARGV[2])\n"
	"local burst = tonumber(ARGV[3])\n"
	"local chunk = tonumber(ARGV[4])\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
	"local tokens = tonumber(b[1])\n"
	"local ts = tonumber(b[2])\n"
	"if tokens == nil or ts == nil then tokens = burst; ts = now end\n"
	"if now > ts then\n"
	"  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)\n"
	"  ts = now\n"
	"end\n"
	"local grant, wait = 0, 0\n"
	"if want < 0 then\n"
	"  tokens = math.min(burst, tokens - want)\n"
	"else\n"
	"  local need = math.min(want, chunk)\n"
	"  if tokens >= need then\n"
	"    grant = math.min(want, math.floor(tokens))\n"
	"    tokens = tokens - grant\n"
	"  else\n"
	"    wait = math.ceil((need - tokens) * 1000 / rate)\n"
	"  end\n"
	"end\n"
	"redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', "
	"tostring(ts))\n"
	"redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))\n"
	"return {grant, wait}\n"
};

static struct script ring_script = { .text =
	"local o = ARGV[1]\n"
	"local share = tonumber(ARGV[2])\n"
	"local min = tonumber(ARGV[3])\n"
	"local pos = redis.call('BITFIELD', KEYS[1], 'GET', 'u32', 1024)[1]\n"
	"for i = 1, #o do\n"
	"  redis.call('SETBIT', KEYS[1], pos % 1000, "
	"o:byte(i) == 49 and 1 or 0)\n"
	"  pos = pos + 1\n"
	"end\n"
	"if pos >= 2000 then pos = 1000 + pos % 1000 end\n"
	"redis.call('BITFIELD', KEYS[1], 'SET', 'u32', 1024, pos)\n"
	"redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))\n"
	"local n = math.min(pos, 1000)\n"
	"local r = redis.call('BITCOUNT', KEYS[1], 0, 124)\n"
	"local trip = 0\n"
	"if share > 0 and n >= min and r > share * n then\n"
	"  trip = 1\n"
	"  redis.call('DEL', KEYS[1])\n"
	"end\n"
	"return {r, n, trip}\n"
};

double
ratelimit_chunk(double rate)
{
	double c = floor(rate / 10);

	return c < 1 ? 1 : c;
}

double
ratelimit_burst(double rate)
{
	double b = rate / 2, c = ratelimit_chunk(rate);

	return b < c ? c : b;
}

int64_t
ratelimit_bucket_take(struct ratelimit_bucket *b, int64_t now_ms, double rate,
    int64_t want, int64_t *wait_ms)
{
	double burst = ratelimit_burst(rate), chunk = ratelimit_chunk(rate);
	double need;
	int64_t grant = 0;

	*wait_ms = 0;
	if (b->ts_ms == 0) {
		b->tokens = burst;
		b->ts_ms = now_ms;
	}
	if (now_ms > b->ts_ms) {
		b->tokens = fmin(burst, b->tokens + (double)(now_ms -
		    b->ts_ms) * rate / 1000);
		b->ts_ms = now_ms;
	}
	if (want < 0) {
		b->tokens = fmin(burst, b->tokens - (double)want);
		return 0;
	}
	need = fmin((double)want, chunk);
	if (b->tokens >= need) {
		grant = (int64_t)fmin((double)want, floor(b->tokens));
		b->tokens -= (double)grant;
	} else
		*wait_ms = (int64_t)ceil((need - b->tokens) * 1000 / rate);
	return grant;
}

static void
ratelimit_sha(struct script *s)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0, i;

	if (s->sha[0] != '\0')
		return;
	if (EVP_Digest(s->text, strlen(s->text), md, &len, EVP_sha1(),
	    NULL) != 1 || len != 20)
		return;		/* EVAL every time: slower, still right */
	for (i = 0; i < len; i++)
		snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}

/* Run s on key with args; the reply (the caller frees it), or NULL. */
static redisReply *
ratelimit_eval(redisContext *c, struct script *s, const char *key, int nargs,
    const char **args)
{
	const char *argv[12];
	redisReply *r = NULL;
	int i;

	ratelimit_sha(s);
	argv[2] = "1";
	argv[3] = key;
	for (i = 0; i < nargs && i < 8; i++)
		argv[4 + i] = args[i];
	if (s->sha[0] != '\0') {
		argv[0] = "EVALSHA";
		argv[1] = s->sha;
		r = redisCommandArgv(c, 4 + nargs, argv, NULL);
		if (r == NULL || r->type != REDIS_REPLY_ERROR ||
		    strncmp(r->str, "NOSCRIPT", 8) != 0)
			goto done;
		freeReplyObject(r);
	}
	argv[0] = "EVAL";
	argv[1] = s->text;
	r = redisCommandArgv(c, 4 + nargs, argv, NULL);
done:
	if (r == NULL && c->err == REDIS_ERR_OOM)
		worker_oom();
	return r;
}

/* Why r (maybe NULL) is not what the script returns; frees r.  -1. */
static int
ratelimit_fail(redisContext *c, redisReply *r, const char *what, char *err,
    size_t errlen)
{
	snprintf(err, errlen, "%s: %s", what, r == NULL ? (c->err ?
	    c->errstr : "no reply") : r->type == REDIS_REPLY_ERROR ? r->str :
	    "unexpected reply");
	if (r != NULL)
		freeReplyObject(r);
	return -1;
}

int64_t
ratelimit_take(redisContext *c, const struct config *cfg, const char *domain,
    double rate, int64_t want, int64_t *wait_ms, char *err, size_t errlen)
{
	char key[512], a_rate[32], a_want[32], a_burst[32], a_chunk[32];
	char a_ttl[32];
	const char *args[5] = { a_rate, a_want, a_burst, a_chunk, a_ttl };
	redisReply *r;
	int64_t grant;

	*wait_ms = 0;
	if ((domain == NULL ? rkey(key, sizeof(key), cfg->redis.key_prefix,
	    "digest:ratelimit") : rkey(key, sizeof(key), cfg->redis.key_prefix,
	    "digest:ratelimit:%s", domain)) == NULL) {
		snprintf(err, errlen, "rate limit: domain too long");
		return -1;
	}
	snprintf(a_rate, sizeof(a_rate), "%.17g", rate);
	snprintf(a_want, sizeof(a_want), "%lld", (long long)want);
	snprintf(a_burst, sizeof(a_burst), "%.17g", ratelimit_burst(rate));
	snprintf(a_chunk, sizeof(a_chunk), "%.17g", ratelimit_chunk(rate));
	snprintf(a_ttl, sizeof(a_ttl), "%d", BUCKET_TTL_MS);
	r = ratelimit_eval(c, &bucket_script, key, 5, args);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER)
		return ratelimit_fail(c, r, "rate limit", err, errlen);
	grant = r->element[0]->integer;
	*wait_ms = r->element[1]->integer;
	freeReplyObject(r);
	return grant;
}

int
ratelimit_note(redisContext *c, const struct config *cfg, const char *outcomes,
    size_t n, int64_t *rejects, int64_t *total, int *tripped, char *err,
    size_t errlen)
{
	char key[512], a_share[32], a_min[16], a_ttl[32], *o;
	const char *args[4];
	redisReply *r;

	*rejects = *total = 0;
	*tripped = 0;
	if (rkey(key, sizeof(key), cfg->redis.key_prefix, "digest:rejects") ==
	    NULL) {
		snprintf(err, errlen, "reject ring: key too long");
		return -1;
	}
	o = wmalloc(n + 1);
	memcpy(o, outcomes, n);
	o[n] = '\0';
	snprintf(a_share, sizeof(a_share), "%.17g", cfg->limits.reject_pause);
	snprintf(a_min, sizeof(a_min), "%d", RATELIMIT_RING_MIN);
	snprintf(a_ttl, sizeof(a_ttl), "%lld", (long long)RING_TTL_MS);
	args[0] = o;
	args[1] = a_share;
	args[2] = a_min;
	args[3] = a_ttl;
	r = ratelimit_eval(c, &ring_script, key, 4, args);
	free(o);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER ||
	    r->element[2]->type != REDIS_REPLY_INTEGER)
		return ratelimit_fail(c, r, "reject ring", err, errlen);
	*rejects = r->element[0]->integer;
	*total = r->element[1]->integer;
	*tripped = r->element[2]->integer == 1;
	freeReplyObject(r);
	return 0;
}

int
ratelimit_pause_all(redisContext *c, const struct config *cfg,
    const char *reason, char *err, size_t errlen)
{
	const char *names[2 + CONFIG_MAX_POOLS];
	struct queue_admin qa;
	char by[300], host[256];
	int n = 0, i, k, rc = 0;

	names[n++] = CONFIG_QUEUE_PRIORITY;
	names[n++] = CONFIG_QUEUE_STANDARD;
	for (i = 0; i < cfg->npools; i++) {
		for (k = 0; k < n; k++)
			if (strcmp(names[k], cfg->pools[i].queue) == 0)
				break;
		if (k == n)
			names[n++] = cfg->pools[i].queue;
	}
	if (gethostname(host, sizeof(host)) == -1)
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(by, sizeof(by), "digestd@%s", host);
	queue_admin_init(&qa, cfg, c);
	for (i = 0; i < n; i++)
		if (queue_pause(&qa, names[i], reason, by, err, errlen) == -1)
			rc = -1;
	queue_admin_clear(&qa);
	return rc;
}

const char *
ratelimit_domain(const char *addr, char *buf, size_t len)
{
	const char *at = strrchr(addr, '@');
	size_t i;

	if (at == NULL || at[1] == '\0' || strlen(at + 1) >= len)
		return NULL;
	for (i = 0; at[1 + i] != '\0'; i++)
		buf[i] = (char)tolower((unsigned char)at[1 + i]);
	buf[i] = '\0';
	return buf;
}
