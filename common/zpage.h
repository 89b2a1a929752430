/*
 * Walking a sorted set in score order, a page at a time, while others
 * write to it: every entry present from the first page to the last is
 * read, whatever is added, removed or rescored meanwhile.  An entry whose
 * score rises past the cursor may be read twice; callers that must act
 * once per entry are idempotent or remember what they saw.
 */
#ifndef DIGESTD_ZPAGE_H
#define DIGESTD_ZPAGE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define ZPAGE_BOUND_MAX 48

/* What zpage_feed made of a reply. */
#define ZPAGE_END	0	/* nothing more to read */
#define ZPAGE_READY	1	/* a page of new entries: [first, n) */
#define ZPAGE_AGAIN	2	/* nothing new in this reply: query again */

struct zpage {
	const char *key;		/* the caller's; outlives the walk */
	char min[ZPAGE_BOUND_MAX];	/* the bounds of the walk, as */
	char max[ZPAGE_BOUND_MAX];	/* ZRANGEBYSCORE takes them */
	long long count;		/* entries per query */

	/* The cursor: the greatest entry read so far, in Redis's order. */
	int have;
	double score;
	const char *score_str;		/* as Redis wrote it: into prev */
	const char *member;		/* into prev */
	size_t member_len;
	long long off;			/* into the entries from score on */
	long long back;			/* how far the next back-off goes */
	long long slack;		/* how far before the cursor to aim */

	redisReply *prev;		/* the last page: cursor and entries */
	size_t first, n;		/* its new entries: pairs [first, n) */
	int done;			/* it was the last */
};

/*
 * Start a walk of key over scores in [min, max], written as ZRANGEBYSCORE
 * takes them ("(1764288000", "-inf", "+inf"), count entries per query (at
 * least 2).  key must outlive the walk.  0, or -1 if a bound is too long.
 */
int zpage_init(struct zpage *, const char *key, const char *min,
    const char *max, long long count);
/*
 * Resume a walk after an entry read in an earlier one: (score_str,
 * member) is taken as read, and so is everything before it.  The strings
 * are the caller's and must last until the first page comes in.
 */
void zpage_seek(struct zpage *, const char *score_str, double score,
    const char *member, size_t len);
/* Free what the walk holds; the entries of the last page go with it. */
void zpage_clear(struct zpage *);

/*
 * The next page: 1 with new entries in [zp->first, zp->n), which stay
 * valid until the next call; 0 at the end; -1 with err on an error (a
 * hiredis I/O error leaves c->err set, for the caller to judge).
 */
int zpage_next(struct zpage *, redisContext *, char *err, size_t errlen);

/* The same in two halves, for callers that pipeline: append the query, */
int zpage_append(struct zpage *, redisContext *);
/*
 * ... then hand its reply over (zpage owns it from then on): ZPAGE_READY,
 * ZPAGE_AGAIN (append again), ZPAGE_END, or -1 with err.
 */
int zpage_feed(struct zpage *, redisReply *, char *err, size_t errlen);

/* Entry i (first <= i < n) of the current page. */
const char *zpage_member(const struct zpage *, size_t i, size_t *len);
double zpage_score(const struct zpage *, size_t i);

/*
 * Whether an entry is at or before the cursor, i.e. was read already:
 * scores compare as numbers, equal scores by member, bytewise.
 */
int zpage_seen(const struct zpage *, double score, const char *member,
    size_t len);
/* Redis's order of members with equal scores: <0, 0, >0 as memcmp. */
int zpage_member_cmp(const char *a, size_t alen, const char *b, size_t blen);
/* A score as Redis writes it ("1.5", "-inf"); 0 or -1. */
int zpage_parse_score(const char *s, double *out);
/*
 * floor(score) as an int64, clamped: at or below -2^63 (or -inf) gives
 * INT64_MIN, at or above 2^63 - 1 (or +inf) INT64_MAX.
 */
int64_t zpage_floor(double score);

#endif
