/*
 * manifest — building, storing, checking and restoring the trees described
 * in manifest.h. Files are stored and restored by a small pool of threads
 * (the store's `threads` limit, the caller's thread included) since zstd and
 * SHA-256 on one core cannot keep up with `tar | zstd`, which runs two
 * processes; the store's mutex serialises only the database.
 *
 * Restoring into a directory that already holds the tree (a warm restore)
 * skips what is already there: after each restore the store keeps, per
 * target directory, a stat cache (ROOT/cas/stat/<sha256 of the target's real
 * path>) with the device, inode, size, mtime and ctime of every file it wrote
 * and the digest it wrote there. A file whose entry names the same digest and
 * whose lstat (through openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, O_PATH)
 * still shows all of those and the manifest's mode is left alone: any write,
 * chmod, rename over or replacement changes the ctime or the inode, which no
 * process can set back. A file whose ctime is not older than the stat cache
 * itself could have changed within one timestamp tick of being recorded
 * ("racily clean", as git calls it) and is rewritten.
 */
#include "common/manifest.h"
#include "common/cas_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <jansson.h>

static const char *const TYPE_NAMES[] = {"file", "dir", "symlink"};

void kiln_manifest_free(kiln_manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].path);
		free(m->v[i].target);
	}
	free(m->v);
	free(m);
}

void kiln_manifest_freep(kiln_manifest **m)
{
	kiln_manifest_free(*m);
}

static kiln_manifest_entry *push(kiln_manifest *m, char *path, kiln_entry_type type, uint32_t mode)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->v = kiln_realloc(m->v, m->cap * sizeof *m->v);
	}
	kiln_manifest_entry *e = &m->v[m->n++];
	*e = (kiln_manifest_entry){.path = path, .type = type, .mode = mode};
	return e;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const kiln_manifest_entry *)a)->path, ((const kiln_manifest_entry *)b)->path);
}

/* The entry whose path is the first len bytes of path, or NULL; m is sorted. */
static const kiln_manifest_entry *find_entry(const kiln_manifest *m, const char *path, size_t len)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *p = m->v[mid].path;
		int c = strncmp(path, p, len);
		if (c == 0 && p[len] != '\0')
			c = -1;
		if (c == 0)
			return &m->v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* ---- checking ---------------------------------------------------------------------------- */

static int check_path(const char *p, const kiln_cas_limits *lim)
{
	size_t len = strlen(p);
	if (len == 0)
		return kiln_err(EINVAL, "empty path");
	if (len > lim->max_path_len)
		return kiln_err(ENAMETOOLONG, "path longer than %u bytes", lim->max_path_len);
	if (p[0] == '/')
		return kiln_err(EINVAL, "absolute path");
	uint32_t depth = 0;
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 0 || (n == 1 && s[0] == '.'))
			return kiln_err(EINVAL, "path is not canonical (empty or '.' component)");
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return kiln_err(EINVAL, "path has a '..' component");
		if (++depth > lim->max_depth)
			return kiln_err(EINVAL, "path deeper than %u components", lim->max_depth);
		s += n;
		if (*s == '/' && *++s == '\0')
			return kiln_err(EINVAL, "path ends with '/'");
	}
	return 0;
}

/* Refuses a symlink whose target, resolved from its directory, leaves the tree or passes
   through another symlink of the manifest (whose own target could lead anywhere). */
static int check_symlink(const kiln_manifest *m, const kiln_manifest_entry *e,
			 const kiln_cas_limits *lim)
{
	const char *t = e->target;
	if (!t || !*t)
		return kiln_err(EINVAL, "symlink without a target");
	if (strlen(t) > lim->max_path_len)
		return kiln_err(ENAMETOOLONG, "symlink target longer than %u bytes",
				lim->max_path_len);
	if (t[0] == '/')
		return kiln_err(EPERM, "symlink target '%.200s' is absolute", t);
	kiln_buf cur = {0};
	const char *slash = strrchr(e->path, '/');
	if (slash)
		kiln_buf_append(&cur, e->path, (size_t)(slash - e->path));
	int r = 0;
	for (const char *s = t; *s && r == 0;) {
		size_t n = strcspn(s, "/");
		bool dot = n == 0 || (n == 1 && s[0] == '.'), dotdot = n == 2 && !strncmp(s, "..", 2);
		const kiln_manifest_entry *via = cur.len ? find_entry(m, cur.p, cur.len) : NULL;
		if (!dot && via && via->type == KILN_ENTRY_SYMLINK)
			r = kiln_err(EPERM, "symlink target '%.200s' passes through symlink '%s'", t,
				     via->path);
		else if (dotdot && cur.len == 0)
			r = kiln_err(EPERM, "symlink target '%.200s' escapes the tree", t);
		else if (dotdot) {
			char *last = memrchr(cur.p, '/', cur.len);
			cur.len = last ? (size_t)(last - cur.p) : 0;
			cur.p[cur.len] = '\0';
		} else if (!dot) {
			if (cur.len)
				kiln_buf_append(&cur, "/", 1);
			kiln_buf_append(&cur, s, n);
		}
		s += n;
		if (*s == '/')
			s++;
	}
	kiln_buf_free(&cur);
	return r;
}

