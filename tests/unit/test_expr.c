/*
 * test_expr — the expression engine's C API: parsing and its error positions,
 * evaluation against contexts, string forms, interpolation, `if:` conditions
 * with the implicit success(), the status functions, hashFiles (callback and
 * directory), lint, and every limit. Agreement with GitHub's own evaluator is
 * tested case by case in tests/integration/test_expr_oracle.py.
 */
#include "common/expr.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "common/util.h"
#include "tests/harness/check.h"

static json_t *ctx_json;

static kiln_expr_ctx ctx_with(int status)
{
	return (kiln_expr_ctx){.contexts = ctx_json, .status = status};
}

/* Evaluates and hands back the value as compact JSON text (the CLI's form), or "ERROR: msg". */
static char *eval_text(const char *text, const kiln_expr_ctx *ctx)
{
	json_t *v = NULL;
	if (kiln_expr_evaluate(text, ctx, &v) < 0)
		return kiln_asprintf("ERROR: %s", kiln_errmsg());
	char *s = kiln_expr_to_json(v, false);
	json_decref(v);
	return s;
}

#define CHECK_EVAL(text, want)                                                                     \
	do {                                                                                       \
		kiln_expr_ctx c_ = ctx_with(KILN_EXPR_STATUS_SUCCESS);                             \
		char *got_ = eval_text(text, &c_);                                                 \
		CHECK_STR(got_, want);                                                             \
		free(got_);                                                                        \
	} while (0)

#define CHECK_ERR(text, fragment)                                                                  \
	do {                                                                                       \
		kiln_expr_ctx c_ = ctx_with(KILN_EXPR_STATUS_SUCCESS);                             \
		char *got_ = eval_text(text, &c_);                                                 \
		CHECK(strncmp(got_, "ERROR: ", 7) == 0 && strstr(got_, fragment) != NULL);         \
		if (strncmp(got_, "ERROR: ", 7) != 0 || !strstr(got_, fragment))                   \
			fprintf(stderr, "  %s -> %s (want an error with '%s')\n", text, got_,      \
			        fragment);                                                         \
		free(got_);                                                                        \
	} while (0)

static void test_parse_errors(void)
{
	kiln_expr *e = NULL;
	CHECK(kiln_expr_parse("github.ref == 'x'", &e) == 0 && e);
	kiln_expr_free(e);
	kiln_expr_free(NULL);

	struct {
		const char *text, *fragment;
	} bad[] = {
	    {"1 +", "position 3"},
	    {"a ==", "Unexpected end of expression"},
	    {"(1", "Unexpected end of expression"},
	    {"'abc", "position 1"},
	    {"x == 'abc", "position 6"},
	    {"1 2", "Unexpected symbol: '2'. Located at position 3"},
	    {"a = b", "position 3"},
	    {"foo(1)", "Unrecognized function: 'foo'"},
	    {"contains('a')", "Too few parameters"},
	    {"toJSON(1, 2)", "Too many parameters"},
	    {"case(true, 1, false, 2)", "Even number of parameters"},
	    {"1.2.3", "Unexpected symbol: '1.2.3'"},
	    {"é", "position 1"},
	    {"'é' + 1", "position 5"},
	    {"", "Expected an expression"},
	    {"   ", "Expected an expression"},
	    {"a.", "Unexpected symbol: 'EOF'"},
	    {"\xff", "not valid UTF-8"},
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
		e = NULL;
		int r = kiln_expr_parse(bad[i].text, &e);
		CHECK(r == -EINVAL && e == NULL);
		CHECK(strstr(kiln_errmsg(), bad[i].fragment) != NULL);
		if (!strstr(kiln_errmsg(), bad[i].fragment))
			fprintf(stderr, "  parse(%s): '%s' lacks '%s'\n", bad[i].text,
			        kiln_errmsg(), bad[i].fragment);
	}

	/* text with NUL characters */
	CHECK(kiln_expr_parse_n("'a\0b' == 'A\0B'", 14, &e) == 0);
	json_t *v = NULL;
	kiln_expr_ctx c = {0};
	CHECK(kiln_expr_eval(e, &c, &v) == 0 && json_is_true(v));
	json_decref(v);
	char *s = NULL;
	size_t len = 0;
	kiln_expr_free(e);
	CHECK(kiln_expr_parse_n("'a\0b'", 5, &e) == 0);
	CHECK(kiln_expr_eval_ex(e, &c, NULL, &s, &len) == 0 && len == 3 &&
	      memcmp(s, "a\0b", 3) == 0);
	free(s);
	kiln_expr_free(e);
}

