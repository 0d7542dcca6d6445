/*
 * fuzz_yaml — untrusted workflow files, from bytes to the typed model.
 *
 * The input is the file's bytes. They go to kiln_yaml_parse(), once with
 * tight limits and once with the defaults (as the coordinator and the CLI
 * use them); each tree built is walked with the accessors and its
 * bookkeeping checked against the limits. Then the same bytes go to
 * kiln_workflow_check() (non-strict, every problem collected),
 * kiln_workflow_parse_limits() (tight limits, small documents only) and
 * kiln_lint_file() (strict),
 * and a parsed workflow is read through its public accessors the way the
 * planner does (job order, events, env, permissions, matrices).
 *
 * Besides memory errors, leaks and UB (the sanitizers), it aborts on broken
 * contracts: a problem list that disagrees with the return value, a message
 * without the "file:" prefix, counts over the limits, a document that fits
 * the tight limits but not the defaults, a job order that is not a
 * permutation that respects `needs`.
 *
 * Built with libFuzzer (tests/fuzz/CMakeLists.txt) or with tests/fuzz/replay.c
 * as main() for the regression run in `make test`.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/lint.h"
#include "common/matrix.h"
#include "common/util.h"
#include "common/workflow.h"
#include "common/yaml.h"

#define FILE_NAME "fuzz.yml"

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_yaml: %s:%d: broken contract: %s\n", __FILE__,       \
			        __LINE__, #cond);                                                  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Walks the tree as a consumer would, checking what yaml.h promises; returns the nodes seen
 * (aliases expanded) so the caller can compare with the root's bookkeeping. */
static size_t walk(const kiln_ynode *n, unsigned depth, volatile size_t *sink)
{
	REQUIRE(n && n->refs >= 1 && n->line >= 1 && n->col >= 1);
	REQUIRE(depth <= KILN_YAML_MAX_DEPTH + 1);
	char q[64];
	kiln_yaml_quote(q, sizeof q, n->kind == KILN_YNODE_SCALAR ? n->str : n->tag);
	REQUIRE(strlen(q) < sizeof q);
	*sink += strlen(kiln_ynode_kind_name(n));
	size_t seen = 1;
	switch (n->kind) {
	case KILN_YNODE_SCALAR: {
		REQUIRE(n->str && strlen(n->str) == n->len && n->bytes == n->len);
		REQUIRE(n->height == 0 && n->nodes == 1);
		bool b;
		if (kiln_ynode_bool(n, &b) == 0)
			REQUIRE(n->plain);
		*sink += kiln_ynode_is_null(n);
		break;
	}
	case KILN_YNODE_SEQUENCE:
		REQUIRE(n->height >= 1 && n->npairs == 0);
		for (size_t i = 0; i < n->nitems; i++) {
			REQUIRE(n->items[i]->height < n->height);
			seen += walk(n->items[i], depth + 1, sink);
		}
		break;
	case KILN_YNODE_MAPPING:
		REQUIRE(n->height >= 1 && n->nitems == 0);
		for (size_t i = 0; i < n->npairs; i++) {
			const kiln_ynode *k = n->pairs[i].key, *v = n->pairs[i].value;
			REQUIRE(k->height < n->height && v->height < n->height);
			seen += walk(k, depth + 1, sink);
			seen += walk(v, depth + 1, sink);
			/* Keys are unique, so a scalar key finds its own entry. (The lookup is
			 * linear: checking every key of a big mapping would be quadratic.) */
			if (k->kind == KILN_YNODE_SCALAR && (i < 32 || i + 1 == n->npairs)) {
				REQUIRE(kiln_ynode_get(n, k->str) == v);
				REQUIRE(kiln_ynode_get_key(n, k->str) == k);
			}
		}
		break;
	default:
		REQUIRE(!"unknown node kind");
	}
	REQUIRE(seen == n->nodes);
	return seen;
}

static void check_problems(int r, const kiln_strv *problems)
{
	REQUIRE((r == 0) == (problems->n == 0));
	for (size_t i = 0; i < problems->n; i++)
		REQUIRE(strncmp(problems->v[i], FILE_NAME ":", sizeof FILE_NAME) == 0);
	if (r < 0)
		REQUIRE(strncmp(kiln_errmsg(), FILE_NAME ":", sizeof FILE_NAME) == 0);
}

