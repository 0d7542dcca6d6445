/*
 * planner — turns a submission into runs. In a worker thread (git fetches
 * and parsing must not stall the core thread) it finds the workflow files at
 * the commit, or takes the files sent inline by `kiln run`, parses and
 * validates them, and lays out each job's spec; then, on the core thread, it
 * writes every run with its jobs and steps in one transaction.
 *
 * Body of POST /api/v1/runs:
 *   {"repo": URL|PATH, "ref": "main", "sha": "…"?, "workflow": FILE?,
 *    "event": "push"?, "job": ID?, "worktree": bool?,
 *    "files": [{"path": ".github/workflows/ci.yml", "content": "…"}]?}
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/expr.h"
#include "common/git.h"
#include "common/matrix.h"
#include "common/trigger.h"
#include "common/workflow.h"

#define MAX_WORKFLOW_BYTES (1u << 20)
#define MAX_WORKFLOWS 64
#define MAX_CHANGED_PATHS 3000 /* past this, paths filters hold (GitHub: past 300) */

typedef struct plan {
	coord *c;
	json_t *body;
	coord_reply_fn reply;
	void *arg;
	/* results */
	int status;
	char *error;
	char *repo, *ref, *sha, *event;
	bool worktree;
	json_t *runs; /* [{workflow, name, jobs: [{key, name, needs, runs_on, spec, steps}]}] */
	/* where workflow files come from: inline files, or the mirror at sha */
	json_t *files;
	char *mirror;
	size_t calls; /* reusable workflows called so far in this run */
	/* a trigger's plan (triggers.c): what `on:` is matched against */
	trig_req *t;
	kiln_trigger kt;
	kiln_strv changed;           /* files the event changed, once computed */
	bool changed_done, changed_known;
	bool collect;                /* at the default branch: record schedules and listeners */
	json_t *inputs;              /* workflow_dispatch: the inputs context */
	kiln_strv skipped;           /* workflow files that did not parse */
} plan;

#define MAX_CALL_DEPTH 9 /* GitHub: ten levels of workflows, the caller and nine called */
#define MAX_CALLS 50     /* distinct reusable workflows one run may call */

/* Reads a workflow file of the run's source. */
static int source_read(plan *p, const char *path, char **text, size_t *len)
{
	if (p->files) {
		size_t i;
		json_t *f;
		json_array_foreach(p->files, i, f)
		{
			const char *fp = json_string_value(json_object_get(f, "path"));
			json_t *content = json_object_get(f, "content");
			if (fp && strcmp(fp, path) == 0 && json_is_string(content)) {
				*len = json_string_length(content);
				*text = kiln_malloc(*len + 1);
				memcpy(*text, json_string_value(content), *len + 1);
				return 0;
			}
		}
		return kiln_err(ENOENT, "%s: no such workflow file", path);
	}
	return kiln_git_read_file(p->mirror, p->sha, path, MAX_WORKFLOW_BYTES, text, len);
}

static json_t *env_json(const kiln_env *env)
{
	json_t *a = json_array();
	for (size_t i = 0; i < env->n; i++)
		json_array_append_new(a, json_pack("[s, s]", env->v[i].key, env->v[i].value ? env->v[i].value : ""));
	return a;
}

static json_t *strv_json(const kiln_strv *sv)
{
	json_t *a = json_array();
	for (size_t i = 0; i < sv->n; i++)
		json_array_append_new(a, json_string(sv->v[i]));
	return a;
}

static char *step_display_name(const kiln_step *s)
{
	if (s->name && *s->name)
		return kiln_strdup(s->name);
	if (s->uses && *s->uses)
		return kiln_asprintf("Run %s", s->uses);
	/* GitHub's default: "Run " and the script's first line, whole (a cut could split a ${{ }}) */
	const char *run = s->run ? s->run : "";
	size_t n = strcspn(run, "\n");
	return kiln_asprintf("Run %.*s", (int)n, run);
}

static json_t *str_or_empty(const char *s)
{
	return json_string(s ? s : "");
}

/* YAML to JSON for later evaluation: subtrees without expressions get their YAML types, and
   a scalar holding ${{ }} stays a string for coord_eval_tree. */
static int node_json_keep_expr(const char *file, const kiln_ynode *n, json_t **out)
{
	if (!n || !kiln_matrix_node_has_expr(n))
		return kiln_matrix_node_json(file, n, out);
	if (n->kind == KILN_YNODE_SCALAR) {
		*out = json_stringn(n->str, n->len);
		return *out ? 0 : kiln_ynode_err(file, n, EINVAL, "not valid UTF-8");
	}
	json_t *agg = n->kind == KILN_YNODE_SEQUENCE ? json_array() : json_object();
	size_t count = n->kind == KILN_YNODE_SEQUENCE ? n->nitems : n->npairs;
	for (size_t i = 0; i < count; i++) {
		const kiln_ynode *item = n->kind == KILN_YNODE_SEQUENCE ? n->items[i] : n->pairs[i].value;
		json_t *v = NULL;
		int r = node_json_keep_expr(file, item, &v);
		if (r < 0) {
			json_decref(agg);
			return r;
		}
		if (n->kind == KILN_YNODE_SEQUENCE)
			json_array_append_new(agg, v);
		else if (n->pairs[i].key->kind != KILN_YNODE_SCALAR ||
			 json_object_set_new(agg, n->pairs[i].key->str, v) < 0) {
			json_decref(agg);
			return kiln_ynode_err(file, n->pairs[i].key, EINVAL, "keys must be strings");
		}
	}
	*out = agg;
	return 0;
}

/* The job's spec, as sent to agents: env layered workflow then job, steps, defaults; and
   what the scheduler evaluates when the job's needs are done (matrix, name, runs-on,
   fail-fast, max-parallel, continue-on-error). NULL with a message on error. */
