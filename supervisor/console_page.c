/*
 * The web console's pages: the overview (every queue with its depth,
 * pending jobs, oldest job, emails per second and pause, then every live
 * instance and its workers) and the dead letters, plus the small script
 * that refreshes them and the style sheet.  Every page works as plain
 * forms without JavaScript; with it, the script reloads the page's <main>
 * every few seconds.
 *
 * Queue names, instance records, job ids and every field of a dead letter
 * came from Redis, where anyone with access to it may have written
 * anything: each goes through console_html.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "console.h"
#include "console_ops.h"
#include "console_parse.h"
#include "instance.h"
#include "log.h"
#include "util.h"

#define CONSOLE_DLQ_SHOW 200		/* dead letters listed at most */
#define CONSOLE_QUEUES_MAX 32

static const char console_js[] =
"/* digestd console: refresh <main> every few seconds, unless a field\n"
"   is being typed in.  Without this script the pages work the same. */\n"
"(function () {\n"
"  'use strict';\n"
"  var main = document.getElementById('main');\n"
"  if (!main || !window.fetch || !window.DOMParser) return;\n"
"  var every = (parseInt(main.getAttribute('data-refresh'), 10) || 5)"
" * 1000;\n"
"  function typing() {\n"
"    var a = document.activeElement;\n"
"    return a && (a.tagName === 'INPUT' || a.tagName === 'TEXTAREA');\n"
"  }\n"
"  function refresh() {\n"
"    if (typing()) return;\n"
"    fetch(location.pathname, {credentials: 'same-origin',"
" cache: 'no-store'})\n"
"      .then(function (r) { return r.text(); })\n"
"      .then(function (t) {\n"
"        var d = new DOMParser().parseFromString(t, 'text/html');\n"
"        var m = d.getElementById('main');\n"
"        if (!m || typing()) return;\n"
"        main.replaceWith(m);\n"
"        main = m;\n"
"        document.body.setAttribute('data-refreshed', String(Date.now()));"
"\n"
"      })\n"
"      .catch(function () {});\n"
"  }\n"
"  document.body.setAttribute('data-script', 'on');\n"
"  setInterval(refresh, every);\n"
"})();\n";

static const char console_css[] =
"body{font-family:sans-serif;margin:1em 2em;color:#222}\n"
"nav a{margin-right:1em}\n"
"table{border-collapse:collapse;margin-bottom:1em}\n"
"td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\n"
"td.n{text-align:right}\n"
"form.inline{display:inline;margin:0}\n"
".paused{color:#a00;font-weight:bold}\n"
".done{background:#efe;padding:4px 8px}\n"
".error{background:#fee;padding:4px 8px}\n";

const char *
console_script(void)
{
	return console_js;
}

const char *
console_style(void)
{
	return console_css;
}

static void
console_page_head(struct evbuffer *b, const char *title, int64_t dlq)
{
	evbuffer_add_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
	    "<meta charset=\"utf-8\"><title>digestd console: %s</title>"
	    "<link rel=\"stylesheet\" href=\"/console.css\">"
	    "<script src=\"/console.js\" defer></script></head><body>\n"
	    "<header><h1>digestd console</h1><nav><a href=\"/\">Queues and "
	    "instances</a><a href=\"/dlq\">Dead letters", title);
	if (dlq >= 0)
		evbuffer_add_printf(b, " (%lld)", (long long)dlq);
	evbuffer_add_printf(b, "</a></nav></header>\n"
	    "<main id=\"main\" data-refresh=\"5\">\n");
}

static void
console_page_foot(struct evbuffer *b)
{
	evbuffer_add_printf(b, "</main></body></html>\n");
}

/* The message of an action just done (names are fixed, what is escaped). */
static void
console_flash(struct evbuffer *b, const struct console_view *v)
{
	static const struct {
		const char *done, *text;
	} msgs[] = {
		{ "paused", "Paused queue" },
		{ "resumed", "Resumed queue" },
		{ "requeued", "Requeued dead letter" },
		{ "deleted", "Deleted dead letter" },
	};
	size_t i;

	if (v->done == NULL || v->what == NULL)
		return;
	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		if (strcmp(v->done, msgs[i].done) != 0)
			continue;
		evbuffer_add_printf(b, "<p class=\"done\" id=\"flash\">%s ",
		    msgs[i].text);
		console_html(b, v->what);
		evbuffer_add_printf(b, ".</p>\n");
	}
}

static void
console_error_line(struct evbuffer *b, const char *what, const char *err)
{
	evbuffer_add_printf(b, "<p class=\"error\">%s: ", what);
	console_html(b, err);
	evbuffer_add_printf(b, "</p>\n");
}

