/*
 * Unit tests for worker/render.c: every header rule of
 * docs/design.md#recipients-and-the-email, the part order, CRLF and line
 * lengths, header injection from Redis data, HTML escaping in text and
 * attribute contexts, unsafe link schemes, the selection and order of posts,
 * the recipient checks, RFC 2047 subjects that decode back, the unsubscribe
 * URL and token, and both the fast (pre-encoded) and the slow (per-message)
 * rendering paths.
 *
 * Each message is parsed back here: headers unfolded, parts split on the
 * boundary and decoded, so the assertions are on what a mail reader sees.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "mime.h"
#include "mime_decode.h"
#include "render.h"
#include "unsub.h"

#define TOKEN_9_42 \
	"3c46df76c731a0bcc3167156ae2d017f85cbbd791a3e4ddf3f7e388d7042a587"

struct hdr {
	char name[64];
	struct rbuf value;	/* unfolded, raw (not decoded) */
};

struct msg {
	struct hdr hdr[64];
	int nhdr;
	int nparts;
	char ctype[4][128];
	char cte[4][64];
	struct rbuf part[4];	/* decoded content */
};

static void
msg_free(struct msg *m)
{
	int i;

	for (i = 0; i < m->nhdr; i++)
		rbuf_free(&m->hdr[i].value);
	for (i = 0; i < 4; i++)
		rbuf_free(&m->part[i]);
	memset(m, 0, sizeof(*m));
}

static const char *
msg_header(const struct msg *m, const char *name)
{
	int i, found = -1;

	for (i = 0; i < m->nhdr; i++)
		if (strcasecmp(m->hdr[i].name, name) == 0) {
			/* Each header once. */
			assert_int_equal(found, -1);
			found = i;
		}
	return found < 0 ? NULL : m->hdr[found].value.p;
}

/* Header value decoded (RFC 2047). */
static char *
msg_header_decoded(const struct msg *m, const char *name)
{
	struct rbuf d = { 0 };
	const char *v = msg_header(m, name);

	assert_non_null(v);
	assert_int_equal(mime_header_decode(&d, v, strlen(v)), 0);
	return d.p;
}

