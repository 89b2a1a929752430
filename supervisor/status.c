/*
 * /status: the supervisor's view of its pools and workers, as php-fpm's
 * status page gives it, in JSON for tools and in HTML for a person
 * (/status?html).
 *
 * Everything comes from the shared segment and the supervisor's own
 * counters; the job in hand is read under its sequence lock.  Nothing
 * from the configuration is printed but pool and queue names, so no
 * secret can leak here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "exposition.h"
#include "log.h"
#include "util.h"

struct status_worker {
	int slot;
	const char *pool;
	int pool_slot;
	pid_t pid;
	enum sb_state state;
	int has_job;		/* 1, 0 idle, -1 unknown (sb_job_read) */
	struct job job;
	double job_started_at;
	struct cursor cursor;	/* unset before the first member, or unknown */
	uint64_t jobs_done;
	uint64_t rss;
	double age_s;
};

/*
 * Names and job ids come from the configuration or the queue: anything
 * but printable ASCII becomes '?', so the JSON is always valid UTF-8.
 */
static char *
status_clean(char *dst, const char *src, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len && src[i] != '\0'; i++)
		dst[i] = (unsigned char)src[i] < 0x20 ||
		    (unsigned char)src[i] > 0x7e ? '?' : src[i];
	dst[i] = '\0';
	return dst;
}

static json_t *
status_string(const char *s)
{
	char buf[JOB_ID_MAX + SB_NAME_MAX];

	return json_string(status_clean(buf, s, sizeof(buf)));
}

static const char *
status_pool_name(const struct scoreboard *sb, int32_t pool)
{
	if (pool < 0 || pool >= SB_MAX_POOLS)
		return "";
	return sb->pools[pool].name;
}

/* Copy slot i; 0 if it holds no live worker. */
static int
status_worker_read(struct scoreboard *sb, int i, struct status_worker *w)
{
	struct sb_slot *sl = &sb->slots[i];
	int64_t started, spawned;

	memset(w, 0, sizeof(*w));
	w->state = atomic_load_explicit(&sl->state, memory_order_acquire);
	if (w->state < SB_STARTING || w->state > SB_DRAINING)
		return 0;
	w->slot = i;
	w->pid = atomic_load_explicit(&sl->pid, memory_order_relaxed);
	w->pool = status_pool_name(sb,
	    atomic_load_explicit(&sl->pool, memory_order_relaxed));
	w->pool_slot = atomic_load_explicit(&sl->pool_slot,
	    memory_order_relaxed);
	w->has_job = sb_job_read(sl, &w->job, NULL, &started);
	w->job_started_at = started / 1e9;
	(void)sb_cursor_read(sl, &w->cursor);
	w->jobs_done = atomic_load_explicit(&sl->jobs_done,
	    memory_order_relaxed);
	w->rss = atomic_load_explicit(&sl->rss_bytes, memory_order_relaxed);
	spawned = atomic_load_explicit(&sl->spawned_ns, memory_order_relaxed);
	w->age_s = spawned > 0 ? (now_mono_ns() - spawned) / 1e9 : 0;
	return 1;
}

static json_t *
status_pools_json(const struct supervisor *s, const struct expo_snapshot *snap)
{
	const struct pool_config *pc;
	json_t *pools, *p, *r;
	char key[SB_NAME_MAX];
	int i, j;

	static const char *const states[EXPO_NSTATES] = {
		"starting", "idle", "busy", "draining",
	};

	pools = json_object();
	for (i = 0; i < snap->npools; i++) {
		pc = s->cfg ? config_pool(s->cfg, snap->pools[i].name) : NULL;
		p = json_object();
		json_object_set_new(p, "queue", pc ? json_string(pc->queue) :
		    json_null());
		json_object_set_new(p, "workers", json_integer(pc ?
		    pc->workers : 0));
		json_object_set_new(p, "active", json_boolean(pc != NULL));
		for (j = 0; j < EXPO_NSTATES; j++)
			json_object_set_new(p, states[j],
			    json_integer(snap->pools[i].workers[j]));
		json_object_set_new(p, "jobs_ok", json_integer(
		    snap->pools[i].cells[MC_JOBS + JOB_OK]));
		json_object_set_new(p, "max_rss_bytes",
		    json_integer(snap->pools[i].max_rss));
		r = json_object();
		for (j = 0; j < RESTART_N; j++)
			json_object_set_new(r, restart_reason_names[j],
			    json_integer(snap->pools[i].restarts[j]));
		json_object_set_new(p, "restarts", r);
		json_object_set_new_nocheck(pools, status_clean(key,
		    snap->pools[i].name, sizeof(key)), p);
	}
	return pools;
}

