/*
 * Unit tests for the configuration parser: the defaults, every kind of
 * error and its message, durations and sizes, relative paths, the
 * [queue_redis] rules, that docs/digestd.conf.example is exactly what
 * config_print_example prints and loads as it stands once its secret is
 * set, and that the effective configuration (digestd -T) masks every
 * secret and reads back as the same configuration.
 *
 * `test_config --print-example` prints the example file, to regenerate
 * docs/digestd.conf.example after a change to the table.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"

#define EXAMPLE_PATH "docs/digestd.conf.example"

/* The least a config needs. */
#define KEY "s3cret-s3cret-s3cret-s3cret-s3cret"
#define MINIMAL "[digest]\nunsubscribe_secret = " KEY "\n[pool.standard]\n"

static char errbuf[1024];

static struct config *
load(const char *text)
{
	errbuf[0] = '\0';
	return config_load_buffer("/etc/digestd/t.conf", text, strlen(text),
	    errbuf, sizeof(errbuf));
}

/* text must fail with exactly want. */
static void
fails(const char *text, const char *want)
{
	struct config *cfg = load(text);

	if (cfg != NULL)
		fail_msg("loaded, wanted: %s\n--\n%s", want, text);
	assert_string_equal(errbuf, want);
}

/* MINIMAL followed by more must fail with exactly want. */
static void
fails_with(const char *more, const char *want)
{
	char text[4096];

	snprintf(text, sizeof(text), "%s%s", MINIMAL, more);
	fails(text, want);
}

/* MINIMAL followed by more must load. */
static struct config *
loads_with(const char *more)
{
	char text[4096];
	struct config *cfg;

	snprintf(text, sizeof(text), "%s%s", MINIMAL, more);
	if ((cfg = load(text)) == NULL)
		fail_msg("did not load: %s\n--\n%s", errbuf, text);
	return cfg;
}

static void
test_defaults(void **state)
{
	struct config *cfg = load(MINIMAL);

	(void)state;
	assert_non_null(cfg);
	assert_string_equal(cfg->path, "/etc/digestd/t.conf");
	assert_string_equal(cfg->dir, "/etc/digestd");

	assert_string_equal(cfg->supervisor.listen, "127.0.0.1:9187");
	assert_int_equal(cfg->supervisor.drain_timeout_ms, 60000);
	assert_int_equal(cfg->supervisor.stall_timeout_ms, 120000);
	assert_int_equal(cfg->supervisor.restart_backoff_min_ms, 100);
	assert_int_equal(cfg->supervisor.restart_backoff_max_ms, 30000);
	assert_int_equal(cfg->supervisor.log_level, LOG_LEVEL_INFO);
	assert_int_equal(cfg->supervisor.log_format, LOG_FORMAT_LOGFMT);
	assert_string_equal(cfg->supervisor.log_file, "");
	assert_string_equal(cfg->supervisor.user, "");

	assert_string_equal(cfg->redis.host, "127.0.0.1");
	assert_int_equal(cfg->redis.port, 6379);
	assert_string_equal(cfg->redis.socket, "");
	assert_string_equal(cfg->redis.password, "");
	assert_int_equal(cfg->redis.db, 0);
	assert_string_equal(cfg->redis.key_prefix, "");
	assert_int_equal(cfg->redis.timeout_ms, 2000);
	assert_int_equal(cfg->has_queue_redis, 0);
	assert_memory_equal(&cfg->queue_redis, &cfg->redis,
	    sizeof(cfg->redis));

	assert_int_equal(cfg->queue.backend, QUEUE_BACKEND_REDIS);
	assert_int_equal(cfg->queue.max_attempts, 3);
	assert_int_equal(cfg->queue.visibility_timeout_ms, 600000);

	assert_string_equal(cfg->amqp.url,
	    "amqp://guest:guest@127.0.0.1:5672/%2F");
	assert_int_equal(cfg->amqp.heartbeat_ms, 30000);
	assert_int_equal(cfg->amqp.prefetch, 1);

	assert_int_equal(cfg->npools, 1);
	assert_string_equal(cfg->pools[0].name, "standard");
	assert_string_equal(cfg->pools[0].queue, "standard");
	assert_int_equal(cfg->pools[0].workers, 4);
	assert_int_equal(cfg->pools[0].memory_limit, 256 * 1024 * 1024);
	assert_int_equal(cfg->pools[0].max_jobs, 10000);
	assert_int_equal(cfg->pools[0].job_timeout_ms, 15 * 60000);
	assert_int_equal(cfg->pools[0].line, 3);

	assert_string_equal(cfg->digest.from, "Groups <digest@example.com>");
	assert_string_equal(cfg->digest.from_addr, "digest@example.com");
	assert_string_equal(cfg->digest.from_domain, "example.com");
	assert_int_equal(cfg->digest.max_posts, 10);
	assert_int_equal(cfg->digest.inactive_after_ms, 90LL * 86400000);
	assert_int_equal(cfg->digest.large_group_threshold, 10000);
	assert_int_equal(cfg->digest.batch_size, 500);
	assert_string_equal(cfg->digest.unsubscribe_url,
	    "https://example.com/unsubscribe");
	assert_string_equal(cfg->digest.unsubscribe_secret, KEY);
	assert_string_equal(cfg->digest.template_dir, "");

	assert_int_equal(cfg->schedule.day_start_s, 0);
	assert_true(cfg->schedule.priority_threshold == 50.0);
	assert_int_equal(cfg->schedule.shard_size, 50000);

	assert_int_equal(cfg->transport.type, TRANSPORT_SMTP);
	assert_string_equal(cfg->smtp.host, "127.0.0.1");
	assert_int_equal(cfg->smtp.port, 25);
	assert_int_equal(cfg->smtp.starttls, STARTTLS_OPTIONAL);
	assert_string_equal(cfg->smtp.username, "");
	assert_string_equal(cfg->smtp.password, "");
	assert_int_equal(cfg->smtp.messages_per_session, 500);
	assert_string_equal(cfg->smtp.envelope_from, "digest@example.com");

	assert_string_equal(cfg->maildir.path, "/etc/digestd/var/outbox");
	assert_string_equal(cfg->amqp_out.exchange, "digest.email");
	assert_string_equal(cfg->amqp_out.routing_key, "email");

	assert_ptr_equal(config_pool(cfg, "standard"), &cfg->pools[0]);
	assert_null(config_pool(cfg, "priority"));
	free(cfg);
}

/* The example in docs/design.md#configuration, with its two blanks filled. */
static const char spec_example[] =
    "[supervisor]\n"
    "listen = 127.0.0.1:9187          ; HTTP for /metrics, /healthz, /status\n"
    "drain_timeout = 60s\n"
    "stall_timeout = 120s\n"
    "restart_backoff_min = 100ms\n"
    "restart_backoff_max = 30s\n"
    "log_level = info                 ; debug | info | warn | error\n"
    "log_format = logfmt              ; logfmt | json\n"
    "log_file =                       ; empty: stderr\n"
    "user =                           ; drop privileges\n"
    "\n"
    "[redis]                          ; the activity store\n"
    "host = 127.0.0.1\n"
    "port = 6379\n"
    "socket =                         ; unix socket path\n"
    "password =\n"
    "db = 0\n"
    "key_prefix =\n"
    "timeout = 2s\n"
    "\n"
    "[queue_redis]                    ; optional\n"
    "host = 10.0.0.5                  ; (the seed's own priority-queue Redis)\n"
    "port = 6379                      ; when the section is absent\n"
    "socket =\n"
    "password =\n"
    "db = 0\n"
    "timeout = 2s\n"
    "\n"
    "[queue]\n"
    "backend = redis                  ; redis | amqp\n"
    "max_attempts = 3\n"
    "visibility_timeout = 10m         ; redis: reclaimed\n"
    "\n"
    "[amqp]                           ; used when amqp\n"
    "url = amqp://guest:guest@127.0.0.1:5672/%2F\n"
    "heartbeat = 30s\n"
    "prefetch = 1\n"
    "\n"
    "[pool.priority]\n"
    "queue = priority\n"
    "workers = 4\n"
    "memory_limit = 256M\n"
    "max_jobs = 10000\n"
    "job_timeout = 15m\n"
    "\n"
    "[pool.standard]\n"
    "queue = standard\n"
    "workers = 8\n"
    "memory_limit = 256M\n"
    "\n"
    "[digest]\n"
    "from = Groups <digest@example.com>\n"
    "max_posts = 10\n"
    "inactive_after = 90d\n"
    "large_group_threshold = 10000    ; inactive members are skipped\n"
    "batch_size = 500                 ; members read and sent per batch\n"
    "unsubscribe_url = https://example.com/unsubscribe\n"
    "unsubscribe_secret = k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y ; HMAC key\n"
    "template_dir =                   ; empty: built-in templates\n"
    "\n"
    "[schedule]\n"
    "day_start = 00:00                ; UTC time of day\n"
    "priority_threshold = 50          ; engagement score\n"
    "shard_size = 50000               ; members per job\n"
    "\n"
    "[transport]\n"
    "type = smtp                      ; smtp | amqp | maildir\n"
    "\n"
    "[smtp]\n"
    "host = 127.0.0.1\n"
    "port = 25\n"
    "starttls = optional              ; off | optional | required\n"
    "username =\n"
    "password =\n"
    "messages_per_session = 500\n"
    "envelope_from =                  ; MAIL FROM\n"
    "\n"
    "[maildir]\n"
    "path = ./var/outbox\n"
    "\n"
    "[amqp_out]\n"
    "exchange = digest.email\n"
    "routing_key = email\n";

