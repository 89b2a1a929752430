/*
 * The /metrics body: every series of docs/design.md#http-endpoint-and-metrics,
 * built from a snapshot in the Prometheus text format 0.0.4 or in OpenMetrics
 * 1.0.0.
 *
 * The snapshot adds each slot's live cells to its pool's retired totals;
 * since the fold moves a dead worker's cells into the totals and zeroes
 * them in the same turn of the loop that takes snapshots, a scrape sees
 * each event exactly once, before and after its worker dies.  Every pool
 * and label value is written from the first scrape on, as 0 when nothing
 * happened yet, so that rate() and absent() behave from the start.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "exposition.h"
#include "sampler.h"
#include "util.h"

static const char *const expo_state_names[EXPO_NSTATES] = {
	"starting", "idle", "busy", "draining",
};

static const char *const expo_period_names[2] = { "daily", "weekly" };

struct expo_label {
	const char *name;
	const char *value;
};

/* The shortest %.Ng that reads back as v. */
static size_t
expo_shortest(char *buf, double v, char conv)
{
	char fmt[16];
	int prec, n = 0;

	for (prec = 1; prec <= 17; prec++) {
		snprintf(fmt, sizeof(fmt), "%%.%d%c", prec, conv);
		n = snprintf(buf, EXPO_NUM_MAX, fmt, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return n;
}

size_t
expo_fmt_double(char *buf, double v)
{
	if (isnan(v))
		return strlcpy(buf, "NaN", EXPO_NUM_MAX);
	if (isinf(v))
		return strlcpy(buf, v > 0 ? "+Inf" : "-Inf", EXPO_NUM_MAX);
	if (v == 0)
		return strlcpy(buf, "0", EXPO_NUM_MAX);
	if (fabs(v) < 1e15 && v == (double)(int64_t)v)
		return snprintf(buf, EXPO_NUM_MAX, "%" PRId64, (int64_t)v);
	return expo_shortest(buf, v, 'g');
}

size_t
expo_fmt_ms(char *buf, uint64_t ms)
{
	uint64_t sec = ms / 1000, frac = ms % 1000;
	int n;

	if (frac == 0)
		return snprintf(buf, EXPO_NUM_MAX, "%" PRIu64, sec);
	n = snprintf(buf, EXPO_NUM_MAX, "%" PRIu64 ".%03" PRIu64, sec, frac);
	while (buf[n - 1] == '0')
		buf[--n] = '\0';
	return n;
}

/*
 * The canonical form of bucket bounds used by the client libraries (and
 * by Prometheus when it normalises le): the shortest round-trip digits,
 * ".0" on whole numbers, and an exponent from 1e+06 up or below 1e-04.
 */
size_t
expo_fmt_le(char *buf, double v)
{
	char e[EXPO_NUM_MAX], digits[EXPO_NUM_MAX], *p;
	int exp10, nd, n, i;

	if (isnan(v) || isinf(v) || v == 0)
		return v == 0 ? strlcpy(buf, "0.0", EXPO_NUM_MAX) :
		    expo_fmt_double(buf, v);
	expo_shortest(e, v, 'e');
	/* e is [-]d[.ddd]e[+-]XX: collect the digits and the exponent. */
	p = e;
	n = 0;
	if (*p == '-')
		buf[n++] = *p++;
	nd = 0;
	for (; *p != 'e'; p++)
		if (*p != '.')
			digits[nd++] = *p;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	exp10 = atoi(p + 1);
	if (exp10 >= 6 || exp10 < -4) {
		buf[n++] = digits[0];
		if (nd > 1) {
			buf[n++] = '.';
			for (i = 1; i < nd; i++)
				buf[n++] = digits[i];
		}
		n += snprintf(buf + n, EXPO_NUM_MAX - n, "e%c%02d",
		    exp10 < 0 ? '-' : '+', abs(exp10));
		return n;
	}
	if (exp10 < 0) {
		buf[n++] = '0';
		buf[n++] = '.';
		for (i = -1; i > exp10; i--)
			buf[n++] = '0';
		for (i = 0; i < nd; i++)
			buf[n++] = digits[i];
	} else {
		for (i = 0; i <= exp10; i++)
			buf[n++] = i < nd ? digits[i] : '0';
		buf[n++] = '.';
		if (nd > exp10 + 1)
			for (i = exp10 + 1; i < nd; i++)
				buf[n++] = digits[i];
		else
			buf[n++] = '0';
	}
	buf[n] = '\0';
	return n;
}

/*
 * The body is assembled in a buffer of our own and handed to the evbuffer
 * in large pieces: a sample line is a dozen small appends, and evbuffer's
 * per-call cost would be most of a scrape's CPU.
 */
struct expo_out {
	struct evbuffer *b;
	size_t n;
	char buf[16384];
};

static void
out_flush(struct expo_out *o)
{
	if (o->n > 0)
		evbuffer_add(o->b, o->buf, o->n);
	o->n = 0;
}

static void
out_add(struct expo_out *o, const char *p, size_t len)
{
	if (o->n + len > sizeof(o->buf)) {
		out_flush(o);
		if (len > sizeof(o->buf)) {
			evbuffer_add(o->b, p, len);
			return;
		}
	}
	memcpy(o->buf + o->n, p, len);
	o->n += len;
}

static void
out_str(struct expo_out *o, const char *s)
{
	out_add(o, s, strlen(s));
}

static void
out_escape_label(struct expo_out *o, const char *s)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		if (*s != '\\' && *s != '"' && *s != '\n')
			continue;
		out_add(o, run, s - run);
		out_add(o, *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" :
		    "\\n", 2);
		run = s + 1;
	}
	out_add(o, run, s - run);
}

