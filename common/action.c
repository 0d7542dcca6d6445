/*
 * action — turns an action.yml into a kiln_action, checking what GitHub's
 * runner checks when it loads one (src/Runner.Worker/action_yaml.json): the
 * shape of inputs, outputs and runs; for composite actions every step, with
 * `shell` required on run steps; and each ${{ }} against the contexts that
 * schema allows at its place (no `secrets` or `vars` inside an action).
 * Parsing stops at the first problem, which names its node's position.
 */
#include "common/action.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/expr.h"

#define MAX_ID_LEN 100
#define Q(buf, s) kiln_yaml_quote(buf, sizeof buf, s)

/* The schema's contexts per place; listing a function limits the status functions and hashFiles. */
static const char *const ctx_step[] = {"github", "inputs", "strategy", "matrix", "steps", "job",
				       "runner", "env", "hashFiles(1,255)", NULL};
static const char *const ctx_if[] = {"github",	   "inputs",	   "strategy",	    "matrix",
				     "steps",	   "job",	   "runner",	    "env",
				     "always(0,0)", "success(0,0)", "failure(0,0)", "cancelled(0,0)",
				     "hashFiles(1,255)", NULL};
static const char *const ctx_default[] = {"github", "strategy", "matrix", "job", "runner",
					  "hashFiles(1,255)", NULL};
static const char *const ctx_output[] = {"github", "strategy", "matrix", "steps", "inputs",
					 "job",	   "runner",   "env",	 "()",	   NULL};

/* ---- freeing ------------------------------------------------------------------------ */

void kiln_action_free(kiln_action *a)
{
	if (!a)
		return;
	free(a->file);
	free(a->name);
	free(a->description);
	for (size_t i = 0; i < a->ninputs; i++) {
		free(a->inputs[i].name);
		free(a->inputs[i].description);
		free(a->inputs[i].default_value);
		free(a->inputs[i].deprecation);
	}
	free(a->inputs);
	for (size_t i = 0; i < a->noutputs; i++) {
		free(a->outputs[i].name);
		free(a->outputs[i].description);
		free(a->outputs[i].value);
	}
	free(a->outputs);
	free(a->using);
	free(a->main);
	free(a->pre);
	free(a->post);
	free(a->pre_if);
	free(a->post_if);
	free(a->image);
	for (size_t i = 0; i < a->nsteps; i++)
		kiln_step_free(&a->steps[i]);
	free(a->steps);
	kiln_ynode_free(a->doc);
	free(a);
}

void kiln_action_freep(kiln_action **a)
{
	kiln_action_free(*a);
	*a = NULL;
}

/* ---- helpers ------------------------------------------------------------------------ */

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

static bool is_scalar(const kiln_ynode *n)
{
	return n && n->kind == KILN_YNODE_SCALAR;
}

/* Checks the ${{ }} of a scalar against the contexts of its place (NULL: none allowed). */
static int check_exprs(const char *file, const kiln_ynode *n, const char *what,
		       const char *const *allowed)
{
	if (!is_scalar(n) || !strstr(n->str, "${{"))
		return 0;
	if (!allowed)
		return kiln_ynode_err(file, n, EINVAL, "'%s' cannot hold expressions ('${{ }}')",
				      what);
	if (kiln_expr_check(n->str, allowed) < 0)
		return kiln_ynode_err(file, n, EINVAL, "'%s': %s", what, kiln_errmsg());
	return 0;
}

/* A scalar as written (null → NULL), its expressions checked. */
static int get_str(const char *file, const char *what, const kiln_ynode *v,
		   const char *const *allowed, bool nonempty, char **out)
{
	if (kiln_ynode_is_null(v)) {
		if (nonempty)
			return kiln_ynode_err(file, v, EINVAL, "'%s' must not be empty", what);
		return 0;
	}
	if (v->kind != KILN_YNODE_SCALAR)
		return kiln_ynode_err(file, v, EINVAL, "'%s' must be a string, not %s", what,
				      a_kind(v));
	if (nonempty && v->len == 0)
		return kiln_ynode_err(file, v, EINVAL, "'%s' must not be empty", what);
	int r = check_exprs(file, v, what, allowed);
	if (r < 0)
		return r;
	free(*out);
	*out = kiln_strdup(v->str);
	return 0;
}

