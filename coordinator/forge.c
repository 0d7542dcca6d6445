/*
 * forge — what the coordinator tells the outside world: commit statuses on
 * GitHub, Gitea/Forgejo and GitLab (one context per job, "kiln / WORKFLOW /
 * JOB"), and a signed notification webhook when a run completes.
 *
 * The core thread decides what to say: whenever a run changes it compares
 * each job's state with the last one it queued (table forge_jobs) and writes
 * what changed to the `outbox` table, committed before anything is sent. A
 * newer status for the same context replaces one not yet delivered. The rows
 * are then handed to one sender thread (with the repository's token, unsealed
 * only in memory), which POSTs them with nng's HTTP client, TLS for https
 * URLs, and reports back to the core thread: delivered (the row goes), or
 * failed (retried with exponential backoff, given up after forge_give_up).
 * A 4xx other than 408/429 is not retried. Rows left at shutdown are sent
 * after the next start. The forge's token and the notification secret never
 * reach the database unsealed.
 */
#include "coordinator/internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#define SEND_TIMEOUT_MS 10000
#define MAX_BACKOFF_MS (10 * 60 * 1000)
#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"

typedef struct fitem {
	int64_t id;
	char *key;  /* a newer item with this key replaces this one; NULL for none */
	char *what; /* for logs */
	char *url, *body;
	kiln_strv headers; /* name/value pairs */
	int attempts;
	int64_t next_ms, created_ms;
	struct fitem *next;
} fitem;

struct forge {
	/* shared with the sender, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	fitem *queue;
	nng_aio *cur_aio; /* the request being made, to cancel at stop */
	bool stop;
	pthread_t thread;
	bool running;

	/* read-only once started */
	char *public_url, *ca_file;
	int64_t retry_ms, give_up_ms;

	/* (core) */
	bool have_repos;   /* the repos table has what we read */
	bool have_repo_id; /* runs.repo_id exists */
	uint64_t delivered, failures, dropped;
};

typedef struct fresult {
	int64_t id;
	bool ok, gave_up;
	int attempts;
	int64_t next_ms;
	char *what, *error;
} fresult;

static void fitem_free(fitem *it)
{
	if (!it)
		return;
	free(it->key);
	free(it->what);
	free(it->url);
	free(it->body);
	for (size_t i = 0; i < it->headers.n; i++) /* credentials among them */
		explicit_bzero(it->headers.v[i], strlen(it->headers.v[i]));
	kiln_strv_free(&it->headers);
	free(it);
}

/* ---- the sender thread ---- */

static void result_on_core(coord *c, void *arg)
{
	fresult *r = arg;
	struct forge *f = c->forge;
	if (r->ok) {
		store_x(c, "DELETE FROM outbox WHERE id = ?", "i", r->id);
		f->delivered++;
		kiln_log(KILN_LOG_DEBUG, "forge: delivered %s", r->what);
	} else if (r->gave_up) {
		store_x(c, "DELETE FROM outbox WHERE id = ?", "i", r->id);
		f->failures++;
		f->dropped++;
		kiln_log(KILN_LOG_WARNING, "forge: gave up on %s after %d attempts: %s", r->what,
		         r->attempts, r->error);
	} else {
		store_x(c,
		        "UPDATE outbox SET attempts = ?, next_ms = ?, last_error = ? WHERE id = ?",
		        "iiti", (int64_t)r->attempts, r->next_ms, r->error, r->id);
		f->failures++;
		kiln_log(KILN_LOG_NOTICE, "forge: %s failed (attempt %d): %s; retrying in %llds",
		         r->what, r->attempts, r->error,
		         (long long)((r->next_ms - kiln_now_ms() + 999) / 1000));
	}
	free(r->what);
	free(r->error);
	free(r);
}

/* The TLS settings for an https URL: the CA bundle and the host's name to verify. */
static int client_tls(struct forge *f, nng_http_client *cl, const nng_url *u)
{
	nng_tls_config *tls = NULL;
	int r = nng_tls_config_alloc(&tls, NNG_TLS_MODE_CLIENT);
	if (r == 0)
		r = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED);
	if (r == 0)
		r = nng_tls_config_server_name(tls, u->u_hostname);
	if (r == 0)
		r = nng_tls_config_ca_file(tls, f->ca_file);
	if (r == 0)
		r = nng_http_client_set_tls(cl, tls);
	if (tls)
		nng_tls_config_free(tls); /* the client holds its own reference */
	return r;
}

/* Runs one step on aio and waits, unless the forge is stopping. */
static int step(struct forge *f, nng_aio *aio)
{
	nng_aio_wait(aio);
	pthread_mutex_lock(&f->mu);
	bool stop = f->stop;
	pthread_mutex_unlock(&f->mu);
	return stop ? NNG_ECANCELED : nng_aio_result(aio);
}