static void
test_spec_example(void **state)
{
	struct config *cfg = load(spec_example);

	(void)state;
	if (cfg == NULL)
		fail_msg("%s", errbuf);
	assert_string_equal(cfg->supervisor.log_file, "");
	assert_string_equal(cfg->supervisor.user, "");
	assert_int_equal(cfg->has_queue_redis, 1);
	assert_string_equal(cfg->queue_redis.host, "10.0.0.5");
	assert_string_equal(cfg->redis.host, "127.0.0.1");
	assert_int_equal(cfg->npools, 2);
	assert_string_equal(cfg->pools[0].name, "priority");
	assert_int_equal(cfg->pools[0].line, 39);
	assert_string_equal(cfg->pools[1].name, "standard");
	assert_int_equal(cfg->pools[1].workers, 8);
	assert_int_equal(cfg->pools[1].max_jobs, 10000);
	assert_string_equal(cfg->digest.unsubscribe_secret,
	    "k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y");
	assert_string_equal(cfg->digest.template_dir, "");
	assert_string_equal(cfg->smtp.envelope_from, "digest@example.com");
	free(cfg);
}

static void
test_values(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = loads_with(
	    "[supervisor]\n"
	    "listen = [::1]:9000\n"
	    "log_level = debug\n"
	    "log_format = json\n"
	    "drain_timeout = 0\n"
	    "restart_backoff_min = 1m30s\n"
	    "restart_backoff_max = 2h\n"
	    "[queue]\n"
	    "backend = amqp\n"
	    "[transport]\n"
	    "type = maildir\n"
	    "[smtp]\n"
	    "host =\n"
	    "starttls = required\n"
	    "username = bob\n"
	    "password = pw\n"
	    "envelope_from = bounces@mail.example.org\n"
	    "[schedule]\n"
	    "day_start = 23:59\n"
	    "priority_threshold = 12.5\n"
	    "[digest]\n"
	    "from = digest@lists.example.net\n"
	    "[amqp]\n"
	    "url = amqps://u:p@rabbit.local:5671/vh\n"
	    "heartbeat = 0\n"
	    "[pool.standard]\n"
	    "queue = std.queue-1\n"
	    "memory_limit = 0\n"
	    "max_jobs = 0\n");
	assert_string_equal(cfg->supervisor.listen, "[::1]:9000");
	assert_int_equal(cfg->supervisor.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg->supervisor.log_format, LOG_FORMAT_JSON);
	assert_int_equal(cfg->supervisor.drain_timeout_ms, 0);
	assert_int_equal(cfg->supervisor.restart_backoff_min_ms, 90000);
	assert_int_equal(cfg->queue.backend, QUEUE_BACKEND_AMQP);
	assert_int_equal(cfg->transport.type, TRANSPORT_MAILDIR);
	assert_int_equal(cfg->smtp.starttls, STARTTLS_REQUIRED);
	assert_string_equal(cfg->smtp.envelope_from,
	    "bounces@mail.example.org");
	assert_int_equal(cfg->schedule.day_start_s, 23 * 3600 + 59 * 60);
	assert_true(cfg->schedule.priority_threshold == 12.5);
	assert_string_equal(cfg->digest.from_addr, "digest@lists.example.net");
	assert_string_equal(cfg->digest.from_domain, "lists.example.net");
	assert_int_equal(cfg->amqp.heartbeat_ms, 0);
	assert_string_equal(cfg->pools[0].queue, "std.queue-1");
	assert_int_equal(cfg->pools[0].memory_limit, 0);
	assert_int_equal(cfg->pools[0].max_jobs, 0);
	free(cfg);
}

/* CRLF, a BOM, indented keys, comments of both kinds, blank lines. */
static void
test_syntax(void **state)
{
	static const char text[] =
	    "\xef\xbb\xbf# a comment\r\n"
	    "; another\r\n"
	    "\r\n"
	    "[digest]\r\n"
	    "    unsubscribe_secret = a;b-0123456789-0123456789-0123456789 ; "
	    "the ; with no blank is kept\r\n"
	    "\tmax_posts = 7\r\n"
	    "  [pool.p1]\r\n"
	    "  workers=2\r\n"
	    "[redis]\n"
	    "key_prefix = app:\n";
	struct config *cfg = load(text);

	(void)state;
	if (cfg == NULL)
		fail_msg("%s", errbuf);
	assert_string_equal(cfg->digest.unsubscribe_secret,
	    "a;b-0123456789-0123456789-0123456789");
	assert_int_equal(cfg->digest.max_posts, 7);
	assert_int_equal(cfg->pools[0].workers, 2);
	assert_int_equal(cfg->pools[0].line, 7);
	assert_string_equal(cfg->redis.key_prefix, "app:");
	assert_string_equal(cfg->queue_redis.key_prefix, "app:");
	free(cfg);

	/* The line numbers count the lines before and after the BOM alike. */
	fails("\xef\xbb\xbf\n[digest]\nunsubscribe_secret = " KEY "\n\n[nope]\n",
	    "/etc/digestd/t.conf:5: [nope]: unknown section");
}

