/* test_logline — the stored form of a log line: what the agent writes, and what the
   coordinator accepts from an agent it does not trust. */
#include "common/logline.h"
#include "tests/harness/check.h"

static int64_t check_str(const char *s, uint64_t first)
{
	return kiln_loglines_check(s, strlen(s), first);
}

int main(void)
{
	kiln_buf b = {0};
	kiln_logline_format(&b, 1, 1700000000123, KILN_LOGLINE_STDOUT, -1, "hello", 5);
	kiln_logline_format(&b, 2, 5, KILN_LOGLINE_STDERR, 3, "a\rb\nc", 5);
	kiln_logline_format(&b, 3, 0, KILN_LOGLINE_SYSTEM, 0, "", 0);
	CHECK_STR(b.p, "1\t1700000000123\tstdout\t-1\thello\n"
		       "2\t5\tstderr\t3\ta b c\n"
		       "3\t0\tsystem\t0\t\n");
	CHECK_INT(kiln_loglines_check(b.p, b.len, 1), 3);

	kiln_logline l;
	const char *one = "42\t-7\tstderr\t12\tsome text\there";
	CHECK(kiln_logline_parse(one, strlen(one), &l));
	CHECK_INT(l.seq, 42);
	CHECK_INT(l.ts_ms, -7);
	CHECK(l.stream_len == 6 && memcmp(l.stream, "stderr", 6) == 0);
	CHECK_INT(l.step, 12);
	CHECK(l.text_len == 14 && memcmp(l.text, "some text\there", 14) == 0);
	CHECK_INT(kiln_logline_seq("17\tx", 4), 17);
	CHECK_INT(kiln_logline_seq("x17", 3), 0);

	/* what an agent sends is checked line by line */
	CHECK_INT(check_str("", 1), 0);
	CHECK_INT(check_str("5\t1\tstdout\t0\tx\n6\t1\tstdout\t0\ty\n", 5), 2);
	CHECK(check_str("5\t1\tstdout\t0\tx\n7\t1\tstdout\t0\ty\n", 5) < 0); /* a gap */
	CHECK(strstr(kiln_errmsg(), "sequence 7, not 6") != NULL);
	CHECK(check_str("5\t1\tstdout\t0\tx\n", 4) < 0);                   /* wrong start */
	CHECK(check_str("5\t1\tstdout\t0\tx", 5) < 0);                     /* no newline */
	CHECK(check_str("5\t1\tstdio\t0\tx\n", 5) < 0);                     /* stream */
	CHECK(check_str("5\t1\tstdoutx0\tx\n", 5) < 0);
	CHECK(check_str("5\t1\tstdout\t-2\tx\n", 5) < 0);                   /* step */
	CHECK(check_str("5\t1\tstdout\t99999999999\tx\n", 5) < 0);
	CHECK(check_str("5\tx\tstdout\t0\tx\n", 5) < 0);                     /* time */
	CHECK(check_str("99999999999999999999\t1\tstdout\t0\tx\n", 5) < 0);  /* overflow */
	CHECK(check_str("5\t1\tstdout\t0\ta\rb\n", 5) < 0);                  /* a CR */
	CHECK(check_str("\n", 5) < 0);
	CHECK(check_str("5\t1\tstdout\n", 5) < 0);

	/* a text past the limit is cut there, and one that long still checks */
	size_t big = KILN_LOGLINE_MAX_TEXT + 100;
	char *text = kiln_malloc(big);
	memset(text, 'y', big);
	b.len = 0;
	kiln_logline_format(&b, 9, 1, KILN_LOGLINE_STDOUT, 0, text, big);
	CHECK(b.len < KILN_LOGLINE_MAX_TEXT + KILN_LOGLINE_MAX_HEAD);
	CHECK_INT(kiln_loglines_check(b.p, b.len, 9), 1);
	free(text);
	kiln_buf_free(&b);
	return check_done();
}
