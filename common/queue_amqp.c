/*
 * The AMQP backend, a worker's side (queue.h): one connection per worker
 * for its whole life, consuming digest.{queue} with manual acknowledgement
 * and basic.qos(prefetch); and the declarations and message properties
 * that the administration side (queue_amqp_admin.c) shares.
 *
 * A message that is never acknowledged goes back to its queue when the
 * connection closes, which is how a killed worker's job is redelivered.
 * Giving a job back publishes a copy at the tail of the queue and
 * acknowledges the original, as the Redis backend does; a dead letter is
 * published to digest.dlx with the reason, attempts and queue in headers,
 * then the original is acknowledged.  Both publishes wait for the
 * broker's confirm first, so a job is never in neither place.
 *
 * A body over AMQP_LINK_BODY_MAX is never read (amqp_link discards its
 * frames): it is rejected without requeue, and the queue's dead-letter
 * exchange takes it to digest.dlq, where its size tells why.
 *
 * A message that kills its worker must not do so forever.  The job's
 * checkpoint counts an attempt only once the job has been decoded and its
 * checkpoint read; a worker that dies before that leaves no trace there.
 * So each delivery taken is also counted here, in the queue Redis, under
 * a hash of the body (no decoding needed), and the count is dropped when
 * the message leaves this worker alive: finished, given back,
 * dead-lettered, or left to the broker with a lost connection.  What is
 * left counts the workers that died holding it; past max_attempts the
 * message is dead-lettered before anything else is done with it.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "checkpoint.h"
#include "delayq.h"
#include "log.h"
#include "queue_amqp.h"
#include "rconn.h"
#include "util.h"

/* How long a count of deliveries outlives the last of them. */
#define QUEUE_AMQP_TAKEN_TTL_S (7 * 86400)

/* A worker's connection to its queue. */
struct queue_amqp_consumer {
	struct amqp_link *link;
	char qname[QUEUE_AMQP_QNAME_MAX];
	/*
	 * A count that could not be dropped when its message left us (the
	 * queue Redis was away): dropped at the next count instead.
	 */
	char stale_key[128];
	int stale_del;			/* 1: DEL, 0: DECR */
};

/*
 * What a delivered message keeps: the connection it came on and its tag
 * there, its body (empty when unread), and its count of deliveries taken.
 */
struct queue_amqp_raw {
	uint64_t gen;
	uint64_t tag;
	size_t len;			/* the body's size, read or not */
	int unread;			/* too large: rejected unread */
	int takes;			/* deliveries counted; 0: not counted */
	int tripped;			/* dead-lettered for its deaths */
	char key[128];			/* the count's key */
	char id[256];			/* message_id: the job id, or "" */
	char body[];
};

static int queue_amqp_dead_letter(struct queue_consumer *,
    struct queue_msg *, const char *, int);

int
queue_amqp_qname(char *buf, size_t len, const char *queue, char *err,
    size_t errlen)
{
	if ((size_t)snprintf(buf, len, "digest.%s", queue) >= len) {
		snprintf(err, errlen, "queue name too long: %s", queue);
		return -1;
	}
	return 0;
}

int
queue_amqp_declare(struct amqp_link *l, const char *queue, char *err,
    size_t errlen)
{
	amqp_table_entry_t arg;
	amqp_table_t args, none;
	char qname[QUEUE_AMQP_QNAME_MAX];

	if (l->dead) {
		snprintf(err, errlen, "amqp: %s", l->why);
		return -1;
	}
	if (queue_amqp_qname(qname, sizeof(qname), queue, err, errlen) == -1)
		return -1;
	none = amqp_empty_table;

	/* fanout: whatever routing key a dead letter carries, it lands. */
	amqp_exchange_declare(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(QUEUE_AMQP_DLX), amqp_cstring_bytes("fanout"),
	    0, 1, 0, 0, none);
	if (amqp_link_rpc_ok(l, "declare " QUEUE_AMQP_DLX, err, errlen) == -1)
		return -1;
	amqp_queue_declare(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(QUEUE_AMQP_DLQ), 0, 1, 0, 0, none);
	if (amqp_link_rpc_ok(l, "declare " QUEUE_AMQP_DLQ, err, errlen) == -1)
		return -1;
	amqp_queue_bind(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(QUEUE_AMQP_DLQ),
	    amqp_cstring_bytes(QUEUE_AMQP_DLX), amqp_cstring_bytes(""), none);
	if (amqp_link_rpc_ok(l, "bind " QUEUE_AMQP_DLQ, err, errlen) == -1)
		return -1;

	arg.key = amqp_cstring_bytes("x-dead-letter-exchange");
	arg.value.kind = AMQP_FIELD_KIND_UTF8;
	arg.value.value.bytes = amqp_cstring_bytes(QUEUE_AMQP_DLX);
	args.num_entries = 1;
	args.entries = &arg;
	amqp_queue_declare(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(qname), 0, 1, 0, 0, args);
	return amqp_link_rpc_ok(l, "declare queue", err, errlen);
}

