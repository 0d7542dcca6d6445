/* test_cas — the content-addressed store: round trips of small and big blobs
   through memory, fds and raw frames, corrupt blobs never served, frames from
   the wire verified, LRU eviction. */
#include "common/cas.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static char *noise(size_t n, unsigned seed)
{
	char *p = kiln_malloc(n);
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (char)x;
	}
	return p;
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static int count_fn(void *ud, const char *hex, uint64_t size, uint64_t stored)
{
	(void)hex;
	(void)size;
	(void)stored;
	(*(int *)ud)++;
	return 0;
}

/* Replaces blob hex's stored frame with a valid frame of other content. */
static void corrupt_file(const char *root, const char *hex)
{
	_cleanup_free_ char *p = kiln_asprintf("%s/cas/sha256/%.2s/%s", root, hex, hex);
	char z[128];
	size_t zn = ZSTD_compress(z, sizeof z, "evil", 4, 1);
	CHECK(kiln_write_file_atomic(p, z, zn, 0644) == 0);
}

static void corrupt_row(const char *root, const char *hex)
{
	_cleanup_free_ char *p = kiln_asprintf("%s/cas/small.db", root);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char z[128];
	size_t zn = ZSTD_compress(z, sizeof z, "evil", 4, 1);
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, "UPDATE data SET z=? WHERE digest=?", -1, &st, NULL) == 0);
	sqlite3_bind_blob(st, 1, z, (int)zn, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, hex, -1, SQLITE_STATIC);
	CHECK(sqlite3_step(st) == SQLITE_DONE);
	CHECK(sqlite3_changes(db) == 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_round_trips(const char *dir)
{
	_cleanup_(kiln_cas_closep) kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	char hex[65], want[65];

	CHECK(kiln_cas_put_buf(cas, "hello", 5, hex) == 1);
	kiln_sha256_hex("hello", 5, want);
	CHECK_STR(hex, want);
	CHECK(kiln_cas_put_buf(cas, "hello", 5, hex) == 0);
	CHECK(kiln_cas_has(cas, hex) == 1);
	_cleanup_free_ char *got = NULL;
	size_t len = 0;
	CHECK(kiln_cas_get_buf(cas, hex, 100, &got, &len) == 0);
	CHECK(len == 5 && memcmp(got, "hello", 5) == 0);
	CHECK(kiln_cas_get_buf(cas, hex, 4, &got, &len) == -EFBIG); /* over the caller's max */

	CHECK(kiln_cas_put_buf(cas, "", 0, hex) >= 0);
	CHECK_STR(hex, KILN_CAS_EMPTY_DIGEST);
	free(got);
	got = NULL;
	CHECK(kiln_cas_get_buf(cas, hex, 0, &got, &len) == 0 && len == 0);

	CHECK(kiln_cas_has(cas, "00000000000000000000000000000000000000000000000000000000000000ff") == 0);
	CHECK(kiln_cas_has(cas, "../etc/passwd") == 0);
	free(got);
	got = NULL;
	CHECK(kiln_cas_get_buf(cas, "00000000000000000000000000000000000000000000000000000000000000ff",
			       10, &got, &len) == -ENOENT);

	/* a big incompressible blob goes to a file, streamed from an fd */
	size_t bign = 3u << 20;
	_cleanup_free_ char *big = noise(bign, 1);
	_cleanup_free_ char *src = kiln_asprintf("%s/big.in", dir);
	CHECK(kiln_write_file_atomic(src, big, bign, 0644) == 0);
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	uint64_t size = 0;
	CHECK(kiln_cas_put_fd(cas, fd, hex, &size) == 1);
	close(fd);
	kiln_sha256_hex(big, bign, want);
	CHECK_STR(hex, want);
	CHECK(size == bign);
	_cleanup_free_ char *bp = kiln_asprintf("%s/cas/sha256/%.2s/%s", dir, hex, hex);
	CHECK(exists(bp));
	_cleanup_free_ char *outp = kiln_asprintf("%s/big.out", dir);
	fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(kiln_cas_get_to_fd(cas, hex, fd, bign) == (int64_t)bign);
	close(fd);
	_cleanup_free_ char *back = NULL;
	CHECK(kiln_read_file(outp, bign, &back, &len) == 0 && len == bign);
	CHECK(back && memcmp(back, big, bign) == 0);
	CHECK(kiln_cas_verify(cas, hex) == 1);

	/* frames read raw from one store are accepted by another after verification */
	_cleanup_free_ char *sub = kiln_asprintf("%s/other", dir);
	_cleanup_(kiln_cas_closep) kiln_cas *other = NULL;
	CHECK(kiln_cas_open(sub, NULL, &other) == 0);
	kiln_buf frame = {0};
	uint64_t total = 1;
	char chunk[1 << 16];
	for (uint64_t off = 0; off < total;) {
		size_t n = 0;
		CHECK(kiln_cas_read_compressed(cas, hex, off, chunk, sizeof chunk, &n, &total) == 0);
		if (n == 0)
			break;
		kiln_buf_append(&frame, chunk, n);
		off += n;
	}
	CHECK(frame.len == total);
	CHECK(kiln_cas_put_compressed(other, hex, frame.p, frame.len) == 1);
	CHECK(kiln_cas_verify(other, hex) == 1);
	/* a frame under the wrong name, and bytes that are no frame, are refused */
	kiln_sha256_hex("x", 1, want);
	CHECK(kiln_cas_put_compressed(other, want, frame.p, frame.len) == -EBADMSG);
	CHECK(kiln_cas_has(other, want) == 0);
	CHECK(kiln_cas_put_compressed(other, want, "garbage", 7) == -EBADMSG);
	CHECK(kiln_cas_has(other, want) == 0);
	frame.len /= 2; /* truncated */
	kiln_sha256_hex("y", 1, want);
	CHECK(kiln_cas_put_compressed(other, want, frame.p, frame.len) == -EBADMSG);
	kiln_buf_free(&frame);

	/* a big but compressible file ends up inline */
	char *zeros = kiln_calloc(1, 4u << 20);
	CHECK(kiln_write_file_atomic(src, zeros, 4u << 20, 0644) == 0);
	fd = open(src, O_RDONLY | O_CLOEXEC);
	CHECK(kiln_cas_put_fd(cas, fd, hex, &size) == 1);
	close(fd);
	free(zeros);
	_cleanup_free_ char *zp = kiln_asprintf("%s/cas/sha256/%.2s/%s", dir, hex, hex);
	CHECK(!exists(zp));
	CHECK(kiln_cas_verify(cas, hex) == 1);
	/* a decompression bomb against a caller's limit */
	free(got);
	got = NULL;
	CHECK(kiln_cas_get_buf(cas, hex, 1 << 20, &got, &len) == -EFBIG);

	int n = 0;
	CHECK(kiln_cas_foreach(cas, count_fn, &n) == 0);
	CHECK_INT(n, 4);
	uint64_t bytes = 0, count = 0;
	CHECK(kiln_cas_total(cas, &bytes, &count) == 0 && count == 4 && bytes > bign);
	CHECK(kiln_cas_remove(cas, hex) == 1);
	CHECK(kiln_cas_remove(cas, hex) == 0);
	CHECK(kiln_cas_has(cas, hex) == 0);
}

static void test_corruption(const char *dir)
{
	_cleanup_(kiln_cas_closep) kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	char small[65], bighex[65];
	CHECK(kiln_cas_put_buf(cas, "small content", 13, small) == 1);
	_cleanup_free_ char *big = noise(1u << 20, 2);
	CHECK(kiln_cas_put_buf(cas, big, 1u << 20, bighex) == 1);

	corrupt_file(dir, bighex);
	corrupt_row(dir, small);
	_cleanup_free_ char *got = NULL;
	size_t len = 0;
	CHECK(kiln_cas_get_buf(cas, bighex, 2u << 20, &got, &len) == -EBADMSG);
	CHECK(got == NULL);
	CHECK(strstr(kiln_errmsg(), "corrupt") != NULL);
	CHECK(kiln_cas_has(cas, bighex) == 0);
	_cleanup_free_ char *bp = kiln_asprintf("%s/cas/sha256/%.2s/%s", dir, bighex, bighex);
	CHECK(!exists(bp));
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	CHECK(kiln_cas_get_to_fd(cas, small, fd, 100) == -EBADMSG);
	close(fd);
	CHECK(kiln_cas_has(cas, small) == 0);
	/* and it can be stored again */
	CHECK(kiln_cas_put_buf(cas, "small content", 13, small) == 1);
	CHECK(kiln_cas_verify(cas, small) == 1);

	/* a big blob whose file vanished counts as missing */
	CHECK(kiln_cas_put_buf(cas, big, 1u << 20, bighex) == 1);
	CHECK(unlink(bp) == 0);
	CHECK(kiln_cas_has(cas, bighex) == 0);
	CHECK(kiln_cas_put_buf(cas, big, 1u << 20, bighex) == 1);
	CHECK(kiln_cas_verify(cas, bighex) == 1);
}

static void test_eviction(const char *dir)
{
	kiln_cas_limits lim = KILN_CAS_LIMITS_INIT;
	lim.small_max = 16 << 10; /* so that some of these are files */
	_cleanup_(kiln_cas_closep) kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(dir, &lim, &cas) == 0);
	char hex[4][65];
	size_t sizes[4] = {10000, 20000, 10000, 20000};
	for (int i = 0; i < 4; i++) {
		_cleanup_free_ char *p = noise(sizes[i], 10 + (unsigned)i);
		CHECK(kiln_cas_put_buf(cas, p, sizes[i], hex[i]) == 1);
	}
	CHECK(kiln_cas_touch(cas, hex[0]) == 1); /* 0 is now the most recently used */
	uint64_t bytes = 0;
	CHECK(kiln_cas_total(cas, &bytes, NULL) == 0);
	CHECK(kiln_cas_evict(cas, bytes) == 0);
	/* room for 0 and 3 only: 1 and 2 are the least recently used */
	CHECK(kiln_cas_evict(cas, 10000 + 20000 + 200) == 2);
	CHECK(kiln_cas_has(cas, hex[0]) == 1);
	CHECK(kiln_cas_has(cas, hex[1]) == 0);
	CHECK(kiln_cas_has(cas, hex[2]) == 0);
	CHECK(kiln_cas_has(cas, hex[3]) == 1);
	_cleanup_free_ char *p1 = kiln_asprintf("%s/cas/sha256/%.2s/%s", dir, hex[1], hex[1]);
	CHECK(!exists(p1));
	/* reading counts as use */
	_cleanup_free_ char *got = NULL;
	size_t len;
	CHECK(kiln_cas_get_buf(cas, hex[3], 1 << 20, &got, &len) == 0);
	CHECK(kiln_cas_evict(cas, 20000 + 200) == 1);
	CHECK(kiln_cas_has(cas, hex[3]) == 1);
	CHECK(kiln_cas_has(cas, hex[0]) == 0);
	/* the index survives a reopen */
	kiln_cas_close(cas);
	cas = NULL;
	CHECK(kiln_cas_open(dir, &lim, &cas) == 0);
	CHECK(kiln_cas_has(cas, hex[3]) == 1);
	CHECK(kiln_cas_verify(cas, hex[3]) == 1);
}

int main(void)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-cas", &dir) == 0);
	_cleanup_free_ char *a = kiln_asprintf("%s/a", dir);
	_cleanup_free_ char *b = kiln_asprintf("%s/b", dir);
	_cleanup_free_ char *c = kiln_asprintf("%s/c", dir);
	test_round_trips(a);
	test_corruption(b);
	test_eviction(c);
	kiln_rm_rf(dir);
	return check_done();
}
