/*
 * checkout — see checkout.h. The inputs of GitHub's actions/checkout, from the agent's bare
 * mirror per URL (common/git.h):
 *
 *   repository   owner/name, or a URL (scheme://...), an scp-like host:path or an absolute path.
 *                owner/name becomes a URL by this rule, first match wins:
 *                  1. the `github-server-url` input, if given: <server>/<owner>/<name>;
 *                  2. the agent's environment variable KILN_CHECKOUT_SERVER_URL, likewise;
 *                  3. the job's repository URL with its last two path components replaced by
 *                     owner/name, keeping a ".git" suffix if it had one
 *                     (https://forge/o/r.git -> https://forge/owner/name.git,
 *                     /srv/git/o/r -> /srv/git/owner/name, git@host:o/r -> git@host:owner/name).
 *                The job's own repository (the input absent, equal to github.repository, or
 *                naming the job's URL) is checked out at the job's commit by default.
 *   ref          branch, tag or sha (see kiln_git_resolve_checkout_ref: branch before tag, as
 *                actions/checkout does). Default: the job's sha (on the job's branch) for the
 *                job's own repository, the remote's default branch for another one. A branch
 *                leaves HEAD on a local branch tracking origin/<branch>; a tag or sha detaches.
 *                A ref outside branches and tags (refs/pull/N/merge) is fetched by name.
 *   path         below the workspace only (no "..", no symlink on the way).
 *   fetch-depth  0: full history and every tag. N > 0 is accepted, but libgit2 1.5 has no
 *                shallow clone, so the history is whole anyway; only the tags follow GitHub
 *                (none then, except the one checked out, unless fetch-tags is true).
 *   fetch-tags   tags even with fetch-depth > 0.
 *   submodules   true: the submodules at the commits recorded, each through its own mirror;
 *                recursive: theirs too. Relative URLs resolve against the repository's URL;
 *                a local path or file:// URL only in a repository that is local itself.
 *   token        credentials for https remotes (user x-access-token), given to libgit2 only
 *                when the server asks; never written into the checkout's config, a URL or a log
 *                line. (The agent masks secrets in logs; this module never prints it at all.)
 *   persist-credentials  accepted; it has no effect, since the token is never written.
 *   clean        true (default): the directory is emptied first; false: untracked files are
 *                kept and the checkout is written over them (the files an old checkout there
 *                tracked are removed or rewritten, as git checkout would; its .git replaced).
 *   lfs          false only: true gives a warning and LFS files stay pointer files.
 *   sparse-checkout, filter, ssh-key  accepted with a warning; full checkout over https/file.
 *
 * In local mode (`kiln run`, the job's `worktree` flag) the job's own repository with no `ref`
 * is the developer's working tree as it is, uncommitted changes included; with a `ref`, or
 * another repository, it is a checkout like any other.
 */
#include "agent/checkout.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/git.h"

/* Every input of actions/checkout v4; anything else gets a warning, as on GitHub. */
static const char *const known_inputs[] = {
    "repository",
    "ref",
    "token",
    "ssh-key",
    "ssh-known-hosts",
    "ssh-strict",
    "ssh-user",
    "persist-credentials",
    "path",
    "clean",
    "filter",
    "sparse-checkout",
    "sparse-checkout-cone-mode",
    "fetch-depth",
    "fetch-tags",
    "show-progress",
    "lfs",
    "submodules",
    "set-safe-directory",
    "github-server-url",
};

char *agent_inside(const char *ws, const char *rel)
{
	if (!rel || !*rel)
		return kiln_strdup(ws);
	size_t n = strlen(ws);
	while (n > 1 && ws[n - 1] == '/')
		n--;
	if (rel[0] == '/') {
		if (strncmp(rel, ws, n) != 0 || (rel[n] != '/' && rel[n] != '\0'))
			return NULL;
		rel += n;
	}
	/* Component by component: "." and empty parts dropped, ".." refused. */
	kiln_buf b = {0};
	kiln_buf_append(&b, ws, n);
	for (const char *s = rel; *s;) {
		size_t len = strcspn(s, "/");
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			kiln_buf_free(&b);
			return NULL;
		}
		if (len && !(len == 1 && s[0] == '.')) {
			kiln_buf_puts(&b, "/");
			kiln_buf_append(&b, s, len);
		}
		s += len;
		while (*s == '/')
			s++;
	}
	return kiln_buf_steal(&b);
}

