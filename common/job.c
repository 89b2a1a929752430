/*
 * Digest jobs on the wire: decoding a Redis stream entry's fields or an AMQP
 * JSON body into struct job, checking it, and encoding it back
 * (docs/design.md#jobs).
 *
 * Everything here is input from a queue that anyone with access to Redis or
 * RabbitMQ can write to, so decoding is strict: every required field must
 * be there, numbers are plain decimal, last_shard is 0 or 1, and the job
 * id may only hold characters that are safe in a Redis key, a log line, a
 * Message-ID and a process title.
 * A decoded job has passed job_validate.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "job.h"

const char *const job_field_names[JOB_NFIELDS] = {
	"job_id", "group_id", "period", "window_start", "window_end",
	"member_min", "member_max", "enqueued_at", "last_shard"
};

enum {
	F_JOB_ID, F_GROUP_ID, F_PERIOD, F_WINDOW_START, F_WINDOW_END,
	F_MEMBER_MIN, F_MEMBER_MAX, F_ENQUEUED_AT, F_LAST_SHARD
};

static int64_t *
job_int_field(struct job *j, int f)
{
	switch (f) {
	case F_GROUP_ID:
		return &j->group_id;
	case F_WINDOW_START:
		return &j->window_start;
	case F_WINDOW_END:
		return &j->window_end;
	case F_MEMBER_MIN:
		return &j->member_min;
	case F_MEMBER_MAX:
		return &j->member_max;
	}
	return NULL;
}

/* A whole decimal number, with an optional '-': no blanks, '+' or base. */
static int
job_parse_int(const char *s, int64_t *out)
{
	const char *p = s;
	char *end;
	long long v;

	if (*p == '-')
		p++;
	if (!isdigit((unsigned char)*p))
		return -1;
	for (; *p != '\0'; p++)
		if (!isdigit((unsigned char)*p))
			return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* A decimal number with an optional fraction and exponent; finite. */
static int
job_parse_double(const char *s, double *out)
{
	const char *p = s;
	char *end;
	double v;

	if (*p == '-')
		p++;
	if (!isdigit((unsigned char)*p))
		return -1;	/* no blanks, '+', ".5", "inf" or "nan" */
	for (; *p != '\0'; p++)
		if (!isdigit((unsigned char)*p) && strchr(".eE+-", *p) == NULL)
			return -1;	/* nor hex */
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* Set field f of j from the text v; 0 or -1 with err. */
static int
job_set_text(struct job *j, int f, const char *v, char *err, size_t errlen)
{
	int64_t *ip;
	size_t n;

	switch (f) {
	case F_JOB_ID:
		if ((n = strlen(v)) >= sizeof(j->job_id)) {
			snprintf(err, errlen, "job_id: longer than %zu "
			    "characters", sizeof(j->job_id) - 1);
			return -1;
		}
		memcpy(j->job_id, v, n + 1);
		return 0;
	case F_PERIOD:
		if ((n = strlen(v)) >= sizeof(j->period)) {
			snprintf(err, errlen, "period: not daily or weekly");
			return -1;
		}
		memcpy(j->period, v, n + 1);
		return 0;
	case F_ENQUEUED_AT:
		if (job_parse_double(v, &j->enqueued_at) == -1) {
			snprintf(err, errlen, "enqueued_at: not a number");
			return -1;
		}
		return 0;
	case F_LAST_SHARD:
		if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
			snprintf(err, errlen, "last_shard: not 0 or 1");
			return -1;
		}
		j->last_shard = v[0] == '1';
		return 0;
	}
	ip = job_int_field(j, f);
	if (job_parse_int(v, ip) == -1) {
		snprintf(err, errlen, "%s: not a whole number",
		    job_field_names[f]);
		return -1;
	}
	return 0;
}

static int
job_field_index(const char *name)
{
	int i;

	for (i = 0; i < JOB_NFIELDS; i++)
		if (strcmp(job_field_names[i], name) == 0)
			return i;
	return -1;
}

int
job_decode_fields(struct job *j, const char *const *names,
    const char *const *values, size_t n, char *err, size_t errlen)
{
	unsigned seen = 0;
	size_t i;
	int f;

	memset(j, 0, sizeof(*j));
	for (i = 0; i < n; i++) {
		if (names[i] == NULL || (f = job_field_index(names[i])) == -1)
			continue;
		if (seen & (1U << f)) {
			snprintf(err, errlen, "%s: given twice",
			    job_field_names[f]);
			return -1;
		}
		seen |= 1U << f;
		if (values[i] == NULL) {
			snprintf(err, errlen, "%s: no value",
			    job_field_names[f]);
			return -1;
		}
		if (job_set_text(j, f, values[i], err, errlen) == -1)
			return -1;
	}
	for (f = 0; f < JOB_NREQUIRED; f++)
		if (!(seen & (1U << f))) {
			snprintf(err, errlen, "%s: missing",
			    job_field_names[f]);
			return -1;
		}
	return job_validate(j, err, errlen);
}

/*
 * An integer field of a JSON body: a JSON integer, a real with no fraction
 * (some encoders write every number as a double), or a numeric string.
 */
static int
job_json_int(json_t *v, int64_t *out)
{
	double d;

	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_real(v)) {
		d = json_real_value(v);
		/* 2^53: where a double stops holding every integer. */
		if (d != floor(d) || fabs(d) > 9007199254740992.0)
			return -1;
		*out = (int64_t)d;
		return 0;
	}
	if (json_is_string(v) &&
	    strlen(json_string_value(v)) == json_string_length(v))
		return job_parse_int(json_string_value(v), out);
	return -1;
}

