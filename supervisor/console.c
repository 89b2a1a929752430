/*
 * The web console (docs/design.md#web-console): a child of the supervisor
 * that serves supervisor.console_listen with the hardened HTTP server of
 * http_server.c, on sockets the supervisor bound at start.  Its pages read
 * the queue Redis and the broker, which block, so they are served here and
 * never by the supervisor's loop; a crash of the console costs no mail,
 * and the supervisor restarts it with backoff.  A reload replaces it at
 * once (console_reload), so that it serves with the configuration in
 * force.
 *
 * Every answer carries a Content-Security-Policy that allows nothing but
 * this origin's script and style sheet, and no framing.  With
 * console_password set, every request needs it (HTTP basic auth).  The
 * actions (pause, resume, requeue, delete) are POSTs of forms that carry
 * a CSRF token tied to the browser's session cookie (console_parse.c); a
 * POST without the cookie or with a wrong token gets 403 and changes
 * nothing.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/rand.h>

#include "backoff.h"
#include "console.h"
#include "console_ops.h"
#include "console_parse.h"
#include "http_server.h"
#include "log.h"
#include "proc.h"
#include "rconn.h"
#include "supervisor.h"
#include "util.h"

#define CONSOLE_FORM_MAX 4096		/* the server's body limit */

#define CONSOLE_CSP "default-src 'none'; script-src 'self'; " \
	"style-src 'self'; connect-src 'self'; img-src 'self'; " \
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

/* The supervisor's side. */
static void console_run(void *);
static struct proc_service console_svc = {
	.name = "console",
	.run = console_run,
};

/* The child's side. */
static struct console console_state;
static uint8_t console_key[CONSOLE_KEY_LEN];

redisContext *
console_redis(struct console *c, char *err, size_t errlen)
{
	if (c->rc != NULL && c->rc->err == 0)
		return c->rc;
	if (c->rc != NULL)
		redisFree(c->rc);
	c->rc = rconn_connect(&c->cfg->queue_redis, err, errlen);
	c->qa.qr = c->rc;
	return c->rc;
}

/* Headers every answer carries. */
static void
console_headers(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Security-Policy", CONSOLE_CSP);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
}

/* A short page saying what went wrong, with a way back. */
static void
console_error(struct evhttp_request *req, int code, const char *reason,
    const char *what)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
	    "<meta charset=\"utf-8\"><title>digestd console: %d</title>"
	    "<link rel=\"stylesheet\" href=\"/console.css\"></head><body>"
	    "<main id=\"main\"><h1>%d %s</h1><p class=\"error\">", code,
	    code, reason);
	console_html(b, what);
	evbuffer_add_printf(b, "</p><p><a href=\"/\">Back to the console"
	    "</a></p></main></body></html>\n");
	http_reply(req, code, reason, "text/html; charset=utf-8", b);
	evbuffer_free(b);
}

/* See other: back to a page after an action, saying what was done. */
static void
console_redirect(struct evhttp_request *req, const char *page,
    const char *done, const char *what)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *loc = evbuffer_new();
	char *s;

	if (loc == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add_printf(loc, "%s?done=%s&what=", page, done);
	console_url(loc, what);
	evbuffer_add(loc, "", 1);
	s = (char *)evbuffer_pullup(loc, -1);
	evhttp_add_header(h, "Location", s);
	http_reply(req, 303, "See Other", "text/plain; charset=utf-8", NULL);
	evbuffer_free(loc);
}

/* A random session id, as lowercase hex; -1 when no randomness. */
static int
console_new_session(char *sid)
{
	uint8_t r[CONSOLE_SESSION_LEN / 2];
	size_t i;

	if (RAND_bytes(r, sizeof(r)) != 1)
		return -1;
	for (i = 0; i < sizeof(r); i++)
		snprintf(sid + 2 * i, 3, "%02x", r[i]);
	return 0;
}

/* A queue name as the configuration allows them. */
static int
console_queue_name_ok(const char *q)
{
	size_t i;

	for (i = 0; q[i] != '\0'; i++)
		if (!((q[i] >= 'a' && q[i] <= 'z') ||
		    (q[i] >= 'A' && q[i] <= 'Z') ||
		    (q[i] >= '0' && q[i] <= '9') || strchr("._-", q[i])))
			return 0;
	return i > 0 && i < SB_NAME_MAX;
}

/* What a requeue or a delete did, counted by its callback. */
struct console_walk {
	int matched;
	int done;
	char kept[256];
};

static void
console_walk_cb(void *arg, const struct queue_letter *lt)
{
	struct console_walk *w = arg;

	w->matched++;
	if (lt->requeued || lt->deleted)
		w->done++;
	else if (lt->kept != NULL)
		strlcpy(w->kept, lt->kept, sizeof(w->kept));
}

