/*
 * Paging a sorted set by a (score, member) cursor.
 *
 * Paging by rank (ZRANGEBYSCORE ... LIMIT offset n, offset += n) loses
 * entries when the set changes between two pages: one entry removed or
 * rescored ahead from among those already read shifts the rest down, and
 * the entry at the page boundary is never returned.  Here each query
 * starts from the score of the last entry read (the cursor), inclusive, so
 * changes behind the cursor cannot move what lies ahead of it.  Redis
 * orders equal scores by member, bytewise; entries at the cursor's score
 * and at or before its member were read already and are skipped.
 *
 * A run of equal scores longer than a page needs an offset into the run.
 * The offset is kept at the cursor's own position, so the first entry of
 * the next page should be the cursor itself: if it is not one already
 * read, entries of the run were removed meanwhile and the offset may have
 * jumped over an unread one, so it backs off (one page, then twice as far)
 * until the page starts at or behind the cursor again.  Everything before
 * such a start is before the cursor, and was read.  After a back-off the
 * walk aims a little before the cursor (a slack that grows with each
 * back-off, up to a quarter page), so that a writer removing entries
 * steadily costs some entries read twice rather than a back-off a page.
 *
 * Scores are compared as numbers: Redis writes them so that they read back
 * exactly, and the cursor's score goes back to Redis as the very string it
 * wrote.  No allocation of its own: the cursor points into the last reply,
 * which the walk holds until the next.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zpage.h"

int
zpage_init(struct zpage *zp, const char *key, const char *min,
    const char *max, long long count)
{
	memset(zp, 0, sizeof(*zp));
	zp->key = key;
	zp->count = count < 2 ? 2 : count;
	zp->back = zp->count - 1;
	zp->slack = 0;
	if (strlen(min) >= sizeof(zp->min) || strlen(max) >= sizeof(zp->max))
		return -1;
	strlcpy(zp->min, min, sizeof(zp->min));
	strlcpy(zp->max, max, sizeof(zp->max));
	return 0;
}

void
zpage_seek(struct zpage *zp, const char *score_str, double score,
    const char *member, size_t len)
{
	zp->have = 1;
	zp->score = score;
	zp->score_str = score_str;
	zp->member = member;
	zp->member_len = len;
	zp->off = 0;
}

void
zpage_clear(struct zpage *zp)
{
	if (zp->prev != NULL)
		freeReplyObject(zp->prev);
	zp->prev = NULL;
	zp->have = 0;
	zp->member = zp->score_str = NULL;
	zp->first = zp->n = 0;
}

int
zpage_member_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c;

	c = memcmp(a, b, alen < blen ? alen : blen);
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

int
zpage_parse_score(const char *s, double *out)
{
	char *end;
	double d;

	if (s == NULL || *s == '\0')
		return -1;
	d = strtod(s, &end);
	if (*end != '\0' || isnan(d))
		return -1;
	*out = d;
	return 0;
}

int64_t
zpage_floor(double score)
{
	/* Both limits are powers of two, exact as doubles. */
	if (score <= -9223372036854775808.0)
		return INT64_MIN;
	if (score >= 9223372036854775808.0 || isnan(score))
		return INT64_MAX;
	return (int64_t)floor(score);
}

int
zpage_seen(const struct zpage *zp, double score, const char *member,
    size_t len)
{
	if (!zp->have)
		return 0;
	if (score != zp->score)
		return score < zp->score;
	return zpage_member_cmp(member, len, zp->member, zp->member_len) <= 0;
}

int
zpage_append(struct zpage *zp, redisContext *c)
{
	char off[24], count[24];

	snprintf(off, sizeof(off), "%lld", zp->off);
	snprintf(count, sizeof(count), "%lld", zp->count);
	return redisAppendCommand(c, "ZRANGEBYSCORE %s %s %s WITHSCORES "
	    "LIMIT %s %s", zp->key, zp->have ? zp->score_str : zp->min,
	    zp->max, off, count) == REDIS_OK ? 0 : -1;
}

const char *
zpage_member(const struct zpage *zp, size_t i, size_t *len)
{
	const redisReply *e = zp->prev->element[2 * i];

	*len = e->len;
	return e->str;
}