int kiln_manifest_check(kiln_manifest *m, const kiln_cas_limits *lim)
{
	if (m->n > lim->max_entries)
		return kiln_err(E2BIG, "manifest has %zu entries; the limit is %llu", m->n,
				(unsigned long long)lim->max_entries);
	if (m->n)
		qsort(m->v, m->n, sizeof *m->v, cmp_entry);
	uint64_t total = 0;
	for (size_t i = 0; i < m->n; i++) {
		const kiln_manifest_entry *e = &m->v[i];
		int r = check_path(e->path, lim);
		if (r == 0 && i > 0 && strcmp(e->path, m->v[i - 1].path) == 0)
			r = kiln_err(EINVAL, "duplicate entry");
		if (r == 0 && e->mode > 0777)
			r = kiln_err(EPERM, "mode %o has setuid/setgid/sticky or file-type bits",
				     e->mode);
		if (r == 0 && e->type == KILN_ENTRY_FILE) {
			if (!kiln_cas_digest_valid(e->digest))
				r = kiln_err(EINVAL, "bad digest");
			else if (e->size > lim->max_blob_size)
				r = kiln_err(EFBIG, "file of %llu bytes is over the limit",
					     (unsigned long long)e->size);
			else if ((total += e->size) > lim->max_total_size)
				r = kiln_err(EFBIG, "files add up to more than %llu bytes",
					     (unsigned long long)lim->max_total_size);
		}
		if (r == 0 && e->type == KILN_ENTRY_SYMLINK)
			r = check_symlink(m, e, lim);
		for (const char *s = e->path; r == 0 && (s = strchr(s, '/')) != NULL; s++) {
			const kiln_manifest_entry *up = find_entry(m, e->path, (size_t)(s - e->path));
			if (up && up->type != KILN_ENTRY_DIR)
				r = kiln_err(EPERM, "is below '%s', which is a %s", up->path,
					     TYPE_NAMES[up->type]);
		}
		if (r < 0) {
			kiln_err_prefix("manifest entry '%.300s'", e->path);
			return r;
		}
	}
	return 0;
}

/* ---- JSON -------------------------------------------------------------------------------- */

char *kiln_manifest_to_json(const kiln_manifest *m)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < m->n; i++) {
		const kiln_manifest_entry *e = &m->v[i];
		json_t *o = json_object();
		json_object_set_new(o, "path", json_string(e->path));
		json_object_set_new(o, "type", json_string(TYPE_NAMES[e->type]));
		if (e->type != KILN_ENTRY_SYMLINK)
			json_object_set_new(o, "mode", json_integer(e->mode));
		if (e->type == KILN_ENTRY_FILE) {
			json_object_set_new(o, "size", json_integer((json_int_t)e->size));
			json_object_set_new(o, "digest", json_string(e->digest));
		}
		if (e->type == KILN_ENTRY_SYMLINK)
			json_object_set_new(o, "target", json_string(e->target));
		json_array_append_new(arr, o);
	}
	json_t *root = json_pack("{s:i, s:o}", "version", 1, "entries", arr);
	char *s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!s)
		abort(); /* only on OOM: every string came from a valid entry */
	return s;
}

