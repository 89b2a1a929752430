/*
 * The HTTP endpoint's pure parts: routes, the html parameter of /status,
 * loopback addresses and who may read /status; the book of connections
 * (which one gives way, when the listener accepts, the deadlines), the cap
 * against the open-file limit, and the warning rate limit.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http_conn.h"
#include "http_parse.h"

static void
test_route(void **state)
{
	(void)state;
	assert_int_equal(http_route("/metrics"), HTTP_ROUTE_METRICS);
	assert_int_equal(http_route("/healthz"), HTTP_ROUTE_HEALTHZ);
	assert_int_equal(http_route("/readyz"), HTTP_ROUTE_READYZ);
	assert_int_equal(http_route("/status"), HTTP_ROUTE_STATUS);
	assert_int_equal(http_route(NULL), HTTP_ROUTE_NOT_FOUND);
	assert_int_equal(http_route(""), HTTP_ROUTE_NOT_FOUND);
	assert_int_equal(http_route("/"), HTTP_ROUTE_NOT_FOUND);
	assert_int_equal(http_route("/status/"), HTTP_ROUTE_NOT_FOUND);
	assert_int_equal(http_route("/STATUS"), HTTP_ROUTE_NOT_FOUND);
	assert_int_equal(http_route("//status"), HTTP_ROUTE_NOT_FOUND);
}

static void
test_query(void **state)
{
	(void)state;
	assert_false(http_query_has(NULL, "html"));
	assert_false(http_query_has("", "html"));
	assert_true(http_query_has("html", "html"));
	assert_true(http_query_has("html=1", "html"));
	assert_true(http_query_has("html&x=1", "html"));
	assert_true(http_query_has("x=1&html", "html"));
	assert_true(http_query_has("x=1&html=&y", "html"));
	assert_false(http_query_has("htmlx", "html"));
	assert_false(http_query_has("x=1&htmlx", "html"));
	assert_false(http_query_has("x=html", "html"));
	assert_false(http_query_has("&&", "html"));
	assert_false(http_query_has("htm", "html"));
}

static int
v4(const char *a)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, a, &sin.sin_addr), 1);
	return http_addr_loopback((struct sockaddr *)&sin, sizeof(sin));
}

static int
v6(const char *a)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, a, &sin6.sin6_addr), 1);
	return http_addr_loopback((struct sockaddr *)&sin6, sizeof(sin6));
}

static void
test_loopback(void **state)
{
	struct sockaddr_in sin;

	(void)state;
	assert_true(v4("127.0.0.1"));
	assert_true(v4("127.255.0.9"));
	assert_false(v4("128.0.0.1"));
	assert_false(v4("10.0.0.1"));
	assert_false(v4("0.0.0.0"));
	assert_false(v4("192.0.2.2"));
	assert_true(v6("::1"));
	assert_true(v6("::ffff:127.0.0.2"));
	assert_false(v6("::ffff:10.0.0.1"));
	assert_false(v6("::"));
	assert_false(v6("::2"));
	assert_false(v6("fd00::1"));
	assert_false(v6("::127.0.0.1"));
	/* Short or foreign addresses are never loopback. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_false(http_addr_loopback((struct sockaddr *)&sin, 4));
	assert_false(http_addr_loopback(NULL, 0));
	sin.sin_family = AF_UNIX;
	assert_false(http_addr_loopback((struct sockaddr *)&sin, sizeof(sin)));
}

static void
test_status_allowed(void **state)
{
	(void)state;
	/* A loopback listener: every peer is local. */
	assert_true(http_status_allowed(1, 0, 0));
	assert_true(http_status_allowed(1, 1, 0));
	/* A wide listener: loopback peers, or the console's password. */
	assert_true(http_status_allowed(0, 1, 0));
	assert_false(http_status_allowed(0, 0, 0));
	assert_true(http_status_allowed(0, 0, 1));
}

static void
test_negotiate_still_here(void **state)
{
	(void)state;
	assert_int_equal(expo_negotiate(NULL), EXPO_TEXT);
	assert_int_equal(expo_negotiate("application/openmetrics-text"),
	    EXPO_OPENMETRICS);
	assert_int_equal(expo_negotiate("application/openmetrics-text;q=nan"),
	    EXPO_TEXT);
}

