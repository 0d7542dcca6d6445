/*
 * bench/logs — how fast a step's output reaches the API: the latency of single
 * live lines, and the throughput of a big log, each against a floor measured
 * in the same run.
 *
 * One process holds a coordinator (bus on tcp://127.0.0.1:0, no HTTP, store in
 * a temporary directory, max_log_bytes raised so that nothing is truncated)
 * and an agent (labels "linux", capacity 1) that dials it over real TCP on
 * loopback. Runs are submitted through the in-process API (POST
 * /api/v1/runs, an inline workflow, no checkout). The step's program is this
 * binary, named as the step's shell (`shell: SELF --emit ... {0}`), so that
 * what runs is exactly the program below and not a shell around it.
 *
 * Latency: the step (--emit) writes --lines lines (default 300), one write(2)
 * each, 15-25 ms apart (random, mean 20 ms). Each line carries the
 * CLOCK_MONOTONIC time read just before its write(); the benchmark follows the
 * job's log with the API's long poll (GET /api/v1/jobs/ID/log?offset=N&wait=30
 * through coord_api_sync, as `kiln run` and the web UI's HTTP handler do) and
 * takes CLOCK_MONOTONIC as soon as a reply is in: arrival - emission per line.
 * Same machine, same clock. Goal: p99 <= 50 ms.
 *   to_agent_read: emission -> the time the agent read the line from the pipe
 *   (the line's stored `ts`, wall-clock milliseconds, turned into monotonic
 *   time with an offset measured here; +-1 ms), to tell the agent's side apart.
 *
 * Throughput: the step (--gen) writes --bytes (default 500 MB) of 100-byte
 * log-like lines (5 M of them), 64 KiB per write(2). kiln's figure is bytes /
 * (just before the POST -> the run seen completed), polling GET
 * /api/v1/jobs/ID every 20 ms; the agent sends the job's result only once the
 * coordinator has stored every line, so "completed" means all stored. The
 * last line is then read back through the API to check that all arrived. The
 * floor: the same generator piped into a file on the same file system
 * (`gen | cat > file`, /bin/cat), --base-reps times (median). Goal: kiln >=
 * 0.5 x the floor.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent/agent.h"
#include "common/util.h"
#include "coordinator/coord.h"

#define BENCH_NAME "bench_logs"
#include "bench/bench.h"

extern char **environ;

#define GOAL_P99_MS 50.0
#define GOAL_RATIO 0.5
#define WATCHDOG_S 600
#define STR_(x) #x
#define STR(x) STR_(x)
#define LINE_TAG "kiln-bench-line"


static int64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}




static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- --emit N: the latency step ---- */

