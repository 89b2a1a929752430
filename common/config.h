/*
 * The configuration: one struct for the whole file, filled from a table of
 * keys (config.c) that holds each key's type, bounds, default and help.
 *
 * The struct holds no pointers: a config is copied by assignment, freed
 * with config_free() (which wipes the secrets first), and a reload builds a
 * new one beside the old and swaps only when the new one is valid.
 * Durations are milliseconds, sizes bytes.
 *
 * A secret (a password, the unsubscribe key) may come from a file named by
 * its *_file twin: the file is read when the config is loaded, so the
 * secret ends up in the same member either way.
 */
#ifndef DIGESTD_CONFIG_H
#define DIGESTD_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_POOLS 8
#define CONFIG_NAME_MAX 64
#define CONFIG_STR_MAX 256
#define CONFIG_URL_MAX 1024

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };
enum log_format { LOG_FORMAT_LOGFMT, LOG_FORMAT_JSON };
enum queue_backend_type { QUEUE_BACKEND_REDIS, QUEUE_BACKEND_AMQP };
enum transport_type {
	TRANSPORT_SMTP,
	TRANSPORT_AMQP,
	TRANSPORT_MAILDIR,
	TRANSPORT_N
};
enum starttls_mode { STARTTLS_OFF, STARTTLS_OPTIONAL, STARTTLS_REQUIRED };

struct redis_config {
	char host[CONFIG_STR_MAX];
	int port;
	char socket[PATH_MAX];		/* absolute after loading; "" if unset */
	char password[CONFIG_STR_MAX];
	char password_file[PATH_MAX];	/* where password was read, or "" */
	int db;
	char key_prefix[CONFIG_STR_MAX]; /* [redis] only; [queue_redis] copies it */
	int64_t timeout_ms;
};

struct pool_config {
	char name[CONFIG_NAME_MAX];	/* NAME of [pool.NAME] */
	char queue[CONFIG_NAME_MAX];	/* default: NAME */
	int workers;
	uint64_t memory_limit;		/* bytes, 0: none */
	int64_t max_jobs;		/* 0: never recycle */
	int64_t job_timeout_ms;
	int line;			/* line of the section header */
};

struct config {
	char path[PATH_MAX];		/* the file, as given */
	char dir[PATH_MAX];		/* its directory, for relative paths */

	struct {
		char listen[CONFIG_STR_MAX];	/* host:port or [v6]:port */
		int64_t drain_timeout_ms;
		int64_t stall_timeout_ms;
		int64_t restart_backoff_min_ms;
		int64_t restart_backoff_max_ms;
		int log_level;			/* enum log_level */
		int log_format;			/* enum log_format */
		char log_file[PATH_MAX];	/* "" for stderr */
		int core_dumps;			/* 0: no core, not dumpable */
		char user[CONFIG_NAME_MAX];
		int http_max_connections;
		/* The web console: host:port, "" off. */
		char console_listen[CONFIG_STR_MAX];
		char console_password[CONFIG_STR_MAX];	/* "": no auth */
		char console_password_file[PATH_MAX];
		/* One-click unsubscribe: host:port, "" off. */
		char unsubscribe_listen[CONFIG_STR_MAX];
	} supervisor;

	struct redis_config redis;
	int has_queue_redis;		/* [queue_redis] present */
	struct redis_config queue_redis; /* == redis when absent */

	struct {
		int backend;			/* enum queue_backend_type */
		int max_attempts;
		int64_t visibility_timeout_ms;
	} queue;

	struct {
		char url[CONFIG_URL_MAX];
		int64_t heartbeat_ms;
		int prefetch;
		char ca_file[PATH_MAX];		/* amqps://; "": system store */
	} amqp;

	int npools;
	struct pool_config pools[CONFIG_MAX_POOLS];

