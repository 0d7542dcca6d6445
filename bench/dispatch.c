/*
 * bench/dispatch — how long a job waits between being submitted and its
 * first step's process starting, with one idle agent on TCP loopback.
 *
 * One process holds a coordinator (bus on tcp://127.0.0.1:0, no HTTP, store
 * in a temporary directory) and an agent (labels "linux", capacity 1, work
 * directory in the same temporary directory) that dials it over real TCP.
 * Runs are submitted one after another through the in-process API (POST
 * /api/v1/runs with an inline workflow: one job, one step, no checkout), each
 * only once the previous run has completed and the agent is idle with its Poll
 * held (then a random 1–3 ms pause), so what is measured is dispatch, not
 * queueing. The first --warmup runs are not counted.
 *
 * The step's shell is a "stamp" program (`shell: STAMP --stamp FILE {0}`)
 * that reads CLOCK_MONOTONIC first thing in main() and appends it to FILE;
 * the benchmark reads it back (inotify, no busy polling) and uses the same
 * clock. By default STAMP is this binary in --stamp mode; --stamp-prog takes a
 * lighter program with the same arguments (bench/run.sh builds a static one),
 * because loading this binary's ~25 shared libraries takes milliseconds.
 *
 * Figures, per run:
 *   submit_to_start  just before coord_api_sync(POST /api/v1/runs) → the step's main()
 *                    (stricter than "job ready": it includes planning and the store writes)
 *   submit_to_ready  the POST itself (run planned, written, job ready)
 *   ready_to_start   the POST's reply → the step's main(). kiln dispatches to a held Poll
 *                    inside the POST (before the reply), so this is only the part of the
 *                    dispatch left after the reply; it can even be negative.
 * and the floor, measured in the same process: the p50 of an nng REQ/REP round trip over tcp
 * loopback (REP served by a thread of this process) plus the p50 of posix_spawn of the same
 * stamp program until its main() runs. dispatch.env.* describes the machine (CPUs, whether
 * this build is optimized, the file system of the temporary directory and what creating an
 * inode there costs).
 *
 * Goal: submit_to_start p50 <= 2 ms and p99 <= 10 ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "agent/agent.h"
#include "common/util.h"
#include "coordinator/coord.h"

#define BENCH_NAME "bench_dispatch"
#include "bench/bench.h"

extern char **environ;

#define GOAL_P50_MS 2.0
#define GOAL_P99_MS 10.0
#define STEP_START_TIMEOUT_MS 30000 /* a job that has not started by then is an error */
#define RUN_DONE_TIMEOUT_MS 30000
#define WATCHDOG_S 170
#define STR_(x) #x
#define STR(x) STR_(x)





/* ---- --stamp mode: the step's "shell" ---- */

static int stamp_main(const char *file, int64_t t)
{
	int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return 1;
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%" PRId64 "\n", t);
	ssize_t w = write(fd, buf, (size_t)n); /* one short O_APPEND write: atomic */
	close(fd);
	return w == n ? 0 : 1;
}

/* ---- reading stamps as they are appended (inotify; no busy polling) ---- */

typedef struct stamps {
	char *path;
	int fd, ino;
	char buf[256];
	size_t len;
} stamps;

static void stamps_open(stamps *s, const char *path)
{
	s->path = kiln_strdup(path);
	s->fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
	if (s->fd < 0)
		die("%s: %s", path, strerror(errno));
	s->ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (s->ino < 0 || inotify_add_watch(s->ino, path, IN_MODIFY) < 0)
		die("inotify %s: %s", path, strerror(errno));
	s->len = 0;
}

static void stamps_close(stamps *s)
{
	close(s->fd);
	close(s->ino);
	free(s->path);
}

/* Waits for the next stamp line; returns 0 with *out, or -ETIMEDOUT. */
static int stamps_next(stamps *s, int64_t timeout_ms, int64_t *out)
{
	int64_t end = mono_ns() + timeout_ms * 1000000;
	for (;;) {
		char *nl = memchr(s->buf, '\n', s->len);
		if (nl) {
			*nl = '\0';
			*out = strtoll(s->buf, NULL, 10);
			size_t used = (size_t)(nl + 1 - s->buf);
			memmove(s->buf, nl + 1, s->len - used);
			s->len -= used;
			return 0;
		}
		ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len);
		if (n > 0) {
			s->len += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EINTR)
			die("read %s: %s", s->path, strerror(errno));
		int64_t left = (end - mono_ns()) / 1000000;
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = s->ino, .events = POLLIN};
		if (poll(&p, 1, (int)(left > 1000 ? 1000 : left + 1)) > 0) {
			char ev[4096];
			while (read(s->ino, ev, sizeof ev) > 0)
				;
		}
	}
}

