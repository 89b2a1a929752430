/*
 * The configuration file: one table of keys (config_keys[] and pool_keys[]
 * below) holds each key's section, type, place in struct config, bounds,
 * default and help, in the manner of tmux's options-table.c.  The parser,
 * the defaults, `digestd -t` and the example file all come from it, so a
 * key is added in one place.
 *
 * The text is split by inih, fed through our own line reader: the reader
 * counts lines (inih's handler is not told the line number in Debian's
 * build), refuses lines longer than inih's buffer instead of letting them be
 * cut in two, strips leading blanks so that an indented key is a key and
 * not a continuation line, and sees section headers itself, so that an
 * empty [pool.NAME] or [queue_redis] section still counts.
 *
 * Errors read "FILE:LINE: [section] key: what is wrong"; a password, secret
 * or URL with credentials is never repeated in them.  The values themselves
 * (durations, addresses, URLs...) are parsed in config_value.c.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "config_value.h"
#include "util.h"

/* A config file larger than this is a mistake, not a config. */
#define CONFIG_FILE_MAX (1024 * 1024)

/* The total of workers over all pools: a reload roll must fit 256 slots. */
#define CONFIG_WORKERS_MAX 100

/* A secret file larger than this is the wrong file. */
#define CONFIG_SECRET_FILE_MAX 4096

enum config_type {
	CT_STRING,	/* text without control characters */
	CT_NAME,	/* [A-Za-z0-9._-]+ */
	CT_SECRET,	/* text never repeated in a message, min bytes long */
	CT_PATH,	/* made absolute against the file's directory */
	CT_INT,		/* int, within min..max */
	CT_INT64,	/* int64_t, within min..max */
	CT_DURATION,	/* int64_t milliseconds, within min..max */
	CT_SIZE,	/* uint64_t bytes, within min..max */
	CT_DOUBLE,	/* double, within min..max */
	CT_ENUM,	/* int, the index in choices */
	CT_TIME,	/* HH:MM, int seconds after midnight */
	CT_LISTEN,	/* host:port or [v6]:port */
	CT_AMQP_URL,	/* amqp://user:pass@host:port/vhost, secret */
	CT_FROM,	/* "Name <addr>" or addr */
	CT_ADDR,	/* a bare addr, or empty */
	CT_HTTP_URL	/* http:// or https:// */
};

#define CF_NONEMPTY	0x01	/* "" is not allowed */
#define CF_REQUIRED	0x02	/* must be set (implies CF_NONEMPTY) */
#define CF_SECRET	0x04	/* never repeat the value */
#define CF_POOLNAME	0x08	/* default is the pool's name */
#define CF_SECRET_FILE	0x10	/* KEY_file: the file holding secret KEY */

struct config_key {
	const char *section;	/* "pool" for [pool.NAME] */
	const char *key;
	enum config_type type;
	size_t offset;		/* in struct config or pool_config */
	size_t size;		/* of the member, for strings */
	int64_t min;
	int64_t max;
	const char *const *choices; /* CT_ENUM, NULL-terminated */
	const char *def;
	int flags;
	const char *help;
};

static const char *const log_level_choices[] = {
	"debug", "info", "warn", "error", NULL
};
static const char *const log_format_choices[] = { "logfmt", "json", NULL };
static const char *const backend_choices[] = { "redis", "amqp", NULL };
static const char *const transport_choices[] = {
	"smtp", "amqp", "maildir", NULL
};
static const char *const starttls_choices[] = {
	"off", "optional", "required", NULL
};
static const char *const yes_no_choices[] = { "no", "yes", NULL };

#define C(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define P(f) offsetof(struct pool_config, f), \
	sizeof(((struct pool_config *)0)->f)


/* The sections, in the order of the example file. */
struct config_section {
	const char *name;
	const char *help;
};

static const struct config_section config_sections[] = {
	{ "supervisor",
	    "The supervisor process: HTTP endpoint, timeouts, logs." },
	{ "redis", "The activity store (read) and digestd's own keys." },
	{ "queue_redis", "Optional: a dedicated Redis for the queues and the "
	    "digest:* keys.\n"
	    "When the section is absent, or names neither host nor socket, "
	    "[redis]\nserves both; it uses the key_prefix of [redis]." },
	{ "queue", "The job queue." },
	{ "amqp",
	    "RabbitMQ, used when queue.backend or transport.type is amqp." },
	{ "pool", "One [pool.NAME] section per worker pool (NAME: a-z, 0-9, _ "
	    "and -);\nat least one is required, at most 8, with 100 workers in "
	    "all." },
	{ "digest", "What goes into a digest, and to whom." },
	{ "schedule", "How `digestctl schedule` computes windows and routes "
	    "jobs." },
	{ "transport", "How emails leave." },
	{ "smtp", "transport.type = smtp" },
	{ "maildir", "transport.type = maildir" },
	{ "amqp_out", "transport.type = amqp: where each email is published." },
};
#define NSECTIONS (sizeof(config_sections) / sizeof(config_sections[0]))

