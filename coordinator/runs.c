/*
 * runs — what people do to runs and agents through the API (core):
 *
 *   POST /api/v1/runs/ID/cancel               every job not done is cancelled; running
 *                                             ones are stopped on their agents at once
 *   POST /api/v1/runs/ID/rerun {"failed":b}    a completed run again: every job, or the
 *                                             failed and cancelled ones and what needs
 *                                             them; each job gets a new attempt and the
 *                                             old attempts' logs stay
 *   POST /api/v1/runs/ID/jobs/JOB/approve      a job waiting for its environment's review
 *   POST /api/v1/runs/ID/jobs/JOB/reject       (JOB: the job's id, key or name; every
 *                                             waiting instance of it)
 *   GET|PUT|DELETE /api/v1/environments[/NAME]?repo=R   environments and their rules
 *   POST /api/v1/agents/ID/disable|enable, DELETE /api/v1/agents/ID
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool run_exists(coord *c, uint64_t id, char **state)
{
	sqlite3_stmt *st = store_q(c, "SELECT state FROM runs WHERE id = ?", "i", (int64_t)id);
	bool ok = sqlite3_step(st) == SQLITE_ROW;
	if (ok && state)
		*state = kiln_strdup(col_text(st, 0));
	store_done(st);
	return ok;
}

/* Who asks: the name of the token the request came with. */
static const char *who(api_req *r)
{
	return r->who[0] ? r->who : r->trusted ? "local" : "anonymous";
}

static void cancel_run(api_req *r, uint64_t id)
{
	coord *c = r->c;
	_cleanup_free_ char *state = NULL;
	if (!run_exists(c, id, &state)) {
		api_error(r->reply, r->arg, 404, "no run %llu", (unsigned long long)id);
		return;
	}
	if (strcmp(state, "completed") == 0) {
		api_error(r->reply, r->arg, 409, "run %llu has completed", (unsigned long long)id);
		return;
	}
	_cleanup_free_ char *why = kiln_asprintf("The run was cancelled by %s", who(r));
	store_begin(c);
	sched_cancel_run(c, id, why);
	store_commit(c);
	kiln_log(KILN_LOG_INFO, "run %llu: cancelled by %s", (unsigned long long)id, who(r));
	sched_advance_run(c, id); /* delivers the cancellations to the agents' held polls */
	api_json(r->reply, r->arg, 202, json_pack("{s:I, s:s}", "id", (json_int_t)id, "state",
						   "cancelling"));
}

/* A job row of the run, for a rerun. */
typedef struct rrow {
	int64_t id;
	char *key, *kind, *conclusion;
	json_t *needs;
	bool again;
} rrow;

