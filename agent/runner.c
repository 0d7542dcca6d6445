/*
 * runner — runs one step's `run:` script as a child process and streams its
 * output, following GitHub's runner: the script goes into a fresh file in
 * RUNNER_TEMP (0700, removed afterwards), a shell template runs it, and each
 * line of stdout/stderr reaches the caller's callback with a timestamp.
 *
 * The child is started with posix_spawn in its own process group, with stdin
 * on /dev/null, default signal dispositions, an empty signal mask and no fds
 * beyond 0–2, so whatever the agent ignores, blocks or has open does not leak
 * into the step. One loop on the calling thread then ppoll()s the two output
 * pipes, a pidfd for the main process and the cancellation eventfd; its only
 * timeout is the next deadline (step timeout, end of the kill grace period,
 * end of the post-exit drain), so a quick step costs little more than the
 * spawn itself: no threads, no sleeps, no polling interval.
 *
 * Termination (timeout or cancel): SIGTERM to the whole group, SIGKILL to the
 * group when the grace period ends. When the main process exits, the rest of
 * its group is SIGKILLed before it is reaped (while the zombie still pins the
 * pid, so the group id cannot have been reused), then the pipes are drained.
 */
#include "agent/runner.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHUNK (64 * 1024)
#define NS_PER_MS INT64_C(1000000)
/* After the main process exited and its group was killed, how long to wait for pipe EOF. The
   group's members die at once, so these only matter when something outside the group (a
   process that called setsid()) still holds a pipe: give up on it rather than hang the job. */
#define DRAIN_IDLE_NS (500 * NS_PER_MS)
#define DRAIN_MAX_NS (5000 * NS_PER_MS)
/* Without pidfds (Linux < 5.3) the loop has to look for the exit now and then. */
#define NO_PIDFD_TICK_NS (10 * NS_PER_MS)
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

struct agent_cancel {
	int fd;
	atomic_bool fired;
};

int agent_cancel_new(agent_cancel **out)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return kiln_err(errno, "eventfd: %s", strerror(errno));
	agent_cancel *c = kiln_calloc(1, sizeof *c);
	c->fd = fd;
	atomic_init(&c->fired, false);
	*out = c;
	return 0;
}

void agent_cancel_fire(agent_cancel *c)
{
	if (!c || atomic_exchange(&c->fired, true))
		return;
	/* The counter is never read back, so the fd stays readable for every step polling it. */
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(c->fd, &one, sizeof one);
	while (n < 0 && errno == EINTR);
}

bool agent_cancel_fired(const agent_cancel *c)
{
	return c && atomic_load(&((agent_cancel *)c)->fired);
}

