/*
 * Reading a job's share of the activity store (docs/design.md, "Reading
 * the activity store"): the group and its window's posts, the members a
 * page at a time in the walk's order, and their user hashes.  What a
 * failed read means, an outage or bad data, is decided here too.
 */
#ifndef DIGESTD_ACTIVITY_H
#define DIGESTD_ACTIVITY_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "checkpoint.h"
#include "config.h"
#include "cursor.h"
#include "eligibility.h"
#include "job.h"
#include "metrics.h"
#include "rconn.h"
#include "render.h"
#include "zpage.h"

/*
 * A job's reader.  The caller sets the members down to reasonlen (the
 * rest zeroed) and ends the walk with activity_clear.
 */
struct activity {
	redisContext *c;		/* the activity store */
	redisContext *q;		/* the queue Redis, for the mutes and the
					   suppression set; NULL: c */
	const struct config *cfg;
	const struct job *job;
	/*
	 * The job's checkpoint: members skipped are counted in its
	 * skipped, a failure that is an outage sets its outage, and the
	 * walk resumes after its cursor.
	 */
	struct checkpoint *cp;
	metric_cell *cells;		/* Redis errors and skips */
	struct rconn_cap *cap;		/* the caller's, kept with c */
	char *reason;			/* why the last read failed */
	size_t reasonlen;

	/* The walk of the members, and where it resumes from. */
	struct zpage zp;
	char walk_key[512];
	char seek_score[CURSOR_STR_MAX];
	char seek_member[CURSOR_STR_MAX];
};

/*
 * A job's group as read: the caller owns it and frees it with
 * activity_group_clear.
 */
struct activity_group {
	struct group_info info;		/* name and url point into the two below */
	char *name;
	char *url;
	struct post *posts;		/* the posts the job can list, ranked */
	size_t nposts;
	size_t nall;			/* the posts of the window */
	int64_t sole_author;		/* the author of every post, or -1 */
};

/* A member of the group as the walk reads it. */
struct member {
	int64_t uid;		/* -1: the member is not a user id */
	struct cursor pos;	/* where it stands in the walk (a user id's) */
	char *email;		/* owned: set when the member is eligible */
	char *name;		/* owned, may be NULL */
	char *locale;		/* owned, may be NULL: the user's language */
	int skipped;		/* nobody to write to (counted): not a user
				   id, a broken record, or not eligible */
	int state;		/* the caller's; 0 when read */
};

/*
 * Read the group, its size and the window's posts (the newest 1000), and
 * the text of those the job can list.  0, or -1 with ar->reason.
 */
int activity_group(struct activity *ar, struct activity_group *);

/* Free what a group holds; activity_group_clear(NULL) does nothing. */
void activity_group_clear(struct activity_group *);

/*
 * Start (or restart) the walk of the job's members after the
 * checkpoint's cursor.  0, or -1 with ar->reason.
 */
int activity_walk_start(struct activity *ar);

/*
 * The next page of members, at most digest.batch_size: *mp (always
 * allocated; free it with activity_members_free) and *np, those in the
 * job's range (maybe none).  Members that are not user ids come skipped.
 * *last is set when the range is exhausted.  1 when a page was read, 0
 * when the walk was at its end already (no members), -1 with ar->reason.
 */
int activity_members(struct activity *ar, struct member **mp, size_t *np,
    int *last);

/*
 * Read the user hashes of the members not skipped, in one pipelined
 * round with the group's mutes (digest:muted:{gid} on ar->q), and decide
 * who is eligible (ej); then skip those whose address is suppressed
 * (digest:suppressed), one SMISMEMBER for the batch.  An eligible member
 * gets its address and name, the others are skipped.  No reply may be
 * pending on ar->q.  0, or -1 with ar->reason.
 */
int activity_users(struct activity *ar, const struct elig_job *ej,
    struct member *, size_t n);

/* Free n members and their array. */
void activity_members_free(struct member *, size_t n);

/*
 * Count a failed Redis call on c and say why in ar->reason: the job's
 * outage is set when the connection is lost or the server says it cannot
 * serve now; any other error reply is about the data.  r may be NULL.
 * For the queue Redis as for the activity store.
 */
void activity_error(struct activity *ar, redisContext *c, const char *what,
    const redisReply *r);

/* End the walk. */
void activity_clear(struct activity *ar);

#endif
