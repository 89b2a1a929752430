/*
 * A job's checkpoint, digest:job:{job_id} on the queue Redis (the fields
 * are described in checkpoint.h).  It is what lets a job that was killed,
 * drained, retried or made to wait resume after the last member done,
 * and what counts attempts towards queue.max_attempts.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/sds.h>

#include "checkpoint.h"
#include "rconn.h"
#include "util.h"

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

/* Step over an integer reply whole in r's buffer: 1, else 0. */
static int
cp_skip_integer(redisReader *r)
{
	const char *p, *e;

	if (r == NULL || r->err || r->ridx != -1 || r->pos >= r->len ||
	    r->buf[r->pos] != ':')
		return 0;
	p = r->buf + r->pos;
	if ((e = memchr(p, '\n', r->len - r->pos)) == NULL || e < p + 3 ||
	    e[-1] != '\r')
		return 0;
	r->pos += (size_t)(e - p) + 1;
	return 1;
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
		/*
		 * An integer (what HSET answers, once per message) is only
		 * stepped over where it lies whole in hiredis's read buffer,
		 * between two replies: no reply object made and freed for it.
		 */
		if (out == NULL && cp_skip_integer(c->reader))
			continue;
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

/*
 * Append argv[0..argc) as one command, written as RESP here: each job
 * starts, saves and ends with a few, and hiredis's format parser (with a
 * "%.3f" in most) cost more than the rest of them.  0, or -1.
 */
static int
cp_argv(redisContext *q, int argc, const char *const *argv)
{
	size_t len[12];
	int i;

	for (i = 0; i < argc; i++)
		len[i] = strlen(argv[i]);
	if (rconn_append_argv(q, argc, argv, len) != REDIS_OK) {
		if (q->err == REDIS_ERR_OOM)
			worker_oom();
		return -1;
	}
	return 0;
}

/* Unix time now to the millisecond, "%.3f"'s form, into buf (32 bytes). */
static const char *
cp_now(char *buf)
{
	int64_t ms = now_real_ns() / 1000000;
	size_t n;

	n = fmt_i64(buf, ms / 1000);
	buf[n++] = '.';
	buf[n++] = (char)('0' + ms % 1000 / 100);
	buf[n++] = (char)('0' + ms % 100 / 10);
	buf[n++] = (char)('0' + ms % 10);
	buf[n] = '\0';
	return buf;
}

/* Send what was appended without waiting for the replies. */
static int
cp_send(redisContext *c)
{
	int done = 0;

	do {
		if (redisBufferWrite(c, &done) == REDIS_ERR)
			return -1;
	} while (!done);
	return 0;
}

int
checkpoint_sync(redisContext *q, struct checkpoint *cp)
{
	int n = cp->pending;

	cp->pending = 0;
	if (n == 0)
		return 0;
	if (q == NULL)
		return -1;
	return cp_replies(q, n, NULL);
}

static void
reply_str(const redisReply *r, char *buf, size_t len)
{
	buf[0] = '\0';
	if (r != NULL && (r->type == REDIS_REPLY_STRING ||
	    r->type == REDIS_REPLY_STATUS))
		strlcpy(buf, r->str, len);
}

/* The cursor from its two fields; a checkpoint without cursor_score was
   written when scores were the user ids. */
static void
cp_cursor_parse(struct cursor *c, const char *uid, const char *score)
{
	int64_t v;
	double d;

	memset(c, 0, sizeof(*c));
	if (uid[0] == '\0' || cursor_parse_uid(uid, strlen(uid), &v) == -1)
		return;
	if (score[0] == '\0')
		d = (double)v;
	else if (parse_double(score, &d) == -1)
		return;
	c->set = 1;
	c->uid = v;
	c->score = d;
}

int
checkpoint_start(redisContext *q, const struct config *cfg,
    const struct job *j, const char *holder, struct checkpoint *cp)
{
	redisReply *r, *rs[4] = { NULL, NULL, NULL, NULL };
	char key[512], state[16], num[32], score[CURSOR_STR_MAX + 16];
	char now[32], ttl[FMT_I64_MAX];
	int64_t v;
	int rc = -1, i;

	memset(cp, 0, sizeof(*cp));
	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	(void)fmt_i64(ttl, CHECKPOINT_TTL_S);

	r = NULL;
	if (cp_argv(q, 9, (const char *[]){ "HMGET", key, "state", "cursor",
	    "sent", "skipped", "last_error", "cursor_score",
	    "deferred" }) == -1)
		return -1;
	(void)cp_replies(q, 1, &r);
	if (r == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 7) {
		cp_outage = rconn_reply_is_outage(r);
		freeReplyObject(r);
		return -1;
	}
	reply_str(r->element[0], state, sizeof(state));
	/* A run an operator cancelled is as finished as one done. */
	if (strcmp(state, "done") == 0 || strcmp(state, "cancelled") == 0) {
		freeReplyObject(r);
		return 1;
	}
	reply_str(r->element[1], num, sizeof(num));
	reply_str(r->element[5], score, sizeof(score));
	cp_cursor_parse(&cp->cursor, num, score);
	reply_str(r->element[2], num, sizeof(num));
	if (num[0] != '\0' && parse_i64(num, 0, INT64_MAX, &v) == 0)
		cp->sent = v;
	reply_str(r->element[3], num, sizeof(num));
	if (num[0] != '\0' && parse_i64(num, 0, INT64_MAX, &v) == 0)
		cp->skipped = v;
	reply_str(r->element[4], cp->last_error, sizeof(cp->last_error));
	/*
	 * Every write of a parked recipient sets the count with it in one
	 * HSET, so a nil or 0 count means no d: field to load (a list in
	 * the older form is neither).
	 */
	reply_str(r->element[6], num, sizeof(num));
	cp->none_parked = num[0] == '\0' || strcmp(num, "0") == 0;
	freeReplyObject(r);	/* ours: the strings were copied out */

	/*
	 * A job marked dead that is delivered again was put back by an
	 * operator (digestctl dlq requeue): it starts a fresh count.
	 */
	if ((strcmp(state, "dead") == 0 ?
	    cp_argv(q, 4, (const char *[]){ "HSET", key, "attempts", "0" }) :
	    cp_argv(q, 1, (const char *[]){ "PING" })) == -1 ||
	    cp_argv(q, 4, (const char *[]){ "HINCRBY", key, "attempts",
	    "1" }) == -1 ||
	    cp_argv(q, 8, (const char *[]){ "HSET", key, "state", "running",
	    "holder", holder, "updated_at", cp_now(now) }) == -1 ||
	    cp_argv(q, 3, (const char *[]){ "EXPIRE", key, ttl }) == -1)
		return -1;
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

/*
 * The HSET of cursor and counts goes out after every message: it is
 * written here as RESP by hand, the key's part kept across calls for the
 * job in hand and the numbers written in place, rather than formatted by
 * hiredis from a format string each time.
 */
#define CP_PROGRESS_MAX (CP_HEAD_MAX + 4 * (16 + FMT_I64_MAX) + \
	CURSOR_STR_MAX + 64)
#define CP_HEAD_MAX 600

static struct {
	const struct config *cfg;
	char job_id[JOB_ID_MAX];
	char head[CP_HEAD_MAX];		/* "$4\r\nHSET\r\n$N\r\nkey\r\n" */
	size_t headlen;
} cp_head;

/* A bulk string of v in decimal. */
static char *
cp_bulk_i64(char *p, int64_t v)
{
	char num[FMT_I64_MAX];

	return rconn_resp_bulk(p, num, fmt_i64(num, v));
}

/* The command's start up to the key, for j; 0, or -1 if too long. */
static int
cp_head_for(const struct config *cfg, const struct job *j)
{
	char key[512];
	size_t klen;

	if (cp_head.headlen > 0 && cp_head.cfg == cfg &&
	    strcmp(cp_head.job_id, j->job_id) == 0)
		return 0;
	cp_head.headlen = 0;
	if (cp_key(key, sizeof(key), cfg, j->job_id) == -1 ||
	    strlcpy(cp_head.job_id, j->job_id, sizeof(cp_head.job_id)) >=
	    sizeof(cp_head.job_id))
		return -1;
	klen = strlen(key);
	/* "$4\r\nHSET\r\n" (10) and the key's "$N\r\n...\r\n". */
	if (10 + klen + 8 > sizeof(cp_head.head))
		return -1;
	cp_head.headlen = (size_t)(rconn_resp_bulk(rconn_resp_bulk(cp_head.head, "HSET", 4),
	    key, klen) - cp_head.head);
	cp_head.cfg = cfg;
	return 0;
}

/*
 * The HSET of cursor and counts into buf (CP_PROGRESS_MAX bytes): its
 * length, or 0 when the key is too long.
 */
static size_t
cp_format_progress(char *buf, const struct config *cfg, const struct job *j,
    const struct checkpoint *cp)
{
	char score[CURSOR_STR_MAX], *p = buf;

	if (cp_head_for(cfg, j) == -1)
		return 0;
	memcpy(p, cp->cursor.set ? "*10\r\n" : "*6\r\n",
	    cp->cursor.set ? 5 : 4);
	p += cp->cursor.set ? 5 : 4;
	memcpy(p, cp_head.head, cp_head.headlen);
	p += cp_head.headlen;
	if (cp->cursor.set) {
		cursor_score_str(cp->cursor.score, score, sizeof(score));
		p = rconn_resp_bulk(p, "cursor", 6);
		p = cp_bulk_i64(p, cp->cursor.uid);
		p = rconn_resp_bulk(p, "cursor_score", 12);
		p = rconn_resp_bulk(p, score, strlen(score));
	}
	p = rconn_resp_bulk(p, "sent", 4);
	p = cp_bulk_i64(p, cp->sent);
	p = rconn_resp_bulk(p, "skipped", 7);
	p = cp_bulk_i64(p, cp->skipped);
	return (size_t)(p - buf);
}

/* Append the HSET of cursor and counts; 0, or -1 (the key too long). */
static int
cp_append_progress(redisContext *q, const struct config *cfg,
    const struct job *j, const struct checkpoint *cp)
{
	char buf[CP_PROGRESS_MAX];
	size_t len;

	if ((len = cp_format_progress(buf, cfg, j, cp)) == 0)
		return -1;
	if (redisAppendFormattedCommand(q, buf, len) != REDIS_OK) {
		if (q->err == REDIS_ERR_OOM)
			worker_oom();
		return -1;
	}
	return 0;
}

/*
 * Append HSET updated_at (unix time, to the millisecond) and EXPIRE of
 * the checkpoint, as the save at the end of every batch does; 0 or -1.
 */
static int
cp_append_touch(redisContext *q, const struct config *cfg,
    const struct job *j)
{
	char buf[2 * CP_HEAD_MAX + 128], t[2 * FMT_I64_MAX], *p = buf;
	int64_t ms = now_real_ns() / 1000000;
	size_t n;

	if (cp_head_for(cfg, j) == -1)
		return -1;
	memcpy(p, "*4\r\n", 4);
	p += 4;
	memcpy(p, cp_head.head, cp_head.headlen);
	p += cp_head.headlen;
	p = rconn_resp_bulk(p, "updated_at", 10);
	n = fmt_i64(t, ms / 1000);
	t[n++] = '.';
	t[n++] = (char)('0' + ms % 1000 / 100);
	t[n++] = (char)('0' + ms % 100 / 10);
	t[n++] = (char)('0' + ms % 10);
	p = rconn_resp_bulk(p, t, n);
	/* EXPIRE: the key's bulk string follows "$4\r\nHSET\r\n" in head. */
	memcpy(p, "*3\r\n$6\r\nEXPIRE\r\n", 16);
	p += 16;
	memcpy(p, cp_head.head + 10, cp_head.headlen - 10);
	p += cp_head.headlen - 10;
	p = cp_bulk_i64(p, CHECKPOINT_TTL_S);
	if (redisAppendFormattedCommand(q, buf, (size_t)(p - buf)) !=
	    REDIS_OK) {
		if (q->err == REDIS_ERR_OOM)
			worker_oom();
		return -1;
	}
	return 0;
}

int
checkpoint_save(redisContext *q, const struct config *cfg,
    const struct job *j, struct checkpoint *cp)
{
	const struct parked *p;
	struct feedback_reject fr;
	char key[512];
	int i, n, nrej = 0, rc;

	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	rc = checkpoint_sync(q, cp);
	if (q->err)
		return -1;
	/*
	 * The records of rejects and the parked recipients first: Redis
	 * applies one connection's commands in order, so the cursor never
	 * lands without them.
	 */
	for (i = 0; i < cp->nrejects; i++) {
		fr.uid = cp->rejects[i].uid;
		fr.email = cp->rejects[i].email;
		fr.gid = j->group_id;
		fr.job_id = j->job_id;
		fr.reply = cp->rejects[i].reply;
		fr.permanent = cp->rejects[i].permanent;
		if ((n = feedback_reject(q, cfg, &fr)) == -1)
			return -1;
		nrej += n;
	}
	for (i = 0; i < cp->nunsaved; i++) {
		p = &cp->unsaved[i];
		redisAppendCommand(q, "HSET %s d:%lld %lld:%lld:%d deferred %lld",
		    key, (long long)p->uid, (long long)p->first_ms,
		    (long long)p->next_ms, p->tries, (long long)cp->parked);
	}
	if (cp_append_progress(q, cfg, j, cp) == -1 ||
	    cp_append_touch(q, cfg, j) == -1)
		return -1;
	if (cp_replies(q, nrej + cp->nunsaved + 3, NULL) == -1)
		return -1;
	cp->nunsaved = 0;
	cp->nrejects = 0;
	return rc;
}

int
checkpoint_progress(redisContext *q, const struct config *cfg,
    const struct job *j, struct checkpoint *cp)
{
	char buf[CP_PROGRESS_MAX];
	size_t len;
	ssize_t w = 0;

	cp_outage = 0;
	if (q == NULL || q->err ||
	    (len = cp_format_progress(buf, cfg, j, cp)) == 0)
		return -1;
	cp->pending++;
	/*
	 * Straight to the socket when hiredis holds nothing unsent: one
	 * write(2) and no copy.  What a short or failed write leaves goes
	 * through hiredis, which writes it or says why it cannot.
	 */
	if (q->fd >= 0 && q->obuf != NULL && sdslen(q->obuf) == 0) {
		if ((w = write(q->fd, buf, len)) == (ssize_t)len)
			return 0;
		if (w < 0)
			w = 0;
	}
	if (redisAppendFormattedCommand(q, buf + w, len - (size_t)w) !=
	    REDIS_OK) {
		if (q->err == REDIS_ERR_OOM)
			worker_oom();
		return -1;
	}
	return cp_send(q);
}

int
checkpoint_park(redisContext *q, const struct config *cfg,
    const struct job *j, struct checkpoint *cp, const struct parked *p,
    size_t count)
{
	char key[512];

	if (q == NULL || q->err ||
	    cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	redisAppendCommand(q, "HSET %s d:%lld %lld:%lld:%d deferred %lld", key,
	    (long long)p->uid, (long long)p->first_ms, (long long)p->next_ms,
	    p->tries, (long long)count);
	cp->pending++;
	return cp_send(q);
}

int
checkpoint_unpark(redisContext *q, const struct config *cfg,
    const struct job *j, struct checkpoint *cp, int64_t uid, size_t count)
{
	char key[512];

	if (q == NULL || q->err ||
	    cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	redisAppendCommand(q, "HDEL %s d:%lld", key, (long long)uid);
	redisAppendCommand(q, "HSET %s deferred %lld", key, (long long)count);
	cp->pending += 2;
	return cp_send(q);
}

/* Append one parked recipient to *out; the array grows as needed. */
static void
cp_parked_add(struct parked **out, size_t *n, size_t *cap,
    const struct parked *p)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if ((*out)[i].uid == p->uid)
			return;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*out = wrealloc(*out, *cap * sizeof(**out));
	}
	(*out)[(*n)++] = *p;
}

/*
 * The list an older version kept in the `deferred` field itself,
 * "uid:tries,...": those recipients are retried at once, their 4xx clock
 * starting now.
 */
static void
cp_parked_legacy(char *s, struct parked **out, size_t *n, size_t *cap)
{
	struct parked p;
	char *next, *colon;
	int64_t uid, tries;

	for (; s != NULL; s = next) {
		if ((next = strchr(s, ',')) != NULL)
			*next++ = '\0';
		if ((colon = strchr(s, ':')) == NULL)
			continue;
		*colon++ = '\0';
		if (parse_i64(s, 0, INT64_MAX, &uid) == -1 ||
		    parse_i64(colon, 0, INT32_MAX, &tries) == -1)
			continue;
		memset(&p, 0, sizeof(p));
		p.uid = uid;
		p.first_ms = p.next_ms = now_real_ns() / 1000000;
		p.tries = (int)tries;
		cp_parked_add(out, n, cap, &p);
	}
}

int
checkpoint_parked_load(redisContext *q, const struct config *cfg,
    const struct job *j, struct parked **out, size_t *n)
{
	redisReply *r;
	struct parked p;
	char key[512], val[96], *a, *b;
	size_t i, cap = 0;
	int64_t first, next, tries;

	*out = NULL;
	*n = 0;
	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	/* Small: the fields above and at most a few hundred parked. */
	r = NULL;
	if (cp_argv(q, 2, (const char *[]){ "HGETALL", key }) == -1)
		return -1;
	(void)cp_replies(q, 1, &r);
	if (r == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		return -1;
	}
	for (i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *f = r->element[i], *v = r->element[i + 1];

		if (f->type != REDIS_REPLY_STRING ||
		    v->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(f->str, "deferred") == 0 &&
		    strchr(v->str, ':') != NULL) {
			char *legacy = wstrdup(v->str);

			cp_parked_legacy(legacy, out, n, &cap);
			free(legacy);
			continue;
		}
		if (strncmp(f->str, "d:", 2) != 0 ||
		    strlcpy(val, v->str, sizeof(val)) >= sizeof(val))
			continue;
		memset(&p, 0, sizeof(p));
		if (parse_i64(f->str + 2, 0, INT64_MAX, &p.uid) == -1 ||
		    (a = strchr(val, ':')) == NULL ||
		    (b = strchr(a + 1, ':')) == NULL)
			continue;
		*a++ = '\0';
		*b++ = '\0';
		if (parse_i64(val, 0, INT64_MAX, &first) == -1 ||
		    parse_i64(a, 0, INT64_MAX, &next) == -1 ||
		    parse_i64(b, 0, INT32_MAX, &tries) == -1)
			continue;
		p.first_ms = first;
		p.next_ms = next;
		p.tries = (int)tries;
		cp_parked_add(out, n, &cap, &p);
	}
	freeReplyObject(r);	/* what we keep was copied */
	return 0;
}

int
checkpoint_wait(redisContext *q, const struct config *cfg,
    const struct job *j, struct checkpoint *cp, const char *why)
{
	char key[512];

	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	if (checkpoint_sync(q, cp) == -1 && q->err)
		return -1;
	redisAppendCommand(q, "HSET %s state waiting due_at %.3f last_error %s "
	    "updated_at %.3f", key, cp->due_ms / 1000.0, why, now_real());
	redisAppendCommand(q, "HDEL %s holder", key);
	redisAppendCommand(q, "EXPIRE %s %d", key, CHECKPOINT_TTL_S);
	return cp_replies(q, 3, NULL);
}

int
checkpoint_finish(redisContext *q, const struct config *cfg,
    const struct job *j, const char *state, const char *reason)
{
	char key[512], now[32], ttl[FMT_I64_MAX];

	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	(void)fmt_i64(ttl, CHECKPOINT_TTL_S);
	if ((reason != NULL && reason[0] != '\0' ?
	    cp_argv(q, 8, (const char *[]){ "HSET", key, "state", state,
	    "last_error", reason, "updated_at", cp_now(now) }) :
	    cp_argv(q, 6, (const char *[]){ "HSET", key, "state", state,
	    "updated_at", cp_now(now) })) == -1 ||
	    cp_argv(q, 4, (const char *[]){ "HDEL", key, "due_at",
	    "holder" }) == -1 ||
	    cp_argv(q, 3, (const char *[]){ "EXPIRE", key, ttl }) == -1)
		return -1;
	return cp_replies(q, 3, NULL);
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
checkpoint_reset(redisContext *q, const struct config *cfg,
    const char *job_id, char *err, size_t errlen)
{
	char key[512];

	if (q == NULL || cp_key(key, sizeof(key), cfg, job_id) == -1) {
		snprintf(err, errlen, "job id too long");
		return -1;
	}
	redisAppendCommand(q, "HSET %s attempts 0", key);
	redisAppendCommand(q, "HDEL %s state holder", key);
	redisAppendCommand(q, "EXPIRE %s %d", key, CHECKPOINT_TTL_S);
	if (cp_replies(q, 3, NULL) == -1) {
		snprintf(err, errlen, "redis: %s", q->err ? q->errstr :
		    "error reply");
		return -1;
	}
	return 0;
}

int
checkpoint_forget(redisContext *q, const struct config *cfg,
    const char *job_id, char *err, size_t errlen)
{
	static const char lua[] =
	    "local s = redis.call('HGET', KEYS[1], 'state')\n"
	    "if s == 'running' or s == 'waiting' then return 0 end\n"
	    "return redis.call('DEL', KEYS[1])\n";
	redisReply *r;
	char key[512];
	int rv;

	if (q == NULL || cp_key(key, sizeof(key), cfg, job_id) == -1) {
		snprintf(err, errlen, "job id too long");
		return -1;
	}
	/* One script: a worker that starts it meanwhile keeps its own. */
	r = redisCommand(q, "EVAL %s 1 %s", lua, key);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
		snprintf(err, errlen, "redis: %s", r == NULL ? q->errstr :
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		if (r != NULL)
			freeReplyObject(r);
		return -1;
	}
	rv = r->integer > 0;
	freeReplyObject(r);
	return rv;
}

int
checkpoint_holder(redisContext *q, const struct config *cfg,
    const struct job *j, char *holder, size_t len)
{
	redisReply *r;
	char key[512], state[16];
	int rc = -1;

	holder[0] = '\0';
	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	if ((r = redisCommand(q, "HMGET %s state holder", key)) == NULL) {
		if (q->err == REDIS_ERR_OOM)
			worker_oom();
		return -1;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		reply_str(r->element[0], state, sizeof(state));
		reply_str(r->element[1], holder, len);
		if (strcmp(state, "running") != 0)
			holder[0] = '\0';
		rc = holder[0] != '\0';
	} else
		cp_outage = rconn_reply_is_outage(r);
	freeReplyObject(r);
	return rc;
}

/* KEYS[1] the checkpoint; ARGV[1] the holder letting it go. */
static const char cp_release_lua[] =
    "if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then\n"
    "  return redis.call('HDEL', KEYS[1], 'holder')\n"
    "end\n"
    "return 0\n";

int
checkpoint_release(redisContext *q, const struct config *cfg,
    const struct job *j, const char *holder)
{
	char key[512];

	if (q == NULL || cp_key(key, sizeof(key), cfg, j->job_id) == -1)
		return -1;
	/* One script: a holder that took over meanwhile keeps the job. */
	redisAppendCommand(q, "EVAL %s 1 %s %s", cp_release_lua, key, holder);
	return cp_replies(q, 1, NULL);
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

/*
 * KEYS[1] the checkpoint; ARGV: score, uid (empty: no cursor), the dead
 * holder (empty: none).  Moves the cursor only forward in the walk's
 * order (score, then the member bytewise, as Redis orders a sorted set),
 * never creates the checkpoint, and then clears holder if it is still
 * the one named: in one script, so that a worker waiting for it finds
 * the cursor there as soon as the holder is gone.
 */
static const char cp_save_cursor_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "if ARGV[3] ~= '' and "
    "redis.call('HGET', KEYS[1], 'holder') == ARGV[3] then\n"
    "  redis.call('HDEL', KEYS[1], 'holder')\n"
    "end\n"
    "if ARGV[2] == '' then return 0 end\n"
    "local f = redis.call('HMGET', KEYS[1], 'cursor', 'cursor_score')\n"
    "local m, s = f[1], tonumber(f[2] or f[1] or '')\n"
    "if m and s then\n"
    "  local ns = tonumber(ARGV[1])\n"
    "  if ns < s then return 0 end\n"
    "  if ns == s then\n"
    "    local a, b = ARGV[2], m\n"
    "    local n = math.min(#a, #b)\n"
    "    local i = 1\n"
    "    while i <= n and a:byte(i) == b:byte(i) do i = i + 1 end\n"
    "    if i > n then\n"
    "      if #a <= #b then return 0 end\n"
    "    elseif a:byte(i) < b:byte(i) then return 0 end\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'cursor', ARGV[2], 'cursor_score', ARGV[1])\n"
    "return 1\n";

int
checkpoint_save_cursor(redisContext *q, const struct config *cfg,
    const char *job_id, const struct cursor *c, const char *holder,
    char *err, size_t errlen)
{
	char key[512], score[CURSOR_STR_MAX], uid[32];
	redisReply *r;
	int rc;

	if (!c->set && holder == NULL)
		return 0;
	if (cp_key(key, sizeof(key), cfg, job_id) == -1) {
		snprintf(err, errlen, "job id too long");
		return -1;
	}
	score[0] = uid[0] = '\0';
	if (c->set) {
		cursor_score_str(c->score, score, sizeof(score));
		snprintf(uid, sizeof(uid), "%" PRId64, c->uid);
	}
	r = redisCommand(q, "EVAL %s 1 %s %s %s %s", cp_save_cursor_lua,
	    key, score, uid, holder != NULL ? holder : "");
	if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
		snprintf(err, errlen, "save cursor: %s", r != NULL && r->str ?
		    r->str : q->errstr);
		if (r != NULL)
			freeReplyObject(r);
		return -1;
	}
	rc = r->integer == 1;
	freeReplyObject(r);
	return rc;
}

int
checkpoint_failed_outage(const redisContext *q)
{
	return q == NULL || q->err != 0 || cp_outage;
}
