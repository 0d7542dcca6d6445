/*
 * matrix — expansion of `strategy.matrix` into job combinations, job names
 * and the `strategy` context, following GitHub's documented rules (see
 * matrix.h). Combinations are jansson objects whose keys keep the order in
 * which they were written, so names come out as GitHub shows them.
 *
 * The product is bounded before it is built: a matrix of ten vectors of ten
 * values is 10^10 combinations, which a bounded YAML file can still describe.
 */
#include "common/matrix.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

/* Largest product built before `exclude` narrows it down. */
#define MAX_PRODUCT 65536

/* ---- YAML to JSON ------------------------------------------------------------------ */

bool kiln_matrix_node_has_expr(const kiln_ynode *n)
{
	if (!n)
		return false;
	switch (n->kind) {
	case KILN_YNODE_SCALAR:
		return strstr(n->str, "${{") != NULL;
	case KILN_YNODE_SEQUENCE:
		for (size_t i = 0; i < n->nitems; i++)
			if (kiln_matrix_node_has_expr(n->items[i]))
				return true;
		return false;
	case KILN_YNODE_MAPPING:
		for (size_t i = 0; i < n->npairs; i++)
			if (kiln_matrix_node_has_expr(n->pairs[i].key) ||
			    kiln_matrix_node_has_expr(n->pairs[i].value))
				return true;
		return false;
	}
	return false;
}

static bool all_in(const char *s, size_t n, const char *set)
{
	return n > 0 && strspn(s, set) == n;
}

/* YAML 1.2 core schema scalars; NULL for a string. */
static json_t *core_scalar(const kiln_ynode *n)
{
	bool b;
	if (kiln_ynode_is_null(n))
		return json_null();
	if (kiln_ynode_bool(n, &b) == 0)
		return json_boolean(b);
	if (!n->plain)
		return NULL;
	const char *s = n->str;
	size_t len = n->len;
	if (len > 2 && s[0] == '0' && s[1] == 'o' && all_in(s + 2, len - 2, "01234567")) {
		unsigned long long v = strtoull(s + 2, NULL, 8);
		return v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
	}
	if (len > 2 && s[0] == '0' && s[1] == 'x' &&
	    all_in(s + 2, len - 2, "0123456789abcdefABCDEF")) {
		unsigned long long v = strtoull(s + 2, NULL, 16);
		return v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
	}
	size_t i = 0;
	if (s[i] == '-' || s[i] == '+')
		i++;
	size_t int_start = i;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	size_t int_digits = i - int_start, frac_digits = 0;
	bool is_float = false;
	if (i < len && s[i] == '.') {
		is_float = true;
		i++;
		size_t f0 = i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		frac_digits = i - f0;
	}
	if (int_digits == 0 && frac_digits == 0)
		return NULL;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		is_float = true;
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		size_t e0 = i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == e0)
			return NULL;
	}
	if (i != len)
		return NULL;
	if (!is_float) {
		errno = 0;
		long long v = strtoll(s, NULL, 10);
		if (errno == 0)
			return json_integer(v);
	}
	double d = strtod(s, NULL);
	return isfinite(d) ? json_real(d) : NULL;
}

int kiln_matrix_node_json(const char *file, const kiln_ynode *n, json_t **out)
{
	*out = NULL;
	if (!n) {
		*out = json_null();
		return 0;
	}
	switch (n->kind) {
	case KILN_YNODE_SCALAR: {
		if (strstr(n->str, "${{"))
			return kiln_ynode_err(file, n, EINVAL,
			                      "an expression must be evaluated before expansion");
		json_t *v = core_scalar(n);
		if (!v)
			v = json_stringn(n->str, n->len);
		if (!v)
			return kiln_ynode_err(file, n, EINVAL, "not valid UTF-8");
		*out = v;
		return 0;
	}
	case KILN_YNODE_SEQUENCE: {
		json_t *a = json_array();
		for (size_t i = 0; i < n->nitems; i++) {
			json_t *v;
			int r = kiln_matrix_node_json(file, n->items[i], &v);
			if (r < 0) {
				json_decref(a);
				return r;
			}
			json_array_append_new(a, v);
		}
		*out = a;
		return 0;
	}
	case KILN_YNODE_MAPPING: {
		json_t *o = json_object();
		for (size_t i = 0; i < n->npairs; i++) {
			const kiln_ynode *k = n->pairs[i].key;
			if (k->kind != KILN_YNODE_SCALAR) {
				json_decref(o);
				return kiln_ynode_err(file, k, EINVAL, "keys must be strings");
			}
			if (strstr(k->str, "${{")) {
				json_decref(o);
				return kiln_ynode_err(
				    file, k, EINVAL,
				    "an expression must be evaluated before expansion");
			}
			json_t *v;
			int r = kiln_matrix_node_json(file, n->pairs[i].value, &v);
			if (r < 0) {
				json_decref(o);
				return r;
			}
			if (json_object_set_new(o, k->str, v) < 0) {
				json_decref(o);
				return kiln_ynode_err(file, k, EINVAL, "not valid UTF-8");
			}
		}
		*out = o;
		return 0;
	}
	}
	return kiln_err(EINVAL, "bad node");
}