static void rerun(api_req *r, uint64_t id)
{
	coord *c = r->c;
	_cleanup_free_ char *state = NULL;
	if (!run_exists(c, id, &state)) {
		api_error(r->reply, r->arg, 404, "no run %llu", (unsigned long long)id);
		return;
	}
	if (strcmp(state, "completed") != 0) {
		api_error(r->reply, r->arg, 409, "run %llu has not completed: cancel it first",
			  (unsigned long long)id);
		return;
	}
	json_t *body = r->body ? api_body_object(r) : json_object();
	if (!body)
		return;
	bool failed_only = json_is_true(json_object_get(body, "failed"));
	json_decref(body);

	sqlite3_stmt *st = store_q(c,
				   "SELECT id, key, kind, conclusion, needs FROM jobs WHERE run_id = ?"
				   " ORDER BY id",
				   "i", (int64_t)id);
	rrow *rows = NULL;
	size_t n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		rows = kiln_realloc(rows, (n + 1) * sizeof *rows);
		rrow *w = &rows[n++];
		w->id = sqlite3_column_int64(st, 0);
		w->key = kiln_strdup(col_text(st, 1));
		w->kind = kiln_strdup(col_text(st, 2));
		w->conclusion = kiln_strdup(col_text(st, 3));
		w->needs = json_loads(col_text(st, 4), 0, NULL);
		w->again = !failed_only || (strcmp(w->kind, "job") == 0 &&
					    (strcmp(w->conclusion, "failure") == 0 ||
					     strcmp(w->conclusion, "cancelled") == 0));
	}
	store_done(st);
	/* what needs a job run again runs again; a called job brings its call row */
	for (bool grew = true; grew;) {
		grew = false;
		for (size_t i = 0; i < n; i++) {
			if (rows[i].again)
				continue;
			size_t k;
			json_t *need;
			json_array_foreach(rows[i].needs, k, need)
				for (size_t j = 0; j < n && !rows[i].again; j++)
					if (rows[j].again &&
					    strcmp(rows[j].key, json_string_value(need) ?: "") == 0)
						rows[i].again = grew = true;
			size_t kl = strlen(rows[i].key);
			for (size_t j = 0; j < n && !rows[i].again && !strcmp(rows[i].kind, "call"); j++)
				if (rows[j].again && strncmp(rows[j].key, rows[i].key, kl) == 0 &&
				    rows[j].key[kl] == '/')
					rows[i].again = grew = true;
		}
	}
	size_t count = 0;
	store_begin(c);
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].again)
			continue;
		count += strcmp(rows[i].kind, "job") == 0;
		/* a call row that ran goes back to running (its inputs stand) so its jobs can start */
		bool call = strcmp(rows[i].kind, "call") == 0;
		store_x(c,
			"UPDATE jobs SET state = CASE WHEN ? AND inputs IS NOT NULL THEN 'running'"
			" ELSE 'queued' END, ready = 0, conclusion = '', message = NULL, agent_id = NULL,"
			" started_ms = NULL, finished_ms = NULL, cancel_requested = 0, cancel_sent = 0,"
			" outputs = '{}', retries_left = ? WHERE id = ?",
			"iii", (int64_t)call, (int64_t)c->cfg.retries, rows[i].id);
		store_x(c,
			"UPDATE steps SET state = 'queued', conclusion = '', exit_code = NULL,"
			" started_ms = NULL, finished_ms = NULL, summary = NULL WHERE job_id = ?",
			"i", rows[i].id);
		store_x(c,
			"UPDATE job_gates SET approval = NULL, decided_by = NULL, decided_ms = NULL,"
			" entered = 0 WHERE job_id = ?",
			"i", rows[i].id);
	}
	store_x(c,
		"UPDATE runs SET state = 'queued', conclusion = '', finished_ms = NULL WHERE id = ?",
		"i", (int64_t)id);
	store_x(c, "DELETE FROM run_gates WHERE run_id = ?", "i", (int64_t)id);
	store_commit(c);
	for (size_t i = 0; i < n; i++) {
		free(rows[i].key);
		free(rows[i].kind);
		free(rows[i].conclusion);
		json_decref(rows[i].needs);
	}
	free(rows);
	kiln_log(KILN_LOG_INFO, "run %llu: %zu jobs run again (%s), by %s", (unsigned long long)id,
		 count, failed_only ? "failed ones" : "all", who(r));
	sched_advance_run(c, id);
	api_json(r->reply, r->arg, 200, json_pack("{s:I, s:I}", "id", (json_int_t)id, "jobs",
						   (json_int_t)count));
}