static void test_values(void)
{
	CHECK_EVAL("github.ref", "\"refs/heads/main\"");
	CHECK_EVAL("GITHUB.Ref", "\"refs/heads/main\"");
	CHECK_EVAL("github['REF']", "\"refs/heads/main\"");
	CHECK_EVAL("github.event.commits[1].id", "\"b\"");
	CHECK_EVAL("github.event.commits.*.id", "[\"a\",\"b\"]");
	CHECK_EVAL("github.event.commits[*].author.name", "[\"Mona\"]");
	CHECK_EVAL("github.nope.deeper", "null");
	CHECK_EVAL("github.nope.*", "[]");
	CHECK_EVAL("vars.n", "7");
	CHECK_EVAL("vars.n == '7.0'", "true");
	CHECK_EVAL("vars.n == ' 0x7 '", "true");
	CHECK_EVAL("'ABC' == 'abc'", "true");
	CHECK_EVAL("'b' > 'A'", "true");
	CHECK_EVAL("null == 0", "true");
	CHECK_EVAL("NaN == NaN", "false");
	CHECK_EVAL("github == github", "true");
	CHECK_EVAL("github.event.commits.* == github.event.commits.*", "false");
	CHECK_EVAL("0 || 'x'", "\"x\"");
	CHECK_EVAL("'' && 'x'", "\"\"");
	CHECK_EVAL("vars.list || 1", "[1,\"Two\"]");
	CHECK_EVAL("!vars.list", "false");
	CHECK_EVAL("contains(vars.list, 'two')", "true");
	CHECK_EVAL("contains('Hello', 'LL')", "true");
	CHECK_EVAL("startsWith(github.ref, 'REFS/')", "true");
	CHECK_EVAL("endsWith(github.ref, 'Main')", "true");
	CHECK_EVAL("format('{0}-{{1}}-{1}', 'a', 2.5)", "\"a-{1}-2.5\"");
	CHECK_EVAL("join(vars.list)", "\"1,Two\"");
	CHECK_EVAL("join(vars.list, ' + ')", "\"1 + Two\"");
	CHECK_EVAL("toJSON(vars.list)", "\"[\\n  1,\\n  \\\"Two\\\"\\n]\"");
	CHECK_EVAL("fromJSON('{\"b\":1,\"2\":2,\"1\":3}')", "{\"1\":3,\"2\":2,\"b\":1}");
	CHECK_EVAL("fromJSON('[1,2]')[1]", "2");
	CHECK_EVAL("case(vars.n > 5, 'big', 'small')", "\"big\"");
	CHECK_EVAL("Format('{0}', 1e21)", "\"1e+21\"");
	CHECK_EVAL("1e21", "1e+21");
	CHECK_EVAL("0x1F", "31");
	CHECK_EVAL("-0", "0");
	CHECK_EVAL("NaN", "null");
	CHECK_EVAL("fromJSON('{\"a\":1,\"A\":2}')", "{\"a\":1}");

	CHECK_ERR("nope", "Unrecognized named-value: 'nope'");
	CHECK_ERR("true || nope",
	          "Unrecognized named-value"); /* as GitHub's parser: before evaluating */
	CHECK_ERR("format('{1}', 1)", "references more arguments");
	CHECK_ERR("format('{x}', 1)", "is invalid");
	CHECK_ERR("fromJSON('')", "empty input");
	CHECK_ERR("fromJSON('{')", "Error parsing JSON");
	CHECK_ERR("case(1, 2, 3)", "boolean");
	CHECK_ERR("hashFiles('*')", "not available");

	/* the string form keeps what JSON cannot */
	kiln_expr *e = NULL;
	char *s = NULL;
	json_t *v = NULL;
	kiln_expr_ctx c = ctx_with(0);
	CHECK(kiln_expr_parse("-Infinity", &e) == 0);
	CHECK(kiln_expr_eval_ex(e, &c, &v, &s, NULL) == 0);
	CHECK(json_is_null(v));
	CHECK_STR(s, "-Infinity");
	json_decref(v);
	free(s);
	kiln_expr_free(e);
	/* numbers come out as reals */
	CHECK(kiln_expr_evaluate("vars.n", &c, &v) == 0 && json_is_real(v) &&
	      json_real_value(v) == 7);
	json_decref(v);
}

