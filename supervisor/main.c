/*
 * digestd: the supervisor.  Reads the configuration, binds the HTTP
 * endpoint, maps the scoreboard, forks the worker pools and the queue
 * sampler, then runs a libevent loop that only handles signals, child
 * exits, timers and HTTP: it never blocks on I/O.
 *
 * Signals are blocked first thing and turned into libevent events before
 * they are unblocked, so one that arrives during start-up (a SIGHUP from
 * an eager deploy script) waits for the loop instead of killing us.
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "check.h"
#include "console.h"
#include "coredump.h"
#include "instance.h"
#include "log.h"
#include "pool.h"
#include "proc.h"
#include "reload.h"
#include "requeue.h"
#include "sampler.h"
#include "sdnotify.h"
#include "supervisor.h"
#include "unsub_child.h"
#include "util.h"

/* Bounds on the wait for the last children at exit. */
#define EXIT_WAIT_MS 10000
#define TICK_MS 100

extern char **environ;

const char *const restart_reason_names[RESTART_N] = {
	"crash", "oom", "stall", "recycle", "reload",
};

static struct supervisor supervisor;
struct supervisor *sup = &supervisor;

static const int handled_signals[] = {
	SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGCHLD,
};
#define NSIGNALS (sizeof(handled_signals) / sizeof(handled_signals[0]))

static int exit_code;
static int ready_notified;
static int64_t stop_deadline_ns;	/* bound on waiting for requeues */
static struct event *tick_ev;
static struct event *watchdog_ev;

static void __attribute__((noreturn))
usage(int code)
{
	fprintf(code ? stderr : stdout,
	    "usage: digestd [-hTtv] [-c FILE]\n"
	    "  -c FILE  configuration file (default: $DIGESTD_CONFIG, else "
	    CONFIG_DEFAULT_PATH ")\n"
	    "  -t       check the configuration file and exit (0: valid)\n"
	    "  -T       check it, then print the effective configuration, "
	    "secrets\n"
	    "           masked, and exit\n"
	    "  -v       print the version and exit\n"
	    "  -h       this help\n");
	exit(code);
}

int
supervisor_ready(const struct supervisor *s)
{
	if (s->draining || s->cfg == NULL)
		return 0;
	return pool_all_ready();
}

int
supervisor_readiness(const struct supervisor *s, char *why, size_t len)
{
	if (s->draining) {
		snprintf(why, len, "stopping: workers finish or give back "
		    "their jobs");
		return 0;
	}
	if (s->cfg == NULL) {
		snprintf(why, len, "no configuration loaded yet");
		return 0;
	}
	return pool_readiness(why, len);
}

/* While stopping: leave the loop once every worker and requeue is done. */
static void
maybe_exit(void)
{
	if (!sup->draining)
		return;
	if (pool_live() > 0)
		return;
	if (requeue_busy() && now_mono_ns() < stop_deadline_ns) {
		requeue_flush();
		return;
	}
	if (requeue_busy())
		log_warnx("requeue still running at exit; it finishes alone");
	event_base_loopbreak(sup->base);
}

static void
begin_stop(int fast)
{
	int64_t bound;

	if (sup->draining && !fast)
		return;
	if (!sup->draining) {
		sdnotify("STOPPING=1");
		log_info(fast ? "fast stop: SIGKILL every worker" :
		    "draining: workers finish or give back their jobs");
	}
	sup->draining = 1;
	atomic_store(&sup->sb->draining, 1);
	pool_stop(fast);
	bound = (fast ? 0 : sup->cfg->supervisor.drain_timeout_ms) +
	    EXIT_WAIT_MS;
	stop_deadline_ns = now_mono_ns() + bound * 1000000;
	maybe_exit();
}

static void
signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	/*
	 * Safe to do real work here: libevent runs this from the loop,
	 * not in signal context.
	 */
	switch (sig) {
	case SIGHUP:
		reload_config(sup);
		break;
	case SIGTERM:
	case SIGINT:
		begin_stop(0);
		break;
	case SIGQUIT:
		begin_stop(1);
		break;
	case SIGUSR1:
		if (log_open_file(sup->cfg->supervisor.log_file) == -1)
			log_warn("reopen %s", sup->cfg->supervisor.log_file);
		atomic_fetch_add(&sup->sb->log_gen, 1);
		log_info("log file reopened");
		break;
	case SIGCHLD:
		proc_reap();
		maybe_exit();
		break;
	}
}

