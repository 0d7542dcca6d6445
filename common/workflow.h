/*
 * workflow — the typed model of a GitHub Actions workflow file: every key of
 * the workflow syntax, checked the way GitHub checks it, with positions kept.
 * Every error names the offending node as "file:line:col: message".
 *
 * The workflow owns the parsed YAML document; the model points into it
 * (`node` fields) wherever a later stage evaluates expressions or reports
 * positions: job and step mappings, `if`, env/with/outputs values
 * (kiln_kv.node), `strategy.matrix`, concurrency, containers. Strings that
 * may hold `${{ }}` are kept as written (a lone `${{ 'text' }}` is the text, as for
 * GitHub); evaluating them is the caller's job.
 *
 * Parsing checks what GitHub's own parser checks (keys, types, ids, needs,
 * events and their activity types, cron schedules, dispatch and call
 * inputs, expression syntax and the contexts and functions allowed at each
 * place), plus what GitHub's service refuses on top (branches with
 * branches-ignore, a choice default outside its options, malformed `uses`,
 * jobs without steps, matrices that cannot expand). Parsing does not stop at
 * the first problem: kiln_workflow_parse() reports the first one found,
 * kiln_workflow_check() hands back all of them.
 */
#ifndef KILN_WORKFLOW_H
#define KILN_WORKFLOW_H

#include "common/cron.h"
#include "common/util.h"
#include "common/yaml.h"

typedef struct kiln_kv {
	char *key;
	char *value;            /* the scalar as written ("" for null) */
	const kiln_ynode *node; /* the value's node; borrowed from the workflow's document */
} kiln_kv;                      /* ordered */

typedef struct kiln_env {
	kiln_kv *v;
	size_t n;
} kiln_env;

/* Token permission levels. */
typedef enum kiln_perm {
	KILN_PERM_UNSET = 0, /* not given */
	KILN_PERM_NONE,
	KILN_PERM_READ,
	KILN_PERM_WRITE,
} kiln_perm;

typedef struct kiln_perm_scope {
	char *scope; /* "contents", "id-token", ... */
	kiln_perm level;
} kiln_perm_scope;

/* permissions: read-all | write-all | {scope: read|write|none} */
typedef struct kiln_permissions {
	bool set;      /* the key was written */
	kiln_perm all; /* READ for read-all, WRITE for write-all, UNSET for a mapping */
	kiln_perm_scope *scopes;
	size_t nscopes;
} kiln_permissions;

/* concurrency: GROUP | {group, cancel-in-progress, queue} */
typedef struct kiln_concurrency {
	char *group;              /* NULL when absent; may hold ${{ }} */
	char *cancel_in_progress; /* "true", "false", an expression, or NULL */
	char *queue;              /* "single", "max" or NULL */
	const kiln_ynode *node;
} kiln_concurrency;

/* A job container or a service container. */
typedef struct kiln_container {
	char *id;    /* services: the service's key; NULL for the job container */
	char *image; /* may hold ${{ }}; the whole definition may be one expression (then only this)
	              */
	char *username, *password; /* credentials */
	kiln_env env;
	kiln_strv ports, volumes;
	char *options;
	char *entrypoint, *command; /* services only */
	char *env_expr;             /* env: written as a single expression, or NULL */
	const kiln_ynode *node;
} kiln_container;

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
	/* The raw nodes, NULL when absent (the typed forms follow). */
	const kiln_ynode *strategy, *outputs, *container, *services, *environment, *concurrency,
	    *permissions, *secrets;
	const kiln_ynode *node; /* the job's mapping */

	/* strategy */
	const kiln_ynode *matrix; /* strategy.matrix (a mapping or one expression), or NULL */
	bool fail_fast;           /* default true */
	char *fail_fast_expr;     /* when an expression */
	int max_parallel;         /* 0 = unlimited */
	char *max_parallel_expr;  /* when an expression */
	char *strategy_expr;      /* strategy: written as one expression */
	/* the rest, typed */
	kiln_env output_defs;          /* outputs: name -> value (expressions kept) */
	kiln_container *container_def; /* NULL when none */
	kiln_container *service_defs;
	size_t nservice_defs;
	char *environment_name, *environment_url; /* environment: NAME | {name, url} */
	kiln_concurrency concurrency_def;
	kiln_permissions permissions_def;
	bool secrets_inherit;   /* secrets: inherit */
	kiln_env secret_values; /* secrets: {NAME: value} */
	bool is_call;           /* a reusable-workflow call (uses:) */
	bool uses_local;        /* uses: ./.github/workflows/x.yml */
} kiln_job;

