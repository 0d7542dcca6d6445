/*
 * test_matrix — matrix expansion against the examples of GitHub's
 * documentation (product order, exclude with partial entries, include that
 * extends, overwrites added values, or adds combinations), values of any
 * JSON type, the 256 limit, malformed matrices, YAML conversion with YAML 1.2
 * types, job names as GitHub shows them, and the strategy context.
 */
#include "common/matrix.h"
#include "common/util.h"
#include "common/yaml.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <string.h>

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
	if (!v)
		fprintf(stderr, "bad test JSON: %s: %s\n", text, e.text);
	return v;
}

/* Expands a matrix given as JSON; returns the combinations as compact JSON, or NULL. */
static char *expand(const char *matrix)
{
	json_t *m = J(matrix), *combos = NULL;
	char *out = NULL;
	if (m && kiln_matrix_expand(m, &combos) == 0)
		out = json_dumps(combos, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(m);
	json_decref(combos);
	return out;
}

#define CHECK_EXPAND(matrix, want)                                                                 \
	do {                                                                                       \
		char *got_ = expand(matrix);                                                       \
		CHECK_STR(got_, (want));                                                           \
		free(got_);                                                                        \
	} while (0)

#define CHECK_EXPAND_FAIL(matrix, err, msg)                                                        \
	do {                                                                                       \
		json_t *m_ = J(matrix), *c_ = (json_t *)1;                                         \
		CHECK_INT(kiln_matrix_expand(m_, &c_), (err));                                     \
		CHECK(c_ == NULL);                                                                 \
		CHECK_STR(kiln_errmsg(), (msg));                                                   \
		json_decref(m_);                                                                   \
	} while (0)

static void test_product(void)
{
	/* The first key varies slowest. */
	CHECK_EXPAND("{\"os\": [\"ubuntu\", \"windows\"], \"version\": [10, 12, 14]}",
	             "[{\"os\":\"ubuntu\",\"version\":10},{\"os\":\"ubuntu\",\"version\":12},"
	             "{\"os\":\"ubuntu\",\"version\":14},{\"os\":\"windows\",\"version\":10},"
	             "{\"os\":\"windows\",\"version\":12},{\"os\":\"windows\",\"version\":14}]");
	CHECK_EXPAND("{\"one\": [1]}", "[{\"one\":1}]");
	/* Values of any type, objects and arrays included. */
	CHECK_EXPAND("{\"cfg\": [{\"cc\": \"gcc\", \"v\": [1, 2]}, null, true, 1.5]}",
	             "[{\"cfg\":{\"cc\":\"gcc\",\"v\":[1,2]}},{\"cfg\":null},{\"cfg\":true},"
	             "{\"cfg\":1.5}]");
}

static void test_exclude(void)
{
	/* GitHub's example: a full entry removes one combination, a partial one removes two. */
	char *got = expand("{\"os\": [\"macos-latest\", \"windows-latest\"],"
	                   " \"version\": [12, 14, 16],"
	                   " \"environment\": [\"staging\", \"production\"],"
	                   " \"exclude\": [{\"os\": \"macos-latest\", \"version\": 12,"
	                   "                \"environment\": \"production\"},"
	                   "               {\"os\": \"windows-latest\", \"version\": 16}]}");
	json_t *a = got ? J(got) : NULL;
	CHECK_INT(json_array_size(a), 9);
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *c = json_array_get(a, i);
		const char *os = json_string_value(json_object_get(c, "os"));
		json_int_t v = json_integer_value(json_object_get(c, "version"));
		const char *env = json_string_value(json_object_get(c, "environment"));
		CHECK(!(strcmp(os, "macos-latest") == 0 && v == 12 &&
		        strcmp(env, "production") == 0));
		CHECK(!(strcmp(os, "windows-latest") == 0 && v == 16));
	}
	json_decref(a);
	free(got);

	/* Objects compare deeply; numbers compare by value (1 == 1.0). */
	CHECK_EXPAND("{\"cfg\": [{\"a\": 1}, {\"a\": 2}], \"n\": [1, 2],"
	             " \"exclude\": [{\"cfg\": {\"a\": 1.0}, \"n\": 2}]}",
	             "[{\"cfg\":{\"a\":1},\"n\":1},{\"cfg\":{\"a\":2},\"n\":1},"
	             "{\"cfg\":{\"a\":2},\"n\":2}]");
	/* Everything excluded: no combination. */
	CHECK_EXPAND("{\"a\": [1], \"exclude\": [{\"a\": 1}]}", "[]");
}

