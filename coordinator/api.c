/*
 * api — the JSON API under /api/v1, served on the core thread. HTTP and the
 * in-process client (`kiln run`) both arrive here through coord_api(). A
 * request that asks to wait (`wait=S`) and finds nothing new is parked as a
 * waiter on its run and served again whenever that run changes, or answered
 * as it is when its time is up.
 */
#include "coordinator/internal.h"

#include "common/archive.h"
#include "common/cas.h"
#include "common/logline.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#define MAX_WAIT_S 60
#define MAX_LINES 5000
#define MAX_LOG_BYTES (4u << 20)
#define MAX_BLOB_READ (1u << 20) /* bytes of a stored frame in one /api/v1/blobs answer */

void api_json(coord_reply_fn reply, void *arg, int status, json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (!s)
		s = kiln_strdup("{}");
	reply(arg, status, NULL, s, strlen(s));
}

void api_text(api_req *r, int status, const char *content_type, char *body)
{
	r->reply(r->arg, status, content_type, body, strlen(body));
}

const char *api_header(const api_req *r, const char *name)
{
	for (size_t i = 0; r->headers && r->headers[i] && r->headers[i + 1]; i += 2)
		if (strcasecmp(r->headers[i], name) == 0)
			return r->headers[i + 1];
	return NULL;
}

void api_error(coord_reply_fn reply, void *arg, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	api_json(reply, arg, status, json_pack("{s:s}", "error", msg));
}

/* The value of `key` in a query string, percent-decoded, or NULL; owned. */
static char *query_get(const char *query, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = query; p && *p;) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			kiln_buf b = {0};
			for (size_t i = klen + 1; i < len; i++) {
				if (p[i] == '%' && i + 2 < len + 1 && isxdigit((unsigned char)p[i + 1]) &&
				    isxdigit((unsigned char)p[i + 2])) {
					char hex[3] = {p[i + 1], p[i + 2], 0};
					char ch = (char)strtol(hex, NULL, 16);
					kiln_buf_append(&b, &ch, 1);
					i += 2;
				} else {
					kiln_buf_append(&b, p[i] == '+' ? " " : &p[i], 1);
				}
			}
			return kiln_buf_steal(&b);
		}
		p = amp ? amp + 1 : NULL;
	}
	return NULL;
}

/* A percent-decoded path segment ('+' stays '+'); owned. */
static char *url_decode(const char *s)
{
	kiln_buf b = {0};
	for (const char *p = s; *p; p++) {
		if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			char hex[3] = {p[1], p[2], 0};
			char ch = (char)strtol(hex, NULL, 16);
			kiln_buf_append(&b, &ch, 1);
			p += 2;
		} else {
			kiln_buf_append(&b, p, 1);
		}
	}
	kiln_buf_append(&b, "", 0);
	return kiln_buf_steal(&b);
}

static int64_t query_int(const char *query, const char *key, int64_t def, int64_t lo, int64_t hi)
{
	_cleanup_free_ char *v = query_get(query, key);
	if (!v || !*v)
		return def;
	char *end;
	long long n = strtoll(v, &end, 10);
	if (*end)
		return def;
	return n < lo ? lo : n > hi ? hi : n;
}

char *api_query(const api_req *r, const char *key)
{
	return query_get(r->query, key);
}

int64_t api_query_int(const api_req *r, const char *key, int64_t def, int64_t lo, int64_t hi)
{
	return query_int(r->query, key, def, lo, hi);
}

json_t *api_body_object(api_req *r)
{
	json_error_t jerr;
	json_t *v = json_loadb(r->body ? r->body : "", r->body_len, 0, &jerr);
	if (!json_is_object(v)) {
		json_decref(v);
		api_error(r->reply, r->arg, 400, "body: %s", v ? "expected a JSON object" : jerr.text);
		return NULL;
	}
	return v;
}

static json_t *ms_or_null(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? json_null()
							 : json_integer(sqlite3_column_int64(st, i));
}

static json_t *run_row_json(sqlite3_stmt *st)
{
	json_t *r = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "id",
			 (json_int_t)sqlite3_column_int64(st, 0), "number",
			 (json_int_t)sqlite3_column_int64(st, 1), "repository", col_text(st, 2),
			 "ref", col_text(st, 3), "sha", col_text(st, 4), "event", col_text(st, 5),
			 "workflow", col_text(st, 6), "name", col_text(st, 7), "state",
			 col_text(st, 8), "conclusion", col_text(st, 9), "created_ms",
			 ms_or_null(st, 10), "started_ms", ms_or_null(st, 11), "finished_ms",
			 ms_or_null(st, 12));
	if (sqlite3_column_type(st, 13) != SQLITE_NULL)
		json_object_set_new(r, "concurrency", json_string(col_text(st, 13)));
	return r;
}

