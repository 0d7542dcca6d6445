/*
 * bench_footprint — what kiln costs a machine while it waits for work. Starts
 * a real kiln-coordinator and N real kiln-agent processes (default 100) on
 * loopback, waits until every agent has registered and holds its poll, then
 * measures, over an idle window:
 *
 *   - the proportional set size (Pss in /proc/PID/smaps_rollup) of one agent
 *     (goal <= 4 MB) and of the coordinator with N agents (goal <= 16 MB);
 *   - wakeups per second of each: the context switches (voluntary and not) of
 *     all its threads (/proc/PID/task/ * /status) over the window, divided by
 *     its length (goal <= 1).
 *
 * One `name value` line per figure, then PASS/FAIL per goal. See bench/README.md.
 */
#define BENCH_NAME "footprint"
#include "bench.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static pid_t spawn(char *const argv[], const char *log)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	pid_t pid;
	int r = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		die("spawn %s: %s", argv[0], strerror(r));
	return pid;
}

/* Pss of a process in kB, or -1. */
static long pss_kb(pid_t pid)
{
	char path[64], *text = NULL;
	size_t len;
	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
	if (kiln_read_file(path, 1 << 16, &text, &len) < 0)
		return -1;
	const char *p = strstr(text, "\nPss:");
	long kb = p ? strtol(p + 5, NULL, 10) : -1;
	free(text);
	return kb;
}

/* Context switches of every thread of pid so far (threads that ended are not counted). */
static long long switches(pid_t pid, int *threads)
{
	char dir[64];
	snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	long long n = 0;
	*threads = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[384], *text = NULL;
		size_t len;
		snprintf(path, sizeof path, "%s/%s/status", dir, de->d_name);
		if (kiln_read_file(path, 1 << 16, &text, &len) < 0)
			continue;
		for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line) {
			long long v;
			if (sscanf(line, "voluntary_ctxt_switches: %lld", &v) == 1 ||
			    sscanf(line, "nonvoluntary_ctxt_switches: %lld", &v) == 1)
				n += v;
		}
		(*threads)++;
		free(text);
	}
	closedir(d);
	return n;
}

static int count_in_file(const char *path, const char *needle)
{
	char *text = NULL;
	size_t len;
	if (kiln_read_file(path, 64 << 20, &text, &len) < 0)
		return 0;
	int n = 0;
	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(text);
	return n;
}

static pid_t *pids;
static int npids;

