/*
 * Unit tests for paging a sorted set by a (score, member) cursor: Redis's
 * order of members, the skip rule, score parsing and flooring, and whole
 * walks over a sorted set kept in memory that answers ZRANGEBYSCORE as
 * Redis does, quiet and while entries are bumped, removed and added
 * between pages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "zpage.h"

static char err[256];

static void
test_member_cmp(void **state)
{
	(void)state;
	assert_true(zpage_member_cmp("a", 1, "b", 1) < 0);
	assert_true(zpage_member_cmp("b", 1, "a", 1) > 0);
	assert_true(zpage_member_cmp("a", 1, "a", 1) == 0);
	/* A prefix sorts first; so does the empty member. */
	assert_true(zpage_member_cmp("a", 1, "aa", 2) < 0);
	assert_true(zpage_member_cmp("aa", 2, "a", 1) > 0);
	assert_true(zpage_member_cmp("", 0, "a", 1) < 0);
	/* Bytes are unsigned, NULs are bytes: "10" before "9". */
	assert_true(zpage_member_cmp("\xff", 1, "a", 1) > 0);
	assert_true(zpage_member_cmp("a\0b", 3, "a\0c", 3) < 0);
	assert_true(zpage_member_cmp("a", 1, "a\0", 2) < 0);
	assert_true(zpage_member_cmp("10", 2, "9", 1) < 0);
}

static void
test_seen(void **state)
{
	struct zpage zp;

	(void)state;
	assert_int_equal(zpage_init(&zp, "k", "-inf", "+inf", 10), 0);
	/* Nothing read yet: nothing seen. */
	assert_false(zpage_seen(&zp, -INFINITY, "", 0));
	zp.have = 1;
	zp.score = 5;
	zp.member = "m";
	zp.member_len = 1;
	assert_true(zpage_seen(&zp, 5, "m", 1));
	assert_true(zpage_seen(&zp, 5, "l", 1));
	assert_true(zpage_seen(&zp, 5, "", 0));
	assert_false(zpage_seen(&zp, 5, "ma", 2));
	assert_false(zpage_seen(&zp, 5, "n", 1));
	assert_true(zpage_seen(&zp, 4.999, "z", 1));
	assert_false(zpage_seen(&zp, 5.000001, "a", 1));
	/* -0 and 0 are one score to Redis. */
	zp.score = 0;
	assert_true(zpage_seen(&zp, -0.0, "m", 1));

	/* Bounds too long for the struct are refused. */
	assert_int_equal(zpage_init(&zp, "k", "(1234567890123456789012345678"
	    "90123456789012345678901234567890", "+inf", 10), -1);
}

static void
test_scores(void **state)
{
	double d;

	(void)state;
	assert_int_equal(zpage_parse_score("1.5", &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(zpage_parse_score("inf", &d), 0);
	assert_true(isinf(d) && d > 0);
	assert_int_equal(zpage_parse_score("-inf", &d), 0);
	assert_true(isinf(d) && d < 0);
	assert_int_equal(zpage_parse_score("1764374400", &d), 0);
	assert_true(d == 1764374400.0);
	assert_int_equal(zpage_parse_score("nan", &d), -1);
	assert_int_equal(zpage_parse_score("", &d), -1);
	assert_int_equal(zpage_parse_score("1x", &d), -1);
	assert_int_equal(zpage_parse_score(NULL, &d), -1);

	assert_int_equal(zpage_floor(1.5), 1);
	assert_int_equal(zpage_floor(7), 7);
	assert_int_equal(zpage_floor(-0.5), -1);
	assert_int_equal(zpage_floor(-2), -2);
	assert_true(zpage_floor(INFINITY) == INT64_MAX);
	assert_true(zpage_floor(-INFINITY) == INT64_MIN);
	assert_true(zpage_floor(1e300) == INT64_MAX);
	assert_true(zpage_floor(-1e300) == INT64_MIN);
	/* 2^63 - 1 is 2^63 as a double: out of range, clamped. */
	assert_true(zpage_floor(9223372036854775807.0) == INT64_MAX);
	assert_true(zpage_floor(-9223372036854775808.0) == INT64_MIN);
	/* The greatest double below 2^63 is in range, exactly. */
	assert_true(zpage_floor(9223372036854774784.0) ==
	    9223372036854774784LL);
	assert_true(zpage_floor(-9223372036854774784.0) ==
	    -9223372036854774784LL);
}

/*
 * A sorted set in memory, in Redis's order, and its answer to
 * ZRANGEBYSCORE key min +inf WITHSCORES LIMIT off count.
 */
#define SET_MAX 4096

struct entry {
	double score;
	char member[16];
	int added;		/* the walk's page when it last came in */
	int moved;		/* its score changed during the walk */
	int seen;		/* times the walk returned it */
};

static struct entry set[SET_MAX];
static int nset;

static int
entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->score != y->score)
		return x->score < y->score ? -1 : 1;
	return zpage_member_cmp(x->member, strlen(x->member), y->member,
	    strlen(y->member));
}

