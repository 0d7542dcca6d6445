/*
 * workflow — turns a kiln_ynode tree into a kiln_workflow and checks it.
 *
 * Parsing walks the document once, top-down, and records every problem it
 * meets with the position of the node it is about, then goes on: a lint
 * wants them all, and kiln_workflow_parse() reports the first. Keys nobody
 * knows are refused, so a typo ("run-on") fails loudly instead of silently
 * doing nothing. Types follow YAML 1.2's core schema as GitHub reads it:
 * a quoted "30" is a string, not a number.
 *
 * Every scalar that may hold `${{ }}` is checked where it stands, with the
 * contexts and functions GitHub allows there (workflow_events.c has the
 * table); a place that allows none refuses expressions outright.
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
#include <strings.h>

#include "common/matrix.h"

#if defined(__has_include)
#if __has_include("common/expr.h")
#include "common/expr.h"
#define HAVE_EXPR 1
#endif
#endif

/* Longest timeout accepted, in minutes: a year. Beyond that it is a typo, and overflows later. */
#define MAX_TIMEOUT_MINUTES 525600.0
/* Problems recorded per file; past this, one more line says so. */
#define MAX_PROBLEMS 500
/* GitHub's limit on job and step ids. */
#define MAX_ID_LEN 100

typedef struct ctx {
	const char *file;
	kiln_workflow *wf;
	kiln_strv *problems;
	size_t nproblems;
	char *first;
	bool strict;
	/* the job being parsed: whether it has a strategy (for the matrix context) */
	bool job_has_strategy;
	const char *filtered[40];
} ctx;

/* ---- freeing ------------------------------------------------------------------ */

void kiln_env_free(kiln_env *e)
{
	for (size_t i = 0; i < e->n; i++) {
		free(e->v[i].key);
		free(e->v[i].value);
	}
	free(e->v);
	e->v = NULL;
	e->n = 0;
}

void kiln_step_free(kiln_step *s)
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
	kiln_env_free(&s->env);
	kiln_env_free(&s->with);
}

static void container_free(kiln_container *k)
{
	free(k->id);
	free(k->image);
	free(k->username);
	free(k->password);
	kiln_env_free(&k->env);
	kiln_strv_free(&k->ports);
	kiln_strv_free(&k->volumes);
	free(k->options);
	free(k->entrypoint);
	free(k->command);
	free(k->env_expr);
}

static void concurrency_free(kiln_concurrency *k)
{
	free(k->group);
	free(k->cancel_in_progress);
	free(k->queue);
}

static void permissions_free(kiln_permissions *p)
{
	for (size_t i = 0; i < p->nscopes; i++)
		free(p->scopes[i].scope);
	free(p->scopes);
}

static void job_free(kiln_job *j)
{
	free(j->id);
	free(j->name);
	kiln_strv_free(&j->runs_on);
	kiln_strv_free(&j->needs);
	kiln_env_free(&j->env);
	free(j->if_cond);
	free(j->defaults_shell);
	free(j->defaults_working_directory);
	for (size_t i = 0; i < j->nsteps; i++)
		kiln_step_free(&j->steps[i]);
	free(j->steps);
	free(j->needs_index);
	free(j->runs_on_group);
	free(j->timeout_minutes_expr);
	free(j->continue_on_error);
	free(j->uses);
	kiln_env_free(&j->with);
	free(j->fail_fast_expr);
	free(j->max_parallel_expr);
	free(j->strategy_expr);
	kiln_env_free(&j->output_defs);
	if (j->container_def) {
		container_free(j->container_def);
		free(j->container_def);
	}
	for (size_t i = 0; i < j->nservice_defs; i++)
		container_free(&j->service_defs[i]);
	free(j->service_defs);
	free(j->environment_name);
	free(j->environment_url);
	concurrency_free(&j->concurrency_def);
	permissions_free(&j->permissions_def);
	kiln_env_free(&j->secret_values);
}

static void event_free(kiln_event *e)
{
	free(e->name);
	kiln_strv *lists[] = {&e->branches, &e->branches_ignore, &e->tags,  &e->tags_ignore,
	                      &e->paths,    &e->paths_ignore,    &e->types, &e->workflows,
	                      &e->names,    &e->versions};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(lists); i++)
		kiln_strv_free(lists[i]);
	for (size_t i = 0; i < e->nschedules; i++) {
		free(e->schedules[i].cron);
		free(e->schedules[i].timezone);
	}
	free(e->schedules);
	for (size_t i = 0; i < e->ninputs; i++) {
		free(e->inputs[i].name);
		free(e->inputs[i].description);
		free(e->inputs[i].default_value);
		kiln_strv_free(&e->inputs[i].options);
	}
	free(e->inputs);
	for (size_t i = 0; i < e->noutputs; i++) {
		free(e->outputs[i].name);
		free(e->outputs[i].description);
		free(e->outputs[i].value);
	}
	free(e->outputs);
	for (size_t i = 0; i < e->nsecrets; i++) {
		free(e->secrets[i].name);
		free(e->secrets[i].description);
	}
	free(e->secrets);
}

void kiln_workflow_free(kiln_workflow *wf)
{
	if (!wf)
		return;
	free(wf->file);
	free(wf->name);
	free(wf->run_name);
	free(wf->description);
	free(wf->env_expr);
	kiln_env_free(&wf->env);
	free(wf->defaults_shell);
	free(wf->defaults_working_directory);
	for (size_t i = 0; i < wf->njobs; i++)
		job_free(&wf->jobs[i]);
	free(wf->jobs);
	for (size_t i = 0; i < wf->nevents; i++)
		event_free(&wf->events[i]);
	free(wf->events);
	permissions_free(&wf->permissions_def);
	concurrency_free(&wf->concurrency_def);
	kiln_ynode_free(wf->doc);
	free(wf);
}

void kiln_workflow_freep(kiln_workflow **wf)
{
	kiln_workflow_free(*wf);
}

/* ---- problems ------------------------------------------------------------------- */

/* Records the thread's error message, "file:line:col: message", as a problem. */
static int record(ctx *c)
{
	if (!c->first)
		c->first = kiln_strdup(kiln_errmsg());
	if (c->nproblems < MAX_PROBLEMS)
		kiln_strv_push(c->problems, kiln_errmsg());
	else if (c->nproblems == MAX_PROBLEMS)
		kiln_strv_push_owned(c->problems,
		                     kiln_asprintf("%s: more than %d problems; stopping here",
		                                   c->file, MAX_PROBLEMS));
	c->nproblems++;
	return -EINVAL;
}

/* Records a problem about node n (file:line:col: message) and returns -EINVAL. */
static int fail(ctx *c, const kiln_ynode *n, const char *fmt, ...) KILN_PRINTF(3, 4);
static int fail(ctx *c, const kiln_ynode *n, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	kiln_ynode_err(c->file, n, EINVAL, "%s", msg);
	return record(c);
}

/* Records a problem whose message already starts with "file:line:col: ". */
static int fail_raw(ctx *c, const char *msg)
{
	_cleanup_free_ char *copy = kiln_strdup(msg);
	kiln_err(EINVAL, "%s", copy);
	return record(c);
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

/* A key for quoting in a message. */
#define Q(buf, s) kiln_yaml_quote(buf, sizeof buf, s)

static bool literal_only(const char *s, size_t n);

/* A lone `${{ 'text' }}`: GitHub reads it as the text, not as an expression. */
static bool is_literal_expr(const char *s)
{
	size_t n = strlen(s);
	if (n < 5 || strncmp(s, "${{", 3) != 0 || strcmp(s + n - 2, "}}") != 0)
		return false;
	const char *a = s + 3, *b = s + n - 2;
	while (a < b && strchr(" \t\r\n", *a))
		a++;
	while (b > a && strchr(" \t\r\n", b[-1]))
		b--;
	return literal_only(a, (size_t)(b - a));
}

/* The text of a lone `${{ 'text' }}` (quotes undone); caller frees. */
static char *literal_value(const char *s)
{
	const char *a = strchr(s, '\'') + 1, *b = strrchr(s, '\'');
	char *out = kiln_malloc((size_t)(b - a) + 1), *o = out;
	for (; a < b; a++) {
		*o++ = *a;
		if (*a == '\'')
			a++;
	}
	*o = '\0';
	return out;
}

static bool has_expr(const kiln_ynode *n)
{
	return n && n->kind == KILN_YNODE_SCALAR && strstr(n->str, "${{") != NULL &&
	       !is_literal_expr(n->str);
}

static bool is_scalar(const kiln_ynode *n)
{
	return n && n->kind == KILN_YNODE_SCALAR;
}

/* A plain scalar YAML 1.2's core schema reads as a number. */
static bool is_number(const kiln_ynode *n, double *out)
{
	if (!is_scalar(n) || !n->plain || !n->len)
		return false;
	const char *s = n->str;
	if (strcmp(s, ".inf") == 0 || strcmp(s, "+.inf") == 0 || strcmp(s, ".Inf") == 0 ||
	    strcmp(s, ".INF") == 0 || strcmp(s, "-.inf") == 0 || strcmp(s, ".nan") == 0 ||
	    strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0) {
		if (out)
			*out = NAN;
		return true;
	}
	if ((s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) && n->len > 2) {
		const char *set = s[1] == 'x' ? "0123456789abcdefABCDEF" : "01234567";
		if (strspn(s + 2, set) != n->len - 2)
			return false;
		if (out)
			*out = (double)strtoull(s + 2, NULL, s[1] == 'x' ? 16 : 8);
		return true;
	}
	size_t i = 0, digits = 0;
	if (s[i] == '-' || s[i] == '+')
		i++;
	while (s[i] >= '0' && s[i] <= '9')
		i++, digits++;
	if (s[i] == '.') {
		i++;
		while (s[i] >= '0' && s[i] <= '9')
			i++, digits++;
	}
	if (!digits)
		return false;
	if (s[i] == 'e' || s[i] == 'E') {
		i++;
		if (s[i] == '-' || s[i] == '+')
			i++;
		size_t e0 = i;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == e0)
			return false;
	}
	if (s[i])
		return false;
	if (out)
		*out = strtod(s, NULL);
	return true;
}