/* Approves or rejects the waiting instances of job `which` (id, key or name). */
static void review(api_req *r, uint64_t run_id, const char *which, bool approve)
{
	coord *c = r->c;
	if (!run_exists(c, run_id, NULL)) {
		api_error(r->reply, r->arg, 404, "no run %llu", (unsigned long long)run_id);
		return;
	}
	char *end;
	long long as_id = strtoll(which, &end, 10);
	sqlite3_stmt *st = store_q(c,
				   "SELECT j.id, g.environment FROM jobs j JOIN job_gates g ON"
				   " g.job_id = j.id WHERE j.run_id = ? AND j.state = 'waiting'"
				   " AND g.approval = 'waiting' AND (j.id = ? OR j.key = ? OR j.name = ?)",
				   "iitt", (int64_t)run_id, *end ? -1 : as_id, which, which);
	int64_t ids[256];
	char env[256] = "";
	size_t n = 0;
	while (sqlite3_step(st) == SQLITE_ROW && n < KILN_ARRAY_SIZE(ids)) {
		ids[n++] = sqlite3_column_int64(st, 0);
		snprintf(env, sizeof env, "%s", col_text(st, 1));
	}
	store_done(st);
	if (!n) {
		api_error(r->reply, r->arg, 404, "run %llu has no job '%s' waiting for a review",
			  (unsigned long long)run_id, which);
		return;
	}
	int64_t now = kiln_now_ms();
	store_begin(c);
	for (size_t i = 0; i < n; i++) {
		store_x(c,
			"UPDATE job_gates SET approval = ?, decided_by = ?, decided_ms = ?"
			" WHERE job_id = ?",
			"ttii", approve ? "approved" : "rejected", who(r), now, ids[i]);
		if (approve) {
			store_x(c,
				"UPDATE jobs SET state = 'queued', ready = 1, ready_ms = ?, message = NULL"
				" WHERE id = ?",
				"ii", now, ids[i]);
		} else {
			_cleanup_free_ char *msg = kiln_asprintf(
				"The deployment to %s was rejected by %s", env, who(r));
			store_x(c,
				"UPDATE jobs SET state = 'completed', conclusion = 'failure',"
				" finished_ms = ?, message = ? WHERE id = ?",
				"iti", now, msg, ids[i]);
			store_x(c,
				"UPDATE steps SET state = 'completed', conclusion = 'skipped'"
				" WHERE job_id = ?",
				"i", ids[i]);
		}
	}
	store_commit(c);
	kiln_log(KILN_LOG_INFO, "run %llu: %s %s the deployment of %s to %s",
		 (unsigned long long)run_id, who(r), approve ? "approved" : "rejected", which, env);
	sched_advance_run(c, run_id);
	api_json(r->reply, r->arg, 200,
		 json_pack("{s:s, s:s, s:I}", "environment", env, "decision",
			   approve ? "approved" : "rejected", "jobs", (json_int_t)n));
}

/* ---- environments ---- */

static bool env_name_ok(const char *n)
{
	size_t len = strlen(n);
	if (!len || len > 255)
		return false;
	for (const char *p = n; *p; p++)
		if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20)
			return false;
	return true;
}

static void environments(api_req *r, const char *name)
{
	coord *c = r->c;
	_cleanup_free_ char *repo = api_query(r, "repo");
	const char *rp = repo && *repo ? repo : "*";
	if (!name) {
		if (strcmp(r->method, "GET") != 0) {
			api_error(r->reply, r->arg, 405, "GET only");
			return;
		}
		json_t *list = json_array();
		sqlite3_stmt *st = store_q(c,
					   "SELECT repo, name, required_approval, url FROM environments"
					   " ORDER BY repo, name",
					   NULL);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(
				list, json_pack("{s:s, s:s, s:b, s:s}", "repo", col_text(st, 0), "name",
						col_text(st, 1), "required_approval",
						sqlite3_column_int(st, 2), "url", col_text(st, 3)));
		store_done(st);
		api_json(r->reply, r->arg, 200, json_pack("{s:o}", "environments", list));
		return;
	}
	if (!env_name_ok(name)) {
		api_error(r->reply, r->arg, 400, "bad environment name");
		return;
	}
	if (strcmp(r->method, "PUT") == 0) {
		json_t *b = api_body_object(r);
		if (!b)
			return;
		json_t *ra = json_object_get(b, "required_approval");
		const char *url = json_string_value(json_object_get(b, "url"));
		if (ra && !json_is_boolean(ra)) {
			json_decref(b);
			api_error(r->reply, r->arg, 400, "required_approval: true or false");
			return;
		}
		store_x(c,
			"INSERT INTO environments(repo, name, required_approval, url, created_ms)"
			" VALUES(?, ?, ?, ?, ?) ON CONFLICT(repo, name) DO UPDATE SET"
			" required_approval = excluded.required_approval, url = excluded.url",
			"ttiti", rp, name, (int64_t)json_is_true(ra), url ? url : "", kiln_now_ms());
		api_json(r->reply, r->arg, 200,
			 json_pack("{s:s, s:s, s:b, s:s}", "repo", rp, "name", name,
				   "required_approval", json_is_true(ra), "url", url ? url : ""));
		json_decref(b); /* url and ra were borrowed from it */
	} else if (strcmp(r->method, "DELETE") == 0) {
		store_x(c, "DELETE FROM environments WHERE repo = ? AND name = ?", "tt", rp, name);
		bool gone = sqlite3_changes(c->db) > 0;
		if (gone)
			api_json(r->reply, r->arg, 200, json_pack("{s:s}", "deleted", name));
		else
			api_error(r->reply, r->arg, 404, "no environment %s for %s", name, rp);
	} else {
		api_error(r->reply, r->arg, 405, "PUT or DELETE");
	}
}

