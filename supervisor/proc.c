/*
 * The supervisor's children: workers, requeue children, the sampler, and
 * whatever kind comes next.  Each is made the same way, as OpenBSD
 * daemons' and tmux's proc.c make theirs: the child is tied to the
 * supervisor's life, starts from a clean slate of signals and
 * descriptors, reopens the log, names itself, and runs the function of
 * its kind.  The supervisor keeps a table of the children it forked; when
 * one is reaped, the table says whose it was, and that owner's callback
 * hears of it.  No module reaps a child of another, and none needs to
 * know the others exist.
 *
 * The core-dump policy belongs here too: set on the supervisor, it is
 * what every child inherits at fork.
 */
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "coredump.h"
#include "log.h"
#include "proc.h"
#include "util.h"

#define SERVICE_RESPAWN_MIN_MS 1000	/* after a crash */
#define SERVICE_RESPAWN_MAX_MS 30000
#define SERVICE_HEALTHY_MS 60000	/* a run this long resets the delay */

struct proc {
	LIST_ENTRY(proc) entry;
	pid_t pid;
	const struct proc_type *type;
	void *arg;
};

static LIST_HEAD(, proc) procs = LIST_HEAD_INITIALIZER(procs);
static int nprocs;
static struct supervisor *psup;

void
proc_init(struct supervisor *s)
{
	psup = s;
}

/*
 * In the child: default signal dispositions, an empty mask, and every
 * descriptor closed but stdin, stdout, stderr and the nkeep of keep; the
 * log reopened.
 */
static void
proc_child_reset(const int *keep, int nkeep)
{
	struct sigaction sa;
	sigset_t none;
	int sig, fd, next, i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	/* libevent's handlers would write to a socketpair we close below. */
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/*
	 * The listeners, the notify pipe's read end, libevent's descriptors:
	 * none is the child's.  Back to stderr first, so that the log module
	 * holds no descriptor closed under it.
	 */
	log_open_file(NULL);
	for (fd = 3; ; fd = next + 1) {
		/* The next descriptor to keep at or above fd, if any. */
		for (next = -1, i = 0; i < nkeep; i++)
			if (keep[i] >= fd && (next == -1 || keep[i] < next))
				next = keep[i];
		if (next == -1) {
			close_range((unsigned)fd, ~0U, 0);
			break;
		}
		if (next > fd)
			close_range((unsigned)fd, (unsigned)next - 1, 0);
	}
	if (log_open_file(psup->cfg->supervisor.log_file) == -1)
		log_warn("open %s", psup->cfg->supervisor.log_file);
}

pid_t
proc_fork(const struct proc_type *t, void *arg, const int *keep, int nkeep)
{
	struct proc *p;
	pid_t pid, parent = getpid();

	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		/*
		 * No child outlives the supervisor.  If the supervisor died
		 * between fork() and prctl(), the death signal would never
		 * come: check the parent is still ours.
		 */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent)
			_exit(1);
		proc_child_reset(keep, nkeep);
		log_set_proc(t->name, NULL, -1);
		setproctitle("-digestd: %s", t->name);
		t->run(arg);
		/* run must not return; should it, the owner sees a crash. */
		_exit(1);
	}
	p = xcalloc(1, sizeof(*p));
	p->pid = pid;
	p->type = t;
	p->arg = arg;
	LIST_INSERT_HEAD(&procs, p, entry);
	nprocs++;
	return pid;
}

void
proc_reap(void)
{
	struct proc *p;
	pid_t pid;
	int status;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid == -1 && errno == EINTR)
			continue;
		if (pid <= 0)
			break;
		LIST_FOREACH(p, &procs, entry)
			if (p->pid == pid)
				break;
		if (p == NULL) {
			log_debug("reaped unknown child %d", (int)pid);
			continue;
		}
		LIST_REMOVE(p, entry);
		nprocs--;
		/* Out of the table first: the callback may fork again. */
		if (p->type->exited != NULL)
			p->type->exited(pid, status, p->arg);
		free(p);
	}
}

int
proc_live(void)
{
	return nprocs;
}

void
proc_core_dumps(const struct config *cfg)
{
	if (coredump_apply(cfg->supervisor.core_dumps) == -1)
		log_warn("core_dumps = %s", cfg->supervisor.core_dumps ? "yes" :
		    "no");
	else if (cfg->supervisor.core_dumps)
		log_warnx("core_dumps = yes: a core file of any digestd "
		    "process carries the configuration's secrets");
}

static void proc_service_respawn_in(struct proc_service *, int64_t);

static void
proc_service_exited(pid_t pid, int status, void *arg)
{
	struct proc_service *svc = arg;
	int64_t ran_ms, delay;

	if (pid != svc->pid)
		return;
	svc->pid = 0;
	if (svc->s->draining)
		return;
	ran_ms = (now_mono_ns() - svc->spawned_ns) / 1000000;
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) {
		/* Replaced on purpose (a reload): no reason to wait. */
		delay = 0;
	} else {
		log_warnx("%s %d exited (%s %d); restarting", svc->name,
		    (int)pid, WIFSIGNALED(status) ? "signal" : "status",
		    WIFSIGNALED(status) ? WTERMSIG(status) :
		    WEXITSTATUS(status));
		/* Back off when it keeps dying, so a crash cannot spin. */
		if (ran_ms >= SERVICE_HEALTHY_MS)
			backoff_reset(&svc->backoff);
		delay = backoff_step(&svc->backoff, SERVICE_RESPAWN_MIN_MS,
		    SERVICE_RESPAWN_MAX_MS);
	}
	proc_service_respawn_in(svc, delay);
}

static void
proc_service_spawn(struct proc_service *svc)
{
	pid_t pid;

	if ((pid = proc_fork(&svc->type, svc, svc->fds, svc->nfds)) == -1) {
		log_warn("fork %s", svc->name);
		proc_service_respawn_in(svc, SERVICE_RESPAWN_MAX_MS);
		return;
	}
	svc->pid = pid;
	svc->spawned_ns = now_mono_ns();
	log_debug("%s started: pid %d", svc->name, (int)pid);
}

static void
proc_service_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc_service *svc = arg;

	if (svc->s->draining || svc->pid > 0)
		return;
	proc_service_spawn(svc);
}

static void
proc_service_respawn_in(struct proc_service *svc, int64_t ms)
{
	struct timeval tv;

	if (svc->s->base == NULL)
		return;
	if (svc->timer == NULL && (svc->timer = evtimer_new(svc->s->base,
	    proc_service_timer_cb, svc)) == NULL) {
		log_warnx("%s: no timer; not restarted", svc->name);
		return;
	}
	evtimer_add(svc->timer, tv_ms(&tv, ms));
}

void
proc_service_start(struct proc_service *svc, struct supervisor *s)
{
	svc->s = s;
	svc->type.name = svc->name;
	svc->type.run = svc->run;
	svc->type.exited = proc_service_exited;
	if (svc->nfds == 0)
		return;
	proc_service_spawn(svc);
}

void
proc_service_reload(struct proc_service *svc)
{
	if (svc->s == NULL || svc->s->draining || svc->pid <= 0)
		return;
	log_debug("configuration reloaded: replacing %s %d", svc->name,
	    (int)svc->pid);
	kill(svc->pid, SIGTERM);
}

void
proc_service_stop(struct proc_service *svc)
{
	if (svc->pid > 0)
		kill(svc->pid, SIGKILL);
}
