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
	bool disabled;          /* takes no new jobs */
	bool draining;          /* its last Poll said it is shutting down: no new jobs */
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
	kiln_key key; /* seals secrets at rest: DATA/secret.key, made 0600 on first start (core:
	                 coord_seal/coord_unseal reload it after a rotation) */
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
	int64_t revoked_checked_ms; /* last look for agent tokens revoked beside us (auth.c) */
	struct triggers *triggers; /* triggers.c: deliveries in flight, the cron clock */

	bus *bus;
	http_srv *http;
	blobs *blobs;
	struct forge *forge;     /* commit statuses and notifications (forge.c) */
	struct metrics *metrics; /* counters for /metrics (metrics.c) */

	/* the daily garbage-collection pass (gc.c) */
	pthread_t gc_thread;
	bool gc_running, gc_stop;
	pthread_cond_t gc_cv;

	/* checkpoints the WAL on its own connection, so fsyncs never stall the core thread */
	pthread_t ckpt_thread;
	bool ckpt_running, ckpt_stop;
	bool ckpt_dirty; /* committed since the last checkpoint (under mu) */
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
/* Adds a column to a table of an older database (a no-op once it is there). */
int store_add_column(coord *c, const char *table, const char *column, const char *decl);
/* Column helpers that map NULL to "" or 0. */
const char *col_text(sqlite3_stmt *st, int i);

/* bus.c — the nng REP socket */
int bus_start(coord *c);
/* Closes the socket and waits for every callback; contexts stay allocated until bus_free. */
void bus_close(coord *c);
void bus_free(coord *c);
/* Sends resp (its protocol version filled in, packed, then freed by the caller) as the
   answer to ctx; any thread. */
void bus_reply(bus_ctx *ctx, Kiln__Response *resp);
/* Answers ctx with a status and a message only. */
void bus_reply_status(bus_ctx *ctx, Kiln__Status st, const char *msg);
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
/* Runs fn(c, cas, arg) on the blob worker (cas NULL when the coordinator is stopping: fn must
   still answer whoever waits); for work that reads many blobs. */
typedef void (*blobs_work_fn)(coord *c, struct kiln_cas *cas, void *arg);
void blobs_work(coord *c, blobs_work_fn fn, void *arg);

/* gates.c — concurrency groups and environments (core) */
/* Forgets an agent (sched.c). */
void sched_remove_agent(coord *c, coord_agent *a);

/* Cancels every job of the run that has not completed. */
void sched_cancel_run(coord *c, uint64_t run_id, const char *why);
/* A run advanced for the first time joins its concurrency group: the runs it cancels are
   pushed to `cancelled` (ids); false while it must wait for the group. */
bool gates_admit_run(coord *c, uint64_t run_id, kiln_strv *cancelled);
/* A run of a group has completed: the group's waiting run, now let in, or 0. */
uint64_t gates_run_done(coord *c, uint64_t run_id);
/* Jobs of the run just made ready enter their concurrency groups and wait for approvals;
   the other runs whose jobs this cancels are pushed to `touched` (ids). True when a job of
   any run changed state. */
bool gates_jobs(coord *c, uint64_t run_id, kiln_strv *touched);
/* The environment a job instance deploys to (expand.c). */
void gates_record_env(coord *c, int64_t job_id, const char *environment, const char *url);
/* find_ready_job's condition: no other job of the job's group is running. */
#define GATES_READY_SQL                                                                            \
	" AND (jobs.concurrency IS NULL OR jobs.concurrency = '' OR NOT EXISTS ("                  \
	"SELECT 1 FROM jobs o JOIN runs ro ON ro.id = o.run_id"                                    \
	" WHERE o.concurrency = jobs.concurrency AND o.state = 'running' AND o.id != jobs.id"      \
	" AND ro.repo = (SELECT repo FROM runs WHERE id = jobs.run_id)))"

/* caches.c — actions/cache entries and artifacts (core) */
/* Answers a blob, cache or artifact request; true when req was handed on (no longer ours). */
bool caches_request(coord *c, bus_ctx *ctx, Kiln__Request *req);

