/* test_auth — tokens, scopes, agent registration and secrets (coordinator/auth.c and
   coordinator/secrets.c): the route table, the scan for secrets.NAME, repository names,
   tokens in a store of their own, and the HTTP side of a coordinator in process. */
#include "tests/harness/check.h"

#include "coordinator/auth.h"
#include "coordinator/internal.h"

#include <errno.h>
#include <string.h>

static void test_routes(void)
{
	CHECK_INT(auth_route_scope("GET", "/healthz"), AUTH_NONE);
	CHECK_INT(auth_route_scope("POST", "/hooks/github"), AUTH_NONE);
	CHECK_INT(auth_route_scope("GET", "/api/v1/runs"), AUTH_READ);
	CHECK_INT(auth_route_scope("GET", "/api/v1/runs/3/log"), AUTH_READ);
	CHECK_INT(auth_route_scope("GET", "/metrics"), AUTH_READ);
	CHECK_INT(auth_route_scope("POST", "/api/v1/runs"), AUTH_RUN);
	CHECK_INT(auth_route_scope("POST", "/api/v1/runs/3/cancel"), AUTH_RUN);
	CHECK_INT(auth_route_scope("POST", "/api/v1/runs/3/rerun"), AUTH_RUN);
	CHECK_INT(auth_route_scope("POST", "/api/v1/runs/3/jobs/build/approve"), AUTH_RUN);
	CHECK_INT(auth_route_scope("POST", "/api/v1/repos/acme/app/dispatch"), AUTH_RUN);
	CHECK_INT(auth_route_scope("POST", "/api/v1/repos/acme/app/repository_dispatch"), AUTH_RUN);
	CHECK_INT(auth_route_scope("POST", "/api/v1/repos"), AUTH_ADMIN);
	CHECK_INT(auth_route_scope("DELETE", "/api/v1/repos/acme/app"), AUTH_ADMIN);
	CHECK_INT(auth_route_scope("GET", "/api/v1/tokens"), AUTH_ADMIN);
	CHECK_INT(auth_route_scope("GET", "/api/v1/secrets/repos/acme/app"), AUTH_ADMIN);
	CHECK_INT(auth_route_scope("PUT", "/api/v1/secrets/orgs/acme/X"), AUTH_ADMIN);
	CHECK_INT(auth_route_scope("POST", "/api/v1/agents/x/disable"), AUTH_ADMIN);
	CHECK_INT(auth_route_scope("PATCH", "/api/v1/runs/3"), AUTH_ADMIN);
	CHECK_INT(auth_route_scope("POST", "/api/v1/runsx"), AUTH_ADMIN);
	auth_scope s;
	CHECK(auth_scope_parse("run", &s) == 0 && s == AUTH_RUN);
	CHECK(auth_scope_parse("root", &s) == -EINVAL);
	CHECK(auth_scope_parse(NULL, &s) == -EINVAL);
}

static bool has(const kiln_strv *v, const char *s)
{
	return kiln_strv_contains(v, s);
}

static void test_scan(void)
{
	json_t *spec = json_loads(
	    "{\"env\": [[\"A\", \"${{ secrets.npm_token }}\"]],"
	    " \"steps\": [{\"run\": \"echo ${{ secrets['Deploy_Key'] }} secrets.NOT_IN_EXPR\","
	    "  \"if\": \"secrets.FROM_IF != ''\", \"with\": [[\"t\", \"${{ format('{0}',"
	    "  secrets . SPACED) }}\"]]},"
	    "  {\"run\": \"${{ github.secrets }} ${{ needs.x.outputs.secrets }} ${{ "
	    "secrets.GITHUB_TOKEN }}\"}]}",
	    0, NULL);
	kiln_strv names;
	bool all;
	secrets_scan_refs(spec, &names, &all);
	CHECK(!all);
	CHECK(has(&names, "NPM_TOKEN"));
	CHECK(has(&names, "DEPLOY_KEY"));
	CHECK(has(&names, "FROM_IF"));
	CHECK(has(&names, "SPACED"));
	CHECK(!has(&names, "NOT_IN_EXPR"));
	CHECK(!has(&names, "GITHUB_TOKEN"));
	CHECK_INT(names.n, 4);
	kiln_strv_free(&names);
	json_decref(spec);

	spec = json_loads("{\"steps\": [{\"run\": \"echo '${{ toJSON(secrets) }}'\"}]}", 0, NULL);
	secrets_scan_refs(spec, &names, &all);
	CHECK(all);
	kiln_strv_free(&names);
	json_decref(spec);
	spec = json_loads("{\"steps\": [{\"run\": \"${{ secrets[matrix.name] }}\"}]}", 0, NULL);
	secrets_scan_refs(spec, &names, &all);
	CHECK(all);
	kiln_strv_free(&names);
	json_decref(spec);
}

