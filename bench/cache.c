/*
 * bench/cache — saving and restoring a cache through kiln's CAS against
 * `tar | zstd`, on two trees the benchmark generates itself in a temporary
 * directory (deterministic pseudo-random content):
 *
 *   big    5,000 files, 117 MiB in all, log-normal sizes (median ~4 KiB, a few
 *          of several MiB), text that compresses like source code plus ~5 %
 *          incompressible files (images, native modules)
 *   small  50,000 files of 200 B – 8 KiB (log-uniform), 10 per directory,
 *          node_modules-like nesting
 *
 * One process holds, per save run, a coordinator (bus on tcp://127.0.0.1:0, its store
 * in a temporary directory) and an agent dialing it over real TCP on loopback, as
 * bench/logs does; the blobs move through the bus requests and the coordinator's blob
 * worker (BlobFindMissing, BlobPut, BlobGet). For each tree, in the same run:
 *   save        `tar -cf - -C TREE . | zstd -3 -q -o OUT` vs what the agent does for
 *               actions/cache save: kiln_manifest_build into the agent's store (WORK/cas),
 *               kiln_manifest_save, then every blob the coordinator lacks uploaded (a
 *               fresh coordinator and agent per run, started untimed, so all of it goes)
 *   cold        `zstd -dc OUT | tar -xf - -C EMPTY` vs a fresh agent store fetching the
 *               manifest and every blob from the coordinator (agent_blobs_download) and
 *               kiln_manifest_restore into an empty directory
 *   warm        the agent store the cold restore filled, restoring into the directory it
 *               filled (nothing may be fetched: asserted), vs the same tar baseline
 *   re-save     the unchanged tree saved again (goal: 0 blob bytes sent in BlobPut), and
 *               after changing one file (goal: 2 blobs sent, its and the manifest's)
 * Every timed figure is the median of --reps runs (default 3): page caches cannot be dropped
 * here, so every run, baseline and kiln alike, reads from a warm page cache.
 *
 * Goals: save <= 1.1x, cold <= 1.15x, warm <= 0.5x the baseline, on both trees.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cas.h"
#include "common/manifest.h"
#include "common/util.h"
#include "agent/agent.h"
#include "agent/internal.h"
#include "agent/transfer.h"
#include "coordinator/coord.h"

#define BENCH_NAME "bench_cache"
#include "bench/bench.h"

extern char **environ;

#define GOAL_SAVE 1.10
#define GOAL_COLD 1.15
#define GOAL_WARM 0.50
#define WATCHDOG_S 900
#define MAX_REPS 15

/* ---- deterministic content ---------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13, x ^= x >> 7, x ^= x << 17;
	return *s = x;
}

static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

#define NWORDS 4096
static char words[NWORDS][12];

static void make_words(void)
{
	uint64_t s = 0x9e3779b97f4a7c15ull;
	static const char letters[] = "etaoinshrdlcumwfgypbvkjxqz_";
	for (int i = 0; i < NWORDS; i++) {
		int len = 2 + (int)(rng_next(&s) % 9);
		for (int k = 0; k < len; k++) {
			/* favour the common letters, as identifiers do */
			double u = rng_unit(&s);
			words[i][k] = letters[(int)(u * u * 26.99)];
		}
		words[i][len] = '\0';
	}
}

/* Fills buf with source-like text: indented lines of skewed tokens and punctuation. */
static void gen_text(uint64_t *s, char *buf, size_t n)
{
	static const char punct[] = "(){};,.=+-*/<>:&|!\"'[]";
	size_t i = 0;
	while (i < n) {
		int indent = (int)(rng_next(s) % 4) * 2;
		for (int k = 0; k < indent && i < n; k++)
			buf[i++] = ' ';
		int toks = 2 + (int)(rng_next(s) % 10);
		for (int t = 0; t < toks && i < n; t++) {
			double u = rng_unit(s);
			const char *w = words[(int)(u * u * u * (NWORDS - 1))];
			for (const char *c = w; *c && i < n; c++)
				buf[i++] = *c;
			if (i < n) {
				uint64_t r = rng_next(s);
				buf[i++] = r % 3 ? ' ' : punct[(r >> 8) % (sizeof punct - 1)];
			}
		}
		if (i < n)
			buf[i++] = '\n';
	}
}

