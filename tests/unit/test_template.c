/*
 * Unit tests for worker/template.c: the built-in templates parse, values
 * are escaped for the context, sections and standalone lines behave, and
 * every broken template is refused with its file and line, including
 * through render_new and digest.template_dir.
 */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mime.h"
#include "render.h"
#include "template.h"

struct vals {
	const char *v[TV_COUNT];
};

static const char *
lookup(void *arg, int var, size_t *len)
{
	struct vals *vs = arg;

	if (vs->v[var] == NULL)
		return NULL;
	*len = strlen(vs->v[var]);
	return vs->v[var];
}

static void
parse_fails(const char *src, const char *want)
{
	char err[512] = "";
	struct template *t;

	t = template_parse("digest.txt", src, strlen(src), 0, err, sizeof(err));
	if (t != NULL)
		fail_msg("parsed: %s", src);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void
test_builtin_parse(void **state)
{
	char err[256];
	struct template *t;

	(void)state;
	t = template_parse("b", template_builtin_text,
	    strlen(template_builtin_text), 0, err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(t->nodes[t->posts].var, TV_POSTS);
	template_free(t);
	t = template_parse("b", template_builtin_html,
	    strlen(template_builtin_html), 1, err, sizeof(err));
	assert_non_null(t);
	/* No script in the HTML we ship. */
	assert_null(strstr(template_builtin_html, "<script"));
	template_free(t);
	template_free(NULL);
}

/* The rules pick the CLDR category's form for each language. */
static void
test_plural_rules(void **state)
{
	static const struct {
		const char *locale;
		long long n;
		int want;
	} cases[] = {
		{ "en", 0, 1 }, { "en", 1, 0 }, { "en", 2, 1 }, { "en", 11, 1 },
		{ "de_AT", 1, 0 }, { "de-at", 21, 1 }, { NULL, 1, 0 },
		{ "xx", 1, 0 }, { "xx", 5, 1 },
		{ "fr", 0, 0 }, { "fr", 1, 0 }, { "fr", 2, 1 },
		{ "pt_BR", 0, 0 }, { "pt-BR", 3, 1 },
		{ "ja", 1, 0 }, { "zh_Hant", 7, 0 },
		{ "ru", 1, 0 }, { "ru", 21, 0 }, { "ru", 11, 2 }, { "ru", 2, 1 },
		{ "ru", 22, 1 }, { "ru", 12, 2 }, { "ru", 5, 2 }, { "ru", 0, 2 },
		{ "uk", 111, 2 }, { "uk", 101, 0 },
		{ "pl", 1, 0 }, { "pl", 21, 2 }, { "pl", 22, 1 }, { "pl", 14, 2 },
		{ "cs", 1, 0 }, { "cs", 3, 1 }, { "cs", 5, 2 }, { "sk", 22, 2 },
		{ "en", -1, 0 }, { "en", -2, 1 }, { "ru", -9223372036854775807LL - 1,
		    2 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = template_plural_index(
		    template_plural_rule(cases[i].locale), cases[i].n);

		if (got != cases[i].want)
			fail_msg("%s %lld: form %d, want %d", cases[i].locale ?
			    cases[i].locale : "(null)", cases[i].n, got,
			    cases[i].want);
	}
}

static char *
expand_all(struct template *t, struct vals *vs)
{
	struct rbuf out = { 0 };
	char *s;

	template_expand(t, 0, t->nnodes, lookup, vs, &out);
	s = strdup(out.p != NULL ? out.p : "");
	rbuf_free(&out);
	return s;
}

/* {{count|one|other}}: the form by the template's language, text raw. */
static void
test_plural_tag(void **state)
{
	static const char src[] = "{{post_count}} {{ post_count | new post|"
	    "new <b>posts</b>}}!\n{{#posts}}{{likes|like|likes}}{{/posts}}";
	struct vals vs;
	struct template *t;
	char err[256], *s;

	(void)state;
	memset(&vs, 0, sizeof(vs));
	t = template_parse("d.html", src, strlen(src), 1, err, sizeof(err));
	assert_non_null(t);
	/* The count names the recipient: rendered per message. */
	vs.v[TV_POST_COUNT] = "1";
	s = expand_all(t, &vs);
	assert_string_equal(s, "1 new post!\n");
	free(s);
	vs.v[TV_POST_COUNT] = "2";
	s = expand_all(t, &vs);
	assert_string_equal(s, "2 new <b>posts</b>!\n");
	free(s);
	/* Polish takes the third form for 5; a form missing: the last one. */
	t->plural = template_plural_rule("pl");
	vs.v[TV_POST_COUNT] = "5";
	s = expand_all(t, &vs);
	assert_string_equal(s, "5 new <b>posts</b>!\n");
	free(s);
	template_free(t);

	parse_fails("{{group_name|a|b}}{{#posts}}{{/posts}}",
	    "digest.txt:1: {{group_name|...}}: only post_count, likes and "
	    "comments are numbers");
	parse_fails("{{likes|a|b}}{{#posts}}{{/posts}}",
	    "{{likes}} is only known inside {{#posts}}");
	parse_fails("{{#posts}}{{post_count|a|b}}{{/posts}}",
	    "cannot be used inside");
	parse_fails("{{nope|a|b}}{{#posts}}{{/posts}}",
	    "unknown placeholder {{nope}}");
}

/* A subject is one line of the same language, without posts. */
static void
test_subject(void **state)
{
	struct vals vs;
	struct template *t;
	const char *src;
	char err[256], *s;

	(void)state;
	memset(&vs, 0, sizeof(vs));
	t = template_parse_line("subject.txt", template_builtin_subject,
	    strlen(template_builtin_subject), err, sizeof(err));
	assert_non_null(t);
	vs.v[TV_PERIOD] = "daily";
	vs.v[TV_GROUP_NAME] = "Cooks";
	s = expand_all(t, &vs);
	assert_string_equal(s, "Your daily digest: Cooks");
	free(s);
	template_free(t);

	src = "{{group_name}}: {{post_count}} {{post_count|Beitrag|"
	    "Beitr\xc3\xa4ge}}\r\n";
	t = template_parse_line("subject.txt", src, strlen(src), err,
	    sizeof(err));
	assert_non_null(t);
	vs.v[TV_POST_COUNT] = "3";
	s = expand_all(t, &vs);
	assert_string_equal(s, "Cooks: 3 Beitr\xc3\xa4ge");
	free(s);
	template_free(t);

	assert_null(template_parse_line("subject.txt", "a\nb\n", 4, err,
	    sizeof(err)));
	assert_string_equal(err, "subject.txt:2: a subject is one line");
	assert_null(template_parse_line("subject.txt", "{{#posts}}{{/posts}}",
	    20, err, sizeof(err)));
	assert_string_equal(err, "subject.txt:1: no {{#posts}} in a subject");
	assert_null(template_parse_line("subject.txt", "{{title}}", 9, err,
	    sizeof(err)));
	assert_non_null(strstr(err, "only known inside {{#posts}}"));
}

static void
test_errors(void **state)
{
	(void)state;
	parse_fails("a\nb {{nope}}\n{{#posts}}{{/posts}}",
	    "digest.txt:2: unknown placeholder {{nope}}");
	parse_fails("{{#posts}}\n{{title}}\n", "digest.txt:1: unclosed section "
	    "{{#posts}}");
	parse_fails("{{#posts}}\n{{#url}}\nx\n{{/posts}}\n",
	    "digest.txt:4: {{/posts}} closes {{#url}} opened at line 2");
	parse_fails("{{title}}\n{{#posts}}{{/posts}}",
	    "digest.txt:1: {{title}} is only known inside {{#posts}}");
	parse_fails("{{#posts}}{{unsubscribe_url}}{{/posts}}",
	    "digest.txt:1: {{unsubscribe_url}} cannot be used inside");
	parse_fails("hello {{group_name}}\n", "no {{#posts}} section");
	parse_fails("{{#posts}}{{/posts}}\n{{#posts}}{{/posts}}",
	    "digest.txt:2:");
	parse_fails("{{#group_name}}{{#posts}}{{/posts}}{{/group_name}}",
	    "one {{#posts}} section at the top level");
	parse_fails("{{^posts}}{{/posts}}", "digest.txt:1:");
	parse_fails("{{#posts}}{{{title}}}{{/posts}}",
	    "unescaped {{{title}} is not supported");
	parse_fails("{{#posts}}{{&title}}{{/posts}}", "unescaped");
	parse_fails("{{#posts}}{{/posts}}\n\n{{group_name",
	    "digest.txt:3: unclosed tag");
	parse_fails("{{#posts}}{{/posts}}{{group_name\n}}",
	    "digest.txt:1: unclosed tag");
	parse_fails("{{/group_name}}{{#posts}}{{/posts}}", "closes no section");
	parse_fails("{{#posts}}{{/posts}}{{#bogus}}{{/bogus}}",
	    "unknown placeholder {{#bogus}}");
	{
		char err[256] = "";

		/* A NUL inside the file is refused, not a silent cut. */
		assert_null(template_parse("digest.txt", "{{#posts}}\n\0{{/posts}}",
		    21, 0, err, sizeof(err)));
		assert_string_equal(err, "digest.txt:2: NUL byte in template");
	}
	/* Lines count CRLF and CR line ends too. */
	parse_fails("a\r\nb\rc {{x}}", "digest.txt:3: unknown placeholder");
}

static void
test_expand(void **state)
{
	static const char src[] =
	    "Hi {{recipient_name}}!\n"
	    "{{#group_url}}\n"
	    "  url={{group_url}}\n"
	    "{{/group_url}}\n"
	    "{{^group_url}}\n"
	    "  no url\n"
	    "{{/group_url}}\n"
	    "{{! a comment }}\n"
	    "{{#posts}}\n"
	    "- {{ title }}\n"
	    "{{/posts}}\n"
	    "end {{group_name}}";
	struct vals v = { { 0 } };
	struct template *t, *h;
	struct rbuf out = { 0 };
	char err[256];

	(void)state;
	t = template_parse("t", src, strlen(src), 0, err, sizeof(err));
	assert_non_null(t);
	h = template_parse("h", src, strlen(src), 1, err, sizeof(err));
	assert_non_null(h);
	v.v[TV_RECIPIENT_NAME] = "<Ann & \"Bo\" 'C'>";
	v.v[TV_GROUP_NAME] = "G<1>";
	v.v[TV_GROUP_URL] = "https://e.com/?a=1&b=2";
	template_expand(t, 0, t->nnodes, lookup, &v, &out);
	/* Standalone section lines vanish; the posts are the caller's. */
	assert_string_equal(out.p, "Hi <Ann & \"Bo\" 'C'>!\n"
	    "  url=https://e.com/?a=1&b=2\nend G<1>");
	rbuf_reset(&out);
	template_expand(h, 0, h->nnodes, lookup, &v, &out);
	assert_string_equal(out.p,
	    "Hi &lt;Ann &amp; &quot;Bo&quot; &#39;C&#39;&gt;!\n"
	    "  url=https://e.com/?a=1&amp;b=2\nend G&lt;1&gt;");
	rbuf_reset(&out);
	v.v[TV_GROUP_URL] = "";
	template_expand(t, 0, t->nnodes, lookup, &v, &out);
	assert_string_equal(out.p, "Hi <Ann & \"Bo\" 'C'>!\n  no url\nend G<1>");
	/* The post section alone, with a post's values. */
	rbuf_reset(&out);
	v.v[TV_TITLE] = "T";
	template_expand(t, t->posts + 1, t->nodes[t->posts].end, lookup, &v,
	    &out);
	assert_string_equal(out.p, "- T\n");
	/* Recipient-dependent nodes are marked; the rest are not. */
	assert_true(t->nodes[1].dyn);	/* {{recipient_name}} */
	assert_false(t->nodes[t->posts].dyn);
	assert_string_equal(template_var_name(TV_UNSUBSCRIBE_URL),
	    "unsubscribe_url");
	assert_int_equal(template_var_scope(TV_TITLE), TSCOPE_POST);
	rbuf_free(&out);
	template_free(t);
	template_free(h);
}

static void
write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void
remove_dir(const char *dir)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/digest.txt", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/digest.html", dir);
	unlink(path);
	rmdir(dir);
}

static struct config *
test_config(const char *tdir)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	assert_non_null(cfg);
	strcpy(cfg->digest.from, "Groups <digest@example.com>");
	strcpy(cfg->digest.unsubscribe_url, "https://example.com/unsubscribe");
	strcpy(cfg->digest.unsubscribe_secret, "s3cret");
	cfg->digest.max_posts = 10;
	if (tdir != NULL)
		strcpy(cfg->digest.template_dir, tdir);
	return cfg;
}

