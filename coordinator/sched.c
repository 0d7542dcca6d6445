/*
 * sched — agents, their polls, and the life of jobs and runs; core thread only.
 *
 * A job is `queued` until its needs have finished; then it is `ready` (or
 * `skipped` if a need did not succeed). A ready job goes to the first agent
 * holding a Poll whose labels include every label of the job's `runs-on`
 * (an agent labelled "*" takes anything). The answer to that Poll carries
 * the assignment and the job becomes `running` with a new attempt number.
 * Updates and log lines name (job, attempt), so a resend is harmless and a
 * stale attempt cannot overwrite a newer one. An agent that holds no Poll
 * for lost_after_ms is lost; its running jobs are retried or failed.
 */
#include "coordinator/internal.h"

#include "common/expr.h"
#include "common/logline.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Answers a Poll: with a job, a cancellation, or (pr NULL) nothing. */
static void reply_poll(bus_ctx *ctx, Kiln__PollReply *pr)
{
	Kiln__PollReply none = KILN__POLL_REPLY__INIT;
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
	resp.body_case = KILN__RESPONSE__BODY_POLL;
	resp.poll = pr ? pr : &none;
	bus_reply(ctx, &resp);
}

static void reply_poll_empty(bus_ctx *ctx)
{
	reply_poll(ctx, NULL);
}

static coord_agent *agent_by_id(coord *c, const char *id)
{
	for (coord_agent *a = c->agents; a; a = a->next)
		if (strcmp(a->id, id) == 0)
			return a;
	return NULL;
}

static coord_agent *agent_by_session(coord *c, const char *session)
{
	char digest[65];
	if (!session || !*session)
		return NULL;
	kiln_sha256_hex(session, strlen(session), digest);
	for (coord_agent *a = c->agents; a; a = a->next)
		if (strcmp(a->session_digest, digest) == 0)
			return a;
	return NULL;
}

static void labels_from_json(kiln_strv *out, const char *text)
{
	json_t *v = json_loads(text, 0, NULL);
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e)
	{
		if (json_is_string(e))
			kiln_strv_push(out, json_string_value(e));
	}
	json_decref(v);
}

static char *labels_to_json(char **v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	char *s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return s;
}

void sched_load(coord *c)
{
	int64_t now = kiln_now_ms();
	sqlite3_stmt *st =
		store_q(c, "SELECT id, name, labels, capacity, session_digest, disabled FROM agents",
			NULL);
	while (sqlite3_step(st) == SQLITE_ROW) {
		coord_agent *a = kiln_calloc(1, sizeof *a);
		a->id = kiln_strdup(col_text(st, 0));
		a->name = kiln_strdup(col_text(st, 1));
		labels_from_json(&a->labels, col_text(st, 2));
		a->capacity = (uint32_t)sqlite3_column_int(st, 3);
		a->session_digest = kiln_strdup(col_text(st, 4));
		a->disabled = sqlite3_column_int(st, 5) != 0;
		/* every agent gets a full lost_after_ms to come back after a restart */
		a->last_seen_ms = now;
		a->next = c->agents;
		c->agents = a;
	}
	store_done(st);
}

/* Does an agent with these labels take a job that runs on `runs_on` (a JSON array)? */
static bool labels_match(const coord_agent *a, const char *runs_on)
{
	if (kiln_strv_contains(&a->labels, "*"))
		return true;
	kiln_strv want = {0};
	labels_from_json(&want, runs_on);
	bool ok = true;
	for (size_t i = 0; i < want.n && ok; i++)
		ok = kiln_strv_contains(&a->labels, want.v[i]);
	kiln_strv_free(&want);
	return ok;
}

/* How many instances of the job's matrix run now (for max-parallel). */
static int64_t running_siblings(coord *c, int64_t run_id, const char *key)
{
	sqlite3_stmt *st = store_q(c,
				   "SELECT count(*) FROM jobs WHERE run_id = ? AND key = ?"
				   " AND state = 'running'",
				   "it", run_id, key);
	int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	store_done(st);
	return n;
}

static uint64_t find_ready_job(coord *c, const coord_agent *a)
{
	typedef struct cand {
		int64_t id, run_id, max_parallel;
		char *key;
	} cand;
	cand *cs = NULL;
	size_t n = 0;
	sqlite3_stmt *st = store_q(c,
				   "SELECT id, runs_on, run_id, key,"
				   " coalesce(json_extract(strategy, '$.\"max-parallel\"'), 0)"
				   " FROM jobs WHERE state = 'queued' AND ready = 1" GATES_READY_SQL
				   " ORDER BY ready_ms, id",
				   NULL);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (!labels_match(a, col_text(st, 1)))
			continue;
		cs = kiln_realloc(cs, (n + 1) * sizeof *cs);
		cs[n].id = sqlite3_column_int64(st, 0);
		cs[n].run_id = sqlite3_column_int64(st, 2);
		cs[n].key = kiln_strdup(col_text(st, 3));
		cs[n].max_parallel = sqlite3_column_int64(st, 4);
		n++;
		if (cs[n - 1].max_parallel <= 0)
			break; /* no limit: this one will do */
	}
	store_done(st);
	uint64_t found = 0;
	for (size_t i = 0; i < n && !found; i++)
		if (cs[i].max_parallel <= 0 ||
		    running_siblings(c, cs[i].run_id, cs[i].key) < cs[i].max_parallel)
			found = (uint64_t)cs[i].id;
	for (size_t i = 0; i < n; i++)
		free(cs[i].key);
	free(cs);
	return found;
}

/* A cancellation this agent has not been told of yet: answers ctx with it and returns true. */
static bool deliver_cancel(coord *c, coord_agent *a, bus_ctx *ctx)
{
	sqlite3_stmt *st = store_q(c,
				   "SELECT id, attempt FROM jobs WHERE agent_id = ? AND state = 'running'"
				   " AND cancel_requested = 1 AND cancel_sent = 0 LIMIT 1",
				   "t", a->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		return false;
	}
	int64_t id = sqlite3_column_int64(st, 0);
	uint32_t attempt = (uint32_t)sqlite3_column_int(st, 1);
	store_done(st);
	store_x(c, "UPDATE jobs SET cancel_sent = 1 WHERE id = ?", "i", id);
	Kiln__Cancel cn = KILN__CANCEL__INIT;
	cn.job_id = (uint64_t)id;
	cn.attempt = attempt;
	Kiln__PollReply pr = KILN__POLL_REPLY__INIT;
	pr.what_case = KILN__POLL_REPLY__WHAT_CANCEL;
	pr.cancel = &cn;
	reply_poll(ctx, &pr);
	kiln_log(KILN_LOG_INFO, "job %lld attempt %u: cancel sent to agent %s", (long long)id,
		 attempt, a->name);
	return true;
}

void sched_cancel_job(coord *c, uint64_t job_id, const char *why)
{
	int64_t now = kiln_now_ms();
	store_x(c,
		"UPDATE jobs SET state = 'completed', conclusion = 'cancelled', finished_ms = ?,"
		" message = ? WHERE id = ? AND state IN ('queued', 'waiting')",
		"iti", now, why, (int64_t)job_id);
	store_x(c,
		"UPDATE steps SET state = 'completed', conclusion = 'cancelled' WHERE job_id = ?"
		" AND state != 'completed' AND (SELECT state FROM jobs WHERE id = ?) = 'completed'",
		"ii", (int64_t)job_id, (int64_t)job_id);
	store_x(c,
		"UPDATE jobs SET cancel_requested = 1, message = ? WHERE id = ? AND state = 'running'",
		"ti", why, (int64_t)job_id);
}

