/*
 * Connecting to Redis as configured: host/port or unix socket, timeout,
 * AUTH and SELECT.  Shared by workers, the sampler and digestctl.  Also
 * what every caller needs to read Redis's answers safely: which error
 * replies tell of an outage rather than of the data, and a reply reader
 * that never holds a long string whole.
 */
#ifndef DIGESTD_RCONN_H
#define DIGESTD_RCONN_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "config.h"

/*
 * Connect, authenticate and select the database.  Returns a context the
 * caller frees with redisFree, or NULL with the reason in err (never the
 * password).
 */
redisContext *rconn_connect(const struct redis_config *, char *err, size_t errlen);

/* "host:port" or the socket path, for messages. */
const char *rconn_describe(const struct redis_config *, char *buf, size_t len);

/*
 * Build a key: prefix + the formatted rest, into buf.  Returns buf, or NULL
 * if it did not fit.
 */
char *rkey(char *buf, size_t len, const char *prefix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Whether an error reply says the server cannot serve now (restarting,
 * busy, read-only or cut off in a failover, out of memory, full of
 * clients, or a proxy's shard unreachable) rather than anything about the
 * keys or the command: such a failure is an outage, never a job's fault.
 * 0 for anything but an error reply, and for WRONGTYPE, syntax and the
 * like.
 */
int rconn_reply_is_outage(const redisReply *);

/* The same, for the text of an error reply (r->str). */
int rconn_error_is_outage(const char *);

/*
 * Capped reads.  A bulk string longer than the reader's limit never
 * reaches hiredis whole: it arrives as an array of two elements, its
 * first `limit` bytes and its length as an integer, and the rest is read
 * off the socket and dropped.  The caller's memory is so bounded by the
 * limit, whatever the size of a value (Redis allows 512 MB).  No command
 * returns that shape in place of a string, so it cannot be mistaken.
 *
 * The state follows the byte stream of one connection (RESP2, which is
 * all digestd speaks); it starts afresh when given another context and
 * after an error.
 */
struct rconn_cap {
	size_t limit;
	const redisContext *c;	/* the stream this state follows */
	int state;
	char hdr[24];		/* a bulk header being read: "$123\r\n" */
	size_t hdrlen;
	long long pass;		/* bytes to pass on */
	long long drop;		/* bytes to drop after them */
	long long len;		/* the whole length of the bulk being cut */
};

/* A reader state for bulks of at most limit bytes. */
void rconn_cap_init(struct rconn_cap *, size_t limit);

/*
 * redisGetReply for a blocking context, through the cap: write what is
 * buffered, then read until a reply is complete.  REDIS_OK with *reply
 * set (the caller frees it), or REDIS_ERR with c->err set, as hiredis.
 */
int rconn_cap_get_reply(struct rconn_cap *, redisContext *, void **reply);

/* Feed n bytes of a reply stream into r through the cap.  0, or -1. */
int rconn_cap_feed(struct rconn_cap *, redisReader *r, const char *buf,
    size_t n);

/*
 * Whether e is a string that a capped read cut: returns its whole length
 * and sets *prefix to the element holding its first bytes; else 0.
 */
long long rconn_cap_cut(const redisReply *e, const redisReply **prefix);

/* Append "$len\r\ns\r\n" at p; returns the end. */
char	*rconn_resp_bulk(char *p, const char *s, size_t len);
/*
 * Append argv[0..argc) (lengths in len) to c as one command, written as
 * RESP here rather than through hiredis's format parser, which costs more
 * than the rest of a hot read or write.  REDIS_OK, or REDIS_ERR with
 * c->err set.
 */
int	 rconn_append_argv(redisContext *c, int argc, const char *const *argv,
	    const size_t *len);

#endif
