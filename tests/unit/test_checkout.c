/*
 * test_checkout — the built-in actions/checkout (agent/checkout.c) on real repositories made
 * with the git command line (posix_spawnp, never system()) in a temporary directory: refs,
 * paths, other repositories, fetch-depth and tags, submodules, clean, tokens, local mode.
 * Everything is local: no remote host is ever contacted.
 */
#include "agent/checkout.h"
#include "common/git.h"
#include "common/util.h"
#include "tests/harness/check.h"
#include "tests/harness/repo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


static char *root; /* the temporary directory everything lives in */

static void commit_all(const char *dir, const char *msg, char sha[41])
{
	CHECK_INT(GIT(dir, "add", "-A"), 0);
	CHECK_INT(GIT(dir, "commit", "-q", "-m", msg), 0);
	if (sha)
		head_sha(dir, sha);
}

static void git_init(const char *dir, const char *branch)
{
	CHECK_INT(spawn_in(NULL,
	                   (const char *const[]){"git", "init", "-q", "-b", branch, dir, NULL},
	                   NULL),
	          0);
}

/* ---- repositories -------------------------------------------------------- */

static char *org, *main_repo, *lib_repo, *deep_repo, *super_repo;
/* main: c1 (tag v1, annotated) - c2 (tag v2-light, lightweight) - c3; feature: c2 - f1;
   refs/pull/7/head: c3 - p1 (on no branch) */
static char c1[41], c2[41], c3[41], f1[41], p1[41];
static char l1[41], d1[41], s1[41];

static void make_repos(void)
{
	org = path_of(root, "forge/org");
	main_repo = path_of(org, "main");
	git_init(main_repo, "main");
	put(main_repo, "a.txt", "one\n");
	put(main_repo, "dir/b.txt", "b\n");
	commit_all(main_repo, "c1", c1);
	CHECK_INT(GIT(main_repo, "tag", "-a", "v1", "-m", "release v1"), 0);
	put(main_repo, "a.txt", "two\n");
	commit_all(main_repo, "c2", c2);
	CHECK_INT(GIT(main_repo, "tag", "v2-light"), 0);
	CHECK_INT(GIT(main_repo, "checkout", "-q", "-b", "feature"), 0);
	put(main_repo, "feature.txt", "feature\n");
	commit_all(main_repo, "f1", f1);
	CHECK_INT(GIT(main_repo, "checkout", "-q", "main"), 0);
	put(main_repo, "a.txt", "three\n");
	commit_all(main_repo, "c3", c3);
	/* a pull request head, on no branch */
	CHECK_INT(GIT(main_repo, "checkout", "-q", "--detach"), 0);
	put(main_repo, "pr.txt", "pr\n");
	commit_all(main_repo, "p1", p1);
	CHECK_INT(GIT(main_repo, "update-ref", "refs/pull/7/head", p1), 0);
	CHECK_INT(GIT(main_repo, "checkout", "-q", "main"), 0);

	deep_repo = path_of(org, "deep");
	git_init(deep_repo, "main");
	put(deep_repo, "deep.txt", "deep\n");
	commit_all(deep_repo, "d1", d1);

	/* lib: default branch trunk, with the submodule deep (relative URL) */
	lib_repo = path_of(org, "lib");
	git_init(lib_repo, "trunk");
	put(lib_repo, "lib.txt", "lib\n");
	CHECK_INT(GIT(lib_repo, "add", "-A"), 0);
	CHECK_INT(GIT(lib_repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q",
	              "../deep", "deep"),
	          0);
	commit_all(lib_repo, "l1", l1);

	/* super: lib under libs/lib by a relative URL, deep at the top by an absolute path */
	super_repo = path_of(org, "super");
	git_init(super_repo, "main");
	put(super_repo, "super.txt", "super\n");
	CHECK_INT(GIT(super_repo, "add", "-A"), 0);
	CHECK_INT(GIT(super_repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q",
	              "../lib", "libs/lib"),
	          0);
	CHECK_INT(GIT(super_repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q",
	              deep_repo, "deep"),
	          0);
	commit_all(super_repo, "s1", s1);
	/* lib moves on: the superproject still records l1 */
	put(lib_repo, "lib.txt", "lib moved on\n");
	commit_all(lib_repo, "l2", NULL);
}

/* ---- the fake job --------------------------------------------------------- */

