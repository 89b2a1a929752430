/*
 * digestctl pause, resume, cancel and purge: the controls an operator
 * reaches for in an incident (docs/digestctl.md).  Each is a call of the
 * queue interface (queue.h), which every instance on the same queues obeys
 * within two seconds: a paused queue's workers take no job and give back
 * the one in hand at its next batch; a cancelled run's waiting jobs are
 * removed, its running ones stop at their next batch, and scheduling the
 * same window again enqueues nothing.  The printing is all here.
 */
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "ctl.h"
#include "period.h"
#include "util.h"

void
ctl_operator(char *buf, size_t len)
{
	struct passwd *pw;
	char host[256];
	const char *user;

	if ((pw = getpwuid(getuid())) != NULL)
		user = pw->pw_name;
	else if ((user = getenv("USER")) == NULL)
		user = "?";
	if (gethostname(host, sizeof(host)) == -1)
		strlcpy(host, "?", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len, "%s@%s", user, host);
}

int
ctl_queue_known(const struct config *cfg, const char *queue)
{
	const char *names[CTL_MAX_QUEUES];
	int i, n;

	n = ctl_queues(cfg, names);
	for (i = 0; i < n; i++)
		if (strcmp(names[i], queue) == 0)
			return 1;
	return 0;
}

/* QUEUE or --all into names; the count, or -1 after saying why. */
static int
control_targets(struct ctl *c, const char *cmd, const char *queue, int all,
    const char *names[CTL_MAX_QUEUES])
{
	if (all == (queue != NULL)) {
		fprintf(stderr, "digestctl %s: give a QUEUE or --all\n", cmd);
		return -1;
	}
	if (all)
		return ctl_queues(c->cfg, names);
	if (!ctl_queue_known(c->cfg, queue)) {
		fprintf(stderr, "digestctl %s: unknown queue %s (neither "
		    "priority, standard nor a pool's queue)\n", cmd,
		    ctl_vis(queue));
		return -1;
	}
	names[0] = queue;
	return 1;
}

static int
control_pause_resume(struct ctl *c, int argc, char **argv, int pause)
{
	const char *cmd = pause ? "pause" : "resume";
	const char *names[CTL_MAX_QUEUES], *queue = NULL, *reason = "";
	char by[320];
	int i, n, all = 0, was;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0)
			all = 1;
		else if (pause && strcmp(argv[i], "--reason") == 0) {
			if ((reason = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
		} else if (argv[i][0] != '-' && queue == NULL)
			queue = argv[i];
		else {
			fprintf(stderr, "digestctl %s: unknown argument %s\n",
			    cmd, ctl_vis(argv[i]));
			return 2;
		}
	}
	if ((n = control_targets(c, cmd, queue, all, names)) == -1)
		return 2;
	ctl_operator(by, sizeof(by));
	for (i = 0; i < n; i++) {
		if (pause) {
			if (queue_pause(&c->qa, names[i], reason, by, c->err,
			    sizeof(c->err)) == -1)
				goto fail;
			printf("queue %s paused\n", names[i]);
			continue;
		}
		if ((was = queue_resume(&c->qa, names[i], c->err,
		    sizeof(c->err))) == -1)
			goto fail;
		printf("queue %s %s\n", names[i], was ? "resumed" :
		    "was not paused");
	}
	return 0;
fail:
	fprintf(stderr, "digestctl %s %s: %s\n", cmd, names[i],
	    ctl_vis(c->err));
	return 1;
}

int
ctl_cmd_pause(struct ctl *c, int argc, char **argv)
{
	return control_pause_resume(c, argc, argv, 1);
}

int
ctl_cmd_resume(struct ctl *c, int argc, char **argv)
{
	return control_pause_resume(c, argc, argv, 0);
}

