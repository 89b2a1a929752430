/*
 * Unit tests for worker/mime.c: quoted-printable and base64 round trips
 * and line limits, RFC 2047 header text and phrases that decode back,
 * cleaning of untrusted text, HTML escaping, the link check and the
 * address check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mime.h"
#include "mime_decode.h"

static uint32_t rng = 12345;

static uint32_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* CRLF only, no line over max octets (CRLF excluded). */
static void
assert_lines(const char *s, size_t len, size_t max)
{
	size_t i, col = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r') {
			assert_true(i + 1 < len && s[i + 1] == '\n');
			col = 0;
			i++;
			continue;
		}
		assert_true(s[i] != '\n');
		col++;
		assert_true(col <= max);
	}
}

static void
qp_roundtrip(const char *in, size_t len)
{
	struct rbuf enc = { 0 }, dec = { 0 }, want = { 0 };
	size_t i;

	mime_qp_encode(&enc, in, len);
	assert_lines(enc.p, enc.len, 76);
	assert_null(memmem(enc.p, enc.len, "=_", 2));
	/* No encoded line starts with '.' or "From ". */
	for (i = 0; i < enc.len; i++)
		if (i == 0 || enc.p[i - 1] == '\n') {
			assert_true(enc.p[i] != '.');
			assert_false(enc.len - i >= 5 &&
			    memcmp(enc.p + i, "From ", 5) == 0);
			/* No trailing blank before a line break either. */
		}
	for (i = 0; i + 2 < enc.len; i++)
		if (enc.p[i + 1] == '\r')
			assert_true(enc.p[i] != ' ' && enc.p[i] != '\t');
	if (enc.len > 0)
		assert_true(enc.p[enc.len - 1] != ' ' &&
		    enc.p[enc.len - 1] != '\t');
	assert_int_equal(mime_qp_decode(&dec, enc.p, enc.len), 0);
	/* CRLF in the input reads back as LF. */
	for (i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
			continue;
		rbuf_addc(&want, in[i]);
	}
	assert_int_equal(dec.len, want.len);
	assert_memory_equal(dec.p, want.p, want.len);
	rbuf_free(&enc);
	rbuf_free(&dec);
	rbuf_free(&want);
}

static void
test_qp_known(void **state)
{
	struct rbuf b = { 0 };

	(void)state;
	mime_qp_encode(&b, "a=b \xc3\xa9 \n.dot\nFrom me\nend ", 25);
	assert_string_equal(b.p,
	    "a=3Db =C3=A9=20\r\n=2Edot\r\n=46rom me\r\nend=20");
	rbuf_reset(&b);
	mime_qp_encode(&b, "tab\t\r\nx\ry", 9);
	assert_string_equal(b.p, "tab=09\r\nx=0Dy");
	rbuf_reset(&b);
	mime_qp_encode(&b, "", 0);
	assert_int_equal(b.len, 0);
	rbuf_free(&b);
}

static void
test_qp_roundtrip(void **state)
{
	char buf[4096];
	size_t i, n, t;
	static const char alphabet[] = "ab =.\t\r\n\xc3\xa9" "F";

	(void)state;
	qp_roundtrip("hello", 5);
	memset(buf, 'x', 300);
	qp_roundtrip(buf, 300);
	memset(buf, '=', 300);
	qp_roundtrip(buf, 300);
	memset(buf, ' ', 300);
	qp_roundtrip(buf, 300);
	for (t = 0; t < 300; t++) {
		n = next_rand() % sizeof(buf);
		for (i = 0; i < n; i++)
			buf[i] = t % 2 ? (char)next_rand() :
			    alphabet[next_rand() % (sizeof(alphabet) - 1)];
		qp_roundtrip(buf, n);
	}
}

static void
test_qp_decode_bad(void **state)
{
	struct rbuf b = { 0 };

	(void)state;
	assert_int_equal(mime_qp_decode(&b, "a=G1", 4), -1);
	rbuf_reset(&b);
	assert_int_equal(mime_qp_decode(&b, "a=", 2), -1);
	rbuf_reset(&b);
	assert_int_equal(mime_qp_decode(&b, "a=\r\nb=c3=A9", 11), 0);
	assert_string_equal(b.p, "ab\xc3\xa9");
	rbuf_free(&b);
}

