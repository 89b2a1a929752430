/*
 * The AMQP queue source (queue.backend = amqp): one connection per worker
 * for its whole life, consuming digest.{queue} with manual acknowledgement
 * and basic.qos(prefetch).
 *
 * A message that is never acknowledged goes back to its queue when the
 * connection closes, which is how a killed worker's job is redelivered.
 * Giving a job back (retry) publishes a copy at the tail of the queue and
 * acknowledges the original, as the Redis backend does; a dead letter is
 * published to digest.dlx with the reason, attempts and queue in headers,
 * then the original is acknowledged.  Both publishes wait for the
 * broker's confirm first, so a job is never in neither place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "amqp_link.h"
#include "delayq.h"
#include "jobq_amqp.h"
#include "log.h"
#include "source.h"
#include "util.h"

struct source_amqp {
	struct amqp_link *link;
	char qname[CONFIG_NAME_MAX + 16];
};

/* What a delivered message keeps: the connection it came on, its body. */
struct source_amqp_raw {
	uint64_t gen;
	size_t len;
	char body[];
};

static void
source_amqp_drop(struct source_amqp *sa)
{
	amqp_link_close(sa->link);
	sa->link = NULL;
}

static int
source_amqp_open(struct source *s, char *err, size_t errlen)
{
	struct source_amqp *sa = s->priv;
	char name[256];

	if (sa == NULL)
		sa = s->priv = wcalloc(1, sizeof(*sa));
	source_amqp_drop(sa);
	snprintf(sa->qname, sizeof(sa->qname), "digest.%s", s->queue);
	snprintf(name, sizeof(name), "digestd worker %s pid=%d", s->consumer,
	    (int)getpid());
	sa->link = amqp_link_connect(s->cfg->amqp.url,
	    s->cfg->amqp.heartbeat_ms, name, err, errlen);
	if (sa->link == NULL)
		return -1;
	if (jobq_amqp_declare(sa->link, s->queue, err, errlen) == -1)
		goto fail;
	if (amqp_link_confirm_select(sa->link, err, errlen) == -1)
		goto fail;
	amqp_basic_qos(sa->link->conn, AMQP_LINK_CHANNEL, 0,
	    (uint16_t)(s->cfg->amqp.prefetch > 0 ? s->cfg->amqp.prefetch : 1),
	    0);
	if (amqp_link_rpc_ok(sa->link, "basic.qos", err, errlen) == -1)
		goto fail;
	amqp_basic_consume(sa->link->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(sa->qname), amqp_cstring_bytes(s->consumer), 0,
	    0, 0, amqp_empty_table);
	if (amqp_link_rpc_ok(sa->link, "basic.consume", err, errlen) == -1)
		goto fail;
	log_info("amqp consuming %s (heartbeat %ds, prefetch %d)", sa->qname,
	    sa->link->heartbeat_s, s->cfg->amqp.prefetch);
	return 0;
fail:
	source_amqp_drop(sa);
	return -1;
}

static int
source_amqp_dead(struct source_amqp *sa, char *err, size_t errlen)
{
	snprintf(err, errlen, "amqp: %s",
	    sa == NULL || sa->link == NULL ? "not connected" : sa->link->why);
	return -1;
}

static int
source_amqp_fetch(struct source *s, struct source_msg *m, int timeout_ms,
    char *err, size_t errlen)
{
	struct source_amqp *sa = s->priv;
	struct source_amqp_raw *raw;
	struct amqp_delivery *d;

	if (sa == NULL || sa->link == NULL || sa->link->dead)
		return source_amqp_dead(sa, err, errlen);
	if ((d = amqp_link_take(sa->link)) == NULL) {
		if (amqp_link_pump(sa->link, timeout_ms, err, errlen) == -1)
			return -1;
		if ((d = amqp_link_take(sa->link)) == NULL)
			return 0;
	}

	memset(m, 0, sizeof(*m));
	m->tag = d->tag;
	m->redelivered = d->redelivered;
	snprintf(m->entry, sizeof(m->entry), "%llu",
	    (unsigned long long)d->tag);
	raw = wmalloc(sizeof(*raw) + d->len + 1);
	raw->gen = sa->link->gen;
	raw->len = d->len;
	memcpy(raw->body, d->body, d->len + 1);
	m->raw = raw;
	m->rawlen = d->len;
	if (job_decode_json(&m->job, d->body, d->len, m->err,
	    sizeof(m->err)) == 0 &&
	    job_validate(&m->job, m->err, sizeof(m->err)) == 0)
		m->decoded = 1;
	amqp_delivery_free(d);
	return 1;
}

