/*
 * secrets — values jobs may use but nobody may read back. A secret belongs to
 * an owner (scope org: every repository OWNER/…), a repository (scope repo:
 * OWNER/NAME) or a repository's environment (scope env); names follow
 * GitHub's rules and are kept upper case, so they are unique regardless of
 * case. Values are sealed at rest with AES-256-GCM under the coordinator's
 * key (DATA/secret.key), bound to "secret:SCOPE:REPO[:ENV]:NAME", so a value
 * copied to another row does not open.
 *
 * A job's assignment carries only the secrets its spec names in an
 * expression (`secrets.NAME`, `secrets['NAME']`; an expression that uses the
 * secrets context as a whole gets them all), with an environment's value
 * before the repository's before the owner's, and each value also goes as a
 * mask. Runs of pull requests from forks get none unless their repository
 * allows it.
 *
 * `key rotate` re-seals every sealed value (this module's and the other
 * tables' listed in sealed_columns) under a new key in one transaction. Key
 * files: secret.key.old (a copy of the current key) and secret.key.new are
 * written first; then the transaction; then secret.key.new is renamed over
 * secret.key and secret.key.old removed. A crash at any point leaves the
 * values sealed under a key that is on disk; the next start (or rotation)
 * sees which key the values use and finishes or undoes the rotation.
 */
#include "coordinator/internal.h"
#include "coordinator/auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_SECRET_NAME 128
#define MAX_SECRET_VALUE (48u << 10) /* GitHub's limit */
#define MAX_PER_TARGET 1000
#define MAX_SEGMENT 100

/* Columns holding sealed values, with the SQL expression over a row that gives the context
   each was sealed with. A table or column that does not exist (yet) is skipped. */
typedef struct sealed_column {
	const char *table, *column, *context_sql;
} sealed_column;

static const sealed_column sealed_columns[] = {
    {"secrets", "value",
     "'secret:' || scope || ':' || repo || CASE WHEN scope = 'env' THEN ':' || env ELSE '' END"
     " || ':' || name"},
    /* repositories (repos.c seals them bound to "KIND:OWNER/NAME") */
    {"repos", "token", "'repo-token:' || name"},
    {"repos", "webhook_secret", "'webhook:' || name"},
    {"repos", "notify_secret", "'notify:' || name"},
};

static bool has_column(sqlite3 *db, const char *table, const char *column);

/* has_column for the columns a job's secrets depend on, remembered once present (columns are
   only ever added, when the store opens). */
static bool has_column_cached(sqlite3 *db, int *known, const char *table, const char *column)
{
	if (__atomic_load_n(known, __ATOMIC_RELAXED))
		return true;
	bool yes = has_column(db, table, column);
	if (yes)
		__atomic_store_n(known, 1, __ATOMIC_RELAXED);
	return yes;
}

static bool has_column(sqlite3 *db, const char *table, const char *column)
{
	sqlite3_stmt *st = NULL;
	bool found = false;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?) WHERE name = ?", -1, &st,
	                       NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
		found = sqlite3_step(st) == SQLITE_ROW;
	}
	sqlite3_finalize(st);
	return found;
}

static char *secret_context(const char *scope, const char *repo, const char *env, const char *name)
{
	if (strcmp(scope, "env") == 0)
		return kiln_asprintf("secret:%s:%s:%s:%s", scope, repo, env, name);
	return kiln_asprintf("secret:%s:%s:%s", scope, repo, name);
}

/* ---- keys ---- */