/* Reads a parsed workflow the way the coordinator's planner does. */
static void use_workflow(const kiln_workflow *wf, volatile size_t *sink)
{
	REQUIRE(wf->doc && wf->file && strcmp(wf->file, FILE_NAME) == 0);
	static const char *const events[] = {"push", "pull_request", "workflow_dispatch",
	                                     "schedule", "workflow_call", "nope"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(events); i++) {
		*sink += kiln_workflow_triggers(wf, events[i]);
		*sink += kiln_workflow_event(wf, events[i]) != NULL;
	}
	for (size_t i = 0; i < wf->nevents; i++) {
		const kiln_event *ev = &wf->events[i];
		REQUIRE(ev->name && kiln_workflow_event(wf, ev->name));
		*sink += kiln_workflow_event_known(ev->name);
		*sink += kiln_workflow_event_filters(ev->name);
		const char *const *types = kiln_workflow_event_types(ev->name);
		for (size_t t = 0; types && types[t]; t++)
			*sink += strlen(types[t]);
		for (size_t k = 0; k < ev->ninputs; k++)
			*sink += strlen(kiln_input_type_name(ev->inputs[k].type));
	}
	static const char *const scopes[] = {"contents", "id-token", "actions", "x"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(scopes); i++)
		*sink += kiln_permissions_get(&wf->permissions_def, scopes[i]);
	for (size_t i = 0; i < wf->env.n; i++)
		REQUIRE(kiln_env_get(&wf->env, wf->env.v[i].key) != NULL);

	/* Job order: a permutation in which every job follows its needs. */
	size_t n = wf->njobs;
	size_t *order = kiln_calloc(n ? n : 1, sizeof *order);
	size_t *pos = kiln_calloc(n ? n : 1, sizeof *pos);
	for (size_t i = 0; i < n; i++)
		pos[i] = SIZE_MAX;
	kiln_workflow_order(wf, order);
	for (size_t i = 0; i < n; i++) {
		REQUIRE(order[i] < n && pos[order[i]] == SIZE_MAX);
		pos[order[i]] = i;
	}
	for (size_t j = 0; j < n; j++) {
		const kiln_job *job = &wf->jobs[j];
		REQUIRE(job->id && kiln_workflow_job(wf, job->id) == job);
		for (size_t k = 0; k < job->needs.n; k++) {
			REQUIRE(job->needs_index && job->needs_index[k] < n);
			REQUIRE(pos[job->needs_index[k]] < pos[j]);
		}
		for (size_t s = 0; s < job->nsteps; s++)
			*sink += job->steps[s].env.n + job->steps[s].with.n;
		for (size_t i = 0; i < KILN_ARRAY_SIZE(scopes); i++)
			*sink += kiln_permissions_get(&job->permissions_def, scopes[i]);
		/* A static matrix expands as the planner expands it. */
		if (job->matrix && !kiln_matrix_node_has_expr(job->matrix)) {
			json_t *m = NULL, *combos = NULL;
			if (kiln_matrix_node_json(FILE_NAME, job->matrix, &m) == 0 &&
			    kiln_matrix_expand(m, &combos) == 0) {
				REQUIRE(json_is_array(combos) &&
				        json_array_size(combos) <= KILN_MATRIX_MAX);
				size_t idx;
				json_t *combo;
				json_array_foreach(combos, idx, combo)
				{
					char *name = kiln_matrix_job_name(job->id, combo);
					*sink += strlen(name);
					free(name);
				}
			}
			json_decref(combos);
			json_decref(m);
		}
	}
	free(pos);
	free(order);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	volatile size_t sink = 0;

	/* Tight limits first: what fits them must also parse with the defaults, the same way. */
	static const kiln_yaml_limits tight = {
	    .max_bytes = 4096, .max_depth = 4, .max_nodes = 64, .max_expanded = 1024};
	kiln_ynode *small = NULL;
	int rt = kiln_yaml_parse(FILE_NAME, text, size, &tight, &small);
	REQUIRE((rt == 0) == (small != NULL));
	if (small) {
		REQUIRE(size <= tight.max_bytes && small->nodes <= tight.max_nodes);
		REQUIRE(small->bytes <= tight.max_expanded && small->height <= tight.max_depth);
		REQUIRE(walk(small, 0, &sink) == small->nodes);
	}
	kiln_ynode_free(small);

	kiln_ynode *doc = NULL;
	int r = kiln_yaml_parse(FILE_NAME, text, size, NULL, &doc);
	if (rt == 0)
		REQUIRE(r == 0);
	if (r < 0) {
		REQUIRE(!doc && (r == -EINVAL || r == -E2BIG || r == -ENODATA));
		REQUIRE(strncmp(kiln_errmsg(), FILE_NAME ":", sizeof FILE_NAME) == 0);
		return 0;
	}
	REQUIRE(r == 0 && doc);
	REQUIRE(doc->nodes <= KILN_YAML_MAX_NODES && doc->bytes <= KILN_YAML_MAX_EXPANDED);
	REQUIRE(doc->height <= KILN_YAML_MAX_DEPTH);
	REQUIRE(walk(doc, 0, &sink) == doc->nodes);
	kiln_ynode_free(doc);

	/* Every problem, non-strict, with the model handed back when there is none. */
	kiln_strv problems = {0};
	kiln_workflow *wf = NULL;
	r = kiln_workflow_check(FILE_NAME, text, size, NULL, &problems, &wf);
	check_problems(r, &problems);
	REQUIRE((r == 0) == (wf != NULL));
	if (r < 0) /* the message kiln_workflow_parse() reports is the first problem */
		REQUIRE(strcmp(kiln_errmsg(), problems.v[0]) == 0 ||
		        strlen(problems.v[0]) >= 1023); /* kiln_err's buffer cuts long ones */
	if (wf)
		use_workflow(wf, &sink);
	kiln_workflow_free(wf);

	/* kiln_workflow_parse() is the same walk without the list; run it (with the tight limits)
	 * only on documents that fit them, so the costly inputs do not pay for it again. */
	if (rt == 0) {
		kiln_workflow *wf2 = NULL;
		int r2 = kiln_workflow_parse_limits(FILE_NAME, text, size, &tight, &wf2);
		REQUIRE((r2 == 0) == (r == 0) && (r2 == 0) == (wf2 != NULL));
		if (r < 0)
			REQUIRE(strcmp(kiln_errmsg(), problems.v[0]) == 0 ||
			        strlen(problems.v[0]) >= 1023);
		kiln_workflow_free(wf2);
	}

	/* Lint is the strict mode: it only adds problems. */
	kiln_strv lint = {0};
	int nl = kiln_lint_file(FILE_NAME, text, size, &lint);
	REQUIRE(nl >= 0 && (size_t)nl == lint.n);
	if (r < 0)
		REQUIRE(nl > 0);
	for (size_t i = 0; i < lint.n; i++) {
		REQUIRE(strncmp(lint.v[i], FILE_NAME ":", sizeof FILE_NAME) == 0);
		REQUIRE(!strchr(lint.v[i], '\n'));
	}
	kiln_strv_free(&lint);
	kiln_strv_free(&problems);
	(void)sink;
	return 0;
}
