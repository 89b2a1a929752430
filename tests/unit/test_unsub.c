/*
 * Unit tests for the unsubscribe token (common/unsub.c): known
 * HMAC-SHA256 vectors computed with `openssl dgst -sha256 -hmac`, the
 * prepared-key form agreeing with the one-shot form, and verification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "unsub.h"

/* printf -n "9:42" | openssl dgst -sha256 -hmac s3cret, and so on. */
static const struct {
	const char *secret;
	int64_t uid, gid;
	const char *token;
} vectors[] = {
	{ "s3cret", 9, 42,
	  "3c46df76c731a0bcc3167156ae2d017f85cbbd791a3e4ddf3f7e388d7042a587" },
	{ "unsubscribe-secret", 1, 42,
	  "ee5af9b3a09def5ccec634484d2b1595a8f061d26e6fe11fca38e4f1415277d2" },
	{ "k", -5, INT64_MAX,
	  "1ef20d74597047fd6bb01e20f7cc5efd6231ea769bb884e91458d421f7750699" },
};

static void
test_known_vectors(void **state)
{
	char tok[UNSUB_TOKEN_LEN + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		memset(tok, 'x', sizeof(tok));
		assert_int_equal(unsub_token(vectors[i].secret, vectors[i].uid,
		    vectors[i].gid, tok), 0);
		assert_string_equal(tok, vectors[i].token);
		assert_int_equal(strlen(tok), UNSUB_TOKEN_LEN);
	}
}

static void
test_key_matches_oneshot(void **state)
{
	char a[UNSUB_TOKEN_LEN + 1], b[UNSUB_TOKEN_LEN + 1];
	struct unsub_key *k;
	size_t i;
	int64_t uid;

	(void)state;
	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		k = unsub_key_new(vectors[i].secret);
		assert_non_null(k);
		/* Twice: the re-initialised context must start afresh. */
		assert_int_equal(unsub_key_token(k, vectors[i].uid,
		    vectors[i].gid, a), 0);
		assert_string_equal(a, vectors[i].token);
		assert_int_equal(unsub_key_token(k, vectors[i].uid,
		    vectors[i].gid, a), 0);
		assert_string_equal(a, vectors[i].token);
		unsub_key_free(k);
	}
	k = unsub_key_new("s3cret");
	assert_non_null(k);
	for (uid = 1; uid < 200; uid += 7) {
		assert_int_equal(unsub_key_token(k, uid, 42, a), 0);
		assert_int_equal(unsub_token("s3cret", uid, 42, b), 0);
		assert_string_equal(a, b);
	}
	unsub_key_free(k);
	/* Secrets of a block and longer (hashed first, RFC 2104). */
	for (i = 60; i < 140; i += 4) {
		char secret[160];

		memset(secret, 'k', i);
		secret[i] = '\0';
		secret[i / 2] = 'x';
		k = unsub_key_new(secret);
		assert_non_null(k);
		assert_int_equal(unsub_key_token(k, 77, 42, a), 0);
		assert_int_equal(unsub_token(secret, 77, 42, b), 0);
		assert_string_equal(a, b);
		unsub_key_free(k);
	}
	unsub_key_free(NULL);
}

static void
test_verify(void **state)
{
	char tok[UNSUB_TOKEN_LEN + 1];

	(void)state;
	assert_true(unsub_verify("s3cret", 9, 42, vectors[0].token));
	strcpy(tok, vectors[0].token);
	tok[10] ^= 1;
	assert_false(unsub_verify("s3cret", 9, 42, tok));
	/* Uppercase hex is not the token. */
	strcpy(tok, vectors[0].token);
	tok[0] = 'C';
	assert_false(unsub_verify("s3cret", 9, 42, tok));
	assert_false(unsub_verify("s3cret", 10, 42, vectors[0].token));
	assert_false(unsub_verify("s3cret", 9, 43, vectors[0].token));
	assert_false(unsub_verify("other", 9, 42, vectors[0].token));
	assert_false(unsub_verify("s3cret", 9, 42, ""));
	assert_false(unsub_verify("s3cret", 9, 42, NULL));
	/* A prefix or an extended token does not verify. */
	strcpy(tok, vectors[0].token);
	tok[UNSUB_TOKEN_LEN - 1] = '\0';
	assert_false(unsub_verify("s3cret", 9, 42, tok));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_key_matches_oneshot),
		cmocka_unit_test(test_verify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
