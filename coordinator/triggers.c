/*
 * triggers — what starts runs besides `kiln submit`: forge events (made
 * uniform here from GitHub's, Gitea's and GitLab's payloads), manual
 * dispatches, cron schedules, workflow_run and repository_dispatch.
 *
 * Everything that comes from outside becomes a row of `deliveries` first,
 * committed before anyone is answered: webhooks (hooks.c), repository
 * dispatches, fired schedules ("schedule:REPO:FILE:CRON:MINUTE") and
 * workflow_run events ("workflow_run:RUN:TYPE"). The ids are unique per forge,
 * which de-duplicates redeliveries and a schedule fired twice in one minute.
 * A pending delivery is handed to the planner (a worker thread: fetches and
 * parsing stay off the core thread); the planner writes its runs and marks
 * the delivery done in one transaction, so after a crash a delivery is
 * either planned with its runs or still pending, and pending ones are
 * planned again at start. A failed fetch is retried with backoff, 5 times.
 *
 * Schedules and workflow_run listeners are read from the default branch
 * whenever it is planned (a push to it, a repository added) into
 * repo_triggers, so the once-a-minute cron check needs no fetch.
 *
 * GET /api/v1/deliveries[?repo=NAME] lists the latest deliveries and what
 * became of them (payloads are not shown).
 *
 * Test hook: POST /api/v1/schedules/tick {"at_ms": N} evaluates every
 * schedule at the minute holding N, exactly as the clock does each minute.
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cron.h"
#include "common/util.h"

#define MAX_INFLIGHT 4
#define MAX_ATTEMPTS 5
#define MAX_DEPTH 3 /* workflow_run chains: GitHub's three levels */
#define KEEP_DELIVERIES_MS (30ll * 24 * 3600 * 1000)
#define ZERO_SHA "0000000000000000000000000000000000000000"

struct triggers {
	int64_t inflight[MAX_INFLIGHT];
	size_t n;
	int64_t minute;     /* the last minute schedules were evaluated for */
	int64_t last_scan_ms, last_prune_ms;
};

void trig_event_clear(trig_event *e)
{
	if (!e)
		return;
	char **all[] = {&e->event,   &e->action, &e->ref,	&e->sha,     &e->before,
			&e->base_ref, &e->fetch_ref, &e->actor, &e->message, &e->workflow,
			&e->cron,    &e->trigger_workflow};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(all); i++)
		free(*all[i]);
	json_decref(e->payload);
	json_decref(e->inputs);
	memset(e, 0, sizeof *e);
}

void trig_req_free(trig_req *t)
{
	if (!t)
		return;
	free(t->repo_name);
	free(t->url);
	if (t->token) {
		explicit_bzero(t->token, strlen(t->token));
		free(t->token);
	}
	free(t->default_branch);
	free(t->forge);
	free(t->hook_event);
	free(t->payload_text);
	trig_event_clear(&t->ev);
	free(t->error);
	json_decref(t->triggers);
	free(t);
}

/* ---- payloads ------------------------------------------------------------------------- */

static const char *jpath(json_t *o, const char *a, const char *b, const char *c)
{
	json_t *v = json_object_get(o, a);
	if (b)
		v = json_object_get(v, b);
	if (c)
		v = json_object_get(v, c);
	return json_string_value(v);
}

static bool is_sha(const char *s)
{
	return s && strlen(s) == 40 && strspn(s, "0123456789abcdef") == 40;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? kiln_strdup(s) : NULL;
}

static int bad(const char *what)
{
	return kiln_err(EINVAL, "payload: %s", what);
}

/* GitHub's and Gitea's push. */
static int parse_push(json_t *p, trig_event *e, const char **why)
{
	const char *ref = json_string_value(json_object_get(p, "ref"));
	const char *after = json_string_value(json_object_get(p, "after"));
	const char *before = json_string_value(json_object_get(p, "before"));
	if (!ref || strncmp(ref, "refs/", 5) != 0 || strlen(ref) > 1024)
		return bad("push without a ref");
	if (json_is_true(json_object_get(p, "deleted")) || (after && strcmp(after, ZERO_SHA) == 0)) {
		*why = "a branch or tag was deleted";
		return 1;
	}
	if (!is_sha(after))
		return bad("push without an 'after' commit");
	e->event = kiln_strdup("push");
	e->ref = kiln_strdup(ref);
	e->sha = kiln_strdup(after);
	e->before = kiln_strdup(is_sha(before) && strcmp(before, ZERO_SHA) != 0 &&
					!json_is_true(json_object_get(p, "created"))
				? before
				: "");
	e->message = dup_or_null(jpath(p, "head_commit", "message", NULL));
	const char *actor = jpath(p, "sender", "login", NULL);
	if (!actor)
		actor = jpath(p, "pusher", "name", NULL);
	e->actor = dup_or_null(actor);
	e->payload = json_incref(p);
	return 0;
}

