/*
 * test_trigger — common/trigger: GitHub's filter patterns (the cheat sheet's
 * examples), `on:` filters of push, pull_request and workflow_run, [skip ci],
 * and the typed inputs of workflow_dispatch.
 */
#include "common/trigger.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <string.h>

static kiln_workflow *parse(const char *text)
{
	kiln_workflow *wf = NULL;
	if (kiln_workflow_parse("t.yml", text, strlen(text), &wf) < 0) {
		fprintf(stderr, "parse: %s\n", kiln_errmsg());
		return NULL;
	}
	return wf;
}

static void test_patterns(void)
{
	/* from GitHub's "Filter pattern cheat sheet" */
	CHECK(kiln_filter_match("feature/*", "feature/my-branch"));
	CHECK(!kiln_filter_match("feature/*", "feature/your-branch/x"));
	CHECK(kiln_filter_match("feature/**", "feature/beta-a/my-branch"));
	CHECK(kiln_filter_match("feature/**", "feature/"));
	CHECK(kiln_filter_match("main", "main"));
	CHECK(!kiln_filter_match("main", "mainline"));
	CHECK(kiln_filter_match("releases/mona-the-octocat", "releases/mona-the-octocat"));
	CHECK(kiln_filter_match("*", "main"));
	CHECK(!kiln_filter_match("*", "releases/v1"));
	CHECK(kiln_filter_match("**", "all/the/branches"));
	CHECK(kiln_filter_match("*feature", "mona-feature"));
	CHECK(kiln_filter_match("*feature", "feature"));
	CHECK(!kiln_filter_match("*feature", "ver/feature"));
	CHECK(kiln_filter_match("v2*", "v2"));
	CHECK(kiln_filter_match("v2*", "v2.0.9"));
	CHECK(kiln_filter_match("v[12].[0-9]+.[0-9]+", "v1.10.1"));
	CHECK(kiln_filter_match("v[12].[0-9]+.[0-9]+", "v2.0.0"));
	CHECK(!kiln_filter_match("v[12].[0-9]+.[0-9]+", "v3.0.0"));
	CHECK(!kiln_filter_match("v[12].[0-9]+.[0-9]+", "v1..1"));
	CHECK(kiln_filter_match("v1.?", "v1"));    /* ? makes the '.' optional */
	CHECK(kiln_filter_match("v1.?", "v1."));
	CHECK(!kiln_filter_match("v1.?", "v1.0"));
	/* paths */
	CHECK(kiln_filter_match("*.js", "app.js"));
	CHECK(!kiln_filter_match("*.js", "js/index.js"));
	CHECK(kiln_filter_match("**.js", "js/index.js"));
	CHECK(kiln_filter_match("docs/*", "docs/README.md"));
	CHECK(!kiln_filter_match("docs/*", "docs/a/b.md"));
	CHECK(kiln_filter_match("docs/**", "docs/mona/octocat.txt"));
	CHECK(kiln_filter_match("docs/**/*.md", "docs/a/b/c.md"));
	CHECK(kiln_filter_match("docs/**/*.md", "docs/c.md"));
	CHECK(kiln_filter_match("**/docs/**", "/docs/hello.md"));
	CHECK(kiln_filter_match("**/docs/**", "dir/docs/my-file.txt"));
	CHECK(kiln_filter_match("**/README.md", "README.md"));
	CHECK(kiln_filter_match("**/README.md", "js/README.md"));
	CHECK(kiln_filter_match("**/*src/**", "a/src/app.js"));
	CHECK(kiln_filter_match("**/*-post.md", "my-post.md"));
	CHECK(kiln_filter_match("**/*-post.md", "path/their-post.md"));
	CHECK(kiln_filter_match("**/migrate-*.sql", "migrate-10909.sql"));
	CHECK(kiln_filter_match("**/migrate-*.sql", "db/migrate-v1.0.sql"));
	CHECK(kiln_filter_match("*.md", "README.md"));
	CHECK(!kiln_filter_match("*.md", "docs/README.md"));
	/* escapes, and hostile stars stay cheap */
	CHECK(kiln_filter_match("a\\*b", "a*b"));
	CHECK(!kiln_filter_match("a\\*b", "axb"));
	char s[3000];
	memset(s, 'a', sizeof s - 1);
	s[sizeof s - 1] = 0;
	CHECK(!kiln_filter_match("**a**a**a**a**a**a**a**a**a**a**b", s));
	CHECK(kiln_filter_match("**a**a**a**a**a**a**a**a**a**a**", s));
	/* lists: the last pattern that matches decides */
	kiln_strv l = {0};
	kiln_strv_push(&l, "releases/**");
	kiln_strv_push(&l, "!releases/**-alpha");
	CHECK(kiln_filter_list(&l, "releases/10"));
	CHECK(kiln_filter_list(&l, "releases/beta/mona"));
	CHECK(!kiln_filter_list(&l, "releases/10-alpha"));
	CHECK(!kiln_filter_list(&l, "main"));
	kiln_strv_push(&l, "releases/keep-alpha");
	CHECK(kiln_filter_list(&l, "releases/keep-alpha"));
	kiln_strv_free(&l);
}

