/*
 * The maildir transport: each message, byte for byte as it would be sent
 * (CRLF), is written into maildir.path/tmp/ under a unique name, fsynced,
 * then renamed into new/, so that a reader never sees half a message.
 *
 * A message is reported delivered only once it would survive a power cut:
 * its file fsynced, its rename into new/ done, and new/ fsynced after it.
 * The job's checkpoint follows each outcome (on the amqp backend it is
 * saved in Redis at once), so an outcome reported before the directory
 * sync would let the checkpoint pass a message that a power cut loses.
 *
 * A flush writes its messages into tmp/ first and syncs them together
 * (the file system commits their data in one go), then moves them one at
 * a time: rename, directory sync, outcome.  A worker killed during a
 * flush thus leaves at most the message in flight in new/ without an
 * outcome, the one its next attempt sends again.  The maildir (tmp, new,
 * cur) is created if it is missing.
 */
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "transport.h"
#include "util.h"

/*
 * A maildir flush syncs its messages' files together, then renames each
 * into new/ and syncs the directory before reporting it: 16 a flush share
 * the file sync.
 */
#define MAILDIR_FLUSH		16

/* A queued message: the transport's own copy. */
struct mdmsg {
	struct email e;
	char name[256];		/* its file name in tmp/ and new/ */
};

struct transport {
	char path[PATH_MAX];
	char host[128];		/* hostname, made safe for a file name */
	int tmpfd;		/* tmp/ and new/, opened once */
	int newfd;
	uint64_t counter;
	struct mdmsg *q;
	size_t nq;
	size_t capq;
};

static void
maildir_msg_clear(struct mdmsg *m)
{
	free((char *)m->e.rcpt);
	free((char *)m->e.message_id);
	free((char *)m->e.job_id);
	free((char *)m->e.data);
	memset(m, 0, sizeof(*m));
}

