/*
 * One digest job in a worker (SPEC 3 to 5): read the group and its
 * window's posts once, walk the members in user-id order from the
 * checkpoint in batches of digest.batch_size, decide who gets an email,
 * render it, hand it to the transport and move the checkpoint forward.
 *
 * Memory is bounded by the batch and by the capped set of posts, never by
 * the group: the membership is read with ZRANGEBYSCORE ... LIMIT from the
 * cursor, and the users of a batch with one pipelined round of HMGET.
 * Every command names one key, so the activity store may sit behind a
 * sharding proxy.
 *
 * The checkpoint follows a frontier: the cursor may only move past a
 * member once every member before it is done (skipped, sent or rejected).
 * An unconfirmed message holds the frontier back, so a retried job
 * resumes before it and no recipient is ever lost.  Deferred (4xx)
 * recipients are parked in the checkpoint as their replies come and
 * retried at the end of the job; a server deferring everyone fills the
 * parked list, and then holds the frontier like an outage.
 * The cursor is saved to Redis each time it moves past a delivered
 * message, so a killed worker re-sends at most the message in flight.
 */
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "digest.h"
#include "eligibility.h"
#include "log.h"
#include "metrics.h"
#include "rconn.h"
#include "render.h"
#include "transport.h"
#include "util.h"

/* Only the newest posts of a window are read: no group can exhaust memory. */
#define DIGEST_MAX_POSTS	1000
/* Longest field kept from Redis; longer values are cut at a UTF-8 boundary. */
#define CAP_TITLE		512
#define CAP_URL			2048
#define CAP_AUTHOR		256
#define CAP_EXCERPT		1024
#define CAP_GROUP_NAME		256
#define CAP_NAME		256
/* An address longer than this cannot be right: it is not cut, it is skipped. */
#define CAP_EMAIL		320
/*
 * The most of any one value the worker reads from the activity store
 * (rconn_cap_get_reply): a longer one arrives as its first DIGEST_READ_MAX
 * bytes and its length, and the rest is dropped off the socket.  Above
 * every cap, so that a value cut to its cap is cut as before (digest_capdup
 * looks at the byte after the cap to end on a character).
 */
#define DIGEST_READ_MAX		4096
/*
 * A user field longer than this is no name, address or date but a broken
 * record (Redis allows 512 MB): the member is skipped as bad_data.  A
 * shorter one over its cap is cut, or is no address, as it always was.
 */
#define DIGEST_FIELD_MAX	(1 << 20)
_Static_assert(DIGEST_READ_MAX > CAP_TITLE && DIGEST_READ_MAX > CAP_URL &&
    DIGEST_READ_MAX > CAP_AUTHOR && DIGEST_READ_MAX > CAP_EXCERPT &&
    DIGEST_READ_MAX > CAP_GROUP_NAME && DIGEST_READ_MAX > CAP_NAME &&
    DIGEST_READ_MAX > CAP_EMAIL, "a capped read holds every field to its cap");
/*
 * Deferred recipients are retried within the job, with backoff (0.5 s
 * doubling, at most 15 s apart, about 45 s in all), so that a burst of
 * 4xx rides out in place instead of costing the job its attempts.
 */
#define DEFER_RETRIES		7
#define DEFER_BACKOFF_MS	500
#define DEFER_BACKOFF_MAX_MS	15000
/*
 * A few deferred recipients (a full mailbox, a greylisting) are parked in
 * the checkpoint instead, so that the walk goes on without sending
 * anything twice: they are retried at the end of the job (PARKED_ROUNDS
 * times, 0.5 s doubling) and at the start of each later attempt, and
 * given up after PARKED_GIVE_UP attempts, as an MTA bounces a message
 * after its queue lifetime.  Beyond PARKED_MAX parked, the server is
 * deferring everyone: the next ones wait in place (DEFER_RETRIES).
 */
#define PARKED_MAX		100
#define PARKED_ROUNDS		3
#define PARKED_GIVE_UP		5
#define TICK_NS			250000000LL
/*
 * A maildir flush ends with one directory fsync that makes its renames
 * durable: 16 messages a flush keep that about 1% over the one fsync each
 * message costs anyway (ext4: 5 ms a file, 0.9 ms the directory).
 */
#define MAILDIR_FLUSH		16

enum member_state {
	M_PENDING,		/* not handled yet */
	M_QUEUED,		/* handed to the transport, no outcome yet */
	M_DONE,			/* skipped, sent or rejected */
	M_DEFERRED,		/* 4xx: to be sent again */
	M_UNCONFIRMED,		/* the transport failed, no outcome */
};

/* A parked recipient: deferred, to be retried later in the job or after. */
struct parked {
	int64_t uid;
	int tries;		/* attempts of the job that ended deferred */
};

struct member {
	int64_t uid;
	int64_t cursor;		/* the cursor once this member is done */
	char *email;
	char *name;
	int state;
};

/* What digest.c keeps across jobs, in ctx->priv. */
struct digest_priv {
	struct render *render;
	struct post *posts;	/* the current job's posts, owned */
	size_t nposts;
	char *gname;
	char *gurl;
	struct rbuf msg;
	struct rconn_cap cap;	/* capped reads of the activity store */
};

/* One job's running state. */
struct run {
	struct digest_ctx *ctx;
	const struct job *job;
	struct checkpoint *cp;
	struct digest_priv *dp;
	metric_cell *cells;
	int tp_type;
	size_t flush_n;		/* messages per flush */
	struct elig_job ej;

	struct member *m;	/* the batch */
	size_t n;
	size_t front;		/* m[0 .. front) are done */
	size_t hint;		/* where the next result is likely to be */
	size_t nqueued;		/* sent to the transport, not flushed */
	size_t ndeferred;
	struct parked *pk;	/* parked recipients, in the checkpoint */
	size_t npk;
	int pk_dirty;		/* pk changed since the last save */
	int parked_pass;	/* the batch is the parked recipients */
	int64_t saved_cursor;
	int save_each;		/* save after every message (AMQP backend) */
	int save_failed;
	int tick_failed;
	int64_t last_tick_ns;