static void
test_template_dir(void **state)
{
	char dir[] = "/tmp/test_template.XXXXXX", err[512], want[600];
	struct config *cfg;
	struct render *r;

	(void)state;
	assert_non_null(mkdtemp(dir));
	cfg = test_config(dir);

	/* Only the HTML overridden: it loads, the text one is built in. */
	write_file(dir, "digest.html", "<p>{{group_name}}</p>\n{{#posts}}\n"
	    "<p>{{title}}</p>\n{{/posts}}\n");
	r = render_new(cfg, err, sizeof(err));
	assert_non_null(r);
	render_free(r);
	assert_int_equal(render_check_config(cfg, err, sizeof(err)), 0);

	/* A broken one is an error naming the file and the line. */
	write_file(dir, "digest.txt", "Hello\n{{#posts}}\n{{titel}}\n"
	    "{{/posts}}\n");
	r = render_new(cfg, err, sizeof(err));
	assert_null(r);
	snprintf(want, sizeof(want), "%s/digest.txt:3: unknown placeholder "
	    "{{titel}}", dir);
	assert_string_equal(err, want);
	/* The same check the supervisor runs at start, -t and reload. */
	err[0] = '\0';
	assert_int_equal(render_check_config(cfg, err, sizeof(err)), -1);
	assert_string_equal(err, want);

	write_file(dir, "digest.txt", "{{#posts}}\n{{title}}\n{{/posts}}\n");
	write_file(dir, "digest.html", "<ul>\n{{#posts}}\n<li>{{title}}\n");
	r = render_new(cfg, err, sizeof(err));
	assert_null(r);
	snprintf(want, sizeof(want), "%s/digest.html:2: unclosed section "
	    "{{#posts}}", dir);
	assert_string_equal(err, want);

	remove_dir(dir);
	/* A missing directory is an error too. */
	r = render_new(cfg, err, sizeof(err));
	assert_null(r);
	assert_non_null(strstr(err, "digest.template_dir"));
	free(cfg);
}

