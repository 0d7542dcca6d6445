/*
 * test_actions — the action.yml loader (common/action.c): what it captures
 * from composite, Node and container actions (inputs with defaults and
 * required, outputs with values, composite steps in the workflow's step
 * shape), every refusal with its exact file:line:col; and the pure parts of
 * agent/actions.c: `uses:` references, the action source template, the
 * well-known actions kiln does not run yet, INPUT_ variable names.
 */
#include "agent/actions.h"
#include "common/action.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *text, kiln_action **out)
{
	return kiln_action_parse("act/action.yml", text, strlen(text), out);
}

/* Expects a failure with exactly this message. */
#define CHECK_FAIL(text, msg)                                                                      \
	do {                                                                                       \
		kiln_action *a_ = NULL;                                                            \
		CHECK(parse((text), &a_) < 0);                                                     \
		CHECK(a_ == NULL);                                                                 \
		CHECK_STR(kiln_errmsg(), (msg));                                                   \
		kiln_action_free(a_);                                                              \
	} while (0)

static void test_composite(void)
{
	const char *doc = "name: Greet\n"                                       /* 1 */
			  "description: says hello\n"                           /* 2 */
			  "author: someone\n"                                   /* 3 */
			  "branding: {icon: star, color: blue}\n"               /* 4 */
			  "inputs:\n"                                           /* 5 */
			  "  who:\n"                                            /* 6 */
			  "    description: whom to greet\n"                    /* 7 */
			  "    default: ${{ github.actor }}\n"                  /* 8 */
			  "  loud:\n"                                           /* 9 */
			  "    required: true\n"                                /* 10 */
			  "    deprecationMessage: use volume\n"                /* 11 */
			  "  count:\n"                                          /* 12 */
			  "    default: 3\n"                                    /* 13 */
			  "  empty:\n"                                          /* 14 */
			  "outputs:\n"                                          /* 15 */
			  "  said:\n"                                           /* 16 */
			  "    description: what was said\n"                    /* 17 */
			  "    value: ${{ steps.say.outputs.text }}\n"          /* 18 */
			  "  plain:\n"                                          /* 19 */
			  "runs:\n"                                             /* 20 */
			  "  using: composite\n"                                /* 21 */
			  "  steps:\n"                                          /* 22 */
			  "    - id: say\n"                                     /* 23 */
			  "      name: Say ${{ inputs.who }}\n"                 /* 24 */
			  "      shell: bash\n"                                 /* 25 */
			  "      working-directory: sub\n"                      /* 26 */
			  "      env:\n"                                        /* 27 */
			  "        WHO: ${{ inputs.who }}\n"                    /* 28 */
			  "      run: echo \"text=hi $WHO\" >> $GITHUB_OUTPUT\n" /* 29 */
			  "    - uses: ./.github/actions/inner\n"               /* 30 */
			  "      if: ${{ failure() }}\n"                        /* 31 */
			  "      continue-on-error: true\n"                     /* 32 */
			  "      with:\n"                                       /* 33 */
			  "        x: ${{ steps.say.outputs.text }}\n"          /* 34 */
			  "    - uses: octo/tool/sub@v1\n"                      /* 35 */
			  "      continue-on-error: ${{ inputs.loud == 'yes' }}\n" /* 36 */
			  "    - run:\n"                                        /* 37 */
			  "      shell: sh\n";                                  /* 38 */
	kiln_action *a = NULL;
	int r = parse(doc, &a);
	CHECK_INT(r, 0);
	if (r < 0) {
		fprintf(stderr, "  %s\n", kiln_errmsg());
		return;
	}
	CHECK_STR(a->file, "act/action.yml");
	CHECK_STR(a->name, "Greet");
	CHECK_STR(a->description, "says hello");
	CHECK_INT(a->kind, KILN_ACTION_COMPOSITE);
	CHECK_STR(a->using, "composite");
	CHECK_INT(a->ninputs, 4);
	CHECK_STR(a->inputs[0].name, "who");
	CHECK_STR(a->inputs[0].description, "whom to greet");
	CHECK_STR(a->inputs[0].default_value, "${{ github.actor }}");
	CHECK(!a->inputs[0].required);
	CHECK_STR(a->inputs[1].name, "loud");
	CHECK(a->inputs[1].required);
	CHECK(a->inputs[1].default_value == NULL);
	CHECK_STR(a->inputs[1].deprecation, "use volume");
	CHECK_STR(a->inputs[2].default_value, "3");
	CHECK(a->inputs[3].default_value == NULL);
	CHECK(kiln_action_input_get(a, "WHO") == &a->inputs[0]);
	CHECK(kiln_action_input_get(a, "nope") == NULL);
	CHECK_INT(a->noutputs, 2);
	CHECK_STR(a->outputs[0].name, "said");
	CHECK_STR(a->outputs[0].value, "${{ steps.say.outputs.text }}");
	CHECK_STR(a->outputs[0].description, "what was said");
	CHECK_STR(a->outputs[1].name, "plain");
	CHECK(a->outputs[1].value == NULL);

	CHECK_INT(a->nsteps, 4);
	const kiln_step *s = &a->steps[0];
	CHECK_STR(s->id, "say");
	CHECK_STR(s->name, "Say ${{ inputs.who }}");
	CHECK_STR(s->shell, "bash");
	CHECK_STR(s->working_directory, "sub");
	CHECK_INT(s->env.n, 1);
	CHECK_STR(s->env.v[0].key, "WHO");
	CHECK_STR(s->env.v[0].value, "${{ inputs.who }}");
	CHECK_STR(s->run, "echo \"text=hi $WHO\" >> $GITHUB_OUTPUT");
	CHECK_INT(s->line, 23);
	CHECK_INT(s->col, 7);
	s = &a->steps[1];
	CHECK_STR(s->uses, "./.github/actions/inner");
	CHECK_STR(s->if_cond, "${{ failure() }}");
	CHECK_STR(s->continue_on_error, "true");
	CHECK_INT(s->with.n, 1);
	CHECK_STR(s->with.v[0].key, "x");
	CHECK(s->run == NULL);
	s = &a->steps[2];
	CHECK_STR(s->uses, "octo/tool/sub@v1");
	CHECK_STR(s->continue_on_error, "${{ inputs.loud == 'yes' }}");
	s = &a->steps[3];
	CHECK_STR(s->run, "");
	CHECK_STR(s->shell, "sh");
	kiln_action_free(a);
}

