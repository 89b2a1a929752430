/*
 * One digest job in a worker: read the group and its window's posts once
 * (activity.c), walk the members from the checkpoint in batches of
 * digest.batch_size, decide who gets an email, render it, hand it to the
 * transport and move the checkpoint forward (docs/design.md, "Progress"
 * and "Deferrals").
 *
 * The checkpoint follows a frontier: the cursor may only move past a
 * member once every member before it is done (skipped, sent or rejected).
 * An unconfirmed message holds the frontier back, so a retried job
 * resumes before it and no recipient is ever lost.  Deferred (4xx)
 * recipients are parked in the checkpoint as their replies come and
 * retried at the end of the job; a server deferring everyone fills the
 * parked list, and then holds the frontier like an outage.
 * The cursor is saved to Redis each time it moves past a delivered
 * message, so a killed worker re-sends at most the message in flight.
 *
 * Nothing here knows which transport is in use: each says how many
 * messages a flush should carry (transport_ops.flush_max).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "activity.h"
#include "backoff.h"
#include "checkpoint.h"
#include "digest.h"
#include "eligibility.h"
#include "feedback.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "render.h"
#include "transport.h"
#include "util.h"

/*
 * A recipient the server defers (4xx: greylisting, a full mailbox, a
 * throttle) is parked in the checkpoint and retried on a clock, as an
 * MTA's queue does (smtp.defer_retry_min doubling to defer_retry_max),
 * and given up only defer_give_up after its first 4xx.  The walk goes on
 * past it; once PARKED_MAX recipients wait (a server deferring nearly
 * everyone), the walk stops and the job waits for them.  The wait holds
 * no worker: the job goes to its queue's delayed set until the earliest
 * retry is due.  PARKED_CAP bounds the list, whatever the server says.
 */
#define PARKED_MAX		100
#define PARKED_CAP		1000
#define TICK_NS			250000000LL
/* A worker waiting for rate-limit tokens sleeps this long between ticks. */
#define LIMIT_SLICE_NS		50000000LL

/* Where a member of the batch stands (struct member's state). */
enum member_state {
	M_PENDING = 0,		/* not handled yet: as activity.c reads it */
	M_QUEUED,		/* handed to the transport, no outcome yet */
	M_DONE,			/* skipped, sent, rejected or parked */
	M_UNCONFIRMED,		/* the transport failed, no outcome */
};

/* What digest.c keeps across jobs, in ctx->priv. */
struct digest_priv {
	struct render *render;
	struct activity_group group;	/* the current job's, owned: the
					   renderer points into it */
	struct rbuf msg;
	struct rconn_cap cap;	/* capped reads of the activity store */
};

/* One job's running state. */
struct run {
	struct digest_ctx *ctx;
	const struct job *job;
	struct checkpoint *cp;
	struct digest_priv *dp;
	metric_cell *cells;
	int tp_type;
	size_t flush_n;		/* messages per flush */
	struct elig_job ej;
	struct activity ar;	/* the reader, and the walk */
	int walk_open;

	struct member *m;	/* the batch */
	size_t n;
	size_t front;		/* m[0 .. front) are done */
	size_t hint;		/* where the next result is likely to be */
	size_t nqueued;		/* sent to the transport, not flushed */
	struct parked *pk;	/* recipients waiting for a retry */
	size_t npk;
	size_t capk;
	int parked_pass;	/* the batch is the parked recipients */
	char defer_detail[160];	/* the server's last 4xx */

	/*
	 * The rate limits (docs/design.md#rate-limits): tokens granted and
	 * not used yet, given back at the end of each batch.
	 */
	int64_t lim_credit;
	struct config_domain_rate lim_dom[CONFIG_DOMAIN_RATES_MAX];
	int64_t lim_dom_credit[CONFIG_DOMAIN_RATES_MAX];
	int lim_ndom;
	char *lim_out;		/* this flush's outcomes: '1' a 5xx, '0' sent */
	size_t lim_nout;
	size_t lim_cap;

	int save_failed;
	int tick_failed;
	int64_t last_tick_ns;

	char *reason;
	size_t reasonlen;
};

static void
digest_batch_free(struct run *rn)
{
	activity_members_free(rn->m, rn->n);
	rn->m = NULL;
	rn->n = rn->front = rn->hint = rn->nqueued = 0;
}

/*
 * Read the users of the batch (the members not skipped) and decide who
 * is eligible; those skipped, here or by the walk, are done.
 */
static int
digest_load_users(struct run *rn)
{
	size_t i;
	int rc;

	rc = activity_users(&rn->ar, &rn->ej, rn->m, rn->n);
	for (i = 0; i < rn->n; i++)
		if (rn->m[i].skipped)
			rn->m[i].state = M_DONE;
	return rc;
}

/*
 * Read the next batch of members, then their user hashes in one
 * pipelined round.  *last is set when the range is exhausted.
 */
static int
digest_load_batch(struct run *rn, int *last)
{
	int rc;

	if ((rc = activity_members(&rn->ar, &rn->m, &rn->n, last)) <= 0)
		return rc;
	if (checkpoint_sync(rn->ctx->queue, rn->cp) == -1 &&
	    rn->ctx->queue->err) {
		activity_error(&rn->ar, rn->ctx->queue, "checkpoint", NULL);
		return -1;
	}
	return digest_load_users(rn);
}

