/*
 * The activity store as a job reads it (docs/design.md, "Reading the
 * activity store" and "Member walk"): the group and its window's posts
 * once, then the members in the walk's order a page at a time, and the
 * user hashes of each page in one pipelined round.
 *
 * Memory is bounded by the page and by the capped set of posts, never by
 * the group: the membership is paged with ZRANGEBYSCORE ... LIMIT from a
 * (score, member) cursor (zpage.c), and no value longer than
 * ACTIVITY_READ_MAX reaches the worker whole.  Every command names one
 * key, so the store may sit behind a sharding proxy.
 *
 * A failed read is judged here: a lost connection, or a server saying it
 * cannot serve now, is an outage (the job is retried as it stands); any
 * other error reply is about the data.  A key of the wrong type reads as
 * missing, and a broken user record costs that member only.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "activity.h"
#include "feedback.h"
#include "log.h"
#include "util.h"

/* Only the newest posts of a window are read: no group can exhaust memory. */
#define ACTIVITY_MAX_POSTS	1000
/* Longest field kept from Redis; longer values are cut at a UTF-8 boundary. */
#define CAP_TITLE		512
#define CAP_URL			2048
#define CAP_AUTHOR		256
#define CAP_EXCERPT		1024
#define CAP_GROUP_NAME		256
#define CAP_NAME		256
/* An address longer than this cannot be right: it is not cut, it is skipped. */
#define CAP_EMAIL		320
#define CAP_LOCALE		64	/* a language tag; longer is none */
_Static_assert(CAP_EMAIL <= FEEDBACK_EMAIL_MAX,
    "every address can be looked up in the suppression set");
/*
 * The most of any one value the worker reads from the activity store
 * (rconn_cap_get_reply): a longer one arrives as its first
 * ACTIVITY_READ_MAX bytes and its length, and the rest is dropped off the
 * socket.  Above every cap, so that a value cut to its cap is cut as
 * before (activity_capdup looks at the byte after the cap to end on a
 * character).
 */
#define ACTIVITY_READ_MAX	4096
/*
 * A user field longer than this is no name, address or date but a broken
 * record (Redis allows 512 MB): the member is skipped as bad_data.  A
 * shorter one over its cap is cut, or is no address, as it always was.
 */
#define ACTIVITY_FIELD_MAX	(1 << 20)
_Static_assert(ACTIVITY_READ_MAX > CAP_TITLE && ACTIVITY_READ_MAX > CAP_URL &&
    ACTIVITY_READ_MAX > CAP_AUTHOR && ACTIVITY_READ_MAX > CAP_EXCERPT &&
    ACTIVITY_READ_MAX > CAP_GROUP_NAME && ACTIVITY_READ_MAX > CAP_NAME &&
    ACTIVITY_READ_MAX > CAP_EMAIL,
    "a capped read holds every field to its cap");

static void
activity_posts_free(struct post *p, size_t n)
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
activity_capdup(const char *s, size_t len, size_t cap)
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
 * A value longer than ACTIVITY_READ_MAX comes as its first bytes only.
 */
static const redisReply *
activity_field(const redisReply *r, size_t i)
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
activity_field_cut(const redisReply *r, size_t i)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
		return 0;
	return rconn_cap_cut(r->element[i], NULL);
}

static char *
activity_field_dup(const redisReply *r, size_t i, size_t cap)
{
	const redisReply *f;

	if ((f = activity_field(r, i)) == NULL)
		return NULL;
	return activity_capdup(f->str, f->len, cap);
}

