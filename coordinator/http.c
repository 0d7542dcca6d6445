/*
 * http — nng's HTTP server in front of the API. Each request is copied and
 * handed to coord_api(); the answer completes the handler's aio from
 * whichever thread produced it. Bodies are read here, not by nng's
 * collect_body (which answers 400 to a Content-Length over its limit): one
 * over max_body gets 413 before a byte of it is read, and the connection is
 * closed.
 * An https:// address serves TLS with the tls_cert/tls_key settings (the same
 * certificate the bus uses for tls+tcp://).
 */
#include "coordinator/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

struct http_srv {
	nng_http_server *srv;
	nng_url *url;
};

typedef struct http_call {
	nng_aio *aio;
	/* while the body is read: */
	coord *c;
	nng_aio *read;
	char *body, *path, *query;
	size_t len;
} http_call;

static void http_reply(void *arg, int status, const char *content_type, char *body, size_t len)
{
	http_call *hc = arg;
	nng_http_res *res = NULL;
	if (nng_http_res_alloc(&res) == 0) {
		nng_http_res_set_status(res, (uint16_t)status);
		nng_http_res_set_header(res, "Content-Type",
					content_type ? content_type : "application/json");
		nng_http_res_set_header(res, "Cache-Control", "no-store");
		/* JSON and text end with a newline; anything else goes as it is */
		bool text = !content_type || strncmp(content_type, "text/", 5) == 0;
		if (text && len && body[len - 1] != '\n') {
			char *out = kiln_malloc(len + 1);
			memcpy(out, body, len);
			out[len] = '\n';
			nng_http_res_copy_data(res, out, len + 1);
			free(out);
		} else {
			nng_http_res_copy_data(res, body, len);
		}
	}
	free(body);
	nng_aio_set_output(hc->aio, 0, res);
	nng_aio_finish(hc->aio, res ? 0 : NNG_ENOMEM);
	free(hc);
}

/* The request headers the API looks at (nng has no way to list them all). */
static const char *const wanted_headers[] = {
	"Authorization",     "Content-Type",	    "User-Agent",	  "X-GitHub-Event",
	"X-GitHub-Delivery", "X-Hub-Signature-256", "X-Gitea-Event",	  "X-Gitea-Delivery",
	"X-Gitea-Signature", "X-Gitlab-Event",	    "X-Gitlab-Token",	  "X-Gitlab-Event-UUID",
	"X-Forwarded-For",
};

/* An answer straight from here, closing the connection (its body was not read). */
static void reply_close(nng_aio *aio, uint16_t status, const char *msg)
{
	nng_http_res *res = NULL;
	if (nng_http_res_alloc(&res) == 0) {
		nng_http_res_set_status(res, status);
		nng_http_res_set_header(res, "Content-Type", "application/json");
		nng_http_res_set_header(res, "Connection", "close");
		json_t *v = json_pack("{s:s}", "error", msg);
		char *s = json_dumps(v, JSON_COMPACT);
		json_decref(v);
		if (s)
			nng_http_res_copy_data(res, s, strlen(s));
		free(s);
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, res ? 0 : NNG_ENOMEM);
}

static void pass_on(http_call *hc);

static void body_read(void *arg)
{
	http_call *hc = arg;
	if (nng_aio_result(hc->read) != 0) {
		nng_aio *aio = hc->aio;
		nng_aio_reap(hc->read); /* in its own callback: not nng_aio_free */
		free(hc->body);
		free(hc->path);
		free(hc->query);
		free(hc);
		nng_aio_finish(aio, NNG_ECONNRESET);
		return;
	}
	pass_on(hc);
}

static void handle(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	nng_http_conn *conn = nng_aio_get_input(aio, 2);
	coord *c = nng_http_handler_get_data(h);
	const char *uri = nng_http_req_get_uri(req);
	const char *q = strchr(uri, '?');
	const char *cl = nng_http_req_get_header(req, "Content-Length");
	const char *te = nng_http_req_get_header(req, "Transfer-Encoding");
	unsigned long long len = 0;
	if (cl) {
		char *end;
		errno = 0;
		len = strtoull(cl, &end, 10);
		if (!*cl || *end || errno || cl[0] == '-') {
			reply_close(aio, 400, "malformed Content-Length");
			return;
		}
	}
	if (te && !cl) {
		reply_close(aio, 411, "send the body with a Content-Length");
		return;
	}
	if (len > c->cfg.max_body) {
		char msg[96];
		snprintf(msg, sizeof msg, "body of %llu bytes is over the limit of %zu", len,
			 c->cfg.max_body);
		reply_close(aio, 413, msg);
		return;
	}
	http_call *hc = kiln_calloc(1, sizeof *hc);
	hc->aio = aio;
	hc->c = c;
	hc->path = q ? strndup(uri, (size_t)(q - uri)) : kiln_strdup(uri);
	hc->query = kiln_strdup(q ? q + 1 : "");
	hc->len = (size_t)len;
	if (!len) {
		pass_on(hc);
		return;
	}
	hc->body = kiln_malloc(hc->len + 1);
	hc->body[hc->len] = '\0';
	nng_iov iov = {.iov_buf = hc->body, .iov_len = hc->len};
	if (nng_aio_alloc(&hc->read, body_read, hc) != 0 || nng_aio_set_iov(hc->read, 1, &iov) != 0) {
		if (hc->read)
			nng_aio_free(hc->read);
		free(hc->body);
		free(hc->path);
		free(hc->query);
		free(hc);
		reply_close(aio, 503, "out of memory");
		return;
	}
	nng_aio_set_timeout(hc->read, 60000);
	nng_http_conn_read_all(conn, hc->read);
}

