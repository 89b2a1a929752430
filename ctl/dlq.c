/*
 * digestctl dlq: list the dead letters and put them back on their queue.
 *
 * A requeued job is enqueued by force (its digest:enq marker is not a
 * reason to refuse it), removed from the dead letters, and given a fresh
 * count of attempts in its checkpoint hash, which keeps its cursor so the
 * job resumes after the last member done.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "amqp_link.h"
#include "ctl.h"
#include "jobq.h"
#include "jobq_amqp.h"
#include "rconn.h"
#include "util.h"

#define DLQ_PAGE 500
#define DLQ_FIELDS_MAX 32

struct dlq_entry {
	const char *id;
	size_t n;
	const char *names[DLQ_FIELDS_MAX];
	const char *values[DLQ_FIELDS_MAX];
};

static const char *
dlq_get(const struct dlq_entry *e, const char *name)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		if (strcmp(e->names[i], name) == 0)
			return e->values[i];
	return NULL;
}

static int
dlq_entry(redisReply *r, struct dlq_entry *e)
{
	redisReply *f;
	size_t i;

	memset(e, 0, sizeof(*e));
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return -1;
	e->id = r->element[0]->str;
	f = r->element[1];
	if (f->type != REDIS_REPLY_ARRAY)
		return -1;
	for (i = 0; i + 1 < f->elements && e->n < DLQ_FIELDS_MAX; i += 2) {
		if (f->element[i]->type != REDIS_REPLY_STRING ||
		    f->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		e->names[e->n] = f->element[i]->str;
		e->values[e->n] = f->element[i + 1]->str;
		e->n++;
	}
	return 0;
}

static void
dlq_time(const char *s, char *buf, size_t len)
{
	double d;

	if (s == NULL || parse_double(s, &d) == -1)
		d = -1;
	unix_time_iso(d, buf, len);
}

/* Reset the job's attempts (and its dead state) in its checkpoint. */
static int
dlq_reset(struct ctl *c, const char *job_id)
{
	return checkpoint_reset(c->qr, c->cfg, job_id, c->err,
	    sizeof(c->err));
}

/* Requeue one dead letter: 1 done, 0 skipped (said why), -1 error. */
static int
dlq_requeue_one(struct ctl *c, const char *dkey, const struct dlq_entry *e)
{
	redisReply *r;
	struct job j;
	const char *queue;
	char err[256];

	if (job_decode_fields(&j, e->names, e->values, e->n, err,
	    sizeof(err)) == -1 || job_validate(&j, err, sizeof(err)) == -1) {
		fprintf(stderr, "digestctl dlq: entry %s cannot be requeued: "
		    "%s\n", ctl_vis(e->id), ctl_vis(err));
		return 0;
	}
	if ((queue = dlq_get(e, "queue")) == NULL || queue[0] == '\0') {
		fprintf(stderr, "digestctl dlq: entry %s names no queue\n",
		    ctl_vis(e->id));
		return 0;
	}
	j.enqueued_at = now_real();
	if (ctl_enqueue(c, queue, &j, 1) == -1)
		return -1;
	if (dlq_reset(c, j.job_id) == -1)
		return -1;
	r = redisCommand(c->qr, "XDEL %s %s", dkey, e->id);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		snprintf(c->err, sizeof(c->err), "redis XDEL: %s",
		    r ? r->str : c->qr->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	printf("requeued %s on %s\n", ctl_vis(j.job_id), ctl_vis(queue));
	return 1;
}

/* Walk the dead-letter stream; requeue: NULL to list. */
static int
dlq_walk_redis(struct ctl *c, int requeue, const char *job_id)
{
	struct dlq_entry e;
	redisReply *r;
	char key[512], start[80], when[32];
	const char *v;
	size_t i;
	int64_t seen = 0, done = 0, matched = 0;
	int rv;

	if (rkey(key, sizeof(key), c->cfg->redis.key_prefix, "digest:dlq") ==
	    NULL) {
		fprintf(stderr, "digestctl dlq: key too long\n");
		return 1;
	}
	if (!requeue)
		printf("%-22s %-36s %-10s %-8s %-20s %s\n", "entry", "job_id",
		    "queue", "attempts", "failed_at", "reason");
	strlcpy(start, "-", sizeof(start));
	for (;;) {
		r = redisCommand(c->qr, "XRANGE %s %s + COUNT %d", key, start,
		    DLQ_PAGE);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
			fprintf(stderr, "digestctl dlq: redis XRANGE: %s\n",
			    ctl_vis(r == NULL ? c->qr->errstr : r->type ==
			    REDIS_REPLY_ERROR ? r->str : "bad reply"));
			if (r)
				freeReplyObject(r);
			return 1;
		}
		if (r->elements == 0) {
			freeReplyObject(r);
			break;
		}
		for (i = 0; i < r->elements; i++) {
			if (dlq_entry(r->element[i], &e) == -1)
				continue;
			seen++;
			snprintf(start, sizeof(start), "(%s", e.id);
			v = dlq_get(&e, "job_id");
			if (!requeue) {
				dlq_time(dlq_get(&e, "failed_at"), when,
				    sizeof(when));
				/* Every field came from whoever wrote it. */
				printf("%-22s %-36s %-10s %-8s %-20s %s\n",
				    ctl_vis(e.id), ctl_vis(v),
				    ctl_vis(dlq_get(&e, "queue")),
				    ctl_vis(dlq_get(&e, "attempts")), when,
				    ctl_vis(dlq_get(&e, "reason")));
				continue;
			}
			if (job_id != NULL &&
			    (v == NULL || strcmp(v, job_id) != 0))
				continue;
			matched++;
			if ((rv = dlq_requeue_one(c, key, &e)) == -1) {
				fprintf(stderr, "digestctl dlq requeue: %s\n",
				    ctl_vis(c->err));
				freeReplyObject(r);
				return 1;
			}
			done += rv;
		}
		freeReplyObject(r);
	}
	if (!requeue) {
		printf("%" PRId64 " dead letter(s)\n", seen);
		return 0;
	}
	printf("%" PRId64 " job(s) requeued\n", done);
	if (job_id != NULL && matched == 0) {
		fprintf(stderr, "digestctl dlq requeue: no dead letter for job "
		    "%s\n", job_id);
		return 1;
	}
	return done == matched ? 0 : 1;
}