static int64_t
activity_field_i64(const redisReply *r, size_t i, int64_t dflt)
{
	const redisReply *f;
	int64_t v;

	if ((f = activity_field(r, i)) == NULL ||
	    activity_field_cut(r, i) > 0 ||
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
activity_wrongtype(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "WRONGTYPE", 9) == 0;
}

void
activity_error(struct activity *ar, redisContext *c, const char *what,
    const redisReply *r)
{
	metric_inc(ar->cells, MC_REDIS_ERRORS);
	/*
	 * A lost connection is an outage, and so is a reply saying the
	 * server cannot serve now (loading, busy, failing over); any other
	 * error reply is about the data.
	 */
	if ((c->err && (r == NULL || r->type != REDIS_REPLY_ERROR)) ||
	    rconn_reply_is_outage(r))
		ar->cp->outage = 1;
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		snprintf(ar->reason, ar->reasonlen, "redis %s: %s", what,
		    r->str);
	else if (c->err)
		snprintf(ar->reason, ar->reasonlen, "redis %s: %s", what,
		    c->errstr);
	else
		snprintf(ar->reason, ar->reasonlen,
		    "redis %s: unexpected reply", what);
}

/*
 * Read one pipelined reply, no value in it longer than ACTIVITY_READ_MAX.
 * Returns it (the caller frees it), or NULL when the connection failed:
 * the context is then unusable.
 */
static redisReply *
activity_reply(struct activity *ar, const char *what)
{
	redisContext *c = ar->c;
	void *v = NULL;

	if (ar->cap->limit == 0)
		rconn_cap_init(ar->cap, ACTIVITY_READ_MAX);
	if (rconn_cap_get_reply(ar->cap, c, &v) != REDIS_OK || v == NULL) {
		if (c->err == REDIS_ERR_OOM)
			worker_oom();
		activity_error(ar, c, what, NULL);
		return NULL;
	}
	return v;
}

/* Append a command, checking hiredis ran out of nothing. */
static int
activity_append(struct activity *ar, const char *what, const char *fmt, ...)
{
	redisContext *c = ar->c;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redisvAppendCommand(c, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK) {
		if (c->err == REDIS_ERR_OOM)
			worker_oom();
		activity_error(ar, c, what, NULL);
		return -1;
	}
	return 0;
}

/*
 * Append the command argv[0..argc) (lengths in len), written as RESP
 * here: a job sends one or two for each post and one for each member,
 * and hiredis's format parser would cost more than the rest of the read.
 * 0, or -1 (the reason said).
 */
static int
activity_append_resp(struct activity *ar, const char *what, int argc,
    const char *const *argv, const size_t *len)
{
	redisContext *c = ar->c;

	if (rconn_append_argv(c, argc, argv, len) != REDIS_OK) {
		if (c->err == REDIS_ERR_OOM)
			worker_oom();
		activity_error(ar, c, what, NULL);
		return -1;
	}
	return 0;
}

/*
 * {key_prefix}post:{id} into key (size bytes), cut if it does not fit,
 * as rkey leaves it; its length.
 */
static size_t
activity_post_key(char *key, size_t size, const char *pfx, const char *id,
    size_t idlen)
{
	size_t n = strlcpy(key, pfx, size);

	if (n >= size)
		return size - 1;
	n += strlcpy(key + n, "post:", size - n);
	if (n >= size)
		return size - 1;
	if (idlen > size - 1 - n)
		idlen = size - 1 - n;
	memcpy(key + n, id, idlen);
	key[n + idlen] = '\0';
	return n + idlen;
}

void
activity_group_clear(struct activity_group *ag)
{
	if (ag == NULL)
		return;
	activity_posts_free(ag->posts, ag->nposts);
	free(ag->name);
	free(ag->url);
	memset(ag, 0, sizeof(*ag));
}

/*
 * The posts are read in two pipelined rounds: first what ranks them
 * (author, likes, comments), then the text of only those the job can
 * list (eligibility_posts_needed).
 */
int
activity_group(struct activity *ar, struct activity_group *ag)
{
	const char *pfx = ar->cfg->redis.key_prefix;
	const struct job *j = ar->job;
	redisReply *rg = NULL, *rz = NULL, *rp = NULL, *r, *rl;
	struct post *posts = NULL;
	const char *av[6];
	size_t avlen[6];
	char key[512];
	size_t i, n = 0, want, k;
	int failed = 0;
	double score;

	memset(ag, 0, sizeof(*ag));
	ag->sole_author = -1;
	if (rkey(key, sizeof(key), pfx, "group:%lld", (long long)j->group_id)
	    == NULL) {
		snprintf(ar->reason, ar->reasonlen, "key_prefix too long");
		return -1;
	}
	if (activity_append(ar, "HMGET group", "HMGET %s name url", key) == -1)
		return -1;
	rkey(key, sizeof(key), pfx, "group:%lld:members",
	    (long long)j->group_id);
	if (activity_append(ar, "ZCARD", "ZCARD %s", key) == -1)
		return -1;
	rkey(key, sizeof(key), pfx, "group:%lld:posts", (long long)j->group_id);
	if (activity_append(ar, "ZREVRANGEBYSCORE posts",
	    "ZREVRANGEBYSCORE %s %lld (%lld WITHSCORES LIMIT 0 %d", key,
	    (long long)j->window_end, (long long)j->window_start,
	    ACTIVITY_MAX_POSTS) == -1)
		return -1;
	if ((rg = activity_reply(ar, "HMGET group")) == NULL ||
	    (rz = activity_reply(ar, "ZCARD")) == NULL ||
	    (rp = activity_reply(ar, "ZREVRANGEBYSCORE posts")) == NULL)
		goto fail;
	if (rg->type != REDIS_REPLY_ARRAY && !activity_wrongtype(rg)) {
		activity_error(ar, ar->c, "HMGET group", rg);
		goto fail;
	}
	if (rz->type != REDIS_REPLY_INTEGER) {
		activity_error(ar, ar->c, "ZCARD", rz);
		goto fail;
	}
	if (rp->type != REDIS_REPLY_ARRAY || rp->elements % 2 != 0) {
		activity_error(ar, ar->c, "ZREVRANGEBYSCORE posts", rp);
		goto fail;
	}
	ag->info.id = j->group_id;
	ag->info.members = rz->integer;
	ag->name = activity_field_dup(rg, 0, CAP_GROUP_NAME);
	ag->url = activity_field_dup(rg, 1, CAP_URL);
	ag->info.name = ag->name;
	ag->info.url = ag->url;

	/* Round one: what ranks each post, and whether it exists at all. */
	want = rp->elements / 2;
	posts = wcalloc(want == 0 ? 1 : want, sizeof(*posts));
	for (i = 0; i < want; i++) {
		const redisReply *e = rp->element[2 * i];

		if (e->type != REDIS_REPLY_STRING)
			continue;
		av[1] = key;
		avlen[1] = activity_post_key(key, sizeof(key), pfx, e->str,
		    e->len);
		av[0] = "HMGET";
		avlen[0] = 5;
		av[2] = "author_id";
		avlen[2] = 9;
		av[3] = "likes";
		avlen[3] = 5;
		av[4] = "comments";
		avlen[4] = 8;
		if (activity_append_resp(ar, "HMGET post", 5, av, avlen) == -1)
			goto fail;
		av[0] = "HLEN";
		avlen[0] = 4;
		if (activity_append_resp(ar, "HLEN post", 2, av, avlen) == -1)
			goto fail;
	}
	for (i = 0; i < want; i++) {
		const redisReply *e = rp->element[2 * i];
		const redisReply *sc = rp->element[2 * i + 1];
		struct post *p;
		int64_t id;

		if (e->type != REDIS_REPLY_STRING)
			continue;
		if ((r = activity_reply(ar, "HMGET post")) == NULL)
			goto fail;
		if ((rl = activity_reply(ar, "HLEN post")) == NULL) {
			freeReplyObject(r);
			goto fail;
		}
		/* Read every reply even after an error, to stay in step. */
		if ((r->type != REDIS_REPLY_ARRAY && !activity_wrongtype(r)) ||
		    (rl->type != REDIS_REPLY_INTEGER &&
		    !activity_wrongtype(rl))) {
			if (!failed)
				activity_error(ar, ar->c, "HMGET post",
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
			p->author_id = activity_field_i64(r, 0, -1);
			p->likes = activity_field_i64(r, 1, 0);
			p->comments = activity_field_i64(r, 2, 0);
		}
		freeReplyObject(r);
		freeReplyObject(rl);
	}
	if (failed)
		goto fail;

	/* Who has nothing new is judged on every post of the window. */
	ag->nall = n;
	ag->sole_author = n > 0 ? posts[0].author_id : -1;
	for (i = 1; i < n && ag->sole_author >= 0; i++)
		if (posts[i].author_id != ag->sole_author)
			ag->sole_author = -1;

	/* Round two: the text of the posts the job can list. */
	render_sort_posts(posts, n);
	if (n > 0) {
		int64_t *authors = wcalloc(n, sizeof(*authors));

		for (i = 0; i < n; i++)
			authors[i] = posts[i].author_id;
		k = eligibility_posts_needed(authors, n,
		    (size_t)ar->cfg->digest.max_posts);
		free(authors);
	} else
		k = 0;
	for (i = 0; i < k; i++) {
		char id[FMT_I64_MAX];

		av[0] = "HMGET";
		avlen[0] = 5;
		av[1] = key;
		avlen[1] = activity_post_key(key, sizeof(key), pfx, id,
		    fmt_i64(id, posts[i].id));
		av[2] = "title";
		avlen[2] = 5;
		av[3] = "url";
		avlen[3] = 3;
		av[4] = "author_name";
		avlen[4] = 11;
		av[5] = "excerpt";
		avlen[5] = 7;
		if (activity_append_resp(ar, "HMGET post", 6, av, avlen) == -1)
			goto fail;
	}
	for (i = 0; i < k; i++) {
		struct post *p = &posts[i];

		if ((r = activity_reply(ar, "HMGET post")) == NULL)
			goto fail;
		if (r->type != REDIS_REPLY_ARRAY && !activity_wrongtype(r)) {
			if (!failed)
				activity_error(ar, ar->c, "HMGET post", r);
			failed = 1;
		} else if (!failed) {
			p->title = activity_field_dup(r, 0, CAP_TITLE);
			p->url = activity_field_dup(r, 1, CAP_URL);
			p->author_name = activity_field_dup(r, 2, CAP_AUTHOR);
			p->excerpt = activity_field_dup(r, 3, CAP_EXCERPT);
		}
		freeReplyObject(r);
	}
	if (failed)
		goto fail;
	freeReplyObject(rg);
	freeReplyObject(rz);
	freeReplyObject(rp);
	/* The rest were only needed for ranking; keep the array small. */
	ag->posts = wrealloc(posts, (k == 0 ? 1 : k) * sizeof(*posts));
	ag->nposts = k;
	return 0;
fail:
	if (rg)
		freeReplyObject(rg);
	if (rz)
		freeReplyObject(rz);
	if (rp)
		freeReplyObject(rp);
	activity_posts_free(posts, n);
	free(ag->name);
	free(ag->url);
	memset(ag, 0, sizeof(*ag));
	ag->sole_author = -1;
	return -1;
}

void
activity_members_free(struct member *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(m[i].email);
		free(m[i].name);
		free(m[i].locale);
	}
	free(m);
}

/*
 * Append cmd key args[0..n) on c, written as RESP here (a batch's
 * SMISMEMBER names each of its members).  0, or -1 (the reason said).
 */
static int
activity_append_argv(struct activity *ar, redisContext *c, const char *what,
    const char *cmd, const char *key, const char **args, size_t n)
{
	const char **av;
	size_t i, *al;
	int rc;

	av = wcalloc(n + 2, sizeof(*av));
	al = wcalloc(n + 2, sizeof(*al));
	av[0] = cmd;
	av[1] = key;
	for (i = 0; i < n + 2; i++) {
		if (i >= 2)
			av[i] = args[i - 2];
		al[i] = strlen(av[i]);
	}
	rc = rconn_append_argv(c, (int)(n + 2), av, al);
	free(av);
	free(al);
	if (rc != REDIS_OK) {
		if (c->err == REDIS_ERR_OOM)
			worker_oom();
		activity_error(ar, c, what, NULL);
		return -1;
	}
	return 0;
}

/* Write what is appended on c without waiting for the replies.  0 / -1. */
static int
activity_send(struct activity *ar, redisContext *c, const char *what)
{
	int done = 0;

	do {
		if (redisBufferWrite(c, &done) == REDIS_ERR) {
			activity_error(ar, c, what, NULL);
			return -1;
		}
	} while (!done);
	return 0;
}

/*
 * A reply from the queue Redis: through the capped reader when it is the
 * activity store's connection too, so that the two stay one stream.
 */
static redisReply *
activity_qreply(struct activity *ar, const char *what)
{
	void *v = NULL;

	if (ar->q == ar->c)
		return activity_reply(ar, what);
	if (redisGetReply(ar->q, &v) != REDIS_OK || v == NULL) {
		if (ar->q->err == REDIS_ERR_OOM)
			worker_oom();
		activity_error(ar, ar->q, what, NULL);
		return NULL;
	}
	return v;
}

/*
 * The answer of SMISMEMBER for n members into in[]: 0, or -1 (the
 * reason said).  A key of the wrong type reads as an empty set, as a bad
 * key of the activity store does.  Frees r.
 */
static int
activity_set_flags(struct activity *ar, const char *what, redisReply *r,
    size_t n, unsigned char *in)
{
	size_t i;
	int rc = 0;

	memset(in, 0, n);
	if (activity_wrongtype(r))
		log_warnx("%s: not a set, read as empty", what);
	else if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
		activity_error(ar, ar->q, what, r);
		rc = -1;
	} else
		for (i = 0; i < n; i++)
			in[i] = r->element[i]->type == REDIS_REPLY_INTEGER &&
			    r->element[i]->integer == 1;
	freeReplyObject(r);
	return rc;
}

