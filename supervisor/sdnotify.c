/*
 * The systemd notify protocol (sd_notify(3)) in a few lines, so that the
 * supervisor needs no libsystemd: READY, RELOADING, STOPPING, WATCHDOG and
 * MAINPID are single datagrams on a unix socket.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sdnotify.h"
#include "util.h"

int
sdnotify(const char *msg)
{
	struct sockaddr_un sun;
	const char *path;
	socklen_t len;
	size_t n;
	int fd, rc;

	if ((path = getenv("NOTIFY_SOCKET")) == NULL || *path == '\0')
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sun.sun_path)) {
		log_debug("NOTIFY_SOCKET: not a unix socket path");
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, n);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';	/* abstract namespace */
	len = offsetof(struct sockaddr_un, sun_path) + n;
	if (path[0] == '/')
		len++;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		log_debug("NOTIFY_SOCKET: socket: %s", strerror(errno));
		return -1;
	}
	/*
	 * Non-blocking: if systemd's queue is full we lose one notice
	 * rather than block the event loop.
	 */
	rc = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
	    len) == -1 ? -1 : 0;
	if (rc == -1)
		log_debug("NOTIFY_SOCKET: sendto: %s", strerror(errno));
	close(fd);
	return rc;
}

int
sdnotifyf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return sdnotify(buf);
}

uint64_t
sdnotify_watchdog_usec(void)
{
	const char *s;
	int64_t usec, pid;

	if ((s = getenv("WATCHDOG_USEC")) == NULL ||
	    parse_i64(s, 1, INT64_MAX, &usec) == -1)
		return 0;
	if ((s = getenv("WATCHDOG_PID")) != NULL && *s != '\0' &&
	    (parse_i64(s, 1, INT32_MAX, &pid) == -1 || pid != getpid()))
		return 0;
	return (uint64_t)usec;
}
