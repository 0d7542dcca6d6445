/*
 * test_runner — agent/runner against real processes: output streaming and
 * line splitting, shells and their error semantics, cwd/env, timeouts,
 * cancellation, SIGKILL after the grace period, background processes.
 */
#include "agent/runner.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *tmp;     /* RUNNER_TEMP for every step */
static char *workdir; /* a cwd for the cwd test */
static int first_free_fd;

typedef struct capture {
	kiln_strv out, err;
	size_t nul_ok, lines;
	int64_t ts_min, ts_max;
} capture;

static void on_line(void *arg, int stream, int64_t ts, const char *line, size_t len)
{
	capture *c = arg;
	c->lines++;
	if (line[len] == '\0')
		c->nul_ok++;
	if (!c->ts_min || ts < c->ts_min)
		c->ts_min = ts;
	if (ts > c->ts_max)
		c->ts_max = ts;
	char *s = kiln_malloc(len + 1);
	memcpy(s, line, len);
	s[len] = '\0';
	kiln_strv_push_owned(stream == AGENT_STREAM_STDOUT ? &c->out : &c->err, s);
}

static void capture_free(capture *c)
{
	kiln_strv_free(&c->out);
	kiln_strv_free(&c->err);
}

static agent_step_spec spec_for(const char *script, const char *shell, capture *c)
{
	return (agent_step_spec){
	    .script = script, .shell = shell, .temp_dir = tmp, .on_line = on_line, .arg = c};
}

/* Runs script with shell, capturing output; returns agent_step_run's value. */
static int run(const char *script, const char *shell, capture *c, agent_step_result *res)
{
	agent_step_spec s = spec_for(script, shell, c);
	return agent_step_run(&s, res);
}

static int64_t elapsed_ms(int64_t since_ns)
{
	return (kiln_mono_ns() - since_ns) / 1000000;
}

