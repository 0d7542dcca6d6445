/*
 * test_git_diff — kiln_git_changed_paths and kiln_git_commit_message
 * (common/git.c), against repositories made with the git command line
 * (posix_spawnp): modified, added, deleted and renamed files, a merge base
 * for a branch, everything for no base, and the cap on the number of paths.
 */
#include "common/git.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char *root;

/* Runs git in `dir`; its stdout's first line into out (41 bytes) when out is not NULL. */
static int git(const char *dir, char out[41], const char *a, const char *b, const char *c,
	       const char *d)
{
	const char *argv[] = {"git", "-C", dir, "-c", "user.name=t", "-c", "user.email=t@x",
			      "-c", "commit.gpgsign=false", a, b, c, d, NULL};
	int pfd[2];
	if (pipe(pfd) < 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pfd[0]);
	pid_t pid;
	int r = posix_spawnp(&pid, "git", &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	char buf[256] = {0};
	size_t n = 0;
	ssize_t k;
	while ((k = read(pfd[0], buf + n, sizeof buf - 1 - n)) > 0 && n < sizeof buf - 1)
		n += (size_t)k;
	close(pfd[0]);
	if (r != 0)
		return -1;
	int st;
	waitpid(pid, &st, 0);
	if (out) {
		size_t l = strcspn(buf, "\n");
		l = l > 40 ? 40 : l;
		memcpy(out, buf, l);
		out[l] = '\0';
	}
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void put(const char *dir, const char *rel, const char *text)
{
	_cleanup_free_ char *path = kiln_asprintf("%s/%s", dir, rel);
	_cleanup_free_ char *parent = kiln_strdup(path);
	*strrchr(parent, '/') = 0;
	kiln_mkdir_p(parent, 0755);
	kiln_write_file_atomic(path, text, strlen(text), 0644);
}

static void commit(const char *dir, const char *msg, char sha[41])
{
	CHECK(git(dir, NULL, "add", "-A", NULL, NULL) == 0);
	CHECK(git(dir, NULL, "commit", "-q", "-m", msg) == 0);
	CHECK(git(dir, sha, "rev-parse", "HEAD", NULL, NULL) == 0);
}

static bool same(const kiln_strv *sv, const char *const *want)
{
	size_t n = 0;
	while (want[n])
		n++;
	if (sv->n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(sv->v[i], want[i]) != 0)
			return false;
	return true;
}

int main(void)
{
	CHECK(kiln_mkdtemp("kiln-git-diff", &root) == 0);
	_cleanup_free_ char *repo = kiln_asprintf("%s/repo", root);
	kiln_mkdir_p(repo, 0755);
	CHECK(git(repo, NULL, "init", "-q", "-b", "main") == 0);
	char c1[41], c2[41], c3[41], c4[41];
	put(repo, "a.txt", "a");
	put(repo, "docs/b.md", "b");
	put(repo, "src/c.c", "c");
	commit(repo, "one", c1);
	put(repo, "a.txt", "a2");              /* modified */
	put(repo, "src/new/d.c", "d");         /* added */
	CHECK(git(repo, NULL, "rm", "-q", "docs/b.md", NULL) == 0); /* deleted */
	CHECK(git(repo, NULL, "mv", "src/c.c", "src/e.c", NULL) == 0);    /* renamed */
	commit(repo, "two\n\nbody [skip ci]", c2);

	kiln_strv out = {0};
	CHECK(kiln_git_changed_paths(repo, c1, c2, false, 100, &out) == 0);
	static const char *const want12[] = {"a.txt", "docs/b.md", "src/c.c", "src/e.c",
					     "src/new/d.c", NULL};
	CHECK(same(&out, want12));
	kiln_strv_free(&out);
	/* no base: every file of the commit */
	CHECK(kiln_git_changed_paths(repo, NULL, c1, false, 100, &out) == 0);
	static const char *const want1[] = {"a.txt", "docs/b.md", "src/c.c", NULL};
	CHECK(same(&out, want1));
	kiln_strv_free(&out);
	/* nothing changed */
	CHECK(kiln_git_changed_paths(repo, c2, c2, false, 100, &out) == 0 && out.n == 0);
	/* over the cap: -E2BIG with the first ones */
	CHECK(kiln_git_changed_paths(repo, c1, c2, false, 2, &out) == -E2BIG);
	CHECK(out.n == 2);
	kiln_strv_free(&out);
	/* a branch against main: only what the branch did, from the merge base */
	CHECK(git(repo, NULL, "checkout", "-q", "-b", "topic") == 0);
	CHECK(git(repo, NULL, "reset", "-q", "--hard", c1) == 0);
	put(repo, "topic.txt", "t");
	commit(repo, "topic", c3);
	CHECK(git(repo, NULL, "checkout", "-q", "main", NULL) == 0);
	put(repo, "later.txt", "l");
	commit(repo, "later on main", c4);
	CHECK(kiln_git_changed_paths(repo, "refs/heads/main", c3, true, 100, &out) == 0);
	static const char *const want_topic[] = {"topic.txt", NULL};
	CHECK(same(&out, want_topic));
	kiln_strv_free(&out);
	/* without the merge base, main's own changes show too */
	CHECK(kiln_git_changed_paths(repo, "main", c3, false, 100, &out) == 0);
	CHECK(out.n > 1);
	kiln_strv_free(&out);
	/* errors */
	CHECK(kiln_git_changed_paths(repo, "nope", c3, false, 100, &out) == -ENOENT);
	CHECK(kiln_git_changed_paths(repo, "0123456789012345678901234567890123456789", c3, false,
				     100, &out) < 0);
	kiln_strv_free(&out);

	char *msg = NULL;
	CHECK(kiln_git_commit_message(repo, c2, 1000, &msg) == 0);
	CHECK_STR(msg, "two\n\nbody [skip ci]\n");
	free(msg);
	CHECK(kiln_git_commit_message(repo, c2, 3, &msg) == 0);
	CHECK_STR(msg, "two");
	free(msg);
	CHECK(kiln_git_commit_message(repo, "nope", 10, &msg) == -ENOENT && msg == NULL);

	kiln_rm_rf(root);
	free(root);
	return check_done();
}
