/*
 * test_git — builds real repositories in a temporary directory with the git
 * command line (posix_spawnp, never system()), then checks kiln's mirrors,
 * checkouts, reads, ref resolution and working-tree snapshots against them.
 * Everything is local: no remote host is ever contacted.
 */
#include "common/git.h"
#include "common/util.h"
#include "tests/harness/check.h"
#include "tests/harness/repo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


static char *root; /* the temporary directory everything lives in */

static mode_t mode_of(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = path_of(dir, rel);
	struct stat st;
	return lstat(p, &st) == 0 ? st.st_mode : 0;
}

/* ---- the upstream repository ------------------------------------------- */

static char *up;                    /* upstream repository (non-bare) */
static char c1[41], f1[41], c2[41]; /* main: c1 (tag v1) - c2; feature: c1 - f1 */

static void make_upstream(void)
{
	up = path_of(root, "up");
	CHECK_INT(spawn_in(NULL, (const char *const[]){"git", "init", "-q", "-b", "main", up, NULL}, NULL),
	          0);
	put(up, "a.txt", "v1\n");
	put(up, "dir/b.txt", "b\n");
	put(up, "dir/c.txt", "c\n");
	put(up, "dir/sub/d.txt", "d\n");
	put(up, "run.sh", "#!/bin/sh\necho hi\n");
	_cleanup_free_ char *run = path_of(up, "run.sh");
	chmod(run, 0755);
	_cleanup_free_ char *link = path_of(up, "link");
	CHECK_INT(symlink("a.txt", link), 0);
	CHECK_INT(GIT(up, "add", "-A"), 0);
	CHECK_INT(GIT(up, "commit", "-q", "-m", "c1"), 0);
	head_sha(up, c1);
	CHECK_INT(GIT(up, "tag", "-a", "v1", "-m", "release v1"), 0);

	CHECK_INT(GIT(up, "checkout", "-q", "-b", "feature"), 0);
	put(up, "feature.txt", "feature\n");
	CHECK_INT(GIT(up, "add", "-A"), 0);
	CHECK_INT(GIT(up, "commit", "-q", "-m", "f1"), 0);
	head_sha(up, f1);

	CHECK_INT(GIT(up, "checkout", "-q", "main"), 0);
	put(up, "a.txt", "v2\n");
	CHECK_INT(GIT(up, "rm", "-q", "dir/c.txt"), 0);
	CHECK_INT(GIT(up, "commit", "-q", "-am", "c2"), 0);
	head_sha(up, c2);
}

static void commit_upstream(const char *file, const char *content, const char *msg, char sha[41])
{
	put(up, file, content);
	CHECK_INT(GIT(up, "add", "-A"), 0);
	CHECK_INT(GIT(up, "commit", "-q", "-m", msg), 0);
	head_sha(up, sha);
}

static void check_resolve(const char *repo, const char *ref, const char *want)
{
	char sha[41] = "";
	int r = kiln_git_resolve(repo, ref, sha);
	if (r < 0)
		fprintf(stderr, "resolve %s: %s\n", ref, kiln_errmsg());
	CHECK_INT(r, 0);
	CHECK_STR(sha, want);
}

static char unset[] = "unset"; /* proves that an out-parameter was written */

static void check_full_ref(const char *repo, const char *ref, const char *want)
{
	char *full = unset;
	int r = kiln_git_full_ref(repo, ref, &full);
	CHECK_INT(r, 0);
	if (want)
		CHECK_STR(full, want);
	else
		CHECK(full == NULL);
	if (full != unset)
		free(full);
}

/* ---- tests --------------------------------------------------------------- */

static char *mirror; /* the mirror of `up` */
static char c3[41], c4[41];