/* POSTs the item; returns the HTTP status, or 0 with *err set on a transport error. Only the
   response's head is read: what a forge answers is not needed, and so is not buffered. */
static int post(struct forge *f, const fitem *it, char **err)
{
	nng_url *u = NULL;
	nng_http_client *cl = NULL;
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_http_conn *conn = NULL;
	nng_aio *aio = NULL;
	int status = 0;
	int r = nng_url_parse(&u, it->url);
	if (r == 0 && strcmp(u->u_scheme, "http") != 0 && strcmp(u->u_scheme, "https") != 0)
		r = NNG_EADDRINVAL;
	if (r != 0) {
		*err = kiln_asprintf("bad URL %s: %s", it->url, nng_strerror(r));
		goto out;
	}
	if ((r = nng_http_client_alloc(&cl, u)) != 0 ||
	    (strcmp(u->u_scheme, "https") == 0 && (r = client_tls(f, cl, u)) != 0) ||
	    (r = nng_http_req_alloc(&req, u)) != 0 || (r = nng_http_res_alloc(&res)) != 0 ||
	    (r = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		*err = kiln_asprintf("%s", nng_strerror(r));
		goto out;
	}
	/* the path as written (nng's parser would normalise a GitLab project's %2F) */
	const char *path = strchr(strstr(it->url, "://") + 3, '/');
	nng_http_req_set_uri(req, path ? path : "/");
	nng_http_req_set_method(req, "POST");
	nng_http_req_set_header(req, "Content-Type", "application/json");
	nng_http_req_set_header(req, "Accept", "application/json");
	nng_http_req_set_header(req, "User-Agent", "kiln/" KILN_VERSION);
	nng_http_req_set_header(req, "Connection", "close");
	for (size_t i = 0; i + 1 < it->headers.n; i += 2)
		nng_http_req_set_header(req, it->headers.v[i], it->headers.v[i + 1]);
	nng_http_req_copy_data(req, it->body, strlen(it->body));
	nng_aio_set_timeout(aio, SEND_TIMEOUT_MS);

	pthread_mutex_lock(&f->mu);
	f->cur_aio = aio;
	bool stop = f->stop;
	pthread_mutex_unlock(&f->mu);
	if (stop) {
		r = NNG_ECANCELED;
	} else {
		nng_http_client_connect(cl, aio);
		r = step(f, aio);
	}
	if (r == 0) {
		conn = nng_aio_get_output(aio, 0);
		nng_http_conn_write_req(conn, req, aio);
		r = step(f, aio);
	}
	if (r == 0) {
		nng_http_conn_read_res(conn, res, aio);
		r = step(f, aio);
	}
	pthread_mutex_lock(&f->mu);
	f->cur_aio = NULL;
	pthread_mutex_unlock(&f->mu);
	if (r == 0)
		status = nng_http_res_get_status(res);
	else
		*err = kiln_asprintf("%s://%s:%s: %s", u->u_scheme, u->u_hostname, u->u_port,
		                     nng_strerror(r));
out:
	if (conn)
		nng_http_conn_close(conn);
	if (aio)
		nng_aio_free(aio);
	if (res)
		nng_http_res_free(res);
	if (req)
		nng_http_req_free(req);
	if (cl)
		nng_http_client_free(cl);
	if (u)
		nng_url_free(u);
	return status;
}

static void *sender_main(void *arg)
{
	coord *c = arg;
	struct forge *f = c->forge;
	pthread_mutex_lock(&f->mu);
	while (!f->stop) {
		/* the item due first */
		fitem **best = NULL;
		for (fitem **p = &f->queue; *p; p = &(*p)->next)
			if (!best || (*p)->next_ms < (*best)->next_ms)
				best = p;
		int64_t now = kiln_now_ms();
		if (!best || (*best)->next_ms > now) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t wait = best ? (*best)->next_ms - now : 60000;
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&f->cv, &f->mu, &ts);
			continue;
		}
		fitem *it = *best;
		*best = it->next;
		it->next = NULL;
		pthread_mutex_unlock(&f->mu);

		char *err = NULL;
		int status = post(f, it, &err);
		pthread_mutex_lock(&f->mu);
		if (f->stop) { /* cancelled: the row stays for the next start */
			free(err);
			fitem_free(it);
			break;
		}
		pthread_mutex_unlock(&f->mu);

		fresult *res = kiln_calloc(1, sizeof *res);
		res->id = it->id;
		res->what = kiln_strdup(it->what);
		res->attempts = ++it->attempts;
		bool retry = status == 0 || status >= 500 || status == 408 || status == 429;
		res->ok = status >= 200 && status < 300;
		if (!res->ok) {
			res->error = err ? err : kiln_asprintf("HTTP %d", status);
			err = NULL;
			int shift = it->attempts - 1 < 20 ? it->attempts - 1 : 20;
			int64_t delay = f->retry_ms << shift;
			if (delay > MAX_BACKOFF_MS)
				delay = MAX_BACKOFF_MS;
			now = kiln_now_ms();
			res->next_ms = now + delay;
			res->gave_up = !retry || res->next_ms - it->created_ms > f->give_up_ms;
		}
		free(err);
		bool keep = !res->ok && !res->gave_up;
		int64_t next = res->next_ms;
		core_post(c, result_on_core, res);
		pthread_mutex_lock(&f->mu);
		bool superseded = false;
		for (fitem *q = f->queue; q && it->key; q = q->next)
			superseded |= q->key && strcmp(q->key, it->key) == 0;
		if (keep && !superseded) {
			it->next_ms = next;
			it->next = f->queue;
			f->queue = it;
		} else {
			fitem_free(it);
		}
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* ---- the core side ---- */

/* An outbox row as an item for the sender, with its credentials (unsealed here); NULL when
   its repository is gone. */
static fitem *load_item(coord *c, int64_t id)
{
	sqlite3_stmt *st =
	    store_q(c,
	            "SELECT o.kind, o.repo, o.key, o.what, o.url, o.body, o.attempts,"
	            " o.next_ms, o.created_ms, p.token, p.notify_secret FROM outbox o"
	            " LEFT JOIN repos p ON p.name = o.repo WHERE o.id = ?",
	            "i", id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		return NULL;
	}
	fitem *it = kiln_calloc(1, sizeof *it);
	it->id = id;
	const char *kind = col_text(st, 0), *repo = col_text(st, 1);
	if (sqlite3_column_type(st, 2) != SQLITE_NULL)
		it->key = kiln_strdup(col_text(st, 2));
	it->what = kiln_strdup(col_text(st, 3));
	it->url = kiln_strdup(col_text(st, 4));
	it->body = kiln_strdup(col_text(st, 5));
	it->attempts = sqlite3_column_int(st, 6);
	it->next_ms = sqlite3_column_int64(st, 7);
	it->created_ms = sqlite3_column_int64(st, 8);
	bool notify = strcmp(kind, "notify") == 0;
	const char *sealed = col_text(st, notify ? 10 : 9);
	_cleanup_free_ char *ctx = kiln_asprintf(notify ? "notify:%s" : "repo-token:%s", repo);
	char *secret = NULL;
	size_t len = 0;
	if (*sealed && kiln_unseal(&c->key, ctx, sealed, &secret, &len) < 0) {
		kiln_log(KILN_LOG_ERR, "forge: %s: cannot open the stored %s: %s", repo,
		         notify ? "notification secret" : "token", kiln_errmsg());
		secret = NULL;
	}
	if (notify) {
		char sig[65];
		kiln_hmac_sha256_hex(secret ? secret : "", secret ? len : 0, it->body,
		                     strlen(it->body), sig);
		kiln_strv_push(&it->headers, "X-Kiln-Event");
		kiln_strv_push(&it->headers, "run.completed");
		kiln_strv_push(&it->headers, "X-Kiln-Delivery");
		kiln_strv_push_owned(&it->headers, kiln_asprintf("%lld", (long long)id));
		if (secret) {
			kiln_strv_push(&it->headers, "X-Kiln-Signature-256");
			kiln_strv_push_owned(&it->headers, kiln_asprintf("sha256=%s", sig));
		}
	} else if (secret) {
		if (strcmp(kind, "gitlab") == 0) {
			kiln_strv_push(&it->headers, "PRIVATE-TOKEN");
			kiln_strv_push(&it->headers, secret);
		} else {
			kiln_strv_push(&it->headers, "Authorization");
			kiln_strv_push_owned(
			    &it->headers,
			    kiln_asprintf(strcmp(kind, "gitea") == 0 ? "token %s" : "Bearer %s",
			                  secret));
		}
		if (strcmp(kind, "github") == 0) {
			kiln_strv_push(&it->headers, "Accept");
			kiln_strv_push(&it->headers, "application/vnd.github+json");
			kiln_strv_push(&it->headers, "X-GitHub-Api-Version");
			kiln_strv_push(&it->headers, "2022-11-28");
		}
	}
	if (secret) {
		explicit_bzero(secret, len);
		free(secret);
	}
	store_done(st);
	return it;
}

/* Hands outbox rows to the sender; one with the key of a queued item replaces it. */
static void hand_over(coord *c, const int64_t *ids, size_t n)
{
	struct forge *f = c->forge;
	for (size_t i = 0; i < n; i++) {
		fitem *it = load_item(c, ids[i]);
		if (!it)
			continue;
		pthread_mutex_lock(&f->mu);
		for (fitem **p = &f->queue; *p;) {
			if (it->key && (*p)->key && strcmp((*p)->key, it->key) == 0) {
				fitem *old = *p;
				*p = old->next;
				fitem_free(old);
			} else {
				p = &(*p)->next;
			}
		}
		it->next = f->queue;
		f->queue = it;
		pthread_cond_signal(&f->cv);
		pthread_mutex_unlock(&f->mu);
	}
}

/* Appends s percent-encoded (RFC 3986 unreserved characters kept). */
static void url_escape(kiln_buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (isalnum(ch) || strchr("-._~", ch))
			kiln_buf_append(b, s, 1);
		else
			kiln_buf_printf(b, "%%%02X", ch);
	}
}

