/*
 * expand — turns a job's template row into its instances once its needs are
 * done: the matrix (which may come from `fromJSON(needs.x.outputs.y)`) is
 * evaluated and expanded, and each instance gets its name, `runs-on`,
 * `matrix` and `strategy` contexts and `continue-on-error`. The template row
 * becomes instance 0; the others are new rows with copies of its steps.
 * Core thread only.
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <string.h>

#include "common/expr.h"
#include "common/matrix.h"

/* Is s exactly one "${{ … }}" (blanks around allowed)? Then its value keeps its type. */
static bool whole_expr(const char *s, const char **in, size_t *len)
{
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	if (strncmp(s, "${{", 3) != 0)
		return false;
	const char *end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'))
		end--;
	if (end - s < 5 || strncmp(end - 2, "}}", 2) != 0)
		return false;
	const char *body = s + 3;
	size_t n = (size_t)(end - 2 - body);
	/* a second ${{ inside means it is a template with several expressions */
	for (size_t i = 0; i + 3 <= n; i++)
		if (strncmp(body + i, "${{", 3) == 0)
			return false;
	*in = body;
	*len = n;
	return true;
}

int coord_eval_tree(const json_t *v, const kiln_expr_ctx *x, json_t **out)
{
	*out = NULL;
	if (json_is_string(v)) {
		const char *s = json_string_value(v), *in;
		size_t n;
		if (whole_expr(s, &in, &n)) {
			_cleanup_free_ char *e = strndup(in, n);
			return kiln_expr_evaluate(e, x, out);
		}
		if (strstr(s, "${{")) {
			char *str = NULL;
			int r = kiln_expr_interpolate(s, x, &str);
			if (r < 0)
				return r;
			*out = json_string(str);
			free(str);
			return 0;
		}
		*out = json_incref((json_t *)v);
		return 0;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
		{
			json_t *ev;
			int r = coord_eval_tree(e, x, &ev);
			if (r < 0) {
				json_decref(a);
				return r;
			}
			json_array_append_new(a, ev);
		}
		*out = a;
		return 0;
	}
	if (json_is_object(v)) {
		json_t *o = json_object();
		const char *k;
		json_t *e;
		json_object_foreach((json_t *)v, k, e)
		{
			json_t *ev;
			int r = coord_eval_tree(e, x, &ev);
			if (r < 0) {
				json_decref(o);
				return r;
			}
			json_object_set_new(o, k, ev);
		}
		*out = o;
		return 0;
	}
	*out = json_incref((json_t *)v);
	return 0;
}

/* A flag that is true, false or an expression. */
static int eval_flag(json_t *v, const kiln_expr_ctx *x, bool def, bool *out)
{
	*out = def;
	if (!v)
		return 0;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	json_t *r = NULL;
	int rc = coord_eval_tree(v, x, &r);
	if (rc < 0)
		return rc;
	*out = json_is_string(r) ? strcmp(json_string_value(r), "true") == 0 : kiln_expr_truthy(r);
	json_decref(r);
	return 0;
}

static int eval_int(json_t *v, const kiln_expr_ctx *x, int *out)
{
	*out = 0;
	if (!v)
		return 0;
	json_t *r = NULL;
	int rc = coord_eval_tree(v, x, &r);
	if (rc < 0)
		return rc;
	if (json_is_number(r))
		*out = (int)json_number_value(r);
	else if (json_is_string(r))
		*out = atoi(json_string_value(r));
	json_decref(r);
	return 0;
}

