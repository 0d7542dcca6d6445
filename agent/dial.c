/*
 * dial — see dial.h. The watcher runs only for tls+tcp://: while the socket
 * has no pipe, it tries a bare TLS connection of its own now and then (2 s,
 * doubling to a minute) and logs what went wrong, e.g. a certificate that the
 * configured CA did not sign. It logs a failure once, then again only when
 * the reason changes, and says so when the coordinator is reached.
 */
#include "agent/dial.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <nng/supplemental/tls/tls.h>

#include "common/util.h"

#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"
#define PROBE_TIMEOUT_MS 5000

struct agent_dial {
	char *url;
	nng_tls_config *tls;
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	int pipes;      /* connected pipes (under mu) */
	nng_aio *probe; /* under mu, to cancel at stop */
};

static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	agent_dial *d = arg;
	pthread_mutex_lock(&d->mu);
	d->pipes += ev == NNG_PIPE_EV_ADD_POST ? 1 : -1;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static const char *hint(int rv)
{
	switch (rv) {
	case NNG_EPEERAUTH:
	case NNG_ECRYPTO:
		return " (the TLS handshake failed: the coordinator's certificate must be signed by"
		       " the CA of --tls-ca (default: the system's) and name the host dialed or"
		       " --tls-server-name; and the coordinator must listen on tls+tcp://)";
	case NNG_ECONNREFUSED:
		return " (nothing listens there)";
	default:
		return "";
	}
}

/* One TLS connection attempt; 0 or an nng error. */
static int probe(agent_dial *d)
{
	nng_stream_dialer *sd = NULL;
	nng_aio *aio = NULL;
	int rv = nng_stream_dialer_alloc(&sd, d->url);
	if (rv == 0)
		rv = nng_stream_dialer_set_ptr(sd, NNG_OPT_TLS_CONFIG, d->tls);
	if (rv == 0)
		rv = nng_aio_alloc(&aio, NULL, NULL);
	if (rv == 0) {
		nng_aio_set_timeout(aio, PROBE_TIMEOUT_MS);
		pthread_mutex_lock(&d->mu);
		bool stop = d->stop;
		d->probe = stop ? NULL : aio;
		pthread_mutex_unlock(&d->mu);
		if (stop) {
			rv = NNG_ECLOSED;
		} else {
			nng_stream_dialer_dial(sd, aio);
			nng_aio_wait(aio);
			rv = nng_aio_result(aio);
			nng_stream *s = rv == 0 ? nng_aio_get_output(aio, 0) : NULL;
			if (s) {
				/* the handshake happens on the first I/O: send what a REQ peer
				   sends first, the SP header, and close */
				uint8_t hdr[8] = {0, 'S', 'P', 0, 0, 48, 0, 0};
				nng_iov iov = {.iov_buf = hdr, .iov_len = sizeof hdr};
				nng_aio_set_iov(aio, 1, &iov);
				nng_stream_send(s, aio);
				nng_aio_wait(aio);
				rv = nng_aio_result(aio);
				nng_stream_free(s);
			}
			pthread_mutex_lock(&d->mu);
			d->probe = NULL;
			pthread_mutex_unlock(&d->mu);
		}
	}
	if (aio)
		nng_aio_free(aio);
	if (sd)
		nng_stream_dialer_free(sd);
	return rv;
}

static void wait_ms(agent_dial *d, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	while (!d->stop && d->pipes == 0 && pthread_cond_timedwait(&d->cv, &d->mu, &ts) == 0)
		;
}