static void
test_pools(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = loads_with("[pool.priority]\nqueue = fast\nworkers = 2\n"
	    "[pool.b_2-x]\n[pool.standard]\nworkers = 9\n");
	assert_int_equal(cfg->npools, 3);
	assert_string_equal(cfg->pools[0].name, "standard");
	assert_int_equal(cfg->pools[0].workers, 9);
	assert_int_equal(cfg->pools[0].line, 3);
	assert_string_equal(cfg->pools[1].name, "priority");
	assert_string_equal(cfg->pools[1].queue, "fast");
	assert_string_equal(cfg->pools[2].name, "b_2-x");
	assert_string_equal(cfg->pools[2].queue, "b_2-x");
	assert_int_equal(cfg->pools[2].workers, 4);
	assert_ptr_equal(config_pool(cfg, "priority"), &cfg->pools[1]);
	free(cfg);

	/* Eight pools, and 100 workers in all, are the most. */
	cfg = loads_with("[pool.a]\nworkers=20\n[pool.b]\nworkers=20\n"
	    "[pool.c]\nworkers=20\n[pool.d]\nworkers=10\n[pool.e]\nworkers=10\n"
	    "[pool.f]\nworkers=8\n[pool.g]\nworkers=8\n");
	assert_int_equal(cfg->npools, CONFIG_MAX_POOLS);
	free(cfg);
	fails_with("[pool.a]\n[pool.b]\n[pool.c]\n[pool.d]\n[pool.e]\n"
	    "[pool.f]\n[pool.g]\n[pool.h]\n",
	    "/etc/digestd/t.conf:11: [pool.h]: too many pools (at most 8)");
	fails_with("[pool.a]\nworkers=50\n[pool.b]\nworkers = 50\n",
	    "/etc/digestd/t.conf:7: [pool.b] workers: 104 workers in all "
	    "pools, more than 100");
	fails_with("[pool.a]\nworkers=93\n[pool.b]\n",
	    "/etc/digestd/t.conf:6: [pool.b] workers: 101 workers in all "
	    "pools, more than 100");
	fails_with("[pool.Big]\n", "/etc/digestd/t.conf:4: [pool.Big]: a pool "
	    "name may hold only a-z, 0-9, '_' and '-'");
	fails_with("[pool.]\n", "/etc/digestd/t.conf:4: [pool.]: a pool "
	    "name may hold only a-z, 0-9, '_' and '-'");
	fails_with("[pool.a.b]\n", "/etc/digestd/t.conf:4: [pool.a.b]: a pool "
	    "name may hold only a-z, 0-9, '_' and '-'");
	fails_with("[pool]\n", "/etc/digestd/t.conf:4: [pool]: unknown section "
	    "(pools are [pool.NAME])");
	fails_with("[pool.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaa]\n", "/etc/digestd/t.conf:4: "
	    "[pool.aaaaaaaaaaaaaaaa...]: pool name longer than 63 characters");
	fails_with("[pool.standard]\nworkers = 2\n[pool.standard]\nworkers = 3\n",
	    "/etc/digestd/t.conf:7: [pool.standard] workers: duplicate key "
	    "(first set at line 5)");
	fails_with("[pool.x]\nthreads = 2\n",
	    "/etc/digestd/t.conf:5: [pool.x] threads: unknown key");
	fails_with("[pool.x]\nworkers = 0\n",
	    "/etc/digestd/t.conf:5: [pool.x] workers: \"0\" is out of range "
	    "(1 to 100)");
	fails_with("[pool.x]\nqueue = a/b\n",
	    "/etc/digestd/t.conf:5: [pool.x] queue: \"a/b\" may hold only "
	    "A-Z, a-z, 0-9, '.', '_' and '-'");
	fails_with("[pool.x]\nqueue =\n",
	    "/etc/digestd/t.conf:5: [pool.x] queue: must not be empty");
	fails_with("[pool.x]\nmemory_limit = 1M\n",
	    "/etc/digestd/t.conf:5: [pool.x] memory_limit: must be 0 (none) "
	    "or at least 16M");
	fails_with("[pool.x]\njob_timeout = 0\n",
	    "/etc/digestd/t.conf:5: [pool.x] job_timeout: \"0\" is out of "
	    "range (1s to 7d)");
	fails("[digest]\nunsubscribe_secret = " KEY "\n",
	    "/etc/digestd/t.conf: [pool.NAME] is required: at least one pool");
}

static void
test_structure_errors(void **state)
{
	(void)state;
	fails_with("[redsi]\nhost = x\n",
	    "/etc/digestd/t.conf:4: [redsi]: unknown section");
	fails_with("[redis]\nhots = x\n",
	    "/etc/digestd/t.conf:5: [redis] hots: unknown key");
	fails_with("[queue_redis]\nhost = q\nkey_prefix = p\n",
	    "/etc/digestd/t.conf:6: [queue_redis] key_prefix: unknown key");
	fails("port = 1\n[digest]\n",
	    "/etc/digestd/t.conf:1: port: key outside a section");
	fails_with("[redis]\nport = 1\nport = 2\n",
	    "/etc/digestd/t.conf:6: [redis] port: duplicate key (first set "
	    "at line 5)");
	/* A section may be opened again, but a key is still set once. */
	fails_with("[redis]\nport = 1\n[smtp]\n[redis]\nport = 2\n",
	    "/etc/digestd/t.conf:8: [redis] port: duplicate key (first set "
	    "at line 5)");
	fails_with("[redis]\njust words\n",
	    "/etc/digestd/t.conf:5: syntax error: expected [section], "
	    "key = value or a comment");
	fails_with("[redis\n",
	    "/etc/digestd/t.conf:4: syntax error: expected [section], "
	    "key = value or a comment");
	/* The first error is the one reported, whoever found it. */
	fails_with("[redis]\njust words\nhots = 1\n",
	    "/etc/digestd/t.conf:5: syntax error: expected [section], "
	    "key = value or a comment");
	fails_with("[redis]\nhots = 1\njust words\n",
	    "/etc/digestd/t.conf:5: [redis] hots: unknown key");
	fails_with("[redis] host = x\n",
	    "/etc/digestd/t.conf:4: text after the section header");
	/* Control characters are not echoed as they are. */
	fails_with("[re\x1b[2Jdis]\n",
	    "/etc/digestd/t.conf:4: [re?[2Jdis]: unknown section");
}

static void
test_long_line(void **state)
{
	static const char nul_text[] = MINIMAL "[redis]\nhost = a\0b\n";
	char more[400];

	(void)state;
	memset(more, 'x', sizeof(more));
	memcpy(more, "[smtp]\nhost = ", 14);
	/* host = and 192 x: 199 characters, the longest line inih takes. */
	more[7 + 199] = '\n';
	more[7 + 200] = '\0';
	free(loads_with(more));
	more[7 + 199] = 'x';
	more[7 + 200] = '\n';
	more[7 + 201] = '\0';
	fails_with(more,
	    "/etc/digestd/t.conf:5: line is longer than 199 characters");
	/* Also as the last line, without a newline. */
	more[7 + 200] = '\0';
	fails_with(more,
	    "/etc/digestd/t.conf:5: line is longer than 199 characters");

	assert_null(config_load_buffer("t.conf", nul_text, sizeof(nul_text) - 1,
	    errbuf, sizeof(errbuf)));
	assert_string_equal(errbuf, "t.conf:5: line holds a NUL byte");
}

