/*
 * libFuzzer target for what the HTTP endpoint decides from a client's
 * bytes, without sockets (supervisor/http_parse.c, supervisor/http_conn.c).
 *
 * An input starting with 'B' is a program for the book of connections:
 * each pair of bytes opens, busies, idles or closes a connection, moves
 * the clock, or asks for room under a cap, and after every step the book
 * must agree with a plain model of it (open count, the waiting list in
 * the order waits began, deadlines, who gives way, whether to accept).
 *
 * Any other input is a request as it reaches the endpoint: a first line
 * "PEER [L][A]" (the peer's address, textual or raw bytes; L: the listener
 * is loopback; A: the console's password was given), then the request
 * line and headers.  The target is parsed by libevent as evhttp does,
 * then routed; the Accept header is negotiated; /status access is decided.
 * Each answer is checked against a second, naive reading of the same
 * bytes.  A disagreement aborts, so libFuzzer keeps it.
 *
 * An input starting with 'C' is a request to the web console
 * (supervisor/console_parse.c): a line "METHOD PATH", an Authorization
 * line, a Cookie line, then a form body.  The route must be one of the
 * known ones, a session read from the cookie must be one the cookie
 * holds, its CSRF token must check and a changed one must not, every form
 * field read must survive a round trip through console_url, and nothing
 * console_html writes may hold markup or control characters.
 *
 * An input starting with 'U' is a request to the one-click unsubscribe
 * endpoint (supervisor/unsub_parse.c): a line with unsubscribe_url, a
 * line with the request target, a Content-Type line, then the POST body.
 * A path taken from the URL must start with '/' and be recognised as
 * itself; the target is parsed as evhttp does, and a link read from its
 * query must hold a canonical uid and gid and a lowercase token, survive
 * being written back as digestd writes it, and verify exactly when the
 * token is the one of its uid and gid; a One-Click body must name the
 * field.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "console_parse.h"
#include "http_conn.h"
#include "http_parse.h"
#include "unsub.h"
#include "unsub_parse.h"

#define FUZZ_MAX_CONNS 48

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* A copy of n bytes as a C string (NULs inside end it early, as in C). */
static char *
dup_n(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* The naive reading of a query: split at '&', compare the name. */
static int
model_query_has(const char *query, const char *name)
{
	char *copy, *p, *next, *eq;
	int found = 0;

	if (query == NULL)
		return 0;
	if ((copy = strdup(query)) == NULL)
		abort();
	for (p = copy; p != NULL; p = next) {
		next = strchr(p, '&');
		if (next != NULL)
			*next++ = '\0';
		if ((eq = strchr(p, '=')) != NULL)
			*eq = '\0';
		if (strcmp(p, name) == 0)
			found = 1;
	}
	free(copy);
	return found;
}

static void
check_route(const char *path)
{
	enum http_route r = http_route(path);
	static const char *const paths[] = {
		"/metrics", "/healthz", "/readyz", "/status"
	};

	if (r > HTTP_ROUTE_NOT_FOUND)
		abort();
	if (r == HTTP_ROUTE_NOT_FOUND) {
		for (size_t i = 0; path != NULL && i < 4; i++)
			if (strcmp(path, paths[i]) == 0)
				abort();
	} else if (path == NULL || strcmp(path, paths[r]) != 0)
		abort();
}

/* The peer of the first line: textual v4 or v6, else the raw bytes. */
static void
check_peer(const char *line, size_t len, int listen_lb, int auth)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	char addr[INET6_ADDRSTRLEN + 1];
	const uint8_t *a;
	socklen_t sl;
	int lb, model;
	size_t n;

	memset(&ss, 0, sizeof(ss));
	n = strcspn(line, " ");
	if (n >= sizeof(addr))
		n = sizeof(addr) - 1;
	memcpy(addr, line, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sl = sizeof(*sin);
		model = ((const uint8_t *)&sin->sin_addr)[0] == 127;
	} else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sl = sizeof(*sin6);
		a = sin6->sin6_addr.s6_addr;
		model = 1;
		for (n = 0; n < 15; n++)
			if (a[n] != 0)
				model = 0;
		model = model && a[15] == 1;
		if (!model) {
			model = a[10] == 0xff && a[11] == 0xff && a[12] == 127;
			for (n = 0; n < 10; n++)
				if (a[n] != 0)
					model = 0;
		}
	} else {
		/* Whatever the bytes say, with their own length. */
		sl = len < sizeof(ss) ? (socklen_t)len : sizeof(ss);
		memcpy(&ss, line, sl);
		lb = http_addr_loopback((struct sockaddr *)&ss, sl);
		if (lb && ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
			abort();
		if (lb && ss.ss_family == AF_INET && sl < sizeof(*sin))
			abort();
		if (lb && ss.ss_family == AF_INET6 && sl < sizeof(*sin6))
			abort();
		model = lb;
		goto access;
	}
	lb = http_addr_loopback((struct sockaddr *)&ss, sl);
	if (lb != model)
		abort();
	/* Cut short, no address is loopback. */
	if (http_addr_loopback((struct sockaddr *)&ss, sl - 1))
		abort();
access:
	if (http_status_allowed(listen_lb, lb, auth) !=
	    (listen_lb || lb || auth))
		abort();
}

