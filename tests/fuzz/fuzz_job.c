/*
 * libFuzzer target for the job decoders.  An input starting with 'J' is a
 * JSON body (job_decode_json); any other is a stream entry: the bytes after
 * the first, split at newlines, are name, value, name, value...
 * (job_decode_fields).  A job that decodes must validate, and must come
 * back the same through job_encode_fields and job_encode_json; a broken
 * round trip aborts, so libFuzzer keeps it.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

#define FUZZ_MAX_FIELDS 32

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
same(const struct job *a, const struct job *b, int exact)
{
	if (strcmp(a->job_id, b->job_id) != 0 ||
	    strcmp(a->period, b->period) != 0 ||
	    a->group_id != b->group_id ||
	    a->window_start != b->window_start ||
	    a->window_end != b->window_end ||
	    a->member_min != b->member_min ||
	    a->member_max != b->member_max ||
	    a->last_shard != b->last_shard)
		abort();
	/* Stream fields carry microseconds; JSON the whole double. */
	if (exact ? a->enqueued_at != b->enqueued_at :
	    fabs(a->enqueued_at - b->enqueued_at) > 1e-6)
		abort();
}

static void
round_trip(const struct job *j)
{
	const char *values[JOB_NFIELDS];
	char buf[JOB_ENCODE_MAX], err[256], *json;
	struct job k;
	int n;

	if (job_validate(j, err, sizeof(err)) != 0)
		abort();
	n = job_encode_fields(j, buf, values);
	if (job_decode_fields(&k, job_field_names, values, (size_t)n, err,
	    sizeof(err)) != 0)
		abort();
	same(j, &k, 0);
	if ((json = job_encode_json(j)) == NULL)
		abort();
	if (job_decode_json(&k, json, strlen(json), err, sizeof(err)) != 0)
		abort();
	same(j, &k, 1);
	free(json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *names[FUZZ_MAX_FIELDS], *values[FUZZ_MAX_FIELDS];
	char err[256], *copy, *p, *nl;
	size_t n = 0;
	struct job j;
	int rc;

	if (size == 0)
		return 0;
	if (data[0] == 'J') {
		rc = job_decode_json(&j, (const char *)data + 1, size - 1, err,
		    sizeof(err));
	} else {
		if ((copy = malloc(size)) == NULL)
			return 0;
		memcpy(copy, data + 1, size - 1);
		copy[size - 1] = '\0';
		for (p = copy; n < FUZZ_MAX_FIELDS; p = nl + 1) {
			if ((nl = strchr(p, '\n')) != NULL)
				*nl = '\0';
			if (n % 2 == 0)
				names[n / 2] = p;
			else
				values[n / 2] = p;
			n++;
			if (nl == NULL)
				break;
		}
		rc = job_decode_fields(&j, names, values, n / 2, err,
		    sizeof(err));
		free(copy);
	}
	if (rc == 0)
		round_trip(&j);
	else if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
		abort();
	return 0;
}