void
queue_amqp_props(amqp_basic_properties_t *p, const char *job_id, double at)
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
	if (at > 0) {
		p->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
		p->timestamp = (uint64_t)at;
	}
}

void
queue_amqp_too_large(char *buf, size_t len, size_t size)
{
	snprintf(buf, len, "body too large (%zu bytes)", size);
}

static void
queue_amqp_drop(struct queue_amqp_consumer *ac)
{
	amqp_link_close(ac->link);
	ac->link = NULL;
}

static int
queue_amqp_open(struct queue_consumer *qc, char *err, size_t errlen)
{
	struct queue_amqp_consumer *ac = qc->priv;
	char name[256];

	qc->failed_on = QUEUE_SERVER_BROKER;
	if (ac == NULL)
		ac = qc->priv = wcalloc(1, sizeof(*ac));
	queue_amqp_drop(ac);
	if (queue_amqp_qname(ac->qname, sizeof(ac->qname), qc->queue, err,
	    errlen) == -1)
		return -1;
	snprintf(name, sizeof(name), "digestd worker %s pid=%d", qc->name,
	    (int)getpid());
	ac->link = amqp_link_connect(qc->cfg->amqp.url, qc->cfg->amqp.ca_file,
	    qc->cfg->amqp.heartbeat_ms, name, err, errlen);
	if (ac->link == NULL)
		return -1;
	if (queue_amqp_declare(ac->link, qc->queue, err, errlen) == -1)
		goto fail;
	if (amqp_link_confirm_select(ac->link, err, errlen) == -1)
		goto fail;
	amqp_basic_qos(ac->link->conn, AMQP_LINK_CHANNEL, 0,
	    (uint16_t)(qc->cfg->amqp.prefetch > 0 ? qc->cfg->amqp.prefetch : 1),
	    0);
	if (amqp_link_rpc_ok(ac->link, "basic.qos", err, errlen) == -1)
		goto fail;
	amqp_basic_consume(ac->link->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(ac->qname), amqp_cstring_bytes(qc->name), 0,
	    0, 0, amqp_empty_table);
	if (amqp_link_rpc_ok(ac->link, "basic.consume", err, errlen) == -1)
		goto fail;
	log_info("amqp consuming %s (heartbeat %ds, prefetch %d)", ac->qname,
	    ac->link->heartbeat_s, qc->cfg->amqp.prefetch);
	return 0;
fail:
	queue_amqp_drop(ac);
	return -1;
}

static int
queue_amqp_dead(struct queue_amqp_consumer *ac, char *err, size_t errlen)
{
	snprintf(err, errlen, "amqp: %s",
	    ac == NULL || ac->link == NULL ? "not connected" : ac->link->why);
	return -1;
}

/* The worker's queue Redis, if it is connected. */
static redisContext *
queue_amqp_redis(struct queue_consumer *qc)
{
	redisContext *q;

	if (qc->qredis == NULL || (q = *qc->qredis) == NULL || q->err)
		return NULL;
	return q;
}

/* The key of a body's count: the first 128 bits of its SHA-256. */
static int
queue_amqp_key(struct queue_consumer *qc, const char *body, size_t len,
    char *key, size_t keylen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen, i;
	char hex[33];

	if (EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen < 16)
		return -1;
	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return rkey(key, keylen, qc->cfg->redis.key_prefix, "digest:taken:%s",
	    hex) == NULL ? -1 : 0;
}

/*
 * Read n replies of a pipeline; *first gets the first one's integer.
 * 0, or -1 (a missing reply after an allocation failure is our OOM).
 */