static void
fuzz_request(const uint8_t *data, size_t size)
{
	const uint8_t *nl, *p = data, *end = data + size;
	char *line, *req, *sp, *target, *hdr, *next, *accept = NULL;
	struct evhttp_uri *uri;
	enum expo_format fmt;
	int listen_lb, auth;

	nl = memchr(p, '\n', size);
	line = dup_n(p, nl != NULL ? (size_t)(nl - p) : size);
	sp = strchr(line, ' ');
	listen_lb = sp != NULL && strchr(sp, 'L') != NULL;
	auth = sp != NULL && strchr(sp, 'A') != NULL;
	check_peer(line, nl != NULL ? (size_t)(nl - p) : size, listen_lb,
	    auth);
	free(line);
	if (nl == NULL)
		return;
	p = nl + 1;
	req = dup_n(p, (size_t)(end - p));

	/* The request line: METHOD SP TARGET SP VERSION. */
	next = strchr(req, '\n');
	if (next != NULL)
		*next++ = '\0';
	target = NULL;
	if ((sp = strchr(req, ' ')) != NULL) {
		target = sp + 1;
		if ((sp = strchr(target, ' ')) != NULL)
			*sp = '\0';
	}
	/* Headers: the first Accept counts, as in evhttp_find_header. */
	for (hdr = next; hdr != NULL && accept == NULL; hdr = next) {
		next = strchr(hdr, '\n');
		if (next != NULL)
			*next++ = '\0';
		hdr[strcspn(hdr, "\r")] = '\0';
		if (strncasecmp(hdr, "accept:", 7) == 0) {
			accept = hdr + 7;
			accept += strspn(accept, " \t");
		}
	}
	fmt = expo_negotiate(accept);
	if (fmt != EXPO_TEXT && fmt != EXPO_OPENMETRICS)
		abort();
	if (accept == NULL && fmt != EXPO_TEXT)
		abort();
	if (expo_content_type(fmt) == NULL)
		abort();

	if (target != NULL &&
	    (uri = evhttp_uri_parse_with_flags(target,
	    EVHTTP_URI_NONCONFORMANT)) != NULL) {
		const char *path = evhttp_uri_get_path(uri);
		const char *query = evhttp_uri_get_query(uri);

		check_route(path);
		if (http_query_has(query, "html") !=
		    model_query_has(query, "html"))
			abort();
		evhttp_uri_free(uri);
	}
	check_route(target);
	if (http_query_has(target, "html") != model_query_has(target, "html"))
		abort();
	free(req);
}

/* The book against a model: live connections and their states. */
struct model_conn {
	struct http_conn c;
	int live;
	uint64_t seq;		/* order the current wait began */
};

