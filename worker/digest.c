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

#include "checkpoint.h"
#include "cursor.h"
#include "digest.h"
#include "zpage.h"
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
 * A recipient the server defers (4xx: greylisting, a full mailbox, a
 * throttle) is parked in the checkpoint and retried on a clock, as an
 * MTA's queue does (smtp.defer_retry_min doubling to defer_retry_max),
 * and given up only defer_give_up after its first 4xx.  The walk goes on
 * past it; once PARKED_MAX recipients wait (a server deferring nearly
 * everyone), the walk stops and the job waits for them.  The wait holds
 * no worker: the job goes to its queue's delayed set until the earliest
 * retry is due.  PARKED_CAP bounds the list, whatever the server says.
 */
#define PARKED_MAX		100
#define PARKED_CAP		1000
#define TICK_NS			250000000LL
/*
 * A maildir flush syncs its messages' files together, then renames each
 * into new/ and syncs the directory before reporting it: 16 a flush share
 * the file sync.
 */
#define MAILDIR_FLUSH		16

enum member_state {
	M_PENDING,		/* not handled yet */
	M_QUEUED,		/* handed to the transport, no outcome yet */
	M_DONE,			/* skipped, sent, rejected or parked */
	M_UNCONFIRMED,		/* the transport failed, no outcome */
};

struct member {
	int64_t uid;		/* -1: the member is not a user id */
	struct cursor pos;	/* where it stands in the walk (a user id's) */
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
	struct parked *pk;	/* recipients waiting for a retry */
	size_t npk;
	size_t capk;
	int parked_pass;	/* the batch is the parked recipients */
	char defer_detail[160];	/* the server's last 4xx */

