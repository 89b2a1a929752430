/*
 * Recipient and sender addresses as SMTP needs them: an address from
 * Redis made fit for the envelope and the To header (a domain in Unicode
 * converted to its ASCII form with libidn2, a local part outside ASCII
 * recognised as needing SMTPUTF8), and the envelope sender pattern of
 * smtp.envelope_from with its {uid} and {gid} (VERP) expanded.
 *
 * All of it is pure: no I/O, and no allocation except in libidn2 for a
 * domain that is not ASCII, which is rare.  The ASCII address, the case
 * of nearly every recipient, is taken as it is, without a copy.
 */
#ifndef DIGESTD_ADDRESS_H
#define DIGESTD_ADDRESS_H

#include <stddef.h>
#include <stdint.h>

/* The longest addr-spec SMTP carries (RFC 5321 4.5.3.1.3), in octets. */
#define ADDRESS_MAX	254

enum address_kind {
	ADDRESS_OK,		/* *out is plain ASCII, ready to use */
	ADDRESS_UTF8_LOCAL,	/* the local part is not ASCII: SMTPUTF8 */
	ADDRESS_BAD,		/* unusable; *why says why */
};

/*
 * Make addr usable in the envelope and the To header.  An ASCII address
 * that passes mime_addr_check comes back as addr itself; one whose domain
 * is in Unicode comes back in buf (at least ADDRESS_MAX + 1 bytes) with
 * the domain in punycode (IDNA2008 with the UTS 46 mapping, so it is
 * lowercased too).  Returns enum address_kind; *why (a static string) is
 * set for the two others.
 */
int address_prepare(const char *addr, char *buf, size_t buflen,
    const char **out, const char **why);

/*
 * Check an envelope sender pattern: placeholders {uid} and {gid} only, in
 * the local part only, and an address that stays valid whatever the ids.
 * 0, or -1 with err.
 */
int address_verp_check(const char *pattern, char *err, size_t errlen);

/* 1 when the pattern has a placeholder, so each message needs its own. */
int address_verp_needed(const char *pattern);

/*
 * Expand the pattern's {uid} and {gid} into out.  Returns the length, or
 * -1 when it does not fit outlen.
 */
int address_verp(const char *pattern, int64_t uid, int64_t gid, char *out,
    size_t outlen);

#endif