/* A scalar GitHub reads as a string (not null, a boolean or a number). */
static bool is_stringy(const kiln_ynode *n)
{
	bool b;
	return is_scalar(n) && !kiln_ynode_is_null(n) && kiln_ynode_bool(n, &b) < 0 &&
	       !is_number(n, NULL);
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

static int check_id(ctx *c, const kiln_ynode *n, const char *what, const char *id)
{
	char q[80];
	if (!valid_id(id) || strlen(id) >= MAX_ID_LEN)
		return fail(c, n,
		            "invalid %s id '%s': it must start with a letter or '_' and contain "
		            "only letters, digits, '-' and '_'%s",
		            what, Q(q, id),
		            strlen(id) >= MAX_ID_LEN ? " (and be under 100 characters)" : "");
	if (strncmp(id, "__", 2) == 0)
		return fail(c, n, "invalid %s id '%s': ids starting with '__' are reserved", what,
		            Q(q, id));
	return 0;
}

/* Every mapping key kiln looks at must be a string. */
static int key_str(ctx *c, const kiln_ynode *k, const char **out)
{
	*out = NULL;
	if (k->kind != KILN_YNODE_SCALAR)
		return fail(c, k, "keys must be strings, not %s", a_kind(k));
	*out = k->str;
	return 0;
}

static int unknown_key(ctx *c, const kiln_ynode *k)
{
	char q[80];
	return fail(c, k, "unknown key '%s'", Q(q, k->str));
}

/* ---- expressions ----------------------------------------------------------------- */

/*
 * The list given to kiln_expr_check for a place: in strict mode without `matrix` outside a
 * matrix job. kiln_expr_check restricts the status functions and hashFiles() to those listed
 * only when the list names some function; "()" names none, for places that allow none.
 */
static const char *const *allowed_for(ctx *c, kiln_expr_place place)
{
	const char *const *a = kiln_workflow_expr_allowed(place);
	bool drop_matrix = c->strict && !c->job_has_strategy, functions = false;
	size_t n = 0;
	for (size_t i = 0; a[i] && n < KILN_ARRAY_SIZE(c->filtered) - 2; i++) {
		functions |= strchr(a[i], '(') != NULL;
		if (!(drop_matrix && strcmp(a[i], "matrix") == 0))
			c->filtered[n++] = a[i];
	}
	if (!functions)
		c->filtered[n++] = "()";
	c->filtered[n] = NULL;
	return c->filtered;
}

/* Whether the expression is a string literal alone ('it''s'), which GitHub takes as text. */
static bool literal_only(const char *s, size_t n)
{
	if (n < 2 || s[0] != '\'' || s[n - 1] != '\'')
		return false;
	for (size_t i = 1; i < n - 1; i++)
		if (s[i] == '\'') {
			if (s[i + 1] != '\'' || i + 1 == n - 1)
				return false;
			i++;
		}
	return true;
}

/* Checks one expression (without ${{ }}). */
static int check_expr_text(ctx *c, const kiln_ynode *n, const char *what, const char *text,
                           kiln_expr_place place)
{
#ifdef HAVE_EXPR
	if (kiln_expr_check(text, allowed_for(c, place)) < 0)
		return fail(c, n, "'%s': %s", what, kiln_errmsg());
#else
	(void)c, (void)n, (void)what, (void)text, (void)allowed_for;
#endif
	(void)place;
	return 0;
}

/*
 * Checks every ${{ }} in scalar n: closed, not empty, valid where it stands. At a place
 * that allows none, any expression is refused (but a lone string literal is text).
 * Returns the number of expressions, or <0.
 */
static int scan_exprs(ctx *c, const kiln_ynode *n, const char *what, kiln_expr_place place)
{
	if (!is_scalar(n))
		return 0;
	const char *s = n->str;
	int found = 0;
	for (const char *p = strstr(s, "${{"); p; p = strstr(p, "${{")) {
		const char *q = p + 3, *end = NULL;
		bool in_str = false;
		for (; *q; q++) {
			if (*q == '\'')
				in_str = !in_str;
			else if (!in_str && *q == '}' && q[-1] == '}' && q - 1 >= p + 3) {
				end = q;
				break;
			}
		}
		if (!end)
			return fail(
			    c, n,
			    "'%s': the expression is not closed: '${{' without a matching '}}'",
			    what);
		const char *a = p + 3, *b = end - 1; /* [a, b) is the expression */
		while (a < b && strchr(" \t\r\n", *a))
			a++;
		while (b > a && strchr(" \t\r\n", b[-1]))
			b--;
		if (a == b)
			return fail(c, n, "'%s': an expression was expected inside '${{ }}'", what);
		found++;
		if (place == KILN_PLACE_NONE) {
			if (!is_literal_expr(s))
				return fail(c, n, "'%s' cannot hold expressions ('${{ }}')", what);
		} else {
			_cleanup_free_ char *text = kiln_malloc((size_t)(b - a) + 1);
			memcpy(text, a, (size_t)(b - a));
			text[b - a] = '\0';
			int r = check_expr_text(c, n, what, text, place);
			if (r < 0)
				return r;
		}
		p = end + 1;
	}
	return found;
}

/* An `if:` condition: the whole text is an expression, ${{ }} or not. */
static int check_if(ctx *c, const kiln_ynode *n, kiln_expr_place place)
{
	if (!is_scalar(n))
		return 0;
	_cleanup_free_ char *lit = is_literal_expr(n->str) ? literal_value(n->str) : NULL;
	if (!lit && strstr(n->str, "${{"))
		return scan_exprs(c, n, "if", place) < 0 ? -EINVAL : 0;
	const char *a = lit ? lit : n->str, *b = a + strlen(a);
	while (a < b && strchr(" \t\r\n", *a))
		a++;
	while (b > a && strchr(" \t\r\n", b[-1]))
		b--;
	if (a == b)
		return 0; /* empty means success() */
	_cleanup_free_ char *text = kiln_malloc((size_t)(b - a) + 1);
	memcpy(text, a, (size_t)(b - a));
	text[b - a] = '\0';
	return check_expr_text(c, n, "if", text, place);
}

/* ---- typed values ------------------------------------------------------------------- */

/* A string (any scalar, as written); null leaves *out NULL, or "" with null_empty. */
static int get_str(ctx *c, const char *what, const kiln_ynode *v, kiln_expr_place place,
                   bool nonempty, char **out)
{
	if (kiln_ynode_is_null(v)) {
		if (nonempty)
			return fail(c, v, "'%s' must not be empty", what);
		return 0;
	}
	if (v->kind != KILN_YNODE_SCALAR)
		return fail(c, v, "'%s' must be a string, not %s", what, a_kind(v));
	if (nonempty && v->len == 0)
		return fail(c, v, "'%s' must not be empty", what);
	if (scan_exprs(c, v, what, place) < 0)
		return -EINVAL;
	free(*out);
	*out = is_literal_expr(v->str) ? literal_value(v->str) : kiln_strdup(v->str);
	return 0;
}

/* A string, or a sequence of strings; null gives an empty vector. */
static int get_strv(ctx *c, const char *what, const kiln_ynode *v, kiln_expr_place place,
                    bool nonempty, kiln_strv *out)
{
	int r = 0;
	if (kiln_ynode_is_null(v)) {
		if (nonempty)
			return fail(c, v, "'%s' must not be empty", what);
		return 0;
	}
	if (v->kind == KILN_YNODE_SCALAR) {
		if (nonempty && !v->len)
			return fail(c, v, "'%s' must not be empty", what);
		if (scan_exprs(c, v, what, place) < 0)
			return -EINVAL;
		kiln_strv_push(out, v->str);
		return 0;
	}
	if (v->kind != KILN_YNODE_SEQUENCE)
		return fail(c, v, "'%s' must be a string or a sequence of strings, not %s", what,
		            a_kind(v));
	for (size_t i = 0; i < v->nitems; i++) {
		const kiln_ynode *it = v->items[i];
		if (kiln_ynode_is_null(it) && !nonempty) {
			kiln_strv_push(out, "");
			continue;
		}
		if (kiln_ynode_is_null(it) || it->kind != KILN_YNODE_SCALAR) {
			r = fail(c, it, "'%s' entries must be strings, not %s", what, a_kind(it));
			continue;
		}
		if (nonempty && !it->len) {
			r = fail(c, it, "'%s' entries must not be empty", what);
			continue;
		}
		if (scan_exprs(c, it, what, place) < 0) {
			r = -EINVAL;
			continue;
		}
		kiln_strv_push(out, it->str);
	}
	return r;
}

/* A sequence of strings only. */
static int get_seq(ctx *c, const char *what, const kiln_ynode *v, kiln_expr_place place,
                   bool nonempty, kiln_strv *out)
{
	if (!kiln_ynode_is_null(v) && v->kind == KILN_YNODE_SCALAR && !has_expr(v))
		return fail(c, v, "'%s' must be a sequence of strings, not a string", what);
	if (has_expr(v) && place == KILN_PLACE_NONE)
		return fail(c, v, "'%s' must be a sequence of strings, not an expression", what);
	if (kiln_ynode_is_null(v))
		return fail(c, v, "'%s' must be a sequence of strings, not null", what);
	if (has_expr(v))
		return scan_exprs(c, v, what, place) < 0 ? -EINVAL : 0;
	return get_strv(c, what, v, place, nonempty, out);
}

/* true/false, or an expression where allowed; kept as "true"/"false"/the expression. */
static int get_bool(ctx *c, const char *what, const kiln_ynode *v, kiln_expr_place place, bool *b,
                    char **expr)
{
	bool x;
	if (kiln_ynode_bool(v, &x) == 0) {
		if (b)
			*b = x;
		if (expr) {
			free(*expr);
			*expr = kiln_strdup(x ? "true" : "false");
		}
		return 0;
	}
	if (has_expr(v) && place != KILN_PLACE_NONE) {
		if (scan_exprs(c, v, what, place) < 0)
			return -EINVAL;
		if (expr) {
			free(*expr);
			*expr = kiln_strdup(v->str);
		}
		return 0;
	}
	return fail(c, v, "'%s' must be %s, not %s", what,
	            place != KILN_PLACE_NONE ? "true, false or an expression" : "true or false",
	            is_scalar(v) && !kiln_ynode_is_null(v)
	                ? (v->plain ? "this string" : "a quoted string")
	                : a_kind(v));
}

/* continue-on-error: a boolean or an expression; kept as "true"/"false"/the expression. */
static int get_bool_or_expr(ctx *c, const char *what, const kiln_ynode *v, kiln_expr_place place,
                            char **out)
{
	bool b;
	if (kiln_ynode_bool(v, &b) == 0) {
		free(*out);
		*out = kiln_strdup(b ? "true" : "false");
		return 0;
	}
	if (has_expr(v)) {
		if (scan_exprs(c, v, what, place) < 0)
			return -EINVAL;
		free(*out);
		*out = kiln_strdup(v->str);
		return 0;
	}
	return fail(c, v, "'%s' must be true, false or an expression, not %s", what,
	            v->kind == KILN_YNODE_SCALAR && !kiln_ynode_is_null(v) ? "this string"
	                                                                   : a_kind(v));
}

/* A positive number of minutes, or an expression kept as text. */
static int get_minutes(ctx *c, const char *what, const kiln_ynode *v, kiln_expr_place place,
                       double *out, char **expr)
{
	double d;
	if (has_expr(v)) {
		if (scan_exprs(c, v, what, place) < 0)
			return -EINVAL;
		free(*expr);
		*expr = kiln_strdup(v->str);
		return 0;
	}
	if (is_number(v, &d) && isfinite(d) && d > 0 && d <= MAX_TIMEOUT_MINUTES) {
		*out = d;
		return 0;
	}
	return fail(c, v, "'%s' must be a positive number of minutes (at most %g) or an expression",
	            what, MAX_TIMEOUT_MINUTES);
}

/*
 * A mapping of name to scalar (env:, with:, outputs:); null gives an empty one. Where
 * expressions are allowed the whole mapping may be one (kept in *whole). env_names refuses
 * names no environment can hold.
 */
static int get_env(ctx *c, const char *what, const kiln_ynode *v, kiln_expr_place place,
                   kiln_env *out, bool env_names, char **whole)
{
	char q[80];
	int r = 0;
	if (has_expr(v) && place != KILN_PLACE_NONE && whole) {
		if (scan_exprs(c, v, what, place) < 0)
			return -EINVAL;
		free(*whole);
		*whole = kiln_strdup(v->str);
		return 0;
	}
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return fail(c, v, "'%s' must be a mapping, not %s", what, a_kind(v));
	kiln_env_free(out);
	out->v = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *out->v);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0) {
			r = -EINVAL;
			continue;
		}
		if (!*name) {
			r = fail(c, k, "%s names must not be empty", what);
			continue;
		}
		if (has_expr(k)) {
			if (scan_exprs(c, k, what, place) < 0)
				r = -EINVAL;
		} else if (env_names && strchr(name, '=')) {
			r = fail(c, k, "invalid environment variable name '%s'", Q(q, name));
			continue;
		}
		if (!kiln_ynode_is_null(val) && val->kind != KILN_YNODE_SCALAR) {
			r = fail(c, val, "%s '%s' must be a string, not %s", what, Q(q, name),
			         a_kind(val));
			continue;
		}
		if (!kiln_ynode_is_null(val) && scan_exprs(c, val, what, place) < 0)
			r = -EINVAL;
		out->v[out->n].key = kiln_strdup(name);
		out->v[out->n].value = kiln_strdup(kiln_ynode_is_null(val) ? "" : val->str);
		out->v[out->n].node = val;
		out->n++;
	}
	return r;
}

