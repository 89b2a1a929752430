/*
 * digestctl schedule and enqueue: turn the groups with posts in the
 * period's window into jobs, route them by engagement, split big groups
 * into shards by rank, and enqueue them idempotently.
 *
 * The activity store is read with single-key commands only, pipelined per
 * page of groups, so thousands of groups cost a handful of round trips and
 * the store may sit behind a sharding proxy.  groups:active is paged by a
 * (score, member) cursor (zpage.c), because the host application writes
 * it while we read.
 *
 * A shard's members are those whose score has its floor in [member_min,
 * member_max], so any score (fractional, duplicated, negative, beyond the
 * 64-bit range) falls in exactly one shard: equal floors across a boundary
 * go to the shard before, and the group's last shard is open-ended
 * (last_shard), for the members who join after we read.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "ctl.h"
#include "period.h"
#include "rconn.h"
#include "util.h"
#include "zpage.h"

#define SCHED_PAGE 1000			/* groups read per pipeline */
#define SCHED_RECORD_TTL_S (14 * 86400)	/* two weekly periods */

struct sched_group {
	int64_t gid;
	int64_t posts;			/* in the window */
	int64_t members;		/* ZCARD */
	const char *queue;
};

struct sched_counts {
	int64_t groups;			/* active after window_start */
	int64_t with_posts;		/* ... with a post in the window */
	int64_t empty;			/* ... but no member */
	int64_t jobs[2];		/* added: priority, standard */
	int64_t jobs_other;		/* added to a --queue of its own */
	int64_t existing;		/* already enqueued */
};

struct sched_run {
	struct ctl *c;
	int period;
	int64_t window_start;
	int64_t window_end;
	int force;
	struct sched_counts n;
};

static const char *
sched_route(const struct config *cfg, int64_t posts, int64_t members)
{
	double score = (double)posts * sqrt((double)members);

	return score >= cfg->schedule.priority_threshold ? "priority" :
	    "standard";
}

/* Read one reply of a pipeline; -1 with err on an I/O or Redis error. */
static int
sched_reply(struct ctl *c, redisContext *rc, redisReply **r)
{
	if (redisGetReply(rc, (void **)r) != REDIS_OK || *r == NULL) {
		snprintf(c->err, sizeof(c->err), "redis: %s",
		    rc->err ? rc->errstr : "no reply");
		return -1;
	}
	if ((*r)->type == REDIS_REPLY_ERROR) {
		snprintf(c->err, sizeof(c->err), "redis: %s", (*r)->str);
		freeReplyObject(*r);
		*r = NULL;
		return -1;
	}
	return 0;
}

/* Drain n pending replies after an error, so the connection stays usable. */
static void
sched_drain(redisContext *rc, size_t n)
{
	redisReply *r;

	while (n-- > 0 && rc->err == 0)
		if (redisGetReply(rc, (void **)&r) == REDIS_OK && r != NULL)
			freeReplyObject(r);
}

/* Shards of a group of members members: one unless it is above shard_size. */
static int64_t
sched_nshards(int64_t members, int64_t ss)
{
	return members > ss ? (members + ss - 1) / ss : 1;
}

/*
 * The floors of the scores of a ZRANGE ... WITHSCORES reply, in b; a
 * reply of other shapes reads as no member.
 */
static void
sched_bound_read(redisReply *r, struct schedule_bound *b)
{
	double d;
	size_t i;

	b->n = 0;
	if (r->type != REDIS_REPLY_ARRAY || r->elements > 4)
		return;
	for (i = 0; i + 1 < r->elements; i += 2) {
		if (r->element[i + 1]->type != REDIS_REPLY_STRING ||
		    zpage_parse_score(r->element[i + 1]->str, &d) == -1) {
			b->n = 0;
			return;
		}
		b->v[b->n++] = zpage_floor(d);
	}
}

int
schedule_shards(const struct schedule_bound *b, int64_t nsh,
    struct schedule_shard *out)
{
	int64_t k, min, max, next = 0, covered = 0;
	int m = 0, end;

