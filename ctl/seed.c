/*
 * digestctl seed: deterministic demo and benchmark data in the data model
 * of docs/design.md#data-model, written the way a host application would.
 *
 * The spread is meant to look like a real community: group sizes follow a
 * Zipf law (a few huge groups, many small ones), users prefer daily or
 * weekly digests or none, some have not been seen for months, a few have
 * no email or no hash at all, and half the posts fall in the daily window
 * that ends at the last schedule.day_start, so that today's daily schedule
 * finds work.
 *
 * Everything derives from one 64-bit seed through splitmix64, per entity
 * (user, group, post), so the same seed and the same day give the same
 * bytes, and nothing needs to be held in memory but the group sizes:
 * group g's members are users (off + k * stride) mod U + 1, k < size,
 * with stride prime to U, which are distinct and cost nothing to keep.
 *
 * Seeding overwrites users, groups and posts under their ids, so a store
 * that already holds groups (a live one, pointed at by mistake) is refused
 * unless --force says to write anyway.
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "period.h"
#include "rconn.h"
#include "util.h"

#define SEED_FLUSH 2000		/* commands per round trip */
#define SEED_ZADD_CHUNK 1000	/* members per ZADD */
#define SEED_ARGV_MAX (2 + 2 * SEED_ZADD_CHUNK)

struct seed_rng {
	uint64_t s;
};

struct seed_group {
	int64_t size;
	uint64_t off;
	uint64_t stride;
	int64_t latest;		/* time of the newest post; 0: none */
};

/* A pipeline of commands with their arguments copied into an arena. */
struct seed_pipe {
	redisContext *rc;
	int pending;
	int64_t commands;
	char err[256];
	int failed;
	/* The command being built. */
	int argc;
	const char *argv[SEED_ARGV_MAX];
	size_t argvlen[SEED_ARGV_MAX];
	char arena[SEED_ARGV_MAX * 24 + 4096];
	size_t used;
};

static const char *const seed_first[] = {
	"Ada", "Bruno", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro",
	"Inès", "Jonas", "Kofi", "Lena", "Mateo", "Nadia", "Oskar", "Priya",
	"Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yusuf",
	"Zoë",
};
static const char *const seed_last[] = {
	"Almeida", "Becker", "Chen", "Dubois", "Eriksen", "Fischer", "García",
	"Haddad", "Ivanova", "Jensen", "Kowalski", "Lindqvist", "Müller",
	"Nakamura", "Okafor", "Petrov", "Rossi", "Silva", "Tanaka", "Umarov",
};
static const char *const seed_topic[] = {
	"gardening", "rust", "bouldering", "sourdough", "jazz", "astronomy",
	"chess", "cycling", "photography", "knitting", "birding", "typography",
	"woodworking", "cinema", "running", "vinyl", "urban sketching",
	"home lab", "beekeeping", "café culture",
};
static const char *const seed_kind[] = {
	"club", "circle", "collective", "society", "corner", "friends",
	"exchange", "guild",
};
static const char *const seed_title[] = {
	"Weekly thread: what are you working on?",
	"First attempt, feedback welcome",
	"Beginner question about %s",
	"Meetup next Saturday",
	"My favourite resources for %s",
	"Is it worth upgrading?",
	"Über-long write-up of my %s project",
	"Photos from the weekend",
	"Unpopular opinion about %s",
	"Help: something went wrong",
	"A year of %s: what I learned",
	"Tips & tricks <thread>",
};

static uint64_t
seed_mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t
seed_next(struct seed_rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return seed_mix(r->s);
}

/* A generator for one entity: kind and id pick an independent stream. */
static void
seed_rng_for(struct seed_rng *r, uint64_t seed, uint64_t kind, uint64_t id)
{
	r->s = seed_mix(seed ^ seed_mix(kind * 0x100000001b3ULL ^ id));
}

/* Uniform in [0, n). */
static uint64_t
seed_below(struct seed_rng *r, uint64_t n)
{
	return n == 0 ? 0 : seed_next(r) % n;
}

/* Uniform in [0, 1). */
static double
seed_unit(struct seed_rng *r)
{
	return (double)(seed_next(r) >> 11) / 9007199254740992.0;
}

static uint64_t
seed_gcd(uint64_t a, uint64_t b)
{
	uint64_t t;

	while (b != 0) {
		t = a % b;
		a = b;
		b = t;
	}
	return a;
}

