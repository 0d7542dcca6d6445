/*
 * workflow — turns a kiln_ynode tree into a kiln_workflow and checks it.
 *
 * Parsing walks the document once, top-down, and stops at the first error,
 * which always carries the position of the node it is about. Keys GitHub
 * knows but kiln does not model yet are checked for their shape only and
 * kept as raw nodes; keys nobody knows are refused, so a typo ("run-on")
 * fails loudly instead of silently doing nothing.
 *
 * After the walk, the `needs` graph is resolved to indexes and searched for
 * unknown names and cycles. All of it is O((jobs + needs) log jobs): the
 * input is bounded by the YAML limits, but a bounded input can still hold
 * tens of thousands of jobs.
 */
#include "common/workflow.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Longest timeout accepted, in minutes: a year. Beyond that it is a typo, and overflows later. */
#define MAX_TIMEOUT_MINUTES 525600.0

typedef struct ctx {
	const char *file;
	kiln_workflow *wf;
} ctx;

/* ---- freeing ------------------------------------------------------------------ */

static void env_free(kiln_env *e)
{
	for (size_t i = 0; i < e->n; i++) {
		free(e->v[i].key);
		free(e->v[i].value);
	}
	free(e->v);
	e->v = NULL;
	e->n = 0;
}

static void step_free(kiln_step *s)
{
	free(s->id);
	free(s->name);
	free(s->run);
	free(s->uses);
	free(s->shell);
	free(s->working_directory);
	free(s->if_cond);
	free(s->continue_on_error);
	free(s->timeout_minutes_expr);
	env_free(&s->env);
	env_free(&s->with);
}

static void job_free(kiln_job *j)
{
	free(j->id);
	free(j->name);
	kiln_strv_free(&j->runs_on);
	kiln_strv_free(&j->needs);
	env_free(&j->env);
	free(j->if_cond);
	free(j->defaults_shell);
	free(j->defaults_working_directory);
	for (size_t i = 0; i < j->nsteps; i++)
		step_free(&j->steps[i]);
	free(j->steps);
	free(j->needs_index);
	free(j->runs_on_group);
	free(j->timeout_minutes_expr);
	free(j->continue_on_error);
	free(j->uses);
	env_free(&j->with);
}

void kiln_workflow_free(kiln_workflow *wf)
{
	if (!wf)
		return;
	free(wf->file);
	free(wf->name);
	free(wf->run_name);
	env_free(&wf->env);
	free(wf->defaults_shell);
	free(wf->defaults_working_directory);
	for (size_t i = 0; i < wf->njobs; i++)
		job_free(&wf->jobs[i]);
	free(wf->jobs);
	kiln_ynode_free(wf->doc);
	free(wf);
}

void kiln_workflow_freep(kiln_workflow **wf)
{
	kiln_workflow_free(*wf);
}

/* ---- small helpers -------------------------------------------------------------- */

/* "a mapping", "a sequence", "a string", "null": for "must be X, not Y". */
static const char *a_kind(const kiln_ynode *n)
{
	if (kiln_ynode_is_null(n))
		return "null";
	switch (n->kind) {
	case KILN_YNODE_SCALAR:
		return "a string";
	case KILN_YNODE_SEQUENCE:
		return "a sequence";
	case KILN_YNODE_MAPPING:
		return "a mapping";
	}
	return "?";
}

static int fail(const ctx *c, const kiln_ynode *n, const char *fmt, ...) KILN_PRINTF(3, 4);
static int fail(const ctx *c, const kiln_ynode *n, const char *fmt, ...)
{
	char msg[800];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return kiln_ynode_err(c->file, n, EINVAL, "%s", msg);
}

/* A key for quoting in a message. */
#define Q(buf, s) kiln_yaml_quote(buf, sizeof buf, s)

static bool is_expr(const kiln_ynode *n)
{
	return n->kind == KILN_YNODE_SCALAR && strstr(n->str, "${{") != NULL;
}