static json_t *job_json(const kiln_workflow *wf, const kiln_job *j, const char *key,
		       json_t *needs, const char *parent, const char *name_prefix)
{
	json_t *env = env_json(&wf->env), *job_env = env_json(&j->env);
	json_array_extend(env, job_env);
	json_decref(job_env);
	json_t *steps = json_array(), *names = json_array();
	for (size_t i = 0; i < j->nsteps; i++) {
		const kiln_step *s = &j->steps[i];
		char *name = step_display_name(s);
		json_array_append_new(names, json_string(name));
		json_t *step = json_pack(
			"{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "name", name, "run",
			str_or_empty(s->run), "shell", str_or_empty(s->shell), "working_directory",
			str_or_empty(s->working_directory), "id", str_or_empty(s->id), "uses",
			str_or_empty(s->uses), "if", str_or_empty(s->if_cond), "env",
			env_json(&s->env), "with", env_json(&s->with));
		const char *coe = s->continue_on_error;
		if (coe && strcmp(coe, "true") == 0)
			json_object_set_new(step, "continue_on_error", json_true());
		else if (coe && strcmp(coe, "false") != 0)
			json_object_set_new(step, "continue_on_error_expr", json_string(coe));
		if (s->timeout_minutes > 0)
			json_object_set_new(step, "timeout_minutes", json_real(s->timeout_minutes));
		if (s->timeout_minutes_expr)
			json_object_set_new(step, "timeout_minutes_expr",
					    json_string(s->timeout_minutes_expr));
		json_array_append_new(steps, step);
		free(name);
	}
	const char *shell = j->defaults_shell ? j->defaults_shell : wf->defaults_shell;
	const char *wd = j->defaults_working_directory ? j->defaults_working_directory
						       : wf->defaults_working_directory;
	json_t *spec = json_pack("{s:o, s:o, s:f, s:{s:o, s:o}, s:o, s:s}", "env", env, "steps",
				 steps, "timeout_minutes",
				 j->timeout_minutes > 0 ? j->timeout_minutes : 360.0, "defaults",
				 "shell", str_or_empty(shell), "working_directory", str_or_empty(wd),
				 "outputs", env_json(&j->output_defs), "workflow_name",
				 wf->name ? wf->name : wf->file);
	if (j->if_cond && *j->if_cond)
		json_object_set_new(spec, "if", json_string(j->if_cond));
	if (j->name && *j->name)
		json_object_set_new(spec, "name", json_string(j->name));
	if (j->matrix) {
		json_t *m = NULL;
		if (node_json_keep_expr(wf->file, j->matrix, &m) < 0) {
			json_decref(spec);
			json_decref(names);
			return NULL;
		}
		json_object_set_new(spec, "matrix", m);
	}
	json_object_set_new(spec, "fail_fast", j->fail_fast_expr ? json_string(j->fail_fast_expr)
								 : json_boolean(j->fail_fast));
	if (j->max_parallel_expr)
		json_object_set_new(spec, "max_parallel", json_string(j->max_parallel_expr));
	else if (j->max_parallel > 0)
		json_object_set_new(spec, "max_parallel", json_integer(j->max_parallel));
	if (j->continue_on_error && strcmp(j->continue_on_error, "false") != 0)
		json_object_set_new(spec, "continue_on_error", json_string(j->continue_on_error));
	if (j->timeout_minutes_expr)
		json_object_set_new(spec, "timeout_minutes_expr", json_string(j->timeout_minutes_expr));
	if (j->concurrency_def.group) {
		json_object_set_new(spec, "concurrency", json_string(j->concurrency_def.group));
		if (j->concurrency_def.cancel_in_progress)
			json_object_set_new(spec, "cancel_in_progress",
					    json_string(j->concurrency_def.cancel_in_progress));
	}
	if (j->environment_name) { /* evaluated per instance (expand.c): it may use matrix */
		json_object_set_new(spec, "environment", json_string(j->environment_name));
		if (j->environment_url)
			json_object_set_new(spec, "environment_url", json_string(j->environment_url));
	}
	if (name_prefix)
		json_object_set_new(spec, "name_prefix", json_string(name_prefix));
	json_t *out = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:s}", "key", key, "name",
				j->name && *j->name ? j->name : j->id, "needs", needs, "runs_on",
				strv_json(&j->runs_on), "spec", spec, "steps", names, "kind", "job");
	if (parent)
		json_object_set_new(out, "parent", json_string(parent));
	return out;
}

static const kiln_event *find_event(const kiln_workflow *wf, const char *name)
{
	for (size_t i = 0; i < wf->nevents; i++)
		if (strcmp(wf->events[i].name, name) == 0)
			return &wf->events[i];
	return NULL;
}

static int add_jobs(plan *p, const kiln_workflow *wf, const char *prefix, const char *parent,
		    const char *name_prefix, json_t *parent_needs, int depth, const bool *keep,
		    json_t *jobs);

