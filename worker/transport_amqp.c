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
 *
 * A flush costs a few system calls, not a few per message: on plain TCP
 * the frames of the whole batch (the publish method, encoded once; each
 * content header; the bodies, rendered into the transport's buffer or
 * copied there by send()) go out in large writes, and the confirms come
 * back as a few basic.ack frames that each answer for many messages
 * (multiple).  Through TLS the library writes each message.
 */
#include <sys/uio.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "amqp_link.h"
#include "log.h"
#include "mime.h"
#include "render.h"
#include "transport.h"
#include "util.h"

/* A frame's header (type, channel, size) and its end octet. */
#define TRANSPORT_AMQP_FRAME_HDR	7
#define TRANSPORT_AMQP_FRAME_OVERHEAD	(TRANSPORT_AMQP_FRAME_HDR + 1)
/* A content header frame's fields before the properties. */
#define TRANSPORT_AMQP_CONTENT_HDR	12
/* The properties but for the three strings, with room to spare. */
#define TRANSPORT_AMQP_PROPS_MAX	160
#define TRANSPORT_AMQP_SHORTSTR_MAX	255

/*
 * A queued message: its body in msgs (rendered there, or copied), its
 * strings in strs, both of which move as they grow: offsets until the
 * flush.
 */
struct transport_amqp_msg {
	struct email e;
	size_t data_off;
	size_t str_off;			/* rcpt, message_id, job_id */
	size_t lr, lm, lj;		/* their sizes, with the NULs */
};

/*
 * Everything a flush needs is kept and reused, growing to the largest
 * batch seen: a batch of a known size costs no allocation.
 */
struct transport {
	const struct config *cfg;
	struct amqp_link *link;
	struct transport_amqp_msg *q;
	size_t n, cap;
	struct rbuf msgs;		/* the queued messages' bodies */
	struct rbuf strs;		/* and their strings */
	unsigned char *frames;		/* content headers, frame edges */
	size_t fcap;
	struct iovec *iov;
	size_t iovcap;
	uint8_t *state, *returned;	/* per message, for the confirms */
	const char **ids;
	size_t scap;
	/* The basic.publish method frame, the same for every message. */
	unsigned char method[TRANSPORT_AMQP_FRAME_OVERHEAD + 4 + 2 +
	    2 * (1 + TRANSPORT_AMQP_SHORTSTR_MAX) + 1];
	size_t method_len;
};

static const unsigned char transport_amqp_frame_end = AMQP_FRAME_END;

static void
transport_amqp_frame_hdr(unsigned char *p, uint8_t type, uint32_t size)
{
	p[0] = type;
	p[1] = (AMQP_LINK_CHANNEL >> 8) & 0xff;
	p[2] = AMQP_LINK_CHANNEL & 0xff;
	p[3] = (size >> 24) & 0xff;
	p[4] = (size >> 16) & 0xff;
	p[5] = (size >> 8) & 0xff;
	p[6] = size & 0xff;
}

/* Encode the publish method once: exchange and routing key never change. */
static int
transport_amqp_method(struct transport *t, char *err, size_t errlen)
{
	amqp_basic_publish_t m;
	amqp_bytes_t b;
	unsigned char *p = t->method;
	int len;

	memset(&m, 0, sizeof(m));
	m.exchange = amqp_cstring_bytes(t->cfg->amqp_out.exchange);
	m.routing_key = amqp_cstring_bytes(t->cfg->amqp_out.routing_key);
	m.mandatory = 1;
	if (m.exchange.len > TRANSPORT_AMQP_SHORTSTR_MAX ||
	    m.routing_key.len > TRANSPORT_AMQP_SHORTSTR_MAX) {
		snprintf(err, errlen, "[amqp_out] exchange and routing_key "
		    "are at most %d bytes", TRANSPORT_AMQP_SHORTSTR_MAX);
		return -1;
	}
	b.bytes = p + TRANSPORT_AMQP_FRAME_HDR + 4;
	b.len = sizeof(t->method) - TRANSPORT_AMQP_FRAME_OVERHEAD - 4;
	if ((len = amqp_encode_method(AMQP_BASIC_PUBLISH_METHOD, &m, b)) < 0) {
		snprintf(err, errlen, "amqp: cannot encode basic.publish: %s",
		    amqp_error_string2(len));
		return -1;
	}
	len += 4;
	transport_amqp_frame_hdr(p, AMQP_FRAME_METHOD, (uint32_t)len);
	p += TRANSPORT_AMQP_FRAME_HDR;
	p[0] = (AMQP_BASIC_PUBLISH_METHOD >> 24) & 0xff;
	p[1] = (AMQP_BASIC_PUBLISH_METHOD >> 16) & 0xff;
	p[2] = (AMQP_BASIC_PUBLISH_METHOD >> 8) & 0xff;
	p[3] = AMQP_BASIC_PUBLISH_METHOD & 0xff;
	p[len] = AMQP_FRAME_END;
	t->method_len = TRANSPORT_AMQP_FRAME_OVERHEAD + (size_t)len;
	return 0;
}

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
	if (transport_amqp_method(t, err, errlen) == -1) {
		free(t);
		return NULL;
	}
	return t;
}

