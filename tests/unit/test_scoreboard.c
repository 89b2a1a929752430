/*
 * Unit tests for the shared segment's sequence-locked records
 * (common/scoreboard.c): the job in hand, the ring of dead workers'
 * cursors that a worker starting a job consults on the amqp backend, and
 * the sampler's stats.  A writer killed in the middle of a write leaves its
 * sequence odd: every read must come back, saying "unknown", and the
 * repair after the writer is reaped must make the record readable again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "scoreboard.h"

/* A cursor at user id u, whose score is u. */
static struct cursor
at(int64_t u)
{
	struct cursor c = { 1, (double)u, u };

	return c;
}

static void
test_job_round_trip(void **state)
{
	struct scoreboard *sb = sb_create();
	struct sb_slot *s = &sb->slots[3];
	struct job j, got;
	char entry[SB_ENTRY_MAX];
	int64_t started;

	assert_int_equal(sb_job_read(s, &got, entry, &started), 0);
	memset(&j, 0, sizeof(j));
	strcpy(j.job_id, "daily.1764374400.42.0");
	j.group_id = 42;
	j.member_min = 10;
	j.member_max = 99;
	sb_job_set(s, &j, "1-0");
	assert_int_equal(sb_job_read(s, &got, entry, &started), 1);
	assert_string_equal(got.job_id, j.job_id);
	assert_int_equal(got.member_max, 99);
	assert_string_equal(entry, "1-0");
	assert_true(started > 0);
	sb_job_clear(s);
	assert_int_equal(sb_job_read(s, &got, entry, &started), 0);
}

static void
test_orphan_none(void **state)
{
	struct scoreboard *sb = sb_create();
	struct cursor c = at(-7);

	assert_int_equal(sb_orphan_cursor(sb, "daily.1.2.0", &c), 0);
	assert_int_equal(c.uid, -7);
	/* An empty id never matches the ring's unused entries. */
	assert_int_equal(sb_orphan_cursor(sb, "", &c), 0);
}

static void
test_orphan_furthest_wins(void **state)
{
	struct scoreboard *sb = sb_create();
	struct cursor c = at(0);

	sb_orphan_add(sb, "daily.1.2.0", &(struct cursor){ 1, (double)(150), (150) });
	sb_orphan_add(sb, "daily.1.3.0", &(struct cursor){ 1, (double)(900), (900) });
	sb_orphan_add(sb, "daily.1.2.0", &(struct cursor){ 1, (double)(420), (420) });
	sb_orphan_add(sb, "daily.1.2.0", &(struct cursor){ 1, (double)(300), (300) });
	assert_int_equal(sb_orphan_cursor(sb, "daily.1.2.0", &c), 1);
	assert_int_equal(c.uid, 420);
	assert_int_equal(sb_orphan_cursor(sb, "daily.1.3.0", &c), 1);
	assert_int_equal(c.uid, 900);
	/* A prefix of an id is another job. */
	assert_int_equal(sb_orphan_cursor(sb, "daily.1.2", &c), 0);
}

static void
test_orphan_ring_forgets_the_oldest(void **state)
{
	struct scoreboard *sb = sb_create();
	char id[JOB_ID_MAX];
	struct cursor c;
	int i;

	sb_orphan_add(sb, "weekly.5.6.1", &(struct cursor){ 1, (double)(77), (77) });
	for (i = 0; i < SB_ORPHANS - 1; i++) {
		snprintf(id, sizeof(id), "daily.9.%d.0", i);
		sb_orphan_add(sb, id, &(struct cursor){ 1, (double)(i), (i) });
	}
	assert_int_equal(sb_orphan_cursor(sb, "weekly.5.6.1", &c), 1);
	assert_int_equal(c.uid, 77);
	sb_orphan_add(sb, "daily.9.999.0", &(struct cursor){ 1, (double)(1), (1) });
	assert_int_equal(sb_orphan_cursor(sb, "weekly.5.6.1", &c), 0);
	assert_int_equal(sb_orphan_cursor(sb, "daily.9.0.0", &c), 1);
	assert_int_equal(c.uid, 0);
}