static void test_push(void)
{
	kiln_workflow *wf = parse("on:\n  push:\n    branches: [main, 'releases/**']\n"
				  "    paths: ['src/**', '!src/**/*.md']\n"
				  "jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n");
	CHECK(wf != NULL);
	if (!wf)
		return;
	kiln_strv changed = {0};
	kiln_strv_push(&changed, "src/a.c");
	kiln_trigger t = {.event = "push", .ref = "refs/heads/main", .paths = &changed};
	const char *why = NULL;
	CHECK(kiln_trigger_match(wf, &t, &why));
	t.ref = "refs/heads/releases/1/2";
	CHECK(kiln_trigger_match(wf, &t, NULL));
	t.ref = "refs/heads/feature";
	CHECK(!kiln_trigger_match(wf, &t, &why));
	CHECK(why && strstr(why, "branch"));
	t.ref = "refs/tags/v1"; /* branches only: tags do not run it */
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	t.ref = "refs/heads/main";
	kiln_strv_free(&changed);
	kiln_strv_push(&changed, "src/notes/x.md");
	kiln_strv_push(&changed, "README.md");
	CHECK(!kiln_trigger_match(wf, &t, &why));
	CHECK(why && strstr(why, "paths"));
	t.paths = NULL; /* unknown (too many files): paths filters hold */
	CHECK(kiln_trigger_match(wf, &t, NULL));
	t.event = "pull_request";
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	kiln_strv_free(&changed);
	kiln_workflow_free(wf);

	wf = parse("on:\n  push:\n    tags: ['v*']\n    paths-ignore: ['docs/**']\n"
		   "jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n");
	if (!wf)
		return;
	kiln_strv docs = {0};
	kiln_strv_push(&docs, "docs/a.md");
	t = (kiln_trigger){.event = "push", .ref = "refs/tags/v1.0", .paths = &docs};
	CHECK(kiln_trigger_match(wf, &t, NULL)); /* no paths filters for tags */
	t.ref = "refs/tags/nightly";
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	t.ref = "refs/heads/main";
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	kiln_strv_free(&docs);
	kiln_workflow_free(wf);

	wf = parse("on:\n  push:\n    branches-ignore: ['wip/**']\n    paths-ignore: ['docs/**']\n"
		   "jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n");
	if (!wf)
		return;
	kiln_strv both = {0};
	kiln_strv_push(&both, "docs/a.md");
	t = (kiln_trigger){.event = "push", .ref = "refs/heads/main", .paths = &both};
	CHECK(!kiln_trigger_match(wf, &t, NULL)); /* every file ignored */
	kiln_strv_push(&both, "lib/b.c");
	CHECK(kiln_trigger_match(wf, &t, NULL));
	t.ref = "refs/heads/wip/x";
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	kiln_strv_free(&both);
	kiln_workflow_free(wf);
}

static void test_pull_request_and_more(void)
{
	kiln_workflow *wf = parse("on:\n  pull_request:\n    branches: [main]\n"
				  "  workflow_run:\n    workflows: [Build]\n    types: [completed]\n"
				  "    branches: [main]\n"
				  "  repository_dispatch:\n    types: [deploy]\n"
				  "jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n");
	CHECK(wf != NULL);
	if (!wf)
		return;
	kiln_trigger t = {.event = "pull_request", .ref = "main", .action = "opened"};
	CHECK(kiln_trigger_match(wf, &t, NULL));
	t.action = "synchronize";
	CHECK(kiln_trigger_match(wf, &t, NULL));
	t.action = "closed"; /* not in the default types */
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	t.action = "reopened";
	t.ref = "develop";
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	t = (kiln_trigger){.event = "workflow_run", .ref = "main", .action = "completed",
			   .workflow = "Build"};
	CHECK(kiln_trigger_match(wf, &t, NULL));
	t.action = "requested";
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	t.action = "completed";
	t.workflow = "Lint";
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	t = (kiln_trigger){.event = "repository_dispatch", .action = "deploy"};
	CHECK(kiln_trigger_match(wf, &t, NULL));
	t.action = "other";
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	t = (kiln_trigger){.event = "push", .ref = "refs/heads/main"};
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	kiln_workflow_free(wf);

	wf = parse("on: [push, pull_request]\n"
		   "jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n");
	if (!wf)
		return;
	t = (kiln_trigger){.event = "pull_request", .ref = "x", .action = "closed"};
	CHECK(!kiln_trigger_match(wf, &t, NULL));
	t.action = "opened";
	CHECK(kiln_trigger_match(wf, &t, NULL));
	t = (kiln_trigger){.event = "push", .ref = "refs/tags/any"};
	CHECK(kiln_trigger_match(wf, &t, NULL));
	kiln_workflow_free(wf);
}