#define RUN_COLS                                                                                   \
	"id, number, coalesce(repository, repo), ref, sha, event, workflow, name, state,"          \
	" conclusion, created_ms,"                                                                 \
	" started_ms, finished_ms, concurrency"

static json_t *steps_json(coord *c, uint64_t job_id)
{
	json_t *a = json_array();
	sqlite3_stmt *st = store_q(c,
				   "SELECT idx, name, state, conclusion, exit_code, started_ms,"
				   " finished_ms, summary FROM steps WHERE job_id = ? ORDER BY idx",
				   "i", (int64_t)job_id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *s = json_pack(
			"{s:i, s:s, s:s, s:s, s:o, s:o, s:o}", "index", sqlite3_column_int(st, 0),
			"name", col_text(st, 1), "state", col_text(st, 2), "conclusion",
			col_text(st, 3), "exit_code",
			sqlite3_column_type(st, 4) == SQLITE_NULL ? json_null()
								  : json_integer(sqlite3_column_int(st, 4)),
			"started_ms", ms_or_null(st, 5), "finished_ms", ms_or_null(st, 6));
		if (sqlite3_column_type(st, 7) != SQLITE_NULL)
			json_object_set_new(s, "summary", json_string(col_text(st, 7)));
		json_array_append_new(a, s);
	}
	store_done(st);
	return a;
}

/* The annotations (::error, ::warning, ::notice) of a job's current attempt. */
static json_t *annotations_json(coord *c, uint64_t job_id)
{
	json_t *a = json_array();
	sqlite3_stmt *st = store_q(c,
				   "SELECT step, level, message, file, line, col, end_line, end_col,"
				   " title FROM annotations WHERE job_id = ? AND attempt ="
				   " (SELECT attempt FROM jobs WHERE id = ?) ORDER BY id",
				   "ii", (int64_t)job_id, (int64_t)job_id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *o = json_pack("{s:i, s:s, s:s}", "step", sqlite3_column_int(st, 0), "level",
				      col_text(st, 1), "message", col_text(st, 2));
		if (sqlite3_column_type(st, 3) != SQLITE_NULL)
			json_object_set_new(o, "file", json_string(col_text(st, 3)));
		static const char *const ints[] = {"line", "col", "end_line", "end_col"};
		for (int i = 0; i < 4; i++)
			if (sqlite3_column_type(st, 4 + i) != SQLITE_NULL)
				json_object_set_new(o, ints[i],
						    json_integer(sqlite3_column_int(st, 4 + i)));
		if (sqlite3_column_type(st, 8) != SQLITE_NULL)
			json_object_set_new(o, "title", json_string(col_text(st, 8)));
		json_array_append_new(a, o);
	}
	store_done(st);
	return a;
}

#define JOB_COLS                                                                                   \
	"id, run_id, key, name, state, conclusion, attempt, agent_id, needs, runs_on, message,"    \
	" started_ms, finished_ms, outputs, matrix"

static json_t *job_row_json(sqlite3_stmt *st)
{
	uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
	json_t *needs = json_loads(col_text(st, 8), 0, NULL);
	json_t *runs_on = json_loads(col_text(st, 9), 0, NULL);
	json_t *j = json_pack(
		"{s:I, s:I, s:s, s:s, s:s, s:s, s:i, s:s, s:o, s:o, s:s, s:o, s:o}", "id",
		(json_int_t)id, "run_id", (json_int_t)sqlite3_column_int64(st, 1), "key",
		col_text(st, 2), "name", col_text(st, 3), "state", col_text(st, 4), "conclusion",
		col_text(st, 5), "attempt", sqlite3_column_int(st, 6), "agent_id", col_text(st, 7),
		"needs", needs ? needs : json_array(), "runs_on", runs_on ? runs_on : json_array(),
		"message", col_text(st, 10), "started_ms", ms_or_null(st, 11), "finished_ms",
		ms_or_null(st, 12));
	json_t *outputs = json_loads(col_text(st, 13), 0, NULL);
	json_object_set_new(j, "outputs", json_is_object(outputs) ? outputs : json_object());
	if (!json_is_object(outputs))
		json_decref(outputs);
	if (sqlite3_column_type(st, 14) != SQLITE_NULL) {
		json_t *m = json_loads(col_text(st, 14), 0, NULL);
		if (m)
			json_object_set_new(j, "matrix", m);
	}
	return j;
}

/* The environment a job deploys to, with its URL and review, or NULL. */
static json_t *environment_json(coord *c, uint64_t job_id)
{
	sqlite3_stmt *st = store_q(c,
				   "SELECT environment, env_url, approval, decided_by, decided_ms"
				   " FROM job_gates WHERE job_id = ? AND environment IS NOT NULL",
				   "i", (int64_t)job_id);
	json_t *e = NULL;
	if (sqlite3_step(st) == SQLITE_ROW) {
		e = json_pack("{s:s, s:s}", "name", col_text(st, 0), "url", col_text(st, 1));
		if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
			json_object_set_new(e, "review", json_string(col_text(st, 2)));
			if (sqlite3_column_type(st, 3) != SQLITE_NULL)
				json_object_set_new(e, "reviewed_by", json_string(col_text(st, 3)));
			json_object_set_new(e, "reviewed_ms", ms_or_null(st, 4));
		}
	}
	store_done(st);
	return e;
}