/*
 * Skip the eligible members of the batch whose address, lowercased, is in
 * digest:suppressed: one SMISMEMBER for the batch.  The addresses are
 * only known once the user hashes are read, so this is the batch's one
 * round trip more, and only when someone is eligible.  0 or -1.
 */
static int
activity_suppressed(struct activity *ar, struct member *ms, size_t nm)
{
	const char **args;
	unsigned char *in;
	char key[512], *low;
	redisReply *r;
	size_t i, k, n = 0;
	int rc = -1;

	for (i = 0; i < nm; i++)
		if (!ms[i].skipped)
			n++;
	if (n == 0)
		return 0;
	if (feedback_key_suppressed(key, sizeof(key), ar->cfg) == -1) {
		snprintf(ar->reason, ar->reasonlen, "key_prefix too long");
		return -1;
	}
	args = wcalloc(n, sizeof(*args));
	low = wmalloc(n * (FEEDBACK_EMAIL_MAX + 1));
	in = wcalloc(n, 1);
	for (i = 0, k = 0; i < nm; i++) {
		if (ms[i].skipped)
			continue;
		/* Fits: a longer address is no address (CAP_EMAIL). */
		(void)feedback_lower(low + k * (FEEDBACK_EMAIL_MAX + 1),
		    FEEDBACK_EMAIL_MAX + 1, ms[i].email);
		args[k] = low + k * (FEEDBACK_EMAIL_MAX + 1);
		k++;
	}
	if (activity_append_argv(ar, ar->q, "SMISMEMBER suppressed",
	    "SMISMEMBER", key, args, n) == -1 ||
	    (r = activity_qreply(ar, "SMISMEMBER suppressed")) == NULL ||
	    activity_set_flags(ar, "SMISMEMBER suppressed", r, n, in) == -1)
		goto out;
	for (i = 0, k = 0; i < nm; i++) {
		if (ms[i].skipped)
			continue;
		if (in[k++]) {
			free(ms[i].email);
			free(ms[i].name);
			free(ms[i].locale);
			ms[i].email = ms[i].name = ms[i].locale = NULL;
			ms[i].skipped = 1;
			metric_inc(ar->cells, MC_SKIPPED + SKIP_SUPPRESSED);
			ar->cp->skipped++;
		}
	}
	rc = 0;
out:
	free(args);
	free(low);
	free(in);
	return rc;
}