/* Heartbeat and the source's keepalive, at most every TICK_NS. */
static void
digest_tick(struct run *rn, int force)
{
	int64_t now = now_mono_ns();

	if (!force && now - rn->last_tick_ns < TICK_NS)
		return;
	rn->last_tick_ns = now;
	if (rn->ctx->tick != NULL && rn->ctx->tick(rn->ctx->tick_arg) == -1)
		rn->tick_failed = 1;
}

static int
digest_draining(struct run *rn)
{
	return atomic_load(&rn->ctx->slot->cmd) == SB_CMD_DRAIN;
}

/* A checkpoint write failed: an outage when the connection is gone. */
static void
digest_cp_failed(struct run *rn)
{
	redisContext *q = rn->ctx->queue;

	if (q != NULL && q->err == REDIS_ERR_OOM)
		worker_oom();
	/* Lost, or refused by a server out of memory or read-only. */
	if (checkpoint_failed_outage(q))
		rn->cp->outage = 1;
	if (!rn->save_failed) {
		metric_inc(rn->cells, MC_REDIS_ERRORS);
		snprintf(rn->reason, rn->reasonlen,
		    "cannot save the checkpoint");
	}
	rn->save_failed = 1;
}

static struct parked *
digest_parked_find(struct run *rn, int64_t uid)
{
	size_t i;

	for (i = 0; i < rn->npk; i++)
		if (rn->pk[i].uid == uid)
			return &rn->pk[i];
	return NULL;
}

/* The delay before a recipient's next try after its tries-th 4xx. */
static int64_t
digest_retry_ms(struct run *rn, int tries)
{
	const struct config *cfg = rn->ctx->cfg;

	return backoff_delay(cfg->smtp.defer_retry_min_ms,
	    cfg->smtp.defer_retry_max_ms, tries);
}

/*
 * Keep p for the next checkpoint save, Redis being away: the frontier may
 * then pass it, but the slot's cursor (which the supervisor saves alone
 * if this worker dies) stays behind until the save.  0, or -1 when there
 * is no room left to keep it.
 */
static int
digest_park_later(struct run *rn, const struct parked *p)
{
	struct checkpoint *cp = rn->cp;
	int i;

	for (i = 0; i < cp->nunsaved; i++)
		if (cp->unsaved[i].uid == p->uid)
			break;
	if (i == CP_UNSAVED_MAX)
		return -1;
	cp->unsaved[i] = *p;
	if (i == cp->nunsaved)
		cp->nunsaved++;
	return 0;
}

/*
 * Record a 4xx for uid: parked with its first try now, or, parked
 * already, its next try moved on the clock.  Sent to Redis, and read back
 * before the cursor may pass it: a cursor saved past a recipient whose
 * wait Redis does not know would lose that recipient.  When Redis does
 * not take it, it is kept for the next save (digest_park_later).  0, or
 * -1 when it could be neither saved nor kept: the frontier then stops
 * before it, and the recipient is tried again.
 */
static int
digest_park(struct run *rn, int64_t uid)
{
	struct parked *p;
	int64_t now = now_real_ns() / 1000000;

	if ((p = digest_parked_find(rn, uid)) == NULL) {
		if (rn->npk == rn->capk) {
			rn->capk = rn->capk ? rn->capk * 2 : 16;
			rn->pk = wrealloc(rn->pk, rn->capk * sizeof(*rn->pk));
		}
		p = &rn->pk[rn->npk++];
		p->uid = uid;
		p->first_ms = now;
		p->tries = 0;
	}
	p->tries++;
	p->next_ms = now + digest_retry_ms(rn, p->tries);
	rn->cp->parked = rn->npk;
	if (checkpoint_park(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp, p,
	    rn->npk) == -1 ||
	    checkpoint_sync(rn->ctx->queue, rn->cp) == -1) {
		digest_cp_failed(rn);
		return digest_park_later(rn, p);
	}
	return 0;
}

/* uid is no longer waiting (sent, rejected, given up, not eligible). */
static void
digest_unpark(struct run *rn, int64_t uid)
{
	struct parked *p;

	struct checkpoint *cp = rn->cp;
	int i;

	if ((p = digest_parked_find(rn, uid)) == NULL)
		return;
	*p = rn->pk[--rn->npk];
	cp->parked = rn->npk;
	for (i = 0; i < cp->nunsaved; i++) {
		if (cp->unsaved[i].uid == uid) {
			cp->unsaved[i] = cp->unsaved[--cp->nunsaved];
			break;
		}
	}
	if (checkpoint_unpark(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp,
	    uid, rn->npk) == -1)
		digest_cp_failed(rn);
}

/* Save cursor and counts, reading back what was sent meanwhile; 0 / -1. */
static int
digest_save(struct run *rn)
{
	if (checkpoint_save(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp)
	    == -1) {
		digest_cp_failed(rn);
		return -1;
	}
	/* Everything it knows is in Redis: the slot may follow. */
	sb_cursor_set(rn->ctx->slot, &rn->cp->cursor);
	return rn->save_failed ? -1 : 0;
}