/* Every line ends in CRLF, no bare CR or LF, none reaches 998 octets. */
static void
assert_wire_format(const char *s, size_t len)
{
	size_t i, col = 0;

	assert_true(len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n');
	for (i = 0; i < len; i++) {
		assert_true(s[i] != '\0');
		if (s[i] == '\r') {
			assert_true(i + 1 < len && s[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		assert_true(s[i] != '\n');
		col++;
		assert_true(col < 998);
	}
}

static const char *allowed_headers[] = { "From", "To", "Subject", "Date",
	"Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
	"Auto-Submitted", "X-Digest-Job", "MIME-Version", "Content-Type", NULL };

static void
parse_msg(const char *s, size_t len, struct msg *m)
{
	const char *p = s, *end = s + len, *eol, *hend, *b, *q;
	char boundary[128], delim[140];
	size_t dlen;
	int i, ok;

	memset(m, 0, sizeof(*m));
	assert_wire_format(s, len);
	hend = memmem(s, len, "\r\n\r\n", 4);
	assert_non_null(hend);
	while (p < hend + 2) {
		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (*p == ' ' || *p == '\t') {
			assert_true(m->nhdr > 0);
			rbuf_add(&m->hdr[m->nhdr - 1].value, p,
			    (size_t)(eol - p));
		} else {
			q = memchr(p, ':', (size_t)(eol - p));
			assert_non_null(q);
			assert_true(m->nhdr < 64);
			assert_true((size_t)(q - p) < sizeof(m->hdr[0].name));
			memcpy(m->hdr[m->nhdr].name, p, (size_t)(q - p));
			m->hdr[m->nhdr].name[q - p] = '\0';
			ok = 0;
			for (i = 0; allowed_headers[i] != NULL; i++)
				if (strcmp(allowed_headers[i],
				    m->hdr[m->nhdr].name) == 0)
					ok = 1;
			if (!ok)
				fail_msg("unexpected header \"%s\"",
				    m->hdr[m->nhdr].name);
			q++;
			if (*q == ' ')
				q++;
			rbuf_add(&m->hdr[m->nhdr].value, q, (size_t)(eol - q));
			m->nhdr++;
		}
		p = eol + 2;
	}
	q = strstr(msg_header(m, "Content-Type"), "boundary=\"");
	assert_non_null(q);
	q += 10;
	b = strchr(q, '"');
	assert_non_null(b);
	snprintf(boundary, sizeof(boundary), "%.*s", (int)(b - q), q);
	dlen = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);

	/* Parts: after each delimiter line, headers, blank line, content. */
	p = memmem(hend, (size_t)(end - hend), delim, dlen);
	assert_non_null(p);
	for (;;) {
		const char *ph, *next;
		struct msg *mm = m;
		int k = m->nparts;

		p += dlen;
		if (p + 2 <= end && p[0] == '-' && p[1] == '-')
			break;
		assert_true(p[0] == '\r' && p[1] == '\n');
		p += 2;
		assert_true(k < 4);
		ph = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		assert_non_null(ph);
		for (q = p; q < ph + 2; q = eol + 2) {
			eol = memmem(q, (size_t)(end - q), "\r\n", 2);
			if (strncasecmp(q, "Content-Type: ", 14) == 0)
				snprintf(mm->ctype[k], sizeof(mm->ctype[k]),
				    "%.*s", (int)(eol - q - 14), q + 14);
			else if (strncasecmp(q, "Content-Transfer-Encoding: ",
			    27) == 0)
				snprintf(mm->cte[k], sizeof(mm->cte[k]), "%.*s",
				    (int)(eol - q - 27), q + 27);
			else
				fail_msg("unexpected part header %.*s",
				    (int)(eol - q), q);
		}
		p = ph + 4;
		next = memmem(p, (size_t)(end - p), delim, dlen);
		assert_non_null(next);
		/* The boundary never occurs inside a part. */
		assert_null(memmem(p, (size_t)(next - p), boundary,
		    strlen(boundary)));
		assert_string_equal(mm->cte[k], "quoted-printable");
		assert_int_equal(mime_qp_decode(&mm->part[k], p,
		    (size_t)(next - p)), 0);
		assert_true(mime_utf8_valid(mm->part[k].p, mm->part[k].len));
		m->nparts++;
		p = next;
	}
	assert_true(p + 4 == end);	/* "--" CRLF closes the message */
}

static struct config *
test_config(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	assert_non_null(cfg);
	strcpy(cfg->digest.from, "Groups <digest@example.com>");
	strcpy(cfg->digest.from_addr, "digest@example.com");
	strcpy(cfg->digest.from_domain, "example.com");
	strcpy(cfg->digest.unsubscribe_url, "https://example.com/unsubscribe");
	strcpy(cfg->digest.unsubscribe_secret, "s3cret");
	cfg->digest.max_posts = 10;
	return cfg;
}

static struct job
test_job(void)
{
	struct job j;

	memset(&j, 0, sizeof(j));
	strcpy(j.job_id, "daily.1764374400.42.0");
	strcpy(j.period, "daily");
	j.group_id = 42;
	j.window_start = 1764288000;
	j.window_end = 1764374400;
	j.member_min = 1;
	j.member_max = 1000;
	return j;
}

static struct post
mkpost(int64_t id, int64_t at, int64_t author, int64_t likes,
    int64_t comments, const char *title, const char *url)
{
	struct post p;

	memset(&p, 0, sizeof(p));
	p.id = id;
	p.posted_at = at;
	p.author_id = author;
	p.likes = likes;
	p.comments = comments;
	p.title = title;
	p.url = url;
	p.author_name = "Alice";
	p.excerpt = "An excerpt.";
	return p;
}

/* Render one message for rc with the given group and posts; parse it. */
static int
render_one(struct config *cfg, const struct job *j, const struct group_info *g,
    struct post *posts, size_t n, const struct recipient *rc, struct msg *m,
    struct rbuf *raw)
{
	struct render *r;
	char err[512], mid[256];
	int got;

	r = render_new(cfg, err, sizeof(err));
	if (r == NULL)
		fail_msg("render_new: %s", err);
	assert_int_equal(render_job(r, j, g, posts, n), 0);
	rbuf_reset(raw);
	got = render_message(r, rc, raw, mid, sizeof(mid));
	if (got > 0) {
		char want[300];

		parse_msg(raw->p, raw->len, m);
		snprintf(want, sizeof(want), "<%s>", mid);
		assert_string_equal(msg_header(m, "Message-ID"), want);
	}
	render_free(r);
	return got;
}

static void
test_headers(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "Cooking", "https://example.com/g/42", 10 };
	struct post posts[2];
	struct recipient rc = { 9, "user@example.com", "John Doe", NULL };
	struct msg m;
	struct rbuf raw = { 0 };
	const char *v;
	char *d, wd[4], mon[4], tz[8];
	int day, year, hh, mm, ss;

	(void)state;
	posts[0] = mkpost(1, 1764300000, 7, 5, 1, "First", NULL);
	posts[1] = mkpost(2, 1764300001, 8, 1, 0, "Second", NULL);
	assert_int_equal(render_one(cfg, &j, &g, posts, 2, &rc, &m, &raw), 2);

	assert_string_equal(msg_header(&m, "From"),
	    "\"Groups\" <digest@example.com>");
	assert_string_equal(msg_header(&m, "To"),
	    "\"John Doe\" <user@example.com>");
	assert_string_equal(msg_header(&m, "Subject"),
	    "Your daily digest: Cooking");
	assert_string_equal(msg_header(&m, "Message-ID"),
	    "<daily.1764374400.42.0.9@example.com>");
	assert_string_equal(msg_header(&m, "List-Id"),
	    "\"Cooking\" <42.example.com>");
	assert_string_equal(msg_header(&m, "List-Unsubscribe"),
	    "<https://example.com/unsubscribe?u=9&g=42&t=" TOKEN_9_42 ">");
	assert_string_equal(msg_header(&m, "List-Unsubscribe-Post"),
	    "List-Unsubscribe=One-Click");
	assert_string_equal(msg_header(&m, "X-Digest-Job"),
	    "daily.1764374400.42.0");
	assert_string_equal(msg_header(&m, "MIME-Version"), "1.0");
	v = msg_header(&m, "Content-Type");
	assert_true(strncmp(v, "multipart/alternative; boundary=\"=_", 35) == 0);
	/* RFC 5322 date, in UTC. */
	v = msg_header(&m, "Date");
	assert_int_equal(sscanf(v, "%3s, %d %3s %d %d:%d:%d %5s", wd, &day, mon,
	    &year, &hh, &mm, &ss, tz), 8);
	assert_int_equal(strlen(v), 31);
	assert_string_equal(tz, "+0000");
	assert_non_null(strstr("SunMonTueWedThuFriSat", wd));
	assert_non_null(strstr("JanFebMarAprMayJunJulAugSepOctNovDec", mon));
	assert_true(v[3] == ',' && day >= 1 && day <= 31 && year >= 2024);
	/* The token is the one unsub_verify accepts. */
	assert_true(unsub_verify("s3cret", 9, 42, TOKEN_9_42));
	d = msg_header_decoded(&m, "To");
	assert_string_equal(d, "John Doe <user@example.com>");
	free(d);

	/* No name: a bare angle address. */
	msg_free(&m);
	rc.name = NULL;
	assert_int_equal(render_one(cfg, &j, &g, posts, 2, &rc, &m, &raw), 2);
	assert_string_equal(msg_header(&m, "To"), "<user@example.com>");
	msg_free(&m);

	/* A weekly job says so; a group without a name still has a subject. */
	strcpy(j.period, "weekly");
	g.name = NULL;
	assert_int_equal(render_one(cfg, &j, &g, posts, 2, &rc, &m, &raw), 2);
	assert_string_equal(msg_header(&m, "Subject"),
	    "Your weekly digest: Group 42");
	assert_string_equal(msg_header(&m, "List-Id"),
	    "\"Group 42\" <42.example.com>");
	msg_free(&m);
	rbuf_free(&raw);
	free(cfg);
}

static void
test_parts(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "Cooking", NULL, 10 };
	struct post posts[1];
	struct recipient rc = { 9, "user@example.com", "Ann", NULL };
	struct msg m;
	struct rbuf raw = { 0 };

	(void)state;
	posts[0] = mkpost(1, 1764300000, 7, 5, 1, "First", NULL);
	assert_int_equal(render_one(cfg, &j, &g, posts, 1, &rc, &m, &raw), 1);
	assert_int_equal(m.nparts, 2);
	assert_string_equal(m.ctype[0], "text/plain; charset=UTF-8");
	assert_string_equal(m.ctype[1], "text/html; charset=UTF-8");
	assert_non_null(strstr(m.part[0].p, "Hello Ann,\n"));
	assert_non_null(strstr(m.part[1].p, "<html>"));
	assert_non_null(strstr(m.part[1].p, "Hello Ann,"));
	msg_free(&m);
	rbuf_free(&raw);
	free(cfg);
}

static void
test_header_injection(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "X\r\nBcc: evil@example.com", NULL, 10 };
	struct post posts[1];
	struct recipient rc = { 9, "user@example.com",
	    "Eve\r\nBcc: evil@example.com\n\rX-Evil: 1", NULL };
	struct msg m;
	struct rbuf raw = { 0 };
	const char *hend;
	char *d;

	(void)state;
	strcpy(j.job_id, "daily.1\r\nBcc: x@y.z");
	posts[0] = mkpost(1, 1764300000, 7, 5, 1,
	    "T\r\nBcc: evil@example.com", "https://e.com/\r\nBcc: e@x.y");
	posts[0].author_name = "A\nBcc: evil@example.com";
	/* parse_msg refuses any header not in the list (no Bcc, no X-Evil). */
	assert_int_equal(render_one(cfg, &j, &g, posts, 1, &rc, &m, &raw), 1);
	hend = strstr(raw.p, "\r\n\r\n");
	assert_non_null(hend);
	assert_null(memmem(raw.p, (size_t)(hend - raw.p), "\r\nBcc", 5));
	assert_null(memmem(raw.p, (size_t)(hend - raw.p), "\r\nX-Evil", 8));
	d = msg_header_decoded(&m, "Subject");
	assert_string_equal(d, "Your daily digest: X Bcc: evil@example.com");
	free(d);
	d = msg_header_decoded(&m, "To");
	assert_string_equal(d, "Eve Bcc: evil@example.com X-Evil: 1 "
	    "<user@example.com>");
	free(d);
	assert_string_equal(msg_header(&m, "X-Digest-Job"),
	    "daily.1__Bcc__x_y.z");
	assert_string_equal(msg_header(&m, "Message-ID"),
	    "<daily.1__Bcc__x_y.z.9@example.com>");
	/* The title stays one line of the text part. */
	assert_non_null(strstr(m.part[0].p, "\nT Bcc: evil@example.com\n"));
	/* A URL with a line break is no link at all. */
	assert_null(strstr(m.part[1].p, "https://e.com/"));
	msg_free(&m);
	rbuf_free(&raw);
	free(cfg);
}

