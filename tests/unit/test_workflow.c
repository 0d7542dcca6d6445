/*
 * test_workflow — the typed workflow model: what it captures (env layers,
 * defaults, runs-on forms, needs), every validation error with its exact
 * position, ordering by needs, limits, and real workflows from the seeds
 * (copies under tests/fixtures/workflows/).
 */
#include "common/util.h"
#include "common/workflow.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <string.h>

static int parse(const char *text, kiln_workflow **out)
{
	return kiln_workflow_parse("ci.yml", text, strlen(text), out);
}

/* Expects a failure with exactly this message. */
#define CHECK_FAIL(text, msg)                                                                      \
	do {                                                                                       \
		kiln_workflow *wf_ = NULL;                                                         \
		CHECK(parse((text), &wf_) < 0);                                                    \
		CHECK(wf_ == NULL);                                                                \
		CHECK_STR(kiln_errmsg(), (msg));                                                   \
		kiln_workflow_free(wf_);                                                           \
	} while (0)

static void test_model(void)
{
	const char *doc = "name: CI\n"                                      /* 1 */
	                  "run-name: Build ${{ github.ref }}\n"             /* 2 */
	                  "on:\n"                                           /* 3 */
	                  "  push:\n"                                       /* 4 */
	                  "    branches: [main]\n"                          /* 5 */
	                  "permissions: read-all\n"                         /* 6 */
	                  "env:\n"                                          /* 7 */
	                  "  LEVEL: workflow\n"                             /* 8 */
	                  "  NUM: 42\n"                                     /* 9 */
	                  "  FLAG: true\n"                                  /* 10 */
	                  "  EMPTY:\n"                                      /* 11 */
	                  "defaults:\n"                                     /* 12 */
	                  "  run:\n"                                        /* 13 */
	                  "    shell: bash\n"                               /* 14 */
	                  "    working-directory: src\n"                    /* 15 */
	                  "jobs:\n"                                         /* 16 */
	                  "  build:\n"                                      /* 17 */
	                  "    name: Build it\n"                            /* 18 */
	                  "    runs-on: [self-hosted, linux]\n"             /* 19 */
	                  "    timeout-minutes: 30\n"                       /* 20 */
	                  "    if: github.event_name == 'push'\n"           /* 21 */
	                  "    env:\n"                                      /* 22 */
	                  "      LEVEL: job\n"                              /* 23 */
	                  "    defaults:\n"                                 /* 24 */
	                  "      run:\n"                                    /* 25 */
	                  "        shell: sh\n"                             /* 26 */
	                  "    strategy:\n"                                 /* 27 */
	                  "      matrix: {os: [a, b]}\n"                    /* 28 */
	                  "    steps:\n"                                    /* 29 */
	                  "      - uses: actions/checkout@v4\n"             /* 30 */
	                  "        with:\n"                                 /* 31 */
	                  "          fetch-depth: 0\n"                      /* 32 */
	                  "      - id: make\n"                              /* 33 */
	                  "        name: Make\n"                            /* 34 */
	                  "        run: |\n"                                /* 35 */
	                  "          make -j\n"                             /* 36 */
	                  "        env:\n"                                  /* 37 */
	                  "          LEVEL: step\n"                         /* 38 */
	                  "        shell: python\n"                         /* 39 */
	                  "        working-directory: sub\n"                /* 40 */
	                  "        if: ${{ success() }}\n"                  /* 41 */
	                  "        continue-on-error: true\n"               /* 42 */
	                  "        timeout-minutes: 1.5\n"                  /* 43 */
	                  "  test:\n"                                       /* 44 */
	                  "    runs-on: ubuntu-latest\n"                    /* 45 */
	                  "    needs: build\n"                              /* 46 */
	                  "    timeout-minutes: ${{ inputs.t }}\n"          /* 47 */
	                  "    steps: [{run: make check}]\n"                /* 48 */
	                  "  deploy:\n"                                     /* 49 */
	                  "    runs-on: {group: prod, labels: deployer}\n"  /* 50 */
	                  "    needs: [test, build]\n"                      /* 51 */
	                  "    environment: production\n"                   /* 52 */
	                  "    continue-on-error: ${{ inputs.soft }}\n"     /* 53 */
	                  "    steps:\n"                                    /* 54 */
	                  "      - run: ./deploy\n"                         /* 55 */
	                  "  call:\n"                                       /* 56 */
	                  "    uses: org/repo/.github/workflows/x.yml@v1\n" /* 57 */
	                  "    with: {a: 1}\n"                              /* 58 */
	                  "    secrets: inherit\n";                         /* 59 */
	_cleanup_(kiln_workflow_freep) kiln_workflow *wf = NULL;
	int r = parse(doc, &wf);
	CHECK_INT(r, 0);
	if (r < 0) {
		fprintf(stderr, "%s\n", kiln_errmsg());
		return;
	}
	CHECK_STR(wf->file, "ci.yml");
	CHECK_STR(wf->name, "CI");
	CHECK_STR(wf->run_name, "Build ${{ github.ref }}");
	CHECK(wf->on && wf->on->kind == KILN_YNODE_MAPPING && wf->on->line == 4);
	CHECK(wf->permissions && wf->permissions->kind == KILN_YNODE_SCALAR);
	CHECK(wf->concurrency == NULL);
	CHECK_INT(wf->env.n, 4);
	CHECK_STR(wf->env.v[0].key, "LEVEL");
	CHECK_STR(wf->env.v[0].value, "workflow");
	CHECK_STR(wf->env.v[1].key, "NUM");
	CHECK_STR(wf->env.v[1].value, "42");
	CHECK_STR(wf->env.v[2].value, "true");
	CHECK_STR(wf->env.v[3].key, "EMPTY");
	CHECK_STR(wf->env.v[3].value, "");
	CHECK_STR(kiln_env_get(&wf->env, "NUM"), "42");
	CHECK(kiln_env_get(&wf->env, "NOPE") == NULL);
	CHECK_STR(wf->defaults_shell, "bash");
	CHECK_STR(wf->defaults_working_directory, "src");
	CHECK_INT(wf->njobs, 4);

	const kiln_job *b = kiln_workflow_job(wf, "build");
	CHECK(b == &wf->jobs[0]);
	CHECK_STR(b->id, "build");
	CHECK_STR(b->name, "Build it");
	CHECK_INT(b->line, 17);
	CHECK_INT(b->col, 3);
	CHECK_INT(b->runs_on.n, 2);
	CHECK_STR(b->runs_on.v[0], "self-hosted");
	CHECK_STR(b->runs_on.v[1], "linux");
	CHECK(b->runs_on.v[2] == NULL);
	CHECK(b->timeout_minutes == 30);
	CHECK_STR(b->if_cond, "github.event_name == 'push'");
	CHECK_INT(b->env.n, 1);
	CHECK_STR(kiln_env_get(&b->env, "LEVEL"), "job");
	CHECK_STR(b->defaults_shell, "sh");
	CHECK(b->defaults_working_directory == NULL);
	CHECK(b->strategy && kiln_ynode_get(b->strategy, "matrix") != NULL);
	CHECK_INT(b->needs.n, 0);
	CHECK_INT(b->nsteps, 2);

	const kiln_step *s0 = &b->steps[0], *s1 = &b->steps[1];
	CHECK_STR(s0->uses, "actions/checkout@v4");
	CHECK(s0->run == NULL);
	CHECK_INT(s0->with.n, 1);
	CHECK_STR(s0->with.v[0].key, "fetch-depth");
	CHECK_STR(s0->with.v[0].value, "0");
	CHECK_INT(s0->line, 30);
	CHECK_INT(s0->col, 9);
	CHECK_STR(s1->id, "make");
	CHECK_STR(s1->name, "Make");
	CHECK_STR(s1->run, "make -j\n");
	CHECK_STR(kiln_env_get(&s1->env, "LEVEL"), "step");
	CHECK_STR(s1->shell, "python");
	CHECK_STR(s1->working_directory, "sub");
	CHECK_STR(s1->if_cond, "${{ success() }}");
	CHECK_STR(s1->continue_on_error, "true");
	CHECK(s1->timeout_minutes == 1.5);
	CHECK_INT(s1->line, 33);
	CHECK(s1->node && kiln_ynode_get(s1->node, "if")->line == 41);

	const kiln_job *t = kiln_workflow_job(wf, "test");
	CHECK_INT(t->needs.n, 1);
	CHECK_STR(t->needs.v[0], "build");
	CHECK_INT(t->needs_index[0], 0);
	CHECK(t->timeout_minutes == 0);
	CHECK_STR(t->timeout_minutes_expr, "${{ inputs.t }}");
	CHECK_STR(t->runs_on.v[0], "ubuntu-latest");
	CHECK_INT(t->nsteps, 1);
	CHECK_STR(t->steps[0].run, "make check");
	CHECK_INT(t->steps[0].line, 48);
	CHECK_INT(t->steps[0].col, 13);

	const kiln_job *d = kiln_workflow_job(wf, "deploy");
	CHECK_STR(d->runs_on_group, "prod");
	CHECK_INT(d->runs_on.n, 1);
	CHECK_STR(d->runs_on.v[0], "deployer");
	CHECK_INT(d->needs.n, 2);
	CHECK_INT(d->needs_index[0], 1);
	CHECK_INT(d->needs_index[1], 0);
	CHECK(d->environment && d->environment->kind == KILN_YNODE_SCALAR);
	CHECK_STR(d->continue_on_error, "${{ inputs.soft }}");

	const kiln_job *c = kiln_workflow_job(wf, "call");
	CHECK_STR(c->uses, "org/repo/.github/workflows/x.yml@v1");
	CHECK_INT(c->nsteps, 0);
	CHECK_INT(c->runs_on.n, 0);
	CHECK_STR(kiln_env_get(&c->with, "a"), "1");
	CHECK(c->secrets != NULL);

	CHECK(kiln_workflow_job(wf, "nope") == NULL);
	CHECK(kiln_workflow_job(NULL, "build") == NULL);

	size_t order[4];
	kiln_workflow_order(wf, order);
	CHECK_INT(order[0], 0); /* build */
	CHECK_INT(order[1], 1); /* test */
	CHECK_INT(order[2], 2); /* deploy */
	CHECK_INT(order[3], 3); /* call */
}

