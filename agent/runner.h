/*
 * runner — runs one CI step's script as a child process, the way GitHub's
 * runner does: the `run:` text goes into a temporary script file, a shell
 * template (`bash --noprofile --norc -eo pipefail {0}`, …) runs it in its own
 * process group with stdin on /dev/null, and stdout/stderr are streamed back
 * line by line with timestamps. Timeouts and cancellation send SIGTERM to the
 * whole group and SIGKILL after a grace period.
 */
#ifndef KILN_AGENT_RUNNER_H
#define KILN_AGENT_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A cancellation signal another thread can fire; one token may serve many steps at once. */
typedef struct agent_cancel agent_cancel;

/* Makes a cancellation token (an eventfd, O_CLOEXEC) in *out; 0 or a negative errno. */
int agent_cancel_new(agent_cancel **out);
/* Fires it: running steps get SIGTERM to their process group, then SIGKILL after the grace
   period. Thread-safe, idempotent, async-signal-safe. */
void agent_cancel_fire(agent_cancel *c);
/* Whether agent_cancel_fire() has been called; NULL is never fired. */
bool agent_cancel_fired(const agent_cancel *c);
/* Frees the token; NULL is a no-op. No step may still be using it. */
void agent_cancel_free(agent_cancel *c);
/* For _cleanup_(agent_cancel_freep). */
void agent_cancel_freep(agent_cancel **c);

enum { AGENT_STREAM_STDOUT = 1, AGENT_STREAM_STDERR = 2 };

/* Called once per complete output line (without the '\n'; a trailing '\r' stripped), and for a
   final unterminated line at EOF. Lines longer than `max_line` are split into pieces of
   max_line bytes. `line` is NUL-terminated (line[len] == '\0') and valid only during the call;
   ts_ms is the wall-clock time at which the chunk holding the line's end was read. */
typedef void (*agent_line_fn)(void *arg, int stream, int64_t ts_ms, const char *line, size_t len);

typedef struct agent_step_spec {
	const char *script;   /* the step's `run:` text */
	const char *shell;    /* NULL/"" = kiln's default (bash --noprofile --norc -eo pipefail {0},
	                         or sh -e {0} when bash is not in PATH); "bash", "sh", "python",
	                         "pwsh", or a custom template containing {0} */
	const char *cwd;      /* working directory (must exist); NULL = the agent's */
	char *const *envp;    /* full environment for the child (NULL-terminated); NULL = environ */
	const char *temp_dir; /* where the script file goes (RUNNER_TEMP); NULL = $TMPDIR, /tmp */
	const char *script_dir; /* if set, the script file goes here instead (e.g. on tmpfs) */
	int64_t timeout_ms;   /* 0 = none */
	int64_t kill_grace_ms; /* after SIGTERM, SIGKILL; 0 = default 7500 */
	size_t max_line;       /* 0 = 64 KiB */
	agent_cancel *cancel;  /* may be NULL */
	agent_line_fn on_line; /* may be NULL: output is read and dropped */
	void (*on_chunk_end)(void *arg); /* may be NULL: after the lines of each read */
	void *arg;
} agent_step_spec;

#define AGENT_KILL_GRACE_MS_DEFAULT 7500
#define AGENT_MAX_LINE_DEFAULT (64 * 1024)

typedef struct agent_step_result {
	int exit_code;  /* exit status, or 128+signal if killed by a signal, or -1
	                   if it could not start */
	int signal;     /* terminating signal or 0 */
	bool timed_out; /* we killed it because timeout_ms passed */
	bool cancelled; /* we killed it (or never started it) because of `cancel` */
	int64_t started_ms, finished_ms; /* wall clock */
	int64_t spawn_ns;                /* monotonic time at which posix_spawn returned */
} agent_step_result;

/* Runs the step to completion (blocking the calling thread); returns 0 when the process ran (see
   res for success) or a negative errno if it could not be started (message in kiln_errmsg()):
   -EINVAL for a bad spec or shell template, -ENOENT for a shell not found in the child's PATH,
   -ECANCELED (with res->cancelled set) when the token had fired before the step began. */
int agent_step_run(const agent_step_spec *spec, agent_step_result *res);

#endif
