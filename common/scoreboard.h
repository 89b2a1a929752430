/*
 * The shared segment between the supervisor and its workers, mapped once
 * before the first fork (MAP_SHARED | MAP_ANONYMOUS) and inherited by every
 * child.  One slot per worker, each with a single writer for each field:
 *
 *   supervisor: gen, pid, pool, pool_slot, cmd, spawned_ns, and state only
 *               to set SB_STARTING before the fork and SB_FREE after a fold;
 *   worker:     state (idle, busy, draining), heartbeat, the job in hand,
 *               cursor, jobs_done, rss, and its metric cells.
 *
 * The job in hand is written under a sequence lock (job_seq odd while it is
 * being written) so that readers never see half of it; everything else is
 * a naturally aligned atomic.
 *
 * A writer can be killed in the middle of a write, leaving its sequence odd
 * for good: readers therefore try a bounded number of times and then call
 * the record unknown, and whoever reaps the writer repairs the record
 * before anything writes it again (sb_job_reset, sb_stats_repair).
 */
#ifndef DIGESTD_SCOREBOARD_H
#define DIGESTD_SCOREBOARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cursor.h"
#include "job.h"
#include "metrics.h"

#define SB_MAX_SLOTS 256	/* worker slots across all pools, with room for a reload's roll */
#define SB_MAX_POOLS 16		/* pool registry: names ever seen (pools keep their index) */
#define SB_MAX_QUEUES 8
#define SB_NAME_MAX 64
#define SB_ENTRY_MAX 64

enum sb_state {
	SB_FREE = 0,	/* no process */
	SB_STARTING,	/* forked, not yet connected to its queue */
	SB_IDLE,	/* ready, waiting for a job */
	SB_BUSY,	/* running a job */
	SB_DRAINING,	/* told to stop; finishing or giving back its job */
	SB_DEAD,	/* exited; waiting to be folded */
	SB_NSTATES
};

enum sb_cmd {
	SB_CMD_RUN = 0,		/* take jobs */
	SB_CMD_RETIRE,		/* finish the job in hand, then exit 0 (reload, recycle) */
	SB_CMD_DRAIN,		/* checkpoint the job in hand, give it back, exit 0 */
};

struct sb_slot {
	_Atomic uint32_t state;		/* enum sb_state */
	_Atomic uint32_t cmd;		/* enum sb_cmd */
	_Atomic uint64_t gen;		/* bumped at each spawn into this slot */
	_Atomic int32_t pid;
	_Atomic int32_t pool;		/* index in sb->pools */
	_Atomic int32_t pool_slot;	/* the N in "priority#N" */
	_Atomic int64_t spawned_ns;	/* CLOCK_MONOTONIC at fork */
	_Atomic int64_t heartbeat_ns;	/* CLOCK_MONOTONIC, refreshed by the worker */

	/* The job in hand, under job_seq. */
	_Atomic uint32_t job_seq;
	_Atomic int64_t job_started_ns;	/* CLOCK_REALTIME; 0 when idle */
	struct job job;
	char job_entry[SB_ENTRY_MAX];	/* stream entry id (redis backend) */

	/* The last member done in the job in hand, under cursor_seq. */
	_Atomic uint32_t cursor_seq;
	struct cursor cursor;
	_Atomic uint64_t jobs_done;
	_Atomic uint64_t rss_bytes;

	metric_cell cells[MC_NCELLS];
} __attribute__((aligned(64)));

struct sb_pool {
	char name[SB_NAME_MAX];		/* "" for an unused entry */
	char queue[SB_NAME_MAX];
};

struct sb_queue_stats {
	char name[SB_NAME_MAX];		/* "" for an unused entry */
	int64_t depth;			/* entries not yet delivered; -1 unknown */
	int64_t pending;		/* delivered, not acknowledged; -1 unknown */
	double oldest_enqueued;		/* unix time; 0 if empty */
	int64_t delayed;		/* jobs in its delayed set; -1 unknown */
	double next_due;		/* the earliest of them; 0 if none */
	int32_t paused;			/* 1 while digest:paused:{queue} is set */
	double paused_at;		/* since when; 0 if not paused */
};

/*
 * Gauges sampled by the sampler child
 * (docs/design.md#http-endpoint-and-metrics), published under stats_seq.
 */
struct sb_stats {
	_Atomic uint32_t seq;
	int32_t nqueues;
	struct sb_queue_stats queues[SB_MAX_QUEUES];
	int64_t dead_letters;		/* -1: never read */
	double sched_last_success[2];	/* [0] daily, [1] weekly; 0: never */
	double sampled_at;		/* unix time of the last good sample */
	int32_t ok;			/* last sample succeeded */
};

/*
 * How far the job of a worker that died with it in hand had got (amqp
 * backend): the broker gives such a job to another worker at once, maybe
 * before Redis has the dead worker's progress (Redis was away, or the
 * supervisor's save has not landed yet), so a worker starting a job looks
 * here too.  A ring written by the supervisor only, each entry under its
 * own sequence lock.
 */
#define SB_ORPHANS 32

