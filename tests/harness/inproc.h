/*
 * inproc — a coordinator and an agent in the test's own process, joined over
 * inproc://, for unit tests of scheduling that run real steps.
 */
#ifndef KILN_INPROC_H
#define KILN_INPROC_H

#include <jansson.h>
#include <string.h>

#include "agent/agent.h"
#include "common/util.h"
#include "coordinator/coord.h"

typedef struct fixture {
	char *dir;
	coord *c;
	agent *a;
	size_t max_log_bytes; /* 0 = the default */
} fixture;

/* Starts the agent (inproc://name) with these labels. */
static inline int fx_start_agent(fixture *f, const char *name, const char *labels,
				 uint32_t capacity)
{
	_cleanup_free_ char *work = kiln_asprintf("%s/work", f->dir);
	_cleanup_free_ char *url = kiln_asprintf("inproc://%s", name);
	agent_config ac = {.coordinator = url, .name = "t", .labels = labels,
			   .capacity = capacity, .work_dir = work};
	return agent_start(&ac, &f->a);
}

/* Starts a coordinator, and an agent with these labels unless labels is NULL. */
static inline int fx_start(fixture *f, const char *name, const char *labels, uint32_t capacity)
{
	size_t max_log = f->max_log_bytes;
	memset(f, 0, sizeof *f);
	f->max_log_bytes = max_log;
	kiln_log_setup("test", KILN_LOG_ERR);
	if (kiln_mkdtemp("kiln-test", &f->dir) < 0)
		return -1;
	_cleanup_free_ char *data = kiln_asprintf("%s/data", f->dir);
	_cleanup_free_ char *url = kiln_asprintf("inproc://%s", name);
	coord_config cfg = COORD_CONFIG_INIT;
	cfg.listen = url;
	cfg.data_dir = data;
	cfg.max_log_bytes = f->max_log_bytes;
	if (coord_start(&cfg, &f->c) < 0)
		return -1;
	return labels ? fx_start_agent(f, name, labels, capacity) : 0;
}

static inline void fx_stop(fixture *f)
{
	agent_free(f->a);
	coord_free(f->c);
	if (f->dir)
		kiln_rm_rf(f->dir);
	free(f->dir);
}

/* One API call; the decoded body in *out (owned). */
static inline int fx_api(fixture *f, const char *method, const char *path, const char *query,
			 const char *body, json_t **out)
{
	char *text = NULL;
	int status = coord_api_sync(f->c, method, path, query, body, &text);
	*out = json_loads(text ? text : "null", JSON_DECODE_ANY, NULL);
	free(text);
	return status;
}

static inline const char *fx_str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "(null)";
}

/* Submits workflow files given as path, content, path, content…, NULL; returns the first
   run's id, or -status. */
static inline long long fx_submit(fixture *f, const char *path, ...)
{
	json_t *files = json_array();
	va_list ap;
	va_start(ap, path);
	for (const char *p = path; p; p = va_arg(ap, const char *)) {
		const char *content = va_arg(ap, const char *);
		json_array_append_new(files, json_pack("{s:s, s:s}", "path", p, "content", content));
	}
	va_end(ap);
	json_t *sub = json_pack("{s:s, s:s, s:s, s:o}", "repo", "/r", "ref", "refs/heads/main",
				"sha", "0123456789012345678901234567890123456789", "files", files);
	char *body = json_dumps(sub, 0);
	json_decref(sub);
	json_t *v = NULL;
	int status = fx_api(f, "POST", "/api/v1/runs", NULL, body, &v);
	free(body);
	long long id = status == 201 ? (long long)json_integer_value(json_object_get(
					       json_array_get(json_object_get(v, "runs"), 0), "id"))
				     : -status;
	json_decref(v);
	return id;
}

/* Waits (long polls) until the run has completed; the run with its jobs, or NULL. */
static inline json_t *fx_wait(fixture *f, long long id, int64_t timeout_ms)
{
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/log", id);
	_cleanup_free_ char *runpath = kiln_asprintf("/api/v1/runs/%lld", id);
	int64_t deadline = kiln_now_ms() + timeout_ms;
	long long offset = 0;
	while (kiln_now_ms() < deadline) {
		char q[64];
		snprintf(q, sizeof q, "offset=%lld&wait=1", offset);
		json_t *v = NULL;
		if (fx_api(f, "GET", path, q, NULL, &v) != 200) {
			json_decref(v);
			return NULL;
		}
		offset = json_integer_value(json_object_get(v, "next"));
		bool done = json_is_true(json_object_get(v, "done"));
		json_decref(v);
		if (done) {
			json_t *run = NULL;
			fx_api(f, "GET", runpath, NULL, NULL, &run);
			return run;
		}
	}
	return NULL;
}

/* The job of a run with this display name, or NULL (borrowed). */
static inline json_t *fx_job(json_t *run, const char *name)
{
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(run, "jobs"), i, j)
	{
		if (strcmp(fx_str(j, "name"), name) == 0)
			return j;
	}
	return NULL;
}

#endif
