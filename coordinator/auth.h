/*
 * auth.h — the coordinator's offline administration, for kiln-coordinator's
 * subcommands: API and registration tokens (auth.c) and rotating the key
 * that seals secrets (secrets.c). Each opens the store in cfg->data_dir on a
 * connection of its own, so it works beside a running coordinator or not.
 */
#ifndef KILN_COORD_AUTH_H
#define KILN_COORD_AUTH_H

#include <stdbool.h>
#include <stdio.h>

#include "coordinator/coord.h"

typedef struct coord_token_args {
	const char *verb;  /* create | list | revoke */
	const char *scope; /* create: read | run | admin */
	const char *name;  /* create: a label */
	bool registration; /* create: an agent registration token */
	const char *id;    /* revoke: the token's id */
} coord_token_args;

/* `token create|list|revoke`: prints to out; a created token is on the last line. */
int coord_token_command(const coord_config *cfg, const coord_token_args *args, FILE *out);

/* `key rotate`: re-seals every sealed value under a new key in one transaction, then
   replaces DATA/secret.key (the old key stays as secret.key.old until that is done). */
int coord_key_rotate(const coord_config *cfg, FILE *out);

#endif
