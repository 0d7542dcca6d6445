/* test_mask — secret masking against hostile output. */
#include "common/mask.h"
#include "common/util.h"
#include "tests/harness/check.h"

static char *apply(kiln_masker *m, const char *line)
{
	size_t n = 0;
	char *out = kiln_masker_apply(m, line, strlen(line), &n);
	return out ? out : kiln_strdup(line);
}

#define EXPECT(m, in, want)                                                                        \
	do {                                                                                       \
		char *o_ = apply(m, in);                                                           \
		CHECK_STR(o_, want);                                                               \
		free(o_);                                                                          \
	} while (0)

int main(void)
{
	kiln_masker *m = kiln_masker_new();
	EXPECT(m, "nothing registered", "nothing registered");
	kiln_masker_add(m, "s3cr3t");
	kiln_masker_add(m, "");
	kiln_masker_add(m, "   ");
	kiln_masker_add(m, NULL);
	CHECK_INT(kiln_masker_count(m), 1);
	EXPECT(m, "token=s3cr3t", "token=***");
	EXPECT(m, "s3cr3ts3cr3t and s3cr3t", "*** and ***");
	EXPECT(m, "S3CR3T is not the same", "S3CR3T is not the same");
	EXPECT(m, "s3cr3", "s3cr3");

	/* a multi-line secret: the whole and each line */
	kiln_masker_add(m, "-----BEGIN KEY-----\nAAAABBBB\nCCCC\n-----END KEY-----\n");
	EXPECT(m, "AAAABBBB", "***");
	EXPECT(m, "x CCCC y", "x *** y");
	EXPECT(m, "-----END KEY-----", "***");

	/* overlapping values leave no fragment behind */
	kiln_masker_add(m, "abcdef");
	kiln_masker_add(m, "defghi");
	EXPECT(m, "xxabcdefghiyy", "xx***yy");
	kiln_masker_add(m, "ab");
	EXPECT(m, "ab abcdef", "*** ***");

	/* binary junk, a NUL inside the line, and very long lines */
	char line[] = "pre\0s3cr3t\0post";
	size_t n = 0;
	char *o = kiln_masker_apply(m, line, sizeof line - 1, &n);
	CHECK(o != NULL);
	CHECK_INT(n, 3 + 1 + 3 + 1 + 4);
	CHECK(o && memcmp(o, "pre\0***\0post", n) == 0);
	free(o);
	kiln_buf big = {0};
	for (int i = 0; i < 20000; i++)
		kiln_buf_puts(&big, "..s3cr3t");
	o = kiln_masker_apply(m, big.p, big.len, &n);
	CHECK(o && !strstr(o, "s3cr3t"));
	CHECK_INT(n, 20000 * 5);
	free(o);
	kiln_buf_free(&big);

	/* a value with regex and format metacharacters is taken literally */
	kiln_masker_add(m, "%s.*[x]$1");
	EXPECT(m, "v=%s.*[x]$1;", "v=***;");
	EXPECT(m, "v=%s.*[y]$1;", "v=%s.*[y]$1;");

	/* a carriage return at the end of a secret's line does not keep it from matching */
	kiln_masker_add(m, "line1\r\nline2\r\n");
	EXPECT(m, "line1", "***");
	kiln_masker_free(m);
	kiln_masker_free(NULL);
	return check_done();
}
