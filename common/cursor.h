/*
 * A position in a job's walk of its group's members: the members are
 * visited in the order of the members sorted set (score, then member
 * bytewise, as Redis orders them), and a cursor names the last member
 * done by its score and its user id.  Scores are normally the user ids,
 * but a score may be fractional, shared by several members or negative:
 * the pair still names one place in the order, so a walk resumed from a
 * cursor visits every member exactly once.
 */
#ifndef DIGESTD_CURSOR_H
#define DIGESTD_CURSOR_H

#include <stddef.h>
#include <stdint.h>

/* Room for a score written exactly ("%.17g") or a user id. */
#define CURSOR_STR_MAX 32

struct cursor {
	int set;		/* 0: before the first member */
	double score;
	int64_t uid;		/* the member, a user id (>= 0) */
};

/*
 * Order of two cursors as the walk meets them: <0, 0, >0.  An unset
 * cursor comes before every set one.
 */
int cursor_cmp(const struct cursor *, const struct cursor *);

/* The score, exactly, for a Redis range bound or a hash field. */
void cursor_score_str(double score, char *buf, size_t len);

/*
 * Parse a member as a user id: decimal digits only, no sign, no leading
 * zero, at most INT64_MAX, the way user ids are written.  0 or -1.
 */
int cursor_parse_uid(const char *s, size_t len, int64_t *uid);

#endif