static void *watch_main(void *arg)
{
	agent_dial *d = arg;
	int last = 0;
	int64_t backoff = 2000;
	pthread_mutex_lock(&d->mu);
	wait_ms(d, backoff); /* the dialer's own first attempts */
	while (!d->stop) {
		if (d->pipes > 0) {
			if (last)
				kiln_log(KILN_LOG_INFO, "bus: connected to %s", d->url);
			last = 0;
			backoff = 2000;
			while (!d->stop && d->pipes > 0)
				pthread_cond_wait(&d->cv, &d->mu);
			wait_ms(d, backoff);
			continue;
		}
		pthread_mutex_unlock(&d->mu);
		int rv = probe(d);
		pthread_mutex_lock(&d->mu);
		if (d->stop)
			break;
		if (rv != 0 && rv != last)
			kiln_log(KILN_LOG_ERR, "bus: cannot connect to %s: %s%s", d->url,
			         nng_strerror(rv), hint(rv));
		if (rv != 0)
			last = rv;
		wait_ms(d, backoff);
		backoff = backoff * 2 > 60000 ? 60000 : backoff * 2;
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* The client TLS configuration of cfg: the CA, the name to verify, a client certificate. */
static int tls_config(const agent_config *cfg, const char *url, nng_tls_config **out)
{
	nng_url *u = NULL;
	nng_tls_config *tls = NULL;
	_cleanup_free_ char *cert = NULL, *key = NULL;
	const char *ca = cfg->tls_ca && *cfg->tls_ca ? cfg->tls_ca : DEFAULT_CA;
	size_t len;
	if (cfg->tls_cert && *cfg->tls_cert) {
		int r = kiln_read_file(cfg->tls_cert, 1 << 20, &cert, &len);
		if (r < 0)
			return r;
		if ((r = kiln_read_file(cfg->tls_key && *cfg->tls_key ? cfg->tls_key
		                                                      : cfg->tls_cert,
		                        1 << 20, &key, &len)) < 0)
			return r;
	}
	const char *what = url;
	int rv = nng_url_parse(&u, url);
	if (rv == 0)
		rv = nng_tls_config_alloc(&tls, NNG_TLS_MODE_CLIENT);
	if (rv == 0)
		rv = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED);
	if (rv == 0)
		rv = nng_tls_config_server_name(tls, cfg->tls_server_name && *cfg->tls_server_name
		                                         ? cfg->tls_server_name
		                                         : u->u_hostname);
	if (rv == 0 && (rv = nng_tls_config_ca_file(tls, ca)) != 0)
		what = ca;
	if (rv == 0 && cert && (rv = nng_tls_config_own_cert(tls, cert, key, NULL)) != 0)
		what = cfg->tls_cert;
	if (key)
		explicit_bzero(key, strlen(key));
	if (u)
		nng_url_free(u);
	if (rv != 0) {
		if (tls)
			nng_tls_config_free(tls);
		return kiln_err(EINVAL, "%s: %s", what, nng_strerror(rv));
	}
	*out = tls;
	return 0;
}

int agent_dial_start(nng_socket sock, const agent_config *cfg, nng_dialer *dialer, agent_dial **out)
{
	*out = NULL;
	const char *url = cfg->coordinator;
	bool tls = strncmp(url, "tls+tcp://", 10) == 0;
	int rv = nng_dialer_create(dialer, sock, url);
	if (rv != 0)
		return kiln_err(EINVAL, "cannot dial %s: %s", url, nng_strerror(rv));
	agent_dial *d = NULL;
	if (tls) {
		d = kiln_calloc(1, sizeof *d);
		d->url = kiln_strdup(url);
		pthread_mutex_init(&d->mu, NULL);
		pthread_cond_init(&d->cv, NULL);
		int r = tls_config(cfg, url, &d->tls);
		if (r < 0) {
			agent_dial_free(d);
			return r;
		}
		if ((rv = nng_dialer_set_ptr(*dialer, NNG_OPT_TLS_CONFIG, d->tls)) != 0) {
			agent_dial_free(d);
			return kiln_err(EINVAL, "cannot dial %s: %s", url, nng_strerror(rv));
		}
		nng_pipe_notify(sock, NNG_PIPE_EV_ADD_POST, pipe_cb, d);
		nng_pipe_notify(sock, NNG_PIPE_EV_REM_POST, pipe_cb, d);
	} else if (cfg->tls_ca || cfg->tls_server_name || cfg->tls_cert) {
		kiln_log(KILN_LOG_WARNING, "TLS options are ignored for %s (not tls+tcp://)", url);
	}
	if ((rv = nng_dialer_start(*dialer, NNG_FLAG_NONBLOCK)) != 0) {
		agent_dial_free(d);
		return kiln_err(EINVAL, "cannot dial %s: %s", url, nng_strerror(rv));
	}
	if (d && pthread_create(&d->thread, NULL, watch_main, d) == 0)
		d->running = true;
	*out = d;
	return 0;
}

void agent_dial_free(agent_dial *d)
{
	if (!d)
		return;
	if (d->running) {
		pthread_mutex_lock(&d->mu);
		d->stop = true;
		if (d->probe)
			nng_aio_cancel(d->probe);
		pthread_cond_signal(&d->cv);
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->thread, NULL);
	}
	if (d->tls)
		nng_tls_config_free(d->tls);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d->url);
	free(d);
}