static int parse_pull_request(const char *forge, json_t *p, trig_event *e)
{
	json_t *pr = json_object_get(p, "pull_request");
	const char *action = json_string_value(json_object_get(p, "action"));
	json_int_t number = json_integer_value(json_object_get(p, "number"));
	if (!number)
		number = json_integer_value(json_object_get(pr, "number"));
	const char *head_sha = jpath(pr, "head", "sha", NULL);
	const char *base_ref = jpath(pr, "base", "ref", NULL);
	if (!json_is_object(pr) || !action || number <= 0 || !is_sha(head_sha) || !base_ref)
		return bad("pull_request without action, number, head.sha or base.ref");
	if (strcmp(action, "synchronized") == 0) /* Gitea's spelling */
		action = "synchronize";
	e->event = kiln_strdup("pull_request");
	e->action = kiln_strdup(action);
	e->pr_number = number;
	e->sha = kiln_strdup(head_sha);
	e->ref = kiln_asprintf("refs/pull/%lld/%s", (long long)number,
			       strcmp(forge, "github") == 0 ? "merge" : "head");
	e->fetch_ref = kiln_asprintf("refs/pull/%lld/head", (long long)number);
	e->base_ref = kiln_strdup(base_ref);
	const char *base_sha = jpath(pr, "base", "sha", NULL);
	e->before = kiln_strdup(is_sha(base_sha) ? base_sha : "");
	const char *head_repo = jpath(pr, "head", "repo", "full_name");
	const char *base_repo = jpath(pr, "base", "repo", "full_name");
	e->fork = !head_repo || !base_repo || strcmp(head_repo, base_repo) != 0;
	e->actor = dup_or_null(jpath(p, "sender", "login", NULL));
	e->payload = json_incref(p);
	return 0;
}

static int parse_create(json_t *p, trig_event *e)
{
	const char *ref = json_string_value(json_object_get(p, "ref"));
	const char *type = json_string_value(json_object_get(p, "ref_type"));
	if (!ref || !*ref || strlen(ref) > 1024 || !type ||
	    (strcmp(type, "branch") != 0 && strcmp(type, "tag") != 0))
		return bad("create without ref and ref_type (branch or tag)");
	e->event = kiln_strdup("create");
	e->ref = strncmp(ref, "refs/", 5) == 0
			 ? kiln_strdup(ref)
			 : kiln_asprintf("refs/%s/%s", strcmp(type, "tag") == 0 ? "tags" : "heads",
					 ref);
	const char *sha = json_string_value(json_object_get(p, "sha")); /* Gitea has it */
	e->sha = is_sha(sha) ? kiln_strdup(sha) : NULL;
	e->actor = dup_or_null(jpath(p, "sender", "login", NULL));
	e->payload = json_incref(p);
	return 0;
}

/* GitLab's Push Hook and Tag Push Hook, with a GitHub-shaped github.event. */
static int parse_gitlab_push(json_t *p, trig_event *e, const char **why)
{
	const char *ref = json_string_value(json_object_get(p, "ref"));
	const char *after = json_string_value(json_object_get(p, "after"));
	const char *checkout = json_string_value(json_object_get(p, "checkout_sha"));
	const char *before = json_string_value(json_object_get(p, "before"));
	if (!ref || strncmp(ref, "refs/", 5) != 0 || strlen(ref) > 1024)
		return bad("push without a ref");
	if (after && strcmp(after, ZERO_SHA) == 0) {
		*why = "a branch or tag was deleted";
		return 1;
	}
	const char *sha = is_sha(checkout) ? checkout : after;
	if (!is_sha(sha))
		return bad("push without 'checkout_sha' or 'after'");
	const char *message = NULL;
	size_t i;
	json_t *cm;
	json_array_foreach(json_object_get(p, "commits"), i, cm)
	{
		const char *id = json_string_value(json_object_get(cm, "id"));
		if (id && strcmp(id, sha) == 0)
			message = json_string_value(json_object_get(cm, "message"));
	}
	e->event = kiln_strdup("push");
	e->ref = kiln_strdup(ref);
	e->sha = kiln_strdup(sha);
	e->before = kiln_strdup(is_sha(before) && strcmp(before, ZERO_SHA) != 0 ? before : "");
	e->message = dup_or_null(message);
	e->actor = dup_or_null(json_string_value(json_object_get(p, "user_username")));
	e->payload = json_pack("{s:s, s:s, s:s, s:b, s:{s:s, s:s?}, s:{s:s?}, s:{s:s?}, s:O}",
			       "ref", ref, "before", before ? before : ZERO_SHA, "after", sha,
			       "created", !*e->before, "head_commit", "id", sha, "message",
			       message, "repository", "full_name",
			       jpath(p, "project", "path_with_namespace", NULL), "sender", "login",
			       e->actor, "gitlab", p);
	return 0;
}