	if (b[0].n < 1)
		return 0;		/* emptied since ZCARD */
	min = b[0].v[0];
	for (k = 0; k < nsh; k++) {
		end = 1;
		if (k + 1 < nsh && b[k + 1].n == 2) {
			max = b[k + 1].v[0];
			next = b[k + 1].v[1];
			end = 0;
		} else if (k + 1 < nsh && b[k + 1].n == 1)
			max = b[k + 1].v[0];	/* the last member now */
		else
			/* The last shard, or the membership shrank. */
			max = b[nsh].n >= 1 ? b[nsh].v[0] : INT64_MAX;
		if (min <= max) {
			out[m].k = k;
			out[m].min = min;
			out[m].max = max;
			m++;
			covered = max;
		}
		if (end || (m > 0 && covered == INT64_MAX))
			break;
		/*
		 * Members sharing a floor across the boundary all belong to
		 * the shard before, whose range ends at that floor.
		 */
		if (m > 0 && next <= covered)
			next = covered + 1;
		min = next;
	}
	return m;
}

/*
 * A forced enqueue runs its jobs again: a finished checkpoint (done,
 * dead, cancelled) would make the worker acknowledge the job at once, so
 * it goes; a running one stays, and the job then resumes from it.
 */
static int
sched_rerun(struct sched_run *s, const struct job *jobs, size_t n)
{
	struct ctl *c = s->c;
	size_t i;

	for (i = 0; i < n; i++)
		if (checkpoint_forget(c->qr, c->cfg, jobs[i].job_id, c->err,
		    sizeof(c->err)) == -1)
			return -1;
	return 0;
}

/*
 * Make and enqueue the jobs of groups g[0..n): one pipelined round of
 * ZRANGEs, then the jobs.  For each group that is its first member, the
 * two members on each side of each shard boundary (one command, so the
 * two are neighbours at one instant), and its last member.
 */
static int
sched_enqueue_groups(struct sched_run *s, struct sched_group *g, size_t n)
{
	struct ctl *c = s->c;
	const struct config *cfg = c->cfg;
	int64_t ss = cfg->schedule.shard_size, k, nsh, total = 0;
	struct schedule_bound *bounds;
	struct schedule_shard *sh;
	redisReply *r;
	char key[512];
	struct job *jobs, *j;
	const char **queues;
	size_t i, sent = 0, b, nj = 0, first_i, last_i;
	int rv, *added, m, x;

	for (i = 0; i < n; i++)
		total += sched_nshards(g[i].members, ss);
	bounds = xcalloc((size_t)total + n, sizeof(*bounds));
	for (i = 0; i < n; i++) {
		if (rkey(key, sizeof(key), cfg->redis.key_prefix,
		    "group:%" PRId64 ":members", g[i].gid) == NULL)
			goto toolong;
		nsh = sched_nshards(g[i].members, ss);
		redisAppendCommand(c->data, "ZRANGE %s 0 0 WITHSCORES", key);
		for (k = 1; k < nsh; k++)
			redisAppendCommand(c->data,
			    "ZRANGE %s %lld %lld WITHSCORES", key,
			    (long long)(k * ss - 1), (long long)(k * ss));
		redisAppendCommand(c->data, "ZRANGE %s -1 -1 WITHSCORES", key);
		sent += (size_t)nsh + 1;
	}
	for (b = 0; b < sent; b++) {
		if (sched_reply(c, c->data, &r) == -1) {
			sched_drain(c->data, sent - b - 1);
			free(bounds);
			return -1;
		}
		sched_bound_read(r, &bounds[b]);
		freeReplyObject(r);
	}

	jobs = xcalloc((size_t)total, sizeof(*jobs));
	queues = xcalloc((size_t)total, sizeof(*queues));
	added = xcalloc((size_t)total, sizeof(*added));
	sh = xcalloc((size_t)total, sizeof(*sh));
	b = 0;
	for (i = 0; i < n; i++) {
		nsh = sched_nshards(g[i].members, ss);
		m = schedule_shards(&bounds[b], nsh, sh);
		b += (size_t)nsh + 1;
		for (x = 0; x < m; x++) {
			j = &jobs[nj];
			strlcpy(j->period, period_name(s->period),
			    sizeof(j->period));
			j->group_id = g[i].gid;
			j->window_start = s->window_start;
			j->window_end = s->window_end;
			j->member_min = sh[x].min;
			j->member_max = sh[x].max;
			j->last_shard = x == m - 1;
			j->enqueued_at = now_real();
			job_make_id(j, (int)sh[x].k);
			queues[nj++] = g[i].queue;
		}
	}
	free(sh);
	/* One pipeline per queue, its jobs gathered together. */
	rv = 0;
	for (first_i = 0; first_i < nj && rv == 0; first_i = last_i) {
		size_t q0 = first_i, mq = 0;

		/* Gather this queue's jobs at the front of the rest. */
		for (last_i = first_i; last_i < nj; last_i++) {
			if (strcmp(queues[last_i], queues[q0]) != 0)
				continue;
			if (last_i != first_i + mq) {
				struct job tj = jobs[first_i + mq];
				const char *tq = queues[first_i + mq];

				jobs[first_i + mq] = jobs[last_i];
				queues[first_i + mq] = queues[last_i];
				jobs[last_i] = tj;
				queues[last_i] = tq;
			}
			mq++;
		}
		last_i = first_i + mq;
		if (s->force && sched_rerun(s, &jobs[first_i], mq) == -1) {
			rv = -1;
			break;
		}
		if (c->qa.qb->enqueue(&c->qa, queues[first_i],
		    &jobs[first_i], mq, s->force, &added[first_i], c->err,
		    sizeof(c->err)) == -1)
			rv = -1;
		for (b = first_i; b < first_i + mq; b++) {
			if (!added[b])
				s->n.existing += rv == 0;
			else if (strcmp(queues[b], "priority") == 0)
				s->n.jobs[0]++;
			else if (strcmp(queues[b], "standard") == 0)
				s->n.jobs[1]++;
			else
				s->n.jobs_other++;
		}
	}
	free(jobs);
	free(queues);
	free(added);
	free(bounds);
	return rv;
toolong:
	snprintf(c->err, sizeof(c->err), "key too long");
	sched_drain(c->data, sent);
	free(bounds);
	return -1;
}

