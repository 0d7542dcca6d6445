/*
 * git — kiln's use of libgit2 (1.5: no shallow fetch, no fetch by object id).
 *
 * Mirrors. The agent keeps one bare mirror per remote URL under its
 * mirrors directory, named by the SHA-256 of the (absolute) URL, with the
 * remote's branches and tags mapped one to one (refs/heads/ and refs/tags/,
 * forced) and pruned. A lock file beside the mirror (`<name>.lock`) is flock()-ed
 * exclusively while the mirror is created or fetched, and shared while a
 * checkout copies its objects, so jobs in one process and agents in several
 * processes can share it. A new mirror is built under `<name>.tmp` and renamed
 * into place once its first fetch succeeded: a mirror that exists is whole.
 *
 * Checkouts are local clones of a mirror (objects hardlinked when on the same
 * filesystem, copied otherwise), then a forced checkout of the exact commit.
 * Snapshots do the same from a developer's repository and then overlay what
 * `git status` reports, so a local run sees uncommitted work.
 *
 * libgit2 objects are never shared between calls, so every function here may
 * run on any thread; libgit2 itself is initialised once through
 * pthread_once().
 */
#include "common/git.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#define ARG_MAX_LEN 4096   /* longest url, ref or path argument accepted */
#define COPY_DEPTH_MAX 256 /* deepest directory copied by a snapshot */

/* ---- cleanup helpers ---------------------------------------------------- */

#define GIT_CLEANUP_FUNC(type, fn)                                                                 \
	static inline void fn##p(type **p)                                                         \
	{                                                                                          \
		if (*p)                                                                            \
			fn(*p);                                                                    \
	}
GIT_CLEANUP_FUNC(git_repository, git_repository_free)
GIT_CLEANUP_FUNC(git_remote, git_remote_free)
GIT_CLEANUP_FUNC(git_object, git_object_free)
GIT_CLEANUP_FUNC(git_commit, git_commit_free)
GIT_CLEANUP_FUNC(git_tree, git_tree_free)
GIT_CLEANUP_FUNC(git_tree_entry, git_tree_entry_free)
GIT_CLEANUP_FUNC(git_reference, git_reference_free)
GIT_CLEANUP_FUNC(git_reference_iterator, git_reference_iterator_free)
GIT_CLEANUP_FUNC(git_odb, git_odb_free)
GIT_CLEANUP_FUNC(git_config, git_config_free)
GIT_CLEANUP_FUNC(git_blob, git_blob_free)
GIT_CLEANUP_FUNC(git_status_list, git_status_list_free)
GIT_CLEANUP_FUNC(DIR, closedir)

static inline void git_buf_disposep(git_buf *b)
{
	git_buf_dispose(b);
}

static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static inline void strv_freep(kiln_strv *sv)
{
	kiln_strv_free(sv);
}

/* ---- errors and small helpers ------------------------------------------- */

/* `s` with the user:password@ part of every URL in it replaced, so tokens stay out of logs. Owned.
 */
static char *redact(const char *s)
{
	kiln_buf b = {0};
	for (const char *m; (m = strstr(s, "://"));) {
		const char *host = m + 3;
		size_t auth = strcspn(host, "/@ \t\n'\"");
		kiln_buf_append(&b, s, (size_t)(host - s));
		if (host[auth] == '@') {
			kiln_buf_puts(&b, "***");
			host += auth;
		}
		s = host;
	}
	kiln_buf_puts(&b, s);
	return kiln_buf_steal(&b);
}

char *kiln_git_redact(const char *s)
{
	return redact(s ? s : "");
}

/* Sets the thread's message from libgit2's last error and maps `code` to a negative errno. */
static int gerr(int code, const char *fmt, ...) KILN_PRINTF(2, 3);
static int gerr(int code, const char *fmt, ...)
{
	char what[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);

	int err;
	switch (code) {
	case GIT_ENOTFOUND:
	case GIT_EUNBORNBRANCH:
		err = ENOENT;
		break;
	case GIT_EEXISTS:
		err = EEXIST;
		break;
	case GIT_EAMBIGUOUS:
	case GIT_EINVALIDSPEC:
	case GIT_EPEEL:
	case GIT_EINVALID:
		err = EINVAL;
		break;
	case GIT_ELOCKED:
		err = EBUSY;
		break;
	case GIT_EAUTH:
	case GIT_ECERTIFICATE:
		err = EACCES;
		break;
	default:
		err = EIO;
	}
	const git_error *e = git_error_last();
	_cleanup_free_ char *msg =
	    kiln_asprintf("%s: %s", what, e && e->message ? e->message : "libgit2 error");
	_cleanup_free_ char *shown = redact(msg);
	git_error_clear();
	return kiln_err(err, "%s", shown);
}

