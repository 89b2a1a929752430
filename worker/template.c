/*
 * Digest templates (see template.h for the language): the built-in plain
 * and HTML templates, the parser that turns a template into a flat array
 * of nodes and refuses anything it does not know, and the expander.
 *
 * A template is checked whole at load time, at start and on reload, so a
 * typo in an operator's template is a configuration error with a file and
 * a line, never a broken email in the middle of a job.  The parser also
 * marks the nodes that depend on the recipient: render.c renders all the
 * others once per job.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mime.h"
#include "template.h"
#include "util.h"

#define TEMPLATE_MAX_SIZE	(256 * 1024)
#define TEMPLATE_MAX_DEPTH	16

const char template_builtin_text[] =
"{{#recipient_name}}\n"
"Hello {{recipient_name}},\n"
"{{/recipient_name}}\n"
"{{^recipient_name}}\n"
"Hello,\n"
"{{/recipient_name}}\n"
"\n"
"Your {{period}} digest of {{group_name}}: {{post_count}} "
"{{post_count|new post|new posts}}.\n"
"{{#group_url}}\n"
"{{group_url}}\n"
"{{/group_url}}\n"
"\n"
"{{#posts}}\n"
"{{title}}\n"
"by {{author}} - {{likes}} {{likes|like|likes}}, {{comments}} "
"{{comments|comment|comments}}\n"
"{{#url}}\n"
"{{url}}\n"
"{{/url}}\n"
"{{#excerpt}}\n"
"{{excerpt}}\n"
"{{/excerpt}}\n"
"\n"
"{{/posts}}\n"
"-- \n"
"You receive this email because you are a member of {{group_name}}.\n"
"Unsubscribe: {{unsubscribe_url}}\n";

const char template_builtin_html[] =
"<!DOCTYPE html>\n"
"<html>\n"
"<head>\n"
"<meta charset=\"utf-8\">\n"
"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
"<title>{{group_name}}</title>\n"
"<style>\n"
"body{margin:0;padding:24px 12px;background:#f4f5f7;"
"font-family:Helvetica,Arial,sans-serif;color:#1f2328}\n"
".digest{max-width:600px;margin:0 auto;background:#fff;border-radius:6px;"
"padding:8px 24px}\n"
"h1{font-size:20px;margin:8px 0 0}\n"
"h2{font-size:17px;margin:0 0 4px}\n"
"a{color:#0969da;text-decoration:none}\n"
".post{padding:16px 0;border-top:1px solid #d8dee4}\n"
".meta{font-size:13px;color:#656d76;margin:4px 0 8px}\n"
".foot{font-size:12px;color:#656d76;padding:16px 0;"
"border-top:1px solid #d8dee4}\n"
"</style>\n"
"</head>\n"
"<body>\n"
"<div class=\"digest\">\n"
"<p>{{#recipient_name}}Hello {{recipient_name}},{{/recipient_name}}"
"{{^recipient_name}}Hello,{{/recipient_name}}</p>\n"
"<h1>{{#group_url}}<a href=\"{{group_url}}\">{{group_name}}</a>"
"{{/group_url}}{{^group_url}}{{group_name}}{{/group_url}}</h1>\n"
"<p class=\"meta\">Your {{period}} digest: {{post_count}} "
"{{post_count|new post|new posts}}</p>\n"
"{{#posts}}\n"
"<div class=\"post\">\n"
"<h2>{{#url}}<a href=\"{{url}}\">{{title}}</a>{{/url}}{{^url}}{{title}}"
"{{/url}}</h2>\n"
"<p class=\"meta\">by {{author}} &middot; {{likes}} {{likes|like|likes}} "
"&middot; {{comments}} {{comments|comment|comments}}</p>\n"
"{{#excerpt}}\n"
"<p>{{excerpt}}</p>\n"
"{{/excerpt}}\n"
"</div>\n"
"{{/posts}}\n"
"<p class=\"foot\">You receive this email because you are a member of "
"{{group_name}}.\n"
"<a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>\n"
"</div>\n"
"</body>\n"
"</html>\n";

/* The Subject: it names the group. */
const char template_builtin_subject[] =
"Your {{period}} digest: {{group_name}}\n";

