/*
 * replay — runs a fuzz target's corpus without libFuzzer, for `make test`.
 *
 * Linked with one tests/fuzz/fuzz_<name>.c, it calls that file's
 * LLVMFuzzerTestOneInput() once per file given: each argument is a file, or
 * a directory whose regular files (not those starting with '.') are replayed
 * in name order. A crash or a broken contract aborts the process, as under
 * libFuzzer; the sanitizer build (make test-asan) also catches memory
 * errors and leaks. Exits 0 when every input ran, 1 on a usage or I/O error.
 *
 *   replay_yaml tests/fuzz/corpus/fuzz_yaml
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs larger than this are not fuzz inputs (run.sh caps them at 64 KiB). */
#define REPLAY_MAX_INPUT (4u << 20)

static int run_file(const char *path)
{
	char *data = NULL;
	size_t len = 0;
	int r = kiln_read_file(path, REPLAY_MAX_INPUT, &data, &len);
	if (r < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, kiln_errmsg());
		return -1;
	}
	/* A buffer of exactly `len` bytes, as libFuzzer passes, so ASan sees overreads. */
	uint8_t *copy = kiln_malloc(len ? len : 1);
	memcpy(copy, data, len);
	free(data);
	LLVMFuzzerTestOneInput(copy, len);
	free(copy);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	kiln_strv names = {0};
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			kiln_strv_push(&names, de->d_name);
	closedir(d);
	if (names.n)
		qsort(names.v, names.n, sizeof *names.v, name_cmp);
	int r = 0;
	for (size_t i = 0; i < names.n && r == 0; i++) {
		char *path = kiln_asprintf("%s/%s", dir, names.v[i]);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			r = run_file(path);
			(*count)++;
		}
		free(path);
	}
	kiln_strv_free(&names);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 1;
	}
	size_t count = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		int r = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : (count++, run_file(argv[i]));
		if (r < 0)
			return 1;
	}
	if (count == 0) {
		fprintf(stderr, "replay: no inputs\n");
		return 1;
	}
	printf("replay: %zu inputs ran\n", count);
	return 0;
}
