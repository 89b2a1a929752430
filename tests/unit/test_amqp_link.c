/*
 * Unit tests for the pieces of common/amqp_link.c that need no broker:
 * reading header values of every kind a dead letter may carry, and the
 * connect errors (a url that does not parse, a refused port), which must
 * never print the password of the url.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "amqp_link.h"

static void
test_table_values(void **state)
{
	amqp_table_entry_t e[4];
	amqp_table_t t;
	char buf[64];

	e[0].key = amqp_cstring_bytes("x-digest-reason");
	e[0].value.kind = AMQP_FIELD_KIND_UTF8;
	e[0].value.value.bytes = amqp_cstring_bytes("transport amqp: nack");
	e[1].key = amqp_cstring_bytes("x-digest-attempts");
	e[1].value.kind = AMQP_FIELD_KIND_I32;
	e[1].value.value.i32 = 3;
	e[2].key = amqp_cstring_bytes("x-big");
	e[2].value.kind = AMQP_FIELD_KIND_I64;
	e[2].value.value.i64 = -1234567890123LL;
	e[3].key = amqp_cstring_bytes("x-flag");
	e[3].value.kind = AMQP_FIELD_KIND_BOOLEAN;
	e[3].value.value.boolean = 1;
	t.num_entries = 4;
	t.entries = e;

	assert_int_equal(amqp_table_get_str(&t, "x-digest-reason", buf,
	    sizeof(buf)), 0);
	assert_string_equal(buf, "transport amqp: nack");
	assert_int_equal(amqp_table_get_str(&t, "x-digest-attempts", buf,
	    sizeof(buf)), 0);
	assert_string_equal(buf, "3");
	assert_int_equal(amqp_table_get_str(&t, "x-big", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "-1234567890123");
	/* A kind we do not print, a missing key: -1 and an empty string. */
	assert_int_equal(amqp_table_get_str(&t, "x-flag", buf, sizeof(buf)),
	    -1);
	assert_string_equal(buf, "");
	assert_int_equal(amqp_table_get_str(&t, "x-digest", buf, sizeof(buf)),
	    -1);
	assert_string_equal(buf, "");
	/* Truncated to the buffer, NUL-terminated. */
	assert_int_equal(amqp_table_get_str(&t, "x-digest-reason", buf, 8), 0);
	assert_string_equal(buf, "transpo");
}

static void
test_bad_url(void **state)
{
	char err[256];

	assert_null(amqp_link_connect("http://u:s3cret@host/", NULL, 30000, "t",
	    err, sizeof(err)));
	assert_non_null(strstr(err, "does not parse"));
	assert_null(strstr(err, "s3cret"));
}

static void
test_refused(void **state)
{
	char err[256];

	/* Port 1 on loopback: refused at once, nothing listens there. */
	assert_null(amqp_link_connect("amqp://u:s3cret@127.0.0.1:1/%2F", NULL,
	    30000, "t", err, sizeof(err)));
	assert_non_null(strstr(err, "127.0.0.1:1"));
	assert_null(strstr(err, "s3cret"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_values),
		cmocka_unit_test(test_bad_url),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
