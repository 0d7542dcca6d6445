/*
 * workflow_events — the tables behind workflow checking: the events GitHub
 * knows with the filters and activity types each accepts, and the contexts
 * and functions GitHub's parser allows in expressions at each place of a
 * workflow. Both are transcribed from GitHub's workflow schema
 * (@actions/workflow-parser, workflow-v1.0.json), which the oracle tests
 * compare against.
 */
#include "common/workflow.h"

#include <string.h>

#define T(...) ((const char *const[]){__VA_ARGS__, NULL})

enum {
	F_BRANCHES = KILN_FILTER_BRANCHES | KILN_FILTER_BRANCHES_IGNORE,
	F_TAGS = KILN_FILTER_TAGS | KILN_FILTER_TAGS_IGNORE,
	F_PATHS = KILN_FILTER_PATHS | KILN_FILTER_PATHS_IGNORE,
	F_TYPES = KILN_FILTER_TYPES,
};

typedef struct event_def {
	const char *name;
	unsigned filters;
	const char *const *types; /* NULL: no list (any strings, or no types at all) */
} event_def;

static const char *const pr_types[] = {"assigned",
                                       "unassigned",
                                       "labeled",
                                       "unlabeled",
                                       "opened",
                                       "edited",
                                       "closed",
                                       "reopened",
                                       "synchronize",
                                       "converted_to_draft",
                                       "locked",
                                       "unlocked",
                                       "enqueued",
                                       "dequeued",
                                       "milestoned",
                                       "demilestoned",
                                       "ready_for_review",
                                       "review_requested",
                                       "review_request_removed",
                                       "auto_merge_enabled",
                                       "auto_merge_disabled",
                                       "stacked",
                                       NULL};

static const event_def events[] = {
    {"branch_protection_rule", F_TYPES, T("created", "edited", "deleted")},
    {"check_run", F_TYPES, T("completed", "created", "rerequested", "requested_action")},
    {"check_suite", F_TYPES, T("completed")},
    {"create", 0, NULL},
    {"delete", 0, NULL},
    {"deployment", 0, NULL},
    {"deployment_status", 0, NULL},
    {"discussion", F_TYPES,
     T("created", "edited", "deleted", "transferred", "pinned", "unpinned", "labeled", "unlabeled",
       "locked", "unlocked", "category_changed", "answered", "unanswered")},
    {"discussion_comment", F_TYPES, T("created", "edited", "deleted")},
    {"fork", 0, NULL},
    {"gollum", 0, NULL},
    {"image_version", F_TYPES | KILN_FILTER_NAMES | KILN_FILTER_VERSIONS,
     T("created", "ready", "deleted")},
    {"issue_comment", F_TYPES, T("created", "edited", "deleted")},
    {"issues", F_TYPES,
     T("opened", "edited", "deleted", "transferred", "pinned", "unpinned", "closed", "reopened",
       "assigned", "unassigned", "labeled", "unlabeled", "locked", "unlocked", "milestoned",
       "demilestoned", "field_added", "field_removed", "typed", "untyped")},
    {"label", F_TYPES, T("created", "edited", "deleted")},
    {"merge_group", F_TYPES | F_BRANCHES, T("checks_requested")},
    {"milestone", F_TYPES, T("created", "closed", "opened", "edited", "deleted")},
    {"page_build", 0, NULL},
    {"project", F_TYPES, T("created", "closed", "reopened", "edited", "deleted")},
    {"project_card", F_TYPES, T("created", "moved", "converted", "edited", "deleted")},
    {"project_column", F_TYPES, T("created", "updated", "moved", "deleted")},
    {"public", 0, NULL},
    {"pull_request", F_TYPES | F_BRANCHES | F_PATHS, pr_types},
    {"pull_request_comment", F_TYPES, T("created", "edited", "deleted")},
    {"pull_request_review", F_TYPES, T("submitted", "edited", "dismissed")},
    {"pull_request_review_comment", F_TYPES, T("created", "edited", "deleted")},
    {"pull_request_target", F_TYPES | F_BRANCHES | F_PATHS, pr_types},
    {"push", F_BRANCHES | F_TAGS | F_PATHS, NULL},
    {"registry_package", F_TYPES, T("published", "updated")},
    {"release", F_TYPES,
     T("published", "unpublished", "created", "edited", "deleted", "prereleased", "released")},
    {"repository_dispatch", F_TYPES, NULL},
    {"schedule", 0, NULL},
    {"status", 0, NULL},
    {"watch", F_TYPES, T("started")},
    {"workflow_call", 0, NULL},
    {"workflow_dispatch", 0, NULL},
    {"workflow_run", F_TYPES | KILN_FILTER_WORKFLOWS | F_BRANCHES,
     T("requested", "completed", "in_progress")},
};

static const event_def *find(const char *name)
{
	for (size_t i = 0; name && i < KILN_ARRAY_SIZE(events); i++)
		if (strcmp(events[i].name, name) == 0)
			return &events[i];
	return NULL;
}

bool kiln_workflow_event_known(const char *name)
{
	return find(name) != NULL;
}

const char *const *kiln_workflow_event_types(const char *event)
{
	const event_def *e = find(event);
	return e ? e->types : NULL;
}

unsigned kiln_workflow_event_filters(const char *event)
{
	const event_def *e = find(event);
	return e ? e->filters : 0;
}

/* ---- expression contexts ------------------------------------------------------------- */

#define BASE "github", "inputs", "vars"
#define STRAT BASE, "needs", "strategy", "matrix"
#define RUNNER STRAT, "secrets", "steps", "job", "runner", "env"

static const char *const *const places[KILN_PLACE_COUNT_] = {
    [KILN_PLACE_NONE] = T(NULL),
    [KILN_PLACE_RUN_NAME] = T(BASE),
    [KILN_PLACE_WORKFLOW_ENV] = T(BASE, "secrets"),
    [KILN_PLACE_CALL_OUTPUT] = T(BASE, "jobs"),
    [KILN_PLACE_JOB_IF] =
        T(BASE, "needs", "always(0,0)", "failure(0,MAX)", "cancelled(0,0)", "success(0,MAX)"),
    [KILN_PLACE_STRATEGY] = T(BASE, "needs"),
    [KILN_PLACE_JOB] = T(STRAT),
    [KILN_PLACE_JOB_ENV] = T(STRAT, "secrets"),
    [KILN_PLACE_JOB_WITH] = T(STRAT),
    [KILN_PLACE_JOB_SECRETS] = T(BASE, "needs", "secrets", "strategy", "matrix"),
    [KILN_PLACE_JOB_DEFAULTS] = T(BASE, "strategy", "matrix", "needs", "env"),
    [KILN_PLACE_RUNNER] = T(RUNNER),
    [KILN_PLACE_RUNNER_NO_SECRETS] = T(STRAT, "steps", "job", "runner", "env"),
    [KILN_PLACE_CREDENTIALS] = T(STRAT, "secrets", "env"),
    [KILN_PLACE_STEP_IF] = T(STRAT, "steps", "job", "runner", "env", "always(0,0)", "failure(0,0)",
                             "cancelled(0,0)", "success(0,0)", "hashFiles(1,255)"),
    [KILN_PLACE_STEP] = T(RUNNER, "hashFiles(1,255)"),
};

const char *const *kiln_workflow_expr_allowed(kiln_expr_place place)
{
	if ((unsigned)place >= KILN_PLACE_COUNT_)
		place = KILN_PLACE_NONE;
	return places[place];
}
