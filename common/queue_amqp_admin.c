/*
 * The AMQP backend, administration side (queue.h): enqueueing with a
 * publisher confirm behind the enqueue markers in the queue Redis, the
 * queues' counts, and the walk of digest.dlq behind `digestctl dlq`.  A
 * handle keeps one connection (amqp_link_open: no heartbeats, since it is
 * used now and then) and opens a new one after a failure.  The worker's
 * side is queue_amqp.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <jansson.h>

#include "checkpoint.h"
#include "log.h"
#include "queue_amqp.h"
#include "util.h"

#define QUEUE_AMQP_DECLARED_MAX (CONFIG_MAX_POOLS + 2)

/* An administration handle's own state. */
struct queue_amqp_admin {
	struct amqp_link *link;
	/* The queues declared on link, so each is declared once. */
	char declared[QUEUE_AMQP_DECLARED_MAX][CONFIG_NAME_MAX];
	int ndeclared;
};

/* Close the handle's connection; the next call opens a new one. */
void
queue_amqp_admin_drop(struct queue_admin *qa)
{
	struct queue_amqp_admin *aa = qa->priv;

	if (aa == NULL)
		return;
	amqp_link_close(aa->link);
	aa->link = NULL;
	aa->ndeclared = 0;
}

struct amqp_link *
queue_amqp_admin_link(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	struct queue_amqp_admin *aa;
	int i;

	if ((aa = qa->priv) == NULL)
		aa = qa->priv = xcalloc(1, sizeof(*aa));
	if (aa->link != NULL && aa->link->dead)
		queue_amqp_admin_drop(qa);
	if (aa->link == NULL &&
	    (aa->link = amqp_link_open(qa->cfg, err, errlen)) == NULL)
		return NULL;
	if (queue == NULL)
		return aa->link;
	for (i = 0; i < aa->ndeclared; i++)
		if (strcmp(aa->declared[i], queue) == 0)
			return aa->link;
	if (queue_amqp_declare(aa->link, queue, err, errlen) == -1) {
		queue_amqp_admin_drop(qa);
		return NULL;
	}
	if (aa->ndeclared < QUEUE_AMQP_DECLARED_MAX)
		strlcpy(aa->declared[aa->ndeclared++], queue, CONFIG_NAME_MAX);
	return aa->link;
}

/*
 * Enqueue one job: the marker in the queue Redis first, as a claim that
 * lapses if the publish fails, then the message.  1 added, 0 already
 * there, -1 with err.
 */
static int
queue_amqp_enqueue_job(struct queue_admin *qa, struct amqp_link *l,
    const char *queue, const struct job *j, int force, char *err,
    size_t errlen)
{
	amqp_basic_properties_t p;
	redisContext *q = qa->qr;
	redisReply *r;
	char key[512], qname[QUEUE_AMQP_QNAME_MAX];
	char *body;
	int added, rc;

	if (q == NULL) {
		snprintf(err, errlen, "queue redis: not connected");
		return -1;
	}
	if (queue_enq_key(key, sizeof(key), qa->cfg, j->job_id) == -1) {
		snprintf(err, errlen, "job id too long");
		return -1;
	}
	if (queue_amqp_qname(qname, sizeof(qname), queue, err, errlen) == -1)
		return -1;
	r = redisCommand(q, force ? "SET %s %s EX %d" : "SET %s %s NX EX %d",
	    key, queue, QUEUE_CLAIM_TTL_S);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis SET %s: %s", key,
		    r ? r->str : q->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	added = r->type == REDIS_REPLY_STATUS;
	freeReplyObject(r);
	if (!added)
		return 0;
	if ((body = job_encode_json(j)) == NULL)
		worker_oom();
	queue_amqp_props(&p, j->job_id, j->enqueued_at);
	/* mandatory: a missing queue is an error, not a silent drop. */
	rc = amqp_link_publish_confirmed(l, "", qname, 1, &p, body,
	    strlen(body), err, errlen);
	free(body);
	if (rc == -1) {
		/* Without the message, the marker would hide the job. */
		if ((r = redisCommand(q, "DEL %s", key)) != NULL)
			freeReplyObject(r);
		return -1;
	}
	r = redisCommand(q, "EXPIRE %s %lld", key,
	    (long long)queue_enq_ttl(j));
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis EXPIRE %s: %s", key,
		    r ? r->str : q->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 1;
}

