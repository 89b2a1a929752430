/*
 * Digest templates: a small mustache-like language for the plain and HTML
 * parts of the email.
 *
 *   {{name}}             a value, HTML-escaped in an HTML template
 *   {{#posts}}...{{/posts}}  the posts, once each (exactly one, at the top)
 *   {{#name}}...{{/name}}    the inside only when name is not empty
 *   {{^name}}...{{/name}}    the inside only when name is empty
 *   {{! comment }}
 *
 * A section or comment tag alone on its line takes the whole line with it,
 * as in mustache.  Only known names are accepted, each in its scope: the
 * post's fields only inside {{#posts}}, the recipient's only outside it.
 * There is no unescaped form: nothing from Redis may reach the HTML raw.
 */
#ifndef DIGESTD_TEMPLATE_H
#define DIGESTD_TEMPLATE_H

#include <stddef.h>

#include "render.h"

enum tvar {
	/* The job: the same for every recipient. */
	TV_GROUP_NAME,
	TV_GROUP_URL,		/* empty unless http or https */
	TV_GROUP_ID,
	TV_PERIOD,		/* daily | weekly */
	/* The recipient. */
	TV_RECIPIENT_NAME,
	TV_RECIPIENT_EMAIL,
	TV_UNSUBSCRIBE_URL,
	TV_POST_COUNT,		/* posts listed for this recipient */
	/* A post, inside {{#posts}}. */
	TV_TITLE,
	TV_URL,			/* empty unless http or https */
	TV_AUTHOR,
	TV_EXCERPT,
	TV_LIKES,
	TV_COMMENTS,
	TV_POSTS,		/* the section */
	TV_COUNT
};

enum tscope { TSCOPE_JOB, TSCOPE_RECIPIENT, TSCOPE_POST, TSCOPE_SECTION };

enum tnode_kind { TN_TEXT, TN_VAR, TN_SECTION, TN_INVERTED };

struct tnode {
	int kind;		/* enum tnode_kind */
	int var;		/* enum tvar */
	int line;
	int dyn;		/* depends on the recipient */
	size_t off, len;	/* TN_TEXT: the text in the template's source */
	size_t end;		/* sections: index after the last child */
};

struct template {
	char *name;		/* the file, for messages */
	char *src;		/* the source, LF line endings */
	int html;		/* escape values for HTML */
	struct tnode *nodes;
	size_t nnodes;
	size_t posts;		/* index of the {{#posts}} node */
};

/*
 * Parse a template.  name is used in messages ("FILE:LINE: ...").  Returns
 * NULL with err set on a syntax error, an unknown or misplaced name, an
 * unclosed or mismatched section, or a missing {{#posts}} section.
 */
struct template *template_parse(const char *name, const char *buf, size_t len,
    int html, char *err, size_t errlen);
/* Read and parse a file; NULL with err as above, or naming the I/O error. */
struct template *template_load(const char *path, int html, char *err,
    size_t errlen);
void template_free(struct template *);

/* The name of a variable, the scope it belongs to. */
const char *template_var_name(int var);
int template_var_scope(int var);

/*
 * A value for a variable: raw text (len bytes, not escaped), or NULL/0
 * for empty.
 */
typedef const char *(*template_lookup_fn)(void *arg, int var, size_t *len);

/*
 * Append the nodes [from, to) to out, values escaped for the template's
 * context.  A {{#posts}} section met here is skipped: the caller walks the
 * posts itself.
 */
void template_expand(const struct template *, size_t from, size_t to,
    template_lookup_fn, void *arg, struct rbuf *out);

/* Index of the node after node i (past its children for a section). */
size_t template_next(const struct template *, size_t i);

/* The built-in templates, compiled into the binary. */
extern const char template_builtin_text[];
extern const char template_builtin_html[];

#endif
