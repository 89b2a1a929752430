/*
 * One-click unsubscribe (docs/design.md#unsubscribe-endpoint): a child of
 * the supervisor that serves supervisor.unsubscribe_listen with the
 * hardened HTTP server of http_server.c, on sockets the supervisor bound
 * at start.  It answers the links digestd writes into List-Unsubscribe,
 * {unsubscribe_url}?u=&g=&t=, on the path of unsubscribe_url:
 *
 *   POST, body List-Unsubscribe=One-Click (RFC 8058): the token checked,
 *        the uid added to digest:muted:{gid} on the queue Redis, 200;
 *   GET  a page whose button makes that POST (no script needed);
 *
 * and 403, changing nothing, for a link whose token is not the one of its
 * uid and gid.  Writing to Redis blocks, so this is served here and never
 * by the supervisor's loop; the supervisor restarts it with backoff when
 * it dies, and replaces it after a reload so that it serves with the
 * configuration in force (a new secret, a new path): a proc.c service.
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
#include <hiredis/hiredis.h>

#include "backoff.h"
#include "console_parse.h"
#include "feedback.h"
#include "http_server.h"
#include "log.h"
#include "proc.h"
#include "rconn.h"
#include "supervisor.h"
#include "unsub.h"
#include "unsub_child.h"
#include "unsub_parse.h"
#include "util.h"

#define UNSUB_BODY_MAX 4096		/* the server's body limit */

/* The page's form posts to this origin; nothing else is allowed. */
#define UNSUB_CSP "default-src 'none'; form-action 'self'; " \
	"frame-ancestors 'none'; base-uri 'none'"

static void unsub_run(void *);
static struct proc_service unsub_svc = {
	.name = "unsubscribe",
	.run = unsub_run,
};

/* The child's side. */
struct unsub_state {
	const struct config *cfg;
	char path[UNSUB_PATH_MAX];	/* unsubscribe_url's, decoded */
	redisContext *rc;		/* the queue Redis; NULL until needed */
};
static struct unsub_state unsub_state;

/* The queue Redis, connected (again) if need be; NULL with err. */
static redisContext *
unsub_redis(struct unsub_state *u, char *err, size_t errlen)
{
	if (u->rc != NULL && u->rc->err == 0)
		return u->rc;
	if (u->rc != NULL)
		redisFree(u->rc);
	u->rc = rconn_connect(&u->cfg->queue_redis, err, errlen);
	return u->rc;
}

/* Headers every answer carries; the URL holds a token: no Referer. */
static void
unsub_headers(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Security-Policy", UNSUB_CSP);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
}

/* The page: what the button does, and the form that does it. */
static void
unsub_page(struct evhttp_request *req, const struct unsub_link *l)
{
	struct evbuffer *b = evbuffer_new(), *q = evbuffer_new();
	char num[24];

	if (b == NULL || q == NULL) {
		if (b != NULL)
			evbuffer_free(b);
		if (q != NULL)
			evbuffer_free(q);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	/* The action is this query: the form posts back to this link. */
	evbuffer_add_printf(q, "?u=%lld&g=%lld&t=", (long long)l->uid,
	    (long long)l->gid);
	console_url(q, l->token);
	evbuffer_add(q, "", 1);
	evbuffer_add_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
	    "<meta charset=\"utf-8\"><meta name=\"viewport\" "
	    "content=\"width=device-width\"><meta name=\"robots\" "
	    "content=\"noindex\"><title>Unsubscribe</title></head><body>"
	    "<main><h1>Unsubscribe</h1><p>Stop the digest emails of group ");
	snprintf(num, sizeof(num), "%lld", (long long)l->gid);
	console_html(b, num);
	evbuffer_add_printf(b, " to this address?</p><form method=\"post\" "
	    "action=\"");
	console_html(b, (const char *)evbuffer_pullup(q, -1));
	evbuffer_add_printf(b, "\"><input type=\"hidden\" "
	    "name=\"List-Unsubscribe\" value=\"One-Click\">"
	    "<button type=\"submit\">Unsubscribe</button></form></main>"
	    "</body></html>\n");
	http_reply(req, 200, "OK", "text/html; charset=utf-8", b);
	evbuffer_free(q);
	evbuffer_free(b);
}

