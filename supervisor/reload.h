/*
 * Loading the configuration (reload.c): at start, for `-t`, and again on
 * SIGHUP.
 */
#ifndef DIGESTD_RELOAD_H
#define DIGESTD_RELOAD_H

#include <stddef.h>

#include "config.h"
#include "supervisor.h"

/*
 * Load a configuration file and check it as a whole, the templates it
 * names included.  The new config (the caller's, config_free), or NULL
 * with err.
 */
struct config *reload_load_config(const char *file, char *err,
    size_t errlen);

/*
 * Log what cfg sets up that cannot work (check.c), at start and on
 * reload.
 */
void reload_check_warnings(const struct config *cfg);

/* SIGHUP: load the file again and, if valid, put it in force. */
void reload_config(struct supervisor *);

#endif
