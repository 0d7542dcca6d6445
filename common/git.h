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

#include <stdbool.h>
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

/* Credentials for https:// remotes: handed to libgit2 only when the server asks for them (HTTP
   401), never written into a URL, a config file, a message or a log line. A URL's own
   user:password@ part is used the same way (and stripped everywhere else). */
typedef struct kiln_git_auth {
	const char
	    *username; /* NULL or "": "x-access-token" (GitHub, Gitea and GitLab accept it) */
	const char *password; /* the token; NULL or "": no credentials */
} kiln_git_auth;

typedef struct kiln_git_fetch_opts {
	const kiln_git_auth *auth; /* may be NULL */
	/* A ref outside refs/heads/ and refs/tags/ to fetch as well ("refs/pull/7/merge"), or NULL:
	   mapped to itself in the mirror (forced). */
	const char *extra_ref;
	bool fetched; /* out: whether a fetch happened (false when the commit was there already) */
} kiln_git_fetch_opts;

/* kiln_git_mirror_for (sha given) or kiln_git_mirror (sha NULL) with options (o may be NULL). A
   URL's user:password@ is stripped from the mirror's name and config and used as credentials. */
int kiln_git_mirror_ex(const char *mirrors_dir, const char *url, const char *sha,
                       kiln_git_fetch_opts *o, char **out);

/* What a checkout does with what is already in its directory. */
typedef enum kiln_git_dir_mode {
	KILN_GIT_DIR_EMPTY_ONLY = 0, /* absent or empty, else -ENOTEMPTY (and left alone) */
	KILN_GIT_DIR_CLEAN,          /* everything in it is removed first */
	KILN_GIT_DIR_KEEP,           /* untracked files are kept and the checkout written over
	                                them; the files an old .git there tracked are removed first
	                                (as git checkout would), then that .git is replaced */
} kiln_git_dir_mode;

typedef struct kiln_git_checkout_opts {
	const char *ref; /* as kiln_git_checkout's `ref`: a branch makes HEAD that branch */
	kiln_git_dir_mode dir_mode;
	bool no_tags; /* the clone gets no tags, except the one `ref` names (refs/tags/x) */
} kiln_git_checkout_opts;

/* Makes `dir` (created if missing, must be empty or absent) a checkout of commit `sha` from the
   bare mirror: a local clone of the mirror (objects shared/hardlinked), remote "origin" set to
   `url` (kept as the mirror when NULL), detached HEAD at sha, working tree and index written. If
   `ref` is a branch name ("refs/heads/main", or "main" when the mirror has that branch), also
   create that local branch at sha and point HEAD at it (like actions/checkout does). */
int kiln_git_checkout(const char *mirror, const char *url, const char *sha, const char *ref,
                      const char *dir);

/* kiln_git_checkout with options (o may be NULL: as kiln_git_checkout with ref NULL). `url`
   loses any user:password@ before it becomes origin. */
int kiln_git_checkout_ex(const char *mirror, const char *url, const char *sha,
                         const kiln_git_checkout_opts *o, const char *dir);

/* Resolves `ref` in `repo_path` as actions/checkout does: a full 40-hex sha (which must be
   there); "HEAD" (its branch); "refs/..." exactly; else the branch refs/heads/<ref>, then the tag
   refs/tags/<ref>, then an abbreviated sha (4 to 39 hex). *full = the full ref name, or NULL for a
   sha (owned). -ENOENT naming `ref` when it names nothing. */
int kiln_git_resolve_checkout_ref(const char *repo_path, const char *ref, char sha[41],
                                  char **full);

typedef struct kiln_git_submodule_opts {
	const char *mirrors_dir; /* where each submodule's own mirror lives */
	const char *url;         /* the superproject's remote URL: relative submodule URLs
	                            ("../lib.git") are resolved against it (git's rule) */
	bool recursive;          /* submodules of submodules too */
	bool no_tags;            /* as kiln_git_checkout_opts.no_tags */
	/* Credentials for submodules on the same https host as `url` (as actions/checkout does). */
	const kiln_git_auth *auth;
	void (*log)(void *arg, const char *line); /* one line per fetch and checkout; may be NULL */
	void *log_arg;
} kiln_git_submodule_opts;

/* Checks out the submodules of the non-bare repository `dir` at the commits its HEAD records,
   as `git submodule update --init [--recursive]` would: each fetched through its own mirror
   (kiln_git_mirror_ex), its git dir at <dir>/.git/modules/<name> with a .git file in its
   directory, detached HEAD, origin = its URL; submodule.<name>.url and .active set in `dir`'s
   config. Submodules with `update = none` and .gitmodules entries with no gitlink are skipped.
   A local URL (a path, file://) is refused (-EPERM) unless `url` is local too, as git's
   protocol.file.allow=user does. */
int kiln_git_submodules(const char *dir, const kiln_git_submodule_opts *o);

/* `s` with the user:password@ of every URL in it replaced by "***" (for messages). Owned. */
char *kiln_git_redact(const char *s);

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

/* Appends to `out` the paths that differ between commits `base` and `head` (added, deleted,
   modified, type changed; a rename counts as its old and its new path), sorted and unique.
   With merge_base, the diff starts at the merge base of base and head instead (what a pull
   request or a new branch changes). base NULL or "": every file in head. At most `max` paths:
   past that, -E2BIG with the first `max` in `out`. */
int kiln_git_changed_paths(const char *repo_path, const char *base, const char *head,
                           bool merge_base, size_t max, kiln_strv *out);

/* The message of commit `rev` (a sha or a ref), at most `max` bytes of it; owned. */
int kiln_git_commit_message(const char *repo_path, const char *rev, size_t max, char **out);

/* Copies the working tree of the local (non-bare) repository at repo_path into `dir` exactly as it
   is now, uncommitted changes included: a local clone at HEAD (with .git, so git commands work
   inside), then overlays what git status reports — modified and untracked-but-not-ignored files
   copied (mode kept, symlinks as symlinks), deleted files removed. A repository with no commit yet:
   copy the non-ignored files and git init. */
int kiln_git_snapshot_worktree(const char *repo_path, const char *dir);

/* kiln_git_snapshot_worktree, with what `dir` already holds handled as `mode` says. */
int kiln_git_snapshot_worktree_ex(const char *repo_path, const char *dir, kiln_git_dir_mode mode);

/* The HEAD commit sha of a local repository, and its branch ref (e.g. refs/heads/main, or NULL when
   detached; `ref` may be NULL). -ENOENT when there is no commit yet. */
int kiln_git_head(const char *repo_path, char sha[41], char **ref);

#endif
