/*
 * One AMQP connection and channel on librabbitmq 0.11: connect and log
 * in, read and dispatch every frame in one place, publish with confirms,
 * and keep heartbeats flowing while the owner is busy elsewhere.
 *
 * The library services heartbeats only inside its own calls and has no
 * publisher-confirm helper in this version, so both are done here: the
 * owner calls amqp_link_pump often (the worker at least once a second
 * while a job runs), which sends a heartbeat frame when half the
 * negotiated interval has passed since our last frame and reads whatever
 * the broker sent without blocking.
 *
 * An amqps:// URL gets a broker that proves who it is: its certificate
 * must chain to a CA of amqp.ca_file (or of the system store) and name the
 * URL's host, or the handshake fails and nothing is sent, not even the
 * login.
 */
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "amqp_link.h"
#include "log.h"
#include "util.h"

#define AMQP_LINK_CONNECT_TIMEOUT_S 5
#define AMQP_LINK_RPC_TIMEOUT_S 10
#define AMQP_LINK_CONTENT_TIMEOUT_MS 10000
#define AMQP_LINK_FRAME_MAX 131072

static uint64_t amqp_link_next_gen = 1;

static int amqp_link_dispatch(struct amqp_link *, amqp_frame_t *, char *,
    size_t);

void
amqp_link_fail(struct amqp_link *l, const char *why)
{
	if (l->dead)
		return;
	l->dead = 1;
	strlcpy(l->why, why, sizeof(l->why));
	log_warnx("amqp connection lost: %s", why);
}

static int
amqp_link_dead_err(struct amqp_link *l, char *err, size_t errlen)
{
	snprintf(err, errlen, "amqp: %s", l->why[0] ? l->why : "not connected");
	return -1;
}

/* Fill err from a failed status; the socket is gone after most of them. */
static int
amqp_link_status(struct amqp_link *l, int status, const char *what, char *err,
    size_t errlen)
{
	char why[256];

	snprintf(why, sizeof(why), "%s: %s", what, amqp_error_string2(status));
	amqp_link_fail(l, why);
	snprintf(err, errlen, "amqp %s", why);
	return -1;
}

static void
amqp_bytes_str(amqp_bytes_t b, char *buf, size_t len)
{
	size_t n;

	n = b.len < len - 1 ? b.len : len - 1;
	if (n > 0)
		memcpy(buf, b.bytes, n);
	buf[n] = '\0';
}

int
amqp_link_rpc_ok(struct amqp_link *l, const char *what, char *err,
    size_t errlen)
{
	return amqp_link_rpc_check(l, amqp_get_rpc_reply(l->conn), what, err,
	    errlen);
}

int
amqp_link_rpc_check(struct amqp_link *l, amqp_rpc_reply_t r, const char *what,
    char *err, size_t errlen)
{
	char text[160], why[256];

	l->last_code = 0;
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return 0;
	case AMQP_RESPONSE_NONE:
		snprintf(why, sizeof(why), "%s: no reply", what);
		amqp_link_fail(l, why);
		break;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		snprintf(why, sizeof(why), "%s: %s", what,
		    amqp_error_string2(r.library_error));
		amqp_link_fail(l, why);
		break;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_t *m = r.reply.decoded;
			amqp_connection_close_ok_t ok;

			amqp_bytes_str(m->reply_text, text, sizeof(text));
			snprintf(why, sizeof(why),
			    "%s: connection closed: %u %s", what, m->reply_code,
			    text);
			amqp_send_method(l->conn, 0,
			    AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
			amqp_link_fail(l, why);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			amqp_channel_close_t *m = r.reply.decoded;
			amqp_channel_close_ok_t ok;

			/*
			 * A channel error (a passive declare of a missing
			 * queue, a declare with other arguments) leaves the
			 * connection usable: answer and open the channel
			 * again, which drops confirm mode and consumers.
			 */
			l->last_code = m->reply_code;
			amqp_bytes_str(m->reply_text, text, sizeof(text));
			snprintf(why, sizeof(why), "%s: %u %s", what,
			    m->reply_code, text);
			amqp_send_method(l->conn, AMQP_LINK_CHANNEL,
			    AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
			l->confirm = 0;
			l->next_seq = 1;
			amqp_channel_open(l->conn, AMQP_LINK_CHANNEL);
			if (amqp_get_rpc_reply(l->conn).reply_type !=
			    AMQP_RESPONSE_NORMAL)
				amqp_link_fail(l, "channel.open failed");
			snprintf(err, errlen, "amqp %s", why);
			return -1;
		} else {
			snprintf(why, sizeof(why), "%s: server method 0x%08x",
			    what, r.reply.id);
			amqp_link_fail(l, why);
		}
		break;
	}
	snprintf(err, errlen, "amqp %s", why);
	return -1;
}