static void logf_(const agent_checkout_ctx *cc, const char *fmt, ...) KILN_PRINTF(2, 3);
static void logf_(const agent_checkout_ctx *cc, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	/* no credentials from a URL the user wrote */
	_cleanup_free_ char *shown = kiln_git_redact(buf);
	cc->log(cc->log_arg, shown);
}

/* Input `name`, trimmed; NULL when absent or blank. Owned. */
static char *input(const agent_checkout_ctx *cc, const char *name)
{
	const char *v = json_string_value(json_object_get(cc->with, name));
	if (!v)
		return NULL;
	while (isspace((unsigned char)*v))
		v++;
	size_t n = strlen(v);
	while (n > 0 && isspace((unsigned char)v[n - 1]))
		n--;
	return n ? kiln_asprintf("%.*s", (int)n, v) : NULL;
}

/* A boolean input as actions/toolkit reads one (true|True|TRUE, false|False|FALSE). */
static int input_bool(const agent_checkout_ctx *cc, const char *name, bool def, bool *out)
{
	_cleanup_free_ char *v = input(cc, name);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE")) {
		*out = false;
		return 0;
	}
	return kiln_err(EINVAL, "checkout: input '%s' must be true or false, not '%.100s'", name,
	                v);
}

/* "owner/name": two non-empty parts of letters, digits, '.', '_' and '-', neither "." nor "..". */
static bool is_owner_name(const char *s)
{
	const char *slash = strchr(s, '/');
	if (!slash || strchr(slash + 1, '/'))
		return false;
	const char *parts[2] = {s, slash + 1};
	size_t lens[2] = {(size_t)(slash - s), strlen(slash + 1)};
	for (int i = 0; i < 2; i++) {
		if (!lens[i] || (lens[i] == 1 && parts[i][0] == '.') ||
		    (lens[i] == 2 && parts[i][0] == '.' && parts[i][1] == '.'))
			return false;
		for (size_t k = 0; k < lens[i]; k++) {
			char c = parts[i][k];
			if (!isalnum((unsigned char)c) && c != '.' && c != '_' && c != '-')
				return false;
		}
	}
	return true;
}

/* A repository given as a URL or path rather than owner/name. */
static bool is_url_or_path(const char *s)
{
	if (strstr(s, "://") || s[0] == '/')
		return true;
	const char *colon = strchr(s, ':'), *slash = strchr(s, '/');
	return colon && colon != s && (!slash || colon < slash); /* scp-like host:path */
}

char *agent_checkout_repo_url(const char *job_url, const char *server, const char *owner_name)
{
	if (server && *server) {
		size_t n = strlen(server);
		while (n > 0 && server[n - 1] == '/')
			n--;
		return kiln_asprintf("%.*s/%s", (int)n, server, owner_name);
	}
	const char *job = job_url ? job_url : "";
	_cleanup_free_ char *u = kiln_strdup(job);
	size_t n = strlen(u);
	while (n > 1 && u[n - 1] == '/')
		u[--n] = '\0';
	const char *suffix = n > 4 && strcmp(u + n - 4, ".git") == 0 ? ".git" : "";
	/* the part that must stay: scheme://host, or host: of an scp-like URL */
	const char *scheme = strstr(u, "://");
	size_t keep = 0;
	if (scheme) {
		const char *path = strchr(scheme + 3, '/');
		keep = path ? (size_t)(path - u) : n;
	} else if (u[0] != '/' && is_url_or_path(u)) {
		keep = (size_t)(strchr(u, ':') - u) + 1;
	}
	char sep = '/';
	for (int cut = 0; cut < 2; cut++) {
		char *slash = strrchr(u + keep, '/');
		if (slash && (size_t)(slash - u) >= keep) {
			*slash = '\0';
		} else if (cut == 1 && keep > 0 && u[keep - 1] == ':') {
			u[keep] = '\0'; /* git@host:o/r -> git@host: */
			sep = '\0';
		} else {
			kiln_err(
			    EINVAL,
			    "checkout: cannot make a URL for '%s' from the job's repository URL %s "
			    "(set github-server-url, or give a URL)",
			    owner_name, job);
			return NULL;
		}
	}
	return sep ? kiln_asprintf("%s/%s%s", u, owner_name, suffix)
	           : kiln_asprintf("%s%s%s", u, owner_name, suffix);
}

