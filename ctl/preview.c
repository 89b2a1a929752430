/*
 * digestctl preview and send-test: the email one member would get for a
 * window, built by the worker's own code (common/preview.h, defined in
 * worker/preview.c), or the rule that skips the member and why.  preview
 * reads the activity store and writes nothing; send-test hands the email
 * to the configured transport with another envelope recipient.
 *
 * --part text and --part html print one part of the message decoded from
 * quoted-printable (the renderer's only encoding), for reading; mime, the
 * default, prints the message byte for byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "period.h"
#include "preview.h"
#include "util.h"

struct preview_args {
	int64_t gid;
	int64_t uid;
	int period;
	int64_t now;
	const char *part;		/* mime, text, html */
	const char *to;			/* send-test */
};

static int
preview_parse(const char *cmd, int argc, char **argv, struct preview_args *a)
{
	const char *v, *o, *p = "daily";
	int i;

	memset(a, 0, sizeof(*a));
	a->gid = a->uid = -1;
	a->now = (int64_t)time(NULL);
	a->part = "mime";
	for (i = 0; i < argc; i++) {
		o = argv[i];
		if (strcmp(o, "--group") != 0 && strcmp(o, "--user") != 0 &&
		    strcmp(o, "--period") != 0 && strcmp(o, "--now") != 0 &&
		    strcmp(o, "--part") != 0 && strcmp(o, "--to") != 0) {
			fprintf(stderr, "digestctl %s: unknown argument %s\n",
			    cmd, ctl_vis(o));
			return 2;
		}
		if ((v = ctl_optarg(argc, argv, &i)) == NULL)
			return 2;
		if ((strcmp(o, "--group") == 0 &&
		    parse_i64(v, 0, INT64_MAX, &a->gid) == 0) ||
		    (strcmp(o, "--user") == 0 &&
		    parse_i64(v, 0, INT64_MAX, &a->uid) == 0) ||
		    (strcmp(o, "--now") == 0 && ctl_parse_now(v, &a->now) == 0))
			continue;
		if (strcmp(o, "--period") == 0) {
			p = v;
			continue;
		}
		if (strcmp(o, "--part") == 0 && (strcmp(v, "mime") == 0 ||
		    strcmp(v, "text") == 0 || strcmp(v, "html") == 0)) {
			a->part = v;
			continue;
		}
		/* An envelope address: nothing that could end a command. */
		if (strcmp(o, "--to") == 0 && v[0] != '\0' &&
		    strpbrk(v, "\r\n<> ") == NULL) {
			a->to = v;
			continue;
		}
		fprintf(stderr, "digestctl %s: bad %s %s\n", cmd, o,
		    ctl_vis(v));
		return 2;
	}
	if (a->gid < 0 || a->uid < 0 || (a->period = period_parse(p)) == -1) {
		fprintf(stderr, "digestctl %s: --group GID and --user UID are "
		    "required, --period is daily or weekly\n", cmd);
		return 2;
	}
	return 0;
}