/* GitHub's rule for job and step ids: ^[A-Za-z_][A-Za-z0-9_-]*$. */
static bool valid_id(const char *s)
{
	if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* Every mapping key kiln looks at must be a string. */
static int key_str(const ctx *c, const kiln_ynode *k, const char **out)
{
	if (k->kind != KILN_YNODE_SCALAR)
		return fail(c, k, "keys must be strings, not %s", a_kind(k));
	*out = k->str;
	return 0;
}

static int unknown_key(const ctx *c, const kiln_ynode *k)
{
	char q[80];
	return fail(c, k, "unknown key '%s'", Q(q, k->str));
}

/* A scalar as written (numbers and booleans too); null leaves *out NULL. */
static int get_string(const ctx *c, const char *what, const kiln_ynode *v, char **out)
{
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind != KILN_YNODE_SCALAR)
		return fail(c, v, "'%s' must be a string, not %s", what, a_kind(v));
	free(*out);
	*out = kiln_strdup(v->str);
	return 0;
}

/* A string, or a sequence of strings; null gives an empty vector. */
static int get_strv(const ctx *c, const char *what, const kiln_ynode *v, kiln_strv *out)
{
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind == KILN_YNODE_SCALAR) {
		kiln_strv_push(out, v->str);
		return 0;
	}
	if (v->kind != KILN_YNODE_SEQUENCE)
		return fail(c, v, "'%s' must be a string or a sequence of strings, not %s", what,
		            a_kind(v));
	for (size_t i = 0; i < v->nitems; i++) {
		const kiln_ynode *it = v->items[i];
		if (kiln_ynode_is_null(it) || it->kind != KILN_YNODE_SCALAR)
			return fail(c, it, "'%s' entries must be strings, not %s", what,
			            a_kind(it));
		kiln_strv_push(out, it->str);
	}
	return 0;
}

/* A mapping of string to scalar (env:, with:); null gives an empty one. */
static int get_env(const ctx *c, const char *what, const kiln_ynode *v, kiln_env *out,
                   bool env_names)
{
	char q[80];
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind != KILN_YNODE_MAPPING)
		return fail(c, v, "'%s' must be a mapping, not %s", what, a_kind(v));
	env_free(out);
	out->v = kiln_calloc(v->npairs, sizeof *out->v);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		int r = key_str(c, k, &name);
		if (r < 0)
			return r;
		if (env_names && (!*name || strchr(name, '=')))
			return fail(c, k, "invalid environment variable name '%s'", Q(q, name));
		if (!kiln_ynode_is_null(val) && val->kind != KILN_YNODE_SCALAR)
			return fail(c, val, "%s '%s' must be a string, not %s", what, Q(q, name),
			            a_kind(val));
		out->v[out->n].key = kiln_strdup(name);
		out->v[out->n].value = kiln_strdup(kiln_ynode_is_null(val) ? "" : val->str);
		out->n++;
	}
	return 0;
}

/* A positive number of minutes, or an expression kept as text. */
static int get_minutes(const ctx *c, const kiln_ynode *v, double *out, char **expr)
{
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind == KILN_YNODE_SCALAR && is_expr(v)) {
		free(*expr);
		*expr = kiln_strdup(v->str);
		return 0;
	}
	if (v->kind == KILN_YNODE_SCALAR && v->str[0] >= '0' && v->str[0] <= '9' &&
	    strspn(v->str, "0123456789.eE+-") == v->len) {
		char *end;
		double d = strtod(v->str, &end);
		if (*end == '\0' && isfinite(d) && d > 0 && d <= MAX_TIMEOUT_MINUTES) {
			*out = d;
			return 0;
		}
	}
	return fail(
	    c, v,
	    "'timeout-minutes' must be a positive number of minutes (at most %g) or an expression",
	    MAX_TIMEOUT_MINUTES);
}

/* continue-on-error: a boolean or an expression; kept as "true"/"false"/the expression. */
static int get_bool_or_expr(const ctx *c, const char *what, const kiln_ynode *v, char **out)
{
	bool b;
	if (kiln_ynode_is_null(v))
		return 0;
	free(*out);
	*out = NULL;
	if (kiln_ynode_bool(v, &b) == 0) {
		*out = kiln_strdup(b ? "true" : "false");
		return 0;
	}
	if (is_expr(v)) {
		*out = kiln_strdup(v->str);
		return 0;
	}
	return fail(c, v, "'%s' must be true, false or an expression, not %s", what,
	            v->kind == KILN_YNODE_SCALAR ? "this string" : a_kind(v));
}