static void test_node_and_docker(void)
{
	kiln_action *a = NULL;
	int r = parse("name: n\n"
		      "inputs:\n"
		      "  my input: {default: x}\n"
		      "outputs:\n"
		      "  out: {description: d}\n"
		      "runs:\n"
		      "  using: node20\n"
		      "  main: dist/index.js\n"
		      "  pre: dist/pre.js\n"
		      "  post: dist/post.js\n"
		      "  post-if: always()\n",
		      &a);
	CHECK_INT(r, 0);
	if (a) {
		CHECK_INT(a->kind, KILN_ACTION_NODE);
		CHECK_STR(a->using, "node20");
		CHECK_STR(a->main, "dist/index.js");
		CHECK_STR(a->pre, "dist/pre.js");
		CHECK_STR(a->post, "dist/post.js");
		CHECK_STR(a->post_if, "always()");
		CHECK_INT(a->noutputs, 1);
		CHECK(a->outputs[0].value == NULL);
		CHECK_INT(a->nsteps, 0);
	}
	kiln_action_free(a);

	static const char *const nodes[] = {"node12", "node16", "Node20", "node24"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(nodes); i++) {
		char doc[128];
		snprintf(doc, sizeof doc, "runs:\n  using: %s\n  main: m.js\n", nodes[i]);
		a = NULL;
		CHECK_INT(parse(doc, &a), 0);
		CHECK(a && a->kind == KILN_ACTION_NODE);
		kiln_action_free(a);
	}

	a = NULL;
	r = parse("runs:\n"
		  "  using: docker\n"
		  "  image: Dockerfile\n"
		  "  args: ['${{ inputs.x }}']\n"
		  "  entrypoint: /e.sh\n",
		  &a);
	CHECK_INT(r, 0);
	if (a) {
		CHECK_INT(a->kind, KILN_ACTION_DOCKER);
		CHECK_STR(a->image, "Dockerfile");
	}
	kiln_action_free(a);

	/* an .yaml with CRLF line ends and no inputs or outputs at all */
	a = NULL;
	r = parse("runs:\r\n  using: composite\r\n  steps: []\r\n", &a);
	CHECK_INT(r, 0);
	CHECK(a && a->nsteps == 0 && a->ninputs == 0 && a->noutputs == 0);
	kiln_action_free(a);
}

