/*
 * systemd's notify protocol without libsystemd: one datagram to the
 * socket named by $NOTIFY_SOCKET (a path, or an abstract name after '@').
 * Every call is a no-op when the variable is unset.
 */
#ifndef DIGESTD_SDNOTIFY_H
#define DIGESTD_SDNOTIFY_H

#include <stdint.h>

/* Send msg ("READY=1", "STOPPING=1"...); 0, or -1 (logged at debug). */
int sdnotify(const char *msg);
/* Send "STATUS=...\nMAINPID=..." style text built with printf. */
int sdnotifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * The watchdog interval in microseconds from $WATCHDOG_USEC when it is
 * meant for this process ($WATCHDOG_PID unset or ours), else 0.
 */
uint64_t sdnotify_watchdog_usec(void);

#endif