	char *reason;
	size_t reasonlen;
};

static void
digest_post_free(struct post *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free((char *)p[i].title);
		free((char *)p[i].url);
		free((char *)p[i].author_name);
		free((char *)p[i].excerpt);
	}
	free(p);
}

/* Copy at most cap bytes of s, cutting on a UTF-8 character boundary. */
static char *
digest_capdup(const char *s, size_t len, size_t cap)
{
	char *p;

	if (len > cap) {
		len = cap;
		/* Back off continuation bytes so no character is split. */
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	p = wmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/*
 * A string element of an HMGET reply, or NULL when nil or not a string.
 * A value longer than DIGEST_READ_MAX comes as its first bytes only.
 */
static const redisReply *
digest_field(const redisReply *r, size_t i)
{
	const redisReply *prefix;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
		return NULL;
	if (rconn_cap_cut(r->element[i], &prefix) > 0)
		return prefix;
	if (r->element[i]->type != REDIS_REPLY_STRING)
		return NULL;
	return r->element[i];
}

/* The whole length of an element the capped read cut, or 0. */
static long long
digest_field_cut(const redisReply *r, size_t i)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
		return 0;
	return rconn_cap_cut(r->element[i], NULL);
}

static char *
digest_field_dup(const redisReply *r, size_t i, size_t cap)
{
	const redisReply *f;

	if ((f = digest_field(r, i)) == NULL)
		return NULL;
	return digest_capdup(f->str, f->len, cap);
}

static int64_t
digest_field_i64(const redisReply *r, size_t i, int64_t dflt)
{
	const redisReply *f;
	int64_t v;

	if ((f = digest_field(r, i)) == NULL || digest_field_cut(r, i) > 0 ||
	    parse_i64(f->str, INT64_MIN, INT64_MAX, &v) == -1)
		return dflt;
	return v;
}

/*
 * A key of the wrong type is bad data from the host application, not a
 * failing server: it is read as missing, so that one bad key cannot hold
 * a whole group's digest back.
 */
static int
digest_wrongtype(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "WRONGTYPE", 9) == 0;
}

static void
digest_redis_error(struct run *rn, redisContext *c, const char *what,
    const redisReply *r)
{
	metric_inc(rn->cells, MC_REDIS_ERRORS);
	/*
	 * A lost connection is an outage, and so is a reply saying the
	 * server cannot serve now (loading, busy, failing over); any other
	 * error reply is about the data.
	 */
	if ((c->err && (r == NULL || r->type != REDIS_REPLY_ERROR)) ||
	    rconn_reply_is_outage(r))
		rn->cp->outage = 1;
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		snprintf(rn->reason, rn->reasonlen, "redis %s: %s", what,
		    r->str);
	else if (c->err)
		snprintf(rn->reason, rn->reasonlen, "redis %s: %s", what,
		    c->errstr);
	else
		snprintf(rn->reason, rn->reasonlen,
		    "redis %s: unexpected reply", what);
}

/*
 * Read one pipelined reply, no value in it longer than DIGEST_READ_MAX.
 * Returns it (the caller frees it), or NULL when the connection failed:
 * the context is then unusable.
 */
static redisReply *
digest_reply(struct run *rn, redisContext *c, const char *what)
{
	void *v = NULL;

	if (rn->dp->cap.limit == 0)
		rconn_cap_init(&rn->dp->cap, DIGEST_READ_MAX);
	if (rconn_cap_get_reply(&rn->dp->cap, c, &v) != REDIS_OK ||
	    v == NULL) {
		if (c->err == REDIS_ERR_OOM)
			worker_oom();
		digest_redis_error(rn, c, what, NULL);
		return NULL;
	}
	return v;
}

/* Append a command, checking hiredis ran out of nothing. */
static int
digest_append(struct run *rn, redisContext *c, const char *what,
    const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redisvAppendCommand(c, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK) {
		if (c->err == REDIS_ERR_OOM)
			worker_oom();
		digest_redis_error(rn, c, what, NULL);
		return -1;
	}
	return 0;
}

/*
 * Read the group, its size and the window's posts (the newest
 * DIGEST_MAX_POSTS).  The posts are read in two pipelined rounds: first
 * what ranks them (author, likes, comments), then the text of only those
 * the job can list (eligibility_posts_needed).
 */