static void
check_book(struct http_conns *cs, struct model_conn *m, int n, int64_t now,
    int cap, int64_t paused_until)
{
	struct http_conn *c, *prev = NULL, *oldest = NULL;
	uint64_t oldest_seq = UINT64_MAX, prev_seq = 0;
	enum http_gate gate;
	int live = 0, waiting = 0, listed = 0, i;
	int64_t wake;

	for (i = 0; i < n; i++) {
		if (!m[i].live)
			continue;
		live++;
		if (m[i].c.state == HTTP_CONN_BUSY)
			continue;
		waiting++;
		if (m[i].seq < oldest_seq) {
			oldest_seq = m[i].seq;
			oldest = &m[i].c;
		}
		if (http_conn_deadline(&m[i].c) != m[i].c.since_ms +
		    (m[i].c.state == HTTP_CONN_FIRST ?
		    HTTP_REQUEST_DEADLINE_MS : HTTP_IDLE_DEADLINE_MS))
			abort();
	}
	if (cs->open != live)
		abort();
	TAILQ_FOREACH(c, &cs->waiting, entry) {
		struct model_conn *mc = (struct model_conn *)c;

		listed++;
		if (!mc->live || c->state == HTTP_CONN_BUSY)
			abort();
		if (prev != NULL && (mc->seq < prev_seq ||
		    c->since_ms < prev->since_ms))
			abort();
		prev = c;
		prev_seq = mc->seq;
	}
	if (listed != waiting || TAILQ_FIRST(&cs->waiting) != oldest)
		abort();
	c = http_conns_victim(cs, now);
	if (c != (oldest != NULL && now - oldest->since_ms >= HTTP_RECLAIM_MS ?
	    oldest : NULL))
		abort();
	gate = http_conns_gate(cs, cap, now, paused_until, &wake);
	if (now < paused_until) {
		if (gate != HTTP_GATE_SHUT || wake != paused_until)
			abort();
	} else if (live < cap) {
		if (gate != HTTP_GATE_ACCEPT)
			abort();
	} else if (c != NULL) {
		if (gate != HTTP_GATE_WATCH)
			abort();
	} else if (gate != HTTP_GATE_SHUT || wake != (oldest != NULL ?
	    oldest->since_ms + HTTP_RECLAIM_MS : -1))
		abort();
}

static void
fuzz_book(const uint8_t *data, size_t size)
{
	struct model_conn m[FUZZ_MAX_CONNS];
	struct http_conns cs;
	struct http_ratelimit rl = { 0, 0 };
	uint64_t seq = 1, held, calls = 0, passes = 0, held_total = 0;
	int64_t now = 1000, last_pass = -1, paused_until = 0;
	int n = 0, cap = 4, i;
	size_t k;

	memset(m, 0, sizeof(m));
	http_conns_init(&cs);
	for (k = 0; k + 1 < size; k += 2) {
		uint8_t op = data[k] % 8, arg = data[k + 1];
		struct model_conn *mc = n > 0 ? &m[arg % n] : NULL;
		struct http_conn *v;

		switch (op) {
		case 0:		/* accept */
			if (n == FUZZ_MAX_CONNS)
				break;
			m[n].live = 1;
			m[n].seq = seq++;
			http_conn_open(&cs, &m[n].c, now);
			n++;
			break;
		case 1:		/* a whole request read */
			if (mc != NULL && mc->live) {
				http_conn_busy(&cs, &mc->c, now);
				mc->seq = 0;
			}
			break;
		case 2:		/* answered */
			if (mc != NULL && mc->live &&
			    mc->c.state == HTTP_CONN_BUSY) {
				http_conn_idle(&cs, &mc->c, now);
				mc->seq = seq++;
			}
			break;
		case 3:		/* closed */
			if (mc != NULL && mc->live) {
				http_conn_close(&cs, &mc->c);
				mc->live = 0;
			}
			break;
		case 4:		/* time passes: ms, or tenths of seconds */
			now += arg < 128 ? arg :
			    (int64_t)(arg - 128) * 97;
			break;
		case 5:		/* a new cap, and room made under it */
			cap = arg % 16 + 1;
			while (cs.open > cap &&
			    (v = http_conns_victim(&cs, now)) != NULL) {
				http_conn_close(&cs, v);
				((struct model_conn *)v)->live = 0;
			}
			break;
		case 6:		/* accept() failed: a rest, a warning */
			if (arg & 1)
				paused_until = now + (arg >> 1);
			calls++;
			if (http_ratelimit_pass(&rl, now, 1000, &held)) {
				if (last_pass >= 0 && now - last_pass < 1000)
					abort();
				last_pass = now;
				passes++;
				held_total += held;
			}
			if (passes + held_total + rl.held != calls)
				abort();
			break;
		case 7: {	/* the cap against an open-file limit */
			uint64_t nofile = (uint64_t)arg << (arg % 40);
			int eff = http_cap_effective(arg * 300, nofile);

			if (eff < 1 || (arg > 0 && eff > arg * 300) ||
			    (uint64_t)eff > (nofile / 2 > 1 ? nofile / 2 : 1))
				abort();
			break;
		}
		}
		check_book(&cs, m, n, now, cap, paused_until);
	}
	for (i = 0; i < n; i++)
		if (m[i].live)
			http_conn_close(&cs, &m[i].c);
	if (cs.open != 0 || !TAILQ_EMPTY(&cs.waiting))
		abort();
}

