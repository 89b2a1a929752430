/*
 * Benchmark of the per-message checkpoint write: after each message the
 * transport accepts, the worker sends the job's cursor and counts to the
 * queue Redis without waiting for the reply (checkpoint_progress), and
 * reads the replies back once per flush (checkpoint_sync).  This measures
 * that write's CPU cost per message in this process (user + system, the
 * write(2) included) and the wall time, against a synchronous save per
 * message (a round trip each) for comparison.
 *
 * And the floor under the pipelined write: the same command, already
 * formatted, written with write(2) straight to the connection's socket
 * (the replies read per flush as above), and write(2) of as many bytes
 * to /dev/null, the cost of a system call alone.
 *
 *   build/bench/bench_checkpoint -S /path/to/redis.sock [-n messages]
 *                                [-f flush]
 *
 * The last line is logfmt for the benchmark runner.
 */
#include <sys/resource.h>

#include <fcntl.h>
#include <inttypes.h>
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
	double floor_cpu, floor_wall, null_cpu;
	char cmd[256];
	int cmdlen, fd;
	redisReply *r;
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

	/* The floor: write(2) of the formatted command, nothing else. */
	cmdlen = snprintf(cmd, sizeof(cmd), "*10\r\n$4\r\nHSET\r\n$%zu\r\n"
	    "digest:job:%s\r\n$6\r\ncursor\r\n$6\r\n101000\r\n"
	    "$12\r\ncursor_score\r\n$6\r\n101000\r\n$4\r\nsent\r\n$6\r\n"
	    "100001\r\n$7\r\nskipped\r\n$1\r\n0\r\n",
	    strlen("digest:job:") + strlen(j.job_id), j.job_id);
	c0 = cpu_s();
	w0 = wall_s();
	for (i = 0; i < n; i++) {
		if (write(c->fd, cmd, (size_t)cmdlen) != cmdlen)
			goto fail;
		if ((i + 1) % flush == 0 || i == n - 1) {
			long k, m = (i + 1) % flush == 0 ? flush : (i + 1) % flush;

			for (k = 0; k < m; k++) {
				if (redisGetReply(c, (void **)&r) != REDIS_OK)
					goto fail;
				freeReplyObject(r);
			}
		}
	}
	floor_cpu = cpu_s() - c0;
	floor_wall = wall_s() - w0;
	if ((fd = open("/dev/null", O_WRONLY)) == -1)
		goto fail;
	c0 = cpu_s();
	for (i = 0; i < n; i++)
		if (write(fd, cmd, (size_t)cmdlen) != cmdlen)
			goto fail;
	null_cpu = cpu_s() - c0;
	close(fd);

	printf("pipelined: %ld messages, %.3f us CPU and %.3f us wall each "
	    "(replies read every %ld)\n", n, pipelined_cpu * 1e6 / n,
	    pipelined_wall * 1e6 / n, flush);
	printf("synchronous: %ld messages, %.3f us CPU and %.3f us wall each\n",
	    nsync, sync_cpu * 1e6 / nsync, sync_wall * 1e6 / nsync);
	printf("floor: write(2) of the %d-byte command to the socket %.3f us "
	    "CPU (%.3f us wall) each; to /dev/null %.3f us CPU\n", cmdlen,
	    floor_cpu * 1e6 / n, floor_wall * 1e6 / n, null_cpu * 1e6 / n);
	printf("messages=%ld flush=%ld pipelined_cpu_us=%.3f "
	    "pipelined_wall_us=%.3f sync_cpu_us=%.3f sync_wall_us=%.3f "
	    "floor_cpu_us=%.3f floor_wall_us=%.3f devnull_cpu_us=%.3f "
	    "cmd_bytes=%d\n", n, flush, pipelined_cpu * 1e6 / n,
	    pipelined_wall * 1e6 / n, sync_cpu * 1e6 / nsync,
	    sync_wall * 1e6 / nsync, floor_cpu * 1e6 / n, floor_wall * 1e6 / n,
	    null_cpu * 1e6 / n, cmdlen);
	redisFree(c);
	return 0;
fail:
	fprintf(stderr, "bench_checkpoint: redis: %s\n", c->err ? c->errstr :
	    "error reply");
	redisFree(c);
	return 1;
}
