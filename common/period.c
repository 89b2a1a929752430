/*
 * Period boundaries and windows.  Unix time 0 was a Thursday, so the first
 * Monday 00:00 UTC is 4 days in; a weekly boundary is that Monday plus
 * day_start plus a whole number of weeks.
 */
#include <string.h>

#include "period.h"

#define PERIOD_FIRST_MONDAY (4 * (int64_t)PERIOD_DAY_S)

int
period_parse(const char *name)
{
	if (name == NULL)
		return -1;
	if (strcmp(name, "daily") == 0)
		return PERIOD_DAILY;
	if (strcmp(name, "weekly") == 0)
		return PERIOD_WEEKLY;
	return -1;
}

const char *
period_name(int period)
{
	return period == PERIOD_WEEKLY ? "weekly" : "daily";
}

int64_t
period_length(int period)
{
	return period == PERIOD_WEEKLY ? PERIOD_WEEK_S : PERIOD_DAY_S;
}

/* Floor division, right for negative numerators too. */
static int64_t
period_floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

int
period_window(int period, int day_start_s, int64_t now, int64_t *start,
    int64_t *end)
{
	int64_t len, origin;

	if (period != PERIOD_DAILY && period != PERIOD_WEEKLY)
		return -1;
	if (day_start_s < 0 || day_start_s >= PERIOD_DAY_S)
		return -1;
	len = period_length(period);
	origin = (period == PERIOD_WEEKLY ? PERIOD_FIRST_MONDAY : 0) +
	    day_start_s;
	/* A run exactly on a boundary sees the period that just ended. */
	*end = origin + period_floor_div(now - origin, len) * len;
	*start = *end - len;
	return 0;
}
