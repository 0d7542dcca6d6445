/*
 * auth — who may do what. API tokens carry a scope (read ⊂ run ⊂ admin) and
 * come as `Authorization: Bearer TOKEN`; every HTTP request names a route
 * that needs one of those scopes (the table below), except /healthz and the
 * webhooks, which prove themselves with their signatures. In-process callers
 * (`kiln run`, tests through coord_api) are trusted and ask for nothing.
 *
 * Agents register once with a registration token and get their own agent
 * token, which they keep and present from then on (also after a coordinator
 * restart). Registration is open until the first registration token has been
 * created (or as the require_agent_token setting says), so a coordinator and
 * its agents need no tokens until someone asks for them.
 *
 * A token is "kiln_K_ID_SECRET": K its kind (a api, r registration, g agent),
 * ID 16 hex digits that name its row, SECRET 64 hex digits. The store keeps
 * only the SHA-256 of the whole token, found by ID and compared in constant
 * time. Revoking sets revoked_ms; a revoked agent token also ends the
 * agent's session at once (when revoked through the API) or within a few
 * seconds (when revoked with `kiln-coordinator token revoke` beside a running
 * coordinator: the core thread's idle tick, at most TICK_MAX_MS apart).
 */
#include "coordinator/internal.h"
#include "coordinator/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define TOKEN_ID_HEX 16
#define TOKEN_SECRET_HEX 64
#define TOKEN_LEN (5 + 2 + TOKEN_ID_HEX + 1 + TOKEN_SECRET_HEX)
#define MAX_NAME 128
#define LAST_USED_EVERY_MS 60000

/* ---- routes and scopes ---- */

typedef struct route_rule {
	const char *method;  /* "*" for any */
	const char *pattern; /* path segments; "*" one segment, "**" any number (also none) */
	auth_scope need;
} route_rule;

/* The first rule that matches decides. Anything not listed needs admin: a new route is
   closed until it is given its place here. */
static const route_rule rules[] = {
    {"*", "/healthz", AUTH_NONE},
    {"*", "/hooks/**", AUTH_NONE}, /* webhooks carry their own signatures */
    {"*", "/api/v1/tokens/**", AUTH_ADMIN},
    {"*", "/api/v1/secrets/**", AUTH_ADMIN},
    {"GET", "**", AUTH_READ},
    {"HEAD", "**", AUTH_READ},
    {"POST", "/api/v1/runs", AUTH_RUN},
    {"POST", "/api/v1/runs/*/cancel", AUTH_RUN},
    {"POST", "/api/v1/runs/*/rerun", AUTH_RUN},
    {"POST", "/api/v1/runs/*/rerun-failed", AUTH_RUN},
    {"POST", "/api/v1/jobs/*/cancel", AUTH_RUN},
    {"POST", "**/approve", AUTH_RUN},
    {"POST", "**/reject", AUTH_RUN},
    {"POST", "**/approvals/**", AUTH_RUN},
    {"POST", "**/dispatch", AUTH_RUN},
    {"POST", "**/repository_dispatch", AUTH_RUN},
    {"POST", "**/dispatches", AUTH_RUN},
    {"DELETE", "/api/v1/caches/**", AUTH_RUN},
    {"*", "**", AUTH_ADMIN}, /* repositories, agents, environments, secrets, tokens… */
};

/* Does path segment list p[0..np) match pattern segments g[0..ng)? */
static bool seg_match(char **g, size_t ng, char **p, size_t np)
{
	if (ng == 0)
		return np == 0;
	if (strcmp(g[0], "**") == 0) {
		for (size_t k = 0; k <= np; k++)
			if (seg_match(g + 1, ng - 1, p + k, np - k))
				return true;
		return false;
	}
	if (np == 0)
		return false;
	if (strcmp(g[0], "*") != 0 && strcmp(g[0], p[0]) != 0)
		return false;
	return seg_match(g + 1, ng - 1, p + 1, np - 1);
}