static int emit_main(size_t lines, int64_t interval_ns)
{
	unsigned seed = (unsigned)mono_ns() ^ (unsigned)getpid();
	int64_t next = mono_ns();
	for (size_t i = 0; i < lines; i++) {
		char buf[96];
		int64_t t = mono_ns();
		int n = snprintf(buf, sizeof buf, LINE_TAG " %zu %" PRId64 "\n", i, t);
		if (write_all(1, buf, (size_t)n) < 0)
			return 1;
		/* 0.75 .. 1.25 x the interval, so that nothing locks into step with it */
		next += interval_ns * 3 / 4 + (int64_t)(rand_r(&seed) % 1000) * interval_ns / 2000;
		struct timespec ts = {.tv_sec = (time_t)(next / 1000000000),
				      .tv_nsec = (long)(next % 1000000000)};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
	return 0;
}

/* ---- --gen BYTES LEN: the throughput step (and the floor's generator) ---- */

/* Line i of the generated log (len bytes with its '\n'), into p. */
static void gen_line(char *p, size_t len, uint64_t i)
{
	static const char filler[] =
		"INFO  build: cc -O2 -Wall -c src/kiln/module_%s.c -o build/obj/module.o ok"
		" (0 warnings) lorem ipsum dolor sit amet consectetur adipiscing elit sed do ";
	char head[32];
	int h = snprintf(head, sizeof head, "[%012" PRIu64 "] ", i);
	size_t k = 0;
	for (; k < (size_t)h && k < len - 1; k++)
		p[k] = head[k];
	for (size_t f = 0; k < len - 1; k++, f = (f + 1) % (sizeof filler - 1))
		p[k] = filler[f];
	p[len - 1] = '\n';
}

/* Writes bytes/len lines of len bytes to stdout, 64 KiB (whole lines) per write. */
static int gen_main(uint64_t bytes, size_t len)
{
	uint64_t lines = bytes / len;
	size_t per = (64u << 10) / len;
	if (per == 0)
		per = 1;
	char *buf = kiln_malloc(per * len);
	/* the first line of the block as a template; only the 12-digit counter changes */
	for (size_t k = 0; k < per; k++)
		gen_line(buf + k * len, len, k);
	char digits[12];
	memcpy(digits, buf + 1, 12);
	uint64_t i = 0;
	while (i < lines) {
		size_t n = lines - i < per ? (size_t)(lines - i) : per;
		for (size_t k = 0; k < n; k++) {
			memcpy(buf + k * len + 1, digits, 12);
			for (int d = 11; d >= 0; d--) { /* the counter + 1, in decimal */
				if (digits[d] != '9') {
					digits[d]++;
					break;
				}
				digits[d] = '0';
			}
		}
		if (write_all(1, buf, n * len) < 0)
			return 1;
		i += n;
	}
	free(buf);
	return 0;
}

/* ---- statistics ---- */


/* Nearest-rank percentile of sorted v[0..n). */
static double pct(const double *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
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


/* Total size of the regular files directly in dir (0 if it cannot be read). */
static uint64_t dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	uint64_t sum = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

static char *which(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *s = path;;) {
		size_t n = strcspn(s, ":");
		if (n) {
			char *cand = kiln_asprintf("%.*s/%s", (int)n, s, prog);
			if (access(cand, X_OK) == 0)
				return cand;
			free(cand);
		}
		if (!s[n])
			return NULL;
		s += n + 1;
	}
}

/* ---- kiln ---- */




/* Submits a run of one job with one step run by `shell` (a template with {0}); returns the
   job's id. */
static long long submit(coord *c, const char *shell)
{
	_cleanup_free_ char *yaml = kiln_asprintf("name: logs\n"
						  "on: push\n"
						  "jobs:\n"
						  "  logs:\n"
						  "    runs-on: linux\n"
						  "    steps:\n"
						  "      - name: output\n"
						  "        shell: %s\n"
						  "        run: \":\"\n",
						  shell);
	json_t *body = json_pack("{s:s, s:s, s:s, s:b, s:[{s:s, s:s}]}", "repo", "/bench", "ref",
				 "refs/heads/main", "sha",
				 "0000000000000000000000000000000000000000", "worktree", 0, "files",
				 "path", ".github/workflows/logs.yml", "content", yaml);
	_cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	json_t *v = api(c, "POST", "/api/v1/runs", NULL, text, 201);
	long long run = json_integer_value(json_object_get(json_array_get(json_object_get(v, "runs"), 0), "id"));
	json_decref(v);
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld", run);
	v = api(c, "GET", path, NULL, NULL, 200);
	long long job = json_integer_value(json_object_get(json_array_get(json_object_get(v, "jobs"), 0), "id"));
	json_decref(v);
	if (run <= 0 || job <= 0)
		die("POST /api/v1/runs: no run or job id");
	return job;
}

/* Dies unless the job completed successfully; returns its step 0 (new reference). */
static json_t *check_job(coord *c, long long job)
{
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/jobs/%lld", job);
	json_t *v = api(c, "GET", path, NULL, NULL, 200);
	const char *concl = json_string_value(json_object_get(v, "conclusion"));
	if (!concl || strcmp(concl, "success") != 0) {
		_cleanup_free_ char *dump = json_dumps(v, JSON_COMPACT);
		die("job %lld did not succeed: %.2000s", job, dump);
	}
	json_t *s = json_incref(json_array_get(json_object_get(v, "steps"), 0));
	json_decref(v);
	return s;
}

/* ---- latency ---- */

typedef struct lat_figures {
	size_t n;
	double p50, p90, p99, max;                /* emission -> arrival through the API */
	double agent_p50, agent_p99, agent_max;   /* emission -> read by the agent (+-1 ms) */
	double replies;                           /* long-poll replies that brought lines */
} lat_figures;

static void latency(coord *c, agent *a, const char *self, size_t lines, int64_t interval_ms,
		    lat_figures *out)
{
	wait_agent_idle(c, a, 10000);
	_cleanup_free_ char *shell = kiln_asprintf("%s --emit %zu %lld {0}", self, lines,
						   (long long)interval_ms);
	/* wall clock -> monotonic, for the agent's read stamps: the smallest of a few readings */
	int64_t off = INT64_MAX;
	for (int i = 0; i < 20; i++) {
		int64_t m0 = mono_ns(), r = real_ns(), m1 = mono_ns();
		if (m1 - m0 < 20000 && r - (m0 + m1) / 2 < off)
			off = r - (m0 + m1) / 2;
	}
	long long job = submit(c, shell);
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/jobs/%lld/log", job);
	double *lat = kiln_calloc(lines, sizeof *lat), *ag = kiln_calloc(lines, sizeof *ag);
	bool *seen = kiln_calloc(lines, sizeof *seen);
	size_t got = 0, replies = 0;
	long long offset = 0;
	int64_t end = mono_ns() + (int64_t)(lines * (size_t)interval_ms * 2 + 60000) * 1000000;
	for (;;) {
		char q[64];
		snprintf(q, sizeof q, "offset=%lld&wait=30", offset);
		char *resp = NULL;
		int st = coord_api_sync(c, "GET", path, q, NULL, &resp);
		int64_t t_arr = mono_ns();
		json_t *v = resp ? json_loads(resp, 0, NULL) : NULL;
		if (st != 200 || !v)
			die("GET %s: status %d: %s", path, st, resp ? resp : "(no body)");
		free(resp);
		size_t i;
		json_t *l;
		bool any = false;
		json_array_foreach(json_object_get(v, "lines"), i, l)
		{
			const char *text = json_string_value(json_object_get(l, "text"));
			size_t seq;
			long long ns;
			if (!text || sscanf(text, LINE_TAG " %zu %lld", &seq, &ns) != 2 || seq >= lines)
				continue;
			if (seen[seq])
				die("line %zu arrived twice", seq);
			seen[seq] = true;
			lat[got] = (double)(t_arr - ns) / 1e6;
			/* the stamp is the wall-clock ms of the read, truncated: +0.5 ms on average */
			int64_t ts = json_integer_value(json_object_get(l, "ts"));
			ag[got] = (double)(ts * 1000000 + 500000 - off - ns) / 1e6;
			got++;
			any = true;
		}
		replies += any;
		offset = json_integer_value(json_object_get(v, "next"));
		bool done = json_is_true(json_object_get(v, "done"));
		json_decref(v);
		if (done)
			break;
		if (mono_ns() > end)
			die("job %lld: the log did not end in time (%zu of %zu lines)", job, got, lines);
	}
	json_decref(check_job(c, job));
	if (got != lines)
		die("job %lld: %zu of %zu lines arrived", job, got, lines);
	qsort(lat, got, sizeof *lat, cmp_double);
	qsort(ag, got, sizeof *ag, cmp_double);
	out->n = got;
	out->p50 = pct(lat, got, 50);
	out->p90 = pct(lat, got, 90);
	out->p99 = pct(lat, got, 99);
	out->max = lat[got - 1];
	/* to 0.1 ms (the stamps are whole ms), without a "-0.0" */
	out->agent_p50 = round(pct(ag, got, 50) * 10) / 10 + 0.0;
	out->agent_p99 = round(pct(ag, got, 99) * 10) / 10 + 0.0;
	out->agent_max = round(ag[got - 1] * 10) / 10 + 0.0;
	out->replies = (double)replies;
	free(lat);
	free(ag);
	free(seen);
}

/* The floor: the same emitter with its stdout on a pipe this thread reads (blocking read);
   arrival - emission per line. Sorted latencies (ms) into out[0..lines). */
static void latency_floor(const char *self, size_t lines, int64_t interval_ms, double *out)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	char n[32], iv[32];
	snprintf(n, sizeof n, "%zu", lines);
	snprintf(iv, sizeof iv, "%lld", (long long)interval_ms);
	char *argv[] = {(char *)self, "--emit", n, iv, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	pid_t pid;
	int e = posix_spawn(&pid, self, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e)
		die("posix_spawn %s: %s", self, strerror(e));
	close(p[1]);
	char buf[4096];
	size_t have = 0, got = 0;
	for (;;) {
		ssize_t r = read(p[0], buf + have, sizeof buf - 1 - have);
		int64_t t = mono_ns();
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += (size_t)r;
		char *s = buf, *nl;
		while ((nl = memchr(s, '\n', have - (size_t)(s - buf)))) {
			*nl = '\0';
			size_t seq;
			long long ns;
			if (sscanf(s, LINE_TAG " %zu %lld", &seq, &ns) == 2 && got < lines)
				out[got++] = (double)(t - ns) / 1e6;
			s = nl + 1;
		}
		have -= (size_t)(s - buf);
		memmove(buf, s, have);
	}
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (got != lines)
		die("latency floor: %zu of %zu lines", got, lines);
	qsort(out, got, sizeof *out, cmp_double);
}

/* ---- throughput ---- */

static pid_t spawn_fds(const char *prog, char *const argv[], int in, int out)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (in >= 0)
		posix_spawn_file_actions_adddup2(&fa, in, 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out, 1);
	pid_t pid;
	int e = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e)
		die("posix_spawn %s: %s", prog, strerror(e));
	return pid;
}

