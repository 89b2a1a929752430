/*
 * The AMQP transport (transport.type = amqp): each rendered email is
 * published to amqp_out.exchange (declared durable, type direct) with
 * amqp_out.routing_key, as a persistent message/rfc822 whose message_id is
 * the Message-ID and whose headers name the recipient and the job.
 *
 * Publishes are mandatory and the channel is in confirm mode: flush()
 * publishes the whole batch, then waits for the broker's answer to each
 * message.  basic.ack means sent; basic.nack, or a basic.return (no queue
 * bound for the routing key) before the ack, means deferred: the job is
 * retried and the message is not counted as sent.  The connection stays
 * open across batches and jobs, and is opened again when it was lost.
 * It is a connection of its own, apart from the queue consumer's: the
 * broker throttles publishers by blocking their connection, which must
 * never hold up the consumer's acknowledgements and heartbeats.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "amqp_link.h"
#include "log.h"
#include "transport.h"
#include "util.h"

struct transport_amqp_msg {
	struct email e;
	char *buf;			/* rcpt, message_id, job_id, data */
};

struct transport {
	const struct config *cfg;
	struct amqp_link *link;
	struct transport_amqp_msg *q;
	size_t n, cap;
};

static struct transport *
transport_amqp_open(const struct config *cfg, char *err, size_t errlen)
{
	struct transport *t;

	if (cfg->amqp_out.exchange[0] == '\0') {
		snprintf(err, errlen, "[amqp_out] exchange is empty");
		return NULL;
	}
	t = wcalloc(1, sizeof(*t));
	t->cfg = cfg;
	return t;
}

static int
transport_amqp_send(struct transport *t, const struct email *e)
{
	struct transport_amqp_msg *m;
	size_t lr, lm, lj;
	char *p;

	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->q = wrealloc(t->q, t->cap * sizeof(*t->q));
	}
	lr = strlen(e->rcpt) + 1;
	lm = strlen(e->message_id) + 1;
	lj = strlen(e->job_id) + 1;
	m = &t->q[t->n++];
	m->buf = p = wmalloc(lr + lm + lj + e->len + 1);
	m->e = *e;
	m->e.rcpt = memcpy(p, e->rcpt, lr);
	m->e.message_id = memcpy(p + lr, e->message_id, lm);
	m->e.job_id = memcpy(p + lr + lm, e->job_id, lj);
	memcpy(p + lr + lm + lj, e->data, e->len);
	p[lr + lm + lj + e->len] = '\0';
	m->e.data = p + lr + lm + lj;
	return 0;
}

static void
transport_amqp_clear(struct transport *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		free(t->q[i].buf);
	t->n = 0;
}

/* A live connection with the exchange declared and confirms on. */
static int
transport_amqp_connect(struct transport *t, char *err, size_t errlen)
{
	char name[128];

	/*
	 * Between jobs nobody reads this connection: a close by the broker
	 * (a restart, missed heartbeats while idle) shows only now.
	 */
	if (t->link != NULL && !t->link->dead)
		amqp_link_pump(t->link, 0, err, errlen);
	if (t->link != NULL && !t->link->dead)
		return 0;
	amqp_link_close(t->link);
	snprintf(name, sizeof(name), "digestd transport pid=%d", (int)getpid());
	/*
	 * No AMQP heartbeats on this connection: between jobs nothing reads
	 * or writes it (librabbitmq services heartbeats only inside its
	 * calls), so the broker would close it after two intervals and every
	 * idle spell would cost a reconnect.  TCP keepalive finds a dead
	 * peer instead, and a confirm that never comes fails the flush.
	 */
	t->link = amqp_link_connect(t->cfg->amqp.url, t->cfg->amqp.ca_file, 0,
	    name, err, errlen);
	if (t->link == NULL)
		return -1;
	amqp_exchange_declare(t->link->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(t->cfg->amqp_out.exchange),
	    amqp_cstring_bytes("direct"), 0, 1, 0, 0, amqp_empty_table);
	if (amqp_link_rpc_ok(t->link, "declare exchange", err, errlen) == -1 ||
	    amqp_link_confirm_select(t->link, err, errlen) == -1) {
		amqp_link_close(t->link);
		t->link = NULL;
		return -1;
	}
	return 0;
}