/* Key/value pairs from a JSON array of [k, v] pairs; strings borrowed from the JSON. */
static Kiln__KeyValue **kv_from_json(json_t *arr, size_t *n)
{
	size_t len = json_array_size(arr);
	*n = len;
	if (!len)
		return NULL;
	Kiln__KeyValue **v = kiln_calloc(len, sizeof *v);
	Kiln__KeyValue *kvs = kiln_calloc(len, sizeof *kvs);
	for (size_t i = 0; i < len; i++) {
		json_t *pair = json_array_get(arr, i);
		kiln__key_value__init(&kvs[i]);
		kvs[i].key = (char *)json_string_value(json_array_get(pair, 0));
		kvs[i].value = (char *)json_string_value(json_array_get(pair, 1));
		if (!kvs[i].key)
			kvs[i].key = "";
		if (!kvs[i].value)
			kvs[i].value = "";
		v[i] = &kvs[i];
	}
	return v;
}

static void kv_free(Kiln__KeyValue **v)
{
	if (v)
		free(v[0]);
	free(v);
}

static char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return (char *)(s ? s : "");
}

/* Aggregates the `needs` context for a list of job keys from (key, state, conclusion, outputs)
   rows of a run: a matrix job's result is failure if any instance failed, its outputs merged. */
static json_t *needs_context(coord *c, uint64_t run_id, json_t *keys)
{
	json_t *needs = json_object();
	size_t i;
	json_t *k;
	json_array_foreach(keys, i, k)
	{
		const char *key = json_string_value(k);
		if (key)
			json_object_set_new(needs, key, json_pack("{s:s, s:{}}", "result", "skipped",
								  "outputs"));
	}
	sqlite3_stmt *st = store_q(c, "SELECT key, conclusion, outputs FROM jobs WHERE run_id = ?"
				      " ORDER BY id", "i", (int64_t)run_id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *n = json_object_get(needs, col_text(st, 0));
		if (!n)
			continue;
		const char *concl = col_text(st, 1);
		const char *have = json_string_value(json_object_get(n, "result"));
		/* failure beats cancelled beats success beats skipped */
		int rank_new = !strcmp(concl, "failure") ? 3 : !strcmp(concl, "cancelled") ? 2
			       : !strcmp(concl, "success") ? 1 : 0;
		int rank_old = !strcmp(have, "failure") ? 3 : !strcmp(have, "cancelled") ? 2
			       : !strcmp(have, "success") ? 1 : 0;
		if (rank_new > rank_old)
			json_object_set_new(n, "result", json_string(concl));
		json_t *outs = json_loads(col_text(st, 2), 0, NULL);
		if (json_is_object(outs))
			json_object_update(json_object_get(n, "outputs"), outs);
		json_decref(outs);
	}
	store_done(st);
	return needs;
}

/* The `inputs` of jobs in a called workflow: their call row's evaluated with:. */
static json_t *inputs_of(coord *c, uint64_t run_id, const char *parent)
{
	json_t *in = NULL;
	if (parent) {
		sqlite3_stmt *st = store_q(c, "SELECT inputs FROM jobs WHERE run_id = ? AND key = ?",
					   "it", (int64_t)run_id, parent);
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
			in = json_loads(col_text(st, 0), 0, NULL);
		store_done(st);
	}
	return json_is_object(in) ? in : (json_decref(in), json_object());
}

/* The `github` context of a run. */
json_t *coord_github_context(uint64_t run_id, int64_t number, uint32_t attempt, const char *repo,
			     const char *sha, const char *ref, const char *event, const char *workflow,
			     const char *job)
{
	char id[32], num[32], att[16];
	snprintf(id, sizeof id, "%llu", (unsigned long long)run_id);
	snprintf(num, sizeof num, "%lld", (long long)number);
	snprintf(att, sizeof att, "%u", attempt);
	const char *name = strncmp(ref, "refs/heads/", 11) == 0 ? ref + 11
			   : strncmp(ref, "refs/tags/", 10) == 0 ? ref + 10 : ref;
	const char *slash = strrchr(repo, '/');
	json_t *g = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{}}",
			      "event_name", event, "sha", sha, "ref", ref, "ref_name", name,
			      "ref_type", strncmp(ref, "refs/tags/", 10) == 0 ? "tag" : "branch",
			      "repository", repo, "run_id", id, "run_number", num, "run_attempt",
			      att, "workflow", workflow, "job", job, "server_url",
			      "https://github.com", "event");
	if (slash) {
		char owner[256];
		const char *start = repo;
		const char *prev = slash;
		while (prev > repo && prev[-1] != '/')
			prev--;
		if (prev > repo)
			start = prev;
		snprintf(owner, sizeof owner, "%.*s", (int)(slash - start), start);
		json_object_set_new(g, "repository_owner", json_string(owner));
	}
	return g;
}

