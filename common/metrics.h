/*
 * The metrics a worker counts, laid out as dense 64-bit cells in its
 * scoreboard slot.  The pool label is the slot's pool; every other label
 * combination has a cell index fixed at compile time, so the hot path is
 * one load and one store: no allocation, hashing or formatting.
 *
 * Histograms take HIST_NB finite buckets, one +Inf bucket and a sum, all
 * non-cumulative; cumulative buckets and _count are derived at scrape, so
 * +Inf == _count always holds.  Observations are integer nanoseconds; the
 * sum is integer milliseconds (METRIC_SUM_NS), each observation rounded to
 * the nearest, so that it stays exact and monotonic for centuries of a
 * large pool's volume.  At 20 M emails a day, each an hour late, the
 * summed delay grows by 2,300 years a day: 2^64 ns (585 years) lasts six
 * hours, 2^64 us eight months, 2^64 ms seven centuries.  The smallest
 * bucket bound is 100 ms: a millisecond loses nothing read from a sum.
 *
 * Only the slot's worker writes its cells (single writer); the supervisor
 * reads them while the worker runs and folds them into the pool's retired
 * totals once the worker is dead (metrics_fold).
 */
#ifndef DIGESTD_METRICS_H
#define DIGESTD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"

enum job_result { JOB_OK, JOB_FAILED, JOB_RETRIED, JOB_DEAD_LETTERED, JOB_RESULT_N };
enum email_result { EMAIL_SENT, EMAIL_DEFERRED, EMAIL_REJECTED, EMAIL_RESULT_N };
enum skip_reason {
	SKIP_INACTIVE,
	SKIP_OPTED_OUT,
	SKIP_NO_EMAIL,
	SKIP_NOTHING_NEW,
	SKIP_ALREADY_SENT,
	SKIP_SUPPRESSED,	/* the address is on the suppression list */
	SKIP_BAD_DATA,		/* not a user id, or a field too long to read */
	SKIP_N
};
/*
 * Why a recipient was given up: the mailbox does not exist (the reading
 * the suppression list uses), any other 5xx, or a 4xx past its lifetime.
 */
enum reject_class {
	REJECT_MAILBOX, REJECT_POLICY, REJECT_EXPIRED, REJECT_CLASS_N
};
/* Why a transport failed (worker/transport.h: the flush contract). */
enum transport_failure {
	TF_CONNECT,	/* unreachable, or the connection was lost */
	TF_TLS,		/* TLS could not be established or verified */
	TF_AUTH,	/* AUTH failed, or the server wants it and we cannot */
	TF_SENDER,	/* the envelope sender refused with 5xx */
	TF_PROTOCOL,	/* anything else */
	TF_N
};

#define HIST_NB 12		/* finite buckets per histogram */
#define HIST_CELLS (HIST_NB + 2) /* + the +Inf bucket + the sum */

enum hist_id {
	HIST_JOB_DURATION, HIST_QUEUE_WAIT, HIST_EMAIL_DELAY, HIST_RATELIMIT_WAIT,
	HIST_N
};

/* Cell indexes. */
enum {
	MC_JOBS = 0,					/* [job_result] */
	MC_EMAILS = MC_JOBS + JOB_RESULT_N,		/* [transport][email_result] */
	/* [reject_class] */
	MC_REJECTS = MC_EMAILS + TRANSPORT_N * EMAIL_RESULT_N,
	MC_SKIPPED = MC_REJECTS + REJECT_CLASS_N,	/* [skip_reason] */
	MC_REDIS_ERRORS = MC_SKIPPED + SKIP_N,
	MC_BROKER_ERRORS = MC_REDIS_ERRORS + 1,	/* the AMQP queue's */
	MC_TRANSPORT_ERRORS = MC_BROKER_ERRORS + 1,	/* [transport] */
	/* [transport][transport_failure] */
	MC_TRANSPORT_FAILURES = MC_TRANSPORT_ERRORS + TRANSPORT_N,
	/* [hist_id][HIST_CELLS] */
	MC_HIST = MC_TRANSPORT_FAILURES + TRANSPORT_N * TF_N,
	MC_NCELLS = MC_HIST + HIST_N * HIST_CELLS
};

