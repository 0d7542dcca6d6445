/*
 * lint — every problem of a workflow file, in the order of the file.
 *
 * The parser records problems in the order it walks the document, which is
 * mostly the file's order but not always (a job's missing `steps` is noticed
 * after its other keys, cycles after all jobs). Lint sorts them by position
 * and drops repeats, which aliases produce: a node shared through `*anchor`
 * is checked once per use.
 */
#include "common/lint.h"

#include <stdio.h>
#include <string.h>

#include "common/workflow.h"

typedef struct item {
	char *s;
	long line, col;
	size_t seq;
} item;

static int item_cmp(const void *a, const void *b)
{
	const item *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The line and column after "path:"; 0 when the message has none. */
static void position(const char *msg, size_t plen, long *line, long *col)
{
	*line = *col = 0;
	if (strlen(msg) <= plen || msg[plen] != ':')
		return;
	char *end;
	long l = strtol(msg + plen + 1, &end, 10);
	if (end == msg + plen + 1 || *end != ':')
		return;
	long c = strtol(end + 1, &end, 10);
	if (*end != ':')
		return;
	*line = l;
	*col = c;
}

int kiln_lint_file(const char *path, const char *text, size_t len, kiln_strv *problems)
{
	kiln_strv found = {0};
	kiln_workflow_opts opts = {.strict = true};
	if (!path)
		path = "<input>";
	kiln_workflow_check(path, text, len, &opts, &found, NULL);
	if (!found.n)
		return 0;
	size_t plen = strlen(path);
	item *items = kiln_calloc(found.n, sizeof *items);
	for (size_t i = 0; i < found.n; i++) {
		items[i].s = found.v[i];
		items[i].seq = i;
		if (strncmp(found.v[i], path, plen) == 0)
			position(found.v[i], plen, &items[i].line, &items[i].col);
	}
	qsort(items, found.n, sizeof *items, item_cmp);
	int n = 0;
	for (size_t i = 0; i < found.n; i++) {
		bool repeat = false;
		for (size_t k = i;
		     k-- > 0 && items[k].line == items[i].line && items[k].col == items[i].col;)
			if (strcmp(items[k].s, items[i].s) == 0) {
				repeat = true;
				break;
			}
		if (repeat)
			continue;
		/* one line per problem */
		char *s = kiln_strdup(items[i].s);
		for (char *p = s; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		kiln_strv_push_owned(problems, s);
		n++;
	}
	free(items);
	kiln_strv_free(&found);
	return n;
}
