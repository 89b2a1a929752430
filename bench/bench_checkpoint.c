/*
 * Benchmark of the per-message checkpoint write: after each message the
 * transport accepts, the worker sends the job's cursor and counts to the
 * queue Redis without waiting for the reply (checkpoint_progress), and
 * reads the replies back once per flush (checkpoint_sync).  This measures
 * that write's CPU cost per message in this process (user + system, the
 * write(2) included) and the wall time, against a synchronous save per
 * message (a round trip each) for comparison.
 *
 *   build/bench/bench_checkpoint -S /path/to/redis.sock [-n messages]
 *                                [-f flush]
 *
 * The last line is logfmt for the benchmark runner.
 */
#include <sys/resource.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "checkpoint.h"
#include "config.h"
#include "util.h"

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double
wall_s(void)
{
	return now_mono_ns() / 1e9;
}

int
main(int argc, char **argv)
{
	static struct config cfg;
	struct checkpoint cp;
	struct job j;
	redisContext *c;
	const char *sock = NULL;
	double c0, w0, pipelined_cpu, pipelined_wall, sync_cpu, sync_wall;
	long n = 200000, flush = 500, i, nsync;
	int ch;

	while ((ch = getopt(argc, argv, "S:n:f:")) != -1) {
		switch (ch) {
		case 'S':
			sock = optarg;
			break;
		case 'n':
			n = atol(optarg);
			break;
		case 'f':
			flush = atol(optarg);
			break;
		default:
			fprintf(stderr, "usage: bench_checkpoint -S socket "
			    "[-n messages] [-f flush]\n");
			return 2;
		}
	}
	if (sock == NULL || n <= 0 || flush <= 0) {
		fprintf(stderr, "bench_checkpoint: -S socket is required\n");
		return 2;
	}
	if ((c = redisConnectUnix(sock)) == NULL || c->err) {
		fprintf(stderr, "bench_checkpoint: connect %s: %s\n", sock,
		    c ? c->errstr : "no memory");
		return 1;
	}
	memset(&j, 0, sizeof(j));
	strlcpy(j.job_id, "daily.1764374400.42.0", sizeof(j.job_id));
	memset(&cp, 0, sizeof(cp));
	cp.cursor.set = 1;

	/* Pipelined: one write per message, the replies read per flush. */
	c0 = cpu_s();
	w0 = wall_s();
	for (i = 0; i < n; i++) {
		cp.cursor.uid = 1000 + i;
		cp.cursor.score = (double)cp.cursor.uid;
		cp.sent++;
		if (checkpoint_progress(c, &cfg, &j, &cp) == -1)
			goto fail;
		if ((i + 1) % flush == 0 && checkpoint_sync(c, &cp) == -1)
			goto fail;
	}
	if (checkpoint_sync(c, &cp) == -1)
		goto fail;
	pipelined_cpu = cpu_s() - c0;
	pipelined_wall = wall_s() - w0;

	/* A round trip per message, for comparison (fewer: it is slow). */
	nsync = n / 10 > 0 ? n / 10 : 1;
	c0 = cpu_s();
	w0 = wall_s();
	for (i = 0; i < nsync; i++) {
		cp.cursor.uid = 1000 + i;
		cp.sent++;
		if (checkpoint_save(c, &cfg, &j, &cp) == -1)
			goto fail;
	}
	sync_cpu = cpu_s() - c0;
	sync_wall = wall_s() - w0;

	printf("pipelined: %ld messages, %.3f us CPU and %.3f us wall each "
	    "(replies read every %ld)\n", n, pipelined_cpu * 1e6 / n,
	    pipelined_wall * 1e6 / n, flush);
	printf("synchronous: %ld messages, %.3f us CPU and %.3f us wall each\n",
	    nsync, sync_cpu * 1e6 / nsync, sync_wall * 1e6 / nsync);
	printf("messages=%ld flush=%ld pipelined_cpu_us=%.3f "
	    "pipelined_wall_us=%.3f sync_cpu_us=%.3f sync_wall_us=%.3f\n", n,
	    flush, pipelined_cpu * 1e6 / n, pipelined_wall * 1e6 / n,
	    sync_cpu * 1e6 / nsync, sync_wall * 1e6 / nsync);
	redisFree(c);
	return 0;
fail:
	fprintf(stderr, "bench_checkpoint: redis: %s\n", c->err ? c->errstr :
	    "error reply");
	redisFree(c);
	return 1;
}
