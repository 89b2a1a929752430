/*
 * A hardened evhttp server: listening sockets, a cap on open connections,
 * a deadline for each request and answer, and a listener that rests
 * rather than spins when accept() runs out of descriptors.  The metrics
 * endpoint (http.c) serves from the supervisor's loop with one; the web
 * console (console.c) and the unsubscribe endpoint (unsub_child.c) each
 * serve from their own child with another, on sockets the supervisor
 * bound before dropping privileges.
 */
#ifndef DIGESTD_HTTP_SERVER_H
#define DIGESTD_HTTP_SERVER_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct evhttp_request;
struct http_server;

/* Answers a request; every method reaches it. */
typedef void (*http_handler)(struct evhttp_request *, void *arg);
/* The configured cap on open connections, asked at each change. */
typedef int (*http_cap_fn)(void *arg);

#define HTTP_LISTEN_MAX 8	/* sockets one address may bind */

/*
 * Bind and listen on every address "host:port" or "[v6]:port" resolves to
 * (numerically; "*" is every address, each family on its own socket).
 * The sockets (non-blocking, close-on-exec) go to fds[0..*nfds), and
 * *loopback says whether every one of them is loopback.  0, or -1 with
 * err (nothing left open).
 */
int http_bind_sockets(const char *addr, int *fds, int *nfds, int *loopback,
    char *err, size_t errlen);

/*
 * A server on base, named for the log ("http", "console"): handler gets
 * every whole request (arg passed along), cap says how many connections
 * may be open.  NULL with err on failure.
 */
struct http_server *http_server_new(struct event_base *base, const char *name,
    http_handler handler, http_cap_fn cap, void *arg, char *err,
    size_t errlen);

/* Serve on a listening socket, which the server then owns.  0 or -1. */
int http_server_accept(struct http_server *, int fd, char *err,
    size_t errlen);

/*
 * Send an answer with its Content-Type and Cache-Control: no-store; body
 * may be NULL.
 */
void http_reply(struct evhttp_request *, int code, const char *reason,
    const char *ctype, struct evbuffer *body);
/* Send a text/plain answer. */
void http_text(struct evhttp_request *, int code, const char *reason,
    const char *text);
/* 1 when the request came from a loopback address. */
int http_peer_loopback(struct evhttp_request *);

#endif
