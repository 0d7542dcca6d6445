/*
 * client — see client.h. The HTTP side is nng's HTTP client, one connection
 * per call (the CLI makes few), with a timeout that covers long polls.
 */
#include "cli/client.h"

#include <errno.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "common/util.h"

#define MAX_RESPONSE (64u << 20)

struct kiln_client {
	coord *local;
	nng_url *url;
	nng_http_client *http;
	char *token;
};

int kiln_client_http(const char *base, const char *token, kiln_client **out)
{
	kiln_client *cl = kiln_calloc(1, sizeof *cl);
	int r = nng_url_parse(&cl->url, base);
	if (r == 0 && strcmp(cl->url->u_scheme, "http") != 0 && strcmp(cl->url->u_scheme, "https") != 0)
		r = NNG_EADDRINVAL;
	if (r == 0)
		r = nng_http_client_alloc(&cl->http, cl->url);
	if (r != 0) {
		kiln_client_free(cl);
		return kiln_err(EINVAL, "bad server URL '%s': %s", base, nng_strerror(r));
	}
	cl->token = kiln_strdup(token);
	*out = cl;
	return 0;
}

int kiln_client_local(coord *c, kiln_client **out)
{
	kiln_client *cl = kiln_calloc(1, sizeof *cl);
	cl->local = c;
	*out = cl;
	return 0;
}

void kiln_client_free(kiln_client *cl)
{
	if (!cl)
		return;
	if (cl->http)
		nng_http_client_free(cl->http);
	if (cl->url)
		nng_url_free(cl->url);
	free(cl->token);
	free(cl);
}

static int decode(int status, const char *data, size_t len, json_t **out)
{
	*out = NULL;
	if (len == 0)
		return status;
	json_error_t err;
	*out = json_loadb(data, len, 0, &err);
	if (!*out)
		return kiln_err(EPROTO, "the server sent malformed JSON (status %d): %s", status,
				err.text);
	return status;
}

static int call_http(kiln_client *cl, const char *method, const char *uri, const char *body,
		     json_t **out)
{
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_aio *aio = NULL;
	int r = nng_http_req_alloc(&req, cl->url);
	if (r == 0)
		r = nng_http_res_alloc(&res);
	if (r == 0)
		r = nng_aio_alloc(&aio, NULL, NULL);
	if (r != 0) {
		r = kiln_err(ENOMEM, "%s", nng_strerror(r));
		goto out;
	}
	nng_http_req_set_method(req, method);
	nng_http_req_set_uri(req, uri);
	nng_http_req_set_header(req, "Accept", "application/json");
	if (cl->token && *cl->token) {
		_cleanup_free_ char *auth = kiln_asprintf("Bearer %s", cl->token);
		nng_http_req_set_header(req, "Authorization", auth);
	}
	if (body) {
		nng_http_req_set_header(req, "Content-Type", "application/json");
		nng_http_req_copy_data(req, body, strlen(body));
	}
	nng_aio_set_timeout(aio, 120000);
	nng_http_client_transact(cl->http, req, res, aio);
	nng_aio_wait(aio);
	if ((r = nng_aio_result(aio)) != 0) {
		r = kiln_err(ECONNREFUSED, "cannot reach %s://%s:%s: %s", cl->url->u_scheme,
			     cl->url->u_hostname, cl->url->u_port, nng_strerror(r));
		goto out;
	}
	void *data;
	size_t len;
	nng_http_res_get_data(res, &data, &len);
	if (len > MAX_RESPONSE) {
		r = kiln_err(EFBIG, "response too large");
		goto out;
	}
	r = decode(nng_http_res_get_status(res), data, len, out);
out:
	if (aio)
		nng_aio_free(aio);
	if (res)
		nng_http_res_free(res);
	if (req)
		nng_http_req_free(req);
	return r;
}

int kiln_client_call(kiln_client *cl, const char *method, const char *path, const char *query,
		     json_t *body, json_t **out)
{
	_cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	*out = NULL;
	if (cl->local) {
		char *resp = NULL;
		int status = coord_api_sync(cl->local, method, path, query, text, &resp);
		int r = decode(status, resp, resp ? strlen(resp) : 0, out);
		free(resp);
		return r;
	}
	_cleanup_free_ char *uri = query && *query ? kiln_asprintf("%s?%s", path, query)
						   : kiln_strdup(path);
	return call_http(cl, method, uri, text, out);
}