static const struct config_key config_keys[] = {
	{ "supervisor", "listen", CT_LISTEN, C(supervisor.listen), 0, 0, NULL,
	    "127.0.0.1:9187", 0,
	    "HTTP for /metrics, /healthz, /readyz and /status: host:port or "
	    "[v6]:port." },
	{ "supervisor", "drain_timeout", CT_DURATION,
	    C(supervisor.drain_timeout_ms), 0, 1 * DAY_MS, NULL, "60s", 0,
	    "On SIGTERM, how long workers may finish their jobs before "
	    "SIGKILL." },
	{ "supervisor", "stall_timeout", CT_DURATION,
	    C(supervisor.stall_timeout_ms), 1 * SEC_MS, 1 * DAY_MS, NULL,
	    "120s", 0,
	    "A worker without a heartbeat for this long is killed and "
	    "replaced." },
	{ "supervisor", "restart_backoff_min", CT_DURATION,
	    C(supervisor.restart_backoff_min_ms), 1, 1 * HOUR_MS, NULL, "100ms",
	    0,
	    "First delay before restarting a slot that died right after "
	    "start." },
	{ "supervisor", "restart_backoff_max", CT_DURATION,
	    C(supervisor.restart_backoff_max_ms), 1, 1 * DAY_MS, NULL, "30s", 0,
	    "The delay doubles up to this." },
	{ "supervisor", "log_level", CT_ENUM, C(supervisor.log_level), 0, 0,
	    log_level_choices, "info", 0, "debug | info | warn | error" },
	{ "supervisor", "log_format", CT_ENUM, C(supervisor.log_format), 0, 0,
	    log_format_choices, "logfmt", 0, "logfmt | json" },
	{ "supervisor", "log_file", CT_PATH, C(supervisor.log_file), 0, 0, NULL,
	    "", 0, "Empty: stderr.  Reopened on SIGUSR1." },
	{ "supervisor", "core_dumps", CT_ENUM, C(supervisor.core_dumps), 0, 0,
	    yes_no_choices, "no", 0,
	    "no: digestd and digestctl dump no core (RLIMIT_CORE 0, not\n"
	    "dumpable): a core would carry the secrets.  yes: for debugging." },
	{ "supervisor", "user", CT_STRING, C(supervisor.user), 0, 0, NULL, "",
	    0,
	    "Drop privileges to this user after binding; empty: stay." },
	{ "supervisor", "http_max_connections", CT_INT,
	    C(supervisor.http_max_connections), 1, 65536, NULL, "256", 0,
	    "Open HTTP connections at most (never more than half the\n"
	    "open-file limit); more wait in the backlog, and idle ones give\n"
	    "way to new clients." },
	{ "supervisor", "console_listen", CT_LISTEN, C(supervisor.console_listen),
	    0, 0, NULL, "", 0,
	    "The web console (queues, instances, dead letters, pause and\n"
	    "resume): host:port or [v6]:port; empty: off.  A loopback address\n"
	    "unless console_password is set too." },
	{ "supervisor", "console_password", CT_SECRET,
	    C(supervisor.console_password), 0, 0, NULL, "", CF_SECRET,
	    "HTTP basic auth for the console (any user name); empty: none.\n"
	    "Never logged." },
	{ "supervisor", "console_password_file", CT_PATH,
	    C(supervisor.console_password_file), 0, 0, NULL, "",
	    CF_SECRET_FILE, "A file holding the console password instead (one "
	    "trailing\nnewline dropped), read at start and on reload." },
	{ "supervisor", "unsubscribe_listen", CT_LISTEN,
	    C(supervisor.unsubscribe_listen), 0, 0, NULL, "", 0,
	    "One-click unsubscribe (RFC 8058) for the links in the emails:\n"
	    "host:port or [v6]:port; empty: off.  Serves the path of\n"
	    "digest.unsubscribe_url; put it behind the HTTPS proxy that\n"
	    "unsubscribe_url names." },

	{ "redis", "host", CT_STRING, C(redis.host), 0, 0, NULL, "127.0.0.1", 0,
	    "Host name or address." },
	{ "redis", "port", CT_INT, C(redis.port), 1, 65535, NULL, "6379", 0,
	    "TCP port." },
	{ "redis", "socket", CT_PATH, C(redis.socket), 0, 0, NULL, "", 0,
	    "Unix socket path, used instead of host and port." },
	{ "redis", "password", CT_SECRET, C(redis.password), 0, 0, NULL, "",
	    CF_SECRET, "AUTH password; empty: none.  Never logged." },
	{ "redis", "password_file", CT_PATH, C(redis.password_file), 0, 0, NULL,
	    "", CF_SECRET_FILE, "A file holding the password instead (one "
	    "trailing newline dropped),\nread at start and on reload." },
	{ "redis", "db", CT_INT, C(redis.db), 0, 65535, NULL, "0", 0,
	    "Database number (SELECT)." },
	{ "redis", "key_prefix", CT_STRING, C(redis.key_prefix), 0, 0, NULL, "",
	    0, "Prefix of every key read or written, on both Redis servers." },
	{ "redis", "timeout", CT_DURATION, C(redis.timeout_ms), 1, 1 * HOUR_MS,
	    NULL, "2s", 0, "Connect and command timeout." },

	{ "queue_redis", "host", CT_STRING, C(queue_redis.host), 0, 0, NULL, "",
	    0, "Host name or address; with neither host nor socket, [redis]\n"
	    "serves the queues too." },
	{ "queue_redis", "port", CT_INT, C(queue_redis.port), 1, 65535, NULL,
	    "6379", 0, "TCP port." },
	{ "queue_redis", "socket", CT_PATH, C(queue_redis.socket), 0, 0, NULL,
	    "", 0, "Unix socket path, used instead of host and port." },
	{ "queue_redis", "password", CT_SECRET, C(queue_redis.password), 0, 0,
	    NULL, "", CF_SECRET, "AUTH password; empty: none.  Never logged." },
	{ "queue_redis", "password_file", CT_PATH, C(queue_redis.password_file),
	    0, 0, NULL, "", CF_SECRET_FILE, "A file holding the password "
	    "instead (one trailing newline dropped),\nread at start and on "
	    "reload." },
	{ "queue_redis", "db", CT_INT, C(queue_redis.db), 0, 65535, NULL, "0",
	    0, "Database number (SELECT)." },
	{ "queue_redis", "timeout", CT_DURATION, C(queue_redis.timeout_ms), 1,
	    1 * HOUR_MS, NULL, "2s", 0, "Connect and command timeout." },

	{ "queue", "backend", CT_ENUM, C(queue.backend), 0, 0, backend_choices,
	    "redis", 0, "redis | amqp" },
	{ "queue", "max_attempts", CT_INT, C(queue.max_attempts), 1, 1000, NULL,
	    "3", 0, "Deliveries of a job before it goes to the dead letters." },
	{ "queue", "visibility_timeout", CT_DURATION,
	    C(queue.visibility_timeout_ms), 1 * SEC_MS, 7 * DAY_MS, NULL, "10m",
	    0,
	    "redis: a pending job idle this long (its instance died) is "
	    "reclaimed." },

	{ "amqp", "url", CT_AMQP_URL, C(amqp.url), 0, 0, NULL,
	    "amqp://guest:guest@127.0.0.1:5672/%2F", CF_NONEMPTY | CF_SECRET,
	    "amqp://user:password@host:port/vhost (amqps:// for TLS)." },
	{ "amqp", "heartbeat", CT_DURATION, C(amqp.heartbeat_ms), 0,
	    65535 * SEC_MS, NULL, "30s", 0, "0: no heartbeat." },
	{ "amqp", "prefetch", CT_INT, C(amqp.prefetch), 1, 65535, NULL, "1", 0,
	    "Unacknowledged jobs a worker may hold." },
	{ "amqp", "ca_file", CT_PATH, C(amqp.ca_file), 0, 0, NULL, "", 0,
	    "amqps://: verify the broker's chain and host name against these "
	    "CA\ncertificates (PEM); empty: the system's CA store." },

	{ "digest", "from", CT_FROM, C(digest.from), 0, 0, NULL,
	    "Groups <digest@example.com>", CF_NONEMPTY,
	    "From: header, \"Name <addr>\" or addr; its domain names "
	    "Message-ID and List-Id." },
	{ "digest", "max_posts", CT_INT, C(digest.max_posts), 1, 1000, NULL,
	    "10", 0, "Posts listed per email at most." },
	{ "digest", "inactive_after", CT_DURATION, C(digest.inactive_after_ms),
	    1 * SEC_MS, 3650 * DAY_MS, NULL, "90d", 0,
	    "In large groups, members not seen for this long are skipped." },
	{ "digest", "large_group_threshold", CT_INT64,
	    C(digest.large_group_threshold), 0, INT64_MAX, NULL, "10000", 0,
	    "Inactive members are skipped at or above this size." },
	{ "digest", "batch_size", CT_INT, C(digest.batch_size), 1, 100000, NULL,
	    "500", 0, "Members read and sent per batch." },
	{ "digest", "unsubscribe_url", CT_HTTP_URL, C(digest.unsubscribe_url),
	    0, 0, NULL, "https://example.com/unsubscribe", CF_NONEMPTY,
	    "List-Unsubscribe gets ?u=UID&g=GID&t=TOKEN appended." },
	{ "digest", "unsubscribe_secret", CT_SECRET,
	    C(digest.unsubscribe_secret), CONFIG_SECRET_MIN, 0, NULL, "",
	    CF_REQUIRED | CF_NONEMPTY | CF_SECRET,
	    "Required (or unsubscribe_secret_file): HMAC key for unsubscribe "
	    "tokens,\nat least 32 bytes (openssl rand -hex 32)." },
	{ "digest", "unsubscribe_secret_file", CT_PATH,
	    C(digest.unsubscribe_secret_file), 0, 0, NULL, "",
	    CF_NONEMPTY | CF_SECRET_FILE, "A file holding the key instead (one "
	    "trailing newline dropped),\nread at start and on reload." },
	{ "digest", "template_dir", CT_PATH, C(digest.template_dir), 0, 0, NULL,
	    "", 0, "Empty: built-in templates." },

	{ "schedule", "day_start", CT_TIME, C(schedule.day_start_s), 0, 0, NULL,
	    "00:00", 0, "UTC time of day (HH:MM) at which periods end." },
	{ "schedule", "priority_threshold", CT_DOUBLE,
	    C(schedule.priority_threshold), 0, INT64_MAX, NULL, "50", 0,
	    "Engagement score at or above which a job goes to the priority "
	    "queue." },
	{ "schedule", "shard_size", CT_INT64, C(schedule.shard_size), 1,
	    INT64_MAX, NULL, "50000", 0,
	    "Members per job; larger groups are split." },

	{ "transport", "type", CT_ENUM, C(transport.type), 0, 0,
	    transport_choices, "smtp", 0, "smtp | amqp | maildir" },

	{ "smtp", "host", CT_STRING, C(smtp.host), 0, 0, NULL, "127.0.0.1", 0,
	    "The relay (MTA) digests are handed to." },
	{ "smtp", "port", CT_INT, C(smtp.port), 1, 65535, NULL, "25", 0,
	    "TCP port." },
	{ "smtp", "starttls", CT_ENUM, C(smtp.starttls), 0, 0, starttls_choices,
	    "optional", 0, "off | optional | required.  required: no session "
	    "without TLS, and a\ncertificate that verifies (tls_verify)." },
	{ "smtp", "tls_verify", CT_ENUM, C(smtp.tls_verify), 0, 0,
	    yes_no_choices, "yes", 0,
	    "With starttls = required, verify the server's certificate chain "
	    "and host\nname; no: accept any certificate (warned at start)." },
	{ "smtp", "tls_ca_file", CT_PATH, C(smtp.tls_ca_file), 0, 0, NULL, "",
	    0, "CA certificates (PEM) to verify against; empty: the system's "
	    "CA store." },
	{ "smtp", "username", CT_STRING, C(smtp.username), 0, 0, NULL, "", 0,
	    "AUTH when set, only inside TLS: needs starttls = required." },
	{ "smtp", "password", CT_SECRET, C(smtp.password), 0, 0, NULL, "",
	    CF_SECRET, "AUTH password, with username.  Never logged." },
	{ "smtp", "password_file", CT_PATH, C(smtp.password_file), 0, 0, NULL,
	    "", CF_SECRET_FILE, "A file holding the password instead (one "
	    "trailing newline dropped),\nread at start and on reload." },
	{ "smtp", "allow_plaintext_auth", CT_ENUM,
	    C(smtp.allow_plaintext_auth), 0, 0, yes_no_choices, "no", 0,
	    "yes: allow a username without starttls = required, so that "
	    "AUTH may go\nin clear (warned at start)." },
	{ "smtp", "messages_per_session", CT_INT, C(smtp.messages_per_session),
	    1, 1000000, NULL, "500", 0, "Messages sent on one connection." },
	{ "smtp", "envelope_from", CT_ADDR, C(smtp.envelope_from), 0, 0, NULL,
	    "", 0, "MAIL FROM; empty: the address of digest.from.  {uid} and "
	    "{gid} in its\nlocal part are set per email (VERP: "
	    "bounces+{uid}-{gid}@example.com)." },
	{ "smtp", "defer_retry_min", CT_DURATION, C(smtp.defer_retry_min_ms),
	    1, 1 * DAY_MS, NULL, "1m", 0,
	    "A recipient answered 4xx is retried after this, doubling," },
	{ "smtp", "defer_retry_max", CT_DURATION, C(smtp.defer_retry_max_ms),
	    1, 1 * DAY_MS, NULL, "30m", 0, "up to this," },
	{ "smtp", "defer_give_up", CT_DURATION, C(smtp.defer_give_up_ms),
	    1, 30 * DAY_MS, NULL, "24h", 0,
	    "and given up (counted rejected) this long after its first 4xx." },

	{ "maildir", "path", CT_PATH, C(maildir.path), 0, 0, NULL,
	    "./var/outbox", CF_NONEMPTY, "Created when missing." },

	{ "amqp_out", "exchange", CT_STRING, C(amqp_out.exchange), 0, 0, NULL,
	    "digest.email", CF_NONEMPTY, "Declared durable, of type direct." },
	{ "amqp_out", "routing_key", CT_STRING, C(amqp_out.routing_key), 0, 0,
	    NULL, "email", 0, "Routing key of each published email." },
};
#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

