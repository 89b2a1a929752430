/*
 * Who gets a digest (docs/design.md#recipients-and-the-email), as a pure
 * function of a member's user hash and the job, so that the rules can be
 * tested without Redis.
 *
 * The rules are checked in documented order and the first that fails is
 * the reason counted: no_email, opted_out (the preference, or a mute of
 * the group), inactive, nothing_new.  An address on the suppression list
 * is skipped after these (activity.c), once the batch's addresses are
 * known.
 */
#ifndef DIGESTD_ELIGIBILITY_H
#define DIGESTD_ELIGIBILITY_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/* What a job knows once it has read the group and its window's posts. */
struct elig_job {
	const char *period;		/* "daily" or "weekly" */
	int64_t window_end;		/* unix time */
	int64_t group_size;		/* ZCARD of the whole membership */
	int64_t large_group_threshold;
	int64_t inactive_after_s;
	size_t nposts;			/* posts of the window */
	int64_t sole_author;		/* author of every post, or -1 */
};

/*
 * A member's fields from HMGET user:{uid}, NULL where missing, and
 * whether the member muted the job's group (counted opted_out).
 */
struct elig_member {
	int64_t uid;
	const char *email;
	const char *digest;
	const char *last_seen;
	int muted;
};

/*
 * 1 when the member gets an email, else 0 with the first failing rule in
 * *why.
 */
int eligibility_check(const struct elig_job *, const struct elig_member *,
    enum skip_reason *why);

/* 1 when the digest preference pref (NULL: missing) takes period's digest. */
int eligibility_wants(const char *pref, const char *period);

/*
 * How many of a window's posts, ranked most engaging first, the job needs
 * (authors[i]: the author of the i-th, -1 when unknown): the shortest
 * prefix in which every member, author or not, finds max_posts posts not
 * their own, or all there are.  Only those are read in full and rendered.
 */
size_t eligibility_posts_needed(const int64_t *authors, size_t n,
    size_t max_posts);

/* The skip reason's label, as /metrics names it. */
const char *eligibility_reason_name(enum skip_reason);

#endif