/* How many sealed values (of every known column) name key id `id`. */
static int64_t values_under(sqlite3 *db, const char *id)
{
	int64_t n = 0;
	_cleanup_free_ char *like = kiln_asprintf("v1:%s:%%", id);
	for (size_t i = 0; i < KILN_ARRAY_SIZE(sealed_columns); i++) {
		const sealed_column *sc = &sealed_columns[i];
		if (!has_column(db, sc->table, sc->column))
			continue;
		_cleanup_free_ char *sql = kiln_asprintf(
		    "SELECT count(*) FROM \"%s\" WHERE \"%s\" LIKE ?", sc->table, sc->column);
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
			sqlite3_bind_text(st, 1, like, -1, SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW)
				n += sqlite3_column_int64(st, 0);
		}
		sqlite3_finalize(st);
	}
	return n;
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int secrets_key_load(const char *data_dir, kiln_key *out)
{
	_cleanup_free_ char *path = kiln_asprintf("%s/secret.key", data_dir);
	_cleanup_free_ char *newp = kiln_asprintf("%s/secret.key.new", data_dir);
	_cleanup_free_ char *oldp = kiln_asprintf("%s/secret.key.old", data_dir);
	_cleanup_free_ char *dbp = kiln_asprintf("%s/kiln.db", data_dir);
	bool have_new = access(newp, F_OK) == 0, have_old = access(oldp, F_OK) == 0;
	if (have_new || have_old) {
		/* a rotation did not finish: the values tell how far it got */
		sqlite3 *db = NULL;
		if (access(dbp, F_OK) == 0 &&
		    sqlite3_open_v2(dbp, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
			int r =
			    kiln_err(EIO, "%s: %s", dbp, db ? sqlite3_errmsg(db) : "cannot open");
			sqlite3_close(db);
			return r;
		}
		if (db)
			sqlite3_busy_timeout(db, 5000);
		kiln_key k;
		if (have_new) {
			int r = kiln_key_load(newp, false, &k);
			if (r < 0) {
				sqlite3_close(db);
				return r;
			}
			if (db && values_under(db, k.id) > 0) {
				if (rename(newp, path) < 0) {
					sqlite3_close(db);
					return kiln_err(errno, "%s: %s", path, strerror(errno));
				}
				kiln_log(KILN_LOG_NOTICE, "key rotation to %s completed", k.id);
			} else {
				unlink(newp);
				kiln_log(KILN_LOG_NOTICE, "key rotation to %s undone", k.id);
			}
			sync_dir(data_dir);
			explicit_bzero(&k, sizeof k);
		}
		if (have_old && kiln_key_load(oldp, false, &k) == 0) {
			kiln_key cur;
			bool same =
			    kiln_key_load(path, false, &cur) == 0 && strcmp(cur.id, k.id) == 0;
			if (!same && db && values_under(db, k.id) > 0)
				kiln_log(KILN_LOG_WARNING,
				         "%s still seals values; kept (run key rotate again)",
				         oldp);
			else
				unlink(oldp);
			explicit_bzero(&cur, sizeof cur);
			explicit_bzero(&k, sizeof k);
		}
		sqlite3_close(db);
	}
	return kiln_key_load(path, true, out);
}

/* Takes the key in DATA/secret.key when it is not the one in use: `key rotate` ran beside
   this coordinator (core). */
static void key_refresh(coord *c)
{
	kiln_key k;
	_cleanup_free_ char *path = kiln_asprintf("%s/secret.key", c->data_dir);
	if (kiln_key_load(path, false, &k) == 0 && strcmp(k.id, c->key.id) != 0) {
		kiln_log(KILN_LOG_NOTICE, "secret key rotated to %s; using it", k.id);
		c->key = k;
	}
	explicit_bzero(&k, sizeof k);
}

int coord_seal(coord *c, const char *context, const void *plaintext, size_t len, char **out)
{
	key_refresh(c);
	return kiln_seal(&c->key, context, plaintext, len, out);
}

int coord_unseal(coord *c, const char *context, const char *sealed, char **out, size_t *len)
{
	int r = kiln_unseal(&c->key, context, sealed, out, len);
	if (r != -ENOKEY)
		return r;
	key_refresh(c);
	return kiln_unseal(&c->key, context, sealed, out, len);
}

/* ---- names ---- */

/* A secret name by GitHub's rules, upper-cased into out; false if not one. */
static bool secret_name(const char *s, char out[MAX_SECRET_NAME + 1])
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > MAX_SECRET_NAME || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
		out[i] = (char)toupper((unsigned char)s[i]);
	}
	out[n] = '\0';
	return strncmp(out, "GITHUB_", 7) != 0;
}