static const struct config_key pool_keys[] = {
	{ "pool", "queue", CT_NAME, P(queue), 0, 0, NULL, "NAME",
	    CF_NONEMPTY | CF_POOLNAME, "The queue this pool consumes; default: "
	    "the pool's NAME.\nThe scheduler fills priority and standard." },
	{ "pool", "workers", CT_INT, P(workers), 1, CONFIG_WORKERS_MAX, NULL,
	    "4", 0, "Worker processes." },
	{ "pool", "memory_limit", CT_SIZE, P(memory_limit), 0, 1024 * GIB, NULL,
	    "256M", 0, "Memory limit of each worker; 0: none." },
	{ "pool", "max_jobs", CT_INT64, P(max_jobs), 0, INT64_MAX, NULL,
	    "10000", 0, "Jobs before a worker is recycled; 0: never." },
	{ "pool", "job_timeout", CT_DURATION, P(job_timeout_ms), 1 * SEC_MS,
	    7 * DAY_MS, NULL, "15m", 0, "Longest a job may run." },
};
#define NPOOLKEYS (sizeof(pool_keys) / sizeof(pool_keys[0]))
/* Indexes in pool_keys, for the checks across keys. */
#define POOL_KEY_WORKERS 1
#define POOL_KEY_MEMORY_LIMIT 2

/* The state of one parse. */
struct config_parse {
	struct config *cfg;
	const char *file;

	const char *buf;		/* the reader's input */
	size_t len;
	size_t pos;
	int lineno;			/* of the line last read */

	int section;			/* in config_sections, -1: none */
	int pool;			/* the current [pool.NAME], or -1 */
	int section_line[NSECTIONS];	/* first header, 0: absent */
	int key_line[NKEYS];		/* where each key was set, or 0 */
	int pool_key_line[CONFIG_MAX_POOLS][NPOOLKEYS];

	char *err;
	size_t errlen;
	int failed;
	int fail_line;			/* of the error, or 0 */
};

