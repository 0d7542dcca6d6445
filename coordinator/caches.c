/*
 * caches — actions/cache entries and a run's artifacts, as rows that name a
 * manifest in the blob store (core). A cache entry belongs to a repository
 * and a scope, the ref of the run that saved it: a run reads its own ref's
 * entries, then the default branch's, and writes only its own ref's, so a
 * pull request (ref refs/pull/N/merge) never writes what other runs read.
 * Keys are immutable. A commit is answered only after the blob worker has
 * checked that the manifest and every blob it names are stored.
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEY 512      /* GitHub's limit */
#define MAX_KEYS 11      /* the key and up to 10 restore keys */
#define MAX_NAME 255

/* The run of a job attempt that is current: its id, repository and ref (owned). */
static bool job_run(coord *c, uint64_t job_id, uint32_t attempt, uint64_t *run_id, char **repo,
		    char **ref)
{
	sqlite3_stmt *st = store_q(c,
				   "SELECT r.id, r.repo, r.ref, j.attempt FROM jobs j"
				   " JOIN runs r ON r.id = j.run_id WHERE j.id = ?",
				   "i", (int64_t)job_id);
	bool ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 3) == (int)attempt;
	if (ok) {
		*run_id = (uint64_t)sqlite3_column_int64(st, 0);
		*repo = kiln_strdup(col_text(st, 1));
		*ref = kiln_strdup(col_text(st, 2));
	}
	store_done(st);
	return ok;
}

static bool key_ok(const char *k)
{
	size_t n = strlen(k);
	return n > 0 && n <= MAX_KEY && !strchr(k, ',');
}

/* ---- actions/cache ---- */

/* The newest entry of the scope whose key is `key` (exact) or starts with it. */
static bool find_entry(coord *c, const char *repo, const char *scope, const char *version,
		       const char *key, bool exact, Kiln__CacheLookupReply *out)
{
	sqlite3_stmt *st =
		exact ? store_q(c,
				"SELECT id, key, manifest, size FROM caches WHERE repo = ? AND scope = ?"
				" AND version = ? AND key = ?",
				"tttt", repo, scope, version, key)
		      : store_q(c,
				"SELECT id, key, manifest, size FROM caches WHERE repo = ? AND scope = ?"
				" AND version = ? AND substr(key, 1, length(?4)) = ?4"
				" ORDER BY created_ms DESC, id DESC LIMIT 1",
				"tttt", repo, scope, version, key);
	bool found = sqlite3_step(st) == SQLITE_ROW;
	int64_t id = 0;
	if (found) {
		id = sqlite3_column_int64(st, 0);
		out->found = true;
		out->key = kiln_strdup(col_text(st, 1));
		out->manifest = kiln_strdup(col_text(st, 2));
		out->size = (uint64_t)sqlite3_column_int64(st, 3);
	}
	store_done(st);
	if (found)
		store_x(c, "UPDATE caches SET used_ms = ? WHERE id = ?", "ii", kiln_now_ms(), id);
	return found;
}

static void cache_lookup(coord *c, bus_ctx *ctx, Kiln__CacheLookup *cl)
{
	uint64_t run_id;
	_cleanup_free_ char *repo = NULL, *ref = NULL;
	if (!job_run(c, cl->job_id, cl->attempt, &run_id, &repo, &ref)) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_STALE, "no such job attempt");
		return;
	}
	if (cl->n_keys == 0 || cl->n_keys > MAX_KEYS) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, "a key and at most 10 restore keys");
		return;
	}
	for (size_t i = 0; i < cl->n_keys; i++) {
		if (!key_ok(cl->keys[i])) {
			bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST,
				     "a cache key is 1 to 512 characters, without commas");
			return;
		}
	}
	_cleanup_free_ char *def = kiln_asprintf("refs/heads/%s", c->default_branch);
	const char *scopes[2] = {ref, strcmp(ref, def) != 0 ? def : NULL};
	Kiln__CacheLookupReply lr = KILN__CACHE_LOOKUP_REPLY__INIT;
	/* the run's own scope first, then the default branch's; in each, the keys in order,
	   each matched exactly and then as a prefix (newest first) */
	for (size_t s = 0; s < 2 && !lr.found; s++) {
		if (!scopes[s])
			continue;
		for (size_t i = 0; i < cl->n_keys && !lr.found; i++) {
			if (!find_entry(c, repo, scopes[s], cl->version, cl->keys[i], true, &lr))
				find_entry(c, repo, scopes[s], cl->version, cl->keys[i], false, &lr);
		}
	}
	metrics_cache_lookup(c, lr.found);
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.body_case = KILN__RESPONSE__BODY_CACHE_LOOKUP;
	resp.cache_lookup = &lr;
	bus_reply(ctx, &resp);
	if (lr.found) {
		free(lr.key);
		free(lr.manifest);
	}
}

