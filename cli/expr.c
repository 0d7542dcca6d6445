/*
 * expr — `kiln expr`: evaluates GitHub Actions expressions on the command
 * line, either one given as an argument or a stream of JSON-lines cases
 * (what the differential test against GitHub's own evaluator feeds it).
 * hashFiles() works over the current directory.
 *
 *   kiln expr [--context FILE] [--status S] EXPR
 *   kiln expr --jsonl < cases        one {"expr", "ctx", "status"} per line
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/expr.h"
#include "common/util.h"

#define CONTEXT_FILE_MAX (64u << 20)
#define JSONL_LINE_MAX (16u << 20)


static void usage(FILE *f)
{
	fputs(
	    "Usage: kiln expr [--context FILE] [--status S] EXPR\n"
	    "       kiln expr --jsonl < CASES\n"
	    "\n"
	    "Evaluates a GitHub Actions expression (without ${{ }}) and prints its value\n"
	    "as one line of JSON.\n"
	    "\n"
	    "  -c, --context FILE   a JSON object: context name -> value (github, env, ...)\n"
	    "  -s, --status S       what the status functions report: success (default),\n"
	    "                       failure or cancelled\n"
	    "      --jsonl          read cases {\"expr\": E, \"ctx\": {...}, \"status\": S}, one\n"
	    "                       per line, and answer {\"ok\": true, \"value\": V, \"str\": S}\n"
	    "                       or {\"ok\": false, \"error\": MESSAGE} for each\n"
	    "  -h, --help           show this help\n",
	    f);
}

static int parse_status(const char *s, int *out)
{
	if (strcmp(s, "success") == 0)
		*out = KILN_EXPR_STATUS_SUCCESS;
	else if (strcmp(s, "failure") == 0)
		*out = KILN_EXPR_STATUS_FAILURE;
	else if (strcmp(s, "cancelled") == 0)
		*out = KILN_EXPR_STATUS_CANCELLED;
	else
		return kiln_err(-EINVAL, "unknown status '%s' (success, failure or cancelled)", s);
	return 0;
}

/* Reads one line (without its newline) of at most `max` bytes; a longer line is read to its
   end and reported with *too_long. Returns 1 for a line, 0 at the end of input. */
static int read_line(FILE *f, kiln_buf *b, size_t max, bool *too_long)
{
	b->len = 0;
	*too_long = false;
	bool any = false;
	char chunk[65536];
	while (fgets(chunk, sizeof chunk, f)) {
		any = true;
		size_t n = strlen(chunk);
		bool nl = n > 0 && chunk[n - 1] == '\n';
		if (nl)
			n--;
		if (!*too_long && b->len + n <= max)
			kiln_buf_append(b, chunk, n);
		else
			*too_long = true;
		if (nl)
			break;
	}
	kiln_buf_append(b, "", 0);
	return any ? 1 : 0;
}

static void emit(json_t *o)
{
	json_dumpf(o, stdout, JSON_COMPACT | JSON_ENCODE_ANY);
	fputc('\n', stdout);
	fflush(stdout);
	json_decref(o);
}

static void emit_error(const char *msg)
{
	json_t *o = json_object();
	json_object_set_new(o, "ok", json_false());
	json_object_set_new(o, "error", json_string(msg ? msg : "error"));
	emit(o);
}

