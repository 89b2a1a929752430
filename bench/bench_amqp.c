/*
 * The AMQP transport alone (worker/transport_amqp.c), as a worker drives
 * it: one transport opened once, -j jobs of -n emails each, handed over
 * with send() and delivered by flush() every -b emails (digest.batch_size),
 * to the broker at -u, exchange -e, routing key -k.  The messages are made
 * before the clock starts (about -s bytes each, CRLF lines, a digest's
 * headers, each its own Message-ID and recipient), so that what is
 * measured is the transport: the publishes, the confirms, and one copy of
 * each message, into the transport's buffer as the worker renders it
 * there (or by send(), for a transport without one).
 * Prints the worker-side CPU (getrusage: user and system) per email and
 * the emails per second.
 *
 *   build/bench/bench_amqp -u url [-e exchange] [-k key] [-j jobs]
 *       [-n per_job] [-b batch] [-s size]
 *
 * Every email must be acknowledged by the broker (exit 1 otherwise).  The
 * last line is logfmt for the benchmark runner.
 */
#include <sys/resource.h>
#include <sys/time.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "mime.h"
#include "render.h"
#include "transport.h"

struct bench_amqp_count {
	long sent;
	long other;
};

static double
bench_amqp_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double
bench_amqp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
bench_amqp_result(void *arg, const struct email *e, enum tp_result r,
    const char *detail)
{
	struct bench_amqp_count *c = arg;

	if (r == TP_SENT) {
		c->sent++;
		return;
	}
	if (c->other++ == 0)
		fprintf(stderr, "bench_amqp: %s not sent: %s\n",
		    e->message_id, detail != NULL ? detail : "?");
}

/* One message of about size bytes for member uid. */
static char *
bench_amqp_message(int size, long uid, const char *mid, size_t *lenp)
{
	static const char line[] = "Lorem ipsum dolor sit amet, consectetur "
	    "adipiscing elit, sed do eiusmod tempor.\r\n";
	char *p;
	int n;

	if ((p = malloc((size_t)size + 1024)) == NULL)
		return NULL;
	n = snprintf(p, 1024, "From: Groups <digest@example.com>\r\n"
	    "To: <u%ld@example.org>\r\n"
	    "Subject: Your daily digest of a group\r\n"
	    "Date: Sun, 29 Nov 2026 00:00:00 +0000\r\n"
	    "Message-ID: <%s>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n", uid, mid);
	while (n + (int)sizeof(line) < size + 1024 && n < size) {
		memcpy(p + n, line, sizeof(line) - 1);
		n += sizeof(line) - 1;
	}
	p[n] = '\0';
	*lenp = (size_t)n;
	return p;
}