/*
 * Without AMQP heartbeats, TCP keepalive finds a peer gone silently within
 * about a minute.
 */
static void
amqp_link_tcp_keepalive(int fd)
{
	int on = 1, idle = 30, intvl = 10, cnt = 3;

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle,
	    sizeof(idle)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
	    sizeof(intvl)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) == -1)
		log_warn("amqp: TCP keepalive");
}

/* Keep OpenSSL's reason for the first certificate that fails. */
static int
amqp_link_verify_cb(int ok, X509_STORE_CTX *x)
{
	struct amqp_link *l;
	SSL *ssl;

	if (ok)
		return ok;
	ssl = X509_STORE_CTX_get_ex_data(x,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl == NULL ||
	    (l = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl))) == NULL ||
	    l->tls_err[0] != '\0')
		return ok;
	snprintf(l->tls_err, sizeof(l->tls_err), "certificate not verified: "
	    "%s (depth %d)", X509_verify_cert_error_string(
	    X509_STORE_CTX_get_error(x)), X509_STORE_CTX_get_error_depth(x));
	return ok;
}

/*
 * Make an SSL socket verify the broker: the chain against ca_file (empty:
 * the system store, which librabbitmq does not load by itself) and the
 * host, during the handshake.  librabbitmq's own host check matches DNS
 * names only, so for an address OpenSSL's check, which reads IP
 * subjectAltNames, is the only one.  0 / -1 with err.
 */
static int
amqp_link_tls_setup(struct amqp_link *l, amqp_socket_t *sock,
    const char *host, const char *ca_file, char *err, size_t errlen)
{
	unsigned char addr[sizeof(struct in6_addr)];
	X509_VERIFY_PARAM *vp;
	SSL_CTX *ctx;
	int is_addr;

	ctx = amqp_ssl_socket_get_context(sock);
	is_addr = inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1;
	if (ca_file != NULL && ca_file[0] != '\0') {
		if (amqp_ssl_socket_set_cacert(sock, ca_file) !=
		    AMQP_STATUS_OK) {
			snprintf(err, errlen, "amqp ca_file %s: cannot load "
			    "it", ca_file);
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "amqp: cannot load the system's CA "
		    "store");
		return -1;
	}
	vp = SSL_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_hostflags(vp,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_app_data(ctx, l) != 1 ||
	    (is_addr ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) :
	    X509_VERIFY_PARAM_set1_host(vp, host, 0)) != 1) {
		snprintf(err, errlen, "amqp: cannot set up TLS for %s", host);
		return -1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, amqp_link_verify_cb);
	amqp_ssl_socket_set_verify_peer(sock, 1);
	amqp_ssl_socket_set_verify_hostname(sock, !is_addr);
	return 0;
}