/* A POST: the session, the token, then the action. */
static void
console_action(struct console *c, struct evhttp_request *req,
    enum console_route route, const char *sid)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct console_walk walk;
	char body[CONSOLE_FORM_MAX + 1], token[CONSOLE_TOKEN_LEN + 2];
	char queue[SB_NAME_MAX + 1], reason[256], id[256], by[320];
	char err[512];
	size_t len;
	int rc;

	len = evbuffer_get_length(in);
	if (len > CONSOLE_FORM_MAX) {
		console_error(req, 413, "Payload Too Large", "form too large");
		return;
	}
	evbuffer_copyout(in, body, len);
	body[len] = '\0';
	if (sid == NULL || console_form_get(body, len, "csrf", token,
	    sizeof(token)) == -1 || !console_csrf_check(console_key, sid,
	    token, (int64_t)now_real())) {
		log_warnx("console: refused a %s without a valid CSRF token",
		    evhttp_request_get_uri(req));
		console_error(req, 403, "Forbidden", "missing or wrong CSRF "
		    "token: reload the page and try again");
		return;
	}
	if (console_redis(c, err, sizeof(err)) == NULL) {
		console_error(req, 503, "Service Unavailable", err);
		return;
	}
	switch (route) {
	case CONSOLE_ROUTE_PAUSE:
	case CONSOLE_ROUTE_RESUME:
		if (console_form_get(body, len, "queue", queue,
		    sizeof(queue)) == -1 || !console_queue_name_ok(queue)) {
			console_error(req, 400, "Bad Request", "no valid "
			    "queue name");
			return;
		}
		if (route == CONSOLE_ROUTE_RESUME) {
			if (console_resume(&c->qa, queue, err,
			    sizeof(err)) == -1)
				break;
			log_info("console: queue %s resumed", queue);
			console_redirect(req, "/", "resumed", queue);
			return;
		}
		if (console_form_get(body, len, "reason", reason,
		    sizeof(reason)) == -1 || reason[0] == '\0')
			strlcpy(reason, "paused from the console",
			    sizeof(reason));
		snprintf(by, sizeof(by), "console@%s", c->instance);
		if (console_pause(&c->qa, queue, reason, by, err,
		    sizeof(err)) == -1)
			break;
		log_info("console: queue %s paused", queue);
		console_redirect(req, "/", "paused", queue);
		return;
	case CONSOLE_ROUTE_REQUEUE:
	case CONSOLE_ROUTE_DELETE:
		if (console_form_get(body, len, "id", id, sizeof(id)) == -1 ||
		    id[0] == '\0') {
			console_error(req, 400, "Bad Request", "no dead letter "
			    "named");
			return;
		}
		memset(&walk, 0, sizeof(walk));
		rc = route == CONSOLE_ROUTE_REQUEUE ?
		    console_dlq_requeue(&c->qa, id, console_walk_cb, &walk,
		    err, sizeof(err)) :
		    console_dlq_delete(&c->qa, id, console_walk_cb,
		    &walk, err, sizeof(err));
		if (rc == -1)
			break;
		if (walk.matched == 0) {
			console_error(req, 404, "Not Found", "no such dead "
			    "letter (requeued or deleted already?)");
			return;
		}
		if (walk.done == 0) {
			console_error(req, 409, "Conflict", walk.kept[0] ?
			    walk.kept : "the dead letter stays where it is");
			return;
		}
		log_info("console: dead letter %s %s", id,
		    route == CONSOLE_ROUTE_REQUEUE ? "requeued" : "deleted");
		console_redirect(req, "/dlq", route == CONSOLE_ROUTE_REQUEUE ?
		    "requeued" : "deleted", id);
		return;
	default:
		break;
	}
	console_error(req, 502, "Bad Gateway", err);
}

static const char *
console_method(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_POST:
		return "POST";
	default:
		return "OTHER";
	}
}