static void reap(pid_t pid, const char *what)
{
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("%s failed (wait status %d)", what, st);
}

/* The floor: `self --gen BYTES LEN | cat > file`; returns seconds. */
static double floor_pipe(const char *self, const char *cat, const char *file, uint64_t bytes,
			 size_t len)
{
	char b[32], l[32];
	snprintf(b, sizeof b, "%" PRIu64, bytes);
	snprintf(l, sizeof l, "%zu", len);
	char *gargv[] = {(char *)self, "--gen", b, l, NULL};
	char *cargv[] = {"cat", NULL};
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("%s: %s", file, strerror(errno));
	int64_t t0 = mono_ns();
	pid_t g = spawn_fds(self, gargv, -1, p[1]);
	pid_t k = spawn_fds(cat, cargv, p[0], fd);
	close(p[0]);
	close(p[1]);
	close(fd);
	reap(g, "the generator");
	reap(k, "cat");
	int64_t t1 = mono_ns();
	struct stat st;
	uint64_t want = bytes / len * len;
	if (stat(file, &st) < 0)
		die("%s: %s", file, strerror(errno));
	if ((uint64_t)st.st_size != want)
		die("%s: %lld bytes, expected %" PRIu64, file, (long long)st.st_size, want);
	unlink(file);
	return (double)(t1 - t0) / 1e9;
}