static int entry_from_json(kiln_manifest *m, json_t *o)
{
	const char *path = json_string_value(json_object_get(o, "path"));
	const char *type = json_string_value(json_object_get(o, "type"));
	if (!json_is_object(o) || !path || !type)
		return kiln_err(EINVAL, "manifest entry %zu: needs a path and a type", m->n);
	int t = -1;
	for (int i = 0; i < (int)KILN_ARRAY_SIZE(TYPE_NAMES); i++)
		if (strcmp(type, TYPE_NAMES[i]) == 0)
			t = i;
	if (t < 0)
		return kiln_err(EINVAL, "manifest entry '%.300s': unsupported type '%.40s'", path,
				type);
	json_t *mode = json_object_get(o, "mode"), *size = json_object_get(o, "size");
	json_int_t mv = json_is_integer(mode) ? json_integer_value(mode) : -1;
	json_int_t sv = json_is_integer(size) ? json_integer_value(size) : -1;
	if (t != KILN_ENTRY_SYMLINK && (mv < 0 || mv > 07777777))
		return kiln_err(EINVAL, "manifest entry '%.300s': bad mode", path);
	kiln_manifest_entry *e = push(m, kiln_strdup(path), (kiln_entry_type)t,
				      t == KILN_ENTRY_SYMLINK ? 0777 : (uint32_t)mv);
	if (t == KILN_ENTRY_FILE) {
		const char *d = json_string_value(json_object_get(o, "digest"));
		if (sv < 0 || !d || !kiln_cas_digest_valid(d))
			return kiln_err(EINVAL, "manifest entry '%.300s': bad size or digest",
					path);
		e->size = (uint64_t)sv;
		memcpy(e->digest, d, 65);
	} else if (t == KILN_ENTRY_SYMLINK) {
		const char *tg = json_string_value(json_object_get(o, "target"));
		if (!tg)
			return kiln_err(EINVAL, "manifest entry '%.300s': symlink without target",
					path);
		e->target = kiln_strdup(tg);
	}
	return 0;
}

int kiln_manifest_from_json(const char *json, size_t len, const kiln_cas_limits *lim,
			    kiln_manifest **out)
{
	if (len > lim->max_manifest_size)
		return kiln_err(EFBIG, "manifest of %zu bytes is over the limit", len);
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return kiln_err(EINVAL, "manifest: %s (line %d)", jerr.text, jerr.line);
	json_t *arr = json_object_get(root, "entries");
	int r = 0;
	if (json_integer_value(json_object_get(root, "version")) != 1 || !json_is_array(arr))
		r = kiln_err(EINVAL, "manifest: not a version 1 manifest");
	else if (json_array_size(arr) > lim->max_entries)
		r = kiln_err(E2BIG, "manifest has %zu entries; the limit is %llu",
			     json_array_size(arr), (unsigned long long)lim->max_entries);
	kiln_manifest *m = kiln_calloc(1, sizeof *m);
	for (size_t i = 0; r == 0 && i < json_array_size(arr); i++)
		r = entry_from_json(m, json_array_get(arr, i));
	json_decref(root);
	if (r == 0)
		r = kiln_manifest_check(m, lim);
	if (r < 0) {
		kiln_manifest_free(m);
		return r;
	}
	*out = m;
	return 0;
}

int kiln_manifest_save(kiln_cas *cas, const kiln_manifest *m, char out_hex[65])
{
	_cleanup_free_ char *s = kiln_manifest_to_json(m);
	int r = kiln_cas_put_buf(cas, s, strlen(s), out_hex);
	return r < 0 ? r : 0;
}

int kiln_manifest_load(kiln_cas *cas, const char *hex, kiln_manifest **out)
{
	_cleanup_free_ char *s = NULL;
	size_t len = 0;
	int r = kiln_cas_get_buf(cas, hex, kiln_cas_limits_get(cas)->max_manifest_size, &s, &len);
	if (r < 0) {
		kiln_err_prefix("manifest %s", hex);
		return r;
	}
	return kiln_manifest_from_json(s, len, kiln_cas_limits_get(cas), out);
}

static int cmp_digest_ptr(const void *a, const void *b)
{
	return memcmp(*(const char *const *)a, *(const char *const *)b, 64);
}

int kiln_manifest_find_missing(kiln_cas *cas, const kiln_manifest *m, kiln_strv *out)
{
	/* into a fresh store everything is missing: repeats are found by sorting, not by a
	   search per digest */
	const char **miss = kiln_calloc(m->n + 1, sizeof *miss);
	size_t n = 0;
	for (size_t i = 0; i < m->n; i++) {
		const kiln_manifest_entry *e = &m->v[i];
		if (e->type == KILN_ENTRY_FILE && kiln_cas_has(cas, e->digest) <= 0)
			miss[n++] = e->digest;
	}
	if (n > 1)
		qsort(miss, n, sizeof *miss, cmp_digest_ptr);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || memcmp(miss[i], miss[i - 1], 64) != 0)
			kiln_strv_push(out, miss[i]);
	free(miss);
	return 0;
}

/* ---- a pool of threads over an index range ------------------------------------------------- */

typedef int (*work_fn)(void *ud, size_t i);

typedef struct pool {
	work_fn fn;
	void *ud;
	size_t n;
	atomic_size_t next;
	atomic_int err;
	pthread_mutex_t mu;
	char *msg; /* the first failure's message: error messages are per thread */
} pool;