/* The buffer the next message may be rendered into, to be sent from. */
static struct rbuf *
transport_amqp_buffer(struct transport *t)
{
	return &t->msgs;
}

static int
transport_amqp_send(struct transport *t, const struct email *e)
{
	struct transport_amqp_msg *m;
	uintptr_t d = (uintptr_t)e->data, b = (uintptr_t)t->msgs.p;
	size_t lr, lm, lj;

	lr = strlen(e->rcpt) + 1;
	lm = strlen(e->message_id) + 1;
	lj = strlen(e->job_id) + 1;
	/* The message_id property is a short string. */
	if (lm - 1 > TRANSPORT_AMQP_SHORTSTR_MAX) {
		log_warnx("amqp: Message-ID %.40s... is over %d bytes",
		    e->message_id, TRANSPORT_AMQP_SHORTSTR_MAX);
		return -1;
	}
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->q = wrealloc(t->q, t->cap * sizeof(*t->q));
	}
	m = &t->q[t->n++];
	m->e = *e;
	/* Rendered into transport_amqp_buffer: it is in place already. */
	if (b != 0 && e->len <= t->msgs.len &&
	    d == b + (t->msgs.len - e->len))
		m->data_off = t->msgs.len - e->len;
	else if (b != 0 && d >= b && d + e->len <= b + t->msgs.len) {
		/* Elsewhere in it: growing it may move the source. */
		d -= b;
		rbuf_reserve(&t->msgs, e->len);
		m->data_off = t->msgs.len;
		memmove(t->msgs.p + t->msgs.len, t->msgs.p + d, e->len);
		t->msgs.len += e->len;
		t->msgs.p[t->msgs.len] = '\0';
	} else {
		m->data_off = t->msgs.len;
		rbuf_add(&t->msgs, e->data, e->len);
	}
	m->str_off = t->strs.len;
	m->lr = lr;
	m->lm = lm;
	m->lj = lj;
	rbuf_add(&t->strs, e->rcpt, lr);
	rbuf_add(&t->strs, e->message_id, lm);
	rbuf_add(&t->strs, e->job_id, lj);
	return 0;
}

