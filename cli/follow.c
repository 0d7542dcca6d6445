/*
 * follow — prints a run's log as it grows, through the run log's long poll
 * (offset + wait), the same way for a remote server and for `kiln run`.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "common/util.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("kiln: error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void print_line(json_t *l)
{
	const char *job = json_string_value(json_object_get(l, "job"));
	const char *stream = json_string_value(json_object_get(l, "stream"));
	const char *text = json_string_value(json_object_get(l, "text"));
	bool sys = stream && strcmp(stream, "system") == 0;
	printf("[%s] %s%s\n", job ? job : "?", sys ? "==> " : "", text ? text : "");
}

int cli_follow(kiln_client *cl, long long id, bool print, volatile bool *stop, json_t **final)
{
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/log", id);
	long long offset = 0;
	for (;;) {
		if (stop && *stop)
			return -ECANCELED;
		char query[96];
		snprintf(query, sizeof query, "offset=%lld&wait=%d", offset, stop ? 1 : 25);
		json_t *resp = NULL;
		int status = kiln_client_call(cl, "GET", path, query, NULL, &resp);
		if (status < 0)
			return status;
		if (status != 200) {
			const char *e = json_string_value(json_object_get(resp, "error"));
			int r = kiln_err(EIO, "%s", e ? e : "unexpected answer from the server");
			json_decref(resp);
			return r;
		}
		size_t i;
		json_t *l;
		json_array_foreach(json_object_get(resp, "lines"), i, l)
		{
			if (print)
				print_line(l);
		}
		if (print)
			fflush(stdout);
		offset = json_integer_value(json_object_get(resp, "next"));
		bool done = json_is_true(json_object_get(resp, "done"));
		json_decref(resp);
		if (done)
			break;
	}
	_cleanup_free_ char *runpath = kiln_asprintf("/api/v1/runs/%lld", id);
	int status = kiln_client_call(cl, "GET", runpath, NULL, NULL, final);
	if (status != 200) {
		json_decref(*final);
		*final = NULL;
		return status < 0 ? status : kiln_err(EIO, "cannot read run %lld", id);
	}
	return 0;
}

static void duration(char *buf, size_t n, json_t *o)
{
	json_t *a = json_object_get(o, "started_ms"), *b = json_object_get(o, "finished_ms");
	if (!json_is_integer(a) || !json_is_integer(b)) {
		snprintf(buf, n, "-");
		return;
	}
	double s = (double)(json_integer_value(b) - json_integer_value(a)) / 1000.0;
	if (s < 60)
		snprintf(buf, n, "%.1fs", s);
	else
		snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
}

void cli_summary(FILE *f, json_t *run)
{
	json_t *jobs = json_object_get(run, "jobs");
	int w = 3;
	size_t i;
	json_t *j;
	json_array_foreach(jobs, i, j)
	{
		int n = (int)strlen(json_string_value(json_object_get(j, "name")));
		if (n > w)
			w = n;
	}
	fprintf(f, "\n%s (%s): %s\n", json_string_value(json_object_get(run, "name")),
		json_string_value(json_object_get(run, "workflow")),
		json_string_value(json_object_get(run, "conclusion")));
	fprintf(f, "%-*s  %-10s  %s\n", w, "JOB", "RESULT", "DURATION");
	json_array_foreach(jobs, i, j)
	{
		char d[32];
		duration(d, sizeof d, j);
		const char *concl = json_string_value(json_object_get(j, "conclusion"));
		fprintf(f, "%-*s  %-10s  %s\n", w, json_string_value(json_object_get(j, "name")),
			concl && *concl ? concl : json_string_value(json_object_get(j, "state")), d);
	}
}

bool cli_run_ok(json_t *run)
{
	const char *c = json_string_value(json_object_get(run, "conclusion"));
	return c && strcmp(c, "success") == 0;
}