/*
 * Move the frontier over the members that are done, and the cursor with
 * it: in the slot and in Redis at once (Redis without waiting for its
 * answer: read back at the end of the flush).  A member that is not a
 * user id leaves the cursor where it was: passing it again is harmless.
 */
static void
digest_advance(struct run *rn)
{
	size_t f = rn->front, k;
	int moved = 0;

	while (f < rn->n && rn->m[f].state == M_DONE)
		f++;
	if (f == rn->front)
		return;
	for (k = f; k > rn->front; k--) {
		if (rn->m[k - 1].pos.set) {
			rn->cp->cursor = rn->m[k - 1].pos;
			moved = 1;
			break;
		}
	}
	rn->front = f;
	if (!moved)
		return;
	/*
	 * Not past a recipient whose wait, or whose reject, Redis does not
	 * know yet.
	 */
	if (rn->cp->nunsaved == 0 && rn->cp->nrejects == 0)
		sb_cursor_set(rn->ctx->slot, &rn->cp->cursor);
	if (checkpoint_progress(rn->ctx->queue, rn->ctx->cfg, rn->job, rn->cp)
	    == -1)
		digest_cp_failed(rn);
}

/*
 * Record m as given up in digest:rejected, with the reply that ended it
 * (and, for a 5xx saying the mailbox does not exist, its address in
 * digest:suppressed), and read the answer back before the frontier may
 * pass m: a cursor saved past a reject whose record Redis does not hold
 * would lose the record.  When Redis does not take it, the record is
 * kept for the next save, which writes it before the cursor, and the
 * slot's cursor (which the supervisor saves alone if this worker dies)
 * stays behind until then, as for a deferral.  0, or -1 when it could be
 * neither written nor kept: m is then not done, and is tried again (the
 * server refuses it again, and the record is written then).
 */
/* Keep m's reject for the next checkpoint save; 0, or -1 if no room. */
static int
digest_reject_later(struct run *rn, const struct member *m,
    const char *reply, int permanent)
{
	struct checkpoint *cp = rn->cp;
	struct cp_reject *cr;

	if (cp->nrejects == CP_REJECTS_MAX)
		return -1;
	cr = &cp->rejects[cp->nrejects];
	if (strlcpy(cr->email, m->email, sizeof(cr->email)) >=
	    sizeof(cr->email))
		return -1;
	/* A reply is one line of the server's: cut, it is still its reply. */
	(void)strlcpy(cr->reply, reply != NULL ? reply : "",
	    sizeof(cr->reply));
	cr->uid = m->uid;
	cr->permanent = permanent;
	cp->nrejects++;
	return 0;
}

static int
digest_give_up(struct run *rn, const struct member *m, const char *reply,
    int permanent)
{
	struct feedback_reject fr;
	int n;

	fr.uid = m->uid;
	fr.email = m->email;
	fr.gid = rn->job->group_id;
	fr.job_id = rn->job->job_id;
	fr.reply = reply;
	fr.permanent = permanent;
	if ((n = feedback_reject(rn->ctx->queue, rn->ctx->cfg, &fr)) != -1) {
		/* Read back in order with the checkpoint's own writes. */
		rn->cp->pending += n;
		if (checkpoint_sync(rn->ctx->queue, rn->cp) == 0)
			return 0;
	}
	digest_cp_failed(rn);
	return digest_reject_later(rn, m, reply, permanent);
}

static struct member *
digest_find(struct run *rn, int64_t uid)
{
	size_t i, k;

	/* Results come in queue order: the hint is nearly always right. */
	for (k = 0; k < rn->n; k++) {
		i = (rn->hint + k) % rn->n;
		if (rn->m[i].uid == uid && rn->m[i].state == M_QUEUED) {
			rn->hint = i + 1;
			return &rn->m[i];
		}
	}
	return NULL;
}

/*
 * Read back the checkpoint's pipelined writes, so that a script call that
 * follows reads its own reply.  0, or -1 (the checkpoint failed).
 */
static int
digest_limit_sync(struct run *rn)
{
	if (checkpoint_sync(rn->ctx->queue, rn->cp) == -1) {
		digest_cp_failed(rn);
		return -1;
	}
	return 0;
}

/*
 * Add the flush's outcomes to the cluster's reject ring; the worker whose
 * outcomes take the 5xx share past limits.reject_pause pauses every
 * queue, and the job in hand stops at the end of its batch, as for an
 * operator's pause.  A failure here is logged, never fatal to the job.
 */
static void
digest_limit_note(struct run *rn)
{
	const struct config *cfg = rn->ctx->cfg;
	char err[256], why[256];
	int64_t rej, tot;
	int tripped;

	if (rn->lim_nout == 0)
		return;
	if (digest_limit_sync(rn) == -1) {
		rn->lim_nout = 0;
		return;
	}
	if (ratelimit_note(rn->ctx->queue, cfg, rn->lim_out, rn->lim_nout,
	    &rej, &tot, &tripped, err, sizeof(err)) == -1) {
		log_warnx("reject_pause: %s", err);
		rn->lim_nout = 0;
		return;
	}
	rn->lim_nout = 0;
	if (!tripped)
		return;
	snprintf(why, sizeof(why), "reject_pause: %lld of the last %lld "
	    "emails refused with 5xx (more than %g%%)", (long long)rej,
	    (long long)tot, cfg->limits.reject_pause * 100);
	log_warnx("pausing every queue: %s", why);
	if (ratelimit_pause_all(rn->ctx->queue, cfg, why, err,
	    sizeof(err)) == -1)
		log_warnx("reject_pause: cannot pause: %s", err);
}

