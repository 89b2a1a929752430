/*
 * Logging in the manner of OpenSMTPD's log.c: one line per event, logfmt
 * or JSON, on stderr or the configured file, with the process's role, pool,
 * slot and pid, and the job in hand when there is one.
 *
 * Messages must never carry a secret (passwords, the HMAC key): callers
 * print configuration values only through config keys known to be public.
 */
#ifndef DIGESTD_LOG_H
#define DIGESTD_LOG_H

#include <sys/types.h>

#include <stdarg.h>

#include "config.h"

/* Set up logging before anything else; role is "supervisor", "worker"... */
void log_init(const char *role, int level, int format);
/* Change level and format (after the config is read, on reload). */
void log_configure(int level, int format);
/*
 * Send lines to path (append, created 0640), or stderr when path is NULL or
 * empty.  Returns 0, or -1 with errno set and the old destination kept;
 * a symlink (ELOOP) or a regular file with more than one name (EMLINK)
 * is refused.  Calling it again with the same path reopens the file
 * (SIGUSR1).
 */
int log_open_file(const char *path);
/*
 * Give the open log file to uid:gid, through its descriptor: a regular
 * file with one name only; stderr, a device or a pipe is left alone.
 * 0, or -1 with errno.
 */
int log_chown(uid_t uid, gid_t gid);
/* The process's context, printed with every line; pool NULL, slot -1 for none. */
void log_set_proc(const char *role, const char *pool, int slot);
/* The job in hand, printed as job=...; NULL when idle. */
void log_set_job(const char *job_id);

void log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends strerror(errno); log_warnx does not. */
void log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
/* Log at error level and exit(2); fatal appends strerror(errno). */
void fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Write one line with extra key=value pairs (NULL-terminated list of pairs). */
void log_kv(int level, const char *msg, ...);

#endif