static size_t dir_entries(const char *path)
{
	DIR *d = opendir(path);
	size_t n = 0;
	if (!d)
		return (size_t)-1;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_streams(void)
{
	capture c = {0};
	agent_step_result res;
	int r = run("echo a\necho b >&2\necho c\necho d >&2\nprintf 'e\\r\\n'\n", NULL, &c, &res);
	CHECK_INT(r, 0);
	CHECK_INT(res.exit_code, 0);
	CHECK_INT(res.signal, 0);
	CHECK(!res.timed_out && !res.cancelled);
	CHECK_INT(c.out.n, 3);
	CHECK_INT(c.err.n, 2);
	if (c.out.n == 3 && c.err.n == 2) {
		CHECK_STR(c.out.v[0], "a");
		CHECK_STR(c.out.v[1], "c");
		CHECK_STR(c.out.v[2], "e"); /* "\r\n" ending */
		CHECK_STR(c.err.v[0], "b");
		CHECK_STR(c.err.v[1], "d");
	}
	CHECK_INT(c.nul_ok, c.lines);
	CHECK(res.started_ms > 0 && res.finished_ms >= res.started_ms);
	CHECK(c.ts_min >= res.started_ms && c.ts_max <= res.finished_ms);
	CHECK(res.spawn_ns > 0);
	capture_free(&c);
}

static void test_multiline_and_tail(void)
{
	capture c = {0};
	agent_step_result res;
	CHECK_INT(run("printf 'l1\\n\\nl3\\nlast'", NULL, &c, &res), 0);
	CHECK_INT(c.out.n, 4);
	if (c.out.n == 4) {
		CHECK_STR(c.out.v[0], "l1");
		CHECK_STR(c.out.v[1], "");
		CHECK_STR(c.out.v[2], "l3");
		CHECK_STR(c.out.v[3], "last"); /* no newline at EOF */
	}
	capture_free(&c);

	/* Lots of output: every line, in order, across many reads. */
	capture big = {0};
	CHECK_INT(run("seq 1 50000; seq 1 20000 >&2", NULL, &big, &res), 0);
	CHECK_INT(big.out.n, 50000);
	CHECK_INT(big.err.n, 20000);
	bool ordered = big.out.n == 50000;
	for (size_t i = 0; ordered && i < big.out.n; i++)
		ordered = (size_t)atol(big.out.v[i]) == i + 1;
	CHECK(ordered);
	if (big.err.n == 20000)
		CHECK_STR(big.err.v[19999], "20000");
	capture_free(&big);
}

static void test_long_lines(void)
{
	capture c = {0};
	agent_step_result res;
	agent_step_spec s =
	    spec_for("printf '0123456789abcdefghijXYZ\\n0123456789ABCDEFGHIJ\\nshort\\n"
	             "0123456789\\r\\nqrstuvwxyz0123456789\\r\\n0123456789tail'",
	             NULL, &c);
	s.max_line = 10;
	CHECK_INT(agent_step_run(&s, &res), 0);
	const char *want[] = {"0123456789", "abcdefghij", "XYZ",        "0123456789",
	                      "ABCDEFGHIJ", "short",      "0123456789", "qrstuvwxyz",
	                      "0123456789", "0123456789", "tail"};
	CHECK_INT(c.out.n, KILN_ARRAY_SIZE(want));
	for (size_t i = 0; i < KILN_ARRAY_SIZE(want) && i < c.out.n; i++)
		CHECK_STR(c.out.v[i], want[i]);
	CHECK_INT(c.nul_ok, c.lines);
	capture_free(&c);

	/* A line longer than a read chunk, with the default limit and with a 100000-byte one. */
	capture d = {0};
	s = spec_for("head -c 200000 /dev/zero | tr '\\0' x; echo; echo end", NULL, &d);
	CHECK_INT(agent_step_run(&s, &res), 0);
	CHECK_INT(d.out.n, 5); /* 3 × 65536 + 3392, then "end" */
	if (d.out.n == 5) {
		CHECK_INT(strlen(d.out.v[0]), 65536);
		CHECK_INT(strlen(d.out.v[3]), 200000 - 3 * 65536);
		CHECK_STR(d.out.v[4], "end");
	}
	capture_free(&d);

	capture e = {0};
	s = spec_for("head -c 200000 /dev/zero | tr '\\0' y; echo", NULL, &e);
	s.max_line = 100000;
	CHECK_INT(agent_step_run(&s, &res), 0);
	CHECK_INT(e.out.n, 2); /* exactly two pieces, no empty tail */
	if (e.out.n == 2)
		CHECK(strlen(e.out.v[0]) == 100000 && strlen(e.out.v[1]) == 100000 &&
		      e.out.v[1][99999] == 'y');
	CHECK_INT(e.nul_ok, e.lines);
	capture_free(&e);
}

static void test_exit_codes(void)
{
	capture c = {0};
	agent_step_result res;
	CHECK_INT(run("echo x; exit 3", NULL, &c, &res), 0);
	CHECK_INT(res.exit_code, 3);
	CHECK_INT(res.signal, 0);
	capture_free(&c);

	/* -e: a failing command in the middle stops the script (default shell and bash). */
	const char *shells[] = {NULL, "", "bash", "sh"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(shells); i++) {
		capture e = {0};
		CHECK_INT(run("echo one\nfalse\necho two\n", shells[i], &e, &res), 0);
		CHECK_INT(res.exit_code, 1);
		CHECK_INT(e.out.n, 1);
		if (e.out.n)
			CHECK_STR(e.out.v[0], "one");
		capture_free(&e);
	}

	/* pipefail with shell: bash ... */
	capture p = {0};
	CHECK_INT(run("false | true\necho after\n", "bash", &p, &res), 0);
	CHECK_INT(res.exit_code, 1);
	CHECK_INT(p.out.n, 0);
	capture_free(&p);

	/* ... and with no shell at all: kiln's default is bash with pipefail too. */
	capture q = {0};
	CHECK_INT(run("false | true\necho after\n", NULL, &q, &res), 0);
	CHECK_INT(res.exit_code, 1);
	CHECK_INT(q.out.n, 0);
	capture_free(&q);

	/* bash gets --noprofile --norc -eo pipefail and the script as a .sh file. */
	capture f = {0};
	CHECK_INT(run("echo \"$-\" \"${0##*.}\" \"$(set -o | grep pipefail)\"", "bash", &f, &res),
	          0);
	CHECK_INT(f.out.n, 1);
	if (f.out.n) {
		CHECK(strchr(f.out.v[0], 'e') != NULL);
		CHECK(strstr(f.out.v[0], " sh ") != NULL);
		CHECK(strstr(f.out.v[0], "on") != NULL);
	}
	capture_free(&f);
}

static void test_shells(void)
{
	agent_step_result res;

	capture sh = {0};
	CHECK_INT(run("echo \"${0##*.}\"; false; echo no", "sh", &sh, &res), 0);
	CHECK_INT(res.exit_code, 1);
	CHECK_INT(sh.out.n, 1);
	if (sh.out.n)
		CHECK_STR(sh.out.v[0], "sh");
	capture_free(&sh);

	capture py = {0};
	CHECK_INT(run("import sys\nprint('to-err', file=sys.stderr)\nprint(sys.argv[0][-3:])\n"
	              "sys.exit(4)\n",
	              "python", &py, &res),
	          0);
	CHECK_INT(res.exit_code, 4);
	CHECK_INT(py.out.n, 1);
	CHECK_INT(py.err.n, 1);
	if (py.out.n && py.err.n) {
		CHECK_STR(py.out.v[0], ".py");
		CHECK_STR(py.err.v[0], "to-err");
	}
	capture_free(&py);

	/* Custom template: split on whitespace, {0} substituted (inside a word too). */
	capture cu = {0};
	CHECK_INT(run("echo hi", "sh  -x   {0}", &cu, &res), 0);
	CHECK_INT(res.exit_code, 0);
	CHECK_INT(cu.out.n, 1);
	CHECK_INT(cu.err.n, 1);
	if (cu.out.n && cu.err.n) {
		CHECK_STR(cu.out.v[0], "hi");
		CHECK_STR(cu.err.v[0], "+ echo hi");
	}
	capture_free(&cu);

	capture cw = {0};
	CHECK_INT(run("print(1 + 1)", "python3 -c exec(open('{0}').read())", &cw, &res), 0);
	CHECK_INT(res.exit_code, 0);
	CHECK_INT(cw.out.n, 1);
	if (cw.out.n)
		CHECK_STR(cw.out.v[0], "2");
	capture_free(&cw);

	/* Errors: no {0}, an unknown single word, programs that do not exist. */
	capture x = {0};
	CHECK_INT(run("true", "bash -x", &x, &res), -EINVAL);
	CHECK_INT(res.exit_code, -1);
	CHECK(strstr(kiln_errmsg(), "{0}") != NULL);
	CHECK_INT(run("true", "zsh-not-builtin", &x, &res), -EINVAL);
	CHECK_INT(run("true", "no-such-shell-kiln {0}", &x, &res), -ENOENT);
	CHECK(strstr(kiln_errmsg(), "no-such-shell-kiln") != NULL);
	CHECK_INT(res.exit_code, -1);
	CHECK_INT(run("true", "/nonexistent/kiln/bash {0}", &x, &res), -ENOENT);
	CHECK(strstr(kiln_errmsg(), "/nonexistent/kiln/bash") != NULL);
	CHECK_INT(res.exit_code, -1);
	CHECK_INT(x.lines, 0);
	capture_free(&x);

	/* Nothing left behind in RUNNER_TEMP, including after failures. */
	CHECK_INT(dir_entries(tmp), 0);
}

static void test_cwd_env(void)
{
	capture c = {0};
	agent_step_result res;
	/* A shell only the child's PATH knows about. */
	_cleanup_free_ char *bin = kiln_asprintf("%s/bin", workdir);
	_cleanup_free_ char *fake = kiln_asprintf("%s/myshell", bin);
	CHECK_INT(kiln_mkdir_p(bin, 0755), 0);
	FILE *f = fopen(fake, "w");
	CHECK(f != NULL);
	if (f) {
		fputs("#!/bin/sh\necho via-myshell\nexec sh \"$@\"\n", f);
		fclose(f);
	}
	chmod(fake, 0755);

	_cleanup_free_ char *path = kiln_asprintf("PATH=%s:/usr/local/bin:/usr/bin:/bin", bin);
	char *envp[] = {path, "FOO=bar baz", "LANG=C", NULL};
	agent_step_spec s =
	    spec_for("pwd -P; echo \"$FOO\"; echo \"${HOME-unset}\"", "myshell {0}", &c);
	s.cwd = workdir;
	s.envp = envp;
	CHECK_INT(agent_step_run(&s, &res), 0);
	CHECK_INT(res.exit_code, 0);
	char real[PATH_MAX];
	CHECK(realpath(workdir, real) != NULL);
	CHECK_INT(c.out.n, 4);
	if (c.out.n == 4) {
		CHECK_STR(c.out.v[0], "via-myshell");
		CHECK_STR(c.out.v[1], real);
		CHECK_STR(c.out.v[2], "bar baz");
		CHECK_STR(c.out.v[3], "unset");
	}
	capture_free(&c);

	/* stdin is /dev/null; the agent's ignored and blocked signals do not reach the step. */
	capture d = {0};
	CHECK_INT(run("cat\nread x || echo eof\ngrep -E '^Sig(Ign|Blk)' /proc/self/status\n", NULL,
	              &d, &res),
	          0);
	CHECK_INT(d.out.n, 3);
	if (d.out.n == 3) {
		CHECK_STR(d.out.v[0], "eof");
		CHECK_STR(d.out.v[1], "SigBlk:\t0000000000000000");
		/* glibc's posix_spawn leaves its two internal signals (32, 33) ignored. */
		unsigned long long ign = strtoull(d.out.v[2] + strlen("SigIgn:\t"), NULL, 16);
		CHECK_INT(ign & ~0x180000000ULL, 0);
	}
	capture_free(&d);

	/* A working directory that does not exist is an error, not a step failure. */
	capture e = {0};
	s = spec_for("true", NULL, &e);
	s.cwd = "/nonexistent/kiln-dir";
	CHECK(agent_step_run(&s, &res) < 0);
	CHECK(strstr(kiln_errmsg(), "/nonexistent/kiln-dir") != NULL);
	capture_free(&e);
}

static void test_timeout(void)
{
	capture c = {0};
	agent_step_result res;
	agent_step_spec s = spec_for("echo start; sleep 30", NULL, &c);
	s.timeout_ms = 200;
	int64_t t0 = kiln_mono_ns();
	CHECK_INT(agent_step_run(&s, &res), 0);
	int64_t ms = elapsed_ms(t0);
	CHECK(ms >= 190 && ms < 2000);
	CHECK(res.timed_out);
	CHECK(!res.cancelled);
	CHECK_INT(res.signal, SIGTERM);
	CHECK_INT(res.exit_code, 128 + SIGTERM);
	CHECK_INT(c.out.n, 1);
	capture_free(&c);

	/* A step that ignores SIGTERM gets SIGKILL when the grace period ends. */
	capture d = {0};
	s = spec_for("trap '' TERM\necho trapped\nsleep 30\necho survived\n", NULL, &d);
	s.timeout_ms = 150;
	s.kill_grace_ms = 150;
	t0 = kiln_mono_ns();
	CHECK_INT(agent_step_run(&s, &res), 0);
	ms = elapsed_ms(t0);
	CHECK(ms >= 290 && ms < 2000);
	CHECK(res.timed_out);
	CHECK_INT(res.signal, SIGKILL);
	CHECK_INT(res.exit_code, 128 + SIGKILL);
	CHECK_INT(d.out.n, 1);
	capture_free(&d);

	/* During the grace period the group keeps running after the main process died, so a
	   child's cleanup trap still finishes and its output is kept. */
	capture e = {0};
	s = spec_for("bash -c 'trap \"sleep 0.2; echo cleaned\" TERM; sleep 30 & wait' &\nwait\n",
	             NULL, &e);
	s.timeout_ms = 150;
	s.kill_grace_ms = 5000;
	t0 = kiln_mono_ns();
	CHECK_INT(agent_step_run(&s, &res), 0);
	ms = elapsed_ms(t0);
	CHECK(ms >= 340 && ms < 2000);
	CHECK(res.timed_out);
	CHECK_INT(res.signal, SIGTERM);
	CHECK_INT(e.out.n, 1);
	if (e.out.n)
		CHECK_STR(e.out.v[0], "cleaned");
	capture_free(&e);
}

typedef struct fire_later {
	agent_cancel *c;
	int ms;
} fire_later;

static void *fire_thread(void *arg)
{
	fire_later *f = arg;
	struct timespec ts = {.tv_sec = f->ms / 1000, .tv_nsec = (f->ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
	agent_cancel_fire(f->c);
	return NULL;
}

typedef struct step_thread {
	agent_step_spec spec;
	agent_step_result res;
	int rc;
} step_thread;

static void *step_thread_main(void *arg)
{
	step_thread *t = arg;
	t->rc = agent_step_run(&t->spec, &t->res);
	return NULL;
}

static void test_cancel(void)
{
	_cleanup_(agent_cancel_freep) agent_cancel *tok = NULL;
	CHECK_INT(agent_cancel_new(&tok), 0);
	CHECK(!agent_cancel_fired(tok));

	/* Two steps share one token; one fire ends both. */
	capture c1 = {0}, c2 = {0};
	step_thread t2 = {.spec = spec_for("sleep 30", "bash", &c2)};
	t2.spec.cancel = tok;
	pthread_t th2, fth;
	CHECK_INT(pthread_create(&th2, NULL, step_thread_main, &t2), 0);
	fire_later fl = {.c = tok, .ms = 200};
	CHECK_INT(pthread_create(&fth, NULL, fire_thread, &fl), 0);

	agent_step_spec s = spec_for("echo go; sleep 30", NULL, &c1);
	s.cancel = tok;
	agent_step_result res;
	int64_t t0 = kiln_mono_ns();
	CHECK_INT(agent_step_run(&s, &res), 0);
	int64_t ms = elapsed_ms(t0);
	pthread_join(fth, NULL);
	pthread_join(th2, NULL);
	CHECK(ms >= 150 && ms < 2000);
	CHECK(res.cancelled);
	CHECK(!res.timed_out);
	CHECK_INT(res.signal, SIGTERM);
	CHECK_INT(c1.out.n, 1);
	CHECK_INT(t2.rc, 0);
	CHECK(t2.res.cancelled);
	CHECK(t2.res.exit_code != 0);
	CHECK(agent_cancel_fired(tok));
	agent_cancel_fire(tok); /* idempotent */
	CHECK(agent_cancel_fired(tok));

	/* A step whose token has already fired does not start. */
	capture c3 = {0};
	s = spec_for("echo never", NULL, &c3);
	s.cancel = tok;
	CHECK_INT(agent_step_run(&s, &res), -ECANCELED);
	CHECK(res.cancelled);
	CHECK_INT(res.exit_code, -1);
	CHECK_INT(c3.lines, 0);
	capture_free(&c1);
	capture_free(&c2);
	capture_free(&c3);
	CHECK(!agent_cancel_fired(NULL));
	agent_cancel_free(NULL);
}

static bool process_dead(pid_t pid)
{
	/* Dead, or a zombie waiting for init to reap it. */
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	char path[64], *stat = NULL;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (kiln_read_file(path, 4096, &stat, NULL) < 0)
		return true;
	const char *rp = strrchr(stat, ')');
	bool zombie = rp && (rp[2] == 'Z' || rp[2] == 'X');
	free(stat);
	return zombie;
}

/* SIGKILL was sent before the step returned; give the kernel a moment to finish the job. */
static bool process_gone(pid_t pid)
{
	for (int i = 0; i < 100; i++) {
		if (process_dead(pid))
			return true;
		struct timespec ts = {.tv_nsec = 5000000};
		nanosleep(&ts, NULL);
	}
	return false;
}

static void test_background(void)
{
	capture c = {0};
	agent_step_result res;
	int64_t t0 = kiln_mono_ns();
	CHECK_INT(run("sleep 100 &\necho $!\nsleep 100 >/dev/null 2>&1 &\necho $!\necho done\n",
	              NULL, &c, &res),
	          0);
	CHECK(elapsed_ms(t0) < 1000);
	CHECK_INT(res.exit_code, 0);
	CHECK_INT(c.out.n, 3);
	if (c.out.n == 3) {
		CHECK_STR(c.out.v[2], "done");
		/* Both orphans were killed with the step (SIGKILL is delivered before we reap). */
		CHECK(process_gone((pid_t)atol(c.out.v[0])));
		CHECK(process_gone((pid_t)atol(c.out.v[1])));
	}
	capture_free(&c);

	/* Output an orphan wrote before the step ended is not lost. */
	capture d = {0};
	CHECK_INT(run("(echo from-bg; sleep 100) &\nsleep 0.1\n", NULL, &d, &res), 0);
	CHECK_INT(d.out.n, 1);
	if (d.out.n)
		CHECK_STR(d.out.v[0], "from-bg");
	capture_free(&d);
}

static void test_many_quick_steps(void)
{
	/* Per-step overhead should be tiny; this also shows no fd or file leaks. */
	int64_t t0 = kiln_mono_ns();
	int fails = 0;
	for (int i = 0; i < 50; i++) {
		agent_step_result res;
		agent_step_spec s = {.script = "true", .shell = "sh", .temp_dir = tmp};
		if (agent_step_run(&s, &res) != 0 || res.exit_code != 0)
			fails++;
	}
	CHECK_INT(fails, 0);
	CHECK(elapsed_ms(t0) < 5000);
	CHECK_INT(dir_entries(tmp), 0);
	/* No fd stayed open: the lowest free one is where it was when the tests began. */
	int fd = dup(0);
	CHECK_INT(fd, first_free_fd);
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	/* Agents ignore SIGPIPE and may block signals; steps must not inherit either. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t blk;
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &blk, NULL);

	first_free_fd = dup(0);
	close(first_free_fd);
	if (kiln_mkdtemp("kiln-test-runner", &tmp) < 0 ||
	    kiln_mkdtemp("kiln-test-cwd", &workdir) < 0) {
		fprintf(stderr, "mkdtemp: %s\n", kiln_errmsg());
		return 1;
	}
	test_streams();
	test_multiline_and_tail();
	test_long_lines();
	test_exit_codes();
	test_shells();
	test_cwd_env();
	test_timeout();
	test_cancel();
	test_background();
	test_many_quick_steps();
	kiln_rm_rf(tmp);
	kiln_rm_rf(workdir);
	free(tmp);
	free(workdir);
	return check_done();
}
