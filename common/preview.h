/*
 * digestctl's call into the worker (the supervisor's is worker/worker.h):
 * preview and send-test render one member's email with the worker's own
 * code (the reads of the activity store, the rules of who gets a digest,
 * the renderer and the transports), so that what an operator sees is
 * what the worker sends.  Declared here, in common/, because ctl/ sees
 * common/ headers only; defined in worker/preview.c and linked into
 * digestctl from libdigest.a with the rest of worker/.
 */
#ifndef DIGESTD_PREVIEW_H
#define DIGESTD_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "job.h"

/* One member's email for one window, or why there is none. */
struct preview {
	struct job job;			/* the job that would carry it */
	int eligible;			/* 1: msg holds the email */
	char *msg;			/* the RFC 5322 message, CRLF; owned */
	size_t len;
	char message_id[512];		/* without angle brackets */
	char rcpt[512];			/* the envelope address the worker uses */
	char rule[32];			/* not eligible: the rule that failed */
	char why[512];			/* ... and what it found */
};

/*
 * Build the email member uid of group gid gets for the window
 * [window_start, window_end] of period, reading the activity store data
 * and the mutes and suppression list on the queue Redis queue (nothing is
 * written anywhere): p->eligible and p->msg, or the
 * rule that skips the member in p->rule and p->why.  0, or -1 with err
 * when the store could not be read.  Free with preview_clear.
 */
int preview_build(const struct config *, redisContext *data,
    redisContext *queue, int64_t gid, int64_t uid, const char *period,
    int64_t window_start, int64_t window_end, struct preview *p, char *err,
    size_t errlen);
void preview_clear(struct preview *);

/*
 * Send p's email to the envelope recipient to through the configured
 * transport, as the worker would (the message itself unchanged).  0 when
 * the transport accepted it, or -1 with err.
 */
int preview_send(const struct config *, const struct preview *p,
    const char *to, char *err, size_t errlen);

#endif