/* Jobs with their steps; steps are read after the jobs statement is done with. */
static json_t *jobs_json(coord *c, uint64_t run_id)
{
	json_t *jobs = json_array();
	/* in plan order, a matrix's instances together */
	sqlite3_stmt *st = store_q(c,
				   "SELECT " JOB_COLS " FROM jobs j WHERE run_id = ? ORDER BY"
				   " (SELECT min(id) FROM jobs k WHERE k.run_id = j.run_id AND k.key = j.key),"
				   " idx",
				   "i", (int64_t)run_id);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(jobs, job_row_json(st));
	store_done(st);
	size_t i;
	json_t *j;
	json_array_foreach(jobs, i, j)
	{
		uint64_t id = (uint64_t)json_integer_value(json_object_get(j, "id"));
		json_object_set_new(j, "steps", steps_json(c, id));
		json_object_set_new(j, "annotations", annotations_json(c, id));
		json_t *env = environment_json(c, id);
		if (env)
			json_object_set_new(j, "environment", env);
	}
	return jobs;
}

static json_t *run_json(coord *c, uint64_t id, bool with_jobs)
{
	sqlite3_stmt *st = store_q(c, "SELECT " RUN_COLS " FROM runs WHERE id = ?", "i", (int64_t)id);
	json_t *r = sqlite3_step(st) == SQLITE_ROW ? run_row_json(st) : NULL;
	store_done(st);
	if (r && with_jobs)
		json_object_set_new(r, "jobs", jobs_json(c, id));
	return r;
}


/* Parks the request on run_id until it changes or the deadline passes; returns true if parked. */
static bool maybe_wait(api_req *r, uint64_t run_id)
{
	coord *c = r->c;
	int64_t now = kiln_now_ms();
	if (c->draining)
		return false;
	int64_t deadline = r->deadline_ms;
	if (!deadline) {
		int64_t wait = query_int(r->query, "wait", 0, 0, MAX_WAIT_S);
		if (!wait)
			return false;
		deadline = now + wait * 1000;
	}
	if (now >= deadline)
		return false;
	api_waiter *w = kiln_calloc(1, sizeof *w);
	w->run_id = run_id;
	w->deadline_ms = deadline;
	if (deadline < c->next_tick_ms) /* the core loop wakes for it */
		c->next_tick_ms = deadline;
	w->method = kiln_strdup(r->method);
	w->path = kiln_strdup(r->path);
	w->query = kiln_strdup(r->query);
	w->reply = r->reply;
	w->arg = r->arg;
	w->next = c->waiters;
	c->waiters = w;
	return true;
}

/* GET /api/v1/runs?repo=&ref=&state=&conclusion=&event=&workflow=&limit=&offset= : newest
   first; `total` counts every run the filters match. */
#define RUN_FILTER                                                                                 \
	" WHERE (?1 IS NULL OR coalesce(repository, repo) = ?1)"                                   \
	" AND (?2 IS NULL OR ref = ?2 OR ref = 'refs/heads/' || ?2 OR ref = 'refs/tags/' || ?2)"   \
	" AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR conclusion = ?4)"                      \
	" AND (?5 IS NULL OR event = ?5) AND (?6 IS NULL OR workflow = ?6 OR name = ?6"            \
	" OR workflow = '.github/workflows/' || ?6)"

static void get_runs(api_req *r)
{
	int64_t limit = query_int(r->query, "limit", 50, 1, 500);
	int64_t offset = query_int(r->query, "offset", 0, 0, INT64_MAX);
	_cleanup_free_ char *repo = api_query(r, "repo"), *ref = api_query(r, "ref"),
			    *state = api_query(r, "state"), *concl = api_query(r, "conclusion"),
			    *event = api_query(r, "event"), *wf = api_query(r, "workflow");
	json_t *runs = json_array();
	sqlite3_stmt *st = store_q(r->c,
				   "SELECT " RUN_COLS " FROM runs" RUN_FILTER
				   " ORDER BY id DESC LIMIT ?7 OFFSET ?8",
				   "ttttttii", repo, ref, state, concl, event, wf, limit, offset);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(runs, run_row_json(st));
	store_done(st);
	st = store_q(r->c, "SELECT count(*) FROM runs" RUN_FILTER, "tttttt", repo, ref, state, concl,
		     event, wf);
	json_int_t total = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	store_done(st);
	api_json(r->reply, r->arg, 200,
		 json_pack("{s:o, s:I, s:I, s:I}", "runs", runs, "total", total, "limit",
			   (json_int_t)limit, "offset", (json_int_t)offset));
}