static void
test_book(void **state)
{
	struct http_conns cs;
	struct http_conn a, b, c;
	int64_t wake;

	(void)state;
	http_conns_init(&cs);
	assert_null(http_conns_victim(&cs, 1000));
	assert_int_equal(http_conns_gate(&cs, 2, 1000, 0, &wake),
	    HTTP_GATE_ACCEPT);

	http_conn_open(&cs, &a, 1000);
	http_conn_open(&cs, &b, 1100);
	assert_int_equal(cs.open, 2);
	assert_int_equal(http_conn_deadline(&a),
	    1000 + HTTP_REQUEST_DEADLINE_MS);
	/* Full, and nobody has waited long enough to give way yet. */
	assert_null(http_conns_victim(&cs, 1000 + HTTP_RECLAIM_MS - 1));
	assert_int_equal(http_conns_gate(&cs, 2, 1000 + HTTP_RECLAIM_MS - 1, 0,
	    &wake), HTTP_GATE_SHUT);
	assert_int_equal(wake, 1000 + HTTP_RECLAIM_MS);
	/* Room under a higher cap. */
	assert_int_equal(http_conns_gate(&cs, 3, 1000, 0, &wake),
	    HTTP_GATE_ACCEPT);
	/* Resting after a failed accept(): shut until the rest ends. */
	assert_int_equal(http_conns_gate(&cs, 3, 1000, 1200, &wake),
	    HTTP_GATE_SHUT);
	assert_int_equal(wake, 1200);
	/* Then the oldest can. */
	assert_ptr_equal(http_conns_victim(&cs, 1000 + HTTP_RECLAIM_MS), &a);
	assert_int_equal(http_conns_gate(&cs, 2, 1000 + HTTP_RECLAIM_MS, 0,
	    &wake), HTTP_GATE_WATCH);

	/* A busy connection never gives way; the next waiting one does. */
	http_conn_busy(&cs, &a, 1200);
	assert_int_equal(http_conn_deadline(&a), 1200 + HTTP_IDLE_DEADLINE_MS);
	assert_ptr_equal(http_conns_victim(&cs, 5000), &b);
	http_conn_close(&cs, &b);
	assert_null(http_conns_victim(&cs, 5000));
	/* All busy at the cap: wait for a change, no timer. */
	http_conn_open(&cs, &c, 5000);
	http_conn_busy(&cs, &c, 5001);
	assert_int_equal(http_conns_gate(&cs, 2, 9000, 0, &wake),
	    HTTP_GATE_SHUT);
	assert_int_equal(wake, -1);

	/* Answered: idle, at the end of the line, with the idle deadline. */
	http_conn_idle(&cs, &a, 6000);
	http_conn_idle(&cs, &c, 6100);
	assert_int_equal(http_conn_deadline(&a), 6000 + HTTP_IDLE_DEADLINE_MS);
	assert_ptr_equal(http_conns_victim(&cs, 7000), &a);
	/* A second request on a, answered again: c is now the oldest. */
	http_conn_busy(&cs, &a, 6200);
	http_conn_idle(&cs, &a, 6300);
	assert_ptr_equal(http_conns_victim(&cs, 7000), &c);
	http_conn_close(&cs, &a);
	http_conn_close(&cs, &c);
	assert_int_equal(cs.open, 0);
	assert_null(http_conns_victim(&cs, 7000));
}

static void
test_cap(void **state)
{
	(void)state;
	assert_int_equal(http_cap_effective(256, 1024), 256);
	assert_int_equal(http_cap_effective(256, 128), 64);
	assert_int_equal(http_cap_effective(256, UINT64_MAX), 256);
	assert_int_equal(http_cap_effective(256, 1), 1);
	assert_int_equal(http_cap_effective(256, 0), 1);
	assert_int_equal(http_cap_effective(0, 1024), 1);
}

static void
test_ratelimit(void **state)
{
	struct http_ratelimit rl = { 0, 0 };
	uint64_t held = 99;

	(void)state;
	assert_true(http_ratelimit_pass(&rl, 1000, 60000, &held));
	assert_int_equal(held, 0);
	assert_false(http_ratelimit_pass(&rl, 1001, 60000, &held));
	assert_false(http_ratelimit_pass(&rl, 60999, 60000, &held));
	assert_true(http_ratelimit_pass(&rl, 61000, 60000, &held));
	assert_int_equal(held, 2);
	assert_false(http_ratelimit_pass(&rl, 61001, 60000, &held));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_status_allowed),
		cmocka_unit_test(test_negotiate_still_here),
		cmocka_unit_test(test_book),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_ratelimit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