struct amqp_link *
amqp_link_connect(const char *url, const char *ca_file, int64_t heartbeat_ms,
    const char *name, char *err, size_t errlen)
{
	struct amqp_connection_info ci;
	struct amqp_link *l;
	amqp_socket_t *sock;
	amqp_table_entry_t prop;
	amqp_table_t props;
	amqp_rpc_reply_t r;
	struct timeval tv;
	char buf[CONFIG_URL_MAX];
	int rc;

	if (strlcpy(buf, url, sizeof(buf)) >= sizeof(buf)) {
		snprintf(err, errlen, "amqp url too long");
		return NULL;
	}
	amqp_default_connection_info(&ci);
	/* Never print the url: it carries the password. */
	if (amqp_parse_url(buf, &ci) != AMQP_STATUS_OK) {
		snprintf(err, errlen, "amqp url does not parse");
		return NULL;
	}

	l = wcalloc(1, sizeof(*l));
	TAILQ_INIT(&l->deliveries);
	l->gen = amqp_link_next_gen++;
	l->next_seq = 1;
	l->tls = ci.ssl;
	l->heartbeat_s = heartbeat_ms <= 0 ? 0 :
	    (int)((heartbeat_ms + 999) / 1000);
	if ((l->conn = amqp_new_connection()) == NULL)
		worker_oom();

	sock = ci.ssl ? amqp_ssl_socket_new(l->conn) :
	    amqp_tcp_socket_new(l->conn);
	if (sock == NULL) {
		snprintf(err, errlen, "amqp: cannot create socket");
		goto fail;
	}
	if (ci.ssl && amqp_link_tls_setup(l, sock, ci.host, ca_file, err,
	    errlen) == -1)
		goto fail;
	tv.tv_sec = AMQP_LINK_CONNECT_TIMEOUT_S;
	tv.tv_usec = 0;
	amqp_set_handshake_timeout(l->conn, &tv);
	if ((rc = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv)) !=
	    AMQP_STATUS_OK) {
		snprintf(err, errlen, "amqp connect %s:%d: %s%s%s", ci.host,
		    ci.port, amqp_error_string2(rc), l->tls_err[0] != '\0' ?
		    ": " : "", l->tls_err);
		goto fail;
	}
	fd_cloexec(amqp_get_sockfd(l->conn));
	if (l->heartbeat_s == 0)
		amqp_link_tcp_keepalive(amqp_get_sockfd(l->conn));
	tv.tv_sec = AMQP_LINK_RPC_TIMEOUT_S;
	amqp_set_rpc_timeout(l->conn, &tv);

	prop.key = amqp_cstring_bytes("connection_name");
	prop.value.kind = AMQP_FIELD_KIND_UTF8;
	prop.value.value.bytes = amqp_cstring_bytes(name);
	props.num_entries = 1;
	props.entries = &prop;
	/* login returns its reply; amqp_get_rpc_reply does not hold it. */
	r = amqp_login_with_properties(l->conn, ci.vhost, 0,
	    AMQP_LINK_FRAME_MAX, l->heartbeat_s, &props, AMQP_SASL_METHOD_PLAIN,
	    ci.user, ci.password);
	if (amqp_link_rpc_check(l, r, "login", err, errlen) == -1)
		goto fail;
	l->heartbeat_s = amqp_get_heartbeat(l->conn);
	amqp_channel_open(l->conn, AMQP_LINK_CHANNEL);
	if (amqp_link_rpc_ok(l, "channel.open", err, errlen) == -1)
		goto fail;
	l->last_send_ns = now_mono_ns();
	return l;
fail:
	l->dead = 1;
	amqp_link_close(l);
	return NULL;
}

void
amqp_link_close(struct amqp_link *l)
{
	struct amqp_delivery *d;
	struct timeval tv;

	if (l == NULL)
		return;
	if (!l->dead) {
		/* A broker that stopped answering must not hold us long. */
		tv.tv_sec = 2;
		tv.tv_usec = 0;
		amqp_set_rpc_timeout(l->conn, &tv);
		amqp_channel_close(l->conn, AMQP_LINK_CHANNEL,
		    AMQP_REPLY_SUCCESS);
		amqp_connection_close(l->conn, AMQP_REPLY_SUCCESS);
	}
	while ((d = TAILQ_FIRST(&l->deliveries)) != NULL) {
		TAILQ_REMOVE(&l->deliveries, d, entry);
		amqp_delivery_free(d);
	}
	if (l->conn != NULL)
		amqp_destroy_connection(l->conn);
	free(l);
}

