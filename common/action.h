/*
 * action — the typed model of an action's metadata file (action.yml or
 * action.yaml), checked as GitHub's runner checks it (its action_yaml.json
 * schema): `inputs` with defaults, `outputs` with values, and `runs` for a
 * composite action (its steps, each a `run` step with a required `shell` or
 * a `uses` step), a Node action (`main`, `pre`, `post`) or a container
 * action. Unknown top-level keys (`author`, `branding`…) are allowed, as on
 * GitHub; unknown keys in `runs` and in composite steps are refused.
 *
 * Every error is "file:line:col: message" about the offending node. Strings
 * that may hold `${{ }}` are kept as written (their syntax and the contexts
 * they name are checked here); evaluating them is the caller's job.
 */
#ifndef KILN_ACTION_H
#define KILN_ACTION_H

#include <stdbool.h>
#include <stddef.h>

#include "common/workflow.h"
#include "common/yaml.h"

#define KILN_ACTION_MAX_BYTES (1u << 20) /* action.yml size read by the agent */

typedef enum kiln_action_kind {
	KILN_ACTION_COMPOSITE = 1,
	KILN_ACTION_NODE,   /* node12, node16, node20, node24 */
	KILN_ACTION_DOCKER, /* runs.using: docker */
} kiln_action_kind;

typedef struct kiln_action_input {
	char *name;          /* as written (case kept) */
	char *description;   /* or NULL */
	char *default_value; /* as written, may hold ${{ }}; NULL when there is none */
	bool required;
	char *deprecation;   /* deprecationMessage, or NULL */
} kiln_action_input;

typedef struct kiln_action_output {
	char *name;
	char *description; /* or NULL */
	char *value;       /* composite actions: an expression text; NULL otherwise */
} kiln_action_output;

typedef struct kiln_action {
	char *file; /* as given to the parser */
	char *name, *description;
	kiln_action_input *inputs;
	size_t ninputs;
	kiln_action_output *outputs;
	size_t noutputs;
	kiln_action_kind kind;
	char *using; /* runs.using as written ("composite", "node20", "docker"…) */
	/* KILN_ACTION_NODE */
	char *main, *pre, *post, *pre_if, *post_if;
	/* KILN_ACTION_DOCKER */
	char *image;
	/* KILN_ACTION_COMPOSITE: runs.steps, in the workflow's step shape (no timeout-minutes) */
	kiln_step *steps;
	size_t nsteps;
	kiln_ynode *doc; /* the parsed document; owned */
} kiln_action;

/* Parses and checks an action's metadata; on error returns <0 (-EINVAL, or the YAML layer's
   error) with "file:line:col: message" in kiln_errmsg(). */
int kiln_action_parse(const char *file, const char *text, size_t len, kiln_action **out);
/* Frees an action and everything it owns; NULL is a no-op. */
void kiln_action_free(kiln_action *a);
/* For _cleanup_(kiln_action_freep). */
void kiln_action_freep(kiln_action **a);
/* The declared input named `name` (compared without case, as GitHub does), or NULL. */
const kiln_action_input *kiln_action_input_get(const kiln_action *a, const char *name);
/* The environment variable GitHub sets for input `name`: "INPUT_" + the name upper-cased, spaces
   turned into '_'. Owned. */
char *kiln_action_input_env(const char *name);

#endif
