/*
 * One line per event, logfmt or JSON, written with a single write(2) so
 * that lines from the supervisor and its workers never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 4096

static int log_level = LOG_LEVEL_INFO;
static int log_format = LOG_FORMAT_LOGFMT;
static int log_fd = STDERR_FILENO;
static char log_role[32] = "digestd";
static char log_pool[64];
static int log_slot = -1;
static char log_job[128];

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_init(const char *role, int level, int format)
{
	log_set_proc(role, NULL, -1);
	log_configure(level, format);
}

void
log_configure(int level, int format)
{
	log_level = level;
	log_format = format;
}

int
log_open_file(const char *path)
{
	int fd;

	if (path == NULL || *path == '\0') {
		if (log_fd != STDERR_FILENO) {
			close(log_fd);
			log_fd = STDERR_FILENO;
		}
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1)
		return -1;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void
log_set_proc(const char *role, const char *pool, int slot)
{
	strlcpy(log_role, role ? role : "digestd", sizeof(log_role));
	strlcpy(log_pool, pool ? pool : "", sizeof(log_pool));
	log_slot = slot;
}

void
log_set_job(const char *job_id)
{
	strlcpy(log_job, job_id ? job_id : "", sizeof(log_job));
}

/* Append s to the line, escaped for a quoted logfmt or JSON string. */
static size_t
put_escaped(char *buf, size_t off, size_t len, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c;

	for (; *s != '\0' && off + 8 < len; s++) {
		c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[off++] = '\\';
			buf[off++] = c;
		} else if (c == '\n') {
			buf[off++] = '\\';
			buf[off++] = 'n';
		} else if (c == '\r') {
			buf[off++] = '\\';
			buf[off++] = 'r';
		} else if (c == '\t') {
			buf[off++] = '\\';
			buf[off++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			buf[off++] = '\\';
			buf[off++] = 'u';
			buf[off++] = '0';
			buf[off++] = '0';
			buf[off++] = hex[c >> 4];
			buf[off++] = hex[c & 15];
		} else
			buf[off++] = c;
	}
	return off;
}

static size_t
put_raw(char *buf, size_t off, size_t len, const char *s)
{
	while (*s != '\0' && off + 1 < len)
		buf[off++] = *s++;
	return off;
}

static int
needs_quotes(const char *s)
{
	if (*s == '\0')
		return 1;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s == '"' || *s == '=' || *s == '\\' ||
		    (unsigned char)*s >= 0x7f)
			return 1;
	return 0;
}

/* Add one field; numbers and plain words unquoted in logfmt. */
static size_t
put_field(char *buf, size_t off, size_t len, const char *key, const char *val,
    int number)
{
	if (log_format == LOG_FORMAT_JSON) {
		off = put_raw(buf, off, len, off > 1 ? ",\"" : "\"");
		off = put_raw(buf, off, len, key);
		off = put_raw(buf, off, len, "\":");
		if (number)
			return put_raw(buf, off, len, val);
		off = put_raw(buf, off, len, "\"");
		off = put_escaped(buf, off, len, val);
		return put_raw(buf, off, len, "\"");
	}
	if (off > 0)
		off = put_raw(buf, off, len, " ");
	off = put_raw(buf, off, len, key);
	off = put_raw(buf, off, len, "=");
	if (!needs_quotes(val))
		return put_raw(buf, off, len, val);
	off = put_raw(buf, off, len, "\"");
	off = put_escaped(buf, off, len, val);
	return put_raw(buf, off, len, "\"");
}

static void
log_emit(int level, const char *msg, va_list *kv)
{
	char line[LOG_LINE_MAX], ts[96], num[32];
	struct timespec now;
	struct tm tm;
	const char *k, *v;
	size_t off = 0;
	int saved = errno;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (long)(now.tv_nsec / 1000000) % 1000);

	if (log_format == LOG_FORMAT_JSON)
		off = put_raw(line, off, sizeof(line), "{");
	off = put_field(line, off, sizeof(line), "ts", ts, 0);
	off = put_field(line, off, sizeof(line), "level", level_names[level], 0);
	off = put_field(line, off, sizeof(line), "role", log_role, 0);
	if (log_pool[0] != '\0')
		off = put_field(line, off, sizeof(line), "pool", log_pool, 0);
	if (log_slot >= 0) {
		snprintf(num, sizeof(num), "%d", log_slot);
		off = put_field(line, off, sizeof(line), "slot", num, 1);
	}
	snprintf(num, sizeof(num), "%d", (int)getpid());
	off = put_field(line, off, sizeof(line), "pid", num, 1);
	if (log_job[0] != '\0')
		off = put_field(line, off, sizeof(line), "job", log_job, 0);
	if (kv != NULL) {
		while ((k = va_arg(*kv, const char *)) != NULL) {
			v = va_arg(*kv, const char *);
			off = put_field(line, off, sizeof(line), k,
			    v ? v : "", 0);
		}
	}
	off = put_field(line, off, sizeof(line), "msg", msg, 0);
	if (log_format == LOG_FORMAT_JSON)
		off = put_raw(line, off, sizeof(line), "}");
	if (off >= sizeof(line) - 1)
		off = sizeof(line) - 2;
	line[off++] = '\n';
	(void)!write(log_fd, line, off);
	errno = saved;
}

static void
vlog(int level, int with_errno, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX / 2];
	int saved = errno;
	size_t n;

	if (level < log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(saved));
	}
	log_emit(level, msg, NULL);
	errno = saved;
}

void
log_kv(int level, const char *msg, ...)
{
	va_list ap;

	if (level < log_level)
		return;
	va_start(ap, msg);
	log_emit(level, msg, &ap);
	va_end(ap);
}

#define LOGFN(name, level, with_errno)			\
void							\
name(const char *fmt, ...)				\
{							\
	va_list ap;					\
							\
	va_start(ap, fmt);				\
	vlog(level, with_errno, fmt, ap);		\
	va_end(ap);					\
}

LOGFN(log_debug, LOG_LEVEL_DEBUG, 0)
LOGFN(log_info, LOG_LEVEL_INFO, 0)
LOGFN(log_warn, LOG_LEVEL_WARN, 1)
LOGFN(log_warnx, LOG_LEVEL_WARN, 0)
LOGFN(log_error, LOG_LEVEL_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, 1, fmt, ap);
	va_end(ap);
	exit(2);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(2);
}