static void stop_all(void)
{
	for (int i = 0; i < npids; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	for (int i = 0; i < npids; i++)
		if (pids[i] > 0)
			waitpid(pids[i], NULL, 0);
}

static void on_alarm(int sig)
{
	(void)sig;
	for (int i = 0; i < npids; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGKILL);
	_exit(3);
}

int main(int argc, char **argv)
{
	int nagents = 100;
	/* longer than a poll is held (25 s): the window must see every agent's poll come back */
	double idle_s = 60;
	char bin[PATH_MAX] = "";
	bool check = false, keep = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--agents") == 0 && i + 1 < argc)
			nagents = atoi(argv[++i]);
		else if (strcmp(argv[i], "--idle") == 0 && i + 1 < argc)
			idle_s = atof(argv[++i]);
		else if (strcmp(argv[i], "--bin") == 0 && i + 1 < argc)
			snprintf(bin, sizeof bin, "%s", argv[++i]);
		else if (strcmp(argv[i], "--check") == 0)
			check = true;
		else if (strcmp(argv[i], "--keep") == 0)
			keep = true;
		else {
			fprintf(stderr, "usage: bench_footprint [--agents N] [--idle SECONDS] "
					"[--bin DIR] [--check] [--keep]\n");
			return 2;
		}
	}
	if (nagents < 1 || nagents > 1000 || idle_s < 1)
		die("bad --agents or --idle");
	if (!*bin) { /* BUILD/bench/bench_footprint -> BUILD/bin */
		char self[PATH_MAX - 16];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n <= 0)
			die("readlink /proc/self/exe");
		self[n] = '\0';
		*strrchr(self, '/') = '\0';
		snprintf(bin, sizeof bin, "%s/../bin", self);
	}
	char *dir = NULL;
	if (kiln_mkdtemp("kiln-bench-footprint", &dir) < 0)
		die("%s", kiln_errmsg());
	if (!keep)
		cleanup_dir = dir;
	pids = kiln_calloc((size_t)nagents + 1, sizeof *pids);
	signal(SIGALRM, on_alarm);
	alarm(170 + (unsigned)idle_s);

	_cleanup_free_ char *coord_bin = kiln_asprintf("%s/kiln-coordinator", bin);
	_cleanup_free_ char *agent_bin = kiln_asprintf("%s/kiln-agent", bin);
	_cleanup_free_ char *data = kiln_asprintf("%s/data", dir);
	_cleanup_free_ char *clog = kiln_asprintf("%s/coordinator.log", dir);
	if (access(coord_bin, X_OK) < 0 || access(agent_bin, X_OK) < 0)
		die("no kiln-coordinator/kiln-agent in %s (--bin DIR)", bin);
	char *cargv[] = {coord_bin, "--data", data, "--listen", "tcp://127.0.0.1:0", "--http",
			 "127.0.0.1:0", "--log-level", "info", NULL};
	pids[npids++] = spawn(cargv, clog);
	pid_t coord_pid = pids[0];
	_cleanup_free_ char *ep = kiln_asprintf("%s/endpoints.json", data);
	json_t *endpoints = NULL;
	for (int64_t end = mono_ns() + 20000000000ll; !endpoints; sleep_ns(20000000)) {
		if (mono_ns() > end)
			die("the coordinator did not start (log: %s)", clog);
		json_error_t err;
		endpoints = json_load_file(ep, 0, &err);
	}
	_cleanup_free_ char *bus = kiln_strdup(json_string_value(json_object_get(endpoints, "bus")));
	json_decref(endpoints);

	int64_t t0 = mono_ns();
	for (int i = 0; i < nagents; i++) {
		_cleanup_free_ char *name = kiln_asprintf("idle-%d", i);
		_cleanup_free_ char *work = kiln_asprintf("%s/agent-%d", dir, i);
		_cleanup_free_ char *log = kiln_asprintf("%s/agent-%d.log", dir, i);
		char *aargv[] = {agent_bin, "--coordinator", bus, "--name", name, "--labels", "linux",
				 "--work", work, "--shutdown-timeout", "0", NULL};
		pids[npids++] = spawn(aargv, log);
	}
	while (count_in_file(clog, " registered as ") < nagents) {
		if (mono_ns() - t0 > 120000000000ll)
			die("only %d of %d agents registered within 120 s (log: %s)",
			    count_in_file(clog, " registered as "), nagents, clog);
		sleep_ns(100000000);
	}
	double reg_s = (double)(mono_ns() - t0) / 1e9;
	sleep_ns(3000000000ll); /* every first poll parked, start-up work done */

	int cthreads = 0, athreads = 0;
	long long c0 = switches(coord_pid, &cthreads), a0 = switches(pids[1], &athreads);
	long long *all0 = kiln_calloc((size_t)nagents, sizeof *all0);
	for (int i = 0; i < nagents; i++) {
		int t;
		all0[i] = switches(pids[1 + i], &t);
	}
	int64_t w0 = mono_ns();
	sleep_ns((int64_t)(idle_s * 1e9));
	double window = (double)(mono_ns() - w0) / 1e9;
	long long c1 = switches(coord_pid, &cthreads), a1 = switches(pids[1], &athreads);
	double worst = 0, sum = 0;
	long pss_sum = 0, pss_max = 0;
	for (int i = 0; i < nagents; i++) {
		int t;
		double w = (double)(switches(pids[1 + i], &t) - all0[i]) / window;
		sum += w;
		if (w > worst)
			worst = w;
		long p = pss_kb(pids[1 + i]);
		pss_sum += p;
		if (p > pss_max)
			pss_max = p;
	}
	long cpss = pss_kb(coord_pid), apss = pss_kb(pids[1]);
	double cw = (double)(c1 - c0) / window, aw = (double)(a1 - a0) / window;
	int alive = 0;
	for (int i = 0; i < npids; i++)
		alive += kill(pids[i], 0) == 0 && waitpid(pids[i], NULL, WNOHANG) == 0;

	printf("# %d agents registered in %.1f s; idle window %.1f s; all %d processes alive: %s\n",
	       nagents, reg_s, window, npids, alive == npids ? "yes" : "NO");
	printf("agent.pss_mb %.2f\n", apss / 1024.0);
	printf("agent.pss_mb.mean %.2f\n", (double)pss_sum / nagents / 1024.0);
	printf("agent.pss_mb.max %.2f\n", pss_max / 1024.0);
	printf("agent.threads %d\n", athreads);
	printf("agent.wakeups_per_s %.2f\n", aw);
	printf("agent.wakeups_per_s.mean %.2f\n", sum / nagents);
	printf("agent.wakeups_per_s.max %.2f\n", worst);
	printf("coordinator.agents %d\n", nagents);
	printf("coordinator.pss_mb %.2f\n", cpss / 1024.0);
	printf("coordinator.threads %d\n", cthreads);
	printf("coordinator.wakeups_per_s %.2f\n", cw);
	bool ok1 = apss >= 0 && apss <= 4096, ok2 = cpss >= 0 && cpss <= 16384;
	bool ok3 = aw <= 1.0, ok4 = cw <= 1.0;
	printf("goal agent.pss_mb <= 4: %s\n", ok1 ? "PASS" : "FAIL");
	printf("goal coordinator.pss_mb <= 16 (with %d agents): %s\n", nagents, ok2 ? "PASS" : "FAIL");
	printf("goal agent.wakeups_per_s <= 1: %s\n", ok3 ? "PASS" : "FAIL");
	printf("goal coordinator.wakeups_per_s <= 1: %s\n", ok4 ? "PASS" : "FAIL");
	fflush(stdout);
	stop_all();
	free(all0);
	if (keep)
		fprintf(stderr, "footprint: kept %s\n", dir);
	else
		kiln_rm_rf(dir);
	free(dir);
	free(pids);
	if (alive != npids)
		return 1;
	return check && !(ok1 && ok2 && ok3 && ok4) ? 1 : 0;
}
