/*
 * Unit tests for common/log.c: every JSON line, whatever it carries
 * (invalid UTF-8, quotes, control characters, a message far longer than
 * a line), is one valid JSON object in valid UTF-8, cut on a character
 * and escape boundary when too long; a logfmt line cut short still
 * closes its quote.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "log.h"

#define LINE_MAX_BYTES 4096	/* log.c's line, newline included */

static char dir[] = "/tmp/test_log.XXXXXX";
static char path[64];

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/d.log", dir);
	log_init("worker", LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	log_open_file(NULL);
	unlink(path);
	rmdir(dir);
	return 0;
}

/* Start a fresh log file in format fmt. */
static void
log_fresh(int fmt)
{
	unlink(path);
	assert_int_equal(log_open_file(path), 0);
	log_configure(LOG_LEVEL_DEBUG, fmt);
}

/* The file's contents, malloc'd and NUL-terminated. */
static char *
slurp(size_t *lenp)
{
	struct stat st;
	char *buf;
	FILE *fp;
	size_t n;

	assert_non_null(fp = fopen(path, "rb"));
	assert_int_equal(fstat(fileno(fp), &st), 0);
	assert_non_null(buf = malloc((size_t)st.st_size + 1));
	n = fread(buf, 1, (size_t)st.st_size, fp);
	assert_int_equal(n, (size_t)st.st_size);
	buf[n] = '\0';
	fclose(fp);
	*lenp = n;
	return buf;
}

/*
 * Every line of the file as a JSON object, each line at most a log
 * line's size; returns their count and the objects in out (decref'd by
 * the caller).
 */
static size_t
json_lines(json_t **out, size_t max)
{
	json_error_t jerr;
	char *buf, *p, *nl;
	size_t len, n = 0;

	buf = slurp(&len);
	for (p = buf; p < buf + len; p = nl + 1) {
		assert_non_null(nl = memchr(p, '\n', (size_t)(buf + len - p)));
		if ((size_t)(nl - p) + 1 > LINE_MAX_BYTES)
			fail_msg("line of %zu bytes", (size_t)(nl - p) + 1);
		/* jansson refuses invalid UTF-8 and any control character. */
		out[n] = json_loadb(p, (size_t)(nl - p), 0, &jerr);
		if (out[n] == NULL)
			fail_msg("line %zu not JSON: %s at %d: %.*s", n + 1,
			    jerr.text, jerr.position, (int)(nl - p), p);
		assert_true(json_is_object(out[n]));
		assert_true(json_is_string(json_object_get(out[n], "msg")));
		assert_true(json_is_string(json_object_get(out[n], "level")));
		assert_true(++n <= max);
	}
	free(buf);
	return n;
}

static const char *
jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

static void
test_json_hostile_strings(void **state)
{
	static const char ctl[] = "\x01\x02\x07\x08\x0b\x0c\x0e\x1b[31m"
	    "\x1f\x7f" "C1:\xc2\x80\xc2\x9b" "ls:\xe2\x80\xa8"
	    "ps:\xe2\x80\xa9";
	json_t *o[16];
	size_t n, i;

	(void)state;
	log_fresh(LOG_FORMAT_JSON);
	log_set_job("daily.1.2.0");
	log_info("quote \" backslash \\ tab \t newline \n cr \r end");
	log_info("bad utf-8: \xff\xfe|\xc3|\xed\xa0\x80|\xc0\xaf|"
	    "\xf4\x90\x80\x80|\xe2\x82|ok \xc3\xa9 \xf0\x9f\x98\x80");
	log_info("controls: %s", ctl);
	log_kv(LOG_LEVEL_WARN, "kv", "reason", "a\"b\\c\x1b]0;x\x07\xff",
	    "host", "\xc3", NULL);
	log_set_job(NULL);
	n = json_lines(o, 16);
	assert_int_equal(n, 4);

	assert_string_equal(jstr(o[0], "msg"),
	    "quote \" backslash \\ tab \t newline \n cr \r end");
	assert_string_equal(jstr(o[0], "job"), "daily.1.2.0");
	/* Each byte that starts no character is U+FFFD; good ones stay. */
	assert_string_equal(jstr(o[1], "msg"), "bad utf-8: "
	    "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd|"
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
	    "\xef\xbf\xbd\xef\xbf\xbd|ok \xc3\xa9 \xf0\x9f\x98\x80");
	/* Controls come back as themselves: escaped, never raw. */
	assert_string_equal(jstr(o[2], "msg") + strlen("controls: "), ctl);
	assert_string_equal(jstr(o[3], "reason"),
	    "a\"b\\c\x1b]0;x\x07\xef\xbf\xbd");
	assert_string_equal(jstr(o[3], "host"), "\xef\xbf\xbd");
	assert_string_equal(jstr(o[3], "level"), "warn");
	for (i = 0; i < n; i++)
		json_decref(o[i]);
	{
		/* ... and the file holds no raw control byte but newlines. */
		char *buf = slurp(&n);

		for (i = 0; i < n; i++)
			if (buf[i] != '\n' && ((unsigned char)buf[i] < 0x20 ||
			    buf[i] == 0x7f))
				fail_msg("raw control 0x%02x at %zu",
				    (unsigned char)buf[i], i);
		assert_null(strstr(buf, "\xc2\x9b"));
		free(buf);
	}
}

/*
 * Messages of 100 KB made of one kind of unit each (plain, two-byte and
 * four-byte characters, quotes, controls, bad bytes), and at every offset
 * of the cut: each line stays one valid JSON object, marked as cut.
 */
