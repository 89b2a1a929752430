/*
 * The floor under the SMTP transport: libESMTP alone sending the same
 * messages to the same server, with no rendering, no Redis and no
 * checkpoint, so that the end-to-end benchmark can tell what of a
 * worker's CPU per email is libESMTP's and what is ours.  One message of
 * about -s bytes (CRLF lines, a digest's headers), -m messages per
 * session, -n messages in all, to 127.0.0.1:-p (postfix's smtp-sink in
 * bench/bench_e2e.py).  Prints CPU microseconds per message.
 *
 * With -r rounds it also measures digestd's own SMTP path against that
 * floor, in the same process and to the same server: transport_smtp_ops
 * (open once, then send and flush -m messages at a time, each message
 * placed in the transport's buffer as the worker renders it there),
 * alternated with libESMTP alone and with libESMTP alone under TCP_CORK,
 * so that load on the machine moves all alike.  Medians of the rounds,
 * and their ratio.
 *
 *   build/bench/bench_smtp [-k] -p port [-n messages] [-m per_session]
 *       [-s size] [-r rounds]
 *
 * -k corks the socket (TCP_CORK) around each message's body.
 *
 * The last line is logfmt for the benchmark runner.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libesmtp.h>

#include "config.h"
#include "mime.h"
#include "render.h"
#include "transport.h"

struct bmsg {
	int given;
	int ok;
};

static const char *msg_data;
static int msg_len;
static int server_port;
static int server_fd = -1;	/* the session's socket, once found */
static int cork;		/* TCP_CORK around each message's body */

/* Hand libESMTP the whole message at once, as the transport does. */
static const char *
bench_smtp_msg_cb(void **ctx, int *len, void *arg)
{
	struct bmsg *b = arg;

	int on;

	if (len == NULL) {
		b->given = 0;
		return NULL;
	}
	if (b->given) {
		*len = 0;
		if (cork && server_fd != -1) {
			on = 0;
			(void)setsockopt(server_fd, IPPROTO_TCP, TCP_CORK,
			    &on, sizeof(on));
		}
		return NULL;
	}
	b->given = 1;
	if (cork && server_fd != -1) {
		on = 1;
		(void)setsockopt(server_fd, IPPROTO_TCP, TCP_CORK, &on,
		    sizeof(on));
	}
	*len = msg_len;
	return msg_data;
}

/*
 * TCP_NODELAY on libESMTP's socket, as the transport does: without it each
 * message's last partial segment waits for the server's delayed ACK.
 * libESMTP does not expose the socket; it is the stream connected to the
 * server's port among the lowest descriptors.
 */
static void
bench_smtp_event_cb(smtp_session_t session, int event, void *arg, ...)
{
	struct sockaddr_in sin;
	socklen_t len;
	int fd, one = 1;

	if (event == SMTP_EV_DISCONNECT)
		server_fd = -1;
	if (event != SMTP_EV_CONNECT)
		return;
	for (fd = 3; fd < 64; fd++) {
		len = sizeof(sin);
		if (getpeername(fd, (struct sockaddr *)&sin, &len) == -1 ||
		    sin.sin_family != AF_INET ||
		    ntohs(sin.sin_port) != server_port)
			continue;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		server_fd = fd;
	}
}

/* Count the messages the server accepted (2xx at the end of DATA). */
static void
bench_smtp_count_cb(smtp_message_t m, void *arg)
{
	const smtp_status_t *st = smtp_message_transfer_status(m);
	int *ok = arg;

	if (st != NULL && st->code >= 200 && st->code < 300)
		(*ok)++;
}

static double
bench_smtp_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double
bench_smtp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A message with a digest's headers and a body of about size bytes. */
static char *
bench_smtp_message(int size, int *lenp)
{
	static const char line[] = "Lorem ipsum dolor sit amet, consectetur "
	    "adipiscing elit, sed do eiusmod tempor.\r\n";
	char *p;
	int n;

	if ((p = malloc((size_t)size + 1024)) == NULL)
		return NULL;
	n = snprintf(p, 1024, "From: Groups <digest@example.com>\r\n"
	    "To: <u@example.org>\r\n"
	    "Subject: Your daily digest of a group\r\n"
	    "Date: Sun, 29 Nov 2026 00:00:00 +0000\r\n"
	    "Message-ID: <daily.1.2.0.3@example.com>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	while (n + (int)sizeof(line) < size + 1024 && n < size) {
		memcpy(p + n, line, sizeof(line) - 1);
		n += sizeof(line) - 1;
	}
	p[n] = '\0';
	*lenp = n;
	return p;
}

