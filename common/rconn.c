/*
 * Redis connections as the configuration describes them, and reading
 * their answers safely.
 *
 * Error replies come in two kinds that a job must tell apart: those about
 * the keys or the command (WRONGTYPE, a syntax error), which say
 * something about the data, and those that say the server cannot serve
 * now (it is restarting, busy, failing over, full), which are outages
 * however the connection looks.  rconn_reply_is_outage is the one place
 * that knows which is which.
 *
 * Capped reads: hiredis buffers a bulk string whole before anyone can
 * look at its length, so a single 80 MB value kills a worker under its
 * memory_limit.  rconn_cap_get_reply reads the socket itself and passes
 * the RESP stream through a small filter that rewrites any bulk longer
 * than its limit into its first bytes and its length, dropping the rest
 * as it streams by.  The server is asked nothing more (no script, no
 * second command), so the activity store's CPU per read is unchanged and
 * every command still names one key, as a sharding proxy needs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rconn.h"
#include "util.h"

const char *
rconn_describe(const struct redis_config *rc, char *buf, size_t len)
{
	if (rc->socket[0] != '\0')
		snprintf(buf, len, "unix:%s", rc->socket);
	else
		snprintf(buf, len, "%s:%d", rc->host, rc->port);
	return buf;
}

redisContext *
rconn_connect(const struct redis_config *rc, char *err, size_t errlen)
{
	struct timeval tv;
	redisContext *c;
	redisReply *r;
	char where[PATH_MAX + 8];

	tv_ms(&tv, rc->timeout_ms);
	rconn_describe(rc, where, sizeof(where));
	if (rc->socket[0] != '\0')
		c = redisConnectUnixWithTimeout(rc->socket, tv);
	else
		c = redisConnectWithTimeout(rc->host, rc->port, tv);
	if (c == NULL) {
		snprintf(err, errlen, "redis %s: out of memory", where);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errlen, "redis %s: %s", where, c->errstr);
		redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(err, errlen, "redis %s: cannot set timeout", where);
		redisFree(c);
		return NULL;
	}
	if (rc->socket[0] == '\0')
		redisEnableKeepAlive(c);
	if (rc->password[0] != '\0') {
		/* The password goes in the command only, never in a message. */
		r = redisCommand(c, "AUTH %s", rc->password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis %s: AUTH failed%s%s", where,
			    r ? ": " : "", r ? r->str : "");
			if (r)
				freeReplyObject(r);
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	if (rc->db != 0) {
		r = redisCommand(c, "SELECT %d", rc->db);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis %s: SELECT %d failed",
			    where, rc->db);
			if (r)
				freeReplyObject(r);
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	return c;
}

char *
rkey(char *buf, size_t len, const char *prefix, const char *fmt, ...)
{
	va_list ap;
	size_t n;
	int m;

	n = strlcpy(buf, prefix, len);
	if (n >= len)
		return NULL;
	va_start(ap, fmt);
	m = vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= len - n)
		return NULL;
	return buf;
}

/*
 * Error codes that say the server cannot serve now.  Redis 7 passes a
 * script's own errors through with their code, so an OOM inside one of
 * our scripts reads the same.
 */
static const char *const rconn_outage_codes[] = {
	"LOADING",	/* restarted, loading its dataset */
	"BUSY",		/* a script or module command runs too long */
	"READONLY",	/* demoted to a replica: a failover */
	"MASTERDOWN",	/* a replica cut from its master */
	"TRYAGAIN",	/* a cluster moving the key's slot */
	"CLUSTERDOWN",
	"OOM",		/* maxmemory reached: writes refused */
	"MISCONF",	/* cannot persist: writes refused */
	"NOREPLICAS",	/* too few replicas to take writes */
	"NOAUTH",	/* restarted with a password: configuration */
};

/* Generic errors (ERR ...) that are outages all the same. */
static const char *const rconn_outage_errs[] = {
	"ERR max number of clients reached",
	/* twemproxy, when the shard that holds the key is unreachable */
	"ERR Connection refused",
	"ERR Connection reset by peer",
	"ERR Connection timed out",
	"ERR Operation timed out",
	"ERR Broken pipe",
	"ERR No route to host",
	"ERR Host is unreachable",
	"ERR Network is unreachable",
};