/*
 * The batch's user hashes are read into an arena rather than built by
 * hiredis, which would make a dozen malloc and free calls of each one:
 * the reader is given these functions for those replies alone, and the
 * arena is emptied after each reply.  A reply is capped (the fields at
 * ACTIVITY_READ_MAX), so the static block nearly always holds it; what
 * does not fit is allocated and freed with the reset.
 */
struct ua_big {
	struct ua_big *next;
	max_align_t p[];
};

static struct {
	_Alignas(max_align_t) char buf[32 * 1024];
	size_t used;
	struct ua_big *big;
} ua;

static void *
ua_alloc(size_t n)
{
	struct ua_big *b;
	void *p;

	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (n <= sizeof(ua.buf) - ua.used) {
		p = ua.buf + ua.used;
		ua.used += n;
		return p;
	}
	b = wmalloc(sizeof(*b) + n);
	b->next = ua.big;
	ua.big = b;
	return b->p;
}

static void
ua_reset(void)
{
	struct ua_big *b;

	while ((b = ua.big) != NULL) {
		ua.big = b->next;
		free(b);
	}
	ua.used = 0;
}

/* A zeroed reply of the task's type, linked into its parent array. */
static redisReply *
ua_reply(const redisReadTask *task, int type)
{
	redisReply *r;

	r = ua_alloc(sizeof(*r));
	memset(r, 0, sizeof(*r));
	r->type = type;
	if (task->parent != NULL)
		((redisReply *)task->parent->obj)->element[task->idx] = r;
	return r;
}

