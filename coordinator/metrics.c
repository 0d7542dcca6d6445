/*
 * metrics — GET /metrics in the Prometheus text exposition format (0.0.4).
 * Served on the core thread, so everything here is cheap: gauges are a few
 * grouped counts over indexed columns, counters live in memory (core), and
 * the two figures that cost a walk (bytes of stored logs, bytes in the blob
 * store) are refreshed by a small thread of their own and read atomically.
 * A scrape wakes that thread, so a value is at most one scrape behind.
 */
#include "coordinator/internal.h"

#include "common/cas.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REFRESH_MS 15000
#define REFRESH_MIN_MS 2000 /* scrapes more often than this reuse the last figures */

/* Upper bounds (seconds) of the dispatch latency histogram's buckets. */
static const double dispatch_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1,     2.5,  5,     10,   30,  60,   300};
#define NBUCKETS (sizeof dispatch_le / sizeof dispatch_le[0])

struct metrics {
	/* (core) */
	uint64_t dispatch_bucket[NBUCKETS + 1]; /* the last one is +Inf */
	uint64_t dispatch_count;
	double dispatch_sum;
	uint64_t cache_hits, cache_misses;

	/* refreshed by the thread */
	_Atomic uint64_t log_bytes, cas_bytes, cas_blobs;
	_Atomic bool refreshed;
	pthread_t thread;
	bool running, stop, poke;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* Bytes of every regular file under dir (not following links), recursively. */
static uint64_t dir_bytes(int dirfd, int depth)
{
	if (depth > 4)
		return 0;
	DIR *d = fdopendir(dirfd);
	if (!d) {
		close(dirfd);
		return 0;
	}
	uint64_t total = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		struct stat st;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			total += (uint64_t)st.st_size;
		} else if (S_ISDIR(st.st_mode)) {
			int fd = openat(dirfd, e->d_name,
			                O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
			if (fd >= 0)
				total += dir_bytes(fd, depth + 1);
		}
	}
	closedir(d);
	return total;
}

static void refresh(coord *c, struct metrics *m)
{
	_cleanup_free_ char *logs = kiln_asprintf("%s/logs", c->data_dir);
	int fd = open(logs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	atomic_store(&m->log_bytes, fd >= 0 ? dir_bytes(fd, 0) : 0);
	uint64_t bytes = 0, count = 0;
	kiln_cas *cas = blobs_cas(c);
	if (cas && kiln_cas_total(cas, &bytes, &count) == 0) {
		atomic_store(&m->cas_bytes, bytes);
		atomic_store(&m->cas_blobs, count);
	}
	atomic_store(&m->refreshed, true);
}

static void *metrics_main(void *arg)
{
	coord *c = arg;
	struct metrics *m = c->metrics;
	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		pthread_mutex_unlock(&m->mu);
		refresh(c, m);
		pthread_mutex_lock(&m->mu);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += REFRESH_MIN_MS / 1000;
		while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &ts) == 0)
			;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (REFRESH_MS - REFRESH_MIN_MS) / 1000;
		while (!m->stop && !m->poke && pthread_cond_timedwait(&m->cv, &m->mu, &ts) == 0)
			;
		m->poke = false;
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

int metrics_start(coord *c)
{
	struct metrics *m = kiln_calloc(1, sizeof *m);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	c->metrics = m;
	if (pthread_create(&m->thread, NULL, metrics_main, c) != 0)
		return kiln_err(EAGAIN, "metrics: cannot start a thread");
	m->running = true;
	return 0;
}

void metrics_stop(coord *c)
{
	struct metrics *m = c->metrics;
	if (!m)
		return;
	if (m->running) {
		pthread_mutex_lock(&m->mu);
		m->stop = true;
		pthread_cond_signal(&m->cv);
		pthread_mutex_unlock(&m->mu);
		pthread_join(m->thread, NULL);
	}
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m);
	c->metrics = NULL;
}

void metrics_job_assigned(coord *c, uint64_t job_id, int64_t now_ms)
{
	struct metrics *m = c->metrics;
	if (!m)
		return;
	sqlite3_stmt *st =
	    store_q(c, "SELECT ready_ms FROM jobs WHERE id = ?", "i", (int64_t)job_id);
	bool have = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
	int64_t ready = have ? sqlite3_column_int64(st, 0) : 0;
	store_done(st);
	if (!have)
		return;
	double s = now_ms > ready ? (double)(now_ms - ready) / 1000.0 : 0;
	size_t i = 0;
	while (i < NBUCKETS && s > dispatch_le[i])
		i++;
	m->dispatch_bucket[i]++;
	m->dispatch_count++;
	m->dispatch_sum += s;
}