/* The text format escapes \ and newline in HELP; OpenMetrics also ". */
static void
out_escape_help(struct expo_out *o, const char *s, enum expo_format fmt)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		if (*s != '\\' && *s != '\n' &&
		    (*s != '"' || fmt != EXPO_OPENMETRICS))
			continue;
		out_add(o, run, s - run);
		out_add(o, *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" :
		    "\\n", 2);
		run = s + 1;
	}
	out_add(o, run, s - run);
}

void
expo_escape_label(struct evbuffer *b, const char *s)
{
	static struct expo_out o;

	o.b = b;
	o.n = 0;
	out_escape_label(&o, s);
	out_flush(&o);
}

void
expo_escape_help(struct evbuffer *b, const char *s, enum expo_format fmt)
{
	static struct expo_out o;

	o.b = b;
	o.n = 0;
	out_escape_help(&o, s, fmt);
	out_flush(&o);
}

static const char *const expo_type_names[] = {
	[METRIC_COUNTER] = "counter",
	[METRIC_GAUGE] = "gauge",
	[METRIC_HISTOGRAM] = "histogram",
};

/*
 * # HELP and # TYPE of a family.  name is the family's: for a counter the
 * text format names the family with its _total, OpenMetrics without.
 */
static void
expo_header(struct expo_out *o, enum expo_format fmt, const char *name,
    const char *help, enum metric_type type)
{
	const char *suffix = "";

	if (type == METRIC_COUNTER && fmt == EXPO_TEXT)
		suffix = "_total";
	out_str(o, "# HELP ");
	out_str(o, name);
	out_str(o, suffix);
	out_add(o, " ", 1);
	out_escape_help(o, help, fmt);
	out_str(o, "\n# TYPE ");
	out_str(o, name);
	out_str(o, suffix);
	out_add(o, " ", 1);
	out_str(o, expo_type_names[type]);
	out_add(o, "\n", 1);
}

static void
expo_sample(struct expo_out *o, const char *name, const char *suffix,
    const struct expo_label *l, int nl, const char *value)
{
	int i;

	out_str(o, name);
	out_str(o, suffix);
	if (nl > 0) {
		out_add(o, "{", 1);
		for (i = 0; i < nl; i++) {
			if (i > 0)
				out_add(o, ",", 1);
			out_str(o, l[i].name);
			out_add(o, "=\"", 2);
			out_escape_label(o, l[i].value);
			out_add(o, "\"", 1);
		}
		out_add(o, "}", 1);
	}
	out_add(o, " ", 1);
	out_str(o, value);
	out_add(o, "\n", 1);
}

static void
expo_sample_u64(struct expo_out *o, const char *name, const char *suffix,
    const struct expo_label *l, int nl, uint64_t v)
{
	char num[EXPO_NUM_MAX], *p = num + sizeof(num);

	/* Counters are most of the body: no printf for them. */
	*--p = '\0';
	do {
		*--p = '0' + v % 10;
		v /= 10;
	} while (v != 0);
	expo_sample(o, name, suffix, l, nl, p);
}