static int
digest_load_group(struct run *rn, struct group_info *gi, struct post **postsp,
    size_t *npostsp, size_t *nallp, int64_t *sole, char **gname, char **gurl)
{
	redisContext *c = rn->ctx->data;
	const char *pfx = rn->ctx->cfg->redis.key_prefix;
	const struct job *j = rn->job;
	redisReply *rg = NULL, *rz = NULL, *rp = NULL, *r, *rl;
	struct post *posts = NULL;
	char key[512];
	size_t i, n = 0, want, k;
	int failed = 0;
	double score;

	*postsp = NULL;
	*npostsp = *nallp = 0;
	*sole = -1;
	*gname = *gurl = NULL;
	if (rkey(key, sizeof(key), pfx, "group:%lld", (long long)j->group_id)
	    == NULL) {
		snprintf(rn->reason, rn->reasonlen, "key_prefix too long");
		return -1;
	}
	if (digest_append(rn, c, "HMGET group", "HMGET %s name url", key) == -1)
		return -1;
	rkey(key, sizeof(key), pfx, "group:%lld:members",
	    (long long)j->group_id);
	if (digest_append(rn, c, "ZCARD", "ZCARD %s", key) == -1)
		return -1;
	rkey(key, sizeof(key), pfx, "group:%lld:posts", (long long)j->group_id);
	if (digest_append(rn, c, "ZREVRANGEBYSCORE posts",
	    "ZREVRANGEBYSCORE %s %lld (%lld WITHSCORES LIMIT 0 %d", key,
	    (long long)j->window_end, (long long)j->window_start,
	    DIGEST_MAX_POSTS) == -1)
		return -1;
	if ((rg = digest_reply(rn, c, "HMGET group")) == NULL ||
	    (rz = digest_reply(rn, c, "ZCARD")) == NULL ||
	    (rp = digest_reply(rn, c, "ZREVRANGEBYSCORE posts")) == NULL)
		goto fail;
	if (rg->type != REDIS_REPLY_ARRAY && !digest_wrongtype(rg)) {
		digest_redis_error(rn, c, "HMGET group", rg);
		goto fail;
	}
	if (rz->type != REDIS_REPLY_INTEGER) {
		digest_redis_error(rn, c, "ZCARD", rz);
		goto fail;
	}
	if (rp->type != REDIS_REPLY_ARRAY || rp->elements % 2 != 0) {
		digest_redis_error(rn, c, "ZREVRANGEBYSCORE posts", rp);
		goto fail;
	}
	gi->id = j->group_id;
	gi->members = rz->integer;
	*gname = digest_field_dup(rg, 0, CAP_GROUP_NAME);
	*gurl = digest_field_dup(rg, 1, CAP_URL);
	gi->name = *gname;
	gi->url = *gurl;

	/* Round one: what ranks each post, and whether it exists at all. */
	want = rp->elements / 2;
	posts = wcalloc(want == 0 ? 1 : want, sizeof(*posts));
	for (i = 0; i < want; i++) {
		const redisReply *e = rp->element[2 * i];

		if (e->type != REDIS_REPLY_STRING)
			continue;
		rkey(key, sizeof(key), pfx, "post:%s", e->str);
		if (digest_append(rn, c, "HMGET post", "HMGET %s author_id "
		    "likes comments", key) == -1 ||
		    digest_append(rn, c, "HLEN post", "HLEN %s", key) == -1)
			goto fail;
	}
	for (i = 0; i < want; i++) {
		const redisReply *e = rp->element[2 * i];
		const redisReply *sc = rp->element[2 * i + 1];
		struct post *p;
		int64_t id;

		if (e->type != REDIS_REPLY_STRING)
			continue;
		if ((r = digest_reply(rn, c, "HMGET post")) == NULL)
			goto fail;
		if ((rl = digest_reply(rn, c, "HLEN post")) == NULL) {
			freeReplyObject(r);
			goto fail;
		}
		/* Read every reply even after an error, to stay in step. */
		if ((r->type != REDIS_REPLY_ARRAY && !digest_wrongtype(r)) ||
		    (rl->type != REDIS_REPLY_INTEGER &&
		    !digest_wrongtype(rl))) {
			if (!failed)
				digest_redis_error(rn, c, "HMGET post",
				    r->type == REDIS_REPLY_ERROR ? r : rl);
			failed = 1;
		}
		/* A post id that is not a number, or a deleted post: out. */
		if (!failed &&
		    parse_i64(e->str, INT64_MIN, INT64_MAX, &id) == 0 &&
		    rl->type == REDIS_REPLY_INTEGER && rl->integer > 0) {
			p = &posts[n++];
			p->id = id;
			p->posted_at = 0;
			if (sc->type == REDIS_REPLY_STRING &&
			    parse_double(sc->str, &score) == 0)
				p->posted_at = (int64_t)score;
			p->author_id = digest_field_i64(r, 0, -1);
			p->likes = digest_field_i64(r, 1, 0);
			p->comments = digest_field_i64(r, 2, 0);
		}
		freeReplyObject(r);
		freeReplyObject(rl);
	}
	if (failed)
		goto fail;

	/* Who has nothing new is judged on every post of the window. */
	*nallp = n;
	*sole = n > 0 ? posts[0].author_id : -1;
	for (i = 1; i < n && *sole >= 0; i++)
		if (posts[i].author_id != *sole)
			*sole = -1;

	/* Round two: the text of the posts the job can list. */
	render_sort_posts(posts, n);
	if (n > 0) {
		int64_t *authors = wcalloc(n, sizeof(*authors));

		for (i = 0; i < n; i++)
			authors[i] = posts[i].author_id;
		k = eligibility_posts_needed(authors, n,
		    (size_t)rn->ctx->cfg->digest.max_posts);
		free(authors);
	} else
		k = 0;
	for (i = 0; i < k; i++) {
		rkey(key, sizeof(key), pfx, "post:%lld",
		    (long long)posts[i].id);
		if (digest_append(rn, c, "HMGET post", "HMGET %s title url "
		    "author_name excerpt", key) == -1)
			goto fail;
	}
	for (i = 0; i < k; i++) {
		struct post *p = &posts[i];

		if ((r = digest_reply(rn, c, "HMGET post")) == NULL)
			goto fail;
		if (r->type != REDIS_REPLY_ARRAY && !digest_wrongtype(r)) {
			if (!failed)
				digest_redis_error(rn, c, "HMGET post", r);
			failed = 1;
		} else if (!failed) {
			p->title = digest_field_dup(r, 0, CAP_TITLE);
			p->url = digest_field_dup(r, 1, CAP_URL);
			p->author_name = digest_field_dup(r, 2, CAP_AUTHOR);
			p->excerpt = digest_field_dup(r, 3, CAP_EXCERPT);
		}
		freeReplyObject(r);
	}
	if (failed)
		goto fail;
	freeReplyObject(rg);
	freeReplyObject(rz);
	freeReplyObject(rp);
	/* The rest were only needed for ranking; keep the array small. */
	*postsp = wrealloc(posts, (k == 0 ? 1 : k) * sizeof(*posts));
	*npostsp = k;
	return 0;
fail:
	if (rg)
		freeReplyObject(rg);
	if (rz)
		freeReplyObject(rz);
	if (rp)
		freeReplyObject(rp);
	digest_post_free(posts, n);
	free(*gname);
	free(*gurl);
	*gname = *gurl = NULL;
	return -1;
}

