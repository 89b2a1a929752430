/*
 * The warnings of `digestd -t` (also logged at start and on reload): a
 * file can be valid and still set up something that cannot work.  A job
 * routed to a queue that no pool consumes waits forever; a pool on a queue
 * that nothing fills idles forever (only `digestctl enqueue --queue`
 * reaches it); a maildir that cannot be written fails every email.  None
 * of these stops digestd: each may be meant (a queue served by another
 * instance, a directory made by the deploy after the check), so they are
 * warnings, and the check still exits 0.  See docs/design.md#config-check.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static const char *const check_scheduled[] = {
	CONFIG_QUEUE_PRIORITY, CONFIG_QUEUE_STANDARD,
};
#define NSCHEDULED (sizeof(check_scheduled) / sizeof(check_scheduled[0]))

static int
check_scheduled_queue(const char *queue)
{
	size_t i;

	for (i = 0; i < NSCHEDULED; i++)
		if (strcmp(check_scheduled[i], queue) == 0)
			return 1;
	return 0;
}

/*
 * Whether this process could write maildir.path: its tmp/ and new/ when
 * they exist, else the directory itself, else (it is created when
 * missing) the nearest directory above it that exists.  0, or -1 with the
 * reason in why.
 */
static int
check_maildir(const char *path, char *why, size_t whylen)
{
	static const char *const subs[] = { "", "/tmp", "/new" };
	char p[PATH_MAX], *slash;
	struct stat st;
	size_t i;

	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if ((size_t)snprintf(p, sizeof(p), "%s%s", path, subs[i]) >=
		    sizeof(p)) {
			snprintf(why, whylen, "path too long");
			return -1;
		}
		if (stat(p, &st) == -1) {
			if (errno == ENOENT && i > 0)
				continue;
			if (errno == ENOENT)
				break;
			snprintf(why, whylen, "%s: %s", p, strerror(errno));
			return -1;
		}
		if (!S_ISDIR(st.st_mode)) {
			snprintf(why, whylen, "%s: not a directory", p);
			return -1;
		}
		if (access(p, W_OK | X_OK) == -1) {
			snprintf(why, whylen, "%s: %s", p, strerror(errno));
			return -1;
		}
	}
	if (i == sizeof(subs) / sizeof(subs[0]))
		return 0;

	/* Missing: the first directory above that exists must take it. */
	strlcpy(p, path, sizeof(p));
	for (;;) {
		if ((slash = strrchr(p, '/')) == NULL)
			return 0;
		if (slash == p)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(p, &st) == 0)
			break;
		if (errno != ENOENT) {
			snprintf(why, whylen, "%s: %s", p, strerror(errno));
			return -1;
		}
		if (slash == p)
			return 0;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "%s: not a directory", p);
		return -1;
	}
	if (access(p, W_OK | X_OK) == -1) {
		snprintf(why, whylen, "cannot be created in %s: %s", p,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
check_config(const struct config *cfg,
    void (*warn)(void *, const char *), void *arg)
{
	char msg[2 * PATH_MAX + 512], why[PATH_MAX + 128];
	size_t i;
	int n = 0, p, found;

	for (i = 0; i < NSCHEDULED; i++) {
		for (p = 0, found = 0; p < cfg->npools && !found; p++)
			found = strcmp(cfg->pools[p].queue,
			    check_scheduled[i]) == 0;
		if (found)
			continue;
		snprintf(msg, sizeof(msg), "queue %s: no pool consumes it, so "
		    "the jobs `digestctl schedule` routes there wait for an "
		    "instance that has one (add [pool.%s])",
		    check_scheduled[i], check_scheduled[i]);
		warn(arg, msg);
		n++;
	}
	for (p = 0; p < cfg->npools; p++) {
		if (check_scheduled_queue(cfg->pools[p].queue))
			continue;
		snprintf(msg, sizeof(msg), "[pool.%s] queue = %s: nothing fills "
		    "this queue but `digestctl enqueue --queue %s`; the "
		    "scheduler fills %s and %s", cfg->pools[p].name,
		    cfg->pools[p].queue, cfg->pools[p].queue,
		    CONFIG_QUEUE_PRIORITY, CONFIG_QUEUE_STANDARD);
		warn(arg, msg);
		n++;
	}
	if (cfg->transport.type == TRANSPORT_MAILDIR &&
	    check_maildir(cfg->maildir.path, why, sizeof(why)) == -1) {
		snprintf(msg, sizeof(msg), "[maildir] path %s cannot be written "
		    "(%s): every email would fail", cfg->maildir.path, why);
		warn(arg, msg);
		n++;
	}
	return n;
}