/* Walks a mapping's keys; calls fn for each string key. Shared shape of every keyed object. */
typedef int (*key_fn)(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                      const kiln_ynode *v);
static int walk_map(ctx *c, const char *what, const kiln_ynode *v, void *obj, key_fn fn)
{
	int r = 0;
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return fail(c, v, "'%s' must be a mapping, not %s", what, a_kind(v));
	for (size_t i = 0; i < v->npairs; i++) {
		const char *name;
		if (key_str(c, v->pairs[i].key, &name) < 0) {
			r = -EINVAL;
			continue;
		}
		if (fn(c, obj, name, v->pairs[i].key, v->pairs[i].value) < 0)
			r = -EINVAL;
	}
	return r;
}

/* ---- keys that differ only in case ------------------------------------------------------ */

typedef struct keyref {
	const kiln_ynode *k;
	size_t i;
} keyref;

static int keyref_cmp(const void *a, const void *b)
{
	const keyref *x = a, *y = b;
	int r = strcasecmp(x->k->str, y->k->str);
	if (r)
		return r;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* GitHub refuses, in every mapping, keys that differ only in case ('A' and 'a'). */
static void check_case_dups(ctx *c, const kiln_ynode *n, unsigned depth)
{
	if (!n || depth > KILN_YAML_MAX_DEPTH * 2)
		return;
	if (n->kind == KILN_YNODE_SEQUENCE) {
		for (size_t i = 0; i < n->nitems; i++)
			check_case_dups(c, n->items[i], depth + 1);
		return;
	}
	if (n->kind != KILN_YNODE_MAPPING)
		return;
	if (n->npairs > 1) {
		_cleanup_free_ keyref *keys = kiln_calloc(n->npairs, sizeof *keys);
		size_t m = 0;
		for (size_t i = 0; i < n->npairs; i++)
			if (n->pairs[i].key->kind == KILN_YNODE_SCALAR)
				keys[m++] = (keyref){n->pairs[i].key, i};
		qsort(keys, m, sizeof *keys, keyref_cmp);
		for (size_t i = 1; i < m; i++)
			if (strcasecmp(keys[i - 1].k->str, keys[i].k->str) == 0) {
				char q1[80], q2[80];
				fail(c, keys[i].k,
				     "duplicate key '%s' ('%s' at %d:%d differs only in case)",
				     Q(q1, keys[i].k->str), Q(q2, keys[i - 1].k->str),
				     keys[i - 1].k->line, keys[i - 1].k->col);
			}
	}
	for (size_t i = 0; i < n->npairs; i++)
		check_case_dups(c, n->pairs[i].value, depth + 1);
}

/* ---- defaults, permissions, concurrency ------------------------------------------------ */

typedef struct defaults_obj {
	char **shell, **wd;
	kiln_expr_place place;
} defaults_obj;

static int defaults_run_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                            const kiln_ynode *v)
{
	defaults_obj *d = obj;
	if (strcmp(name, "shell") == 0)
		return get_str(c, "shell", v, d->place, true, d->shell);
	if (strcmp(name, "working-directory") == 0)
		return get_str(c, "working-directory", v, d->place, true, d->wd);
	return unknown_key(c, k);
}

static int defaults_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                        const kiln_ynode *v)
{
	defaults_obj *d = obj;
	if (strcmp(name, "run") != 0)
		return unknown_key(c, k);
	if (has_expr(v) && d->place != KILN_PLACE_NONE) /* evaluated when the job runs */
		return scan_exprs(c, v, "defaults.run", d->place) < 0 ? -EINVAL : 0;
	return walk_map(c, "defaults.run", v, obj, defaults_run_key);
}

/* defaults: {run: {shell, working-directory}} */
static int parse_defaults(ctx *c, const kiln_ynode *v, kiln_expr_place place, char **shell,
                          char **wd)
{
	defaults_obj d = {shell, wd, place};
	return walk_map(c, "defaults", v, &d, defaults_key);
}

static const struct {
	const char *scope;
	unsigned levels; /* bits: 1 none, 2 read, 4 write */
} perm_scopes[] = {
    {"actions", 7},
    {"artifact-metadata", 7},
    {"attestations", 7},
    {"checks", 7},
    {"code-quality", 7},
    {"contents", 7},
    {"copilot-requests", 5},
    {"deployments", 7},
    {"discussions", 7},
    {"drives", 7},
    {"id-token", 5},
    {"issues", 7},
    {"models", 3},
    {"packages", 7},
    {"pages", 7},
    {"pull-requests", 7},
    {"repository-projects", 7},
    {"security-events", 7},
    {"statuses", 7},
    {"vulnerability-alerts", 3},
};

static int parse_permissions(ctx *c, const kiln_ynode *v, kiln_permissions *p)
{
	char q[80];
	int r = 0;
	p->set = true;
	if (is_scalar(v) && !kiln_ynode_is_null(v)) {
		if (strcmp(v->str, "read-all") == 0)
			p->all = KILN_PERM_READ;
		else if (strcmp(v->str, "write-all") == 0)
			p->all = KILN_PERM_WRITE;
		else
			return fail(
			    c, v,
			    "'permissions' must be read-all, write-all or a mapping of scopes "
			    "to read, write or none, not '%s'",
			    Q(q, v->str));
		return 0;
	}
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return fail(
		    c, v,
		    "'permissions' must be read-all, write-all or a mapping of scopes, not %s",
		    a_kind(v));
	p->scopes = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *p->scopes);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0) {
			r = -EINVAL;
			continue;
		}
		size_t s = 0;
		while (s < KILN_ARRAY_SIZE(perm_scopes) && strcmp(perm_scopes[s].scope, name) != 0)
			s++;
		if (s == KILN_ARRAY_SIZE(perm_scopes)) {
			r = fail(c, k, "unknown permission scope '%s'", Q(q, name));
			continue;
		}
		kiln_perm level = KILN_PERM_UNSET;
		if (is_scalar(val) && strcmp(val->str, "none") == 0)
			level = KILN_PERM_NONE;
		else if (is_scalar(val) && strcmp(val->str, "read") == 0)
			level = KILN_PERM_READ;
		else if (is_scalar(val) && strcmp(val->str, "write") == 0)
			level = KILN_PERM_WRITE;
		if (level == KILN_PERM_UNSET || !((perm_scopes[s].levels >> (level - 1)) & 1)) {
			unsigned l = perm_scopes[s].levels;
			char got[100];
			if (is_scalar(val) && !kiln_ynode_is_null(val))
				snprintf(got, sizeof got, "'%s'", Q(q, val->str));
			else
				snprintf(got, sizeof got, "%s", a_kind(val));
			r = fail(c, val, "permission '%s' must be %s, not %s", name,
			         l == 7   ? "read, write or none"
			         : l == 5 ? "write or none"
			                  : "read or none",
			         got);
			continue;
		}
		p->scopes[p->nscopes].scope = kiln_strdup(name);
		p->scopes[p->nscopes].level = level;
		p->nscopes++;
	}
	return r;
}

kiln_perm kiln_permissions_get(const kiln_permissions *p, const char *scope)
{
	if (!p || !p->set)
		return KILN_PERM_UNSET;
	for (size_t i = 0; i < p->nscopes; i++)
		if (strcmp(p->scopes[i].scope, scope) == 0)
			return p->scopes[i].level;
	if (p->all == KILN_PERM_READ) {
		if (strcmp(scope, "id-token") == 0 || strcmp(scope, "copilot-requests") == 0)
			return KILN_PERM_NONE; /* write or nothing */
		return KILN_PERM_READ;
	}
	if (p->all == KILN_PERM_WRITE) {
		if (strcmp(scope, "models") == 0 || strcmp(scope, "vulnerability-alerts") == 0)
			return KILN_PERM_READ; /* read at most */
		return KILN_PERM_WRITE;
	}
	return KILN_PERM_NONE;
}

typedef struct conc_obj {
	kiln_concurrency *k;
	kiln_expr_place place;
	bool has_group;
} conc_obj;

static int concurrency_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                           const kiln_ynode *v)
{
	conc_obj *o = obj;
	char q[80];
	if (strcmp(name, "group") == 0) {
		o->has_group = true;
		return get_str(c, "concurrency.group", v, o->place, true, &o->k->group);
	}
	if (strcmp(name, "cancel-in-progress") == 0)
		return get_bool(c, "cancel-in-progress", v, o->place, NULL,
		                &o->k->cancel_in_progress);
	if (strcmp(name, "queue") == 0) {
		if (!is_scalar(v) || (strcmp(v->str, "single") != 0 && strcmp(v->str, "max") != 0))
			return fail(c, v, "'queue' must be single or max, not %s",
			            is_scalar(v) ? Q(q, v->str) : a_kind(v));
		free(o->k->queue);
		o->k->queue = kiln_strdup(v->str);
		return 0;
	}
	return unknown_key(c, k);
}

