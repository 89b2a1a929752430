/*
 * The token bucket's arithmetic (worker/ratelimit.c), in the C model that
 * the bucket script follows step for step: refill, cap, chunked grants,
 * the wait an empty bucket answers, and tokens given back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ratelimit.h"

static void
test_sizes(void **state)
{
	(void)state;
	assert_true(ratelimit_chunk(200) == 20);
	assert_true(ratelimit_burst(200) == 100);
	/* A slow rate still grants one token at a time. */
	assert_true(ratelimit_chunk(0.5) == 1);
	assert_true(ratelimit_burst(0.5) == 1);
	assert_true(ratelimit_chunk(20) == 2);
	assert_true(ratelimit_burst(20) == 10);
}

static void
test_take(void **state)
{
	struct ratelimit_bucket b = { 0, 0 };
	int64_t wait;

	(void)state;
	/* A new bucket starts full: a burst, not more. */
	assert_int_equal(ratelimit_bucket_take(&b, 1000, 200, 500, &wait), 100);
	assert_int_equal(wait, 0);
	/* Empty: wait for a chunk (20 tokens at 200/s: 100 ms). */
	assert_int_equal(ratelimit_bucket_take(&b, 1000, 200, 500, &wait), 0);
	assert_int_equal(wait, 100);
	/* 50 ms later, 10 tokens: not worth a grant yet. */
	assert_int_equal(ratelimit_bucket_take(&b, 1050, 200, 500, &wait), 0);
	assert_int_equal(wait, 50);
	/* A small request is served with what there is. */
	assert_int_equal(ratelimit_bucket_take(&b, 1050, 200, 3, &wait), 3);
	/* 100 ms more: 7 + 20 tokens, all granted to a big request. */
	assert_int_equal(ratelimit_bucket_take(&b, 1150, 200, 500, &wait), 27);
	/* Idle for a minute: the bucket holds a burst at most. */
	assert_int_equal(ratelimit_bucket_take(&b, 61150, 200, 500, &wait), 100);
	/* Tokens given back are there for the next taker, up to a burst. */
	assert_int_equal(ratelimit_bucket_take(&b, 61150, 200, -30, &wait), 0);
	assert_int_equal(ratelimit_bucket_take(&b, 61150, 200, 500, &wait), 30);
	assert_int_equal(ratelimit_bucket_take(&b, 61150, 200, -900, &wait), 0);
	assert_int_equal(ratelimit_bucket_take(&b, 61150, 200, 500, &wait), 100);
	/* A clock that goes back refills nothing and takes nothing away. */
	assert_int_equal(ratelimit_bucket_take(&b, 60000, 200, 1, &wait), 0);
	assert_int_equal(ratelimit_bucket_take(&b, 61155, 200, 1, &wait), 1);
}

/* Over a long run, the grants follow the rate within a burst. */
static void
test_long_run(void **state)
{
	struct ratelimit_bucket b = { 0, 0 };
	int64_t t, got = 0, wait, next = 0;

	(void)state;
	for (t = 1; t <= 20000; t++) {
		if (t < next)
			continue;
		got += ratelimit_bucket_take(&b, t, 40, 100, &wait);
		next = t + (wait > 0 ? wait : 1);
	}
	/* 20 s at 40/s, plus the first burst. */
	assert_true(got >= 800 && got <= 800 + 20);
}

static void
test_domain(void **state)
{
	char buf[64];

	(void)state;
	assert_string_equal(ratelimit_domain("A@Mail.Example.COM", buf,
	    sizeof(buf)), "mail.example.com");
	assert_null(ratelimit_domain("nobody", buf, sizeof(buf)));
	assert_null(ratelimit_domain("x@", buf, sizeof(buf)));
	assert_null(ratelimit_domain("x@abc", buf, 3));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_take),
		cmocka_unit_test(test_long_run),
		cmocka_unit_test(test_domain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
