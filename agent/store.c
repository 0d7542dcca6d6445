/*
 * store — see store.h. A cache is one manifest whose top-level directories
 * are the roots of common/paths.h ("workspace", "home", "root"): it is
 * saved from, and restored into, the workspace, the home directory and `/`
 * of the machine at hand. An artifact is one manifest of its files relative
 * to their least common ancestor, as actions/upload-artifact stores them.
 */
#include "agent/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/transfer.h"
#include "common/cas.h"
#include "common/manifest.h"
#include "common/paths.h"

#define VERSION_SALT "kiln-cache-1\n"

static void logf_(const agent_store_ctx *sc, const char *fmt, ...) KILN_PRINTF(2, 3);
static void logf_(const agent_store_ctx *sc, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	sc->log(sc->log_arg, buf);
}

static const char *input(const agent_store_ctx *sc, const char *name)
{
	const char *v = json_string_value(json_object_get(sc->with, name));
	return v ? v : "";
}

static bool input_bool(const agent_store_ctx *sc, const char *name)
{
	json_t *v = json_object_get(sc->with, name);
	if (json_is_boolean(v))
		return json_is_true(v);
	const char *s = json_string_value(v);
	return s && strcasecmp(s, "true") == 0;
}

static void set_output(const agent_store_ctx *sc, const char *name, const char *value)
{
	json_object_set_new(sc->outputs, name, json_string(value));
}

static kiln_cas *local_cas(const agent_store_ctx *sc)
{
	return agent_cas(sc->j->a);
}

/* One blob from the coordinator (the restore's fallback for what the bulk fetch missed). */
static int fetch_one(void *ud, kiln_cas *cas, const char *hex)
{
	kiln_strv one = {0};
	kiln_strv_push(&one, hex);
	int r = agent_blobs_download(ud, cas, &one, NULL);
	kiln_strv_free(&one);
	return r;
}

static char *human(uint64_t n)
{
	if (n >= 10ull << 20)
		return kiln_asprintf("%.1f MB", (double)n / 1e6);
	if (n >= 10ull << 10)
		return kiln_asprintf("%.1f KB", (double)n / 1e3);
	return kiln_asprintf("%llu B", (unsigned long long)n);
}

/* The manifest `hex` with its blobs, fetched as needed, restored into dir (or, with split,
   each top-level directory into the root of that name). */
static int restore(const agent_store_ctx *sc, const char *hex, const char *dir, bool split,
		   agent_transfer_stats *got)
{
	kiln_cas *cas = local_cas(sc);
	agent *a = sc->j->a;
	kiln_strv one = {0};
	kiln_strv_push(&one, hex);
	int r = agent_blobs_download(a, cas, &one, got);
	kiln_strv_free(&one);
	if (r < 0)
		return r;
	_cleanup_(kiln_manifest_freep) kiln_manifest *m = NULL;
	if ((r = kiln_manifest_load(cas, hex, &m)) < 0)
		return r;
	kiln_strv missing = {0};
	agent_transfer_stats st = {0};
	r = kiln_manifest_find_missing(cas, m, &missing);
	if (r >= 0)
		r = agent_blobs_download(a, cas, &missing, &st);
	kiln_strv_free(&missing);
	if (got) {
		got->blobs += st.blobs;
		got->bytes += st.bytes;
	}
	if (r < 0)
		return r;
	if (!split)
		return kiln_manifest_restore(cas, m, dir, fetch_one, a);
	static const char *const roots[] = {"workspace", "home", "root"};
	for (size_t k = 0; k < KILN_ARRAY_SIZE(roots) && r >= 0; k++) {
		size_t plen = strlen(roots[k]);
		kiln_manifest sub = {0};
		for (size_t i = 0; i < m->n; i++) {
			const kiln_manifest_entry *e = &m->v[i];
			if (strncmp(e->path, roots[k], plen) != 0 || e->path[plen] != '/')
				continue;
			if (sub.n == sub.cap) {
				sub.cap = sub.cap ? sub.cap * 2 : 64;
				sub.v = kiln_realloc(sub.v, sub.cap * sizeof *sub.v);
			}
			sub.v[sub.n] = *e;
			sub.v[sub.n].path = e->path + plen + 1;
			sub.n++;
		}
		const char *target = k == 0 ? sc->ws : k == 1 ? sc->home : "/";
		if (sub.n && !target)
			r = kiln_err(ENOENT, "the cache holds files of the home directory, and the "
					     "steps have no HOME");
		else if (sub.n)
			r = kiln_manifest_restore(cas, &sub, target, fetch_one, a);
		free(sub.v);
	}
	return r;
}

