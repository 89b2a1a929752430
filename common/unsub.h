/*
 * Unsubscribe tokens (docs/design.md#recipients-and-the-email): the lowercase
 * hex HMAC-SHA256 of "{uid}:{gid}" under digest.unsubscribe_secret.
 */
#ifndef DIGESTD_UNSUB_H
#define DIGESTD_UNSUB_H

#include <stddef.h>
#include <stdint.h>

#define UNSUB_TOKEN_LEN 64

/* Write the token and a NUL into out (UNSUB_TOKEN_LEN + 1 bytes). 0 / -1. */
int unsub_token(const char *secret, int64_t uid, int64_t gid, char *out);
/* 1 if token is right for uid and gid, compared in constant time; else 0. */
int unsub_verify(const char *secret, int64_t uid, int64_t gid, const char *token);

/*
 * A key prepared once for many tokens: the one-shot HMAC() costs a few
 * microseconds a call in OpenSSL 3 (it fetches the algorithm each time),
 * which a renderer producing tens of thousands of emails a second cannot
 * spend.  unsub_key_token writes the same token as unsub_token.
 * unsub_key_new returns NULL on failure; unsub_key_free(NULL) is a no-op.
 */
struct unsub_key;
struct unsub_key *unsub_key_new(const char *secret);
void unsub_key_free(struct unsub_key *);
int unsub_key_token(struct unsub_key *, int64_t uid, int64_t gid, char *out);

#endif
