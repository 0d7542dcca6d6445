/*
 * kiln — the command line. Global options come before the command:
 *   kiln [--server URL] [--token T] COMMAND [ARGS]
 * `run` works locally with no server; the others talk to a coordinator's
 * HTTP API (KILN_SERVER and KILN_TOKEN give defaults).
 */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

static void usage(FILE *f)
{
	fputs("Usage: kiln [--server URL] [--token TOKEN] [--ca FILE] COMMAND [ARGS]\n"
	      "\n"
	      "Local:\n"
	      "  run [DIR] [-W FILE] [-j JOB] [--event E] [--json]\n"
	      "                       run a repository's workflows on this machine\n"
	      "  lint [FILES...]      check workflow files; problems as file:line:col\n"
	      "  expr [--context FILE] EXPR | expr --jsonl\n"
	      "                       evaluate a ${{ }} expression as GitHub does\n"
	      "\n"
	      "With a coordinator (--server URL, or KILN_SERVER):\n"
	      "  submit --repo URL|PATH --ref REF [--sha SHA] [-W FILE] [--event E] [--json]\n"
	      "                       start a run; prints its id on the last line\n"
	      "  logs [-f] RUN        print a run's log; -f follows it until the run ends\n"
	      "  runs [--repo R] [--ref REF] [--state S] [--conclusion C] [--event E]\n"
	      "       [--workflow W] [--limit N] [--offset N] [--json]\n"
	      "                       list runs, newest first\n"
	      "  show RUN [--json]    a run with its jobs and steps\n"
	      "  agents [--json]      list agents\n"
	      "  agent disable|enable|remove AGENT\n"
	      "                       stop giving an agent jobs, start again, forget it\n"
	      "  cancel RUN           cancel a run; its running jobs stop on their agents\n"
	      "  rerun RUN [--failed] run a completed run again (all jobs, or the failed ones\n"
	      "                       and what needs them); earlier attempts keep their logs\n"
	      "  approve RUN JOB      let a job waiting for its environment's review go on\n"
	      "  reject RUN JOB       refuse it: the job fails\n"
	      "  environment list | set NAME [--repo R] [--required-approval] [--url U]\n"
	      "              | delete NAME [--repo R]\n"
	      "                       environments and whether they need a review\n"
	      "  secret set NAME (--repo OWNER/NAME [--env ENV] | --org OWNER) [--value V]\n"
	      "                       set a secret (the value from stdin when --value is not\n"
	      "                       given); jobs that name it get it, nobody can read it back\n"
	      "  secret list [--repo OWNER/NAME | --org OWNER] [--json]\n"
	      "  secret delete NAME (--repo OWNER/NAME | --org OWNER)\n"
	      "  repo add OWNER/NAME --url CLONE_URL --forge github|gitea|gitlab\n"
	      "       --webhook-secret S [--default-branch main] [--api-url U] [--forge-token T]\n"
	      "       [--notify-url U --notify-secret S] [--fork-secrets]\n"
	      "                       serve a repository: its webhooks go to /hooks/FORGE\n"
	      "  repo list [--json] | repo remove OWNER/NAME\n"
	      "  dispatch REPO WORKFLOW [--ref REF] [-f key=value ...] [--json]\n"
	      "                       start a workflow_dispatch run; prints its id on the last line\n"
	      "  artifacts RUN [--json]\n"
	      "                       list a run's artifacts\n"
	      "  download RUN NAME [-o DIR | --tar FILE.tar.zst | --zip FILE.zip]\n"
	      "                       fetch an artifact into DIR (default ./NAME) or an archive\n"
	      "\n"
	      "  --ca FILE            CA bundle to verify an https:// server (or KILN_CA;\n"
	      "                       default: the system's)\n"
	      "  -h, --help           show this help\n"
	      "  -V, --version        show the version\n",
	      f);
}

int cli_connect(const cli_globals *g, kiln_client **cl)
{
	if (!g->server || !*g->server) {
		cli_error("no server: use --server URL or set KILN_SERVER");
		return -EINVAL;
	}
	if (kiln_client_http(g->server, g->token, cl) < 0) {
		cli_error("%s", kiln_errmsg());
		return -EINVAL;
	}
	return 0;
}

