/*
 * internal — what the coordinator's modules share. The rule of the house:
 * every field below marked (core) is touched only on the core thread; other
 * threads (nng callbacks, HTTP, planner workers) post closures with
 * core_post() and never read or write state themselves.
 */
#ifndef KILN_COORD_INTERNAL_H
#define KILN_COORD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <sqlite3.h>

#include "common/crypto.h"
#include "common/util.h"
#include "coordinator/coord.h"
#include "kiln.pb-c.h"

typedef struct coord_event coord_event;
typedef void (*core_fn)(coord *c, void *arg);

typedef struct bus bus;
typedef struct bus_ctx bus_ctx;
typedef struct http_srv http_srv;
typedef struct logfile logfile;
typedef struct runlog runlog;
typedef struct blobs blobs;
struct kiln_cas;

/* An agent the coordinator knows, in memory (core). */
typedef struct coord_agent {
	char *id, *name, *session_digest;
	kiln_strv labels;
	uint32_t capacity;
	int64_t last_seen_ms;
	uint32_t pipe;          /* nng pipe its last request came on */
	bus_ctx *parked;        /* the Poll being held, or NULL */
	int64_t parked_until_ms;
	uint64_t last_poll_seq;
	uint64_t last_assigned; /* job given in answer to last_poll_seq, for resends */
	bool lost;
	struct coord_agent *next;
} coord_agent;

/* An API request waiting for something to change in a run (core). */
typedef struct api_waiter {
	uint64_t run_id;
	int64_t deadline_ms;
	char *method, *path, *query;
	coord_reply_fn reply;
	void *arg;
	struct api_waiter *next;
} api_waiter;

/* An open log file of a job attempt or a run (core). */
typedef struct open_log {
	uint64_t id;      /* job id or run id */
	uint32_t attempt; /* 0 for a run's log */
	logfile *f;       /* a job attempt's */
	runlog *r;        /* a run's */
	struct open_log *next;
} open_log;

struct coord {
	coord_config cfg;
	char *data_dir, *cas_dir, *cache_db, *default_branch;
	kiln_key key; /* seals secrets at rest: DATA/secret.key, made 0600 on first start */
	char *bus_url, *http_url;

	/* the event queue */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	coord_event *head, *tail;
	bool stopping;
	pthread_t core_thread;
	bool core_running;
	int planners; /* planner threads in flight (under mu) */
	pthread_cond_t idle_cv; /* signalled when planners drops to 0 */

	/* (core) */
	sqlite3 *db;
	struct stmt_cache *stmts;
	coord_agent *agents;
	api_waiter *waiters;
	open_log *logs;
	int64_t next_tick_ms;
	bool draining; /* shutting down: long polls answer at once */

	bus *bus;
	http_srv *http;
	blobs *blobs;

	/* the daily garbage-collection pass (gc.c) */
	pthread_t gc_thread;
	bool gc_running, gc_stop;
	pthread_cond_t gc_cv;

	/* checkpoints the WAL on its own connection, so fsyncs never stall the core thread */
	pthread_t ckpt_thread;
	bool ckpt_running, ckpt_stop;
	pthread_cond_t ckpt_cv;
};

/* core.c */
/* A one-shot flag another thread waits on. */
typedef struct sync_flag {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
} sync_flag;
#define SYNC_FLAG_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false}
void sync_flag_set(sync_flag *f);
void sync_flag_wait(sync_flag *f);
/* Queues fn(c, arg) to run on the core thread; thread-safe. */
void core_post(coord *c, core_fn fn, void *arg);

/* store.c — SQLite on the core thread */
int store_open(coord *c);
void store_close(coord *c);
/* Prepares (once, cached by the sql pointer) and binds: types is a string of 'i' (int64_t),
   't' (const char *, NULL binds NULL), 'd' (double). Returns a statement to step; reset by store_done. */
sqlite3_stmt *store_q(coord *c, const char *sql, const char *types, ...);
/* Steps a statement built by store_q to completion and resets it; returns SQLITE_DONE or an error. */
int store_x(coord *c, const char *sql, const char *types, ...);
void store_done(sqlite3_stmt *st);
int store_begin(coord *c);
int store_commit(coord *c);
void store_rollback(coord *c);
/* Column helpers that map NULL to "" or 0. */
const char *col_text(sqlite3_stmt *st, int i);