/* The forge's API root: the repository's api_url, else one guessed from its clone URL. */
static char *api_root(const char *forge, const char *api_url, const char *clone_url)
{
	if (*api_url) {
		size_t n = strlen(api_url);
		while (n && api_url[n - 1] == '/')
			n--;
		return kiln_asprintf("%.*s", (int)n, api_url);
	}
	const char *hp = strstr(clone_url, "://");
	if (!hp)
		return strcmp(forge, "github") == 0 ? kiln_strdup("https://api.github.com") : NULL;
	hp += 3;
	const char *at = strchr(hp, '@'), *slash = strchr(hp, '/');
	if (at && (!slash || at < slash))
		hp = at + 1;
	size_t hl = slash ? (size_t)(slash - hp) : strlen(hp);
	if (strcmp(forge, "github") == 0)
		return hl == 10 && strncmp(hp, "github.com", 10) == 0
		           ? kiln_strdup("https://api.github.com")
		           : kiln_asprintf("https://%.*s/api/v3", (int)hl, hp);
	return kiln_asprintf("https://%.*s/api/%s", (int)hl, hp,
	                     strcmp(forge, "gitlab") == 0 ? "v4" : "v1");
}

static char *duration_text(int64_t ms)
{
	int64_t s = ms < 0 ? 0 : (ms + 500) / 1000;
	if (s < 60)
		return kiln_asprintf("%llds", (long long)s);
	if (s < 3600)
		return kiln_asprintf("%lldm %llds", (long long)(s / 60), (long long)(s % 60));
	return kiln_asprintf("%lldh %lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
}

/* What a job's status says: GitHub/Gitea state, GitLab state, description; NULL when the job
   has nothing to say yet (waiting for its needs, or skipped without ever being announced). */
static const char *job_status(const char *state, const char *concl, bool ready, bool announced,
                              const char **gitlab)
{
	if (strcmp(state, "running") == 0) {
		*gitlab = "running";
		return "pending";
	}
	if (strcmp(state, "completed") != 0) {
		*gitlab = "pending";
		return ready ? "pending" : NULL;
	}
	if (strcmp(concl, "success") == 0) {
		*gitlab = "success";
		return "success";
	}
	if (strcmp(concl, "skipped") == 0) {
		*gitlab = "skipped";
		return announced ? "success" : NULL;
	}
	if (strcmp(concl, "cancelled") == 0) {
		*gitlab = "canceled";
		return "error";
	}
	*gitlab = "failed";
	return "failure";
}

typedef struct run_info {
	char *repo, *name, *sha, *ref, *event, *workflow, *state, *conclusion;
	char *forge, *api_root, *notify_url;
	int64_t number, created_ms, started_ms, finished_ms;
	bool has_token;
} run_info;

static void run_info_free(run_info *ri)
{
	char **all[] = {&ri->repo,  &ri->name,     &ri->sha,       &ri->ref,
	                &ri->event, &ri->workflow, &ri->state,     &ri->conclusion,
	                &ri->forge, &ri->api_root, &ri->notify_url};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(all); i++)
		free(*all[i]);
}