static void run_case(const char *line, size_t len, char *cwd)
{
	json_error_t jerr;
	json_t *c = json_loadb(line, len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
	if (!c || !json_is_object(c)) {
		char msg[256];
		snprintf(msg, sizeof msg, "invalid case: %s", c ? "not an object" : jerr.text);
		json_decref(c);
		emit_error(msg);
		return;
	}
	json_t *exprv = json_object_get(c, "expr");
	const char *expr = json_string_value(exprv);
	json_t *ctxv = json_object_get(c, "ctx");
	json_t *status = json_object_get(c, "status");
	kiln_expr_ctx ctx = {
	    .contexts = ctxv, .hash_files = kiln_expr_hash_files_dir, .hash_arg = cwd};
	if (!expr || (ctxv && !json_is_object(ctxv)) || (status && !json_is_string(status))) {
		json_decref(c);
		emit_error("invalid case: needs \"expr\" (a string), \"ctx\" (an object) and an "
		           "optional \"status\" (a string)");
		return;
	}
	if (status && parse_status(json_string_value(status), &ctx.status) < 0) {
		json_decref(c);
		emit_error(kiln_errmsg());
		return;
	}
	kiln_expr *e = NULL;
	json_t *value = NULL;
	char *str = NULL;
	size_t slen = 0;
	int r = kiln_expr_parse_n(expr, json_string_length(exprv), &e);
	if (r == 0)
		r = kiln_expr_eval_ex(e, &ctx, &value, &str, &slen);
	kiln_expr_free(e);
	json_decref(c);
	if (r < 0) {
		emit_error(kiln_errmsg());
		return;
	}
	json_t *o = json_object();
	json_object_set_new(o, "ok", json_true());
	json_object_set_new(o, "value", value);
	json_object_set_new(o, "str", json_stringn(str, slen));
	free(str);
	emit(o);
}

static int run_jsonl(char *cwd)
{
	kiln_buf line = {0};
	bool too_long;
	while (read_line(stdin, &line, JSONL_LINE_MAX, &too_long) > 0) {
		if (too_long) {
			char msg[128];
			snprintf(msg, sizeof msg, "invalid case: line longer than %u bytes",
			         JSONL_LINE_MAX);
			emit_error(msg);
			continue;
		}
		bool blank = true;
		for (size_t i = 0; i < line.len && blank; i++)
			blank = strchr(" \t\r\n", line.p[i]) != NULL;
		if (blank)
			continue;
		run_case(line.p, line.len, cwd);
	}
	kiln_buf_free(&line);
	return EXIT_OK;
}

int cli_expr(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"context", required_argument, NULL, 'c'},
	    {"status", required_argument, NULL, 's'},
	    {"jsonl", no_argument, NULL, 'J'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *context_file = NULL;
	bool jsonl = false;
	int status = KILN_EXPR_STATUS_SUCCESS;
	int ch;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+c:s:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			context_file = optarg;
			break;
		case 's':
			if (parse_status(optarg, &status) < 0) {
				cli_error("expr: %s", kiln_errmsg());
				return EXIT_USAGE;
			}
			break;
		case 'J':
			jsonl = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			cli_error("expr: unknown option '%s'", argv[optind - 1]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	/* hashFiles() works over the current directory */
	_cleanup_free_ char *cwd = getcwd(NULL, 0);
	if (!cwd)
		cwd = kiln_strdup(".");
	if (jsonl) {
		if (optind != argc || context_file) {
			cli_error("expr: --jsonl takes its cases on stdin, and nothing else");
			return EXIT_USAGE;
		}
		return run_jsonl(cwd);
	}
	if (argc - optind != 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	json_t *contexts = NULL;
	if (context_file) {
		_cleanup_free_ char *data = NULL;
		size_t len;
		if (kiln_read_file(context_file, CONTEXT_FILE_MAX, &data, &len) < 0) {
			cli_error("expr: %s: %s", context_file, kiln_errmsg());
			return EXIT_USAGE;
		}
		json_error_t jerr;
		contexts = json_loadb(data, len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
		if (!contexts || !json_is_object(contexts)) {
			cli_error("expr: %s:%d: %s", context_file, jerr.line,
			          contexts ? "not a JSON object" : jerr.text);
			json_decref(contexts);
			return EXIT_USAGE;
		}
	}
	kiln_expr_ctx ctx = {.contexts = contexts,
	                     .status = status,
	                     .hash_files = kiln_expr_hash_files_dir,
	                     .hash_arg = cwd};
	json_t *value = NULL;
	int r = kiln_expr_evaluate(argv[optind], &ctx, &value);
	json_decref(contexts);
	if (r < 0) {
		cli_error("%s", kiln_errmsg());
		return EXIT_USAGE;
	}
	char *text = kiln_expr_to_json(value, false);
	json_decref(value);
	if (!text) {
		cli_error("%s", kiln_errmsg());
		return EXIT_USAGE;
	}
	puts(text);
	free(text);
	return EXIT_OK;
}