static void
test_value_errors(void **state)
{
	(void)state;
	/* Durations. */
	fails_with("[supervisor]\ndrain_timeout = abc\n",
	    "/etc/digestd/t.conf:5: [supervisor] drain_timeout: \"abc\" is not "
	    "a duration (a number with ms, s, m, h or d, e.g. 30s)");
	fails_with("[supervisor]\ndrain_timeout = 10\n",
	    "/etc/digestd/t.conf:5: [supervisor] drain_timeout: \"10\" is not "
	    "a duration (a number with ms, s, m, h or d, e.g. 30s)");
	fails_with("[supervisor]\ndrain_timeout =\n",
	    "/etc/digestd/t.conf:5: [supervisor] drain_timeout: empty value is "
	    "not a duration (a number with ms, s, m, h or d, e.g. 30s)");
	fails_with("[supervisor]\nstall_timeout = 500ms\n",
	    "/etc/digestd/t.conf:5: [supervisor] stall_timeout: \"500ms\" is "
	    "out of range (1s to 1d)");
	fails_with("[supervisor]\nrestart_backoff_min = 1m\n"
	    "restart_backoff_max = 10s\n",
	    "/etc/digestd/t.conf:5: [supervisor] restart_backoff_min: 1m is "
	    "more than restart_backoff_max (10s)");
	fails_with("[amqp]\nheartbeat = 500ms\n",
	    "/etc/digestd/t.conf:5: [amqp] heartbeat: must be 0 (none) or at "
	    "least 1s");
	/* Sizes. */
	fails_with("[pool.x]\nmemory_limit = 12X\n",
	    "/etc/digestd/t.conf:5: [pool.x] memory_limit: \"12X\" is not a "
	    "size (bytes, or a number with K, M or G)");
	fails_with("[pool.x]\nmemory_limit = 2000G\n",
	    "/etc/digestd/t.conf:5: [pool.x] memory_limit: \"2000G\" is out of "
	    "range (0 to 1024G)");
	/* Integers. */
	fails_with("[redis]\nport = 65536\n",
	    "/etc/digestd/t.conf:5: [redis] port: \"65536\" is out of range "
	    "(1 to 65535)");
	fails_with("[redis]\nport = 0x10\n",
	    "/etc/digestd/t.conf:5: [redis] port: \"0x10\" is not a whole "
	    "number");
	fails_with("[redis]\ndb = -1\n",
	    "/etc/digestd/t.conf:5: [redis] db: \"-1\" is not a whole number");
	fails_with("[digest]\nbatch_size = 0\n",
	    "/etc/digestd/t.conf:5: [digest] batch_size: \"0\" is out of range "
	    "(1 to 100000)");
	fails_with("[schedule]\nshard_size = 0\n",
	    "/etc/digestd/t.conf:5: [schedule] shard_size: \"0\" is less than "
	    "1");
	fails_with("[schedule]\nshard_size = 99999999999999999999\n",
	    "/etc/digestd/t.conf:5: [schedule] shard_size: "
	    "\"99999999999999999999\" is not a whole number");
	fails_with("[queue]\nmax_attempts = 0\n",
	    "/etc/digestd/t.conf:5: [queue] max_attempts: \"0\" is out of range "
	    "(1 to 1000)");
	/* Numbers with a fraction. */
	fails_with("[schedule]\npriority_threshold = -1\n",
	    "/etc/digestd/t.conf:5: [schedule] priority_threshold: \"-1\" is "
	    "not a number (e.g. 50 or 12.5)");
	fails_with("[schedule]\npriority_threshold = inf\n",
	    "/etc/digestd/t.conf:5: [schedule] priority_threshold: \"inf\" is "
	    "not a number (e.g. 50 or 12.5)");
	fails_with("[schedule]\npriority_threshold = 1.2.3\n",
	    "/etc/digestd/t.conf:5: [schedule] priority_threshold: \"1.2.3\" "
	    "is not a number (e.g. 50 or 12.5)");
	/* Enumerations. */
	fails_with("[supervisor]\nlog_level = verbose\n",
	    "/etc/digestd/t.conf:5: [supervisor] log_level: \"verbose\" is not "
	    "one of debug | info | warn | error");
	fails_with("[supervisor]\nlog_format = text\n",
	    "/etc/digestd/t.conf:5: [supervisor] log_format: \"text\" is not "
	    "one of logfmt | json");
	fails_with("[queue]\nbackend = kafka\n",
	    "/etc/digestd/t.conf:5: [queue] backend: \"kafka\" is not one of "
	    "redis | amqp");
	fails_with("[transport]\ntype = SMTP\n",
	    "/etc/digestd/t.conf:5: [transport] type: \"SMTP\" is not one of "
	    "smtp | amqp | maildir");
	fails_with("[smtp]\nstarttls = yes\n",
	    "/etc/digestd/t.conf:5: [smtp] starttls: \"yes\" is not one of "
	    "off | optional | required");
	/* Time of day. */
	fails_with("[schedule]\nday_start = 24:00\n",
	    "/etc/digestd/t.conf:5: [schedule] day_start: \"24:00\" is not a "
	    "time of day (HH:MM, 00:00 to 23:59)");
	fails_with("[schedule]\nday_start = 7:00\n",
	    "/etc/digestd/t.conf:5: [schedule] day_start: \"7:00\" is not a "
	    "time of day (HH:MM, 00:00 to 23:59)");
	fails_with("[schedule]\nday_start = 07:60\n",
	    "/etc/digestd/t.conf:5: [schedule] day_start: \"07:60\" is not a "
	    "time of day (HH:MM, 00:00 to 23:59)");
	/* Strings. */
	fails_with("[redis]\nkey_prefix = a\tb\n",
	    "/etc/digestd/t.conf:5: [redis] key_prefix: \"a?b\" has a control "
	    "character");
	fails_with("[amqp_out]\nexchange =\n",
	    "/etc/digestd/t.conf:5: [amqp_out] exchange: must not be empty");
	fails_with("[digest]\nunsubscribe_url = ftp://x/u\n",
	    "/etc/digestd/t.conf:5: [digest] unsubscribe_url: \"ftp://x/u\" is "
	    "not an http:// or https:// URL");
	fails_with("[digest]\nunsubscribe_url = https://x/u u\n",
	    "/etc/digestd/t.conf:5: [digest] unsubscribe_url: \"https://x/u u\""
	    " has a character that must be %-encoded");
	fails_with("[digest]\nunsubscribe_url = https:///u\n",
	    "/etc/digestd/t.conf:5: [digest] unsubscribe_url: \"https:///u\" "
	    "has no host");
	fails_with("[smtp]\nenvelope_from = Bob <b@x.org>\n",
	    "/etc/digestd/t.conf:5: [smtp] envelope_from: \"Bob <b@x.org>\" has "
	    "an unusable local part");
	fails_with("[smtp]\npassword = pw\n",
	    "/etc/digestd/t.conf:5: [smtp] password: set without username");
	fails_with("[smtp]\nhost =\n",
	    "/etc/digestd/t.conf:5: [smtp] host: must not be empty with "
	    "transport.type = smtp");
	fails_with("[redis]\nhost =\n",
	    "/etc/digestd/t.conf:5: [redis] host: host or socket is required");
}

static void
test_listen(void **state)
{
	static const char *good[] = {
		"127.0.0.1:9187", "localhost:80", "[::]:9187", "[::1]:1",
		"0.0.0.0:65535", "metrics.internal:9187"
	};
	static const char *bad[] = {
		"9187", "localhost", "host:", ":9187", "host:0", "host:65536",
		"host:9x", "[::1:9187", "[zz]:1", "[]:1", "[::1]9187", "a:b:1",
		"bad_host:1", "-x:1", "a..b:1"
	};
	char more[256], want[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(more, sizeof(more), "[supervisor]\nlisten = %s\n",
		    good[i]);
		free(loads_with(more));
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config *cfg;
		char text[512];

		snprintf(more, sizeof(more), "[supervisor]\nlisten = %s\n",
		    bad[i]);
		snprintf(text, sizeof(text), "%s%s", MINIMAL, more);
		if ((cfg = load(text)) != NULL)
			fail_msg("listen = %s loaded", bad[i]);
		snprintf(want, sizeof(want),
		    "/etc/digestd/t.conf:5: [supervisor] listen: \"%s\" ",
		    bad[i]);
		assert_memory_equal(errbuf, want, strlen(want));
	}
	fails_with("[supervisor]\nlisten = 9187\n",
	    "/etc/digestd/t.conf:5: [supervisor] listen: \"9187\" is not "
	    "host:port or [v6]:port");
	fails_with("[supervisor]\nlisten = [zz]:1\n",
	    "/etc/digestd/t.conf:5: [supervisor] listen: \"[zz]:1\" has a bad "
	    "IPv6 address");
	fails_with("[supervisor]\nlisten = h:0\n",
	    "/etc/digestd/t.conf:5: [supervisor] listen: \"h:0\" has a bad port "
	    "(1 to 65535)");
	fails_with("[supervisor]\nlisten =\n",
	    "/etc/digestd/t.conf:5: [supervisor] listen: must not be empty");
}

static void
test_from(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = loads_with("[digest]\nfrom = \"Le Café\" <news@Mail.Example.ORG>\n");
	assert_string_equal(cfg->digest.from,
	    "\"Le Café\" <news@Mail.Example.ORG>");
	assert_string_equal(cfg->digest.from_addr, "news@Mail.Example.ORG");
	assert_string_equal(cfg->digest.from_domain, "Mail.Example.ORG");
	assert_string_equal(cfg->smtp.envelope_from, "news@Mail.Example.ORG");
	free(cfg);
	cfg = loads_with("[digest]\nfrom = <x@localhost>\n");
	assert_string_equal(cfg->digest.from_domain, "localhost");
	free(cfg);

	fails_with("[digest]\nfrom = nobody\n",
	    "/etc/digestd/t.conf:5: [digest] from: \"nobody\" is not an "
	    "address (local@domain)");
	fails_with("[digest]\nfrom = Name <x@>\n",
	    "/etc/digestd/t.conf:5: [digest] from: \"Name <x@>\" has no usable "
	    "domain");
	fails_with("[digest]\nfrom = Name <x@-bad.org>\n",
	    "/etc/digestd/t.conf:5: [digest] from: \"Name <x@-bad.org>\" has no "
	    "usable domain");
	fails_with("[digest]\nfrom = Name <x@a_b.org>\n",
	    "/etc/digestd/t.conf:5: [digest] from: \"Name <x@a_b.org>\" has no "
	    "usable domain");
	fails_with("[digest]\nfrom = Name <@x.org>\n",
	    "/etc/digestd/t.conf:5: [digest] from: \"Name <@x.org>\" is not an "
	    "address (local@domain)");
	fails_with("[digest]\nfrom = Name <a@x.org\n",
	    "/etc/digestd/t.conf:5: [digest] from: \"Name <a@x.org\" is not "
	    "\"Name <addr>\" or addr");
	fails_with("[digest]\nfrom = Name <a@x.org> trailing\n",
	    "/etc/digestd/t.conf:5: [digest] from: \"Name <a@x.org> trailing\" "
	    "is not \"Name <addr>\" or addr");
	fails_with("[digest]\nfrom = a b@x.org\n",
	    "/etc/digestd/t.conf:5: [digest] from: \"a b@x.org\" is not "
	    "\"Name <addr>\" or addr");
	fails_with("[digest]\nfrom =\n",
	    "/etc/digestd/t.conf:5: [digest] from: must not be empty");
}