static int key_str(const char *file, const kiln_ynode *k, const char **out)
{
	*out = "";
	if (k->kind != KILN_YNODE_SCALAR || k->len == 0)
		return kiln_ynode_err(file, k, EINVAL, "keys must be non-empty strings, not %s",
				      k->kind == KILN_YNODE_SCALAR ? "an empty string" : a_kind(k));
	*out = k->str;
	return 0;
}

static int unknown_key(const char *file, const kiln_ynode *k, const char *where)
{
	char q[80];
	return kiln_ynode_err(file, k, EINVAL, "unknown key '%s' in %s", Q(q, k->str), where);
}

/* GitHub's rule for step ids: ^[A-Za-z_][A-Za-z0-9_-]*$, under 100 characters, no "__". */
static bool valid_id(const char *s)
{
	if (strlen(s) >= MAX_ID_LEN || strncmp(s, "__", 2) == 0)
		return false;
	if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* A mapping of names to strings (env, with). */
static int get_env(const char *file, const char *what, const kiln_ynode *v, bool env_names,
		   kiln_env *out)
{
	char q[80];
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind != KILN_YNODE_MAPPING)
		return kiln_ynode_err(file, v, EINVAL, "'%s' must be a mapping, not %s", what,
				      a_kind(v));
	out->v = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *out->v);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name = NULL;
		int r = key_str(file, k, &name);
		if (r < 0)
			return r;
		if (env_names && strchr(name, '='))
			return kiln_ynode_err(file, k, EINVAL,
					      "invalid environment variable name '%s'", Q(q, name));
		if (!kiln_ynode_is_null(val) && val->kind != KILN_YNODE_SCALAR)
			return kiln_ynode_err(file, val, EINVAL, "%s '%s' must be a string, not %s",
					      what, Q(q, name), a_kind(val));
		if ((r = check_exprs(file, val, what, ctx_step)) < 0)
			return r;
		out->v[out->n].key = kiln_strdup(name);
		out->v[out->n].value = kiln_strdup(kiln_ynode_is_null(val) ? "" : val->str);
		out->v[out->n].node = val;
		out->n++;
	}
	return 0;
}

/* uses: ./PATH, docker://IMAGE or OWNER/REPO[/PATH]@REF. */
static int check_uses(const char *file, const kiln_ynode *v, const char *u)
{
	char q[120];
	if (strncmp(u, "./", 2) == 0)
		return 0;
	if (strncmp(u, "docker://", 9) == 0) {
		if (u[9])
			return 0;
	} else {
		const char *at = strchr(u, '@');
		if (at && at[1] && !strchr(at + 1, '@')) {
			const char *slash = memchr(u, '/', (size_t)(at - u));
			if (slash && slash > u && slash + 1 < at && slash[1] != '/')
				return 0;
		}
	}
	return kiln_ynode_err(file, v, EINVAL,
			      "'uses' must be OWNER/REPO[/PATH]@REF, ./PATH or docker://IMAGE, "
			      "not '%s'",
			      Q(q, u));
}

/* ---- composite steps ---------------------------------------------------------------- */

