/*
 * The SMTP transport, with libESMTP: up to smtp.messages_per_session
 * messages per SMTP session (libESMTP pipelines MAIL, RCPT and DATA when
 * the server offers PIPELINING), STARTTLS and AUTH as configured.
 *
 * Each message is judged by the server's own replies to it (MAIL FROM,
 * RCPT TO, then the end of DATA), never by how the session went: 2xx is
 * sent, 4xx deferred, 5xx rejected.  Outcomes are reported as the replies
 * arrive, from libESMTP's event callback, so that the caller can move its
 * checkpoint message by message.  A message the session never reached
 * (the server is unreachable, the connection dropped) has no outcome, and
 * flush returns -1 for it, telling failure() why: connect, tls, auth,
 * sender (MAIL FROM refused) or protocol.
 *
 * With starttls = required the server must prove who it is before it gets
 * anything: OpenSSL verifies the chain against tls_ca_file (or the system
 * store) and the host name or address against smtp.host during the
 * handshake, so a session to anyone else ends there, before AUTH and
 * before any message.  AUTH itself is offered to libESMTP only once TLS is
 * up, unless the operator allowed it in clear.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <auth-client.h>
#include <libesmtp.h>

#include "address.h"
#include "log.h"
#include "mime.h"
#include "render.h"
#include "transport.h"
#include "util.h"

/* Replies slower than this end the session: the worker must keep ticking. */
#define SMTP_TIMEOUT_MS		30000

enum { OUT_NONE = -1 };

/*
 * A queued message.  Its bytes and strings are in the transport's buffers,
 * which may move while messages are queued: e's pointers are set from the
 * offsets when the flush starts.
 */
struct smsg {
	struct email e;
	struct transport *t;
	size_t data_off;	/* in t->msgs */
	size_t rcpt_off;	/* in t->strs, as are the two below */
	size_t mid_off;
	size_t job_off;
	int outcome;		/* enum tp_result, or OUT_NONE */
	int given;		/* the message callback handed the data out */
	int refused;		/* the 5xx to MAIL FROM (no verdict on rcpt) */
	char detail[160];	/* why it failed; empty when sent */
	char from[ADDRESS_MAX + 2];	/* MAIL FROM, its {uid} and {gid} set */
	smtp_message_t m;	/* owned by the session */
	smtp_recipient_t r;
};

struct transport {
	const struct config *cfg;
	char server[CONFIG_STR_MAX + 16];
	auth_context_t auth;
	int auth_in_clear;	/* AUTH may go before TLS (allowed) */
	SSL_CTX *tls;		/* for STARTTLS; NULL when off */
	int verify;		/* the certificate must verify */
	char sni[CONFIG_STR_MAX]; /* the server name sent; "" for an address */
	struct smsg *q;
	size_t nq;
	size_t capq;
	/*
	 * The queued messages, one after the other, and their envelope
	 * strings: grown as needed, kept across flushes, so that a message
	 * costs no allocation once they have grown to a session's size.
	 */
	struct rbuf msgs;
	struct rbuf strs;
	int verp;		/* envelope_from has {uid} or {gid} */
	int fd_hint;		/* the fd the session's socket should get */
	int fd;			/* the session's socket, once found; or -1 */
	int corked;		/* TCP_CORK is on, around a message's body */
	int chunking;		/* the server offered CHUNKING */
	int no_starttls;	/* the server did not offer STARTTLS */
	/* What the session got to, for smtp_failure. */
	int connected;
	int quitting;		/* QUIT sent: the replies no longer tell */
	int last_code;		/* the last reply seen before that */
	char last_refusal[96];	/* the last 4xx or 5xx of those */
	int tls_sent;		/* STARTTLS sent ... */
	int tls_up;		/* ... and the handshake done */
	char tls_err[192];	/* why TLS was refused, from OpenSSL */
	/* Before TLS: to find replies that did not answer a command. */
	int clear_cmds;		/* command lines sent */
	int clear_replies;	/* replies read (their last lines) */
	size_t clear_tail;	/* bytes read after the last reply */
	char clear_head[4];	/* the start of the line being read */
	size_t clear_len;	/* its length so far */
	int auth_state;		/* enum smtp_auth_state */
	char refusal[96];	/* the reply refusing STARTTLS or AUTH */
	enum transport_failure failure;	/* why the last flush failed */
	/* During a flush. */
	size_t next;		/* first message not yet reported */
	transport_result_cb cb;
	void *cb_arg;
};

enum smtp_auth_state { AUTH_NONE, AUTH_SENT, AUTH_OK, AUTH_REFUSED };

static int smtp_auth_inited;

/* libESMTP asks for the user and password here when AUTH is used. */
static int
smtp_auth_interact(auth_client_request_t req, char **result, int fields,
    void *arg)
{
	struct transport *t = arg;
	int i;

	for (i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_USER)
			result[i] = (char *)t->cfg->smtp.username;
		else if (req[i].flags & AUTH_PASS)
			result[i] = (char *)t->cfg->smtp.password;
		else
			result[i] = (char *)"";
	}
	return 1;
}

