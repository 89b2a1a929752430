/*
 * Unit tests for jobs on the wire: stream fields and JSON bodies decoded,
 * every missing or malformed field refused, the optional last_shard,
 * validation, and encode/decode round trips.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "job.h"

static char err[256];

/* A good job's fields, in their order, as a producer would write them. */
static const char *good_values[JOB_NREQUIRED] = {
	"daily.1764374400.42.0", "42", "daily", "1764288000", "1764374400",
	"1", "50000", "1764374401.250000"
};

/*
 * A good job's stream fields with name's value replaced by value, or, for
 * last_shard, added; decoded into j.
 */
static int
decode_job_with(struct job *j, const char *name, const char *value, char *e,
    size_t elen)
{
	const char *names[JOB_NFIELDS], *values[JOB_NFIELDS];
	int i;

	for (i = 0; i < JOB_NREQUIRED; i++) {
		names[i] = job_field_names[i];
		values[i] = strcmp(names[i], name) == 0 ? value :
		    good_values[i];
	}
	if (strcmp(name, "last_shard") == 0) {
		names[i] = name;
		values[i++] = value;
	}
	return job_decode_fields(j, names, values, (size_t)i, e, elen);
}

static int
decode_with(const char *name, const char *value, char *e, size_t elen)
{
	struct job j;

	return decode_job_with(&j, name, value, e, elen);
}

static void
assert_good_job(const struct job *j)
{
	assert_string_equal(j->job_id, "daily.1764374400.42.0");
	assert_string_equal(j->period, "daily");
	assert_int_equal(j->group_id, 42);
	assert_int_equal(j->window_start, 1764288000);
	assert_int_equal(j->window_end, 1764374400);
	assert_int_equal(j->member_min, 1);
	assert_int_equal(j->member_max, 50000);
	assert_true(j->enqueued_at == 1764374401.25);
}

static void
test_field_names(void **state)
{
	static const char *want[JOB_NFIELDS] = {
		"job_id", "group_id", "period", "window_start", "window_end",
		"member_min", "member_max", "enqueued_at", "last_shard"
	};
	int i;

	(void)state;
	for (i = 0; i < JOB_NFIELDS; i++)
		assert_string_equal(job_field_names[i], want[i]);
}

static void
test_decode_fields(void **state)
{
	/* Another order, an unknown field, as a stream entry may hold. */
	const char *names[] = {
		"enqueued_at", "member_max", "extra", "member_min",
		"window_end", "window_start", "period", "group_id", "job_id"
	};
	const char *values[] = {
		"1764374401.25", "50000", "whatever", "1", "1764374400",
		"1764288000", "daily", "42", "daily.1764374400.42.0"
	};
	struct job j;

	(void)state;
	assert_int_equal(job_decode_fields(&j, names, values, 9, err,
	    sizeof(err)), 0);
	assert_good_job(&j);
	assert_int_equal(job_decode_fields(&j, job_field_names, good_values,
	    JOB_NREQUIRED, err, sizeof(err)), 0);
	assert_good_job(&j);
	assert_int_equal(j.last_shard, 0);

	/* An integral enqueued_at, and one in exponent form. */
	assert_int_equal(decode_with("enqueued_at", "1764374401", err,
	    sizeof(err)), 0);
	assert_int_equal(decode_with("enqueued_at", "1.7643744e9", err,
	    sizeof(err)), 0);
	/* A weekly job, a one-member shard, group 0. */
	assert_int_equal(decode_with("period", "weekly", err, sizeof(err)), 0);
	assert_int_equal(decode_with("member_max", "1", err, sizeof(err)), 0);
	assert_int_equal(decode_with("group_id", "0", err, sizeof(err)), 0);
}