/* ---- actions/cache ---- */

/* The cache version: entries saved from other paths never match. */
static void cache_version(const char *paths, char out[65])
{
	kiln_buf b = {0};
	kiln_buf_puts(&b, VERSION_SALT);
	kiln_strv lines = {0};
	kiln_strv_split(&lines, paths, "\n");
	for (size_t i = 0; i < lines.n; i++) {
		const char *s = lines.v[i];
		size_t n = strlen(s);
		while (*s == ' ' || *s == '\t' || *s == '\r') {
			s++;
			n--;
		}
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
			n--;
		if (!n)
			continue;
		kiln_buf_append(&b, s, n);
		kiln_buf_append(&b, "\n", 1);
	}
	kiln_strv_free(&lines);
	kiln_sha256_hex(b.p, b.len, out);
	kiln_buf_free(&b);
}

static void split_keys(const char *text, kiln_strv *out)
{
	kiln_strv lines = {0};
	kiln_strv_split(&lines, text, "\n");
	for (size_t i = 0; i < lines.n; i++) {
		char *s = lines.v[i];
		while (*s == ' ' || *s == '\t')
			s++;
		size_t n = strlen(s);
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
			s[--n] = '\0';
		if (*s)
			kiln_strv_push(out, s);
	}
	kiln_strv_free(&lines);
}

int agent_cache_restore(const agent_store_ctx *sc, json_t **post)
{
	if (post)
		*post = NULL;
	if (!local_cas(sc)) {
		logf_(sc, "Warning: the agent's cache store cannot be used: %s", kiln_errmsg());
		set_output(sc, "cache-hit", "false");
		return 0;
	}
	const char *key = input(sc, "key"), *paths = input(sc, "path");
	if (post)
		*post = NULL;
	if (!*key)
		return kiln_err(EINVAL, "Input required and not supplied: key");
	if (!*paths)
		return kiln_err(EINVAL, "Input required and not supplied: path");
	kiln_strv keys = {0};
	kiln_strv_push(&keys, key);
	split_keys(input(sc, "restore-keys"), &keys);
	char version[65];
	cache_version(paths, version);
	agent_job *j = sc->j;
	Kiln__CacheLookup cl = KILN__CACHE_LOOKUP__INIT;
	cl.job_id = j->job_id;
	cl.attempt = j->attempt;
	cl.keys = keys.v;
	cl.n_keys = keys.n;
	cl.version = version;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_CACHE_LOOKUP;
	req.cache_lookup = &cl;
	Kiln__Response *resp = NULL;
	int r = agent_call_expect(j->a, &req, 60000, KILN__RESPONSE__BODY_CACHE_LOOKUP, &resp);
	if (r < 0)
		kiln_err_prefix("cache lookup");
	set_output(sc, "cache-primary-key", key);
	bool exact = false;
	if (r == 0) {
		Kiln__CacheLookupReply *lr = resp->cache_lookup;
		if (!lr->found) {
			kiln_buf all = {0};
			for (size_t i = 0; i < keys.n; i++)
				kiln_buf_printf(&all, "%s%s", i ? ", " : "", keys.v[i]);
			logf_(sc, "Cache not found for input keys: %s", all.p);
			kiln_buf_free(&all);
			set_output(sc, "cache-hit", "false");
			if (input_bool(sc, "fail-on-cache-miss"))
				r = kiln_err(ENOENT, "Failed to restore cache entry. Exiting as "
						     "fail-on-cache-miss is set. Input key: %s",
					     key);
		} else {
			exact = strcmp(lr->key, key) == 0;
			set_output(sc, "cache-matched-key", lr->key);
			set_output(sc, "cache-hit", exact ? "true" : "false");
			_cleanup_free_ char *size = human(lr->size);
			if (input_bool(sc, "lookup-only")) {
				logf_(sc, "Cache found and can be restored from key: %s (%s)", lr->key,
				      size);
			} else {
				agent_transfer_stats st = {0};
				int64_t t0 = kiln_mono_ns();
				r = restore(sc, lr->manifest, NULL, true, &st);
				if (r < 0) {
					/* as GitHub: a cache that cannot be restored is a warning */
					logf_(sc, "Warning: Failed to restore: %s", kiln_errmsg());
					set_output(sc, "cache-hit", "false");
					exact = false;
					r = 0;
				} else {
					_cleanup_free_ char *moved = human(st.bytes);
					logf_(sc, "Cache restored from key: %s (%s; %llu blobs, %s "
						  "fetched, %.2f s)",
					      lr->key, size, (unsigned long long)st.blobs, moved,
					      (double)(kiln_mono_ns() - t0) / 1e9);
				}
			}
		}
		kiln__response__free_unpacked(resp, NULL);
	}
	if (r >= 0 && post && !exact)
		*post = json_pack("{s:s, s:s}", "key", key, "path", paths);
	kiln_strv_free(&keys);
	return r;
}