static void *
ua_string(const redisReadTask *task, char *str, size_t len)
{
	redisReply *r = ua_reply(task, task->type);

	r->str = ua_alloc(len + 1);
	memcpy(r->str, str, len);
	r->str[len] = '\0';
	r->len = len;
	return r;
}

static void *
ua_array(const redisReadTask *task, int elements)
{
	redisReply *r = ua_reply(task, REDIS_REPLY_ARRAY);

	if (elements > 0) {
		r->element = ua_alloc((size_t)elements * sizeof(*r->element));
		memset(r->element, 0, (size_t)elements * sizeof(*r->element));
	}
	r->elements = (size_t)elements;
	return r;
}

static void *
ua_integer(const redisReadTask *task, long long value)
{
	redisReply *r = ua_reply(task, REDIS_REPLY_INTEGER);

	r->integer = value;
	return r;
}

static void *
ua_nil(const redisReadTask *task)
{
	return ua_reply(task, REDIS_REPLY_NIL);
}

/* The arena owns every object: a reply dropped on error is freed by it. */
static void
ua_free(void *v)
{
}

static redisReplyObjectFunctions ua_fns = {
	ua_string, ua_array, ua_integer, ua_nil, ua_free
};

/*
 * Give c's reader back its own functions.  A reply left half built (the
 * connection failed inside one) is the arena's: the reader forgets it,
 * as the context is unusable from then on.
 */