static void
digest_batch_free(struct run *rn)
{
	size_t i;

	for (i = 0; i < rn->n; i++) {
		free(rn->m[i].email);
		free(rn->m[i].name);
	}
	free(rn->m);
	rn->m = NULL;
	rn->n = rn->front = rn->hint = rn->nqueued = rn->ndeferred = 0;
}

/*
 * Read the user hashes of the batch's members (those with a uid) in one
 * pipelined round and decide who is eligible; the others are done.
 */
static int
digest_load_users(struct run *rn)
{
	/* In the order of the HMGET below. */
	static const char *const fields[] = { "email", "name", "last_seen",
	    "digest" };
	redisContext *c = rn->ctx->data;
	const char *pfx = rn->ctx->cfg->redis.key_prefix;
	redisReply *r;
	char key[512];
	size_t i, k;
	long long len = 0;
	int failed = 0;

	for (i = 0; i < rn->n; i++) {
		if (rn->m[i].state != M_PENDING)
			continue;
		rkey(key, sizeof(key), pfx, "user:%lld",
		    (long long)rn->m[i].uid);
		if (digest_append(rn, c, "HMGET user",
		    "HMGET %s email name last_seen digest", key) == -1)
			return -1;
	}
	for (i = 0; i < rn->n; i++) {
		struct member *m = &rn->m[i];
		struct elig_member em;
		const redisReply *f;
		enum skip_reason why;

		if (m->state != M_PENDING)
			continue;
		if ((r = digest_reply(rn, c, "HMGET user")) == NULL)
			return -1;
		if ((r->type != REDIS_REPLY_ARRAY && !digest_wrongtype(r)) ||
		    failed) {
			if (!failed)
				digest_redis_error(rn, c, "HMGET user", r);
			failed = 1;
			freeReplyObject(r);
			continue;
		}
		/* A broken record costs this member, and no one else. */
		for (k = 0; k < sizeof(fields) / sizeof(fields[0]); k++)
			if ((len = digest_field_cut(r, k)) > DIGEST_FIELD_MAX)
				break;
		if (k < sizeof(fields) / sizeof(fields[0])) {
			log_warnx("uid=%lld: user field %s is %lld bytes long: "
			    "skipped as bad data", (long long)m->uid,
			    fields[k], len);
			metric_inc(rn->cells, MC_SKIPPED + SKIP_BAD_DATA);
			rn->cp->skipped++;
			m->state = M_DONE;
			freeReplyObject(r);
			continue;
		}
		em.uid = m->uid;
		em.email = (f = digest_field(r, 0)) ? f->str : NULL;
		em.digest = (f = digest_field(r, 3)) ? f->str : NULL;
		em.last_seen = (f = digest_field(r, 2)) ? f->str : NULL;
		/* An address with a NUL inside, or absurdly long, is none. */
		if (em.email != NULL && ((f = digest_field(r, 0))->len >
		    CAP_EMAIL || strlen(f->str) != f->len))
			em.email = NULL;
		if (!eligibility_check(&rn->ej, &em, &why)) {
			metric_inc(rn->cells, MC_SKIPPED + why);
			rn->cp->skipped++;
			m->state = M_DONE;
		} else {
			m->email = wstrdup(em.email);
			m->name = digest_field_dup(r, 1, CAP_NAME);
		}
		freeReplyObject(r);
	}
	return failed ? -1 : 0;
}

/*
 * Read the next batch after cursor: the members, then their user hashes
 * in one pipelined round.  *last is set when the range is exhausted.
 */
static int
digest_load_batch(struct run *rn, int64_t cursor, int *last)
{
	redisContext *c = rn->ctx->data;
	const char *pfx = rn->ctx->cfg->redis.key_prefix;
	const struct job *j = rn->job;
	int batch = rn->ctx->cfg->digest.batch_size;
	redisReply *rm;
	char key[512];
	size_t i, n;

	rkey(key, sizeof(key), pfx, "group:%lld:members",
	    (long long)j->group_id);
	if (digest_append(rn, c, "ZRANGEBYSCORE members",
	    "ZRANGEBYSCORE %s (%lld %lld WITHSCORES LIMIT 0 %d", key,
	    (long long)cursor, (long long)j->member_max, batch) == -1)
		return -1;
	if ((rm = digest_reply(rn, c, "ZRANGEBYSCORE members")) == NULL)
		return -1;
	if (rm->type != REDIS_REPLY_ARRAY || rm->elements % 2 != 0) {
		digest_redis_error(rn, c, "ZRANGEBYSCORE members", rm);
		freeReplyObject(rm);
		return -1;
	}
	n = rm->elements / 2;
	*last = n < (size_t)batch;
	rn->m = wcalloc(n == 0 ? 1 : n, sizeof(*rn->m));
	rn->n = n;
	for (i = 0; i < n; i++) {
		const redisReply *e = rm->element[2 * i];
		const redisReply *s = rm->element[2 * i + 1];
		struct member *m = &rn->m[i];
		double score = 0;

		if (s->type == REDIS_REPLY_STRING)
			(void)parse_double(s->str, &score);
		/*
		 * The score is the user id; ceil() keeps a stray fractional
		 * score from being read again forever.
		 */
		m->cursor = (int64_t)ceil(score);
		if (m->cursor <= cursor)
			m->cursor = cursor + 1;
		cursor = m->cursor;
		if (e->type != REDIS_REPLY_STRING ||
		    parse_i64(e->str, 0, INT64_MAX, &m->uid) == -1) {
			/* Not a user id: nobody to write to. */
			m->uid = -1;
			m->state = M_DONE;
			continue;
		}
		m->state = M_PENDING;
	}
	freeReplyObject(rm);
	return digest_load_users(rn);
}