static void test_repo_names(void)
{
	static const char *const cases[][2] = {
	    {"acme/app", "acme/app"},
	    {"https://github.com/acme/app.git", "acme/app"},
	    {"git@github.com:acme/app.git", "acme/app"},
	    {"/srv/git/acme/app", "acme/app"},
	    {"file:///tmp/x/acme/app/", "acme/app"},
	    {"app", NULL},
	    {"", NULL},
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(cases); i++) {
		char *n = secrets_repo_name(cases[i][0]);
		if (cases[i][1])
			CHECK_STR(n, cases[i][1]);
		else
			CHECK(n == NULL);
		free(n);
	}
}

typedef struct captured {
	int status;
	char *body;
} captured;

static void capture(void *arg, int status, const char *content_type, char *body, size_t len)
{
	(void)content_type;
	(void)len;
	captured *c = arg;
	c->status = status;
	free(c->body);
	c->body = body;
}

/* Serves one request on an offline store (this thread plays the core thread). */
static int serve(coord *c, const char *method, const char *path, const char *body, const char *auth,
                 captured *out)
{
	const char *headers[] = {"Authorization", auth, NULL, NULL};
	api_req r = {.c = c,
	             .method = method,
	             .path = path,
	             .query = "",
	             .body = body,
	             .body_len = body ? strlen(body) : 0,
	             .headers = auth ? headers : NULL,
	             .trusted = auth == NULL,
	             .reply = capture,
	             .arg = out};
	out->status = 0;
	api_serve(&r);
	return out->status;
}