static void
ua_restore(redisContext *c, redisReplyObjectFunctions *fn)
{
	if (c->reader->reply != NULL) {
		c->reader->reply = NULL;
		c->reader->ridx = -1;
	}
	c->reader->fn = fn;
	ua_reset();
}

/*
 * HMGET {prefix}user:{uid} email name last_seen digest locale for each
 * member of the batch not skipped (n of them), in the order of
 * activity_users' fields: written as RESP into one buffer and appended
 * at once, a few hundred of them a batch, rather than formatted by
 * hiredis one by one.  0, or -1 (the reason said).
 */
static int
activity_append_users(struct activity *ar, const struct member *ms,
    size_t nm, size_t n)
{
	static const char head[] = "*7\r\n$5\r\nHMGET\r\n";
	static const char tail[] = "$5\r\nemail\r\n$4\r\nname\r\n"
	    "$9\r\nlast_seen\r\n$6\r\ndigest\r\n$6\r\nlocale\r\n";
	const char *pfx = ar->cfg->redis.key_prefix;
	redisContext *c = ar->c;
	char *buf, *p, uid[FMT_I64_MAX];
	size_t i, plen = strlen(pfx), ulen, one;
	int rc;

	/* The head, "$N\r\n" and the key with its CRLF, the fields. */
	one = sizeof(head) + 1 + FMT_I64_MAX + 2 + plen + 5 + FMT_I64_MAX + 2 +
	    sizeof(tail);
	p = buf = wmalloc(n * one);
	for (i = 0; i < nm; i++) {
		if (ms[i].skipped)
			continue;
		ulen = fmt_i64(uid, ms[i].uid);
		memcpy(p, head, sizeof(head) - 1);
		p += sizeof(head) - 1;
		*p++ = '$';
		p += fmt_i64(p, (int64_t)(plen + 5 + ulen));
		*p++ = '\r';
		*p++ = '\n';
		memcpy(p, pfx, plen);
		p += plen;
		memcpy(p, "user:", 5);
		p += 5;
		memcpy(p, uid, ulen);
		p += ulen;
		*p++ = '\r';
		*p++ = '\n';
		memcpy(p, tail, sizeof(tail) - 1);
		p += sizeof(tail) - 1;
	}
	rc = redisAppendFormattedCommand(c, buf, (size_t)(p - buf));
	free(buf);
	if (rc != REDIS_OK) {
		if (c->err == REDIS_ERR_OOM)
			worker_oom();
		activity_error(ar, c, "HMGET user", NULL);
		return -1;
	}
	return 0;
}

/*
 * One round trip for the batch: the user hashes from the activity store
 * and, pipelined with them, SMISMEMBER digest:muted:{gid} on the queue
 * Redis (written before either reply is read, on one connection or on
 * two).  Then the suppression set, for those who are eligible.
 */
int
activity_users(struct activity *ar, const struct elig_job *ej,
    struct member *ms, size_t nm)
{
	/* In the order of the HMGET below. */
	static const char *const fields[] = { "email", "name", "last_seen",
	    "digest", "locale" };
	redisReplyObjectFunctions *fn;
	redisContext *q;
	redisReply *r;
	const char **args;
	unsigned char *muted;
	char key[512], (*uids)[24];
	size_t i, k, im, n = 0;
	long long len = 0;
	int failed = 0, rc = -1;