auth_scope auth_route_scope(const char *method, const char *path)
{
	kiln_strv ps = {0};
	kiln_strv_split(&ps, path, "/");
	auth_scope need = AUTH_ADMIN;
	for (size_t i = 0; i < KILN_ARRAY_SIZE(rules); i++) {
		const route_rule *rr = &rules[i];
		if (strcmp(rr->method, "*") != 0 && strcmp(rr->method, method) != 0)
			continue;
		kiln_strv gs = {0};
		kiln_strv_split(&gs, rr->pattern, "/");
		bool m = seg_match(gs.v, gs.n, ps.v, ps.n);
		kiln_strv_free(&gs);
		if (m) {
			need = rr->need;
			break;
		}
	}
	kiln_strv_free(&ps);
	return need;
}

const char *auth_scope_name(auth_scope s)
{
	switch (s) {
	case AUTH_NONE:
		return "none";
	case AUTH_READ:
		return "read";
	case AUTH_RUN:
		return "run";
	case AUTH_ADMIN:
		return "admin";
	}
	return "?";
}

int auth_scope_parse(const char *s, auth_scope *out)
{
	static const auth_scope all[] = {AUTH_READ, AUTH_RUN, AUTH_ADMIN};
	for (size_t i = 0; s && i < KILN_ARRAY_SIZE(all); i++) {
		if (strcmp(s, auth_scope_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return kiln_err(EINVAL, "bad scope '%s': read, run or admin", s ? s : "");
}

/* ---- tokens ---- */

static char kind_char(const char *kind)
{
	return strcmp(kind, "api") == 0 ? 'a' : strcmp(kind, "registration") == 0 ? 'r' : 'g';
}

/* Splits a presented token: its kind letter and row id; false when it is not one of ours. */
static bool token_parse(const char *t, char *kind, char id[TOKEN_ID_HEX + 1])
{
	if (strlen(t) != TOKEN_LEN || strncmp(t, "kiln_", 5) != 0 || !strchr("arg", t[5]) ||
	    t[6] != '_' || t[7 + TOKEN_ID_HEX] != '_')
		return false;
	for (size_t i = 7; i < TOKEN_LEN; i++)
		if (i != 7 + TOKEN_ID_HEX && !isxdigit((unsigned char)t[i]))
			return false;
	*kind = t[5];
	memcpy(id, t + 7, TOKEN_ID_HEX);
	id[TOKEN_ID_HEX] = '\0';
	return true;
}

bool auth_name_ok(const char *name)
{
	if (!name || strlen(name) > MAX_NAME)
		return false;
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

int auth_token_create(coord *c, const char *kind, auth_scope scope, const char *name,
                      const char *agent_id, char **token, char **id)
{
	if (!auth_name_ok(name))
		return kiln_err(EINVAL, "a token name is at most %d printable characters",
		                MAX_NAME);
	char idhex[TOKEN_ID_HEX + 1], secret[TOKEN_SECRET_HEX + 1], digest[65];
	if (kiln_random_hex(TOKEN_ID_HEX / 2, idhex) < 0 ||
	    kiln_random_hex(TOKEN_SECRET_HEX / 2, secret) < 0)
		return kiln_err(EIO, "no random bytes for a token");
	char *t = kiln_asprintf("kiln_%c_%s_%s", kind_char(kind), idhex, secret);
	kiln_sha256_hex(t, strlen(t), digest);
	explicit_bzero(secret, sizeof secret);
	int r = store_x(c,
	                "INSERT INTO tokens(id, kind, scope, name, digest, agent_id, created_ms)"
	                " VALUES(?, ?, ?, ?, ?, ?, ?)",
	                "tttttti", idhex, kind, scope == AUTH_NONE ? "" : auth_scope_name(scope),
	                name ? name : "", digest, agent_id, kiln_now_ms());
	if (r != SQLITE_DONE) {
		explicit_bzero(t, strlen(t));
		free(t);
		return kiln_err(EIO, "cannot store the token: %s", sqlite3_errmsg(c->db));
	}
	*token = t;
	if (id)
		*id = kiln_strdup(idhex);
	return 0;
}

/* A token's row, when the presented token is valid (of `kind`, not revoked). */
typedef struct token_row {
	char id[TOKEN_ID_HEX + 1];
	auth_scope scope;
	char *name, *agent_id;
	int64_t last_used_ms;
	bool revoked;
} token_row;

static void token_row_free(token_row *t)
{
	free(t->name);
	free(t->agent_id);
}

/* 1 when `token` is a known token of `kind` (filling *row; revoked ones too, with
   row->revoked), 0 when it is not. The digest is compared in constant time. */
static int token_find(coord *c, const char *kind, const char *token, token_row *row)
{
	memset(row, 0, sizeof *row);
	char k, id[TOKEN_ID_HEX + 1], digest[65];
	if (!token || !token_parse(token, &k, id) || k != kind_char(kind))
		return 0;
	kiln_sha256_hex(token, strlen(token), digest);
	sqlite3_stmt *st = store_q(c,
	                           "SELECT digest, scope, name, agent_id, last_used_ms,"
	                           " revoked_ms IS NOT NULL FROM tokens WHERE id = ? AND kind = ?",
	                           "tt", id, kind);
	int found = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *d = col_text(st, 0);
		if (kiln_equal_ct(d, strlen(d), digest, 64)) {
			found = 1;
			memcpy(row->id, id, sizeof row->id);
			if (auth_scope_parse(col_text(st, 1), &row->scope) < 0)
				row->scope = AUTH_NONE;
			row->name = kiln_strdup(col_text(st, 2));
			row->agent_id = sqlite3_column_type(st, 3) == SQLITE_NULL
			                    ? NULL
			                    : kiln_strdup(col_text(st, 3));
			row->last_used_ms = sqlite3_column_int64(st, 4);
			row->revoked = sqlite3_column_int(st, 5) != 0;
		}
	}
	store_done(st);
	return found;
}

static void touch(coord *c, const token_row *t)
{
	int64_t now = kiln_now_ms();
	if (now - t->last_used_ms >= LAST_USED_EVERY_MS)
		store_x(c, "UPDATE tokens SET last_used_ms = ? WHERE id = ?", "it", now, t->id);
}

/* Ends the sessions of agents whose agent token is revoked (core). */
void auth_drop_revoked_agents(coord *c)
{
	sqlite3_stmt *st =
	    store_q(c,
	            "SELECT agent_id FROM tokens WHERE kind = 'agent' AND revoked_ms"
	            " IS NOT NULL AND agent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"
	            " tokens u WHERE u.kind = 'agent' AND u.agent_id = tokens.agent_id"
	            " AND u.revoked_ms IS NULL)",
	            NULL);
	kiln_strv ids = {0};
	while (sqlite3_step(st) == SQLITE_ROW)
		kiln_strv_push(&ids, col_text(st, 0));
	store_done(st);
	for (coord_agent *a = c->agents; a; a = a->next) {
		if (!kiln_strv_contains(&ids, a->id) || !*a->session_digest)
			continue;
		free(a->session_digest);
		a->session_digest = kiln_strdup("");
		store_x(c, "UPDATE agents SET session_digest = '' WHERE id = ?", "t", a->id);
		if (a->parked) {
			Kiln__Response resp = KILN__RESPONSE__INIT;
			resp.version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
			resp.status = KILN__STATUS__STATUS_UNAUTHORIZED;
			resp.error = "agent token revoked";
			bus_reply(a->parked, &resp);
			a->parked = NULL;
		}
		kiln_log(KILN_LOG_NOTICE, "agent %s (%s): token revoked, session ended", a->name,
		         a->id);
	}
	kiln_strv_free(&ids);
}

int auth_token_revoke(coord *c, const char *id)
{
	sqlite3_stmt *st = store_q(c, "SELECT kind FROM tokens WHERE id = ?", "t", id);
	bool known = sqlite3_step(st) == SQLITE_ROW;
	store_done(st);
	if (!known)
		return kiln_err(ENOENT, "no token %s", id);
	store_x(c, "UPDATE tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL", "it",
	        kiln_now_ms(), id);
	return 0;
}

json_t *auth_token_list(coord *c)
{
	json_t *a = json_array();
	sqlite3_stmt *st =
	    store_q(c,
	            "SELECT id, kind, scope, name, agent_id, created_ms, last_used_ms,"
	            " revoked_ms FROM tokens ORDER BY created_ms, id",
	            NULL);
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "id", col_text(st, 0), "kind",
		                      col_text(st, 1), "name", col_text(st, 3), "created_ms",
		                      (json_int_t)sqlite3_column_int64(st, 5));
		if (*col_text(st, 2))
			json_object_set_new(o, "scope", json_string(col_text(st, 2)));
		if (sqlite3_column_type(st, 4) != SQLITE_NULL)
			json_object_set_new(o, "agent_id", json_string(col_text(st, 4)));
		static const char *const ms[] = {"last_used_ms", "revoked_ms"};
		for (int i = 0; i < 2; i++)
			json_object_set_new(o, ms[i],
			                    sqlite3_column_type(st, 6 + i) == SQLITE_NULL
			                        ? json_null()
			                        : json_integer(sqlite3_column_int64(st, 6 + i)));
		json_array_append_new(a, o);
	}
	store_done(st);
	return a;
}

/* ---- agent registration ---- */

static bool registration_required(coord *c)
{
	if (c->cfg.require_agent_token != 0)
		return c->cfg.require_agent_token > 0;
	sqlite3_stmt *st =
	    store_q(c, "SELECT 1 FROM tokens WHERE kind = 'registration' LIMIT 1", NULL);
	bool any = sqlite3_step(st) == SQLITE_ROW;
	store_done(st);
	return any;
}

int auth_register(coord *c, const char *token, auth_reg *out)
{
	memset(out, 0, sizeof *out);
	token_row t;
	if (token && *token) {
		char k, id[TOKEN_ID_HEX + 1];
		bool ours = token_parse(token, &k, id);
		if (ours && k == 'g' && token_find(c, "agent", token, &t)) {
			bool revoked = t.revoked || !t.agent_id;
			if (!revoked) {
				out->agent_id = t.agent_id;
				t.agent_id = NULL;
				touch(c, &t);
			}
			token_row_free(&t);
			if (revoked)
				return kiln_err(EACCES, "agent token revoked");
			return 0;
		}
		if (ours && k == 'r' && token_find(c, "registration", token, &t)) {
			bool revoked = t.revoked;
			if (!revoked)
				touch(c, &t);
			token_row_free(&t);
			if (revoked)
				return kiln_err(EACCES, "registration token revoked");
			out->issue = true;
			return 0;
		}
		/* an unknown token: fine while registration is open (e.g. the store was reset) */
	}
	if (registration_required(c))
		return kiln_err(EACCES, token && *token ? "unknown token"
		                                        : "a registration token is required");
	out->issue = true;
	out->open = true;
	return 0;
}

int auth_issue_agent_token(coord *c, const char *agent_id, const char *name, char **token)
{
	/* the agent's earlier tokens give way to this one */
	store_x(c,
	        "UPDATE tokens SET revoked_ms = ? WHERE kind = 'agent' AND agent_id = ?"
	        " AND revoked_ms IS NULL",
	        "it", kiln_now_ms(), agent_id);
	_cleanup_free_ char *label = kiln_asprintf("agent %.100s", name);
	return auth_token_create(c, "agent", AUTH_NONE, label, agent_id, token, NULL);
}

/* ---- the HTTP side ---- */

static void deny(api_req *r, int status, const char *fmt, const char *a, const char *b)
{
	char msg[256];
	snprintf(msg, sizeof msg, fmt, a, b);
	api_error(r->reply, r->arg, status, "%s", msg);
}

/* POST, GET /api/v1/tokens and DELETE /api/v1/tokens/ID (admin, checked before). */
static bool serve_tokens(api_req *r)
{
	const char *p = r->path;
	if (strncmp(p, "/api/v1/tokens", 14) != 0 || (p[14] && p[14] != '/'))
		return false;
	coord *c = r->c;
	if (strcmp(p, "/api/v1/tokens") == 0 && strcmp(r->method, "GET") == 0) {
		api_json(r->reply, r->arg, 200, json_pack("{s:o}", "tokens", auth_token_list(c)));
	} else if (strcmp(p, "/api/v1/tokens") == 0 && strcmp(r->method, "POST") == 0) {
		json_t *v = api_body_object(r);
		if (!v)
			return true;
		const char *kind = json_string_value(json_object_get(v, "kind"));
		const char *scope = json_string_value(json_object_get(v, "scope"));
		const char *name = json_string_value(json_object_get(v, "name"));
		auth_scope sc = AUTH_NONE;
		if (!kind)
			kind = "api";
		if (strcmp(kind, "agent-registration") == 0)
			kind = "registration";
		int e = 0;
		if (strcmp(kind, "api") == 0)
			e = auth_scope_parse(scope, &sc);
		else if (strcmp(kind, "registration") != 0)
			e = kiln_err(EINVAL, "kind is api or registration");
		else if (scope)
			e = kiln_err(EINVAL, "a registration token has no scope");
		char *token = NULL, *id = NULL;
		if (e == 0)
			e = auth_token_create(c, kind, sc, name ? name : "", NULL, &token, &id);
		if (e < 0) {
			api_error(r->reply, r->arg, e == -EIO ? 500 : 400, "%s", kiln_errmsg());
		} else {
			json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "kind", kind,
			                      "name", name ? name : "", "token", token);
			if (sc != AUTH_NONE)
				json_object_set_new(o, "scope", json_string(auth_scope_name(sc)));
			kiln_log(KILN_LOG_NOTICE, "token %s (%s %s) created over the API", id, kind,
			         sc != AUTH_NONE ? auth_scope_name(sc) : "");
			api_json(r->reply, r->arg, 201, o);
		}
		if (token)
			explicit_bzero(token, strlen(token));
		free(token);
		free(id);
		json_decref(v);
	} else if (p[14] == '/' && p[15] && !strchr(p + 15, '/') &&
	           strcmp(r->method, "DELETE") == 0) {
		if (auth_token_revoke(c, p + 15) < 0) {
			api_error(r->reply, r->arg, 404, "%s", kiln_errmsg());
		} else {
			auth_drop_revoked_agents(c);
			kiln_log(KILN_LOG_NOTICE, "token %s revoked over the API", p + 15);
			api_json(r->reply, r->arg, 200,
			         json_pack("{s:s, s:b}", "id", p + 15, "revoked", 1));
		}
	} else {
		api_error(r->reply, r->arg, 405, "no route for %s %s", r->method, p);
	}
	return true;
}