static void
tick_cb(evutil_socket_t fd, short ev, void *arg)
{
	int ready;

	/* SIGCHLD coalesces; a sweep here costs one syscall. */
	proc_reap();
	pool_tick();
	ready = supervisor_ready(sup);
	if (ready && !ready_notified) {
		sdnotify("READY=1\nSTATUS=every pool has a ready worker");
		log_info("ready: every pool has a ready worker");
	}
	ready_notified = ready || (ready_notified && !sup->draining);
	maybe_exit();
}

static void
watchdog_cb(evutil_socket_t fd, short ev, void *arg)
{
	sdnotify("WATCHDOG=1");
}

static void
drop_privileges(const char *user, const char *log_file)
{
	struct passwd *pw;

	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		log_error("supervisor.user %s: unknown user", user);
		exit(2);
	}
	if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
		return;
	/*
	 * The log file was opened as root; every child opens it again, and
	 * SIGUSR1 reopens it, as the user.
	 */
	if (log_chown(pw->pw_uid, pw->pw_gid) == -1)
		log_warn("chown log_file %s", log_file);
	/* The user's own groups, as login gives them; root's are dropped. */
	if (initgroups(user, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1) {
		log_error("cannot become user %s: %s", user, strerror(errno));
		exit(2);
	}
	if (setuid(0) != -1) {
		log_error("could still regain root after dropping to %s", user);
		exit(2);
	}
	log_info("running as %s", user);
}

/* Wait (bounded) for children that outlive the loop: requeues, sampler. */
static void
reap_stragglers(void)
{
	int64_t deadline = now_mono_ns() + (int64_t)EXIT_WAIT_MS * 1000000;

	sampler_stop(sup);
	console_stop(sup);
	unsub_stop(sup);
	while (now_mono_ns() < deadline) {
		proc_reap();
		if (proc_live() == 0)
			return;
		usleep(10000);
	}
	log_warnx("children still running at exit");
}

static void
check_warn_stderr(void *arg, const char *sentence)
{
	fprintf(stderr, "digestd: warning: %s\n", sentence);
}

/*
 * -t and -T: check file as start-up does, print the warnings, and with
 * dump the effective configuration.  The exit status of the check.
 */