/* True when order[] has every job once and each job after all of its needs. */
static bool order_ok(const kiln_workflow *wf, const size_t *order)
{
	size_t *pos = kiln_calloc(wf->njobs, sizeof *pos);
	bool *seen = kiln_calloc(wf->njobs, sizeof *seen), ok = true;
	for (size_t i = 0; i < wf->njobs; i++) {
		if (order[i] >= wf->njobs || seen[order[i]])
			ok = false;
		else {
			seen[order[i]] = true;
			pos[order[i]] = i;
		}
	}
	for (size_t j = 0; ok && j < wf->njobs; j++)
		for (size_t k = 0; k < wf->jobs[j].needs.n; k++)
			if (pos[wf->jobs[j].needs_index[k]] >= pos[j])
				ok = false;
	free(pos);
	free(seen);
	return ok;
}

static void test_order(void)
{
	const char *doc =
	    "on: push\n"
	    "jobs:\n"
	    "  package: {runs-on: x, needs: [test, lint], steps: [run: p]}\n"
	    "  test: {runs-on: x, needs: build, steps: [run: t]}\n"
	    "  docs: {runs-on: x, steps: [run: d]}\n"
	    "  lint: {runs-on: x, steps: [run: l]}\n"
	    "  build: {runs-on: x, needs: [lint], steps: [run: b]}\n"
	    "  release: {runs-on: x, needs: [package, docs, build], steps: [run: r]}\n";
	_cleanup_(kiln_workflow_freep) kiln_workflow *wf = NULL;
	CHECK_INT(parse(doc, &wf), 0);
	if (!wf)
		return;
	size_t order[6];
	kiln_workflow_order(wf, order);
	CHECK(order_ok(wf, order));
	/* Depth-first in file order: lint, build, test, package, docs, release. */
	CHECK_INT(order[0], 3);
	CHECK_INT(order[1], 4);
	CHECK_INT(order[2], 1);
	CHECK_INT(order[3], 0);
	CHECK_INT(order[4], 2);
	CHECK_INT(order[5], 5);

	/* A long chain written backwards: no recursion, still ordered. */
	kiln_buf b = {0};
	kiln_buf_puts(&b, "jobs:\n");
	const int n = 3000;
	for (int i = n - 1; i >= 0; i--) {
		kiln_buf_printf(&b, "  j%d: {runs-on: x, steps: [run: x]", i);
		if (i > 0)
			kiln_buf_printf(&b, ", needs: j%d", i - 1);
		kiln_buf_puts(&b, "}\n");
	}
	kiln_workflow *big = NULL;
	CHECK_INT(parse(b.p, &big), 0);
	kiln_buf_free(&b);
	if (big) {
		size_t *o = kiln_calloc(big->njobs, sizeof *o);
		kiln_workflow_order(big, o);
		CHECK(order_ok(big, o));
		CHECK_STR(big->jobs[o[0]].id, "j0");
		CHECK_STR(big->jobs[o[n - 1]].id, "j2999");
		free(o);
	}
	kiln_workflow_free(big);
}