/* Heartbeat and the source's keepalive, at most every TICK_NS. */
static void
digest_tick(struct run *rn, int force)
{
	int64_t now = now_mono_ns();

	if (!force && now - rn->last_tick_ns < TICK_NS)
		return;
	rn->last_tick_ns = now;
	if (rn->ctx->tick != NULL && rn->ctx->tick(rn->ctx->tick_arg) == -1)
		rn->tick_failed = 1;
}

static int
digest_draining(struct run *rn)
{
	return atomic_load(&rn->ctx->slot->cmd) == SB_CMD_DRAIN;
}

/* The checkpoint's key, digest:job:{job_id}, where parked uids are kept. */
static char *
digest_cp_key(struct run *rn, char *buf, size_t len)
{
	return rkey(buf, len, rn->ctx->cfg->redis.key_prefix, "digest:job:%s",
	    rn->job->job_id);
}

/*
 * Write the parked list into the checkpoint's `deferred` field, which
 * checkpoint_save stores with the cursor in one HSET: Redis never holds a
 * cursor past a parked recipient without the list that keeps it.
 */
static void
digest_parked_format(struct run *rn)
{
	char *buf = rn->cp->deferred;
	size_t i, off = 0, cap = sizeof(rn->cp->deferred);

	buf[0] = '\0';
	for (i = 0; i < rn->npk && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%lld:%d",
		    i ? "," : "", (long long)rn->pk[i].uid, rn->pk[i].tries);
	rn->cp->deferred_dirty = 1;
}

/* Read the parked list a previous attempt left; 0 or -1. */
static int
digest_parked_load(struct run *rn)
{
	redisContext *q = rn->ctx->queue;
	redisReply *r;
	char key[512], *p, *next, *colon;
	int64_t uid, tries;

	if (digest_cp_key(rn, key, sizeof(key)) == NULL)
		return -1;
	if ((r = redisCommand(q, "HGET %s deferred", key)) == NULL) {
		if (q->err == REDIS_ERR_OOM)
			worker_oom();
		digest_redis_error(rn, q, "HGET deferred", NULL);
		return -1;
	}
	if (r->type == REDIS_REPLY_STRING) {
		rn->pk = wcalloc(PARKED_MAX, sizeof(*rn->pk));
		for (p = r->str; p != NULL && rn->npk < PARKED_MAX; p = next) {
			if ((next = strchr(p, ',')) != NULL)
				*next++ = '\0';
			if ((colon = strchr(p, ':')) == NULL)
				continue;
			*colon++ = '\0';
			if (parse_i64(p, 0, INT64_MAX, &uid) == -1 ||
			    parse_i64(colon, 0, PARKED_GIVE_UP, &tries) == -1)
				continue;
			rn->pk[rn->npk].uid = uid;
			rn->pk[rn->npk].tries = (int)tries;
			rn->npk++;
		}
	} else if (r->type == REDIS_REPLY_ERROR) {
		digest_redis_error(rn, q, "HGET deferred", r);
		freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

static void
digest_park(struct run *rn, int64_t uid)
{
	size_t i;

	for (i = 0; i < rn->npk; i++)
		if (rn->pk[i].uid == uid)
			return;
	if (rn->pk == NULL)
		rn->pk = wcalloc(PARKED_MAX, sizeof(*rn->pk));
	rn->pk[rn->npk].uid = uid;
	rn->pk[rn->npk].tries = 0;
	rn->npk++;
	rn->pk_dirty = 1;
}

static void
digest_unpark(struct run *rn, int64_t uid)
{
	size_t i;

	for (i = 0; i < rn->npk; i++) {
		if (rn->pk[i].uid != uid)
			continue;
		rn->pk[i] = rn->pk[--rn->npk];
		rn->pk_dirty = 1;
		return;
	}
}

static int
digest_save(struct run *rn)
{
	if (rn->cp->cursor == rn->saved_cursor && !rn->save_failed &&
	    !rn->pk_dirty)
		return 0;
	if (rn->pk_dirty)
		digest_parked_format(rn);
	if (checkpoint_save(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp)
	    == -1) {
		if (rn->ctx->queue->err == REDIS_ERR_OOM)
			worker_oom();
		/* Refused by a server out of memory or read-only: an outage. */
		if (checkpoint_failed_outage(rn->ctx->queue))
			rn->cp->outage = 1;
		if (!rn->save_failed) {
			metric_inc(rn->cells, MC_REDIS_ERRORS);
			snprintf(rn->reason, rn->reasonlen,
			    "cannot save the checkpoint");
		}
		rn->save_failed = 1;
		return -1;
	}
	rn->pk_dirty = 0;
	rn->cp->deferred_dirty = 0;
	rn->saved_cursor = rn->cp->cursor;
	/* Cursor and parked list are in Redis: the slot may follow. */
	atomic_store(&rn->ctx->slot->cursor, (uint64_t)rn->cp->cursor);
	return 0;
}

/*
 * Move the frontier over the members that are done, and the cursor with
 * it: in the slot at once, in Redis at the next digest_save.  The
 * supervisor saves the slot's cursor alone when a worker dies, so while
 * a parked recipient is not in Redis yet the slot's cursor stays behind
 * it (digest_save moves it once the list is stored): else a kill would
 * lose that recipient.
 */
static void
digest_advance(struct run *rn)
{
	size_t f = rn->front;

	while (f < rn->n && rn->m[f].state == M_DONE)
		f++;
	if (f == rn->front)
		return;
	rn->front = f;
	rn->cp->cursor = rn->m[f - 1].cursor;
	if (!rn->pk_dirty)
		atomic_store(&rn->ctx->slot->cursor,
		    (uint64_t)rn->cp->cursor);
}

static struct member *
digest_find(struct run *rn, int64_t uid)
{
	size_t i, k;

	/* Results come in queue order: the hint is nearly always right. */
	for (k = 0; k < rn->n; k++) {
		i = (rn->hint + k) % rn->n;
		if (rn->m[i].uid == uid && rn->m[i].state == M_QUEUED) {
			rn->hint = i + 1;
			return &rn->m[i];
		}
	}
	return NULL;
}

static void
digest_result_cb(void *arg, const struct email *e, enum tp_result res,
    const char *detail)
{
	struct run *rn = arg;
	struct member *m;
	int64_t delay;

	if ((m = digest_find(rn, e->uid)) == NULL) {
		log_warnx("transport reported uid %lld, not in the batch",
		    (long long)e->uid);
		return;
	}
	rn->nqueued--;
	switch (res) {
	case TP_SENT:
		m->state = M_DONE;
		rn->cp->sent++;
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_SENT));
		delay = now_real_ns() - rn->job->window_end * 1000000000LL;
		metric_observe(rn->cells, HIST_EMAIL_DELAY, delay);
		break;
	case TP_REJECTED:
		m->state = M_DONE;
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_REJECTED));
		log_info("rejected uid=%lld: %s", (long long)m->uid,
		    detail ? detail : "");
		break;
	case TP_DEFERRED:
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_DEFERRED));
		log_debug("deferred uid=%lld: %s", (long long)m->uid,
		    detail ? detail : "");
		/*
		 * Parked at once, while there is room, so that the frontier
		 * goes on past it: everyone sent after it is then recorded
		 * as done, and a kill later in the batch re-sends nobody.
		 * The parked pass leaves its deferred to the next round.
		 */
		if (!rn->parked_pass && rn->npk < PARKED_MAX) {
			digest_park(rn, m->uid);
			m->state = M_DONE;
		} else {
			m->state = M_DEFERRED;
			rn->ndeferred++;
		}
		break;
	}
	if (m->state == M_DONE) {
		/*
		 * The frontier moves past a delivered message at once in the
		 * slot, from which the supervisor saves it if this worker is
		 * killed (Redis backend), so a kill re-sends at most the
		 * message in flight; Redis hears of it once per flush.  On
		 * the AMQP backend the broker hands a dead worker's job to
		 * another one at once, before the supervisor could save the
		 * slot's cursor: there every delivered message is saved.
		 */
		if (rn->parked_pass && res != TP_DEFERRED)
			digest_unpark(rn, m->uid);
		digest_advance(rn);
		if (rn->save_each || rn->parked_pass || rn->pk_dirty)
			(void)digest_save(rn);
	}
	digest_tick(rn, 0);
}