/* ---- statistics ---- */

typedef struct series {
	double *v; /* milliseconds */
	size_t n;
} series;


/* Nearest-rank percentile of a sorted series. */
static double pct(const series *s, double p)
{
	if (!s->n)
		return 0;
	size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > s->n)
		rank = s->n;
	return s->v[rank - 1];
}

static void series_sort(series *s)
{
	qsort(s->v, s->n, sizeof *s->v, cmp_double);
}

static void print_series(const char *name, series *s)
{
	series_sort(s);
	printf("dispatch.%s.min_ms %.3f\n", name, s->v[0]);
	printf("dispatch.%s.p50_ms %.3f\n", name, pct(s, 50));
	printf("dispatch.%s.p90_ms %.3f\n", name, pct(s, 90));
	printf("dispatch.%s.p99_ms %.3f\n", name, pct(s, 99));
	printf("dispatch.%s.max_ms %.3f\n", name, s->v[s->n - 1]);
}

/* ---- floor 1: an nng REQ/REP round trip over tcp loopback ---- */

static void *rep_main(void *arg)
{
	nng_socket *rep = arg;
	for (;;) {
		void *buf = NULL;
		size_t sz = 0;
		if (nng_recv(*rep, &buf, &sz, NNG_FLAG_ALLOC) != 0)
			break;
		if (nng_send(*rep, buf, sz, NNG_FLAG_ALLOC) != 0) {
			nng_free(buf, sz);
			break;
		}
	}
	return NULL;
}

static void floor_rtt(size_t iters, series *out)
{
	nng_socket rep, req;
	nng_listener l;
	int r = nng_rep0_open(&rep);
	if (r == 0)
		r = nng_listener_create(&l, rep, "tcp://127.0.0.1:0");
	if (r == 0)
		r = nng_listener_start(l, 0);
	int port = 0;
	if (r == 0)
		r = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port);
	if (r != 0)
		die("floor: rep: %s", nng_strerror(r));
	pthread_t t;
	if (pthread_create(&t, NULL, rep_main, &rep) != 0)
		die("floor: cannot start a thread");
	char url[64];
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
	if ((r = nng_req0_open(&req)) != 0 || (r = nng_dial(req, url, NULL, 0)) != 0)
		die("floor: req: %s", nng_strerror(r));
	char msg[64];
	memset(msg, 'x', sizeof msg);
	out->v = kiln_calloc(iters, sizeof *out->v);
	out->n = 0;
	for (size_t i = 0; i < iters + 50; i++) {
		int64_t t0 = mono_ns();
		void *buf = NULL;
		size_t sz = 0;
		if ((r = nng_send(req, msg, sizeof msg, 0)) != 0 ||
		    (r = nng_recv(req, &buf, &sz, NNG_FLAG_ALLOC)) != 0)
			die("floor: round trip: %s", nng_strerror(r));
		int64_t t1 = mono_ns();
		nng_free(buf, sz);
		if (i >= 50) /* the first ones warm up the connection */
			out->v[out->n++] = (double)(t1 - t0) / 1e6;
	}
	nng_close(req);
	nng_close(rep);
	pthread_join(t, NULL);
}

/* ---- floor 2: posix_spawn of the stamp program until its main() runs ---- */

static pid_t spawn(const char *prog, char *const argv[])
{
	pid_t pid;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	int e = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e)
		die("posix_spawn %s: %s", prog, strerror(e));
	return pid;
}

static void reap(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("floor: child %d failed (wait status %d)", (int)pid, st);
}

