/*
 * The feedback keys on the queue Redis (feedback.h): the record of every
 * recipient given up, the suppression set and the per-group mutes.  The
 * workers write the first two as replies come and read the sets once per
 * batch; the host application reads the stream and may write both sets.
 *
 * Whether a reply means the mailbox does not exist is decided here, from
 * the reply line alone, so that it can be tested without a server.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feedback.h"
#include "rconn.h"
#include "util.h"

int
feedback_key_suppressed(char *buf, size_t len, const struct config *cfg)
{
	return rkey(buf, len, cfg->redis.key_prefix, "digest:suppressed") ==
	    NULL ? -1 : 0;
}

int
feedback_key_muted(char *buf, size_t len, const struct config *cfg,
    int64_t gid)
{
	return rkey(buf, len, cfg->redis.key_prefix, "digest:muted:%lld",
	    (long long)gid) == NULL ? -1 : 0;
}

int
feedback_mute(redisContext *q, const struct config *cfg, int64_t uid,
    int64_t gid, char *err, size_t errlen)
{
	char key[512], u[24];
	redisReply *rep;
	int rc = -1;

	if (feedback_key_muted(key, sizeof(key), cfg, gid) == -1) {
		snprintf(err, errlen, "key prefix too long");
		return -1;
	}
	snprintf(u, sizeof(u), "%lld", (long long)uid);
	rep = redisCommand(q, "SADD %s %s", key, u);
	if (rep == NULL)
		snprintf(err, errlen, "queue redis: %s", q->errstr);
	else if (rep->type != REDIS_REPLY_INTEGER)
		snprintf(err, errlen, "queue redis: SADD: %.200s",
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "odd reply");
	else
		rc = 0;
	if (rep != NULL)
		freeReplyObject(rep);
	return rc;
}

int
feedback_reply_code(const char *reply)
{
	if (reply == NULL || !isdigit((unsigned char)reply[0]) ||
	    !isdigit((unsigned char)reply[1]) ||
	    !isdigit((unsigned char)reply[2]) ||
	    isdigit((unsigned char)reply[3]))
		return 0;
	if (reply[0] < '2' || reply[0] > '5')
		return 0;
	return (reply[0] - '0') * 100 + (reply[1] - '0') * 10 +
	    (reply[2] - '0');
}

/* A number of 1 to 3 digits at *p; -1 if none. */
static int
feedback_enh_part(const char **p)
{
	int n = 0, v = 0;

	while (isdigit((unsigned char)**p) && n < 4) {
		v = v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	return n >= 1 && n <= 3 ? v : -1;
}

/*
 * The enhanced status code (RFC 3463) after the reply code, if any:
 * class.subject.detail followed by a blank or the end.  0 with the class
 * and subject, or -1 when the reply has none.
 */
static int
feedback_enhanced(const char *reply, int *cls, int *subject)
{
	const char *p = reply + 3;
	int c, s, d;

	if (*p != ' ' && *p != '-')
		return -1;
	while (*p == ' ' || *p == '-')
		p++;
	if ((c = feedback_enh_part(&p)) == -1 || *p++ != '.' ||
	    (s = feedback_enh_part(&p)) == -1 || *p++ != '.' ||
	    (d = feedback_enh_part(&p)) == -1 || (*p != '\0' && *p != ' '))
		return -1;
	(void)d;
	*cls = c;
	*subject = s;
	return 0;
}

int
feedback_no_mailbox(const char *reply)
{
	int code, cls, subject;

	if ((code = feedback_reply_code(reply)) / 100 != 5)
		return 0;
	/*
	 * A 550 also answers spam and policy refusals, which say nothing
	 * of the mailbox: where the server says which it is, that decides.
	 */
	if (feedback_enhanced(reply, &cls, &subject) == 0)
		return cls == 5 && subject == 1;
	return code == 550 || code == 551 || code == 553;
}

int
feedback_lower(char *buf, size_t len, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (i + 1 >= len)
			return -1;
		buf[i] = (s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' :
		    s[i];
	}
	if (len == 0)
		return -1;
	buf[i] = '\0';
	return 0;
}

int
feedback_reject(redisContext *q, const struct config *cfg,
    const struct feedback_reject *fr)
{
	char key[512], skey[512], code[8] = "", lower[FEEDBACK_EMAIL_MAX + 1];
	const char *reply = fr->reply != NULL ? fr->reply : "";
	int c, n = 1, done = 0;

	if (q == NULL || q->err ||
	    rkey(key, sizeof(key), cfg->redis.key_prefix, "digest:rejected") ==
	    NULL || feedback_key_suppressed(skey, sizeof(skey), cfg) == -1)
		return -1;
	if ((c = feedback_reply_code(reply)) != 0)
		snprintf(code, sizeof(code), "%d", c);
	if (redisAppendCommand(q, "XADD %s MAXLEN ~ %d * uid %lld email %s "
	    "gid %lld job_id %s code %s reply %s at %.3f", key,
	    FEEDBACK_REJECTED_MAXLEN, (long long)fr->uid, fr->email,
	    (long long)fr->gid, fr->job_id, code, reply, now_real()) !=
	    REDIS_OK)
		goto fail;
	if (fr->permanent && feedback_no_mailbox(reply) &&
	    feedback_lower(lower, sizeof(lower), fr->email) == 0) {
		if (redisAppendCommand(q, "SADD %s %s", skey, lower) !=
		    REDIS_OK)
			goto fail;
		n++;
	}
	do {
		if (redisBufferWrite(q, &done) == REDIS_ERR)
			return -1;
	} while (!done);
	return n;
fail:
	if (q->err == REDIS_ERR_OOM)
		worker_oom();
	return -1;
}