static bool segment_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MAX_SEGMENT || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

char *secrets_repo_name(const char *repo)
{
	if (!repo || !*repo)
		return NULL;
	const char *p = strstr(repo, "://");
	p = p ? p + 3 : repo;
	kiln_strv parts = {0};
	/* scp-like git@host:owner/name too */
	kiln_strv_split(&parts, p, "/:");
	char *full = NULL;
	if (parts.n >= 2) {
		char *owner = parts.v[parts.n - 2], *name = parts.v[parts.n - 1];
		size_t nl = strlen(name);
		if (nl > 4 && strcmp(name + nl - 4, ".git") == 0)
			name[nl - 4] = '\0';
		if (segment_ok(owner) && segment_ok(name))
			full = kiln_asprintf("%s/%s", owner, name);
	}
	kiln_strv_free(&parts);
	return full;
}

/* ---- which secrets a job names ---- */

typedef struct refs {
	kiln_strv names; /* upper case */
	bool all;
} refs;

static bool ident_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '-';
}

/* Finds the secrets context in expression text [s, s+n). */
static void scan_expr(refs *rf, const char *s, size_t n)
{
	for (size_t i = 0; i + 7 <= n; i++) {
		if (strncasecmp(s + i, "secrets", 7) != 0)
			continue;
		if (i > 0 && (ident_char(s[i - 1]) || s[i - 1] == '.'))
			continue;
		size_t j = i + 7;
		if (j < n && ident_char(s[j]))
			continue;
		while (j < n && isspace((unsigned char)s[j]))
			j++;
		char name[MAX_SECRET_NAME + 1];
		size_t len = 0;
		if (j < n && s[j] == '.') {
			j++;
			while (j < n && isspace((unsigned char)s[j]))
				j++;
			while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_') &&
			       len < MAX_SECRET_NAME)
				name[len++] = s[j++];
		} else if (j < n && s[j] == '[') {
			j++;
			while (j < n && isspace((unsigned char)s[j]))
				j++;
			if (j < n && s[j] == '\'') {
				j++;
				while (j < n && s[j] != '\'' && len < MAX_SECRET_NAME)
					name[len++] = s[j++];
				if (j >= n || s[j] != '\'')
					len = 0;
			}
			if (!len) {
				rf->all = true; /* secrets[expression]: any of them */
				continue;
			}
		} else {
			rf->all = true; /* toJSON(secrets) and the like */
			continue;
		}
		name[len] = '\0';
		char up[MAX_SECRET_NAME + 1];
		if (len && secret_name(name, up) && !kiln_strv_contains(&rf->names, up))
			kiln_strv_push(&rf->names, up);
		i = j - 1;
	}
}

/* The ${{ }} parts of a string, or all of it for keys that hold bare expressions (if:). */
static void scan_string(refs *rf, const char *s, bool bare)
{
	if (bare) {
		scan_expr(rf, s, strlen(s));
		return;
	}
	for (const char *p = strstr(s, "${{"); p; p = strstr(p, "${{")) {
		const char *e = strstr(p + 3, "}}");
		size_t n = e ? (size_t)(e - (p + 3)) : strlen(p + 3);
		scan_expr(rf, p + 3, n);
		if (!e)
			break;
		p = e + 2;
	}
}

static bool bare_key(const char *key)
{
	size_t n = key ? strlen(key) : 0;
	return key && (strcmp(key, "if") == 0 || (n > 5 && strcmp(key + n - 5, "_expr") == 0));
}

static void scan_json(refs *rf, json_t *v, const char *key)
{
	if (json_is_string(v)) {
		scan_string(rf, json_string_value(v), bare_key(key));
	} else if (json_is_object(v)) {
		const char *k;
		json_t *e;
		json_object_foreach(v, k, e) scan_json(rf, e, k);
	} else if (json_is_array(v)) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) scan_json(rf, e, key);
	}
}

void secrets_scan_refs(json_t *spec, kiln_strv *names, bool *all)
{
	refs rf = {0};
	scan_json(&rf, spec, NULL);
	*names = rf.names;
	*all = rf.all;
}

