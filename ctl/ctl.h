/*
 * digestctl's commands and what they share: the loaded configuration, the
 * two Redis connections (the activity store and the queue Redis, the same
 * server unless [queue_redis] is set), and the queues, through the
 * configured backend (queue.h).
 */
#ifndef DIGESTCTL_CTL_H
#define DIGESTCTL_CTL_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "job.h"
#include "queue.h"

#define CTL_ERR_MAX 1024
#define CTL_MAX_QUEUES (CONFIG_MAX_POOLS + 2)

struct ctl {
	struct config *cfg;
	redisContext *data;		/* [redis]: groups, posts, users */
	redisContext *qr;		/* [queue_redis] or the same as data */
	struct queue_admin qa;		/* the queues, set up by ctl_connect */
	char err[CTL_ERR_MAX];
};

/*
 * Connect to both Redis servers as needed, and set up the queues' handle.
 * 0, or -1 with c->err.
 */
int ctl_connect(struct ctl *);
/* Close what ctl_connect and the queue backend opened. */
void ctl_close(struct ctl *);

/* The queues digestctl knows: priority, standard and every pool's. */
int ctl_queues(const struct config *, const char *names[CTL_MAX_QUEUES]);

/*
 * s, text from Redis or a broker (a field, a reason, an error reply),
 * made safe to print on a terminal by str_vis: no control sequence
 * reaches the operator's terminal, each is shown as \x1b and the like.
 * NULL gives "-".  The result lives in one of CTL_VIS_RING buffers used
 * in turn, so it stays valid for the next CTL_VIS_RING - 1 calls: enough
 * for the arguments of one printf.
 */
#define CTL_VIS_RING 8
const char *ctl_vis(const char *s);

/* Parse "--name value" style options; argv[*i] is the option. */
const char *ctl_optarg(int argc, char **argv, int *i);
/* "--now UNIX": whole or fractional seconds into *now.  0 / -1. */
int ctl_parse_now(const char *s, int64_t *now);
/* Who runs this command, user@host, for what a control records. */
void ctl_operator(char *buf, size_t len);
/* 1 when queue is one of ctl_queues', else 0. */
int ctl_queue_known(const struct config *, const char *queue);

/* The floors of the scores of up to two members neighbouring by rank. */
struct schedule_bound {
	int n;
	int64_t v[2];
};

/* A shard's member range: floor(score) in [min, max]. */
struct schedule_shard {
	int64_t k;		/* its index: ranks k * shard_size on */
	int64_t min;
	int64_t max;
};

/*
 * The member ranges of a group's nsh shards, from b[0] (its first member),
 * b[k] for 0 < k < nsh (the last member of shard k - 1 and the first of
 * shard k) and b[nsh] (its last member), into out (room for nsh).  Equal
 * floors across a boundary belong to the shard before; shards left empty
 * are dropped; the last returned is the group's last shard.  The count.
 */
int schedule_shards(const struct schedule_bound *b, int64_t nsh,
    struct schedule_shard *out);

/* The commands: argc/argv start after the command name. Exit status. */
int ctl_cmd_schedule(struct ctl *, int argc, char **argv);
int ctl_cmd_enqueue(struct ctl *, int argc, char **argv);
int ctl_cmd_stats(struct ctl *, int argc, char **argv);
int ctl_cmd_watch(struct ctl *, int argc, char **argv);
int ctl_cmd_dlq(struct ctl *, int argc, char **argv);
int ctl_cmd_seed(struct ctl *, int argc, char **argv);
int ctl_cmd_verify_unsubscribe(struct ctl *, int argc, char **argv);
int ctl_cmd_pause(struct ctl *, int argc, char **argv);
int ctl_cmd_resume(struct ctl *, int argc, char **argv);
int ctl_cmd_cancel(struct ctl *, int argc, char **argv);
int ctl_cmd_purge(struct ctl *, int argc, char **argv);
int ctl_cmd_preview(struct ctl *, int argc, char **argv);
int ctl_cmd_send_test(struct ctl *, int argc, char **argv);

/*
 * An HTTP GET of path on supervisor.listen with a plain blocking socket;
 * the body is malloc'd into *body.  0, or -1 with err.
 */
int ctl_http_get(const char *listen, const char *path, int timeout_ms,
    char **body, char *err, size_t errlen);
/* Sum of the samples of a metric whose labels contain every "k=\"v\"" given. */
double ctl_metric_sum(const char *text, const char *name, const char *match1,
    const char *match2);

#endif
