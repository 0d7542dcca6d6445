/*
 * actions — where an action's files come from, for job.c to run it: a
 * `uses:` reference parsed and checked; a remote action (OWNER/REPO[/PATH]@REF)
 * fetched through the action source into the agent's bare mirrors and checked
 * out, once per ref, into work/_actions/OWNER/REPO/REF; and an action's
 * metadata (action.yml or action.yaml) read with a size cap and parsed.
 * Running the action is job.c's business.
 */
#ifndef KILN_AGENT_ACTIONS_H
#define KILN_AGENT_ACTIONS_H

#include "common/action.h"

/* The public forge; {owner} and {repo} are replaced. */
#define AGENT_ACTION_SOURCE_DEFAULT "https://github.com/{owner}/{repo}"
/* Composite actions inside composite actions, as deep as GitHub allows. */
#define AGENT_ACTION_MAX_DEPTH 10

typedef enum agent_action_kind {
	AGENT_ACTION_LOCAL = 1, /* ./PATH, below the workspace */
	AGENT_ACTION_REMOTE,    /* OWNER/REPO[/PATH]@REF */
	AGENT_ACTION_DOCKER,    /* docker://IMAGE */
} agent_action_kind;

typedef struct agent_action_ref {
	agent_action_kind kind;
	char *owner, *repo; /* remote */
	char *path;         /* local: below the workspace; remote: below the repository ("" = root) */
	char *ref;          /* remote */
} agent_action_ref;

/* Parses and checks a `uses:` value (no "..", names a forge would accept); 0 or -EINVAL with a
   message naming it. */
int agent_action_ref_parse(const char *uses, agent_action_ref *out);
/* Frees what agent_action_ref_parse filled. */
void agent_action_ref_clear(agent_action_ref *r);

/* The name of a well-known action kiln does not run yet (actions/cache, actions/upload-artifact…)
   when `uses` is one of them, else NULL. */
const char *agent_action_unsupported(const char *uses);

/* The action source in force: `configured`, else $KILN_ACTION_SOURCE, else the public forge. */
const char *agent_action_source(const char *configured);
/* The clone URL of OWNER/REPO from a source template ({owner} and {repo} replaced; a template
   with neither gets "/OWNER/REPO" appended). Owned. */
char *agent_action_url(const char *tmpl, const char *owner, const char *repo);

/* A progress line for the job's log. */
typedef void (*agent_action_log_fn)(void *arg, const char *text);

/* Makes the remote action `ref` available: mirrored from its source URL into work_dir/mirrors,
   REF resolved, and checked out (without .git) into work_dir/_actions/OWNER/REPO/REF, reused while
   REF still names the same commit. Safe for concurrent jobs and agents sharing work_dir (a lock
   per ref, the checkout renamed into place). *dir = the action's directory (PATH applied, owned),
   sha = the commit. When the fetch fails but a checkout is cached, that is used with a warning. */
int agent_action_fetch(const char *work_dir, const char *source, const agent_action_ref *ref,
		       agent_action_log_fn log, void *log_arg, char **dir, char sha[41]);

/* Reads dir/action.yml (else dir/action.yaml) and parses it; `label` is the directory as errors
   name it ("file:line:col: …" with file = label/action.yml). -ENOENT when neither exists (-ENOTSUP
   when there is a Dockerfile instead: a container action). */
int agent_action_load(const char *dir, const char *label, kiln_action **out);

#endif