static char *base_url(coord *c)
{
	struct forge *f = c->forge;
	const char *b = f->public_url && *f->public_url ? f->public_url
	                : c->http_url                   ? c->http_url
	                                                : "http://localhost";
	size_t n = strlen(b);
	while (n && b[n - 1] == '/')
		n--;
	return kiln_asprintf("%.*s", (int)n, b);
}

static int64_t insert_row(coord *c, const char *kind, const char *repo, const char *key,
                          const char *what, const char *url, const char *body, int64_t now)
{
	if (key)
		store_x(c, "DELETE FROM outbox WHERE key = ?", "t", key);
	if (store_x(c,
	            "INSERT INTO outbox(kind, repo, key, what, url, body, attempts, next_ms,"
	            " created_ms) VALUES(?, ?, ?, ?, ?, ?, 0, ?, ?)",
	            "ttttttii", kind, repo, key, what, url, body, now, now) != SQLITE_DONE)
		return -1;
	return sqlite3_last_insert_rowid(c->db);
}

/* The statuses of the run's jobs that changed since the last ones queued. */
static void queue_statuses(coord *c, uint64_t run_id, const run_info *ri, kiln_strv *ids_out,
                           int64_t now)
{
	_cleanup_free_ char *base = base_url(c);
	typedef struct {
		int64_t id, attempt, started, finished;
		char *name, *state, *concl, *sent;
		bool ready;
	} jrow;
	jrow *rows = NULL;
	size_t n = 0;
	sqlite3_stmt *st = store_q(c,
	                           "SELECT j.id, j.name, j.state, j.conclusion, j.ready, j.attempt,"
	                           " j.started_ms, j.finished_ms, s.sent FROM jobs j"
	                           " LEFT JOIN forge_jobs s ON s.job_id = j.id"
	                           " WHERE j.run_id = ? AND j.kind = 'job' ORDER BY j.id",
	                           "i", (int64_t)run_id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		rows = kiln_realloc(rows, (n + 1) * sizeof *rows);
		jrow *r = &rows[n++];
		r->id = sqlite3_column_int64(st, 0);
		r->name = kiln_strdup(col_text(st, 1));
		r->state = kiln_strdup(col_text(st, 2));
		r->concl = kiln_strdup(col_text(st, 3));
		r->ready = sqlite3_column_int(st, 4) != 0;
		r->attempt = sqlite3_column_int64(st, 5);
		r->started = sqlite3_column_int64(st, 6);
		r->finished = sqlite3_column_int64(st, 7);
		r->sent =
		    sqlite3_column_type(st, 8) == SQLITE_NULL ? NULL : kiln_strdup(col_text(st, 8));
	}
	store_done(st);
	bool gitlab = strcmp(ri->forge, "gitlab") == 0;
	for (size_t i = 0; i < n; i++) {
		jrow *r = &rows[i];
		const char *gl = NULL;
		const char *gh = job_status(r->state, r->concl, r->ready, r->sent != NULL, &gl);
		if (!gh)
			continue;
		/* what was last queued: "<attempt>:<state>:<context>" */
		_cleanup_free_ char *context = kiln_asprintf("kiln / %s / %s", ri->name, r->name);
		_cleanup_free_ char *mark = kiln_asprintf("%lld:%s:%s:%s", (long long)r->attempt,
		                                          gitlab ? gl : gh, r->state, context);
		if (r->sent && strcmp(r->sent, mark) == 0)
			continue;
		_cleanup_free_ char *dur = duration_text(r->started ? r->finished - r->started : 0);
		_cleanup_free_ char *desc =
		    strcmp(r->state, "queued") == 0      ? kiln_strdup("Queued")
		    : strcmp(r->state, "running") == 0   ? kiln_strdup("Running")
		    : strcmp(r->concl, "success") == 0   ? kiln_asprintf("Succeeded in %s", dur)
		    : strcmp(r->concl, "skipped") == 0   ? kiln_strdup("Skipped")
		    : strcmp(r->concl, "cancelled") == 0 ? kiln_strdup("Cancelled")
		                                         : kiln_asprintf("Failed after %s", dur);
		_cleanup_free_ char *target = kiln_asprintf(
		    "%s/runs/%llu/jobs/%lld", base, (unsigned long long)run_id, (long long)r->id);
		kiln_buf url = {0};
		json_t *body;
		kiln_buf_puts(&url, ri->api_root);
		if (gitlab) {
			kiln_buf_puts(&url, "/projects/");
			url_escape(&url, ri->repo);
			kiln_buf_puts(&url, "/statuses/");
			url_escape(&url, ri->sha);
			body = json_pack("{s:s, s:s, s:s, s:s}", "state", gl, "name", context,
			                 "target_url", target, "description", desc);
			if (strncmp(ri->ref, "refs/heads/", 11) == 0)
				json_object_set_new(body, "ref", json_string(ri->ref + 11));
		} else {
			const char *slash = strchr(ri->repo, '/');
			kiln_buf_puts(&url, "/repos/");
			if (slash) {
				_cleanup_free_ char *owner =
				    strndup(ri->repo, (size_t)(slash - ri->repo));
				url_escape(&url, owner);
				kiln_buf_puts(&url, "/");
				url_escape(&url, slash + 1);
			} else {
				url_escape(&url, ri->repo);
			}
			kiln_buf_puts(&url, "/statuses/");
			url_escape(&url, ri->sha);
			body = json_pack("{s:s, s:s, s:s, s:s}", "state", gh, "context", context,
			                 "target_url", target, "description", desc);
		}
		_cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		_cleanup_free_ char *u = kiln_buf_steal(&url);
		_cleanup_free_ char *key =
		    kiln_asprintf("status:%s:%s:%s", ri->repo, ri->sha, context);
		_cleanup_free_ char *what =
		    kiln_asprintf("status '%s' = %s for %s@%.12s (run %llu)", context,
		                  gitlab ? gl : gh, ri->repo, ri->sha, (unsigned long long)run_id);
		int64_t id = insert_row(c, ri->forge, ri->repo, key, what, u, text, now);
		if (id < 0)
			continue;
		kiln_strv_push_owned(ids_out, kiln_asprintf("%lld", (long long)id));
		store_x(c, "INSERT OR REPLACE INTO forge_jobs(job_id, sent) VALUES(?, ?)", "it",
		        r->id, mark);
	}
	for (size_t i = 0; i < n; i++) {
		free(rows[i].name);
		free(rows[i].state);
		free(rows[i].concl);
		free(rows[i].sent);
	}
	free(rows);
}

