/*
 * The registry of live digestd instances in the queue Redis, which the
 * web console of any instance shows: each instance's sampler writes its
 * record every round (instance_publish), and the console reads them all
 * (instance_list).  See docs/design.md#instances.
 */
#ifndef DIGESTD_INSTANCE_H
#define DIGESTD_INSTANCE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "scoreboard.h"

#define INSTANCE_ID_MAX 160
/* A record outlives three sampler rounds: an instance gone is gone soon. */
#define INSTANCE_TTL_S 15

/* What the sampler remembers between rounds to tell the rate of emails. */
struct instance_rates {
	double at;			/* unix time of the last round; 0: none */
	uint64_t gen[SB_MAX_SLOTS];	/* each slot's worker then */
	uint64_t sent[SB_MAX_SLOTS];	/* and what it had sent */
};

/* This process's instance id, host:pid, into buf. */
void instance_id(char *buf, size_t len);

/*
 * Write digest:instance:{id} (a HASH with a TTL: host, pid, version,
 * started_at, seen_at, draining, console, workers and rates as JSON) and
 * the instance's entry in digest:instances (a ZSET of ids scored by when
 * their record expires).  0, or -1 with err.
 */
int instance_publish(redisContext *, const struct config *,
    struct scoreboard *, const char *id, double started_at,
    struct instance_rates *, char *err, size_t errlen);

/* One instance's record, as instance_list hands it out. */
struct instance_record {
	char id[INSTANCE_ID_MAX];
	char host[256];
	char pid[16];
	char version[32];
	char console[CONFIG_STR_MAX];
	double started_at;
	double seen_at;
	int draining;
	char *workers;			/* JSON array text; may be NULL */
	char *rates;			/* JSON object text; may be NULL */
};

/*
 * Every live instance's record, in id order: *out (free with
 * instance_list_free) and the count, or -1 with err.
 */
int instance_list(redisContext *, const struct config *,
    struct instance_record **out, char *err, size_t errlen);
void instance_list_free(struct instance_record *, int n);

#endif
