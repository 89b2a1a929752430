/*
 * Unit tests for common/util.c's helpers for input from outside: reading
 * a whole regular file without ever blocking on a FIFO or a device, and
 * printing a time from outside without an out-of-range conversion.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "util.h"

static char dir[] = "/tmp/test_util.XXXXXX";

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	return rmdir(dir);
}

static void
put_file(const char *path, const char *text, size_t len)
{
	FILE *fp;

	assert_non_null(fp = fopen(path, "w"));
	assert_int_equal(fwrite(text, 1, len, fp), len);
	fclose(fp);
}

static void
test_read_regular(void **state)
{
	char path[80], link[80], err[256], *buf;
	size_t len;

	(void)state;
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(link, sizeof(link), "%s/l", dir);
	put_file(path, "a=1\n\0b", 6);
	assert_int_equal(read_regular_file(path, 6, &buf, &len, err,
	    sizeof(err)), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(buf, "a=1\n\0b", 7);	/* and a NUL after */
	free(buf);

	/* One byte over the limit. */
	buf = (char *)1;
	assert_int_equal(read_regular_file(path, 5, &buf, &len, err,
	    sizeof(err)), -1);
	assert_null(buf);
	assert_non_null(strstr(err, "/f: larger than 5 bytes"));

	/* A symlink to a regular file is followed (configs often are). */
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(read_regular_file(link, 100, &buf, &len, err,
	    sizeof(err)), 0);
	assert_int_equal(len, 6);
	free(buf);
	unlink(link);

	/* An empty file. */
	put_file(path, "", 0);
	assert_int_equal(read_regular_file(path, 100, &buf, &len, err,
	    sizeof(err)), 0);
	assert_int_equal(len, 0);
	assert_string_equal(buf, "");
	free(buf);
	unlink(path);

	assert_int_equal(read_regular_file(path, 100, &buf, &len, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "/f: No such file or directory"));
	assert_int_equal(read_regular_file(dir, 100, &buf, &len, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, ": not a regular file"));
}

/*
 * A FIFO, with or without a writer, and a device that never ends are
 * refused at once.  A SIGALRM ends the test if anything blocks.
 */
static void
test_read_not_regular(void **state)
{
	char path[80], err[256], *buf;
	size_t len;
	int wfd, rfd;

	(void)state;
	signal(SIGALRM, SIG_DFL);
	alarm(10);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(read_regular_file(path, 100, &buf, &len, err,
	    sizeof(err)), -1);
	assert_null(buf);
	assert_non_null(strstr(err, "/fifo: not a regular file"));
	/* With a writer that never writes nor closes. */
	assert_true((rfd = open(path, O_RDONLY | O_NONBLOCK)) >= 0);
	assert_true((wfd = open(path, O_WRONLY)) >= 0);
	assert_int_equal(read_regular_file(path, 100, &buf, &len, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "/fifo: not a regular file"));
	close(wfd);
	close(rfd);
	unlink(path);
	assert_int_equal(read_regular_file("/dev/zero", 100, &buf, &len, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "/dev/zero: not a regular file");
	alarm(0);
}

/* Times from outside: anything out of range prints as "-", never UB. */
static void
test_unix_time_iso(void **state)
{
	static const double bad[] = { 1e300, -1e300, INFINITY, -INFINITY,
	    NAN, -1, -0.5, 253402300800.0, 9.3e18, 9223372036854775808.0,
	    1.7976931348623157e308 };
	char buf[32];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unix_time_iso(bad[i], buf, sizeof(buf));
		assert_string_equal(buf, "-");
	}
	unix_time_iso(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	unix_time_iso(1764374400.999, buf, sizeof(buf));
	assert_string_equal(buf, "2025-11-29T00:00:00Z");
	unix_time_iso(253402300799.0, buf, sizeof(buf));
	assert_string_equal(buf, "9999-12-31T23:59:59Z");
	/* Too small a buffer: "-", not a cut date. */
	unix_time_iso(0, buf, 8);
	assert_string_equal(buf, "-");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_regular),
		cmocka_unit_test(test_read_not_regular),
		cmocka_unit_test(test_unix_time_iso),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
