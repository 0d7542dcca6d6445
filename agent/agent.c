/*
 * agent — the bus client. The poll thread registers and keeps one Poll in
 * flight; an assignment starts a job thread. The shipper thread drains each
 * job's outbox in order: log lines as soon as any are waiting, in batches of
 * at most 64 KiB with up to LOG_FLIGHTS of them in flight at once (what
 * arrives meanwhile goes in the next ones), then step and job updates; a
 * job's final result goes only once every one of its lines is stored. A job
 * thread formats its lines itself and hands them over once per read of the
 * step's output, so the lock is taken per read, not per line. Every send is retried until the coordinator answers, so
 * jobs keep running while it is away.
 */
#include "agent/internal.h"
#include "agent/dial.h"

#include "common/cas.h"
#include "common/logline.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nng/protocol/reqrep0/req.h>

#define BATCH_BYTES (64u << 10)
#define CALL_TIMEOUT_MS 30000
#define FLUSH_BYTES (64u << 10)

static int do_register(agent *a);

static void free_response(Kiln__Response **r)
{
	if (*r)
		kiln__response__free_unpacked(*r, NULL);
}

/* One request/response on a fresh context; no retries here. */
static int call_once(agent *a, Kiln__Request *req, int64_t timeout_ms, Kiln__Response **out)
{
	req->version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
	size_t n = kiln__request__get_packed_size(req);
	nng_msg *m;
	if (nng_msg_alloc(&m, n) != 0)
		return -ENOMEM;
	kiln__request__pack(req, (uint8_t *)nng_msg_body(m));
	nng_ctx ctx;
	nng_aio *aio;
	int r = nng_ctx_open(&ctx, a->sock);
	if (r != 0) {
		nng_msg_free(m);
		return kiln_err(ECONNABORTED, "bus: %s", nng_strerror(r));
	}
	if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
		nng_ctx_close(ctx);
		nng_msg_free(m);
		return -ENOMEM;
	}
	nng_aio_set_timeout(aio, (nng_duration)timeout_ms);
	nng_aio_set_msg(aio, m);
	/* registered so agent_free can cancel it; never started once the agent is stopping */
	pthread_mutex_lock(&a->mu);
	bool slot = !a->stopping && a->ninflight < KILN_ARRAY_SIZE(a->inflight);
	if (slot)
		a->inflight[a->ninflight++] = aio;
	if (slot && req->body_case == KILN__REQUEST__BODY_POLL)
		a->poll_aio = aio;
	pthread_mutex_unlock(&a->mu);
	if (!slot) {
		nng_msg_free(m);
		r = NNG_ECLOSED;
		goto out;
	}
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	if ((r = nng_aio_result(aio)) != 0) {
		nng_msg_free(nng_aio_get_msg(aio));
		goto unregister;
	}
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((r = nng_aio_result(aio)) != 0)
		goto unregister;
	m = nng_aio_get_msg(aio);
	*out = kiln__response__unpack(NULL, nng_msg_len(m), (const uint8_t *)nng_msg_body(m));
	nng_msg_free(m);
	if (!*out)
		r = NNG_EPROTO;
unregister:
	pthread_mutex_lock(&a->mu);
	if (a->poll_aio == aio)
		a->poll_aio = NULL;
	for (size_t i = 0; i < a->ninflight; i++) {
		if (a->inflight[i] == aio) {
			a->inflight[i] = a->inflight[--a->ninflight];
			break;
		}
	}
	pthread_mutex_unlock(&a->mu);
out:
	nng_aio_free(aio);
	nng_ctx_close(ctx);
	if (r == 0)
		return 0;
	return kiln_err(r == NNG_ETIMEDOUT ? ETIMEDOUT : r == NNG_ECLOSED ? ECANCELED : EIO,
			"bus: %s", nng_strerror(r));
}

int agent_call(agent *a, Kiln__Request *req, int64_t timeout_ms, Kiln__Response **resp)
{
	for (int tries = 0; tries < 2; tries++) {
		pthread_mutex_lock(&a->mu);
		_cleanup_free_ char *session = kiln_strdup(a->session ? a->session : "");
		pthread_mutex_unlock(&a->mu);
		req->session = session;
		Kiln__Response *r = NULL;
		int rc = call_once(a, req, timeout_ms, &r);
		req->session = NULL;
		if (rc < 0)
			return rc;
		if (r->status == KILN__STATUS__STATUS_UNAUTHORIZED &&
		    req->body_case != KILN__REQUEST__BODY_REGISTER) {
			kiln__response__free_unpacked(r, NULL);
			if ((rc = do_register(a)) < 0)
				return rc;
			continue;
		}
		*resp = r;
		return 0;
	}
	return kiln_err(EACCES, "the coordinator refused our session");
}

kiln_cas *agent_cas(agent *a)
{
	pthread_mutex_lock(&a->cas_mu);
	if (!a->cas) {
		_cleanup_free_ char *dir = kiln_asprintf("%s/cas", a->cas_root);
		if (kiln_mkdir_p(dir, 0750) == 0)
			kiln_cas_open(a->cas_root, NULL, &a->cas);
	}
	kiln_cas *cas = a->cas;
	pthread_mutex_unlock(&a->cas_mu);
	return cas;
}

int agent_call_expect(agent *a, Kiln__Request *req, int64_t timeout_ms,
		      Kiln__Response__BodyCase want, Kiln__Response **resp)
{
	int r = agent_call(a, req, timeout_ms, resp);
	if (r < 0)
		return r;
	if ((*resp)->status != KILN__STATUS__STATUS_OK || (*resp)->body_case != want) {
		r = kiln_err(EPROTO, "the coordinator refused: %s",
			     (*resp)->error && *(*resp)->error ? (*resp)->error : "no reason given");
		kiln__response__free_unpacked(*resp, NULL);
		*resp = NULL;
	}
	return r;
}

