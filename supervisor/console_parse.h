/*
 * What the web console decides about a request from its bytes alone: the
 * route, the basic-auth password, the session cookie, the CSRF token, the
 * fields of a form, and HTML escaping.  Nothing here touches a socket,
 * Redis or the clock (times come in as arguments), so the unit tests and
 * the HTTP fuzzer can feed it anything.
 */
#ifndef DIGESTD_CONSOLE_PARSE_H
#define DIGESTD_CONSOLE_PARSE_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum console_route {
	CONSOLE_ROUTE_HOME,		/* GET /: queues and instances */
	CONSOLE_ROUTE_DLQ,		/* GET /dlq: the dead letters */
	CONSOLE_ROUTE_SCRIPT,		/* GET /console.js */
	CONSOLE_ROUTE_STYLE,		/* GET /console.css */
	CONSOLE_ROUTE_ICON,		/* GET /favicon.ico: none */
	CONSOLE_ROUTE_PAUSE,		/* POST /pause */
	CONSOLE_ROUTE_RESUME,		/* POST /resume */
	CONSOLE_ROUTE_REQUEUE,		/* POST /dlq/requeue */
	CONSOLE_ROUTE_DELETE,		/* POST /dlq/delete */
	CONSOLE_ROUTE_NOT_FOUND,
	CONSOLE_ROUTE_BAD_METHOD	/* a known path, the wrong method */
};

/*
 * The route of a method ("GET", "HEAD", "POST", anything) and a path
 * (NULL: not found).  *allow, when not NULL, gets the methods the path
 * takes, for a 405's Allow header.
 */
enum console_route console_route(const char *method, const char *path,
    const char **allow);

/*
 * 1 when an Authorization header (NULL: none) is "Basic" with credentials
 * whose password is password (any user name), else 0.  The comparison
 * takes the same time whatever the password tried.
 */
int console_auth_check(const char *authorization, const char *password);

#define CONSOLE_SESSION_LEN 32		/* hex digits of a session id */
#define CONSOLE_TOKEN_LEN 64		/* hex digits of a CSRF token */
#define CONSOLE_KEY_LEN 32		/* bytes of the per-process secret */
#define CONSOLE_WINDOW_S 3600		/* a token's window; two are valid */

/*
 * The session id in a Cookie header (NULL: none): the value of
 * digestd_console when it is CONSOLE_SESSION_LEN lowercase hex digits.
 * 0 and sid (CONSOLE_SESSION_LEN + 1 bytes) filled, or -1.
 */
int console_session_get(const char *cookie, char *sid);

/*
 * The CSRF token of session sid in the window of unix time now: the hex
 * HMAC-SHA256, under key, of the session and the window's number.  out
 * holds CONSOLE_TOKEN_LEN + 1 bytes.
 */
void console_csrf_token(const uint8_t key[CONSOLE_KEY_LEN], const char *sid,
    int64_t now, char *out);
/*
 * 1 when token (NULL: none) is sid's token for now's window or the one
 * before, compared in constant time; else 0.
 */
int console_csrf_check(const uint8_t key[CONSOLE_KEY_LEN], const char *sid,
    const char *token, int64_t now);

/*
 * %-decode src[0..n) into out, '+' as a space when plus_is_space (a form
 * field; not a path).  0, or -1 (a bad escape, a NUL, no room).
 */
int console_pct_decode(const char *src, size_t n, int plus_is_space,
    char *out, size_t outlen);

/*
 * The value of field name in an application/x-www-form-urlencoded body
 * of len bytes (or a query string), %-decoded and with '+' as a blank,
 * into out.  0; -1 when the field is absent, is given twice, decodes to a
 * NUL or a bad escape, or does not fit.
 */
int console_form_get(const char *body, size_t len, const char *name,
    char *out, size_t outlen);

/* Append s to b escaped for HTML text and quoted attribute values. */
void console_html(struct evbuffer *b, const char *s);
/* Append s escaped for a URL's query value (%-encoding). */
void console_url(struct evbuffer *b, const char *s);

#endif