typedef struct line_ctx {
	json_t *lines;
	json_t *names; /* job id (as string) -> name, for run logs */
} line_ctx;

/* One stored line (common/logline.h) as JSON; a run's lines also name their job. */
static void add_line(line_ctx *lc, uint64_t job, uint32_t attempt, const char *line, size_t len)
{
	kiln_logline l;
	if (!kiln_logline_parse(line, len, &l))
		return;
	json_t *o = json_object();
	if (lc->names) {
		char id[32];
		snprintf(id, sizeof id, "%llu", (unsigned long long)job);
		json_object_set_new(o, "job_id", json_integer((json_int_t)job));
		json_t *name = json_object_get(lc->names, id);
		json_object_set_new(o, "job", name ? json_incref(name) : json_string(""));
		json_object_set_new(o, "attempt", json_integer(attempt));
	}
	json_object_set_new(o, "seq", json_integer((json_int_t)l.seq));
	json_object_set_new(o, "ts", json_integer(l.ts_ms));
	json_object_set_new(o, "stream", json_stringn(l.stream, l.stream_len));
	json_object_set_new(o, "step", json_integer(l.step));
	json_t *text = json_stringn(l.text, l.text_len);
	json_object_set_new(o, "text", text ? text : json_string("\xef\xbf\xbd"));
	json_array_append_new(lc->lines, o);
}

static void on_job_line(void *arg, uint64_t index, const char *line, size_t len)
{
	(void)index;
	add_line(arg, 0, 0, line, len);
}

static void on_run_line(void *arg, uint64_t job, uint32_t attempt, const char *line, size_t len)
{
	add_line(arg, job, attempt, line, len);
}

/* Job id (as a string) -> name, for the lines of a run's log (new reference). */
static json_t *job_names(coord *c, uint64_t run_id)
{
	json_t *names = json_object();
	sqlite3_stmt *st = store_q(c, "SELECT id, name FROM jobs WHERE run_id = ?", "i",
				   (int64_t)run_id);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_object_set_new(names, col_text(st, 0), json_string(col_text(st, 1)));
	store_done(st);
	return names;
}

/* A run's log index: the open one while the run goes on, else one opened for the caller (close
   it with runlog_close when `done`); NULL when the run has no lines. */
static runlog *run_index(coord *c, uint64_t run_id, bool done)
{
	if (!done)
		return coord_runlog(c, run_id);
	_cleanup_free_ char *path = coord_log_path(c, run_id, 0);
	runlog *rl = NULL;
	if (access(path, F_OK) != 0 || runlog_open(path, &rl) < 0)
		return NULL;
	return rl;
}

static void get_run_log(api_req *r, uint64_t run_id)
{
	coord *c = r->c;
	json_t *run = run_json(c, run_id, false);
	if (!run) {
		api_error(r->reply, r->arg, 404, "no run %llu", (unsigned long long)run_id);
		return;
	}
	bool done = strcmp(json_string_value(json_object_get(run, "state")), "completed") == 0;
	uint64_t offset = (uint64_t)query_int(r->query, "offset", 0, 0, INT64_MAX);
	size_t limit = (size_t)query_int(r->query, "limit", MAX_LINES, 1, MAX_LINES);
	line_ctx lc = {.lines = json_array(), .names = job_names(c, run_id)};
	runlog *rl = run_index(c, run_id, done);
	uint64_t total = rl ? runlog_count(rl) : 0;
	int64_t n = rl ? runlog_read(c, rl, offset, limit, MAX_LOG_BYTES, on_run_line, &lc) : 0;
	if (done)
		runlog_close(rl);
	json_decref(lc.names);
	if (n == 0 && !done && maybe_wait(r, run_id)) {
		json_decref(lc.lines);
		json_decref(run);
		return;
	}
	uint64_t next = offset + (uint64_t)n;
	json_object_set_new(run, "lines", lc.lines);
	json_object_set_new(run, "next", json_integer((json_int_t)next));
	json_object_set_new(run, "done", json_boolean(done && next >= total));
	api_json(r->reply, r->arg, 200, run);
}