/* Answers `ctx` with the assignment of job `id` (already marked running). */
static void send_assignment(coord *c, bus_ctx *ctx, uint64_t id)
{
	sqlite3_stmt *st = store_q(
		c,
		"SELECT j.id, j.run_id, j.attempt, j.key, j.name, j.spec, r.repo, r.sha, r.ref,"
		" r.worktree, r.workflow, r.event, r.number, j.needs, j.matrix, j.strategy, j.parent,"
		" j.timeout_minutes FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.id = ?",
		"i", (int64_t)id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		reply_poll_empty(ctx);
		return;
	}
	Kiln__JobAssignment ja = KILN__JOB_ASSIGNMENT__INIT;
	ja.job_id = (uint64_t)sqlite3_column_int64(st, 0);
	ja.run_id = (uint64_t)sqlite3_column_int64(st, 1);
	ja.attempt = (uint32_t)sqlite3_column_int(st, 2);
	_cleanup_free_ char *key = kiln_strdup(col_text(st, 3));
	_cleanup_free_ char *name = kiln_strdup(col_text(st, 4));
	json_t *spec = json_loads(col_text(st, 5), 0, NULL);
	_cleanup_free_ char *repo = kiln_strdup(col_text(st, 6));
	_cleanup_free_ char *sha = kiln_strdup(col_text(st, 7));
	_cleanup_free_ char *ref = kiln_strdup(col_text(st, 8));
	ja.worktree = sqlite3_column_int(st, 9) != 0;
	_cleanup_free_ char *workflow = kiln_strdup(col_text(st, 10));
	_cleanup_free_ char *event = kiln_strdup(col_text(st, 11));
	ja.run_number = (uint64_t)sqlite3_column_int64(st, 12);
	json_t *needs_keys = json_loads(col_text(st, 13), 0, NULL);
	json_t *matrix = sqlite3_column_type(st, 14) == SQLITE_NULL
				 ? json_object()
				 : json_loads(col_text(st, 14), 0, NULL);
	json_t *strategy = sqlite3_column_type(st, 15) == SQLITE_NULL
				   ? json_object()
				   : json_loads(col_text(st, 15), 0, NULL);
	_cleanup_free_ char *parent = sqlite3_column_type(st, 16) == SQLITE_NULL
					      ? NULL
					      : kiln_strdup(col_text(st, 16));
	double timeout = sqlite3_column_double(st, 17);
	store_done(st);

	json_t *contexts = json_pack(
		"{s:o, s:o, s:o, s:o, s:{}, s:{}}", "github",
		coord_github_context(ja.run_id, (int64_t)ja.run_number, ja.attempt, repo, sha, ref, event,
			       json_string_value(json_object_get(spec, "workflow_name"))
				       ? json_string_value(json_object_get(spec, "workflow_name"))
				       : workflow,
			       key),
		"needs", needs_context(c, ja.run_id, needs_keys), "matrix",
		matrix ? matrix : json_object(), "strategy", strategy ? strategy : json_object(),
		"vars", "secrets");
	json_object_set_new(contexts, "inputs", inputs_of(c, ja.run_id, parent));
	coord_run_contexts(c, ja.run_id, contexts); /* a triggered run's event, repository, actor */
	_cleanup_free_ char *repository = kiln_strdup(
		json_string_value(json_object_get(json_object_get(contexts, "github"), "repository")));
	/* only the secrets the job's expressions name; each is masked on the agent too */
	kiln_strv masks = {0};
	json_object_set_new(contexts, "secrets",
			    secrets_for_job(c, ja.run_id, ja.job_id, repo, spec, &masks));
	ja.masks = masks.v;
	ja.n_masks = masks.n;
	json_decref(needs_keys);
	_cleanup_free_ char *context_json = json_dumps(contexts, JSON_COMPACT);
	json_t *sc = json_object_get(contexts, "secrets");
	const char *sk;
	json_t *sv;
	json_object_foreach(sc, sk, sv)
		if (json_string_length(sv))
			explicit_bzero((char *)json_string_value(sv), json_string_length(sv));
	json_decref(contexts);
	ja.context_json = context_json;
	ja.outputs = kv_from_json(json_object_get(spec, "outputs"), &ja.n_outputs);

	ja.job_key = key;
	ja.name = name;
	ja.repo_url = repo;
	ja.sha = sha;
	ja.ref = ref;
	ja.workflow_file = workflow;
	ja.event = event;
	ja.repository = repository ? repository : repo;
	ja.env = kv_from_json(json_object_get(spec, "env"), &ja.n_env);
	ja.timeout_minutes = timeout > 0 ? timeout
					  : json_number_value(json_object_get(spec, "timeout_minutes"));
	json_t *defaults = json_object_get(spec, "defaults");
	ja.default_shell = jstr(defaults, "shell");
	ja.default_working_directory = jstr(defaults, "working_directory");

	json_t *steps = json_object_get(spec, "steps");
	ja.n_steps = json_array_size(steps);
	Kiln__StepSpec *ss = ja.n_steps ? kiln_calloc(ja.n_steps, sizeof *ss) : NULL;
	ja.steps = ja.n_steps ? kiln_calloc(ja.n_steps, sizeof *ja.steps) : NULL;
	for (size_t i = 0; i < ja.n_steps; i++) {
		json_t *s = json_array_get(steps, i);
		kiln__step_spec__init(&ss[i]);
		ss[i].name = jstr(s, "name");
		ss[i].run = jstr(s, "run");
		ss[i].shell = jstr(s, "shell");
		ss[i].working_directory = jstr(s, "working_directory");
		ss[i].id = jstr(s, "id");
		ss[i].uses = jstr(s, "uses");
		ss[i].if_cond = jstr(s, "if");
		ss[i].timeout_minutes = json_number_value(json_object_get(s, "timeout_minutes"));
		ss[i].continue_on_error = json_is_true(json_object_get(s, "continue_on_error"));
		ss[i].continue_on_error_expr = jstr(s, "continue_on_error_expr");
		ss[i].timeout_minutes_expr = jstr(s, "timeout_minutes_expr");
		ss[i].env = kv_from_json(json_object_get(s, "env"), &ss[i].n_env);
		ss[i].with = kv_from_json(json_object_get(s, "with"), &ss[i].n_with);
		ja.steps[i] = &ss[i];
	}

	Kiln__PollReply pr = KILN__POLL_REPLY__INIT;
	pr.what_case = KILN__POLL_REPLY__WHAT_JOB;
	pr.job = &ja;
	reply_poll(ctx, &pr);

	for (size_t i = 0; i < ja.n_steps; i++) {
		kv_free(ss[i].env);
		kv_free(ss[i].with);
	}
	free(ss);
	free(ja.steps);
	kv_free(ja.env);
	kv_free(ja.outputs);
	json_decref(spec);
	for (size_t i = 0; i < masks.n; i++)
		explicit_bzero(masks.v[i], strlen(masks.v[i]));
	kiln_strv_free(&masks);
	if (context_json)
		explicit_bzero(context_json, strlen(context_json));
}

/* Marks job `id` running on agent `a` with a new attempt and answers the agent's poll. */
static void assign(coord *c, coord_agent *a, bus_ctx *ctx, uint64_t id)
{
	int64_t now = kiln_now_ms();
	uint64_t run_id = 0;
	sqlite3_stmt *st = store_q(c, "SELECT run_id FROM jobs WHERE id = ?", "i", (int64_t)id);
	if (sqlite3_step(st) == SQLITE_ROW)
		run_id = (uint64_t)sqlite3_column_int64(st, 0);
	store_done(st);

	store_begin(c);
	store_x(c,
		"UPDATE jobs SET state = 'running', attempt = attempt + 1, agent_id = ?,"
		" started_ms = ?, finished_ms = NULL, conclusion = '', message = NULL WHERE id = ?",
		"tii", a->id, now, (int64_t)id);
	store_x(c,
		"UPDATE steps SET state = 'queued', conclusion = '', exit_code = NULL,"
		" started_ms = NULL, finished_ms = NULL WHERE job_id = ?",
		"i", (int64_t)id);
	store_x(c,
		"UPDATE runs SET state = 'running', started_ms = coalesce(started_ms, ?)"
		" WHERE id = ? AND state = 'queued'",
		"ii", now, (int64_t)run_id);
	store_commit(c);

	a->last_assigned = id;
	/* its poll was held until now: it is alive now, whatever time it sent the poll */
	a->last_seen_ms = now;
	send_assignment(c, ctx, id);
	api_notify_run(c, run_id);
	forge_job_assigned(c, run_id, id, now);
}

/* Slots the agent has free, by our own account of the jobs running on it: the count in a
   Poll may be stale (a Poll resent after a restart says what was true when it was sent). */
static uint32_t free_slots(coord *c, const coord_agent *a)
{
	sqlite3_stmt *st = store_q(c, "SELECT count(*) FROM jobs WHERE agent_id = ? AND state = 'running'",
				   "t", a->id);
	int64_t busy = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	store_done(st);
	return busy >= (int64_t)a->capacity ? 0 : a->capacity - (uint32_t)busy;
}

void sched_kick(coord *c)
{
	for (coord_agent *a = c->agents; a; a = a->next) {
		if (a->parked && !a->lost && deliver_cancel(c, a, a->parked)) {
			a->parked = NULL;
			a->last_seen_ms = kiln_now_ms();
			continue;
		}
		if (!a->parked || a->lost || a->disabled || a->draining || free_slots(c, a) == 0)
			continue;
		uint64_t id = find_ready_job(c, a);
		if (!id)
			continue;
		bus_ctx *ctx = a->parked;
		a->parked = NULL;
		assign(c, a, ctx, id);
	}
}

/* An agent registering again has lost the jobs it no longer lists (it restarted, or never
   got their assignment): they are retried, or failed when out of retries, as if it were lost. */
