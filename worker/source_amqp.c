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
 *
 * A body over JOBQ_AMQP_BODY_MAX is never read (amqp_link discards its
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

#include "amqp_link.h"
#include "delayq.h"
#include "checkpoint.h"
#include "jobq_amqp.h"
#include "log.h"
#include "rconn.h"
#include "source.h"
#include "util.h"

/* How long a count of deliveries outlives the last of them. */
#define SOURCE_AMQP_TAKEN_TTL_S (7 * 86400)

struct source_amqp {
	struct amqp_link *link;
	char qname[CONFIG_NAME_MAX + 16];
	/*
	 * A count that could not be dropped when its message left us (the
	 * queue Redis was away): dropped at the next count instead.
	 */
	char stale_key[128];
	int stale_del;			/* 1: DEL, 0: DECR */
};

/*
 * What a delivered message keeps: the connection it came on, its body
 * (empty when unread), and its count of deliveries taken.
 */
struct source_amqp_raw {
	uint64_t gen;
	size_t len;			/* the body's size, read or not */
	int unread;			/* too large: rejected unread */
	int takes;			/* deliveries counted; 0: not counted */
	int tripped;			/* dead-lettered for its deaths */
	char key[128];			/* the count's key */
	char id[256];			/* message_id: the job id, or "" */
	char body[];
};

static int source_amqp_dead_letter(struct source *, struct source_msg *,
    const char *, int);

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
	sa->link = amqp_link_connect(s->cfg->amqp.url, s->cfg->amqp.ca_file,
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

/* The worker's queue Redis, if it is connected. */
static redisContext *
source_amqp_redis(struct source *s)
{
	redisContext *q;

	if (s->qredis == NULL || (q = *s->qredis) == NULL || q->err)
		return NULL;
	return q;
}

/* The key of a body's count: the first 128 bits of its SHA-256. */
static int
source_amqp_key(struct source *s, const char *body, size_t len, char *key,
    size_t keylen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen, i;
	char hex[33];

	if (EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen < 16)
		return -1;
	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return rkey(key, keylen, s->cfg->redis.key_prefix, "digest:taken:%s",
	    hex) == NULL ? -1 : 0;
}

/*
 * Read n replies of a pipeline; *first gets the first one's integer.
 * 0, or -1 (a missing reply after an allocation failure is our OOM).
 */
static int
source_amqp_replies(redisContext *q, int n, long long *first)
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
source_amqp_count(struct source *s, struct source_amqp_raw *raw)
{
	struct source_amqp *sa = s->priv;
	redisContext *q;
	long long n = 0;
	int stale;

	if ((q = source_amqp_redis(s)) == NULL ||
	    source_amqp_key(s, raw->body, raw->len, raw->key,
	    sizeof(raw->key)) == -1)
		return;
	stale = sa->stale_key[0] != '\0';
	if (stale)
		redisAppendCommand(q, sa->stale_del ? "DEL %s" : "DECR %s",
		    sa->stale_key);
	redisAppendCommand(q, "INCR %s", raw->key);
	redisAppendCommand(q, "EXPIRE %s %d", raw->key,
	    SOURCE_AMQP_TAKEN_TTL_S);
	/* Every reply is read, whatever the first: the pipeline stays whole. */
	if (stale && source_amqp_replies(q, 1, NULL) == 0)
		sa->stale_key[0] = '\0';
	if (source_amqp_replies(q, 2, &n) == -1 || n <= 0) {
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
source_amqp_uncount(struct source *s, struct source_amqp_raw *raw,
    int disposed)
{
	struct source_amqp *sa = s->priv;
	redisContext *q;

	if (raw == NULL || raw->takes == 0)
		return;
	if ((q = source_amqp_redis(s)) != NULL) {
		redisAppendCommand(q, disposed ? "DEL %s" : "DECR %s",
		    raw->key);
		if (source_amqp_replies(q, 1, NULL) == 0) {
			raw->takes = 0;
			return;
		}
	}
	if (sa != NULL) {
		strlcpy(sa->stale_key, raw->key, sizeof(sa->stale_key));
		sa->stale_del = disposed;
	}
	raw->takes = 0;
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
	raw = wcalloc(1, sizeof(*raw) + (d->unread ? 0 : d->len) + 1);
	raw->gen = sa->link->gen;
	raw->len = d->len;
	raw->unread = d->unread;
	strlcpy(raw->id, d->message_id, sizeof(raw->id));
	if (!d->unread)
		memcpy(raw->body, d->body, d->len + 1);
	m->raw = raw;
	m->rawlen = d->unread ? 0 : d->len;
	amqp_delivery_free(d);

	if (raw->unread) {
		jobq_amqp_too_large(m->err, sizeof(m->err), raw->len);
		return 1;
	}
	/* Counted before anything is done with it that could kill us. */
	source_amqp_count(s, raw);
	if (raw->takes > 1)
		log_warnx("amqp message %s: delivery %d; %d worker(s) died "
		    "holding it", m->entry, raw->takes, raw->takes - 1);
	if (raw->takes > s->cfg->queue.max_attempts) {
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
source_amqp_current(struct source_amqp *sa, struct source_msg *m)
{
	struct source_amqp_raw *raw = m->raw;

	return sa != NULL && sa->link != NULL && !sa->link->dead &&
	    raw != NULL && raw->gen == sa->link->gen;
}

/*
 * The message leaves this worker, which lives: 0, it is gone from the
 * queue; -1, the broker has it back, or will once the connection closes.
 */
static int
source_amqp_leave(struct source *s, struct source_msg *m, int rc)
{
	source_amqp_uncount(s, m->raw, rc == 0);
	return rc;
}

/*
 * A publish that was not confirmed leaves the message unacknowledged on a
 * connection that may still work: close it, so that the broker takes the
 * message back now rather than whenever the connection next fails.
 */
static int
source_amqp_unconfirmed(struct source *s, struct source_msg *m)
{
	struct source_amqp *sa = s->priv;

	amqp_link_fail(sa->link, "a publish was not confirmed");
	return source_amqp_leave(s, m, -1);
}

static int
source_amqp_ack(struct source *s, struct source_msg *m)
{
	struct source_amqp *sa = s->priv;

	if (!source_amqp_current(sa, m)) {
		log_warnx("amqp ack of %s: connection lost since delivery; "
		    "the broker redelivers it", m->entry);
		return source_amqp_leave(s, m, -1);
	}
	return source_amqp_leave(s, m, amqp_link_ack(sa->link, m->tag, 0));
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
		return source_amqp_leave(s, m, -1);
	}
	if (raw->unread)
		return source_amqp_dead_letter(s, m, m->err, 0);
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
		return source_amqp_unconfirmed(s, m);
	}
	log_debug("amqp job %s back to %s: %s", m->entry, sa->qname, reason);
	return source_amqp_leave(s, m, amqp_link_ack(sa->link, m->tag, 0));
}

static void
source_amqp_header(amqp_table_entry_t *e, const char *key, const char *val)
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
source_amqp_mark_dead(struct source *s, struct source_amqp_raw *raw,
    const char *reason)
{
	redisContext *q;
	struct job j;

	if (raw->id[0] == '\0' || (q = source_amqp_redis(s)) == NULL)
		return;
	memset(&j, 0, sizeof(j));
	if (strlcpy(j.job_id, raw->id, sizeof(j.job_id)) >= sizeof(j.job_id))
		return;
	if (checkpoint_finish(q, s->cfg, &j, "dead", reason) == -1)
		log_warnx("job %s: its checkpoint could not be marked dead",
		    j.job_id);
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
		return source_amqp_leave(s, m, -1);
	}
	if (raw->unread) {
		/*
		 * We never had the body to publish: rejected without
		 * requeue, it goes through the queue's dead-letter exchange
		 * to digest.dlq, where its size says why.
		 */
		return source_amqp_leave(s, m, amqp_link_nack(sa->link,
		    m->tag, 0, 0));
	}
	/* Every delivery counts, the one that ends here included. */
	if (attempts < raw->takes)
		attempts = raw->takes;
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
		return source_amqp_unconfirmed(s, m);
	}
	if (raw->tripped)
		source_amqp_mark_dead(s, raw, reason);
	return source_amqp_leave(s, m, amqp_link_ack(sa->link, m->tag, 0));
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
	return source_amqp_leave(s, m, amqp_link_ack(sa->link, m->tag, 0));
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
