/*
 * core — the coordinator's event loop. One thread owns the SQLite connection
 * and the scheduler; everything else reaches it through core_post(). The loop
 * runs queued closures in order, and once a second (or at the earliest
 * deadline) ticks the scheduler and expires long polls. No state is shared
 * under locks: the mutex guards only the queue itself.
 */
#include "coordinator/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct coord_event {
	core_fn fn;
	void *arg;
	coord_event *next;
};

void core_post(coord *c, core_fn fn, void *arg)
{
	coord_event *e = kiln_malloc(sizeof *e);
	e->fn = fn;
	e->arg = arg;
	e->next = NULL;
	pthread_mutex_lock(&c->mu);
	if (c->tail)
		c->tail->next = e;
	else
		c->head = e;
	c->tail = e;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void sync_flag_set(sync_flag *f)
{
	pthread_mutex_lock(&f->mu);
	f->done = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

void sync_flag_wait(sync_flag *f)
{
	pthread_mutex_lock(&f->mu);
	while (!f->done)
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
}

static void *core_main(void *arg)
{
	coord *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->head) {
			coord_event *e = c->head;
			c->head = e->next;
			if (!c->head)
				c->tail = NULL;
			pthread_mutex_unlock(&c->mu);
			e->fn(c, e->arg);
			free(e);
			pthread_mutex_lock(&c->mu);
		}
		if (c->stopping && c->planners == 0)
			break;
		int64_t now = kiln_now_ms();
		if (now >= c->next_tick_ms) {
			pthread_mutex_unlock(&c->mu);
			sched_tick(c, now);
			triggers_tick(c, now);
			api_expire(c, now, false);
			int64_t next = sched_next_deadline(c, kiln_now_ms());
			pthread_mutex_lock(&c->mu);
			c->next_tick_ms = next;
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t wait_ms = c->next_tick_ms - now;
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (wait_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (!c->head)
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* The daily garbage-collection pass, on its own thread and connections. */
static void *gc_main(void *arg)
{
	coord *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t ns = (int64_t)ts.tv_nsec + (c->cfg.gc_interval_ms % 1000) * 1000000;
		ts.tv_sec += (time_t)(c->cfg.gc_interval_ms / 1000) + (time_t)(ns / 1000000000);
		ts.tv_nsec = (long)(ns % 1000000000);
		while (!c->gc_stop && pthread_cond_timedwait(&c->gc_cv, &c->mu, &ts) == 0)
			;
		if (c->gc_stop)
			break;
		pthread_mutex_unlock(&c->mu);
		coord_gc_stats st;
		if (coord_gc(&c->cfg, kiln_now_ms(), 3600 * 1000, &st) < 0)
			kiln_log(KILN_LOG_ERR, "%s", kiln_errmsg());
		else
			kiln_log(KILN_LOG_INFO,
				 "gc: %llu cache entries and %llu artifacts expired, %llu blobs "
				 "(%llu bytes) removed, %llu blobs kept",
				 (unsigned long long)(st.caches_idle + st.caches_over_quota),
				 (unsigned long long)st.artifacts_expired,
				 (unsigned long long)st.blobs_removed,
				 (unsigned long long)st.bytes_removed,
				 (unsigned long long)st.blobs_kept);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

void coord_config_defaults(coord_config *cfg)
{
	coord_config def = COORD_CONFIG_INIT;
	if (cfg->poll_timeout_ms <= 0)
		cfg->poll_timeout_ms = def.poll_timeout_ms;
	if (cfg->lost_after_ms <= 0)
		cfg->lost_after_ms = def.lost_after_ms;
	if (cfg->retries < 0)
		cfg->retries = 0;
	if (!cfg->max_message)
		cfg->max_message = 4u << 20;
	if (!cfg->max_body)
		cfg->max_body = 25u << 20;
	if (!cfg->max_log_bytes)
		cfg->max_log_bytes = 64u << 20;
	if (!cfg->cache_quota)
		cfg->cache_quota = 10ull << 30;
	if (cfg->cache_max_idle_ms <= 0)
		cfg->cache_max_idle_ms = 7ll * 24 * 3600 * 1000;
	if (cfg->artifact_retention_days <= 0)
		cfg->artifact_retention_days = 90;
	if (cfg->gc_interval_ms <= 0)
		cfg->gc_interval_ms = 24ll * 3600 * 1000;
}

int coord_start(const coord_config *cfg, coord **out)
{
	coord *c = kiln_calloc(1, sizeof *c);
	c->cfg = *cfg;
	coord_config_defaults(&c->cfg);
	c->cas_dir = kiln_strdup(cfg->cas_dir && *cfg->cas_dir ? cfg->cas_dir : cfg->data_dir);
	c->cfg.cas_dir = c->cas_dir;
	c->cache_db = cfg->cache_db ? kiln_strdup(cfg->cache_db) : NULL;
	c->cfg.cache_db = c->cache_db;
	c->default_branch = kiln_strdup(cfg->default_branch && *cfg->default_branch
						? cfg->default_branch
						: "main");
	c->cfg.default_branch = c->default_branch;
	c->data_dir = kiln_strdup(cfg->data_dir);
	c->cfg.data_dir = c->data_dir;
	c->cfg.listen = c->cfg.http = NULL;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	pthread_cond_init(&c->idle_cv, NULL);

	_cleanup_free_ char *logs = kiln_asprintf("%s/logs", c->data_dir);
	int r = kiln_mkdir_p(logs, 0750);
	if (r < 0)
		goto fail;
	r = secrets_key_load(c->data_dir, &c->key);
	if (r < 0)
		goto fail;
	r = store_open(c);
	if (r < 0)
		goto fail;
	sched_load(c);
	r = blobs_start(c);
	if (r < 0)
		goto fail;
	if ((r = forge_start(c)) < 0 || (r = metrics_start(c)) < 0)
		goto fail;
	/* the listeners come up before the core thread, which is then the only user of state */
	c->bus_url = kiln_strdup(cfg->listen);
	r = bus_start(c);
	if (r < 0)
		goto fail;
	if (cfg->http) {
		c->http_url = kiln_strdup(cfg->http);
		r = http_start(c);
		if (r < 0)
			goto fail;
	}
	if (pthread_create(&c->core_thread, NULL, core_main, c) != 0) {
		r = kiln_err(EAGAIN, "cannot start the core thread");
		goto fail;
	}
	c->core_running = true;
	pthread_cond_init(&c->gc_cv, NULL);
	if (pthread_create(&c->gc_thread, NULL, gc_main, c) == 0)
		c->gc_running = true;
	*out = c;
	return 0;
fail:
	coord_free(c);
	return r;
}

static void drain_on_core(coord *c, void *arg)
{
	sync_flag *f = arg;
	c->draining = true;
	api_expire(c, 0, true);
	sync_flag_set(f);
}

static void stop_on_core(coord *c, void *arg)
{
	(void)arg;
	sched_shutdown(c);
}

void coord_free(coord *c)
{
	if (!c)
		return;
	/* 1. answer the long polls and take none; 2. close HTTP and the bus, so nothing new is
	   posted; 3. let the core thread run what is queued and end; 4. free. */
	if (c->core_running) {
		sync_flag f = SYNC_FLAG_INIT;
		core_post(c, drain_on_core, &f);
		sync_flag_wait(&f);
		pthread_mutex_lock(&c->mu);
		while (c->planners > 0)
			pthread_cond_wait(&c->idle_cv, &c->mu);
		pthread_mutex_unlock(&c->mu);
	}
	if (c->gc_running) {
		pthread_mutex_lock(&c->mu);
		c->gc_stop = true;
		pthread_cond_signal(&c->gc_cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->gc_thread, NULL);
		pthread_cond_destroy(&c->gc_cv);
	}
	http_stop(c);
	bus_close(c);
	blobs_stop(c); /* what it finishes may still post to the core thread */
	forge_stop(c); /* likewise */
	if (c->core_running) {
		core_post(c, stop_on_core, NULL);
		pthread_mutex_lock(&c->mu);
		c->stopping = true;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->core_thread, NULL);
	}
	forge_free(c);
	metrics_stop(c);
	bus_free(c);
	blobs_free(c);
	while (c->logs) {
		open_log *l = c->logs;
		c->logs = l->next;
		logfile_close(l->f);
		runlog_close(l->r);
		free(l);
	}
	while (c->agents) {
		coord_agent *a = c->agents;
		c->agents = a->next;
		free(a->id);
		free(a->name);
		free(a->session_digest);
		kiln_strv_free(&a->labels);
		free(a);
	}
	triggers_free(c);
	store_close(c);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->idle_cv);
	free(c->data_dir);
	free(c->cas_dir);
	free(c->cache_db);
	free(c->default_branch);
	free(c->bus_url);
	free(c->http_url);
	free(c);
}

const char *coord_bus_url(const coord *c)
{
	return c->bus_url;
}

const char *coord_http_url(const coord *c)
{
	return c->http_url;
}

typedef struct api_call {
	char *method, *path, *query, *body;
	size_t body_len;
	kiln_strv headers; /* name/value pairs */
	bool trusted;
	coord_reply_fn reply;
	void *arg;
} api_call;

static void api_on_core(coord *c, void *arg)
{
	api_call *a = arg;
	api_req r = {.c = c, .method = a->method, .path = a->path, .query = a->query,
		     .body = a->body, .body_len = a->body_len,
		     .headers = (const char *const *)a->headers.v,
		     .trusted = a->trusted, .reply = a->reply, .arg = a->arg};
	api_serve(&r);
	free(a->method);
	free(a->path);
	free(a->query);
	free(a->body);
	kiln_strv_free(&a->headers);
	free(a);
}

static void post_call(coord *c, const char *method, const char *path, const char *query,
		      const char *const *headers, bool trusted, const char *body, size_t body_len,
		      coord_reply_fn reply, void *arg)
{
	api_call *a = kiln_calloc(1, sizeof *a);
	a->method = kiln_strdup(method);
	a->path = kiln_strdup(path);
	a->query = kiln_strdup(query ? query : "");
	if (body) {
		a->body = kiln_malloc(body_len + 1);
		memcpy(a->body, body, body_len);
		a->body[body_len] = '\0';
		a->body_len = body_len;
	}
	for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2) {
		kiln_strv_push(&a->headers, headers[i]);
		kiln_strv_push(&a->headers, headers[i + 1]);
	}
	a->trusted = trusted;
	a->reply = reply;
	a->arg = arg;
	core_post(c, api_on_core, a);
}

void coord_api(coord *c, const char *method, const char *path, const char *query,
	       const char *body, size_t body_len, coord_reply_fn reply, void *arg)
{
	post_call(c, method, path, query, NULL, true, body, body_len, reply, arg);
}

void coord_api_http(coord *c, const char *method, const char *path, const char *query,
		    const char *const *headers, const char *body, size_t body_len,
		    coord_reply_fn reply, void *arg)
{
	post_call(c, method, path, query, headers, false, body, body_len, reply, arg);
}

typedef struct sync_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int status;
	char *body;
} sync_wait;

static void sync_reply(void *arg, int status, const char *content_type, char *body, size_t len)
{
	(void)content_type;
	(void)len;
	sync_wait *w = arg;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->body = body;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int coord_api_sync(coord *c, const char *method, const char *path, const char *query,
		   const char *body, char **out_body)
{
	sync_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	coord_api(c, method, path, query, body, body ? strlen(body) : 0, sync_reply, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	*out_body = w.body;
	return w.status;
}