static void
expo_sample_double(struct expo_out *o, const char *name, const char *suffix,
    const struct expo_label *l, int nl, double v)
{
	char num[EXPO_NUM_MAX];

	expo_fmt_double(num, v);
	expo_sample(o, name, suffix, l, nl, num);
}

/* _bucket (cumulative), _sum and _count of one histogram's cells. */
static void
expo_histogram(struct expo_out *o, const char *name, struct expo_label *l,
    int nl, const uint64_t *cells, int hist)
{
	/* The bounds never change: format them once. */
	static char le[HIST_N][HIST_NB + 1][EXPO_NUM_MAX];
	static int le_ready;
	char sum[EXPO_NUM_MAX];
	uint64_t cum = 0;
	int h, i;

	if (!le_ready) {
		for (h = 0; h < HIST_N; h++) {
			for (i = 0; i < HIST_NB; i++)
				expo_fmt_le(le[h][i],
				    metrics_hist_bounds_ns[h][i] / 1e9);
			strlcpy(le[h][HIST_NB], "+Inf", EXPO_NUM_MAX);
		}
		le_ready = 1;
	}
	l[nl].name = "le";
	for (i = 0; i <= HIST_NB; i++) {
		cum += cells[i];
		l[nl].value = le[hist][i];
		expo_sample_u64(o, name, "_bucket", l, nl + 1, cum);
	}
	/* Exact decimal seconds: a float would drop digits, then go down. */
	expo_fmt_ms(sum, cells[HIST_NB + 1]);
	expo_sample(o, name, "_sum", l, nl, sum);
	expo_sample_u64(o, name, "_count", l, nl, cum);
}

/* One family of the cell table, for every pool and label combination. */
static void
expo_cell_family(struct expo_out *o, enum expo_format fmt,
    const struct expo_snapshot *snap, const struct metric_desc *d)
{
	struct expo_label l[1 + METRIC_MAX_DIMS + 1];
	const char *suffix = d->type == METRIC_COUNTER ? "_total" : "";
	int p, i0, i1, n0, n1;

	expo_header(o, fmt, d->name, d->help, d->type);
	n0 = d->ndims > 0 ? d->dims[0].n : 1;
	n1 = d->ndims > 1 ? d->dims[1].n : 1;
	for (p = 0; p < snap->npools; p++) {
		l[0].name = "pool";
		l[0].value = snap->pools[p].name;
		if (d->type == METRIC_HISTOGRAM) {
			expo_histogram(o, d->name, l, 1,
			    &snap->pools[p].cells[d->base], d->hist);
			continue;
		}
		for (i0 = 0; i0 < n0; i0++) {
			for (i1 = 0; i1 < n1; i1++) {
				if (d->ndims > 0) {
					l[1].name = d->dims[0].label;
					l[1].value = d->dims[0].values[i0];
				}
				if (d->ndims > 1) {
					l[2].name = d->dims[1].label;
					l[2].value = d->dims[1].values[i1];
				}
				expo_sample_u64(o, d->name, suffix, l,
				    1 + d->ndims,
				    snap->pools[p].cells[d->base + i0 * n1 + i1]);
			}
		}
	}
}

static void
expo_gauge1(struct expo_out *o, enum expo_format fmt, const char *name,
    const char *help, double v)
{
	expo_header(o, fmt, name, help, METRIC_GAUGE);
	expo_sample_double(o, name, "", NULL, 0, v);
}

