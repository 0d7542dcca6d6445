/* test_spool — the agent's on-disk outbox: order, partial drops, peeks that
   see lines appended later, and the file emptied once all is acknowledged. */
#include "agent/spool.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <sys/stat.h>
#include <unistd.h>

typedef struct got {
	int n;
	char first[64], last[64];
	int64_t first_ts;
	int stream, step;
} got;

static void on_line(void *arg, int64_t ts, int stream, int32_t step, const char *text, size_t len)
{
	got *g = arg;
	if (g->n == 0) {
		snprintf(g->first, sizeof g->first, "%.*s", (int)len, text);
		g->first_ts = ts;
		g->stream = stream;
		g->step = step;
	}
	snprintf(g->last, sizeof g->last, "%.*s", (int)len, text);
	g->n++;
}

static off_t file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : -1;
}

int main(void)
{
	char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-spool", &dir) == 0);
	_cleanup_free_ char *path = kiln_asprintf("%s/1-1.log", dir);
	agent_spool *s = NULL;
	CHECK(agent_spool_open(path, &s) == 0);
	for (int i = 1; i <= 10000; i++) {
		char line[32];
		int n = snprintf(line, sizeof line, "line %d", i);
		CHECK(agent_spool_append(s, 1000 + i, i % 2 ? 1 : 2, i / 100, line, (size_t)n) == 0);
	}
	CHECK_INT(agent_spool_pending(s), 10000);

	got g = {0};
	CHECK_INT(agent_spool_peek(s, 100, 1 << 20, on_line, &g), 100);
	CHECK_STR(g.first, "line 1");
	CHECK_STR(g.last, "line 100");
	CHECK_INT(g.first_ts, 1001);
	CHECK_INT(g.stream, 1);
	CHECK_INT(g.step, 0);
	/* an ack for part of a batch: the rest comes again */
	agent_spool_drop(s, 40);
	CHECK_INT(agent_spool_pending(s), 9960);
	got g2 = {0};
	CHECK_INT(agent_spool_peek(s, 5, 1 << 20, on_line, &g2), 5);
	CHECK_STR(g2.first, "line 41");
	CHECK_STR(g2.last, "line 45");
	/* a byte budget limits the batch */
	got g3 = {0};
	int n = agent_spool_peek(s, 100000, 1000, on_line, &g3);
	CHECK(n > 10 && n < 100);
	CHECK_STR(g3.first, "line 41");

	/* drain everything, appending more meanwhile */
	int64_t seen = 40;
	bool appended = false;
	for (;;) {
		got b = {0};
		n = agent_spool_peek(s, 1000, 1 << 20, on_line, &b);
		if (n <= 0)
			break;
		char want[32];
		snprintf(want, sizeof want, "line %lld", (long long)seen + 1);
		CHECK_STR(b.first, want);
		seen += n;
		agent_spool_drop(s, (size_t)n);
		if (!appended) {
			CHECK(agent_spool_append(s, 0, 1, 0, "late", 4) == 0);
			appended = true;
		}
	}
	CHECK_INT(seen, 10001);
	CHECK_INT(agent_spool_pending(s), 0);
	CHECK_INT(file_size(path), 0); /* all acknowledged: the file starts over */

	CHECK(agent_spool_append(s, 0, 1, 0, "x", 1) == 0);
	agent_spool_clear(s);
	CHECK_INT(agent_spool_pending(s), 0);
	got none = {0};
	CHECK_INT(agent_spool_peek(s, 10, 100, on_line, &none), 0);
	agent_spool_free(s);
	CHECK(access(path, F_OK) != 0);
	kiln_rm_rf(dir);
	free(dir);
	return check_done();
}