static void
test_html_escaping(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "<b>G</b> & \"co\"",
	    "https://e.com/g?a=1&b=\"><script>x</script>", 10 };
	struct post posts[1];
	struct recipient rc = { 9, "user@example.com", "<i>Ann</i>", NULL };
	struct msg m;
	struct rbuf raw = { 0 };
	const char *html;

	(void)state;
	posts[0] = mkpost(1, 1764300000, 7, 5, 1,
	    "<script>alert(1)</script>",
	    "https://e.com/p?x=\"onmouseover='alert(1)'");
	posts[0].author_name = "\"><img src=x onerror=alert(1)>";
	posts[0].excerpt = "Tom & Jerry's <em>show</em>";
	assert_int_equal(render_one(cfg, &j, &g, posts, 1, &rc, &m, &raw), 1);
	html = m.part[1].p;
	assert_null(strcasestr(html, "<script"));
	assert_null(strstr(html, "<img"));
	assert_null(strstr(html, "<em>"));
	assert_null(strstr(html, "<i>"));
	assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
	assert_non_null(strstr(html, "&quot;&gt;&lt;img src=x onerror=alert(1)"
	    "&gt;"));
	assert_non_null(strstr(html, "Tom &amp; Jerry&#39;s &lt;em&gt;show"));
	assert_non_null(strstr(html, "&lt;b&gt;G&lt;/b&gt; &amp; &quot;co&quot;"));
	assert_non_null(strstr(html, "Hello &lt;i&gt;Ann&lt;/i&gt;,"));
	/* In attributes: quotes cannot close the href. */
	assert_non_null(strstr(html, "href=\"https://e.com/p?x=%22onmouseover="
	    "&#39;alert(1)&#39;\""));
	assert_non_null(strstr(html, "href=\"https://e.com/g?a=1&amp;b=%22%3E"
	    "%3Cscript%3Ex%3C/script%3E\""));
	/* The plain part carries the text as it is. */
	assert_non_null(strstr(m.part[0].p, "\n<script>alert(1)</script>\n"));
	msg_free(&m);
	rbuf_free(&raw);
	free(cfg);
}