/*
 * The message came on the connection we hold now: a delivery tag from an
 * earlier connection means nothing on this one (the broker has already put
 * that message back in its queue).
 */
static int
source_amqp_current(struct source_amqp *sa, struct source_msg *m)
{
	struct source_amqp_raw *raw = m->raw;

	return sa != NULL && sa->link != NULL && !sa->link->dead &&
	    raw != NULL && raw->gen == sa->link->gen;
}

static int
source_amqp_ack(struct source *s, struct source_msg *m)
{
	struct source_amqp *sa = s->priv;

	if (!source_amqp_current(sa, m)) {
		log_warnx("amqp ack of %s: connection lost since delivery; "
		    "the broker redelivers it", m->entry);
		return -1;
	}
	return amqp_link_ack(sa->link, m->tag, 0);
}

static int
source_amqp_retry(struct source *s, struct source_msg *m, const char *reason)
{
	struct source_amqp *sa = s->priv;
	struct source_amqp_raw *raw = m->raw;
	amqp_basic_properties_t p;
	char err[256];

	if (!source_amqp_current(sa, m)) {
		log_warnx("amqp retry of %s: connection lost since delivery; "
		    "the broker redelivers it", m->entry);
		return -1;
	}
	memset(&p, 0, sizeof(p));
	p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
	p.content_type = amqp_cstring_bytes("application/json");
	p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
	if (m->decoded) {
		p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
		p.message_id = amqp_cstring_bytes(m->job.job_id);
	}
	if (amqp_link_publish_confirmed(sa->link, "", sa->qname, 1, &p,
	    raw->body, raw->len, err, sizeof(err)) == -1) {
		log_warnx("amqp retry of %s: %s", m->entry, err);
		/* Left unacknowledged: it comes back with the connection. */
		return -1;
	}
	log_debug("amqp job %s back to %s: %s", m->entry, sa->qname, reason);
	return amqp_link_ack(sa->link, m->tag, 0);
}

static void
source_amqp_header(amqp_table_entry_t *e, const char *key, const char *val)
{
	e->key = amqp_cstring_bytes(key);
	e->value.kind = AMQP_FIELD_KIND_UTF8;
	e->value.value.bytes = amqp_cstring_bytes(val);
}

static int
source_amqp_dead_letter(struct source *s, struct source_msg *m,
    const char *reason, int attempts)
{
	struct source_amqp *sa = s->priv;
	struct source_amqp_raw *raw = m->raw;
	amqp_basic_properties_t p;
	amqp_table_entry_t h[4];
	char err[256];

	if (!source_amqp_current(sa, m)) {
		log_warnx("amqp dead letter of %s: connection lost since "
		    "delivery; the broker redelivers it", m->entry);
		return -1;
	}
	memset(&p, 0, sizeof(p));
	p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
	    AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG |
	    AMQP_BASIC_TIMESTAMP_FLAG;
	p.content_type = amqp_cstring_bytes("application/json");
	p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
	p.timestamp = (uint64_t)now_real();
	if (m->decoded) {
		p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
		p.message_id = amqp_cstring_bytes(m->job.job_id);
	}
	source_amqp_header(&h[0], "x-digest-reason", reason ? reason : "");
	h[1].key = amqp_cstring_bytes("x-digest-attempts");
	h[1].value.kind = AMQP_FIELD_KIND_I32;
	h[1].value.value.i32 = attempts;
	source_amqp_header(&h[2], "x-digest-queue", s->queue);
	h[3].key = amqp_cstring_bytes("x-digest-failed-at");
	h[3].value.kind = AMQP_FIELD_KIND_I64;
	h[3].value.value.i64 = (int64_t)now_real();
	p.headers.num_entries = 4;
	p.headers.entries = h;
	if (amqp_link_publish_confirmed(sa->link, "digest.dlx", sa->qname, 1,
	    &p, raw->body, raw->len, err, sizeof(err)) == -1) {
		log_warnx("amqp dead letter of %s: %s", m->entry, err);
		return -1;
	}
	return amqp_link_ack(sa->link, m->tag, 0);
}