static void
expo_supervisor_families(struct expo_out *o, enum expo_format fmt,
    const struct expo_snapshot *snap)
{
	struct expo_label l[2];
	int p, i;

	expo_header(o, fmt, "digest_build_info",
	    "The version of digestd running, as a label; the value is 1.",
	    METRIC_GAUGE);
	l[0].name = "version";
	l[0].value = snap->version;
	expo_sample(o, "digest_build_info", "", l, 1, "1");

	expo_header(o, fmt, "digest_workers",
	    "Live workers of the pool, by state.", METRIC_GAUGE);
	for (p = 0; p < snap->npools; p++) {
		l[0].name = "pool";
		l[0].value = snap->pools[p].name;
		l[1].name = "state";
		for (i = 0; i < EXPO_NSTATES; i++) {
			l[1].value = expo_state_names[i];
			expo_sample_u64(o, "digest_workers", "", l, 2,
			    snap->pools[p].workers[i]);
		}
	}

	expo_header(o, fmt, "digest_worker_restarts",
	    "Workers replaced, by reason.", METRIC_COUNTER);
	for (p = 0; p < snap->npools; p++) {
		l[0].name = "pool";
		l[0].value = snap->pools[p].name;
		l[1].name = "reason";
		for (i = 0; i < RESTART_N; i++) {
			l[1].value = restart_reason_names[i];
			expo_sample_u64(o, "digest_worker_restarts", "_total",
			    l, 2, snap->pools[p].restarts[i]);
		}
	}

	expo_header(o, fmt, "digest_worker_memory_bytes",
	    "Largest resident set size among the pool's live workers.",
	    METRIC_GAUGE);
	for (p = 0; p < snap->npools; p++) {
		l[0].name = "pool";
		l[0].value = snap->pools[p].name;
		expo_sample_u64(o, "digest_worker_memory_bytes", "", l, 1,
		    snap->pools[p].max_rss);
	}
}

/*
 * Every series is present as 0 from the first scrape on, before the sampler
 * has read anything (/status says null meanwhile); once it has, a figure
 * it cannot tell (an AMQP queue's unacknowledged count) stays NaN.
 */
static double
expo_unsampled(const struct expo_snapshot *snap, double v)
{
	return isnan(v) && snap->sampled_at == 0 ? 0 : v;
}

static void
expo_queue_families(struct expo_out *o, enum expo_format fmt,
    const struct expo_snapshot *snap)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} qf[] = {
		{ "digest_queue_depth", "Jobs in the queue not yet delivered "
		    "to a worker.", offsetof(struct expo_queue, depth) },
		{ "digest_queue_pending", "Jobs delivered to a worker and not "
		    "yet acknowledged.", offsetof(struct expo_queue, pending) },
		{ "digest_queue_oldest_enqueued_timestamp_seconds",
		    "Enqueue time of the oldest job waiting in the queue; 0 "
		    "when it is empty.",
		    offsetof(struct expo_queue, oldest_enqueued) },
		{ "digest_queue_delayed", "Jobs waiting in the queue's delayed "
		    "set for recipients the mail server deferred.",
		    offsetof(struct expo_queue, delayed) },
		{ "digest_queue_paused", "1 while an operator has the queue "
		    "paused (digestctl pause): no worker takes a job from it.",
		    offsetof(struct expo_queue, paused) },
	};
	struct expo_label l[1];
	size_t f;
	int q;
	double v;

	for (f = 0; f < sizeof(qf) / sizeof(qf[0]); f++) {
		expo_header(o, fmt, qf[f].name, qf[f].help, METRIC_GAUGE);
		for (q = 0; q < snap->nqueues; q++) {
			l[0].name = "queue";
			l[0].value = snap->queues[q].name;
			v = *(const double *)((const char *)&snap->queues[q] +
			    qf[f].off);
			expo_sample_double(o, qf[f].name, "", l, 1,
			    expo_unsampled(snap, v));
		}
	}
	expo_gauge1(o, fmt, "digest_dead_letters",
	    "Jobs in the dead-letter queue.",
	    expo_unsampled(snap, snap->dead_letters));

	expo_header(o, fmt, "digest_schedule_last_success_timestamp_seconds",
	    "End of the scheduler's last successful run, by period; 0 if "
	    "never.", METRIC_GAUGE);
	for (q = 0; q < 2; q++) {
		l[0].name = "period";
		l[0].value = expo_period_names[q];
		expo_sample_double(o,
		    "digest_schedule_last_success_timestamp_seconds", "", l, 1,
		    snap->sched_last_success[q]);
	}
	expo_gauge1(o, fmt, "digest_queue_sampled_timestamp_seconds",
	    "When the queue figures above were last sampled; 0 if never.",
	    snap->sampled_at);
}