static void requeue_unlisted(coord *c, coord_agent *a, const Kiln__Register *reg)
{
	int64_t now = kiln_now_ms();
	sqlite3_stmt *st = store_q(c,
				   "SELECT id, run_id, attempt, retries_left FROM jobs"
				   " WHERE agent_id = ? AND state = 'running'",
				   "t", a->id);
	typedef struct {
		int64_t id, run, retries;
	} gone_job;
	gone_job *gone = NULL;
	size_t n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
		uint32_t attempt = (uint32_t)sqlite3_column_int(st, 2);
		bool listed = false;
		for (size_t i = 0; i < reg->n_running && !listed; i++)
			listed = reg->running[i]->job_id == id && reg->running[i]->attempt == attempt;
		if (listed)
			continue;
		gone = kiln_realloc(gone, (n + 1) * sizeof *gone);
		gone[n].id = (int64_t)id;
		gone[n].run = sqlite3_column_int64(st, 1);
		gone[n].retries = sqlite3_column_int64(st, 3);
		n++;
	}
	store_done(st);
	for (size_t i = 0; i < n; i++) {
		if (gone[i].retries > 0)
			store_x(c,
				"UPDATE jobs SET state = 'queued', ready = 1, ready_ms = ?,"
				" retries_left = retries_left - 1, agent_id = NULL,"
				" message = 'agent restarted; retried' WHERE id = ?",
				"ii", now, gone[i].id);
		else
			store_x(c,
				"UPDATE jobs SET state = 'completed', conclusion = 'failure',"
				" finished_ms = ?, message = 'agent restarted' WHERE id = ?",
				"ii", now, gone[i].id);
		kiln_log(4, "run %lld job %lld: agent %s restarted without it%s", (long long)gone[i].run,
			 (long long)gone[i].id, a->name, gone[i].retries > 0 ? ", retrying" : "");
	}
	for (size_t i = 0; i < n; i++)
		sched_advance_run(c, (uint64_t)gone[i].run);
	free(gone);
}

static void handle_register(coord *c, bus_ctx *ctx, Kiln__Register *reg)
{
	if (!reg->name || !*reg->name || strlen(reg->name) > 128 || reg->n_labels > 64) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, "bad name or labels");
		return;
	}
	/* the token: an agent token names the agent; a registration token (or open registration)
	   makes a new one, or takes back the id the agent had (open registration only) */
	auth_reg ar;
	if (auth_register(c, reg->token, &ar) < 0) {
		kiln_log(KILN_LOG_WARNING, "agent %.128s: registration refused: %s", reg->name,
			 kiln_errmsg());
		bus_reply_status(ctx, KILN__STATUS__STATUS_UNAUTHORIZED, kiln_errmsg());
		return;
	}
	char session[65], digest[65], idbuf[17];
	if (kiln_random_hex(32, session) < 0) {
		free(ar.agent_id);
		bus_reply_status(ctx, KILN__STATUS__STATUS_INTERNAL, "no randomness");
		return;
	}
	kiln_sha256_hex(session, strlen(session), digest);
	const char *want = ar.agent_id ? ar.agent_id
			   : ar.open && reg->agent_id && *reg->agent_id ? reg->agent_id : NULL;
	coord_agent *a = want ? agent_by_id(c, want) : NULL;
	bool again = a != NULL;
	if (!a) {
		if (!ar.agent_id)
			kiln_random_hex(8, idbuf);
		a = kiln_calloc(1, sizeof *a);
		a->id = kiln_strdup(ar.agent_id ? ar.agent_id : idbuf);
		a->session_digest = kiln_strdup("");
		a->next = c->agents;
		c->agents = a;
	}
	free(ar.agent_id);
	free(a->name);
	a->name = kiln_strdup(reg->name);
	free(a->session_digest);
	a->session_digest = kiln_strdup(digest);
	kiln_strv_free(&a->labels);
	for (size_t i = 0; i < reg->n_labels; i++)
		kiln_strv_push(&a->labels, reg->labels[i]);
	a->capacity = reg->capacity ? reg->capacity : 1;
	a->last_seen_ms = kiln_now_ms();
	a->lost = false;
	a->pipe = bus_ctx_pipe(ctx);

	_cleanup_free_ char *labels = labels_to_json(reg->labels, reg->n_labels);
	store_x(c,
		"INSERT INTO agents(id, name, labels, capacity, session_digest, version, created_ms,"
		" last_seen_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
		" name = excluded.name, labels = excluded.labels, capacity = excluded.capacity,"
		" session_digest = excluded.session_digest, version = excluded.version,"
		" last_seen_ms = excluded.last_seen_ms",
		"tttittii", a->id, a->name, labels, (int64_t)a->capacity, a->session_digest,
		reg->version ? reg->version : "", a->last_seen_ms, a->last_seen_ms);
	char *agent_token = NULL;
	if (ar.issue && auth_issue_agent_token(c, a->id, a->name, &agent_token) < 0)
		kiln_log(KILN_LOG_ERR, "agent %s: no agent token: %s", a->id, kiln_errmsg());
	kiln_log(6, "agent %s registered as %s (capacity %u%s)", a->name, a->id, a->capacity,
		 agent_token ? ", new agent token" : "");
	if (again)
		requeue_unlisted(c, a, reg);

	Kiln__RegisterReply rr = KILN__REGISTER_REPLY__INIT;
	rr.agent_id = a->id;
	rr.session = session;
	rr.poll_timeout_ms = (uint32_t)c->cfg.poll_timeout_ms;
	rr.lost_after_ms = (uint32_t)c->cfg.lost_after_ms;
	rr.agent_token = agent_token ? agent_token : "";
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
	resp.body_case = KILN__RESPONSE__BODY_REGISTER;
	resp.register_ = &rr;
	bus_reply(ctx, &resp);
	if (agent_token)
		explicit_bzero(agent_token, strlen(agent_token));
	free(agent_token);
}

static void handle_poll(coord *c, coord_agent *a, bus_ctx *ctx, Kiln__Poll *p)
{
	if (a->parked) /* superseded, e.g. by a resend on a new connection */
		reply_poll_empty(a->parked);
	a->parked = NULL;
	a->pipe = bus_ctx_pipe(ctx);
	a->last_seen_ms = kiln_now_ms();
	a->lost = false;
	a->draining = p->draining;

	/* the same poll again: our answer was lost, so give the same job again */
	if (p->poll_seq && p->poll_seq == a->last_poll_seq && a->last_assigned) {
		sqlite3_stmt *st = store_q(c, "SELECT state, agent_id FROM jobs WHERE id = ?", "i",
					   (int64_t)a->last_assigned);
		bool again = sqlite3_step(st) == SQLITE_ROW &&
			     strcmp(col_text(st, 0), "running") == 0 &&
			     strcmp(col_text(st, 1), a->id) == 0;
		store_done(st);
		if (again) {
			send_assignment(c, ctx, a->last_assigned);
			return;
		}
	}
	a->last_poll_seq = p->poll_seq;
	a->last_assigned = 0;
	if (deliver_cancel(c, a, ctx))
		return;

	if (!a->draining && free_slots(c, a) > 0) {
		uint64_t id = find_ready_job(c, a);
		if (id) {
			assign(c, a, ctx, id);
			return;
		}
	}
	a->parked = ctx;
	a->parked_until_ms = a->last_seen_ms + c->cfg.poll_timeout_ms;
	if (a->parked_until_ms < c->next_tick_ms) /* the core loop wakes for it */
		c->next_tick_ms = a->parked_until_ms;
}