/* Every href in html points to http(s). */
static int
hrefs_ok(const char *html)
{
	const char *p = html;

	while ((p = strcasestr(p, "href=")) != NULL) {
		p += 5;
		if (*p == '"')
			p++;
		if (strncasecmp(p, "http://", 7) != 0 &&
		    strncasecmp(p, "https://", 8) != 0)
			return 0;
	}
	return 1;
}

static void
test_unsafe_urls(void **state)
{
	static const char *bad[] = { "javascript:alert(1)",
	    "JaVaScRiPt:alert(1)", " javascript:alert(1)",
	    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
	    "vbscript:msgbox(1)", "//evil.example.com/", "/relative",
	    "mailto:a@b.c", "java\tscript:alert(1)", "ftp://e.com/" };
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "G", "javascript:alert(1)", 10 };
	struct post posts[10];
	struct recipient rc = { 9, "user@example.com", NULL, NULL };
	char titles[10][32];
	struct msg m;
	struct rbuf raw = { 0 };
	size_t i, n = sizeof(bad) / sizeof(bad[0]);

	(void)state;
	for (i = 0; i < n; i++) {
		snprintf(titles[i], sizeof(titles[i]), "Post number %zu", i);
		posts[i] = mkpost((int64_t)i + 1, 1764300000, 7, (int64_t)i, 0,
		    titles[i], bad[i]);
	}
	assert_int_equal(render_one(cfg, &j, &g, posts, n, &rc, &m, &raw),
	    (int)n);
	assert_true(hrefs_ok(m.part[1].p));
	assert_null(strcasestr(m.part[1].p, "javascript"));
	assert_null(strcasestr(m.part[1].p, "vbscript"));
	assert_null(strstr(m.part[1].p, "data:"));
	assert_null(strcasestr(m.part[0].p, "javascript"));
	for (i = 0; i < n; i++) {
		char want[400];

		/* The title is still there, as text without a link. */
		snprintf(want, sizeof(want), ">%s</h2>", titles[i]);
		assert_non_null(strstr(m.part[1].p, want));
	}
	msg_free(&m);
	rbuf_free(&raw);
	free(cfg);
}

static void
test_selection_and_order(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "G", NULL, 10 };
	struct post posts[14];
	struct recipient rc = { 9, "user@example.com", NULL, NULL };
	char titles[14][32];
	struct msg m;
	struct rbuf raw = { 0 };
	const char *p, *prev;
	int i, got;

	(void)state;
	/* Post i has engagement i % 5 (likes + comments), posted at i. */
	for (i = 0; i < 14; i++) {
		snprintf(titles[i], sizeof(titles[i]), "Title %02d", i);
		posts[i] = mkpost(i + 1, 1764300000 + i, 100 + i, (i % 5) / 2,
		    (i % 5) - (i % 5) / 2, titles[i], NULL);
	}
	/* The recipient wrote two of the most engaging posts. */
	posts[14 - 1].author_id = 9;	/* engagement 3 */
	posts[9].author_id = 9;		/* engagement 4, the newest 4 */
	got = render_one(cfg, &j, &g, posts, 14, &rc, &m, &raw);
	assert_int_equal(got, 10);
	/*
	 * Expected: engagement desc, newer first: 4 (i=4; 9 is own), 3 (13 own,
	 * 8, 3), 2 (12, 7, 2), 1 (11, 6, 1), 0 (10, 5, 0): the first ten.
	 */
	{
		static const int want[10] = { 4, 8, 3, 12, 7, 2, 11, 6, 1, 10 };
		char t[32];

		prev = m.part[0].p;
		for (i = 0; i < 10; i++) {
			snprintf(t, sizeof(t), "\nTitle %02d\n", want[i]);
			p = strstr(m.part[0].p, t);
			if (p == NULL || p < prev)
				fail_msg("Title %02d missing or out of order",
				    want[i]);
			prev = p;
		}
		assert_null(strstr(m.part[0].p, "Title 09"));
		assert_null(strstr(m.part[0].p, "Title 13"));
		assert_null(strstr(m.part[0].p, "Title 05"));
		assert_null(strstr(m.part[1].p, "Title 09"));
	}
	assert_non_null(strstr(m.part[0].p, ": 10 new posts."));
	msg_free(&m);

	/* max_posts applies. */
	cfg->digest.max_posts = 3;
	assert_int_equal(render_one(cfg, &j, &g, posts, 14, &rc, &m, &raw), 3);
	assert_non_null(strstr(m.part[0].p, "\nTitle 03\n"));
	assert_null(strstr(m.part[0].p, "Title 12"));
	msg_free(&m);

	/* Only the recipient's own posts: nothing new, nothing appended. */
	for (i = 0; i < 14; i++)
		posts[i].author_id = 9;
	rbuf_reset(&raw);
	rbuf_adds(&raw, "keep");
	{
		struct render *r;
		char err[256], mid[128] = "untouched";

		r = render_new(cfg, err, sizeof(err));
		assert_non_null(r);
		assert_int_equal(render_job(r, &j, &g, posts, 14), 0);
		assert_int_equal(render_message(r, &rc, &raw, mid, sizeof(mid)),
		    0);
		assert_string_equal(raw.p, "keep");
		/* No posts in the window at all. */
		assert_int_equal(render_job(r, &j, &g, NULL, 0), 0);
		assert_int_equal(render_message(r, &rc, &raw, mid, sizeof(mid)),
		    0);
		assert_string_equal(raw.p, "keep");
		render_free(r);
	}
	rbuf_free(&raw);
	free(cfg);
}

