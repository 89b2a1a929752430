/*
 * Benchmark of digestd's own CPU per email: the worker's job path
 * (digest_run: the member and user reads from Redis, eligibility, render,
 * the per-message checkpoint write, the scoreboard and the metrics) run
 * in this process over the jobs a schedule put in the queues, with a
 * transport that accepts every message and does nothing with it.  What
 * is left out is what the SMTP library and its syscalls cost: measured
 * apart by bench_smtp.
 *
 * The jobs are read from the queue streams (XRANGE, no consumer group:
 * the queue is left as it is) and each is run as a worker runs it:
 * checkpoint_start, digest_run, checkpoint_finish.  CPU is this process's
 * user + system time (getrusage) over the jobs alone.
 *
 *   build/bench/bench_worker -c digestd.conf [-q queue,...] [-r rounds]
 *
 * -r runs the jobs that many times (each round from a fresh checkpoint):
 * the figure is the median round's, the machine being shared.  The last
 * line is logfmt for the benchmark runner.
 */
#include <sys/resource.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "checkpoint.h"
#include "config.h"
#include "digest.h"
#include "job.h"
#include "rconn.h"
#include "scoreboard.h"
#include "transport.h"
#include "util.h"

#define BW_JOBS_MAX 100000
#define BW_ROUNDS_MAX 99

/* The discarding transport: what send() queued, given back by flush(). */
struct transport {
	struct email *q;
	size_t n;
	size_t cap;
	uint64_t bytes;
};

static struct transport *
bw_open(const struct config *cfg, char *err, size_t errlen)
{
	return calloc(1, sizeof(struct transport));
}

static int
bw_send(struct transport *t, const struct email *e)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 1024;
		if ((t->q = realloc(t->q, t->cap * sizeof(*t->q))) == NULL)
			return -1;
	}
	/* The result callback reads the uid alone. */
	t->q[t->n].uid = e->uid;
	t->n++;
	t->bytes += e->len;
	return 0;
}

static int
bw_flush(struct transport *t, transport_result_cb cb, void *arg, char *err,
    size_t errlen)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		cb(arg, &t->q[i], TP_SENT, NULL);
	t->n = 0;
	return 0;
}

static void
bw_close(struct transport *t)
{
	free(t->q);
	free(t);
}

static const struct transport_ops bw_ops = {
	.name = "discard",
	.type = TRANSPORT_SMTP,
	.open = bw_open,
	.send = bw_send,
	.flush = bw_flush,
	.close = bw_close,
};

static int
bw_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
cpu_s(double *user, double *sys)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
	*sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	return *user + *sys;
}

/* Append the jobs of queue's stream to jobs[*n]. */
static int
bw_read_queue(redisContext *c, const struct config *cfg, const char *queue,
    struct job *jobs, size_t *n)
{
	const char *names[JOB_NFIELDS + 4], *values[JOB_NFIELDS + 4];
	redisReply *r, *e, *f;
	char key[512], err[256];
	size_t i, k, nf;

