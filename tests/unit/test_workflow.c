/*
 * test_workflow — the typed workflow model: what it captures (env layers,
 * defaults, runs-on forms, needs, events and their filters, schedules,
 * dispatch and call inputs, permissions, concurrency, containers, services,
 * environments, strategies, reusable calls), every validation error with its
 * exact position, all problems of a file at once, the contexts allowed in
 * expressions at each place, ordering by needs, limits, and real workflows
 * from the seeds (copies under tests/fixtures/workflows/).
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
	kiln_buf_puts(&b, "on: push\njobs:\n");
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

/* A valid job to append to documents under test. */
#define JOB "jobs:\n  a:\n    runs-on: x\n    steps: [run: x]\n"

static void test_typed_model(void)
{
	const char *doc =
	    "name: Typed\n"                                                           /* 1 */
	    "description: every key\n"                                                /* 2 */
	    "on:\n"                                                                   /* 3 */
	    "  push:\n"                                                               /* 4 */
	    "    branches: [main, 'release/**']\n"                                    /* 5 */
	    "    tags-ignore: nightly\n"                                              /* 6 */
	    "    paths: ['src/**']\n"                                                 /* 7 */
	    "  pull_request:\n"                                                       /* 8 */
	    "    types: [opened, synchronize]\n"                                      /* 9 */
	    "  schedule:\n"                                                           /* 10 */
	    "    - cron: '*/30 8-18 * * MON-FRI'\n"                                   /* 11 */
	    "    - cron: '0 0 1 * *'\n"                                               /* 12 */
	    "      timezone: Europe/Paris\n"                                          /* 13 */
	    "  workflow_dispatch:\n"                                                  /* 14 */
	    "    inputs:\n"                                                           /* 15 */
	    "      level:\n"                                                          /* 16 */
	    "        description: Log level\n"                                        /* 17 */
	    "        type: choice\n"                                                  /* 18 */
	    "        options: [info, debug]\n"                                        /* 19 */
	    "        default: info\n"                                                 /* 20 */
	    "        required: true\n"                                                /* 21 */
	    "      dry: {type: boolean, default: false}\n"                            /* 22 */
	    "      plain: {}\n"                                                       /* 23 */
	    "  workflow_run:\n"                                                       /* 24 */
	    "    workflows: [CI]\n"                                                   /* 25 */
	    "    types: completed\n"                                                  /* 26 */
	    "  workflow_call:\n"                                                      /* 27 */
	    "    inputs:\n"                                                           /* 28 */
	    "      n: {type: number, default: 3}\n"                                   /* 29 */
	    "      ref: {type: string, default: '${{ github.ref }}'}\n"               /* 30 */
	    "    outputs:\n"                                                          /* 31 */
	    "      image: {description: built, value: '${{ jobs.b.outputs.img }}'}\n" /* 32 */
	    "    secrets:\n"                                                          /* 33 */
	    "      token: {required: true}\n"                                         /* 34 */
	    "      other:\n"                                                          /* 35 */
	    "  repository_dispatch:\n"                                                /* 36 */
	    "    types: [deploy]\n"                                                   /* 37 */
	    "permissions:\n"                                                          /* 38 */
	    "  contents: read\n"                                                      /* 39 */
	    "  id-token: write\n"                                                     /* 40 */
	    "  issues: none\n"                                                        /* 41 */
	    "concurrency:\n"                                                          /* 42 */
	    "  group: ${{ github.workflow }}-${{ github.ref }}\n"                     /* 43 */
	    "  cancel-in-progress: true\n"                                            /* 44 */
	    "env: ${{ fromJSON(vars.ENV) }}\n"                                        /* 45 */
	    "jobs:\n"                                                                 /* 46 */
	    "  b:\n"                                                                  /* 47 */
	    "    runs-on: ubuntu-latest\n"                                            /* 48 */
	    "    permissions: write-all\n"                                            /* 49 */
	    "    concurrency: deploy-${{ github.ref }}\n"                             /* 50 */
	    "    environment: {name: prod, url: '${{ steps.d.outputs.url }}'}\n"      /* 51 */
	    "    outputs:\n"                                                          /* 52 */
	    "      img: ${{ steps.d.outputs.image }}\n"                               /* 53 */
	    "    strategy:\n"                                                         /* 54 */
	    "      fail-fast: false\n"                                                /* 55 */
	    "      max-parallel: 2\n"                                                 /* 56 */
	    "      matrix: {os: [a, b]}\n"                                            /* 57 */
	    "    container:\n"                                                        /* 58 */
	    "      image: ghcr.io/x/y:1\n"                                            /* 59 */
	    "      credentials: {username: u, password: '${{ secrets.P }}'}\n"        /* 60 */
	    "      env: {A: 1}\n"                                                     /* 61 */
	    "      ports: [80, '443:443']\n"                                          /* 62 */
	    "      volumes: [/data]\n"                                                /* 63 */
	    "      options: --cpus 1\n"                                               /* 64 */
	    "    services:\n"                                                         /* 65 */
	    "      redis: redis:7\n"                                                  /* 66 */
	    "      db:\n"                                                             /* 67 */
	    "        image: postgres\n"                                               /* 68 */
	    "        entrypoint: /bin/sh\n"                                           /* 69 */
	    "        command: -c 'sleep 1'\n"                                         /* 70 */
	    "    steps:\n"                                                            /* 71 */
	    "      - id: d\n"                                                         /* 72 */
	    "        run: echo ${{ matrix.os }}\n"                                    /* 73 */
	    "  call:\n"                                                               /* 74 */
	    "    needs: b\n"                                                          /* 75 */
	    "    uses: ./.github/workflows/deploy.yml\n"                              /* 76 */
	    "    with: {image: '${{ needs.b.outputs.img }}', n: 2, dry: true}\n"      /* 77 */
	    "    secrets: {token: '${{ secrets.T }}'}\n"                              /* 78 */
	    "  remote:\n"                                                             /* 79 */
	    "    uses: org/repo/.github/workflows/w.yaml@v1\n"                        /* 80 */
	    "    secrets: inherit\n"                                                  /* 81 */
	    "    strategy: ${{ fromJSON(inputs.s) }}\n";                              /* 82 */
	_cleanup_(kiln_workflow_freep) kiln_workflow *wf = NULL;
	int r = parse(doc, &wf);
	CHECK_INT(r, 0);
	if (r < 0) {
		fprintf(stderr, "%s\n", kiln_errmsg());
		return;
	}
	CHECK_STR(wf->description, "every key");
	CHECK_STR(wf->env_expr, "${{ fromJSON(vars.ENV) }}");
	CHECK_INT(wf->env.n, 0);

	/* events, in the order written */
	CHECK_INT(wf->nevents, 7);
	const kiln_event *push = kiln_workflow_event(wf, "push");
	CHECK(push == &wf->events[0]);
	CHECK(push && push->line == 4 && push->col == 3);
	if (push) {
		CHECK(push->filters ==
		      (KILN_FILTER_BRANCHES | KILN_FILTER_TAGS_IGNORE | KILN_FILTER_PATHS));
		CHECK_INT(push->branches.n, 2);
		CHECK_STR(push->branches.v[1], "release/**");
		CHECK_INT(push->tags_ignore.n, 1);
		CHECK_STR(push->tags_ignore.v[0], "nightly");
		CHECK_INT(push->paths.n, 1);
		CHECK_INT(push->tags.n, 0);
	}
	const kiln_event *pr = kiln_workflow_event(wf, "pull_request");
	CHECK(pr && pr->filters == KILN_FILTER_TYPES && pr->types.n == 2);
	const kiln_event *sch = kiln_workflow_event(wf, "schedule");
	CHECK(sch && sch->nschedules == 2);
	if (sch && sch->nschedules == 2) {
		CHECK_STR(sch->schedules[0].cron, "*/30 8-18 * * MON-FRI");
		CHECK(sch->schedules[0].spec.minutes == ((1ull << 0) | (1ull << 30)));
		CHECK(sch->schedules[0].spec.wdays == 0x3e);
		CHECK(sch->schedules[0].timezone == NULL);
		CHECK_STR(sch->schedules[1].timezone, "Europe/Paris");
		CHECK_INT(sch->schedules[1].node->line, 12);
	}
	const kiln_event *wd = kiln_workflow_event(wf, "workflow_dispatch");
	CHECK(wd && wd->ninputs == 3);
	if (wd && wd->ninputs == 3) {
		const kiln_input *in = &wd->inputs[0];
		CHECK_STR(in->name, "level");
		CHECK_STR(in->description, "Log level");
		CHECK(in->type == KILN_INPUT_CHOICE);
		CHECK_STR(kiln_input_type_name(in->type), "choice");
		CHECK(in->required);
		CHECK_STR(in->default_value, "info");
		CHECK_INT(in->options.n, 2);
		CHECK_STR(in->options.v[1], "debug");
		CHECK(wd->inputs[1].type == KILN_INPUT_BOOLEAN);
		CHECK_STR(wd->inputs[1].default_value, "false");
		CHECK(!wd->inputs[1].required);
		CHECK(wd->inputs[2].type == KILN_INPUT_STRING); /* no type: a string */
		CHECK(wd->inputs[2].default_value == NULL);
	}
	const kiln_event *run = kiln_workflow_event(wf, "workflow_run");
	CHECK(run && run->workflows.n == 1 && run->types.n == 1);
	CHECK(run && strcmp(run->types.v[0], "completed") == 0);
	const kiln_event *call = kiln_workflow_event(wf, "workflow_call");
	CHECK(call && call->ninputs == 2 && call->noutputs == 1 && call->nsecrets == 2);
	if (call && call->ninputs == 2 && call->noutputs == 1 && call->nsecrets == 2) {
		CHECK(call->inputs[0].type == KILN_INPUT_NUMBER);
		CHECK_STR(call->inputs[1].default_value, "${{ github.ref }}");
		CHECK_STR(call->outputs[0].name, "image");
		CHECK_STR(call->outputs[0].value, "${{ jobs.b.outputs.img }}");
		CHECK_STR(call->outputs[0].description, "built");
		CHECK(call->secrets[0].required);
		CHECK(!call->secrets[1].required);
		CHECK_STR(call->secrets[1].name, "other");
	}
	const kiln_event *rd = kiln_workflow_event(wf, "repository_dispatch");
	CHECK(rd && rd->types.n == 1);
	CHECK(kiln_workflow_event(wf, "issues") == NULL);
	CHECK(kiln_workflow_triggers(wf, "schedule"));
	CHECK(!kiln_workflow_triggers(wf, "issues"));

	/* permissions and concurrency */
	CHECK(wf->permissions_def.set);
	CHECK_INT(wf->permissions_def.nscopes, 3);
	CHECK(kiln_permissions_get(&wf->permissions_def, "contents") == KILN_PERM_READ);
	CHECK(kiln_permissions_get(&wf->permissions_def, "id-token") == KILN_PERM_WRITE);
	CHECK(kiln_permissions_get(&wf->permissions_def, "issues") == KILN_PERM_NONE);
	CHECK(kiln_permissions_get(&wf->permissions_def, "packages") == KILN_PERM_NONE);
	CHECK_STR(wf->concurrency_def.group, "${{ github.workflow }}-${{ github.ref }}");
	CHECK_STR(wf->concurrency_def.cancel_in_progress, "true");

	const kiln_job *b = kiln_workflow_job(wf, "b");
	CHECK(kiln_permissions_get(&b->permissions_def, "packages") == KILN_PERM_WRITE);
	CHECK(kiln_permissions_get(&b->permissions_def, "models") == KILN_PERM_READ);
	CHECK_STR(b->concurrency_def.group, "deploy-${{ github.ref }}");
	CHECK(b->concurrency_def.cancel_in_progress == NULL);
	CHECK_STR(b->environment_name, "prod");
	CHECK_STR(b->environment_url, "${{ steps.d.outputs.url }}");
	CHECK_INT(b->output_defs.n, 1);
	CHECK_STR(b->output_defs.v[0].key, "img");
	CHECK_STR(b->output_defs.v[0].value, "${{ steps.d.outputs.image }}");
	CHECK(b->output_defs.v[0].node && b->output_defs.v[0].node->line == 53);
	CHECK(!b->fail_fast);
	CHECK_INT(b->max_parallel, 2);
	CHECK(b->matrix && b->matrix->kind == KILN_YNODE_MAPPING && b->matrix->line == 57);
	CHECK(b->container_def != NULL);
	if (b->container_def) {
		const kiln_container *ct = b->container_def;
		CHECK_STR(ct->image, "ghcr.io/x/y:1");
		CHECK_STR(ct->username, "u");
		CHECK_STR(ct->password, "${{ secrets.P }}");
		CHECK_STR(kiln_env_get(&ct->env, "A"), "1");
		CHECK_INT(ct->ports.n, 2);
		CHECK_STR(ct->ports.v[0], "80");
		CHECK_STR(ct->volumes.v[0], "/data");
		CHECK_STR(ct->options, "--cpus 1");
		CHECK(ct->id == NULL);
	}
	CHECK_INT(b->nservice_defs, 2);
	if (b->nservice_defs == 2) {
		CHECK_STR(b->service_defs[0].id, "redis");
		CHECK_STR(b->service_defs[0].image, "redis:7");
		CHECK_STR(b->service_defs[1].id, "db");
		CHECK_STR(b->service_defs[1].entrypoint, "/bin/sh");
		CHECK_STR(b->service_defs[1].command, "-c 'sleep 1'");
	}
	CHECK(!b->is_call);

	const kiln_job *c = kiln_workflow_job(wf, "call");
	CHECK(c->is_call && c->uses_local);
	CHECK_STR(kiln_env_get(&c->with, "image"), "${{ needs.b.outputs.img }}");
	CHECK_STR(kiln_env_get(&c->with, "dry"), "true");
	CHECK(!c->secrets_inherit);
	CHECK_STR(kiln_env_get(&c->secret_values, "token"), "${{ secrets.T }}");
	CHECK(c->fail_fast); /* the default */
	const kiln_job *rm = kiln_workflow_job(wf, "remote");
	CHECK(rm->is_call && !rm->uses_local && rm->secrets_inherit);
	CHECK_STR(rm->strategy_expr, "${{ fromJSON(inputs.s) }}");
	CHECK(rm->matrix == NULL);
}

