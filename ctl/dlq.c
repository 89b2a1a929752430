/*
 * digestctl dlq: list the dead letters and put them back on their queue.
 *
 * The queue backend walks its dead letters (queue.h: dlq_walk) and hands
 * each to dlq_letter_cb, which prints it.  A requeued job goes back on its
 * queue by force (its enqueue marker is no reason to refuse it), leaves
 * the dead letters, and gets a fresh count of attempts in its checkpoint,
 * which keeps its cursor so the job resumes after the last member done.
 *
 * What a letter shows and how `requeue` counts depend on what the
 * backend's dead letters are (queue.h: dlq_opaque): records of a job, with
 * an id, attempts and a time of their own, requeued as jobs; or the job's
 * message as it was, requeued as it is.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

/* What the walk saw, counted by the callback. */
struct dlq_walk {
	const struct queue_backend *qb;
	int requeue;
	int64_t listed;		/* listing: letters shown */
	int64_t requeued;	/* requeueing: letters back on their queue */
	int64_t kept;		/* requeueing: matching letters left in place */
	int failed;		/* a requeued job's checkpoint was not reset */
};

static void
dlq_time(const char *s, char *buf, size_t len)
{
	double d;

	if (s == NULL || parse_double(s, &d) == -1)
		d = -1;
	unix_time_iso(d, buf, len);
}

static void
dlq_header(const struct dlq_walk *w)
{
	if (w->qb->dlq_opaque)
		printf("%-36s %-10s %s\n", "job_id", "queue", "reason");
	else
		printf("%-22s %-36s %-10s %-8s %-20s %s\n", "entry", "job_id",
		    "queue", "attempts", "failed_at", "reason");
}

/* Every field came from whoever wrote the letter: all through ctl_vis. */
static void
dlq_letter_cb(void *arg, const struct queue_letter *lt)
{
	struct dlq_walk *w = arg;
	char when[32];

	if (!w->requeue) {
		w->listed++;
		if (w->qb->dlq_opaque) {
			printf("%-36s %-10s %s\n", ctl_vis(lt->job_id),
			    ctl_vis(lt->queue), ctl_vis(lt->reason));
			return;
		}
		dlq_time(lt->failed_at, when, sizeof(when));
		printf("%-22s %-36s %-10s %-8s %-20s %s\n", ctl_vis(lt->id),
		    ctl_vis(lt->job_id), ctl_vis(lt->queue),
		    ctl_vis(lt->attempts), when, ctl_vis(lt->reason));
		return;
	}
	if (!lt->requeued) {
		/* Reported; the others are requeued all the same. */
		fprintf(stderr, "digestctl dlq: %s\n", ctl_vis(lt->kept));
		w->kept++;
		return;
	}
	w->requeued++;
	if (lt->error != NULL)
		w->failed = 1;
	printf("requeued %s on %s\n", lt->job_id != NULL ?
	    ctl_vis(lt->job_id) : "(undecodable)", ctl_vis(lt->queue));
}

int
ctl_cmd_dlq(struct ctl *c, int argc, char **argv)
{
	struct dlq_walk w;
	const char *job_id = NULL;
	int requeue, all = 0, i;

	if (argc < 1 || (strcmp(argv[0], "list") != 0 &&
	    strcmp(argv[0], "requeue") != 0)) {
		fprintf(stderr, "usage: digestctl -c FILE dlq list | "
		    "dlq requeue JOB_ID|--all\n");
		return 2;
	}
	requeue = strcmp(argv[0], "requeue") == 0;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0)
			all = 1;
		else if (argv[i][0] != '-' && job_id == NULL && requeue)
			job_id = argv[i];
		else {
			fprintf(stderr, "digestctl dlq: unknown argument %s\n",
			    argv[i]);
			return 2;
		}
	}
	if (requeue && (all == (job_id != NULL))) {
		fprintf(stderr, "digestctl dlq requeue: give a JOB_ID or "
		    "--all\n");
		return 2;
	}

	memset(&w, 0, sizeof(w));
	w.qb = c->qa.qb;
	w.requeue = requeue;
	if (!requeue)
		dlq_header(&w);
	if (c->qa.qb->dlq_walk(&c->qa, requeue, job_id, dlq_letter_cb, &w,
	    c->err, sizeof(c->err)) == -1) {
		fprintf(stderr, "digestctl dlq: %s\n", ctl_vis(c->err));
		return 1;
	}
	if (!requeue) {
		printf("%" PRId64 " dead letter(s)\n", w.listed);
		return 0;
	}
	if (w.qb->dlq_opaque) {
		/* A letter that cannot go back was said and is no failure. */
		printf("%" PRId64 " dead letter(s) requeued\n", w.requeued);
		if (job_id != NULL && w.requeued == 0) {
			if (w.kept == 0)
				fprintf(stderr, "digestctl dlq requeue: no dead "
				    "letter for job %s\n", job_id);
			return 1;
		}
		return w.failed ? 1 : 0;
	}
	/* A letter that is not a job is an error, once the others are back. */
	printf("%" PRId64 " job(s) requeued\n", w.requeued);
	if (job_id != NULL && w.requeued + w.kept == 0) {
		fprintf(stderr, "digestctl dlq requeue: no dead letter for job "
		    "%s\n", job_id);
		return 1;
	}
	return w.kept == 0 && !w.failed ? 0 : 1;
}
