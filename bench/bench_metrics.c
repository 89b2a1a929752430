/*
 * What a worker pays to count, and what the supervisor pays to format:
 *
 *   metric_inc / metric_add    one relaxed load and store on a cell of the
 *                              shared segment
 *   metric_observe             the bucket search, then two such updates
 *   expo_format                the whole /metrics body for 64 workers'
 *                              worth of pools, from a snapshot
 *   expo_snapshot_take         copying every slot's cells and the stats
 *
 * Times are CPU time of the process.  Prints one JSON object on stdout
 * (bench/scrape_bench.py reads it).
 *
 *     build/bench/bench_metrics [-n ITERATIONS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "exposition.h"
#include "metrics.h"
#include "scoreboard.h"
#include "supervisor.h"
#include "util.h"

/* The supervisor's main defines these; the formatter needs them here. */
const char *const restart_reason_names[RESTART_N] = {
	"crash", "oom", "stall", "recycle", "reload",
};
struct supervisor *sup;

int
supervisor_ready(const struct supervisor *s)
{
	return 1;
}

#define NIDX 64

/*
 * CPU time of this process: the machine may be shared, and time spent
 * preempted is not what an increment costs.
 */
static int64_t
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#define NOBS 4096

static double
bench_inc(struct sb_slot *slot, long n)
{
	int idx[NIDX];
	int64_t t0;
	long i;

	/* The cells a job touches most: emails sent, skips, jobs. */
	for (i = 0; i < NIDX; i++)
		idx[i] = (i % 3 == 0) ? MC_EMAIL(TRANSPORT_SMTP, EMAIL_SENT) :
		    (i % 3 == 1) ? MC_SKIPPED + (int)(i % SKIP_N) :
		    MC_JOBS + (int)(i % JOB_RESULT_N);
	t0 = cpu_ns();
	for (i = 0; i < n; i++)
		metric_inc(slot->cells, idx[i & (NIDX - 1)]);
	return (double)(cpu_ns() - t0) / n;
}

static double
bench_observe(struct sb_slot *slot, long n)
{
	static int64_t obs[NOBS];
	int64_t t0;
	long i;

	/* Spread over every bucket of the email-delay histogram. */
	srandom(7);
	for (i = 0; i < NOBS; i++)
		obs[i] = (int64_t)(random() % (3LL * 86400)) * 1000000000LL;
	t0 = cpu_ns();
	for (i = 0; i < n; i++)
		metric_observe(slot->cells, HIST_EMAIL_DELAY, obs[i & (NOBS - 1)]);
	return (double)(cpu_ns() - t0) / n;
}

int
main(int argc, char **argv)
{
	static struct supervisor s;
	static struct config cfg;
	static struct expo_snapshot snap;
	struct evbuffer *b;
	double inc_ns, obs_ns, fmt_us, snap_us;
	size_t body = 0;
	long n = 200000000L, i;
	int64_t t0;
	int c, j, reps = 2000;

	while ((c = getopt(argc, argv, "n:")) != -1) {
		if (c == 'n')
			n = atol(optarg);
		else {
			fprintf(stderr, "usage: bench_metrics [-n N]\n");
			return 2;
		}
	}
	s.sb = sb_create();
	s.cfg = &cfg;
	sup = &s;

	inc_ns = bench_inc(&s.sb->slots[0], n);
	obs_ns = bench_observe(&s.sb->slots[0], n / 4);

	/* 64 live workers in two pools, every cell non-zero. */
	cfg.npools = 2;
	for (j = 0; j < 2; j++) {
		const char *name = j ? "standard" : "priority";

		strlcpy(cfg.pools[j].name, name, sizeof(cfg.pools[j].name));
		strlcpy(cfg.pools[j].queue, name, sizeof(cfg.pools[j].queue));
		strlcpy(s.sb->pools[j].name, name, SB_NAME_MAX);
		strlcpy(s.sb->pools[j].queue, name, SB_NAME_MAX);
	}
	for (i = 0; i < 64; i++) {
		struct sb_slot *sl = &s.sb->slots[i];

		atomic_store(&sl->pool, (int32_t)(i & 1));
		atomic_store(&sl->state, SB_BUSY);
		atomic_store(&sl->rss_bytes, 20000000 + i);
		for (j = 0; j < MC_NCELLS; j++)
			atomic_store(&sl->cells[j], 1000003ULL * (j + 1) + i);
	}
	for (j = 0; j < 2; j++)
		for (c = 0; c < MC_NCELLS; c++)
			s.totals[j].cells[c] = 98765432109ULL + c;

	t0 = cpu_ns();
	for (j = 0; j < reps; j++)
		expo_snapshot_take(&s, &snap);
	snap_us = (cpu_ns() - t0) / 1e3 / reps;

	b = evbuffer_new();
	t0 = cpu_ns();
	for (j = 0; j < reps; j++) {
		expo_format(b, &snap, EXPO_TEXT);
		body = evbuffer_get_length(b);
		evbuffer_drain(b, body);
	}
	fmt_us = (cpu_ns() - t0) / 1e3 / reps;
	evbuffer_free(b);

	printf("{\"iterations\": %ld, \"metric_inc_ns\": %.3f, "
	    "\"metric_observe_ns\": %.3f, \"snapshot_us\": %.2f, "
	    "\"format_text_us\": %.2f, \"body_bytes\": %zu, "
	    "\"workers\": 64}\n", n, inc_ns, obs_ns, snap_us, fmt_us, body);
	return 0;
}
