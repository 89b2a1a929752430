/*
 * digestctl: the operator's and the scheduler's tool (SPEC 8).
 *
 *   digestctl -c FILE COMMAND [ARGS]
 *
 * Each command lives in its own file under ctl/, and what they share in
 * ctl.c; this one reads the configuration, connects, and dispatches.
 * Exit status 0 on success, 1 on failure with the reason on stderr, 2
 * for a usage error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "coredump.h"
#include "ctl.h"
#include "log.h"

struct ctl_command {
	const char *name;
	int (*fn)(struct ctl *, int, char **);
	int needs_redis;
	const char *usage;
};

static const struct ctl_command ctl_commands[] = {
	{ "schedule", ctl_cmd_schedule, 1,
	  "schedule --period daily|weekly [--now UNIX]" },
	{ "enqueue", ctl_cmd_enqueue, 1,
	  "enqueue --group GID --period P [--queue Q] [--now UNIX] [--force]" },
	{ "stats", ctl_cmd_stats, 1, "stats [--json]" },
	{ "watch", ctl_cmd_watch, 1,
	  "watch [--interval SECONDS] [--timeout DURATION]" },
	{ "dlq", ctl_cmd_dlq, 1, "dlq list [--json] | dlq show ID | "
	  "dlq delete ID|--all | dlq requeue ID|--all" },
	{ "pause", ctl_cmd_pause, 1, "pause QUEUE|--all [--reason TEXT]" },
	{ "resume", ctl_cmd_resume, 1, "resume QUEUE|--all" },
	{ "cancel", ctl_cmd_cancel, 1, "cancel --period daily|weekly "
	  "[--now UNIX]" },
	{ "purge", ctl_cmd_purge, 1, "purge QUEUE --yes" },
	{ "preview", ctl_cmd_preview, 1, "preview --group GID --user UID "
	  "[--period P] [--now UNIX] [--part mime|text|html]" },
	{ "send-test", ctl_cmd_send_test, 1, "send-test --group GID --user UID "
	  "--to ADDR [--period P] [--now UNIX]" },
	{ "seed", ctl_cmd_seed, 1,
	  "seed --groups N --members M --posts P [--seed S] [--now UNIX]" },
	{ "verify-unsubscribe", ctl_cmd_verify_unsubscribe, 0,
	  "verify-unsubscribe --uid U --gid G --token T" },
};
#define CTL_NCOMMANDS (sizeof(ctl_commands) / sizeof(ctl_commands[0]))

static void
usage(FILE *fp)
{
	size_t i;

	fprintf(fp, "usage: digestctl -c FILE COMMAND [ARGS]\ncommands:\n");
	for (i = 0; i < CTL_NCOMMANDS; i++)
		fprintf(fp, "  %s\n", ctl_commands[i].usage);
}

int
main(int argc, char **argv)
{
	const struct ctl_command *cmd = NULL;
	struct ctl c;
	const char *file = NULL;
	char err[CTL_ERR_MAX];
	size_t i;
	int ch, rv;

	/* A closed pipe (digestctl stats | head) is no reason to die. */
	signal(SIGPIPE, SIG_IGN);
	log_init("digestctl", LOG_LEVEL_WARN, LOG_FORMAT_LOGFMT);
	/* '+': options after the command belong to the command. */
	while ((ch = getopt(argc, argv, "+c:h")) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (file == NULL || argc < 1) {
		usage(stderr);
		return 2;
	}
	for (i = 0; i < CTL_NCOMMANDS; i++)
		if (strcmp(argv[0], ctl_commands[i].name) == 0)
			cmd = &ctl_commands[i];
	if (cmd == NULL) {
		fprintf(stderr, "digestctl: unknown command %s\n", argv[0]);
		usage(stderr);
		return 2;
	}

	/* The config holds the secrets: no core of this process either. */
	if (coredump_disable() == -1) {
		fprintf(stderr, "digestctl: cannot disable core dumps: %s\n",
		    strerror(errno));
		return 1;
	}
	memset(&c, 0, sizeof(c));
	if ((c.cfg = config_load(file, err, sizeof(err))) == NULL) {
		fprintf(stderr, "digestctl: %s\n", err);
		return 1;
	}
	if (c.cfg->supervisor.core_dumps && coredump_apply(1) == -1)
		fprintf(stderr, "digestctl: core_dumps = yes: %s\n",
		    strerror(errno));
	log_configure(LOG_LEVEL_WARN, c.cfg->supervisor.log_format);
	if (cmd->needs_redis && ctl_connect(&c) == -1) {
		fprintf(stderr, "digestctl: %s\n", ctl_vis(c.err));
		ctl_close(&c);
		config_free(c.cfg);
		return 1;
	}
	rv = cmd->fn(&c, argc - 1, argv + 1);
	ctl_close(&c);
	config_free(c.cfg);
	return rv;
}