typedef struct bulk_figures {
	double total_s;       /* just before the POST -> seen completed (all stored) */
	double step_s;        /* the step's started_ms -> finished_ms: the agent read everything */
	double spool_peak_mb; /* the agent's spool files, largest total seen while polling */
	double stored_mb;     /* the coordinator's log files afterwards (job log + run log) */
	double read_tail_ms;  /* GET of the finished job's last line */
	uint64_t lines;
} bulk_figures;

static void bulk(coord *c, agent *a, const char *self, const char *work, const char *data,
		 uint64_t bytes, size_t len, bulk_figures *out)
{
	wait_agent_idle(c, a, 10000);
	_cleanup_free_ char *shell =
		kiln_asprintf("%s --gen %" PRIu64 " %zu {0}", self, bytes, len);
	_cleanup_free_ char *spool = kiln_asprintf("%s/spool", work);
	_cleanup_free_ char *logs = kiln_asprintf("%s/logs", data);
	uint64_t lines = bytes / len;
	uint64_t peak = 0;
	int64_t t0 = mono_ns();
	long long job = submit(c, shell);
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/jobs/%lld", job);
	for (;;) {
		uint64_t sp = dir_bytes(spool);
		peak = sp > peak ? sp : peak;
		json_t *v = api(c, "GET", path, NULL, NULL, 200);
		const char *state = json_string_value(json_object_get(v, "state"));
		bool done = state && strcmp(state, "completed") == 0;
		json_decref(v);
		if (done)
			break;
		if (mono_ns() - t0 > (int64_t)(WATCHDOG_S - 30) * 1000000000)
			die("job %lld: not completed after %d s", job, WATCHDOG_S - 30);
		sleep_ns(20000000);
	}
	int64_t t1 = mono_ns();
	json_t *step = check_job(c, job);
	out->step_s = (double)(json_integer_value(json_object_get(step, "finished_ms")) -
			       json_integer_value(json_object_get(step, "started_ms"))) /
		      1e3;
	json_decref(step);
	out->total_s = (double)(t1 - t0) / 1e9;
	out->spool_peak_mb = (double)peak / 1e6;
	out->stored_mb = (double)dir_bytes(logs) / 1e6;

	/* every line stored: find the first generated line, then read the last one back */
	_cleanup_free_ char *lpath = kiln_asprintf("/api/v1/jobs/%lld/log", job);
	json_t *v = api(c, "GET", lpath, "offset=0&limit=10", NULL, 200);
	long long first = -1;
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(v, "lines"), i, l)
	{
		const char *t = json_string_value(json_object_get(l, "text"));
		if (first < 0 && t && t[0] == '[')
			first = (long long)i;
	}
	json_decref(v);
	if (first < 0)
		die("job %lld: no generated line among the first 10", job);
	char q[64];
	snprintf(q, sizeof q, "offset=%lld&limit=10", first + (long long)lines - 1);
	int64_t r0 = mono_ns();
	v = api(c, "GET", lpath, q, NULL, 200);
	out->read_tail_ms = (double)(mono_ns() - r0) / 1e6;
	json_t *lines_a = json_object_get(v, "lines");
	char *expect = kiln_malloc(len + 1);
	gen_line(expect, len, lines - 1);
	expect[len - 1] = '\0';
	const char *t = json_string_value(json_object_get(json_array_get(lines_a, 0), "text"));
	if (json_array_size(lines_a) != 1 || !t || strcmp(t, expect) != 0 ||
	    !json_is_true(json_object_get(v, "done"))) {
		_cleanup_free_ char *dump = json_dumps(v, JSON_COMPACT);
		die("job %lld: the log does not end with line %" PRIu64 ": %.1000s", job, lines - 1,
		    dump);
	}
	free(expect);
	json_decref(v);
	out->lines = lines;
}

