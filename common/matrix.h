/*
 * matrix — `strategy.matrix` expansion as GitHub documents it.
 *
 * The input is the matrix as JSON, after any expression in it was evaluated
 * (a workflow may write `matrix: ${{ fromJSON(needs.setup.outputs.m) }}`).
 * When the YAML holds no expression, kiln_matrix_node_json() converts it
 * directly. Expansion takes the cartesian product of the matrix's keys in
 * the order written (the first key varies slowest), drops every combination
 * that matches an `exclude` entry (all of the entry's keys equal; a partial
 * entry matches more), then applies `include`: an entry is merged into every
 * combination whose original values it does not contradict (it may add keys,
 * and overwrite keys an earlier include added); an entry that fits none
 * becomes a combination of its own. At most KILN_MATRIX_MAX combinations.
 */
#ifndef KILN_MATRIX_H
#define KILN_MATRIX_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "common/yaml.h"

#define KILN_MATRIX_MAX 256

/* Whether any scalar or mapping key under n contains "${{". */
bool kiln_matrix_node_has_expr(const kiln_ynode *n);
/* Converts a YAML subtree to JSON with YAML 1.2 core types (null, true/false, integers, floats,
 * strings; mapping keys are strings). -EINVAL (message with position, under `file`) if it holds
 * an expression or a value JSON cannot hold (.inf, .nan are kept as strings). */
int kiln_matrix_node_json(const char *file, const kiln_ynode *n, json_t **out);

/* Expands `matrix` (an object) into *combos, an array of objects, one per job in order.
 * -EINVAL with a message for a malformed matrix (a vector that is not a non-empty array,
 * include/exclude that are not arrays of objects, an exclude key the matrix lacks, no vector
 * and no include), -E2BIG past KILN_MATRIX_MAX combinations. */
int kiln_matrix_expand(const json_t *matrix, json_t **combos);
/* "base (v1, v2, ...)": the combination's values in order, as GitHub names matrix jobs;
 * objects and arrays contribute their values, flattened. An empty combo gives base. */
char *kiln_matrix_job_name(const char *base, const json_t *combo);
/* A value as it appears in a job name: strings as they are, numbers as JavaScript prints them,
 * true/false, "" for null, objects and arrays flattened to "a, b". Caller frees. */
char *kiln_matrix_value_str(const json_t *v);
/* The `strategy` context of job `index` of `total`: {fail-fast, job-index, job-total,
 * max-parallel}; max_parallel <= 0 means unlimited (reported as job-total, as GitHub does). */
json_t *kiln_matrix_strategy(size_t index, size_t total, bool fail_fast, int max_parallel);

#endif
