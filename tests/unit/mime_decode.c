/*
 * Test support: decoders for what worker/mime.c encodes (quoted-printable,
 * base64, RFC 2047 header values) and a UTF-8 check, so that the unit
 * tests and the fuzz target can read a rendered message back.  digestd
 * itself never decodes MIME.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime_decode.h"
#include "util.h"

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
mime_qp_decode(struct rbuf *out, const char *s, size_t len)
{
	size_t i;
	int h, l;

	rbuf_reserve(out, len + 1);
	for (i = 0; i < len; i++) {
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
			continue;
		if (s[i] != '=') {
			out->p[out->len++] = s[i];
			continue;
		}
		if (i + 1 < len && s[i + 1] == '\n') {
			i++;
			continue;
		}
		if (i + 2 < len && s[i + 1] == '\r' && s[i + 2] == '\n') {
			i += 2;
			continue;
		}
		if (i + 2 >= len || (h = hexval(s[i + 1])) < 0 ||
		    (l = hexval(s[i + 2])) < 0)
			return -1;
		out->p[out->len++] = (char)(h << 4 | l);
		i += 2;
	}
	out->p[out->len] = '\0';
	return 0;
}

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
mime_b64_decode(struct rbuf *out, const char *s, size_t len)
{
	uint32_t acc = 0;
	size_t i;
	int bits = 0, v, pad = 0;

	rbuf_reserve(out, len / 4 * 3 + 4);
	for (i = 0; i < len; i++) {
		if (s[i] == '\r' || s[i] == '\n' || s[i] == ' ' || s[i] == '\t')
			continue;
		if (s[i] == '=') {
			pad++;
			continue;
		}
		if (pad || (v = b64val((unsigned char)s[i])) < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out->p[out->len++] = (char)(acc >> bits);
		}
	}
	out->p[out->len] = '\0';
	return pad > 2 ? -1 : 0;
}

/* Decode one encoded-word at s; its length, or 0 if it is not one. */
static size_t
decode_word(struct rbuf *out, const char *s, size_t len)
{
	size_t i, cs, enc, text, end;

	if (len < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	for (i = 2; i < len && s[i] != '?'; i++)
		if (s[i] == ' ' || s[i] == '\r' || s[i] == '\n')
			return 0;
	cs = i;
	if (cs + 3 >= len || s[cs + 2] != '?')
		return 0;
	enc = cs + 1;
	text = cs + 3;
	for (end = text; end + 1 < len; end++) {
		if (s[end] == '?' && s[end + 1] == '=')
			break;
		if (s[end] == ' ' || s[end] == '\r' || s[end] == '\n')
			return 0;
	}
	if (end + 1 >= len)
		return 0;
	if (s[enc] == 'B' || s[enc] == 'b') {
		if (mime_b64_decode(out, s + text, end - text) == -1)
			return 0;
	} else if (s[enc] == 'Q' || s[enc] == 'q') {
		rbuf_reserve(out, end - text + 1);
		for (i = text; i < end; i++) {
			int h, l;

			if (s[i] == '_')
				out->p[out->len++] = ' ';
			else if (s[i] == '=' && i + 2 < end &&
			    (h = hexval(s[i + 1])) >= 0 &&
			    (l = hexval(s[i + 2])) >= 0) {
				out->p[out->len++] = (char)(h << 4 | l);
				i += 2;
			} else
				out->p[out->len++] = s[i];
		}
		out->p[out->len] = '\0';
	} else
		return 0;
	return end + 2;
}

int
mime_header_decode(struct rbuf *out, const char *s, size_t len)
{
	size_t i = 0, n, after_word = 0;
	int prev_word = 0;

	while (i < len) {
		/* Unfold: CRLF (or LF) before a blank disappears. */
		if (s[i] == '\r' && i + 2 < len && s[i + 1] == '\n' &&
		    (s[i + 2] == ' ' || s[i + 2] == '\t')) {
			i += 2;
			continue;
		}
		if (s[i] == '\n' && i + 1 < len &&
		    (s[i + 1] == ' ' || s[i + 1] == '\t')) {
			i++;
			continue;
		}
		if (s[i] == '=' && i + 1 < len && s[i + 1] == '?') {
			size_t mark = out->len;

			if (prev_word)
				out->len = after_word;
			if ((n = decode_word(out, s + i, len - i)) > 0) {
				i += n;
				prev_word = 1;
				after_word = out->len;
				continue;
			}
			out->len = mark;
		}
		if (s[i] == ' ' || s[i] == '\t') {
			rbuf_addc(out, s[i++]);
			continue;
		}
		prev_word = 0;
		if (s[i] == '"') {
			for (i++; i < len && s[i] != '"'; i++) {
				if (s[i] == '\\' && i + 1 < len)
					i++;
				rbuf_addc(out, s[i]);
			}
			if (i >= len)
				return -1;
			i++;
			continue;
		}
		rbuf_addc(out, s[i++]);
	}
	rbuf_reserve(out, 1);
	out->p[out->len] = '\0';
	return 0;
}

int
mime_utf8_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if ((n = utf8_decode(u + i, len - i, &cp)) == 0)
			return 0;
		i += n;
	}
	return 1;
}