int coord_expand_job(coord *c, uint64_t job_id, json_t *contexts)
{
	sqlite3_stmt *st = store_q(c,
				   "SELECT run_id, key, needs, runs_on, spec, retries_left FROM jobs"
				   " WHERE id = ?",
				   "i", (int64_t)job_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		return kiln_err(ENOENT, "no job %llu", (unsigned long long)job_id);
	}
	int64_t run_id = sqlite3_column_int64(st, 0);
	_cleanup_free_ char *key = kiln_strdup(col_text(st, 1));
	_cleanup_free_ char *needs = kiln_strdup(col_text(st, 2));
	json_t *runs_on = json_loads(col_text(st, 3), 0, NULL);
	_cleanup_free_ char *spec_text = kiln_strdup(col_text(st, 4));
	int64_t retries = sqlite3_column_int64(st, 5);
	store_done(st);
	json_t *spec = json_loads(spec_text, 0, NULL);

	kiln_expr_ctx x = {.contexts = contexts};
	json_t *combos = NULL;
	int r = 0;
	json_t *m = json_object_get(spec, "matrix");
	if (m) {
		json_t *mv = NULL;
		r = coord_eval_tree(m, &x, &mv);
		if (r == 0 && !json_is_object(mv))
			r = kiln_err(EINVAL, "strategy.matrix must be a mapping");
		if (r == 0)
			r = kiln_matrix_expand(mv, &combos);
		if (r < 0)
			kiln_err_prefix("strategy.matrix");
		json_decref(mv);
	}
	bool fail_fast = true;
	int max_parallel = 0;
	if (r == 0)
		r = eval_flag(json_object_get(spec, "fail_fast"), &x, true, &fail_fast);
	if (r == 0)
		r = eval_int(json_object_get(spec, "max_parallel"), &x, &max_parallel);
	size_t total = combos ? json_array_size(combos) : 1;
	const char *name_raw = json_string_value(json_object_get(spec, "name"));
	const char *name_prefix = json_string_value(json_object_get(spec, "name_prefix"));

	for (size_t i = 0; r == 0 && i < total; i++) {
		json_t *combo = combos ? json_array_get(combos, i) : NULL;
		json_t *strategy = kiln_matrix_strategy(i, total, fail_fast, max_parallel);
		json_t *ictx = json_deep_copy(contexts);
		json_object_set_new(ictx, "matrix", combo ? json_incref(combo) : json_object());
		json_object_set(ictx, "strategy", strategy);
		kiln_expr_ctx ix = {.contexts = ictx};

		/* the name: as written (evaluated), with the matrix values added when it does not
		   use them, as GitHub shows matrix jobs */
		char *name = NULL;
		if (name_raw) {
			json_t *nv = NULL;
			json_t *raw = json_string(name_raw);
			r = coord_eval_tree(raw, &ix, &nv);
			json_decref(raw);
			if (r == 0) {
				name = kiln_expr_to_string(nv);
				if (combo && !strstr(name_raw, "matrix")) {
					char *full = kiln_matrix_job_name(name, combo);
					free(name);
					name = full;
				}
			}
			json_decref(nv);
		} else {
			/* a called job is shown by its own id: "caller / job" */
			const char *base = name_prefix && strrchr(key, '/') ? strrchr(key, '/') + 1 : key;
			name = combo ? kiln_matrix_job_name(base, combo) : kiln_strdup(base);
		}
		if (name && name_prefix) { /* a called job: "caller / job", as GitHub shows it */
			char *full = kiln_asprintf("%s / %s", name_prefix, name);
			free(name);
			name = full;
		}
		json_t *labels = NULL;
		if (r == 0)
			r = coord_eval_tree(runs_on, &ix, &labels);
		bool coe = false;
		if (r == 0)
			r = eval_flag(json_object_get(spec, "continue_on_error"), &ix, false, &coe);
		int timeout = 0;
		if (r == 0)
			r = eval_int(json_object_get(spec, "timeout_minutes_expr"), &ix, &timeout);
		json_t *group = NULL;
		bool cip = false;
		if (r == 0 && json_object_get(spec, "concurrency"))
			r = coord_eval_tree(json_object_get(spec, "concurrency"), &ix, &group);
		if (r == 0)
			r = eval_flag(json_object_get(spec, "cancel_in_progress"), &ix, false, &cip);
		_cleanup_free_ char *group_s = group ? kiln_expr_to_string(group) : NULL;
		json_decref(group);
		/* the environment it deploys to, and its URL (which may use steps' outputs: kept
		   as written when it does not evaluate here) */
		char *env_s = NULL, *env_url = NULL;
		if (r == 0 && json_object_get(spec, "environment")) {
			json_t *ev = NULL;
			r = coord_eval_tree(json_object_get(spec, "environment"), &ix, &ev);
			env_s = r == 0 ? kiln_expr_to_string(ev) : NULL;
			json_decref(ev);
			const char *u = json_string_value(json_object_get(spec, "environment_url"));
			if (u && kiln_expr_interpolate(u, &ix, &env_url) < 0) {
				free(env_url);
				env_url = kiln_strdup(u);
			}
		}
		if (r == 0) {
			/* runs-on may have become one string, or a list with a list inside */
			json_t *flat = json_array();
			json_t *items = json_is_array(labels) ? labels : NULL;
			if (json_is_string(labels))
				json_array_append(flat, labels);
			size_t k;
			json_t *e;
			json_array_foreach(items, k, e)
			{
				if (json_is_string(e)) {
					json_array_append(flat, e);
				} else if (json_is_array(e)) {
					size_t q;
					json_t *f;
					json_array_foreach(e, q, f)
						if (json_is_string(f))
							json_array_append(flat, f);
				}
			}
			_cleanup_free_ char *ro = json_dumps(flat, JSON_COMPACT);
			_cleanup_free_ char *mx = combo ? json_dumps(combo, JSON_COMPACT) : NULL;
			_cleanup_free_ char *sg = json_dumps(strategy, JSON_COMPACT);
			json_decref(flat);
			int64_t instance = job_id;
			if (i == 0) {
				store_x(c,
					"UPDATE jobs SET name = ?, runs_on = ?, matrix = ?, strategy = ?,"
					" expanded = 1, continue_on_error = ?, timeout_minutes = nullif(?, 0),"
					" concurrency = ?, cancel_in_progress = ? WHERE id = ?",
					"ttttiitii", name, ro, mx, sg, (int64_t)coe, (int64_t)timeout,
					group_s, (int64_t)cip, (int64_t)job_id);
			} else {
				store_x(c,
					"INSERT INTO jobs(run_id, key, idx, name, needs, runs_on, spec,"
					" retries_left, matrix, strategy, expanded, continue_on_error,"
					" timeout_minutes, concurrency, cancel_in_progress, parent)"
					" VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, nullif(?, 0), ?, ?,"
					" (SELECT parent FROM jobs WHERE id = ?))",
					"itittttittiitii", run_id, key, (int64_t)i, name, needs, ro,
					spec_text, retries, mx, sg, (int64_t)coe, (int64_t)timeout, group_s,
					(int64_t)cip, (int64_t)job_id);
				int64_t nid = sqlite3_last_insert_rowid(c->db);
				store_x(c,
					"INSERT INTO steps(job_id, idx, name) SELECT ?, idx, name FROM steps"
					" WHERE job_id = ?",
					"ii", nid, (int64_t)job_id);
				instance = nid;
			}
			if (env_s && *env_s)
				gates_record_env(c, instance, env_s, env_url ? env_url : "");
		}
		free(name);
		free(env_s);
		free(env_url);
		json_decref(labels);
		json_decref(strategy);
		json_decref(ictx);
	}
	json_decref(combos);
	json_decref(runs_on);
	json_decref(spec);
	return r < 0 ? r : (int)total;
}