double
zpage_score(const struct zpage *zp, size_t i)
{
	double d = 0;

	/* Checked when the page came in. */
	zpage_parse_score(zp->prev->element[2 * i + 1]->str, &d);
	return d;
}

/* The pairs of a WITHSCORES reply, checked; -1 if it is not one. */
static long long
zpage_pairs(const redisReply *r)
{
	double d;
	size_t i;

	if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
		return -1;
	for (i = 0; i < r->elements; i += 2)
		if (r->element[i]->type != REDIS_REPLY_STRING ||
		    r->element[i + 1]->type != REDIS_REPLY_STRING ||
		    zpage_parse_score(r->element[i + 1]->str, &d) == -1)
			return -1;
	return (long long)(r->elements / 2);
}

static int
zpage_seen_at(const struct zpage *zp, const redisReply *r, size_t i)
{
	double d = 0;

	zpage_parse_score(r->element[2 * i + 1]->str, &d);
	return zpage_seen(zp, d, r->element[2 * i]->str,
	    r->element[2 * i]->len);
}

int
zpage_feed(struct zpage *zp, redisReply *r, char *err, size_t errlen)
{
	long long np, pos;
	size_t n, first, i0;
	double last = 0, d = 0;

	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis ZRANGEBYSCORE %s: %s", zp->key,
		    r->str);
		freeReplyObject(r);
		return -1;
	}
	if ((np = zpage_pairs(r)) == -1) {
		snprintf(err, errlen, "redis ZRANGEBYSCORE %s: not a list of "
		    "members and scores", zp->key);
		freeReplyObject(r);
		return -1;
	}
	n = (size_t)np;
	if (n == 0) {
		freeReplyObject(r);
		zp->done = 1;
		return ZPAGE_END;
	}
	if (zp->off > 0 && !zpage_seen_at(zp, r, 0)) {
		zp->off = zp->off > zp->back ? zp->off - zp->back : 0;
		if (zp->back < (1LL << 40))
			zp->back *= 2;
		zp->slack = zp->slack == 0 ? 8 : 2 * zp->slack;
		if (zp->slack > zp->count / 4)
			zp->slack = zp->count / 4;
		freeReplyObject(r);
		return ZPAGE_AGAIN;
	}
	zp->back = zp->count - 1;
	for (first = 0; first < n && zpage_seen_at(zp, r, first); first++)
		;
	/*
	 * The next query starts at the score of the page's last entry: the
	 * offset is that entry's position among the entries from that score,
	 * less the slack.
	 */
	zpage_parse_score(r->element[2 * (n - 1) + 1]->str, &last);
	if (zp->have && last == zp->score)
		pos = zp->off + (long long)n - 1;
	else {
		for (i0 = n - 1; i0 > 0; i0--) {
			zpage_parse_score(r->element[2 * i0 - 1]->str, &d);
			if (d != last)
				break;
		}
		pos = (long long)(n - 1 - i0);
	}
	zp->off = pos > zp->slack ? pos - zp->slack : 0;
	if (first == n) {
		/* All read before: the cursor stays, the offset moved on. */
		freeReplyObject(r);
		if ((long long)n < zp->count) {
			zp->done = 1;
			return ZPAGE_END;
		}
		return ZPAGE_AGAIN;
	}
	if (zp->prev != NULL)
		freeReplyObject(zp->prev);
	zp->prev = r;
	zp->have = 1;
	zp->score = last;
	zp->score_str = r->element[2 * (n - 1) + 1]->str;
	zp->member = r->element[2 * (n - 1)]->str;
	zp->member_len = r->element[2 * (n - 1)]->len;
	zp->first = first;
	zp->n = n;
	zp->done = (long long)n < zp->count;
	return ZPAGE_READY;
}

int
zpage_next(struct zpage *zp, redisContext *c, char *err, size_t errlen)
{
	redisReply *r;
	int rv;

	for (;;) {
		if (zp->done)
			return 0;
		if (zpage_append(zp, c) == -1 ||
		    redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL) {
			snprintf(err, errlen, "redis ZRANGEBYSCORE %s: %s",
			    zp->key, c->err ? c->errstr : "no reply");
			return -1;
		}
		if ((rv = zpage_feed(zp, r, err, errlen)) != ZPAGE_AGAIN)
			return rv == -1 ? -1 : rv == ZPAGE_READY;
	}
}