	if (ar->q == NULL)
		ar->q = ar->c;
	q = ar->q;
	for (i = 0; i < nm; i++)
		if (!ms[i].skipped)
			n++;
	if (n == 0)
		return 0;
	if (feedback_key_muted(key, sizeof(key), ar->cfg, ar->job->group_id)
	    == -1) {
		snprintf(ar->reason, ar->reasonlen, "key_prefix too long");
		return -1;
	}
	uids = wcalloc(n, sizeof(*uids));
	args = wcalloc(n, sizeof(*args));
	muted = wcalloc(n, 1);
	for (i = 0, k = 0; i < nm; i++) {
		if (ms[i].skipped)
			continue;
		(void)fmt_i64(uids[k], ms[i].uid);
		args[k] = uids[k];
		k++;
	}
	/* The mutes first: on a shared connection their reply comes first. */
	if (activity_append_argv(ar, q, "SMISMEMBER muted", "SMISMEMBER", key,
	    args, n) == -1 ||
	    (q != ar->c && activity_send(ar, q, "SMISMEMBER muted") == -1))
		goto out;
	if (activity_append_users(ar, ms, nm, n) == -1)
		goto out;
	/* Both in flight before waiting for either. */
	if (q != ar->c && activity_send(ar, ar->c, "HMGET user") == -1)
		goto out;
	if ((r = activity_qreply(ar, "SMISMEMBER muted")) == NULL) {
		if (q == ar->c)
			goto out;
		/* The activity store's replies are still to be read. */
		failed = 1;
	} else if (activity_set_flags(ar, "SMISMEMBER muted", r, n, muted) ==
	    -1)
		failed = 1;
	fn = ar->c->reader->fn;
	ar->c->reader->fn = &ua_fns;
	for (i = 0, im = 0; i < nm; i++) {
		struct member *m = &ms[i];
		struct elig_member em;
		const redisReply *f;
		enum skip_reason why;

		if (m->skipped)
			continue;
		em.muted = muted[im++];
		if ((r = activity_reply(ar, "HMGET user")) == NULL) {
			ua_restore(ar->c, fn);
			goto out;
		}
		if ((r->type != REDIS_REPLY_ARRAY && !activity_wrongtype(r)) ||
		    failed) {
			if (!failed)
				activity_error(ar, ar->c, "HMGET user", r);
			failed = 1;
			ua_reset();
			continue;
		}
		/* A broken record costs this member, and no one else. */
		for (k = 0; k < sizeof(fields) / sizeof(fields[0]); k++)
			if ((len = activity_field_cut(r, k)) >
			    ACTIVITY_FIELD_MAX)
				break;
		if (k < sizeof(fields) / sizeof(fields[0])) {
			log_warnx("uid=%lld: user field %s is %lld bytes long: "
			    "skipped as bad data", (long long)m->uid,
			    fields[k], len);
			metric_inc(ar->cells, MC_SKIPPED + SKIP_BAD_DATA);
			ar->cp->skipped++;
			m->skipped = 1;
			ua_reset();
			continue;
		}
		em.uid = m->uid;
		em.email = (f = activity_field(r, 0)) ? f->str : NULL;
		em.digest = (f = activity_field(r, 3)) ? f->str : NULL;
		em.last_seen = (f = activity_field(r, 2)) ? f->str : NULL;
		/* An address with a NUL inside, or absurdly long, is none. */
		if (em.email != NULL && ((f = activity_field(r, 0))->len >
		    CAP_EMAIL || strlen(f->str) != f->len))
			em.email = NULL;
		if (!eligibility_check(ej, &em, &why)) {
			metric_inc(ar->cells, MC_SKIPPED + why);
			ar->cp->skipped++;
			m->skipped = 1;
		} else {
			m->email = wstrdup(em.email);
			m->name = activity_field_dup(r, 1, CAP_NAME);
			m->locale = activity_field_dup(r, 4, CAP_LOCALE);
		}
		ua_reset();
	}
	ua_restore(ar->c, fn);
	if (!failed)
		rc = activity_suppressed(ar, ms, nm);
out:
	free(uids);
	free(args);
	free(muted);
	return rc;
}

/*
 * The scores from member_min (inclusive) to below member_max + 1 (a
 * member belongs to the shard of the floor of its score), or to +inf for
 * a group's last shard, which also takes the members who joined after
 * scheduling.  The members are paged by a (score, member) cursor
 * (zpage.c), so fractional, shared or negative scores, and members who
 * join or leave meanwhile, never make the walk skip or repeat a member.
 */