static void
test_b64(void **state)
{
	static const char *in[] = { "", "f", "fo", "foo", "foob", "fooba",
	    "foobar" };
	static const char *out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==",
	    "Zm9vYmE=", "Zm9vYmFy" };
	struct rbuf b = { 0 }, d = { 0 };
	unsigned char raw[1000];
	size_t i, t, n;

	(void)state;
	for (i = 0; i < 7; i++) {
		rbuf_reset(&b);
		mime_b64_encode(&b, in[i], strlen(in[i]), 0);
		assert_string_equal(b.p == NULL ? "" : b.p, out[i]);
		rbuf_reset(&d);
		assert_int_equal(mime_b64_decode(&d, out[i], strlen(out[i])), 0);
		assert_int_equal(d.len, strlen(in[i]));
		assert_memory_equal(d.p == NULL ? "" : d.p, in[i], d.len);
	}
	for (t = 0; t < 50; t++) {
		n = next_rand() % sizeof(raw);
		for (i = 0; i < n; i++)
			raw[i] = (unsigned char)next_rand();
		rbuf_reset(&b);
		mime_b64_encode(&b, raw, n, 76);
		assert_lines(b.p == NULL ? "" : b.p, b.len, 76);
		rbuf_reset(&d);
		assert_int_equal(mime_b64_decode(&d, b.p, b.len), 0);
		assert_int_equal(d.len, n);
		assert_memory_equal(d.p, raw, n);
	}
	rbuf_reset(&d);
	assert_int_equal(mime_b64_decode(&d, "Zm9v!", 5), -1);
	rbuf_free(&b);
	rbuf_free(&d);
}

/* Decode a header value that follows "Name: " and compare. */
static void
assert_header_decodes(const struct rbuf *b, size_t skip, const char *want)
{
	struct rbuf d = { 0 };

	assert_int_equal(mime_header_decode(&d, b->p + skip, b->len - skip), 0);
	assert_string_equal(d.p, want);
	rbuf_free(&d);
}

/*
 * Base64 with line breaks every wrap characters, whatever wrap is: the
 * output has exactly the length the breaks call for, full lines of wrap
 * characters, no empty line, and decodes back.  Each case gets a fresh
 * buffer, so under ASan a reservation too small for the breaks is a heap
 * overflow, not a write into a larger buffer's slack (34818 bytes at
 * wrap 5 overran the old reservation past its power-of-two slack).
 */
static void
test_b64_wrap(void **state)
{
	static const size_t wraps[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 75, 76, 77,
	    78, 1000 };
	static const size_t lens[] = { 0, 1, 2, 3, 4, 5, 6, 56, 57, 58, 100,
	    255, 1000, 4389, 20000, 34818 };
	struct rbuf b, d = { 0 };
	unsigned char *raw;
	size_t w, l, i, olen, want, line, wrap, len;

	(void)state;
	raw = malloc(40000);
	assert_non_null(raw);
	for (i = 0; i < 40000; i++)
		raw[i] = (unsigned char)next_rand();
	for (w = 0; w < sizeof(wraps) / sizeof(wraps[0]); w++) {
		for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			wrap = wraps[w];
			len = lens[l];
			olen = (len + 2) / 3 * 4;
			want = olen + (wrap > 0 && olen > 0 ?
			    (olen - 1) / wrap * 2 : 0);
			memset(&b, 0, sizeof(b));
			/* After a prefix, as a message body would be. */
			rbuf_add(&b, "x", 1);
			mime_b64_encode(&b, raw, len, wrap);
			if (b.len != 1 + want)
				fail_msg("wrap %zu, %zu bytes: %zu characters, "
				    "want %zu", wrap, len, b.len - 1, want);
			line = 0;
			for (i = 1; i < b.len; i++) {
				if (b.p[i] == '\r') {
					assert_true(b.p[i + 1] == '\n');
					/* Every line but the last is full. */
					assert_int_equal(line, wrap);
					line = 0;
					i++;
					continue;
				}
				assert_true(b.p[i] != '\n');
				line++;
				if (wrap > 0)
					assert_true(line <= wrap);
			}
			assert_true(len == 0 || line > 0);
			rbuf_reset(&d);
			assert_int_equal(mime_b64_decode(&d, b.p + 1,
			    b.len - 1), 0);
			assert_int_equal(d.len, len);
			if (len > 0)
				assert_memory_equal(d.p, raw, len);
			rbuf_free(&b);
		}
	}
	rbuf_free(&d);
	free(raw);
}

