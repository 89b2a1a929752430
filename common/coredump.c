/*
 * Keeping secrets out of core files.  Whatever holds a loaded config holds
 * the Redis and SMTP passwords and the unsubscribe key in memory, and a
 * core file, a crash reporter behind a core_pattern pipe, or a debugger
 * attached by another process of the same user would carry them off.
 *
 * Two switches, because each misses a case the other covers: RLIMIT_CORE 0
 * stops a core file being written (and tells systemd-coredump to keep only
 * the metadata), and PR_SET_DUMPABLE 0 stops cores piped to a handler that
 * ignores the limit, and ptrace and /proc/PID/mem by the same user.  Both
 * are inherited across fork, so setting them in the supervisor before it
 * reads the file covers every worker, the sampler and the requeue
 * children.  The hard limit is left alone so that core_dumps = yes can put
 * the soft limit back without privileges.
 */
#include <sys/prctl.h>
#include <sys/resource.h>

#include "coredump.h"

static struct rlimit coredump_saved;	/* as found at the first call */
static int coredump_have_saved;

static int
coredump_save(void)
{
	if (coredump_have_saved)
		return 0;
	if (getrlimit(RLIMIT_CORE, &coredump_saved) == -1)
		return -1;
	coredump_have_saved = 1;
	return 0;
}

int
coredump_disable(void)
{
	struct rlimit rl;

	if (coredump_save() == -1)
		return -1;
	if (getrlimit(RLIMIT_CORE, &rl) == -1)
		return -1;
	rl.rlim_cur = 0;
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		return -1;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		return -1;
	return 0;
}

int
coredump_apply(int allow)
{
	struct rlimit rl;

	if (!allow)
		return coredump_disable();
	if (coredump_save() == -1 || getrlimit(RLIMIT_CORE, &rl) == -1)
		return -1;
	rl.rlim_cur = coredump_saved.rlim_cur;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		return -1;
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == -1)
		return -1;
	return 0;
}