static void test_include(void)
{
	/* GitHub's documented example, result for result. */
	CHECK_EXPAND(
	    "{\"fruit\": [\"apple\", \"pear\"], \"animal\": [\"cat\", \"dog\"],"
	    " \"include\": [{\"color\": \"green\"},"
	    "               {\"color\": \"pink\", \"animal\": \"cat\"},"
	    "               {\"fruit\": \"apple\", \"shape\": \"circle\"},"
	    "               {\"fruit\": \"banana\"},"
	    "               {\"fruit\": \"banana\", \"animal\": \"cat\"}]}",
	    "[{\"fruit\":\"apple\",\"animal\":\"cat\",\"color\":\"pink\",\"shape\":\"circle\"},"
	    "{\"fruit\":\"apple\",\"animal\":\"dog\",\"color\":\"green\",\"shape\":\"circle\"},"
	    "{\"fruit\":\"pear\",\"animal\":\"cat\",\"color\":\"pink\"},"
	    "{\"fruit\":\"pear\",\"animal\":\"dog\",\"color\":\"green\"},"
	    "{\"fruit\":\"banana\"},"
	    "{\"fruit\":\"banana\",\"animal\":\"cat\"}]");
	/* Expanding one configuration: only (windows, 16) gets npm. */
	CHECK_EXPAND(
	    "{\"os\": [\"windows-latest\", \"ubuntu-latest\"], \"node\": [14, 16],"
	    " \"include\": [{\"os\": \"windows-latest\", \"node\": 16, \"npm\": 6}]}",
	    "[{\"os\":\"windows-latest\",\"node\":14},"
	    "{\"os\":\"windows-latest\",\"node\":16,\"npm\":6},"
	    "{\"os\":\"ubuntu-latest\",\"node\":14},{\"os\":\"ubuntu-latest\",\"node\":16}]");
	/* An original value is never overwritten: the entry becomes a combination. */
	CHECK_EXPAND("{\"os\": [\"a\"], \"include\": [{\"os\": \"b\", \"x\": 1}]}",
	             "[{\"os\":\"a\"},{\"os\":\"b\",\"x\":1}]");
	/* Include only. */
	CHECK_EXPAND("{\"include\": [{\"site\": \"production\", \"datacenter\": \"site-a\"},"
	             "               {\"site\": \"staging\", \"datacenter\": \"site-b\"}]}",
	             "[{\"site\":\"production\",\"datacenter\":\"site-a\"},"
	             "{\"site\":\"staging\",\"datacenter\":\"site-b\"}]");
	/* Exclude first, then include: an excluded combination can come back from include. */
	CHECK_EXPAND(
	    "{\"a\": [1, 2], \"exclude\": [{\"a\": 2}], \"include\": [{\"a\": 2, \"b\": 3}]}",
	    "[{\"a\":1},{\"a\":2,\"b\":3}]");
	/* Include entries with object values match deeply. */
	CHECK_EXPAND("{\"cfg\": [{\"os\": \"l\"}, {\"os\": \"m\"}],"
	             " \"include\": [{\"cfg\": {\"os\": \"m\"}, \"extra\": [1]}]}",
	             "[{\"cfg\":{\"os\":\"l\"}},{\"cfg\":{\"os\":\"m\"},\"extra\":[1]}]");
}

