/*
 * job — runs one assigned job on its own thread, as GitHub's runner does:
 * a fresh workspace; the expression contexts the coordinator sent, plus
 * `runner`, `job`, `env` and `steps` kept up to date here; for each step its
 * `if:`, its `${{ }}` fields, then a `run:` script through the step runner,
 * a built-in action, or an action's files (actions.c finds them): a Node
 * action's `main` under the agent's node, or a composite action's steps run
 * here, each a level deeper (a `frame`: its own `steps`, `inputs` and
 * status; its lines under the caller's step); the files behind
 * GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH and GITHUB_STEP_SUMMARY; workflow
 * commands in the output; and every line masked before it is queued. The job's result goes last, after
 * every line, with its outputs.
 */
#include "agent/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/actions.h"
#include "agent/checkout.h"
#include "agent/commands.h"
#include "agent/store.h"
#include "common/expr.h"
#include "common/git.h"
#include "common/logline.h"
#include "common/mask.h"

#define MAX_FILE_COMMAND (16u << 20) /* bytes in one GITHUB_OUTPUT / GITHUB_ENV file */
#define MAX_SUMMARY (1u << 20)       /* GitHub's limit for a step summary */
#define MAX_ANNOTATIONS 50           /* per step; the rest are counted, not kept */

extern char **environ;

static const char *const context_names[] = {"github", "env",	 "vars",     "job",
					    "jobs",   "steps",	 "runner",   "secrets",
					    "strategy", "matrix", "needs",    "inputs"};

typedef struct job_run {
	agent_job *j;
	const Kiln__JobAssignment *s;
	json_t *ctx;       /* every context by name */
	json_t *job_env;   /* workflow + job env, evaluated, then GITHUB_ENV additions */
	kiln_strv base;    /* the process environment every step starts from */
	kiln_strv path;    /* GITHUB_PATH additions, newest first */
	kiln_masker *masker;
	bool in_output; /* inside on_output: lines wait for on_chunk_end */
	json_t *posts;  /* post steps to run at the end ({uses, step, key, path}) */
	char *ws, *tmp;
	int status;        /* KILN_EXPR_STATUS_*: what the status functions report */
	bool debug;        /* ACTIONS_STEP_DEBUG */
	/* the step in progress */
	int32_t step;
	char *stop_token;  /* ::stop-commands:: in force */
	Kiln__Annotation **ann;
	size_t nann, dropped_ann;
} job_run;

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

static const char *env_get(const kiln_strv *env, const char *key)
{
	size_t klen = strlen(key);
	for (size_t i = 0; i < env->n; i++)
		if (strncmp(env->v[i], key, klen) == 0 && env->v[i][klen] == '=')
			return env->v[i] + klen + 1;
	return NULL;
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

/* Masks and queues a line; output read from a step waits for the end of its read
   (on_chunk_end), every other line goes at once. */
static void line_out(job_run *r, int stream, int64_t ts, const char *text, size_t len)
{
	size_t mlen = 0;
	char *masked = kiln_masker_apply(r->masker, text, len, &mlen);
	agent_job_line_buffered(r->j, stream, r->step, ts, masked ? masked : text,
				masked ? mlen : len);
	free(masked);
	if (!r->in_output)
		agent_job_flush(r->j);
}

static void sys_line(job_run *r, const char *fmt, ...) KILN_PRINTF(2, 3);
static void sys_line(job_run *r, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	line_out(r, KILN_LOGLINE_SYSTEM, kiln_now_ms(), buf, strlen(buf));
}

static void annotate(job_run *r, const agent_cmd *c)
{
	if (r->nann >= MAX_ANNOTATIONS) {
		r->dropped_ann++;
		return;
	}
	Kiln__Annotation *a = kiln_calloc(1, sizeof *a);
	kiln__annotation__init(a);
	a->level = kiln_strdup(c->name);
	size_t n = 0;
	char *m = kiln_masker_apply(r->masker, c->message, strlen(c->message), &n);
	a->message = m ? m : kiln_strdup(c->message);
	const char *v;
	a->file = kiln_strdup((v = agent_cmd_prop(c, "file")) ? v : "");
	a->title = kiln_strdup((v = agent_cmd_prop(c, "title")) ? v : "");
	a->line = (v = agent_cmd_prop(c, "line")) ? atoi(v) : 0;
	a->col = (v = agent_cmd_prop(c, "col")) ? atoi(v) : 0;
	a->end_line = (v = agent_cmd_prop(c, "endLine")) ? atoi(v) : 0;
	a->end_col = (v = agent_cmd_prop(c, "endColumn")) ? atoi(v) : 0;
	r->ann = kiln_realloc(r->ann, (r->nann + 1) * sizeof *r->ann);
	r->ann[r->nann++] = a;
}

static void free_annotations(job_run *r)
{
	for (size_t i = 0; i < r->nann; i++) {
		free(r->ann[i]->level);
		free(r->ann[i]->message);
		free(r->ann[i]->file);
		free(r->ann[i]->title);
		free(r->ann[i]);
	}
	free(r->ann);
	r->ann = NULL;
	r->nann = r->dropped_ann = 0;
}

/* A line of step output: workflow commands are acted on, then it is masked and queued. */
static void handle_output(job_run *r, int stream, int64_t ts, const char *line, size_t len)
{
	int st = stream == AGENT_STREAM_STDERR ? KILN_LOGLINE_STDERR
					       : KILN_LOGLINE_STDOUT;
	agent_cmd c;
	if (!agent_cmd_parse(line, len, &c)) {
		line_out(r, st, ts, line, len);
		return;
	}
	if (r->stop_token) {
		if (strcmp(c.name, r->stop_token) == 0) {
			free(r->stop_token);
			r->stop_token = NULL;
		}
		line_out(r, st, ts, line, len);
	} else if (strcmp(c.name, "add-mask") == 0) {
		kiln_masker_add(r->masker, c.message);
		line_out(r, st, ts, "::add-mask::***", 15);
	} else if (strcmp(c.name, "stop-commands") == 0) {
		if (*c.message)
			r->stop_token = kiln_strdup(c.message);
		line_out(r, st, ts, line, len);
	} else if (strcmp(c.name, "error") == 0 || strcmp(c.name, "warning") == 0 ||
		   strcmp(c.name, "notice") == 0) {
		annotate(r, &c);
		line_out(r, st, ts, line, len);
	} else if (strcmp(c.name, "debug") == 0) {
		if (r->debug)
			line_out(r, st, ts, line, len);
	} else if (strcmp(c.name, "set-output") == 0 || strcmp(c.name, "set-env") == 0 ||
		   strcmp(c.name, "add-path") == 0 || strcmp(c.name, "save-state") == 0) {
		line_out(r, st, ts, line, len);
		sys_line(r, "Warning: the `%s` command is deprecated and ignored; use the %s file",
			 c.name,
			 strcmp(c.name, "set-output") == 0 ? "GITHUB_OUTPUT"
			 : strcmp(c.name, "set-env") == 0  ? "GITHUB_ENV"
			 : strcmp(c.name, "add-path") == 0 ? "GITHUB_PATH"
							   : "GITHUB_STATE");
	} else {
		line_out(r, st, ts, line, len);
	}
	agent_cmd_clear(&c);
}

static void on_output(void *arg, int stream, int64_t ts, const char *line, size_t len)
{
	job_run *r = arg;
	r->in_output = true;
	handle_output(r, stream, ts, line, len);
	r->in_output = false;
}

static void on_chunk_end(void *arg)
{
	job_run *r = arg;
	agent_job_flush(r->j);
}

static kiln_expr_ctx expr_ctx(job_run *r)
{
	kiln_expr_ctx x = {.contexts = r->ctx, .status = r->status,
			   .hash_files = kiln_expr_hash_files_dir, .hash_arg = r->ws};
	return x;
}

/* Interpolates ${{ }} in text; on error says why in the log and returns NULL. */
static char *interp(job_run *r, const char *what, const char *text)
{
	if (!text)
		return kiln_strdup("");
	if (!strstr(text, "${{"))
		return kiln_strdup(text);
	kiln_expr_ctx x = expr_ctx(r);
	char *out = NULL;
	if (kiln_expr_interpolate(text, &x, &out) < 0) {
		sys_line(r, "Error: %s: %s", what, kiln_errmsg());
		return NULL;
	}
	return out;
}

static json_t *obj_child(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_object(v)) {
		v = json_object();
		json_object_set_new(o, key, v);
	}
	return v;
}

