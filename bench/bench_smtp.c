/*
 * The floor under the SMTP transport: libESMTP alone sending the same
 * messages to the same server, with no rendering, no Redis and no
 * checkpoint, so that the end-to-end benchmark can tell what of a
 * worker's CPU per email is libESMTP's and what is ours.  One message of
 * about -s bytes (CRLF lines, a digest's headers), -m messages per
 * session, -n messages in all, to 127.0.0.1:-p (postfix's smtp-sink in
 * bench/bench_e2e.py).  Prints CPU microseconds per message.
 *
 *   build/bench/bench_smtp -p port [-n messages] [-m per_session] [-s size]
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

struct bmsg {
	int given;
	int ok;
};

static const char *msg_data;
static int msg_len;
static int server_port;

/* Hand libESMTP the whole message at once, as the transport does. */
static const char *
bench_smtp_msg_cb(void **ctx, int *len, void *arg)
{
	struct bmsg *b = arg;

	if (len == NULL) {
		b->given = 0;
		return NULL;
	}
	if (b->given) {
		*len = 0;
		return NULL;
	}
	b->given = 1;
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

int
main(int argc, char **argv)
{
	struct bmsg *bm;
	smtp_session_t ss;
	smtp_message_t m;
	char server[64];
	double c0, t0, cpu, wall;
	int ch, port = 0, total = 20000, per = 500, size = 6400;
	int i, j, k, ok = 0;

	while ((ch = getopt(argc, argv, "p:n:m:s:")) != -1) {
		switch (ch) {
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
		default:
			goto usage;
		}
	}
	if (port <= 0 || port > 65535 || total < 1 || per < 1 || size < 64)
		goto usage;
	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	server_port = port;
	if ((msg_data = bench_smtp_message(size, &msg_len)) == NULL ||
	    (bm = calloc((size_t)per, sizeof(*bm))) == NULL) {
		fprintf(stderr, "bench_smtp: out of memory\n");
		return 1;
	}

	c0 = bench_smtp_cpu();
	t0 = bench_smtp_now();
	for (i = 0; i < total; i += per) {
		k = total - i < per ? total - i : per;
		if ((ss = smtp_create_session()) == NULL)
			return 1;
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
			return 1;
		}
		smtp_enumerate_messages(ss, bench_smtp_count_cb, &ok);
		smtp_destroy_session(ss);
	}
	cpu = bench_smtp_cpu() - c0;
	wall = bench_smtp_now() - t0;
	if (ok != total) {
		fprintf(stderr, "bench_smtp: %d of %d messages accepted\n", ok,
		    total);
		return 1;
	}

	printf("bench_smtp: %d messages of %d bytes, %d per session, in "
	    "%.2f s (%.2f s CPU)\n", ok, msg_len, per, wall, cpu);
	printf("  %.0f messages/s, %.2f us CPU per message\n", ok / wall,
	    cpu / ok * 1e6);
	printf("benchmark=smtp messages=%d bytes=%d per_session=%d "
	    "seconds=%.3f cpu_seconds=%.3f us_per_message=%.3f\n", ok,
	    msg_len, per, wall, cpu, cpu / ok * 1e6);
	return 0;
usage:
	fprintf(stderr, "usage: bench_smtp -p port [-n messages] "
	    "[-m per_session] [-s size]\n");
	return 2;
}
