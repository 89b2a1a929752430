/*
 * The eligibility rules of SPEC 5, kept free of I/O: digest.c reads the
 * user hashes, this file decides.
 */
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
	if (!eligibility_wants(m->digest, j->period)) {
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
	default:
		return "unknown";
	}
}
