/*
 * MIME and RFC 5322 encoders for the digest email, and the checks that keep
 * untrusted text from Redis harmless: UTF-8 repair, control-character
 * removal, HTML escaping, the http/https link check, the address check.
 *
 * The encoders are written for render.c's split of work: the per-job
 * pre-encoding goes through the same functions as the small per-recipient
 * pieces, so they avoid per-byte calls into the buffer and reserve their
 * worst case once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "util.h"

static const char hexdig[] = "0123456789ABCDEF";
static const char b64dig[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void
rbuf_reset(struct rbuf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

void
rbuf_free(struct rbuf *b)
{
	if (b == NULL)
		return;
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void
rbuf_reserve(struct rbuf *b, size_t more)
{
	size_t need, cap;

	need = b->len + more + 1;
	if (need <= b->cap)
		return;
	cap = b->cap < 256 ? 256 : b->cap;
	while (cap < need)
		cap *= 2;
	/* The job path: running out here must end in the OOM exit code. */
	b->p = wrealloc(b->p, cap);
	b->cap = cap;
}

void
rbuf_addi64(struct rbuf *b, long long v)
{
	char tmp[24], *e = tmp + sizeof(tmp), *q = e;
	unsigned long long u;

	u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		*--q = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--q = '-';
	rbuf_add(b, q, (size_t)(e - q));
}

/*
 * Length of the well-formed UTF-8 sequence at s (at most n bytes), with
 * its code point in *cp, or 0 when the first byte does not start one
 * (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF).
 */
static size_t
utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if (len == 2)
		*cp = ((uint32_t)(c & 0x1f) << 6) | (s[1] & 0x3f);
	else if (len == 3)
		*cp = ((uint32_t)(c & 0x0f) << 12) |
		    ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
	else
		*cp = ((uint32_t)(c & 0x07) << 18) |
		    ((uint32_t)(s[1] & 0x3f) << 12) |
		    ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
	return len;
}

static int
is_control(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||
	    cp == 0x2028 || cp == 0x2029;
}

/*
 * The bidi formatting characters: embeddings and overrides (U+202A to
 * U+202E), isolates (U+2066 to U+2069), and the marks (LRM, RLM, ALM).
 * In a name or a subject they only serve to make text read other than it
 * is ("Ann<RLO>fdp.exe" shows as "Annexe.pdf"), and an override never
 * closed spills over what follows on the line.
 */
static int
is_bidi(uint32_t cp)
{
	return (cp >= 0x202a && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069) ||
	    cp == 0x200e || cp == 0x200f || cp == 0x061c;
}

/* A byte mime_clean keeps as it is, whatever surrounds it. */
#define MIME_CLEAN_PLAIN(b, oneline) \
	(((b) > ' ' && (b) < 0x7f) || (!(oneline) && (b) == ' '))