static json_t *ms_json(int64_t ms)
{
	return ms ? json_integer(ms) : json_null();
}

/* The notification of a completed run, once per completion (a re-run completes again). */
static void queue_notification(coord *c, uint64_t run_id, const run_info *ri, kiln_strv *ids_out,
                               int64_t now)
{
	sqlite3_stmt *st =
	    store_q(c, "SELECT finished_ms FROM forge_runs WHERE run_id = ?", "i", (int64_t)run_id);
	bool done =
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == ri->finished_ms;
	store_done(st);
	if (done)
		return;
	_cleanup_free_ char *base = base_url(c);
	_cleanup_free_ char *run_url =
	    kiln_asprintf("%s/runs/%llu", base, (unsigned long long)run_id);
	json_t *jobs = json_array();
	kiln_buf failed = {0};
	st = store_q(c,
	             "SELECT id, name, conclusion, started_ms, finished_ms FROM jobs"
	             " WHERE run_id = ? AND kind = 'job' ORDER BY id",
	             "i", (int64_t)run_id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t s = sqlite3_column_int64(st, 3), e = sqlite3_column_int64(st, 4);
		_cleanup_free_ char *ju =
		    kiln_asprintf("%s/jobs/%lld", run_url, (long long)sqlite3_column_int64(st, 0));
		json_array_append_new(
		    jobs, json_pack("{s:I, s:s, s:s, s:o, s:o, s:o, s:s}", "id",
		                    (json_int_t)sqlite3_column_int64(st, 0), "name",
		                    col_text(st, 1), "conclusion", col_text(st, 2), "started_ms",
		                    ms_json(s), "finished_ms", ms_json(e), "duration_ms",
		                    s && e ? json_integer(e - s) : json_null(), "url", ju));
		if (strcmp(col_text(st, 2), "failure") == 0) {
			kiln_buf_puts(&failed, failed.len ? ", " : "");
			kiln_buf_puts(&failed, col_text(st, 1));
		}
	}
	store_done(st);
	const char *verb = strcmp(ri->conclusion, "success") == 0     ? "succeeded"
	                   : strcmp(ri->conclusion, "cancelled") == 0 ? "was cancelled"
	                                                              : "failed";
	const char *ref = ri->ref;
	if (strncmp(ref, "refs/heads/", 11) == 0)
		ref += 11;
	else if (strncmp(ref, "refs/tags/", 10) == 0)
		ref += 10;
	_cleanup_free_ char *dur =
	    duration_text(ri->finished_ms - (ri->started_ms ? ri->started_ms : ri->created_ms));
	_cleanup_free_ char *fl = kiln_buf_steal(&failed);
	_cleanup_free_ char *text =
	    kiln_asprintf("%s: %s #%lld %s on %s (%.7s) in %s%s%s <%s|run %llu>", ri->repo,
	                  ri->name, (long long)ri->number, verb, ref, ri->sha, dur,
	                  *fl ? " — failed jobs: " : "", fl, run_url, (unsigned long long)run_id);
	json_t *body = json_pack(
	    "{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s,"
	    " s:o, s:o, s:o, s:o, s:o}",
	    "text", text, "event_type", "run.completed", "run_id", (json_int_t)run_id, "number",
	    (json_int_t)ri->number, "repository", ri->repo, "workflow", ri->name, "workflow_file",
	    ri->workflow, "ref", ri->ref, "sha", ri->sha, "event", ri->event, "state", ri->state,
	    "conclusion", ri->conclusion, "url", run_url, "created_ms", ms_json(ri->created_ms),
	    "started_ms", ms_json(ri->started_ms), "finished_ms", ms_json(ri->finished_ms),
	    "duration_ms",
	    ri->started_ms ? json_integer(ri->finished_ms - ri->started_ms) : json_null(), "jobs",
	    jobs);
	_cleanup_free_ char *payload = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	_cleanup_free_ char *what =
	    kiln_asprintf("notification of run %llu (%s) to %s", (unsigned long long)run_id,
	                  ri->conclusion, ri->notify_url);
	int64_t id = insert_row(c, "notify", ri->repo, NULL, what, ri->notify_url, payload, now);
	if (id < 0)
		return;
	kiln_strv_push_owned(ids_out, kiln_asprintf("%lld", (long long)id));
	store_x(c, "INSERT OR REPLACE INTO forge_runs(run_id, finished_ms) VALUES(?, ?)", "ii",
	        (int64_t)run_id, ri->finished_ms);
}