/* ---- expansion ---------------------------------------------------------------------- */

/* Deep equality where numbers compare by value (1 == 1.0). */
/* Comparisons one expansion may make: include/exclude entries over a large product with deep
   values (aliases make them cheap to write) could otherwise take minutes (found by fuzzing). */
#define MAX_COMPARISONS 5000000u

static _Thread_local size_t cmp_left; /* set by kiln_matrix_expand */

static bool value_equal(const json_t *a, const json_t *b)
{
	if (cmp_left == 0)
		return false; /* out of budget: the expansion fails, whatever this returns */
	cmp_left--;
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	if (json_typeof(a) != json_typeof(b))
		return false;
	if (json_is_array(a)) {
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!value_equal(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	}
	if (json_is_object(a)) {
		if (json_object_size(a) != json_object_size(b))
			return false;
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)a, k, v)
		{
			json_t *w = json_object_get(b, k);
			if (!w || !value_equal(v, w))
				return false;
		}
		return true;
	}
	return json_equal(a, b);
}

/* Whether every key of `entry` is in `combo` with an equal value. */
static bool matches_all(const json_t *combo, const json_t *entry)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)entry, k, v)
	{
		json_t *c = json_object_get(combo, k);
		if (!c || !value_equal(c, v))
			return false;
	}
	return true;
}

static int check_filter(const json_t *list, const char *what)
{
	if (!json_is_array(list))
		return kiln_err(EINVAL, "matrix '%s' must be a list of mappings", what);
	for (size_t i = 0; i < json_array_size(list); i++)
		if (!json_is_object(json_array_get(list, i)))
			return kiln_err(EINVAL, "matrix '%s' entry %zu must be a mapping", what,
			                i + 1);
	return 0;
}

int kiln_matrix_expand(const json_t *matrix, json_t **combos)
{
	*combos = NULL;
	if (!json_is_object(matrix))
		return kiln_err(EINVAL, "a matrix must be a mapping");
	cmp_left = MAX_COMPARISONS;
	const json_t *include = json_object_get(matrix, "include");
	const json_t *exclude = json_object_get(matrix, "exclude");
	int r;
	if (include && (r = check_filter(include, "include")) < 0)
		return r;
	if (exclude && (r = check_filter(exclude, "exclude")) < 0)
		return r;

	/* The vectors, in order. */
	kiln_strv keys = {0};
	size_t product = 1;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)matrix, k, v)
	{
		if (strcmp(k, "include") == 0 || strcmp(k, "exclude") == 0)
			continue;
		if (!json_is_array(v) || json_array_size(v) == 0) {
			kiln_strv_free(&keys);
			return kiln_err(EINVAL, "matrix vector '%s' %s", k,
			                json_is_array(v) ? "does not contain any values"
			                                 : "must be a list");
		}
		kiln_strv_push(&keys, k);
		product *= json_array_size(v);
		if (product > MAX_PRODUCT) {
			kiln_strv_free(&keys);
			return kiln_err(E2BIG, "the matrix has more than %d combinations",
			                KILN_MATRIX_MAX);
		}
	}
	if (keys.n == 0 && json_array_size(include) == 0) {
		kiln_strv_free(&keys);
		return kiln_err(EINVAL,
		                "a matrix must define at least one vector or include entry");
	}
	for (size_t i = 0; exclude && i < json_array_size(exclude); i++) {
		json_object_foreach(json_array_get(exclude, i), k, v)
		{
			if (!kiln_strv_contains(&keys, k)) {
				int e = kiln_err(
				    EINVAL,
				    "matrix exclude key '%s' does not match any key of the "
				    "matrix",
				    k);
				kiln_strv_free(&keys);
				return e;
			}
		}
	}

	json_t *out = json_array();
	if (keys.n) {
		size_t *idx = kiln_calloc(keys.n, sizeof *idx);
		for (size_t n = 0; n < product && cmp_left; n++) {
			/* idx counts in mixed radix, the last key fastest */
			json_t *c = json_object();
			for (size_t i = 0; i < keys.n; i++)
				json_object_set(
				    c, keys.v[i],
				    json_array_get(json_object_get(matrix, keys.v[i]), idx[i]));
			bool drop = false;
			for (size_t i = 0; exclude && !drop && i < json_array_size(exclude); i++)
				drop = matches_all(c, json_array_get(exclude, i));
			if (drop)
				json_decref(c);
			else
				json_array_append_new(out, c);
			for (size_t i = keys.n; i-- > 0;) {
				if (++idx[i] < json_array_size(json_object_get(matrix, keys.v[i])))
					break;
				idx[i] = 0;
			}
		}
		free(idx);
	}

	size_t norig = json_array_size(out);
	for (size_t e = 0; include && cmp_left && e < json_array_size(include); e++) {
		json_t *entry = json_array_get(include, e);
		bool merged = false;
		for (size_t i = 0; i < norig; i++) {
			json_t *c = json_array_get(out, i);
			bool fits = true;
			json_object_foreach(entry, k, v)
			{
				if (kiln_strv_contains(&keys, k) &&
				    !value_equal(json_object_get(c, k), v)) {
					fits = false;
					break;
				}
			}
			if (!fits)
				continue;
			merged = true;
			json_object_foreach(entry, k, v)
			{
				if (!kiln_strv_contains(&keys, k))
					json_object_set(c, k, v);
			}
		}
		if (!merged)
			json_array_append_new(out, json_deep_copy(entry));
		if (json_array_size(out) > KILN_MATRIX_MAX)
			break;
	}
	kiln_strv_free(&keys);
	if (cmp_left == 0) {
		json_decref(out);
		return kiln_err(E2BIG, "the matrix's include and exclude entries are too large to "
				       "apply (more than %u comparisons)", MAX_COMPARISONS);
	}
	if (json_array_size(out) > KILN_MATRIX_MAX) {
		json_decref(out);
		return kiln_err(E2BIG, "the matrix has more than %d combinations", KILN_MATRIX_MAX);
	}
	*combos = out;
	return 0;
}