static int parse_step(const char *file, const kiln_ynode *v, kiln_step *s)
{
	char q[80];
	s->node = v;
	s->line = v ? v->line : 1;
	s->col = v ? v->col : 1;
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return kiln_ynode_err(file, v, EINVAL, "a step must be a mapping, not %s",
				      a_kind(v));
	const kiln_ynode *run_k = NULL, *uses_k = NULL, *with_k = NULL, *shell_k = NULL,
			 *wd_k = NULL;
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name = NULL;
		int r = key_str(file, k, &name);
		if (r < 0)
			return r;
		if (strcmp(name, "id") == 0) {
			if ((r = get_str(file, name, val, NULL, true, &s->id)) < 0)
				return r;
			if (!valid_id(s->id))
				return kiln_ynode_err(file, val, EINVAL,
						      "invalid step id '%s': it must start with a "
						      "letter or '_', contain only letters, digits, "
						      "'-' and '_', not start with '__' and be under "
						      "100 characters",
						      Q(q, s->id));
		} else if (strcmp(name, "name") == 0) {
			r = get_str(file, name, val, ctx_step, false, &s->name);
		} else if (strcmp(name, "run") == 0) {
			run_k = k;
			r = get_str(file, name, val, ctx_step, false, &s->run);
			if (r == 0 && !s->run)
				s->run = kiln_strdup("");
		} else if (strcmp(name, "shell") == 0) {
			shell_k = k;
			r = get_str(file, name, val, NULL, true, &s->shell);
		} else if (strcmp(name, "uses") == 0) {
			uses_k = k;
			r = get_str(file, name, val, NULL, true, &s->uses);
			if (r == 0)
				r = check_uses(file, val, s->uses);
		} else if (strcmp(name, "with") == 0) {
			with_k = k;
			r = get_env(file, name, val, false, &s->with);
		} else if (strcmp(name, "env") == 0) {
			r = get_env(file, name, val, true, &s->env);
		} else if (strcmp(name, "working-directory") == 0) {
			wd_k = k;
			r = get_str(file, name, val, ctx_step, false, &s->working_directory);
		} else if (strcmp(name, "if") == 0) {
			if (kiln_ynode_is_null(val))
				continue;
			if (val->kind != KILN_YNODE_SCALAR)
				return kiln_ynode_err(file, val, EINVAL,
						      "'if' must be a string, not %s", a_kind(val));
			if (val->len && kiln_expr_check(val->str, ctx_if) < 0)
				return kiln_ynode_err(file, val, EINVAL, "'if': %s", kiln_errmsg());
			s->if_cond = kiln_strdup(val->str);
		} else if (strcmp(name, "continue-on-error") == 0) {
			bool b;
			if (kiln_ynode_bool(val, &b) == 0) {
				s->continue_on_error = kiln_strdup(b ? "true" : "false");
			} else if (is_scalar(val) && strstr(val->str, "${{")) {
				r = get_str(file, name, val, ctx_step, true,
					    &s->continue_on_error);
			} else {
				return kiln_ynode_err(file, val, EINVAL,
						      "'continue-on-error' must be true, false or "
						      "an expression");
			}
		} else {
			return unknown_key(file, k, "a composite action's step");
		}
		if (r < 0)
			return r;
	}
	if (run_k && uses_k)
		return kiln_ynode_err(file, v, EINVAL, "a step cannot have both 'run' and 'uses'");
	if (!run_k && !uses_k)
		return kiln_ynode_err(file, v, EINVAL, "a step needs either 'run' or 'uses'");
	if (uses_k) {
		if (shell_k)
			return kiln_ynode_err(file, shell_k, EINVAL,
					      "'shell' is only for 'run' steps, not for 'uses'");
		if (wd_k)
			return kiln_ynode_err(file, wd_k, EINVAL,
					      "'working-directory' is only for 'run' steps, not "
					      "for 'uses'");
		return 0;
	}
	if (with_k)
		return kiln_ynode_err(file, with_k, EINVAL,
				      "'with' is only for steps that use an action ('uses')");
	if (!shell_k)
		return kiln_ynode_err(file, v, EINVAL,
				      "a 'run' step of a composite action needs 'shell' (bash, sh, "
				      "python, pwsh or a command line with {0})");
	return 0;
}