static void handle_job_update(coord *c, bus_ctx *ctx, Kiln__JobUpdate *u)
{
	sqlite3_stmt *st = store_q(c,
				   "SELECT run_id, state, attempt, cancel_requested,"
				   " coalesce(json_extract(strategy, '$.\"fail-fast\"'), 0)"
				   "   AND NOT continue_on_error AND matrix IS NOT NULL, key"
				   " FROM jobs WHERE id = ?",
				   "i", (int64_t)u->job_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		bus_reply_status(ctx, KILN__STATUS__STATUS_NOT_FOUND, "no such job");
		return;
	}
	uint64_t run_id = (uint64_t)sqlite3_column_int64(st, 0);
	bool running = strcmp(col_text(st, 1), "running") == 0;
	uint32_t attempt = (uint32_t)sqlite3_column_int(st, 2);
	bool cancel = sqlite3_column_int(st, 3) != 0;
	bool fail_fast = sqlite3_column_int(st, 4) != 0;
	_cleanup_free_ char *key = kiln_strdup(col_text(st, 5));
	store_done(st);
	if (u->attempt != attempt) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_STALE, "attempt is no longer current");
		return;
	}
	const char *concl = conclusion_name(u->conclusion);
	bool completed = u->state == KILN__JOB_STATE__JOB_STATE_COMPLETED;
	if (running && u->step_index >= 0) {
		store_begin(c);
		store_x(c,
			"UPDATE steps SET state = ?, conclusion = ?, exit_code = ?,"
			" started_ms = coalesce(nullif(?, 0), started_ms),"
			" finished_ms = nullif(?, 0), summary = nullif(?, '') WHERE job_id = ? AND idx = ?",
			"ttiiitii", completed ? "completed" : "running", concl,
			(int64_t)u->exit_code, u->started_ms, u->finished_ms,
			u->summary ? u->summary : "", (int64_t)u->job_id, (int64_t)u->step_index);
		/* a resent update must not add its annotations twice */
		if (completed && u->n_annotations)
			store_x(c, "DELETE FROM annotations WHERE job_id = ? AND attempt = ? AND step = ?",
				"iii", (int64_t)u->job_id, (int64_t)attempt, (int64_t)u->step_index);
		for (size_t i = 0; completed && i < u->n_annotations && i < 100; i++) {
			const Kiln__Annotation *an = u->annotations[i];
			store_x(c,
				"INSERT INTO annotations(job_id, attempt, step, level, message, file,"
				" line, col, end_line, end_col, title) VALUES(?, ?, ?, ?, ?, nullif(?, ''),"
				" nullif(?, 0), nullif(?, 0), nullif(?, 0), nullif(?, 0), nullif(?, ''))",
				"iiitttiiiit", (int64_t)u->job_id, (int64_t)attempt,
				(int64_t)u->step_index, an->level, an->message, an->file,
				(int64_t)an->line, (int64_t)an->col, (int64_t)an->end_line,
				(int64_t)an->end_col, an->title);
		}
		store_commit(c);
	} else if (running && completed) {
		json_t *outs = json_object();
		for (size_t i = 0; i < u->n_outputs && i < 1000; i++)
			json_object_set_new(outs, u->outputs[i]->key, json_string(u->outputs[i]->value));
		_cleanup_free_ char *outputs = json_dumps(outs, JSON_COMPACT);
		json_decref(outs);
		store_x(c,
			"UPDATE jobs SET state = 'completed', conclusion = ?, finished_ms = ?,"
			" message = nullif(?, ''), outputs = ? WHERE id = ?",
			"titti", *concl ? concl : "failure",
			u->finished_ms ? u->finished_ms : kiln_now_ms(), u->message ? u->message : "",
			outputs ? outputs : "{}", (int64_t)u->job_id);
		kiln_log(6, "run %llu job %llu attempt %u: %s",
			(unsigned long long)run_id, (unsigned long long)u->job_id, attempt,
			*concl ? concl : "failure");
		coord_log_close(c, u->job_id, attempt);
		if (fail_fast && strcmp(concl, "failure") == 0) {
			/* fail-fast: the other instances of this matrix stop */
			int64_t sib[256];
			size_t ns = 0;
			sqlite3_stmt *q = store_q(c,
						  "SELECT id FROM jobs WHERE run_id = ? AND key = ?"
						  " AND id != ? AND state != 'completed'",
						  "iti", (int64_t)run_id, key, (int64_t)u->job_id);
			while (sqlite3_step(q) == SQLITE_ROW && ns < KILN_ARRAY_SIZE(sib))
				sib[ns++] = sqlite3_column_int64(q, 0);
			store_done(q);
			for (size_t i = 0; i < ns; i++)
				sched_cancel_job(c, (uint64_t)sib[i], "cancelled by fail-fast");
		}
		sched_advance_run(c, run_id);
	}
	Kiln__JobUpdateReply jr = KILN__JOB_UPDATE_REPLY__INIT;
	jr.cancel = cancel;
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
	resp.body_case = KILN__RESPONSE__BODY_JOB_UPDATE;
	resp.job_update = &jr;
	bus_reply(ctx, &resp);
	api_notify_run(c, run_id);
}

/* Skips n lines of buf[0..len); returns the offset after them. */
static size_t skip_lines(const char *buf, size_t len, uint64_t n)
{
	size_t off = 0;
	while (n-- > 0) {
		const char *nl = memchr(buf + off, '\n', len - off);
		off = (size_t)(nl - buf) + 1;
	}
	return off;
}

/* The lines of a batch are stored as they come (common/logline.h), once each: a line the log
   has already is skipped, a gap stores nothing (the agent sends again from stored_through).
   Past the cap one marker line stands for every later line (acknowledged, not kept). The
   batch is written with one write: all of it or none. */
static void handle_log_append(coord *c, bus_ctx *ctx, Kiln__LogAppend *la)
{
	sqlite3_stmt *st = store_q(c, "SELECT run_id, attempt FROM jobs WHERE id = ?", "i",
				   (int64_t)la->job_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		bus_reply_status(ctx, KILN__STATUS__STATUS_NOT_FOUND, "no such job");
		return;
	}
	uint64_t run_id = (uint64_t)sqlite3_column_int64(st, 0);
	uint32_t attempt = (uint32_t)sqlite3_column_int(st, 1);
	store_done(st);
	if (la->attempt == 0 || la->attempt > attempt || la->first_seq == 0) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, "no such attempt");
		return;
	}
	const char *buf = (const char *)la->lines.data;
	size_t len = la->lines.len;
	int64_t n = kiln_loglines_check(buf, len, la->first_seq);
	if (n < 0) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_BAD_REQUEST, kiln_errmsg());
		return;
	}
	logfile *jf = coord_log(c, la->job_id, la->attempt);
	runlog *rl = coord_runlog(c, run_id);
	if (!jf || !rl) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_INTERNAL, "cannot open the log");
		return;
	}
	uint64_t have = logfile_last_key(jf), last = la->first_seq + (uint64_t)n - 1;
	bool added = false;
	if (logfile_capped(jf)) {
		if (last > have)
			have = last; /* past the cap every line is acknowledged, none kept */
	} else if (la->first_seq <= have + 1 && last > have) {
		uint64_t from_seq = have + 1;
		size_t from = skip_lines(buf, len, from_seq - la->first_seq);
		size_t keep = len - from;
		kiln_buf capped = {0};
		if (logfile_bytes(jf) + keep > c->cfg.max_log_bytes) {
			/* the lines that fit, then the marker in place of the first that does not */
			size_t room = c->cfg.max_log_bytes > logfile_bytes(jf) + 256
					      ? (size_t)(c->cfg.max_log_bytes - logfile_bytes(jf) - 256)
					      : 0;
			size_t fit = 0;
			uint64_t seq = from_seq;
			for (;;) {
				const char *nl = memchr(buf + from + fit, '\n', keep - fit);
				size_t l = (size_t)(nl - (buf + from + fit)) + 1;
				if (fit + l > room)
					break;
				fit += l;
				seq++;
			}
			kiln_logline line;
			const char *p = buf + from + fit;
			kiln_logline_parse(p, (size_t)((const char *)memchr(p, '\n', keep - fit) - p),
					   &line);
			char text[160];
			int tl = snprintf(text, sizeof text,
					  "The log of this job reached its limit of %llu bytes; "
					  LOGFILE_CAP_MARK,
					  (unsigned long long)c->cfg.max_log_bytes);
			kiln_buf_append(&capped, buf + from, fit);
			kiln_logline_format(&capped, seq, line.ts_ms, KILN_LOGLINE_SYSTEM, line.step,
					    text, (size_t)tl);
			keep = capped.len;
		}
		const char *data = capped.p ? capped.p : buf + from;
		if (logfile_append_lines(jf, data, keep) < 0) {
			kiln_log(KILN_LOG_ERR, "run %llu job %llu: %s", (unsigned long long)run_id,
				 (unsigned long long)la->job_id, kiln_errmsg());
		} else {
			uint64_t stored = logfile_last_key(jf) - have;
			runlog_append(rl, la->job_id, la->attempt, from_seq, stored);
			added = true;
			if (capped.p) {
				logfile_set_capped(jf);
				kiln_log(KILN_LOG_WARNING, "run %llu job %llu: log truncated",
					 (unsigned long long)run_id, (unsigned long long)la->job_id);
				have = last; /* the rest of the batch is acknowledged, not kept */
			} else {
				have = logfile_last_key(jf);
			}
		}
		kiln_buf_free(&capped);
	}

	Kiln__LogAppendReply lr = KILN__LOG_APPEND_REPLY__INIT;
	lr.stored_through = have;
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
	resp.body_case = KILN__RESPONSE__BODY_LOG_APPEND;
	resp.log_append = &lr;
	bus_reply(ctx, &resp);
	if (added)
		api_notify_run(c, run_id);
}

