/*
 * digestctl: the operator's and the scheduler's tool
 * (docs/design.md#digestctl).
 *
 *   digestctl [-c FILE] COMMAND [ARGS]
 *
 * Options are long (--period daily or --period=daily); -c is also
 * --config, and defaults to $DIGESTD_CONFIG, then the built-in path, as
 * digestd's does.  COMMAND --help prints that command's usage, without
 * reading the configuration.
 *
 * Each command lives in its own file under ctl/, and what they share in
 * ctl.c; this one reads the configuration, connects, and dispatches.
 * Exit status 0 on success, 1 on failure with the reason on stderr, 2
 * for a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "coredump.h"
#include "ctl.h"
#include "log.h"
#include "util.h"

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
	  "seed --groups N --members M --posts P [--seed S] [--now UNIX] "
	  "[--force]" },
	{ "verify-unsubscribe", ctl_cmd_verify_unsubscribe, 0,
	  "verify-unsubscribe --uid U --gid G --token T" },
};
#define CTL_NCOMMANDS (sizeof(ctl_commands) / sizeof(ctl_commands[0]))

static void
usage(FILE *fp)
{
	size_t i;

	fprintf(fp, "usage: digestctl [-hv] [-c FILE] COMMAND [ARGS]\n"
	    "  -c, --config FILE  configuration file (default: "
	    "$DIGESTD_CONFIG, else\n"
	    "                     " CONFIG_DEFAULT_PATH ")\n"
	    "  -h, --help         this help; COMMAND --help: the command's\n"
	    "  -v, --version      print the version and exit\n"
	    "commands:\n");
	for (i = 0; i < CTL_NCOMMANDS; i++)
		fprintf(fp, "  %s\n", ctl_commands[i].usage);
}

/* COMMAND --help (or -h) anywhere among its arguments. */
static int
wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

/*
 * The command's arguments with every --name=value split in two, so that
 * each command reads "--name value" only: the '=' in argv becomes a NUL.
 * The array is allocated (the caller frees it); its strings are argv's.
 */
static char **
split_long_options(int argc, char **argv, int *nargc)
{
	char **out, *eq;
	int i, n = 0;

	out = xcalloc((size_t)argc * 2 + 1, sizeof(*out));
	for (i = 0; i < argc; i++) {
		if (i > 0 && strncmp(argv[i], "--", 2) == 0 &&
		    (eq = strchr(argv[i], '=')) != NULL && eq > argv[i] + 2) {
			*eq = '\0';
			out[n++] = argv[i];
			out[n++] = eq + 1;
		} else
			out[n++] = argv[i];
	}
	*nargc = n;
	return out;
}

int
main(int argc, char **argv)
{
	const struct ctl_command *cmd = NULL;
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl c;
	char **args;
	const char *file = NULL;
	char err[CTL_ERR_MAX];
	size_t i;
	int ch, rv;

	/* A closed pipe (digestctl stats | head) is no reason to die. */
	signal(SIGPIPE, SIG_IGN);
	log_init("digestctl", LOG_LEVEL_WARN, LOG_FORMAT_LOGFMT);
	/* '+': options after the command belong to the command. */
	while ((ch = getopt_long(argc, argv, "+c:hv", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'v':
			printf("digestctl %s\n", DIGESTD_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	if (file == NULL)
		file = config_default_path();
	for (i = 0; i < CTL_NCOMMANDS; i++)
		if (strcmp(argv[0], ctl_commands[i].name) == 0)
			cmd = &ctl_commands[i];
	if (cmd == NULL) {
		fprintf(stderr, "digestctl: unknown command %s\n", argv[0]);
		usage(stderr);
		return 2;
	}
	if (wants_help(argc, argv)) {
		printf("usage: digestctl [-c FILE] %s\n", cmd->usage);
		return 0;
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
	args = split_long_options(argc, argv, &argc);
	rv = cmd->fn(&c, argc - 1, args + 1);
	free(args);
	ctl_close(&c);
	config_free(c.cfg);
	return rv;
}
