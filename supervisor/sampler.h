/*
 * The queue sampler (sampler.c): the child that reads the queues' figures
 * and publishes them in the shared segment, and the supervisor's side of
 * it.  Everything here runs in the supervisor's event loop.
 */
#ifndef DIGESTD_SAMPLER_H
#define DIGESTD_SAMPLER_H

#include <sys/types.h>

#include "scoreboard.h"
#include "supervisor.h"

/* Fork the sampler with s->cfg: its pid, or -1 (a timer tries again). */
pid_t sampler_spawn(struct supervisor *);

/*
 * The sampler was reaped: repair a record it tore, and start another one
 * (at once after a reload's SIGTERM, after a backoff after a crash),
 * unless the supervisor is stopping.
 */
void sampler_reaped(struct supervisor *, pid_t, int status);

/*
 * A reload put a new configuration in force: replace the sampler now, so
 * that the next figures are read with it.
 */
void sampler_reload(struct supervisor *);

/* SIGKILL the sampler (at exit: nothing of it needs finishing). */
void sampler_stop(struct supervisor *);

/*
 * The queue figures the sampler published: 0 when read now, 1 when they
 * cannot be read now and *st is the last good copy, -1 when there is none.
 */
int sampler_stats(const struct supervisor *, struct sb_stats *st);

#endif