static int do_register(agent *a)
{
	Kiln__Register reg = KILN__REGISTER__INIT;
	pthread_mutex_lock(&a->mu);
	/* once we have our own token, the registration token is not used again */
	_cleanup_free_ char *token = kiln_strdup(a->agent_token ? a->agent_token
							: a->token ? a->token : "");
	pthread_mutex_unlock(&a->mu);
	reg.token = token;
	reg.name = a->name;
	reg.version = KILN_VERSION;
	pthread_mutex_lock(&a->mu);
	/* labels and capacity change on SIGHUP (agent_reconfigure): a copy under the lock */
	_cleanup_(kiln_strv_free) kiln_strv labels = {0};
	for (size_t i = 0; i < a->labels.n; i++)
		kiln_strv_push(&labels, a->labels.v[i]);
	reg.labels = labels.v;
	reg.n_labels = labels.n;
	reg.capacity = a->cfg.capacity;
	_cleanup_free_ char *id = kiln_strdup(a->agent_id ? a->agent_id : "");
	size_t n = 0;
	for (agent_job *j = a->jobs; j; j = j->next)
		n++;
	Kiln__RunningJob *rj = kiln_calloc(n ? n : 1, sizeof *rj);
	Kiln__RunningJob **rjp = kiln_calloc(n ? n : 1, sizeof *rjp);
	n = 0;
	for (agent_job *j = a->jobs; j; j = j->next) {
		kiln__running_job__init(&rj[n]);
		rj[n].job_id = j->job_id;
		rj[n].attempt = j->attempt;
		rjp[n] = &rj[n];
		n++;
	}
	pthread_mutex_unlock(&a->mu);
	reg.agent_id = id;
	reg.running = rjp;
	reg.n_running = n;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_REGISTER;
	req.register_ = &reg;
	req.session = "";
	_cleanup_(free_response) Kiln__Response *resp = NULL;
	int r = call_once(a, &req, CALL_TIMEOUT_MS, &resp);
	free(rj);
	free(rjp);
	const char *kind = strncmp(token, "kiln_g_", 7) == 0 ? "agent"
			   : *token			   ? "registration"
							   : "(missing)";
	explicit_bzero(token, strlen(token));
	if (r < 0)
		return r;
	if (resp->status != KILN__STATUS__STATUS_OK || resp->body_case != KILN__RESPONSE__BODY_REGISTER) {
		bool refused = resp->status == KILN__STATUS__STATUS_UNAUTHORIZED;
		pthread_mutex_lock(&a->mu);
		bool again = a->refused;
		a->refused = refused;
		if (refused) { /* no session until we are let in again */
			free(a->session);
			a->session = NULL;
		}
		pthread_mutex_unlock(&a->mu);
		if (refused && !again)
			kiln_log(KILN_LOG_ERR,
				 "the coordinator refused our %s token: %s; trying again every "
				 "minute (a revoked agent token stays refused: remove %s and "
				 "register with a registration token)",
				 kind,
				 resp->error, a->token_file);
		return kiln_err(EACCES, "registration refused: %s", resp->error);
	}
	const char *given = resp->register_->agent_token;
	if (given && *given) {
		/* ours from now on: kept 0600, read back when the agent starts again */
		if (kiln_write_file_atomic(a->token_file, given, strlen(given), 0600) < 0)
			kiln_log(KILN_LOG_ERR, "cannot keep the agent token: %s (registering again "
					       "after a restart needs the registration token)",
				 kiln_errmsg());
	}
	pthread_mutex_lock(&a->mu);
	a->refused = false;
	if (given && *given) {
		if (a->agent_token)
			explicit_bzero(a->agent_token, strlen(a->agent_token));
		free(a->agent_token);
		a->agent_token = kiln_strdup(given);
	}
	free(a->session);
	a->session = kiln_strdup(resp->register_->session);
	free(a->agent_id);
	a->agent_id = kiln_strdup(resp->register_->agent_id);
	a->poll_timeout_ms = resp->register_->poll_timeout_ms ? resp->register_->poll_timeout_ms : 25000;
	pthread_mutex_unlock(&a->mu);
	kiln_log(6, "registered as %s", resp->register_->agent_id);
	return 0;
}

static bool stopping(agent *a)
{
	pthread_mutex_lock(&a->mu);
	bool s = a->stopping;
	pthread_mutex_unlock(&a->mu);
	return s;
}

/* Waits up to ms unless the agent is stopping; returns true if it is. */
static bool backoff(agent *a, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&a->mu);
	if (!a->stopping)
		pthread_cond_timedwait(&a->cv, &a->mu, &ts);
	bool s = a->stopping;
	pthread_mutex_unlock(&a->mu);
	return s;
}

char *agent_slot_dir(const agent *a, int slot)
{
	return kiln_asprintf("%s/slots/%d", a->work_dir, slot);
}

/* Makes slot n's workspace and temp directories, empty. */
static int prepare_slot(agent *a, int n)
{
	_cleanup_free_ char *dir = agent_slot_dir(a, n);
	_cleanup_free_ char *ws = kiln_asprintf("%s/workspace", dir);
	_cleanup_free_ char *tmp = kiln_asprintf("%s/temp", dir);
	int r = kiln_clear_dir(ws, 0750);
	if (r == 0)
		r = kiln_clear_dir(tmp, 0700);
	return r;
}