/* ---- names --------------------------------------------------------------------------- */

/* A number as JavaScript's Number.prototype.toString prints it. */
static void js_number(kiln_buf *b, double d)
{
	if (isnan(d)) {
		kiln_buf_puts(b, "NaN");
		return;
	}
	if (isinf(d)) {
		kiln_buf_puts(b, d < 0 ? "-Infinity" : "Infinity");
		return;
	}
	if (d == 0) {
		kiln_buf_puts(b, "0");
		return;
	}
	char e[40];
	for (int p = 1; p <= 17; p++) {
		snprintf(e, sizeof e, "%.*e", p - 1, d);
		if (strtod(e, NULL) == d)
			break;
	}
	/* e is "[-]D[.DDD]e±XX": collect the digits and the exponent */
	char digits[24];
	size_t k = 0;
	const char *p = e;
	if (*p == '-') {
		kiln_buf_puts(b, "-");
		p++;
	}
	for (; *p && *p != 'e'; p++)
		if (*p != '.' && k < sizeof digits - 1)
			digits[k++] = *p;
	digits[k] = '\0';
	while (k > 1 && digits[k - 1] == '0')
		digits[--k] = '\0';
	int n = (int)strtol(p + 1, NULL, 10) + 1; /* the decimal point sits after n digits */
	if ((int)k <= n && n <= 21) {
		kiln_buf_puts(b, digits);
		for (int i = (int)k; i < n; i++)
			kiln_buf_puts(b, "0");
	} else if (0 < n && n <= 21) {
		kiln_buf_printf(b, "%.*s.%s", n, digits, digits + n);
	} else if (-6 < n && n <= 0) {
		kiln_buf_puts(b, "0.");
		for (int i = 0; i < -n; i++)
			kiln_buf_puts(b, "0");
		kiln_buf_puts(b, digits);
	} else {
		kiln_buf_printf(b, "%c", digits[0]);
		if (k > 1)
			kiln_buf_printf(b, ".%s", digits + 1);
		kiln_buf_printf(b, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
	}
}

static void value_str(kiln_buf *b, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		kiln_buf_append(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		kiln_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		js_number(b, json_real_value(v));
		break;
	case JSON_TRUE:
		kiln_buf_puts(b, "true");
		break;
	case JSON_FALSE:
		kiln_buf_puts(b, "false");
		break;
	case JSON_NULL:
		break;
	case JSON_ARRAY:
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i)
				kiln_buf_puts(b, ", ");
			value_str(b, json_array_get(v, i));
		}
		break;
	case JSON_OBJECT: {
		const char *k;
		json_t *x;
		bool first = true;
		json_object_foreach((json_t *)v, k, x)
		{
			if (!first)
				kiln_buf_puts(b, ", ");
			first = false;
			value_str(b, x);
		}
		break;
	}
	}
}

char *kiln_matrix_value_str(const json_t *v)
{
	kiln_buf b = {0};
	kiln_buf_puts(&b, "");
	value_str(&b, v);
	return kiln_buf_steal(&b);
}

char *kiln_matrix_job_name(const char *base, const json_t *combo)
{
	if (!json_is_object(combo) || json_object_size(combo) == 0)
		return kiln_strdup(base ? base : "");
	kiln_buf b = {0};
	kiln_buf_printf(&b, "%s (", base ? base : "");
	value_str(&b, combo);
	kiln_buf_puts(&b, ")");
	return kiln_buf_steal(&b);
}

json_t *kiln_matrix_strategy(size_t index, size_t total, bool fail_fast, int max_parallel)
{
	return json_pack("{s:b, s:I, s:I, s:I}", "fail-fast", fail_fast, "job-index",
	                 (json_int_t)index, "job-total", (json_int_t)total, "max-parallel",
	                 (json_int_t)(max_parallel > 0 ? (size_t)max_parallel : total));
}