/* Keep one email's outcome for the reject ring ('1': a 5xx). */
static void
digest_limit_outcome(struct run *rn, char o)
{
	/* A flush carries at most flush_n messages: the buffer holds them. */
	if (rn->ctx->cfg->limits.reject_pause <= 0 ||
	    rn->lim_nout == rn->lim_cap)
		return;
	rn->lim_out[rn->lim_nout++] = o;
}

/*
 * Sleep ms in slices, ticking as the walk does, so that a worker waiting
 * for tokens keeps its heartbeat and its job's lease.  0, or 1 when the
 * job must stop (draining, or the queue connection is gone).
 */
static int
digest_limit_sleep(struct run *rn, int64_t ms)
{
	int64_t end = now_mono_ns() + ms * 1000000LL, left;
	struct timespec ts;

	while ((left = end - now_mono_ns()) > 0) {
		if (left > LIMIT_SLICE_NS)
			left = LIMIT_SLICE_NS;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left;
		nanosleep(&ts, NULL);
		digest_tick(rn, 0);
		if (rn->tick_failed || digest_draining(rn))
			return 1;
	}
	return 0;
}

/* The index of rcpt's domain in limits.domain_rate, or -1. */
static int
digest_limit_dom(struct run *rn, const char *rcpt)
{
	char dom[CONFIG_STR_MAX];
	int k;

	if (rn->lim_ndom == 0 || rcpt == NULL ||
	    ratelimit_domain(rcpt, dom, sizeof(dom)) == NULL)
		return -1;
	for (k = 0; k < rn->lim_ndom; k++)
		if (strcmp(rn->lim_dom[k].domain, dom) == 0)
			return k;
	return -1;
}

/*
 * How many tokens to ask for at member i: what the rest of the batch
 * still to go to the transport (to domain k, or to any domain when k is
 * -1) will need before the next flush, so that one grant covers a flush.
 */
static int64_t
digest_limit_want(struct run *rn, size_t i, int k)
{
	int64_t want = 1, cap = (int64_t)(rn->flush_n - rn->nqueued);
	size_t j;

	for (j = i + 1; j < rn->n && want < cap; j++) {
		if (rn->m[j].state != M_PENDING)
			continue;
		if (k == -1 || digest_limit_dom(rn, rn->m[j].email) == k)
			want++;
	}
	return want;
}

/*
 * Take one token from *credit, asking the bucket (domain, or the
 * cluster's when NULL) for a flush's worth when it is empty, and waiting
 * while the bucket is.  0; 1 when the job must stop; -1 with the reason
 * on a Redis failure.
 */
static int
digest_limit_take(struct run *rn, size_t i, const char *domain, double rate,
    int k, int64_t *credit)
{
	char err[256];
	int64_t got, wait_ms, t0 = 0;
	int rc = 0;

	while (*credit == 0) {
		if (digest_limit_sync(rn) == -1) {
			rc = -1;
			break;
		}
		got = ratelimit_take(rn->ctx->queue, rn->ctx->cfg, domain, rate,
		    digest_limit_want(rn, i, k), &wait_ms, err, sizeof(err));
		if (got == -1) {
			if (rn->ctx->queue->err)
				rn->tick_failed = 1;
			snprintf(rn->reason, rn->reasonlen, "%s", err);
			rc = -1;
			break;
		}
		if (got > 0) {
			*credit = got;
			break;
		}
		if (t0 == 0)
			t0 = now_mono_ns();
		if ((rc = digest_limit_sleep(rn, wait_ms > 0 ? wait_ms : 1))
		    != 0)
			break;
	}
	if (t0 != 0)
		metric_observe(rn->cells, HIST_RATELIMIT_WAIT,
		    now_mono_ns() - t0);
	if (rc == 0)
		(*credit)--;
	return rc;
}

/* Take the tokens member i's email needs: its domain's, then the cluster's. */
static int
digest_limit(struct run *rn, size_t i, const char *rcpt)
{
	const struct config *cfg = rn->ctx->cfg;
	int k, rc;

	if ((k = digest_limit_dom(rn, rcpt)) != -1 &&
	    (rc = digest_limit_take(rn, i, rn->lim_dom[k].domain,
	    rn->lim_dom[k].rate, k, &rn->lim_dom_credit[k])) != 0)
		return rc;
	if (cfg->limits.rate > 0 &&
	    (rc = digest_limit_take(rn, i, NULL, cfg->limits.rate, -1,
	    &rn->lim_credit)) != 0) {
		/* The email is not sent: its domain's token goes back. */
		if (k != -1)
			rn->lim_dom_credit[k]++;
		return rc;
	}
	return 0;
}