static void test_mirror(void)
{
	/* A relative url and a relative mirrors dir are made absolute. */
	CHECK_INT(chdir(root), 0);
	int r = kiln_git_mirror("mirrors", "up", &mirror);
	if (r < 0)
		fprintf(stderr, "mirror: %s\n", kiln_errmsg());
	CHECK_INT(r, 0);
	CHECK(mirror && mirror[0] == '/');
	CHECK(exists(mirror, "HEAD") && exists(mirror, "objects") && !exists(mirror, ".git"));
	_cleanup_free_ char *mirrors = path_of(root, "mirrors");
	_cleanup_free_ char *again = NULL;
	CHECK_INT(kiln_git_mirror(mirrors, up, &again), 0);
	CHECK_STR(again, mirror);

	check_resolve(mirror, "main", c2);
	check_resolve(mirror, "refs/heads/feature", f1);
	check_resolve(mirror, "v1", c1);
	check_resolve(mirror, "HEAD", c2);
	_cleanup_free_ char *head = GIT_OUT(mirror, "symbolic-ref", "HEAD");
	CHECK_STR(head, "refs/heads/main");
	_cleanup_free_ char *bare = GIT_OUT(mirror, "rev-parse", "--is-bare-repository");
	CHECK_STR(bare, "true");
	CHECK_INT(GIT(mirror, "fsck", "--no-progress", "--no-dangling"), 0);

	/* mirror_for skips the fetch while the commit is there... */
	commit_upstream("e.txt", "e\n", "c3", c3);
	_cleanup_free_ char *m2 = NULL;
	CHECK_INT(kiln_git_mirror_for(mirrors, up, c2, &m2), 0);
	CHECK_STR(m2, mirror);
	check_resolve(mirror, "main", c2);
	/* ...and fetches when it is not. */
	_cleanup_free_ char *m3 = NULL;
	CHECK_INT(kiln_git_mirror_for(mirrors, up, c3, &m3), 0);
	check_resolve(mirror, "main", c3);

	/* A re-fetch brings new commits and tags and prunes deleted branches. */
	CHECK_INT(GIT(up, "branch", "-q", "-D", "feature"), 0);
	CHECK_INT(GIT(up, "tag", "v2"), 0);
	commit_upstream("a.txt", "v4\n", "c4", c4);
	_cleanup_free_ char *m4 = NULL;
	CHECK_INT(kiln_git_mirror(mirrors, up, &m4), 0);
	check_resolve(mirror, "main", c4);
	check_resolve(mirror, "v2", c3);
	char sha[41];
	CHECK_INT(kiln_git_resolve(mirror, "feature", sha), -ENOENT);
	CHECK(strstr(kiln_errmsg(), "feature") != NULL);
	/* The objects stay: a commit of a deleted branch can still be checked out. */
	check_resolve(mirror, f1, f1);

	/* A commit that is nowhere upstream, and a malformed sha. */
	_cleanup_free_ char *m5 = NULL;
	CHECK_INT(kiln_git_mirror_for(mirrors, up, "0123456789abcdef0123456789abcdef01234567", &m5),
	          -ENOENT);
	CHECK(m5 == NULL);
	CHECK_INT(kiln_git_mirror_for(mirrors, up, "abc123", &m5), -EINVAL);
	CHECK_INT(kiln_git_mirror(mirrors, "/nonexistent/repo", &m5), -ENOENT);
	CHECK(strstr(kiln_errmsg(), "no repository at /nonexistent/repo") != NULL);
	CHECK(kiln_git_mirror(mirrors, "file://user:s3cret@/nonexistent/repo", &m5) < 0);
	CHECK(strstr(kiln_errmsg(), "s3cret") == NULL);
	CHECK(m5 == NULL);

	/* HEAD follows the source's default branch when it is not main. */
	_cleanup_free_ char *up2 = path_of(root, "up2");
	CHECK_INT(spawn_in(NULL, (const char *const[]){"git", "init", "-q", "-b", "trunk", up2, NULL}, NULL),
	          0);
	put(up2, "t.txt", "t\n");
	CHECK_INT(GIT(up2, "add", "-A"), 0);
	CHECK_INT(GIT(up2, "commit", "-q", "-m", "t"), 0);
	CHECK_INT(GIT(up2, "branch", "aaa"), 0);
	_cleanup_free_ char *mt = NULL;
	_cleanup_free_ char *url2 = kiln_asprintf("file://%s", up2);
	CHECK_INT(kiln_git_mirror(mirrors, url2, &mt), 0);
	CHECK(mt && strcmp(mt, mirror) != 0);
	_cleanup_free_ char *head2 = mt ? GIT_OUT(mt, "symbolic-ref", "HEAD") : NULL;
	CHECK_STR(head2, "refs/heads/trunk");

	/* Only the two mirrors remain besides lock files: nothing half-made. */
	_cleanup_free_ char *ls = NULL;
	CHECK_INT(spawn_in(NULL, (const char *const[]){"sh", "-c", "ls \"$0\" | grep -v '[.]lock$' | wc -l",
	                                      mirrors, NULL},
	                &ls),
	          0);
	CHECK_STR(ls, "2");
}

