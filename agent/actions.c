/*
 * actions — see actions.h. A remote action's checkout is keyed by the ref
 * as written (work/_actions/OWNER/REPO/REF, '/' and '%' in REF escaped), and
 * a file beside it (.REF.sha) records the commit it holds. Each use fetches
 * the mirror and resolves REF again, as GitHub does (tags move), unless REF
 * is a full commit sha already cached; the checkout is redone only when the
 * commit changed. A flock on .REF.lock makes concurrent jobs wait for one
 * checkout; the new tree is built in a temporary directory and renamed into
 * place, so a reader never sees half of one.
 */
#include "agent/actions.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/git.h"

#define MAX_NAME 100 /* owner and repository names */
#define MAX_REF 255

void agent_action_ref_clear(agent_action_ref *r)
{
	free(r->owner);
	free(r->repo);
	free(r->path);
	free(r->ref);
	*r = (agent_action_ref){0};
}

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n > MAX_NAME || (n == 1 && s[0] == '.') || (n == 2 && !strncmp(s, "..", 2)))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

/* A relative path without empty, "." or ".." components or control characters. */
static bool path_ok(const char *p)
{
	if (!*p || *p == '/')
		return false;
	for (const char *s = p;;) {
		size_t n = strcspn(s, "/");
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && !strncmp(s, "..", 2)))
			return false;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '\\')
				return false;
		if (!s[n])
			return true;
		s += n + 1;
		if (!*s) /* a trailing '/' */
			return true;
	}
}

/* What git check-ref-format accepts, roughly, and nothing that could leave a directory. */
static bool ref_ok(const char *r)
{
	size_t n = strlen(r);
	if (n == 0 || n > MAX_REF || r[0] == '-' || r[0] == '.' || r[0] == '/' || r[n - 1] == '/' ||
	    r[n - 1] == '.' || strstr(r, "..") || strstr(r, "//") || strstr(r, "/.") ||
	    strstr(r, "@{"))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)r[i] <= 0x20 || r[i] == 0x7f || strchr("~^:?*[\\", r[i]))
			return false;
	return true;
}

int agent_action_ref_parse(const char *uses, agent_action_ref *out)
{
	*out = (agent_action_ref){0};
	if (strncmp(uses, "docker://", 9) == 0) {
		out->kind = AGENT_ACTION_DOCKER;
		return 0;
	}
	if (strncmp(uses, "./", 2) == 0) {
		const char *p = uses + 2;
		while (*p == '/')
			p++;
		if (*p && !path_ok(p))
			return kiln_err(EINVAL, "the action path '%s' must stay inside the workspace",
					uses);
		out->kind = AGENT_ACTION_LOCAL;
		out->path = kiln_strdup(p);
		size_t n = strlen(out->path);
		while (n && out->path[n - 1] == '/')
			out->path[--n] = '\0';
		return 0;
	}
	const char *at = strrchr(uses, '@');
	const char *slash = strchr(uses, '/');
	if (!at || !slash || slash > at)
		return kiln_err(EINVAL, "'%s' is not an action reference (OWNER/REPO[/PATH]@REF, "
					"./PATH or docker://IMAGE)",
				uses);
	const char *repo = slash + 1;
	const char *rend = memchr(repo, '/', (size_t)(at - repo));
	if (!rend)
		rend = at;
	if (!name_ok(uses, (size_t)(slash - uses)) || uses[0] == '.' ||
	    !name_ok(repo, (size_t)(rend - repo)))
		return kiln_err(EINVAL, "'%s': invalid owner or repository name", uses);
	char *path = rend < at ? kiln_asprintf("%.*s", (int)(at - rend - 1), rend + 1)
			       : kiln_strdup("");
	if (*path && !path_ok(path)) {
		free(path);
		return kiln_err(EINVAL, "'%s': invalid path inside the repository", uses);
	}
	if (!ref_ok(at + 1)) {
		free(path);
		return kiln_err(EINVAL, "'%s': invalid ref '%s'", uses, at + 1);
	}
	out->kind = AGENT_ACTION_REMOTE;
	out->owner = kiln_asprintf("%.*s", (int)(slash - uses), uses);
	out->repo = kiln_asprintf("%.*s", (int)(rend - repo), repo);
	out->path = path;
	size_t n = strlen(out->path);
	while (n && out->path[n - 1] == '/')
		out->path[--n] = '\0';
	out->ref = kiln_strdup(at + 1);
	return 0;
}

const char *agent_action_unsupported(const char *uses)
{
	static const char *const names[] = {
	    "actions/upload-artifact/merge",
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(names); i++) {
		size_t n = strlen(names[i]);
		if (strncasecmp(uses, names[i], n) == 0 && (uses[n] == '@' || uses[n] == '\0'))
			return names[i];
	}
	return NULL;
}

