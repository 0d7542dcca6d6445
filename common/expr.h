/*
 * expr — GitHub Actions expressions (`${{ }}`), evaluated exactly as GitHub's
 * own evaluator (@actions/expressions 0.3.61) does: literals, operators with
 * GitHub's loose coercions, property and index access with `*` filters,
 * the built-in functions, the status functions and hashFiles().
 *
 * Values are jansson values. Numbers come out as json_real; NaN and the
 * infinities, which JSON cannot hold, come out as null (as JSON.stringify
 * writes them) — use kiln_expr_eval_ex() for their string form.
 * docs/expressions.md lists what is supported and every deliberate
 * difference from GitHub.
 */
#ifndef KILN_EXPR_H
#define KILN_EXPR_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Limits. The first two are GitHub's own; the others bound what one evaluation may build. */
#define KILN_EXPR_MAX_LENGTH 21000           /* UTF-16 code units, as GitHub counts */
#define KILN_EXPR_MAX_DEPTH 50               /* parser nesting depth */
#define KILN_EXPR_MAX_RESULT (10u << 20)     /* bytes of one format/join/toJSON result */
#define KILN_EXPR_MAX_JSON_INPUT (10u << 20) /* bytes given to fromJSON */
#define KILN_EXPR_MAX_MEMORY (64u << 20)     /* bytes of strings one evaluation may build */
#define KILN_EXPR_MAX_HASH_PATTERNS 255      /* hashFiles arguments, as GitHub allows */

/* The status the status functions report. */
enum {
	KILN_EXPR_STATUS_SUCCESS = 0,   /* success() true, failure() false, cancelled() false */
	KILN_EXPR_STATUS_FAILURE = 1,   /* success() false, failure() true */
	KILN_EXPR_STATUS_CANCELLED = 2, /* success() false, cancelled() true */
};

typedef struct kiln_expr kiln_expr; /* a parsed expression */

typedef struct kiln_expr_ctx {
	json_t *contexts; /* object: context name -> value (borrowed); NULL = none */
	int status;       /* KILN_EXPR_STATUS_SUCCESS (default 0), _FAILURE, _CANCELLED */
	/* hashFiles(patterns...): fills out[65] hex; NULL = hashFiles unavailable (error) */
	int (*hash_files)(void *arg, const char *const *patterns, size_t n, char out[65]);
	void *hash_arg;
} kiln_expr_ctx;

/* Parses `text` (without `${{ }}`); syntax errors name the position. */
int kiln_expr_parse(const char *text, kiln_expr **out);
/* Like kiln_expr_parse, for text of `len` bytes that may hold NUL characters. */
int kiln_expr_parse_n(const char *text, size_t len, kiln_expr **out);
/* Frees a parsed expression; NULL is a no-op. */
void kiln_expr_free(kiln_expr *e);
/* For _cleanup_(kiln_expr_freep). */
void kiln_expr_freep(kiln_expr **e);
/* Evaluates `e`; unknown named values (not in ctx->contexts) are errors, as GitHub's parser reports
 * them. */
int kiln_expr_eval(const kiln_expr *e, const kiln_expr_ctx *ctx, json_t **out);
/* Like kiln_expr_eval, and also hands back the value's string form (NaN stays "NaN"),
   NUL-terminated, of *len bytes (it may hold NULs); value, string and len may each be NULL. */
int kiln_expr_eval_ex(const kiln_expr *e, const kiln_expr_ctx *ctx, json_t **value, char **string,
                      size_t *len);
/* Parses and evaluates in one go. */
int kiln_expr_evaluate(const char *text, const kiln_expr_ctx *ctx, json_t **out);

/* The string form of a value, as GitHub coerces it (numbers JS-style, null -> "", arrays/objects ->
 * "Array"/"Object"). */
char *kiln_expr_to_string(const json_t *v);
/* GitHub's truthiness: false, null, 0, NaN and "" are false; everything else is true. */
bool kiln_expr_truthy(const json_t *v);
/* The value as JavaScript's JSON.stringify writes it: what toJSON() returns when `pretty`
   (2-space indent), one line otherwise. NULL if it is nested too deeply or too large. */
char *kiln_expr_to_json(const json_t *v, bool pretty);

/* Replaces each ${{ expr }} in `text` with the string form of its value. */
int kiln_expr_interpolate(const char *text, const kiln_expr_ctx *ctx, char **out);
/* Evaluates an `if:` condition: with or without ${{ }}, and with GitHub's implicit `success() &&`
   when it calls none of success/failure/cancelled/always. */
int kiln_expr_condition(const char *cond, const kiln_expr_ctx *ctx, bool *out);
/* Parse flags. */
enum {
	/* a job's if: — success() and failure() may name jobs, as GitHub's workflow schema allows
	   (the names are accepted; the status is that of all the job's needs) */
	KILN_EXPR_JOB_STATUS = 1u << 0,
};
/* kiln_expr_condition with parse flags. */
int kiln_expr_condition_ex(const char *cond, const kiln_expr_ctx *ctx, unsigned flags, bool *out);
/* Walks an expression for lint: reports unknown functions and named values not in `allowed`
   (NULL-terminated; NULL = any). Entries such as "hashFiles(1,255)" (GitHub's notation), if any,
   limit the status functions and hashFiles to those listed. `text` with ${{ }} is checked
   expression by expression. */
int kiln_expr_check(const char *text, const char *const *allowed_contexts);

/* A hash_files callback for a directory (`arg` is its path), as GitHub's runner computes
   hashFiles over the workspace: the SHA-256 of the SHA-256s of the matching files, in the
   runner's order; "" when nothing matches. */
int kiln_expr_hash_files_dir(void *arg, const char *const *patterns, size_t n, char out[65]);

#endif
