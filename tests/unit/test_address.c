/*
 * Unit tests for worker/address.c: an address from Redis made fit for
 * SMTP (ASCII as it is, a Unicode domain in punycode, a Unicode local
 * part recognised, anything else refused), and the VERP envelope sender.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "address.h"

static void
test_prepare_ascii(void **state)
{
	char buf[ADDRESS_MAX + 2];
	const char *out, *why;
	const char *a = "user+tag@example.com";

	(void)state;
	/* The address itself, not a copy. */
	assert_int_equal(address_prepare(a, buf, sizeof(buf), &out, &why),
	    ADDRESS_OK);
	assert_ptr_equal(out, a);
	assert_int_equal(address_prepare("no-at.example.com", buf, sizeof(buf),
	    &out, &why), ADDRESS_BAD);
	assert_non_null(why);
	assert_null(out);
	assert_int_equal(address_prepare("a b@example.com", buf, sizeof(buf),
	    &out, &why), ADDRESS_BAD);
	assert_int_equal(address_prepare("a@example..com", buf, sizeof(buf),
	    &out, &why), ADDRESS_BAD);
	assert_int_equal(address_prepare(NULL, buf, sizeof(buf), &out, &why),
	    ADDRESS_BAD);
	assert_int_equal(address_prepare("@example.com", buf, sizeof(buf),
	    &out, &why), ADDRESS_BAD);
}

static void
test_prepare_idn(void **state)
{
	char buf[ADDRESS_MAX + 2];
	const char *out, *why;

	(void)state;
	assert_int_equal(address_prepare("anna@b\xc3\xbc" "cher.example", buf,
	    sizeof(buf), &out, &why), ADDRESS_OK);
	assert_ptr_equal(out, buf);
	assert_string_equal(out, "anna@xn--bcher-kva.example");
	/* UTS 46 maps to lowercase; NFC first (u + combining diaeresis). */
	assert_int_equal(address_prepare("anna@B\xc3\x9c" "CHER.example", buf,
	    sizeof(buf), &out, &why), ADDRESS_OK);
	assert_string_equal(out, "anna@xn--bcher-kva.example");
	assert_int_equal(address_prepare("anna@bu\xcc\x88" "cher.example", buf,
	    sizeof(buf), &out, &why), ADDRESS_OK);
	assert_string_equal(out, "anna@xn--bcher-kva.example");
	assert_int_equal(address_prepare("x@\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5"
	    "\x8b\xe8\xaf\x95", buf, sizeof(buf), &out, &why), ADDRESS_OK);
	assert_string_equal(out, "x@xn--fsqu00a.xn--0zwm56d");
	/* No room: refused, never cut. */
	assert_int_equal(address_prepare("anna@b\xc3\xbc" "cher.example", buf,
	    10, &out, &why), ADDRESS_BAD);
	/* Not UTF-8, a control character, an empty label. */
	assert_int_equal(address_prepare("anna@b\xfc" "cher.example", buf,
	    sizeof(buf), &out, &why), ADDRESS_BAD);
	assert_string_equal(why, "not valid UTF-8");
	assert_int_equal(address_prepare("anna@b\xc3\xbc\x01.example", buf,
	    sizeof(buf), &out, &why), ADDRESS_BAD);
	assert_int_equal(address_prepare("anna@b\xc3\xbc" "cher..example", buf,
	    sizeof(buf), &out, &why), ADDRESS_BAD);
	/* An overlong form and a C1 control are not UTF-8 text. */
	assert_int_equal(address_prepare("anna@\xc0\xae" "example", buf,
	    sizeof(buf), &out, &why), ADDRESS_BAD);
	assert_int_equal(address_prepare("anna@\xc2\x85" "example", buf,
	    sizeof(buf), &out, &why), ADDRESS_BAD);
}

static void
test_prepare_utf8_local(void **state)
{
	char buf[ADDRESS_MAX + 2];
	const char *out, *why;

	(void)state;
	assert_int_equal(address_prepare("j\xc3\xb6rg@example.org", buf,
	    sizeof(buf), &out, &why), ADDRESS_UTF8_LOCAL);
	assert_null(out);
	assert_non_null(strstr(why, "SMTPUTF8"));
	assert_int_equal(address_prepare("j\xc3\xb6rg@b\xc3\xbc" "cher.example",
	    buf, sizeof(buf), &out, &why), ADDRESS_UTF8_LOCAL);
}

static void
test_verp(void **state)
{
	char out[ADDRESS_MAX + 2], err[256];
	int n;

	(void)state;
	assert_int_equal(address_verp("bounces+{uid}-{gid}@example.com", 7, 42,
	    out, sizeof(out)), 24);
	assert_string_equal(out, "bounces+7-42@example.com");
	n = address_verp("b-{gid}.{uid}.{uid}@example.com", -5, INT64_MAX, out,
	    sizeof(out));
	assert_int_equal(n, (int)strlen(out));
	assert_string_equal(out, "b-9223372036854775807.-5.-5@example.com");
	/* No placeholder: the pattern as it is; a brace alone stays. */
	assert_int_equal(address_verp("digest@example.com", 1, 2, out,
	    sizeof(out)), 18);
	assert_string_equal(out, "digest@example.com");
	/* Too small: -1, never a cut address. */
	assert_int_equal(address_verp("bounces+{uid}@example.com", 1, 2, out,
	    12), -1);

	assert_false(address_verp_needed("digest@example.com"));
	assert_true(address_verp_needed("b+{uid}@example.com"));

	assert_int_equal(address_verp_check("digest@example.com", err,
	    sizeof(err)), 0);
	assert_int_equal(address_verp_check("bounces+{uid}-{gid}@example.com",
	    err, sizeof(err)), 0);
	assert_int_equal(address_verp_check("b+{user}@example.com", err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "only {uid} and {gid}"));
	assert_int_equal(address_verp_check("b+uid}@example.com", err,
	    sizeof(err)), -1);
	assert_int_equal(address_verp_check("b@{gid}.example.com", err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "local part"));
	/* 3 ids of 20 characters do not fit 64 octets with this prefix. */
	assert_int_equal(address_verp_check("bounces-of-the-list+{uid}{gid}"
	    "{uid}@example.com", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "64 octets"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prepare_ascii),
		cmocka_unit_test(test_prepare_idn),
		cmocka_unit_test(test_prepare_utf8_local),
		cmocka_unit_test(test_verp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
