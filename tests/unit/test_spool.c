/* test_spool — the agent's outbox: lines numbered in their stored form, batches taken in
   order with several out at once, acknowledgements of whole and partial batches, a rewind
   after a gap, one line longer than a batch, and the file emptied once all is stored. */
#include "agent/spool.h"
#include "common/logline.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <sys/stat.h>
#include <unistd.h>

static off_t file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : -1;
}

/* The text of the first and last line of a batch. */
static void ends(const kiln_buf *b, char *first, char *last, size_t n)
{
	kiln_logline l;
	const char *nl = memchr(b->p, '\n', b->len);
	CHECK(kiln_logline_parse(b->p, (size_t)(nl - b->p), &l));
	snprintf(first, n, "%.*s", (int)l.text_len, l.text);
	const char *p = b->len > 1 ? memrchr(b->p, '\n', b->len - 1) : NULL;
	p = p ? p + 1 : b->p;
	CHECK(kiln_logline_parse(p, (size_t)(b->p + b->len - 1 - p), &l));
	snprintf(last, n, "%.*s", (int)l.text_len, l.text);
}

/* enough lines that more than the spool's 1 MiB of memory waits: some go to the file */
#define N 40000

int main(void)
{
	char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-spool", &dir) == 0);
	_cleanup_free_ char *path = kiln_asprintf("%s/1-1.log", dir);
	agent_spool *s = NULL;
	CHECK(agent_spool_open(path, &s) == 0);
	for (int i = 1; i <= N; i++) {
		char line[32];
		int n = snprintf(line, sizeof line, "line %d", i);
		CHECK(agent_spool_append(s, 1000 + i, i % 2 ? 1 : 2, i / 100 - 1, line, (size_t)n) ==
		      0);
	}
	CHECK_INT(agent_spool_pending(s), N);
	CHECK_INT(agent_spool_unsent(s), N);
	CHECK(file_size(path) > 0); /* more than 1 MiB waited: on disk */

	/* the stored form, numbered from 1 */
	kiln_buf b = {0};
	uint64_t first = 0, last = 0;
	CHECK_INT(agent_spool_take(s, 1000, &b, &first, &last), (int64_t)last);
	CHECK_INT(first, 1);
	CHECK(last > 10 && last < 100);
	CHECK(b.len <= 1000);
	CHECK_INT(kiln_loglines_check(b.p, b.len, 1), (int64_t)last);
	kiln_logline l;
	CHECK(kiln_logline_parse(b.p, (size_t)((char *)memchr(b.p, '\n', b.len) - b.p), &l));
	CHECK_INT(l.seq, 1);
	CHECK_INT(l.ts_ms, 1001);
	CHECK(l.stream_len == 6 && memcmp(l.stream, "stdout", 6) == 0);
	CHECK_INT(l.step, -1);
	char f[64], t[64];
	ends(&b, f, t, sizeof f);
	CHECK_STR(f, "line 1");

	/* a second and third batch go out before the first is answered */
	uint64_t b1_last = last;
	kiln_buf b2 = {0}, b3 = {0};
	uint64_t f2, l2, f3, l3;
	CHECK(agent_spool_take(s, 1000, &b2, &f2, &l2) > 0);
	CHECK(agent_spool_take(s, 1000, &b3, &f3, &l3) > 0);
	CHECK_INT(f2, b1_last + 1);
	CHECK_INT(f3, l2 + 1);
	CHECK_INT(kiln_loglines_check(b3.p, b3.len, f3), (int64_t)(l3 - f3 + 1));
	/* the first batch is stored; the second was overtaken by the third (a gap): only the
	   first counts, and a rewind sends from the second again */
	CHECK(agent_spool_ack(s, b1_last) == 0);
	CHECK_INT(agent_spool_pending(s), N - b1_last);
	agent_spool_rewind(s);
	kiln_buf again = {0};
	uint64_t fa, la;
	CHECK(agent_spool_take(s, 1000, &again, &fa, &la) > 0);
	CHECK_INT(fa, f2);
	CHECK(again.len == b2.len && memcmp(again.p, b2.p, b2.len) == 0);
	/* an acknowledgement inside a batch (the coordinator's cap, say): the rest comes again */
	CHECK(agent_spool_ack(s, fa + 3) == 0);
	agent_spool_rewind(s);
	again.len = 0;
	CHECK(agent_spool_take(s, 100000, &again, &fa, &la) > 0);
	CHECK_INT(fa, f2 + 4);
	ends(&again, f, t, sizeof f);
	char want[32];
	snprintf(want, sizeof want, "line %llu", (unsigned long long)(f2 + 4));
	CHECK_STR(f, want);

	/* drain everything, appending more meanwhile */
	CHECK(agent_spool_ack(s, la) == 0);
	bool appended = false;
	for (;;) {
		kiln_buf c = {0};
		uint64_t fc, lc;
		int64_t n = agent_spool_take(s, 4096, &c, &fc, &lc);
		kiln_buf_free(&c);
		if (n <= 0)
			break;
		CHECK_INT(fc, la + 1);
		la = lc;
		CHECK(agent_spool_ack(s, lc) == 0);
		if (!appended) {
			CHECK(agent_spool_append(s, 0, KILN_LOGLINE_SYSTEM, 0, "late\r\nline", 10) == 0);
			appended = true;
		}
	}
	CHECK_INT(la, N + 1);
	CHECK_INT(agent_spool_pending(s), 0);
	CHECK_INT(file_size(path), 0); /* all acknowledged: the file starts over */

	/* a line longer than a batch goes whole, alone */
	size_t big = 200000;
	char *text = kiln_malloc(big);
	memset(text, 'x', big);
	CHECK(agent_spool_append(s, 5, 1, 0, text, big) == 0);
	CHECK(agent_spool_append(s, 6, 1, 0, "after", 5) == 0);
	kiln_buf c = {0};
	uint64_t fc, lc;
	CHECK_INT(agent_spool_take(s, 4096, &c, &fc, &lc), 1);
	CHECK_INT(fc, N + 2);
	CHECK(c.len > big && c.len < big + 64);
	free(text);
	agent_spool_clear(s);
	CHECK_INT(agent_spool_pending(s), 0);
	CHECK_INT(agent_spool_unsent(s), 0);
	c.len = 0;
	CHECK_INT(agent_spool_take(s, 4096, &c, &fc, &lc), 0);
	/* numbering goes on after a clear */
	CHECK(agent_spool_append(s, 7, 1, 0, "next", 4) == 0);
	c.len = 0;
	CHECK_INT(agent_spool_take(s, 4096, &c, &fc, &lc), 1);
	CHECK_INT(fc, N + 4);
	kiln_buf_free(&c);

	kiln_buf_free(&b);
	kiln_buf_free(&b2);
	kiln_buf_free(&b3);
	kiln_buf_free(&again);
	agent_spool_free(s);
	CHECK(access(path, F_OK) != 0);
	kiln_rm_rf(dir);
	free(dir);
	return check_done();
}
