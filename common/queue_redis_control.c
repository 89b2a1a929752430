/*
 * The Redis Streams backend, the operator's controls (queue.h): purging a
 * queue and removing the waiting jobs of a cancelled run.
 *
 * A waiting job is an entry after the group's last-delivered-id: XREADGROUP
 * hands entries out in order, and a job given back goes to the tail as a
 * new entry.  Each page is read and deleted in one script, so no worker
 * can be handed an entry between our read and our XDEL; an entry already
 * delivered is never touched (its worker finishes it, or stops at its
 * next batch when its run is cancelled).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_redis.h"
#include "util.h"

#define QUEUE_REDIS_CONTROL_PAGE "500"	/* entries looked at per script */
#define QUEUE_REDIS_CONTROL_ROUNDS 100000	/* a guard against a loop */

/*
 * One page: KEYS[1] the stream; ARGV[1] the group, ARGV[2] the page size,
 * ARGV[3] where the last page ended ("" at first), ARGV[4] and ARGV[5]
 * the run's period and window_end ("" for every job).  Looks at the
 * entries waiting after the later of ARGV[3] and the group's
 * last-delivered-id, deletes those of the run, and returns the id of the
 * last entry looked at ("" when none) followed by the fields of each one
 * deleted.
 */
static const char queue_redis_remove_lua[] =
    "local function id(s)\n"
    "  local a, b = string.match(s, '^(%d+)-(%d+)$')\n"
    "  return tonumber(a or 0), tonumber(b or 0)\n"
    "end\n"
    "local function later(x, y)\n"
    "  local xa, xb = id(x)\n"
    "  local ya, yb = id(y)\n"
    "  if xa ~= ya then return xa > ya end\n"
    "  return xb > yb\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {''} end\n"
    "local from = '0-0'\n"
    "for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
    "  local f = {}\n"
    "  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
    "  if f['name'] == ARGV[1] then from = f['last-delivered-id'] end\n"
    "end\n"
    "if ARGV[3] ~= '' and later(ARGV[3], from) then from = ARGV[3] end\n"
    "local e = redis.call('XRANGE', KEYS[1], '(' .. from, '+', 'COUNT',\n"
    "    tonumber(ARGV[2]))\n"
    "local out = {''}\n"
    "for _, x in ipairs(e) do\n"
    "  out[1] = x[1]\n"
    "  local f = {}\n"
    "  for i = 1, #x[2], 2 do f[x[2][i]] = x[2][i + 1] end\n"
    "  if ARGV[4] == '' or (f['period'] == ARGV[4] and\n"
    "      f['window_end'] == ARGV[5]) then\n"
    "    redis.call('XDEL', KEYS[1], x[1])\n"
    "    table.insert(out, x[2])\n"
    "  end\n"
    "end\n"
    "return out\n";

/*
 * Remove the waiting entries of queue (of one run, when period is not
 * NULL), handing cb each removed one that decodes as a job.
 */
static int64_t
queue_redis_remove(struct queue_admin *qa, const char *queue,
    const char *period, int64_t window_end, queue_job_cb cb, void *arg,
    char *err, size_t errlen)
{
	struct queue_redis_argv a;
	const char *names[QUEUE_REDIS_ARGV_MAX], *values[QUEUE_REDIS_ARGV_MAX];
	const redisReply *f;
	redisContext *c = qa->qr;
	redisReply *r;
	struct job j;
	char key[QUEUE_REDIS_KEY_MAX], from[80], end[32], why[256];
	int64_t n = 0;
	size_t i, k, nf;
	int rounds;

	if (c == NULL) {
		snprintf(err, errlen, "queue redis: not connected");
		return -1;
	}
	if (queue_redis_qkey(key, sizeof(key), qa->cfg, queue) == -1) {
		snprintf(err, errlen, "queue name too long");
		return -1;
	}
	snprintf(end, sizeof(end), "%" PRId64, window_end);
	from[0] = '\0';
	for (rounds = 0; rounds < QUEUE_REDIS_CONTROL_ROUNDS; rounds++) {
		memset(&a, 0, sizeof(a));
		queue_redis_arg(&a, "EVAL");
		queue_redis_arg(&a, queue_redis_remove_lua);
		queue_redis_arg(&a, "1");
		queue_redis_arg(&a, key);
		queue_redis_arg(&a, QUEUE_REDIS_GROUP);
		queue_redis_arg(&a, QUEUE_REDIS_CONTROL_PAGE);
		queue_redis_arg(&a, from);
		queue_redis_arg(&a, period != NULL ? period : "");
		queue_redis_arg(&a, period != NULL ? end : "");
		if ((r = queue_redis_run(c, &a, err, errlen)) == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
		    r->element[0]->type != REDIS_REPLY_STRING) {
			snprintf(err, errlen, "redis: unexpected reply to the "
			    "removal script");
			freeReplyObject(r);
			return -1;
		}
		for (i = 1; i < r->elements; i++) {
			n++;
			f = r->element[i];
			if (cb == NULL || f->type != REDIS_REPLY_ARRAY)
				continue;
			for (k = 0, nf = 0; k + 1 < f->elements &&
			    nf < QUEUE_REDIS_ARGV_MAX; k += 2, nf++) {
				names[nf] = f->element[k]->str != NULL ?
				    f->element[k]->str : "";
				values[nf] = f->element[k + 1]->str != NULL ?
				    f->element[k + 1]->str : "";
			}
			if (job_decode_fields(&j, names, values, nf, why,
			    sizeof(why)) == 0)
				cb(arg, &j);
		}
		if (r->element[0]->str[0] == '\0') {
			freeReplyObject(r);
			return n;
		}
		strlcpy(from, r->element[0]->str, sizeof(from));
		freeReplyObject(r);
	}
	snprintf(err, errlen, "queue %s: still more after %d pages", queue,
	    rounds);
	return -1;
}

int64_t
queue_redis_purge(struct queue_admin *qa, const char *queue, char *err,
    size_t errlen)
{
	return queue_redis_remove(qa, queue, NULL, 0, NULL, NULL, err, errlen);
}

int64_t
queue_redis_remove_run(struct queue_admin *qa, const char *queue,
    const char *period, int64_t window_end, queue_job_cb cb, void *arg,
    char *err, size_t errlen)
{
	return queue_redis_remove(qa, queue, period, window_end, cb, arg, err,
	    errlen);
}
