/*
 * The supervisor's HTTP endpoint (SPEC 7), served by libevent's evhttp from
 * the supervisor's own loop: /metrics, /healthz, /readyz and /status.
 *
 * Every answer is built in memory from the shared segment and the
 * supervisor's totals, with no I/O other than the socket itself, so a
 * scrape can never hold up reaping or signals.  Only GET and HEAD are
 * served.
 *
 * evhttp in libevent 2.1 has no limit on connections and only an idle
 * timeout, so this file keeps its own book of them (http_conn.c): at most
 * http_max_connections are open, a connection that has waited a moment for
 * a request gives way to a new client when every place is taken, a first
 * request must be in whole within 5 s of the accept however slowly it
 * trickles, and when accept() runs out of descriptors the listener rests
 * for a moment instead of spinning.  The book learns of a connection in
 * evhttp's bufferevent callback, the one hook 2.1 offers at accept time,
 * and of its end in the connection's close callback.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "exposition.h"
#include "http_conn.h"
#include "http_parse.h"
#include "log.h"
#include "supervisor.h"
#include "util.h"

#define HTTP_TIMEOUT_S 10		/* evhttp's own idle timeout */
#define HTTP_MAX_HEADERS 16384
#define HTTP_BACKLOG 511		/* clients wait here past the cap */
#define HTTP_MAX_BODY 4096		/* enough to answer 405 */
#define HTTP_ACCEPT_PAUSE_MS 250	/* rest after accept() fails */
#define HTTP_WARN_INTERVAL_MS 60000	/* a warning of a kind per minute */

/*
 * A connection evhttp serves, as the book knows it.  Created in the
 * bufferevent callback, before evhttp has made the connection itself;
 * adopted (evcon set, close callback hooked) once the accept is done, in
 * the same turn of the loop; freed in the close callback.
 */
struct http_client {
	struct http_conn conn;		/* the book's entry */
	struct evhttp_connection *evcon; /* until adopted, NULL */
	struct bufferevent *bev;	/* evhttp's, made by us */
	struct event *deadline;
	int fd;
	int refuse;			/* over the cap, nobody gave way */
	SLIST_ENTRY(http_client) adopt_entry;
};

/*
 * A listening socket, and the event that watches it while every place is
 * taken: a client then waiting in the backlog makes a connection give way
 * before it is accepted, so that no more than the cap are ever open.
 */
struct http_listener {
	struct evhttp_bound_socket *bound;
	struct event *watch;
	SLIST_ENTRY(http_listener) entry;
};

static struct evhttp *http_server;
static SLIST_HEAD(, http_listener) http_listeners =
    SLIST_HEAD_INITIALIZER(http_listeners);
static int http_listen_loopback = 1;	/* every bound address loopback */

static struct http_conns http_book;
static SLIST_HEAD(, http_client) http_unadopted =
    SLIST_HEAD_INITIALIZER(http_unadopted);
static struct http_client **http_byfd;	/* adopted clients by descriptor */
static size_t http_nbyfd;
static struct event *http_adopt_ev;
static struct event *http_gate_ev;
static enum http_gate http_gate_state = HTTP_GATE_ACCEPT;
static int64_t http_paused_until;	/* after accept() failed, in ms */
static uint64_t http_nofile;		/* RLIMIT_NOFILE at start */
static int http_cap_configured;
static struct http_ratelimit http_rl_accept, http_rl_full;

static void http_gate(void);
static void http_accept_error_cb(struct evconnlistener *, void *);
static void http_watch_cb(evutil_socket_t, short, void *);

static int64_t
http_now(void)
{
	return now_mono_ns() / 1000000;
}

/* Split "host:port" or "[v6]:port" into host and port. */
static int
http_split_listen(const char *addr, char *host, size_t hostlen, char *port,
    size_t portlen)
{
	const char *p, *end;
	size_t n;

	if (*addr == '[') {
		end = strchr(addr, ']');
		if (end == NULL || end[1] != ':')
			return -1;
		p = addr + 1;
		n = end - p;
		end++;
	} else {
		end = strrchr(addr, ':');
		if (end == NULL)
			return -1;
		p = addr;
		n = end - p;
		/* An unbracketed v6 address would be ambiguous. */
		if (memchr(p, ':', n) != NULL)
			return -1;
	}
	if (n == 0 || n >= hostlen || strlen(end + 1) == 0 ||
	    strlen(end + 1) >= portlen)
		return -1;
	memcpy(host, p, n);
	host[n] = '\0';
	strlcpy(port, end + 1, portlen);
	return 0;
}

