/*
 * kiln-agent — the daemon on a build machine: parses its flags and its YAML
 * config (flags win), starts the agent library and runs until a signal.
 * SIGTERM drains (no new jobs; running ones get shutdown_timeout, then are
 * cancelled; the log spool is flushed), SIGINT cancels at once, SIGHUP
 * reloads labels, capacity and the log level from the config file.
 * `kiln-agent register` registers once with a registration token, writes the
 * config and the agent token file, and exits: the service then starts with no
 * secret on its command line.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "agent/agent.h"
#include "common/config.h"
#include "common/util.h"
#include "common/yaml.h"

#define DEFAULT_CONFIG "/etc/kiln/agent.yaml"

static void usage(FILE *f)
{
	fputs("Usage: kiln-agent [OPTIONS]\n"
	      "       kiln-agent register --coordinator URL --registration-token T [OPTIONS]\n"
	      "                  [--config FILE] [--force]\n"
	      "\n"
	      "Runs kiln jobs on this machine for a coordinator.\n"
	      "`register` registers once with a registration token, keeps the agent token the\n"
	      "coordinator gives in --agent-token-file (0600), writes the settings it was given\n"
	      "to --config (default " DEFAULT_CONFIG ") and exits; then start the agent with\n"
	      "`kiln-agent --config FILE` (no secret on its command line).\n"
	      "SIGTERM: take no new job, let running jobs finish for --shutdown-timeout, cancel\n"
	      "the rest, flush the logs, exit 0. SIGINT: cancel at once. SIGHUP: read labels,\n"
	      "capacity and log_level again from --config.\n"
	      "\n"
	      "  --config FILE       settings in YAML (keys as the long options with '_' for '-':\n"
	      "                      coordinator, name, labels, capacity, work, token_file,\n"
	      "                      action_source, cache_max, cache_dir, shutdown_timeout,\n"
	      "                      log_level, tls_*); flags win over the file\n"
	      "  --coordinator URL   the coordinator's bus (default tcp://127.0.0.1:7400)\n"
	      "  --name NAME         this agent's name (default: the host name)\n"
	      "  --labels L1,L2      labels matched against runs-on (default linux,x64)\n"
	      "  --capacity N        jobs at once (default 1)\n"
	      "  --work DIR          mirrors and workspaces (default /var/lib/kiln-agent)\n"
	      "  --registration-token TOKEN, --token TOKEN\n"
	      "                      registration token, used once: the coordinator answers with\n"
	      "                      this agent's own token, kept in --agent-token-file\n"
	      "  --registration-token-file FILE\n"
	      "                      read the registration token from FILE (not in `ps`)\n"
	      "  --agent-token-file FILE\n"
	      "                      the agent token, kept 0600 (default WORK/agent.token)\n"
	      "  --action-source T   where remote actions are fetched from: a URL or path\n"
	      "                      template with {owner} and {repo} (default: $KILN_ACTION_SOURCE,\n"
	      "                      else https://github.com/{owner}/{repo})\n"
	      "  --cache-max SIZE    bound of the agent's blob store, e.g. 10G (default 10G)\n"
	      "  --cache-dir DIR     where that store is (default WORK)\n"
	      "  --shutdown-timeout DUR\n"
	      "                      on SIGTERM, how long running jobs may go on (default 10m)\n"
	      "  --tls-ca FILE       tls+tcp://: the CA that signed the coordinator's certificate\n"
	      "                      (default: the system's bundle)\n"
	      "  --tls-server-name N the name the coordinator's certificate must carry\n"
	      "                      (default: the host in --coordinator)\n"
	      "  --tls-cert FILE     a client certificate (PEM), when the coordinator asks for one\n"
	      "  --tls-key FILE      its private key (PEM; default: in --tls-cert)\n"
	      "  --log-level LEVEL   err, warning, notice, info (default) or debug\n"
	      "  --force             register: replace an existing agent token file\n"
	      "  -h, --help          show this help\n"
	      "  -V, --version       show the version\n",
	      f);
}

/* The settings that flags and the config file both give, by key. */
enum {
	K_COORDINATOR,
	K_NAME,
	K_LABELS,
	K_CAPACITY,
	K_WORK,
	K_TOKEN_FILE,
	K_ACTION_SOURCE,
	K_CACHE_MAX,
	K_CACHE_DIR,
	K_SHUTDOWN_TIMEOUT,
	K_LOG_LEVEL,
	K_TLS_CA,
	K_TLS_SERVER_NAME,
	K_TLS_CERT,
	K_TLS_KEY,
	NKEYS
};
static const char *const keys[NKEYS] = {
    "coordinator", "name",	      "labels",    "capacity",	  "work",
    "token_file",  "action_source",    "cache_max", "cache_dir",	  "shutdown_timeout",
    "log_level",   "tls_ca",	      "tls_server_name", "tls_cert", "tls_key"};