static void floor_spawn(const char *self, const char *file, size_t iters, series *to_main,
			series *true_exit)
{
	stamps s;
	stamps_open(&s, file);
	char *argv[] = {(char *)self, "--stamp", (char *)file, "unused", NULL};
	to_main->v = kiln_calloc(iters, sizeof *to_main->v);
	to_main->n = 0;
	for (size_t i = 0; i < iters + 10; i++) {
		int64_t t0 = mono_ns();
		pid_t pid = spawn(self, argv);
		int64_t ts;
		reap(pid); /* it stamps before it exits */
		if (stamps_next(&s, 1000, &ts) < 0)
			die("floor: %s did not stamp", self);
		if (i >= 10)
			to_main->v[to_main->n++] = (double)(ts - t0) / 1e6;
	}
	stamps_close(&s);

	/* for reference: /bin/true, spawn to reaped exit */
	char *targv[] = {"true", NULL};
	true_exit->v = kiln_calloc(iters, sizeof *true_exit->v);
	true_exit->n = 0;
	for (size_t i = 0; i < iters + 10; i++) {
		int64_t t0 = mono_ns();
		reap(spawn("/bin/true", targv));
		int64_t t1 = mono_ns();
		if (i >= 10)
			true_exit->v[true_exit->n++] = (double)(t1 - t0) / 1e6;
	}
}

/* ---- the machine: what a file creation costs where the agent works ---- */


/* What creating inodes costs in dir, done as the agent does for each job on its way from
   assignment to spawn: mkdir <dir>/N, N/workspace, N/temp, then create N/temp/script.
   *per_inode gets the p50 of the single creations, *per_job the p50 of the four together.
   This explains a part of the figures on a slow file system; it is not part of the floor. */
static void fs_probe(const char *dir, size_t iters, double *per_inode, double *per_job)
{
	series one = {kiln_calloc(4 * iters, sizeof(double)), 0};
	series four = {kiln_calloc(iters, sizeof(double)), 0};
	for (size_t i = 0; i < iters; i++) {
		char *p[4] = {
			kiln_asprintf("%s/fsprobe-%zu", dir, i),
			kiln_asprintf("%s/fsprobe-%zu/workspace", dir, i),
			kiln_asprintf("%s/fsprobe-%zu/temp", dir, i),
			kiln_asprintf("%s/fsprobe-%zu/temp/script", dir, i),
		};
		int64_t t[5];
		t[0] = mono_ns();
		for (int k = 0; k < 4; k++) {
			if (k < 3 && mkdir(p[k], 0750) < 0)
				die("mkdir %s: %s", p[k], strerror(errno));
			if (k == 3) {
				int fd = open(p[k], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
				if (fd < 0)
					die("%s: %s", p[k], strerror(errno));
				close(fd);
			}
			t[k + 1] = mono_ns();
			one.v[one.n++] = (double)(t[k + 1] - t[k]) / 1e6;
		}
		four.v[four.n++] = (double)(t[4] - t[0]) / 1e6;
		kiln_rm_rf(p[0]);
		for (int k = 0; k < 4; k++)
			free(p[k]);
		sleep_ns(2000000);
	}
	series_sort(&one);
	series_sort(&four);
	*per_inode = pct(&one, 50);
	*per_job = pct(&four, 50);
	free(one.v);
	free(four.v);
}

/* ---- kiln ---- */




/* Follows the run's log (long poll) until the run is done; dies unless it succeeded. */
static void wait_run_done(coord *c, long long id)
{
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/log", id);
	long long offset = 0;
	int64_t end = mono_ns() + (int64_t)RUN_DONE_TIMEOUT_MS * 1000000;
	for (;;) {
		char query[64];
		snprintf(query, sizeof query, "offset=%lld&wait=10", offset);
		json_t *v = api(c, "GET", path, query, NULL, 200);
		offset = json_integer_value(json_object_get(v, "next"));
		bool done = json_is_true(json_object_get(v, "done"));
		const char *state = json_string_value(json_object_get(v, "state"));
		if (done || (state && strcmp(state, "completed") == 0)) {
			const char *concl = json_string_value(json_object_get(v, "conclusion"));
			if (!concl || strcmp(concl, "success") != 0) {
				_cleanup_free_ char *dump = json_dumps(v, JSON_COMPACT);
				die("run %lld did not succeed: %s", id, dump);
			}
			json_decref(v);
			return;
		}
		json_decref(v);
		if (mono_ns() > end)
			die("run %lld did not complete within %d ms", id, RUN_DONE_TIMEOUT_MS);
	}
}

/* Dies with the run's log when it completed without its step having stamped. */
static void check_not_failed(coord *c, long long id)
{
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/log", id);
	json_t *v = api(c, "GET", path, NULL, NULL, 200);
	const char *state = json_string_value(json_object_get(v, "state"));
	if (!state || strcmp(state, "completed") != 0) {
		json_decref(v);
		return;
	}
	fprintf(stderr, "bench_dispatch: the log of run %lld:\n", id);
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(v, "lines"), i, l)
		fprintf(stderr, "  %s\n", json_string_value(json_object_get(l, "text")));
	die("run %lld completed (%s) but its step never started", id,
	    json_string_value(json_object_get(v, "conclusion")));
}