static void get_job_log(api_req *r, uint64_t job_id)
{
	coord *c = r->c;
	sqlite3_stmt *st = store_q(c, "SELECT run_id, state, attempt FROM jobs WHERE id = ?", "i",
				   (int64_t)job_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		api_error(r->reply, r->arg, 404, "no job %llu", (unsigned long long)job_id);
		return;
	}
	uint64_t run_id = (uint64_t)sqlite3_column_int64(st, 0);
	bool done = strcmp(col_text(st, 1), "completed") == 0;
	int64_t current = sqlite3_column_int(st, 2);
	store_done(st);
	uint32_t attempt = (uint32_t)query_int(r->query, "attempt", current, 0, current);
	uint64_t offset = (uint64_t)query_int(r->query, "offset", 0, 0, INT64_MAX);
	size_t limit = (size_t)query_int(r->query, "limit", MAX_LINES, 1, MAX_LINES);
	line_ctx lc = {.lines = json_array()};
	bool temp = false;
	logfile *f = attempt ? coord_log_peek(c, job_id, attempt, &temp) : NULL;
	uint64_t total = f ? logfile_count(f) : 0;
	int64_t n = f ? logfile_read(f, offset, limit, MAX_LOG_BYTES, on_job_line, &lc) : 0;
	if (temp)
		logfile_close(f);
	bool finished = done || attempt < current;
	if (n == 0 && !finished && maybe_wait(r, run_id)) {
		json_decref(lc.lines);
		return;
	}
	uint64_t next = offset + (uint64_t)n;
	api_json(r->reply, r->arg, 200,
		 json_pack("{s:I, s:i, s:o, s:I, s:b}", "job_id", (json_int_t)job_id, "attempt",
			   (int)attempt, "lines", lc.lines, "next", (json_int_t)next, "done",
			   finished && next >= total));
}

/* ---- plain-text logs: GET /api/v1/jobs/ID/log.txt[?attempt=N], /api/v1/runs/ID/log.txt ---- */

#define MAX_TEXT_LOG (256ull << 20)

typedef struct text_log {
	kiln_buf b;
	json_t *names; /* job id -> name, for a run's log */
	bool full;
} text_log;

static void text_line(text_log *t, uint64_t job, const char *line, size_t len)
{
	kiln_logline l;
	if (t->full || !kiln_logline_parse(line, len, &l))
		return;
	if (t->b.len + l.text_len + 64 > MAX_TEXT_LOG) {
		kiln_buf_puts(&t->b, "[kiln: the rest is cut here; read it with the JSON API]\n");
		t->full = true;
		return;
	}
	if (t->names) {
		char id[32];
		snprintf(id, sizeof id, "%llu", (unsigned long long)job);
		const char *name = json_string_value(json_object_get(t->names, id));
		kiln_buf_printf(&t->b, "[%s] ", name ? name : id);
	}
	if (l.stream_len == 6 && memcmp(l.stream, "system", 6) == 0)
		kiln_buf_puts(&t->b, "==> ");
	kiln_buf_append(&t->b, l.text, l.text_len);
	kiln_buf_append(&t->b, "\n", 1);
}

static void on_text_job_line(void *arg, uint64_t index, const char *line, size_t len)
{
	(void)index;
	text_line(arg, 0, line, len);
}

static void on_text_run_line(void *arg, uint64_t job, uint32_t attempt, const char *line,
			     size_t len)
{
	(void)attempt;
	text_line(arg, job, line, len);
}

static void get_job_log_text(api_req *r, uint64_t job_id)
{
	coord *c = r->c;
	sqlite3_stmt *st = store_q(c, "SELECT attempt FROM jobs WHERE id = ?", "i", (int64_t)job_id);
	bool found = sqlite3_step(st) == SQLITE_ROW;
	int64_t current = found ? sqlite3_column_int(st, 0) : 0;
	store_done(st);
	if (!found) {
		api_error(r->reply, r->arg, 404, "no job %llu", (unsigned long long)job_id);
		return;
	}
	uint32_t attempt = (uint32_t)query_int(r->query, "attempt", current, 0, current);
	text_log t = {0};
	kiln_buf_append(&t.b, "", 0);
	bool temp = false;
	logfile *f = attempt ? coord_log_peek(c, job_id, attempt, &temp) : NULL;
	for (uint64_t off = 0, n; f && !t.full; off += n) {
		int64_t got = logfile_read(f, off, MAX_LINES, MAX_LOG_BYTES, on_text_job_line, &t);
		if (got <= 0)
			break;
		n = (uint64_t)got;
	}
	if (temp)
		logfile_close(f);
	api_text(r, 200, "text/plain; charset=utf-8", kiln_buf_steal(&t.b));
}

static void get_run_log_text(api_req *r, uint64_t run_id)
{
	coord *c = r->c;
	_cleanup_free_ char *state = NULL;
	sqlite3_stmt *st = store_q(c, "SELECT state FROM runs WHERE id = ?", "i", (int64_t)run_id);
	if (sqlite3_step(st) == SQLITE_ROW)
		state = kiln_strdup(col_text(st, 0));
	store_done(st);
	if (!state) {
		api_error(r->reply, r->arg, 404, "no run %llu", (unsigned long long)run_id);
		return;
	}
	text_log t = {.names = job_names(c, run_id)};
	kiln_buf_append(&t.b, "", 0);
	bool done = strcmp(state, "completed") == 0;
	runlog *rl = run_index(c, run_id, done);
	for (uint64_t off = 0, n; rl && !t.full; off += n) {
		int64_t got = runlog_read(c, rl, off, MAX_LINES, MAX_LOG_BYTES, on_text_run_line, &t);
		if (got <= 0)
			break;
		n = (uint64_t)got;
	}
	if (done)
		runlog_close(rl);
	json_decref(t.names);
	api_text(r, 200, "text/plain; charset=utf-8", kiln_buf_steal(&t.b));
}

