/*
 * Jobs on the AMQP backend (SPEC 4): the queues and the dead-letter
 * exchange, enqueueing with a publisher confirm, queue counts, and the
 * dead-letter walk behind `digestctl dlq`.  The worker's source
 * (worker/source_amqp.c) uses the same declarations and dead-letter
 * format, so that what one writes the other reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <jansson.h>

#include "amqp_link.h"
#include "jobq_amqp.h"
#include "log.h"
#include "util.h"

#define JOBQ_AMQP_DLX "digest.dlx"
#define JOBQ_AMQP_DLQ "digest.dlq"

static int
jobq_amqp_qname(char *buf, size_t len, const char *queue, char *err,
    size_t errlen)
{
	if ((size_t)snprintf(buf, len, "digest.%s", queue) >= len) {
		snprintf(err, errlen, "queue name too long: %s", queue);
		return -1;
	}
	return 0;
}

int
jobq_amqp_declare(struct amqp_link *l, const char *queue, char *err,
    size_t errlen)
{
	amqp_table_entry_t arg;
	amqp_table_t args, none;
	char qname[CONFIG_NAME_MAX + 16];

	if (l->dead) {
		snprintf(err, errlen, "amqp: %s", l->why);
		return -1;
	}
	if (jobq_amqp_qname(qname, sizeof(qname), queue, err, errlen) == -1)
		return -1;
	none = amqp_empty_table;

	/* fanout: whatever routing key a dead letter carries, it lands. */
	amqp_exchange_declare(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(JOBQ_AMQP_DLX), amqp_cstring_bytes("fanout"),
	    0, 1, 0, 0, none);
	if (amqp_link_rpc_ok(l, "declare " JOBQ_AMQP_DLX, err, errlen) == -1)
		return -1;
	amqp_queue_declare(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(JOBQ_AMQP_DLQ), 0, 1, 0, 0, none);
	if (amqp_link_rpc_ok(l, "declare " JOBQ_AMQP_DLQ, err, errlen) == -1)
		return -1;
	amqp_queue_bind(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(JOBQ_AMQP_DLQ),
	    amqp_cstring_bytes(JOBQ_AMQP_DLX), amqp_cstring_bytes(""), none);
	if (amqp_link_rpc_ok(l, "bind " JOBQ_AMQP_DLQ, err, errlen) == -1)
		return -1;

	arg.key = amqp_cstring_bytes("x-dead-letter-exchange");
	arg.value.kind = AMQP_FIELD_KIND_UTF8;
	arg.value.value.bytes = amqp_cstring_bytes(JOBQ_AMQP_DLX);
	args.num_entries = 1;
	args.entries = &arg;
	amqp_queue_declare(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(qname), 0, 1, 0, 0, args);
	return amqp_link_rpc_ok(l, "declare queue", err, errlen);
}

/* The properties of a job message: persistent JSON, id = job id. */
static void
jobq_amqp_props(amqp_basic_properties_t *p, const char *job_id,
    double enqueued_at)
{
	memset(p, 0, sizeof(*p));
	p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
	    AMQP_BASIC_DELIVERY_MODE_FLAG;
	p->content_type = amqp_cstring_bytes("application/json");
	p->delivery_mode = AMQP_DELIVERY_PERSISTENT;
	if (job_id != NULL && *job_id != '\0') {
		p->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
		p->message_id = amqp_cstring_bytes(job_id);
	}
	if (enqueued_at > 0) {
		p->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
		p->timestamp = (uint64_t)enqueued_at;
	}
}

int
jobq_amqp_enqueue(struct amqp_link *l, const char *queue, const struct job *j,
    char *err, size_t errlen)
{
	amqp_basic_properties_t p;
	char qname[CONFIG_NAME_MAX + 16];
	char *body;
	int rc;

	if (jobq_amqp_qname(qname, sizeof(qname), queue, err, errlen) == -1)
		return -1;
	if ((body = job_encode_json(j)) == NULL)
		worker_oom();
	jobq_amqp_props(&p, j->job_id, j->enqueued_at);
	/* mandatory: a missing queue is an error, not a silent drop. */
	rc = amqp_link_publish_confirmed(l, "", qname, 1, &p, body,
	    strlen(body), err, errlen);
	free(body);
	return rc;
}