typedef struct opts {
	size_t jobs, warmup, rtt_iters, spawn_iters;
	const char *stamp_prog;
	bool check, keep;
} opts;

static void usage(FILE *f)
{
	fputs("Usage: bench_dispatch [--jobs N] [--warmup N] [--rtt-iters N] [--spawn-iters N]\n"
	      "                      [--stamp-prog PATH] [--check] [--keep]\n"
	      "\n"
	      "Latency from submitting a run to its step's process starting, one idle agent\n"
	      "on tcp loopback, jobs one after another; and the floor (nng round trip +\n"
	      "posix_spawn) measured in the same process.\n"
	      "\n"
	      "  --jobs N         measured jobs (default 300)\n"
	      "  --warmup N       jobs run first and not counted (default 10)\n"
	      "  --rtt-iters N    nng round trips for the floor (default 1000)\n"
	      "  --spawn-iters N  spawns for the floor (default 300)\n"
	      "  --stamp-prog P   the step's program: P --stamp FILE SCRIPT must append\n"
	      "                   CLOCK_MONOTONIC ns (first thing in main) and a newline to\n"
	      "                   FILE (default: this binary; bench/run.sh builds a static one)\n"
	      "  --check          exit 1 if a goal (p50 <= 2 ms, p99 <= 10 ms) is missed\n"
	      "  --keep           keep the temporary directory\n",
	      f);
}

static size_t parse_count(const char *opt, const char *v)
{
	char *end;
	unsigned long long n = v ? strtoull(v, &end, 10) : 0;
	if (!v || *end || n == 0 || n > 1000000)
		die("%s wants a positive number", opt);
	return (size_t)n;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "bench_dispatch: watchdog: gave up after " STR(WATCHDOG_S) " s\n";
	ssize_t w = write(2, msg, sizeof msg - 1);
	(void)w;
	_exit(3);
}

static bool has_space(const char *s)
{
	return strpbrk(s, " \t\r\n") != NULL;
}