/*
 * Deliver what is queued.  0, or -1 when the transport failed (members
 * without an outcome are left unconfirmed) or a checkpoint save failed.
 */
static int
digest_flush(struct run *rn)
{
	char err[256] = "";
	size_t i;
	int rc;

	if (rn->nqueued == 0)
		return rn->save_failed ? -1 : 0;
	rc = rn->ctx->tp_ops->flush(rn->ctx->tp, digest_result_cb, rn, err,
	    sizeof(err));
	if (rc == -1 || rn->nqueued > 0) {
		for (i = 0; i < rn->n; i++)
			if (rn->m[i].state == M_QUEUED)
				rn->m[i].state = M_UNCONFIRMED;
		rn->nqueued = 0;
		metric_inc(rn->cells, MC_TRANSPORT_ERRORS + rn->tp_type);
		rn->cp->outage = 1;
		snprintf(rn->reason, rn->reasonlen, "transport %s: %s",
		    rn->ctx->tp_ops->name, err[0] ? err : "no outcome");
		digest_advance(rn);
		(void)digest_save(rn);
		return -1;
	}
	digest_advance(rn);
	(void)digest_save(rn);
	digest_tick(rn, 0);
	return rn->save_failed ? -1 : 0;
}

/* Render m's email and queue it; flushes every flush_n messages. */
static int
digest_send(struct run *rn, struct member *m)
{
	struct digest_priv *dp = rn->dp;
	struct recipient rc;
	struct email e;
	char mid[512];
	int np;

	rc.uid = m->uid;
	rc.email = m->email;
	rc.name = m->name;
	rbuf_reset(&dp->msg);
	np = render_message(dp->render, &rc, &dp->msg, mid, sizeof(mid));
	if (np <= 0) {
		enum skip_reason why = np == 0 ? SKIP_NOTHING_NEW :
		    SKIP_NO_EMAIL;

		metric_inc(rn->cells, MC_SKIPPED + why);
		rn->cp->skipped++;
		m->state = M_DONE;
		return 0;
	}
	e.uid = m->uid;
	e.rcpt = m->email;
	e.message_id = mid;
	e.job_id = rn->job->job_id;
	e.data = dp->msg.p;
	e.len = dp->msg.len;
	if (rn->ctx->tp_ops->send(rn->ctx->tp, &e) == -1) {
		m->state = M_UNCONFIRMED;
		metric_inc(rn->cells, MC_TRANSPORT_ERRORS + rn->tp_type);
		snprintf(rn->reason, rn->reasonlen, "transport %s: cannot "
		    "queue a message", rn->ctx->tp_ops->name);
		(void)digest_flush(rn);
		return -1;
	}
	m->state = M_QUEUED;
	rn->nqueued++;
	if (rn->nqueued >= rn->flush_n)
		return digest_flush(rn);
	return 0;
}

/* Sleep ms, ticking; 1 if told to drain meanwhile or the tick failed. */
static int
digest_sleep(struct run *rn, int64_t ms)
{
	int64_t end = now_mono_ns() + ms * 1000000LL;
	struct timespec ts = { 0, 100000000L };

	while (now_mono_ns() < end) {
		digest_tick(rn, 0);
		if (rn->tick_failed || digest_draining(rn))
			return 1;
		nanosleep(&ts, NULL);
	}
	return 0;
}