static void test_errors(void)
{
	CHECK_FAIL("runs: [\n", "act/action.yml:2:1: did not find expected node content (while parsing a flow node at 2:1)");
	CHECK_FAIL("- a\n- b\n", "act/action.yml:1:1: an action file must be a mapping, not a sequence");
	CHECK_FAIL("name: x\n", "act/action.yml:1:1: an action file needs 'runs'");
	CHECK_FAIL("runs: composite\n", "act/action.yml:1:7: 'runs' must be a mapping, not a string");
	CHECK_FAIL("runs:\n  steps: []\n", "act/action.yml:2:3: 'runs' needs 'using'");
	CHECK_FAIL("runs:\n  using: node10\n  main: x.js\n",
		   "act/action.yml:2:10: unknown 'runs.using' 'node10': kiln runs composite, node20 "
		   "(node24, node16, node12) and docker actions");
	CHECK_FAIL("runs:\n  using: node20\n", "act/action.yml:2:3: a node20 action needs 'runs.main'");
	CHECK_FAIL("runs:\n  using: docker\n", "act/action.yml:2:3: a docker action needs 'runs.image'");
	CHECK_FAIL("runs:\n  using: composite\n",
		   "act/action.yml:2:3: a composite action needs 'runs.steps'");
	CHECK_FAIL("runs:\n  using: composite\n  steps: {a: 1}\n",
		   "act/action.yml:3:10: 'steps' must be a sequence, not a mapping");
	CHECK_FAIL("runs:\n  using: composite\n  main: x.js\n  steps: []\n",
		   "act/action.yml:3:3: unknown key 'main' in composite 'runs'");
	CHECK_FAIL("runs:\n  using: node20\n  main: x.js\n  steps: []\n",
		   "act/action.yml:4:3: unknown key 'steps' in node 'runs'");
	/* steps */
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: echo hi\n",
		   "act/action.yml:4:7: a 'run' step of a composite action needs 'shell' (bash, sh, "
		   "python, pwsh or a command line with {0})");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - name: x\n",
		   "act/action.yml:4:7: a step needs either 'run' or 'uses'");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: a\n      uses: ./b\n      shell: bash\n",
		   "act/action.yml:4:7: a step cannot have both 'run' and 'uses'");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - uses: ./b\n      shell: bash\n",
		   "act/action.yml:5:7: 'shell' is only for 'run' steps, not for 'uses'");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: a\n      shell: bash\n      with: {a: 1}\n",
		   "act/action.yml:6:7: 'with' is only for steps that use an action ('uses')");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: a\n      shell: bash\n"
		   "      timeout-minutes: 3\n",
		   "act/action.yml:6:7: unknown key 'timeout-minutes' in a composite action's step");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - uses: octo/tool\n",
		   "act/action.yml:4:13: 'uses' must be OWNER/REPO[/PATH]@REF, ./PATH or "
		   "docker://IMAGE, not 'octo/tool'");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - uses: ${{ inputs.a }}\n",
		   "act/action.yml:4:13: 'uses' cannot hold expressions ('${{ }}')");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: a\n      shell: bash\n"
		   "      id: 1st\n",
		   "act/action.yml:6:11: invalid step id '1st': it must start with a letter or '_', "
		   "contain only letters, digits, '-' and '_', not start with '__' and be under 100 "
		   "characters");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n"
		   "    - {id: a, run: x, shell: sh}\n"
		   "    - {id: a, run: y, shell: sh}\n",
		   "act/action.yml:5:12: duplicate step id 'a' (first at 4:7)");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: a\n      shell: bash\n"
		   "      continue-on-error: maybe\n",
		   "act/action.yml:6:26: 'continue-on-error' must be true, false or an expression");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: a\n      shell: bash\n"
		   "      env: [A]\n",
		   "act/action.yml:6:12: 'env' must be a mapping, not a sequence");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: a\n      shell: bash\n"
		   "      env: {A=B: x}\n",
		   "act/action.yml:6:13: invalid environment variable name 'A=B'");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - 3\n",
		   "act/action.yml:4:7: a step must be a mapping, not a string");
	/* expressions: the contexts GitHub's action schema allows at each place */
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: echo ${{ secrets.X }}\n"
		   "      shell: bash\n",
		   "act/action.yml:4:12: 'run': Unrecognized named-value: 'secrets'. Located at "
		   "position 1 within expression: secrets.X");
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: echo ${{ success() }}\n"
		   "      shell: bash\n",
		   "act/action.yml:4:12: 'run': Unrecognized function: 'success'. Located at "
		   "position 1 within expression: success()");
	{
		kiln_action *u = NULL;
		CHECK(parse("runs:\n  using: composite\n  steps:\n    - run: echo ${{ github.x\n"
			    "      shell: bash\n",
			    &u) == -EINVAL);
		CHECK(strncmp(kiln_errmsg(), "act/action.yml:4:12: 'run': ", 28) == 0);
		kiln_action_free(u);
	}
	CHECK_FAIL("runs:\n  using: composite\n  steps:\n    - run: a\n      shell: bash\n"
		   "      if: vars.X == 1\n",
		   "act/action.yml:6:11: 'if': Unrecognized named-value: 'vars'. Located at position "
		   "1 within expression: vars.X == 1");
	CHECK_FAIL("inputs:\n  a:\n    default: ${{ steps.x.outputs.y }}\n"
		   "runs: {using: node20, main: a.js}\n",
		   "act/action.yml:3:14: 'default': Unrecognized named-value: 'steps'. Located at "
		   "position 1 within expression: steps.x.outputs.y");
	CHECK_FAIL("outputs:\n  a:\n    value: ${{ hashFiles('x') }}\n"
		   "runs: {using: composite, steps: []}\n",
		   "act/action.yml:3:12: 'value': Unrecognized function: 'hashFiles'. Located at "
		   "position 1 within expression: hashFiles('x')");
	/* inputs and outputs */
	CHECK_FAIL("inputs: [a]\nruns: {using: node20, main: a.js}\n",
		   "act/action.yml:1:9: 'inputs' must be a mapping, not a sequence");
	CHECK_FAIL("inputs:\n  a: 3\nruns: {using: node20, main: a.js}\n",
		   "act/action.yml:2:6: input 'a' must be a mapping, not a string");
	CHECK_FAIL("inputs:\n  a: {}\n  A: {}\nruns: {using: node20, main: a.js}\n",
		   "act/action.yml:3:3: input 'A' is defined twice (names are compared without case)");
	CHECK_FAIL("inputs:\n  a:\n    default: [1]\nruns: {using: node20, main: a.js}\n",
		   "act/action.yml:3:14: the default of input 'a' must be a string, not a sequence");
	CHECK_FAIL("outputs:\n  a: {value: x, valu: y}\nruns: {using: composite, steps: []}\n",
		   "act/action.yml:2:17: unknown key 'valu' in an output");
	CHECK_FAIL("outputs:\n  a: [x]\nruns: {using: composite, steps: []}\n",
		   "act/action.yml:2:6: output 'a' must be a mapping, not a sequence");

	/* limits */
	size_t n = KILN_ACTION_MAX_BYTES + 16;
	char *big = malloc(n + 1);
	memset(big, '#', n);
	big[n] = '\0';
	kiln_action *a = NULL;
	CHECK(kiln_action_parse("big.yml", big, n, &a) == -E2BIG);
	CHECK(a == NULL);
	free(big);
	kiln_action_free(NULL);
}