static void
test_amqp_url(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = loads_with("[amqp]\nurl = amqp://localhost\n");
	assert_string_equal(cfg->amqp.url, "amqp://localhost");
	free(cfg);
	fails_with("[amqp]\nurl = http://u:HIDDEN@h/\n",
	    "/etc/digestd/t.conf:5: [amqp] url: value is not an AMQP URL "
	    "(amqp://user:password@host:port/vhost)");
	fails_with("[amqp]\nurl = amqp://u:HIDDEN@h:notaport/\n",
	    "/etc/digestd/t.conf:5: [amqp] url: value is not an AMQP URL "
	    "(amqp://user:password@host:port/vhost)");
	fails_with("[amqp]\nurl = amqp://\n",
	    "/etc/digestd/t.conf:5: [amqp] url: value is not an AMQP URL "
	    "(amqp://user:password@host:port/vhost)");
	fails_with("[amqp]\nurl =\n",
	    "/etc/digestd/t.conf:5: [amqp] url: must not be empty");
	fails_with("[amqp]\nprefetch = 70000\n",
	    "/etc/digestd/t.conf:5: [amqp] prefetch: \"70000\" is out of range "
	    "(1 to 65535)");
}

/* No secret value ever shows in a message. */
static void
test_secrets(void **state)
{
	static const char *cases[] = {
		"[redis]\npassword = HIDDEN\x01x\n",
		"[queue_redis]\nhost = q\npassword = HIDDEN\x02\n",
		"[smtp]\nusername = u\npassword = HIDDEN\x7f\n",
		"[amqp]\nurl = amqp://u:HIDDEN@h:99999/\n",
		"[amqp]\nurl = xamqp://u:HIDDEN@h/\n",
		"[digest]\nunsubscribe_secret = HIDDEN\n",
		"[digest]\nunsubscribe_secre = HIDDEN\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512];

		snprintf(text, sizeof(text), "%s%s", MINIMAL, cases[i]);
		assert_null(load(text));
		if (strstr(errbuf, "HIDDEN") != NULL)
			fail_msg("secret in: %s", errbuf);
	}
	fails_with("[redis]\npassword = HIDDEN\x01x\n",
	    "/etc/digestd/t.conf:5: [redis] password: value has a control "
	    "character");
	fails_with("[digest]\nunsubscribe_secret = again\n",
	    "/etc/digestd/t.conf:5: [digest] unsubscribe_secret: duplicate key "
	    "(first set at line 2)");
	fails("[digest]\n[pool.a]\n",
	    "/etc/digestd/t.conf: [digest] unsubscribe_secret is required");
	fails("[digest]\nunsubscribe_secret =   ; required\n[pool.a]\n",
	    "/etc/digestd/t.conf:2: [digest] unsubscribe_secret: must not be "
	    "empty");
	fails("", "/etc/digestd/t.conf: [digest] unsubscribe_secret is "
	    "required");
}

/* Write text to dir/name. */
static void
put_file(const char *dir, const char *name, const char *text, size_t len)
{
	char path[PATH_MAX];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(fp = fopen(path, "w"));
	assert_int_equal(fwrite(text, 1, len, fp), len);
	fclose(fp);
}

/* Load text as the file dir/t.conf; NULL with errbuf set on error. */
static struct config *
load_in(const char *dir, const char *text)
{
	char file[PATH_MAX];

	snprintf(file, sizeof(file), "%s/t.conf", dir);
	errbuf[0] = '\0';
	return config_load_buffer(file, text, strlen(text), errbuf,
	    sizeof(errbuf));
}

/* text, loaded as dir/t.conf, fails with dir/t.conf + want. */
static void
fails_in(const char *dir, const char *text, const char *want)
{
	char full[1024];

	snprintf(full, sizeof(full), "%s/t.conf%s", dir, want);
	if (load_in(dir, text) != NULL)
		fail_msg("loaded, wanted: %s", full);
	assert_string_equal(errbuf, full);
}

/*
 * The *_file twins: read relative to the file's directory, one trailing
 * newline dropped, the twin's own checks applied to the content, and every
 * error naming the key and the path but never the content (each message is
 * compared whole, and none holds the HIDDEN of the files).
 */
static void
test_secret_files(void **state)
{
	char dir[] = "/tmp/test_config.XXXXXX";
	char path[PATH_MAX], want[1024], big[5000];
	struct config *cfg;

	(void)state;
	assert_non_null(mkdtemp(dir));
	put_file(dir, "key", KEY "\n", strlen(KEY) + 1);
	put_file(dir, "rpw", "HIDDEN-redis\r\n", 14);
	put_file(dir, "qpw", "HIDDEN-queue", 12);
	put_file(dir, "spw", "HIDDEN-smtp\n", 12);
	put_file(dir, "short", "HIDDEN\n", 7);
	put_file(dir, "two", "HIDDEN-one\nHIDDEN-two\n", 22);
	put_file(dir, "empty", "", 0);
	put_file(dir, "nul", "HIDDEN\0HIDDEN-0123456789-0123456789\n", 36);
	memset(big, 'x', sizeof(big));
	put_file(dir, "big", big, sizeof(big));

	cfg = load_in(dir, "[digest]\nunsubscribe_secret_file = key\n"
	    "[pool.a]\n[redis]\npassword_file = rpw\n"
	    "[queue_redis]\nhost = q\npassword_file = ./qpw\n"
	    "[smtp]\nstarttls = required\nusername = u\npassword_file = spw\n");
	if (cfg == NULL)
		fail_msg("%s", errbuf);
	assert_string_equal(cfg->digest.unsubscribe_secret, KEY);
	assert_string_equal(cfg->redis.password, "HIDDEN-redis");
	assert_string_equal(cfg->queue_redis.password, "HIDDEN-queue");
	assert_string_equal(cfg->smtp.password, "HIDDEN-smtp");
	snprintf(path, sizeof(path), "%s/qpw", dir);
	assert_string_equal(cfg->queue_redis.password_file, path);
	config_free(cfg);

	/* Without its own server, the queue Redis takes the password too. */
	snprintf(want, sizeof(want), MINIMAL "[redis]\npassword_file = "
	    "%s/rpw\n", dir);
	cfg = load_in("/nonexistent", want);
	if (cfg == NULL)
		fail_msg("%s", errbuf);
	assert_int_equal(cfg->has_queue_redis, 0);
	assert_string_equal(cfg->queue_redis.password, "HIDDEN-redis");
	config_free(cfg);

	/* Left empty, either is unset; both set is an error. */
	cfg = load_in(dir, MINIMAL "[redis]\npassword =\npassword_file = rpw\n"
	    "[smtp]\nstarttls = required\nusername = u\npassword = p\npassword_file =\n");
	if (cfg == NULL)
		fail_msg("%s", errbuf);
	assert_string_equal(cfg->redis.password, "HIDDEN-redis");
	assert_string_equal(cfg->smtp.password, "p");
	config_free(cfg);
	fails_in(dir, MINIMAL "[redis]\npassword = HIDDEN\npassword_file = rpw\n",
	    ":6: [redis] password_file: password is set too (line 5); set one "
	    "of them");
	fails_in(dir, "[digest]\nunsubscribe_secret_file = key\n"
	    "unsubscribe_secret = " KEY "\n[pool.a]\n",
	    ":2: [digest] unsubscribe_secret_file: unsubscribe_secret is set "
	    "too (line 3); set one of them");
	fails_in(dir, "[digest]\nunsubscribe_secret_file =\n[pool.a]\n",
	    ":2: [digest] unsubscribe_secret_file: must not be empty");

	/* A file that cannot be read, or whose content is not a secret. */
	snprintf(want, sizeof(want), ":5: [redis] password_file: %s/none: No "
	    "such file or directory", dir);
	fails_in(dir, MINIMAL "[redis]\npassword_file = none\n", want);
	snprintf(want, sizeof(want), ":5: [redis] password_file: %s: not a "
	    "regular file", dir);
	fails_in(dir, MINIMAL "[redis]\npassword_file = .\n", want);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(want, sizeof(want), ":5: [smtp] password_file: %s/fifo: not "
	    "a regular file", dir);
	fails_in(dir, MINIMAL "[smtp]\npassword_file = fifo\n", want);
	snprintf(want, sizeof(want), ":5: [redis] password_file: %s/big: "
	    "larger than 4096 bytes, not a secret", dir);
	fails_in(dir, MINIMAL "[redis]\npassword_file = big\n", want);
	snprintf(want, sizeof(want), ":2: [digest] unsubscribe_secret_file: "
	    "the secret in %s/short is shorter than 32 bytes (a short key "
	    "makes tokens forgeable)", dir);
	fails_in(dir, "[digest]\nunsubscribe_secret_file = short\n[pool.a]\n",
	    want);
	snprintf(want, sizeof(want), ":2: [digest] unsubscribe_secret_file: "
	    "the secret in %s/empty must not be empty", dir);
	fails_in(dir, "[digest]\nunsubscribe_secret_file = empty\n[pool.a]\n",
	    want);
	snprintf(want, sizeof(want), ":5: [redis] password_file: the secret "
	    "in %s/two has a control character", dir);
	fails_in(dir, MINIMAL "[redis]\npassword_file = two\n", want);
	snprintf(want, sizeof(want), ":5: [redis] password_file: %s/nul: "
	    "holds a NUL byte", dir);
	fails_in(dir, MINIMAL "[redis]\npassword_file = nul\n", want);
	memset(big, 'y', 300);
	put_file(dir, "long", big, 300);
	snprintf(want, sizeof(want), ":5: [smtp] password_file: the secret in "
	    "%s/long is longer than 255 characters", dir);
	fails_in(dir, MINIMAL "[smtp]\npassword_file = long\n", want);

	/* The 32-byte rule holds for a key written in the config too. */
	fails("[digest]\nunsubscribe_secret = 0123456789abcdef0123456789abcde\n"
	    "[pool.a]\n", "/etc/digestd/t.conf:2: [digest] unsubscribe_secret: "
	    "value is shorter than 32 bytes (a short key makes tokens "
	    "forgeable)");
	cfg = load("[digest]\nunsubscribe_secret = "
	    "0123456789abcdef0123456789abcdef\n[pool.a]\n");
	assert_non_null(cfg);
	config_free(cfg);

	{
		static const char *names[] = { "key", "rpw", "qpw", "spw",
		    "short", "two", "empty", "nul", "big", "long", "fifo" };
		size_t i;

		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
			unlink(path);
		}
	}
	assert_int_equal(rmdir(dir), 0);
}

