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
	/* A new job starts with no progress. */
	assert_int_equal(atomic_load(&s->cursor), 0);
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
	int64_t c = -7;

	assert_int_equal(sb_orphan_cursor(sb, "daily.1.2.0", &c), 0);
	assert_int_equal(c, -7);
	/* An empty id never matches the ring's unused entries. */
	assert_int_equal(sb_orphan_cursor(sb, "", &c), 0);
}

static void
test_orphan_furthest_wins(void **state)
{
	struct scoreboard *sb = sb_create();
	int64_t c = 0;

	sb_orphan_add(sb, "daily.1.2.0", 150);
	sb_orphan_add(sb, "daily.1.3.0", 900);
	sb_orphan_add(sb, "daily.1.2.0", 420);
	sb_orphan_add(sb, "daily.1.2.0", 300);
	assert_int_equal(sb_orphan_cursor(sb, "daily.1.2.0", &c), 1);
	assert_int_equal(c, 420);
	assert_int_equal(sb_orphan_cursor(sb, "daily.1.3.0", &c), 1);
	assert_int_equal(c, 900);
	/* A prefix of an id is another job. */
	assert_int_equal(sb_orphan_cursor(sb, "daily.1.2", &c), 0);
}

static void
test_orphan_ring_forgets_the_oldest(void **state)
{
	struct scoreboard *sb = sb_create();
	char id[JOB_ID_MAX];
	int64_t c;
	int i;

	sb_orphan_add(sb, "weekly.5.6.1", 77);
	for (i = 0; i < SB_ORPHANS - 1; i++) {
		snprintf(id, sizeof(id), "daily.9.%d.0", i);
		sb_orphan_add(sb, id, i);
	}
	assert_int_equal(sb_orphan_cursor(sb, "weekly.5.6.1", &c), 1);
	assert_int_equal(c, 77);
	sb_orphan_add(sb, "daily.9.999.0", 1);
	assert_int_equal(sb_orphan_cursor(sb, "weekly.5.6.1", &c), 0);
	assert_int_equal(sb_orphan_cursor(sb, "daily.9.0.0", &c), 1);
	assert_int_equal(c, 0);
}

static void
test_orphan_long_id_is_cut_safely(void **state)
{
	struct scoreboard *sb = sb_create();
	char id[JOB_ID_MAX * 2];
	int64_t c;

	memset(id, 'x', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	sb_orphan_add(sb, id, 5);
	/* Stored cut to JOB_ID_MAX - 1: the whole id does not match it. */
	assert_int_equal(sb_orphan_cursor(sb, id, &c), 0);
	id[JOB_ID_MAX - 1] = '\0';
	assert_int_equal(sb_orphan_cursor(sb, id, &c), 1);
	assert_int_equal(c, 5);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