static json_t *
status_queues_json(const struct expo_snapshot *snap)
{
	json_t *queues, *q;
	char key[SB_NAME_MAX];
	int i;

	queues = json_object();
	for (i = 0; i < snap->nqueues; i++) {
		q = json_object();
		json_object_set_new(q, "depth", isnan(snap->queues[i].depth) ?
		    json_null() : json_integer(snap->queues[i].depth));
		json_object_set_new(q, "pending", isnan(snap->queues[i].pending) ?
		    json_null() : json_integer(snap->queues[i].pending));
		json_object_set_new(q, "oldest_enqueued_at",
		    snap->queues[i].oldest_enqueued > 0 ?
		    json_real(snap->queues[i].oldest_enqueued) : json_null());
		/* Jobs waiting for deferred recipients, and the next due. */
		json_object_set_new(q, "delayed", isnan(snap->queues[i].delayed) ?
		    json_null() : json_integer(snap->queues[i].delayed));
		json_object_set_new(q, "next_due", snap->queues[i].next_due > 0 ?
		    json_real(snap->queues[i].next_due) : json_null());
		/* An operator's pause (digestctl pause); null while unknown. */
		json_object_set_new(q, "paused", isnan(snap->queues[i].paused) ?
		    json_null() : json_boolean(snap->queues[i].paused > 0));
		json_object_set_new(q, "paused_at",
		    snap->queues[i].paused_at > 0 ?
		    json_real(snap->queues[i].paused_at) : json_null());
		json_object_set_new_nocheck(queues, status_clean(key,
		    snap->queues[i].name, sizeof(key)), q);
	}
	return queues;
}

json_t *
status_workers_json(struct scoreboard *sb)
{
	struct status_worker w;
	json_t *workers, *o;
	int i;

	workers = json_array();
	for (i = 0; i < SB_MAX_SLOTS; i++) {
		if (!status_worker_read(sb, i, &w))
			continue;
		o = json_object();
		json_object_set_new(o, "pool", status_string(w.pool));
		json_object_set_new(o, "slot", json_integer(w.pool_slot));
		json_object_set_new(o, "pid", json_integer(w.pid));
		json_object_set_new(o, "state",
		    json_string(sb_state_name(w.state)));
		/*
		 * A job that cannot be read (being written, or torn by a worker
		 * killed as it wrote it) is null like an idle worker's, and
		 * job_unknown tells the two apart.
		 */
		json_object_set_new(o, "job", w.has_job == 1 ?
		    status_string(w.job.job_id) : json_null());
		json_object_set_new(o, "job_unknown",
		    json_boolean(w.has_job == -1));
		json_object_set_new(o, "job_started_at", w.has_job == 1 ?
		    json_real(w.job_started_at) : json_null());
		json_object_set_new(o, "cursor", w.has_job == 1 &&
		    w.cursor.set ? json_integer(w.cursor.uid) : json_null());
		json_object_set_new(o, "jobs_done", json_integer(w.jobs_done));
		json_object_set_new(o, "rss_bytes", json_integer(w.rss));
		json_object_set_new(o, "uptime_seconds",
		    json_real(w.age_s));
		json_array_append_new(workers, o);
	}
	return workers;
}