/* ---- what a job gets ---- */

/* May the run have secrets? Not a pull request from a fork (runs.fork, set by webhooks),
   unless its repository allows forks its secrets (repos.fork_secrets). Without those columns
   no run counts as a fork. */
static bool secrets_allowed(coord *c, uint64_t run_id)
{
	static int k_fork, k_repo_id, k_fork_secrets;
	if (!has_column_cached(c->db, &k_fork, "runs", "fork"))
		return true;
	bool by_id = has_column_cached(c->db, &k_repo_id, "runs", "repo_id") &&
	             has_column_cached(c->db, &k_fork_secrets, "repos", "fork_secrets");
	sqlite3_stmt *st = NULL;
	bool ok = true;
	const char *sql = by_id ? "SELECT fork, coalesce((SELECT fork_secrets FROM repos WHERE"
	                          " repos.id = runs.repo_id), 0) FROM runs WHERE id = ?"
	                        : "SELECT fork, 0 FROM runs WHERE id = ?";
	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, (int64_t)run_id);
		if (sqlite3_step(st) == SQLITE_ROW)
			ok = sqlite3_column_int(st, 0) == 0 || sqlite3_column_int(st, 1) != 0;
	}
	sqlite3_finalize(st);
	return ok;
}

/* OWNER/NAME of a run: runs.repository (a triggered run's), else from the repo it names. */
static char *run_repo_name(coord *c, uint64_t run_id, const char *repo)
{
	char *full = NULL;
	sqlite3_stmt *st = NULL;
	static int k_repository;
	if (has_column_cached(c->db, &k_repository, "runs", "repository") &&
	    sqlite3_prepare_v2(c->db, "SELECT repository FROM runs WHERE id = ?", -1, &st, NULL) ==
	        SQLITE_OK) {
		sqlite3_bind_int64(st, 1, (int64_t)run_id);
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
			full = secrets_repo_name(col_text(st, 0));
	}
	sqlite3_finalize(st);
	return full ? full : secrets_repo_name(repo);
}

/* The environment a job deploys to (gates.c keeps it), or NULL; owned. */
static char *job_environment(coord *c, uint64_t job_id)
{
	static int k_env;
	if (!has_column_cached(c->db, &k_env, "job_gates", "environment"))
		return NULL;
	sqlite3_stmt *st = NULL;
	char *env = NULL;
	if (sqlite3_prepare_v2(c->db, "SELECT environment FROM job_gates WHERE job_id = ?", -1, &st,
	                       NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, (int64_t)job_id);
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
		    *col_text(st, 0))
			env = kiln_strdup(col_text(st, 0));
	}
	sqlite3_finalize(st);
	return env;
}

static int rank(const char *scope)
{
	return strcmp(scope, "env") == 0 ? 3 : strcmp(scope, "repo") == 0 ? 2 : 1;
}

/* Adds the secrets of `names` (all of them when `all`) that apply to repository `full` and
   environment `env` to out: an environment's before the repository's before the owner's. */
static void add_secrets(coord *c, uint64_t job_id, const char *full, const char *env,
                        const kiln_strv *names, bool all, json_t *out)
{
	_cleanup_free_ char *owner = kiln_strdup(full);
	*strchr(owner, '/') = '\0';
	json_t *ranks = json_object();
	sqlite3_stmt *st = store_q(c,
	                           "SELECT scope, repo, env, name, value FROM secrets WHERE"
	                           " (scope = 'org' AND repo = ?) OR (scope = 'repo' AND repo = ?)"
	                           " OR (scope = 'env' AND repo = ? AND env = ?)",
	                           "tttt", owner, full, full, env ? env : "");
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *scope = col_text(st, 0), *name = col_text(st, 3);
		if (!all && !kiln_strv_contains(names, name))
			continue;
		json_t *have = json_object_get(ranks, name);
		if (have && json_integer_value(have) >= rank(scope))
			continue;
		_cleanup_free_ char *ctx =
		    secret_context(scope, col_text(st, 1), col_text(st, 2), name);
		char *value = NULL;
		size_t len = 0;
		if (coord_unseal(c, ctx, col_text(st, 4), &value, &len) < 0) {
			kiln_log(KILN_LOG_ERR, "job %llu: secret %s (%s) cannot be opened: %s",
			         (unsigned long long)job_id, name, scope, kiln_errmsg());
			continue;
		}
		json_object_set_new(ranks, name, json_integer(rank(scope)));
		json_t *v = json_stringn(value, len);
		json_object_set_new(out, name, v ? v : json_string(""));
		explicit_bzero(value, len);
		free(value);
	}
	store_done(st);
	json_decref(ranks);
}