/* The hidden field every form carries. */
static void
console_csrf_field(struct evbuffer *b, const struct console_view *v)
{
	evbuffer_add_printf(b, "<input type=\"hidden\" name=\"csrf\" "
	    "value=\"%s\">", v->csrf);
}

static void
console_time_ago(struct evbuffer *b, double t, double now)
{
	if (t <= 0)
		evbuffer_add_printf(b, "-");
	else
		evbuffer_add_printf(b, "%.0f s ago", now - t > 0 ?
		    now - t : 0);
}

/* A queue shown on the overview, with the emails per second all sent. */
struct console_queue {
	char name[SB_NAME_MAX];
	double rate;
};

static int
console_queue_add(struct console_queue *qs, int n, const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(qs[i].name, name) == 0)
			return n;
	if (n == CONSOLE_QUEUES_MAX || strlen(name) >= SB_NAME_MAX)
		return n;
	memset(&qs[n], 0, sizeof(qs[n]));
	strlcpy(qs[n].name, name, sizeof(qs[n].name));
	return n + 1;
}

static void
console_queue_rows(struct console *c, const struct console_view *v,
    struct evbuffer *b, struct console_queue *qs, int nq, int *failed)
{
	struct queue_stats st;
	struct console_pause p;
	char err[512];
	double now = now_real();
	int i;

	evbuffer_add_printf(b, "<h2>Queues</h2>\n<table id=\"queues\"><tr>"
	    "<th>queue</th><th>depth</th><th>pending</th><th>oldest</th>"
	    "<th>emails/s</th><th>paused</th><th>action</th></tr>\n");
	for (i = 0; i < nq; i++) {
		evbuffer_add_printf(b, "<tr data-queue=\"");
		console_html(b, qs[i].name);
		evbuffer_add_printf(b, "\"><td>");
		console_html(b, qs[i].name);
		evbuffer_add_printf(b, "</td>");
		if (c->qa.qb->stats(&c->qa, qs[i].name, &st, err,
		    sizeof(err)) == -1) {
			*failed = 1;
			evbuffer_add_printf(b, "<td colspan=\"3\" "
			    "class=\"error\">");
			console_html(b, err);
			evbuffer_add_printf(b, "</td>");
		} else {
			evbuffer_add_printf(b, "<td class=\"n\">%lld</td>",
			    (long long)st.depth);
			if (st.pending < 0)
				evbuffer_add_printf(b, "<td class=\"n\">?"
				    "</td>");
			else
				evbuffer_add_printf(b, "<td class=\"n\">%lld"
				    "</td>", (long long)st.pending);
			evbuffer_add_printf(b, "<td>");
			console_time_ago(b, st.oldest_enqueued, now);
			evbuffer_add_printf(b, "</td>");
		}
		evbuffer_add_printf(b, "<td class=\"n\">%.1f</td>",
		    qs[i].rate);
		if (console_pause_get(&c->qa, qs[i].name, &p, err,
		    sizeof(err)) == -1) {
			*failed = 1;
			evbuffer_add_printf(b, "<td class=\"error\">");
			console_html(b, err);
			evbuffer_add_printf(b, "</td><td></td></tr>\n");
			continue;
		}
		if (p.paused) {
			evbuffer_add_printf(b, "<td class=\"paused\">paused: ");
			console_html(b, p.reason);
			evbuffer_add_printf(b, " (");
			console_html(b, p.by);
			evbuffer_add_printf(b, ", ");
			console_time_ago(b, p.at, now);
			evbuffer_add_printf(b, ")</td><td><form class=\"inline\""
			    " method=\"post\" action=\"/resume\">");
			console_csrf_field(b, v);
			evbuffer_add_printf(b, "<input type=\"hidden\" "
			    "name=\"queue\" value=\"");
			console_html(b, qs[i].name);
			evbuffer_add_printf(b, "\"><button type=\"submit\" "
			    "name=\"resume\">Resume</button></form></td>"
			    "</tr>\n");
			continue;
		}
		evbuffer_add_printf(b, "<td>no</td><td><form class=\"inline\" "
		    "method=\"post\" action=\"/pause\">");
		console_csrf_field(b, v);
		evbuffer_add_printf(b, "<input type=\"hidden\" name=\"queue\" "
		    "value=\"");
		console_html(b, qs[i].name);
		evbuffer_add_printf(b, "\"><input type=\"text\" name=\"reason\" "
		    "placeholder=\"reason\" maxlength=\"200\"><button "
		    "type=\"submit\" name=\"pause\">Pause</button></form></td>"
		    "</tr>\n");
	}
	evbuffer_add_printf(b, "</table>\n");
}

static const char *
console_json_str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? s : "";
}

