/*
 * Test support: reading back what worker/mime.c writes.  Compiled into the
 * unit tests and the fuzz target that need it, never into digestd.
 */
#ifndef DIGESTD_MIME_DECODE_H
#define DIGESTD_MIME_DECODE_H

#include <stddef.h>

#include "mime.h"

/* Decode quoted-printable; CRLF and LF both come out as LF.  0 or -1. */
int mime_qp_decode(struct rbuf *out, const char *s, size_t len);

/* Decode base64, skipping CR, LF and spaces.  0 or -1 on a bad character. */
int mime_b64_decode(struct rbuf *out, const char *s, size_t len);

/*
 * Decode a header value: unfold, decode encoded-words (B and Q, UTF-8 or
 * US-ASCII) and drop the white space between adjacent ones.  Quoted
 * strings lose their quotes and backslashes.  0 or -1 on a malformed word.
 */
int mime_header_decode(struct rbuf *out, const char *s, size_t len);

/* 1 if s (len bytes) is well-formed UTF-8, else 0. */
int mime_utf8_valid(const char *s, size_t len);

#endif
