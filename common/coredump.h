/*
 * Core dumps of the processes that hold the configuration (coredump.c):
 * none by default, since a core carries every secret the config holds.
 */
#ifndef DIGESTD_COREDUMP_H
#define DIGESTD_COREDUMP_H

/*
 * No core file and not dumpable, for this process and every child it
 * forks: call before the configuration is read.  The core limit in force
 * before the first call is kept for coredump_apply.  0 or -1 (errno set).
 */
int	coredump_disable(void);

/*
 * Apply [supervisor] core_dumps: 0 is coredump_disable(); 1 restores the
 * core limit found at the first call and makes the process dumpable again.
 * Call again after a change of user, which resets the dumpable flag.
 */
int	coredump_apply(int allow);

#endif