int main(int argc, char **argv)
{
	/* First thing: when this process is a step's shell, this is the instant it started. */
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (argc >= 3 && strcmp(argv[1], "--stamp") == 0)
		return stamp_main(argv[2], (int64_t)start.tv_sec * 1000000000 + start.tv_nsec);

	opts o = {.jobs = 300, .warmup = 10, .rtt_iters = 1000, .spawn_iters = 300};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--jobs") == 0)
			o.jobs = parse_count(a, v), i++;
		else if (strcmp(a, "--warmup") == 0)
			o.warmup = v && strcmp(v, "0") == 0 ? 0 : parse_count(a, v), i++;
		else if (strcmp(a, "--rtt-iters") == 0)
			o.rtt_iters = parse_count(a, v), i++;
		else if (strcmp(a, "--spawn-iters") == 0)
			o.spawn_iters = parse_count(a, v), i++;
		else if (strcmp(a, "--stamp-prog") == 0 && v)
			o.stamp_prog = v, i++;
		else if (strcmp(a, "--check") == 0)
			o.check = true;
		else if (strcmp(a, "--keep") == 0)
			o.keep = true;
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}

	struct sigaction sa = {.sa_handler = on_alarm};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(WATCHDOG_S);
	kiln_log_setup("bench", KILN_LOG_ERR);

	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	/* the stamp program: this binary (--stamp mode), or a lighter one that takes the same
	   arguments (bench/run.sh builds a static one) */
	char prog[PATH_MAX];
	if (o.stamp_prog) {
		if (!realpath(o.stamp_prog, prog) || access(prog, X_OK) < 0)
			die("--stamp-prog %s: not an executable", o.stamp_prog);
	} else {
		snprintf(prog, sizeof prog, "%s", self);
	}
	_cleanup_free_ char *tmp = NULL;
	if (kiln_mkdtemp("kiln-bench-dispatch", &tmp) < 0)
		die("%s", kiln_errmsg());
	if (!o.keep)
		cleanup_dir = tmp;
	/* the step's shell template is split on whitespace */
	if (has_space(prog) || has_space(tmp))
		die("paths with whitespace are not supported: %s, %s", prog, tmp);
	_cleanup_free_ char *data = kiln_asprintf("%s/coordinator", tmp);
	_cleanup_free_ char *work = kiln_asprintf("%s/agent", tmp);
	_cleanup_free_ char *stamp_file = kiln_asprintf("%s/stamps", tmp);
	_cleanup_free_ char *floor_file = kiln_asprintf("%s/floor-stamps", tmp);

	/* ---- the floor ---- */
	series rtt = {0}, spawn_main = {0}, true_exit = {0};
	const char *fs = fs_name(tmp);
	floor_rtt(o.rtt_iters, &rtt);
	floor_spawn(prog, floor_file, o.spawn_iters, &spawn_main, &true_exit);

	/* ---- kiln: a coordinator and an agent on tcp loopback ---- */
	coord *c = NULL;
	agent *a = NULL;
	bench_start(data, work, 0, 10000, &c, &a);

	_cleanup_free_ char *yaml = kiln_asprintf("name: noop\n"
						  "on: push\n"
						  "jobs:\n"
						  "  noop:\n"
						  "    runs-on: linux\n"
						  "    steps:\n"
						  "      - name: stamp\n"
						  "        shell: %s --stamp %s {0}\n"
						  "        run: \":\"\n",
						  prog, stamp_file);
	json_t *body = json_pack("{s:s, s:s, s:s, s:b, s:[{s:s, s:s}]}", "repo", "/bench", "ref",
				 "refs/heads/main", "sha",
				 "0000000000000000000000000000000000000000", "worktree", 0, "files",
				 "path", ".github/workflows/noop.yml", "content", yaml);
	_cleanup_free_ char *body_text = json_dumps(body, JSON_COMPACT);
	json_decref(body);

	stamps st;
	stamps_open(&st, stamp_file);
	series s2s = {kiln_calloc(o.jobs, sizeof(double)), 0};
	series s2r = {kiln_calloc(o.jobs, sizeof(double)), 0};
	series r2s = {kiln_calloc(o.jobs, sizeof(double)), 0};
	unsigned seed = (unsigned)mono_ns();
	int64_t bench_t0 = mono_ns();
	for (size_t i = 0; i < o.warmup + o.jobs; i++) {
		wait_agent_idle(c, a, 10000);
		/* a short random pause, so that submissions do not lock into step with anything */
		sleep_ns(1000000 + (int64_t)(rand_r(&seed) % 2000000));

		int64_t t_submit = mono_ns();
		char *resp = NULL;
		int status = coord_api_sync(c, "POST", "/api/v1/runs", NULL, body_text, &resp);
		int64_t t_ready = mono_ns();
		json_t *v = resp ? json_loads(resp, 0, NULL) : NULL;
		json_t *run = json_array_get(json_object_get(v, "runs"), 0);
		if (status != 201 || !run)
			die("POST /api/v1/runs: status %d: %s", status, resp ? resp : "(no body)");
		long long id = json_integer_value(json_object_get(run, "id"));
		json_decref(v);
		free(resp);

		int64_t t_start;
		for (int waited = 0; stamps_next(&st, 1000, &t_start) < 0;) {
			check_not_failed(c, id);
			if ((waited += 1000) >= STEP_START_TIMEOUT_MS)
				die("run %lld: the step did not start within %d ms", id,
				    STEP_START_TIMEOUT_MS);
		}
		wait_run_done(c, id);
		if (i < o.warmup)
			continue;
		s2s.v[s2s.n++] = (double)(t_start - t_submit) / 1e6;
		s2r.v[s2r.n++] = (double)(t_ready - t_submit) / 1e6;
		r2s.v[r2s.n++] = (double)(t_start - t_ready) / 1e6;
	}
	double kiln_s = (double)(mono_ns() - bench_t0) / 1e9;
	stamps_close(&st);
	/* right after the runs, beside the agent's slot (workspace) directories */
	double fs_inode = 0, fs_job = 0;
	_cleanup_free_ char *jobs_dir = kiln_asprintf("%s/slots", work);
	fs_probe(jobs_dir, 30, &fs_inode, &fs_job);

	agent_free(a);
	coord_free(c);
	cleanup_dir = NULL;
	if (!o.keep)
		kiln_rm_rf(tmp);
	else
		fprintf(stderr, "bench_dispatch: kept %s\n", tmp);

	/* ---- report ---- */
	series_sort(&rtt);
	series_sort(&spawn_main);
	series_sort(&true_exit);
	double floor_ms = pct(&rtt, 50) + pct(&spawn_main, 50);
	printf("# dispatch: %zu no-op jobs one after another (after %zu warm-up), one agent\n"
	       "# (capacity 1) on tcp loopback, idle with its Poll held when each job arrives.\n"
	       "# submit_to_start: just before POST /api/v1/runs -> the step process's main()\n"
	       "#   (stricter than job-ready: includes planning and the store writes).\n"
	       "# submit_to_ready: the POST (run planned and written, job ready).\n"
	       "# ready_to_start: POST reply -> main(); kiln answers the held Poll before it\n"
	       "#   replies to the POST, so this is only what is left after the reply.\n"
	       "# floor: p50 nng REQ/REP round trip (tcp loopback) + p50 posix_spawn of the\n"
	       "#   same stamp program until its main().\n",
	       o.jobs, o.warmup);
