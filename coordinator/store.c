/*
 * store — the coordinator's state in SQLite (WAL), used only from the core
 * thread. Statements are prepared once and cached by the address of their SQL
 * text, so call sites pass string literals. The schema is created on open and
 * versioned in `meta`.
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct stmt_cache {
	const char *sql;
	sqlite3_stmt *st;
	struct stmt_cache *next;
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
	"CREATE TABLE IF NOT EXISTS runs("
	" id INTEGER PRIMARY KEY, number INTEGER NOT NULL, repo TEXT NOT NULL, ref TEXT NOT NULL,"
	" sha TEXT NOT NULL, event TEXT NOT NULL, workflow TEXT NOT NULL, name TEXT NOT NULL,"
	" worktree INTEGER NOT NULL DEFAULT 0,"
	" concurrency TEXT, cancel_in_progress INTEGER NOT NULL DEFAULT 0,"
	" state TEXT NOT NULL DEFAULT 'queued', conclusion TEXT NOT NULL DEFAULT '',"
	" created_ms INTEGER NOT NULL, started_ms INTEGER, finished_ms INTEGER);"
	"CREATE INDEX IF NOT EXISTS runs_state ON runs(state);"
	"CREATE TABLE IF NOT EXISTS jobs("
	" id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
	" key TEXT NOT NULL, name TEXT NOT NULL, needs TEXT NOT NULL, runs_on TEXT NOT NULL,"
	" spec TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',"
	" conclusion TEXT NOT NULL DEFAULT '', ready INTEGER NOT NULL DEFAULT 0,"
	" attempt INTEGER NOT NULL DEFAULT 0, retries_left INTEGER NOT NULL DEFAULT 0,"
	" agent_id TEXT, message TEXT, ready_ms INTEGER, started_ms INTEGER, finished_ms INTEGER,"
	" outputs TEXT NOT NULL DEFAULT '{}', matrix TEXT, strategy TEXT,"
	" idx INTEGER NOT NULL DEFAULT 0, expanded INTEGER NOT NULL DEFAULT 0,"
	" cancel_requested INTEGER NOT NULL DEFAULT 0, cancel_sent INTEGER NOT NULL DEFAULT 0,"
	" continue_on_error INTEGER NOT NULL DEFAULT 0,"
	" kind TEXT NOT NULL DEFAULT 'job',"   /* job | call (a reusable workflow's call row) */
	" parent TEXT,"                        /* the call row a called job belongs to */
	" inputs TEXT,"                        /* a call row's evaluated with: */
	" timeout_minutes REAL,"               /* evaluated timeout-minutes, when an expression */
	" concurrency TEXT, cancel_in_progress INTEGER NOT NULL DEFAULT 0,"
	" UNIQUE(run_id, key, idx));"
	"CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(state, ready);"
	"CREATE TABLE IF NOT EXISTS steps("
	" job_id INTEGER NOT NULL REFERENCES jobs(id), idx INTEGER NOT NULL, name TEXT NOT NULL,"
	" state TEXT NOT NULL DEFAULT 'queued', conclusion TEXT NOT NULL DEFAULT '',"
	" exit_code INTEGER, started_ms INTEGER, finished_ms INTEGER, summary TEXT,"
	" PRIMARY KEY(job_id, idx));"
	"CREATE TABLE IF NOT EXISTS annotations("
	" id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs(id), attempt INTEGER NOT NULL,"
	" step INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, file TEXT, line INTEGER,"
	" col INTEGER, end_line INTEGER, end_col INTEGER, title TEXT);"
	"CREATE INDEX IF NOT EXISTS annotations_job ON annotations(job_id);"
	"CREATE TABLE IF NOT EXISTS agents("
	" id TEXT PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL, capacity INTEGER NOT NULL,"
	" session_digest TEXT NOT NULL, version TEXT NOT NULL DEFAULT '',"
	" created_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS artifacts("
	" id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
	" job_id INTEGER NOT NULL, name TEXT NOT NULL, manifest TEXT NOT NULL,"
	" size INTEGER NOT NULL, files INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
	" expires_ms INTEGER NOT NULL, UNIQUE(run_id, name));"
	/* concurrency groups and environments (gates.c) */
	"CREATE TABLE IF NOT EXISTS run_gates("
	" run_id INTEGER PRIMARY KEY, repo TEXT NOT NULL, grp TEXT NOT NULL, state TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS run_gates_grp ON run_gates(repo, grp, state);"
	"CREATE TABLE IF NOT EXISTS job_gates("
	" job_id INTEGER PRIMARY KEY, environment TEXT, env_url TEXT, approval TEXT,"
	" decided_by TEXT, decided_ms INTEGER, entered INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS environments("
	" repo TEXT NOT NULL, name TEXT NOT NULL, required_approval INTEGER NOT NULL DEFAULT 0,"
	" url TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL, PRIMARY KEY(repo, name));"
	/* API, registration and agent tokens: digests only (auth.c) */
	"CREATE TABLE IF NOT EXISTS tokens("
	" id TEXT PRIMARY KEY, kind TEXT NOT NULL," /* api | registration | agent */
	" scope TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '', digest TEXT NOT NULL,"
	" agent_id TEXT, created_ms INTEGER NOT NULL, last_used_ms INTEGER, revoked_ms INTEGER);"
	"CREATE INDEX IF NOT EXISTS tokens_agent ON tokens(agent_id);"
	/* secrets, sealed with the coordinator's key (secrets.c): scope org (repo = the owner),
	   repo (repo = OWNER/NAME) or env (repo and env); names upper case */
	"CREATE TABLE IF NOT EXISTS secrets("
	" scope TEXT NOT NULL, repo TEXT NOT NULL, env TEXT NOT NULL DEFAULT '', name TEXT NOT NULL,"
	" value TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
	" PRIMARY KEY(scope, repo, env, name));"
	/* commit statuses and notifications to deliver, and what was last queued (forge.c) */
	"CREATE TABLE IF NOT EXISTS outbox("
	" id INTEGER PRIMARY KEY, kind TEXT NOT NULL, repo TEXT NOT NULL, key TEXT,"
	" what TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,"
	" attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL,"
	" created_ms INTEGER NOT NULL, last_error TEXT);"
	"CREATE INDEX IF NOT EXISTS outbox_key ON outbox(key);"
	"CREATE TABLE IF NOT EXISTS forge_jobs(job_id INTEGER PRIMARY KEY, sent TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS forge_runs(run_id INTEGER PRIMARY KEY, finished_ms INTEGER);"
	/* repositories, webhook deliveries and what the default branches listen to (repos.c,
	   hooks.c, triggers.c) */
	"CREATE TABLE IF NOT EXISTS repos("
	" id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, url TEXT NOT NULL, forge TEXT NOT NULL,"
	" api_url TEXT NOT NULL DEFAULT '', token TEXT, webhook_secret TEXT,"
	" default_branch TEXT NOT NULL DEFAULT 'main', fork_secrets INTEGER NOT NULL DEFAULT 0,"
	" notify_url TEXT, notify_secret TEXT, created_ms INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS deliveries("
	" id INTEGER PRIMARY KEY, forge TEXT NOT NULL, delivery TEXT NOT NULL,"
	" repo_id INTEGER NOT NULL, event TEXT NOT NULL, payload TEXT,"
	" state TEXT NOT NULL DEFAULT 'pending'," /* pending|done|failed|ignored|dropped */
	" message TEXT, runs TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
	" next_ms INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,"
	" UNIQUE(forge, delivery));"
	"CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(state, next_ms);"
	"CREATE TABLE IF NOT EXISTS repo_triggers("
	" repo_id INTEGER NOT NULL, workflow TEXT NOT NULL, kind TEXT NOT NULL," /* cron|workflow_run */
	" value TEXT NOT NULL, PRIMARY KEY(repo_id, workflow, kind, value));"
	"INSERT OR IGNORE INTO meta(key, value) VALUES('schema', '3');"
	"UPDATE meta SET value = '3' WHERE key = 'schema' AND value < '3';";