static void
test_orphan_long_id_is_cut_safely(void **state)
{
	struct scoreboard *sb = sb_create();
	char id[JOB_ID_MAX * 2];
	struct cursor c;

	memset(id, 'x', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	sb_orphan_add(sb, id, &(struct cursor){ 1, (double)(5), (5) });
	/* Stored cut to JOB_ID_MAX - 1: the whole id does not match it. */
	assert_int_equal(sb_orphan_cursor(sb, id, &c), 0);
	id[JOB_ID_MAX - 1] = '\0';
	assert_int_equal(sb_orphan_cursor(sb, id, &c), 1);
	assert_int_equal(c.uid, 5);
}

/* The furthest is the furthest in the walk's order, not the largest id. */
static void
test_orphan_order_is_the_walks(void **state)
{
	struct scoreboard *sb = sb_create();
	struct cursor c;

	/* Equal scores: members bytewise, so "10" comes before "9". */
	sb_orphan_add(sb, "j", &(struct cursor){ 1, 5.0, 9 });
	sb_orphan_add(sb, "j", &(struct cursor){ 1, 5.0, 10 });
	assert_int_equal(sb_orphan_cursor(sb, "j", &c), 1);
	assert_int_equal(c.uid, 9);
	/* A higher score wins whatever the id. */
	sb_orphan_add(sb, "j", &(struct cursor){ 1, 5.5, 2 });
	assert_int_equal(sb_orphan_cursor(sb, "j", &c), 1);
	assert_int_equal(c.uid, 2);
}

static void
test_cursor_round_trip(void **state)
{
	struct scoreboard *sb = sb_create();
	struct sb_slot *s = &sb->slots[7];
	struct cursor c = at(1), got;

	assert_int_equal(sb_cursor_read(s, &got), 0);
	assert_int_equal(got.set, 0);
	c.score = -2.5;
	sb_cursor_set(s, &c);
	assert_int_equal(sb_cursor_read(s, &got), 0);
	assert_int_equal(got.set, 1);
	assert_int_equal(got.uid, 1);
	assert_true(got.score == -2.5);
}

/* A writer killed half-way leaves the cursor unknown, not a hang. */
static void
test_cursor_torn_write(void **state)
{
	struct scoreboard *sb = sb_create();
	struct sb_slot *s = &sb->slots[1];
	struct cursor got;

	sb_cursor_set(s, &(struct cursor){ 1, 3.0, 3 });
	atomic_fetch_add(&s->cursor_seq, 1);	/* the writer died here */
	assert_int_equal(sb_cursor_read(s, &got), -1);
	assert_int_equal(got.set, 0);
	sb_cursor_repair(s);
	assert_int_equal(sb_cursor_read(s, &got), 0);
	sb_cursor_set(s, &(struct cursor){ 1, 4.0, 4 });
	assert_int_equal(sb_cursor_read(s, &got), 0);
	assert_int_equal(got.uid, 4);
}

/*
 * A read of a torn record must return, and soon: a few microseconds is the
 * design; a second is the guard, and alarm() ends a read that never does.
 */
#define TORN_READ_MAX_NS 1000000000LL

static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* What a writer killed between its first and its last store leaves. */
static void
tear(_Atomic uint32_t *seq, void *rec, size_t len)
{
	atomic_fetch_add(seq, 1);
	memset((char *)rec + len / 2, 0xa5, len - len / 2);
}

static void
test_torn_job_reads_unknown_then_repairs(void **state)
{
	struct scoreboard *sb = sb_create();
	struct sb_slot *s = &sb->slots[5];
	struct job j, got;
	char entry[SB_ENTRY_MAX];
	int64_t started = 99, t0;

	memset(&j, 0, sizeof(j));
	strcpy(j.job_id, "daily.1764374400.7.0");
	j.member_max = 50;
	sb_job_set(s, &j, "5-0");
	tear(&s->job_seq, &s->job, sizeof(s->job));
	assert_true(atomic_load(&s->job_seq) & 1);

	alarm(5);
	t0 = mono_ns();
	assert_int_equal(sb_job_read(s, &got, entry, &started), -1);
	assert_true(mono_ns() - t0 < TORN_READ_MAX_NS);
	/* Nothing of the torn job passes for a job. */
	assert_string_equal(got.job_id, "");
	assert_string_equal(entry, "");
	assert_int_equal(started, 0);
	/* Reads that only want the start time are bounded too. */
	assert_int_equal(sb_job_read(s, NULL, NULL, &started), -1);
	alarm(0);

	/* The supervisor reaps the worker and resets the slot. */
	assert_int_equal(sb_job_reset(s), 1);
	assert_false(atomic_load(&s->job_seq) & 1);
	assert_int_equal(sb_job_read(s, &got, entry, &started), 0);
	assert_string_equal(got.job_id, "");
	assert_int_equal(sb_job_reset(s), 0);

	/* The next worker in the slot publishes and is read as before. */
	strcpy(j.job_id, "daily.1764374400.8.0");
	sb_job_set(s, &j, "6-0");
	assert_int_equal(sb_job_read(s, &got, entry, &started), 1);
	assert_string_equal(got.job_id, "daily.1764374400.8.0");
	assert_string_equal(entry, "6-0");
	assert_true(started > 0);
}

/* A respawn that writes before any repair heals the sequence itself. */
static void
test_torn_job_healed_by_the_next_write(void **state)
{
	struct scoreboard *sb = sb_create();
	struct sb_slot *s = &sb->slots[0];
	struct job j, got;

	memset(&j, 0, sizeof(j));
	strcpy(j.job_id, "weekly.1764374400.3.1");
	tear(&s->job_seq, &s->job, sizeof(s->job));
	sb_job_clear(s);
	assert_false(atomic_load(&s->job_seq) & 1);
	assert_int_equal(sb_job_read(s, &got, NULL, NULL), 0);
	tear(&s->job_seq, &s->job, sizeof(s->job));
	sb_job_set(s, &j, NULL);
	assert_int_equal(sb_job_read(s, &got, NULL, NULL), 1);
	assert_string_equal(got.job_id, j.job_id);
}

static void
test_torn_stats_read_unknown_then_repair(void **state)
{
	struct scoreboard *sb = sb_create();
	struct sb_stats st, good, got;
	int64_t t0;

	memset(&st, 0, sizeof(st));
	st.nqueues = 1;
	strcpy(st.queues[0].name, "priority");
	st.queues[0].depth = 42;
	st.dead_letters = 3;
	st.sampled_at = 1764374400.5;
	st.ok = 1;
	sb_stats_write(sb, &st);
	assert_int_equal(sb_stats_read(sb, &good), 0);
	assert_true(good.queues[0].depth == 42);

	tear(&sb->stats.seq, &sb->stats.nqueues,
	    sizeof(sb->stats) - offsetof(struct sb_stats, nqueues));
	alarm(5);
	t0 = mono_ns();
	assert_int_equal(sb_stats_read(sb, &got), -1);
	assert_true(mono_ns() - t0 < TORN_READ_MAX_NS);
	assert_int_equal(got.nqueues, 0);
	alarm(0);

	/* The sampler is reaped: the last good figures go back. */
	assert_int_equal(sb_stats_repair(sb, &good), 1);
	assert_int_equal(sb_stats_read(sb, &got), 0);
	assert_int_equal(got.nqueues, 1);
	assert_string_equal(got.queues[0].name, "priority");
	assert_true(got.queues[0].depth == 42);
	assert_int_equal(got.dead_letters, 3);
	assert_true(got.sampled_at == 1764374400.5);
	/* Not torn: left alone. */
	assert_int_equal(sb_stats_repair(sb, NULL), 0);
	assert_int_equal(sb_stats_read(sb, &got), 0);
	assert_true(got.queues[0].depth == 42);

	/* With no good copy, zeroes: readable, and never garbage. */
	tear(&sb->stats.seq, &sb->stats.nqueues,
	    sizeof(sb->stats) - offsetof(struct sb_stats, nqueues));
	assert_int_equal(sb_stats_repair(sb, NULL), 1);
	assert_int_equal(sb_stats_read(sb, &got), 0);
	assert_int_equal(got.nqueues, 0);
	assert_true(got.sampled_at == 0);
}

static void
test_torn_orphan_is_passed_over(void **state)
{
	struct scoreboard *sb = sb_create();
	struct sb_orphan *o;
	struct cursor c = at(-1);
	int64_t t0;

	sb_orphan_add(sb, "daily.1.2.0", &(struct cursor){ 1, 150.0, 150 });
	sb_orphan_add(sb, "daily.1.2.0", &(struct cursor){ 1, 420.0, 420 });
	o = &sb->orphans[1];
	atomic_fetch_add(&o->seq, 1);
	alarm(5);
	t0 = mono_ns();
	/* The entry being written is skipped; the other one still counts. */
	assert_int_equal(sb_orphan_cursor(sb, "daily.1.2.0", &c), 1);
	assert_true(mono_ns() - t0 < TORN_READ_MAX_NS);
	assert_int_equal(c.uid, 150);
	alarm(0);
	assert_int_equal(sb_seq_repair(&o->seq), 1);
	assert_int_equal(sb_seq_repair(&o->seq), 0);
	assert_int_equal(sb_orphan_cursor(sb, "daily.1.2.0", &c), 1);
	assert_int_equal(c.uid, 420);
}

/* The generic pair, as a record of two fields under its own sequence. */
static void
test_seq_generic(void **state)
{
	struct {
		_Atomic uint32_t seq;
		int64_t score;
		int64_t id;
	} rec = { 0 }, copy;
	struct {
		int64_t score, id;
	} v, src = { 7, 1234 };
	uint32_t start;

	sb_seq_write_begin(&rec.seq);
	assert_int_equal(sb_seq_read_begin(&rec.seq, &start), -1);
	assert_int_equal(sb_seq_read(&rec.seq, &v, &rec.score, sizeof(v)), -1);
	rec.score = src.score;
	rec.id = src.id;
	sb_seq_write_end(&rec.seq);
	assert_int_equal(sb_seq_read(&rec.seq, &v, &rec.score, sizeof(v)), 0);
	assert_int_equal(v.score, 7);
	assert_int_equal(v.id, 1234);

	/* A write between begin and retry throws the loads away. */
	assert_int_equal(sb_seq_read_begin(&rec.seq, &start), 0);
	copy.score = rec.score;
	sb_seq_write_begin(&rec.seq);
	rec.score = 8;
	sb_seq_write_end(&rec.seq);
	assert_int_equal(sb_seq_read_retry(&rec.seq, start), 1);
	assert_int_equal(sb_seq_read_begin(&rec.seq, &start), 0);
	copy.score = rec.score;
	assert_int_equal(sb_seq_read_retry(&rec.seq, start), 0);
	assert_int_equal(copy.score, 8);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_job_round_trip),
		cmocka_unit_test(test_orphan_none),
		cmocka_unit_test(test_orphan_furthest_wins),
		cmocka_unit_test(test_orphan_ring_forgets_the_oldest),
		cmocka_unit_test(test_orphan_long_id_is_cut_safely),
		cmocka_unit_test(test_orphan_order_is_the_walks),
		cmocka_unit_test(test_cursor_round_trip),
		cmocka_unit_test(test_cursor_torn_write),
		cmocka_unit_test(test_torn_job_reads_unknown_then_repairs),
		cmocka_unit_test(test_torn_job_healed_by_the_next_write),
		cmocka_unit_test(test_torn_stats_read_unknown_then_repair),
		cmocka_unit_test(test_torn_orphan_is_passed_over),
		cmocka_unit_test(test_seq_generic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