/* Passive declare: the queue's ready count, 0 if it does not exist. */
static int
jobq_amqp_count(struct amqp_link *l, const char *qname, int64_t *count,
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
jobq_amqp_stats(struct amqp_link *l, const char *queue,
    struct jobq_amqp_stats *st, char *err, size_t errlen)
{
	char qname[CONFIG_NAME_MAX + 16];

	if (jobq_amqp_qname(qname, sizeof(qname), queue, err, errlen) == -1)
		return -1;
	/*
	 * AMQP 0-9-1 tells only the ready count; the unacknowledged count is
	 * in the management plugin, which digestd does not require.
	 */
	st->pending = -1;
	return jobq_amqp_count(l, qname, &st->depth, err, errlen);
}

int64_t
jobq_amqp_dlq_len(struct amqp_link *l, char *err, size_t errlen)
{
	int64_t n;

	if (jobq_amqp_count(l, JOBQ_AMQP_DLQ, &n, err, errlen) == -1)
		return -1;
	return n;
}

/*
 * The reason and queue of a dead letter: our own headers when digestd put
 * it there, else the broker's x-death record (reason "rejected",
 * "expired"...; queue digest.NAME).
 */
static void
jobq_amqp_dl_origin(const amqp_table_t *h, char *reason, size_t rlen,
    char *queue, size_t qlen)
{
	const amqp_field_value_t *v;
	const amqp_table_t *t;
	char q[CONFIG_NAME_MAX + 16];
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
jobq_amqp_body_id(const char *body, size_t len, char *id, size_t idlen)
{
	json_t *o, *v;

	id[0] = '\0';
	if ((o = json_loadb(body, len, 0, NULL)) == NULL)
		return;
	if ((v = json_object_get(o, "job_id")) != NULL && json_is_string(v))
		strlcpy(id, json_string_value(v), idlen);
	json_decref(o);
}

void
jobq_amqp_too_large(char *buf, size_t len, size_t size)
{
	snprintf(buf, len, "body too large (%zu bytes)", size);
}

int
jobq_amqp_dlq_walk(struct amqp_link *l, int requeue, const char *job_id,
    jobq_amqp_dlq_cb cb, void *arg, char *err, size_t errlen)
{
	struct jobq_amqp_letter lt;
	struct amqp_delivery *d;
	amqp_basic_properties_t p;
	amqp_rpc_reply_t r;
	amqp_basic_get_ok_t *ok;
	char reason[256], queue[CONFIG_NAME_MAX], qname[CONFIG_NAME_MAX + 16];
	char id[JOB_ID_MAX];
	int held = 0, n = 0, match;

	if (l->dead) {
		snprintf(err, errlen, "amqp: %s", l->why);
		return -1;
	}
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
		    amqp_cstring_bytes(JOBQ_AMQP_DLQ), 0);
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			amqp_link_rpc_check(l, r, "basic.get " JOBQ_AMQP_DLQ,
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
		if (amqp_link_read_content(l, d, JOBQ_AMQP_BODY_MAX, err,
		    errlen) == -1) {
			amqp_delivery_free(d);
			return -1;
		}
		jobq_amqp_dl_origin(&d->headers, reason, sizeof(reason), queue,
		    sizeof(queue));
		if (d->unread)
			jobq_amqp_too_large(reason, sizeof(reason), d->len);
		id[0] = '\0';
		if (!d->unread)
			jobq_amqp_body_id(d->body, d->len, id, sizeof(id));
		if (id[0] == '\0')
			strlcpy(id, d->message_id, sizeof(id));
		match = job_id == NULL || strcmp(job_id, id) == 0;

		memset(&lt, 0, sizeof(lt));
		lt.body = d->body;
		lt.len = d->len;
		lt.job_id = id;
		lt.reason = reason;
		lt.queue = queue;
		if (requeue && match && !d->unread && queue[0] != '\0') {
			/* The queue may be gone: declaring is idempotent. */
			if (jobq_amqp_qname(qname, sizeof(qname), queue, err,
			    errlen) == -1 ||
			    jobq_amqp_declare(l, queue, err, errlen) == -1)
				goto fail;
			jobq_amqp_props(&p, id, now_real());
			if (amqp_link_publish_confirmed(l, "", qname, 1, &p,
			    d->body, d->len, err, errlen) == -1)
				goto fail;
			if (amqp_link_ack(l, d->tag, 0) == -1) {
				snprintf(err, errlen, "amqp: %s", l->why);
				goto fail;
			}
			lt.requeued = 1;
			if (cb != NULL)
				cb(arg, &lt);
			n++;
		} else {
			if (cb != NULL && (!requeue || match))
				cb(arg, &lt);
			if (!requeue)
				n++;
			held = 1;
		}
		amqp_delivery_free(d);
		amqp_maybe_release_buffers(l->conn);
	}
	if (held && amqp_link_nack(l, 0, 1, 1) == -1) {
		snprintf(err, errlen, "amqp: %s", l->why);
		return -1;
	}
	return n;
fail:
	amqp_delivery_free(d);
	/* The broker puts back what we held when the channel goes. */
	if (held && !l->dead)
		amqp_link_nack(l, 0, 1, 1);
	return -1;
}