/* A job that calls a local reusable workflow: a call row, then the called jobs under it. */
static int add_call(plan *p, const kiln_workflow *wf, const kiln_job *j, const char *key,
		    json_t *needs, const char *parent, const char *name_prefix, int depth,
		    json_t *jobs)
{
	const char *uses = j->uses;
	if (!j->uses_local) {
		/* a remote reusable workflow: the job fails when it runs, naming it */
		_cleanup_free_ char *msg =
			kiln_asprintf("kiln cannot run the remote reusable workflow '%s' yet", uses);
		json_t *row = json_pack("{s:s, s:s, s:o, s:[], s:{s:s, s:s}, s:[], s:s}", "key", key,
					"name", j->name && *j->name ? j->name : j->id, "needs",
					needs, "runs_on", "spec", "error", msg, "workflow_name",
					wf->name ? wf->name : wf->file, "steps", "kind", "call");
		if (parent)
			json_object_set_new(row, "parent", json_string(parent));
		json_array_append_new(jobs, row);
		return 0;
	}
	if (depth >= MAX_CALL_DEPTH) {
		json_decref(needs);
		return kiln_err(ELOOP, "%s:%d:%d: %s: more than %d levels of reusable workflows",
				wf->file, j->line, j->col, uses, MAX_CALL_DEPTH + 1);
	}
	if (++p->calls > MAX_CALLS) {
		json_decref(needs);
		return kiln_err(E2BIG, "%s:%d:%d: more than %d reusable workflow calls in one run",
				wf->file, j->line, j->col, MAX_CALLS);
	}
	const char *path = strncmp(uses, "./", 2) == 0 ? uses + 2 : uses;
	_cleanup_free_ char *clean = strndup(path, strcspn(path, "@"));
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	kiln_workflow *callee = NULL;
	int r = source_read(p, clean, &text, &len);
	if (r < 0) {
		json_decref(needs);
		return kiln_err(r, "%s:%d:%d: %s", wf->file, j->line, j->col, kiln_errmsg());
	}
	if ((r = kiln_workflow_parse(clean, text, len, &callee)) < 0) {
		json_decref(needs);
		return r;
	}
	const kiln_event *call = find_event(callee, "workflow_call");
	if (!call) {
		kiln_workflow_free(callee);
		json_decref(needs);
		return kiln_err(EINVAL, "%s:%d:%d: %s is not a reusable workflow (no on: workflow_call)",
				wf->file, j->line, j->col, clean);
	}
	/* with: must name declared inputs, and give every required one */
	for (size_t i = 0; i < j->with.n; i++) {
		bool known = false;
		for (size_t k = 0; k < call->ninputs && !known; k++)
			known = strcmp(call->inputs[k].name, j->with.v[i].key) == 0;
		if (!known) {
			kiln_workflow_free(callee);
			json_decref(needs);
			return kiln_err(EINVAL, "%s:%d:%d: %s has no input '%s'", wf->file, j->line,
					j->col, clean, j->with.v[i].key);
		}
	}
	json_t *inputs = json_array();
	for (size_t k = 0; k < call->ninputs; k++) {
		const kiln_input *in = &call->inputs[k];
		bool given = kiln_env_get(&j->with, in->name) != NULL;
		if (in->required && !given && !in->default_value) {
			json_decref(inputs);
			kiln_workflow_free(callee);
			json_decref(needs);
			return kiln_err(EINVAL, "%s:%d:%d: input '%s' of %s is required", wf->file,
					j->line, j->col, in->name, clean);
		}
		json_t *o = json_pack("{s:s, s:s}", "name", in->name, "type",
				      in->type == KILN_INPUT_BOOLEAN  ? "boolean"
				      : in->type == KILN_INPUT_NUMBER ? "number"
								      : "string");
		if (in->default_value)
			json_object_set_new(o, "default", json_string(in->default_value));
		json_array_append_new(inputs, o);
	}
	json_t *outputs = json_object();
	for (size_t k = 0; k < call->noutputs; k++)
		json_object_set_new(outputs, call->outputs[k].name,
				    json_string(call->outputs[k].value ? call->outputs[k].value : ""));
	const char *display = j->name && *j->name ? j->name : j->id;
	_cleanup_free_ char *shown = name_prefix ? kiln_asprintf("%s / %s", name_prefix, display)
						 : kiln_strdup(display);
	json_t *spec = json_pack("{s:{s:o, s:o, s:o}, s:s}", "call", "with", env_json(&j->with),
				 "inputs", inputs, "outputs", outputs, "workflow_name",
				 callee->name ? callee->name : clean);
	if (j->if_cond && *j->if_cond)
		json_object_set_new(spec, "if", json_string(j->if_cond));
	json_t *row = json_pack("{s:s, s:s, s:O, s:[], s:o, s:[], s:s}", "key", key, "name", shown,
				"needs", needs, "runs_on", "spec", spec, "steps", "kind", "call");
	if (parent)
		json_object_set_new(row, "parent", json_string(parent));
	json_array_append_new(jobs, row);
	json_t *gate = json_pack("[s]", key);
	r = add_jobs(p, callee, key, key, shown, gate, depth + 1, NULL, jobs);
	json_decref(gate);
	json_decref(needs);
	kiln_workflow_free(callee);
	return r;
}

/* Adds the jobs of wf, keys under `prefix` ("caller/job"), in an order where needs come
   first; the jobs without needs of a called workflow need its call row (`parent_needs`). */
static int add_jobs(plan *p, const kiln_workflow *wf, const char *prefix, const char *parent,
		    const char *name_prefix, json_t *parent_needs, int depth, const bool *keep,
		    json_t *jobs)
{
	size_t *order = kiln_calloc(wf->njobs ? wf->njobs : 1, sizeof *order);
	kiln_workflow_order(wf, order);
	int r = 0;
	for (size_t i = 0; i < wf->njobs && r == 0; i++) {
		const kiln_job *j = &wf->jobs[order[i]];
		if (keep && !keep[order[i]])
			continue;
		_cleanup_free_ char *key =
			prefix ? kiln_asprintf("%s/%s", prefix, j->id) : kiln_strdup(j->id);
		json_t *needs = json_array();
		for (size_t k = 0; k < j->needs.n; k++) {
			char *nk = prefix ? kiln_asprintf("%s/%s", prefix, j->needs.v[k])
					  : kiln_strdup(j->needs.v[k]);
			json_array_append_new(needs, json_string(nk));
			free(nk);
		}
		if (!j->needs.n && parent_needs)
			json_array_extend(needs, parent_needs);
		if (j->is_call) {
			r = add_call(p, wf, j, key, needs, parent, name_prefix, depth, jobs);
			continue;
		}
		json_t *jj = job_json(wf, j, key, needs, parent, name_prefix);
		if (!jj)
			r = -EINVAL;
		else
			json_array_append_new(jobs, jj);
	}
	free(order);
	return r;
}

