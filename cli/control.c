/*
 * control — the commands that act on runs and agents of a coordinator:
 *   kiln cancel RUN
 *   kiln rerun RUN [--failed]
 *   kiln approve RUN JOB, kiln reject RUN JOB
 *   kiln environment list | set NAME [--repo R] [--required-approval] [--url U] |
 *                           delete NAME [--repo R]
 *   kiln agent disable|enable|remove AGENT
 * Each prints what happened, or the API's JSON with --json.
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Removes --json from argv (in place); true if it was there. */
static bool take_json(int *argc, char **argv)
{
	bool json = false;
	int k = 0;
	for (int i = 0; i < *argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			argv[k++] = argv[i];
	}
	*argc = k;
	return json;
}

/* One call; the JSON answer or NULL (reported). */
static json_t *call_once(const cli_globals *g, const char *method, const char *path,
			 const char *query, json_t *body, int *rc)
{
	kiln_client *cl;
	if (cli_connect(g, &cl) < 0) {
		json_decref(body);
		*rc = EXIT_USAGE;
		return NULL;
	}
	json_t *v = cli_call(cl, method, path, query, body);
	json_decref(body);
	kiln_client_free(cl);
	*rc = v ? EXIT_OK : EXIT_FAILED;
	return v;
}

/* Percent-encodes s for a path segment or query value; owned. */
static char *encode(const char *s)
{
	kiln_buf b = {0};
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			kiln_buf_append(&b, p, 1);
		else
			kiln_buf_printf(&b, "%%%02X", *p);
	}
	kiln_buf_append(&b, "", 0);
	return kiln_buf_steal(&b);
}

int cli_cancel(const cli_globals *g, int argc, char **argv)
{
	bool json = take_json(&argc, argv);
	long long id = argc == 2 ? cli_run_id(argv[1]) : 0;
	if (!id) {
		cli_error("usage: kiln cancel RUN [--json]");
		return EXIT_USAGE;
	}
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/cancel", id);
	int rc;
	json_t *v = call_once(g, "POST", path, NULL, NULL, &rc);
	if (v && json)
		cli_print_json(v);
	else if (v)
		printf("run %lld: cancelling\n", id);
	json_decref(v);
	return rc;
}

int cli_rerun(const cli_globals *g, int argc, char **argv)
{
	bool json = take_json(&argc, argv);
	bool failed = false;
	long long id = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--failed") == 0)
			failed = true;
		else if (!id)
			id = cli_run_id(argv[i]);
		else
			id = -1;
	}
	if (id <= 0) {
		cli_error("usage: kiln rerun RUN [--failed] [--json]");
		return EXIT_USAGE;
	}
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/rerun", id);
	int rc;
	json_t *v = call_once(g, "POST", path, NULL, json_pack("{s:b}", "failed", failed), &rc);
	if (v && json)
		cli_print_json(v);
	else if (v)
		printf("run %lld: %lld jobs run again\n", id,
		       (long long)json_integer_value(json_object_get(v, "jobs")));
	json_decref(v);
	return rc;
}

/* kiln approve|reject RUN JOB */
int cli_review(const cli_globals *g, int argc, char **argv)
{
	bool json = take_json(&argc, argv);
	bool approve = strcmp(argv[0], "approve") == 0;
	long long id = argc == 3 ? cli_run_id(argv[1]) : 0;
	if (!id) {
		cli_error("usage: kiln %s RUN JOB [--json]", argv[0]);
		return EXIT_USAGE;
	}
	_cleanup_free_ char *job = encode(argv[2]);
	_cleanup_free_ char *path = kiln_asprintf("/api/v1/runs/%lld/jobs/%s/%s", id, job,
						  approve ? "approve" : "reject");
	int rc;
	json_t *v = call_once(g, "POST", path, NULL, NULL, &rc);
	if (v && json)
		cli_print_json(v);
	else if (v)
		printf("run %lld: the deployment of %s to %s is %s\n", id, argv[2],
		       json_string_value(json_object_get(v, "environment")),
		       approve ? "approved" : "rejected");
	json_decref(v);
	return rc;
}

int cli_environment(const cli_globals *g, int argc, char **argv)
{
	bool json = take_json(&argc, argv);
	const char *what = argc > 1 ? argv[1] : "", *name = NULL, *repo = NULL, *url = NULL;
	bool approval = false;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--repo") == 0 && i + 1 < argc)
			repo = argv[++i];
		else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
			url = argv[++i];
		else if (strcmp(argv[i], "--required-approval") == 0)
			approval = true;
		else if (!name && argv[i][0] != '-')
			name = argv[i];
		else {
			cli_error("unexpected argument '%s'", argv[i]);
			return EXIT_USAGE;
		}
	}
	int rc;
	json_t *v = NULL;
	if (strcmp(what, "list") == 0 && !name) {
		v = call_once(g, "GET", "/api/v1/environments", NULL, NULL, &rc);
		if (v && !json) {
			printf("%-24s %-32s %-9s %s\n", "NAME", "REPOSITORY", "APPROVAL", "URL");
			size_t i;
			json_t *e;
			json_array_foreach(json_object_get(v, "environments"), i, e)
				printf("%-24s %-32s %-9s %s\n",
				       json_string_value(json_object_get(e, "name")),
				       json_string_value(json_object_get(e, "repo")),
				       json_is_true(json_object_get(e, "required_approval")) ? "required"
											 : "-",
				       json_string_value(json_object_get(e, "url")));
		}
	} else if ((strcmp(what, "set") == 0 || strcmp(what, "delete") == 0) && name) {
		_cleanup_free_ char *enc = encode(name);
		_cleanup_free_ char *path = kiln_asprintf("/api/v1/environments/%s", enc);
		_cleanup_free_ char *erepo = repo ? encode(repo) : NULL;
		_cleanup_free_ char *query = repo ? kiln_asprintf("repo=%s", erepo) : NULL;
		bool set = strcmp(what, "set") == 0;
		v = call_once(g, set ? "PUT" : "DELETE", path, query,
			      set ? json_pack("{s:b, s:s}", "required_approval", approval, "url",
					      url ? url : "")
				  : NULL,
			      &rc);
		if (v && !json)
			printf("environment %s %s\n", name, set ? "saved" : "deleted");
	} else {
		cli_error("usage: kiln environment list | set NAME [--repo R] [--required-approval]"
			  " [--url U] | delete NAME [--repo R]");
		return EXIT_USAGE;
	}
	if (v && json)
		cli_print_json(v);
	json_decref(v);
	return rc;
}

int cli_agent(const cli_globals *g, int argc, char **argv)
{
	bool json = take_json(&argc, argv);
	const char *what = argc == 3 ? argv[1] : "";
	bool del = strcmp(what, "remove") == 0;
	if (!del && strcmp(what, "disable") != 0 && strcmp(what, "enable") != 0) {
		cli_error("usage: kiln agent disable|enable|remove AGENT [--json]");
		return EXIT_USAGE;
	}
	_cleanup_free_ char *enc = encode(argv[2]);
	_cleanup_free_ char *path = del ? kiln_asprintf("/api/v1/agents/%s", enc)
					: kiln_asprintf("/api/v1/agents/%s/%s", enc, what);
	int rc;
	json_t *v = call_once(g, del ? "DELETE" : "POST", path, NULL, NULL, &rc);
	if (v && json)
		cli_print_json(v);
	else if (v)
		printf("agent %s %s\n", argv[2],
		       del ? "removed" : strcmp(what, "disable") == 0 ? "disabled" : "enabled");
	json_decref(v);
	return rc;
}