static int
set_find(const char *m)
{
	int i;

	for (i = 0; i < nset; i++)
		if (strcmp(set[i].member, m) == 0)
			return i;
	return -1;
}

static void
set_rem(const char *m)
{
	int i = set_find(m);

	if (i == -1)
		return;
	memmove(&set[i], &set[i + 1], (size_t)(nset - i - 1) * sizeof(set[0]));
	nset--;
}

static void
set_add(const char *m, double score, int when)
{
	struct entry e;
	int i = set_find(m);

	if (i != -1) {
		e = set[i];
		if (e.score != score)
			e.moved = 1;
		set_rem(m);
	} else {
		memset(&e, 0, sizeof(e));
		strcpy(e.member, m);
		e.added = when;
	}
	e.score = score;
	assert_true(nset < SET_MAX);
	for (i = nset; i > 0 && entry_cmp(&set[i - 1], &e) > 0; i--)
		;
	memmove(&set[i + 1], &set[i], (size_t)(nset - i) * sizeof(set[0]));
	set[i] = e;
	nset++;
}

static redisReply *
str_reply(const char *s)
{
	redisReply *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->type = REDIS_REPLY_STRING;
	e->len = strlen(s);
	e->str = strdup(s);
	assert_non_null(e->str);
	return e;
}

static redisReply *
set_query(const struct zpage *zp)
{
	const char *min = zp->have ? zp->score_str : zp->min;
	redisReply *r;
	char buf[64];
	double lo;
	int i, excl = min[0] == '(', skip = (int)zp->off, k = 0;

	assert_int_equal(zpage_parse_score(min + excl, &lo), 0);
	r = calloc(1, sizeof(*r));
	assert_non_null(r);
	r->type = REDIS_REPLY_ARRAY;
	r->element = calloc(2 * (size_t)zp->count + 1, sizeof(*r->element));
	assert_non_null(r->element);
	for (i = 0; i < nset && k < zp->count; i++) {
		if (excl ? set[i].score <= lo : set[i].score < lo)
			continue;
		if (skip > 0) {
			skip--;
			continue;
		}
		/* As Redis writes scores: they read back exactly. */
		snprintf(buf, sizeof(buf), "%.17g", set[i].score);
		r->element[2 * k] = str_reply(set[i].member);
		r->element[2 * k + 1] = str_reply(buf);
		k++;
	}
	r->elements = 2 * (size_t)k;
	return r;
}

/* The entry the walk returned at i of its page, counted. */
static void
note_seen(const struct zpage *zp, size_t i, double *last_score,
    char *last_member)
{
	const char *m;
	size_t len;
	double s;
	int x;

	m = zpage_member(zp, i, &len);
	s = zpage_score(zp, i);
	/* Strictly increasing, in Redis's order, over the whole walk. */
	if (last_member[0] != '\0')
		assert_true(s > *last_score || (s == *last_score &&
		    zpage_member_cmp(m, len, last_member,
		    strlen(last_member)) > 0));
	*last_score = s;
	strcpy(last_member, m);
	if ((x = set_find(m)) != -1)
		set[x].seen++;
}

/* Rand in [0, n), from a small LCG: the same walk every run. */
static unsigned long rng;

static int
rnd(int n)
{
	rng = rng * 6364136223846793005UL + 1442695040888963407UL;
	return (int)((rng >> 33) % (unsigned long)n);
}

/*
 * Walk the set with count per page; before each query, churn changes
 * (bump a score up, remove and re-add, add, remove).  Returns the number of
 * queries.
 */