struct sb_orphan {
	_Atomic uint32_t seq;
	char job_id[JOB_ID_MAX];
	struct cursor cursor;
};

struct scoreboard {
	uint32_t magic;
	uint32_t nslots;
	_Atomic uint64_t log_gen;	/* bumped on SIGUSR1: workers reopen the log */
	_Atomic uint32_t draining;	/* the supervisor is draining or stopping */
	struct sb_pool pools[SB_MAX_POOLS]; /* written by the supervisor only */
	struct sb_stats stats;
	struct sb_slot slots[SB_MAX_SLOTS];
	uint32_t orphan_next;		/* supervisor only */
	struct sb_orphan orphans[SB_ORPHANS];
};

/* Map a new zeroed segment; fatal on failure. */
struct scoreboard *sb_create(void);

/*
 * Sequence locks, for any record of the segment with a single writer.  The
 * writer brackets its stores with sb_seq_write_begin and sb_seq_write_end
 * (the sequence is odd in between; a whole write after one that was torn
 * makes it even again); a reader copies the record with
 * sb_seq_read, or with sb_seq_read_begin and sb_seq_read_retry around its
 * own loads, as many as SB_SEQ_TRIES times.
 */
#define SB_SEQ_TRIES 64

void sb_seq_write_begin(_Atomic uint32_t *);
void sb_seq_write_end(_Atomic uint32_t *);
/*
 * Copy len bytes of the record at src into dst, all from one write.
 * Returns 0, or -1 when the record is unknown: written all the time it was
 * tried, or torn by a writer that died (dst then holds garbage).
 */
int sb_seq_read(_Atomic uint32_t *, void *dst, const void *src, size_t len);
/*
 * Begin one try of a read: 0 and the sequence in *start, or -1 when a
 * write is under way.  After the loads, sb_seq_read_retry says 1 when a
 * write came in between (what was loaded is to be thrown away), else 0.
 */
int sb_seq_read_begin(_Atomic uint32_t *, uint32_t *start);
int sb_seq_read_retry(_Atomic uint32_t *, uint32_t start);
/*
 * The record's writer is dead and reaped: make the sequence even again.
 * The record itself may be torn; the caller rewrites it.  Returns 1 when
 * the writer had died in the middle of a write, else 0.
 */
int sb_seq_repair(_Atomic uint32_t *);

/* Worker side. */
void sb_heartbeat(struct sb_slot *);
void sb_set_state(struct sb_slot *, enum sb_state);
/* Publish the job in hand (entry may be NULL); sets job_started_ns. */
void sb_job_set(struct sb_slot *, const struct job *, const char *entry);
void sb_job_clear(struct sb_slot *);

/*
 * Reader side: copy the job in hand.  Returns 1 and fills job/entry/started
 * when the slot has a job, 0 when idle, -1 when it cannot be known (a
 * write under way, or torn by a worker that died in it): the outputs are
 * then zeroed.  entry must hold SB_ENTRY_MAX bytes.
 */
int sb_job_read(struct sb_slot *, struct job *, char *entry, int64_t *started_ns);
/*
 * Supervisor side, once the slot's worker is reaped: repair a write it died
 * in and clear the job in hand, so that the slot reads "idle" again.
 * Returns 1 when the job in hand had been torn, else 0.
 */
int sb_job_reset(struct sb_slot *);

/* Worker side: the last member done in the job in hand. */
void sb_cursor_set(struct sb_slot *, const struct cursor *);
/*
 * Reader side: copy the slot's cursor.  0, or -1 when no consistent copy
 * could be read (a writer died half-way): then the cursor is unknown.
 */
int sb_cursor_read(struct sb_slot *, struct cursor *);
/* Supervisor side, once the slot's writer is gone: make its cursor readable. */
void sb_cursor_repair(struct sb_slot *);

/* Supervisor side: record where a dead worker's job had got to. */
void sb_orphan_add(struct scoreboard *, const char *job_id,
    const struct cursor *);
/*
 * Worker side: the furthest cursor recorded for job_id.  Returns 1 and
 * sets *cursor when there is one, else 0.  An entry that cannot be read
 * (the supervisor writing it at that instant) is passed over: the
 * checkpoint in Redis is then where the job resumes.
 */
int sb_orphan_cursor(struct scoreboard *, const char *job_id,
    struct cursor *);

/* Sampler side: publish the stats under the sequence lock. */
void sb_stats_write(struct scoreboard *, const struct sb_stats *);
/*
 * Reader side: copy the stats.  Returns 0, or -1 when they cannot be read
 * now (being written, or torn by a sampler that died in a write): *st is
 * then zeroed, and the caller falls back on the last copy it read.
 */
int sb_stats_read(struct scoreboard *, struct sb_stats *);
/*
 * Supervisor side, once the sampler is reaped: if it died in a write, put
 * good back (zeroes if NULL) and make the stats readable again.  Returns 1
 * when they had been torn, else 0.
 */
int sb_stats_repair(struct scoreboard *, const struct sb_stats *good);

const char *sb_state_name(enum sb_state);

#endif