/* bus.c — the nng REP socket */
int bus_start(coord *c);
/* Closes the socket and waits for every callback; contexts stay allocated until bus_free. */
void bus_close(coord *c);
void bus_free(coord *c);
/* Sends resp (packed, then freed by the caller) as the answer to ctx; any thread. */
void bus_reply(bus_ctx *ctx, const Kiln__Response *resp);
/* The nng pipe a request arrived on. */
uint32_t bus_ctx_pipe(const bus_ctx *ctx);

/* blobs.c — the content-addressed store and the requests that move blobs (a worker thread) */
int blobs_start(coord *c);
/* Lets the worker finish what is queued and end (new requests are refused). */
void blobs_stop(coord *c);
void blobs_free(coord *c);
/* The coordinator's store (thread-safe). */
struct kiln_cas *blobs_cas(coord *c);
/* For a commit, once its manifest and blobs are checked (core); must answer ctx. */
typedef void (*blobs_done_fn)(coord *c, bus_ctx *ctx, Kiln__Request *req, void *arg);
/* Hands a blob request (owned from now on) to the worker, which answers ctx; a cache or
   artifact commit is checked there and then finished by done on the core thread. */
void blobs_request(coord *c, bus_ctx *ctx, Kiln__Request *req, blobs_done_fn done, void *arg);

/* caches.c — actions/cache entries and artifacts (core) */
/* Answers a blob, cache or artifact request; true when req was handed on (no longer ours). */
bool caches_request(coord *c, bus_ctx *ctx, Kiln__Request *req);

/* sched.c — agents, polls, dispatch, job and run state (core) */
void sched_load(coord *c);
/* Answers an agent's request; true when req was handed on (no longer the caller's). */
bool sched_request(coord *c, bus_ctx *ctx, Kiln__Request *req);
void sched_pipe_gone(coord *c, uint32_t pipe);
void sched_tick(coord *c, int64_t now_ms);
void sched_kick(coord *c);
/* The `github` context of a run (and job). */
json_t *coord_github_context(uint64_t run_id, int64_t number, uint32_t attempt, const char *repo,
			     const char *sha, const char *ref, const char *event, const char *workflow,
			     const char *job);
/* Cancels a job: a queued one ends now; a running one is stopped on its agent. */
void sched_cancel_job(coord *c, uint64_t job_id, const char *why);
/* Starts the ready jobs of a run, skips those whose needs failed, closes the run when done. */
void sched_advance_run(coord *c, uint64_t run_id);
void sched_shutdown(coord *c);

/* expand.c (core) */
struct kiln_expr_ctx;
/* Evaluates every ${{ }} in a JSON value from YAML: a string that is one whole expression
   becomes its value (keeping its type), other strings are interpolated. */
int coord_eval_tree(const json_t *v, const struct kiln_expr_ctx *x, json_t **out);
/* Expands job `job_id` (a template row) into its matrix instances with these contexts
   (github, needs, inputs, vars); returns the number of instances or <0. */
int coord_expand_job(coord *c, uint64_t job_id, json_t *contexts);

/* planner.c */
/* Handles POST /api/v1/runs: plans in a worker thread, writes the run on the core thread. */
void planner_submit(coord *c, json_t *body, coord_reply_fn reply, void *arg);

