/*
 * The eligibility rules of docs/design.md#recipients-and-the-email, kept free
 * of I/O: activity.c reads the user hashes, this file decides.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eligibility.h"
#include "util.h"

int
eligibility_wants(const char *pref, const char *period)
{
	/* A missing or empty preference is the default, daily. */
	if (pref == NULL || *pref == '\0')
		pref = "daily";
	if (strcasecmp(pref, "off") == 0)
		return 0;
	/*
	 * Anything but daily or weekly is a value the host application did
	 * not mean for us: sending nothing is the safe reading.
	 */
	if (strcasecmp(pref, "daily") != 0 && strcasecmp(pref, "weekly") != 0)
		return 0;
	return strcasecmp(pref, period) == 0;
}

int
eligibility_check(const struct elig_job *j, const struct elig_member *m,
    enum skip_reason *why)
{
	double seen;

	if (m->email == NULL || *m->email == '\0') {
		*why = SKIP_NO_EMAIL;
		return 0;
	}
	if (!eligibility_wants(m->digest, j->period) || m->muted) {
		*why = SKIP_OPTED_OUT;
		return 0;
	}
	if (j->group_size >= j->large_group_threshold) {
		/* Missing or unreadable last_seen counts as inactive. */
		if (parse_double(m->last_seen, &seen) == -1 ||
		    seen < (double)(j->window_end - j->inactive_after_s)) {
			*why = SKIP_INACTIVE;
			return 0;
		}
	}
	if (j->nposts == 0 || (j->sole_author >= 0 &&
	    j->sole_author == m->uid)) {
		*why = SKIP_NOTHING_NEW;
		return 0;
	}
	return 1;
}

size_t
eligibility_posts_needed(const int64_t *authors, size_t n, size_t maxp)
{
	int64_t *who;
	size_t *idx, *total, *have, i, k, a, na = 0, need;
	int ok;

	if (n <= maxp)
		return n;
	who = wcalloc(n, sizeof(*who));
	idx = wcalloc(n, sizeof(*idx));
	total = wcalloc(n, sizeof(*total));
	have = wcalloc(n, sizeof(*have));
	/* The distinct authors, by a linear scan: n is at most 1,000. */
	for (i = 0; i < n; i++) {
		idx[i] = SIZE_MAX;
		if (authors[i] < 0)
			continue;
		for (a = 0; a < na && who[a] != authors[i]; a++)
			;
		if (a == na)
			who[na++] = authors[i];
		idx[i] = a;
		total[a]++;
	}
	/*
	 * A member who wrote nothing needs the first max_posts; an author
	 * needs max_posts (or all there are) not their own.
	 */
	for (k = 0; k < n; k++) {
		if (idx[k] != SIZE_MAX)
			have[idx[k]]++;
		if (k + 1 < maxp)
			continue;
		ok = 1;
		for (a = 0; a < na && ok; a++) {
			need = n - total[a] < maxp ? n - total[a] : maxp;
			if (k + 1 - have[a] < need)
				ok = 0;
		}
		if (ok)
			break;
	}
	free(who);
	free(idx);
	free(total);
	free(have);
	return k < n ? k + 1 : n;
}

const char *
eligibility_reason_name(enum skip_reason r)
{
	switch (r) {
	case SKIP_INACTIVE:
		return "inactive";
	case SKIP_OPTED_OUT:
		return "opted_out";
	case SKIP_NO_EMAIL:
		return "no_email";
	case SKIP_NOTHING_NEW:
		return "nothing_new";
	case SKIP_ALREADY_SENT:
		return "already_sent";
	case SKIP_SUPPRESSED:
		return "suppressed";
	case SKIP_BAD_DATA:
		return "bad_data";
	default:
		return "unknown";
	}
}
