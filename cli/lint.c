/*
 * lint — `kiln lint [FILES...]`: checks workflow files and prints every
 * problem as "file:line:col: message", one per line, on stdout. With no
 * FILES it checks the repository's workflows: the .yml and .yaml files of
 * .kiln/workflows when it has any, else those of .github/workflows, relative
 * to the current directory (the same choice `kiln run` makes).
 *
 * Exit status: 0 when every file is clean, 1 when there is a problem, 2 on a
 * usage error (bad option, no workflow files, a file that cannot be read).
 */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lint.h"
#include "common/util.h"
#include "common/yaml.h"


/* Workflow files are read whole; one byte over the YAML limit lets the parser say so. */
#define MAX_FILE_BYTES (KILN_YAML_MAX_BYTES + 1)
#define MAX_WORKFLOWS 1024

static void usage(FILE *f)
{
	fputs("Usage: kiln lint [FILE...]\n"
	      "\n"
	      "Checks workflow files as GitHub would, and prints every problem as\n"
	      "file:line:col: message. Without FILE, checks .kiln/workflows/*.yml|yaml,\n"
	      "else .github/workflows/*.yml|yaml, under the current directory.\n"
	      "\n"
	      "Exit status: 0 no problem, 1 problems found, 2 usage error.\n"
	      "\n"
	      "  -h, --help  show this help\n",
	      f);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_yaml_name(const char *name)
{
	size_t n = strlen(name);
	return (n > 4 && strcmp(name + n - 4, ".yml") == 0) ||
	       (n > 5 && strcmp(name + n - 5, ".yaml") == 0);
}

/* The repository's workflow files, sorted; 0 found is an error. */
static int find_workflows(kiln_strv *out)
{
	static const char *const dirs[] = {".kiln/workflows", ".github/workflows"};
	for (size_t d = 0; d < KILN_ARRAY_SIZE(dirs); d++) {
		DIR *dh = opendir(dirs[d]);
		if (!dh)
			continue;
		kiln_strv names = {0};
		struct dirent *de;
		while ((de = readdir(dh)) != NULL && names.n <= MAX_WORKFLOWS)
			if (de->d_name[0] != '.' && is_yaml_name(de->d_name))
				kiln_strv_push_owned(&names,
				                     kiln_asprintf("%s/%s", dirs[d], de->d_name));
		closedir(dh);
		if (!names.n)
			continue;
		if (names.n > MAX_WORKFLOWS) {
			kiln_strv_free(&names);
			return kiln_err(E2BIG, "%s: more than %d workflow files", dirs[d],
			                MAX_WORKFLOWS);
		}
		qsort(names.v, names.n, sizeof *names.v, cmp_str);
		*out = names;
		return 0;
	}
	return kiln_err(ENOENT, "no workflow files in .kiln/workflows or .github/workflows");
}

int cli_lint(int argc, char **argv)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			cli_error("lint: unknown option '%s'", argv[optind - 1]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	kiln_strv files = {0};
	if (optind < argc) {
		for (int i = optind; i < argc; i++)
			kiln_strv_push(&files, argv[i]);
	} else if (find_workflows(&files) < 0) {
		cli_error("lint: %s", kiln_errmsg());
		return EXIT_USAGE;
	}

	size_t problems = 0;
	bool unreadable = false;
	for (size_t i = 0; i < files.n; i++) {
		char *text = NULL;
		size_t len = 0;
		int r = kiln_read_file(files.v[i], MAX_FILE_BYTES, &text, &len);
		if (r == -EFBIG) { /* too big is a problem of the file, not of the command */
			printf("%s:1:1: the file is larger than the limit of %d bytes\n",
			       files.v[i], KILN_YAML_MAX_BYTES);
			problems++;
			continue;
		}
		if (r < 0) {
			cli_error("lint: %s", kiln_errmsg());
			unreadable = true;
			continue;
		}
		kiln_strv found = {0};
		problems += (size_t)kiln_lint_file(files.v[i], text, len, &found);
		for (size_t k = 0; k < found.n; k++)
			printf("%s\n", found.v[k]);
		kiln_strv_free(&found);
		free(text);
	}
	fflush(stdout);
	kiln_strv_free(&files);
	if (unreadable)
		return EXIT_USAGE;
	return problems ? EXIT_FAILED : EXIT_OK;
}
