/* test_logs — the coordinator's append-only log files: offsets, the sparse
   index, reopening, and recovery from a torn last line. */
#include "coordinator/internal.h"
#include "tests/harness/check.h"

#include <fcntl.h>
#include <unistd.h>

typedef struct seen {
	uint64_t first, count;
	char last[64];
	bool in_order;
} seen;

static void on_line(void *arg, uint64_t index, const char *line, size_t len)
{
	seen *s = arg;
	if (s->count == 0)
		s->first = index;
	char want[64];
	snprintf(want, sizeof want, "line %llu", (unsigned long long)index);
	if (len != strlen(want) || memcmp(line, want, len) != 0 || index != s->first + s->count)
		s->in_order = false;
	snprintf(s->last, sizeof s->last, "%.*s", (int)len, line);
	s->count++;
}

static seen read_from(logfile *f, uint64_t off, size_t max)
{
	seen s = {.in_order = true};
	logfile_read(f, off, max, 1 << 30, on_line, &s);
	return s;
}

int main(void)
{
	char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-logs", &dir) == 0);
	_cleanup_free_ char *path = kiln_asprintf("%s/1.log", dir);

	logfile *f = NULL;
	CHECK(logfile_open(path, &f) == 0);
	CHECK_INT(logfile_count(f), 0);
	seen s = read_from(f, 0, 10);
	CHECK_INT(s.count, 0);
	for (int i = 0; i < 1000; i++) {
		char line[64];
		int n = snprintf(line, sizeof line, "line %d", i);
		CHECK(logfile_append(f, line, (size_t)n) == 0);
	}
	CHECK_INT(logfile_count(f), 1000);

	/* reads from any offset, across the sparse index's boundaries */
	uint64_t offs[] = {0, 1, 255, 256, 257, 511, 512, 999};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(offs); i++) {
		s = read_from(f, offs[i], 3);
		CHECK(s.in_order);
		CHECK_INT(s.first, offs[i]);
		CHECK_INT(s.count, offs[i] + 3 <= 1000 ? 3 : 1000 - offs[i]);
	}
	s = read_from(f, 0, 5000);
	CHECK_INT(s.count, 1000);
	CHECK(s.in_order);
	CHECK_STR(s.last, "line 999");
	s = read_from(f, 1000, 10);
	CHECK_INT(s.count, 0);

	/* a byte cap stops once it is reached (6 bytes a line: 4 lines reach 20), never mid-line */
	seen capped = {.in_order = true};
	CHECK(logfile_read(f, 0, 1000, 20, on_line, &capped) == 4);
	CHECK(capped.in_order);
	logfile_close(f);

	/* a crash mid-write leaves a torn line: reopening drops it */
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(write(fd, "line 1000 but tor", 17) == 17);
	close(fd);
	CHECK(logfile_open(path, &f) == 0);
	CHECK_INT(logfile_count(f), 1000);
	CHECK(logfile_append(f, "line 1000", 9) == 0);
	s = read_from(f, 998, 10);
	CHECK_INT(s.count, 3);
	CHECK(s.in_order);
	CHECK_STR(s.last, "line 1000");
	logfile_close(f);

	/* reopening rebuilds the index: reads deep in the file still land right */
	CHECK(logfile_open(path, &f) == 0);
	CHECK_INT(logfile_count(f), 1001);
	s = read_from(f, 770, 2);
	CHECK_INT(s.first, 770);
	CHECK(s.in_order);
	logfile_close(f);

	/* a big log keeps its index beside it once closed; reopening uses it, and ignores it
	   once the file changed behind it */
	_cleanup_free_ char *bigpath = kiln_asprintf("%s/big.log", dir);
	_cleanup_free_ char *side = kiln_asprintf("%s.idx", bigpath);
	CHECK(logfile_open(bigpath, &f) == 0);
	for (int i = 0; i < 5000; i++) {
		char line[64];
		int n = snprintf(line, sizeof line, "line %d", i);
		CHECK(logfile_append(f, line, (size_t)n) == 0);
	}
	logfile_close(f);
	CHECK(access(side, F_OK) == 0);
	CHECK(logfile_open(bigpath, &f) == 0);
	CHECK_INT(logfile_count(f), 5000);
	CHECK_INT(logfile_last_key(f), 0); /* "line N" starts with no number */
	s = read_from(f, 4097, 2);
	CHECK_INT(s.first, 4097);
	CHECK_INT(s.count, 2);
	CHECK(s.in_order);
	logfile_close(f);
	fd = open(bigpath, O_WRONLY | O_APPEND | O_CLOEXEC);
	CHECK(write(fd, "line 5000\n", 10) == 10);
	close(fd);
	CHECK(logfile_open(bigpath, &f) == 0);
	CHECK_INT(logfile_count(f), 5001);
	s = read_from(f, 4999, 5);
	CHECK_INT(s.count, 2);
	CHECK(s.in_order);
	logfile_close(f);
	/* a damaged index is not trusted */
	fd = open(side, O_WRONLY | O_TRUNC | O_CLOEXEC);
	CHECK(write(fd, "garbage", 7) == 7);
	close(fd);
	CHECK(logfile_open(bigpath, &f) == 0);
	CHECK_INT(logfile_count(f), 5001);
	logfile_close(f);

	/* a run's index: batches of one attempt merge, a torn record goes on reopen */
	_cleanup_free_ char *runpath = kiln_asprintf("%s/run-1.idx", dir);
	runlog *rl = NULL;
	CHECK(runlog_open(runpath, &rl) == 0);
	CHECK(runlog_append(rl, 7, 1, 1, 10) == 0);
	CHECK(runlog_append(rl, 8, 1, 1, 5) == 0);
	CHECK(runlog_append(rl, 7, 1, 11, 10) == 0);
	CHECK_INT(runlog_count(rl), 25);
	runlog_close(rl);
	fd = open(runpath, O_WRONLY | O_APPEND | O_CLOEXEC);
	CHECK(write(fd, "torn", 4) == 4);
	close(fd);
	CHECK(runlog_open(runpath, &rl) == 0);
	CHECK_INT(runlog_count(rl), 25);
	CHECK(runlog_append(rl, 8, 1, 6, 1) == 0);
	runlog_close(rl);
	CHECK(runlog_open(runpath, &rl) == 0);
	CHECK_INT(runlog_count(rl), 26);
	runlog_close(rl);

	kiln_rm_rf(dir);
	free(dir);
	return check_done();
}