static void get_job(api_req *r, uint64_t job_id)
{
	sqlite3_stmt *st = store_q(r->c, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", "i",
				   (int64_t)job_id);
	json_t *j = sqlite3_step(st) == SQLITE_ROW ? job_row_json(st) : NULL;
	store_done(st);
	if (!j) {
		api_error(r->reply, r->arg, 404, "no job %llu", (unsigned long long)job_id);
		return;
	}
	json_object_set_new(j, "steps", steps_json(r->c, job_id));
	json_object_set_new(j, "annotations", annotations_json(r->c, job_id));
	api_json(r->reply, r->arg, 200, j);
}

static void get_agents(api_req *r)
{
	json_t *a = json_array();
	int64_t now = kiln_now_ms();
	for (coord_agent *ag = r->c->agents; ag; ag = ag->next) {
		json_t *labels = json_array();
		for (size_t i = 0; i < ag->labels.n; i++)
			json_array_append_new(labels, json_string(ag->labels.v[i]));
		json_array_append_new(
			a, json_pack("{s:s, s:s, s:o, s:i, s:s, s:I}", "id", ag->id, "name",
				     ag->name, "labels", labels, "capacity", (int)ag->capacity,
				     "state", ag->lost ? "lost" : ag->draining ? "draining" : "online", "idle_ms",
				     (json_int_t)(ag->parked ? 0 : now - ag->last_seen_ms)));
	}
	api_json(r->reply, r->arg, 200, json_pack("{s:o}", "agents", a));
}

/* A run's artifacts that have not expired, by name. */
static void get_artifacts(api_req *r, uint64_t run_id)
{
	coord *c = r->c;
	sqlite3_stmt *st = store_q(c, "SELECT 1 FROM runs WHERE id = ?", "i", (int64_t)run_id);
	bool known = sqlite3_step(st) == SQLITE_ROW;
	store_done(st);
	if (!known) {
		api_error(r->reply, r->arg, 404, "no run %llu", (unsigned long long)run_id);
		return;
	}
	json_t *a = json_array();
	st = store_q(c,
		     "SELECT name, size, files, manifest, job_id, created_ms, expires_ms"
		     " FROM artifacts WHERE run_id = ? AND expires_ms > ? ORDER BY name",
		     "ii", (int64_t)run_id, kiln_now_ms());
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(
			a, json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:I}", "name", col_text(st, 0),
				     "size", (json_int_t)sqlite3_column_int64(st, 1), "files",
				     (json_int_t)sqlite3_column_int64(st, 2), "manifest",
				     col_text(st, 3), "job_id",
				     (json_int_t)sqlite3_column_int64(st, 4), "created_ms",
				     (json_int_t)sqlite3_column_int64(st, 5), "expires_ms",
				     (json_int_t)sqlite3_column_int64(st, 6)));
	store_done(st);
	api_json(r->reply, r->arg, 200, json_pack("{s:o}", "artifacts", a));
}

/* ---- an artifact as one archive: built on the blob worker, sent whole ---- */

#define MAX_DOWNLOAD (512ull << 20) /* an archive bigger than this: use `kiln download` */

typedef struct download {
	coord_reply_fn reply;
	void *arg;
	char manifest[65];
	kiln_archive_format fmt;
	char *name;
} download;

static void download_reply_error(download *d, int status, const char *msg)
{
	char *body = NULL;
	json_t *v = json_pack("{s:s}", "error", msg);
	body = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	d->reply(d->arg, status, NULL, body, strlen(body));
}

static void download_work(coord *c, kiln_cas *cas, void *arg)
{
	download *d = arg;
	kiln_manifest *m = NULL;
	int fd = -1;
	int r = cas ? kiln_manifest_load(cas, d->manifest, &m) : kiln_err(ESHUTDOWN, "stopping");
	if (r == 0)
		r = fd = kiln_scratch_fd(c->data_dir);
	if (r >= 0)
		r = kiln_archive_write(cas, m, fd, d->fmt, c->data_dir, NULL);
	off_t size = r >= 0 ? lseek(fd, 0, SEEK_END) : -1;
	if (r >= 0 && (size < 0 || (uint64_t)size > MAX_DOWNLOAD))
		r = kiln_err(EFBIG, "artifact %s: the archive is over %llu MiB; use `kiln download`",
			     d->name, MAX_DOWNLOAD >> 20);
	char *body = NULL;
	if (r >= 0) {
		body = kiln_malloc((size_t)size + 1);
		ssize_t n = pread(fd, body, (size_t)size, 0);
		if (n != size)
			r = kiln_err(EIO, "artifact %s: cannot read the archive back", d->name);
	}
	if (fd >= 0)
		close(fd);
	kiln_manifest_free(m);
	if (r < 0) {
		free(body);
		download_reply_error(d, r == -EFBIG ? 413 : r == -ESHUTDOWN ? 503 : 500, kiln_errmsg());
	} else {
		kiln_log(KILN_LOG_INFO, "artifact %s: %lld bytes sent as %s", d->name, (long long)size,
			 d->fmt == KILN_ARCHIVE_ZIP ? "zip" : "tar.zst");
		d->reply(d->arg, 200, d->fmt == KILN_ARCHIVE_ZIP ? "application/zip" : "application/zstd",
			 body, (size_t)size);
	}
	free(d->name);
	free(d);
}