static void test_read(void)
{
	char *s = NULL;
	size_t len = 0;
	CHECK_INT(kiln_git_read_file(mirror, c1, "a.txt", 1024, &s, &len), 0);
	CHECK_STR(s, "v1\n");
	CHECK_INT(len, 3);
	free(s);
	s = NULL;
	CHECK_INT(kiln_git_read_file(mirror, c1, "./dir/sub/d.txt", 1024, &s, NULL), 0);
	CHECK_STR(s, "d\n");
	free(s);
	s = NULL;
	CHECK_INT(kiln_git_read_file(mirror, c2, "dir/c.txt", 1024, &s, &len), -ENOENT);
	CHECK(s == NULL);
	CHECK_INT(kiln_git_read_file(mirror, c1, "dir", 1024, &s, &len), -EISDIR);
	CHECK_INT(kiln_git_read_file(mirror, c1, "a.txt", 2, &s, &len), -EFBIG);
	CHECK(s == NULL);
	CHECK_INT(kiln_git_read_file(mirror, c1, "../etc/passwd", 1024, &s, &len), -EINVAL);
	CHECK_INT(kiln_git_read_file(mirror, "0123456789abcdef0123456789abcdef01234567", "a.txt",
	                             1024, &s, &len),
	          -ENOENT);
	CHECK_INT(kiln_git_read_file(mirror, c4, "a.txt", 3, &s, &len),
	          0); /* exactly at the limit */
	CHECK_STR(s, "v4\n");
	free(s);

	kiln_strv v = {0};
	CHECK_INT(kiln_git_list_dir(mirror, c1, "dir", &v), 0);
	CHECK_INT(v.n, 2);
	if (v.n == 2) {
		CHECK_STR(v.v[0], "b.txt");
		CHECK_STR(v.v[1], "c.txt");
	}
	kiln_strv_free(&v);
	CHECK_INT(kiln_git_list_dir(mirror, c2, "dir/", &v), 0);
	CHECK_INT(v.n, 1);
	kiln_strv_free(&v);
	CHECK_INT(kiln_git_list_dir(mirror, c1, "", &v), 0);
	CHECK_INT(v.n, 3);
	if (v.n == 3) {
		CHECK_STR(v.v[0], "a.txt");
		CHECK_STR(v.v[1], "link");
		CHECK_STR(v.v[2], "run.sh");
	}
	kiln_strv_free(&v);
	CHECK_INT(kiln_git_list_dir(mirror, c1, "nope", &v), -ENOENT);
	CHECK_INT(kiln_git_list_dir(mirror, c1, "a.txt", &v), -ENOENT);
	CHECK_INT(v.n, 0);
	kiln_strv_free(&v);
}

