/*
 * The HTTP endpoint's book of open connections, without the sockets: how
 * many are open, which wait for a request (oldest first), when each must
 * have done what it is doing, which one gives way when a new client needs
 * its place, and whether the listener should accept.  http.c keeps one
 * http_conn in each connection it serves and calls these as evhttp
 * reports; the fuzzer drives them with any sequence of events.
 */
#ifndef DIGESTD_HTTP_CONN_H
#define DIGESTD_HTTP_CONN_H

#include <sys/queue.h>

#include <stdint.h>

/* A first request, line, headers and body, within this of the accept. */
#define HTTP_REQUEST_DEADLINE_MS 5000
/* An answer written, or the next request on a kept-alive connection read. */
#define HTTP_IDLE_DEADLINE_MS 10000
/*
 * A connection waiting this long for a request may give way to a new
 * client when every place is taken.  A client's request arrives with the
 * end of its handshake, so this only spares the ones not yet read.
 */
#define HTTP_RECLAIM_MS 250

enum http_conn_state {
	HTTP_CONN_FIRST,	/* reading its first request */
	HTTP_CONN_BUSY,		/* its whole request read, being answered */
	HTTP_CONN_IDLE		/* answered, kept for the next request */
};

struct http_conn {
	TAILQ_ENTRY(http_conn) entry;	/* on waiting, unless BUSY */
	enum http_conn_state state;
	int64_t since_ms;		/* when the state began */
};

TAILQ_HEAD(http_connq, http_conn);

struct http_conns {
	struct http_connq waiting;	/* FIRST or IDLE, oldest first */
	int open;
};

/* An empty book. */
void http_conns_init(struct http_conns *);

/* A connection accepted at now: FIRST, at the end of the waiting list. */
void http_conn_open(struct http_conns *, struct http_conn *, int64_t now);
/* Its request was read whole: BUSY, off the waiting list. */
void http_conn_busy(struct http_conns *, struct http_conn *, int64_t now);
/* Its answer was written: IDLE, at the end of the waiting list. */
void http_conn_idle(struct http_conns *, struct http_conn *, int64_t now);
/* It is gone, whatever its state. */
void http_conn_close(struct http_conns *, struct http_conn *);

/* When the connection must be done with its state, in ms. */
int64_t http_conn_deadline(const struct http_conn *);

/*
 * The connection that gives way to a new client: the one waiting longest,
 * if it has waited HTTP_RECLAIM_MS; else NULL.
 */
struct http_conn *http_conns_victim(struct http_conns *, int64_t now);

/* What the listener does. */
enum http_gate {
	HTTP_GATE_ACCEPT,	/* accept: there is room */
	HTTP_GATE_WATCH,	/* full: a client that comes makes room */
	HTTP_GATE_SHUT		/* full, nobody can give way yet; or resting */
};

/*
 * What the listener should do at now, given the cap and the end of a rest
 * after accept() failed (paused_until).  At HTTP_GATE_SHUT, *wake_ms is
 * when to look again (-1: only once a connection changes state or
 * closes).
 */
enum http_gate http_conns_gate(struct http_conns *, int cap, int64_t now,
    int64_t paused_until, int64_t *wake_ms);

/*
 * The cap in force: the configured one, but never more than half the
 * open-file limit (nofile), which leaves the supervisor descriptors for
 * its workers, its log and /proc whatever clients do; at least 1.
 */
int http_cap_effective(int configured, uint64_t nofile);

/* One warning per interval, with the count of those held back. */
struct http_ratelimit {
	int64_t next_ms;	/* no warning before */
	uint64_t held;		/* warnings held back since the last */
};

/*
 * 1 when a warning may be logged at now (then *held is how many were held
 * back since the last one, and the count restarts), else 0.
 */
int http_ratelimit_pass(struct http_ratelimit *, int64_t now,
    int64_t interval_ms, uint64_t *held);

#endif
