/*
 * digestctl verify-unsubscribe: tell the host application whether an
 * unsubscribe link's token is right for its user and group.  Exit 0 when
 * valid, 1 otherwise; the comparison is made in constant time.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "unsub.h"
#include "util.h"

int
ctl_cmd_verify_unsubscribe(struct ctl *c, int argc, char **argv)
{
	const char *uid_s = NULL, *gid_s = NULL, *token = NULL;
	int64_t uid, gid;
	int i;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--uid") == 0)
			uid_s = ctl_optarg(argc, argv, &i);
		else if (strcmp(argv[i], "--gid") == 0)
			gid_s = ctl_optarg(argc, argv, &i);
		else if (strcmp(argv[i], "--token") == 0)
			token = ctl_optarg(argc, argv, &i);
		else {
			fprintf(stderr, "digestctl verify-unsubscribe: unknown "
			    "argument %s\n", argv[i]);
			return 2;
		}
	}
	if (uid_s == NULL || gid_s == NULL || token == NULL) {
		fprintf(stderr, "usage: digestctl -c FILE verify-unsubscribe "
		    "--uid U --gid G --token T\n");
		return 2;
	}
	/* A malformed id is simply not a valid link. */
	if (parse_i64(uid_s, INT64_MIN, INT64_MAX, &uid) == -1 ||
	    parse_i64(gid_s, INT64_MIN, INT64_MAX, &gid) == -1 ||
	    !unsub_verify(c->cfg->digest.unsubscribe_secret, uid, gid, token)) {
		printf("invalid\n");
		return 1;
	}
	printf("valid\n");
	return 0;
}