typedef struct settings {
	char *v[NKEYS]; /* owned; NULL = not given */
} settings;

static void settings_free(settings *s)
{
	for (size_t i = 0; i < NKEYS; i++) {
		free(s->v[i]);
		s->v[i] = NULL;
	}
}

static void set(settings *s, int k, const char *v)
{
	free(s->v[k]);
	s->v[k] = kiln_strdup(v);
}

/* Reads a config file into *s (common/config.h): unknown keys are refused at file:line:col,
   a missing file is -ENOENT, labels may be a list or a comma-separated string. */
static int load_config(const char *path, settings *s)
{
	char **slots[NKEYS];
	for (size_t i = 0; i < NKEYS; i++)
		slots[i] = &s->v[i];
	return kiln_config_load(path, keys, slots, NKEYS, "labels");
}

/* What the agent runs with, from flags over the file over the defaults. */
typedef struct options {
	agent_config cfg;
	int log_level;
	int64_t shutdown_ms;
} options;

static const char *pick(const settings *flags, const settings *file, int k, const char *dflt)
{
	return flags->v[k] ? flags->v[k] : file->v[k] ? file->v[k] : dflt;
}

/* Fills *o from the settings (pointers borrowed from them); -EINVAL with a message. */
static int make_options(const settings *flags, const settings *file, options *o)
{
	memset(o, 0, sizeof *o);
	agent_config *c = &o->cfg;
	c->coordinator = pick(flags, file, K_COORDINATOR, "tcp://127.0.0.1:7400");
	c->name = pick(flags, file, K_NAME, NULL);
	c->labels = pick(flags, file, K_LABELS, "linux,x64");
	c->work_dir = pick(flags, file, K_WORK, "/var/lib/kiln-agent");
	c->token_file = pick(flags, file, K_TOKEN_FILE, NULL);
	c->action_source = pick(flags, file, K_ACTION_SOURCE, NULL);
	c->cas_dir = pick(flags, file, K_CACHE_DIR, NULL);
	c->tls_ca = pick(flags, file, K_TLS_CA, NULL);
	c->tls_server_name = pick(flags, file, K_TLS_SERVER_NAME, NULL);
	c->tls_cert = pick(flags, file, K_TLS_CERT, NULL);
	c->tls_key = pick(flags, file, K_TLS_KEY, NULL);
	const char *v = pick(flags, file, K_CAPACITY, "1");
	char *end;
	long n = strtol(v, &end, 10);
	if (!*v || *end || n < 1 || n > 256)
		return kiln_err(EINVAL, "bad capacity '%s' (1 to 256)", v);
	c->capacity = (uint32_t)n;
	if ((v = pick(flags, file, K_CACHE_MAX, NULL)) && kiln_parse_size(v, &c->cas_max_bytes) < 0)
		return -EINVAL;
	o->shutdown_ms = 600000;
	if ((v = pick(flags, file, K_SHUTDOWN_TIMEOUT, NULL)) &&
	    kiln_parse_duration_ms(v, &o->shutdown_ms) < 0)
		return -EINVAL;
	o->log_level = KILN_LOG_INFO;
	if ((v = pick(flags, file, K_LOG_LEVEL, NULL)) && kiln_log_level_parse(v, &o->log_level) < 0)
		return -EINVAL;
	return 0;
}