/* api.c (core) */
/* An API request being served (core). */
typedef struct api_req {
	coord *c;
	const char *method, *path, *query;
	const char *body;     /* NULL when there is none */
	size_t body_len;
	const char *const *headers; /* name/value pairs, NULL-terminated; NULL in-process */
	bool trusted;         /* in-process: no authentication */
	coord_reply_fn reply;
	void *arg;
	int64_t deadline_ms;  /* a long poll served again: its deadline; 0 the first time */
} api_req;
void api_serve(api_req *r);
/* A request header's value (name in any case), or NULL. */
const char *api_header(const api_req *r, const char *name);
/* The value of `key` in the query string, percent-decoded, or NULL; owned. */
char *api_query(const api_req *r, const char *key);
/* The query's integer `key` within [lo, hi], def when absent or malformed. */
int64_t api_query_int(const api_req *r, const char *key, int64_t def, int64_t lo, int64_t hi);
/* The body as a JSON object (new reference), or NULL after replying 400. */
json_t *api_body_object(api_req *r);
/* Replies with a text body of this content type (body owned by the callee). */
void api_text(api_req *r, int status, const char *content_type, char *body);
/* Route handlers of other modules: each returns true when it served the request. */
/* Re-runs waiting requests of this run (something changed in it). */
void api_notify_run(coord *c, uint64_t run_id);
void api_expire(coord *c, int64_t now_ms, bool all);
/* Replies with {"error": msg} and the status. */
void api_error(coord_reply_fn reply, void *arg, int status, const char *fmt, ...) KILN_PRINTF(4, 5);
/* Replies with the JSON value (stolen). */
void api_json(coord_reply_fn reply, void *arg, int status, json_t *v);

/* logs.c */
typedef void (*logfile_line_fn)(void *arg, uint64_t index, const char *line, size_t len);
int logfile_open(const char *path, logfile **out);
void logfile_close(logfile *f);
uint64_t logfile_count(const logfile *f);
uint64_t logfile_bytes(const logfile *f);
/* The number the last line starts with (for a job log: the highest sequence stored). */
uint64_t logfile_last_key(const logfile *f);
/* The words that end a log's truncation marker line. */
#define LOGFILE_CAP_MARK "later lines were dropped."
/* Whether the log ends with its truncation marker (also after a reopen). */
bool logfile_capped(const logfile *f);
void logfile_set_capped(logfile *f);
int logfile_append(logfile *f, const char *line, size_t len);
/* Appends complete lines ("…\n…\n") with one write; all or nothing. */
int logfile_append_lines(logfile *f, const char *buf, size_t len);
/* Calls fn for lines [offset, offset+max_lines) while under max_bytes; returns lines read. */
int64_t logfile_read(logfile *f, uint64_t offset, size_t max_lines, size_t max_bytes,
		     logfile_line_fn fn, void *arg);
/* A run's log is an index over its jobs' logs: one segment per stored batch, in the order
   they were stored (a job's lines are never stored twice). */
int runlog_open(const char *path, runlog **out);
void runlog_close(runlog *r);
uint64_t runlog_count(const runlog *r);
/* Records that lines first_seq .. first_seq+count-1 of the job attempt's log were stored. */
int runlog_append(runlog *r, uint64_t job, uint32_t attempt, uint64_t first_seq, uint64_t count);
/* A run's line: which job attempt it is from, and the stored line. */
typedef void (*runlog_line_fn)(void *arg, uint64_t job, uint32_t attempt, const char *line,
			       size_t len);
/* Reads the run's lines [offset, offset+max_lines) from the job logs (core); returns how many. */
int64_t runlog_read(coord *c, runlog *r, uint64_t offset, size_t max_lines, size_t max_bytes,
		    runlog_line_fn fn, void *arg);

/* The file of a job attempt's log (attempt>0) or a run's index (attempt 0); owned. */
char *coord_log_path(const coord *c, uint64_t id, uint32_t attempt);
/* The open log of a job attempt (attempt>0), opened on demand (core). */
logfile *coord_log(coord *c, uint64_t id, uint32_t attempt);
/* The open index of a run's log, opened on demand (core). */
runlog *coord_runlog(coord *c, uint64_t run_id);
/* A job attempt's log to read from: the open one, or one opened for the caller (*temp set,
   close it with logfile_close); NULL when it has no lines yet. */
logfile *coord_log_peek(coord *c, uint64_t id, uint32_t attempt, bool *temp);
void coord_log_close(coord *c, uint64_t id, uint32_t attempt);

/* http.c */
int http_start(coord *c);
void http_stop(coord *c);

/* Names for the enums, as stored and shown. */
const char *conclusion_name(int conclusion);

#endif