static void gen_binary(uint64_t *s, char *buf, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t r = rng_next(s);
		memcpy(buf + i, &r, n - i < 8 ? n - i : 8);
	}
}

static void write_file(const char *path, const char *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, data + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write %s: %s", path, strerror(errno));
		off += (size_t)w;
	}
	if (close(fd) < 0)
		die("close %s: %s", path, strerror(errno));
}

static void mkdirs(const char *dir)
{
	if (kiln_mkdir_p(dir, 0755) < 0)
		die("%s", kiln_errmsg());
}

typedef struct tree {
	const char *name;
	char *dir;
	size_t files;
	uint64_t bytes;
	char *changed; /* the file the one-change re-save rewrites */
} tree;

/* 5,000 files, 117 MiB, log-normal sizes scaled to the total. */
static void gen_big(tree *t)
{
	enum { N = 5000 };
	const uint64_t total = 117ull << 20;
	uint64_t s = 0x1234567ull;
	double *raw = kiln_calloc(N, sizeof *raw), sum = 0;
	for (int i = 0; i < N; i++) {
		double u1 = rng_unit(&s) + 1e-12, u2 = rng_unit(&s);
		double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
		raw[i] = fmin(exp(log(4096.0) + 1.9 * z), 24.0 * (1 << 20));
		sum += raw[i];
	}
	size_t cap = 32u << 20;
	char *buf = kiln_malloc(cap);
	uint64_t written = 0;
	for (int i = 0; i < N; i++) {
		size_t n = i == N - 1 ? (size_t)(total - written)
				      : (size_t)(raw[i] * (double)total / sum);
		if (n > cap)
			n = cap;
		bool bin = rng_next(&s) % 20 == 0;
		(bin ? gen_binary : gen_text)(&s, buf, n);
		_cleanup_free_ char *d = kiln_asprintf("%s/pkg%02d/%s%d", t->dir, i % 40,
						       i % 3 ? "src/mod" : "lib/part", (i / 40) % 10);
		mkdirs(d);
		_cleanup_free_ char *p = kiln_asprintf("%s/f%04d.%s", d, i, bin ? "bin" : "js");
		write_file(p, buf, n);
		if (i == N / 2)
			t->changed = kiln_strdup(p);
		written += n;
	}
	t->files = N;
	t->bytes = written;
	free(buf);
	free(raw);
}

/* 50,000 files of 200 B – 8 KiB, 10 per directory. */
static void gen_small(tree *t)
{
	enum { N = 50000 };
	uint64_t s = 0x7654321ull;
	char buf[8192];
	uint64_t written = 0;
	for (int i = 0; i < N; i++) {
		size_t n = (size_t)exp(log(200.0) + rng_unit(&s) * (log(8192.0) - log(200.0)));
		gen_text(&s, buf, n);
		_cleanup_free_ char *d = kiln_asprintf("%s/node_modules/p%03d/%s/d%d", t->dir,
						       (i / 50) % 1000, (i / 10) % 2 ? "lib" : "dist",
						       (i / 10) % 5);
		if (i % 10 == 0)
			mkdirs(d);
		_cleanup_free_ char *p = kiln_asprintf("%s/f%05d.js", d, i);
		write_file(p, buf, n);
		if (i == N / 2)
			t->changed = kiln_strdup(p);
		written += n;
	}
	t->files = N;
	t->bytes = written;
}

/* ---- the baseline: tar and zstd ------------------------------------------------------------ */

static pid_t spawn_io(char *const argv[], int in, int out)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (in >= 0)
		posix_spawn_file_actions_adddup2(&fa, in, 0);
	if (out >= 0)
		posix_spawn_file_actions_adddup2(&fa, out, 1);
	pid_t pid;
	int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e)
		die("posix_spawn %s: %s", argv[0], strerror(e));
	return pid;
}

static void reap(pid_t pid, const char *what)
{
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("%s failed (wait status %d)", what, st);
}

static const char *sync_dir; /* the temporary directory */

/* Writes back what earlier runs left dirty, so that no run pays for another's writes. */
static void settle(void)
{
	int fd = open(sync_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || syncfs(fd) < 0)
		die("syncfs %s: %s", sync_dir, strerror(errno));
	close(fd);
}

