/*
 * One member's email as the worker would send it now, for digestctl
 * preview and send-test (common/preview.h).  It goes the worker's way:
 * the group and its window's posts through activity.c, the member's user
 * hash, the rules, the mutes and the suppression list through
 * activity_users and eligibility.c (on the queue Redis q for the last
 * two, as the worker reads them), the email
 * through render.c, and send-test through the configured transport.  It
 * reads the activity store and writes nothing, anywhere: no checkpoint,
 * no counter a scrape would see (the skip counters it reads are its own).
 *
 * The job is the one the scheduler would make for the member's shard,
 * whose id is in the Message-ID and X-Digest-Job headers: shard k holds
 * the members ranked k * shard_size on (docs/design.md#jobs).  Only the
 * Date header differs from the email the worker sends.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activity.h"
#include "eligibility.h"
#include "preview.h"
#include "rconn.h"
#include "render.h"
#include "transport.h"
#include "util.h"

/* One integer reply of a single-key command, -1 for nil.  0 / -1. */
static int
preview_int(redisContext *c, int64_t *out, char *err, size_t errlen,
    const char *fmt, const char *key, const char *arg)
{
	redisReply *r;

	r = arg != NULL ? redisCommand(c, fmt, key, arg) :
	    redisCommand(c, fmt, key);
	if (r == NULL || (r->type != REDIS_REPLY_INTEGER &&
	    r->type != REDIS_REPLY_NIL)) {
		snprintf(err, errlen, "redis: %s", r == NULL ? c->errstr :
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		if (r != NULL)
			freeReplyObject(r);
		return -1;
	}
	*out = r->type == REDIS_REPLY_NIL ? -1 : r->integer;
	freeReplyObject(r);
	return 0;
}

/* Say in p->why what the user's hash shows for the rule that failed. */
static void
preview_explain(const struct config *cfg, redisContext *c, int64_t uid,
    const struct elig_job *ej, enum skip_reason why, struct preview *p)
{
	redisReply *r;
	char key[512];
	const char *email = NULL, *digest = NULL, *seen = NULL;

	strlcpy(p->rule, eligibility_reason_name(why), sizeof(p->rule));
	rkey(key, sizeof(key), cfg->redis.key_prefix, "user:%lld",
	    (long long)uid);
	r = redisCommand(c, "HMGET %s email digest last_seen", key);
	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
		email = r->element[0]->type == REDIS_REPLY_STRING ?
		    r->element[0]->str : NULL;
		digest = r->element[1]->type == REDIS_REPLY_STRING ?
		    r->element[1]->str : NULL;
		seen = r->element[2]->type == REDIS_REPLY_STRING ?
		    r->element[2]->str : NULL;
	}
	switch (why) {
	case SKIP_NO_EMAIL:
		snprintf(p->why, sizeof(p->why), "user:%lld has %s",
		    (long long)uid, email == NULL ? "no email field (or no "
		    "hash at all)" : "an email that cannot be written to");
		break;
	case SKIP_OPTED_OUT:
		snprintf(p->why, sizeof(p->why), "its digest preference is "
		    "'%s', the run is %s", digest ? digest : "", ej->period);
		break;
	case SKIP_INACTIVE:
		snprintf(p->why, sizeof(p->why), "the group has %lld members "
		    "(large_group_threshold %lld) and last_seen is %s, more "
		    "than %lld s before the window's end %lld",
		    (long long)ej->group_size,
		    (long long)ej->large_group_threshold,
		    seen ? seen : "missing", (long long)ej->inactive_after_s,
		    (long long)ej->window_end);
		break;
	case SKIP_SUPPRESSED:
		snprintf(p->why, sizeof(p->why), "its address is on the "
		    "suppression list, or the user muted this group");
		break;
	case SKIP_NOTHING_NEW:
		snprintf(p->why, sizeof(p->why), "no post of the window (%zu) "
		    "was written by someone else", ej->nposts);
		break;
	default:
		snprintf(p->why, sizeof(p->why), "a field of user:%lld is too "
		    "large to read", (long long)uid);
		break;
	}
	if (r != NULL)
		freeReplyObject(r);
}

/* The job that carries uid's email: its shard's, by rank. */
static int
preview_job(const struct config *cfg, redisContext *c, int64_t gid,
    int64_t uid, const char *period, int64_t ws, int64_t we, struct job *j,
    int *member, char *err, size_t errlen)
{
	char key[512], u[32];
	int64_t card, rank;
	int k = 0;

	if (rkey(key, sizeof(key), cfg->redis.key_prefix,
	    "group:%lld:members", (long long)gid) == NULL) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	snprintf(u, sizeof(u), "%" PRId64, uid);
	if (preview_int(c, &rank, err, errlen, "ZRANK %s %s", key, u) == -1 ||
	    preview_int(c, &card, err, errlen, "ZCARD %s", key, NULL) == -1)
		return -1;
	*member = rank >= 0;
	if (rank >= 0 && card > cfg->schedule.shard_size)
		k = (int)(rank / cfg->schedule.shard_size);
	memset(j, 0, sizeof(*j));
	strlcpy(j->period, period, sizeof(j->period));
	j->group_id = gid;
	j->window_start = ws;
	j->window_end = we;
	j->member_min = j->member_max = uid;
	j->enqueued_at = now_real();
	job_make_id(j, k);
	return 0;
}

int
preview_build(const struct config *cfg, redisContext *c, redisContext *q,
    int64_t gid, int64_t uid, const char *period, int64_t ws, int64_t we,
    struct preview *p, char *err, size_t errlen)
{
	metric_cell cells[MC_NCELLS];
	struct rconn_cap cap;
	struct checkpoint cp;
	struct activity ar;
	struct activity_group ag;
	struct elig_job ej;
	struct member m;
	struct recipient rc;
	struct render *rd = NULL;
	struct rbuf out = { NULL, 0, 0 };
	char reason[256];
	int member, np, rv = -1, i;

