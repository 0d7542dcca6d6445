/*
 * kiln-agent — the daemon on a build machine: parses its flags, starts the
 * agent library and runs until SIGTERM or SIGINT.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>

#include "agent/agent.h"
#include "common/util.h"

static void usage(FILE *f)
{
	fputs("Usage: kiln-agent [OPTIONS]\n"
	      "\n"
	      "Runs kiln jobs on this machine for a coordinator.\n"
	      "\n"
	      "  --coordinator URL   the coordinator's bus (default tcp://127.0.0.1:7400)\n"
	      "  --name NAME         this agent's name (default: the host name)\n"
	      "  --labels L1,L2      labels matched against runs-on (default linux,x64)\n"
	      "  --capacity N        jobs at once (default 1)\n"
	      "  --work DIR          mirrors and workspaces (default /var/lib/kiln-agent)\n"
	      "  --token TOKEN       registration token (prefer a token file)\n"
	      "  --action-source T   where remote actions are fetched from: a URL or path\n"
	      "                      template with {owner} and {repo} (default: $KILN_ACTION_SOURCE,\n"
	      "                      else https://github.com/{owner}/{repo})\n"
	      "  --log-level LEVEL   err, warning, notice, info (default) or debug\n"
	      "  -h, --help          show this help\n"
	      "  -V, --version       show the version\n",
	      f);
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
		{"action-source", required_argument, NULL, 'a'},
		{"log-level", required_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	agent_config cfg = {
		.coordinator = "tcp://127.0.0.1:7400",
		.labels = "linux,x64",
		.capacity = 1,
		.work_dir = "/var/lib/kiln-agent",
	};
	int ch, log_level = KILN_LOG_INFO;
	while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': cfg.coordinator = optarg; break;
		case 'n': cfg.name = optarg; break;
		case 'l': cfg.labels = optarg; break;
		case 'C': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 256) {
				fprintf(stderr, "kiln-agent: bad capacity '%s'\n", optarg);
				return 2;
			}
			cfg.capacity = (uint32_t)n;
			break;
		}
		case 'w': cfg.work_dir = optarg; break;
		case 't': cfg.token = optarg; break;
		case 'a': cfg.action_source = optarg; break;
		case 'v':
			if (kiln_log_level_parse(optarg, &log_level) < 0) {
				fprintf(stderr, "%s: %s\n", argv[0], kiln_errmsg());
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("kiln-agent %s\n", KILN_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kiln-agent: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	kiln_log_setup("kiln-agent", log_level);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	agent *a = NULL;
	if (agent_start(&cfg, &a) < 0) {
		kiln_log(3, "%s", kiln_errmsg());
		return 1;
	}
	kiln_log(6, "started, coordinator %s, capacity %u", cfg.coordinator,
		cfg.capacity);
	sd_notify(0, "READY=1");
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0 || sig == SIGHUP)
			continue;
		break;
	}
	sd_notify(0, "STOPPING=1");
	agent_free(a);
	return 0;
}