/* a | b, timed from the first spawn to the last exit. */
static double pipeline(char *const a[], char *const b[])
{
	int p[2];
	settle();
	int64_t t0 = mono_ns();
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	pid_t pa = spawn_io(a, -1, p[1]);
	pid_t pb = spawn_io(b, p[0], -1);
	close(p[0]);
	close(p[1]);
	reap(pa, a[0]);
	reap(pb, b[0]);
	return (double)(mono_ns() - t0) / 1e9;
}

static double base_save(const char *dir, const char *out)
{
	char *tar[] = {"tar", "-cf", "-", "-C", (char *)dir, ".", NULL};
	char *zst[] = {"zstd", "-3", "-q", "-f", "-o", (char *)out, NULL};
	return pipeline(tar, zst);
}

static double base_restore(const char *in, const char *dir)
{
	char *zst[] = {"zstd", "-dc", (char *)in, NULL};
	char *tar[] = {"tar", "-xf", "-", "-C", (char *)dir, NULL};
	return pipeline(zst, tar);
}

/* ---- kiln: an in-process coordinator and agent over TCP loopback -------------------------- */

static kiln_cas_limits lim = KILN_CAS_LIMITS_INIT;

/* A coordinator (bus on tcp://127.0.0.1:0, its store in DIR/coordinator) and an agent that
   dials it, registered and idle; the agent's store is DIR/agent/cas. */
typedef struct pair {
	char *dir, *work;
	coord *c;
	agent *a;
} pair;

static void pair_start(pair *p, const char *dir)
{
	p->dir = kiln_strdup(dir);
	_cleanup_free_ char *data = kiln_asprintf("%s/coordinator", dir);
	p->work = kiln_asprintf("%s/agent", dir);
	mkdirs(data);
	mkdirs(p->work);
	bench_start(data, p->work, 0, 20000, &p->c, &p->a);
}

static void pair_stop(pair *p)
{
	agent_free(p->a);
	coord_free(p->c);
	free(p->dir);
	free(p->work);
	*p = (pair){0};
}

static kiln_cas *open_store(const char *root)
{
	kiln_cas *cas = NULL;
	if (kiln_cas_open(root, &lim, &cas) < 0)
		die("cas %s: %s", root, kiln_errmsg());
	return cas;
}

/* Sends every blob of digests the coordinator lacks, as an agent's save does. */
static int upload(agent *a, kiln_cas *cas, const kiln_strv *digests, agent_transfer_stats *st)
{
	return agent_blobs_upload(a, cas, digests, st);
}

/* What a save sent: blob frames in BlobPut messages, as agent_blobs_upload counts them. */
typedef struct sent {
	uint64_t blobs, bytes, digests; /* digests: asked about in BlobFindMissing */
	double local_s;                 /* of the save: building and storing locally */
} sent;

/* A save as the agent does it (agent/store.c): the manifest built into the agent's store
   (cas), saved, and every blob the coordinator lacks uploaded through it. */
static double kiln_save(pair *p, kiln_cas *cas, const char *dir, char hex[65], sent *out)
{
	settle();
	int64_t t0 = mono_ns();
	kiln_manifest *m = NULL;
	const char *paths[] = {"."};
	if (kiln_manifest_build(cas, dir, paths, 1, &m) < 0 || kiln_manifest_save(cas, m, hex) < 0)
		die("save %s: %s", dir, kiln_errmsg());
	double local = (double)(mono_ns() - t0) / 1e9;
	kiln_strv digests = {0};
	kiln_strv_push(&digests, hex);
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].type == KILN_ENTRY_FILE)
			kiln_strv_push(&digests, m->v[i].digest);
	agent_transfer_stats st = {0};
	if (upload(p->a, cas, &digests, &st) < 0)
		die("upload %s: %s", dir, kiln_errmsg());
	double s = (double)(mono_ns() - t0) / 1e9;
	*out = (sent){.blobs = st.blobs, .bytes = st.bytes, .digests = digests.n, .local_s = local};
	kiln_strv_free(&digests);
	kiln_manifest_free(m);
	return s;
}

/* A restore as the agent does it: the manifest, then every blob cas lacks, fetched from
   the coordinator; then the tree written into dir. *got: what was fetched. */