static void cache_reply(bus_ctx *ctx, bool stored, const char *msg)
{
	Kiln__CacheCommitReply cr = KILN__CACHE_COMMIT_REPLY__INIT;
	cr.stored = stored;
	cr.message = (char *)msg;
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.body_case = KILN__RESPONSE__BODY_CACHE_COMMIT;
	resp.cache_commit = &cr;
	bus_reply(ctx, &resp);
}

static void cache_commit_checked(coord *c, bus_ctx *ctx, Kiln__Request *req, void *arg)
{
	(void)arg;
	Kiln__CacheCommit *cc = req->cache_commit;
	uint64_t run_id;
	_cleanup_free_ char *repo = NULL, *ref = NULL;
	if (!job_run(c, cc->job_id, cc->attempt, &run_id, &repo, &ref)) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_STALE, "no such job attempt");
		return;
	}
	int64_t now = kiln_now_ms();
	store_x(c,
		"INSERT OR IGNORE INTO caches(repo, scope, key, version, manifest, size, created_ms,"
		" used_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
		"tttttiii", repo, ref, cc->key, cc->version, cc->manifest, (int64_t)cc->size, now,
		now);
	bool stored = sqlite3_changes(c->db) > 0;
	if (stored)
		kiln_log(KILN_LOG_INFO, "run %llu job %llu: cache %s saved (%llu bytes)",
			 (unsigned long long)run_id, (unsigned long long)cc->job_id, cc->key,
			 (unsigned long long)cc->size);
	cache_reply(ctx, stored, stored ? "" : "a cache entry with this key exists already");
}

/* Returns true when req was handed on (and is no longer the caller's). */
static bool cache_commit(coord *c, bus_ctx *ctx, Kiln__Request *req)
{
	Kiln__CacheCommit *cc = req->cache_commit;
	uint64_t run_id;
	_cleanup_free_ char *repo = NULL, *ref = NULL;
	if (!job_run(c, cc->job_id, cc->attempt, &run_id, &repo, &ref)) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_STALE, "no such job attempt");
		return false;
	}
	if (!key_ok(cc->key) || !*cc->version) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST,
			     "a cache key is 1 to 512 characters, without commas");
		return false;
	}
	sqlite3_stmt *st = store_q(c,
				   "SELECT 1 FROM caches WHERE repo = ? AND scope = ? AND version = ?"
				   " AND key = ?",
				   "tttt", repo, ref, cc->version, cc->key);
	bool exists = sqlite3_step(st) == SQLITE_ROW;
	store_done(st);
	if (exists) {
		cache_reply(ctx, false, "a cache entry with this key exists already");
		return false;
	}
	blobs_request(c, ctx, req, cache_commit_checked, NULL);
	return true;
}

/* ---- artifacts ---- */

static bool name_ok(const char *n)
{
	size_t len = strlen(n);
	/* what upload-artifact refuses, for the file systems it may be downloaded to */
	return len > 0 && len <= MAX_NAME && !strpbrk(n, "\"':<>|*?\\/\r\n") &&
	       strcmp(n, ".") != 0 && strcmp(n, "..") != 0;
}

static void artifact_reply(bus_ctx *ctx, bool stored, const char *msg)
{
	Kiln__ArtifactCommitReply ar = KILN__ARTIFACT_COMMIT_REPLY__INIT;
	ar.stored = stored;
	ar.message = (char *)msg;
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.body_case = KILN__RESPONSE__BODY_ARTIFACT_COMMIT;
	resp.artifact_commit = &ar;
	bus_reply(ctx, &resp);
}

static bool artifact_exists(coord *c, uint64_t run_id, const char *name)
{
	sqlite3_stmt *st = store_q(c, "SELECT 1 FROM artifacts WHERE run_id = ? AND name = ?", "it",
				   (int64_t)run_id, name);
	bool exists = sqlite3_step(st) == SQLITE_ROW;
	store_done(st);
	return exists;
}

