/*
 * Unit tests for reading Redis's answers: which error replies are outages,
 * and the capped reader, fed RESP streams cut at every possible place and
 * a reply far longer than its cap over a socket.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "rconn.h"

static void
test_outage_replies(void **state)
{
	static const char *const outage[] = {
		"LOADING Redis is loading the dataset in memory",
		"BUSY Redis is busy running a script. You can only call "
		    "SCRIPT KILL or SHUTDOWN NOSAVE.",
		"READONLY You can't write against a read only replica.",
		"MASTERDOWN Link with MASTER is down and "
		    "replica-serve-stale-data is set to 'no'.",
		"TRYAGAIN Multiple keys request during rehashing of slot",
		"CLUSTERDOWN The cluster is down",
		"OOM command not allowed when used memory > 'maxmemory'.",
		"OOM command not allowed when used memory > 'maxmemory'. "
		    "script: 66d1, on @user_script:1.",
		"MISCONF Redis is configured to save RDB snapshots",
		"NOREPLICAS Not enough good replicas to write.",
		"ERR max number of clients reached",
		"ERR Connection refused",
		"ERR Operation timed out",
		"LOADING",
	};
	static const char *const data[] = {
		"WRONGTYPE Operation against a key holding the wrong kind of "
		    "value",
		"ERR syntax error",
		"ERR wrong number of arguments for 'hmget' command",
		"BUSYGROUP Consumer Group name already exists",
		"BUSYKEY Target key name already exists.",
		"NOSCRIPT No matching script. Please use EVAL.",
		"NOGROUP No such key 'x' or consumer group 'y'",
		"ERR unknown command 'KEYS'",
		"OOMPH",
		"",
	};
	redisReply r;
	size_t i;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.type = REDIS_REPLY_ERROR;
	for (i = 0; i < sizeof(outage) / sizeof(outage[0]); i++) {
		r.str = (char *)outage[i];
		r.len = strlen(r.str);
		if (!rconn_reply_is_outage(&r))
			fail_msg("not an outage: %s", outage[i]);
	}
	for (i = 0; i < sizeof(data) / sizeof(data[0]); i++) {
		r.str = (char *)data[i];
		r.len = strlen(r.str);
		if (rconn_reply_is_outage(&r))
			fail_msg("an outage: %s", data[i]);
	}
	/* Only error replies are. */
	r.type = REDIS_REPLY_STATUS;
	r.str = "LOADING";
	assert_false(rconn_reply_is_outage(&r));
	assert_false(rconn_reply_is_outage(NULL));
	assert_false(rconn_error_is_outage(NULL));
}

#define LIMIT 8

/* Parse every reply of stream, fed through the cap in chunks of step. */
static size_t
parse(const char *stream, size_t len, size_t step, redisReply **out,
    size_t max)
{
	struct rconn_cap cap;
	redisReader *rd = redisReaderCreate();
	void *r;
	size_t off, k, n = 0;

	assert_non_null(rd);
	rconn_cap_init(&cap, LIMIT);
	for (off = 0; off < len; off += k) {
		k = len - off < step ? len - off : step;
		assert_int_equal(rconn_cap_feed(&cap, rd, stream + off, k), 0);
		for (;;) {
			r = NULL;
			assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
			if (r == NULL)
				break;
			assert_true(n < max);
			out[n++] = r;
		}
	}
	redisReaderFree(rd);
	return n;
}

static void
check_string(const redisReply *r, const char *want)
{
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, strlen(want));
	assert_memory_equal(r->str, want, r->len);
}

