/*
 * job — runs one assigned job on its own thread: a fresh workspace, the
 * step environment GitHub's runner gives, each step in turn (a `run:`
 * script through the step runner, or a built-in action), and the results
 * and log lines queued to the outbox. A failed step skips the rest; the
 * job's result goes last, after every line.
 */
#include "agent/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/git.h"

extern char **environ;

/* Sets KEY=VALUE in an environment vector, replacing an earlier KEY. */
static void env_set(kiln_strv *env, const char *key, const char *value)
{
	size_t klen = strlen(key);
	char *kv = kiln_asprintf("%s=%s", key, value ? value : "");
	for (size_t i = 0; i < env->n; i++) {
		if (strncmp(env->v[i], key, klen) == 0 && env->v[i][klen] == '=') {
			free(env->v[i]);
			env->v[i] = kv;
			return;
		}
	}
	kiln_strv_push_owned(env, kv);
}

static void env_copy(kiln_strv *dst, const kiln_strv *src)
{
	for (size_t i = 0; i < src->n; i++)
		kiln_strv_push(dst, src->v[i]);
}

static void env_kv(kiln_strv *env, Kiln__KeyValue **kv, size_t n)
{
	for (size_t i = 0; i < n; i++)
		env_set(env, kv[i]->key, kv[i]->value);
}

static const char *ref_name(const char *ref)
{
	if (strncmp(ref, "refs/heads/", 11) == 0)
		return ref + 11;
	if (strncmp(ref, "refs/tags/", 10) == 0)
		return ref + 10;
	return ref;
}

/* Sets both GITHUB_<name> and KILN_<name>. */
static void env_both(kiln_strv *env, const char *name, const char *value)
{
	char key[128];
	snprintf(key, sizeof key, "GITHUB_%s", name);
	env_set(env, key, value);
	snprintf(key, sizeof key, "KILN_%s", name);
	env_set(env, key, value);
}

static void base_env(agent_job *j, kiln_strv *env, const char *ws, const char *tmp)
{
	const Kiln__JobAssignment *s = j->spec;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "KILN_", 5) != 0 && strncmp(*e, "GITHUB_", 7) != 0)
			kiln_strv_push(env, *e);
	char num[32];
	env_set(env, "CI", "true");
	env_set(env, "GITHUB_ACTIONS", "true");
	env_set(env, "KILN", "true");
	env_both(env, "WORKSPACE", ws);
	env_both(env, "SHA", s->sha);
	env_both(env, "REF", s->ref);
	env_both(env, "REF_NAME", ref_name(s->ref));
	env_both(env, "REF_TYPE", strncmp(s->ref, "refs/tags/", 10) == 0 ? "tag" : "branch");
	env_both(env, "REPOSITORY", s->repository);
	snprintf(num, sizeof num, "%llu", (unsigned long long)s->run_id);
	env_both(env, "RUN_ID", num);
	snprintf(num, sizeof num, "%llu", (unsigned long long)s->run_number);
	env_both(env, "RUN_NUMBER", num);
	snprintf(num, sizeof num, "%u", s->attempt);
	env_both(env, "RUN_ATTEMPT", num);
	env_both(env, "JOB", s->job_key);
	env_both(env, "EVENT_NAME", s->event);
	env_both(env, "WORKFLOW", s->workflow_file);
	env_set(env, "RUNNER_OS", "Linux");
	env_set(env, "RUNNER_ARCH", sizeof(void *) == 8 ? "X64" : "X86");
	env_set(env, "RUNNER_TEMP", tmp);
	env_set(env, "RUNNER_NAME", j->a->name);
	env_kv(env, s->env, s->n_env);
}

typedef struct line_sink {
	agent_job *j;
	int32_t step;
} line_sink;

static void on_line(void *arg, int stream, int64_t ts_ms, const char *line, size_t len)
{
	line_sink *ls = arg;
	agent_job_line(ls->j, stream == AGENT_STREAM_STDERR ? KILN__STREAM__STREAM_STDERR
							      : KILN__STREAM__STREAM_STDOUT,
		       ls->step, ts_ms, line, len);
}