static int	config_section_index(const char *);
static void	config_fail(struct config_parse *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static int	config_set(struct config_parse *, const struct config_key *,
		    void *, const char *, char *, size_t);

static int
config_section_index(const char *name)
{
	size_t i;

	for (i = 0; i < NSECTIONS; i++)
		if (strcmp(config_sections[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Record the first error only: later ones are often its consequences. */
static void
config_fail(struct config_parse *p, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (p->failed)
		return;
	p->failed = 1;
	p->fail_line = line;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(p->err, p->errlen, "%s:%d: %s", p->file, line, msg);
	else
		snprintf(p->err, p->errlen, "%s: %s", p->file, msg);
}

/* Make a relative path relative to the config file's directory. */
static int
config_resolve_path(const struct config *cfg, const char *v, char *dst,
    size_t size)
{
	int n;

	if (*v == '\0' || *v == '/') {
		if (strlcpy(dst, v, size) >= size)
			return -1;
		return 0;
	}
	while (v[0] == '.' && v[1] == '/')
		v += 2;
	if (*v == '\0' || strcmp(v, ".") == 0)
		n = snprintf(dst, size, "%s", cfg->dir);
	else
		n = snprintf(dst, size, "%s/%s", cfg->dir, v);
	if (n < 0 || (size_t)n >= size)
		return -1;
	return 0;
}

/*
 * Parse value v for key k into dst.  On error, put in why what is wrong,
 * without the value itself (the caller adds it unless it is secret).
 */
static int
config_set(struct config_parse *p, const struct config_key *k, void *dst,
    const char *v, char *why, size_t whylen)
{
	char b1[32], b2[32];
	int64_t i64;
	uint64_t u64;
	double d;
	size_t i;

	if (*v == '\0' && (k->flags & CF_NONEMPTY)) {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}
	switch (k->type) {
	case CT_STRING:
	case CT_NAME:
	case CT_SECRET:
	case CT_FROM:
	case CT_ADDR:
	case CT_HTTP_URL:
	case CT_AMQP_URL:
	case CT_LISTEN:
		if (config_has_ctl(v)) {
			snprintf(why, whylen, "has a control character");
			return -1;
		}
		if (strlen(v) >= k->size) {
			snprintf(why, whylen, "is longer than %zu characters",
			    k->size - 1);
			return -1;
		}
		if (k->type == CT_SECRET && *v != '\0' &&
		    strlen(v) < (size_t)k->min) {
			snprintf(why, whylen, "is shorter than %lld bytes (a "
			    "short key makes tokens forgeable)",
			    (long long)k->min);
			return -1;
		}
		if (k->type == CT_NAME)
			for (i = 0; v[i] != '\0'; i++)
				if (!isalnum((unsigned char)v[i]) &&
				    strchr("._-", v[i]) == NULL) {
					snprintf(why, whylen, "may hold only "
					    "A-Z, a-z, 0-9, '.', '_' and '-'");
					return -1;
				}
		if (*v != '\0') {
			if (k->type == CT_FROM &&
			    config_split_from(v, NULL, NULL, why, whylen) == -1)
				return -1;
			if (k->type == CT_ADDR &&
			    config_valid_addr(v, why, whylen) == -1)
				return -1;
			if (k->type == CT_HTTP_URL &&
			    config_valid_http_url(v, why, whylen) == -1)
				return -1;
			if (k->type == CT_AMQP_URL &&
			    config_valid_amqp_url(v, why, whylen) == -1)
				return -1;
			if (k->type == CT_LISTEN &&
			    config_valid_listen(v, why, whylen) == -1)
				return -1;
		} else if (k->type == CT_LISTEN &&
		    strcmp(k->key, "console_listen") != 0 &&
		    strcmp(k->key, "unsubscribe_listen") != 0) {
			snprintf(why, whylen, "must not be empty");
			return -1;
		}
		strlcpy(dst, v, k->size);
		return 0;
	case CT_PATH:
		if (config_has_ctl(v)) {
			snprintf(why, whylen, "has a control character");
			return -1;
		}
		if (config_resolve_path(p->cfg, v, dst, k->size) == -1) {
			snprintf(why, whylen, "is too long a path");
			return -1;
		}
		return 0;
	case CT_INT:
	case CT_INT64:
		if (config_parse_uint(v, &i64) == -1) {
			snprintf(why, whylen, "is not a whole number");
			return -1;
		}
		if (i64 < k->min || i64 > k->max) {
			if (k->max == INT64_MAX)
				snprintf(why, whylen, "is less than %lld",
				    (long long)k->min);
			else
				snprintf(why, whylen, "is out of range "
				    "(%lld to %lld)", (long long)k->min,
				    (long long)k->max);
			return -1;
		}
		if (k->type == CT_INT)
			*(int *)dst = (int)i64;
		else
			*(int64_t *)dst = i64;
		return 0;
	case CT_DURATION:
		if (config_parse_duration(v, &i64) == -1) {
			snprintf(why, whylen, "is not a duration "
			    "(a number with ms, s, m, h or d, e.g. 30s)");
			return -1;
		}
		if (i64 < k->min || i64 > k->max) {
			snprintf(why, whylen, "is out of range (%s to %s)",
			    config_fmt_duration(k->min, b1, sizeof(b1)),
			    config_fmt_duration(k->max, b2, sizeof(b2)));
			return -1;
		}
		*(int64_t *)dst = i64;
		return 0;
	case CT_SIZE:
		if (config_parse_size(v, &u64) == -1) {
			snprintf(why, whylen, "is not a size "
			    "(bytes, or a number with K, M or G)");
			return -1;
		}
		if (u64 < (uint64_t)k->min || u64 > (uint64_t)k->max) {
			snprintf(why, whylen, "is out of range (%s to %s)",
			    config_fmt_size((uint64_t)k->min, b1, sizeof(b1)),
			    config_fmt_size((uint64_t)k->max, b2, sizeof(b2)));
			return -1;
		}
		*(uint64_t *)dst = u64;
		return 0;
	case CT_DOUBLE:
		/* strtod alone would take blanks, hex and "inf". */
		for (i = 0; v[i] != '\0'; i++)
			if (!isdigit((unsigned char)v[i]) && v[i] != '.')
				break;
		if (v[i] != '\0' || *v == '\0' || *v == '.' ||
		    strchr(v, '.') != strrchr(v, '.') ||
		    (d = strtod(v, NULL), d > 1e15)) {
			snprintf(why, whylen, "is not a number (e.g. 50 or "
			    "12.5)");
			return -1;
		}
		if (d < (double)k->min) {
			snprintf(why, whylen, "is less than %lld",
			    (long long)k->min);
			return -1;
		}
		*(double *)dst = d;
		return 0;
	case CT_ENUM:
		for (i = 0; k->choices[i] != NULL; i++)
			if (strcmp(v, k->choices[i]) == 0) {
				*(int *)dst = (int)i;
				return 0;
			}
		snprintf(why, whylen, "is not one of");
		for (i = 0; k->choices[i] != NULL; i++) {
			strlcat(why, i == 0 ? " " : " | ", whylen);
			strlcat(why, k->choices[i], whylen);
		}
		return -1;
	case CT_TIME:
		if (strlen(v) != 5 || !isdigit((unsigned char)v[0]) ||
		    !isdigit((unsigned char)v[1]) || v[2] != ':' ||
		    !isdigit((unsigned char)v[3]) ||
		    !isdigit((unsigned char)v[4]) ||
		    (v[0] - '0') * 10 + (v[1] - '0') > 23 ||
		    (v[3] - '0') * 10 + (v[4] - '0') > 59) {
			snprintf(why, whylen, "is not a time of day (HH:MM, "
			    "00:00 to 23:59)");
			return -1;
		}
		*(int *)dst = ((v[0] - '0') * 10 + (v[1] - '0')) * 3600 +
		    ((v[3] - '0') * 10 + (v[4] - '0')) * 60;
		return 0;
	}
	snprintf(why, whylen, "has an unknown type");
	return -1;
}

/* Set key k from the text v at line; the error names the key. */
static int
config_set_key(struct config_parse *p, const struct config_key *k,
    const char *section, void *dst, const char *v, int line)
{
	char why[256], quoted[CONFIG_STR_MAX + 8];

	why[0] = '\0';
	if (config_set(p, k, dst, v, why, sizeof(why)) == 0)
		return 0;
	if (strcmp(why, "must not be empty") == 0)
		config_fail(p, line, "[%s] %s: %s", section, k->key, why);
	else if (k->flags & CF_SECRET)
		config_fail(p, line, "[%s] %s: value %s", section, k->key, why);
	else if (*v == '\0')
		config_fail(p, line, "[%s] %s: empty value %s", section, k->key,
		    why);
	else {
		config_quote(quoted, sizeof(quoted), v);
		config_fail(p, line, "[%s] %s: %s %s", section, k->key, quoted,
		    why);
	}
	return -1;
}

/* Open [pool.NAME] at line: a new pool with the defaults, or an old one. */
static int
config_open_pool(struct config_parse *p, const char *name, int line)
{
	struct config *cfg = p->cfg;
	struct pool_config *pc;
	size_t i;
	int n;

	for (i = 0; name[i] != '\0'; i++)
		if (!islower((unsigned char)name[i]) &&
		    !isdigit((unsigned char)name[i]) && name[i] != '_' &&
		    name[i] != '-')
			break;
	if (i == 0 || name[i] != '\0') {
		char clean[CONFIG_NAME_MAX];

		config_clean(clean, sizeof(clean), name);
		config_fail(p, line, "[pool.%s]: a pool name may hold only "
		    "a-z, 0-9, '_' and '-'", clean);
		return -1;
	}
	if (i >= CONFIG_NAME_MAX) {
		config_fail(p, line, "[pool.%.*s...]: pool name longer than %d "
		    "characters", 16, name, CONFIG_NAME_MAX - 1);
		return -1;
	}
	for (n = 0; n < cfg->npools; n++)
		if (strcmp(cfg->pools[n].name, name) == 0) {
			p->pool = n;
			return 0;
		}
	if (cfg->npools == CONFIG_MAX_POOLS) {
		config_fail(p, line, "[pool.%s]: too many pools (at most %d)",
		    name, CONFIG_MAX_POOLS);
		return -1;
	}
	pc = &cfg->pools[cfg->npools];
	memset(pc, 0, sizeof(*pc));
	strlcpy(pc->name, name, sizeof(pc->name));
	strlcpy(pc->queue, name, sizeof(pc->queue));
	pc->line = line;
	for (i = 0; i < NPOOLKEYS; i++) {
		const struct config_key *k = &pool_keys[i];

		if (k->flags & CF_POOLNAME)
			continue;
		if (config_set_key(p, k, "pool", (char *)pc + k->offset,
		    k->def, 0) == -1)
			return -1;
	}
	p->pool = cfg->npools++;
	return 0;
}

/* A header "[name]" read at line. */
static int
config_open_section(struct config_parse *p, const char *name, int line)
{
	int s;

	p->pool = -1;
	if (strncmp(name, "pool.", 5) == 0) {
		s = config_section_index("pool");
		if (p->section_line[s] == 0)
			p->section_line[s] = line;
		p->section = s;
		return config_open_pool(p, name + 5, line);
	}
	if ((s = config_section_index(name)) == -1 ||
	    strcmp(name, "pool") == 0) {
		char clean[64];

		config_clean(clean, sizeof(clean), name);
		config_fail(p, line, "[%s]: unknown section%s", clean,
		    strcmp(name, "pool") == 0 ? " (pools are [pool.NAME])" :
		    "");
		return -1;
	}
	if (p->section_line[s] == 0)
		p->section_line[s] = line;
	p->section = s;
	return 0;
}

/*
 * The reader inih calls for each line: copy the next line into str, without
 * its leading blanks and its newline, and see section headers on the way.
 * Returning NULL ends the parse, at the end or on the first error.
 */
static char *
config_reader(char *str, int num, void *stream)
{
	struct config_parse *p = stream;
	const char *line, *nl, *s;
	size_t n, rest;
	char name[CONFIG_STR_MAX];

	if (p->failed || p->pos >= p->len)
		return NULL;
	line = p->buf + p->pos;
	rest = p->len - p->pos;
	nl = memchr(line, '\n', rest);
	n = nl != NULL ? (size_t)(nl - line) : rest;
	p->pos += n + (nl != NULL);
	p->lineno++;
	if (n >= (size_t)num) {
		config_fail(p, p->lineno, "line is longer than %d characters",
		    num - 1);
		return NULL;
	}
	if (memchr(line, '\0', n) != NULL) {
		config_fail(p, p->lineno, "line holds a NUL byte");
		return NULL;
	}
	/* A UTF-8 byte order mark, which some editors write. */
	if (p->lineno == 1 && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
		line += 3;
		n -= 3;
	}
	while (n > 0 && (*line == ' ' || *line == '\t' || *line == '\r' ||
	    *line == '\v' || *line == '\f')) {
		line++;
		n--;
	}
	memcpy(str, line, n);
	str[n] = '\0';

	/*
	 * A header as inih reads it: up to ']', unless an inline comment
	 * (blank then ';') comes first, which makes it inih's syntax error.
	 */
	if (str[0] == '[') {
		for (s = str + 1; *s != '\0' && *s != ']'; s++)
			if (*s == ';' && isspace((unsigned char)s[-1]))
				break;
		if (*s == ']') {
			const char *t = s + 1;

			/* inih would ignore what follows; an operator means
			 * something by it. */
			while (isspace((unsigned char)*t))
				t++;
			if (*t != '\0' && *t != ';' && *t != '#') {
				config_fail(p, p->lineno, "text after the "
				    "section header");
				return NULL;
			}
			n = (size_t)(s - str - 1);
			if (n >= sizeof(name))
				n = sizeof(name) - 1;
			memcpy(name, str + 1, n);
			name[n] = '\0';
			if (config_open_section(p, name, p->lineno) == -1)
				return NULL;
		}
	}
	return str;
}

static int
config_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct config_parse *p = user;
	const struct config_key *k;
	const char *sname;
	char kname[64];
	size_t i;
	int *seen;

	if (p->failed)
		return 0;
	config_clean(kname, sizeof(kname), name);
	if (p->section == -1) {
		config_fail(p, p->lineno, "%s: key outside a section", kname);
		return 0;
	}
	sname = config_sections[p->section].name;
	if (p->pool != -1) {
		for (i = 0; i < NPOOLKEYS; i++)
			if (strcmp(pool_keys[i].key, name) == 0)
				break;
		if (i == NPOOLKEYS) {
			config_fail(p, p->lineno, "[pool.%s] %s: unknown key",
			    p->cfg->pools[p->pool].name, kname);
			return 0;
		}
		k = &pool_keys[i];
		seen = &p->pool_key_line[p->pool][i];
	} else {
		for (i = 0; i < NKEYS; i++)
			if (strcmp(config_keys[i].section, sname) == 0 &&
			    strcmp(config_keys[i].key, name) == 0)
				break;
		if (i == NKEYS) {
			config_fail(p, p->lineno, "[%s] %s: unknown key",
			    sname, kname);
			return 0;
		}
		k = &config_keys[i];
		seen = &p->key_line[i];
	}
	if (*seen != 0) {
		if (p->pool != -1)
			config_fail(p, p->lineno, "[pool.%s] %s: duplicate key "
			    "(first set at line %d)",
			    p->cfg->pools[p->pool].name, name, *seen);
		else
			config_fail(p, p->lineno, "[%s] %s: duplicate key "
			    "(first set at line %d)", sname, name, *seen);
		return 0;
	}
	*seen = p->lineno;
	if (p->pool != -1) {
		char sect[CONFIG_NAME_MAX + 8];

		snprintf(sect, sizeof(sect), "pool.%s",
		    p->cfg->pools[p->pool].name);
		return config_set_key(p, k, sect,
		    (char *)&p->cfg->pools[p->pool] + k->offset, value,
		    p->lineno) == 0;
	}
	(void)section;
	return config_set_key(p, k, sname, (char *)p->cfg + k->offset, value,
	    p->lineno) == 0;
}

static int
config_key_index(const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].key, key) == 0)
			return (int)i;
	return -1;
}

/* The line where section.key was set, else its section's, else 0. */
static int
config_line_of(struct config_parse *p, const char *section, const char *key)
{
	int i = config_key_index(section, key);

	if (i != -1 && p->key_line[i] != 0)
		return p->key_line[i];
	return p->section_line[config_section_index(section)];
}

/*
 * Read the secret of path into buf (size bytes, NUL-terminated), without
 * one trailing newline.  The file is opened without blocking and must be a
 * regular file, so that a FIFO or a device named by mistake cannot hang a
 * reload.  On error put in why what is wrong, never the content.
 */
static int
config_read_secret(const char *path, char *buf, size_t size, char *why,
    size_t whylen)
{
	struct stat st;
	size_t n = 0;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)) ==
	    -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file");
		goto fail;
	}
	if (st.st_size >= (off_t)size) {
		snprintf(why, whylen, "larger than %zu bytes, not a secret",
		    size - 1);
		goto fail;
	}
	/* One byte more than fits, to see a file that grew since fstat. */
	while (n < size) {
		r = read(fd, buf + n, size - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			snprintf(why, whylen, "%s", strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n == size) {
		explicit_bzero(buf, size);
		snprintf(why, whylen, "larger than %zu bytes, not a secret",
		    size - 1);
		return -1;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL) {
		explicit_bzero(buf, size);
		snprintf(why, whylen, "holds a NUL byte");
		return -1;
	}
	return 0;
fail:
	explicit_bzero(buf, size);
	close(fd);
	return -1;
}

/*
 * Each KEY_file set: refuse KEY set as well, read the file, and set KEY
 * from its content with KEY's own checks.  Messages name the key and the
 * path, never the content.
 */
static int
config_secret_files(struct config_parse *p)
{
	const struct config_key *k, *twin;
	char name[64], why[256], buf[CONFIG_SECRET_FILE_MAX + 1];
	const char *path;
	size_t i, len;
	int t, line;

	for (i = 0; i < NKEYS; i++) {
		k = &config_keys[i];
		if (!(k->flags & CF_SECRET_FILE) || p->key_line[i] == 0)
			continue;
		line = p->key_line[i];
		len = strlen(k->key) - strlen("_file");
		snprintf(name, sizeof(name), "%.*s", (int)len, k->key);
		if ((t = config_key_index(k->section, name)) == -1) {
			config_fail(p, line, "[%s] %s: no such secret",
			    k->section, k->key);
			return -1;
		}
		twin = &config_keys[t];
		path = (const char *)p->cfg + k->offset;
		/* Either left empty is unset, as in the example file. */
		if (*path == '\0')
			continue;
		if (p->key_line[t] != 0 &&
		    *((const char *)p->cfg + twin->offset) != '\0') {
			config_fail(p, line, "[%s] %s: %s is set too (line %d); "
			    "set one of them", k->section, k->key, twin->key,
			    p->key_line[t]);
			return -1;
		}
		why[0] = '\0';
		if (config_read_secret(path, buf, sizeof(buf), why,
		    sizeof(why)) == -1) {
			config_fail(p, line, "[%s] %s: %s: %s", k->section,
			    k->key, path, why);
			return -1;
		}
		if (config_set(p, twin, (char *)p->cfg + twin->offset, buf, why,
		    sizeof(why)) == -1) {
			explicit_bzero(buf, sizeof(buf));
			config_fail(p, line, "[%s] %s: the secret in %s %s",
			    k->section, k->key, path, why);
			return -1;
		}
		explicit_bzero(buf, sizeof(buf));
	}
	return 0;
}

/* A file named by section.key, if any, must be there to be read. */
static int
config_check_file(struct config_parse *p, const char *section,
    const char *key, const char *path)
{
	struct stat st;

	if (path[0] == '\0')
		return 0;
	if (stat(path, &st) == -1) {
		config_fail(p, config_line_of(p, section, key), "[%s] %s: %s: "
		    "%s", section, key, path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		config_fail(p, config_line_of(p, section, key), "[%s] %s: %s: "
		    "not a regular file", section, key, path);
		return -1;
	}
	return 0;
}

/* The checks that involve more than one key, once the file is read. */
static int
config_finish(struct config_parse *p)
{
	struct config *cfg = p->cfg;
	char b1[32], b2[32], why[128];
	int i, total, line;

	if (config_secret_files(p) == -1)
		return -1;
	if (p->key_line[config_key_index("digest", "unsubscribe_secret")] ==
	    0 && p->key_line[config_key_index("digest",
	    "unsubscribe_secret_file")] == 0) {
		config_fail(p, 0, "[digest] unsubscribe_secret is required");
		return -1;
	}
	if (cfg->npools == 0) {
		config_fail(p, 0, "[pool.NAME] is required: at least one pool");
		return -1;
	}
	if (cfg->supervisor.restart_backoff_min_ms >
	    cfg->supervisor.restart_backoff_max_ms) {
		line = config_line_of(p, "supervisor", "restart_backoff_min");
		config_fail(p, line, "[supervisor] restart_backoff_min: %s is "
		    "more than restart_backoff_max (%s)",
		    config_fmt_duration(cfg->supervisor.restart_backoff_min_ms,
		    b1, sizeof(b1)),
		    config_fmt_duration(cfg->supervisor.restart_backoff_max_ms,
		    b2, sizeof(b2)));
		return -1;
	}
	if (cfg->smtp.defer_retry_min_ms > cfg->smtp.defer_retry_max_ms) {
		line = config_line_of(p, "smtp", "defer_retry_min");
		config_fail(p, line, "[smtp] defer_retry_min: %s is more than "
		    "defer_retry_max (%s)",
		    config_fmt_duration(cfg->smtp.defer_retry_min_ms, b1,
		    sizeof(b1)),
		    config_fmt_duration(cfg->smtp.defer_retry_max_ms, b2,
		    sizeof(b2)));
		return -1;
	}
	if (cfg->amqp.heartbeat_ms != 0 && cfg->amqp.heartbeat_ms < SEC_MS) {
		config_fail(p, config_line_of(p, "amqp", "heartbeat"),
		    "[amqp] heartbeat: must be 0 (none) or at least 1s");
		return -1;
	}
	if (cfg->redis.host[0] == '\0' && cfg->redis.socket[0] == '\0') {
		config_fail(p, config_line_of(p, "redis", "host"),
		    "[redis] host: host or socket is required");
		return -1;
	}
	if (cfg->transport.type == TRANSPORT_SMTP &&
	    cfg->smtp.host[0] == '\0') {
		config_fail(p, config_line_of(p, "smtp", "host"),
		    "[smtp] host: must not be empty with transport.type = smtp");
		return -1;
	}
	if (cfg->smtp.password[0] != '\0' && cfg->smtp.username[0] == '\0') {
		config_fail(p, config_line_of(p, "smtp", "password"),
		    "[smtp] password: set without username");
		return -1;
	}
	/*
	 * A password must not cross the network in clear: without TLS that
	 * is required, a server that offers no STARTTLS (or an attacker who
	 * strips it from the EHLO reply) would be handed it.
	 */
	if (cfg->smtp.username[0] != '\0' &&
	    cfg->smtp.starttls != STARTTLS_REQUIRED &&
	    !cfg->smtp.allow_plaintext_auth) {
		config_fail(p, config_line_of(p, "smtp", "username"),
		    "[smtp] username: AUTH needs starttls = required, so that "
		    "the password never goes in clear (or allow_plaintext_auth "
		    "= yes)");
		return -1;
	}
	/*
	 * The console pauses queues and deletes dead letters: reachable
	 * from other hosts only when the operator asked for that with an
	 * address that is not loopback and a password.
	 */
	if (cfg->supervisor.console_listen[0] != '\0' &&
	    !config_listen_loopback(cfg->supervisor.console_listen) &&
	    cfg->supervisor.console_password[0] == '\0') {
		config_fail(p, config_line_of(p, "supervisor",
		    "console_listen"), "[supervisor] console_listen: %s is not "
		    "a loopback address: set console_password_file too, or "
		    "listen on 127.0.0.1", cfg->supervisor.console_listen);
		return -1;
	}
	if (config_check_file(p, "smtp", "tls_ca_file",
	    cfg->smtp.tls_ca_file) == -1 ||
	    config_check_file(p, "amqp", "ca_file", cfg->amqp.ca_file) == -1)
		return -1;

	for (i = 0, total = 0; i < cfg->npools; i++) {
		struct pool_config *pc = &cfg->pools[i];

		if (pc->memory_limit != 0 && pc->memory_limit < 16 * MIB) {
			line = p->pool_key_line[i][POOL_KEY_MEMORY_LIMIT];
			if (line == 0)
				line = pc->line;
			config_fail(p, line, "[pool.%s] memory_limit: must be "
			    "0 (none) or at least 16M", pc->name);
			return -1;
		}
		total += pc->workers;
		if (total > CONFIG_WORKERS_MAX) {
			line = p->pool_key_line[i][POOL_KEY_WORKERS];
			if (line == 0)
				line = pc->line;
			config_fail(p, line, "[pool.%s] workers: %d workers in "
			    "all pools, more than %d", pc->name, total,
			    CONFIG_WORKERS_MAX);
			return -1;
		}
	}

	/* digest.from was checked when set; derive its parts. */
	if (config_split_from(cfg->digest.from, cfg->digest.from_addr,
	    cfg->digest.from_domain, why, sizeof(why)) == -1) {
		config_fail(p, config_line_of(p, "digest", "from"),
		    "[digest] from: %s", why);
		return -1;
	}
	if (cfg->smtp.envelope_from[0] == '\0')
		strlcpy(cfg->smtp.envelope_from, cfg->digest.from_addr,
		    sizeof(cfg->smtp.envelope_from));

	/*
	 * A [queue_redis] that names neither host nor socket means "no
	 * dedicated queue Redis", as the shipped example has it: a section
	 * left with only its defaults must not point the queues anywhere.
	 */
	i = config_section_index("queue_redis");
	if (p->section_line[i] != 0 && (cfg->queue_redis.host[0] != '\0' ||
	    cfg->queue_redis.socket[0] != '\0')) {
		cfg->has_queue_redis = 1;
		strlcpy(cfg->queue_redis.key_prefix, cfg->redis.key_prefix,
		    sizeof(cfg->queue_redis.key_prefix));
	} else {
		cfg->has_queue_redis = 0;
		cfg->queue_redis = cfg->redis;
	}
	return 0;
}

/* The directory of file, made absolute against the current directory. */
static int
config_set_dir(struct config *cfg, const char *file)
{
	char d[PATH_MAX], cwd[PATH_MAX];
	char *slash;
	int n;

	if (strlcpy(d, file, sizeof(d)) >= sizeof(d))
		return -1;
	if ((slash = strrchr(d, '/')) == NULL)
		strlcpy(d, ".", sizeof(d));
	else if (slash == d)
		d[1] = '\0';
	else
		*slash = '\0';
	if (d[0] == '/') {
		strlcpy(cfg->dir, d, sizeof(cfg->dir));
		return 0;
	}
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return -1;
	if (strcmp(d, ".") == 0)
		n = snprintf(cfg->dir, sizeof(cfg->dir), "%s", cwd);
	else
		n = snprintf(cfg->dir, sizeof(cfg->dir), "%s/%s",
		    strcmp(cwd, "/") == 0 ? "" : cwd,
		    strncmp(d, "./", 2) == 0 ? d + 2 : d);
	if (n < 0 || (size_t)n >= sizeof(cfg->dir))
		return -1;
	return 0;
}

struct config *
config_load_buffer(const char *file, const char *buf, size_t len, char *err,
    size_t errlen)
{
	struct config_parse *p;
	struct config *cfg;
	size_t i;
	int ret;

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (p = calloc(1, sizeof(*p))) == NULL) {
		free(cfg);
		snprintf(err, errlen, "%s: out of memory", file);
		return NULL;
	}
	p->cfg = cfg;
	p->file = file;
	p->buf = buf;
	p->len = len;
	p->section = -1;
	p->pool = -1;
	p->err = err;
	p->errlen = errlen;
	if (strlcpy(cfg->path, file, sizeof(cfg->path)) >= sizeof(cfg->path) ||
	    config_set_dir(cfg, file) == -1) {
		config_fail(p, 0, "cannot tell the file's directory");
		goto fail;
	}
	for (i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];

		/* calloc made the strings empty already. */
		if (k->def[0] == '\0')
			continue;
		if (config_set_key(p, k, k->section, (char *)cfg + k->offset,
		    k->def, 0) == -1)
			goto fail;
	}
	ret = ini_parse_stream(config_reader, p, config_handler, p);
	/* inih goes on after a syntax error; report whichever came first. */
	if (ret > 0 && p->failed && p->fail_line > ret)
		p->failed = 0;
	if (p->failed)
		goto fail;
	if (ret > 0) {
		config_fail(p, ret, "syntax error: expected [section], "
		    "key = value or a comment");
		goto fail;
	}
	if (ret < 0) {
		config_fail(p, 0, "cannot parse");
		goto fail;
	}
	if (config_finish(p) == -1)
		goto fail;
	explicit_bzero(p, sizeof(*p));
	free(p);
	return cfg;
fail:
	free(p);
	explicit_bzero(cfg, sizeof(*cfg));
	free(cfg);
	return NULL;
}