/*
 * For the group ids in ids[0..n): posts in the window and members, in one
 * pipeline; groups with both go into g, routed.  Returns how many, or -1.
 */
static int
sched_read_groups(struct sched_run *s, const int64_t *ids, size_t n,
    struct sched_group *g, const char *queue)
{
	struct ctl *c = s->c;
	redisReply *r;
	char key[512];
	size_t i, m = 0;
	int64_t posts, members;

	for (i = 0; i < n; i++) {
		/* The longer of the two keys first: then both fit. */
		if (rkey(key, sizeof(key), c->cfg->redis.key_prefix,
		    "group:%" PRId64 ":members", ids[i]) == NULL) {
			snprintf(c->err, sizeof(c->err), "key too long");
			sched_drain(c->data, 2 * i);
			return -1;
		}
		redisAppendCommand(c->data, "ZCARD %s", key);
		rkey(key, sizeof(key), c->cfg->redis.key_prefix,
		    "group:%" PRId64 ":posts", ids[i]);
		redisAppendCommand(c->data, "ZCOUNT %s (%lld %lld", key,
		    (long long)s->window_start, (long long)s->window_end);
	}
	for (i = 0; i < n; i++) {
		if (sched_reply(c, c->data, &r) == -1) {
			sched_drain(c->data, 2 * (n - i) - 1);
			return -1;
		}
		members = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
		freeReplyObject(r);
		if (sched_reply(c, c->data, &r) == -1) {
			sched_drain(c->data, 2 * (n - i) - 2);
			return -1;
		}
		posts = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
		freeReplyObject(r);
		if (posts < 1 && queue == NULL)
			continue;
		s->n.with_posts++;
		if (members < 1) {
			s->n.empty++;
			continue;
		}
		g[m].gid = ids[i];
		g[m].posts = posts;
		g[m].members = members;
		g[m].queue = queue != NULL ? queue :
		    sched_route(c->cfg, posts, members);
		m++;
	}
	return (int)m;
}

/*
 * The groups read so far in this run: a set of ids, open addressing.  A
 * group whose score rises past the cursor is read again; it is scheduled
 * and counted once.
 */
struct sched_seen {
	int64_t *slot;			/* id + 1; 0 is an empty slot */
	size_t cap;			/* a power of two */
	size_t n;
};

