/*
 * What a configuration check warns about beyond the file's own rules:
 * settings that are valid but cannot work as written.
 */
#ifndef DIGESTD_CHECK_H
#define DIGESTD_CHECK_H

#include <stddef.h>

#include "config.h"

/*
 * Call warn(arg, sentence) for each thing cfg sets up that cannot work: a
 * queue the scheduler fills that no pool consumes, a pool whose queue
 * nothing fills, a maildir this process cannot write.  Returns how many.
 */
int check_config(const struct config *cfg,
    void (*warn)(void *arg, const char *sentence), void *arg);

#endif