/*
 * libESMTP alone: total messages, per to a session.  CPU seconds, or -1
 * when a session failed or the server did not accept every message.
 */
static double
bench_smtp_alone(const char *server, int total, int per, struct bmsg *bm,
    double *wallp)
{
	smtp_session_t ss;
	smtp_message_t m;
	double c0, t0;
	int i, j, k, ok = 0;

	c0 = bench_smtp_cpu();
	t0 = bench_smtp_now();
	for (i = 0; i < total; i += per) {
		k = total - i < per ? total - i : per;
		if ((ss = smtp_create_session()) == NULL)
			return -1;
		smtp_set_server(ss, server);
		smtp_starttls_enable(ss, Starttls_DISABLED);
		smtp_set_eventcb(ss, bench_smtp_event_cb, NULL);
		for (j = 0; j < k; j++) {
			bm[j].given = bm[j].ok = 0;
			m = smtp_add_message(ss);
			smtp_set_reverse_path(m, "digest@example.com");
			smtp_add_recipient(m, "u@example.org");
			smtp_set_messagecb(m, bench_smtp_msg_cb, &bm[j]);
		}
		if (!smtp_start_session(ss)) {
			fprintf(stderr, "bench_smtp: session to %s failed\n",
			    server);
			return -1;
		}
		smtp_enumerate_messages(ss, bench_smtp_count_cb, &ok);
		smtp_destroy_session(ss);
	}
	if (wallp != NULL)
		*wallp = bench_smtp_now() - t0;
	if (ok != total) {
		fprintf(stderr, "bench_smtp: %d of %d messages accepted\n", ok,
		    total);
		return -1;
	}
	return bench_smtp_cpu() - c0;
}

static void
bench_smtp_path_cb(void *arg, const struct email *e, enum tp_result res,
    const char *detail)
{
	int *ok = arg;

	if (res == TP_SENT)
		(*ok)++;
}

/*
 * digestd's SMTP path: the transport, open already, sends total messages,
 * per to a flush, as the worker hands them over.  CPU seconds, or -1.
 */
static double
bench_smtp_path(struct transport *t, int total, int per)
{
	const struct transport_ops *ops = &transport_smtp_ops;
	struct email e;
	struct rbuf *out;
	size_t mark;
	double c0;
	char err[256];
	int i, j, k, ok = 0;

	memset(&e, 0, sizeof(e));
	e.gid = 2;
	e.rcpt = "u@example.org";
	e.message_id = "daily.1.2.0.3@example.com";
	e.job_id = "daily.1764374400.2.0";
	c0 = bench_smtp_cpu();
	for (i = 0; i < total; i += per) {
		k = total - i < per ? total - i : per;
		for (j = 0; j < k; j++) {
			e.uid = i + j + 1;
			/* The render's output, where the worker puts it. */
			if (ops->buffer != NULL) {
				out = ops->buffer(t);
				mark = out->len;
				rbuf_add(out, msg_data, (size_t)msg_len);
				e.data = out->p + mark;
			} else
				e.data = msg_data;
			e.len = (size_t)msg_len;
			if (ops->send(t, &e) == -1) {
				fprintf(stderr, "bench_smtp: send failed\n");
				return -1;
			}
		}
		if (ops->flush(t, bench_smtp_path_cb, &ok, err,
		    sizeof(err)) == -1) {
			fprintf(stderr, "bench_smtp: %s\n", err);
			return -1;
		}
	}
	if (ok != total) {
		fprintf(stderr, "bench_smtp: the transport had %d of %d "
		    "messages accepted\n", ok, total);
		return -1;
	}
	return bench_smtp_cpu() - c0;
}

static int
bench_smtp_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
bench_smtp_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_smtp_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * rounds of libESMTP alone, the transport and libESMTP alone corked, in
 * turn (the order reversed every other round); medians per message.
 */