size_t
mime_clean(struct rbuf *out, const char *src, size_t maxchars, int flags)
{
	static const char repl[] = "\xef\xbf\xbd";	/* U+FFFD */
	const unsigned char *s = (const unsigned char *)src;
	size_t start, n, len, i, nchars = 0;
	int pending = 0, cut = 0, oneline = flags & MIME_CLEAN_ONELINE;
	uint32_t cp = 0;	/* set by utf8_seq wherever it is read */

	start = out->len;
	if (src == NULL)
		return 0;
	len = strlen(src);
	/* Worst case: every byte becomes U+FFFD, plus the ellipsis. */
	rbuf_reserve(out, (len < maxchars ? len : maxchars) * 4 + 8);
	for (i = 0; i < len; i += n) {
		const char *put;
		size_t putlen, k, avail;

		/*
		 * A run of printable ASCII (and, keeping lines, its spaces)
		 * is kept as it is: one copy, up to what maxchars allows.
		 */
		if (MIME_CLEAN_PLAIN(s[i], oneline) &&
		    nchars + pending + 1 <= maxchars) {
			avail = maxchars - nchars - pending;
			for (k = i + 1; k < len && k - i < avail &&
			    MIME_CLEAN_PLAIN(s[k], oneline); k++)
				;
			n = k - i;
			if (pending) {
				out->p[out->len++] = ' ';
				nchars++;
				pending = 0;
			}
			if (out->cap - out->len < n + 8)
				rbuf_reserve(out, n + 8);
			memcpy(out->p + out->len, s + i, n);
			out->len += n;
			nchars += n;
			continue;
		}
		if ((n = utf8_seq(s + i, len - i, &cp)) == 0) {
			n = 1;
			put = repl;
			putlen = 3;
		} else {
			put = (const char *)s + i;
			putlen = n;
		}
		if (oneline && put != repl && is_bidi(cp))
			continue;
		if (oneline && put != repl && (cp == ' ' || is_control(cp))) {
			if (out->len > start)
				pending = 1;
			continue;
		}
		if (!oneline && put != repl && is_control(cp)) {
			if (cp == '\r' && i + 1 < len && s[i + 1] == '\n')
				continue;
			if (cp == '\r')
				cp = '\n';
			else if (cp != '\n' && cp != '\t')
				cp = ' ';
			put = cp == '\n' ? "\n" : cp == '\t' ? "\t" : " ";
			putlen = 1;
		}
		if (nchars + pending + 1 > maxchars) {
			cut = 1;
			break;
		}
		if (pending) {
			out->p[out->len++] = ' ';
			nchars++;
			pending = 0;
		}
		if (out->cap - out->len < putlen + 8)
			rbuf_reserve(out, putlen + 8);
		memcpy(out->p + out->len, put, putlen);
		out->len += putlen;
		nchars++;
	}
	if (cut && (flags & MIME_CLEAN_ELLIPSIS)) {
		/* Make room for the ellipsis within maxchars when we can. */
		if (nchars >= maxchars && out->len > start) {
			do
				out->len--;
			while (out->len > start &&
			    ((unsigned char)out->p[out->len] & 0xc0) == 0x80);
		}
		while (out->len > start && out->p[out->len - 1] == ' ')
			out->len--;
		rbuf_reserve(out, 4);
		memcpy(out->p + out->len, "\xe2\x80\xa6", 3);
		out->len += 3;
	}
	out->p[out->len] = '\0';
	return out->len - start;
}

void
mime_html_escape(struct rbuf *out, const char *s, size_t len)
{
	static const unsigned char special[256] = {
		['&'] = 1, ['<'] = 1, ['>'] = 1, ['"'] = 1, ['\''] = 1,
	};
	const unsigned char *u = (const unsigned char *)s;
	size_t i, run;
	char *p;

	/* Six bytes per input byte at most ("&quot;"): reserve once. */
	rbuf_reserve(out, len * 6 + 1);
	p = out->p + out->len;
	for (i = 0; i < len;) {
		for (run = i; run < len && !special[u[run]]; run++)
			;
		memcpy(p, s + i, run - i);
		p += run - i;
		if (run == len)
			break;
		switch (u[run]) {
		case '&':
			memcpy(p, "&amp;", 5);
			p += 5;
			break;
		case '<':
			memcpy(p, "&lt;", 4);
			p += 4;
			break;
		case '>':
			memcpy(p, "&gt;", 4);
			p += 4;
			break;
		case '"':
			memcpy(p, "&quot;", 6);
			p += 6;
			break;
		default:
			memcpy(p, "&#39;", 5);
			p += 5;
			break;
		}
		i = run + 1;
	}
	out->len = (size_t)(p - out->p);
	out->p[out->len] = '\0';
}

int
mime_url_safe(struct rbuf *out, const char *url, size_t maxlen)
{
	const unsigned char *s;
	size_t len, i, skip;

	if (url == NULL)
		return -1;
	while (*url == ' ' || *url == '\t')
		url++;
	len = strlen(url);
	while (len > 0 && (url[len - 1] == ' ' || url[len - 1] == '\t'))
		len--;
	if (len == 0 || len > maxlen)
		return -1;
	if (len > 7 && strncasecmp(url, "http://", 7) == 0)
		skip = 7;
	else if (len > 8 && strncasecmp(url, "https://", 8) == 0)
		skip = 8;
	else
		return -1;
	s = (const unsigned char *)url;
	/* An authority must follow: "http:///x" and "http://?" are not links. */
	if (s[skip] == '/' || s[skip] == '?' || s[skip] == '#')
		return -1;
	for (i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] == 0x7f)
			return -1;
	rbuf_reserve(out, len * 3 + 1);
	for (i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (c <= ' ' || c >= 0x7f || strchr("\"<>\\`{}|^", c) != NULL) {
			out->p[out->len++] = '%';
			out->p[out->len++] = hexdig[c >> 4];
			out->p[out->len++] = hexdig[c & 15];
		} else
			out->p[out->len++] = (char)c;
	}
	out->p[out->len] = '\0';
	return 0;
}

