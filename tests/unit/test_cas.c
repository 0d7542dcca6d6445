/* test_cas — the content-addressed store: round trips of small and big blobs
   through memory, fds and raw frames, corrupt blobs never served (a frame
   overwritten inside a pack, a truncated pack, a pack or file gone), frames
   from the wire verified, LRU eviction, compaction of packs keeping live
   blobs, several handles and threads on one root while packs are compacted,
   and the one-time migration of a first-version store. */
#include "common/cas.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

/* Where small.db says blob hex's frame is: the pack file's path (NULL if it is a file), the
   offset and the length. */
static char *frame_place(const char *root, const char *hex, uint64_t *off, uint64_t *len)
{
	_cleanup_free_ char *p = kiln_asprintf("%s/cas/small.db", root);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char *pack = NULL;
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, "SELECT pack, off, csize FROM blobs WHERE digest=?", -1, &st,
				 NULL) == 0);
	sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		*off = (uint64_t)sqlite3_column_int64(st, 1);
		*len = (uint64_t)sqlite3_column_int64(st, 2);
		if (id)
			pack = kiln_asprintf("%s/cas/packs/%016llx.pack", root, (unsigned long long)id);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return pack;
}

/* Overwrites blob hex's frame inside its pack with bytes of the same length. */
static void corrupt_packed(const char *root, const char *hex, bool valid_frame)
{
	uint64_t off = 0, len = 0;
	_cleanup_free_ char *pack = frame_place(root, hex, &off, &len);
	CHECK(pack != NULL);
	if (!pack)
		return;
	char *z = kiln_calloc(1, len);
	if (valid_frame) {
		/* a valid frame of other content, padded with zeros to the length */
		size_t zn = ZSTD_compress(z, len, "evil", 4, 1);
		CHECK(!ZSTD_isError(zn) && zn <= len);
	} else {
		memset(z, 0x5a, len);
	}
	int fd = open(pack, O_WRONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, z, len, (off_t)off) == (ssize_t)len);
	close(fd);
	free(z);
}

/* The number and total size of pack files under root. */
static size_t packs_in(const char *root, uint64_t *bytes)
{
	_cleanup_free_ char *p = kiln_asprintf("%s/cas/packs", root);
	DIR *d = opendir(p);
	size_t n = 0;
	*bytes = 0;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (!strstr(de->d_name, ".pack"))
			continue;
		_cleanup_free_ char *f = kiln_asprintf("%s/%s", p, de->d_name);
		struct stat st;
		if (stat(f, &st) == 0) {
			n++;
			*bytes += (uint64_t)st.st_size;
		}
	}
	if (d)
		closedir(d);
	return n;
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

	char next[65];
	CHECK(kiln_cas_put_buf(cas, "its neighbour", 13, next) == 1);
	corrupt_file(dir, bighex);
	corrupt_packed(dir, small, false);
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
	/* the frame after it in the pack is untouched */
	CHECK(kiln_cas_verify(cas, next) == 1);
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

/* A pack cut short: the frames before the cut are served, the ones past it are refused and
   count as missing; a pack that is gone makes its blobs missing. */