/* Bind and listen on every address host:port resolves to (numerically). */
static int
http_bind(struct event_base *base, const char *addr, char *err,
    size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	struct http_listener *l;
	struct evhttp_bound_socket *b;
	char host[256], port[16];
	int fd, on = 1, rc, bound = 0, saved = 0;
	int64_t portnum;

	if (http_split_listen(addr, host, sizeof(host), port,
	    sizeof(port)) == -1 ||
	    parse_i64(port, 1, 65535, &portnum) == -1) {
		snprintf(err, errlen, "bad address \"%s\" (want host:port "
		    "or [v6]:port)", addr);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (strcmp(host, "*") == 0) {
		rc = getaddrinfo(NULL, port, &hints, &res);
	} else
		rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s", gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd == -1) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		/* Each family gets its own socket: "*" binds both. */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on,
			    sizeof(on));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
		    listen(fd, HTTP_BACKLOG) == -1) {
			saved = errno;
			close(fd);
			continue;
		}
		if ((b = evhttp_accept_socket_with_handle(http_server,
		    fd)) == NULL) {
			saved = errno;
			close(fd);
			continue;
		}
		evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(b),
		    http_accept_error_cb);
		l = xcalloc(1, sizeof(*l));
		l->bound = b;
		if ((l->watch = event_new(base, fd, EV_READ | EV_PERSIST,
		    http_watch_cb, NULL)) == NULL)
			fatalx("http: event_new");
		SLIST_INSERT_HEAD(&http_listeners, l, entry);
		if (!http_addr_loopback(ai->ai_addr, ai->ai_addrlen))
			http_listen_loopback = 0;
		bound++;
	}
	freeaddrinfo(res);
	if (bound == 0) {
		snprintf(err, errlen, "%s", strerror(saved ? saved :
		    EADDRNOTAVAIL));
		return -1;
	}
	return 0;
}

/* The tail of a rate-limited warning: how many were held back. */
static const char *
http_held(uint64_t held)
{
	static char buf[64];

	if (held == 0)
		return "";
	snprintf(buf, sizeof(buf), " (%" PRIu64 " more since the last one)",
	    held);
	return buf;
}

/* Accept, watch or neither, on every listening socket. */
static void
http_gate_set(enum http_gate state)
{
	struct http_listener *l;
	struct evconnlistener *lev;

	if (state == http_gate_state)
		return;
	SLIST_FOREACH(l, &http_listeners, entry) {
		lev = evhttp_bound_socket_get_listener(l->bound);
		if (state == HTTP_GATE_ACCEPT)
			evconnlistener_enable(lev);
		else
			evconnlistener_disable(lev);
		if (state == HTTP_GATE_WATCH)
			event_add(l->watch, NULL);
		else
			event_del(l->watch);
	}
	http_gate_state = state;
}

/* The cap in force; says so when the open-file limit lowers it. */
static int
http_cap(void)
{
	int configured = sup->cfg->supervisor.http_max_connections;
	int cap = http_cap_effective(configured, http_nofile);

	if (configured != http_cap_configured) {
		http_cap_configured = configured;
		if (cap < configured)
			log_warnx("http_max_connections %d lowered to %d, half "
			    "the open-file limit (%" PRIu64 ")", configured,
			    cap, http_nofile);
	}
	return cap;
}

/*
 * Accept, watch for a client to make room for, or neither, as the book
 * and a rest after a failed accept() say; when neither, look again when a
 * waiting connection can give way or the rest ends.  Called after every
 * change to the book.
 */
static void
http_gate(void)
{
	struct timeval tv;
	int64_t now = http_now(), wake;
	enum http_gate state;

	state = http_conns_gate(&http_book, http_cap(), now, http_paused_until,
	    &wake);
	http_gate_set(state);
	if (state == HTTP_GATE_SHUT && wake >= 0)
		evtimer_add(http_gate_ev, tv_ms(&tv, wake > now ?
		    wake - now : 1));
	else
		evtimer_del(http_gate_ev);
}