void metrics_cache_lookup(coord *c, bool hit)
{
	if (!c->metrics)
		return;
	if (hit)
		c->metrics->cache_hits++;
	else
		c->metrics->cache_misses++;
}

/* A label value in the exposition format: backslash, quote and newline escaped. */
static void label_value(kiln_buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			kiln_buf_puts(b, "\\\\");
		else if (*s == '"')
			kiln_buf_puts(b, "\\\"");
		else if (*s == '\n')
			kiln_buf_puts(b, "\\n");
		else
			kiln_buf_append(b, s, 1);
	}
}

static void head(kiln_buf *b, const char *name, const char *type, const char *help)
{
	kiln_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* runs_on (a JSON array of labels) as one label value: the labels sorted, comma-joined. */
static char *label_set(const char *runs_on)
{
	json_t *a = json_loads(runs_on, 0, NULL);
	kiln_strv v = {0};
	size_t i;
	json_t *x;
	if (json_is_array(a)) {
		json_array_foreach(a, i, x) if (json_is_string(x))
		    kiln_strv_push(&v, json_string_value(x));
	} else if (json_is_string(a)) {
		kiln_strv_push(&v, json_string_value(a));
	}
	json_decref(a);
	for (size_t p = 1; p < v.n; p++) /* a few labels: insertion sort */
		for (size_t q = p; q > 0 && strcmp(v.v[q - 1], v.v[q]) > 0; q--) {
			char *t = v.v[q];
			v.v[q] = v.v[q - 1];
			v.v[q - 1] = t;
		}
	kiln_buf b = {0};
	kiln_buf_puts(&b, "");
	for (size_t k = 0; k < v.n; k++) {
		if (k)
			kiln_buf_puts(&b, ",");
		kiln_buf_puts(&b, v.v[k]);
	}
	kiln_strv_free(&v);
	return kiln_buf_steal(&b);
}

/* Grouped counts: SELECT state, conclusion, count(*) … as one gauge. */
static void by_state(coord *c, kiln_buf *b, const char *name, const char *sql)
{
	/* queued and running are always there, so that an alert on them has a series */
	static const char *const states[] = {"queued", "running"};
	bool seen[2] = {false, false};
	sqlite3_stmt *st = store_q(c, sql, NULL);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *state = col_text(st, 0);
		for (size_t i = 0; i < 2; i++)
			seen[i] |= strcmp(state, states[i]) == 0 && !*col_text(st, 1);
		kiln_buf_printf(b, "%s{state=\"", name);
		label_value(b, state);
		kiln_buf_puts(b, "\",conclusion=\"");
		label_value(b, col_text(st, 1));
		kiln_buf_printf(b, "\"} %lld\n", (long long)sqlite3_column_int64(st, 2));
	}
	store_done(st);
	for (size_t i = 0; i < 2; i++)
		if (!seen[i])
			kiln_buf_printf(b, "%s{state=\"%s\",conclusion=\"\"} 0\n", name, states[i]);
}

