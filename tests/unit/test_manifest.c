/* test_manifest — saving a tree into the CAS and restoring it (contents, modes,
   symlinks, empty files and directories), re-saves that add nothing or one
   blob, fetching missing blobs, and every hostile manifest refused with
   nothing written outside the target. */
#include "common/cas.h"
#include "common/manifest.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static void put(const char *dir, const char *rel, const char *content, int mode)
{
	_cleanup_free_ char *p = kiln_asprintf("%s/%s", dir, rel);
	_cleanup_free_ char *d = kiln_strdup(p);
	*strrchr(d, '/') = '\0';
	CHECK(kiln_mkdir_p(d, 0755) == 0);
	CHECK(kiln_write_file_atomic(p, content, strlen(content), mode) == 0);
	CHECK(chmod(p, (mode_t)mode) == 0);
}

static bool same_file(const char *a, const char *b, int mode)
{
	_cleanup_free_ char *x = NULL, *y = NULL;
	size_t xn = 0, yn = 0;
	struct stat st;
	return kiln_read_file(a, 64u << 20, &x, &xn) == 0 && kiln_read_file(b, 64u << 20, &y, &yn) == 0 &&
	       xn == yn && memcmp(x, y, xn) == 0 && stat(b, &st) == 0 && (int)(st.st_mode & 07777) == mode;
}

static void make_tree(const char *src)
{
	put(src, "a.txt", "alpha\n", 0644);
	put(src, "bin/run.sh", "#!/bin/sh\necho hi\n", 0755);
	put(src, "dir/sub/deep.txt", "deep\n", 0600);
	put(src, "empty", "", 0640);
	for (int i = 0; i < 300; i++) {
		_cleanup_free_ char *rel = kiln_asprintf("many/%02d/f%d", i % 7, i);
		_cleanup_free_ char *body = kiln_asprintf("file number %d\n", i);
		put(src, rel, body, 0644);
	}
	_cleanup_free_ char *big = kiln_malloc(2u << 20);
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < (2u << 20); i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		big[i] = (char)x;
	}
	_cleanup_free_ char *bp = kiln_asprintf("%s/big.bin", src);
	CHECK(kiln_write_file_atomic(bp, big, 2u << 20, 0644) == 0);
	_cleanup_free_ char *l1 = kiln_asprintf("%s/link", src);
	_cleanup_free_ char *l2 = kiln_asprintf("%s/dir/up", src);
	_cleanup_free_ char *ed = kiln_asprintf("%s/emptydir", src);
	CHECK(symlink("a.txt", l1) == 0);
	CHECK(symlink("../a.txt", l2) == 0);
	CHECK(mkdir(ed, 0700) == 0);
}

static uint64_t blob_count(kiln_cas *cas)
{
	uint64_t n = 0;
	kiln_cas_total(cas, NULL, &n);
	return n;
}

/* The fetch callback: copies raw frames from another store, as the agent will over the wire. */
static int fetch_from(void *ud, kiln_cas *cas, const char *hex)
{
	kiln_cas *from = ud;
	kiln_buf frame = {0};
	uint64_t total = 1;
	char chunk[1 << 16];
	int r = 0;
	for (uint64_t off = 0; r == 0 && off < total;) {
		size_t n = 0;
		r = kiln_cas_read_compressed(from, hex, off, chunk, sizeof chunk, &n, &total);
		if (n == 0)
			break;
		kiln_buf_append(&frame, chunk, n);
		off += n;
	}
	if (r == 0)
		r = kiln_cas_put_compressed(cas, hex, frame.p, frame.len);
	kiln_buf_free(&frame);
	return r;
}