static void
http_gate_cb(evutil_socket_t fd, short what, void *arg)
{
	http_gate();
}

/* (Re)arm a client's deadline for its state. */
static void
http_client_arm(struct http_client *c)
{
	struct timeval tv;
	int64_t left = http_conn_deadline(&c->conn) - http_now();

	evtimer_add(c->deadline, tv_ms(&tv, left > 0 ? left : 0));
}

/* Take c out of the book and free it (its connection is gone). */
static void
http_client_forget(struct http_client *c)
{
	http_conn_close(&http_book, &c->conn);
	if (c->fd >= 0 && (size_t)c->fd < http_nbyfd && http_byfd[c->fd] == c)
		http_byfd[c->fd] = NULL;
	event_free(c->deadline);
	free(c);
}

/*
 * evhttp frees a connection: on a client's close, an error, its own idle
 * timeout, or our evhttp_connection_free().  Called once per connection,
 * with its descriptor still open.
 */
static void
http_close_cb(struct evhttp_connection *evcon, void *arg)
{
	http_client_forget(arg);
	http_gate();
}

/* Close the connection of an adopted client (the close callback forgets it). */
static void
http_client_drop(struct http_client *c)
{
	evhttp_connection_free(c->evcon);
}

static void
http_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_client *c = arg;

	log_debug("http: closing a connection %s", c->conn.state ==
	    HTTP_CONN_FIRST ? "without a whole request 5s after the accept" :
	    c->conn.state == HTTP_CONN_BUSY ? "whose answer took over 10s" :
	    "idle for 10s");
	http_client_drop(c);
}

/*
 * Every place is taken and a client needs one: the connection that has
 * waited longest for a request gives way, if it has waited a moment.
 * 0 when one did, -1 when none could.
 */
static int
http_make_room(int64_t now)
{
	struct http_conn *victim;
	struct http_client *c;
	uint64_t held;

	victim = http_conns_victim(&http_book, now);
	if (victim == NULL)
		return -1;
	c = (struct http_client *)victim;
	if (c->evcon == NULL)
		return -1;
	if (http_ratelimit_pass(&http_rl_full, now, HTTP_WARN_INTERVAL_MS,
	    &held))
		log_warnx("http: every place taken (http_max_connections "
		    "%d): closing the connections waiting longest for a "
		    "request%s", http_cap(), http_held(held));
	http_client_drop(c);
	return 0;
}

/*
 * A client waits in the backlog and every place is taken: the connection
 * waiting longest gives way (its close opens the gate), then the client
 * is accepted.
 */
static void
http_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	if (http_make_room(http_now()) == -1)
		http_gate();
}

/* Index the adopted client by its descriptor; 0 or -1 (no memory). */
static int
http_byfd_set(struct http_client *c)
{
	struct http_client **t;
	size_t n;

	if (c->fd < 0)
		return -1;
	if ((size_t)c->fd >= http_nbyfd) {
		n = http_nbyfd ? http_nbyfd : 64;
		while (n <= (size_t)c->fd)
			n *= 2;
		if ((t = reallocarray(http_byfd, n, sizeof(*t))) == NULL)
			return -1;
		memset(t + http_nbyfd, 0, (n - http_nbyfd) * sizeof(*t));
		http_byfd = t;
		http_nbyfd = n;
	}
	http_byfd[c->fd] = c;
	return 0;
}

/*
 * After the accepts of this turn: find the connection evhttp made around
 * each new bufferevent, hook its close, and start its deadline.  evhttp
 * gives each of its bufferevents the connection as callback argument; a
 * bufferevent it has freed already has no callbacks left (our reference
 * keeps the struct readable until here).
 */