/* sched.c — agents, polls, dispatch, job and run state (core) */
void sched_load(coord *c);
/* Answers an agent's request; true when req was handed on (no longer the caller's). */
bool sched_request(coord *c, bus_ctx *ctx, Kiln__Request *req);
void sched_pipe_gone(coord *c, uint32_t pipe);
void sched_tick(coord *c, int64_t now_ms);
/* The next time something is due: a held poll to answer, an agent to declare lost, a long
   poll of the API to end; at most TICK_MAX_MS away (the periodic checks of other modules run
   at that pace when nothing else is due), so an idle coordinator wakes rarely. */
#define TICK_MAX_MS 5000
int64_t sched_next_deadline(coord *c, int64_t now_ms);
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
struct trig_req;
/* Plans the runs of a trigger in a worker thread, then writes them on the core thread and
   calls triggers_record (same transaction) and triggers_done. */
void planner_trigger(coord *c, struct trig_req *t);
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
	char who[64];         /* the token's name once authenticated ("" in-process) */
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
/* runs.c — cancel, rerun, reviews, environments, agents (core) */
bool runs_serve(api_req *r);
/* caches.c — GET /api/v1/caches, DELETE /api/v1/caches/ID */
bool caches_serve(api_req *r);
/* Re-runs waiting requests of this run (something changed in it). */
void api_notify_run(coord *c, uint64_t run_id);
void api_expire(coord *c, int64_t now_ms, bool all);
/* Replies with {"error": msg} and the status. */
void api_error(coord_reply_fn reply, void *arg, int status, const char *fmt, ...) KILN_PRINTF(4, 5);
/* Replies with the JSON value (stolen). */
void api_json(coord_reply_fn reply, void *arg, int status, json_t *v);

/* repos.c — repositories (core) */
typedef struct coord_repo {
	int64_t id;
	char *name, *url, *forge, *api_url, *default_branch, *notify_url;
	bool fork_secrets;
} coord_repo;
/* Loads a repository by name (or by id when name is NULL); -ENOENT when there is none. */
int repo_load(coord *c, const char *name, int64_t id, coord_repo *out);
void repo_clear(coord_repo *r);
/* A sealed setting opened: what = "token", "webhook_secret" or "notify_secret"; NULL when
   unset (owned; never log it). */
char *repo_secret(coord *c, const coord_repo *r, const char *what);
/* Whether name is OWNER/NAME (groups allowed: a/b/c). */
bool repo_name_valid(const char *name);
/* A repository name from a URL path piece (percent-decoded, validated), or NULL; owned. */
char *repo_path_name(const char *s, size_t n);
/* Gives runs the columns of triggered runs (schema 4); on open. */
int repos_migrate(coord *c);
/* POST/GET /api/v1/repos, DELETE /api/v1/repos/NAME. */
bool repos_serve(api_req *r);

/* hooks.c — POST /hooks/github, /hooks/gitea, /hooks/gitlab (core) */
bool hooks_serve(api_req *r);
/* Whether `sig` is the HMAC-SHA256 of body under secret: "sha256=<hex>" (GitHub) or bare
   hex (Gitea, prefixed false); constant time. */
bool hooks_signature_ok(const char *secret, const void *body, size_t len, const char *sig,
			bool prefixed);