static void test_resolve(void)
{
	check_resolve(mirror, "main", c4);
	check_resolve(mirror, "refs/heads/main", c4);
	check_resolve(mirror, "v1", c1); /* annotated tag, peeled to its commit */
	check_resolve(mirror, "refs/tags/v1", c1);
	char abbrev[9];
	memcpy(abbrev, c1, 8);
	abbrev[8] = '\0';
	check_resolve(mirror, abbrev, c1);
	check_resolve(mirror, c2, c2);
	check_resolve(up, "HEAD", c4); /* a non-bare repository too */
	char sha[41];
	CHECK_INT(kiln_git_resolve(mirror, "no-such-branch", sha), -ENOENT);
	CHECK_INT(kiln_git_resolve(mirror, "", sha), -EINVAL);
	_cleanup_free_ char *nowhere = path_of(root, "nowhere");
	CHECK_INT(kiln_git_resolve(nowhere, "main", sha), -ENOENT);

	check_full_ref(mirror, "main", "refs/heads/main");
	check_full_ref(mirror, "refs/heads/main", "refs/heads/main");
	check_full_ref(mirror, "v1", "refs/tags/v1");
	check_full_ref(mirror, "HEAD", "refs/heads/main");
	check_full_ref(mirror, c1, NULL);
	check_full_ref(mirror, abbrev, NULL);
	char *full = NULL;
	CHECK_INT(kiln_git_full_ref(mirror, "no-such-branch", &full), -ENOENT);
	CHECK(full == NULL);
	CHECK_INT(kiln_git_full_ref(mirror, "refs/heads/nope", &full), -ENOENT);
}

static void test_checkout(void)
{
	/* c1 on branch main: the files of c1, not of a later commit. */
	_cleanup_free_ char *co1 = path_of(root, "co1");
	int r = kiln_git_checkout(mirror, up, c1, "refs/heads/main", co1);
	if (r < 0)
		fprintf(stderr, "checkout: %s\n", kiln_errmsg());
	CHECK_INT(r, 0);
	check_get(co1, "a.txt", "v1\n");
	check_get(co1, "dir/c.txt", "c\n");
	check_get(co1, "dir/sub/d.txt", "d\n");
	CHECK(!exists(co1, "feature.txt") && !exists(co1, "e.txt"));
	CHECK((mode_of(co1, "run.sh") & 0111) != 0);
	CHECK(S_ISLNK(mode_of(co1, "link")));
	char sha[41] = "";
	char *ref = NULL;
	CHECK_INT(kiln_git_head(co1, sha, &ref), 0);
	CHECK_STR(sha, c1);
	CHECK_STR(ref, "refs/heads/main");
	free(ref);
	_cleanup_free_ char *st = GIT_OUT(co1, "status", "--porcelain");
	CHECK_STR(st, "");
	CHECK_INT(GIT(co1, "fsck", "--no-progress", "--no-dangling"), 0);
	/* Objects are hardlinked to the mirror's, not copied. */
	_cleanup_free_ char *links = NULL;
	CHECK_INT(
	    spawn_in(NULL,
	        (const char *const[]){
	            "sh", "-c", "stat -c %h \"$0\"/.git/objects/pack/*.pack | sort -n | head -1",
	            co1, NULL},
	        &links),
	    0);
	CHECK(links && strtol(links, NULL, 10) >= 2);
	CHECK_INT(GIT(co1, "fetch", "-q"), 0); /* origin is usable by hand */
	_cleanup_free_ char *origin = GIT_OUT(co1, "remote", "get-url", "origin");
	CHECK_STR(origin, up);
	_cleanup_free_ char *branches =
	    GIT_OUT(co1, "for-each-ref", "--format=%(refname)", "refs/heads/");
	CHECK_STR(branches, "refs/heads/main");
	_cleanup_free_ char *upstream =
	    GIT_OUT(co1, "rev-parse", "--abbrev-ref", "main@{upstream}");
	CHECK_STR(upstream, "origin/main");
	_cleanup_free_ char *remote_main = GIT_OUT(co1, "rev-parse", "origin/main");
	CHECK_STR(remote_main, c4);

	/* c2 with no ref: detached, no local branch, tags there for git describe. */
	_cleanup_free_ char *co2 = path_of(root, "co2");
	CHECK_INT(kiln_git_checkout(mirror, up, c2, NULL, co2), 0);
	check_get(co2, "a.txt", "v2\n");
	CHECK(!exists(co2, "dir/c.txt") && !exists(co2, "e.txt"));
	ref = unset;
	CHECK_INT(kiln_git_head(co2, sha, &ref), 0);
	CHECK_STR(sha, c2);
	CHECK(ref == NULL);
	_cleanup_free_ char *branches2 =
	    GIT_OUT(co2, "for-each-ref", "--format=%(refname)", "refs/heads/");
	CHECK_STR(branches2, "");
	_cleanup_free_ char *desc = GIT_OUT(co2, "describe", "--tags", "--abbrev=0");
	CHECK_STR(desc, "v1");
	_cleanup_free_ char *st2 = GIT_OUT(co2, "status", "--porcelain");
	CHECK_STR(st2, "");

	/* A tag ref stays detached; a bare branch name makes the branch; an existing empty dir is
	 * fine. */
	_cleanup_free_ char *co3 = path_of(root, "co3");
	CHECK_INT(kiln_git_checkout(mirror, up, c1, "v1", co3), 0);
	CHECK_INT(kiln_git_head(co3, sha, &ref), 0);
	CHECK(ref == NULL);
	_cleanup_free_ char *co4 = path_of(root, "co4");
	CHECK_INT(mkdir(co4, 0755), 0);
	CHECK_INT(kiln_git_checkout(mirror, NULL, f1, "main", co4), 0);
	CHECK_INT(kiln_git_head(co4, sha, &ref), 0);
	CHECK_STR(sha, f1);
	CHECK_STR(ref, "refs/heads/main");
	free(ref);
	ref = NULL;
	check_get(co4, "feature.txt", "feature\n");

	/* A non-empty directory is refused and left alone; a failed checkout leaves no directory.
	 */
	CHECK_INT(kiln_git_checkout(mirror, up, c1, NULL, co1), -ENOTEMPTY);
	check_get(co1, "a.txt", "v1\n");
	_cleanup_free_ char *co5 = path_of(root, "co5");
	CHECK_INT(
	    kiln_git_checkout(mirror, up, "0123456789abcdef0123456789abcdef01234567", NULL, co5),
	    -ENOENT);
	CHECK(!exists(root, "co5"));
	CHECK_INT(kiln_git_checkout(mirror, up, "main", NULL, co5), -EINVAL);
}