static void test_refs(void)
{
	agent_action_ref r;
	CHECK_INT(agent_action_ref_parse("./.github/actions/x", &r), 0);
	CHECK_INT(r.kind, AGENT_ACTION_LOCAL);
	CHECK_STR(r.path, ".github/actions/x");
	agent_action_ref_clear(&r);
	CHECK_INT(agent_action_ref_parse("./", &r), 0);
	CHECK_STR(r.path, "");
	agent_action_ref_clear(&r);
	CHECK_INT(agent_action_ref_parse("./a/b/", &r), 0);
	CHECK_STR(r.path, "a/b");
	agent_action_ref_clear(&r);
	CHECK(agent_action_ref_parse("./../x", &r) == -EINVAL);
	CHECK(agent_action_ref_parse("./a/../../x", &r) == -EINVAL);

	CHECK_INT(agent_action_ref_parse("docker://alpine:3", &r), 0);
	CHECK_INT(r.kind, AGENT_ACTION_DOCKER);
	agent_action_ref_clear(&r);

	CHECK_INT(agent_action_ref_parse("octo/tool@v1", &r), 0);
	CHECK_INT(r.kind, AGENT_ACTION_REMOTE);
	CHECK_STR(r.owner, "octo");
	CHECK_STR(r.repo, "tool");
	CHECK_STR(r.path, "");
	CHECK_STR(r.ref, "v1");
	agent_action_ref_clear(&r);
	CHECK_INT(agent_action_ref_parse("octo/.github/actions/setup@releases/v2", &r), 0);
	CHECK_STR(r.repo, ".github");
	CHECK_STR(r.path, "actions/setup");
	CHECK_STR(r.ref, "releases/v2");
	agent_action_ref_clear(&r);
	CHECK(agent_action_ref_parse("octo/tool/../../etc@v1", &r) == -EINVAL);
	CHECK(agent_action_ref_parse("octo/../x@v1", &r) == -EINVAL);
	CHECK(agent_action_ref_parse("../tool@v1", &r) == -EINVAL);
	CHECK(agent_action_ref_parse("octo/tool@../../x", &r) == -EINVAL);
	CHECK(agent_action_ref_parse("octo/tool@-x", &r) == -EINVAL);
	CHECK(agent_action_ref_parse("octo/to ol@v1", &r) == -EINVAL);
	CHECK(agent_action_ref_parse("octo@v1", &r) == -EINVAL);
	CHECK(agent_action_ref_parse("octo/tool", &r) == -EINVAL);

	/* the cache and artifact actions are built in now (agent/store.c) */
	CHECK_STR(agent_action_unsupported("actions/upload-artifact/merge@v4"),
		  "actions/upload-artifact/merge");
	CHECK(agent_action_unsupported("actions/cache@v4") == NULL);
	CHECK(agent_action_unsupported("actions/download-artifact@v3") == NULL);
	CHECK(agent_action_unsupported("actions/checkout@v4") == NULL);
	CHECK(agent_action_unsupported("actions/cache-extra@v1") == NULL);
}

