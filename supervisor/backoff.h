/*
 * Restart backoff for one worker slot: pure arithmetic, no clock and no
 * randomness of its own, so that it can be tested on its own.
 *
 * A slot whose worker ran long enough is healthy and restarts at once; a
 * slot that keeps dying right after start waits min, 2*min, 4*min ... up
 * to max, each delay with +/-25% jitter so that slots of a crash-looping
 * pool do not restart in lockstep.
 */
#ifndef DIGESTD_BACKOFF_H
#define DIGESTD_BACKOFF_H

#include <stdint.h>

struct backoff {
	int failures;		/* deaths in a row after short runs */
};

void backoff_reset(struct backoff *);

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