static int parse_steps(const char *file, const kiln_ynode *k, const kiln_ynode *v,
		       kiln_action *a)
{
	char q[80];
	if (kiln_ynode_is_null(v))
		return kiln_ynode_err(file, v ? v : k, EINVAL,
				      "a composite action needs 'runs.steps'");
	if (v->kind != KILN_YNODE_SEQUENCE)
		return kiln_ynode_err(file, v, EINVAL, "'steps' must be a sequence, not %s",
				      a_kind(v));
	a->steps = kiln_calloc(v->nitems ? v->nitems : 1, sizeof *a->steps);
	for (size_t i = 0; i < v->nitems; i++) {
		kiln_step *s = &a->steps[a->nsteps++];
		int r = parse_step(file, v->items[i], s);
		if (r < 0)
			return r;
		for (size_t j = 0; s->id && j + 1 < a->nsteps; j++)
			if (a->steps[j].id && strcmp(a->steps[j].id, s->id) == 0)
				return kiln_ynode_err(file, kiln_ynode_get(s->node, "id"), EINVAL,
						      "duplicate step id '%s' (first at %d:%d)",
						      Q(q, s->id), a->steps[j].line,
						      a->steps[j].col);
	}
	return 0;
}

/* ---- runs ----------------------------------------------------------------------------- */

static bool is_node(const char *using)
{
	return strcasecmp(using, "node12") == 0 || strcasecmp(using, "node16") == 0 ||
	       strcasecmp(using, "node20") == 0 || strcasecmp(using, "node24") == 0;
}

static int parse_runs(const char *file, const kiln_ynode *key, const kiln_ynode *v,
		      kiln_action *a)
{
	char q[80];
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return kiln_ynode_err(file, v ? v : key, EINVAL, "'runs' must be a mapping, not %s",
				      a_kind(v));
	const kiln_ynode *using_v = kiln_ynode_get(v, "using");
	if (!kiln_ynode_get_key(v, "using"))
		return kiln_ynode_err(file, v, EINVAL, "'runs' needs 'using'");
	int r = get_str(file, "using", using_v, NULL, true, &a->using);
	if (r < 0)
		return r;
	if (strcasecmp(a->using, "composite") == 0)
		a->kind = KILN_ACTION_COMPOSITE;
	else if (is_node(a->using))
		a->kind = KILN_ACTION_NODE;
	else if (strcasecmp(a->using, "docker") == 0)
		a->kind = KILN_ACTION_DOCKER;
	else
		return kiln_ynode_err(file, using_v, EINVAL,
				      "unknown 'runs.using' '%s': kiln runs composite, node20 "
				      "(node24, node16, node12) and docker actions",
				      Q(q, a->using));

	const kiln_ynode *steps_k = NULL;
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name = NULL;
		if ((r = key_str(file, k, &name)) < 0)
			return r;
		if (strcmp(name, "using") == 0)
			continue;
		if (a->kind == KILN_ACTION_COMPOSITE && strcmp(name, "steps") == 0) {
			steps_k = k;
			if ((r = parse_steps(file, k, val, a)) < 0)
				return r;
		} else if (a->kind == KILN_ACTION_NODE && strcmp(name, "main") == 0) {
			r = get_str(file, name, val, NULL, true, &a->main);
		} else if (a->kind == KILN_ACTION_NODE && strcmp(name, "pre") == 0) {
			r = get_str(file, name, val, NULL, true, &a->pre);
		} else if (a->kind == KILN_ACTION_NODE && strcmp(name, "post") == 0) {
			r = get_str(file, name, val, NULL, true, &a->post);
		} else if (strcmp(name, "pre-if") == 0 && a->kind != KILN_ACTION_COMPOSITE) {
			r = get_str(file, name, val, ctx_if, true, &a->pre_if);
		} else if (strcmp(name, "post-if") == 0 && a->kind != KILN_ACTION_COMPOSITE) {
			r = get_str(file, name, val, ctx_if, true, &a->post_if);
		} else if (a->kind == KILN_ACTION_DOCKER && strcmp(name, "image") == 0) {
			r = get_str(file, name, val, NULL, true, &a->image);
		} else if (a->kind == KILN_ACTION_DOCKER &&
			   (strcmp(name, "entrypoint") == 0 || strcmp(name, "args") == 0 ||
			    strcmp(name, "env") == 0 || strcmp(name, "pre-entrypoint") == 0 ||
			    strcmp(name, "post-entrypoint") == 0)) {
			continue; /* never run: kiln has no container actions yet */
		} else {
			return unknown_key(file, k, a->kind == KILN_ACTION_COMPOSITE ? "composite 'runs'"
						    : a->kind == KILN_ACTION_NODE	     ? "node 'runs'"
											     : "docker 'runs'");
		}
		if (r < 0)
			return r;
	}
	if (a->kind == KILN_ACTION_COMPOSITE && !steps_k)
		return kiln_ynode_err(file, v, EINVAL, "a composite action needs 'runs.steps'");
	if (a->kind == KILN_ACTION_NODE && !a->main)
		return kiln_ynode_err(file, v, EINVAL, "a %s action needs 'runs.main'", a->using);
	if (a->kind == KILN_ACTION_DOCKER && !a->image)
		return kiln_ynode_err(file, v, EINVAL, "a docker action needs 'runs.image'");
	return 0;
}

