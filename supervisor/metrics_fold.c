/*
 * Folding a dead worker's cells into its pool's totals
 * (docs/design.md#http-endpoint-and-metrics: counters stay monotonic across
 * deaths, recycles and reloads).
 *
 * The supervisor calls this when it reaps a worker; a slot's generation
 * is bumped at each spawn, so remembering the last generation folded per
 * slot makes a second call for the same death a no-op, whichever path
 * (reap, stall kill, drain) gets there first.
 */
#include "log.h"
#include "supervisor.h"

void
metrics_fold_slot(struct supervisor *s, int slot)
{
	struct sb_slot *sl;
	uint64_t gen;
	int32_t pool;

	if (slot < 0 || slot >= SB_MAX_SLOTS)
		return;
	sl = &s->sb->slots[slot];
	gen = atomic_load_explicit(&sl->gen, memory_order_acquire);
	if (s->folded_gen[slot] == gen)
		return;
	pool = atomic_load_explicit(&sl->pool, memory_order_relaxed);
	if (pool < 0 || pool >= SB_MAX_POOLS) {
		/* Impossible unless the segment is corrupt: keep the cells. */
		log_warnx("metrics: slot %d has no pool (%d), not folded",
		    slot, (int)pool);
		return;
	}
	metrics_fold(s->totals[pool].cells, sl->cells);
	s->folded_gen[slot] = gen;
}
