/*
 * The parts of an HTTP request the endpoint reads, as pure functions: the
 * Accept header of /metrics, the path, the query of /status, and the
 * addresses that decide who may read /status.  http.c calls them with what
 * evhttp parsed; tests/fuzz/fuzz_http.c calls them with anything.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_parse.h"

#define CT_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define CT_OPENMETRICS \
	"application/openmetrics-text; version=1.0.0; charset=utf-8"

/*
 * Accept: media ranges separated by commas, each with ;q= and other
 * parameters.  OpenMetrics wins when the client ranks it at least as high
 * as the text format and asks for no version other than 1.0.0 (Prometheus
 * sends openmetrics-text;version=1.0.0 first, with text/plain at q=0.5).
 */
enum expo_format
expo_negotiate(const char *accept)
{
	const char *p, *end, *semi;
	char range[256], *param, *save, *tok;
	double q, q_om = -1, q_text = -1;
	int om, version_ok;
	size_t n;

	if (accept == NULL)
		return EXPO_TEXT;
	for (p = accept; *p != '\0'; p = *end ? end + 1 : end) {
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		n = end - p;
		if (n >= sizeof(range))
			continue;
		memcpy(range, p, n);
		range[n] = '\0';
		semi = strchr(range, ';');
		tok = range;
		while (*tok == ' ' || *tok == '\t')
			tok++;
		q = 1;
		version_ok = 1;
		if (semi != NULL) {
			range[semi - range] = '\0';
			for (param = strtok_r((char *)semi + 1, ";", &save);
			    param != NULL; param = strtok_r(NULL, ";", &save)) {
				while (*param == ' ' || *param == '\t')
					param++;
				if (strncasecmp(param, "q=", 2) == 0)
					q = strtod(param + 2, NULL);
				else if (strncasecmp(param, "version=", 8) == 0)
					version_ok = strncmp(param + 8, "1.0.0",
					    5) == 0;
			}
		}
		/* Strip trailing blanks of the media type. */
		n = strlen(tok);
		while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
			tok[--n] = '\0';
		om = strcasecmp(tok, "application/openmetrics-text") == 0;
		if (om && version_ok && q > q_om)
			q_om = q;
		else if (!om && (strcasecmp(tok, "text/plain") == 0 ||
		    strcasecmp(tok, "text/*") == 0 ||
		    strcmp(tok, "*/*") == 0) && q > q_text)
			q_text = q;
	}
	return q_om > 0 && q_om >= q_text ? EXPO_OPENMETRICS : EXPO_TEXT;
}

const char *
expo_content_type(enum expo_format fmt)
{
	return fmt == EXPO_OPENMETRICS ? CT_OPENMETRICS : CT_TEXT;
}

enum http_route
http_route(const char *path)
{
	if (path == NULL)
		return HTTP_ROUTE_NOT_FOUND;
	if (strcmp(path, "/metrics") == 0)
		return HTTP_ROUTE_METRICS;
	if (strcmp(path, "/healthz") == 0)
		return HTTP_ROUTE_HEALTHZ;
	if (strcmp(path, "/readyz") == 0)
		return HTTP_ROUTE_READYZ;
	if (strcmp(path, "/status") == 0)
		return HTTP_ROUTE_STATUS;
	return HTTP_ROUTE_NOT_FOUND;
}

int
http_query_has(const char *query, const char *name)
{
	const char *p, *end;
	size_t n, len = strlen(name);

	if (query == NULL)
		return 0;
	for (p = query; ; p = end + 1) {
		end = strchr(p, '&');
		n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (n >= len && strncmp(p, name, len) == 0 &&
		    (n == len || p[len] == '='))
			return 1;
		if (end == NULL)
			return 0;
	}
}

int
http_addr_loopback(const struct sockaddr *sa, socklen_t len)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	const uint8_t *a;
	static const uint8_t mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	if (sa == NULL || len < (socklen_t)sizeof(sa->sa_family))
		return 0;
	switch (sa->sa_family) {
	case AF_INET:
		if (len < (socklen_t)sizeof(*sin))
			return 0;
		sin = (const struct sockaddr_in *)sa;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	case AF_INET6:
		if (len < (socklen_t)sizeof(*sin6))
			return 0;
		sin6 = (const struct sockaddr_in6 *)sa;
		a = sin6->sin6_addr.s6_addr;
		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return 1;
		return memcmp(a, mapped, sizeof(mapped)) == 0 && a[12] == 127;
	default:
		return 0;
	}
}

int
http_status_allowed(int listen_loopback, int peer_loopback, int console_auth)
{
	return listen_loopback || peer_loopback || console_auth;
}
