/*
 * process_* figures of the supervisor from /proc/self/stat, /proc/stat's
 * boot time and /proc/self/fd, the same sources as the Go and Python
 * client libraries, so dashboards built for those read ours alike.
 *
 * These are small local reads of procfs, which never block on I/O; the
 * boot time never changes and is read once.
 */
#include <sys/resource.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"

static double procstat_btime;

static double
procstat_boot_time(void)
{
	char line[256];
	FILE *fp;

	if (procstat_btime > 0)
		return procstat_btime;
	if ((fp = fopen("/proc/stat", "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, "btime ", 6) == 0) {
			procstat_btime = strtod(line + 6, NULL);
			break;
		}
	}
	fclose(fp);
	return procstat_btime;
}

static int64_t
procstat_count_fds(void)
{
	struct dirent *de;
	DIR *d;
	int64_t n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	/* Not counting the descriptor opendir itself held. */
	return n > 0 ? n - 1 : 0;
}

int
procstat_read(struct procstat *ps)
{
	char buf[1024], *p;
	unsigned long utime, stime, vsize;
	unsigned long long starttime;
	long rss, tck, pagesz;
	struct rlimit rl;
	ssize_t n;
	int fd, rc;

	memset(ps, 0, sizeof(*ps));
	if ((fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip to the last. */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	/*
	 * Fields 3 (state) onwards; we want 14 utime, 15 stime, 22
	 * starttime, 23 vsize, 24 rss (proc(5)).
	 */
	rc = sscanf(p + 2,
	    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
	    "%*d %*d %*d %*d %*d %*d %llu %lu %ld",
	    &utime, &stime, &starttime, &vsize, &rss);
	if (rc != 5)
		return -1;
	tck = sysconf(_SC_CLK_TCK);
	pagesz = sysconf(_SC_PAGESIZE);
	if (tck <= 0)
		tck = 100;
	ps->cpu_seconds = (double)(utime + stime) / tck;
	ps->virtual_bytes = vsize;
	ps->resident_bytes = rss > 0 ? (uint64_t)rss * pagesz : 0;
	ps->start_time = procstat_boot_time() + (double)starttime / tck;
	ps->open_fds = procstat_count_fds();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		ps->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 :
		    (int64_t)rl.rlim_cur;
	ps->ok = 1;
	return 0;
}