struct amqp_link *
amqp_link_open(const struct config *cfg, char *err, size_t errlen)
{
	char name[128];

	snprintf(name, sizeof(name), "digestd pid=%d", (int)getpid());
	/*
	 * digestctl and the queue sampler use their link now and then and
	 * never pump it in between: with heartbeats the broker would close
	 * it after two intervals.  Heartbeats are for the worker's consumer.
	 */
	return amqp_link_connect(cfg->amqp.url, cfg->amqp.ca_file, 0, name,
	    err, errlen);
}

int
amqp_link_confirm_select(struct amqp_link *l, char *err, size_t errlen)
{
	if (l->dead)
		return amqp_link_dead_err(l, err, errlen);
	if (l->confirm)
		return 0;
	amqp_confirm_select(l->conn, AMQP_LINK_CHANNEL);
	if (amqp_link_rpc_ok(l, "confirm.select", err, errlen) == -1)
		return -1;
	l->confirm = 1;
	l->next_seq = 1;
	return 0;
}

/* Send a heartbeat frame if half the interval passed since our last frame. */
static int
amqp_link_heartbeat(struct amqp_link *l, char *err, size_t errlen)
{
	amqp_frame_t f;
	int64_t now;
	int rc;

	if (l->heartbeat_s <= 0)
		return 0;
	now = now_mono_ns();
	if (now - l->last_send_ns < (int64_t)l->heartbeat_s * 500000000LL)
		return 0;
	memset(&f, 0, sizeof(f));
	f.frame_type = AMQP_FRAME_HEARTBEAT;
	f.channel = 0;
	if ((rc = amqp_send_frame(l->conn, &f)) != AMQP_STATUS_OK)
		return amqp_link_status(l, rc, "heartbeat", err, errlen);
	l->last_send_ns = now;
	return 0;
}

/*
 * Read the header and body frames that follow a basic.deliver, basic.get-ok
 * or basic.return.  What is kept of the properties is copied out first:
 * the frames of a body that is not kept are given back to the channel's
 * pool one by one, which frees the decoded properties too.
 */
int
amqp_link_read_content(struct amqp_link *l, struct amqp_delivery *d,
    size_t max_body, char *err, size_t errlen)
{
	amqp_basic_properties_t *p;
	amqp_frame_t f;
	struct timeval tv;
	size_t size, got, n;
	int rc;

	tv_ms(&tv, AMQP_LINK_CONTENT_TIMEOUT_MS);
	rc = amqp_simple_wait_frame_noblock(l->conn, &f, &tv);
	if (rc != AMQP_STATUS_OK)
		return amqp_link_status(l, rc, "content header", err, errlen);
	if (f.frame_type != AMQP_FRAME_HEADER ||
	    f.channel != AMQP_LINK_CHANNEL) {
		amqp_link_fail(l, "content header expected");
		return amqp_link_dead_err(l, err, errlen);
	}
	size = (size_t)f.payload.properties.body_size;
	p = f.payload.properties.decoded;
	d->len = size;
	d->message_id[0] = '\0';
	if (p != NULL && (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG))
		amqp_bytes_str(p->message_id, d->message_id,
		    sizeof(d->message_id));
	if (p != NULL && (p->_flags & AMQP_BASIC_HEADERS_FLAG)) {
		if (amqp_table_clone(&p->headers, &d->headers, &d->pool) !=
		    AMQP_STATUS_OK)
			worker_oom();
	}
	d->unread = size > max_body;
	if (!d->unread)
		d->body = wmalloc(size + 1);
	for (got = 0; got < size; got += n) {
		if (d->unread) {
			/*
			 * Nothing of the content is kept: its frames go back
			 * to the pool before the next one is read.  A long
			 * body must not cost us the connection either.
			 */
			amqp_maybe_release_buffers_on_channel(l->conn,
			    AMQP_LINK_CHANNEL);
			if (amqp_link_heartbeat(l, err, errlen) == -1)
				return -1;
		}
		tv_ms(&tv, AMQP_LINK_CONTENT_TIMEOUT_MS);
		rc = amqp_simple_wait_frame_noblock(l->conn, &f, &tv);
		if (rc != AMQP_STATUS_OK)
			return amqp_link_status(l, rc, "content body", err,
			    errlen);
		if (f.frame_type != AMQP_FRAME_BODY ||
		    f.channel != AMQP_LINK_CHANNEL ||
		    f.payload.body_fragment.len > size - got) {
			amqp_link_fail(l, "content body expected");
			return amqp_link_dead_err(l, err, errlen);
		}
		n = f.payload.body_fragment.len;
		if (d->body != NULL)
			memcpy(d->body + got, f.payload.body_fragment.bytes, n);
	}
	if (d->body != NULL)
		d->body[size] = '\0';
	return 0;
}

