/*
 * checkout — the built-in actions/checkout: the job's repository (or
 * another one) at a commit, from the agent's bare mirror per URL, into the
 * workspace; in local mode, a copy of the working tree as it is.
 */
#ifndef KILN_AGENT_CHECKOUT_H
#define KILN_AGENT_CHECKOUT_H

#include <jansson.h>

#include "agent/internal.h"

typedef struct agent_checkout_ctx {
	agent_job *j;
	const char *ws;   /* GITHUB_WORKSPACE */
	json_t *with;     /* the step's inputs, evaluated: repository, ref, path, fetch-depth… */
	void (*log)(void *arg, const char *text); /* a line for the job's log */
	void *log_arg;
} agent_checkout_ctx;

/* Runs actions/checkout; 0 or a negative errno with a message. */
int agent_checkout(const agent_checkout_ctx *cc);

/* `rel` below the workspace `ws` (absolute paths inside it too), or NULL if it would leave it. */
char *agent_inside(const char *ws, const char *rel);

#endif