#ifdef __OPTIMIZE__
	const char *optimized = "yes";
#else
	const char *optimized = "no";
#endif
	printf("dispatch.env.cpus %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("dispatch.env.optimized %s\n", optimized);
	printf("dispatch.env.fs %s\n", fs);
	printf("dispatch.env.fs_inode_create.p50_ms %.3f\n", fs_inode);
	printf("dispatch.env.fs_job_dirs.p50_ms %.3f\n", fs_job);
	printf("dispatch.env.stamp_prog %s\n", o.stamp_prog ? prog : "self");
	if (!o.stamp_prog)
		printf("# note: the stamp program is this binary; loading its shared libraries is part\n"
		       "#   of every figure (see floor.spawn_to_main). bench/run.sh passes a static one.\n");
	printf("dispatch.jobs %zu\n", s2s.n);
	print_series("submit_to_start", &s2s);
	print_series("submit_to_ready", &s2r);
	print_series("ready_to_start", &r2s);
	printf("dispatch.floor.nng_rtt.p50_ms %.3f\n", pct(&rtt, 50));
	printf("dispatch.floor.nng_rtt.p99_ms %.3f\n", pct(&rtt, 99));
	printf("dispatch.floor.spawn_to_main.p50_ms %.3f\n", pct(&spawn_main, 50));
	printf("dispatch.floor.spawn_to_main.p99_ms %.3f\n", pct(&spawn_main, 99));
	printf("dispatch.floor.spawn_true_to_exit.p50_ms %.3f\n", pct(&true_exit, 50));
	printf("dispatch.floor.p50_ms %.3f\n", floor_ms);
	double p50 = pct(&s2s, 50), p99 = pct(&s2s, 99);
	printf("dispatch.ratio.p50_over_floor %.2f\n", floor_ms > 0 ? p50 / floor_ms : 0);
	printf("dispatch.kiln_phase_s %.2f\n", kiln_s);
	bool ok50 = p50 <= GOAL_P50_MS, ok99 = p99 <= GOAL_P99_MS;
	printf("dispatch.goal.p50 %s %.3f <= %.1f ms\n", ok50 ? "PASS" : "FAIL", p50, GOAL_P50_MS);
	printf("dispatch.goal.p99 %s %.3f <= %.1f ms\n", ok99 ? "PASS" : "FAIL", p99, GOAL_P99_MS);
	printf("dispatch.result %s\n", ok50 && ok99 ? "PASS" : "FAIL");
	fflush(stdout);

	free(rtt.v);
	free(spawn_main.v);
	free(true_exit.v);
	free(s2s.v);
	free(s2r.v);
	free(r2s.v);
	return o.check && !(ok50 && ok99) ? 1 : 0;
}
