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
 * configuration in force (a new secret, a new path).
 */
#include <sys/prctl.h>
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
#include "rconn.h"
#include "supervisor.h"
#include "unsub.h"
#include "unsub_parse.h"
#include "util.h"

#define UNSUB_RESPAWN_MIN_MS 1000	/* after a crash */
#define UNSUB_RESPAWN_MAX_MS 30000
#define UNSUB_HEALTHY_MS 60000		/* a run this long resets the delay */
#define UNSUB_CHECK_MS 1000		/* how soon a reload reaches it */
#define UNSUB_BODY_MAX 4096		/* the server's body limit */

/* The page's form posts to this origin; nothing else is allowed. */
#define UNSUB_CSP "default-src 'none'; form-action 'self'; " \
	"frame-ancestors 'none'; base-uri 'none'"

/* The supervisor's side. */
static int unsub_fds[HTTP_LISTEN_MAX];
static int unsub_nfds;
static struct event *unsub_timer;	/* respawn */
static struct event *unsub_check;	/* notices reloads */
static int64_t unsub_spawned_ns;
static struct backoff unsub_backoff;
static uint64_t unsub_reloads;		/* s->reloads_ok its config is from */

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

/* The child: serve until the supervisor goes.  Never returns. */
static void __attribute__((noreturn))
unsub_child(struct supervisor *s, pid_t parent)
{
	struct event_base *base;
	struct http_server *hs;
	struct sigaction sa;
	sigset_t none;
	char err[256];
	int sig, fd, i, keep;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		_exit(1);
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		sa.sa_handler = sig == SIGPIPE ? SIG_IGN : SIG_DFL;
		(void)sigaction(sig, &sa, NULL);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Every descriptor of the supervisor but the endpoint's sockets. */
	log_open_file(NULL);
	for (fd = 3; ; fd = keep + 1) {
		for (keep = -1, i = 0; i < unsub_nfds; i++)
			if (unsub_fds[i] >= fd && (keep == -1 ||
			    unsub_fds[i] < keep))
				keep = unsub_fds[i];
		if (keep == -1) {
			close_range((unsigned)fd, ~0U, 0);
			break;
		}
		if (keep > fd)
			close_range((unsigned)fd, (unsigned)keep - 1, 0);
	}
	if (log_open_file(s->cfg->supervisor.log_file) == -1)
		log_warn("open %s", s->cfg->supervisor.log_file);
	log_set_proc("unsubscribe", NULL, -1);
	setproctitle("-digestd: unsubscribe");

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
	for (i = 0; i < unsub_nfds; i++)
		if (http_server_accept(hs, unsub_fds[i], err,
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
	if (http_bind_sockets(s->cfg->supervisor.unsubscribe_listen, unsub_fds,
	    &unsub_nfds, &loopback, err, errlen) == -1)
		return -1;
	log_info("unsubscribe endpoint on %s",
	    s->cfg->supervisor.unsubscribe_listen);
	return 0;
}

static void unsub_respawn_in(struct supervisor *, int64_t);

/*
 * The child serves with the configuration it was forked with: after a
 * successful reload, replace it (SIGTERM; unsub_reaped starts the new
 * one at once), so a new secret or unsubscribe_url takes effect.
 */
static void
unsub_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervisor *s = arg;

	if (s->draining || s->unsub_pid <= 0 ||
	    s->reloads_ok == unsub_reloads)
		return;
	unsub_reloads = s->reloads_ok;
	log_debug("configuration reloaded: replacing unsubscribe %d",
	    (int)s->unsub_pid);
	kill(s->unsub_pid, SIGTERM);
}

void
unsub_spawn(struct supervisor *s)
{
	struct timeval tv;
	pid_t pid, self = getpid();

	if (unsub_nfds == 0)
		return;
	if (unsub_check == NULL && s->base != NULL) {
		unsub_check = event_new(s->base, -1, EV_PERSIST,
		    unsub_check_cb, s);
		if (unsub_check == NULL || evtimer_add(unsub_check,
		    tv_ms(&tv, UNSUB_CHECK_MS)) == -1)
			log_warnx("unsubscribe: no reload check timer");
	}
	unsub_reloads = s->reloads_ok;
	if ((pid = fork()) == -1) {
		log_warn("fork unsubscribe");
		unsub_respawn_in(s, UNSUB_RESPAWN_MAX_MS);
		return;
	}
	if (pid == 0)
		unsub_child(s, self);
	s->unsub_pid = pid;
	unsub_spawned_ns = now_mono_ns();
	log_debug("unsubscribe started: pid %d", (int)pid);
}

static void
unsub_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervisor *s = arg;

	if (s->draining || s->unsub_pid > 0)
		return;
	unsub_spawn(s);
}

static void
unsub_respawn_in(struct supervisor *s, int64_t ms)
{
	struct timeval tv;

	if (s->base == NULL)
		return;
	if (unsub_timer == NULL &&
	    (unsub_timer = evtimer_new(s->base, unsub_timer_cb, s)) == NULL) {
		log_warnx("unsubscribe: no timer; not restarted");
		return;
	}
	evtimer_add(unsub_timer, tv_ms(&tv, ms));
}

void
unsub_reaped(struct supervisor *s, pid_t pid, int status)
{
	int64_t ran_ms, delay;

	if (pid != s->unsub_pid)
		return;
	s->unsub_pid = 0;
	if (s->draining)
		return;
	ran_ms = (now_mono_ns() - unsub_spawned_ns) / 1000000;
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) {
		/* Replaced on purpose (a reload): no reason to wait. */
		delay = 0;
	} else {
		log_warnx("unsubscribe %d exited (%s %d); restarting",
		    (int)pid, WIFSIGNALED(status) ? "signal" : "status",
		    WIFSIGNALED(status) ? WTERMSIG(status) :
		    WEXITSTATUS(status));
		/* Back off when it keeps dying, so a crash cannot spin. */
		if (ran_ms >= UNSUB_HEALTHY_MS)
			backoff_reset(&unsub_backoff);
		delay = backoff_step(&unsub_backoff, UNSUB_RESPAWN_MIN_MS,
		    UNSUB_RESPAWN_MAX_MS);
	}
	unsub_respawn_in(s, delay);
}