struct config *
config_load(const char *file, char *err, size_t errlen)
{
	struct config *cfg;
	char *buf;
	size_t n;

	/* Never blocks: a FIFO or a device is refused, not waited on. */
	if (read_regular_file(file, CONFIG_FILE_MAX, &buf, &n, err,
	    errlen) == -1)
		return NULL;
	cfg = config_load_buffer(file, buf, n, err, errlen);
	explicit_bzero(buf, n);
	free(buf);
	return cfg;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	explicit_bzero(cfg, sizeof(*cfg));
	free(cfg);
}

const struct pool_config *
config_pool(const struct config *cfg, const char *name)
{
	int i;

	for (i = 0; i < cfg->npools; i++)
		if (strcmp(cfg->pools[i].name, name) == 0)
			return &cfg->pools[i];
	return NULL;
}

const char *
config_warning(const struct config *cfg, int i)
{
	const char *w[3];
	int n = 0;

	if (cfg->transport.type == TRANSPORT_SMTP &&
	    cfg->smtp.starttls == STARTTLS_REQUIRED && !cfg->smtp.tls_verify)
		w[n++] = "[smtp] tls_verify = no: the server's certificate is "
		    "not verified, so anyone on the path can pose as the "
		    "server and read the mail and the password";
	if (cfg->transport.type == TRANSPORT_SMTP &&
	    cfg->smtp.username[0] != '\0' &&
	    cfg->smtp.starttls != STARTTLS_REQUIRED &&
	    cfg->smtp.allow_plaintext_auth)
		w[n++] = "[smtp] allow_plaintext_auth = yes: the SMTP password "
		    "goes in clear to a server that offers no STARTTLS";
	if (cfg->supervisor.console_listen[0] != '\0' &&
	    !config_listen_loopback(cfg->supervisor.console_listen))
		w[n++] = "[supervisor] console_listen is not a loopback address: "
		    "the console speaks plain HTTP, so its password crosses the "
		    "network in clear unless a TLS proxy stands in front";
	return i >= 0 && i < n ? w[i] : NULL;
}