static int
queue_amqp_replies(redisContext *q, int n, long long *first)
{
	redisReply *r;
	int i, rc = 0;

	for (i = 0; i < n; i++) {
		r = NULL;
		if (redisGetReply(q, (void **)&r) != REDIS_OK || r == NULL) {
			if (q->err == REDIS_ERR_OOM)
				worker_oom();
			return -1;
		}
		if (r->type == REDIS_REPLY_ERROR)
			rc = -1;
		else if (i == 0 && first != NULL &&
		    r->type == REDIS_REPLY_INTEGER)
			*first = r->integer;
		freeReplyObject(r);
	}
	return rc;
}

/*
 * Count this delivery: raw->takes gets the deliveries taken since the
 * message last left a live worker, this one included.  Without the queue
 * Redis it stays 0 (uncounted): the job's checkpoint cannot be read then
 * either, and the job is given back.
 */
static void
queue_amqp_count(struct queue_consumer *qc, struct queue_amqp_raw *raw)
{
	struct queue_amqp_consumer *ac = qc->priv;
	redisContext *q;
	long long n = 0;
	int stale;

	if ((q = queue_amqp_redis(qc)) == NULL ||
	    queue_amqp_key(qc, raw->body, raw->len, raw->key,
	    sizeof(raw->key)) == -1)
		return;
	stale = ac->stale_key[0] != '\0';
	if (stale)
		redisAppendCommand(q, ac->stale_del ? "DEL %s" : "DECR %s",
		    ac->stale_key);
	redisAppendCommand(q, "INCR %s", raw->key);
	redisAppendCommand(q, "EXPIRE %s %d", raw->key,
	    QUEUE_AMQP_TAKEN_TTL_S);
	/* Every reply is read, whatever the first: the pipeline stays whole. */
	if (stale && queue_amqp_replies(q, 1, NULL) == 0)
		ac->stale_key[0] = '\0';
	if (queue_amqp_replies(q, 2, &n) == -1 || n <= 0) {
		log_warnx("amqp: the deliveries of a message could not be "
		    "counted");
		return;
	}
	raw->takes = n > INT_MAX ? INT_MAX : (int)n;
}

/*
 * The message leaves us alive: drop its count (disposed: it is gone from
 * the queue; else the broker has it back, and this take was no death).
 */
static void
queue_amqp_uncount(struct queue_consumer *qc, struct queue_amqp_raw *raw,
    int disposed)
{
	struct queue_amqp_consumer *ac = qc->priv;
	redisContext *q;

	if (raw == NULL || raw->takes == 0)
		return;
	if ((q = queue_amqp_redis(qc)) != NULL) {
		redisAppendCommand(q, disposed ? "DEL %s" : "DECR %s",
		    raw->key);
		if (queue_amqp_replies(q, 1, NULL) == 0) {
			raw->takes = 0;
			return;
		}
	}
	if (ac != NULL) {
		strlcpy(ac->stale_key, raw->key, sizeof(ac->stale_key));
		ac->stale_del = disposed;
	}
	raw->takes = 0;
}

static int
queue_amqp_fetch(struct queue_consumer *qc, struct queue_msg *m,
    int timeout_ms, char *err, size_t errlen)
{
	struct queue_amqp_consumer *ac = qc->priv;
	struct queue_amqp_raw *raw;
	struct amqp_delivery *d;

	qc->failed_on = QUEUE_SERVER_BROKER;
	if (ac == NULL || ac->link == NULL || ac->link->dead)
		return queue_amqp_dead(ac, err, errlen);
	if ((d = amqp_link_take(ac->link)) == NULL) {
		if (amqp_link_pump(ac->link, timeout_ms, err, errlen) == -1)
			return -1;
		if ((d = amqp_link_take(ac->link)) == NULL)
			return 0;
	}

	memset(m, 0, sizeof(*m));
	snprintf(m->entry, sizeof(m->entry), "%llu",
	    (unsigned long long)d->tag);
	raw = wcalloc(1, sizeof(*raw) + (d->unread ? 0 : d->len) + 1);
	raw->gen = ac->link->gen;
	raw->tag = d->tag;
	raw->len = d->len;
	raw->unread = d->unread;
	strlcpy(raw->id, d->message_id, sizeof(raw->id));
	if (!d->unread)
		memcpy(raw->body, d->body, d->len + 1);
	m->raw = raw;
	amqp_delivery_free(d);

	if (raw->unread) {
		queue_amqp_too_large(m->err, sizeof(m->err), raw->len);
		return 1;
	}
	/* Counted before anything is done with it that could kill us. */
	queue_amqp_count(qc, raw);
	if (raw->takes > 1)
		log_warnx("amqp message %s: delivery %d; %d worker(s) died "
		    "holding it", m->entry, raw->takes, raw->takes - 1);
	if (raw->takes > qc->cfg->queue.max_attempts) {
		/* Not even decoded: that may be what kills. */
		raw->tripped = 1;
		snprintf(m->err, sizeof(m->err), "its worker died %d times "
		    "while holding it", raw->takes - 1);
		return 1;
	}
	if (job_decode_json(&m->job, raw->body, raw->len, m->err,
	    sizeof(m->err)) == 0 &&
	    job_validate(&m->job, m->err, sizeof(m->err)) == 0)
		m->decoded = 1;
	return 1;
}