static int parse_gitlab_mr(json_t *p, trig_event *e, const char **why)
{
	json_t *a = json_object_get(p, "object_attributes");
	const char *action = json_string_value(json_object_get(a, "action"));
	json_int_t iid = json_integer_value(json_object_get(a, "iid"));
	const char *sha = jpath(a, "last_commit", "id", NULL);
	const char *target = json_string_value(json_object_get(a, "target_branch"));
	const char *source = json_string_value(json_object_get(a, "source_branch"));
	if (!json_is_object(a) || iid <= 0 || !is_sha(sha) || !target)
		return bad("merge request without iid, last_commit.id or target_branch");
	static const char *const map[][2] = {{"open", "opened"},	 {"reopen", "reopened"},
					     {"close", "closed"},	 {"merge", "closed"},
					     {"update", "synchronize"}};
	const char *act = NULL;
	for (size_t i = 0; action && i < KILN_ARRAY_SIZE(map); i++)
		if (strcmp(action, map[i][0]) == 0)
			act = map[i][1];
	if (act && strcmp(action, "update") == 0 && !json_object_get(a, "oldrev"))
		act = "edited"; /* an update that pushed nothing */
	if (!act) {
		*why = "a merge request action that starts nothing";
		return 1;
	}
	e->event = kiln_strdup("pull_request");
	e->action = kiln_strdup(act);
	e->pr_number = iid;
	e->sha = kiln_strdup(sha);
	e->ref = kiln_asprintf("refs/merge-requests/%lld/head", (long long)iid);
	e->fetch_ref = kiln_strdup(e->ref);
	e->base_ref = kiln_strdup(target);
	e->before = kiln_asprintf("refs/heads/%s", target);
	json_t *sp = json_object_get(a, "source_project_id"), *tp = json_object_get(a, "target_project_id");
	e->fork = sp && tp && json_integer_value(sp) != json_integer_value(tp);
	e->message = dup_or_null(jpath(a, "last_commit", "message", NULL));
	e->actor = dup_or_null(jpath(p, "user", "username", NULL));
	e->payload = json_pack(
		"{s:s, s:I, s:{s:I, s:s?, s:b, s:{s:s?, s:s}, s:{s:s}}, s:{s:s?}, s:{s:s?}, s:O}",
		"action", act, "number", iid, "pull_request", "number", iid, "title",
		json_string_value(json_object_get(a, "title")), "merged",
		strcmp(action, "merge") == 0, "head", "ref", source, "sha", sha, "base", "ref",
		target, "repository", "full_name", jpath(p, "project", "path_with_namespace", NULL),
		"sender", "login", e->actor, "gitlab", p);
	return 0;
}

/* Events kiln makes itself (deliveries of forge "kiln"). */
static int parse_kiln(const char *event, json_t *p, trig_event *e, const char **why)
{
	if (strcmp(event, "refresh") == 0) {
		e->event = kiln_strdup("refresh");
		return 0;
	}
	if (strcmp(event, "schedule") == 0) {
		const char *cron = json_string_value(json_object_get(p, "schedule"));
		const char *wf = json_string_value(json_object_get(p, "workflow"));
		if (!cron || !wf)
			return bad("schedule without schedule and workflow");
		e->event = kiln_strdup("schedule");
		e->cron = kiln_strdup(cron);
		e->workflow = kiln_strdup(wf);
		e->payload = json_pack("{s:s}", "schedule", cron);
		return 0;
	}
	if (strcmp(event, "workflow_run") == 0) {
		json_t *wr = json_object_get(p, "workflow_run");
		const char *action = json_string_value(json_object_get(p, "action"));
		if (!json_is_object(wr) || !action)
			return bad("workflow_run without workflow_run and action");
		e->event = kiln_strdup("workflow_run");
		e->action = kiln_strdup(action);
		e->base_ref = dup_or_null(json_string_value(json_object_get(wr, "head_branch")));
		e->trigger_workflow = dup_or_null(json_string_value(json_object_get(wr, "name")));
		e->depth = (int)json_integer_value(json_object_get(p, "kiln_depth"));
		e->actor = dup_or_null(jpath(p, "sender", "login", NULL));
		e->payload = json_deep_copy(p);
		json_object_del(e->payload, "kiln_depth");
		return 0;
	}
	if (strcmp(event, "repository_dispatch") == 0) {
		const char *type = json_string_value(json_object_get(p, "action"));
		if (!type)
			return bad("repository_dispatch without an event type");
		e->event = kiln_strdup("repository_dispatch");
		e->action = kiln_strdup(type);
		e->actor = dup_or_null(jpath(p, "sender", "login", NULL));
		e->payload = json_incref(p);
		return 0;
	}
	*why = "an event kiln does not make";
	return 1;
}

int triggers_parse(const char *forge, const char *event, json_t *payload, trig_event *out,
		   const char **why)
{
	memset(out, 0, sizeof *out);
	static const char *none = "";
	*why = none;
	if (!json_is_object(payload))
		return bad("expected a JSON object");
	int r;
	if (strcmp(forge, "kiln") == 0) {
		r = parse_kiln(event, payload, out, why);
	} else if (strcmp(forge, "gitlab") == 0) {
		if (strcmp(event, "Push Hook") == 0 || strcmp(event, "Tag Push Hook") == 0)
			r = parse_gitlab_push(payload, out, why);
		else if (strcmp(event, "Merge Request Hook") == 0)
			r = parse_gitlab_mr(payload, out, why);
		else {
			*why = "a GitLab event that starts nothing in kiln";
			r = 1;
		}
	} else if (strcmp(event, "ping") == 0) {
		*why = "ping";
		r = 1;
	} else if (strcmp(event, "push") == 0) {
		r = parse_push(payload, out, why);
	} else if (strcmp(event, "pull_request") == 0) {
		r = parse_pull_request(forge, payload, out);
	} else if (strcmp(event, "create") == 0) {
		r = parse_create(payload, out);
	} else {
		*why = "an event that starts nothing in kiln";
		r = 1;
	}
	if (r != 0)
		trig_event_clear(out);
	return r;
}