static void *pool_worker(void *arg)
{
	pool *p = arg;
	enum { STRIDE = 128 }; /* neighbours share a directory: keep them on one thread, as
				    two threads creating in one directory contend for its lock */
	for (;;) {
		size_t i = atomic_fetch_add(&p->next, STRIDE);
		for (size_t j = i; j < i + STRIDE && j < p->n; j++) {
			if (atomic_load(&p->err))
				return NULL;
			int r = p->fn(p->ud, j);
			if (r < 0) {
				pthread_mutex_lock(&p->mu);
				if (!p->msg) {
					p->msg = kiln_strdup(kiln_errmsg());
					atomic_store(&p->err, r);
				}
				pthread_mutex_unlock(&p->mu);
				return NULL;
			}
		}
		if (i + STRIDE >= p->n)
			return NULL;
	}
}

/* Runs fn(ud, i) for i in [0, n) on `threads` threads, the caller's included. */
static int pool_run(int threads, size_t n, work_fn fn, void *ud)
{
	pool p = {.fn = fn, .ud = ud, .n = n};
	pthread_mutex_init(&p.mu, NULL);
	pthread_t th[15];
	int started = 0;
	int want = threads - 1 < 15 ? threads - 1 : 15;
	for (int i = 0; i < want && (size_t)(i + 1) * 16 < n; i++)
		if (pthread_create(&th[started], NULL, pool_worker, &p) == 0)
			started++;
	pool_worker(&p);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p.mu);
	int r = atomic_load(&p.err);
	if (r < 0)
		kiln_err(r, "%s", p.msg);
	free(p.msg);
	return r;
}

/* ---- building ------------------------------------------------------------------------------ */

typedef struct build {
	kiln_cas *cas;
	kiln_manifest *m;
	int rootfd;
	const kiln_cas_limits *lim;
	size_t *files; /* indexes of file entries, for the pool */
} build;

