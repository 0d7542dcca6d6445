/*
 * hooks — the forges' webhooks: POST /hooks/github, /hooks/gitea and
 * /hooks/gitlab. A delivery goes through these steps, in this order:
 *
 *   1. size (over max_body: 413; nng's server refuses larger bodies itself
 *      before they reach us), method, and the event, delivery id and
 *      signature headers (400, or 401 when there is no signature);
 *   2. the body is decoded as JSON and ONLY the repository's name is read
 *      from it (repository.full_name, GitLab's project.path_with_namespace):
 *      the forge signs with that repository's secret, so it must be known to
 *      check the signature. An unknown repository is 404;
 *   3. the signature of the raw body is checked against the repository's
 *      secret in constant time: HMAC-SHA256 in X-Hub-Signature-256
 *      ("sha256=<hex>", GitHub) or X-Gitea-Signature (hex), the token in
 *      X-Gitlab-Token (GitLab). A bad one is 401;
 *   4. only now is anything else read: the event is made uniform
 *      (triggers_parse); a ping or an event that starts nothing is answered
 *      200 and recorded as ignored;
 *   5. the delivery is written to the store (deliveries: forge + delivery id
 *      unique, so a redelivery is answered 200 "duplicate" and starts nothing)
 *      with its payload, state pending, and committed BEFORE the 202 answer;
 *   6. the planner picks it up in a worker thread (triggers_kick); a
 *      coordinator that dies before that plans it after its restart.
 *
 * Nothing is stored or enqueued on any error path.
 */
#include "coordinator/internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADER 256

bool hooks_signature_ok(const char *secret, const void *body, size_t len, const char *sig,
			bool prefixed)
{
	if (!secret || !sig)
		return false;
	if (prefixed) {
		if (strncmp(sig, "sha256=", 7) != 0)
			return false;
		sig += 7;
	}
	char want[65];
	kiln_hmac_sha256_hex(secret, strlen(secret), body, len, want);
	/* forges send lowercase hex; accept uppercase too, without branching on the secret */
	char got[65] = {0};
	size_t n = strlen(sig);
	for (size_t i = 0; i < n && i < 64; i++)
		got[i] = (char)tolower((unsigned char)sig[i]);
	return kiln_equal_ct(want, 64, got, n);
}

typedef struct forge_def {
	const char *name, *event_hdr, *delivery_hdr, *sig_hdr;
} forge_def;

static const forge_def forges[] = {
	{"github", "X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256"},
	{"gitea", "X-Gitea-Event", "X-Gitea-Delivery", "X-Gitea-Signature"},
	{"gitlab", "X-Gitlab-Event", "X-Gitlab-Event-UUID", "X-Gitlab-Token"},
};

