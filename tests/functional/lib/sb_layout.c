/*
 * The layout of the shared segment (common/scoreboard.h) as JSON, for the
 * tests that look into a running supervisor's segment through
 * /proc/PID/mem: compiled from the same header as digestd, so the offsets
 * are the binary's own.
 */
#include <stddef.h>
#include <stdio.h>

#include "scoreboard.h"

int
main(void)
{
	printf("{\"size\": %zu, \"magic\": %u, \"nslots\": %d, "
	    "\"off_magic\": %zu, \"off_nslots\": %zu, "
	    "\"off_slots\": %zu, \"slot_size\": %zu, "
	    "\"slot_pid\": %zu, \"slot_job_seq\": %zu, "
	    "\"slot_job\": %zu, \"job_size\": %zu, "
	    "\"off_stats\": %zu, \"stats_size\": %zu, "
	    "\"stats_seq\": %zu, \"stats_body\": %zu}\n",
	    sizeof(struct scoreboard), 0x64677362u, SB_MAX_SLOTS,
	    offsetof(struct scoreboard, magic),
	    offsetof(struct scoreboard, nslots),
	    offsetof(struct scoreboard, slots), sizeof(struct sb_slot),
	    offsetof(struct sb_slot, pid), offsetof(struct sb_slot, job_seq),
	    offsetof(struct sb_slot, job), sizeof(struct job),
	    offsetof(struct scoreboard, stats), sizeof(struct sb_stats),
	    offsetof(struct sb_stats, seq), offsetof(struct sb_stats, nqueues));
	return 0;
}