enum batch_outcome { B_OK, B_RETRY, B_STOPPED };

/* Send the batch's eligible members, then retry the deferred ones. */
static enum batch_outcome
digest_batch(struct run *rn)
{
	size_t i;
	int k, flushed;

	for (i = 0; i < rn->n; i++) {
		if (rn->m[i].state != M_PENDING)
			continue;
		digest_tick(rn, 0);
		if (rn->tick_failed || digest_draining(rn))
			break;
		if (digest_send(rn, &rn->m[i]) == -1)
			return B_RETRY;
	}
	/*
	 * Recipients deferred by the server were parked as their replies
	 * came (digest_result_cb); those left deferred here found the
	 * parked list full: the server defers everyone, and they wait in
	 * place below, holding the frontier like an outage.
	 */
	flushed = digest_flush(rn);
	digest_advance(rn);
	if (flushed == -1)
		return B_RETRY;
	if (digest_draining(rn))
		return B_STOPPED;
	if (rn->tick_failed) {
		rn->cp->outage = 1;
		snprintf(rn->reason, rn->reasonlen,
		    "lost the queue connection");
		return B_RETRY;
	}
	if (rn->parked_pass)
		return B_OK;

	for (k = 0; k < DEFER_RETRIES && rn->ndeferred > 0; k++) {
		int64_t ms = (int64_t)DEFER_BACKOFF_MS << k;

		if (digest_sleep(rn, ms < DEFER_BACKOFF_MAX_MS ? ms :
		    DEFER_BACKOFF_MAX_MS)) {
			if (digest_draining(rn))
				return B_STOPPED;
			rn->cp->outage = 1;
			snprintf(rn->reason, rn->reasonlen,
			    "lost the queue connection");
			return B_RETRY;
		}
		for (i = 0; i < rn->n; i++) {
			if (rn->m[i].state != M_DEFERRED)
				continue;
			rn->ndeferred--;
			rn->m[i].state = M_PENDING;
			if (digest_send(rn, &rn->m[i]) == -1)
				return B_RETRY;
		}
		if (digest_flush(rn) == -1)
			return B_RETRY;
	}
	if (rn->ndeferred > 0) {
		rn->cp->outage = 1;
		snprintf(rn->reason, rn->reasonlen, "%zu recipient%s deferred "
		    "by the server", rn->ndeferred,
		    rn->ndeferred == 1 ? "" : "s");
		return B_RETRY;
	}
	return B_OK;
}

/*
 * Send the parked recipients again, as one batch whose frontier stays
 * where the cursor is.  Those done (sent, rejected, no longer eligible)
 * leave the list.
 */
static enum batch_outcome
digest_parked_pass(struct run *rn)
{
	enum batch_outcome bo;
	size_t i;

	if (rn->npk == 0)
		return B_OK;
	rn->m = wcalloc(rn->npk, sizeof(*rn->m));
	rn->n = rn->npk;
	for (i = 0; i < rn->n; i++) {
		rn->m[i].uid = rn->pk[i].uid;
		rn->m[i].cursor = rn->cp->cursor;
		rn->m[i].state = M_PENDING;
	}
	if (digest_load_users(rn) == -1) {
		digest_batch_free(rn);
		return B_RETRY;
	}
	rn->parked_pass = 1;
	bo = digest_batch(rn);
	rn->parked_pass = 0;
	for (i = 0; i < rn->n; i++)
		if (rn->m[i].state == M_DONE)
			digest_unpark(rn, rn->m[i].uid);
	digest_batch_free(rn);
	if (bo == B_OK && digest_save(rn) == -1)
		bo = B_RETRY;
	return bo;
}

/*
 * At the end of the walk: retry the parked recipients a few times with
 * backoff; those still deferred count one more attempt, and are given up
 * after PARKED_GIVE_UP.  B_RETRY while some remain.
 */
static enum batch_outcome
digest_parked_rounds(struct run *rn)
{
	enum batch_outcome bo;
	size_t i;
	int k;

	for (k = 0; k < PARKED_ROUNDS && rn->npk > 0; k++) {
		if (digest_sleep(rn, (int64_t)DEFER_BACKOFF_MS << k)) {
			if (digest_draining(rn))
				return B_STOPPED;
			rn->cp->outage = 1;
			snprintf(rn->reason, rn->reasonlen,
			    "lost the queue connection");
			return B_RETRY;
		}
		if ((bo = digest_parked_pass(rn)) != B_OK)
			return bo;
	}
	for (i = 0; i < rn->npk; ) {
		if (++rn->pk[i].tries < PARKED_GIVE_UP) {
			i++;
			continue;
		}
		log_warnx("uid=%lld still deferred after %d attempts: given up",
		    (long long)rn->pk[i].uid, PARKED_GIVE_UP);
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_REJECTED));
		rn->pk[i] = rn->pk[--rn->npk];
	}
	rn->pk_dirty = 1;
	if (digest_save(rn) == -1)
		return B_RETRY;
	if (rn->npk > 0) {
		/*
		 * Only parked recipients are left: their own count bounds
		 * the retries, so the job's attempts are not spent on them.
		 */
		rn->cp->outage = 1;
		snprintf(rn->reason, rn->reasonlen, "%zu recipient%s deferred "
		    "by the server", rn->npk, rn->npk == 1 ? "" : "s");
		return B_RETRY;
	}
	return B_OK;
}