/* ---- main ---- */

typedef struct opts {
	size_t lines, base_reps;
	int64_t interval_ms;
	uint64_t bytes;
	size_t line_len;
	bool latency, bulk, check, keep;
} opts;

static void usage(FILE *f)
{
	fputs("Usage: bench_logs [--lines N] [--interval-ms N] [--bytes SIZE] [--line-len N]\n"
	      "                  [--base-reps N] [--only latency|bulk] [--check] [--keep]\n"
	      "\n"
	      "Live line latency through the API's long poll, and the throughput of a big log\n"
	      "against `gen | cat > file`; coordinator and agent on tcp loopback.\n"
	      "\n"
	      "  --lines N        latency: lines the step prints (default 300)\n"
	      "  --interval-ms N  latency: mean gap between them (default 20; 0.75-1.25 x)\n"
	      "  --bytes SIZE     throughput: output of the step (default 500M = 500,000,000;\n"
	      "                   K/M/G are powers of 1000 here)\n"
	      "  --line-len N     throughput: bytes per line with its newline (default 100)\n"
	      "  --base-reps N    throughput: runs of the floor (default 3; median)\n"
	      "  --only WHAT      run only the latency or the bulk part\n"
	      "  --check          exit 1 if a goal (p99 <= 50 ms, throughput >= 0.5 x) is missed\n"
	      "  --keep           keep the temporary directory\n",
	      f);
}

