/*
 * Which replies say the mailbox does not exist (the address is then
 * suppressed): 550, 551, 553 without an enhanced status, any 5.1.x with
 * one, never a policy refusal that happens to be a 550, never a 4xx or a
 * full mailbox; the reply code as the rejected stream records it; the
 * address lowercased as the suppression set holds it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "feedback.h"

static void
test_no_mailbox(void **state)
{
	(void)state;
	/* Enhanced status 5.1.x, whatever the basic code. */
	assert_true(feedback_no_mailbox("550 5.1.1 <a@b.example>: Recipient "
	    "address rejected: User unknown in local recipient table"));
	assert_true(feedback_no_mailbox("550 5.1.10 Null MX"));
	assert_true(feedback_no_mailbox("554 5.1.2 bad destination system"));
	assert_true(feedback_no_mailbox("553 5.1.3 bad address syntax"));
	assert_true(feedback_no_mailbox("551 5.1.6 user has moved"));
	assert_true(feedback_no_mailbox("550-5.1.1 The email account that "
	    "you tried to reach does not exist"));
	/* No enhanced status: the code decides. */
	assert_true(feedback_no_mailbox("550 no such user"));
	assert_true(feedback_no_mailbox("551 User not local"));
	assert_true(feedback_no_mailbox("553 mailbox name not allowed"));
	assert_true(feedback_no_mailbox("550"));
}

static void
test_not_no_mailbox(void **state)
{
	(void)state;
	/* The mailbox exists: full, too big, refused by policy or spam. */
	assert_false(feedback_no_mailbox("552 5.2.2 Mailbox full"));
	assert_false(feedback_no_mailbox("552 Requested mail action aborted: "
	    "exceeded storage allocation"));
	assert_false(feedback_no_mailbox("550 5.7.1 Message rejected as spam"));
	assert_false(feedback_no_mailbox("554 5.7.1 Relay access denied"));
	assert_false(feedback_no_mailbox("550 5.2.1 mailbox disabled"));
	assert_false(feedback_no_mailbox("554 transaction failed"));
	/* Temporary: never. */
	assert_false(feedback_no_mailbox("450 4.1.1 mailbox unavailable"));
	assert_false(feedback_no_mailbox("451 4.7.1 greylisted"));
	assert_false(feedback_no_mailbox("421 closing"));
	/* Not an SMTP reply at all. */
	assert_false(feedback_no_mailbox(NULL));
	assert_false(feedback_no_mailbox(""));
	assert_false(feedback_no_mailbox("unroutable: no queue bound"));
	assert_false(feedback_no_mailbox("5500 no"));
	assert_false(feedback_no_mailbox("55 no"));
	assert_false(feedback_no_mailbox("650 5.1.1 no"));
	/* A triplet that is no enhanced status: the code decides. */
	assert_false(feedback_no_mailbox("554 5.1.1x odd"));
	assert_true(feedback_no_mailbox("550 5.1.1234 odd"));
	/* A 4.x.x triplet on a 5xx is not 5.1.x. */
	assert_false(feedback_no_mailbox("550 4.1.1 confused server"));
}

static void
test_reply_code(void **state)
{
	(void)state;
	assert_int_equal(feedback_reply_code("550 5.1.1 x"), 550);
	assert_int_equal(feedback_reply_code("451 greylisted"), 451);
	assert_int_equal(feedback_reply_code("552"), 552);
	assert_int_equal(feedback_reply_code("250-ok"), 250);
	assert_int_equal(feedback_reply_code(NULL), 0);
	assert_int_equal(feedback_reply_code(""), 0);
	assert_int_equal(feedback_reply_code("55"), 0);
	assert_int_equal(feedback_reply_code("5500"), 0);
	assert_int_equal(feedback_reply_code("unroutable: no queue"), 0);
	assert_int_equal(feedback_reply_code("999 what"), 0);
	assert_int_equal(feedback_reply_code("123 early"), 0);
}

static void
test_lower(void **state)
{
	char buf[16];

	(void)state;
	assert_int_equal(feedback_lower(buf, sizeof(buf), "Ada@Example.ORG"),
	    0);
	assert_string_equal(buf, "ada@example.org");
	/* Only ASCII letters change: UTF-8 bytes pass as they are. */
	assert_int_equal(feedback_lower(buf, sizeof(buf), "\xc3\x89@X.de"), 0);
	assert_string_equal(buf, "\xc3\x89@x.de");
	assert_int_equal(feedback_lower(buf, sizeof(buf), ""), 0);
	assert_string_equal(buf, "");
	/* Exactly full, and one too long. */
	assert_int_equal(feedback_lower(buf, sizeof(buf), "ABCDEFGHIJKLMNO"),
	    0);
	assert_string_equal(buf, "abcdefghijklmno");
	assert_int_equal(feedback_lower(buf, sizeof(buf), "ABCDEFGHIJKLMNOP"),
	    -1);
	assert_int_equal(feedback_lower(buf, 0, ""), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_mailbox),
		cmocka_unit_test(test_not_no_mailbox),
		cmocka_unit_test(test_reply_code),
		cmocka_unit_test(test_lower),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