/*
 * The message came on the connection we hold now: a delivery tag from an
 * earlier connection means nothing on this one (the broker has already put
 * that message back in its queue).
 */
static int
queue_amqp_current(struct queue_amqp_consumer *ac, struct queue_msg *m)
{
	struct queue_amqp_raw *raw = m->raw;

	return ac != NULL && ac->link != NULL && !ac->link->dead &&
	    raw != NULL && raw->gen == ac->link->gen;
}

/*
 * The message leaves this worker, which lives: 0, it is gone from the
 * queue; -1, the broker has it back, or will once the connection closes.
 */
static int
queue_amqp_leave(struct queue_consumer *qc, struct queue_msg *m, int rc)
{
	queue_amqp_uncount(qc, m->raw, rc == 0);
	return rc;
}

/*
 * A publish that was not confirmed leaves the message unacknowledged on a
 * connection that may still work: close it, so that the broker takes the
 * message back now rather than whenever the connection next fails.
 */
static int
queue_amqp_unconfirmed(struct queue_consumer *qc, struct queue_msg *m)
{
	struct queue_amqp_consumer *ac = qc->priv;

	amqp_link_fail(ac->link, "a publish was not confirmed");
	return queue_amqp_leave(qc, m, -1);
}

static int
queue_amqp_ack(struct queue_consumer *qc, struct queue_msg *m)
{
	struct queue_amqp_consumer *ac = qc->priv;
	struct queue_amqp_raw *raw = m->raw;

	qc->failed_on = QUEUE_SERVER_BROKER;
	if (!queue_amqp_current(ac, m)) {
		log_warnx("amqp ack of %s: connection lost since delivery; "
		    "the broker redelivers it", m->entry);
		return queue_amqp_leave(qc, m, -1);
	}
	return queue_amqp_leave(qc, m, amqp_link_ack(ac->link, raw->tag, 0));
}

static int
queue_amqp_give_back(struct queue_consumer *qc, struct queue_msg *m,
    const char *reason)
{
	struct queue_amqp_consumer *ac = qc->priv;
	struct queue_amqp_raw *raw = m->raw;
	amqp_basic_properties_t p;
	char err[256];

	qc->failed_on = QUEUE_SERVER_BROKER;
	if (!queue_amqp_current(ac, m)) {
		log_warnx("amqp give-back of %s: connection lost since "
		    "delivery; the broker redelivers it", m->entry);
		return queue_amqp_leave(qc, m, -1);
	}
	if (raw->unread)
		return queue_amqp_dead_letter(qc, m, m->err, 0);
	queue_amqp_props(&p, m->decoded ? m->job.job_id : NULL, 0);
	if (amqp_link_publish_confirmed(ac->link, "", ac->qname, 1, &p,
	    raw->body, raw->len, err, sizeof(err)) == -1) {
		log_warnx("amqp give-back of %s: %s", m->entry, err);
		/* Left unacknowledged: it comes back with the connection. */
		return queue_amqp_unconfirmed(qc, m);
	}
	log_debug("amqp job %s back to %s: %s", m->entry, ac->qname, reason);
	return queue_amqp_leave(qc, m, amqp_link_ack(ac->link, raw->tag, 0));
}