static void test_round_trip(const char *dir)
{
	_cleanup_free_ char *src = kiln_asprintf("%s/src", dir);
	_cleanup_free_ char *dst = kiln_asprintf("%s/dst", dir);
	_cleanup_free_ char *store = kiln_asprintf("%s/store", dir);
	make_tree(src);
	_cleanup_(kiln_cas_closep) kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(store, NULL, &cas) == 0);

	const char *paths[] = {"."};
	_cleanup_(kiln_manifest_freep) kiln_manifest *m = NULL;
	CHECK(kiln_manifest_build(cas, src, paths, 1, &m) == 0);
	char hex[65];
	CHECK(kiln_manifest_save(cas, m, hex) == 0);
	uint64_t before = blob_count(cas);
	CHECK(before == 300 + 5 + 1); /* files (empty included), the manifest */

	_cleanup_(kiln_manifest_freep) kiln_manifest *loaded = NULL;
	CHECK(kiln_manifest_load(cas, hex, &loaded) == 0);
	CHECK(loaded && loaded->n == m->n);
	CHECK(kiln_manifest_restore(cas, loaded, dst, NULL, NULL) == 0);
	const char *files[] = {"a.txt", "bin/run.sh", "dir/sub/deep.txt", "empty", "big.bin",
			       "many/03/f10", "many/05/f299"};
	int modes[] = {0644, 0755, 0600, 0640, 0644, 0644, 0644};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(files); i++) {
		_cleanup_free_ char *a = kiln_asprintf("%s/%s", src, files[i]);
		_cleanup_free_ char *b = kiln_asprintf("%s/%s", dst, files[i]);
		if (!same_file(a, b, modes[i]))
			fprintf(stderr, "differs: %s\n", files[i]);
		CHECK(same_file(a, b, modes[i]));
	}
	char tgt[64] = "";
	_cleanup_free_ char *l1 = kiln_asprintf("%s/link", dst);
	_cleanup_free_ char *l2 = kiln_asprintf("%s/dir/up", dst);
	_cleanup_free_ char *ed = kiln_asprintf("%s/emptydir", dst);
	CHECK(readlink(l1, tgt, sizeof tgt - 1) == 5 && strcmp(tgt, "a.txt") == 0);
	memset(tgt, 0, sizeof tgt);
	CHECK(readlink(l2, tgt, sizeof tgt - 1) == 8 && strcmp(tgt, "../a.txt") == 0);
	struct stat st;
	CHECK(stat(ed, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	/* restoring over an existing tree replaces it */
	CHECK(kiln_manifest_restore(cas, loaded, dst, NULL, NULL) == 0);

	/* an unchanged tree saves to the same manifest and adds nothing */
	_cleanup_(kiln_manifest_freep) kiln_manifest *m2 = NULL;
	char hex2[65];
	CHECK(kiln_manifest_build(cas, src, paths, 1, &m2) == 0);
	CHECK(kiln_manifest_save(cas, m2, hex2) == 0);
	CHECK_STR(hex2, hex);
	CHECK_INT(blob_count(cas), before);
	kiln_strv missing = {0};
	CHECK(kiln_manifest_find_missing(cas, m2, &missing) == 0 && missing.n == 0);

	/* one changed file adds one file blob and one manifest */
	put(src, "many/03/f10", "changed\n", 0644);
	_cleanup_(kiln_manifest_freep) kiln_manifest *m3 = NULL;
	char hex3[65];
	CHECK(kiln_manifest_build(cas, src, paths, 1, &m3) == 0);
	CHECK(kiln_manifest_save(cas, m3, hex3) == 0);
	CHECK(strcmp(hex3, hex) != 0);
	CHECK_INT(blob_count(cas), before + 2);

	/* a second store lacks everything; restore fetches through the callback */
	_cleanup_free_ char *store2 = kiln_asprintf("%s/store2", dir);
	_cleanup_free_ char *dst2 = kiln_asprintf("%s/dst2", dir);
	_cleanup_(kiln_cas_closep) kiln_cas *cas2 = NULL;
	CHECK(kiln_cas_open(store2, NULL, &cas2) == 0);
	CHECK(kiln_manifest_find_missing(cas2, m3, &missing) == 0);
	CHECK_INT(missing.n, 300 + 5); /* no two files are equal */
	kiln_strv_free(&missing);
	CHECK(kiln_manifest_restore(cas2, m3, dst2, NULL, NULL) == -ENOENT);
	DIR *d = opendir(dst2);
	CHECK(d == NULL); /* nothing written, not even the target */
	if (d)
		closedir(d);
	CHECK(kiln_manifest_restore(cas2, m3, dst2, fetch_from, cas) == 0);
	_cleanup_free_ char *a = kiln_asprintf("%s/many/03/f10", src);
	_cleanup_free_ char *b = kiln_asprintf("%s/many/03/f10", dst2);
	CHECK(same_file(a, b, 0644));

	/* a subset of paths */
	const char *some[] = {"./bin/", "dir", "dir/sub"};
	_cleanup_(kiln_manifest_freep) kiln_manifest *m4 = NULL;
	CHECK(kiln_manifest_build(cas, src, some, 3, &m4) == 0);
	CHECK_INT(m4->n, 6); /* bin, bin/run.sh, dir, dir/sub, dir/sub/deep.txt, dir/up */
	const char *bad[] = {"../etc"};
	_cleanup_(kiln_manifest_freep) kiln_manifest *m5 = NULL;
	CHECK(kiln_manifest_build(cas, src, bad, 1, &m5) == -EINVAL);
}

/* ---- hostile manifests ---- */

static kiln_manifest_entry *add(kiln_manifest *m, const char *path, kiln_entry_type t,
				uint32_t mode)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 16;
		m->v = kiln_realloc(m->v, m->cap * sizeof *m->v);
	}
	kiln_manifest_entry *e = &m->v[m->n++];
	*e = (kiln_manifest_entry){.path = kiln_strdup(path), .type = t, .mode = mode};
	return e;
}