static void test_validation(void)
{
	/* Empty input and the top level. */
	CHECK_FAIL("", "ci.yml:1:1: empty workflow");
	CHECK_FAIL("# nothing here\n", "ci.yml:1:1: empty workflow");
	CHECK_FAIL("---\n", "ci.yml:1:1: empty workflow");
	CHECK_FAIL("- a\n- b\n", "ci.yml:1:1: a workflow must be a mapping, not a sequence");
	CHECK_FAIL("# hi\nname: x\non: push\n", "ci.yml:2:1: workflow has no 'jobs'");
	CHECK_FAIL("on: push\njobs:\n", "ci.yml:2:1: workflow has no jobs");
	CHECK_FAIL("on: push\njobs: {}\n", "ci.yml:2:1: workflow has no jobs");
	CHECK_FAIL("on: push\njobs: [a]\n", "ci.yml:2:7: 'jobs' must be a mapping, not a sequence");
	CHECK_FAIL("on: push\nenv: {A: 1}\nnmae: x\njobs: {}\n", "ci.yml:3:1: unknown key 'nmae'");

	/* Jobs. */
	CHECK_FAIL("jobs:\n  build:\n    runs-on: x\n", "ci.yml:2:3: job 'build' has no steps");
	CHECK_FAIL("jobs:\n  build:\n    runs-on: x\n    steps: []\n",
	           "ci.yml:4:5: job 'build' has no steps");
	CHECK_FAIL("jobs:\n  build:\n    steps: [run: x]\n",
	           "ci.yml:2:3: job 'build' has no 'runs-on'");
	CHECK_FAIL("jobs:\n  build:\n    runs-on: []\n    steps: [run: x]\n",
	           "ci.yml:3:5: job 'build' has an empty 'runs-on'");
	CHECK_FAIL("jobs:\n  build:\n    runs-on: x\n    step:\n      - run: x\n",
	           "ci.yml:4:5: unknown key 'step'");
	CHECK_FAIL("jobs:\n  build:\n", "ci.yml:2:3: job 'build' must be a mapping, not null");
	CHECK_FAIL("jobs:\n  1build:\n    runs-on: x\n    steps: [run: x]\n",
	           "ci.yml:2:3: invalid job id '1build': it must start with a letter or '_' and "
	           "contain only letters, digits, '-' and '_'");
	CHECK_FAIL("jobs:\n  a.b: {runs-on: x, steps: [run: x]}\n",
	           "ci.yml:2:3: invalid job id 'a.b': it must start with a letter or '_' and "
	           "contain only letters, digits, '-' and '_'");
	CHECK_FAIL("jobs:\n  c:\n    uses: ./.github/workflows/w.yml\n    steps: [run: x]\n",
	           "ci.yml:4:5: job 'c' cannot have both 'uses' and 'steps'");
	CHECK_FAIL("jobs:\n  b:\n    runs-on: x\n    timeout-minutes: soon\n    steps: [run: x]\n",
	           "ci.yml:4:22: 'timeout-minutes' must be a positive number of minutes (at most "
	           "525600) or an expression");
	CHECK_FAIL("jobs:\n  b:\n    runs-on: x\n    timeout-minutes: -5\n    steps: [run: x]\n",
	           "ci.yml:4:22: 'timeout-minutes' must be a positive number of minutes (at most "
	           "525600) or an expression");
	CHECK_FAIL("jobs:\n  b:\n    runs-on: {labels: x, pool: y}\n    steps: [run: x]\n",
	           "ci.yml:3:26: unknown key 'pool'");
	CHECK_FAIL("jobs:\n  b:\n    runs-on: x\n    env: [A]\n    steps: [run: x]\n",
	           "ci.yml:4:10: 'env' must be a mapping, not a sequence");
	CHECK_FAIL("jobs:\n  b:\n    runs-on: x\n    env: {A: {B: 1}}\n    steps: [run: x]\n",
	           "ci.yml:4:14: env 'A' must be a string, not a mapping");
	CHECK_FAIL("jobs:\n  b:\n    runs-on: x\n    env: {A=B: 1}\n    steps: [run: x]\n",
	           "ci.yml:4:11: invalid environment variable name 'A=B'");
	CHECK_FAIL("jobs:\n  b:\n    runs-on: x\n    services: [pg]\n    steps: [run: x]\n",
	           "ci.yml:4:15: 'services' must be a mapping, not a sequence");
	CHECK_FAIL(
	    "jobs:\n  b:\n    runs-on: x\n    continue-on-error: maybe\n    steps: [run: x]\n",
	    "ci.yml:4:24: 'continue-on-error' must be true, false or an expression, not this "
	    "string");

	/* Steps. */
	CHECK_FAIL("jobs:\n"
	           "  build:\n"
	           "    runs-on: x\n"
	           "    steps:\n"
	           "      - run: make\n"
	           "      - name: both\n"
	           "        run: make\n"
	           "        uses: actions/checkout@v4\n",
	           "ci.yml:6:9: a step cannot have both 'run' and 'uses'");
	CHECK_FAIL("jobs:\n"
	           "  build:\n"
	           "    runs-on: x\n"
	           "    steps:\n"
	           "      - name: neither\n",
	           "ci.yml:5:9: a step needs either 'run' or 'uses'");
	CHECK_FAIL(
	    "jobs:\n  build:\n    runs-on: x\n    steps:\n      - run: x\n        sehll: bash\n",
	    "ci.yml:6:9: unknown key 'sehll'");
	CHECK_FAIL("jobs:\n  build:\n    runs-on: x\n    steps:\n      - make\n",
	           "ci.yml:5:9: a step must be a mapping, not a string");
	CHECK_FAIL("jobs:\n  build:\n    runs-on: x\n    steps:\n      - run: [a]\n",
	           "ci.yml:5:14: 'run' must be a string, not a sequence");
	CHECK_FAIL("jobs:\n  build:\n    runs-on: x\n    steps:\n      - {id: a, run: x}\n"
	           "      - {id: b, run: x}\n      - {id: a, run: x}\n",
	           "ci.yml:7:14: duplicate step id 'a' (first at 5:9)");
	CHECK_FAIL("jobs:\n  build:\n    runs-on: x\n    steps:\n      - {id: 'my step', run: x}\n",
	           "ci.yml:5:14: invalid step id 'my step': it must start with a letter or '_' and "
	           "contain only letters, digits, '-' and '_'");
	CHECK_FAIL(
	    "jobs:\n  b:\n    runs-on: x\n    steps:\n      - run: x\n        with: {a: [1]}\n",
	    "ci.yml:6:19: with 'a' must be a string, not a sequence");

	/* needs. */
	CHECK_FAIL("jobs:\n"
	           "  a: {runs-on: x, steps: [run: x]}\n"
	           "  b:\n"
	           "    runs-on: x\n"
	           "    needs: [a, x]\n"
	           "    steps: [run: x]\n",
	           "ci.yml:5:16: job 'b' needs unknown job 'x'");
	CHECK_FAIL("jobs:\n"
	           "  a: {runs-on: x, steps: [run: x]}\n"
	           "  b:\n"
	           "    runs-on: x\n"
	           "    needs: x\n"
	           "    steps: [run: x]\n",
	           "ci.yml:5:12: job 'b' needs unknown job 'x'");
	CHECK_FAIL("jobs:\n"
	           "  a: {runs-on: x, needs: b, steps: [run: x]}\n"
	           "  b: {runs-on: x, needs: a, steps: [run: x]}\n",
	           "ci.yml:2:3: needs cycle: a -> b -> a");
	CHECK_FAIL("jobs:\n"
	           "  ok: {runs-on: x, steps: [run: x]}\n"
	           "  self: {runs-on: x, needs: [ok, self], steps: [run: x]}\n",
	           "ci.yml:3:3: needs cycle: self -> self");
	/* Found from 'entry', reported from the cycle's first job in the file. */
	CHECK_FAIL("jobs:\n"
	           "  entry: {runs-on: x, needs: c, steps: [run: x]}\n"
	           "  a: {runs-on: x, needs: b, steps: [run: x]}\n"
	           "  b: {runs-on: x, needs: c, steps: [run: x]}\n"
	           "  c: {runs-on: x, needs: a, steps: [run: x]}\n",
	           "ci.yml:3:3: needs cycle: a -> b -> c -> a");
	CHECK_FAIL("jobs:\n  a: {runs-on: x, needs: {b: 1}, steps: [run: x]}\n",
	           "ci.yml:2:26: 'needs' must be a string or a sequence of strings, not a mapping");

	/* Errors from the YAML layer keep their shape. */
	CHECK_FAIL(
	    "jobs:\n  a: {runs-on: x, steps: [run: x]}\n  a: {runs-on: y, steps: [run: y]}\n",
	    "ci.yml:3:3: duplicate key 'a' (first at 2:3)");
	CHECK_FAIL(
	    "jobs:\n  a: {runs-on: x, steps: [run: x]\n",
	    "ci.yml:3:1: did not find expected ',' or '}' (while parsing a flow mapping at 2:6)");
}

