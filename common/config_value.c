/*
 * The values of the configuration file, apart from the table: durations,
 * sizes, addresses, listen addresses and URLs, checked and formatted for
 * config.c.  Each check returns 0, or -1 with in why what is wrong, written
 * to follow the value ("is not ..."), never quoting it, since the value
 * may be a secret.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>

#include "config.h"
#include "config_value.h"

/* Copy text into a message, with anything unprintable replaced. */
void
config_clean(char *dst, size_t len, const char *s)
{
	size_t i, n;

	if (len == 0)
		return;
	for (i = 0, n = 0; s[i] != '\0' && n + 1 < len; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[n] = '\0';
}

/* The same, between double quotes. */
void
config_quote(char *dst, size_t len, const char *s)
{
	size_t n;

	if (len < 3)
		return;
	dst[0] = '"';
	config_clean(dst + 1, len - 2, s);
	n = strlen(dst);
	dst[n++] = '"';
	dst[n] = '\0';
}

/* Format a duration in the largest unit that divides it. */
const char *
config_fmt_duration(int64_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % DAY_MS == 0)
		snprintf(buf, len, "%lldd", (long long)(ms / DAY_MS));
	else if (ms != 0 && ms % HOUR_MS == 0)
		snprintf(buf, len, "%lldh", (long long)(ms / HOUR_MS));
	else if (ms != 0 && ms % MIN_MS == 0)
		snprintf(buf, len, "%lldm", (long long)(ms / MIN_MS));
	else if (ms != 0 && ms % SEC_MS == 0)
		snprintf(buf, len, "%llds", (long long)(ms / SEC_MS));
	else if (ms != 0)
		snprintf(buf, len, "%lldms", (long long)ms);
	else
		snprintf(buf, len, "0");
	return buf;
}

const char *
config_fmt_size(uint64_t b, char *buf, size_t len)
{
	if (b != 0 && b % GIB == 0)
		snprintf(buf, len, "%lluG", (unsigned long long)(b / GIB));
	else if (b != 0 && b % MIB == 0)
		snprintf(buf, len, "%lluM", (unsigned long long)(b / MIB));
	else if (b != 0 && b % KIB == 0)
		snprintf(buf, len, "%lluK", (unsigned long long)(b / KIB));
	else
		snprintf(buf, len, "%llu", (unsigned long long)b);
	return buf;
}

/* A whole decimal integer, digits only (no sign, blank or base prefix). */
int
config_parse_uint(const char *s, int64_t *out)
{
	int64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return 0;
}

/*
 * A duration: "0", or one or more number-unit pairs ("90s", "1h30m") with
 * units ms, s, m, h, d.  A number without a unit is refused, since 100 could
 * mean milliseconds or seconds depending on whom one asks.
 */
int
config_parse_duration(const char *s, int64_t *ms)
{
	int64_t total = 0, v, mult;

	if (s == NULL || *s == '\0')
		return -1;
	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return 0;
	}
	while (*s != '\0') {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = 0;
		while (isdigit((unsigned char)*s)) {
			if (v > (INT64_MAX - (*s - '0')) / 10)
				return -1;
			v = v * 10 + (*s++ - '0');
		}
		if (s[0] == 'm' && s[1] == 's') {
			mult = 1;
			s += 2;
		} else if (*s == 's') {
			mult = SEC_MS;
			s++;
		} else if (*s == 'm') {
			mult = MIN_MS;
			s++;
		} else if (*s == 'h') {
			mult = HOUR_MS;
			s++;
		} else if (*s == 'd') {
			mult = DAY_MS;
			s++;
		} else
			return -1;
		if (v > INT64_MAX / mult || total > INT64_MAX - v * mult)
			return -1;
		total += v * mult;
	}
	*ms = total;
	return 0;
}

/* A size: a number of bytes, or a number with K, M or G (powers of 1024). */
int
config_parse_size(const char *s, uint64_t *bytes)
{
	char num[32];
	size_t n;
	int64_t v, mult = 1;

	if (s == NULL || (n = strlen(s)) == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, s, n + 1);
	switch (num[n - 1]) {
	case 'K': case 'k':
		mult = KIB;
		break;
	case 'M': case 'm':
		mult = MIB;
		break;
	case 'G': case 'g':
		mult = GIB;
		break;
	}
	if (mult != 1)
		num[--n] = '\0';
	if (config_parse_uint(num, &v) == -1 || v > INT64_MAX / mult)
		return -1;
	*bytes = (uint64_t)(v * mult);
	return 0;
}

/*
 * A decimal number as an operator writes it: digits with at most one dot,
 * no sign, blank, exponent, hex or "inf" (which strtod alone would take).
 */