/* Give the tokens granted and not used back to their buckets. */
static void
digest_limit_return(struct run *rn)
{
	char err[256];
	int64_t wait_ms;
	int k;

	if (rn->lim_credit == 0 && rn->lim_ndom == 0)
		return;
	if (digest_limit_sync(rn) == -1)
		return;
	if (rn->lim_credit > 0)
		(void)ratelimit_take(rn->ctx->queue, rn->ctx->cfg, NULL,
		    rn->ctx->cfg->limits.rate, -rn->lim_credit, &wait_ms, err,
		    sizeof(err));
	rn->lim_credit = 0;
	for (k = 0; k < rn->lim_ndom; k++) {
		if (rn->lim_dom_credit[k] > 0)
			(void)ratelimit_take(rn->ctx->queue, rn->ctx->cfg,
			    rn->lim_dom[k].domain, rn->lim_dom[k].rate,
			    -rn->lim_dom_credit[k], &wait_ms, err, sizeof(err));
		rn->lim_dom_credit[k] = 0;
	}
}

static void
digest_result_cb(void *arg, const struct email *e, enum tp_result res,
    const char *detail)
{
	struct run *rn = arg;
	struct member *m;
	struct parked *p;
	int64_t delay;

	if ((m = digest_find(rn, e->uid)) == NULL) {
		log_warnx("transport reported uid %lld, not in the batch",
		    (long long)e->uid);
		return;
	}
	rn->nqueued--;
	m->state = M_DONE;
	switch (res) {
	case TP_SENT:
		digest_limit_outcome(rn, '0');
		rn->cp->sent++;
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_SENT));
		delay = now_real_ns() - rn->job->window_end * 1000000000LL;
		metric_observe(rn->cells, HIST_EMAIL_DELAY, delay);
		digest_unpark(rn, m->uid);
		break;
	case TP_REJECTED:
		digest_limit_outcome(rn, '1');
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_REJECTED));
		metric_inc(rn->cells, MC_REJECTS +
		    (feedback_no_mailbox(detail) ? REJECT_MAILBOX :
		    REJECT_POLICY));
		log_info("rejected uid=%lld: %s", (long long)m->uid,
		    detail ? detail : "");
		if (digest_give_up(rn, m, detail, 1) == -1) {
			/* Still parked, or held like a message without an
			   outcome: tried again. */
			if (!rn->parked_pass)
				m->state = M_UNCONFIRMED;
			break;
		}
		digest_unpark(rn, m->uid);
		break;
	case TP_DEFERRED:
		metric_inc(rn->cells, MC_EMAIL(rn->tp_type, EMAIL_DEFERRED));
		if (detail != NULL)
			strlcpy(rn->defer_detail, detail,
			    sizeof(rn->defer_detail));
		p = digest_parked_find(rn, m->uid);
		if (p != NULL && now_real_ns() / 1000000 - p->first_ms >=
		    rn->ctx->cfg->smtp.defer_give_up_ms) {
			/* Its queue lifetime is over, as an MTA bounces. */
			log_warnx("uid=%lld still deferred %lld s after its "
			    "first 4xx, after %d tries: given up (%s)",
			    (long long)m->uid, (long long)((now_real_ns() /
			    1000000 - p->first_ms) / 1000), p->tries + 1,
			    detail ? detail : "");
			metric_inc(rn->cells, MC_EMAIL(rn->tp_type,
			    EMAIL_REJECTED));
			metric_inc(rn->cells, MC_REJECTS + REJECT_EXPIRED);
			if (digest_give_up(rn, m, detail, 0) == -1) {
				if (!rn->parked_pass)
					m->state = M_UNCONFIRMED;
				break;
			}
			digest_unpark(rn, m->uid);
			break;
		}
		log_debug("deferred uid=%lld: %s", (long long)m->uid,
		    detail ? detail : "");
		/*
		 * Parked at once, so that the frontier goes on past it:
		 * everyone sent after it is recorded as done, and a kill
		 * later in the batch re-sends nobody.  Unless Redis did not
		 * take it: then it holds the frontier, as a message without
		 * an outcome does.
		 */
		if (digest_park(rn, m->uid) == -1 && !rn->parked_pass)
			m->state = M_UNCONFIRMED;
		break;
	}
	if (!rn->parked_pass)
		digest_advance(rn);
	else if (res == TP_SENT &&
	    checkpoint_progress(rn->ctx->queue, rn->ctx->cfg, rn->job,
	    rn->cp) == -1)
		digest_cp_failed(rn);
	digest_tick(rn, 0);
}

/*
 * Deliver what is queued, then read back the checkpoint's writes.  0, or
 * -1 when the transport failed (members without an outcome are left
 * unconfirmed) or the checkpoint could not be written.
 */