static void test_events_and_inputs(void)
{
	/* on: as a string, and as a list */
	kiln_workflow *wf = NULL;
	CHECK_INT(parse("on: workflow_dispatch\n" JOB, &wf), 0);
	CHECK(wf && wf->nevents == 1 && strcmp(wf->events[0].name, "workflow_dispatch") == 0);
	CHECK(wf && wf->events[0].line == 1 && wf->events[0].col == 5 && !wf->events[0].node);
	kiln_workflow_free(wf);
	wf = NULL;
	CHECK_INT(parse("on: [push, pull_request, push, repository_dispatch]\n" JOB, &wf), 0);
	CHECK(wf && wf->nevents == 3);
	kiln_workflow_free(wf);

	CHECK_FAIL("on: pushh\n" JOB, "ci.yml:1:5: unknown event 'pushh'");
	CHECK_FAIL("on: [push, Push]\n" JOB, "ci.yml:1:12: unknown event 'Push'");
	CHECK_FAIL("on:\n  pull-request:\n" JOB, "ci.yml:2:3: unknown event 'pull-request'");
	CHECK_FAIL("on:\n" JOB, "ci.yml:1:1: 'on' must name at least one event");
	CHECK_FAIL("on: {}\n" JOB, "ci.yml:1:5: 'on' must name at least one event");
	CHECK_FAIL("on: [[push]]\n" JOB,
	           "ci.yml:1:6: an event must be named by a string, not a sequence");
	CHECK_FAIL("on: ${{ github.event }}\n" JOB,
	           "ci.yml:1:5: event names cannot hold expressions ('${{ }}')");
	CHECK_FAIL("on:\n  push:\n    branch: main\n" JOB,
	           "ci.yml:3:5: unknown key 'branch' for event 'push'");
	CHECK_FAIL("on:\n  push:\n    types: [created]\n" JOB,
	           "ci.yml:3:5: unknown key 'types' for event 'push'");
	CHECK_FAIL(
	    "on:\n  push:\n    branches: {main: 1}\n" JOB,
	    "ci.yml:3:15: 'branches' must be a string or a sequence of strings, not a mapping");
	CHECK_FAIL("on:\n  push:\n    branches: ['']\n" JOB,
	           "ci.yml:3:16: 'branches' entries must not be empty");
	CHECK_FAIL(
	    "on:\n  push: [main]\n" JOB,
	    "ci.yml:2:9: event 'push' must be empty or a mapping of filters, not a sequence");
	CHECK_FAIL("on:\n  create:\n    branches: [main]\n" JOB,
	           "ci.yml:3:5: event 'create' takes no configuration (leave it empty)");
	/* GitHub refuses a filter together with its -ignore form */
	CHECK_FAIL(
	    "on:\n  push:\n    branches: [main]\n    tags: [v1]\n    branches-ignore: [dev]\n" JOB,
	    "ci.yml:5:5: event 'push' cannot have both 'branches' and 'branches-ignore'");
	CHECK_FAIL("on:\n  pull_request:\n    paths-ignore: [docs]\n    paths: [src]\n" JOB,
	           "ci.yml:4:5: event 'pull_request' cannot have both 'paths' and 'paths-ignore'");
	CHECK_FAIL("on:\n  push:\n    tags-ignore: [a]\n    tags: [b]\n" JOB,
	           "ci.yml:4:5: event 'push' cannot have both 'tags' and 'tags-ignore'");
	/* activity types */
	CHECK_FAIL("on:\n  pull_request:\n    types: [opened, open]\n" JOB,
	           "ci.yml:3:21: unknown activity type 'open' for event 'pull_request' (known: "
	           "assigned, unassigned, labeled, unlabeled, opened, edited, closed, reopened, "
	           "synchronize, converted_to_draft, locked, unlocked, enqueued, dequeued, "
	           "milestoned, demilestoned, ready_for_review, review_requested, "
	           "review_request_removed, auto_merge_enabled, auto_merge_disabled, stacked)");
	CHECK_FAIL(
	    "on:\n  watch:\n    types: starred\n" JOB,
	    "ci.yml:3:12: unknown activity type 'starred' for event 'watch' (known: started)");
	CHECK_FAIL("on:\n  repository_dispatch:\n    types: deploy\n" JOB,
	           "ci.yml:3:12: 'types' must be a sequence of strings, not a string");
	/* schedules */
	CHECK_FAIL("on:\n  schedule:\n    - cron: '0 25 * * *'\n" JOB,
	           "ci.yml:3:16: invalid cron schedule: hour field '25': 25 is out of range 0-23");
	CHECK_FAIL(
	    "on:\n  schedule:\n    - cron: 0 0 * * 8\n" JOB,
	    "ci.yml:3:21: invalid cron schedule: day-of-week field '8': 8 is out of range 0-6");
	CHECK_FAIL("on:\n  schedule:\n    - cron: '@daily'\n" JOB,
	           "ci.yml:3:14: invalid cron schedule: cron schedule '@daily' must have 5 fields "
	           "separated by spaces (minute hour day-of-month month day-of-week), not 1");
	CHECK_FAIL("on:\n  schedule:\n" JOB,
	           "ci.yml:2:12: 'schedule' must be a sequence of {cron: '...'} entries, not null");
	CHECK_FAIL(
	    "on:\n  schedule:\n    cron: '0 0 * * *'\n" JOB,
	    "ci.yml:3:5: 'schedule' must be a sequence of {cron: '...'} entries, not a mapping");
	CHECK_FAIL("on:\n  schedule:\n    - timezone: UTC\n" JOB,
	           "ci.yml:3:7: a schedule entry needs a 'cron'");
	CHECK_FAIL("on:\n  schedule:\n    - cron: '0 0 * * *'\n      tz: UTC\n" JOB,
	           "ci.yml:4:7: unknown key 'tz'");
	/* workflow_dispatch inputs */
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs:\n      l: {type: choice}\n" JOB,
	           "ci.yml:4:10: choice input 'l' needs 'options'");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs:\n      l: {type: choice, options: [a, "
	           "b], default: c}\n" JOB,
	           "ci.yml:4:51: input 'l': the default 'c' is not one of its options");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs:\n      l: {options: [a]}\n" JOB,
	           "ci.yml:4:20: input 'l' has 'options' but its type is string, not choice");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs:\n      l: {type: text}\n" JOB,
	           "ci.yml:4:17: input 'l': 'type' must be string, boolean, number, choice or "
	           "environment, not text");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs:\n      l: {type: boolean, default: "
	           "'yes'}\n" JOB,
	           "ci.yml:4:35: input 'l': the default of a boolean input must be true or false");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs:\n      l: {default: 10}\n" JOB,
	           "ci.yml:4:20: input 'l': the default of a string input must be a string (quote "
	           "it: '10')");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs:\n      l: {required: 'true'}\n" JOB,
	           "ci.yml:4:21: 'required' must be true or false, not a quoted string");
	CHECK_FAIL(
	    "on:\n  workflow_dispatch:\n    inputs:\n      l: {default: '${{ github.ref }}'}\n" JOB,
	    "ci.yml:4:20: 'default' cannot hold expressions ('${{ }}')");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs:\n      l:\n" JOB,
	           "ci.yml:4:9: input 'l' must be a mapping, not null");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    inputs: [a]\n" JOB,
	           "ci.yml:3:13: 'inputs' must be a mapping, not a sequence");
	CHECK_FAIL("on:\n  workflow_dispatch:\n    input: {}\n" JOB,
	           "ci.yml:3:5: unknown key 'input'");
	/* workflow_call */
	CHECK_FAIL("on:\n  workflow_call:\n    inputs:\n      n: {required: true}\n" JOB,
	           "ci.yml:4:10: input 'n' needs a 'type' (string, boolean or number)");
	CHECK_FAIL("on:\n  workflow_call:\n    inputs:\n      n: {type: choice}\n" JOB,
	           "ci.yml:4:17: input 'n': 'type' must be string, boolean or number, not choice");
	CHECK_FAIL(
	    "on:\n  workflow_call:\n    inputs:\n      n: {type: string, options: [a]}\n" JOB,
	    "ci.yml:4:25: unknown key 'options'");
	CHECK_FAIL("on:\n  workflow_call:\n    inputs:\n      n: {type: string, default: '${{ "
	           "secrets.X }}'}\n" JOB,
	           "ci.yml:4:34: 'default': Unrecognized named-value: 'secrets'. Located at "
	           "position 1 within expression: secrets.X");
	CHECK_FAIL("on:\n  workflow_call:\n    outputs:\n      o: {description: x}\n" JOB,
	           "ci.yml:4:10: output 'o' needs a 'value'");
	CHECK_FAIL("on:\n  workflow_call:\n    outputs:\n      o: {value: '${{ steps.a.outputs.b "
	           "}}'}\n" JOB,
	           "ci.yml:4:18: 'value': Unrecognized named-value: 'steps'. Located at position 1 "
	           "within expression: steps.a.outputs.b");
	CHECK_FAIL("on:\n  workflow_call:\n    secrets:\n      s: {required: yes}\n" JOB,
	           "ci.yml:4:21: 'required' must be true or false, not this string");
}

