/*
 * Exponential backoff, the one kind every retry loop of digestd uses:
 * min, 2*min, 4*min ... up to max.  Pure arithmetic, no clock and no
 * randomness of its own, so that it can be tested on its own.
 *
 * backoff_delay is the bare doubling; backoff_step keeps the count of
 * failures for a caller that has none.  backoff_next is the worker
 * slots' restart backoff: a slot whose worker ran long enough is healthy
 * and restarts at once; a slot that keeps dying right after start waits
 * min, 2*min, 4*min ... up to max, each delay with +/-25% jitter so that
 * slots of a crash-looping pool do not restart in lockstep.  A struct
 * backoff is used with backoff_step or with backoff_next, not both.
 */
#ifndef DIGESTD_BACKOFF_H
#define DIGESTD_BACKOFF_H

#include <stdint.h>

struct backoff {
	int failures;		/* failures (or deaths after short runs) in a row */
};

/* Start again from min: the next failure is the first. */
void backoff_reset(struct backoff *);

/*
 * The delay after the n-th failure in a row (n from 1; less counts as
 * 1): min_ms doubled n - 1 times, never above max_ms.  No jitter.
 */
int64_t backoff_delay(int64_t min_ms, int64_t max_ms, int n);

/* Count a failure and return the delay before the next try (as above). */
int64_t backoff_step(struct backoff *, int64_t min_ms, int64_t max_ms);

/* How long a run must last to count as healthy, in ms. */
int64_t backoff_healthy_ms(int64_t min_ms, int64_t max_ms);

/*
 * The delay before the next start, in ms, given how long the last run
 * lasted (ran_ms) and a random number (rnd) for the jitter.  Counts the
 * death.  The result is 0 after a healthy run, else within [min, max].
 */
int64_t backoff_next(struct backoff *, int64_t ran_ms, int64_t min_ms,
    int64_t max_ms, uint32_t rnd);

#endif