static double kiln_restore(pair *p, kiln_cas *cas, const char *hex, const char *dir,
			   agent_transfer_stats *got, double *fetch_s)
{
	settle();
	int64_t t0 = mono_ns();
	kiln_strv one = {0}, missing = {0};
	kiln_strv_push(&one, hex);
	agent_transfer_stats a = {0}, b = {0};
	kiln_manifest *m = NULL;
	if (agent_blobs_download(p->a, cas, &one, &a) < 0 || kiln_manifest_load(cas, hex, &m) < 0 ||
	    kiln_manifest_find_missing(cas, m, &missing) < 0 ||
	    agent_blobs_download(p->a, cas, &missing, &b) < 0)
		die("restore into %s: %s", dir, kiln_errmsg());
	*fetch_s = (double)(mono_ns() - t0) / 1e9;
	if (kiln_manifest_restore(cas, m, dir, NULL, NULL) < 0)
		die("restore into %s: %s", dir, kiln_errmsg());
	double s = (double)(mono_ns() - t0) / 1e9;
	got->blobs = a.blobs + b.blobs;
	got->bytes = a.bytes + b.bytes;
	kiln_strv_free(&one);
	kiln_strv_free(&missing);
	kiln_manifest_free(m);
	return s;
}

/* ---- checking a restore -------------------------------------------------------------------- */

/* Compares every file, directory and symlink of a with b (contents and permission bits);
   returns the number of differences and counts the entries. */
static size_t compare_trees(const char *a, const char *b, size_t *entries)
{
	DIR *d = opendir(a);
	if (!d)
		die("%s: %s", a, strerror(errno));
	size_t bad = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		_cleanup_free_ char *pa = kiln_asprintf("%s/%s", a, de->d_name);
		_cleanup_free_ char *pb = kiln_asprintf("%s/%s", b, de->d_name);
		struct stat sa, sb;
		(*entries)++;
		if (lstat(pa, &sa) < 0 || lstat(pb, &sb) < 0 ||
		    (sa.st_mode & 0777) != (sb.st_mode & 0777) ||
		    (sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
			bad++;
			continue;
		}
		if (S_ISDIR(sa.st_mode)) {
			bad += compare_trees(pa, pb, entries);
		} else if (S_ISREG(sa.st_mode)) {
			_cleanup_free_ char *x = NULL, *y = NULL;
			size_t xn = 0, yn = 0;
			if (kiln_read_file(pa, 64u << 20, &x, &xn) < 0 ||
			    kiln_read_file(pb, 64u << 20, &y, &yn) < 0 || xn != yn ||
			    memcmp(x, y, xn) != 0)
				bad++;
		}
	}
	closedir(d);
	return bad;
}

static void verify(const char *src, const char *dst, const char *what)
{
	size_t entries = 0, bad = compare_trees(src, dst, &entries);
	if (bad)
		die("%s: %zu of %zu entries differ from the source tree", what, bad, entries);
}

/* ---- measuring ----------------------------------------------------------------------------- */

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) < 0 ? 0 : (uint64_t)st.st_size;
}

typedef struct result {
	double save_base, save_kiln, cold_base, cold_kiln, warm_kiln, resave_s, change_s;
	double save_local, cold_fetch; /* medians of the parts */
	uint64_t tzst_bytes, cas_bytes, coord_bytes;
	sent save, resave, change;
	agent_transfer_stats cold, warm;
} result;

static bool goal(const char *tree, const char *what, double ratio, double max)
{
	bool ok = ratio <= max;
	printf("cache.%s.goal.%s %s %.3f <= %.2f\n", tree, what, ok ? "PASS" : "FAIL", ratio, max);
	return ok;
}

