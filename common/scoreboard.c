/*
 * The shared segment: creation and the few accessors that need ordering
 * (the job in hand and the sampled stats are written under sequence locks).
 */
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

static void
seq_begin(_Atomic uint32_t *seq)
{
	atomic_fetch_add_explicit(seq, 1, memory_order_acq_rel);
	atomic_thread_fence(memory_order_release);
}

static void
seq_end(_Atomic uint32_t *seq)
{
	atomic_thread_fence(memory_order_release);
	atomic_fetch_add_explicit(seq, 1, memory_order_release);
}

void
sb_job_set(struct sb_slot *s, const struct job *j, const char *entry)
{
	seq_begin(&s->job_seq);
	s->job = *j;
	if (entry == NULL)
		entry = "";
	strlcpy(s->job_entry, entry, sizeof(s->job_entry));
	atomic_store_explicit(&s->job_started_ns, now_real_ns(),
	    memory_order_relaxed);
	seq_end(&s->job_seq);
}

void
sb_job_clear(struct sb_slot *s)
{
	seq_begin(&s->job_seq);
	atomic_store_explicit(&s->job_started_ns, 0, memory_order_relaxed);
	memset(&s->job, 0, sizeof(s->job));
	s->job_entry[0] = '\0';
	seq_end(&s->job_seq);
}

void
sb_cursor_set(struct sb_slot *s, const struct cursor *c)
{
	seq_begin(&s->cursor_seq);
	s->cursor = *c;
	seq_end(&s->cursor_seq);
}

/* A reader gives up after this many torn reads: the writer died in it. */
#define SB_CURSOR_TRIES 10000

int
sb_cursor_read(struct sb_slot *s, struct cursor *c)
{
	uint32_t a, b;
	int i;

	for (i = 0; i < SB_CURSOR_TRIES; i++) {
		a = atomic_load_explicit(&s->cursor_seq, memory_order_acquire);
		if (a & 1)
			continue;
		memcpy(c, &s->cursor, sizeof(*c));
		atomic_thread_fence(memory_order_acquire);
		b = atomic_load_explicit(&s->cursor_seq, memory_order_relaxed);
		if (a == b)
			return 0;
	}
	memset(c, 0, sizeof(*c));
	return -1;
}

void
sb_cursor_repair(struct sb_slot *s)
{
	uint32_t a = atomic_load_explicit(&s->cursor_seq,
	    memory_order_acquire);

	if (a & 1) {
		memset(&s->cursor, 0, sizeof(s->cursor));
		atomic_store_explicit(&s->cursor_seq, a + 1,
		    memory_order_release);
	}
}

int
sb_job_read(struct sb_slot *s, struct job *j, char *entry, int64_t *started)
{
	uint32_t a, b;
	int64_t t;

	for (;;) {
		a = atomic_load_explicit(&s->job_seq, memory_order_acquire);
		if (a & 1)
			continue;
		t = atomic_load_explicit(&s->job_started_ns,
		    memory_order_relaxed);
		if (j != NULL)
			memcpy(j, &s->job, sizeof(*j));
		if (entry != NULL)
			memcpy(entry, s->job_entry, SB_ENTRY_MAX);
		atomic_thread_fence(memory_order_acquire);
		b = atomic_load_explicit(&s->job_seq, memory_order_relaxed);
		if (a == b)
			break;
	}
	if (entry != NULL)
		entry[SB_ENTRY_MAX - 1] = '\0';
	if (j != NULL)
		j->job_id[JOB_ID_MAX - 1] = '\0';
	if (started != NULL)
		*started = t;
	return t != 0;
}

void
sb_orphan_add(struct scoreboard *sb, const char *job_id,
    const struct cursor *cursor)
{
	struct sb_orphan *o = &sb->orphans[sb->orphan_next++ % SB_ORPHANS];

	seq_begin(&o->seq);
	strlcpy(o->job_id, job_id, sizeof(o->job_id));
	o->cursor = *cursor;
	seq_end(&o->seq);
}

int
sb_orphan_cursor(struct scoreboard *sb, const char *job_id,
    struct cursor *cursor)
{
	struct sb_orphan *o;
	char id[JOB_ID_MAX];
	uint32_t a, b;
	struct cursor c;
	int i, found = 0;

	for (i = 0; i < SB_ORPHANS; i++) {
		o = &sb->orphans[i];
		for (;;) {
			a = atomic_load_explicit(&o->seq, memory_order_acquire);
			if (a & 1)
				continue;
			memcpy(id, o->job_id, sizeof(id));
			c = o->cursor;
			atomic_thread_fence(memory_order_acquire);
			b = atomic_load_explicit(&o->seq, memory_order_relaxed);
			if (a == b)
				break;
		}
		id[sizeof(id) - 1] = '\0';
		if (a == 0 || strcmp(id, job_id) != 0)
			continue;
		if (!found || cursor_cmp(&c, cursor) > 0)
			*cursor = c;
		found = 1;
	}
	return found;
}

void
sb_stats_write(struct scoreboard *sb, const struct sb_stats *st)
{
	seq_begin(&sb->stats.seq);
	memcpy((char *)&sb->stats + sizeof(sb->stats.seq),
	    (const char *)st + sizeof(st->seq),
	    sizeof(*st) - sizeof(st->seq));
	seq_end(&sb->stats.seq);
}

void
sb_stats_read(struct scoreboard *sb, struct sb_stats *st)
{
	uint32_t a, b;

	for (;;) {
		a = atomic_load_explicit(&sb->stats.seq, memory_order_acquire);
		if (a & 1)
			continue;
		memcpy((char *)st + sizeof(st->seq),
		    (const char *)&sb->stats + sizeof(sb->stats.seq),
		    sizeof(*st) - sizeof(st->seq));
		atomic_thread_fence(memory_order_acquire);
		b = atomic_load_explicit(&sb->stats.seq, memory_order_relaxed);
		if (a == b)
			break;
	}
	atomic_store_explicit(&st->seq, a, memory_order_relaxed);
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
