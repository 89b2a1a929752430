/*
 * What the one-click unsubscribe endpoint decides from a request's bytes
 * alone (docs/design.md#unsubscribe-endpoint): whether the path is the
 * one unsubscribe_url names, the uid, gid and token of the query, and
 * whether a POST body says List-Unsubscribe=One-Click in either of the
 * forms mail clients send (form-urlencoded or multipart/form-data).
 * Nothing here touches a socket, Redis or a key, so the unit tests and
 * the HTTP fuzzer can feed it anything.
 */
#ifndef DIGESTD_UNSUB_PARSE_H
#define DIGESTD_UNSUB_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "unsub.h"

#define UNSUB_PATH_MAX 1024

/* The link's parameters, as the email's List-Unsubscribe carries them. */
struct unsub_link {
	int64_t uid;
	int64_t gid;
	char token[UNSUB_TOKEN_LEN + 1];
};

/*
 * The path of an http or https URL, %-decoded, into path ("/" when the
 * URL has none).  0; -1 when it is not such a URL, decodes to a NUL or a
 * bad escape, or does not fit.
 */
int unsub_parse_url_path(const char *url, char *path, size_t len);

/*
 * 1 when the path of a request (as sent, %-encoded) decodes to path, else
 * 0.
 */
int unsub_parse_path_is(const char *raw, const char *path);

/*
 * u, g and t of a query string into *l.  Each must be there once; u and
 * g are decimal numbers as digestd writes them (no sign, no leading zero),
 * t exactly 64 lowercase hex digits.  Other fields (a query that
 * unsubscribe_url carries itself) are left alone.  0 or -1.
 */
int unsub_parse_query(const char *query, struct unsub_link *l);

/*
 * 1 when a POST body of len bytes, of Content-Type ctype (NULL: none,
 * read as form-urlencoded), holds the field List-Unsubscribe with the
 * value One-Click (RFC 8058), else 0.
 */
int unsub_parse_one_click(const char *ctype, const char *body, size_t len);

#endif
