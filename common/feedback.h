/*
 * What digestd feeds back to the host application, and what the host
 * feeds back to digestd, on the queue Redis (docs/design.md, "Feedback
 * keys"):
 *
 *   digest:rejected    a stream, capped: one entry per recipient given up
 *                      (uid, email, gid, job_id, code, reply, at)
 *   digest:suppressed  a set of lowercased addresses that get no email:
 *                      those whose mailbox does not exist, and any the
 *                      host adds
 *   digest:muted:{gid} a set of uids that get nothing from group gid
 *
 * This module alone names these keys.  The two sets are the host's data
 * as much as digestd's (a mute is an unsubscription): they carry no TTL.
 */
#ifndef DIGESTD_FEEDBACK_H
#define DIGESTD_FEEDBACK_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "config.h"

#define FEEDBACK_REJECTED_MAXLEN 100000	/* rejects kept, about */
#define FEEDBACK_EMAIL_MAX	320		/* longest address checked */

/* A recipient given up. */
struct feedback_reject {
	int64_t uid;
	const char *email;	/* the address as the user hash holds it */
	int64_t gid;
	const char *job_id;
	const char *reply;	/* the server's last reply, or why; may be NULL */
	int permanent;		/* a 5xx: the address may be suppressed */
};

/* The key of the suppression set into buf; 0, or -1 if it does not fit. */
int feedback_key_suppressed(char *buf, size_t len, const struct config *);

/* The key of group gid's muted set into buf; 0 or -1. */
int feedback_key_muted(char *buf, size_t len, const struct config *,
    int64_t gid);

/*
 * Add uid to group gid's muted set (an unsubscription), waiting for the
 * reply.  0, or -1 with err when Redis did not take it.
 */
int feedback_mute(redisContext *q, const struct config *, int64_t uid,
    int64_t gid, char *err, size_t errlen);

/* The three-digit code an SMTP reply line starts with, or 0. */
int feedback_reply_code(const char *reply);

/*
 * 1 when a reply line ("550 5.1.1 <a@b>: User unknown") says the mailbox
 * does not exist, else 0.  The enhanced status decides when there is one
 * (5.1.x: a bad address; 5.7.1, a policy refusal, is not), else the code
 * (550, 551, 553).  A 4xx never does.
 */
int feedback_no_mailbox(const char *reply);

/*
 * Copy the address s into buf with its ASCII letters lowercased, as the
 * suppression set holds it.  0, or -1 when it does not fit.
 */
int feedback_lower(char *buf, size_t len, const char *s);

/*
 * Append the record of a recipient given up to digest:rejected and, for a
 * permanent reply saying the mailbox does not exist, its address to
 * digest:suppressed; send them without waiting.  Returns how many replies
 * the caller must read back (in order with what it had pending), or -1
 * when they could not be sent.
 */
int feedback_reject(redisContext *q, const struct config *,
    const struct feedback_reject *);

#endif
