/*
 * The eligibility rules of docs/design.md#recipients-and-the-email: each rule
 * on its own, their order (the first failing rule is the reason), and the
 * edges (missing preference, threshold reached exactly, last_seen at the
 * boundary, own posts); and how many ranked posts a job must read so that
 * every member, author or not, finds max_posts posts not their own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "eligibility.h"

#define WEND 1764374400LL
#define DAY 86400LL

static struct elig_job
job(const char *period, int64_t size)
{
	struct elig_job j = {
		.period = period,
		.window_end = WEND,
		.group_size = size,
		.large_group_threshold = 100,
		.inactive_after_s = 90 * DAY,
		.nposts = 3,
		.sole_author = -1,
	};
	return j;
}

static struct elig_member
member(int64_t uid, const char *email, const char *digest,
    const char *last_seen)
{
	struct elig_member m = { uid, email, digest, last_seen, 0 };
	return m;
}

/* 1 if eligible; else -1 - reason, so one assert checks both. */
static int
check(const struct elig_job *j, const struct elig_member *m)
{
	enum skip_reason why = SKIP_N;

	if (eligibility_check(j, m, &why))
		return 1;
	return -1 - (int)why;
}

#define SKIP(r) (-1 - (int)(r))

static void
test_eligible(void **state)
{
	struct elig_job j = job("daily", 10);
	struct elig_member m = member(7, "a@example.com", NULL, NULL);

	(void)state;
	assert_int_equal(check(&j, &m), 1);
	m.digest = "daily";
	assert_int_equal(check(&j, &m), 1);
	m.digest = "";
	assert_int_equal(check(&j, &m), 1);
}

static void
test_no_email(void **state)
{
	struct elig_job j = job("daily", 10);
	struct elig_member m = member(7, NULL, NULL, NULL);

	(void)state;
	assert_int_equal(check(&j, &m), SKIP(SKIP_NO_EMAIL));
	m.email = "";
	assert_int_equal(check(&j, &m), SKIP(SKIP_NO_EMAIL));
	/* First failing rule wins: no email beats opted out. */
	m.digest = "off";
	assert_int_equal(check(&j, &m), SKIP(SKIP_NO_EMAIL));
}

static void
test_preferences(void **state)
{
	struct elig_job d = job("daily", 10), w = job("weekly", 10);
	struct elig_member m = member(7, "a@example.com", NULL, NULL);

	(void)state;
	/* Missing means daily. */
	assert_int_equal(check(&d, &m), 1);
	assert_int_equal(check(&w, &m), SKIP(SKIP_OPTED_OUT));
	m.digest = "weekly";
	assert_int_equal(check(&d, &m), SKIP(SKIP_OPTED_OUT));
	assert_int_equal(check(&w, &m), 1);
	m.digest = "off";
	assert_int_equal(check(&d, &m), SKIP(SKIP_OPTED_OUT));
	assert_int_equal(check(&w, &m), SKIP(SKIP_OPTED_OUT));
	m.digest = "monthly";
	assert_int_equal(check(&d, &m), SKIP(SKIP_OPTED_OUT));
	assert_int_equal(check(&w, &m), SKIP(SKIP_OPTED_OUT));
	assert_true(eligibility_wants(NULL, "daily"));
	assert_false(eligibility_wants(NULL, "weekly"));
}

/* A mute of the group is opted_out, after no_email, before the rest. */
static void
test_muted(void **state)
{
	struct elig_job d = job("daily", 100);
	struct elig_member m = member(7, "a@example.com", NULL, NULL);

	(void)state;
	assert_int_equal(check(&d, &m), SKIP(SKIP_INACTIVE));
	m.muted = 1;
	assert_int_equal(check(&d, &m), SKIP(SKIP_OPTED_OUT));
	m.last_seen = "1764374400";
	assert_int_equal(check(&d, &m), SKIP(SKIP_OPTED_OUT));
	m.muted = 0;
	assert_int_equal(check(&d, &m), 1);
	m.muted = 1;
	m.email = NULL;
	assert_int_equal(check(&d, &m), SKIP(SKIP_NO_EMAIL));
}