/* A fresh spool file: the spare one if there is one (a->mu held). */
static agent_spool *take_spool(agent *a)
{
	agent_spool *s = a->spare;
	a->spare = NULL;
	pthread_cond_broadcast(&a->cv); /* the shipper makes the next spare */
	if (s)
		return s;
	_cleanup_free_ char *path = kiln_asprintf("%s/spool/%llu.log", a->work_dir,
						  (unsigned long long)++a->spool_seq);
	if (agent_spool_open(path, &s) < 0)
		return NULL;
	return s;
}

static void *job_main(void *arg)
{
	agent_job *j = arg;
	agent_job_run(j);
	agent *a = j->a;
	/* the store stays within its bound, oldest use first */
	pthread_mutex_lock(&a->cas_mu);
	kiln_cas *cas = a->cas;
	pthread_mutex_unlock(&a->cas_mu);
	if (cas && kiln_cas_evict(cas, a->cfg.cas_max_bytes) < 0)
		kiln_log(KILN_LOG_WARNING, "agent store: %s", kiln_errmsg());
	pthread_mutex_lock(&a->mu);
	j->done = true;
	a->running--;
	if (j->slot >= 0 && (size_t)j->slot < a->nslots)
		a->slot_busy[j->slot] = false;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static void start_job(agent *a, Kiln__JobAssignment *ja)
{
	pthread_mutex_lock(&a->mu);
	for (agent_job *j = a->jobs; j; j = j->next) {
		if (j->job_id == ja->job_id && j->attempt == ja->attempt) {
			pthread_mutex_unlock(&a->mu); /* a resent assignment: already running */
			kiln__job_assignment__free_unpacked(ja, NULL);
			return;
		}
	}
	pthread_mutex_unlock(&a->mu);
	agent_job *j = kiln_calloc(1, sizeof *j);
	j->a = a;
	j->job_id = ja->job_id;
	j->run_id = ja->run_id;
	j->attempt = ja->attempt;
	j->spec = ja;
	j->line_seq = 1;
	agent_cancel_new(&j->cancel);
	pthread_mutex_lock(&a->mu);
	j->spool = take_spool(a);
	j->slot = -1;
	for (size_t i = 0; i < a->nslots && j->slot < 0; i++)
		if (!a->slot_busy[i])
			j->slot = (int)i;
	if (j->slot < 0) { /* more than capacity for a moment: one more slot */
		a->slot_busy = kiln_realloc(a->slot_busy, (a->nslots + 1) * sizeof *a->slot_busy);
		j->slot = (int)a->nslots++;
	}
	a->slot_busy[j->slot] = true;
	pthread_mutex_unlock(&a->mu);
	if (!j->spool) {
		kiln_log(KILN_LOG_ERR, "run %llu job %llu: %s", (unsigned long long)j->run_id,
			 (unsigned long long)j->job_id, kiln_errmsg());
		agent_cancel_free(j->cancel);
		kiln__job_assignment__free_unpacked(ja, NULL);
		pthread_mutex_lock(&a->mu);
		a->slot_busy[j->slot] = false;
		pthread_mutex_unlock(&a->mu);
		free(j);
		return; /* not started: the coordinator retries it when it finds us not running it */
	}
	pthread_mutex_lock(&a->mu);
	j->next = a->jobs;
	a->jobs = j;
	a->running++;
	pthread_mutex_unlock(&a->mu);
	kiln_log(6, "run %llu job %llu attempt %u: %s",
		(unsigned long long)j->run_id, (unsigned long long)j->job_id, j->attempt, ja->name);
	if (pthread_create(&j->thread, NULL, job_main, j) != 0) {
		agent_job_update(j, -1, KILN__JOB_STATE__JOB_STATE_COMPLETED,
				 KILN__CONCLUSION__CONCLUSION_FAILURE, 0, kiln_now_ms(), -1,
				 "agent could not start a thread", true);
		pthread_mutex_lock(&a->mu);
		j->done = true;
		j->thread = 0;
		a->running--;
		pthread_mutex_unlock(&a->mu);
	}
}

static void cancel_job(agent *a, uint64_t job_id, uint32_t attempt)
{
	pthread_mutex_lock(&a->mu);
	for (agent_job *j = a->jobs; j; j = j->next)
		if (j->job_id == job_id && (!attempt || j->attempt == attempt))
			agent_cancel_fire(j->cancel);
	pthread_mutex_unlock(&a->mu);
}

static void *poll_main(void *arg)
{
	agent *a = arg;
	int64_t delay = 100;
	uint64_t seq = 1;
	while (!stopping(a)) {
		pthread_mutex_lock(&a->mu);
		bool registered = a->session != NULL;
		pthread_mutex_unlock(&a->mu);
		if (!registered && do_register(a) < 0) {
			pthread_mutex_lock(&a->mu);
			bool refused = a->refused;
			pthread_mutex_unlock(&a->mu);
			if (backoff(a, refused ? 60000 : delay))
				break;
			delay = delay < 2000 ? delay * 2 : 2000;
			continue;
		}
		Kiln__Poll p = KILN__POLL__INIT;
		pthread_mutex_lock(&a->mu);
		p.free_slots = a->running < (int)a->cfg.capacity ? a->cfg.capacity - (uint32_t)a->running : 0;
		p.draining = a->draining;
		if (a->draining)
			p.free_slots = 0;
		int64_t timeout = (int64_t)a->poll_timeout_ms + 15000;
		pthread_mutex_unlock(&a->mu);
		p.poll_seq = seq;
		Kiln__Request req = KILN__REQUEST__INIT;
		req.body_case = KILN__REQUEST__BODY_POLL;
		req.poll = &p;
		Kiln__Response *resp = NULL;
		if (agent_call(a, &req, timeout, &resp) < 0) {
			if (stopping(a) || backoff(a, delay))
				break;
			delay = delay < 2000 ? delay * 2 : 2000;
			continue; /* same seq: a reply we missed is given again */
		}
		delay = 100;
		seq++;
		if (resp->status == KILN__STATUS__STATUS_OK && resp->body_case == KILN__RESPONSE__BODY_POLL) {
			Kiln__PollReply *pr = resp->poll;
			if (pr->what_case == KILN__POLL_REPLY__WHAT_JOB) {
				Kiln__JobAssignment *ja = pr->job;
				pr->job = NULL;
				pr->what_case = KILN__POLL_REPLY__WHAT__NOT_SET;
				start_job(a, ja);
			} else if (pr->what_case == KILN__POLL_REPLY__WHAT_CANCEL) {
				cancel_job(a, pr->cancel->job_id, pr->cancel->attempt);
			}
		} else if (backoff(a, delay)) {
			kiln__response__free_unpacked(resp, NULL);
			break;
		}
		kiln__response__free_unpacked(resp, NULL);
	}
	pthread_mutex_lock(&a->mu);
	a->poll_done = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

void agent_job_line_buffered(agent_job *j, int stream, int32_t step, int64_t ts_ms,
			     const char *text, size_t len)
{
	kiln_logline_format(&j->lines, j->line_seq++, ts_ms, stream, step, text, len);
	if (j->lines.len >= FLUSH_BYTES)
		agent_job_flush(j);
}

void agent_job_flush(agent_job *j)
{
	if (!j->lines.len)
		return;
	agent *a = j->a;
	pthread_mutex_lock(&a->mu);
	if (!j->dropped &&
	    agent_spool_append_lines(j->spool, j->lines.p, j->lines.len, j->line_seq - 1) < 0)
		kiln_log(KILN_LOG_ERR, "job %llu: %s", (unsigned long long)j->job_id, kiln_errmsg());
	/* only a shipper waiting for lines is woken: not once per read while it is sending */
	if (a->ship_wants_lines) {
		a->ship_wants_lines = false;
		pthread_cond_broadcast(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	j->lines.len = 0;
}

void agent_job_line(agent_job *j, int stream, int32_t step, int64_t ts_ms, const char *text,
		    size_t len)
{
	agent_job_line_buffered(j, stream, step, ts_ms, text, len);
	agent_job_flush(j);
}

void agent_job_send(agent_job *j, Kiln__JobUpdate *u, bool last)
{
	agent_job_flush(j); /* the lines before it go first */
	u->job_id = j->job_id;
	u->attempt = j->attempt;
	out_update *o = kiln_calloc(1, sizeof *o);
	o->len = kiln__job_update__get_packed_size(u);
	o->packed = kiln_malloc(o->len ? o->len : 1);
	kiln__job_update__pack(u, o->packed);
	o->last = last;
	o->step = u->step_index;
	o->state = u->state;
	agent *a = j->a;
	pthread_mutex_lock(&a->mu);
	if (j->updates_tail)
		j->updates_tail->next = o;
	else
		j->updates = o;
	j->updates_tail = o;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

void agent_job_update(agent_job *j, int32_t step, Kiln__JobState state, Kiln__Conclusion concl,
		      int64_t started_ms, int64_t finished_ms, int exit_code, const char *message,
		      bool last)
{
	Kiln__JobUpdate u = KILN__JOB_UPDATE__INIT;
	u.step_index = step;
	u.state = state;
	u.conclusion = concl;
	u.started_ms = started_ms;
	u.finished_ms = finished_ms;
	u.exit_code = exit_code;
	u.message = (char *)(message ? message : "");
	agent_job_send(j, &u, last);
}

/* ---- log batches, several in flight ---- */

static void unregister_aio(agent *a, nng_aio *aio)
{
	for (size_t i = 0; i < a->ninflight; i++) {
		if (a->inflight[i] == aio) {
			a->inflight[i] = a->inflight[--a->ninflight];
			break;
		}
	}
}

/* An nng callback: the LogAppend went out (then wait for the answer), or it is answered or
   failed (then the shipper settles it). */
static void flight_cb(void *arg)
{
	log_flight *f = arg;
	agent *a = f->a;
	int rc = nng_aio_result(f->aio);
	if (rc == 0 && !f->receiving) {
		f->receiving = true;
		nng_ctx_recv(f->ctx, f->aio);
		return;
	}
	Kiln__Response *resp = NULL;
	if (rc == 0) {
		nng_msg *m = nng_aio_get_msg(f->aio);
		resp = kiln__response__unpack(NULL, nng_msg_len(m), (const uint8_t *)nng_msg_body(m));
		nng_msg_free(m);
		if (!resp)
			rc = NNG_EPROTO;
	} else if (!f->receiving) {
		nng_msg_free(nng_aio_get_msg(f->aio));
	}
	pthread_mutex_lock(&a->mu);
	f->rc = rc;
	f->resp = resp;
	f->done = true;
	unregister_aio(a, f->aio);
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* Sends j's next batch of lines on the free flight f; a->mu held (released to send).
   Returns 1 when a batch went out, 0 when none could, or a negative errno. */
static int flight_start(agent *a, log_flight *f, agent_job *j)
{
	if (!f->ready) {
		if (nng_ctx_open(&f->ctx, a->sock) != 0)
			return 0;
		if (nng_aio_alloc(&f->aio, flight_cb, f) != 0) {
			nng_ctx_close(f->ctx);
			return 0;
		}
		f->a = a;
		f->ready = true;
	}
	f->buf.len = 0;
	uint64_t first = 0, last = 0;
	int64_t n = agent_spool_take(j->spool, BATCH_BYTES, &f->buf, &first, &last);
	if (n <= 0)
		return (int)n;
	Kiln__LogAppend la = KILN__LOG_APPEND__INIT;
	la.job_id = j->job_id;
	la.attempt = j->attempt;
	la.first_seq = first;
	la.lines.data = (uint8_t *)f->buf.p;
	la.lines.len = f->buf.len;
	Kiln__Request req = KILN__REQUEST__INIT;
	req.version = KILN__PROTOCOL_VERSION__PROTOCOL_CURRENT;
	req.session = a->session ? a->session : "";
	req.body_case = KILN__REQUEST__BODY_LOG_APPEND;
	req.log_append = &la;
	nng_msg *m;
	if (nng_msg_alloc(&m, kiln__request__get_packed_size(&req)) != 0) {
		agent_spool_rewind(j->spool);
		return 0;
	}
	kiln__request__pack(&req, (uint8_t *)nng_msg_body(m));
	if (a->ninflight == KILN_ARRAY_SIZE(a->inflight)) {
		nng_msg_free(m);
		agent_spool_rewind(j->spool);
		return 0;
	}
	a->inflight[a->ninflight++] = f->aio;
	f->j = j;
	f->last_seq = last;
	f->receiving = f->done = false;
	f->rc = 0;
	f->resp = NULL;
	j->flying++;
	nng_aio_set_timeout(f->aio, CALL_TIMEOUT_MS);
	nng_aio_set_msg(f->aio, m);
	pthread_mutex_unlock(&a->mu);
	nng_ctx_send(f->ctx, f->aio);
	pthread_mutex_lock(&a->mu);
	return 1;
}

/* Acts on an answered (or failed) flight; a->mu held. Returns a negative errno when the
   coordinator could not be reached (back off), else 0. */
static int flight_settle(agent *a, log_flight *f)
{
	agent_job *j = f->j;
	Kiln__Response *resp = f->resp;
	int r = 0;
	if (f->rc != 0) {
		r = -EAGAIN;
		j->rewind = true;
	} else if (resp->status == KILN__STATUS__STATUS_OK &&
		   resp->body_case == KILN__RESPONSE__BODY_LOG_APPEND) {
		uint64_t through = resp->log_append->stored_through;
		if (agent_spool_ack(j->spool, through) < 0) {
			kiln_log(KILN_LOG_ERR, "job %llu: %s", (unsigned long long)j->job_id,
				 kiln_errmsg());
			agent_spool_clear(j->spool); /* unreadable: never retry it forever */
		}
		if (through < f->last_seq)
			j->rewind = true; /* a gap (batches overtook each other): send again */
	} else if (resp->status == KILN__STATUS__STATUS_NOT_FOUND ||
		   resp->status == KILN__STATUS__STATUS_BAD_REQUEST) {
		if (resp->error && *resp->error)
			kiln_log(KILN_LOG_ERR, "job %llu: log refused: %s",
				 (unsigned long long)j->job_id, resp->error);
		j->dropped = true; /* the coordinator will never take these */
	} else {
		if (resp->status == KILN__STATUS__STATUS_UNAUTHORIZED)
			a->need_register = true;
		r = -EAGAIN;
		j->rewind = true;
	}
	if (resp)
		kiln__response__free_unpacked(resp, NULL);
	f->resp = NULL;
	f->j = NULL;
	f->done = false;
	if (--j->flying == 0 && j->rewind) {
		agent_spool_rewind(j->spool);
		j->rewind = false;
	}
	return r;
}

/* A step's "running" that its "completed" has caught up with in the queue says nothing the
   latter does not (it carries the start time too): one message less for a short step. */
static void coalesce_updates(agent_job *j)
{
	while (j->updates && j->updates->state == KILN__JOB_STATE__JOB_STATE_RUNNING &&
	       j->updates->step >= 0) {
		out_update *o = j->updates, *later = o->next;
		while (later && !(later->step == o->step &&
				  later->state == KILN__JOB_STATE__JOB_STATE_COMPLETED))
			later = later->next;
		if (!later)
			return;
		j->updates = o->next;
		if (!j->updates)
			j->updates_tail = NULL;
		free(o->packed);
		free(o);
	}
}

/* Sends j's first update; a->mu held on entry and exit. */
static int ship_update(agent *a, agent_job *j)
{
	coalesce_updates(j);
	out_update *o = j->updates;
	pthread_mutex_unlock(&a->mu);
	Kiln__JobUpdate *u = kiln__job_update__unpack(NULL, o->len, o->packed);
	Kiln__Request req = KILN__REQUEST__INIT;
	req.body_case = KILN__REQUEST__BODY_JOB_UPDATE;
	req.job_update = u;
	Kiln__Response *resp = NULL;
	int r = agent_call(a, &req, CALL_TIMEOUT_MS, &resp);
	kiln__job_update__free_unpacked(u, NULL);
	pthread_mutex_lock(&a->mu);
	if (r < 0)
		return r;
	if (resp->status == KILN__STATUS__STATUS_OK) {
		if (resp->body_case == KILN__RESPONSE__BODY_JOB_UPDATE && resp->job_update->cancel)
			agent_cancel_fire(j->cancel);
	} else if (resp->status == KILN__STATUS__STATUS_STALE ||
		   resp->status == KILN__STATUS__STATUS_NOT_FOUND) {
		j->dropped = true;
		agent_cancel_fire(j->cancel);
	} else {
		r = -EAGAIN;
	}
	kiln__response__free_unpacked(resp, NULL);
	if (r == 0 || j->dropped) {
		j->updates = o->next;
		if (!j->updates)
			j->updates_tail = NULL;
		free(o->packed);
		free(o);
	}
	return r;
}

static void job_free(agent_job *j)
{
	agent_spool_free(j->spool);
	kiln_buf_free(&j->lines);
	while (j->updates) {
		out_update *o = j->updates;
		j->updates = o->next;
		free(o->packed);
		free(o);
	}
	agent_cancel_free(j->cancel);
	if (j->spec)
		kiln__job_assignment__free_unpacked(j->spec, NULL);
	free(j);
}

static void *ship_main(void *arg)
{
	agent *a = arg;
	int64_t delay = 100;
	pthread_mutex_lock(&a->mu);
	for (;;) {
		bool worked = false, failed = false;
		for (size_t i = 0; i < LOG_FLIGHTS; i++) {
			if (a->flights[i].j && a->flights[i].done) {
				if (flight_settle(a, &a->flights[i]) < 0)
					failed = true;
				worked = true;
			}
		}
		if (a->need_register && !a->stopping) {
			a->need_register = false;
			pthread_mutex_unlock(&a->mu);
			int r = do_register(a);
			pthread_mutex_lock(&a->mu);
			if (r < 0)
				failed = true;
		}
		bool flights_free = true;
		for (agent_job **pp = &a->jobs; *pp;) {
			agent_job *j = *pp;
			int r = 0;
			if (j->dropped) {
				agent_spool_clear(j->spool);
				while (j->updates) {
					out_update *o = j->updates;
					j->updates = o->next;
					free(o->packed);
					free(o);
				}
				j->updates_tail = NULL;
			}
			/* step updates go in turn with lines; the job's result only after every line */
			if (j->updates && !j->updates->last) {
				r = ship_update(a, j);
				worked = true;
			}
			while (r == 0 && !failed && !j->rewind && !j->dropped &&
			       agent_spool_unsent(j->spool)) {
				log_flight *f = NULL;
				for (size_t i = 0; i < LOG_FLIGHTS && !f; i++)
					if (!a->flights[i].j)
						f = &a->flights[i];
				if (!f) {
					flights_free = false;
					break;
				}
				r = flight_start(a, f, j);
				if (r <= 0) {
					if (r < 0) {
						kiln_log(KILN_LOG_ERR, "job %llu: %s",
							 (unsigned long long)j->job_id, kiln_errmsg());
						agent_spool_clear(j->spool);
					}
					break;
				}
				r = 0;
				worked = true;
			}
			if (r == 0 && j->updates && j->updates->last && !agent_spool_pending(j->spool) &&
			    !j->flying) {
				r = ship_update(a, j);
				worked = true;
			}
			if (r < 0)
				failed = true;
			if (j->done && !agent_spool_pending(j->spool) && !j->updates && !j->flying) {
				/* the lock was dropped while sending: unlink by search, then rescan */
				for (agent_job **q = &a->jobs; *q; q = &(*q)->next) {
					if (*q == j) {
						*q = j->next;
						break;
					}
				}
				pthread_t t = j->thread;
				pthread_mutex_unlock(&a->mu);
				if (t)
					pthread_join(t, NULL);
				job_free(j);
				pthread_mutex_lock(&a->mu);
				pthread_cond_broadcast(&a->cv);
				pp = &a->jobs;
				continue;
			}
			pp = &j->next;
		}
		if (a->stopping && (!a->jobs || failed || a->hard_stop))
			break;
		if (failed) {
			pthread_mutex_unlock(&a->mu);
			bool s = backoff(a, delay);
			pthread_mutex_lock(&a->mu);
			delay = delay < 2000 ? delay * 2 : 2000;
			if (s && !a->jobs)
				break;
			continue;
		}
		delay = 100;
		if (!a->spare && !a->stopping) {
			_cleanup_free_ char *path = kiln_asprintf(
				"%s/spool/%llu.log", a->work_dir, (unsigned long long)++a->spool_seq);
			pthread_mutex_unlock(&a->mu);
			agent_spool *sp = NULL;
			agent_spool_open(path, &sp);
			pthread_mutex_lock(&a->mu);
			if (!a->spare)
				a->spare = sp;
			else
				agent_spool_free(sp);
			continue;
		}
		if (!worked) {
			a->ship_wants_lines = flights_free;
			pthread_cond_wait(&a->cv, &a->mu);
			a->ship_wants_lines = false;
		}
	}
	/* the flights still out end (agent_free cancels them when it stops for good) */
	for (;;) {
		bool out = false;
		for (size_t i = 0; i < LOG_FLIGHTS; i++) {
			if (a->flights[i].j && a->flights[i].done)
				flight_settle(a, &a->flights[i]);
			out = out || a->flights[i].j;
		}
		if (!out)
			break;
		pthread_cond_wait(&a->cv, &a->mu);
	}
	a->ship_done = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	for (size_t i = 0; i < LOG_FLIGHTS; i++) {
		log_flight *f = &a->flights[i];
		if (f->ready) {
			nng_aio_free(f->aio);
			nng_ctx_close(f->ctx);
		}
		kiln_buf_free(&f->buf);
	}
	return NULL;
}

/* Removes the tmpfs directories of agents that died without cleaning up (kill -9): each is
   named kiln-agent.<pid>.XXXXXX, and a pid with no process is gone for good. */
static void sweep_shm(void)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int pid = 0;
		char rest[32];
		if (sscanf(de->d_name, "kiln-agent.%d.%31s", &pid, rest) != 2 || pid <= 0)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		_cleanup_free_ char *p = kiln_asprintf("/dev/shm/%s", de->d_name);
		kiln_rm_rf(p);
	}
	closedir(d);
}

int agent_start(const agent_config *cfg, agent **out)
{
	agent *a = kiln_calloc(1, sizeof *a);
	a->cfg = *cfg;
	if (!a->cfg.capacity)
		a->cfg.capacity = 1;
	a->coordinator = kiln_strdup(cfg->coordinator);
	char host[256] = "agent";
	gethostname(host, sizeof host - 1);
	a->name = kiln_strdup(cfg->name && *cfg->name ? cfg->name : host);
	a->work_dir = kiln_strdup(cfg->work_dir);
	a->token = kiln_strdup(cfg->token);
	a->token_file = cfg->token_file && *cfg->token_file
				? kiln_strdup(cfg->token_file)
				: kiln_asprintf("%s/agent.token", cfg->work_dir);
	{
		char *text = NULL;
		size_t len = 0;
		if (kiln_read_file(a->token_file, 4096, &text, &len) == 0) {
			while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
				text[--len] = '\0';
			if (len)
				a->agent_token = kiln_strdup(text);
			explicit_bzero(text, len);
		}
		free(text);
	}
	a->cfg.action_source = kiln_strdup(cfg->action_source);
	kiln_strv_split(&a->labels, cfg->labels ? cfg->labels : "", ",");
	a->cfg.coordinator = a->coordinator;
	a->cfg.name = a->name;
	a->cfg.work_dir = a->work_dir;
	a->cfg.token = a->token;
	a->cfg.token_file = a->token_file;
	a->cfg.labels = NULL;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	_cleanup_free_ char *spool = kiln_asprintf("%s/spool", a->work_dir);
	int r = kiln_clear_dir(spool, 0750);
	if (r < 0)
		goto fail;
	/* the store is opened on first use (agent_cas): an idle agent keeps SQLite unloaded */
	a->cas_root = kiln_strdup(cfg->cas_dir && *cfg->cas_dir ? cfg->cas_dir : a->work_dir);
	pthread_mutex_init(&a->cas_mu, NULL);
	a->cfg.cas_dir = NULL;
	if (!a->cfg.cas_max_bytes)
		a->cfg.cas_max_bytes = 10ull << 30;
	a->nslots = a->cfg.capacity;
	a->slot_busy = kiln_calloc(a->nslots, sizeof *a->slot_busy);
	for (size_t i = 0; i < a->nslots; i++)
		if ((r = prepare_slot(a, (int)i)) < 0)
			goto fail;
	/* scripts on tmpfs when there is one: creating a file there costs microseconds */
	if (access("/dev/shm", W_OK) == 0) {
		sweep_shm();
		_cleanup_free_ char *prefix = kiln_asprintf("kiln-agent.%d", (int)getpid());
		if (kiln_mkdtemp_in("/dev/shm", prefix, &a->script_dir) < 0)
			a->script_dir = NULL;
	}
	if ((r = nng_req0_open(&a->sock)) != 0) {
		r = kiln_err(EIO, "bus: %s", nng_strerror(r));
		goto fail;
	}
	nng_socket_set_ms(a->sock, NNG_OPT_RECONNMINT, 50);
	nng_socket_set_ms(a->sock, NNG_OPT_RECONNMAXT, 2000);
	nng_socket_set_ms(a->sock, NNG_OPT_REQ_RESENDTIME, 60000);
	nng_socket_set_size(a->sock, NNG_OPT_RECVMAXSZ, 64u << 20);
	if ((r = agent_dial_start(a->sock, &a->cfg, &a->dialer, &a->dial)) < 0)
		goto fail;
	if (pthread_create(&a->ship_thread, NULL, ship_main, a) != 0) {
		r = kiln_err(EAGAIN, "cannot start a thread");
		goto fail;
	}
	a->ship_started = true;
	if (pthread_create(&a->poll_thread, NULL, poll_main, a) != 0) {
		r = kiln_err(EAGAIN, "cannot start a thread");
		goto fail;
	}
	a->poll_started = true;
	*out = a;
	return 0;
fail:
	agent_free(a);
	return r;
}

int agent_running(agent *a)
{
	pthread_mutex_lock(&a->mu);
	int n = a->running;
	pthread_mutex_unlock(&a->mu);
	return n;
}

void agent_free(agent *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->mu);
	a->stopping = true;
	for (agent_job *j = a->jobs; j; j = j->next)
		agent_cancel_fire(j->cancel);
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	/* let cancelled jobs end and the shipper deliver their last lines and results (for a
	   while: the coordinator may be gone), then close the socket, which ends a held poll */
	if (a->ship_started) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 10;
		pthread_mutex_lock(&a->mu);
		/* (a coordinator that refuses us will take nothing: no waiting for it) */
		while (a->jobs && !a->refused && pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0)
			;
		pthread_mutex_unlock(&a->mu);
	}
	/* end the calls in flight (a held poll, a send to a coordinator that is away) until both
	   threads are out of their loops; only then close the socket, which nobody uses any more
	   (closing it under a thread inside nng_ctx_send is a race in nng) */
	pthread_mutex_lock(&a->mu);
	a->hard_stop = true;
	while ((a->poll_started && !a->poll_done) || (a->ship_started && !a->ship_done)) {
		for (size_t i = 0; i < a->ninflight; i++)
			nng_aio_cancel(a->inflight[i]);
		pthread_cond_broadcast(&a->cv);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&a->cv, &a->mu, &ts);
	}
	pthread_mutex_unlock(&a->mu);
	if (a->poll_started)
		pthread_join(a->poll_thread, NULL);
	if (a->ship_started)
		pthread_join(a->ship_thread, NULL);
	nng_close(a->sock);
	agent_dial_free(a->dial);
	while (a->jobs) {
		agent_job *j = a->jobs;
		a->jobs = j->next;
		if (j->thread)
			pthread_join(j->thread, NULL);
		job_free(j);
	}
	agent_spool_free(a->spare);
	kiln_cas_close(a->cas);
	if (a->cas_root) /* made with cas_mu */
		pthread_mutex_destroy(&a->cas_mu);
	free(a->cas_root);
	if (a->script_dir)
		kiln_rm_rf(a->script_dir);
	free(a->script_dir);
	free(a->slot_busy);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	kiln_strv_free(&a->labels);
	free(a->coordinator);
	free(a->name);
	free(a->work_dir);
	free(a->token);
	free(a->token_file);
	if (a->agent_token)
		explicit_bzero(a->agent_token, strlen(a->agent_token));
	free(a->agent_token);
	free((char *)a->cfg.action_source);
	free(a->session);
	free(a->agent_id);
	free(a);
}

/* ---- operations: one-shot registration, draining on SIGTERM, reloading on SIGHUP */

int agent_drain(agent *a, int64_t timeout_ms, bool cancel)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&a->mu);
	a->draining = true;
	/* the held Poll said we take jobs: end it, so that the next one says we do not (a job
	   the coordinator gave it meanwhile comes again with the same poll_seq, and runs) */
	if (a->poll_aio)
		nng_aio_cancel(a->poll_aio);
	if (cancel)
		for (agent_job *j = a->jobs; j; j = j->next)
			agent_cancel_fire(j->cancel);
	pthread_cond_broadcast(&a->cv);
	/* a job leaves the list once it has ended and the shipper has delivered its lines and
	   result (agent_free sends nothing new: this is where the spool is flushed) */
	int n = 0;
	for (;;) {
		n = 0;
		for (agent_job *j = a->jobs; j; j = j->next)
			n++;
		/* (a coordinator that refuses our token will take none of it) */
		if (!n || a->refused || pthread_cond_timedwait(&a->cv, &a->mu, &ts) != 0)
			break;
	}
	pthread_mutex_unlock(&a->mu);
	return n;
}

