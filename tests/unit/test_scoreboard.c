/*
 * Unit tests for the shared segment's sequence-locked records
 * (common/scoreboard.c): the job in hand, and the ring of dead workers'
 * cursors that a worker starting a job consults on the amqp backend.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