static void
http_adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_client *c;
	void *cbarg;

	while ((c = SLIST_FIRST(&http_unadopted)) != NULL) {
		SLIST_REMOVE_HEAD(&http_unadopted, adopt_entry);
		cbarg = NULL;
		bufferevent_getcb(c->bev, NULL, NULL, NULL, &cbarg);
		if (cbarg == NULL ||
		    evhttp_connection_get_bufferevent(cbarg) != c->bev) {
			/*
			 * Gone already, or never made (evhttp out of
			 * memory): then the bufferevent is evhttp's to
			 * leak, not ours to free.
			 */
			bufferevent_decref(c->bev);
			http_client_forget(c);
			continue;
		}
		bufferevent_decref(c->bev);
		c->evcon = cbarg;
		c->fd = bufferevent_getfd(c->bev);
		evhttp_connection_set_closecb(c->evcon, http_close_cb, c);
		if (c->refuse || http_byfd_set(c) == -1) {
			http_client_drop(c);
			continue;
		}
		http_client_arm(c);
	}
	http_gate();
}

/*
 * evhttp accepted a connection and asks for its bufferevent: the moment
 * the book counts it.  The gate stops accepting at the cap, so this is
 * over it only after a reload lowered the cap: then the longest waiting
 * connection gives way, or the new one is closed as soon as it is
 * adopted.  NULL lets evhttp make its own, unbooked: only when memory
 * runs out.
 */
static struct bufferevent *
http_bev_cb(struct event_base *base, void *arg)
{
	struct http_client *c;
	int64_t now = http_now();

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	/* As evhttp makes them: it closes the descriptor itself, at once. */
	if ((c->bev = bufferevent_socket_new(base, -1, 0)) == NULL) {
		free(c);
		return NULL;
	}
	if ((c->deadline = evtimer_new(base, http_deadline_cb, c)) == NULL) {
		bufferevent_free(c->bev);
		free(c);
		return NULL;
	}
	bufferevent_incref(c->bev);
	c->fd = -1;
	http_conn_open(&http_book, &c->conn, now);
	SLIST_INSERT_HEAD(&http_unadopted, c, adopt_entry);
	event_active(http_adopt_ev, EV_TIMEOUT, 1);
	if (http_book.open > http_cap() && http_make_room(now) == -1)
		c->refuse = 1;
	http_gate();
	return c->bev;
}

/*
 * accept() failed with something other than "try again": out of
 * descriptors (EMFILE, ENFILE) or memory, mostly.  A waiting connection
 * gives way if one can, and the loop accepts again; else the listener
 * rests for a moment rather than spin on a pending connection it cannot
 * take, with one warning a minute.
 */
static void
http_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	int64_t now = http_now();
	uint64_t held;

	if ((err == EMFILE || err == ENFILE) && http_make_room(now) == 0)
		return;
	http_paused_until = now + HTTP_ACCEPT_PAUSE_MS;
	if (http_ratelimit_pass(&http_rl_accept, now, HTTP_WARN_INTERVAL_MS,
	    &held))
		log_warnx("http: accept: %s; not accepting for %dms%s",
		    strerror(err), HTTP_ACCEPT_PAUSE_MS, http_held(held));
	http_gate();
}

/* The booked client of a request's connection, or NULL. */
static struct http_client *
http_client_of(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct http_client *c;
	evutil_socket_t fd;

	if (evcon == NULL)
		return NULL;
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
	if (fd < 0 || (size_t)fd >= http_nbyfd)
		return NULL;
	c = http_byfd[fd];
	return c != NULL && c->evcon == evcon ? c : NULL;
}

/* The answer is written: the connection waits for the next request. */
static void
http_answered_cb(struct evhttp_request *req, void *arg)
{
	struct http_client *c = arg;

	http_conn_idle(&http_book, &c->conn, http_now());
	http_client_arm(c);
	http_gate();
}

/* A whole request was read: the connection is busy until answered. */
static void
http_client_busy(struct evhttp_request *req)
{
	struct http_client *c = http_client_of(req);

	if (c == NULL)
		return;
	http_conn_busy(&http_book, &c->conn, http_now());
	http_client_arm(c);
	evhttp_request_set_on_complete_cb(req, http_answered_cb, c);
	http_gate();
}