#define MC_EMAIL(transport, result) (MC_EMAILS + (transport) * EMAIL_RESULT_N + (result))
#define MC_TRANSPORT_FAILURE(transport, kind) \
	(MC_TRANSPORT_FAILURES + (transport) * TF_N + (kind))
#define MC_HIST_BASE(h) (MC_HIST + (h) * HIST_CELLS)
#define MC_HIST_SUM(h) (MC_HIST_BASE(h) + HIST_NB + 1)

/* The unit of a histogram's sum cell, in nanoseconds: milliseconds. */
#define METRIC_SUM_NS 1000000ULL

/* Upper bounds of the finite buckets, in nanoseconds, per histogram. */
extern const int64_t metrics_hist_bounds_ns[HIST_N][HIST_NB];

typedef _Atomic uint64_t metric_cell;

/* Add v to a cell; only the slot's own worker calls this. */
static inline void
metric_add(metric_cell *cells, int idx, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(&cells[idx], memory_order_relaxed);
	atomic_store_explicit(&cells[idx], cur + v, memory_order_relaxed);
}

static inline void
metric_inc(metric_cell *cells, int idx)
{
	metric_add(cells, idx, 1);
}

/*
 * Record one observation of ns nanoseconds (negative counts as 0): a bucket
 * by the exact value, the sum in METRIC_SUM_NS units.
 */
static inline void
metric_observe(metric_cell *cells, int h, int64_t ns)
{
	const int64_t *b = metrics_hist_bounds_ns[h];
	int i, k;

	if (ns < 0)
		ns = 0;
	/*
	 * The bounds are sorted, so the bucket is the number of bounds below
	 * ns; counting them without a branch costs a few ns whatever the
	 * value, where a search mispredicts on real, spread-out durations.
	 */
	for (i = 0, k = 0; k < HIST_NB; k++)
		i += ns > b[k];
	metric_add(cells, MC_HIST_BASE(h) + i, 1);
	metric_add(cells, MC_HIST_SUM(h),
	    ((uint64_t)ns + METRIC_SUM_NS / 2) / METRIC_SUM_NS);
}

/* Add a dead worker's cells to totals and zero them (the supervisor's fold). */
void metrics_fold(uint64_t totals[MC_NCELLS], metric_cell cells[MC_NCELLS]);

/*
 * The descriptors of the metrics kept in cells, in exposition order: the
 * formatter walks this table, so a new cell metric needs one entry here
 * and nothing else.  Every series also carries the pool label, first.
 */
enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

#define METRIC_MAX_DIMS 2

struct metric_dim {
	const char *label;
	const char *const *values;	/* indexed as the enum of the cells */
	int n;
};

struct metric_desc {
	const char *name;	/* the family: a counter's without _total */
	const char *help;
	enum metric_type type;
	int ndims;		/* labels after pool, row-major in the cells */
	struct metric_dim dims[METRIC_MAX_DIMS];
	int base;		/* first cell */
	int hist;		/* enum hist_id, for histograms */
};

extern const struct metric_desc metrics_desc[];
extern const int metrics_ndesc;

/* Label values of the cell dimensions, in enum order. */
extern const char *const metrics_job_result_names[JOB_RESULT_N];
extern const char *const metrics_email_result_names[EMAIL_RESULT_N];
extern const char *const metrics_reject_class_names[REJECT_CLASS_N];
extern const char *const metrics_skip_reason_names[SKIP_N];
extern const char *const metrics_transport_names[TRANSPORT_N];
extern const char *const metrics_transport_failure_names[TF_N];

#endif