static void
seed_pipe_flush(struct seed_pipe *p)
{
	redisReply *r;

	while (p->pending > 0) {
		p->pending--;
		if (redisGetReply(p->rc, (void **)&r) != REDIS_OK || r == NULL) {
			if (!p->failed)
				snprintf(p->err, sizeof(p->err), "redis: %s",
				    p->rc->errstr);
			p->failed = 1;
			p->pending = 0;
			return;
		}
		if (r->type == REDIS_REPLY_ERROR && !p->failed) {
			snprintf(p->err, sizeof(p->err), "redis: %s", r->str);
			p->failed = 1;
		}
		freeReplyObject(r);
	}
}

static void
seed_cmd(struct seed_pipe *p)
{
	p->argc = 0;
	p->used = 0;
}

/* Add an argument, copied into the arena. */
static void
seed_arg(struct seed_pipe *p, const char *s)
{
	size_t n = strlen(s);

	if (p->argc >= SEED_ARGV_MAX || p->used + n + 1 > sizeof(p->arena)) {
		p->failed = 1;
		strlcpy(p->err, "seed: command too long", sizeof(p->err));
		return;
	}
	memcpy(p->arena + p->used, s, n + 1);
	p->argv[p->argc] = p->arena + p->used;
	p->argvlen[p->argc] = n;
	p->argc++;
	p->used += n + 1;
}

