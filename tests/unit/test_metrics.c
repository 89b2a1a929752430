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

#include "metrics.h"
#include "scoreboard.h"
#include "supervisor.h"

/* Defined by the supervisor's main; the fold does not use them. */
const char *const restart_reason_names[RESTART_N] = {
	"crash", "oom", "stall", "recycle", "reload",
};
struct supervisor *sup;

static void
test_bounds(void **state)
{
	static const int64_t first[HIST_N] = {
		100000000LL, 1000000000LL, 60000000000LL,
	};
	static const int64_t last[HIST_N] = {
		3600000000000LL, 86400000000000LL, 172800000000000LL,
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
	assert_int_equal(cells[MC_HIST_SUM(HIST_JOB_DURATION)],
	    (uint64_t)(b[0] + b[0] + 1 + b[HIST_NB - 1] + 1));
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