static void test_strings(void)
{
	struct {
		json_t *v;
		const char *want;
	} cases[] = {
	    {json_null(), ""},
	    {json_true(), "true"},
	    {json_false(), "false"},
	    {json_real(1), "1"},
	    {json_integer(-42), "-42"},
	    {json_real(-0.0), "0"},
	    {json_real(0.1), "0.1"},
	    {json_real(1.0 / 3), "0.333333333333333"},
	    {json_real(1e21), "1e+21"},
	    {json_real(1e-7), "1e-7"},
	    {json_real(123456789012345678.0), "123456789012345680"},
	    {json_real(1.0 / 65536), "0.000015258789063"},
	    {json_real(5e-324), "0"},
	    {json_string("x y"), "x y"},
	    {json_array(), "Array"},
	    {json_object(), "Object"},
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(cases); i++) {
		char *s = kiln_expr_to_string(cases[i].v);
		CHECK_STR(s, cases[i].want);
		free(s);
		json_decref(cases[i].v);
	}
	char *s = kiln_expr_to_string(NULL);
	CHECK_STR(s, "");
	free(s);

	json_t *t[] = {json_true(), json_real(2), json_string("0"), json_array(), json_object()};
	json_t *f[] = {json_false(), json_real(0), json_real(-0.0), json_string(""), json_null()};
	for (size_t i = 0; i < 5; i++) {
		CHECK(kiln_expr_truthy(t[i]));
		CHECK(!kiln_expr_truthy(f[i]));
		json_decref(t[i]);
		json_decref(f[i]);
	}
	CHECK(!kiln_expr_truthy(NULL));

	json_t *o = json_pack("{s:[i,s,{}],s:f,s:n}", "b", 1, "é\"\n\x01", "a", 0.5, "10");
	s = kiln_expr_to_json(o, true);
	CHECK_STR(s,
	          "{\n  \"10\": null,\n  \"b\": [\n    1,\n    \"é\\\"\\n\\u0001\",\n    {}\n  ],\n"
	          "  \"a\": 0.5\n}");
	free(s);
	s = kiln_expr_to_json(o, false);
	CHECK_STR(s, "{\"10\":null,\"b\":[1,\"é\\\"\\n\\u0001\",{}],\"a\":0.5}");
	free(s);
	json_decref(o);
}

static void test_interpolate(void)
{
	kiln_expr_ctx c = ctx_with(0);
	struct {
		const char *text, *want;
	} ok[] = {
	    {"no expressions", "no expressions"},
	    {"", ""},
	    {"ref=${{ github.ref }}!", "ref=refs/heads/main!"},
	    {"${{ vars.n }}${{vars.n}}", "77"},
	    {"${{ '}}' }} and ${{ 'it''s' }}", "}} and it's"},
	    {"${{ vars.list }} ${{ github }} ${{ null }}|", "Array Object |"},
	    {"${{ 0.1 }} ${{ 1e21 }} ${{ NaN }}", "0.1 1e+21 NaN"},
	    {"$${{ 1 }}}", "$1}"},
	    {"a ${ { b", "a ${ { b"},
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(ok); i++) {
		char *out = NULL;
		int r = kiln_expr_interpolate(ok[i].text, &c, &out);
		CHECK(r == 0);
		if (r < 0)
			fprintf(stderr, "  interpolate(%s): %s\n", ok[i].text, kiln_errmsg());
		CHECK_STR(out, ok[i].want);
		free(out);
	}
	const char *bad[] = {"${{ github.ref", "x ${{ }} y", "${{ nope }}", "${{ 1 + }}"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
		char *out = (char *)"unchanged";
		CHECK(kiln_expr_interpolate(bad[i], &c, &out) < 0);
		CHECK(out == NULL);
	}
}

