/*
 * digestctl stats: queue depth, pending, the oldest waiting job, whether the
 * queue is paused, dead letters and the scheduler's last runs, as a table or
 * as the JSON of docs/design.md#digestctl.  Also the small HTTP client and
 * metrics reader that watch uses to ask digestd for its counters.
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl.h"
#include "rconn.h"
#include "util.h"

/* The fields of digest:sched:{period} (see schedule.c), and their types. */
static const struct {
	const char *name;
	char type;			/* i: integer, r: real, s: string */
} stats_sched_fields[] = {
	{ "status", 's' }, { "start", 'r' }, { "end", 'r' },
	{ "window_start", 'i' }, { "window_end", 'i' },
	{ "jobs_priority", 'i' }, { "jobs_standard", 'i' },
	{ "skipped_existing", 'i' }, { "groups", 'i' }, { "error", 's' },
	{ "last_success", 'r' },
};
#define STATS_NSCHED (sizeof(stats_sched_fields) / sizeof(stats_sched_fields[0]))

/*
 * digest:sched:{period} as a JSON object, JSON null when never run, or
 * NULL with c->err on a Redis error.
 */
static json_t *
stats_sched(struct ctl *c, const char *period)
{
	const char *argv[2 + STATS_NSCHED];
	redisReply *r, *v;
	json_t *o;
	char key[512];
	const char *name;
	size_t i, any = 0;
	int64_t n;
	double d;

	if (rkey(key, sizeof(key), c->cfg->redis.key_prefix, "digest:sched:%s",
	    period) == NULL) {
		snprintf(c->err, sizeof(c->err), "key too long");
		return NULL;
	}
	argv[0] = "HMGET";
	argv[1] = key;
	for (i = 0; i < STATS_NSCHED; i++)
		argv[2 + i] = stats_sched_fields[i].name;
	r = redisCommandArgv(c->qr, 2 + STATS_NSCHED, argv, NULL);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY ||
	    r->elements != STATS_NSCHED) {
		snprintf(c->err, sizeof(c->err), "redis HMGET %s: %s", key,
		    r == NULL ? c->qr->errstr : r->type == REDIS_REPLY_ERROR ?
		    r->str : "bad reply");
		if (r)
			freeReplyObject(r);
		return NULL;
	}
	o = json_object();
	for (i = 0; i < STATS_NSCHED; i++) {
		v = r->element[i];
		name = stats_sched_fields[i].name;
		if (v->type != REDIS_REPLY_STRING)
			continue;
		any++;
		if (stats_sched_fields[i].type == 'i' &&
		    parse_i64(v->str, INT64_MIN, INT64_MAX, &n) == 0)
			json_object_set_new(o, name, json_integer(n));
		else if (stats_sched_fields[i].type == 'r' &&
		    parse_double(v->str, &d) == 0)
			json_object_set_new(o, name, json_real(d));
		else	/* Made safe here, for the table and --json. */
			json_object_set_new(o, name,
			    json_string(ctl_vis(v->str)));
	}
	freeReplyObject(r);
	if (any == 0) {
		json_decref(o);
		return json_null();
	}
	return o;
}

static void
stats_age(double at, char *buf, size_t len)
{
	double age;

	if (at <= 0) {
		strlcpy(buf, "-", len);
		return;
	}
	age = now_real() - at;
	if (age < 0)
		age = 0;
	if (age < 120)
		snprintf(buf, len, "%.0fs", age);
	else if (age < 7200)
		snprintf(buf, len, "%.0fm", age / 60);
	else
		snprintf(buf, len, "%.1fh", age / 3600);
}

