/*
 * Connecting to Redis as configured: host/port or unix socket, timeout,
 * AUTH and SELECT.  Shared by workers, the sampler and digestctl.
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

#endif