/*
 * A prolific author: recipients other than them get the top posts; they
 * get the few posts by others, however far down the list those are.
 */
static void
test_prolific_author(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "G", NULL, 10 };
	struct post posts[300];
	char titles[300][32];
	struct recipient rc = { 5, "user@example.com", NULL, NULL };
	struct render *r;
	struct rbuf raw = { 0 };
	struct msg m;
	char err[256], mid[128];
	int i;

	(void)state;
	cfg->digest.max_posts = 3;
	for (i = 0; i < 300; i++) {
		snprintf(titles[i], sizeof(titles[i]), "Post %03d", i);
		/* Engagement falls with i; author 5 wrote all but 3. */
		posts[i] = mkpost(i + 1, 1764300000, 5, 1000 - i, 0, titles[i],
		    NULL);
	}
	posts[150].author_id = 6;
	posts[250].author_id = 7;
	posts[299].author_id = 8;
	r = render_new(cfg, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(render_job(r, &j, &g, posts, 300), 0);
	assert_int_equal(render_message(r, &rc, &raw, mid, sizeof(mid)), 3);
	parse_msg(raw.p, raw.len, &m);
	assert_non_null(strstr(m.part[0].p, "\nPost 150\n"));
	assert_non_null(strstr(m.part[0].p, "\nPost 250\n"));
	assert_non_null(strstr(m.part[0].p, "\nPost 299\n"));
	assert_null(strstr(m.part[0].p, "Post 000"));
	msg_free(&m);
	rc.uid = 6;
	rbuf_reset(&raw);
	assert_int_equal(render_message(r, &rc, &raw, mid, sizeof(mid)), 3);
	parse_msg(raw.p, raw.len, &m);
	assert_non_null(strstr(m.part[0].p, "\nPost 000\n"));
	assert_non_null(strstr(m.part[0].p, "\nPost 002\n"));
	assert_null(strstr(m.part[0].p, "Post 150"));
	msg_free(&m);
	render_free(r);
	rbuf_free(&raw);
	free(cfg);
}

static void
test_sort_posts(void **state)
{
	struct post p[5];

	(void)state;
	p[0] = mkpost(1, 10, 1, 1, 1, "a", NULL);		/* 2, t10 */
	p[1] = mkpost(2, 20, 1, 0, 2, "b", NULL);		/* 2, t20 */
	p[2] = mkpost(3, 5, 1, 5, 0, "c", NULL);		/* 5 */
	p[3] = mkpost(4, 30, 1, 0, 0, "d", NULL);		/* 0 */
	p[4] = mkpost(5, 1, 1, INT64_MAX, 5, "e", NULL);	/* saturates */
	render_sort_posts(p, 5);
	assert_int_equal(p[0].id, 5);
	assert_int_equal(p[1].id, 3);
	assert_int_equal(p[2].id, 2);
	assert_int_equal(p[3].id, 1);
	assert_int_equal(p[4].id, 4);
	render_sort_posts(p, 0);
}

static void
test_bad_recipient(void **state)
{
	static const char *bad[] = { "user@example.com\r\nBcc: evil@example.com",
	    "user name@example.com", "nobody", "", "user@example.com ",
	    "<user@example.com>", "user@exa\nmple.com" };
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "G", NULL, 10 };
	struct post posts[1];
	struct recipient rc = { 9, NULL, "N", NULL };
	struct render *r;
	struct rbuf raw = { 0 };
	char err[256], mid[128];
	size_t i;

	(void)state;
	posts[0] = mkpost(1, 1764300000, 7, 5, 1, "First", NULL);
	r = render_new(cfg, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(render_job(r, &j, &g, posts, 1), 0);
	assert_int_equal(render_message(r, &rc, &raw, mid, sizeof(mid)), -1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc.email = bad[i];
		assert_int_equal(render_message(r, &rc, &raw, mid, sizeof(mid)),
		    -1);
		assert_int_equal(raw.len, 0);
	}
	assert_int_equal(render_message(r, NULL, &raw, mid, sizeof(mid)), -1);
	rc.email = "ok@example.com";
	assert_int_equal(render_message(r, &rc, &raw, mid, sizeof(mid)), 1);
	render_free(r);
	rbuf_free(&raw);
	free(cfg);
}

static void
test_non_ascii(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	const char *name = "Caf\xc3\xa9 cr\xc3\xa8me \xe6\x97\xa5\xe6\x9c\xac "
	    "\xf0\x9f\x8d\xb0 and a rather long tail to force folding";
	struct group_info g = { 42, name, NULL, 10 };
	struct post posts[1];
	struct recipient rc = { 9, "user@example.com", "J\xc3\xb6rg", NULL };
	struct msg m;
	struct rbuf raw = { 0 };
	char *d, want[512];

	(void)state;
	strcpy(cfg->digest.from, "\"Gr\xc3\xbcppen\" <digest@example.com>");
	posts[0] = mkpost(1, 1764300000, 7, 5, 1, "\xc3\x9c" "ber uns", NULL);
	posts[0].author_name = "Zo\xc3\xab";
	assert_int_equal(render_one(cfg, &j, &g, posts, 1, &rc, &m, &raw), 1);
	assert_non_null(strstr(msg_header(&m, "Subject"), "=?UTF-8?B?"));
	d = msg_header_decoded(&m, "Subject");
	snprintf(want, sizeof(want), "Your daily digest: %s", name);
	assert_string_equal(d, want);
	free(d);
	d = msg_header_decoded(&m, "List-Id");
	snprintf(want, sizeof(want), "%s <42.example.com>", name);
	assert_string_equal(d, want);
	free(d);
	d = msg_header_decoded(&m, "From");
	assert_string_equal(d, "Gr\xc3\xbcppen <digest@example.com>");
	free(d);
	d = msg_header_decoded(&m, "To");
	assert_string_equal(d, "J\xc3\xb6rg <user@example.com>");
	free(d);
	assert_non_null(strstr(m.part[0].p, "\n\xc3\x9c" "ber uns\n"));
	assert_non_null(strstr(m.part[1].p, "by Zo\xc3\xab"));
	/* Header lines stay short after folding. */
	{
		const char *p = raw.p, *hend = strstr(raw.p, "\r\n\r\n"), *e;

		for (; p < hend; p = e + 2) {
			e = strstr(p, "\r\n");
			if (strncmp(p, "List-Unsubscribe:", 17) != 0)
				assert_true(e - p <= 78);
		}
	}
	msg_free(&m);
	rbuf_free(&raw);
	free(cfg);
}