static size_t
sched_seen_hash(int64_t id, size_t cap)
{
	uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ULL;

	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* Add id (>= 0): 1 if it is new, 0 if it was there. */
static int
sched_seen_add(struct sched_seen *ss, int64_t id)
{
	int64_t *old;
	size_t i, h, oldcap;

	if (2 * (ss->n + 1) > ss->cap) {
		old = ss->slot;
		oldcap = ss->cap;
		ss->cap = oldcap ? 2 * oldcap : 4096;
		ss->slot = xcalloc(ss->cap, sizeof(*ss->slot));
		for (i = 0; i < oldcap; i++) {
			if (old[i] == 0)
				continue;
			for (h = sched_seen_hash(old[i] - 1, ss->cap);
			    ss->slot[h] != 0; h = (h + 1) & (ss->cap - 1))
				;
			ss->slot[h] = old[i];
		}
		free(old);
	}
	for (h = sched_seen_hash(id, ss->cap); ss->slot[h] != 0;
	    h = (h + 1) & (ss->cap - 1))
		if (ss->slot[h] == id + 1)
			return 0;
	ss->slot[h] = id + 1;
	ss->n++;
	return 1;
}

/*
 * Walk groups:active after window_start, a page at a time, by a (score,
 * member) cursor: the host application bumps scores and removes groups
 * while we read, and neither may make us miss a group.
 */
static int
sched_all(struct sched_run *s)
{
	struct ctl *c = s->c;
	struct sched_group *g;
	struct sched_seen seen = { NULL, 0, 0 };
	struct zpage zp;
	int64_t *ids;
	char key[512], min[32];
	const char *member;
	size_t i, n, len;
	int m, rv;

	if (rkey(key, sizeof(key), c->cfg->redis.key_prefix, "groups:active") ==
	    NULL) {
		snprintf(c->err, sizeof(c->err), "key too long");
		return -1;
	}
	snprintf(min, sizeof(min), "(%" PRId64, s->window_start);
	zpage_init(&zp, key, min, "+inf", SCHED_PAGE);
	ids = xcalloc(SCHED_PAGE, sizeof(*ids));
	g = xcalloc(SCHED_PAGE, sizeof(*g));
	while ((rv = zpage_next(&zp, c->data, c->err, sizeof(c->err))) == 1) {
		n = 0;
		for (i = zp.first; i < zp.n; i++) {
			/* hiredis ends every string with a NUL. */
			member = zpage_member(&zp, i, &len);
			if (strlen(member) == len &&
			    parse_i64(member, 0, INT64_MAX, &ids[n]) == 0 &&
			    sched_seen_add(&seen, ids[n]))
				n++;
		}
		s->n.groups += (int64_t)n;
		if ((m = sched_read_groups(s, ids, n, g, NULL)) == -1 ||
		    sched_enqueue_groups(s, g, (size_t)m) == -1) {
			rv = -1;
			break;
		}
	}
	zpage_clear(&zp);
	free(seen.slot);
	free(ids);
	free(g);
	return rv;
}

/*
 * 1 when an operator cancelled the run of this window (digestctl cancel):
 * scheduling it again enqueues nothing.  0, or -1 after saying why.
 */
static int
sched_cancelled(struct sched_run *s)
{
	struct ctl *c = s->c;
	int rc;

	rc = queue_run_cancelled(&c->qa, period_name(s->period),
	    s->window_end, c->err, sizeof(c->err));
	if (rc == -1)
		fprintf(stderr, "digestctl: %s\n", ctl_vis(c->err));
	return rc;
}

static void
sched_iso(int64_t t, char *buf, size_t len)
{
	unix_time_iso((double)t, buf, len);
}

/* Record the run in digest:sched:{period}; failures to record are errors. */
static int
sched_record(struct sched_run *s, double start, double end, int ok,
    const char *error)
{
	struct ctl *c = s->c;
	redisReply *r;
	char key[512], v[10][64];
	int rv = 0, i;

	if (rkey(key, sizeof(key), c->cfg->redis.key_prefix, "digest:sched:%s",
	    period_name(s->period)) == NULL)
		return -1;
	snprintf(v[0], sizeof(v[0]), "%.6f", start);
	snprintf(v[1], sizeof(v[1]), "%.6f", end);
	snprintf(v[2], sizeof(v[2]), "%" PRId64, s->window_start);
	snprintf(v[3], sizeof(v[3]), "%" PRId64, s->window_end);
	snprintf(v[4], sizeof(v[4]), "%" PRId64, s->n.jobs[0]);
	snprintf(v[5], sizeof(v[5]), "%" PRId64, s->n.jobs[1]);
	snprintf(v[6], sizeof(v[6]), "%" PRId64, s->n.existing);
	snprintf(v[7], sizeof(v[7]), "%" PRId64, s->n.with_posts);
	redisAppendCommand(c->qr, "HSET %s start %s end %s status %s "
	    "window_start %s window_end %s jobs_priority %s jobs_standard %s "
	    "skipped_existing %s groups %s error %s", key, v[0], v[1],
	    ok ? "ok" : "failed", v[2], v[3], v[4], v[5], v[6], v[7],
	    error != NULL ? error : "");
	/*
	 * last_success survives a failed run, so the time of the last good
	 * one is never lost to a later failure.
	 */
	if (ok)
		redisAppendCommand(c->qr, "HSET %s last_success %s", key, v[1]);
	redisAppendCommand(c->qr, "EXPIRE %s %d", key, SCHED_RECORD_TTL_S);
	for (i = 0; i < (ok ? 3 : 2); i++) {
		if (redisGetReply(c->qr, (void **)&r) != REDIS_OK || r == NULL)
			return -1;
		if (r->type == REDIS_REPLY_ERROR) {
			snprintf(c->err, sizeof(c->err), "redis HSET %s: %s",
			    key, r->str);
			rv = -1;
		}
		freeReplyObject(r);
	}
	return rv;
}

/*
 * Trim the queues of what they no longer need to keep (queue.h: trim; on
 * Redis, acknowledged entries older than two weekly periods).  The
 * scheduler runs every period, which makes it the natural owner of this
 * chore; a failure is worth a warning, not a failed run.
 */
static void
sched_trim(struct ctl *c)
{
	const char *names[CTL_MAX_QUEUES];
	char err[256];
	int i, n;

	n = ctl_queues(c->cfg, names);
	for (i = 0; i < n; i++)
		if (c->qa.qb->trim(&c->qa, names[i], err, sizeof(err)) == -1)
			fprintf(stderr, "digestctl schedule: trimming queue %s: "
			    "%s\n", names[i], ctl_vis(err));
}

int
ctl_cmd_schedule(struct ctl *c, int argc, char **argv)
{
	struct sched_run s;
	const char *p = NULL, *v;
	char ws[32], we[32], saved[CTL_ERR_MAX];
	double start, end;
	int64_t now = (int64_t)time(NULL);
	int i, rc;

	memset(&s, 0, sizeof(s));
	s.c = c;
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--period") == 0) {
			if ((p = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
		} else if (strcmp(argv[i], "--now") == 0) {
			if ((v = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
			if (ctl_parse_now(v, &now) == -1) {
				fprintf(stderr, "digestctl: bad --now: %s\n", v);
				return 2;
			}
		} else {
			fprintf(stderr, "digestctl schedule: unknown argument %s\n",
			    argv[i]);
			return 2;
		}
	}
	if ((s.period = period_parse(p)) == -1) {
		fprintf(stderr, "digestctl schedule: --period daily|weekly is "
		    "required\n");
		return 2;
	}
	period_window(s.period, c->cfg->schedule.day_start_s, now,
	    &s.window_start, &s.window_end);
	sched_iso(s.window_start, ws, sizeof(ws));
	sched_iso(s.window_end, we, sizeof(we));
	if ((rc = sched_cancelled(&s)) != 0) {
		if (rc == -1)
			return 1;
		printf("schedule %s: window %s .. %s was cancelled: nothing "
		    "enqueued\n", period_name(s.period), ws, we);
		return 0;
	}

	start = now_real();
	if (sched_all(&s) == -1) {
		strlcpy(saved, c->err, sizeof(saved));
		end = now_real();
		if (sched_record(&s, start, end, 0, saved) == -1)
			fprintf(stderr, "digestctl schedule: could not record "
			    "the failed run\n");
		fprintf(stderr, "digestctl schedule %s: failed: %s (window %s .. "
		    "%s, %" PRId64 " jobs enqueued before the failure)\n",
		    period_name(s.period), ctl_vis(saved), ws, we,
		    s.n.jobs[0] + s.n.jobs[1]);
		return 1;
	}
	end = now_real();
	sched_trim(c);
	if (sched_record(&s, start, end, 1, NULL) == -1) {
		fprintf(stderr, "digestctl schedule %s: jobs enqueued but the "
		    "run could not be recorded: %s\n", period_name(s.period),
		    ctl_vis(c->err));
		return 1;
	}
	printf("schedule %s: window %s .. %s (%" PRId64 " .. %" PRId64 ")\n",
	    period_name(s.period), ws, we, s.window_start, s.window_end);
	printf("groups: %" PRId64 " active, %" PRId64 " with posts in the window"
	    ", %" PRId64 " without members\n", s.n.groups, s.n.with_posts,
	    s.n.empty);
	printf("jobs enqueued: %" PRId64 " (priority %" PRId64 ", standard %"
	    PRId64 "), already enqueued: %" PRId64 ", in %.3fs\n",
	    s.n.jobs[0] + s.n.jobs[1], s.n.jobs[0], s.n.jobs[1], s.n.existing,
	    end - start);
	return 0;
}

int
ctl_cmd_enqueue(struct ctl *c, int argc, char **argv)
{
	struct sched_run s;
	struct sched_group g;
	const char *p = NULL, *q = NULL, *v;
	int64_t now = (int64_t)time(NULL), gid = -1;
	int i, m, rc;

	memset(&s, 0, sizeof(s));
	s.c = c;
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--period") == 0) {
			if ((p = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
		} else if (strcmp(argv[i], "--queue") == 0) {
			if ((q = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
		} else if (strcmp(argv[i], "--group") == 0) {
			if ((v = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
			if (parse_i64(v, 0, INT64_MAX, &gid) == -1) {
				fprintf(stderr, "digestctl: bad --group: %s\n", v);
				return 2;
			}
		} else if (strcmp(argv[i], "--now") == 0) {
			if ((v = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
			if (ctl_parse_now(v, &now) == -1) {
				fprintf(stderr, "digestctl: bad --now: %s\n", v);
				return 2;
			}
		} else if (strcmp(argv[i], "--force") == 0) {
			s.force = 1;
		} else {
			fprintf(stderr, "digestctl enqueue: unknown argument %s\n",
			    argv[i]);
			return 2;
		}
	}
	if ((s.period = period_parse(p)) == -1 || gid < 0) {
		fprintf(stderr, "digestctl enqueue: --group GID and --period "
		    "daily|weekly are required\n");
		return 2;
	}
	if (q != NULL && (q[0] == '\0' || strlen(q) >= CONFIG_NAME_MAX)) {
		fprintf(stderr, "digestctl enqueue: bad --queue\n");
		return 2;
	}
	period_window(s.period, c->cfg->schedule.day_start_s, now,
	    &s.window_start, &s.window_end);
	if ((rc = sched_cancelled(&s)) != 0) {
		if (rc == 1)
			fprintf(stderr, "digestctl enqueue: the %s run of that "
			    "window was cancelled\n", period_name(s.period));
		return 1;
	}
	/* An explicit request: the group's posts are not required. */
	m = sched_read_groups(&s, &gid, 1, &g, q != NULL ? q : "");
	if (m == -1) {
		fprintf(stderr, "digestctl enqueue: %s\n", ctl_vis(c->err));
		return 1;
	}
	if (m == 0) {
		fprintf(stderr, "digestctl enqueue: group %" PRId64 " has no "
		    "members\n", gid);
		return 1;
	}
	if (q == NULL)
		g.queue = sched_route(c->cfg, g.posts, g.members);
	if (sched_enqueue_groups(&s, &g, 1) == -1) {
		fprintf(stderr, "digestctl enqueue: %s\n", ctl_vis(c->err));
		return 1;
	}
	printf("group %" PRId64 " %s: %" PRId64 " posts in the window, %" PRId64
	    " members, queue %s: %" PRId64 " job(s) enqueued, %" PRId64
	    " already enqueued\n", gid, period_name(s.period), g.posts,
	    g.members, g.queue, s.n.jobs[0] + s.n.jobs[1] + s.n.jobs_other,
	    s.n.existing);
	return 0;
}