json_t *cli_call(kiln_client *cl, const char *method, const char *path, const char *query,
		 json_t *body)
{
	json_t *out = NULL;
	int status = kiln_client_call(cl, method, path, query, body, &out);
	if (status < 0) {
		cli_error("%s", kiln_errmsg());
		return NULL;
	}
	if (status < 200 || status > 299) {
		const char *e = json_string_value(json_object_get(out, "error"));
		cli_error("%s (HTTP %d)", e ? e : "request failed", status);
		json_decref(out);
		return NULL;
	}
	return out;
}

/* GET path from the server: the JSON body, or NULL with *rc set to the exit status. */
static json_t *get_json(const cli_globals *g, const char *path, int *rc)
{
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0) {
		*rc = EXIT_USAGE;
		return NULL;
	}
	json_t *resp = cli_call(cl, "GET", path, NULL, NULL);
	kiln_client_free(cl);
	*rc = resp ? EXIT_OK : EXIT_FAILED;
	return resp;
}

void cli_print_json(json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
}

long long cli_run_id(const char *s)
{
	char *end;
	long long id = strtoll(s, &end, 10);
	return *end || id <= 0 ? 0 : id;
}

long long cli_run_and_json(int argc, char **argv, bool *json)
{
	long long id = 0;
	*json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			*json = true;
		else if (!id)
			id = cli_run_id(argv[i]);
		else
			id = -1;
	}
	return id > 0 ? id : 0;
}

void cli_print_created(json_t *resp, bool json)
{
	if (json) {
		cli_print_json(resp);
		return;
	}
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(resp, "runs"), i, r)
		printf("%lld\n", (long long)json_integer_value(json_object_get(r, "id")));
}

static int cmd_submit(const cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{"repo", required_argument, NULL, 'r'},	 {"ref", required_argument, NULL, 'R'},
		{"sha", required_argument, NULL, 's'},	 {"workflow", required_argument, NULL, 'W'},
		{"event", required_argument, NULL, 'e'}, {"json", no_argument, NULL, 'J'},
		{0},
	};
	const char *repo = NULL, *ref = NULL, *sha = NULL, *wf = NULL, *event = NULL;
	bool js = false;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "W:", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': repo = optarg; break;
		case 'R': ref = optarg; break;
		case 's': sha = optarg; break;
		case 'W': wf = optarg; break;
		case 'e': event = optarg; break;
		case 'J': js = true; break;
		default: return EXIT_USAGE;
		}
	}
	if (!repo || optind < argc) {
		cli_error("usage: kiln submit --repo URL|PATH --ref REF [--sha SHA] [-W FILE]");
		return EXIT_USAGE;
	}
	/* a local path means this machine's path: the coordinator needs it absolute */
	char abs[PATH_MAX];
	if (!strstr(repo, "://") && realpath(repo, abs))
		repo = abs;
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0)
		return EXIT_USAGE;
	json_t *body = json_pack("{s:s, s:s}", "repo", repo, "ref", ref ? ref : "HEAD");
	if (sha)
		json_object_set_new(body, "sha", json_string(sha));
	if (wf)
		json_object_set_new(body, "workflow", json_string(wf));
	if (event)
		json_object_set_new(body, "event", json_string(event));
	json_t *resp = cli_call(cl, "POST", "/api/v1/runs", NULL, body);
	json_decref(body);
	kiln_client_free(cl);
	if (!resp)
		return EXIT_FAILED;
	cli_print_created(resp, js);
	json_decref(resp);
	return EXIT_OK;
}