static int
config_parse_decimal(const char *s, size_t n, double *out)
{
	char buf[32];
	size_t i;
	int dots = 0;

	if (n == 0 || n >= sizeof(buf) || s[0] == '.' || s[n - 1] == '.')
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] == '.')
			dots++;
		else if (!isdigit((unsigned char)s[i]))
			return -1;
	}
	if (dots > 1)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	*out = strtod(buf, NULL);
	return *out > 1e12 ? -1 : 0;
}

/* A rate of emails per second, 0 for none. */
int
config_parse_rate(const char *s, double *rate)
{
	return config_parse_decimal(s, strlen(s), rate);
}

/*
 * A share: "5%", "0.5%", or "0" for none.  A bare number other than 0 is
 * refused, since 5 could mean 5% or 500%.
 */
int
config_parse_percent(const char *s, double *share)
{
	size_t n = strlen(s);
	double v;

	if (strcmp(s, "0") == 0) {
		*share = 0;
		return 0;
	}
	if (n < 2 || s[n - 1] != '%' ||
	    config_parse_decimal(s, n - 1, &v) == -1 || v > 100)
		return -1;
	*share = v / 100;
	return 0;
}

int
config_parse_domain_rates(const char *s, struct config_domain_rate *out,
    int max, char *why, size_t whylen)
{
	const char *p = s, *e, *eq;
	char dom[CONFIG_STR_MAX];
	double rate;
	size_t i;
	int n = 0, k;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		for (e = p; *e != '\0' && *e != ' ' && *e != '\t' && *e != ',';
		    e++)
			;
		if ((eq = memchr(p, '=', (size_t)(e - p))) == NULL ||
		    eq == p || (size_t)(eq - p) >= sizeof(dom)) {
			snprintf(why, whylen, "is not a list of domain=rate "
			    "(e.g. example.com=20 example.org=5)");
			return -1;
		}
		for (i = 0; p + i < eq; i++)
			dom[i] = (char)tolower((unsigned char)p[i]);
		dom[i] = '\0';
		if (!config_valid_domain(dom)) {
			snprintf(why, whylen, "names an invalid domain (entry "
			    "%d)", n + 1);
			return -1;
		}
		if (config_parse_decimal(eq + 1, (size_t)(e - eq - 1),
		    &rate) == -1 || rate <= 0) {
			snprintf(why, whylen, "has a rate that is not a "
			    "positive number (entry %d)", n + 1);
			return -1;
		}
		for (k = 0; k < n; k++)
			if (strcmp(out[k].domain, dom) == 0) {
				snprintf(why, whylen, "names a domain twice "
				    "(entry %d)", n + 1);
				return -1;
			}
		if (n == max) {
			snprintf(why, whylen, "has more than %d entries", max);
			return -1;
		}
		strlcpy(out[n].domain, dom, sizeof(out[n].domain));
		out[n].rate = rate;
		n++;
		p = e;
	}
	return n;
}

int
config_has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* A DNS name or IPv4 literal: letters, digits, '-' and '.', sensibly. */
int
config_valid_domain(const char *d)
{
	size_t i, n = strlen(d);

	if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-' ||
	    d[n - 1] == '.' || d[n - 1] == '-' || strstr(d, "..") != NULL)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)d[i]) && d[i] != '-' && d[i] != '.')
			return 0;
	return 1;
}

/*
 * A bare address local@domain; the local part is kept simple (no quotes,
 * blanks, angle brackets or commas) since it goes into headers and MAIL
 * FROM as it is.
 */
int
config_valid_addr(const char *a, char *why, size_t whylen)
{
	const char *at = strrchr(a, '@'), *s;

	if (at == NULL || at == a) {
		snprintf(why, whylen, "is not an address (local@domain)");
		return -1;
	}
	for (s = a; s < at; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e ||
		    strchr("<>,;:\"()[]\\@", *s) != NULL) {
			snprintf(why, whylen, "has an unusable local part");
			return -1;
		}
	if (!config_valid_domain(at + 1)) {
		snprintf(why, whylen, "has no usable domain");
		return -1;
	}
	return 0;
}

/*
 * "Name <addr>" or addr.  Fill addr and domain (each of CONFIG_STR_MAX) when
 * they are not NULL.
 */
int
config_split_from(const char *v, char *addr, char *domain, char *why,
    size_t whylen)
{
	char a[CONFIG_STR_MAX];
	const char *lt, *gt;
	size_t n;

	if ((lt = strchr(v, '<')) != NULL) {
		gt = strchr(lt, '>');
		if (gt == NULL || gt[1] != '\0' ||
		    strchr(lt + 1, '<') != NULL) {
			snprintf(why, whylen, "is not \"Name <addr>\" or addr");
			return -1;
		}
		n = (size_t)(gt - lt - 1);
		if (n >= sizeof(a)) {
			snprintf(why, whylen, "is too long");
			return -1;
		}
		memcpy(a, lt + 1, n);
		a[n] = '\0';
	} else {
		if (strchr(v, '>') != NULL || strchr(v, ' ') != NULL) {
			snprintf(why, whylen, "is not \"Name <addr>\" or addr");
			return -1;
		}
		strlcpy(a, v, sizeof(a));
	}
	if (config_valid_addr(a, why, whylen) == -1)
		return -1;
	if (addr != NULL)
		strlcpy(addr, a, CONFIG_STR_MAX);
	if (domain != NULL)
		strlcpy(domain, strrchr(a, '@') + 1, CONFIG_STR_MAX);
	return 0;
}