/* Load the group and hand its posts to the renderer. */
static int
digest_prepare(struct run *rn)
{
	struct digest_priv *dp = rn->dp;
	struct group_info gi;
	struct post *posts;
	char *gname, *gurl, err[256];
	size_t n, nall;
	int64_t sole;

	if (dp->render == NULL &&
	    (dp->render = render_new(rn->ctx->cfg, err, sizeof(err))) == NULL) {
		snprintf(rn->reason, rn->reasonlen, "templates: %s", err);
		return -1;
	}
	memset(&gi, 0, sizeof(gi));
	if (digest_load_group(rn, &gi, &posts, &n, &nall, &sole, &gname,
	    &gurl) == -1)
		return -1;
	if (render_job(dp->render, rn->job, &gi, posts, n) == -1)
		worker_oom();
	/* The renderer now points into the new posts: the old ones can go. */
	digest_post_free(dp->posts, dp->nposts);
	free(dp->gname);
	free(dp->gurl);
	dp->posts = posts;
	dp->nposts = n;
	dp->gname = gname;
	dp->gurl = gurl;

	rn->ej.period = rn->job->period;
	rn->ej.window_end = rn->job->window_end;
	rn->ej.group_size = gi.members;
	rn->ej.large_group_threshold =
	    rn->ctx->cfg->digest.large_group_threshold;
	rn->ej.inactive_after_s = rn->ctx->cfg->digest.inactive_after_ms / 1000;
	rn->ej.nposts = nall;
	rn->ej.sole_author = sole;
	return 0;
}

enum digest_result
digest_run(struct digest_ctx *ctx, const struct job *job, struct checkpoint *cp,
    char *reason, size_t reasonlen)
{
	const struct config *cfg = ctx->cfg;
	struct run rn;
	enum batch_outcome bo = B_OK;
	int64_t cursor;
	int last = 0;

	if (ctx->priv == NULL)
		ctx->priv = wcalloc(1, sizeof(struct digest_priv));
	memset(&rn, 0, sizeof(rn));
	rn.ctx = ctx;
	rn.job = job;
	rn.cp = cp;
	cp->outage = 0;
	rn.save_each = cfg->queue.backend == QUEUE_BACKEND_AMQP;
	rn.dp = ctx->priv;
	rn.cells = ctx->slot->cells;
	rn.tp_type = ctx->tp_ops->type;
	rn.reason = reason;
	rn.reasonlen = reasonlen;
	rn.last_tick_ns = now_mono_ns();
	reason[0] = '\0';
	rn.flush_n = cfg->digest.batch_size;
	if (rn.tp_type == TRANSPORT_SMTP &&
	    (size_t)cfg->smtp.messages_per_session < rn.flush_n)
		rn.flush_n = cfg->smtp.messages_per_session;
	if (rn.tp_type == TRANSPORT_MAILDIR && rn.flush_n > MAILDIR_FLUSH)
		rn.flush_n = MAILDIR_FLUSH;
	if (rn.flush_n == 0)
		rn.flush_n = 1;

	cursor = cp->cursor;
	if (cursor < job->member_min - 1)
		cursor = job->member_min - 1;
	else if (cursor >= job->member_min && cp->sent > 0)
		/* A resumed job: those already sent are not sent again. */
		metric_add(rn.cells, MC_SKIPPED + SKIP_ALREADY_SENT,
		    (uint64_t)cp->sent);
	cp->cursor = cursor;
	rn.saved_cursor = cursor;
	atomic_store(&ctx->slot->cursor, (uint64_t)cursor);

	if (digest_prepare(&rn) == -1)
		return DIGEST_RETRY;
	if (digest_parked_load(&rn) == -1)
		return DIGEST_RETRY;
	/* Those a previous attempt parked go first. */
	if ((bo = digest_parked_pass(&rn)) != B_OK)
		last = 1;

	while (!last && cp->cursor < job->member_max) {
		digest_tick(&rn, 0);
		if (digest_draining(&rn)) {
			bo = B_STOPPED;
			break;
		}
		if (rn.tick_failed) {
			snprintf(reason, reasonlen,
			    "lost the queue connection");
			bo = B_RETRY;
			break;
		}
		if (digest_load_batch(&rn, cp->cursor, &last) == -1) {
			digest_batch_free(&rn);
			bo = B_RETRY;
			break;
		}
		if (rn.n == 0) {
			digest_batch_free(&rn);
			break;
		}
		bo = digest_batch(&rn);
		digest_batch_free(&rn);
		if (bo != B_OK)
			break;
		if (digest_save(&rn) == -1) {
			bo = B_RETRY;
			break;
		}
	}
	if (bo == B_OK && rn.npk > 0)
		bo = digest_parked_rounds(&rn);
	rn.save_failed = 0;
	if (digest_save(&rn) == -1)
		bo = B_RETRY;
	free(rn.pk);
	if (bo == B_OK) {
		if (checkpoint_finish(ctx->queue, cfg, job, "done", NULL)
		    == -1) {
			if (ctx->queue->err == REDIS_ERR_OOM)
				worker_oom();
			metric_inc(rn.cells, MC_REDIS_ERRORS);
			snprintf(reason, reasonlen,
			    "cannot finish the checkpoint");
			return DIGEST_RETRY;
		}
		log_debug("job %s done: sent %lld skipped %lld", job->job_id,
		    (long long)cp->sent, (long long)cp->skipped);
		return DIGEST_DONE;
	}
	if (bo == B_STOPPED) {
		snprintf(reason, reasonlen, "draining");
		return DIGEST_STOPPED;
	}
	if (reason[0] == '\0')
		snprintf(reason, reasonlen, "retry");
	return DIGEST_RETRY;
}

void
digest_ctx_clear(struct digest_ctx *ctx)
{
	struct digest_priv *dp = ctx->priv;

	if (dp == NULL)
		return;
	render_free(dp->render);
	digest_post_free(dp->posts, dp->nposts);
	free(dp->gname);
	free(dp->gurl);
	rbuf_free(&dp->msg);
	free(dp);
	ctx->priv = NULL;
}