/* GET /api/v1/runs/ID/artifacts/NAME/download?format=tar.zst|zip */
static void download_artifact(api_req *r, uint64_t run_id, const char *name)
{
	_cleanup_free_ char *fmt = api_query(r, "format");
	if (fmt && strcmp(fmt, "zip") != 0 && strcmp(fmt, "tar.zst") != 0) {
		api_error(r->reply, r->arg, 400, "format: tar.zst or zip");
		return;
	}
	sqlite3_stmt *st = store_q(r->c,
				   "SELECT manifest FROM artifacts WHERE run_id = ? AND name = ?"
				   " AND expires_ms > ?",
				   "iti", (int64_t)run_id, name, kiln_now_ms());
	bool found = sqlite3_step(st) == SQLITE_ROW;
	download *d = NULL;
	if (found) {
		d = kiln_calloc(1, sizeof *d);
		snprintf(d->manifest, sizeof d->manifest, "%s", col_text(st, 0));
	}
	store_done(st);
	if (!d) {
		api_error(r->reply, r->arg, 404, "no artifact '%s' in run %llu", name,
			  (unsigned long long)run_id);
		return;
	}
	d->reply = r->reply;
	d->arg = r->arg;
	d->fmt = fmt && strcmp(fmt, "zip") == 0 ? KILN_ARCHIVE_ZIP : KILN_ARCHIVE_TAR_ZST;
	d->name = kiln_strdup(name);
	blobs_work(r->c, download_work, d);
}

/* Up to `max` bytes of a blob's stored zstd frame from `offset`, base64 in JSON: how the CLI
   fetches artifact content until a binary download exists (the receiver verifies the whole
   frame against its digest). Reading up to 1 MiB here blocks the core thread for the length
   of one read from the store; acceptable for now, to move to the blob worker with the binary
   download. */