	memset(p, 0, sizeof(*p));
	memset(&ag, 0, sizeof(ag));
	memset(&m, 0, sizeof(m));
	if (preview_job(cfg, c, gid, uid, period, ws, we, &p->job, &member,
	    err, errlen) == -1)
		return -1;
	if (!member) {
		strlcpy(p->rule, "not_member", sizeof(p->rule));
		snprintf(p->why, sizeof(p->why), "user %lld is not a member "
		    "of group %lld", (long long)uid, (long long)gid);
		return 0;
	}
	memset(cells, 0, sizeof(cells));
	memset(&cap, 0, sizeof(cap));
	memset(&cp, 0, sizeof(cp));
	memset(&ar, 0, sizeof(ar));
	reason[0] = '\0';
	ar.c = c;
	ar.q = q;
	ar.cfg = cfg;
	ar.job = &p->job;
	ar.cp = &cp;
	ar.cells = cells;
	ar.cap = &cap;
	ar.reason = reason;
	ar.reasonlen = sizeof(reason);
	if ((rd = render_new(cfg, err, errlen)) == NULL)
		goto out;
	if (activity_group(&ar, &ag) == -1) {
		snprintf(err, errlen, "%s", reason[0] ? reason :
		    "cannot read the group");
		goto out;
	}
	if (render_job(rd, &p->job, &ag.info, ag.posts, ag.nposts) == -1) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* The job's view, as digest.c's digest_prepare sets it. */
	memset(&ej, 0, sizeof(ej));
	ej.period = p->job.period;
	ej.window_end = p->job.window_end;
	ej.group_size = ag.info.members;
	ej.large_group_threshold = cfg->digest.large_group_threshold;
	ej.inactive_after_s = cfg->digest.inactive_after_ms / 1000;
	ej.nposts = ag.nall;
	ej.sole_author = ag.sole_author;

	m.uid = uid;
	if (activity_users(&ar, &ej, &m, 1) == -1) {
		snprintf(err, errlen, "%s", reason[0] ? reason :
		    "cannot read the user");
		goto out;
	}
	if (m.skipped) {
		/* The one skip counted is the rule that failed. */
		for (i = 0; i < SKIP_N; i++)
			if (cells[MC_SKIPPED + i] != 0)
				break;
		preview_explain(cfg, c, uid, &ej, i < SKIP_N ?
		    (enum skip_reason)i : SKIP_BAD_DATA, p);
		rv = 0;
		goto out;
	}
	rc.uid = uid;
	rc.email = m.email;
	rc.name = m.name;
	rc.locale = m.locale;
	np = render_message(rd, &rc, &out, p->message_id,
	    sizeof(p->message_id));
	if (np <= 0) {
		/* As digest.c counts it. */
		preview_explain(cfg, c, uid, &ej, np == 0 ? SKIP_NOTHING_NEW :
		    SKIP_NO_EMAIL, p);
		rv = 0;
		goto out;
	}
	p->eligible = 1;
	p->msg = out.p;
	p->len = out.len;
	out.p = NULL;
	strlcpy(p->rcpt, render_rcpt(rd), sizeof(p->rcpt));
	rv = 0;
out:
	rbuf_free(&out);
	free(m.email);
	free(m.name);
	free(m.locale);
	activity_group_clear(&ag);
	activity_clear(&ar);
	render_free(rd);
	return rv;
}

void
preview_clear(struct preview *p)
{
	free(p->msg);
	p->msg = NULL;
	p->len = 0;
}

/* What the transport said of the one message. */
struct preview_outcome {
	int done;
	enum tp_result res;
	char detail[256];
};

static void
preview_result_cb(void *arg, const struct email *e, enum tp_result res,
    const char *detail)
{
	struct preview_outcome *o = arg;

	o->done = 1;
	o->res = res;
	strlcpy(o->detail, detail != NULL ? detail : "", sizeof(o->detail));
}

int
preview_send(const struct config *cfg, const struct preview *p,
    const char *to, char *err, size_t errlen)
{
	const struct transport_ops *ops;
	struct preview_outcome o;
	struct transport *tp;
	struct email e;
	int rv = -1;

	if (!p->eligible) {
		snprintf(err, errlen, "no email to send: %s", p->rule);
		return -1;
	}
	if ((ops = transport_ops_for(cfg)) == NULL) {
		snprintf(err, errlen, "no transport for transport.type");
		return -1;
	}
	if ((tp = ops->open(cfg, err, errlen)) == NULL)
		return -1;
	memset(&e, 0, sizeof(e));
	e.uid = p->job.member_min;
	e.gid = p->job.group_id;
	e.rcpt = to;
	e.message_id = p->message_id;
	e.job_id = p->job.job_id;
	e.data = p->msg;
	e.len = p->len;
	memset(&o, 0, sizeof(o));
	if (ops->send(tp, &e) == -1) {
		snprintf(err, errlen, "transport %s: cannot queue the message",
		    ops->name);
		goto out;
	}
	if (ops->flush(tp, preview_result_cb, &o, err, errlen) == -1)
		goto out;
	if (!o.done)
		snprintf(err, errlen, "transport %s: no outcome", ops->name);
	else if (o.res != TP_SENT)
		snprintf(err, errlen, "transport %s: %s: %s", ops->name,
		    o.res == TP_DEFERRED ? "deferred" : "rejected", o.detail);
	else
		rv = 0;
out:
	ops->close(tp);
	return rv;
}