static void
seed_argf(struct seed_pipe *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
seed_argf(struct seed_pipe *p, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	seed_arg(p, buf);
}

static void
seed_send(struct seed_pipe *p)
{
	if (p->failed)
		return;
	if (redisAppendCommandArgv(p->rc, p->argc, p->argv, p->argvlen) !=
	    REDIS_OK) {
		p->failed = 1;
		snprintf(p->err, sizeof(p->err), "redis: %s", p->rc->errstr);
		return;
	}
	p->pending++;
	p->commands++;
	if (p->pending >= SEED_FLUSH)
		seed_pipe_flush(p);
}

/* The user's name, the same wherever it is needed (author_name). */
static void
seed_user_name(uint64_t seed, int64_t uid, char *buf, size_t len)
{
	struct seed_rng r;

	seed_rng_for(&r, seed, 1, (uint64_t)uid);
	snprintf(buf, len, "%s %s",
	    seed_first[seed_below(&r, sizeof(seed_first) / sizeof(char *))],
	    seed_last[seed_below(&r, sizeof(seed_last) / sizeof(char *))]);
}

static int64_t
seed_member(const struct seed_group *g, uint64_t users, int64_t k)
{
	return (int64_t)((g->off + (uint64_t)k * g->stride) % users) + 1;
}

struct seed_counts {
	int64_t no_hash, no_email, weekly, off, inactive, no_last_seen;
	int64_t posts_in_window;
};

/*
 * Users; "now" is the end of the daily window, so that the data stays the
 * same all day long.
 */
static void
seed_users(struct seed_pipe *p, const char *prefix, uint64_t seed,
    uint64_t users, int64_t now, struct seed_counts *n)
{
	struct seed_rng r;
	char name[96];
	uint64_t u, x;
	double d;

	for (u = 1; u <= users && !p->failed; u++) {
		seed_rng_for(&r, seed, 2, u);
		d = seed_unit(&r);
		if (d < 0.01) {		/* deleted accounts: no hash */
			n->no_hash++;
			continue;
		}
		seed_user_name(seed, (int64_t)u, name, sizeof(name));
		seed_cmd(p);
		seed_arg(p, "HSET");
		seed_argf(p, "%suser:%" PRIu64, prefix, u);
		seed_arg(p, "name");
		seed_arg(p, name);
		if (d >= 0.03) {
			seed_arg(p, "email");
			seed_argf(p, "user%" PRIu64 "@example.%s", u,
			    u % 3 == 0 ? "org" : "com");
		} else
			n->no_email++;
		x = seed_below(&r, 100);
		if (x < 35) {
			/* A missing preference means daily. */
		} else if (x < 70) {
			seed_arg(p, "digest");
			seed_arg(p, "daily");
		} else if (x < 90) {
			seed_arg(p, "digest");
			seed_arg(p, "weekly");
			n->weekly++;
		} else {
			seed_arg(p, "digest");
			seed_arg(p, "off");
			n->off++;
		}
		x = seed_below(&r, 100);
		if (x < 75) {
			seed_arg(p, "last_seen");
			seed_argf(p, "%" PRId64, now -
			    (int64_t)seed_below(&r, 20 * 86400));
		} else if (x < 95) {
			seed_arg(p, "last_seen");
			seed_argf(p, "%" PRId64, now - 100 * 86400 -
			    (int64_t)seed_below(&r, 300 * 86400));
			n->inactive++;
		} else
			n->no_last_seen++;
		seed_send(p);
	}
}

static void
seed_memberships(struct seed_pipe *p, const char *prefix, struct seed_group *g,
    int64_t ngroups, uint64_t users)
{
	int64_t i, k, chunk;
	int64_t uid;

	for (i = 0; i < ngroups && !p->failed; i++) {
		for (k = 0; k < g[i].size && !p->failed; k += chunk) {
			chunk = g[i].size - k;
			if (chunk > SEED_ZADD_CHUNK)
				chunk = SEED_ZADD_CHUNK;
			seed_cmd(p);
			seed_arg(p, "ZADD");
			seed_argf(p, "%sgroup:%" PRId64 ":members", prefix,
			    i + 1);
			for (int64_t m = 0; m < chunk; m++) {
				uid = seed_member(&g[i], users, k + m);
				/* Score and member are both the user id. */
				seed_argf(p, "%" PRId64, uid);
				seed_argf(p, "%" PRId64, uid);
			}
			seed_send(p);
		}
	}
}

/* The group of a post: by membership (busy groups post more) or uniform. */
static int64_t
seed_post_group(struct seed_rng *r, const int64_t *cum, int64_t ngroups,
    int64_t memberships)
{
	int64_t lo = 0, hi = ngroups - 1, mid, x;

	if (memberships == 0 || seed_unit(r) < 0.4)
		return (int64_t)seed_below(r, (uint64_t)ngroups);
	x = (int64_t)seed_below(r, (uint64_t)memberships);
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (cum[mid] > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static void
seed_posts(struct seed_pipe *p, const char *prefix, uint64_t seed,
    struct seed_group *g, int64_t ngroups, const int64_t *cum,
    int64_t memberships, uint64_t users, int64_t nposts, int64_t window_end,
    struct seed_counts *n)
{
	struct seed_rng r;
	char name[96], title[256];
	const char *topic, *fmt;
	int64_t pid, gi, t, author, likes, comments;

	for (pid = 1; pid <= nposts && !p->failed; pid++) {
		seed_rng_for(&r, seed, 3, (uint64_t)pid);
		gi = seed_post_group(&r, cum, ngroups, memberships);
		if (seed_unit(&r) < 0.5) {
			t = window_end - (int64_t)seed_below(&r, 86400);
			n->posts_in_window++;
		} else
			t = window_end - 86400 -
			    (int64_t)seed_below(&r, 6 * 86400) - 1;
		if (t > g[gi].latest)
			g[gi].latest = t;
		author = g[gi].size > 0 ? seed_member(&g[gi], users,
		    (int64_t)seed_below(&r, (uint64_t)g[gi].size)) :
		    (int64_t)seed_below(&r, users) + 1;
		seed_user_name(seed, author, name, sizeof(name));
		topic = seed_topic[seed_below(&r, sizeof(seed_topic) /
		    sizeof(char *))];
		fmt = seed_title[seed_below(&r, sizeof(seed_title) /
		    sizeof(char *))];
		if (strstr(fmt, "%s") != NULL)
			snprintf(title, sizeof(title), fmt, topic);
		else
			strlcpy(title, fmt, sizeof(title));
		/* Engagement is skewed: most posts get little, a few a lot. */
		likes = (int64_t)floor(pow(seed_unit(&r), 3) * 500);
		comments = (int64_t)floor(pow(seed_unit(&r), 3) * 120);

		seed_cmd(p);
		seed_arg(p, "HSET");
		seed_argf(p, "%spost:%" PRId64, prefix, pid);
		seed_arg(p, "title");
		seed_arg(p, title);
		seed_arg(p, "url");
		seed_argf(p, "https://example.com/g/%" PRId64 "/p/%" PRId64,
		    gi + 1, pid);
		seed_arg(p, "author_id");
		seed_argf(p, "%" PRId64, author);
		seed_arg(p, "author_name");
		seed_arg(p, name);
		seed_arg(p, "excerpt");
		seed_argf(p, "%s shares a few thoughts on %s, with links and "
		    "questions for the group.", name, topic);
		seed_arg(p, "likes");
		seed_argf(p, "%" PRId64, likes);
		seed_arg(p, "comments");
		seed_argf(p, "%" PRId64, comments);
		seed_send(p);

		seed_cmd(p);
		seed_arg(p, "ZADD");
		seed_argf(p, "%sgroup:%" PRId64 ":posts", prefix, gi + 1);
		seed_argf(p, "%" PRId64, t);
		seed_argf(p, "%" PRId64, pid);
		seed_send(p);
	}
}

static void
seed_groups(struct seed_pipe *p, const char *prefix, uint64_t seed,
    struct seed_group *g, int64_t ngroups, int64_t window_end)
{
	struct seed_rng r;
	const char *topic;
	int64_t i, latest;

	for (i = 0; i < ngroups && !p->failed; i++) {
		seed_rng_for(&r, seed, 4, (uint64_t)i + 1);
		seed_cmd(p);
		seed_arg(p, "HSET");
		seed_argf(p, "%sgroup:%" PRId64, prefix, i + 1);
		seed_arg(p, "name");
		topic = seed_topic[seed_below(&r, sizeof(seed_topic) /
		    sizeof(char *))];
		seed_argf(p, "%c%s %s #%" PRId64, toupper((unsigned char)topic[0]),
		    topic + 1, seed_kind[seed_below(&r, sizeof(seed_kind) /
		    sizeof(char *))], i + 1);
		seed_arg(p, "url");
		seed_argf(p, "https://example.com/g/%" PRId64, i + 1);
		seed_send(p);

		/* A group without posts was last active a month ago. */
		latest = g[i].latest != 0 ? g[i].latest : window_end -
		    30 * 86400 - (int64_t)seed_below(&r, 86400);
		seed_cmd(p);
		seed_arg(p, "ZADD");
		seed_argf(p, "%sgroups:active", prefix);
		seed_argf(p, "%" PRId64, latest);
		seed_argf(p, "%" PRId64, i + 1);
		seed_send(p);
	}
}

/* Zipf sizes summing to memberships; the biggest is group 1. */
static void
seed_sizes(struct seed_group *g, int64_t ngroups, int64_t memberships)
{
	double w = 0;
	int64_t i, sum = 0, left;

	for (i = 0; i < ngroups; i++)
		w += 1.0 / (double)(i + 1);
	for (i = 0; i < ngroups; i++) {
		g[i].size = (int64_t)floor((double)memberships /
		    (double)(i + 1) / w);
		if (g[i].size < 1 && memberships >= ngroups)
			g[i].size = 1;
		sum += g[i].size;
	}
	/* Rounding: give or take one member per group, small groups first. */
	left = memberships - sum;
	for (i = ngroups - 1; left != 0 && ngroups > 0; i = i > 0 ? i - 1 :
	    ngroups - 1) {
		if (left > 0) {
			g[i].size++;
			left--;
		} else if (g[i].size > 1) {
			g[i].size--;
			left++;
		} else if (i == 0)
			break;
	}
}

/*
 * How many groups the store already holds: the size of groups:active, or
 * 1 when that index is empty but group:1 (the first id seed writes) is
 * there.  -1 with why on a Redis error.  Each command names one key, as
 * everything sent to the activity store does.
 */
static int64_t
seed_existing_groups(redisContext *rc, const char *prefix, char *why,
    size_t len)
{
	redisReply *r;
	int64_t n = -1;

	/* The reply is ours: freed below with freeReplyObject. */
	r = redisCommand(rc, "ZCARD %sgroups:active", prefix);
	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		n = r->integer;
	else
		snprintf(why, len, "ZCARD groups:active: %s", r == NULL ?
		    rc->errstr : r->type == REDIS_REPLY_ERROR ? r->str :
		    "unexpected reply");
	freeReplyObject(r);
	if (n != 0)
		return n;
	r = redisCommand(rc, "EXISTS %sgroup:1", prefix);
	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		n = r->integer > 0 ? 1 : 0;
	else {
		snprintf(why, len, "EXISTS group:1: %s", r == NULL ?
		    rc->errstr : r->type == REDIS_REPLY_ERROR ? r->str :
		    "unexpected reply");
		n = -1;
	}
	freeReplyObject(r);
	return n;
}

int
ctl_cmd_seed(struct ctl *c, int argc, char **argv)
{
	struct seed_counts n;
	struct seed_group *g;
	struct seed_pipe *p;
	struct seed_rng r;
	const char *v, *prefix = c->cfg->redis.key_prefix;
	int64_t ngroups = -1, memberships = -1, nposts = -1, now, *cum;
	int64_t wstart, wend, i, smallest;
	uint64_t seed = 1, users, tries;
	double t0;
	char why[CTL_ERR_MAX];
	int k, force = 0;

	now = (int64_t)time(NULL);
	for (k = 0; k < argc; k++) {
		int64_t *dst = NULL, val;

		if (strcmp(argv[k], "--force") == 0) {
			force = 1;
			continue;
		}
		if (strcmp(argv[k], "--groups") == 0)
			dst = &ngroups;
		else if (strcmp(argv[k], "--members") == 0)
			dst = &memberships;
		else if (strcmp(argv[k], "--posts") == 0)
			dst = &nposts;
		else if (strcmp(argv[k], "--seed") != 0 &&
		    strcmp(argv[k], "--now") != 0) {
			fprintf(stderr, "digestctl seed: unknown argument %s\n",
			    argv[k]);
			return 2;
		}
		if ((v = ctl_optarg(argc, argv, &k)) == NULL)
			return 2;
		if (parse_i64(v, 0, INT64_C(1) << 40, &val) == -1) {
			fprintf(stderr, "digestctl seed: bad value %s for %s\n",
			    v, argv[k - 1]);
			return 2;
		}
		if (dst != NULL)
			*dst = val;
		else if (strcmp(argv[k - 1], "--seed") == 0)
			seed = (uint64_t)val;
		else
			now = val;
	}
	if (ngroups < 1 || memberships < 0 || nposts < 0) {
		fprintf(stderr, "usage: digestctl -c FILE seed --groups N "
		    "--members M --posts P [--seed S] [--now UNIX] "
		    "[--force]\n");
		return 2;
	}
	if (ngroups > 10000000) {
		fprintf(stderr, "digestctl seed: at most 10000000 groups\n");
		return 2;
	}
	period_window(PERIOD_DAILY, c->cfg->schedule.day_start_s, now, &wstart,
	    &wend);

	if (!force) {
		int64_t have = seed_existing_groups(c->data, prefix, why,
		    sizeof(why));

		if (have < 0) {
			fprintf(stderr, "digestctl seed: %s\n", ctl_vis(why));
			return 1;
		}
		if (have > 0) {
			fprintf(stderr, "digestctl seed: the store already "
			    "holds %" PRId64 " group(s) (%sgroups:active); seed "
			    "would overwrite its users, groups and posts: "
			    "nothing written (--force to write anyway)\n",
			    have, ctl_vis(prefix));
			return 1;
		}
	}

	t0 = now_real();
	g = xcalloc((size_t)ngroups, sizeof(*g));
	cum = xcalloc((size_t)ngroups, sizeof(*cum));
	seed_sizes(g, ngroups, memberships);
	users = (uint64_t)(memberships / 3);
	if (users < (uint64_t)g[0].size)
		users = (uint64_t)g[0].size;
	if (users < 1)
		users = 1;
	smallest = g[0].size;
	for (i = 0; i < ngroups; i++) {
		seed_rng_for(&r, seed, 5, (uint64_t)i + 1);
		g[i].off = seed_below(&r, users);
		g[i].stride = 1;
		for (tries = 0; tries < 64 && users > 1; tries++) {
			uint64_t s = 1 + seed_below(&r, users - 1);

			if (seed_gcd(s, users) == 1) {
				g[i].stride = s;
				break;
			}
		}
		cum[i] = (i > 0 ? cum[i - 1] : 0) + g[i].size;
		if (g[i].size < smallest)
			smallest = g[i].size;
	}

	memset(&n, 0, sizeof(n));
	p = xcalloc(1, sizeof(*p));
	p->rc = c->data;
	seed_users(p, prefix, seed, users, wend, &n);
	seed_memberships(p, prefix, g, ngroups, users);
	seed_posts(p, prefix, seed, g, ngroups, cum, memberships, users, nposts,
	    wend, &n);
	seed_groups(p, prefix, seed, g, ngroups, wend);
	seed_pipe_flush(p);
	if (p->failed) {
		fprintf(stderr, "digestctl seed: %s\n", ctl_vis(p->err));
		free(p);
		free(g);
		free(cum);
		return 1;
	}
	printf("seed %" PRIu64 ": %" PRId64 " groups (largest %" PRId64
	    " members, smallest %" PRId64 "), %" PRId64 " memberships\n",
	    seed, ngroups, g[0].size, smallest, memberships);
	printf("users: %" PRIu64 " (%" PRId64 " without a hash, %" PRId64
	    " without email, %" PRId64 " weekly, %" PRId64 " off, %" PRId64
	    " inactive, %" PRId64 " never seen)\n", users, n.no_hash,
	    n.no_email, n.weekly, n.off, n.inactive, n.no_last_seen);
	printf("posts: %" PRId64 " (%" PRId64 " in the daily window ending %"
	    PRId64 ")\n", nposts, n.posts_in_window, wend);
	printf("%" PRId64 " commands in %.2fs\n", p->commands, now_real() - t0);
	free(p);
	free(g);
	free(cum);
	return 0;
}