static void get_blob(api_req *r, const char *digest)
{
	kiln_cas *cas = blobs_cas(r->c);
	if (!kiln_cas_digest_valid(digest)) {
		api_error(r->reply, r->arg, 400, "not a SHA-256 digest: '%.80s'", digest);
		return;
	}
	if (!cas) {
		api_error(r->reply, r->arg, 503, "no blob store");
		return;
	}
	uint64_t offset = (uint64_t)query_int(r->query, "offset", 0, 0, INT64_MAX);
	size_t max = (size_t)query_int(r->query, "max", MAX_BLOB_READ, 1, MAX_BLOB_READ);
	_cleanup_free_ unsigned char *buf = kiln_malloc(max);
	size_t n = 0;
	uint64_t total = 0;
	int e = kiln_cas_read_compressed(cas, digest, offset, buf, max, &n, &total);
	if (e == -ENOENT) {
		api_error(r->reply, r->arg, 404, "no blob %s", digest);
		return;
	}
	if (e < 0) {
		kiln_log(KILN_LOG_ERR, "api: reading blob %s: %s", digest, kiln_errmsg());
		api_error(r->reply, r->arg, 500, "cannot read blob %s", digest);
		return;
	}
	if (offset > total) {
		api_error(r->reply, r->arg, 400, "offset %llu is past the end of blob %s (%llu bytes)",
			  (unsigned long long)offset, digest, (unsigned long long)total);
		return;
	}
	_cleanup_free_ char *b64 = kiln_malloc(4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock((unsigned char *)b64, buf, (int)n);
	b64[len < 0 ? 0 : len] = 0;
	api_json(r->reply, r->arg, 200,
		 json_pack("{s:s, s:I, s:I, s:s}", "digest", digest, "offset", (json_int_t)offset,
			   "total", (json_int_t)total, "data", b64));
}

/* Matches "/api/v1/<what>/<id>[/<tail>]"; returns the id or 0. */
static uint64_t path_id(const char *path, const char *what, const char **tail)
{
	size_t n = strlen(what);
	if (strncmp(path, what, n) != 0 || path[n] != '/')
		return 0;
	char *end;
	unsigned long long id = strtoull(path + n + 1, &end, 10);
	if (end == path + n + 1)
		return 0;
	*tail = end;
	return id;
}

static void serve(api_req *r)
{
	const char *m = r->method, *p = r->path, *tail = "";
	bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
	uint64_t id;
	/* routes of other modules: one `if (xxx_serve(r)) return;` line each */
	if (auth_serve(r)) /* first: 401/403 before any route; then tokens and secrets */
		return;
	if (metrics_serve(r))
		return;
	if (runs_serve(r) || caches_serve(r))
		return;
	if (repos_serve(r) || triggers_serve(r) || hooks_serve(r)) /* repositories, triggers */
		return;
	if (strcmp(p, "/healthz") == 0) {
		api_json(r->reply, r->arg, 200, json_pack("{s:s}", "status", "ok"));
	} else if (strcmp(p, "/api/v1/runs") == 0 && post) {
		json_t *v = api_body_object(r);
		if (v)
			planner_submit(r->c, v, r->reply, r->arg);
	} else if (strcmp(p, "/api/v1/runs") == 0 && get) {
		get_runs(r);
	} else if ((id = path_id(p, "/api/v1/runs", &tail)) && get && !*tail) {
		json_t *run = run_json(r->c, id, true);
		if (run)
			api_json(r->reply, r->arg, 200, run);
		else
			api_error(r->reply, r->arg, 404, "no run %llu", (unsigned long long)id);
	} else if (id && get && strcmp(tail, "/log") == 0) {
		get_run_log(r, id);
	} else if (id && get && strcmp(tail, "/log.txt") == 0) {
		get_run_log_text(r, id);
	} else if (id && get && strcmp(tail, "/jobs") == 0) {
		json_t *run = run_json(r->c, id, true);
		if (run)
			api_json(r->reply, r->arg, 200,
				 json_pack("{s:O}", "jobs", json_object_get(run, "jobs")));
		else
			api_error(r->reply, r->arg, 404, "no run %llu", (unsigned long long)id);
		json_decref(run);
	} else if (id && get && strcmp(tail, "/artifacts") == 0) {
		get_artifacts(r, id);
	} else if (id && get && strncmp(tail, "/artifacts/", 11) == 0 &&
		   strlen(tail) > 20 && strcmp(tail + strlen(tail) - 9, "/download") == 0) {
		_cleanup_free_ char *enc = strndup(tail + 11, strlen(tail) - 11 - 9);
		_cleanup_free_ char *name = url_decode(enc);
		download_artifact(r, id, name);
	} else if ((id = path_id(p, "/api/v1/jobs", &tail)) && get && !*tail) {
		get_job(r, id);
	} else if (id && get && strcmp(tail, "/log") == 0) {
		get_job_log(r, id);
	} else if (id && get && strcmp(tail, "/log.txt") == 0) {
		get_job_log_text(r, id);
	} else if (id && get && strcmp(tail, "/steps") == 0) {
		api_json(r->reply, r->arg, 200, json_pack("{s:o}", "steps", steps_json(r->c, id)));
	} else if (strcmp(p, "/api/v1/agents") == 0 && get) {
		get_agents(r);
	} else if (strncmp(p, "/api/v1/blobs/", 14) == 0 && get) {
		get_blob(r, p + 14);
	} else if (strncmp(p, "/api/v1/", 8) == 0 || strcmp(p, "/api/v1") == 0) {
		api_error(r->reply, r->arg, get || post ? 404 : 405, "no route for %s %s", m, p);
	} else {
		api_error(r->reply, r->arg, 404, "not found: %s", p);
	}
}

void api_serve(api_req *r)
{
	if (!r->query)
		r->query = "";
	serve(r);
}

/* A parked long poll, served again: it was let in the first time through. */
static void serve_waiter(coord *c, api_waiter *w, int64_t deadline)
{
	api_req r = {.c = c, .method = w->method, .path = w->path, .query = w->query,
		     .trusted = true, .reply = w->reply, .arg = w->arg, .deadline_ms = deadline};
	serve(&r);
	free(w->method);
	free(w->path);
	free(w->query);
	free(w);
}

void api_notify_run(coord *c, uint64_t run_id)
{
	api_waiter *mine = NULL;
	for (api_waiter **p = &c->waiters; *p;) {
		api_waiter *w = *p;
		if (w->run_id == run_id) {
			*p = w->next;
			w->next = mine;
			mine = w;
		} else {
			p = &w->next;
		}
	}
	while (mine) {
		api_waiter *w = mine;
		mine = w->next;
		serve_waiter(c, w, w->deadline_ms);
	}
}

void api_expire(coord *c, int64_t now_ms, bool all)
{
	api_waiter *due = NULL;
	for (api_waiter **p = &c->waiters; *p;) {
		api_waiter *w = *p;
		if (all || w->deadline_ms <= now_ms) {
			*p = w->next;
			w->next = due;
			due = w;
		} else {
			p = &w->next;
		}
	}
	while (due) {
		api_waiter *w = due;
		due = w->next;
		serve_waiter(c, w, 1); /* a deadline in the past: answer as it is */
	}
}