static void sys_line(agent_job *j, int32_t step, const char *fmt, ...) KILN_PRINTF(3, 4);
static void sys_line(agent_job *j, int32_t step, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	agent_job_line(j, KILN__STREAM__STREAM_SYSTEM, step, kiln_now_ms(), buf, strlen(buf));
}

static const char *with_get(const Kiln__StepSpec *st, const char *key)
{
	for (size_t i = 0; i < st->n_with; i++)
		if (strcmp(st->with[i]->key, key) == 0)
			return st->with[i]->value;
	return NULL;
}

/* Is `uses` the action `name` at any version ("actions/checkout@v4")? */
static bool uses_is(const char *uses, const char *name)
{
	size_t n = strlen(name);
	return strncmp(uses, name, n) == 0 && (uses[n] == '@' || uses[n] == '\0');
}

/* Path below the workspace, refusing to leave it. */
static char *inside(const char *ws, const char *rel)
{
	if (!rel || !*rel || strcmp(rel, ".") == 0)
		return kiln_strdup(ws);
	if (rel[0] == '/' || strstr(rel, ".."))
		return NULL;
	return kiln_asprintf("%s/%s", ws, rel);
}

static int checkout(agent_job *j, int32_t step, const Kiln__StepSpec *st, const char *ws)
{
	const Kiln__JobAssignment *s = j->spec;
	_cleanup_free_ char *dir = inside(ws, with_get(st, "path"));
	if (!dir)
		return kiln_err(EINVAL, "checkout: path must stay inside the workspace");
	if (s->worktree) {
		sys_line(j, step, "Copying the working tree of %s", s->repo_url);
		return kiln_git_snapshot_worktree(s->repo_url, dir);
	}
	_cleanup_free_ char *mirrors = kiln_asprintf("%s/mirrors", j->a->work_dir);
	_cleanup_free_ char *mirror = NULL;
	int r = kiln_mkdir_p(mirrors, 0750);
	if (r == 0)
		r = kiln_git_mirror_for(mirrors, s->repo_url, s->sha, &mirror);
	if (r < 0)
		return r;
	sys_line(j, step, "Checking out %s at %s", s->repo_url, s->sha);
	return kiln_git_checkout(mirror, s->repo_url, s->sha, s->ref, dir);
}