static void test_long_cycle(void)
{
	kiln_buf b = {0};
	kiln_buf_puts(&b, "jobs:\n");
	for (int i = 0; i < 50; i++)
		kiln_buf_printf(&b, "  j%d: {runs-on: x, needs: j%d, steps: [run: x]}\n", i,
		                (i + 1) % 50);
	kiln_workflow *wf = NULL;
	CHECK(parse(b.p, &wf) < 0);
	CHECK_STR(kiln_errmsg(), "ci.yml:2:3: needs cycle: j0 -> j1 -> j2 -> j3 -> j4 -> j5 -> j6 "
	                         "-> j7 -> j8 -> ... (41 more) -> j0");
	kiln_buf_free(&b);
}

static void test_on_quirk(void)
{
	kiln_workflow *wf = NULL;
	/* A YAML 1.1 tool turns `on:` into `true:`; both mean the trigger. */
	CHECK_INT(parse("true: push\njobs: {a: {runs-on: x, steps: [run: x]}}\n", &wf), 0);
	CHECK(wf && wf->on && strcmp(wf->on->str, "push") == 0);
	kiln_workflow_free(wf);
	wf = NULL;
	CHECK_INT(
	    parse("\"on\": [push, pull_request]\njobs: {a: {runs-on: x, steps: [run: x]}}\n", &wf),
	    0);
	CHECK(wf && wf->on && wf->on->kind == KILN_YNODE_SEQUENCE);
	kiln_workflow_free(wf);
	CHECK_FAIL("on: push\ntrue: push\njobs: {a: {runs-on: x, steps: [run: x]}}\n",
	           "ci.yml:2:1: duplicate key 'on' (first at 1:1)");
	CHECK_FAIL("'true': push\njobs: {a: {runs-on: x, steps: [run: x]}}\n",
	           "ci.yml:1:1: unknown key 'true'");
}