static void
test_core_dumps(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load(MINIMAL);
	assert_int_equal(cfg->supervisor.core_dumps, 0);
	config_free(cfg);
	cfg = loads_with("[supervisor]\ncore_dumps = yes\n");
	assert_int_equal(cfg->supervisor.core_dumps, 1);
	config_free(cfg);
	fails_with("[supervisor]\ncore_dumps = 1\n",
	    "/etc/digestd/t.conf:5: [supervisor] core_dumps: \"1\" is not one "
	    "of no | yes");
}

static void
test_queue_redis(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = loads_with("[redis]\nkey_prefix = app:\npassword = a\ndb = 2\n"
	    "[queue_redis]\nhost = queue.local\nport = 6380\n");
	assert_int_equal(cfg->has_queue_redis, 1);
	assert_string_equal(cfg->queue_redis.host, "queue.local");
	assert_int_equal(cfg->queue_redis.port, 6380);
	assert_string_equal(cfg->queue_redis.key_prefix, "app:");
	assert_string_equal(cfg->queue_redis.password, "");
	assert_int_equal(cfg->queue_redis.db, 0);
	assert_int_equal(cfg->queue_redis.timeout_ms, 2000);
	assert_int_equal(cfg->redis.db, 2);
	free(cfg);

	cfg = loads_with("[queue_redis]\nsocket = run/q.sock\n");
	assert_int_equal(cfg->has_queue_redis, 1);
	assert_string_equal(cfg->queue_redis.socket,
	    "/etc/digestd/run/q.sock");
	assert_string_equal(cfg->queue_redis.host, "");
	free(cfg);

	cfg = loads_with("[redis]\nsocket = /run/r.sock\nkey_prefix = p:\n");
	assert_int_equal(cfg->has_queue_redis, 0);
	assert_memory_equal(&cfg->queue_redis, &cfg->redis,
	    sizeof(cfg->redis));
	assert_string_equal(cfg->queue_redis.socket, "/run/r.sock");
	free(cfg);

	/* Present, naming neither host nor socket: the same as absent. */
	cfg = loads_with("\n[queue_redis]\n");
	assert_int_equal(cfg->has_queue_redis, 0);
	assert_memory_equal(&cfg->queue_redis, &cfg->redis,
	    sizeof(cfg->redis));
	free(cfg);
	cfg = loads_with("[queue_redis]\nport = 6380\ndb = 3\n");
	assert_int_equal(cfg->has_queue_redis, 0);
	assert_memory_equal(&cfg->queue_redis, &cfg->redis,
	    sizeof(cfg->redis));
	free(cfg);
}

static void
test_paths(void **state)
{
	struct config *cfg;
	char cwd[PATH_MAX], want[PATH_MAX + 64];
	char dir[] = "/tmp/test_config.XXXXXX";
	char err[512], sub[PATH_MAX];
	FILE *fp;

	(void)state;
	cfg = loads_with("[maildir]\npath = out\n"
	    "[supervisor]\nlog_file = ./log/d.log\n"
	    "[digest]\ntemplate_dir = /usr/share/digestd\n"
	    "[redis]\nsocket = ../run/redis.sock\n");
	assert_string_equal(cfg->maildir.path, "/etc/digestd/out");
	assert_string_equal(cfg->supervisor.log_file,
	    "/etc/digestd/log/d.log");
	assert_string_equal(cfg->digest.template_dir, "/usr/share/digestd");
	assert_string_equal(cfg->redis.socket, "/etc/digestd/../run/redis.sock");
	free(cfg);

	/* A file named relative to the current directory. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(mkdir("sub", 0700), 0);
	assert_non_null(fp = fopen("sub/d.conf", "w"));
	fputs(MINIMAL "[maildir]\npath = box\n", fp);
	fclose(fp);
	cfg = config_load("sub/d.conf", err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	assert_string_equal(cfg->dir, sub);
	snprintf(want, sizeof(want), "%s/sub/box", dir);
	assert_string_equal(cfg->maildir.path, want);
	assert_string_equal(cfg->path, "sub/d.conf");
	free(cfg);

	cfg = config_load_buffer("d.conf", MINIMAL, strlen(MINIMAL), err,
	    sizeof(err));
	assert_non_null(cfg);
	assert_string_equal(cfg->dir, dir);
	free(cfg);

	assert_null(config_load("sub/none.conf", err, sizeof(err)));
	assert_string_equal(err, "sub/none.conf: No such file or directory");
	assert_null(config_load("sub", err, sizeof(err)));
	assert_string_equal(err, "sub: not a regular file");
	/*
	 * A FIFO is refused at once, never waited on: a SIGALRM ends the
	 * test if the open blocks.
	 */
	assert_int_equal(mkfifo("sub/fifo.conf", 0600), 0);
	alarm(10);
	assert_null(config_load("sub/fifo.conf", err, sizeof(err)));
	alarm(0);
	assert_string_equal(err, "sub/fifo.conf: not a regular file");
	unlink("sub/fifo.conf");

	/* An error in a real file names it and the line. */
	assert_non_null(fp = fopen("sub/bad.conf", "w"));
	fputs(MINIMAL "[maildir]\npath = box\nmode = 0700\n", fp);
	fclose(fp);
	assert_null(config_load("sub/bad.conf", err, sizeof(err)));
	assert_string_equal(err, "sub/bad.conf:6: [maildir] mode: unknown key");

	unlink("sub/d.conf");
	unlink("sub/bad.conf");
	rmdir("sub");
	assert_int_equal(chdir(cwd), 0);
	rmdir(dir);
}