static int
preview_hex(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Print s[0..n) decoded from quoted-printable, CRLF as LF. */
static void
preview_qp(const char *s, size_t n)
{
	size_t i;
	int h, l;

	for (i = 0; i < n; i++) {
		if (s[i] == '=' && i + 2 < n && s[i + 1] == '\r' &&
		    s[i + 2] == '\n') {
			i += 2;		/* a soft line break */
			continue;
		}
		if (s[i] == '=' && i + 2 < n && (h = preview_hex(s[i + 1])) >= 0
		    && (l = preview_hex(s[i + 2])) >= 0) {
			putchar(h * 16 + l);
			i += 2;
			continue;
		}
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		putchar(s[i]);
	}
}

/* Print the body of the message's part of type, decoded.  0 / -1. */
static int
preview_part(const struct preview *p, const char *type)
{
	const char *msg = p->msg, *end = p->msg + p->len, *b, *q, *hdr, *body;
	char boundary[128], want[64];
	size_t blen;

	if ((b = memmem(msg, p->len, "boundary=\"", 10)) == NULL)
		return -1;
	b += 10;
	if ((q = memchr(b, '"', (size_t)(end - b))) == NULL ||
	    (size_t)(q - b) + 3 > sizeof(boundary))
		return -1;
	snprintf(boundary, sizeof(boundary), "--%.*s", (int)(q - b), b);
	blen = strlen(boundary);
	snprintf(want, sizeof(want), "Content-Type: %s", type);
	for (hdr = q; (hdr = memmem(hdr, (size_t)(end - hdr), boundary,
	    blen)) != NULL; ) {
		hdr += blen;
		if ((body = memmem(hdr, (size_t)(end - hdr), "\r\n\r\n", 4)) ==
		    NULL)
			return -1;
		body += 4;
		if (memmem(hdr, (size_t)(body - hdr), want, strlen(want)) ==
		    NULL)
			continue;
		if ((q = memmem(body, (size_t)(end - body), boundary, blen)) ==
		    NULL)
			return -1;
		preview_qp(body, (size_t)(q - body));
		return 0;
	}
	return -1;
}

/* Build a's preview; 0, 1 when the member is skipped (said), -1. */
static int
preview_make(struct ctl *c, const char *cmd, const struct preview_args *a,
    struct preview *p)
{
	int64_t ws, we;

	period_window(a->period, c->cfg->schedule.day_start_s, a->now, &ws,
	    &we);
	if (preview_build(c->cfg, c->data, c->qr, a->gid, a->uid,
	    period_name(a->period), ws, we, p, c->err, sizeof(c->err)) == -1) {
		fprintf(stderr, "digestctl %s: %s\n", cmd, ctl_vis(c->err));
		return -1;
	}
	if (p->eligible)
		return 0;
	/* The data came from the activity store: made safe. */
	printf("user %lld gets no %s digest from group %lld (job %s): %s: "
	    "%s\n", (long long)a->uid, period_name(a->period),
	    (long long)a->gid, p->job.job_id, p->rule, ctl_vis(p->why));
	return 1;
}

int
ctl_cmd_preview(struct ctl *c, int argc, char **argv)
{
	struct preview_args a;
	struct preview p;
	int rc;

	if ((rc = preview_parse("preview", argc, argv, &a)) != 0)
		return rc;
	if (a.to != NULL) {
		fprintf(stderr, "digestctl preview: --to is send-test's\n");
		return 2;
	}
	if ((rc = preview_make(c, "preview", &a, &p)) != 0)
		return rc == 1 ? 0 : 1;
	rc = 0;
	if (strcmp(a.part, "mime") == 0)
		fwrite(p.msg, 1, p.len, stdout);
	else if (preview_part(&p, strcmp(a.part, "text") == 0 ?
	    "text/plain" : "text/html") == -1) {
		fprintf(stderr, "digestctl preview: no %s part found\n",
		    a.part);
		rc = 1;
	}
	preview_clear(&p);
	return rc;
}

int
ctl_cmd_send_test(struct ctl *c, int argc, char **argv)
{
	struct preview_args a;
	struct preview p;
	int rc;

	if ((rc = preview_parse("send-test", argc, argv, &a)) != 0)
		return rc;
	if (a.to == NULL) {
		fprintf(stderr, "digestctl send-test: --to ADDR is required\n");
		return 2;
	}
	if ((rc = preview_make(c, "send-test", &a, &p)) != 0)
		return 1;
	if (preview_send(c->cfg, &p, a.to, c->err, sizeof(c->err)) == -1) {
		fprintf(stderr, "digestctl send-test: %s\n", ctl_vis(c->err));
		preview_clear(&p);
		return 1;
	}
	printf("sent %s (user %lld's email, Message-ID <%s>) to %s\n",
	    p.job.job_id, (long long)a.uid, ctl_vis(p.message_id), a.to);
	preview_clear(&p);
	return 0;
}
