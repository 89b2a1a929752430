/*
 * The supervisor's own process figures for the process_* metrics, read
 * from /proc/self as client libraries do.
 */
#ifndef DIGESTD_PROCSTAT_H
#define DIGESTD_PROCSTAT_H

#include <stdint.h>

struct procstat {
	double cpu_seconds;		/* user + system */
	uint64_t resident_bytes;
	uint64_t virtual_bytes;
	int64_t open_fds;
	int64_t max_fds;		/* RLIMIT_NOFILE soft limit */
	double start_time;		/* unix time */
	int ok;				/* 0 if /proc could not be read */
};

/* Fill ps for this process; fields it cannot read stay 0. 0 or -1. */
int procstat_read(struct procstat *ps);

#endif
