/*
 * repos — the repositories the coordinator serves: add, list, remove over
 * /api/v1/repos, and what the other modules read of them. Tokens and secrets
 * are sealed (common/crypto.h) under the coordinator's key, each bound to
 * its column and the repository's name, and no answer ever carries one: the
 * API only says whether each is set.
 *
 *   POST   /api/v1/repos         {name, url, forge, webhook_secret, default_branch?, api_url?,
 *                                 token?, fork_secrets?, notify_url?, notify_secret?} -> 201
 *   GET    /api/v1/repos         -> {repos: [...]}
 *   DELETE /api/v1/repos/NAME    (NAME percent-encoded, or with its slashes) -> 200
 *
 * Also here: the store migration that gives `runs` the columns of triggered
 * runs (schema 4), run on every open and guarded by PRAGMA table_info.
 */
#include "coordinator/internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>

#define MAX_NAME 255
#define MAX_URL 4096
#define MAX_SECRET 4096

/* ---- migration ------------------------------------------------------------------------ */

/* Columns added to runs by schema 4 (older databases get them with ALTER TABLE). */
static const struct {
	const char *name, *decl;
} run_columns[] = {
	{"repo_id", "INTEGER"},		/* repos.id of a triggered run */
	{"repository", "TEXT"},		/* OWNER/NAME */
	{"payload", "TEXT"},		/* the event payload: github.event */
	{"fork", "INTEGER NOT NULL DEFAULT 0"}, /* a pull request from a fork */
	{"pr_number", "INTEGER"},
	{"head_message", "TEXT"},	/* the head commit's message */
	{"actor", "TEXT"},
	{"inputs", "TEXT"},		/* workflow_dispatch: the inputs context */
	{"delivery_id", "INTEGER"},	/* deliveries.id it came from */
	{"wr_state", "INTEGER NOT NULL DEFAULT 2"}, /* workflow_run events sent: 0 none,
						       1 requested, 2 all (or not wanted) */
	{"depth", "INTEGER NOT NULL DEFAULT 0"},    /* workflow_run chain level */
};

static bool has_column(sqlite3 *db, const char *table, const char *col)
{
	_cleanup_free_ char *sql = kiln_asprintf("PRAGMA table_info(%s)", table);
	sqlite3_stmt *st = NULL;
	bool found = false;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK)
		while (!found && sqlite3_step(st) == SQLITE_ROW)
			found = strcmp((const char *)sqlite3_column_text(st, 1), col) == 0;
	sqlite3_finalize(st);
	return found;
}

int repos_migrate(coord *c)
{
	char *err = NULL;
	int r = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, &err);
	for (size_t i = 0; r == SQLITE_OK && i < KILN_ARRAY_SIZE(run_columns); i++) {
		if (has_column(c->db, "runs", run_columns[i].name))
			continue;
		_cleanup_free_ char *sql = kiln_asprintf("ALTER TABLE runs ADD COLUMN %s %s",
							 run_columns[i].name, run_columns[i].decl);
		r = sqlite3_exec(c->db, sql, NULL, NULL, &err);
	}
	if (r == SQLITE_OK)
		r = sqlite3_exec(c->db,
				 "CREATE INDEX IF NOT EXISTS runs_wr_state ON runs(wr_state);"
				 "UPDATE meta SET value = '4' WHERE key = 'schema'"
				 " AND CAST(value AS INTEGER) < 4;"
				 "COMMIT",
				 NULL, NULL, &err);
	if (r != SQLITE_OK) {
		int e = kiln_err(EIO, "migrating the store to schema 4: %s",
				 err ? err : sqlite3_errmsg(c->db));
		sqlite3_free(err);
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		return e;
	}
	return 0;
}

/* ---- what other modules read ---------------------------------------------------------- */

void repo_clear(coord_repo *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->url);
	free(r->forge);
	free(r->api_url);
	free(r->default_branch);
	free(r->notify_url);
	memset(r, 0, sizeof *r);
}

#define REPO_COLS "id, name, url, forge, api_url, default_branch, fork_secrets, notify_url"

static void repo_from_row(sqlite3_stmt *st, coord_repo *out)
{
	out->id = sqlite3_column_int64(st, 0);
	out->name = kiln_strdup(col_text(st, 1));
	out->url = kiln_strdup(col_text(st, 2));
	out->forge = kiln_strdup(col_text(st, 3));
	out->api_url = kiln_strdup(col_text(st, 4));
	out->default_branch = kiln_strdup(col_text(st, 5));
	out->fork_secrets = sqlite3_column_int(st, 6) != 0;
	out->notify_url = sqlite3_column_type(st, 7) == SQLITE_NULL ? NULL
								    : kiln_strdup(col_text(st, 7));
}