static int cmd_logs(const cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {{"follow", no_argument, NULL, 'f'}, {0}};
	bool follow = false;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (ch != 'f')
			return EXIT_USAGE;
		follow = true;
	}
	long long id = optind + 1 == argc ? cli_run_id(argv[optind]) : 0;
	if (!id) {
		cli_error("usage: kiln logs [-f] RUN");
		return EXIT_USAGE;
	}
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0)
		return EXIT_USAGE;
	int rc;
	if (follow) {
		json_t *final = NULL;
		if (cli_follow(cl, id, true, NULL, &final) < 0) {
			cli_error("%s", kiln_errmsg());
			rc = EXIT_FAILED;
		} else {
			rc = cli_run_ok(final) ? EXIT_OK : EXIT_FAILED;
		}
		json_decref(final);
	} else {
		_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/log", id);
		long long offset = 0;
		rc = EXIT_OK;
		for (;;) {
			char q[64];
			snprintf(q, sizeof q, "offset=%lld", offset);
			json_t *resp = cli_call(cl, "GET", path, q, NULL);
			if (!resp) {
				rc = EXIT_FAILED;
				break;
			}
			json_t *lines = json_object_get(resp, "lines");
			size_t i;
			json_t *l;
			json_array_foreach(lines, i, l)
			{
				const char *stream = json_string_value(json_object_get(l, "stream"));
				printf("[%s] %s%s\n", json_string_value(json_object_get(l, "job")),
				       stream && strcmp(stream, "system") == 0 ? "==> " : "",
				       json_string_value(json_object_get(l, "text")));
			}
			offset = json_integer_value(json_object_get(resp, "next"));
			bool more = json_array_size(lines) > 0;
			json_decref(resp);
			if (!more)
				break;
		}
	}
	kiln_client_free(cl);
	return rc;
}

static int cmd_runs(const cli_globals *g, int argc, char **argv)
{
	/* filters, passed on as the API's query */
	static const char *const filters[] = {"repo",  "ref",	   "state", "conclusion",
					      "event", "workflow", "limit", "offset"};
	bool js = false;
	kiln_buf q = {0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool known = false;
		for (size_t f = 0; f < KILN_ARRAY_SIZE(filters) && !known; f++) {
			if (strncmp(a, "--", 2) == 0 && strcmp(a + 2, filters[f]) == 0 && i + 1 < argc) {
				known = true;
				kiln_buf_printf(&q, "%s%s=", q.len ? "&" : "", filters[f]);
				for (const unsigned char *p = (const unsigned char *)argv[++i]; *p; p++)
					if (isalnum(*p) || strchr("-._~/", *p))
						kiln_buf_append(&q, p, 1);
					else
						kiln_buf_printf(&q, "%%%02X", *p);
			}
		}
		if (strcmp(a, "--json") == 0) {
			js = true;
		} else if (!known) {
			kiln_buf_free(&q);
			cli_error("usage: kiln runs [--repo R] [--ref REF] [--state S] [--conclusion C]"
				  " [--event E] [--workflow W] [--limit N] [--offset N] [--json]");
			return EXIT_USAGE;
		}
	}
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0) {
		kiln_buf_free(&q);
		return EXIT_USAGE;
	}
	json_t *resp = cli_call(cl, "GET", "/api/v1/runs", q.len ? q.p : NULL, NULL);
	kiln_client_free(cl);
	kiln_buf_free(&q);
	if (!resp)
		return EXIT_FAILED;
	if (js) {
		cli_print_json(resp);
	} else {
		printf("%-6s %-10s %-10s %-24s %-20s %s\n", "RUN", "STATE", "RESULT", "WORKFLOW", "REF",
		       "REPOSITORY");
		size_t i;
		json_t *r;
		json_array_foreach(json_object_get(resp, "runs"), i, r)
			printf("%-6lld %-10s %-10s %-24s %-20s %s\n",
			       (long long)json_integer_value(json_object_get(r, "id")),
			       json_string_value(json_object_get(r, "state")),
			       json_string_value(json_object_get(r, "conclusion")),
			       json_string_value(json_object_get(r, "name")),
			       json_string_value(json_object_get(r, "ref")),
			       json_string_value(json_object_get(r, "repository")));
	}
	json_decref(resp);
	return EXIT_OK;
}