/* ---- inputs and outputs --------------------------------------------------------------- */

static int parse_input(const char *file, const kiln_ynode *v, kiln_action_input *in)
{
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind != KILN_YNODE_MAPPING)
		return kiln_ynode_err(file, v, EINVAL, "input '%s' must be a mapping, not %s",
				      in->name, a_kind(v));
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name = NULL;
		int r = key_str(file, k, &name);
		if (r < 0)
			return r;
		if (strcmp(name, "default") == 0) {
			if (!kiln_ynode_is_null(val) && val->kind != KILN_YNODE_SCALAR)
				return kiln_ynode_err(file, val, EINVAL,
						      "the default of input '%s' must be a string, "
						      "not %s",
						      in->name, a_kind(val));
			r = get_str(file, "default", val, ctx_default, false, &in->default_value);
		} else if (strcmp(name, "required") == 0) {
			bool b = false;
			if (kiln_ynode_bool(val, &b) < 0 && is_scalar(val))
				b = strcasecmp(val->str, "true") == 0;
			in->required = b;
		} else if (strcmp(name, "description") == 0) {
			if (is_scalar(val))
				in->description = kiln_strdup(val->str);
		} else if (strcmp(name, "deprecationMessage") == 0) {
			if (is_scalar(val))
				in->deprecation = kiln_strdup(val->str);
		}
		/* other keys are allowed (the schema's loose-value-type) */
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_inputs(const char *file, const kiln_ynode *v, kiln_action *a)
{
	char q[80];
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind != KILN_YNODE_MAPPING)
		return kiln_ynode_err(file, v, EINVAL, "'inputs' must be a mapping, not %s",
				      a_kind(v));
	a->inputs = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *a->inputs);
	for (size_t i = 0; i < v->npairs; i++) {
		const char *name = NULL;
		int r = key_str(file, v->pairs[i].key, &name);
		if (r < 0)
			return r;
		if (kiln_action_input_get(a, name))
			return kiln_ynode_err(file, v->pairs[i].key, EINVAL,
					      "input '%s' is defined twice (names are compared "
					      "without case)",
					      Q(q, name));
		kiln_action_input *in = &a->inputs[a->ninputs++];
		in->name = kiln_strdup(name);
		if ((r = parse_input(file, v->pairs[i].value, in)) < 0)
			return r;
	}
	return 0;
}

