/*
 * gc — one garbage-collection pass over a coordinator's data: cache entries
 * unused for cache_max_idle go, then the least recently used of each
 * repository past cache_quota; artifacts past their retention go; then every
 * blob no remaining manifest names is removed from the store. A pass works
 * on connections of its own (SQLite and the store take concurrent users), so
 * it runs beside a live coordinator — `kiln-coordinator gc`, or the daily
 * pass inside it — without touching the core thread.
 *
 * A blob may be unreferenced for a moment on purpose: an agent uploads the
 * blobs of a cache first and commits the entry that names them after. So an
 * unreferenced blob is only noted (gc_pending) the first time it is seen,
 * and removed by a later pass once it has stayed unreferenced for `grace`.
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cas.h"
#include "common/manifest.h"

typedef struct digest_set {
	char **v;
	size_t n, cap;
	bool sorted;
} digest_set;

static void set_add(digest_set *s, const char *hex)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->v = kiln_realloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = kiln_strdup(hex);
	s->sorted = false;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool set_has(digest_set *s, const char *hex)
{
	if (!s->sorted) {
		if (s->n)
			qsort(s->v, s->n, sizeof *s->v, cmp_str);
		s->sorted = true;
	}
	const char *k = hex;
	return s->n && bsearch(&k, s->v, s->n, sizeof *s->v, cmp_str) != NULL;
}

static void set_free(digest_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static int exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK)
		return 0;
	int r = kiln_err(EIO, "gc: %s", err ? err : sqlite3_errmsg(db));
	sqlite3_free(err);
	return r;
}

static int64_t changes_of(sqlite3 *db, const char *sql, int64_t a)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return kiln_err(EIO, "gc: %s", sqlite3_errmsg(db));
	sqlite3_bind_int64(st, 1, a);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return kiln_err(EIO, "gc: %s", sqlite3_errmsg(db));
	return sqlite3_changes(db);
}

/* Least recently used entries of each repository past the quota. */
static int64_t evict_over_quota(sqlite3 *db, uint64_t quota)
{
	sqlite3_stmt *st = NULL, *del = NULL;
	if (sqlite3_prepare_v2(db, "SELECT id, repo, size FROM caches ORDER BY repo, used_ms DESC",
			       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "DELETE FROM caches WHERE id = ?", -1, &del, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return kiln_err(EIO, "gc: %s", sqlite3_errmsg(db));
	}
	kiln_strv ids = {0};
	char repo[4096] = "";
	uint64_t used = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *r = (const char *)sqlite3_column_text(st, 1);
		if (strcmp(r, repo) != 0) {
			snprintf(repo, sizeof repo, "%s", r);
			used = 0;
		}
		used += (uint64_t)sqlite3_column_int64(st, 2);
		if (used > quota)
			kiln_strv_push(&ids, (const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	for (size_t i = 0; i < ids.n; i++) {
		sqlite3_bind_int64(del, 1, strtoll(ids.v[i], NULL, 10));
		sqlite3_step(del);
		sqlite3_reset(del);
	}
	sqlite3_finalize(del);
	int64_t n = (int64_t)ids.n;
	kiln_strv_free(&ids);
	return n;
}

/* Every manifest still in use, and every blob those manifests name. A manifest that cannot be
   read any more takes its entries with it (they could never be restored). */
static int mark(sqlite3 *db, kiln_cas *cas, digest_set *live, coord_gc_stats *st)
{
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(db,
			       "SELECT DISTINCT manifest FROM caches UNION"
			       " SELECT DISTINCT manifest FROM artifacts",
			       -1, &q, NULL) != SQLITE_OK)
		return kiln_err(EIO, "gc: %s", sqlite3_errmsg(db));
	kiln_strv broken = {0};
	while (sqlite3_step(q) == SQLITE_ROW) {
		const char *m = (const char *)sqlite3_column_text(q, 0);
		kiln_manifest *man = NULL;
		if (kiln_manifest_load(cas, m, &man) < 0) {
			kiln_log(KILN_LOG_WARNING, "gc: manifest %.12s: %s; its entries go", m,
				 kiln_errmsg());
			kiln_strv_push(&broken, m);
			continue;
		}
		set_add(live, m);
		for (size_t i = 0; i < man->n; i++)
			if (man->v[i].type == KILN_ENTRY_FILE)
				set_add(live, man->v[i].digest);
		kiln_manifest_free(man);
	}
	sqlite3_finalize(q);
	for (size_t i = 0; i < broken.n; i++) {
		sqlite3_stmt *d = NULL;
		for (int k = 0; k < 2; k++) {
			sqlite3_prepare_v2(db,
					   k ? "DELETE FROM artifacts WHERE manifest = ?"
					     : "DELETE FROM caches WHERE manifest = ?",
					   -1, &d, NULL);
			sqlite3_bind_text(d, 1, broken.v[i], -1, SQLITE_STATIC);
			sqlite3_step(d);
			st->broken += (uint64_t)sqlite3_changes(db);
			sqlite3_finalize(d);
		}
	}
	kiln_strv_free(&broken);
	return 0;
}

typedef struct sweep {
	digest_set *live;
	kiln_strv unused;
	uint64_t *sizes;
	size_t cap;
} sweep;

static int on_blob(void *ud, const char *hex, uint64_t size, uint64_t stored)
{
	sweep *s = ud;
	(void)size;
	if (set_has(s->live, hex))
		return 0;
	if (s->unused.n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->sizes = kiln_realloc(s->sizes, s->cap * sizeof *s->sizes);
	}
	s->sizes[s->unused.n] = stored;
	kiln_strv_push(&s->unused, hex);
	return 0;
}

int coord_gc(const coord_config *cfg, int64_t now_ms, int64_t grace_ms, coord_gc_stats *st)
{
	memset(st, 0, sizeof *st);
	_cleanup_free_ char *path = kiln_asprintf("%s/kiln.db", cfg->data_dir);
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		int r = kiln_err(EIO, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return r;
	}
	sqlite3_busy_timeout(db, 10000);
	kiln_cas *cas = NULL;
	digest_set live = {0};
	sweep sw = {.live = &live};
	int r = exec(db, "CREATE TABLE IF NOT EXISTS gc_pending(digest TEXT PRIMARY KEY,"
			 " since_ms INTEGER NOT NULL)");
	if (r == 0 && cfg->cache_db) {
		sqlite3_stmt *a = NULL;
		sqlite3_prepare_v2(db, "ATTACH DATABASE ? AS cachedb", -1, &a, NULL);
		sqlite3_bind_text(a, 1, cfg->cache_db, -1, SQLITE_STATIC);
		if (sqlite3_step(a) != SQLITE_DONE)
			r = kiln_err(EIO, "gc: %s", sqlite3_errmsg(db));
		sqlite3_finalize(a);
	}
	int64_t n;
	if (r == 0 && (n = changes_of(db, "DELETE FROM caches WHERE used_ms < ?",
				      now_ms - cfg->cache_max_idle_ms)) >= 0)
		st->caches_idle = (uint64_t)n;
	if (r == 0 && (n = evict_over_quota(db, cfg->cache_quota)) >= 0)
		st->caches_over_quota = (uint64_t)n;
	if (r == 0 && (n = changes_of(db, "DELETE FROM artifacts WHERE expires_ms <= ?", now_ms)) >= 0)
		st->artifacts_expired = (uint64_t)n;
	if (r == 0)
		r = kiln_cas_open(cfg->cas_dir ? cfg->cas_dir : cfg->data_dir, NULL, &cas);
	if (r == 0)
		r = mark(db, cas, &live, st);
	if (r == 0)
		r = kiln_cas_foreach(cas, on_blob, &sw);
	/* remove what was unreferenced long enough; note what is newly so */
	sqlite3_stmt *get = NULL, *put = NULL;
	if (r == 0 &&
	    (sqlite3_prepare_v2(db, "SELECT since_ms FROM gc_pending WHERE digest = ?", -1, &get,
				NULL) != SQLITE_OK ||
	     sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO gc_pending(digest, since_ms) VALUES(?, ?)",
				-1, &put, NULL) != SQLITE_OK))
		r = kiln_err(EIO, "gc: %s", sqlite3_errmsg(db));
	if (r == 0)
		r = exec(db, "BEGIN");
	for (size_t i = 0; r == 0 && i < sw.unused.n; i++) {
		const char *hex = sw.unused.v[i];
		sqlite3_bind_text(get, 1, hex, -1, SQLITE_STATIC);
		bool known = sqlite3_step(get) == SQLITE_ROW;
		int64_t since = known ? sqlite3_column_int64(get, 0) : now_ms;
		sqlite3_reset(get);
		if (since <= now_ms - grace_ms) {
			if (kiln_cas_remove(cas, hex) > 0) {
				st->blobs_removed++;
				st->bytes_removed += sw.sizes[i];
			}
		} else if (!known) {
			sqlite3_bind_text(put, 1, hex, -1, SQLITE_STATIC);
			sqlite3_bind_int64(put, 2, now_ms);
			sqlite3_step(put);
			sqlite3_reset(put);
			st->blobs_pending++;
		} else {
			st->blobs_pending++;
		}
	}
	sqlite3_finalize(get);
	sqlite3_finalize(put);
	/* what is referenced again, or gone, is no longer pending */
	if (r == 0) {
		sqlite3_stmt *all = NULL, *del = NULL;
		kiln_strv drop = {0};
		digest_set unused = {0};
		for (size_t i = 0; i < sw.unused.n; i++)
			set_add(&unused, sw.unused.v[i]);
		sqlite3_prepare_v2(db, "SELECT digest FROM gc_pending", -1, &all, NULL);
		while (sqlite3_step(all) == SQLITE_ROW) {
			const char *d = (const char *)sqlite3_column_text(all, 0);
			if (!set_has(&unused, d) || kiln_cas_has(cas, d) != 1)
				kiln_strv_push(&drop, d);
		}
		sqlite3_finalize(all);
		sqlite3_prepare_v2(db, "DELETE FROM gc_pending WHERE digest = ?", -1, &del, NULL);
		for (size_t i = 0; i < drop.n; i++) {
			sqlite3_bind_text(del, 1, drop.v[i], -1, SQLITE_STATIC);
			sqlite3_step(del);
			sqlite3_reset(del);
		}
		sqlite3_finalize(del);
		kiln_strv_free(&drop);
		set_free(&unused);
		r = exec(db, "COMMIT");
	}
	if (cas)
		kiln_cas_total(cas, &st->bytes_kept, &st->blobs_kept);
	kiln_cas_close(cas);
	set_free(&live);
	kiln_strv_free(&sw.unused);
	free(sw.sizes);
	sqlite3_close(db);
	return r;
}
