/*
 * A hardened evhttp server, for the metrics endpoint (http.c) and the web
 * console (console.c).
 *
 * evhttp in libevent 2.1 has no limit on connections and only an idle
 * timeout, so this file keeps its own book of them (http_conn.c): at most
 * the cap are open, a connection that has waited a moment for a request
 * gives way to a new client when every place is taken, a first request
 * must be in whole within 5 s of the accept however slowly it trickles,
 * and when accept() runs out of descriptors the listener rests for a
 * moment instead of spinning.  The book learns of a connection in
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
#include <signal.h>
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

#include "http_conn.h"
#include "http_parse.h"
#include "http_server.h"
#include "log.h"
#include "util.h"

#define HTTP_TIMEOUT_S 10		/* evhttp's own idle timeout */
#define HTTP_MAX_HEADERS 16384
#define HTTP_BACKLOG 511		/* clients wait here past the cap */
#define HTTP_MAX_BODY 4096		/* a 405, or a console form */
#define HTTP_ACCEPT_PAUSE_MS 250	/* rest after accept() fails */
#define HTTP_WARN_INTERVAL_MS 60000	/* a warning of a kind per minute */

struct http_server;

/*
 * A connection evhttp serves, as the book knows it.  Created in the
 * bufferevent callback, before evhttp has made the connection itself;
 * adopted (evcon set, close callback hooked) once the accept is done, in
 * the same turn of the loop; freed in the close callback.
 */