int
config_valid_listen(const char *v, char *why, size_t whylen)
{
	char host[CONFIG_STR_MAX];
	struct in6_addr in6;
	const char *colon;
	int64_t port;
	size_t n;

	if (v[0] == '[') {
		const char *rb = strchr(v, ']');

		if (rb == NULL || rb[1] != ':') {
			snprintf(why, whylen, "is not host:port or [v6]:port");
			return -1;
		}
		n = (size_t)(rb - v - 1);
		if (n == 0 || n >= sizeof(host)) {
			snprintf(why, whylen, "has no IPv6 address in []");
			return -1;
		}
		memcpy(host, v + 1, n);
		host[n] = '\0';
		if (inet_pton(AF_INET6, host, &in6) != 1) {
			snprintf(why, whylen, "has a bad IPv6 address");
			return -1;
		}
		colon = rb + 1;
	} else {
		if ((colon = strrchr(v, ':')) == NULL || colon == v ||
		    memchr(v, ':', (size_t)(colon - v)) != NULL) {
			snprintf(why, whylen,
			    "is not host:port or [v6]:port");
			return -1;
		}
		n = (size_t)(colon - v);
		if (n >= sizeof(host)) {
			snprintf(why, whylen, "is too long");
			return -1;
		}
		memcpy(host, v, n);
		host[n] = '\0';
		if (!config_valid_domain(host)) {
			snprintf(why, whylen, "has a bad host");
			return -1;
		}
	}
	if (config_parse_uint(colon + 1, &port) == -1 || port < 1 ||
	    port > 65535) {
		snprintf(why, whylen, "has a bad port (1 to 65535)");
		return -1;
	}
	return 0;
}

int
config_listen_loopback(const char *v)
{
	char host[CONFIG_STR_MAX];
	struct in6_addr in6;
	struct in_addr in4;
	const char *end;
	size_t n;

	if (v[0] == '[') {
		if ((end = strchr(v, ']')) == NULL)
			return 0;
		n = (size_t)(end - v - 1);
		v++;
	} else {
		if ((end = strrchr(v, ':')) == NULL)
			return 0;
		n = (size_t)(end - v);
	}
	if (n >= sizeof(host))
		return 0;
	memcpy(host, v, n);
	host[n] = '\0';
	if (strcmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &in4) == 1)
		return (ntohl(in4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &in6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&in6);
	return 0;
}

int
config_valid_amqp_url(const char *v, char *why, size_t whylen)
{
	struct amqp_connection_info info;
	char copy[CONFIG_URL_MAX];
	const char *host;

	/* amqp_parse_url writes into its argument, and the value is secret. */
	if (strlcpy(copy, v, sizeof(copy)) >= sizeof(copy)) {
		snprintf(why, whylen, "is too long");
		return -1;
	}
	amqp_default_connection_info(&info);
	/* librabbitmq takes "amqp://" alone for localhost; an operator means
	 * something else. */
	host = strstr(v, "://");
	if (host == NULL || host[3] == '\0' || host[3] == '/' ||
	    amqp_parse_url(copy, &info) != AMQP_STATUS_OK ||
	    info.host == NULL || info.host[0] == '\0') {
		snprintf(why, whylen, "is not an AMQP URL "
		    "(amqp://user:password@host:port/vhost)");
		return -1;
	}
	if (info.port < 1 || info.port > 65535) {
		snprintf(why, whylen, "has a bad port");
		return -1;
	}
	explicit_bzero(copy, sizeof(copy));
	return 0;
}

int
config_valid_http_url(const char *v, char *why, size_t whylen)
{
	const char *host, *s;

	if (strncmp(v, "https://", 8) == 0)
		host = v + 8;
	else if (strncmp(v, "http://", 7) == 0)
		host = v + 7;
	else {
		snprintf(why, whylen, "is not an http:// or https:// URL");
		return -1;
	}
	if (*host == '\0' || *host == '/' || *host == ':') {
		snprintf(why, whylen, "has no host");
		return -1;
	}
	/* It goes between <> in List-Unsubscribe. */
	for (s = v; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
		    strchr("<>\"", *s) != NULL) {
			snprintf(why, whylen,
			    "has a character that must be %%-encoded");
			return -1;
		}
	return 0;
}