int repo_load(coord *c, const char *name, int64_t id, coord_repo *out)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st = name ? store_q(c, "SELECT " REPO_COLS " FROM repos WHERE name = ?", "t",
					  name)
				: store_q(c, "SELECT " REPO_COLS " FROM repos WHERE id = ?", "i", id);
	bool found = sqlite3_step(st) == SQLITE_ROW;
	if (found)
		repo_from_row(st, out);
	store_done(st);
	if (!found)
		return name ? kiln_err(ENOENT, "no repository '%.255s'", name)
			    : kiln_err(ENOENT, "no repository %lld", (long long)id);
	return 0;
}

static const char *secret_context_prefix(const char *what)
{
	if (strcmp(what, "token") == 0)
		return "repo-token";
	if (strcmp(what, "webhook_secret") == 0)
		return "webhook";
	if (strcmp(what, "notify_secret") == 0)
		return "notify";
	return NULL;
}

char *repo_secret(coord *c, const coord_repo *r, const char *what)
{
	const char *prefix = secret_context_prefix(what);
	if (!prefix)
		return NULL;
	sqlite3_stmt *st;
	if (strcmp(what, "token") == 0)
		st = store_q(c, "SELECT token FROM repos WHERE id = ?", "i", r->id);
	else if (strcmp(what, "webhook_secret") == 0)
		st = store_q(c, "SELECT webhook_secret FROM repos WHERE id = ?", "i", r->id);
	else
		st = store_q(c, "SELECT notify_secret FROM repos WHERE id = ?", "i", r->id);
	_cleanup_free_ char *sealed = NULL;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		sealed = kiln_strdup(col_text(st, 0));
	store_done(st);
	if (!sealed || !*sealed)
		return NULL;
	_cleanup_free_ char *ctx = kiln_asprintf("%s:%s", prefix, r->name);
	char *plain = NULL;
	size_t len = 0;
	if (kiln_unseal(&c->key, ctx, sealed, &plain, &len) < 0) {
		kiln_log(KILN_LOG_ERR, "repository %s: cannot open its %s: %s", r->name, what,
			 kiln_errmsg());
		return NULL;
	}
	return plain;
}

/* ---- validation ------------------------------------------------------------------------- */

bool repo_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n < 3 || n > MAX_NAME || name[0] == '/' || name[n - 1] == '/' || !strchr(name, '/'))
		return false;
	for (const char *p = name; *p; p++) {
		if (!isalnum((unsigned char)*p) && !strchr("-_./", *p))
			return false;
		if (*p == '/' && (p[1] == '/' || p[1] == '.'))
			return false; /* no empty segment, none starting with a dot (.., .git) */
	}
	return name[0] != '.';
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* The forge API base a repository gets when none is given; owned, or NULL. */
static char *default_api_url(const char *forge, const char *url)
{
	if (strcmp(forge, "github") == 0)
		return kiln_strdup("https://api.github.com");
	if (strcmp(forge, "gitlab") == 0)
		return kiln_strdup("https://gitlab.com/api/v4");
	/* gitea: the clone URL's scheme and host */
	nng_url *u = NULL;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return NULL;
	if (nng_url_parse(&u, url) != 0)
		return NULL;
	char *out = strcmp(u->u_port, strcmp(u->u_scheme, "https") == 0 ? "443" : "80") == 0
			    ? kiln_asprintf("%s://%s/api/v1", u->u_scheme, u->u_hostname)
			    : kiln_asprintf("%s://%s:%s/api/v1", u->u_scheme, u->u_hostname,
					    u->u_port);
	nng_url_free(u);
	return out;
}

/* A string member: NULL when absent; *bad set (after replying 400) when present but not a
   string within [1, max] printable bytes. */
static const char *member(api_req *r, json_t *body, const char *key, size_t max, bool *bad)
{
	json_t *v = json_object_get(body, key);
	if (!v || json_is_null(v) || *bad)
		return NULL;
	const char *s = json_string_value(v);
	if (!s || !*s || strlen(s) > max || !printable(s)) {
		api_error(r->reply, r->arg, 400, "%s: expected a non-empty string of at most %zu "
						  "printable bytes", key, max);
		*bad = true;
		return NULL;
	}
	return s;
}

static char *seal(coord *c, const char *prefix, const char *name, const char *value)
{
	if (!value)
		return NULL;
	_cleanup_free_ char *ctx = kiln_asprintf("%s:%s", prefix, name);
	char *out = NULL;
	if (kiln_seal(&c->key, ctx, value, strlen(value), &out) < 0)
		return NULL;
	return out;
}