/* ---- deliveries ----------------------------------------------------------------------- */

static struct triggers *state(coord *c)
{
	if (!c->triggers) {
		c->triggers = kiln_calloc(1, sizeof *c->triggers);
		c->triggers->minute = kiln_now_ms() / 60000;
	}
	return c->triggers;
}

void triggers_free(coord *c)
{
	free(c->triggers);
	c->triggers = NULL;
}

static bool inflight(struct triggers *t, int64_t id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->inflight[i] == id)
			return true;
	return false;
}

/* A request for repository repo_id, with its clone settings; NULL if it is gone. */
static trig_req *req_for(coord *c, int64_t repo_id)
{
	coord_repo repo;
	if (repo_load(c, NULL, repo_id, &repo) < 0)
		return NULL;
	trig_req *t = kiln_calloc(1, sizeof *t);
	t->repo_id = repo.id;
	t->repo_name = kiln_strdup(repo.name);
	t->url = kiln_strdup(repo.url);
	t->default_branch = kiln_strdup(repo.default_branch);
	t->forge = kiln_strdup(repo.forge);
	t->token = repo_secret(c, &repo, "token");
	repo_clear(&repo);
	return t;
}

void triggers_kick(coord *c)
{
	struct triggers *t = state(c);
	if (c->draining || t->n >= MAX_INFLIGHT)
		return;
	int64_t now = kiln_now_ms();
	int64_t ids[MAX_INFLIGHT * 2];
	size_t n = 0;
	sqlite3_stmt *st = store_q(c,
				   "SELECT id FROM deliveries WHERE state = 'pending' AND next_ms <= ?"
				   " ORDER BY id LIMIT ?",
				   "ii", now, (int64_t)(MAX_INFLIGHT * 2));
	while (sqlite3_step(st) == SQLITE_ROW && n < KILN_ARRAY_SIZE(ids))
		ids[n++] = sqlite3_column_int64(st, 0);
	store_done(st);
	for (size_t i = 0; i < n && t->n < MAX_INFLIGHT; i++) {
		if (inflight(t, ids[i]))
			continue;
		st = store_q(c, "SELECT forge, event, payload, repo_id FROM deliveries WHERE id = ?",
			     "i", ids[i]);
		if (sqlite3_step(st) != SQLITE_ROW) {
			store_done(st);
			continue;
		}
		_cleanup_free_ char *forge = kiln_strdup(col_text(st, 0));
		_cleanup_free_ char *event = kiln_strdup(col_text(st, 1));
		char *payload = kiln_strdup(col_text(st, 2));
		int64_t repo_id = sqlite3_column_int64(st, 3);
		store_done(st);
		trig_req *r = req_for(c, repo_id);
		if (!r) {
			free(payload);
			store_x(c,
				"UPDATE deliveries SET state = 'dropped', payload = NULL,"
				" message = 'repository removed' WHERE id = ?",
				"i", ids[i]);
			continue;
		}
		free(r->forge);
		r->forge = kiln_strdup(forge);
		r->hook_event = kiln_strdup(event);
		r->payload_text = payload;
		r->delivery_id = ids[i];
		t->inflight[t->n++] = ids[i];
		planner_trigger(c, r);
	}
}

/* Adds a delivery of kiln's own; 1 if new, 0 if it was there already. */
static int add_own(coord *c, int64_t repo_id, const char *id, const char *event, json_t *payload)
{
	char *text = json_dumps(payload, JSON_COMPACT);
	int rc = store_x(c,
			 "INSERT OR IGNORE INTO deliveries(forge, delivery, repo_id, event, payload,"
			 " state, created_ms) VALUES('kiln', ?, ?, ?, ?, 'pending', ?)",
			 "titti", id, repo_id, event, text, kiln_now_ms());
	free(text);
	return rc == SQLITE_DONE && sqlite3_changes(c->db) > 0;
}

void triggers_refresh(coord *c, int64_t repo_id)
{
	char id[64];
	snprintf(id, sizeof id, "refresh:%lld:%lld", (long long)repo_id, (long long)kiln_now_ms());
	json_t *p = json_object();
	add_own(c, repo_id, id, "refresh", p);
	json_decref(p);
	triggers_kick(c);
}