static void
stats_print_sched(const char *period, json_t *o)
{
	char when[64];
	json_t *v;

	if (!json_is_object(o)) {
		printf("schedule %-7s never run\n", period);
		return;
	}
	v = json_object_get(o, "end");
	unix_time_iso(json_is_number(v) ? json_number_value(v) : -1, when,
	    sizeof(when));
	printf("schedule %-7s %s at %s: priority %" PRId64 ", standard %" PRId64
	    ", already enqueued %" PRId64 "%s%s\n", period,
	    json_string_value(json_object_get(o, "status")) ?
	    json_string_value(json_object_get(o, "status")) : "?", when,
	    (int64_t)json_integer_value(json_object_get(o, "jobs_priority")),
	    (int64_t)json_integer_value(json_object_get(o, "jobs_standard")),
	    (int64_t)json_integer_value(json_object_get(o, "skipped_existing")),
	    json_string_length(json_object_get(o, "error")) ? ": " : "",
	    json_string_length(json_object_get(o, "error")) ?
	    json_string_value(json_object_get(o, "error")) : "");
}

int
ctl_cmd_stats(struct ctl *c, int argc, char **argv)
{
	const char *names[CTL_MAX_QUEUES];
	struct queue_stats st;
	struct queue_pause pz;
	json_t *root, *queues, *q, *sched, *sd, *sw, *pv;
	char age[32], *s;
	int64_t dlq;
	int i, n, json = 0;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else {
			fprintf(stderr, "digestctl stats: unknown argument %s\n",
			    argv[i]);
			return 2;
		}
	}
	root = json_object();
	queues = json_object();
	json_object_set_new(root, "queues", queues);
	n = ctl_queues(c->cfg, names);
	for (i = 0; i < n; i++) {
		if (c->qa.qb->stats(&c->qa, names[i], &st, c->err,
		    sizeof(c->err)) == -1) {
			fprintf(stderr, "digestctl stats: queue %s: %s\n",
			    names[i], ctl_vis(c->err));
			json_decref(root);
			return 1;
		}
		q = json_object();
		json_object_set_new(q, "depth", json_integer(st.depth));
		json_object_set_new(q, "pending", st.pending < 0 ? json_null() :
		    json_integer(st.pending));
		json_object_set_new(q, "oldest_enqueued_at",
		    json_real(st.oldest_enqueued));
		if (queue_pause_get(&c->qa, names[i], &pz, c->err,
		    sizeof(c->err)) == -1) {
			fprintf(stderr, "digestctl stats: queue %s: %s\n",
			    names[i], ctl_vis(c->err));
			json_decref(q);
			json_decref(root);
			return 1;
		}
		json_object_set_new(q, "paused", pz.paused ? json_pack(
		    "{s:s, s:s, s:f}", "reason", ctl_vis(pz.reason), "by",
		    ctl_vis(pz.by), "at", pz.at) : json_null());
		json_object_set_new(queues, names[i], q);
	}
	if ((dlq = c->qa.qb->dlq_len(&c->qa, c->err, sizeof(c->err))) == -1) {
		fprintf(stderr, "digestctl stats: dead letters: %s\n",
		    ctl_vis(c->err));
		json_decref(root);
		return 1;
	}
	json_object_set_new(root, "dead_letters", json_integer(dlq));
	sched = json_object();
	json_object_set_new(root, "schedule", sched);
	if ((sd = stats_sched(c, "daily")) == NULL ||
	    (sw = stats_sched(c, "weekly")) == NULL) {
		fprintf(stderr, "digestctl stats: schedule: %s\n",
		    ctl_vis(c->err));
		json_decref(sd);
		json_decref(root);
		return 1;
	}
	json_object_set_new(sched, "daily", sd);
	json_object_set_new(sched, "weekly", sw);

	if (json) {
		s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (s == NULL) {
			fprintf(stderr, "digestctl stats: out of memory\n");
			json_decref(root);
			return 1;
		}
		printf("%s\n", s);
		free(s);
	} else {
		printf("%-16s %10s %10s %12s  %s\n", "queue", "depth",
		    "pending", "oldest age", "paused");
		for (i = 0; i < n; i++) {
			q = json_object_get(queues, names[i]);
			stats_age(json_real_value(json_object_get(q,
			    "oldest_enqueued_at")), age, sizeof(age));
			if (json_is_null(json_object_get(q, "pending")))
				printf("%-16s %10" PRId64 " %10s %12s", names[i],
				    (int64_t)json_integer_value(json_object_get(q,
				    "depth")), "?", age);
			else
				printf("%-16s %10" PRId64 " %10" PRId64 " %12s",
				    names[i], (int64_t)json_integer_value(
				    json_object_get(q, "depth")),
				    (int64_t)json_integer_value(json_object_get(q,
				    "pending")), age);
			/* Made safe when read. */
			pv = json_object_get(q, "paused");
			if (json_is_object(pv)) {
				stats_age(json_real_value(json_object_get(pv,
				    "at")), age, sizeof(age));
				printf("  PAUSED %s ago by %s: %s\n", age,
				    json_string_value(json_object_get(pv, "by")),
				    json_string_value(json_object_get(pv,
				    "reason")));
			} else
				printf("  -\n");
		}
		printf("dead letters: %" PRId64 "\n", dlq);
		stats_print_sched("daily", sd);
		stats_print_sched("weekly", sw);
	}
	json_decref(root);
	return 0;
}