/*
 * AUTH only inside TLS: a username needs starttls = required unless AUTH in
 * clear is allowed, by name; the CA files must be there; the opt-outs are
 * warned about.
 */
static void
test_tls(void **state)
{
	struct config *cfg;
	char path[] = "/tmp/test_config_ca.XXXXXX";
	char text[1024];
	int fd;

	(void)state;
	cfg = loads_with("");
	assert_int_equal(cfg->smtp.tls_verify, 1);
	assert_int_equal(cfg->smtp.allow_plaintext_auth, 0);
	assert_string_equal(cfg->smtp.tls_ca_file, "");
	assert_string_equal(cfg->amqp.ca_file, "");
	assert_null(config_warning(cfg, 0));
	free(cfg);

	fails_with("[smtp]\nusername = u\npassword = p\n",
	    "/etc/digestd/t.conf:5: [smtp] username: AUTH needs starttls = "
	    "required, so that the password never goes in clear (or "
	    "allow_plaintext_auth = yes)");
	fails_with("[smtp]\nstarttls = off\npassword = p\nusername = u\n",
	    "/etc/digestd/t.conf:7: [smtp] username: AUTH needs starttls = "
	    "required, so that the password never goes in clear (or "
	    "allow_plaintext_auth = yes)");
	fails_with("[smtp]\nallow_plaintext_auth = maybe\n",
	    "/etc/digestd/t.conf:5: [smtp] allow_plaintext_auth: \"maybe\" is "
	    "not one of no | yes");
	fails_with("[smtp]\ntls_verify = 1\n",
	    "/etc/digestd/t.conf:5: [smtp] tls_verify: \"1\" is not one of "
	    "no | yes");

	cfg = loads_with("[smtp]\nstarttls = required\nusername = u\n");
	assert_null(config_warning(cfg, 0));
	free(cfg);
	cfg = loads_with("[smtp]\nusername = u\nallow_plaintext_auth = yes\n");
	assert_int_equal(cfg->smtp.allow_plaintext_auth, 1);
	assert_non_null(strstr(config_warning(cfg, 0),
	    "allow_plaintext_auth = yes"));
	assert_null(config_warning(cfg, 1));
	free(cfg);
	/* Allowed but moot: TLS is required, nothing goes in clear. */
	cfg = loads_with("[smtp]\nstarttls = required\nusername = u\n"
	    "allow_plaintext_auth = yes\ntls_verify = no\n");
	assert_int_equal(cfg->smtp.tls_verify, 0);
	assert_non_null(strstr(config_warning(cfg, 0), "tls_verify = no"));
	assert_null(config_warning(cfg, 1));
	free(cfg);
	/* Not verifying matters only where TLS is required. */
	cfg = loads_with("[smtp]\ntls_verify = no\n");
	assert_null(config_warning(cfg, 0));
	free(cfg);

	fails_with("[smtp]\ntls_ca_file = /nonexistent/ca.pem\n",
	    "/etc/digestd/t.conf:5: [smtp] tls_ca_file: /nonexistent/ca.pem: "
	    "No such file or directory");
	fails_with("[amqp]\nca_file = /tmp\n",
	    "/etc/digestd/t.conf:5: [amqp] ca_file: /tmp: not a regular file");
	assert_int_not_equal(fd = mkstemp(path), -1);
	close(fd);
	snprintf(text, sizeof(text), "[smtp]\ntls_ca_file = %s\n"
	    "[amqp]\nca_file = %s\n", path, path);
	cfg = loads_with(text);
	assert_string_equal(cfg->smtp.tls_ca_file, path);
	assert_string_equal(cfg->amqp.ca_file, path);
	free(cfg);
	unlink(path);
}

static void
test_durations_sizes(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} dur[] = {
		{ "0", 0 }, { "1ms", 1 }, { "100ms", 100 }, { "2s", 2000 },
		{ "15m", 900000 }, { "2h", 7200000 }, { "90d", 7776000000LL },
		{ "1h30m", 5400000 }, { "1m30s250ms", 90250 }, { "0s", 0 },
	};
	static const char *bad_dur[] = {
		"", "10", "s", "1.5s", "-1s", "1 s", " 1s", "1S", "1w", "1sm",
		"1hh", "999999999999999999d", "9223372036854775807ms1ms", "1s ",
	};
	static const struct {
		const char *s;
		uint64_t b;
	} size[] = {
		{ "0", 0 }, { "1", 1 }, { "4096", 4096 }, { "1K", 1024 },
		{ "256M", 268435456 }, { "2G", 2147483648ULL }, { "3k", 3072 },
		{ "1g", 1073741824 },
	};
	static const char *bad_size[] = {
		"", "M", "1.5M", "-1", "1T", "1MB", " 1M", "1 M",
		"99999999999999999999", "9999999999999G",
	};
	int64_t ms;
	uint64_t b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(dur) / sizeof(dur[0]); i++) {
		assert_int_equal(config_parse_duration(dur[i].s, &ms), 0);
		assert_int_equal(ms, dur[i].ms);
	}
	for (i = 0; i < sizeof(bad_dur) / sizeof(bad_dur[0]); i++)
		if (config_parse_duration(bad_dur[i], &ms) != -1)
			fail_msg("duration \"%s\" accepted", bad_dur[i]);
	assert_int_equal(config_parse_duration(NULL, &ms), -1);
	for (i = 0; i < sizeof(size) / sizeof(size[0]); i++) {
		assert_int_equal(config_parse_size(size[i].s, &b), 0);
		assert_int_equal(b, size[i].b);
	}
	for (i = 0; i < sizeof(bad_size) / sizeof(bad_size[0]); i++)
		if (config_parse_size(bad_size[i], &b) != -1)
			fail_msg("size \"%s\" accepted", bad_size[i]);
}

static char *
example_text(size_t *len)
{
	char *buf = NULL;
	FILE *fp;

	assert_non_null(fp = open_memstream(&buf, len));
	config_print_example(fp);
	fclose(fp);
	return buf;
}

/* docs/digestd.conf.example is what config_print_example prints. */
static void
test_example_file(void **state)
{
	char *want, *got;
	size_t wantlen, gotlen;
	FILE *fp;

	(void)state;
	want = example_text(&wantlen);
	if ((fp = fopen(EXAMPLE_PATH, "r")) == NULL)
		fail_msg("%s missing (run from the top of the tree)",
		    EXAMPLE_PATH);
	got = malloc(wantlen + 2);
	gotlen = fread(got, 1, wantlen + 1, fp);
	fclose(fp);
	if (gotlen != wantlen || memcmp(got, want, wantlen) != 0)
		fail_msg("%s is out of date: build/tests/test_config "
		    "--print-example > %s", EXAMPLE_PATH, EXAMPLE_PATH);
	free(got);
	free(want);
}

/* Every key in the example comes with its help, and no key is missing. */
static void
test_example_help(void **state)
{
	char *ex, *line, *next, *prev = NULL;
	size_t len;
	int keys = 0;

	(void)state;
	ex = example_text(&len);
	for (line = ex; *line != '\0'; prev = line, line = next) {
		next = strchr(line, '\n') + 1;
		if (line[0] != ';' || line[1] == '[')
			continue;
		keys++;
		if (prev == NULL || prev[0] != '#')
			fail_msg("no help for %.*s", (int)(next - line - 1),
			    line);
	}
	/* The keys of the configuration, the pool's once per example pool. */
	assert_int_equal(keys, 77);
	free(ex);
}

/* The example with its secret set, and optionally every key uncommented. */
static char *
example_set(int uncomment)
{
	char *ex, *text, *line, *next, *out;
	size_t len;

	ex = example_text(&len);
	text = malloc(len + 256);
	out = text;
	for (line = ex; *line != '\0'; line = next) {
		next = strchr(line, '\n') + 1;
		if (strncmp(line, ";unsubscribe_secret =\n", 22) == 0) {
			out += sprintf(out, "unsubscribe_secret = %s\n", KEY);
			continue;
		}
		if (line[0] == ';' && uncomment &&
		    strncmp(line, ";unsubscribe_secret_file", 24) != 0)
			line++;
		memcpy(out, line, (size_t)(next - line));
		out += next - line;
	}
	*out = '\0';
	free(ex);
	return text;
}

