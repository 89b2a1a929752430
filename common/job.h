/*
 * A digest job: one group, one period, one range of members (SPEC 4).
 * Decoded from a Redis stream entry's fields or an AMQP JSON body; a job
 * that does not decode goes to the dead letters with the message in err.
 */
#ifndef DIGESTD_JOB_H
#define DIGESTD_JOB_H

#include <stddef.h>
#include <stdint.h>

#define JOB_ID_MAX 96
#define JOB_NFIELDS 8

struct job {
	char job_id[JOB_ID_MAX];	/* daily.1764374400.42.0 */
	char period[8];			/* daily | weekly */
	int64_t group_id;
	int64_t window_start;		/* posts with start < t <= end */
	int64_t window_end;
	int64_t member_min;		/* inclusive user id range */
	int64_t member_max;
	int last_shard;			/* no upper bound: takes later joiners */
	double enqueued_at;
};

/* The field names, in SPEC order: job_id, group_id, period, ... */
extern const char *const job_field_names[JOB_NFIELDS];

/*
 * Decode from n name/value pairs (a stream entry).  Unknown fields are
 * ignored; a missing or non-numeric field is an error.  0 or -1 with err.
 */
int job_decode_fields(struct job *, const char *const *names,
    const char *const *values, size_t n, char *err, size_t errlen);
/* Decode a JSON object body.  0 or -1 with err. */
int job_decode_json(struct job *, const char *buf, size_t len, char *err,
    size_t errlen);
/* Check ranges and the period; 0 or -1 with err. */
int job_validate(const struct job *, char *err, size_t errlen);
/*
 * Encode the 8 fields as strings for XADD: values[i] points into buf, which
 * must hold JOB_ENCODE_MAX bytes.
 */
#define JOB_ENCODE_MAX 512
void job_encode_fields(const struct job *, char *buf,
    const char *values[JOB_NFIELDS]);
/* JSON body for AMQP; malloc'd, NUL-terminated; NULL on OOM. */
char *job_encode_json(const struct job *);
/* Build the id "period.window_end.group.shard" into j->job_id. */
void job_make_id(struct job *, int shard);

#endif
