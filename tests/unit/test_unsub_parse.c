/*
 * The unsubscribe endpoint's reading of a request: the path taken from
 * unsubscribe_url, the u, g and t of the query, and the One-Click body in
 * the forms mail clients POST it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "unsub_parse.h"

#define TOK "0123456789abcdef0123456789abcdef" \
	"0123456789abcdef0123456789abcdef"

static void
test_url_path(void **state)
{
	char p[64];

	(void)state;
	assert_int_equal(unsub_parse_url_path("https://example.com/unsubscribe",
	    p, sizeof(p)), 0);
	assert_string_equal(p, "/unsubscribe");
	assert_int_equal(unsub_parse_url_path("HTTP://h:8080/a/b?list=1#x", p,
	    sizeof(p)), 0);
	assert_string_equal(p, "/a/b");
	assert_int_equal(unsub_parse_url_path("https://h", p, sizeof(p)), 0);
	assert_string_equal(p, "/");
	assert_int_equal(unsub_parse_url_path("https://h?x=1", p, sizeof(p)),
	    0);
	assert_string_equal(p, "/");
	assert_int_equal(unsub_parse_url_path("https://h/un%73ub", p,
	    sizeof(p)), 0);
	assert_string_equal(p, "/unsub");
	assert_int_equal(unsub_parse_url_path("ftp://h/u", p, sizeof(p)), -1);
	assert_int_equal(unsub_parse_url_path("https://h/a%00b", p, sizeof(p)),
	    -1);
	assert_int_equal(unsub_parse_url_path("https://h/a%4", p, sizeof(p)),
	    -1);
	assert_int_equal(unsub_parse_url_path("https://h/a%zz", p, sizeof(p)),
	    -1);
	assert_int_equal(unsub_parse_url_path("https://h/abcdef", p, 4), -1);
	assert_int_equal(unsub_parse_url_path(NULL, p, sizeof(p)), -1);
}

static void
test_path_is(void **state)
{
	(void)state;
	assert_int_equal(unsub_parse_path_is("/unsubscribe", "/unsubscribe"),
	    1);
	assert_int_equal(unsub_parse_path_is("/un%73ubscribe", "/unsubscribe"),
	    1);
	assert_int_equal(unsub_parse_path_is("/unsubscribe/", "/unsubscribe"),
	    0);
	assert_int_equal(unsub_parse_path_is("/Unsubscribe", "/unsubscribe"),
	    0);
	assert_int_equal(unsub_parse_path_is("unsubscribe", "unsubscribe"), 0);
	assert_int_equal(unsub_parse_path_is("/a%00", "/a"), 0);
	assert_int_equal(unsub_parse_path_is(NULL, "/"), 0);
	assert_int_equal(unsub_parse_path_is("/", "/"), 1);
}

static void
test_query(void **state)
{
	struct unsub_link l;

	(void)state;
	assert_int_equal(unsub_parse_query("u=7&g=42&t=" TOK, &l), 0);
	assert_int_equal(l.uid, 7);
	assert_int_equal(l.gid, 42);
	assert_string_equal(l.token, TOK);
	/* Fields of unsubscribe_url's own query are left alone. */
	assert_int_equal(unsub_parse_query("list=x&u=0&g=123456789012345678"
	    "&t=" TOK, &l), 0);
	assert_int_equal(l.uid, 0);
	assert_int_equal(l.gid, 123456789012345678LL);
	/* %-encoded digits decode as digits. */
	assert_int_equal(unsub_parse_query("u=%37&g=42&t=" TOK, &l), 0);
	assert_int_equal(l.uid, 7);

	assert_int_equal(unsub_parse_query(NULL, &l), -1);
	assert_int_equal(unsub_parse_query("", &l), -1);
	assert_int_equal(unsub_parse_query("g=42&t=" TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=7&t=" TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=7&g=42", &l), -1);
	assert_int_equal(unsub_parse_query("u=7&u=8&g=42&t=" TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=07&g=42&t=" TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=-7&g=42&t=" TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=+7&g=42&t=" TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=7 &g=42&t=" TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=&g=42&t=" TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=1234567890123456789&g=42&t="
	    TOK, &l), -1);
	assert_int_equal(unsub_parse_query("u=7&g=42&t=" TOK "0", &l), -1);
	assert_int_equal(unsub_parse_query("u=7&g=42&t=0123", &l), -1);
	assert_int_equal(unsub_parse_query("u=7&g=42&t="
	    "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	    &l), -1);
	assert_int_equal(unsub_parse_query("u=7&g=42&t="
	    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
	    &l), -1);
}

static void
test_one_click(void **state)
{
	const char *mp = "--xyz\r\nContent-Disposition: form-data; "
	    "name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--xyz--\r\n";
	const char *mp2 = "--xyz\r\nContent-Disposition: form-data; "
	    "name=\"other\"\r\n\r\nOne-Click\r\n--xyz\r\n"
	    "content-disposition: form-data; name=\"List-Unsubscribe\"\r\n"
	    "\r\nOne-Click\r\n--xyz--\r\n";
	const char *mpbad = "--xyz\r\nContent-Disposition: form-data; "
	    "name=\"List-Unsubscribe\"\r\n\r\nNo\r\n--xyz--\r\n";

#define ONE(ct, s) unsub_parse_one_click((ct), (s), strlen(s))
	(void)state;
	assert_int_equal(ONE(NULL, "List-Unsubscribe=One-Click"), 1);
	assert_int_equal(ONE("application/x-www-form-urlencoded",
	    "List-Unsubscribe=One-Click"), 1);
	assert_int_equal(ONE("application/x-www-form-urlencoded; "
	    "charset=UTF-8", "List-Unsubscribe=One-Click\r\n"), 1);
	assert_int_equal(ONE(NULL, "a=b&List-Unsubscribe=One-Click"), 1);
	assert_int_equal(ONE(NULL, "List-Unsubscribe=One%2DClick"), 1);
	assert_int_equal(ONE("text/plain", "List-Unsubscribe=One-Click"), 1);
	assert_int_equal(ONE(NULL, ""), 0);
	assert_int_equal(ONE(NULL, "List-Unsubscribe=one-click"), 0);
	assert_int_equal(ONE(NULL, "List-Unsubscribe=One-Click2"), 0);
	assert_int_equal(ONE(NULL, "List-Unsubscribe=One-Click&"
	    "List-Unsubscribe=One-Click"), 0);
	assert_int_equal(ONE(NULL, "list-unsubscribe=One-Click"), 0);
	assert_int_equal(unsub_parse_one_click(NULL, NULL, 0), 0);

	assert_int_equal(ONE("multipart/form-data; boundary=xyz", mp), 1);
	assert_int_equal(ONE("multipart/form-data; boundary=\"xyz\"", mp), 1);
	assert_int_equal(ONE("multipart/form-data; boundary=xyz", mp2), 1);
	assert_int_equal(ONE("multipart/form-data; boundary=xyz", mpbad), 0);
	assert_int_equal(ONE("multipart/form-data; boundary=abc", mp), 0);
	assert_int_equal(ONE("multipart/form-data", mp), 0);
	assert_int_equal(ONE("multipart/form-data; boundary=", mp), 0);
	assert_int_equal(ONE("multipart/form-data; boundary=\"xyz", mp), 0);
	assert_int_equal(ONE("multipart/form-data; boundary=xyz",
	    "--xyz\r\nContent-Disposition: form-data; "
	    "name=\"List-Unsubscribe\"\r\n\r\nOne-Click"), 0);
	/* Line ends of LF alone, as some clients write them. */
	assert_int_equal(ONE("multipart/form-data; boundary=xyz",
	    "--xyz\nContent-Disposition: form-data; "
	    "name=\"List-Unsubscribe\"\n\nOne-Click\n--xyz--\n"), 1);
#undef ONE
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_path),
		cmocka_unit_test(test_path_is),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_one_click),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