static void set_job_status(job_run *r)
{
	const char *s = r->status == KILN_EXPR_STATUS_CANCELLED ? "cancelled"
			: r->status == KILN_EXPR_STATUS_FAILURE	  ? "failure"
								  : "success";
	json_object_set_new(obj_child(r->ctx, "job"), "status", json_string(s));
}

static void setup(job_run *r)
{
	const Kiln__JobAssignment *s = r->s;
	agent *a = r->j->a;
	r->ctx = s->context_json && *s->context_json ? json_loads(s->context_json, 0, NULL) : NULL;
	if (!json_is_object(r->ctx)) {
		json_decref(r->ctx);
		r->ctx = json_object();
	}
	for (size_t i = 0; i < KILN_ARRAY_SIZE(context_names); i++)
		obj_child(r->ctx, context_names[i]);
	json_t *gh = obj_child(r->ctx, "github");
	json_object_set_new(gh, "workspace", json_string(r->ws));
	if (!json_object_get(gh, "sha"))
		json_object_set_new(gh, "sha", json_string(s->sha));
	if (!json_object_get(gh, "ref"))
		json_object_set_new(gh, "ref", json_string(s->ref));
	if (!json_object_get(gh, "ref_name"))
		json_object_set_new(gh, "ref_name", json_string(ref_name(s->ref)));
	if (!json_object_get(gh, "repository"))
		json_object_set_new(gh, "repository", json_string(s->repository));
	if (!json_object_get(gh, "event_name"))
		json_object_set_new(gh, "event_name", json_string(s->event));
	if (!json_object_get(gh, "job"))
		json_object_set_new(gh, "job", json_string(s->job_key));
	char num[32];
	snprintf(num, sizeof num, "%llu", (unsigned long long)s->run_id);
	if (!json_object_get(gh, "run_id"))
		json_object_set_new(gh, "run_id", json_string(num));
	snprintf(num, sizeof num, "%u", s->attempt);
	json_object_set_new(gh, "run_attempt", json_string(num));
	json_t *runner = obj_child(r->ctx, "runner");
	json_object_set_new(runner, "os", json_string("Linux"));
	json_object_set_new(runner, "arch", json_string(sizeof(void *) == 8 ? "X64" : "X86"));
	json_object_set_new(runner, "name", json_string(a->name));
	json_object_set_new(runner, "temp", json_string(r->tmp));
	_cleanup_free_ char *tools = kiln_asprintf("%s/tool-cache", a->work_dir);
	json_object_set_new(runner, "tool_cache", json_string(tools));

	const char *dbg = json_string_value(
		json_object_get(json_object_get(r->ctx, "secrets"), "ACTIONS_STEP_DEBUG"));
	if (!dbg)
		dbg = json_string_value(
			json_object_get(json_object_get(r->ctx, "vars"), "ACTIONS_STEP_DEBUG"));
	r->debug = dbg && strcasecmp(dbg, "true") == 0;
	json_object_set_new(runner, "debug", json_string(r->debug ? "1" : ""));

	r->masker = kiln_masker_new();
	for (size_t i = 0; i < s->n_masks; i++)
		kiln_masker_add(r->masker, s->masks[i]);
	set_job_status(r);

	/* the environment every step starts from: the agent's, then what GitHub's runner sets */
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "KILN_", 5) != 0 && strncmp(*e, "GITHUB_", 7) != 0 &&
		    strncmp(*e, "RUNNER_", 7) != 0)
			kiln_strv_push(&r->base, *e);
	kiln_strv *env = &r->base;
	env_set(env, "CI", "true");
	env_set(env, "GITHUB_ACTIONS", "true");
	env_set(env, "KILN", "true");
	env_both(env, "WORKSPACE", r->ws);
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
	const char *server = json_string_value(json_object_get(gh, "server_url"));
	env_both(env, "SERVER_URL", server ? server : "https://github.com");
	/* the event payload (github.event) as a file, as GitHub's runner gives it */
	const char *sd = a->script_dir;
	_cleanup_free_ char *event_path =
		sd ? kiln_asprintf("%s/event-%llu-%u.json", sd, (unsigned long long)r->j->job_id,
				   r->j->attempt)
		   : kiln_asprintf("%s/_github_workflow/event.json", r->tmp);
	json_t *event = json_object_get(gh, "event");
	event = json_is_object(event) ? json_incref(event) : json_object();
	char *payload = json_dumps(event, JSON_INDENT(2));
	json_decref(event);
	if (!sd) {
		_cleanup_free_ char *d = kiln_asprintf("%s/_github_workflow", r->tmp);
		kiln_mkdir_p(d, 0700);
	}
	if (payload && kiln_write_file_atomic(event_path, payload, strlen(payload), 0600) == 0) {
		env_both(env, "EVENT_PATH", event_path);
		json_object_set_new(gh, "event_path", json_string(event_path));
	}
	free(payload);
	env_set(env, "RUNNER_OS", "Linux");
	env_set(env, "RUNNER_ARCH", sizeof(void *) == 8 ? "X64" : "X86");
	env_set(env, "RUNNER_TEMP", r->tmp);
	env_set(env, "RUNNER_TOOL_CACHE", tools);
	env_set(env, "RUNNER_NAME", a->name);
	env_set(env, "KILN_RUNNER_OS", "Linux");
	env_set(env, "KILN_RUNNER_TEMP", r->tmp);
	env_set(env, "KILN_RUNNER_NAME", a->name);
	if (r->debug)
		env_set(env, "RUNNER_DEBUG", "1");

	/* workflow then job env, each value evaluated with the env before it */
	r->job_env = json_object();
	json_object_set(r->ctx, "env", r->job_env);
	for (size_t i = 0; i < s->n_env; i++) {
		_cleanup_free_ char *v = interp(r, s->env[i]->key, s->env[i]->value);
		json_object_set_new(r->job_env, s->env[i]->key, json_string(v ? v : ""));
	}
}

