/*
 * Loading the configuration, at start, for `-t` and on SIGHUP.  A file is
 * checked as a whole: the keys and rules of common/config.c, then the
 * worker's own checks (the templates it names), so that a broken template
 * is a configuration error, never a failing job.
 *
 * SIGHUP: read the configuration file again.  The new file is parsed into
 * a struct of its own and checked; only a valid one replaces the running
 * configuration, so a broken edit never touches a worker.  Settings bound
 * at start-up (the HTTP listener, the user) keep their old values until a
 * restart, with a warning.  A configuration that goes is wiped before it
 * is freed: it holds the secrets.  What runs with a copy of the old one
 * is told here: the pools roll their workers, the sampler and the console
 * are replaced.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config_value.h"
#include "console.h"
#include "log.h"
#include "pool.h"
#include "proc.h"
#include "reload.h"
#include "sampler.h"
#include "sdnotify.h"
#include "unsub_child.h"
#include "util.h"
#include "worker/worker.h"

struct config *
reload_load_config(const char *file, char *err, size_t errlen)
{
	struct config *cfg;

	if ((cfg = config_load(file, err, errlen)) == NULL)
		return NULL;
	if (worker_check_config(cfg, err, errlen) == -1) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void
reload_warn_log(void *arg, const char *sentence)
{
	log_warnx("%s", sentence);
}

void
reload_check_warnings(const struct config *cfg)
{
	(void)check_config(cfg, reload_warn_log, NULL);
}

void
reload_config(struct supervisor *s)
{
	struct config *ncfg, *old;
	char err[1024];
	const char *w;
	int i;

	if (s->draining) {
		log_info("SIGHUP ignored while stopping");
		return;
	}
	sdnotifyf("RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)(now_mono_ns() / 1000));
	log_info("reloading %s", s->cfg->path);
	ncfg = reload_load_config(s->cfg->path, err, sizeof(err));
	if (ncfg != NULL && !pool_registry_fits(ncfg, err, sizeof(err))) {
		config_free(ncfg);
		ncfg = NULL;
	}
	if (ncfg == NULL) {
		s->reloads_failed++;
		log_kv(LOG_LEVEL_ERROR, "reload failed; keeping the running "
		    "configuration", "error", err, NULL);
		sdnotify("READY=1\nSTATUS=reload failed");
		return;
	}
	if (strcmp(ncfg->supervisor.listen, s->cfg->supervisor.listen) != 0) {
		log_warnx("supervisor.listen changed: takes effect at restart");
		strlcpy(ncfg->supervisor.listen, s->cfg->supervisor.listen,
		    sizeof(ncfg->supervisor.listen));
	}
	if (strcmp(ncfg->supervisor.console_listen,
	    s->cfg->supervisor.console_listen) != 0) {
		log_warnx("supervisor.console_listen changed: takes effect at "
		    "restart");
		strlcpy(ncfg->supervisor.console_listen,
		    s->cfg->supervisor.console_listen,
		    sizeof(ncfg->supervisor.console_listen));
	}
	if (strcmp(ncfg->supervisor.unsubscribe_listen,
	    s->cfg->supervisor.unsubscribe_listen) != 0) {
		log_warnx("supervisor.unsubscribe_listen changed: takes effect "
		    "at restart");
		strlcpy(ncfg->supervisor.unsubscribe_listen,
		    s->cfg->supervisor.unsubscribe_listen,
		    sizeof(ncfg->supervisor.unsubscribe_listen));
	}
	/* The address kept must still be one the new file allows. */
	if (ncfg->supervisor.console_listen[0] != '\0' &&
	    !config_listen_loopback(ncfg->supervisor.console_listen) &&
	    ncfg->supervisor.console_password[0] == '\0') {
		s->reloads_failed++;
		log_kv(LOG_LEVEL_ERROR, "reload failed; keeping the running "
		    "configuration", "error", "supervisor.console_listen stays "
		    "on an address that is not loopback until a restart: it "
		    "needs console_password", NULL);
		config_free(ncfg);
		sdnotify("READY=1\nSTATUS=reload failed");
		return;
	}
	if (strcmp(ncfg->supervisor.user, s->cfg->supervisor.user) != 0) {
		log_warnx("supervisor.user changed: takes effect at restart");
		strlcpy(ncfg->supervisor.user, s->cfg->supervisor.user,
		    sizeof(ncfg->supervisor.user));
	}

	old = s->cfg;
	s->cfg = ncfg;
	log_configure(ncfg->supervisor.log_level, ncfg->supervisor.log_format);
	if (strcmp(ncfg->supervisor.log_file, old->supervisor.log_file) != 0) {
		if (log_open_file(ncfg->supervisor.log_file) == -1)
			log_warn("open log_file %s", ncfg->supervisor.log_file);
		/* Workers pick the new file up at their next loop. */
		atomic_fetch_add(&s->sb->log_gen, 1);
	}
	/* Before the roll forks the new workers, which inherit it. */
	if (ncfg->supervisor.core_dumps != old->supervisor.core_dumps)
		proc_core_dumps(ncfg);
	pool_reconfigure();
	sampler_reload(s);
	console_reload(s);
	unsub_reload(s);
	config_free(old);
	s->reloads_ok++;
	s->last_reload_ok = now_real();
	log_info("configuration reloaded: %d pool(s)", ncfg->npools);
	for (i = 0; (w = config_warning(ncfg, i)) != NULL; i++)
		log_warnx("%s", w);
	reload_check_warnings(ncfg);
	sdnotify("READY=1\nSTATUS=reloaded");
}
