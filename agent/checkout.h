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

/* Runs actions/checkout (inputs and rules: agent/checkout.c); 0 or a negative errno with a
   message naming the repository and the ref. Never prints the token. */
int agent_checkout(const agent_checkout_ctx *cc);

/* `rel` below the workspace `ws` (absolute paths inside it too), with "." and empty parts dropped,
   or NULL if it would leave it (any ".." part). Lexical only: agent_checkout also refuses a path
   through a symlink. Owned. */
char *agent_inside(const char *ws, const char *rel);

/* The URL of `owner_name` ("owner/name"): <server>/owner/name when `server` is given, else
   `job_url` with its last two path components replaced (a ".git" suffix kept; scheme://host and
   an scp-like host: stay). NULL with a message when job_url has too few components. Owned. */
char *agent_checkout_repo_url(const char *job_url, const char *server, const char *owner_name);

#endif
