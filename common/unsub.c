/*
 * Unsubscribe tokens (docs/design.md#recipients-and-the-email): the lowercase
 * hex HMAC-SHA256 of "{uid}:{gid}" under digest.unsubscribe_secret, with
 * OpenSSL.
 *
 * unsub_token and unsub_verify are the simple one-shot forms, for
 * digestctl and the tests; the renderer keeps an unsub_key, which holds
 * the keyed HMAC context and only re-initialises it per token.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "unsub.h"

struct unsub_key {
	EVP_MAC *mac;
	EVP_MAC_CTX *ctx;
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
	struct unsub_key *k;
	OSSL_PARAM params[2];

	if (secret == NULL || (k = calloc(1, sizeof(*k))) == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (k->ctx = EVP_MAC_CTX_new(k->mac)) == NULL ||
	    EVP_MAC_init(k->ctx, (const unsigned char *)secret, strlen(secret),
	    params) != 1) {
		unsub_key_free(k);
		return NULL;
	}
	return k;
}

void
unsub_key_free(struct unsub_key *k)
{
	if (k == NULL)
		return;
	EVP_MAC_CTX_free(k->ctx);
	EVP_MAC_free(k->mac);
	free(k);
}

int
unsub_key_token(struct unsub_key *k, int64_t uid, int64_t gid, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	size_t mdlen = 0;
	char msg[48];
	int n;

	if ((n = unsub_message(msg, sizeof(msg), uid, gid)) < 0)
		return -1;
	/* A NULL key re-initialises the context with the key it holds. */
	if (EVP_MAC_init(k->ctx, NULL, 0, NULL) != 1 ||
	    EVP_MAC_update(k->ctx, (const unsigned char *)msg, (size_t)n) != 1 ||
	    EVP_MAC_final(k->ctx, md, &mdlen, sizeof(md)) != 1 || mdlen != 32)
		return -1;
	unsub_hex(md, out);
	return 0;
}