static int cmd_show(const cli_globals *g, int argc, char **argv)
{
	bool js;
	long long id = cli_run_and_json(argc, argv, &js);
	if (!id) {
		cli_error("usage: kiln show RUN [--json]");
		return EXIT_USAGE;
	}
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld", id);
	int rc;
	json_t *run = get_json(g, path, &rc);
	if (!run)
		return rc;
	if (js) {
		cli_print_json(run);
	} else {
		printf("run %lld #%lld  %s  %s @ %s (%s)\n", id,
		       (long long)json_integer_value(json_object_get(run, "number")),
		       json_string_value(json_object_get(run, "repository")),
		       json_string_value(json_object_get(run, "ref")),
		       json_string_value(json_object_get(run, "sha")),
		       json_string_value(json_object_get(run, "event")));
		printf("state: %s %s\n", json_string_value(json_object_get(run, "state")),
		       json_string_value(json_object_get(run, "conclusion")));
		cli_summary(stdout, run);
		size_t i, k;
		json_t *j, *s;
		json_array_foreach(json_object_get(run, "jobs"), i, j)
		{
			printf("\n%s\n", json_string_value(json_object_get(j, "name")));
			json_array_foreach(json_object_get(j, "steps"), k, s)
			{
				const char *c = json_string_value(json_object_get(s, "conclusion"));
				printf("  %-10s %s\n",
				       c && *c ? c : json_string_value(json_object_get(s, "state")),
				       json_string_value(json_object_get(s, "name")));
			}
		}
	}
	json_decref(run);
	return EXIT_OK;
}

static int cmd_agents(const cli_globals *g, int argc, char **argv)
{
	bool js = argc == 2 && strcmp(argv[1], "--json") == 0;
	int rc;
	json_t *resp = get_json(g, "/api/v1/agents", &rc);
	if (!resp)
		return rc;
	if (js) {
		cli_print_json(resp);
	} else {
		printf("%-18s %-20s %-8s %-4s %s\n", "ID", "NAME", "STATE", "CAP", "LABELS");
		size_t i, k;
		json_t *a, *l;
		json_array_foreach(json_object_get(resp, "agents"), i, a)
		{
			printf("%-18s %-20s %-8s %-4lld ", json_string_value(json_object_get(a, "id")),
			       json_string_value(json_object_get(a, "name")),
			       json_string_value(json_object_get(a, "state")),
			       (long long)json_integer_value(json_object_get(a, "capacity")));
			json_array_foreach(json_object_get(a, "labels"), k, l)
				printf("%s%s", k ? "," : "", json_string_value(l));
			putchar('\n');
		}
	}
	json_decref(resp);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	cli_globals g = {getenv("KILN_SERVER"), getenv("KILN_TOKEN")};
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return EXIT_OK;
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("kiln %s\n", KILN_VERSION);
			return EXIT_OK;
		} else if (strcmp(a, "--server") == 0 && i + 1 < argc) {
			g.server = argv[++i];
		} else if (strncmp(a, "--server=", 9) == 0) {
			g.server = a + 9;
		} else if (strcmp(a, "--ca") == 0 && i + 1 < argc) {
			kiln_client_set_ca(argv[++i]);
		} else if (strncmp(a, "--ca=", 5) == 0) {
			kiln_client_set_ca(a + 5);
		} else if (strcmp(a, "--token") == 0 && i + 1 < argc) {
			g.token = argv[++i];
		} else if (strncmp(a, "--token=", 8) == 0) {
			g.token = a + 8;
		} else {
			cli_error("unknown option '%s'", a);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i];
	int sub_argc = argc - i;
	char **sub_argv = argv + i;
	if (strcmp(cmd, "run") == 0)
		return cli_local_run(sub_argc, sub_argv);
	if (strcmp(cmd, "lint") == 0)
		return cli_lint(sub_argc, sub_argv);
	if (strcmp(cmd, "expr") == 0)
		return cli_expr(sub_argc, sub_argv);
	if (strcmp(cmd, "submit") == 0)
		return cmd_submit(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "logs") == 0)
		return cmd_logs(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "runs") == 0)
		return cmd_runs(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "show") == 0)
		return cmd_show(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "agents") == 0)
		return cmd_agents(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "repo") == 0 || strcmp(cmd, "repos") == 0)
		return cli_repo(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "dispatch") == 0)
		return cli_dispatch(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "secret") == 0 || strcmp(cmd, "secrets") == 0)
		return cli_secret(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "artifacts") == 0)
		return cli_artifacts(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "download") == 0)
		return cli_download(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "cancel") == 0)
		return cli_cancel(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "rerun") == 0)
		return cli_rerun(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "approve") == 0 || strcmp(cmd, "reject") == 0)
		return cli_review(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "environment") == 0)
		return cli_environment(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "agent") == 0)
		return cli_agent(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	cli_error("unknown command '%s'", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