/* The URL of owner/name, by the rule at the top of this file; NULL with a message if none. */
static char *url_of(const agent_checkout_ctx *cc, const char *owner_name)
{
	_cleanup_free_ char *server = input(cc, "github-server-url");
	const char *env = getenv("KILN_CHECKOUT_SERVER_URL");
	return agent_checkout_repo_url(cc->j->spec->repo_url, server ? server : env, owner_name);
}

/* Whether every existing component of `dir` below `ws` is a real directory: no symlink on the
   way may take the checkout out of the workspace. */
static bool plain_dirs_below(const char *ws, const char *dir)
{
	size_t n = strlen(ws);
	if (strncmp(dir, ws, n) != 0 || dir[n] == '\0')
		return true;
	_cleanup_free_ char *p = kiln_strdup(dir);
	for (char *s = p + n + 1;;) {
		char *slash = strchr(s, '/');
		if (slash)
			*slash = '\0';
		struct stat st;
		if (lstat(p, &st) < 0)
			return errno == ENOENT;
		if (!S_ISDIR(st.st_mode))
			return false;
		if (!slash)
			return true;
		*slash = '/';
		s = slash + 1;
	}
}

static const char *short_ref(const char *ref)
{
	if (strncmp(ref, "refs/heads/", 11) == 0)
		return ref + 11;
	if (strncmp(ref, "refs/tags/", 10) == 0)
		return ref + 10;
	return ref;
}

/* A ref the mirror's refspecs (branches and tags) do not bring, to be fetched by name. */
static const char *extra_ref(const char *ref)
{
	if (!ref || strncmp(ref, "refs/", 5) != 0 || strncmp(ref, "refs/heads/", 11) == 0 ||
	    strncmp(ref, "refs/tags/", 10) == 0)
		return NULL;
	return ref;
}

static bool is_sha(const char *s)
{
	return strlen(s) == 40 && strspn(s, "0123456789abcdefABCDEF") == 40;
}

typedef struct checkout_plan {
	const char *display; /* what the user calls the repository (owner/name or URL) */
	char *url;           /* where it is fetched from */
	bool own;            /* the job's own repository */
	char *ref;           /* the `ref` input, or NULL */
	char *token;
	bool clean, fetch_tags, lfs, persist;
	long depth;
	int submodules; /* 0, 1 = true, 2 = recursive */
	char *dir, *shown_dir;
} checkout_plan;

static void plan_free(checkout_plan *p)
{
	free(p->url);
	free(p->ref);
	if (p->token) {
		explicit_bzero(p->token, strlen(p->token));
		free(p->token);
	}
	free(p->dir);
	free(p->shown_dir);
}