void triggers_record(coord *c, trig_req *t, const uint64_t *runs, size_t n)
{
	if (t->triggers) {
		store_x(c, "DELETE FROM repo_triggers WHERE repo_id = ?", "i", t->repo_id);
		size_t i;
		json_t *row;
		json_array_foreach(t->triggers, i, row)
		{
			store_x(c,
				"INSERT OR IGNORE INTO repo_triggers(repo_id, workflow, kind, value)"
				" VALUES(?, ?, ?, ?)",
				"ittt", t->repo_id, json_string_value(json_array_get(row, 0)),
				json_string_value(json_array_get(row, 1)),
				json_string_value(json_array_get(row, 2)));
		}
	}
	if (!t->delivery_id)
		return;
	if (t->retry) {
		sqlite3_stmt *st = store_q(c, "SELECT attempts FROM deliveries WHERE id = ?", "i",
					   t->delivery_id);
		int64_t attempts = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		store_done(st);
		attempts++;
		int64_t next = kiln_now_ms() + ((int64_t)5000 << (attempts < 10 ? attempts : 10));
		store_x(c,
			"UPDATE deliveries SET attempts = ?, next_ms = ?, message = ?,"
			" state = CASE WHEN ? >= ? THEN 'failed' ELSE 'pending' END WHERE id = ?",
			"iitiii", attempts, next, t->error, attempts, (int64_t)MAX_ATTEMPTS,
			t->delivery_id);
		return;
	}
	json_t *ids = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(ids, json_integer((json_int_t)runs[i]));
	char *text = json_dumps(ids, JSON_COMPACT);
	json_decref(ids);
	bool failed = t->status >= 300;
	store_x(c,
		"UPDATE deliveries SET state = ?, message = ?, runs = ?,"
		" payload = CASE WHEN ? THEN payload ELSE NULL END WHERE id = ?",
		"tttii", failed ? "failed" : "done", t->error, text, (int64_t)failed,
		t->delivery_id);
	free(text);
}

void triggers_done(coord *c, trig_req *t, const uint64_t *runs, size_t n)
{
	struct triggers *s = state(c);
	for (size_t i = 0; t->delivery_id && i < s->n; i++)
		if (s->inflight[i] == t->delivery_id) {
			s->inflight[i] = s->inflight[--s->n];
			break;
		}
	if (t->delivery_id)
		kiln_log(t->status >= 300 ? KILN_LOG_WARNING : KILN_LOG_INFO,
			 "delivery %lld (%s %s for %s): %zu run(s)%s%s", (long long)t->delivery_id,
			 t->forge, t->hook_event ? t->hook_event : "", t->repo_name, n,
			 t->error ? ": " : "", t->error ? t->error : "");
	if (t->reply) {
		if (t->status >= 300) {
			api_error(t->reply, t->arg, t->status, "%s", t->error ? t->error : "cannot plan");
		} else {
			json_t *out = json_array();
			for (size_t k = 0; k < n; k++) {
				sqlite3_stmt *st = store_q(c, "SELECT id, number, state, sha FROM runs"
							      " WHERE id = ?", "i", (int64_t)runs[k]);
				if (sqlite3_step(st) == SQLITE_ROW)
					json_array_append_new(
						out, json_pack("{s:I, s:I, s:s, s:s}", "id",
							       (json_int_t)sqlite3_column_int64(st, 0),
							       "number",
							       (json_int_t)sqlite3_column_int64(st, 1),
							       "state", col_text(st, 2), "sha",
							       col_text(st, 3)));
				store_done(st);
			}
			api_json(t->reply, t->arg, 201, json_pack("{s:o}", "runs", out));
		}
	}
	trig_req_free(t);
	triggers_kick(c);
}

/* ---- schedules and workflow_run -------------------------------------------------------- */

/* Fires every stored schedule that matches `minute` (minutes since the epoch). */
static int fire_schedules(coord *c, int64_t minute)
{
	typedef struct {
		int64_t repo;
		char *wf, *cron;
	} due;
	due *list = NULL;
	size_t n = 0;
	sqlite3_stmt *st = store_q(c,
				   "SELECT repo_id, workflow, value FROM repo_triggers"
				   " WHERE kind = 'cron' ORDER BY repo_id, workflow",
				   NULL);
	while (sqlite3_step(st) == SQLITE_ROW) {
		kiln_cron cr;
		if (kiln_cron_parse(col_text(st, 2), &cr, NULL) < 0 ||
		    !kiln_cron_matches(&cr, (time_t)(minute * 60)))
			continue;
		list = kiln_realloc(list, (n + 1) * sizeof *list);
		list[n].repo = sqlite3_column_int64(st, 0);
		list[n].wf = kiln_strdup(col_text(st, 1));
		list[n].cron = kiln_strdup(col_text(st, 2));
		n++;
	}
	store_done(st);
	int fired = 0;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *id = kiln_asprintf("schedule:%lld:%s:%s:%lld",
							(long long)list[i].repo, list[i].wf,
							list[i].cron, (long long)minute);
		json_t *p = json_pack("{s:s, s:s}", "schedule", list[i].cron, "workflow", list[i].wf);
		if (add_own(c, list[i].repo, id, "schedule", p) > 0) {
			fired++;
			kiln_log(KILN_LOG_INFO, "schedule '%s' of %s fired", list[i].cron, list[i].wf);
		}
		json_decref(p);
		free(list[i].wf);
		free(list[i].cron);
	}
	free(list);
	if (fired)
		triggers_kick(c);
	return fired;
}