void agent_cancel_free(agent_cancel *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

void agent_cancel_freep(agent_cancel **c)
{
	agent_cancel_free(*c);
}

/* ---- shells ---- */

/* GitHub's ScriptHandlerHelpers: argument formats and script extensions per shell. */
static const struct {
	const char *name;
	const char *argv[7];
} builtin_shells[] = {
    {"bash", {"bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}", NULL}},
    {"sh", {"sh", "-e", "{0}", NULL}},
    {"python", {"python3", "{0}", NULL}},
    {"pwsh", {"pwsh", "-command", ". '{0}'", NULL}},
};

typedef struct shell_cmd {
	char *prog;      /* the program's resolved path */
	kiln_strv argv;  /* argv[0] as named; "{0}" anywhere is replaced by the script's path */
	const char *ext; /* the script file's extension */
	bool powershell; /* wrap the script as GitHub does for pwsh */
} shell_cmd;

static void shell_cmd_free(shell_cmd *sc)
{
	free(sc->prog);
	kiln_strv_free(&sc->argv);
}

static const char *script_ext(const char *prog)
{
	const char *base = strrchr(prog, '/');
	base = base ? base + 1 : prog;
	if (!strcmp(base, "bash") || !strcmp(base, "sh"))
		return ".sh";
	if (!strcmp(base, "python") || !strcmp(base, "python3"))
		return ".py";
	if (!strcmp(base, "pwsh") || !strcmp(base, "powershell"))
		return ".ps1";
	if (!strcmp(base, "cmd"))
		return ".cmd";
	return "";
}

/* The PATH the child will see: from envp, else the agent's own, else a sane default. */
static const char *child_path(char *const *envp)
{
	if (envp) {
		for (char *const *e = envp; *e; e++)
			if (!strncmp(*e, "PATH=", 5))
				return *e + 5;
	}
	const char *p = getenv("PATH");
	return p ? p : DEFAULT_PATH;
}

static bool is_executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Looks `prog` up in `path` the way execvp would in the child (relative entries against the
   child's cwd); a name with a '/' is taken as it is. Returns an owned path or NULL. */
static char *find_program(const char *prog, const char *path, const char *cwd)
{
	if (strchr(prog, '/'))
		return kiln_strdup(prog);
	for (const char *s = path;;) {
		size_t n = strcspn(s, ":");
		char *cand;
		if (n == 0)
			cand =
			    cwd ? kiln_asprintf("%s/%s", cwd, prog) : kiln_asprintf("./%s", prog);
		else if (s[0] != '/' && cwd)
			cand = kiln_asprintf("%s/%.*s/%s", cwd, (int)n, s, prog);
		else
			cand = kiln_asprintf("%.*s/%s", (int)n, s, prog);
		if (is_executable(cand))
			return cand;
		free(cand);
		if (!s[n])
			return NULL;
		s += n + 1;
	}
}

static int resolve_shell(const agent_step_spec *spec, shell_cmd *sc)
{
	const char *path = child_path(spec->envp);
	kiln_strv words = {0};
	kiln_strv_split(&words, spec->shell ? spec->shell : "", " \t\r\n");

	if (words.n == 0) {
		/* kiln's default is bash with pipefail (issue 2 and DESIGN.md), where GitHub's runner
		   uses plain `bash -e {0}`; see docs/differences.md. Without bash: `sh -e {0}`. */
		kiln_strv_free(&words);
		sc->prog = find_program("bash", path, spec->cwd);
		if (sc->prog) {
			static const char *const argv[] = {"bash", "--noprofile", "--norc",
							   "-eo", "pipefail", "{0}"};
			for (size_t i = 0; i < KILN_ARRAY_SIZE(argv); i++)
				kiln_strv_push(&sc->argv, argv[i]);
		} else {
			sc->prog = find_program("sh", path, spec->cwd);
			if (!sc->prog)
				return kiln_err(ENOENT, "neither bash nor sh found in PATH (%s)", path);
			kiln_strv_push(&sc->argv, "sh");
			kiln_strv_push(&sc->argv, "-e");
			kiln_strv_push(&sc->argv, "{0}");
		}
		sc->ext = ".sh";
		return 0;
	}

	bool python = false;
	for (size_t i = 0; words.n == 1 && i < KILN_ARRAY_SIZE(builtin_shells); i++) {
		if (strcmp(words.v[0], builtin_shells[i].name) != 0)
			continue;
		for (const char *const *a = builtin_shells[i].argv; *a; a++)
			kiln_strv_push(&sc->argv, *a);
		python = !strcmp(words.v[0], "python");
		break;
	}
	if (!sc->argv.n) {
		/* A custom template: split on whitespace, {0} somewhere among the arguments. */
		bool has_arg = false;
		for (size_t i = 1; i < words.n; i++)
			has_arg |= strstr(words.v[i], "{0}") != NULL;
		if (!has_arg) {
			int r =
			    kiln_err(EINVAL,
			             "invalid shell '%s': use bash, sh, python, pwsh or a command "
			             "line containing {0}",
			             spec->shell);
			kiln_strv_free(&words);
			return r;
		}
		sc->argv = words;
		words = (kiln_strv){0};
	}
	kiln_strv_free(&words);

	sc->prog = find_program(sc->argv.v[0], path, spec->cwd);
	if (!sc->prog && python) {
		/* We ask for python3; a system with only `python` gets what GitHub asks for. */
		sc->prog = find_program("python", path, spec->cwd);
		if (sc->prog) {
			free(sc->argv.v[0]);
			sc->argv.v[0] = kiln_strdup("python");
		}
	}
	if (!sc->prog)
		return kiln_err(ENOENT, "shell '%s' not found in PATH (%s)", sc->argv.v[0], path);
	sc->ext = script_ext(sc->argv.v[0]);
	sc->powershell = !strcmp(sc->ext, ".ps1");
	return 0;
}

/* ---- script file ---- */

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes the script into a new file of `dir` (0700, unique name); *out gets its path. */
static int write_script(const char *dir, const shell_cmd *sc, const char *script, char **out)
{
	kiln_buf body = {0};
	const char *text = script;
	size_t len = strlen(script);
	if (sc->powershell) {
		/* GitHub's FixUpScriptContents: stop on errors, exit with the last code. */
		kiln_buf_printf(&body,
		                "$ErrorActionPreference = 'stop'\n%s\n"
		                "if ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit "
		                "$LASTEXITCODE }\n",
		                script);
		text = body.p;
		len = body.len;
	}
	int r = 0;
	for (int attempt = 0; attempt < 8; attempt++) {
		char rnd[17];
		r = kiln_random_hex(8, rnd);
		if (r < 0)
			break;
		char *path = kiln_asprintf("%s/kiln-step-%s%s", dir, rnd, sc->ext);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
		if (fd < 0 && errno == EEXIST) {
			free(path);
			continue;
		}
		if (fd < 0) {
			r = kiln_err(errno, "cannot write the step script to %s: %s", dir,
			             strerror(errno));
			free(path);
			break;
		}
		/* 0700 whatever the umask, as GitHub does. */
		r = fchmod(fd, 0700) < 0 ? -errno : write_all(fd, text, len);
		if (close(fd) < 0 && r == 0)
			r = -errno;
		if (r < 0) {
			r = kiln_err(r, "cannot write the step script %s: %s", path, strerror(-r));
			unlink(path);
			free(path);
			break;
		}
		*out = path;
		break;
	}
	if (r == 0 && !*out)
		r = kiln_err(EEXIST, "cannot find a free script name in %s", dir);
	kiln_buf_free(&body);
	return r;
}

/* Replaces every "{0}" of `tpl` with `path`. */
static char *substitute(const char *tpl, const char *path)
{
	kiln_buf b = {0};
	const char *s = tpl, *hit;
	while ((hit = strstr(s, "{0}"))) {
		kiln_buf_append(&b, s, (size_t)(hit - s));
		kiln_buf_puts(&b, path);
		s = hit + 3;
	}
	kiln_buf_puts(&b, s);
	return kiln_buf_steal(&b);
}

/* ---- output ---- */

typedef struct stream {
	int fd;         /* -1 once at EOF */
	int id;         /* AGENT_STREAM_* */
	kiln_buf part;  /* the current line's unterminated head, at most max_line bytes */
	bool continued; /* pieces of the current line have been emitted already */
} stream;

typedef struct step_io {
	const agent_step_spec *spec;
	size_t max_line;
	char *chunk; /* CHUNK + 1 bytes: room for a NUL after any line inside it */
	stream out, err;
} step_io;

/* Hands line[0..len) to the callback NUL-terminated; line[len] is ours to borrow. */
static void emit(step_io *io, stream *s, int64_t ts, char *line, size_t len)
{
	if (!io->spec->on_line)
		return;
	char saved = line[len];
	line[len] = '\0';
	io->spec->on_line(io->spec->arg, s->id, ts, line, len);
	line[len] = saved;
}

/* Ends the current line: strips one '\r', and skips the empty tail of a line whose pieces
   already went out (a line of exactly k*max_line bytes). */
static void finish_line(step_io *io, stream *s, int64_t ts, char *line, size_t len)
{
	if (len && line[len - 1] == '\r')
		len--;
	if (len || !s->continued)
		emit(io, s, ts, line, len);
	s->continued = false;
}

/* Splits p[0..n) into lines; complete lines inside the chunk go out without a copy. */
static void feed(step_io *io, stream *s, int64_t ts, char *p, size_t n)
{
	size_t max = io->max_line;
	while (n > 0) {
		char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n;
		while (s->part.len + seg > max) {
			size_t take = max - s->part.len;
			if (s->part.len == 0) {
				emit(io, s, ts, p, max);
			} else {
				kiln_buf_append(&s->part, p, take);
				emit(io, s, ts, s->part.p, max);
				s->part.len = 0;
			}
			p += take;
			seg -= take;
			n -= take;
			s->continued = true;
		}
		if (!nl) {
			kiln_buf_append(&s->part, p, seg);
			return;
		}
		if (s->part.len == 0) {
			finish_line(io, s, ts, p, seg);
		} else {
			kiln_buf_append(&s->part, p, seg);
			finish_line(io, s, ts, s->part.p, s->part.len);
			s->part.len = 0;
		}
		p += seg + 1;
		n -= seg + 1;
	}
}

static void stream_eof(step_io *io, stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->part.len) {
		finish_line(io, s, kiln_now_ms(), s->part.p, s->part.len);
		s->part.len = 0;
	}
	if (io->spec->on_chunk_end)
		io->spec->on_chunk_end(io->spec->arg);
}

/* Reads one chunk from a readable pipe; returns true when it got data. */
static bool stream_read(step_io *io, stream *s)
{
	ssize_t n = read(s->fd, io->chunk, CHUNK);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return false;
	if (n <= 0) {
		stream_eof(io, s);
		return false;
	}
	if (io->spec->on_line)
		feed(io, s, kiln_now_ms(), io->chunk, (size_t)n);
	if (io->spec->on_chunk_end)
		io->spec->on_chunk_end(io->spec->arg);
	return true;
}

/* ---- process ---- */

/* Moves fd above 2, so that the child's dup2 onto 0–2 cannot clobber a pipe end that happens to
   sit there when the agent was started with closed standard fds. */
static int fd_above_std(int fd)
{
	if (fd > 2)
		return fd;
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	int e = errno;
	close(fd);
	errno = e;
	return nfd;
}

static int make_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	fds[0] = fd_above_std(fds[0]);
	fds[1] = fd_above_std(fds[1]);
	if (fds[0] < 0 || fds[1] < 0) {
		int e = errno;
		if (fds[0] >= 0)
			close(fds[0]);
		if (fds[1] >= 0)
			close(fds[1]);
		return -e;
	}
	return 0;
}