static int
digest_flush(struct run *rn)
{
	char err[256] = "";
	size_t i;
	int rc;

	if (rn->nqueued > 0) {
		rc = rn->ctx->tp_ops->flush(rn->ctx->tp, digest_result_cb, rn,
		    err, sizeof(err));
		if (rc == -1 || rn->nqueued > 0) {
			for (i = 0; i < rn->n; i++)
				if (rn->m[i].state == M_QUEUED)
					rn->m[i].state = M_UNCONFIRMED;
			rn->nqueued = 0;
			metric_inc(rn->cells, MC_TRANSPORT_ERRORS +
			    rn->tp_type);
			rn->cp->outage = 1;
			snprintf(rn->reason, rn->reasonlen, "transport %s: %s",
			    rn->ctx->tp_ops->name, err[0] ? err :
			    "no outcome");
			(void)digest_save(rn);
			return -1;
		}
	}
	if (checkpoint_sync(rn->ctx->queue, rn->cp) == -1)
		digest_cp_failed(rn);
	digest_limit_note(rn);
	digest_tick(rn, 0);
	return rn->save_failed ? -1 : 0;
}

/* Cut off what was rendered after mark and will not be sent. */
static void
digest_unrender(struct rbuf *out, size_t mark)
{
	out->len = mark;
	if (out->p != NULL)
		out->p[mark] = '\0';
}

/*
 * Render m, the batch's member i, and queue its email once the rate
 * limits allow; flushes every flush_n messages.  0, 1 when the job must
 * stop before m (m stays pending), or -1.
 */
static int
digest_send(struct run *rn, size_t i)
{
	struct member *m = &rn->m[i];
	struct digest_priv *dp = rn->dp;
	const struct transport_ops *ops = rn->ctx->tp_ops;
	struct recipient rc;
	struct email e;
	struct rbuf *out;
	char mid[512];
	size_t mark;
	int np, rc2;

	rc.uid = m->uid;
	rc.email = m->email;
	rc.name = m->name;
	rc.locale = m->locale;
	/* Into the transport's own buffer when it has one: no copy. */
	if (ops->buffer != NULL)
		out = ops->buffer(rn->ctx->tp);
	else {
		out = &dp->msg;
		rbuf_reset(out);
	}
	mark = out->len;
	np = render_message(dp->render, &rc, out, mid, sizeof(mid));
	if (np <= 0) {
		enum skip_reason why = np == 0 ? SKIP_NOTHING_NEW :
		    SKIP_NO_EMAIL;

		digest_unrender(out, mark);
		metric_inc(rn->cells, MC_SKIPPED + why);
		rn->cp->skipped++;
		m->state = M_DONE;
		digest_unpark(rn, m->uid);
		return 0;
	}
	e.rcpt = render_rcpt(dp->render);
	if ((rc2 = digest_limit(rn, i, e.rcpt)) != 0) {
		/* What is queued goes out: m stays pending, for next time. */
		digest_unrender(out, mark);
		if (rc2 == -1)
			(void)digest_flush(rn);
		return rc2;
	}
	e.uid = m->uid;
	e.gid = rn->job->group_id;
	e.message_id = mid;
	e.job_id = rn->job->job_id;
	e.data = out->p + mark;
	e.len = out->len - mark;
	if (ops->send(rn->ctx->tp, &e) == -1) {
		digest_unrender(out, mark);
		m->state = M_UNCONFIRMED;
		metric_inc(rn->cells, MC_TRANSPORT_ERRORS + rn->tp_type);
		snprintf(rn->reason, rn->reasonlen, "transport %s: cannot "
		    "queue a message", rn->ctx->tp_ops->name);
		(void)digest_flush(rn);
		return -1;
	}
	m->state = M_QUEUED;
	rn->nqueued++;
	if (rn->nqueued >= rn->flush_n)
		return digest_flush(rn);
	return 0;
}

enum batch_outcome {
	B_OK,		/* the batch is done */
	B_RETRY,	/* a failure: give the job back */
	B_STOPPED,	/* told to drain */
	B_FULL,		/* enough recipients wait: the walk stops for now */
};

/*
 * Send the batch's eligible members.  Every 4xx is parked as its reply
 * comes, so the batch always ends with every member done, or the job
 * stopped.  The walk stops (B_FULL) once PARKED_MAX recipients wait, the
 * server deferring nearly everyone: the job then waits for their retry
 * instead of deferring the whole group.  No message is queued that could
 * take the parked list past PARKED_CAP.
 */
static enum batch_outcome
digest_batch(struct run *rn)
{
	size_t i;
	int full = 0, rc;

	for (i = 0; i < rn->n; i++) {
		if (rn->m[i].state != M_PENDING)
			continue;
		digest_tick(rn, 0);
		if (rn->tick_failed || digest_draining(rn))
			break;
		if (!rn->parked_pass && rn->npk + rn->nqueued >=
		    PARKED_CAP && digest_flush(rn) == -1)
			return B_RETRY;
		if (!rn->parked_pass && rn->npk >= PARKED_MAX) {
			full = 1;
			break;
		}
		if ((rc = digest_send(rn, i)) == -1) {
			digest_limit_return(rn);
			return B_RETRY;
		}
		if (rc == 1)
			break;
	}
	digest_limit_return(rn);
	if (digest_flush(rn) == -1)
		return B_RETRY;
	if (!rn->parked_pass)
		digest_advance(rn);
	if (digest_draining(rn))
		return B_STOPPED;
	if (rn->tick_failed) {
		rn->cp->outage = 1;
		snprintf(rn->reason, rn->reasonlen,
		    "lost the queue connection");
		return B_RETRY;
	}
	if (!rn->parked_pass && (full || rn->npk >= PARKED_MAX))
		return B_FULL;
	return B_OK;
}

