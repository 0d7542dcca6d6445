/*
 * client — see client.h. The HTTP side is nng's HTTP client, one connection
 * per call (the CLI makes few), with a timeout that covers long polls. An
 * https:// server is verified against --ca, $KILN_CA or the system's bundle,
 * and must carry the name in the URL.
 */
#include "cli/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#include "common/util.h"

#define MAX_RESPONSE (64u << 20)
#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"

static const char *ca_file;

void kiln_client_set_ca(const char *file)
{
	ca_file = file;
}

struct kiln_client {
	coord *local;
	nng_url *url;
	nng_http_client *http;
	char *token;
};

/* Verification of an https:// server: the CA, and the URL's host name in its certificate. */
static int client_tls(kiln_client *cl)
{
	const char *ca = ca_file && *ca_file		      ? ca_file
			 : getenv("KILN_CA") && *getenv("KILN_CA") ? getenv("KILN_CA")
								   : DEFAULT_CA;
	nng_tls_config *tls = NULL;
	int r = nng_tls_config_alloc(&tls, NNG_TLS_MODE_CLIENT);
	if (r == 0)
		r = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED);
	if (r == 0)
		r = nng_tls_config_server_name(tls, cl->url->u_hostname);
	if (r == 0 && (r = nng_tls_config_ca_file(tls, ca)) != 0) {
		nng_tls_config_free(tls);
		return kiln_err(EINVAL, "CA bundle %s: %s", ca, nng_strerror(r));
	}
	if (r == 0)
		r = nng_http_client_set_tls(cl->http, tls);
	if (tls)
		nng_tls_config_free(tls);
	return r == 0 ? 0 : kiln_err(EINVAL, "TLS: %s", nng_strerror(r));
}

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
	if (strcmp(cl->url->u_scheme, "https") == 0 && (r = client_tls(cl)) < 0) {
		kiln_client_free(cl);
		return r;
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
	nng_http_conn *conn = NULL;
	nng_aio *aio = NULL;
	char *data = NULL;
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
	/* one exchange on a connection of its own, closed by us once the answer is read: not
	   nng_http_client_transact, whose "Connection: close" makes nng's HTTPS server close
	   right after writing, which can cut the answer short (nng 1.5's TLS drops what it has
	   not yet handed to TCP at close) */
	nng_aio_set_timeout(aio, 120000);
	nng_http_client_connect(cl->http, aio);
	nng_aio_wait(aio);
	if ((r = nng_aio_result(aio)) == 0) {
		conn = nng_aio_get_output(aio, 0);
		nng_http_conn_write_req(conn, req, aio);
		nng_aio_wait(aio);
		r = nng_aio_result(aio);
	}
	if (r == 0) {
		nng_http_conn_read_res(conn, res, aio);
		nng_aio_wait(aio);
		r = nng_aio_result(aio);
	}
	if (r != 0) {
		r = kiln_err(ECONNREFUSED, "cannot reach %s://%s:%s: %s%s", cl->url->u_scheme,
			     cl->url->u_hostname, cl->url->u_port, nng_strerror(r),
			     r == NNG_EPEERAUTH || r == NNG_ECRYPTO
				     ? " (TLS: the server's certificate must be signed by the CA of"
				       " --ca or KILN_CA, default the system's, and name the host)"
				     : "");
		goto out;
	}
	const char *cl_hdr = nng_http_res_get_header(res, "Content-Length");
	char *end = NULL;
	unsigned long long len = cl_hdr ? strtoull(cl_hdr, &end, 10) : 0;
	if (cl_hdr && (end == cl_hdr || *end)) {
		r = kiln_err(EPROTO, "the server sent a bad Content-Length");
		goto out;
	}
	if (len > MAX_RESPONSE) {
		r = kiln_err(EFBIG, "response too large");
		goto out;
	}
	data = kiln_malloc(len + 1);
	if (len) {
		nng_iov iov = {.iov_buf = data, .iov_len = (size_t)len};
		nng_aio_set_iov(aio, 1, &iov);
		nng_http_conn_read_all(conn, aio);
		nng_aio_wait(aio);
		if ((r = nng_aio_result(aio)) != 0) {
			r = kiln_err(EIO, "reading the answer from %s://%s:%s: %s", cl->url->u_scheme,
				     cl->url->u_hostname, cl->url->u_port, nng_strerror(r));
			goto out;
		}
	}
	data[len] = '\0';
	r = decode(nng_http_res_get_status(res), data, (size_t)len, out);
out:
	free(data);
	if (conn)
		nng_http_conn_close(conn);
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