/* One instance and its workers. */
static void
console_instance(struct console *c, struct evbuffer *b,
    const struct instance_record *ir)
{
	json_t *ws, *w;
	size_t i;
	double now = now_real();
	char num[64];

	evbuffer_add_printf(b, "<section class=\"instance\" "
	    "data-instance=\"");
	console_html(b, ir->id);
	evbuffer_add_printf(b, "\"><h3>");
	console_html(b, ir->id);
	if (strcmp(ir->id, c->instance) == 0)
		evbuffer_add_printf(b, " (this one)");
	evbuffer_add_printf(b, "</h3><p>version ");
	console_html(b, ir->version);
	evbuffer_add_printf(b, ", up %.0f s, seen ", ir->started_at > 0 ?
	    now - ir->started_at : 0);
	console_time_ago(b, ir->seen_at, now);
	if (ir->draining)
		evbuffer_add_printf(b, ", <strong>draining</strong>");
	if (ir->console[0] != '\0') {
		evbuffer_add_printf(b, ", console on ");
		console_html(b, ir->console);
	}
	evbuffer_add_printf(b, "</p>\n<table class=\"workers\"><tr>"
	    "<th>pool</th><th>slot</th><th>pid</th><th>state</th><th>job</th>"
	    "<th>running</th><th>jobs done</th><th>RSS (MiB)</th></tr>\n");
	ws = ir->workers ? json_loads(ir->workers, 0, NULL) : NULL;
	for (i = 0; json_is_array(ws) && i < json_array_size(ws); i++) {
		w = json_array_get(ws, i);
		if (!json_is_object(w))
			continue;
		evbuffer_add_printf(b, "<tr><td>");
		console_html(b, console_json_str(w, "pool"));
		evbuffer_add_printf(b, "</td><td class=\"n\">%lld</td>"
		    "<td class=\"n\">%lld</td><td>",
		    (long long)json_integer_value(json_object_get(w, "slot")),
		    (long long)json_integer_value(json_object_get(w, "pid")));
		console_html(b, console_json_str(w, "state"));
		evbuffer_add_printf(b, "</td><td>");
		console_html(b, json_is_string(json_object_get(w, "job")) ?
		    console_json_str(w, "job") : "-");
		evbuffer_add_printf(b, "</td><td>");
		if (json_is_number(json_object_get(w, "job_started_at")))
			snprintf(num, sizeof(num), "%.0f s", now -
			    json_number_value(json_object_get(w,
			    "job_started_at")));
		else
			strlcpy(num, "-", sizeof(num));
		evbuffer_add_printf(b, "%s</td><td class=\"n\">%lld</td>"
		    "<td class=\"n\">%.1f</td></tr>\n", num,
		    (long long)json_integer_value(json_object_get(w,
		    "jobs_done")),
		    json_number_value(json_object_get(w, "rss_bytes")) /
		    1048576.0);
	}
	json_decref(ws);
	evbuffer_add_printf(b, "</table></section>\n");
}

int
console_page_home(struct console *c, const struct console_view *v,
    struct evbuffer *b)
{
	struct console_queue qs[CONSOLE_QUEUES_MAX];
	struct instance_record *recs = NULL;
	const char *key;
	json_t *rates, *val;
	char err[512];
	int64_t dlq = -1;
	int i, j, nq = 0, nrec = -1, failed = 0;

	for (i = 0; i < c->cfg->npools; i++)
		nq = console_queue_add(qs, nq, c->cfg->pools[i].queue);
	if (console_redis(c, err, sizeof(err)) == NULL) {
		console_page_head(b, "overview", -1);
		console_error_line(b, "queue Redis", err);
		console_page_foot(b);
		return 503;
	}
	if ((nrec = instance_list(c->rc, c->cfg, &recs, err,
	    sizeof(err))) < 0)
		failed = 1;
	/* Queues other instances consume, and the rates they send at. */
	for (i = 0; i < nrec; i++) {
		rates = recs[i].rates ? json_loads(recs[i].rates, 0, NULL) :
		    NULL;
		json_object_foreach(rates, key, val) {
			nq = console_queue_add(qs, nq, key);
			for (j = 0; j < nq; j++)
				if (strcmp(qs[j].name, key) == 0 &&
				    json_is_number(val))
					qs[j].rate += json_number_value(val);
		}
		json_decref(rates);
	}
	dlq = c->qa.qb->dlq_len(&c->qa, err, sizeof(err));
	console_page_head(b, "overview", dlq);
	console_flash(b, v);
	console_queue_rows(c, v, b, qs, nq, &failed);
	evbuffer_add_printf(b, "<h2>Instances</h2>\n");
	if (nrec < 0)
		console_error_line(b, "instances", err);
	else if (nrec == 0)
		evbuffer_add_printf(b, "<p>No instance has registered yet "
		    "(each does within 5 s of its start).</p>\n");
	for (i = 0; i < nrec; i++)
		console_instance(c, b, &recs[i]);
	instance_list_free(recs, nrec);
	console_page_foot(b);
	return failed ? 503 : 200;
}