static void
queue_amqp_header(amqp_table_entry_t *e, const char *key, const char *val)
{
	e->key = amqp_cstring_bytes(key);
	e->value.kind = AMQP_FIELD_KIND_UTF8;
	e->value.value.bytes = amqp_cstring_bytes(val);
}

/*
 * A job dead-lettered without being decoded still gets its checkpoint
 * marked dead, when its message id names it (digestctl schedule and our
 * give-backs set it to the job id).
 */
static void
queue_amqp_mark_dead(struct queue_consumer *qc, struct queue_amqp_raw *raw,
    const char *reason)
{
	redisContext *q;
	struct job j;

	if (raw->id[0] == '\0' || (q = queue_amqp_redis(qc)) == NULL)
		return;
	memset(&j, 0, sizeof(j));
	if (strlcpy(j.job_id, raw->id, sizeof(j.job_id)) >= sizeof(j.job_id))
		return;
	if (checkpoint_finish(q, qc->cfg, &j, "dead", reason) == -1)
		log_warnx("job %s: its checkpoint could not be marked dead",
		    j.job_id);
}

static int
queue_amqp_dead_letter(struct queue_consumer *qc, struct queue_msg *m,
    const char *reason, int attempts)
{
	struct queue_amqp_consumer *ac = qc->priv;
	struct queue_amqp_raw *raw = m->raw;
	amqp_basic_properties_t p;
	amqp_table_entry_t h[4];
	char err[256];

	qc->failed_on = QUEUE_SERVER_BROKER;
	if (!queue_amqp_current(ac, m)) {
		log_warnx("amqp dead letter of %s: connection lost since "
		    "delivery; the broker redelivers it", m->entry);
		return queue_amqp_leave(qc, m, -1);
	}
	if (raw->unread) {
		/*
		 * We never had the body to publish: rejected without
		 * requeue, it goes through the queue's dead-letter exchange
		 * to digest.dlq, where its size says why.
		 */
		return queue_amqp_leave(qc, m, amqp_link_nack(ac->link,
		    raw->tag, 0, 0));
	}
	/* Every delivery counts, the one that ends here included. */
	if (attempts < raw->takes)
		attempts = raw->takes;
	queue_amqp_props(&p, m->decoded ? m->job.job_id : NULL, now_real());
	queue_amqp_header(&h[0], "x-digest-reason", reason ? reason : "");
	h[1].key = amqp_cstring_bytes("x-digest-attempts");
	h[1].value.kind = AMQP_FIELD_KIND_I32;
	h[1].value.value.i32 = attempts;
	queue_amqp_header(&h[2], "x-digest-queue", qc->queue);
	h[3].key = amqp_cstring_bytes("x-digest-failed-at");
	h[3].value.kind = AMQP_FIELD_KIND_I64;
	h[3].value.value.i64 = (int64_t)now_real();
	p._flags |= AMQP_BASIC_HEADERS_FLAG;
	p.headers.num_entries = 4;
	p.headers.entries = h;
	if (amqp_link_publish_confirmed(ac->link, QUEUE_AMQP_DLX, ac->qname,
	    1, &p, raw->body, raw->len, err, sizeof(err)) == -1) {
		log_warnx("amqp dead letter of %s: %s", m->entry, err);
		return queue_amqp_unconfirmed(qc, m);
	}
	if (raw->tripped)
		queue_amqp_mark_dead(qc, raw, reason);
	return queue_amqp_leave(qc, m, amqp_link_ack(ac->link, raw->tag, 0));
}

/*
 * The delayed set lives in the queue Redis: add the job, then acknowledge
 * the message.  A worker killed in between leaves both; the job then runs
 * from its checkpoint and waits again, as one member of the set.
 */
static int
queue_amqp_defer(struct queue_consumer *qc, struct queue_msg *m,
    redisContext *q, double due)
{
	struct queue_amqp_consumer *ac = qc->priv;
	struct queue_amqp_raw *raw = m->raw;
	char err[256];

	qc->failed_on = QUEUE_SERVER_BROKER;
	if (!m->decoded || !queue_amqp_current(ac, m))
		return -1;
	qc->failed_on = QUEUE_SERVER_REDIS;
	if (q == NULL)
		return -1;
	if (delayq_add(q, qc->cfg, qc->queue, &m->job, due, err,
	    sizeof(err)) == -1) {
		log_warnx("defer %s: %s", m->job.job_id, err);
		return -1;
	}
	qc->failed_on = QUEUE_SERVER_BROKER;
	return queue_amqp_leave(qc, m, amqp_link_ack(ac->link, raw->tag, 0));
}