int agent_reconfigure(agent *a, const char *labels, uint32_t capacity)
{
	if (capacity < 1 || capacity > 256)
		return kiln_err(EINVAL, "bad capacity %u (1 to 256)", capacity);
	_cleanup_(kiln_strv_free) kiln_strv l = {0};
	kiln_strv_split(&l, labels ? labels : "", ",");
	pthread_mutex_lock(&a->mu);
	bool same = capacity == a->cfg.capacity && l.n == a->labels.n;
	for (size_t i = 0; same && i < l.n; i++)
		same = strcmp(l.v[i], a->labels.v[i]) == 0;
	if (!same) {
		kiln_strv_free(&a->labels);
		a->labels = l;
		memset(&l, 0, sizeof l);
		a->cfg.capacity = capacity;
		a->need_register = true; /* the shipper registers again, with our agent token */
		pthread_cond_broadcast(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	return same ? 0 : 1;
}

int agent_register(const agent_config *cfg, int64_t timeout_ms, char **agent_id)
{
	agent *a = kiln_calloc(1, sizeof *a);
	a->cfg = *cfg;
	if (!a->cfg.capacity)
		a->cfg.capacity = 1;
	a->coordinator = kiln_strdup(cfg->coordinator);
	char host[256] = "agent";
	gethostname(host, sizeof host - 1);
	a->name = kiln_strdup(cfg->name && *cfg->name ? cfg->name : host);
	a->work_dir = kiln_strdup(cfg->work_dir);
	a->token = kiln_strdup(cfg->token);
	a->token_file = cfg->token_file && *cfg->token_file
				? kiln_strdup(cfg->token_file)
				: kiln_asprintf("%s/agent.token", cfg->work_dir);
	kiln_strv_split(&a->labels, cfg->labels ? cfg->labels : "", ",");
	a->cfg.coordinator = a->coordinator;
	a->cfg.name = a->name;
	a->cfg.work_dir = a->work_dir;
	a->cfg.token = a->token;
	a->cfg.token_file = a->token_file;
	a->cfg.labels = NULL;
	a->cfg.action_source = NULL;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	int r = nng_req0_open(&a->sock);
	if (r != 0) {
		r = kiln_err(EIO, "bus: %s", nng_strerror(r));
		goto out;
	}
	nng_socket_set_ms(a->sock, NNG_OPT_RECONNMINT, 50);
	nng_socket_set_ms(a->sock, NNG_OPT_RECONNMAXT, 1000);
	if ((r = agent_dial_start(a->sock, &a->cfg, &a->dialer, &a->dial)) < 0)
		goto out;
	int64_t end = kiln_mono_ns() + timeout_ms * 1000000;
	for (;;) {
		if ((r = do_register(a)) == 0 || a->refused || kiln_mono_ns() >= end)
			break;
		struct timespec ts = {0, 200 * 1000000};
		nanosleep(&ts, NULL);
	}
	if (r < 0)
		goto out;
	if (!a->agent_token) {
		r = kiln_err(EPROTO, "the coordinator gave no agent token");
		goto out;
	}
	/* do_register only logs a failed write: here it is the whole point */
	_cleanup_free_ char *kept = NULL;
	size_t len = 0;
	if (kiln_read_file(a->token_file, 4096, &kept, &len) < 0 ||
	    strcmp(kept, a->agent_token) != 0) {
		r = kiln_err(EIO, "cannot keep the agent token in %s", a->token_file);
		goto out;
	}
	explicit_bzero(kept, len);
	if (agent_id)
		*agent_id = kiln_strdup(a->agent_id);
out:
	agent_free(a);
	return r;
}