/*
 * Send again the parked recipients whose next try is due, as one batch
 * that leaves the cursor where it is.  Those done (sent, rejected, given
 * up, no longer eligible) leave the list; those deferred again get their
 * next try on the clock.
 */
static enum batch_outcome
digest_parked_pass(struct run *rn)
{
	enum batch_outcome bo;
	int64_t now = now_real_ns() / 1000000;
	size_t i, n = 0;

	for (i = 0; i < rn->npk; i++)
		if (rn->pk[i].next_ms <= now)
			n++;
	if (n == 0)
		return B_OK;
	rn->m = wcalloc(n, sizeof(*rn->m));
	for (i = 0; i < rn->npk && rn->n < n; i++) {
		if (rn->pk[i].next_ms > now)
			continue;
		rn->m[rn->n].uid = rn->pk[i].uid;
		rn->m[rn->n].state = M_PENDING;
		rn->n++;
	}
	if (checkpoint_sync(rn->ctx->queue, rn->cp) == -1 &&
	    rn->ctx->queue->err) {
		digest_cp_failed(rn);
		digest_batch_free(rn);
		return B_RETRY;
	}
	rn->parked_pass = 1;
	if (digest_load_users(rn) == -1) {
		rn->parked_pass = 0;
		digest_batch_free(rn);
		return B_RETRY;
	}
	/* No longer eligible (opted out, no address meanwhile): done. */
	for (i = 0; i < rn->n; i++)
		if (rn->m[i].state == M_DONE)
			digest_unpark(rn, rn->m[i].uid);
	bo = digest_batch(rn);
	rn->parked_pass = 0;
	digest_batch_free(rn);
	if (bo == B_OK && digest_save(rn) == -1)
		bo = B_RETRY;
	return bo;
}

/*
 * Walk the members from the cursor to the end of the range, batch by
 * batch.  B_OK once the range is exhausted (*done set), B_FULL when the
 * walk stops for the parked recipients, else why it stopped.
 */
static enum batch_outcome
digest_walk(struct run *rn, int *done)
{
	enum batch_outcome bo = B_OK;
	int last = 0;

	if (!rn->walk_open) {
		if (activity_walk_start(&rn->ar) == -1)
			return B_RETRY;
		rn->walk_open = 1;
	}
	while (!last) {
		digest_tick(rn, 0);
		if (digest_draining(rn))
			return B_STOPPED;
		if (rn->tick_failed) {
			snprintf(rn->reason, rn->reasonlen,
			    "lost the queue connection");
			return B_RETRY;
		}
		if (digest_load_batch(rn, &last) == -1) {
			digest_batch_free(rn);
			return B_RETRY;
		}
		if (rn->n == 0) {
			digest_batch_free(rn);
			continue;
		}
		bo = digest_batch(rn);
		/*
		 * Stopped inside the batch: a later walk starts after the
		 * frontier, not after what was read.
		 */
		if (bo != B_OK)
			rn->walk_open = 0;
		digest_batch_free(rn);
		if (bo != B_OK)
			return bo;
		if (digest_save(rn) == -1)
			return B_RETRY;
		/* A pause or a cancel takes effect here, the batch saved. */
		if (!last && rn->ctx->batch_end != NULL &&
		    rn->ctx->batch_end(rn->ctx->tick_arg)) {
			rn->walk_open = 0;
			return B_STOPPED;
		}
	}
	*done = 1;
	return B_OK;
}

/* Load the group and hand its posts to the renderer. */
static int
digest_prepare(struct run *rn)
{
	struct digest_priv *dp = rn->dp;
	struct activity_group ag;
	char err[256];

	if (dp->render == NULL &&
	    (dp->render = render_new(rn->ctx->cfg, err, sizeof(err))) == NULL) {
		snprintf(rn->reason, rn->reasonlen, "templates: %s", err);
		return -1;
	}
	if (activity_group(&rn->ar, &ag) == -1)
		return -1;
	if (render_job(dp->render, rn->job, &ag.info, ag.posts, ag.nposts) ==
	    -1)
		worker_oom();
	/* The renderer now points into the new posts: the old ones can go. */
	activity_group_clear(&dp->group);
	dp->group = ag;

	rn->ej.period = rn->job->period;
	rn->ej.window_end = rn->job->window_end;
	rn->ej.group_size = ag.info.members;
	rn->ej.large_group_threshold =
	    rn->ctx->cfg->digest.large_group_threshold;
	rn->ej.inactive_after_s = rn->ctx->cfg->digest.inactive_after_ms / 1000;
	rn->ej.nposts = ag.nall;
	rn->ej.sole_author = ag.sole_author;
	return 0;
}

/* Why the job waits, for its checkpoint and the log. */
static void
digest_wait_reason(struct run *rn)
{
	snprintf(rn->reason, rn->reasonlen, "%zu recipient%s deferred by the "
	    "server%s%s", rn->npk, rn->npk == 1 ? "" : "s",
	    rn->defer_detail[0] ? ": " : "", rn->defer_detail);
}