static void
test_fields_missing(void **state)
{
	const char *names[JOB_NFIELDS + 1], *values[JOB_NFIELDS + 1];
	char want[64];
	struct job j;
	int skip, i, n;

	(void)state;
	for (skip = 0; skip < JOB_NREQUIRED; skip++) {
		for (i = 0, n = 0; i < JOB_NREQUIRED; i++)
			if (i != skip) {
				names[n] = job_field_names[i];
				values[n++] = good_values[i];
			}
		assert_int_equal(job_decode_fields(&j, names, values,
		    (size_t)n, err, sizeof(err)), -1);
		snprintf(want, sizeof(want), "%s: missing",
		    job_field_names[skip]);
		assert_string_equal(err, want);
	}
	assert_int_equal(job_decode_fields(&j, names, values, 0, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "job_id: missing");

	/* A field given twice is not quietly taken from either. */
	names[0] = "group_id";
	values[0] = "7";
	for (i = 1; i < JOB_NREQUIRED; i++) {
		names[i] = job_field_names[i];
		values[i] = good_values[i];
	}
	assert_int_equal(job_decode_fields(&j, names, values, JOB_NREQUIRED,
	    err, sizeof(err)), -1);
	assert_string_equal(err, "group_id: given twice");
	names[0] = "job_id";
	values[0] = good_values[0];
	names[JOB_NREQUIRED] = names[JOB_NREQUIRED + 1] = "last_shard";
	values[JOB_NREQUIRED] = values[JOB_NREQUIRED + 1] = "1";
	assert_int_equal(job_decode_fields(&j, names, values, JOB_NREQUIRED + 2,
	    err, sizeof(err)), -1);
	assert_string_equal(err, "last_shard: given twice");

	/* A NULL value (a nil from Redis) is refused, a NULL name ignored. */
	for (i = 0; i < JOB_NREQUIRED; i++) {
		names[i] = job_field_names[i];
		values[i] = good_values[i];
	}
	values[3] = NULL;
	assert_int_equal(job_decode_fields(&j, names, values, JOB_NREQUIRED,
	    err, sizeof(err)), -1);
	assert_string_equal(err, "window_start: no value");
	values[3] = good_values[3];
	names[3] = NULL;
	assert_int_equal(job_decode_fields(&j, names, values, JOB_NREQUIRED,
	    err, sizeof(err)), -1);
	assert_string_equal(err, "window_start: missing");
	assert_int_equal(decode_with("last_shard", NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "last_shard: no value");
}

static void
test_fields_not_numeric(void **state)
{
	static const char *bad_int[] = {
		"", "x", "12x", " 12", "12 ", "+12", "0x10", "1.5", "1e3",
		"99999999999999999999", "-", "--1"
	};
	static const char *bad_double[] = {
		"", "x", "inf", "nan", "-inf", "1e999", " 1", "0x1p3", "1.5s",
		".5", "+1"
	};
	char want[64];
	size_t i;
	int f;

	(void)state;
	for (f = 0; f < JOB_NREQUIRED; f++) {
		const char *name = job_field_names[f];

		if (strcmp(name, "job_id") == 0 || strcmp(name, "period") == 0)
			continue;
		if (strcmp(name, "enqueued_at") == 0) {
			for (i = 0; i < sizeof(bad_double) /
			    sizeof(bad_double[0]); i++) {
				if (decode_with(name, bad_double[i], err,
				    sizeof(err)) != -1)
					fail_msg("enqueued_at \"%s\" taken",
					    bad_double[i]);
				assert_string_equal(err,
				    "enqueued_at: not a number");
			}
			continue;
		}
		snprintf(want, sizeof(want), "%s: not a whole number", name);
		for (i = 0; i < sizeof(bad_int) / sizeof(bad_int[0]); i++) {
			if (decode_with(name, bad_int[i], err,
			    sizeof(err)) != -1)
				fail_msg("%s \"%s\" taken", name, bad_int[i]);
			assert_string_equal(err, want);
		}
	}
}

static void
test_validate(void **state)
{
	char longid[JOB_ID_MAX + 8];

	(void)state;
	assert_int_equal(decode_with("period", "monthly", err, sizeof(err)),
	    -1);
	assert_string_equal(err, "period: not daily or weekly");
	assert_int_equal(decode_with("period", "daily-and-more", err,
	    sizeof(err)), -1);
	assert_string_equal(err, "period: not daily or weekly");
	assert_int_equal(decode_with("period", "", err, sizeof(err)), -1);
	assert_int_equal(decode_with("period", "Daily", err, sizeof(err)), -1);

	assert_int_equal(decode_with("window_start", "1764374400", err,
	    sizeof(err)), -1);
	assert_string_equal(err, "window: window_start 1764374400 is not "
	    "before window_end 1764374400");
	assert_int_equal(decode_with("window_start", "-1", err, sizeof(err)),
	    -1);
	assert_string_equal(err, "window: negative time");
	assert_int_equal(decode_with("member_min", "50001", err, sizeof(err)),
	    -1);
	assert_string_equal(err, "members: member_min 50001 is above "
	    "member_max 50000");
	/* Scores may be negative; the extremes stand for -inf and +inf. */
	assert_int_equal(decode_with("member_min", "-5", err, sizeof(err)), 0);
	assert_int_equal(decode_with("member_min", "-9223372036854775808", err,
	    sizeof(err)), 0);
	assert_int_equal(decode_with("member_max", "9223372036854775807", err,
	    sizeof(err)), 0);
	assert_int_equal(decode_with("member_max", "-1", err, sizeof(err)), -1);
	assert_string_equal(err, "members: member_min 1 is above "
	    "member_max -1");
	assert_int_equal(decode_with("group_id", "-1", err, sizeof(err)), -1);
	assert_string_equal(err, "group_id: negative");
	assert_int_equal(decode_with("enqueued_at", "-1.5", err, sizeof(err)),
	    -1);
	assert_string_equal(err, "enqueued_at: not a unix time");
	assert_int_equal(decode_with("enqueued_at", "1e300", err, sizeof(err)),
	    -1);
	assert_string_equal(err, "enqueued_at: not a unix time");

	assert_int_equal(decode_with("job_id", "", err, sizeof(err)), -1);
	assert_string_equal(err, "job_id: empty or too long");
	assert_int_equal(decode_with("job_id", "a b", err, sizeof(err)), -1);
	assert_string_equal(err, "job_id: may hold only A-Z, a-z, 0-9, '.', "
	    "'_' and '-'");
	assert_int_equal(decode_with("job_id", "x\r\nBcc: y", err,
	    sizeof(err)), -1);
	assert_int_equal(decode_with("job_id", "../../etc", err,
	    sizeof(err)), -1);
	assert_int_equal(decode_with("job_id", "a*", err, sizeof(err)), -1);
	assert_int_equal(decode_with("job_id", "Weekly_1-2.x", err,
	    sizeof(err)), 0);

	memset(longid, 'a', JOB_ID_MAX - 1);
	longid[JOB_ID_MAX - 1] = '\0';
	assert_int_equal(decode_with("job_id", longid, err, sizeof(err)), 0);
	longid[JOB_ID_MAX - 1] = 'a';
	longid[JOB_ID_MAX] = '\0';
	assert_int_equal(decode_with("job_id", longid, err, sizeof(err)), -1);
	assert_string_equal(err, "job_id: longer than 95 characters");
}

static void
test_decode_json(void **state)
{
	static const char numbers[] =
	    "{\"job_id\":\"daily.1764374400.42.0\",\"group_id\":42,"
	    "\"period\":\"daily\",\"window_start\":1764288000,"
	    "\"window_end\":1764374400,\"member_min\":1,\"member_max\":50000,"
	    "\"enqueued_at\":1764374401.25}";
	static const char strings[] =
	    "{\"enqueued_at\":\"1764374401.25\",\"member_max\":\"50000\","
	    "\"member_min\":\"1\",\"window_end\":\"1764374400\","
	    "\"window_start\":\"1764288000\",\"period\":\"daily\","
	    "\"group_id\":\"42\",\"job_id\":\"daily.1764374400.42.0\","
	    "\"other\":[1,2]}";
	/* Every number a double, as some encoders write them. */
	static const char reals[] =
	    "{\"job_id\":\"daily.1764374400.42.0\",\"group_id\":42.0,"
	    "\"period\":\"daily\",\"window_start\":1764288000.0,"
	    "\"window_end\":1.7643744e9,\"member_min\":1.0,"
	    "\"member_max\":50000.0,\"enqueued_at\":1764374401.25}";
	struct job j;

	(void)state;
	assert_int_equal(job_decode_json(&j, numbers, strlen(numbers), err,
	    sizeof(err)), 0);
	assert_good_job(&j);
	assert_int_equal(job_decode_json(&j, strings, strlen(strings), err,
	    sizeof(err)), 0);
	assert_good_job(&j);
	assert_int_equal(job_decode_json(&j, reals, strlen(reals), err,
	    sizeof(err)), 0);
	assert_good_job(&j);
	/* The length counts, not a NUL: a body is not a C string. */
	assert_int_equal(job_decode_json(&j, numbers, strlen(numbers) - 1, err,
	    sizeof(err)), -1);
	assert_memory_equal(err, "not JSON: ", 10);
}

static int json_last_shard;

/*
 * A body with the value of field replaced by text (or left out, for NULL;
 * or added, for last_shard), decoded; json_last_shard is what it said.
 */
static int
json_with(const char *field, const char *text)
{
	static const char *json_values[JOB_NREQUIRED] = {
		"\"daily.1764374400.42.0\"", "42", "\"daily\"", "1764288000",
		"1764374400", "1", "50000", "1764374401.25"
	};
	char body[1024];
	struct job j;
	size_t off = 0;
	int i;

	off += (size_t)snprintf(body + off, sizeof(body) - off, "{");
	if (strcmp(field, "last_shard") == 0 && text != NULL)
		off += (size_t)snprintf(body + off, sizeof(body) - off,
		    "\"last_shard\":%s", text);
	for (i = 0; i < JOB_NREQUIRED; i++) {
		const char *v = json_values[i];

		if (strcmp(job_field_names[i], field) == 0) {
			if (text == NULL)
				continue;
			v = text;
		}
		off += (size_t)snprintf(body + off, sizeof(body) - off,
		    "%s\"%s\":%s", off > 1 ? "," : "", job_field_names[i], v);
	}
	snprintf(body + off, sizeof(body) - off, "}");
	if (job_decode_json(&j, body, strlen(body), err, sizeof(err)) == -1)
		return -1;
	json_last_shard = j.last_shard;
	return 0;
}

static void
test_json_errors(void **state)
{
	static const char *bad_int[] = {
		"\"x\"", "\"1.5\"", "\" 1\"", "1.5", "true", "[1]", "{}",
		"\"\"", "1e300", "\"0x1\""
	};
	static const char *bad_body[] = {
		"", "[]", "42", "\"job\"", "null", "{", "{\"job_id\":1,}",
		"{\"job_id\":\"a\",\"job_id\":\"b\"}"
	};
	char want[64];
	struct job j;
	size_t i;
	int f;

	(void)state;
	assert_int_equal(json_with("nothing", NULL), 0);
	for (f = 0; f < JOB_NREQUIRED; f++) {
		const char *name = job_field_names[f];

		assert_int_equal(json_with(name, NULL), -1);
		snprintf(want, sizeof(want), "%s: missing", name);
		assert_string_equal(err, want);
		assert_int_equal(json_with(name, "null"), -1);
		assert_string_equal(err, want);
		if (strcmp(name, "job_id") == 0 || strcmp(name, "period") == 0) {
			assert_int_equal(json_with(name, "7"), -1);
			snprintf(want, sizeof(want), "%s: not a string", name);
			assert_string_equal(err, want);
			continue;
		}
		if (strcmp(name, "enqueued_at") == 0) {
			assert_int_equal(json_with(name, "\"soon\""), -1);
			assert_string_equal(err, "enqueued_at: not a number");
			assert_int_equal(json_with(name, "false"), -1);
			assert_string_equal(err, "enqueued_at: not a number");
			assert_int_equal(json_with(name, "1764374401"), 0);
			assert_int_equal(json_with(name, "\"1764374401.5\""), 0);
			continue;
		}
		snprintf(want, sizeof(want), "%s: not a whole number", name);
		for (i = 0; i < sizeof(bad_int) / sizeof(bad_int[0]); i++) {
			if (json_with(name, bad_int[i]) != -1)
				fail_msg("%s: %s taken", name, bad_int[i]);
			assert_string_equal(err, want);
		}
	}
	assert_int_equal(json_with("period", "\"yearly\""), -1);
	assert_string_equal(err, "period: not daily or weekly");
	assert_int_equal(json_with("job_id", "\"a\\u0000b\""), -1);
	assert_int_equal(json_with("job_id", "\"a\\nb\""), -1);
	assert_int_equal(json_with("window_end", "1"), -1);
	assert_int_equal(json_with("group_id", "-3"), -1);
	assert_string_equal(err, "group_id: negative");
	for (i = 0; i < sizeof(bad_body) / sizeof(bad_body[0]); i++)
		assert_int_equal(job_decode_json(&j, bad_body[i],
		    strlen(bad_body[i]), err, sizeof(err)), -1);
	assert_int_equal(job_decode_json(&j, "[]", 2, err, sizeof(err)), -1);
	assert_string_equal(err, "not a JSON object");
}

static void
sample(struct job *j)
{
	memset(j, 0, sizeof(*j));
	strcpy(j->period, "weekly");
	j->group_id = 9007199254740993LL;	/* above 2^53 */
	j->window_start = 1763337600;
	j->window_end = 1763942400;
	j->member_min = 0;
	j->member_max = INT64_MAX;
	j->enqueued_at = 1763942412.123456;
	job_make_id(j, 3);
}

static void
test_make_id(void **state)
{
	struct job j;

	(void)state;
	sample(&j);
	assert_string_equal(j.job_id, "weekly.1763942400.9007199254740993.3");
	memset(&j, 0, sizeof(j));
	strcpy(j.period, "daily");
	j.group_id = 42;
	j.window_end = 1764374400;
	job_make_id(&j, 0);
	assert_string_equal(j.job_id, "daily.1764374400.42.0");
}

static void
test_round_trip(void **state)
{
	const char *values[JOB_NFIELDS];
	char buf[JOB_ENCODE_MAX], *json;
	const char *pre;
	struct job j, k;
	int i, n;

	(void)state;
	sample(&j);
	assert_int_equal(job_validate(&j, err, sizeof(err)), 0);

	n = job_encode_fields(&j, buf, values);
	assert_int_equal(n, JOB_NREQUIRED);
	assert_null(values[JOB_NREQUIRED]);
	assert_string_equal(values[0], j.job_id);
	assert_string_equal(values[1], "9007199254740993");
	assert_string_equal(values[2], "weekly");
	assert_string_equal(values[6], "9223372036854775807");
	assert_string_equal(values[7], "1763942412.123456");
	for (i = 0; i < n; i++)
		assert_true(values[i] >= buf && values[i] < buf + sizeof(buf));
	assert_int_equal(job_decode_fields(&k, job_field_names, values,
	    (size_t)n, err, sizeof(err)), 0);
	assert_string_equal(k.job_id, j.job_id);
	assert_string_equal(k.period, j.period);
	assert_int_equal(k.group_id, j.group_id);
	assert_int_equal(k.window_start, j.window_start);
	assert_int_equal(k.window_end, j.window_end);
	assert_int_equal(k.member_min, j.member_min);
	assert_int_equal(k.member_max, j.member_max);
	/* Microseconds survive the fields; that is all a stream carries. */
	assert_true(k.enqueued_at - j.enqueued_at < 1e-6 &&
	    j.enqueued_at - k.enqueued_at < 1e-6);

	assert_non_null(json = job_encode_json(&j));
	pre = "{\"job_id\":\"weekly.1763942400.9007199254740993.3\","
	    "\"group_id\":9007199254740993,\"period\":\"weekly\",";
	assert_memory_equal(json, pre, strlen(pre));
	assert_null(strstr(json, "last_shard"));
	assert_int_equal(job_decode_json(&k, json, strlen(json), err,
	    sizeof(err)), 0);
	/* JSON keeps the double and the 64-bit integers exactly. */
	assert_memory_equal(&k, &j, sizeof(j));
	free(json);

	/* The longest valid job fits JOB_ENCODE_MAX. */
	memset(j.job_id, '9', JOB_ID_MAX - 1);
	j.job_id[JOB_ID_MAX - 1] = '\0';
	j.group_id = j.member_max = INT64_MAX;
	j.window_end = 8999999999;
	j.window_start = 8999999998;
	j.member_min = INT64_MIN;
	j.enqueued_at = 8999999999.999;
	j.last_shard = 1;
	assert_int_equal(job_validate(&j, err, sizeof(err)), 0);
	n = job_encode_fields(&j, buf, values);
	assert_int_equal(n, JOB_NFIELDS);
	assert_string_equal(values[5], "-9223372036854775808");
	assert_string_equal(values[JOB_NREQUIRED], "1");
	assert_int_equal(job_decode_fields(&k, job_field_names, values,
	    (size_t)n, err, sizeof(err)), 0);
	assert_string_equal(k.job_id, j.job_id);
	assert_int_equal(k.window_start, 8999999998);
	assert_true(k.member_min == INT64_MIN);
	assert_int_equal(k.last_shard, 1);
}

/* last_shard: written only when set, read back, carried by both forms. */
static void
test_last_shard(void **state)
{
	static const char *bad[] = { "", "2", "-1", "01", " 1", "1 ", "true",
	    "yes", "1.0" };
	static const char *bad_json[] = { "2", "-1", "0.5", "\"yes\"",
	    "\"\"", "[1]", "{}", "1e300" };
	const char *values[JOB_NFIELDS];
	char buf[JOB_ENCODE_MAX], *json;
	struct job j, k;
	size_t i;
	int n;

	(void)state;
	assert_int_equal(decode_job_with(&j, "last_shard", "1", err,
	    sizeof(err)), 0);
	assert_int_equal(j.last_shard, 1);
	assert_good_job(&j);
	assert_int_equal(decode_job_with(&j, "last_shard", "0", err,
	    sizeof(err)), 0);
	assert_int_equal(j.last_shard, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (decode_with("last_shard", bad[i], err, sizeof(err)) != -1)
			fail_msg("last_shard \"%s\" taken", bad[i]);
		assert_string_equal(err, "last_shard: not 0 or 1");
	}

	/* JSON: 0 or 1, as a number, a boolean or a numeric string. */
	assert_int_equal(json_with("last_shard", NULL), 0);
	assert_int_equal(json_last_shard, 0);
	assert_int_equal(json_with("last_shard", "null"), 0);
	assert_int_equal(json_last_shard, 0);
	assert_int_equal(json_with("last_shard", "1"), 0);
	assert_int_equal(json_last_shard, 1);
	assert_int_equal(json_with("last_shard", "true"), 0);
	assert_int_equal(json_last_shard, 1);
	assert_int_equal(json_with("last_shard", "\"1\""), 0);
	assert_int_equal(json_last_shard, 1);
	assert_int_equal(json_with("last_shard", "1.0"), 0);
	assert_int_equal(json_last_shard, 1);
	assert_int_equal(json_with("last_shard", "false"), 0);
	assert_int_equal(json_last_shard, 0);
	assert_int_equal(json_with("last_shard", "0"), 0);
	assert_int_equal(json_last_shard, 0);
	for (i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
		if (json_with("last_shard", bad_json[i]) != -1)
			fail_msg("last_shard %s taken", bad_json[i]);
		assert_string_equal(err, "last_shard: not 0 or 1");
	}

	/* Both encodings carry it, as the number 1 in JSON. */
	sample(&j);
	j.member_min = INT64_MIN;
	j.last_shard = 1;
	n = job_encode_fields(&j, buf, values);
	assert_int_equal(n, JOB_NFIELDS);
	assert_string_equal(job_field_names[n - 1], "last_shard");
	assert_int_equal(job_decode_fields(&k, job_field_names, values,
	    (size_t)n, err, sizeof(err)), 0);
	assert_int_equal(k.last_shard, 1);
	assert_non_null(json = job_encode_json(&j));
	assert_non_null(strstr(json, ",\"last_shard\":1}"));
	assert_int_equal(job_decode_json(&k, json, strlen(json), err,
	    sizeof(err)), 0);
	assert_memory_equal(&k, &j, sizeof(j));
	free(json);

	/* A struct with another value does not validate. */
	j.last_shard = 2;
	assert_int_equal(job_validate(&j, err, sizeof(err)), -1);
	assert_string_equal(err, "last_shard: not 0 or 1");
}

/*
 * What a job that passed job_validate goes through in the worker: its
 * window end and its age in nanoseconds (the email-delay and queue-wait
 * histograms), the encoding back to fields.  Under UBSan (make ASAN=1)
 * an overflow or an out-of-range conversion here aborts the test.
 */
static void
use_job(const struct job *j)
{
	const char *values[JOB_NFIELDS];
	char buf[JOB_ENCODE_MAX], e[256];
	volatile int64_t delay, wait;
	double now = 1764374400.0;
	struct job k;
	int n;

	assert_true(j->window_start >= 0 && j->window_end < JOB_TIME_MAX);
	assert_true(j->window_start < j->window_end);
	assert_true(j->enqueued_at >= 0 && j->enqueued_at < JOB_TIME_MAX);
	delay = (int64_t)now * 1000000000LL - j->window_end * 1000000000LL;
	wait = (int64_t)((now - j->enqueued_at) * 1e9);
	(void)delay;
	(void)wait;
	n = job_encode_fields(j, buf, values);
	assert_int_equal(job_decode_fields(&k, job_field_names, values,
	    (size_t)n, e, sizeof(e)), 0);
	assert_int_equal(k.window_end, j->window_end);
}

/* A JSON body of the good job with one field's text replaced. */
static int
json_job_with(struct job *j, const char *field, const char *text)
{
	static const char *json_values[JOB_NREQUIRED] = {
		"\"daily.1764374400.42.0\"", "42", "\"daily\"", "1764288000",
		"1764374400", "1", "50000", "1764374401.25"
	};
	char body[1024];
	size_t off = 0;
	int i;

	off += (size_t)snprintf(body, sizeof(body), "{");
	for (i = 0; i < JOB_NREQUIRED; i++)
		off += (size_t)snprintf(body + off, sizeof(body) - off,
		    "%s\"%s\":%s", i > 0 ? "," : "", job_field_names[i],
		    strcmp(job_field_names[i], field) == 0 ? text :
		    json_values[i]);
	snprintf(body + off, sizeof(body) - off, "}");
	return job_decode_json(j, body, strlen(body), err, sizeof(err));
}

/*
 * Hostile numbers in every numeric field, as stream fields, as JSON
 * numbers and as JSON strings: each is refused or gives a job whose
 * times are within bounds, and nothing overflows on the way.
 */
static void
test_hostile_values(void **state)
{
	static const char *hostile[] = {
		"1e300", "-1e300", "1e308", "1.7976931348623157e308",
		"4.9e-324", "inf", "-inf", "nan", "NaN", "infinity", "1e19",
		"-1e19", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "-9223372036854775809",
		"18446744073709551616", "99999999999999999999999",
		"9223372036854775807.0", "9.2233720368547758e18",
		"0x7fffffffffffffff", "1e11", "99999999999", "100000000000",
		"9000000000", "8999999999", "8999999999.999", "0", "-0", "-1",
		"1764374400", "1764374401", "1e9", "1.5e9",
	};
	char text[64];
	struct job j;
	size_t i;
	int f, form;

	(void)state;
	for (f = 0; f < JOB_NREQUIRED; f++) {
		const char *name = job_field_names[f];

		if (strcmp(name, "job_id") == 0 || strcmp(name, "period") == 0)
			continue;
		for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
			if (decode_job_with(&j, name, hostile[i], err,
			    sizeof(err)) == 0)
				use_job(&j);
			for (form = 0; form < 2; form++) {
				snprintf(text, sizeof(text), form ? "\"%s\"" :
				    "%s", hostile[i]);
				if (json_job_with(&j, name, text) == 0)
					use_job(&j);
			}
		}
	}
}

/*
 * Window times and enqueued_at are unix times: from 0 to before 9e9
 * seconds (the year 2255), where a time in nanoseconds still fits in 63
 * bits.
 */
static void
test_time_bounds(void **state)
{
	(void)state;
	assert_int_equal(decode_with("window_end", "8999999999", err,
	    sizeof(err)), 0);
	assert_int_equal(decode_with("window_end", "9000000000", err,
	    sizeof(err)), -1);
	assert_string_equal(err, "window: window_end 9000000000 is past the "
	    "year 2255");
	assert_int_equal(decode_with("window_end", "99999999999", err,
	    sizeof(err)), -1);
	assert_int_equal(decode_with("window_end", "9223372036854775807", err,
	    sizeof(err)), -1);
	assert_string_equal(err, "window: window_end 9223372036854775807 is "
	    "past the year 2255");
	assert_int_equal(decode_with("window_start", "-9223372036854775808",
	    err, sizeof(err)), -1);
	assert_string_equal(err, "window: negative time");
	assert_int_equal(decode_with("enqueued_at", "8999999999.5", err,
	    sizeof(err)), 0);
	assert_int_equal(decode_with("enqueued_at", "9000000000", err,
	    sizeof(err)), -1);
	assert_string_equal(err, "enqueued_at: not a unix time");
	assert_int_equal(decode_with("enqueued_at", "-0", err, sizeof(err)),
	    0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_field_names),
		cmocka_unit_test(test_decode_fields),
		cmocka_unit_test(test_fields_missing),
		cmocka_unit_test(test_fields_not_numeric),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_decode_json),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_make_id),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_last_shard),
		cmocka_unit_test(test_hostile_values),
		cmocka_unit_test(test_time_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
