/*
 * Digest periods and their windows (docs/design.md#jobs): a daily period ends
 * every day at schedule.day_start (UTC), a weekly one on Mondays at that
 * time.  The window of a run is the last complete period before its clock, so
 * every run inside one period computes the same window and the same job ids.
 *
 * Pure functions: no clock, no I/O.
 */
#ifndef DIGESTD_PERIOD_H
#define DIGESTD_PERIOD_H

#include <stdint.h>

enum period { PERIOD_DAILY, PERIOD_WEEKLY };

#define PERIOD_DAY_S 86400
#define PERIOD_WEEK_S (7 * 86400)

/* "daily" -> PERIOD_DAILY, "weekly" -> PERIOD_WEEKLY; -1 otherwise. */
int period_parse(const char *name);
/* The period's name, "daily" or "weekly". */
const char *period_name(int period);
/* The length of a period in seconds. */
int64_t period_length(int period);

/*
 * The window of the last complete period at or before now: *end is the
 * latest period boundary <= now, *start one period earlier.  day_start_s
 * is seconds after 00:00 UTC, in [0, 86400).  0, or -1 on a bad argument.
 */
int period_window(int period, int day_start_s, int64_t now, int64_t *start,
    int64_t *end);

#endif