int
ctl_cmd_purge(struct ctl *c, int argc, char **argv)
{
	const char *queue = NULL;
	int64_t n;
	int i, yes = 0;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--yes") == 0)
			yes = 1;
		else if (argv[i][0] != '-' && queue == NULL)
			queue = argv[i];
		else {
			fprintf(stderr, "digestctl purge: unknown argument %s\n",
			    ctl_vis(argv[i]));
			return 2;
		}
	}
	if (queue == NULL) {
		fprintf(stderr, "digestctl purge: give a QUEUE\n");
		return 2;
	}
	if (!ctl_queue_known(c->cfg, queue)) {
		fprintf(stderr, "digestctl purge: unknown queue %s\n",
		    ctl_vis(queue));
		return 2;
	}
	if (!yes) {
		fprintf(stderr, "digestctl purge: this removes every job "
		    "waiting in queue %s, for good; run it again with --yes\n",
		    queue);
		return 2;
	}
	if ((n = queue_purge(&c->qa, queue, c->err, sizeof(c->err))) == -1) {
		fprintf(stderr, "digestctl purge %s: %s\n", queue,
		    ctl_vis(c->err));
		return 1;
	}
	printf("queue %s purged: %" PRId64 " waiting job(s) removed\n", queue,
	    n);
	return 0;
}

/* What cancel's removal saw: each job removed gets its checkpoint. */
struct control_cancel {
	struct ctl *c;
	int64_t marked;
	int failed;
};

static void
control_cancel_cb(void *arg, const struct job *j)
{
	struct control_cancel *cc = arg;

	if (checkpoint_finish(cc->c->qr, cc->c->cfg, j, "cancelled",
	    "cancelled by an operator") == -1) {
		if (!cc->failed)
			fprintf(stderr, "digestctl cancel: job %s: its "
			    "checkpoint could not be written\n",
			    ctl_vis(j->job_id));
		cc->failed = 1;
		return;
	}
	cc->marked++;
}

int
ctl_cmd_cancel(struct ctl *c, int argc, char **argv)
{
	const char *names[CTL_MAX_QUEUES], *p = NULL, *v;
	struct control_cancel cc;
	int64_t now = (int64_t)time(NULL), ws, we, n, total = 0;
	char by[320], a[32], b[32];
	int i, nq, period;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--period") == 0) {
			if ((p = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
		} else if (strcmp(argv[i], "--now") == 0) {
			if ((v = ctl_optarg(argc, argv, &i)) == NULL)
				return 2;
			if (ctl_parse_now(v, &now) == -1) {
				fprintf(stderr, "digestctl: bad --now: %s\n",
				    ctl_vis(v));
				return 2;
			}
		} else {
			fprintf(stderr, "digestctl cancel: unknown argument %s\n",
			    ctl_vis(argv[i]));
			return 2;
		}
	}
	if ((period = period_parse(p)) == -1) {
		fprintf(stderr, "digestctl cancel: --period daily|weekly is "
		    "required\n");
		return 2;
	}
	period_window(period, c->cfg->schedule.day_start_s, now, &ws, &we);
	ctl_operator(by, sizeof(by));
	/* The marker first: from now on no worker sends for this run. */
	if (queue_cancel_run(&c->qa, period_name(period), we, by, c->err,
	    sizeof(c->err)) == -1) {
		fprintf(stderr, "digestctl cancel: %s\n", ctl_vis(c->err));
		return 1;
	}
	memset(&cc, 0, sizeof(cc));
	cc.c = c;
	nq = ctl_queues(c->cfg, names);
	for (i = 0; i < nq; i++) {
		n = c->qa.qb->remove_run(&c->qa, names[i], period_name(period),
		    we, control_cancel_cb, &cc, c->err, sizeof(c->err));
		if (n == -1) {
			fprintf(stderr, "digestctl cancel: queue %s: %s (the "
			    "run is cancelled: its jobs are dropped when a "
			    "worker takes them)\n", names[i], ctl_vis(c->err));
			return 1;
		}
		total += n;
	}
	unix_time_iso((double)ws, a, sizeof(a));
	unix_time_iso((double)we, b, sizeof(b));
	printf("cancelled the %s run of window %s .. %s: %" PRId64 " waiting "
	    "job(s) removed; running jobs stop at their next batch\n",
	    period_name(period), a, b, total);
	return cc.failed ? 1 : 0;
}
