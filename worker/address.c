/*
 * Addresses for SMTP (see address.h): the preparation of a recipient's
 * address read from Redis, and the expansion of the VERP envelope sender.
 *
 * A domain in Unicode is converted with libidn2 to the ASCII form every
 * server takes, so the recipient is reached without SMTPUTF8.  A local
 * part outside ASCII has no ASCII form: only a server that offers
 * SMTPUTF8 (RFC 6531) can take it, and the caller decides.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>

#include "address.h"
#include "mime.h"

#define VERP_ID_MAX	20	/* "-9223372036854775808" */

static int
address_has_8bit(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 1;
	return 0;
}

/* 1 if s (n bytes) is well-formed UTF-8 with no control character. */
static int
address_utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + n;
	static const unsigned int least[4] = { 0, 0x80, 0x800, 0x10000 };
	unsigned int c;
	int k, len;

	while (p < e) {
		c = *p++;
		if (c < 0x80) {
			if (c < 0x21 || c == 0x7f)
				return 0;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, c &= 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, c &= 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, c &= 0x07;
		else
			return 0;
		if (e - p < k)
			return 0;
		len = k;
		while (k-- > 0) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			c = (c << 6) | (*p++ & 0x3f);
		}
		/* Overlong forms, surrogates, beyond U+10FFFF, C1 controls. */
		if (c < least[len] || c < 0xa0 || (c >= 0xd800 &&
		    c <= 0xdfff) || c > 0x10ffff)
			return 0;
	}
	return 1;
}

int
address_prepare(const char *addr, char *buf, size_t buflen, const char **out,
    const char **why)
{
	const char *at;
	char *ace = NULL;
	size_t llen, n;
	int rc;

	*out = NULL;
	*why = NULL;
	if (addr == NULL || (at = strrchr(addr, '@')) == NULL || at == addr ||
	    at[1] == '\0') {
		*why = "not local@domain";
		return ADDRESS_BAD;
	}
	llen = (size_t)(at - addr);
	if (!address_has_8bit(addr, strlen(addr))) {
		if (mime_addr_check(addr) == -1) {
			*why = "not a plain address";
			return ADDRESS_BAD;
		}
		*out = addr;
		return ADDRESS_OK;
	}
	if (!address_utf8_ok(addr, strlen(addr))) {
		*why = "not valid UTF-8";
		return ADDRESS_BAD;
	}
	if (address_has_8bit(addr, llen)) {
		*why = "local part not ASCII: needs SMTPUTF8";
		return ADDRESS_UTF8_LOCAL;
	}
	rc = idn2_to_ascii_8z(at + 1, &ace, IDN2_NFC_INPUT |
	    IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK) {
		*why = "domain has no IDNA form";
		return ADDRESS_BAD;
	}
	n = strlen(ace);
	if (llen + 1 + n + 1 > buflen) {
		idn2_free(ace);
		*why = "too long once in punycode";
		return ADDRESS_BAD;
	}
	memcpy(buf, addr, llen + 1);
	memcpy(buf + llen + 1, ace, n + 1);
	idn2_free(ace);
	if (mime_addr_check(buf) == -1) {
		*why = "not a plain address once in punycode";
		return ADDRESS_BAD;
	}
	*out = buf;
	return ADDRESS_OK;
}

/* The placeholder at p: 'u' for {uid}, 'g' for {gid}, else 0. */
static int
address_verp_tag(const char *p)
{
	if (strncmp(p, "{uid}", 5) == 0)
		return 'u';
	if (strncmp(p, "{gid}", 5) == 0)
		return 'g';
	return 0;
}

int
address_verp_needed(const char *pattern)
{
	return strchr(pattern, '{') != NULL;
}

int
address_verp_check(const char *pattern, char *err, size_t errlen)
{
	char probe[ADDRESS_MAX * 4];
	const char *at = strrchr(pattern, '@'), *p;

	if (strpbrk(pattern, "{}") == NULL)
		return 0;	/* the one sender for all, checked as digest.from */
	for (p = pattern; *p != '\0'; p++) {
		if (*p != '{' && *p != '}')
			continue;
		if (*p == '}' || address_verp_tag(p) == 0) {
			snprintf(err, errlen, "smtp.envelope_from: \"%s\": only "
			    "{uid} and {gid} may be used", pattern);
			return -1;
		}
		if (at == NULL || p > at) {
			snprintf(err, errlen, "smtp.envelope_from: \"%s\": "
			    "{uid} and {gid} belong in the local part", pattern);
			return -1;
		}
		p += 4;
	}
	/* The longest ids there are must still make an address. */
	if (address_verp(pattern, INT64_MIN, INT64_MIN, probe,
	    sizeof(probe)) == -1 || mime_addr_check(probe) == -1) {
		snprintf(err, errlen, "smtp.envelope_from: \"%s\" is no valid "
		    "address once {uid} and {gid} are expanded (at most 64 "
		    "octets before the @)", pattern);
		return -1;
	}
	return 0;
}

/* Decimal form of v at out; its length.  No printf per message. */
static size_t
address_i64(char *out, int64_t v)
{
	char tmp[VERP_ID_MAX + 1], *e = tmp + sizeof(tmp), *q = e;
	uint64_t u = v < 0 ? 0ULL - (uint64_t)v : (uint64_t)v;
	size_t n;

	do {
		*--q = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--q = '-';
	n = (size_t)(e - q);
	memcpy(out, q, n);
	return n;
}

int
address_verp(const char *pattern, int64_t uid, int64_t gid, char *out,
    size_t outlen)
{
	size_t o = 0;
	const char *p;
	int tag;

	for (p = pattern; *p != '\0'; p++) {
		if (*p == '{' && (tag = address_verp_tag(p)) != 0) {
			if (outlen - o < VERP_ID_MAX + 1)
				return -1;
			o += address_i64(out + o, tag == 'u' ? uid : gid);
			p += 4;
			continue;
		}
		if (outlen - o < 2)
			return -1;
		out[o++] = *p;
	}
	if (o >= outlen)
		return -1;
	out[o] = '\0';
	return (int)o;
}
