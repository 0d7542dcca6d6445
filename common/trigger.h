/*
 * trigger — whether an event starts a workflow: GitHub's filter patterns for
 * branches, tags and paths, the `on:` filters of each event (branches, tags,
 * paths and their -ignore forms, activity types, workflow_run's workflows),
 * `[skip ci]` in commit messages, and the typed inputs of workflow_dispatch.
 *
 * Filter patterns follow GitHub's cheat sheet: `*` is any run of characters
 * but `/`, `**` any run at all, `?` makes the character before it optional,
 * `+` repeats it once or more, `[a-z0-9]` is one character of a set, `\`
 * escapes, and in a list a pattern starting with `!` excludes what the
 * patterns before it included (the last pattern that matches decides).
 */
#ifndef KILN_TRIGGER_H
#define KILN_TRIGGER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "common/util.h"
#include "common/workflow.h"

/* Longest pattern and subject accepted; longer ones never match. */
#define KILN_FILTER_MAX 4096

/* Whether `s` matches the one filter pattern `pattern` (no leading `!` handling). */
bool kiln_filter_match(const char *pattern, const char *s);
/* Whether `s` is included by a list of patterns, `!` ones excluding (the last match decides). */
bool kiln_filter_list(const kiln_strv *patterns, const char *s);

/* What happened, as the `on:` filters see it. */
typedef struct kiln_trigger {
	const char *event;  /* "push", "pull_request", "workflow_run", ... */
	const char *ref;    /* push: the full ref pushed (refs/heads/x, refs/tags/v1);
	                       pull_request: the base branch (name or refs/heads/x);
	                       workflow_run: the triggering run's head branch */
	const char *action; /* the activity type ("opened", "completed", a repository_dispatch
	                       event_type), or NULL */
	const kiln_strv *paths; /* files changed, or NULL when unknown (paths filters then hold) */
	const char *workflow;   /* workflow_run: the triggering workflow's name */
} kiln_trigger;

/* Whether wf's `on:` takes the event t with its filters. A workflow without `on:` takes
   everything. With `why` set, *why explains a refusal (static text). */
bool kiln_trigger_match(const kiln_workflow *wf, const kiln_trigger *t, const char **why);

/* Whether a commit message asks GitHub-style to skip CI: [skip ci], [ci skip], [no ci],
   [skip actions] or [actions skip] (case-insensitive), anywhere in it. */
bool kiln_trigger_skip_ci(const char *message);

/* Checks the inputs of a manual dispatch against the workflow's workflow_dispatch inputs:
   `given` is an object of name -> string (booleans and numbers also taken as JSON). *out
   (owned) is the `inputs` context: every declared input, defaults applied, booleans as
   true/false, numbers as numbers, the rest as strings. -EINVAL naming the first problem:
   an unknown input, a missing required one, a value of the wrong type, a choice outside its
   options. `ev` may be NULL (a workflow_dispatch without inputs). */
int kiln_trigger_dispatch_inputs(const kiln_event *ev, json_t *given, json_t **out);

#endif