static void test_condition(void)
{
	struct {
		const char *cond;
		int status;
		int want; /* 1 true, 0 false, -1 error */
	} cases[] = {
	    {"", KILN_EXPR_STATUS_SUCCESS, 1},
	    {"", KILN_EXPR_STATUS_FAILURE, 0},
	    {"  ", KILN_EXPR_STATUS_CANCELLED, 0},
	    {"github.ref == 'refs/heads/main'", KILN_EXPR_STATUS_SUCCESS, 1},
	    {"github.ref == 'refs/heads/main'", KILN_EXPR_STATUS_FAILURE,
	     0}, /* implicit success() */
	    {"${{ github.ref == 'refs/heads/main' }}", KILN_EXPR_STATUS_FAILURE, 0},
	    {"${{ github.ref == 'refs/heads/x' }}", KILN_EXPR_STATUS_SUCCESS, 0},
	    {"always()", KILN_EXPR_STATUS_FAILURE, 1},
	    {"${{ always() }}", KILN_EXPR_STATUS_CANCELLED, 1},
	    {"failure()", KILN_EXPR_STATUS_FAILURE, 1},
	    {"failure()", KILN_EXPR_STATUS_SUCCESS, 0},
	    {"cancelled()", KILN_EXPR_STATUS_CANCELLED, 1},
	    {"success()", KILN_EXPR_STATUS_CANCELLED, 0},
	    {"failure() || github.ref == 'refs/heads/main'", KILN_EXPR_STATUS_SUCCESS, 1},
	    {"!cancelled() && vars.n > 100", KILN_EXPR_STATUS_FAILURE, 0},
	    {"contains(format('{0}', 'always()'), 'x') || true", KILN_EXPR_STATUS_FAILURE, 0},
	    {"false", KILN_EXPR_STATUS_SUCCESS, 0},
	    {"${{ false }}", KILN_EXPR_STATUS_SUCCESS, 0},
	    /* text around an expression makes a (non-empty, so true) string, as on GitHub */
	    {"${{ false }} ", KILN_EXPR_STATUS_SUCCESS, 1},
	    {"${{ false }} ", KILN_EXPR_STATUS_FAILURE, 0},
	    {"x ${{ failure() }}", KILN_EXPR_STATUS_FAILURE, 1},
	    /* a string literal is the condition's text */
	    {"${{ 'failure()' }}", KILN_EXPR_STATUS_FAILURE, 1},
	    {"${{ '' }}", KILN_EXPR_STATUS_SUCCESS, 1},
	    /* short-circuit: not evaluated when the job already failed */
	    {"fromJSON('')", KILN_EXPR_STATUS_FAILURE, 0},
	    {"fromJSON('')", KILN_EXPR_STATUS_SUCCESS, -1},
	    /* named values are checked whatever the status */
	    {"nope.x", KILN_EXPR_STATUS_FAILURE, -1},
	    {"github.ref ==", KILN_EXPR_STATUS_SUCCESS, -1},
	    {"a) || (true", KILN_EXPR_STATUS_FAILURE, -1},
	    {"${{ github.ref", KILN_EXPR_STATUS_SUCCESS, -1},
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(cases); i++) {
		kiln_expr_ctx c = ctx_with(cases[i].status);
		bool out = true;
		int r = kiln_expr_condition(cases[i].cond, &c, &out);
		int got = r < 0 ? -1 : out;
		CHECK_INT(got, cases[i].want);
		if (got != cases[i].want)
			fprintf(stderr, "  condition(%s, status %d) = %d (%s)\n", cases[i].cond,
			        cases[i].status, got, r < 0 ? kiln_errmsg() : "");
	}
}