	struct {
		char from[CONFIG_STR_MAX];		/* "Name <addr>" */
		char from_addr[CONFIG_STR_MAX];		/* addr, derived */
		char from_domain[CONFIG_STR_MAX];	/* domain of addr, derived */
		int max_posts;
		int64_t inactive_after_ms;
		int64_t large_group_threshold;
		int batch_size;
		char unsubscribe_url[CONFIG_URL_MAX];
		char unsubscribe_secret[CONFIG_STR_MAX];
		char unsubscribe_secret_file[PATH_MAX];
		char template_dir[PATH_MAX];
	} digest;

	struct {
		int day_start_s;		/* seconds after 00:00 UTC */
		double priority_threshold;
		int64_t shard_size;
	} schedule;

	struct {
		int type;			/* enum transport_type */
	} transport;

	struct {
		char host[CONFIG_STR_MAX];
		int port;
		int starttls;			/* enum starttls_mode */
		int tls_verify;			/* check chain and host name */
		char tls_ca_file[PATH_MAX];	/* "": the system's store */
		char username[CONFIG_STR_MAX];
		char password[CONFIG_STR_MAX];
		char password_file[PATH_MAX];
		int allow_plaintext_auth;	/* AUTH outside TLS allowed */
		int messages_per_session;
		char envelope_from[CONFIG_STR_MAX]; /* digest.from_addr if unset */
		int64_t defer_retry_min_ms;	/* a 4xx recipient's first retry */
		int64_t defer_retry_max_ms;	/* the delay doubles up to this */
		int64_t defer_give_up_ms;	/* after its first 4xx: rejected */
	} smtp;

	struct {
		char path[PATH_MAX];
	} maildir;

	struct {
		char exchange[CONFIG_STR_MAX];
		char routing_key[CONFIG_STR_MAX];
	} amqp_out;
};

/* The queues `digestctl schedule` fills, by engagement score. */
#define CONFIG_QUEUE_PRIORITY "priority"
#define CONFIG_QUEUE_STANDARD "standard"

/* The shortest unsubscribe_secret: with a shorter key tokens are forgeable. */
#define CONFIG_SECRET_MIN 32

/*
 * Load and validate FILE into a new config, reading the secret files it
 * names.  On error return NULL and put "FILE:LINE: message naming the key"
 * (or "FILE: [section] key is required") in err.  The result is freed with
 * config_free().
 */
struct config *config_load(const char *file, char *err, size_t errlen);

/* Load from a buffer; file names the buffer in messages (fuzzing, tests). */
struct config *config_load_buffer(const char *file, const char *buf,
    size_t len, char *err, size_t errlen);

/* Wipe cfg, secrets included, and free it; NULL is a no-op. */
void config_free(struct config *cfg);

/* The pool named NAME, or NULL. */
const struct pool_config *config_pool(const struct config *, const char *name);

/* Parsers shared with the command line; 0 on success, -1 on a bad value. */
int config_parse_duration(const char *s, int64_t *ms);
int config_parse_size(const char *s, uint64_t *bytes);

/*
 * The i-th setting of cfg that weakens security on purpose, as a sentence
 * for a warning at start and on reload; NULL after the last.
 */
const char *config_warning(const struct config *, int i);

/*
 * Print every key with its default and help, as an example file: every
 * section header real, every key commented out.
 */
void config_print_example(FILE *fp);

/* What a masked secret reads as in config_print_effective(). */
#define CONFIG_MASK "********"

/*
 * Print cfg as a configuration file, every key of the table with the value
 * in effect (defaults, derived values and absolute paths included): the
 * value of a secret is CONFIG_MASK when set, the password of amqp.url too;
 * a *_file key shows its path, never what the file holds.
 */
void config_print_effective(FILE *fp, const struct config *cfg);

/* The file the build was configured with, unless the Makefile says. */
#ifndef CONFIG_DEFAULT_PATH
#define CONFIG_DEFAULT_PATH "/etc/digestd/digestd.conf"
#endif

/* The file to read without -c: $DIGESTD_CONFIG, else CONFIG_DEFAULT_PATH. */
const char *config_default_path(void);

#endif