/* Reads a GITHUB_OUTPUT / GITHUB_ENV file: "name=value" lines and "name<<DELIM" blocks. */
static int read_file_command(const char *path, const char *what, json_t *into)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	struct stat st;
	if (stat(path, &st) < 0 || st.st_size == 0)
		return 0;
	int r = kiln_read_file(path, MAX_FILE_COMMAND, &text, &len);
	if (r < 0)
		return r;
	char *p = text, *end = text + len;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *le = nl ? nl : end;
		if (le > p && le[-1] == '\r')
			le[-1] = '\0';
		*le = '\0';
		char *next = nl ? nl + 1 : end;
		if (!*p) {
			p = next;
			continue;
		}
		char *heredoc = strstr(p, "<<");
		char *eq = strchr(p, '=');
		if (heredoc && (!eq || heredoc < eq)) {
			*heredoc = '\0';
			const char *delim = heredoc + 2;
			if (!*p || !*delim)
				return kiln_err(EINVAL, "%s: a name<<DELIMITER line without a name or delimiter", what);
			kiln_buf v = {0};
			bool closed = false;
			char *q = next;
			while (q < end) {
				char *qn = memchr(q, '\n', (size_t)(end - q));
				char *qe = qn ? qn : end;
				size_t ql = (size_t)(qe - q);
				if (ql && q[ql - 1] == '\r')
					ql--;
				if (ql == strlen(delim) && memcmp(q, delim, ql) == 0) {
					closed = true;
					q = qn ? qn + 1 : end;
					break;
				}
				if (v.len)
					kiln_buf_puts(&v, "\n");
				kiln_buf_append(&v, q, ql);
				q = qn ? qn + 1 : end;
			}
			if (!closed) {
				kiln_buf_free(&v);
				return kiln_err(EINVAL, "%s: matching delimiter '%s' not found", what, delim);
			}
			json_object_set_new(into, p, json_stringn(v.p ? v.p : "", v.len));
			kiln_buf_free(&v);
			p = q;
			continue;
		}
		if (!eq || eq == p)
			return kiln_err(EINVAL, "%s: invalid line '%.40s' (expected name=value or name<<DELIMITER)", what, p);
		*eq = '\0';
		json_object_set_new(into, p, json_string(eq + 1));
		p = next;
	}
	return 0;
}

static int read_path_file(job_run *r, const char *path)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	struct stat st;
	if (stat(path, &st) < 0 || st.st_size == 0)
		return 0;
	int rc = kiln_read_file(path, MAX_FILE_COMMAND, &text, &len);
	if (rc < 0)
		return rc;
	kiln_strv lines = {0};
	kiln_strv_split(&lines, text, "\r\n");
	for (size_t i = 0; i < lines.n; i++) {
		/* newest first, as GitHub prepends each */
		kiln_strv_push(&r->path, "");
		memmove(r->path.v + 1, r->path.v, (r->path.n - 1) * sizeof *r->path.v);
		free(r->path.v[0]);
		r->path.v[0] = kiln_strdup(lines.v[i]);
	}
	kiln_strv_free(&lines);
	return 0;
}

/* A system line for a built-in action (agent_checkout's log callback). */
static void job_log_line(void *arg, const char *text)
{
	sys_line(arg, "%s", text);
}

/* Is `uses` the action `name` at any version ("actions/checkout@v4")? */
static bool uses_is(const char *uses, const char *name)
{
	size_t n = strlen(name);
	return strncmp(uses, name, n) == 0 && (uses[n] == '@' || uses[n] == '\0');
}

/* true/false/expression → bool; errors count as false with a message. */
static bool eval_flag(job_run *r, const char *what, bool plain, const char *expr)
{
	if (!expr || !*expr)
		return plain;
	_cleanup_free_ char *v = interp(r, what, expr);
	return v && strcmp(v, "true") == 0;
}

static double eval_minutes(job_run *r, double plain, const char *expr)
{
	if (!expr || !*expr)
		return plain;
	_cleanup_free_ char *v = interp(r, "timeout-minutes", expr);
	char *end;
	double m = v ? strtod(v, &end) : 0;
	return v && end != v && m > 0 ? m : plain;
}

typedef struct step_files {
	char *output, *env, *path, *summary, *state;
} step_files;

static void step_files_free(step_files *f)
{
	char **all[] = {&f->output, &f->env, &f->path, &f->summary, &f->state};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(all); i++) {
		if (*all[i])
			unlink(*all[i]);
		free(*all[i]);
		*all[i] = NULL;
	}
}

/* The files behind GITHUB_OUTPUT & co. for step idx: in the agent's tmpfs directory when it
   has one (a file created on a slow disk costs about a millisecond), else under RUNNER_TEMP. */