static void
test_cap_stream(void **state)
{
	/* An HMGET reply with a short, a missing, a long and an exact field. */
	static const char stream[] =
	    "*5\r\n$3\r\nabc\r\n$-1\r\n$20\r\n0123456789abcdef\r\nXY\r\n"
	    "$8\r\n12345678\r\n$0\r\n\r\n"
	    ":42\r\n+OK\r\n-ERR no\r\n*0\r\n*-1\r\n"
	    "*2\r\n*1\r\n$9\r\nninebytes\r\n$2\r\nhi\r\n"
	    "$3\r\n\r\n\r\r\n";
	redisReply *out[16];
	const redisReply *a, *prefix;
	size_t step, n, i;

	(void)state;
	for (step = 1; step <= sizeof(stream); step++) {
		n = parse(stream, sizeof(stream) - 1, step, out, 16);
		assert_int_equal(n, 8);
		a = out[0];
		assert_int_equal(a->type, REDIS_REPLY_ARRAY);
		assert_int_equal(a->elements, 5);
		check_string(a->element[0], "abc");
		assert_int_equal(a->element[1]->type, REDIS_REPLY_NIL);
		/* Cut: its first LIMIT bytes and its length. */
		assert_int_equal(rconn_cap_cut(a->element[2], &prefix), 20);
		check_string(prefix, "01234567");
		check_string(a->element[3], "12345678");
		assert_int_equal(rconn_cap_cut(a->element[3], NULL), 0);
		check_string(a->element[4], "");
		assert_int_equal(out[1]->type, REDIS_REPLY_INTEGER);
		assert_int_equal(out[1]->integer, 42);
		assert_int_equal(out[2]->type, REDIS_REPLY_STATUS);
		assert_int_equal(out[3]->type, REDIS_REPLY_ERROR);
		assert_string_equal(out[3]->str, "ERR no");
		assert_int_equal(out[4]->type, REDIS_REPLY_ARRAY);
		assert_int_equal(out[4]->elements, 0);
		assert_int_equal(out[5]->type, REDIS_REPLY_NIL);
		/* Nested: the cut is per string, wherever it sits. */
		a = out[6];
		assert_int_equal(a->elements, 2);
		assert_int_equal(rconn_cap_cut(a->element[0]->element[0],
		    &prefix), 9);
		check_string(prefix, "ninebyte");
		check_string(a->element[1], "hi");
		/* CR and LF inside a value are data, not lines. */
		check_string(out[7], "\r\n\r");
		for (i = 0; i < n; i++)
			freeReplyObject(out[i]);
	}
}

static void
test_cap_bad_header(void **state)
{
	static const char stream[] = "$12x\r\nabc\r\n";
	struct rconn_cap cap;
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	(void)state;
	rconn_cap_init(&cap, LIMIT);
	assert_int_equal(rconn_cap_feed(&cap, rd, stream, sizeof(stream) - 1),
	    0);
	/* Passed on as it came: hiredis says what is wrong with it. */
	assert_int_equal(redisReaderGetReply(rd, &r), REDIS_ERR);
	assert_null(r);
	redisReaderFree(rd);
}

/* A server on the other end of fd that answers one command with reply. */
static pid_t
fake_server(int fd, const char *reply, size_t len)
{
	char buf[256];
	pid_t pid = fork();

	assert_true(pid != -1);
	if (pid != 0)
		return pid;
	if (read(fd, buf, sizeof(buf)) <= 0)
		_exit(1);
	while (len > 0) {
		ssize_t k = write(fd, reply, len);

		if (k <= 0)
			_exit(1);
		reply += k;
		len -= (size_t)k;
	}
	_exit(0);
}

static void
test_cap_socket(void **state)
{
	const size_t big = 3 << 20;
	struct rconn_cap cap;
	redisContext *c;
	const redisReply *prefix;
	redisReply *r;
	char *reply;
	size_t n;
	int sv[2], status;
	pid_t pid;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	reply = malloc(big + 64);
	assert_non_null(reply);
	n = (size_t)snprintf(reply, 64, "*2\r\n$%zu\r\n", big);
	memset(reply + n, 'v', big);
	n += big;
	n += (size_t)snprintf(reply + n, 64, "\r\n$2\r\nok\r\n:7\r\n");
	pid = fake_server(sv[1], reply, n);
	close(sv[1]);
	free(reply);

	assert_non_null(c = redisConnectFd(sv[0]));
	rconn_cap_init(&cap, 16);
	assert_int_equal(redisAppendCommand(c, "HMGET user:1 name email"),
	    REDIS_OK);
	assert_int_equal(redisAppendCommand(c, "PING"), REDIS_OK);
	assert_int_equal(rconn_cap_get_reply(&cap, c, (void **)&r), REDIS_OK);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(rconn_cap_cut(r->element[0], &prefix), (long long)big);
	assert_int_equal(prefix->len, 16);
	check_string(r->element[1], "ok");
	freeReplyObject(r);
	/* The next reply is in step. */
	assert_int_equal(rconn_cap_get_reply(&cap, c, (void **)&r), REDIS_OK);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_int_equal(r->integer, 7);
	freeReplyObject(r);
	/* The server has gone: an error, as hiredis reports it. */
	assert_int_equal(rconn_cap_get_reply(&cap, c, (void **)&r), REDIS_ERR);
	assert_int_equal(c->err, REDIS_ERR_EOF);
	redisFree(c);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outage_replies),
		cmocka_unit_test(test_cap_stream),
		cmocka_unit_test(test_cap_bad_header),
		cmocka_unit_test(test_cap_socket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
