/*
 * bus — the REP socket agents dial. A few contexts always wait for a request;
 * when one receives, another is started, so a Poll held for 25 s does not
 * block anyone. A request is decoded here (bounded by the socket's maximum
 * message size) and posted to the core thread, which answers through
 * bus_reply() now or later. After the answer is sent the context goes back
 * to listening, or to a free list when enough are listening already.
 * A tls+tcp:// address takes its certificate from the tls_cert/tls_key
 * settings and, with tls_ca, asks agents for a certificate that CA signed.
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <string.h>

#include <nng/supplemental/tls/tls.h>

#define BUS_LISTENERS 4

enum { CTX_IDLE, CTX_RECV, CTX_BUSY, CTX_SEND };

struct bus_ctx {
	bus *b;
	nng_ctx ctx;
	nng_aio *aio;
	int state;
	uint32_t pipe;
	bus_ctx *next_all, *next_free;
};

struct bus {
	coord *c;
	nng_socket sock;
	nng_listener listener;
	pthread_mutex_t mu;
	bus_ctx *all, *free;
	int listening;
	bool closed;
};

typedef struct bus_event {
	bus_ctx *ctx;
	Kiln__Request *req;
} bus_event;

static void ctx_cb(void *arg);

static void on_core(coord *c, void *arg)
{
	bus_event *ev = arg;
	if (!sched_request(c, ev->ctx, ev->req))
		kiln__request__free_unpacked(ev->req, NULL);
	free(ev);
}

static void pipe_gone_on_core(coord *c, void *arg)
{
	uint32_t *pipe = arg;
	sched_pipe_gone(c, *pipe);
	free(pipe);
}

static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	bus *b = arg;
	if (ev != NNG_PIPE_EV_REM_POST)
		return;
	pthread_mutex_lock(&b->mu);
	bool closed = b->closed;
	pthread_mutex_unlock(&b->mu);
	if (closed)
		return;
	uint32_t *id = kiln_malloc(sizeof *id);
	*id = nng_pipe_id(p);
	core_post(b->c, pipe_gone_on_core, id);
}

/* Starts listening on some context (reusing a free one); b->mu held. */
static int listen_one(bus *b)
{
	bus_ctx *x = b->free;
	if (x) {
		b->free = x->next_free;
	} else {
		x = kiln_calloc(1, sizeof *x);
		x->b = b;
		int r = nng_ctx_open(&x->ctx, b->sock);
		if (r == 0)
			r = nng_aio_alloc(&x->aio, ctx_cb, x);
		if (r != 0) {
			if (x->aio)
				nng_aio_free(x->aio);
			free(x);
			return kiln_err(ENOMEM, "bus: %s", nng_strerror(r));
		}
		x->next_all = b->all;
		b->all = x;
	}
	x->state = CTX_RECV;
	b->listening++;
	nng_ctx_recv(x->ctx, x->aio);
	return 0;
}

void bus_reply_status(bus_ctx *x, Kiln__Status st, const char *msg)
{
	Kiln__Response resp = KILN__RESPONSE__INIT;
	resp.status = st;
	resp.error = (char *)(msg ? msg : "");
	bus_reply(x, &resp);
}

static void ctx_cb(void *arg)
{
	bus_ctx *x = arg;
	bus *b = x->b;
	int rv = nng_aio_result(x->aio);

	pthread_mutex_lock(&b->mu);
	if (x->state == CTX_SEND) {
		if (rv != 0) {
			nng_msg *m = nng_aio_get_msg(x->aio);
			if (m)
				nng_msg_free(m);
		}
		x->state = CTX_IDLE;
		if (b->closed) {
			pthread_mutex_unlock(&b->mu);
			return;
		}
		if (b->listening < BUS_LISTENERS) {
			x->state = CTX_RECV;
			b->listening++;
			nng_ctx_recv(x->ctx, x->aio);
		} else {
			x->next_free = b->free;
			b->free = x;
		}
		pthread_mutex_unlock(&b->mu);
		return;
	}

	/* a receive completed */
	b->listening--;
	if (rv != 0 || b->closed) {
		x->state = CTX_IDLE;
		if (!b->closed && rv != NNG_ECLOSED) {
			x->state = CTX_RECV;
			b->listening++;
			nng_ctx_recv(x->ctx, x->aio);
		}
		pthread_mutex_unlock(&b->mu);
		return;
	}
	x->state = CTX_BUSY;
	while (b->listening < BUS_LISTENERS && listen_one(b) == 0)
		;
	pthread_mutex_unlock(&b->mu);

	nng_msg *m = nng_aio_get_msg(x->aio);
	x->pipe = nng_pipe_id(nng_msg_get_pipe(m));
	Kiln__Request *req =
		kiln__request__unpack(NULL, nng_msg_len(m), (const uint8_t *)nng_msg_body(m));
	nng_msg_free(m);
	if (!req) {
		bus_reply_status(x, KILN__STATUS__STATUS_BAD_REQUEST, "malformed request");
		return;
	}
	if (req->version != KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT) {
		kiln__request__free_unpacked(req, NULL);
		bus_reply_status(x, KILN__STATUS__STATUS_VERSION, "protocol version not supported");
		return;
	}
	bus_event *ev = kiln_malloc(sizeof *ev);
	ev->ctx = x;
	ev->req = req;
	core_post(b->c, on_core, ev);
}