static void test_snapshot(void)
{
	_cleanup_free_ char *work = path_of(root, "work");
	CHECK_INT(spawn_in(NULL, (const char *const[]){"git", "clone", "-q", up, work, NULL}, NULL), 0);
	put(work, ".gitignore", "*.log\nbuild/\n");
	put(work, "tdir/t.txt", "tracked\n");
	CHECK_INT(GIT(work, "add", ".gitignore", "tdir"), 0);
	CHECK_INT(GIT(work, "commit", "-q", "-m", "ignore"), 0);
	char base[41];
	head_sha(work, base);

	put(work, "a.txt", "modified\n");      /* tracked, modified */
	put(work, "new.txt", "new\n");         /* untracked */
	put(work, "u/deep/x.txt", "x\n");      /* untracked directory */
	put(work, "out.log", "ignored\n");     /* ignored */
	put(work, "build/y.txt", "ignored\n"); /* ignored directory */
	put(work, "staged.txt", "staged\n");   /* new and staged */
	CHECK_INT(GIT(work, "add", "staged.txt"), 0);
	_cleanup_free_ char *b = path_of(work, "dir/b.txt");
	CHECK_INT(unlink(b), 0);                              /* deleted, not staged */
	CHECK_INT(GIT(work, "rm", "-q", "dir/sub/d.txt"), 0); /* deleted and staged */
	_cleanup_free_ char *e = path_of(work, "e.txt");
	CHECK_INT(chmod(e, 0755), 0); /* mode change */
	_cleanup_free_ char *link = path_of(work, "link");
	CHECK_INT(unlink(link), 0);
	put(work, "link", "now a file\n"); /* symlink became a file */
	_cleanup_free_ char *nl = path_of(work, "newlink");
	CHECK_INT(symlink("new.txt", nl), 0); /* untracked symlink */
	/* A tracked directory replaced by a symlink to a directory outside: nothing may be
	   deleted or written through it. */
	_cleanup_free_ char *outside = path_of(root, "outside");
	put(outside, "t.txt", "precious\n");
	_cleanup_free_ char *tdir = path_of(work, "tdir");
	CHECK_INT(kiln_rm_rf(tdir), 0);
	CHECK_INT(symlink(outside, tdir), 0);

	_cleanup_free_ char *snap = path_of(root, "snap");
	int r = kiln_git_snapshot_worktree(work, snap);
	if (r < 0)
		fprintf(stderr, "snapshot: %s\n", kiln_errmsg());
	CHECK_INT(r, 0);
	check_get(snap, "a.txt", "modified\n");
	check_get(snap, "new.txt", "new\n");
	check_get(snap, "u/deep/x.txt", "x\n");
	check_get(snap, "staged.txt", "staged\n");
	check_get(snap, "run.sh", "#!/bin/sh\necho hi\n");
	check_get(snap, "link", "now a file\n");
	CHECK(S_ISREG(mode_of(snap, "link")));
	CHECK(S_ISLNK(mode_of(snap, "newlink")));
	CHECK((mode_of(snap, "e.txt") & 0777) == 0755);
	CHECK(!exists(snap, "out.log"));
	CHECK(!exists(snap, "build"));
	CHECK(!exists(snap, "dir/b.txt"));
	CHECK(!exists(snap, "dir/sub")); /* gone from the working tree, so gone here */
	CHECK(exists(snap, ".git/HEAD"));
	CHECK_INT(GIT(snap, "fsck", "--no-progress", "--no-dangling"), 0);
	CHECK(S_ISLNK(mode_of(snap, "tdir")));
	check_get(outside, "t.txt", "precious\n");
	char sha[41] = "";
	char *ref = NULL;
	CHECK_INT(kiln_git_head(snap, sha, &ref), 0);
	CHECK_STR(sha, base);
	CHECK_STR(ref, "refs/heads/main");
	free(ref);
	_cleanup_free_ char *st = GIT_OUT(snap, "status", "--porcelain", "--untracked-files=all");
	CHECK(strstr(st, " M a.txt") != NULL);
	CHECK(strstr(st, "?? new.txt") != NULL);
	CHECK(strstr(st, " D dir/b.txt") != NULL);
	/* The source is untouched. */
	check_get(work, "out.log", "ignored\n");

	/* A repository with no commit yet. */
	_cleanup_free_ char *fresh = path_of(root, "fresh");
	CHECK_INT(
	    spawn_in(NULL, (const char *const[]){"git", "init", "-q", "-b", "trunk", fresh, NULL}, NULL), 0);
	put(fresh, "f.txt", "f\n");
	put(fresh, "sub/g.txt", "g\n");
	put(fresh, ".gitignore", "*.tmp\n");
	put(fresh, "x.tmp", "ignored\n");
	CHECK_INT(kiln_git_head(fresh, sha, &ref), -ENOENT);
	_cleanup_free_ char *snap2 = path_of(root, "snap2");
	CHECK_INT(kiln_git_snapshot_worktree(fresh, snap2), 0);
	check_get(snap2, "f.txt", "f\n");
	check_get(snap2, "sub/g.txt", "g\n");
	check_get(snap2, ".gitignore", "*.tmp\n");
	CHECK(!exists(snap2, "x.tmp"));
	_cleanup_free_ char *h = GIT_OUT(snap2, "symbolic-ref", "HEAD");
	CHECK_STR(h, "refs/heads/trunk");

	/* A bare repository has no working tree. */
	_cleanup_free_ char *snap3 = path_of(root, "snap3");
	CHECK_INT(kiln_git_snapshot_worktree(mirror, snap3), -EINVAL);
	CHECK(!exists(root, "snap3"));
}