	/* The walk of the members, and where it resumes from. */
	struct zpage zp;
	int walk_open;
	char walk_key[512];
	char seek_score[CURSOR_STR_MAX];
	char seek_member[CURSOR_STR_MAX];

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
	rn->n = rn->front = rn->hint = rn->nqueued = 0;
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
 * Start (or restart) the walk of the job's members after the cursor: the
 * scores from member_min (inclusive) to below member_max + 1 (a member
 * belongs to the shard of the floor of its score), or to +inf for a
 * group's last shard, which also takes the members who joined after
 * scheduling.  The members are paged by a (score, member) cursor
 * (zpage.c), so fractional, shared or negative scores, and members who
 * join or leave meanwhile, never make the walk skip or repeat a member.
 */
static int
digest_walk_start(struct run *rn)
{
	const struct job *j = rn->job;
	char lo[CURSOR_STR_MAX], hi[CURSOR_STR_MAX];
	int l;

	zpage_clear(&rn->zp);
	if (j->member_min == INT64_MIN)
		strlcpy(lo, "-inf", sizeof(lo));
	else
		snprintf(lo, sizeof(lo), "%lld", (long long)j->member_min);
	if (j->last_shard || j->member_max == INT64_MAX)
		strlcpy(hi, "+inf", sizeof(hi));
	else
		snprintf(hi, sizeof(hi), "(%lld", (long long)j->member_max + 1);
	if (rkey(rn->walk_key, sizeof(rn->walk_key),
	    rn->ctx->cfg->redis.key_prefix, "group:%lld:members",
	    (long long)j->group_id) == NULL ||
	    zpage_init(&rn->zp, rn->walk_key, lo, hi,
	    rn->ctx->cfg->digest.batch_size) == -1) {
		snprintf(rn->reason, rn->reasonlen, "key_prefix too long");
		return -1;
	}
	if (rn->cp->cursor.set) {
		cursor_score_str(rn->cp->cursor.score, rn->seek_score,
		    sizeof(rn->seek_score));
		l = snprintf(rn->seek_member, sizeof(rn->seek_member), "%lld",
		    (long long)rn->cp->cursor.uid);
		zpage_seek(&rn->zp, rn->seek_score, rn->cp->cursor.score,
		    rn->seek_member, (size_t)l);
	}
	return 0;
}

/*
 * Read the next batch of members, then their user hashes in one
 * pipelined round.  *last is set when the range is exhausted.
 */
static int
digest_load_batch(struct run *rn, int *last)
{
	redisContext *c = rn->ctx->data;
	const struct job *j = rn->job;
	redisReply *r;
	char err[256];
	const char *e;
	size_t i, len;
	double score;
	int64_t fl;
	int rv;

	*last = 0;
	rn->n = 0;
	for (;;) {
		if (rn->zp.done) {
			*last = 1;
			rn->m = wcalloc(1, sizeof(*rn->m));
			return 0;
		}
		if (zpage_append(&rn->zp, c) == -1) {
			if (c->err == REDIS_ERR_OOM)
				worker_oom();
			digest_redis_error(rn, c, "ZRANGEBYSCORE members", NULL);
			return -1;
		}
		if ((r = digest_reply(rn, c, "ZRANGEBYSCORE members")) == NULL)
			return -1;
		if (r->type == REDIS_REPLY_ERROR) {
			digest_redis_error(rn, c, "ZRANGEBYSCORE members", r);
			freeReplyObject(r);
			return -1;
		}
		/* zpage owns the reply from here. */
		if ((rv = zpage_feed(&rn->zp, r, err, sizeof(err))) == -1) {
			metric_inc(rn->cells, MC_REDIS_ERRORS);
			snprintf(rn->reason, rn->reasonlen, "%s", err);
			return -1;
		}
		if (rv == ZPAGE_END) {
			*last = 1;
			rn->m = wcalloc(1, sizeof(*rn->m));
			return 0;
		}
		if (rv == ZPAGE_READY)
			break;
	}
	*last = rn->zp.done;
	rn->m = wcalloc(rn->zp.n - rn->zp.first, sizeof(*rn->m));
	for (i = rn->zp.first; i < rn->zp.n; i++) {
		struct member *m;

		e = zpage_member(&rn->zp, i, &len);
		score = zpage_score(&rn->zp, i);
		/*
		 * The bound went to Redis as a double: past 2^53 it is not
		 * exact, the floor of the score is.
		 */
		fl = zpage_floor(score);
		if (fl < j->member_min ||
		    (!j->last_shard && fl > j->member_max))
			continue;
		m = &rn->m[rn->n++];
		if (cursor_parse_uid(e, len, &m->uid) == -1) {
			/* Not a user id: nobody to write to. */
			m->uid = -1;
			m->state = M_DONE;
			metric_inc(rn->cells, MC_SKIPPED + SKIP_BAD_DATA);
			rn->cp->skipped++;
			continue;
		}
		m->pos.set = 1;
		m->pos.score = score;
		m->pos.uid = m->uid;
		m->state = M_PENDING;
	}
	if (checkpoint_sync(rn->ctx->queue, rn->cp) == -1 &&
	    rn->ctx->queue->err) {
		digest_redis_error(rn, rn->ctx->queue, "checkpoint", NULL);
		return -1;
	}
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

/* A checkpoint write failed: an outage when the connection is gone. */
static void
digest_cp_failed(struct run *rn)
{
	redisContext *q = rn->ctx->queue;

	if (q != NULL && q->err == REDIS_ERR_OOM)
		worker_oom();
	/* Lost, or refused by a server out of memory or read-only. */
	if (checkpoint_failed_outage(q))
		rn->cp->outage = 1;
	if (!rn->save_failed) {
		metric_inc(rn->cells, MC_REDIS_ERRORS);
		snprintf(rn->reason, rn->reasonlen,
		    "cannot save the checkpoint");
	}
	rn->save_failed = 1;
}

static struct parked *
digest_parked_find(struct run *rn, int64_t uid)
{
	size_t i;

	for (i = 0; i < rn->npk; i++)
		if (rn->pk[i].uid == uid)
			return &rn->pk[i];
	return NULL;
}

/* The delay before a recipient's next try after its tries-th 4xx. */
static int64_t
digest_retry_ms(struct run *rn, int tries)
{
	const struct config *cfg = rn->ctx->cfg;
	int64_t ms = cfg->smtp.defer_retry_min_ms;
	int k;

	for (k = 1; k < tries && ms < cfg->smtp.defer_retry_max_ms; k++)
		ms *= 2;
	return ms < cfg->smtp.defer_retry_max_ms ? ms :
	    cfg->smtp.defer_retry_max_ms;
}

/*
 * Keep p for the next checkpoint save, Redis being away: the frontier may
 * then pass it, but the slot's cursor (which the supervisor saves alone
 * if this worker dies) stays behind until the save.  0, or -1 when there
 * is no room left to keep it.
 */
static int
digest_park_later(struct run *rn, const struct parked *p)
{
	struct checkpoint *cp = rn->cp;
	int i;

	for (i = 0; i < cp->nunsaved; i++)
		if (cp->unsaved[i].uid == p->uid)
			break;
	if (i == CP_UNSAVED_MAX)
		return -1;
	cp->unsaved[i] = *p;
	if (i == cp->nunsaved)
		cp->nunsaved++;
	return 0;
}

/*
 * Record a 4xx for uid: parked with its first try now, or, parked
 * already, its next try moved on the clock.  Sent to Redis, and read back
 * before the cursor may pass it: a cursor saved past a recipient whose
 * wait Redis does not know would lose that recipient.  When Redis does
 * not take it, it is kept for the next save (digest_park_later).  0, or
 * -1 when it could be neither saved nor kept: the frontier then stops
 * before it, and the recipient is tried again.
 */
static int
digest_park(struct run *rn, int64_t uid)
{
	struct parked *p;
	int64_t now = now_real_ns() / 1000000;

	if ((p = digest_parked_find(rn, uid)) == NULL) {
		if (rn->npk == rn->capk) {
			rn->capk = rn->capk ? rn->capk * 2 : 16;
			rn->pk = wrealloc(rn->pk, rn->capk * sizeof(*rn->pk));
		}
		p = &rn->pk[rn->npk++];
		p->uid = uid;
		p->first_ms = now;
		p->tries = 0;
	}
	p->tries++;
	p->next_ms = now + digest_retry_ms(rn, p->tries);
	rn->cp->parked = rn->npk;
	if (checkpoint_park(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp, p,
	    rn->npk) == -1 ||
	    checkpoint_sync(rn->ctx->queue, rn->cp) == -1) {
		digest_cp_failed(rn);
		return digest_park_later(rn, p);
	}
	return 0;
}

/* uid is no longer waiting (sent, rejected, given up, not eligible). */
static void
digest_unpark(struct run *rn, int64_t uid)
{
	struct parked *p;

	struct checkpoint *cp = rn->cp;
	int i;

	if ((p = digest_parked_find(rn, uid)) == NULL)
		return;
	*p = rn->pk[--rn->npk];
	cp->parked = rn->npk;
	for (i = 0; i < cp->nunsaved; i++) {
		if (cp->unsaved[i].uid == uid) {
			cp->unsaved[i] = cp->unsaved[--cp->nunsaved];
			break;
		}
	}
	if (checkpoint_unpark(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp,
	    uid, rn->npk) == -1)
		digest_cp_failed(rn);
}

/* Save cursor and counts, reading back what was sent meanwhile; 0 / -1. */
static int
digest_save(struct run *rn)
{
	if (checkpoint_save(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp)
	    == -1) {
		digest_cp_failed(rn);
		return -1;
	}
	/* Everything it knows is in Redis: the slot may follow. */
	sb_cursor_set(rn->ctx->slot, &rn->cp->cursor);
	return rn->save_failed ? -1 : 0;
}

/*
 * Move the frontier over the members that are done, and the cursor with
 * it: in the slot and in Redis at once (Redis without waiting for its
 * answer: read back at the end of the flush).  A member that is not a
 * user id leaves the cursor where it was: passing it again is harmless.
 */
static void
digest_advance(struct run *rn)
{
	size_t f = rn->front, k;
	int moved = 0;

	while (f < rn->n && rn->m[f].state == M_DONE)
		f++;
	if (f == rn->front)
		return;
	for (k = f; k > rn->front; k--) {
		if (rn->m[k - 1].pos.set) {
			rn->cp->cursor = rn->m[k - 1].pos;
			moved = 1;
			break;
		}
	}
	rn->front = f;
	if (!moved)
		return;
	/* Not past a recipient whose wait Redis does not know yet. */
	if (rn->cp->nunsaved == 0)
		sb_cursor_set(rn->ctx->slot, &rn->cp->cursor);
	if (checkpoint_progress(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp)
	    == -1)
		digest_cp_failed(rn);
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
	struct parked *p;
	int64_t delay;

	if ((m = digest_find(rn, e->uid)) == NULL) {
		log_warnx("transport reported uid %lld, not in the batch",
		    (long long)e->uid);
		return;
	}
	rn->nqueued--;
	m->state = M_DONE;
	switch (res) {
	case TP_SENT:
		rn->cp->sent++;
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_SENT));
		delay = now_real_ns() - rn->job->window_end * 1000000000LL;
		metric_observe(rn->cells, HIST_EMAIL_DELAY, delay);
		digest_unpark(rn, m->uid);
		break;
	case TP_REJECTED:
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_REJECTED));
		log_info("rejected uid=%lld: %s", (long long)m->uid,
		    detail ? detail : "");
		digest_unpark(rn, m->uid);
		break;
	case TP_DEFERRED:
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_DEFERRED));
		if (detail != NULL)
			strlcpy(rn->defer_detail, detail,
			    sizeof(rn->defer_detail));
		p = digest_parked_find(rn, m->uid);
		if (p != NULL && now_real_ns() / 1000000 - p->first_ms >=
		    rn->ctx->cfg->smtp.defer_give_up_ms) {
			/* Its queue lifetime is over, as an MTA bounces. */
			log_warnx("uid=%lld still deferred %lld s after its "
			    "first 4xx, after %d tries: given up (%s)",
			    (long long)m->uid, (long long)((now_real_ns() /
			    1000000 - p->first_ms) / 1000), p->tries + 1,
			    detail ? detail : "");
			metric_inc(rn->cells, MC_EMAIL(rn->tp_type,
			    EMAIL_REJECTED));
			digest_unpark(rn, m->uid);
			break;
		}
		log_debug("deferred uid=%lld: %s", (long long)m->uid,
		    detail ? detail : "");
		/*
		 * Parked at once, so that the frontier goes on past it:
		 * everyone sent after it is recorded as done, and a kill
		 * later in the batch re-sends nobody.  Unless Redis did not
		 * take it: then it holds the frontier, as a message without
		 * an outcome does.
		 */
		if (digest_park(rn, m->uid) == -1 && !rn->parked_pass)
			m->state = M_UNCONFIRMED;
		break;
	}
	if (!rn->parked_pass)
		digest_advance(rn);
	else if (res == TP_SENT &&
	    checkpoint_progress(rn->ctx->queue, rn->ctx->cfg, rn->job,
	    rn->cp) == -1)
		digest_cp_failed(rn);
	digest_tick(rn, 0);
}

