/*
 * One AMQP connection with one channel, as kept by a worker's queue
 * consumer, its amqp transport, digestctl or the sampler, for as long as
 * its owner lives.
 *
 * librabbitmq 0.11 reads the socket only inside its own calls, so every
 * frame that arrives goes through one reader here (amqp_link_pump):
 * deliveries are copied into a queue until fetched, publisher confirms
 * (basic.ack, basic.nack) and basic.return are matched to the publishes
 * waiting for them, and a heartbeat is sent whenever one is due, so that a
 * caller busy elsewhere keeps the connection alive by pumping it often.
 *
 * A link that failed (socket error, heartbeat timeout, connection or
 * channel closed by the broker) is marked dead: every call on it fails
 * until its owner closes it and opens a new one.  Each link gets a new
 * generation number, so that a delivery tag from an old connection is
 * never acknowledged on a new one.
 */
#ifndef DIGESTD_AMQP_LINK_H
#define DIGESTD_AMQP_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/uio.h>

#include <amqp.h>

#include "config.h"

#define AMQP_LINK_CHANNEL 1
#define AMQP_LINK_CONFIRM_TIMEOUT_MS 30000
/*
 * The largest body a consumer's delivery may bring in: a job is a few
 * hundred bytes of JSON, and a worker must never hold in memory what a
 * publisher could make as large as the broker allows (128 MB by
 * default).  A larger body is never read (amqp_link_read_content).
 */
#define AMQP_LINK_BODY_MAX	65536

/*
 * A message delivered by basic.deliver or basic.get, copied out.  A body
 * larger than its reader's limit is never held: its frames are discarded
 * as they arrive, body stays NULL and unread says so, and len still tells
 * its size.
 */
struct amqp_delivery {
	uint64_t tag;
	int redelivered;
	char routing_key[256];
	char message_id[256];		/* "" if none */
	char *body;			/* NUL-terminated copy, or NULL */
	size_t len;			/* the body's size, read or not */
	int unread;			/* over the limit: discarded */
	amqp_table_t headers;		/* in pool; may be empty */
	amqp_pool_t pool;
	TAILQ_ENTRY(amqp_delivery) entry;
};
TAILQ_HEAD(amqp_delivery_q, amqp_delivery);

/* Outcome of one confirmed publish. */
enum amqp_confirm {
	AMQP_CONFIRM_PENDING = 0,
	AMQP_CONFIRM_ACK,
	AMQP_CONFIRM_NACK,
};

/*
 * A batch of publishes waiting for their confirms: seqs first .. first+n-1
 * on the link's channel.  returned[i] is set when the broker sent the
 * message back (basic.return, mandatory and unroutable), matched by its
 * message_id against ids[i].
 */
struct amqp_confirm_set {
	uint64_t first;
	size_t n;
	uint8_t *state;			/* n enum amqp_confirm */
	uint8_t *returned;		/* n of them */
	const char *const *ids;		/* message ids, n of them */
	size_t pending;			/* still PENDING */
};

struct amqp_link {
	amqp_connection_state_t conn;
	uint64_t gen;			/* distinct per link */
	int dead;			/* failed: close and open again */
	int tls;			/* amqps://: frames go through TLS */
	int heartbeat_s;
	int64_t last_send_ns;		/* monotonic: our last frame */
	int confirm;			/* confirm.select done */
	uint64_t next_seq;		/* seq of the next publish */
	struct amqp_confirm_set *waiting; /* the batch being confirmed */
	struct amqp_delivery_q deliveries;
	size_t ndeliveries;
	int last_code;			/* last channel error code */
	char why[256];			/* why it died */
	char tls_err[160];		/* why amqps:// refused the broker */
};

/*
 * Connect to url with heartbeat (ms, rounded up to seconds; 0: none, and
 * TCP keepalive instead), log in, open the channel; name appears as
 * connection_name in rabbitmqctl.  With amqps:// the broker's certificate
 * must verify (chain and host name) against ca_file, or the system's CA
 * store when ca_file is NULL or empty.  NULL with err.  Only an owner that
 * pumps the link at least every half interval should ask for heartbeats.
 */
struct amqp_link *amqp_link_connect(const char *url, const char *ca_file,
    int64_t heartbeat_ms, const char *name, char *err, size_t errlen);