json_t *secrets_for_job(coord *c, uint64_t run_id, uint64_t job_id, const char *repo, json_t *spec,
                        kiln_strv *masks)
{
	json_t *out = json_object();
	sqlite3_stmt *st = store_q(c, "SELECT 1 FROM secrets LIMIT 1", NULL);
	bool any = sqlite3_step(st) == SQLITE_ROW;
	store_done(st);
	if (!any)
		return out; /* the common case on a coordinator without secrets: nothing to look at
		             */
	kiln_strv names;
	bool all;
	secrets_scan_refs(spec, &names, &all);
	/* the runner's own switches, read whenever they are set */
	kiln_strv_push(&names, "ACTIONS_STEP_DEBUG");
	kiln_strv_push(&names, "ACTIONS_RUNNER_DEBUG");
	char *full = run_repo_name(c, run_id, repo);
	if (full && !secrets_allowed(c, run_id)) {
		kiln_log(KILN_LOG_INFO,
		         "run %llu job %llu: a pull request from a fork gets no secrets",
		         (unsigned long long)run_id, (unsigned long long)job_id);
	} else if (full) {
		char *env = job_environment(c, job_id);
		add_secrets(c, job_id, full, env, &names, all, out);
		free(env);
	}
	free(full);
	kiln_strv_free(&names);
	const char *k;
	json_t *v;
	json_object_foreach(out, k, v) kiln_strv_push(masks, json_string_value(v));
	return out;
}

/* ---- the API: /api/v1/secrets/{orgs/OWNER | repos/OWNER/NAME[/environments/ENV]}/NAME ---- */

typedef struct target {
	const char *scope;
	char *repo, *env;
} target;

static void target_free(target *t)
{
	free(t->repo);
	free(t->env);
}

/* Parses the segments after /api/v1/secrets into a target and (maybe) a name; the number of
   segments used by the target, or -1. */
static int parse_target(kiln_strv *seg, target *t)
{
	memset(t, 0, sizeof *t);
	if (seg->n >= 2 && strcmp(seg->v[0], "orgs") == 0 && segment_ok(seg->v[1])) {
		t->scope = "org";
		t->repo = kiln_strdup(seg->v[1]);
		t->env = kiln_strdup("");
		return 2;
	}
	if (seg->n >= 3 && strcmp(seg->v[0], "repos") == 0 && segment_ok(seg->v[1]) &&
	    segment_ok(seg->v[2])) {
		t->repo = kiln_asprintf("%s/%s", seg->v[1], seg->v[2]);
		if (seg->n >= 5 && strcmp(seg->v[3], "environments") == 0 &&
		    segment_ok(seg->v[4])) {
			t->scope = "env";
			t->env = kiln_strdup(seg->v[4]);
			return 5;
		}
		t->scope = "repo";
		t->env = kiln_strdup("");
		return 3;
	}
	return -1;
}

static json_t *secret_row(sqlite3_stmt *st)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I}", "scope", col_text(st, 0), "repository",
	                      col_text(st, 1), "name", col_text(st, 3), "created_ms",
	                      (json_int_t)sqlite3_column_int64(st, 4), "updated_ms",
	                      (json_int_t)sqlite3_column_int64(st, 5));
	if (*col_text(st, 2))
		json_object_set_new(o, "environment", json_string(col_text(st, 2)));
	return o;
}