int
queue_amqp_enqueue(struct queue_admin *qa, const char *queue,
    const struct job *jobs, size_t n, int force, int *added, char *err,
    size_t errlen)
{
	struct amqp_link *l;
	size_t i;
	int rv, count = 0;

	memset(added, 0, n * sizeof(*added));
	if ((l = queue_amqp_admin_link(qa, queue, err, errlen)) == NULL)
		return -1;
	/* Each publish waits for its confirm anyway: one at a time. */
	for (i = 0; i < n; i++) {
		if ((rv = queue_amqp_enqueue_job(qa, l, queue, &jobs[i], force,
		    err, errlen)) == -1) {
			queue_amqp_admin_drop(qa);
			return -1;
		}
		added[i] = rv;
		count += rv;
	}
	return count;
}

/* Passive declare: the queue's ready count, 0 if it does not exist. */
static int
queue_amqp_count(struct amqp_link *l, const char *qname, int64_t *count,
    char *err, size_t errlen)
{
	amqp_queue_declare_ok_t *ok;

	if (l->dead) {
		snprintf(err, errlen, "amqp: %s", l->why);
		return -1;
	}
	ok = amqp_queue_declare(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(qname), 1, 0, 0, 0, amqp_empty_table);
	if (amqp_link_rpc_ok(l, "queue.declare passive", err, errlen) == -1) {
		if (l->last_code == AMQP_NOT_FOUND && !l->dead) {
			*count = 0;
			return 0;
		}
		return -1;
	}
	*count = ok->message_count;
	return 0;
}

int
queue_amqp_stats(struct queue_admin *qa, const char *queue,
    struct queue_stats *st, char *err, size_t errlen)
{
	struct amqp_link *l;
	char qname[QUEUE_AMQP_QNAME_MAX];

	memset(st, 0, sizeof(*st));
	/*
	 * AMQP 0-9-1 tells only the ready count; the unacknowledged count is
	 * in the management plugin, which digestd does not require.
	 */
	st->pending = -1;
	if (queue_amqp_qname(qname, sizeof(qname), queue, err, errlen) == -1)
		return -1;
	if ((l = queue_amqp_admin_link(qa, queue, err, errlen)) == NULL)
		return -1;
	if (queue_amqp_count(l, qname, &st->depth, err, errlen) == -1) {
		/* The channel is likely closed: start over next time. */
		queue_amqp_admin_drop(qa);
		return -1;
	}
	return 0;
}

int64_t
queue_amqp_dlq_len(struct queue_admin *qa, char *err, size_t errlen)
{
	struct amqp_link *l;
	int64_t n;

	if ((l = queue_amqp_admin_link(qa, NULL, err, errlen)) == NULL)
		return -1;
	if (queue_amqp_count(l, QUEUE_AMQP_DLQ, &n, err, errlen) == -1) {
		queue_amqp_admin_drop(qa);
		return -1;
	}
	return n;
}

/*
 * The reason and queue of a dead letter: our own headers when digestd put
 * it there, else the broker's x-death record (reason "rejected",
 * "expired"...; queue digest.NAME).
 */
static void
queue_amqp_dl_origin(const amqp_table_t *h, char *reason, size_t rlen,
    char *queue, size_t qlen)
{
	const amqp_field_value_t *v;
	const amqp_table_t *t;
	char q[QUEUE_AMQP_QNAME_MAX];
	int i;

	reason[0] = queue[0] = '\0';
	amqp_table_get_str(h, "x-digest-reason", reason, rlen);
	amqp_table_get_str(h, "x-digest-queue", queue, qlen);
	if (reason[0] != '\0' && queue[0] != '\0')
		return;
	for (i = 0; i < h->num_entries; i++) {
		if (h->entries[i].key.len != 7 ||
		    memcmp(h->entries[i].key.bytes, "x-death", 7) != 0)
			continue;
		v = &h->entries[i].value;
		if (v->kind != AMQP_FIELD_KIND_ARRAY ||
		    v->value.array.num_entries < 1 ||
		    v->value.array.entries[0].kind != AMQP_FIELD_KIND_TABLE)
			return;
		t = &v->value.array.entries[0].value.table;
		if (reason[0] == '\0')
			amqp_table_get_str(t, "reason", reason, rlen);
		if (queue[0] == '\0' &&
		    amqp_table_get_str(t, "queue", q, sizeof(q)) == 0 &&
		    strncmp(q, "digest.", 7) == 0)
			strlcpy(queue, q + 7, qlen);
		return;
	}
}