int
job_decode_json(struct job *j, const char *buf, size_t len, char *err,
    size_t errlen)
{
	json_error_t jerr;
	json_t *root, *v;
	int64_t i;
	double d;
	int f, rc = -1;

	memset(j, 0, sizeof(*j));
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(err, errlen, "not JSON: %s at line %d column %d",
		    jerr.text, jerr.line, jerr.column);
		return -1;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "not a JSON object");
		goto out;
	}
	for (f = 0; f < JOB_NFIELDS; f++) {
		if ((v = json_object_get(root, job_field_names[f])) == NULL ||
		    json_is_null(v)) {
			if (f >= JOB_NREQUIRED)
				continue;
			snprintf(err, errlen, "%s: missing",
			    job_field_names[f]);
			goto out;
		}
		switch (f) {
		case F_JOB_ID:
		case F_PERIOD:
			/* jansson refuses \u0000 in strings unless asked. */
			if (!json_is_string(v)) {
				snprintf(err, errlen, "%s: not a string",
				    job_field_names[f]);
				goto out;
			}
			if (job_set_text(j, f, json_string_value(v), err,
			    errlen) == -1)
				goto out;
			break;
		case F_ENQUEUED_AT:
			if (json_is_integer(v))
				j->enqueued_at =
				    (double)json_integer_value(v);
			else if (json_is_real(v))
				j->enqueued_at = json_real_value(v);
			else if (json_is_string(v) &&
			    job_parse_double(json_string_value(v), &d) == 0)
				j->enqueued_at = d;
			else {
				snprintf(err, errlen, "enqueued_at: not a "
				    "number");
				goto out;
			}
			break;
		case F_LAST_SHARD:
			if (json_is_boolean(v))
				j->last_shard = json_is_true(v);
			else if (job_json_int(v, &i) == 0 && (i == 0 || i == 1))
				j->last_shard = (int)i;
			else {
				snprintf(err, errlen, "last_shard: not 0 or 1");
				goto out;
			}
			break;
		default:
			if (job_json_int(v, job_int_field(j, f)) == -1) {
				snprintf(err, errlen, "%s: not a whole number",
				    job_field_names[f]);
				goto out;
			}
		}
	}
	rc = job_validate(j, err, errlen);
out:
	json_decref(root);
	return rc;
}