void forge_run_changed(coord *c, uint64_t run_id)
{
	struct forge *f = c->forge;
	if (!f || !f->have_repos)
		return;
#define RUN_SQL(JOIN)                                                                              \
	"SELECT p.name, r.name, r.sha, r.ref, r.event, r.workflow, r.state, r.conclusion,"         \
	" r.number, r.created_ms, r.started_ms, r.finished_ms, coalesce(p.forge, ''),"             \
	" coalesce(p.api_url, ''), coalesce(p.url, ''), coalesce(p.token, '') != '',"              \
	" coalesce(p.notify_url, '') FROM runs r JOIN repos p ON " JOIN " WHERE r.id = ?"
	/* a triggered run names its repository by id; one submitted by hand, by its name or URL */
	sqlite3_stmt *st =
	    f->have_repo_id
	        ? store_q(c,
	                  RUN_SQL("(p.id = r.repo_id OR (r.repo_id IS NULL AND (p.name = r.repo OR "
	                          "p.url = r.repo)))"),
	                  "i", (int64_t)run_id)
	        : store_q(c, RUN_SQL("(p.name = r.repo OR p.url = r.repo)"), "i", (int64_t)run_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		return;
	}
	run_info ri = {0};
	char **texts[] = {&ri.repo,  &ri.name,     &ri.sha,   &ri.ref,
	                  &ri.event, &ri.workflow, &ri.state, &ri.conclusion};
	for (int i = 0; i < 8; i++)
		*texts[i] = kiln_strdup(col_text(st, i));
	ri.number = sqlite3_column_int64(st, 8);
	ri.created_ms = sqlite3_column_int64(st, 9);
	ri.started_ms = sqlite3_column_int64(st, 10);
	ri.finished_ms = sqlite3_column_int64(st, 11);
	ri.forge = kiln_strdup(col_text(st, 12));
	const char *api = col_text(st, 13), *clone = col_text(st, 14);
	bool statuses = (strcmp(ri.forge, "github") == 0 || strcmp(ri.forge, "gitea") == 0 ||
	                 strcmp(ri.forge, "gitlab") == 0) &&
	                sqlite3_column_int(st, 15) != 0;
	ri.api_root = statuses ? api_root(ri.forge, api, clone) : NULL;
	ri.notify_url = kiln_strdup(col_text(st, 16));
	store_done(st);

	int64_t now = kiln_now_ms();
	kiln_strv ids = {0};
	bool notify = *ri.notify_url && strcmp(ri.state, "completed") == 0;
	if ((ri.api_root && strlen(ri.sha) >= 7) || notify) {
		store_begin(c);
		if (ri.api_root && strlen(ri.sha) >= 7)
			queue_statuses(c, run_id, &ri, &ids, now);
		if (notify)
			queue_notification(c, run_id, &ri, &ids, now);
		if (store_commit(c) != SQLITE_DONE) {
			store_rollback(c);
			kiln_strv_free(&ids);
		}
	}
	int64_t *nums = kiln_calloc(ids.n + 1, sizeof *nums);
	for (size_t i = 0; i < ids.n; i++)
		nums[i] = strtoll(ids.v[i], NULL, 10);
	hand_over(c, nums, ids.n);
	free(nums);
	kiln_strv_free(&ids);
	run_info_free(&ri);
}