/* workflow_run events of runs of registered repositories: requested, then completed. */
static void scan_workflow_runs(coord *c)
{
	typedef struct {
		int64_t id, repo, wr, depth, number;
		bool done;
		char *name, *workflow, *ref, *sha, *event, *conclusion, *repository, *actor;
	} row;
	row rows[32];
	size_t n = 0;
	sqlite3_stmt *st = store_q(
		c,
		"SELECT id, repo_id, wr_state, depth, number, state = 'completed', name, workflow,"
		" ref, sha, event, conclusion, repository, actor FROM runs WHERE wr_state < 2"
		" ORDER BY id LIMIT 32",
		NULL);
	while (sqlite3_step(st) == SQLITE_ROW && n < KILN_ARRAY_SIZE(rows)) {
		row *r = &rows[n++];
		r->id = sqlite3_column_int64(st, 0);
		r->repo = sqlite3_column_int64(st, 1);
		r->wr = sqlite3_column_int64(st, 2);
		r->depth = sqlite3_column_int64(st, 3);
		r->number = sqlite3_column_int64(st, 4);
		r->done = sqlite3_column_int(st, 5) != 0;
		r->name = kiln_strdup(col_text(st, 6));
		r->workflow = kiln_strdup(col_text(st, 7));
		r->ref = kiln_strdup(col_text(st, 8));
		r->sha = kiln_strdup(col_text(st, 9));
		r->event = kiln_strdup(col_text(st, 10));
		r->conclusion = kiln_strdup(col_text(st, 11));
		r->repository = kiln_strdup(col_text(st, 12));
		r->actor = kiln_strdup(col_text(st, 13));
	}
	store_done(st);
	bool kick = false;
	for (size_t i = 0; i < n; i++) {
		row *r = &rows[i];
		st = store_q(c,
			     "SELECT 1 FROM repo_triggers WHERE repo_id = ? AND kind = 'workflow_run'"
			     " LIMIT 1",
			     "i", r->repo);
		bool wanted = sqlite3_step(st) == SQLITE_ROW && r->depth < MAX_DEPTH;
		store_done(st);
		int64_t next = !wanted ? 2 : r->done ? 2 : 1;
		if (wanted) {
			const char *branch = strncmp(r->ref, "refs/heads/", 11) == 0 ? r->ref + 11
											 : r->ref;
			for (int type = (int)r->wr; type < (int)next; type++) {
				const char *action = type == 0 ? "requested" : "completed";
				json_t *p = json_pack(
					"{s:s, s:{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:I},"
					" s:{s:s, s:s}, s:{s:s}, s:{s:s}, s:I}",
					"action", action, "workflow_run", "id", (json_int_t)r->id,
					"name", r->name, "path", r->workflow, "head_branch", branch,
					"head_sha", r->sha, "event", r->event, "status",
					type == 0 ? "queued" : "completed", "conclusion",
					type == 0 ? NULL : r->conclusion, "run_number",
					(json_int_t)r->number, "workflow", "name", r->name, "path",
					r->workflow, "repository", "full_name", r->repository, "sender",
					"login", *r->actor ? r->actor : "kiln", "kiln_depth",
					(json_int_t)(r->depth + 1));
				char id[64];
				snprintf(id, sizeof id, "workflow_run:%lld:%s", (long long)r->id, action);
				kick |= add_own(c, r->repo, id, "workflow_run", p) > 0;
				json_decref(p);
			}
		}
		store_x(c, "UPDATE runs SET wr_state = ? WHERE id = ?", "ii", next, r->id);
		free(r->name);
		free(r->workflow);
		free(r->ref);
		free(r->sha);
		free(r->event);
		free(r->conclusion);
		free(r->repository);
		free(r->actor);
	}
	if (kick)
		triggers_kick(c);
}

void triggers_tick(coord *c, int64_t now)
{
	struct triggers *t = state(c);
	if (c->draining || now - t->last_scan_ms < 1000)
		return;
	bool first = t->last_scan_ms == 0;
	t->last_scan_ms = now;
	if (first) /* what was pending when the coordinator stopped: plan it now */
		store_x(c, "UPDATE deliveries SET next_ms = 0 WHERE state = 'pending'", NULL);
	triggers_kick(c);
	scan_workflow_runs(c);
	int64_t minute = now / 60000;
	if (minute > t->minute) {
		/* catch up at most five minutes after a stall; the ids make it idempotent */
		for (int64_t m = minute - t->minute > 5 ? minute - 4 : t->minute + 1; m <= minute; m++)
			fire_schedules(c, m);
		t->minute = minute;
	}
	if (now - t->last_prune_ms > 3600 * 1000) {
		t->last_prune_ms = now;
		store_x(c, "DELETE FROM deliveries WHERE state != 'pending' AND created_ms < ?", "i",
			now - KEEP_DELIVERIES_MS);
	}
}

