/*
 * Unit tests for common/util.c's helpers for input from outside: reading
 * a whole regular file without ever blocking on a FIFO or a device,
 * printing a time from outside without an out-of-range conversion, and
 * making text from outside safe for a terminal.
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

static void
vis_is(const char *in, const char *want)
{
	char buf[256];

	assert_int_equal(str_vis(buf, sizeof(buf), in), strlen(want));
	assert_string_equal(buf, want);
}

/* What a terminal acts on comes out visible; the rest as it was. */
static void
test_str_vis(void **state)
{
	char buf[16];
	size_t i;

	(void)state;
	vis_is("", "");
	vis_is("plain text, caf\xc3\xa9, \xe6\x97\xa5, \xf0\x9f\x98\x80 \\ \"",
	    "plain text, caf\xc3\xa9, \xe6\x97\xa5, \xf0\x9f\x98\x80 \\ \"");
	vis_is("\x1b]0;title\x07\x1b[2J\x1b[31mred",
	    "\\x1b]0;title\\x07\\x1b[2J\\x1b[31mred");
	vis_is("a\rb\nc\td\x08\x7f", "a\\x0db\\x0ac\\x09d\\x08\\x7f");
	/* C1 as a raw byte (8-bit terminals) and as UTF-8. */
	vis_is("\x9b" "31m\xc2\x9b" "31m\xc2\x85", "\\x9b31m\\u009b31m\\u0085");
	/* Not UTF-8: stray, cut, overlong, surrogate. */
	vis_is("\xff\xc3\xe2\x82\xc0\xaf\xed\xa0\x80",
	    "\\xff\\xc3\\xe2\\x82\\xc0\\xaf\\xed\\xa0\\x80");
	/* The bidi controls, which reorder what follows on the line. */
	vis_is("a\xe2\x80\xae" "b\xe2\x81\xa6" "c\xe2\x80\x8f" "d\xd8\x9c" "e",
	    "a\\u202eb\\u2066c\\u200fd\\u061ce");
	/* Cut between escapes or characters, with the size it needs. */
	assert_int_equal(str_vis(buf, 6, "ab\x1b" "c"), 7);
	assert_string_equal(buf, "ab");
	assert_int_equal(str_vis(buf, 7, "ab\x1b" "c"), 7);
	assert_string_equal(buf, "ab\\x1b");
	assert_int_equal(str_vis(buf, 8, "ab\x1b" "c"), 7);
	assert_string_equal(buf, "ab\\x1bc");
	assert_int_equal(str_vis(buf, 3, "a\xc3\xa9"), 3);
	assert_string_equal(buf, "a");
	assert_int_equal(str_vis(NULL, 0, "\x1b"), 4);
	/* Every byte value, alone: never a control in the output. */
	for (i = 1; i < 256; i++) {
		char in[2] = { (char)i, '\0' };
		const unsigned char *p = (const unsigned char *)buf;

		str_vis(buf, sizeof(buf), in);
		for (; *p != '\0'; p++)
			assert_true(*p >= 0x20 && *p < 0x7f);
		if (i >= 0x20 && i < 0x7f)
			assert_int_equal(buf[0], (char)i);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_regular),
		cmocka_unit_test(test_read_not_regular),
		cmocka_unit_test(test_unix_time_iso),
		cmocka_unit_test(test_str_vis),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
