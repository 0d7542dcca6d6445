/*
 * fuzz_expr — GitHub Actions expressions from untrusted bytes.
 *
 * The input is an expression's text (without `${{ }}`). It is parsed with
 * kiln_expr_parse_n() (the bytes as they are, NULs included) and with
 * kiln_expr_parse() (cut at the first NUL), and linted with kiln_expr_check()
 * (any name, and the names allowed at one of the workflow places). Then it
 * is evaluated once, against a fixed rich context (the contexts of the
 * oracle test, tests/integration/test_expr_oracle.py, plus a few odd names)
 * with a status and a fake hashFiles callback chosen from the input's
 * length: for an even length, directly (the value then goes through every
 * string form: JSON, pretty JSON, the coerced string, truthiness) and as a
 * template with kiln_expr_interpolate(); for an odd length, as an `if:` with
 * kiln_expr_condition().
 *
 * Besides memory errors, leaks and UB (the sanitizers), it aborts on broken
 * contracts: parse and parse_n disagreeing on text without NULs, a check
 * that refuses what the parser accepted with any name allowed, a result over
 * the documented size limits.
 *
 * Built with libFuzzer (tests/fuzz/CMakeLists.txt) or with tests/fuzz/replay.c
 * as main() for the regression run in `make test`.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/expr.h"
#include "common/util.h"
#include "common/workflow.h"

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_expr: %s:%d: broken contract: %s\n", __FILE__,       \
			        __LINE__, #cond);                                                  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The oracle test's RICH contexts, with "Ctx" and "x-y" added (odd keys, deeper nesting). */