static json_t *repo_row_json(sqlite3_stmt *st)
{
	json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:I}", "id",
			      (json_int_t)sqlite3_column_int64(st, 0), "name", col_text(st, 1),
			      "url", col_text(st, 2), "forge", col_text(st, 3), "api_url",
			      col_text(st, 4), "default_branch", col_text(st, 5), "fork_secrets",
			      sqlite3_column_int(st, 6) != 0, "token_set",
			      sqlite3_column_int(st, 8) != 0, "webhook_secret_set",
			      sqlite3_column_int(st, 9) != 0, "notify_secret_set",
			      sqlite3_column_int(st, 10) != 0, "created_ms",
			      (json_int_t)sqlite3_column_int64(st, 11));
	if (sqlite3_column_type(st, 7) != SQLITE_NULL)
		json_object_set_new(o, "notify_url", json_string(col_text(st, 7)));
	return o;
}

#define LIST_COLS                                                                                  \
	REPO_COLS ", token IS NOT NULL, webhook_secret IS NOT NULL, notify_secret IS NOT NULL,"    \
		  " created_ms"

/* The schedules and workflow_run listeners read from the default branch. */
static json_t *repo_triggers_json(coord *c, int64_t id)
{
	json_t *a = json_array();
	sqlite3_stmt *st = store_q(c,
				   "SELECT workflow, kind, value FROM repo_triggers WHERE repo_id = ?"
				   " ORDER BY workflow, kind, value",
				   "i", id);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "workflow", col_text(st, 0),
						   "kind", col_text(st, 1), "value",
						   col_text(st, 2)));
	store_done(st);
	return a;
}

static void post_repo(api_req *r)
{
	coord *c = r->c;
	json_t *body = api_body_object(r);
	if (!body)
		return;
	static const char *const known[] = {"name",	   "url",	    "forge",
					    "webhook_secret", "default_branch", "api_url",
					    "token",	   "fork_secrets",  "notify_url",
					    "notify_secret"};
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v)
	{
		bool ok = false;
		for (size_t i = 0; i < KILN_ARRAY_SIZE(known) && !ok; i++)
			ok = strcmp(key, known[i]) == 0;
		if (!ok) {
			api_error(r->reply, r->arg, 400, "unknown field '%.80s'", key);
			json_decref(body);
			return;
		}
	}
	bool bad = false;
	const char *name = member(r, body, "name", MAX_NAME, &bad);
	const char *url = member(r, body, "url", MAX_URL, &bad);
	const char *forge = member(r, body, "forge", 16, &bad);
	const char *secret = member(r, body, "webhook_secret", MAX_SECRET, &bad);
	const char *branch = member(r, body, "default_branch", 255, &bad);
	const char *api_url = member(r, body, "api_url", MAX_URL, &bad);
	const char *token = member(r, body, "token", MAX_SECRET, &bad);
	const char *notify_url = member(r, body, "notify_url", MAX_URL, &bad);
	const char *notify_secret = member(r, body, "notify_secret", MAX_SECRET, &bad);
	json_t *fs = json_object_get(body, "fork_secrets");
	if (bad) {
		json_decref(body);
		return;
	}
	const char *problem = NULL;
	if (!name || !repo_name_valid(name))
		problem = "name: expected OWNER/NAME (letters, digits, '-', '_', '.', groups "
			  "separated by '/')";
	else if (!url)
		problem = "url (the clone URL) is required";
	else if (!forge || (strcmp(forge, "github") != 0 && strcmp(forge, "gitea") != 0 &&
			    strcmp(forge, "gitlab") != 0))
		problem = "forge: expected github, gitea or gitlab";
	else if (!secret)
		problem = "webhook_secret is required";
	else if (branch && (strchr(branch, ' ') || strncmp(branch, "refs/", 5) == 0))
		problem = "default_branch: expected a branch name";
	else if (fs && !json_is_boolean(fs))
		problem = "fork_secrets: expected true or false";
	else if (notify_secret && !notify_url)
		problem = "notify_secret needs notify_url";
	else if ((api_url && strncmp(api_url, "http://", 7) != 0 &&
		  strncmp(api_url, "https://", 8) != 0) ||
		 (notify_url && strncmp(notify_url, "http://", 7) != 0 &&
		  strncmp(notify_url, "https://", 8) != 0))
		problem = "api_url and notify_url must be http:// or https:// URLs";
	if (problem) {
		api_error(r->reply, r->arg, 400, "%s", problem);
		json_decref(body);
		return;
	}
	_cleanup_free_ char *api = api_url ? kiln_strdup(api_url) : default_api_url(forge, url);
	if (!api) {
		api_error(r->reply, r->arg, 400,
			  "api_url is required: it cannot be derived from the clone URL '%.200s'",
			  url);
		json_decref(body);
		return;
	}
	coord_repo existing;
	if (repo_load(c, name, 0, &existing) == 0) {
		repo_clear(&existing);
		api_error(r->reply, r->arg, 409, "repository '%s' already exists", name);
		json_decref(body);
		return;
	}
	_cleanup_free_ char *s_token = seal(c, "repo-token", name, token);
	_cleanup_free_ char *s_secret = seal(c, "webhook", name, secret);
	_cleanup_free_ char *s_notify = seal(c, "notify", name, notify_secret);
	if (!s_secret || (token && !s_token) || (notify_secret && !s_notify)) {
		api_error(r->reply, r->arg, 500, "cannot seal the repository's secrets");
		json_decref(body);
		return;
	}
	int64_t now = kiln_now_ms();
	int rc = store_x(c,
			 "INSERT INTO repos(name, url, forge, api_url, token, webhook_secret,"
			 " default_branch, fork_secrets, notify_url, notify_secret, created_ms)"
			 " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			 "tttttttitti", name, url, forge, api, s_token, s_secret,
			 branch ? branch : "main", (int64_t)json_is_true(fs), notify_url, s_notify,
			 now);
	if (rc != SQLITE_DONE) {
		json_decref(body);
		api_error(r->reply, r->arg, 500, "cannot store the repository");
		return;
	}
	int64_t id = sqlite3_last_insert_rowid(c->db);
	kiln_log(KILN_LOG_INFO, "repository %s added (%s)", name, forge);
	json_decref(body);
	triggers_refresh(c, id);
	sqlite3_stmt *st = store_q(c, "SELECT " LIST_COLS " FROM repos WHERE id = ?", "i", id);
	json_t *out = sqlite3_step(st) == SQLITE_ROW ? repo_row_json(st) : json_object();
	store_done(st);
	api_json(r->reply, r->arg, 201, out);
}