/*
 * Deliver what is queued, then read back the checkpoint's writes.  0, or
 * -1 when the transport failed (members without an outcome are left
 * unconfirmed) or the checkpoint could not be written.
 */
static int
digest_flush(struct run *rn)
{
	char err[256] = "";
	size_t i;
	int rc;

	if (rn->nqueued > 0) {
		rc = rn->ctx->tp_ops->flush(rn->ctx->tp, digest_result_cb, rn,
		    err, sizeof(err));
		if (rc == -1 || rn->nqueued > 0) {
			for (i = 0; i < rn->n; i++)
				if (rn->m[i].state == M_QUEUED)
					rn->m[i].state = M_UNCONFIRMED;
			rn->nqueued = 0;
			metric_inc(rn->cells, MC_TRANSPORT_ERRORS +
			    rn->tp_type);
			rn->cp->outage = 1;
			snprintf(rn->reason, rn->reasonlen, "transport %s: %s",
			    rn->ctx->tp_ops->name, err[0] ? err :
			    "no outcome");
			(void)digest_save(rn);
			return -1;
		}
	}
	if (checkpoint_sync(rn->ctx->queue, rn->cp) == -1)
		digest_cp_failed(rn);
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
		digest_unpark(rn, m->uid);
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

enum batch_outcome {
	B_OK,		/* the batch is done */
	B_RETRY,	/* a failure: give the job back */
	B_STOPPED,	/* told to drain */
	B_FULL,		/* enough recipients wait: the walk stops for now */
};

/*
 * Send the batch's eligible members.  Every 4xx is parked as its reply
 * comes, so the batch always ends with every member done, or the job
 * stopped.  The walk stops (B_FULL) once PARKED_MAX recipients wait, the
 * server deferring nearly everyone: the job then waits for their retry
 * instead of deferring the whole group.  No message is queued that could
 * take the parked list past PARKED_CAP.
 */
static enum batch_outcome
digest_batch(struct run *rn)
{
	size_t i;
	int full = 0;

	for (i = 0; i < rn->n; i++) {
		if (rn->m[i].state != M_PENDING)
			continue;
		digest_tick(rn, 0);
		if (rn->tick_failed || digest_draining(rn))
			break;
		if (!rn->parked_pass && rn->npk + rn->nqueued >=
		    PARKED_CAP && digest_flush(rn) == -1)
			return B_RETRY;
		if (!rn->parked_pass && rn->npk >= PARKED_MAX) {
			full = 1;
			break;
		}
		if (digest_send(rn, &rn->m[i]) == -1)
			return B_RETRY;
	}
	if (digest_flush(rn) == -1)
		return B_RETRY;
	if (!rn->parked_pass)
		digest_advance(rn);
	if (digest_draining(rn))
		return B_STOPPED;
	if (rn->tick_failed) {
		rn->cp->outage = 1;
		snprintf(rn->reason, rn->reasonlen,
		    "lost the queue connection");
		return B_RETRY;
	}
	if (!rn->parked_pass && (full || rn->npk >= PARKED_MAX))
		return B_FULL;
	return B_OK;
}

/*
 * Send again the parked recipients whose next try is due, as one batch
 * that leaves the cursor where it is.  Those done (sent, rejected, given
 * up, no longer eligible) leave the list; those deferred again get their
 * next try on the clock.
 */
static enum batch_outcome
digest_parked_pass(struct run *rn)
{
	enum batch_outcome bo;
	int64_t now = now_real_ns() / 1000000;
	size_t i, n = 0;

	for (i = 0; i < rn->npk; i++)
		if (rn->pk[i].next_ms <= now)
			n++;
	if (n == 0)
		return B_OK;
	rn->m = wcalloc(n, sizeof(*rn->m));
	for (i = 0; i < rn->npk && rn->n < n; i++) {
		if (rn->pk[i].next_ms > now)
			continue;
		rn->m[rn->n].uid = rn->pk[i].uid;
		rn->m[rn->n].state = M_PENDING;
		rn->n++;
	}
	if (checkpoint_sync(rn->ctx->queue, rn->cp) == -1 &&
	    rn->ctx->queue->err) {
		digest_cp_failed(rn);
		digest_batch_free(rn);
		return B_RETRY;
	}
	rn->parked_pass = 1;
	if (digest_load_users(rn) == -1) {
		rn->parked_pass = 0;
		digest_batch_free(rn);
		return B_RETRY;
	}
	/* No longer eligible (opted out, no address meanwhile): done. */
	for (i = 0; i < rn->n; i++)
		if (rn->m[i].state == M_DONE)
			digest_unpark(rn, rn->m[i].uid);
	bo = digest_batch(rn);
	rn->parked_pass = 0;
	digest_batch_free(rn);
	if (bo == B_OK && digest_save(rn) == -1)
		bo = B_RETRY;
	return bo;
}

/*
 * Walk the members from the cursor to the end of the range, batch by
 * batch.  B_OK once the range is exhausted (*done set), B_FULL when the
 * walk stops for the parked recipients, else why it stopped.
 */
static enum batch_outcome
digest_walk(struct run *rn, int *done)
{
	enum batch_outcome bo = B_OK;
	int last = 0;

	if (!rn->walk_open) {
		if (digest_walk_start(rn) == -1)
			return B_RETRY;
		rn->walk_open = 1;
	}
	while (!last) {
		digest_tick(rn, 0);
		if (digest_draining(rn))
			return B_STOPPED;
		if (rn->tick_failed) {
			snprintf(rn->reason, rn->reasonlen,
			    "lost the queue connection");
			return B_RETRY;
		}
		if (digest_load_batch(rn, &last) == -1) {
			digest_batch_free(rn);
			return B_RETRY;
		}
		if (rn->n == 0) {
			digest_batch_free(rn);
			continue;
		}
		bo = digest_batch(rn);
		/*
		 * Stopped inside the batch: a later walk starts after the
		 * frontier, not after what was read.
		 */
		if (bo != B_OK)
			rn->walk_open = 0;
		digest_batch_free(rn);
		if (bo != B_OK)
			return bo;
		if (digest_save(rn) == -1)
			return B_RETRY;
	}
	*done = 1;
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

/* Why the job waits, for its checkpoint and the log. */
static void
digest_wait_reason(struct run *rn)
{
	snprintf(rn->reason, rn->reasonlen, "%zu recipient%s deferred by the "
	    "server%s%s", rn->npk, rn->npk == 1 ? "" : "s",
	    rn->defer_detail[0] ? ": " : "", rn->defer_detail);
}

enum digest_result
digest_run(struct digest_ctx *ctx, const struct job *job, struct checkpoint *cp,
    char *reason, size_t reasonlen)
{
	const struct config *cfg = ctx->cfg;
	struct run rn;
	enum batch_outcome bo = B_OK;
	int64_t now;
	size_t i;
	int walked = 0;

	if (ctx->priv == NULL)
		ctx->priv = wcalloc(1, sizeof(struct digest_priv));
	memset(&rn, 0, sizeof(rn));
	rn.ctx = ctx;
	rn.job = job;
	rn.cp = cp;
	cp->outage = 0;
	cp->due_ms = 0;
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

	/* A resumed job: those already sent are not sent again. */
	if (cp->cursor.set && cp->sent > 0)
		metric_add(rn.cells, MC_SKIPPED + SKIP_ALREADY_SENT,
		    (uint64_t)cp->sent);
	sb_cursor_set(ctx->slot, &cp->cursor);

	if (digest_prepare(&rn) == -1) {
		bo = B_RETRY;
		goto out;
	}
	if (checkpoint_parked_load(ctx->queue, cfg, job, &rn.pk, &rn.npk)
	    == -1) {
		digest_redis_error(&rn, ctx->queue, "load deferred", NULL);
		bo = B_RETRY;
		goto out;
	}
	rn.capk = rn.npk;

	/*
	 * The recipients waiting for a retry go first when due; the walk
	 * goes on while few wait; then, with only waiting recipients left,
	 * the job waits for the earliest of them, holding no worker.
	 */
	for (;;) {
		if ((bo = digest_parked_pass(&rn)) != B_OK)
			break;
		if (!walked && rn.npk < PARKED_MAX) {
			bo = digest_walk(&rn, &walked);
			if (bo != B_OK && bo != B_FULL)
				break;
			bo = B_OK;
			continue;
		}
		if (rn.npk == 0 && walked)
			break;
		now = now_real_ns() / 1000000;
		cp->due_ms = INT64_MAX;
		for (i = 0; i < rn.npk; i++)
			if (rn.pk[i].next_ms < cp->due_ms)
				cp->due_ms = rn.pk[i].next_ms;
		if (rn.npk > 0 && cp->due_ms > now) {
			digest_wait_reason(&rn);
			bo = B_FULL;
			break;
		}
		/* Some came due meanwhile (a long walk): their pass first. */
	}
out:
	rn.save_failed = 0;
	if (digest_save(&rn) == -1 && bo != B_STOPPED)
		bo = B_RETRY;
	free(rn.pk);
	zpage_clear(&rn.zp);
	switch (bo) {
	case B_OK:
		log_debug("job %s done: sent %lld skipped %lld", job->job_id,
		    (long long)cp->sent, (long long)cp->skipped);
		return DIGEST_DONE;
	case B_FULL:
		return DIGEST_WAIT;
	case B_STOPPED:
		snprintf(reason, reasonlen, "draining");
		return DIGEST_STOPPED;
	default:
		if (reason[0] == '\0')
			snprintf(reason, reasonlen, "retry");
		return DIGEST_RETRY;
	}
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