int
rconn_error_is_outage(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return 0;
	for (i = 0; i < sizeof(rconn_outage_codes) /
	    sizeof(rconn_outage_codes[0]); i++) {
		/* The whole code: BUSYGROUP and BUSYKEY are about the data. */
		n = strlen(rconn_outage_codes[i]);
		if (strncmp(s, rconn_outage_codes[i], n) == 0 &&
		    (s[n] == ' ' || s[n] == '\0'))
			return 1;
	}
	for (i = 0; i < sizeof(rconn_outage_errs) /
	    sizeof(rconn_outage_errs[0]); i++)
		if (strncmp(s, rconn_outage_errs[i],
		    strlen(rconn_outage_errs[i])) == 0)
			return 1;
	return 0;
}

int
rconn_reply_is_outage(const redisReply *r)
{
	return r != NULL && r->type == REDIS_REPLY_ERROR &&
	    rconn_error_is_outage(r->str);
}

enum {
	CAP_START,		/* at the first byte of a line */
	CAP_LINE,		/* inside a line that is not a bulk header */
	CAP_HDR,		/* inside a bulk header */
	CAP_PASS,		/* inside a bulk's bytes, passing them on */
	CAP_DROP,		/* inside the bytes of a bulk that is cut */
};

/* Output of one feed, staged so that hiredis gets few large appends. */
struct cap_out {
	redisReader *r;
	char buf[4096];
	size_t len;
	int err;
};

static void
cap_flush(struct cap_out *o)
{
	if (o->len > 0 && !o->err &&
	    redisReaderFeed(o->r, o->buf, o->len) != REDIS_OK)
		o->err = 1;
	o->len = 0;
}