/*
 * Connect to cfg->amqp.url; NULL with err.  For occasional callers
 * (digestctl, the queue sampler) that never pump the connection between
 * calls: it negotiates no AMQP heartbeat and uses TCP keepalive instead.
 */
struct amqp_link *amqp_link_open(const struct config *, char *err,
    size_t errlen);
/* Close the connection and free the link; NULL does nothing. */
void amqp_link_close(struct amqp_link *);

/* Put the channel in confirm mode (once).  0 / -1. */
int amqp_link_confirm_select(struct amqp_link *, char *err, size_t errlen);

/*
 * Check the reply of the last RPC (declare, qos, consume...); on failure
 * mark the link dead when the channel or connection went, fill err with
 * what, and return -1.
 */
int amqp_link_rpc_ok(struct amqp_link *, const char *what, char *err,
    size_t errlen);
/* The same for a reply in hand (login, basic.get). */
int amqp_link_rpc_check(struct amqp_link *, amqp_rpc_reply_t, const char *what,
    char *err, size_t errlen);

/*
 * Read every frame that arrives within timeout_ms (0: only what is already
 * there), dispatching it; return as soon as a delivery is queued or the
 * waiting confirm set is complete.  Sends a heartbeat when one is due.
 * 0, or -1 when the link died (err says why).
 */
int amqp_link_pump(struct amqp_link *, int timeout_ms, char *err,
    size_t errlen);

/*
 * Read the content (header and body frames) that follows a basic.deliver,
 * basic.get-ok or basic.return into d: its headers, message id and size,
 * and its body unless that is over max_body bytes, in which case the body
 * frames are read and dropped one by one (memory stays one frame) and
 * d->unread is set.  Either way the channel is left at the next frame.
 * 0 / -1.
 */
int amqp_link_read_content(struct amqp_link *, struct amqp_delivery *d,
    size_t max_body, char *err, size_t errlen);
struct amqp_delivery *amqp_delivery_new(void);

/* Take the oldest queued delivery, or NULL; free with amqp_delivery_free. */
struct amqp_delivery *amqp_link_take(struct amqp_link *);
void amqp_delivery_free(struct amqp_delivery *);

/*
 * Publish one message on the link's channel; *seq gets its confirm number
 * when the channel is in confirm mode.  0 / -1.
 */
int amqp_link_publish(struct amqp_link *, const char *exchange,
    const char *routing_key, int mandatory,
    const amqp_basic_properties_t *, const void *body, size_t len,
    uint64_t *seq, char *err, size_t errlen);

/*
 * Write whole frames, already encoded for the link's channel and frame
 * size, straight to the socket: many publishes in a few system calls.
 * The caller numbers them (next_seq) and sets waiting, for the confirms
 * read while the socket is full.  Plain TCP only (tls is 0).  iov is
 * consumed.  0, or -1 with the link dead: a frame may be cut short.
 */
int amqp_link_write_frames(struct amqp_link *, struct iovec *iov, int iovcnt,
    int timeout_ms, char *err, size_t errlen);

/*
 * Wait up to timeout_ms for the confirms of set.  0 when every message has
 * one; -1 on timeout or a dead link (set keeps what did arrive).
 */
int amqp_link_wait_confirms(struct amqp_link *, struct amqp_confirm_set *,
    int timeout_ms, char *err, size_t errlen);

/*
 * Publish one message and wait for its confirm: 0 acked (and routed when
 * mandatory), -1 otherwise with err.
 */
int amqp_link_publish_confirmed(struct amqp_link *, const char *exchange,
    const char *routing_key, int mandatory,
    const amqp_basic_properties_t *, const void *body, size_t len,
    char *err, size_t errlen);

/* basic.ack / basic.nack(requeue) / basic.reject of tag.  0 / -1. */
int amqp_link_ack(struct amqp_link *, uint64_t tag, int multiple);
int amqp_link_nack(struct amqp_link *, uint64_t tag, int multiple,
    int requeue);

/* Find a header's value as text (string, or an integer printed). */
int amqp_table_get_str(const amqp_table_t *, const char *key, char *buf,
    size_t len);

/* Mark the link dead with a reason (after a failed call). */
void amqp_link_fail(struct amqp_link *, const char *why);

#endif
