/*
 * Unsubscribe tokens (docs/design.md#recipients-and-the-email): the lowercase
 * hex HMAC-SHA256 of "{uid}:{gid}" under digest.unsubscribe_secret, with
 * OpenSSL.
 *
 * unsub_token and unsub_verify are the simple one-shot forms, for
 * digestctl and the tests; the renderer makes a token per email with an
 * unsub_key, which holds SHA-256 already keyed with the secret's inner
 * and outer pads (RFC 2104): a token is then two copies of a state by
 * value and two compressions, where EVP's re-initialisation of an HMAC
 * context allocates and copies a digest context each time.  That needs
 * the low-level SHA-256 calls, which OpenSSL 3 marks deprecated (and
 * keeps): the warnings are silenced here alone.
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "unsub.h"

#define UNSUB_BLOCK 64		/* SHA-256's block */

struct unsub_key {
	SHA256_CTX inner;	/* after the key xor ipad */
	SHA256_CTX outer;	/* after the key xor opad */
};

static void
unsub_hex(const unsigned char *md, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[UNSUB_TOKEN_LEN] = '\0';
}

static char *
unsub_i64(char *p, int64_t v)
{
	char tmp[24], *e = tmp + sizeof(tmp), *q = e;
	uint64_t u;

	u = v < 0 ? 0ULL - (uint64_t)v : (uint64_t)v;
	do {
		*--q = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--q = '-';
	memcpy(p, q, (size_t)(e - q));
	return p + (e - q);
}

/* "{uid}:{gid}" into buf (48 bytes); by hand, as it runs once per mail. */
static int
unsub_message(char *buf, size_t len, int64_t uid, int64_t gid)
{
	char *p;

	if (len < 48)
		return -1;
	p = unsub_i64(buf, uid);
	*p++ = ':';
	p = unsub_i64(p, gid);
	*p = '\0';
	return (int)(p - buf);
}

int
unsub_token(const char *secret, int64_t uid, int64_t gid, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char msg[48];
	int n;

	if (secret == NULL || (n = unsub_message(msg, sizeof(msg), uid, gid)) < 0)
		return -1;
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret),
	    (const unsigned char *)msg, (size_t)n, md, &mdlen) == NULL ||
	    mdlen != 32)
		return -1;
	unsub_hex(md, out);
	return 0;
}

int
unsub_verify(const char *secret, int64_t uid, int64_t gid, const char *token)
{
	char want[UNSUB_TOKEN_LEN + 1];

	if (token == NULL || strlen(token) != UNSUB_TOKEN_LEN)
		return 0;
	if (unsub_token(secret, uid, gid, want) == -1)
		return 0;
	return CRYPTO_memcmp(want, token, UNSUB_TOKEN_LEN) == 0;
}

struct unsub_key *
unsub_key_new(const char *secret)
{
	unsigned char kb[UNSUB_BLOCK], pad[UNSUB_BLOCK];
	struct unsub_key *k;
	size_t len, i;

	if (secret == NULL || (k = calloc(1, sizeof(*k))) == NULL)
		return NULL;
	/* A key longer than a block is its digest (RFC 2104, 2). */
	memset(kb, 0, sizeof(kb));
	if ((len = strlen(secret)) > UNSUB_BLOCK)
		SHA256((const unsigned char *)secret, len, kb);
	else
		memcpy(kb, secret, len);
	for (i = 0; i < UNSUB_BLOCK; i++)
		pad[i] = kb[i] ^ 0x36;
	if (SHA256_Init(&k->inner) != 1 ||
	    SHA256_Update(&k->inner, pad, sizeof(pad)) != 1)
		goto fail;
	for (i = 0; i < UNSUB_BLOCK; i++)
		pad[i] = kb[i] ^ 0x5c;
	if (SHA256_Init(&k->outer) != 1 ||
	    SHA256_Update(&k->outer, pad, sizeof(pad)) != 1)
		goto fail;
	OPENSSL_cleanse(kb, sizeof(kb));
	OPENSSL_cleanse(pad, sizeof(pad));
	return k;
fail:
	OPENSSL_cleanse(kb, sizeof(kb));
	OPENSSL_cleanse(pad, sizeof(pad));
	unsub_key_free(k);
	return NULL;
}

void
unsub_key_free(struct unsub_key *k)
{
	if (k == NULL)
		return;
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

int
unsub_key_token(struct unsub_key *k, int64_t uid, int64_t gid, char *out)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256_CTX c;
	char msg[48];
	int n;

	if ((n = unsub_message(msg, sizeof(msg), uid, gid)) < 0)
		return -1;
	c = k->inner;
	if (SHA256_Update(&c, msg, (size_t)n) != 1 || SHA256_Final(md, &c) != 1)
		return -1;
	c = k->outer;
	if (SHA256_Update(&c, md, sizeof(md)) != 1 ||
	    SHA256_Final(md, &c) != 1)
		return -1;
	unsub_hex(md, out);
	return 0;
}