/* The dead letters page's walk: one row per letter. */
struct console_dlq_walk {
	struct evbuffer *b;
	const struct console_view *v;
	int shown;
};

static void
console_dlq_cb(void *arg, const struct queue_letter *lt)
{
	struct console_dlq_walk *w = arg;
	struct evbuffer *b = w->b;
	const char *id = lt->job_id != NULL ? lt->job_id : lt->id;
	char when[32];
	double t;

	if (w->shown++ >= CONSOLE_DLQ_SHOW)
		return;
	evbuffer_add_printf(b, "<tr data-job=\"");
	console_html(b, lt->job_id ? lt->job_id : "");
	evbuffer_add_printf(b, "\"><td>");
	console_html(b, lt->id ? lt->id : "-");
	evbuffer_add_printf(b, "</td><td>");
	console_html(b, lt->job_id ? lt->job_id : "-");
	evbuffer_add_printf(b, "</td><td>");
	console_html(b, lt->queue ? lt->queue : "-");
	evbuffer_add_printf(b, "</td><td class=\"n\">");
	console_html(b, lt->attempts ? lt->attempts : "-");
	if (lt->failed_at == NULL || parse_double(lt->failed_at, &t) == -1)
		t = -1;
	unix_time_iso(t, when, sizeof(when));
	evbuffer_add_printf(b, "</td><td>%s</td><td>", when);
	console_html(b, lt->reason ? lt->reason : "-");
	evbuffer_add_printf(b, "</td><td>");
	if (id != NULL) {
		evbuffer_add_printf(b, "<form class=\"inline\" method=\"post\" "
		    "action=\"/dlq/requeue\">");
		console_csrf_field(b, w->v);
		evbuffer_add_printf(b, "<input type=\"hidden\" name=\"id\" "
		    "value=\"");
		console_html(b, id);
		evbuffer_add_printf(b, "\"><button type=\"submit\" "
		    "name=\"requeue\">Requeue</button></form> <form "
		    "class=\"inline\" method=\"post\" action=\"/dlq/delete\">");
		console_csrf_field(b, w->v);
		evbuffer_add_printf(b, "<input type=\"hidden\" name=\"id\" "
		    "value=\"");
		console_html(b, id);
		evbuffer_add_printf(b, "\"><button type=\"submit\" "
		    "name=\"delete\">Delete</button></form>");
	}
	evbuffer_add_printf(b, "</td></tr>\n");
}

int
console_page_dlq(struct console *c, const struct console_view *v,
    struct evbuffer *b)
{
	struct console_dlq_walk w;
	struct evbuffer *rows;
	char err[512];
	int64_t n;

	if (console_redis(c, err, sizeof(err)) == NULL) {
		console_page_head(b, "dead letters", -1);
		console_error_line(b, "queue Redis", err);
		console_page_foot(b);
		return 503;
	}
	n = c->qa.qb->dlq_len(&c->qa, err, sizeof(err));
	console_page_head(b, "dead letters", n);
	console_flash(b, v);
	evbuffer_add_printf(b, "<h2>Dead letters</h2>\n");
	if (n < 0) {
		console_error_line(b, "dead letters", err);
		console_page_foot(b);
		return 503;
	}
	if ((rows = evbuffer_new()) == NULL)
		fatalx("console: out of memory");
	memset(&w, 0, sizeof(w));
	w.b = rows;
	w.v = v;
	if (console_dlq_list(&c->qa, console_dlq_cb, &w, err,
	    sizeof(err)) == -1) {
		console_error_line(b, "dead letters", err);
		evbuffer_free(rows);
		console_page_foot(b);
		return 503;
	}
	if (w.shown == 0) {
		evbuffer_add_printf(b, "<p>No dead letters.</p>\n");
	} else {
		if (w.shown > CONSOLE_DLQ_SHOW)
			evbuffer_add_printf(b, "<p>The oldest %d of %d.</p>\n",
			    CONSOLE_DLQ_SHOW, w.shown);
		evbuffer_add_printf(b, "<table id=\"dlq\"><tr><th>entry</th>"
		    "<th>job</th><th>queue</th><th>attempts</th>"
		    "<th>failed at</th><th>reason</th><th>action</th></tr>\n");
		evbuffer_add_buffer(b, rows);
		evbuffer_add_printf(b, "</table>\n");
	}
	evbuffer_free(rows);
	console_page_foot(b);
	return 200;
}