bool metrics_serve(api_req *r)
{
	if (strcmp(r->path, "/metrics") != 0)
		return false;
	if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
		api_error(r->reply, r->arg, 405, "/metrics answers GET");
		return true;
	}
	coord *c = r->c;
	struct metrics *m = c->metrics;
	kiln_buf b = {0};

	head(&b, "kiln_runs", "gauge", "Runs by state and conclusion.");
	by_state(c, &b, "kiln_runs",
	         "SELECT state, conclusion, count(*) FROM runs GROUP BY state, conclusion"
	         " ORDER BY state, conclusion");
	head(&b, "kiln_jobs", "gauge", "Jobs by state and conclusion.");
	by_state(c, &b, "kiln_jobs",
	         "SELECT state, conclusion, count(*) FROM jobs WHERE kind = 'job'"
	         " GROUP BY state, conclusion ORDER BY state, conclusion");

	head(&b, "kiln_queue_depth", "gauge",
	     "Jobs ready and waiting for an agent, by the labels of their runs-on.");
	sqlite3_stmt *st = store_q(c,
	                           "SELECT runs_on, count(*) FROM jobs WHERE state = 'queued'"
	                           " AND ready = 1 GROUP BY runs_on",
	                           NULL);
	json_t *depth = json_object(); /* label set -> count: runs_on spelled differently merges */
	while (sqlite3_step(st) == SQLITE_ROW) {
		_cleanup_free_ char *set = label_set(col_text(st, 0));
		json_int_t n = json_integer_value(json_object_get(depth, set));
		json_object_set_new(depth, set, json_integer(n + sqlite3_column_int64(st, 1)));
	}
	store_done(st);
	const char *set;
	json_t *n;
	json_object_foreach(depth, set, n)
	{
		kiln_buf_puts(&b, "kiln_queue_depth{labels=\"");
		label_value(&b, set);
		kiln_buf_printf(&b, "\"} %lld\n", (long long)json_integer_value(n));
	}
	json_decref(depth);

	head(&b, "kiln_dispatch_latency_seconds", "histogram",
	     "Time from a job becoming ready to its assignment to an agent.");
	uint64_t cum = 0;
	for (size_t i = 0; i <= NBUCKETS; i++) {
		cum += m ? m->dispatch_bucket[i] : 0;
		if (i < NBUCKETS)
			kiln_buf_printf(&b,
			                "kiln_dispatch_latency_seconds_bucket{le=\"%g\"} %llu\n",
			                dispatch_le[i], (unsigned long long)cum);
		else
			kiln_buf_printf(&b,
			                "kiln_dispatch_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
			                (unsigned long long)cum);
	}
	kiln_buf_printf(&b, "kiln_dispatch_latency_seconds_sum %.6f\n", m ? m->dispatch_sum : 0.0);
	kiln_buf_printf(&b, "kiln_dispatch_latency_seconds_count %llu\n",
	                (unsigned long long)(m ? m->dispatch_count : 0));

	uint64_t online = 0, lost = 0;
	for (coord_agent *a = c->agents; a; a = a->next) {
		if (a->lost)
			lost++;
		else
			online++;
	}
	head(&b, "kiln_agents_online", "gauge", "Agents connected and polling.");
	kiln_buf_printf(&b, "kiln_agents_online %llu\n", (unsigned long long)online);
	head(&b, "kiln_agents_lost", "gauge", "Agents known but lost.");
	kiln_buf_printf(&b, "kiln_agents_lost %llu\n", (unsigned long long)lost);

	if (m) {
		/* wake the refresher: the next scrape sees figures from now */
		pthread_mutex_lock(&m->mu);
		m->poke = true;
		pthread_cond_signal(&m->cv);
		pthread_mutex_unlock(&m->mu);
	}
	head(&b, "kiln_log_bytes", "gauge", "Bytes of job and run logs stored.");
	kiln_buf_printf(&b, "kiln_log_bytes %llu\n",
	                (unsigned long long)(m ? atomic_load(&m->log_bytes) : 0));
	head(&b, "kiln_cache_hits_total", "counter",
	     "actions/cache lookups that found an entry, since the coordinator started.");
	kiln_buf_printf(&b, "kiln_cache_hits_total %llu\n",
	                (unsigned long long)(m ? m->cache_hits : 0));
	head(&b, "kiln_cache_misses_total", "counter",
	     "actions/cache lookups that found nothing, since the coordinator started.");
	kiln_buf_printf(&b, "kiln_cache_misses_total %llu\n",
	                (unsigned long long)(m ? m->cache_misses : 0));
	head(&b, "kiln_stored_bytes", "gauge",
	     "Bytes in the content-addressed store (compressed, as stored).");
	kiln_buf_printf(&b, "kiln_stored_bytes %llu\n",
	                (unsigned long long)(m ? atomic_load(&m->cas_bytes) : 0));
	head(&b, "kiln_stored_blobs", "gauge", "Blobs in the content-addressed store.");
	kiln_buf_printf(&b, "kiln_stored_blobs %llu\n",
	                (unsigned long long)(m ? atomic_load(&m->cas_blobs) : 0));
	forge_metrics(c, &b);

	api_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", kiln_buf_steal(&b));
	return true;
}
