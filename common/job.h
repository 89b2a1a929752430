/*
 * A digest job: one group, one period, one range of members
 * (docs/design.md#jobs). Decoded from a Redis stream entry's fields or an AMQP
 * JSON body; a job that does not decode goes to the dead letters with the
 * message in err.
 */
#ifndef DIGESTD_JOB_H
#define DIGESTD_JOB_H

#include <stddef.h>
#include <stdint.h>

#define JOB_ID_MAX 96
/*
 * Window times and enqueued_at are unix times below this (in 2255): one
 * in nanoseconds still fits in 63 bits, so a job's times can be turned
 * into delays and ages without overflow.
 */
#define JOB_TIME_MAX 9e9
#define JOB_NREQUIRED 8		/* the fields every job carries */
#define JOB_NFIELDS 9		/* ... and the optional last_shard */

struct job {
	char job_id[JOB_ID_MAX];	/* daily.1764374400.42.0 */
	char period[8];			/* daily | weekly */
	int64_t group_id;
	int64_t window_start;		/* posts with start < t <= end */
	int64_t window_end;
	/*
	 * The members whose score s has floor(s) in [member_min, member_max]:
	 * member_min <= s < member_max + 1.  INT64_MIN stands for -inf and
	 * INT64_MAX for +inf.
	 */
	int64_t member_min;
	int64_t member_max;
	int last_shard;			/* no upper bound: takes later joiners */
	double enqueued_at;
	/*
	 * 1 on a group's last shard: its members go on past member_max to
	 * +inf, so that members who joined after scheduling are served too.
	 */
};

/*
 * The field names: the JOB_NREQUIRED required ones in their documented
 * order (job_id, group_id, period, ...), then last_shard.
 */
extern const char *const job_field_names[JOB_NFIELDS];

/*
 * Decode from n name/value pairs (a stream entry).  Unknown fields are
 * ignored; a missing required field, a non-numeric one or a last_shard
 * other than "0" or "1" is an error.  0 or -1 with err.
 */
int job_decode_fields(struct job *, const char *const *names,
    const char *const *values, size_t n, char *err, size_t errlen);
/* Decode a JSON object body.  0 or -1 with err. */
int job_decode_json(struct job *, const char *buf, size_t len, char *err,
    size_t errlen);
/*
 * Check ranges and the period: window times and enqueued_at from 0 to
 * below JOB_TIME_MAX, window_start before window_end, member_min not
 * above member_max.  0 or -1 with err.
 */
int job_validate(const struct job *, char *err, size_t errlen);
/*
 * Encode the fields as strings for XADD: the values of job_field_names[0]
 * to [n - 1], where n, returned, is JOB_NREQUIRED, or JOB_NFIELDS with
 * last_shard (written only when set).  values[i] points into buf, which
 * must hold JOB_ENCODE_MAX bytes.
 */
#define JOB_ENCODE_MAX 512
int job_encode_fields(const struct job *, char *buf,
    const char *values[JOB_NFIELDS]) __attribute__((warn_unused_result));
/*
 * JSON body for AMQP (last_shard only when set, as the number 1);
 * malloc'd, NUL-terminated; NULL on OOM.
 */
char *job_encode_json(const struct job *);
/* Build the id "period.window_end.group.shard" into j->job_id. */
void job_make_id(struct job *, int shard);

#endif
