/*
 * The supervisor's HTTP endpoint (SPEC 7), served by libevent's evhttp from
 * the supervisor's own loop: /metrics, /healthz, /readyz and /status.
 *
 * Every answer is built in memory from the shared segment and the
 * supervisor's totals, with no I/O other than the socket itself, so a
 * scrape can never hold up reaping or signals.  Slow or idle clients are
 * dropped by evhttp's timeout; only GET and HEAD are served.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "exposition.h"
#include "log.h"
#include "supervisor.h"
#include "util.h"

#define HTTP_TIMEOUT_S 10		/* a client has this long per request */
#define HTTP_MAX_HEADERS 16384
#define HTTP_BACKLOG 128
#define HTTP_MAX_BODY 4096		/* we read no bodies; enough to answer 405 */

static struct evhttp *http_server;

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
http_bind(const char *addr, char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
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
		if (evhttp_accept_socket(http_server, fd) == -1) {
			saved = errno;
			close(fd);
			continue;
		}
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

/* /status?html (or ?html&..., ?...&html) asks for the page for people. */
static void
http_status(struct evhttp_request *req, const char *query)
{
	struct evbuffer *b;
	int html;

	html = query != NULL && (strcmp(query, "html") == 0 ||
	    strncmp(query, "html&", 5) == 0 || strncmp(query, "html=", 5) == 0 ||
	    strstr(query, "&html") != NULL);
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (html) {
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

	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		http_text(req, 405, "Method Not Allowed",
		    "method not allowed\n");
		return;
	}
	if (path == NULL || *path == '\0')
		path = "/";
	if (strcmp(path, "/metrics") == 0)
		http_metrics(req);
	else if (strcmp(path, "/healthz") == 0)
		http_text(req, HTTP_OK, "OK", "ok\n");
	else if (strcmp(path, "/readyz") == 0) {
		if (supervisor_ready(sup))
			http_text(req, HTTP_OK, "OK", "ready\n");
		else
			http_text(req, 503, "Service Unavailable",
			    "not ready\n");
	} else if (strcmp(path, "/status") == 0)
		http_status(req, query);
	else
		http_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
}

int
http_listen(struct supervisor *s, const char *addr, char *err, size_t errlen)
{
	if (http_server == NULL) {
		http_server = evhttp_new(s->base);
		if (http_server == NULL) {
			snprintf(err, errlen, "evhttp_new failed");
			return -1;
		}
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
	}
	return http_bind(addr, err, errlen);
}