/* Which filters an event was given (kiln_event.filters). */
enum {
	KILN_FILTER_BRANCHES = 1u << 0,
	KILN_FILTER_BRANCHES_IGNORE = 1u << 1,
	KILN_FILTER_TAGS = 1u << 2,
	KILN_FILTER_TAGS_IGNORE = 1u << 3,
	KILN_FILTER_PATHS = 1u << 4,
	KILN_FILTER_PATHS_IGNORE = 1u << 5,
	KILN_FILTER_TYPES = 1u << 6,
	KILN_FILTER_WORKFLOWS = 1u << 7,
	KILN_FILTER_NAMES = 1u << 8,
	KILN_FILTER_VERSIONS = 1u << 9,
};

typedef struct kiln_schedule {
	char *cron;     /* as written */
	char *timezone; /* or NULL */
	kiln_cron spec; /* parsed */
	const kiln_ynode *node;
} kiln_schedule;

typedef enum kiln_input_type {
	KILN_INPUT_STRING = 0,
	KILN_INPUT_BOOLEAN,
	KILN_INPUT_NUMBER,
	KILN_INPUT_CHOICE,
	KILN_INPUT_ENVIRONMENT,
} kiln_input_type;

/* An input of workflow_dispatch or workflow_call. */
typedef struct kiln_input {
	char *name, *description;
	kiln_input_type type; /* string when not given */
	bool required;
	char *default_value; /* as written, or NULL */
	kiln_strv options;   /* choice */
	const kiln_ynode *node;
} kiln_input;

/* An output of workflow_call. */
typedef struct kiln_call_output {
	char *name, *description, *value;
	const kiln_ynode *node;
} kiln_call_output;

/* A secret of workflow_call. */
typedef struct kiln_call_secret {
	char *name, *description;
	bool required;
} kiln_call_secret;

typedef struct kiln_event {
	char *name;       /* "push", "pull_request", ... */
	unsigned filters; /* KILN_FILTER_* given */
	kiln_strv branches, branches_ignore, tags, tags_ignore, paths, paths_ignore, types,
	    workflows, names, versions;
	kiln_schedule *schedules; /* schedule */
	size_t nschedules;
	kiln_input *inputs; /* workflow_dispatch, workflow_call */
	size_t ninputs;
	kiln_call_output *outputs; /* workflow_call */
	size_t noutputs;
	kiln_call_secret *secrets; /* workflow_call */
	size_t nsecrets;
	int line, col;          /* where the event is named */
	const kiln_ynode *node; /* its configuration, or NULL */
} kiln_event;

typedef struct kiln_workflow {
	char *file; /* as given to the parser, e.g. ".github/workflows/ci.yml" */
	char *name; /* name: or NULL */
	kiln_env env;
	char *defaults_shell, *defaults_working_directory;
	kiln_job *jobs;
	size_t njobs;   /* in file order */
	char *run_name; /* run-name: or NULL */
	/* The raw nodes, NULL when absent (typed forms below). */
	const kiln_ynode *on, *permissions, *concurrency;
	kiln_ynode *doc; /* the parsed document; owned */

	char *description;  /* description: or NULL */
	kiln_event *events; /* on:, in the order written */
	size_t nevents;
	kiln_permissions permissions_def;
	kiln_concurrency concurrency_def;
	char *env_expr; /* env: written as a single expression, or NULL */
} kiln_workflow;

/* Options for kiln_workflow_check. */
typedef struct kiln_workflow_opts {
	const kiln_yaml_limits *limits; /* NULL = defaults */
	bool strict; /* lint: also refuse what GitHub lets through but is surely a mistake
	                (the matrix context in a job without a strategy) */
} kiln_workflow_opts;

/* Parses and validates a workflow; on error returns <0 with the first problem,
 * "file:line:col: message", in kiln_errmsg(). */
int kiln_workflow_parse(const char *file, const char *text, size_t len, kiln_workflow **out);
/* As kiln_workflow_parse, with explicit YAML limits (NULL = defaults). */
int kiln_workflow_parse_limits(const char *file, const char *text, size_t len,
                               const kiln_yaml_limits *lim, kiln_workflow **out);
