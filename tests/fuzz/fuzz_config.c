/*
 * libFuzzer target for the configuration parser: any bytes go through
 * config_load_buffer, which must either refuse them with a message naming
 * the file, or return a config that holds every promise config.h makes
 * (at least one pool, bounded workers, a secret, derived addresses,
 * terminated strings).  A broken promise aborts, so libFuzzer keeps it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FUZZ_FILE "/fuzz/digestd.conf"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* A char array member must hold a NUL. */
#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

static void
check(const struct config *cfg)
{
	int i, total = 0;

	if (cfg->npools < 1 || cfg->npools > CONFIG_MAX_POOLS)
		abort();
	for (i = 0; i < cfg->npools; i++) {
		const struct pool_config *pc = &cfg->pools[i];

		if (!TERMINATED(pc->name) || !TERMINATED(pc->queue) ||
		    pc->name[0] == '\0' || pc->queue[0] == '\0')
			abort();
		if (pc->workers < 1 || pc->max_jobs < 0 ||
		    pc->job_timeout_ms < 1000 || pc->line < 1)
			abort();
		if (config_pool(cfg, pc->name) != pc)
			abort();
		total += pc->workers;
	}
	if (total > 100)
		abort();
	if (!TERMINATED(cfg->digest.unsubscribe_secret) ||
	    strlen(cfg->digest.unsubscribe_secret) < CONFIG_SECRET_MIN)
		abort();
	if (!TERMINATED(cfg->digest.from_addr) ||
	    !TERMINATED(cfg->digest.from_domain) ||
	    cfg->digest.from_domain[0] == '\0' ||
	    strchr(cfg->digest.from_addr, '@') == NULL)
		abort();
	if (!TERMINATED(cfg->smtp.envelope_from) ||
	    cfg->smtp.envelope_from[0] == '\0')
		abort();
	if (cfg->supervisor.restart_backoff_min_ms >
	    cfg->supervisor.restart_backoff_max_ms)
		abort();
	if (cfg->digest.batch_size < 1 || cfg->schedule.shard_size < 1 ||
	    cfg->queue.max_attempts < 1 || cfg->amqp.prefetch < 1)
		abort();
	if (cfg->schedule.day_start_s < 0 || cfg->schedule.day_start_s >= 86400)
		abort();
	if (cfg->queue_redis.host[0] == '\0' &&
	    cfg->queue_redis.socket[0] == '\0')
		abort();
	if (strcmp(cfg->queue_redis.key_prefix, cfg->redis.key_prefix) != 0)
		abort();
	/* Paths come out absolute or empty. */
	if ((cfg->maildir.path[0] != '/') ||
	    (cfg->supervisor.log_file[0] != '\0' &&
	    cfg->supervisor.log_file[0] != '/') ||
	    (cfg->redis.socket[0] != '\0' && cfg->redis.socket[0] != '/'))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg;
	char err[512];

	err[0] = '\0';
	cfg = config_load_buffer(FUZZ_FILE, (const char *)data, size, err,
	    sizeof(err));
	if (cfg == NULL) {
		/* Every refusal says where. */
		if (strncmp(err, FUZZ_FILE ":", sizeof(FUZZ_FILE)) != 0 ||
		    memchr(err, '\0', sizeof(err)) == NULL ||
		    strchr(err, '\n') != NULL)
			abort();
		return 0;
	}
	check(cfg);
	config_free(cfg);
	return 0;
}