/*
 * The delayed set lives in the queue Redis: add the job, then acknowledge
 * the message.  A worker killed in between leaves both; the job then runs
 * from its checkpoint and waits again, as one member of the set.
 */
static int
source_amqp_defer(struct source *s, struct source_msg *m, redisContext *q,
    double due)
{
	struct source_amqp *sa = s->priv;
	char err[256];

	if (!m->decoded || q == NULL || !source_amqp_current(sa, m))
		return -1;
	if (delayq_add(q, s->cfg, s->queue, &m->job, due, err,
	    sizeof(err)) == -1) {
		log_warnx("defer %s: %s", m->job.job_id, err);
		return -1;
	}
	return amqp_link_ack(sa->link, m->tag, 0);
}

/* How long a worker holds a due job it is publishing back. */
#define PROMOTE_LEASE_S 60

/*
 * A due job is taken from the set for PROMOTE_LEASE_S, published to its
 * queue with a confirm, then removed: a worker that dies half-way only
 * delays it by the lease.
 */
static int
source_amqp_promote(struct source *s, redisContext *q, char *err,
    size_t errlen)
{
	struct source_amqp *sa = s->priv;
	struct delayq_item items[DELAYQ_BATCH];
	amqp_basic_properties_t p;
	int i, n, moved = 0, rc = 0;

	if (sa == NULL || sa->link == NULL || sa->link->dead || q == NULL) {
		snprintf(err, errlen, "not connected");
		return -1;
	}
	if ((n = delayq_due(q, s->cfg, s->queue, now_real(), items,
	    DELAYQ_BATCH, err, errlen)) <= 0)
		return n;
	for (i = 0; i < n && rc == 0; i++) {
		if ((rc = delayq_take(q, s->cfg, s->queue, &items[i],
		    now_real() + PROMOTE_LEASE_S, err, errlen)) != 1) {
			rc = rc == -1 ? -1 : 0;
			continue;
		}
		rc = 0;
		if (items[i].decoded) {
			memset(&p, 0, sizeof(p));
			p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
			    AMQP_BASIC_DELIVERY_MODE_FLAG |
			    AMQP_BASIC_MESSAGE_ID_FLAG;
			p.content_type = amqp_cstring_bytes("application/json");
			p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
			p.message_id = amqp_cstring_bytes(items[i].job.job_id);
			if (amqp_link_publish_confirmed(sa->link, "",
			    sa->qname, 1, &p, items[i].member,
			    items[i].memberlen, err, errlen) == -1) {
				rc = -1;
				break;
			}
		} else
			log_warnx("delayed set of %s: dropped a member that "
			    "is not a job", s->queue);
		if (delayq_remove(q, s->cfg, s->queue, &items[i], err,
		    errlen) == -1) {
			rc = -1;
			break;
		}
		moved++;
	}
	delayq_items_clear(items, n);
	return rc == -1 ? -1 : moved;
}

static int
source_amqp_keepalive(struct source *s, struct source_msg *m)
{
	struct source_amqp *sa = s->priv;
	char err[256];

	if (sa == NULL || sa->link == NULL || sa->link->dead)
		return -1;
	/* Send a heartbeat when due and read what came, without blocking. */
	return amqp_link_pump(sa->link, 0, err, sizeof(err));
}

static void
source_amqp_msg_clear(struct source *s, struct source_msg *m)
{
	free(m->raw);
	m->raw = NULL;
	m->rawlen = 0;
}

static void
source_amqp_close(struct source *s)
{
	struct source_amqp *sa = s->priv;

	if (sa == NULL)
		return;
	source_amqp_drop(sa);
	free(sa);
	s->priv = NULL;
}

const struct source_ops source_amqp_ops = {
	.name = "amqp",
	.open = source_amqp_open,
	.fetch = source_amqp_fetch,
	.ack = source_amqp_ack,
	.retry = source_amqp_retry,
	.defer = source_amqp_defer,
	.promote = source_amqp_promote,
	.dead_letter = source_amqp_dead_letter,
	.keepalive = source_amqp_keepalive,
	.msg_clear = source_amqp_msg_clear,
	.close = source_amqp_close,
};