/* concurrency: GROUP | {group, cancel-in-progress, queue}; a job's group must not be empty. */
static int parse_concurrency(ctx *c, const kiln_ynode *key, const kiln_ynode *v,
                             kiln_expr_place place, bool nonempty, kiln_concurrency *k)
{
	k->node = v;
	if (!v || v->kind != KILN_YNODE_MAPPING) {
		if (kiln_ynode_is_null(v) && !nonempty) {
			k->group = kiln_strdup("");
			return 0;
		}
		if (v && v->kind == KILN_YNODE_SEQUENCE)
			return fail(c, v,
			            "'concurrency' must be a string or a mapping, not a sequence");
		return get_str(c, "concurrency", v, place, nonempty, &k->group);
	}
	conc_obj o = {k, place, false};
	int r = walk_map(c, "concurrency", v, &o, concurrency_key);
	if (!o.has_group)
		r = fail(c, v, "'concurrency' needs a 'group'");
	(void)key;
	return r;
}

/* ---- containers, services, environment, runs-on, strategy ------------------------------ */

typedef struct cont_obj {
	kiln_container *k;
	bool service;
	bool has_image;
} cont_obj;

static int credentials_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                           const kiln_ynode *v)
{
	kiln_container *ct = obj;
	if (strcmp(name, "username") == 0)
		return get_str(c, "credentials.username", v, KILN_PLACE_CREDENTIALS, true,
		               &ct->username);
	if (strcmp(name, "password") == 0)
		return get_str(c, "credentials.password", v, KILN_PLACE_CREDENTIALS, true,
		               &ct->password);
	return unknown_key(c, k);
}

static int container_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                         const kiln_ynode *v)
{
	cont_obj *o = obj;
	kiln_container *ct = o->k;
	if (strcmp(name, "image") == 0) {
		o->has_image = true;
		return get_str(c, "image", v, KILN_PLACE_JOB, true, &ct->image);
	}
	if (strcmp(name, "options") == 0)
		return get_str(c, "options", v, KILN_PLACE_JOB, false, &ct->options);
	if (strcmp(name, "env") == 0 &&
	    has_expr(v)) { /* one expression: the container's contexts */
		if (scan_exprs(c, v, "env", KILN_PLACE_JOB) < 0)
			return -EINVAL;
		free(ct->env_expr);
		ct->env_expr = kiln_strdup(v->str);
		return 0;
	}
	if (strcmp(name, "env") == 0)
		return get_env(c, "env", v, KILN_PLACE_RUNNER, &ct->env, true, NULL);
	if (strcmp(name, "ports") == 0)
		return get_seq(c, "ports", v, KILN_PLACE_JOB, true, &ct->ports);
	if (strcmp(name, "volumes") == 0)
		return get_seq(c, "volumes", v, KILN_PLACE_JOB, true, &ct->volumes);
	if (strcmp(name, "credentials") == 0) {
		if (has_expr(v))
			return scan_exprs(c, v, "credentials", KILN_PLACE_CREDENTIALS) < 0 ? -EINVAL
			                                                                   : 0;
		return walk_map(c, "credentials", v, ct, credentials_key);
	}
	if (o->service && strcmp(name, "entrypoint") == 0)
		return get_str(c, "entrypoint", v, KILN_PLACE_JOB, false, &ct->entrypoint);
	if (o->service && strcmp(name, "command") == 0)
		return get_str(c, "command", v, KILN_PLACE_JOB, false, &ct->command);
	return unknown_key(c, k);
}

/* container: IMAGE | {image, credentials, env, ports, volumes, options} (services: + entrypoint,
 * command). */
static int parse_container(ctx *c, const char *what, const kiln_ynode *v, bool service,
                           kiln_container *ct)
{
	ct->node = v;
	if (!v || v->kind != KILN_YNODE_MAPPING) {
		if (v && v->kind == KILN_YNODE_SEQUENCE)
			return fail(c, v, "'%s' must be a string or a mapping, not a sequence",
			            what);
		return get_str(c, what, v, KILN_PLACE_JOB, service, &ct->image);
	}
	cont_obj o = {ct, service, false};
	int r = walk_map(c, what, v, &o, container_key);
	if (!o.has_image && !kiln_matrix_node_has_expr(v))
		r = fail(c, v, "'%s' has no 'image'", what);
	return r;
}

static int parse_services(ctx *c, const kiln_ynode *v, kiln_job *j)
{
	int r = 0;
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return fail(c, v, "'services' must be a mapping, not %s", a_kind(v));
	j->service_defs = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *j->service_defs);
	for (size_t i = 0; i < v->npairs; i++) {
		const char *name;
		if (key_str(c, v->pairs[i].key, &name) < 0) {
			r = -EINVAL;
			continue;
		}
		if (!*name) {
			r = fail(c, v->pairs[i].key, "service names must not be empty");
			continue;
		}
		kiln_container *ct = &j->service_defs[j->nservice_defs++];
		ct->id = kiln_strdup(name);
		_cleanup_free_ char *what = kiln_asprintf("services.%s", name);
		if (parse_container(c, what, v->pairs[i].value, true, ct) < 0)
			r = -EINVAL;
	}
	return r;
}

typedef struct envir_obj {
	kiln_job *j;
	bool has_name;
} envir_obj;

static int environment_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                           const kiln_ynode *v)
{
	envir_obj *o = obj;
	if (strcmp(name, "name") == 0) {
		o->has_name = true;
		return get_str(c, "environment.name", v, KILN_PLACE_JOB, false,
		               &o->j->environment_name);
	}
	if (strcmp(name, "url") == 0)
		return get_str(c, "environment.url", v, KILN_PLACE_RUNNER_NO_SECRETS, false,
		               &o->j->environment_url);
	if (strcmp(name, "deployment") == 0)
		return get_bool(c, "environment.deployment", v, KILN_PLACE_JOB, NULL, NULL);
	return unknown_key(c, k);
}

/* environment: NAME | {name, url, deployment} */
static int parse_environment(ctx *c, const kiln_ynode *v, kiln_job *j)
{
	if (!v || v->kind != KILN_YNODE_MAPPING) {
		if (v && v->kind == KILN_YNODE_SEQUENCE)
			return fail(c, v,
			            "'environment' must be a string or a mapping, not a sequence");
		return get_str(c, "environment", v, KILN_PLACE_JOB, false, &j->environment_name);
	}
	envir_obj o = {j, false};
	int r = walk_map(c, "environment", v, &o, environment_key);
	if (!o.has_name)
		r = fail(c, v, "'environment' needs a 'name'");
	return r;
}

static int runs_on_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                       const kiln_ynode *v)
{
	kiln_job *j = obj;
	char q[120];
	if (strcmp(name, "group") == 0) {
		int r = get_str(c, "runs-on.group", v, KILN_PLACE_JOB, true, &j->runs_on_group);
		if (r < 0 || !j->runs_on_group || has_expr(v))
			return r;
		/* GitHub: a bare group name, or organization/NAME, enterprise/NAME */
		const char *slash = strchr(j->runs_on_group, '/');
		if (!slash)
			return 0;
		size_t pre = (size_t)(slash - j->runs_on_group);
		bool ok_prefix =
		    (pre == 3 && strncmp(j->runs_on_group, "org", 3) == 0) ||
		    (pre == 12 && strncmp(j->runs_on_group, "organization", 12) == 0) ||
		    (pre == 3 && strncmp(j->runs_on_group, "ent", 3) == 0) ||
		    (pre == 10 && strncmp(j->runs_on_group, "enterprise", 10) == 0);
		if (!ok_prefix || !slash[1] || strchr(slash + 1, '/'))
			return fail(c, v,
			            "invalid runner group '%s': use NAME, organization/NAME or "
			            "enterprise/NAME",
			            Q(q, j->runs_on_group));
		return 0;
	}
	if (strcmp(name, "labels") == 0)
		return get_strv(c, "runs-on.labels", v, KILN_PLACE_JOB, true, &j->runs_on);
	return unknown_key(c, k);
}

/* runs-on: a label, a list of labels, or {group, labels}. */
static int parse_runs_on(ctx *c, const kiln_ynode *v, kiln_job *j)
{
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return get_strv(c, "runs-on", v, KILN_PLACE_JOB, true, &j->runs_on);
	return walk_map(c, "runs-on", v, j, runs_on_key);
}

/* Checks the expressions of every scalar (and key) under n. */
static int scan_tree(ctx *c, const kiln_ynode *n, const char *what, kiln_expr_place place)
{
	int r = 0;
	if (!n)
		return 0;
	switch (n->kind) {
	case KILN_YNODE_SCALAR:
		return scan_exprs(c, n, what, place) < 0 ? -EINVAL : 0;
	case KILN_YNODE_SEQUENCE:
		for (size_t i = 0; i < n->nitems; i++)
			if (scan_tree(c, n->items[i], what, place) < 0)
				r = -EINVAL;
		return r;
	case KILN_YNODE_MAPPING:
		for (size_t i = 0; i < n->npairs; i++)
			if (scan_tree(c, n->pairs[i].key, what, place) < 0 ||
			    scan_tree(c, n->pairs[i].value, what, place) < 0)
				r = -EINVAL;
		return r;
	}
	return r;
}

/* strategy.matrix: vectors are sequences, include/exclude sequences of mappings. When the
 * matrix holds no expression, it is expanded here so that its errors come out now. */
static int parse_matrix(ctx *c, const kiln_ynode *v, kiln_job *j)
{
	int r = 0;
	char q[80];
	j->matrix = v;
	if (has_expr(v))
		return scan_exprs(c, v, "matrix", KILN_PLACE_STRATEGY) < 0 ? -EINVAL : 0;
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return fail(c, v, "'matrix' must be a mapping, not %s", a_kind(v));
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0) {
			r = -EINVAL;
			continue;
		}
		if (!*name) {
			r = fail(c, k, "matrix keys must not be empty");
			continue;
		}
		bool filter = strcmp(name, "include") == 0 || strcmp(name, "exclude") == 0;
		if (has_expr(val)) {
			if (scan_exprs(c, val, name, KILN_PLACE_STRATEGY) < 0)
				r = -EINVAL;
			continue;
		}
		if (!val || val->kind != KILN_YNODE_SEQUENCE) {
			r = fail(c, val ? val : k, "matrix %s '%s' must be a sequence, not %s",
			         filter ? "key" : "vector", Q(q, name), a_kind(val));
			continue;
		}
		for (size_t e = 0; e < val->nitems; e++) {
			const kiln_ynode *it = val->items[e];
			if (filter && !has_expr(it) && (!it || it->kind != KILN_YNODE_MAPPING)) {
				r = fail(c, it, "matrix '%s' entries must be mappings, not %s",
				         name, a_kind(it));
				continue;
			}
			/* values may be anything, expressions included */
			if (scan_tree(c, it, name, KILN_PLACE_STRATEGY) < 0)
				r = -EINVAL;
		}
	}
	if (r < 0 || kiln_matrix_node_has_expr(v))
		return r;
	json_t *m = NULL, *combos = NULL;
	if (kiln_matrix_node_json(c->file, v, &m) < 0) /* its message has its position */
		return fail_raw(c, kiln_errmsg());
	if (kiln_matrix_expand(m, &combos) < 0)
		r = fail(c, v, "%s", kiln_errmsg());
	json_decref(m);
	json_decref(combos);
	(void)j;
	return r;
}