int
activity_walk_start(struct activity *ar)
{
	const struct job *j = ar->job;
	char lo[CURSOR_STR_MAX], hi[CURSOR_STR_MAX];
	int l;

	zpage_clear(&ar->zp);
	if (j->member_min == INT64_MIN)
		strlcpy(lo, "-inf", sizeof(lo));
	else
		snprintf(lo, sizeof(lo), "%lld", (long long)j->member_min);
	if (j->last_shard || j->member_max == INT64_MAX)
		strlcpy(hi, "+inf", sizeof(hi));
	else
		snprintf(hi, sizeof(hi), "(%lld", (long long)j->member_max + 1);
	if (rkey(ar->walk_key, sizeof(ar->walk_key),
	    ar->cfg->redis.key_prefix, "group:%lld:members",
	    (long long)j->group_id) == NULL ||
	    zpage_init(&ar->zp, ar->walk_key, lo, hi,
	    ar->cfg->digest.batch_size) == -1) {
		snprintf(ar->reason, ar->reasonlen, "key_prefix too long");
		return -1;
	}
	if (ar->cp->cursor.set) {
		cursor_score_str(ar->cp->cursor.score, ar->seek_score,
		    sizeof(ar->seek_score));
		l = snprintf(ar->seek_member, sizeof(ar->seek_member), "%lld",
		    (long long)ar->cp->cursor.uid);
		zpage_seek(&ar->zp, ar->seek_score, ar->cp->cursor.score,
		    ar->seek_member, (size_t)l);
	}
	return 0;
}

int
activity_members(struct activity *ar, struct member **mp, size_t *np,
    int *last)
{
	redisContext *c = ar->c;
	const struct job *j = ar->job;
	struct member *ms;
	redisReply *r;
	char err[256];
	const char *e;
	size_t i, len, n = 0;
	double score;
	int64_t fl;
	int rv;

	*last = 0;
	*mp = NULL;
	*np = 0;
	for (;;) {
		if (ar->zp.done) {
			*last = 1;
			*mp = wcalloc(1, sizeof(**mp));
			return 0;
		}
		if (zpage_append(&ar->zp, c) == -1) {
			if (c->err == REDIS_ERR_OOM)
				worker_oom();
			activity_error(ar, c, "ZRANGEBYSCORE members", NULL);
			return -1;
		}
		if ((r = activity_reply(ar, "ZRANGEBYSCORE members")) == NULL)
			return -1;
		if (r->type == REDIS_REPLY_ERROR) {
			activity_error(ar, c, "ZRANGEBYSCORE members", r);
			freeReplyObject(r);
			return -1;
		}
		/* zpage owns the reply from here. */
		if ((rv = zpage_feed(&ar->zp, r, err, sizeof(err))) == -1) {
			metric_inc(ar->cells, MC_REDIS_ERRORS);
			snprintf(ar->reason, ar->reasonlen, "%s", err);
			return -1;
		}
		if (rv == ZPAGE_END) {
			*last = 1;
			*mp = wcalloc(1, sizeof(**mp));
			return 0;
		}
		if (rv == ZPAGE_READY)
			break;
	}
	*last = ar->zp.done;
	ms = wcalloc(ar->zp.n - ar->zp.first, sizeof(*ms));
	for (i = ar->zp.first; i < ar->zp.n; i++) {
		struct member *m;

		e = zpage_member(&ar->zp, i, &len);
		score = zpage_score(&ar->zp, i);
		/*
		 * The bound went to Redis as a double: past 2^53 it is not
		 * exact, the floor of the score is.
		 */
		fl = zpage_floor(score);
		if (fl < j->member_min ||
		    (!j->last_shard && fl > j->member_max))
			continue;
		m = &ms[n++];
		if (cursor_parse_uid(e, len, &m->uid) == -1) {
			/* Not a user id: nobody to write to. */
			m->uid = -1;
			m->skipped = 1;
			metric_inc(ar->cells, MC_SKIPPED + SKIP_BAD_DATA);
			ar->cp->skipped++;
			continue;
		}
		m->pos.set = 1;
		m->pos.score = score;
		m->pos.uid = m->uid;
	}
	*mp = ms;
	*np = n;
	return 1;
}

void
activity_clear(struct activity *ar)
{
	zpage_clear(&ar->zp);
}