const char *agent_action_source(const char *configured)
{
	if (configured && *configured)
		return configured;
	const char *env = getenv("KILN_ACTION_SOURCE");
	if (env && *env)
		return env;
	return AGENT_ACTION_SOURCE_DEFAULT;
}

char *agent_action_url(const char *tmpl, const char *owner, const char *repo)
{
	kiln_buf b = {0};
	if (!strstr(tmpl, "{owner}") && !strstr(tmpl, "{repo}")) {
		size_t n = strlen(tmpl);
		while (n && tmpl[n - 1] == '/')
			n--;
		kiln_buf_printf(&b, "%.*s/%s/%s", (int)n, tmpl, owner, repo);
		return kiln_buf_steal(&b);
	}
	for (const char *p = tmpl; *p;) {
		if (strncmp(p, "{owner}", 7) == 0) {
			kiln_buf_puts(&b, owner);
			p += 7;
		} else if (strncmp(p, "{repo}", 6) == 0) {
			kiln_buf_puts(&b, repo);
			p += 6;
		} else {
			kiln_buf_append(&b, p, 1);
			p++;
		}
	}
	return kiln_buf_steal(&b);
}

/* ---- the checkout cache ------------------------------------------------------------ */

static void logf_(agent_action_log_fn log, void *arg, const char *fmt, ...) KILN_PRINTF(3, 4);
static void logf_(agent_action_log_fn log, void *arg, const char *fmt, ...)
{
	if (!log)
		return;
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	log(arg, buf);
}

/* REF as one path component: '%' → %25, '/' → %2F. */
static char *ref_component(const char *ref)
{
	kiln_buf b = {0};
	for (const char *p = ref; *p; p++) {
		if (*p == '%')
			kiln_buf_puts(&b, "%25");
		else if (*p == '/')
			kiln_buf_puts(&b, "%2F");
		else
			kiln_buf_append(&b, p, 1);
	}
	return kiln_buf_steal(&b);
}

static bool is_sha(const char *s)
{
	return strlen(s) == 40 && strspn(s, "0123456789abcdef") == 40;
}

/* The commit the cached checkout holds (from its .sha file), or false when there is none. */
static bool cached_sha(const char *dir, const char *sha_file, char sha[41])
{
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return false;
	char *text = NULL;
	size_t len = 0;
	if (kiln_read_file(sha_file, 64, &text, &len) < 0)
		return false;
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	bool ok = is_sha(text);
	if (ok)
		memcpy(sha, text, 41);
	free(text);
	return ok;
}

static void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

/* Checks out `sha` into a fresh directory beside `dir` and renames it into place. */
static int checkout_into(const char *root, const char *comp, const char *mirror, const char *url,
			 const char *sha, const char *dir, const char *sha_file)
{
	_cleanup_free_ char *prefix = kiln_asprintf(".%s.tmp", comp);
	_cleanup_free_ char *tmp = NULL;
	int r = kiln_mkdtemp_in(root, prefix, &tmp);
	if (r < 0)
		return r;
	r = kiln_git_checkout(mirror, url, sha, NULL, tmp);
	if (r == 0) {
		/* as GitHub's runner has it: the files of the action, no repository */
		_cleanup_free_ char *git_dir = kiln_asprintf("%s/.git", tmp);
		r = kiln_rm_rf(git_dir);
	}
	if (r < 0) {
		kiln_rm_rf(tmp);
		return r;
	}
	unlink(sha_file);
	struct stat st;
	if (lstat(dir, &st) == 0) {
		/* the ref moved: the old tree goes aside first (rename cannot replace a directory) */
		_cleanup_free_ char *old_prefix = kiln_asprintf(".%s.old", comp);
		_cleanup_free_ char *old = NULL;
		if ((r = kiln_mkdtemp_in(root, old_prefix, &old)) < 0) {
			kiln_rm_rf(tmp);
			return r;
		}
		_cleanup_free_ char *aside = kiln_asprintf("%s/tree", old);
		if (rename(dir, aside) < 0) {
			r = kiln_err(errno, "rename %s: %s", dir, strerror(errno));
			kiln_rm_rf(old);
			kiln_rm_rf(tmp);
			return r;
		}
		kiln_rm_rf(old);
	}
	if (rename(tmp, dir) < 0) {
		r = kiln_err(errno, "rename %s to %s: %s", tmp, dir, strerror(errno));
		kiln_rm_rf(tmp);
		return r;
	}
	char line[42];
	snprintf(line, sizeof line, "%s\n", sha);
	return kiln_write_file_atomic(sha_file, line, strlen(line), 0644);
}

