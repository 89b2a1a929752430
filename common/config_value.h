/*
 * The values of the configuration file (config_value.c), for config.c
 * only: parsing, checking and formatting durations, sizes, addresses,
 * listen addresses and URLs.  Checks put what is wrong in why, worded to
 * follow the value ("is not a duration"), and never quote the value.
 */
#ifndef DIGESTD_CONFIG_VALUE_H
#define DIGESTD_CONFIG_VALUE_H

#include <stddef.h>
#include <stdint.h>

/* Durations are milliseconds, sizes bytes. */
#define SEC_MS	1000LL
#define MIN_MS	(60 * SEC_MS)
#define HOUR_MS	(60 * MIN_MS)
#define DAY_MS	(24 * HOUR_MS)
#define KIB	1024LL
#define MIB	(1024 * KIB)
#define GIB	(1024 * MIB)

/* Copy s into dst with unprintable bytes replaced; quoted, between "". */
void	config_clean(char *dst, size_t len, const char *s);
void	config_quote(char *dst, size_t len, const char *s);
/* "90s", "256M": in the largest unit that divides the value. */
const char *config_fmt_duration(int64_t ms, char *buf, size_t len);
const char *config_fmt_size(uint64_t bytes, char *buf, size_t len);
/* Digits only, no sign or blank, within int64_t; 0 or -1. */
int	config_parse_uint(const char *s, int64_t *out);
/* 1 if s holds a control character. */
int	config_has_ctl(const char *s);
/* 1 for a DNS name or IPv4 literal. */
int	config_valid_domain(const char *d);
/* A bare local@domain. */
int	config_valid_addr(const char *a, char *why, size_t whylen);
/*
 * "Name <addr>" or addr; the address and its domain go to addr and domain
 * (each CONFIG_STR_MAX bytes) when they are not NULL.
 */
int	config_split_from(const char *v, char *addr, char *domain, char *why,
	    size_t whylen);
/* host:port or [v6]:port. */
int	config_valid_listen(const char *v, char *why, size_t whylen);
/*
 * 1 when a valid listen address can only be reached from this host:
 * localhost, 127.0.0.0/8 or [::1].  A host name, "*" or any other
 * address is 0.
 */
int	config_listen_loopback(const char *v);
/* amqp://user:password@host:port/vhost, as librabbitmq reads it. */
int	config_valid_amqp_url(const char *v, char *why, size_t whylen);
/* http:// or https:// with a host, fit to go between <> in a header. */
int	config_valid_http_url(const char *v, char *why, size_t whylen);

#endif
