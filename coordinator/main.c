/*
 * kiln-coordinator — the daemon: parses flags and the YAML config, starts
 * the coordinator library, writes DIR/endpoints.json once it is ready, and
 * waits for SIGTERM/SIGINT to shut down cleanly.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <systemd/sd-daemon.h>

#include "common/config.h"
#include "common/util.h"
#include "common/yaml.h"
#include "coordinator/auth.h"
#include "coordinator/coord.h"

static void usage(FILE *f)
{
	fputs("Usage: kiln-coordinator [OPTIONS]\n"
	      "       kiln-coordinator [--data DIR | --config FILE] gc [--grace DUR]\n"
	      "       kiln-coordinator [--data DIR] token create --scope read|run|admin [--name N]\n"
	      "       kiln-coordinator [--data DIR] token create --agent-registration [--name N]\n"
	      "       kiln-coordinator [--data DIR] token list | token revoke ID\n"
	      "       kiln-coordinator [--data DIR] key rotate\n"
	      "       kiln-coordinator [--data DIR | --config FILE] backup FILE\n"
	      "\n"
	      "Runs the kiln coordinator: receives runs, dispatches jobs to agents over nng.\n"
	      "`gc` runs one garbage-collection pass over DIR and exits (beside a running\n"
	      "coordinator or not): expired cache entries and artifacts go, then blobs that\n"
	      "nothing has named for DUR (default 1h; 0 removes them now).\n"
	      "`token create` prints a new API token (or agent registration token) on its last\n"
	      "line; only its digest is kept. `key rotate` re-seals every secret under a new\n"
	      "DIR/secret.key. Both work beside a running coordinator.\n"
	      "`backup FILE` copies the store consistently while the coordinator runs (SQLite's\n"
	      "online backup) to FILE, and DIR/secret.key to FILE.key, both 0600. To restore:\n"
	      "stop the coordinator, copy FILE to DIR/kiln.db (removing DIR/kiln.db-wal and\n"
	      "-shm) and FILE.key to DIR/secret.key, start it.\n"
	      "SIGTERM or SIGINT: finish and exit 0. SIGHUP: read log_level again from --config.\n"
	      "\n"
	      "  --listen URL        bus address for agents (default tcp://127.0.0.1:7400)\n"
	      "  --http HOST:PORT    HTTP API address (default 127.0.0.1:7480); port 0 picks one\n"
	      "  --data DIR          state directory (default /var/lib/kiln)\n"
	      "  --config FILE       read settings from a YAML file (flags win)\n"
	      "  --poll-timeout DUR  how long an agent's poll is held (default 25s)\n"
	      "  --lost-after DUR    an agent silent this long is lost (default 15s)\n"
	      "  --retries N         retries of a job whose agent was lost (default 1)\n"
	      "  --tls-cert FILE     PEM certificate for tls+tcp:// and https:// (RSA or ECDSA)\n"
	      "  --tls-key FILE      its PEM private key\n"
	      "  --tls-ca FILE       agents must present a certificate this CA signed\n"
	      "  --public-url URL    this coordinator's URL for links in commit statuses\n"
	      "  --anonymous-read    let API reads in without a token (default: a token always)\n"
	      "  --require-agent-token auto|yes|no\n"
	      "                      agents register with a registration token (auto, the\n"
	      "                      default: once one has been created)\n"
	      "  --log-level LEVEL   err, warning, notice, info (default) or debug (log_level)\n"
	      "  -h, --help          show this help\n"
	      "  -V, --version       show the version\n",
	      f);
}

typedef struct settings {
	char *listen, *http, *data;
	char *poll_timeout, *lost_after, *retries, *max_message, *max_log;
	char *cas_dir, *default_branch, *cache_quota, *cache_max_idle, *retention;
	char *public_url, *forge_ca, *forge_retry, *forge_give_up, *tls_cert, *tls_key, *tls_ca;
	char *anonymous_read, *require_agent_token; /* auth.c */
	char *log_level;
} settings;

