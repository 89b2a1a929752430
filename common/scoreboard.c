/*
 * The shared segment: creation and the few accessors that need ordering
 * (the job in hand, the sampled stats and the dead workers' cursors are
 * written under sequence locks).
 *
 * A sequence lock's reader never waits for its writer: the writer is
 * another process, which may be stopped, or killed in the middle of its
 * write and never finish it.  So a read tries SB_SEQ_TRIES times (a few
 * microseconds, while a write takes well under one) and then reports the
 * record unknown, and the supervisor repairs a dead writer's record when
 * it reaps it.
 */
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "scoreboard.h"
#include "util.h"

#define SB_MAGIC 0x64677362u	/* "dgsb" */

struct scoreboard *
sb_create(void)
{
	struct scoreboard *sb;

	sb = mmap(NULL, sizeof(*sb), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sb == MAP_FAILED)
		fatal("mmap scoreboard");
	sb->magic = SB_MAGIC;
	sb->nslots = SB_MAX_SLOTS;
	/* Not sampled yet: unknown (the queues' figures too, see sampler.c). */
	sb->stats.dead_letters = -1;
	return sb;
}

void
sb_heartbeat(struct sb_slot *s)
{
	atomic_store_explicit(&s->heartbeat_ns, now_mono_ns(),
	    memory_order_relaxed);
}

void
sb_set_state(struct sb_slot *s, enum sb_state st)
{
	atomic_store_explicit(&s->state, st, memory_order_release);
	sb_heartbeat(s);
}

/* A breath between two tries, so that a writer on another core gets on. */
static inline void
seq_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/*
 * A sequence left odd by a writer that died stays odd here (v | 1) and
 * becomes even at the end of this write: a record written whole by its
 * next writer is readable again, whoever repaired it or not.
 */