static const struct {
	const char *name;
	int scope;
} template_vars[TV_COUNT] = {
	[TV_GROUP_NAME] = { "group_name", TSCOPE_JOB },
	[TV_GROUP_URL] = { "group_url", TSCOPE_JOB },
	[TV_GROUP_ID] = { "group_id", TSCOPE_JOB },
	[TV_PERIOD] = { "period", TSCOPE_JOB },
	[TV_RECIPIENT_NAME] = { "recipient_name", TSCOPE_RECIPIENT },
	[TV_RECIPIENT_EMAIL] = { "recipient_email", TSCOPE_RECIPIENT },
	[TV_UNSUBSCRIBE_URL] = { "unsubscribe_url", TSCOPE_RECIPIENT },
	[TV_POST_COUNT] = { "post_count", TSCOPE_RECIPIENT },
	[TV_TITLE] = { "title", TSCOPE_POST },
	[TV_URL] = { "url", TSCOPE_POST },
	[TV_AUTHOR] = { "author", TSCOPE_POST },
	[TV_EXCERPT] = { "excerpt", TSCOPE_POST },
	[TV_LIKES] = { "likes", TSCOPE_POST },
	[TV_COMMENTS] = { "comments", TSCOPE_POST },
	[TV_POSTS] = { "posts", TSCOPE_SECTION },
};

const char *
template_var_name(int var)
{
	return var >= 0 && var < TV_COUNT ? template_vars[var].name : "?";
}

int
template_var_scope(int var)
{
	return template_vars[var].scope;
}

static int
template_var_find(const char *s, size_t len)
{
	int i;

	/* The post's author is author_name in Redis; accept both. */
	if (len == 11 && memcmp(s, "author_name", 11) == 0)
		return TV_AUTHOR;
	for (i = 0; i < TV_COUNT; i++)
		if (strlen(template_vars[i].name) == len &&
		    memcmp(template_vars[i].name, s, len) == 0)
			return i;
	return -1;
}

void
template_free(struct template *t)
{
	if (t == NULL)
		return;
	free(t->name);
	free(t->src);
	free(t->nodes);
	free(t);
}

static int
template_add(struct template *t, size_t *cap, const struct tnode *n)
{
	struct tnode *nn;

	if (t->nnodes == *cap) {
		*cap = *cap ? *cap * 2 : 32;
		if ((nn = realloc(t->nodes, *cap * sizeof(*nn))) == NULL)
			return -1;
		t->nodes = nn;
	}
	t->nodes[t->nnodes++] = *n;
	return 0;
}

static size_t
count_lines(const char *s, size_t from, size_t to)
{
	size_t n = 0;

	for (; from < to; from++)
		if (s[from] == '\n')
			n++;
	return n;
}