static void settings_free(settings *s)
{
	char **all[] = {&s->listen,	    &s->http,	      &s->data,	       &s->poll_timeout,
			&s->lost_after,	    &s->retries,      &s->max_message, &s->max_log,
			&s->cas_dir,	    &s->default_branch, &s->cache_quota, &s->cache_max_idle,
			&s->retention,	    &s->public_url,   &s->forge_ca,    &s->forge_retry,
			&s->forge_give_up, &s->tls_cert,     &s->tls_key,     &s->tls_ca};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(all); i++) {
		free(*all[i]);
		*all[i] = NULL;
	}
	free(s->anonymous_read);
	free(s->require_agent_token);
	free(s->log_level);
	s->log_level = NULL;
	s->anonymous_read = s->require_agent_token = NULL;
}

/* Reads the config file (common/config.h) into the settings a flag has not set already. */
static int load_config(const char *path, settings *s)
{
	static const char *const keys[] = {
	    "listen",	       "http",		  "data",	  "poll_timeout",
	    "agent_lost_after", "retries",	  "max_message",  "max_log_bytes",
	    "cas_dir",	       "default_branch", "cache_quota",  "cache_max_idle",
	    "anonymous_read", "require_agent_token", "artifact_retention_days",
	    "public_url", "forge_ca", "forge_retry", "forge_give_up", "tls_cert", "tls_key", "tls_ca",
	    "log_level"};
	char **const slots[] = {
	    &s->listen,	    &s->http,	      &s->data,	       &s->poll_timeout,
	    &s->lost_after, &s->retries,      &s->max_message, &s->max_log,
	    &s->cas_dir,    &s->default_branch, &s->cache_quota, &s->cache_max_idle,
	    &s->anonymous_read, &s->require_agent_token, &s->retention,
	    &s->public_url, &s->forge_ca,     &s->forge_retry, &s->forge_give_up, &s->tls_cert,
	    &s->tls_key,    &s->tls_ca,	      &s->log_level};
	_Static_assert(KILN_ARRAY_SIZE(keys) == KILN_ARRAY_SIZE(slots), "a slot for every key");
	return kiln_config_load(path, keys, slots, KILN_ARRAY_SIZE(keys), NULL);
}

/* SIGHUP: what can change live is the log level (from the config file; a flag wins). */
static void reload_log_level(const char *config, bool log_flag)
{
	if (!config || log_flag) {
		kiln_log(KILN_LOG_NOTICE, "SIGHUP: nothing to reload (%s)",
			 log_flag ? "--log-level wins" : "no --config");
		return;
	}
	_cleanup_(settings_free) settings s = {0};
	int level = KILN_LOG_INFO;
	if (load_config(config, &s) < 0 ||
	    (s.log_level && kiln_log_level_parse(s.log_level, &level) < 0)) {
		kiln_log(KILN_LOG_ERR, "reload: %s (keeping the log level)", kiln_errmsg());
		return;
	}
	kiln_log_setup("kiln-coordinator", level);
	kiln_log(KILN_LOG_NOTICE, "reloaded %s: log level %s", config,
		 s.log_level ? s.log_level : "info");
}