int
main(int argc, char **argv)
{
	const struct transport_ops *ops = &transport_amqp_ops;
	struct bench_amqp_count count = { 0, 0 };
	struct config *cfg;
	struct transport *t;
	struct email *msgs, e;
	struct rbuf *out;
	char err[512], (*jobs_id)[64], (*rcpts)[64], (*mids)[96];
	const char *url = NULL, *exchange = "bench.out", *key = "digest";
	double c0, t0, cpu, wall;
	long i, j, k, total, jobs = 20, per = 3000, batch = 500, size = 6300;
	size_t bytes = 0;
	int ch;

	while ((ch = getopt(argc, argv, "u:e:k:j:n:b:s:")) != -1) {
		switch (ch) {
		case 'u':
			url = optarg;
			break;
		case 'e':
			exchange = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'j':
			jobs = atol(optarg);
			break;
		case 'n':
			per = atol(optarg);
			break;
		case 'b':
			batch = atol(optarg);
			break;
		case 's':
			size = atol(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (url == NULL || jobs < 1 || per < 1 || batch < 1 || size < 64)
		goto usage;
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (msgs = calloc((size_t)per, sizeof(*msgs))) == NULL ||
	    (jobs_id = calloc((size_t)jobs, sizeof(*jobs_id))) == NULL ||
	    (rcpts = calloc((size_t)per, sizeof(*rcpts))) == NULL ||
	    (mids = calloc((size_t)per * jobs, sizeof(*mids))) == NULL)
		goto oom;
	snprintf(cfg->amqp.url, sizeof(cfg->amqp.url), "%s", url);
	snprintf(cfg->amqp_out.exchange, sizeof(cfg->amqp_out.exchange), "%s",
	    exchange);
	snprintf(cfg->amqp_out.routing_key, sizeof(cfg->amqp_out.routing_key),
	    "%s", key);
	cfg->transport.type = TRANSPORT_AMQP;

	/* Each job its own id and Message-IDs; the bodies are shared. */
	for (j = 0; j < jobs; j++)
		snprintf(jobs_id[j], sizeof(jobs_id[j]),
		    "daily.1764374400.%ld.0", j + 1);
	for (j = 0; j < jobs; j++)
		for (i = 0; i < per; i++)
			snprintf(mids[j * per + i], sizeof(mids[0]),
			    "%s.%ld.1764374400@example.com", jobs_id[j],
			    i + 100);
	for (i = 0; i < per; i++) {
		snprintf(rcpts[i], sizeof(rcpts[i]), "u%ld@example.org",
		    i + 100);
		msgs[i].uid = i + 100;
		msgs[i].rcpt = rcpts[i];
		msgs[i].data = bench_amqp_message((int)size, i + 100, mids[i],
		    &msgs[i].len);
		if (msgs[i].data == NULL)
			goto oom;
		bytes += msgs[i].len;
	}

	if ((t = ops->open(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench_amqp: open: %s\n", err);
		return 1;
	}
	c0 = bench_amqp_cpu();
	t0 = bench_amqp_now();
	for (j = 0; j < jobs; j++) {
		for (i = 0; i < per; i += batch) {
			for (k = i; k < per && k < i + batch; k++) {
				e = msgs[k];
				e.gid = j + 1;
				e.job_id = jobs_id[j];
				e.message_id = mids[j * per + k];
				if (ops->buffer != NULL) {
					out = ops->buffer(t);
					rbuf_add(out, msgs[k].data,
					    msgs[k].len);
					e.data = out->p + out->len - e.len;
				}
				if (ops->send(t, &e) == -1) {
					fprintf(stderr, "bench_amqp: send "
					    "failed\n");
					return 1;
				}
			}
			if (ops->flush(t, bench_amqp_result, &count, err,
			    sizeof(err)) == -1) {
				fprintf(stderr, "bench_amqp: flush: %s\n",
				    err);
				return 1;
			}
		}
	}
	cpu = bench_amqp_cpu() - c0;
	wall = bench_amqp_now() - t0;
	ops->close(t);
	for (i = 0; i < per; i++)
		free((char *)(uintptr_t)msgs[i].data);
	free(msgs);
	free(jobs_id);
	free(rcpts);
	free(mids);
	free(cfg);
	total = jobs * per;
	if (count.sent != total) {
		fprintf(stderr, "bench_amqp: %ld of %ld emails acknowledged\n",
		    count.sent, total);
		return 1;
	}

	printf("bench_amqp: %ld emails of %zu bytes in %ld jobs, %ld per "
	    "flush, in %.2f s (%.2f s CPU)\n", total, bytes / (size_t)per,
	    jobs, batch, wall, cpu);
	printf("  %.0f emails/s, %.2f us CPU per email\n", total / wall,
	    cpu / total * 1e6);
	printf("benchmark=amqp emails=%ld bytes=%zu jobs=%ld batch=%ld "
	    "seconds=%.3f cpu_seconds=%.3f us_per_email=%.3f "
	    "emails_per_sec=%.1f\n", total, bytes / (size_t)per, jobs, batch,
	    wall, cpu, cpu / total * 1e6, total / wall);
	return 0;
oom:
	fprintf(stderr, "bench_amqp: out of memory\n");
	return 1;
usage:
	fprintf(stderr, "usage: bench_amqp -u url [-e exchange] [-k key] "
	    "[-j jobs] [-n per_job] [-b batch] [-s size]\n");
	return 2;
}