static bool run_tree(tree *t, const char *tmp, int reps)
{
	_cleanup_free_ char *tzst = kiln_asprintf("%s/%s.tar.zst", tmp, t->name);
	_cleanup_free_ char *out_tar = kiln_asprintf("%s/%s.out-tar", tmp, t->name);
	_cleanup_free_ char *out_kiln = kiln_asprintf("%s/%s.out-kiln", tmp, t->name);
	double sb[MAX_REPS], sk[MAX_REPS], cb[MAX_REPS], ck[MAX_REPS], wk[MAX_REPS];
	double sl[MAX_REPS], cf[MAX_REPS], unused;
	char hex[65] = "";
	result r = {0};
	/* Every timed run writes to a path nothing was ever deleted from, and everything is
	   removed only at the end: on this ext4 (no journal) creating inodes right after
	   deleting tens of thousands costs seconds (ext4's recently_deleted() scans), which
	   would land on whichever side happened to run after a deletion. Each save runs
	   against a coordinator and an agent of its own (started untimed), so that each
	   uploads everything. */
	fprintf(stderr, "bench_cache: %s: save\n", t->name);
	pair p = {0};
	kiln_cas *agent_store = NULL;
	for (int i = 0; i < reps; i++) {
		sb[i] = base_save(t->dir, tzst);
		if (p.c) {
			kiln_cas_close(agent_store);
			pair_stop(&p);
		}
		_cleanup_free_ char *pd = kiln_asprintf("%s/%s.pair.%d", tmp, t->name, i);
		pair_start(&p, pd);
		agent_store = open_store(p.work); /* the agent's store: WORK/cas */
		sk[i] = kiln_save(&p, agent_store, t->dir, hex, &r.save);
		sl[i] = r.save.local_s;
	}
	r.tzst_bytes = file_size(tzst);
	if (kiln_cas_total(agent_store, &r.cas_bytes, NULL) < 0)
		die("%s", kiln_errmsg());
	_cleanup_free_ char *coord_root = kiln_asprintf("%s/coordinator", p.dir);
	kiln_cas *cs = open_store(coord_root);
	uint64_t coord_blobs = 0;
	if (kiln_cas_total(cs, &r.coord_bytes, &coord_blobs) < 0)
		die("%s", kiln_errmsg());
	kiln_cas_close(cs);
	char hex2[65];
	r.resave_s = kiln_save(&p, agent_store, t->dir, hex2, &r.resave);
	if (strcmp(hex, hex2) != 0)
		die("%s: an unchanged re-save gave another manifest", t->name);

	/* cold: a fresh agent store per run, every blob fetched from the coordinator */
	fprintf(stderr, "bench_cache: %s: cold restore\n", t->name);
	_cleanup_free_ char *last = NULL;
	kiln_cas *cold = NULL;
	for (int i = 0; i < reps; i++) {
		_cleanup_free_ char *ot = kiln_asprintf("%s.%d", out_tar, i);
		_cleanup_free_ char *store = kiln_asprintf("%s/%s.cold-store.%d", tmp, t->name, i);
		free(last);
		last = kiln_asprintf("%s.%d", out_kiln, i);
		mkdirs(ot);
		cb[i] = base_restore(tzst, ot);
		kiln_cas_close(cold);
		cold = open_store(store);
		ck[i] = kiln_restore(&p, cold, hex, last, &r.cold, &cf[i]);
		if (r.cold.blobs != coord_blobs)
			die("%s: a cold restore fetched %llu blobs of the coordinator's %llu", t->name,
			    (unsigned long long)r.cold.blobs, (unsigned long long)coord_blobs);
	}
	verify(t->dir, last, "cold restore");
	/* warm: the same agent store, now holding every blob, into the directory it filled */
	fprintf(stderr, "bench_cache: %s: warm restore\n", t->name);
	for (int i = 0; i < reps; i++) {
		agent_transfer_stats w = {0};
		wk[i] = kiln_restore(&p, cold, hex, last, &w, &unused);
		r.warm.blobs += w.blobs;
		r.warm.bytes += w.bytes;
	}
	verify(t->dir, last, "warm restore");
	kiln_cas_close(cold);

	/* one changed file */
	_cleanup_free_ char *body = NULL;
	size_t blen = 0;
	if (kiln_read_file(t->changed, 64u << 20, &body, &blen) < 0)
		die("%s", kiln_errmsg());
	body[0] = body[0] == 'x' ? 'y' : 'x';
	write_file(t->changed, body, blen);
	r.change_s = kiln_save(&p, agent_store, t->dir, hex2, &r.change);
	kiln_cas_close(agent_store);
	pair_stop(&p);

	r.save_base = median(sb, reps);
	r.save_kiln = median(sk, reps);
	r.cold_base = median(cb, reps);
	r.cold_kiln = median(ck, reps);
	r.warm_kiln = median(wk, reps);
	r.save_local = median(sl, reps);
	r.cold_fetch = median(cf, reps);
	const char *n = t->name;
	printf("cache.%s.files %zu\n", n, t->files);
	printf("cache.%s.mib %.1f\n", n, (double)t->bytes / (1 << 20));
	printf("cache.%s.tar_zst_mib %.1f\n", n, (double)r.tzst_bytes / (1 << 20));
	printf("cache.%s.cas_mib %.1f\n", n, (double)r.cas_bytes / (1 << 20));
	printf("cache.%s.coordinator_mib %.1f\n", n, (double)r.coord_bytes / (1 << 20));
	printf("cache.%s.save.base_s %.3f\n", n, r.save_base);
	printf("cache.%s.save.kiln_s %.3f\n", n, r.save_kiln);
	printf("cache.%s.save.ratio %.3f\n", n, r.save_kiln / r.save_base);
	printf("cache.%s.save.local_s %.3f\n", n, r.save_local);
	printf("cache.%s.save.upload_s %.3f\n", n, r.save_kiln - r.save_local);
	printf("cache.%s.save.sent_blobs %llu\n", n, (unsigned long long)r.save.blobs);
	printf("cache.%s.save.sent_mib %.1f\n", n, (double)r.save.bytes / (1 << 20));
	printf("cache.%s.restore.base_s %.3f\n", n, r.cold_base);
	printf("cache.%s.cold.kiln_s %.3f\n", n, r.cold_kiln);
	printf("cache.%s.cold.ratio %.3f\n", n, r.cold_kiln / r.cold_base);
	printf("cache.%s.cold.fetch_s %.3f\n", n, r.cold_fetch);
	printf("cache.%s.cold.write_s %.3f\n", n, r.cold_kiln - r.cold_fetch);
	printf("cache.%s.cold.fetched_blobs %llu\n", n, (unsigned long long)r.cold.blobs);
	printf("cache.%s.cold.fetched_mib %.1f\n", n, (double)r.cold.bytes / (1 << 20));
	printf("cache.%s.warm.kiln_s %.3f\n", n, r.warm_kiln);
	printf("cache.%s.warm.ratio %.3f\n", n, r.warm_kiln / r.cold_base);
	printf("cache.%s.warm.fetched_bytes %llu\n", n, (unsigned long long)r.warm.bytes);
	printf("cache.%s.resave_unchanged.kiln_s %.3f\n", n, r.resave_s);
	printf("cache.%s.resave_unchanged.sent_blobs %llu\n", n, (unsigned long long)r.resave.blobs);
	printf("cache.%s.resave_unchanged.sent_bytes %llu\n", n, (unsigned long long)r.resave.bytes);
	printf("cache.%s.resave_one_changed.kiln_s %.3f\n", n, r.change_s);
	printf("cache.%s.resave_one_changed.sent_blobs %llu\n", n, (unsigned long long)r.change.blobs);
	printf("cache.%s.resave_one_changed.sent_bytes %llu\n", n, (unsigned long long)r.change.bytes);
	bool ok = goal(n, "save", r.save_kiln / r.save_base, GOAL_SAVE);
	ok &= goal(n, "cold", r.cold_kiln / r.cold_base, GOAL_COLD);
	ok &= goal(n, "warm", r.warm_kiln / r.cold_base, GOAL_WARM);
	bool w0 = r.warm.bytes == 0 && r.warm.blobs == 0;
	bool z = r.resave.bytes == 0 && r.resave.blobs == 0, one = r.change.blobs == 2;
	printf("cache.%s.goal.warm_fetches_nothing %s %llu bytes == 0\n", n, w0 ? "PASS" : "FAIL",
	       (unsigned long long)r.warm.bytes);
	printf("cache.%s.goal.resave_unchanged %s %llu bytes == 0\n", n, z ? "PASS" : "FAIL",
	       (unsigned long long)r.resave.bytes);
	printf("cache.%s.goal.resave_one_changed %s %llu blobs == 2 (the file's and the "
	       "manifest)\n",
	       n, one ? "PASS" : "FAIL", (unsigned long long)r.change.blobs);
	fflush(stdout);
	return ok && w0 && z && one;
}