void
status_render_json(struct evbuffer *b, const struct supervisor *s)
{
	static struct expo_snapshot snap;
	json_t *root, *o;
	char *text;
	double now = now_real();

	expo_snapshot_take(s, &snap);
	root = json_object();
	json_object_set_new(root, "version", json_string(DIGESTD_VERSION));
	json_object_set_new(root, "pid", json_integer(getpid()));
	json_object_set_new(root, "start_time", json_real(s->started_at));
	json_object_set_new(root, "start_since",
	    json_integer((json_int_t)(now - s->started_at)));
	json_object_set_new(root, "ready", json_boolean(supervisor_ready(s)));
	json_object_set_new(root, "draining", json_boolean(s->draining));
	o = json_object();
	json_object_set_new(o, "success", json_integer(s->reloads_ok));
	json_object_set_new(o, "failure", json_integer(s->reloads_failed));
	json_object_set_new(o, "last_success", json_real(s->last_reload_ok));
	json_object_set_new(root, "reloads", o);
	json_object_set_new(root, "pools", status_pools_json(s, &snap));
	json_object_set_new(root, "queues", status_queues_json(&snap));
	json_object_set_new(root, "dead_letters", isnan(snap.dead_letters) ?
	    json_null() : json_integer((json_int_t)snap.dead_letters));
	json_object_set_new(root, "sampled_at", snap.sampled_at > 0 ?
	    json_real(snap.sampled_at) : json_null());

	json_object_set_new(root, "workers", status_workers_json(s->sb));

	/* Job ids come from the queue: jansson escapes them as JSON needs. */
	text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (text == NULL)
		fatalx("status: out of memory");
	evbuffer_add(b, text, strlen(text));
	evbuffer_add(b, "\n", 1);
	free(text);
}

static void
status_html_text(struct evbuffer *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '<':
			evbuffer_add(b, "&lt;", 4);
			break;
		case '>':
			evbuffer_add(b, "&gt;", 4);
			break;
		case '&':
			evbuffer_add(b, "&amp;", 5);
			break;
		case '"':
			evbuffer_add(b, "&quot;", 6);
			break;
		case '\'':
			evbuffer_add(b, "&#39;", 5);
			break;
		default:
			evbuffer_add(b, s, 1);
		}
	}
}

/* A figure for people: "?" while it is unknown (never sampled). */
static const char *
status_html_num(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "?");
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

static void
status_html_row(struct evbuffer *b, const char *tag, const char *const *cells,
    int n)
{
	int i;

	evbuffer_add_printf(b, "<tr>");
	for (i = 0; i < n; i++) {
		evbuffer_add_printf(b, "<%s>", tag);
		status_html_text(b, cells[i]);
		evbuffer_add_printf(b, "</%s>", tag);
	}
	evbuffer_add_printf(b, "</tr>\n");
}