/* Reads and checks the inputs; warnings go to the log. */
static int plan_inputs(const agent_checkout_ctx *cc, checkout_plan *p, char **repo_in)
{
	const Kiln__JobAssignment *s = cc->j->spec;
	const char *key;
	json_t *v;
	json_object_foreach(cc->with, key, v)
	{
		bool known = false;
		for (size_t i = 0; i < KILN_ARRAY_SIZE(known_inputs) && !known; i++)
			known = strcmp(key, known_inputs[i]) == 0;
		if (!known)
			logf_(cc, "Warning: actions/checkout has no input '%.100s'; it is ignored",
			      key);
	}

	int r;
	if ((r = input_bool(cc, "clean", true, &p->clean)) < 0 ||
	    (r = input_bool(cc, "fetch-tags", false, &p->fetch_tags)) < 0 ||
	    (r = input_bool(cc, "lfs", false, &p->lfs)) < 0 ||
	    (r = input_bool(cc, "persist-credentials", true, &p->persist)) < 0)
		return r;
	if (p->lfs)
		logf_(cc, "Warning: lfs: true is not supported by kiln; files tracked by Git LFS "
		          "stay pointer files");
	static const struct {
		const char *name, *warning;
	} unsupported[] = {
	    {"sparse-checkout", "sparse-checkout is not supported by kiln; the whole tree is "
	                        "checked out"},
	    {"filter", "filter is not supported by kiln; every object is fetched"},
	    {"ssh-key", "ssh-key is not supported by kiln; the key is not used"},
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(unsupported); i++) {
		_cleanup_free_ char *u = input(cc, unsupported[i].name);
		if (u)
			logf_(cc, "Warning: %s", unsupported[i].warning);
	}

	/* GitHub: anything that is not a number >= 0 counts as 0. */
	_cleanup_free_ char *depth = input(cc, "fetch-depth");
	p->depth = 1;
	if (depth) {
		char *end;
		errno = 0;
		p->depth = strtol(depth, &end, 10);
		if (errno || *end || end == depth || p->depth < 0)
			p->depth = 0;
	}
	_cleanup_free_ char *subs = input(cc, "submodules");
	p->submodules = !subs                                ? 0
	                : strcasecmp(subs, "recursive") == 0 ? 2
	                : strcasecmp(subs, "true") == 0      ? 1
	                                                     : 0;
	p->ref = input(cc, "ref");
	p->token = input(cc, "token");

	_cleanup_free_ char *path = input(cc, "path");
	p->dir = agent_inside(cc->ws, path);
	if (!p->dir)
		return kiln_err(EINVAL, "checkout: path '%.200s' is not inside the workspace",
		                path ? path : "");
	if (!plain_dirs_below(cc->ws, p->dir))
		return kiln_err(EINVAL,
		                "checkout: path '%.200s' goes through a symlink or a file, and may "
		                "leave the workspace",
		                path);
	size_t wn = strlen(cc->ws);
	p->shown_dir = strcmp(p->dir, cc->ws) == 0 ? kiln_strdup("the workspace")
	                                           : kiln_strdup(p->dir + wn + 1);

	*repo_in = input(cc, "repository");
	const char *repo = *repo_in;
	const char *own_name = s->repository ? s->repository : "";
	if (!repo || strcasecmp(repo, own_name) == 0 ||
	    (s->repo_url && strcmp(repo, s->repo_url) == 0)) {
		p->own = true;
		p->url = kiln_strdup(s->repo_url ? s->repo_url : "");
		p->display = *own_name ? own_name : p->url;
		return 0;
	}
	if (is_url_or_path(repo)) {
		p->url = kiln_strdup(repo);
	} else if (is_owner_name(repo)) {
		if (!(p->url = url_of(cc, repo)))
			return -EINVAL;
	} else {
		return kiln_err(EINVAL,
		                "checkout: repository '%.200s' is neither owner/name, a URL nor an "
		                "absolute path",
		                repo);
	}
	p->own = s->repo_url && strcmp(p->url, s->repo_url) == 0;
	p->display = repo;
	return 0;
}