/* Parses and validates, appending every problem ("file:line:col: message", in the order found)
 * to `problems`. Returns 0 when there is none (and *out, if out is not NULL, gets the workflow),
 * else -EINVAL (or the YAML layer's error) with the first problem in kiln_errmsg(). */
int kiln_workflow_check(const char *file, const char *text, size_t len,
                        const kiln_workflow_opts *opts, kiln_strv *problems, kiln_workflow **out);
/* Frees wf and everything it owns; NULL is a no-op. */
void kiln_workflow_free(kiln_workflow *wf);
/* Free what an env map or a step holds (the structs themselves are the caller's); for the
   action.yml loader, which shares these types. */
void kiln_env_free(kiln_env *e);
void kiln_step_free(kiln_step *s);
/* For _cleanup_(kiln_workflow_freep). */
void kiln_workflow_freep(kiln_workflow **wf);
/* Whether `on:` names the event (a string, a list, or a mapping key); no `on:` counts as yes. */
bool kiln_workflow_triggers(const kiln_workflow *wf, const char *event);
/* The event's configuration under `on:`, or NULL. */
const kiln_event *kiln_workflow_event(const kiln_workflow *wf, const char *name);
/* The job with this id, or NULL. */
const kiln_job *kiln_workflow_job(const kiln_workflow *wf, const char *id);
/* Fills order[] (njobs entries, indexes into wf->jobs) so each job comes after its needs. */
void kiln_workflow_order(const kiln_workflow *wf, size_t *order);
/* The value of key in env, or NULL (the last one if repeated). */
const char *kiln_env_get(const kiln_env *env, const char *key);
/* The level of `scope` under p: the scope's own, else read-all/write-all's, else NONE once any
 * permissions are set, else UNSET (the repository's default applies). */
kiln_perm kiln_permissions_get(const kiln_permissions *p, const char *scope);
/* "string", "boolean", "number", "choice", "environment". */
const char *kiln_input_type_name(kiln_input_type t);

/* The event catalogue (workflow_events.c). */
/* Whether GitHub knows the event name. */
bool kiln_workflow_event_known(const char *name);
/* The activity types GitHub allows for the event (NULL-terminated), or NULL when it takes no
 * `types` or any (repository_dispatch). */
const char *const *kiln_workflow_event_types(const char *event);
/* The KILN_FILTER_* keys the event accepts in its mapping form (0: only null). */
unsigned kiln_workflow_event_filters(const char *event);

/* The contexts and functions GitHub allows in expressions at a place, in the schema's notation:
 * named values ("github", "matrix") and functions with their arities ("hashFiles(1,255)"). */
typedef enum kiln_expr_place {
	KILN_PLACE_NONE = 0,     /* no expression allowed */
	KILN_PLACE_RUN_NAME,     /* run-name, workflow concurrency, workflow_call input defaults */
	KILN_PLACE_WORKFLOW_ENV, /* workflow env */
	KILN_PLACE_CALL_OUTPUT,  /* on.workflow_call.outputs.*.value */
	KILN_PLACE_JOB_IF,       /* jobs.*.if */
	KILN_PLACE_STRATEGY,     /* jobs.*.strategy */
	KILN_PLACE_JOB,          /* name, runs-on, timeout, container, services, environment, ... */
	KILN_PLACE_JOB_ENV,      /* jobs.*.env */
	KILN_PLACE_JOB_WITH,     /* jobs.*.with (reusable workflow inputs) */
	KILN_PLACE_JOB_SECRETS,  /* jobs.*.secrets.* */
	KILN_PLACE_JOB_DEFAULTS, /* jobs.*.defaults.run */
	KILN_PLACE_RUNNER,       /* jobs.*.outputs, container env */
	KILN_PLACE_RUNNER_NO_SECRETS, /* environment url */
	KILN_PLACE_CREDENTIALS,       /* container credentials */
	KILN_PLACE_STEP_IF,           /* steps.*.if */
	KILN_PLACE_STEP,              /* steps.*: name, run, env, with, working-directory, ... */
	KILN_PLACE_COUNT_,
} kiln_expr_place;
/* NULL-terminated list for a place (an empty list for KILN_PLACE_NONE). */
const char *const *kiln_workflow_expr_allowed(kiln_expr_place place);

#endif
