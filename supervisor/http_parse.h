/*
 * What the HTTP endpoint decides about a request from its bytes alone: the
 * route of a path, whether a query asks for the page for people, the
 * metrics format an Accept header asks for, whether an address is
 * loopback, and who may read /status.  Nothing here touches a socket or
 * the supervisor's state, so the unit tests and the fuzzer can feed it
 * anything.
 */
#ifndef DIGESTD_HTTP_PARSE_H
#define DIGESTD_HTTP_PARSE_H

#include <sys/socket.h>

enum expo_format { EXPO_TEXT, EXPO_OPENMETRICS };

enum http_route {
	HTTP_ROUTE_METRICS,
	HTTP_ROUTE_HEALTHZ,
	HTTP_ROUTE_READYZ,
	HTTP_ROUTE_STATUS,
	HTTP_ROUTE_NOT_FOUND
};

/* Pick the format from an Accept header (NULL: the text format). */
enum expo_format expo_negotiate(const char *accept);
/* The Content-Type of a format. */
const char *expo_content_type(enum expo_format);

/* The route of a request's path (NULL: not found). */
enum http_route http_route(const char *path);

/* 1 when the query (NULL: none) has a parameter name, with or without =. */
int http_query_has(const char *query, const char *name);

/*
 * 1 when sa is a loopback address: 127.0.0.0/8, ::1, or 127.0.0.0/8
 * mapped into IPv6.  Anything else, a short or unknown address included,
 * is 0.
 */
int http_addr_loopback(const struct sockaddr *sa, socklen_t len);

/*
 * Whether /status may be answered.  It shows pids, job ids and user-id
 * cursors, so when the endpoint listens on a non-loopback address only
 * loopback peers see it, unless the request proved it knows the console's
 * password (console_auth).
 */
int http_status_allowed(int listen_loopback, int peer_loopback,
    int console_auth);

#endif