/* ---- API -------------------------------------------------------------------------------- */

static void post_dispatch(api_req *r, const char *name)
{
	coord *c = r->c;
	json_t *body = api_body_object(r);
	if (!body)
		return;
	coord_repo repo;
	if (repo_load(c, name, 0, &repo) < 0) {
		json_decref(body);
		api_error(r->reply, r->arg, 404, "no repository '%s'", name);
		return;
	}
	const char *wf = json_string_value(json_object_get(body, "workflow"));
	json_t *refv = json_object_get(body, "ref");
	const char *ref = json_string_value(refv);
	json_t *inputs = json_object_get(body, "inputs");
	const char *problem = NULL;
	if (!wf || !*wf || strlen(wf) > 255 || strstr(wf, ".."))
		problem = "workflow (a workflow file name, e.g. ci.yml) is required";
	else if (refv && (!ref || !*ref || strlen(ref) > 1024))
		problem = "ref: expected a branch, tag or commit";
	else if (inputs && !json_is_object(inputs))
		problem = "inputs: expected an object of name: value";
	else if (json_object_size(inputs) > 100)
		problem = "inputs: more than 100";
	if (problem) {
		repo_clear(&repo);
		json_decref(body);
		api_error(r->reply, r->arg, 400, "%s", problem);
		return;
	}
	trig_req *t = req_for(c, repo.id);
	t->ev.event = kiln_strdup("workflow_dispatch");
	t->ev.ref = kiln_strdup(ref ? ref : repo.default_branch);
	t->ev.workflow = kiln_strdup(wf);
	t->ev.inputs = inputs ? json_incref(inputs) : json_object();
	t->ev.actor = kiln_strdup("kiln");
	t->reply = r->reply;
	t->arg = r->arg;
	repo_clear(&repo);
	json_decref(body);
	planner_trigger(c, t);
}

static void post_repository_dispatch(api_req *r, const char *name)
{
	coord *c = r->c;
	json_t *body = api_body_object(r);
	if (!body)
		return;
	coord_repo repo;
	if (repo_load(c, name, 0, &repo) < 0) {
		json_decref(body);
		api_error(r->reply, r->arg, 404, "no repository '%s'", name);
		return;
	}
	const char *type = json_string_value(json_object_get(body, "event_type"));
	json_t *cp = json_object_get(body, "client_payload");
	if (!type || !*type || strlen(type) > 100 || (cp && !json_is_object(cp))) {
		repo_clear(&repo);
		json_decref(body);
		api_error(r->reply, r->arg, 400,
			  "expected {\"event_type\": up to 100 characters, \"client_payload\": {…}}");
		return;
	}
	char hex[25];
	if (kiln_random_hex(12, hex) < 0) {
		repo_clear(&repo);
		json_decref(body);
		api_error(r->reply, r->arg, 503, "no randomness");
		return;
	}
	_cleanup_free_ char *id = kiln_asprintf("repository_dispatch:%s", hex);
	json_t *p = json_pack("{s:s, s:O, s:{s:s}, s:{s:s}}", "action", type, "client_payload",
			      cp ? cp : json_object(), "repository", "full_name", repo.name,
			      "sender", "login", "kiln");
	if (!cp)
		json_decref(json_object_get(p, "client_payload"));
	int added = add_own(c, repo.id, id, "repository_dispatch", p);
	json_decref(p);
	repo_clear(&repo);
	json_decref(body);
	if (added <= 0) {
		api_error(r->reply, r->arg, 503, "cannot store the event");
		return;
	}
	api_json(r->reply, r->arg, 202, json_pack("{s:s, s:s}", "state", "pending", "delivery", id));
	triggers_kick(c);
}

static void post_schedule_tick(api_req *r)
{
	json_t *body = api_body_object(r);
	if (!body)
		return;
	json_t *at = json_object_get(body, "at_ms");
	if (!json_is_integer(at) || json_integer_value(at) < 0) {
		json_decref(body);
		api_error(r->reply, r->arg, 400, "at_ms: expected milliseconds since the epoch");
		return;
	}
	int fired = fire_schedules(r->c, json_integer_value(at) / 60000);
	json_decref(body);
	api_json(r->reply, r->arg, 200, json_pack("{s:i}", "fired", fired));
}

/* GET /api/v1/deliveries[?repo=NAME&limit=N]: the latest deliveries, newest first, without
   their payloads. */