void forge_job_assigned(coord *c, uint64_t run_id, uint64_t job_id, int64_t now_ms)
{
	metrics_job_assigned(c, job_id, now_ms);
	forge_run_changed(c, run_id);
}

void forge_metrics(coord *c, kiln_buf *b)
{
	struct forge *f = c->forge;
	sqlite3_stmt *st = store_q(c, "SELECT count(*) FROM outbox", NULL);
	int64_t pending = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	store_done(st);
	kiln_buf_puts(b, "# HELP kiln_forge_pending Commit statuses and notifications waiting to be"
	                 " delivered.\n# TYPE kiln_forge_pending gauge\n");
	kiln_buf_printf(b, "kiln_forge_pending %lld\n", (long long)pending);
	kiln_buf_puts(b, "# HELP kiln_forge_delivered_total Commit statuses and notifications"
	                 " delivered.\n# TYPE kiln_forge_delivered_total counter\n");
	kiln_buf_printf(b, "kiln_forge_delivered_total %llu\n",
	                (unsigned long long)(f ? f->delivered : 0));
	kiln_buf_puts(b, "# HELP kiln_forge_failures_total Failed delivery attempts.\n"
	                 "# TYPE kiln_forge_failures_total counter\n");
	kiln_buf_printf(b, "kiln_forge_failures_total %llu\n",
	                (unsigned long long)(f ? f->failures : 0));
	kiln_buf_puts(b, "# HELP kiln_forge_dropped_total Deliveries given up on.\n"
	                 "# TYPE kiln_forge_dropped_total counter\n");
	kiln_buf_printf(b, "kiln_forge_dropped_total %llu\n",
	                (unsigned long long)(f ? f->dropped : 0));
}