enum digest_result
digest_run(struct digest_ctx *ctx, const struct job *job, struct checkpoint *cp,
    char *reason, size_t reasonlen)
{
	const struct config *cfg = ctx->cfg;
	struct run rn;
	enum batch_outcome bo = B_OK;
	int64_t now;
	size_t i, max;
	int walked = 0;

	if (ctx->priv == NULL)
		ctx->priv = wcalloc(1, sizeof(struct digest_priv));
	memset(&rn, 0, sizeof(rn));
	rn.ctx = ctx;
	rn.job = job;
	rn.cp = cp;
	cp->outage = 0;
	cp->due_ms = 0;
	rn.dp = ctx->priv;
	rn.cells = ctx->slot->cells;
	rn.tp_type = ctx->tp_ops->type;
	rn.reason = reason;
	rn.reasonlen = reasonlen;
	rn.last_tick_ns = now_mono_ns();
	reason[0] = '\0';
	rn.ar.c = ctx->data;
	rn.ar.q = ctx->queue;
	rn.ar.cfg = cfg;
	rn.ar.job = job;
	rn.ar.cp = cp;
	rn.ar.cells = rn.cells;
	rn.ar.cap = &rn.dp->cap;
	rn.ar.reason = reason;
	rn.ar.reasonlen = reasonlen;
	/* A flush carries a batch, or less when the transport wants less. */
	rn.flush_n = cfg->digest.batch_size;
	if (ctx->tp_ops->flush_max != NULL &&
	    (max = ctx->tp_ops->flush_max(ctx->tp)) > 0 && max < rn.flush_n)
		rn.flush_n = max;
	if (rn.flush_n == 0)
		rn.flush_n = 1;
	/* Checked at load: a failure here leaves the domains unlimited. */
	if (cfg->limits.domain_rate[0] != '\0' &&
	    (rn.lim_ndom = config_parse_domain_rates(cfg->limits.domain_rate,
	    rn.lim_dom, CONFIG_DOMAIN_RATES_MAX, reason, reasonlen)) == -1) {
		rn.lim_ndom = 0;
		reason[0] = '\0';
	}
	if (cfg->limits.reject_pause > 0) {
		rn.lim_cap = rn.flush_n;
		rn.lim_out = wmalloc(rn.lim_cap);
	}

	/* A resumed job: those already sent are not sent again. */
	if (cp->cursor.set && cp->sent > 0)
		metric_add(rn.cells, MC_SKIPPED + SKIP_ALREADY_SENT,
		    (uint64_t)cp->sent);
	sb_cursor_set(ctx->slot, &cp->cursor);

	if (digest_prepare(&rn) == -1) {
		bo = B_RETRY;
		goto out;
	}
	/* Most jobs have no one waiting for a retry: no read for them. */
	if (!cp->none_parked && checkpoint_parked_load(ctx->queue, cfg, job,
	    &rn.pk, &rn.npk) == -1) {
		activity_error(&rn.ar, ctx->queue, "load deferred", NULL);
		bo = B_RETRY;
		goto out;
	}
	rn.capk = rn.npk;

	/*
	 * The recipients waiting for a retry go first when due; the walk
	 * goes on while few wait; then, with only waiting recipients left,
	 * the job waits for the earliest of them, holding no worker.
	 */
	for (;;) {
		if ((bo = digest_parked_pass(&rn)) != B_OK)
			break;
		if (!walked && rn.npk < PARKED_MAX) {
			bo = digest_walk(&rn, &walked);
			if (bo != B_OK && bo != B_FULL)
				break;
			bo = B_OK;
			continue;
		}
		if (rn.npk == 0 && walked)
			break;
		now = now_real_ns() / 1000000;
		cp->due_ms = INT64_MAX;
		for (i = 0; i < rn.npk; i++)
			if (rn.pk[i].next_ms < cp->due_ms)
				cp->due_ms = rn.pk[i].next_ms;
		if (rn.npk > 0 && cp->due_ms > now) {
			digest_wait_reason(&rn);
			bo = B_FULL;
			break;
		}
		/* Some came due meanwhile (a long walk): their pass first. */
	}
out:
	digest_limit_note(&rn);
	rn.save_failed = 0;
	if (digest_save(&rn) == -1 && bo != B_STOPPED)
		bo = B_RETRY;
	free(rn.pk);
	free(rn.lim_out);
	activity_clear(&rn.ar);
	switch (bo) {
	case B_OK:
		log_debug("job %s done: sent %lld skipped %lld", job->job_id,
		    (long long)cp->sent, (long long)cp->skipped);
		return DIGEST_DONE;
	case B_FULL:
		return DIGEST_WAIT;
	case B_STOPPED:
		snprintf(reason, reasonlen, "draining");
		return DIGEST_STOPPED;
	default:
		if (reason[0] == '\0')
			snprintf(reason, reasonlen, "retry");
		return DIGEST_RETRY;
	}
}

void
digest_ctx_clear(struct digest_ctx *ctx)
{
	struct digest_priv *dp = ctx->priv;

	if (dp == NULL)
		return;
	render_free(dp->render);
	activity_group_clear(&dp->group);
	rbuf_free(&dp->msg);
	free(dp);
	ctx->priv = NULL;
}
