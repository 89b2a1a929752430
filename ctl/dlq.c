/*
 * digestctl dlq: list the dead letters (as a table or JSON), show one,
 * delete them, and put them back on their queue.
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

#include <jansson.h>

#include "ctl.h"
#include "util.h"

/* What the walk saw, counted by the callback. */
struct dlq_walk {
	const struct queue_backend *qb;
	enum queue_dlq_op op;
	int requeue;
	int show;		/* listing: every field of each letter */
	json_t *json;		/* listing as JSON: the array */
	int64_t deleted;
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

/* One letter as a JSON object; every string made safe. */
static void
dlq_letter_json(struct dlq_walk *w, const struct queue_letter *lt)
{
	json_t *o;
	double d;

	o = json_object();
	json_object_set_new(o, "id", lt->id ? json_string(ctl_vis(lt->id)) :
	    json_null());
	json_object_set_new(o, "job_id", lt->job_id ?
	    json_string(ctl_vis(lt->job_id)) : json_null());
	json_object_set_new(o, "queue", lt->queue ?
	    json_string(ctl_vis(lt->queue)) : json_null());
	json_object_set_new(o, "reason", lt->reason ?
	    json_string(ctl_vis(lt->reason)) : json_null());
	json_object_set_new(o, "attempts", lt->attempts ?
	    json_string(ctl_vis(lt->attempts)) : json_null());
	json_object_set_new(o, "failed_at", lt->failed_at != NULL &&
	    parse_double(lt->failed_at, &d) == 0 ? json_real(d) : json_null());
	json_array_append_new(w->json, o);
}

/* Every field of one letter, one per line, made safe. */
static void
dlq_letter_show(const struct queue_letter *lt)
{
	char when[32];
	size_t i;

	printf("id: %s\njob_id: %s\nqueue: %s\nreason: %s\n", ctl_vis(lt->id),
	    ctl_vis(lt->job_id), ctl_vis(lt->queue), ctl_vis(lt->reason));
	if (lt->failed_at != NULL) {
		dlq_time(lt->failed_at, when, sizeof(when));
		printf("failed_at: %s\n", when);
	}
	for (i = 0; i < lt->nfields; i++)
		printf("  %s = %s\n", ctl_vis(lt->names[i]),
		    ctl_vis(lt->values[i]));
	if (lt->body != NULL) {
		char *b = xcalloc(1, lt->bodylen + 1);

		/* A body with a NUL shows up to it: the rest is binary. */
		memcpy(b, lt->body, lt->bodylen);
		b[lt->bodylen] = '\0';
		printf("body: %s\n", ctl_vis(b));
		free(b);
	}
	printf("\n");
}

/* Every field came from whoever wrote the letter: all through ctl_vis. */
static void
dlq_letter_cb(void *arg, const struct queue_letter *lt)
{
	struct dlq_walk *w = arg;
	char when[32];

	if (w->op == QUEUE_DLQ_DELETE) {
		if (lt->deleted) {
			w->deleted++;
			printf("deleted %s (%s)\n", ctl_vis(lt->id),
			    ctl_vis(lt->job_id));
		}
		return;
	}
	if (!w->requeue && w->json != NULL) {
		w->listed++;
		dlq_letter_json(w, lt);
		return;
	}
	if (!w->requeue && w->show) {
		w->listed++;
		dlq_letter_show(lt);
		return;
	}
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

static int
dlq_usage(void)
{
	fprintf(stderr, "usage: digestctl -c FILE dlq list [--json] | "
	    "dlq show ID | dlq delete ID|--all | dlq requeue ID|--all\n");
	return 2;
}

int
ctl_cmd_dlq(struct ctl *c, int argc, char **argv)
{
	struct dlq_walk w;
	const char *id = NULL, *verb;
	char *out;
	int all = 0, json = 0, i;

	if (argc < 1)
		return dlq_usage();
	verb = argv[0];
	memset(&w, 0, sizeof(w));
	w.qb = c->qa.qb;
	if (strcmp(verb, "list") == 0)
		w.op = QUEUE_DLQ_LIST;
	else if (strcmp(verb, "show") == 0) {
		w.op = QUEUE_DLQ_LIST;
		w.show = 1;
	} else if (strcmp(verb, "requeue") == 0) {
		w.op = QUEUE_DLQ_REQUEUE;
		w.requeue = 1;
	} else if (strcmp(verb, "delete") == 0)
		w.op = QUEUE_DLQ_DELETE;
	else
		return dlq_usage();
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0 && w.op != QUEUE_DLQ_LIST)
			all = 1;
		else if (strcmp(argv[i], "--json") == 0 && !w.show &&
		    w.op == QUEUE_DLQ_LIST)
			json = 1;
		else if (argv[i][0] != '-' && id == NULL &&
		    (w.show || w.op != QUEUE_DLQ_LIST))
			id = argv[i];
		else {
			fprintf(stderr, "digestctl dlq: unknown argument %s\n",
			    ctl_vis(argv[i]));
			return 2;
		}
	}
	if (w.show && id == NULL) {
		fprintf(stderr, "digestctl dlq show: give an ID\n");
		return 2;
	}
	if (w.op != QUEUE_DLQ_LIST && all == (id != NULL)) {
		fprintf(stderr, "digestctl dlq %s: give an ID or --all\n",
		    verb);
		return 2;
	}

	if (json)
		w.json = json_array();
	else if (w.op == QUEUE_DLQ_LIST && !w.show)
		dlq_header(&w);
	if (c->qa.qb->dlq_walk(&c->qa, w.op, id, dlq_letter_cb, &w, c->err,
	    sizeof(c->err)) == -1) {
		fprintf(stderr, "digestctl dlq: %s\n", ctl_vis(c->err));
		json_decref(w.json);
		return 1;
	}
	if (w.json != NULL) {
		out = json_dumps(w.json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(w.json);
		if (out == NULL) {
			fprintf(stderr, "digestctl dlq: out of memory\n");
			return 1;
		}
		printf("%s\n", out);
		free(out);
		return 0;
	}
	if (w.show) {
		if (w.listed == 0) {
			fprintf(stderr, "digestctl dlq show: no dead letter %s\n",
			    ctl_vis(id));
			return 1;
		}
		return 0;
	}
	if (w.op == QUEUE_DLQ_LIST) {
		printf("%" PRId64 " dead letter(s)\n", w.listed);
		return 0;
	}
	if (w.op == QUEUE_DLQ_DELETE) {
		printf("%" PRId64 " dead letter(s) deleted\n", w.deleted);
		if (id != NULL && w.deleted == 0) {
			fprintf(stderr, "digestctl dlq delete: no dead letter "
			    "%s\n", ctl_vis(id));
			return 1;
		}
		return 0;
	}
	/*
	 * Requeueing: what cannot go back (a letter that is not a job, or
	 * names no queue) was said on stderr and stays; with --all that is
	 * a report, not a failure, or one bad letter would fail every run.
	 * Asked for by its ID, it is a failure.
	 */
	printf("%" PRId64 " %s requeued", w.requeued, w.qb->dlq_opaque ?
	    "dead letter(s)" : "job(s)");
	if (w.kept > 0)
		printf(", %" PRId64 " kept: cannot be requeued (dlq show ID, "
		    "dlq delete ID)", w.kept);
	printf("\n");
	if (id != NULL && w.requeued + w.kept == 0) {
		fprintf(stderr, "digestctl dlq requeue: no dead letter %s\n",
		    ctl_vis(id));
		return 1;
	}
	if (id != NULL && w.kept > 0)
		return 1;
	return w.failed ? 1 : 0;
}
