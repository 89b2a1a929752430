/*
 * What digestctl's commands share: the connections (the activity store,
 * the queue Redis, and the queues through the configured backend,
 * queue.h), the list of queues, printing text from outside safely, and
 * option parsing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "queue.h"
#include "rconn.h"
#include "util.h"

const char *
ctl_vis(const char *s)
{
	static char *ring[CTL_VIS_RING];
	static size_t cap[CTL_VIS_RING];
	static int next;
	size_t need;
	int i;

	if (s == NULL)
		return "-";
	i = next;
	next = (next + 1) % CTL_VIS_RING;
	need = str_vis(NULL, 0, s) + 1;
	if (need > cap[i]) {
		ring[i] = xrealloc(ring[i], need);
		cap[i] = need;
	}
	str_vis(ring[i], need, s);
	return ring[i];
}

int
ctl_connect(struct ctl *c)
{
	c->data = rconn_connect(&c->cfg->redis, c->err, sizeof(c->err));
	if (c->data == NULL)
		return -1;
	if (!c->cfg->has_queue_redis)
		c->qr = c->data;
	else if ((c->qr = rconn_connect(&c->cfg->queue_redis, c->err,
	    sizeof(c->err))) == NULL)
		return -1;
	queue_admin_init(&c->qa, c->cfg, c->qr);
	return 0;
}

void
ctl_close(struct ctl *c)
{
	queue_admin_clear(&c->qa);
	if (c->qr != NULL && c->qr != c->data)
		redisFree(c->qr);
	if (c->data != NULL)
		redisFree(c->data);
	c->qr = c->data = NULL;
}

int
ctl_queues(const struct config *cfg, const char *names[CTL_MAX_QUEUES])
{
	int i, j, n = 0;

	names[n++] = "priority";
	names[n++] = "standard";
	for (i = 0; i < cfg->npools; i++) {
		for (j = 0; j < n; j++)
			if (strcmp(names[j], cfg->pools[i].queue) == 0)
				break;
		if (j == n && n < CTL_MAX_QUEUES)
			names[n++] = cfg->pools[i].queue;
	}
	return n;
}

const char *
ctl_optarg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "digestctl: %s needs a value\n", argv[*i]);
		return NULL;
	}
	return argv[++*i];
}

/*
 * "--now UNIX": whole or fractional seconds, a time that makes valid jobs
 * (job_validate's bounds).
 */
int
ctl_parse_now(const char *s, int64_t *now)
{
	double d;

	if (parse_i64(s, 0, (int64_t)JOB_TIME_MAX - 1, now) == 0)
		return 0;
	if (parse_double(s, &d) == -1 || !(d >= 0 && d < JOB_TIME_MAX))
		return -1;
	*now = (int64_t)floor(d);
	return 0;
}