static int walk(build *b, char *rel, uint32_t depth)
{
	struct stat st;
	if (fstatat(b->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		int r = kiln_err(errno, "%s: %s", rel, strerror(errno));
		free(rel);
		return r;
	}
	if (b->m->n >= b->lim->max_entries || depth > b->lim->max_depth) {
		free(rel);
		return kiln_err(E2BIG, "more entries or depth than the limits allow");
	}
	uint32_t mode = st.st_mode & 0777;
	if (S_ISREG(st.st_mode)) {
		push(b->m, rel, KILN_ENTRY_FILE, mode)->size = (uint64_t)st.st_size;
	} else if (S_ISLNK(st.st_mode)) {
		char tgt[4097];
		ssize_t n = readlinkat(b->rootfd, rel, tgt, sizeof tgt - 1);
		if (n < 0) {
			int r = kiln_err(errno, "%s: %s", rel, strerror(errno));
			free(rel);
			return r;
		}
		tgt[n] = '\0';
		push(b->m, rel, KILN_ENTRY_SYMLINK, 0777)->target = kiln_strdup(tgt);
	} else if (S_ISDIR(st.st_mode)) {
		int fd = openat(b->rootfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d = fd < 0 ? NULL : fdopendir(fd);
		if (!d) {
			int r = kiln_err(errno, "%s: %s", rel, strerror(errno));
			if (fd >= 0)
				close(fd);
			free(rel);
			return r;
		}
		bool top = strcmp(rel, ".") == 0;
		if (!top)
			push(b->m, kiln_strdup(rel), KILN_ENTRY_DIR, mode);
		struct dirent *de;
		int r = 0;
		while (r == 0 && (de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			r = walk(b, top ? kiln_strdup(de->d_name)
					: kiln_asprintf("%s/%s", rel, de->d_name),
				 depth + 1);
		}
		closedir(d);
		free(rel);
		return r;
	} else {
		free(rel); /* sockets, fifos, devices: not part of a cache */
	}
	return 0;
}

static int store_one(void *ud, size_t i)
{
	build *b = ud;
	kiln_manifest_entry *e = &b->m->v[b->files[i]];
	int fd = openat(b->rootfd, e->path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", e->path, strerror(errno));
	int r = kiln_cas_put_fd(b->cas, fd, e->digest, &e->size);
	close(fd);
	if (r < 0)
		kiln_err_prefix("%s", e->path);
	return r;
}

/* "./a/b/" -> "a/b"; "" or "." -> "."; refuses ".." and absolute paths. */
static int input_path(const char *p, char **out)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		n--;
	if (n == 0 || (n == 1 && p[0] == '.')) {
		*out = kiln_strdup(".");
		return 0;
	}
	*out = strndup(p, n);
	if (!*out)
		abort();
	kiln_cas_limits lim = KILN_CAS_LIMITS_INIT;
	int r = check_path(*out, &lim);
	if (r < 0) {
		kiln_err_prefix("path '%.300s'", p);
		free(*out);
	}
	return r;
}

int kiln_manifest_build(kiln_cas *cas, const char *root, const char *const *paths, size_t npaths,
			kiln_manifest **out)
{
	build b = {.cas = cas, .lim = kiln_cas_limits_get(cas)};
	b.rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b.rootfd < 0)
		return kiln_err(errno, "%s: %s", root, strerror(errno));
	b.m = kiln_calloc(1, sizeof *b.m);
	int r = 0;
	for (size_t i = 0; r == 0 && i < npaths; i++) {
		char *rel = NULL;
		r = input_path(paths[i], &rel);
		if (r == 0)
			r = walk(&b, rel, 0);
	}
	/* overlapping inputs ("a" and "a/b") list some entries twice */
	if (b.m->n)
		qsort(b.m->v, b.m->n, sizeof *b.m->v, cmp_entry);
	size_t k = 0;
	for (size_t i = 0; i < b.m->n; i++) {
		if (k > 0 && strcmp(b.m->v[k - 1].path, b.m->v[i].path) == 0) {
			free(b.m->v[i].path);
			free(b.m->v[i].target);
		} else {
			b.m->v[k++] = b.m->v[i];
		}
	}
	b.m->n = k;
	b.files = kiln_calloc(b.m->n, sizeof *b.files);
	size_t nfiles = 0;
	for (size_t i = 0; i < b.m->n; i++)
		if (b.m->v[i].type == KILN_ENTRY_FILE)
			b.files[nfiles++] = i;
	if (r == 0)
		r = kiln_cas_batch_begin(cas);
	if (r == 0) {
		r = pool_run(b.lim->threads, nfiles, store_one, &b);
		int c = kiln_cas_batch_end(cas);
		r = r < 0 ? r : c;
	}
	free(b.files);
	close(b.rootfd);
	if (r < 0) {
		kiln_manifest_free(b.m);
		return r;
	}
	*out = b.m;
	return 0;
}

/* ---- restoring ----------------------------------------------------------------------------- */

/* openat() that never follows a symlink nor leaves rootfd: openat2 where the kernel has it,
   else one O_NOFOLLOW component at a time. path is canonical (checked). */
static int open_beneath(int rootfd, const char *path, int flags, mode_t mode)
{
	static atomic_int no_openat2;
	if (!atomic_load(&no_openat2)) {
		struct open_how how = {.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
				       .mode = (flags & O_CREAT) ? mode : 0,
				       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
						  RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
		long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
			return fd < 0 ? -errno : (int)fd;
		if (errno == ENOSYS)
			atomic_store(&no_openat2, 1);
	}
	int cur = rootfd;
	const char *s = path;
	for (;;) {
		size_t n = strcspn(s, "/");
		char comp[NAME_MAX + 1];
		if (n > NAME_MAX) {
			if (cur != rootfd)
				close(cur);
			return -ENAMETOOLONG;
		}
		memcpy(comp, s, n);
		comp[n] = '\0';
		bool last = s[n] == '\0';
		int fd = last ? openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode)
			      : openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		if (cur != rootfd)
			close(cur);
		if (fd < 0)
			return -e;
		if (last)
			return fd;
		cur = fd;
		s += n + 1;
	}
}

/* Splits path into its directory (opened beneath rootfd) and *base. */
static int open_parent(int rootfd, const char *path, const char **base)
{
	const char *slash = strrchr(path, '/');
	*base = slash ? slash + 1 : path;
	if (!slash) {
		int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	_cleanup_free_ char *dir = strndup(path, (size_t)(slash - path));
	return open_beneath(rootfd, dir, O_PATH | O_DIRECTORY, 0);
}

static int mkdir_one(int rootfd, const char *path)
{
	const char *base;
	int pfd = open_parent(rootfd, path, &base);
	if (pfd < 0)
		return pfd;
	int r = mkdirat(pfd, base, 0755) < 0 && errno != EEXIST ? -errno : 0;
	close(pfd);
	return r;
}

/* mkdir -p of path's directories (and of path itself if `self`), beneath rootfd. */
static int make_dirs(int rootfd, const char *path, bool self)
{
	_cleanup_free_ char *p = kiln_strdup(path);
	if (!self) {
		char *slash = strrchr(p, '/');
		if (!slash)
			return 0;
		*slash = '\0';
	}
	int r = mkdir_one(rootfd, p); /* usually the parent exists already */
	for (char *s = p; r == -ENOENT; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		bool end = *s == '\0';
		*s = '\0';
		int k = mkdir_one(rootfd, p);
		if (k < 0 || end)
			return k;
		*s = '/';
	}
	return r;
}

/* Unlinks whatever non-directory is at path, beneath rootfd. */
static int unlink_beneath(int rootfd, const char *path)
{
	const char *base;
	int pfd = open_parent(rootfd, path, &base);
	if (pfd < 0)
		return pfd;
	int r = unlinkat(pfd, base, 0) < 0 && errno != ENOENT ? -errno : 0;
	close(pfd);
	return r;
}

/* ---- the stat cache of a restore target ---------------------------------------------------- */

typedef struct statrec {
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
	char digest[64];
	uint32_t pathlen; /* the path follows the record in the file */
} statrec;

#define STAT_MAGIC "KILNSTAT1\n"

typedef struct statcache {
	char *buf; /* the file as read */
	const statrec **rec; /* sorted by path, as the manifest is */
	size_t n;
	struct timespec written; /* the cache file's mtime */
} statcache;

static void statcache_free(statcache *sc)
{
	free(sc->buf);
	free(sc->rec);
}

static char *statcache_path(kiln_cas *cas, const char *dir)
{
	char real[PATH_MAX], hex[65];
	if (!realpath(dir, real))
		return NULL;
	kiln_sha256_hex(real, strlen(real), hex);
	return kiln_asprintf("%s/stat/%s", kiln_cas_dir(cas), hex);
}

/* Loads the stat cache at path; a missing or malformed one is an empty one. */
static void statcache_load(const char *path, uint64_t max, statcache *sc)
{
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	struct stat st;
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > max || st.st_size < 24) {
		close(fd);
		return;
	}
	size_t len = (size_t)st.st_size, got = 0;
	sc->buf = kiln_malloc(len);
	ssize_t k = 1;
	while (got < len && (k = read(fd, sc->buf + got, len - got)) > 0)
		got += (size_t)k;
	close(fd);
	uint64_t n = 0;
	if (got == len && memcmp(sc->buf, STAT_MAGIC, 10) == 0)
		memcpy(&n, sc->buf + 16, 8);
	size_t off = 24; /* records are 8-byte aligned from here (buf is malloc'd) */
	if (n && n <= (len - off) / sizeof(statrec))
		sc->rec = kiln_calloc(n, sizeof *sc->rec);
	for (uint64_t i = 0; sc->rec && i < n; i++) {
		const statrec *r = (const statrec *)(sc->buf + off); /* 8-byte aligned: see write */
		if (len - off < sizeof *r || len - off - sizeof *r < r->pathlen)
			break;
		sc->rec[sc->n++] = r;
		off += (sizeof *r + r->pathlen + 7) & ~(size_t)7;
	}
	sc->written = st.st_mtim;
}

static int cmp_rec_path(const char *path, const statrec *r)
{
	size_t pl = strlen(path);
	int c = memcmp(path, r + 1, pl < r->pathlen ? pl : r->pathlen);
	return c ? c : pl < r->pathlen ? -1 : pl > r->pathlen;
}

static const statrec *statcache_find(const statcache *sc, const char *path)
{
	size_t lo = 0, hi = sc->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_rec_path(path, sc->rec[mid]);
		if (c == 0)
			return sc->rec[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static void rec_fill(statrec *r, const struct stat *st, const char *digest)
{
	*r = (statrec){.dev = st->st_dev, .ino = st->st_ino, .size = (uint64_t)st->st_size,
		       .mtime_s = st->st_mtim.tv_sec, .mtime_ns = st->st_mtim.tv_nsec,
		       .ctime_s = st->st_ctim.tv_sec, .ctime_ns = st->st_ctim.tv_nsec};
	memcpy(r->digest, digest, 64);
}

static bool before(int64_t s, int64_t ns, const struct timespec *t)
{
	return s < t->tv_sec || (s == t->tv_sec && ns < t->tv_nsec);
}

typedef struct restore {
	kiln_cas *cas;
	kiln_manifest *m;
	int rootfd;
	size_t *files;
	int umask; /* -1 if unknown */
	statcache old;
	statrec *now; /* per file: what it is after this restore (valid where done[i]) */
	bool *done;
	atomic_size_t written;
} restore;

/* The process's umask, from /proc (reading it with umask() would race with other threads). */
static int read_umask(void)
{
	_cleanup_free_ char *s = NULL;
	size_t n = 0;
	if (kiln_read_file("/proc/self/status", 1 << 16, &s, &n) < 0)
		return -1;
	const char *u = strstr(s, "\nUmask:");
	return u ? (int)strtol(u + 8, NULL, 8) : -1;
}

/* 1 if path holds what the stat cache says this restore wrote there, with e's digest and mode. */
static int unchanged(restore *rs, const kiln_manifest_entry *e, statrec *now)
{
	const statrec *r = statcache_find(&rs->old, e->path);
	if (!r || memcmp(r->digest, e->digest, 64) != 0 || r->size != e->size ||
	    !before(r->ctime_s, r->ctime_ns, &rs->old.written))
		return 0;
	int fd = open_beneath(rs->rootfd, e->path, O_PATH, 0);
	if (fd < 0)
		return 0;
	struct stat st;
	int same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == e->mode &&
		   st.st_dev == r->dev && st.st_ino == r->ino && (uint64_t)st.st_size == r->size &&
		   st.st_mtim.tv_sec == r->mtime_s && st.st_mtim.tv_nsec == r->mtime_ns &&
		   st.st_ctim.tv_sec == r->ctime_s && st.st_ctim.tv_nsec == r->ctime_ns;
	close(fd);
	if (same)
		*now = *r;
	return same;
}

/* Writes the stat cache of this restore (every file of m). */
static int statcache_save(const char *path, restore *rs, size_t nfiles)
{
	kiln_buf b = {0};
	uint64_t n = 0;
	static const char pad[8];
	kiln_buf_append(&b, STAT_MAGIC, 10);
	kiln_buf_append(&b, pad, 6);
	kiln_buf_append(&b, &n, 8);
	for (size_t i = 0; i < nfiles; i++) {
		if (!rs->done[i])
			continue;
		const char *p = rs->m->v[rs->files[i]].path;
		statrec r = rs->now[i];
		r.pathlen = (uint32_t)strlen(p);
		kiln_buf_append(&b, &r, sizeof r);
		kiln_buf_append(&b, p, r.pathlen);
		kiln_buf_append(&b, pad, (8 - (sizeof r + r.pathlen) % 8) % 8);
		n++;
	}
	memcpy(b.p + 16, &n, 8);
	_cleanup_free_ char *dir = kiln_strdup(path);
	*strrchr(dir, '/') = '\0';
	int r = kiln_mkdir_p(dir, 0700);
	if (r == 0)
		r = kiln_write_file_atomic(path, b.p, b.len, 0600);
	kiln_buf_free(&b);
	return r;
}

/* Creates path as a new empty file (replacing a file or symlink already there). */
static int create_file(int rootfd, const char *path, mode_t mode)
{
	for (int tries = 0;; tries++) {
		int fd = open_beneath(rootfd, path, O_WRONLY | O_CREAT | O_EXCL, mode);
		if (fd >= 0 || tries == 2)
			return fd;
		int r = 0;
		if (fd == -ENOENT)
			r = make_dirs(rootfd, path, false);
		else if (fd == -EEXIST || fd == -ELOOP)
			r = unlink_beneath(rootfd, path);
		else
			return fd;
		if (r < 0)
			return r;
	}
}

static int restore_file(void *ud, size_t i)
{
	restore *rs = ud;
	const kiln_manifest_entry *e = &rs->m->v[rs->files[i]];
	if (rs->old.n && unchanged(rs, e, &rs->now[i])) {
		rs->done[i] = true;
		return 0;
	}
	atomic_fetch_add(&rs->written, 1);
	/* created with its mode, so that fchmod is needed only where the umask takes bits off */
	int fd = create_file(rs->rootfd, e->path, (mode_t)e->mode);
	if (fd < 0)
		return kiln_err(-fd, "cannot create '%.300s': %s", e->path, strerror(-fd));
	int64_t n = kiln_cas_get_to_fd(rs->cas, e->digest, fd, e->size);
	int r = n < 0 ? (int)n : 0;
	if (r == 0 && (uint64_t)n != e->size)
		r = kiln_err(EBADMSG, "blob %s has %lld bytes, the manifest says %llu", e->digest,
			     (long long)n, (unsigned long long)e->size);
	if (r == 0 && (rs->umask < 0 || (e->mode & ~(uint32_t)rs->umask) != e->mode) &&
	    fchmod(fd, e->mode) < 0)
		r = kiln_err(errno, "chmod: %s", strerror(errno));
	struct stat st;
	if (r == 0 && fstat(fd, &st) == 0) {
		rec_fill(&rs->now[i], &st, e->digest);
		rs->done[i] = true;
	}
	if (close(fd) < 0 && r == 0)
		r = kiln_err(errno, "close: %s", strerror(errno));
	if (r < 0) {
		unlink_beneath(rs->rootfd, e->path);
		kiln_err_prefix("restoring '%.300s'", e->path);
	}
	return r;
}

static int restore_symlink(int rootfd, const kiln_manifest_entry *e)
{
	int r = make_dirs(rootfd, e->path, false);
	for (int tries = 0; r == 0 && tries < 2; tries++) {
		const char *base;
		int pfd = open_parent(rootfd, e->path, &base);
		if (pfd < 0) {
			r = pfd;
			break;
		}
		r = symlinkat(e->target, pfd, base) < 0 ? -errno : 0;
		if (r == -EEXIST && tries == 0)
			r = unlinkat(pfd, base, 0) < 0 ? -errno : 0;
		else
			tries = 2;
		close(pfd);
	}
	return r < 0 ? kiln_err(-r, "cannot create symlink '%.300s': %s", e->path, strerror(-r))
		     : 0;
}

static int fetch_missing(kiln_cas *cas, kiln_manifest *m, kiln_fetch_fn fetch, void *ud)
{
	kiln_strv missing = {0};
	int r = kiln_manifest_find_missing(cas, m, &missing);
	for (size_t i = 0; r == 0 && i < missing.n; i++) {
		if (!fetch)
			r = kiln_err(ENOENT, "blob %s is missing", missing.v[i]);
		else if ((r = fetch(ud, cas, missing.v[i])) >= 0)
			r = kiln_cas_has(cas, missing.v[i]) > 0
				    ? 0
				    : kiln_err(ENOENT, "blob %s was not fetched", missing.v[i]);
	}
	kiln_strv_free(&missing);
	return r < 0 ? r : 0;
}

int kiln_manifest_restore(kiln_cas *cas, kiln_manifest *m, const char *dir, kiln_fetch_fn fetch,
			  void *ud)
{
	int r = kiln_manifest_check(m, kiln_cas_limits_get(cas));
	if (r == 0)
		r = fetch_missing(cas, m, fetch, ud);
	if (r == 0)
		r = kiln_mkdir_p(dir, 0755);
	if (r < 0)
		return r;
	restore rs = {.cas = cas, .m = m, .umask = read_umask()};
	rs.rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rs.rootfd < 0)
		return kiln_err(errno, "%s: %s", dir, strerror(errno));
	_cleanup_free_ char *scpath = statcache_path(cas, dir);
	statcache_load(scpath, kiln_cas_limits_get(cas)->max_manifest_size, &rs.old);
	rs.now = kiln_calloc(m->n ? m->n : 1, sizeof *rs.now);
	rs.done = kiln_calloc(m->n ? m->n : 1, sizeof *rs.done);
	/* directories first (sorted, so parents come first), then files, then symlinks */
	rs.files = kiln_calloc(m->n, sizeof *rs.files);
	size_t nfiles = 0;
	for (size_t i = 0; r == 0 && i < m->n; i++) {
		if (m->v[i].type == KILN_ENTRY_FILE)
			rs.files[nfiles++] = i;
		if (m->v[i].type == KILN_ENTRY_DIR && (r = make_dirs(rs.rootfd, m->v[i].path, true)))
			r = kiln_err(-r, "cannot create directory '%.300s': %s", m->v[i].path,
				     strerror(-r));
	}
	if (r == 0 && (r = kiln_cas_batch_begin(cas)) == 0) {
		r = pool_run(kiln_cas_limits_get(cas)->threads, nfiles, restore_file, &rs);
		int c = kiln_cas_batch_end(cas);
		r = r < 0 ? r : c;
	}
	for (size_t i = 0; r == 0 && i < m->n; i++)
		if (m->v[i].type == KILN_ENTRY_SYMLINK)
			r = restore_symlink(rs.rootfd, &m->v[i]);
	/* directory modes last, deepest first, so a read-only directory can be filled first */
	for (size_t i = m->n; r == 0 && i-- > 0;) {
		if (m->v[i].type != KILN_ENTRY_DIR)
			continue;
		int fd = open_beneath(rs.rootfd, m->v[i].path, O_RDONLY | O_DIRECTORY, 0);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && (st.st_mode & 07777) == m->v[i].mode) {
			close(fd);
			continue;
		}
		if (fd < 0 || fchmod(fd, m->v[i].mode) < 0)
			r = kiln_err(fd < 0 ? -fd : errno, "cannot chmod '%.300s'", m->v[i].path);
		if (fd >= 0)
			close(fd);
	}
	/* the stat cache for the next restore here: only when something was written */
	if (r == 0 && scpath && (atomic_load(&rs.written) > 0 || rs.old.n == 0))
		statcache_save(scpath, &rs, nfiles); /* a failure only costs the next restore time */
	statcache_free(&rs.old);
	free(rs.now);
	free(rs.done);
	free(rs.files);
	close(rs.rootfd);
	return r;
}
