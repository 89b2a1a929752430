/*
 * A transport: how a rendered email leaves the worker (SMTP, AMQP or a
 * maildir), behind struct transport_ops.
 *
 * Messages are handed over in batches: send() queues a message (the
 * transport copies what it keeps, unless the message was rendered into
 * the transport's own buffer), flush() delivers everything queued and
 * reports each message's own outcome through the result callback, in the
 * order they were queued, before it returns.  A transport keeps its
 * connection open across batches and jobs.
 */
#ifndef DIGESTD_TRANSPORT_H
#define DIGESTD_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

enum tp_result {
	TP_SENT,	/* accepted by the server, the broker or the disk */
	TP_DEFERRED,	/* temporary failure (4xx): to be retried, not sent */
	TP_REJECTED,	/* permanent failure for this recipient (5xx) */
};

struct email {
	int64_t uid;
	int64_t gid;			/* the job's group */
	const char *rcpt;		/* envelope recipient */
	const char *message_id;		/* without angle brackets */
	const char *job_id;
	const char *data;		/* the RFC 5322 message, CRLF */
	size_t len;
};

typedef void (*transport_result_cb)(void *arg, const struct email *,
    enum tp_result, const char *detail);

struct transport;
struct rbuf;

struct transport_ops {
	const char *name;		/* "smtp", "amqp", "maildir" */
	int type;			/* enum transport_type */
	/* Allocate; connects lazily.  NULL with err on a bad setting. */
	struct transport *(*open)(const struct config *, char *err, size_t);
	/* Queue one message; 0, or -1 if it could not be queued. */
	int (*send)(struct transport *, const struct email *);
	/*
	 * Deliver what is queued; each message's outcome goes to cb.
	 * Returns 0 when every message got an outcome, -1 when the transport
	 * itself failed (server unreachable, connection lost): the messages
	 * without an outcome were not delivered and err says why.
	 */
	int (*flush)(struct transport *, transport_result_cb cb, void *arg,
	    char *err, size_t errlen);
	/*
	 * Why the last flush that returned -1 failed (enum
	 * transport_failure: connect, tls, auth, sender, protocol), for the
	 * metrics and for the worker's backoff: a sender or AUTH refused
	 * will not be accepted a second later.  Optional: without it every
	 * failure counts as protocol.
	 */
	enum transport_failure (*failure)(struct transport *);
	/*
	 * The most messages one flush should carry: the worker flushes at
	 * least this often (and at every digest.batch_size).  0, or no
	 * flush_max at all: no limit of the transport's own.
	 */
	size_t (*flush_max)(struct transport *);
	/*
	 * Optional: a buffer of the transport's own that the caller may
	 * append the next message to, so that send() keeps it where it is:
	 * e->data and e->len then name exactly what was appended last.  A
	 * message appended and not sent is cut off again (len put back).
	 * Valid until the next send, flush or close.  Without it the caller
	 * renders where it likes and send() copies.
	 */
	struct rbuf *(*buffer)(struct transport *);
	void (*close)(struct transport *);
};

extern const struct transport_ops transport_smtp_ops;
extern const struct transport_ops transport_amqp_ops;
extern const struct transport_ops transport_maildir_ops;

/* The ops for cfg->transport.type. */
const struct transport_ops *transport_ops_for(const struct config *);

#endif