static void
test_inactive_only_in_large_groups(void **state)
{
	struct elig_job small = job("daily", 99), large = job("daily", 100);
	struct elig_member m = member(7, "a@example.com", NULL, NULL);
	char buf[32];

	(void)state;
	/* Missing last_seen: inactive, but only at the threshold or above. */
	assert_int_equal(check(&small, &m), 1);
	assert_int_equal(check(&large, &m), SKIP(SKIP_INACTIVE));
	m.last_seen = "garbage";
	assert_int_equal(check(&large, &m), SKIP(SKIP_INACTIVE));
	/* Exactly inactive_after before the window end is still active. */
	snprintf(buf, sizeof(buf), "%lld", WEND - 90 * DAY);
	m.last_seen = buf;
	assert_int_equal(check(&large, &m), 1);
	snprintf(buf, sizeof(buf), "%lld", WEND - 90 * DAY - 1);
	assert_int_equal(check(&large, &m), SKIP(SKIP_INACTIVE));
	assert_int_equal(check(&small, &m), 1);
	snprintf(buf, sizeof(buf), "%lld", WEND - 3600);
	assert_int_equal(check(&large, &m), 1);
	/* Opted out comes before inactive. */
	m.last_seen = NULL;
	m.digest = "off";
	assert_int_equal(check(&large, &m), SKIP(SKIP_OPTED_OUT));
}

static void
test_nothing_new(void **state)
{
	struct elig_job j = job("daily", 10);
	struct elig_member m = member(7, "a@example.com", NULL, NULL);

	(void)state;
	j.nposts = 0;
	assert_int_equal(check(&j, &m), SKIP(SKIP_NOTHING_NEW));
	/* Every post of the window is the member's own. */
	j.nposts = 2;
	j.sole_author = 7;
	assert_int_equal(check(&j, &m), SKIP(SKIP_NOTHING_NEW));
	/* Someone else's posts are new to them. */
	m.uid = 8;
	assert_int_equal(check(&j, &m), 1);
	/* Inactive comes before nothing new. */
	j.group_size = 1000;
	assert_int_equal(check(&j, &m), SKIP(SKIP_INACTIVE));
}

static void
test_posts_needed(void **state)
{
	int64_t a[40];
	size_t i;

	(void)state;
	/* Few posts: all of them. */
	for (i = 0; i < 40; i++)
		a[i] = -1;
	assert_int_equal(eligibility_posts_needed(a, 7, 10), 7);
	assert_int_equal(eligibility_posts_needed(a, 10, 10), 10);
	/* Unknown authors: nobody's own, the first ten serve everyone. */
	assert_int_equal(eligibility_posts_needed(a, 40, 10), 10);
	/* One post each: an author in the top ten needs the eleventh. */
	for (i = 0; i < 40; i++)
		a[i] = (int64_t)i;
	assert_int_equal(eligibility_posts_needed(a, 40, 10), 11);
	/* A wrote the top 15: A needs ten more after them. */
	for (i = 0; i < 40; i++)
		a[i] = i < 15 ? 5 : 7;
	assert_int_equal(eligibility_posts_needed(a, 40, 10), 25);
	/* A sole author has nothing new; the others need ten. */
	for (i = 0; i < 40; i++)
		a[i] = 5;
	assert_int_equal(eligibility_posts_needed(a, 40, 10), 10);
	/* Alternating A, B: each needs ten of the other's, twenty in all. */
	for (i = 0; i < 40; i++)
		a[i] = i % 2 ? 6 : 5;
	assert_int_equal(eligibility_posts_needed(a, 40, 10), 20);
	/* A's posts fill all but five: A can have only those five. */
	for (i = 0; i < 40; i++)
		a[i] = i < 35 ? 5 : 8;
	assert_int_equal(eligibility_posts_needed(a, 40, 10), 40);
}

static void
test_reason_names(void **state)
{
	(void)state;
	assert_string_equal(eligibility_reason_name(SKIP_NO_EMAIL), "no_email");
	assert_string_equal(eligibility_reason_name(SKIP_OPTED_OUT),
	    "opted_out");
	assert_string_equal(eligibility_reason_name(SKIP_INACTIVE), "inactive");
	assert_string_equal(eligibility_reason_name(SKIP_NOTHING_NEW),
	    "nothing_new");
	assert_string_equal(eligibility_reason_name(SKIP_ALREADY_SENT),
	    "already_sent");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eligible),
		cmocka_unit_test(test_no_email),
		cmocka_unit_test(test_preferences),
		cmocka_unit_test(test_muted),
		cmocka_unit_test(test_inactive_only_in_large_groups),
		cmocka_unit_test(test_nothing_new),
		cmocka_unit_test(test_posts_needed),
		cmocka_unit_test(test_reason_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
