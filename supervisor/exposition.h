/*
 * The /metrics body (docs/design.md#http-endpoint-and-metrics): a snapshot of
 * the shared segment and the supervisor's totals, then the text formats of
 * Prometheus (0.0.4) and OpenMetrics (1.0.0) from that snapshot.  Taking the
 * snapshot first keeps each scrape self-consistent however long the client
 * takes to read it.
 */
#ifndef DIGESTD_EXPOSITION_H
#define DIGESTD_EXPOSITION_H

#include <stddef.h>
#include <stdint.h>

#include "http_parse.h"
#include "metrics.h"
#include "procstat.h"
#include "scoreboard.h"
#include "supervisor.h"

struct evbuffer;

/* Worker states exported in digest_workers{state}. */
#define EXPO_NSTATES 4

#define EXPO_MAX_POOLS (SB_MAX_POOLS + CONFIG_MAX_POOLS)
#define EXPO_MAX_QUEUES (SB_MAX_QUEUES + CONFIG_MAX_POOLS)

struct expo_pool {
	char name[SB_NAME_MAX];
	uint64_t cells[MC_NCELLS];	/* totals plus every slot's cells */
	uint64_t restarts[RESTART_N];
	uint64_t workers[EXPO_NSTATES];	/* starting, idle, busy, draining */
	uint64_t max_rss;		/* of the live workers */
};

struct expo_queue {
	char name[SB_NAME_MAX];
	double depth;
	double pending;
	double oldest_enqueued;
	double delayed;		/* jobs waiting for deferred recipients */
	double next_due;	/* the earliest of them; 0 if none */
	double paused;		/* 1 while an operator has it paused */
	double paused_at;	/* since when; 0 if not paused */
};

struct expo_snapshot {
	const char *version;
	int npools;
	struct expo_pool pools[EXPO_MAX_POOLS];
	int nqueues;
	struct expo_queue queues[EXPO_MAX_QUEUES];
	double dead_letters;
	double sched_last_success[2];	/* daily, weekly */
	double sampled_at;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	double last_reload_ok;
	struct procstat proc;
};

/* Copy everything a scrape shows out of s into snap. */
void expo_snapshot_take(const struct supervisor *s, struct expo_snapshot *snap);
/* Append the body for snap to b. */
void expo_format(struct evbuffer *b, const struct expo_snapshot *snap,
    enum expo_format);
/* Snapshot and format in one go, for the HTTP handler. */
void expo_render(struct evbuffer *b, const struct supervisor *s,
    enum expo_format);

/*
 * Number formatting, exported for the tests.  Each writes a NUL-terminated
 * string into buf (at least EXPO_NUM_MAX bytes) and returns its length.
 */
#define EXPO_NUM_MAX 48
/* A float as Prometheus expects it, with NaN, +Inf and -Inf. */
size_t expo_fmt_double(char *buf, double v);
/* Integer milliseconds (a histogram's sum) as exact decimal seconds. */
size_t expo_fmt_ms(char *buf, uint64_t ms);
/* A bucket bound in the canonical form of client libraries: 0.1, 1.0, 1e+06. */
size_t expo_fmt_le(char *buf, double v);

/* Append s escaped as a label value (\\, \", \n) or as HELP text. */
void expo_escape_label(struct evbuffer *b, const char *s);
void expo_escape_help(struct evbuffer *b, const char *s, enum expo_format);

/* /status as JSON (php-fpm's status page) and as HTML for a person. */
void status_render_json(struct evbuffer *b, const struct supervisor *s);
void status_render_html(struct evbuffer *b, const struct supervisor *s);
/*
 * The live workers of a segment, as /status lists them: a new JSON array
 * (the caller owns it).  Reads the segment only, so a child may call it.
 */
struct json_t;
struct json_t *status_workers_json(struct scoreboard *sb);

#endif
