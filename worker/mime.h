/*
 * The MIME and RFC 5322 building blocks of a digest email: the output
 * buffer, UTF-8 cleaning of untrusted text, HTML escaping, the URL check
 * that decides what may become a link, quoted-printable and base64 body
 * encodings, RFC 2047 encoded-words for header text and phrases, and the
 * address check.  Their decoders, which the tests and the fuzz target use
 * to check that what the encoders write reads back, are test support
 * (tests/unit/mime_decode.h).
 *
 * Nothing here knows about digests; render.c puts the pieces together.
 */
#ifndef DIGESTD_MIME_H
#define DIGESTD_MIME_H

#include <stddef.h>
#include <string.h>

#include "render.h"

/* Make room for more bytes; exits with EXIT_WORKER_OOM on failure. */
void rbuf_reserve(struct rbuf *, size_t more);

static inline void
rbuf_add(struct rbuf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n + 1)
		rbuf_reserve(b, n + 1);
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static inline void
rbuf_adds(struct rbuf *b, const char *s)
{
	rbuf_add(b, s, strlen(s));
}

static inline void
rbuf_addc(struct rbuf *b, char c)
{
	if (b->cap - b->len < 2)
		rbuf_reserve(b, 2);
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

/* Append the decimal form of v. */
void rbuf_addi64(struct rbuf *, long long v);

/*
 * Flags of mime_clean.  ONELINE turns every control character (CR, LF,
 * NUL, TAB, the C0 and C1 sets, DEL, U+2028 and U+2029) into a space,
 * drops the bidi controls (U+202A to U+202E, U+2066 to U+2069, U+200E,
 * U+200F, U+061C), collapses runs of spaces and trims both ends: the form
 * for headers and for one-line fields.  ELLIPSIS appends U+2026 when the
 * text was cut.
 */
#define MIME_CLEAN_ONELINE	0x1
#define MIME_CLEAN_ELLIPSIS	0x2

/*
 * Append src (NUL-terminated, may be NULL) to out as valid UTF-8: each
 * byte that does not start a well-formed sequence becomes U+FFFD; at most
 * maxchars characters are kept, cut on a character boundary.  Returns the
 * number of bytes appended.
 */
size_t mime_clean(struct rbuf *out, const char *src, size_t maxchars,
    int flags);

/* Append s with & < > " ' replaced by entities (text and attributes). */
void mime_html_escape(struct rbuf *out, const char *s, size_t len);

/*
 * If url is an absolute http or https URL that is safe to put in an href,
 * append it to out (spaces, quotes, angle brackets, backslashes, backquotes
 * and non-ASCII bytes percent-encoded) and return 0.  Any other scheme
 * (javascript:, data:, vbscript:, relative...), a control character or a
 * URL longer than maxlen: append nothing and return -1.
 */
int mime_url_safe(struct rbuf *out, const char *url, size_t maxlen);

/*
 * Quoted-printable (RFC 2045 6.7) of len bytes starting at column 0.  LF
 * and CRLF in the input are line breaks, written as CRLF; encoded lines
 * never pass 76 octets (soft breaks "=" CRLF); '=' and every byte outside
 * 33..126 are encoded, a space or tab only before a line break or at the
 * end; a '.' or "From " at the start of a line is encoded too, so no
 * transport's dot-stuffing or mbox quoting matters.  The end of the input
 * counts as the end of a line.  The output never holds "=_", which is why
 * boundaries start with it.
 */
void mime_qp_encode(struct rbuf *out, const char *s, size_t len);

/*
 * Base64; wrap > 0 puts a CRLF between lines of wrap output characters
 * (none before the first or after the last).
 */
void mime_b64_encode(struct rbuf *out, const void *p, size_t len, size_t wrap);

/*
 * Header text (RFC 5322 unstructured, e.g. a Subject), already cleaned to
 * one line of valid UTF-8.  col is the column the value starts at (after
 * "Subject: ").  Printable ASCII that fits the line and holds no "=?" goes
 * as it is; anything else as UTF-8 B encoded-words of at most 75 octets,
 * split on character boundaries and folded with CRLF SP.
 */
void mime_header_text(struct rbuf *out, size_t col, const char *s, size_t len);

/*
 * A display name (RFC 5322 phrase), already cleaned to one line: a
 * quoted-string when it is printable ASCII, else encoded-words as above.
 * Returns the column after it (on the last folded line).
 */
size_t mime_header_phrase(struct rbuf *out, size_t col, const char *s,
    size_t len);

/*
 * 0 if addr is a plain ASCII addr-spec we can put between angle brackets:
 * local@domain, no space, control, quote or bracket, a local part of at
 * most 64 and a whole of at most 254 octets, a domain of letters, digits,
 * hyphens and dots with no empty label.  Else -1.
 */
int mime_addr_check(const char *addr);

#endif