/* Every request: auth, the session, then the route. */
static void
console_handle(struct evhttp_request *req, void *arg)
{
	struct console *c = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct console_view v;
	struct evbuffer *b;
	enum console_route route;
	const char *allow;
	char sid[CONSOLE_SESSION_LEN + 1], cookie[128];
	char token[CONSOLE_TOKEN_LEN + 1], done[32], what[256];
	int have_sid, code;

	console_headers(req);
	if (c->cfg->supervisor.console_password[0] != '\0' &&
	    !console_auth_check(evhttp_find_header(in, "Authorization"),
	    c->cfg->supervisor.console_password)) {
		evhttp_add_header(out, "WWW-Authenticate",
		    "Basic realm=\"digestd console\", charset=\"UTF-8\"");
		http_text(req, 401, "Unauthorized", "authentication "
		    "required\n");
		return;
	}
	route = console_route(console_method(req), path, &allow);
	have_sid = console_session_get(evhttp_find_header(in, "Cookie"),
	    sid) == 0;
	switch (route) {
	case CONSOLE_ROUTE_NOT_FOUND:
		console_error(req, 404, "Not Found", "no such page");
		return;
	case CONSOLE_ROUTE_BAD_METHOD:
		evhttp_add_header(out, "Allow", allow);
		http_text(req, 405, "Method Not Allowed",
		    "method not allowed\n");
		return;
	case CONSOLE_ROUTE_SCRIPT:
		if ((b = evbuffer_new()) == NULL)
			break;
		evbuffer_add(b, console_script(), strlen(console_script()));
		http_reply(req, 200, "OK", "text/javascript; charset=utf-8",
		    b);
		evbuffer_free(b);
		return;
	case CONSOLE_ROUTE_STYLE:
		if ((b = evbuffer_new()) == NULL)
			break;
		evbuffer_add(b, console_style(), strlen(console_style()));
		http_reply(req, 200, "OK", "text/css; charset=utf-8", b);
		evbuffer_free(b);
		return;
	case CONSOLE_ROUTE_ICON:
		/* Browsers ask; nothing is a better answer than a 404. */
		http_reply(req, 204, "No Content", "image/x-icon", NULL);
		return;
	case CONSOLE_ROUTE_PAUSE:
	case CONSOLE_ROUTE_RESUME:
	case CONSOLE_ROUTE_REQUEUE:
	case CONSOLE_ROUTE_DELETE:
		console_action(c, req, route, have_sid ? sid : NULL);
		return;
	case CONSOLE_ROUTE_HOME:
	case CONSOLE_ROUTE_DLQ:
		break;
	}
	if (route != CONSOLE_ROUTE_HOME && route != CONSOLE_ROUTE_DLQ) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	/* A page: the session its forms are for, new if the browser has none. */
	if (!have_sid) {
		if (console_new_session(sid) == -1) {
			console_error(req, 500, "Internal Server Error",
			    "no randomness for a session");
			return;
		}
		snprintf(cookie, sizeof(cookie), "digestd_console=%s; Path=/; "
		    "HttpOnly; SameSite=Strict", sid);
		evhttp_add_header(out, "Set-Cookie", cookie);
	}
	console_csrf_token(console_key, sid, (int64_t)now_real(), token);
	memset(&v, 0, sizeof(v));
	v.csrf = token;
	if (query != NULL &&
	    console_form_get(query, strlen(query), "done", done,
	    sizeof(done)) == 0 &&
	    console_form_get(query, strlen(query), "what", what,
	    sizeof(what)) == 0) {
		v.done = done;
		v.what = what;
	}
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	code = route == CONSOLE_ROUTE_HOME ? console_page_home(c, &v, b) :
	    console_page_dlq(c, &v, b);
	http_reply(req, code, code == 200 ? "OK" : "Service Unavailable",
	    "text/html; charset=utf-8", b);
	evbuffer_free(b);
}

static int
console_cap_cb(void *arg)
{
	struct console *c = arg;

	return c->cfg->supervisor.http_max_connections;
}

/*
 * The child proc_fork set up, arg the service, with the console's
 * sockets kept: serve until the supervisor goes.  Never returns.
 */
static void
console_run(void *arg)
{
	struct proc_service *svc = arg;
	struct supervisor *s = svc->s;
	struct event_base *base;
	struct http_server *hs;
	char err[256];
	int i;

	/* No SIGPIPE from a browser that went away. */
	signal(SIGPIPE, SIG_IGN);

	/* A fresh secret per process: a restart invalidates old forms. */
	if (RAND_bytes(console_key, sizeof(console_key)) != 1) {
		log_warnx("console: no randomness for the CSRF secret");
		_exit(1);
	}
	memset(&console_state, 0, sizeof(console_state));
	console_state.cfg = s->cfg;
	console_state.sb = s->sb;
	console_state.instance = s->instance_id;
	queue_admin_init(&console_state.qa, s->cfg, NULL);

	if ((base = event_base_new()) == NULL)
		_exit(1);
	if ((hs = http_server_new(base, "console", console_handle,
	    console_cap_cb, &console_state, err, sizeof(err))) == NULL) {
		log_warnx("console: %s", err);
		_exit(1);
	}
	for (i = 0; i < svc->nfds; i++)
		if (http_server_accept(hs, svc->fds[i], err,
		    sizeof(err)) == -1) {
			log_warnx("console: %s", err);
			_exit(1);
		}
	event_base_dispatch(base);
	_exit(0);
}

int
console_bind(struct supervisor *s, char *err, size_t errlen)
{
	int loopback;

	if (s->cfg->supervisor.console_listen[0] == '\0')
		return 0;
	if (http_bind_sockets(s->cfg->supervisor.console_listen,
	    console_svc.fds, &console_svc.nfds, &loopback, err, errlen) == -1)
		return -1;
	log_info("console on %s%s", s->cfg->supervisor.console_listen,
	    s->cfg->supervisor.console_password[0] ? " (basic auth)" : "");
	return 0;
}

void
console_spawn(struct supervisor *s)
{
	proc_service_start(&console_svc, s);
}

/*
 * The console serves with the configuration it was forked with: replace
 * it, so that a new password or pool takes effect.
 */
void
console_reload(struct supervisor *s)
{
	proc_service_reload(&console_svc);
}

void
console_stop(struct supervisor *s)
{
	proc_service_stop(&console_svc);
}
