/*
 * Small helpers used by every process: allocation that never returns NULL,
 * clocks, and number parsing.
 */
#ifndef DIGESTD_UTIL_H
#define DIGESTD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>

/*
 * Exit status of a worker whose allocation failed under its memory limit;
 * the supervisor counts it as an `oom` restart.
 */
#define EXIT_WORKER_OOM 86

/* Allocators that call fatal on failure: for start-up and the supervisor. */
void *xcalloc(size_t, size_t);
void *xrealloc(void *, size_t);

/*
 * Allocators for the worker's job path: on failure they exit with
 * EXIT_WORKER_OOM, so the supervisor can tell an OOM from a crash.
 */
void *wmalloc(size_t);
void *wcalloc(size_t, size_t);
void *wrealloc(void *, size_t);
char *wstrdup(const char *);
/* Called where a library reports it ran out of memory. */
void worker_oom(void) __attribute__((noreturn));

/*
 * Fill tv with ms milliseconds (a negative ms counts as 0) and return it,
 * for evtimer_add, socket and library timeouts.
 */
static inline struct timeval *
tv_ms(struct timeval *tv, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
	return tv;
}

/* CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds. */
int64_t now_mono_ns(void);
int64_t now_real_ns(void);
/* CLOCK_REALTIME as fractional seconds. */
double now_real(void);

/*
 * v in decimal into buf (at least FMT_I64_MAX bytes), NUL-terminated;
 * returns its length.  What snprintf's "%lld" writes, without its cost.
 */
#define FMT_I64_MAX 21
size_t fmt_i64(char *buf, int64_t v);

/* Parse a whole decimal integer within [min, max]; 0 or -1. */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Parse a whole finite double; 0 or -1. */
int parse_double(const char *s, double *out);

/*
 * t, seconds since the epoch as read from outside (Redis, a broker), as
 * "YYYY-MM-DDTHH:MM:SSZ" in buf; "-" when t is no time from 1970 to 9999
 * (negative, huge, infinite, NaN), so no out-of-range conversion happens.
 */
void unix_time_iso(double t, char *buf, size_t len);

/* Resident set size of pid (0: self) in bytes, from /proc; 0 on error. */
uint64_t proc_rss_bytes(pid_t pid);

/*
 * Length of the well-formed UTF-8 sequence at s (at most n bytes), with
 * its code point in *cp, or 0 when s[0] starts none (RFC 3629: no
 * overlongs, no surrogates, nothing past U+10FFFF).
 */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/*
 * The length of s[0..len) without a multi-byte sequence cut short at its
 * end (as snprintf leaves one): where to cut so no half character stays.
 */
size_t utf8_whole(const char *s, size_t len);

/*
 * Read the whole of path, which must be a regular file of at most max_size
 * bytes, into a malloc'd buffer with a NUL after its last byte: *buf
 * (free it; wipe it first with explicit_bzero if it may hold a secret)
 * and *len, not counting the NUL.  The file is opened O_NONBLOCK and
 * checked on the open descriptor (fstat), so a FIFO or a device named by
 * mistake or on purpose is refused at once instead of blocking the
 * process (a reload, -t), and a rename in between cannot slip another
 * file in.  Symlinks are followed.  Returns 0, or -1 with *buf NULL and
 * "path: reason" in err; nothing read is left in memory on failure.
 */
int read_regular_file(const char *path, size_t max_size, char **buf,
    size_t *len, char *err, size_t errlen);

/*
 * Copy src to dst (dstlen bytes, NUL-terminated when dstlen > 0) with
 * everything a terminal would act on made visible: C0 controls (newline
 * and tab included), DEL and bytes that are not UTF-8 as \xHH (ESC is
 * \x1b), C1 controls and the bidi controls as \uHHHH; other characters
 * are kept, backslashes too.  For text from outside (Redis, a broker) on
 * its way to a terminal.  The output is cut between two characters or
 * escapes; returns the length the whole of it needs, as snprintf does.
 */
size_t str_vis(char *dst, size_t dstlen, const char *src);

/* Set close-on-exec / non-blocking; 0 or -1. */
int fd_cloexec(int fd);
int fd_nonblock(int fd);

#endif
