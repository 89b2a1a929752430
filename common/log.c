/*
 * One line per event, logfmt or JSON, written with a single write(2) so
 * that lines from the supervisor and its workers never interleave.
 *
 * What goes in a line often comes from outside (a reason from Redis, a
 * server's reply), so every value is escaped and made valid UTF-8, and a
 * line too long for the buffer is cut cleanly: a log shipper parsing JSON
 * never gets half an escape, half a character or an unclosed string.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

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
	struct stat st;
	int fd, saved;

	if (path == NULL || *path == '\0') {
		if (log_fd != STDERR_FILENO) {
			close(log_fd);
			log_fd = STDERR_FILENO;
		}
		return 0;
	}
	/*
	 * Root opens this file before dropping privileges, and log_chown
	 * then gives it to the user: a symlink or a hard link planted here
	 * must not make that another file.  O_NOFOLLOW covers the last
	 * component only; the directories above are the operator's.
	 */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0640);
	if (fd == -1)
		return -1;
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
		close(fd);
		errno = EMLINK;
		return -1;
	}
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	return 0;
}

int
log_chown(uid_t uid, gid_t gid)
{
	struct stat st;

	if (log_fd == STDERR_FILENO)
		return 0;
	if (fstat(log_fd, &st) == -1)
		return -1;
	/* A device or a pipe is not ours to give away. */
	if (!S_ISREG(st.st_mode))
		return 0;
	if (st.st_nlink != 1) {
		errno = EMLINK;
		return -1;
	}
	return fchown(log_fd, uid, gid);
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

/*
 * A line being built.  Fields go in whole or not at all, except a string
 * value, which may be cut, but only between two characters or escapes;
 * the last LOG_TAIL bytes are kept for closing the line whatever
 * happened: the quote of a value cut short, the truncated mark, the
 * brace and the newline.  So a line too long is still one valid JSON
 * object (or one logfmt line), in valid UTF-8, with truncated=true.
 */
#define LOG_TAIL 24
#define LOG_LIMIT (LOG_LINE_MAX - LOG_TAIL)
/* A key=value pair given to log_kv keeps room for the message after it. */
#define LOG_VALUE_MAX 1024

struct log_line {
	char buf[LOG_LINE_MAX];
	size_t off;
	int full;		/* no room for another field */
	int cut;		/* something was left out */
};

/* Append s whole if it fits below the limit; else the line is full. */
static int
line_raw(struct log_line *l, const char *s)
{
	size_t n = strlen(s);

	if (l->full || l->off + n > LOG_LIMIT) {
		l->full = l->cut = 1;
		return -1;
	}
	memcpy(l->buf + l->off, s, n);
	l->off += n;
	return 0;
}

/*
 * Append s escaped for a quoted logfmt or JSON string, in at most max
 * bytes, unit by unit: a character, or the escape standing for one.
 * Quotes, backslashes and controls (C0, DEL, C1, U+2028, U+2029) are
 * escaped; each byte that starts no well-formed UTF-8 sequence becomes
 * U+FFFD.
 */
static void
line_escaped(struct log_line *l, const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i, n, len = strlen(s), end;
	char esc[8];
	const char *put;
	size_t putlen;
	uint32_t cp;

	end = l->off + max < LOG_LIMIT ? l->off + max : LOG_LIMIT;
	for (i = 0; i < len; i += n) {
		if ((n = utf8_decode(u + i, len - i, &cp)) == 0) {
			n = 1;
			put = "\xef\xbf\xbd";
			putlen = 3;
		} else if (cp == '"' || cp == '\\') {
			esc[0] = '\\';
			esc[1] = (char)cp;
			put = esc;
			putlen = 2;
		} else if (cp == '\n' || cp == '\r' || cp == '\t') {
			esc[0] = '\\';
			esc[1] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't';
			put = esc;
			putlen = 2;
		} else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
		    cp == 0x2028 || cp == 0x2029) {
			memcpy(esc, "\\u", 2);
			esc[2] = hex[cp >> 12];
			esc[3] = hex[(cp >> 8) & 15];
			esc[4] = hex[(cp >> 4) & 15];
			esc[5] = hex[cp & 15];
			put = esc;
			putlen = 6;
		} else {
			put = s + i;
			putlen = n;
		}
		if (l->off + putlen > end) {
			l->cut = 1;
			if (end == LOG_LIMIT)
				l->full = 1;
			return;
		}
		memcpy(l->buf + l->off, put, putlen);
		l->off += putlen;
	}
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

/*
 * Add one field, its value at most max bytes once escaped; numbers and
 * plain words unquoted in logfmt.
 */
static void
put_field(struct log_line *l, const char *key, const char *val, int number,
    size_t max)
{
	char pre[160];
	int quote;

	if (l->full) {
		l->cut = 1;
		return;
	}
	/* The key, and the number or the opening quote, in one piece. */
	if (log_format == LOG_FORMAT_JSON) {
		quote = !number;
		snprintf(pre, sizeof(pre), "%s\"%s\":%s%s", l->off > 1 ?
		    "," : "", key, number ? val : "", quote ? "\"" : "");
	} else {
		quote = !number && needs_quotes(val);
		snprintf(pre, sizeof(pre), "%s%s=%s%s", l->off > 0 ? " " : "",
		    key, number ? val : "", quote ? "\"" : "");
	}
	if (line_raw(l, pre) == -1 || number)
		return;
	line_escaped(l, val, max);
	/* The tail always has room for this quote. */
	if (quote)
		l->buf[l->off++] = '"';
}

static void
log_emit(int level, const char *msg, int cut, va_list *kv)
{
	struct log_line l;
	char ts[96], num[32];
	struct timespec now;
	struct tm tm;
	const char *k, *v, *mark;
	int saved = errno;

	l.off = 0;
	l.full = 0;
	l.cut = cut;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (long)(now.tv_nsec / 1000000) % 1000);

	if (log_format == LOG_FORMAT_JSON)
		line_raw(&l, "{");
	put_field(&l, "ts", ts, 0, LOG_LINE_MAX);
	put_field(&l, "level", level_names[level], 0, LOG_LINE_MAX);
	put_field(&l, "role", log_role, 0, LOG_LINE_MAX);
	if (log_pool[0] != '\0')
		put_field(&l, "pool", log_pool, 0, LOG_LINE_MAX);
	if (log_slot >= 0) {
		snprintf(num, sizeof(num), "%d", log_slot);
		put_field(&l, "slot", num, 1, LOG_LINE_MAX);
	}
	snprintf(num, sizeof(num), "%d", (int)getpid());
	put_field(&l, "pid", num, 1, LOG_LINE_MAX);
	if (log_job[0] != '\0')
		put_field(&l, "job", log_job, 0, LOG_LINE_MAX);
	if (kv != NULL) {
		while ((k = va_arg(*kv, const char *)) != NULL) {
			v = va_arg(*kv, const char *);
			put_field(&l, k, v ? v : "", 0, LOG_VALUE_MAX);
		}
	}
	put_field(&l, "msg", msg, 0, LOG_LINE_MAX);
	/* Below LOG_LIMIT plus one quote: the tail holds what follows. */
	if (l.cut) {
		mark = log_format == LOG_FORMAT_JSON ? ",\"truncated\":true" :
		    " truncated=true";
		memcpy(l.buf + l.off, mark, strlen(mark));
		l.off += strlen(mark);
	}
	if (log_format == LOG_FORMAT_JSON)
		l.buf[l.off++] = '}';
	l.buf[l.off++] = '\n';
	(void)!write(log_fd, l.buf, l.off);
	errno = saved;
}

static void
vlog(int level, int with_errno, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX / 2];
	int saved = errno, cut, r;
	size_t n;

	if (level < log_level)
		return;
	r = vsnprintf(msg, sizeof(msg), fmt, ap);
	cut = r < 0 || (size_t)r >= sizeof(msg);
	n = strlen(msg);
	if (with_errno) {
		r = snprintf(msg + n, sizeof(msg) - n, ": %s",
		    strerror(saved));
		cut |= r < 0 || (size_t)r >= sizeof(msg) - n;
		n = strlen(msg);
	}
	/* A character vsnprintf cut in half is dropped, not replaced. */
	if (cut)
		msg[utf8_whole(msg, n)] = '\0';
	log_emit(level, msg, cut, NULL);
	errno = saved;
}

void
log_kv(int level, const char *msg, ...)
{
	va_list ap;

	if (level < log_level)
		return;
	va_start(ap, msg);
	log_emit(level, msg, 0, &ap);
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