static void
test_render_new_config_errors(void **state)
{
	struct config *cfg;
	struct render *r;
	char err[512];

	(void)state;
	cfg = test_config(NULL);
	r = render_new(cfg, err, sizeof(err));
	assert_non_null(r);
	render_free(r);

	strcpy(cfg->digest.unsubscribe_url, "javascript:alert(1)");
	assert_null(render_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "digest.unsubscribe_url"));
	strcpy(cfg->digest.unsubscribe_url, "https://example.com/u");

	strcpy(cfg->digest.from, "Groups <not an address>");
	assert_null(render_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "digest.from"));
	strcpy(cfg->digest.from, "digest@example.com");

	cfg->digest.unsubscribe_secret[0] = '\0';
	assert_null(render_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "digest.unsubscribe_secret"));
	free(cfg);
}

static void
test_load_missing(void **state)
{
	char err[256];

	(void)state;
	assert_null(template_load("/nonexistent/digest.txt", 0, 0, err,
	    sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/digest.txt: "));
	assert_null(template_load("/tmp", 0, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "/tmp: not a regular file"));
}

/* A FIFO named as a template is refused at once (SIGALRM if it blocks). */
static void
test_load_fifo(void **state)
{
	char dir[] = "/tmp/test_template.XXXXXX", path[64], err[256];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/digest.txt", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10);
	assert_null(template_load(path, 0, 0, err, sizeof(err)));
	alarm(0);
	assert_non_null(strstr(err, "/digest.txt: not a regular file"));
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin_parse),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_template_dir),
		cmocka_unit_test(test_render_new_config_errors),
		cmocka_unit_test(test_load_missing),
		cmocka_unit_test(test_load_fifo),
		cmocka_unit_test(test_plural_rules),
		cmocka_unit_test(test_plural_tag),
		cmocka_unit_test(test_subject),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
