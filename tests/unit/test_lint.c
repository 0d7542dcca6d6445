/*
 * test_lint — kiln_lint_file: every problem of a file, in the order of the
 * file, once each (aliases repeat nodes), with the strict rules lint adds,
 * and nothing at all for a clean file.
 */
#include "common/lint.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <string.h>

static int lint(const char *text, kiln_strv *out)
{
	return kiln_lint_file("w.yml", text, strlen(text), out);
}

static void test_clean(void)
{
	kiln_strv p = {0};
	CHECK_INT(lint("on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: make]\n", &p), 0);
	CHECK_INT(p.n, 0);
	kiln_strv_free(&p);
}

static void test_sorted_and_complete(void)
{
	const char *doc = "on:\n"                         /* 1 */
	                  "  push:\n"                     /* 2 */
	                  "    branches: main\n"          /* 3 */
	                  "    branches-ignore: dev\n"    /* 4 */
	                  "jobs:\n"                       /* 5 */
	                  "  build:\n"                    /* 6 */
	                  "    runs_on: x\n"              /* 7 */
	                  "    steps:\n"                  /* 8 */
	                  "      - run: echo ${{ }}\n"    /* 9 */
	                  "        uses: a/b@v1\n"        /* 10 */
	                  "  test:\n"                     /* 11 */
	                  "    needs: [build, test]\n"    /* 12 */
	                  "    runs-on: x\n"              /* 13 */
	                  "    steps:\n"                  /* 14 */
	                  "      - run: ${{ nope.x }}\n"; /* 15 */
	kiln_strv p = {0};
	kiln_strv_push(&p, "kept");
	int n = lint(doc, &p);
	const char *want[] = {
	    "w.yml:4:5: event 'push' cannot have both 'branches' and 'branches-ignore'",
	    "w.yml:6:3: job 'build' has no 'runs-on'", /* found after its keys, sorted first */
	    "w.yml:7:5: unknown key 'runs_on'",
	    "w.yml:9:9: a step cannot have both 'run' and 'uses'",
	    "w.yml:9:14: 'run': an expression was expected inside '${{ }}'",
	    "w.yml:11:3: needs cycle: test -> test",
	    ("w.yml:15:14: 'run': Unrecognized named-value: 'nope'. Located at position 1 within "
	     "expression: nope.x"),
	};
	CHECK_INT(n, KILN_ARRAY_SIZE(want));
	CHECK_INT(p.n, KILN_ARRAY_SIZE(want) + 1);
	CHECK_STR(p.v[0], "kept"); /* appended, never cleared */
	for (size_t i = 1; i < p.n && i <= KILN_ARRAY_SIZE(want); i++)
		CHECK_STR(p.v[i], want[i - 1]);
	kiln_strv_free(&p);
}

static void test_aliases_once(void)
{
	/* The shared steps are checked once per job, but reported once. */
	const char *doc = "on: push\n"
	                  "jobs:\n"
	                  "  a:\n"
	                  "    runs-on: x\n"
	                  "    steps: &s\n"
	                  "      - run: x\n"
	                  "        sehll: bash\n"
	                  "  b:\n"
	                  "    runs-on: x\n"
	                  "    steps: *s\n";
	kiln_strv p = {0};
	CHECK_INT(lint(doc, &p), 1);
	if (p.n == 1)
		CHECK_STR(p.v[0], "w.yml:7:9: unknown key 'sehll'");
	kiln_strv_free(&p);
}

static void test_yaml_and_empty(void)
{
	kiln_strv p = {0};
	CHECK_INT(lint("on: push\njobs: [\n", &p), 1);
	CHECK(p.n == 1 && strncmp(p.v[0], "w.yml:3:1: ", 11) == 0);
	kiln_strv_free(&p);
	CHECK_INT(lint("", &p), 1);
	CHECK(p.n == 1 && strcmp(p.v[0], "w.yml:1:1: empty workflow") == 0);
	kiln_strv_free(&p);
	CHECK_INT(kiln_lint_file(NULL, "x", 1, &p), 1);
	CHECK(p.n == 1 &&
	      strcmp(p.v[0], "<input>:1:1: a workflow must be a mapping, not a string") == 0);
	kiln_strv_free(&p);
}

static void test_strict(void)
{
	/* GitHub lets `matrix` through anywhere; lint knows it is empty outside a matrix job. */
	const char *doc = "on: push\n"
	                  "jobs:\n"
	                  "  m:\n"
	                  "    runs-on: ${{ matrix.os }}\n"
	                  "    strategy: {matrix: {os: [a]}}\n"
	                  "    steps: [run: 'echo ${{ matrix.os }}']\n"
	                  "  plain:\n"
	                  "    runs-on: x\n"
	                  "    steps: [run: 'echo ${{ matrix.os }}']\n";
	kiln_strv p = {0};
	CHECK_INT(lint(doc, &p), 1);
	if (p.n == 1)
		CHECK_STR(p.v[0],
		          "w.yml:9:18: 'run': Unrecognized named-value: 'matrix'. Located at "
		          "position 1 within expression: matrix.os");
	kiln_strv_free(&p);
}

int main(void)
{
	test_clean();
	test_sorted_and_complete();
	test_aliases_once();
	test_yaml_and_empty();
	test_strict();
	return check_done();
}
