/*
 * Unit tests for the backoff (common/backoff.c).  The per-slot restart
 * backoff: immediate restart after a healthy run, doubling from min to
 * max after short runs, jitter inside [min, max] and +/-25%, reset, and
 * sane results for degenerate settings.  The plain doubling of the retry
 * loops: min, 2*min ... max, without overflow, and its counted form.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "backoff.h"

/* rnd giving the middle of the jitter range: the delay is the base. */
static uint32_t
mid(int64_t base)
{
	return (uint32_t)(base / 4);
}

static void
test_first_death_restarts_at_once(void **state)
{
	struct backoff b;

	backoff_reset(&b);
	assert_int_equal(backoff_next(&b, 5, 100, 30000, 0), 0);
}

static void
test_doubles_to_max(void **state)
{
	struct backoff b;
	int64_t want[] = { 100, 200, 400, 800, 1600, 3200, 6400, 12800,
	    25600, 30000, 30000, 30000 };
	size_t i;

	backoff_reset(&b);
	assert_int_equal(backoff_next(&b, 5, 100, 30000, 0), 0);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int64_t d = backoff_next(&b, 5, 100, 30000, mid(want[i]));
		assert_int_equal(d, want[i]);
	}
}

static void
test_jitter_bounds(void **state)
{
	struct backoff b;
	uint32_t r;
	int64_t d, lo = INT64_MAX, hi = 0;
	int k;

	for (r = 0; r < 2000; r += 7) {
		backoff_reset(&b);
		backoff_next(&b, 0, 100, 30000, r);
		for (k = 0; k < 4; k++)		/* base 100, 200, 400, 800 */
			d = backoff_next(&b, 0, 100, 30000, r);
		/* base 800: within 600..1000 */
		assert_true(d >= 600 && d <= 1000);
		if (d < lo)
			lo = d;
		if (d > hi)
			hi = d;
	}
	/* The jitter really spreads the delays. */
	assert_true(hi - lo >= 300);
}

static void
test_jitter_clamped_to_min_max(void **state)
{
	struct backoff b;
	uint32_t r;
	int64_t d;
	int k;

	for (r = 0; r < 200; r++) {
		backoff_reset(&b);
		backoff_next(&b, 0, 100, 1000, r);
		d = backoff_next(&b, 0, 100, 1000, r);	/* base = min */
		assert_true(d >= 100 && d <= 125);
		for (k = 0; k < 20; k++)
			d = backoff_next(&b, 0, 100, 1000, r);
		assert_true(d >= 750 && d <= 1000);
	}
}

static void
test_healthy_run_resets(void **state)
{
	struct backoff b;
	int64_t healthy = backoff_healthy_ms(100, 30000);
	int k;

	assert_int_equal(healthy, 30000);
	backoff_reset(&b);
	for (k = 0; k < 10; k++)
		backoff_next(&b, 10, 100, 30000, 0);
	assert_true(backoff_next(&b, 10, 100, 30000, 0) > 0);
	/* One healthy run: the next death restarts at once... */
	assert_int_equal(backoff_next(&b, healthy, 100, 30000, 0), 0);
	/* ...and the one after starts again from min. */
	assert_int_equal(backoff_next(&b, 10, 100, 30000, mid(100)), 100);
}

static void
test_healthy_threshold_floor(void **state)
{
	/* A tiny max must not make every run look healthy. */
	assert_int_equal(backoff_healthy_ms(10, 50), 1000);
	assert_int_equal(backoff_healthy_ms(10, 1000), 1000);
	assert_int_equal(backoff_healthy_ms(5000, 2000), 5000);
}

static void
test_reset(void **state)
{
	struct backoff b;
	int k;

	backoff_reset(&b);
	for (k = 0; k < 5; k++)
		backoff_next(&b, 0, 100, 30000, 0);
	backoff_reset(&b);
	assert_int_equal(backoff_next(&b, 0, 100, 30000, 0), 0);
}

static void
test_degenerate_settings(void **state)
{
	struct backoff b;
	int64_t d;
	int k;

	/* max below min: min wins. */
	backoff_reset(&b);
	backoff_next(&b, 0, 500, 100, 0);
	d = backoff_next(&b, 0, 500, 100, 12345);
	assert_int_equal(d, 500);
	/* min 0 counts as 1 ms; never a zero delay in a loop. */
	backoff_reset(&b);
	backoff_next(&b, 0, 0, 0, 0);
	for (k = 0; k < 5; k++)
		assert_int_equal(backoff_next(&b, 0, 0, 0, 99), 1);
	/* Many failures never overflow. */
	backoff_reset(&b);
	for (k = 0; k < 1000; k++)
		d = backoff_next(&b, 0, 100, INT64_MAX / 2, 0);
	assert_true(d > 0);
}

static void
test_delay_doubles_to_max(void **state)
{
	/* The worker's connect retries: 100 ms doubling to 5 s. */
	int64_t want[] = { 100, 200, 400, 800, 1600, 3200, 5000, 5000 };
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_int_equal(backoff_delay(100, 5000, (int)i + 1), want[i]);
	/* Below 1 counts as the first failure. */
	assert_int_equal(backoff_delay(100, 5000, 0), 100);
	assert_int_equal(backoff_delay(100, 5000, -3), 100);
	/* As the deferred recipients' clock: max below min gives max. */
	assert_int_equal(backoff_delay(600000, 60000, 3), 60000);
	/* No overflow, however many failures or however large max. */
	assert_int_equal(backoff_delay(1, INT64_MAX, 1000), INT64_MAX);
	assert_int_equal(backoff_delay(INT64_MAX / 2 + 1, INT64_MAX, 2),
	    INT64_MAX);
	assert_int_equal(backoff_delay(3, INT64_MAX - 1, 70), INT64_MAX - 1);
}

static void
test_step_counts_and_resets(void **state)
{
	struct backoff b;
	int k;

	backoff_reset(&b);
	assert_int_equal(backoff_step(&b, 1000, 30000), 1000);
	assert_int_equal(backoff_step(&b, 1000, 30000), 2000);
	assert_int_equal(backoff_step(&b, 1000, 30000), 4000);
	for (k = 0; k < 1000; k++)
		assert_true(backoff_step(&b, 1000, 30000) <= 30000);
	assert_int_equal(backoff_step(&b, 1000, 30000), 30000);
	backoff_reset(&b);
	assert_int_equal(backoff_step(&b, 1000, 30000), 1000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_death_restarts_at_once),
		cmocka_unit_test(test_doubles_to_max),
		cmocka_unit_test(test_jitter_bounds),
		cmocka_unit_test(test_jitter_clamped_to_min_max),
		cmocka_unit_test(test_healthy_run_resets),
		cmocka_unit_test(test_healthy_threshold_floor),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_degenerate_settings),
		cmocka_unit_test(test_delay_doubles_to_max),
		cmocka_unit_test(test_step_counts_and_resets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