/* No bidi control from Redis or the config reaches a header or a title. */
static void
test_bidi_controls(void **state)
{
	static const char *bidi[] = { "\xe2\x80\xaa", "\xe2\x80\xab",
	    "\xe2\x80\xac", "\xe2\x80\xad", "\xe2\x80\xae", "\xe2\x81\xa6",
	    "\xe2\x81\xa7", "\xe2\x81\xa8", "\xe2\x81\xa9", "\xe2\x80\x8e",
	    "\xe2\x80\x8f", "\xd8\x9c" };
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "Tea \xe2\x80\xae" "fdp.exe", NULL, 10 };
	struct post posts[1];
	struct recipient rc = { 9, "user@example.com",
	    "\xe2\x81\xa7" "Eve\xe2\x80\x8f", NULL };
	struct msg m;
	struct rbuf raw = { 0 };
	const char *hdrs[] = { "Subject", "To", "From", "List-Id" };
	char *d;
	size_t i, k;

	(void)state;
	strcpy(cfg->digest.from, "\"Gr\xe2\x80\xadoups\" <digest@example.com>");
	posts[0] = mkpost(1, 1764300000, 7, 5, 1,
	    "Title \xe2\x80\xae" "gnp.js", NULL);
	posts[0].author_name = "Zo\xd8\x9c" "e";
	assert_int_equal(render_one(cfg, &j, &g, posts, 1, &rc, &m, &raw), 1);
	for (k = 0; k < sizeof(hdrs) / sizeof(hdrs[0]); k++) {
		d = msg_header_decoded(&m, hdrs[k]);
		for (i = 0; i < sizeof(bidi) / sizeof(bidi[0]); i++)
			if (strstr(d, bidi[i]) != NULL)
				fail_msg("%s: %s", hdrs[k], d);
		free(d);
	}
	d = msg_header_decoded(&m, "Subject");
	assert_string_equal(d, "Your daily digest: Tea fdp.exe");
	free(d);
	d = msg_header_decoded(&m, "To");
	assert_string_equal(d, "Eve <user@example.com>");
	free(d);
	d = msg_header_decoded(&m, "From");
	assert_string_equal(d, "Groups <digest@example.com>");
	free(d);
	for (k = 0; k < 2; k++)
		for (i = 0; i < sizeof(bidi) / sizeof(bidi[0]); i++)
			if (strstr(m.part[k].p, bidi[i]) != NULL)
				fail_msg("part %zu: %s", k, m.part[k].p);
	assert_non_null(strstr(m.part[0].p, "\nTitle gnp.js\n"));
	msg_free(&m);
	rbuf_free(&raw);
	free(cfg);
}

static void
test_invalid_utf8_and_caps(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "G\xff\xfe", NULL, 10 };
	struct post posts[2];
	struct recipient rc = { 9, "user@example.com", NULL, NULL };
	struct msg m;
	struct rbuf raw = { 0 };
	char *huge, *d;
	const char *p, *e;
	size_t hlen = 100000, n;

	(void)state;
	huge = malloc(hlen + 1);
	assert_non_null(huge);
	memset(huge, 'w', hlen);
	huge[hlen] = '\0';
	posts[0] = mkpost(1, 1764300000, 7, 5, 1, "Bad \xc3\x28 byte", NULL);
	posts[1] = mkpost(2, 1764300000, 7, 1, 1, huge, NULL);
	posts[1].excerpt = huge;
	posts[1].author_name = huge;
	assert_int_equal(render_one(cfg, &j, &g, posts, 2, &rc, &m, &raw), 2);
	assert_non_null(strstr(m.part[0].p, "\nBad \xef\xbf\xbd( byte\n"));
	d = msg_header_decoded(&m, "Subject");
	assert_string_equal(d,
	    "Your daily digest: G\xef\xbf\xbd\xef\xbf\xbd");
	free(d);
	/* One hostile post cannot blow the email up. */
	assert_true(raw.len < 12000);
	/* The title is cut to 300 characters, the last an ellipsis. */
	p = strstr(m.part[0].p, "\nwww");
	assert_non_null(p);
	e = strchr(p + 1, '\n');
	n = (size_t)(e - p - 1);
	assert_int_equal(n, 299 + 3);
	assert_memory_equal(e - 3, "\xe2\x80\xa6", 3);
	msg_free(&m);
	free(huge);
	rbuf_free(&raw);
	free(cfg);
}