static void test_checkout_ex(void)
{
	_cleanup_free_ char *mirrors = path_of(root, "mirrors");
	/* fetched says whether the mirror was fetched; extra_ref brings a ref by name */
	kiln_git_fetch_opts fo = {0};
	_cleanup_free_ char *m = NULL;
	CHECK_INT(kiln_git_mirror_ex(mirrors, up, c4, &fo, &m), 0);
	CHECK(!fo.fetched);
	CHECK_STR(m, mirror);
	char pr[41];
	CHECK_INT(GIT(up, "checkout", "-q", "--detach"), 0);
	commit_upstream("pr.txt", "pr\n", "pr", pr);
	CHECK_INT(GIT(up, "update-ref", "refs/pull/3/merge", pr), 0);
	CHECK_INT(GIT(up, "checkout", "-q", "main"), 0);
	fo.extra_ref = "refs/pull/3/merge";
	_cleanup_free_ char *m2 = NULL;
	CHECK_INT(kiln_git_mirror_ex(mirrors, up, NULL, &fo, &m2), 0);
	CHECK(fo.fetched);
	check_resolve(mirror, "refs/pull/3/merge", pr);
	fo.extra_ref = "pull/3";
	char *m_bad = unset;
	CHECK_INT(kiln_git_mirror_ex(mirrors, up, NULL, &fo, &m_bad), -EINVAL);
	CHECK(m_bad == NULL);

	/* actions/checkout's order: a branch wins over a tag of the same name */
	CHECK_INT(GIT(up, "tag", "feature2", c1), 0);
	CHECK_INT(GIT(up, "branch", "feature2", c3), 0);
	fo.extra_ref = NULL;
	_cleanup_free_ char *m3 = NULL;
	CHECK_INT(kiln_git_mirror_ex(mirrors, up, NULL, &fo, &m3), 0);
	char sha[41];
	char *full = NULL;
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, "feature2", sha, &full), 0);
	CHECK_STR(sha, c3);
	CHECK_STR(full, "refs/heads/feature2");
	free(full);
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, "refs/tags/feature2", sha, &full), 0);
	CHECK_STR(sha, c1);
	free(full);
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, "v1", sha, &full), 0);
	CHECK_STR(sha, c1); /* annotated: peeled */
	CHECK_STR(full, "refs/tags/v1");
	free(full);
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, "HEAD", sha, &full), 0);
	CHECK_STR(full, "refs/heads/main");
	free(full);
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, c2, sha, &full), 0);
	CHECK(full == NULL);
	CHECK_STR(sha, c2);
	char abbrev[8];
	memcpy(abbrev, c2, 7);
	abbrev[7] = '\0';
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, abbrev, sha, &full), 0);
	CHECK(full == NULL);
	CHECK_STR(sha, c2);
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, "nope", sha, &full), -ENOENT);
	CHECK(strstr(kiln_errmsg(), "'nope'") != NULL);
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, "0123456789abcdef0123456789abcdef01234567",
	                                        sha, &full),
	          -ENOENT);
	CHECK_INT(kiln_git_resolve_checkout_ref(mirror, "refs/heads/../x", sha, &full), -ENOENT);
	CHECK(full == NULL);

	/* no_tags keeps only the tag checked out */
	_cleanup_free_ char *d1 = path_of(root, "cx1");
	kiln_git_checkout_opts o = {.ref = "refs/tags/v1", .no_tags = true};
	CHECK_INT(kiln_git_checkout_ex(mirror, up, c1, &o, d1), 0);
	_cleanup_free_ char *tags = GIT_OUT(d1, "tag", NULL);
	CHECK_STR(tags, "v1");
	o.ref = "refs/heads/main";
	_cleanup_free_ char *d2 = path_of(root, "cx2");
	CHECK_INT(kiln_git_checkout_ex(mirror, up, c2, &o, d2), 0);
	_cleanup_free_ char *tags2 = GIT_OUT(d2, "tag", NULL);
	CHECK_STR(tags2, "");

	/* CLEAN empties a non-empty directory; KEEP keeps untracked files */
	put(d2, "junk.txt", "junk\n");
	o = (kiln_git_checkout_opts){.ref = "main", .dir_mode = KILN_GIT_DIR_CLEAN};
	CHECK_INT(kiln_git_checkout_ex(mirror, up, c1, &o, d2), 0);
	CHECK(!exists(d2, "junk.txt"));
	check_get(d2, "a.txt", "v1\n");
	put(d2, "junk.txt", "junk\n");
	put(d2, "a.txt", "edited\n");
	o.dir_mode = KILN_GIT_DIR_KEEP;
	CHECK_INT(kiln_git_checkout_ex(mirror, up, c2, &o, d2), 0);
	check_get(d2, "junk.txt", "junk\n");
	check_get(d2, "a.txt", "v2\n");
	_cleanup_free_ char *st = GIT_OUT(d2, "status", "--porcelain");
	CHECK_STR(st, "?? junk.txt");
	CHECK(!exists(d2, "dir/c.txt")); /* tracked at c1, gone at c2: removed as git would */
	/* a file is not a directory, whatever the mode */
	_cleanup_free_ char *f = path_of(d2, "junk.txt");
	CHECK_INT(kiln_git_checkout_ex(mirror, up, c2, &o, f), -ENOTDIR);

	/* origin never keeps credentials */
	_cleanup_free_ char *d3 = path_of(root, "cx3");
	CHECK_INT(
	    kiln_git_checkout_ex(mirror, "https://user:tok3n@forge.invalid/o/r.git", c2, NULL, d3),
	    0);
	_cleanup_free_ char *origin = GIT_OUT(d3, "remote", "get-url", "origin");
	CHECK_STR(origin, "https://forge.invalid/o/r.git");
	_cleanup_free_ char *red = kiln_git_redact("see https://u:p@h/x and ssh://git@h/y");
	CHECK_STR(red, "see https://***@h/x and ssh://***@h/y");
}

