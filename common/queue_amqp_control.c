/*
 * The AMQP backend, the operator's controls (queue.h): purging a queue
 * (queue.purge: the broker drops the ready messages, never those a
 * consumer holds unacknowledged) and removing the waiting jobs of a
 * cancelled run.
 *
 * AMQP 0-9-1 cannot delete one message in the middle of a queue, so the
 * removal takes the waiting messages with basic.get, one by one and
 * unacknowledged (the broker hands none of them out again meanwhile),
 * acknowledges those of the run, and puts the others back with one nack,
 * which returns them to their place in the queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "queue_amqp.h"
#include "util.h"

int64_t
queue_amqp_purge(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	amqp_queue_purge_ok_t *ok;
	struct amqp_link *l;
	char qname[QUEUE_AMQP_QNAME_MAX];

	if (queue_amqp_qname(qname, sizeof(qname), queue, err, errlen) == -1)
		return -1;
	if ((l = queue_amqp_admin_link(qa, queue, err, errlen)) == NULL)
		return -1;
	ok = amqp_queue_purge(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(qname));
	if (amqp_link_rpc_ok(l, "queue.purge", err, errlen) == -1 ||
	    ok == NULL) {
		queue_amqp_admin_drop(qa);
		return -1;
	}
	return ok->message_count;
}

int64_t
queue_amqp_remove_run(struct queue_admin *qa, const char *queue,
    const char *period, int64_t window_end, queue_job_cb cb, void *arg,
    char *err, size_t errlen)
{
	struct amqp_delivery *d;
	struct amqp_link *l;
	amqp_rpc_reply_t r;
	amqp_basic_get_ok_t *ok;
	struct job j;
	char qname[QUEUE_AMQP_QNAME_MAX], why[256];
	int64_t n = 0;
	uint64_t tag;
	int held = 0, ours;

	if (queue_amqp_qname(qname, sizeof(qname), queue, err, errlen) == -1)
		return -1;
	if ((l = queue_amqp_admin_link(qa, queue, err, errlen)) == NULL)
		return -1;
	for (;;) {
		r = amqp_basic_get(l->conn, AMQP_LINK_CHANNEL,
		    amqp_cstring_bytes(qname), 0);
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			amqp_link_rpc_check(l, r, "basic.get", err, errlen);
			goto fail;
		}
		if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
			break;
		if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) {
			amqp_link_fail(l, "unexpected reply to basic.get");
			snprintf(err, errlen, "amqp: %s", l->why);
			goto fail;
		}
		ok = r.reply.decoded;
		d = amqp_delivery_new();
		tag = d->tag = ok->delivery_tag;
		if (amqp_link_read_content(l, d, AMQP_LINK_BODY_MAX, err,
		    errlen) == -1) {
			amqp_delivery_free(d);
			goto fail;
		}
		ours = !d->unread && job_decode_json(&j, d->body, d->len, why,
		    sizeof(why)) == 0 && strcmp(j.period, period) == 0 &&
		    j.window_end == window_end;
		amqp_delivery_free(d);
		amqp_maybe_release_buffers(l->conn);
		if (!ours) {
			held = 1;
			continue;
		}
		if (amqp_link_ack(l, tag, 0) == -1) {
			snprintf(err, errlen, "amqp: %s", l->why);
			goto fail;
		}
		n++;
		if (cb != NULL)
			cb(arg, &j);
	}
	if (held && amqp_link_nack(l, 0, 1, 1) == -1) {
		snprintf(err, errlen, "amqp: %s", l->why);
		goto fail;
	}
	return n;
fail:
	/* The broker puts back what we held when the connection goes. */
	queue_amqp_admin_drop(qa);
	return -1;
}