static int strategy_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                        const kiln_ynode *v)
{
	kiln_job *j = obj;
	if (strcmp(name, "matrix") == 0)
		return parse_matrix(c, v, j);
	if (strcmp(name, "fail-fast") == 0)
		return get_bool(c, "fail-fast", v, KILN_PLACE_STRATEGY, &j->fail_fast,
		                has_expr(v) ? &j->fail_fast_expr : NULL);
	if (strcmp(name, "max-parallel") == 0) {
		double d;
		if (has_expr(v)) {
			if (scan_exprs(c, v, "max-parallel", KILN_PLACE_STRATEGY) < 0)
				return -EINVAL;
			free(j->max_parallel_expr);
			j->max_parallel_expr = kiln_strdup(v->str);
			return 0;
		}
		if (!is_number(v, &d) || !(d >= 1 && d <= 65536) || d != (double)(long long)d)
			return fail(c, v,
			            "'max-parallel' must be a positive whole number or an "
			            "expression");
		j->max_parallel = (int)d;
		return 0;
	}
	return unknown_key(c, k);
}

static int parse_strategy(ctx *c, const kiln_ynode *v, kiln_job *j)
{
	if (has_expr(v)) {
		if (scan_exprs(c, v, "strategy", KILN_PLACE_STRATEGY) < 0)
			return -EINVAL;
		free(j->strategy_expr);
		j->strategy_expr = kiln_strdup(v->str);
		return 0;
	}
	return walk_map(c, "strategy", v, j, strategy_key);
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

/* uses: of a step: ./PATH, docker://IMAGE or OWNER/REPO[/PATH]@REF. */
static int check_action_ref(ctx *c, const kiln_ynode *v, const char *u)
{
	char q[120];
	if (has_expr(v))
		return 0; /* already refused */
	if (strncmp(u, "./", 2) == 0 || strncmp(u, ".\\", 2) == 0)
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
	return fail(c, v,
	            "'uses' must be OWNER/REPO[/PATH]@REF, ./PATH or docker://IMAGE, not '%s'",
	            Q(q, u));
}

static void parse_step(ctx *c, const kiln_ynode *v, kiln_step *s)
{
	s->node = v;
	s->line = v ? v->line : 1;
	s->col = v ? v->col : 1;
	if (!v || v->kind != KILN_YNODE_MAPPING) {
		fail(c, v, "a step must be a mapping, not %s", a_kind(v));
		return;
	}
	const kiln_ynode *run_k = NULL, *uses_k = NULL, *with_k = NULL, *shell_k = NULL,
	                 *wd_k = NULL;
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0)
			continue;
		if (strcmp(name, "id") == 0) {
			if (get_str(c, name, val, KILN_PLACE_NONE, true, &s->id) == 0 && s->id)
				check_id(c, val, "step", s->id);
		} else if (strcmp(name, "name") == 0) {
			get_str(c, name, val, KILN_PLACE_STEP, false, &s->name);
		} else if (strcmp(name, "run") == 0) {
			run_k = k;
			if (kiln_ynode_is_null(val)) {
				free(s->run);
				s->run = kiln_strdup("");
			} else {
				get_str(c, name, val, KILN_PLACE_STEP, false, &s->run);
			}
		} else if (strcmp(name, "uses") == 0) {
			uses_k = k;
			if (get_str(c, name, val, KILN_PLACE_NONE, true, &s->uses) == 0 && s->uses)
				check_action_ref(c, val, s->uses);
		} else if (strcmp(name, "with") == 0) {
			with_k = k;
			_cleanup_free_ char *whole = NULL;
			get_env(c, name, val, KILN_PLACE_STEP, &s->with, false, &whole);
		} else if (strcmp(name, "env") == 0) {
			get_env(c, name, val, KILN_PLACE_STEP, &s->env, true, NULL);
		} else if (strcmp(name, "working-directory") == 0) {
			wd_k = k;
			get_str(c, name, val, KILN_PLACE_STEP, false, &s->working_directory);
		} else if (strcmp(name, "shell") == 0) {
			shell_k = k;
			get_str(c, name, val, KILN_PLACE_NONE, true, &s->shell);
		} else if (strcmp(name, "if") == 0) {
			if (!kiln_ynode_is_null(val) && val->kind != KILN_YNODE_SCALAR)
				fail(c, val, "'if' must be a string, not %s", a_kind(val));
			else if (!kiln_ynode_is_null(val) &&
			         check_if(c, val, KILN_PLACE_STEP_IF) == 0) {
				free(s->if_cond);
				s->if_cond = kiln_strdup(val->str);
			}
		} else if (strcmp(name, "continue-on-error") == 0) {
			get_bool_or_expr(c, name, val, KILN_PLACE_STEP, &s->continue_on_error);
		} else if (strcmp(name, "timeout-minutes") == 0) {
			get_minutes(c, name, val, KILN_PLACE_STEP, &s->timeout_minutes,
			            &s->timeout_minutes_expr);
		} else {
			unknown_key(c, k);
		}
	}
	if (run_k && uses_k)
		fail(c, v, "a step cannot have both 'run' and 'uses'");
	else if (!run_k && !uses_k)
		fail(c, v, "a step needs either 'run' or 'uses'");
	else if (uses_k) {
		if (shell_k)
			fail(c, shell_k, "'shell' is only for 'run' steps, not for 'uses'");
		if (wd_k)
			fail(c, wd_k,
			     "'working-directory' is only for 'run' steps, not for 'uses'");
	} else if (with_k) {
		fail(c, with_k, "'with' is only for steps that use an action ('uses')");
	}
}

static void parse_steps(ctx *c, const kiln_ynode *k, const kiln_ynode *v, kiln_job *j)
{
	char q[80];
	if (kiln_ynode_is_null(v) || (v->kind == KILN_YNODE_SEQUENCE && v->nitems == 0)) {
		fail(c, k, "job '%s' has no steps", j->id);
		return;
	}
	if (v->kind != KILN_YNODE_SEQUENCE) {
		fail(c, v, "'steps' must be a sequence, not %s", a_kind(v));
		return;
	}
	j->steps = kiln_calloc(v->nitems, sizeof *j->steps);
	for (size_t i = 0; i < v->nitems; i++)
		parse_step(c, v->items[i], &j->steps[j->nsteps++]);

	/* Step ids are unique within a job: report each repeat, against the first. */
	_cleanup_free_ strref *ids = kiln_calloc(j->nsteps, sizeof *ids);
	size_t n = 0;
	for (size_t i = 0; i < j->nsteps; i++)
		if (j->steps[i].id)
			ids[n++] = (strref){j->steps[i].id, i};
	qsort(ids, n, sizeof *ids, strref_cmp);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (strcmp(ids[i - 1].s, ids[i].s) != 0) {
			first = i;
			continue;
		}
		const kiln_step *f = &j->steps[ids[first].i];
		fail(c, kiln_ynode_get(j->steps[ids[i].i].node, "id"),
		     "duplicate step id '%s' (first at %d:%d)", Q(q, ids[i].s), f->line, f->col);
	}
}

/* ---- jobs --------------------------------------------------------------------------- */

/* uses: of a job: ./.github/workflows/FILE.yml or OWNER/REPO/.github/workflows/FILE.yml@REF. */
static int check_workflow_ref(ctx *c, const kiln_ynode *v, kiln_job *j)
{
	char q[160];
	const char *u = j->uses;
	if (has_expr(v))
		return 0;
	const char *path = NULL, *end = u + strlen(u);
	if (strncmp(u, "./", 2) == 0) {
		j->uses_local = true;
		path = u + 2;
		if (strchr(u, '@'))
			path = NULL; /* a local workflow has no ref */
	} else {
		const char *at = strchr(u, '@');
		const char *s1 = strchr(u, '/');
		const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
		if (at && at[1] && !strchr(at + 1, '@') && s1 && s1 > u && s2 && s2 > s1 + 1 &&
		    s2 < at) {
			path = s2 + 1;
			end = at;
		}
	}
	if (path) {
		size_t n = (size_t)(end - path);
		static const char dir[] = ".github/workflows/";
		const size_t dl = sizeof dir - 1;
		bool ext = (n > 4 && strncmp(end - 4, ".yml", 4) == 0) ||
		           (n > 5 && strncmp(end - 5, ".yaml", 5) == 0);
		if (n > dl && strncmp(path, dir, dl) == 0 && ext && !memchr(path + dl, '/', n - dl))
			return 0;
	}
	return fail(c, v,
	            "'uses' must name a reusable workflow as ./.github/workflows/FILE.yml or "
	            "OWNER/REPO/.github/workflows/FILE.yml@REF, not '%s'",
	            Q(q, u));
}

static const char *const call_keys[] = {"name", "uses",        "with",        "secrets", "needs",
                                        "if",   "permissions", "concurrency", "strategy"};
static const char *const runner_keys[] = {"runs-on",
                                          "timeout-minutes",
                                          "cancel-timeout-minutes",
                                          "continue-on-error",
                                          "container",
                                          "services",
                                          "env",
                                          "environment",
                                          "outputs",
                                          "defaults",
                                          "steps",
                                          "snapshot"};

static bool in_list(const char *const *l, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(l[i], s) == 0)
			return true;
	return false;
}

typedef struct snap_obj {
	bool has_name;
} snap_obj;

static int snapshot_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                        const kiln_ynode *v)
{
	_cleanup_free_ char *s = NULL;
	if (strcmp(name, "image-name") == 0) {
		((snap_obj *)obj)->has_name = true;
		return get_str(c, "snapshot.image-name", v, KILN_PLACE_NONE, true, &s);
	}
	if (strcmp(name, "version") == 0)
		return get_str(c, "snapshot.version", v, KILN_PLACE_NONE, true, &s);
	if (strcmp(name, "if") == 0)
		return is_scalar(v) ? check_if(c, v, KILN_PLACE_JOB)
		                    : fail(c, v, "'if' must be a string, not %s", a_kind(v));
	return unknown_key(c, k);
}