static size_t parse_count(const char *opt, const char *v)
{
	char *end;
	unsigned long long n = v ? strtoull(v, &end, 10) : 0;
	if (!v || *end || n == 0 || n > 100000000)
		die("%s wants a positive number", opt);
	return (size_t)n;
}

static uint64_t parse_bytes(const char *opt, const char *v)
{
	char *end;
	unsigned long long n = v ? strtoull(v, &end, 10) : 0;
	if (!v || end == v)
		die("%s wants a size", opt);
	uint64_t m = 1;
	if (*end == 'K' || *end == 'k')
		m = 1000, end++;
	else if (*end == 'M' || *end == 'm')
		m = 1000000, end++;
	else if (*end == 'G' || *end == 'g')
		m = 1000000000, end++;
	if (*end == 'B')
		end++;
	if (*end || n == 0 || n > (UINT64_C(1) << 40) / m)
		die("%s wants a size like 500M", opt);
	return n * m;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "bench_logs: watchdog: gave up after " STR(WATCHDOG_S) " s\n";
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
	/* the step programs */
	if (argc >= 4 && strcmp(argv[1], "--emit") == 0)
		return emit_main(strtoul(argv[2], NULL, 10), strtoll(argv[3], NULL, 10) * 1000000);
	if (argc >= 4 && strcmp(argv[1], "--gen") == 0) {
		size_t len = strtoul(argv[3], NULL, 10);
		return len < 16 ? 2 : gen_main(strtoull(argv[2], NULL, 10), len);
	}

	opts o = {.lines = 300, .base_reps = 3, .interval_ms = 20, .bytes = 500000000,
		  .line_len = 100, .latency = true, .bulk = true};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--lines") == 0)
			o.lines = parse_count(a, v), i++;
		else if (strcmp(a, "--interval-ms") == 0)
			o.interval_ms = (int64_t)parse_count(a, v), i++;
		else if (strcmp(a, "--bytes") == 0)
			o.bytes = parse_bytes(a, v), i++;
		else if (strcmp(a, "--line-len") == 0)
			o.line_len = parse_count(a, v), i++;
		else if (strcmp(a, "--base-reps") == 0)
			o.base_reps = parse_count(a, v), i++;
		else if (strcmp(a, "--only") == 0 && v && strcmp(v, "latency") == 0)
			o.bulk = false, i++;
		else if (strcmp(a, "--only") == 0 && v && strcmp(v, "bulk") == 0)
			o.latency = false, i++;
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
	if (o.line_len < 16 || o.line_len > 60000)
		die("--line-len wants 16..60000");
	if (o.bytes < o.line_len)
		die("--bytes is smaller than a line");

	struct sigaction sa = {.sa_handler = on_alarm};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(WATCHDOG_S);
	kiln_log_setup("bench", KILN_LOG_ERR);
	char load0[64], load1[64], load2[64];
	loadavg(load0, sizeof load0);

	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	_cleanup_free_ char *cat = which("cat");
	if (!cat)
		die("no cat in PATH");
	_cleanup_free_ char *tmp = NULL;
	if (kiln_mkdtemp("kiln-bench-logs", &tmp) < 0)
		die("%s", kiln_errmsg());
	if (!o.keep)
		cleanup_dir = tmp;
	/* the step's shell template is split on whitespace */
	if (has_space(self) || has_space(tmp))
		die("paths with whitespace are not supported: %s, %s", self, tmp);
	char fs[32];
	snprintf(fs, sizeof fs, "%s", fs_name(tmp));
	_cleanup_free_ char *data = kiln_asprintf("%s/coordinator", tmp);
	_cleanup_free_ char *work = kiln_asprintf("%s/agent", tmp);
	_cleanup_free_ char *floor_file = kiln_asprintf("%s/floor.out", tmp);

	/* the default cap (64 MiB per job) would truncate the bulk log: room for all of it,
	   with the stored prefix of each line (sequence, time, stream, step: ~31 bytes) */
	size_t max_log = (size_t)(o.bytes + o.bytes / o.line_len * 64 + (64u << 20));
	coord *c = NULL;
	agent *a = NULL;
	bench_start(data, work, max_log, 10000, &c, &a);

	lat_figures lf = {0};
	double *lfl = kiln_calloc(o.lines, sizeof *lfl);
	bulk_figures bf = {0};
	double *fl = kiln_calloc(o.base_reps, sizeof *fl);
	double lat_s = 0, bulk_s = 0, floor_s = 0;
	if (o.latency) {
		int64_t t = mono_ns();
		latency(c, a, self, o.lines, o.interval_ms, &lf);
		latency_floor(self, o.lines, o.interval_ms, lfl);
		lat_s = (double)(mono_ns() - t) / 1e9;
	}
	loadavg(load1, sizeof load1);
	if (o.bulk) {
		int64_t t = mono_ns();
		/* the floor first, half of it before kiln and half after, against drifting load */
		size_t before = (o.base_reps + 1) / 2;
		for (size_t i = 0; i < before; i++)
			fl[i] = floor_pipe(self, cat, floor_file, o.bytes, o.line_len);
		floor_s = (double)(mono_ns() - t) / 1e9;
		t = mono_ns();
		bulk(c, a, self, work, data, o.bytes, o.line_len, &bf);
		bulk_s = (double)(mono_ns() - t) / 1e9;
		t = mono_ns();
		for (size_t i = before; i < o.base_reps; i++)
			fl[i] = floor_pipe(self, cat, floor_file, o.bytes, o.line_len);
		floor_s += (double)(mono_ns() - t) / 1e9;
	}
	loadavg(load2, sizeof load2);

	agent_free(a);
	coord_free(c);
	if (!o.keep) {
		kiln_rm_rf(tmp);
		cleanup_dir = NULL;
	} else {
		fprintf(stderr, "bench_logs: kept %s\n", tmp);
	}

	/* ---- report ---- */
#ifdef __OPTIMIZE__
	const char *optimized = "yes";
#else
	const char *optimized = "no";
#endif
	printf("logs.env.cpus %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("logs.env.optimized %s\n", optimized);
	printf("logs.env.fs %s\n", fs);
	printf("logs.env.loadavg_start %s\n", load0);
	bool ok_lat = true, ok_bulk = true;
	if (o.latency) {
		printf("# latency: one step writes %zu lines, %lld ms apart on average, each with its\n"
		       "# CLOCK_MONOTONIC emission time; followed with GET /api/v1/jobs/ID/log?wait=30\n"
		       "# (coord_api_sync). arrival - emission per line. floor: the same emitter\n"
		       "# piped into this process (blocking read).\n",
		       o.lines, (long long)o.interval_ms);
		printf("logs.latency.lines %zu\n", lf.n);
		printf("logs.latency.replies %.0f\n", lf.replies);
		printf("logs.latency.p50_ms %.3f\n", lf.p50);
		printf("logs.latency.p90_ms %.3f\n", lf.p90);
		printf("logs.latency.p99_ms %.3f\n", lf.p99);
		printf("logs.latency.max_ms %.3f\n", lf.max);
		printf("logs.latency.floor.p50_ms %.3f\n", pct(lfl, o.lines, 50));
		printf("logs.latency.floor.p99_ms %.3f\n", pct(lfl, o.lines, 99));
		printf("logs.latency.floor.max_ms %.3f\n", lfl[o.lines - 1]);
		printf("logs.latency.to_agent_read.p50_ms %.1f\n", lf.agent_p50);
		printf("logs.latency.to_agent_read.p99_ms %.1f\n", lf.agent_p99);
		printf("logs.latency.to_agent_read.max_ms %.1f\n", lf.agent_max);
		printf("logs.latency.phase_s %.1f\n", lat_s);
		printf("logs.env.loadavg_after_latency %s\n", load1);
		ok_lat = lf.p99 <= GOAL_P99_MS;
		printf("logs.goal.latency_p99 %s %.3f <= %.0f ms\n", ok_lat ? "PASS" : "FAIL", lf.p99,
		       GOAL_P99_MS);
	}
	if (o.bulk) {
		qsort(fl, o.base_reps, sizeof *fl, cmp_double);
		double fsec = o.base_reps % 2 ? fl[o.base_reps / 2]
					      : (fl[o.base_reps / 2 - 1] + fl[o.base_reps / 2]) / 2;
		double mb = (double)(o.bytes / o.line_len * o.line_len) / 1e6;
		double kiln_mbs = mb / bf.total_s, floor_mbs = mb / fsec;
		double ratio = kiln_mbs / floor_mbs;
		printf("# bulk: one step writes %.0f MB in %" PRIu64 " lines of %zu bytes; kiln: POST ->\n"
		       "# run completed (all lines stored); floor: the same generator | cat > file\n"
		       "# on the same file system (median of %zu).\n",
		       mb, bf.lines, o.line_len, o.base_reps);
		printf("logs.bulk.mb %.0f\n", mb);
		printf("logs.bulk.lines %" PRIu64 "\n", bf.lines);
		printf("logs.bulk.kiln.s %.2f\n", bf.total_s);
		printf("logs.bulk.kiln.mb_s %.1f\n", kiln_mbs);
		printf("logs.bulk.kiln.lines_s %.0f\n", (double)bf.lines / bf.total_s);
		printf("logs.bulk.kiln.step_s %.2f\n", bf.step_s);
		printf("logs.bulk.kiln.spool_peak_mb %.0f\n", bf.spool_peak_mb);
		printf("logs.bulk.kiln.stored_mb %.0f\n", bf.stored_mb);
		printf("logs.bulk.kiln.read_tail_ms %.1f\n", bf.read_tail_ms);
		printf("logs.bulk.floor.s %.3f\n", fsec);
		printf("logs.bulk.floor.mb_s %.1f\n", floor_mbs);
		printf("logs.bulk.floor.min_s %.3f\n", fl[0]);
		printf("logs.bulk.floor.max_s %.3f\n", fl[o.base_reps - 1]);
		printf("logs.bulk.ratio %.4f\n", ratio);
		printf("logs.bulk.phase_s %.1f\n", bulk_s + floor_s);
		printf("logs.env.loadavg_end %s\n", load2);
		ok_bulk = ratio >= GOAL_RATIO;
		printf("logs.goal.bulk_ratio %s %.4f >= %.1f\n", ok_bulk ? "PASS" : "FAIL", ratio,
		       GOAL_RATIO);
	}
	printf("logs.result %s\n", ok_lat && ok_bulk ? "PASS" : "FAIL");
	fflush(stdout);
	free(fl);
	free(lfl);
	return o.check && !(ok_lat && ok_bulk) ? 1 : 0;
}