void
sb_seq_write_begin(_Atomic uint32_t *seq)
{
	uint32_t v = atomic_load_explicit(seq, memory_order_relaxed);

	atomic_store_explicit(seq, v | 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

void
sb_seq_write_end(_Atomic uint32_t *seq)
{
	uint32_t v = atomic_load_explicit(seq, memory_order_relaxed);

	atomic_store_explicit(seq, (v | 1) + 1, memory_order_release);
}

int
sb_seq_read_begin(_Atomic uint32_t *seq, uint32_t *start)
{
	*start = atomic_load_explicit(seq, memory_order_acquire);
	return *start & 1 ? -1 : 0;
}

int
sb_seq_read_retry(_Atomic uint32_t *seq, uint32_t start)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(seq, memory_order_relaxed) != start;
}

int
sb_seq_read(_Atomic uint32_t *seq, void *dst, const void *src, size_t len)
{
	uint32_t start;
	int i;

	for (i = 0; i < SB_SEQ_TRIES; i++) {
		if (sb_seq_read_begin(seq, &start) == -1) {
			seq_pause();
			continue;
		}
		memcpy(dst, src, len);
		if (!sb_seq_read_retry(seq, start))
			return 0;
	}
	return -1;
}

int
sb_seq_repair(_Atomic uint32_t *seq)
{
	uint32_t v = atomic_load_explicit(seq, memory_order_acquire);

	if ((v & 1) == 0)
		return 0;
	atomic_store_explicit(seq, v + 1, memory_order_release);
	return 1;
}

void
sb_job_set(struct sb_slot *s, const struct job *j, const char *entry)
{
	sb_seq_write_begin(&s->job_seq);
	s->job = *j;
	if (entry == NULL)
		entry = "";
	strlcpy(s->job_entry, entry, sizeof(s->job_entry));
	atomic_store_explicit(&s->job_started_ns, now_real_ns(),
	    memory_order_relaxed);
	sb_seq_write_end(&s->job_seq);
}

void
sb_job_clear(struct sb_slot *s)
{
	sb_seq_write_begin(&s->job_seq);
	atomic_store_explicit(&s->job_started_ns, 0, memory_order_relaxed);
	memset(&s->job, 0, sizeof(s->job));
	s->job_entry[0] = '\0';
	sb_seq_write_end(&s->job_seq);
}

void
sb_cursor_set(struct sb_slot *s, const struct cursor *c)
{
	sb_seq_write_begin(&s->cursor_seq);
	s->cursor = *c;
	sb_seq_write_end(&s->cursor_seq);
}

int
sb_cursor_read(struct sb_slot *s, struct cursor *c)
{
	if (sb_seq_read(&s->cursor_seq, c, &s->cursor, sizeof(*c)) == -1) {
		memset(c, 0, sizeof(*c));
		return -1;
	}
	return 0;
}

void
sb_cursor_repair(struct sb_slot *s)
{
	if (sb_seq_repair(&s->cursor_seq))
		memset(&s->cursor, 0, sizeof(s->cursor));
}

int
sb_job_read(struct sb_slot *s, struct job *j, char *entry, int64_t *started)
{
	struct job job;
	char e[SB_ENTRY_MAX];
	uint32_t start;
	int64_t t = 0;
	int i, ok = 0;

	for (i = 0; i < SB_SEQ_TRIES && !ok; i++) {
		if (sb_seq_read_begin(&s->job_seq, &start) == -1) {
			seq_pause();
			continue;
		}
		t = atomic_load_explicit(&s->job_started_ns,
		    memory_order_relaxed);
		memcpy(&job, &s->job, sizeof(job));
		memcpy(e, s->job_entry, sizeof(e));
		ok = !sb_seq_read_retry(&s->job_seq, start);
	}
	if (!ok) {
		/* Half a job id must not pass for a job: give nothing. */
		memset(&job, 0, sizeof(job));
		memset(e, 0, sizeof(e));
		t = 0;
	}
	e[SB_ENTRY_MAX - 1] = '\0';
	job.job_id[JOB_ID_MAX - 1] = '\0';
	if (j != NULL)
		*j = job;
	if (entry != NULL)
		memcpy(entry, e, SB_ENTRY_MAX);
	if (started != NULL)
		*started = t;
	if (!ok)
		return -1;
	return t != 0;
}

/*
 * Only the supervisor calls this, with the worker reaped: nothing else
 * writes the slot's job, and the clear below ends the torn write.
 */
int
sb_job_reset(struct sb_slot *s)
{
	int torn;

	torn = atomic_load_explicit(&s->job_seq, memory_order_acquire) & 1;
	sb_job_clear(s);
	return torn;
}

void
sb_orphan_add(struct scoreboard *sb, const char *job_id,
    const struct cursor *cursor)
{
	struct sb_orphan *o = &sb->orphans[sb->orphan_next++ % SB_ORPHANS];

	sb_seq_write_begin(&o->seq);
	strlcpy(o->job_id, job_id, sizeof(o->job_id));
	o->cursor = *cursor;
	sb_seq_write_end(&o->seq);
}

int
sb_orphan_cursor(struct scoreboard *sb, const char *job_id,
    struct cursor *cursor)
{
	struct sb_orphan *o;
	char id[JOB_ID_MAX];
	uint32_t start;
	struct cursor c;
	int i, k, ok, found = 0;

	for (i = 0; i < SB_ORPHANS; i++) {
		o = &sb->orphans[i];
		for (k = 0, ok = 0; k < SB_SEQ_TRIES && !ok; k++) {
			if (sb_seq_read_begin(&o->seq, &start) == -1) {
				seq_pause();
				continue;
			}
			memcpy(id, o->job_id, sizeof(id));
			c = o->cursor;
			ok = !sb_seq_read_retry(&o->seq, start);
		}
		/* start == 0: an entry never written. */
		if (!ok || start == 0)
			continue;
		id[sizeof(id) - 1] = '\0';
		if (strcmp(id, job_id) != 0)
			continue;
		if (!found || cursor_cmp(&c, cursor) > 0)
			*cursor = c;
		found = 1;
	}
	return found;
}

/* The stats after their sequence: what a write replaces. */
#define SB_STATS_BODY offsetof(struct sb_stats, nqueues)

void
sb_stats_write(struct scoreboard *sb, const struct sb_stats *st)
{
	sb_seq_write_begin(&sb->stats.seq);
	memcpy((char *)&sb->stats + SB_STATS_BODY,
	    (const char *)st + SB_STATS_BODY, sizeof(*st) - SB_STATS_BODY);
	sb_seq_write_end(&sb->stats.seq);
}

int
sb_stats_read(struct scoreboard *sb, struct sb_stats *st)
{
	uint32_t seq;

	if (sb_seq_read(&sb->stats.seq, (char *)st + SB_STATS_BODY,
	    (const char *)&sb->stats + SB_STATS_BODY,
	    sizeof(*st) - SB_STATS_BODY) == -1) {
		memset(st, 0, sizeof(*st));
		return -1;
	}
	seq = atomic_load_explicit(&sb->stats.seq, memory_order_relaxed);
	atomic_store_explicit(&st->seq, seq, memory_order_relaxed);
	return 0;
}

/*
 * Only the supervisor calls this, with the sampler reaped and the next one
 * not yet forked: nothing else writes or reads the stats meanwhile.
 */
int
sb_stats_repair(struct scoreboard *sb, const struct sb_stats *good)
{
	static const struct sb_stats zero;

	if ((atomic_load_explicit(&sb->stats.seq, memory_order_acquire) &
	    1) == 0)
		return 0;
	sb_stats_write(sb, good != NULL ? good : &zero);
	return 1;
}

const char *
sb_state_name(enum sb_state st)
{
	static const char *const names[SB_NSTATES] = {
		"free", "starting", "idle", "busy", "draining", "dead",
	};

	if ((unsigned)st >= SB_NSTATES)
		return "unknown";
	return names[st];
}