/* actions/cache entries: immutable, read by scope (a ref) and key prefix. In `db` (main, or a
   database of their own that outlives the store, for `kiln run`). */
static char *caches_schema(const char *db)
{
	return kiln_asprintf(
		"CREATE TABLE IF NOT EXISTS %1$s.caches("
		" id INTEGER PRIMARY KEY, repo TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL,"
		" version TEXT NOT NULL, manifest TEXT NOT NULL, size INTEGER NOT NULL,"
		" created_ms INTEGER NOT NULL, used_ms INTEGER NOT NULL,"
		" UNIQUE(repo, scope, version, key));"
		"CREATE INDEX IF NOT EXISTS %1$s.caches_used ON caches(repo, used_ms);",
		db);
}

/* Every second, a passive checkpoint on a second connection: it copies the WAL back into the
   database (with its fsyncs) without blocking the core thread's writers. */
static void *ckpt_main(void *arg)
{
	coord *c = arg;
	_cleanup_free_ char *path = kiln_asprintf("%s/kiln.db", c->data_dir);
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		kiln_log(KILN_LOG_ERR, "checkpointer: %s", db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 1000);
	/* asleep until a commit marks the WAL dirty; then at most one checkpoint a second */
	pthread_mutex_lock(&c->mu);
	while (!c->ckpt_stop) {
		while (!__atomic_load_n(&c->ckpt_dirty, __ATOMIC_RELAXED) && !c->ckpt_stop)
			pthread_cond_wait(&c->ckpt_cv, &c->mu);
		if (c->ckpt_stop)
			break;
		__atomic_store_n(&c->ckpt_dirty, false, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&c->mu);
		int log = 0, done = 0;
		sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		pthread_mutex_lock(&c->mu);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		while (!c->ckpt_stop && pthread_cond_timedwait(&c->ckpt_cv, &c->mu, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&c->mu);
	sqlite3_close(db);
	return NULL;
}

/* Adds a column to a table of an older database (a no-op once it is there). */
int store_add_column(coord *c, const char *table, const char *column, const char *decl)
{
	_cleanup_free_ char *q = kiln_asprintf("SELECT 1 FROM pragma_table_info('%s') WHERE name = ?",
					       table);
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(c->db, q, -1, &st, NULL) != SQLITE_OK)
		return kiln_err(EIO, "%s", sqlite3_errmsg(c->db));
	sqlite3_bind_text(st, 1, column, -1, SQLITE_STATIC);
	bool have = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (have)
		return 0;
	_cleanup_free_ char *alter = kiln_asprintf("ALTER TABLE %s ADD COLUMN %s %s", table, column,
						   decl);
	char *err = NULL;
	if (sqlite3_exec(c->db, alter, NULL, NULL, &err) != SQLITE_OK) {
		int r = kiln_err(EIO, "%s: %s", alter, err ? err : "failed");
		sqlite3_free(err);
		return r;
	}
	return 0;
}

int store_open(coord *c)
{
	_cleanup_free_ char *path = kiln_asprintf("%s/kiln.db", c->data_dir);
	int r = sqlite3_open_v2(path, &c->db,
				SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (r != SQLITE_OK)
		return kiln_err(EIO, "%s: %s", path, c->db ? sqlite3_errmsg(c->db) : "cannot open");
	char *err = NULL;
	r = sqlite3_exec(c->db,
			 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			 "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;"
			 "PRAGMA wal_autocheckpoint=0;",
			 NULL, NULL, &err);
	if (r == SQLITE_OK)
		r = sqlite3_exec(c->db, schema, NULL, NULL, &err);
	if (r == SQLITE_OK && repos_migrate(c) < 0)
		return -EIO; /* runs gets the columns of triggered runs (schema 4) */
	if (r == SQLITE_OK && c->cfg.cache_db) {
		sqlite3_stmt *st = NULL;
		r = sqlite3_prepare_v2(c->db, "ATTACH DATABASE ? AS cachedb", -1, &st, NULL);
		if (r == SQLITE_OK) {
			sqlite3_bind_text(st, 1, c->cfg.cache_db, -1, SQLITE_TRANSIENT);
			r = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		}
		sqlite3_finalize(st);
		if (r == SQLITE_OK)
			r = sqlite3_exec(c->db, "PRAGMA cachedb.journal_mode=WAL;", NULL, NULL, &err);
	}
	if (r == SQLITE_OK) {
		_cleanup_free_ char *cs = caches_schema(c->cfg.cache_db ? "cachedb" : "main");
		r = sqlite3_exec(c->db, cs, NULL, NULL, &err);
	}
	/* columns newer than a database made by an older kiln */
	if (r == SQLITE_OK &&
	    store_add_column(c, "agents", "disabled", "INTEGER NOT NULL DEFAULT 0") < 0)
		return -EIO;
	if (r != SQLITE_OK) {
		int e = kiln_err(EIO, "%s: %s", path, err ? err : sqlite3_errmsg(c->db));
		sqlite3_free(err);
		return e;
	}
	pthread_cond_init(&c->ckpt_cv, NULL);
	if (pthread_create(&c->ckpt_thread, NULL, ckpt_main, c) == 0)
		c->ckpt_running = true;
	return 0;
}

void store_close(coord *c)
{
	if (c->ckpt_running) {
		pthread_mutex_lock(&c->mu);
		c->ckpt_stop = true;
		pthread_cond_signal(&c->ckpt_cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->ckpt_thread, NULL);
		c->ckpt_running = false;
		pthread_cond_destroy(&c->ckpt_cv);
	}
	while (c->stmts) {
		struct stmt_cache *s = c->stmts;
		c->stmts = s->next;
		sqlite3_finalize(s->st);
		free(s);
	}
	if (c->db) {
		sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
		sqlite3_close(c->db);
	}
	c->db = NULL;
}

static sqlite3_stmt *prepare(coord *c, const char *sql)
{
	for (struct stmt_cache *s = c->stmts; s; s = s->next)
		if (s->sql == sql)
			return s->st;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
		/* a bad statement is a bug in kiln, not in the input */
		kiln_log(2, "sql: %s: %s", sqlite3_errmsg(c->db), sql);
		abort();
	}
	struct stmt_cache *s = kiln_malloc(sizeof *s);
	s->sql = sql;
	s->st = st;
	s->next = c->stmts;
	c->stmts = s;
	return st;
}

static sqlite3_stmt *bindv(coord *c, const char *sql, const char *types, va_list ap)
{
	sqlite3_stmt *st = prepare(c, sql);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	/* a type string that does not match the statement is a bug at the call site */
	if ((size_t)sqlite3_bind_parameter_count(st) != (types ? strlen(types) : 0)) {
		kiln_log(KILN_LOG_ERR, "sql: %d parameters, %zu types given: %s",
			 sqlite3_bind_parameter_count(st), types ? strlen(types) : 0, sql);
		abort();
	}
	for (int i = 0; types && types[i]; i++) {
		switch (types[i]) {
		case 'i':
			sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
			break;
		case 'd':
			sqlite3_bind_double(st, i + 1, va_arg(ap, double));
			break;
		case 't': {
			const char *s = va_arg(ap, const char *);
			if (s)
				sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(st, i + 1);
			break;
		}
		default:
			abort();
		}
	}
	return st;
}

sqlite3_stmt *store_q(coord *c, const char *sql, const char *types, ...)
{
	va_list ap;
	va_start(ap, types);
	sqlite3_stmt *st = bindv(c, sql, types, ap);
	va_end(ap);
	return st;
}

/* The WAL has something new: the checkpointer wakes (once, until it has run). */
static void mark_dirty(coord *c)
{
	if (__atomic_load_n(&c->ckpt_dirty, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&c->mu);
	__atomic_store_n(&c->ckpt_dirty, true, __ATOMIC_RELAXED);
	pthread_cond_signal(&c->ckpt_cv);
	pthread_mutex_unlock(&c->mu);
}

int store_x(coord *c, const char *sql, const char *types, ...)
{
	va_list ap;
	va_start(ap, types);
	sqlite3_stmt *st = bindv(c, sql, types, ap);
	va_end(ap);
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (r != SQLITE_DONE)
		kiln_log(3, "sql: %s", sqlite3_errmsg(c->db));
	else if (!sqlite3_stmt_readonly(st) && sqlite3_get_autocommit(c->db))
		mark_dirty(c); /* a commit, or a write outside a transaction */
	sqlite3_reset(st);
	return r;
}

void store_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
}

int store_begin(coord *c)
{
	return store_x(c, "BEGIN IMMEDIATE", NULL);
}

int store_commit(coord *c)
{
	return store_x(c, "COMMIT", NULL);
}

void store_rollback(coord *c)
{
	store_x(c, "ROLLBACK", NULL);
}

const char *col_text(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);
	return s ? s : "";
}

const char *conclusion_name(int conclusion)
{
	switch (conclusion) {
	case KILN__CONCLUSION__CONCLUSION_SUCCESS:
		return "success";
	case KILN__CONCLUSION__CONCLUSION_FAILURE:
		return "failure";
	case KILN__CONCLUSION__CONCLUSION_CANCELLED:
		return "cancelled";
	case KILN__CONCLUSION__CONCLUSION_SKIPPED:
		return "skipped";
	default:
		return "";
	}
}
