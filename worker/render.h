/*
 * Rendering a digest email (docs/design.md#recipients-and-the-email): RFC
 * 5322, CRLF, multipart/alternative with a text/plain then a text/html part,
 * from built-in templates or those of digest.template_dir.
 *
 * Everything read from Redis is untrusted: no CR, LF or NUL reaches a
 * header, HTML is escaped in text and attribute contexts, and only http
 * and https URLs become links.
 *
 * The work is split so that the per-recipient part is small: render_job
 * escapes and encodes the group and its posts once per job; render_message
 * then assembles one recipient's email from those pieces.
 */
#ifndef DIGESTD_RENDER_H
#define DIGESTD_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "job.h"

/* A post of the window, as read from post:{pid}.  Strings may be NULL. */
struct post {
	int64_t id;
	int64_t posted_at;		/* its score in group:{gid}:posts */
	int64_t author_id;		/* -1 when missing or not a number */
	int64_t likes;			/* missing or non-numeric: 0 */
	int64_t comments;
	const char *title;
	const char *url;
	const char *author_name;
	const char *excerpt;
};

struct group_info {
	int64_t id;
	const char *name;		/* may be NULL */
	const char *url;		/* may be NULL */
	int64_t members;		/* ZCARD of the whole membership */
};

struct recipient {
	int64_t uid;
	const char *email;
	const char *name;		/* may be NULL */
	const char *locale;		/* "de", "pt-BR"; may be NULL */
};

/* A growable output buffer; render_message appends to it. */
struct rbuf {
	char *p;
	size_t len;
	size_t cap;
};

void rbuf_reset(struct rbuf *);
void rbuf_free(struct rbuf *);

struct render;

/*
 * Load the templates (built in, or cfg->digest.template_dir and its
 * template_dir/{locale}/ directories).  NULL with err naming the file and
 * the problem when a template is broken.
 */
struct render *render_new(const struct config *, char *err, size_t errlen);
void render_free(struct render *);

/*
 * The renderer's checks of a configuration (worker_check_config): the
 * templates load, and digest.from and digest.unsubscribe_url are usable.
 * 0, or -1 with err naming the file and line of a broken template, or the
 * key.
 */
int render_check_config(const struct config *, char *err, size_t errlen);

/*
 * Sort posts by engagement (likes + comments, newer first on ties) in
 * place; exposed for tests.
 */
void render_sort_posts(struct post *, size_t n);

/*
 * Prepare one job: sorts the posts and pre-renders the group and each post.
 * The posts and group strings must stay valid until the next render_job
 * or render_free.  0, or -1 on out of memory.
 */
int render_job(struct render *, const struct job *, const struct group_info *,
    struct post *posts, size_t nposts);

/*
 * Append one recipient's whole message to out, in the templates of the
 * recipient's locale (else its parent language's, else the default
 * ones): up to max_posts posts of the job not written by the recipient.
 * Returns the number of posts listed (0: nothing new for this member,
 * nothing appended), or -1 when the recipient cannot be addressed (a bad
 * address, or a local part outside ASCII), which is logged with why.
 * message_id receives "{job_id}.{uid}@{domain}" (no angle brackets).
 */
int render_message(struct render *, const struct recipient *, struct rbuf *out,
    char *message_id, size_t midlen);

/*
 * The envelope address of the last message rendered: the recipient's,
 * its domain in punycode when it was not ASCII.  Valid until the next
 * render_message; NULL when that returned -1.
 */
const char *render_rcpt(const struct render *);

#endif