int forge_start(coord *c)
{
	struct forge *f = kiln_calloc(1, sizeof *f);
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	c->forge = f;
	f->public_url = c->cfg.public_url ? kiln_strdup(c->cfg.public_url) : NULL;
	f->ca_file =
	    kiln_strdup(c->cfg.forge_ca && *c->cfg.forge_ca ? c->cfg.forge_ca : DEFAULT_CA);
	f->retry_ms = c->cfg.forge_retry_ms > 0 ? c->cfg.forge_retry_ms : 1000;
	f->give_up_ms = c->cfg.forge_give_up_ms > 0 ? c->cfg.forge_give_up_ms : 24ll * 3600 * 1000;
	c->cfg.public_url = f->public_url;
	c->cfg.forge_ca = f->ca_file;

	/* the repositories table is another module's: read it only when it has our columns */
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(c->db,
	                       "SELECT count(*) FROM pragma_table_info('repos') WHERE name IN"
	                       " ('name', 'url', 'forge', 'api_url', 'token', 'notify_url',"
	                       " 'notify_secret')",
	                       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		f->have_repos = sqlite3_column_int(st, 0) == 7;
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(
	        c->db, "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'repo_id'", -1,
	        &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		f->have_repo_id = sqlite3_column_int(st, 0) == 1;
	sqlite3_finalize(st);
	if (!f->have_repos)
		kiln_log(KILN_LOG_NOTICE, "forge: no repositories table; statuses are off");

	/* what was left to send at the last stop */
	size_t n = 0;
	int64_t *ids = NULL;
	if (f->have_repos) {
		st = store_q(c, "SELECT id FROM outbox ORDER BY id", NULL);
		while (sqlite3_step(st) == SQLITE_ROW) {
			ids = kiln_realloc(ids, (n + 1) * sizeof *ids);
			ids[n++] = sqlite3_column_int64(st, 0);
		}
		store_done(st);
		hand_over(c, ids, n);
		/* a restart is a fair moment to try again: now, not at the end of a long backoff */
		pthread_mutex_lock(&f->mu);
		int64_t soon = kiln_now_ms();
		for (fitem *it = f->queue; it; it = it->next)
			if (it->next_ms > soon)
				it->next_ms = soon;
		pthread_mutex_unlock(&f->mu);
		if (n)
			kiln_log(KILN_LOG_INFO, "forge: %zu deliveries left from before", n);
	}
	free(ids);
	if (pthread_create(&f->thread, NULL, sender_main, c) != 0)
		return kiln_err(EAGAIN, "forge: cannot start a thread");
	f->running = true;
	return 0;
}

void forge_stop(coord *c)
{
	struct forge *f = c->forge;
	if (!f || !f->running)
		return;
	pthread_mutex_lock(&f->mu);
	f->stop = true;
	if (f->cur_aio)
		nng_aio_cancel(f->cur_aio);
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	f->running = false;
}

void forge_free(coord *c)
{
	struct forge *f = c->forge;
	if (!f)
		return;
	forge_stop(c);
	while (f->queue) {
		fitem *it = f->queue;
		f->queue = it->next;
		fitem_free(it);
	}
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	free(f->public_url);
	free(f->ca_file);
	free(f);
	c->forge = NULL;
}
