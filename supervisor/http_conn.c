/*
 * The book of the HTTP endpoint's connections.  Waiting connections (for a
 * first request, or for the next one on a kept-alive connection) are kept
 * in the order their wait began, so the one that gives way under pressure
 * is the head of the list, and each has a deadline: a first request must
 * be in whole within HTTP_REQUEST_DEADLINE_MS of the accept however slowly
 * it trickles in, and an answer, or a later request, within
 * HTTP_IDLE_DEADLINE_MS.
 */
#include <stddef.h>
#include <stdint.h>

#include "http_conn.h"

void
http_conns_init(struct http_conns *cs)
{
	TAILQ_INIT(&cs->waiting);
	cs->open = 0;
}

void
http_conn_open(struct http_conns *cs, struct http_conn *c, int64_t now)
{
	c->state = HTTP_CONN_FIRST;
	c->since_ms = now;
	TAILQ_INSERT_TAIL(&cs->waiting, c, entry);
	cs->open++;
}

void
http_conn_busy(struct http_conns *cs, struct http_conn *c, int64_t now)
{
	if (c->state != HTTP_CONN_BUSY)
		TAILQ_REMOVE(&cs->waiting, c, entry);
	c->state = HTTP_CONN_BUSY;
	c->since_ms = now;
}

void
http_conn_idle(struct http_conns *cs, struct http_conn *c, int64_t now)
{
	if (c->state != HTTP_CONN_BUSY)
		TAILQ_REMOVE(&cs->waiting, c, entry);
	c->state = HTTP_CONN_IDLE;
	c->since_ms = now;
	TAILQ_INSERT_TAIL(&cs->waiting, c, entry);
}

void
http_conn_close(struct http_conns *cs, struct http_conn *c)
{
	if (c->state != HTTP_CONN_BUSY)
		TAILQ_REMOVE(&cs->waiting, c, entry);
	cs->open--;
}

int64_t
http_conn_deadline(const struct http_conn *c)
{
	return c->since_ms + (c->state == HTTP_CONN_FIRST ?
	    HTTP_REQUEST_DEADLINE_MS : HTTP_IDLE_DEADLINE_MS);
}

struct http_conn *
http_conns_victim(struct http_conns *cs, int64_t now)
{
	struct http_conn *c = TAILQ_FIRST(&cs->waiting);

	/* A clock that stepped back makes no one old enough. */
	if (c == NULL || now - c->since_ms < HTTP_RECLAIM_MS)
		return NULL;
	return c;
}

enum http_gate
http_conns_gate(struct http_conns *cs, int cap, int64_t now,
    int64_t paused_until, int64_t *wake_ms)
{
	struct http_conn *c;

	*wake_ms = -1;
	if (now < paused_until) {
		*wake_ms = paused_until;
		return HTTP_GATE_SHUT;
	}
	if (cs->open < cap)
		return HTTP_GATE_ACCEPT;
	if (http_conns_victim(cs, now) != NULL)
		return HTTP_GATE_WATCH;
	if ((c = TAILQ_FIRST(&cs->waiting)) != NULL)
		*wake_ms = c->since_ms + HTTP_RECLAIM_MS;
	return HTTP_GATE_SHUT;
}

int
http_cap_effective(int configured, uint64_t nofile)
{
	uint64_t half = nofile / 2;
	int cap = configured;

	if ((uint64_t)cap > half)
		cap = (int)half;
	return cap < 1 ? 1 : cap;
}

int
http_ratelimit_pass(struct http_ratelimit *rl, int64_t now,
    int64_t interval_ms, uint64_t *held)
{
	if (now < rl->next_ms) {
		rl->held++;
		return 0;
	}
	*held = rl->held;
	rl->held = 0;
	rl->next_ms = now + interval_ms;
	return 1;
}