/* triggers.c — forge events made uniform, deliveries, schedules, workflow_run (core) */
typedef struct trig_event {
	char *event;    /* push, pull_request, create, workflow_dispatch, schedule, workflow_run,
			   repository_dispatch; "refresh" re-reads the default branch's triggers */
	char *action;   /* activity type, or NULL */
	char *ref;      /* the run's full ref; NULL: the default branch */
	char *sha;      /* the commit, or NULL: what ref points at */
	char *before;   /* push: the previous tip ("" new branch); pull_request: the base commit */
	char *base_ref; /* pull_request: the base branch; workflow_run: the triggering branch */
	char *fetch_ref; /* a ref to fetch besides branches and tags (refs/pull/N/head) */
	char *actor, *message;
	char *workflow; /* one workflow file only (dispatch, schedule), or NULL */
	char *cron;     /* schedule: the cron that fired */
	char *trigger_workflow; /* workflow_run: the triggering workflow's name */
	int64_t pr_number;
	bool fork;
	int depth;       /* workflow_run chain level */
	json_t *payload; /* github.event (owned) */
	json_t *inputs;  /* workflow_dispatch: as given (owned) */
} trig_event;
void trig_event_clear(trig_event *e);
/* Reads a forge's webhook payload: 0 with *out filled; 1 when it starts nothing (*why says
   why: a ping, a deletion, an event kiln does not take); <0 when malformed. Any thread. */
int triggers_parse(const char *forge, const char *event, json_t *payload, trig_event *out,
		   const char **why);
/* A planning request for one event of a repository (owned by the planner once submitted). */
typedef struct trig_req {
	int64_t repo_id;
	char *repo_name, *url, *token, *default_branch, *forge;
	char *hook_event, *payload_text; /* a delivery: parsed on the worker */
	trig_event ev;                   /* ready when payload_text is NULL */
	int64_t delivery_id;             /* 0: none */
	coord_reply_fn reply;            /* API callers (dispatch); NULL for deliveries */
	void *arg;
	/* results, set by the planner */
	int status;
	char *error;
	bool retry;        /* failed for now (fetch): try again later */
	json_t *triggers;  /* [[workflow, kind, value]] read at the default branch, or NULL */
} trig_req;
void trig_req_free(trig_req *t);
/* Within the planner's transaction: records the outcome of t (delivery state, triggers). */
void triggers_record(coord *c, trig_req *t, const uint64_t *runs, size_t n);
/* After it: answers the API caller, frees t. */
void triggers_done(coord *c, trig_req *t, const uint64_t *runs, size_t n);
/* Plans the pending deliveries now. */
void triggers_kick(coord *c);
/* Re-reads a repository's schedules and workflow_run listeners from its default branch. */
void triggers_refresh(coord *c, int64_t repo_id);
/* Every tick: pending deliveries, cron schedules, workflow_run events, pruning. */
void triggers_tick(coord *c, int64_t now_ms);
void triggers_free(coord *c);
/* POST /api/v1/repos/NAME/dispatch, /repository_dispatch, /api/v1/schedules/tick. */
bool triggers_serve(api_req *r);
/* Completes a run's contexts ({"github":…, "inputs":…}) with what its trigger brought:
   github.event (the payload), repository, actor, head_ref/base_ref; inputs of a dispatch. */
void coord_run_contexts(coord *c, uint64_t run_id, json_t *contexts);

/* auth.c — API tokens with scopes, agent registration and agent tokens (core) */
typedef enum auth_scope { AUTH_NONE = 0, AUTH_READ = 1, AUTH_RUN = 2, AUTH_ADMIN = 3 } auth_scope;
/* Authenticates an HTTP request for its route's scope and serves /api/v1/tokens and
   /api/v1/secrets; true when it replied (401, 403, or the route's answer). */
bool auth_serve(api_req *r);
/* The scope a route needs (auth.c's table). */
auth_scope auth_route_scope(const char *method, const char *path);
const char *auth_scope_name(auth_scope s);
int auth_scope_parse(const char *s, auth_scope *out);
/* Makes a token of kind api (with scope), registration or agent (for agent_id); the token
   (*token) is shown once, only its digest is kept. */
int auth_token_create(coord *c, const char *kind, auth_scope scope, const char *name,
		      const char *agent_id, char **token, char **id);