static const char context_json[] =
	"{\"github\":{\"ref\":\"refs/heads/main\",\"ref_name\":\"main\",\"event_name\":\"push\""
	",\"sha\":\"0123abcd\",\"run_number\":42,\"repository\":\"Octo-Org/Hello-World\",\"acto"
	"r\":\"monalisa\",\"event\":{\"commits\":[{\"id\":\"a1\",\"message\":\"fix: Bug\",\"aut"
	"hor\":{\"name\":\"Mona\",\"email\":\"m@x.io\"},\"added\":[\"a.txt\",\"B.md\"]},{\"id\""
	":\"b2\",\"message\":\"\",\"author\":{\"name\":\"Hubot\"},\"added\":[]},{\"id\":\"c3\","
	"\"message\":\"[skip ci] docs\",\"author\":{\"name\":\"mona\"},\"added\":[\"docs/x.md\""
	"]}],\"head_commit\":null,\"forced\":false,\"pull_request\":{\"labels\":[{\"name\":\"bu"
	"g\"},{\"name\":\"CI\"},{\"name\":\"Bug\"}],\"number\":7,\"draft\":true,\"title\":\"Add"
	" \\u00df support\"},\"inputs\":{}},\"empty_obj\":{},\"empty_arr\":[]},\"env\":{\"CI\":"
	"\"true\",\"NUM\":\"007\",\"EXP\":\"1e3\",\"SPACE\":\" 12 \",\"HEX\":\"0x10\",\"EMPTY\""
	":\"\",\"ZERO\":\"0\",\"NEG\":\"-1.5\",\"Mixed\":\"MiXeD\",\"mixed\":\"other\",\"uni\":"
	"\"stra\\u00dfe\",\"Greek\":\"\\u03a3\\u038a\\u03a3\\u03a5\\u03a6\\u039f\\u03a3\",\"TUR"
	"K\":\"\\u0130stanbul\",\"dotless\":\"\\u0131\",\"nul\":\"a\\u0000b\",\"inf\":\"Infinit"
	"y\",\"nan\":\"NaN\",\"bin\":\"0b101\",\"oct\":\"0o17\",\"ws\":\"\\u00a0\\t7\\u2028\",\""
	"dot\":\".5\",\"exp2\":\"1.e2\",\"neghex\":\"-0x10\",\"under\":\"1_000\",\"big\":\"1234"
	"56789012345678901234567890\",\"emoji\":\"\\ud83d\\ude00 ok\",\"json\":\"{\\\"a\\\": [1"
	", 2, {\\\"b\\\": null}], \\\"A\\\": 3}\"},\"vars\":{\"flag\":true,\"off\":false,\"none"
	"\":null,\"n\":0,\"f\":0.1,\"big\":1e+21,\"tiny\":5e-07,\"neg0\":-0.0,\"maxint\":900719"
	"9254740993,\"third\":0.3333333333333333,\"half\":0.5,\"pi\":3.141592653589793,\"arr\":"
	"[1,\"1\",true,null,[],{},\"ONE\",0.1],\"nums\":[3,1,2],\"strs\":[\"a\",\"B\",\"c\"],\""
	"obj\":{\"a\":1,\"A\":2,\"b\":{\"c\":[1,2,3]}},\"2\":\"two\",\"10\":\"ten\",\"1\":\"one"
	"\",\"01\":\"zero-one\",\"odd\":{\"constructor\":\"c\",\"__proto__\":\"p\",\"toString\""
	":\"t\",\"valueOf\":\"v\",\"Constructor\":\"C\"},\"nested\":[[1,[2,[3]]],{\"x\":[{\"y\""
	":1},{\"y\":2},{\"z\":3}]}]},\"matrix\":{\"os\":\"ubuntu-latest\",\"node\":[18,20],\"in"
	"clude\":[{\"os\":\"windows\",\"x\":1},{\"os\":\"macos\"}]},\"steps\":{\"build\":{\"out"
	"puts\":{\"result\":\"success\",\"json\":\"{\\\"a\\\": [1, 2, {\\\"b\\\": null}]}\",\"n"
	"um\":\"3.0\"},\"conclusion\":\"success\",\"outcome\":\"failure\"},\"test\":{\"outputs\""
	":{},\"conclusion\":\"skipped\",\"outcome\":\"skipped\"}},\"needs\":{\"a\":{\"result\":"
	"\"success\",\"outputs\":{\"x\":\"1\"}},\"b\":{\"result\":\"failure\",\"outputs\":{\"x\""
	":\"2\"}}},\"inputs\":{\"name\":\"World\",\"count\":3,\"debug\":false,\"list\":\"[\\\"a"
	"\\\",\\\"b\\\"]\",\"weird\":\"{0}}{{\",\"quote\":\"it's\",\"fmt\":\"{0}-{1}\"},\"job\""
	":{\"status\":\"success\",\"container\":{\"id\":\"\"},\"services\":{}},\"runner\":{\"os"
	"\":\"Linux\",\"arch\":\"X64\",\"temp\":\"/tmp\"},\"secrets\":{\"GITHUB_TOKEN\":\"***\""
	",\"token\":\"abc\"},\"strategy\":{\"fail-fast\":true,\"job-index\":0,\"job-total\":2,\""
	"max-parallel\":2},\"jobs\":{\"build\":{\"result\":\"success\",\"outputs\":{}}},\"Ctx\""
	":{\"a\":[{\"b\":[{\"c\":\"deep\"}]}],\"\\u03c3\":\"sigma\",\"\":\"empty-key\",\"k-1\":"
	"1,\"\\ud83d\\ude00\":\"emoji\"},\"x-y\":[1,[2,[3,[4,[5]]]]]}";

static json_t *contexts;

/* A hashFiles that touches no file: the SHA-256 of the patterns; refuses a pattern "!". */
static int fake_hash_files(void *arg, const char *const *patterns, size_t n, char out[65])
{
	(void)arg;
	kiln_buf b = {0};
	for (size_t i = 0; i < n; i++) {
		if (strcmp(patterns[i], "!") == 0) {
			kiln_buf_free(&b);
			return kiln_err(EINVAL, "hashFiles: bad pattern");
		}
		kiln_buf_append(&b, patterns[i], strlen(patterns[i]) + 1);
	}
	kiln_sha256_hex(b.p ? b.p : "", b.len, out);
	kiln_buf_free(&b);
	return 0;
}