static void test_job_checks(void)
{
	/* reusable-workflow calls */
	CHECK_FAIL("on: push\njobs:\n  c:\n    uses: ./.github/workflows/w.yml\n    runs-on: x\n",
	           "ci.yml:5:5: job 'c' cannot have both 'uses' and 'runs-on'");
	CHECK_FAIL("on: push\njobs:\n  c:\n    uses: ./.github/workflows/w.yml\n    env: {A: 1}\n",
	           "ci.yml:5:5: job 'c' cannot have both 'uses' and 'env'");
	CHECK_FAIL("on: push\njobs:\n  c:\n    uses: ./.github/workflows/w.yml\n    bogus: 1\n",
	           "ci.yml:5:5: unknown key 'bogus'");
	CHECK_FAIL(
	    "on: push\njobs:\n  c:\n    runs-on: x\n    secrets: inherit\n    steps: [run: x]\n",
	    "ci.yml:5:5: 'secrets' is only for jobs that call a reusable workflow ('uses')");
	CHECK_FAIL("on: push\njobs:\n  c:\n    runs-on: x\n    with: {a: 1}\n    steps: [run: x]\n",
	           "ci.yml:5:5: 'with' is only for jobs that call a reusable workflow ('uses')");
	CHECK_FAIL(
	    "on: push\njobs:\n  c:\n    uses: org/repo/w.yml@v1\n",
	    "ci.yml:4:11: 'uses' must name a reusable workflow as ./.github/workflows/FILE.yml "
	    "or OWNER/REPO/.github/workflows/FILE.yml@REF, not 'org/repo/w.yml@v1'");
	CHECK_FAIL(
	    "on: push\njobs:\n  c:\n    uses: org/repo/.github/workflows/w.yml\n",
	    "ci.yml:4:11: 'uses' must name a reusable workflow as ./.github/workflows/FILE.yml "
	    "or OWNER/REPO/.github/workflows/FILE.yml@REF, not "
	    "'org/repo/.github/workflows/w.yml'");
	CHECK_FAIL(
	    "on: push\njobs:\n  c:\n    uses: ./.github/workflows/w.yml@main\n",
	    "ci.yml:4:11: 'uses' must name a reusable workflow as ./.github/workflows/FILE.yml "
	    "or OWNER/REPO/.github/workflows/FILE.yml@REF, not "
	    "'./.github/workflows/w.yml@main'");
	CHECK_FAIL(
	    "on: push\njobs:\n  c:\n    uses: ./.github/workflows/sub/w.txt\n",
	    "ci.yml:4:11: 'uses' must name a reusable workflow as ./.github/workflows/FILE.yml "
	    "or OWNER/REPO/.github/workflows/FILE.yml@REF, not "
	    "'./.github/workflows/sub/w.txt'");
	CHECK_FAIL("on: push\njobs:\n  c:\n    uses: ./.github/workflows/w.yml\n    secrets: all\n",
	           "ci.yml:5:14: 'secrets' must be inherit or a mapping, not this string");
	CHECK_FAIL(
	    "on: push\njobs:\n  c:\n    uses: ./.github/workflows/w.yml\n    with: {a: [1]}\n",
	    "ci.yml:5:15: with 'a' must be a string, not a sequence");
	CHECK_FAIL("on: push\njobs:\n  c:\n    uses: ${{ inputs.w }}\n",
	           "ci.yml:4:11: 'uses' cannot hold expressions ('${{ }}')");

	/* step uses */
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout\n",
	    "ci.yml:6:15: 'uses' must be OWNER/REPO[/PATH]@REF, ./PATH or docker://IMAGE, "
	    "not 'actions/checkout'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: checkout@v4\n",
	           "ci.yml:6:15: 'uses' must be OWNER/REPO[/PATH]@REF, ./PATH or docker://IMAGE, "
	           "not 'checkout@v4'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: docker://\n",
	           "ci.yml:6:15: 'uses' must be OWNER/REPO[/PATH]@REF, ./PATH or docker://IMAGE, "
	           "not 'docker://'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: a/b@v1\n      "
	           "  shell: bash\n",
	           "ci.yml:7:9: 'shell' is only for 'run' steps, not for 'uses'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: a/b@v1\n      "
	           "  working-directory: d\n",
	           "ci.yml:7:9: 'working-directory' is only for 'run' steps, not for 'uses'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: make\n        "
	           "with: {a: 1}\n",
	           "ci.yml:7:9: 'with' is only for steps that use an action ('uses')");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: make\n        "
	           "shell: ''\n",
	           "ci.yml:7:16: 'shell' must not be empty");
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - {id: __x, run: make}\n",
	    "ci.yml:6:14: invalid step id '__x': ids starting with '__' are reserved");

	/* job keys and shapes */
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    timeout-minutes: '30'\n    steps: "
	           "[run: x]\n",
	           "ci.yml:5:22: 'timeout-minutes' must be a positive number of minutes (at most "
	           "525600) or an expression");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: {group: team/x/y}\n    steps: [run: x]\n",
	           "ci.yml:4:22: invalid runner group 'team/x/y': use NAME, organization/NAME or "
	           "enterprise/NAME");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: {group: foo/x}\n    steps: [run: x]\n",
	           "ci.yml:4:22: invalid runner group 'foo/x': use NAME, organization/NAME or "
	           "enterprise/NAME");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: ['']\n    steps: [run: x]\n",
	           "ci.yml:4:15: 'runs-on' entries must not be empty");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    environment: {url: u}\n    steps: "
	           "[run: x]\n",
	           "ci.yml:5:18: 'environment' needs a 'name'");
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    environment: [a]\n    steps: [run: x]\n",
	    "ci.yml:5:18: 'environment' must be a string or a mapping, not a sequence");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    concurrency: {cancel-in-progress: "
	           "true}\n    steps: [run: x]\n",
	           "ci.yml:5:18: 'concurrency' needs a 'group'");
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    concurrency: ''\n    steps: [run: x]\n",
	    "ci.yml:5:18: 'concurrency' must not be empty");
	CHECK_FAIL("on: push\nconcurrency: {group: g, queue: all}\n" JOB,
	           "ci.yml:2:32: 'queue' must be single or max, not all");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    container: {options: --rm}\n    "
	           "steps: [run: x]\n",
	           "ci.yml:5:16: 'container' has no 'image'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    container: {image: i, credentials: "
	           "{user: u}}\n    steps: [run: x]\n",
	           "ci.yml:5:41: unknown key 'user'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    container: {image: i, entrypoint: "
	           "sh}\n    steps: [run: x]\n",
	           "ci.yml:5:27: unknown key 'entrypoint'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    services: {db: {image: i, port: "
	           "1}}\n    steps: [run: x]\n",
	           "ci.yml:5:31: unknown key 'port'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    services: {db: {ports: [1]}}\n    "
	           "steps: [run: x]\n",
	           "ci.yml:5:20: 'services.db' has no 'image'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    services:\n    steps: [run: x]\n",
	           "ci.yml:5:14: 'services' must be a mapping, not null");
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    outputs: {o: [1]}\n    steps: [run: x]\n",
	    "ci.yml:5:18: outputs 'o' must be a string, not a sequence");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    strategy: {matrix: {os: linux}}\n   "
	           " steps: [run: x]\n",
	           "ci.yml:5:29: matrix vector 'os' must be a sequence, not a string");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    strategy: {matrix: {os: [a], "
	           "include: [b]}}\n    steps: [run: x]\n",
	           "ci.yml:5:44: matrix 'include' entries must be mappings, not a string");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    strategy: {matrix: {os: []}}\n    "
	           "steps: [run: x]\n",
	           "ci.yml:5:24: matrix vector 'os' does not contain any values");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    strategy: {matrix: {os: [a], "
	           "exclude: [{arch: b}]}}\n    steps: [run: x]\n",
	           "ci.yml:5:24: matrix exclude key 'arch' does not match any key of the matrix");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    strategy: {max-parallel: 0}\n    "
	           "steps: [run: x]\n",
	           "ci.yml:5:30: 'max-parallel' must be a positive whole number or an expression");
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    strategy: {fail-fast: 'no'}\n    steps: "
	    "[run: x]\n",
	    "ci.yml:5:27: 'fail-fast' must be true, false or an expression, not a quoted string");
	CHECK_FAIL("on: push\npermissions:\n  contents: admin\n" JOB,
	           "ci.yml:3:13: permission 'contents' must be read, write or none, not 'admin'");
	CHECK_FAIL("on: push\npermissions:\n  id-token: read\n" JOB,
	           "ci.yml:3:13: permission 'id-token' must be write or none, not 'read'");
	CHECK_FAIL("on: push\npermissions:\n  content: read\n" JOB,
	           "ci.yml:3:3: unknown permission scope 'content'");
	CHECK_FAIL("on: push\npermissions: read\n" JOB,
	           "ci.yml:2:14: 'permissions' must be read-all, write-all or a mapping of scopes "
	           "to read, write or none, not 'read'");
	CHECK_FAIL("on: push\npermissions:\n" JOB,
	           "ci.yml:2:13: 'permissions' must be read-all, write-all or a mapping of scopes, "
	           "not null");

	/* top level */
	CHECK_FAIL("jobs:\n  a:\n    runs-on: x\n    steps: [run: x]\n",
	           "ci.yml:1:1: workflow has no 'on' (the events that trigger it)");
	CHECK_FAIL("on: push\nname: [a]\n" JOB,
	           "ci.yml:2:7: 'name' must be a string, not a sequence");
	CHECK_FAIL("on: push\ndefaults:\n  run:\n    shell: ${{ env.S }}\n" JOB,
	           "ci.yml:4:12: 'shell' cannot hold expressions ('${{ }}')");
	CHECK_FAIL("on: push\nenv:\n" JOB, "ci.yml:2:5: 'env' must be a mapping, not null");
	/* keys that differ only in case, anywhere */
	CHECK_FAIL("on: push\nenv: {TOKEN: a, token: b}\n" JOB,
	           "ci.yml:2:17: duplicate key 'token' ('TOKEN' at 2:7 differs only in case)");
	CHECK_FAIL("on: push\njobs:\n  Build: {runs-on: x, steps: [run: x]}\n  build: {runs-on: x, "
	           "steps: [run: x]}\n",
	           "ci.yml:4:3: duplicate key 'build' ('Build' at 3:3 differs only in case)");
}