/* Marks job `id` and, transitively, what it needs. */
static void mark_needed(const kiln_workflow *wf, const char *id, bool *keep)
{
	for (size_t i = 0; i < wf->njobs; i++) {
		if (strcmp(wf->jobs[i].id, id) != 0 || keep[i])
			continue;
		keep[i] = true;
		for (size_t k = 0; k < wf->jobs[i].needs.n; k++)
			mark_needed(wf, wf->jobs[i].needs.v[k], keep);
	}
}

static int trigger_accepts(plan *p, const char *path, const kiln_workflow *wf);

/* Plans one workflow file; one that the event does not trigger is skipped, unless it was
   asked for by name (as a manual dispatch would). */
static int plan_workflow(plan *p, const char *path, const char *text, size_t len, const char *job,
			 bool named)
{
	kiln_workflow *wf = NULL;
	int r = kiln_workflow_parse(path, text, len, &wf);
	if (r < 0)
		return r;
	if (p->t) {
		r = trigger_accepts(p, path, wf);
		if (r <= 0) {
			kiln_workflow_free(wf);
			return r;
		}
	} else if (!named && !kiln_workflow_triggers(wf, p->event)) {
		kiln_workflow_free(wf);
		return 0;
	}
	bool *keep = NULL;
	if (job) {
		keep = kiln_calloc(wf->njobs ? wf->njobs : 1, sizeof *keep);
		mark_needed(wf, job, keep);
	}
	json_t *jobs = json_array();
	p->calls = 0;
	r = add_jobs(p, wf, NULL, NULL, NULL, NULL, 0, keep, jobs);
	free(keep);
	if (r < 0) {
		json_decref(jobs);
		kiln_workflow_free(wf);
		return r;
	}
	if (json_array_size(jobs)) {
		json_t *run = json_pack("{s:s, s:s, s:o}", "workflow", path, "name",
					wf->name ? wf->name : path, "jobs", jobs);
		if (wf->run_name)
			json_object_set_new(run, "run_name", json_string(wf->run_name));
		if (wf->concurrency_def.group) {
			json_object_set_new(run, "concurrency", json_string(wf->concurrency_def.group));
			if (wf->concurrency_def.cancel_in_progress)
				json_object_set_new(run, "cancel_in_progress",
						    json_string(wf->concurrency_def.cancel_in_progress));
		}
		json_array_append_new(p->runs, run);
	}
	else
		json_decref(jobs);
	kiln_workflow_free(wf);
	return 0;
}

static bool workflow_selected(const char *path, const char *want)
{
	if (!want || !*want)
		return true;
	if (strcmp(path, want) == 0)
		return true;
	const char *base = strrchr(path, '/');
	return base && strcmp(base + 1, want) == 0;
}

static bool is_yaml(const char *name)
{
	size_t n = strlen(name);
	return (n > 4 && strcmp(name + n - 4, ".yml") == 0) ||
	       (n > 5 && strcmp(name + n - 5, ".yaml") == 0);
}

static int plan_fail(plan *p, int status, const char *msg)
{
	p->status = status;
	free(p->error);
	p->error = kiln_strdup(msg);
	return -1;
}

static int plan_dirs(plan *p, const char *want, const char *job);

static int plan_from_git(plan *p, const char *want, const char *job)
{
	_cleanup_free_ char *mirrors = kiln_asprintf("%s/mirrors", p->c->data_dir);
	if (kiln_mkdir_p(mirrors, 0750) < 0 || kiln_git_mirror(mirrors, p->repo, &p->mirror) < 0)
		return plan_fail(p, 422, kiln_errmsg());
	const char *mirror = p->mirror;
	char sha[41];
	const char *rev = p->sha && *p->sha ? p->sha : p->ref;
	if (kiln_git_resolve(mirror, rev, sha) < 0)
		return plan_fail(p, 422, kiln_errmsg());
	free(p->sha);
	p->sha = kiln_strdup(sha);
	char *full = NULL;
	if (p->ref && *p->ref && kiln_git_full_ref(mirror, p->ref, &full) == 0 && full) {
		free(p->ref);
		p->ref = full;
	}
	return plan_dirs(p, want, job);
}

/* Plans the workflow files at p->sha in the mirror: .kiln/workflows when it has any, else
   .github/workflows. For a trigger, a file that does not parse is skipped (and named in the
   delivery's message) unless it was asked for by name. */
