/*
 * git — everything kiln does with git, through libgit2: bare mirrors of
 * remote repositories shared by concurrent jobs (flock-ed while fetched),
 * checkouts of exact commits as local clones of a mirror, reading files and
 * directories at a commit (the coordinator's workflow files), resolving refs,
 * and snapshots of a developer's working tree for local runs.
 *
 * Every function opens its own libgit2 objects, so any of them may be called
 * from any thread at once. All return 0 or a negative errno with a message
 * for kiln_errmsg(): -ENOENT for a missing ref, commit, file or directory,
 * -EINVAL for bad arguments, -EFBIG past a size cap, -EIO for the rest.
 */
#ifndef KILN_GIT_H
#define KILN_GIT_H

#include <stddef.h>

#include "common/util.h"

/* Initialises libgit2 once per process (thread-safe, idempotent). */
int kiln_git_init(void);

/* Ensures an up-to-date bare mirror of `url` (local path, file://, https://) under mirrors_dir
   (named by the SHA-256 of the url), fetching all branches and tags (forced refspecs for everything
   under refs/heads/ and refs/tags/), pruning; the mirror is locked (flock on a lock file,
   O_CLOEXEC) while it is created/fetched so concurrent jobs and processes share it safely. Sets the
   mirror's HEAD to the remote's default branch when it can be known (for local repos: the source
   repo's HEAD). *out = mirror path (owned). */
int kiln_git_mirror(const char *mirrors_dir, const char *url, char **out);

/* Like kiln_git_mirror, but skips the fetch when the mirror already contains commit `sha` (full
   hex); -ENOENT when the commit is still missing after fetching. */
int kiln_git_mirror_for(const char *mirrors_dir, const char *url, const char *sha, char **out);

/* Makes `dir` (created if missing, must be empty or absent) a checkout of commit `sha` from the
   bare mirror: a local clone of the mirror (objects shared/hardlinked), remote "origin" set to
   `url` (kept as the mirror when NULL), detached HEAD at sha, working tree and index written. If
   `ref` is a branch name ("refs/heads/main", or "main" when the mirror has that branch), also
   create that local branch at sha and point HEAD at it (like actions/checkout does). */
int kiln_git_checkout(const char *mirror, const char *url, const char *sha, const char *ref,
                      const char *dir);

/* Resolves `ref` ("main", "refs/heads/main", a tag, "HEAD", a full or abbreviated sha) in the repo
   at `repo_path` (bare or not) to the full 40-hex sha of the commit it names (tags are peeled). */
int kiln_git_resolve(const char *repo_path, const char *ref, char sha[41]);

/* The full ref name for `ref` ("main" -> "refs/heads/main", tag -> "refs/tags/x", "HEAD" -> its
   branch), or *out = NULL if it is a sha (or a detached HEAD). -ENOENT if it names nothing. */
int kiln_git_full_ref(const char *repo_path, const char *ref, char **out);

/* Reads file `path` at commit `sha` (at most `max` bytes, else -EFBIG); *out is NUL-terminated and
   owned. -ENOENT if absent, -EISDIR if a directory. */
int kiln_git_read_file(const char *repo_path, const char *sha, const char *path, size_t max,
                       char **out, size_t *len);

/* Appends to `out` the names of the blob entries directly inside directory `dir` ("" or "." for the
   root) at commit `sha`, sorted. -ENOENT if no such dir. */
int kiln_git_list_dir(const char *repo_path, const char *sha, const char *dir, kiln_strv *out);

/* Copies the working tree of the local (non-bare) repository at repo_path into `dir` exactly as it
   is now, uncommitted changes included: a local clone at HEAD (with .git, so git commands work
   inside), then overlays what git status reports — modified and untracked-but-not-ignored files
   copied (mode kept, symlinks as symlinks), deleted files removed. A repository with no commit yet:
   copy the non-ignored files and git init. */
int kiln_git_snapshot_worktree(const char *repo_path, const char *dir);

/* The HEAD commit sha of a local repository, and its branch ref (e.g. refs/heads/main, or NULL when
   detached; `ref` may be NULL). -ENOENT when there is no commit yet. */
int kiln_git_head(const char *repo_path, char sha[41], char **ref);

#endif