static void
transport_amqp_header(amqp_table_entry_t *h, const char *key, const char *val)
{
	h->key = amqp_cstring_bytes(key);
	h->value.kind = AMQP_FIELD_KIND_UTF8;
	h->value.value.bytes = amqp_cstring_bytes(val);
}

static int
transport_amqp_flush(struct transport *t, transport_result_cb cb, void *arg,
    char *err, size_t errlen)
{
	struct amqp_confirm_set set;
	struct transport_amqp_msg *m;
	amqp_basic_properties_t p;
	amqp_table_entry_t h[2];
	const char **ids = NULL;
	uint8_t *state = NULL, *returned = NULL;
	uint64_t seq;
	size_t i, published = 0, outcomes = 0;
	int rc = -1;

	if (t->n == 0)
		return 0;
	if (transport_amqp_connect(t, err, errlen) == -1)
		goto done;

	state = wcalloc(t->n, 1);
	returned = wcalloc(t->n, 1);
	ids = wcalloc(t->n, sizeof(*ids));
	memset(&set, 0, sizeof(set));
	for (i = 0; i < t->n; i++) {
		m = &t->q[i];
		memset(&p, 0, sizeof(p));
		p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
		    AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
		    AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
		p.content_type = amqp_cstring_bytes("message/rfc822");
		p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
		p.message_id = amqp_cstring_bytes(m->e.message_id);
		p.timestamp = (uint64_t)now_real();
		transport_amqp_header(&h[0], "x-digest-rcpt", m->e.rcpt);
		transport_amqp_header(&h[1], "x-digest-job", m->e.job_id);
		p.headers.num_entries = 2;
		p.headers.entries = h;
		if (amqp_link_publish(t->link, t->cfg->amqp_out.exchange,
		    t->cfg->amqp_out.routing_key, 1, &p, m->e.data, m->e.len,
		    &seq, err, errlen) == -1)
			break;
		if (i == 0)
			set.first = seq;
		ids[i] = m->e.message_id;
		published++;
	}
	set.n = published;
	set.state = state;
	set.returned = returned;
	set.ids = ids;
	set.pending = published;
	if (published > 0)
		amqp_link_wait_confirms(t->link, &set,
		    AMQP_LINK_CONFIRM_TIMEOUT_MS, err, errlen);

	for (i = 0; i < published; i++) {
		m = &t->q[i];
		if (state[i] == AMQP_CONFIRM_PENDING)
			continue;	/* no answer: no outcome */
		outcomes++;
		if (returned[i])
			cb(arg, &m->e, TP_DEFERRED, "unroutable: no queue "
			    "bound to the exchange for the routing key");
		else if (state[i] == AMQP_CONFIRM_NACK)
			cb(arg, &m->e, TP_DEFERRED,
			    "refused by the broker (nack)");
		else
			cb(arg, &m->e, TP_SENT, NULL);
	}
	/* Fewer outcomes only when the publish or the wait failed, with err. */
	if (outcomes == t->n)
		rc = 0;
done:
	free(state);
	free(returned);
	free(ids);
	transport_amqp_clear(t);
	return rc;
}

static void
transport_amqp_close(struct transport *t)
{
	if (t == NULL)
		return;
	transport_amqp_clear(t);
	free(t->q);
	amqp_link_close(t->link);
	free(t);
}

const struct transport_ops transport_amqp_ops = {
	.name = "amqp",
	.type = TRANSPORT_AMQP,
	.open = transport_amqp_open,
	.send = transport_amqp_send,
	.flush = transport_amqp_flush,
	/* No flush_max: a flush is one round of confirms, however long. */
	.close = transport_amqp_close,
};