static int plan_dirs(plan *p, const char *want, const char *job)
{
	const char *mirror = p->mirror;
	const char *sha = p->sha;
	static const char *const dirs[] = {".kiln/workflows", ".github/workflows"};
	for (size_t d = 0; d < KILN_ARRAY_SIZE(dirs); d++) {
		kiln_strv names = {0};
		if (kiln_git_list_dir(mirror, sha, dirs[d], &names) < 0) {
			kiln_strv_free(&names);
			continue;
		}
		size_t found = 0;
		for (size_t i = 0; i < names.n && found < MAX_WORKFLOWS; i++) {
			if (!is_yaml(names.v[i]))
				continue;
			_cleanup_free_ char *path = kiln_asprintf("%s/%s", dirs[d], names.v[i]);
			if (!workflow_selected(path, want))
				continue;
			found++;
			_cleanup_free_ char *text = NULL;
			size_t len = 0;
			if (kiln_git_read_file(mirror, sha, path, MAX_WORKFLOW_BYTES, &text, &len) < 0 ||
			    plan_workflow(p, path, text, len, job, want && *want) < 0) {
				if (p->t && !(want && *want) && p->status < 300) {
					kiln_strv_push(&p->skipped, kiln_errmsg());
					continue;
				}
				kiln_strv_free(&names);
				return p->status >= 300 ? -1 : plan_fail(p, 422, kiln_errmsg());
			}
		}
		kiln_strv_free(&names);
		if (found)
			return 0;
	}
	if (p->t && !(want && *want))
		return 0; /* a repository without workflows starts nothing */
	if (want && *want) {
		_cleanup_free_ char *msg = kiln_asprintf(
			"no workflow file '%s' in .kiln/workflows or .github/workflows at %s", want, sha);
		return plan_fail(p, 422, msg);
	}
	return plan_fail(p, 422, "no workflow files found in .kiln/workflows or .github/workflows");
}

static int plan_from_files(plan *p, json_t *files, const char *want, const char *job)
{
	p->files = files;
	size_t i;
	json_t *f;
	size_t found = 0;
	if (json_array_size(files) > MAX_WORKFLOWS)
		return plan_fail(p, 400, "too many workflow files");
	json_array_foreach(files, i, f)
	{
		const char *path = json_string_value(json_object_get(f, "path"));
		json_t *content = json_object_get(f, "content");
		if (!path || !json_is_string(content))
			return plan_fail(p, 400, "files[]: path and content are required");
		if (!workflow_selected(path, want))
			continue;
		if (json_string_length(content) > MAX_WORKFLOW_BYTES)
			return plan_fail(p, 413, "workflow file too large");
		found++;
		if (plan_workflow(p, path, json_string_value(content), json_string_length(content),
				  job, want && *want) < 0)
			return plan_fail(p, 422, kiln_errmsg());
	}
	if (!found)
		return plan_fail(p, 422, want ? "no such workflow file" : "no workflow files");
	return 0;
}

static void write_runs(coord *c, void *arg);

static void *plan_main(void *arg)
{
	plan *p = arg;
	json_t *b = p->body;
	const char *want = json_string_value(json_object_get(b, "workflow"));
	const char *job = json_string_value(json_object_get(b, "job"));
	json_t *files = json_object_get(b, "files");
	p->runs = json_array();
	p->status = 201;
	int r = files ? plan_from_files(p, files, want, job) : plan_from_git(p, want, job);
	if (r == 0 && json_array_size(p->runs) == 0) {
		_cleanup_free_ char *msg =
			job ? kiln_asprintf("no job '%s' in a workflow that '%s' triggers", job, p->event)
			    : kiln_asprintf("no workflow is triggered by '%s'", p->event);
		plan_fail(p, 422, msg);
	}
	core_post(p->c, write_runs, p);
	return NULL;
}

void planner_submit(coord *c, json_t *body, coord_reply_fn reply, void *arg)
{
	const char *repo = json_string_value(json_object_get(body, "repo"));
	const char *ref = json_string_value(json_object_get(body, "ref"));
	if (c->draining) {
		json_decref(body);
		api_error(reply, arg, 503, "shutting down");
		return;
	}
	if (!repo || !*repo || strlen(repo) > 4096) {
		json_decref(body);
		api_error(reply, arg, 400, "repo is required");
		return;
	}
	plan *p = kiln_calloc(1, sizeof *p);
	p->c = c;
	p->body = body;
	p->reply = reply;
	p->arg = arg;
	p->repo = kiln_strdup(repo);
	p->ref = kiln_strdup(ref && *ref ? ref : "HEAD");
	p->sha = kiln_strdup(json_string_value(json_object_get(body, "sha")));
	const char *event = json_string_value(json_object_get(body, "event"));
	p->event = kiln_strdup(event && *event ? event : "push");
	p->worktree = json_is_true(json_object_get(body, "worktree"));

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	pthread_mutex_lock(&c->mu);
	c->planners++;
	pthread_mutex_unlock(&c->mu);
	if (pthread_create(&t, &attr, plan_main, p) != 0) {
		pthread_mutex_lock(&c->mu);
		c->planners--;
		pthread_mutex_unlock(&c->mu);
		plan_fail(p, 503, "cannot start a planner");
		write_runs(c, p);
	}
	pthread_attr_destroy(&attr);
}

/* ---- triggers (triggers.c hands them over) ------------------------------------------- */

/* The files the event changed, computed once: NULL when unknown (then paths filters hold). */
static const kiln_strv *changed_paths(plan *p)
{
	if (p->changed_done)
		return p->changed_known ? &p->changed : NULL;
	p->changed_done = true;
	trig_event *e = &p->t->ev;
	_cleanup_free_ char *def = kiln_asprintf("refs/heads/%s", p->t->default_branch);
	const char *base = NULL;
	bool mb = true;
	if (strcmp(e->event, "push") == 0) {
		if (e->before && *e->before) {
			base = e->before;
			mb = false;
		} else if (strcmp(p->ref, def) != 0) {
			base = def; /* a new branch: what it has that the default branch has not */
		}
	} else if (strcmp(e->event, "pull_request") == 0) {
		base = e->before && *e->before ? e->before : NULL;
		if (!base)
			return NULL;
	} else {
		return NULL;
	}
	int r = kiln_git_changed_paths(p->mirror, base, p->sha, mb, MAX_CHANGED_PATHS, &p->changed);
	if (r == -ENOENT && base != def && strcmp(e->event, "push") == 0) {
		/* the old tip is gone (a force push): compare with the default branch */
		kiln_strv_free(&p->changed);
		r = kiln_git_changed_paths(p->mirror, def, p->sha, true, MAX_CHANGED_PATHS,
					   &p->changed);
	}
	if (r < 0) {
		kiln_log(KILN_LOG_INFO, "%s at %s: paths filters hold: %s", p->t->repo_name, p->sha,
			 kiln_errmsg());
		return NULL;
	}
	p->changed_known = true;
	return &p->changed;
}