static void test_truncated_pack(const char *dir)
{
	char hex[3][65];
	char *body[3] = {noise(3000, 20), noise(3000, 21), noise(3000, 22)};
	kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	for (int i = 0; i < 3; i++)
		CHECK(kiln_cas_put_buf(cas, body[i], 3000, hex[i]) == 1);
	kiln_cas_close(cas);
	uint64_t off1 = 0, len1 = 0, off0 = 0, len0 = 0;
	_cleanup_free_ char *pack = frame_place(dir, hex[1], &off1, &len1);
	_cleanup_free_ char *pack0 = frame_place(dir, hex[0], &off0, &len0);
	CHECK(pack && pack0 && strcmp(pack, pack0) == 0 && off0 + len0 <= off1);
	CHECK(truncate(pack, (off_t)(off1 + len1 / 2)) == 0);
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	CHECK(kiln_cas_verify(cas, hex[0]) == 1);
	_cleanup_free_ char *got = NULL;
	size_t len = 0;
	CHECK(kiln_cas_get_buf(cas, hex[1], 1 << 20, &got, &len) == -EBADMSG);
	CHECK(got == NULL);
	CHECK(kiln_cas_has(cas, hex[1]) == 0);
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	CHECK(kiln_cas_get_to_fd(cas, hex[2], fd, 1 << 20) == -EBADMSG);
	close(fd);
	CHECK(kiln_cas_has(cas, hex[2]) == 0);
	/* stored again, into this handle's pack, and served */
	CHECK(kiln_cas_put_buf(cas, body[1], 3000, hex[1]) == 1);
	CHECK(kiln_cas_get_buf(cas, hex[1], 1 << 20, &got, &len) == 0);
	CHECK(len == 3000 && memcmp(got, body[1], 3000) == 0);
	/* raw frames for the wire come from the pack too */
	char frame[8192];
	size_t n = 0;
	uint64_t total = 0;
	CHECK(kiln_cas_read_compressed(cas, hex[1], 0, frame, sizeof frame, &n, &total) == 0);
	CHECK(n == total && n > 0);
	CHECK(kiln_cas_read_compressed(cas, hex[1], 10, frame, 5, &n, &total) == 0 && n == 5);
	kiln_cas_close(cas);
	/* the pack holding hex[0] deleted: missing for a new handle */
	CHECK(unlink(pack0) == 0);
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	CHECK(kiln_cas_has(cas, hex[0]) == 0);
	CHECK(kiln_cas_has(cas, hex[1]) == 1);
	kiln_cas_close(cas);
	for (int i = 0; i < 3; i++)
		free(body[i]);
}

static int collect_fn(void *ud, const char *hex, uint64_t size, uint64_t stored)
{
	(void)size;
	(void)stored;
	kiln_strv_push(ud, hex);
	return 0;
}

/* Removing most blobs of a sealed pack and compacting keeps the live ones, gives the space
   back, and works through foreach/remove as GC uses them. */
static void test_compaction(const char *dir)
{
	enum { N = 200, SZ = 8000 };
	static char hex[N][65];
	kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	CHECK(kiln_cas_batch_begin(cas) == 0);
	for (int i = 0; i < N; i++) {
		_cleanup_free_ char *p = noise(SZ, 100 + (unsigned)i);
		CHECK(kiln_cas_put_buf(cas, p, SZ, hex[i]) == 1);
	}
	CHECK(kiln_cas_batch_end(cas) == 0);
	kiln_cas_close(cas);
	uint64_t before = 0, after = 0;
	CHECK(packs_in(dir, &before) == 1);
	CHECK(before >= (uint64_t)N * SZ);

	/* a GC-like pass in another handle: every blob but each fourth goes */
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	kiln_strv all = {0};
	CHECK(kiln_cas_foreach(cas, collect_fn, &all) == 0);
	CHECK_INT((int)all.n, N);
	for (int i = 0; i < N; i++)
		if (i % 4)
			CHECK(kiln_cas_remove(cas, hex[i]) == 1);
	kiln_strv_free(&all);
	uint64_t freed = 0;
	CHECK(kiln_cas_compact(cas, &freed) == 1);
	CHECK(freed >= (uint64_t)(N - N / 4) * SZ);
	/* the old pack is gone; the live frames are in this handle's pack */
	CHECK(packs_in(dir, &after) == 1);
	CHECK(after < before / 3);
	for (int i = 0; i < N; i++)
		CHECK(kiln_cas_has(cas, hex[i]) == (i % 4 == 0));
	for (int i = 0; i < N; i += 4)
		CHECK(kiln_cas_verify(cas, hex[i]) == 1);
	uint64_t bytes = 0, count = 0;
	CHECK(kiln_cas_total(cas, &bytes, &count) == 0 && count == N / 4);
	kiln_cas_close(cas);
	/* and after a reopen */
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	for (int i = 0; i < N; i += 4)
		CHECK(kiln_cas_verify(cas, hex[i]) == 1);
	/* eviction down to nothing, then the packs go too (close compacts) */
	CHECK(kiln_cas_evict(cas, 0) == N / 4);
	kiln_cas_close(cas);
	CHECK(packs_in(dir, &after) == 0);
}