static void
test_unsubscribe_url(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "G", NULL, 10 };
	struct post posts[1];
	struct recipient rc = { 9, "user@example.com", NULL, NULL };
	struct msg m;
	struct rbuf raw = { 0 };

	(void)state;
	posts[0] = mkpost(1, 1764300000, 7, 5, 1, "First", NULL);
	assert_int_equal(render_one(cfg, &j, &g, posts, 1, &rc, &m, &raw), 1);
	assert_non_null(strstr(m.part[0].p, "Unsubscribe: https://example.com/"
	    "unsubscribe?u=9&g=42&t=" TOKEN_9_42 "\n"));
	assert_non_null(strstr(m.part[1].p, "href=\"https://example.com/"
	    "unsubscribe?u=9&amp;g=42&amp;t=" TOKEN_9_42 "\""));
	msg_free(&m);

	/* A base URL with a query of its own. */
	strcpy(cfg->digest.unsubscribe_url, "https://example.com/u?lang=en");
	assert_int_equal(render_one(cfg, &j, &g, posts, 1, &rc, &m, &raw), 1);
	assert_string_equal(msg_header(&m, "List-Unsubscribe"),
	    "<https://example.com/u?lang=en&u=9&g=42&t=" TOKEN_9_42 ">");
	msg_free(&m);
	rbuf_free(&raw);
	free(cfg);
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

/*
 * The fast path (posts section on its own lines, pre-encoded) and the
 * slow path (posts inline) produce exactly what the templates say.
 */
static void
test_template_paths(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "G & Co", NULL, 10 };
	struct post posts[3];
	struct recipient rc = { 9, "user@example.com", "Ann", NULL };
	char dir[] = "/tmp/test_render.XXXXXX";
	char long_title[200];
	struct msg m;
	struct rbuf raw = { 0 };

	(void)state;
	assert_non_null(mkdtemp(dir));
	strcpy(cfg->digest.template_dir, dir);
	memset(long_title, 'L', sizeof(long_title) - 1);
	long_title[sizeof(long_title) - 1] = '\0';
	posts[0] = mkpost(1, 1764300000, 7, 3, 0, "One", "https://e.com/1");
	posts[1] = mkpost(2, 1764300000, 9, 2, 0, "Mine", NULL);
	posts[2] = mkpost(3, 1764300000, 8, 1, 0, long_title, NULL);

	/* Aligned: recipient values on lines of their own and inside lines. */
	write_file(dir, "digest.txt", "Hi {{recipient_name}}, {{post_count}} "
	    "for you in {{group_name}}.\n{{#posts}}\n* {{title}} ({{likes}})\n"
	    "{{/posts}}\n. dot line\nFrom here\nBye {{recipient_email}} "
	    "trailing \n{{unsubscribe_url}}");
	write_file(dir, "digest.html", "<p>{{group_name}}</p>\n{{#posts}}\n"
	    "<p>{{title}}</p>\n{{/posts}}\n<a href=\"{{unsubscribe_url}}\">u</a>"
	    "\n");
	assert_int_equal(render_one(cfg, &j, &g, posts, 3, &rc, &m, &raw), 2);
	assert_string_equal(m.part[0].p, "Hi Ann, 2 for you in G & Co.\n"
	    "* One (3)\n* " "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL"
	    "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL"
	    "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL"
    "LLLLLLLLLLLLLLLLL (1)\n. dot line\nFrom here\nBye user@example.com "
	    "trailing \nhttps://example.com/unsubscribe?u=9&g=42&t=" TOKEN_9_42);
	assert_string_equal(m.part[1].p, "<p>G &amp; Co</p>\n<p>One</p>\n<p>"
	    "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL"
	    "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL"
	    "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL"
	    "LLLLLLLLLLLLLLLLL</p>\n<a href=\"https://example.com/unsubscribe?"
	    "u=9&amp;g=42&amp;t=" TOKEN_9_42 "\">u</a>\n");
	msg_free(&m);

	/* Not aligned: the posts inline, a recipient value last. */
	write_file(dir, "digest.txt", "Posts: {{#posts}}{{title}}; {{/posts}}"
	    "for {{recipient_name}}");
	write_file(dir, "digest.html", "<p>{{#posts}}<b>{{title}}</b>"
	    "{{/posts}}</p>{{recipient_name}}");
	posts[2].title = "Three";
	assert_int_equal(render_one(cfg, &j, &g, posts, 3, &rc, &m, &raw), 2);
	assert_string_equal(m.part[0].p, "Posts: One; Three; for Ann");
	assert_string_equal(m.part[1].p, "<p><b>One</b><b>Three</b></p>Ann");
	msg_free(&m);

	remove_dir(dir);
	rbuf_free(&raw);
	free(cfg);
}

static void
d_subject_check(struct msg *m, const char *want, const char *locale)
{
	char *d = msg_header_decoded(m, "Subject");

	if (strcmp(d, want) != 0)
		fail_msg("%s: subject \"%s\", want \"%s\"", locale ? locale :
		    "(null)", d, want);
	free(d);
}

/*
 * The recipient's locale picks template_dir/{locale}/: the exact one,
 * else its parent language, else the default set; case and '-' or '_'
 * do not matter; a file missing there is the parent's.
 */