/* A YAML double-quoted scalar. */
static void put_quoted(kiln_buf *b, const char *s)
{
	kiln_buf_puts(b, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			kiln_buf_printf(b, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			kiln_buf_printf(b, "\\x%02x", (unsigned char)*s);
		else
			kiln_buf_append(b, s, 1);
	}
	kiln_buf_puts(b, "\"");
}

/* `register`: the file keeps what it had, with what was given now over it. */
static int write_config(const char *path, const settings *flags, const settings *file)
{
	kiln_buf b = {0};
	kiln_buf_printf(&b, "# kiln-agent settings, written by `kiln-agent register`.\n"
			    "# Every key with its default: kiln-agent --help, and\n"
			    "# /usr/share/doc/kiln-agent/agent.yaml. SIGHUP reloads labels,\n"
			    "# capacity and log_level. The agent token is in token_file, not here.\n");
	for (int k = 0; k < NKEYS; k++) {
		const char *v = pick(flags, file, k, NULL);
		if (!v)
			continue;
		kiln_buf_printf(&b, "%s: ", keys[k]);
		put_quoted(&b, v);
		kiln_buf_puts(&b, "\n");
	}
	int r = kiln_write_file_atomic(path, b.p, b.len, 0644);
	kiln_buf_free(&b);
	return r;
}

/* `register`: the work directory may belong to the service's user while we run as root;
   the token file then goes to that user, or the service could not read it. */
static void give_to_owner_of(const char *file, const char *dir)
{
	struct stat st;
	if (geteuid() != 0 || stat(dir, &st) < 0 || st.st_uid == 0)
		return;
	if (chown(file, st.st_uid, st.st_gid) < 0)
		kiln_log(KILN_LOG_WARNING, "chown %s: %s", file, strerror(errno));
}

static int do_register_command(options *o, const settings *flags, const settings *file,
			       const char *config, bool force, int64_t timeout_ms)
{
	agent_config *c = &o->cfg;
	if (!flags->v[K_COORDINATOR] && !file->v[K_COORDINATOR]) {
		fprintf(stderr, "kiln-agent: register: --coordinator URL is needed\n");
		return 2;
	}
	if (!c->token || !*c->token) {
		fprintf(stderr, "kiln-agent: register: --registration-token T (or "
				"--registration-token-file F) is needed\n");
		return 2;
	}
	if (kiln_mkdir_p(c->work_dir, 0750) < 0) {
		fprintf(stderr, "kiln-agent: register: %s\n", kiln_errmsg());
		return 1;
	}
	/* the files name absolute paths: the service does not start where we run */
	char work[PATH_MAX];
	if (!realpath(c->work_dir, work)) {
		fprintf(stderr, "kiln-agent: register: %s: %s\n", c->work_dir, strerror(errno));
		return 1;
	}
	c->work_dir = work;
	_cleanup_free_ char *token_file = c->token_file ? kiln_strdup(c->token_file)
							: kiln_asprintf("%s/agent.token", work);
	if (token_file[0] != '/') {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof cwd)) {
			fprintf(stderr, "kiln-agent: register: getcwd: %s\n", strerror(errno));
			return 1;
		}
		char *abs = kiln_asprintf("%s/%s", cwd, token_file);
		free(token_file);
		token_file = abs;
	}
	c->token_file = token_file;
	if (!force && access(token_file, F_OK) == 0) {
		fprintf(stderr,
			"kiln-agent: register: %s exists: this agent is registered already (--force "
			"registers it again as a new agent)\n",
			token_file);
		return 1;
	}
	_cleanup_free_ char *id = NULL;
	if (agent_register(c, timeout_ms, &id) < 0) {
		fprintf(stderr, "kiln-agent: register: %s\n", kiln_errmsg());
		return 1;
	}
	give_to_owner_of(token_file, work);
	settings merged = {0};
	for (int k = 0; k < NKEYS; k++)
		if (flags->v[k])
			set(&merged, k, flags->v[k]);
	set(&merged, K_WORK, work);
	set(&merged, K_TOKEN_FILE, token_file);
	if (!merged.v[K_NAME] && !file->v[K_NAME] && c->name)
		set(&merged, K_NAME, c->name);
	int r = write_config(config, &merged, file);
	settings_free(&merged);
	if (r < 0) {
		fprintf(stderr, "kiln-agent: register: %s (the agent is registered: its token is "
				"in %s)\n",
			kiln_errmsg(), token_file);
		return 1;
	}
	printf("registered as %s\nagent token: %s\nconfig: %s\nstart it with: kiln-agent "
	       "--config %s\n",
	       id, token_file, config, config);
	return 0;
}