/* Revokes a token by id; -ENOENT if unknown. */
int auth_token_revoke(coord *c, const char *id);
/* Every token (never the token itself) as a JSON array. */
json_t *auth_token_list(coord *c);
/* Ends the sessions of agents whose agent token was revoked. */
void auth_drop_revoked_agents(coord *c);
/* Once a second: the same for tokens revoked by `kiln-coordinator token revoke`. */
void auth_tick(coord *c, int64_t now_ms);
/* What a Register's token allows. */
typedef struct auth_reg {
	char *agent_id; /* owned: the agent its agent token names; NULL: a new agent */
	bool issue;     /* give the agent a (new) agent token */
	bool open;      /* let in without a token: registration is open */
} auth_reg;
/* Checks a Register's token; -EACCES (message set) when registration is refused. */
int auth_register(coord *c, const char *token, auth_reg *out);
/* A new agent token for the agent (its earlier ones are revoked). */
int auth_issue_agent_token(coord *c, const char *agent_id, const char *name, char **token);
/* The store without a running coordinator (kiln-coordinator token …); no core thread. */
int coord_open_offline(const coord_config *cfg, coord **out);
void coord_close_offline(coord *c);

/* secrets.c — sealed values at rest and the secrets a job gets (core) */
/* Loads DATA/secret.key (made 0600 on first start), finishing or undoing a key rotation
   that a crash interrupted. */
int secrets_key_load(const char *data_dir, kiln_key *out);
/* kiln_seal/kiln_unseal with c->key, picking up a key rotated beside the running coordinator.
   Contexts for other tables' sealed columns: "TABLE.COLUMN:ROWNAME", and the column listed in
   secrets.c's sealed_columns so that `key rotate` re-seals it. */
int coord_seal(coord *c, const char *context, const void *plaintext, size_t len, char **out);
int coord_unseal(coord *c, const char *context, const char *sealed, char **out, size_t *len);
/* Serves /api/v1/secrets/…; true when the path was its. */
bool secrets_serve(api_req *r);
/* OWNER/NAME of a run's repository (as given: OWNER/NAME, a clone URL or a path, whose last
   two parts count), or NULL; owned. */
char *secrets_repo_name(const char *repo);
/* The secret names a job spec's expressions reference (upper case), and whether one uses the
   secrets context as a whole. */
void secrets_scan_refs(json_t *spec, kiln_strv *names, bool *all);
/* The `secrets` context of a job: only what its spec references, none for pull requests
   from forks; every value is also pushed to masks. */
json_t *secrets_for_job(coord *c, uint64_t run_id, uint64_t job_id, const char *repo,
			json_t *spec, kiln_strv *masks);

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
struct nng_tls_config;
/* A server TLS configuration from the tls_cert/tls_key settings; with client_certs and a
   tls_ca setting, peers must present a certificate that CA signed. *out is the caller's. */
int coord_tls_config(coord *c, bool client_certs, struct nng_tls_config **out);

/* forge.c — commit statuses and notification webhooks, sent from a thread of their own */
/* Loads what is left to send from the store and starts the sender (before the core thread). */
int forge_start(coord *c);
/* Stops the sender (what it has not delivered stays in the store); the core thread still runs. */
void forge_stop(coord *c);
void forge_free(coord *c);
/* Queues the statuses of the run's jobs that changed, and its notification once it completed
   (core). */
void forge_run_changed(coord *c, uint64_t run_id);
/* A job was assigned to an agent: its dispatch latency, and its status (core). */
void forge_job_assigned(coord *c, uint64_t run_id, uint64_t job_id, int64_t now_ms);
/* Appends the forge's figures to a /metrics answer (core). */
void forge_metrics(coord *c, kiln_buf *b);

/* metrics.c — GET /metrics (core) */
int metrics_start(coord *c);
void metrics_stop(coord *c);
/* Serves /metrics; false for other paths. */
bool metrics_serve(api_req *r);
/* Records the dispatch latency of a job assigned now (its ready_ms to now_ms). */
void metrics_job_assigned(coord *c, uint64_t job_id, int64_t now_ms);
/* Counts an actions/cache lookup. */
void metrics_cache_lookup(coord *c, bool hit);

/* Names for the enums, as stored and shown. */
const char *conclusion_name(int conclusion);

#endif
