/*
 * The web console (console.c): first the supervisor's side of it, called
 * from the supervisor's loop; then what the console child and its pages
 * (console_page.c) share, which runs in the console child only.
 */
#ifndef DIGESTD_CONSOLE_H
#define DIGESTD_CONSOLE_H

#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "queue.h"
#include "scoreboard.h"
#include "supervisor.h"

struct evbuffer;

/*
 * At start, before privileges drop: bind console_listen if set.  0, or
 * -1 with err.
 */
int console_bind(struct supervisor *, char *err, size_t errlen);
/*
 * Fork the child that serves the bound sockets (none bound: nothing); it
 * is restarted when it dies (proc.c's services).
 */
void console_spawn(struct supervisor *);
/* A reload put a new configuration in force: replace the child now. */
void console_reload(struct supervisor *);
/* SIGKILL the child (at exit). */
void console_stop(struct supervisor *);

/* The console child's side. */

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