/* mkdir -p path with mode 0700; 0 or -1 with errno. */
static int
maildir_mkdirs(const char *path)
{
	char buf[PATH_MAX], *p;

	if (strlcpy(buf, path, sizeof(buf)) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0700) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

/* Create the maildir if needed and open tmp/ and new/. */
static int
maildir_ready(struct transport *t, char *err, size_t errlen)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char sub[PATH_MAX + 8];
	struct stat st;
	size_t i;

	if (t->tmpfd != -1) {
		/*
		 * A maildir removed under us would swallow every message
		 * written into its unlinked directories: start afresh.
		 */
		if (fstat(t->tmpfd, &st) == 0 && st.st_nlink > 0 &&
		    fstat(t->newfd, &st) == 0 && st.st_nlink > 0)
			return 0;
		close(t->tmpfd);
		close(t->newfd);
		t->tmpfd = t->newfd = -1;
	}
	if (maildir_mkdirs(t->path) == -1)
		goto fail;
	for (i = 0; i < 3; i++) {
		snprintf(sub, sizeof(sub), "%s/%s", t->path, subs[i]);
		if (mkdir(sub, 0700) == -1 && errno != EEXIST)
			goto fail;
	}
	snprintf(sub, sizeof(sub), "%s/tmp", t->path);
	if ((t->tmpfd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		goto fail;
	snprintf(sub, sizeof(sub), "%s/new", t->path);
	if ((t->newfd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		close(t->tmpfd);
		t->tmpfd = -1;
		goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "maildir %s: %s", t->path, strerror(errno));
	return -1;
}

static struct transport *
maildir_open(const struct config *cfg, char *err, size_t errlen)
{
	struct transport *t;
	char *p;

	if (cfg->maildir.path[0] == '\0') {
		snprintf(err, errlen, "[maildir] path is empty");
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	t->tmpfd = t->newfd = -1;
	strlcpy(t->path, cfg->maildir.path, sizeof(t->path));
	if (gethostname(t->host, sizeof(t->host)) == -1 || t->host[0] == '\0')
		strlcpy(t->host, "localhost", sizeof(t->host));
	t->host[sizeof(t->host) - 1] = '\0';
	/* '/' and ':' have meanings in a maildir name (maildir(5)). */
	for (p = t->host; *p != '\0'; p++)
		if (*p == '/' || *p == ':' || *p == '.')
			*p = '_';
	return t;
}

static int
maildir_send(struct transport *t, const struct email *e)
{
	struct mdmsg *m;
	struct timeval tv;
	char *data;

	if (t->nq == t->capq) {
		t->capq = t->capq ? t->capq * 2 : 64;
		t->q = wrealloc(t->q, t->capq * sizeof(*t->q));
	}
	m = &t->q[t->nq];
	memset(m, 0, sizeof(*m));
	m->e.uid = e->uid;
	m->e.rcpt = wstrdup(e->rcpt);
	m->e.message_id = wstrdup(e->message_id);
	m->e.job_id = wstrdup(e->job_id);
	data = wmalloc(e->len == 0 ? 1 : e->len);
	memcpy(data, e->data, e->len);
	m->e.data = data;
	m->e.len = e->len;
	/* time.M<usec>P<pid>Q<counter>.host: unique across processes. */
	gettimeofday(&tv, NULL);
	snprintf(m->name, sizeof(m->name), "%lld.M%06ldP%dQ%llu.%s",
	    (long long)tv.tv_sec, (long)tv.tv_usec, (int)getpid(),
	    (unsigned long long)++t->counter, t->host);
	t->nq++;
	return 0;
}

/* Messages written into tmp/ before any is synced. */
#define MAILDIR_SYNC_GROUP 32

/* Create and write one message in tmp/; its fd, or -1 with errno. */
static int
maildir_write_tmp(struct transport *t, struct mdmsg *m)
{
	const char *p = m->e.data;
	size_t left = m->e.len;
	ssize_t n;
	int fd, save;

	fd = openat(t->tmpfd, m->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600);
	if (fd == -1)
		return -1;
	while (left > 0) {
		if ((n = write(fd, p, left)) == -1) {
			if (errno == EINTR)
				continue;
			save = errno;
			close(fd);
			(void)unlinkat(t->tmpfd, m->name, 0);
			errno = save;
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	return fd;
}

/*
 * Write q[0 .. n) into tmp/, then sync them: the file system can commit
 * their data together.  Returns how many are on disk, in order; those
 * after the first failure are removed again, and err says why.
 */
static size_t
maildir_stage(struct transport *t, struct mdmsg *q, size_t n, char *err,
    size_t errlen)
{
	int fds[MAILDIR_SYNC_GROUP];
	size_t i, written, synced;

	for (written = 0; written < n; written++) {
		if ((fds[written] = maildir_write_tmp(t, &q[written])) == -1) {
			snprintf(err, errlen, "maildir %s: %s: %s", t->path,
			    q[written].name, strerror(errno));
			break;
		}
	}
	for (synced = 0; synced < written; synced++) {
		if (fsync(fds[synced]) == -1) {
			snprintf(err, errlen, "maildir %s: %s: %s", t->path,
			    q[synced].name, strerror(errno));
			break;
		}
	}
	for (i = 0; i < written; i++) {
		/* After a good fsync, close has nothing left to lose. */
		close(fds[i]);
		if (i >= synced)
			(void)unlinkat(t->tmpfd, q[i].name, 0);
	}
	return synced;
}

static int
maildir_flush(struct transport *t, transport_result_cb cb, void *arg,
    char *err, size_t errlen)
{
	struct mdmsg *m;
	size_t i, base, n, staged, moved;
	int rc = 0;

	if (t->nq == 0)
		return 0;
	if (maildir_ready(t, err, errlen) == -1) {
		rc = -1;
		goto out;
	}
	for (base = 0; base < t->nq && rc == 0; base += n) {
		n = t->nq - base;
		if (n > MAILDIR_SYNC_GROUP)
			n = MAILDIR_SYNC_GROUP;
		if ((staged = maildir_stage(t, t->q + base, n, err,
		    errlen)) < n)
			rc = -1;
		for (moved = 0; moved < staged; moved++) {
			m = &t->q[base + moved];
			if (renameat(t->tmpfd, m->name, t->newfd,
			    m->name) == -1) {
				snprintf(err, errlen, "maildir %s: %s: %s",
				    t->path, m->name, strerror(errno));
				rc = -1;
				break;
			}
			/*
			 * The rename is durable once new/ is synced: only
			 * then is the message delivered.  One that made it
			 * into new/ without the sync gets no outcome, and
			 * is sent again: twice rather than lost.
			 */
			if (fsync(t->newfd) == -1) {
				snprintf(err, errlen, "maildir %s: fsync "
				    "new/: %s", t->path, strerror(errno));
				rc = -1;
				moved++;
				break;
			}
			cb(arg, &m->e, TP_SENT, NULL);
		}
		/* Written but never moved: out of sight, removed. */
		for (i = moved; i < staged; i++)
			(void)unlinkat(t->tmpfd, t->q[base + i].name, 0);
	}
out:
	for (i = 0; i < t->nq; i++)
		maildir_msg_clear(&t->q[i]);
	t->nq = 0;
	if (rc == -1) {
		/* A failing disk: open the directories afresh next time. */
		if (t->tmpfd != -1)
			close(t->tmpfd);
		if (t->newfd != -1)
			close(t->newfd);
		t->tmpfd = t->newfd = -1;
	}
	return rc;
}

static size_t
maildir_flush_max(struct transport *t)
{
	return MAILDIR_FLUSH;
}

static void
maildir_close(struct transport *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nq; i++)
		maildir_msg_clear(&t->q[i]);
	free(t->q);
	if (t->tmpfd != -1)
		close(t->tmpfd);
	if (t->newfd != -1)
		close(t->newfd);
	free(t);
}

const struct transport_ops transport_maildir_ops = {
	.name = "maildir",
	.type = TRANSPORT_MAILDIR,
	.open = maildir_open,
	.send = maildir_send,
	.flush = maildir_flush,
	.flush_max = maildir_flush_max,
	.close = maildir_close,
};