static int
bench_smtp_compare(const char *server, int port, int total, int per,
    int rounds, struct bmsg *bm)
{
	struct config *cfg;
	struct transport *t;
	char buf[1024], err[512];
	double *alone, *path, *corked, *ratio, c, a, p, k;
	int r, i, which;

	snprintf(buf, sizeof(buf), "[digest]\n"
	    "from = Groups <digest@example.com>\n"
	    "unsubscribe_secret = bench-secret-0123456789abcdef0123456789\n"
	    "unsubscribe_url = https://example.com/unsubscribe\n"
	    "[pool.bench]\nworkers = 1\n"
	    "[smtp]\nhost = 127.0.0.1\nport = %d\nstarttls = off\n"
	    "messages_per_session = %d\n"
	    "envelope_from = digest@example.com\n", port, per);
	if ((cfg = config_load_buffer("bench_smtp", buf, strlen(buf), err,
	    sizeof(err))) == NULL ||
	    (t = transport_smtp_ops.open(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench_smtp: %s\n", err);
		return 1;
	}
	alone = calloc((size_t)rounds, sizeof(*alone));
	path = calloc((size_t)rounds, sizeof(*path));
	corked = calloc((size_t)rounds, sizeof(*corked));
	ratio = calloc((size_t)rounds, sizeof(*ratio));
	if (alone == NULL || path == NULL || corked == NULL || ratio == NULL) {
		fprintf(stderr, "bench_smtp: out of memory\n");
		return 1;
	}
	/* One untimed pass of each: the server's and our caches warm. */
	if (bench_smtp_alone(server, per, per, bm, NULL) < 0 ||
	    bench_smtp_path(t, per, per) < 0)
		return 1;
	for (r = 0; r < rounds; r++) {
		for (i = 0; i < 3; i++) {
			which = r % 2 ? 2 - i : i;
			cork = which == 2;
			if (which == 1)
				c = bench_smtp_path(t, total, per);
			else
				c = bench_smtp_alone(server, total, per, bm,
				    NULL);
			cork = 0;
			if (c < 0)
				return 1;
			c = c / total * 1e6;
			if (which == 0)
				alone[r] = c;
			else if (which == 1)
				path[r] = c;
			else
				corked[r] = c;
		}
		ratio[r] = path[r] / alone[r];
		printf("  round %d: libESMTP alone %.2f us, transport %.2f us, "
		    "libESMTP alone corked %.2f us CPU per message\n", r + 1,
		    alone[r], path[r], corked[r]);
	}
	a = bench_smtp_median(alone, rounds);
	p = bench_smtp_median(path, rounds);
	k = bench_smtp_median(corked, rounds);
	c = bench_smtp_median(ratio, rounds);
	printf("bench_smtp: %d rounds of %d messages of %d bytes, %d per "
	    "session\n", rounds, total, msg_len, per);
	printf("  medians: libESMTP alone %.2f us, digestd's SMTP path %.2f "
	    "us (ratio %.3f; median of the rounds' ratios %.3f), libESMTP "
	    "alone corked %.2f us CPU per message\n", a, p, p / a, c, k);
	printf("benchmark=smtp_path messages=%d bytes=%d per_session=%d "
	    "rounds=%d alone_us=%.3f path_us=%.3f ratio=%.4f "
	    "round_ratio=%.4f alone_corked_us=%.3f\n", total, msg_len, per,
	    rounds, a, p, p / a, c, k);
	transport_smtp_ops.close(t);
	config_free(cfg);
	return 0;
}

int
main(int argc, char **argv)
{
	struct bmsg *bm;
	char server[64];
	double cpu, wall;
	int ch, port = 0, total = 20000, per = 500, size = 6400, rounds = 0;

	while ((ch = getopt(argc, argv, "kp:n:m:s:r:")) != -1) {
		switch (ch) {
		case 'k':
			cork = 1;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'n':
			total = atoi(optarg);
			break;
		case 'm':
			per = atoi(optarg);
			break;
		case 's':
			size = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (port <= 0 || port > 65535 || total < 1 || per < 1 || size < 64 ||
	    rounds < 0)
		goto usage;
	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	server_port = port;
	if ((msg_data = bench_smtp_message(size, &msg_len)) == NULL ||
	    (bm = calloc((size_t)per, sizeof(*bm))) == NULL) {
		fprintf(stderr, "bench_smtp: out of memory\n");
		return 1;
	}
	if (rounds > 0)
		return bench_smtp_compare(server, port, total, per, rounds,
		    bm);

	if ((cpu = bench_smtp_alone(server, total, per, bm, &wall)) < 0)
		return 1;
	printf("bench_smtp: %d messages of %d bytes, %d per session, in "
	    "%.2f s (%.2f s CPU)\n", total, msg_len, per, wall, cpu);
	printf("  %.0f messages/s, %.2f us CPU per message\n", total / wall,
	    cpu / total * 1e6);
	printf("benchmark=smtp messages=%d bytes=%d per_session=%d "
	    "seconds=%.3f cpu_seconds=%.3f us_per_message=%.3f\n", total,
	    msg_len, per, wall, cpu, cpu / total * 1e6);
	return 0;
usage:
	fprintf(stderr, "usage: bench_smtp [-k] -p port [-n messages] "
	    "[-m per_session] [-s size] [-r rounds]\n");
	return 2;
}