/*
 * Bytes that quoted-printable writes as they are: 1 always, 2 (blanks) when
 * not at the end of a line.  Everything else is encoded.
 */
static const unsigned char qp_class[256] = {
	['\t'] = 2, [' '] = 2,
	['!'] = 1, ['"'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1,
	['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1,
	['-'] = 1, ['.'] = 1, ['/'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1,
	['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,
	['9'] = 1, [':'] = 1, [';'] = 1, ['<'] = 1, ['>'] = 1, ['?'] = 1,
	['@'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
	['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
	['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
	['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
	['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['['] = 1, ['\\'] = 1, [']'] = 1,
	['^'] = 1, ['_'] = 1, ['`'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
	['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
	['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1,
	['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
	['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['{'] = 1,
	['|'] = 1, ['}'] = 1, ['~'] = 1,
};

static int
qp_trailing(const char *s, size_t len, size_t i)
{
	/* Is the blank at s[i] the last thing on its line? */
	return i + 1 == len || s[i + 1] == '\n' ||
	    (s[i + 1] == '\r' && i + 2 < len && s[i + 2] == '\n');
}

void
mime_qp_encode(struct rbuf *out, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, col = 0, w, k, lim;
	char *p;
	int lit;

	/*
	 * Worst case: every byte as =XX, a soft break per 25 of them, and
	 * CRLF for each LF; reserving it once lets the loop write directly.
	 */
	rbuf_reserve(out, len * 3 + len / 4 + 16);
	p = out->p + out->len;
	for (i = 0; i < len; i++) {
		unsigned char c = u[i];

		/*
		 * The common case, a run of plain bytes inside a line, goes
		 * in one copy.  A blank joins the run unless a line end or
		 * the end of the input follows it.
		 */
		if (col > 0 && col < 75 && qp_class[c] != 0) {
			lim = len - i < 75 - col ? len - i : 75 - col;
			for (k = 0; k < lim; k++) {
				unsigned char d = u[i + k];

				if (qp_class[d] == 1 || (qp_class[d] == 2 &&
				    !qp_trailing(s, len, i + k)))
					p[k] = (char)d;
				else
					break;
			}
			if (k > 0) {
				p += k;
				col += k;
				i += k - 1;
				continue;
			}
		}
		if (c == '\n' || (c == '\r' && i + 1 < len && u[i + 1] == '\n')) {
			if (c == '\r')
				i++;
			*p++ = '\r';
			*p++ = '\n';
			col = 0;
			continue;
		}
		if (c == ' ' || c == '\t')
			lit = !qp_trailing(s, len, i);
		else
			lit = qp_class[c] == 1;
		w = lit ? 1 : 3;
		if (col + w > 75) {
			*p++ = '=';
			*p++ = '\r';
			*p++ = '\n';
			col = 0;
		}
		if (col == 0 && lit && (c == '.' || (c == 'F' &&
		    len - i >= 5 && memcmp(s + i, "From ", 5) == 0))) {
			lit = 0;
			w = 3;
		}
		if (lit)
			*p++ = (char)c;
		else {
			*p++ = '=';
			*p++ = hexdig[c >> 4];
			*p++ = hexdig[c & 15];
		}
		col += w;
	}
	out->len = (size_t)(p - out->p);
	out->p[out->len] = '\0';
}

void
mime_b64_encode(struct rbuf *out, const void *data, size_t len, size_t wrap)
{
	const unsigned char *u = data;
	size_t i, k, col = 0, olen, need;
	char quad[4], *p;

	/*
	 * The exact size: 4 characters per 3 bytes, and a CRLF between
	 * every two lines of wrap characters, whatever wrap is.
	 */
	olen = (len + 2) / 3 * 4;
	need = olen;
	if (wrap > 0 && olen > 0)
		need += (olen - 1) / wrap * 2;
	rbuf_reserve(out, need);
	p = out->p + out->len;
	for (i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)u[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)u[i + 1] << 8;
		if (i + 2 < len)
			v |= u[i + 2];
		quad[0] = b64dig[v >> 18];
		quad[1] = b64dig[(v >> 12) & 63];
		quad[2] = i + 1 < len ? b64dig[(v >> 6) & 63] : '=';
		quad[3] = i + 2 < len ? b64dig[v & 63] : '=';
		if (wrap == 0 || col + 4 <= wrap) {
			memcpy(p, quad, 4);
			p += 4;
			col += 4;
			continue;
		}
		for (k = 0; k < 4; k++) {
			if (col == wrap) {
				*p++ = '\r';
				*p++ = '\n';
				col = 0;
			}
			*p++ = quad[k];
			col++;
		}
	}
	out->len = (size_t)(p - out->p);
	out->p[out->len] = '\0';
}

/* Printable ASCII with no "=?" that could be taken for an encoded-word. */
static int
plain_ascii(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] < 0x20 || s[i] > 0x7e)
			return 0;
		if (s[i] == '=' && i + 1 < len && s[i + 1] == '?')
			return 0;
	}
	return 1;
}

/*
 * Write s as UTF-8 B encoded-words, each at most 75 octets and the lines at
 * most 76, split on character boundaries, folded with CRLF SP.  Returns
 * the column after the last one.
 */
static size_t
encoded_words(struct rbuf *out, size_t col, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, n, maxbytes;
	int first = 1;

	while (i < len) {
		if (!first) {
			rbuf_add(out, "\r\n ", 3);
			col = 1;
		}
		maxbytes = col + 12 < 76 ? (76 - col - 12) / 4 * 3 : 0;
		if (maxbytes < 6) {
			rbuf_add(out, "\r\n ", 3);
			col = 1;
			maxbytes = (76 - col - 12) / 4 * 3;
		}
		first = 0;
		n = len - i < maxbytes ? len - i : maxbytes;
		/* Back off to a character boundary. */
		while (n > 0 && i + n < len && (u[i + n] & 0xc0) == 0x80)
			n--;
		if (n == 0)
			n = len - i < maxbytes ? len - i : maxbytes;
		rbuf_add(out, "=?UTF-8?B?", 10);
		mime_b64_encode(out, s + i, n, 0);
		rbuf_add(out, "?=", 2);
		col += 12 + (n + 2) / 3 * 4;
		i += n;
	}
	return col;
}

void
mime_header_text(struct rbuf *out, size_t col, const char *s, size_t len)
{
	size_t start = 0, lim, p;

	if (!plain_ascii(s, len)) {
		encoded_words(out, col, s, len);
		return;
	}
	/* Fold at spaces so lines stay within 78 octets where they can. */
	while (col + (len - start) > 78) {
		lim = start + (78 > col ? 78 - col : 0);
		for (p = lim; p > start && s[p] != ' '; p--)
			;
		if (p == start) {
			/* No blank early enough: fold at the next one. */
			for (p = lim > start ? lim : start + 1;
			    p < len && s[p] != ' '; p++)
				;
			if (p >= len)
				break;
		}
		rbuf_add(out, s + start, p - start);
		rbuf_add(out, "\r\n", 2);
		col = 0;
		start = p;
	}
	rbuf_add(out, s + start, len - start);
}

size_t
mime_header_phrase(struct rbuf *out, size_t col, const char *s, size_t len)
{
	size_t i;

	if (!plain_ascii(s, len))
		return encoded_words(out, col, s, len);
	rbuf_addc(out, '"');
	col++;
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			rbuf_addc(out, '\\');
			col++;
		}
		rbuf_addc(out, s[i]);
		col++;
	}
	rbuf_addc(out, '"');
	return col + 1;
}

int
mime_addr_check(const char *addr)
{
	const char *at, *p;
	size_t len, label = 0;

	if (addr == NULL || (len = strlen(addr)) == 0 || len > 254)
		return -1;
	if ((at = strrchr(addr, '@')) == NULL || at == addr ||
	    at - addr > 64 || at[1] == '\0')
		return -1;
	if (addr[0] == '.' || at[-1] == '.')
		return -1;
	for (p = addr; p < at; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || strchr("()<>[]\\,;:\"@", c))
			return -1;
		if (c == '.' && p[1] == '.')
			return -1;
	}
	for (p = at + 1; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-'))
			return -1;
		if (++label > 63)
			return -1;
	}
	return label == 0 ? -1 : 0;
}
