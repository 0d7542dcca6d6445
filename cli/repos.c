/*
 * repos — `kiln repo add|list|remove` and `kiln dispatch`: the repositories a
 * coordinator serves (webhook secrets and forge tokens go in, never out) and
 * manual workflow_dispatch runs with typed inputs.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* NAME percent-encoded for a URL path (OWNER/NAME -> OWNER%2FNAME); owned. */
static char *path_escape(const char *s)
{
	kiln_buf b = {0};
	kiln_buf_append(&b, "", 0);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    strchr("-_.~", ch))
			kiln_buf_append(&b, s, 1);
		else
			kiln_buf_printf(&b, "%%%02X", ch);
	}
	return kiln_buf_steal(&b);
}

static json_t *call(const cli_globals *g, const char *method, const char *path, json_t *body,
		    int *rc)
{
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0) {
		*rc = EXIT_USAGE;
		return NULL;
	}
	json_t *resp = cli_call(cl, method, path, NULL, body);
	kiln_client_free(cl);
	*rc = resp ? EXIT_OK : EXIT_FAILED;
	return resp;
}

static const char add_usage[] =
	"usage: kiln repo add OWNER/NAME --url CLONE_URL --forge github|gitea|gitlab\n"
	"           --webhook-secret S [--default-branch main] [--api-url U] [--forge-token T]\n"
	"           [--notify-url U --notify-secret S] [--fork-secrets] [--json]";

static int repo_add(const cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{"url", required_argument, NULL, 'u'},
		{"forge", required_argument, NULL, 'f'},
		{"webhook-secret", required_argument, NULL, 's'},
		{"default-branch", required_argument, NULL, 'b'},
		{"api-url", required_argument, NULL, 'a'},
		{"forge-token", required_argument, NULL, 't'},
		{"notify-url", required_argument, NULL, 'n'},
		{"notify-secret", required_argument, NULL, 'N'},
		{"fork-secrets", no_argument, NULL, 'F'},
		{"json", no_argument, NULL, 'J'},
		{0},
	};
	json_t *body = json_object();
	bool js = false;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *key = NULL;
		switch (ch) {
		case 'u': key = "url"; break;
		case 'f': key = "forge"; break;
		case 's': key = "webhook_secret"; break;
		case 'b': key = "default_branch"; break;
		case 'a': key = "api_url"; break;
		case 't': key = "token"; break;
		case 'n': key = "notify_url"; break;
		case 'N': key = "notify_secret"; break;
		case 'F': json_object_set_new(body, "fork_secrets", json_true()); break;
		case 'J': js = true; break;
		default:
			json_decref(body);
			cli_error("%s", add_usage);
			return EXIT_USAGE;
		}
		if (key)
			json_object_set_new(body, key, json_string(optarg));
	}
	if (optind + 1 != argc || !json_object_get(body, "url") ||
	    !json_object_get(body, "forge") || !json_object_get(body, "webhook_secret")) {
		json_decref(body);
		cli_error("%s", add_usage);
		return EXIT_USAGE;
	}
	json_object_set_new(body, "name", json_string(argv[optind]));
	int rc;
	json_t *resp = call(g, "POST", "/api/v1/repos", body, &rc);
	json_decref(body);
	if (!resp)
		return rc;
	if (js)
		cli_print_json(resp);
	else
		printf("added %s (%s, default branch %s); webhook URL: <server>/hooks/%s\n",
		       json_string_value(json_object_get(resp, "name")),
		       json_string_value(json_object_get(resp, "forge")),
		       json_string_value(json_object_get(resp, "default_branch")),
		       json_string_value(json_object_get(resp, "forge")));
	json_decref(resp);
	return EXIT_OK;
}

static int repo_list(const cli_globals *g, int argc, char **argv)
{
	bool js = argc == 2 && strcmp(argv[1], "--json") == 0;
	if (argc > 1 && !js) {
		cli_error("usage: kiln repo list [--json]");
		return EXIT_USAGE;
	}
	int rc;
	json_t *resp = call(g, "GET", "/api/v1/repos", NULL, &rc);
	if (!resp)
		return rc;
	if (js) {
		cli_print_json(resp);
	} else {
		printf("%-32s %-7s %-12s %-6s %s\n", "REPOSITORY", "FORGE", "BRANCH", "TOKEN", "URL");
		size_t i;
		json_t *r;
		json_array_foreach(json_object_get(resp, "repos"), i, r)
			printf("%-32s %-7s %-12s %-6s %s\n",
			       json_string_value(json_object_get(r, "name")),
			       json_string_value(json_object_get(r, "forge")),
			       json_string_value(json_object_get(r, "default_branch")),
			       json_is_true(json_object_get(r, "token_set")) ? "set" : "-",
			       json_string_value(json_object_get(r, "url")));
	}
	json_decref(resp);
	return EXIT_OK;
}

static int repo_remove(const cli_globals *g, int argc, char **argv)
{
	if (argc != 2) {
		cli_error("usage: kiln repo remove OWNER/NAME");
		return EXIT_USAGE;
	}
	_cleanup_free_ char *esc = path_escape(argv[1]);
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/repos/%s", esc);
	int rc;
	json_t *resp = call(g, "DELETE", path, NULL, &rc);
	if (!resp)
		return rc;
	printf("removed %s\n", argv[1]);
	json_decref(resp);
	return EXIT_OK;
}

int cli_repo(const cli_globals *g, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	if (strcmp(sub, "add") == 0)
		return repo_add(g, argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
		return repo_list(g, argc - 1, argv + 1);
	if (strcmp(sub, "remove") == 0 || strcmp(sub, "rm") == 0)
		return repo_remove(g, argc - 1, argv + 1);
	cli_error("usage: kiln repo add|list|remove …");
	return EXIT_USAGE;
}

int cli_dispatch(const cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{"ref", required_argument, NULL, 'r'},
		{"field", required_argument, NULL, 'f'},
		{"json", no_argument, NULL, 'J'},
		{0},
	};
	static const char usage[] =
		"usage: kiln dispatch REPO WORKFLOW [--ref REF] [-f key=value ...] [--json]";
	const char *ref = NULL;
	bool js = false;
	json_t *inputs = json_object();
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "f:", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': ref = optarg; break;
		case 'J': js = true; break;
		case 'f': {
			const char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				json_decref(inputs);
				cli_error("-f takes key=value, not '%s'", optarg);
				return EXIT_USAGE;
			}
			_cleanup_free_ char *key = strndup(optarg, (size_t)(eq - optarg));
			json_object_set_new(inputs, key, json_string(eq + 1));
			break;
		}
		default:
			json_decref(inputs);
			cli_error("%s", usage);
			return EXIT_USAGE;
		}
	}
	/* options may also follow the positional arguments */
	const char *pos[2] = {NULL, NULL};
	int npos = 0;
	for (int i = optind; i < argc; i++) {
		if (npos < 2)
			pos[npos] = argv[i];
		npos++;
	}
	if (npos != 2) {
		json_decref(inputs);
		cli_error("%s", usage);
		return EXIT_USAGE;
	}
	json_t *body = json_pack("{s:s, s:o}", "workflow", pos[1], "inputs", inputs);
	if (ref)
		json_object_set_new(body, "ref", json_string(ref));
	_cleanup_free_ char *esc = path_escape(pos[0]);
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/repos/%s/dispatch", esc);
	int rc;
	json_t *resp = call(g, "POST", path, body, &rc);
	json_decref(body);
	if (!resp)
		return rc;
	cli_print_created(resp, js);
	json_decref(resp);
	return EXIT_OK;
}