static void artifact_commit_checked(coord *c, bus_ctx *ctx, Kiln__Request *req, void *arg)
{
	(void)arg;
	Kiln__ArtifactCommit *ac = req->artifact_commit;
	uint64_t run_id;
	_cleanup_free_ char *repo = NULL, *ref = NULL;
	if (!job_run(c, ac->job_id, ac->attempt, &run_id, &repo, &ref)) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_STALE, "no such job attempt");
		return;
	}
	if (!ac->overwrite && artifact_exists(c, run_id, ac->name)) {
		artifact_reply(ctx, false, "an artifact with this name exists already in this run");
		return;
	}
	int days = ac->retention_days ? (int)ac->retention_days : c->cfg.artifact_retention_days;
	int64_t now = kiln_now_ms();
	store_x(c,
		"INSERT INTO artifacts(run_id, job_id, name, manifest, size, files, created_ms,"
		" expires_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, name) DO UPDATE"
		" SET job_id = excluded.job_id, manifest = excluded.manifest, size = excluded.size,"
		" files = excluded.files, created_ms = excluded.created_ms,"
		" expires_ms = excluded.expires_ms",
		"iittiiii", (int64_t)run_id, (int64_t)ac->job_id, ac->name, ac->manifest,
		(int64_t)ac->size, (int64_t)ac->files, now, now + (int64_t)days * 24 * 3600 * 1000);
	kiln_log(KILN_LOG_INFO, "run %llu job %llu: artifact %s uploaded (%llu bytes)",
		 (unsigned long long)run_id, (unsigned long long)ac->job_id, ac->name,
		 (unsigned long long)ac->size);
	artifact_reply(ctx, true, "");
}

static bool artifact_commit(coord *c, bus_ctx *ctx, Kiln__Request *req)
{
	Kiln__ArtifactCommit *ac = req->artifact_commit;
	uint64_t run_id;
	_cleanup_free_ char *repo = NULL, *ref = NULL;
	if (!job_run(c, ac->job_id, ac->attempt, &run_id, &repo, &ref)) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_STALE, "no such job attempt");
		return false;
	}
	if (!name_ok(ac->name)) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST,
			     "an artifact name is 1 to 255 characters, none of \" : < > | * ? \\ / "
			     "and no line breaks");
		return false;
	}
	if (ac->retention_days > 3650) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, "retention-days: at most 3650");
		return false;
	}
	if (!ac->overwrite && artifact_exists(c, run_id, ac->name)) {
		artifact_reply(ctx, false, "an artifact with this name exists already in this run");
		return false;
	}
	blobs_request(c, ctx, req, artifact_commit_checked, NULL);
	return true;
}

static void artifact_list(coord *c, bus_ctx *ctx, Kiln__ArtifactList *al)
{
	uint64_t run_id;
	_cleanup_free_ char *repo = NULL, *ref = NULL;
	if (!job_run(c, al->job_id, al->attempt, &run_id, &repo, &ref)) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_STALE, "no such job attempt");
		return;
	}
	sqlite3_stmt *st = store_q(c,
				   "SELECT name, manifest, size, files FROM artifacts WHERE run_id = ?"
				   " AND expires_ms > ? ORDER BY name",
				   "ii", (int64_t)run_id, kiln_now_ms());
	Kiln__Artifact **v = NULL;
	size_t n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		v = kiln_realloc(v, (n + 1) * sizeof *v);
		Kiln__Artifact *a = kiln_malloc(sizeof *a);
		kiln__artifact__init(a);
		a->name = kiln_strdup(col_text(st, 0));
		a->manifest = kiln_strdup(col_text(st, 1));
		a->size = (uint64_t)sqlite3_column_int64(st, 2);
		a->files = (uint64_t)sqlite3_column_int64(st, 3);
		v[n++] = a;
	}
	store_done(st);
	Kiln__ArtifactListReply lr = KILN__ARTIFACT_LIST_REPLY__INIT;
	lr.artifacts = v;
	lr.n_artifacts = n;
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.body_case = KILN__RESPONSE__BODY_ARTIFACT_LIST;
	resp.artifact_list = &lr;
	bus_reply(ctx, &resp);
	for (size_t i = 0; i < n; i++) {
		free(v[i]->name);
		free(v[i]->manifest);
		free(v[i]);
	}
	free(v);
}

