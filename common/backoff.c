/*
 * Exponential backoff (backoff.h): the plain doubling of the retry loops,
 * and the worker slots' restart backoff with jitter.  Kept free of clocks
 * and I/O: the caller passes the run time and the random number, which is
 * what lets tests/unit/test_backoff.c pin it.
 */
#include "backoff.h"

/* Beyond this many doublings the delay is at max anyway; avoids overflow. */
#define BACKOFF_MAX_SHIFT 30
/* Past this many failures in a row, any int64 delay has reached max. */
#define BACKOFF_MAX_STEPS 64

void
backoff_reset(struct backoff *b)
{
	b->failures = 0;
}

int64_t
backoff_delay(int64_t min_ms, int64_t max_ms, int n)
{
	int64_t d = min_ms;
	int k;

	/* Doubling one step at a time: no shift past the width, no overflow. */
	for (k = 1; k < n && d > 0 && d < max_ms; k++)
		d = d > max_ms / 2 ? max_ms : d * 2;
	return d < max_ms ? d : max_ms;
}

int64_t
backoff_step(struct backoff *b, int64_t min_ms, int64_t max_ms)
{
	if (b->failures < BACKOFF_MAX_STEPS)
		b->failures++;
	return backoff_delay(min_ms, max_ms, b->failures);
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
	d = backoff_delay(min_ms, max_ms, shift + 1);
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