static void test_status(void)
{
	const char *fns[] = {"success()", "failure()", "cancelled()", "always()"};
	int want[3][4] = {{1, 0, 0, 1}, {0, 1, 0, 1}, {0, 0, 1, 1}};
	for (int st = 0; st < 3; st++) {
		for (int f = 0; f < 4; f++) {
			kiln_expr_ctx c = ctx_with(st);
			json_t *v = NULL;
			CHECK(kiln_expr_evaluate(fns[f], &c, &v) == 0);
			CHECK_INT(json_is_true(v), want[st][f]);
			json_decref(v);
		}
	}
	json_t *v = NULL;
	CHECK(kiln_expr_evaluate("success() && !failure()", NULL, &v) == 0 && json_is_true(v));
	json_decref(v);
}

struct hash_rec {
	char seen[256];
	size_t n;
	int ret;
};

static int fake_hash(void *arg, const char *const *patterns, size_t n, char out[65])
{
	struct hash_rec *h = arg;
	h->n = n;
	h->seen[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strncat(h->seen, patterns[i], sizeof h->seen - strlen(h->seen) - 2);
		strcat(h->seen, "|");
	}
	if (h->ret < 0)
		return kiln_err(h->ret, "disk on fire");
	memset(out, 'a', 64);
	out[64] = '\0';
	return 0;
}