static void test_limits_and_errors(void)
{
	/* 16 x 16 = 256 is allowed, 16 x 17 is not. */
	kiln_buf b = {0};
	kiln_buf_puts(&b, "{\"a\": [");
	for (int i = 0; i < 16; i++)
		kiln_buf_printf(&b, "%s%d", i ? "," : "", i);
	kiln_buf_puts(&b, "], \"b\": [");
	for (int i = 0; i < 16; i++)
		kiln_buf_printf(&b, "%s%d", i ? "," : "", i);
	kiln_buf_puts(&b, "]}");
	json_t *m = J(b.p), *c = NULL;
	CHECK_INT(kiln_matrix_expand(m, &c), 0);
	CHECK_INT(json_array_size(c), 256);
	json_decref(c);
	json_array_append_new(json_object_get(m, "b"), json_integer(16));
	c = NULL;
	CHECK_INT(kiln_matrix_expand(m, &c), -E2BIG);
	CHECK(c == NULL);
	CHECK_STR(kiln_errmsg(), "the matrix has more than 256 combinations");
	/* ... unless exclude brings it back under the limit */
	json_object_set_new(m, "exclude", J("[{\"b\": 16}]"));
	CHECK_INT(kiln_matrix_expand(m, &c), 0);
	CHECK_INT(json_array_size(c), 256);
	json_decref(c);
	/* ... and include can push it over */
	json_object_set_new(m, "include", J("[{\"a\": 99}]"));
	CHECK_INT(kiln_matrix_expand(m, &c), -E2BIG);
	json_decref(m);
	kiln_buf_free(&b);

	/* A huge product is refused before it is built. */
	kiln_buf_puts(&b, "{");
	for (int k = 0; k < 10; k++) {
		kiln_buf_printf(&b, "%s\"k%d\": [", k ? "," : "", k);
		for (int i = 0; i < 10; i++)
			kiln_buf_printf(&b, "%s%d", i ? "," : "", i);
		kiln_buf_puts(&b, "]");
	}
	kiln_buf_puts(&b, "}");
	m = J(b.p);
	CHECK_INT(kiln_matrix_expand(m, &c), -E2BIG);
	json_decref(m);
	kiln_buf_free(&b);

	CHECK_EXPAND_FAIL("[1]", -EINVAL, "a matrix must be a mapping");
	CHECK_EXPAND_FAIL("{}", -EINVAL,
	                  "a matrix must define at least one vector or include entry");
	CHECK_EXPAND_FAIL("{\"os\": \"linux\"}", -EINVAL, "matrix vector 'os' must be a list");
	CHECK_EXPAND_FAIL("{\"os\": []}", -EINVAL,
	                  "matrix vector 'os' does not contain any values");
	CHECK_EXPAND_FAIL("{\"os\": [1], \"include\": {\"a\": 1}}", -EINVAL,
	                  "matrix 'include' must be a list of mappings");
	CHECK_EXPAND_FAIL("{\"os\": [1], \"include\": [{\"a\": 1}, 2]}", -EINVAL,
	                  "matrix 'include' entry 2 must be a mapping");
	CHECK_EXPAND_FAIL("{\"os\": [1], \"exclude\": [{\"arch\": 1}]}", -EINVAL,
	                  "matrix exclude key 'arch' does not match any key of the matrix");
	CHECK_EXPAND_FAIL("{\"exclude\": [{\"a\": 1}]}", -EINVAL,
	                  "a matrix must define at least one vector or include entry");
}

static kiln_ynode *Y(const char *text)
{
	kiln_ynode *n = NULL;
	if (kiln_yaml_parse("m.yml", text, strlen(text), NULL, &n) < 0)
		fprintf(stderr, "bad test YAML: %s\n", kiln_errmsg());
	return n;
}