/* A pack named by a transaction still open elsewhere is not touched by a compactor. */
static void test_open_batch(const char *dir)
{
	kiln_cas *a = NULL, *b = NULL;
	CHECK(kiln_cas_open(dir, NULL, &a) == 0);
	CHECK(kiln_cas_open(dir, NULL, &b) == 0);
	char hex[65];
	CHECK(kiln_cas_batch_begin(a) == 0);
	CHECK(kiln_cas_put_buf(a, "pending", 7, hex) == 1);
	CHECK(kiln_cas_has(a, hex) == 1);
	CHECK(kiln_cas_verify(a, hex) == 1); /* its own gathered frame, written first */
	CHECK(kiln_cas_compact(b, NULL) == 0);
	uint64_t bytes;
	CHECK(packs_in(dir, &bytes) == 1);
	CHECK(kiln_cas_batch_end(a) == 0);
	kiln_cas_close(a); /* a's pack is sealed now */
	CHECK(kiln_cas_has(b, hex) == 1);
	CHECK(kiln_cas_verify(b, hex) == 1);
	kiln_cas_close(b);
}

typedef struct worker {
	const char *dir;
	kiln_cas *cas; /* shared, or NULL for one of its own */
	unsigned seed;
	int n;
	char (*hex)[65];
	int bad;
} worker;

static void *put_then_read(void *arg)
{
	worker *w = arg;
	kiln_cas *own = NULL;
	kiln_cas *cas = w->cas;
	if (!cas && kiln_cas_open(w->dir, NULL, &own) == 0)
		cas = own;
	for (int i = 0; cas && i < w->n; i++) {
		size_t len = 500 + (w->seed * 7 + (unsigned)i * 13) % 6000;
		_cleanup_free_ char *p = noise(len, w->seed * 1000 + (unsigned)i);
		if (kiln_cas_put_buf(cas, p, len, w->hex[i]) < 0)
			w->bad++;
		if (i % 3 == 2 && kiln_cas_remove(cas, w->hex[i - 1]) < 0)
			w->bad++;
	}
	for (int i = 0; cas && i < w->n; i++) {
		int want = i % 3 == 1 ? 0 : 1;
		if (kiln_cas_verify(cas, w->hex[i]) != want)
			w->bad++;
	}
	kiln_cas_close(own);
	return NULL;
}

static void *compactor(void *arg)
{
	worker *w = arg;
	kiln_cas *cas = NULL;
	if (kiln_cas_open(w->dir, NULL, &cas) < 0) {
		w->bad++;
		return NULL;
	}
	for (int i = 0; i < w->n; i++)
		if (kiln_cas_compact(cas, NULL) < 0)
			w->bad++;
	kiln_cas_close(cas);
	return NULL;
}

/* Threads sharing one handle, threads with handles of their own, and a compactor, at once:
   every blob stays readable and right. */
static void test_concurrent(const char *dir)
{
	enum { T = 4, N = 300 };
	static char hex[T][N][65];
	kiln_cas *shared = NULL;
	CHECK(kiln_cas_open(dir, NULL, &shared) == 0);
	worker w[T + 1];
	pthread_t th[T + 1];
	for (int i = 0; i < T; i++) {
		w[i] = (worker){.dir = dir, .cas = i < 2 ? shared : NULL, .seed = (unsigned)i + 1,
				.n = N, .hex = hex[i]};
		CHECK(pthread_create(&th[i], NULL, put_then_read, &w[i]) == 0);
	}
	w[T] = (worker){.dir = dir, .n = 40};
	CHECK(pthread_create(&th[T], NULL, compactor, &w[T]) == 0);
	for (int i = 0; i <= T; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(w[i].bad, 0);
	}
	kiln_cas_close(shared);
	/* everything the workers left is intact after a final compaction in a new handle */
	kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	CHECK(kiln_cas_compact(cas, NULL) >= 0);
	for (int i = 0; i < T; i++)
		for (int k = 0; k < N; k++)
			CHECK(kiln_cas_verify(cas, hex[i][k]) == (k % 3 == 1 ? 0 : 1));
	kiln_cas_close(cas);
}