/* Loose shape checks for keys accepted but not modelled yet. */
static int want_map(const ctx *c, const char *what, const kiln_ynode *v)
{
	if (kiln_ynode_is_null(v) || v->kind == KILN_YNODE_MAPPING || is_expr(v))
		return 0;
	return fail(c, v, "'%s' must be a mapping, not %s", what, a_kind(v));
}

static int want_str_or_map(const ctx *c, const char *what, const kiln_ynode *v)
{
	if (kiln_ynode_is_null(v) || v->kind != KILN_YNODE_SEQUENCE)
		return 0;
	return fail(c, v, "'%s' must be a string or a mapping, not %s", what, a_kind(v));
}

/* defaults: {run: {shell, working-directory}} */
static int parse_defaults(const ctx *c, const kiln_ynode *v, char **shell, char **wd)
{
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind != KILN_YNODE_MAPPING)
		return fail(c, v, "'defaults' must be a mapping, not %s", a_kind(v));
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *run = v->pairs[i].value;
		const char *name;
		int r = key_str(c, k, &name);
		if (r < 0)
			return r;
		if (strcmp(name, "run") != 0)
			return unknown_key(c, k);
		if (kiln_ynode_is_null(run))
			continue;
		if (run->kind != KILN_YNODE_MAPPING)
			return fail(c, run, "'defaults.run' must be a mapping, not %s",
			            a_kind(run));
		for (size_t j = 0; j < run->npairs; j++) {
			const kiln_ynode *rk = run->pairs[j].key, *rv = run->pairs[j].value;
			if ((r = key_str(c, rk, &name)) < 0)
				return r;
			if (strcmp(name, "shell") == 0)
				r = get_string(c, "shell", rv, shell);
			else if (strcmp(name, "working-directory") == 0)
				r = get_string(c, "working-directory", rv, wd);
			else
				r = unknown_key(c, rk);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* runs-on: a label, a list of labels, or {group, labels}. */
static int parse_runs_on(const ctx *c, const kiln_ynode *v, kiln_job *j)
{
	if (v->kind != KILN_YNODE_MAPPING)
		return get_strv(c, "runs-on", v, &j->runs_on);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		int r = key_str(c, k, &name);
		if (r < 0)
			return r;
		if (strcmp(name, "group") == 0)
			r = get_string(c, "runs-on.group", val, &j->runs_on_group);
		else if (strcmp(name, "labels") == 0)
			r = get_strv(c, "runs-on.labels", val, &j->runs_on);
		else
			r = unknown_key(c, k);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- sorted string lookups (job ids, step ids) ----------------------------------- */

typedef struct strref {
	const char *s;
	size_t i;
} strref;

static int strref_cmp(const void *a, const void *b)
{
	const strref *x = a, *y = b;
	int c = strcmp(x->s, y->s);
	if (c)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Index of the job with this id, or SIZE_MAX; ids are sorted in `by_id`. */
static size_t find_job(const strref *by_id, size_t n, const char *id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(by_id[mid].s, id);
		if (c == 0)
			return by_id[mid].i;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SIZE_MAX;
}

/* ---- steps ------------------------------------------------------------------------- */

static int parse_step(const ctx *c, const kiln_ynode *v, kiln_step *s)
{
	int r = 0;
	s->node = v;
	s->line = v->line;
	s->col = v->col;
	if (v->kind != KILN_YNODE_MAPPING)
		return fail(c, v, "a step must be a mapping, not %s", a_kind(v));
	for (size_t i = 0; i < v->npairs && r >= 0; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if ((r = key_str(c, k, &name)) < 0)
			return r;
		if (strcmp(name, "id") == 0) {
			char q[80];
			r = get_string(c, name, val, &s->id);
			if (r >= 0 && s->id && !valid_id(s->id))
				r = fail(c, val,
				         "invalid step id '%s': it must start with a letter or '_' "
				         "and contain only letters, digits, '-' and '_'",
				         Q(q, s->id));
		} else if (strcmp(name, "name") == 0) {
			r = get_string(c, name, val, &s->name);
		} else if (strcmp(name, "run") == 0) {
			r = get_string(c, name, val, &s->run);
		} else if (strcmp(name, "uses") == 0) {
			r = get_string(c, name, val, &s->uses);
		} else if (strcmp(name, "with") == 0) {
			r = get_env(c, name, val, &s->with, false);
		} else if (strcmp(name, "env") == 0) {
			r = get_env(c, name, val, &s->env, true);
		} else if (strcmp(name, "working-directory") == 0) {
			r = get_string(c, name, val, &s->working_directory);
		} else if (strcmp(name, "shell") == 0) {
			r = get_string(c, name, val, &s->shell);
		} else if (strcmp(name, "if") == 0) {
			r = get_string(c, name, val, &s->if_cond);
		} else if (strcmp(name, "continue-on-error") == 0) {
			r = get_bool_or_expr(c, name, val, &s->continue_on_error);
		} else if (strcmp(name, "timeout-minutes") == 0) {
			r = get_minutes(c, val, &s->timeout_minutes, &s->timeout_minutes_expr);
		} else {
			r = unknown_key(c, k);
		}
	}
	if (r < 0)
		return r;
	if (s->run && s->uses)
		return fail(c, v, "a step cannot have both 'run' and 'uses'");
	if (!s->run && !s->uses)
		return fail(c, v, "a step needs either 'run' or 'uses'");
	return 0;
}

static int parse_steps(const ctx *c, const kiln_ynode *k, const kiln_ynode *v, kiln_job *j)
{
	char q[80];
	if (kiln_ynode_is_null(v) || (v->kind == KILN_YNODE_SEQUENCE && v->nitems == 0))
		return fail(c, k, "job '%s' has no steps", j->id);
	if (v->kind != KILN_YNODE_SEQUENCE)
		return fail(c, v, "'steps' must be a sequence, not %s", a_kind(v));
	j->steps = kiln_calloc(v->nitems, sizeof *j->steps);
	for (size_t i = 0; i < v->nitems; i++) {
		j->nsteps++;
		int r = parse_step(c, v->items[i], &j->steps[i]);
		if (r < 0)
			return r;
	}

	/* Step ids are unique within a job. */
	_cleanup_free_ strref *ids = kiln_calloc(j->nsteps, sizeof *ids);
	size_t n = 0;
	for (size_t i = 0; i < j->nsteps; i++)
		if (j->steps[i].id)
			ids[n++] = (strref){j->steps[i].id, i};
	qsort(ids, n, sizeof *ids, strref_cmp);
	size_t dup = SIZE_MAX, first = 0;
	for (size_t i = 1; i < n; i++)
		if (strcmp(ids[i - 1].s, ids[i].s) == 0 && ids[i].i < dup &&
		    (i == 1 || strcmp(ids[i - 2].s, ids[i].s) != 0)) {
			dup = ids[i].i;
			first = ids[i - 1].i;
		}
	if (dup != SIZE_MAX) {
		const kiln_ynode *idn = kiln_ynode_get(j->steps[dup].node, "id");
		return fail(c, idn, "duplicate step id '%s' (first at %d:%d)",
		            Q(q, j->steps[dup].id), j->steps[first].line, j->steps[first].col);
	}
	return 0;
}

/* ---- jobs --------------------------------------------------------------------------- */

static int parse_job(const ctx *c, const kiln_ynode *key, const kiln_ynode *v, kiln_job *j)
{
	char q[80];
	const char *id;
	int r = key_str(c, key, &id);
	if (r < 0)
		return r;
	j->line = key->line;
	j->col = key->col;
	if (!valid_id(id))
		return fail(c, key,
		            "invalid job id '%s': it must start with a letter or '_' and contain "
		            "only letters, digits, '-' and '_'",
		            Q(q, id));
	j->id = kiln_strdup(id);
	j->node = v;
	if (v->kind != KILN_YNODE_MAPPING)
		return fail(c, kiln_ynode_is_null(v) ? key : v,
		            "job '%s' must be a mapping, not %s", id, a_kind(v));

	const kiln_ynode *steps_key = NULL, *steps = NULL, *runs_on = NULL;
	for (size_t i = 0; i < v->npairs && r >= 0; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if ((r = key_str(c, k, &name)) < 0)
			return r;
		if (strcmp(name, "name") == 0)
			r = get_string(c, name, val, &j->name);
		else if (strcmp(name, "runs-on") == 0) {
			runs_on = k;
			r = parse_runs_on(c, val, j);
		} else if (strcmp(name, "needs") == 0)
			r = get_strv(c, name, val, &j->needs);
		else if (strcmp(name, "env") == 0)
			r = get_env(c, name, val, &j->env, true);
		else if (strcmp(name, "if") == 0)
			r = get_string(c, name, val, &j->if_cond);
		else if (strcmp(name, "timeout-minutes") == 0)
			r = get_minutes(c, val, &j->timeout_minutes, &j->timeout_minutes_expr);
		else if (strcmp(name, "defaults") == 0)
			r = parse_defaults(c, val, &j->defaults_shell,
			                   &j->defaults_working_directory);
		else if (strcmp(name, "steps") == 0) {
			steps_key = k;
			steps = val;
		} else if (strcmp(name, "continue-on-error") == 0)
			r = get_bool_or_expr(c, name, val, &j->continue_on_error);
		else if (strcmp(name, "uses") == 0)
			r = get_string(c, name, val, &j->uses);
		else if (strcmp(name, "with") == 0)
			r = get_env(c, name, val, &j->with, false);
		else if (strcmp(name, "strategy") == 0) {
			r = want_map(c, name, val);
			j->strategy = val;
		} else if (strcmp(name, "outputs") == 0) {
			r = want_map(c, name, val);
			j->outputs = val;
		} else if (strcmp(name, "services") == 0) {
			r = want_map(c, name, val);
			j->services = val;
		} else if (strcmp(name, "container") == 0) {
			r = want_str_or_map(c, name, val);
			j->container = val;
		} else if (strcmp(name, "environment") == 0) {
			r = want_str_or_map(c, name, val);
			j->environment = val;
		} else if (strcmp(name, "concurrency") == 0) {
			r = want_str_or_map(c, name, val);
			j->concurrency = val;
		} else if (strcmp(name, "permissions") == 0) {
			r = want_str_or_map(c, name, val);
			j->permissions = val;
		} else if (strcmp(name, "secrets") == 0) {
			r = want_str_or_map(c, name, val);
			j->secrets = val;
		} else
			r = unknown_key(c, k);
	}
	if (r < 0)
		return r;

	if (j->uses) { /* a call to a reusable workflow: it brings its own runners and steps */
		if (steps_key)
			return fail(c, steps_key, "job '%s' cannot have both 'uses' and 'steps'",
			            id);
		if (runs_on)
			return fail(c, runs_on, "job '%s' cannot have both 'uses' and 'runs-on'",
			            id);
		return 0;
	}
	if (!runs_on)
		return fail(c, key, "job '%s' has no 'runs-on'", id);
	if (j->runs_on.n == 0)
		return fail(c, runs_on, "job '%s' has an empty 'runs-on'", id);
	if (!steps_key)
		return fail(c, key, "job '%s' has no steps", id);
	return parse_steps(c, steps_key, steps, j);
}

/* The node of needs entry k of job j, for positions. */
static const kiln_ynode *needs_entry(const kiln_job *j, size_t k)
{
	const kiln_ynode *n = kiln_ynode_get(j->node, "needs");
	if (n && n->kind == KILN_YNODE_SEQUENCE && k < n->nitems)
		return n->items[k];
	return n;
}

/*
 * Depth-first post-order over needs, jobs taken in file order: each job is
 * emitted after everything it needs. Iterative, since a chain of needs can be
 * as long as the job list. Returns 0, or with a cycle: 1, *cyc and *ncyc holding
 * the jobs on it (caller frees).
 */
static int toposort(const kiln_workflow *wf, size_t *order, size_t **cyc, size_t *ncyc)
{
	size_t n = wf->njobs, no = 0, depth = 0;
	_cleanup_free_ unsigned char *color = kiln_calloc(n, 1); /* 0 new, 1 on stack, 2 done */
	_cleanup_free_ size_t *stack = kiln_calloc(n, sizeof *stack);
	_cleanup_free_ size_t *next = kiln_calloc(n, sizeof *next);
	for (size_t s = 0; s < n; s++) {
		if (color[s])
			continue;
		stack[depth++] = s;
		color[s] = 1;
		while (depth) {
			size_t j = stack[depth - 1];
			const kiln_job *job = &wf->jobs[j];
			if (next[j] < job->needs.n && job->needs_index) {
				size_t t = job->needs_index[next[j]++];
				if (color[t] == 0) {
					color[t] = 1;
					stack[depth++] = t;
				} else if (color[t] == 1 && cyc) {
					size_t from = depth - 1;
					while (stack[from] != t)
						from--;
					*ncyc = depth - from;
					*cyc = kiln_calloc(*ncyc, sizeof **cyc);
					memcpy(*cyc, stack + from, *ncyc * sizeof **cyc);
					return 1;
				}
				continue;
			}
			color[j] = 2;
			if (order)
				order[no++] = j;
			depth--;
		}
	}
	return 0;
}

/* Resolves needs to indexes, refusing unknown jobs and cycles. */
static int check_needs(const ctx *c)
{
	kiln_workflow *wf = c->wf;
	char q[80];
	_cleanup_free_ strref *by_id = kiln_calloc(wf->njobs, sizeof *by_id);
	for (size_t i = 0; i < wf->njobs; i++)
		by_id[i] = (strref){wf->jobs[i].id, i};
	qsort(by_id, wf->njobs, sizeof *by_id, strref_cmp);

	for (size_t i = 0; i < wf->njobs; i++) {
		kiln_job *j = &wf->jobs[i];
		if (!j->needs.n)
			continue;
		j->needs_index = kiln_calloc(j->needs.n, sizeof *j->needs_index);
		for (size_t k = 0; k < j->needs.n; k++) {
			size_t t = find_job(by_id, wf->njobs, j->needs.v[k]);
			if (t == SIZE_MAX)
				return fail(c, needs_entry(j, k), "job '%s' needs unknown job '%s'",
				            j->id, Q(q, j->needs.v[k]));
			j->needs_index[k] = t;
		}
	}

	_cleanup_free_ size_t *cyc = NULL;
	size_t ncyc = 0;
	if (toposort(wf, NULL, &cyc, &ncyc) == 0)
		return 0;
	/* Start the cycle at its member that comes first in the file. */
	size_t lo = 0;
	for (size_t i = 1; i < ncyc; i++)
		if (cyc[i] < cyc[lo])
			lo = i;
	kiln_buf b = {0};
	const size_t show = 10;
	for (size_t i = 0; i < ncyc; i++) {
		if (i == show - 1 && ncyc > show) {
			kiln_buf_printf(&b, "... (%zu more) -> ", ncyc - i);
			break;
		}
		kiln_buf_printf(&b, "%s -> ", wf->jobs[cyc[(lo + i) % ncyc]].id);
	}
	const kiln_job *j0 = &wf->jobs[cyc[lo]];
	kiln_buf_puts(&b, j0->id);
	int r = kiln_err(EINVAL, "%s:%d:%d: needs cycle: %s", c->file, j0->line, j0->col, b.p);
	kiln_buf_free(&b);
	return r;
}

/* ---- the workflow --------------------------------------------------------------------- */

static int parse_jobs(const ctx *c, const kiln_ynode *key, const kiln_ynode *v)
{
	kiln_workflow *wf = c->wf;
	if (kiln_ynode_is_null(v) || (v->kind == KILN_YNODE_MAPPING && v->npairs == 0))
		return fail(c, key, "workflow has no jobs");
	if (v->kind != KILN_YNODE_MAPPING)
		return fail(c, v, "'jobs' must be a mapping, not %s", a_kind(v));
	wf->jobs = kiln_calloc(v->npairs, sizeof *wf->jobs);
	for (size_t i = 0; i < v->npairs; i++) {
		wf->njobs++;
		int r = parse_job(c, v->pairs[i].key, v->pairs[i].value, &wf->jobs[i]);
		if (r < 0)
			return r;
	}
	return check_needs(c);
}

static int parse_root(const ctx *c, const kiln_ynode *root)
{
	kiln_workflow *wf = c->wf;
	const kiln_ynode *jobs_key = NULL, *jobs = NULL, *on_key = NULL;
	int r = 0;
	if (kiln_ynode_is_null(root))
		return kiln_ynode_err(c->file, NULL, ENODATA, "empty workflow"); /* "---" alone */
	if (root->kind != KILN_YNODE_MAPPING)
		return fail(c, root, "a workflow must be a mapping, not %s", a_kind(root));
	for (size_t i = 0; i < root->npairs && r >= 0; i++) {
		const kiln_ynode *k = root->pairs[i].key, *v = root->pairs[i].value;
		const char *name;
		if ((r = key_str(c, k, &name)) < 0)
			return r;
		if (strcmp(name, "on") == 0 || (k->plain && strcmp(name, "true") == 0)) {
			/* `true:` is how a YAML 1.1 tool rewrites an unquoted `on:`. */
			if (on_key)
				return fail(c, k, "duplicate key 'on' (first at %d:%d)",
				            on_key->line, on_key->col);
			on_key = k;
			wf->on = v;
		} else if (strcmp(name, "name") == 0) {
			r = get_string(c, name, v, &wf->name);
		} else if (strcmp(name, "run-name") == 0) {
			r = get_string(c, name, v, &wf->run_name);
		} else if (strcmp(name, "env") == 0) {
			r = get_env(c, name, v, &wf->env, true);
		} else if (strcmp(name, "defaults") == 0) {
			r = parse_defaults(c, v, &wf->defaults_shell,
			                   &wf->defaults_working_directory);
		} else if (strcmp(name, "permissions") == 0) {
			r = want_str_or_map(c, name, v);
			wf->permissions = v;
		} else if (strcmp(name, "concurrency") == 0) {
			r = want_str_or_map(c, name, v);
			wf->concurrency = v;
		} else if (strcmp(name, "jobs") == 0) {
			jobs_key = k;
			jobs = v;
		} else {
			r = unknown_key(c, k);
		}
	}
	if (r < 0)
		return r;
	if (!jobs_key)
		return fail(c, root, "workflow has no 'jobs'");
	return parse_jobs(c, jobs_key, jobs);
}

int kiln_workflow_parse_limits(const char *file, const char *text, size_t len,
                               const kiln_yaml_limits *lim, kiln_workflow **out)
{
	*out = NULL;
	if (!file)
		file = "<input>";
	_cleanup_(kiln_workflow_freep) kiln_workflow *wf = kiln_calloc(1, sizeof *wf);
	wf->file = kiln_strdup(file);
	int r = kiln_yaml_parse(file, text, len, lim, &wf->doc);
	if (r == -ENODATA)
		return kiln_err(ENODATA, "%s:1:1: empty workflow", file);
	if (r < 0)
		return r;
	ctx c = {.file = wf->file, .wf = wf};
	r = parse_root(&c, wf->doc);
	if (r < 0)
		return r;
	*out = wf;
	wf = NULL;
	return 0;
}

int kiln_workflow_parse(const char *file, const char *text, size_t len, kiln_workflow **out)
{
	return kiln_workflow_parse_limits(file, text, len, NULL, out);
}

const kiln_job *kiln_workflow_job(const kiln_workflow *wf, const char *id)
{
	if (!wf || !id)
		return NULL;
	for (size_t i = 0; i < wf->njobs; i++)
		if (strcmp(wf->jobs[i].id, id) == 0)
			return &wf->jobs[i];
	return NULL;
}

void kiln_workflow_order(const kiln_workflow *wf, size_t *order)
{
	toposort(wf, order, NULL, NULL);
}

const char *kiln_env_get(const kiln_env *env, const char *key)
{
	const char *v = NULL;
	for (size_t i = 0; env && i < env->n; i++)
		if (strcmp(env->v[i].key, key) == 0)
			v = env->v[i].value;
	return v;
}

bool kiln_workflow_triggers(const kiln_workflow *wf, const char *event)
{
	const kiln_ynode *on = wf->on;
	if (!on)
		return true;
	switch (on->kind) {
	case KILN_YNODE_SCALAR:
		return strcmp(on->str, event) == 0;
	case KILN_YNODE_SEQUENCE:
		for (size_t i = 0; i < on->nitems; i++)
			if (on->items[i]->kind == KILN_YNODE_SCALAR && strcmp(on->items[i]->str, event) == 0)
				return true;
		return false;
	case KILN_YNODE_MAPPING:
		return kiln_ynode_get_key(on, event) != NULL;
	}
	return false;
}