static void setup(void)
{
	json_error_t jerr;
	contexts = json_loads(context_json, JSON_ALLOW_NUL, &jerr);
	if (!contexts) {
		fprintf(stderr, "fuzz_expr: bad context JSON: %s at %d\n", jerr.text, jerr.position);
		abort();
	}
}

/* Every string form of a value. */
static void use_value(const json_t *v, volatile size_t *sink)
{
	char *s = kiln_expr_to_json(v, false);
	if (s) {
		REQUIRE(strlen(s) <= KILN_EXPR_MAX_RESULT);
		*sink += strlen(s);
	}
	free(s);
	if (json_is_array(v) || json_is_object(v)) { /* pretty only differs for these */
		s = kiln_expr_to_json(v, true);
		if (s)
			*sink += strlen(s);
		free(s);
	}
	s = kiln_expr_to_string(v);
	REQUIRE(s);
	*sink += strlen(s);
	free(s);
	*sink += kiln_expr_truthy(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!contexts)
		setup();
	volatile size_t sink = 0;
	const char *text = (const char *)data;
	kiln_expr_ctx ctx = {
	    .contexts = contexts,
	    .status = (int)(size % 3),
	    .hash_files = size % 5 ? fake_hash_files : NULL,
	};

	/* One evaluation per input, through one of the entry points (by the length's parity):
	 * an expression may legitimately build tens of MiB within KILN_EXPR_MAX_MEMORY, which
	 * takes seconds under the sanitizers; doing it twice would run into -timeout. */
	bool direct = size % 2 == 0;

	/* The bytes as they are. */
	kiln_expr *e = NULL;
	int r = kiln_expr_parse_n(text, size, &e);
	REQUIRE((r == 0) == (e != NULL));
	if (e && direct) {
		/* (kiln_expr_eval is this call without the string; one evaluation is enough.) */
		json_t *v = NULL;
		char *str = NULL;
		size_t len = 0;
		int r1 = kiln_expr_eval_ex(e, &ctx, &v, &str, &len);
		REQUIRE((r1 == 0) == (v != NULL) && (r1 == 0) == (str != NULL));
		if (r1 == 0) {
			REQUIRE(str[len] == '\0');
			use_value(v, &sink);
		}
		json_decref(v);
		free(str);
	}
	kiln_expr_free(e);

	/* As a C string, cut at the first NUL. */
	char *cs = kiln_malloc(size + 1);
	memcpy(cs, data, size);
	cs[size] = '\0';
	kiln_expr *e2 = NULL;
	int r3 = kiln_expr_parse(cs, &e2);
	if (!memchr(data, '\0', size))
		REQUIRE((r3 == 0) == (r == 0));
	kiln_expr_free(e2);

	/* Lint, with any name and with the names of one place. */
	if (r3 == 0 && !strstr(cs, "${{"))
		REQUIRE(kiln_expr_check(cs, NULL) == 0);
	else
		kiln_expr_check(cs, NULL);
	kiln_expr_place place = (kiln_expr_place)(size % KILN_PLACE_COUNT_);
	const char *const *allowed = kiln_workflow_expr_allowed(place);
	REQUIRE(allowed);
	kiln_expr_check(cs, allowed);

	/* As a template (text without ${{ }} evaluates nothing), or as an `if:`. */
	if (direct) {
		char *out = NULL;
		if (kiln_expr_interpolate(cs, &ctx, &out) == 0) {
			REQUIRE(out);
			sink += strlen(out);
		} else {
			REQUIRE(!out);
		}
		free(out);
	} else {
		bool yes;
		sink += kiln_expr_condition(cs, &ctx, &yes);
	}

	free(cs);
	(void)sink;
	return 0;
}