static void list_secrets(api_req *r, const target *t)
{
	json_t *a = json_array();
	sqlite3_stmt *st =
	    store_q(r->c,
	            "SELECT scope, repo, env, name, created_ms, updated_ms FROM secrets"
	            " WHERE ? IS NULL OR (scope = ? AND repo = ? AND env = ?)"
	            " ORDER BY scope, repo, env, name",
	            "tttt", t ? t->scope : NULL, t ? t->scope : NULL, t ? t->repo : NULL,
	            t ? t->env : NULL);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(a, secret_row(st));
	store_done(st);
	api_json(r->reply, r->arg, 200, json_pack("{s:o}", "secrets", a));
}

static void put_secret(api_req *r, const target *t, const char *name)
{
	coord *c = r->c;
	json_t *body = api_body_object(r);
	if (!body)
		return;
	const char *value = json_string_value(json_object_get(body, "value"));
	size_t len = json_string_length(json_object_get(body, "value"));
	if (!value || !len || len > MAX_SECRET_VALUE || memchr(value, 0, len)) {
		json_decref(body);
		api_error(r->reply, r->arg, 400,
		          "value: a non-empty string of at most %u bytes is required",
		          MAX_SECRET_VALUE);
		return;
	}
	sqlite3_stmt *st =
	    store_q(c,
	            "SELECT (SELECT count(*) FROM secrets WHERE scope = ? AND repo = ?"
	            " AND env = ?), (SELECT created_ms FROM secrets WHERE scope = ? AND"
	            " repo = ? AND env = ? AND name = ?)",
	            "ttttttt", t->scope, t->repo, t->env, t->scope, t->repo, t->env, name);
	int64_t count = 0, created = 0;
	bool exists = false;
	if (sqlite3_step(st) == SQLITE_ROW) {
		count = sqlite3_column_int64(st, 0);
		exists = sqlite3_column_type(st, 1) != SQLITE_NULL;
		created = sqlite3_column_int64(st, 1);
	}
	store_done(st);
	if (!exists && count >= MAX_PER_TARGET) {
		json_decref(body);
		api_error(r->reply, r->arg, 409, "%s %s has %d secrets already", t->scope, t->repo,
		          MAX_PER_TARGET);
		return;
	}
	_cleanup_free_ char *ctx = secret_context(t->scope, t->repo, t->env, name);
	char *sealed = NULL;
	int e = coord_seal(c, ctx, value, len, &sealed);
	json_decref(body); /* the plaintext goes with it */
	if (e < 0) {
		api_error(r->reply, r->arg, 500, "cannot seal the value: %s", kiln_errmsg());
		return;
	}
	int64_t now = kiln_now_ms();
	int rc =
	    store_x(c,
	            "INSERT INTO secrets(scope, repo, env, name, value, created_ms, updated_ms)"
	            " VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(scope, repo, env, name) DO UPDATE"
	            " SET value = excluded.value, updated_ms = excluded.updated_ms",
	            "tttttii", t->scope, t->repo, t->env, name, sealed, now, now);
	free(sealed);
	if (rc != SQLITE_DONE) {
		api_error(r->reply, r->arg, 500, "cannot store the secret");
		return;
	}
	kiln_log(KILN_LOG_NOTICE, "secret %s %s for %s %s%s%s", name, exists ? "updated" : "set",
	         t->scope, t->repo, *t->env ? " environment " : "", t->env);
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I}", "scope", t->scope, "repository", t->repo,
	                      "name", name, "created_ms", (json_int_t)(exists ? created : now),
	                      "updated_ms", (json_int_t)now);
	if (*t->env)
		json_object_set_new(o, "environment", json_string(t->env));
	api_json(r->reply, r->arg, exists ? 200 : 201, o);
}