static int parse_outputs(const char *file, const kiln_ynode *v, kiln_action *a)
{
	if (kiln_ynode_is_null(v))
		return 0;
	if (v->kind != KILN_YNODE_MAPPING)
		return kiln_ynode_err(file, v, EINVAL, "'outputs' must be a mapping, not %s",
				      a_kind(v));
	a->outputs = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *a->outputs);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *def = v->pairs[i].value;
		const char *name = NULL;
		int r = key_str(file, v->pairs[i].key, &name);
		if (r < 0)
			return r;
		kiln_action_output *o = &a->outputs[a->noutputs++];
		o->name = kiln_strdup(name);
		if (kiln_ynode_is_null(def))
			continue;
		if (def->kind != KILN_YNODE_MAPPING)
			return kiln_ynode_err(file, def, EINVAL,
					      "output '%s' must be a mapping, not %s", o->name,
					      a_kind(def));
		for (size_t j = 0; j < def->npairs; j++) {
			const kiln_ynode *k = def->pairs[j].key, *val = def->pairs[j].value;
			const char *key = NULL;
			if ((r = key_str(file, k, &key)) < 0)
				return r;
			if (strcmp(key, "value") == 0)
				r = get_str(file, "value", val, ctx_output, false, &o->value);
			else if (strcmp(key, "description") == 0)
				r = get_str(file, "description", val, NULL, false, &o->description);
			else
				return unknown_key(file, k, "an output");
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* ---- the file ---------------------------------------------------------------------- */

int kiln_action_parse(const char *file, const char *text, size_t len, kiln_action **out)
{
	*out = NULL;
	kiln_yaml_limits lim = KILN_YAML_LIMITS_INIT;
	lim.max_bytes = KILN_ACTION_MAX_BYTES;
	kiln_action *a = kiln_calloc(1, sizeof *a);
	a->file = kiln_strdup(file);
	int r = kiln_yaml_parse(file, text, len, &lim, &a->doc);
	if (r < 0) {
		kiln_action_free(a);
		return r;
	}
	const kiln_ynode *root = a->doc;
	if (root->kind != KILN_YNODE_MAPPING) {
		r = kiln_ynode_err(file, root, EINVAL, "an action file must be a mapping, not %s",
				   a_kind(root));
		goto fail;
	}
	const kiln_ynode *runs_k = NULL;
	for (size_t i = 0; i < root->npairs; i++) {
		const kiln_ynode *k = root->pairs[i].key, *val = root->pairs[i].value;
		const char *name = NULL;
		if ((r = key_str(file, k, &name)) < 0)
			goto fail;
		if (strcmp(name, "name") == 0)
			r = get_str(file, name, val, NULL, false, &a->name);
		else if (strcmp(name, "description") == 0)
			r = get_str(file, name, val, NULL, false, &a->description);
		else if (strcmp(name, "inputs") == 0)
			r = parse_inputs(file, val, a);
		else if (strcmp(name, "outputs") == 0)
			r = parse_outputs(file, val, a);
		else if (strcmp(name, "runs") == 0) {
			runs_k = k;
			r = parse_runs(file, k, val, a);
		}
		/* author, branding, …: the schema lets any other key through */
		if (r < 0)
			goto fail;
	}
	if (!runs_k) {
		r = kiln_ynode_err(file, root, EINVAL, "an action file needs 'runs'");
		goto fail;
	}
	if (a->kind != KILN_ACTION_COMPOSITE) {
		/* only a composite action's outputs have values */
		for (size_t i = 0; i < a->noutputs; i++) {
			free(a->outputs[i].value);
			a->outputs[i].value = NULL;
		}
	}
	*out = a;
	return 0;
fail:
	kiln_action_free(a);
	return r;
}

const kiln_action_input *kiln_action_input_get(const kiln_action *a, const char *name)
{
	for (size_t i = 0; i < a->ninputs; i++)
		if (strcasecmp(a->inputs[i].name, name) == 0)
			return &a->inputs[i];
	return NULL;
}

char *kiln_action_input_env(const char *name)
{
	char *s = kiln_asprintf("INPUT_%s", name);
	for (char *p = s + 6; *p; p++) {
		if (*p == ' ')
			*p = '_';
		else if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	}
	return s;
}