/* The transport an SSL belongs to: its SSL_CTX carries it. */
static struct transport *
smtp_tls_transport(const SSL *ssl)
{
	return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/*
 * libESMTP creates the SSL and starts the handshake in one go, so the
 * server name (SNI) is set here, as the handshake starts, before the
 * ClientHello is written.  The cast is OpenSSL's own habit: the callback
 * gets a const SSL that the handshake itself is about to change.
 */
static void
smtp_tls_info_cb(const SSL *ssl, int where, int ret)
{
	struct transport *t;

	if (!(where & SSL_CB_HANDSHAKE_START))
		return;
	t = smtp_tls_transport(ssl);
	if (t != NULL && t->sni[0] != '\0')
		(void)SSL_set_tlsext_host_name((SSL *)ssl, t->sni);
}

/* Keep OpenSSL's reason for the first certificate that fails. */
static int
smtp_tls_verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl;
	struct transport *t;

	if (ok)
		return ok;
	ssl = X509_STORE_CTX_get_ex_data(x,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl == NULL || (t = smtp_tls_transport(ssl)) == NULL ||
	    t->tls_err[0] != '\0')
		return ok;
	snprintf(t->tls_err, sizeof(t->tls_err), "certificate not "
	    "verified: %s (depth %d)", X509_verify_cert_error_string(
	    X509_STORE_CTX_get_error(x)), X509_STORE_CTX_get_error_depth(x));
	return ok;
}

/*
 * The SSL_CTX every session of this transport uses.  With starttls =
 * required (and tls_verify not turned off), the handshake itself fails
 * unless the chain leads to a CA of tls_ca_file, or of the system store,
 * and the certificate names smtp.host (a host name, or an address in an
 * IP subjectAltName).
 */
