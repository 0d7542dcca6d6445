/*
 * bench/steps — what a step costs kiln beyond running its process: one job of
 * 200 `run: true` steps (kiln's default shell, `bash --noprofile --norc -eo
 * pipefail FILE`) against a bare loop that does the same 200 times in this
 * process, measured in the same run.
 *
 * One process holds a coordinator (bus on tcp://127.0.0.1:0, no HTTP, store in
 * a temporary directory) and an agent (labels "linux", capacity 1) that dials
 * it over real TCP on loopback. Runs are submitted through the in-process API
 * (POST /api/v1/runs, an inline workflow, no checkout).
 *
 * kiln's figure is the job's wall time from its first step's start to its last
 * step's end, divided by the number of steps, taken from the step timestamps
 * the coordinator stores (GET /api/v1/runs/ID: steps[].started_ms and
 * finished_ms, set by the agent around each step). Those are whole
 * milliseconds of the wall clock, but they span the whole job (0.3-0.5 s), so
 * their resolution costs < 0.5 %, and no dispatch, job set-up or completion is
 * in them: exactly the per-step work, including what the agent does between
 * two steps. As a cross-check with CLOCK_MONOTONIC, the benchmark also times
 * each run from just before its POST until it is seen completed for a 200-step
 * and a 1-step job; (wall(200) - wall(1)) / 199 is the per-step cost with the
 * dispatch and the job's fixed costs subtracted. While the steps run, the
 * benchmark looks at agent_running() every 2 ms (and at the API every 20 ms,
 * every 2 ms in the first 20 ms),
 * so as not to wake kiln's threads; once the job thread is gone it polls GET
 * /api/v1/runs?limit=1 every 0.5 ms.
 *
 * The baseline, in this process: 200 x (write the same script to a new file
 * in the same kind of directory the agent puts its step scripts in — /dev/shm
 * when it is writable, as the agent does — then posix_spawn the same shell
 * with stdin, stdout and stderr on /dev/null, waitpid, unlink). To tell the
 * runner apart from the rest of kiln, a third loop calls agent_step_run()
 * (agent/runner.h, what the job thread calls for each step) 200 times.
 *
 * Each repetition runs the baseline loop, the runner loop and the 200-step job
 * (then a 1-step job), in an order that rotates from one repetition to the
 * next; figures are medians over the repetitions, the ratio is the median of
 * the per-repetition ratios. getrusage() gives the CPU time of this process's
 * threads (coordinator, agent, benchmark) and of the reaped steps for each.
 * Goal: kiln's per-step time <= 1.3 x the baseline's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent/agent.h"
#include "agent/runner.h"
#include "common/util.h"
#include "coordinator/coord.h"

#define BENCH_NAME "bench_steps"
#include "bench/bench.h"

extern char **environ;

#define GOAL_RATIO 1.3
#define RUN_DONE_TIMEOUT_MS 60000
#define WATCHDOG_S 170
#define STR_(x) #x
#define STR(x) STR_(x)






/* Median of v[0..n) (sorts v). */
static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double min_of(const double *v, size_t n)
{
	double m = v[0];
	for (size_t i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static double max_of(const double *v, size_t n)
{
	double m = v[0];
	for (size_t i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

static void loadavg(char *buf, size_t n)
{
	snprintf(buf, n, "?");
	FILE *f = fopen("/proc/loadavg", "r");
	if (!f)
		return;
	double a, b, c;
	if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
		snprintf(buf, n, "%.2f %.2f %.2f", a, b, c);
	fclose(f);
}

/* CPU time (user + system, ms) of this process's threads (who = RUSAGE_SELF) or of its
   reaped children (RUSAGE_CHILDREN). */
static double cpu_ms(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

typedef struct cpu_mark {
	double self, children;
} cpu_mark;

static cpu_mark cpu_now(void)
{
	return (cpu_mark){cpu_ms(RUSAGE_SELF), cpu_ms(RUSAGE_CHILDREN)};
}


/* The program's path in $PATH, as the agent looks it up; owned, or NULL. */
static char *which(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *s = path;;) {
		size_t n = strcspn(s, ":");
		if (n) {
			char *cand = kiln_asprintf("%.*s/%s", (int)n, s, prog);
			struct stat st;
			if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
				return cand;
			free(cand);
		}
		if (!s[n])
			return NULL;
		s += n + 1;
	}
}

/* ---- the baseline: script file + posix_spawn + waitpid, n times ---- */

static const char SCRIPT[] = "true"; /* what the agent writes for `run: true` */

/* Per-step milliseconds of n bare steps. shell_argv has "{0}" where the script goes. */
static double baseline(const char *dir, const char *prog, char *const shell_argv[], size_t n)
{
	size_t argc = 0;
	while (shell_argv[argc])
		argc++;
	char **argv = kiln_calloc(argc + 1, sizeof *argv);
	int64_t t0 = mono_ns();
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s/base-%zu.sh", dir, i);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
		if (fd < 0)
			die("%s: %s", path, strerror(errno));
		if (write(fd, SCRIPT, sizeof SCRIPT - 1) != (ssize_t)(sizeof SCRIPT - 1))
			die("write %s: %s", path, strerror(errno));
		close(fd);
		for (size_t k = 0; k < argc; k++)
			argv[k] = strcmp(shell_argv[k], "{0}") == 0 ? path : shell_argv[k];
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
		pid_t pid;
		int e = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
		posix_spawn_file_actions_destroy(&fa);
		if (e)
			die("posix_spawn %s: %s", prog, strerror(e));
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			die("baseline: %s failed (wait status %d)", prog, st);
		unlink(path);
	}
	int64_t t1 = mono_ns();
	free(argv);
	return (double)(t1 - t0) / 1e6 / (double)n;
}

/* ---- kiln's runner alone: agent_step_run() n times from this thread ---- */

/* Per-step milliseconds of n steps run with agent_step_run() as the agent's job thread calls it
   (default shell, script in script_dir, working directory cwd, output read through pipes), without
   the job around it (no GITHUB_OUTPUT & co. files, no updates, no log lines). */
static double runner(const char *script_dir, const char *cwd, size_t n)
{
	int64_t t0 = mono_ns();
	for (size_t i = 0; i < n; i++) {
		agent_step_spec spec = {
			.script = SCRIPT,
			.cwd = cwd,
			.temp_dir = cwd,
			.script_dir = script_dir,
		};
		agent_step_result res;
		if (agent_step_run(&spec, &res) < 0 || res.exit_code != 0)
			die("agent_step_run: %s (exit %d)", kiln_errmsg(), res.exit_code);
	}
	return (double)(mono_ns() - t0) / 1e6 / (double)n;
}

/* ---- kiln ---- */




/* The POST body of a run with one job of n `run: true` steps; owned. */
static char *job_body(size_t n)
{
	kiln_buf y = {0};
	kiln_buf_puts(&y, "name: steps\n"
			  "on: push\n"
			  "jobs:\n"
			  "  steps:\n"
			  "    runs-on: linux\n"
			  "    steps:\n");
	for (size_t i = 0; i < n; i++)
		kiln_buf_printf(&y, "      - run: %s\n", SCRIPT);
	json_t *body = json_pack("{s:s, s:s, s:s, s:b, s:[{s:s, s:s}]}", "repo", "/bench", "ref",
				 "refs/heads/main", "sha",
				 "0000000000000000000000000000000000000000", "worktree", 0, "files",
				 "path", ".github/workflows/steps.yml", "content", y.p);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	kiln_buf_free(&y);
	return text;
}

typedef struct job_figures {
	double wall_ms;     /* CLOCK_MONOTONIC: just before the POST -> seen completed */
	double span_ms;     /* first step's started_ms -> last step's finished_ms */
	double in_steps_ms; /* sum over steps of finished_ms - started_ms */
	double setup_ms;    /* job started_ms -> first step's started_ms */
	double end_ms;      /* last step's finished_ms -> job finished_ms */
} job_figures;

/* Runs one job of n steps (body from job_body(n)) and waits until it has completed. */
static void run_job(coord *c, agent *a, const char *body, size_t n, job_figures *out)
{
	wait_agent_idle(c, a, 10000);
	int64_t t0 = mono_ns();
	json_t *v = api(c, "POST", "/api/v1/runs", NULL, body, 201);
	long long id = json_integer_value(json_object_get(json_array_get(json_object_get(v, "runs"), 0), "id"));
	json_decref(v);
	if (id <= 0)
		die("POST /api/v1/runs: no run id");
	/* Wait without waking kiln's threads while the steps run: agent_running() is a mutex in
	   this process. Once the job thread is gone, poll the cheapest view of the run (the newest
	   row of the runs table) every 0.5 ms until the coordinator has the job's result. */
	int64_t end = t0 + (int64_t)RUN_DONE_TIMEOUT_MS * 1000000;
	bool seen_running = false;
	for (unsigned i = 0;; i++) {
		int running = agent_running(a);
		seen_running |= running > 0;
		bool job_gone = seen_running && running == 0;
		/* while the job runs, 20 ms apart (2 ms in its first 20 ms), in case it came and
		   went between two looks */
		if (job_gone || i % 10 == 0 || mono_ns() - t0 < 20000000) {
			json_t *l = api(c, "GET", "/api/v1/runs", "limit=1", NULL, 200);
			json_t *r = json_array_get(json_object_get(l, "runs"), 0);
			const char *state = json_string_value(json_object_get(r, "state"));
			bool done = json_integer_value(json_object_get(r, "id")) == id && state &&
				    strcmp(state, "completed") == 0;
			json_decref(l);
			if (done)
				break;
		}
		if (mono_ns() > end)
			die("run %lld did not complete within %d ms", id, RUN_DONE_TIMEOUT_MS);
		sleep_ns(job_gone ? 500000 : 2000000);
	}
	int64_t t1 = mono_ns();
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld", id);
	v = api(c, "GET", path, NULL, NULL, 200);
	json_t *job = json_array_get(json_object_get(v, "jobs"), 0);
	json_t *steps = json_object_get(job, "steps");
	const char *concl = json_string_value(json_object_get(v, "conclusion"));
	if (!concl || strcmp(concl, "success") != 0 || json_array_size(steps) != n) {
		_cleanup_free_ char *dump = json_dumps(v, JSON_COMPACT);
		die("run %lld: expected %zu successful steps: %.2000s", id, n, dump);
	}
	double sum = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(steps, i);
		sum += (double)(json_integer_value(json_object_get(s, "finished_ms")) -
				json_integer_value(json_object_get(s, "started_ms")));
	}
	int64_t first = json_integer_value(json_object_get(json_array_get(steps, 0), "started_ms"));
	int64_t last = json_integer_value(json_object_get(json_array_get(steps, n - 1), "finished_ms"));
	out->wall_ms = (double)(t1 - t0) / 1e6;
	out->span_ms = (double)(last - first);
	out->in_steps_ms = sum;
	out->setup_ms = (double)(first - json_integer_value(json_object_get(job, "started_ms")));
	out->end_ms = (double)(json_integer_value(json_object_get(job, "finished_ms")) - last);
	json_decref(v);
}

/* ---- main ---- */

typedef struct opts {
	size_t steps, reps;
	bool check, keep, rt;
} opts;

static void usage(FILE *f)
{
	fputs("Usage: bench_steps [--steps N] [--reps N] [--rt] [--check] [--keep]\n"
	      "\n"
	      "Per-step overhead: one job of N `run: true` steps through a coordinator and an\n"
	      "agent on tcp loopback, against N x (script file + posix_spawn of the same shell\n"
	      "+ waitpid) in this process.\n"
	      "\n"
	      "  --steps N   steps in the job (default 200)\n"
	      "  --reps N    repetitions; figures are medians (default 7)\n"
	      "  --rt        run under SCHED_FIFO priority 1 (threads and steps inherit it), so\n"
	      "              that other load on the machine does not preempt the benchmark;\n"
	      "              needs CAP_SYS_NICE. Starves other work for the ~10 s it runs\n"
	      "  --check     exit 1 if the goal (kiln <= 1.3 x baseline per step) is missed\n"
	      "  --keep      keep the temporary directory\n",
	      f);
}

static size_t parse_count(const char *opt, const char *v)
{
	char *end;
	unsigned long long n = v ? strtoull(v, &end, 10) : 0;
	if (!v || *end || n == 0 || n > 100000)
		die("%s wants a positive number", opt);
	return (size_t)n;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "bench_steps: watchdog: gave up after " STR(WATCHDOG_S) " s\n";
	ssize_t w = write(2, msg, sizeof msg - 1);
	(void)w;
	_exit(3);
}

int main(int argc, char **argv)
{
	opts o = {.steps = 200, .reps = 7};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--steps") == 0)
			o.steps = parse_count(a, v), i++;
		else if (strcmp(a, "--reps") == 0)
			o.reps = parse_count(a, v), i++;
		else if (strcmp(a, "--check") == 0)
			o.check = true;
		else if (strcmp(a, "--keep") == 0)
			o.keep = true;
		else if (strcmp(a, "--rt") == 0)
			o.rt = true;
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (o.steps < 2)
		die("--steps wants at least 2");
	/* before any thread exists: every thread and child inherits the policy */
	if (o.rt) {
		struct sched_param sp = {.sched_priority = 1};
		if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
			die("--rt: sched_setscheduler(SCHED_FIFO): %s", strerror(errno));
	}

	struct sigaction sa = {.sa_handler = on_alarm};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(WATCHDOG_S);
	kiln_log_setup("bench", KILN_LOG_ERR);
	char load0[64], load1[64];
	loadavg(load0, sizeof load0);

	/* the shell the agent will pick for a step without `shell:` (runner.c resolve_shell) */
	char *prog = which("bash");
	char *bash_argv[] = {"bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}", NULL};
	char *sh_argv[] = {"sh", "-e", "{0}", NULL};
	char **shell_argv = bash_argv;
	if (!prog) {
		prog = which("sh");
		shell_argv = sh_argv;
		if (!prog)
			die("neither bash nor sh in PATH");
	}

	_cleanup_free_ char *tmp = NULL;
	if (kiln_mkdtemp("kiln-bench-steps", &tmp) < 0)
		die("%s", kiln_errmsg());
	if (!o.keep)
		cleanup_dir = tmp;
	/* the baseline's scripts go where the agent's go: a directory on /dev/shm if it can */
	_cleanup_free_ char *sdir = NULL;
	if (access("/dev/shm", W_OK) == 0 && kiln_mkdtemp_in("/dev/shm", "kiln-bench-steps", &sdir) == 0) {
		cleanup_dir2 = sdir;
	} else {
		sdir = kiln_asprintf("%s/scripts", tmp);
		if (kiln_mkdir_p(sdir, 0700) < 0)
			die("%s", kiln_errmsg());
	}
	_cleanup_free_ char *data = kiln_asprintf("%s/coordinator", tmp);
	_cleanup_free_ char *work = kiln_asprintf("%s/agent", tmp);
	_cleanup_free_ char *rws = kiln_asprintf("%s/runner-workspace", tmp);
	if (kiln_mkdir_p(rws, 0750) < 0)
		die("%s", kiln_errmsg());

	coord *c = NULL;
	agent *a = NULL;
	bench_start(data, work, 0, 10000, &c, &a);

	_cleanup_free_ char *body_n = job_body(o.steps);
	_cleanup_free_ char *body_1 = job_body(1);
	size_t warm = o.steps < 20 ? o.steps : 20;
	_cleanup_free_ char *body_w = job_body(warm);

	/* warm-up, not counted: caches, the store, the connection */
	job_figures jf = {0}, j1 = {0};
	run_job(c, a, body_w, warm, &jf);
	baseline(sdir, prog, shell_argv, warm);
	runner(sdir, rws, warm);

	size_t R = o.reps;
	double *base = kiln_calloc(R, sizeof *base), *kiln = kiln_calloc(R, sizeof *kiln),
	       *ratio = kiln_calloc(R, sizeof *ratio), *diff = kiln_calloc(R, sizeof *diff),
	       *inside = kiln_calloc(R, sizeof *inside), *between = kiln_calloc(R, sizeof *between),
	       *wall = kiln_calloc(R, sizeof *wall), *wall1 = kiln_calloc(R, sizeof *wall1),
	       *setup = kiln_calloc(R, sizeof *setup), *endj = kiln_calloc(R, sizeof *endj),
	       *kcpu = kiln_calloc(R, sizeof *kcpu), *kchild = kiln_calloc(R, sizeof *kchild),
	       *bcpu = kiln_calloc(R, sizeof *bcpu), *bchild = kiln_calloc(R, sizeof *bchild),
	       *run = kiln_calloc(R, sizeof *run), *rratio = kiln_calloc(R, sizeof *rratio),
	       *rcpu = kiln_calloc(R, sizeof *rcpu), *rchild = kiln_calloc(R, sizeof *rchild);
	double N = (double)o.steps;
	int64_t t_start = mono_ns();
	for (size_t r = 0; r < R; r++) {
		/* rotate the order, so that a drift in the machine's load spreads evenly */
		for (size_t k = 0; k < 3; k++) {
			switch ((r + k) % 3) {
			case 0: {
				cpu_mark m0 = cpu_now();
				base[r] = baseline(sdir, prog, shell_argv, o.steps);
				cpu_mark m1 = cpu_now();
				bcpu[r] = (m1.self - m0.self) / N;
				bchild[r] = (m1.children - m0.children) / N;
				break;
			}
			case 1: {
				cpu_mark m0 = cpu_now();
				run[r] = runner(sdir, rws, o.steps);
				cpu_mark m1 = cpu_now();
				rcpu[r] = (m1.self - m0.self) / N;
				rchild[r] = (m1.children - m0.children) / N;
				break;
			}
			default: {
				cpu_mark m0 = cpu_now();
				run_job(c, a, body_n, o.steps, &jf);
				cpu_mark m1 = cpu_now();
				kcpu[r] = (m1.self - m0.self) / N;
				kchild[r] = (m1.children - m0.children) / N;
				run_job(c, a, body_1, 1, &j1);
				break;
			}
			}
		}
		kiln[r] = jf.span_ms / N;
		ratio[r] = kiln[r] / base[r];
		rratio[r] = run[r] / base[r];
		diff[r] = (jf.wall_ms - j1.wall_ms) / (N - 1);
		inside[r] = jf.in_steps_ms / N;
		between[r] = (jf.span_ms - jf.in_steps_ms) / (N - 1);
		wall[r] = jf.wall_ms;
		wall1[r] = j1.wall_ms;
		setup[r] = jf.setup_ms;
		endj[r] = jf.end_ms;
		printf("# rep %zu: kiln %.3f ms/step (span %.0f ms, wall %.1f ms, 1-step wall %.1f ms,"
		       " cpu %.3f + children %.3f ms/step), runner %.3f ms/step, baseline %.3f ms/step"
		       " (cpu %.3f + children %.3f), ratio %.3f\n",
		       r + 1, kiln[r], jf.span_ms, jf.wall_ms, j1.wall_ms, kcpu[r], kchild[r], run[r],
		       base[r], bcpu[r], bchild[r], ratio[r]);
		fflush(stdout);
	}
	double phase_s = (double)(mono_ns() - t_start) / 1e9;
	loadavg(load1, sizeof load1);
	char fs[32], script_fs[32];
	snprintf(fs, sizeof fs, "%s", fs_name(tmp));
	snprintf(script_fs, sizeof script_fs, "%s", fs_name(sdir));

	agent_free(a);
	coord_free(c);
	if (!o.keep) {
		kiln_rm_rf(tmp);
		cleanup_dir = NULL;
	} else {
		fprintf(stderr, "bench_steps: kept %s\n", tmp);
	}
	if (cleanup_dir2)
		kiln_rm_rf(sdir);
	cleanup_dir2 = NULL;

	/* ---- report ---- */
#ifdef __OPTIMIZE__
	const char *optimized = "yes";
#else
	const char *optimized = "no";
#endif
	printf("# steps: one job of %zu `run: %s` steps (default shell: %s), coordinator + agent\n"
	       "# on tcp loopback, vs %zu x (script file + posix_spawn + waitpid) in this process.\n"
	       "# kiln.per_step_ms: (last step's finished_ms - first step's started_ms) / steps,\n"
	       "#   from the stored step timestamps. Medians over %zu repetitions.\n",
	       o.steps, SCRIPT, shell_argv[0], o.steps, R);
	printf("steps.env.cpus %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("steps.env.optimized %s\n", optimized);
	printf("steps.env.fs %s\n", fs);
	printf("steps.env.script_fs %s\n", script_fs);
	printf("steps.env.shell %s\n", prog);
	printf("steps.env.sched %s\n", o.rt ? "SCHED_FIFO/1" : "normal");
	printf("steps.env.loadavg_start %s\n", load0);
	printf("steps.env.loadavg_end %s\n", load1);
	printf("steps.count %zu\n", o.steps);
	printf("steps.reps %zu\n", R);
	double k50 = median(kiln, R), b50 = median(base, R), r50 = median(ratio, R);
	printf("steps.kiln.per_step_ms %.3f\n", k50);
	printf("steps.kiln.per_step.min_ms %.3f\n", min_of(kiln, R));
	printf("steps.kiln.per_step.max_ms %.3f\n", max_of(kiln, R));
	printf("steps.kiln.in_step_ms %.3f\n", median(inside, R));
	printf("steps.kiln.between_steps_ms %.3f\n", median(between, R));
	printf("steps.kiln.wall_diff_per_step_ms %.3f\n", median(diff, R));
	printf("steps.kiln.job_wall_ms %.1f\n", median(wall, R));
	printf("steps.kiln.job1_wall_ms %.1f\n", median(wall1, R));
	printf("steps.kiln.job_setup_ms %.1f\n", median(setup, R));
	printf("steps.kiln.job_end_ms %.1f\n", median(endj, R));
	printf("steps.kiln.cpu_per_step_ms %.3f\n", median(kcpu, R));
	printf("steps.kiln.children_cpu_per_step_ms %.3f\n", median(kchild, R));
	printf("steps.runner.per_step_ms %.3f\n", median(run, R));
	printf("steps.runner.ratio %.3f\n", median(rratio, R));
	printf("steps.runner.cpu_per_step_ms %.3f\n", median(rcpu, R));
	printf("steps.runner.children_cpu_per_step_ms %.3f\n", median(rchild, R));
	printf("steps.baseline.per_step_ms %.3f\n", b50);
	printf("steps.baseline.per_step.min_ms %.3f\n", min_of(base, R));
	printf("steps.baseline.per_step.max_ms %.3f\n", max_of(base, R));
	printf("steps.baseline.cpu_per_step_ms %.3f\n", median(bcpu, R));
	printf("steps.baseline.children_cpu_per_step_ms %.3f\n", median(bchild, R));
	printf("steps.overhead_per_step_ms %.3f\n", k50 - b50);
	printf("steps.ratio %.3f\n", r50);
	printf("steps.ratio.min %.3f\n", min_of(ratio, R));
	printf("steps.ratio.max %.3f\n", max_of(ratio, R));
	printf("steps.phase_s %.1f\n", phase_s);
	bool ok = r50 <= GOAL_RATIO;
	printf("steps.goal.ratio %s %.3f <= %.1f\n", ok ? "PASS" : "FAIL", r50, GOAL_RATIO);
	printf("steps.result %s\n", ok ? "PASS" : "FAIL");
	fflush(stdout);

	free(prog);
	free(base);
	free(kiln);
	free(ratio);
	free(diff);
	free(inside);
	free(between);
	free(wall);
	free(wall1);
	free(setup);
	free(endj);
	free(kcpu);
	free(kchild);
	free(bcpu);
	free(bchild);
	free(run);
	free(rratio);
	free(rcpu);
	free(rchild);
	return o.check && !ok ? 1 : 0;
}