void
status_render_html(struct evbuffer *b, const struct supervisor *s)
{
	static struct expo_snapshot snap;
	static const char *const pool_head[] = {
		"pool", "starting", "idle", "busy", "draining", "jobs ok",
		"max RSS (MiB)", "restarts",
	};
	static const char *const queue_head[] = {
		"queue", "depth", "pending", "oldest enqueued (s ago)",
		"paused",
	};
	static const char *const worker_head[] = {
		"pool", "slot", "pid", "state", "job", "running (s)",
		"cursor", "jobs done", "RSS (MiB)", "uptime (s)",
	};
	struct status_worker w;
	char v[10][JOB_ID_MAX + SB_NAME_MAX], dl[32];
	const char *cells[10];
	double now = now_real();
	int i, j;

	for (i = 0; i < 10; i++)
		cells[i] = v[i];
	expo_snapshot_take(s, &snap);
	evbuffer_add_printf(b, "<!DOCTYPE html>\n<html><head>"
	    "<meta charset=\"utf-8\"><title>digestd status</title>"
	    "<style>body{font-family:sans-serif}table{border-collapse:"
	    "collapse;margin-bottom:1em}td,th{border:1px solid #ccc;"
	    "padding:2px 8px;text-align:right}</style></head><body>\n");
	evbuffer_add_printf(b, "<h1>digestd %s</h1>\n<p>pid %d, up %.0f s, "
	    "%s%s; reloads: %llu ok, %llu failed; dead letters: %s</p>\n",
	    DIGESTD_VERSION, (int)getpid(), now - s->started_at,
	    supervisor_ready(s) ? "ready" : "not ready",
	    s->draining ? ", draining" : "",
	    (unsigned long long)s->reloads_ok,
	    (unsigned long long)s->reloads_failed,
	    status_html_num(dl, sizeof(dl), snap.dead_letters));

	evbuffer_add_printf(b, "<h2>Pools</h2><table>\n");
	status_html_row(b, "th", pool_head, 8);
	for (i = 0; i < snap.npools; i++) {
		const struct expo_pool *p = &snap.pools[i];
		uint64_t restarts = 0;

		for (j = 0; j < RESTART_N; j++)
			restarts += p->restarts[j];
		snprintf(v[0], sizeof(v[0]), "%s", p->name);
		for (j = 0; j < EXPO_NSTATES; j++)
			snprintf(v[1 + j], sizeof(v[0]), "%llu",
			    (unsigned long long)p->workers[j]);
		snprintf(v[5], sizeof(v[0]), "%llu",
		    (unsigned long long)p->cells[MC_JOBS + JOB_OK]);
		snprintf(v[6], sizeof(v[0]), "%.1f", p->max_rss / 1048576.0);
		snprintf(v[7], sizeof(v[0]), "%llu",
		    (unsigned long long)restarts);
		status_html_row(b, "td", cells, 8);
	}
	evbuffer_add_printf(b, "</table>\n<h2>Queues</h2><table>\n");
	status_html_row(b, "th", queue_head, 5);
	for (i = 0; i < snap.nqueues; i++) {
		snprintf(v[0], sizeof(v[0]), "%s", snap.queues[i].name);
		status_html_num(v[1], sizeof(v[0]), snap.queues[i].depth);
		status_html_num(v[2], sizeof(v[0]), snap.queues[i].pending);
		if (snap.queues[i].oldest_enqueued > 0)
			snprintf(v[3], sizeof(v[0]), "%.0f",
			    now - snap.queues[i].oldest_enqueued);
		else
			strlcpy(v[3], "-", sizeof(v[3]));
		strlcpy(v[4], snap.queues[i].paused > 0 ? "PAUSED" : "-",
		    sizeof(v[4]));
		status_html_row(b, "td", cells, 5);
	}
	evbuffer_add_printf(b, "</table>\n<h2>Workers</h2><table>\n");
	status_html_row(b, "th", worker_head, 10);
	for (i = 0; i < SB_MAX_SLOTS; i++) {
		if (!status_worker_read(s->sb, i, &w))
			continue;
		snprintf(v[0], sizeof(v[0]), "%s", w.pool);
		snprintf(v[1], sizeof(v[0]), "%d", w.pool_slot);
		snprintf(v[2], sizeof(v[0]), "%d", (int)w.pid);
		snprintf(v[3], sizeof(v[0]), "%s", sb_state_name(w.state));
		snprintf(v[4], sizeof(v[0]), "%s", w.has_job == 1 ?
		    w.job.job_id : w.has_job == -1 ? "(unknown)" : "-");
		if (w.has_job == 1)
			snprintf(v[5], sizeof(v[0]), "%.1f",
			    now - w.job_started_at);
		else
			strlcpy(v[5], "-", sizeof(v[5]));
		if (w.has_job == 1 && w.cursor.set)
			snprintf(v[6], sizeof(v[0]), "%lld",
			    (long long)w.cursor.uid);
		else
			strlcpy(v[6], "-", sizeof(v[6]));
		snprintf(v[7], sizeof(v[0]), "%llu",
		    (unsigned long long)w.jobs_done);
		snprintf(v[8], sizeof(v[0]), "%.1f", w.rss / 1048576.0);
		snprintf(v[9], sizeof(v[0]), "%.0f", w.age_s);
		status_html_row(b, "td", cells, 10);
	}
	evbuffer_add_printf(b, "</table>\n</body></html>\n");
}