bool caches_request(coord *c, bus_ctx *ctx, Kiln__Request *req)
{
	switch (req->body_case) {
	case KILN__REQUEST__BODY_BLOB_FIND_MISSING:
	case KILN__REQUEST__BODY_BLOB_PUT:
	case KILN__REQUEST__BODY_BLOB_GET:
		blobs_request(c, ctx, req, NULL, NULL);
		return true;
	case KILN__REQUEST__BODY_CACHE_LOOKUP:
		cache_lookup(c, ctx, req->cache_lookup);
		return false;
	case KILN__REQUEST__BODY_CACHE_COMMIT:
		return cache_commit(c, ctx, req);
	case KILN__REQUEST__BODY_ARTIFACT_COMMIT:
		return artifact_commit(c, ctx, req);
	case KILN__REQUEST__BODY_ARTIFACT_LIST:
		artifact_list(c, ctx, req->artifact_list);
		return false;
	default:
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, "unknown request");
		return false;
	}
}

/* ---- the API: GET /api/v1/caches?repo=R&key=PREFIX, DELETE /api/v1/caches/ID ---- */

bool caches_serve(api_req *r)
{
	coord *c = r->c;
	if (strcmp(r->path, "/api/v1/caches") == 0 && strcmp(r->method, "GET") == 0) {
		_cleanup_free_ char *repo = api_query(r, "repo"), *key = api_query(r, "key");
		int64_t limit = api_query_int(r, "limit", 100, 1, 1000);
		int64_t offset = api_query_int(r, "offset", 0, 0, INT64_MAX);
		json_t *list = json_array();
		sqlite3_stmt *st = store_q(c,
					   "SELECT id, repo, scope, key, version, size, created_ms,"
					   " used_ms FROM caches WHERE (?1 IS NULL OR repo = ?1)"
					   " AND (?2 IS NULL OR substr(key, 1, length(?2)) = ?2)"
					   " ORDER BY used_ms DESC, id DESC LIMIT ?3 OFFSET ?4",
					   "ttii", repo, key, limit, offset);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(
				list, json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "id",
						(json_int_t)sqlite3_column_int64(st, 0), "repo",
						col_text(st, 1), "scope", col_text(st, 2), "key",
						col_text(st, 3), "version", col_text(st, 4), "size",
						(json_int_t)sqlite3_column_int64(st, 5), "created_ms",
						(json_int_t)sqlite3_column_int64(st, 6), "used_ms",
						(json_int_t)sqlite3_column_int64(st, 7)));
		store_done(st);
		st = store_q(c,
			     "SELECT count(*), coalesce(sum(size), 0) FROM caches WHERE"
			     " (?1 IS NULL OR repo = ?1) AND (?2 IS NULL OR substr(key, 1, length(?2)) = ?2)",
			     "tt", repo, key);
		json_int_t n = 0, bytes = 0;
		if (sqlite3_step(st) == SQLITE_ROW) {
			n = sqlite3_column_int64(st, 0);
			bytes = sqlite3_column_int64(st, 1);
		}
		store_done(st);
		api_json(r->reply, r->arg, 200,
			 json_pack("{s:o, s:I, s:I}", "caches", list, "total", n, "bytes", bytes));
		return true;
	}
	if (strncmp(r->path, "/api/v1/caches/", 15) == 0 && strcmp(r->method, "DELETE") == 0) {
		char *end;
		long long id = strtoll(r->path + 15, &end, 10);
		if (*end || id <= 0) {
			api_error(r->reply, r->arg, 400, "DELETE /api/v1/caches/ID");
			return true;
		}
		store_x(c, "DELETE FROM caches WHERE id = ?", "i", (int64_t)id);
		if (sqlite3_changes(c->db) > 0) {
			kiln_log(KILN_LOG_INFO, "cache entry %lld deleted by %s", id,
				 r->who[0] ? r->who : "local");
			api_json(r->reply, r->arg, 200, json_pack("{s:I}", "deleted", (json_int_t)id));
		} else {
			api_error(r->reply, r->arg, 404, "no cache entry %lld", id);
		}
		return true;
	}
	return false;
}