/* A printable copy of a tag's name for messages. */
static void
tag_name(char *buf, size_t buflen, const char *s, size_t len)
{
	size_t i;

	if (len > 40)
		len = 40;
	for (i = 0; i < len && i + 1 < buflen; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[i] = '\0';
}

static struct template *
template_parse_kind(const char *name, const char *buf, size_t len, int html,
    int line_only, char *err, size_t errlen)
{
	struct template *t;
	struct tnode n;
	size_t stack[TEMPLATE_MAX_DEPTH];
	size_t cap = 0, i, j, pos, text_start, tag, close, ls, after, depth = 0;
	size_t nlen, nforms = 0, in_posts = 0;
	const char *inner, *bar, *forms = NULL;
	char shown[48];
	int line = 1, tagline, var, have_posts = 0;
	char sigil;

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->name = strdup(name)) == NULL ||
	    (t->src = malloc(len + 1)) == NULL)
		goto oom;
	t->html = html;
	t->line_only = line_only;
	t->plural = TP_ONE_OTHER;
	/* Line endings become LF; render.c writes CRLF when encoding. */
	for (i = j = 0; i < len; i++) {
		if (buf[i] == '\0') {
			snprintf(err, errlen, "%s:%d: NUL byte in template",
			    name, 1 + (int)count_lines(buf, 0, i));
			goto fail;
		}
		if (buf[i] == '\r') {
			t->src[j++] = '\n';
			if (i + 1 < len && buf[i + 1] == '\n')
				i++;
		} else
			t->src[j++] = buf[i];
	}
	t->src[j] = '\0';
	len = j;
	if (line_only) {
		if (len > 0 && t->src[len - 1] == '\n')
			t->src[--len] = '\0';
		if (memchr(t->src, '\n', len) != NULL) {
			snprintf(err, errlen, "%s:2: a subject is one line",
			    name);
			goto fail;
		}
	}

	pos = text_start = 0;
	for (;;) {
		char *p = strstr(t->src + pos, "{{");

		if (p == NULL)
			break;
		tag = (size_t)(p - t->src);
		tagline = line + (int)count_lines(t->src, pos, tag);
		p = strstr(t->src + tag + 2, "}}");
		if (p == NULL || memchr(t->src + tag, '\n',
		    (size_t)(p - t->src) - tag) != NULL) {
			snprintf(err, errlen, "%s:%d: unclosed tag \"{{\"",
			    name, tagline);
			goto fail;
		}
		close = (size_t)(p - t->src);
		inner = t->src + tag + 2;
		nlen = close - tag - 2;
		while (nlen > 0 && (*inner == ' ' || *inner == '\t')) {
			inner++;
			nlen--;
		}
		sigil = nlen > 0 && strchr("#^/!{&", *inner) ? *inner : 0;
		if (sigil) {
			inner++;
			nlen--;
		}
		while (nlen > 0 && (*inner == ' ' || *inner == '\t')) {
			inner++;
			nlen--;
		}
		while (nlen > 0 && (inner[nlen - 1] == ' ' ||
		    inner[nlen - 1] == '\t'))
			nlen--;
		tag_name(shown, sizeof(shown), inner, nlen);
		if (sigil == '{' || sigil == '&') {
			snprintf(err, errlen, "%s:%d: unescaped {{%c%s}} is not "
			    "supported", name, tagline, sigil, shown);
			goto fail;
		}

		/* A section or comment tag alone on its line takes the line. */
		after = close + 2;
		ls = tag;
		while (ls > 0 && t->src[ls - 1] != '\n')
			ls--;
		if (sigil != 0 && ls >= text_start) {
			size_t k;
			int alone = 1;

			for (k = ls; k < tag; k++)
				if (t->src[k] != ' ' && t->src[k] != '\t')
					alone = 0;
			for (k = after; alone && k < len && t->src[k] != '\n';
			    k++)
				if (t->src[k] != ' ' && t->src[k] != '\t')
					alone = 0;
			if (alone) {
				tag = ls;
				after = k < len ? k + 1 : k;
			}
		}
		if (tag > text_start) {
			memset(&n, 0, sizeof(n));
			n.kind = TN_TEXT;
			n.line = line;
			n.off = text_start;
			n.len = tag - text_start;
			if (template_add(t, &cap, &n) == -1)
				goto oom;
		}
		line += (int)count_lines(t->src, pos, after);
		pos = text_start = after;

		if (sigil == '!')
			continue;
		if (sigil == 0 && (bar = memchr(inner, '|', nlen)) != NULL) {
			/* {{count|one|other}}: the forms are template text. */
			forms = bar + 1;
			nforms = nlen - (size_t)(forms - inner);
			nlen = (size_t)(bar - inner);
			while (nlen > 0 && (inner[nlen - 1] == ' ' ||
			    inner[nlen - 1] == '\t'))
				nlen--;
			tag_name(shown, sizeof(shown), inner, nlen);
		} else
			forms = NULL;
		if ((var = template_var_find(inner, nlen)) == -1) {
			snprintf(err, errlen, "%s:%d: unknown placeholder "
			    "{{%s%s}}", name, tagline, sigil == 0 ? "" :
			    sigil == '#' ? "#" : sigil == '^' ? "^" : "/", shown);
			goto fail;
		}
		if (sigil == '/') {
			struct tnode *open;

			if (depth == 0) {
				snprintf(err, errlen, "%s:%d: {{/%s}} closes no "
				    "section", name, tagline, shown);
				goto fail;
			}
			open = &t->nodes[stack[depth - 1]];
			if (open->var != var) {
				snprintf(err, errlen, "%s:%d: {{/%s}} closes "
				    "{{#%s}} opened at line %d", name, tagline,
				    shown, template_var_name(open->var),
				    open->line);
				goto fail;
			}
			if (var == TV_POSTS)
				in_posts = 0;
			open->end = t->nnodes;
			depth--;
			continue;
		}
		if (forms != NULL && var != TV_POST_COUNT && var != TV_LIKES &&
		    var != TV_COMMENTS) {
			snprintf(err, errlen, "%s:%d: {{%s|...}}: only post_count, "
			    "likes and comments are numbers", name, tagline,
			    shown);
			goto fail;
		}
		if (var == TV_POSTS && line_only) {
			snprintf(err, errlen, "%s:%d: no {{%s%s}} in a subject",
			    name, tagline, sigil == '#' ? "#" : sigil == '^' ?
			    "^" : "", shown);
			goto fail;
		}
		if (var == TV_POSTS && (sigil != '#' || depth != 0 ||
		    have_posts)) {
			snprintf(err, errlen, "%s:%d: {{%s%s}}: the posts are one "
			    "{{#posts}} section at the top level", name,
			    tagline, sigil == '^' ? "^" : sigil == '#' ? "#" : "",
			    shown);
			goto fail;
		}
		if (template_vars[var].scope == TSCOPE_POST && !in_posts) {
			snprintf(err, errlen, "%s:%d: {{%s}} is only known inside "
			    "{{#posts}}", name, tagline, shown);
			goto fail;
		}
		if (template_vars[var].scope == TSCOPE_RECIPIENT && in_posts) {
			snprintf(err, errlen, "%s:%d: {{%s}} cannot be used "
			    "inside {{#posts}}", name, tagline, shown);
			goto fail;
		}
		memset(&n, 0, sizeof(n));
		n.var = var;
		n.line = tagline;
		if (forms != NULL) {
			n.kind = TN_PLURAL;
			n.off = (size_t)(forms - t->src);
			n.len = nforms;
			if (template_add(t, &cap, &n) == -1)
				goto oom;
			continue;
		}
		if (sigil == 0) {
			n.kind = TN_VAR;
			if (template_add(t, &cap, &n) == -1)
				goto oom;
			continue;
		}
		if (depth == TEMPLATE_MAX_DEPTH) {
			snprintf(err, errlen, "%s:%d: sections nested too deep",
			    name, tagline);
			goto fail;
		}
		n.kind = sigil == '#' ? TN_SECTION : TN_INVERTED;
		if (var == TV_POSTS) {
			have_posts = 1;
			in_posts = 1;
			t->posts = t->nnodes;
		}
		stack[depth++] = t->nnodes;
		if (template_add(t, &cap, &n) == -1)
			goto oom;
	}
	if (len > text_start) {
		memset(&n, 0, sizeof(n));
		n.kind = TN_TEXT;
		n.line = line;
		n.off = text_start;
		n.len = len - text_start;
		if (template_add(t, &cap, &n) == -1)
			goto oom;
	}
	if (depth > 0) {
		struct tnode *open = &t->nodes[stack[depth - 1]];

		snprintf(err, errlen, "%s:%d: unclosed section {{%s%s}}", name,
		    open->line, open->kind == TN_SECTION ? "#" : "^",
		    template_var_name(open->var));
		goto fail;
	}
	if (!have_posts && !line_only) {
		snprintf(err, errlen, "%s:%d: no {{#posts}} section", name,
		    line);
		goto fail;
	}
	/* Children come after their section: walk backwards to mark. */
	for (i = t->nnodes; i-- > 0;) {
		struct tnode *nd = &t->nodes[i];

		if (nd->kind == TN_TEXT)
			continue;
		nd->dyn = template_vars[nd->var].scope == TSCOPE_RECIPIENT;
		if (nd->kind != TN_VAR)
			for (j = i + 1; j < nd->end && !nd->dyn; j++)
				nd->dyn = t->nodes[j].dyn;
	}
	return t;