/* Adds every entry of part under "name/" to all (the roots of a cache). */
static void add_root(kiln_manifest *all, const char *name, kiln_manifest *part)
{
	size_t need = all->n + part->n + 1;
	if (need > all->cap) {
		all->cap = need * 2;
		all->v = kiln_realloc(all->v, all->cap * sizeof *all->v);
	}
	kiln_manifest_entry *d = &all->v[all->n++];
	memset(d, 0, sizeof *d);
	d->path = kiln_strdup(name);
	d->type = KILN_ENTRY_DIR;
	d->mode = 0755;
	for (size_t i = 0; i < part->n; i++) {
		kiln_manifest_entry *e = &all->v[all->n++];
		*e = part->v[i];
		e->path = kiln_asprintf("%s/%s", name, part->v[i].path);
		free(part->v[i].path);
		part->v[i].path = NULL;
		part->v[i].target = NULL; /* moved */
	}
	part->n = 0;
}

/* Sends the manifest's blobs the coordinator lacks, and the manifest. */
static int upload_manifest(const agent_store_ctx *sc, const kiln_manifest *m, const char *hex,
			   agent_transfer_stats *st, uint64_t *size)
{
	kiln_strv digests = {0};
	kiln_strv_push(&digests, hex);
	*size = 0;
	for (size_t i = 0; i < m->n; i++) {
		if (m->v[i].type != KILN_ENTRY_FILE)
			continue;
		*size += m->v[i].size;
		kiln_strv_push(&digests, m->v[i].digest);
	}
	int r = agent_blobs_upload(sc->j->a, local_cas(sc), &digests, st);
	kiln_strv_free(&digests);
	return r;
}

static int expand(const agent_store_ctx *sc, const char *paths, kiln_paths **out)
{
	kiln_paths_opts po = KILN_PATHS_OPTS_INIT;
	po.workspace = sc->ws;
	po.home = sc->home;
	return kiln_paths_expand(paths, &po, out);
}