bool secrets_serve(api_req *r)
{
	const char *p = r->path;
	if (strncmp(p, "/api/v1/secrets", 15) != 0 || (p[15] && p[15] != '/'))
		return false;
	kiln_strv seg = {0};
	kiln_strv_split(&seg, p + 15, "/");
	bool get = strcmp(r->method, "GET") == 0, put = strcmp(r->method, "PUT") == 0,
	     del = strcmp(r->method, "DELETE") == 0;
	target t;
	int used = seg.n ? parse_target(&seg, &t) : 0;
	char name[MAX_SECRET_NAME + 1];
	if (seg.n == 0 && get) {
		list_secrets(r, NULL);
	} else if (used < 0 || seg.n == 0) {
		api_error(r->reply, r->arg, 404,
		          "no route for %s %s: secrets/orgs/OWNER[/NAME] or"
		          " secrets/repos/OWNER/REPO[/environments/ENV][/NAME]",
		          r->method, p);
	} else if ((size_t)used == seg.n && get) {
		list_secrets(r, &t);
	} else if ((size_t)used + 1 != seg.n || (!put && !del)) {
		api_error(r->reply, r->arg, (size_t)used + 1 == seg.n ? 405 : 404,
		          "no route for %s %s", r->method, p);
	} else if (!secret_name(seg.v[used], name)) {
		api_error(r->reply, r->arg, 400,
		          "bad secret name '%.140s': letters, digits and _, not starting with a"
		          " digit or GITHUB_",
		          seg.v[used]);
	} else if (put) {
		put_secret(r, &t, name);
	} else {
		store_x(r->c,
		        "DELETE FROM secrets WHERE scope = ? AND repo = ? AND env = ? AND name = ?",
		        "tttt", t.scope, t.repo, t.env, name);
		if (sqlite3_changes(r->c->db) == 0) {
			api_error(r->reply, r->arg, 404, "no secret %s for %s %s", name, t.scope,
			          t.repo);
		} else {
			kiln_log(KILN_LOG_NOTICE, "secret %s deleted for %s %s", name, t.scope,
			         t.repo);
			api_json(r->reply, r->arg, 200,
			         json_pack("{s:s, s:b}", "name", name, "deleted", 1));
		}
	}
	if (used > 0)
		target_free(&t);
	kiln_strv_free(&seg);
	return true;
}

/* ---- key rotate ---- */

static int exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK)
		return 0;
	int r = kiln_err(EIO, "%s", err ? err : sqlite3_errmsg(db));
	sqlite3_free(err);
	return r;
}