bool sched_request(coord *c, bus_ctx *ctx, Kiln__Request *req)
{
	if (req->body_case == KILN__REQUEST__BODY_REGISTER) {
		handle_register(c, ctx, req->register_);
		return false;
	}
	coord_agent *a = agent_by_session(c, req->session);
	if (!a) {
		bus_reply_status(ctx, KILN__STATUS__STATUS_UNAUTHORIZED, "unknown session: register");
		return false;
	}
	a->last_seen_ms = kiln_now_ms();
	switch (req->body_case) {
	case KILN__REQUEST__BODY_POLL:
		handle_poll(c, a, ctx, req->poll);
		return false;
	case KILN__REQUEST__BODY_JOB_UPDATE:
		handle_job_update(c, ctx, req->job_update);
		return false;
	case KILN__REQUEST__BODY_LOG_APPEND:
		handle_log_append(c, ctx, req->log_append);
		return false;
	default:
		return caches_request(c, ctx, req);
	}
}

void sched_pipe_gone(coord *c, uint32_t pipe)
{
	for (coord_agent *a = c->agents; a; a = a->next) {
		if (a->pipe != pipe)
			continue;
		if (a->parked) {
			reply_poll_empty(a->parked); /* frees the context; nobody reads it */
			a->parked = NULL;
		}
		a->last_seen_ms = kiln_now_ms();
	}
}

typedef struct job_row {
	uint64_t id;
	char *key, *state, *conclusion;
	bool ready, expanded, continue_on_error;
	json_t *needs;
	char *cond;   /* the job's if:, or NULL */
	bool call;    /* a reusable workflow's call row */
	char *parent; /* the call row this job belongs to, or NULL */
} job_row;

/* The contexts a job-level expression sees: github, needs, vars, inputs. */
static json_t *job_contexts(coord *c, uint64_t run_id, const job_row *r)
{
	sqlite3_stmt *st = store_q(c, "SELECT number, repo, sha, ref, event, workflow FROM runs"
				      " WHERE id = ?", "i", (int64_t)run_id);
	json_t *gh = NULL;
	if (sqlite3_step(st) == SQLITE_ROW)
		gh = coord_github_context(run_id, sqlite3_column_int64(st, 0), 1, col_text(st, 1),
				    col_text(st, 2), col_text(st, 3), col_text(st, 4),
				    col_text(st, 5), r->key);
	store_done(st);
	json_t *ctx = json_pack("{s:o, s:o, s:{}, s:o}", "github", gh ? gh : json_object(), "needs",
				needs_context(c, run_id, r->needs), "vars", "inputs",
				inputs_of(c, run_id, r->parent));
	coord_run_contexts(c, run_id, ctx); /* a triggered run's event, repository, actor */
	return ctx;
}

static void free_rows(job_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].key);
		free(rows[i].state);
		free(rows[i].conclusion);
		json_decref(rows[i].needs);
		free(rows[i].cond);
		free(rows[i].parent);
	}
	free(rows);
}

static job_row *load_rows(coord *c, uint64_t run_id, size_t *np)
{
	job_row *rows = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st = store_q(c,
				   "SELECT id, key, state, conclusion, ready, needs,"
				   " json_extract(spec, '$.if'), expanded, continue_on_error, kind, parent"
				   " FROM jobs WHERE run_id = ? ORDER BY id",
				   "i", (int64_t)run_id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			rows = kiln_realloc(rows, cap * sizeof *rows);
		}
		job_row *r = &rows[n++];
		r->id = (uint64_t)sqlite3_column_int64(st, 0);
		r->key = kiln_strdup(col_text(st, 1));
		r->state = kiln_strdup(col_text(st, 2));
		r->conclusion = kiln_strdup(col_text(st, 3));
		r->ready = sqlite3_column_int(st, 4) != 0;
		r->needs = json_loads(col_text(st, 5), 0, NULL);
		r->cond = sqlite3_column_type(st, 6) == SQLITE_NULL ? NULL
								    : kiln_strdup(col_text(st, 6));
		r->expanded = sqlite3_column_int(st, 7) != 0;
		r->continue_on_error = sqlite3_column_int(st, 8) != 0;
		r->call = strcmp(col_text(st, 9), "call") == 0;
		r->parent = sqlite3_column_type(st, 10) == SQLITE_NULL ? NULL
								     : kiln_strdup(col_text(st, 10));
	}
	store_done(st);
	*np = n;
	return rows;
}

static void finish_row(coord *c, job_row *r, const char *concl, const char *msg, int64_t now)
{
	free(r->state);
	free(r->conclusion);
	r->state = kiln_strdup("completed");
	r->conclusion = kiln_strdup(concl);
	store_x(c,
		"UPDATE jobs SET state = 'completed', conclusion = ?, finished_ms = ?, message = ?"
		" WHERE id = ?",
		"titi", concl, now, msg, (int64_t)r->id);
	if (strcmp(concl, "skipped") == 0 || strcmp(concl, "cancelled") == 0)
		store_x(c,
			"UPDATE steps SET state = 'completed', conclusion = ? WHERE job_id = ?"
			" AND state != 'completed'",
			"ti", concl, (int64_t)r->id);
}

/* Starts a call row: its with: becomes the called jobs' `inputs` (defaults filled, types
   as declared). A remote call, or a bad input, fails it with a message. */