static agent fake_agent;
static Kiln__JobAssignment spec = KILN__JOB_ASSIGNMENT__INIT;
static agent_job job = {.a = &fake_agent, .spec = &spec};
static char *ws;
static kiln_strv logs;

static void log_line(void *arg, const char *text)
{
	if (getenv("KILN_TEST_VERBOSE"))
		fprintf(stderr, "  | %s\n", text);
	kiln_strv_push(arg, text);
}

/* Whether some log line of the last checkout contains `needle`. */
static bool logged(const char *needle)
{
	for (size_t i = 0; i < logs.n; i++)
		if (strstr(logs.v[i], needle))
			return true;
	return false;
}

static void dump_logs(void)
{
	for (size_t i = 0; i < logs.n; i++)
		fprintf(stderr, "  log: %s\n", logs.v[i]);
}

/* Runs actions/checkout with inputs given as name, value, ..., NULL in the workspace `ws`. */
static int checkout_in(const char *w, const char *name, ...)
{
	json_t *with = json_object();
	va_list ap;
	va_start(ap, name);
	for (const char *k = name; k; k = va_arg(ap, const char *))
		json_object_set_new(with, k, json_string(va_arg(ap, const char *)));
	va_end(ap);
	kiln_strv_free(&logs);
	agent_checkout_ctx cc = {
	    .j = &job, .ws = w, .with = with, .log = log_line, .log_arg = &logs};
	int r = agent_checkout(&cc);
	if (r < 0 && getenv("KILN_TEST_VERBOSE"))
		fprintf(stderr, "  ! %s\n", kiln_errmsg());
	json_decref(with);
	return r;
}

#define CHECKOUT(...) checkout_in(ws, __VA_ARGS__, NULL)

static void expect_ok(int r, int line)
{
	if (r < 0) {
		fprintf(stderr, "line %d: checkout failed: %s\n", line, kiln_errmsg());
		dump_logs();
	}
	CHECK_INT(r, 0);
}
#define OK(r) expect_ok((r), __LINE__)

static void reset_ws(void)
{
	CHECK_INT(kiln_clear_dir(ws, 0755), 0);
}

static void check_clean_status(const char *dir)
{
	_cleanup_free_ char *st = GIT_OUT(dir, "status", "--porcelain");
	CHECK_STR(st, "");
}

static void check_branch(const char *dir, const char *want)
{
	_cleanup_free_ char *b = GIT_OUT(dir, "branch", "--show-current");
	CHECK_STR(b, want);
}