static int run_checkout(const agent_checkout_ctx *cc, checkout_plan *p)
{
	const Kiln__JobAssignment *s = cc->j->spec;
	kiln_git_dir_mode mode = p->clean ? KILN_GIT_DIR_CLEAN : KILN_GIT_DIR_KEEP;
	_cleanup_free_ char *mirrors = kiln_asprintf("%s/mirrors", cc->j->a->work_dir);
	int r = kiln_mkdir_p(mirrors, 0750);
	if (r < 0)
		return r;

	if (p->own && s->worktree && !p->ref) {
		if ((r = kiln_git_snapshot_worktree_ex(p->url, p->dir, mode)) < 0)
			return r;
		logf_(cc, "Copied the working tree of %s (uncommitted changes included) into %s",
		      p->url, p->shown_dir);
		return 0;
	}

	kiln_git_auth auth = {.password = p->token};
	kiln_git_fetch_opts fo = {.auth = &auth};
	_cleanup_free_ char *mirror = NULL, *full = NULL;
	char sha[41] = "";
	const char *want = NULL; /* the commit the mirror must hold, when known up front */
	if (p->ref && is_sha(p->ref)) {
		want = p->ref;
	} else if (!p->ref && p->own) {
		want = s->sha;
		fo.extra_ref = extra_ref(s->ref);
	} else if (p->ref) {
		fo.extra_ref = extra_ref(p->ref);
	}
	if ((r = kiln_git_mirror_ex(mirrors, p->url, want, &fo, &mirror)) < 0)
		return r;
	if (fo.fetched)
		logf_(cc, "Fetched %s (branches and tags%s) into the agent's mirror", p->url,
		      fo.extra_ref ? ", and the ref" : "");
	else
		logf_(cc, "Commit %.12s is already in the agent's mirror of %s", want ? want : "",
		      p->url);

	if (p->ref) {
		if ((r = kiln_git_resolve_checkout_ref(mirror, p->ref, sha, &full)) < 0)
			return r;
	} else if (p->own) {
		snprintf(sha, sizeof sha, "%s", s->sha);
		full = s->ref && *s->ref ? kiln_strdup(s->ref) : NULL;
	} else {
		r = kiln_git_head(mirror, sha, &full);
		if (r < 0 || !full)
			return kiln_err(ENOENT, "the remote has no default branch (give a ref)");
	}

	kiln_git_checkout_opts co = {
	    .ref = full,
	    .dir_mode = mode,
	    .no_tags = p->depth > 0 && !p->fetch_tags,
	};
	if ((r = kiln_git_checkout_ex(mirror, p->url, sha, &co, p->dir)) < 0)
		return r;
	_cleanup_free_ char *head = NULL;
	char head_sha[41];
	kiln_git_head(p->dir, head_sha, &head);
	_cleanup_free_ char *what =
	    full ? kiln_asprintf("%s at %s", short_ref(full), sha) : kiln_asprintf("at %s", sha);
	if (head)
		logf_(cc, "Checked out %s %s into %s, on branch %s", p->display, what, p->shown_dir,
		      short_ref(head));
	else
		logf_(cc, "Checked out %s %s into %s, HEAD detached", p->display, what,
		      p->shown_dir);
	return 0;
}

int agent_checkout(const agent_checkout_ctx *cc)
{
	const Kiln__JobAssignment *s = cc->j->spec;
	checkout_plan p = {0};
	_cleanup_free_ char *repo_in = NULL;
	int r = plan_inputs(cc, &p, &repo_in); /* its messages start with "checkout:" */
	if (r == 0) {
		r = run_checkout(cc, &p);
		if (r == 0 && p.submodules) {
			_cleanup_free_ char *mirrors =
			    kiln_asprintf("%s/mirrors", cc->j->a->work_dir);
			kiln_git_auth auth = {.password = p.token};
			kiln_git_submodule_opts so = {
			    .mirrors_dir = mirrors,
			    .url = p.url,
			    .recursive = p.submodules == 2,
			    .no_tags = p.depth > 0 && !p.fetch_tags,
			    .auth = &auth,
			    .log = cc->log,
			    .log_arg = cc->log_arg,
			};
			r = kiln_git_submodules(p.dir, &so);
		}
		if (r < 0) {
			const char *ref = p.ref             ? p.ref
			                  : p.own && s->sha ? s->sha
			                                    : "its default branch";
			_cleanup_free_ char *who = kiln_git_redact(p.display ? p.display : "");
			kiln_err_prefix("checkout of %s at %s", who, ref);
		}
	}
	plan_free(&p);
	return r;
}