static void test_source(void)
{
	char *u = agent_action_url(AGENT_ACTION_SOURCE_DEFAULT, "octo", "tool");
	CHECK_STR(u, "https://github.com/octo/tool");
	free(u);
	u = agent_action_url("file:///srv/{owner}/{repo}.git", "octo", "tool");
	CHECK_STR(u, "file:///srv/octo/tool.git");
	free(u);
	u = agent_action_url("https://forge.example/mirror/", "octo", "tool");
	CHECK_STR(u, "https://forge.example/mirror/octo/tool");
	free(u);

	unsetenv("KILN_ACTION_SOURCE");
	CHECK_STR(agent_action_source(NULL), AGENT_ACTION_SOURCE_DEFAULT);
	setenv("KILN_ACTION_SOURCE", "/srv/{owner}/{repo}", 1);
	CHECK_STR(agent_action_source(NULL), "/srv/{owner}/{repo}");
	CHECK_STR(agent_action_source(""), "/srv/{owner}/{repo}");
	CHECK_STR(agent_action_source("/x/{repo}"), "/x/{repo}");
	unsetenv("KILN_ACTION_SOURCE");

	char *e = kiln_action_input_env("my input-name");
	CHECK_STR(e, "INPUT_MY_INPUT-NAME");
	free(e);
}

int main(void)
{
	test_composite();
	test_node_and_docker();
	test_errors();
	test_refs();
	test_source();
	return check_done();
}
