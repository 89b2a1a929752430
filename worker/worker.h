/*
 * The worker's one door for the supervisor: what the supervisor calls in
 * the worker, and nothing else.  The supervisor sees this header alone of
 * worker/ (the build gives it no other; docs/design.md#source-tree).
 */
#ifndef DIGESTD_WORKER_H
#define DIGESTD_WORKER_H

#include <stddef.h>

#include "config.h"
#include "scoreboard.h"

/*
 * Run a worker in slot of sb with cfg (the child's own copy, inherited
 * through fork), in a child the supervisor has set up.  notify_fd is the
 * write end of the supervisor's notify pipe: the worker writes one byte,
 * its slot number modulo 256, when it becomes ready, so the supervisor
 * need not poll.  Exits the process; the status tells the supervisor why
 * (0: told to stop or recycled, EXIT_WORKER_OOM: out of memory, other:
 * crash).
 */
void worker_main(const struct config *cfg, struct scoreboard *sb, int slot,
    int notify_fd) __attribute__((noreturn));

/*
 * The worker's own checks of a configuration, for the supervisor's start,
 * `-t` and reload: the digest templates load (built in or from
 * digest.template_dir), and digest.from and digest.unsubscribe_url are
 * what the renderer can use.  0, or -1 with err naming the file and line
 * of a broken template, or the key.
 */
int worker_check_config(const struct config *cfg, char *err, size_t errlen);

#endif
