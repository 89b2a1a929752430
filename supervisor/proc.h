/*
 * The supervisor's children, made one way (proc.c): fork, set the child
 * up, run it; when it is reaped, tell its owner.  Everything here runs in
 * the supervisor's event loop, and the callbacks are called from it.
 */
#ifndef DIGESTD_PROC_H
#define DIGESTD_PROC_H

#include <sys/types.h>

#include <stdint.h>

#include "backoff.h"
#include "config.h"
#include "http_server.h"
#include "supervisor.h"

struct event;

/*
 * A kind of child: one static instance per kind, in the file that owns
 * it.  Starting a new kind is a struct like this and one proc_fork().
 */
struct proc_type {
	/* The role: in every log line of the child, and its title. */
	const char *name;
	/*
	 * Runs in the child once it is set up (proc_fork), with the arg
	 * given to proc_fork.  Must not return: it exits the process.
	 */
	void (*run)(void *arg);
	/*
	 * Runs in the supervisor's loop when the child has been reaped, with
	 * the same arg; status is waitpid's.  May fork again at once.  NULL:
	 * nobody needs to know.
	 */
	void (*exited)(pid_t pid, int status, void *arg);
};

/* Set the module up; the config the children inherit is s->cfg's. */
void proc_init(struct supervisor *s);

/*
 * Fork a child of type t.  The child asks for SIGKILL when the supervisor
 * dies and checks that it has not already, gets default signal
 * dispositions and an empty mask, closes every descriptor but stdin,
 * stdout, stderr and the nkeep descriptors of keep (NULL, 0 for none),
 * reopens the log, takes its role and title ("digestd: NAME"), then runs
 * t->run(arg).  Returns the child's pid in the supervisor, or -1 (errno
 * set) when fork failed.
 */
pid_t proc_fork(const struct proc_type *t, void *arg, const int *keep,
    int nkeep);

/*
 * Reap every child that exited (SIGCHLD, and the tick since SIGCHLD
 * coalesces), calling its type's exited callback.
 */
void proc_reap(void);

/* Number of children forked and not yet reaped. */
int proc_live(void);

/*
 * Apply the config's core_dumps to this process, and so to every child
 * forked from now on.
 */
void proc_core_dumps(const struct config *);

/*
 * A service: a child that serves sockets the supervisor bound at start
 * (the web console, the unsubscribe endpoint) for as long as the
 * supervisor lives.  One static instance per kind, in the file that owns
 * it, with name, run and fds filled in; proc.c does the rest: restarted
 * when it dies (after 1 s, doubling to 30 s while it keeps dying, reset
 * by a minute's run), replaced at once after a reload so that it serves
 * the configuration in force, killed at exit.  run gets the service; its
 * supervisor is svc->s.
 */
struct proc_service {
	const char *name;
	void (*run)(void *svc);
	int fds[HTTP_LISTEN_MAX];
	int nfds;			/* 0: not configured, never started */

	/* proc.c's */
	struct supervisor *s;
	struct proc_type type;
	pid_t pid;			/* 0 while none runs */
	int64_t spawned_ns;
	struct backoff backoff;
	struct event *timer;		/* the restart */
};

/* Start the service's child (none when nothing is bound). */
void proc_service_start(struct proc_service *, struct supervisor *);
/* A reload put a new configuration in force: replace the child now. */
void proc_service_reload(struct proc_service *);
/* SIGKILL the child (at exit). */
void proc_service_stop(struct proc_service *);

#endif