/* The next line of *p (up to end) as a C string; *p moves past it. */
static char *
next_line(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl != NULL ? (size_t)(nl - *p) : (size_t)(end - *p);
	char *s = dup_n(*p, n);

	*p = nl != NULL ? nl + 1 : end;
	return s;
}

static void
check_html(const char *s)
{
	struct evbuffer *b = evbuffer_new();
	const unsigned char *o;
	size_t i, n;

	if (b == NULL)
		abort();
	console_html(b, s);
	n = evbuffer_get_length(b);
	o = evbuffer_pullup(b, -1);
	for (i = 0; i < n; i++)
		if (o[i] == '<' || o[i] == '>' || o[i] == '"' ||
		    o[i] == '\'' || o[i] < 0x20 || o[i] == 0x7f)
			abort();
	evbuffer_free(b);
}

static void
fuzz_console(const uint8_t *data, size_t size)
{
	static const char *const fields[] = { "csrf", "queue", "id", "reason" };
	static const uint8_t key[CONSOLE_KEY_LEN] = { 7 };
	const uint8_t *p = data, *end = data + size;
	char *line, *method, *path, *auth, *cookie, *body, *enc;
	char sid[CONSOLE_SESSION_LEN + 1], tok[CONSOLE_TOKEN_LEN + 1];
	char out[256], again[256];
	struct evbuffer *b;
	enum console_route r;
	const char *allow;
	size_t i, blen;
	int ok;

	line = next_line(&p, end);
	method = line;
	path = strchr(line, ' ');
	if (path != NULL)
		*path++ = '\0';
	r = console_route(method, path, &allow);
	if (r < CONSOLE_ROUTE_HOME || r > CONSOLE_ROUTE_BAD_METHOD)
		abort();
	if ((r == CONSOLE_ROUTE_BAD_METHOD) != (allow != NULL))
		abort();
	if (path != NULL)
		check_html(path);

	auth = next_line(&p, end);
	ok = console_auth_check(auth, "secret");
	if (ok != 0 && (ok != 1 || strncasecmp(auth, "basic", 5) != 0))
		abort();
	if (console_auth_check(auth, "") != 0)
		abort();

	cookie = next_line(&p, end);
	if (console_session_get(cookie, sid) == 0) {
		if (strlen(sid) != CONSOLE_SESSION_LEN || strstr(cookie, sid) ==
		    NULL)
			abort();
		console_csrf_token(key, sid, 1764374400, tok);
		if (!console_csrf_check(key, sid, tok, 1764374400 + 3600))
			abort();
		tok[0] = tok[0] == '0' ? '1' : '0';
		if (console_csrf_check(key, sid, tok, 1764374400))
			abort();
	}
	if (console_csrf_check(key, "0123456789abcdef0123456789abcdef",
	    cookie, 1764374400) && strlen(cookie) != CONSOLE_TOKEN_LEN)
		abort();

	blen = (size_t)(end - p);
	body = dup_n(p, blen);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (console_form_get((const char *)p, blen, fields[i], out,
		    sizeof(out)) == -1)
			continue;
		check_html(out);
		if ((b = evbuffer_new()) == NULL)
			abort();
		evbuffer_add_printf(b, "%s=", fields[i]);
		console_url(b, out);
		evbuffer_add(b, "", 1);
		enc = (char *)evbuffer_pullup(b, -1);
		if (console_form_get(enc, strlen(enc), fields[i], again,
		    sizeof(again)) == -1 || strcmp(out, again) != 0)
			abort();
		evbuffer_free(b);
	}
	free(body);
	free(cookie);
	free(auth);
	free(line);
}

