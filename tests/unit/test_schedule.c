/*
 * Unit tests for the scheduler's shard ranges: from the floors of the
 * scores on each side of each shard boundary to member ranges that cover
 * every floor once, with duplicated, fractional, negative and huge scores
 * and a membership that changed since it was counted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "ctl.h"

#define B1(a) { 1, { (a), 0 } }
#define B2(a, b) { 2, { (a), (b) } }
#define B0 { 0, { 0, 0 } }

static struct schedule_shard out[16];

static void
want(int n, int i, int64_t k, int64_t min, int64_t max)
{
	assert_true(i < n);
	assert_int_equal(out[i].k, k);
	assert_true(out[i].min == min);
	assert_true(out[i].max == max);
}

static void
test_integer_ids(void **state)
{
	/* 1, 4, ..., 73 in shards of 10: first and last of each rank range. */
	const struct schedule_bound b[] = { B1(1), B2(28, 31), B2(58, 61),
	    B1(73) };
	const struct schedule_bound one[] = { B1(5), B1(14) };
	int n;

	(void)state;
	n = schedule_shards(b, 3, out);
	assert_int_equal(n, 3);
	want(n, 0, 0, 1, 28);
	want(n, 1, 1, 31, 58);
	want(n, 2, 2, 61, 73);
	n = schedule_shards(one, 1, out);
	assert_int_equal(n, 1);
	want(n, 0, 0, 5, 14);
}

static void
test_equal_floors(void **state)
{
	/* A floor on both sides of a boundary belongs to the shard before. */
	const struct schedule_bound dup[] = { B1(1), B2(5, 5), B1(9) };
	/* A whole shard on the floor before it is dropped; ids keep k. */
	const struct schedule_bound drop[] = { B1(1), B2(5, 5), B2(5, 5),
	    B1(9) };
	/* So is a last shard; the one before is then the last. */
	const struct schedule_bound last[] = { B1(1), B2(5, 5), B1(5) };
	int n;

	(void)state;
	n = schedule_shards(dup, 2, out);
	assert_int_equal(n, 2);
	want(n, 0, 0, 1, 5);
	want(n, 1, 1, 6, 9);
	n = schedule_shards(drop, 3, out);
	assert_int_equal(n, 2);
	want(n, 0, 0, 1, 5);
	want(n, 1, 2, 6, 9);
	n = schedule_shards(last, 2, out);
	assert_int_equal(n, 1);
	want(n, 0, 0, 1, 5);
}

static void
test_extremes(void **state)
{
	const struct schedule_bound neg[] = { B1(INT64_MIN), B2(-3, -2),
	    B1(INT64_MAX) };
	/* Nothing comes after a shard that reaches +inf. */
	const struct schedule_bound top[] = { B1(0), B2(INT64_MAX, INT64_MAX),
	    B2(INT64_MAX, INT64_MAX), B1(INT64_MAX) };
	const struct schedule_bound all_min[] = { B1(INT64_MIN),
	    B2(INT64_MIN, INT64_MIN), B1(INT64_MIN) };
	int n;

	(void)state;
	n = schedule_shards(neg, 2, out);
	assert_int_equal(n, 2);
	want(n, 0, 0, INT64_MIN, -3);
	want(n, 1, 1, -2, INT64_MAX);
	n = schedule_shards(top, 3, out);
	assert_int_equal(n, 1);
	want(n, 0, 0, 0, INT64_MAX);
	n = schedule_shards(all_min, 2, out);
	assert_int_equal(n, 1);
	want(n, 0, 0, INT64_MIN, INT64_MIN);
}

static void
test_membership_changed(void **state)
{
	/* Emptied since ZCARD: no job. */
	const struct schedule_bound empty[] = { B0, B0, B0 };
	/* Shrank: a boundary with one member ends the group there. */
	const struct schedule_bound one[] = { B1(1), B1(20), B0, B1(20) };
	/* ... with none, the last member ends it. */
	const struct schedule_bound none[] = { B1(1), B2(10, 11), B0, B1(15) };
	/* The last member gone too: an open end. */
	const struct schedule_bound gone[] = { B1(1), B0 };
	int n;

	(void)state;
	assert_int_equal(schedule_shards(empty, 2, out), 0);
	n = schedule_shards(one, 3, out);
	assert_int_equal(n, 1);
	want(n, 0, 0, 1, 20);
	n = schedule_shards(none, 3, out);
	assert_int_equal(n, 2);
	want(n, 0, 0, 1, 10);
	want(n, 1, 1, 11, 15);
	n = schedule_shards(gone, 1, out);
	assert_int_equal(n, 1);
	want(n, 0, 0, 1, INT64_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integer_ids),
		cmocka_unit_test(test_equal_floors),
		cmocka_unit_test(test_extremes),
		cmocka_unit_test(test_membership_changed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