void agent_job_run(agent_job *j)
{
	const Kiln__JobAssignment *s = j->spec;
	agent *a = j->a;
	int64_t started = kiln_now_ms();
	int64_t deadline = s->timeout_minutes > 0 ? started + (int64_t)(s->timeout_minutes * 60000)
						  : INT64_MAX;
	agent_job_update(j, -1, KILN__JOB_STATE__JOB_STATE_RUNNING, 0, started, 0, 0, NULL, false);

	_cleanup_free_ char *root = kiln_asprintf("%s/jobs/%llu-%u", a->work_dir,
						  (unsigned long long)j->job_id, j->attempt);
	_cleanup_free_ char *ws = kiln_asprintf("%s/workspace", root);
	_cleanup_free_ char *tmp = kiln_asprintf("%s/temp", root);
	kiln_rm_rf(root);
	Kiln__Conclusion job_concl = KILN__CONCLUSION__CONCLUSION_SUCCESS;
	const char *message = NULL;
	char errbuf[512];
	if (kiln_mkdir_p(ws, 0750) < 0 || kiln_mkdir_p(tmp, 0700) < 0) {
		snprintf(errbuf, sizeof errbuf, "%s", kiln_errmsg());
		message = errbuf;
		sys_line(j, -1, "%s", errbuf);
		job_concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
	}

	kiln_strv env = {0};
	base_env(j, &env, ws, tmp);
	bool failed = job_concl != KILN__CONCLUSION__CONCLUSION_SUCCESS;
	for (size_t i = 0; i < s->n_steps; i++) {
		const Kiln__StepSpec *st = s->steps[i];
		int32_t idx = (int32_t)i;
		if (failed || agent_cancel_fired(j->cancel)) {
			agent_job_update(j, idx, KILN__JOB_STATE__JOB_STATE_COMPLETED,
					 KILN__CONCLUSION__CONCLUSION_SKIPPED, 0, 0, 0, NULL, false);
			continue;
		}
		int64_t t0 = kiln_now_ms();
		agent_job_update(j, idx, KILN__JOB_STATE__JOB_STATE_RUNNING, 0, t0, 0, 0, NULL, false);
		sys_line(j, idx, "%s", st->name);
		Kiln__Conclusion concl = KILN__CONCLUSION__CONCLUSION_SUCCESS;
		int exit_code = 0;
		if (st->uses && *st->uses) {
			int r;
			if (uses_is(st->uses, "actions/checkout"))
				r = checkout(j, idx, st, ws);
			else
				r = kiln_err(ENOTSUP, "kiln cannot run the action '%s' yet", st->uses);
			if (r < 0) {
				sys_line(j, idx, "Error: %s", kiln_errmsg());
				concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
				exit_code = 1;
			}
		} else {
			kiln_strv senv = {0};
			env_copy(&senv, &env);
			env_kv(&senv, st->env, st->n_env);
			const char *wd = *st->working_directory ? st->working_directory
								: s->default_working_directory;
			_cleanup_free_ char *cwd = inside(ws, wd);
			struct stat sb;
			if (!cwd || stat(cwd, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
				sys_line(j, idx, "Error: working-directory '%s' does not exist", wd);
				concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
				exit_code = 1;
			} else {
				line_sink sink = {j, idx};
				int64_t now = kiln_now_ms();
				int64_t timeout = deadline == INT64_MAX ? 0 : deadline - now;
				if (st->timeout_minutes > 0 &&
				    (timeout == 0 || st->timeout_minutes * 60000 < timeout))
					timeout = (int64_t)(st->timeout_minutes * 60000);
				agent_step_spec spec = {
					.script = st->run,
					.shell = *st->shell ? st->shell : s->default_shell,
					.cwd = cwd,
					.envp = senv.v,
					.temp_dir = tmp,
					.timeout_ms = timeout > 0 ? timeout : (timeout < 0 ? 1 : 0),
					.kill_grace_ms = a->cfg.kill_grace_ms,
					.cancel = j->cancel,
					.on_line = on_line,
					.arg = &sink,
				};
				agent_step_result res = {0};
				if (agent_step_run(&spec, &res) < 0) {
					sys_line(j, idx, "Error: %s", kiln_errmsg());
					concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
					exit_code = 127;
				} else {
					exit_code = res.exit_code;
					if (res.cancelled) {
						concl = KILN__CONCLUSION__CONCLUSION_CANCELLED;
						sys_line(j, idx, "The operation was cancelled.");
					} else if (res.timed_out) {
						concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
						sys_line(j, idx, "The step timed out.");
					} else if (res.exit_code != 0) {
						concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
						sys_line(j, idx, "Process completed with exit code %d.",
							 res.exit_code);
					}
				}
			}
			kiln_strv_free(&senv);
		}
		bool soft = st->continue_on_error && concl == KILN__CONCLUSION__CONCLUSION_FAILURE;
		agent_job_update(j, idx, KILN__JOB_STATE__JOB_STATE_COMPLETED,
				 soft ? KILN__CONCLUSION__CONCLUSION_SUCCESS : concl, t0, kiln_now_ms(),
				 exit_code, NULL, false);
		if (concl == KILN__CONCLUSION__CONCLUSION_CANCELLED) {
			job_concl = concl;
			failed = true;
		} else if (concl != KILN__CONCLUSION__CONCLUSION_SUCCESS && !soft) {
			job_concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
			failed = true;
		}
	}
	if (agent_cancel_fired(j->cancel) && job_concl == KILN__CONCLUSION__CONCLUSION_SUCCESS)
		job_concl = KILN__CONCLUSION__CONCLUSION_CANCELLED;
	kiln_strv_free(&env);
	kiln_rm_rf(root);
	agent_job_update(j, -1, KILN__JOB_STATE__JOB_STATE_COMPLETED, job_concl, started,
			 kiln_now_ms(), 0, message, true);
}