static int
smtp_tls_setup(struct transport *t, char *err, size_t errlen)
{
	const struct config *cfg = t->cfg;
	const char *host = cfg->smtp.host, *e;
	X509_VERIFY_PARAM *vp;
	unsigned char addr[sizeof(struct in6_addr)];
	int is_addr;

	is_addr = inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1;
	/* RFC 6066: an address is never sent as a server name. */
	if (!is_addr)
		strlcpy(t->sni, host, sizeof(t->sni));
	t->verify = cfg->smtp.starttls == STARTTLS_REQUIRED &&
	    cfg->smtp.tls_verify;
	if ((t->tls = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(t->tls, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_app_data(t->tls, t) != 1) {
		snprintf(err, errlen, "smtp: cannot set up TLS");
		return -1;
	}
	SSL_CTX_set_options(t->tls, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_info_callback(t->tls, smtp_tls_info_cb);
	if (!t->verify)
		return 0;
	ERR_clear_error();
	if (cfg->smtp.tls_ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(t->tls,
		    cfg->smtp.tls_ca_file, NULL) != 1) {
			e = ERR_reason_error_string(ERR_peek_last_error());
			snprintf(err, errlen, "smtp: tls_ca_file %s: %s",
			    cfg->smtp.tls_ca_file, e != NULL ? e :
			    "no certificate in it");
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(t->tls) != 1) {
		snprintf(err, errlen, "smtp: cannot load the system's CA "
		    "store");
		return -1;
	}
	vp = SSL_CTX_get0_param(t->tls);
	X509_VERIFY_PARAM_set_hostflags(vp,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if ((is_addr ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) :
	    X509_VERIFY_PARAM_set1_host(vp, host, 0)) != 1) {
		snprintf(err, errlen, "smtp: cannot verify against host %s",
		    host);
		return -1;
	}
	SSL_CTX_set_verify(t->tls, SSL_VERIFY_PEER, smtp_tls_verify_cb);
	return 0;
}

/* Wait up to the SMTP timeout for what an SSL call wants; 0 / -1. */
static int
smtp_tls_wait(SSL *ssl, int rc)
{
	struct pollfd pfd;
	int e;

	e = SSL_get_error(ssl, rc);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
		return -1;
	pfd.fd = SSL_get_fd(ssl);
	pfd.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
	pfd.revents = 0;
	while ((rc = poll(&pfd, 1, SMTP_TIMEOUT_MS)) == -1 && errno == EINTR)
		;
	return rc == 1 ? 0 : -1;
}

/*
 * Under TLS 1.3 the server sends its session tickets after the handshake,
 * in records of their own.  libESMTP, once STARTTLS is done, queues EHLO
 * and polls to read and to write at once; when the tickets are already
 * there it reads first, OpenSSL takes in the tickets and finds no reply,
 * and libESMTP waits for the reply to an EHLO still in its buffer until
 * the timeout ends the session.  Whether the tickets win that race is a
 * matter of microseconds: about one session in three on loopback.
 *
 * So the tickets are taken in here, before libESMTP goes on: a NOOP, sent
 * and answered inside TLS, comes back after anything the server sent
 * first.  Its reply, whatever the code, is consumed.  If none comes the
 * session is ended (its socket shut down, so that libESMTP fails at once)
 * and -1 returned.
 */
static int
smtp_tls13_settle(struct transport *t, SSL *ssl)
{
	char buf[512];
	size_t have = 0;
	const char *line, *nl;
	int n;

	while ((n = SSL_write(ssl, "NOOP\r\n", 6)) <= 0)
		if (smtp_tls_wait(ssl, n) == -1)
			goto fail;
	for (;;) {
		if ((n = SSL_read(ssl, buf + have, sizeof(buf) - 1 - have))
		    <= 0) {
			if (smtp_tls_wait(ssl, n) == -1)
				goto fail;
			continue;
		}
		have += (size_t)n;
		buf[have] = '\0';
		/* Done at the last line: three digits, then text or not. */
		for (line = buf; (nl = strchr(line, '\n')) != NULL;
		    line = nl + 1)
			if (nl - line >= 3 && line[3] != '-')
				return 0;
		/* Keep the unfinished line only. */
		have = strlen(line);
		memmove(buf, line, have + 1);
		if (have == sizeof(buf) - 1)
			have = 0;
	}
fail:
	snprintf(t->tls_err, sizeof(t->tls_err), "no reply to NOOP after "
	    "the TLS 1.3 handshake");
	(void)shutdown(SSL_get_fd(ssl), SHUT_RDWR);
	return -1;
}

static struct transport *
smtp_open(const struct config *cfg, char *err, size_t errlen)
{
	struct transport *t;

	if (cfg->smtp.host[0] == '\0') {
		snprintf(err, errlen, "[smtp] host is empty");
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	t->cfg = cfg;
	t->fd = -1;
	t->failure = TF_PROTOCOL;
	t->verp = address_verp_needed(cfg->smtp.envelope_from);
	/* An IPv6 literal needs brackets before the port. */
	if (strchr(cfg->smtp.host, ':') != NULL)
		snprintf(t->server, sizeof(t->server), "[%s]:%d",
		    cfg->smtp.host, cfg->smtp.port);
	else
		snprintf(t->server, sizeof(t->server), "%s:%d",
		    cfg->smtp.host, cfg->smtp.port);
	if (cfg->smtp.starttls != STARTTLS_OFF &&
	    smtp_tls_setup(t, err, errlen) == -1) {
		SSL_CTX_free(t->tls);
		free(t);
		return NULL;
	}
	if (cfg->smtp.username[0] != '\0') {
		if (!smtp_auth_inited) {
			auth_client_init();
			smtp_auth_inited = 1;
		}
		if ((t->auth = auth_create_context()) == NULL) {
			SSL_CTX_free(t->tls);
			free(t);
			snprintf(err, errlen, "smtp: cannot create the AUTH "
			    "context");
			return NULL;
		}
		/*
		 * PLAIN and LOGIN send the password itself: the context is
		 * handed to a session only inside TLS (smtp_event_cb), or
		 * from the start when the operator allowed AUTH in clear.
		 */
		auth_set_mechanism_flags(t->auth, AUTH_PLUGIN_PLAIN, 0);
		auth_set_interact_cb(t->auth, smtp_auth_interact, t);
		t->auth_in_clear = cfg->smtp.allow_plaintext_auth &&
		    cfg->smtp.starttls != STARTTLS_REQUIRED;
	}
	return t;
}

/* The buffer the next message may be rendered into, to be sent from. */
static struct rbuf *
smtp_buffer(struct transport *t)
{
	return &t->msgs;
}

/* Append s and its NUL to t->strs; its offset there. */
static size_t
smtp_keep(struct transport *t, const char *s)
{
	size_t off = t->strs.len;

	rbuf_add(&t->strs, s, strlen(s) + 1);
	return off;
}

static int
smtp_send(struct transport *t, const struct email *e)
{
	struct smsg *s;
	uintptr_t d = (uintptr_t)e->data, b = (uintptr_t)t->msgs.p;

	if (t->nq == t->capq) {
		t->capq = t->capq ? t->capq * 2 : 64;
		t->q = wrealloc(t->q, t->capq * sizeof(*t->q));
	}
	s = &t->q[t->nq];
	s->t = t;
	s->e.uid = e->uid;
	s->e.gid = e->gid;
	s->e.len = e->len;
	/* Rendered into smtp_buffer: it is in place already. */
	if (b != 0 && e->len <= t->msgs.len &&
	    d == b + (t->msgs.len - e->len))
		s->data_off = t->msgs.len - e->len;
	else if (b != 0 && d >= b && d + e->len <= b + t->msgs.len) {
		/* Elsewhere in it: growing it may move the source. */
		d -= b;
		rbuf_reserve(&t->msgs, e->len + 1);
		s->data_off = t->msgs.len;
		memmove(t->msgs.p + t->msgs.len, t->msgs.p + d, e->len);
		t->msgs.len += e->len;
		t->msgs.p[t->msgs.len] = '\0';
	} else {
		s->data_off = t->msgs.len;
		rbuf_add(&t->msgs, e->data, e->len);
	}
	s->rcpt_off = smtp_keep(t, e->rcpt);
	s->mid_off = smtp_keep(t, e->message_id);
	s->job_off = smtp_keep(t, e->job_id);
	/*
	 * VERP: a bounce names its recipient and group in the address it
	 * comes back to.  The pattern was checked at start to fit.
	 */
	if (t->verp && address_verp(t->cfg->smtp.envelope_from, e->uid,
	    e->gid, s->from, sizeof(s->from)) == -1)
		strlcpy(s->from, t->cfg->smtp.envelope_from, sizeof(s->from));
	s->outcome = OUT_NONE;
	s->given = s->refused = 0;
	s->detail[0] = '\0';
	s->m = NULL;
	s->r = NULL;
	t->nq++;
	return 0;
}

/*
 * TCP_CORK around a message's body: libESMTP writes it in 2 KiB pieces,
 * each a segment of its own under TCP_NODELAY; corked, they leave as
 * full segments, and the rest as the cork comes off at the body's end.
 * Taken off at the end of every message, at a rewind, at every reply
 * and when the session ends, so that nothing ever waits in the cork for
 * a reply that cannot come.
 */
static void
smtp_cork(struct transport *t, int on)
{
	if (t->corked == on || t->fd == -1)
		return;
	(void)setsockopt(t->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
	t->corked = on;
}

/*
 * Hand the message out of memory in one piece.  libESMTP rewinds with
 * len == NULL.  *ctx is left NULL: libESMTP frees it.
 */
static const char *
smtp_message_cb(void **ctx, int *len, void *arg)
{
	struct smsg *s = arg;
	struct transport *t = s->t;

	if (len == NULL) {
		s->given = 0;
		smtp_cork(t, 0);
		return NULL;
	}
	if (s->given || s->e.len == 0) {
		/* The body's end: what is corked leaves now. */
		smtp_cork(t, 0);
		*len = 0;
		return NULL;
	}
	s->given = 1;
	/* BDAT may wait for a reply between chunks: no cork there. */
	if (!t->chunking)
		smtp_cork(t, 1);
	*len = (int)s->e.len;
	return s->e.data;
}

/* The class of an SMTP reply code, or OUT_NONE without a reply. */
static int
smtp_classify(const smtp_status_t *st)
{
	if (st == NULL || st->code < 200)
		return OUT_NONE;
	if (st->code < 400)
		return TP_SENT;
	if (st->code < 500)
		return TP_DEFERRED;
	return TP_REJECTED;
}

static void
smtp_set_outcome(struct smsg *s, int outcome, const smtp_status_t *st)
{
	if (s->outcome != OUT_NONE || outcome == OUT_NONE)
		return;
	s->outcome = outcome;
	/* Nobody reads the reply to a message sent. */
	if (outcome == TP_SENT)
		return;
	/*
	 * libESMTP takes the enhanced status out of the text when the
	 * server offers ENHANCEDSTATUSCODES: put it back, since it says
	 * whether the mailbox exists (5.1.1) or the message was refused.
	 */
	if (st != NULL && st->enh_class != 0)
		snprintf(s->detail, sizeof(s->detail), "%d %d.%d.%d %s",
		    st->code, st->enh_class, st->enh_subject, st->enh_detail,
		    st->text ? st->text : "");
	else if (st != NULL)
		snprintf(s->detail, sizeof(s->detail), "%d %s", st->code,
		    st->text ? st->text : "");
	/* A reply text ends with CRLF; the logs want one line. */
	s->detail[strcspn(s->detail, "\r\n")] = '\0';
}

/*
 * What the replies so far say about s: a failed MAIL FROM or RCPT TO
 * decides, then the reply to the end of DATA.
 */
static void
smtp_judge(struct smsg *s)
{
	const smtp_status_t *st;
	int o;

	st = smtp_reverse_path_status(s->m);
	if ((o = smtp_classify(st)) == TP_REJECTED) {
		/*
		 * A 5xx to MAIL FROM speaks of the sender or the session
		 * (530 authentication required, 550 sender refused), not of
		 * this recipient: the message gets no outcome and the job is
		 * retried, rather than its recipients counted rejected.
		 */
		if (!s->refused)
			snprintf(s->detail, sizeof(s->detail), "MAIL FROM "
			    "refused: %d %s", st->code,
			    st->text ? st->text : "");
		s->detail[strcspn(s->detail, "\r\n")] = '\0';
		s->refused = st->code;
		return;
	}
	if (o == TP_DEFERRED) {
		/*
		 * A 4xx to MAIL FROM (421 closing, 451 local trouble) is
		 * about the session, not this recipient: no outcome, so the
		 * message goes in the next session, and a server that keeps
		 * refusing makes the flush fail as an outage.
		 */
		if (st != NULL)
			snprintf(s->detail, sizeof(s->detail), "MAIL FROM "
			    "deferred: %d %s", st->code,
			    st->text ? st->text : "");
		s->detail[strcspn(s->detail, "\r\n")] = '\0';
		return;
	}
	st = smtp_recipient_status(s->r);
	if ((o = smtp_classify(st)) != OUT_NONE && o != TP_SENT) {
		smtp_set_outcome(s, o, st);
		return;
	}
	st = smtp_message_transfer_status(s->m);
	smtp_set_outcome(s, smtp_classify(st), st);
}

/* Report, in queue order, every message whose outcome is known. */
static void
smtp_report(struct transport *t)
{
	struct smsg *s;

	while (t->next < t->nq && (s = &t->q[t->next])->outcome != OUT_NONE) {
		t->cb(t->cb_arg, &s->e, s->outcome,
		    s->detail[0] ? s->detail : NULL);
		t->next++;
	}
}

/*
 * libESMTP neither sets TCP_NODELAY nor exposes its socket.  Under Nagle
 * the last, partial buffer of each message then waits for the server's
 * delayed ACK (40 ms on Linux): about 20 emails a second instead of
 * thousands.  The socket is found at SMTP_EV_CONNECT as the lowest free
 * descriptor before the session began (POSIX hands out the lowest), and
 * checked to be a TCP socket connected to the configured port; it is kept
 * for smtp_quickack.
 */
static void
smtp_nodelay(struct transport *t)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, type, one = 1, port;

	for (fd = t->fd_hint; fd >= 0 && fd < t->fd_hint + 16; fd++) {
		len = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
		    type != SOCK_STREAM)
			continue;
		len = sizeof(ss);
		if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1)
			continue;
		if (ss.ss_family == AF_INET)
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		else
			continue;
		if (port != t->cfg->smtp.port)
			continue;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		t->fd = fd;
		return;
	}
}

/*
 * Acknowledge at once what the server has sent, and leave delayed-ACK mode
 * until we next send.
 *
 * libESMTP uses CHUNKING whenever the server offers it, as postfix does:
 * RCPT TO and the message go out pipelined as BDAT chunks, in libESMTP's
 * 2 KiB writes.  Postfix reads at most 4 KiB at a time and flushes its
 * replies whenever its input runs dry, so for any message over a few KiB
 * it answers in two writes: RCPT TO and the header chunk first (that
 * write leaves after we have sent the whole message, as the RCPT TO reply
 * waits on postfix's cleanup daemon), then the body chunk and BDAT 0 LAST.
 * The second, small write waits under Nagle until the first is
 * acknowledged; we have nothing left to send that the ACK could ride on,
 * and Linux, having seen us answer every reply at once, delays it for its
 * 40 ms timer: 25 digests a second instead of hundreds.  TCP_QUICKACK is
 * not sticky (our next send may bring delayed ACKs back), so it is set as
 * each RCPT TO reply arrives: that reply is always in postfix's first
 * write, and the event is libESMTP's first act after reading it.
 * libESMTP can neither send the message as one chunk with LAST nor be
 * told to ignore CHUNKING, and corking our writes would not move where
 * postfix's reads end.
 */
static void
smtp_quickack(struct transport *t)
{
	int one = 1;

	/* With DATA, the reply that ends a message comes in one write. */
	if (t->fd != -1 && t->chunking)
		(void)setsockopt(t->fd, IPPROTO_TCP, TCP_QUICKACK, &one,
		    sizeof(one));
}

/*
 * Count, before TLS, the command lines sent and the replies read, and the
 * bytes read past the last reply: see smtp_clear_injected.
 */
static void
smtp_count_clear(struct transport *t, const char *p, const char *nl,
    const char *end, int writing)
{
	const char *h = t->clear_head;
	size_t n = (size_t)(nl - p);

	if (writing == 1) {
		t->clear_cmds += nl < end;
		return;
	}
	if (writing != 0)
		return;
	/* A line may come in two reads: keep its start. */
	if (t->clear_len < sizeof(t->clear_head))
		memcpy(t->clear_head + t->clear_len, p,
		    n < sizeof(t->clear_head) - t->clear_len ? n :
		    sizeof(t->clear_head) - t->clear_len);
	t->clear_len += n;
	if (nl == end)
		return;
	if (t->clear_len >= 3 && h[0] >= '1' && h[0] <= '5' &&
	    (t->clear_len == 3 || h[3] != '-')) {
		t->clear_replies++;
		t->clear_tail = 0;
	} else
		t->clear_tail += t->clear_len + 1;
	t->clear_len = 0;
}

/*
 * Whether the handshake found bytes read in clear that answer no command:
 * replies beyond the greeting and one per command, or the start of one.
 * Someone on the path can send them after the reply to STARTTLS, and
 * libESMTP, which keeps what it has read, would take them for replies
 * inside TLS (to EHLO, AUTH, MAIL...).  Nothing is pipelined before TLS,
 * so the count is exact.
 */
static int
smtp_clear_injected(const struct transport *t)
{
	return t->clear_replies != 1 + t->clear_cmds || t->clear_tail != 0 ||
	    t->clear_len != 0;
}

/*
 * The replies to STARTTLS and AUTH, which libESMTP acts on without telling
 * (a refused AUTH even goes on to MAIL FROM), and the last reply before
 * QUIT: from them smtp_failure tells why a session failed.  libESMTP shows
 * us each buffer it writes and each it reads, commands and replies only
 * (not the messages); a command starts a line.
 */
static void
smtp_monitor_cb(const char *buf, int len, int writing, void *arg)
{
	struct transport *t = arg;
	const char *p = buf, *end = buf + len, *nl;
	int code;

	for (; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			nl = end;
		if (t->tls != NULL && !t->tls_up)
			smtp_count_clear(t, p, nl, end, writing);
		if (writing == 1) {
			/* Lines of an AUTH exchange are credentials. */
			if (nl - p >= 5 && strncasecmp(p, "AUTH ", 5) == 0)
				t->auth_state = AUTH_SENT;
			else if (t->auth_state == AUTH_SENT)
				continue;
			else if (nl - p == 9 &&
			    strncasecmp(p, "STARTTLS\r", 9) == 0)
				t->tls_sent = 1;
			else if (nl - p == 5 &&
			    strncasecmp(p, "QUIT\r", 5) == 0)
				t->quitting = 1;
			continue;
		}
		/* CHUNKING among EHLO's keywords, on any line of its reply. */
		if (writing == 0 && p[0] == '2' && nl - p >= 12 &&
		    (nl - p == 12 || p[12] == '\r' || p[12] == ' ') &&
		    strncasecmp(p + 4, "CHUNKING", 8) == 0)
			t->chunking = 1;
		/* The last line of a reply: three digits and a space. */
		if (writing != 0 || t->quitting || nl - p < 4 ||
		    p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
		    p[2] < '0' || p[2] > '9' || p[3] != ' ')
			continue;
		code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		t->last_code = code;
		if (code >= 400) {
			snprintf(t->last_refusal, sizeof(t->last_refusal),
			    "%.*s", (int)(nl - p), p);
			t->last_refusal[strcspn(t->last_refusal, "\r\n")] =
			    '\0';
		}
		if (code < 300 && t->auth_state == AUTH_SENT)
			t->auth_state = AUTH_OK;
		if (code < 400)
			continue;
		/* libESMTP may try another mechanism: the last one tells. */
		if (t->auth_state == AUTH_SENT)
			t->auth_state = AUTH_REFUSED;
		else if (!t->tls_sent || t->tls_up || t->refusal[0] != '\0')
			continue;	/* not the reply to STARTTLS */
		snprintf(t->refusal, sizeof(t->refusal), "%s refused: %.*s",
		    t->auth_state == AUTH_REFUSED ? "AUTH" : "STARTTLS",
		    (int)(nl - p), p);
		t->refusal[strcspn(t->refusal, "\r\n")] = '\0';
	}
}

/*
 * Why a session that left q[t->next] without an outcome failed: what the
 * server answered, else whether we ever got through to it.
 */
static enum transport_failure
smtp_failure(struct transport *t, const struct smsg *s)
{
	/* RFC 4954: 530 is "authentication required". */
	if (s->refused)
		return s->refused == 530 || t->auth_state == AUTH_REFUSED ?
		    TF_AUTH : TF_SENDER;
	if ((t->no_starttls && t->cfg->smtp.starttls == STARTTLS_REQUIRED) ||
	    (t->tls_sent && !t->tls_up))
		return TF_TLS;
	if (t->auth_state == AUTH_REFUSED)
		return TF_AUTH;
	/* Refused with 4xx or 5xx to the greeting or EHLO, or cut off. */
	if (t->connected && t->last_code >= 400)
		return TF_PROTOCOL;
	return TF_CONNECT;
}

static void
smtp_event_cb(smtp_session_t session, int event, void *arg, ...)
{
	struct transport *t = arg;
	struct smsg *s = NULL;
	smtp_message_t m;
	smtp_recipient_t r;
	va_list ap;
	SSL *ssl;
	long vr;
	int *ok, bits;

	/* Once per line of every message: nothing to do. */
	if (event == SMTP_EV_MESSAGEDATA)
		return;
	va_start(ap, arg);
	switch (event) {
	case SMTP_EV_CONNECT:
		t->connected = 1;
		smtp_nodelay(t);
		break;
	case SMTP_EV_STARTTLS_OK:
		ssl = va_arg(ap, SSL *);
		if (smtp_clear_injected(t)) {
			snprintf(t->tls_err, sizeof(t->tls_err), "data in "
			    "clear after the reply to STARTTLS");
			(void)shutdown(SSL_get_fd(ssl), SHUT_RDWR);
			break;
		}
		if (SSL_version(ssl) == TLS1_3_VERSION &&
		    smtp_tls13_settle(t, ssl) == -1)
			break;
		t->tls_up = 1;
		/* libESMTP reads the EHLO reply, with AUTH, after this. */
		if (t->auth != NULL && !t->auth_in_clear)
			smtp_auth_set_context(session, t->auth);
		break;
	case SMTP_EV_DISCONNECT:
		/* libESMTP has closed it: the number may be reused. */
		t->fd = -1;
		t->corked = 0;
		break;
	case SMTP_EV_EXTNA_STARTTLS:
		t->no_starttls = 1;
		break;
	case SMTP_EV_MAILSTATUS:
		smtp_cork(t, 0);
		(void)va_arg(ap, const char *);
		m = va_arg(ap, smtp_message_t);
		s = smtp_message_get_application_data(m);
		break;
	case SMTP_EV_RCPTSTATUS:
		smtp_cork(t, 0);
		smtp_quickack(t);
		(void)va_arg(ap, const char *);
		r = va_arg(ap, smtp_recipient_t);
		s = smtp_recipient_get_application_data(r);
		break;
	case SMTP_EV_MESSAGESENT:
		smtp_cork(t, 0);
		m = va_arg(ap, smtp_message_t);
		s = smtp_message_get_application_data(m);
		break;
	/*
	 * libESMTP's own checks, after the handshake.  When verifying,
	 * OpenSSL has checked the chain and the name already, and a
	 * failure never gets this far; these refuse anyway if it did.
	 * Without verification (starttls = optional, or tls_verify = no)
	 * any certificate is taken: the channel is encrypted, not
	 * authenticated.  An export-grade cipher is never taken (OpenSSL 3
	 * offers none).
	 */
	case SMTP_EV_WEAK_CIPHER:
		bits = va_arg(ap, int);
		ok = va_arg(ap, int *);
		*ok = 0;
		snprintf(t->tls_err, sizeof(t->tls_err), "weak cipher (%d "
		    "bits)", bits);
		break;
	case SMTP_EV_INVALID_PEER_CERTIFICATE:
		vr = va_arg(ap, long);
		ok = va_arg(ap, int *);
		*ok = !t->verify;
		if (t->verify && t->tls_err[0] == '\0')
			snprintf(t->tls_err, sizeof(t->tls_err), "certificate "
			    "not verified: %s", X509_verify_cert_error_string(
			    vr));
		break;
	case SMTP_EV_NO_PEER_CERTIFICATE:
		ok = va_arg(ap, int *);
		*ok = !t->verify;
		if (t->verify)
			snprintf(t->tls_err, sizeof(t->tls_err), "no "
			    "certificate");
		break;
	case SMTP_EV_WRONG_PEER_CERTIFICATE:
		/*
		 * libESMTP matches DNS names only (not the IP addresses of
		 * subjectAltName) and falls back to the CN: OpenSSL's check
		 * against smtp.host, in the verify result, is the one.
		 */
		ok = va_arg(ap, int *);
		(void)va_arg(ap, const char *);
		ssl = va_arg(ap, SSL *);
		*ok = !t->verify || SSL_get_verify_result(ssl) == X509_V_OK;
		break;
	default:
		break;
	}
	va_end(ap);
	if (s != NULL) {
		smtp_judge(s);
		smtp_report(t);
	}
}

/*
 * One SMTP session for up to per messages without an outcome, from q[from]
 * on.  Returns 0, or -1 with err when the session could not start or ended
 * early (messages left without replies).
 */
static int
smtp_session(struct transport *t, size_t from, size_t per, char *err,
    size_t errlen)
{
	static const int timeouts[] = { Timeout_GREETING, Timeout_ENVELOPE,
	    Timeout_DATA, Timeout_TRANSFER, Timeout_DATA2 };
	const struct config *cfg = t->cfg;
	smtp_session_t ss;
	struct smsg *s;
	enum starttls_option tls;
	const char *e;
	char ebuf[128];
	size_t i, to, n;
	int ok;

	if ((ss = smtp_create_session()) == NULL)
		worker_oom();
	smtp_set_server(ss, t->server);
	smtp_set_eventcb(ss, smtp_event_cb, t);
	for (i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++)
		smtp_set_timeout(ss, timeouts[i] |
		    Timeout_OVERRIDE_RFC2822_MINIMUM, SMTP_TIMEOUT_MS);
	switch (cfg->smtp.starttls) {
	case STARTTLS_REQUIRED:
		tls = Starttls_REQUIRED;
		break;
	case STARTTLS_OPTIONAL:
		tls = Starttls_ENABLED;
		break;
	default:
		tls = Starttls_DISABLED;
		break;
	}
	smtp_starttls_enable(ss, tls);
	/* libESMTP takes a reference of its own, and drops it with ss. */
	if (t->tls != NULL)
		smtp_starttls_set_ctx(ss, t->tls);
	if (t->auth != NULL && t->auth_in_clear)
		smtp_auth_set_context(ss, t->auth);
	for (i = from, n = 0; i < t->nq && n < per; i++) {
		s = &t->q[i];
		/* Judged by an earlier session, waiting to be reported. */
		if (s->outcome != OUT_NONE)
			continue;
		n++;
		s->given = s->refused = 0;
		s->detail[0] = '\0';
		if ((s->m = smtp_add_message(ss)) == NULL)
			worker_oom();
		smtp_message_set_application_data_release(s->m, s, NULL);
		smtp_set_reverse_path(s->m, t->verp ? s->from :
		    cfg->smtp.envelope_from);
		if ((s->r = smtp_add_recipient(s->m, s->e.rcpt)) == NULL)
			worker_oom();
		smtp_recipient_set_application_data_release(s->r, s, NULL);
		smtp_set_messagecb(s->m, smtp_message_cb, s);
	}
	to = i;
	if ((t->fd_hint = fcntl(0, F_DUPFD_CLOEXEC, 0)) != -1)
		close(t->fd_hint);
	smtp_set_monitorcb(ss, smtp_monitor_cb, t, 0);
	t->no_starttls = t->connected = t->quitting = t->last_code = 0;
	t->tls_sent = t->tls_up = 0;
	t->clear_cmds = t->clear_replies = 0;
	t->clear_tail = t->clear_len = 0;
	t->auth_state = AUTH_NONE;
	t->refusal[0] = t->last_refusal[0] = t->tls_err[0] = '\0';
	t->fd = -1;
	t->corked = t->chunking = 0;
	ERR_clear_error();
	ok = smtp_start_session(ss);
	t->fd = -1;
	t->corked = 0;
	/* Whatever the events missed, the statuses still tell. */
	for (i = from; i < to; i++)
		if (t->q[i].m != NULL)
			smtp_judge(&t->q[i]);
	smtp_report(t);
	if (t->next < to) {
		s = &t->q[t->next];
		t->failure = smtp_failure(t, s);
		if (s->refused && t->auth_state == AUTH_REFUSED)
			snprintf(err, errlen, "smtp %s: %s, after %s",
			    t->server, s->detail, t->refusal);
		else if (s->detail[0] != '\0')
			snprintf(err, errlen, "smtp %s: %s", t->server,
			    s->detail);
		else if (t->no_starttls &&
		    cfg->smtp.starttls == STARTTLS_REQUIRED)
			snprintf(err, errlen, "smtp %s: STARTTLS not offered "
			    "and starttls = required", t->server);
		else if ((t->failure == TF_TLS || t->failure == TF_AUTH) &&
		    t->refusal[0] != '\0')
			snprintf(err, errlen, "smtp %s: %s", t->server,
			    t->refusal);
		else if (t->failure == TF_TLS && t->tls_err[0] != '\0')
			snprintf(err, errlen, "smtp %s: TLS refused: %s",
			    t->server, t->tls_err);
		else if (t->failure == TF_TLS)
			snprintf(err, errlen, "smtp %s: TLS handshake failed: "
			    "%s", t->server, (e = ERR_reason_error_string(
			    ERR_peek_last_error())) != NULL ? e : "no reason");
		else if (t->failure == TF_PROTOCOL)
			snprintf(err, errlen, "smtp %s: refused: %s", t->server,
			    t->last_refusal);
		else if (!ok)
			snprintf(err, errlen, "smtp %s: %s", t->server,
			    smtp_strerror(smtp_errno(), ebuf, sizeof(ebuf)));
		else
			snprintf(err, errlen, "smtp %s: session ended before "
			    "every message got a reply", t->server);
	}
	for (i = from; i < to; i++)
		t->q[i].m = NULL, t->q[i].r = NULL;
	/* The session owns its messages and recipients. */
	smtp_destroy_session(ss);
	return t->next < to ? -1 : 0;
}

static int
smtp_flush(struct transport *t, transport_result_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct smsg *s;
	size_t from, per, i;
	int rc = 0;

	t->cb = cb;
	t->cb_arg = arg;
	t->next = 0;
	/* Nothing is queued during a flush: the buffers stay put. */
	for (i = 0; i < t->nq; i++) {
		s = &t->q[i];
		s->e.data = t->msgs.p + s->data_off;
		s->e.rcpt = t->strs.p + s->rcpt_off;
		s->e.message_id = t->strs.p + s->mid_off;
		s->e.job_id = t->strs.p + s->job_off;
	}
	per = t->cfg->smtp.messages_per_session > 0 ?
	    (size_t)t->cfg->smtp.messages_per_session : 1;
	while (t->next < t->nq) {
		from = t->next;
		/*
		 * A server may close a session early (a limit of messages per
		 * connection): go on in a new one while sessions make
		 * progress.  One that makes none means the server is gone
		 * or refuses us; the rest are left without an outcome.
		 */
		if (smtp_session(t, from, per, err, errlen) == -1 &&
		    t->next == from) {
			rc = -1;
			break;
		}
	}
	t->nq = 0;
	t->msgs.len = t->strs.len = 0;
	t->cb = NULL;
	t->cb_arg = NULL;
	return rc;
}

/* Why the last flush that returned -1 failed. */
static enum transport_failure
smtp_last_failure(struct transport *t)
{
	return t->failure;
}

/* A flush holds at most one session's messages. */
static size_t
smtp_flush_max(struct transport *t)
{
	return t->cfg->smtp.messages_per_session > 0 ?
	    (size_t)t->cfg->smtp.messages_per_session : 1;
}

static void
smtp_close(struct transport *t)
{
	if (t == NULL)
		return;
	free(t->q);
	rbuf_free(&t->msgs);
	rbuf_free(&t->strs);
	if (t->auth != NULL)
		auth_destroy_context(t->auth);
	SSL_CTX_free(t->tls);
	free(t);
}

const struct transport_ops transport_smtp_ops = {
	.name = "smtp",
	.type = TRANSPORT_SMTP,
	.open = smtp_open,
	.send = smtp_send,
	.flush = smtp_flush,
	.failure = smtp_last_failure,
	.flush_max = smtp_flush_max,
	.buffer = smtp_buffer,
	.close = smtp_close,
};