static void add_file(kiln_manifest *m, const char *path, const char *hex, uint64_t size,
		     uint32_t mode)
{
	kiln_manifest_entry *e = add(m, path, KILN_ENTRY_FILE, mode);
	memcpy(e->digest, hex, 65);
	e->size = size;
}

static void add_link(kiln_manifest *m, const char *path, const char *target)
{
	add(m, path, KILN_ENTRY_SYMLINK, 0777)->target = kiln_strdup(target);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

typedef struct hostile {
	kiln_cas *cas;
	const char *base;   /* holds target/, outside/sentinel and nothing else */
	const char *target;
	const char *outside;
	char hex[65];       /* "payload" */
	char bomb[65];      /* 1 MiB of zeros */
	char corrupt[65];   /* stored under its name with other content */
} hostile;

/* Restores m, expecting a refusal, and checks nothing appeared outside the target. */
static void refused(hostile *h, kiln_manifest *m, int line, bool target_empty)
{
	int r = kiln_manifest_restore(h->cas, m, h->target, NULL, NULL);
	if (r >= 0)
		fprintf(stderr, "line %d: hostile manifest accepted\n", line);
	CHECK(r < 0);
	CHECK(strlen(kiln_errmsg()) > 0);
	_cleanup_free_ char *sentinel = kiln_asprintf("%s/sentinel", h->outside);
	_cleanup_free_ char *got = NULL;
	size_t len = 0;
	CHECK(count_entries(h->base) == 2);
	CHECK(count_entries(h->outside) == 1);
	CHECK(kiln_read_file(sentinel, 100, &got, &len) == 0 && strcmp(got, "keep") == 0);
	if (target_empty && count_entries(h->target) > 0)
		fprintf(stderr, "line %d: target not empty\n", line);
	if (target_empty)
		CHECK(count_entries(h->target) <= 0);
	kiln_manifest_free(m);
	kiln_clear_dir(h->target, 0755);
}

#define REFUSED(m) refused(&h, (m), __LINE__, true)

static void test_hostile(const char *dir)
{
	hostile h = {0};
	_cleanup_free_ char *base = kiln_asprintf("%s/base", dir);
	_cleanup_free_ char *target = kiln_asprintf("%s/target", base);
	_cleanup_free_ char *outside = kiln_asprintf("%s/outside", base);
	_cleanup_free_ char *store = kiln_asprintf("%s/hstore", dir);
	h.base = base, h.target = target, h.outside = outside;
	CHECK(kiln_mkdir_p(target, 0755) == 0 && kiln_mkdir_p(outside, 0755) == 0);
	put(outside, "sentinel", "keep", 0644);
	_cleanup_(kiln_cas_closep) kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(store, NULL, &cas) == 0);
	h.cas = cas;
	CHECK(kiln_cas_put_buf(cas, "payload", 7, h.hex) == 1);
	char *zeros = kiln_calloc(1, 1 << 20);
	CHECK(kiln_cas_put_buf(cas, zeros, 1 << 20, h.bomb) == 1);
	free(zeros);
	/* a frame of "evil" stored under the name of "payload2" */
	char z[64];
	size_t zn = ZSTD_compress(z, sizeof z, "evil!!!!", 8, 1);
	kiln_sha256_hex("payload2", 8, h.corrupt);
	CHECK(kiln_cas_put_compressed(cas, h.corrupt, z, zn) == -EBADMSG);

	kiln_manifest *m;
	const char *bad_paths[] = {"../evil", "/tmp/kiln-evil", "a/../../evil", "a//b", "./a", "",
				   "a/", "a/./b", ".."};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(bad_paths); i++) {
		m = kiln_calloc(1, sizeof *m);
		add_file(m, bad_paths[i], h.hex, 7, 0644);
		REFUSED(m);
	}
	/* a symlink out of the tree, then a file written through it */
	m = kiln_calloc(1, sizeof *m);
	add_link(m, "l", "../outside");
	add_file(m, "l/evil", h.hex, 7, 0644);
	REFUSED(m);
	/* even a harmless-looking symlink may not be written through */
	m = kiln_calloc(1, sizeof *m);
	add_link(m, "l", ".");
	add_file(m, "l/x", h.hex, 7, 0644);
	REFUSED(m);
	m = kiln_calloc(1, sizeof *m);
	add(m, "d", KILN_ENTRY_DIR, 0755);
	add_link(m, "d/l", "..");
	add(m, "d/l/sub", KILN_ENTRY_DIR, 0755);
	REFUSED(m);
	const char *bad_targets[] = {"/etc", "..", "../outside/sentinel", "a/../../x", "./../x"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(bad_targets); i++) {
		m = kiln_calloc(1, sizeof *m);
		add_link(m, "l", bad_targets[i]);
		REFUSED(m);
	}
	/* a chain: d/up -> .. is inside, but e -> d/up/.. would leave */
	m = kiln_calloc(1, sizeof *m);
	add(m, "d", KILN_ENTRY_DIR, 0755);
	add_link(m, "d/up", "..");
	add_link(m, "e", "d/up/..");
	REFUSED(m);
	/* a file below a file, duplicates */
	m = kiln_calloc(1, sizeof *m);
	add_file(m, "f", h.hex, 7, 0644);
	add_file(m, "f/g", h.hex, 7, 0644);
	REFUSED(m);
	m = kiln_calloc(1, sizeof *m);
	add_file(m, "f", h.hex, 7, 0644);
	add_file(m, "f", h.hex, 7, 0644);
	REFUSED(m);
	/* setuid, setgid, sticky, device bits */
	const uint32_t bad_modes[] = {04755, 02755, 01777, 020644, 060644};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(bad_modes); i++) {
		m = kiln_calloc(1, sizeof *m);
		add_file(m, "f", h.hex, 7, bad_modes[i]);
		REFUSED(m);
	}
	/* too many entries, too big in total */
	kiln_cas_limits lim = KILN_CAS_LIMITS_INIT;
	lim.max_entries = 10;
	m = kiln_calloc(1, sizeof *m);
	for (int i = 0; i < 11; i++) {
		_cleanup_free_ char *p = kiln_asprintf("f%d", i);
		add_file(m, p, h.hex, 7, 0644);
	}
	CHECK(kiln_manifest_check(m, &lim) == -E2BIG);
	CHECK(strstr(kiln_errmsg(), "limit") != NULL);
	kiln_manifest_free(m);
	m = kiln_calloc(1, sizeof *m);
	add_file(m, "f", h.hex, 1ull << 50, 0644);
	REFUSED(m);
	/* a decompression bomb: 1 MiB where the manifest says 7 bytes */
	m = kiln_calloc(1, sizeof *m);
	add_file(m, "f", h.bomb, 7, 0644);
	REFUSED(m);
	/* a blob shorter than declared */
	m = kiln_calloc(1, sizeof *m);
	add_file(m, "f", h.hex, 8, 0644);
	REFUSED(m);
	/* content that does not match its name */
	CHECK(kiln_cas_has(cas, h.corrupt) == 0);
	m = kiln_calloc(1, sizeof *m);
	add_file(m, "f", h.corrupt, 8, 0644);
	REFUSED(m);

	/* a symlink already in the target is neither followed nor written through */
	_cleanup_free_ char *pre = kiln_asprintf("%s/pre", target);
	CHECK(symlink("../outside", pre) == 0);
	m = kiln_calloc(1, sizeof *m);
	add_file(m, "pre/sentinel", h.hex, 7, 0644);
	refused(&h, m, __LINE__, false);
	CHECK(symlink("../outside/sentinel", pre) == 0);
	m = kiln_calloc(1, sizeof *m);
	add_file(m, "pre", h.hex, 7, 0600); /* replaces the symlink itself */
	CHECK(kiln_manifest_restore(cas, m, target, NULL, NULL) == 0);
	struct stat st;
	CHECK(lstat(pre, &st) == 0 && S_ISREG(st.st_mode));
	kiln_manifest_free(m);
	_cleanup_free_ char *sentinel = kiln_asprintf("%s/sentinel", outside);
	_cleanup_free_ char *keep = NULL;
	CHECK(kiln_read_file(sentinel, 100, &keep, NULL) == 0 && strcmp(keep, "keep") == 0);

	/* JSON: unknown types, non-integer modes, duplicates; rejected before use */
	m = NULL;
	const char *bad_json[] = {
		"{\"version\":1,\"entries\":[{\"path\":\"dev\",\"type\":\"chardev\",\"mode\":420}]}",
		"{\"version\":1,\"entries\":[{\"path\":\"f\",\"type\":\"file\",\"mode\":\"rwx\"}]}",
		"{\"version\":2,\"entries\":[]}",
		"{\"version\":1,\"entries\":[{\"path\":\"f\",\"path\":\"g\",\"type\":\"dir\",\"mode\":1}]}",
		"not json",
	};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(bad_json); i++) {
		CHECK(kiln_manifest_from_json(bad_json[i], strlen(bad_json[i]), &lim, &m) < 0);
		CHECK(m == NULL);
	}
	/* a round trip through JSON keeps everything */
	kiln_manifest *ok = kiln_calloc(1, sizeof *ok);
	add(ok, "d", KILN_ENTRY_DIR, 0750);
	add_file(ok, "d/f", h.hex, 7, 0640);
	add_link(ok, "l", "d/f");
	_cleanup_free_ char *json = kiln_manifest_to_json(ok);
	CHECK(kiln_manifest_from_json(json, strlen(json), &lim, &m) == 0);
	CHECK(m && m->n == 3 && m->v[1].size == 7 && m->v[1].mode == 0640 &&
	      strcmp(m->v[2].target, "d/f") == 0);
	kiln_manifest_free(m);
	kiln_manifest_free(ok);
	CHECK(count_entries(outside) == 1);
}

