/*
 * Digest templates: a small mustache-like language for the plain and HTML
 * parts of the email.
 *
 *   {{name}}             a value, HTML-escaped in an HTML template
 *   {{#posts}}...{{/posts}}  the posts, once each (exactly one, at the top)
 *   {{#name}}...{{/name}}    the inside only when name is not empty
 *   {{^name}}...{{/name}}    the inside only when name is empty
 *   {{! comment }}
 *   {{count|one|other}}      the form for that number, by the language's
 *                            plural rule (count: post_count, likes or
 *                            comments; the forms are template text)
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

enum tnode_kind { TN_TEXT, TN_VAR, TN_SECTION, TN_INVERTED, TN_PLURAL };

/*
 * Plural rules: how a number picks one of a tag's forms, by language
 * (CLDR's cardinal categories, in their order: one, few, many, other).
 */
enum tplural {
	TP_ONE_OTHER,	/* en, de, nl, sv, it, es...: 1 | other */
	TP_ZERO_ONE,	/* fr, pt: 0 and 1 | other */
	TP_NONE,	/* ja, zh, ko, vi, th, id: one form */
	TP_SLAVIC,	/* ru, uk, be, sr, hr, bs: 1, 21 | 2-4, 22-24 | other */
	TP_POLISH,	/* pl: 1 | 2-4, 22-24 | other */
	TP_CZECH,	/* cs, sk: 1 | 2-4 | other */
};

struct tnode {
	int kind;		/* enum tnode_kind */
	int var;		/* enum tvar */
	int line;
	int dyn;		/* depends on the recipient */
	size_t off, len;	/* TN_TEXT: the text in the template's source;
				   TN_PLURAL: its forms, "|" between them */
	size_t end;		/* sections: index after the last child */
};

struct template {
	char *name;		/* the file, for messages */
	char *src;		/* the source, LF line endings */
	int html;		/* escape values for HTML */
	int line_only;		/* a subject: one line, no posts */
	int plural;		/* enum tplural of its language */
	struct tnode *nodes;
	size_t nnodes;
	size_t posts;		/* index of the {{#posts}} node (body) */
};

/*
 * Parse a template.  name is used in messages ("FILE:LINE: ...").  Returns
 * NULL with err set on a syntax error, an unknown or misplaced name, an
 * unclosed or mismatched section, or a missing {{#posts}} section.
 */
struct template *template_parse(const char *name, const char *buf, size_t len,
    int html, char *err, size_t errlen);
/*
 * Parse a one-line template (the Subject): the same language without
 * {{#posts}}; one trailing line break is dropped, a second line is an
 * error.
 */
struct template *template_parse_line(const char *name, const char *buf,
    size_t len, char *err, size_t errlen);
/*
 * Read and parse a file (line_only: as template_parse_line); NULL with err
 * as above, or naming the I/O error.
 */
struct template *template_load(const char *path, int html, int line_only,
    char *err, size_t errlen);

/*
 * The plural rule of a locale ("de", "pt_BR", "ru"): by its language,
 * TP_ONE_OTHER for one not known.
 */
int template_plural_rule(const char *locale);
/* The index of the form that n takes under rule (0 for the first). */
int template_plural_index(int rule, long long n);

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
extern const char template_builtin_subject[];

#endif