static void test_yaml(void)
{
	kiln_ynode *n = Y("python: [3.8, 3.10, '3.11', \"3.12\"]\n"
	                  "n: [010, 0x1F, 0o17, -5, +3, 1e3, .5, 9223372036854775808]\n"
	                  "b: [true, True, FALSE, yes, ~, null, '', .inf]\n"
	                  "o: {k: [1, {x: y}]}\n");
	json_t *j = NULL;
	CHECK_INT(kiln_matrix_node_json("m.yml", n, &j), 0);
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
	CHECK_STR(s, "{\"python\":[3.7999999999999998,3.1000000000000001,\"3.11\",\"3.12\"],"
	             "\"n\":[10,31,15,-5,3,1000.0,0.5,9.2233720368547758e18],"
	             "\"b\":[true,true,false,\"yes\",null,null,\"\",\".inf\"],"
	             "\"o\":{\"k\":[1,{\"x\":\"y\"}]}}");
	free(s);
	/* 3.10 is the number 3.1, as GitHub famously shows it */
	char *name = kiln_matrix_value_str(json_object_get(j, "python"));
	CHECK_STR(name, "3.8, 3.1, 3.11, 3.12");
	free(name);
	json_decref(j);
	CHECK(!kiln_matrix_node_has_expr(n));
	kiln_ynode_free(n);

	n = Y("os: [a]\ninclude:\n  - os: a\n    v: ${{ matrix.x }}\n");
	CHECK(kiln_matrix_node_has_expr(n));
	CHECK_INT(kiln_matrix_node_json("m.yml", n, &j), -EINVAL);
	CHECK(j == NULL);
	CHECK_STR(kiln_errmsg(), "m.yml:4:8: an expression must be evaluated before expansion");
	kiln_ynode_free(n);
	n = Y("${{ k }}: [1]\n");
	CHECK(kiln_matrix_node_has_expr(n));
	CHECK_INT(kiln_matrix_node_json("m.yml", n, &j), -EINVAL);
	kiln_ynode_free(n);
	CHECK(!kiln_matrix_node_has_expr(NULL));
	CHECK_INT(kiln_matrix_node_json("m.yml", NULL, &j), 0);
	CHECK(json_is_null(j));
	json_decref(j);

	/* From YAML to combinations in one go. */
	n = Y("os: [ubuntu-latest, windows-latest]\nnode: [18, 20]\n"
	      "exclude: [{os: windows-latest, node: 18}]\n"
	      "include: [{os: ubuntu-latest, node: 20, coverage: true}]\n");
	json_t *combos = NULL;
	CHECK_INT(kiln_matrix_node_json("m.yml", n, &j), 0);
	CHECK_INT(kiln_matrix_expand(j, &combos), 0);
	CHECK_INT(json_array_size(combos), 3);
	const char *want[] = {"ci (ubuntu-latest, 18)", "ci (ubuntu-latest, 20, true)",
	                      "ci (windows-latest, 20)"};
	for (size_t i = 0; i < json_array_size(combos) && i < 3; i++) {
		char *nm = kiln_matrix_job_name("ci", json_array_get(combos, i));
		CHECK_STR(nm, want[i]);
		free(nm);
	}
	json_decref(combos);
	json_decref(j);
	kiln_ynode_free(n);
}

static void test_names(void)
{
	json_t *c = J("{\"os\": \"ubuntu\", \"node\": 14, \"exp\": false, \"n\": null,"
	              " \"cfg\": {\"cc\": \"gcc\", \"flags\": [\"-O2\", \"-g\"]}, \"f\": 0.1}");
	char *s = kiln_matrix_job_name("build", c);
	CHECK_STR(s, "build (ubuntu, 14, false, , gcc, -O2, -g, 0.1)");
	free(s);
	json_decref(c);
	s = kiln_matrix_job_name("build", NULL);
	CHECK_STR(s, "build");
	free(s);
	c = json_object();
	s = kiln_matrix_job_name("build", c);
	CHECK_STR(s, "build");
	free(s);
	json_decref(c);

	/* numbers as JavaScript prints them */
	struct {
		double d;
		const char *want;
	} nums[] = {{1, "1"},
	            {-2.5, "-2.5"},
	            {1e21, "1e+21"},
	            {1e20, "100000000000000000000"},
	            {1e-7, "1e-7"},
	            {0.000001, "0.000001"},
	            {123.456, "123.456"},
	            {3.1, "3.1"},
	            {0.1 + 0.2, "0.30000000000000004"},
	            {-0.0, "0"},
	            {1.5e300, "1.5e+300"}};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(nums); i++) {
		json_t *v = json_real(nums[i].d);
		s = kiln_matrix_value_str(v);
		CHECK_STR(s, nums[i].want);
		free(s);
		json_decref(v);
	}
	json_t *v = json_integer(-42);
	s = kiln_matrix_value_str(v);
	CHECK_STR(s, "-42");
	free(s);
	json_decref(v);
	v = json_string("");
	s = kiln_matrix_value_str(v);
	CHECK_STR(s, "");
	free(s);
	json_decref(v);
}

static void test_strategy(void)
{
	json_t *s = kiln_matrix_strategy(2, 6, false, 3);
	char *t = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_STR(t, "{\"fail-fast\":false,\"job-index\":2,\"job-total\":6,\"max-parallel\":3}");
	free(t);
	json_decref(s);
	s = kiln_matrix_strategy(0, 4, true, 0);
	t = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_STR(t, "{\"fail-fast\":true,\"job-index\":0,\"job-total\":4,\"max-parallel\":4}");
	free(t);
	json_decref(s);
}

int main(void)
{
	test_product();
	test_exclude();
	test_include();
	test_limits_and_errors();
	test_yaml();
	test_names();
	test_strategy();
	return check_done();
}