bool auth_serve(api_req *r)
{
	if (!r->trusted) {
		auth_scope need = auth_route_scope(r->method, r->path);
		if (need != AUTH_NONE) {
			const char *h = api_header(r, "Authorization");
			while (h && *h == ' ')
				h++;
			if (!h || !*h) {
				if (!(need == AUTH_READ && r->c->cfg.anonymous_read)) {
					deny(r, 401,
					     "authentication required: send Authorization:"
					     " Bearer TOKEN%s%s",
					     "", "");
					return true;
				}
			} else {
				if (strncasecmp(h, "Bearer ", 7) != 0) {
					deny(r, 401, "Authorization: expected Bearer TOKEN%s%s", "",
					     "");
					return true;
				}
				const char *tok = h + 7;
				while (*tok == ' ')
					tok++;
				token_row t;
				bool ok = token_find(r->c, "api", tok, &t) && !t.revoked;
				if (!ok) {
					token_row_free(&t);
					deny(r, 401, "invalid or revoked token%s%s", "", "");
					return true;
				}
				touch(r->c, &t);
				auth_scope have = t.scope;
				/* who acts, for the logs and for reviews: the token's name */
				snprintf(r->who, sizeof r->who, "%s",
					 t.name && *t.name ? t.name : t.id);
				token_row_free(&t);
				if (have < need) {
					deny(r, 403,
					     "this needs a token with scope '%s' (this one has "
					     "'%s')",
					     auth_scope_name(need), auth_scope_name(have));
					return true;
				}
			}
		}
	}
	return serve_tokens(r) || secrets_serve(r);
}