/* Re-seals one column's values from `from` to `to`; returns how many or <0. */
static int64_t reseal_column(sqlite3 *db, const sealed_column *sc, const kiln_key *from,
                             const kiln_key *to)
{
	_cleanup_free_ char *sel = kiln_asprintf(
	    "SELECT rowid, %s, \"%s\" FROM \"%s\" WHERE \"%s\" IS NOT NULL AND \"%s\" != ''",
	    sc->context_sql, sc->column, sc->table, sc->column, sc->column);
	_cleanup_free_ char *upd =
	    kiln_asprintf("UPDATE \"%s\" SET \"%s\" = ? WHERE rowid = ?", sc->table, sc->column);
	sqlite3_stmt *st = NULL, *up = NULL;
	if (sqlite3_prepare_v2(db, sel, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, upd, -1, &up, NULL) != SQLITE_OK) {
		int r = kiln_err(EIO, "%s.%s: %s", sc->table, sc->column, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return r;
	}
	int64_t n = 0;
	int r = 0, rc;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t rowid = sqlite3_column_int64(st, 0);
		const char *ctx = col_text(st, 1), *sealed = col_text(st, 2);
		char id[17];
		if (kiln_sealed_key_id(sealed, id) && strcmp(id, to->id) == 0)
			continue; /* already under the new key */
		char *plain = NULL, *again = NULL;
		size_t len = 0;
		if ((r = kiln_unseal(from, ctx, sealed, &plain, &len)) < 0) {
			kiln_err_prefix("%s.%s row %lld", sc->table, sc->column, (long long)rowid);
			break;
		}
		r = kiln_seal(to, ctx, plain, len, &again);
		explicit_bzero(plain, len);
		free(plain);
		if (r < 0)
			break;
		sqlite3_reset(up);
		sqlite3_bind_text(up, 1, again, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(up, 2, rowid);
		if (sqlite3_step(up) != SQLITE_DONE)
			r = kiln_err(EIO, "%s.%s: %s", sc->table, sc->column, sqlite3_errmsg(db));
		free(again);
		n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = kiln_err(EIO, "%s.%s: %s", sc->table, sc->column, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_finalize(up);
	return r < 0 ? r : n;
}

int coord_key_rotate(const coord_config *cfg, FILE *out)
{
	const char *dir = cfg->data_dir;
	int r = kiln_mkdir_p(dir, 0750);
	if (r < 0)
		return r;
	kiln_key old, nk;
	if ((r = secrets_key_load(dir, &old)) < 0)
		return r;
	_cleanup_free_ char *path = kiln_asprintf("%s/secret.key", dir);
	_cleanup_free_ char *newp = kiln_asprintf("%s/secret.key.new", dir);
	_cleanup_free_ char *oldp = kiln_asprintf("%s/secret.key.old", dir);
	_cleanup_free_ char *dbp = kiln_asprintf("%s/kiln.db", dir);
	/* 1. both keys on disk before any value changes */
	if ((r = kiln_key_new(&nk)) < 0 || (r = kiln_key_save(oldp, &old)) < 0 ||
	    (r = kiln_key_save(newp, &nk)) < 0)
		goto out;
	sync_dir(dir);
	/* 2. every value re-sealed, in one transaction */
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(dbp, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		r = kiln_err(EIO, "%s: %s", dbp, db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		unlink(newp);
		goto out;
	}
	sqlite3_busy_timeout(db, 10000);
	int64_t total = 0;
	r = exec(db, "BEGIN IMMEDIATE");
	for (size_t i = 0; r == 0 && i < KILN_ARRAY_SIZE(sealed_columns); i++) {
		if (!has_column(db, sealed_columns[i].table, sealed_columns[i].column))
			continue;
		int64_t n = reseal_column(db, &sealed_columns[i], &old, &nk);
		if (n < 0)
			r = (int)n;
		else
			total += n;
	}
	if (r == 0)
		r = exec(db, "COMMIT");
	if (r < 0) {
		exec(db, "ROLLBACK");
		sqlite3_close(db);
		unlink(newp);
		unlink(oldp);
		kiln_err_prefix("key rotate (nothing changed)");
		goto out;
	}
	sqlite3_close(db);
	/* 3. the new key takes the old one's place; then the old copy goes */
	if (rename(newp, path) < 0) {
		r = kiln_err(errno, "%s: %s (the next start finishes the rotation)", path,
		             strerror(errno));
		goto out;
	}
	sync_dir(dir);
	/* a value a running coordinator sealed under the old key meanwhile: once more */
	if (sqlite3_open_v2(dbp, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(db, 10000);
		if (values_under(db, old.id) > 0 && exec(db, "BEGIN IMMEDIATE") == 0) {
			for (size_t i = 0; r == 0 && i < KILN_ARRAY_SIZE(sealed_columns); i++) {
				if (!has_column(db, sealed_columns[i].table,
				                sealed_columns[i].column))
					continue;
				int64_t n = reseal_column(db, &sealed_columns[i], &old, &nk);
				if (n < 0)
					r = (int)n;
				else
					total += n;
			}
			if (r == 0)
				r = exec(db, "COMMIT");
			if (r < 0)
				exec(db, "ROLLBACK");
		}
		bool keep = r < 0 || values_under(db, old.id) > 0;
		sqlite3_close(db);
		if (keep) {
			r = kiln_err(EAGAIN, "%s is still needed: run key rotate again", oldp);
			goto out;
		}
	}
	unlink(oldp);
	sync_dir(dir);
	fprintf(out, "rotated: %lld sealed values now under key %s (was %s)\n", (long long)total,
	        nk.id, old.id);
	fprintf(out,
	        "restart the coordinator or let it notice (it reloads the key on first use)\n");
out:
	explicit_bzero(&old, sizeof old);
	explicit_bzero(&nk, sizeof nk);
	return r;
}