struct amqp_delivery *
amqp_delivery_new(void)
{
	struct amqp_delivery *d;

	d = wcalloc(1, sizeof(*d));
	init_amqp_pool(&d->pool, 4096);
	return d;
}

void
amqp_delivery_free(struct amqp_delivery *d)
{
	if (d == NULL)
		return;
	empty_amqp_pool(&d->pool);
	free(d->body);
	free(d);
}

struct amqp_delivery *
amqp_link_take(struct amqp_link *l)
{
	struct amqp_delivery *d;

	if ((d = TAILQ_FIRST(&l->deliveries)) == NULL)
		return NULL;
	TAILQ_REMOVE(&l->deliveries, d, entry);
	l->ndeliveries--;
	return d;
}

static void
amqp_link_confirmed(struct amqp_link *l, uint64_t tag, int multiple,
    uint8_t outcome)
{
	struct amqp_confirm_set *s = l->waiting;
	uint64_t lo, hi, seq;

	if (s == NULL || s->n == 0)
		return;
	lo = multiple ? s->first : tag;
	if (lo < s->first)
		lo = s->first;
	hi = tag;
	if (hi > s->first + s->n - 1)
		hi = s->first + s->n - 1;
	for (seq = lo; seq <= hi; seq++) {
		if (s->state[seq - s->first] == AMQP_CONFIRM_PENDING) {
			s->state[seq - s->first] = outcome;
			s->pending--;
		}
	}
}

static void
amqp_link_returned(struct amqp_link *l, const char *id)
{
	struct amqp_confirm_set *s = l->waiting;
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++) {
		if (s->state[i] != AMQP_CONFIRM_PENDING || s->returned[i])
			continue;
		/* A set of one needs no id: it is the only message out. */
		if (s->n == 1 || s->ids == NULL ||
		    (s->ids[i] != NULL && strcmp(s->ids[i], id) == 0)) {
			s->returned[i] = 1;
			return;
		}
	}
}

