/* test_sched — scheduling of real jobs in process: matrices (static and from
   needs outputs), fail-fast, max-parallel, job-level if: and continue-on-error,
   outputs between jobs, and local reusable workflows. */
#include "tests/harness/check.h"
#include "tests/harness/inproc.h"

static fixture f;

static const char matrix_wf[] =
	"on: push\n"
	"jobs:\n"
	"  setup:\n"
	"    runs-on: linux\n"
	"    outputs:\n"
	"      list: ${{ steps.l.outputs.list }}\n"
	"    steps:\n"
	"      - id: l\n"
	"        run: echo 'list=[\"x\",\"y\"]' >> \"$GITHUB_OUTPUT\"\n"
	"  test:\n"
	"    runs-on: linux\n"
	"    strategy:\n"
	"      matrix:\n"
	"        py: ['3.10', '3.11']\n"
	"        os: [linux, mac]\n"
	"        exclude:\n"
	"          - { py: '3.10', os: mac }\n"
	"        include:\n"
	"          - { py: '3.12', os: linux, extra: yes }\n"
	"    steps:\n"
	"      - run: echo \"${{ matrix.py }}-${{ matrix.os }}-${{ strategy.job-index }}/${{ strategy.job-total }}\"\n"
	"  dyn:\n"
	"    needs: setup\n"
	"    name: dyn ${{ matrix.v }}\n"
	"    runs-on: ${{ 'linux' }}\n"
	"    strategy:\n"
	"      max-parallel: 1\n"
	"      matrix:\n"
	"        v: ${{ fromJSON(needs.setup.outputs.list) }}\n"
	"    steps:\n"
	"      - run: sleep 0.3\n";

static const char failfast_wf[] =
	"on: push\n"
	"jobs:\n"
	"  ff:\n"
	"    runs-on: linux\n"
	"    strategy:\n"
	"      matrix:\n"
	"        n: [1, 2, 3]\n"
	"    steps:\n"
	"      - run: if [ ${{ matrix.n }} = 1 ]; then sleep 0.3; exit 1; fi; sleep 30\n"
	"  soft:\n"
	"    runs-on: linux\n"
	"    continue-on-error: true\n"
	"    steps:\n"
	"      - run: exit 3\n"
	"  on-failure:\n"
	"    needs: ff\n"
	"    if: failure()\n"
	"    runs-on: linux\n"
	"    steps:\n"
	"      - run: echo cleanup\n"
	"  on-success:\n"
	"    needs: ff\n"
	"    runs-on: linux\n"
	"    steps:\n"
	"      - run: echo never\n"
	"  always:\n"
	"    needs: [on-success]\n"
	"    if: always() && needs.on-success.result == 'skipped'\n"
	"    runs-on: linux\n"
	"    steps:\n"
	"      - run: echo always\n";

static const char caller_wf[] =
	"on: push\n"
	"jobs:\n"
	"  prep:\n"
	"    runs-on: linux\n"
	"    outputs:\n"
	"      tag: ${{ format('v{0}', 1) }}\n"
	"    steps:\n"
	"      - run: 'true'\n"
	"  build:\n"
	"    needs: prep\n"
	"    uses: ./.github/workflows/build.yml\n"
	"    with:\n"
	"      tag: ${{ needs.prep.outputs.tag }}\n"
	"  after:\n"
	"    needs: build\n"
	"    runs-on: linux\n"
	"    steps:\n"
	"      - run: test '${{ needs.build.outputs.artifact }}' = 'app-v1-true'\n";

static const char called_wf[] =
	"on:\n"
	"  workflow_call:\n"
	"    inputs:\n"
	"      tag: { type: string, required: true }\n"
	"      debug: { type: boolean, default: true }\n"
	"    outputs:\n"
	"      artifact:\n"
	"        value: ${{ jobs.compile.outputs.name }}\n"
	"jobs:\n"
	"  compile:\n"
	"    runs-on: linux\n"
	"    outputs:\n"
	"      name: app-${{ inputs.tag }}-${{ inputs.debug }}\n"
	"    steps:\n"
	"      - run: 'true'\n";