static int spawn_child(pid_t *pid, const char *prog, char *const argv[], char *const envp[],
                       const char *cwd, int out_w, int err_w)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	int e = posix_spawn_file_actions_init(&fa);
	if (e)
		return -e;
	e = posix_spawnattr_init(&at);
	if (e) {
		posix_spawn_file_actions_destroy(&fa);
		return -e;
	}
	sigemptyset(&none);
	sigfillset(&all);
	if ((e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) ||
	    (e = posix_spawn_file_actions_adddup2(&fa, out_w, 1)) ||
	    (e = posix_spawn_file_actions_adddup2(&fa, err_w, 2)) ||
	    (cwd && (e = posix_spawn_file_actions_addchdir_np(&fa, cwd))) ||
	    (e = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) ||
	    (e = posix_spawnattr_setpgroup(&at, 0)) ||
	    (e = posix_spawnattr_setsigmask(&at, &none)) ||
	    (e = posix_spawnattr_setsigdefault(&at, &all)) ||
	    (e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                           POSIX_SPAWN_SETSIGDEF)))
		goto out;
	e = posix_spawn(pid, prog, &fa, &at, argv, envp ? envp : environ);
out:
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return -e;
}

static void signal_group(pid_t pgid, int sig)
{
	/* ESRCH (the group is already gone) is the only expected failure. */
	(void)kill(-pgid, sig);
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Supervises the running child until it has exited and its output is drained; fills res. */
static void supervise(const agent_step_spec *spec, step_io *io, pid_t pid, int pidfd,
                      agent_step_result *res)
{
	int64_t now = kiln_mono_ns();
	int64_t grace_ms =
	    spec->kill_grace_ms > 0 ? spec->kill_grace_ms : AGENT_KILL_GRACE_MS_DEFAULT;
	int64_t grace = min64(grace_ms, INT64_C(86400000)) * NS_PER_MS;
	/* Timeouts beyond a century are no timeout (and would overflow). */
	int64_t deadline = spec->timeout_ms > 0 && spec->timeout_ms < INT64_C(3153600000000)
	                       ? now + spec->timeout_ms * NS_PER_MS
	                       : 0;
	int64_t kill_at = 0, drain_end = 0, drain_idle_end = 0;
	bool exited = false, term_sent = false, group_killed = false;
	int cancel_fd = spec->cancel ? spec->cancel->fd : -1;

	for (;;) {
		now = kiln_mono_ns();
		if (!exited && !term_sent && deadline && now >= deadline) {
			res->timed_out = true;
			signal_group(pid, SIGTERM);
			term_sent = true;
			kill_at = now + grace;
		}
		if (term_sent && !group_killed && now >= kill_at) {
			signal_group(pid, SIGKILL);
			group_killed = true;
		}
		if (exited && !group_killed && !term_sent) {
			/* The main process is done; whatever it left running in its group (`sleep
			   100 &`) would hold the pipes open. GitHub kills such orphans at the end
			   of the job; we do it at the end of the step for now. During a kill grace
			   period the group keeps its grace (cleanup traps) and is killed when it
			   ends. */
			signal_group(pid, SIGKILL);
			group_killed = true;
		}
		if (exited && group_killed && !drain_end) {
			drain_end = now + DRAIN_MAX_NS;
			drain_idle_end = now + DRAIN_IDLE_NS;
		}
		if (exited && io->out.fd < 0 && io->err.fd < 0)
			break;
		if (drain_end && (now >= drain_end || now >= drain_idle_end))
			break; /* a process outside the group holds a pipe; stop waiting for it */

		struct pollfd pfd[4];
		stream *ps[4] = {0};
		nfds_t n = 0;
		if (io->out.fd >= 0) {
			ps[n] = &io->out;
			pfd[n++] = (struct pollfd){.fd = io->out.fd, .events = POLLIN};
		}
		if (io->err.fd >= 0) {
			ps[n] = &io->err;
			pfd[n++] = (struct pollfd){.fd = io->err.fd, .events = POLLIN};
		}
		nfds_t pidfd_i = (nfds_t)-1, cancel_i = (nfds_t)-1;
		if (pidfd >= 0 && !exited) {
			pidfd_i = n;
			pfd[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		}
		if (cancel_fd >= 0 && !exited && !term_sent) {
			cancel_i = n;
			pfd[n++] = (struct pollfd){.fd = cancel_fd, .events = POLLIN};
		}

		int64_t wake = INT64_MAX;
		if (!exited && !term_sent && deadline)
			wake = deadline;
		if (term_sent && !group_killed)
			wake = min64(wake, kill_at);
		if (drain_end)
			wake = min64(wake, min64(drain_end, drain_idle_end));
		if (pidfd < 0 && !exited)
			wake = min64(wake, now + NO_PIDFD_TICK_NS);
		struct timespec ts, *tsp = NULL;
		if (wake != INT64_MAX) {
			int64_t d = wake > now ? wake - now : 0;
			ts.tv_sec = (time_t)(d / 1000000000);
			ts.tv_nsec = (long)(d % 1000000000);
			tsp = &ts;
		}
		int r = ppoll(pfd, n, tsp, NULL);
		if (r < 0) {
			if (errno == EINTR || errno == ENOMEM || errno == EAGAIN)
				continue;
			/* Cannot happen with valid arguments; do not spin. Kill and reap. */
			signal_group(pid, SIGKILL);
			group_killed = true;
			break;
		}

		for (nfds_t i = 0; i < n && r > 0; i++) {
			if (!pfd[i].revents)
				continue;
			if (ps[i]) {
				if (stream_read(io, ps[i]) && drain_end)
					drain_idle_end = kiln_mono_ns() + DRAIN_IDLE_NS;
			} else if (i == pidfd_i) {
				exited = true;
			} else if (i == cancel_i) {
				res->cancelled = true;
				signal_group(pid, SIGTERM);
				term_sent = true;
				kill_at = kiln_mono_ns() + grace;
			}
		}
		if (pidfd < 0 && !exited) {
			/* WNOWAIT: look without reaping, so the pid still pins the group id.
			   ECHILD: reaped behind our back (SIGCHLD ignored?); stop waiting. */
			siginfo_t si = {0};
			int w = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
			if ((w == 0 && si.si_pid) || (w < 0 && errno == ECHILD))
				exited = true;
		}
	}

	/* Whatever is left in the group goes now, before the reap releases the pid. */
	if (!group_killed)
		signal_group(pid, SIGKILL);
	int st = 0;
	pid_t w;
	do
		w = waitpid(pid, &st, 0);
	while (w < 0 && errno == EINTR);
	if (w < 0) {
		res->exit_code = -1;
	} else if (WIFEXITED(st)) {
		res->exit_code = WEXITSTATUS(st);
	} else if (WIFSIGNALED(st)) {
		res->signal = WTERMSIG(st);
		res->exit_code = 128 + res->signal;
	}
	/* A pipe given up on above may still hold a partial line. */
	if (io->out.fd >= 0)
		stream_eof(io, &io->out);
	if (io->err.fd >= 0)
		stream_eof(io, &io->err);
}

/* Explains a failed posix_spawn: the working directory or the program. */
static int spawn_error(int r, const agent_step_spec *spec, const char *prog)
{
	struct stat st;
	if (spec->cwd && stat(spec->cwd, &st) < 0)
		return kiln_err(r, "working directory %s: %s", spec->cwd, strerror(errno));
	if (spec->cwd && !S_ISDIR(st.st_mode))
		return kiln_err(r, "working directory %s: %s", spec->cwd, strerror(ENOTDIR));
	return kiln_err(r, "cannot run %s: %s", prog, strerror(-r));
}

int agent_step_run(const agent_step_spec *spec, agent_step_result *res)
{
	*res = (agent_step_result){.exit_code = -1};
	if (!spec || !spec->script)
		return kiln_err(EINVAL, "step has no script");
	if (agent_cancel_fired(spec->cancel)) {
		res->cancelled = true;
		return kiln_err(ECANCELED, "step cancelled before it started");
	}

	shell_cmd sc = {0};
	kiln_strv argv = {0};
	_cleanup_free_ char *script_path = NULL;
	step_io io = {.spec = spec,
	              .max_line = spec->max_line ? spec->max_line : AGENT_MAX_LINE_DEFAULT,
	              .out = {.fd = -1, .id = AGENT_STREAM_STDOUT},
	              .err = {.fd = -1, .id = AGENT_STREAM_STDERR}};
	int out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, pidfd = -1;
	pid_t pid = 0;

	int r = resolve_shell(spec, &sc);
	if (r < 0)
		goto out;
	const char *dir = spec->script_dir && *spec->script_dir ? spec->script_dir : spec->temp_dir;
	if (!dir || !*dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	r = write_script(dir, &sc, spec->script, &script_path);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < sc.argv.n; i++)
		kiln_strv_push_owned(&argv, substitute(sc.argv.v[i], script_path));

	if ((r = make_pipe(out_p)) < 0 || (r = make_pipe(err_p)) < 0) {
		r = kiln_err(r, "pipe: %s", strerror(-r));
		goto out;
	}

	res->started_ms = kiln_now_ms();
	r = spawn_child(&pid, sc.prog, argv.v, spec->envp, spec->cwd, out_p[1], err_p[1]);
	res->spawn_ns = kiln_mono_ns();
	close(out_p[1]);
	close(err_p[1]);
	out_p[1] = err_p[1] = -1;
	if (r < 0) {
		r = spawn_error(r, spec, sc.prog);
		goto out;
	}

	pidfd = pidfd_open(pid, 0); /* always O_CLOEXEC; -1 on old kernels: see supervise() */
	io.chunk = kiln_malloc(CHUNK + 1);
	io.out.fd = out_p[0];
	io.err.fd = err_p[0];
	out_p[0] = err_p[0] = -1;
	supervise(spec, &io, pid, pidfd, res);
	res->finished_ms = kiln_now_ms();
	r = 0;

out:
	for (int i = 0; i < 2; i++) {
		if (out_p[i] >= 0)
			close(out_p[i]);
		if (err_p[i] >= 0)
			close(err_p[i]);
	}
	if (pidfd >= 0)
		close(pidfd);
	if (script_path)
		unlink(script_path);
	free(io.chunk);
	kiln_buf_free(&io.out.part);
	kiln_buf_free(&io.err.part);
	kiln_strv_free(&argv);
	shell_cmd_free(&sc);
	return r;
}
