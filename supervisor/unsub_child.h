/*
 * The one-click unsubscribe endpoint (unsub_child.c): the supervisor's
 * side of the child that serves it.
 */
#ifndef DIGESTD_UNSUB_CHILD_H
#define DIGESTD_UNSUB_CHILD_H

#include <stddef.h>

#include "supervisor.h"

/*
 * At start, before privileges drop: bind unsubscribe_listen if set.  0,
 * or -1 with err.
 */
int unsub_bind(struct supervisor *, char *err, size_t errlen);
/*
 * Fork the child that serves the bound sockets (none bound: nothing); it
 * is restarted when it dies (proc.c's services).
 */
void unsub_spawn(struct supervisor *);
/* A reload put a new configuration in force: replace the child now. */
void unsub_reload(struct supervisor *);
/* SIGKILL the child (at exit). */
void unsub_stop(struct supervisor *);

#endif