oom:
	snprintf(err, errlen, "%s: out of memory", name);
fail:
	template_free(t);
	return NULL;
}

struct template *
template_parse(const char *name, const char *buf, size_t len, int html,
    char *err, size_t errlen)
{
	return template_parse_kind(name, buf, len, html, 0, err, errlen);
}

struct template *
template_parse_line(const char *name, const char *buf, size_t len, char *err,
    size_t errlen)
{
	return template_parse_kind(name, buf, len, 0, 1, err, errlen);
}

struct template *
template_load(const char *path, int html, int line_only, char *err,
    size_t errlen)
{
	struct template *t;
	char *buf;
	size_t len;

	/* Never blocks: a FIFO in template_dir fails the reload at once. */
	if (read_regular_file(path, TEMPLATE_MAX_SIZE, &buf, &len, err,
	    errlen) == -1)
		return NULL;
	t = template_parse_kind(path, buf, len, html, line_only, err, errlen);
	free(buf);
	return t;
}

size_t
template_next(const struct template *t, size_t i)
{
	return t->nodes[i].kind == TN_SECTION ||
	    t->nodes[i].kind == TN_INVERTED ? t->nodes[i].end : i + 1;
}

int
template_plural_rule(const char *locale)
{
	static const struct {
		const char *lang;
		int rule;
	} rules[] = {
		{ "fr", TP_ZERO_ONE }, { "pt", TP_ZERO_ONE },
		{ "hi", TP_ZERO_ONE }, { "ja", TP_NONE }, { "zh", TP_NONE },
		{ "ko", TP_NONE }, { "vi", TP_NONE }, { "th", TP_NONE },
		{ "id", TP_NONE }, { "ms", TP_NONE }, { "ru", TP_SLAVIC },
		{ "uk", TP_SLAVIC }, { "be", TP_SLAVIC }, { "sr", TP_SLAVIC },
		{ "hr", TP_SLAVIC }, { "bs", TP_SLAVIC }, { "pl", TP_POLISH },
		{ "cs", TP_CZECH }, { "sk", TP_CZECH },
	};
	size_t i, n;

	if (locale == NULL)
		return TP_ONE_OTHER;
	n = strcspn(locale, "_-");
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (strlen(rules[i].lang) == n &&
		    strncasecmp(rules[i].lang, locale, n) == 0)
			return rules[i].rule;
	return TP_ONE_OTHER;
}

