/*
 * The metric cells: bucket bounds and observation, the descriptor table's
 * coverage of the cells, and the fold of a dead worker's cells into its
 * pool's totals, which must never count a generation twice.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "exposition.h"
#include "metrics.h"
#include "scoreboard.h"
#include "supervisor.h"

/* Defined by the supervisor's main; the fold does not use them. */
const char *const restart_reason_names[RESTART_N] = {
	"crash", "oom", "stall", "recycle", "reload",
};
struct supervisor *sup;

int
supervisor_ready(const struct supervisor *s)
{
	return 0;
}

static void
test_bounds(void **state)
{
	static const int64_t first[HIST_N] = {
		100000000LL, 1000000000LL, 60000000000LL, 1000000LL,
	};
	static const int64_t last[HIST_N] = {
		3600000000000LL, 86400000000000LL, 172800000000000LL,
		60000000000LL,
	};
	int h, i;

	for (h = 0; h < HIST_N; h++) {
		assert_int_equal(metrics_hist_bounds_ns[h][0], first[h]);
		assert_int_equal(metrics_hist_bounds_ns[h][HIST_NB - 1],
		    last[h]);
		for (i = 1; i < HIST_NB; i++)
			assert_true(metrics_hist_bounds_ns[h][i] >
			    metrics_hist_bounds_ns[h][i - 1]);
	}
}

static void
test_observe(void **state)
{
	metric_cell cells[MC_NCELLS];
	const int64_t *b = metrics_hist_bounds_ns[HIST_JOB_DURATION];
	int base = MC_HIST_BASE(HIST_JOB_DURATION);

	memset(cells, 0, sizeof(cells));
	/* A bound belongs to its own bucket (le is "less or equal"). */
	metric_observe(cells, HIST_JOB_DURATION, b[0]);
	assert_int_equal(cells[base + 0], 1);
	metric_observe(cells, HIST_JOB_DURATION, b[0] + 1);
	assert_int_equal(cells[base + 1], 1);
	metric_observe(cells, HIST_JOB_DURATION, b[HIST_NB - 1] + 1);
	assert_int_equal(cells[base + HIST_NB], 1);
	/* Negative durations (a clock step) count as 0. */
	metric_observe(cells, HIST_JOB_DURATION, -5);
	assert_int_equal(cells[base + 0], 2);
	/* The sum is in milliseconds, each observation to the nearest. */
	assert_int_equal(cells[MC_HIST_SUM(HIST_JOB_DURATION)],
	    100 + 100 + 3600 * 1000);
	metric_observe(cells, HIST_JOB_DURATION, 1499999);
	metric_observe(cells, HIST_JOB_DURATION, 1500000);
	assert_int_equal(cells[MC_HIST_SUM(HIST_JOB_DURATION)],
	    100 + 100 + 3600 * 1000 + 1 + 2);
	metric_observe(cells, HIST_JOB_DURATION, INT64_MAX);
	assert_int_equal(cells[MC_HIST_SUM(HIST_JOB_DURATION)],
	    100 + 100 + 3600 * 1000 + 1 + 2 +
	    (((uint64_t)INT64_MAX + 500000) / 1000000));
	/* Other histograms are untouched. */
	assert_int_equal(cells[MC_HIST_SUM(HIST_QUEUE_WAIT)], 0);
	assert_int_equal(cells[MC_HIST_BASE(HIST_EMAIL_DELAY)], 0);
}