	if (rkey(key, sizeof(key), cfg->redis.key_prefix, "digest:q:%s",
	    queue) == NULL)
		return -1;
	if ((r = redisCommand(c, "XRANGE %s - +", key)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		return -1;
	}
	for (i = 0; i < r->elements && *n < BW_JOBS_MAX; i++) {
		e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
			continue;
		f = e->element[1];
		for (k = 0, nf = 0; k + 1 < f->elements &&
		    nf < JOB_NFIELDS + 4; k += 2, nf++) {
			names[nf] = f->element[k]->str;
			values[nf] = f->element[k + 1]->str;
		}
		if (job_decode_fields(&jobs[*n], names, values, nf, err,
		    sizeof(err)) == -1) {
			fprintf(stderr, "bench_worker: %s: %s\n", queue, err);
			continue;
		}
		(*n)++;
	}
	freeReplyObject(r);
	return 0;
}

/* Forget the jobs' checkpoints, so that the next round runs them again. */
static void
bw_forget(redisContext *c, const struct config *cfg, struct job *jobs,
    size_t n)
{
	char err[256];
	size_t i;

	for (i = 0; i < n; i++)
		(void)checkpoint_forget(c, cfg, jobs[i].job_id, err,
		    sizeof(err));
}

int
main(int argc, char **argv)
{
	static struct sb_slot slot;
	struct digest_ctx ctx;
	struct checkpoint cp;
	struct config *cfg;
	struct job *jobs;
	redisContext *c;
	char err[512], reason[256], *qs = NULL, *q, *save;
	const char *conf = NULL;
	double c0, u0, s0, u1, s1, cpu = 0, user = 0, sys = 0;
	double per[BW_ROUNDS_MAX], med;
	int64_t emails = 0, skipped = 0, e0;
	size_t njobs = 0, i;
	int ch, rounds = 1, round, failed = 0;
	enum digest_result res;

	while ((ch = getopt(argc, argv, "c:q:r:")) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		case 'q':
			qs = optarg;
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: bench_worker -c config "
			    "[-q queue,...] [-r rounds]\n");
			return 2;
		}
	}
	if (conf == NULL || rounds < 1 || rounds > BW_ROUNDS_MAX) {
		fprintf(stderr, "bench_worker: -c config is required\n");
		return 2;
	}
	if ((cfg = config_load(conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench_worker: %s\n", err);
		return 1;
	}
	if ((c = rconn_connect(&cfg->redis, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench_worker: redis: %s\n", err);
		return 1;
	}
	if ((jobs = calloc(BW_JOBS_MAX, sizeof(*jobs))) == NULL)
		return 1;
	qs = strdup(qs != NULL ? qs : "priority,standard");
	for (q = strtok_r(qs, ",", &save); q != NULL;
	    q = strtok_r(NULL, ",", &save))
		if (bw_read_queue(c, cfg, q, jobs, &njobs) == -1) {
			fprintf(stderr, "bench_worker: cannot read queue %s\n",
			    q);
			return 1;
		}
	free(qs);
	if (njobs == 0) {
		fprintf(stderr, "bench_worker: no jobs in the queues\n");
		return 1;
	}

	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	ctx.slot = &slot;
	ctx.data = c;
	ctx.queue = c;
	ctx.tp_ops = &bw_ops;
	if ((ctx.tp = bw_ops.open(cfg, err, sizeof(err))) == NULL)
		return 1;

	for (round = 0; round < rounds; round++) {
		bw_forget(c, cfg, jobs, njobs);
		e0 = emails;
		c0 = cpu_s(&u0, &s0);
		for (i = 0; i < njobs; i++) {
			if (checkpoint_start(c, cfg, &jobs[i], "bench", &cp)
			    != 0) {
				failed++;
				continue;
			}
			sb_cursor_set(&slot, &cp.cursor);
			sb_job_set(&slot, &jobs[i], "0-0");
			res = digest_run(&ctx, &jobs[i], &cp, reason,
			    sizeof(reason));
			if (res != DIGEST_DONE) {
				fprintf(stderr, "bench_worker: job %s: %s\n",
				    jobs[i].job_id, reason);
				failed++;
			}
			(void)checkpoint_finish(c, cfg, &jobs[i], "done",
			    NULL);
			emails += cp.sent;
			skipped += cp.skipped;
		}
		cpu += cpu_s(&u1, &s1) - c0;
		user += u1 - u0;
		sys += s1 - s0;
		if (emails == e0) {
			fprintf(stderr, "bench_worker: no email sent\n");
			return 1;
		}
		per[round] = (u1 + s1 - c0) * 1e6 / (double)(emails - e0);
	}
	qsort(per, (size_t)rounds, sizeof(per[0]), bw_cmp);
	med = per[rounds / 2];
	printf("bench_worker: %zu jobs x %d, %" PRId64 " emails, %" PRId64
	    " skipped, %.3f s CPU (%.3f user, %.3f system), %" PRIu64
	    " bytes rendered\n", njobs, rounds, emails, skipped, cpu, user,
	    sys, ctx.tp->bytes);
	printf("  %.3f us of CPU per email, the median of %d rounds (best "
	    "%.3f, worst %.3f); over all, %.3f (%.3f user, %.3f system)\n",
	    med, rounds, per[0], per[rounds - 1], cpu * 1e6 / emails,
	    user * 1e6 / emails, sys * 1e6 / emails);
	printf("benchmark=worker jobs=%zu rounds=%d emails=%" PRId64
	    " skipped=%" PRId64 " failed=%d cpu_seconds=%.3f user_seconds=%.3f "
	    "sys_seconds=%.3f us_per_email=%.3f best_us=%.3f worst_us=%.3f "
	    "mean_us=%.3f user_us=%.3f sys_us=%.3f avg_bytes=%.0f\n", njobs,
	    rounds, emails, skipped, failed, cpu, user, sys, med, per[0],
	    per[rounds - 1], cpu * 1e6 / emails, user * 1e6 / emails,
	    sys * 1e6 / emails, (double)ctx.tp->bytes / emails);
	digest_ctx_clear(&ctx);
	bw_ops.close(ctx.tp);
	redisFree(c);
	config_free(cfg);
	free(jobs);
	return failed ? 1 : 0;
}
