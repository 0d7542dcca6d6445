/*
 * workflow — the typed model of a GitHub Actions workflow file, checked
 * against the subset of the language kiln runs today. Every error names the
 * offending node as "file:line:col: message".
 *
 * Parts kiln does not model yet (on:, strategy, services, container, ...)
 * are type-checked loosely and kept as borrowed kiln_ynode pointers into the
 * parsed document, which the workflow owns; later stages (triggers, matrix,
 * services) read them from there with their positions intact. Every step and
 * job also points at its own node so that later stages (expressions) can
 * report positions inside it.
 */
#ifndef KILN_WORKFLOW_H
#define KILN_WORKFLOW_H

#include "common/util.h"
#include "common/yaml.h"

typedef struct kiln_kv {
	char *key;
	char *value;
} kiln_kv; /* ordered */

typedef struct kiln_env {
	kiln_kv *v;
	size_t n;
} kiln_env;

typedef struct kiln_step {
	char *id, *name, *run, *uses, *shell, *working_directory, *if_cond;
	kiln_env env;
	kiln_env with;
	int line, col;              /* the step's mapping */
	char *continue_on_error;    /* "true", "false", an expression, or NULL */
	double timeout_minutes;     /* 0 = none */
	char *timeout_minutes_expr; /* when written as ${{ ... }}; timeout_minutes is 0 then */
	const kiln_ynode *node;     /* borrowed from the workflow's document */
} kiln_step;

typedef struct kiln_job {
	char *id;          /* the key under jobs: */
	char *name;        /* name: or NULL */
	kiln_strv runs_on; /* string or list; NULL-terminated strv */
	kiln_strv needs;   /* string or list */
	kiln_env env;
	char *if_cond;
	double timeout_minutes; /* 0 = default (360) */
	char *defaults_shell, *defaults_working_directory;
	kiln_step *steps;
	size_t nsteps;
	int line, col;              /* the job's key */
	size_t *needs_index;        /* needs.n indexes into the workflow's jobs */
	char *runs_on_group;        /* runs-on: {group: ...}, or NULL */
	char *timeout_minutes_expr; /* when written as ${{ ... }} */
	char *continue_on_error;    /* as for steps */
	char *uses;                 /* reusable workflow call, or NULL */
	kiln_env with;              /* its inputs */
	/* Accepted, not yet modelled: borrowed raw nodes, NULL when absent. */
	const kiln_ynode *strategy, *outputs, *container, *services, *environment, *concurrency,
	    *permissions, *secrets;
	const kiln_ynode *node; /* the job's mapping */
} kiln_job;

typedef struct kiln_workflow {
	char *file; /* as given to the parser, e.g. ".github/workflows/ci.yml" */
	char *name; /* name: or NULL */
	kiln_env env;
	char *defaults_shell, *defaults_working_directory;
	kiln_job *jobs;
	size_t njobs;   /* in file order */
	char *run_name; /* run-name: or NULL */
	/* Accepted, not yet modelled: borrowed raw nodes, NULL when absent. */
	const kiln_ynode *on, *permissions, *concurrency;
	kiln_ynode *doc; /* the parsed document; owned */
} kiln_workflow;

/* Parses and validates a workflow; on error returns <0 with "file:line:col: message" in
 * kiln_errmsg(). */
int kiln_workflow_parse(const char *file, const char *text, size_t len, kiln_workflow **out);
/* As kiln_workflow_parse, with explicit YAML limits (NULL = defaults). */
int kiln_workflow_parse_limits(const char *file, const char *text, size_t len,
                               const kiln_yaml_limits *lim, kiln_workflow **out);
/* Frees wf and everything it owns; NULL is a no-op. */
void kiln_workflow_free(kiln_workflow *wf);
/* For _cleanup_(kiln_workflow_freep). */
void kiln_workflow_freep(kiln_workflow **wf);
/* Whether `on:` names the event (a string, a list, or a mapping key); no `on:` counts as yes. */
bool kiln_workflow_triggers(const kiln_workflow *wf, const char *event);
/* The job with this id, or NULL. */
const kiln_job *kiln_workflow_job(const kiln_workflow *wf, const char *id);
/* Fills order[] (njobs entries, indexes into wf->jobs) so each job comes after its needs. */
void kiln_workflow_order(const kiln_workflow *wf, size_t *order);
/* The value of key in env, or NULL (the last one if repeated). */
const char *kiln_env_get(const kiln_env *env, const char *key);

#endif