static void
cap_put(struct cap_out *o, const char *p, size_t n)
{
	if (o->len + n > sizeof(o->buf)) {
		cap_flush(o);
		if (n > sizeof(o->buf)) {
			if (!o->err && redisReaderFeed(o->r, p, n) != REDIS_OK)
				o->err = 1;
			return;
		}
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

void
rconn_cap_init(struct rconn_cap *cap, size_t limit)
{
	memset(cap, 0, sizeof(*cap));
	cap->limit = limit;
	cap->state = CAP_START;
}

static void
cap_reset(struct rconn_cap *cap, const redisContext *c)
{
	rconn_cap_init(cap, cap->limit);
	cap->c = c;
}

/* A whole bulk header is in cap->hdr: pass it on, or start a cut. */
static void
cap_header(struct rconn_cap *cap, struct cap_out *o)
{
	char line[64], *end = NULL;
	long long len = -1;
	int ok = 0;

	cap->state = CAP_START;
	if (cap->hdrlen >= 4) {
		errno = 0;
		len = strtoll(cap->hdr + 1, &end, 10);
		ok = errno == 0 && len >= 0 &&
		    end == cap->hdr + cap->hdrlen - 2 && *end == '\r';
	}
	if (!ok || (unsigned long long)len <= cap->limit) {
		/* A nil, a short bulk, or a header hiredis will refuse. */
		cap_put(o, cap->hdr, cap->hdrlen);
		if (ok) {
			cap->pass = len + 2;	/* the bytes and their CRLF */
			cap->drop = 0;
			cap->state = CAP_PASS;
		}
		return;
	}
	/* Too long: its first bytes and its length, as a 2-element array. */
	snprintf(line, sizeof(line), "*2\r\n$%zu\r\n", cap->limit);
	cap_put(o, line, strlen(line));
	cap->len = len;
	cap->pass = (long long)cap->limit;
	cap->drop = len - (long long)cap->limit + 2;
	cap->state = CAP_PASS;
}

/* The bytes of avail to take, when want more are expected. */
static size_t
cap_take(size_t avail, long long want)
{
	return (unsigned long long)avail > (unsigned long long)want ?
	    (size_t)want : avail;
}

int
rconn_cap_feed(struct rconn_cap *cap, redisReader *r, const char *buf,
    size_t n)
{
	struct cap_out o;
	const char *nl;
	char line[64];
	size_t i = 0, k;

	o.r = r;
	o.len = 0;
	o.err = 0;
	while (i < n) {
		switch (cap->state) {
		case CAP_START:
			if (buf[i] == '$') {
				cap->hdrlen = 0;
				cap->state = CAP_HDR;
			} else
				cap->state = CAP_LINE;
			break;
		case CAP_LINE:
			nl = memchr(buf + i, '\n', n - i);
			k = nl != NULL ? (size_t)(nl - (buf + i)) + 1 : n - i;
			cap_put(&o, buf + i, k);
			i += k;
			if (nl != NULL)
				cap->state = CAP_START;
			break;
		case CAP_HDR:
			if (cap->hdrlen == sizeof(cap->hdr)) {
				/* No real header is this long: pass it on. */
				cap_put(&o, cap->hdr, cap->hdrlen);
				cap->state = CAP_LINE;
				break;
			}
			cap->hdr[cap->hdrlen++] = buf[i++];
			if (buf[i - 1] == '\n')
				cap_header(cap, &o);
			break;
		case CAP_PASS:
			k = cap_take(n - i, cap->pass);
			cap_put(&o, buf + i, k);
			i += k;
			cap->pass -= (long long)k;
			if (cap->pass > 0)
				break;
			if (cap->drop > 0) {
				cap_put(&o, "\r\n", 2);
				cap->state = CAP_DROP;
			} else
				cap->state = CAP_START;
			break;
		case CAP_DROP:
			k = cap_take(n - i, cap->drop);
			i += k;
			cap->drop -= (long long)k;
			if (cap->drop > 0)
				break;
			snprintf(line, sizeof(line), ":%lld\r\n", cap->len);
			cap_put(&o, line, strlen(line));
			cap->state = CAP_START;
			break;
		}
	}
	cap_flush(&o);
	return o.err ? -1 : 0;
}

static void
cap_set_error(redisContext *c, int type, const char *str)
{
	c->err = type;
	strlcpy(c->errstr, str, sizeof(c->errstr));
}

int
rconn_cap_get_reply(struct rconn_cap *cap, redisContext *c, void **reply)
{
	char buf[16 * 1024];
	void *r = NULL;
	ssize_t n;
	int done = 0;

	if (cap->c != c)
		cap_reset(cap, c);
	if (c->err || redisGetReplyFromReader(c, &r) == REDIS_ERR)
		goto fail;
	if (r == NULL) {
		do {
			if (redisBufferWrite(c, &done) == REDIS_ERR)
				goto fail;
		} while (!done);
	}
	while (r == NULL) {
		/*
		 * As redisBufferRead does, but through the cap.  A blocking
		 * context has its reply timeout on the socket: EAGAIN is it.
		 */
		n = read(c->fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			cap_set_error(c, REDIS_ERR_IO, strerror(errno));
			goto fail;
		}
		if (n == 0) {
			cap_set_error(c, REDIS_ERR_EOF,
			    "Server closed the connection");
			goto fail;
		}
		if (rconn_cap_feed(cap, c->reader, buf, (size_t)n) == -1) {
			if (c->reader->err)
				cap_set_error(c, c->reader->err,
				    c->reader->errstr);
			else
				cap_set_error(c, REDIS_ERR_OOM,
				    "Out of memory");
			goto fail;
		}
		if (redisGetReplyFromReader(c, &r) == REDIS_ERR)
			goto fail;
	}
	*reply = r;
	return REDIS_OK;
fail:
	cap_reset(cap, c);
	return REDIS_ERR;
}

long long
rconn_cap_cut(const redisReply *e, const redisReply **prefix)
{
	if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING ||
	    e->element[1]->type != REDIS_REPLY_INTEGER)
		return 0;
	if (prefix != NULL)
		*prefix = e->element[0];
	return e->element[1]->integer;
}

char *
rconn_resp_bulk(char *p, const char *s, size_t len)
{
	*p++ = '$';
	p += fmt_i64(p, (int64_t)len);
	*p++ = '\r';
	*p++ = '\n';
	memcpy(p, s, len);
	p += len;
	*p++ = '\r';
	*p++ = '\n';
	return p;
}

int
rconn_append_argv(redisContext *c, int argc, const char *const *argv,
    const size_t *len)
{
	char stack[2048], *buf = stack, *p;
	size_t need = FMT_I64_MAX + 4;
	int i, rc;

	for (i = 0; i < argc; i++)
		need += len[i] + FMT_I64_MAX + 5;
	/* Without memory for the buffer, hiredis says out of memory. */
	if (need > sizeof(stack) && (buf = malloc(need)) == NULL)
		return redisAppendCommandArgv(c, argc, (const char **)argv,
		    len);
	p = buf;
	*p++ = '*';
	p += fmt_i64(p, argc);
	*p++ = '\r';
	*p++ = '\n';
	for (i = 0; i < argc; i++)
		p = rconn_resp_bulk(p, argv[i], len[i]);
	rc = redisAppendFormattedCommand(c, buf, (size_t)(p - buf));
	if (buf != stack)
		free(buf);
	return rc;
}