static int parse_snapshot(ctx *c, const kiln_ynode *v)
{
	_cleanup_free_ char *s = NULL;
	if (!v || v->kind != KILN_YNODE_MAPPING)
		return get_str(c, "snapshot", v, KILN_PLACE_NONE, true, &s);
	snap_obj o = {false};
	int r = walk_map(c, "snapshot", v, &o, snapshot_key);
	if (!o.has_name)
		r = fail(c, v, "'snapshot' needs an 'image-name'");
	return r;
}

static void parse_job(ctx *c, const kiln_ynode *key, const kiln_ynode *v, kiln_job *j)
{
	const char *id;
	j->fail_fast = true;
	if (key_str(c, key, &id) < 0) {
		j->id = kiln_strdup("");
		return;
	}
	j->line = key->line;
	j->col = key->col;
	j->id = kiln_strdup(id);
	j->node = v;
	check_id(c, key, "job", id);
	if (!v || v->kind != KILN_YNODE_MAPPING) {
		fail(c, kiln_ynode_is_null(v) ? key : v, "job '%s' must be a mapping, not %s", id,
		     a_kind(v));
		return;
	}

	/* What kind of job, and whether the matrix context exists in it. */
	const kiln_ynode *uses_v = kiln_ynode_get(v, "uses");
	j->is_call = kiln_ynode_get_key(v, "uses") != NULL;
	c->job_has_strategy = kiln_ynode_get_key(v, "strategy") != NULL;

	const kiln_ynode *steps_key = NULL, *steps = NULL, *runs_on = NULL;
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0)
			continue;
		if (j->is_call && !in_list(call_keys, KILN_ARRAY_SIZE(call_keys), name)) {
			if (in_list(runner_keys, KILN_ARRAY_SIZE(runner_keys), name))
				fail(c, k, "job '%s' cannot have both 'uses' and '%s'", id, name);
			else
				unknown_key(c, k);
			continue;
		}
		if (!j->is_call && (strcmp(name, "with") == 0 || strcmp(name, "secrets") == 0)) {
			fail(c, k, "'%s' is only for jobs that call a reusable workflow ('uses')",
			     name);
			continue;
		}
		if (strcmp(name, "name") == 0)
			get_str(c, name, val, KILN_PLACE_JOB, false, &j->name);
		else if (strcmp(name, "runs-on") == 0) {
			runs_on = k;
			parse_runs_on(c, val, j);
		} else if (strcmp(name, "needs") == 0)
			get_strv(c, name, val, KILN_PLACE_NONE, true, &j->needs);
		else if (strcmp(name, "env") == 0)
			get_env(c, name, val, KILN_PLACE_JOB_ENV, &j->env, true, NULL);
		else if (strcmp(name, "if") == 0) {
			if (!kiln_ynode_is_null(val) && val->kind != KILN_YNODE_SCALAR)
				fail(c, val, "'if' must be a string, not %s", a_kind(val));
			else if (!kiln_ynode_is_null(val) &&
			         check_if(c, val, KILN_PLACE_JOB_IF) == 0) {
				free(j->if_cond);
				j->if_cond = kiln_strdup(val->str);
			}
		} else if (strcmp(name, "timeout-minutes") == 0)
			get_minutes(c, name, val, KILN_PLACE_JOB, &j->timeout_minutes,
			            &j->timeout_minutes_expr);
		else if (strcmp(name, "cancel-timeout-minutes") == 0) {
			double d = 0;
			_cleanup_free_ char *e = NULL;
			get_minutes(c, name, val, KILN_PLACE_JOB, &d, &e);
		} else if (strcmp(name, "defaults") == 0)
			parse_defaults(c, val, KILN_PLACE_JOB_DEFAULTS, &j->defaults_shell,
			               &j->defaults_working_directory);
		else if (strcmp(name, "steps") == 0) {
			steps_key = k;
			steps = val;
		} else if (strcmp(name, "continue-on-error") == 0)
			get_bool_or_expr(c, name, val, KILN_PLACE_JOB, &j->continue_on_error);
		else if (strcmp(name, "uses") == 0) {
			if (get_str(c, name, val, KILN_PLACE_NONE, true, &j->uses) == 0 && j->uses)
				check_workflow_ref(c, uses_v, j);
		} else if (strcmp(name, "with") == 0)
			get_env(c, name, val, KILN_PLACE_JOB_WITH, &j->with, false, NULL);
		else if (strcmp(name, "strategy") == 0) {
			j->strategy = val;
			parse_strategy(c, val, j);
		} else if (strcmp(name, "outputs") == 0) {
			j->outputs = val;
			get_env(c, name, val, KILN_PLACE_RUNNER, &j->output_defs, false, NULL);
		} else if (strcmp(name, "services") == 0) {
			j->services = val;
			parse_services(c, val, j);
		} else if (strcmp(name, "container") == 0) {
			j->container = val;
			j->container_def = kiln_calloc(1, sizeof *j->container_def);
			if (has_expr(val) && val->kind == KILN_YNODE_SCALAR)
				get_str(c, name, val, KILN_PLACE_JOB, false,
				        &j->container_def->image);
			else
				parse_container(c, name, val, false, j->container_def);
		} else if (strcmp(name, "environment") == 0) {
			j->environment = val;
			parse_environment(c, val, j);
		} else if (strcmp(name, "concurrency") == 0) {
			j->concurrency = val;
			parse_concurrency(c, k, val, KILN_PLACE_JOB, true, &j->concurrency_def);
		} else if (strcmp(name, "permissions") == 0) {
			j->permissions = val;
			parse_permissions(c, val, &j->permissions_def);
		} else if (strcmp(name, "secrets") == 0) {
			j->secrets = val;
			if (is_scalar(val) && strcmp(val->str, "inherit") == 0)
				j->secrets_inherit = true;
			else if (!val || val->kind != KILN_YNODE_MAPPING)
				fail(c, val, "'secrets' must be inherit or a mapping, not %s",
				     is_scalar(val) && !kiln_ynode_is_null(val) ? "this string"
				                                                : a_kind(val));
			else
				get_env(c, name, val, KILN_PLACE_JOB_SECRETS, &j->secret_values,
				        false, NULL);
		} else if (strcmp(name, "snapshot") == 0)
			parse_snapshot(c, val);
		else
			unknown_key(c, k);
	}
	if (!j->is_call) { /* a call to a reusable workflow brings its own runners and steps */
		if (!runs_on)
			fail(c, key, "job '%s' has no 'runs-on'", id);
		else if (j->runs_on.n == 0 && !j->runs_on_group)
			fail(c, runs_on, "job '%s' has an empty 'runs-on'", id);
		if (!steps_key)
			fail(c, key, "job '%s' has no steps", id);
		else
			parse_steps(c, steps_key, steps, j);
	}
	c->job_has_strategy = false;
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
 * as long as the job list. Unresolved needs (SIZE_MAX) are skipped. Returns 0, or
 * with a cycle: 1, *cyc and *ncyc holding the jobs on it (caller frees).
 */
