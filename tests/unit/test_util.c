/* test_util — buffers, string vectors, parsing of durations and sizes, and
   the file helpers. */
#include "common/util.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	kiln_buf b = {0};
	kiln_buf_puts(&b, "ab");
	kiln_buf_printf(&b, "%d-%s", 42, "x");
	kiln_buf_append(&b, "yz", 2);
	CHECK_STR(b.p, "ab42-xyz");
	CHECK_INT(b.len, 8);
	char *stolen = kiln_buf_steal(&b);
	CHECK_STR(stolen, "ab42-xyz");
	CHECK(b.p == NULL && b.len == 0);
	free(stolen);

	kiln_strv sv = {0};
	kiln_strv_split(&sv, " linux, x64 ,,gpu ", ",");
	CHECK_INT(sv.n, 3);
	CHECK_STR(sv.v[0], "linux");
	CHECK_STR(sv.v[1], "x64");
	CHECK_STR(sv.v[2], "gpu");
	CHECK(sv.v[3] == NULL);
	CHECK(kiln_strv_contains(&sv, "x64"));
	CHECK(!kiln_strv_contains(&sv, "arm"));
	kiln_strv_free(&sv);

	int64_t ms;
	CHECK(kiln_parse_duration_ms("15s", &ms) == 0 && ms == 15000);
	CHECK(kiln_parse_duration_ms("250ms", &ms) == 0 && ms == 250);
	CHECK(kiln_parse_duration_ms("2m", &ms) == 0 && ms == 120000);
	CHECK(kiln_parse_duration_ms("7d", &ms) == 0 && ms == 7LL * 86400000);
	CHECK(kiln_parse_duration_ms("1.5", &ms) == 0 && ms == 1500);
	CHECK(kiln_parse_duration_ms("1h", &ms) == 0 && ms == 3600000);
	CHECK(kiln_parse_duration_ms("5 parsecs", &ms) == -EINVAL);
	CHECK(kiln_parse_duration_ms("-1s", &ms) == -EINVAL);
	CHECK(kiln_parse_duration_ms("", &ms) == -EINVAL);

	uint64_t sz;
	CHECK(kiln_parse_size("64M", &sz) == 0 && sz == 64u << 20);
	CHECK(kiln_parse_size("10GiB", &sz) == 0 && sz == 10ull << 30);
	CHECK(kiln_parse_size("512", &sz) == 0 && sz == 512);
	CHECK(kiln_parse_size("4K", &sz) == 0 && sz == 4096);
	CHECK(kiln_parse_size("-4K", &sz) == -EINVAL);
	CHECK(kiln_parse_size("4X", &sz) == -EINVAL);
	CHECK(kiln_parse_size("99999999999999999999G", &sz) < 0);

	CHECK(kiln_err(ENOENT, "no %s", "thing") == -ENOENT);
	CHECK_STR(kiln_errmsg(), "no thing");
	kiln_err_prefix("ctx %d", 1);
	CHECK_STR(kiln_errmsg(), "ctx 1: no thing");

	char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-util", &dir) == 0);
	_cleanup_free_ char *deep = kiln_asprintf("%s/a/b/c", dir);
	CHECK(kiln_mkdir_p(deep, 0700) == 0);
	CHECK(kiln_mkdir_p(deep, 0700) == 0);
	_cleanup_free_ char *file = kiln_asprintf("%s/f.txt", deep);
	CHECK(kiln_write_file_atomic(file, "hello", 5, 0600) == 0);
	char *text = NULL;
	size_t len = 0;
	CHECK(kiln_read_file(file, 100, &text, &len) == 0);
	CHECK_STR(text, "hello");
	CHECK_INT(len, 5);
	free(text);
	struct stat st;
	CHECK(stat(file, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(kiln_read_file(file, 4, &text, &len) == -EFBIG);
	_cleanup_free_ char *missing = kiln_asprintf("%s/missing", dir);
	CHECK(kiln_read_file(missing, 100, &text, &len) == -ENOENT);
	_cleanup_free_ char *link = kiln_asprintf("%s/a/link", dir);
	CHECK(symlink("/etc", link) == 0);
	CHECK(kiln_rm_rf(dir) == 0);
	CHECK(access(dir, F_OK) != 0);
	CHECK(access("/etc/hostname", F_OK) == 0 || access("/etc", F_OK) == 0);
	CHECK(kiln_rm_rf(dir) == 0);
	free(dir);

	char hex[65];
	kiln_sha256_hex("abc", 3, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	char tok[33];
	CHECK(kiln_random_hex(16, tok) == 0);
	CHECK_INT(strlen(tok), 32);
	return check_done();
}