static void sha_hex(const unsigned char *d, char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_hash_files(void)
{
	struct hash_rec h = {0};
	kiln_expr_ctx c = {.contexts = ctx_json, .hash_files = fake_hash, .hash_arg = &h};
	json_t *v = NULL;
	CHECK(kiln_expr_evaluate("hashFiles('**/*.lock', vars.n, 'x')", &c, &v) == 0);
	CHECK(json_is_string(v) && strlen(json_string_value(v)) == 64);
	CHECK_STR(h.seen, "**/*.lock|7|x|");
	json_decref(v);
	h.ret = -EIO;
	CHECK(kiln_expr_evaluate("hashFiles('x')", &c, &v) == -EIO);
	CHECK(strstr(kiln_errmsg(), "disk on fire") != NULL);
	CHECK(kiln_expr_evaluate("hashFiles()", &c, &v) < 0);

	/* over a directory, as the runner does */
	char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-expr", &dir) == 0);
	char *sub = kiln_asprintf("%s/sub", dir);
	kiln_mkdir_p(sub, 0755);
	char *f1 = kiln_asprintf("%s/b.txt", dir), *f2 = kiln_asprintf("%s/sub/a.txt", dir);
	char *f3 = kiln_asprintf("%s/c.md", dir);
	kiln_write_file_atomic(f1, "bee", 3, 0644);
	kiln_write_file_atomic(f2, "ay", 2, 0644);
	kiln_write_file_atomic(f3, "sea", 3, 0644);
	unsigned char d1[32], d2[32], both[64], total[32];
	SHA256((const unsigned char *)"bee", 3, d1);
	SHA256((const unsigned char *)"ay", 2, d2);
	memcpy(both, d1, 32); /* b.txt comes before sub/ in byte order */
	memcpy(both + 32, d2, 32);
	SHA256(both, 64, total);
	char want[65], got[65];
	sha_hex(total, want);
	const char *pats[] = {"**/*.txt"};
	CHECK(kiln_expr_hash_files_dir(dir, pats, 1, got) == 0);
	CHECK_STR(got, want);
	const char *pats2[] = {"*.txt\n!b.txt", "sub"};
	SHA256(d2, 32, total);
	sha_hex(total, want);
	CHECK(kiln_expr_hash_files_dir(dir, pats2, 2, got) == 0);
	CHECK_STR(got, want);
	const char *none[] = {"*.nothing"};
	CHECK(kiln_expr_hash_files_dir(dir, none, 1, got) == 0);
	CHECK_STR(got, "");
	const char *badopt[] = {"--frobnicate", "x"};
	CHECK(kiln_expr_hash_files_dir(dir, badopt, 2, got) == -EINVAL);
	c = (kiln_expr_ctx){.hash_files = kiln_expr_hash_files_dir, .hash_arg = dir};
	CHECK(kiln_expr_evaluate("hashFiles('nothing-here')", &c, &v) == 0);
	CHECK(json_is_string(v) && strcmp(json_string_value(v), "") == 0);
	json_decref(v);
	kiln_rm_rf(dir);
	free(f1);
	free(f2);
	free(f3);
	free(sub);
	free(dir);
}

static void test_check(void)
{
	const char *allowed[] = {"github", "env", NULL};
	CHECK(kiln_expr_check("github.ref == env.X", allowed) == 0);
	CHECK(kiln_expr_check("github.ref == secrets.X", allowed) == -EINVAL);
	CHECK(strstr(kiln_errmsg(),
	             "Unrecognized named-value: 'secrets'. Located at position 15") != NULL);
	CHECK(kiln_expr_check("anything.at.all", NULL) == 0);
	CHECK(kiln_expr_check("nofunc()", NULL) == -EINVAL);
	CHECK(strstr(kiln_errmsg(), "Unrecognized function") != NULL);
	CHECK(kiln_expr_check("echo ${{ github.sha }} ${{ matrix.os }}", allowed) == -EINVAL);
	CHECK(strstr(kiln_errmsg(), "'matrix'") != NULL);
	CHECK(kiln_expr_check("echo ${{ github.sha }} ${{ env.A }}", allowed) == 0);
	CHECK(kiln_expr_check("echo ${{ github.sha", allowed) == -EINVAL);
	/* function entries, as GitHub's allowed-context lists have them, restrict the status
	   functions and hashFiles */
	const char *job_if[] = {"github", "always(0,0)", "success(0,0)", NULL};
	CHECK(kiln_expr_check("always() && github.ref", job_if) == 0);
	CHECK(kiln_expr_check("hashFiles('x')", job_if) == -EINVAL);
	CHECK(kiln_expr_check("hashFiles('x')", allowed) == 0);
}

static void test_limits(void)
{
	kiln_expr *e = NULL;
	/* length: 21000 UTF-16 code units, as GitHub */
	kiln_buf b = {0};
	kiln_buf_puts(&b, "'");
	for (int i = 0; i < 20998; i++)
		kiln_buf_puts(&b, "x");
	kiln_buf_puts(&b, "'");
	CHECK(kiln_expr_parse(b.p, &e) == 0);
	kiln_expr_free(e);
	kiln_buf_puts(&b, " ");
	CHECK(kiln_expr_parse(b.p, &e) == -E2BIG);
	kiln_buf_free(&b);
	kiln_buf_puts(&b, "'");
	for (int i = 0; i < 10500; i++)
		kiln_buf_puts(&b, "😀"); /* two code units each */
	kiln_buf_puts(&b, "'");
	CHECK(kiln_expr_parse(b.p, &e) == -E2BIG);
	kiln_buf_free(&b);

	/* depth: 50 */
	for (int k = 48; k <= 51; k++) {
		kiln_buf_free(&b);
		for (int i = 0; i < k; i++)
			kiln_buf_puts(&b, "!");
		kiln_buf_puts(&b, "true");
		e = NULL;
		int r = kiln_expr_parse(b.p, &e);
		CHECK_INT(r == 0, k <= 49);
		if (r < 0)
			CHECK(strstr(kiln_errmsg(), "Exceeded max expression depth 50") != NULL);
		kiln_expr_free(e);
	}
	kiln_buf_free(&b);
	/* long flat chains are fine: they do not nest */
	for (int i = 0; i < 3000; i++)
		kiln_buf_puts(&b, "1 == ");
	kiln_buf_puts(&b, "1");
	json_t *v = NULL;
	CHECK(kiln_expr_evaluate(b.p, NULL, &v) == 0);
	json_decref(v);
	kiln_buf_free(&b);

	/* format: at most 255 arguments, as GitHub */
	kiln_buf_puts(&b, "format('{0}'");
	for (int i = 0; i < 254; i++)
		kiln_buf_puts(&b, ", 1");
	kiln_buf_puts(&b, ")");
	CHECK(kiln_expr_parse(b.p, &e) == 0);
	kiln_expr_free(e);
	b.len--;
	kiln_buf_puts(&b, ", 1)");
	CHECK(kiln_expr_parse(b.p, &e) < 0);
	CHECK(strstr(kiln_errmsg(), "Too many parameters") != NULL);
	kiln_buf_free(&b);

	/* results and inputs: 10 MiB */
	size_t big = KILN_EXPR_MAX_RESULT / 4 + 1;
	char *s = kiln_malloc(big + 1);
	memset(s, 'x', big);
	s[big] = '\0';
	json_t *ctx = json_pack("{s:{s:s,s:[s,s,s,s,s]}}", "env", "BIG", s, "L", s, s, s, s, s);
	kiln_expr_ctx c = {.contexts = ctx};
	CHECK(kiln_expr_evaluate("join(env.L, '')", &c, &v) == -E2BIG);
	CHECK(strstr(kiln_errmsg(), "join()") != NULL);
	CHECK(kiln_expr_evaluate("format('{0}{0}{0}{0}{0}', env.BIG)", &c, &v) == -E2BIG);
	CHECK(kiln_expr_evaluate("toJSON(env.L)", &c, &v) == -E2BIG);
	CHECK(kiln_expr_evaluate("format('{0}{0}{0}', env.BIG)", &c, &v) == 0);
	json_decref(v);
	json_decref(ctx);
	free(s);
	s = kiln_malloc(KILN_EXPR_MAX_JSON_INPUT + 2);
	memset(s, ' ', KILN_EXPR_MAX_JSON_INPUT + 1);
	s[0] = '1';
	s[KILN_EXPR_MAX_JSON_INPUT + 1] = '\0';
	ctx = json_pack("{s:{s:s}}", "env", "J", s);
	c.contexts = ctx;
	CHECK(kiln_expr_evaluate("fromJSON(env.J)", &c, &v) == -E2BIG);
	json_decref(ctx);
	free(s);
	/* memory: one evaluation builds at most KILN_EXPR_MAX_MEMORY bytes of strings */
	s = kiln_malloc((4u << 20) + 1);
	memset(s, 'y', 4u << 20);
	s[4u << 20] = '\0';
	ctx = json_pack("{s:{s:s}}", "env", "S", s);
	c.contexts = ctx;
	kiln_buf_puts(&b, "format('{0}{0}', env.S)");
	for (int i = 0; i < 9; i++)
		kiln_buf_puts(&b, " && format('{0}{0}', env.S)");
	CHECK(kiln_expr_evaluate(b.p, &c, &v) == -E2BIG);
	CHECK(strstr(kiln_errmsg(), "more than") != NULL);
	kiln_buf_free(&b);
	json_decref(ctx);
	free(s);
	/* ... and so do the lists that * builds */
	json_t *arr = json_array();
	for (int i = 0; i < (1 << 21); i++)
		json_array_append_new(arr, json_null());
	ctx = json_pack("{s:{s:o}}", "vars", "a", arr);
	c.contexts = ctx;
	CHECK(kiln_expr_evaluate("vars.a.*", &c, &v) == -E2BIG);
	CHECK(kiln_expr_evaluate("vars.a[2097151]", &c, &v) == 0 && json_is_null(v));
	json_decref(v);
	json_decref(ctx);
}

int main(void)
{
	json_error_t err;
	ctx_json =
	    json_loads("{\"github\": {\"ref\": \"refs/heads/main\", \"event\": {\"commits\": ["
	               "{\"id\": \"a\", \"author\": {\"name\": \"Mona\"}}, {\"id\": \"b\"}]}},"
	               " \"vars\": {\"n\": 7, \"list\": [1, \"Two\"]}}",
	               JSON_DECODE_INT_AS_REAL, &err);
	CHECK(ctx_json != NULL);
	test_parse_errors();
	test_values();
	test_strings();
	test_interpolate();
	test_condition();
	test_status();
	test_hash_files();
	test_check();
	test_limits();
	json_decref(ctx_json);
	return check_done();
}