int agent_cache_save(const agent_store_ctx *sc)
{
	if (!local_cas(sc)) {
		logf_(sc, "Warning: Failed to save: the agent's cache store cannot be used: %s",
		      kiln_errmsg());
		return 0;
	}
	const char *key = input(sc, "key"), *paths = input(sc, "path");
	if (!*key || !*paths) {
		logf_(sc, "Warning: Input required and not supplied: %s", *key ? "path" : "key");
		return 0;
	}
	int64_t t0 = kiln_mono_ns();
	_cleanup_(kiln_paths_freep) kiln_paths *ps = NULL;
	int r = expand(sc, paths, &ps);
	if (r < 0) {
		logf_(sc, "Warning: Failed to save: %s", kiln_errmsg());
		return 0;
	}
	if (ps->nmatches == 0) {
		logf_(sc, "Warning: Path Validation Error: Path(s) specified in the action for "
			  "caching do(es) not exist, hence no cache is being saved.");
		return 0;
	}
	kiln_cas *cas = local_cas(sc);
	kiln_manifest all = {0};
	for (int k = 0; k < KILN_PATHS_NROOTS && r >= 0; k++) {
		kiln_paths_root *root = &ps->root[k];
		if (!root->cover.n)
			continue;
		kiln_manifest *part = NULL;
		r = kiln_manifest_build(cas, root->dir, (const char *const *)root->cover.v,
					root->cover.n, &part);
		if (r >= 0)
			add_root(&all, root->name, part);
		kiln_manifest_free(part);
	}
	char hex[65] = "";
	uint64_t size = 0;
	agent_transfer_stats st = {0};
	if (r >= 0)
		r = kiln_manifest_check(&all, kiln_cas_limits_get(cas));
	if (r >= 0)
		r = kiln_manifest_save(cas, &all, hex);
	if (r >= 0)
		r = upload_manifest(sc, &all, hex, &st, &size);
	size_t files = 0;
	for (size_t i = 0; i < all.n; i++)
		files += all.v[i].type == KILN_ENTRY_FILE;
	for (size_t i = 0; i < all.n; i++) {
		free(all.v[i].path);
		free(all.v[i].target);
	}
	free(all.v);
	if (r < 0) {
		logf_(sc, "Warning: Failed to save: %s", kiln_errmsg());
		return 0;
	}
	char version[65];
	cache_version(paths, version);
	agent_job *j = sc->j;
	Kiln__CacheCommit cc = KILN__CACHE_COMMIT__INIT;
	cc.job_id = j->job_id;
	cc.attempt = j->attempt;
	cc.key = (char *)key;
	cc.version = version;
	cc.manifest = hex;
	cc.size = size;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_CACHE_COMMIT;
	req.cache_commit = &cc;
	Kiln__Response *resp = NULL;
	r = agent_call_expect(j->a, &req, 60000, KILN__RESPONSE__BODY_CACHE_COMMIT, &resp);
	if (r < 0) {
		logf_(sc, "Warning: Failed to save: %s", kiln_errmsg());
		return 0;
	}
	if (!resp->cache_commit->stored) {
		logf_(sc, "Warning: Failed to save: Unable to reserve cache with key %s, another job "
			  "may be creating this cache.",
		      key);
	} else {
		_cleanup_free_ char *sz = human(size), *sent = human(st.bytes);
		logf_(sc, "Cache saved with key: %s (%zu files, %s; %llu blobs, %s sent, %.2f s)", key,
		      files, sz, (unsigned long long)st.blobs, sent,
		      (double)(kiln_mono_ns() - t0) / 1e9);
	}
	kiln__response__free_unpacked(resp, NULL);
	return 0;
}

/* ---- artifacts ---- */

/* Whether a part of rel starts with a dot ("." itself aside). */
static bool hidden(const char *rel)
{
	for (const char *p = rel;;) {
		if (p[0] == '.' && p[1] != '/' && p[1] != '\0')
			return true;
		const char *slash = strchr(p, '/');
		if (!slash)
			return false;
		p = slash + 1;
	}
}

/* The absolute paths of the matches (files and symlinks; hidden ones only if asked). */
static void artifact_files(const kiln_paths *ps, bool include_hidden, kiln_strv *out)
{
	for (int k = 0; k < KILN_PATHS_NROOTS; k++) {
		const kiln_paths_root *root = &ps->root[k];
		for (size_t i = 0; i < root->matches.n; i++) {
			const char *rel = root->matches.v[i];
			_cleanup_free_ char *abs = strcmp(rel, ".") == 0
							   ? kiln_strdup(root->dir)
							   : kiln_asprintf("%s%s%s", root->dir,
									   strcmp(root->dir, "/") ? "/" : "",
									   rel);
			struct stat st;
			if (lstat(abs, &st) < 0 || S_ISDIR(st.st_mode))
				continue;
			if (!include_hidden && hidden(rel))
				continue;
			kiln_strv_push(out, abs);
		}
	}
}