static bool header_ok(const char *v)
{
	if (!v || !*v || strlen(v) > MAX_HEADER)
		return false;
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static void serve_hook(api_req *r, const forge_def *f)
{
	coord *c = r->c;
	if (strcmp(r->method, "POST") != 0) {
		api_error(r->reply, r->arg, 405, "webhooks are POSTed");
		return;
	}
	if (r->body_len > c->cfg.max_body) {
		api_error(r->reply, r->arg, 413, "body over the limit of %zu bytes", c->cfg.max_body);
		return;
	}
	const char *event = api_header(r, f->event_hdr);
	if (!event && strcmp(f->name, "gitea") == 0)
		event = api_header(r, "X-GitHub-Event"); /* Gitea sends both */
	const char *delivery = api_header(r, f->delivery_hdr);
	const char *sig = api_header(r, f->sig_hdr);
	if (!header_ok(event)) {
		api_error(r->reply, r->arg, 400, "missing or malformed %s header", f->event_hdr);
		return;
	}
	if (!header_ok(delivery)) {
		api_error(r->reply, r->arg, 400, "missing or malformed %s header", f->delivery_hdr);
		return;
	}
	if (!sig || !*sig) {
		api_error(r->reply, r->arg, 401, "unsigned delivery: no %s header", f->sig_hdr);
		return;
	}
	/* step 2: the repository's name, and nothing else, to find the secret */
	json_error_t jerr;
	json_t *payload = json_loadb(r->body ? r->body : "", r->body_len, 0, &jerr);
	if (!json_is_object(payload)) {
		json_decref(payload);
		api_error(r->reply, r->arg, 400, "body: %s",
			  payload ? "expected a JSON object" : jerr.text);
		return;
	}
	bool gitlab = strcmp(f->name, "gitlab") == 0;
	_cleanup_free_ char *name = kiln_strdup(json_string_value(
		gitlab ? json_object_get(json_object_get(payload, "project"), "path_with_namespace")
		       : json_object_get(json_object_get(payload, "repository"), "full_name")));
	if (!name || !repo_name_valid(name)) {
		json_decref(payload);
		api_error(r->reply, r->arg, 400, "the payload names no repository (%s)",
			  gitlab ? "project.path_with_namespace" : "repository.full_name");
		return;
	}
	coord_repo repo;
	if (repo_load(c, name, 0, &repo) < 0 || strcmp(repo.forge, f->name) != 0) {
		bool other = repo.forge != NULL;
		repo_clear(&repo);
		json_decref(payload);
		api_error(r->reply, r->arg, 404,
			  other ? "repository '%s' is not registered as a %s repository"
				: "no repository '%s' (add it with kiln repo add, forge %s)",
			  name, f->name);
		return;
	}
	/* step 3: the signature of the raw body */
	char *secret = repo_secret(c, &repo, "webhook_secret");
	bool ok = gitlab ? secret && kiln_equal_ct(secret, strlen(secret), sig, strlen(sig))
			 : hooks_signature_ok(secret, r->body ? r->body : "", r->body_len, sig,
					      strcmp(f->name, "github") == 0);
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	if (!ok) {
		kiln_log(KILN_LOG_WARNING, "webhook %s %.64s for %s: bad signature", f->name,
			 delivery, name);
		repo_clear(&repo);
		json_decref(payload);
		api_error(r->reply, r->arg, 401, "bad signature");
		return;
	}
	/* step 4: what the event is */
	trig_event ev = {0};
	const char *why = NULL;
	int pr = triggers_parse(f->name, event, payload, &ev, &why);
	trig_event_clear(&ev);
	json_decref(payload);
	if (pr < 0) {
		repo_clear(&repo);
		api_error(r->reply, r->arg, 400, "%s", kiln_errmsg());
		return;
	}
	int64_t now = kiln_now_ms();
	if (pr == 1) {
		if (strcasecmp(event, "ping") != 0)
			store_x(c,
				"INSERT OR IGNORE INTO deliveries(forge, delivery, repo_id, event, state,"
				" message, created_ms) VALUES(?, ?, ?, ?, 'ignored', ?, ?)",
				"ttitti", f->name, delivery, repo.id, event, why, now);
		kiln_log(KILN_LOG_INFO, "webhook %s %s %.64s for %s: %s", f->name, event, delivery,
			 name, why);
		api_json(r->reply, r->arg, 200,
			 json_pack("{s:s, s:s}", "state", "ignored", "reason", why));
		repo_clear(&repo);
		return;
	}
	/* step 5: stored and committed, then answered */
	int rc = store_x(c,
			 "INSERT OR IGNORE INTO deliveries(forge, delivery, repo_id, event, payload,"
			 " state, created_ms) VALUES(?, ?, ?, ?, ?, 'pending', ?)",
			 "ttitti", f->name, delivery, repo.id, event, r->body, now);
	if (rc != SQLITE_DONE) {
		repo_clear(&repo);
		api_error(r->reply, r->arg, 503, "cannot store the delivery");
		return;
	}
	if (sqlite3_changes(c->db) == 0) {
		kiln_log(KILN_LOG_INFO, "webhook %s %.64s for %s: a duplicate, ignored", f->name,
			 delivery, name);
		api_json(r->reply, r->arg, 200,
			 json_pack("{s:s, s:s}", "state", "duplicate", "delivery", delivery));
		repo_clear(&repo);
		return;
	}
	int64_t id = sqlite3_last_insert_rowid(c->db);
	kiln_log(KILN_LOG_INFO, "webhook %s %s %.64s for %s: delivery %lld queued", f->name, event,
		 delivery, name, (long long)id);
	api_json(r->reply, r->arg, 202,
		 json_pack("{s:s, s:s, s:I}", "state", "pending", "delivery", delivery, "id",
			   (json_int_t)id));
	repo_clear(&repo);
	triggers_kick(c);
}

bool hooks_serve(api_req *r)
{
	if (strncmp(r->path, "/hooks/", 7) != 0 && strcmp(r->path, "/hooks") != 0)
		return false;
	const char *name = r->path[6] ? r->path + 7 : "";
	for (size_t i = 0; i < KILN_ARRAY_SIZE(forges); i++)
		if (strcmp(name, forges[i].name) == 0) {
			serve_hook(r, &forges[i]);
			return true;
		}
	api_error(r->reply, r->arg, 404, "no webhook endpoint '%.80s': use /hooks/github, "
					  "/hooks/gitea or /hooks/gitlab", r->path);
	return true;
}
