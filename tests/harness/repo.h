/*
 * repo — for unit tests that build real repositories and trees with the git
 * command line (posix_spawnp, never system()): running a program and reading
 * its output, writing and reading files under a directory, and git's HEAD.
 * Include after tests/harness/check.h.
 */
#ifndef KILN_TEST_REPO_H
#define KILN_TEST_REPO_H

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

extern char **environ;

/* Runs argv (found on PATH) in `cwd` (NULL: here); with `out`, captures stdout (trailing
   newlines trimmed, at most 1 MiB). Returns the exit code, or -1. */
static inline int spawn_in(const char *cwd, const char *const argv[], char **out)
{
	int pfd[2] = {-1, -1};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (out) {
		if (pipe2(pfd, O_CLOEXEC) < 0) {
			posix_spawn_file_actions_destroy(&fa);
			return -1;
		}
		posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	} else {
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	}
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (cwd)
		posix_spawn_file_actions_addchdir_np(&fa, cwd);
	pid_t pid;
	int r = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (out)
		close(pfd[1]);
	if (r != 0) {
		if (out)
			close(pfd[0]);
		return -1;
	}
	if (out) {
		kiln_buf b = {0};
		char chunk[4096];
		ssize_t n;
		while ((n = read(pfd[0], chunk, sizeof chunk)) > 0 || (n < 0 && errno == EINTR))
			if (n > 0 && b.len < (1u << 20))
				kiln_buf_append(&b, chunk, (size_t)n);
		close(pfd[0]);
		while (b.len > 0 && b.p[b.len - 1] == '\n')
			b.p[--b.len] = '\0';
		*out = b.p ? kiln_buf_steal(&b) : kiln_strdup("");
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* git -C dir ARGS: its exit code. */
#define GIT(dir, ...)                                                                              \
	spawn_in(NULL, (const char *const[]){"git", "-C", (dir), __VA_ARGS__, NULL}, NULL)

static inline char *path_of(const char *a, const char *b)
{
	return kiln_asprintf("%s/%s", a, b);
}

/* Writes dir/rel (0644), making its directories. */
static inline void put(const char *dir, const char *rel, const char *content)
{
	_cleanup_free_ char *p = path_of(dir, rel);
	_cleanup_free_ char *parent = kiln_strdup(p);
	*strrchr(parent, '/') = '\0';
	kiln_mkdir_p(parent, 0755);
	if (kiln_write_file_atomic(p, content, strlen(content), 0644) < 0)
		fprintf(stderr, "write %s: %s\n", p, kiln_errmsg());
}

/* The file's content, or NULL if it cannot be read. Owned by the caller. */
static inline char *get(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = path_of(dir, rel);
	char *s = NULL;
	if (kiln_read_file(p, 1 << 20, &s, NULL) < 0)
		return NULL;
	return s;
}

static inline bool exists(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = path_of(dir, rel);
	struct stat st;
	return lstat(p, &st) == 0;
}

static inline void check_get(const char *dir, const char *rel, const char *want)
{
	_cleanup_free_ char *s = get(dir, rel);
	CHECK_STR(s, want);
}

/* The output of argv (git …), or "(git failed)". Owned. */
static inline char *spawn_out(const char *const argv[])
{
	char *out = NULL;
	if (spawn_in(NULL, argv, &out) != 0) {
		free(out);
		return kiln_strdup("(git failed)");
	}
	return out;
}

/* git -C dir ARGS: its output. Owned. */
#define GIT_OUT(dir, ...) spawn_out((const char *const[]){"git", "-C", (dir), __VA_ARGS__, NULL})

static inline void head_sha(const char *dir, char sha[41])
{
	_cleanup_free_ char *s = GIT_OUT(dir, "rev-parse", "HEAD");
	snprintf(sha, 41, "%s", s);
}

#endif