static int
walk(long long count, int churn, const char *min)
{
	struct zpage zp;
	double last_score = 0;
	char last_member[16] = "", m[16];
	int queries = 0, rv, c, x, page = 0;
	size_t i;

	assert_int_equal(zpage_init(&zp, "k", min, "+inf", count), 0);
	for (;;) {
		for (c = 0; c < churn && page < 200 && nset > 0; c++) {
			x = rnd(nset);
			switch (rnd(4)) {
			case 0:		/* a post: the score moves on */
				strcpy(m, set[x].member);
				set_add(m, set[x].score + rnd(3), page + 1);
				break;
			case 1:		/* leaves and comes back */
				strcpy(m, set[x].member);
				set_rem(m);
				set_add(m, rnd(12), page + 1);
				break;
			case 2:		/* a new one */
				snprintf(m, sizeof(m), "n%d", rnd(100000));
				set_add(m, rnd(12), page + 1);
				break;
			default:	/* one that leaves */
				set_rem(set[x].member);
			}
		}
		page++;
		assert_true(++queries < 100000);
		rv = zpage_feed(&zp, set_query(&zp), err, sizeof(err));
		assert_int_not_equal(rv, -1);
		if (rv == ZPAGE_END)
			break;
		if (rv == ZPAGE_AGAIN)
			continue;
		assert_true(zp.first < zp.n);
		for (i = zp.first; i < zp.n; i++)
			note_seen(&zp, i, &last_score, last_member);
		if (zp.done)
			break;
	}
	zpage_clear(&zp);
	return queries;
}

static void
fill(int n, int nscores)
{
	char m[16];
	int i;

	nset = 0;
	for (i = 0; i < n; i++) {
		snprintf(m, sizeof(m), "%d", i);
		set_add(m, rnd(nscores), 0);
	}
}

static void
test_walk_quiet(void **state)
{
	int i, q;

	(void)state;
	rng = 1;
	/* Runs of equal scores far longer than a page. */
	fill(1000, 3);
	q = walk(16, 0, "-inf");
	for (i = 0; i < nset; i++)
		assert_int_equal(set[i].seen, 1);
	/* No page read twice: about one query per page. */
	assert_true(q <= 1000 / 15 + 3);

	/* One score for all; a page of 2; an exclusive lower bound. */
	fill(300, 1);
	walk(2, 0, "(-1");
	for (i = 0; i < nset; i++)
		assert_int_equal(set[i].seen, 1);
	walk(2, 0, "(0");
	for (i = 0; i < nset; i++)
		assert_int_equal(set[i].seen, 1);	/* none more */

	/* Every score distinct, fractional, negative, infinite. */
	nset = 0;
	set_add("a", -INFINITY, 0);
	set_add("b", -1.5, 0);
	set_add("c", 0.25, 0);
	set_add("d", 1e300, 0);
	set_add("e", INFINITY, 0);
	walk(2, 0, "-inf");
	for (i = 0; i < nset; i++)
		assert_int_equal(set[i].seen, 1);

	/* An empty set. */
	nset = 0;
	assert_int_equal(walk(10, 0, "-inf"), 1);
}

static void
test_walk_churn(void **state)
{
	int seed, i, throughout = 0;

	(void)state;
	for (seed = 1; seed <= 300; seed++) {
		rng = (unsigned long)seed;
		fill(200 + rnd(400), 1 + rnd(6));
		walk(2 + rnd(30), rnd(12), "-inf");
		for (i = 0; i < nset; i++) {
			if (set[i].added != 0)
				continue;	/* came in during the walk */
			throughout++;
			if (set[i].moved)
				assert_true(set[i].seen >= 1);
			else if (set[i].seen != 1)
				fail_msg("seed %d: %s seen %d times", seed,
				    set[i].member, set[i].seen);
		}
	}
	assert_true(throughout > 10000);
}

static void
test_bad_replies(void **state)
{
	struct zpage zp;
	redisReply *r;

	(void)state;
	zpage_init(&zp, "k", "-inf", "+inf", 10);
	r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_ERROR;
	r->str = strdup("WRONGTYPE Operation against a key");
	r->len = strlen(r->str);
	assert_int_equal(zpage_feed(&zp, r, err, sizeof(err)), -1);
	assert_string_equal(err, "redis ZRANGEBYSCORE k: WRONGTYPE Operation "
	    "against a key");

	/* An odd count of elements, a score that is not a number. */
	r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_ARRAY;
	r->elements = 1;
	r->element = calloc(1, sizeof(*r->element));
	r->element[0] = str_reply("a");
	assert_int_equal(zpage_feed(&zp, r, err, sizeof(err)), -1);
	r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_ARRAY;
	r->elements = 2;
	r->element = calloc(2, sizeof(*r->element));
	r->element[0] = str_reply("a");
	r->element[1] = str_reply("x");
	assert_int_equal(zpage_feed(&zp, r, err, sizeof(err)), -1);
	assert_string_equal(err, "redis ZRANGEBYSCORE k: not a list of members "
	    "and scores");
	zpage_clear(&zp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_member_cmp),
		cmocka_unit_test(test_seen),
		cmocka_unit_test(test_scores),
		cmocka_unit_test(test_walk_quiet),
		cmocka_unit_test(test_walk_churn),
		cmocka_unit_test(test_bad_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