/* The longest directory that holds every path (for one file: its directory). */
static char *common_dir(const kiln_strv *files)
{
	char *dir = kiln_strdup(files->v[0]);
	char *slash = strrchr(dir, '/');
	*(slash == dir ? slash + 1 : slash) = '\0';
	for (size_t i = 1; i < files->n; i++) {
		size_t n = strlen(dir);
		while (!(strncmp(files->v[i], dir, n) == 0 &&
			 (files->v[i][n] == '/' || strcmp(dir, "/") == 0))) {
			slash = strrchr(dir, '/');
			*(slash == dir ? slash + 1 : slash) = '\0';
			n = strlen(dir);
		}
	}
	return dir;
}

int agent_artifact_upload(const agent_store_ctx *sc)
{
	if (!local_cas(sc))
		return kiln_err(EIO, "the agent's store cannot be used: %s", kiln_errmsg());
	const char *name = *input(sc, "name") ? input(sc, "name") : "artifact";
	const char *paths = input(sc, "path");
	const char *nf = *input(sc, "if-no-files-found") ? input(sc, "if-no-files-found") : "warn";
	if (strcmp(nf, "warn") != 0 && strcmp(nf, "error") != 0 && strcmp(nf, "ignore") != 0)
		return kiln_err(EINVAL, "if-no-files-found: '%s' is not warn, error or ignore", nf);
	if (!*paths)
		return kiln_err(EINVAL, "Input required and not supplied: path");
	long days = 0;
	const char *rd = input(sc, "retention-days");
	if (*rd) {
		char *end;
		days = strtol(rd, &end, 10);
		if (*end || days < 1 || days > 90)
			return kiln_err(EINVAL, "retention-days: '%s' is not a number of days from 1 "
						"to 90",
					rd);
	}
	int64_t t0 = kiln_mono_ns();
	_cleanup_(kiln_paths_freep) kiln_paths *ps = NULL;
	int r = expand(sc, paths, &ps);
	if (r < 0)
		return r;
	kiln_strv files = {0};
	artifact_files(ps, input_bool(sc, "include-hidden-files"), &files);
	if (!files.n) {
		kiln_strv_free(&files);
		if (strcmp(nf, "error") == 0)
			return kiln_err(ENOENT, "No files were found with the provided path: %s. No "
						"artifacts will be uploaded.",
					paths);
		logf_(sc, "%sNo files were found with the provided path: %s. No artifacts will be "
			  "uploaded.",
		      strcmp(nf, "warn") == 0 ? "Warning: " : "", paths);
		return 0;
	}
	_cleanup_free_ char *root = common_dir(&files);
	size_t skip = strcmp(root, "/") == 0 ? 1 : strlen(root) + 1;
	const char **rel = kiln_calloc(files.n, sizeof *rel);
	for (size_t i = 0; i < files.n; i++)
		rel[i] = files.v[i] + skip;
	kiln_cas *cas = local_cas(sc);
	_cleanup_(kiln_manifest_freep) kiln_manifest *m = NULL;
	r = kiln_manifest_build(cas, root, rel, files.n, &m);
	free(rel);
	kiln_strv_free(&files);
	char hex[65];
	uint64_t size = 0;
	agent_transfer_stats st = {0};
	if (r >= 0)
		r = kiln_manifest_save(cas, m, hex);
	if (r >= 0)
		r = upload_manifest(sc, m, hex, &st, &size);
	if (r < 0)
		return r;
	size_t nfiles = 0;
	for (size_t i = 0; i < m->n; i++)
		nfiles += m->v[i].type == KILN_ENTRY_FILE;
	agent_job *j = sc->j;
	Kiln__ArtifactCommit ac = KILN__ARTIFACT_COMMIT__INIT;
	ac.job_id = j->job_id;
	ac.attempt = j->attempt;
	ac.name = (char *)name;
	ac.manifest = hex;
	ac.size = size;
	ac.files = nfiles;
	ac.retention_days = (uint32_t)days;
	ac.overwrite = input_bool(sc, "overwrite");
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_ARTIFACT_COMMIT;
	req.artifact_commit = &ac;
	Kiln__Response *resp = NULL;
	if ((r = agent_call_expect(j->a, &req, 60000, KILN__RESPONSE__BODY_ARTIFACT_COMMIT,
				   &resp)) < 0) {
		kiln_err_prefix("the artifact %s", name);
		return r;
	}
	if (!resp->artifact_commit->stored)
		r = kiln_err(EEXIST, "Failed to upload the artifact %s: %s", name,
			     resp->artifact_commit->message);
	kiln__response__free_unpacked(resp, NULL);
	if (r < 0)
		return r;
	_cleanup_free_ char *sz = human(size), *sent = human(st.bytes);
	logf_(sc, "Artifact %s uploaded: %zu files, %s (%llu blobs, %s sent, %.2f s)", name, nfiles,
	      sz, (unsigned long long)st.blobs, sent, (double)(kiln_mono_ns() - t0) / 1e9);
	set_output(sc, "artifact-id", hex);
	set_output(sc, "artifact-digest", hex);
	return 0;
}

