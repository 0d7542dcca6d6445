/* test_coord — the coordinator library in process: the API, the planner and
   the scheduler, with a real agent joined over inproc:// running real steps. */
#include "tests/harness/check.h"
#include "tests/harness/inproc.h"

#include <unistd.h>

static fixture f;

static int api(const char *method, const char *path, const char *query, const char *body,
	       json_t **out)
{
	return fx_api(&f, method, path, query, body, out);
}

static const char dag[] =
	"name: dag\n"
	"on: push\n"
	"env:\n"
	"  LEVEL: workflow\n"
	"jobs:\n"
	"  a:\n"
	"    runs-on: linux\n"
	"    steps:\n"
	"      - run: echo \"a $LEVEL $CI\"\n"
	"  b:\n"
	"    needs: a\n"
	"    runs-on: [linux]\n"
	"    env:\n"
	"      LEVEL: job\n"
	"    steps:\n"
	"      - run: echo \"b $LEVEL\"\n"
	"        env:\n"
	"          EXTRA: step\n"
	"      - run: echo \"$EXTRA-unset\"\n"
	"  c:\n"
	"    needs: a\n"
	"    runs-on: linux\n"
	"    steps:\n"
	"      - run: echo c; exit 7\n"
	"      - run: echo never\n"
	"  d:\n"
	"    needs: [b, c]\n"
	"    runs-on: linux\n"
	"    steps:\n"
	"      - run: echo d\n"
	"  gpu:\n"
	"    runs-on: [linux, gpu]\n"
	"    steps:\n"
	"      - run: echo gpu\n";

static json_t *job_named(json_t *run, const char *key)
{
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(run, "jobs"), i, j)
	{
		if (strcmp(json_string_value(json_object_get(j, "key")), key) == 0)
			return j;
	}
	return NULL;
}

