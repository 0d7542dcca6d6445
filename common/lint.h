/*
 * lint — checks workflow files and reports every problem, not just the
 * first: YAML errors, unknown keys and wrong types, bad expressions and the
 * contexts or functions not available where they stand, unknown or cyclic
 * `needs`, invalid cron schedules, unknown events, steps with both `run` and
 * `uses`... Each problem is one line, "file:line:col: message", in the
 * order of the file.
 *
 * Lint is the workflow parser (common/workflow.h) in its strict mode: it
 * accepts what GitHub accepts, except what is surely a mistake even though
 * GitHub lets it through (the `matrix` context in a job with no strategy).
 */
#ifndef KILN_LINT_H
#define KILN_LINT_H

#include <stddef.h>

#include "common/util.h"

/* Lints one workflow; appends each problem to `problems`, sorted by position, without repeats.
 * Returns the number of problems appended (0: the file is clean). */
int kiln_lint_file(const char *path, const char *text, size_t len, kiln_strv *problems);

#endif
