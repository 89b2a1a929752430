/*
 * The one call from the supervisor into the worker: after fork(), the
 * child runs worker_main and never returns to the supervisor's code.
 */
#ifndef DIGESTD_WORKER_MAIN_H
#define DIGESTD_WORKER_MAIN_H

#include "config.h"
#include "scoreboard.h"

/*
 * Run a worker in slot of sb with cfg (the child's own copy, inherited
 * through fork).  notify_fd is the write end of the supervisor's notify
 * pipe: the worker writes one byte, its slot number modulo 256,
 * when it becomes ready, so the supervisor need not poll.  Exits the
 * process; the status tells the supervisor why (0: told to stop or
 * recycled, EXIT_WORKER_OOM: out of memory, other: crash).
 */
void worker_main(const struct config *cfg, struct scoreboard *sb, int slot,
    int notify_fd) __attribute__((noreturn));

/*
 * The worker's own checks of a configuration, for the supervisor's start,
 * `-t` and reload: loads the digest templates (built in or from
 * digest.template_dir) and checks digest.from and digest.unsubscribe_url
 * as the renderer will use them.  0, or -1 with err naming the file and
 * line of a broken template, or the key.  Defined in worker/render.c.
 */
int render_check_config(const struct config *cfg, char *err, size_t errlen);

#endif