/*
 * The example loads once its secret is set, as it is and with every key
 * uncommented where it stands, to exactly the defaults with the two pools
 * of the scheduler's queues: its section headers are real, so a key
 * uncommented under [queue_redis] sets [queue_redis], not [redis].
 */
static void
test_example_loads(void **state)
{
	static const char two_pools[] = "[digest]\nunsubscribe_secret = " KEY
	    "\n[pool.priority]\n[pool.standard]\n";
	struct config *base, *cfg;
	char *text, *p;

	(void)state;
	assert_non_null(base = load(two_pools));

	text = example_set(0);
	if ((cfg = load(text)) == NULL)
		fail_msg("%s", errbuf);
	cfg->pools[0].line = base->pools[0].line;
	cfg->pools[1].line = base->pools[1].line;
	assert_memory_equal(cfg, base, sizeof(*cfg));
	free(cfg);
	free(text);

	text = example_set(1);
	assert_non_null(strstr(text, "\nlisten = 127.0.0.1:9187\n"));
	if ((cfg = load(text)) == NULL)
		fail_msg("%s", errbuf);
	cfg->pools[0].line = base->pools[0].line;
	cfg->pools[1].line = base->pools[1].line;
	assert_memory_equal(cfg, base, sizeof(*cfg));
	free(cfg);
	free(text);

	/* The [queue_redis] host, uncommented in place with a value. */
	text = example_set(0);
	p = strstr(text, "[queue_redis]\n");
	assert_non_null(p);
	p = strstr(p, ";host =\n");
	assert_non_null(p);
	memcpy(p, "host =q\n", 8);
	if ((cfg = load(text)) == NULL)
		fail_msg("%s", errbuf);
	assert_int_equal(cfg->has_queue_redis, 1);
	assert_string_equal(cfg->queue_redis.host, "q");
	assert_string_equal(cfg->redis.host, "127.0.0.1");
	free(cfg);
	free(text);
	free(base);
}

static char *
effective_text(const struct config *cfg)
{
	char *buf = NULL;
	size_t len;
	FILE *fp;

	assert_non_null(fp = open_memstream(&buf, &len));
	config_print_effective(fp, cfg);
	fclose(fp);
	return buf;
}

/* Replace the first occurrence of from in *text by to. */
static void
replace(char **text, const char *from, const char *to)
{
	char *p, *out;

	if ((p = strstr(*text, from)) == NULL)
		fail_msg("\"%s\" not in:\n%s", from, *text);
	out = malloc(strlen(*text) + strlen(to) + 1);
	sprintf(out, "%.*s%s%s", (int)(p - *text), *text, to,
	    p + strlen(from));
	free(*text);
	*text = out;
}

/*
 * digestd -T: every key of the table, each secret masked (the password of
 * amqp.url too), a *_file key's path but never what the file holds; and
 * with the secrets put back, the text loads as the same configuration.
 */
static void
test_effective(void **state)
{
	static const char pw_file[] = "/tmp/test_config_effective.pw";
	struct config *cfg, *again;
	char text[4096], *out, *ex, *line, *next, key[80], unset[96];
	FILE *fp;

	(void)state;
	assert_non_null(fp = fopen(pw_file, "w"));
	fputs("file-held-smtp-password\n", fp);
	fclose(fp);
	snprintf(text, sizeof(text), "%s"
	    "[pool.bulk]\nqueue = bulk\nworkers = 3\nmemory_limit = 1G\n"
	    "[redis]\npassword = redis-pw-1\nkey_prefix = app:\n"
	    "[queue_redis]\nhost = qhost\npassword = queue-pw-2\n"
	    "[amqp]\nurl = amqp://bob:amqp-pw-3@rabbit:5673/vh\n"
	    "[schedule]\npriority_threshold = 12.5\nday_start = 06:30\n"
	    "[smtp]\nusername = u\nstarttls = required\n"
	    "password_file = %s\n", MINIMAL, pw_file);
	if ((cfg = load(text)) == NULL)
		fail_msg("%s", errbuf);
	out = effective_text(cfg);
	unlink(pw_file);
	assert_null(strstr(out, KEY));
	assert_null(strstr(out, "redis-pw-1"));
	assert_null(strstr(out, "queue-pw-2"));
	assert_null(strstr(out, "amqp-pw-3"));
	assert_null(strstr(out, "file-held-smtp-password"));
	assert_non_null(strstr(out, "\nurl = amqp://bob:" CONFIG_MASK
	    "@rabbit:5673/vh\n"));
	assert_non_null(strstr(out, "\nunsubscribe_secret = " CONFIG_MASK
	    "\n"));
	assert_non_null(strstr(out, "\npassword_file = /tmp/test_config_"
	    "effective.pw\n"));
	assert_non_null(strstr(out, "\n[pool.bulk]\nqueue = bulk\n"
	    "workers = 3\nmemory_limit = 1G\n"));
	assert_non_null(strstr(out, "\npriority_threshold = 12.5\n"));
	assert_non_null(strstr(out, "\nday_start = 06:30\n"));

	/* Every key of the example, in its section. */
	ex = example_text(&(size_t){0});
	for (line = ex; *line != '\0'; line = next) {
		next = strchr(line, '\n') + 1;
		if (line[0] != ';')
			continue;
		snprintf(key, sizeof(key), "\n%.*s", (int)strcspn(line + 1,
		    "="), line + 1);
		/* A key that cannot be empty shows unset as ";key =". */
		snprintf(unset, sizeof(unset), "\n;%s", key + 1);
		if (strstr(out, key) == NULL && strstr(out, unset) == NULL)
			fail_msg("%s missing", key + 1);
	}
	free(ex);

	/* The secrets back in place of the masks: the same configuration. */
	replace(&out, "password = " CONFIG_MASK, "password = redis-pw-1");
	replace(&out, "password = " CONFIG_MASK, "password = queue-pw-2");
	replace(&out, "bob:" CONFIG_MASK, "bob:amqp-pw-3");
	replace(&out, "unsubscribe_secret = " CONFIG_MASK,
	    "unsubscribe_secret = " KEY);
	replace(&out, "password = " CONFIG_MASK "\npassword_file = "
	    "/tmp/test_config_effective.pw", "password = "
	    "file-held-smtp-password\npassword_file =");
	if ((again = load(out)) == NULL)
		fail_msg("%s\n--\n%s", errbuf, out);
	memset(cfg->smtp.password_file, 0, sizeof(cfg->smtp.password_file));
	for (int i = 0; i < cfg->npools; i++)
		again->pools[i].line = cfg->pools[i].line;
	assert_memory_equal(cfg, again, sizeof(*cfg));
	free(again);
	free(out);
	free(cfg);
}

/* -c without a value: $DIGESTD_CONFIG, else the built-in path. */
static void
test_default_path(void **state)
{
	(void)state;
	unsetenv("DIGESTD_CONFIG");
	assert_string_equal(config_default_path(), CONFIG_DEFAULT_PATH);
	setenv("DIGESTD_CONFIG", "", 1);
	assert_string_equal(config_default_path(), CONFIG_DEFAULT_PATH);
	setenv("DIGESTD_CONFIG", "/srv/d.conf", 1);
	assert_string_equal(config_default_path(), "/srv/d.conf");
	unsetenv("DIGESTD_CONFIG");
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_spec_example),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_pools),
		cmocka_unit_test(test_structure_errors),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_value_errors),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_from),
		cmocka_unit_test(test_amqp_url),
		cmocka_unit_test(test_secrets),
		cmocka_unit_test(test_secret_files),
		cmocka_unit_test(test_core_dumps),
		cmocka_unit_test(test_queue_redis),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_durations_sizes),
		cmocka_unit_test(test_example_file),
		cmocka_unit_test(test_example_help),
		cmocka_unit_test(test_example_loads),
		cmocka_unit_test(test_effective),
		cmocka_unit_test(test_default_path),
	};

	if (argc == 2 && strcmp(argv[1], "--print-example") == 0) {
		config_print_example(stdout);
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