static void test_expressions(void)
{
	/* Not closed, empty, and not allowed at all. */
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: 'echo ${{ github.sha']\n",
	    "ci.yml:5:18: 'run': the expression is not closed: '${{' without a matching '}}'");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: 'echo ${{ }}']\n",
	           "ci.yml:5:18: 'run': an expression was expected inside '${{ }}'");
	CHECK_FAIL("name: CI ${{ github.ref }}\non: push\n" JOB,
	           "ci.yml:1:7: 'name' cannot hold expressions ('${{ }}')");
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    needs: ${{ x }}\n    steps: [run: x]\n",
	    "ci.yml:5:12: 'needs' cannot hold expressions ('${{ }}')");
	/* A lone string literal is text, allowed anywhere. */
	kiln_workflow *wf = NULL;
	CHECK_INT(parse("name: ${{ 'it''s' }}\non: push\n" JOB, &wf), 0);
	CHECK(wf && strcmp(wf->name, "it's") == 0);
	kiln_workflow_free(wf);

	/* The contexts and functions GitHub allows at each place. */
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    if: secrets.X != ''\n    runs-on: x\n    steps: [run: x]\n",
	    "ci.yml:4:9: 'if': Unrecognized named-value: 'secrets'. Located at position 1 "
	    "within expression: secrets.X != ''");
	CHECK_FAIL("on: push\njobs:\n  a:\n    if: hashFiles('x') != ''\n    runs-on: x\n    "
	           "steps: [run: x]\n",
	           "ci.yml:4:9: 'if': Unrecognized function: 'hashFiles'. Located at position 1 "
	           "within expression: hashFiles('x') != ''");
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: ${{ steps.s.outputs.r }}\n    steps: [run: x]\n",
	    "ci.yml:4:14: 'runs-on': Unrecognized named-value: 'steps'. Located at position "
	    "1 within expression: steps.s.outputs.r");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: x\n        "
	           "env: {A: '${{ success() }}'}\n",
	           "ci.yml:7:18: 'env': Unrecognized function: 'success'. Located at position 1 "
	           "within expression: success()");
	CHECK_FAIL("on: push\nenv: {A: '${{ env.B }}'}\n" JOB,
	           "ci.yml:2:10: 'env': Unrecognized named-value: 'env'. Located at position 1 "
	           "within expression: env.B");
	CHECK_FAIL("on: push\nrun-name: ${{ secrets.X }}\n" JOB,
	           "ci.yml:2:11: 'run-name': Unrecognized named-value: 'secrets'. Located at "
	           "position 1 within expression: secrets.X");
	CHECK_FAIL(
	    "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x, if: 'github.ref =='}]\n",
	    "ci.yml:5:26: 'if': Unexpected end of expression: '=='. Located at position 12 "
	    "within expression: github.ref ==");
	CHECK_FAIL("on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: '${{ "
	           "toUpper(github.ref) }}']\n",
	           "ci.yml:5:18: 'run': Unrecognized function: 'toUpper'. Located at position 1 "
	           "within expression: toUpper(github.ref)");
	/* Allowed: each of these is valid where it stands. */
	const char *ok =
	    "on: push\n"
	    "run-name: ${{ github.actor }} ${{ inputs.x }} ${{ vars.V }}\n"
	    "env: {A: '${{ secrets.S }}'}\n"
	    "concurrency: ${{ github.ref }}\n"
	    "jobs:\n"
	    "  a:\n"
	    "    if: always() || failure() || success() || cancelled() || needs.b.result\n"
	    "    needs: b\n"
	    "    name: ${{ matrix.os }} ${{ strategy.job-index }}\n"
	    "    runs-on: ${{ matrix.os }}\n"
	    "    strategy: {matrix: {os: ['${{ needs.b.outputs.os }}']}}\n"
	    "    env: {S: '${{ secrets.S }}'}\n"
	    "    timeout-minutes: ${{ fromJSON(vars.T) }}\n"
	    "    outputs: {o: '${{ steps.s.outputs.o }} ${{ runner.os }} ${{ job.status }}'}\n"
	    "    steps:\n"
	    "      - id: s\n"
	    "        if: hashFiles('x') != '' && success() && env.A && steps.s.outcome\n"
	    "        run: echo ${{ hashFiles('**/x') }} ${{ secrets.S }} ${{ env.A }}\n"
	    "        working-directory: ${{ runner.temp }}\n"
	    "  b:\n"
	    "    runs-on: x\n"
	    "    steps: [run: x]\n";
	wf = NULL;
	CHECK_INT(parse(ok, &wf), 0);
	if (!wf)
		fprintf(stderr, "%s\n", kiln_errmsg());
	kiln_workflow_free(wf);

	/* Strict mode (lint): the matrix context only in jobs with a strategy. */
	const char *nomatrix =
	    "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [run: 'echo ${{ matrix.os }}']\n";
	wf = NULL;
	CHECK_INT(parse(nomatrix, &wf), 0);
	kiln_workflow_free(wf);
	kiln_workflow_opts strict = {.strict = true};
	kiln_strv problems = {0};
	CHECK_INT(
	    kiln_workflow_check("ci.yml", nomatrix, strlen(nomatrix), &strict, &problems, NULL),
	    -EINVAL);
	CHECK_INT(problems.n, 1);
	if (problems.n)
		CHECK_STR(problems.v[0], "ci.yml:5:18: 'run': Unrecognized named-value: 'matrix'. "
		                         "Located at position 1 within expression: matrix.os");
	kiln_strv_free(&problems);

	/* The table itself. */
	const char *const *step = kiln_workflow_expr_allowed(KILN_PLACE_STEP);
	bool has_secrets = false, has_hash = false;
	for (size_t i = 0; step[i]; i++) {
		has_secrets |= strcmp(step[i], "secrets") == 0;
		has_hash |= strcmp(step[i], "hashFiles(1,255)") == 0;
	}
	CHECK(has_secrets && has_hash);
	CHECK(kiln_workflow_expr_allowed(KILN_PLACE_NONE)[0] == NULL);
	CHECK(kiln_workflow_expr_allowed((kiln_expr_place)999)[0] == NULL);
	CHECK(kiln_workflow_event_known("merge_group"));
	CHECK(!kiln_workflow_event_known("pull-request"));
	CHECK(kiln_workflow_event_types("push") == NULL);
	CHECK_STR(kiln_workflow_event_types("watch")[0], "started");
	CHECK(kiln_workflow_event_filters("create") == 0);
	CHECK(kiln_workflow_event_filters("workflow_run") & KILN_FILTER_WORKFLOWS);
}