int
ctl_http_get(const char *listen, const char *path, int timeout_ms,
    char **body, char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	struct timeval tv;
	char host[256], port[16], req[512], *buf = NULL, *p;
	const char *colon;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd = -1, e;

	*body = NULL;
	if ((colon = strrchr(listen, ':')) == NULL) {
		snprintf(err, errlen, "bad listen address %s", listen);
		return -1;
	}
	if (listen[0] == '[') {
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen - 2),
		    listen + 1);
	} else
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen),
		    listen);
	strlcpy(port, colon + 1, sizeof(port));
	/* A wildcard listener is reached on loopback. */
	if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
	    strcmp(host, "*") == 0)
		strlcpy(host, "127.0.0.1", sizeof(host));
	else if (strcmp(host, "::") == 0)
		strlcpy(host, "::1", sizeof(host));
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s: %s", listen, gai_strerror(e));
		return -1;
	}
	tv_ms(&tv, timeout_ms);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		snprintf(err, errlen, "connect %s: %s", listen,
		    strerror(errno));
		return -1;
	}
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n"
	    "Accept: text/plain\r\nConnection: close\r\n\r\n", path, host);
	if (write(fd, req, (size_t)n) != n) {
		snprintf(err, errlen, "write %s: %s", listen, strerror(errno));
		close(fd);
		return -1;
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 65536;
			buf = xrealloc(buf, cap + 1);
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "read %s: %s", listen,
			    strerror(errno));
			close(fd);
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf == NULL) {
		snprintf(err, errlen, "%s: empty reply", listen);
		return -1;
	}
	buf[len] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) != 0 || len < 12 ||
	    strncmp(buf + 9, "200", 3) != 0) {
		snprintf(err, errlen, "GET %s: %.40s", path, buf);
		free(buf);
		return -1;
	}
	if ((p = strstr(buf, "\r\n\r\n")) == NULL) {
		snprintf(err, errlen, "GET %s: no body", path);
		free(buf);
		return -1;
	}
	p += 4;
	memmove(buf, p, len - (size_t)(p - buf) + 1);
	*body = buf;
	return 0;
}

double
ctl_metric_sum(const char *text, const char *name, const char *match1,
    const char *match2)
{
	const char *line = text, *end, *sp;
	size_t nl = strlen(name);
	double sum = 0, v;
	char num[64];

	for (; line != NULL && *line != '\0'; line = end ? end + 1 : NULL) {
		end = strchr(line, '\n');
		if (*line == '#' || strncmp(line, name, nl) != 0 ||
		    (line[nl] != '{' && line[nl] != ' '))
			continue;
		if ((sp = memchr(line, '}', end ? (size_t)(end - line) :
		    strlen(line))) == NULL)
			sp = line + nl;
		if (match1 != NULL && (memmem(line, (size_t)(sp - line), match1,
		    strlen(match1)) == NULL))
			continue;
		if (match2 != NULL && (memmem(line, (size_t)(sp - line), match2,
		    strlen(match2)) == NULL))
			continue;
		while (*sp == '}' || *sp == ' ')
			sp++;
		snprintf(num, sizeof(num), "%.*s", (int)strcspn(sp, " \n"), sp);
		if (parse_double(num, &v) == 0)
			sum += v;
	}
	return sum;
}