static void test_skip_ci(void)
{
	CHECK(kiln_trigger_skip_ci("fix typo [skip ci]"));
	CHECK(kiln_trigger_skip_ci("[CI SKIP] x"));
	CHECK(kiln_trigger_skip_ci("a\n\nb [no ci]"));
	CHECK(kiln_trigger_skip_ci("[skip actions]"));
	CHECK(kiln_trigger_skip_ci("[actions skip]"));
	CHECK(!kiln_trigger_skip_ci("skip ci"));
	CHECK(!kiln_trigger_skip_ci("[skip-ci]"));
	CHECK(!kiln_trigger_skip_ci(NULL));
}

static void test_dispatch_inputs(void)
{
	kiln_workflow *wf = parse("on:\n  workflow_dispatch:\n    inputs:\n"
				  "      target:\n        type: choice\n        options: [a, b]\n"
				  "        required: true\n"
				  "      dry:\n        type: boolean\n        default: true\n"
				  "      n:\n        type: number\n        default: 2\n"
				  "      env:\n        type: environment\n"
				  "      note:\n        description: free text\n"
				  "jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n");
	CHECK(wf != NULL);
	if (!wf)
		return;
	const kiln_event *ev = kiln_workflow_event(wf, "workflow_dispatch");
	json_t *out = NULL;
	json_t *given = json_pack("{s:s}", "target", "b");
	CHECK(kiln_trigger_dispatch_inputs(ev, given, &out) == 0);
	CHECK_STR(json_string_value(json_object_get(out, "target")), "b");
	CHECK(json_is_true(json_object_get(out, "dry")));
	CHECK_INT(json_integer_value(json_object_get(out, "n")), 2);
	CHECK_STR(json_string_value(json_object_get(out, "note")), "");
	json_decref(out);
	json_decref(given);

	given = json_pack("{s:s, s:s, s:s, s:b}", "target", "a", "n", "2.5", "note", "hi", "dry", 0);
	CHECK(kiln_trigger_dispatch_inputs(ev, given, &out) == 0);
	CHECK(json_is_real(json_object_get(out, "n")));
	CHECK(json_is_false(json_object_get(out, "dry")));
	json_decref(out);
	json_decref(given);

	static const char *const bad[][3] = {
		{"target", "c", "must be one of: a, b"},
		{"dry", "yes", "boolean"},
		{"n", "1e", "number"},
		{"other", "x", "unexpected input 'other'"},
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
		given = json_pack("{s:s}", "target", "a");
		json_object_set_new(given, bad[i][0], json_string(bad[i][1]));
		out = NULL;
		CHECK(kiln_trigger_dispatch_inputs(ev, given, &out) == -EINVAL);
		CHECK(out == NULL);
		CHECK(strstr(kiln_errmsg(), bad[i][2]) != NULL);
		json_decref(given);
	}
	given = json_object();
	CHECK(kiln_trigger_dispatch_inputs(ev, given, &out) == -EINVAL);
	CHECK(strstr(kiln_errmsg(), "'target' is required") != NULL);
	json_object_set_new(given, "target", json_pack("[s]", "a"));
	CHECK(kiln_trigger_dispatch_inputs(ev, given, &out) == -EINVAL);
	json_decref(given);
	/* a workflow_dispatch without inputs takes none */
	given = json_pack("{s:s}", "x", "1");
	CHECK(kiln_trigger_dispatch_inputs(NULL, given, &out) == -EINVAL);
	CHECK(kiln_trigger_dispatch_inputs(NULL, NULL, &out) == 0 && json_object_size(out) == 0);
	json_decref(out);
	json_decref(given);
	kiln_workflow_free(wf);
}

int main(void)
{
	test_patterns();
	test_push();
	test_pull_request_and_more();
	test_skip_ci();
	test_dispatch_inputs();
	return check_done();
}