int
job_validate(const struct job *j, char *err, size_t errlen)
{
	size_t i, n;

	n = strnlen(j->job_id, sizeof(j->job_id));
	if (n == 0 || n >= sizeof(j->job_id)) {
		snprintf(err, errlen, "job_id: empty or too long");
		return -1;
	}
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)j->job_id[i]) &&
		    strchr("._-", j->job_id[i]) == NULL) {
			snprintf(err, errlen, "job_id: may hold only A-Z, a-z, "
			    "0-9, '.', '_' and '-'");
			return -1;
		}
	if (strcmp(j->period, "daily") != 0 &&
	    strcmp(j->period, "weekly") != 0) {
		snprintf(err, errlen, "period: not daily or weekly");
		return -1;
	}
	if (j->group_id < 0) {
		snprintf(err, errlen, "group_id: negative");
		return -1;
	}
	if (j->window_start < 0 || j->window_end < 0) {
		snprintf(err, errlen, "window: negative time");
		return -1;
	}
	/* window_start is below window_end, checked next. */
	if (j->window_end >= (int64_t)JOB_TIME_MAX) {
		snprintf(err, errlen, "window: window_end %" PRId64 " is past "
		    "the year 2255", j->window_end);
		return -1;
	}
	if (j->window_start >= j->window_end) {
		snprintf(err, errlen, "window: window_start %" PRId64
		    " is not before window_end %" PRId64, j->window_start,
		    j->window_end);
		return -1;
	}
	if (j->member_min > j->member_max) {
		snprintf(err, errlen, "members: member_min %" PRId64
		    " is above member_max %" PRId64, j->member_min,
		    j->member_max);
		return -1;
	}
	if (j->last_shard != 0 && j->last_shard != 1) {
		snprintf(err, errlen, "last_shard: not 0 or 1");
		return -1;
	}
	if (!isfinite(j->enqueued_at) || j->enqueued_at < 0 ||
	    j->enqueued_at >= JOB_TIME_MAX) {
		snprintf(err, errlen, "enqueued_at: not a unix time");
		return -1;
	}
	return 0;
}

int
job_encode_fields(const struct job *j, char *buf,
    const char *values[JOB_NFIELDS])
{
	size_t off = 0;
	int f, n, nf = j->last_shard ? JOB_NFIELDS : JOB_NREQUIRED;

	for (f = 0; f < nf; f++) {
		size_t room = JOB_ENCODE_MAX - off;

		values[f] = buf + off;
		switch (f) {
		case F_JOB_ID:
			n = snprintf(buf + off, room, "%s", j->job_id);
			break;
		case F_PERIOD:
			n = snprintf(buf + off, room, "%s", j->period);
			break;
		case F_ENQUEUED_AT:
			/* Microseconds: what time.time() and Redis give. */
			n = snprintf(buf + off, room, "%.6f", j->enqueued_at);
			break;
		case F_LAST_SHARD:
			n = snprintf(buf + off, room, "1");
			break;
		default:
			n = snprintf(buf + off, room, "%" PRId64,
			    *job_int_field((struct job *)j, f));
		}
		/*
		 * A valid job needs at most 96 + 8 + 5 * 21 + 19 + 2 bytes
		 * with the NULs; a bad one is cut short rather than
		 * overflowing.
		 */
		if (n < 0 || (size_t)n >= room)
			n = room > 0 ? (int)room - 1 : 0;
		off += (size_t)n + 1;
		if (off >= JOB_ENCODE_MAX)
			off = JOB_ENCODE_MAX - 1;
	}
	for (; f < JOB_NFIELDS; f++)
		values[f] = NULL;
	return nf;
}

char *
job_encode_json(const struct job *j)
{
	json_t *o;
	char *s;

	o = json_pack("{s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:f}",
	    "job_id", j->job_id,
	    "group_id", (json_int_t)j->group_id,
	    "period", j->period,
	    "window_start", (json_int_t)j->window_start,
	    "window_end", (json_int_t)j->window_end,
	    "member_min", (json_int_t)j->member_min,
	    "member_max", (json_int_t)j->member_max,
	    "enqueued_at", j->enqueued_at);
	if (o == NULL)
		return NULL;
	if (j->last_shard &&
	    json_object_set_new(o, "last_shard", json_integer(1)) == -1) {
		json_decref(o);
		return NULL;
	}
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

void
job_make_id(struct job *j, int shard)
{
	snprintf(j->job_id, sizeof(j->job_id), "%s.%" PRId64 ".%" PRId64 ".%d",
	    j->period, j->window_end, j->group_id, shard);
}