static void call_start(coord *c, job_row *r, json_t *ctx, int64_t now)
{
	sqlite3_stmt *st = store_q(c, "SELECT spec FROM jobs WHERE id = ?", "i", (int64_t)r->id);
	json_t *spec = sqlite3_step(st) == SQLITE_ROW ? json_loads(col_text(st, 0), 0, NULL) : NULL;
	store_done(st);
	const char *err = json_string_value(json_object_get(spec, "error"));
	if (err) {
		finish_row(c, r, "failure", err, now);
		json_decref(spec);
		return;
	}
	json_t *call = json_object_get(spec, "call");
	json_t *with = json_object();
	size_t i;
	json_t *kv;
	json_array_foreach(json_object_get(call, "with"), i, kv)
		json_object_set(with, json_string_value(json_array_get(kv, 0)), json_array_get(kv, 1));
	kiln_expr_ctx x = {.contexts = ctx};
	json_t *inputs = json_object();
	json_t *in;
	int rc = 0;
	json_array_foreach(json_object_get(call, "inputs"), i, in)
	{
		const char *name = json_string_value(json_object_get(in, "name"));
		const char *type = json_string_value(json_object_get(in, "type"));
		json_t *raw = json_object_get(with, name);
		if (!raw)
			raw = json_object_get(in, "default");
		json_t *v = NULL;
		if (raw && (rc = coord_eval_tree(raw, &x, &v)) < 0)
			break;
		if (!v) {
			v = strcmp(type, "boolean") == 0 ? json_false()
			    : strcmp(type, "number") == 0 ? json_integer(0) : json_string("");
		} else if (json_is_string(v) && strcmp(type, "boolean") == 0) {
			json_t *b = json_boolean(strcmp(json_string_value(v), "true") == 0);
			json_decref(v);
			v = b;
		} else if (json_is_string(v) && strcmp(type, "number") == 0) {
			json_t *num = json_real(strtod(json_string_value(v), NULL));
			json_decref(v);
			v = num;
		}
		json_object_set_new(inputs, name, v);
	}
	if (rc < 0) {
		_cleanup_free_ char *msg = kiln_asprintf("with: %s", kiln_errmsg());
		finish_row(c, r, "failure", msg, now);
	} else {
		_cleanup_free_ char *text = json_dumps(inputs, JSON_COMPACT);
		free(r->state);
		r->state = kiln_strdup("running");
		store_x(c, "UPDATE jobs SET state = 'running', inputs = ?, started_ms = ? WHERE id = ?",
			"tii", text, now, (int64_t)r->id);
	}
	json_decref(inputs);
	json_decref(with);
	json_decref(spec);
}

/* Completes a running call row once every job under it is done: its result, and its
   outputs from on.workflow_call.outputs with the called jobs as `jobs`. */
static bool call_finish(coord *c, uint64_t run_id, job_row *r, job_row *rows, size_t n,
			int64_t now)
{
	size_t kl = strlen(r->key);
	bool failed = false, cancelled = false;
	json_t *jobs = json_object();
	for (size_t i = 0; i < n; i++) {
		const char *k = rows[i].key;
		if (strncmp(k, r->key, kl) != 0 || k[kl] != '/')
			continue;
		if (strcmp(rows[i].state, "completed") != 0) {
			json_decref(jobs);
			return false;
		}
		if (!strcmp(rows[i].conclusion, "failure") && !rows[i].continue_on_error)
			failed = true;
		if (!strcmp(rows[i].conclusion, "cancelled"))
			cancelled = true;
		if (!strchr(k + kl + 1, '/')) /* a direct child: part of the `jobs` context */
			json_object_set_new(jobs, k + kl + 1, json_string(k));
	}
	json_t *keys = json_array();
	const char *local;
	json_t *full;
	json_object_foreach(jobs, local, full)
		json_array_append(keys, full);
	json_t *by_key = needs_context(c, run_id, keys);
	json_t *jctx = json_object();
	json_object_foreach(jobs, local, full)
		json_object_set(jctx, local, json_object_get(by_key, json_string_value(full)));
	json_decref(by_key);
	json_decref(keys);
	json_decref(jobs);

	sqlite3_stmt *st = store_q(c, "SELECT json_extract(spec, '$.call.outputs') FROM jobs"
				      " WHERE id = ?", "i", (int64_t)r->id);
	json_t *outs = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL
			       ? json_loads(col_text(st, 0), 0, NULL)
			       : NULL;
	store_done(st);
	json_t *ctx = json_pack("{s:o, s:o, s:{}}", "jobs", jctx, "inputs",
				inputs_of(c, run_id, r->key), "github");
	kiln_expr_ctx x = {.contexts = ctx};
	json_t *values = json_object();
	const char *name;
	json_t *expr;
	json_object_foreach(outs, name, expr)
	{
		json_t *v = NULL;
		if (coord_eval_tree(expr, &x, &v) == 0) {
			char *str = kiln_expr_to_string(v);
			json_object_set_new(values, name, json_string(str));
			free(str);
		}
		json_decref(v);
	}
	_cleanup_free_ char *text = json_dumps(values, JSON_COMPACT);
	json_decref(values);
	json_decref(outs);
	json_decref(ctx);
	const char *concl = failed ? "failure" : cancelled ? "cancelled" : "success";
	free(r->state);
	free(r->conclusion);
	r->state = kiln_strdup("completed");
	r->conclusion = kiln_strdup(concl);
	store_x(c,
		"UPDATE jobs SET state = 'completed', conclusion = ?, finished_ms = ?, outputs = ?"
		" WHERE id = ?",
		"titi", concl, now, text, (int64_t)r->id);
	return true;
}

/* Decides the queued jobs whose needs are done: its if: says run (then its matrix is
   expanded and every instance is ready) or skip. Returns true if rows must be reloaded. */
static bool decide(coord *c, uint64_t run_id, job_row *rows, size_t n, int64_t now, bool *changed)
{
	for (size_t i = 0; i < n; i++) {
		job_row *r = &rows[i];
		if (r->call && strcmp(r->state, "running") == 0) {
			if (call_finish(c, run_id, r, rows, n, now))
				*changed = true;
			continue;
		}
		if (strcmp(r->state, "queued") != 0 || r->ready)
			continue;
		bool all_done = true, all_ok = true, any_failed = false;
		size_t k;
		json_t *need;
		json_array_foreach(r->needs, k, need)
		{
			const char *nk = json_string_value(need);
			for (size_t j = 0; j < n; j++) {
				if (!nk || strcmp(rows[j].key, nk) != 0)
					continue;
				/* a called job's need on its own call row: met once the call started */
				size_t kl = strlen(nk);
				if (rows[j].call && strncmp(r->key, nk, kl) == 0 && r->key[kl] == '/') {
					if (strcmp(rows[j].state, "queued") == 0)
						all_done = false;
					else if (strcmp(rows[j].state, "running") != 0 &&
						 strcmp(rows[j].conclusion, "success") != 0)
						all_ok = false;
					continue;
				}
				if (strcmp(rows[j].state, "completed") != 0)
					all_done = false;
				else if (strcmp(rows[j].conclusion, "success") != 0 &&
					 !(rows[j].continue_on_error &&
					   strcmp(rows[j].conclusion, "failure") == 0))
					all_ok = false;
				if (!strcmp(rows[j].conclusion, "failure") && !rows[j].continue_on_error)
					any_failed = true;
			}
		}
		if (!all_done)
			continue;
		*changed = true;
		json_t *ctx = job_contexts(c, run_id, r);
		kiln_expr_ctx x = {.contexts = ctx,
				   .status = all_ok ? KILN_EXPR_STATUS_SUCCESS
					     : any_failed ? KILN_EXPR_STATUS_FAILURE
							  : KILN_EXPR_STATUS_CANCELLED};
		bool go = false;
		const char *cond = r->cond && *r->cond ? r->cond : "success()";
		if (kiln_expr_condition_ex(cond, &x, KILN_EXPR_JOB_STATUS, &go) < 0) {
			_cleanup_free_ char *msg = kiln_asprintf("if: %s", kiln_errmsg());
			finish_row(c, r, "failure", msg, now);
		} else if (!go) {
			finish_row(c, r, "skipped", NULL, now);
		} else if (r->call) {
			call_start(c, r, ctx, now);
		} else if (!r->expanded) {
			int got = coord_expand_job(c, r->id, ctx);
			if (got < 0) {
				_cleanup_free_ char *msg = kiln_strdup(kiln_errmsg());
				finish_row(c, r, "failure", msg, now);
			} else {
				store_x(c,
					"UPDATE jobs SET ready = 1, ready_ms = ? WHERE run_id = ? AND key = ?"
					" AND state = 'queued'",
					"iit", now, (int64_t)run_id, r->key);
				json_decref(ctx);
				return true; /* new rows: look again */
			}
		} else {
			r->ready = true;
			store_x(c, "UPDATE jobs SET ready = 1, ready_ms = ? WHERE id = ?", "ii", now,
				(int64_t)r->id);
		}
		json_decref(ctx);
	}
	return false;
}