static void
expo_config_families(struct expo_out *o, enum expo_format fmt,
    const struct expo_snapshot *snap)
{
	struct expo_label l[1];

	expo_header(o, fmt, "digest_config_reloads",
	    "Configuration reloads (SIGHUP), by result.", METRIC_COUNTER);
	l[0].name = "result";
	l[0].value = "success";
	expo_sample_u64(o, "digest_config_reloads", "_total", l, 1,
	    snap->reloads_ok);
	l[0].value = "failure";
	expo_sample_u64(o, "digest_config_reloads", "_total", l, 1,
	    snap->reloads_failed);
	expo_gauge1(o, fmt,
	    "digest_config_last_reload_success_timestamp_seconds",
	    "When the configuration in force was loaded (start-up counts).",
	    snap->last_reload_ok);
}

static void
expo_process_families(struct expo_out *o, enum expo_format fmt,
    const struct expo_snapshot *snap)
{
	const struct procstat *ps = &snap->proc;

	expo_header(o, fmt, "process_cpu_seconds",
	    "Total user and system CPU time spent in seconds.",
	    METRIC_COUNTER);
	expo_sample_double(o, "process_cpu_seconds", "_total", NULL, 0,
	    ps->cpu_seconds);
	expo_gauge1(o, fmt, "process_resident_memory_bytes",
	    "Resident memory size in bytes.", (double)ps->resident_bytes);
	expo_gauge1(o, fmt, "process_virtual_memory_bytes",
	    "Virtual memory size in bytes.", (double)ps->virtual_bytes);
	expo_gauge1(o, fmt, "process_open_fds",
	    "Number of open file descriptors.", (double)ps->open_fds);
	expo_gauge1(o, fmt, "process_max_fds",
	    "Maximum number of open file descriptors.",
	    ps->max_fds < 0 ? INFINITY : (double)ps->max_fds);
	expo_gauge1(o, fmt, "process_start_time_seconds",
	    "Start time of the process since unix epoch in seconds.",
	    ps->start_time);
}

void
expo_format(struct evbuffer *b, const struct expo_snapshot *snap,
    enum expo_format fmt)
{
	/* The loop is single-threaded: one output buffer serves all. */
	static struct expo_out out;
	struct expo_out *o = &out;
	int i;

	o->b = b;
	o->n = 0;
	expo_supervisor_families(o, fmt, snap);
	for (i = 0; i < metrics_ndesc; i++)
		expo_cell_family(o, fmt, snap, &metrics_desc[i]);
	expo_queue_families(o, fmt, snap);
	expo_config_families(o, fmt, snap);
	expo_process_families(o, fmt, snap);
	if (fmt == EXPO_OPENMETRICS)
		out_add(o, "# EOF\n", 6);
	out_flush(o);
}

/* The snapshot's pool named name, added if missing; NULL when full. */
static struct expo_pool *
expo_pool_get(struct expo_snapshot *snap, const char *name)
{
	int i;

	for (i = 0; i < snap->npools; i++)
		if (strcmp(snap->pools[i].name, name) == 0)
			return &snap->pools[i];
	if (snap->npools == EXPO_MAX_POOLS)
		return NULL;
	strlcpy(snap->pools[snap->npools].name, name, SB_NAME_MAX);
	return &snap->pools[snap->npools++];
}

static struct expo_queue *
expo_queue_get(struct expo_snapshot *snap, const char *name)
{
	int i;

	for (i = 0; i < snap->nqueues; i++)
		if (strcmp(snap->queues[i].name, name) == 0)
			return &snap->queues[i];
	if (snap->nqueues == EXPO_MAX_QUEUES)
		return NULL;
	strlcpy(snap->queues[snap->nqueues].name, name, SB_NAME_MAX);
	return &snap->queues[snap->nqueues++];
}

