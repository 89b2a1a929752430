/*
 * Cursors in a member walk (see cursor.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cursor.h"
#include "util.h"
#include "zpage.h"

int
cursor_cmp(const struct cursor *a, const struct cursor *b)
{
	char sa[CURSOR_STR_MAX], sb[CURSOR_STR_MAX];
	int la, lb;

	if (!a->set || !b->set)
		return a->set - b->set;
	if (a->score != b->score)
		return a->score < b->score ? -1 : 1;
	if (a->uid == b->uid)
		return 0;
	la = snprintf(sa, sizeof(sa), "%lld", (long long)a->uid);
	lb = snprintf(sb, sizeof(sb), "%lld", (long long)b->uid);
	return zpage_member_cmp(sa, (size_t)la, sb, (size_t)lb);
}

void
cursor_score_str(double score, char *buf, size_t len)
{
	/*
	 * A score is nearly always a whole number (a join time, a user
	 * id): below 2^53 "%.17g" writes its digits and nothing else, which
	 * fmt_i64 does for a fraction of the cost.  Not -0, which is "-0".
	 */
	if (len >= FMT_I64_MAX && score > -9007199254740992.0 &&
	    score < 9007199254740992.0 && score == (double)(int64_t)score &&
	    (score != 0 || !signbit(score))) {
		(void)fmt_i64(buf, (int64_t)score);
		return;
	}
	snprintf(buf, len, "%.17g", score);
}

int
cursor_parse_uid(const char *s, size_t len, int64_t *uid)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return -1;
	*uid = (int64_t)v;
	return 0;
}