/* Re-raises the current message after cleanup code that may overwrite it. */
static int keep_err(int r, const char *saved)
{
	return kiln_err(r, "%s", saved);
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool is_hex(const char *s, size_t min, size_t max)
{
	size_t n = strspn(s, "0123456789abcdefABCDEF");
	return s[n] == '\0' && n >= min && n <= max;
}

static int check_arg(const char *what, const char *s)
{
	if (!s || !*s)
		return kiln_err(EINVAL, "%s is empty", what);
	if (strnlen(s, ARG_MAX_LEN + 1) > ARG_MAX_LEN)
		return kiln_err(EINVAL, "%s is longer than %d bytes", what, ARG_MAX_LEN);
	return 0;
}

static int parse_sha(const char *sha, git_oid *oid)
{
	int r = check_arg("commit sha", sha);
	if (r < 0)
		return r;
	if (!is_hex(sha, GIT_OID_HEXSZ, GIT_OID_HEXSZ) || git_oid_fromstr(oid, sha) < 0) {
		git_error_clear();
		return kiln_err(EINVAL, "'%.64s' is not a full 40-hex commit sha", sha);
	}
	return 0;
}

static pthread_once_t git_once = PTHREAD_ONCE_INIT;
static int git_init_rc;

static void git_init_once(void)
{
	git_init_rc = git_libgit2_init();
}

int kiln_git_init(void)
{
	pthread_once(&git_once, git_init_once);
	if (git_init_rc < 0)
		return kiln_err(EIO, "libgit2 initialisation failed");
	return 0;
}

static int open_repo(git_repository **out, const char *path, bool search)
{
	int r = check_arg("repository path", path);
	if (r < 0)
		return r;
	r = git_repository_open_ext(out, path, search ? 0 : GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
	if (r < 0)
		return gerr(r, "open repository %s", path);
	return 0;
}

/* The commit `rev` names (a sha, abbreviated sha, branch, tag, HEAD...), peeling tags. */
static int lookup_commit(git_commit **out, git_repository *repo, const char *rev)
{
	_cleanup_(git_object_freep) git_object *obj = NULL;
	int r = check_arg("revision", rev);
	if (r < 0)
		return r;
	r = git_revparse_single(&obj, repo, rev);
	if (r < 0)
		return gerr(r, "revision '%s'", rev);
	git_object *peeled = NULL;
	r = git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT);
	if (r < 0)
		return gerr(r, "revision '%s' is not a commit", rev);
	*out = (git_commit *)peeled;
	return 0;
}

/* Whether a git URL names a local path: not scheme://, not scp-like host:path (as git decides). */
static bool is_local_url(const char *url)
{
	if (strstr(url, "://"))
		return false;
	const char *colon = strchr(url, ':'), *slash = strchr(url, '/');
	return !(colon && colon != url && (!slash || colon < slash));
}

/* Whether a URL names the local disk: a path or file://. */
static bool is_local_path_url(const char *url)
{
	return is_local_url(url) || strncasecmp(url, "file://", 7) == 0;
}

/* The URL kiln names mirrors by and stores as "origin": local paths made absolute. */
static int normalize_url(const char *url, char **out)
{
	int r = check_arg("repository url", url);
	if (r < 0)
		return r;
	if (!is_local_url(url)) {
		*out = kiln_strdup(url);
		return 0;
	}
	char buf[PATH_MAX];
	if (realpath(url, buf)) {
		*out = kiln_strdup(buf);
		return 0;
	}
	if (url[0] == '/') {
		*out = kiln_strdup(url);
		return 0;
	}
	if (!getcwd(buf, sizeof buf))
		return kiln_err(errno, "getcwd: %s", strerror(errno));
	*out = kiln_asprintf("%s/%s", buf, url);
	return 0;
}

static int hexval(int c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

/* `s` (n bytes) with %XX escapes decoded. Owned. */
static char *pct_decode(const char *s, size_t n)
{
	char *out = kiln_malloc(n + 1), *o = out;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)s[i + 2])) >= 0) {
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

/* Splits "scheme://user:pass@host/..." into the URL without its user info (*bare, owned) and the
   decoded user and password (owned, NULL when absent). A user name with no password is kept
   in the URL except for http(s) (ssh://git@host/... needs it). Other URLs are copied as is. */
static void split_userinfo(const char *url, char **bare, char **user, char **pass)
{
	*user = *pass = NULL;
	const char *m = strstr(url, "://");
	const char *host = m ? m + 3 : NULL;
	size_t auth = host ? strcspn(host, "/@") : 0;
	size_t ulen = host ? strcspn(host, ":@") : 0;
	if (!host || host[auth] != '@' ||
	    (host[ulen] != ':' && !starts_with(url, "http://") && !starts_with(url, "https://"))) {
		*bare = kiln_strdup(url);
		return;
	}
	*user = pct_decode(host, ulen);
	if (host[ulen] == ':')
		*pass = pct_decode(host + ulen + 1, auth - ulen - 1);
	*bare = kiln_asprintf("%.*s%s", (int)(host - url), url, host + auth + 1);
}

/* flock()s `path` with `op`; *fd = -1 (and no lock) when !create and the file is absent. */
static int lock_path(const char *path, int op, bool create, int *fd)
{
	int f = open(path, (create ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (f < 0) {
		if (!create && errno == ENOENT) {
			*fd = -1;
			return 0;
		}
		return kiln_err(errno, "open lock %s: %s", path, strerror(errno));
	}
	while (flock(f, op) < 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		close(f);
		return kiln_err(e, "flock %s: %s", path, strerror(e));
	}
	*fd = f;
	return 0;
}

static bool ref_exists(git_repository *repo, const char *name)
{
	git_oid oid;
	int r = git_reference_name_to_id(&oid, repo, name);
	if (r < 0)
		git_error_clear();
	return r == 0;
}

/* Whether `ref` is a well-formed full ref name ("refs/...") of a sane length. */
static bool valid_full_ref(const char *ref)
{
	int valid = 0;
	bool ok = starts_with(ref, "refs/") && strnlen(ref, ARG_MAX_LEN + 1) <= ARG_MAX_LEN &&
	          git_reference_name_is_valid(&valid, ref) == 0 && valid;
	git_error_clear();
	return ok;
}

/* ---- mirrors ------------------------------------------------------------ */

/* Sets config variables in the repository's own config file (name, value, name, value..., NULL). */
static int set_config(git_repository *repo, ...)
{
	_cleanup_(git_config_freep) git_config *cfg = NULL;
	int r = git_repository_config(&cfg, repo);
	if (r < 0)
		return gerr(r, "open config");
	va_list ap;
	va_start(ap, repo);
	const char *name;
	while ((name = va_arg(ap, const char *))) {
		const char *value = va_arg(ap, const char *);
		if ((r = git_config_set_string(cfg, name, value)) < 0) {
			va_end(ap);
			return gerr(r, "set %s", name);
		}
	}
	va_end(ap);
	return 0;
}

/* Points the mirror's HEAD at the remote's default branch, or guesses when HEAD is unborn. */
static int set_mirror_head(git_repository *repo, git_remote *remote)
{
	_cleanup_(git_buf_disposep) git_buf def = GIT_BUF_INIT;
	const char *want = NULL;
	if (git_remote_default_branch(&def, remote) == 0 && def.ptr &&
	    starts_with(def.ptr, "refs/heads/") && ref_exists(repo, def.ptr)) {
		want = def.ptr;
	} else {
		git_error_clear();
		int unborn = git_repository_head_unborn(repo);
		if (unborn < 0)
			return gerr(unborn, "read mirror HEAD");
		if (!unborn)
			return 0;
		if (ref_exists(repo, "refs/heads/main"))
			want = "refs/heads/main";
		else if (ref_exists(repo, "refs/heads/master"))
			want = "refs/heads/master";
	}
	if (!want)
		return 0;

	_cleanup_(git_reference_freep) git_reference *head = NULL;
	if (git_reference_lookup(&head, repo, "HEAD") == 0 &&
	    git_reference_type(head) == GIT_REFERENCE_SYMBOLIC &&
	    strcmp(git_reference_symbolic_target(head), want) == 0)
		return 0;
	git_error_clear();
	int r = git_repository_set_head(repo, want);
	if (r < 0)
		return gerr(r, "set mirror HEAD to %s", want);
	return 0;
}

/* Credentials for an https remote, handed out once per fetch (a second ask means they were
   refused: libgit2 would otherwise ask for ever). */
typedef struct cred_payload {
	const char *user, *pass;
	int tries;
} cred_payload;

static int cred_cb(git_credential **out, const char *url, const char *user_from_url,
                   unsigned int allowed, void *payload)
{
	(void)user_from_url;
	cred_payload *p = payload;
	if (!p || !p->pass || !*p->pass || !url || !starts_with(url, "https://") ||
	    !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) || p->tries++ > 0)
		return GIT_PASSTHROUGH;
	return git_credential_userpass_plaintext_new(
	    out, p->user && *p->user ? p->user : "x-access-token", p->pass);
}

/*
 * Fetches into a mirror through an in-memory remote with explicit refspecs. libgit2 1.5.1 leaks
 * a PCRE2 match block (~20 KiB) for every config entry a regex fails to match, and named
 * remotes run such regexes (url.*.insteadOf, remote listing) on every lookup: in an agent that
 * fetches all day that adds up, so kiln never looks a remote up by name.
 */
static int mirror_fetch(git_repository *repo, const char *url, cred_payload *cred,
                        const char *extra_ref)
{
	_cleanup_(git_remote_freep) git_remote *remote = NULL;
	git_remote_create_options co = GIT_REMOTE_CREATE_OPTIONS_INIT;
	co.repository = repo;
	co.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	int r = git_remote_create_with_opts(&remote, url, &co);
	if (r < 0)
		return gerr(r, "remote %s", url);

	_cleanup_free_ char *extra =
	    extra_ref ? kiln_asprintf("+%s:%s", extra_ref, extra_ref) : NULL;
	char *specs[] = {"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", extra};
	git_strarray refspecs = {specs, extra ? 3 : 2};
	git_fetch_options fo = GIT_FETCH_OPTIONS_INIT;
	fo.prune = GIT_FETCH_PRUNE;
	fo.update_fetchhead = 0;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE; /* the tag refspec takes them all */
	fo.proxy_opts.type = GIT_PROXY_AUTO;
	if (cred && cred->pass && *cred->pass) {
		cred->tries = 0;
		fo.callbacks.credentials = cred_cb;
		fo.callbacks.payload = cred;
	}
	r = git_remote_fetch(remote, &refspecs, &fo, "kiln: fetch");
	if (r < 0)
		return gerr(r, "fetch %s", url);
	return set_mirror_head(repo, remote);
}

/* Whether the repository at `path` exists and holds commit `oid`. */
static bool has_commit(const char *path, const git_oid *oid)
{
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	_cleanup_(git_commit_freep) git_commit *c = NULL;
	bool ok =
	    git_repository_open_bare(&repo, path) == 0 && git_commit_lookup(&c, repo, oid) == 0;
	git_error_clear();
	return ok;
}

static int mirror_ensure(const char *mirrors_dir, const char *url_in, const git_oid *want,
                         kiln_git_fetch_opts *o, char **out)
{
	int r = kiln_git_init();
	if (r < 0)
		return r;
	if (o)
		o->fetched = false;
	if ((r = check_arg("mirrors directory", mirrors_dir)) < 0)
		return r;
	if ((r = check_arg("repository url", url_in)) < 0)
		return r;
	if (o && o->extra_ref && !valid_full_ref(o->extra_ref))
		return kiln_err(EINVAL, "'%.200s' is not a full ref name", o->extra_ref);
	_cleanup_free_ char *bare = NULL, *url_user = NULL, *url_pass = NULL;
	split_userinfo(url_in, &bare, &url_user, &url_pass);
	cred_payload cred = {url_user, url_pass, 0};
	if (o && o->auth && o->auth->password && *o->auth->password)
		cred = (cred_payload){o->auth->username, o->auth->password, 0};
	_cleanup_free_ char *url = NULL;
	if ((r = normalize_url(bare, &url)) < 0)
		return r;
	/* libgit2 says "unsupported URL protocol" for a local path that does not exist */
	const char *local = is_local_url(url)              ? url
	                    : starts_with(url, "file:///") ? url + strlen("file://")
	                                                   : NULL;
	struct stat lst;
	if (local && stat(local, &lst) < 0 && errno == ENOENT)
		return kiln_err(ENOENT, "no repository at %s", url);
	if ((r = kiln_mkdir_p(mirrors_dir, 0755)) < 0)
		return r;
	char base[PATH_MAX];
	if (!realpath(mirrors_dir, base))
		return kiln_err(errno, "%s: %s", mirrors_dir, strerror(errno));

	char hex[65];
	kiln_sha256_hex(url, strlen(url), hex);
	_cleanup_free_ char *path = kiln_asprintf("%s/%s", base, hex);
	_cleanup_free_ char *lock = kiln_asprintf("%s.lock", path);
	_cleanup_free_ char *tmp = kiln_asprintf("%s.tmp", path);

	/* A mirror only appears once whole, so it can be read without the lock. */
	if (want && has_commit(path, want)) {
		*out = kiln_strdup(path);
		return 0;
	}

	_cleanup_(closep) int lock_fd = -1;
	if ((r = lock_path(lock, LOCK_EX, true, &lock_fd)) < 0)
		return r;
	if (want && has_commit(path, want)) { /* fetched while we waited */
		*out = kiln_strdup(path);
		return 0;
	}

	const char *extra = o ? o->extra_ref : NULL;
	struct stat st;
	if (stat(path, &st) == 0) {
		_cleanup_(git_repository_freep) git_repository *repo = NULL;
		r = git_repository_open_bare(&repo, path);
		if (r < 0)
			return gerr(r, "open mirror %s", path);
		if ((r = mirror_fetch(repo, url, &cred, extra)) < 0)
			return r;
	} else {
		if (errno != ENOENT)
			return kiln_err(errno, "%s: %s", path, strerror(errno));
		if ((r = kiln_rm_rf(tmp)) < 0) /* a creation that died half-way */
			return r;
		_cleanup_(git_repository_freep) git_repository *repo = NULL;
		git_repository_init_options io = GIT_REPOSITORY_INIT_OPTIONS_INIT;
		io.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH |
		           GIT_REPOSITORY_INIT_NO_REINIT;
		r = git_repository_init_ext(&repo, tmp, &io);
		if (r < 0)
			return gerr(r, "create mirror %s", tmp);
		r = set_config(repo, "remote.origin.url", url, "remote.origin.fetch",
		               "+refs/heads/*:refs/heads/*", "remote.origin.tagOpt", "--tags",
		               "remote.origin.prune", "true", (const char *)NULL);
		if (r == 0)
			r = mirror_fetch(repo, url, &cred, extra);
		git_repository_free(repo);
		repo = NULL;
		if (r < 0) {
			char saved[1024];
			snprintf(saved, sizeof saved, "%s", kiln_errmsg());
			kiln_rm_rf(tmp);
			return keep_err(r, saved);
		}
		if (rename(tmp, path) < 0) {
			int e = errno;
			kiln_rm_rf(tmp);
			return kiln_err(e, "rename %s: %s", tmp, strerror(e));
		}
	}
	if (o)
		o->fetched = true;

	if (want && !has_commit(path, want)) {
		char s[GIT_OID_HEXSZ + 1];
		git_oid_tostr(s, sizeof s, want);
		_cleanup_free_ char *shown = redact(url);
		return kiln_err(ENOENT, "commit %s is not in %s (fetched its branches and tags)", s,
		                shown);
	}
	*out = kiln_strdup(path);
	return 0;
}

int kiln_git_mirror(const char *mirrors_dir, const char *url, char **out)
{
	return mirror_ensure(mirrors_dir, url, NULL, NULL, out);
}

int kiln_git_mirror_for(const char *mirrors_dir, const char *url, const char *sha, char **out)
{
	return kiln_git_mirror_ex(mirrors_dir, url, sha, NULL, out);
}

int kiln_git_mirror_ex(const char *mirrors_dir, const char *url, const char *sha,
                       kiln_git_fetch_opts *o, char **out)
{
	*out = NULL;
	if (!sha)
		return mirror_ensure(mirrors_dir, url, NULL, o, out);
	git_oid oid;
	int r = parse_sha(sha, &oid);
	if (r < 0)
		return r;
	return mirror_ensure(mirrors_dir, url, &oid, o, out);
}

/* ---- files --------------------------------------------------------------- */

/* Copies the regular file src to the new path dst (never through a symlink), with `mode`. */
static int copy_file(const char *src, const char *dst, mode_t mode)
{
	_cleanup_(closep) int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return kiln_err(errno, "open %s: %s", src, strerror(errno));
	_cleanup_(closep) int out =
	    open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0)
		return kiln_err(errno, "create %s: %s", dst, strerror(errno));
	_cleanup_free_ char *buf = kiln_malloc(65536);
	for (;;) {
		ssize_t n = read(in, buf, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kiln_err(errno, "read %s: %s", src, strerror(errno));
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return kiln_err(errno, "write %s: %s", dst, strerror(errno));
			off += w;
		}
	}
	if (fchmod(out, mode & 07777) < 0)
		return kiln_err(errno, "chmod %s: %s", dst, strerror(errno));
	int fd = out;
	out = -1;
	if (close(fd) < 0)
		return kiln_err(errno, "close %s: %s", dst, strerror(errno));
	return 0;
}

static int copy_symlink(const char *src, const char *dst)
{
	char target[PATH_MAX];
	ssize_t n = readlink(src, target, sizeof target);
	if (n < 0)
		return kiln_err(errno, "readlink %s: %s", src, strerror(errno));
	if ((size_t)n >= sizeof target)
		return kiln_err(ENAMETOOLONG, "readlink %s: target too long", src);
	target[n] = '\0';
	if (symlink(target, dst) < 0)
		return kiln_err(errno, "symlink %s: %s", dst, strerror(errno));
	return 0;
}

/* ---- checkouts ---------------------------------------------------------- */

static bool safe_rel(const char *rel);
static bool parents_are_dirs(const char *base, const char *rel);
GIT_CLEANUP_FUNC(git_index, git_index_free)

/* Removes from the working tree `dir` the files that the repository there (if any) tracks in
   its index, and the directories that leaves empty; untracked files stay. Submodules stay. */
static int remove_tracked(const char *dir)
{
	_cleanup_free_ char *dotgit = kiln_asprintf("%s/.git", dir);
	struct stat st;
	if (lstat(dotgit, &st) < 0)
		return 0;
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	_cleanup_(git_index_freep) git_index *idx = NULL;
	if (git_repository_open_ext(&repo, dir, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0 ||
	    git_repository_is_bare(repo) || git_repository_index(&idx, repo) < 0) {
		git_error_clear();
		return 0; /* not a usable repository: only its .git goes */
	}
	size_t n = git_index_entrycount(idx);
	for (size_t i = 0; i < n; i++) {
		const git_index_entry *e = git_index_get_byindex(idx, i);
		if (!e || !e->path || (e->mode & 0170000) == 0160000 || !safe_rel(e->path) ||
		    !parents_are_dirs(dir, e->path))
			continue;
		_cleanup_free_ char *p = kiln_asprintf("%s/%s", dir, e->path);
		if (lstat(p, &st) < 0 || S_ISDIR(st.st_mode))
			continue;
		if (unlink(p) < 0 && errno != ENOENT)
			return kiln_err(errno, "unlink %s: %s", p, strerror(errno));
		for (char *slash = strrchr(p, '/'); slash && (size_t)(slash - p) > strlen(dir);
		     slash = strrchr(p, '/')) {
			*slash = '\0';
			if (rmdir(p) < 0)
				break; /* not empty: untracked files stay */
		}
	}
	return 0;
}

/* Readies `dir` for a checkout as `mode` says; *existed says whether it was there before. The
   directory itself is never followed if it is a symlink. */
static int prepare_dir(const char *dir, kiln_git_dir_mode mode, bool *existed)
{
	int r = check_arg("directory", dir);
	if (r < 0)
		return r;
	struct stat st;
	if (lstat(dir, &st) < 0) {
		if (errno != ENOENT)
			return kiln_err(errno, "%s: %s", dir, strerror(errno));
		*existed = false;
		return kiln_mkdir_p(dir, 0755);
	}
	if (!S_ISDIR(st.st_mode))
		return kiln_err(ENOTDIR, "%s: not a directory", dir);
	*existed = true;
	if (mode == KILN_GIT_DIR_CLEAN)
		return kiln_clear_dir(dir, 0755);
	if (mode == KILN_GIT_DIR_KEEP) {
		/* The files stay, except those the old repository tracked (as git checkout would
		   remove or rewrite them); the repository itself is replaced. */
		int r2 = remove_tracked(dir);
		_cleanup_free_ char *git = kiln_asprintf("%s/.git", dir);
		return r2 < 0 ? r2 : kiln_rm_rf(git);
	}
	_cleanup_(closedirp) DIR *d = opendir(dir);
	if (!d)
		return kiln_err(errno, "%s: %s", dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			return kiln_err(ENOTEMPTY, "%s: directory is not empty", dir);
	return 0;
}

/* Undoes prepare_dir() after a failure, keeping the error message: a directory made here is
   removed, one that was there is emptied again (KEEP: only the new .git goes). */
static int undo_dir(int r, const char *dir, bool existed, kiln_git_dir_mode mode)
{
	char saved[1024];
	snprintf(saved, sizeof saved, "%s", kiln_errmsg());
	if (!existed) {
		kiln_rm_rf(dir);
	} else if (mode == KILN_GIT_DIR_KEEP) {
		_cleanup_free_ char *git = kiln_asprintf("%s/.git", dir);
		kiln_rm_rf(git);
	} else {
		DIR *d = opendir(dir);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			_cleanup_free_ char *p = kiln_asprintf("%s/%s", dir, de->d_name);
			kiln_rm_rf(p);
		}
		if (d)
			closedir(d);
	}
	return keep_err(r, saved);
}

/* Names git and libgit2 give files they are still writing into an object database. */
static bool is_temp_object_file(const char *name)
{
	return starts_with(name, "tmp_") || starts_with(name, "pack_git2_") ||
	       starts_with(name, "tmp_object_git2_") || starts_with(name, "incoming-");
}

/* Hardlinks the object files under src into dst (copying once linking is refused, e.g. across
   filesystems). Objects are immutable, so sharing their inodes with the source is safe. */
static int link_objects(const char *src, const char *dst, bool *can_link, int depth)
{
	if (depth > 3) /* objects/xx/, objects/pack/, objects/info/: nothing deeper is ours */
		return 0;
	if (mkdir(dst, 0755) < 0 && errno != EEXIST)
		return kiln_err(errno, "mkdir %s: %s", dst, strerror(errno));
	_cleanup_(closedirp) DIR *d = opendir(src);
	if (!d)
		return errno == ENOENT ? 0
		                       : kiln_err(errno, "opendir %s: %s", src, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    is_temp_object_file(de->d_name) ||
		    (depth == 1 && strcmp(de->d_name, "alternates") == 0))
			continue;
		_cleanup_free_ char *s = kiln_asprintf("%s/%s", src, de->d_name);
		_cleanup_free_ char *t = kiln_asprintf("%s/%s", dst, de->d_name);
		struct stat st;
		if (lstat(s, &st) < 0) {
			if (errno == ENOENT)
				continue; /* removed by a repack meanwhile */
			return kiln_err(errno, "%s: %s", s, strerror(errno));
		}
		int r = 0;
		if (S_ISDIR(st.st_mode)) {
			r = link_objects(s, t, can_link, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			if (*can_link) {
				if (link(s, t) == 0 || errno == EEXIST || errno == ENOENT)
					continue;
				*can_link = false; /* EXDEV, EPERM, EMLINK...: copy from now on */
			}
			r = copy_file(s, t, st.st_mode);
			if (r == -ENOENT)
				r = 0;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Copies objects/info/alternates, making relative entries absolute (they were relative to src). */
static int copy_alternates(const char *src_objects, const char *dst_objects)
{
	_cleanup_free_ char *path = kiln_asprintf("%s/info/alternates", src_objects);
	_cleanup_free_ char *data = NULL;
	int r = kiln_read_file(path, 1 << 20, &data, NULL);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	kiln_buf b = {0};
	_cleanup_(strv_freep) kiln_strv lines = {0};
	kiln_strv_split(&lines, data, "\n");
	for (size_t i = 0; i < lines.n; i++) {
		const char *l = lines.v[i];
		if (l[0] == '#')
			continue;
		if (l[0] == '/')
			kiln_buf_printf(&b, "%s\n", l);
		else
			kiln_buf_printf(&b, "%s/%s\n", src_objects, l);
	}
	_cleanup_free_ char *info = kiln_asprintf("%s/info", dst_objects);
	_cleanup_free_ char *out = kiln_asprintf("%s/alternates", info);
	r = kiln_mkdir_p(info, 0755);
	if (r == 0)
		r = kiln_write_file_atomic(out, b.p ? b.p : "", b.len, 0644);
	kiln_buf_free(&b);
	return r;
}

static int cmp_packed_line(const void *a, const void *b)
{
	/* "<40 hex> <refname>": order by refname, as git sorts packed-refs */
	return strcmp(*(char *const *)a + GIT_OID_HEXSZ + 1, *(char *const *)b + GIT_OID_HEXSZ + 1);
}

/* Writes the clone's packed-refs: src's branches as refs/remotes/origin/..., its tags as they are
   (with no_tags, only `keep_tag`, if any). */
static int write_clone_refs(git_repository *src, const char *gitdir, bool no_tags,
                            const char *keep_tag)
{
	_cleanup_(git_reference_iterator_freep) git_reference_iterator *it = NULL;
	_cleanup_(strv_freep) kiln_strv lines = {0};
	int r = git_reference_iterator_new(&it, src);
	if (r < 0)
		return gerr(r, "list refs");
	git_reference *ref;
	while ((r = git_reference_next(&ref, it)) == 0) {
		const char *name = git_reference_name(ref);
		char hex[GIT_OID_HEXSZ + 1];
		if (git_reference_type(ref) == GIT_REFERENCE_DIRECT) {
			git_oid_tostr(hex, sizeof hex, git_reference_target(ref));
			if (starts_with(name, "refs/heads/"))
				kiln_strv_push_owned(&lines,
				                     kiln_asprintf("%s refs/remotes/origin/%s", hex,
				                                   name + strlen("refs/heads/")));
			else if (starts_with(name, "refs/tags/") &&
			         (!no_tags || (keep_tag && strcmp(name, keep_tag) == 0)))
				kiln_strv_push_owned(&lines, kiln_asprintf("%s %s", hex, name));
		}
		git_reference_free(ref);
	}
	if (r != GIT_ITEROVER)
		return gerr(r, "list refs");
	git_error_clear();
	if (lines.n)
		qsort(lines.v, lines.n, sizeof *lines.v, cmp_packed_line);
	kiln_buf b = {0};
	kiln_buf_puts(&b, "# pack-refs with: sorted \n");
	for (size_t i = 0; i < lines.n; i++)
		kiln_buf_printf(&b, "%s\n", lines.v[i]);
	_cleanup_free_ char *path = kiln_asprintf("%spacked-refs", gitdir);
	r = kiln_write_file_atomic(path, b.p, b.len, 0644);
	kiln_buf_free(&b);
	return r;
}

typedef struct clone_opts {
	const char *gitdir; /* NULL: <dir>/.git; else the git dir, with a .git file in dir (a
	                       submodule's layout) */
	bool no_tags;       /* as write_clone_refs */
	const char *keep_tag;
} clone_opts;

/*
 * A non-bare clone of the local repository `src` into the directory `dir` (with no .git yet),
 * done by hand rather than with git_clone() (which looks remotes up by name: see mirror_fetch):
 * objects hardlinked, branches as refs/remotes/origin/..., tags (as `co` says), origin/HEAD,
 * remote "origin" set to `origin_url`; nothing checked out and HEAD unborn.
 */
static int local_clone(git_repository **out, git_repository *src, const char *origin_url,
                       const char *dir, const clone_opts *co)
{
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	git_repository_init_options io = GIT_REPOSITORY_INIT_OPTIONS_INIT;
	io.flags = GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
	int r;
	if (co && co->gitdir) {
		io.flags |=
		    GIT_REPOSITORY_INIT_NO_DOTGIT_DIR | GIT_REPOSITORY_INIT_RELATIVE_GITLINK;
		io.workdir_path = dir;
		r = git_repository_init_ext(&repo, co->gitdir, &io);
	} else {
		r = git_repository_init_ext(&repo, dir, &io);
	}
	if (r < 0)
		return gerr(r, "git init %s", dir);
	r = set_config(repo, "remote.origin.url", origin_url, "remote.origin.fetch",
	               "+refs/heads/*:refs/remotes/origin/*", (const char *)NULL);
	if (r < 0)
		return r;

	_cleanup_free_ char *gitdir = kiln_strdup(git_repository_path(repo)); /* ends in '/' */
	const char *common = git_repository_commondir(src);                   /* ends in '/' */
	_cleanup_free_ char *src_objects = kiln_asprintf("%sobjects", common);
	_cleanup_free_ char *dst_objects = kiln_asprintf("%sobjects", gitdir);
	bool can_link = true;
	if ((r = link_objects(src_objects, dst_objects, &can_link, 0)) < 0 ||
	    (r = copy_alternates(src_objects, dst_objects)) < 0)
		return r;
	_cleanup_free_ char *shallow = kiln_asprintf("%sshallow", common);
	_cleanup_free_ char *shallow_to = kiln_asprintf("%sshallow", gitdir);
	struct stat st;
	if (lstat(shallow, &st) == 0 && S_ISREG(st.st_mode) &&
	    (r = copy_file(shallow, shallow_to, 0644)) < 0)
		return r;
	if ((r = write_clone_refs(src, gitdir, co && co->no_tags, co ? co->keep_tag : NULL)) < 0)
		return r;

	/* Reopen, so that libgit2 sees the objects and refs written behind its back. */
	git_repository_free(repo);
	repo = NULL;
	if ((r = git_repository_open_ext(&repo, dir, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL)) < 0)
		return gerr(r, "open %s", dir);

	_cleanup_(git_reference_freep) git_reference *head = NULL;
	if (git_reference_lookup(&head, src, "HEAD") == 0 &&
	    git_reference_type(head) == GIT_REFERENCE_SYMBOLIC &&
	    starts_with(git_reference_symbolic_target(head), "refs/heads/")) {
		_cleanup_free_ char *target =
		    kiln_asprintf("refs/remotes/origin/%s",
		                  git_reference_symbolic_target(head) + strlen("refs/heads/"));
		_cleanup_(git_reference_freep) git_reference *origin_head = NULL;
		if (ref_exists(repo, target) && (r = git_reference_symbolic_create(
		                                     &origin_head, repo, "refs/remotes/origin/HEAD",
		                                     target, 1, "kiln: clone")) < 0)
			return gerr(r, "set origin/HEAD");
	}
	git_error_clear();
	*out = repo;
	repo = NULL;
	return 0;
}

/* Writes the tree of `oid` into the working tree and index, detaches HEAD there, and when
   `branch` (a full refs/heads/ name) is given makes that branch point at it and checks it out. */
static int checkout_commit(git_repository *repo, const git_oid *oid, const char *branch)
{
	_cleanup_(git_commit_freep) git_commit *commit = NULL;
	char s[GIT_OID_HEXSZ + 1];
	git_oid_tostr(s, sizeof s, oid);
	int r = git_commit_lookup(&commit, repo, oid);
	if (r < 0)
		return gerr(r, "commit %s", s);

	git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
	co.checkout_strategy = GIT_CHECKOUT_FORCE;
	r = git_checkout_tree(repo, (const git_object *)commit, &co);
	if (r < 0)
		return gerr(r, "checkout %s", s);
	r = git_repository_set_head_detached(repo, oid);
	if (r < 0)
		return gerr(r, "detach HEAD at %s", s);
	if (!branch)
		return 0;

	const char *name = branch + strlen("refs/heads/");
	_cleanup_(git_reference_freep) git_reference *ref = NULL;
	r = git_reference_create(&ref, repo, branch, oid, 1, "kiln: checkout");
	if (r < 0)
		return gerr(r, "create branch %s", name);
	_cleanup_free_ char *upstream = kiln_asprintf("refs/remotes/origin/%s", name);
	if (ref_exists(repo, upstream)) {
		_cleanup_free_ char *k_remote = kiln_asprintf("branch.%s.remote", name);
		_cleanup_free_ char *k_merge = kiln_asprintf("branch.%s.merge", name);
		if ((r = set_config(repo, k_remote, "origin", k_merge, branch,
		                    (const char *)NULL)) < 0)
			return r;
	}
	r = git_repository_set_head(repo, branch);
	if (r < 0)
		return gerr(r, "point HEAD at %s", branch);
	return 0;
}

/* The local branch (full name) `ref` asks for in the fresh clone, or NULL for a detached HEAD. */
static int branch_for_ref(git_repository *repo, const char *ref, char **out)
{
	*out = NULL;
	if (!ref || !*ref || strcmp(ref, "HEAD") == 0)
		return 0;
	int r = check_arg("ref", ref);
	if (r < 0)
		return r;
	const char *name;
	if (starts_with(ref, "refs/heads/")) {
		name = ref + strlen("refs/heads/");
	} else if (starts_with(ref, "refs/")) {
		return 0; /* a tag, a pull request head...: detached, as actions/checkout does */
	} else {
		/* A bare name is a branch when the remote has a branch of that name. */
		_cleanup_free_ char *remote = kiln_asprintf("refs/remotes/origin/%s", ref);
		if (!ref_exists(repo, remote))
			return 0;
		name = ref;
	}
	int valid = 0;
	if (git_branch_name_is_valid(&valid, name) < 0 || !valid) {
		git_error_clear();
		return kiln_err(EINVAL, "'%s' is not a valid branch name", name);
	}
	*out = kiln_asprintf("refs/heads/%s", name);
	return 0;
}

/* A local clone (local_clone) of the mirror at `mirror` into `dir`, holding the mirror's lock
   shared meanwhile: no fetch may add or prune packs while their files are linked. `url` (or the
   mirror when NULL) becomes origin, without any user:password@. */
static int clone_mirror(git_repository **out, const char *mirror, const char *url, const char *dir,
                        const clone_opts *co)
{
	char m[PATH_MAX];
	if (!realpath(mirror, m))
		return kiln_err(errno, "mirror %s: %s", mirror, strerror(errno));
	_cleanup_free_ char *bare = NULL, *user = NULL, *pass = NULL;
	split_userinfo(url ? url : m, &bare, &user, &pass);
	_cleanup_free_ char *origin = NULL;
	int r = normalize_url(bare, &origin);
	if (r < 0)
		return r;
	_cleanup_free_ char *lock = kiln_asprintf("%s.lock", m);
	_cleanup_(closep) int lock_fd = -1;
	if ((r = lock_path(lock, LOCK_SH, false, &lock_fd)) < 0)
		return r;
	_cleanup_(git_repository_freep) git_repository *src = NULL;
	if ((r = open_repo(&src, m, false)) < 0)
		return r;
	return local_clone(out, src, origin, dir, co);
}

static int checkout_in(const char *mirror, const char *url, const git_oid *oid,
                       const kiln_git_checkout_opts *o, const char *dir)
{
	const char *ref = o ? o->ref : NULL;
	clone_opts co = {
	    .no_tags = o && o->no_tags,
	    .keep_tag = ref && starts_with(ref, "refs/tags/") ? ref : NULL,
	};
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	int r = clone_mirror(&repo, mirror, url, dir, &co);
	if (r < 0)
		return r;
	_cleanup_free_ char *branch = NULL;
	if ((r = branch_for_ref(repo, ref, &branch)) < 0)
		return r;
	return checkout_commit(repo, oid, branch);
}

int kiln_git_checkout_ex(const char *mirror, const char *url, const char *sha,
                         const kiln_git_checkout_opts *o, const char *dir)
{
	int r = kiln_git_init();
	if (r < 0)
		return r;
	git_oid oid;
	if ((r = parse_sha(sha, &oid)) < 0)
		return r;
	if ((r = check_arg("mirror", mirror)) < 0)
		return r;
	kiln_git_dir_mode mode = o ? o->dir_mode : KILN_GIT_DIR_EMPTY_ONLY;
	bool existed = false;
	if ((r = prepare_dir(dir, mode, &existed)) < 0)
		return r;
	r = checkout_in(mirror, url, &oid, o, dir);
	if (r < 0)
		return undo_dir(r, dir, existed, mode);
	return 0;
}

int kiln_git_checkout(const char *mirror, const char *url, const char *sha, const char *ref,
                      const char *dir)
{
	kiln_git_checkout_opts o = {.ref = ref};
	return kiln_git_checkout_ex(mirror, url, sha, &o, dir);
}

/* ---- reading ------------------------------------------------------------ */

/* The commit `rev` names in the repository at repo_path (*repo and *c are the caller's). */
static int open_commit(const char *repo_path, const char *rev, git_repository **repo,
		       git_commit **c)
{
	int r = kiln_git_init();
	if (r == 0)
		r = open_repo(repo, repo_path, false);
	if (r == 0)
		r = lookup_commit(c, *repo, rev);
	return r < 0 ? r : 0;
}

int kiln_git_resolve(const char *repo_path, const char *ref, char sha[41])
{
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	_cleanup_(git_commit_freep) git_commit *c = NULL;
	int r = open_commit(repo_path, ref, &repo, &c);
	if (r < 0)
		return r;
	git_oid_tostr(sha, GIT_OID_HEXSZ + 1, git_commit_id(c));
	return 0;
}

int kiln_git_full_ref(const char *repo_path, const char *ref, char **out)
{
	*out = NULL;
	int r = kiln_git_init();
	if (r < 0)
		return r;
	if ((r = check_arg("ref", ref)) < 0)
		return r;
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	if ((r = open_repo(&repo, repo_path, false)) < 0)
		return r;

	_cleanup_(git_object_freep) git_object *obj = NULL;
	if (is_hex(ref, GIT_OID_HEXSZ,
	           GIT_OID_HEXSZ)) { /* a full sha wins over a ref of that name */
		if ((r = git_revparse_single(&obj, repo, ref)) < 0)
			return gerr(r, "'%s'", ref);
		return 0;
	}

	_cleanup_(git_reference_freep) git_reference *found = NULL;
	if (strcmp(ref, "HEAD") == 0) {
		if ((r = git_reference_lookup(&found, repo, "HEAD")) < 0)
			return gerr(r, "HEAD");
		if (git_reference_type(found) == GIT_REFERENCE_SYMBOLIC)
			*out = kiln_strdup(git_reference_symbolic_target(found));
		return 0;
	}
	r = starts_with(ref, "refs/") ? git_reference_lookup(&found, repo, ref)
	                              : git_reference_dwim(&found, repo, ref);
	if (r == 0) {
		*out = kiln_strdup(git_reference_name(found));
		return 0;
	}
	if (r != GIT_ENOTFOUND && r != GIT_EINVALIDSPEC)
		return gerr(r, "ref '%s'", ref);
	git_error_clear();
	if (is_hex(ref, 4, GIT_OID_HEXSZ - 1) && git_revparse_single(&obj, repo, ref) == 0)
		return 0;
	git_error_clear();
	return kiln_err(ENOENT, "'%s' names no branch, tag or commit in %s", ref, repo_path);
}

/* The commit `full` (a ref name) points at, peeled; *out = its sha. */
static int ref_commit(git_repository *repo, const char *full, char sha[41])
{
	_cleanup_(git_reference_freep) git_reference *ref = NULL;
	int r = git_reference_lookup(&ref, repo, full);
	if (r < 0)
		return gerr(r, "ref %s", full);
	_cleanup_(git_object_freep) git_object *c = NULL;
	if ((r = git_reference_peel(&c, ref, GIT_OBJECT_COMMIT)) < 0)
		return gerr(r, "%s is not a commit", full);
	git_oid_tostr(sha, GIT_OID_HEXSZ + 1, git_object_id(c));
	return 0;
}

int kiln_git_resolve_checkout_ref(const char *repo_path, const char *ref, char sha[41], char **full)
{
	*full = NULL;
	int r = kiln_git_init();
	if (r < 0)
		return r;
	if ((r = check_arg("ref", ref)) < 0)
		return r;
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	if ((r = open_repo(&repo, repo_path, false)) < 0)
		return r;

	if (is_hex(ref, GIT_OID_HEXSZ, GIT_OID_HEXSZ)) {
		git_oid oid;
		_cleanup_(git_commit_freep) git_commit *c = NULL;
		if (git_oid_fromstr(&oid, ref) < 0 || git_commit_lookup(&c, repo, &oid) < 0) {
			git_error_clear();
			return kiln_err(ENOENT, "no commit %s", ref);
		}
		git_oid_tostr(sha, GIT_OID_HEXSZ + 1, &oid);
		return 0;
	}
	if (strcmp(ref, "HEAD") == 0) {
		_cleanup_(git_reference_freep) git_reference *head = NULL;
		if (git_reference_lookup(&head, repo, "HEAD") == 0 &&
		    git_reference_type(head) == GIT_REFERENCE_SYMBOLIC &&
		    ref_exists(repo, git_reference_symbolic_target(head))) {
			*full = kiln_strdup(git_reference_symbolic_target(head));
		} else {
			git_error_clear();
			return kiln_err(ENOENT, "HEAD names no branch");
		}
	} else if (starts_with(ref, "refs/")) {
		if (!valid_full_ref(ref) || !ref_exists(repo, ref))
			return kiln_err(ENOENT, "no ref %s", ref);
		*full = kiln_strdup(ref);
	} else {
		static const char *const kinds[] = {"refs/heads/", "refs/tags/"};
		for (size_t i = 0; i < KILN_ARRAY_SIZE(kinds) && !*full; i++) {
			_cleanup_free_ char *name = kiln_asprintf("%s%s", kinds[i], ref);
			if (valid_full_ref(name) && ref_exists(repo, name)) {
				*full = name;
				name = NULL;
			}
		}
	}
	if (*full) {
		if ((r = ref_commit(repo, *full, sha)) < 0) {
			free(*full);
			*full = NULL;
		}
		return r;
	}
	if (is_hex(ref, 4, GIT_OID_HEXSZ - 1)) {
		_cleanup_(git_object_freep) git_object *obj = NULL, *c = NULL;
		if (git_revparse_single(&obj, repo, ref) == 0 &&
		    git_object_peel(&c, obj, GIT_OBJECT_COMMIT) == 0) {
			git_oid_tostr(sha, GIT_OID_HEXSZ + 1, git_object_id(c));
			return 0;
		}
		git_error_clear();
	}
	return kiln_err(ENOENT, "no branch, tag or commit named '%s'", ref);
}

/* A tree path without leading "/" or "./" and trailing "/"; "" for the root; NULL if it climbs. */
static char *clean_tree_path(const char *path)
{
	for (;;) {
		if (path[0] == '/')
			path++;
		else if (path[0] == '.' && path[1] == '/')
			path += 2;
		else if (path[0] == '.' && path[1] == '\0')
			path++;
		else
			break;
	}
	char *p = kiln_strdup(path);
	size_t n = strlen(p);
	while (n > 0 && p[n - 1] == '/')
		p[--n] = '\0';
	for (const char *s = p; *s;) {
		size_t len = strcspn(s, "/");
		if ((len == 2 && s[0] == '.' && s[1] == '.') || (len == 1 && s[0] == '.') ||
		    len == 0) {
			free(p);
			return NULL;
		}
		s += len;
		if (*s)
			s++;
	}
	return p;
}

static int tree_at(git_repository *repo, const char *sha, git_tree **out)
{
	_cleanup_(git_commit_freep) git_commit *c = NULL;
	int r = lookup_commit(&c, repo, sha);
	if (r < 0)
		return r;
	if ((r = git_commit_tree(out, c)) < 0)
		return gerr(r, "tree of %s", sha);
	return 0;
}

int kiln_git_read_file(const char *repo_path, const char *sha, const char *path, size_t max,
                       char **out, size_t *len)
{
	*out = NULL;
	int r = kiln_git_init();
	if (r < 0)
		return r;
	if ((r = check_arg("file path", path)) < 0)
		return r;
	_cleanup_free_ char *p = clean_tree_path(path);
	if (!p || !*p)
		return kiln_err(EINVAL, "'%s' is not a file path inside the repository", path);
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	if ((r = open_repo(&repo, repo_path, false)) < 0)
		return r;
	_cleanup_(git_tree_freep) git_tree *tree = NULL;
	if ((r = tree_at(repo, sha, &tree)) < 0)
		return r;
	_cleanup_(git_tree_entry_freep) git_tree_entry *e = NULL;
	if ((r = git_tree_entry_bypath(&e, tree, p)) < 0)
		return gerr(r, "%s at %s", p, sha);
	if (git_tree_entry_type(e) == GIT_OBJECT_TREE)
		return kiln_err(EISDIR, "%s at %s: is a directory", p, sha);
	if (git_tree_entry_type(e) != GIT_OBJECT_BLOB)
		return kiln_err(ENOENT, "%s at %s: a submodule, not a file", p, sha);

	/* Check the size from the header before inflating the whole object. */
	_cleanup_(git_odb_freep) git_odb *odb = NULL;
	size_t size = 0;
	git_object_t type;
	if ((r = git_repository_odb(&odb, repo)) < 0 ||
	    (r = git_odb_read_header(&size, &type, odb, git_tree_entry_id(e))) < 0)
		return gerr(r, "%s at %s", p, sha);
	if (size > max)
		return kiln_err(EFBIG, "%s at %s: %zu bytes, more than the limit of %zu", p, sha,
		                size, max);

	_cleanup_(git_blob_freep) git_blob *blob = NULL;
	if ((r = git_blob_lookup(&blob, repo, git_tree_entry_id(e))) < 0)
		return gerr(r, "%s at %s", p, sha);
	git_object_size_t n = git_blob_rawsize(blob);
	if (n > max)
		return kiln_err(EFBIG, "%s at %s: larger than the limit of %zu bytes", p, sha, max);
	char *buf = kiln_malloc((size_t)n + 1);
	memcpy(buf, git_blob_rawcontent(blob), (size_t)n);
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = (size_t)n;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int kiln_git_list_dir(const char *repo_path, const char *sha, const char *dir, kiln_strv *out)
{
	int r = kiln_git_init();
	if (r < 0)
		return r;
	_cleanup_free_ char *p = clean_tree_path(dir ? dir : "");
	if (!p)
		return kiln_err(EINVAL, "'%s' is not a directory path inside the repository", dir);
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	if ((r = open_repo(&repo, repo_path, false)) < 0)
		return r;
	_cleanup_(git_tree_freep) git_tree *root = NULL;
	if ((r = tree_at(repo, sha, &root)) < 0)
		return r;

	_cleanup_(git_tree_freep) git_tree *sub = NULL;
	const git_tree *tree = root;
	if (*p) {
		_cleanup_(git_tree_entry_freep) git_tree_entry *e = NULL;
		if ((r = git_tree_entry_bypath(&e, root, p)) < 0)
			return gerr(r, "%s at %s", p, sha);
		if (git_tree_entry_type(e) != GIT_OBJECT_TREE)
			return kiln_err(ENOENT, "%s at %s: not a directory", p, sha);
		if ((r = git_tree_lookup(&sub, repo, git_tree_entry_id(e))) < 0)
			return gerr(r, "%s at %s", p, sha);
		tree = sub;
	}

	_cleanup_(strv_freep) kiln_strv names = {0};
	size_t n = git_tree_entrycount(tree);
	for (size_t i = 0; i < n; i++) {
		const git_tree_entry *e = git_tree_entry_byindex(tree, i);
		if (git_tree_entry_type(e) == GIT_OBJECT_BLOB)
			kiln_strv_push(&names, git_tree_entry_name(e));
	}
	if (names.n)
		qsort(names.v, names.n, sizeof *names.v, cmp_str);
	for (size_t i = 0; i < names.n; i++) {
		kiln_strv_push_owned(out, names.v[i]);
		names.v[i] = NULL;
	}
	names.n = 0;
	return 0;
}

int kiln_git_head(const char *repo_path, char sha[41], char **ref)
{
	if (ref)
		*ref = NULL;
	int r = kiln_git_init();
	if (r < 0)
		return r;
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	if ((r = open_repo(&repo, repo_path, true)) < 0)
		return r;
	_cleanup_(git_reference_freep) git_reference *head = NULL;
	if ((r = git_repository_head(&head, repo)) < 0) {
		if (r == GIT_EUNBORNBRANCH || r == GIT_ENOTFOUND) {
			git_error_clear();
			return kiln_err(ENOENT, "%s: no commit yet", repo_path);
		}
		return gerr(r, "HEAD of %s", repo_path);
	}
	_cleanup_(git_object_freep) git_object *c = NULL;
	if ((r = git_reference_peel(&c, head, GIT_OBJECT_COMMIT)) < 0)
		return gerr(r, "HEAD of %s", repo_path);
	git_oid_tostr(sha, GIT_OID_HEXSZ + 1, git_object_id(c));
	if (ref && git_reference_is_branch(head))
		*ref = kiln_strdup(git_reference_name(head));
	return 0;
}

/* ---- working-tree snapshots --------------------------------------------- */

/* A status path we may join under a root: relative, no "." or ".." parts. */
static bool safe_rel(const char *rel)
{
	if (!*rel || rel[0] == '/')
		return false;
	for (const char *s = rel; *s;) {
		size_t len = strcspn(s, "/");
		if ((len == 2 && s[0] == '.' && s[1] == '.') || (len == 1 && s[0] == '.'))
			return false;
		s += len;
		if (*s)
			s++;
	}
	return true;
}

/* Creates the parent directories of root/rel, replacing files or symlinks in the way (never
 * following them). */
static int ensure_parents(const char *root, const char *rel)
{
	kiln_buf b = {0};
	kiln_buf_puts(&b, root);
	int r = 0;
	for (const char *s = rel;;) {
		size_t len = strcspn(s, "/");
		if (!s[len])
			break; /* the last component is the file itself */
		kiln_buf_puts(&b, "/");
		kiln_buf_append(&b, s, len);
		struct stat st;
		if (lstat(b.p, &st) == 0 && !S_ISDIR(st.st_mode)) {
			if (unlink(b.p) < 0) {
				r = kiln_err(errno, "unlink %s: %s", b.p, strerror(errno));
				break;
			}
		}
		if (mkdir(b.p, 0755) < 0 && errno != EEXIST) {
			r = kiln_err(errno, "mkdir %s: %s", b.p, strerror(errno));
			break;
		}
		s += len + 1;
	}
	kiln_buf_free(&b);
	return r;
}

/* Copies src (file, symlink or directory, lstat-ed as *st) to the absent path dst. */
static int copy_any(const char *src, const char *dst, const struct stat *st, int depth)
{
	if (S_ISREG(st->st_mode))
		return copy_file(src, dst, st->st_mode);
	if (S_ISLNK(st->st_mode))
		return copy_symlink(src, dst);
	if (!S_ISDIR(st->st_mode))
		return 0; /* sockets, fifos, devices: not content */
	if (depth > COPY_DEPTH_MAX)
		return kiln_err(ELOOP, "%s: directories nested too deep", src);
	if (mkdir(dst, 0700) < 0 && errno != EEXIST)
		return kiln_err(errno, "mkdir %s: %s", dst, strerror(errno));
	_cleanup_(closedirp) DIR *d = opendir(src);
	if (!d)
		return kiln_err(errno, "opendir %s: %s", src, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *s = kiln_asprintf("%s/%s", src, de->d_name);
		_cleanup_free_ char *t = kiln_asprintf("%s/%s", dst, de->d_name);
		struct stat cst;
		if (lstat(s, &cst) < 0)
			return kiln_err(errno, "%s: %s", s, strerror(errno));
		int r = copy_any(s, t, &cst, depth + 1);
		if (r < 0)
			return r;
	}
	if (chmod(dst, st->st_mode & 07777) < 0)
		return kiln_err(errno, "chmod %s: %s", dst, strerror(errno));
	return 0;
}

/* Whether every parent of base/rel is a real directory (no symlink to follow out of base). */
static bool parents_are_dirs(const char *base, const char *rel)
{
	_cleanup_free_ char *p = kiln_asprintf("%s/%s", base, rel);
	size_t skip = strlen(base) + 1;
	for (char *s = p + skip; (s = strchr(s, '/')); s++) {
		*s = '\0';
		struct stat st;
		bool ok = lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
		*s = '/';
		if (!ok)
			return false;
	}
	return true;
}

/* Makes root/rel what workdir/rel is now: copied if it exists, removed if not. */
static int sync_path(const char *workdir, const char *root, const char *rel_in)
{
	_cleanup_free_ char *rel = kiln_strdup(rel_in);
	size_t n = strlen(rel);
	bool as_dir =
	    n > 0 && rel[n - 1] == '/'; /* an untracked directory reported whole (nested repo) */
	while (n > 0 && rel[n - 1] == '/')
		rel[--n] = '\0';
	if (!safe_rel(rel))
		return kiln_err(EINVAL, "unexpected path '%s' in git status", rel_in);

	_cleanup_free_ char *src = kiln_asprintf("%s/%s", workdir, rel);
	_cleanup_free_ char *dst = kiln_asprintf("%s/%s", root, rel);
	struct stat st, dst_st;
	/* Never act through a symlink: a path under one is not the path git status means. */
	bool dst_ok = parents_are_dirs(root, rel);
	bool have_dst = dst_ok && lstat(dst, &dst_st) == 0;
	bool have_src = false;
	if (parents_are_dirs(workdir, rel)) {
		if (lstat(src, &st) == 0)
			have_src = true;
		else if (errno != ENOENT && errno != ENOTDIR)
			return kiln_err(errno, "%s: %s", src, strerror(errno));
	}

	if (!have_src) {
		int r = have_dst ? kiln_rm_rf(dst) : 0;
		if (r < 0 || !dst_ok)
			return r;
		/* Drop parents that the working tree no longer has either. */
		for (char *slash = strrchr(rel, '/'); slash; slash = strrchr(rel, '/')) {
			*slash = '\0';
			_cleanup_free_ char *sp = kiln_asprintf("%s/%s", workdir, rel);
			_cleanup_free_ char *dp = kiln_asprintf("%s/%s", root, rel);
			struct stat pst;
			if (lstat(sp, &pst) == 0 || rmdir(dp) < 0)
				break;
		}
		return 0;
	}
	if (S_ISDIR(st.st_mode) && !as_dir) {
		/* A tracked file that became a directory: its files have entries of their own. */
		if (have_dst && !S_ISDIR(dst_st.st_mode) && unlink(dst) < 0)
			return kiln_err(errno, "unlink %s: %s", dst, strerror(errno));
		return 0;
	}
	int r = ensure_parents(root, rel);
	if (r < 0)
		return r;
	if (have_dst && (r = kiln_rm_rf(dst)) < 0)
		return r;
	return copy_any(src, dst, &st, 0);
}

static void push_unique(kiln_strv *paths, const char *p)
{
	if (p && !kiln_strv_contains(paths, p))
		kiln_strv_push(paths, p);
}

/* Overlays every path git status reports for `src` (untracked included, ignored not) onto `root`.
 */
static int overlay_status(git_repository *src, const char *root)
{
	_cleanup_free_ char *workdir = kiln_strdup(git_repository_workdir(src));
	size_t wn = strlen(workdir);
	while (wn > 1 && workdir[wn - 1] == '/')
		workdir[--wn] = '\0';
	git_status_options so = GIT_STATUS_OPTIONS_INIT;
	so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
	           GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	_cleanup_(git_status_list_freep) git_status_list *list = NULL;
	int r = git_status_list_new(&list, src, &so);
	if (r < 0)
		return gerr(r, "git status of %s", workdir);
	size_t n = git_status_list_entrycount(list);
	for (size_t i = 0; i < n; i++) {
		const git_status_entry *e = git_status_byindex(list, i);
		if (!e || e->status == GIT_STATUS_CURRENT || (e->status & GIT_STATUS_IGNORED))
			continue;
		_cleanup_(strv_freep) kiln_strv paths = {0};
		if (e->head_to_index) {
			push_unique(&paths, e->head_to_index->old_file.path);
			push_unique(&paths, e->head_to_index->new_file.path);
		}
		if (e->index_to_workdir) {
			push_unique(&paths, e->index_to_workdir->old_file.path);
			push_unique(&paths, e->index_to_workdir->new_file.path);
		}
		for (size_t j = 0; j < paths.n; j++)
			if ((r = sync_path(workdir, root, paths.v[j])) < 0)
				return r;
	}
	return 0;
}

static int snapshot_in(git_repository *src, const char *dir)
{
	_cleanup_(git_repository_freep) git_repository *dst = NULL;
	int r = git_repository_head_unborn(src);
	if (r < 0)
		return gerr(r, "HEAD of %s", git_repository_workdir(src));
	if (r == 1) {
		/* No commit yet: a fresh repository on the same unborn branch. */
		_cleanup_(git_reference_freep) git_reference *head = NULL;
		git_repository_init_options io = GIT_REPOSITORY_INIT_OPTIONS_INIT;
		io.flags = GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
		if (git_reference_lookup(&head, src, "HEAD") == 0 &&
		    git_reference_type(head) == GIT_REFERENCE_SYMBOLIC)
			io.initial_head = git_reference_symbolic_target(head);
		git_error_clear();
		if ((r = git_repository_init_ext(&dst, dir, &io)) < 0)
			return gerr(r, "git init %s", dir);
	} else {
		_cleanup_(git_reference_freep) git_reference *head = NULL;
		if ((r = git_repository_head(&head, src)) < 0)
			return gerr(r, "HEAD of %s", git_repository_workdir(src));
		_cleanup_(git_object_freep) git_object *commit = NULL;
		if ((r = git_reference_peel(&commit, head, GIT_OBJECT_COMMIT)) < 0)
			return gerr(r, "HEAD of %s", git_repository_workdir(src));
		_cleanup_free_ char *origin = kiln_strdup(git_repository_workdir(src));
		size_t n = strlen(origin);
		while (n > 1 && origin[n - 1] == '/')
			origin[--n] = '\0';
		if ((r = local_clone(&dst, src, origin, dir, NULL)) < 0)
			return r;
		const char *branch =
		    git_reference_is_branch(head) ? git_reference_name(head) : NULL;
		if ((r = checkout_commit(dst, git_object_id(commit), branch)) < 0)
			return r;
	}
	return overlay_status(src, dir);
}

int kiln_git_snapshot_worktree(const char *repo_path, const char *dir)
{
	return kiln_git_snapshot_worktree_ex(repo_path, dir, KILN_GIT_DIR_EMPTY_ONLY);
}

int kiln_git_snapshot_worktree_ex(const char *repo_path, const char *dir, kiln_git_dir_mode mode)
{
	int r = kiln_git_init();
	if (r < 0)
		return r;
	_cleanup_(git_repository_freep) git_repository *src = NULL;
	if ((r = open_repo(&src, repo_path, true)) < 0)
		return r;
	if (git_repository_is_bare(src) || !git_repository_workdir(src))
		return kiln_err(EINVAL, "%s: a bare repository has no working tree", repo_path);
	bool existed = false;
	if ((r = prepare_dir(dir, mode, &existed)) < 0)
		return r;
	if ((r = snapshot_in(src, dir)) < 0)
		return undo_dir(r, dir, existed, mode);
	return 0;
}

/* ---- submodules --------------------------------------------------------- */

#define SUBMODULE_DEPTH_MAX 8 /* nesting of submodules followed */
#define SUBMODULES_MAX 1024   /* entries read from one .gitmodules */

typedef struct submodule {
	char *name, *path, *url, *update;
} submodule;

typedef struct submodule_list {
	submodule *v;
	size_t n;
} submodule_list;

static void submodule_list_freep(submodule_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].path);
		free(l->v[i].url);
		free(l->v[i].update);
	}
	free(l->v);
}

GIT_CLEANUP_FUNC(git_config_iterator, git_config_iterator_free)

/* Reads the submodule.<name>.{path,url,update} entries of the .gitmodules file at `file`, in
   the order their names first appear. Iterates over every entry: libgit2's regex matching of
   config names leaks (see mirror_fetch). */
static int read_gitmodules(const char *file, submodule_list *out)
{
	_cleanup_(git_config_freep) git_config *cfg = NULL;
	int r = git_config_open_ondisk(&cfg, file);
	if (r < 0)
		return gerr(r, "read %s", file);
	_cleanup_(git_config_iterator_freep) git_config_iterator *it = NULL;
	if ((r = git_config_iterator_new(&it, cfg)) < 0)
		return gerr(r, "read %s", file);
	git_config_entry *e;
	while ((r = git_config_next(&e, it)) == 0) {
		if (!starts_with(e->name, "submodule."))
			continue;
		const char *name = e->name + strlen("submodule.");
		const char *dot = strrchr(name, '.');
		if (!dot || dot == name || !e->value)
			continue;
		const char *var = dot + 1;
		char **field = NULL;
		size_t len = (size_t)(dot - name), i;
		for (i = 0; i < out->n; i++)
			if (strlen(out->v[i].name) == len &&
			    strncmp(out->v[i].name, name, len) == 0)
				break;
		if (strcmp(var, "path") != 0 && strcmp(var, "url") != 0 &&
		    strcmp(var, "update") != 0)
			continue;
		if (i == out->n) {
			if (out->n >= SUBMODULES_MAX)
				return kiln_err(E2BIG, "%s: more than %d submodules", file,
				                SUBMODULES_MAX);
			out->v = kiln_realloc(out->v, (out->n + 1) * sizeof *out->v);
			out->v[out->n] = (submodule){.name = kiln_asprintf("%.*s", (int)len, name)};
			out->n++;
		}
		submodule *m = &out->v[i];
		field = strcmp(var, "path") == 0  ? &m->path
		        : strcmp(var, "url") == 0 ? &m->url
		                                  : &m->update;
		free(*field); /* the last value wins, as in git */
		*field = kiln_strdup(e->value);
	}
	if (r != GIT_ITEROVER)
		return gerr(r, "read %s", file);
	git_error_clear();
	return 0;
}

/* The URL that the relative submodule URL `rel` ("./x", "../x") names against the
   superproject's URL `base`, as git resolves it: each "../" drops one path component. NULL when
   it climbs above the host or the root. Owned. */
static char *relative_url(const char *base, const char *rel)
{
	_cleanup_free_ char *b = kiln_strdup(base);
	size_t n = strlen(b);
	while (n > 1 && b[n - 1] == '/')
		b[--n] = '\0';
	const char *scheme = strstr(b, "://");
	const char *host_end = scheme ? strchr(scheme + 3, '/') : NULL;
	char sep = '/';
	for (;;) {
		if (starts_with(rel, "./")) {
			rel += 2;
		} else if (starts_with(rel, "../")) {
			rel += 3;
			char *cut = strrchr(b, '/');
			if (scheme) {
				if (!host_end || !cut || cut < host_end)
					return NULL;
			} else if (!cut && !is_local_url(b)) {
				/* scp-like host:path with a one-component path */
				char *colon = strchr(b, ':');
				if (!colon || sep == ':')
					return NULL;
				colon[1] = '\0';
				sep = ':';
				continue;
			} else if (!cut || cut == b) {
				return NULL;
			}
			*cut = '\0';
		} else {
			break;
		}
	}
	while (*rel == '/')
		rel++;
	if (!*rel)
		return NULL;
	if (sep == ':')
		return kiln_asprintf("%s%s", b, rel);
	return kiln_asprintf("%s/%s", b, rel);
}

/* The host[:port] of an https:// URL (after any user info), or NULL. Owned. */
static char *https_host(const char *url)
{
	if (!url || !starts_with(url, "https://"))
		return NULL;
	const char *h = url + strlen("https://");
	size_t end = strcspn(h, "/");
	const char *at = memchr(h, '@', end);
	if (at) {
		end -= (size_t)(at + 1 - h);
		h = at + 1;
	}
	return kiln_asprintf("%.*s", (int)end, h);
}

static void sublog(const kiln_git_submodule_opts *o, const char *fmt, ...) KILN_PRINTF(2, 3);
static void sublog(const kiln_git_submodule_opts *o, const char *fmt, ...)
{
	if (!o->log)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	_cleanup_free_ char *shown = redact(line);
	o->log(o->log_arg, shown);
}

/* A submodule name that can name a directory under .git/modules and a config section. */
static bool safe_name(const char *name)
{
	for (const char *s = name; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"' || *s == '\\')
			return false;
	return safe_rel(name) && strlen(name) <= 1024;
}

static int submodules_in(const char *dir, const char *display, const char *url,
                         const kiln_git_submodule_opts *o, int depth);

/* Checks out submodule `m` of the superproject `super` (working tree `dir`, remote `url`). */
static int submodule_one(git_repository *super, git_tree *tree, const char *dir,
                         const char *display, const char *url, const submodule *m,
                         const kiln_git_submodule_opts *o, int depth)
{
	_cleanup_free_ char *shown_path =
	    *display ? kiln_asprintf("%s/%s", display, m->path) : kiln_strdup(m->path);
	if (m->update && strcmp(m->update, "none") == 0) {
		sublog(o, "Skipping submodule %s (update = none)", shown_path);
		return 0;
	}
	_cleanup_free_ char *path = clean_tree_path(m->path);
	if (!safe_name(m->name) || !path || !*path || !safe_rel(path))
		return kiln_err(EINVAL, "submodule '%.200s': unsafe name or path '%.200s'", m->name,
		                m->path);
	_cleanup_(git_tree_entry_freep) git_tree_entry *e = NULL;
	if (git_tree_entry_bypath(&e, tree, path) < 0 ||
	    git_tree_entry_type(e) != GIT_OBJECT_COMMIT) {
		git_error_clear();
		sublog(o, "Skipping submodule %s: no commit recorded at that path", shown_path);
		return 0;
	}
	git_oid oid;
	git_oid_cpy(&oid, git_tree_entry_id(e));
	char sha[GIT_OID_HEXSZ + 1];
	git_oid_tostr(sha, sizeof sha, &oid);

	_cleanup_free_ char *sub_url = NULL;
	if (starts_with(m->url, "./") || starts_with(m->url, "../")) {
		sub_url = relative_url(url, m->url);
		if (!sub_url)
			return kiln_err(EINVAL, "submodule %s: cannot resolve '%.200s' against %s",
			                shown_path, m->url, url);
	} else {
		sub_url = kiln_strdup(m->url);
	}
	/* As git's protocol.file.allow=user: a repository from elsewhere may not make the agent
	   copy a repository of its own disk into the workspace. */
	if (is_local_path_url(sub_url) && !is_local_path_url(url))
		return kiln_err(EPERM,
		                "submodule %s: the local URL '%.200s' is refused in a repository "
		                "fetched from %s",
		                shown_path, m->url, url);
	_cleanup_free_ char *bare = NULL, *user = NULL, *pass = NULL;
	split_userinfo(sub_url, &bare, &user, &pass);
	_cleanup_free_ char *h1 = https_host(url), *h2 = https_host(sub_url);
	kiln_git_fetch_opts fo = {0};
	if (h1 && h2 && strcasecmp(h1, h2) == 0)
		fo.auth = o->auth;
	_cleanup_free_ char *mirror = NULL;
	int r = mirror_ensure(o->mirrors_dir, sub_url, &oid, &fo, &mirror);
	if (r < 0) {
		kiln_err_prefix("submodule %s", shown_path);
		return r;
	}
	if (fo.fetched)
		sublog(o, "Fetched submodule %s from %s (branches and tags)", shown_path, bare);
	else
		sublog(o, "Submodule %s: commit %.12s already in the mirror of %s", shown_path, sha,
		       bare);

	if (!parents_are_dirs(dir, path))
		return kiln_err(EINVAL, "submodule %s: its path goes through a non-directory",
		                shown_path);
	_cleanup_free_ char *workdir = kiln_asprintf("%s/%s", dir, path);
	_cleanup_free_ char *gitdir =
	    kiln_asprintf("%smodules/%s", git_repository_path(super), m->name);
	bool existed;
	if ((r = kiln_rm_rf(gitdir)) < 0 ||
	    (r = prepare_dir(workdir, KILN_GIT_DIR_KEEP, &existed)) < 0)
		return r;
	clone_opts co = {.gitdir = gitdir, .no_tags = o->no_tags};
	_cleanup_(git_repository_freep) git_repository *sub = NULL;
	if ((r = clone_mirror(&sub, mirror, bare, workdir, &co)) < 0 ||
	    (r = checkout_commit(sub, &oid, NULL)) < 0) {
		kiln_err_prefix("submodule %s", shown_path);
		return r;
	}
	sublog(o, "Checked out submodule %s at %s", shown_path, sha);
	_cleanup_free_ char *k_url = kiln_asprintf("submodule.%s.url", m->name);
	_cleanup_free_ char *k_active = kiln_asprintf("submodule.%s.active", m->name);
	_cleanup_free_ char *stored = NULL;
	if ((r = normalize_url(bare, &stored)) < 0 ||
	    (r = set_config(super, k_url, stored, k_active, "true", (const char *)NULL)) < 0)
		return r;
	if (o->recursive)
		return submodules_in(workdir, shown_path, stored, o, depth + 1);
	return 0;
}

static int submodules_in(const char *dir, const char *display, const char *url,
                         const kiln_git_submodule_opts *o, int depth)
{
	if (depth > SUBMODULE_DEPTH_MAX)
		return kiln_err(ELOOP, "submodules nested more than %d deep at %s",
		                SUBMODULE_DEPTH_MAX, *display ? display : ".");
	_cleanup_free_ char *file = kiln_asprintf("%s/.gitmodules", dir);
	struct stat st;
	if (lstat(file, &st) < 0)
		return errno == ENOENT ? 0 : kiln_err(errno, "%s: %s", file, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return kiln_err(EINVAL, "%s: not a regular file", file);
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	int r = open_repo(&repo, dir, false);
	if (r < 0)
		return r;
	_cleanup_(git_reference_freep) git_reference *head = NULL;
	_cleanup_(git_object_freep) git_object *tree = NULL;
	if ((r = git_repository_head(&head, repo)) < 0 ||
	    (r = git_reference_peel(&tree, head, GIT_OBJECT_TREE)) < 0)
		return gerr(r, "HEAD of %s", dir);
	_cleanup_(submodule_list_freep) submodule_list mods = {0};
	if ((r = read_gitmodules(file, &mods)) < 0)
		return r;
	for (size_t i = 0; i < mods.n; i++) {
		if (!mods.v[i].path || !mods.v[i].url)
			continue; /* git needs both */
		r = submodule_one(repo, (git_tree *)tree, dir, display, url, &mods.v[i], o, depth);
		if (r < 0)
			return r;
	}
	return 0;
}

int kiln_git_submodules(const char *dir, const kiln_git_submodule_opts *o)
{
	int r = kiln_git_init();
	if (r < 0)
		return r;
	if ((r = check_arg("directory", dir)) < 0 ||
	    (r = check_arg("mirrors directory", o->mirrors_dir)) < 0 ||
	    (r = check_arg("repository url", o->url)) < 0)
		return r;
	_cleanup_free_ char *bare = NULL, *user = NULL, *pass = NULL;
	split_userinfo(o->url, &bare, &user, &pass);
	_cleanup_free_ char *url = NULL;
	if ((r = normalize_url(bare, &url)) < 0)
		return r;
	return submodules_in(dir, "", url, o, 0);
}

/* ---- diffs --------------------------------------------------------------- */

GIT_CLEANUP_FUNC(git_diff, git_diff_free)

typedef struct changed_ctx {
	kiln_strv *paths;
	size_t max;
	bool over;
} changed_ctx;

static int changed_file(const git_diff_delta *d, float progress, void *payload)
{
	(void)progress;
	changed_ctx *cc = payload;
	const char *names[2] = {d->old_file.path, d->new_file.path};
	for (int i = 0; i < 2; i++) {
		if (!names[i] || (i == 1 && names[0] && strcmp(names[0], names[1]) == 0))
			continue;
		if (cc->paths->n >= cc->max) {
			cc->over = true;
			return 1; /* stops the walk */
		}
		kiln_strv_push(cc->paths, names[i]);
	}
	return 0;
}

int kiln_git_changed_paths(const char *repo_path, const char *base, const char *head,
                           bool merge_base, size_t max, kiln_strv *out)
{
	int r = kiln_git_init();
	if (r < 0)
		return r;
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	if ((r = open_repo(&repo, repo_path, false)) < 0)
		return r;
	_cleanup_(git_commit_freep) git_commit *hc = NULL, *bc = NULL;
	if ((r = lookup_commit(&hc, repo, head)) < 0)
		return r;
	if (base && *base) {
		if ((r = lookup_commit(&bc, repo, base)) < 0)
			return r;
		if (merge_base) {
			git_oid mb;
			r = git_merge_base(&mb, repo, git_commit_id(bc), git_commit_id(hc));
			if (r == GIT_ENOTFOUND) {
				git_error_clear(); /* unrelated histories: everything changed */
				git_commit_free(bc);
				bc = NULL;
			} else if (r < 0) {
				return gerr(r, "merge base of %s and %s", base, head);
			} else {
				git_commit_free(bc);
				bc = NULL;
				if ((r = git_commit_lookup(&bc, repo, &mb)) < 0)
					return gerr(r, "merge base of %s and %s", base, head);
			}
		}
	}
	_cleanup_(git_tree_freep) git_tree *ht = NULL, *bt = NULL;
	if ((r = git_commit_tree(&ht, hc)) < 0)
		return gerr(r, "tree of %s", head);
	if (bc && (r = git_commit_tree(&bt, bc)) < 0)
		return gerr(r, "tree of %s", base);
	_cleanup_(git_diff_freep) git_diff *diff = NULL;
	git_diff_options o = GIT_DIFF_OPTIONS_INIT;
	o.flags = GIT_DIFF_SKIP_BINARY_CHECK;
	if ((r = git_diff_tree_to_tree(&diff, repo, bt, ht, &o)) < 0)
		return gerr(r, "diff %s..%s", base ? base : "", head);
	_cleanup_(strv_freep) kiln_strv paths = {0};
	changed_ctx cc = {&paths, max, false};
	r = git_diff_foreach(diff, changed_file, NULL, NULL, NULL, &cc);
	if (r < 0 && !cc.over)
		return gerr(r, "diff %s..%s", base ? base : "", head);
	git_error_clear();
	if (paths.n)
		qsort(paths.v, paths.n, sizeof *paths.v, cmp_str);
	const char *prev = NULL;
	for (size_t i = 0; i < paths.n; i++) {
		if (prev && strcmp(paths.v[i], prev) == 0) {
			free(paths.v[i]);
		} else {
			kiln_strv_push_owned(out, paths.v[i]);
			prev = paths.v[i];
		}
		paths.v[i] = NULL;
	}
	paths.n = 0;
	if (cc.over)
		return kiln_err(E2BIG, "more than %zu files changed between %s and %s", max,
		                base && *base ? base : "(nothing)", head);
	return 0;
}

int kiln_git_commit_message(const char *repo_path, const char *rev, size_t max, char **out)
{
	*out = NULL;
	_cleanup_(git_repository_freep) git_repository *repo = NULL;
	_cleanup_(git_commit_freep) git_commit *c = NULL;
	int r = open_commit(repo_path, rev, &repo, &c);
	if (r < 0)
		return r;
	const char *m = git_commit_message(c);
	*out = strndup(m ? m : "", max);
	if (!*out)
		return kiln_err(ENOMEM, "out of memory");
	return 0;
}