static void test_anchors_and_limits(void)
{
	/* Anchors work inside workflows (GitHub supports them too). */
	const char *doc = "on: push\n"
	                  "jobs:\n"
	                  "  a:\n"
	                  "    runs-on: x\n"
	                  "    env: &common {A: 1, B: 2}\n"
	                  "    steps: &steps\n"
	                  "      - run: make\n"
	                  "  b:\n"
	                  "    runs-on: x\n"
	                  "    env: *common\n"
	                  "    steps: *steps\n";
	_cleanup_(kiln_workflow_freep) kiln_workflow *wf = NULL;
	CHECK_INT(parse(doc, &wf), 0);
	if (wf) {
		CHECK_STR(kiln_env_get(&wf->jobs[1].env, "B"), "2");
		CHECK_STR(wf->jobs[1].steps[0].run, "make");
		CHECK_INT(wf->jobs[1].steps[0].line, 7);
	}

	/* An alias bomb is refused before the model is built. */
	const char *bomb = "on: push\n"
	                   "x: &a [l,l,l,l,l,l,l,l,l,l]\n"
	                   "y: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	                   "z: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
	                   "w: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
	                   "v: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
	                   "u: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
	                   "jobs: {a: {runs-on: x, steps: [run: x]}}\n";
	kiln_workflow *w2 = NULL;
	CHECK_INT(parse(bomb, &w2), -E2BIG);
	CHECK(strstr(kiln_errmsg(), "(counting alias expansions)") != NULL);
	CHECK(strncmp(kiln_errmsg(), "ci.yml:6:", 9) == 0);

	/* Size limit, default and explicit. */
	size_t big = 1024 * 1024 + 1;
	char *text = kiln_malloc(big + 1);
	memset(text, '#', big);
	text[big] = '\0';
	CHECK_INT(kiln_workflow_parse("big.yml", text, big, &w2), -E2BIG);
	CHECK_STR(kiln_errmsg(),
	          "big.yml:1:1: document is 1048577 bytes, over the limit of 1048576");
	free(text);
	kiln_yaml_limits lim = {.max_depth = 4};
	CHECK_INT(kiln_workflow_parse_limits("d.yml", doc, strlen(doc), &lim, &w2), -E2BIG);
	CHECK_STR(kiln_errmsg(), "d.yml:7:9: nesting deeper than 4 levels");
	CHECK(w2 == NULL);
}