static void test_store(const char *dir)
{
	coord_config cfg = COORD_CONFIG_INIT;
	cfg.data_dir = dir;
	coord *c = NULL;
	CHECK(coord_open_offline(&cfg, &c) == 0);
	if (!c)
		return;
	CHECK(secrets_key_load(dir, &c->key) == 0);

	/* open registration until a registration token exists */
	auth_reg ar;
	CHECK(auth_register(c, "", &ar) == 0 && ar.open && ar.issue && !ar.agent_id);
	char *reg = NULL, *reg_id = NULL;
	CHECK(auth_token_create(c, "registration", AUTH_NONE, "r", NULL, &reg, &reg_id) == 0);
	CHECK(auth_register(c, "", &ar) == -EACCES);
	CHECK(auth_register(c, "kiln_r_0123456789abcdef_00", &ar) == -EACCES);
	CHECK(auth_register(c, reg, &ar) == 0 && ar.issue && !ar.open && !ar.agent_id);
	char *agent = NULL;
	CHECK(auth_issue_agent_token(c, "a1", "one", &agent) == 0);
	CHECK(auth_register(c, agent, &ar) == 0 && !ar.issue);
	CHECK_STR(ar.agent_id, "a1");
	free(ar.agent_id);
	/* a second token for the agent revokes the first */
	char *agent2 = NULL;
	CHECK(auth_issue_agent_token(c, "a1", "one", &agent2) == 0);
	CHECK(auth_register(c, agent, &ar) == -EACCES);
	CHECK(auth_register(c, agent2, &ar) == 0);
	free(ar.agent_id);
	/* an agent token is not a registration token, nor an API token */
	captured out = {0};
	_cleanup_free_ char *bearer_agent = kiln_asprintf("Bearer %s", agent2);
	CHECK_INT(serve(c, "GET", "/api/v1/runs", NULL, bearer_agent, &out), 401);
	CHECK(auth_token_revoke(c, reg_id) == 0);
	CHECK(auth_register(c, reg, &ar) == -EACCES);
	CHECK(auth_token_revoke(c, "nope") == -ENOENT);

	/* API tokens: scopes over the request's Authorization */
	char *read = NULL, *admin = NULL, *admin_id = NULL;
	CHECK(auth_token_create(c, "api", AUTH_READ, "r", NULL, &read, NULL) == 0);
	CHECK(auth_token_create(c, "api", AUTH_ADMIN, "a", NULL, &admin, &admin_id) == 0);
	_cleanup_free_ char *bearer_read = kiln_asprintf("Bearer %s", read);
	_cleanup_free_ char *bearer_admin = kiln_asprintf("bearer  %s", admin);
	CHECK_INT(serve(c, "GET", "/api/v1/runs", NULL, "", &out), 401);
	CHECK_INT(serve(c, "GET", "/api/v1/runs", NULL, bearer_read, &out), 200);
	CHECK_INT(serve(c, "POST", "/api/v1/runs", "{}", bearer_read, &out), 403);
	CHECK_INT(serve(c, "GET", "/healthz", NULL, "", &out), 200);
	CHECK_INT(serve(c, "GET", "/api/v1/tokens", NULL, bearer_read, &out), 403);
	CHECK_INT(serve(c, "GET", "/api/v1/tokens", NULL, bearer_admin, &out), 200);
	CHECK(out.body && !strstr(out.body, admin) && !strstr(out.body, "digest"));
	c->cfg.anonymous_read = true;
	CHECK_INT(serve(c, "GET", "/api/v1/runs", NULL, "", &out), 200);
	CHECK_INT(serve(c, "POST", "/api/v1/runs", "{}", "", &out), 401);
	c->cfg.anonymous_read = false;

	/* secrets: set, list without values, what a job gets */
	CHECK_INT(serve(c, "PUT", "/api/v1/secrets/repos/acme/app/npm_token",
	                "{\"value\": \"s3cret-npm\"}", bearer_admin, &out),
	          201);
	CHECK_INT(serve(c, "PUT", "/api/v1/secrets/repos/acme/app/NPM_TOKEN",
	                "{\"value\": \"s3cret-npm2\"}", NULL, &out),
	          200);
	CHECK_INT(serve(c, "PUT", "/api/v1/secrets/orgs/acme/NPM_TOKEN", "{\"value\": \"org-npm\"}",
	                NULL, &out),
	          201);
	CHECK_INT(serve(c, "PUT", "/api/v1/secrets/orgs/acme/ORG_ONLY", "{\"value\": \"org-only\"}",
	                NULL, &out),
	          201);
	CHECK_INT(serve(c, "PUT", "/api/v1/secrets/repos/acme/app/environments/prod/NPM_TOKEN",
	                "{\"value\": \"prod-npm\"}", NULL, &out),
	          201);
	CHECK_INT(serve(c, "PUT", "/api/v1/secrets/repos/acme/app/GITHUB_X", "{\"value\": \"x\"}",
	                NULL, &out),
	          400);
	CHECK_INT(serve(c, "PUT", "/api/v1/secrets/repos/acme/app/X", "{\"value\": 3}", NULL, &out),
	          400);
	CHECK_INT(serve(c, "PUT", "/api/v1/secrets/repos/acme/app/X", "{\"value\": \"x\"}",
	                bearer_read, &out),
	          403);
	CHECK_INT(serve(c, "GET", "/api/v1/secrets", NULL, NULL, &out), 200);
	CHECK(out.body && strstr(out.body, "NPM_TOKEN") && !strstr(out.body, "s3cret") &&
	      !strstr(out.body, "\"value\""));
	CHECK_INT(serve(c, "GET", "/api/v1/secrets/repos/acme/app", NULL, NULL, &out), 200);
	CHECK(out.body && !strstr(out.body, "ORG_ONLY"));

	json_t *spec = json_loads("{\"steps\": [{\"run\": \"${{ secrets.NPM_TOKEN }} ${{ "
	                          "secrets.org_only }}\"}]}",
	                          0, NULL);
	kiln_strv masks = {0};
	json_t *got = secrets_for_job(c, 1, 1, "https://forge.example/acme/app.git", spec, &masks);
	CHECK_STR(json_string_value(json_object_get(got, "NPM_TOKEN")), "s3cret-npm2");
	CHECK_STR(json_string_value(json_object_get(got, "ORG_ONLY")), "org-only");
	CHECK_INT(json_object_size(got), 2);
	CHECK(has(&masks, "s3cret-npm2") && has(&masks, "org-only") && masks.n == 2);
	json_decref(got);
	kiln_strv_free(&masks);
	json_decref(spec);
	/* a job that names none gets none; another owner's repository gets none */
	spec = json_loads("{\"steps\": [{\"run\": \"echo hi\"}]}", 0, NULL);
	got = secrets_for_job(c, 1, 1, "acme/app", spec, &masks);
	CHECK_INT(json_object_size(got), 0);
	CHECK_INT(masks.n, 0);
	json_decref(got);
	json_decref(spec);
	spec = json_loads("{\"steps\": [{\"run\": \"${{ toJSON(secrets) }}\"}]}", 0, NULL);
	got = secrets_for_job(c, 1, 1, "other/app", spec, &masks);
	CHECK_INT(json_object_size(got), 0);
	json_decref(got);
	got = secrets_for_job(c, 1, 1, "acme/other", spec, &masks);
	CHECK_INT(json_object_size(got), 2); /* the owner's */
	json_decref(got);
	json_decref(spec);
	kiln_strv_free(&masks);

	/* a pull request from a fork gets none, unless its repository allows it */
	store_x(c,
	        "INSERT INTO repos(id, name, url, forge, created_ms) VALUES(7, 'acme/app', '/x',"
	        " 'github', 0)",
	        NULL);
	store_x(c,
	        "INSERT INTO runs(id, number, repo, ref, sha, event, workflow, name, created_ms,"
	        " repo_id, repository, fork) VALUES(5, 1, '/x', 'refs/pull/1/merge', 'abc',"
	        " 'pull_request', 'ci.yml', 'ci', 0, 7, 'acme/app', 1)",
	        NULL);
	spec = json_loads("{\"steps\": [{\"run\": \"${{ secrets.ORG_ONLY }}\"}]}", 0, NULL);
	got = secrets_for_job(c, 5, 1, "/x", spec, &masks);
	CHECK_INT(json_object_size(got), 0);
	json_decref(got);
	store_x(c, "UPDATE repos SET fork_secrets = 1 WHERE id = 7", NULL);
	got = secrets_for_job(c, 5, 1, "/x", spec, &masks);
	CHECK_INT(json_object_size(got), 1); /* and runs.repository names the repository */
	json_decref(got);
	store_x(c, "UPDATE repos SET fork_secrets = 0 WHERE id = 7", NULL);
	store_x(c, "UPDATE runs SET fork = 0 WHERE id = 5", NULL);
	got = secrets_for_job(c, 5, 1, "/x", spec, &masks);
	CHECK_INT(json_object_size(got), 1);
	json_decref(got);
	json_decref(spec);
	kiln_strv_free(&masks);

	/* sealed at rest, bound to the row */
	sqlite3_stmt *st = store_q(c, "SELECT value FROM secrets WHERE scope = 'repo'", NULL);
	CHECK(sqlite3_step(st) == SQLITE_ROW && strncmp(col_text(st, 0), "v1:", 3) == 0 &&
	      !strstr(col_text(st, 0), "s3cret"));
	store_done(st);
	CHECK_INT(serve(c, "DELETE", "/api/v1/secrets/repos/acme/app/npm_token", NULL, NULL, &out),
	          200);
	CHECK_INT(serve(c, "DELETE", "/api/v1/secrets/repos/acme/app/npm_token", NULL, NULL, &out),
	          404);

	CHECK(auth_token_revoke(c, admin_id) == 0);
	CHECK_INT(serve(c, "GET", "/api/v1/runs", NULL, bearer_admin, &out), 401);
	free(out.body);
	free(reg);
	free(reg_id);
	free(agent);
	free(agent2);
	free(read);
	free(admin);
	free(admin_id);
	coord_close_offline(c);
}

