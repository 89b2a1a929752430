/*
 * The web console's child (console.c) and its pages (console_page.c):
 * what the two share.  Everything here runs in the console child, never
 * in the supervisor's loop.
 */
#ifndef DIGESTD_CONSOLE_H
#define DIGESTD_CONSOLE_H

#include <hiredis/hiredis.h>

#include "config.h"
#include "queue.h"
#include "scoreboard.h"

struct evbuffer;

/* The console child's state. */
struct console {
	const struct config *cfg;
	struct scoreboard *sb;
	const char *instance;		/* this instance's id */
	redisContext *rc;		/* the queue Redis; NULL until needed */
	struct queue_admin qa;
};

/*
 * The queue Redis, connected (again) if need be; NULL with err when it
 * cannot be reached.  The queue handle then works on it.
 */
redisContext *console_redis(struct console *, char *err, size_t errlen);

/* A page's parts: the flash message of ?done=&what=, the token. */
struct console_view {
	const char *done;		/* the action done, or NULL */
	const char *what;		/* to which queue or dead letter */
	const char *csrf;		/* the session's CSRF token */
};

/*
 * The overview (queues, instances) and the dead letters, into b.  The
 * HTTP status to answer with: 200, or 503 when the queue Redis (or the
 * broker) could not be read, the page then saying so.
 */
int console_page_home(struct console *, const struct console_view *,
    struct evbuffer *b);
int console_page_dlq(struct console *, const struct console_view *,
    struct evbuffer *b);
/* The static script and style sheet. */
const char *console_script(void);
const char *console_style(void);

#endif
