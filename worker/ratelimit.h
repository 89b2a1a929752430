/*
 * How fast emails leave the cluster (docs/design.md#rate-limits): token
 * buckets and the reject ring in the queue Redis, shared by every worker
 * of every instance.
 */
#ifndef DIGESTD_RATELIMIT_H
#define DIGESTD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"

/* The emails the reject share is taken over, and the fewest it needs. */
#define RATELIMIT_RING		1000
#define RATELIMIT_RING_MIN	100

/* A bucket's state, as the script keeps it in its hash. */
struct ratelimit_bucket {
	double tokens;
	int64_t ts_ms;		/* when tokens was right; 0: never used */
};

/*
 * The bucket arithmetic the script runs, for a bucket of rate tokens a
 * second holding at most ratelimit_burst(rate): refill up to now_ms,
 * then grant up to want tokens (want < 0 gives -want back).  The grant,
 * possibly 0; *wait_ms is then how long until a worthwhile grant.
 */
int64_t	ratelimit_bucket_take(struct ratelimit_bucket *, int64_t now_ms,
	    double rate, int64_t want, int64_t *wait_ms);
/* The most a bucket of rate holds, and the least grant worth a wait. */
double	ratelimit_burst(double rate);
double	ratelimit_chunk(double rate);

/*
 * Take up to want tokens from the bucket of domain (NULL: the cluster's
 * bucket) filling at rate a second, in one round trip.  The grant (0 when
 * empty, with *wait_ms), or -1 with err; want < 0 gives tokens back.
 */
int64_t	ratelimit_take(redisContext *, const struct config *,
	    const char *domain, double rate, int64_t want, int64_t *wait_ms,
	    char *err, size_t errlen);

/*
 * Add n outcomes ('1' refused with 5xx, '0' not) to the cluster's ring of
 * the last RATELIMIT_RING emails, in one round trip.  *rejects and *total
 * say what the ring holds; *tripped is 1 for the one caller whose outcomes
 * took the share past limits.reject_pause (the ring is then emptied).
 * 0, or -1 with err.
 */
int	ratelimit_note(redisContext *, const struct config *,
	    const char *outcomes, size_t n, int64_t *rejects, int64_t *total,
	    int *tripped, char *err, size_t errlen);

/* Pause every queue (priority, standard, each pool's) with reason. */
int	ratelimit_pause_all(redisContext *, const struct config *,
	    const char *reason, char *err, size_t errlen);

/* The domain of an address, lowercased into buf; NULL when it has none. */
const char *ratelimit_domain(const char *addr, char *buf, size_t len);

#endif