struct http_client {
	struct http_conn conn;		/* the book's entry */
	struct http_server *hs;
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

struct http_server {
	const char *name;		/* for the log */
	struct event_base *base;
	struct evhttp *evh;
	http_handler handler;
	http_cap_fn cap_fn;
	void *arg;
	SLIST_HEAD(, http_listener) listeners;
	struct http_conns book;
	SLIST_HEAD(, http_client) unadopted;
	struct http_client **byfd;	/* adopted clients by descriptor */
	size_t nbyfd;
	struct event *adopt_ev;
	struct event *gate_ev;
	enum http_gate gate_state;
	int64_t paused_until;		/* after accept() failed, in ms */
	uint64_t nofile;		/* RLIMIT_NOFILE at start */
	int cap_configured;
	int closing;			/* told to go: accepts no more */
	struct http_ratelimit rl_accept, rl_full;
	SLIST_ENTRY(http_server) entry;
};

/* Every server of this process, to find one from its evhttp. */
static SLIST_HEAD(, http_server) http_servers =
    SLIST_HEAD_INITIALIZER(http_servers);

static void http_gate(struct http_server *);
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

int
http_bind_sockets(const char *addr, int *fds, int *nfds, int *loopback,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	char host[256], port[16];
	int fd, on = 1, rc, saved = 0;
	int64_t portnum;

	*nfds = 0;
	*loopback = 1;
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
	for (ai = res; ai != NULL && *nfds < HTTP_LISTEN_MAX;
	    ai = ai->ai_next) {
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
		if (!http_addr_loopback(ai->ai_addr, ai->ai_addrlen))
			*loopback = 0;
		fds[(*nfds)++] = fd;
	}
	freeaddrinfo(res);
	if (*nfds == 0) {
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
http_gate_set(struct http_server *hs, enum http_gate state)
{
	struct http_listener *l;
	struct evconnlistener *lev;

	if (state == hs->gate_state)
		return;
	SLIST_FOREACH(l, &hs->listeners, entry) {
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
	hs->gate_state = state;
}

/* The cap in force; says so when the open-file limit lowers it. */
static int
http_cap(struct http_server *hs)
{
	int configured = hs->cap_fn(hs->arg);
	int cap = http_cap_effective(configured, hs->nofile);

	if (configured != hs->cap_configured) {
		hs->cap_configured = configured;
		if (cap < configured)
			log_warnx("%s: http_max_connections %d lowered to %d, "
			    "half the open-file limit (%" PRIu64 ")", hs->name,
			    configured, cap, hs->nofile);
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
http_gate(struct http_server *hs)
{
	struct timeval tv;
	int64_t now = http_now(), wake;
	enum http_gate state;

	if (hs->closing) {
		http_gate_set(hs, HTTP_GATE_SHUT);
		evtimer_del(hs->gate_ev);
		return;
	}
	state = http_conns_gate(&hs->book, http_cap(hs), now,
	    hs->paused_until, &wake);
	http_gate_set(hs, state);
	if (state == HTTP_GATE_SHUT && wake >= 0)
		evtimer_add(hs->gate_ev, tv_ms(&tv, wake > now ?
		    wake - now : 1));
	else
		evtimer_del(hs->gate_ev);
}

static void
http_gate_cb(evutil_socket_t fd, short what, void *arg)
{
	http_gate(arg);
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
	struct http_server *hs = c->hs;

	http_conn_close(&hs->book, &c->conn);
	if (c->fd >= 0 && (size_t)c->fd < hs->nbyfd && hs->byfd[c->fd] == c)
		hs->byfd[c->fd] = NULL;
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
	struct http_client *c = arg;
	struct http_server *hs = c->hs;

	http_client_forget(c);
	http_gate(hs);
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

	log_debug("%s: closing a connection %s", c->hs->name,
	    c->conn.state == HTTP_CONN_FIRST ? "without a whole request 5s "
	    "after the accept" : c->conn.state == HTTP_CONN_BUSY ? "whose "
	    "answer took over 10s" : "idle for 10s");
	http_client_drop(c);
}

/*
 * Every place is taken and a client needs one: the connection that has
 * waited longest for a request gives way, if it has waited a moment.
 * 0 when one did, -1 when none could.
 */
static int
http_make_room(struct http_server *hs, int64_t now)
{
	struct http_conn *victim;
	struct http_client *c;
	uint64_t held;

	victim = http_conns_victim(&hs->book, now);
	if (victim == NULL)
		return -1;
	c = (struct http_client *)victim;
	if (c->evcon == NULL)
		return -1;
	if (http_ratelimit_pass(&hs->rl_full, now, HTTP_WARN_INTERVAL_MS,
	    &held))
		log_warnx("%s: every place taken (http_max_connections "
		    "%d): closing the connections waiting longest for a "
		    "request%s", hs->name, http_cap(hs), http_held(held));
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
	struct http_server *hs = arg;

	if (http_make_room(hs, http_now()) == -1)
		http_gate(hs);
}

/* Index the adopted client by its descriptor; 0 or -1 (no memory). */
static int
http_byfd_set(struct http_client *c)
{
	struct http_server *hs = c->hs;
	struct http_client **t;
	size_t n;

	if (c->fd < 0)
		return -1;
	if ((size_t)c->fd >= hs->nbyfd) {
		n = hs->nbyfd ? hs->nbyfd : 64;
		while (n <= (size_t)c->fd)
			n *= 2;
		if ((t = reallocarray(hs->byfd, n, sizeof(*t))) == NULL)
			return -1;
		memset(t + hs->nbyfd, 0, (n - hs->nbyfd) * sizeof(*t));
		hs->byfd = t;
		hs->nbyfd = n;
	}
	hs->byfd[c->fd] = c;
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
	struct http_server *hs = arg;
	struct http_client *c;
	void *cbarg;

	while ((c = SLIST_FIRST(&hs->unadopted)) != NULL) {
		SLIST_REMOVE_HEAD(&hs->unadopted, adopt_entry);
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
	http_gate(hs);
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
	struct http_server *hs = arg;
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
	c->hs = hs;
	c->fd = -1;
	http_conn_open(&hs->book, &c->conn, now);
	SLIST_INSERT_HEAD(&hs->unadopted, c, adopt_entry);
	event_active(hs->adopt_ev, EV_TIMEOUT, 1);
	if (hs->book.open > http_cap(hs) && http_make_room(hs, now) == -1)
		c->refuse = 1;
	http_gate(hs);
	return c->bev;
}

/*
 * accept() failed with something other than "try again": out of
 * descriptors (EMFILE, ENFILE) or memory, mostly.  A waiting connection
 * gives way if one can, and the loop accepts again; else the listener
 * rests for a moment rather than spin on a pending connection it cannot
 * take, with one warning a minute.  The listener's argument is evhttp's
 * own, so the server is found from it.
 */
static void
http_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct http_server *hs;
	int err = EVUTIL_SOCKET_ERROR();
	int64_t now = http_now();
	uint64_t held;

	SLIST_FOREACH(hs, &http_servers, entry)
		if (hs->evh == arg)
			break;
	if (hs == NULL)
		return;
	if ((err == EMFILE || err == ENFILE) && http_make_room(hs, now) == 0)
		return;
	hs->paused_until = now + HTTP_ACCEPT_PAUSE_MS;
	if (http_ratelimit_pass(&hs->rl_accept, now, HTTP_WARN_INTERVAL_MS,
	    &held))
		log_warnx("%s: accept: %s; not accepting for %dms%s", hs->name,
		    strerror(err), HTTP_ACCEPT_PAUSE_MS, http_held(held));
	http_gate(hs);
}

/* The booked client of a request's connection, or NULL. */
static struct http_client *
http_client_of(struct http_server *hs, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct http_client *c;
	evutil_socket_t fd;

	if (evcon == NULL)
		return NULL;
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
	if (fd < 0 || (size_t)fd >= hs->nbyfd)
		return NULL;
	c = hs->byfd[fd];
	return c != NULL && c->evcon == evcon ? c : NULL;
}

/* The answer is written: the connection waits for the next request. */
static void
http_answered_cb(struct evhttp_request *req, void *arg)
{
	struct http_client *c = arg;

	http_conn_idle(&c->hs->book, &c->conn, http_now());
	http_client_arm(c);
	http_gate(c->hs);
}

/*
 * Every request lands here: the connection is busy until answered, then
 * the server's handler answers it.
 */
static void
http_request_cb(struct evhttp_request *req, void *arg)
{
	struct http_server *hs = arg;
	struct http_client *c = http_client_of(hs, req);

	if (c != NULL) {
		http_conn_busy(&hs->book, &c->conn, http_now());
		http_client_arm(c);
		evhttp_request_set_on_complete_cb(req, http_answered_cb, c);
		http_gate(hs);
	}
	hs->handler(req, hs->arg);
}

struct http_server *
http_server_new(struct event_base *base, const char *name,
    http_handler handler, http_cap_fn cap, void *arg, char *err,
    size_t errlen)
{
	struct http_server *hs;
	struct rlimit rl;

	if ((hs = calloc(1, sizeof(*hs))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	hs->name = name;
	hs->base = base;
	hs->handler = handler;
	hs->cap_fn = cap;
	hs->arg = arg;
	hs->gate_state = HTTP_GATE_ACCEPT;
	SLIST_INIT(&hs->listeners);
	SLIST_INIT(&hs->unadopted);
	http_conns_init(&hs->book);
	hs->evh = evhttp_new(base);
	hs->adopt_ev = event_new(base, -1, 0, http_adopt_cb, hs);
	hs->gate_ev = evtimer_new(base, http_gate_cb, hs);
	if (hs->evh == NULL || hs->adopt_ev == NULL || hs->gate_ev == NULL) {
		snprintf(err, errlen, "evhttp_new failed");
		if (hs->evh != NULL)
			evhttp_free(hs->evh);
		if (hs->adopt_ev != NULL)
			event_free(hs->adopt_ev);
		if (hs->gate_ev != NULL)
			event_free(hs->gate_ev);
		free(hs);
		return NULL;
	}
	hs->nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY ? (uint64_t)rl.rlim_cur : UINT64_MAX;
	evhttp_set_timeout(hs->evh, HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(hs->evh, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(hs->evh, HTTP_MAX_BODY);
	/*
	 * Let every method through to the handler, which answers 405 with
	 * an Allow header rather than evhttp's bare 501.
	 */
	evhttp_set_allowed_methods(hs->evh, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
	    EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_gencb(hs->evh, http_request_cb, hs);
	evhttp_set_bevcb(hs->evh, http_bev_cb, hs);
	SLIST_INSERT_HEAD(&http_servers, hs, entry);
	(void)http_cap(hs);
	return hs;
}

int
http_server_accept(struct http_server *hs, int fd, char *err, size_t errlen)
{
	struct evhttp_bound_socket *b;
	struct http_listener *l;

	if ((b = evhttp_accept_socket_with_handle(hs->evh, fd)) == NULL) {
		snprintf(err, errlen, "evhttp_accept_socket: %s",
		    strerror(errno));
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(b),
	    http_accept_error_cb);
	l = xcalloc(1, sizeof(*l));
	l->bound = b;
	if ((l->watch = event_new(hs->base, fd, EV_READ | EV_PERSIST,
	    http_watch_cb, hs)) == NULL)
		fatalx("http: event_new");
	SLIST_INSERT_HEAD(&hs->listeners, l, entry);
	return 0;
}

void
http_reply(struct evhttp_request *req, int code, const char *reason,
    const char *ctype, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

void
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

int
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
 * Told to go (SIGTERM: a reload replaces this child): accept no more and
 * go once the connections in hand are answered, or after
 * HTTP_CLOSE_GRACE_MS.  The listening sockets stay open in the
 * supervisor, so a client that connects meanwhile waits in the backlog
 * for the next child.  Ends by SIGTERM, as the supervisor expects of a
 * child it replaced.
 */
#define HTTP_CLOSE_GRACE_MS	2000
#define HTTP_CLOSE_POLL_MS	20

static struct http_server *serving;
static int64_t closing_since;

static void
http_close_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct event *ev = arg;
	struct timeval tv;

	if (serving->book.open > 0 &&
	    http_now() - closing_since < HTTP_CLOSE_GRACE_MS) {
		evtimer_add(ev, tv_ms(&tv, HTTP_CLOSE_POLL_MS));
		return;
	}
	signal(SIGTERM, SIG_DFL);
	raise(SIGTERM);
	_exit(0);
}

static void
http_term_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event *poll = arg;

	if (serving->closing)
		return;
	serving->closing = 1;
	closing_since = http_now();
	http_gate(serving);
	http_close_poll_cb(-1, 0, poll);
}

void
http_server_serve(const char *name, const int *fds, int nfds,
    http_handler handler, http_cap_fn cap, void *arg)
{
	struct event_base *base;
	struct http_server *hs;
	struct event *term, *poll;
	char err[256];
	int i;

	if ((base = event_base_new()) == NULL) {
		log_warnx("%s: event_base_new failed", name);
		_exit(1);
	}
	if ((hs = http_server_new(base, name, handler, cap, arg, err,
	    sizeof(err))) == NULL) {
		log_warnx("%s: %s", name, err);
		_exit(1);
	}
	for (i = 0; i < nfds; i++)
		if (http_server_accept(hs, fds[i], err, sizeof(err)) == -1) {
			log_warnx("%s: %s", name, err);
			_exit(1);
		}
	serving = hs;
	if ((poll = evtimer_new(base, http_close_poll_cb,
	    event_self_cbarg())) == NULL ||
	    (term = evsignal_new(base, SIGTERM, http_term_cb, poll)) == NULL ||
	    evsignal_add(term, NULL) == -1) {
		log_warnx("%s: cannot watch SIGTERM", name);
		_exit(1);
	}
	event_base_dispatch(base);
	_exit(0);
}