/* How long a worker holds a due job it is publishing back. */
#define QUEUE_AMQP_PROMOTE_LEASE_S 60

/*
 * A due job is taken from the set for QUEUE_AMQP_PROMOTE_LEASE_S,
 * published to its queue with a confirm, then removed: a worker that dies
 * half-way only delays it by the lease.
 */
static int
queue_amqp_promote(struct queue_consumer *qc, redisContext *q, char *err,
    size_t errlen)
{
	struct queue_amqp_consumer *ac = qc->priv;
	struct delayq_item items[DELAYQ_BATCH];
	amqp_basic_properties_t p;
	int i, n, moved = 0, rc = 0;

	qc->failed_on = QUEUE_SERVER_BROKER;
	if (ac == NULL || ac->link == NULL || ac->link->dead) {
		snprintf(err, errlen, "not connected");
		return -1;
	}
	qc->failed_on = QUEUE_SERVER_REDIS;
	if (q == NULL) {
		snprintf(err, errlen, "not connected");
		return -1;
	}
	if ((n = delayq_due(q, qc->cfg, qc->queue, now_real(), items,
	    DELAYQ_BATCH, err, errlen)) <= 0)
		return n;
	for (i = 0; i < n && rc == 0; i++) {
		if ((rc = delayq_take(q, qc->cfg, qc->queue, &items[i],
		    now_real() + QUEUE_AMQP_PROMOTE_LEASE_S, err,
		    errlen)) != 1) {
			rc = rc == -1 ? -1 : 0;
			continue;
		}
		rc = 0;
		if (items[i].decoded) {
			queue_amqp_props(&p, items[i].job.job_id, 0);
			if (amqp_link_publish_confirmed(ac->link, "",
			    ac->qname, 1, &p, items[i].member,
			    items[i].memberlen, err, errlen) == -1) {
				qc->failed_on = QUEUE_SERVER_BROKER;
				rc = -1;
				break;
			}
		} else
			log_warnx("delayed set of %s: dropped a member that "
			    "is not a job", qc->queue);
		if (delayq_remove(q, qc->cfg, qc->queue, &items[i], err,
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
queue_amqp_keepalive(struct queue_consumer *qc, struct queue_msg *m)
{
	struct queue_amqp_consumer *ac = qc->priv;
	char err[256];

	qc->failed_on = QUEUE_SERVER_BROKER;
	if (ac == NULL || ac->link == NULL || ac->link->dead)
		return -1;
	/* Send a heartbeat when due and read what came, without blocking. */
	return amqp_link_pump(ac->link, 0, err, sizeof(err));
}

static void
queue_amqp_msg_clear(struct queue_consumer *qc, struct queue_msg *m)
{
	free(m->raw);
	m->raw = NULL;
}

static void
queue_amqp_close(struct queue_consumer *qc)
{
	struct queue_amqp_consumer *ac = qc->priv;

	if (ac == NULL)
		return;
	queue_amqp_drop(ac);
	free(ac);
	qc->priv = NULL;
}

const struct queue_backend queue_amqp_backend = {
	.name = "amqp",
	.redelivers = 1,
	.dlq_opaque = 1,

	.open = queue_amqp_open,
	.fetch = queue_amqp_fetch,
	.ack = queue_amqp_ack,
	.give_back = queue_amqp_give_back,
	.defer = queue_amqp_defer,
	.promote = queue_amqp_promote,
	.dead_letter = queue_amqp_dead_letter,
	.keepalive = queue_amqp_keepalive,
	.msg_clear = queue_amqp_msg_clear,
	.close = queue_amqp_close,

	.enqueue = queue_amqp_enqueue,
	.stats = queue_amqp_stats,
	.dlq_len = queue_amqp_dlq_len,
	.dlq_walk = queue_amqp_dlq_walk,
	.purge = queue_amqp_purge,
	.remove_run = queue_amqp_remove_run,
	.trim = queue_amqp_trim,
	.admin_clear = queue_amqp_admin_clear,

	.orphaned = queue_amqp_orphaned,
	.give_back_consumer = queue_amqp_give_back_consumer,
};