/* The job_id of a JSON body, "" if it has none. */
static void
queue_amqp_body_id(const char *body, size_t len, char *id, size_t idlen)
{
	json_t *o, *v;

	id[0] = '\0';
	if ((o = json_loadb(body, len, 0, NULL)) == NULL)
		return;
	if ((v = json_object_get(o, "job_id")) != NULL && json_is_string(v))
		strlcpy(id, json_string_value(v), idlen);
	json_decref(o);
}

/*
 * Put one dead letter back on its queue: declared again (it may be gone),
 * published with a confirm, then removed from digest.dlq; its job then
 * gets a fresh count of attempts (a failure there is told in lt->error,
 * in ebuf).  0, or -1 with err.
 */
static int
queue_amqp_letter_requeue(struct queue_admin *qa, struct amqp_link *l,
    const struct amqp_delivery *d, struct queue_letter *lt, char *ebuf,
    size_t elen, char *err, size_t errlen)
{
	amqp_basic_properties_t p;
	char qname[QUEUE_AMQP_QNAME_MAX];

	if (queue_amqp_qname(qname, sizeof(qname), lt->queue, err,
	    errlen) == -1 || queue_amqp_declare(l, lt->queue, err,
	    errlen) == -1)
		return -1;
	queue_amqp_props(&p, lt->job_id, now_real());
	if (amqp_link_publish_confirmed(l, "", qname, 1, &p, d->body, d->len,
	    err, errlen) == -1)
		return -1;
	if (amqp_link_ack(l, d->tag, 0) == -1) {
		snprintf(err, errlen, "amqp: %s", l->why);
		return -1;
	}
	lt->requeued = 1;
	if (lt->job_id == NULL)
		return 0;
	if (qa->qr == NULL) {
		snprintf(ebuf, elen, "queue redis: not connected");
		lt->error = ebuf;
	} else if (checkpoint_reset(qa->qr, qa->cfg, lt->job_id, ebuf,
	    elen) == -1)
		lt->error = ebuf;
	return 0;
}