int agent_action_fetch(const char *work_dir, const char *source, const agent_action_ref *ref,
		       agent_action_log_fn log, void *log_arg, char **dir, char sha[41])
{
	*dir = NULL;
	_cleanup_free_ char *url = agent_action_url(source, ref->owner, ref->repo);
	_cleanup_free_ char *mirrors = kiln_asprintf("%s/mirrors", work_dir);
	_cleanup_free_ char *root =
	    kiln_asprintf("%s/_actions/%s/%s", work_dir, ref->owner, ref->repo);
	_cleanup_free_ char *comp = ref_component(ref->ref);
	_cleanup_free_ char *cache = kiln_asprintf("%s/%s", root, comp);
	_cleanup_free_ char *sha_file = kiln_asprintf("%s/.%s.sha", root, comp);
	_cleanup_free_ char *lock = kiln_asprintf("%s/.%s.lock", root, comp);
	int r = kiln_mkdir_p(mirrors, 0750);
	if (r == 0)
		r = kiln_mkdir_p(root, 0750);
	if (r < 0)
		return r;
	_cleanup_(closep) int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", lock, strerror(errno));
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return kiln_err(errno, "flock %s: %s", lock, strerror(errno));

	/* declared before any goto: a cleanup variable must never be jumped over */
	_cleanup_free_ char *mirror = NULL;
	char have[41] = "";
	bool cached = cached_sha(cache, sha_file, have);
	if (cached && is_sha(ref->ref) && strcmp(have, ref->ref) == 0) {
		logf_(log, log_arg, "Using %s/%s@%s (cached)", ref->owner, ref->repo, ref->ref);
		memcpy(sha, have, 41);
		goto done;
	}
	logf_(log, log_arg, "Fetching the action %s/%s@%s from %s", ref->owner, ref->repo,
	      ref->ref, url);
	r = is_sha(ref->ref) ? kiln_git_mirror_for(mirrors, url, ref->ref, &mirror)
			     : kiln_git_mirror(mirrors, url, &mirror);
	if (r == 0) {
		r = kiln_git_resolve(mirror, ref->ref, sha);
		if (r == -ENOENT)
			return kiln_err(ENOENT, "%s has no branch, tag or commit '%s'", url,
					ref->ref);
	}
	if (r < 0) {
		if (!cached)
			return r;
		logf_(log, log_arg, "Warning: cannot update %s (%s); using the cached checkout of %s",
		      url, kiln_errmsg(), have);
		memcpy(sha, have, 41);
		goto done;
	}
	if (cached && strcmp(have, sha) == 0) {
		logf_(log, log_arg, "Using %s/%s@%s (%.12s, cached)", ref->owner, ref->repo,
		      ref->ref, sha);
		goto done;
	}
	logf_(log, log_arg, "Checking out %s/%s@%s (%.12s)", ref->owner, ref->repo, ref->ref, sha);
	if ((r = checkout_into(root, comp, mirror, url, sha, cache, sha_file)) < 0)
		return r;
done:
	*dir = *ref->path ? kiln_asprintf("%s/%s", cache, ref->path) : kiln_strdup(cache);
	return 0;
}

/* ---- action.yml ------------------------------------------------------------------------ */

int agent_action_load(const char *dir, const char *label, kiln_action **out)
{
	*out = NULL;
	static const char *const names[] = {"action.yml", "action.yaml"};
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return kiln_err(ENOENT, "%s: no such directory", label);
	for (size_t i = 0; i < KILN_ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *path = kiln_asprintf("%s/%s", dir, names[i]);
		if (stat(path, &st) < 0)
			continue;
		_cleanup_free_ char *file = kiln_asprintf("%s/%s", label, names[i]);
		if (!S_ISREG(st.st_mode))
			return kiln_err(EINVAL, "%s: not a regular file", file);
		_cleanup_free_ char *text = NULL;
		size_t len = 0;
		int r = kiln_read_file(path, KILN_ACTION_MAX_BYTES, &text, &len);
		if (r == -EFBIG)
			return kiln_err(EFBIG, "%s: larger than %u bytes", file,
					KILN_ACTION_MAX_BYTES);
		if (r < 0)
			return r;
		return kiln_action_parse(file, text, len, out);
	}
	_cleanup_free_ char *dockerfile = kiln_asprintf("%s/Dockerfile", dir);
	if (stat(dockerfile, &st) == 0)
		return kiln_err(ENOTSUP, "%s has a Dockerfile and no action.yml", label);
	return kiln_err(ENOENT, "%s has no action.yml or action.yaml", label);
}