int main(void)
{
	CHECK(fx_start(&f, "test-coord", NULL, 0) == 0);
	if (!f.c)
		return check_done();
	CHECK_STR(coord_bus_url(f.c), "inproc://test-coord");

	json_t *v = NULL;
	CHECK_INT(api("GET", "/healthz", NULL, NULL, &v), 200);
	json_decref(v);
	CHECK_INT(api("POST", "/api/v1/runs", NULL, "{not json", &v), 400);
	CHECK(json_is_string(json_object_get(v, "error")));
	json_decref(v);
	CHECK_INT(api("POST", "/api/v1/runs", NULL, "{\"ref\": \"main\"}", &v), 400);
	json_decref(v);
	CHECK_INT(api("GET", "/api/v1/runs/99", NULL, NULL, &v), 404);
	json_decref(v);
	CHECK_INT(api("GET", "/api/v1/nothing", NULL, NULL, &v), 404);
	json_decref(v);

	/* a workflow with a cycle is refused with its position, and nothing is created */
	json_t *bad = json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "repo", "/r", "ref", "main", "files",
				"path", ".github/workflows/x.yml", "content",
				"on: push\njobs:\n  a:\n    needs: b\n    runs-on: linux\n    steps:\n"
				"      - run: 'true'\n  b:\n    needs: a\n    runs-on: linux\n"
				"    steps:\n      - run: 'true'\n");
	char *body = json_dumps(bad, 0);
	CHECK_INT(api("POST", "/api/v1/runs", NULL, body, &v), 422);
	CHECK(strstr(fx_str(v, "error"), ".github/workflows/x.yml:") != NULL);
	CHECK(strstr(fx_str(v, "error"), "cycle") != NULL);
	json_decref(v);
	free(body);
	json_decref(bad);
	CHECK_INT(api("GET", "/api/v1/runs", NULL, NULL, &v), 200);
	CHECK_INT(json_array_size(json_object_get(v, "runs")), 0);
	json_decref(v);

	/* the DAG, run by a real agent */
	CHECK(fx_start_agent(&f, "test-coord", "linux", 2) == 0);
	json_t *sub = json_pack("{s:s, s:s, s:s, s:[{s:s, s:s}]}", "repo", "/r", "ref",
				"refs/heads/main", "sha", "0123456789012345678901234567890123456789",
				"files", "path", ".github/workflows/dag.yml", "content", dag);
	body = json_dumps(sub, 0);
	CHECK_INT(api("POST", "/api/v1/runs", NULL, body, &v), 201);
	free(body);
	json_decref(sub);
	long long id = json_integer_value(json_object_get(json_array_get(json_object_get(v, "runs"), 0), "id"));
	json_decref(v);
	CHECK(id > 0);

	/* follow the run log until every job but the unmatched one is done; a job's result comes
	   after all its lines are stored, so one more read then has every line */
	_cleanup_free_ char *logpath = kiln_asprintf("/api/v1/runs/%lld/log", id);
	_cleanup_free_ char *runpath = kiln_asprintf("/api/v1/runs/%lld", id);
	kiln_strv lines = {0};
	long long offset = 0;
	int64_t deadline = kiln_now_ms() + 30000;
	json_t *run = NULL;
	while (kiln_now_ms() < deadline) {
		char q[64];
		snprintf(q, sizeof q, "offset=%lld&wait=2", offset);
		CHECK_INT(api("GET", logpath, q, NULL, &v), 200);
		size_t i;
		json_t *l;
		json_array_foreach(json_object_get(v, "lines"), i, l)
		{
			if (strcmp(fx_str(l, "stream"), "system") != 0)
				kiln_strv_push_owned(&lines, kiln_asprintf("%s:%s", fx_str(l, "job"),
									   fx_str(l, "text")));
		}
		offset = json_integer_value(json_object_get(v, "next"));
		size_t got = json_array_size(json_object_get(v, "lines"));
		json_decref(v);
		json_decref(run);
		api("GET", runpath, NULL, NULL, &run);
		bool all = true;
		const char *keys[] = {"a", "b", "c", "d"};
		for (size_t k = 0; k < KILN_ARRAY_SIZE(keys); k++) {
			json_t *jk = job_named(run, keys[k]);
			all = all && jk && strcmp(fx_str(jk, "state"), "completed") == 0;
		}
		if (all && got == 0)
			break;
	}
	CHECK(kiln_strv_contains(&lines, "a:a workflow true"));
	CHECK(kiln_strv_contains(&lines, "b:b job"));
	CHECK(kiln_strv_contains(&lines, "b:-unset"));
	CHECK(kiln_strv_contains(&lines, "c:c"));
	CHECK(!kiln_strv_contains(&lines, "c:never"));
	CHECK(!kiln_strv_contains(&lines, "d:d"));
	kiln_strv_free(&lines);

	CHECK_STR(fx_str(job_named(run, "a"), "conclusion"), "success");
	CHECK_STR(fx_str(job_named(run, "b"), "conclusion"), "success");
	CHECK_STR(fx_str(job_named(run, "c"), "conclusion"), "failure");
	CHECK_STR(fx_str(job_named(run, "d"), "conclusion"), "skipped");
	json_t *csteps = json_object_get(job_named(run, "c"), "steps");
	CHECK_INT(json_integer_value(json_object_get(json_array_get(csteps, 0), "exit_code")), 7);
	CHECK_STR(fx_str(json_array_get(csteps, 1), "conclusion"), "skipped");
	/* nobody has the gpu label: the job waits, and so does the run */
	CHECK_STR(fx_str(job_named(run, "gpu"), "state"), "queued");
	CHECK_STR(fx_str(run, "state"), "running");
	json_int_t a_end = json_integer_value(json_object_get(job_named(run, "a"), "finished_ms"));
	CHECK(json_integer_value(json_object_get(job_named(run, "b"), "started_ms")) >= a_end);
	CHECK(json_integer_value(json_object_get(job_named(run, "c"), "started_ms")) >= a_end);
	json_decref(run);

	/* a job's own log: numbered from 1, in order */
	CHECK_INT(api("GET", "/api/v1/jobs/2/log", "offset=0", NULL, &v), 200);
	json_t *jl = json_object_get(v, "lines");
	CHECK(json_array_size(jl) >= 3);
	for (size_t i = 0; i < json_array_size(jl); i++)
		CHECK_INT(json_integer_value(json_object_get(json_array_get(jl, i), "seq")), (long long)i + 1);
	CHECK(json_is_true(json_object_get(v, "done")));
	json_decref(v);

	/* a long poll with nothing new answers when its time is up */
	int64_t t0 = kiln_now_ms();
	char q[64];
	snprintf(q, sizeof q, "offset=%lld&wait=1", offset);
	CHECK_INT(api("GET", logpath, q, NULL, &v), 200);
	CHECK_INT(json_array_size(json_object_get(v, "lines")), 0);
	CHECK(kiln_now_ms() - t0 >= 900);
	CHECK(!json_is_true(json_object_get(v, "done")));
	json_decref(v);

	fx_stop(&f);
	return check_done();
}