/* A POST of a checked link: the body, then the mute. */
static void
unsub_post(struct unsub_state *u, struct evhttp_request *req,
    const struct unsub_link *l)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
	char body[UNSUB_BODY_MAX + 1], err[512];
	size_t len;

	len = evbuffer_get_length(in);
	if (len > UNSUB_BODY_MAX) {
		http_text(req, 413, "Payload Too Large", "body too large\n");
		return;
	}
	evbuffer_copyout(in, body, len);
	body[len] = '\0';
	if (!unsub_parse_one_click(evhttp_find_header(hin, "Content-Type"),
	    body, len)) {
		http_text(req, 400, "Bad Request", "the body must be "
		    "List-Unsubscribe=One-Click\n");
		return;
	}
	if (unsub_redis(u, err, sizeof(err)) == NULL ||
	    feedback_mute(u->rc, u->cfg, l->uid, l->gid, err,
	    sizeof(err)) == -1) {
		log_warnx("unsubscribe: uid %lld group %lld not recorded: %s",
		    (long long)l->uid, (long long)l->gid, err);
		http_text(req, 503, "Service Unavailable", "not recorded; "
		    "please try again later\n");
		return;
	}
	log_info("unsubscribe: uid %lld muted in group %lld",
	    (long long)l->uid, (long long)l->gid);
	http_text(req, 200, "OK", "You are unsubscribed from this group's "
	    "digest.\n");
}

/* Every request: path, method, the link and its token. */
static void
unsub_handle(struct evhttp_request *req, void *arg)
{
	struct unsub_state *u = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct unsub_link l;

	unsub_headers(req);
	if (!unsub_parse_path_is(path, u->path)) {
		http_text(req, 404, "Not Found", "not found\n");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD &&
	    cmd != EVHTTP_REQ_POST) {
		evhttp_add_header(out, "Allow", "GET, HEAD, POST");
		http_text(req, 405, "Method Not Allowed",
		    "method not allowed\n");
		return;
	}
	if (unsub_parse_query(query, &l) == -1 ||
	    !unsub_verify(u->cfg->digest.unsubscribe_secret, l.uid, l.gid,
	    l.token)) {
		log_info("unsubscribe: refused a link with a wrong token");
		http_text(req, 403, "Forbidden", "this unsubscribe link is "
		    "not valid\n");
		return;
	}
	if (cmd == EVHTTP_REQ_POST)
		unsub_post(u, req, &l);
	else
		unsub_page(req, &l);
}

static int
unsub_cap_cb(void *arg)
{
	struct unsub_state *u = arg;

	return u->cfg->supervisor.http_max_connections;
}

/*
 * The child proc_fork set up, arg the service, with the endpoint's
 * sockets kept: serve until the supervisor goes.  Never returns.
 */
static void
unsub_run(void *arg)
{
	struct proc_service *svc = arg;
	struct supervisor *s = svc->s;
	struct event_base *base;
	struct http_server *hs;
	char err[256];
	int i;

	/* No SIGPIPE from a client that went away. */
	signal(SIGPIPE, SIG_IGN);

	memset(&unsub_state, 0, sizeof(unsub_state));
	unsub_state.cfg = s->cfg;
	if (unsub_parse_url_path(s->cfg->digest.unsubscribe_url,
	    unsub_state.path, sizeof(unsub_state.path)) == -1) {
		log_warnx("unsubscribe: digest.unsubscribe_url has no usable "
		    "path");
		_exit(1);
	}
	if ((base = event_base_new()) == NULL)
		_exit(1);
	if ((hs = http_server_new(base, "unsubscribe", unsub_handle,
	    unsub_cap_cb, &unsub_state, err, sizeof(err))) == NULL) {
		log_warnx("unsubscribe: %s", err);
		_exit(1);
	}
	for (i = 0; i < svc->nfds; i++)
		if (http_server_accept(hs, svc->fds[i], err,
		    sizeof(err)) == -1) {
			log_warnx("unsubscribe: %s", err);
			_exit(1);
		}
	event_base_dispatch(base);
	_exit(0);
}

int
unsub_bind(struct supervisor *s, char *err, size_t errlen)
{
	int loopback;

	if (s->cfg->supervisor.unsubscribe_listen[0] == '\0')
		return 0;
	if (http_bind_sockets(s->cfg->supervisor.unsubscribe_listen,
	    unsub_svc.fds, &unsub_svc.nfds, &loopback, err, errlen) == -1)
		return -1;
	log_info("unsubscribe endpoint on %s",
	    s->cfg->supervisor.unsubscribe_listen);
	return 0;
}

void
unsub_spawn(struct supervisor *s)
{
	proc_service_start(&unsub_svc, s);
}

/*
 * The child serves with the configuration it was forked with: replace
 * it, so that a new secret or unsubscribe_url takes effect.
 */
void
unsub_reload(struct supervisor *s)
{
	proc_service_reload(&unsub_svc);
}

void
unsub_stop(struct supervisor *s)
{
	proc_service_stop(&unsub_svc);
}