static void
transport_amqp_clear(struct transport *t)
{
	t->n = 0;
	t->msgs.len = 0;
	t->strs.len = 0;
	if (t->msgs.p != NULL)
		t->msgs.p[0] = '\0';
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
transport_amqp_header(amqp_table_entry_t *h, const char *key, const char *val,
    size_t len)
{
	h->key = amqp_cstring_bytes(key);
	h->value.kind = AMQP_FIELD_KIND_UTF8;
	h->value.value.bytes.bytes = (void *)(uintptr_t)val;
	h->value.value.bytes.len = len;
}

/* The properties of m, whose strings point into strs. */
static void
transport_amqp_props(amqp_basic_properties_t *p, amqp_table_entry_t *h,
    const struct transport_amqp_msg *m, uint64_t ts)
{
	memset(p, 0, sizeof(*p));
	p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
	    AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
	    AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
	p->content_type.bytes = "message/rfc822";
	p->content_type.len = sizeof("message/rfc822") - 1;
	p->delivery_mode = AMQP_DELIVERY_PERSISTENT;
	p->message_id.bytes = (void *)(uintptr_t)m->e.message_id;
	p->message_id.len = m->lm - 1;
	p->timestamp = ts;
	transport_amqp_header(&h[0], "x-digest-rcpt", m->e.rcpt, m->lr - 1);
	transport_amqp_header(&h[1], "x-digest-job", m->e.job_id, m->lj - 1);
	p->headers.num_entries = 2;
	p->headers.entries = h;
}

static void
transport_amqp_grow(void **pp, size_t *cap, size_t want, size_t size)
{
	if (*cap >= want)
		return;
	while (*cap < want)
		*cap = *cap ? *cap * 2 : 64;
	*pp = wrealloc(*pp, *cap * size);
}

/*
 * Lay out every queued message as its three frames (or more, for a body
 * over the frame size) in t->iov: the shared method frame, the content
 * header encoded into t->frames, the body from msgs.  0, or -1 when a
 * message's properties cannot be encoded.
 */
static int
transport_amqp_frames(struct transport *t, uint64_t ts, size_t *niov,
    char *err, size_t errlen)
{
	struct transport_amqp_msg *m;
	amqp_basic_properties_t p;
	amqp_table_entry_t h[2];
	amqp_bytes_t b;
	unsigned char *f;
	size_t i, fmax, chunk, nf, need = 0, iovs = 0, off, left, fo = 0;
	int len, fm;

	fm = amqp_get_frame_max(t->link->conn);
	fmax = fm > TRANSPORT_AMQP_FRAME_OVERHEAD ?
	    (size_t)fm - TRANSPORT_AMQP_FRAME_OVERHEAD : SIZE_MAX;
	for (i = 0; i < t->n; i++) {
		m = &t->q[i];
		nf = m->e.len == 0 ? 0 : (m->e.len + fmax - 1) / fmax;
		need += TRANSPORT_AMQP_FRAME_OVERHEAD +
		    TRANSPORT_AMQP_CONTENT_HDR + TRANSPORT_AMQP_PROPS_MAX +
		    m->lr + m->lm + m->lj + nf * TRANSPORT_AMQP_FRAME_OVERHEAD;
		iovs += 2 + 2 * nf;
	}
	transport_amqp_grow((void **)&t->frames, &t->fcap, need, 1);
	transport_amqp_grow((void **)&t->iov, &t->iovcap, iovs,
	    sizeof(*t->iov));

	*niov = 0;
	for (i = 0; i < t->n; i++) {
		m = &t->q[i];
		t->iov[(*niov)++] = (struct iovec){ t->method, t->method_len };
		f = t->frames + fo;
		transport_amqp_props(&p, h, m, ts);
		b.bytes = f + TRANSPORT_AMQP_FRAME_HDR +
		    TRANSPORT_AMQP_CONTENT_HDR;
		b.len = need - fo - TRANSPORT_AMQP_FRAME_OVERHEAD -
		    TRANSPORT_AMQP_CONTENT_HDR;
		if ((len = amqp_encode_properties(AMQP_BASIC_CLASS, &p, b)) <
		    0) {
			snprintf(err, errlen, "amqp: cannot encode the "
			    "properties of %s: %s", m->e.message_id,
			    amqp_error_string2(len));
			return -1;
		}
		len += TRANSPORT_AMQP_CONTENT_HDR;
		transport_amqp_frame_hdr(f, AMQP_FRAME_HEADER, (uint32_t)len);
		f += TRANSPORT_AMQP_FRAME_HDR;
		f[0] = (AMQP_BASIC_CLASS >> 8) & 0xff;
		f[1] = AMQP_BASIC_CLASS & 0xff;
		f[2] = f[3] = 0;		/* weight */
		f[4] = (uint64_t)m->e.len >> 56;
		f[5] = ((uint64_t)m->e.len >> 48) & 0xff;
		f[6] = ((uint64_t)m->e.len >> 40) & 0xff;
		f[7] = ((uint64_t)m->e.len >> 32) & 0xff;
		f[8] = (m->e.len >> 24) & 0xff;
		f[9] = (m->e.len >> 16) & 0xff;
		f[10] = (m->e.len >> 8) & 0xff;
		f[11] = m->e.len & 0xff;
		f[len] = AMQP_FRAME_END;
		f += len + 1;
		/* Each body frame's header follows the frame before it. */
		for (off = 0; off < m->e.len; off += chunk) {
			left = m->e.len - off;
			chunk = left < fmax ? left : fmax;
			if (off > 0) {
				*f++ = AMQP_FRAME_END;
				t->iov[(*niov)++] = (struct iovec){ f - 1,
				    TRANSPORT_AMQP_FRAME_OVERHEAD };
			}
			transport_amqp_frame_hdr(f, AMQP_FRAME_BODY,
			    (uint32_t)chunk);
			if (off == 0)
				t->iov[(*niov)++] = (struct iovec){
				    t->frames + fo, (size_t)(f - t->frames -
				    fo) + TRANSPORT_AMQP_FRAME_HDR };
			f += TRANSPORT_AMQP_FRAME_HDR;
			t->iov[(*niov)++] = (struct iovec){
			    (char *)(uintptr_t)m->e.data + off, chunk };
		}
		if (m->e.len == 0)
			t->iov[(*niov)++] = (struct iovec){ t->frames + fo,
			    (size_t)(f - t->frames - fo) };
		else
			t->iov[(*niov)++] = (struct iovec){
			    (void *)(uintptr_t)&transport_amqp_frame_end, 1 };
		fo = (size_t)(f - t->frames);
	}
	return 0;
}
/*
 * Through TLS the library writes each frame: one publish after the other
 * (a few system calls each).
 */
static int
transport_amqp_publish_each(struct transport *t, uint64_t ts, char *err,
    size_t errlen)
{
	amqp_basic_properties_t p;
	amqp_table_entry_t h[2];
	size_t i;

	for (i = 0; i < t->n; i++) {
		transport_amqp_props(&p, h, &t->q[i], ts);
		if (amqp_link_publish(t->link, t->cfg->amqp_out.exchange,
		    t->cfg->amqp_out.routing_key, 1, &p, t->q[i].e.data,
		    t->q[i].e.len, NULL, err, errlen) == -1)
			return -1;
	}
	return 0;
}

static int
transport_amqp_flush(struct transport *t, transport_result_cb cb, void *arg,
    char *err, size_t errlen)
{
	struct amqp_confirm_set set;
	struct transport_amqp_msg *m;
	uint64_t ts;
	size_t i, niov, outcomes = 0;
	char *a;
	int rc = -1;

	if (t->n == 0)
		return 0;
	if (transport_amqp_connect(t, err, errlen) == -1)
		goto done;

	if (t->scap < t->n) {
		transport_amqp_grow((void **)&t->state, &t->scap, t->n, 1);
		t->returned = wrealloc(t->returned, t->scap);
		t->ids = wrealloc(t->ids, t->scap * sizeof(*t->ids));
	}
	memset(t->state, 0, t->n);
	memset(t->returned, 0, t->n);
	for (i = 0; i < t->n; i++) {
		m = &t->q[i];
		a = t->strs.p + m->str_off;
		m->e.rcpt = a;
		m->e.message_id = a + m->lr;
		m->e.job_id = a + m->lr + m->lm;
		m->e.data = t->msgs.p + m->data_off;
		t->ids[i] = m->e.message_id;
	}

	/*
	 * The whole batch goes out, numbered from the channel's next
	 * sequence number, then the broker's confirms are read, one
	 * basic.ack (multiple) often answering for many messages.
	 */
	memset(&set, 0, sizeof(set));
	set.first = t->link->next_seq;
	set.n = t->n;
	set.state = t->state;
	set.returned = t->returned;
	set.ids = t->ids;
	set.pending = t->n;
	ts = (uint64_t)now_real();
	if (!t->link->tls) {
		if (transport_amqp_frames(t, ts, &niov, err, errlen) == -1)
			goto done;
		t->link->next_seq += t->n;
		t->link->waiting = &set;
		rc = amqp_link_write_frames(t->link, t->iov, (int)niov,
		    AMQP_LINK_CONFIRM_TIMEOUT_MS, err, errlen);
		t->link->waiting = NULL;
	} else
		rc = transport_amqp_publish_each(t, ts, err, errlen);
	if (rc == 0)
		amqp_link_wait_confirms(t->link, &set,
		    AMQP_LINK_CONFIRM_TIMEOUT_MS, err, errlen);
	rc = -1;

	for (i = 0; i < t->n; i++) {
		m = &t->q[i];
		if (t->state[i] == AMQP_CONFIRM_PENDING)
			continue;	/* no answer: no outcome */
		outcomes++;
		if (t->returned[i])
			cb(arg, &m->e, TP_DEFERRED, "unroutable: no queue "
			    "bound to the exchange for the routing key");
		else if (t->state[i] == AMQP_CONFIRM_NACK)
			cb(arg, &m->e, TP_DEFERRED,
			    "refused by the broker (nack)");
		else
			cb(arg, &m->e, TP_SENT, NULL);
	}
	/* Fewer outcomes only when the publish or the wait failed, with err. */
	if (outcomes == t->n)
		rc = 0;
done:
	transport_amqp_clear(t);
	return rc;
}

static void
transport_amqp_close(struct transport *t)
{
	if (t == NULL)
		return;
	free(t->q);
	rbuf_free(&t->msgs);
	rbuf_free(&t->strs);
	free(t->frames);
	free(t->iov);
	free(t->state);
	free(t->returned);
	free(t->ids);
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
	.buffer = transport_amqp_buffer,
	.close = transport_amqp_close,
};
