/*
 * config — the YAML settings files of kiln-coordinator and kiln-agent: a
 * mapping of `key: value`. A key the program does not know is refused with
 * its file:line:col; `key:` alone, and a file of comments only (the packaged
 * defaults), keep the defaults; values are strings, and one key may also be
 * given as a list (joined with commas, as agents' labels are).
 */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stddef.h>

/* Reads path: the value of keys[i] goes to *slots[i] (owned) unless *slots[i] is set
   already (a flag given on the command line wins). list_key (or NULL) may be a list.
   -ENOENT when the file is missing; -EINVAL with the position of what is wrong. */
int kiln_config_load(const char *path, const char *const *keys, char **const *slots, size_t n,
		     const char *list_key);

#endif