/* The request, with its body read, to the API. */
static void pass_on(http_call *hc)
{
	nng_aio *aio = hc->aio;
	nng_http_req *req = nng_aio_get_input(aio, 0);
	coord *c = hc->c;
	_cleanup_free_ char *path = hc->path, *query = hc->query, *body = hc->body;
	size_t len = hc->len;
	if (hc->read) {
		/* called from the read's own callback: it may not be freed (waited for) here */
		nng_aio_reap(hc->read);
		hc->read = NULL;
	}
	hc->path = hc->query = hc->body = NULL;
	const char *headers[2 * KILN_ARRAY_SIZE(wanted_headers) + 2];
	size_t n = 0;
	for (size_t i = 0; i < KILN_ARRAY_SIZE(wanted_headers); i++) {
		const char *v = nng_http_req_get_header(req, wanted_headers[i]);
		if (v) {
			headers[n++] = wanted_headers[i];
			headers[n++] = v;
		}
	}
	headers[n] = headers[n + 1] = NULL;
	coord_api_http(c, nng_http_req_get_method(req), path, query, headers, len ? body : NULL,
		       len, http_reply, hc);
}

int coord_tls_config(coord *c, bool client_certs, nng_tls_config **out)
{
	*out = NULL;
	if (!c->cfg.tls_cert || !*c->cfg.tls_cert || !c->cfg.tls_key || !*c->cfg.tls_key)
		return kiln_err(EINVAL, "TLS needs a certificate and its key (tls_cert, tls_key)");
	_cleanup_free_ char *cert = NULL, *key = NULL;
	size_t len;
	int r = kiln_read_file(c->cfg.tls_cert, 1 << 20, &cert, &len);
	if (r < 0)
		return r;
	if ((r = kiln_read_file(c->cfg.tls_key, 1 << 20, &key, &len)) < 0)
		return r;
	nng_tls_config *tls = NULL;
	const char *what = "TLS";
	int e = nng_tls_config_alloc(&tls, NNG_TLS_MODE_SERVER);
	if (e == 0 && (e = nng_tls_config_own_cert(tls, cert, key, NULL)) != 0)
		what = c->cfg.tls_cert;
	if (e == 0 && client_certs && c->cfg.tls_ca && *c->cfg.tls_ca) {
		if ((e = nng_tls_config_ca_file(tls, c->cfg.tls_ca)) != 0)
			what = c->cfg.tls_ca;
		else
			e = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED);
	} else if (e == 0) {
		e = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_NONE);
	}
	explicit_bzero(key, strlen(key));
	if (e != 0) {
		if (tls)
			nng_tls_config_free(tls);
		return kiln_err(EINVAL, "%s: %s (a PEM certificate and key, RSA or ECDSA)", what,
				nng_strerror(e));
	}
	*out = tls;
	return 0;
}

int http_start(coord *c)
{
	http_srv *s = kiln_calloc(1, sizeof *s);
	c->http = s;
	_cleanup_free_ char *u = strstr(c->http_url, "://") ? kiln_strdup(c->http_url)
							  : kiln_asprintf("http://%s", c->http_url);
	int r = nng_url_parse(&s->url, u);
	if (r == 0)
		r = nng_http_server_hold(&s->srv, s->url);
	if (r != 0)
		return kiln_err(EINVAL, "http: %s: %s", u, nng_strerror(r));
	if (strcmp(s->url->u_scheme, "https") == 0) {
		nng_tls_config *tls = NULL;
		int e = coord_tls_config(c, false, &tls);
		if (e < 0)
			return e;
		r = nng_http_server_set_tls(s->srv, tls);
		nng_tls_config_free(tls);
		if (r != 0)
			return kiln_err(EINVAL, "http: %s: %s", u, nng_strerror(r));
	}
	nng_http_handler *h;
	r = nng_http_handler_alloc(&h, "/", handle);
	if (r == 0) {
		nng_http_handler_set_method(h, NULL);
		nng_http_handler_set_tree(h);
		nng_http_handler_collect_body(h, false, 0); /* handle() reads it, bounded */
		nng_http_handler_set_data(h, c, NULL);
		r = nng_http_server_add_handler(s->srv, h);
	}
	if (r == 0)
		r = nng_http_server_start(s->srv);
	if (r != 0)
		return kiln_err(EADDRNOTAVAIL, "http: cannot listen on %s: %s", u, nng_strerror(r));
	nng_sockaddr sa;
	if (nng_http_server_get_addr(s->srv, &sa) == 0 && sa.s_family == NNG_AF_INET) {
		char host[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &sa.s_in.sa_addr, host, sizeof host);
		free(c->http_url);
		c->http_url = kiln_asprintf("%s://%s:%u", s->url->u_scheme, host,
					    ntohs(sa.s_in.sa_port));
	}
	return 0;
}

void http_stop(coord *c)
{
	http_srv *s = c->http;
	if (!s)
		return;
	if (s->srv) {
		nng_http_server_stop(s->srv);
		nng_http_server_release(s->srv);
	}
	if (s->url)
		nng_url_free(s->url);
	free(s);
	c->http = NULL;
}