/* workflow_dispatch's payload inputs are strings, as GitHub sends them. */
static json_t *inputs_as_strings(json_t *inputs)
{
	json_t *o = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(inputs, k, v)
	{
		if (json_is_string(v))
			json_object_set(o, k, v);
		else if (json_is_boolean(v))
			json_object_set_new(o, k, json_string(json_is_true(v) ? "true" : "false"));
		else {
			char *s = json_dumps(v, JSON_ENCODE_ANY);
			json_object_set_new(o, k, json_string(s ? s : ""));
			free(s);
		}
	}
	return o;
}

/* 1 when the trigger starts workflow wf, 0 when not, <0 (after plan_fail) to refuse. Also
   records, at the default branch, the workflow's schedules and workflow_run listening. */
static int trigger_accepts(plan *p, const char *path, const kiln_workflow *wf)
{
	trig_event *e = &p->t->ev;
	if (p->collect) {
		const kiln_event *s = kiln_workflow_event(wf, "schedule");
		for (size_t i = 0; s && i < s->nschedules; i++)
			json_array_append_new(p->t->triggers,
					      json_pack("[s, s, s]", path, "cron", s->schedules[i].cron));
		if (kiln_workflow_event(wf, "workflow_run"))
			json_array_append_new(p->t->triggers,
					      json_pack("[s, s, s]", path, "workflow_run", ""));
	}
	if (strcmp(e->event, "refresh") == 0)
		return 0;
	if (strcmp(e->event, "workflow_dispatch") == 0) {
		if (!kiln_workflow_event(wf, "workflow_dispatch")) {
			_cleanup_free_ char *msg =
				kiln_asprintf("%s has no workflow_dispatch trigger", path);
			return plan_fail(p, 422, msg);
		}
		json_t *ctx = NULL;
		if (kiln_trigger_dispatch_inputs(kiln_workflow_event(wf, "workflow_dispatch"),
						 e->inputs, &ctx) < 0) {
			_cleanup_free_ char *msg = kiln_asprintf("%s: %s", path, kiln_errmsg());
			return plan_fail(p, 422, msg);
		}
		json_decref(p->inputs);
		p->inputs = ctx;
		json_decref(e->payload);
		e->payload = json_pack("{s:o, s:s, s:{s:s}, s:{s:s}, s:s}", "inputs",
				       inputs_as_strings(ctx), "ref", p->ref, "repository",
				       "full_name", p->t->repo_name, "sender", "login",
				       e->actor ? e->actor : "kiln", "workflow", path);
		return 1;
	}
	if (strcmp(e->event, "schedule") == 0) {
		const kiln_event *s = kiln_workflow_event(wf, "schedule");
		for (size_t i = 0; s && i < s->nschedules; i++)
			if (strcmp(s->schedules[i].cron, e->cron) == 0)
				return 1;
		return 0; /* the schedule left the workflow since */
	}
	const kiln_event *ev = kiln_workflow_event(wf, e->event);
	if (ev && (ev->filters & (KILN_FILTER_PATHS | KILN_FILTER_PATHS_IGNORE)))
		p->kt.paths = changed_paths(p);
	const char *why = NULL;
	bool ok = kiln_trigger_match(wf, &p->kt, &why);
	kiln_log(KILN_LOG_DEBUG, "%s %s at %s: %s %s%s", p->t->repo_name, e->event, p->sha, path,
		 ok ? "triggered" : "not triggered: ", ok ? "" : why);
	return ok ? 1 : 0;
}

static bool skip_ci(plan *p)
{
	trig_event *e = &p->t->ev;
	if (strcmp(e->event, "push") != 0 && strcmp(e->event, "pull_request") != 0)
		return false;
	if (!e->message) {
		char *m = NULL;
		if (kiln_git_commit_message(p->mirror, p->sha, 64 << 10, &m) == 0)
			e->message = m;
	}
	return kiln_trigger_skip_ci(e->message);
}