int agent_artifact_download(const agent_store_ctx *sc)
{
	if (!local_cas(sc))
		return kiln_err(EIO, "the agent's store cannot be used: %s", kiln_errmsg());
	const char *name = input(sc, "name"), *pattern = input(sc, "pattern");
	const char *path = input(sc, "path");
	bool merge = input_bool(sc, "merge-multiple");
	_cleanup_free_ char *dest = !*path		   ? kiln_strdup(sc->ws)
				    : path[0] == '/'	   ? kiln_strdup(path)
				    : path[0] == '~' && sc->home ? kiln_asprintf("%s%s", sc->home, path + 1)
							   : kiln_asprintf("%s/%s", sc->ws, path);
	agent_job *j = sc->j;
	Kiln__ArtifactList al = KILN__ARTIFACT_LIST__INIT;
	al.job_id = j->job_id;
	al.attempt = j->attempt;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_ARTIFACT_LIST;
	req.artifact_list = &al;
	Kiln__Response *resp = NULL;
	int r = agent_call_expect(j->a, &req, 60000, KILN__RESPONSE__BODY_ARTIFACT_LIST, &resp);
	if (r < 0) {
		kiln_err_prefix("cannot list the run's artifacts");
		return r;
	}
	Kiln__ArtifactListReply *lr = resp->artifact_list;
	size_t done = 0;
	bool found = false;
	for (size_t i = 0; i < lr->n_artifacts && r >= 0; i++) {
		const Kiln__Artifact *art = lr->artifacts[i];
		if (*name && strcmp(art->name, name) != 0)
			continue;
		if (!*name && *pattern && kiln_paths_segment_match(pattern, art->name) != 1)
			continue;
		found = true;
		/* one named artifact, or merge-multiple, goes straight into the path */
		_cleanup_free_ char *to = *name || merge ? kiln_strdup(dest)
							 : kiln_asprintf("%s/%s", dest, art->name);
		agent_transfer_stats st = {0};
		int64_t t0 = kiln_mono_ns();
		r = restore(sc, art->manifest, to, false, &st);
		if (r >= 0) {
			_cleanup_free_ char *sz = human(art->size), *moved = human(st.bytes);
			logf_(sc, "Artifact %s downloaded to %s: %llu files, %s (%s fetched, %.2f s)",
			      art->name, to, (unsigned long long)art->files, sz, moved,
			      (double)(kiln_mono_ns() - t0) / 1e9);
			done++;
		}
	}
	kiln__response__free_unpacked(resp, NULL);
	if (r < 0)
		return r;
	if (*name && !found)
		return kiln_err(ENOENT, "Unable to download artifact(s): Artifact not found for "
					"name: %s",
				name);
	if (!done)
		logf_(sc, "No artifacts found%s%s", *pattern ? " matching " : "", pattern);
	set_output(sc, "download-path", dest);
	return 0;
}