/* ---- agents ---- */

static void agent_action(api_req *r, const char *id, const char *action)
{
	coord *c = r->c;
	coord_agent *a = NULL;
	for (coord_agent *x = c->agents; x; x = x->next)
		if (strcmp(x->id, id) == 0 || strcmp(x->name, id) == 0)
			a = x;
	if (!a) {
		api_error(r->reply, r->arg, 404, "no agent %s", id);
		return;
	}
	if (!action && strcmp(r->method, "DELETE") == 0) {
		sqlite3_stmt *st = store_q(c,
					   "SELECT count(*) FROM jobs WHERE agent_id = ? AND"
					   " state = 'running'",
					   "t", a->id);
		int64_t busy = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		store_done(st);
		if (busy) {
			api_error(r->reply, r->arg, 409,
				  "agent %s runs %lld jobs: disable it and let them finish", a->name,
				  (long long)busy);
			return;
		}
		sched_remove_agent(c, a);
		api_json(r->reply, r->arg, 200, json_pack("{s:s}", "deleted", id));
		return;
	}
	if (!action || (strcmp(action, "disable") != 0 && strcmp(action, "enable") != 0)) {
		api_error(r->reply, r->arg, 404, "POST .../disable or .../enable, or DELETE");
		return;
	}
	a->disabled = strcmp(action, "disable") == 0;
	store_x(c, "UPDATE agents SET disabled = ? WHERE id = ?", "it", (int64_t)a->disabled, a->id);
	kiln_log(KILN_LOG_INFO, "agent %s %s by %s", a->name, a->disabled ? "disabled" : "enabled",
		 who(r));
	if (!a->disabled)
		sched_kick(c);
	api_json(r->reply, r->arg, 200, json_pack("{s:s, s:b}", "id", a->id, "disabled",
						   a->disabled));
}

bool runs_serve(api_req *r)
{
	const char *p = r->path;
	bool post = strcmp(r->method, "POST") == 0;
	if (strncmp(p, "/api/v1/runs/", 13) == 0) {
		char *end;
		unsigned long long id = strtoull(p + 13, &end, 10);
		if (end == p + 13 || !id)
			return false;
		if (post && strcmp(end, "/cancel") == 0) {
			cancel_run(r, id);
			return true;
		}
		if (post && strcmp(end, "/rerun") == 0) {
			rerun(r, id);
			return true;
		}
		if (post && strncmp(end, "/jobs/", 6) == 0) {
			const char *slash = strrchr(end + 6, '/');
			if (!slash)
				return false;
			_cleanup_free_ char *which = strndup(end + 6, (size_t)(slash - (end + 6)));
			bool approve = strcmp(slash, "/approve") == 0;
			if (!approve && strcmp(slash, "/reject") != 0)
				return false;
			review(r, id, which, approve);
			return true;
		}
		return false;
	}
	if (strcmp(p, "/api/v1/environments") == 0) {
		environments(r, NULL);
		return true;
	}
	if (strncmp(p, "/api/v1/environments/", 21) == 0) {
		environments(r, p + 21);
		return true;
	}
	if (strncmp(p, "/api/v1/agents/", 15) == 0) {
		const char *id = p + 15, *slash = strchr(id, '/');
		_cleanup_free_ char *aid = slash ? strndup(id, (size_t)(slash - id)) : kiln_strdup(id);
		if ((post && slash) || (!slash && strcmp(r->method, "DELETE") == 0)) {
			agent_action(r, aid, slash ? slash + 1 : NULL);
			return true;
		}
	}
	return false;
}