static int toposort(const kiln_workflow *wf, size_t *order, size_t **cyc, size_t *ncyc)
{
	size_t n = wf->njobs, no = 0, depth = 0;
	if (!n)
		return 0;
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
				if (t == SIZE_MAX)
					continue;
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

/* Resolves needs to indexes, reporting unknown jobs, a graph where every job waits, and cycles. */
static void check_needs(ctx *c, const kiln_ynode *jobs_key)
{
	kiln_workflow *wf = c->wf;
	char q[80];
	if (!wf->njobs)
		return;
	_cleanup_free_ strref *by_id = kiln_calloc(wf->njobs, sizeof *by_id);
	for (size_t i = 0; i < wf->njobs; i++)
		by_id[i] = (strref){wf->jobs[i].id, i};
	qsort(by_id, wf->njobs, sizeof *by_id, strref_cmp);

	bool any_free = false;
	size_t before = c->nproblems;
	for (size_t i = 0; i < wf->njobs; i++) {
		kiln_job *j = &wf->jobs[i];
		if (!j->needs.n) {
			any_free = true;
			continue;
		}
		j->needs_index = kiln_calloc(j->needs.n, sizeof *j->needs_index);
		for (size_t k = 0; k < j->needs.n; k++) {
			size_t t = find_job(by_id, wf->njobs, j->needs.v[k]);
			if (t == SIZE_MAX)
				fail(c, needs_entry(j, k), "job '%s' needs unknown job '%s'", j->id,
				     Q(q, j->needs.v[k]));
			j->needs_index[k] = t;
		}
	}

	_cleanup_free_ size_t *cyc = NULL;
	size_t ncyc = 0;
	if (toposort(wf, NULL, &cyc, &ncyc) == 0) {
		/* Without a cycle or an unknown job, some job is free; keep the rule stated. */
		if (!any_free && c->nproblems == before)
			fail(c, jobs_key,
			     "no job can start: every job has 'needs' (at least one must have "
			     "none)");
		return;
	}
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
	const kiln_ynode *at =
	    kiln_ynode_get_key(wf->doc ? kiln_ynode_get(wf->doc, "jobs") : NULL, j0->id);
	fail(c, at, "needs cycle: %s", b.p);
	kiln_buf_free(&b);
}

/* ---- on: ------------------------------------------------------------------------------- */

static const struct {
	const char *key;
	unsigned bit;
	size_t off;
} filter_keys[] = {
    {"branches", KILN_FILTER_BRANCHES, offsetof(kiln_event, branches)},
    {"branches-ignore", KILN_FILTER_BRANCHES_IGNORE, offsetof(kiln_event, branches_ignore)},
    {"tags", KILN_FILTER_TAGS, offsetof(kiln_event, tags)},
    {"tags-ignore", KILN_FILTER_TAGS_IGNORE, offsetof(kiln_event, tags_ignore)},
    {"paths", KILN_FILTER_PATHS, offsetof(kiln_event, paths)},
    {"paths-ignore", KILN_FILTER_PATHS_IGNORE, offsetof(kiln_event, paths_ignore)},
    {"types", KILN_FILTER_TYPES, offsetof(kiln_event, types)},
    {"workflows", KILN_FILTER_WORKFLOWS, offsetof(kiln_event, workflows)},
    {"names", KILN_FILTER_NAMES, offsetof(kiln_event, names)},
    {"versions", KILN_FILTER_VERSIONS, offsetof(kiln_event, versions)},
};

static const char *input_type_names[] = {"string", "boolean", "number", "choice", "environment"};

const char *kiln_input_type_name(kiln_input_type t)
{
	return (unsigned)t < KILN_ARRAY_SIZE(input_type_names) ? input_type_names[t] : "?";
}

typedef struct input_obj {
	kiln_input *in;
	bool call;
	const kiln_ynode *type_v, *default_v, *options_v;
} input_obj;

static int input_key(ctx *c, void *obj, const char *name, const kiln_ynode *k, const kiln_ynode *v)
{
	input_obj *o = obj;
	kiln_input *in = o->in;
	char q[80];
	if (strcmp(name, "description") == 0)
		return get_str(c, "description", v, KILN_PLACE_NONE, false, &in->description);
	if (strcmp(name, "required") == 0)
		return get_bool(c, "required", v, KILN_PLACE_NONE, &in->required, NULL);
	if (strcmp(name, "type") == 0) {
		o->type_v = v;
		size_t n = o->call ? 3 : KILN_ARRAY_SIZE(input_type_names);
		for (size_t t = 0; is_scalar(v) && t < n; t++)
			if (strcmp(v->str, input_type_names[t]) == 0) {
				in->type = (kiln_input_type)t;
				return 0;
			}
		return fail(c, v, "input '%s': 'type' must be %s, not %s", in->name,
		            o->call ? "string, boolean or number"
		                    : "string, boolean, number, choice or environment",
		            is_scalar(v) && !kiln_ynode_is_null(v) ? Q(q, v->str) : a_kind(v));
	}
	if (strcmp(name, "default") == 0) {
		o->default_v = v;
		if (v && v->kind != KILN_YNODE_SCALAR)
			return fail(
			    c, v,
			    "input '%s': 'default' must be a string, a number or a boolean, "
			    "not %s",
			    in->name, a_kind(v));
		if (scan_exprs(c, v, "default", o->call ? KILN_PLACE_RUN_NAME : KILN_PLACE_NONE) <
		    0)
			return -EINVAL;
		free(in->default_value);
		in->default_value = kiln_strdup(kiln_ynode_is_null(v) ? "" : v->str);
		return 0;
	}
	if (!o->call && strcmp(name, "options") == 0) {
		o->options_v = v;
		return get_seq(c, "options", v, KILN_PLACE_NONE, false, &in->options);
	}
	return unknown_key(c, k);
}

static void parse_inputs(ctx *c, kiln_event *e, const kiln_ynode *v, bool call)
{
	char q[80];
	if (!v || v->kind != KILN_YNODE_MAPPING) {
		fail(c, v, "'inputs' must be a mapping, not %s", a_kind(v));
		return;
	}
	e->inputs = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *e->inputs);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0)
			continue;
		if (!*name) {
			fail(c, k, "input names must not be empty");
			continue;
		}
		kiln_input *in = &e->inputs[e->ninputs++];
		in->name = kiln_strdup(name);
		in->node = val;
		if (!val || val->kind != KILN_YNODE_MAPPING) {
			fail(c, val ? val : k, "input '%s' must be a mapping, not %s", Q(q, name),
			     a_kind(val));
			continue;
		}
		input_obj o = {in, call, NULL, NULL, NULL};
		walk_map(c, "inputs", val, &o, input_key);
		if (call && !o.type_v)
			fail(c, val, "input '%s' needs a 'type' (string, boolean or number)",
			     Q(q, name));
		if (in->type == KILN_INPUT_CHOICE && in->options.n == 0)
			fail(c, val, "choice input '%s' needs 'options'", Q(q, name));
		else if (in->type != KILN_INPUT_CHOICE && o.options_v)
			fail(c, o.options_v,
			     "input '%s' has 'options' but its type is %s, not choice", Q(q, name),
			     kiln_input_type_name(in->type));
		const kiln_ynode *d = o.default_v;
		if (!d || d->kind != KILN_YNODE_SCALAR || has_expr(d))
			continue;
		bool b;
		if (in->type == KILN_INPUT_BOOLEAN && kiln_ynode_bool(d, &b) < 0)
			fail(c, d,
			     "input '%s': the default of a boolean input must be true or false",
			     Q(q, name));
		else if ((in->type == KILN_INPUT_STRING || in->type == KILN_INPUT_CHOICE ||
		          in->type == KILN_INPUT_ENVIRONMENT) &&
		         !kiln_ynode_is_null(d) && !is_stringy(d))
			fail(c, d,
			     "input '%s': the default of a %s input must be a string (quote it: "
			     "'%s')",
			     Q(q, name), kiln_input_type_name(in->type), d->str);
		else if (in->type == KILN_INPUT_CHOICE && in->options.n &&
		         !kiln_strv_contains(&in->options, d->str))
			fail(c, d, "input '%s': the default '%s' is not one of its options",
			     Q(q, name), d->str);
	}
}

typedef struct out_obj {
	kiln_call_output *o;
	bool has_value;
} out_obj;

static int call_output_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                           const kiln_ynode *v)
{
	out_obj *o = obj;
	if (strcmp(name, "description") == 0)
		return get_str(c, "description", v, KILN_PLACE_NONE, false, &o->o->description);
	if (strcmp(name, "value") == 0) {
		o->has_value = true;
		o->o->node = v;
		return get_str(c, "value", v, KILN_PLACE_CALL_OUTPUT, false, &o->o->value);
	}
	return unknown_key(c, k);
}

static int call_secret_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                           const kiln_ynode *v)
{
	kiln_call_secret *s = obj;
	if (strcmp(name, "description") == 0)
		return get_str(c, "description", v, KILN_PLACE_NONE, false, &s->description);
	if (strcmp(name, "required") == 0)
		return get_bool(c, "required", v, KILN_PLACE_NONE, &s->required, NULL);
	return unknown_key(c, k);
}

static void parse_call_outputs(ctx *c, kiln_event *e, const kiln_ynode *v)
{
	char q[80];
	if (!v || v->kind != KILN_YNODE_MAPPING) {
		fail(c, v, "'outputs' must be a mapping, not %s", a_kind(v));
		return;
	}
	e->outputs = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *e->outputs);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0)
			continue;
		if (!*name) {
			fail(c, k, "output names must not be empty");
			continue;
		}
		kiln_call_output *o = &e->outputs[e->noutputs++];
		o->name = kiln_strdup(name);
		if (!val || val->kind != KILN_YNODE_MAPPING) {
			fail(c, val ? val : k,
			     "output '%s' must be a mapping with a 'value', not %s", Q(q, name),
			     a_kind(val));
			continue;
		}
		out_obj oo = {o, false};
		walk_map(c, "outputs", val, &oo, call_output_key);
		if (!oo.has_value)
			fail(c, val, "output '%s' needs a 'value'", Q(q, name));
	}
}

static void parse_call_secrets(ctx *c, kiln_event *e, const kiln_ynode *v)
{
	char q[80];
	if (!v || v->kind != KILN_YNODE_MAPPING) {
		fail(c, v, "'secrets' must be a mapping, not %s", a_kind(v));
		return;
	}
	e->secrets = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *e->secrets);
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0)
			continue;
		if (!*name) {
			fail(c, k, "secret names must not be empty");
			continue;
		}
		kiln_call_secret *s = &e->secrets[e->nsecrets++];
		s->name = kiln_strdup(name);
		if (kiln_ynode_is_null(val))
			continue;
		if (val->kind != KILN_YNODE_MAPPING) {
			fail(c, val, "secret '%s' must be null or a mapping, not %s", Q(q, name),
			     a_kind(val));
			continue;
		}
		walk_map(c, "secrets", val, s, call_secret_key);
	}
}

static int schedule_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                        const kiln_ynode *v)
{
	kiln_schedule *s = obj;
	if (strcmp(name, "cron") == 0) {
		if (get_str(c, "cron", v, KILN_PLACE_NONE, true, &s->cron) < 0 || !s->cron)
			return -EINVAL;
		size_t off = 0;
		if (kiln_cron_parse(s->cron, &s->spec, &off) < 0) {
			/* point at the field when the scalar sits on one line */
			kiln_ynode at = *v;
			if (!strchr(v->str, '\n'))
				at.col += (int)off + (v->plain ? 0 : 1);
			return fail(c, &at, "invalid cron schedule: %s", kiln_errmsg());
		}
		return 0;
	}
	if (strcmp(name, "timezone") == 0)
		return get_str(c, "timezone", v, KILN_PLACE_NONE, true, &s->timezone);
	return unknown_key(c, k);
}

static void parse_schedule(ctx *c, kiln_event *e, const kiln_ynode *k, const kiln_ynode *v)
{
	if (!v || v->kind != KILN_YNODE_SEQUENCE) {
		fail(c, v ? v : k, "'schedule' must be a sequence of {cron: '...'} entries, not %s",
		     a_kind(v));
		return;
	}
	e->schedules = kiln_calloc(v->nitems ? v->nitems : 1, sizeof *e->schedules);
	for (size_t i = 0; i < v->nitems; i++) {
		const kiln_ynode *it = v->items[i];
		kiln_schedule *s = &e->schedules[e->nschedules++];
		s->node = it;
		if (!it || it->kind != KILN_YNODE_MAPPING) {
			fail(c, it, "a schedule entry must be a mapping with a 'cron', not %s",
			     a_kind(it));
			continue;
		}
		walk_map(c, "schedule", it, s, schedule_key);
		if (!kiln_ynode_get_key(it, "cron"))
			fail(c, it, "a schedule entry needs a 'cron'");
	}
}

typedef struct call_obj {
	kiln_event *e;
} call_obj;

static int dispatch_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                        const kiln_ynode *v)
{
	kiln_event *e = obj;
	if (strcmp(name, "inputs") == 0) {
		parse_inputs(c, e, v, false);
		return 0;
	}
	return unknown_key(c, k);
}

static int workflow_call_key(ctx *c, void *obj, const char *name, const kiln_ynode *k,
                             const kiln_ynode *v)
{
	kiln_event *e = obj;
	if (strcmp(name, "inputs") == 0)
		parse_inputs(c, e, v, true);
	else if (strcmp(name, "outputs") == 0)
		parse_call_outputs(c, e, v);
	else if (strcmp(name, "secrets") == 0)
		parse_call_secrets(c, e, v);
	else
		return unknown_key(c, k);
	return 0;
}