static void get_deliveries(api_req *r)
{
	_cleanup_free_ char *name = api_query(r, "repo");
	int64_t limit = api_query_int(r, "limit", 50, 1, 500);
	int64_t repo_id = -1;
	if (name) {
		coord_repo repo;
		if (repo_load(r->c, name, 0, &repo) < 0) {
			api_error(r->reply, r->arg, 404, "no repository '%.255s'", name);
			return;
		}
		repo_id = repo.id;
		repo_clear(&repo);
	}
	json_t *a = json_array();
	sqlite3_stmt *st = store_q(r->c,
				   "SELECT d.id, d.forge, d.delivery, coalesce(p.name, ''), d.event,"
				   " d.state, d.message, d.runs, d.attempts, d.created_ms"
				   " FROM deliveries d LEFT JOIN repos p ON p.id = d.repo_id"
				   " WHERE ? < 0 OR d.repo_id = ? ORDER BY d.id DESC LIMIT ?",
				   "iii", repo_id, repo_id, limit);
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *runs = json_loads(col_text(st, 7), 0, NULL);
		json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:I}", "id",
				      (json_int_t)sqlite3_column_int64(st, 0), "forge",
				      col_text(st, 1), "delivery", col_text(st, 2), "repository",
				      col_text(st, 3), "event", col_text(st, 4), "state",
				      col_text(st, 5), "runs", json_is_array(runs) ? runs : json_array(),
				      "attempts", (json_int_t)sqlite3_column_int64(st, 8),
				      "created_ms", (json_int_t)sqlite3_column_int64(st, 9));
		if (!json_is_array(runs))
			json_decref(runs);
		if (sqlite3_column_type(st, 6) != SQLITE_NULL)
			json_object_set_new(o, "message", json_string(col_text(st, 6)));
		json_array_append_new(a, o);
	}
	store_done(st);
	api_json(r->reply, r->arg, 200, json_pack("{s:o}", "deliveries", a));
}

static bool ends_with(const char *s, const char *suffix, size_t *prefix_len)
{
	size_t n = strlen(s), m = strlen(suffix);
	if (n <= m || strcmp(s + n - m, suffix) != 0)
		return false;
	*prefix_len = n - m;
	return true;
}

bool triggers_serve(api_req *r)
{
	const char *p = r->path;
	bool post = strcmp(r->method, "POST") == 0;
	if (strcmp(p, "/api/v1/deliveries") == 0) {
		if (strcmp(r->method, "GET") == 0)
			get_deliveries(r);
		else
			api_error(r->reply, r->arg, 405, "use GET");
		return true;
	}
	if (strcmp(p, "/api/v1/schedules/tick") == 0) {
		if (post)
			post_schedule_tick(r);
		else
			api_error(r->reply, r->arg, 405, "POST {\"at_ms\": N}");
		return true;
	}
	if (strncmp(p, "/api/v1/repos/", 14) != 0)
		return false;
	const char *rest = p + 14;
	size_t n;
	bool rd = ends_with(rest, "/repository_dispatch", &n);
	if (!rd && !ends_with(rest, "/dispatch", &n))
		return false;
	if (!post) {
		api_error(r->reply, r->arg, 405, "use POST");
		return true;
	}
	_cleanup_free_ char *name = repo_path_name(rest, n);
	if (!name) {
		api_error(r->reply, r->arg, 400, "not a repository name: '%.*s'", (int)(n > 200 ? 200 : n),
			  rest);
		return true;
	}
	if (rd)
		post_repository_dispatch(r, name);
	else
		post_dispatch(r, name);
	return true;
}

/* ---- a run's contexts ------------------------------------------------------------------- */

void coord_run_contexts(coord *c, uint64_t run_id, json_t *contexts)
{
	json_t *gh = json_object_get(contexts, "github");
	sqlite3_stmt *st = store_q(c,
				   "SELECT repository, payload, actor, inputs FROM runs"
				   " WHERE id = ? AND repo_id IS NOT NULL",
				   "i", (int64_t)run_id);
	if (sqlite3_step(st) != SQLITE_ROW || !json_is_object(gh)) {
		store_done(st);
		return;
	}
	const char *name = col_text(st, 0);
	if (*name) {
		json_object_set_new(gh, "repository", json_string(name));
		const char *slash = strrchr(name, '/');
		json_object_set_new(gh, "repository_owner",
				    json_stringn(name, slash ? (size_t)(slash - name) : 0));
	}
	json_t *payload = sqlite3_column_type(st, 1) == SQLITE_NULL
				  ? NULL
				  : json_loads(col_text(st, 1), 0, NULL);
	if (json_is_object(payload)) {
		json_t *pr = json_object_get(payload, "pull_request");
		const char *head = json_string_value(json_object_get(json_object_get(pr, "head"), "ref"));
		const char *base = json_string_value(json_object_get(json_object_get(pr, "base"), "ref"));
		if (head)
			json_object_set_new(gh, "head_ref", json_string(head));
		if (base)
			json_object_set_new(gh, "base_ref", json_string(base));
		json_object_set_new(gh, "event", payload);
	} else {
		json_decref(payload);
	}
	const char *actor = col_text(st, 2);
	if (*actor) {
		json_object_set_new(gh, "actor", json_string(actor));
		json_object_set_new(gh, "triggering_actor", json_string(actor));
	}
	json_t *in = json_object_get(contexts, "inputs");
	if (sqlite3_column_type(st, 3) != SQLITE_NULL && (!in || json_object_size(in) == 0)) {
		json_t *v = json_loads(col_text(st, 3), 0, NULL);
		if (json_is_object(v))
			json_object_set_new(contexts, "inputs", v);
		else
			json_decref(v);
	}
	store_done(st);
}
