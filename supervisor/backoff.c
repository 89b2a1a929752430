/*
 * Exponential restart backoff with jitter, per worker slot (backoff.h).
 * Kept free of clocks and I/O: the caller passes the run time and the
 * random number, which is what lets tests/unit/test_backoff.c pin it.
 */
#include "backoff.h"

/* Beyond this many doublings the delay is at max anyway; avoids overflow. */
#define BACKOFF_MAX_SHIFT 30

void
backoff_reset(struct backoff *b)
{
	b->failures = 0;
}

int64_t
backoff_healthy_ms(int64_t min_ms, int64_t max_ms)
{
	int64_t h = max_ms;

	/*
	 * A run as long as the longest wait is proof enough that the slot
	 * is not crash-looping; never less than a second, so that a tiny
	 * max does not make every death look healthy.
	 */
	if (h < 1000)
		h = 1000;
	if (h < min_ms)
		h = min_ms;
	return h;
}

int64_t
backoff_next(struct backoff *b, int64_t ran_ms, int64_t min_ms,
    int64_t max_ms, uint32_t rnd)
{
	int64_t d, span;
	int shift;

	if (min_ms < 1)
		min_ms = 1;
	if (max_ms < min_ms)
		max_ms = min_ms;
	if (ran_ms >= backoff_healthy_ms(min_ms, max_ms))
		b->failures = 0;
	if (b->failures == 0) {
		b->failures = 1;
		return 0;
	}
	shift = b->failures - 1;
	if (shift > BACKOFF_MAX_SHIFT)
		shift = BACKOFF_MAX_SHIFT;
	d = min_ms << shift;
	if (d > max_ms || d < min_ms)
		d = max_ms;
	if (b->failures < BACKOFF_MAX_SHIFT + 2)
		b->failures++;

	/* +/-25% jitter, then back inside [min, max]. */
	span = d / 2;
	d = d - d / 4 + (span > 0 ? (int64_t)(rnd % (uint64_t)(span + 1)) : 0);
	if (d < min_ms)
		d = min_ms;
	if (d > max_ms)
		d = max_ms;
	return d;
}