static void
http_reply(struct evhttp_request *req, int code, const char *reason,
    const char *ctype, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void
http_text(struct evhttp_request *req, int code, const char *reason,
    const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add(b, text, strlen(text));
	http_reply(req, code, reason, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static void
http_metrics(struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evbuffer *b;
	enum expo_format fmt;

	fmt = expo_negotiate(evhttp_find_header(in, "Accept"));
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	expo_render(b, sup, fmt);
	http_reply(req, HTTP_OK, "OK", expo_content_type(fmt), b);
	evbuffer_free(b);
}

/*
 * Whether the request carries the web console's password (HTTP basic
 * auth), which would let a peer that is not loopback read /status too.
 * There is no such password yet: when console_password_file exists, check
 * the Authorization header against it here.
 */
static int
http_console_auth(struct evhttp_request *req)
{
	return 0;
}

/* A request from a loopback address? */
static int
http_peer_loopback(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	const struct sockaddr *sa;

	if (evcon == NULL || (sa = evhttp_connection_get_addr(evcon)) == NULL)
		return 0;
	return http_addr_loopback(sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
}

/*
 * /status shows pids, job ids and user-id cursors: for the operator's
 * network only.  On a listener that is not loopback, only loopback peers
 * see it.  ?html (or html among other parameters) asks for the page for
 * people.
 */
static void
http_status(struct evhttp_request *req, const char *query)
{
	struct evbuffer *b;

	if (!http_status_allowed(http_listen_loopback,
	    http_peer_loopback(req), http_console_auth(req))) {
		http_text(req, 403, "Forbidden", "/status is served to "
		    "loopback clients only\n");
		return;
	}
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (http_query_has(query, "html")) {
		status_render_html(b, sup);
		http_reply(req, HTTP_OK, "OK", "text/html; charset=utf-8", b);
	} else {
		status_render_json(b, sup);
		http_reply(req, HTTP_OK, "OK", "application/json", b);
	}
	evbuffer_free(b);
}

/* Every request lands here: route on the path, refuse all but GET/HEAD. */
static void
http_request_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	http_client_busy(req);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		http_text(req, 405, "Method Not Allowed",
		    "method not allowed\n");
		return;
	}
	switch (http_route(path)) {
	case HTTP_ROUTE_METRICS:
		http_metrics(req);
		break;
	case HTTP_ROUTE_HEALTHZ:
		http_text(req, HTTP_OK, "OK", "ok\n");
		break;
	case HTTP_ROUTE_READYZ:
		if (supervisor_ready(sup))
			http_text(req, HTTP_OK, "OK", "ready\n");
		else
			http_text(req, 503, "Service Unavailable",
			    "not ready\n");
		break;
	case HTTP_ROUTE_STATUS:
		http_status(req, query);
		break;
	case HTTP_ROUTE_NOT_FOUND:
		http_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
		break;
	}
}

int
http_listen(struct supervisor *s, const char *addr, char *err, size_t errlen)
{
	struct rlimit rl;

	if (http_server == NULL) {
		http_server = evhttp_new(s->base);
		http_adopt_ev = event_new(s->base, -1, 0, http_adopt_cb, NULL);
		http_gate_ev = evtimer_new(s->base, http_gate_cb, NULL);
		if (http_server == NULL || http_adopt_ev == NULL ||
		    http_gate_ev == NULL) {
			snprintf(err, errlen, "evhttp_new failed");
			return -1;
		}
		http_conns_init(&http_book);
		http_nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur != RLIM_INFINITY ? (uint64_t)rl.rlim_cur :
		    UINT64_MAX;
		evhttp_set_timeout(http_server, HTTP_TIMEOUT_S);
		evhttp_set_max_headers_size(http_server, HTTP_MAX_HEADERS);
		evhttp_set_max_body_size(http_server, HTTP_MAX_BODY);
		/*
		 * Let every method through to the callback, which answers
		 * 405 with an Allow header rather than evhttp's bare 501.
		 */
		evhttp_set_allowed_methods(http_server, EVHTTP_REQ_GET |
		    EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
		    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
		    EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE |
		    EVHTTP_REQ_CONNECT);
		evhttp_set_gencb(http_server, http_request_cb, NULL);
		evhttp_set_bevcb(http_server, http_bev_cb, NULL);
	}
	if (http_bind(s->base, addr, err, errlen) == -1)
		return -1;
	(void)http_cap();
	return 0;
}
