/*
 * digestctl watch: a live view of the queues until they are empty (or a
 * timeout passes): a progress bar per queue, the email rate and the busy
 * workers, read from digestd's /metrics on supervisor.listen.  On a
 * terminal the view is redrawn in place; otherwise one plain line per
 * tick, for logs and scripts.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"
#include "zpage.h"

#define WATCH_BAR 30

struct watch_queue {
	const char *name;
	int64_t outstanding;		/* depth + pending */
	int64_t initial;
	double done_base;		/* jobs finished at start, per /metrics */
	double done;			/* ... since start */
};

/* Jobs finished (ok or dead-lettered) by the pools consuming queue. */
static double
watch_jobs_done(const struct config *cfg, const char *text, const char *queue)
{
	char pool[CONFIG_NAME_MAX + 16];
	double sum = 0;
	int i;

	for (i = 0; i < cfg->npools; i++) {
		if (strcmp(cfg->pools[i].queue, queue) != 0)
			continue;
		snprintf(pool, sizeof(pool), "pool=\"%s\"", cfg->pools[i].name);
		sum += ctl_metric_sum(text, "digest_jobs_total", pool,
		    "result=\"ok\"");
		sum += ctl_metric_sum(text, "digest_jobs_total", pool,
		    "result=\"dead_lettered\"");
	}
	return sum;
}

static void
watch_bar(char *buf, size_t len, double frac)
{
	int i, fill;

	if (frac < 0)
		frac = 0;
	if (frac > 1)
		frac = 1;
	fill = (int)lround(frac * WATCH_BAR);
	if (len < WATCH_BAR + 3)
		return;
	buf[0] = '[';
	for (i = 0; i < WATCH_BAR; i++)
		buf[i + 1] = i < fill ? '#' : '.';
	buf[WATCH_BAR + 1] = ']';
	buf[WATCH_BAR + 2] = '\0';
}

int
ctl_cmd_watch(struct ctl *c, int argc, char **argv)
{
	const char *names[CTL_MAX_QUEUES], *v;
	struct watch_queue q[CTL_MAX_QUEUES];
	struct queue_stats st;
	char *text, herr[256], bar[WATCH_BAR + 3];
	double interval = 1.0, rate = 0, sent, sent_base = 0, sent_prev = 0;
	double busy, t, t0, tprev, total, frac;
	int64_t timeout_ms = 4 * 3600 * 1000, left;
	int i, n, tty, have_metrics, first = 1, lines = 0, rv;
	int unknown;		/* a queue cannot tell its pending jobs */

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--interval") == 0) {
			if ((v = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
			if (parse_double(v, &interval) == -1 || interval < 0.05 ||
			    interval > 3600) {
				fprintf(stderr, "digestctl watch: bad --interval\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--timeout") == 0) {
			if ((v = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
			if (config_parse_duration(v, &timeout_ms) == -1 ||
			    timeout_ms <= 0) {
				fprintf(stderr, "digestctl watch: bad --timeout\n");
				return 2;
			}
		} else {
			fprintf(stderr, "digestctl watch: unknown argument %s\n",
			    argv[i]);
			return 2;
		}
	}
	tty = isatty(STDOUT_FILENO);
	n = ctl_queues(c->cfg, names);
	memset(q, 0, sizeof(q));
	t0 = tprev = now_mono_ns() / 1e9;
	for (;;) {
		left = 0;
		unknown = 0;
		for (i = 0; i < n; i++) {
			q[i].name = names[i];
			if (c->qa.qb->stats(&c->qa, names[i], &st, c->err,
			    sizeof(c->err)) == -1) {
				fprintf(stderr, "digestctl watch: queue %s: %s\n",
				    names[i], ctl_vis(c->err));
				return 1;
			}
			q[i].outstanding = st.depth + (st.pending > 0 ?
			    st.pending : 0);
			if (st.pending < 0)
				unknown = 1;
			if (first)
				q[i].initial = q[i].outstanding;
			left += q[i].outstanding;
		}
		text = NULL;
		have_metrics = ctl_http_get(c->cfg->supervisor.listen,
		    "/metrics", 2000, &text, herr, sizeof(herr)) == 0;
		t = now_mono_ns() / 1e9;
		busy = 0;
		if (have_metrics) {
			sent = ctl_metric_sum(text, "digest_emails_total",
			    "result=\"sent\"", NULL);
			busy = ctl_metric_sum(text, "digest_workers",
			    "state=\"busy\"", NULL);
			if (first)
				sent_base = sent_prev = sent;
			if (t > tprev)
				rate = (sent - sent_prev) / (t - tprev);
			sent_prev = sent;
			for (i = 0; i < n; i++) {
				double d = watch_jobs_done(c->cfg, text,
				    names[i]);

				if (first)
					q[i].done_base = d;
				q[i].done = d - q[i].done_base;
			}
		} else {
			/* No digestd to ask: what left the queue is done. */
			for (i = 0; i < n; i++) {
				q[i].done = (double)(q[i].initial -
				    q[i].outstanding);
				if (q[i].done < 0)
					q[i].done = 0;
			}
		}
		free(text);
		tprev = t;

		if (tty && lines > 0)
			printf("\033[%dA", lines);
		lines = 0;
		if (tty) {
			for (i = 0; i < n; i++) {
				total = q[i].done + (double)q[i].outstanding;
				frac = total > 0 ? q[i].done / total : 1;
				watch_bar(bar, sizeof(bar), frac);
				printf("\033[2K%-12s %s %3.0f%%  %.0f/%.0f jobs, "
				    "%" PRId64 " left\n", names[i], bar,
				    frac * 100, q[i].done, total,
				    q[i].outstanding);
				lines++;
			}
			if (have_metrics)
				printf("\033[2Kemails: %.0f sent, %.1f/s now, "
				    "%.1f/s average; workers busy: %.0f; %.0fs\n",
				    sent_prev - sent_base, rate, t > t0 ?
				    (sent_prev - sent_base) / (t - t0) : 0,
				    busy, t - t0);
			else
				printf("\033[2Kdigestd metrics unavailable (%s);"
				    " %.0fs\n", ctl_vis(herr), t - t0);
			lines++;
		} else {
			printf("t=%.0fs", t - t0);
			for (i = 0; i < n; i++)
				printf(" %s=%.0f/%.0f", names[i], q[i].done,
				    q[i].done + (double)q[i].outstanding);
			if (have_metrics)
				printf(" emails_sent=%.0f emails_per_s=%.1f "
				    "busy=%.0f\n", sent_prev - sent_base, rate,
				    busy);
			else
				printf(" metrics=unavailable\n");
		}
		fflush(stdout);
		first = 0;
		/*
		 * A queue that cannot tell its pending jobs (AMQP: only the
		 * ready messages) does not count a job in a worker's hands,
		 * so wait for the workers too.
		 */
		if (left == 0 && unknown && have_metrics && busy > 0)
			left = zpage_floor(ceil(busy));
		if (left == 0) {
			rv = 0;
			printf("queues empty after %.1fs\n", t - t0);
			break;
		}
		if ((t - t0) * 1000 >= (double)timeout_ms) {
			fprintf(stderr, "digestctl watch: %" PRId64 " jobs still "
			    "queued after %.0fs\n", left, t - t0);
			rv = 1;
			break;
		}
		usleep((useconds_t)(interval * 1e6));
	}
	return rv;
}