/* A store as the first version made it (frames as rows of small.db) is migrated on open. */
static void test_migration(const char *dir)
{
	_cleanup_free_ char *casdir = kiln_asprintf("%s/cas", dir);
	CHECK(kiln_mkdir_p(casdir, 0755) == 0);
	_cleanup_free_ char *p = kiln_asprintf("%s/small.db", casdir);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db,
			   "PRAGMA page_size=65536; PRAGMA journal_mode=WAL;"
			   "CREATE TABLE blobs(digest TEXT PRIMARY KEY, size INTEGER NOT NULL,"
			   " csize INTEGER NOT NULL, inline INTEGER NOT NULL, atime INTEGER NOT NULL);"
			   "CREATE INDEX blobs_atime ON blobs(atime);"
			   "CREATE TABLE data(digest TEXT PRIMARY KEY, z BLOB NOT NULL);",
			   NULL, NULL, NULL) == SQLITE_OK);
	enum { N = 50 };
	char hex[N][65];
	sqlite3_stmt *b = NULL, *d = NULL;
	CHECK(sqlite3_prepare_v2(db, "INSERT INTO blobs VALUES(?,?,?,1,?)", -1, &b, NULL) == 0);
	CHECK(sqlite3_prepare_v2(db, "INSERT INTO data VALUES(?,?)", -1, &d, NULL) == 0);
	for (int i = 0; i < N; i++) {
		char body[64], z[256];
		int len = snprintf(body, sizeof body, "legacy blob %d", i);
		kiln_sha256_hex(body, (size_t)len, hex[i]);
		size_t zn = ZSTD_compress(z, sizeof z, body, (size_t)len, 3);
		sqlite3_bind_text(b, 1, hex[i], -1, SQLITE_STATIC);
		sqlite3_bind_int(b, 2, len);
		sqlite3_bind_int(b, 3, (int)zn);
		sqlite3_bind_int(b, 4, i + 1);
		CHECK(sqlite3_step(b) == SQLITE_DONE);
		sqlite3_reset(b);
		sqlite3_bind_text(d, 1, hex[i], -1, SQLITE_STATIC);
		sqlite3_bind_blob(d, 2, i == 7 ? "not a frame" : z, i == 7 ? 11 : (int)zn,
				  SQLITE_TRANSIENT);
		CHECK(sqlite3_step(d) == SQLITE_DONE);
		sqlite3_reset(d);
	}
	sqlite3_finalize(b);
	sqlite3_finalize(d);
	sqlite3_close(db);

	kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	for (int i = 0; i < N; i++) {
		_cleanup_free_ char *got = NULL;
		size_t len = 0;
		if (i == 7) { /* migrated as it was, and refused on read */
			CHECK(kiln_cas_get_buf(cas, hex[i], 100, &got, &len) == -EBADMSG);
			continue;
		}
		char want[64];
		int wl = snprintf(want, sizeof want, "legacy blob %d", i);
		CHECK(kiln_cas_get_buf(cas, hex[i], 100, &got, &len) == 0);
		CHECK(got && len == (size_t)wl && memcmp(got, want, len) == 0);
	}
	/* new blobs go to packs beside them; the LRU order carried over */
	char nh[65];
	CHECK(kiln_cas_put_buf(cas, "new", 3, nh) == 1);
	kiln_cas_close(cas);
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	sqlite3_stmt *st = NULL;
	CHECK(sqlite3_prepare_v2(db, "SELECT (SELECT COUNT(*) FROM data),"
				     " (SELECT COUNT(*) FROM blobs WHERE inline <> 0 OR pack = 0),"
				     " (SELECT user_version FROM pragma_user_version)",
				 -1, &st, NULL) == 0);
	CHECK(sqlite3_step(st) == SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(st, 0), 0);
	CHECK_INT(sqlite3_column_int(st, 1), 0);
	CHECK_INT(sqlite3_column_int(st, 2), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* a second open finds nothing to migrate */
	CHECK(kiln_cas_open(dir, NULL, &cas) == 0);
	CHECK(kiln_cas_verify(cas, hex[0]) == 1);
	CHECK(kiln_cas_verify(cas, nh) == 1);
	kiln_cas_close(cas);
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
	const char *names[] = {"trunc", "compact", "batch", "concurrent", "migrate"};
	void (*fns[])(const char *) = {test_truncated_pack, test_compaction, test_open_batch,
				       test_concurrent, test_migration};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(fns); i++) {
		_cleanup_free_ char *sub = kiln_asprintf("%s/%s", dir, names[i]);
		fns[i](sub);
	}
	kiln_rm_rf(dir);
	return check_done();
}