static void
test_header_text(void **state)
{
	struct rbuf b = { 0 };
	const char *jp = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae"
	    "\xe3\x82\xb0\xe3\x83\xab\xe3\x83\xbc\xe3\x83\x97";
	char big[2000];
	size_t i;

	(void)state;
	rbuf_adds(&b, "Subject: ");
	mime_header_text(&b, 9, "Your daily digest: Cooks", 24);
	assert_string_equal(b.p, "Subject: Your daily digest: Cooks");

	rbuf_reset(&b);
	rbuf_adds(&b, "Subject: ");
	mime_header_text(&b, 9, "Caf\xc3\xa9 cr\xc3\xa8me", 12);
	assert_non_null(strstr(b.p, "=?UTF-8?B?"));
	assert_lines(b.p, b.len, 76);
	assert_header_decodes(&b, 9, "Caf\xc3\xa9 cr\xc3\xa8me");

	/* "=?" in ASCII text is encoded too, so it cannot be misread. */
	rbuf_reset(&b);
	mime_header_text(&b, 9, "a =?x?Q?y?= b", 13);
	assert_non_null(strstr(b.p, "=?UTF-8?B?"));
	assert_header_decodes(&b, 0, "a =?x?Q?y?= b");

	/* Long text: many words, each on a character boundary. */
	big[0] = '\0';
	for (i = 0; i < 20; i++)
		strcat(big, jp);
	rbuf_reset(&b);
	rbuf_adds(&b, "Subject: ");
	mime_header_text(&b, 9, big, strlen(big));
	assert_lines(b.p, b.len, 76);
	assert_header_decodes(&b, 9, big);
	{
		/* Each word alone decodes to valid UTF-8. */
		const char *p = b.p;
		struct rbuf w = { 0 };

		while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
			const char *e = strstr(p, "?=");

			rbuf_reset(&w);
			assert_int_equal(mime_b64_decode(&w, p + 10,
			    (size_t)(e - p - 10)), 0);
			assert_true(mime_utf8_valid(w.p, w.len));
			assert_true(e - p + 2 <= 75);
			p = e + 2;
		}
		rbuf_free(&w);
	}

	/* Long ASCII folds at spaces. */
	memset(big, 0, sizeof(big));
	for (i = 0; i < 40; i++)
		strcat(big, "word ");
	big[strlen(big) - 1] = '\0';
	rbuf_reset(&b);
	rbuf_adds(&b, "Subject: ");
	mime_header_text(&b, 9, big, strlen(big));
	assert_lines(b.p, b.len, 78);
	assert_header_decodes(&b, 9, big);

	/* A long word cannot fold: it stays whole, and the rest folds. */
	memset(big, 'x', 150);
	strcpy(big + 150, " tail end");
	memcpy(big + 20, " ", 1);
	rbuf_reset(&b);
	rbuf_adds(&b, "Subject: ");
	mime_header_text(&b, 9, big, strlen(big));
	assert_lines(b.p, b.len, 200);
	assert_header_decodes(&b, 9, big);
	/* Even from a column already past the limit. */
	rbuf_reset(&b);
	mime_header_text(&b, 90, " a b", 4);
	assert_header_decodes(&b, 0, " a b");
	rbuf_free(&b);
}

static void
test_header_phrase(void **state)
{
	struct rbuf b = { 0 };

	(void)state;
	mime_header_phrase(&b, 4, "John \"J\" Doe\\", 13);
	assert_string_equal(b.p, "\"John \\\"J\\\" Doe\\\\\"");
	assert_header_decodes(&b, 0, "John \"J\" Doe\\");
	rbuf_reset(&b);
	mime_header_phrase(&b, 4, "J\xc3\xb6hn <x@y>", 11);
	assert_null(strchr(b.p, '<'));
	assert_header_decodes(&b, 0, "J\xc3\xb6hn <x@y>");
	rbuf_free(&b);
}