/* Every cell is exported by exactly one descriptor. */
static void
test_descriptors_cover_cells(void **state)
{
	int seen[MC_NCELLS] = { 0 };
	int d, i, n;

	for (d = 0; d < metrics_ndesc; d++) {
		const struct metric_desc *m = &metrics_desc[d];

		assert_non_null(m->name);
		assert_non_null(m->help);
		assert_true(strncmp(m->name, "digest_", 7) == 0);
		if (m->type == METRIC_COUNTER) {
			n = strlen(m->name);
			assert_false(n > 6 &&
			    strcmp(m->name + n - 6, "_total") == 0);
		}
		if (m->type == METRIC_HISTOGRAM) {
			assert_int_equal(m->base, MC_HIST_BASE(m->hist));
			n = HIST_CELLS;
		} else {
			n = 1;
			for (i = 0; i < m->ndims; i++) {
				assert_true(m->dims[i].n > 0);
				n *= m->dims[i].n;
			}
		}
		for (i = 0; i < n; i++) {
			assert_true(m->base + i < MC_NCELLS);
			seen[m->base + i]++;
		}
	}
	for (i = 0; i < MC_NCELLS; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(MC_EMAIL(TRANSPORT_MAILDIR, EMAIL_REJECTED),
	    MC_EMAILS + TRANSPORT_N * EMAIL_RESULT_N - 1);
}

static void
test_fold_adds_and_zeroes(void **state)
{
	metric_cell cells[MC_NCELLS];
	uint64_t totals[MC_NCELLS];
	int i;

	for (i = 0; i < MC_NCELLS; i++) {
		cells[i] = i + 1;
		totals[i] = 1000;
	}
	metrics_fold(totals, cells);
	for (i = 0; i < MC_NCELLS; i++) {
		assert_int_equal(totals[i], 1000 + i + 1);
		assert_int_equal(cells[i], 0);
	}
	/* Folding zeroes again changes nothing. */
	metrics_fold(totals, cells);
	for (i = 0; i < MC_NCELLS; i++)
		assert_int_equal(totals[i], 1000 + i + 1);
}

static struct supervisor *
make_sup(void)
{
	struct supervisor *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->sb = calloc(1, sizeof(*s->sb));
	assert_non_null(s->sb);
	return s;
}

static void
free_sup(struct supervisor *s)
{
	free(s->sb);
	free(s);
}

/* A "worker" in slot i of pool p, generation bumped as the spawn does. */
static void
spawn(struct supervisor *s, int i, int p)
{
	struct sb_slot *sl = &s->sb->slots[i];

	atomic_fetch_add(&sl->gen, 1);
	atomic_store(&sl->pool, p);
	atomic_store(&sl->state, SB_STARTING);
}

static void
test_fold_slot_generation(void **state)
{
	struct supervisor *s = make_sup();
	struct sb_slot *sl = &s->sb->slots[7];

	spawn(s, 7, 2);
	metric_add(sl->cells, MC_JOBS + JOB_OK, 5);
	metric_add(sl->cells, MC_EMAIL(TRANSPORT_SMTP, EMAIL_SENT), 40);

	metrics_fold_slot(s, 7);
	assert_int_equal(s->totals[2].cells[MC_JOBS + JOB_OK], 5);
	assert_int_equal(s->totals[2].cells[MC_EMAIL(TRANSPORT_SMTP,
	    EMAIL_SENT)], 40);
	assert_int_equal(sl->cells[MC_JOBS + JOB_OK], 0);

	/*
	 * A second fold of the same generation must not count again, even
	 * if the cells were (wrongly) written in between.
	 */
	metric_add(sl->cells, MC_JOBS + JOB_OK, 3);
	metrics_fold_slot(s, 7);
	assert_int_equal(s->totals[2].cells[MC_JOBS + JOB_OK], 5);
	atomic_store(&sl->cells[MC_JOBS + JOB_OK], 0);

	/* The next worker in the slot, of another pool, folds into its own. */
	spawn(s, 7, 3);
	metric_add(sl->cells, MC_JOBS + JOB_OK, 2);
	metrics_fold_slot(s, 7);
	metrics_fold_slot(s, 7);
	assert_int_equal(s->totals[3].cells[MC_JOBS + JOB_OK], 2);
	assert_int_equal(s->totals[2].cells[MC_JOBS + JOB_OK], 5);

	/* Out-of-range slots and a slot never used are harmless. */
	metrics_fold_slot(s, -1);
	metrics_fold_slot(s, SB_MAX_SLOTS);
	metrics_fold_slot(s, 0);
	assert_int_equal(s->totals[0].cells[MC_JOBS + JOB_OK], 0);
	free_sup(s);
}

/* A slot whose pool index is corrupt keeps its cells rather than lose them. */
static void
test_fold_slot_bad_pool(void **state)
{
	struct supervisor *s = make_sup();
	struct sb_slot *sl = &s->sb->slots[1];

	spawn(s, 1, SB_MAX_POOLS + 3);
	metric_add(sl->cells, MC_REDIS_ERRORS, 9);
	metrics_fold_slot(s, 1);
	assert_int_equal(sl->cells[MC_REDIS_ERRORS], 9);
	free_sup(s);
}

/*
 * The exposed _sum of a histogram for a pool, read back exactly as decimal
 * seconds into integer milliseconds (-1 if a digit is past the
 * millisecond, which no sum may have).
 */
static int64_t
exposed_sum_ms(struct supervisor *s, const char *family, const char *pool)
{
	static struct expo_snapshot snap;
	struct evbuffer *b = evbuffer_new();
	char want[256], *body, *p;
	uint64_t sec = 0, ms = 0;
	size_t n;
	int digits = 0;

	expo_snapshot_take(s, &snap);
	expo_format(b, &snap, EXPO_TEXT);
	n = evbuffer_get_length(b);
	body = malloc(n + 1);
	assert_non_null(body);
	evbuffer_remove(b, body, n);
	body[n] = '\0';
	evbuffer_free(b);
	snprintf(want, sizeof(want), "\n%s_sum{pool=\"%s\"} ", family, pool);
	p = strstr(body, want);
	assert_non_null(p);
	p += strlen(want);
	assert_true(*p >= '0' && *p <= '9');
	for (; *p >= '0' && *p <= '9'; p++) {
		assert_true(sec < UINT64_MAX / 10);
		sec = sec * 10 + (*p - '0');
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			ms = ms * 10 + (*p - '0');
		if (digits > 3) {
			free(body);
			return -1;
		}
		for (; digits < 3; digits++)
			ms *= 10;
	}
	assert_true(*p == '\n');
	free(body);
	return (int64_t)(sec * 1000 + ms);
}

/*
 * Emails a year late, observed a hundred thousand times over a worker's
 * life and its successors': 3.2e12 seconds of delay in all, centuries of a
 * large pool's volume at an hour late each.  The exposed _sum is exact at
 * every scrape and never goes down, across the fold of each dead worker's
 * cells into the pool's totals.
 */
#define YEAR_NS (365LL * 86400 * 1000000000LL + 250000000LL)
#define YEAR_MS (365LL * 86400 * 1000LL + 250LL)

static void
test_sum_of_years_exact_across_folds(void **state)
{
	struct supervisor *s = make_sup();
	struct sb_slot *sl;
	int64_t want = 0, got, last = 0;
	int life, k, i;

	strlcpy(s->sb->pools[0].name, "standard", SB_NAME_MAX);
	for (life = 0; life < 10; life++) {
		sl = &s->sb->slots[life % 3];
		spawn(s, life % 3, 0);
		for (k = 0; k < 4; k++) {
			for (i = 0; i < 2500; i++)
				metric_observe(sl->cells, HIST_EMAIL_DELAY,
				    YEAR_NS);
			want += 2500 * YEAR_MS;
			got = exposed_sum_ms(s, "digest_email_delay_seconds",
			    "standard");
			assert_int_equal(got, want);
			assert_true(got >= last);
			last = got;
		}
		/* The worker dies: its cells move to the totals, unchanged. */
		atomic_store(&sl->state, SB_DEAD);
		metrics_fold_slot(s, life % 3);
		got = exposed_sum_ms(s, "digest_email_delay_seconds",
		    "standard");
		assert_int_equal(got, want);
	}
	assert_int_equal(want, 100000 * YEAR_MS);
	/* The other histograms saw none of it. */
	assert_int_equal(exposed_sum_ms(s, "digest_job_duration_seconds",
	    "standard"), 0);
	free_sup(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_observe),
		cmocka_unit_test(test_descriptors_cover_cells),
		cmocka_unit_test(test_fold_adds_and_zeroes),
		cmocka_unit_test(test_fold_slot_generation),
		cmocka_unit_test(test_fold_slot_bad_pool),
		cmocka_unit_test(test_sum_of_years_exact_across_folds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
