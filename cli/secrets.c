/*
 * secrets — `kiln secret set|list|delete`: a coordinator's secrets by name.
 * A value goes in once (from --value, or from stdin so that it stays out of
 * the shell's history and `ps`) and is never shown again: the coordinator
 * only ever answers with names and times.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define MAX_VALUE (48u << 10)

static void usage_error(void)
{
	cli_error("usage: kiln secret set NAME (--repo OWNER/NAME [--env ENV] | --org OWNER)"
	          " [--value V]\n"
	          "       kiln secret list [--repo OWNER/NAME [--env ENV] | --org OWNER] [--json]\n"
	          "       kiln secret delete NAME (--repo OWNER/NAME [--env ENV] | --org OWNER)");
}

/* The API path of the secrets of a repository, environment or owner; NULL if malformed. */
static char *target_path(const char *repo, const char *org, const char *env)
{
	if ((repo && org) || (env && !repo))
		return NULL;
	if (org)
		return strchr(org, '/') || !*org ? NULL
		                                 : kiln_asprintf("/api/v1/secrets/orgs/%s", org);
	if (repo) {
		const char *slash = strchr(repo, '/');
		if (!slash || slash == repo || !slash[1] || strchr(slash + 1, '/'))
			return NULL;
		if (env)
			return kiln_asprintf("/api/v1/secrets/repos/%s/environments/%s", repo, env);
		return kiln_asprintf("/api/v1/secrets/repos/%s", repo);
	}
	return kiln_strdup("/api/v1/secrets");
}

/* Reads the value from stdin (a terminal gets a prompt); one trailing newline goes. */
static char *read_value(void)
{
	if (isatty(STDIN_FILENO))
		fputs("value (end with Ctrl-D): ", stderr);
	kiln_buf b = {0};
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
		kiln_buf_append(&b, chunk, n);
		if (b.len > MAX_VALUE) {
			explicit_bzero(b.p, b.len);
			kiln_buf_free(&b);
			cli_error("the value is over %u bytes", MAX_VALUE);
			return NULL;
		}
	}
	if (b.len && b.p[b.len - 1] == '\n')
		b.p[--b.len] = '\0';
	if (b.len && b.p[b.len - 1] == '\r')
		b.p[--b.len] = '\0';
	return b.p ? kiln_buf_steal(&b) : kiln_strdup("");
}

int cli_secret(const cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"repo", required_argument, NULL, 'r'}, {"org", required_argument, NULL, 'o'},
	    {"env", required_argument, NULL, 'e'},  {"value", required_argument, NULL, 'v'},
	    {"json", no_argument, NULL, 'J'},       {0},
	};
	if (argc < 2) {
		usage_error();
		return EXIT_USAGE;
	}
	const char *verb = argv[1];
	const char *repo = NULL, *org = NULL, *env = NULL, *value = NULL;
	bool js = false;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'r':
			repo = optarg;
			break;
		case 'o':
			org = optarg;
			break;
		case 'e':
			env = optarg;
			break;
		case 'v':
			value = optarg;
			break;
		case 'J':
			js = true;
			break;
		default:
			usage_error();
			return EXIT_USAGE;
		}
	}
	char **rest = argv + 1 + optind;
	int nrest = argc - 1 - optind;
	_cleanup_free_ char *base = target_path(repo, org, env);
	bool list = strcmp(verb, "list") == 0;
	bool set = strcmp(verb, "set") == 0, del = strcmp(verb, "delete") == 0;
	if (!base || (!list && !set && !del) || (list && nrest != 0) ||
	    (!list && (nrest != 1 || (!repo && !org))) || (!set && value)) {
		usage_error();
		return EXIT_USAGE;
	}
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0)
		return EXIT_USAGE;
	int rc = EXIT_OK;
	if (list) {
		json_t *resp = cli_call(cl, "GET", base, NULL, NULL);
		if (!resp) {
			rc = EXIT_FAILED;
		} else if (js) {
			cli_print_json(resp);
		} else {
			printf("%-32s %-5s %-32s %s\n", "NAME", "SCOPE", "WHERE", "UPDATED");
			size_t i;
			json_t *s;
			json_array_foreach(json_object_get(resp, "secrets"), i, s)
			{
				const char *e =
				    json_string_value(json_object_get(s, "environment"));
				_cleanup_free_ char *where = kiln_asprintf(
				    "%s%s%s", json_string_value(json_object_get(s, "repository")),
				    e ? " env " : "", e ? e : "");
				char when[32] = "-";
				time_t t =
				    (time_t)(json_integer_value(json_object_get(s, "updated_ms")) /
				             1000);
				struct tm tm;
				if (gmtime_r(&t, &tm))
					strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm);
				printf("%-32s %-5s %-32s %s\n",
				       json_string_value(json_object_get(s, "name")),
				       json_string_value(json_object_get(s, "scope")), where, when);
			}
		}
		json_decref(resp);
	} else {
		_cleanup_free_ char *path = kiln_asprintf("%s/%s", base, rest[0]);
		json_t *resp;
		if (set) {
			char *v = value ? kiln_strdup(value) : read_value();
			if (!v) {
				kiln_client_free(cl);
				return EXIT_FAILED;
			}
			json_t *body = json_pack("{s:s}", "value", v);
			explicit_bzero(v, strlen(v));
			free(v);
			resp = body ? cli_call(cl, "PUT", path, NULL, body) : NULL;
			if (!body)
				cli_error("the value is not UTF-8 text");
			json_decref(body);
		} else {
			resp = cli_call(cl, "DELETE", path, NULL, NULL);
		}
		if (!resp)
			rc = EXIT_FAILED;
		else if (js)
			cli_print_json(resp);
		else if (set)
			printf("secret %s set for %s\n",
			       json_string_value(json_object_get(resp, "name")), repo ? repo : org);
		else
			printf("secret %s deleted\n",
			       json_string_value(json_object_get(resp, "name")));
		json_decref(resp);
	}
	kiln_client_free(cl);
	return rc;
}