static int
amqp_link_dispatch(struct amqp_link *l, amqp_frame_t *f, char *err,
    size_t errlen)
{
	struct amqp_delivery *d;
	char text[160], why[256];

	if (f->frame_type != AMQP_FRAME_METHOD)
		return 0;	/* stray content of nothing we asked for */
	switch (f->payload.method.id) {
	case AMQP_BASIC_DELIVER_METHOD: {
		amqp_basic_deliver_t *m = f->payload.method.decoded;

		d = amqp_delivery_new();
		d->tag = m->delivery_tag;
		d->redelivered = m->redelivered;
		amqp_bytes_str(m->routing_key, d->routing_key,
		    sizeof(d->routing_key));
		if (amqp_link_read_content(l, d, AMQP_LINK_BODY_MAX, err,
		    errlen) == -1) {
			amqp_delivery_free(d);
			return -1;
		}
		TAILQ_INSERT_TAIL(&l->deliveries, d, entry);
		l->ndeliveries++;
		return 0;
	}
	case AMQP_BASIC_ACK_METHOD: {
		amqp_basic_ack_t *m = f->payload.method.decoded;

		amqp_link_confirmed(l, m->delivery_tag, m->multiple,
		    AMQP_CONFIRM_ACK);
		return 0;
	}
	case AMQP_BASIC_NACK_METHOD: {
		amqp_basic_nack_t *m = f->payload.method.decoded;

		amqp_link_confirmed(l, m->delivery_tag, m->multiple,
		    AMQP_CONFIRM_NACK);
		return 0;
	}
	case AMQP_BASIC_RETURN_METHOD: {
		amqp_basic_return_t *m = f->payload.method.decoded;

		amqp_bytes_str(m->reply_text, text, sizeof(text));
		log_debug("amqp basic.return %u %s", m->reply_code, text);
		/* An email sent back: its message id is all we need. */
		d = amqp_delivery_new();
		if (amqp_link_read_content(l, d, 0, err, errlen) == -1) {
			amqp_delivery_free(d);
			return -1;
		}
		amqp_link_returned(l, d->message_id);
		amqp_delivery_free(d);
		return 0;
	}
	case AMQP_BASIC_CANCEL_METHOD:
		/* The broker cancelled our consumer (queue deleted...). */
		amqp_link_fail(l, "consumer cancelled by the broker");
		return amqp_link_dead_err(l, err, errlen);
	case AMQP_CHANNEL_CLOSE_METHOD: {
		amqp_channel_close_t *m = f->payload.method.decoded;
		amqp_channel_close_ok_t ok;

		amqp_bytes_str(m->reply_text, text, sizeof(text));
		snprintf(why, sizeof(why),
		    "channel closed by the broker: %u %s", m->reply_code, text);
		amqp_send_method(l->conn, AMQP_LINK_CHANNEL,
		    AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
		amqp_link_fail(l, why);
		return amqp_link_dead_err(l, err, errlen);
	}
	case AMQP_CONNECTION_CLOSE_METHOD: {
		amqp_connection_close_t *m = f->payload.method.decoded;
		amqp_connection_close_ok_t ok;

		amqp_bytes_str(m->reply_text, text, sizeof(text));
		snprintf(why, sizeof(why),
		    "connection closed by the broker: %u %s", m->reply_code,
		    text);
		amqp_send_method(l->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD,
		    &ok);
		amqp_link_fail(l, why);
		return amqp_link_dead_err(l, err, errlen);
	}
	case AMQP_CONNECTION_BLOCKED_METHOD:
		log_warnx("amqp broker blocked the connection "
		    "(resource alarm)");
		return 0;
	case AMQP_CONNECTION_UNBLOCKED_METHOD:
		log_info("amqp broker unblocked the connection");
		return 0;
	default:
		log_debug("amqp ignored method 0x%08x", f->payload.method.id);
		return 0;
	}
}

int
amqp_link_pump(struct amqp_link *l, int timeout_ms, char *err, size_t errlen)
{
	amqp_frame_t f;
	struct timeval tv;
	int64_t deadline, left, cap;
	size_t before;
	int rc;

	if (l->dead)
		return amqp_link_dead_err(l, err, errlen);
	deadline = now_mono_ns() + (int64_t)timeout_ms * 1000000;
	before = l->ndeliveries;
	for (;;) {
		if (amqp_link_heartbeat(l, err, errlen) == -1)
			return -1;
		left = (deadline - now_mono_ns()) / 1000000;
		/* Wake in time to send our own heartbeats while waiting. */
		cap = l->heartbeat_s > 0 ? l->heartbeat_s * 500 : 1000;
		if (left > cap)
			left = cap;
		tv_ms(&tv, left);
		rc = amqp_simple_wait_frame_noblock(l->conn, &f, &tv);
		if (rc == AMQP_STATUS_TIMEOUT) {
			if (now_mono_ns() >= deadline)
				return 0;
			continue;
		}
		if (rc != AMQP_STATUS_OK)
			return amqp_link_status(l, rc, "read", err, errlen);
		if (amqp_link_dispatch(l, &f, err, errlen) == -1)
			return -1;
		amqp_maybe_release_buffers(l->conn);
		if (l->waiting != NULL && l->waiting->pending == 0)
			return 0;
		if (l->ndeliveries > before)
			return 0;
	}
}

int
amqp_link_publish(struct amqp_link *l, const char *exchange,
    const char *routing_key, int mandatory, const amqp_basic_properties_t *p,
    const void *body, size_t len, uint64_t *seq, char *err, size_t errlen)
{
	amqp_bytes_t b;
	int rc;

	if (l->dead)
		return amqp_link_dead_err(l, err, errlen);
	b.len = len;
	b.bytes = (void *)(uintptr_t)body;
	rc = amqp_basic_publish(l->conn, AMQP_LINK_CHANNEL,
	    amqp_cstring_bytes(exchange), amqp_cstring_bytes(routing_key),
	    mandatory, 0, p, b);
	if (rc != AMQP_STATUS_OK)
		return amqp_link_status(l, rc, "basic.publish", err, errlen);
	l->last_send_ns = now_mono_ns();
	if (seq != NULL)
		*seq = l->next_seq;
	if (l->confirm)
		l->next_seq++;
	return 0;
}

int
amqp_link_write_frames(struct amqp_link *l, struct iovec *iov, int iovcnt,
    int timeout_ms, char *err, size_t errlen)
{
	struct pollfd pfd;
	struct msghdr mh;
	int64_t deadline, left;
	ssize_t w;
	int fd, hb, rc;

	if (l->dead)
		return amqp_link_dead_err(l, err, errlen);
	if (l->tls) {
		amqp_link_fail(l, "raw frames on a TLS connection");
		return amqp_link_dead_err(l, err, errlen);
	}
	fd = amqp_get_sockfd(l->conn);
	deadline = now_mono_ns() + (int64_t)timeout_ms * 1000000;
	while (iovcnt > 0) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = iovcnt < IOV_MAX ? iovcnt : IOV_MAX;
		if ((w = sendmsg(fd, &mh, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				amqp_link_fail(l, strerror(errno));
				return amqp_link_dead_err(l, err, errlen);
			}
			/*
			 * A broker that stopped reading (a resource alarm
			 * blocks publishers) holds the batch up to the
			 * deadline; part of a frame may be out, so the
			 * connection cannot be used again after that.
			 * Meanwhile its confirms are read, so that neither
			 * side waits on the other's full buffer.
			 */
			left = (deadline - now_mono_ns()) / 1000000;
			if (left <= 0) {
				amqp_link_fail(l, "publish: the broker stopped "
				    "reading");
				return amqp_link_dead_err(l, err, errlen);
			}
			pfd.fd = fd;
			pfd.events = POLLOUT | POLLIN;
			pfd.revents = 0;
			if (left > 1000)
				left = 1000;
			if (poll(&pfd, 1, (int)left) <= 0 ||
			    !(pfd.revents & POLLIN))
				continue;
			/* No heartbeat frame inside one cut short. */
			hb = l->heartbeat_s;
			l->heartbeat_s = 0;
			rc = amqp_link_pump(l, 0, err, errlen);
			l->heartbeat_s = hb;
			if (rc == -1)
				return -1;
			continue;
		}
		while (iovcnt > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	l->last_send_ns = now_mono_ns();
	return 0;
}

int
amqp_link_wait_confirms(struct amqp_link *l, struct amqp_confirm_set *s,
    int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline, left;
	int rc = 0;

	deadline = now_mono_ns() + (int64_t)timeout_ms * 1000000;
	l->waiting = s;
	while (s->pending > 0) {
		left = (deadline - now_mono_ns()) / 1000000;
		if (left <= 0) {
			snprintf(err, errlen, "amqp: no publisher confirm "
			    "within %d ms", timeout_ms);
			rc = -1;
			break;
		}
		if (amqp_link_pump(l, (int)left, err, errlen) == -1) {
			rc = -1;
			break;
		}
	}
	l->waiting = NULL;
	return rc;
}

int
amqp_link_publish_confirmed(struct amqp_link *l, const char *exchange,
    const char *routing_key, int mandatory, const amqp_basic_properties_t *p,
    const void *body, size_t len, char *err, size_t errlen)
{
	struct amqp_confirm_set s;
	uint8_t state = AMQP_CONFIRM_PENDING, returned = 0;
	uint64_t seq;

	if (amqp_link_confirm_select(l, err, errlen) == -1)
		return -1;
	if (amqp_link_publish(l, exchange, routing_key, mandatory, p, body, len,
	    &seq, err, errlen) == -1)
		return -1;
	memset(&s, 0, sizeof(s));
	s.first = seq;
	s.n = 1;
	s.state = &state;
	s.returned = &returned;
	s.pending = 1;
	if (amqp_link_wait_confirms(l, &s, AMQP_LINK_CONFIRM_TIMEOUT_MS, err,
	    errlen) == -1)
		return -1;
	if (state == AMQP_CONFIRM_NACK) {
		snprintf(err, errlen,
		    "amqp: broker refused the message (nack)");
		return -1;
	}
	if (returned) {
		snprintf(err, errlen, "amqp: message unroutable (exchange %s, "
		    "routing key %s)", exchange, routing_key);
		return -1;
	}
	return 0;
}

int
amqp_link_ack(struct amqp_link *l, uint64_t tag, int multiple)
{
	int rc;

	if (l->dead)
		return -1;
	if ((rc = amqp_basic_ack(l->conn, AMQP_LINK_CHANNEL, tag, multiple)) !=
	    AMQP_STATUS_OK) {
		amqp_link_fail(l, amqp_error_string2(rc));
		return -1;
	}
	l->last_send_ns = now_mono_ns();
	return 0;
}

int
amqp_link_nack(struct amqp_link *l, uint64_t tag, int multiple, int requeue)
{
	int rc;

	if (l->dead)
		return -1;
	if ((rc = amqp_basic_nack(l->conn, AMQP_LINK_CHANNEL, tag, multiple,
	    requeue)) != AMQP_STATUS_OK) {
		amqp_link_fail(l, amqp_error_string2(rc));
		return -1;
	}
	l->last_send_ns = now_mono_ns();
	return 0;
}

int
amqp_table_get_str(const amqp_table_t *t, const char *key, char *buf,
    size_t len)
{
	const amqp_field_value_t *v;
	size_t klen = strlen(key);
	int i;

	buf[0] = '\0';
	for (i = 0; i < t->num_entries; i++) {
		if (t->entries[i].key.len != klen ||
		    memcmp(t->entries[i].key.bytes, key, klen) != 0)
			continue;
		v = &t->entries[i].value;
		switch (v->kind) {
		case AMQP_FIELD_KIND_UTF8:
		case AMQP_FIELD_KIND_BYTES:
			amqp_bytes_str(v->value.bytes, buf, len);
			return 0;
		case AMQP_FIELD_KIND_I8:
			snprintf(buf, len, "%d", v->value.i8);
			return 0;
		case AMQP_FIELD_KIND_U8:
			snprintf(buf, len, "%u", v->value.u8);
			return 0;
		case AMQP_FIELD_KIND_I16:
			snprintf(buf, len, "%d", v->value.i16);
			return 0;
		case AMQP_FIELD_KIND_U16:
			snprintf(buf, len, "%u", v->value.u16);
			return 0;
		case AMQP_FIELD_KIND_I32:
			snprintf(buf, len, "%" PRId32, v->value.i32);
			return 0;
		case AMQP_FIELD_KIND_U32:
			snprintf(buf, len, "%" PRIu32, v->value.u32);
			return 0;
		case AMQP_FIELD_KIND_I64:
			snprintf(buf, len, "%" PRId64, v->value.i64);
			return 0;
		case AMQP_FIELD_KIND_U64:
			snprintf(buf, len, "%" PRIu64, v->value.u64);
			return 0;
		default:
			return -1;
		}
	}
	return -1;
}
