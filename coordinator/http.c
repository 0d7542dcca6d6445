/*
 * http — nng's HTTP server in front of the API. Each request is copied and
 * handed to coord_api(); the answer completes the handler's aio from
 * whichever thread produced it. The server collects bodies up to max_body.
 */
#include "coordinator/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <nng/supplemental/http/http.h>

struct http_srv {
	nng_http_server *srv;
	nng_url *url;
};

typedef struct http_call {
	nng_aio *aio;
} http_call;

static void http_reply(void *arg, int status, const char *content_type, char *body)
{
	http_call *hc = arg;
	nng_http_res *res = NULL;
	if (nng_http_res_alloc(&res) == 0) {
		nng_http_res_set_status(res, (uint16_t)status);
		nng_http_res_set_header(res, "Content-Type",
					content_type ? content_type : "application/json");
		nng_http_res_set_header(res, "Cache-Control", "no-store");
		size_t n = strlen(body);
		bool nl = n && body[n - 1] != '\n';
		char *out = kiln_malloc(n + 2);
		memcpy(out, body, n);
		out[n] = '\n';
		nng_http_res_copy_data(res, out, n + nl);
		free(out);
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

static void handle(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	coord *c = nng_http_handler_get_data(h);
	const char *uri = nng_http_req_get_uri(req);
	const char *q = strchr(uri, '?');
	_cleanup_free_ char *path = q ? strndup(uri, (size_t)(q - uri)) : kiln_strdup(uri);
	void *body = NULL;
	size_t len = 0;
	nng_http_req_get_data(req, &body, &len);
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
	http_call *hc = kiln_calloc(1, sizeof *hc);
	hc->aio = aio;
	coord_api_http(c, nng_http_req_get_method(req), path, q ? q + 1 : "", headers,
		       len ? body : NULL, len, http_reply, hc);
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
	nng_http_handler *h;
	r = nng_http_handler_alloc(&h, "/", handle);
	if (r == 0) {
		nng_http_handler_set_method(h, NULL);
		nng_http_handler_set_tree(h);
		nng_http_handler_collect_body(h, true, c->cfg.max_body);
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
		c->http_url = kiln_asprintf("http://%s:%u", host, ntohs(sa.s_in.sa_port));
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
