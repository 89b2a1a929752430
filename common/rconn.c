/*
 * Redis connections as the configuration describes them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rconn.h"

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

	tv.tv_sec = rc->timeout_ms / 1000;
	tv.tv_usec = (rc->timeout_ms % 1000) * 1000;
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
