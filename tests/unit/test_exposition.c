/*
 * The /metrics formatter: number forms (canonical le, NaN and infinities,
 * exact seconds from milliseconds), escaping of HELP and label values,
 * Accept negotiation, and whole bodies in both formats: every series
 * present once, cumulative buckets with +Inf == _count, the OpenMetrics
 * _total and # EOF rules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "exposition.h"
#include "sampler.h"

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
assert_le(double v, const char *want)
{
	char buf[EXPO_NUM_MAX];

	expo_fmt_le(buf, v);
	assert_string_equal(buf, want);
}

static void
test_fmt_le(void **state)
{
	assert_le(0.1, "0.1");
	assert_le(0.25, "0.25");
	assert_le(1, "1.0");
	assert_le(2.5, "2.5");
	assert_le(60, "60.0");
	assert_le(3600, "3600.0");
	assert_le(172800, "172800.0");
	assert_le(999999, "999999.0");
	assert_le(1e6, "1e+06");
	assert_le(1.5e6, "1.5e+06");
	assert_le(1e-5, "1e-05");
	assert_le(0.0001, "0.0001");
	assert_le(0.005, "0.005");
	assert_le(123456.789, "123456.789");
	assert_le(0, "0.0");
	assert_le(INFINITY, "+Inf");
	/* Every bound of our tables comes out the same way. */
	assert_le(metrics_hist_bounds_ns[HIST_JOB_DURATION][0] / 1e9, "0.1");
	assert_le(metrics_hist_bounds_ns[HIST_EMAIL_DELAY][HIST_NB - 1] / 1e9,
	    "172800.0");
}

static void
assert_double(double v, const char *want)
{
	char buf[EXPO_NUM_MAX];

	expo_fmt_double(buf, v);
	assert_string_equal(buf, want);
}

static void
test_fmt_double(void **state)
{
	assert_double(NAN, "NaN");
	assert_double(INFINITY, "+Inf");
	assert_double(-INFINITY, "-Inf");
	assert_double(0, "0");
	assert_double(-0.0, "0");
	assert_double(42, "42");
	assert_double(-3, "-3");
	assert_double(1.5, "1.5");
	assert_double(0.1, "0.1");
	assert_double(1795969179.505079, "1795969179.505079");
	assert_double(1e300, "1e+300");
	assert_double(1.0 / 3, "0.3333333333333333");
}

static void
assert_ms(uint64_t ms, const char *want)
{
	char buf[EXPO_NUM_MAX];

	expo_fmt_ms(buf, ms);
	assert_string_equal(buf, want);
}

static void
test_fmt_ms(void **state)
{
	assert_ms(0, "0");
	assert_ms(1, "0.001");
	assert_ms(10, "0.01");
	assert_ms(1500, "1.5");
	assert_ms(3000, "3");
	assert_ms(123456, "123.456");
	/* A year late, a hundred thousand times, and the largest sum. */
	assert_ms(100000ULL * 31536000250ULL, "3153600025000");
	assert_ms(UINT64_MAX, "18446744073709551.615");
}

static char *
drain(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	assert_non_null(s);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static void
test_escape(void **state)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	expo_escape_label(b, "a\\b\"c\nd\te");
	s = drain(b);
	assert_string_equal(s, "a\\\\b\\\"c\\nd\te");
	free(s);

	expo_escape_help(b, "x\\y\n\"z\"", EXPO_TEXT);
	s = drain(b);
	assert_string_equal(s, "x\\\\y\\n\"z\"");
	free(s);

	expo_escape_help(b, "x\\y\n\"z\"", EXPO_OPENMETRICS);
	s = drain(b);
	assert_string_equal(s, "x\\\\y\\n\\\"z\\\"");
	free(s);
	evbuffer_free(b);
}