static void check_head(const char *dir, const char *want)
{
	char sha[41];
	head_sha(dir, sha);
	CHECK_STR(sha, want);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_default(void)
{
	/* The job's repository at the job's commit (c2, older than main's tip), on its branch. */
	OK(checkout_in(ws, NULL));
	check_get(ws, "a.txt", "two\n");
	check_get(ws, "dir/b.txt", "b\n");
	CHECK(!exists(ws, "feature.txt"));
	check_head(ws, c2);
	check_branch(ws, "main");
	check_clean_status(ws);
	_cleanup_free_ char *origin = GIT_OUT(ws, "remote", "get-url", "origin");
	CHECK_STR(origin, main_repo);
	_cleanup_free_ char *up = GIT_OUT(ws, "rev-parse", "--abbrev-ref", "main@{upstream}");
	CHECK_STR(up, "origin/main");
	_cleanup_free_ char *log = GIT_OUT(ws, "log", "--format=%s");
	CHECK_STR(log, "c2\nc1"); /* full history, even with fetch-depth 1 */
	/* fetch-depth 1 (the default): no tags, as on GitHub */
	_cleanup_free_ char *tags = GIT_OUT(ws, "tag");
	CHECK_STR(tags, "");
	CHECK(logged("Fetched ") && logged(main_repo));
	CHECK(logged("Checked out org/main main at ") && logged("on branch main"));
	CHECK_INT(logs.n, 2);

	/* Again: the commit is in the mirror now, and the workspace is emptied first. */
	put(ws, "junk.txt", "junk\n");
	OK(checkout_in(ws, NULL));
	CHECK(logged("already in the agent's mirror"));
	CHECK(!exists(ws, "junk.txt"));
	check_clean_status(ws);
}

static void test_refs(void)
{
	reset_ws();
	OK(CHECKOUT("ref", "feature"));
	check_head(ws, f1);
	check_branch(ws, "feature");
	check_get(ws, "feature.txt", "feature\n");
	check_clean_status(ws);
	_cleanup_free_ char *up = GIT_OUT(ws, "rev-parse", "--abbrev-ref", "feature@{upstream}");
	CHECK_STR(up, "origin/feature");

	OK(CHECKOUT("ref", "refs/heads/main"));
	check_head(ws, c3);
	check_branch(ws, "main");
	check_get(ws, "a.txt", "three\n");

	/* a tag: detached, and that tag is there (so git describe names it) */
	OK(CHECKOUT("ref", "v1"));
	check_head(ws, c1);
	check_branch(ws, "");
	check_get(ws, "a.txt", "one\n");
	_cleanup_free_ char *tags = GIT_OUT(ws, "tag");
	CHECK_STR(tags, "v1");
	_cleanup_free_ char *desc = GIT_OUT(ws, "describe");
	CHECK_STR(desc, "v1");
	CHECK(logged("HEAD detached"));
	check_clean_status(ws);

	OK(CHECKOUT("ref", "refs/tags/v2-light"));
	check_head(ws, c2);
	check_branch(ws, "");

	/* a sha, a short sha */
	OK(CHECKOUT("ref", c1));
	check_head(ws, c1);
	check_branch(ws, "");
	char abbrev[9];
	memcpy(abbrev, f1, 8);
	abbrev[8] = '\0';
	OK(CHECKOUT("ref", abbrev));
	check_head(ws, f1);
	check_branch(ws, "");

	/* a ref outside branches and tags is fetched by name */
	OK(CHECKOUT("ref", "refs/pull/7/head"));
	check_head(ws, p1);
	check_get(ws, "pr.txt", "pr\n");

	/* unknown refs: the error names the repository and the ref, and nothing is left */
	reset_ws();
	CHECK(CHECKOUT("ref", "no-such-branch") < 0);
	CHECK(strstr(kiln_errmsg(), "no-such-branch") != NULL);
	CHECK(strstr(kiln_errmsg(), "org/main") != NULL);
	CHECK(CHECKOUT("ref", "0123456789abcdef0123456789abcdef01234567") < 0);
	CHECK(strstr(kiln_errmsg(), "0123456789abcdef0123456789abcdef01234567") != NULL);
	CHECK(strstr(kiln_errmsg(), "org/main") != NULL);
	CHECK(CHECKOUT("ref", "refs/heads/nope") < 0);
	CHECK(strstr(kiln_errmsg(), "refs/heads/nope") != NULL);
	_cleanup_free_ char *left = NULL;
	CHECK_INT(spawn_in(ws, (const char *const[]){"sh", "-c", "ls -A | wc -l", NULL}, &left), 0);
	CHECK_STR(left, "0");
}

static void test_depth_and_tags(void)
{
	reset_ws();
	OK(CHECKOUT("fetch-depth", "0"));
	check_head(ws, c2);
	_cleanup_free_ char *desc = GIT_OUT(ws, "describe", "--tags");
	CHECK_STR(desc, "v2-light");
	char abbrev[8];
	memcpy(abbrev, c2, 7);
	abbrev[7] = '\0';
	_cleanup_free_ char *desc2 = GIT_OUT(ws, "describe", "--abbrev=7");
	_cleanup_free_ char *want = kiln_asprintf("v1-1-g%s", abbrev);
	CHECK_STR(desc2, want);
	_cleanup_free_ char *tags = GIT_OUT(ws, "tag");
	CHECK_STR(tags, "v1\nv2-light");
	_cleanup_free_ char *branches = GIT_OUT(ws, "branch", "-r");
	CHECK(strstr(branches, "origin/feature") && strstr(branches, "origin/main"));

	/* fetch-depth N > 0 is accepted (history whole anyway); fetch-tags brings the tags */
	OK(CHECKOUT("fetch-depth", "5", "fetch-tags", "true"));
	_cleanup_free_ char *tags2 = GIT_OUT(ws, "tag");
	CHECK_STR(tags2, "v1\nv2-light");
	OK(CHECKOUT("fetch-depth", "5"));
	_cleanup_free_ char *tags3 = GIT_OUT(ws, "tag");
	CHECK_STR(tags3, "");
	_cleanup_free_ char *count = GIT_OUT(ws, "rev-list", "--count", "HEAD");
	CHECK_STR(count, "2");
	/* as GitHub: what is not a number >= 0 counts as 0 */
	OK(CHECKOUT("fetch-depth", "lots"));
	_cleanup_free_ char *tags4 = GIT_OUT(ws, "tag");
	CHECK_STR(tags4, "v1\nv2-light");

	CHECK(CHECKOUT("fetch-tags", "yes") < 0);
	CHECK(strstr(kiln_errmsg(), "fetch-tags") != NULL);
}

static void test_paths(void)
{
	reset_ws();
	OK(CHECKOUT("path", "sub/dir"));
	_cleanup_free_ char *sub = path_of(ws, "sub/dir");
	check_get(sub, "a.txt", "two\n");
	check_branch(sub, "main");
	check_clean_status(sub);
	CHECK(logged("into sub/dir"));
	OK(CHECKOUT("path", "./sub//other/", "ref", "v1"));
	_cleanup_free_ char *other = path_of(ws, "sub/other");
	check_get(other, "a.txt", "one\n");
	check_get(sub, "a.txt", "two\n"); /* the first checkout stays */
	_cleanup_free_ char *abs = path_of(ws, "abs");
	OK(CHECKOUT("path", abs));
	check_get(abs, "a.txt", "two\n");
	_cleanup_free_ char *dots = path_of(ws, "a..b");
	OK(CHECKOUT("path", "a..b"));
	check_get(dots, "a.txt", "two\n");

	/* escapes are refused, and nothing is written outside */
	static const char *const bad[] = {"..", "../x", "sub/../../x", "/etc", "/tmp/x"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
		CHECK_INT(CHECKOUT("path", bad[i]), -EINVAL);
		CHECK(strstr(kiln_errmsg(), "inside the workspace") != NULL);
	}
	CHECK(!exists(root, "x"));
	_cleanup_free_ char *outside = path_of(root, "outside");
	CHECK_INT(kiln_mkdir_p(outside, 0755), 0);
	put(outside, "precious.txt", "precious\n");
	_cleanup_free_ char *link = path_of(ws, "link");
	CHECK_INT(symlink(outside, link), 0);
	CHECK_INT(CHECKOUT("path", "link"), -EINVAL);
	CHECK(strstr(kiln_errmsg(), "symlink") != NULL);
	CHECK_INT(CHECKOUT("path", "link/x"), -EINVAL);
	check_get(outside, "precious.txt", "precious\n");
	CHECK(!exists(outside, "x") && !exists(outside, "a.txt"));

	/* owner/name -> URL */
	static const char *const urls[][4] = {
	    {"https://forge.example/o/r.git", NULL, "x/y", "https://forge.example/x/y.git"},
	    {"https://forge.example:8443/group/o/r/", NULL, "x/y",
	     "https://forge.example:8443/group/x/y"},
	    {"git@forge.example:o/r.git", NULL, "x/y", "git@forge.example:x/y.git"},
	    {"ssh://git@forge.example/o/r", NULL, "x/y", "ssh://git@forge.example/x/y"},
	    {"/srv/git/o/r", NULL, "x/y", "/srv/git/x/y"},
	    {"/srv/git/o/r", "https://gitea.example/", "x/y", "https://gitea.example/x/y"},
	    {"https://forge.example/r", NULL, "x/y", NULL},
	    {"git@forge.example:r", NULL, "x/y", NULL},
	    {"/r", NULL, "x/y", NULL},
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(urls); i++) {
		_cleanup_free_ char *u =
		    agent_checkout_repo_url(urls[i][0], urls[i][1], urls[i][2]);
		if (urls[i][3])
			CHECK_STR(u, urls[i][3]);
		else
			CHECK(u == NULL && strstr(kiln_errmsg(), "x/y"));
	}

	/* agent_inside itself */
	_cleanup_free_ char *p1_ = agent_inside("/w", "a/./b/");
	CHECK_STR(p1_, "/w/a/b");
	_cleanup_free_ char *p2_ = agent_inside("/w", NULL);
	CHECK_STR(p2_, "/w");
	_cleanup_free_ char *p3_ = agent_inside("/w", "/w/x");
	CHECK_STR(p3_, "/w/x");
	_cleanup_free_ char *p4_ = agent_inside("/w", "/wx");
	CHECK(p4_ == NULL);
	_cleanup_free_ char *p5_ = agent_inside("/w", "x/..");
	CHECK(p5_ == NULL);
}

static void test_other_repository(void)
{
	reset_ws();
	/* owner/name next to the job's repository: its default branch (trunk) */
	OK(CHECKOUT("repository", "org/lib", "path", "lib"));
	_cleanup_free_ char *lib = path_of(ws, "lib");
	check_get(lib, "lib.txt", "lib moved on\n");
	check_branch(lib, "trunk");
	check_clean_status(lib);
	_cleanup_free_ char *origin = GIT_OUT(lib, "remote", "get-url", "origin");
	CHECK_STR(origin, lib_repo);
	CHECK(logged("Checked out org/lib trunk at "));
	/* with a ref, and the job's own checkout next to it */
	OK(CHECKOUT("repository", "org/main", "ref", "feature", "path", "main"));
	_cleanup_free_ char *m = path_of(ws, "main");
	check_head(m, f1);
	check_branch(m, "feature");
	/* an absolute path, a file:// URL */
	OK(CHECKOUT("repository", deep_repo, "path", "deep"));
	_cleanup_free_ char *deep = path_of(ws, "deep");
	check_get(deep, "deep.txt", "deep\n");
	_cleanup_free_ char *url = kiln_asprintf("file://%s", deep_repo);
	OK(CHECKOUT("repository", url, "path", "deep2", "ref", d1));
	_cleanup_free_ char *deep2 = path_of(ws, "deep2");
	check_head(deep2, d1);
	_cleanup_free_ char *origin2 = GIT_OUT(deep2, "remote", "get-url", "origin");
	CHECK_STR(origin2, url);

	/* github-server-url and KILN_CHECKOUT_SERVER_URL give the base for owner/name */
	_cleanup_free_ char *forge = path_of(root, "forge");
	OK(CHECKOUT("repository", "org/deep", "path", "d3", "github-server-url", forge));
	_cleanup_free_ char *d3 = path_of(ws, "d3");
	check_get(d3, "deep.txt", "deep\n");
	setenv("KILN_CHECKOUT_SERVER_URL", forge, 1);
	char *saved = spec.repo_url;
	spec.repo_url = (char *)"/nowhere/a/b";
	OK(CHECKOUT("repository", "org/deep", "path", "d4"));
	spec.repo_url = saved;
	unsetenv("KILN_CHECKOUT_SERVER_URL");

	/* bare repositories named *.git: the suffix is kept */
	_cleanup_free_ char *bare = path_of(root, "bare/org");
	CHECK_INT(kiln_mkdir_p(bare, 0755), 0);
	_cleanup_free_ char *bmain = path_of(bare, "main.git");
	_cleanup_free_ char *blib = path_of(bare, "lib.git");
	CHECK_INT(
	    spawn_in(NULL,
	             (const char *const[]){"git", "clone", "-q", "--bare", main_repo, bmain, NULL},
	             NULL),
	    0);
	CHECK_INT(
	    spawn_in(NULL,
	             (const char *const[]){"git", "clone", "-q", "--bare", lib_repo, blib, NULL},
	             NULL),
	    0);
	spec.repo_url = bmain;
	OK(CHECKOUT("repository", "org/lib", "path", "blib"));
	_cleanup_free_ char *bl = path_of(ws, "blib");
	check_get(bl, "lib.txt", "lib moved on\n");
	_cleanup_free_ char *borigin = GIT_OUT(bl, "remote", "get-url", "origin");
	CHECK_STR(borigin, blib);
	spec.repo_url = saved;

	/* errors name the repository */
	CHECK_INT(CHECKOUT("repository", "org/nope", "path", "nope"), -ENOENT);
	CHECK(strstr(kiln_errmsg(), "org/nope") && strstr(kiln_errmsg(), "no repository at"));
	CHECK(!exists(ws, "nope"));
	CHECK(CHECKOUT("repository", "org/lib", "ref", "v9", "path", "nope") < 0);
	CHECK(strstr(kiln_errmsg(), "org/lib") && strstr(kiln_errmsg(), "v9"));
	CHECK_INT(CHECKOUT("repository", "a/b/c"), -EINVAL);
	CHECK(strstr(kiln_errmsg(), "a/b/c") != NULL);
}

static void test_clean(void)
{
	reset_ws();
	OK(CHECKOUT("ref", "v1"));
	put(ws, "untracked.txt", "mine\n");
	put(ws, "a.txt", "edited\n");
	put(ws, "build/out.o", "object\n");
	/* clean: false keeps untracked files and writes the checkout over the rest */
	OK(CHECKOUT("clean", "false"));
	check_head(ws, c2);
	check_branch(ws, "main");
	check_get(ws, "a.txt", "two\n");
	check_get(ws, "untracked.txt", "mine\n");
	check_get(ws, "build/out.o", "object\n");
	_cleanup_free_ char *st = GIT_OUT(ws, "status", "--porcelain");
	CHECK_STR(st, "?? build/\n?? untracked.txt");
	/* clean: true (the default) empties it */
	OK(CHECKOUT("clean", "true"));
	CHECK(!exists(ws, "untracked.txt") && !exists(ws, "build"));
	check_clean_status(ws);
	/* clean: false into a directory with files and no repository */
	reset_ws();
	put(ws, "keep.txt", "keep\n");
	put(ws, "a.txt", "stale\n");
	OK(CHECKOUT("clean", "false"));
	check_get(ws, "keep.txt", "keep\n");
	check_get(ws, "a.txt", "two\n");
	_cleanup_free_ char *st2 = GIT_OUT(ws, "status", "--porcelain");
	CHECK_STR(st2, "?? keep.txt");
	/* a failed clean: false checkout leaves the files */
	CHECK(CHECKOUT("clean", "false", "ref", "nope") < 0);
	check_get(ws, "keep.txt", "keep\n");
}

static void test_submodules(void)
{
	reset_ws();
	char *saved_url = spec.repo_url, *saved_sha = spec.sha, *saved_repo = spec.repository;
	spec.repo_url = super_repo;
	spec.sha = s1;
	spec.repository = (char *)"org/super";
	_cleanup_free_ char *mirrors = path_of(fake_agent.work_dir, "mirrors");
	CHECK_INT(kiln_rm_rf(mirrors), 0);

	/* without: the submodule directories stay empty */
	OK(checkout_in(ws, NULL));
	CHECK(!exists(ws, "libs/lib/lib.txt"));

	OK(CHECKOUT("submodules", "true"));
	check_get(ws, "super.txt", "super\n");
	check_get(ws, "libs/lib/lib.txt", "lib\n"); /* the recorded commit, not trunk's tip */
	check_get(ws, "deep/deep.txt", "deep\n");
	CHECK(!exists(ws, "libs/lib/deep/deep.txt")); /* not recursive */
	_cleanup_free_ char *lib = path_of(ws, "libs/lib");
	check_head(lib, l1);
	check_branch(lib, "");
	_cleanup_free_ char *lorigin = GIT_OUT(lib, "remote", "get-url", "origin");
	CHECK_STR(lorigin, lib_repo);
	CHECK(exists(ws, ".git/modules/libs/lib/HEAD"));
	_cleanup_free_ char *gitfile = get(lib, ".git");
	CHECK(gitfile && strstr(gitfile, "gitdir: ") == gitfile);
	check_clean_status(ws);
	check_clean_status(lib);
	_cleanup_free_ char *status = GIT_OUT(ws, "submodule", "status");
	CHECK(status[0] == ' ' && strstr(status, "\n ") && strstr(status, l1) &&
	      strstr(status, d1));
	CHECK(logged("Fetched submodule libs/lib from") &&
	      logged("Checked out submodule libs/lib"));
	CHECK(logged("Fetched submodule deep from") && logged("Checked out submodule deep at"));

	/* super2 has one submodule, by an absolute path */
	_cleanup_free_ char *super2 = path_of(org, "super2");
	git_init(super2, "main");
	put(super2, "s2.txt", "s2\n");
	CHECK_INT(GIT(super2, "add", "-A"), 0);
	CHECK_INT(GIT(super2, "-c", "protocol.file.allow=always", "submodule", "add", "-q",
	              deep_repo, "deep"),
	          0);
	char s2[41];
	commit_all(super2, "s2", s2);
	_cleanup_free_ char *super2_co = path_of(root, "super2-co");
	_cleanup_free_ char *m2 = NULL;
	CHECK_INT(kiln_git_mirror_ex(mirrors, super2, s2, NULL, &m2), 0);
	CHECK_INT(kiln_git_checkout(m2, super2, s2, "main", super2_co), 0);

	OK(CHECKOUT("submodules", "recursive", "path", "rec"));
	_cleanup_free_ char *rec = path_of(ws, "rec");
	check_get(rec, "libs/lib/deep/deep.txt", "deep\n");
	_cleanup_free_ char *rdeep = path_of(rec, "libs/lib/deep");
	check_head(rdeep, d1);
	check_clean_status(rec);
	_cleanup_free_ char *rstatus = GIT_OUT(rec, "submodule", "status", "--recursive");
	CHECK(strstr(rstatus, "libs/lib/deep") != NULL);
	CHECK(strchr(rstatus, '-') == NULL || strstr(rstatus, "\n-") == NULL);
	CHECK(logged("Checked out submodule libs/lib/deep"));

	/* a repository from elsewhere may not pull a repository of the agent's disk in */
	kiln_git_submodule_opts so = {.mirrors_dir = mirrors,
	                              .url = "https://forge.invalid/org/super2"};
	CHECK_INT(kiln_git_submodules(super2_co, &so), -EPERM);
	CHECK(strstr(kiln_errmsg(), "submodule deep") && strstr(kiln_errmsg(), "refused"));
	so.url = super2;
	CHECK_INT(kiln_git_submodules(super2_co, &so), 0);
	check_get(super2_co, "deep/deep.txt", "deep\n");

	/* a submodule whose repository is gone: the error names it */
	_cleanup_free_ char *moved = path_of(org, "deep-moved");
	CHECK_INT(rename(deep_repo, moved), 0);
	CHECK_INT(kiln_rm_rf(mirrors), 0);
	CHECK(CHECKOUT("submodules", "true", "path", "broken") < 0);
	CHECK(strstr(kiln_errmsg(), "submodule deep") != NULL);
	CHECK_INT(rename(moved, deep_repo), 0);

	spec.repo_url = saved_url;
	spec.sha = saved_sha;
	spec.repository = saved_repo;
}

static void test_token_and_warnings(void)
{
	reset_ws();
	static const char token[] = "s3cr3t-t0ken-value";
	OK(CHECKOUT("token", token, "persist-credentials", "true", "lfs", "true", "sparse-checkout",
	            "src", "frobnicate", "1", "show-progress", "false"));
	check_get(ws, "a.txt", "two\n");
	CHECK(logged("Warning: lfs: true"));
	CHECK(logged("Warning: sparse-checkout"));
	CHECK(logged("no input 'frobnicate'"));
	CHECK(!logged("show-progress"));
	for (size_t i = 0; i < logs.n; i++)
		CHECK(strstr(logs.v[i], token) == NULL);
	_cleanup_free_ char *cfg = get(ws, ".git/config");
	CHECK(cfg && !strstr(cfg, token));
	_cleanup_free_ char *grep = NULL;
	_cleanup_free_ char *work = kiln_strdup(fake_agent.work_dir);
	int g =
	    spawn_in(NULL, (const char *const[]){"grep", "-r", "-l", token, ws, work, NULL}, &grep);
	CHECK_INT(g, 1); /* nowhere on disk */
	/* a URL with credentials in it: they go neither into origin nor into a log line */
	_cleanup_free_ char *url = kiln_asprintf("file://user:hunter2@%s", deep_repo);
	(void)CHECKOUT("repository", url, "path", "cred");
	for (size_t i = 0; i < logs.n; i++)
		CHECK(strstr(logs.v[i], "hunter2") == NULL);
	CHECK(strstr(kiln_errmsg(), "hunter2") == NULL);
	_cleanup_free_ char *cred = path_of(ws, "cred");
	if (exists(cred, ".git/config")) {
		_cleanup_free_ char *c = get(cred, ".git/config");
		CHECK(c && !strstr(c, "hunter2"));
	}
}

static void test_worktree(void)
{
	/* local mode: the developer's working tree as it is, unless a ref is asked for */
	_cleanup_free_ char *dev = path_of(root, "dev");
	CHECK_INT(
	    spawn_in(NULL, (const char *const[]){"git", "clone", "-q", main_repo, dev, NULL}, NULL),
	    0);
	put(dev, "a.txt", "uncommitted\n");
	put(dev, "new.txt", "new\n");
	char *saved_url = spec.repo_url, *saved_sha = spec.sha, *saved_repo = spec.repository;
	spec.repo_url = dev;
	spec.repository = dev;
	spec.sha = c3;
	spec.worktree = true;
	reset_ws();
	put(ws, "junk.txt", "junk\n");
	OK(checkout_in(ws, NULL));
	check_get(ws, "a.txt", "uncommitted\n");
	check_get(ws, "new.txt", "new\n");
	CHECK(!exists(ws, "junk.txt"));
	CHECK(logged("Copied the working tree of"));
	OK(CHECKOUT("ref", "v1", "path", "tagged"));
	_cleanup_free_ char *tagged = path_of(ws, "tagged");
	check_get(tagged, "a.txt", "one\n");
	check_clean_status(tagged);
	/* github.repository names the job's own repository */
	OK(CHECKOUT("repository", dev, "path", "own"));
	_cleanup_free_ char *own = path_of(ws, "own");
	check_get(own, "a.txt", "uncommitted\n");
	/* submodules of the working tree's HEAD, through mirrors */
	spec.repo_url = super_repo;
	spec.repository = super_repo;
	spec.sha = s1;
	OK(CHECKOUT("path", "wsuper", "submodules", "true"));
	_cleanup_free_ char *wsuper = path_of(ws, "wsuper");
	check_get(wsuper, "libs/lib/lib.txt", "lib\n");
	check_get(wsuper, "deep/deep.txt", "deep\n");
	check_clean_status(wsuper);
	spec.worktree = false;
	spec.repo_url = saved_url;
	spec.sha = saved_sha;
	spec.repository = saved_repo;
}

struct par {
	int idx, rc;
	char *ws;
	char sha[41];
};

static void *par_thread(void *arg)
{
	struct par *p = arg;
	json_t *with = json_pack("{s:s}", "ref", "feature");
	kiln_strv lines = {0};
	agent_checkout_ctx cc = {
	    .j = &job, .ws = p->ws, .with = with, .log = log_line, .log_arg = &lines};
	p->rc = agent_checkout(&cc);
	if (p->rc < 0)
		fprintf(stderr, "thread %d: %s\n", p->idx, kiln_errmsg());
	else
		kiln_git_head(p->ws, p->sha, NULL);
	kiln_strv_free(&lines);
	json_decref(with);
	return NULL;
}

static void test_concurrent(void)
{
	/* jobs at once share one mirror (a fresh one: they race to create it) */
	_cleanup_free_ char *mirrors = path_of(fake_agent.work_dir, "mirrors");
	CHECK_INT(kiln_rm_rf(mirrors), 0);
	enum { N = 4 };
	struct par ps[N] = {0};
	pthread_t t[N];
	for (int i = 0; i < N; i++) {
		ps[i].idx = i;
		ps[i].ws = kiln_asprintf("%s/par%d", root, i);
		CHECK_INT(kiln_mkdir_p(ps[i].ws, 0755), 0);
		CHECK_INT(pthread_create(&t[i], NULL, par_thread, &ps[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++) {
		CHECK_INT(ps[i].rc, 0);
		CHECK_STR(ps[i].sha, f1);
		free(ps[i].ws);
	}
	_cleanup_free_ char *n = NULL;
	CHECK_INT(
	    spawn_in(mirrors,
	             (const char *const[]){"sh", "-c", "ls | grep -v '[.]lock$' | wc -l", NULL},
	             &n),
	    0);
	CHECK_STR(n, "1");
}

int main(void)
{
	setenv("GIT_AUTHOR_NAME", "kiln test", 1);
	setenv("GIT_AUTHOR_EMAIL", "test@kiln.invalid", 1);
	setenv("GIT_COMMITTER_NAME", "kiln test", 1);
	setenv("GIT_COMMITTER_EMAIL", "test@kiln.invalid", 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_TERMINAL_PROMPT", "0", 1);
	unsetenv("KILN_CHECKOUT_SERVER_URL");
	CHECK_INT(kiln_mkdtemp("kiln-test-checkout", &root), 0);
	char real[4096];
	if (realpath(root, real)) {
		free(root);
		root = kiln_strdup(real);
	}
	setenv("HOME", root, 1); /* no user configuration, for git and libgit2 alike */
	CHECK_INT(kiln_git_init(), 0);

	make_repos();
	fake_agent.work_dir = path_of(root, "agent");
	ws = path_of(root, "agent/slots/0/workspace");
	CHECK_INT(kiln_mkdir_p(ws, 0750), 0);
	spec.repo_url = main_repo;
	spec.sha = c2;
	spec.ref = (char *)"refs/heads/main";
	spec.repository = (char *)"org/main";

	test_default();
	test_refs();
	test_depth_and_tags();
	test_paths();
	test_other_repository();
	test_clean();
	test_submodules();
	test_token_and_warnings();
	test_worktree();
	test_concurrent();

	kiln_strv_free(&logs);
	if (check_failed == 0)
		kiln_rm_rf(root);
	else
		fprintf(stderr, "test files kept in %s\n", root);
	free(root);
	free(org);
	free(main_repo);
	free(lib_repo);
	free(deep_repo);
	free(super_repo);
	free(ws);
	free(fake_agent.work_dir);
	return check_done();
}