static void test_all_problems(void)
{
	const char *doc = "name: Many\n"                        /* 1 */
	                  "on:\n"                               /* 2 */
	                  "  push:\n"                           /* 3 */
	                  "    branchs: [main]\n"               /* 4 */
	                  "  schedule:\n"                       /* 5 */
	                  "    - cron: '0 25 * * *'\n"          /* 6 */
	                  "jobs:\n"                             /* 7 */
	                  "  build:\n"                          /* 8 */
	                  "    runs-on: x\n"                    /* 9 */
	                  "    timout-minutes: 10\n"            /* 10 */
	                  "    steps:\n"                        /* 11 */
	                  "      - uses: actions/checkout@v4\n" /* 12 */
	                  "        run: make\n"                 /* 13 */
	                  "  test:\n"                           /* 14 */
	                  "    needs: [build, nope]\n"          /* 15 */
	                  "    steps: [run: x]\n";              /* 16 */
	kiln_strv problems = {0};
	kiln_workflow *wf = (kiln_workflow *)1;
	CHECK_INT(kiln_workflow_check("ci.yml", doc, strlen(doc), NULL, &problems, &wf), -EINVAL);
	CHECK(wf == NULL);
	const char *want[] = {
	    "ci.yml:4:5: unknown key 'branchs' for event 'push'",
	    "ci.yml:6:16: invalid cron schedule: hour field '25': 25 is out of range 0-23",
	    "ci.yml:10:5: unknown key 'timout-minutes'",
	    "ci.yml:12:9: a step cannot have both 'run' and 'uses'",
	    "ci.yml:14:3: job 'test' has no 'runs-on'",
	    "ci.yml:15:20: job 'test' needs unknown job 'nope'",
	};
	CHECK_INT(problems.n, KILN_ARRAY_SIZE(want));
	for (size_t i = 0; i < problems.n && i < KILN_ARRAY_SIZE(want); i++)
		CHECK_STR(problems.v[i], want[i]);
	/* kiln_workflow_parse reports the first */
	CHECK_STR(kiln_errmsg(), want[0]);
	kiln_strv_free(&problems);
	CHECK_FAIL(doc, want[0]);

	/* A clean file: no problem, the workflow handed over. */
	const char *clean = "on: push\n" JOB;
	CHECK_INT(kiln_workflow_check("ci.yml", clean, strlen(clean), NULL, &problems, &wf), 0);
	CHECK(wf != NULL && problems.n == 0);
	kiln_workflow_free(wf);
	/* out may be NULL; problems may be NULL */
	CHECK_INT(kiln_workflow_check("ci.yml", clean, strlen(clean), NULL, NULL, NULL), 0);
	CHECK_INT(kiln_workflow_check("ci.yml", doc, strlen(doc), NULL, NULL, NULL), -EINVAL);
	/* YAML errors are one problem */
	CHECK_INT(kiln_workflow_check("ci.yml", "on: [\n", 6, NULL, &problems, NULL), -EINVAL);
	CHECK_INT(problems.n, 1);
	kiln_strv_free(&problems);

	/* Past the cap, one line says so. */
	kiln_buf b = {0};
	kiln_buf_puts(&b, "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n");
	for (int i = 0; i < 600; i++)
		kiln_buf_puts(&b, "      - {run: x, bad: 1}\n");
	CHECK_INT(kiln_workflow_check("ci.yml", b.p, b.len, NULL, &problems, NULL), -EINVAL);
	CHECK_INT(problems.n, 501);
	if (problems.n == 501)
		CHECK_STR(problems.v[500], "ci.yml: more than 500 problems; stopping here");
	kiln_strv_free(&problems);
	kiln_buf_free(&b);
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
	test_typed_model();
	test_events_and_inputs();
	test_job_checks();
	test_expressions();
	test_all_problems();
	kiln_workflow_free(NULL);
	return check_done();
}