static void usage(FILE *f)
{
	fputs("Usage: bench_cache [--only big|small] [--reps N] [--threads N] [--check] [--keep]\n"
	      "\n"
	      "Cache save and restore through kiln's CAS against tar | zstd -3, on two generated\n"
	      "trees (117 MiB in 5,000 files; 50,000 files of 200 B - 8 KiB).\n"
	      "\n"
	      "  --only T     only the tree T\n"
	      "  --reps N     runs per measurement, median taken (default 3)\n"
	      "  --threads N  the store's worker threads (default: the store's default)\n"
	      "  --check      exit 1 if a goal is missed\n"
	      "  --keep       keep the temporary directory\n",
	      f);
}

/* A whole number in [lo, hi], or -1. */
static int parse_int(const char *v, int lo, int hi)
{
	char *end;
	long n = v ? strtol(v, &end, 10) : -1;
	return v && *v && !*end && n >= lo && n <= hi ? (int)n : -1;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "bench_cache: watchdog: gave up\n";
	ssize_t w = write(2, msg, sizeof msg - 1);
	(void)w;
	_exit(3);
}

int main(int argc, char **argv)
{
	const char *only = NULL;
	int reps = 3;
	bool check = false, keep = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--only") && v && (!strcmp(v, "big") || !strcmp(v, "small")))
			only = v, i++;
		else if (!strcmp(a, "--reps") && parse_int(v, 1, MAX_REPS) > 0)
			reps = parse_int(v, 1, MAX_REPS), i++;
		else if (!strcmp(a, "--threads") && parse_int(v, 1, 16) > 0)
			lim.threads = parse_int(v, 1, 16), i++;
		else if (!strcmp(a, "--check"))
			check = true;
		else if (!strcmp(a, "--keep"))
			keep = true;
		else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	struct sigaction sa = {.sa_handler = on_alarm};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(WATCHDOG_S);

	_cleanup_free_ char *tmp = NULL;
	if (kiln_mkdtemp("kiln-bench-cache", &tmp) < 0)
		die("%s", kiln_errmsg());
	if (!keep)
		cleanup_dir = tmp;
	sync_dir = tmp;
	make_words();
	tree trees[2] = {{.name = "big"}, {.name = "small"}};
	void (*gen[2])(tree *) = {gen_big, gen_small};
#ifdef __OPTIMIZE__
	const char *optimized = "yes";
#else
	const char *optimized = "no";
#endif
	printf("# cache: kiln save/restore vs tar | zstd -3 on generated trees; every timed figure\n"
	       "# is the median of %d runs. An in-process coordinator and agent over TCP loopback:\n"
	       "# save = build into the agent's store + upload of what the coordinator lacks;\n"
	       "# cold = a fresh agent store fetching every blob from the coordinator, then the\n"
	       "# restore into an empty directory; warm = that store restoring into the directory\n"
	       "# it filled (nothing fetched); both against tar -x into an empty one. Page caches\n"
	       "# cannot be dropped: every run reads from a warm page cache. Before each timed run\n"
	       "# the file system is synced (syncfs, untimed); nothing is deleted until the end.\n",
	       reps);
	char load[64] = "?";
	FILE *lf = fopen("/proc/loadavg", "re");
	if (lf) {
		if (!fgets(load, sizeof load, lf))
			snprintf(load, sizeof load, "?");
		load[strcspn(load, "\n")] = '\0';
		fclose(lf);
	}
	printf("cache.env.loadavg_start %s\n", load);
	printf("cache.env.cpus %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("cache.env.optimized %s\n", optimized);
	printf("cache.env.fs %s\n", fs_name(tmp));
	printf("cache.env.threads %d\n", lim.threads);
	fflush(stdout);
	bool ok = true;
	for (int k = 0; k < 2; k++) {
		tree *t = &trees[k];
		if (only && strcmp(only, t->name) != 0)
			continue;
		t->dir = kiln_asprintf("%s/%s", tmp, t->name);
		mkdirs(t->dir);
		int64_t t0 = mono_ns();
		gen[k](t);
		printf("# %s: generated in %.1f s\n", t->name, (double)(mono_ns() - t0) / 1e9);
	}
	/* nothing is deleted before the end (see run_tree) */
	for (int k = 0; k < 2; k++) {
		tree *t = &trees[k];
		if (t->dir)
			ok &= run_tree(t, tmp, reps);
		free(t->dir);
		free(t->changed);
	}
	FILE *lf2 = fopen("/proc/loadavg", "re");
	if (lf2) {
		if (fgets(load, sizeof load, lf2)) {
			load[strcspn(load, "\n")] = '\0';
			printf("cache.env.loadavg_end %s\n", load);
		}
		fclose(lf2);
	}
	printf("cache.result %s\n", ok ? "PASS" : "FAIL");
	cleanup_dir = NULL;
	if (!keep)
		kiln_rm_rf(tmp);
	else
		fprintf(stderr, "bench_cache: kept %s\n", tmp);
	return check && !ok ? 1 : 0;
}