static void
test_json_truncated(void **state)
{
	static const char *units[] = { "a", "\xc3\xa9", "\xe6\x97\xa5",
	    "\xf0\x9f\x98\x80", "\"", "\\", "\x01", "\xff", "\xc2\x9b",
	    "\xe2\x80\xa8", "ab\"\xc3\xa9\x1b" };
	enum { BIG = 100 * 1024 };
	json_t *o[64];
	char *big;
	size_t u, i, ul, n, shift;

	(void)state;
	assert_non_null(big = malloc(BIG + 1));
	for (u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		ul = strlen(units[u]);
		/* Shifted by a prefix, so the cut falls at every offset. */
		for (shift = 0; shift < 6; shift++) {
			log_fresh(LOG_FORMAT_JSON);
			memset(big, 'p', shift);
			for (i = shift; i + ul <= BIG; i += ul)
				memcpy(big + i, units[u], ul);
			big[i] = '\0';
			log_kv(LOG_LEVEL_INFO, big, NULL);
			log_kv(LOG_LEVEL_INFO, "short", "reason", big, NULL);
			log_info("%s", big);
			n = json_lines(o, 64);
			assert_int_equal(n, 3);
			for (i = 0; i < n; i++) {
				assert_true(json_is_true(json_object_get(o[i],
				    "truncated")));
				json_decref(o[i]);
			}
		}
	}
	/* A line that fits is not marked. */
	log_fresh(LOG_FORMAT_JSON);
	log_info("fits");
	assert_int_equal(json_lines(o, 64), 1);
	assert_null(json_object_get(o[0], "truncated"));
	assert_string_equal(jstr(o[0], "msg"), "fits");
	json_decref(o[0]);
	free(big);
}

/* A logfmt line cut short still ends its quoted value and the line. */
static void
test_logfmt_truncated(void **state)
{
	char *big, *buf;
	size_t len;

	(void)state;
	assert_non_null(big = malloc(100 * 1024 + 1));
	memset(big, '"', 100 * 1024);
	big[100 * 1024] = '\0';
	log_fresh(LOG_FORMAT_LOGFMT);
	log_info("%s", big);
	buf = slurp(&len);
	assert_true(len <= LINE_MAX_BYTES);
	assert_true(len > 2 && buf[len - 1] == '\n');
	assert_non_null(strstr(buf, " truncated=true\n"));
	assert_non_null(strstr(buf, "\\\"\" truncated=true\n"));
	free(buf);
	free(big);
}

/*
 * log_file is opened as root before privileges are dropped: a symlink
 * planted there must not make root open (and then hand over) another
 * file.  The open fails; the file the link points at is left alone.
 */
static void
test_open_refuses_symlink(void **state)
{
	char victim[80], link[80], buf[16];
	struct stat st;
	int fd;

	(void)state;
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(link, sizeof(link), "%s/link.log", dir);
	assert_true((fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >=
	    0);
	assert_int_equal(write(fd, "secret", 6), 6);
	close(fd);
	assert_int_equal(symlink(victim, link), 0);

	log_open_file(NULL);
	errno = 0;
	assert_int_equal(log_open_file(link), -1);
	assert_int_equal(errno, ELOOP);
	log_info("must not reach the victim");
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_size, 6);
	assert_true((fd = open(victim, O_RDONLY)) >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 6);
	close(fd);
	/* A link in the directories above is the operator's business. */
	unlink(link);
	unlink(victim);
}

/*
 * The log file changes owner through its descriptor, never by name; a
 * file with another name (a hard link planted there) or not a regular
 * file is left as it is.
 */
static void
test_chown_descriptor(void **state)
{
	char other[80], moved[80];
	struct stat st;

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(other, sizeof(other), "%s/other", dir);
	snprintf(moved, sizeof(moved), "%s/moved.log", dir);
	log_fresh(LOG_FORMAT_LOGFMT);
	log_info("opened as root");
	/* What the name points at by now does not matter: the fd does. */
	assert_int_equal(rename(path, moved), 0);
	assert_true(open(path, O_WRONLY | O_CREAT, 0600) >= 0);
	assert_int_equal(log_chown(65534, 65534), 0);
	assert_int_equal(stat(moved, &st), 0);
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 65534);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 0);
	unlink(moved);

	/* A file with a second name is refused, at open and at chown. */
	log_fresh(LOG_FORMAT_LOGFMT);
	assert_int_equal(link(path, other), 0);
	errno = 0;
	assert_int_equal(log_chown(65534, 65534), -1);
	assert_int_equal(errno, EMLINK);
	assert_int_equal(stat(other, &st), 0);
	assert_int_equal(st.st_uid, 0);
	log_open_file(NULL);
	errno = 0;
	assert_int_equal(log_open_file(other), -1);
	assert_int_equal(errno, EMLINK);
	unlink(other);

	/* Standard error, or a device, is nobody's to give. */
	assert_int_equal(log_chown(65534, 65534), 0);
	assert_int_equal(log_open_file("/dev/null"), 0);
	assert_int_equal(log_chown(65534, 65534), 0);
	assert_int_equal(stat("/dev/null", &st), 0);
	assert_int_equal(st.st_uid, 0);
	log_open_file(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_hostile_strings),
		cmocka_unit_test(test_json_truncated),
		cmocka_unit_test(test_logfmt_truncated),
		cmocka_unit_test(test_open_refuses_symlink),
		cmocka_unit_test(test_chown_descriptor),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