int main(void)
{
	CHECK(fx_start(&f, "test-sched", "linux", 3) == 0);

	long long id = fx_submit(&f, ".github/workflows/m.yml", matrix_wf, NULL);
	CHECK(id > 0);
	json_t *run = fx_wait(&f, id, 30000);
	CHECK(run != NULL);
	CHECK_STR(fx_str(run, "conclusion"), "success");
	/* 2x2 - 1 excluded + 1 included = 4 instances, named by their values */
	const char *names[] = {"test (3.10, linux)", "test (3.11, linux)", "test (3.11, mac)",
			       "test (3.12, linux, yes)", "dyn x", "dyn y", "setup"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(names); i++) {
		json_t *j = fx_job(run, names[i]);
		CHECK(j != NULL);
		if (!j)
			fprintf(stderr, "missing job '%s'\n", names[i]);
		else
			CHECK_STR(fx_str(j, "conclusion"), "success");
	}
	CHECK_INT(json_array_size(json_object_get(run, "jobs")), 7);
	json_t *m = json_object_get(fx_job(run, "test (3.11, mac)"), "matrix");
	CHECK_STR(fx_str(m, "os"), "mac");
	/* max-parallel 1: the dynamic instances did not overlap */
	json_t *x = fx_job(run, "dyn x"), *y = fx_job(run, "dyn y");
	if (x && y) {
		json_int_t xs = json_integer_value(json_object_get(x, "started_ms"));
		json_int_t xe = json_integer_value(json_object_get(x, "finished_ms"));
		json_int_t ys = json_integer_value(json_object_get(y, "started_ms"));
		json_int_t ye = json_integer_value(json_object_get(y, "finished_ms"));
		CHECK(ys >= xe || xs >= ye);
	}
	json_decref(run);

	/* fail-fast stops running siblings within a second or so; job if: and continue-on-error */
	int64_t t0 = kiln_now_ms();
	id = fx_submit(&f, ".github/workflows/ff.yml", failfast_wf, NULL);
	run = fx_wait(&f, id, 30000);
	CHECK(run != NULL);
	CHECK(kiln_now_ms() - t0 < 15000);
	CHECK_STR(fx_str(fx_job(run, "ff (1)"), "conclusion"), "failure");
	CHECK_STR(fx_str(fx_job(run, "ff (2)"), "conclusion"), "cancelled");
	CHECK_STR(fx_str(fx_job(run, "ff (3)"), "conclusion"), "cancelled");
	CHECK_STR(fx_str(fx_job(run, "soft"), "conclusion"), "failure");
	CHECK_STR(fx_str(fx_job(run, "on-failure"), "conclusion"), "success");
	CHECK_STR(fx_str(fx_job(run, "on-success"), "conclusion"), "skipped");
	CHECK_STR(fx_str(fx_job(run, "always"), "conclusion"), "success");
	CHECK_STR(fx_str(run, "conclusion"), "failure");
	json_decref(run);

	/* a local reusable workflow: inputs (with a default), outputs back to the caller */
	id = fx_submit(&f, ".github/workflows/ci.yml", caller_wf, ".github/workflows/build.yml",
		       called_wf, NULL);
	CHECK(id > 0);
	run = fx_wait(&f, id, 30000);
	CHECK(run != NULL);
	CHECK_STR(fx_str(run, "conclusion"), "success");
	CHECK_STR(fx_str(fx_job(run, "build / compile"), "conclusion"), "success");
	CHECK_STR(fx_str(json_object_get(fx_job(run, "build"), "outputs"), "artifact"),
		  "app-v1-true");
	CHECK_STR(fx_str(fx_job(run, "after"), "conclusion"), "success");
	json_decref(run);

	/* masking against hostile output: a value split across writes (and pipe reads), a
	   multi-line value, stderr, a value that reappears in a step's name and in an output */
	id = fx_submit(&f, ".github/workflows/mask.yml",
		       "on: push\njobs:\n  m:\n    runs-on: linux\n    outputs:\n"
		       "      leak: ${{ steps.o.outputs.v }}\n    steps:\n"
		       "      - run: |\n"
		       "          echo '::add-mask::s3cr3t-value'\n"
		       "          printf 's3cr3t'; sleep 0.2; printf -- '-value and more\\n'\n"
		       "          echo 'again s3cr3t-value' >&2\n"
		       "          printf '::add-mask::line-one%%0Aline-two\\n'\n"
		       "          printf 'x line-two y\\n'\n"
		       "      - id: o\n"
		       "        run: echo 'v=prefix s3cr3t-value' >> \"$GITHUB_OUTPUT\"\n",
		       NULL);
	run = fx_wait(&f, id, 30000);
	CHECK_STR(fx_str(run, "conclusion"), "success");
	json_t *mj = fx_job(run, "m");
	/* an output holding a masked value is not passed on */
	CHECK(json_object_get(json_object_get(mj, "outputs"), "leak") == NULL);
	_cleanup_free_ char *mpath = kiln_asprintf(
		"/api/v1/jobs/%lld/log", (long long)json_integer_value(json_object_get(mj, "id")));
	json_t *ml = NULL;
	CHECK_INT(fx_api(&f, "GET", mpath, "offset=0", NULL, &ml), 200);
	bool split = false, err = false, multi = false, leaked = false;
	size_t k;
	json_t *l;
	json_array_foreach(json_object_get(ml, "lines"), k, l)
	{
		const char *t = fx_str(l, "text");
		/* (the step's header shows its script, as on GitHub: it is in the workflow file) */
		bool header = strcmp(fx_str(l, "stream"), "system") == 0 && strncmp(t, "Run ", 4) == 0;
		if (!header && (strstr(t, "s3cr3t") != NULL || strstr(t, "line-two") != NULL)) {
			fprintf(stderr, "leaked: %s\n", t);
			leaked = true;
		}
		split |= strcmp(t, "*** and more") == 0;
		err |= strcmp(t, "again ***") == 0 && strcmp(fx_str(l, "stream"), "stderr") == 0;
		multi |= strcmp(t, "x *** y") == 0;
	}
	CHECK(!leaked);
	CHECK(split);
	CHECK(err);
	CHECK(multi);
	json_decref(ml);
	json_decref(run);

	/* a log past its cap: one marker, nothing after it, and the job goes on */
	fx_stop(&f);
	f.max_log_bytes = 4096;
	CHECK(fx_start(&f, "test-sched-cap", "linux", 1) == 0);
	id = fx_submit(&f, ".github/workflows/big.yml",
		       "on: push\njobs:\n  big:\n    runs-on: linux\n    steps:\n"
		       "      - run: for i in $(seq 1 2000); do echo \"line $i\"; done\n"
		       "      - run: echo after-the-cap\n",
		       NULL);
	run = fx_wait(&f, id, 30000);
	CHECK_STR(fx_str(run, "conclusion"), "success");
	json_t *big = fx_job(run, "big");
	CHECK_STR(fx_str(json_array_get(json_object_get(big, "steps"), 1), "conclusion"), "success");
	_cleanup_free_ char *bigpath = kiln_asprintf(
		"/api/v1/jobs/%lld/log", (long long)json_integer_value(json_object_get(big, "id")));
	json_t *lg = NULL;
	CHECK_INT(fx_api(&f, "GET", bigpath, "offset=0", NULL, &lg), 200);
	json_t *lines = json_object_get(lg, "lines");
	size_t nl = json_array_size(lines);
	CHECK(nl > 10 && nl < 200);
	const char *last = fx_str(json_array_get(lines, nl - 1), "text");
	CHECK(strstr(last, "reached its limit of 4096 bytes") != NULL);
	size_t markers = 0, bytes = 0;
	for (size_t i = 0; i < nl; i++) {
		const char *t = fx_str(json_array_get(lines, i), "text");
		markers += strstr(t, "reached its limit") != NULL;
		bytes += strlen(t);
		CHECK(strcmp(t, "after-the-cap") != 0);
	}
	CHECK_INT(markers, 1);
	CHECK(bytes <= 4096);
	json_decref(lg);
	json_decref(run);

	/* calling a file that is not a reusable workflow is refused with its position */
	id = fx_submit(&f, ".github/workflows/ci.yml", caller_wf, ".github/workflows/build.yml",
		       "on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n      - run: 'true'\n",
		       NULL);
	CHECK_INT(id, -422);
	fx_stop(&f);
	return check_done();
}
