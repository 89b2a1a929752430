/*
 * The web console's request parsing and its two secrets' checks, as pure
 * functions (console.c calls them with what evhttp read; the unit tests
 * and tests/fuzz/fuzz_http.c with anything).
 *
 * Basic auth: the password is compared through SHA-256 digests of both
 * sides with CRYPTO_memcmp, so neither its length nor the position of the
 * first wrong byte shows in the time taken.
 *
 * CSRF: a form carries a token that is the HMAC, under a secret drawn by
 * the console process at start, of the browser's session id (a cookie
 * the console set) and the current hour.  A page from another site can
 * neither read the token nor compute it, so it cannot make the browser
 * post an action; a token found in a log stops working within two hours
 * and is worthless with another session.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "console_parse.h"

#define CONSOLE_COOKIE "digestd_console"

enum console_route
console_route(const char *method, const char *path, const char **allow)
{
	static const struct {
		const char *path;
		int post;
		enum console_route route;
	} routes[] = {
		{ "/", 0, CONSOLE_ROUTE_HOME },
		{ "/dlq", 0, CONSOLE_ROUTE_DLQ },
		{ "/console.js", 0, CONSOLE_ROUTE_SCRIPT },
		{ "/console.css", 0, CONSOLE_ROUTE_STYLE },
		{ "/favicon.ico", 0, CONSOLE_ROUTE_ICON },
		{ "/pause", 1, CONSOLE_ROUTE_PAUSE },
		{ "/resume", 1, CONSOLE_ROUTE_RESUME },
		{ "/dlq/requeue", 1, CONSOLE_ROUTE_REQUEUE },
		{ "/dlq/delete", 1, CONSOLE_ROUTE_DELETE },
	};
	size_t i;
	int get;

	if (allow != NULL)
		*allow = NULL;
	if (path == NULL || method == NULL)
		return CONSOLE_ROUTE_NOT_FOUND;
	get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(path, routes[i].path) != 0)
			continue;
		if (routes[i].post ? strcmp(method, "POST") == 0 : get)
			return routes[i].route;
		if (allow != NULL)
			*allow = routes[i].post ? "POST" : "GET, HEAD";
		return CONSOLE_ROUTE_BAD_METHOD;
	}
	return CONSOLE_ROUTE_NOT_FOUND;
}

static int
console_b64_value(int c)
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

/* Decode base64 (padding optional) into out; its length, or -1. */
static int
console_b64_decode(const char *s, unsigned char *out, size_t outlen)
{
	uint32_t acc = 0;
	size_t n = 0;
	int bits = 0, v, pad = 0;

	for (; *s != '\0'; s++) {
		if (*s == '=') {
			pad++;
			continue;
		}
		if (pad > 0 || (v = console_b64_value((unsigned char)*s)) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == outlen)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	if (pad > 2)
		return -1;
	return (int)n;
}

int
console_auth_check(const char *authorization, const char *password)
{
	unsigned char cred[512], want[SHA256_DIGEST_LENGTH];
	unsigned char got[SHA256_DIGEST_LENGTH];
	const unsigned char *colon;
	const char *p;
	int n, ok;

	if (authorization == NULL || password == NULL || *password == '\0')
		return 0;
	if (strncasecmp(authorization, "Basic", 5) != 0 ||
	    (authorization[5] != ' ' && authorization[5] != '\t'))
		return 0;
	for (p = authorization + 5; *p == ' ' || *p == '\t'; p++)
		;
	if ((n = console_b64_decode(p, cred, sizeof(cred))) < 0)
		return 0;
	if ((colon = memchr(cred, ':', (size_t)n)) == NULL) {
		explicit_bzero(cred, sizeof(cred));
		return 0;
	}
	colon++;
	SHA256(colon, (size_t)n - (size_t)(colon - cred), got);
	SHA256((const unsigned char *)password, strlen(password), want);
	ok = CRYPTO_memcmp(got, want, sizeof(got)) == 0;
	explicit_bzero(cred, sizeof(cred));
	explicit_bzero(got, sizeof(got));
	explicit_bzero(want, sizeof(want));
	return ok;
}

int
console_session_get(const char *cookie, char *sid)
{
	const char *p, *v;
	size_t n, i, len = strlen(CONSOLE_COOKIE);

	if (cookie == NULL)
		return -1;
	for (p = cookie; *p != '\0'; ) {
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		n = strcspn(p, ";");
		if (n > len && strncmp(p, CONSOLE_COOKIE, len) == 0 &&
		    p[len] == '=') {
			v = p + len + 1;
			if (n - len - 1 != CONSOLE_SESSION_LEN)
				return -1;
			for (i = 0; i < CONSOLE_SESSION_LEN; i++)
				if (!isdigit((unsigned char)v[i]) &&
				    (v[i] < 'a' || v[i] > 'f'))
					return -1;
			memcpy(sid, v, CONSOLE_SESSION_LEN);
			sid[CONSOLE_SESSION_LEN] = '\0';
			return 0;
		}
		p += n;
	}
	return -1;
}

void
console_csrf_token(const uint8_t key[CONSOLE_KEY_LEN], const char *sid,
    int64_t now, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0, i;
	char msg[CONSOLE_SESSION_LEN + 32];
	int n;

	n = snprintf(msg, sizeof(msg), "%s:%lld", sid,
	    (long long)(now / CONSOLE_WINDOW_S));
	if (n < 0 || (size_t)n >= sizeof(msg) ||
	    HMAC(EVP_sha256(), key, CONSOLE_KEY_LEN, (unsigned char *)msg,
	    (size_t)n, mac, &maclen) == NULL || maclen * 2 !=
	    CONSOLE_TOKEN_LEN) {
		/* No token anyone can match. */
		memset(out, 'x', CONSOLE_TOKEN_LEN);
		out[CONSOLE_TOKEN_LEN] = '\0';
		return;
	}
	for (i = 0; i < maclen; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

int
console_csrf_check(const uint8_t key[CONSOLE_KEY_LEN], const char *sid,
    const char *token, int64_t now)
{
	char want[CONSOLE_TOKEN_LEN + 1];
	int k, ok = 0;

	if (token == NULL || sid == NULL ||
	    strlen(token) != CONSOLE_TOKEN_LEN)
		return 0;
	/* This window, or the one before: a page loaded at 10:59 still works. */
	for (k = 0; k < 2; k++) {
		console_csrf_token(key, sid, now - k * CONSOLE_WINDOW_S, want);
		ok |= CRYPTO_memcmp(want, token, CONSOLE_TOKEN_LEN) == 0;
	}
	return ok;
}

static int
console_hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
console_pct_decode(const char *src, size_t n, int plus_is_space, char *out,
    size_t outlen)
{
	size_t i, o = 0;
	int hi, lo, c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)src[i];
		if (c == '+' && plus_is_space)
			c = ' ';
		else if (c == '%') {
			if (i + 2 >= n)
				return -1;
			if ((hi = console_hex_value((unsigned char)src[i + 1]))
			    < 0 || (lo = console_hex_value(
			    (unsigned char)src[i + 2])) < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == '\0' || o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	if (outlen == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

int
console_form_get(const char *body, size_t len, const char *name,
    char *out, size_t outlen)
{
	const char *p, *end, *amp, *eq;
	size_t nlen = strlen(name);
	int found = 0;

	if (body == NULL)
		return -1;
	for (p = body, end = body + len; p < end; p = amp + 1) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		eq = memchr(p, '=', (size_t)(amp - p));
		if (eq != NULL && (size_t)(eq - p) == nlen &&
		    memcmp(p, name, nlen) == 0) {
			/* Two values: which one was meant is anyone's guess. */
			if (found++)
				return -1;
			if (console_pct_decode(eq + 1, (size_t)(amp - eq - 1), 1,
			    out, outlen) == -1)
				return -1;
		}
		if (amp == end)
			break;
	}
	return found ? 0 : -1;
}

void
console_html(struct evbuffer *b, const char *s)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *rep = NULL;

		switch (*s) {
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '&':
			rep = "&amp;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		default:
			/* Control characters say nothing a person can read. */
			if ((unsigned char)*s < 0x20 || *s == 0x7f)
				rep = "?";
		}
		if (rep == NULL)
			continue;
		evbuffer_add(b, run, (size_t)(s - run));
		evbuffer_add(b, rep, strlen(rep));
		run = s + 1;
	}
	evbuffer_add(b, run, (size_t)(s - run));
}

void
console_url(struct evbuffer *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (isalnum((unsigned char)*s) || strchr("-._~", *s) != NULL)
			evbuffer_add(b, s, 1);
		else
			evbuffer_add_printf(b, "%%%02X", (unsigned char)*s);
	}
}