int
template_plural_index(int rule, long long n)
{
	long long a = n >= 0 ? n : n == LLONG_MIN ? LLONG_MAX : -n;
	long long m10 = a % 10, m100 = a % 100;

	switch (rule) {
	case TP_NONE:
		return 0;
	case TP_ZERO_ONE:
		return a <= 1 ? 0 : 1;
	case TP_SLAVIC:
		if (m10 == 1 && m100 != 11)
			return 0;
		return m10 >= 2 && m10 <= 4 && (m100 < 12 || m100 > 14) ? 1 : 2;
	case TP_POLISH:
		if (a == 1)
			return 0;
		return m10 >= 2 && m10 <= 4 && (m100 < 12 || m100 > 14) ? 1 : 2;
	case TP_CZECH:
		return a == 1 ? 0 : a >= 2 && a <= 4 ? 1 : 2;
	default:
		return a == 1 ? 0 : 1;
	}
}

/* Append the form of a plural tag that the value v (decimal) takes. */
static void
template_plural(const struct template *t, const struct tnode *n,
    const char *v, size_t vlen, struct rbuf *out)
{
	const char *f = t->src + n->off, *end = f + n->len, *bar;
	long long num = 0;
	size_t i = 0;
	int neg = 0, idx;

	if (vlen > 0 && v[0] == '-')
		neg = 1, i = 1;
	for (; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
		num = num < 100000000000000LL ? num * 10 + (v[i] - '0') : num;
	/* A form too many is ignored; one too few repeats the last. */
	for (idx = template_plural_index(t->plural, neg ? -num : num);
	    idx > 0 && (bar = memchr(f, '|', (size_t)(end - f))) != NULL;
	    idx--)
		f = bar + 1;
	if ((bar = memchr(f, '|', (size_t)(end - f))) != NULL)
		end = bar;
	/* "{{n | post | posts}}" reads as "{{n|post|posts}}". */
	while (f < end && (*f == ' ' || *f == '\t'))
		f++;
	while (end > f && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	rbuf_add(out, f, (size_t)(end - f));
}

void
template_expand(const struct template *t, size_t from, size_t to,
    template_lookup_fn lookup, void *arg, struct rbuf *out)
{
	const struct tnode *n;
	const char *v;
	size_t i, vlen;

	for (i = from; i < to; i = template_next(t, i)) {
		n = &t->nodes[i];
		if (n->kind == TN_TEXT) {
			rbuf_add(out, t->src + n->off, n->len);
			continue;
		}
		if (n->var == TV_POSTS)
			continue;
		vlen = 0;
		if ((v = lookup(arg, n->var, &vlen)) == NULL)
			vlen = 0;
		if (n->kind == TN_PLURAL)
			template_plural(t, n, v, vlen, out);
		else if (n->kind == TN_VAR) {
			if (vlen == 0)
				;
			else if (t->html)
				mime_html_escape(out, v, vlen);
			else
				rbuf_add(out, v, vlen);
		} else if ((n->kind == TN_SECTION) == (vlen > 0))
			template_expand(t, i + 1, n->end, lookup, arg, out);
	}
}