static kiln_workflow *load_fixture(const char *name, bool expect_error)
{
	const char *src = getenv("KILN_SRC");
	_cleanup_free_ char *path =
	    kiln_asprintf("%s/tests/fixtures/workflows/%s", src ? src : ".", name);
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	if (kiln_read_file(path, KILN_YAML_MAX_BYTES, &text, &len) < 0) {
		fprintf(stderr, "cannot read %s (set KILN_SRC): %s\n", path, kiln_errmsg());
		return NULL;
	}
	kiln_workflow *wf = NULL;
	if (kiln_workflow_parse(name, text, len, &wf) < 0 && !expect_error)
		fprintf(stderr, "%s\n", kiln_errmsg());
	return wf;
}

static void test_seeds(void)
{
	_cleanup_(kiln_workflow_freep) kiln_workflow *ci = load_fixture("proxy-ci.yml", false);
	CHECK(ci != NULL);
	if (ci) {
		CHECK_STR(ci->name, "CI Pipeline");
		CHECK_INT(ci->njobs, 8);
		CHECK_STR(kiln_env_get(&ci->env, "PYTHON_VERSION"), "3.11");
		const kiln_job *bt = kiln_workflow_job(ci, "backend-test");
		CHECK(bt && bt->services && kiln_ynode_get(bt->services, "postgres"));
		const kiln_job *fl = kiln_workflow_job(ci, "frontend-lint");
		CHECK(fl && fl->defaults_working_directory &&
		      strcmp(fl->defaults_working_directory, "./frontend") == 0);
		const kiln_job *bb = kiln_workflow_job(ci, "build-backend");
		CHECK(bb && bb->needs.n == 4);
		CHECK(bb && bb->if_cond && strcmp(bb->if_cond, "github.event_name == 'push'") == 0);
		size_t order[8];
		kiln_workflow_order(ci, order);
		CHECK(order_ok(ci, order));
		if (bt) {
			const kiln_step *s = &bt->steps[4];
			CHECK_STR(s->name, "Run tests with coverage");
			CHECK_STR(kiln_env_get(&s->env, "TESTING"), "true");
		}
	}
	_cleanup_(kiln_workflow_freep) kiln_workflow *build =
	    load_fixture("taskman-build.yml", false);
	CHECK(build != NULL);
	if (build) {
		const kiln_job *j = &build->jobs[0];
		CHECK_STR(j->id, "build-and-push");
		CHECK(j->permissions && j->strategy && j->outputs);
		CHECK_INT(j->nsteps, 8);
		CHECK_STR(j->steps[3].id, "login-ecr");
		CHECK_STR(kiln_env_get(&j->steps[5].with, "provenance"), "false");
	}
	_cleanup_(kiln_workflow_freep) kiln_workflow *prod =
	    load_fixture("taskman-deploy-production.yml", false);
	CHECK(prod != NULL);
	if (prod) {
		CHECK_INT(prod->njobs, 2);
		CHECK(prod->jobs[1].environment &&
		      prod->jobs[1].environment->kind == KILN_YNODE_MAPPING);
		CHECK_STR(prod->jobs[1].steps[2].if_cond, "${{ !inputs.skip-migrations }}");
		CHECK(prod->on && kiln_ynode_get(prod->on, "workflow_dispatch"));
	}
	/* This seed really is broken: it needs a job from another workflow file. */
	kiln_workflow *stg = load_fixture("taskman-deploy-staging-dangling-needs.yml", true);
	CHECK(stg == NULL);
	CHECK_STR(kiln_errmsg(), "taskman-deploy-staging-dangling-needs.yml:17:13: job "
	                         "'deploy-staging' needs unknown job 'build-and-push'");
}

int main(void)
{
	test_model();
	test_order();
	test_validation();
	test_long_cycle();
	test_on_quirk();
	test_anchors_and_limits();
	test_seeds();
	kiln_workflow_free(NULL);
	return check_done();
}