/* A link read from a query, against what digestd would have written. */
static void
check_unsub_link(const char *query)
{
	static const char secret[] = "fuzz-secret-0123456789abcdef01234567";
	struct unsub_link l, again;
	char tok[UNSUB_TOKEN_LEN + 1], q[160];
	size_t i;
	int right;

	if (unsub_parse_query(query, &l) == -1)
		return;
	if (l.uid < 0 || l.gid < 0 || strlen(l.token) != UNSUB_TOKEN_LEN)
		abort();
	for (i = 0; i < UNSUB_TOKEN_LEN; i++)
		if (!((l.token[i] >= '0' && l.token[i] <= '9') ||
		    (l.token[i] >= 'a' && l.token[i] <= 'f')))
			abort();
	if (!model_query_has(query, "u") || !model_query_has(query, "g") ||
	    !model_query_has(query, "t"))
		abort();
	snprintf(q, sizeof(q), "u=%lld&g=%lld&t=%s", (long long)l.uid,
	    (long long)l.gid, l.token);
	if (unsub_parse_query(q, &again) == -1 || again.uid != l.uid ||
	    again.gid != l.gid || strcmp(again.token, l.token) != 0)
		abort();
	if (unsub_token(secret, l.uid, l.gid, tok) == -1)
		abort();
	right = strcmp(tok, l.token) == 0;
	if (unsub_verify(secret, l.uid, l.gid, l.token) != right)
		abort();
	if (!unsub_verify(secret, l.uid, l.gid, tok) ||
	    unsub_verify(secret, l.uid + 1, l.gid, tok) ||
	    unsub_verify(secret, l.uid, l.gid + 1, tok))
		abort();
}

static void
fuzz_unsub(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char *url, *target, *ctype, *body;
	char path[UNSUB_PATH_MAX];
	struct evhttp_uri *uri;
	size_t blen;
	int one;

	url = next_line(&p, end);
	if (unsub_parse_url_path(url, path, sizeof(path)) == 0) {
		if (path[0] != '/')
			abort();
		/* Without escapes a path decodes to itself. */
		if (strchr(path, '%') == NULL && !unsub_parse_path_is(path,
		    path))
			abort();
	}
	target = next_line(&p, end);
	if ((uri = evhttp_uri_parse_with_flags(target,
	    EVHTTP_URI_NONCONFORMANT)) != NULL) {
		(void)unsub_parse_path_is(evhttp_uri_get_path(uri), path);
		check_unsub_link(evhttp_uri_get_query(uri));
		evhttp_uri_free(uri);
	}
	check_unsub_link(target);

	ctype = next_line(&p, end);
	blen = (size_t)(end - p);
	body = dup_n(p, blen);
	one = unsub_parse_one_click(ctype[0] ? ctype : NULL, (const char *)p,
	    blen);
	if (one != 0 && one != 1)
		abort();
	if (one && memmem(p, blen, "List-Unsubscribe", 16) == NULL)
		abort();
	if (one && strncasecmp(ctype, "multipart/form-data", 19) == 0 &&
	    memmem(p, blen, "One-Click", 9) == NULL)
		abort();
	free(body);
	free(ctype);
	free(target);
	free(url);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == 'B')
		fuzz_book(data + 1, size - 1);
	else if (size > 0 && data[0] == 'C')
		fuzz_console(data + 1, size - 1);
	else if (size > 0 && data[0] == 'U')
		fuzz_unsub(data + 1, size - 1);
	else
		fuzz_request(data, size);
	return 0;
}