static int write_endpoints(coord *c, const char *dir)
{
	json_t *o = json_pack("{s:s, s:s?}", "bus", coord_bus_url(c), "http", coord_http_url(c));
	char *s = json_dumps(o, JSON_INDENT(2));
	json_decref(o);
	_cleanup_free_ char *path = kiln_asprintf("%s/endpoints.json", dir);
	int r = kiln_write_file_atomic(path, s, strlen(s), 0644);
	free(s);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"http", required_argument, NULL, 'H'},
		{"data", required_argument, NULL, 'd'},
		{"config", required_argument, NULL, 'c'},
		{"poll-timeout", required_argument, NULL, 'p'},
		{"lost-after", required_argument, NULL, 'L'},
		{"retries", required_argument, NULL, 'r'},
		{"log-level", required_argument, NULL, 'v'},
		{"grace", required_argument, NULL, 'g'},
		{"scope", required_argument, NULL, 2001},
		{"name", required_argument, NULL, 2002},
		{"agent-registration", no_argument, NULL, 2003},
		{"anonymous-read", no_argument, NULL, 2004},
		{"require-agent-token", required_argument, NULL, 2005},
		{"tls-cert", required_argument, NULL, 1001},
		{"tls-key", required_argument, NULL, 1002},
		{"tls-ca", required_argument, NULL, 1003},
		{"public-url", required_argument, NULL, 1004},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	_cleanup_(settings_free) settings s = {0};
	const char *config = NULL, *grace = NULL;
	coord_token_args targs = {0};
	int ch, log_level = KILN_LOG_INFO;
	bool log_flag = false; /* --log-level wins over the file, also on SIGHUP */
	while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': s.listen = kiln_strdup(optarg); break;
		case 'H': s.http = kiln_strdup(optarg); break;
		case 'd': s.data = kiln_strdup(optarg); break;
		case 'c': config = optarg; break;
		case 'p': s.poll_timeout = kiln_strdup(optarg); break;
		case 'L': s.lost_after = kiln_strdup(optarg); break;
		case 'r': s.retries = kiln_strdup(optarg); break;
		case 'g': grace = optarg; break;
		case 2001: targs.scope = optarg; break;
		case 2002: targs.name = optarg; break;
		case 2003: targs.registration = true; break;
		case 2004: free(s.anonymous_read); s.anonymous_read = kiln_strdup("true"); break;
		case 2005:
			free(s.require_agent_token);
			s.require_agent_token = kiln_strdup(optarg);
			break;
		case 1001: s.tls_cert = kiln_strdup(optarg); break;
		case 1002: s.tls_key = kiln_strdup(optarg); break;
		case 1003: s.tls_ca = kiln_strdup(optarg); break;
		case 1004: s.public_url = kiln_strdup(optarg); break;
		case 'v':
			if (kiln_log_level_parse(optarg, &log_level) < 0) {
				fprintf(stderr, "%s: %s\n", argv[0], kiln_errmsg());
				return 2;
			}
			log_flag = true;
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("kiln-coordinator %s\n", KILN_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	const char *command = optind < argc ? argv[optind++] : NULL;
	if (command && strcmp(command, "gc") != 0 && strcmp(command, "token") != 0 &&
	    strcmp(command, "key") != 0 && strcmp(command, "backup") != 0) {
		fprintf(stderr, "kiln-coordinator: unknown command '%s'\n", command);
		usage(stderr);
		return 2;
	}
	/* token VERB [ID], key rotate */
	const char *verb = NULL, *backup_file = NULL;
	if (command && strcmp(command, "backup") == 0) {
		if (!(backup_file = optind < argc ? argv[optind++] : NULL)) {
			fprintf(stderr, "kiln-coordinator: backup FILE: where to?\n");
			return 2;
		}
	} else if (command && strcmp(command, "gc") != 0) {
		verb = optind < argc ? argv[optind++] : NULL;
		if (!verb || (strcmp(command, "key") == 0 && strcmp(verb, "rotate") != 0)) {
			fprintf(stderr, "kiln-coordinator: %s what?\n", command);
			usage(stderr);
			return 2;
		}
		if (strcmp(command, "token") == 0 && strcmp(verb, "revoke") == 0 && optind < argc)
			targs.id = argv[optind++];
	}
	if ((targs.scope || targs.name || targs.registration) &&
	    !(verb && strcmp(command, "token") == 0 && strcmp(verb, "create") == 0)) {
		fprintf(stderr, "kiln-coordinator: --scope, --name and --agent-registration go with"
				" token create\n");
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "kiln-coordinator: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (grace && (!command || strcmp(command, "gc") != 0)) {
		fprintf(stderr, "kiln-coordinator: --grace goes with gc\n");
		return 2;
	}
	if (config && load_config(config, &s) < 0) {
		fprintf(stderr, "kiln-coordinator: %s\n", kiln_errmsg());
		return 2;
	}
	if (!log_flag && s.log_level && kiln_log_level_parse(s.log_level, &log_level) < 0) {
		fprintf(stderr, "kiln-coordinator: %s: %s\n", config, kiln_errmsg());
		return 2;
	}
	coord_config cfg = COORD_CONFIG_INIT;
	cfg.listen = s.listen ? s.listen : "tcp://127.0.0.1:7400";
	cfg.http = s.http ? s.http : "127.0.0.1:7480";
	cfg.data_dir = s.data ? s.data : "/var/lib/kiln";
	uint64_t size;
	if ((s.poll_timeout && kiln_parse_duration_ms(s.poll_timeout, &cfg.poll_timeout_ms) < 0) ||
	    (s.lost_after && kiln_parse_duration_ms(s.lost_after, &cfg.lost_after_ms) < 0)) {
		fprintf(stderr, "kiln-coordinator: %s\n", kiln_errmsg());
		return 2;
	}
	if (s.max_message) {
		if (kiln_parse_size(s.max_message, &size) < 0) {
			fprintf(stderr, "kiln-coordinator: %s\n", kiln_errmsg());
			return 2;
		}
		cfg.max_message = size;
	}
	if (s.max_log) {
		if (kiln_parse_size(s.max_log, &size) < 0) {
			fprintf(stderr, "kiln-coordinator: %s\n", kiln_errmsg());
			return 2;
		}
		cfg.max_log_bytes = size;
	}
	cfg.cas_dir = s.cas_dir;
	cfg.public_url = s.public_url;
	cfg.forge_ca = s.forge_ca;
	cfg.tls_cert = s.tls_cert;
	cfg.tls_key = s.tls_key;
	cfg.tls_ca = s.tls_ca;
	if ((s.forge_retry && kiln_parse_duration_ms(s.forge_retry, &cfg.forge_retry_ms) < 0) ||
	    (s.forge_give_up && kiln_parse_duration_ms(s.forge_give_up, &cfg.forge_give_up_ms) < 0)) {
		fprintf(stderr, "kiln-coordinator: %s\n", kiln_errmsg());
		return 2;
	}
	cfg.default_branch = s.default_branch;
	if ((s.cache_quota && kiln_parse_size(s.cache_quota, &cfg.cache_quota) < 0) ||
	    (s.cache_max_idle && kiln_parse_duration_ms(s.cache_max_idle, &cfg.cache_max_idle_ms) < 0)) {
		fprintf(stderr, "kiln-coordinator: %s\n", kiln_errmsg());
		return 2;
	}
	if (s.retention) {
		char *end;
		long n = strtol(s.retention, &end, 10);
		if (*end || n < 1 || n > 3650) {
			fprintf(stderr, "kiln-coordinator: bad artifact_retention_days '%s'\n",
				s.retention);
			return 2;
		}
		cfg.artifact_retention_days = (int)n;
	}
	if (s.retries) {
		char *end;
		long n = strtol(s.retries, &end, 10);
		if (*end || n < 0 || n > 100) {
			fprintf(stderr, "kiln-coordinator: bad retries '%s'\n", s.retries);
			return 2;
		}
		cfg.retries = (int)n;
	}

	if (s.anonymous_read) {
		bool yes = strcmp(s.anonymous_read, "true") == 0 || strcmp(s.anonymous_read, "yes") == 0;
		if (!yes && strcmp(s.anonymous_read, "false") != 0 && strcmp(s.anonymous_read, "no") != 0) {
			fprintf(stderr, "kiln-coordinator: bad anonymous_read '%s'\n", s.anonymous_read);
			return 2;
		}
		cfg.anonymous_read = yes;
	}
	if (s.require_agent_token) {
		const char *v = s.require_agent_token;
		if (strcmp(v, "auto") == 0)
			cfg.require_agent_token = 0;
		else if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
			cfg.require_agent_token = 1;
		else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
			cfg.require_agent_token = -1;
		else {
			fprintf(stderr, "kiln-coordinator: bad require_agent_token '%s': auto, yes or no\n",
				v);
			return 2;
		}
	}

	if (backup_file) {
		kiln_log_setup("kiln-coordinator", log_level);
		coord_backup_stats st;
		if (coord_backup(&cfg, backup_file, &st) < 0) {
			fprintf(stderr, "kiln-coordinator: backup: %s\n", kiln_errmsg());
			return 1;
		}
		printf("%s/kiln.db -> %s (%llu pages of %llu bytes)\n", cfg.data_dir, backup_file,
		       (unsigned long long)st.pages, (unsigned long long)st.page_size);
		if (st.key)
			printf("%s/secret.key -> %s.key\n", cfg.data_dir, backup_file);
		else
			printf("no %s/secret.key: no secrets to keep\n", cfg.data_dir);
		return 0;
	}
	if (verb) {
		kiln_log_setup("kiln-coordinator", log_level);
		targs.verb = verb;
		int r = strcmp(command, "key") == 0 ? coord_key_rotate(&cfg, stdout)
						     : coord_token_command(&cfg, &targs, stdout);
		fflush(stdout);
		if (r < 0) {
			fprintf(stderr, "kiln-coordinator: %s %s: %s\n", command, verb, kiln_errmsg());
			return r == -EINVAL ? 2 : 1;
		}
		return 0;
	}
	if (command) {
		int64_t grace_ms = 3600 * 1000;
		if (grace && kiln_parse_duration_ms(grace, &grace_ms) < 0) {
			fprintf(stderr, "kiln-coordinator: %s\n", kiln_errmsg());
			return 2;
		}
		kiln_log_setup("kiln-coordinator", log_level);
		coord_config_defaults(&cfg);
		coord_gc_stats st;
		if (coord_gc(&cfg, kiln_now_ms(), grace_ms, &st) < 0) {
			fprintf(stderr, "kiln-coordinator: gc: %s\n", kiln_errmsg());
			return 1;
		}
		printf("cache entries removed: %llu (unused) + %llu (over quota)\n"
		       "artifacts expired: %llu\n"
		       "entries with an unreadable manifest removed: %llu\n"
		       "blobs removed: %llu (%llu bytes stored)\n"
		       "blobs unreferenced, kept until the grace has passed: %llu\n"
		       "blobs kept: %llu (%llu bytes stored)\n",
		       (unsigned long long)st.caches_idle, (unsigned long long)st.caches_over_quota,
		       (unsigned long long)st.artifacts_expired, (unsigned long long)st.broken,
		       (unsigned long long)st.blobs_removed, (unsigned long long)st.bytes_removed,
		       (unsigned long long)st.blobs_pending, (unsigned long long)st.blobs_kept,
		       (unsigned long long)st.bytes_kept);
		return 0;
	}

	/* signals are taken by sigwait below; every thread starts with them blocked */
	kiln_log_setup("kiln-coordinator", log_level);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	coord *c = NULL;
	if (coord_start(&cfg, &c) < 0) {
		kiln_log(3, "%s", kiln_errmsg());
		return 1;
	}
	if (write_endpoints(c, cfg.data_dir) < 0) {
		kiln_log(3, "%s", kiln_errmsg());
		coord_free(c);
		return 1;
	}
	kiln_log(6, "ready: bus %s, http %s, data %s", coord_bus_url(c),
		coord_http_url(c) ? coord_http_url(c) : "-", cfg.data_dir);
	/* systemd's watchdog hears from us at half its period, each time after the core
	   thread has answered a request: a wedged core thread stops the pings */
	uint64_t watchdog_usec = 0;
	if (sd_watchdog_enabled(0, &watchdog_usec) <= 0)
		watchdog_usec = 0;
	sd_notify(0, "READY=1");

	for (;;) {
		int sig = 0;
		if (watchdog_usec) {
			struct timespec ts = {.tv_sec = (time_t)(watchdog_usec / 2 / 1000000),
					      .tv_nsec = (long)(watchdog_usec / 2 % 1000000) * 1000};
			sig = sigtimedwait(&set, NULL, &ts);
			if (sig < 0) {
				char *body = NULL;
				if (errno == EAGAIN &&
				    coord_api_sync(c, "GET", "/healthz", NULL, NULL, &body) == 200)
					sd_notify(0, "WATCHDOG=1");
				free(body);
				continue;
			}
		} else if (sigwait(&set, &sig) != 0) {
			continue;
		}
		if (sig == SIGHUP) {
			reload_log_level(config, log_flag);
			continue;
		}
		kiln_log(6, "signal %d: shutting down", sig);
		break;
	}
	sd_notify(0, "STOPPING=1");
	coord_free(c);
	return 0;
}
