/*
 * Unit tests for period windows: boundaries at day_start, Mondays for the
 * weekly period, runs exactly on and around a boundary.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "period.h"

/* 2025-11-29 00:00:00 UTC, a Saturday. */
#define SAT 1764374400
/* 2025-11-24 00:00:00 UTC, the Monday before. */
#define MON 1763942400

static void
check(int period, int day_start, int64_t now, int64_t want_start,
    int64_t want_end)
{
	int64_t s, e;

	assert_int_equal(period_window(period, day_start, now, &s, &e), 0);
	assert_int_equal(e, want_end);
	assert_int_equal(s, want_start);
}

static void
test_parse(void **state)
{
	(void)state;
	assert_int_equal(period_parse("daily"), PERIOD_DAILY);
	assert_int_equal(period_parse("weekly"), PERIOD_WEEKLY);
	assert_int_equal(period_parse("monthly"), -1);
	assert_int_equal(period_parse(""), -1);
	assert_int_equal(period_parse(NULL), -1);
	assert_string_equal(period_name(PERIOD_WEEKLY), "weekly");
	assert_int_equal(period_length(PERIOD_DAILY), 86400);
}

static void
test_daily_midnight(void **state)
{
	(void)state;
	/* Mid-day: the day before. */
	check(PERIOD_DAILY, 0, SAT + 12 * 3600, SAT - 86400, SAT);
	/* Exactly at the boundary: the day that just ended. */
	check(PERIOD_DAILY, 0, SAT, SAT - 86400, SAT);
	/* One second before: still the previous window. */
	check(PERIOD_DAILY, 0, SAT - 1, SAT - 2 * 86400, SAT - 86400);
	/* Last second of the day. */
	check(PERIOD_DAILY, 0, SAT + 86399, SAT - 86400, SAT);
}

static void
test_daily_day_start(void **state)
{
	int ds = 6 * 3600 + 30 * 60;	/* 06:30 */

	(void)state;
	check(PERIOD_DAILY, ds, SAT + ds, SAT + ds - 86400, SAT + ds);
	check(PERIOD_DAILY, ds, SAT + ds - 1, SAT + ds - 2 * 86400,
	    SAT + ds - 86400);
	/* 03:00, before day_start: the window ended yesterday at 06:30. */
	check(PERIOD_DAILY, ds, SAT + 3 * 3600, SAT + ds - 2 * 86400,
	    SAT + ds - 86400);
	/* The last second of the day settings. */
	check(PERIOD_DAILY, 86399, SAT + 86399, SAT - 1, SAT + 86399);
	check(PERIOD_DAILY, 86399, SAT + 86398, SAT - 86401, SAT - 1);
}

static void
test_weekly_monday(void **state)
{
	(void)state;
	/* Saturday: the week that ended last Monday. */
	check(PERIOD_WEEKLY, 0, SAT, MON - 7 * 86400, MON);
	/* Monday 00:00 exactly. */
	check(PERIOD_WEEKLY, 0, MON, MON - 7 * 86400, MON);
	/* Sunday 23:59:59 before it. */
	check(PERIOD_WEEKLY, 0, MON - 1, MON - 14 * 86400, MON - 7 * 86400);
	/* The next Monday. */
	check(PERIOD_WEEKLY, 0, MON + 7 * 86400, MON, MON + 7 * 86400);
	/* Monday before day_start belongs to the week before. */
	check(PERIOD_WEEKLY, 8 * 3600, MON + 3600, MON + 8 * 3600 - 14 * 86400,
	    MON + 8 * 3600 - 7 * 86400);
	check(PERIOD_WEEKLY, 8 * 3600, MON + 8 * 3600, MON + 8 * 3600 -
	    7 * 86400, MON + 8 * 3600);
}

static void
test_weekly_is_monday(void **state)
{
	int64_t s, e, t;

	(void)state;
	/* Every end is a Monday (day 4 mod 7 since the epoch). */
	for (t = 0; t < 40 * 86400; t += 3 * 3600 + 17) {
		assert_int_equal(period_window(PERIOD_WEEKLY, 0, SAT + t, &s,
		    &e), 0);
		assert_int_equal(((e / 86400) + 3) % 7, 0);
		assert_true(e <= SAT + t && SAT + t < e + 7 * 86400);
		assert_int_equal(e - s, 7 * 86400);
	}
}

static void
test_bad(void **state)
{
	int64_t s, e;

	(void)state;
	assert_int_equal(period_window(7, 0, SAT, &s, &e), -1);
	assert_int_equal(period_window(PERIOD_DAILY, -1, SAT, &s, &e), -1);
	assert_int_equal(period_window(PERIOD_DAILY, 86400, SAT, &s, &e), -1);
	/* Before the epoch still floors. */
	check(PERIOD_DAILY, 0, -1, -2 * 86400, -86400);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_daily_midnight),
		cmocka_unit_test(test_daily_day_start),
		cmocka_unit_test(test_weekly_monday),
		cmocka_unit_test(test_weekly_is_monday),
		cmocka_unit_test(test_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