struct dlq_amqp_arg {
	struct ctl *c;
	int requeue;
	int64_t kept;		/* requeue: matching letters left in place */
	int failed;
};

static void
dlq_amqp_cb(void *arg, const struct jobq_amqp_letter *lt)
{
	struct dlq_amqp_arg *a = arg;
	const char *id = ctl_vis(lt->job_id[0] != '\0' ? lt->job_id : NULL);
	const char *queue = ctl_vis(lt->queue[0] != '\0' ? lt->queue : NULL);

	if (!a->requeue) {
		printf("%-36s %-10s %s\n", id, queue,
		    ctl_vis(lt->reason[0] != '\0' ? lt->reason : NULL));
		return;
	}
	if (!lt->requeued) {
		/* Reported, not fatal: the others are requeued all the same. */
		fprintf(stderr, "digestctl dlq: %s not requeued: %s\n", id,
		    lt->body == NULL ? ctl_vis(lt->reason) :
		    "it names no queue");
		a->kept++;
		return;
	}
	if (lt->job_id[0] != '\0' && dlq_reset(a->c, lt->job_id) == -1)
		a->failed = 1;
	printf("requeued %s on %s\n", lt->job_id[0] != '\0' ? id :
	    "(undecodable)", queue);
}

static int
dlq_walk_amqp(struct ctl *c, int requeue, const char *job_id)
{
	struct dlq_amqp_arg a = { c, requeue, 0, 0 };
	int n;

	if (c->amqp == NULL &&
	    (c->amqp = amqp_link_open(c->cfg, c->err, sizeof(c->err))) == NULL) {
		fprintf(stderr, "digestctl dlq: %s\n", ctl_vis(c->err));
		return 1;
	}
	if (!requeue)
		printf("%-36s %-10s %s\n", "job_id", "queue", "reason");
	n = jobq_amqp_dlq_walk(c->amqp, requeue, job_id, dlq_amqp_cb, &a,
	    c->err, sizeof(c->err));
	if (n == -1) {
		fprintf(stderr, "digestctl dlq: %s\n", ctl_vis(c->err));
		return 1;
	}
	printf("%d dead letter(s)%s\n", n, requeue ? " requeued" : "");
	if (requeue && job_id != NULL && n == 0) {
		if (a.kept == 0)
			fprintf(stderr, "digestctl dlq requeue: no dead letter "
			    "for job %s\n", job_id);
		return 1;
	}
	return a.failed ? 1 : 0;
}

int
ctl_cmd_dlq(struct ctl *c, int argc, char **argv)
{
	const char *job_id = NULL;
	int requeue, all = 0, i;

	if (argc < 1 || (strcmp(argv[0], "list") != 0 &&
	    strcmp(argv[0], "requeue") != 0)) {
		fprintf(stderr, "usage: digestctl -c FILE dlq list | "
		    "dlq requeue JOB_ID|--all\n");
		return 2;
	}
	requeue = strcmp(argv[0], "requeue") == 0;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0)
			all = 1;
		else if (argv[i][0] != '-' && job_id == NULL && requeue)
			job_id = argv[i];
		else {
			fprintf(stderr, "digestctl dlq: unknown argument %s\n",
			    argv[i]);
			return 2;
		}
	}
	if (requeue && (all == (job_id != NULL))) {
		fprintf(stderr, "digestctl dlq requeue: give a JOB_ID or "
		    "--all\n");
		return 2;
	}
	if (c->cfg->queue.backend == QUEUE_BACKEND_AMQP)
		return dlq_walk_amqp(c, requeue, job_id);
	return dlq_walk_redis(c, requeue, job_id);
}
