/*
 * cli — the `kiln` command's pieces: following a run's log, printing
 * summaries, and the local mode that embeds a coordinator and an agent.
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/client.h"

/* Exit statuses of the CLI. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* Prints "kiln: error: …" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The global options: which coordinator to talk to. */
typedef struct cli_globals {
	const char *server, *token;
} cli_globals;

/* A client for the coordinator in g; reports a missing or bad server itself. */
int cli_connect(const cli_globals *g, kiln_client **cl);
/* Makes a call and reports failures ("kiln: error: … (HTTP n)"); the JSON body of a 2xx
   answer (owned), or NULL. */
json_t *cli_call(kiln_client *cl, const char *method, const char *path, const char *query,
		 json_t *body);
/* Prints v indented to stdout. */
void cli_print_json(json_t *v);
/* A run id from the command line; 0 if malformed. */
long long cli_run_id(const char *s);
/* The arguments "RUN [--json]" (argv[0] is the command): the run id, or 0 when they are not
   that; *json tells whether --json was given. */
long long cli_run_and_json(int argc, char **argv, bool *json);
/* The runs an API call created: their ids, one per line, or the answer as JSON. */
void cli_print_created(json_t *resp, bool json);

/* Follows run `id` until it ends, printing each line as "[job] text" (when `print`), and
   hands back the final run (with jobs) in *final. Returns 0, or <0 on transport errors
   or when *stop becomes true. */
int cli_follow(kiln_client *cl, long long id, bool print, volatile bool *stop, json_t **final);
/* Prints a run's jobs as a table: job, result, duration. */
void cli_summary(FILE *f, json_t *run);
/* True when the run completed with success. */
bool cli_run_ok(json_t *run);

/* `kiln expr`: argv[0] is "expr". */
int cli_expr(int argc, char **argv);

/* `kiln lint`: argv[0] is "lint". */
int cli_lint(int argc, char **argv);

/* `kiln artifacts RUN [--json]`: argv[0] is "artifacts". */
int cli_artifacts(const cli_globals *g, int argc, char **argv);
/* `kiln download RUN NAME [-o DIR | --tar FILE | --zip FILE]`: argv[0] is "download". */
int cli_download(const cli_globals *g, int argc, char **argv);

/* cli/control.c: `kiln cancel RUN`, `kiln rerun RUN [--failed]`, `kiln approve|reject RUN JOB`,
   `kiln environment …`, `kiln agent disable|enable|remove AGENT`; argv[0] is the command. */
int cli_cancel(const cli_globals *g, int argc, char **argv);
int cli_rerun(const cli_globals *g, int argc, char **argv);
int cli_review(const cli_globals *g, int argc, char **argv);
int cli_environment(const cli_globals *g, int argc, char **argv);
int cli_agent(const cli_globals *g, int argc, char **argv);

/* cli/secrets.c: `kiln secret set|list|delete …`; argv[0] is "secret". */
int cli_secret(const cli_globals *g, int argc, char **argv);

/* cli/repos.c: `kiln repo add|list|remove …` (argv[0] is "repo") and
   `kiln dispatch REPO WORKFLOW [--ref REF] [-f key=value …] [--json]` (argv[0] is "dispatch"). */
int cli_repo(const cli_globals *g, int argc, char **argv);
int cli_dispatch(const cli_globals *g, int argc, char **argv);

/* `kiln run`: argv after the command name. */
int cli_local_run(int argc, char **argv);

#endif