void sched_advance_run(coord *c, uint64_t run_id)
{
	int64_t now = kiln_now_ms();
	size_t n = 0;
	job_row *rows = NULL;
	kiln_strv displaced = {0}; /* runs this one's concurrency group cancelled */
	store_begin(c);
	if (!gates_admit_run(c, run_id, &displaced)) {
		/* waits for its concurrency group: nothing of it starts */
		store_commit(c);
		for (size_t i = 0; i < displaced.n; i++)
			sched_advance_run(c, strtoull(displaced.v[i], NULL, 10));
		kiln_strv_free(&displaced);
		api_notify_run(c, run_id);
		return;
	}
	for (;;) {
		free_rows(rows, n);
		rows = load_rows(c, run_id, &n);
		bool changed;
		bool reload = false;
		do {
			changed = false;
			reload = decide(c, run_id, rows, n, now, &changed);
		} while (changed && !reload);
		if (!reload)
			break;
	}
	if (gates_jobs(c, run_id, &displaced)) {
		free_rows(rows, n);
		rows = load_rows(c, run_id, &n);
	}

	bool done = n > 0, failed = false, cancelled = false;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(rows[i].state, "completed") != 0)
			done = false;
		else if (strcmp(rows[i].conclusion, "failure") == 0 && !rows[i].continue_on_error)
			failed = true;
		else if (strcmp(rows[i].conclusion, "cancelled") == 0)
			cancelled = true;
	}
	uint64_t next = 0; /* the run its concurrency group lets in now */
	if (done) {
		const char *concl = failed ? "failure" : cancelled ? "cancelled" : "success";
		store_x(c,
			"UPDATE runs SET state = 'completed', conclusion = ?, finished_ms = ?"
			" WHERE id = ? AND state != 'completed'",
			"tii", concl, now, (int64_t)run_id);
		kiln_log(6, "run %llu completed: %s", (unsigned long long)run_id, concl);
		next = gates_run_done(c, run_id);
	}
	store_commit(c);
	forge_run_changed(c, run_id);
	if (done)
		coord_log_close(c, run_id, 0);
	free_rows(rows, n);
	for (size_t i = 0; i < displaced.n; i++)
		sched_advance_run(c, strtoull(displaced.v[i], NULL, 10));
	kiln_strv_free(&displaced);
	if (next)
		sched_advance_run(c, next);
	sched_kick(c);
	api_notify_run(c, run_id);
}

void sched_remove_agent(coord *c, coord_agent *a)
{
	for (coord_agent **p = &c->agents; *p; p = &(*p)->next) {
		if (*p != a)
			continue;
		*p = a->next;
		if (a->parked)
			bus_reply_status(a->parked, KILN__STATUS__STATUS_UNAUTHORIZED, "this agent was removed");
		store_x(c, "DELETE FROM agents WHERE id = ?", "t", a->id);
		/* its own token goes with it: it must register again with a registration token */
		store_x(c,
			"UPDATE tokens SET revoked_ms = ? WHERE agent_id = ? AND revoked_ms IS NULL",
			"it", kiln_now_ms(), a->id);
		kiln_log(KILN_LOG_INFO, "agent %s (%s) removed", a->name, a->id);
		free(a->id);
		free(a->name);
		free(a->session_digest);
		kiln_strv_free(&a->labels);
		free(a);
		return;
	}
}

/* The agent is gone: retry its running jobs while retries are left, else fail them. */
static void agent_lost(coord *c, coord_agent *a)
{
	a->lost = true;
	kiln_log(4, "agent %s (%s) lost", a->name, a->id);
	int64_t now = kiln_now_ms();
	uint64_t runs[64];
	size_t nruns = 0;
	sqlite3_stmt *st = store_q(c,
				   "SELECT id, run_id, retries_left FROM jobs"
				   " WHERE agent_id = ? AND state = 'running'",
				   "t", a->id);
	typedef struct {
		int64_t id, run, retries;
	} lost_job;
	lost_job *jobs = NULL;
	size_t n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		jobs = kiln_realloc(jobs, (n + 1) * sizeof *jobs);
		jobs[n].id = sqlite3_column_int64(st, 0);
		jobs[n].run = sqlite3_column_int64(st, 1);
		jobs[n].retries = sqlite3_column_int64(st, 2);
		n++;
	}
	store_done(st);
	for (size_t i = 0; i < n; i++) {
		if (jobs[i].retries > 0) {
			store_x(c,
				"UPDATE jobs SET state = 'queued', ready = 1, ready_ms = ?,"
				" retries_left = retries_left - 1, agent_id = NULL,"
				" message = 'agent lost; retried' WHERE id = ?",
				"ii", now, jobs[i].id);
			kiln_log(4, "run %lld job %lld: agent lost, retrying",
				(long long)jobs[i].run, (long long)jobs[i].id);
		} else {
			store_x(c,
				"UPDATE jobs SET state = 'completed', conclusion = 'failure',"
				" finished_ms = ?, message = 'agent lost' WHERE id = ?",
				"ii", now, jobs[i].id);
		}
		bool seen = false;
		for (size_t k = 0; k < nruns; k++)
			seen |= runs[k] == (uint64_t)jobs[i].run;
		if (!seen && nruns < KILN_ARRAY_SIZE(runs))
			runs[nruns++] = (uint64_t)jobs[i].run;
	}
	free(jobs);
	for (size_t k = 0; k < nruns; k++)
		sched_advance_run(c, runs[k]);
}

void sched_tick(coord *c, int64_t now)
{
	auth_tick(c, now);
	for (coord_agent *a = c->agents; a; a = a->next) {
		if (a->parked && now >= a->parked_until_ms) {
			reply_poll_empty(a->parked);
			a->parked = NULL;
			a->last_seen_ms = now;
		}
		if (!a->parked && !a->lost && now - a->last_seen_ms > c->cfg.lost_after_ms)
			agent_lost(c, a);
	}
}

int64_t sched_next_deadline(coord *c, int64_t now)
{
	int64_t next = now + TICK_MAX_MS;
	for (coord_agent *a = c->agents; a; a = a->next) {
		int64_t t = a->parked ? a->parked_until_ms
			    : a->lost ? INT64_MAX
				      : a->last_seen_ms + c->cfg.lost_after_ms + 1;
		if (t < next)
			next = t;
	}
	for (api_waiter *w = c->waiters; w; w = w->next)
		if (w->deadline_ms < next)
			next = w->deadline_ms;
	return next > now ? next : now;
}

void sched_shutdown(coord *c)
{
	for (coord_agent *a = c->agents; a; a = a->next) {
		if (a->parked)
			reply_poll_empty(a->parked);
		a->parked = NULL;
	}
}