static void
test_negotiate(void **state)
{
	assert_int_equal(expo_negotiate(NULL), EXPO_TEXT);
	assert_int_equal(expo_negotiate(""), EXPO_TEXT);
	assert_int_equal(expo_negotiate("*/*"), EXPO_TEXT);
	assert_int_equal(expo_negotiate("text/plain;version=0.0.4"), EXPO_TEXT);
	/* What Prometheus 2.x sends. */
	assert_int_equal(expo_negotiate("application/openmetrics-text;"
	    "version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
	    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), EXPO_OPENMETRICS);
	assert_int_equal(expo_negotiate("application/openmetrics-text"),
	    EXPO_OPENMETRICS);
	assert_int_equal(expo_negotiate("application/openmetrics-text; "
	    "version=1.0.0; charset=utf-8"), EXPO_OPENMETRICS);
	assert_int_equal(expo_negotiate("application/openmetrics-text;"
	    "version=0.0.1"), EXPO_TEXT);
	assert_int_equal(expo_negotiate("application/openmetrics-text;q=0.2, "
	    "text/plain;q=0.9"), EXPO_TEXT);
	assert_int_equal(expo_negotiate("application/openmetrics-text;q=0"),
	    EXPO_TEXT);
	assert_string_equal(expo_content_type(EXPO_TEXT),
	    "text/plain; version=0.0.4; charset=utf-8");
	assert_string_equal(expo_content_type(EXPO_OPENMETRICS),
	    "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

/* A snapshot with two pools, one with an awkward name, and data. */
static void
fill_snapshot(struct expo_snapshot *snap)
{
	int p, i, h;

	memset(snap, 0, sizeof(*snap));
	snap->version = "1.2.3";
	snap->npools = 2;
	strlcpy(snap->pools[0].name, "priority", SB_NAME_MAX);
	strlcpy(snap->pools[1].name, "we\"ird\\po\nol", SB_NAME_MAX);
	for (p = 0; p < 2; p++) {
		for (i = 0; i < MC_NCELLS; i++)
			snap->pools[p].cells[i] = (i * 7 + p) % 5;
		for (h = 0; h < HIST_N; h++)
			snap->pools[p].cells[MC_HIST_SUM(h)] = 1234567890123ULL;
		for (i = 0; i < RESTART_N; i++)
			snap->pools[p].restarts[i] = i;
		snap->pools[p].workers[1] = 3;
		snap->pools[p].max_rss = 1 << 20;
	}
	snap->nqueues = 2;
	strlcpy(snap->queues[0].name, "priority", SB_NAME_MAX);
	strlcpy(snap->queues[1].name, "standard", SB_NAME_MAX);
	snap->queues[0].depth = 10;
	snap->queues[1].pending = NAN;
	snap->dead_letters = 4;
	snap->sampled_at = 1764374395;
	snap->sched_last_success[0] = 1764374400;
	snap->reloads_ok = 2;
	snap->last_reload_ok = 1764374400.25;
	snap->proc.cpu_seconds = 0.5;
	snap->proc.max_fds = -1;
}

static char *
render(const struct expo_snapshot *snap, enum expo_format fmt)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	expo_format(b, snap, fmt);
	s = drain(b);
	evbuffer_free(b);
	return s;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Split into lines (in place); returns the number of sample lines. */
static int
sample_lines(char *body, char **out, int max)
{
	char *line, *save;
	int n = 0;

	for (line = strtok_r(body, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			continue;
		assert_true(n < max);
		out[n++] = line;
	}
	return n;
}

/* The series key of a sample line: everything before the value. */
static char *
series_key(const char *line)
{
	const char *sp = strrchr(line, ' ');

	assert_non_null(sp);
	return strndup(line, sp - line);
}

static int
expected_series(int npools, int nqueues)
{
	int d, n = 0, per;

	for (d = 0; d < metrics_ndesc; d++) {
		if (metrics_desc[d].type == METRIC_HISTOGRAM) {
			per = HIST_NB + 1 + 2;
		} else {
			per = 1;
			for (int i = 0; i < metrics_desc[d].ndims; i++)
				per *= metrics_desc[d].dims[i].n;
		}
		n += per * npools;
	}
	n += 1;				/* build_info */
	n += npools * EXPO_NSTATES;	/* workers */
	n += npools * RESTART_N;	/* restarts */
	n += npools;			/* memory */
	n += 5 * nqueues;		/* depth, pending, oldest, delayed, paused */
	n += 1 + 2 + 1;			/* dead letters, schedule, sampled */
	n += 2 + 1;			/* reloads, last reload */
	n += 6;				/* process_* */
	return n;
}

static void
check_body(char *body, enum expo_format fmt, const struct expo_snapshot *snap)
{
	static char *lines[8192];
	char **keys;
	int n, i;

	n = sample_lines(body, lines, 8192);
	assert_int_equal(n, expected_series(snap->npools, snap->nqueues));
	keys = calloc(n, sizeof(*keys));
	for (i = 0; i < n; i++)
		keys[i] = series_key(lines[i]);
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 1; i < n; i++)
		if (strcmp(keys[i - 1], keys[i]) == 0)
			fail_msg("duplicate series %s", keys[i]);
	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

/*
 * Walk a histogram's buckets for one pool: cumulative, canonical le
 * values, +Inf equal to _count.
 */
static void
check_histogram(const char *body, const char *name, const char *pool_lbl,
    const uint64_t *cells)
{
	char want[512], le[EXPO_NUM_MAX];
	uint64_t cum = 0;
	const char *p;
	int i, h;

	for (h = 0; h < metrics_ndesc; h++)
		if (strcmp(metrics_desc[h].name, name) == 0)
			break;
	assert_true(h < metrics_ndesc);
	h = metrics_desc[h].hist;
	for (i = 0; i <= HIST_NB; i++) {
		cum += cells[i];
		if (i < HIST_NB)
			expo_fmt_le(le, metrics_hist_bounds_ns[h][i] / 1e9);
		else
			strlcpy(le, "+Inf", sizeof(le));
		snprintf(want, sizeof(want),
		    "\n%s_bucket{pool=\"%s\",le=\"%s\"} %llu\n", name,
		    pool_lbl, le, (unsigned long long)cum);
		if ((p = strstr(body, want)) == NULL)
			fail_msg("missing %s", want);
	}
	snprintf(want, sizeof(want), "\n%s_count{pool=\"%s\"} %llu\n", name,
	    pool_lbl, (unsigned long long)cum);
	assert_non_null(strstr(body, want));
	snprintf(want, sizeof(want), "\n%s_sum{pool=\"%s\"} 1234567890.123\n",
	    name, pool_lbl);
	assert_non_null(strstr(body, want));
}

static void
test_body_text(void **state)
{
	static struct expo_snapshot snap;
	char *body, *copy;
	const char *weird = "we\\\"ird\\\\po\\nol";
	char want[256];
	int i;

	fill_snapshot(&snap);
	body = render(&snap, EXPO_TEXT);
	assert_non_null(strstr(body, "# TYPE digest_jobs_total counter\n"));
	assert_non_null(strstr(body,
	    "# TYPE digest_job_duration_seconds histogram\n"));
	assert_non_null(strstr(body,
	    "\ndigest_build_info{version=\"1.2.3\"} 1\n"));
	assert_non_null(strstr(body, "\ndigest_workers{pool=\"priority\","
	    "state=\"idle\"} 3\n"));
	assert_non_null(strstr(body, "\ndigest_worker_restarts_total{pool=\""
	    "priority\",reason=\"reload\"} 4\n"));
	assert_non_null(strstr(body, "\ndigest_queue_pending{queue="
	    "\"standard\"} NaN\n"));
	assert_non_null(strstr(body, "\nprocess_max_fds +Inf\n"));
	assert_non_null(strstr(body, "\ndigest_config_last_reload_success_"
	    "timestamp_seconds 1764374400.25\n"));
	assert_non_null(strstr(body, "\ndigest_schedule_last_success_"
	    "timestamp_seconds{period=\"daily\"} 1764374400\n"));
	assert_null(strstr(body, "# EOF"));
	/* Rejects by class: one counter per class, read from its cell. */
	assert_non_null(strstr(body,
	    "# TYPE digest_emails_rejected_total counter\n"));
	for (i = 0; i < REJECT_CLASS_N; i++) {
		snprintf(want, sizeof(want), "\ndigest_emails_rejected_total{"
		    "pool=\"priority\",class=\"%s\"} %llu\n",
		    metrics_reject_class_names[i],
		    (unsigned long long)snap.pools[0].cells[MC_REJECTS + i]);
		assert_non_null(strstr(body, want));
	}
	check_histogram(body, "digest_job_duration_seconds", "priority",
	    &snap.pools[0].cells[MC_HIST_BASE(HIST_JOB_DURATION)]);
	check_histogram(body, "digest_email_delay_seconds", weird,
	    &snap.pools[1].cells[MC_HIST_BASE(HIST_EMAIL_DELAY)]);
	copy = strdup(body);
	check_body(copy, EXPO_TEXT, &snap);
	free(copy);
	free(body);
}

static void
test_body_openmetrics(void **state)
{
	static struct expo_snapshot snap;
	char *body;
	size_t n;

	fill_snapshot(&snap);
	body = render(&snap, EXPO_OPENMETRICS);
	n = strlen(body);
	assert_true(n > 6);
	assert_string_equal(body + n - 6, "# EOF\n");
	/* Counter families are named without _total, samples with it. */
	assert_non_null(strstr(body, "# TYPE digest_jobs counter\n"));
	assert_null(strstr(body, "# TYPE digest_jobs_total"));
	assert_non_null(strstr(body, "\ndigest_jobs_total{pool=\"priority\","
	    "result=\"ok\"} "));
	assert_non_null(strstr(body, "# TYPE process_cpu_seconds counter\n"));
	assert_non_null(strstr(body, "\nprocess_cpu_seconds_total 0.5\n"));
	check_histogram(body, "digest_job_queue_wait_seconds", "priority",
	    &snap.pools[0].cells[MC_HIST_BASE(HIST_QUEUE_WAIT)]);
	check_body(body, EXPO_OPENMETRICS, &snap);
	free(body);
}

/* With no pool and no queue yet, the body is still complete and valid. */
static void
test_body_empty(void **state)
{
	static struct expo_snapshot snap;
	char *body;

	memset(&snap, 0, sizeof(snap));
	snap.version = "0";
	body = render(&snap, EXPO_TEXT);
	check_body(body, EXPO_TEXT, &snap);
	free(body);
}

/*
 * The snapshot: retired totals plus every slot's live cells, per pool;
 * worker states and the largest RSS from live slots only; a retired pool
 * kept, a configured one not registered yet added; queues from the
 * configuration and from the sampler, an unknown pending as NaN.
 */
static void
test_snapshot(void **state)
{
	static struct supervisor s;
	static struct config cfg;
	static struct expo_snapshot snap;
	struct sb_stats st;
	struct sb_slot *sl;
	int i;

	memset(&s, 0, sizeof(s));
	memset(&cfg, 0, sizeof(cfg));
	s.sb = calloc(1, sizeof(*s.sb));
	assert_non_null(s.sb);
	s.cfg = &cfg;
	cfg.npools = 2;
	strlcpy(cfg.pools[0].name, "priority", CONFIG_NAME_MAX);
	strlcpy(cfg.pools[0].queue, "priority", CONFIG_NAME_MAX);
	strlcpy(cfg.pools[1].name, "fresh", CONFIG_NAME_MAX);
	strlcpy(cfg.pools[1].queue, "fresh", CONFIG_NAME_MAX);
	/* Registry: 0 priority, 1 retired (no longer configured). */
	strlcpy(s.sb->pools[0].name, "priority", SB_NAME_MAX);
	strlcpy(s.sb->pools[1].name, "retired", SB_NAME_MAX);
	s.totals[0].cells[MC_JOBS + JOB_OK] = 100;
	s.totals[0].restarts[RESTART_OOM] = 2;
	s.totals[1].cells[MC_JOBS + JOB_OK] = 7;

	/* Slot 0: busy priority worker; 1: dead, not folded yet; 2: free. */
	sl = &s.sb->slots[0];
	atomic_store(&sl->pool, 0);
	atomic_store(&sl->state, SB_BUSY);
	atomic_store(&sl->rss_bytes, 5000);
	atomic_store(&sl->cells[MC_JOBS + JOB_OK], 3);
	sl = &s.sb->slots[1];
	atomic_store(&sl->gen, 1);
	atomic_store(&sl->pool, 0);
	atomic_store(&sl->state, SB_DEAD);
	atomic_store(&sl->rss_bytes, 9000);
	atomic_store(&sl->cells[MC_JOBS + JOB_OK], 4);
	sl = &s.sb->slots[2];
	atomic_store(&sl->pool, 1);
	atomic_store(&sl->state, SB_IDLE);
	atomic_store(&sl->rss_bytes, 1234);

	memset(&st, 0, sizeof(st));
	st.nqueues = 2;
	strlcpy(st.queues[0].name, "priority", SB_NAME_MAX);
	st.queues[0].depth = 12;
	st.queues[0].pending = -1;
	strlcpy(st.queues[1].name, "gone", SB_NAME_MAX);
	st.queues[1].depth = 1;
	st.dead_letters = 5;
	st.sched_last_success[1] = 1764374400;
	sb_stats_write(s.sb, &st);
	s.reloads_ok = 3;

	expo_snapshot_take(&s, &snap);
	assert_int_equal(snap.npools, 3);
	assert_string_equal(snap.pools[0].name, "priority");
	assert_string_equal(snap.pools[1].name, "retired");
	assert_string_equal(snap.pools[2].name, "fresh");
	assert_int_equal(snap.pools[0].cells[MC_JOBS + JOB_OK], 100 + 3 + 4);
	assert_int_equal(snap.pools[0].restarts[RESTART_OOM], 2);
	assert_int_equal(snap.pools[0].workers[SB_BUSY - SB_STARTING], 1);
	assert_int_equal(snap.pools[0].max_rss, 5000);
	assert_int_equal(snap.pools[1].cells[MC_JOBS + JOB_OK], 7);
	assert_int_equal(snap.pools[1].workers[SB_IDLE - SB_STARTING], 1);
	assert_int_equal(snap.pools[2].cells[MC_JOBS + JOB_OK], 0);
	for (i = 0; i < EXPO_NSTATES; i++)
		assert_int_equal(snap.pools[2].workers[i], 0);

	assert_int_equal(snap.nqueues, 3);
	assert_string_equal(snap.queues[0].name, "priority");
	assert_true(snap.queues[0].depth == 12);
	assert_true(isnan(snap.queues[0].pending));
	/* Configured, never sampled: unknown, not 0. */
	assert_string_equal(snap.queues[1].name, "fresh");
	assert_true(isnan(snap.queues[1].depth));
	assert_true(isnan(snap.queues[1].pending));
	assert_string_equal(snap.queues[2].name, "gone");
	assert_true(snap.dead_letters == 5);
	assert_true(snap.sched_last_success[0] == 0);
	assert_true(snap.sched_last_success[1] == 1764374400);
	assert_int_equal(snap.reloads_ok, 3);
	assert_true(snap.proc.ok);
	assert_true(snap.proc.open_fds > 0);

	/* The fold moves cells without changing what a scrape shows. */
	metrics_fold_slot(&s, 1);
	assert_int_equal(s.totals[0].cells[MC_JOBS + JOB_OK], 104);
	assert_int_equal(s.sb->slots[1].cells[MC_JOBS + JOB_OK], 0);
	expo_snapshot_take(&s, &snap);
	assert_int_equal(snap.pools[0].cells[MC_JOBS + JOB_OK], 107);
	metrics_fold_slot(&s, 1);
	expo_snapshot_take(&s, &snap);
	assert_int_equal(snap.pools[0].cells[MC_JOBS + JOB_OK], 107);
	free(s.sb);
}

/*
 * A sampler killed as it published its figures leaves them torn: a scrape
 * must not wait for the end of that write.  It shows the last good figures
 * it read, or unknown when it never read any (null in /status, 0 in
 * /metrics, where every series is present from the first scrape); the reaping
 * puts the good figures back.  A worker's torn job in hand shows in
 * /status as unknown.  The segments are static so that no other test's
 * segment shares their address.
 */
static void
test_snapshot_torn_records(void **state)
{
	static struct scoreboard seg_a, seg_b;
	static struct supervisor s;
	static struct config cfg;
	static struct expo_snapshot snap;
	struct evbuffer *b;
	struct sb_stats st;
	struct sb_slot *sl;
	char *body;

	memset(&s, 0, sizeof(s));
	memset(&cfg, 0, sizeof(cfg));
	s.cfg = &cfg;
	cfg.npools = 1;
	strlcpy(cfg.pools[0].name, "priority", CONFIG_NAME_MAX);
	strlcpy(cfg.pools[0].queue, "priority", CONFIG_NAME_MAX);
	s.sb = &seg_a;
	strlcpy(seg_a.pools[0].name, "priority", SB_NAME_MAX);
	memset(&st, 0, sizeof(st));
	st.nqueues = 1;
	strlcpy(st.queues[0].name, "priority", SB_NAME_MAX);
	st.queues[0].depth = 12;
	st.queues[0].pending = 2;
	st.dead_letters = 5;
	st.sampled_at = 1764374400;
	sb_stats_write(&seg_a, &st);
	expo_snapshot_take(&s, &snap);
	assert_true(snap.queues[0].depth == 12);

	/* Torn, its writer stopped or dead: the last good figures, at once. */
	atomic_fetch_add(&seg_a.stats.seq, 1);
	memset(&seg_a.stats.queues, 0xa5, sizeof(seg_a.stats.queues));
	alarm(5);
	expo_snapshot_take(&s, &snap);
	alarm(0);
	assert_int_equal(snap.nqueues, 1);
	assert_true(snap.queues[0].depth == 12);
	assert_true(snap.queues[0].pending == 2);
	assert_true(snap.dead_letters == 5);
	assert_true(snap.sampled_at == 1764374400);

	/* The sampler is reaped: the segment holds the good figures again. */
	s.sampler_pid = 4242;
	sampler_reaped(&s, 4242, SIGKILL);
	assert_int_equal(s.sampler_pid, 0);
	assert_int_equal(sb_stats_read(&seg_a, &st), 0);
	assert_true(st.queues[0].depth == 12);
	assert_string_equal(st.queues[0].name, "priority");

	/* Torn before the supervisor ever read them: unknown, not garbage. */
	s.sb = &seg_b;
	strlcpy(seg_b.pools[0].name, "priority", SB_NAME_MAX);
	atomic_fetch_add(&seg_b.stats.seq, 1);
	memset(&seg_b.stats.queues, 0xa5, sizeof(seg_b.stats.queues));
	sl = &seg_b.slots[0];
	atomic_store(&sl->pool, 0);
	atomic_store(&sl->pid, 4343);
	atomic_store(&sl->state, SB_BUSY);
	atomic_fetch_add(&sl->job_seq, 1);
	memset(&sl->job, 0xa5, sizeof(sl->job));
	alarm(5);
	expo_snapshot_take(&s, &snap);
	assert_int_equal(snap.nqueues, 1);
	assert_true(isnan(snap.queues[0].depth));
	assert_true(isnan(snap.queues[0].pending));
	assert_true(isnan(snap.dead_letters));
	assert_true(snap.sampled_at == 0);
	/* /metrics: present as 0 until a first sample; /status: null. */
	body = render(&snap, EXPO_TEXT);
	assert_non_null(strstr(body, "\ndigest_queue_depth{queue="
	    "\"priority\"} 0\n"));
	assert_non_null(strstr(body, "\ndigest_dead_letters 0\n"));
	free(body);
	b = evbuffer_new();
	status_render_json(b, &s);
	body = drain(b);
	assert_non_null(strstr(body, "\"depth\": null"));
	assert_non_null(strstr(body, "\"dead_letters\": null"));
	assert_non_null(strstr(body, "\"job\": null"));
	assert_non_null(strstr(body, "\"job_unknown\": true"));
	free(body);
	status_render_html(b, &s);
	body = drain(b);
	assert_non_null(strstr(body, "<td>(unknown)</td>"));
	free(body);
	evbuffer_free(b);
	alarm(0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fmt_le),
		cmocka_unit_test(test_fmt_double),
		cmocka_unit_test(test_fmt_ms),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_negotiate),
		cmocka_unit_test(test_body_text),
		cmocka_unit_test(test_body_openmetrics),
		cmocka_unit_test(test_body_empty),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_snapshot_torn_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