void bus_reply(bus_ctx *x, Kiln__Response *resp)
{
	resp->version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
	bus *b = x->b;
	size_t n = kiln__response__get_packed_size(resp);
	nng_msg *m;
	if (nng_msg_alloc(&m, n) != 0)
		return;
	kiln__response__pack(resp, (uint8_t *)nng_msg_body(m));
	pthread_mutex_lock(&b->mu);
	if (b->closed || x->state != CTX_BUSY) {
		pthread_mutex_unlock(&b->mu);
		nng_msg_free(m);
		return;
	}
	x->state = CTX_SEND;
	nng_aio_set_msg(x->aio, m);
	nng_ctx_send(x->ctx, x->aio);
	pthread_mutex_unlock(&b->mu);
}

uint32_t bus_ctx_pipe(const bus_ctx *x)
{
	return x->pipe;
}

int bus_start(coord *c)
{
	bus *b = kiln_calloc(1, sizeof *b);
	b->c = c;
	pthread_mutex_init(&b->mu, NULL);
	c->bus = b;
	int r = nng_rep0_open(&b->sock);
	if (r != 0)
		return kiln_err(EIO, "bus: %s", nng_strerror(r));
	nng_socket_set_size(b->sock, NNG_OPT_RECVMAXSZ, c->cfg.max_message);
	nng_pipe_notify(b->sock, NNG_PIPE_EV_REM_POST, pipe_event, b);
	r = nng_listener_create(&b->listener, b->sock, c->bus_url);
	if (r == 0 && strncmp(c->bus_url, "tls+tcp://", 10) == 0) {
		nng_tls_config *tls = NULL;
		int e = coord_tls_config(c, true, &tls);
		if (e < 0) {
			_cleanup_free_ char *why = kiln_strdup(kiln_errmsg());
			return kiln_err(-e, "bus: %s: %s", c->bus_url, why);
		}
		r = nng_listener_set_ptr(b->listener, NNG_OPT_TLS_CONFIG, tls);
		nng_tls_config_free(tls); /* the listener holds it */
	}
	if (r == 0)
		r = nng_listener_start(b->listener, 0);
	if (r != 0)
		return kiln_err(EADDRNOTAVAIL, "bus: cannot listen on %s: %s", c->bus_url,
				nng_strerror(r));
	if (strncmp(c->bus_url, "tcp://", 6) == 0 || strncmp(c->bus_url, "tls+tcp://", 10) == 0) {
		int port = 0;
		if (nng_listener_get_int(b->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0) {
			const char *hp = strstr(c->bus_url, "://") + 3;
			const char *colon = strrchr(hp, ':');
			size_t hostlen = colon ? (size_t)(colon - hp) : strlen(hp);
			size_t schemelen = (size_t)(hp - c->bus_url);
			char *u = kiln_asprintf("%.*s%.*s:%d", (int)schemelen, c->bus_url,
						(int)hostlen, hp, port);
			free(c->bus_url);
			c->bus_url = u;
		}
	}
	pthread_mutex_lock(&b->mu);
	for (int i = 0; i < BUS_LISTENERS; i++)
		if ((r = listen_one(b)) < 0)
			break;
	pthread_mutex_unlock(&b->mu);
	return r < 0 ? r : 0;
}

void bus_close(coord *c)
{
	bus *b = c->bus;
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	b->closed = true;
	pthread_mutex_unlock(&b->mu);
	nng_close(b->sock);
	for (bus_ctx *x = b->all; x; x = x->next_all)
		nng_aio_stop(x->aio);
}

void bus_free(coord *c)
{
	bus *b = c->bus;
	if (!b)
		return;
	while (b->all) {
		bus_ctx *x = b->all;
		b->all = x->next_all;
		nng_msg *m = nng_aio_get_msg(x->aio);
		if (m && x->state == CTX_SEND)
			nng_msg_free(m);
		nng_aio_free(x->aio);
		free(x);
	}
	pthread_mutex_destroy(&b->mu);
	free(b);
	c->bus = NULL;
}