int
queue_amqp_dlq_walk(struct queue_admin *qa, enum queue_dlq_op op,
    const char *match_id, queue_letter_cb cb, void *arg, char *err,
    size_t errlen)
{
	int requeue = op == QUEUE_DLQ_REQUEUE;
	struct queue_letter lt;
	struct amqp_delivery *d;
	struct amqp_link *l;
	amqp_rpc_reply_t r;
	amqp_basic_get_ok_t *ok;
	char reason[256], queue[CONFIG_NAME_MAX], id[JOB_ID_MAX];
	char kept[512], ebuf[256];
	int held = 0, match;

	if ((l = queue_amqp_admin_link(qa, NULL, err, errlen)) == NULL)
		return -1;
	if (requeue && amqp_link_confirm_select(l, err, errlen) == -1)
		return -1;
	/*
	 * Each letter is fetched with basic.get and left unacknowledged, so
	 * that the broker never hands the same one out again during the
	 * walk; those we keep go back in place with one nack at the end.
	 * A body too large to be a job is not read (it could be as large as
	 * the broker allows): its reason says so, and it is never requeued,
	 * since no worker would take it.
	 */
	for (;;) {
		r = amqp_basic_get(l->conn, AMQP_LINK_CHANNEL,
		    amqp_cstring_bytes(QUEUE_AMQP_DLQ), 0);
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			amqp_link_rpc_check(l, r, "basic.get " QUEUE_AMQP_DLQ,
			    err, errlen);
			if (l->last_code == AMQP_NOT_FOUND && !l->dead)
				return 0;	/* no dead letters yet */
			return -1;
		}
		if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
			break;
		if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) {
			amqp_link_fail(l, "unexpected reply to basic.get");
			snprintf(err, errlen, "amqp: %s", l->why);
			return -1;
		}
		ok = r.reply.decoded;
		d = amqp_delivery_new();
		d->tag = ok->delivery_tag;
		if (amqp_link_read_content(l, d, AMQP_LINK_BODY_MAX, err,
		    errlen) == -1) {
			amqp_delivery_free(d);
			return -1;
		}
		queue_amqp_dl_origin(&d->headers, reason, sizeof(reason),
		    queue, sizeof(queue));
		if (d->unread)
			queue_amqp_too_large(reason, sizeof(reason), d->len);
		id[0] = '\0';
		if (!d->unread)
			queue_amqp_body_id(d->body, d->len, id, sizeof(id));
		if (id[0] == '\0')
			strlcpy(id, d->message_id, sizeof(id));
		match = match_id == NULL || strcmp(match_id, id) == 0;

		memset(&lt, 0, sizeof(lt));
		lt.id = lt.job_id = id[0] != '\0' ? id : NULL;
		if (!d->unread) {
			lt.body = d->body;
			lt.bodylen = d->len;
		}
		lt.queue = queue[0] != '\0' ? queue : NULL;
		lt.reason = reason[0] != '\0' ? reason : NULL;
		if (op == QUEUE_DLQ_DELETE && match) {
			if (amqp_link_ack(l, d->tag, 0) == -1) {
				snprintf(err, errlen, "amqp: %s", l->why);
				goto fail;
			}
			lt.deleted = 1;
		} else if (requeue && match && !d->unread && lt.queue != NULL) {
			if (queue_amqp_letter_requeue(qa, l, d, &lt, ebuf,
			    sizeof(ebuf), err, errlen) == -1)
				goto fail;
		} else {
			if (requeue && match) {
				snprintf(kept, sizeof(kept), "%s not "
				    "requeued: %s", lt.job_id != NULL ?
				    lt.job_id : "-", d->unread ? reason :
				    "it names no queue");
				lt.kept = kept;
			}
			held = 1;
		}
		if (cb != NULL && match)
			cb(arg, &lt);
		amqp_delivery_free(d);
		amqp_maybe_release_buffers(l->conn);
	}
	if (held && amqp_link_nack(l, 0, 1, 1) == -1) {
		snprintf(err, errlen, "amqp: %s", l->why);
		return -1;
	}
	return 0;
fail:
	amqp_delivery_free(d);
	/* The broker puts back what we held when the channel goes. */
	if (held && !l->dead)
		amqp_link_nack(l, 0, 1, 1);
	return -1;
}

int
queue_amqp_trim(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	/* The broker forgets a message once it is acknowledged. */
	return 0;
}

void
queue_amqp_admin_clear(struct queue_admin *qa)
{
	queue_amqp_admin_drop(qa);
	free(qa->priv);
	qa->priv = NULL;
}

enum queue_orphan_plan
queue_amqp_orphaned(struct scoreboard *sb, const struct queue_orphan *o)
{
	/*
	 * The broker has the job back already, and may hand it to another
	 * worker before Redis has this one's progress: the workers here
	 * find the cursor in the segment, the other instances in Redis once
	 * the requeue child has saved it and cleared the dead worker's name
	 * from the checkpoint's holder, which they wait for.  Even without a
	 * cursor, the holder must be cleared.
	 */
	if (o->has_job != 1)
		return QUEUE_ORPHAN_NONE;
	if (o->cursor.set)
		sb_orphan_add(sb, o->job.job_id, &o->cursor);
	return QUEUE_ORPHAN_CURSOR;
}

int
queue_amqp_give_back_consumer(redisContext *c, const struct config *cfg,
    const char *queue, const char *consumer, const char *reason, char *err,
    size_t errlen)
{
	/* Nothing waits under a consumer: the broker took back its messages. */
	return 0;
}