void
expo_snapshot_take(const struct supervisor *s, struct expo_snapshot *snap)
{
	struct expo_pool *reg[SB_MAX_POOLS];
	struct sb_stats st;
	struct sb_slot *sl;
	struct expo_pool *ep;
	struct expo_queue *eq;
	char name[SB_NAME_MAX];
	uint64_t rss;
	uint32_t state;
	int32_t pool;
	int i, j, known;

	memset(snap, 0, sizeof(*snap));
	snap->version = DIGESTD_VERSION;

	/*
	 * Pools: the registry (which keeps retired pools, so their counters
	 * stay visible after a reload), then any configured pool not
	 * registered yet.
	 */
	for (i = 0; i < SB_MAX_POOLS; i++) {
		reg[i] = NULL;
		memcpy(name, s->sb->pools[i].name, sizeof(name));
		name[sizeof(name) - 1] = '\0';
		if (name[0] == '\0' || (ep = expo_pool_get(snap, name)) == NULL)
			continue;
		reg[i] = ep;
		for (j = 0; j < MC_NCELLS; j++)
			ep->cells[j] += s->totals[i].cells[j];
		for (j = 0; j < RESTART_N; j++)
			ep->restarts[j] += s->totals[i].restarts[j];
	}
	for (i = 0; s->cfg != NULL && i < s->cfg->npools; i++)
		expo_pool_get(snap, s->cfg->pools[i].name);

	/*
	 * Live cells of every slot, whatever its state: a slot that is free
	 * or already folded holds zeroes, and one that died but is not folded
	 * yet still counts once, here.
	 */
	for (i = 0; i < SB_MAX_SLOTS; i++) {
		sl = &s->sb->slots[i];
		pool = atomic_load_explicit(&sl->pool, memory_order_relaxed);
		state = atomic_load_explicit(&sl->state, memory_order_acquire);
		if (pool < 0 || pool >= SB_MAX_POOLS || reg[pool] == NULL)
			continue;
		ep = reg[pool];
		for (j = 0; j < MC_NCELLS; j++)
			ep->cells[j] += atomic_load_explicit(&sl->cells[j],
			    memory_order_relaxed);
		if (state < SB_STARTING || state > SB_DRAINING)
			continue;
		ep->workers[state - SB_STARTING]++;
		rss = atomic_load_explicit(&sl->rss_bytes,
		    memory_order_relaxed);
		if (rss > ep->max_rss)
			ep->max_rss = rss;
	}

	/*
	 * Queues: every configured one, then any other the sampler saw.  While
	 * the published figures cannot be read, the last good ones stand (their
	 * sampled_at says how old they are); with none, they are unknown.
	 */
	known = sampler_stats(s, &st) >= 0;
	for (i = 0; s->cfg != NULL && i < s->cfg->npools; i++) {
		eq = expo_queue_get(snap, s->cfg->pools[i].queue);
		if (eq != NULL)
			eq->depth = eq->pending = eq->oldest_enqueued =
			    eq->delayed = eq->paused = NAN;
	}
	/* A figure the sampler never read (-1) stays unknown. */
	for (i = 0; known && i < st.nqueues && i < SB_MAX_QUEUES; i++) {
		memcpy(name, st.queues[i].name, sizeof(name));
		name[sizeof(name) - 1] = '\0';
		if (name[0] == '\0' || (eq = expo_queue_get(snap, name)) == NULL)
			continue;
		eq->depth = st.queues[i].depth < 0 ? NAN : st.queues[i].depth;
		/* AMQP 0-9-1 cannot tell unacknowledged counts: unknown. */
		eq->pending = st.queues[i].pending < 0 ? NAN :
		    st.queues[i].pending;
		eq->oldest_enqueued = st.queues[i].depth < 0 ? NAN :
		    st.queues[i].oldest_enqueued;
		eq->delayed = st.queues[i].delayed < 0 ? NAN :
		    st.queues[i].delayed;
		eq->next_due = st.queues[i].next_due;
		eq->paused = st.queues[i].paused;
		eq->paused_at = st.queues[i].paused_at;
	}
	snap->dead_letters = known && st.dead_letters >= 0 ?
	    st.dead_letters : NAN;
	snap->sched_last_success[0] = known ? st.sched_last_success[0] : NAN;
	snap->sched_last_success[1] = known ? st.sched_last_success[1] : NAN;
	snap->sampled_at = st.sampled_at;

	snap->reloads_ok = s->reloads_ok;
	snap->reloads_failed = s->reloads_failed;
	snap->last_reload_ok = s->last_reload_ok;
	procstat_read(&snap->proc);
}

void
expo_render(struct evbuffer *b, const struct supervisor *s,
    enum expo_format fmt)
{
	/* The loop is single-threaded: one snapshot buffer serves all. */
	static struct expo_snapshot snap;

	expo_snapshot_take(s, &snap);
	expo_format(b, &snap, fmt);
}