static void test_rotate(const char *dir)
{
	coord_config cfg = COORD_CONFIG_INIT;
	cfg.data_dir = dir;
	kiln_key before, after;
	CHECK(secrets_key_load(dir, &before) == 0);
	/* a repository's sealed token goes along (repos.c's context) */
	{
		coord *o = NULL;
		CHECK(coord_open_offline(&cfg, &o) == 0);
		char *sealed = NULL;
		CHECK(kiln_seal(&before, "repo-token:acme/app", "ghp_x", 5, &sealed) == 0);
		store_x(o, "UPDATE repos SET token = ? WHERE name = 'acme/app'", "t", sealed);
		free(sealed);
		coord_close_offline(o);
	}
	FILE *devnull = fopen("/dev/null", "w");
	CHECK(coord_key_rotate(&cfg, devnull) == 0);
	fclose(devnull);
	CHECK(secrets_key_load(dir, &after) == 0);
	CHECK(strcmp(before.id, after.id) != 0);
	coord *c = NULL;
	CHECK(coord_open_offline(&cfg, &c) == 0);
	if (!c)
		return;
	c->key = before; /* a coordinator that has not noticed: it takes the new key on demand */
	json_t *spec = json_loads("{\"steps\": [{\"run\": \"${{ secrets.org_only }}\"}]}", 0, NULL);
	kiln_strv masks = {0};
	json_t *got = secrets_for_job(c, 1, 1, "acme/app", spec, &masks);
	CHECK_STR(json_string_value(json_object_get(got, "ORG_ONLY")), "org-only");
	CHECK_STR(c->key.id, after.id);
	sqlite3_stmt *st = store_q(c, "SELECT token FROM repos WHERE name = 'acme/app'", NULL);
	char *plain = NULL;
	size_t len = 0;
	CHECK(sqlite3_step(st) == SQLITE_ROW &&
	      kiln_unseal(&after, "repo-token:acme/app", col_text(st, 0), &plain, &len) == 0);
	CHECK_STR(plain, "ghp_x");
	free(plain);
	store_done(st);
	json_decref(got);
	json_decref(spec);
	kiln_strv_free(&masks);
	coord_close_offline(c);
}

int main(void)
{
	kiln_log_setup("test_auth", KILN_LOG_WARNING);
	test_routes();
	test_scan();
	test_repo_names();
	char *dir = NULL;
	if (kiln_mkdtemp("kiln-test-auth", &dir) == 0) {
		test_store(dir);
		test_rotate(dir);
		kiln_rm_rf(dir);
		free(dir);
	}
	return check_done();
}