static void
clean_is(const char *in, size_t max, int flags, const char *want)
{
	struct rbuf b = { 0 };
	size_t n;

	n = mime_clean(&b, in, max, flags);
	assert_int_equal(n, strlen(want));
	assert_string_equal(b.p == NULL ? "" : b.p, want);
	rbuf_free(&b);
}

static void
test_clean(void **state)
{
	(void)state;
	clean_is("X\r\nBcc: evil@example.com", 100, MIME_CLEAN_ONELINE,
	    "X Bcc: evil@example.com");
	clean_is("  a\t\tb \x01\x7f c  ", 100, MIME_CLEAN_ONELINE, "a b c");
	/* C1 controls and the Unicode line separators. */
	clean_is("a\xc2\x85" "b\xe2\x80\xa8" "c", 100, MIME_CLEAN_ONELINE,
	    "a b c");
	/*
	 * One-line text loses the bidi controls outright (embeddings,
	 * overrides, isolates, the marks): a name or subject cannot turn
	 * itself around.  Other right-to-left text stays as it is.
	 */
	clean_is("Ann\xe2\x80\xae" "fdp.exe", 100, MIME_CLEAN_ONELINE,
	    "Annfdp.exe");
	clean_is("a\xe2\x80\xaa" "b\xe2\x80\xab" "c\xe2\x80\xac" "d"
	    "\xe2\x80\xad" "e\xe2\x80\xae" "f", 100, MIME_CLEAN_ONELINE,
	    "abcdef");
	clean_is("a\xe2\x81\xa6" "b\xe2\x81\xa7" "c\xe2\x81\xa8" "d"
	    "\xe2\x81\xa9" "e", 100, MIME_CLEAN_ONELINE, "abcde");
	clean_is("a\xe2\x80\x8e" "b\xe2\x80\x8f" "c\xd8\x9c" "d", 100,
	    MIME_CLEAN_ONELINE, "abcd");
	clean_is(" \xe2\x80\xae x \xe2\x81\xa6 ", 100, MIME_CLEAN_ONELINE,
	    "x");
	clean_is("\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd8\xb3\xd9\x84\xd8\xa7"
	    "\xd9\x85", 100, MIME_CLEAN_ONELINE,
	    "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d "
	    "\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85");
	/* Neighbours of the ranges are ordinary characters. */
	clean_is("\xe2\x80\xa9", 100, MIME_CLEAN_ONELINE, "");
	clean_is("\xe2\x80\xaf" "\xe2\x81\xa5" "\xe2\x81\xaa" "\xd8\x9b", 100,
	    MIME_CLEAN_ONELINE,
	    "\xe2\x80\xaf" "\xe2\x81\xa5" "\xe2\x81\xaa" "\xd8\x9b");
	/* Invalid UTF-8: each bad byte becomes U+FFFD. */
	clean_is("a\xff" "b\xc3", 100, 0, "a\xef\xbf\xbd" "b\xef\xbf\xbd");
	clean_is("\xed\xa0\x80", 100, 0,
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");	/* a surrogate */
	clean_is("\xc0\xaf", 100, 0, "\xef\xbf\xbd\xef\xbf\xbd"); /* overlong */
	/* Cut on a character boundary, with or without the ellipsis. */
	clean_is("\xc3\xa9\xc3\xa9\xc3\xa9", 2, 0, "\xc3\xa9\xc3\xa9");
	clean_is("abcdef", 4, MIME_CLEAN_ELLIPSIS, "abc\xe2\x80\xa6");
	clean_is("ab de", 4, MIME_CLEAN_ELLIPSIS | MIME_CLEAN_ONELINE,
	    "ab\xe2\x80\xa6");
	clean_is("abcd", 4, MIME_CLEAN_ELLIPSIS, "abcd");
	/* Multi-line mode keeps LF and TAB, turns CRLF and CR into LF. */
	clean_is("a\r\nb\rc\td\x01", 100, 0, "a\nb\nc\td ");
	clean_is(NULL, 10, 0, "");
	assert_true(mime_utf8_valid("\xf0\x9f\x98\x80", 4));
	assert_false(mime_utf8_valid("\xf4\x90\x80\x80", 4));
}

static void
test_html_escape(void **state)
{
	struct rbuf b = { 0 };
	const char *in = "<a href=\"x\" onclick='y'>&amp;</a>";

	(void)state;
	mime_html_escape(&b, in, strlen(in));
	assert_string_equal(b.p, "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;"
	    "&gt;&amp;amp;&lt;/a&gt;");
	rbuf_free(&b);
}

static void
url_is(const char *in, const char *want)
{
	struct rbuf b = { 0 };

	if (want == NULL) {
		assert_int_equal(mime_url_safe(&b, in, 2048), -1);
		assert_int_equal(b.len, 0);
	} else {
		assert_int_equal(mime_url_safe(&b, in, 2048), 0);
		assert_string_equal(b.p, want);
	}
	rbuf_free(&b);
}

static void
test_url_safe(void **state)
{
	char big[3000];

	(void)state;
	url_is("https://example.com/p/1?a=1&b=2",
	    "https://example.com/p/1?a=1&b=2");
	url_is("HTTP://Example.com/", "HTTP://Example.com/");
	url_is(" https://e.com/x ", "https://e.com/x");
	url_is("https://e.com/a b\"c<d>", "https://e.com/a%20b%22c%3Cd%3E");
	url_is("https://e.com/caf\xc3\xa9", "https://e.com/caf%C3%A9");
	url_is("javascript:alert(1)", NULL);
	url_is("JavaScript:alert(1)", NULL);
	url_is(" javascript:alert(1)", NULL);
	url_is("data:text/html;base64,PHNjcmlwdD4=", NULL);
	url_is("vbscript:msgbox", NULL);
	url_is("//evil.example.com/", NULL);
	url_is("/relative", NULL);
	url_is("ftp://e.com/", NULL);
	url_is("http:///x", NULL);
	url_is("https://", NULL);
	url_is("https://e.com/\r\nX: y", NULL);
	url_is("https://e.com/\tx", NULL);
	url_is("", NULL);
	url_is(NULL, NULL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "https://", 8);
	url_is(big, NULL);
}

static void
test_addr_check(void **state)
{
	static const char *good[] = { "a@b.c", "user.name+tag@example.com",
	    "x@localhost", "o'brien@ex-ample.org" };
	static const char *bad[] = { "", "nobody", "@example.com", "a@",
	    "a b@example.com", "a@example.com\r\nBcc: x@y.z",
	    "a@exa mple.com", "<a@b.c>", "a@b..c", "a@.b", "a..b@c.d",
	    ".a@b.c", "a.@b.c", "a\"b@c.d", "a@b.c.", "a@b_c.d",
	    "\xc3\xa9@b.c", "a,b@c.d", "a@[1.2.3.4]" };
	char big[400];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(mime_addr_check(good[i]), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mime_addr_check(bad[i]), -1);
	assert_int_equal(mime_addr_check(NULL), -1);
	memset(big, 'a', 65);
	strcpy(big + 65, "@b.c");
	assert_int_equal(mime_addr_check(big), -1);
	memset(big, 'a', 300);
	strcpy(big + 1, "@");
	memset(big + 2, 'b', 290);
	strcpy(big + 292, ".c");
	assert_int_equal(mime_addr_check(big), -1);
}

static void
test_rbuf(void **state)
{
	struct rbuf b = { 0 };

	(void)state;
	rbuf_addi64(&b, 0);
	rbuf_addc(&b, ' ');
	rbuf_addi64(&b, -42);
	rbuf_addc(&b, ' ');
	rbuf_addi64(&b, INT64_MIN);
	assert_string_equal(b.p, "0 -42 -9223372036854775808");
	rbuf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	rbuf_free(&b);
	rbuf_free(&b);
	rbuf_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qp_known),
		cmocka_unit_test(test_qp_roundtrip),
		cmocka_unit_test(test_qp_decode_bad),
		cmocka_unit_test(test_b64),
		cmocka_unit_test(test_b64_wrap),
		cmocka_unit_test(test_header_text),
		cmocka_unit_test(test_header_phrase),
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_html_escape),
		cmocka_unit_test(test_url_safe),
		cmocka_unit_test(test_addr_check),
		cmocka_unit_test(test_rbuf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