/* SIGHUP: labels, capacity and the log level from the file again (flags still win). */
static void reload(agent *a, const char *config, const settings *flags, settings *file)
{
	if (!config) {
		kiln_log(KILN_LOG_NOTICE, "SIGHUP: no --config to reload");
		return;
	}
	settings fresh = {0};
	options o;
	if (load_config(config, &fresh) < 0 || make_options(flags, &fresh, &o) < 0) {
		kiln_log(KILN_LOG_ERR, "reload: %s (keeping the settings we have)", kiln_errmsg());
		settings_free(&fresh);
		return;
	}
	kiln_log_setup("kiln-agent", o.log_level);
	int r = agent_reconfigure(a, o.cfg.labels, o.cfg.capacity);
	if (r < 0)
		kiln_log(KILN_LOG_ERR, "reload: %s", kiln_errmsg());
	else
		kiln_log(KILN_LOG_NOTICE, "reloaded %s: labels %s, capacity %u, log level %d%s",
			 config, o.cfg.labels, o.cfg.capacity, o.log_level,
			 r ? " (registering again)" : "");
	settings_free(file);
	*file = fresh;
}

/* Waits for one of `set`; with a systemd watchdog, pings it meanwhile. */
static int wait_signal(const sigset_t *set, uint64_t watchdog_usec)
{
	for (;;) {
		if (!watchdog_usec) {
			int sig = 0;
			if (sigwait(set, &sig) == 0)
				return sig;
			continue;
		}
		struct timespec ts = {.tv_sec = (time_t)(watchdog_usec / 2 / 1000000),
				      .tv_nsec = (long)(watchdog_usec / 2 % 1000000) * 1000};
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig > 0)
			return sig;
		if (errno == EAGAIN)
			sd_notify(0, "WATCHDOG=1");
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"coordinator", required_argument, NULL, 'c'},
		{"name", required_argument, NULL, 'n'},
		{"labels", required_argument, NULL, 'l'},
		{"capacity", required_argument, NULL, 'C'},
		{"work", required_argument, NULL, 'w'},
		{"token", required_argument, NULL, 't'},
		{"registration-token", required_argument, NULL, 't'},
		{"registration-token-file", required_argument, NULL, 2001},
		{"agent-token-file", required_argument, NULL, 2002},
		{"action-source", required_argument, NULL, 'a'},
		{"log-level", required_argument, NULL, 'v'},
		{"tls-ca", required_argument, NULL, 1001},
		{"tls-server-name", required_argument, NULL, 1002},
		{"tls-cert", required_argument, NULL, 1003},
		{"tls-key", required_argument, NULL, 1004},
		{"config", required_argument, NULL, 3001},
		{"cache-max", required_argument, NULL, 3002},
		{"cache-dir", required_argument, NULL, 3003},
		{"shutdown-timeout", required_argument, NULL, 3004},
		{"force", no_argument, NULL, 3005},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	_cleanup_(settings_free) settings flags = {0}, file = {0};
	_cleanup_free_ char *reg_token = NULL; /* --registration-token or its file */
	const char *config = NULL;
	bool force = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': set(&flags, K_COORDINATOR, optarg); break;
		case 'n': set(&flags, K_NAME, optarg); break;
		case 'l': set(&flags, K_LABELS, optarg); break;
		case 'C': set(&flags, K_CAPACITY, optarg); break;
		case 'w': set(&flags, K_WORK, optarg); break;
		case 't':
			free(reg_token);
			reg_token = kiln_strdup(optarg);
			break;
		case 2001: {
			size_t len = 0;
			free(reg_token);
			reg_token = NULL;
			if (kiln_read_file(optarg, 4096, &reg_token, &len) < 0) {
				fprintf(stderr, "kiln-agent: %s\n", kiln_errmsg());
				return 2;
			}
			while (len && (reg_token[len - 1] == '\n' || reg_token[len - 1] == ' '))
				reg_token[--len] = '\0';
			break;
		}
		case 2002: set(&flags, K_TOKEN_FILE, optarg); break;
		case 'a': set(&flags, K_ACTION_SOURCE, optarg); break;
		case 1001: set(&flags, K_TLS_CA, optarg); break;
		case 1002: set(&flags, K_TLS_SERVER_NAME, optarg); break;
		case 1003: set(&flags, K_TLS_CERT, optarg); break;
		case 1004: set(&flags, K_TLS_KEY, optarg); break;
		case 'v': set(&flags, K_LOG_LEVEL, optarg); break;
		case 3001: config = optarg; break;
		case 3002: set(&flags, K_CACHE_MAX, optarg); break;
		case 3003: set(&flags, K_CACHE_DIR, optarg); break;
		case 3004: set(&flags, K_SHUTDOWN_TIMEOUT, optarg); break;
		case 3005: force = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("kiln-agent %s\n", KILN_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	bool registering = optind < argc && strcmp(argv[optind], "register") == 0;
	if (registering)
		optind++;
	if (optind < argc) {
		fprintf(stderr, "kiln-agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (force && !registering) {
		fprintf(stderr, "kiln-agent: --force goes with register\n");
		return 2;
	}
	if (registering && !config)
		config = DEFAULT_CONFIG;
	/* register starts from the file it rewrites, when there is one */
	if (config) {
		int r = load_config(config, &file);
		if (r < 0 && !(registering && r == -ENOENT)) {
			fprintf(stderr, "kiln-agent: %s\n", kiln_errmsg());
			return 2;
		}
	}
	options o;
	if (make_options(&flags, &file, &o) < 0) {
		fprintf(stderr, "kiln-agent: %s\n", kiln_errmsg());
		return 2;
	}
	o.cfg.token = reg_token;
	kiln_log_setup("kiln-agent", o.log_level);
	if (registering)
		return do_register_command(&o, &flags, &file, config, force, 30000);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	agent *a = NULL;
	if (agent_start(&o.cfg, &a) < 0) {
		kiln_log(3, "%s", kiln_errmsg());
		return 1;
	}
	kiln_log(6, "started, coordinator %s, capacity %u", o.cfg.coordinator,
		o.cfg.capacity);
	uint64_t watchdog_usec = 0;
	if (sd_watchdog_enabled(0, &watchdog_usec) <= 0)
		watchdog_usec = 0;
	sd_notify(0, "READY=1");
	/* the agent keeps pointers into `file`: a reload's strings live in `live` */
	_cleanup_(settings_free) settings live = {0};
	int sig;
	while ((sig = wait_signal(&set, watchdog_usec)) == SIGHUP)
		reload(a, config, &flags, &live);
	sd_notify(0, "STOPPING=1");
	if (sig == SIGTERM) {
		int n = agent_running(a);
		if (n)
			kiln_log(KILN_LOG_NOTICE, "SIGTERM: taking no new job; %d running, waiting up "
						  "to %lld s for them",
				 n, (long long)(o.shutdown_ms / 1000));
		/* in slices, so that the watchdog keeps hearing from us */
		int64_t left = o.shutdown_ms;
		while (n && left > 0) {
			int64_t slice = watchdog_usec ? (int64_t)(watchdog_usec / 2000) : left;
			if (slice < 1)
				slice = 1;
			if (slice > left)
				slice = left;
			n = agent_drain(a, slice, false);
			left -= slice;
			if (watchdog_usec)
				sd_notify(0, "WATCHDOG=1");
		}
		if (n)
			kiln_log(KILN_LOG_WARNING, "shutdown_timeout passed: cancelling %d jobs", n);
	} else {
		kiln_log(KILN_LOG_NOTICE, "signal %d: cancelling the running jobs", sig);
	}
	/* what is left is cancelled; its last lines and results get a while to go out */
	if (agent_drain(a, watchdog_usec ? (int64_t)(watchdog_usec / 2000) : 10000, true) > 0)
		kiln_log(KILN_LOG_WARNING, "jobs whose logs or results could not be delivered; the "
					   "coordinator retries them when it finds the agent gone");
	agent_free(a);
	kiln_log(KILN_LOG_INFO, "stopped");
	return 0;
}