/* Print help as comment lines, one per line of the text. */
static void
config_print_help(FILE *fp, const char *help)
{
	const char *nl;

	while (help != NULL && *help != '\0') {
		nl = strchr(help, '\n');
		fprintf(fp, "# %.*s\n",
		    nl != NULL ? (int)(nl - help) : (int)strlen(help), help);
		help = nl ? nl + 1 : NULL;
	}
}

/* A key commented out with its default; pool, for a key of [pool.NAME]. */
static void
config_print_key(FILE *fp, const struct config_key *k, const char *pool)
{
	const char *def = (k->flags & CF_POOLNAME) ? pool : k->def;

	config_print_help(fp, k->help);
	fprintf(fp, ";%s =%s%s\n", k->key, def[0] ? " " : "", def);
}

/*
 * The pools of the example: real sections, so that the example runs once
 * its secret is set; they consume the two queues the scheduler fills.
 */
static const char *const config_example_pools[] = {
	CONFIG_QUEUE_PRIORITY, CONFIG_QUEUE_STANDARD
};

void
config_print_example(FILE *fp)
{
	size_t s, i, n;

	fprintf(fp,
	    "# digestd configuration: every key, commented out, with its "
	    "default.\n"
	    "# Generated from the table in common/config.c; do not edit by "
	    "hand, but run\n"
	    "# build/tests/test_config --print-example > "
	    "docs/digestd.conf.example\n"
	    "#\n"
	    "# Durations take ms, s, m, h, d (100ms, 30s, 1h30m); sizes take "
	    "K, M, G\n"
	    "# or are bytes.  Relative paths are relative to this file's "
	    "directory.\n"
	    "# Every section header is real: uncomment a key where it "
	    "stands.  Only\n"
	    "# digest.unsubscribe_secret (or unsubscribe_secret_file) must "
	    "be set, and\n"
	    "# one [pool.NAME] must be present (the two below consume the "
	    "queues the\n"
	    "# scheduler fills).\n");
	for (s = 0; s < NSECTIONS; s++) {
		const char *name = config_sections[s].name;

		fprintf(fp, "\n");
		config_print_help(fp, config_sections[s].help);
		if (strcmp(name, "pool") == 0) {
			for (n = 0; n < sizeof(config_example_pools) /
			    sizeof(config_example_pools[0]); n++) {
				fprintf(fp, "%s[pool.%s]\n", n > 0 ? "\n" : "",
				    config_example_pools[n]);
				for (i = 0; i < NPOOLKEYS; i++)
					config_print_key(fp, &pool_keys[i],
					    config_example_pools[n]);
			}
			continue;
		}
		fprintf(fp, "[%s]\n", name);
		for (i = 0; i < NKEYS; i++)
			if (strcmp(config_keys[i].section, name) == 0)
				config_print_key(fp, &config_keys[i], NULL);
	}
}