static void *trigger_main(void *arg)
{
	plan *p = arg;
	trig_req *t = p->t;
	trig_event *e = &t->ev;
	/* declared before the first `goto out`: a jump past a cleanup variable's
	   initialisation would free garbage */
	_cleanup_free_ char *mirrors = kiln_asprintf("%s/mirrors", p->c->data_dir);
	_cleanup_free_ char *def = kiln_asprintf("refs/heads/%s", t->default_branch);
	p->runs = json_array();
	p->status = 201;
	if (t->payload_text) {
		json_error_t jerr;
		json_t *pl = json_loads(t->payload_text, 0, &jerr);
		const char *why = NULL;
		int r = triggers_parse(t->forge, t->hook_event, pl, e, &why);
		json_decref(pl);
		free(t->payload_text);
		t->payload_text = NULL;
		if (r < 0) {
			plan_fail(p, 400, kiln_errmsg());
			goto out;
		}
		if (r == 1) {
			p->status = 200;
			p->error = kiln_strdup(why);
			goto out;
		}
	}
	kiln_git_auth auth = {NULL, t->token};
	kiln_git_fetch_opts fo = {.auth = &auth};
	int r = kiln_mkdir_p(mirrors, 0750);
	if (r == 0)
		r = kiln_git_mirror_ex(mirrors, t->url, e->sha, &fo, &p->mirror);
	if (r == -ENOENT && e->sha && e->fetch_ref) {
		fo.extra_ref = e->fetch_ref; /* a pull request's head, from a fork */
		r = kiln_git_mirror_ex(mirrors, t->url, e->sha, &fo, &p->mirror);
	}
	if (r < 0) {
		t->retry = t->delivery_id != 0;
		plan_fail(p, 502, kiln_errmsg());
		goto out;
	}
	if (!e->ref)
		e->ref = kiln_strdup(def);
	char *full = NULL;
	if (!e->sha) {
		char sha[41];
		if (kiln_git_resolve(p->mirror, e->ref, sha) < 0) {
			plan_fail(p, 422, kiln_errmsg());
			goto out;
		}
		e->sha = kiln_strdup(sha);
		if (kiln_git_full_ref(p->mirror, e->ref, &full) == 0 && full) {
			free(e->ref);
			e->ref = full;
		}
	}
	free(p->ref);
	free(p->sha);
	free(p->event);
	p->ref = kiln_strdup(e->ref);
	p->sha = kiln_strdup(e->sha);
	p->event = kiln_strdup(e->event);
	if (skip_ci(p)) {
		p->status = 200;
		p->error = kiln_strdup("skipped: the head commit's message asks to skip CI");
		goto out;
	}
	bool pr = strcmp(e->event, "pull_request") == 0;
	p->kt = (kiln_trigger){.event = e->event,
			       .ref = pr || strcmp(e->event, "workflow_run") == 0 ? e->base_ref
										 : e->ref,
			       .action = e->action,
			       .workflow = e->trigger_workflow};
	/* the default branch's tip: its schedules and workflow_run listeners are the ones */
	if (strcmp(p->ref, def) == 0 && !pr) {
		char tip[41];
		if (kiln_git_resolve(p->mirror, def, tip) == 0 && strcmp(tip, p->sha) == 0) {
			p->collect = true;
			t->triggers = json_array();
		}
	}
	if (plan_dirs(p, e->workflow, NULL) < 0)
		goto out;
	if (json_array_size(p->runs) == 0) {
		p->status = 200;
		kiln_buf b = {0};
		kiln_buf_printf(&b, "no workflow is triggered by %s", e->event);
		for (size_t i = 0; i < p->skipped.n; i++)
			kiln_buf_printf(&b, "; skipped %s", p->skipped.v[i]);
		p->error = kiln_buf_steal(&b);
	} else if (p->skipped.n) {
		kiln_buf b = {0};
		for (size_t i = 0; i < p->skipped.n; i++)
			kiln_buf_printf(&b, "%sskipped %s", i ? "; " : "", p->skipped.v[i]);
		p->error = kiln_buf_steal(&b);
	}
out:
	core_post(p->c, write_runs, p);
	return NULL;
}

void planner_trigger(coord *c, trig_req *t)
{
	plan *p = kiln_calloc(1, sizeof *p);
	p->c = c;
	p->t = t;
	p->repo = kiln_strdup(t->url);
	p->body = json_object();
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t th;
	pthread_mutex_lock(&c->mu);
	c->planners++;
	pthread_mutex_unlock(&c->mu);
	if (c->draining || pthread_create(&th, &attr, trigger_main, p) != 0) {
		t->retry = t->delivery_id != 0;
		plan_fail(p, 503, c->draining ? "shutting down" : "cannot start a planner");
		write_runs(c, p); /* takes the planner off again */
	}
	pthread_attr_destroy(&attr);
}