/* ---- the store outside a running coordinator (kiln-coordinator token …, key rotate) ---- */

int coord_open_offline(const coord_config *cfg, coord **out)
{
	coord *c = kiln_calloc(1, sizeof *c);
	c->cfg = *cfg;
	coord_config_defaults(&c->cfg);
	c->data_dir = kiln_strdup(cfg->data_dir);
	c->cfg.data_dir = c->data_dir;
	c->cfg.cache_db = NULL;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	int r = kiln_mkdir_p(c->data_dir, 0750);
	if (r == 0)
		r = store_open(c);
	if (r < 0) {
		coord_close_offline(c);
		return r;
	}
	*out = c;
	return 0;
}

void coord_close_offline(coord *c)
{
	if (!c)
		return;
	store_close(c);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	explicit_bzero(&c->key, sizeof c->key);
	free(c->data_dir);
	free(c);
}

int coord_token_command(const coord_config *cfg, const coord_token_args *args, FILE *out)
{
	coord *c = NULL;
	int r = coord_open_offline(cfg, &c);
	if (r < 0)
		return r;
	if (strcmp(args->verb, "create") == 0) {
		auth_scope sc = AUTH_NONE;
		if (args->registration && args->scope)
			r = kiln_err(EINVAL, "--agent-registration and --scope do not go together");
		else if (!args->registration)
			r = auth_scope_parse(args->scope, &sc);
		char *token = NULL, *id = NULL;
		if (r == 0)
			r = auth_token_create(c, args->registration ? "registration" : "api", sc,
			                      args->name ? args->name : "", NULL, &token, &id);
		if (r == 0) {
			fprintf(out, "id: %s\nkind: %s\n", id,
			        args->registration ? "agent registration" : "api");
			if (sc != AUTH_NONE)
				fprintf(out, "scope: %s\n", auth_scope_name(sc));
			if (args->name && *args->name)
				fprintf(out, "name: %s\n", args->name);
			fprintf(out, "%s\n", token);
			explicit_bzero(token, strlen(token));
		}
		free(token);
		free(id);
	} else if (strcmp(args->verb, "list") == 0) {
		json_t *list = auth_token_list(c);
		fprintf(out, "%-16s  %-12s  %-6s  %-8s  %s\n", "ID", "KIND", "SCOPE", "STATE",
		        "NAME");
		size_t i;
		json_t *t;
		json_array_foreach(list, i, t)
		{
			const char *scope = json_string_value(json_object_get(t, "scope"));
			fprintf(out, "%-16s  %-12s  %-6s  %-8s  %s\n",
			        json_string_value(json_object_get(t, "id")),
			        json_string_value(json_object_get(t, "kind")), scope ? scope : "-",
			        json_is_null(json_object_get(t, "revoked_ms")) ? "active"
			                                                       : "revoked",
			        json_string_value(json_object_get(t, "name")));
		}
		json_decref(list);
	} else if (strcmp(args->verb, "revoke") == 0) {
		if (!args->id)
			r = kiln_err(EINVAL, "usage: token revoke ID");
		else if ((r = auth_token_revoke(c, args->id)) == 0)
			fprintf(out, "revoked %s\n", args->id);
	} else {
		r = kiln_err(EINVAL, "unknown token command '%s': create, list or revoke",
		             args->verb);
	}
	coord_close_offline(c);
	return r;
}

void auth_tick(coord *c, int64_t now_ms)
{
	if (now_ms - c->revoked_checked_ms < 1000)
		return;
	c->revoked_checked_ms = now_ms;
	auth_drop_revoked_agents(c);
}