static int step_files_make(job_run *r, size_t idx, step_files *f)
{
	const char *sd = r->j->a->script_dir;
	_cleanup_free_ char *dir =
		sd ? kiln_asprintf("%s/%llu-%u", sd, (unsigned long long)r->j->job_id, r->j->attempt)
		   : kiln_asprintf("%s/_runner_file_commands", r->tmp);
	int rc = kiln_mkdir_p(dir, 0700);
	if (rc < 0)
		return rc;
	char **all[] = {&f->output, &f->env, &f->path, &f->summary, &f->state};
	static const char *const names[] = {"set_output", "set_env", "add_path", "step_summary",
					    "save_state"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(all); i++) {
		*all[i] = kiln_asprintf("%s/%s_%zu", dir, names[i], idx);
		int fd = open(*all[i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return kiln_err(errno, "%s: %s", *all[i], strerror(errno));
		close(fd);
	}
	return 0;
}

/* The environment of one step: base, job env (+GITHUB_ENV), step env, what the runner adds for
   an action (penv: GITHUB_ACTION_PATH, INPUT_*), the file commands, PATH additions. */
static void step_env(job_run *r, json_t *senv, json_t *penv, const step_files *f, kiln_strv *out)
{
	for (size_t i = 0; i < r->base.n; i++)
		kiln_strv_push(out, r->base.v[i]);
	const char *k;
	json_t *v;
	json_object_foreach(r->job_env, k, v)
		env_set(out, k, json_string_value(v));
	json_object_foreach(senv, k, v)
		env_set(out, k, json_string_value(v));
	json_object_foreach(penv, k, v)
		env_set(out, k, json_string_value(v));
	if (f->output) {
		env_set(out, "GITHUB_OUTPUT", f->output);
		env_set(out, "GITHUB_ENV", f->env);
		env_set(out, "GITHUB_PATH", f->path);
		env_set(out, "GITHUB_STEP_SUMMARY", f->summary);
		env_set(out, "GITHUB_STATE", f->state);
		env_set(out, "KILN_OUTPUT", f->output);
		env_set(out, "KILN_ENV", f->env);
		env_set(out, "KILN_PATH", f->path);
		env_set(out, "KILN_STEP_SUMMARY", f->summary);
	}
	if (r->path.n) {
		kiln_buf p = {0};
		for (size_t i = 0; i < r->path.n; i++)
			kiln_buf_printf(&p, "%s:", r->path.v[i]);
		const char *old = env_get(out, "PATH");
		kiln_buf_puts(&p, old ? old : "/usr/local/bin:/usr/bin:/bin");
		env_set(out, "PATH", p.p);
		kiln_buf_free(&p);
	}
}

/* Whether `prog` is an executable file in the colon-separated `path`. */
static bool in_path(const char *prog, const char *path)
{
	for (const char *s = path ? path : ""; *s;) {
		size_t n = strcspn(s, ":");
		if (n) {
			_cleanup_free_ char *cand = kiln_asprintf("%.*s/%s", (int)n, s, prog);
			struct stat st;
			if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
				return true;
		}
		s += n;
		if (*s)
			s++;
	}
	return false;
}

typedef struct step_result {
	Kiln__Conclusion outcome;
	int exit_code;
	json_t *outputs;
	char *summary;
} step_result;

static void step_fail(step_result *res)
{
	res->outcome = KILN__CONCLUSION__CONCLUSION_FAILURE;
	res->exit_code = 1;
}

/* Where an action's steps run from: set for the steps of an action, NULL for the job's own. */
typedef struct action_site {
	const char *uses;       /* as written */
	const char *dir;        /* its directory: github.action_path */
	const char *repository; /* OWNER/REPO of a remote action, else NULL */
	const char *ref;        /* its ref, else NULL */
} action_site;

/* A level of steps: the job's own (depth 0) or those of a composite action. */
typedef struct frame {
	unsigned depth;
	json_t *env;              /* env the calling steps pass down; NULL at depth 0 */
	const action_site *site;  /* NULL at depth 0 */
	int status;               /* KILN_EXPR_STATUS_* of this level's steps (github.action_status) */
} frame;

/* The variables the runner sets for a step of an action (GITHUB_ACTION_PATH…); owned. */
static json_t *site_env(const action_site *site)
{
	json_t *e = json_object();
	if (!site)
		return e;
	json_object_set_new(e, "GITHUB_ACTION_PATH", json_string(site->dir));
	if (site->repository) {
		json_object_set_new(e, "GITHUB_ACTION_REPOSITORY", json_string(site->repository));
		json_object_set_new(e, "GITHUB_ACTION_REF", json_string(site->ref));
	}
	return e;
}

/* What one process needs: its script and how to run it. */
typedef struct proc_spec {
	const char *script, *shell, *cwd;
	json_t *senv;     /* the step's env (also in the env context) */
	json_t *penv;     /* added by the runner, not in the env context; may be NULL */
	const char *need; /* a program that must be in PATH (the error names it), or NULL */
	const char *need_why;
} proc_spec;

/* Runs one process for step idx and applies its file commands. */
static void spawn_step(job_run *r, size_t idx, const proc_spec *ps, int64_t deadline,
		       step_result *res)
{
	agent *a = r->j->a;
	if (deadline != INT64_MAX && deadline <= kiln_now_ms()) {
		/* an action's later step (if: always()) after its time ran out */
		sys_line(r, "The step's time limit was reached before this process could start.");
		step_fail(res);
		return;
	}
	step_files f = {0};
	if (step_files_make(r, idx, &f) < 0) {
		sys_line(r, "Error: %s", kiln_errmsg());
		step_files_free(&f);
		step_fail(res);
		return;
	}
	kiln_strv env = {0};
	step_env(r, ps->senv, ps->penv, &f, &env);
	if (ps->need && !in_path(ps->need, env_get(&env, "PATH"))) {
		sys_line(r, "Error: '%s' was not found in PATH; it is needed %s", ps->need,
			 ps->need_why ? ps->need_why : "");
		kiln_strv_free(&env);
		step_files_free(&f);
		res->outcome = KILN__CONCLUSION__CONCLUSION_FAILURE;
		res->exit_code = 127;
		return;
	}
	int64_t now = kiln_now_ms();
	int64_t timeout = deadline == INT64_MAX ? 0 : deadline - now;
	agent_step_spec spec = {
		.script = ps->script,
		.shell = ps->shell,
		.cwd = ps->cwd,
		.envp = env.v,
		.temp_dir = r->tmp,
		.script_dir = a->script_dir,
		.timeout_ms = timeout > 0 ? timeout : (timeout < 0 ? 1 : 0),
		.kill_grace_ms = a->cfg.kill_grace_ms,
		.cancel = r->j->cancel,
		.on_line = on_output,
		.on_chunk_end = on_chunk_end,
		.arg = r,
	};
	agent_step_result sr = {0};
	if (agent_step_run(&spec, &sr) < 0) {
		if (sr.cancelled) {
			res->outcome = KILN__CONCLUSION__CONCLUSION_CANCELLED;
		} else {
			sys_line(r, "Error: %s", kiln_errmsg());
			res->outcome = KILN__CONCLUSION__CONCLUSION_FAILURE;
			res->exit_code = 127;
		}
	} else {
		res->exit_code = sr.exit_code;
		if (sr.cancelled) {
			res->outcome = KILN__CONCLUSION__CONCLUSION_CANCELLED;
			sys_line(r, "The operation was cancelled.");
		} else if (sr.timed_out) {
			res->outcome = KILN__CONCLUSION__CONCLUSION_FAILURE;
			sys_line(r, "The step timed out after %.4g minutes.", (double)timeout / 60000);
		} else if (sr.exit_code != 0) {
			res->outcome = KILN__CONCLUSION__CONCLUSION_FAILURE;
			sys_line(r, "Process completed with exit code %d.", sr.exit_code);
		}
	}
	kiln_strv_free(&env);

	/* the file commands count even when the step failed, as on GitHub */
	json_t *added_env = json_object();
	int rc = read_file_command(f.output, "GITHUB_OUTPUT", res->outputs);
	if (rc == 0)
		rc = read_file_command(f.env, "GITHUB_ENV", added_env);
	if (rc == 0)
		rc = read_path_file(r, f.path);
	if (rc < 0) {
		sys_line(r, "Error: unable to process file command: %s", kiln_errmsg());
		res->outcome = KILN__CONCLUSION__CONCLUSION_FAILURE;
	}
	const char *k;
	json_t *v;
	json_object_foreach(added_env, k, v)
	{
		if (strcasecmp(k, "NODE_OPTIONS") == 0) {
			sys_line(r, "Warning: NODE_OPTIONS cannot be set through GITHUB_ENV");
			continue;
		}
		json_object_set(r->job_env, k, v);
	}
	json_decref(added_env);
	char *summary = NULL;
	size_t slen = 0;
	struct stat sb;
	if (stat(f.summary, &sb) == 0 && sb.st_size > 0) {
		if (kiln_read_file(f.summary, MAX_SUMMARY, &summary, &slen) < 0)
			sys_line(r, "Warning: the step summary is larger than 1 MiB and was dropped");
	}
	if (summary) {
		size_t mlen = 0;
		char *m = kiln_masker_apply(r->masker, summary, slen, &mlen);
		if (m) {
			free(summary);
			summary = m;
		}
		res->summary = summary;
	}
	step_files_free(&f);
}

/* Runs the `run:` script of a step with its evaluated env. */
static void run_script(job_run *r, const frame *fr, size_t idx, const Kiln__StepSpec *st,
		       json_t *senv, int64_t deadline, step_result *res)
{
	const Kiln__JobAssignment *s = r->s;
	/* the job's defaults.run do not reach into an action, as on GitHub */
	const char *shell_text = *st->shell ? st->shell : fr->depth ? "" : s->default_shell;
	const char *wd_text = *st->working_directory ? st->working_directory
			      : fr->depth		  ? ""
							  : s->default_working_directory;
	_cleanup_free_ char *script = interp(r, "run", st->run);
	_cleanup_free_ char *shell = interp(r, "shell", shell_text);
	_cleanup_free_ char *wd = interp(r, "working-directory", wd_text);
	if (!script || !shell || !wd) {
		step_fail(res);
		return;
	}
	_cleanup_free_ char *cwd = agent_inside(r->ws, wd);
	struct stat sb;
	if (!cwd || stat(cwd, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		sys_line(r, "Error: working-directory '%s' does not exist", wd);
		step_fail(res);
		return;
	}
	json_t *penv = site_env(fr->site);
	proc_spec ps = {.script = script, .shell = shell, .cwd = cwd, .senv = senv, .penv = penv};
	spawn_step(r, idx, &ps, deadline, res);
	json_decref(penv);
}

static void run_step(job_run *r, const frame *fr, size_t idx, const Kiln__StepSpec *st,
		     int64_t deadline, step_result *res);

/* A display name for a step: its name, else "Run " and its action or script's first line;
   evaluated when it can be, else shown as written (as GitHub does). */
static char *step_title(job_run *r, const Kiln__StepSpec *st)
{
	char *raw;
	if (st->name && *st->name)
		raw = kiln_strdup(st->name);
	else if (st->uses && *st->uses)
		raw = kiln_asprintf("Run %s", st->uses);
	else
		raw = kiln_asprintf("Run %.*s", (int)strcspn(st->run, "\n"), st->run);
	char *name = NULL;
	kiln_expr_ctx nx = expr_ctx(r);
	if (!strstr(raw, "${{") || kiln_expr_interpolate(raw, &nx, &name) < 0) {
		free(name);
		return raw;
	}
	free(raw);
	return name;
}

/* The action's inputs: each `with` value, else the input's default (evaluated here, in the
   caller's contexts); NULL with a message when a required input is missing. */
static json_t *action_inputs(job_run *r, const kiln_action *act, const char *uses, json_t *with)
{
	json_t *in = json_object();
	kiln_buf unexpected = {0};
	const char *k;
	json_t *v;
	json_object_foreach(with, k, v)
	{
		const kiln_action_input *def = kiln_action_input_get(act, k);
		if (!def) {
			kiln_buf_printf(&unexpected, "%s'%s'", unexpected.len ? ", " : "", k);
			json_object_set(in, k, v);
		} else {
			json_object_set(in, def->name, v);
			if (def->deprecation)
				sys_line(r, "Warning: Input '%s' has been deprecated with message: %s",
					 def->name, def->deprecation);
		}
	}
	if (unexpected.len) {
		kiln_buf valid = {0};
		for (size_t i = 0; i < act->ninputs; i++)
			kiln_buf_printf(&valid, "%s'%s'", i ? ", " : "", act->inputs[i].name);
		sys_line(r, "Warning: Unexpected input(s) %s, valid inputs are [%s]", unexpected.p,
			 valid.p ? valid.p : "");
		kiln_buf_free(&valid);
	}
	kiln_buf_free(&unexpected);
	for (size_t i = 0; i < act->ninputs; i++) {
		const kiln_action_input *def = &act->inputs[i];
		if (json_object_get(in, def->name))
			continue;
		if (!def->default_value) {
			if (def->required) {
				sys_line(r, "Error: Input required and not supplied: %s (by %s)",
					 def->name, uses);
				json_decref(in);
				return NULL;
			}
			json_object_set_new(in, def->name, json_string(""));
			continue;
		}
		_cleanup_free_ char *what = kiln_asprintf("default of input '%s'", def->name);
		char *val = interp(r, what, def->default_value);
		if (!val) {
			json_decref(in);
			return NULL;
		}
		json_object_set_new(in, def->name, json_string(val));
		free(val);
	}
	return in;
}

/* A composite step as the step runner takes it; strings borrowed from the action. */
typedef struct spec_copy {
	Kiln__StepSpec spec;
	Kiln__KeyValue *kv;
	Kiln__KeyValue **env, **with;
} spec_copy;

static char *str_or_empty(const char *s)
{
	return (char *)(s ? s : "");
}

static void spec_from_step(const kiln_step *s, spec_copy *c)
{
	kiln__step_spec__init(&c->spec);
	Kiln__StepSpec *p = &c->spec;
	p->id = str_or_empty(s->id);
	p->name = str_or_empty(s->name);
	p->run = str_or_empty(s->run);
	p->uses = str_or_empty(s->uses);
	p->shell = str_or_empty(s->shell);
	p->working_directory = str_or_empty(s->working_directory);
	p->if_cond = str_or_empty(s->if_cond);
	const char *coe = s->continue_on_error;
	p->continue_on_error = coe && strcmp(coe, "true") == 0;
	p->continue_on_error_expr =
	    coe && strcmp(coe, "true") != 0 && strcmp(coe, "false") != 0 ? (char *)coe : "";
	p->timeout_minutes_expr = "";
	size_t n = s->env.n + s->with.n;
	c->kv = kiln_calloc(n ? n : 1, sizeof *c->kv);
	c->env = kiln_calloc(s->env.n ? s->env.n : 1, sizeof *c->env);
	c->with = kiln_calloc(s->with.n ? s->with.n : 1, sizeof *c->with);
	for (size_t i = 0; i < s->env.n; i++) {
		Kiln__KeyValue *kv = &c->kv[i];
		kiln__key_value__init(kv);
		kv->key = s->env.v[i].key;
		kv->value = s->env.v[i].value;
		c->env[i] = kv;
	}
	for (size_t i = 0; i < s->with.n; i++) {
		Kiln__KeyValue *kv = &c->kv[s->env.n + i];
		kiln__key_value__init(kv);
		kv->key = s->with.v[i].key;
		kv->value = s->with.v[i].value;
		c->with[i] = kv;
	}
	p->n_env = s->env.n;
	p->env = c->env;
	p->n_with = s->with.n;
	p->with = c->with;
}

static void spec_copy_free(spec_copy *c)
{
	free(c->kv);
	free(c->env);
	free(c->with);
}

static const char *concl_name(Kiln__Conclusion c);

/* Runs a composite action's steps, each under the caller's step in the log, with the action's
   own steps, inputs and status; then its outputs, evaluated against those steps. */
static void run_composite(job_run *r, const frame *fr, size_t idx, const kiln_action *act,
			  const action_site *site, json_t *inputs, json_t *senv, int64_t deadline,
			  step_result *res)
{
	if (fr->depth + 1 > AGENT_ACTION_MAX_DEPTH) {
		sys_line(r, "Error: composite actions are nested more than %d deep (at %s)",
			 AGENT_ACTION_MAX_DEPTH, site->uses);
		step_fail(res);
		return;
	}
	json_t *ctx = json_copy(r->ctx); /* shallow: the job's contexts, some replaced */
	json_t *gh = json_copy(json_object_get(r->ctx, "github"));
	if (!gh)
		gh = json_object();
	json_object_set_new(gh, "action_path", json_string(site->dir));
	json_object_set_new(gh, "action_repository", json_string(site->repository ? site->repository : ""));
	json_object_set_new(gh, "action_ref", json_string(site->ref ? site->ref : ""));
	json_object_set_new(gh, "action_status", json_string("success"));
	json_object_set_new(ctx, "github", gh);
	json_object_set(ctx, "inputs", inputs);
	json_t *steps_ctx = json_object();
	json_object_set_new(ctx, "steps", steps_ctx);
	frame child = {.depth = fr->depth + 1, .env = senv, .site = site,
		       .status = KILN_EXPR_STATUS_SUCCESS};

	json_t *saved_ctx = r->ctx;
	int saved_status = r->status;
	r->ctx = ctx;
	kiln_buf summary = {0};
	for (size_t i = 0; i < act->nsteps; i++) {
		if (agent_cancel_fired(r->j->cancel))
			child.status = KILN_EXPR_STATUS_CANCELLED;
		r->status = child.status;
		json_object_set_new(gh, "action_status",
				    json_string(child.status == KILN_EXPR_STATUS_SUCCESS ? "success"
						: child.status == KILN_EXPR_STATUS_FAILURE ? "failure"
											    : "cancelled"));
		spec_copy sc;
		spec_from_step(&act->steps[i], &sc);
		const Kiln__StepSpec *st = &sc.spec;
		kiln_expr_ctx x = expr_ctx(r);
		bool go = false;
		const char *cond = *st->if_cond ? st->if_cond : "success()";
		if (kiln_expr_condition(cond, &x, &go) < 0) {
			sys_line(r, "Error: if: %s", kiln_errmsg());
			if (child.status == KILN_EXPR_STATUS_SUCCESS)
				child.status = KILN_EXPR_STATUS_FAILURE;
			spec_copy_free(&sc);
			continue;
		}
		if (!go || (child.status == KILN_EXPR_STATUS_CANCELLED &&
			    !strstr(cond, "always()") && !strstr(cond, "cancelled()"))) {
			if (*st->id)
				json_object_set_new(steps_ctx, st->id,
						    json_pack("{s:{}, s:s, s:s}", "outputs", "outcome",
							      "skipped", "conclusion", "skipped"));
			spec_copy_free(&sc);
			continue;
		}
		char *title = step_title(r, st);
		sys_line(r, "%s", title);
		free(title);
		step_result cres = {0};
		run_step(r, &child, idx, st, deadline, &cres);
		bool soft = cres.outcome == KILN__CONCLUSION__CONCLUSION_FAILURE &&
			    eval_flag(r, "continue-on-error", st->continue_on_error,
				      st->continue_on_error_expr);
		Kiln__Conclusion concl = soft ? KILN__CONCLUSION__CONCLUSION_SUCCESS : cres.outcome;
		if (*st->id)
			json_object_set_new(steps_ctx, st->id,
					    json_pack("{s:O, s:s, s:s}", "outputs", cres.outputs,
						      "outcome", concl_name(cres.outcome),
						      "conclusion", concl_name(concl)));
		if (cres.summary) {
			if (summary.len)
				kiln_buf_puts(&summary, "\n");
			kiln_buf_puts(&summary, cres.summary);
		}
		if (concl != KILN__CONCLUSION__CONCLUSION_SUCCESS)
			res->exit_code = cres.exit_code ? cres.exit_code : 1;
		free(cres.summary);
		json_decref(cres.outputs);
		spec_copy_free(&sc);
		if (concl == KILN__CONCLUSION__CONCLUSION_CANCELLED)
			child.status = KILN_EXPR_STATUS_CANCELLED;
		else if (concl == KILN__CONCLUSION__CONCLUSION_FAILURE &&
			 child.status == KILN_EXPR_STATUS_SUCCESS)
			child.status = KILN_EXPR_STATUS_FAILURE;
	}
	if (agent_cancel_fired(r->j->cancel))
		child.status = KILN_EXPR_STATUS_CANCELLED;

	/* outputs see the action's steps, its inputs, and the env its steps had */
	json_t *env_ctx = json_deep_copy(r->job_env);
	json_object_update(env_ctx, senv);
	json_object_set_new(ctx, "env", env_ctx);
	for (size_t i = 0; i < act->noutputs; i++) {
		const kiln_action_output *o = &act->outputs[i];
		_cleanup_free_ char *what = kiln_asprintf("output '%s' of %s", o->name, site->uses);
		char *v = o->value ? interp(r, what, o->value) : kiln_strdup("");
		if (!v) {
			if (child.status == KILN_EXPR_STATUS_SUCCESS)
				child.status = KILN_EXPR_STATUS_FAILURE;
			continue;
		}
		json_object_set_new(res->outputs, o->name, json_string(v));
		free(v);
	}
	r->ctx = saved_ctx;
	r->status = saved_status;
	json_decref(ctx);
	if (summary.len)
		res->summary = kiln_buf_steal(&summary);
	kiln_buf_free(&summary);
	if (child.status == KILN_EXPR_STATUS_CANCELLED) {
		res->outcome = KILN__CONCLUSION__CONCLUSION_CANCELLED;
	} else if (child.status == KILN_EXPR_STATUS_FAILURE) {
		res->outcome = KILN__CONCLUSION__CONCLUSION_FAILURE;
		if (!res->exit_code)
			res->exit_code = 1;
	}
}

/* Single-quotes s for sh. */
static char *sh_quote(const char *s)
{
	kiln_buf b = {0};
	kiln_buf_puts(&b, "'");
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			kiln_buf_puts(&b, "'\\''");
		else
			kiln_buf_append(&b, p, 1);
	}
	kiln_buf_puts(&b, "'");
	return kiln_buf_steal(&b);
}

/* Runs a Node action's `main` with the agent's node, inputs as INPUT_* variables. */
static void run_node(job_run *r, size_t idx, const kiln_action *act, const action_site *site,
		     json_t *inputs, json_t *senv, int64_t deadline, step_result *res)
{
	if (strcasecmp(act->using, "node12") == 0 || strcasecmp(act->using, "node16") == 0)
		sys_line(r, "Warning: %s runs on %s, which GitHub no longer supports; running it with "
			    "this machine's node",
			 site->uses, act->using);
	if (act->pre)
		sys_line(r, "Warning: kiln does not run the 'pre' script of %s yet (%s); skipped",
			 site->uses, act->pre);
	if (act->post)
		sys_line(r, "Warning: kiln does not run the 'post' script of %s yet (%s); skipped",
			 site->uses, act->post);
	_cleanup_free_ char *main_path = agent_inside(site->dir, act->main);
	struct stat sb;
	if (!main_path || stat(main_path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		sys_line(r, "Error: %s: runs.main '%s' %s", site->uses, act->main,
			 main_path ? "does not exist" : "must stay inside the action");
		step_fail(res);
		return;
	}
	json_t *penv = site_env(site);
	const char *k;
	json_t *v;
	json_object_foreach(inputs, k, v)
	{
		char *name = kiln_action_input_env(k);
		json_object_set(penv, name, v);
		free(name);
	}
	_cleanup_free_ char *quoted = sh_quote(main_path);
	_cleanup_free_ char *script = kiln_asprintf("exec node %s\n", quoted);
	_cleanup_free_ char *why = kiln_asprintf("to run %s (runs.using: %s)", site->uses, act->using);
	proc_spec ps = {.script = script, .shell = "sh -e {0}", .cwd = r->ws, .senv = senv,
			.penv = penv, .need = "node", .need_why = why};
	spawn_step(r, idx, &ps, deadline, res);
	json_decref(penv);
}

/* actions/cache, its halves, and the artifact actions (agent/store.c). actions/cache leaves a
   post step behind that saves the cache once the job has succeeded, as GitHub's does. */
static void run_store_action(job_run *r, size_t idx, const char *uses, json_t *with,
			     step_result *res)
{
	agent_store_ctx sc = {.j = r->j, .ws = r->ws, .home = env_get(&r->base, "HOME"),
			      .with = with, .outputs = res->outputs, .log = job_log_line,
			      .log_arg = r};
	int rc;
	if (uses_is(uses, "actions/cache")) {
		json_t *post = NULL;
		rc = agent_cache_restore(&sc, &post);
		if (post) {
			json_object_set_new(post, "uses", json_string(uses));
			json_object_set_new(post, "step", json_integer((json_int_t)idx));
			json_array_append_new(r->posts, post);
		}
	} else if (uses_is(uses, "actions/cache/restore")) {
		rc = agent_cache_restore(&sc, NULL);
	} else if (uses_is(uses, "actions/cache/save")) {
		rc = agent_cache_save(&sc);
	} else if (uses_is(uses, "actions/upload-artifact")) {
		rc = agent_artifact_upload(&sc);
	} else {
		rc = agent_artifact_download(&sc);
	}
	if (rc < 0) {
		sys_line(r, "Error: %s", kiln_errmsg());
		step_fail(res);
	}
}

/* The post steps the job's actions left, last first: actions/cache saves its cache, if the job
   has succeeded so far (its post-if is success()). Their lines belong to the job. */
static void run_posts(job_run *r)
{
	for (size_t i = json_array_size(r->posts); i-- > 0;) {
		json_t *p = json_array_get(r->posts, i);
		const char *uses = json_string_value(json_object_get(p, "uses"));
		if (r->status != KILN_EXPR_STATUS_SUCCESS) {
			sys_line(r, "Post %s: skipped (the job did not succeed)", uses);
			continue;
		}
		sys_line(r, "Post Run %s", uses);
		json_t *outs = json_object();
		agent_store_ctx sc = {.j = r->j, .ws = r->ws, .home = env_get(&r->base, "HOME"),
				      .with = p, .outputs = outs, .log = job_log_line, .log_arg = r};
		agent_cache_save(&sc);
		json_decref(outs);
	}
}

/* Runs a `uses:` step: a built-in action, or an action's files from the workspace or the action
   source. */
static void run_action(job_run *r, const frame *fr, size_t idx, const Kiln__StepSpec *st,
		       json_t *with, json_t *senv, int64_t deadline, step_result *res)
{
	const char *uses = st->uses;
	if (uses_is(uses, "actions/checkout")) {
		/* a token given to checkout is a secret wherever it turns up */
		kiln_masker_add(r->masker, json_string_value(json_object_get(with, "token")));
		agent_checkout_ctx cc = {.j = r->j, .ws = r->ws, .with = with,
					 .log = job_log_line, .log_arg = r};
		if (agent_checkout(&cc) < 0) {
			sys_line(r, "Error: %s", kiln_errmsg());
			step_fail(res);
		}
		return;
	}
	if (uses_is(uses, "actions/cache") || uses_is(uses, "actions/cache/restore") ||
	    uses_is(uses, "actions/cache/save") || uses_is(uses, "actions/upload-artifact") ||
	    uses_is(uses, "actions/download-artifact")) {
		run_store_action(r, idx, uses, with, res);
		return;
	}
	const char *known = agent_action_unsupported(uses);
	if (known) {
		sys_line(r, "Error: %s is not supported by kiln yet: %s", known, uses);
		step_fail(res);
		return;
	}
	agent_action_ref ref;
	if (agent_action_ref_parse(uses, &ref) < 0) {
		sys_line(r, "Error: %s", kiln_errmsg());
		step_fail(res);
		return;
	}
	char *dir = NULL, *label = NULL, *repository = NULL;
	kiln_action *act = NULL;
	json_t *inputs = NULL;
	int rc = 0;
	switch (ref.kind) {
	case AGENT_ACTION_DOCKER:
		sys_line(r, "Error: docker actions are not supported yet: %s", uses);
		step_fail(res);
		goto out;
	case AGENT_ACTION_LOCAL:
		dir = agent_inside(r->ws, ref.path);
		label = kiln_strdup(*ref.path ? ref.path : ".");
		break;
	case AGENT_ACTION_REMOTE: {
		char sha[41];
		const char *source = agent_action_source(r->j->a->cfg.action_source);
		if ((rc = agent_action_fetch(r->j->a->work_dir, source, &ref, job_log_line, r, &dir,
					     sha)) < 0) {
			sys_line(r, "Error: cannot get the action %s: %s", uses, kiln_errmsg());
			step_fail(res);
			goto out;
		}
		label = kiln_strdup(uses);
		repository = kiln_asprintf("%s/%s", ref.owner, ref.repo);
		break;
	}
	}
	if (!dir) {
		sys_line(r, "Error: the action path %s must stay inside the workspace", uses);
		step_fail(res);
		goto out;
	}
	rc = agent_action_load(dir, label, &act);
	if (rc == -ENOTSUP) {
		sys_line(r, "Error: docker actions are not supported yet: %s (%s)", uses,
			 kiln_errmsg());
		step_fail(res);
		goto out;
	} else if (rc == -ENOENT) {
		sys_line(r, "Error: cannot find the action %s: %s%s", uses, kiln_errmsg(),
			 ref.kind == AGENT_ACTION_LOCAL ? " (did a checkout step run before it?)"
							: "");
		step_fail(res);
		goto out;
	} else if (rc < 0) {
		sys_line(r, "Error: %s", kiln_errmsg());
		step_fail(res);
		goto out;
	}
	if (act->kind == KILN_ACTION_DOCKER) {
		sys_line(r, "Error: docker actions are not supported yet: %s", uses);
		step_fail(res);
		goto out;
	}
	inputs = action_inputs(r, act, uses, with);
	if (!inputs) {
		step_fail(res);
		goto out;
	}
	action_site site = {.uses = uses, .dir = dir, .repository = repository,
			    .ref = repository ? ref.ref : NULL};
	if (act->kind == KILN_ACTION_NODE)
		run_node(r, idx, act, &site, inputs, senv, deadline, res);
	else
		run_composite(r, fr, idx, act, &site, inputs, senv, deadline, res);
out:
	json_decref(inputs);
	kiln_action_free(act);
	free(dir);
	free(label);
	free(repository);
	agent_action_ref_clear(&ref);
}

/* Runs one step (its `if:` already true) at level fr; fills res. */
static void run_step(job_run *r, const frame *fr, size_t idx, const Kiln__StepSpec *st,
		     int64_t deadline, step_result *res)
{
	res->outcome = KILN__CONCLUSION__CONCLUSION_SUCCESS;
	res->outputs = json_object();

	/* step env, evaluated with the env context growing as it goes; inside an action the env
	   its callers passed down comes first */
	json_t *senv = fr->env ? json_deep_copy(fr->env) : json_object();
	json_t *saved_env = json_incref(r->job_env);
	json_t *env_ctx = json_deep_copy(r->job_env);
	json_object_update(env_ctx, senv);
	json_object_set(r->ctx, "env", env_ctx);
	bool bad = false;
	for (size_t i = 0; i < st->n_env && !bad; i++) {
		char *v = interp(r, st->env[i]->key, st->env[i]->value);
		if (!v) {
			bad = true;
			break;
		}
		json_object_set_new(senv, st->env[i]->key, json_string(v));
		json_object_set_new(env_ctx, st->env[i]->key, json_string(v));
		free(v);
	}
	json_t *with = json_object();
	for (size_t i = 0; i < st->n_with && !bad; i++) {
		char *v = interp(r, st->with[i]->key, st->with[i]->value);
		if (!v)
			bad = true;
		else
			json_object_set_new(with, st->with[i]->key, json_string(v));
		free(v);
	}
	if (bad) {
		step_fail(res);
		goto out;
	}
	/* the step's own timeout-minutes bounds it, and everything an action runs for it */
	double step_minutes = eval_minutes(r, st->timeout_minutes, st->timeout_minutes_expr);
	if (step_minutes > 0) {
		int64_t until = kiln_now_ms() + (int64_t)(step_minutes * 60000);
		if (until < deadline)
			deadline = until;
	}
	if (st->uses && *st->uses)
		run_action(r, fr, idx, st, with, senv, deadline, res);
	else
		run_script(r, fr, idx, st, senv, deadline, res);
out:
	json_object_set(r->ctx, "env", saved_env);
	json_decref(saved_env);
	json_decref(env_ctx);
	json_decref(senv);
	json_decref(with);
}

static const char *concl_name(Kiln__Conclusion c)
{
	switch (c) {
	case KILN__CONCLUSION__CONCLUSION_SUCCESS:
		return "success";
	case KILN__CONCLUSION__CONCLUSION_FAILURE:
		return "failure";
	case KILN__CONCLUSION__CONCLUSION_CANCELLED:
		return "cancelled";
	case KILN__CONCLUSION__CONCLUSION_SKIPPED:
		return "skipped";
	default:
		return "";
	}
}

/* The job's outputs, evaluated at its end; an output holding a secret is not sent. */
static Kiln__KeyValue **job_outputs(job_run *r, size_t *n)
{
	const Kiln__JobAssignment *s = r->s;
	*n = 0;
	if (!s->n_outputs)
		return NULL;
	Kiln__KeyValue **out = kiln_calloc(s->n_outputs, sizeof *out);
	for (size_t i = 0; i < s->n_outputs; i++) {
		char *v = interp(r, s->outputs[i]->key, s->outputs[i]->value);
		if (!v)
			continue;
		size_t ml = 0;
		char *masked = kiln_masker_apply(r->masker, v, strlen(v), &ml);
		if (masked) {
			sys_line(r, "Warning: skipped output '%s' because it may contain a secret",
				 s->outputs[i]->key);
			free(masked);
			free(v);
			continue;
		}
		Kiln__KeyValue *kv = kiln_calloc(1, sizeof *kv);
		kiln__key_value__init(kv);
		kv->key = kiln_strdup(s->outputs[i]->key);
		kv->value = v;
		out[(*n)++] = kv;
	}
	return out;
}

void agent_job_run(agent_job *j)
{
	const Kiln__JobAssignment *s = j->spec;
	agent *a = j->a;
	int64_t started = kiln_now_ms();
	int64_t deadline = s->timeout_minutes > 0 ? started + (int64_t)(s->timeout_minutes * 60000)
						  : INT64_MAX;
	agent_job_update(j, -1, KILN__JOB_STATE__JOB_STATE_RUNNING, 0, started, 0, 0, NULL, false);

	job_run r = {.j = j, .s = s, .step = -1, .posts = json_array()};
	_cleanup_free_ char *root = agent_slot_dir(a, j->slot);
	r.ws = kiln_asprintf("%s/workspace", root);
	r.tmp = kiln_asprintf("%s/temp", root);
	setup(&r);
	Kiln__Conclusion job_concl = KILN__CONCLUSION__CONCLUSION_SUCCESS;
	char message[512] = "";
	/* the slot was emptied when its last job ended; these only make sure it exists */
	if (kiln_mkdir_p(r.ws, 0750) < 0 || kiln_mkdir_p(r.tmp, 0700) < 0) {
		snprintf(message, sizeof message, "%s", kiln_errmsg());
		sys_line(&r, "%s", message);
		job_concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
		r.status = KILN_EXPR_STATUS_FAILURE;
	}

	json_t *steps_ctx = json_object_get(r.ctx, "steps");
	const frame top = {0};
	for (size_t i = 0; i < s->n_steps; i++) {
		const Kiln__StepSpec *st = s->steps[i];
		r.step = (int32_t)i;
		if (agent_cancel_fired(j->cancel))
			r.status = KILN_EXPR_STATUS_CANCELLED;
		set_job_status(&r);
		int64_t t0 = kiln_now_ms();
		kiln_expr_ctx x = expr_ctx(&r);
		bool go = false;
		const char *cond = st->if_cond && *st->if_cond ? st->if_cond : "success()";
		if (kiln_expr_condition(cond, &x, &go) < 0) {
			sys_line(&r, "Error: if: %s", kiln_errmsg());
			agent_job_update(j, r.step, KILN__JOB_STATE__JOB_STATE_COMPLETED,
					 KILN__CONCLUSION__CONCLUSION_FAILURE, t0, kiln_now_ms(), 1,
					 NULL, false);
			job_concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
			r.status = KILN_EXPR_STATUS_FAILURE;
			continue;
		}
		/* a cancelled job runs only what asks for it (always(), cancelled()) */
		if (!go || (r.status == KILN_EXPR_STATUS_CANCELLED && agent_cancel_fired(j->cancel) &&
			    !strstr(cond, "always()") && !strstr(cond, "cancelled()"))) {
			if (st->id && *st->id)
				json_object_set_new(steps_ctx, st->id,
						    json_pack("{s:{}, s:s, s:s}", "outputs", "outcome",
							      "skipped", "conclusion", "skipped"));
			agent_job_update(j, r.step, KILN__JOB_STATE__JOB_STATE_COMPLETED,
					 KILN__CONCLUSION__CONCLUSION_SKIPPED, 0, 0, 0, NULL, false);
			continue;
		}
		agent_job_update(j, r.step, KILN__JOB_STATE__JOB_STATE_RUNNING, 0, t0, 0, 0, NULL,
				 false);
		/* a name that does not evaluate is shown as written, as GitHub does */
		char *name = NULL;
		kiln_expr_ctx nx = expr_ctx(&r);
		if (!strstr(st->name, "${{") || kiln_expr_interpolate(st->name, &nx, &name) < 0) {
			free(name);
			name = kiln_strdup(st->name);
		}
		sys_line(&r, "%s", name);
		free(name);

		step_result res = {0};
		run_step(&r, &top, i, st, deadline, &res);
		bool soft = res.outcome == KILN__CONCLUSION__CONCLUSION_FAILURE &&
			    eval_flag(&r, "continue-on-error", st->continue_on_error,
				      st->continue_on_error_expr);
		Kiln__Conclusion concl = soft ? KILN__CONCLUSION__CONCLUSION_SUCCESS : res.outcome;
		if (st->id && *st->id)
			json_object_set_new(steps_ctx, st->id,
					    json_pack("{s:O, s:s, s:s}", "outputs", res.outputs,
						      "outcome", concl_name(res.outcome),
						      "conclusion", concl_name(concl)));
		Kiln__JobUpdate u = KILN__JOB_UPDATE__INIT;
		u.step_index = r.step;
		u.state = KILN__JOB_STATE__JOB_STATE_COMPLETED;
		u.conclusion = concl;
		u.started_ms = t0;
		u.finished_ms = kiln_now_ms();
		u.exit_code = res.exit_code;
		u.annotations = r.ann;
		u.n_annotations = r.nann;
		u.summary = res.summary ? res.summary : "";
		if (r.dropped_ann)
			sys_line(&r, "Warning: %zu more annotations were dropped", r.dropped_ann);
		agent_job_send(j, &u, false);
		free_annotations(&r);
		free(res.summary);
		json_decref(res.outputs);
		free(r.stop_token);
		r.stop_token = NULL;

		if (concl == KILN__CONCLUSION__CONCLUSION_CANCELLED) {
			job_concl = concl;
			r.status = KILN_EXPR_STATUS_CANCELLED;
		} else if (concl == KILN__CONCLUSION__CONCLUSION_FAILURE) {
			if (job_concl == KILN__CONCLUSION__CONCLUSION_SUCCESS)
				job_concl = KILN__CONCLUSION__CONCLUSION_FAILURE;
			if (r.status == KILN_EXPR_STATUS_SUCCESS)
				r.status = KILN_EXPR_STATUS_FAILURE;
		}
	}
	r.step = -1;
	if (agent_cancel_fired(j->cancel) && job_concl == KILN__CONCLUSION__CONCLUSION_SUCCESS)
		job_concl = KILN__CONCLUSION__CONCLUSION_CANCELLED;
	set_job_status(&r);
	run_posts(&r);

	Kiln__JobUpdate u = KILN__JOB_UPDATE__INIT;
	u.step_index = -1;
	u.state = KILN__JOB_STATE__JOB_STATE_COMPLETED;
	u.conclusion = job_concl;
	u.started_ms = started;
	u.message = message;
	u.outputs = job_outputs(&r, &u.n_outputs);
	if (a->script_dir) {
		_cleanup_free_ char *fc = kiln_asprintf("%s/%llu-%u", a->script_dir,
							(unsigned long long)j->job_id, j->attempt);
		kiln_rm_rf(fc);
		_cleanup_free_ char *ev = kiln_asprintf("%s/event-%llu-%u.json", a->script_dir,
							(unsigned long long)j->job_id, j->attempt);
		unlink(ev);
	}
	/* empty the slot now, so the next job in it creates nothing */
	if (kiln_clear_dir(r.ws, 0750) < 0 || kiln_clear_dir(r.tmp, 0700) < 0)
		kiln_log(KILN_LOG_WARNING, "job %llu: %s", (unsigned long long)j->job_id,
			 kiln_errmsg());
	u.finished_ms = kiln_now_ms();
	agent_job_send(j, &u, true);
	for (size_t i = 0; i < u.n_outputs; i++) {
		free(u.outputs[i]->key);
		free(u.outputs[i]->value);
		free(u.outputs[i]);
	}
	free(u.outputs);

	free(r.stop_token);
	free_annotations(&r);
	kiln_masker_free(r.masker);
	kiln_strv_free(&r.base);
	kiln_strv_free(&r.path);
	json_decref(r.job_env);
	json_decref(r.posts);
	json_decref(r.ctx);
	free(r.ws);
	free(r.tmp);
}