/*
 * An AMQP URL with the password of its user part masked: everything from
 * the first ':' after "://" to the last '@' of the URL, so that a password
 * holding '/' or '@' is masked whole (a vhost with a bare '@' loses a bit
 * of itself too, which errs on the safe side).
 */
static void
config_mask_url(const char *url, char *buf, size_t len)
{
	const char *auth, *at, *colon;

	if ((auth = strstr(url, "://")) == NULL) {
		snprintf(buf, len, "%s", CONFIG_MASK);
		return;
	}
	auth += 3;
	if ((at = strrchr(auth, '@')) == NULL) {
		snprintf(buf, len, "%s", url);
		return;
	}
	colon = memchr(auth, ':', (size_t)(at - auth));
	if (colon == NULL)
		colon = at;
	snprintf(buf, len, "%.*s:%s%s", (int)(colon - url), url, CONFIG_MASK,
	    at);
}

/* The value of key k at base, as the file would spell it; secrets masked. */
static const char *
config_fmt_value(const struct config_key *k, const void *base, char *buf,
    size_t len)
{
	const void *v = (const char *)base + k->offset;
	char *dot;
	int t;

	switch (k->type) {
	case CT_SECRET:
		snprintf(buf, len, "%s", *(const char *)v != '\0' ?
		    CONFIG_MASK : "");
		break;
	case CT_AMQP_URL:
		config_mask_url(v, buf, len);
		break;
	case CT_STRING:
	case CT_NAME:
	case CT_PATH:
	case CT_FROM:
	case CT_ADDR:
	case CT_HTTP_URL:
	case CT_LISTEN:
		snprintf(buf, len, "%s", (const char *)v);
		break;
	case CT_INT:
		snprintf(buf, len, "%d", *(const int *)v);
		break;
	case CT_INT64:
		snprintf(buf, len, "%lld", (long long)*(const int64_t *)v);
		break;
	case CT_DURATION:
		config_fmt_duration(*(const int64_t *)v, buf, len);
		break;
	case CT_SIZE:
		config_fmt_size(*(const uint64_t *)v, buf, len);
		break;
	case CT_DOUBLE:
		/* As the parser takes it: digits and at most one dot. */
		snprintf(buf, len, "%.6f", *(const double *)v);
		if ((dot = strchr(buf, '.')) != NULL) {
			for (t = (int)strlen(buf) - 1; buf[t] == '0'; t--)
				buf[t] = '\0';
			if (buf[t] == '.')
				buf[t] = '\0';
		}
		break;
	case CT_ENUM:
		snprintf(buf, len, "%s", k->choices[*(const int *)v]);
		break;
	case CT_TIME:
		t = *(const int *)v;
		snprintf(buf, len, "%02d:%02d", t / 3600, t % 3600 / 60);
		break;
	}
	return buf;
}