/* An event's filters: branches, tags, paths (and -ignore), types, workflows, ... */
static void parse_filters(ctx *c, kiln_event *e, const kiln_ynode *v)
{
	char q[80];
	unsigned allowed = kiln_workflow_event_filters(e->name);
	const kiln_ynode *given[KILN_ARRAY_SIZE(filter_keys)] = {0};
	for (size_t i = 0; i < v->npairs; i++) {
		const kiln_ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0)
			continue;
		size_t f = 0;
		while (f < KILN_ARRAY_SIZE(filter_keys) && strcmp(filter_keys[f].key, name) != 0)
			f++;
		if (f == KILN_ARRAY_SIZE(filter_keys) || !(allowed & filter_keys[f].bit)) {
			fail(c, k, "unknown key '%s' for event '%s'", Q(q, name), e->name);
			continue;
		}
		given[f] = k;
		e->filters |= filter_keys[f].bit;
		kiln_strv *list = (kiln_strv *)((char *)e + filter_keys[f].off);
		int r;
		if (filter_keys[f].bit == KILN_FILTER_TYPES &&
		    strcmp(e->name, "repository_dispatch") == 0)
			r = get_seq(c, name, val, KILN_PLACE_NONE, true, list);
		else
			r = get_strv(c, name, val, KILN_PLACE_NONE, true, list);
		if (r < 0 || filter_keys[f].bit != KILN_FILTER_TYPES)
			continue;
		const char *const *types = kiln_workflow_event_types(e->name);
		for (size_t t = 0; types && t < list->n; t++) {
			size_t m = 0;
			while (types[m] && strcmp(types[m], list->v[t]) != 0)
				m++;
			if (types[m])
				continue;
			kiln_buf b = {0};
			for (m = 0; types[m]; m++)
				kiln_buf_printf(&b, "%s%s", m ? ", " : "", types[m]);
			const kiln_ynode *at = val->kind == KILN_YNODE_SEQUENCE && t < val->nitems
			                           ? val->items[t]
			                           : val;
			fail(c, at, "unknown activity type '%s' for event '%s' (known: %s)",
			     Q(q, list->v[t]), e->name, b.p);
			kiln_buf_free(&b);
		}
	}
	/* GitHub refuses a filter together with its -ignore form. */
	for (size_t f = 0; f + 1 < 6; f += 2)
		if (given[f] && given[f + 1]) {
			const kiln_ynode *later = given[f]->line > given[f + 1]->line ||
			                                  (given[f]->line == given[f + 1]->line &&
			                                   given[f]->col > given[f + 1]->col)
			                              ? given[f]
			                              : given[f + 1];
			fail(c, later, "event '%s' cannot have both '%s' and '%s'", e->name,
			     filter_keys[f].key, filter_keys[f + 1].key);
		}
}

static void parse_event(ctx *c, const kiln_ynode *k, const kiln_ynode *v, bool config)
{
	kiln_workflow *wf = c->wf;
	char q[80];
	if (!k || k->kind != KILN_YNODE_SCALAR || kiln_ynode_is_null(k)) {
		fail(c, k, "an event must be named by a string, not %s", a_kind(k));
		return;
	}
	if (has_expr(k)) {
		fail(c, k, "event names cannot hold expressions ('${{ }}')");
		return;
	}
	if (!kiln_workflow_event_known(k->str)) {
		fail(c, k, "unknown event '%s'", Q(q, k->str));
		return;
	}
	for (size_t i = 0; i < wf->nevents; i++)
		if (strcmp(wf->events[i].name, k->str) == 0)
			return; /* [push, push]: once is enough */
	kiln_event *e = &wf->events[wf->nevents++];
	e->name = kiln_strdup(k->str);
	e->line = k->line;
	e->col = k->col;
	e->node = config ? v : NULL;
	if (!config)
		return;
	if (strcmp(e->name, "schedule") == 0) {
		parse_schedule(c, e, k, v);
		return;
	}
	if (kiln_ynode_is_null(v))
		return;
	if (strcmp(e->name, "workflow_dispatch") == 0) {
		walk_map(c, "workflow_dispatch", v, e, dispatch_key);
		return;
	}
	if (strcmp(e->name, "workflow_call") == 0) {
		walk_map(c, "workflow_call", v, e, workflow_call_key);
		return;
	}
	if (kiln_workflow_event_filters(e->name) == 0) {
		fail(c, v, "event '%s' takes no configuration (leave it empty)", e->name);
		return;
	}
	if (v->kind != KILN_YNODE_MAPPING) {
		fail(c, v, "event '%s' must be empty or a mapping of filters, not %s", e->name,
		     a_kind(v));
		return;
	}
	parse_filters(c, e, v);
}

static void parse_on(ctx *c, const kiln_ynode *k, const kiln_ynode *v)
{
	kiln_workflow *wf = c->wf;
	if (kiln_ynode_is_null(v)) {
		fail(c, k, "'on' must name at least one event");
		return;
	}
	switch (v->kind) {
	case KILN_YNODE_SCALAR:
		wf->events = kiln_calloc(1, sizeof *wf->events);
		parse_event(c, v, NULL, false);
		break;
	case KILN_YNODE_SEQUENCE:
		if (!v->nitems)
			fail(c, v, "'on' must name at least one event");
		wf->events = kiln_calloc(v->nitems ? v->nitems : 1, sizeof *wf->events);
		for (size_t i = 0; i < v->nitems; i++)
			parse_event(c, v->items[i], NULL, false);
		break;
	case KILN_YNODE_MAPPING:
		if (!v->npairs)
			fail(c, v, "'on' must name at least one event");
		wf->events = kiln_calloc(v->npairs ? v->npairs : 1, sizeof *wf->events);
		for (size_t i = 0; i < v->npairs; i++)
			parse_event(c, v->pairs[i].key, v->pairs[i].value, true);
		break;
	}
}

/* ---- the workflow --------------------------------------------------------------------- */

static void parse_jobs(ctx *c, const kiln_ynode *key, const kiln_ynode *v)
{
	kiln_workflow *wf = c->wf;
	if (kiln_ynode_is_null(v) || (v->kind == KILN_YNODE_MAPPING && v->npairs == 0)) {
		fail(c, key, "workflow has no jobs");
		return;
	}
	if (v->kind != KILN_YNODE_MAPPING) {
		fail(c, v, "'jobs' must be a mapping, not %s", a_kind(v));
		return;
	}
	wf->jobs = kiln_calloc(v->npairs, sizeof *wf->jobs);
	for (size_t i = 0; i < v->npairs; i++)
		parse_job(c, v->pairs[i].key, v->pairs[i].value, &wf->jobs[wf->njobs++]);
	check_needs(c, key);
}

static void parse_root(ctx *c, const kiln_ynode *root)
{
	kiln_workflow *wf = c->wf;
	const kiln_ynode *jobs_key = NULL, *jobs = NULL, *on_key = NULL;
	if (kiln_ynode_is_null(root)) {
		fail(c, NULL, "empty workflow"); /* "---" alone */
		return;
	}
	if (root->kind != KILN_YNODE_MAPPING) {
		fail(c, root, "a workflow must be a mapping, not %s", a_kind(root));
		return;
	}
	for (size_t i = 0; i < root->npairs; i++) {
		const kiln_ynode *k = root->pairs[i].key, *v = root->pairs[i].value;
		const char *name;
		if (key_str(c, k, &name) < 0)
			continue;
		if (strcmp(name, "on") == 0 || (k->plain && strcmp(name, "true") == 0)) {
			/* `true:` is how a YAML 1.1 tool rewrites an unquoted `on:`. */
			if (on_key) {
				fail(c, k, "duplicate key 'on' (first at %d:%d)", on_key->line,
				     on_key->col);
				continue;
			}
			on_key = k;
			wf->on = v;
			parse_on(c, k, v);
		} else if (strcmp(name, "name") == 0) {
			get_str(c, name, v, KILN_PLACE_NONE, false, &wf->name);
		} else if (strcmp(name, "description") == 0) {
			get_str(c, name, v, KILN_PLACE_NONE, false, &wf->description);
		} else if (strcmp(name, "run-name") == 0) {
			get_str(c, name, v, KILN_PLACE_RUN_NAME, false, &wf->run_name);
		} else if (strcmp(name, "env") == 0) {
			get_env(c, name, v, KILN_PLACE_WORKFLOW_ENV, &wf->env, true, &wf->env_expr);
		} else if (strcmp(name, "defaults") == 0) {
			parse_defaults(c, v, KILN_PLACE_NONE, &wf->defaults_shell,
			               &wf->defaults_working_directory);
		} else if (strcmp(name, "permissions") == 0) {
			wf->permissions = v;
			parse_permissions(c, v, &wf->permissions_def);
		} else if (strcmp(name, "concurrency") == 0) {
			wf->concurrency = v;
			parse_concurrency(c, k, v, KILN_PLACE_RUN_NAME, false,
			                  &wf->concurrency_def);
		} else if (strcmp(name, "jobs") == 0) {
			jobs_key = k;
			jobs = v;
		} else {
			unknown_key(c, k);
		}
	}
	if (!jobs_key)
		fail(c, root, "workflow has no 'jobs'");
	else
		parse_jobs(c, jobs_key, jobs);
	if (!on_key)
		fail(c, root, "workflow has no 'on' (the events that trigger it)");
}

int kiln_workflow_check(const char *file, const char *text, size_t len,
                        const kiln_workflow_opts *opts, kiln_strv *problems, kiln_workflow **out)
{
	if (out)
		*out = NULL;
	if (!file)
		file = "<input>";
	kiln_strv local = {0};
	if (!problems)
		problems = &local;
	_cleanup_(kiln_workflow_freep) kiln_workflow *wf = kiln_calloc(1, sizeof *wf);
	wf->file = kiln_strdup(file);
	int r = kiln_yaml_parse(file, text, len, opts ? opts->limits : NULL, &wf->doc);
	if (r == -ENODATA)
		r = kiln_err(ENODATA, "%s:1:1: empty workflow", file);
	if (r < 0) {
		kiln_strv_push(problems, kiln_errmsg());
		kiln_strv_free(&local);
		return r;
	}
	ctx c = {.file = wf->file, .wf = wf, .problems = problems, .strict = opts && opts->strict};
	check_case_dups(&c, wf->doc, 0);
	parse_root(&c, wf->doc);
	kiln_strv_free(&local);
	if (c.nproblems) {
		r = kiln_err(EINVAL, "%s", c.first);
		free(c.first);
		return r;
	}
	if (out) {
		*out = wf;
		wf = NULL;
	}
	return 0;
}

int kiln_workflow_parse_limits(const char *file, const char *text, size_t len,
                               const kiln_yaml_limits *lim, kiln_workflow **out)
{
	kiln_workflow_opts o = {.limits = lim};
	return kiln_workflow_check(file, text, len, &o, NULL, out);
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

const kiln_event *kiln_workflow_event(const kiln_workflow *wf, const char *name)
{
	for (size_t i = 0; wf && name && i < wf->nevents; i++)
		if (strcmp(wf->events[i].name, name) == 0)
			return &wf->events[i];
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
			if (on->items[i]->kind == KILN_YNODE_SCALAR &&
			    strcmp(on->items[i]->str, event) == 0)
				return true;
		return false;
	case KILN_YNODE_MAPPING:
		return kiln_ynode_get_key(on, event) != NULL;
	}
	return false;
}