static void
test_locales(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g = { 42, "Kochen", NULL, 10 };
	struct post posts[2];
	struct recipient rc = { 9, "user@example.com", NULL, NULL };
	static const struct {
		const char *locale;
		const char *subject;
		const char *first;
	} cases[] = {
		{ "de", "Kochen: 2 Beitr\xc3\xa4ge", "Hallo\n" },
		{ "DE-at", "Kochen: 2 Beitr\xc3\xa4ge", "Servus\n" },
		{ "de_AT_x1", "Kochen: 2 Beitr\xc3\xa4ge", "Servus\n" },
		{ "de-CH", "Kochen: 2 Beitr\xc3\xa4ge", "Hallo\n" },
		{ "xx", "Your daily digest: Kochen", "Hello,\n" },
		{ "images", "Your daily digest: Kochen", "Hello,\n" },
		{ "", "Your daily digest: Kochen", "Hello,\n" },
		{ NULL, "Your daily digest: Kochen", "Hello,\n" },
		{ "de/../..", "Your daily digest: Kochen", "Hello,\n" },
	};
	char dir[] = "/tmp/test_render.XXXXXX", sub[128], err[512], mid[256];
	struct render *r;
	struct rbuf raw = { 0 };
	struct msg m;
	size_t i;

	(void)state;
	assert_non_null(mkdtemp(dir));
	strcpy(cfg->digest.template_dir, dir);
	snprintf(sub, sizeof(sub), "%s/de", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	write_file(sub, "digest.txt", "Hallo\n{{#posts}}\n{{title}}\n"
	    "{{/posts}}\n");
	write_file(sub, "subject.txt", "{{group_name}}: {{post_count}} "
	    "{{post_count|Beitrag|Beitr\xc3\xa4ge}}\n");
	snprintf(sub, sizeof(sub), "%s/de_AT", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	write_file(sub, "digest.txt", "Servus\n{{#posts}}\n{{title}}\n"
	    "{{/posts}}\n");
	snprintf(sub, sizeof(sub), "%s/images", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	posts[0] = mkpost(1, 1764300000, 7, 3, 0, "Eins", NULL);
	posts[1] = mkpost(2, 1764300000, 8, 2, 0, "Zwei", NULL);

	r = render_new(cfg, err, sizeof(err));
	if (r == NULL)
		fail_msg("render_new: %s", err);
	assert_int_equal(render_job(r, &j, &g, posts, 2), 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rc.locale = cases[i].locale;
		rbuf_reset(&raw);
		assert_int_equal(render_message(r, &rc, &raw, mid, sizeof(mid)),
		    2);
		parse_msg(raw.p, raw.len, &m);
		d_subject_check(&m, cases[i].subject, cases[i].locale);
		if (strncmp(m.part[0].p, cases[i].first,
		    strlen(cases[i].first)) != 0)
			fail_msg("%s: body %s", cases[i].locale, m.part[0].p);
		msg_free(&m);
	}
	render_free(r);

	/* Two directories for one language are an error, not a guess. */
	snprintf(sub, sizeof(sub), "%s/DE", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_null(render_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "two directories for language"));
	rmdir(sub);
	/* A broken file in a language's directory names it. */
	snprintf(sub, sizeof(sub), "%s/de", dir);
	write_file(sub, "subject.txt", "{{title}}\n");
	assert_null(render_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "/de/subject.txt:1:"));

	snprintf(sub, sizeof(sub), "%s/de/subject.txt", dir);
	unlink(sub);
	snprintf(sub, sizeof(sub), "%s/de", dir);
	remove_dir(sub);
	snprintf(sub, sizeof(sub), "%s/de_AT", dir);
	remove_dir(sub);
	snprintf(sub, sizeof(sub), "%s/images", dir);
	rmdir(sub);
	remove_dir(dir);
	rbuf_free(&raw);
	free(cfg);
}

/* One render reused across jobs and recipients keeps nothing stale. */
static void
test_reuse(void **state)
{
	struct config *cfg = test_config();
	struct job j = test_job();
	struct group_info g1 = { 42, "First group", NULL, 10 };
	struct group_info g2 = { 43, "Second group", NULL, 10 };
	struct post a[1], b[2];
	struct recipient r1 = { 9, "a@example.com", "Ann", NULL };
	struct recipient r2 = { 10, "b@example.com", NULL, NULL };
	struct render *r;
	struct rbuf raw = { 0 }, first = { 0 };
	struct msg m;
	char err[256], mid[128];

	(void)state;
	a[0] = mkpost(1, 1764300000, 7, 5, 1, "Alpha", NULL);
	b[0] = mkpost(2, 1764300000, 7, 5, 1, "Beta", NULL);
	b[1] = mkpost(3, 1764300000, 10, 9, 1, "Gamma", NULL);
	r = render_new(cfg, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(render_job(r, &j, &g1, a, 1), 0);
	assert_int_equal(render_message(r, &r1, &first, mid, sizeof(mid)), 1);
	assert_int_equal(render_message(r, &r1, &raw, mid, sizeof(mid)), 1);
	/* Same recipient, same job: the same bytes (within one second). */
	if (strstr(first.p, "Date: ") != NULL &&
	    strncmp(strstr(first.p, "Date: "), strstr(raw.p, "Date: "), 37) == 0)
		assert_string_equal(first.p, raw.p);
	strcpy(j.job_id, "daily.1764374400.43.0");
	j.group_id = 43;
	assert_int_equal(render_job(r, &j, &g2, b, 2), 0);
	rbuf_reset(&raw);
	assert_int_equal(render_message(r, &r2, &raw, mid, sizeof(mid)), 1);
	assert_string_equal(mid, "daily.1764374400.43.0.10@example.com");
	parse_msg(raw.p, raw.len, &m);
	assert_null(strstr(m.part[0].p, "Alpha"));
	assert_null(strstr(m.part[0].p, "Gamma"));	/* r2's own */
	assert_null(strstr(m.part[0].p, "Ann"));
	assert_non_null(strstr(m.part[0].p, "\nBeta\n"));
	assert_string_equal(msg_header(&m, "Subject"),
	    "Your daily digest: Second group");
	msg_free(&m);
	render_free(r);
	render_free(NULL);
	rbuf_free(&raw);
	rbuf_free(&first);
	free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_parts),
		cmocka_unit_test(test_header_injection),
		cmocka_unit_test(test_html_escaping),
		cmocka_unit_test(test_unsafe_urls),
		cmocka_unit_test(test_selection_and_order),
		cmocka_unit_test(test_sort_posts),
		cmocka_unit_test(test_prolific_author),
		cmocka_unit_test(test_bad_recipient),
		cmocka_unit_test(test_non_ascii),
		cmocka_unit_test(test_bidi_controls),
		cmocka_unit_test(test_invalid_utf8_and_caps),
		cmocka_unit_test(test_unsubscribe_url),
		cmocka_unit_test(test_template_paths),
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_locales),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