static void
config_print_value(FILE *fp, const struct config_key *k, const void *base)
{
	char buf[CONFIG_URL_MAX + 16];

	config_fmt_value(k, base, buf, sizeof(buf));
	/* A key that may not be empty and is not set reads as unset. */
	fprintf(fp, "%s%s =%s%s\n", buf[0] == '\0' && (k->flags & CF_NONEMPTY) ?
	    ";" : "", k->key, buf[0] != '\0' ? " " : "", buf);
}

void
config_print_effective(FILE *fp, const struct config *cfg)
{
	size_t s, i;
	int n;

	fprintf(fp, "# digestd: the effective configuration of %s, defaults "
	    "and derived\n# values included, every path absolute and every "
	    "secret masked.\n", cfg->path);
	for (s = 0; s < NSECTIONS; s++) {
		const char *name = config_sections[s].name;

		if (strcmp(name, "pool") == 0) {
			for (n = 0; n < cfg->npools; n++) {
				fprintf(fp, "\n[pool.%s]\n", cfg->pools[n].name);
				for (i = 0; i < NPOOLKEYS; i++)
					config_print_value(fp, &pool_keys[i],
					    &cfg->pools[n]);
			}
			continue;
		}
		fprintf(fp, "\n");
		if (strcmp(name, "queue_redis") == 0 && !cfg->has_queue_redis) {
			fprintf(fp, "# [queue_redis] is not in use: [redis] "
			    "serves the queues too.\n");
			continue;
		}
		fprintf(fp, "[%s]\n", name);
		for (i = 0; i < NKEYS; i++)
			if (strcmp(config_keys[i].section, name) == 0)
				config_print_value(fp, &config_keys[i], cfg);
	}
}

const char *
config_default_path(void)
{
	const char *env = getenv("DIGESTD_CONFIG");

	if (env != NULL && *env != '\0')
		return env;
	return CONFIG_DEFAULT_PATH;
}
