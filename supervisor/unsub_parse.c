/*
 * The unsubscribe endpoint's reading of a request (unsub_parse.h).  The
 * path is compared decoded, as a proxy may re-encode it; the query must
 * name one user and one group without doubt (a field given twice is
 * refused, as console_form_get refuses it); the body is looked for in
 * both forms RFC 8058 allows a client to POST.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "console_parse.h"
#include "unsub_parse.h"

#define UNSUB_ONE_CLICK_NAME "List-Unsubscribe"
#define UNSUB_ONE_CLICK_VALUE "One-Click"

/* A path's n bytes %-decoded into out ('+' stays '+'), "/" if empty. */
static int
unsub_path_decode(const char *s, size_t n, char *out, size_t outlen)
{
	if (console_pct_decode(s, n, 0, out, outlen) == -1)
		return -1;
	if (out[0] == '\0') {
		if (outlen < 2)
			return -1;
		strlcpy(out, "/", outlen);
	}
	return 0;
}

int
unsub_parse_url_path(const char *url, char *path, size_t len)
{
	const char *p, *end;

	if (url == NULL)
		return -1;
	if (strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return -1;
	/* The authority ends at the first '/', '?' or '#'. */
	p += strcspn(p, "/?#");
	end = p + strcspn(p, "?#");
	return unsub_path_decode(p, (size_t)(end - p), path, len);
}

int
unsub_parse_path_is(const char *raw, const char *path)
{
	char dec[UNSUB_PATH_MAX];

	if (raw == NULL || path == NULL || raw[0] != '/')
		return 0;
	if (unsub_path_decode(raw, strlen(raw), dec, sizeof(dec)) == -1)
		return 0;
	return strcmp(dec, path) == 0;
}

/* A decimal id as digestd writes one: 1 to 18 digits, no leading zero. */
static int
unsub_parse_id(const char *s, int64_t *v)
{
	size_t i, n = strlen(s);
	int64_t x = 0;

	if (n == 0 || n > 18 || (s[0] == '0' && n > 1))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return 0;
}

int
unsub_parse_query(const char *query, struct unsub_link *l)
{
	char u[32], g[32], t[UNSUB_TOKEN_LEN + 2];
	size_t len, i;

	if (query == NULL)
		return -1;
	len = strlen(query);
	if (console_form_get(query, len, "u", u, sizeof(u)) == -1 ||
	    console_form_get(query, len, "g", g, sizeof(g)) == -1 ||
	    console_form_get(query, len, "t", t, sizeof(t)) == -1)
		return -1;
	if (unsub_parse_id(u, &l->uid) == -1 ||
	    unsub_parse_id(g, &l->gid) == -1)
		return -1;
	if (strlen(t) != UNSUB_TOKEN_LEN)
		return -1;
	for (i = 0; i < UNSUB_TOKEN_LEN; i++)
		if (!((t[i] >= '0' && t[i] <= '9') ||
		    (t[i] >= 'a' && t[i] <= 'f')))
			return -1;
	memcpy(l->token, t, sizeof(l->token) - 1);
	l->token[UNSUB_TOKEN_LEN] = '\0';
	return 0;
}

/* n bytes at p with blanks and line ends at either side left out. */
static void
unsub_trim(const char **p, size_t *n)
{
	while (*n > 0 && strchr(" \t\r\n", (*p)[0]) != NULL) {
		(*p)++;
		(*n)--;
	}
	while (*n > 0 && strchr(" \t\r\n", (*p)[*n - 1]) != NULL)
		(*n)--;
}

/* A form-urlencoded body, a line end after it allowed. */
static int
unsub_one_click_form(const char *body, size_t len)
{
	char v[sizeof(UNSUB_ONE_CLICK_VALUE) + 1];

	unsub_trim(&body, &len);
	if (console_form_get(body, len, UNSUB_ONE_CLICK_NAME, v,
	    sizeof(v)) == -1)
		return 0;
	return strcmp(v, UNSUB_ONE_CLICK_VALUE) == 0;
}

/*
 * The boundary parameter of a multipart Content-Type into b (with the
 * leading "--" of a delimiter line).  0 or -1.
 */
static int
unsub_boundary(const char *ctype, char *b, size_t blen)
{
	const char *p = ctype, *end;
	size_t n;

	for (;;) {
		if ((p = strchr(p, ';')) == NULL)
			return -1;
		p++;
		p += strspn(p, " \t");
		if (strncasecmp(p, "boundary=", 9) == 0)
			break;
	}
	p += 9;
	if (*p == '"') {
		p++;
		if ((end = strchr(p, '"')) == NULL)
			return -1;
	} else
		end = p + strcspn(p, "; \t");
	n = (size_t)(end - p);
	/* RFC 2046: 1 to 70 characters. */
	if (n == 0 || n > 70 || n + 3 > blen)
		return -1;
	b[0] = b[1] = '-';
	memcpy(b + 2, p, n);
	b[n + 2] = '\0';
	return 0;
}

/* Whether a part's headers name the field List-Unsubscribe. */
static int
unsub_part_is_field(const char *h, size_t n)
{
	static const char want[] = "name=\"" UNSUB_ONE_CLICK_NAME "\"";
	const char *line, *next, *end = h + n;

	for (line = h; line < end; line = next) {
		next = memchr(line, '\n', (size_t)(end - line));
		next = next == NULL ? end : next + 1;
		if ((size_t)(next - line) < 20 ||
		    strncasecmp(line, "Content-Disposition:", 20) != 0)
			continue;
		if (memmem(line, (size_t)(next - line), want,
		    sizeof(want) - 1) != NULL)
			return 1;
	}
	return 0;
}

/* A multipart/form-data body: a part named List-Unsubscribe. */
static int
unsub_one_click_multipart(const char *ctype, const char *body, size_t len)
{
	char delim[80];
	const char *p, *end = body + len, *part, *next, *hend, *v;
	size_t dlen, n;

	if (unsub_boundary(ctype, delim, sizeof(delim)) == -1)
		return 0;
	dlen = strlen(delim);
	if ((p = memmem(body, len, delim, dlen)) == NULL)
		return 0;
	for (;;) {
		part = p + dlen;
		if (end - part >= 2 && part[0] == '-' && part[1] == '-')
			return 0;	/* the closing delimiter */
		if ((next = memmem(part, (size_t)(end - part), delim,
		    dlen)) == NULL)
			return 0;
		/* The part's headers end at its first empty line. */
		if ((hend = memmem(part, (size_t)(next - part), "\r\n\r\n",
		    4)) != NULL)
			v = hend + 4;
		else if ((hend = memmem(part, (size_t)(next - part), "\n\n",
		    2)) != NULL)
			v = hend + 2;
		else
			v = NULL;
		if (v != NULL && unsub_part_is_field(part,
		    (size_t)(hend - part))) {
			n = (size_t)(next - v);
			unsub_trim(&v, &n);
			return n == sizeof(UNSUB_ONE_CLICK_VALUE) - 1 &&
			    memcmp(v, UNSUB_ONE_CLICK_VALUE, n) == 0;
		}
		p = next;
	}
}

int
unsub_parse_one_click(const char *ctype, const char *body, size_t len)
{
	if (body == NULL)
		return 0;
	if (ctype != NULL && strncasecmp(ctype, "multipart/form-data", 19) ==
	    0)
		return unsub_one_click_multipart(ctype, body, len);
	return unsub_one_click_form(body, len);
}
