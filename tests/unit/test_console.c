/*
 * The web console's pure parts: routes, basic auth, the session cookie,
 * the CSRF token and its windows, form fields and HTML escaping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "console_parse.h"

static void
test_route(void **state)
{
	const char *allow;

	(void)state;
	assert_int_equal(console_route("GET", "/", NULL), CONSOLE_ROUTE_HOME);
	assert_int_equal(console_route("HEAD", "/dlq", NULL),
	    CONSOLE_ROUTE_DLQ);
	assert_int_equal(console_route("POST", "/pause", NULL),
	    CONSOLE_ROUTE_PAUSE);
	assert_int_equal(console_route("GET", "/pause", &allow),
	    CONSOLE_ROUTE_BAD_METHOD);
	assert_string_equal(allow, "POST");
	assert_int_equal(console_route("POST", "/", &allow),
	    CONSOLE_ROUTE_BAD_METHOD);
	assert_string_equal(allow, "GET, HEAD");
	assert_int_equal(console_route("GET", "/pause/", NULL),
	    CONSOLE_ROUTE_NOT_FOUND);
	assert_int_equal(console_route("GET", NULL, NULL),
	    CONSOLE_ROUTE_NOT_FOUND);
}

static void
test_auth(void **state)
{
	(void)state;
	/* ops:secret, and :secret */
	assert_int_equal(console_auth_check("Basic b3BzOnNlY3JldA==",
	    "secret"), 1);
	assert_int_equal(console_auth_check("basic  OnNlY3JldA", "secret"),
	    1);
	assert_int_equal(console_auth_check("Basic b3BzOnNlY3JldA==",
	    "secreT"), 0);
	assert_int_equal(console_auth_check("Basic b3BzOnNlY3JldA==", ""),
	    0);
	assert_int_equal(console_auth_check("Bearer b3BzOnNlY3JldA==",
	    "secret"), 0);
	assert_int_equal(console_auth_check("Basic b3Bz", "secret"), 0);
	assert_int_equal(console_auth_check("Basic !!!!", "secret"), 0);
	assert_int_equal(console_auth_check(NULL, "secret"), 0);
}

static void
test_session_and_token(void **state)
{
	uint8_t key[CONSOLE_KEY_LEN], other[CONSOLE_KEY_LEN];
	char sid[CONSOLE_SESSION_LEN + 1], tok[CONSOLE_TOKEN_LEN + 1];
	const char *s = "0123456789abcdef0123456789abcdef";

	(void)state;
	memset(key, 1, sizeof(key));
	memset(other, 2, sizeof(other));
	assert_int_equal(console_session_get("a=b; digestd_console="
	    "0123456789abcdef0123456789abcdef; c=d", sid), 0);
	assert_string_equal(sid, s);
	assert_int_equal(console_session_get("digestd_console=0123", sid),
	    -1);
	assert_int_equal(console_session_get("digestd_console="
	    "0123456789ABCDEF0123456789abcdef", sid), -1);
	assert_int_equal(console_session_get("x_digestd_console="
	    "0123456789abcdef0123456789abcdef", sid), -1);
	assert_int_equal(console_session_get(NULL, sid), -1);

	console_csrf_token(key, s, 36000, tok);
	assert_int_equal(strlen(tok), CONSOLE_TOKEN_LEN);
	assert_int_equal(console_csrf_check(key, s, tok, 36000), 1);
	assert_int_equal(console_csrf_check(key, s, tok, 36000 + 3599), 1);
	assert_int_equal(console_csrf_check(key, s, tok, 36000 + 3600 + 3599),
	    1);
	assert_int_equal(console_csrf_check(key, s, tok, 36000 + 7200), 0);
	assert_int_equal(console_csrf_check(key, s, tok, 36000 - 1), 0);
	assert_int_equal(console_csrf_check(other, s, tok, 36000), 0);
	assert_int_equal(console_csrf_check(key,
	    "1123456789abcdef0123456789abcdef", tok, 36000), 0);
	assert_int_equal(console_csrf_check(key, s, NULL, 36000), 0);
	tok[10] ^= 1;
	assert_int_equal(console_csrf_check(key, s, tok, 36000), 0);
}

static void
test_form(void **state)
{
	const char *b = "csrf=ab&queue=pri%2Dority&reason=bad+template%21&e=";
	char out[16];

	(void)state;
	assert_int_equal(console_form_get(b, strlen(b), "queue", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "pri-ority");
	assert_int_equal(console_form_get(b, strlen(b), "reason", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "bad template!");
	assert_int_equal(console_form_get(b, strlen(b), "e", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(console_form_get(b, strlen(b), "csr", out,
	    sizeof(out)), -1);
	assert_int_equal(console_form_get("a=1&a=2", 7, "a", out,
	    sizeof(out)), -1);
	assert_int_equal(console_form_get("a=%00", 5, "a", out,
	    sizeof(out)), -1);
	assert_int_equal(console_form_get("a=%4", 4, "a", out,
	    sizeof(out)), -1);
	assert_int_equal(console_form_get("a=0123456789abcdefg", 19, "a",
	    out, sizeof(out)), -1);
	/* Only len bytes count. */
	assert_int_equal(console_form_get("a=12&b=3", 4, "b", out,
	    sizeof(out)), -1);
}

static void
test_html(void **state)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	(void)state;
	console_html(b, "<a href=\"x\" title='y'>&\x01</a>");
	evbuffer_add(b, "", 1);
	s = (char *)evbuffer_pullup(b, -1);
	assert_string_equal(s, "&lt;a href=&quot;x&quot; title=&#39;y&#39;"
	    "&gt;&amp;?&lt;/a&gt;");
	evbuffer_drain(b, evbuffer_get_length(b));
	console_url(b, "a b/&=é");
	evbuffer_add(b, "", 1);
	assert_string_equal((char *)evbuffer_pullup(b, -1),
	    "a%20b%2F%26%3D%C3%A9");
	evbuffer_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_session_and_token),
		cmocka_unit_test(test_form),
		cmocka_unit_test(test_html),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