/* A restore into a directory that holds the tree already leaves unchanged files alone (same
   inode) and rewrites every file that was changed since, whatever the change. */
static void test_warm_restore(const char *dir)
{
	_cleanup_free_ char *src = kiln_asprintf("%s/wsrc", dir);
	_cleanup_free_ char *dst = kiln_asprintf("%s/wdst", dir);
	_cleanup_free_ char *store = kiln_asprintf("%s/wstore", dir);
	make_tree(src);
	_cleanup_(kiln_cas_closep) kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(store, NULL, &cas) == 0);
	const char *paths[] = {"."};
	_cleanup_(kiln_manifest_freep) kiln_manifest *m = NULL;
	CHECK(kiln_manifest_build(cas, src, paths, 1, &m) == 0);
	if (!m)
		return;
	CHECK(kiln_manifest_restore(cas, m, dst, NULL, NULL) == 0);
	usleep(20000); /* past the stat cache's timestamp tick: nothing racily clean */
	CHECK(kiln_manifest_restore(cas, m, dst, NULL, NULL) == 0);
	_cleanup_free_ char *a = kiln_asprintf("%s/a.txt", dst);
	_cleanup_free_ char *f10 = kiln_asprintf("%s/many/03/f10", dst);
	_cleanup_free_ char *run = kiln_asprintf("%s/bin/run.sh", dst);
	_cleanup_free_ char *deep = kiln_asprintf("%s/dir/sub/deep.txt", dst);
	struct stat st1, st2;
	CHECK(stat(f10, &st1) == 0);
	CHECK(kiln_manifest_restore(cas, m, dst, NULL, NULL) == 0);
	CHECK(stat(f10, &st2) == 0 && st1.st_ino == st2.st_ino &&
	      st1.st_ctim.tv_nsec == st2.st_ctim.tv_nsec); /* left alone */
	/* same size, other content; a mode; a file replaced by a symlink; one removed */
	int fd = open(a, O_WRONLY | O_CLOEXEC);
	CHECK(fd >= 0 && write(fd, "ALPHA\n", 6) == 6);
	if (fd >= 0)
		close(fd);
	CHECK(chmod(run, 0700) == 0);
	CHECK(unlink(deep) == 0 && symlink("../../a.txt", deep) == 0);
	CHECK(unlink(f10) == 0);
	CHECK(kiln_manifest_restore(cas, m, dst, NULL, NULL) == 0);
	const char *files[] = {"a.txt", "bin/run.sh", "dir/sub/deep.txt", "many/03/f10"};
	int modes[] = {0644, 0755, 0600, 0644};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(files); i++) {
		_cleanup_free_ char *x = kiln_asprintf("%s/%s", src, files[i]);
		_cleanup_free_ char *y = kiln_asprintf("%s/%s", dst, files[i]);
		CHECK(same_file(x, y, modes[i]));
	}
}

int main(void)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-manifest", &dir) == 0);
	test_round_trip(dir);
	test_warm_restore(dir);
	test_hostile(dir);
	kiln_rm_rf(dir);
	return check_done();
}