static uint64_t insert_run(coord *c, plan *p, json_t *run)
{
	int64_t now = kiln_now_ms();
	int64_t number = 1;
	sqlite3_stmt *st = store_q(c, "SELECT coalesce(max(number), 0) + 1 FROM runs WHERE repo = ?",
				   "t", p->repo);
	if (sqlite3_step(st) == SQLITE_ROW)
		number = sqlite3_column_int64(st, 0);
	store_done(st);
	store_x(c,
		"INSERT INTO runs(number, repo, ref, sha, event, workflow, name, worktree, created_ms)"
		" VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
		"ittttttii", number, p->repo, p->ref, p->sha ? p->sha : "", p->event,
		json_string_value(json_object_get(run, "workflow")),
		json_string_value(json_object_get(run, "name")), (int64_t)p->worktree, now);
	uint64_t run_id = (uint64_t)sqlite3_last_insert_rowid(c->db);
	if (p->t) {
		trig_event *e = &p->t->ev;
		char *payload = e->payload ? json_dumps(e->payload, JSON_COMPACT) : NULL;
		char *inputs = p->inputs ? json_dumps(p->inputs, JSON_COMPACT) : NULL;
		store_x(c,
			"UPDATE runs SET repo_id = ?, repository = ?, payload = ?, fork = ?,"
			" pr_number = ?, head_message = ?, actor = ?, inputs = ?, delivery_id = ?,"
			" wr_state = 0, depth = ? WHERE id = ?",
			"ittiitttiii", p->t->repo_id, p->t->repo_name, payload, (int64_t)e->fork,
			e->pr_number ? e->pr_number : (int64_t)0, e->message, e->actor, inputs,
			p->t->delivery_id, (int64_t)e->depth, (int64_t)run_id);
		if (!e->pr_number)
			store_x(c, "UPDATE runs SET pr_number = NULL WHERE id = ?", "i",
				(int64_t)run_id);
		free(payload);
		free(inputs);
	}
	/* run-name and the workflow's concurrency group, evaluated once for the run */
	const char *wfname = json_string_value(json_object_get(run, "name"));
	json_t *ctx = json_pack("{s:o, s:{}, s:{}}", "github",
			coord_github_context(run_id, number, 1, p->repo, p->sha ? p->sha : "", p->ref,
					     p->event, wfname, ""),
			"inputs", "vars");
	if (p->t)
		coord_run_contexts(c, run_id, ctx);
	kiln_expr_ctx x = {.contexts = ctx};
	const char *run_name = json_string_value(json_object_get(run, "run_name"));
	char *shown = NULL;
	if (run_name && kiln_expr_interpolate(run_name, &x, &shown) == 0 && shown && *shown)
		store_x(c, "UPDATE runs SET name = ? WHERE id = ?", "ti", shown, (int64_t)run_id);
	free(shown);
	const char *group = json_string_value(json_object_get(run, "concurrency"));
	char *g = NULL;
	if (group && kiln_expr_interpolate(group, &x, &g) == 0) {
		const char *cip = json_string_value(json_object_get(run, "cancel_in_progress"));
		char *cv = NULL;
		bool cancel = cip && kiln_expr_interpolate(cip, &x, &cv) == 0 && cv &&
			      strcmp(cv, "true") == 0;
		free(cv);
		store_x(c, "UPDATE runs SET concurrency = ?, cancel_in_progress = ? WHERE id = ?",
			"tii", g, (int64_t)cancel, (int64_t)run_id);
	}
	free(g);
	json_decref(ctx);
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(run, "jobs"), i, j)
	{
		char *needs = json_dumps(json_object_get(j, "needs"), JSON_COMPACT);
		char *runs_on = json_dumps(json_object_get(j, "runs_on"), JSON_COMPACT);
		char *spec = json_dumps(json_object_get(j, "spec"), JSON_COMPACT);
		store_x(c,
			"INSERT INTO jobs(run_id, key, name, needs, runs_on, spec, retries_left, kind,"
			" parent) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
			"itttttitt", (int64_t)run_id,
			json_string_value(json_object_get(j, "key")),
			json_string_value(json_object_get(j, "name")), needs, runs_on, spec,
			(int64_t)c->cfg.retries, json_string_value(json_object_get(j, "kind")),
			json_string_value(json_object_get(j, "parent")));
		uint64_t job_id = (uint64_t)sqlite3_last_insert_rowid(c->db);
		size_t k;
		json_t *name;
		json_array_foreach(json_object_get(j, "steps"), k, name)
		{
			store_x(c, "INSERT INTO steps(job_id, idx, name) VALUES(?, ?, ?)", "iit",
				(int64_t)job_id, (int64_t)k, json_string_value(name));
		}
		free(needs);
		free(runs_on);
		free(spec);
	}
	return run_id;
}

/* A trigger's runs: written with the delivery's outcome in one transaction. */
static void write_trigger(coord *c, plan *p)
{
	trig_req *t = p->t;
	uint64_t ids[MAX_WORKFLOWS];
	size_t n = 0;
	t->status = p->status;
	t->error = p->error;
	p->error = NULL;
	store_begin(c);
	size_t i;
	json_t *run;
	if (p->status < 300)
		json_array_foreach(p->runs, i, run)
		{
			if (n < MAX_WORKFLOWS)
				ids[n++] = insert_run(c, p, run);
		}
	triggers_record(c, t, ids, n);
	store_commit(c);
	for (size_t k = 0; k < n; k++) {
		kiln_log(KILN_LOG_INFO, "run %llu created for %s %s at %s (%s)",
			 (unsigned long long)ids[k], t->repo_name, p->event, p->sha,
			 p->ref ? p->ref : "");
		sched_advance_run(c, ids[k]);
	}
	triggers_done(c, t, ids, n);
}

static void write_runs(coord *c, void *arg)
{
	plan *p = arg;
	pthread_mutex_lock(&c->mu);
	if (c->planners > 0 && --c->planners == 0)
		pthread_cond_broadcast(&c->idle_cv);
	pthread_mutex_unlock(&c->mu);
	if (p->t) {
		write_trigger(c, p);
	} else if (p->status >= 300) {
		api_error(p->reply, p->arg, p->status, "%s", p->error ? p->error : "cannot plan");
	} else {
		uint64_t ids[MAX_WORKFLOWS];
		size_t n = 0;
		store_begin(c);
		size_t i;
		json_t *run;
		json_array_foreach(p->runs, i, run)
		{
			if (n < MAX_WORKFLOWS)
				ids[n++] = insert_run(c, p, run);
		}
		store_commit(c);
		json_t *out = json_array();
		for (size_t k = 0; k < n; k++) {
			kiln_log(6, "run %llu created for %s at %s",
				(unsigned long long)ids[k], p->repo, p->sha ? p->sha : "");
			sched_advance_run(c, ids[k]);
			sqlite3_stmt *st = store_q(c, "SELECT id, number, state FROM runs WHERE id = ?",
						   "i", (int64_t)ids[k]);
			if (sqlite3_step(st) == SQLITE_ROW)
				json_array_append_new(
					out, json_pack("{s:I, s:I, s:s}", "id",
						       (json_int_t)sqlite3_column_int64(st, 0),
						       "number", (json_int_t)sqlite3_column_int64(st, 1),
						       "state", col_text(st, 2)));
			store_done(st);
		}
		api_json(p->reply, p->arg, 201, json_pack("{s:o, s:s}", "runs", out, "sha",
							   p->sha ? p->sha : ""));
	}
	json_decref(p->body);
	json_decref(p->runs);
	free(p->error);
	free(p->repo);
	free(p->ref);
	free(p->sha);
	free(p->event);
	free(p->mirror);
	kiln_strv_free(&p->changed);
	kiln_strv_free(&p->skipped);
	json_decref(p->inputs);
	free(p);
}
