/*
 * The supervisor's HTTP endpoint (docs/design.md#endpoints), served from
 * the supervisor's own loop by a hardened evhttp server (http_server.c):
 * /metrics, /healthz, /readyz and /status.
 *
 * Every answer is built in memory from the shared segment and the
 * supervisor's totals, with no I/O other than the socket itself, so a
 * scrape can never hold up reaping or signals.  Only GET and HEAD are
 * served.
 */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "console_parse.h"
#include "exposition.h"
#include "http_parse.h"
#include "http_server.h"
#include "log.h"
#include "supervisor.h"
#include "util.h"

static struct http_server *http_srv;
static int http_listen_loopback = 1;	/* every bound address loopback */

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
 * auth), which lets a peer that is not loopback read /status too.  The
 * configuration in force says; no password, no such proof.
 */
static int
http_console_auth(struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);

	if (sup->cfg->supervisor.console_password[0] == '\0')
		return 0;
	return console_auth_check(evhttp_find_header(in, "Authorization"),
	    sup->cfg->supervisor.console_password) == 1;
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

/*
 * 200 "ready", or 503 "not ready" followed by why, a line per reason, so
 * that an operator (or a load balancer's log) sees which pool is short.
 */
static void
http_readyz(struct evhttp_request *req)
{
	char why[1024], text[1100];

	if (supervisor_readiness(sup, why, sizeof(why))) {
		http_text(req, HTTP_OK, "OK", "ready\n");
		return;
	}
	snprintf(text, sizeof(text), "not ready\n%s\n", why);
	http_text(req, 503, "Service Unavailable", text);
}

/* Every request lands here: route on the path, refuse all but GET/HEAD. */
static void
http_handle(struct evhttp_request *req, void *arg)
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
	switch (http_route(path)) {
	case HTTP_ROUTE_METRICS:
		http_metrics(req);
		break;
	case HTTP_ROUTE_HEALTHZ:
		http_text(req, HTTP_OK, "OK", "ok\n");
		break;
	case HTTP_ROUTE_READYZ:
		http_readyz(req);
		break;
	case HTTP_ROUTE_STATUS:
		http_status(req, query);
		break;
	case HTTP_ROUTE_NOT_FOUND:
		http_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
		break;
	}
}

/* The cap of the configuration in force, which a reload may change. */
static int
http_cap_cb(void *arg)
{
	return sup->cfg->supervisor.http_max_connections;
}

int
http_listen(struct supervisor *s, const char *addr, char *err, size_t errlen)
{
	int fds[HTTP_LISTEN_MAX], nfds, loopback, i;

	if (http_srv == NULL && (http_srv = http_server_new(s->base, "http",
	    http_handle, http_cap_cb, NULL, err, errlen)) == NULL)
		return -1;
	if (http_bind_sockets(addr, fds, &nfds, &loopback, err, errlen) == -1)
		return -1;
	if (!loopback)
		http_listen_loopback = 0;
	for (i = 0; i < nfds; i++)
		if (http_server_accept(http_srv, fds[i], err, errlen) == -1)
			return -1;
	return 0;
}