struct job {
	int idx;
	int mirror_rc, checkout_rc;
	char *mirror;
	char sha[41];
};

static void *mirror_thread(void *arg)
{
	struct job *j = arg;
	_cleanup_free_ char *mirrors = path_of(root, "mirrors-mt");
	j->mirror_rc = kiln_git_mirror(mirrors, up, &j->mirror);
	if (j->mirror_rc < 0) {
		fprintf(stderr, "thread %d: %s\n", j->idx, kiln_errmsg());
		return NULL;
	}
	_cleanup_free_ char *dir = kiln_asprintf("%s/mt%d", root, j->idx);
	j->checkout_rc = kiln_git_checkout(j->mirror, up, c4, "main", dir);
	if (j->checkout_rc == 0)
		j->checkout_rc = kiln_git_head(dir, j->sha, NULL);
	return NULL;
}

static void test_threads(void)
{
	enum { N = 4 };
	struct job jobs[N] = {0};
	pthread_t t[N];
	for (int i = 0; i < N; i++) {
		jobs[i].idx = i;
		CHECK_INT(pthread_create(&t[i], NULL, mirror_thread, &jobs[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++) {
		CHECK_INT(jobs[i].mirror_rc, 0);
		CHECK_INT(jobs[i].checkout_rc, 0);
		CHECK_STR(jobs[i].mirror, jobs[0].mirror);
		CHECK_STR(jobs[i].sha, c4);
	}
	for (int i = 0; i < N; i++)
		free(jobs[i].mirror);
}

int main(void)
{
	setenv("GIT_AUTHOR_NAME", "kiln test", 1);
	setenv("GIT_AUTHOR_EMAIL", "test@kiln.invalid", 1);
	setenv("GIT_COMMITTER_NAME", "kiln test", 1);
	setenv("GIT_COMMITTER_EMAIL", "test@kiln.invalid", 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_TERMINAL_PROMPT", "0", 1);
	CHECK_INT(kiln_mkdtemp("kiln-test-git", &root), 0);
	char real[4096];
	if (realpath(root, real)) {
		free(root);
		root = kiln_strdup(real);
	}
	setenv("HOME", root, 1); /* no user configuration, for git and libgit2 alike */

	CHECK_INT(kiln_git_init(), 0);
	CHECK_INT(kiln_git_init(), 0);

	make_upstream();
	test_mirror();
	test_read();
	test_resolve();
	test_checkout();
	test_snapshot();
	test_threads();
	test_checkout_ex();

	if (check_failed == 0)
		kiln_rm_rf(root);
	else
		fprintf(stderr, "test files kept in %s\n", root);
	free(root);
	free(up);
	free(mirror);
	return check_done();
}