static void get_repos(api_req *r)
{
	json_t *a = json_array();
	sqlite3_stmt *st = store_q(r->c, "SELECT " LIST_COLS " FROM repos ORDER BY name", NULL);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(a, repo_row_json(st));
	store_done(st);
	size_t i;
	json_t *o;
	json_array_foreach(a, i, o)
	{
		json_object_set_new(
			o, "triggers",
			repo_triggers_json(r->c, json_integer_value(json_object_get(o, "id"))));
	}
	api_json(r->reply, r->arg, 200, json_pack("{s:o}", "repos", a));
}

char *repo_path_name(const char *s, size_t n)
{
	if (n > 3 * MAX_NAME)
		return NULL;
	kiln_buf b = {0};
	kiln_buf_append(&b, "", 0);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n + 1 && isxdigit((unsigned char)s[i + 1]) &&
		    isxdigit((unsigned char)s[i + 2])) {
			char hex[3] = {s[i + 1], s[i + 2], 0};
			char ch = (char)strtol(hex, NULL, 16);
			kiln_buf_append(&b, &ch, 1);
			i += 2;
		} else {
			kiln_buf_append(&b, &s[i], 1);
		}
	}
	char *name = kiln_buf_steal(&b);
	if (!repo_name_valid(name)) {
		free(name);
		return NULL;
	}
	return name;
}

static void delete_repo(api_req *r, const char *enc)
{
	coord *c = r->c;
	_cleanup_free_ char *name = repo_path_name(enc, strlen(enc));
	if (!name) {
		api_error(r->reply, r->arg, 400, "not a repository name: '%.200s'", enc);
		return;
	}
	coord_repo repo;
	if (repo_load(c, name, 0, &repo) < 0) {
		api_error(r->reply, r->arg, 404, "no repository '%s'", name);
		return;
	}
	store_begin(c);
	store_x(c, "DELETE FROM repo_triggers WHERE repo_id = ?", "i", repo.id);
	store_x(c, "UPDATE deliveries SET state = 'dropped', message = 'repository removed',"
		   " payload = NULL WHERE repo_id = ? AND state = 'pending'",
		"i", repo.id);
	store_x(c, "DELETE FROM repos WHERE id = ?", "i", repo.id);
	store_commit(c);
	kiln_log(KILN_LOG_INFO, "repository %s removed", name);
	api_json(r->reply, r->arg, 200, json_pack("{s:s}", "deleted", name));
	repo_clear(&repo);
}

bool repos_serve(api_req *r)
{
	const char *p = r->path;
	if (strcmp(p, "/api/v1/repos") == 0) {
		if (strcmp(r->method, "POST") == 0)
			post_repo(r);
		else if (strcmp(r->method, "GET") == 0)
			get_repos(r);
		else
			api_error(r->reply, r->arg, 405, "use GET or POST on /api/v1/repos");
		return true;
	}
	if (strncmp(p, "/api/v1/repos/", 14) == 0 && strcmp(r->method, "DELETE") == 0) {
		delete_repo(r, p + 14);
		return true;
	}
	return false;
}
