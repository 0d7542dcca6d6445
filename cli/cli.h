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

/* `kiln run`: argv after the command name. */
int cli_local_run(int argc, char **argv);

#endif