static int
test_config(const char *file, int dump)
{
	char err[1024];
	const char *w;
	int i;

	if ((sup->cfg = reload_load_config(file, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "digestd: %s\n", err);
		fprintf(stderr, "digestd: configuration file %s test failed\n",
		    file);
		return 1;
	}
	for (i = 0; (w = config_warning(sup->cfg, i)) != NULL; i++)
		fprintf(stderr, "digestd: warning: %s\n", w);
	(void)check_config(sup->cfg, check_warn_stderr, NULL);
	/* As nginx -T: the verdict on stderr, the configuration on stdout. */
	fprintf(dump ? stderr : stdout, "digestd: configuration file %s test "
	    "is successful\n", file);
	if (dump)
		config_print_effective(stdout, sup->cfg);
	config_free(sup->cfg);
	sup->cfg = NULL;
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "digestd: stdout: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct event *sigev[NSIGNALS];
	struct timeval tv;
	sigset_t set;
	char err[1024];
	const char *file = NULL;
	const char *w;
	uint64_t wd;
	int ch, test = 0, dump = 0, pfd[2];
	size_t i;

	setproctitle_init(argc, argv, environ);

	sigemptyset(&set);
	for (i = 0; i < NSIGNALS; i++)
		sigaddset(&set, handled_signals[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	while ((ch = getopt(argc, argv, "c:hTtv")) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'T':
			test = dump = 1;
			break;
		case 'v':
			printf("digestd %s\n", DIGESTD_VERSION);
			return 0;
		case 'h':
			usage(0);
		default:
			usage(1);
		}
	}
	if (optind != argc)
		usage(1);
	if (file == NULL)
		file = config_default_path();

	log_init("supervisor", LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
	/*
	 * Before the file is read: from here on this process, and every
	 * process it forks, holds secrets.  core_dumps = yes undoes it once
	 * the config is known.
	 */
	if (coredump_disable() == -1)
		fatal("cannot disable core dumps");
	if (test)
		return test_config(file, dump);

	if ((sup->base = event_base_new()) == NULL)
		fatalx("event_base_new");
	for (i = 0; i < NSIGNALS; i++) {
		sigev[i] = evsignal_new(sup->base, handled_signals[i],
		    signal_cb, NULL);
		if (sigev[i] == NULL || evsignal_add(sigev[i], NULL) == -1)
			fatalx("signal event %d", handled_signals[i]);
	}
	/* From here on a signal is an event: it waits for the loop. */
	sigprocmask(SIG_UNBLOCK, &set, NULL);

	if ((sup->cfg = reload_load_config(file, err, sizeof(err))) ==
	    NULL) {
		log_error("%s", err);
		return 1;
	}
	log_configure(sup->cfg->supervisor.log_level,
	    sup->cfg->supervisor.log_format);
	if (log_open_file(sup->cfg->supervisor.log_file) == -1)
		fatal("open log_file %s", sup->cfg->supervisor.log_file);
	for (ch = 0; (w = config_warning(sup->cfg, ch)) != NULL; ch++)
		log_warnx("%s", w);
	reload_check_warnings(sup->cfg);
	setproctitle("-digestd: supervisor");
	sup->started_at = now_real();
	instance_id(sup->instance_id, sizeof(sup->instance_id));
	sup->last_reload_ok = sup->started_at;
	sup->sb = sb_create();

	if (pipe2(pfd, O_CLOEXEC) == -1 || fd_nonblock(pfd[0]) == -1 ||
	    fd_nonblock(pfd[1]) == -1)
		fatal("notify pipe");

	if (http_listen(sup, sup->cfg->supervisor.listen, err,
	    sizeof(err)) == -1) {
		log_error("listen %s: %s", sup->cfg->supervisor.listen, err);
		return 2;
	}
	if (console_bind(sup, err, sizeof(err)) == -1) {
		log_error("console_listen %s: %s",
		    sup->cfg->supervisor.console_listen, err);
		return 2;
	}
	if (unsub_bind(sup, err, sizeof(err)) == -1) {
		log_error("unsubscribe_listen %s: %s",
		    sup->cfg->supervisor.unsubscribe_listen, err);
		return 2;
	}
	if (sup->cfg->supervisor.user[0] != '\0')
		drop_privileges(sup->cfg->supervisor.user,
		    sup->cfg->supervisor.log_file);
	/* After the change of user, which resets the dumpable flag. */
	proc_core_dumps(sup->cfg);

	log_info("digestd %s starting: %d pool(s)", DIGESTD_VERSION,
	    sup->cfg->npools);
	sdnotifyf("MAINPID=%d", (int)getpid());
	proc_init(sup);
	(void)sampler_spawn(sup);
	console_spawn(sup);
	unsub_spawn(sup);
	if (pool_start(sup, pfd[0], pfd[1], err, sizeof(err)) == -1) {
		log_error("%s", err);
		return 2;
	}

	tick_ev = event_new(sup->base, -1, EV_PERSIST, tick_cb, NULL);
	if (tick_ev == NULL || evtimer_add(tick_ev,
	    tv_ms(&tv, TICK_MS)) == -1)
		fatalx("tick timer");
	if ((wd = sdnotify_watchdog_usec()) > 0) {
		watchdog_ev = event_new(sup->base, -1, EV_PERSIST, watchdog_cb,
		    NULL);
		wd /= 2;
		if (watchdog_ev == NULL || evtimer_add(watchdog_ev,
		    tv_ms(&tv, (int64_t)(wd / 1000))) == -1)
			fatalx("watchdog timer");
		sdnotify("WATCHDOG=1");
	}

	if (event_base_dispatch(sup->base) == -1)
		fatalx("event loop failed");

	reap_stragglers();
	log_info("stopped");
	return exit_code;
}
