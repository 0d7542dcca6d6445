/*
 * cas — implementation of the content-addressed store in cas.h: an SQLite
 * index of every blob, the frames of small blobs appended to pack files, and
 * one file per big blob. The mutex guards the database connection and the
 * pack being written; hashing, compression and reading frames run outside it
 * so that save and restore can use several threads. Each thread keeps its
 * zstd and SHA-256 contexts and its buffers from one blob to the next
 * (thread-specific data, freed when the thread ends): creating them per blob
 * cost more than compressing a small file. A blob is hashed before it is
 * compressed, so that storing what the store already holds costs a hash and
 * one lookup.
 *
 * Packs. Each handle appends to a pack of its own, which it holds an
 * exclusive flock(2) on for as long as it may still append to it or an open
 * transaction names it; a pack is created under tmp/ and locked before it is
 * renamed into packs/, so no pack is ever visible unlocked before its rows are
 * committed. Frames are gathered in memory and written with one pwrite per
 * MiB, and always before the transaction whose rows point at them commits:
 * a committed row points at bytes that were written, unless the machine
 * crashed, and then the frame fails verification and is dropped.
 *
 * Compaction takes a pack's flock (so nobody writes it or has uncommitted
 * rows in it), counts its live bytes, and if more than a third is dead
 * copies the live frames into the compactor's own pack, moves their rows in
 * one transaction, and then deletes the old pack. A reader that looked up
 * the old place first finds the file gone or the frame wrong, looks again,
 * and follows the row; only when the row still names the place it read from
 * is the blob dropped (a delete conditioned on that place).
 */
#include "common/cas.h"
#include "common/cas_internal.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <zstd.h>

/* Files and frames up to this size are handled whole, in memory, in one call; bigger ones
   stream. */
#define WHOLE_MAX (32u << 20)
/* A thread keeps buffers up to this size between blobs; bigger ones are freed after use. */
#define KEEP_MAX (4u << 20)
#define CHUNK (256u << 10)
/* A pack is not appended to past this size. */
#define PACK_MAX (64u << 20)
/* Frames are gathered up to this size before a write. */
#define WBUF_MAX (1u << 20)
/* A pack is rewritten when more than a third of it, and at least this much, is dead. */
#define DEAD_MIN (64u << 10)
/* How long a pack seen to exist is taken to exist without looking again. */
#define SEEN_MS 1000
#define SCHEMA_VERSION 1
/* Inputs up to this size are compressed at level 1 when the store asks for 2 or 3. */
#define SMALL_FAST (16u << 10)

struct kiln_cas {
	char *dir; /* ROOT/cas */
	int packdir; /* ROOT/cas/packs */
	kiln_cas_limits lim;
	pthread_mutex_t mu;
	sqlite3 *db;
	int batch;     /* nesting depth of kiln_cas_batch_begin */
	int64_t clock; /* last atime handed out; strictly increasing */
	/* the pack this handle appends to: id (0 = none yet), locked fd, bytes written, bytes
	   gathered but not written yet */
	int64_t wpack;
	int wfd;
	uint64_t wend;
	kiln_buf wbuf;
	bool wbroken; /* a write failed: the open transaction must not commit */
	int retired[8]; /* earlier packs the open transaction names: kept locked until it ends */
	size_t nretired;
	uint64_t dead; /* packed bytes this handle removed since it last compacted */
	struct {
		int64_t id, ms;
	} seen[8]; /* packs recently seen to exist */
	sqlite3_stmt *st_find, *st_add, *st_touch, *st_data, *st_del, *st_del_at, *st_del_data,
		*st_move, *st_live;
};

/* Where a blob's frame is: a file (pack 0), a pack at off, or (legacy) a row of `data`. */
typedef struct row {
	bool legacy;
	int64_t pack;
	uint64_t off, size, csize;
} row;

typedef struct tls {
	ZSTD_CCtx *cc;
	ZSTD_DCtx *dc;
	EVP_MD_CTX *h;
	char *a, *b; /* contents and frames */
	size_t acap, bcap;
} tls;

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static pthread_key_t tls_key;
static EVP_MD *sha256_md; /* fetched once: an implicit fetch per digest takes a global lock */

static void tls_free(void *p)
{
	tls *t = p;
	if (!t)
		return;
	ZSTD_freeCCtx(t->cc);
	ZSTD_freeDCtx(t->dc);
	EVP_MD_CTX_free(t->h);
	free(t->a);
	free(t->b);
	free(t);
}

static void tls_init(void)
{
	if (pthread_key_create(&tls_key, tls_free) != 0)
		abort();
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* The calling thread's contexts; NULL only if out of memory. */
static tls *tls_get(void)
{
	pthread_once(&tls_once, tls_init);
	tls *t = pthread_getspecific(tls_key);
	if (t)
		return t;
	t = kiln_calloc(1, sizeof *t);
	t->cc = ZSTD_createCCtx();
	t->dc = ZSTD_createDCtx();
	t->h = EVP_MD_CTX_new();
	if (!t->cc || !t->dc || !t->h || pthread_setspecific(tls_key, t) != 0) {
		tls_free(t);
		return NULL;
	}
	return t;
}

static char *grow(char **p, size_t *cap, size_t n)
{
	if (*cap < n) {
		free(*p);
		*p = kiln_malloc(n);
		*cap = n;
	}
	return *p;
}

/* Gives back a big buffer once a blob is done. */
static void tls_trim(tls *t)
{
	if (t->acap > KEEP_MAX) {
		free(t->a);
		t->a = NULL;
		t->acap = 0;
	}
	if (t->bcap > KEEP_MAX) {
		free(t->b);
		t->b = NULL;
		t->bcap = 0;
	}
}

static int hash_begin(EVP_MD_CTX *h)
{
	return EVP_DigestInit_ex(h, sha256_md ? sha256_md : EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
}

/* The tables as the first version made them (blobs.inline = 1: the frame is a row of `data`)
   and what version 1 adds: where in which pack a frame is. `data` is emptied by the one-time
   migration in migrate(). */
static const char SCHEMA[] =
	"PRAGMA page_size=8192;"
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"PRAGMA cache_size=-16384;";
static const char SCHEMA_V0[] =
	"CREATE TABLE IF NOT EXISTS blobs(digest TEXT PRIMARY KEY, size INTEGER NOT NULL,"
	" csize INTEGER NOT NULL, inline INTEGER NOT NULL, atime INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS blobs_atime ON blobs(atime);"
	"CREATE TABLE IF NOT EXISTS data(digest TEXT PRIMARY KEY, z BLOB NOT NULL);";
static const char SCHEMA_V1[] = "ALTER TABLE blobs ADD COLUMN pack INTEGER NOT NULL DEFAULT 0;"
				"ALTER TABLE blobs ADD COLUMN off INTEGER NOT NULL DEFAULT 0;"
				"CREATE INDEX blobs_pack ON blobs(pack) WHERE pack <> 0;"
				"PRAGMA user_version=1;";

bool kiln_cas_digest_valid(const char *hex)
{
	if (!hex)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			return false;
	return hex[64] == '\0';
}

static int db_err(kiln_cas *cas, const char *what)
{
	return kiln_err(EIO, "cas %s: %s", what, sqlite3_errmsg(cas->db));
}

static int db_exec(kiln_cas *cas, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(cas->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		int r = kiln_err(EIO, "cas db: %s", msg ? msg : "error");
		sqlite3_free(msg);
		return r;
	}
	return 0;
}

static char *blob_path(const kiln_cas *cas, const char *hex)
{
	return kiln_asprintf("%s/sha256/%.2s/%s", cas->dir, hex, hex);
}

static void pack_name(int64_t id, char name[32])
{
	snprintf(name, 32, "%016" PRIx64 ".pack", (uint64_t)id);
}

static int64_t tick(kiln_cas *cas)
{
	int64_t now = kiln_now_ms();
	cas->clock = now > cas->clock ? now : cas->clock + 1;
	return cas->clock;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int pwrite_all(int fd, const void *data, size_t len, uint64_t off)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Reads exactly len bytes at off: 0, -EBADMSG if the file ends first, or -errno. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EBADMSG; /* truncated */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* ---- the pack this handle writes (all locked) ------------------------------------------- */

/* Writes what was gathered; on failure the open transaction is doomed (wbroken). */
static int pack_flush(kiln_cas *cas)
{
	if (!cas->wbuf.len)
		return 0;
	int r = pwrite_all(cas->wfd, cas->wbuf.p, cas->wbuf.len, cas->wend);
	if (r < 0) {
		cas->wbroken = true;
		char name[32];
		pack_name(cas->wpack, name);
		return kiln_err(-r, "cas pack %s: %s", name, strerror(-r));
	}
	cas->wend += cas->wbuf.len;
	cas->wbuf.len = 0;
	return 0;
}

/* Ends the use of the current pack; its lock is kept until the open transaction ends. */
static void pack_retire(kiln_cas *cas)
{
	if (cas->wfd < 0)
		return;
	if (cas->nretired == KILN_ARRAY_SIZE(cas->retired)) {
		/* a transaction spanning more than 8 packs (512 MiB of small frames): the
		   oldest lock goes early; at worst a compactor drops that pack as unused and
		   its blobs count as missing */
		close(cas->retired[0]);
		memmove(cas->retired, cas->retired + 1, (cas->nretired - 1) * sizeof(int));
		cas->nretired--;
	}
	cas->retired[cas->nretired++] = cas->wfd;
	cas->wfd = -1;
	cas->wpack = 0;
	cas->wend = 0;
	cas->wbuf.len = 0;
}

/* After a commit or rollback: the packs it named may be compacted by others now. */
static void pack_release(kiln_cas *cas)
{
	for (size_t i = 0; i < cas->nretired; i++)
		close(cas->retired[i]);
	cas->nretired = 0;
}

/* A new pack: created in tmp/, locked, then moved into packs/. */
static int pack_create(kiln_cas *cas)
{
	char rnd[17];
	int r = kiln_random_hex(8, rnd);
	if (r < 0)
		return r;
	int64_t id = (int64_t)(strtoull(rnd, NULL, 16) & INT64_MAX);
	if (id == 0)
		id = 1;
	char name[32];
	pack_name(id, name);
	_cleanup_free_ char *tmp = kiln_asprintf("%s/tmp/%s", cas->dir, name);
	_cleanup_free_ char *dst = kiln_asprintf("%s/packs/%s", cas->dir, name);
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", tmp, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 || rename(tmp, dst) < 0) {
		r = kiln_err(errno, "%s: %s", dst, strerror(errno));
		close(fd);
		unlink(tmp);
		return r;
	}
	cas->wpack = id;
	cas->wfd = fd;
	cas->wend = 0;
	cas->wbuf.len = 0;
	return 0;
}

/* Where the next frame of len bytes goes; pack_put then appends it once its row is in. */
static int pack_place(kiln_cas *cas, uint64_t len, int64_t *id, uint64_t *off)
{
	if (cas->wbroken)
		return kiln_err(EIO, "cas: an earlier write failed; the batch is rolled back");
	uint64_t end = cas->wend + cas->wbuf.len;
	if (cas->wfd >= 0 && end > 0 && end + len > PACK_MAX) {
		int r = pack_flush(cas);
		if (r < 0)
			return r;
		pack_retire(cas);
	}
	if (cas->wfd < 0) {
		int r = pack_create(cas);
		if (r < 0)
			return r;
	}
	*id = cas->wpack;
	*off = cas->wend + cas->wbuf.len;
	return 0;
}

static int pack_put(kiln_cas *cas, const void *frame, size_t len)
{
	kiln_buf_append(&cas->wbuf, frame, len);
	return cas->wbuf.len >= WBUF_MAX ? pack_flush(cas) : 0;
}

/* A frame in the pack being written must be written before anyone reads it. */
static int pack_ready(kiln_cas *cas, const row *rw)
{
	if (rw->pack && rw->pack == cas->wpack && rw->off + rw->csize > cas->wend)
		return pack_flush(cas);
	return 0;
}

/* Opens pack id for reading: the fd, or -errno (-ENOENT if it is gone). */
static int pack_open(kiln_cas *cas, int64_t id)
{
	char name[32];
	pack_name(id, name);
	int fd = openat(cas->packdir, name, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Whether pack id exists, looking at most once a second per pack. */
static bool pack_exists(kiln_cas *cas, int64_t id)
{
	int64_t now = kiln_mono_ns() / 1000000;
	size_t oldest = 0;
	for (size_t i = 0; i < KILN_ARRAY_SIZE(cas->seen); i++) {
		if (cas->seen[i].id == id && now - cas->seen[i].ms < SEEN_MS)
			return true;
		if (cas->seen[i].ms < cas->seen[oldest].ms)
			oldest = i;
	}
	char name[32];
	pack_name(id, name);
	struct stat st;
	if (fstatat(cas->packdir, name, &st, 0) < 0)
		return errno != ENOENT;
	cas->seen[oldest].id = id;
	cas->seen[oldest].ms = now;
	return true;
}

/* ---- transactions (locked) ----------------------------------------------------------------- */

/* Commits the open transaction once every frame its rows name is written; rolls it back if
   a write failed. */
static int commit_locked(kiln_cas *cas)
{
	int r = pack_flush(cas);
	if (r < 0 || cas->wbroken) {
		db_exec(cas, "ROLLBACK");
		/* the pack's end may hold a partial frame: start a new one */
		pack_retire(cas);
		cas->wbroken = false;
		r = r < 0 ? r : kiln_err(EIO, "cas: a write failed; the batch was rolled back");
	} else if ((r = db_exec(cas, "COMMIT")) < 0) {
		db_exec(cas, "ROLLBACK");
	}
	pack_release(cas);
	return r;
}

static void rollback_locked(kiln_cas *cas)
{
	db_exec(cas, "ROLLBACK");
	cas->wbuf.len = 0; /* frames of rows that are gone */
	cas->wbroken = false;
	pack_release(cas);
}

/* A write outside a batch gets its own transaction; inside, it joins the batch. */
static int tx_begin(kiln_cas *cas)
{
	return cas->batch ? 0 : db_exec(cas, "BEGIN IMMEDIATE");
}

static int tx_end(kiln_cas *cas, int r)
{
	if (cas->batch)
		return r;
	if (r < 0) {
		rollback_locked(cas);
		return r;
	}
	return commit_locked(cas);
}

static int prepare(kiln_cas *cas, const char *sql, sqlite3_stmt **st)
{
	return sqlite3_prepare_v3(cas->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) ==
			       SQLITE_OK
		       ? 0
		       : db_err(cas, "prepare");
}

static int step_done(kiln_cas *cas, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : db_err(cas, what);
}

/* ---- opening ------------------------------------------------------------------------------- */

/* Brings a store of an earlier version to SCHEMA_VERSION. */
static int upgrade(kiln_cas *cas)
{
	int r = db_exec(cas, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	sqlite3_stmt *st = NULL;
	int version = -1;
	if (prepare(cas, "PRAGMA user_version", &st) >= 0 && sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version < 0)
		r = db_err(cas, "user_version");
	else if (version > SCHEMA_VERSION)
		r = kiln_err(EPROTO, "cas: the store is of a newer version (%d)", version);
	if (r >= 0 && version < 1)
		r = db_exec(cas, SCHEMA_V0);
	if (r >= 0 && version < 1)
		r = db_exec(cas, SCHEMA_V1);
	if (r < 0) {
		db_exec(cas, "ROLLBACK");
		return r;
	}
	return db_exec(cas, "COMMIT");
}

/* One-time move of the first version's inline frames (rows of `data`) into a pack, in one
   transaction; the database is vacuumed after. Concurrent openers: the second finds `data`
   empty. Locked. */
static int migrate(kiln_cas *cas)
{
	sqlite3_stmt *sel = NULL, *mv = NULL;
	int r = db_exec(cas, "BEGIN IMMEDIATE"), rc = SQLITE_DONE;
	size_t moved = 0;
	if (r >= 0)
		r = prepare(cas, "SELECT d.digest, d.z FROM data d JOIN blobs b USING(digest)"
				 " WHERE b.inline <> 0",
			    &sel);
	if (r >= 0)
		r = prepare(cas, "UPDATE blobs SET inline=0, pack=?, off=?, csize=? WHERE digest=?",
			    &mv);
	while (r >= 0 && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
		const void *z = sqlite3_column_blob(sel, 1);
		uint64_t zn = (uint64_t)sqlite3_column_bytes(sel, 1);
		int64_t id;
		uint64_t off;
		r = pack_place(cas, zn, &id, &off);
		if (r < 0)
			break;
		sqlite3_bind_int64(mv, 1, id);
		sqlite3_bind_int64(mv, 2, (sqlite3_int64)off);
		sqlite3_bind_int64(mv, 3, (sqlite3_int64)zn);
		sqlite3_bind_text(mv, 4, (const char *)sqlite3_column_text(sel, 0), 64,
				  SQLITE_TRANSIENT);
		r = step_done(cas, mv, "migrate");
		if (r >= 0)
			r = pack_put(cas, z ? z : "", zn);
		moved++;
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = db_err(cas, "migrate");
	sqlite3_finalize(sel);
	sqlite3_finalize(mv);
	/* rows that name no frame count as missing from now on */
	if (r >= 0)
		r = db_exec(cas, "DELETE FROM blobs WHERE inline <> 0; DELETE FROM data;");
	if (r < 0) {
		rollback_locked(cas);
		return r;
	}
	r = commit_locked(cas);
	if (r >= 0 && moved)
		db_exec(cas, "VACUUM"); /* gives the frames' pages back; fine if busy */
	return r;
}

int kiln_cas_open(const char *root, const kiln_cas_limits *lim, kiln_cas **out)
{
	static const kiln_cas_limits defaults = KILN_CAS_LIMITS_INIT;
	kiln_cas *cas = kiln_calloc(1, sizeof *cas);
	cas->dir = kiln_asprintf("%s/cas", root);
	cas->lim = lim ? *lim : defaults;
	cas->packdir = -1;
	cas->wfd = -1;
	if (cas->lim.threads < 1)
		cas->lim.threads = 1;
	pthread_mutex_init(&cas->mu, NULL);
	_cleanup_free_ char *sub = kiln_asprintf("%s/sha256", cas->dir);
	_cleanup_free_ char *tmp = kiln_asprintf("%s/tmp", cas->dir);
	_cleanup_free_ char *packs = kiln_asprintf("%s/packs", cas->dir);
	_cleanup_free_ char *dbp = kiln_asprintf("%s/small.db", cas->dir);
	int r = kiln_mkdir_p(sub, 0755);
	if (r >= 0)
		r = kiln_mkdir_p(tmp, 0700);
	if (r >= 0)
		r = kiln_mkdir_p(packs, 0755);
	if (r >= 0 && (cas->packdir = open(packs, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = kiln_err(errno, "%s: %s", packs, strerror(errno));
	if (r >= 0 && sqlite3_open_v2(dbp, &cas->db,
				      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					      SQLITE_OPEN_NOMUTEX,
				      NULL) != SQLITE_OK)
		r = kiln_err(EIO, "cas %s: %s", dbp,
			     cas->db ? sqlite3_errmsg(cas->db) : "cannot open");
	if (r >= 0) {
		sqlite3_busy_timeout(cas->db, 10000);
		r = db_exec(cas, SCHEMA);
	}
	if (r >= 0)
		r = upgrade(cas);
	if (r >= 0)
		r = prepare(cas, "SELECT inline, size, csize, pack, off FROM blobs WHERE digest=?",
			    &cas->st_find);
	if (r >= 0)
		r = prepare(cas,
			    "INSERT OR IGNORE INTO blobs(digest, size, csize, inline, atime, pack, off)"
			    " VALUES(?,?,?,0,?,?,?)",
			    &cas->st_add);
	if (r >= 0)
		r = prepare(cas, "UPDATE blobs SET atime=? WHERE digest=?", &cas->st_touch);
	if (r >= 0)
		r = prepare(cas, "SELECT z FROM data WHERE digest=?", &cas->st_data);
	if (r >= 0)
		r = prepare(cas, "DELETE FROM blobs WHERE digest=?", &cas->st_del);
	if (r >= 0)
		r = prepare(cas, "DELETE FROM blobs WHERE digest=? AND pack=? AND off=? AND inline=?",
			    &cas->st_del_at);
	if (r >= 0)
		r = prepare(cas, "DELETE FROM data WHERE digest=?", &cas->st_del_data);
	if (r >= 0)
		r = prepare(cas, "UPDATE blobs SET pack=?, off=? WHERE digest=? AND pack=? AND off=?",
			    &cas->st_move);
	if (r >= 0)
		r = prepare(cas, "SELECT COALESCE(SUM(csize),0), COUNT(*) FROM blobs WHERE pack=?",
			    &cas->st_live);
	if (r >= 0) {
		sqlite3_stmt *st = NULL;
		bool legacy = false;
		if (prepare(cas, "SELECT COALESCE(MAX(atime),0) FROM blobs", &st) >= 0 &&
		    sqlite3_step(st) == SQLITE_ROW)
			cas->clock = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		st = NULL;
		if (prepare(cas, "SELECT 1 FROM data LIMIT 1", &st) >= 0 &&
		    sqlite3_step(st) == SQLITE_ROW)
			legacy = true;
		sqlite3_finalize(st);
		if (legacy)
			r = migrate(cas);
	}
	if (r < 0) {
		kiln_err_prefix("cas %s", root);
		kiln_cas_close(cas);
		return r;
	}
	*out = cas;
	return 0;
}

void kiln_cas_close(kiln_cas *cas)
{
	if (!cas)
		return;
	if (cas->batch && cas->db) {
		pthread_mutex_lock(&cas->mu);
		cas->batch = 0;
		commit_locked(cas);
		pthread_mutex_unlock(&cas->mu);
	}
	if (cas->dead && cas->db)
		kiln_cas_compact(cas, NULL);
	sqlite3_stmt *sts[] = {cas->st_find,     cas->st_add,  cas->st_touch,
			       cas->st_data,     cas->st_del,  cas->st_del_at,
			       cas->st_del_data, cas->st_move, cas->st_live};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(sts); i++)
		sqlite3_finalize(sts[i]);
	sqlite3_close(cas->db);
	pack_release(cas);
	if (cas->wfd >= 0)
		close(cas->wfd);
	if (cas->packdir >= 0)
		close(cas->packdir);
	kiln_buf_free(&cas->wbuf);
	pthread_mutex_destroy(&cas->mu);
	free(cas->dir);
	free(cas);
}

void kiln_cas_closep(kiln_cas **cas)
{
	kiln_cas_close(*cas);
}

const char *kiln_cas_dir(const kiln_cas *cas)
{
	return cas->dir;
}

const kiln_cas_limits *kiln_cas_limits_get(const kiln_cas *cas)
{
	return &cas->lim;
}

int kiln_cas_batch_begin(kiln_cas *cas)
{
	pthread_mutex_lock(&cas->mu);
	int r = cas->batch ? 0 : db_exec(cas, "BEGIN IMMEDIATE");
	if (r >= 0)
		cas->batch++;
	pthread_mutex_unlock(&cas->mu);
	return r;
}

int kiln_cas_batch_end(kiln_cas *cas)
{
	pthread_mutex_lock(&cas->mu);
	int r = 0;
	if (cas->batch > 0 && --cas->batch == 0)
		r = commit_locked(cas);
	pthread_mutex_unlock(&cas->mu);
	return r;
}

/* ---- the index (locked) -------------------------------------------------------------------- */

/* 1 and *rw if the index has hex, 0 if not. */
static int find_locked(kiln_cas *cas, const char *hex, row *rw)
{
	sqlite3_stmt *st = cas->st_find;
	sqlite3_bind_text(st, 1, hex, 64, SQLITE_STATIC);
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW) {
		rw->legacy = sqlite3_column_int(st, 0) != 0;
		rw->size = (uint64_t)sqlite3_column_int64(st, 1);
		rw->csize = (uint64_t)sqlite3_column_int64(st, 2);
		rw->pack = sqlite3_column_int64(st, 3);
		rw->off = (uint64_t)sqlite3_column_int64(st, 4);
		r = 1;
	} else if (rc != SQLITE_DONE) {
		r = db_err(cas, "lookup");
	}
	sqlite3_reset(st);
	return r;
}

static int touch_locked(kiln_cas *cas, const char *hex)
{
	sqlite3_bind_int64(cas->st_touch, 1, tick(cas));
	sqlite3_bind_text(cas->st_touch, 2, hex, 64, SQLITE_STATIC);
	int r = step_done(cas, cas->st_touch, "touch");
	return r < 0 ? r : sqlite3_changes(cas->db) > 0;
}

/* Drops hex from the index, and its file if it has one; with `at`, only if its row still
   names that place (a reader found it wrong there; it may have moved since). 1 if dropped. */
static int remove_locked(kiln_cas *cas, const char *hex, const row *at)
{
	row rw;
	int r = find_locked(cas, hex, &rw);
	if (r <= 0)
		return r;
	if (at && (rw.legacy != at->legacy || rw.pack != at->pack || rw.off != at->off))
		return 0;
	r = tx_begin(cas);
	if (r < 0)
		return r;
	sqlite3_stmt *st = cas->st_del_at;
	sqlite3_bind_text(st, 1, hex, 64, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, rw.pack);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)rw.off);
	sqlite3_bind_int(st, 4, rw.legacy);
	r = step_done(cas, st, "remove");
	bool gone = r >= 0 && sqlite3_changes(cas->db) > 0;
	if (r >= 0 && gone && rw.legacy) {
		sqlite3_bind_text(cas->st_del_data, 1, hex, 64, SQLITE_STATIC);
		r = step_done(cas, cas->st_del_data, "remove");
	}
	r = tx_end(cas, r);
	if (r < 0 || !gone)
		return r;
	if (rw.pack)
		cas->dead += rw.csize;
	if (!rw.pack && !rw.legacy) {
		_cleanup_free_ char *p = blob_path(cas, hex);
		if (unlink(p) < 0 && errno != ENOENT)
			return kiln_err(errno, "%s: %s", p, strerror(errno));
	}
	return 1;
}

int kiln_cas_remove(kiln_cas *cas, const char *hex)
{
	if (!kiln_cas_digest_valid(hex))
		return kiln_err(EINVAL, "bad digest '%.80s'", hex ? hex : "");
	pthread_mutex_lock(&cas->mu);
	int r = remove_locked(cas, hex, NULL);
	pthread_mutex_unlock(&cas->mu);
	return r;
}

/* 1 if the index has hex and its file or pack exists (else drops the row), 0 if not. */
static int present_locked(kiln_cas *cas, const char *hex)
{
	row rw;
	int r = find_locked(cas, hex, &rw);
	if (r <= 0 || rw.legacy)
		return r;
	bool there = true;
	if (rw.pack) {
		there = pack_exists(cas, rw.pack);
	} else {
		_cleanup_free_ char *p = blob_path(cas, hex);
		struct stat st;
		there = stat(p, &st) == 0 || errno != ENOENT;
	}
	if (!there) {
		remove_locked(cas, hex, &rw);
		return 0;
	}
	return 1;
}

int kiln_cas_has(kiln_cas *cas, const char *hex)
{
	if (!kiln_cas_digest_valid(hex))
		return 0;
	pthread_mutex_lock(&cas->mu);
	int r = present_locked(cas, hex);
	pthread_mutex_unlock(&cas->mu);
	return r;
}

int kiln_cas_touch(kiln_cas *cas, const char *hex)
{
	if (!kiln_cas_digest_valid(hex))
		return 0;
	pthread_mutex_lock(&cas->mu);
	int r = touch_locked(cas, hex);
	pthread_mutex_unlock(&cas->mu);
	return r;
}

/* Opens a fresh temporary file in cas/tmp; *path is owned by the caller. */
static int tmp_open(kiln_cas *cas, char **path)
{
	char rnd[17];
	int r = kiln_random_hex(8, rnd);
	if (r < 0)
		return r;
	*path = kiln_asprintf("%s/tmp/%s", cas->dir, rnd);
	int fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", *path, strerror(errno));
	return fd;
}

/* Moves a complete frame file into place as hex. */
static int tmp_commit(kiln_cas *cas, const char *tmp, const char *hex)
{
	_cleanup_free_ char *dir = kiln_asprintf("%s/sha256/%.2s", cas->dir, hex);
	_cleanup_free_ char *p = blob_path(cas, hex);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return kiln_err(errno, "%s: %s", dir, strerror(errno));
	if (rename(tmp, p) < 0)
		return kiln_err(errno, "%s: %s", p, strerror(errno));
	return 0;
}

/* Records a verified blob: with `packed`, frame is appended to the pack (only if the row is
   new); else it is a file already in place. 1 if added. Locks. */
static int index_add(kiln_cas *cas, const char *hex, uint64_t size, const void *frame,
		     uint64_t csize, bool packed)
{
	pthread_mutex_lock(&cas->mu);
	int r = tx_begin(cas);
	int added = 0;
	int64_t id = 0;
	uint64_t off = 0;
	if (r >= 0 && packed)
		r = pack_place(cas, csize, &id, &off);
	if (r >= 0) {
		sqlite3_stmt *st = cas->st_add;
		sqlite3_bind_text(st, 1, hex, 64, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)csize);
		sqlite3_bind_int64(st, 4, tick(cas));
		sqlite3_bind_int64(st, 5, id);
		sqlite3_bind_int64(st, 6, (sqlite3_int64)off);
		r = step_done(cas, st, "insert");
		added = r >= 0 && sqlite3_changes(cas->db) > 0;
	}
	if (r >= 0 && added && packed)
		r = pack_put(cas, frame, (size_t)csize);
	r = tx_end(cas, r);
	pthread_mutex_unlock(&cas->mu);
	return r < 0 ? r : added;
}

/* Stores a verified frame: in the pack if small, else as a file. */
static int store_frame(kiln_cas *cas, const char *hex, uint64_t size, const void *frame,
		       size_t flen)
{
	if (flen <= cas->lim.small_max)
		return index_add(cas, hex, size, frame, flen, true);
	_cleanup_free_ char *tmp = NULL;
	int fd = tmp_open(cas, &tmp);
	if (fd < 0)
		return fd;
	int r = write_all(fd, frame, flen);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0)
		r = kiln_err(r, "%s: %s", tmp, strerror(-r));
	if (r >= 0)
		r = tmp_commit(cas, tmp, hex);
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	return index_add(cas, hex, size, NULL, flen, false);
}

static void to_hex(const unsigned char md[32], char out[65])
{
	static const char xd[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = xd[md[i] >> 4];
		out[2 * i + 1] = xd[md[i] & 15];
	}
	out[64] = '\0';
}

static void hash_final(EVP_MD_CTX *h, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_DigestFinal_ex(h, md, &n);
	to_hex(md, out);
}


/* 1 if hex must be stored; 0 if the store has it (then marked as used); one lock. */
static int already(kiln_cas *cas, const char *hex)
{
	pthread_mutex_lock(&cas->mu);
	int r = present_locked(cas, hex);
	if (r > 0)
		touch_locked(cas, hex);
	pthread_mutex_unlock(&cas->mu);
	return r < 0 ? r : r == 0;
}

static int put_mem(kiln_cas *cas, tls *t, const void *data, size_t len, char out_hex[65])
{
	char hex[65];
	if (hash_begin(t->h) < 0)
		return kiln_err(ENOMEM, "sha256: cannot start");
	EVP_DigestUpdate(t->h, data, len);
	hash_final(t->h, hex);
	memcpy(out_hex, hex, 65);
	int r = already(cas, hex);
	if (r <= 0)
		return r;
	size_t bound = ZSTD_compressBound(len);
	char *z = grow(&t->b, &t->bcap, bound);
	/* levels 1-3 give the same ratio on a small input (zstd sizes its tables to the input),
	   and level 1 runs 1.6x faster on them */
	int level = len <= SMALL_FAST && cas->lim.level > 1 && cas->lim.level <= 3 ? 1
										: cas->lim.level;
	size_t zn = ZSTD_compressCCtx(t->cc, z, bound, data, len, level);
	if (ZSTD_isError(zn))
		return kiln_err(EIO, "zstd: %s", ZSTD_getErrorName(zn));
	return store_frame(cas, hex, len, z, zn);
}

int kiln_cas_put_buf(kiln_cas *cas, const void *data, size_t len, char out_hex[65])
{
	if (len > cas->lim.max_blob_size)
		return kiln_err(EFBIG, "blob of %zu bytes is over the limit", len);
	tls *t = tls_get();
	if (!t)
		return kiln_err(ENOMEM, "out of memory");
	int r = put_mem(cas, t, data, len, out_hex);
	tls_trim(t);
	return r;
}

static ssize_t read_some(int fd, void *buf, size_t n)
{
	for (;;) {
		ssize_t k = read(fd, buf, n);
		if (k >= 0 || errno != EINTR)
			return k < 0 ? -errno : k;
	}
}

/* Streams fd through hash and zstd into a temporary file, then moves it into place. */
static int put_stream(kiln_cas *cas, int fd, kiln_buf *head, char out_hex[65], uint64_t *size)
{
	_cleanup_free_ char *tmp = NULL;
	int tfd = tmp_open(cas, &tmp);
	if (tfd < 0)
		return tfd;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	_cleanup_free_ char *in = kiln_malloc(CHUNK);
	size_t outcap = ZSTD_CStreamOutSize();
	_cleanup_free_ char *out = kiln_malloc(outcap);
	uint64_t total = 0, ztotal = 0;
	int r = cc && h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
	if (r == 0) {
		ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, cas->lim.level);
		/* a second thread compresses while this one reads and hashes (if built with MT) */
		ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, 1);
	}
	bool eof = false, first = true;
	while (r == 0) {
		const char *p = in;
		ssize_t n;
		if (first && head->len) {
			p = head->p;
			n = (ssize_t)head->len;
		} else {
			n = read_some(fd, in, CHUNK);
		}
		first = false;
		if (n < 0) {
			r = kiln_err(-(int)n, "read: %s", strerror(-(int)n));
			break;
		}
		eof = n == 0;
		total += (uint64_t)n;
		if (total > cas->lim.max_blob_size) {
			r = kiln_err(EFBIG, "file is over the blob size limit");
			break;
		}
		EVP_DigestUpdate(h, p, (size_t)n);
		ZSTD_inBuffer ib = {p, (size_t)n, 0};
		size_t left;
		do {
			ZSTD_outBuffer ob = {out, outcap, 0};
			left = ZSTD_compressStream2(cc, &ob, &ib, eof ? ZSTD_e_end : ZSTD_e_continue);
			if (ZSTD_isError(left)) {
				r = kiln_err(EIO, "zstd: %s", ZSTD_getErrorName(left));
				break;
			}
			int w = write_all(tfd, out, ob.pos);
			if (w < 0) {
				r = kiln_err(-w, "%s: %s", tmp, strerror(-w));
				break;
			}
			ztotal += ob.pos;
		} while (eof ? left != 0 : ib.pos < ib.size);
		if (eof)
			break;
	}
	ZSTD_freeCCtx(cc);
	char hex[65] = "";
	if (r == 0)
		hash_final(h, hex);
	EVP_MD_CTX_free(h);
	if (close(tfd) < 0 && r == 0)
		r = kiln_err(errno, "%s: %s", tmp, strerror(errno));
	if (r == 0) {
		memcpy(out_hex, hex, 65);
		*size = total;
		r = already(cas, hex);
		if (r == 0)
			ztotal = 0;
	}
	if (r == 1 && ztotal <= cas->lim.small_max) {
		/* compressed small after all: into the pack */
		_cleanup_free_ char *z = NULL;
		size_t zn = 0;
		r = kiln_read_file(tmp, cas->lim.small_max, &z, &zn);
		if (r >= 0)
			r = index_add(cas, hex, total, z, zn, true);
	} else if (r == 1) {
		r = tmp_commit(cas, tmp, hex);
		if (r >= 0)
			r = index_add(cas, hex, total, NULL, ztotal, false);
	}
	unlink(tmp); /* gone already if committed */
	return r;
}

/* Hashes the rest of fd after head; 1 if the store lacks the result, 0 if it has it. */
static int hash_rest(kiln_cas *cas, tls *t, int fd, const char *head, size_t hlen,
		     char out_hex[65], uint64_t *size)
{
	if (hash_begin(t->h) < 0)
		return kiln_err(ENOMEM, "sha256: cannot start");
	EVP_DigestUpdate(t->h, head, hlen);
	uint64_t total = hlen;
	_cleanup_free_ char *buf = kiln_malloc(CHUNK);
	for (;;) {
		ssize_t n = read_some(fd, buf, CHUNK);
		if (n < 0)
			return kiln_err(-(int)n, "read: %s", strerror(-(int)n));
		if (n == 0)
			break;
		if ((total += (uint64_t)n) > cas->lim.max_blob_size)
			return kiln_err(EFBIG, "file is over the blob size limit");
		EVP_DigestUpdate(t->h, buf, (size_t)n);
	}
	hash_final(t->h, out_hex);
	*size = total;
	return already(cas, out_hex);
}

int kiln_cas_put_fd(kiln_cas *cas, int fd, char out_hex[65], uint64_t *size)
{
	uint64_t sz = 0;
	if (!size)
		size = &sz;
	tls *t = tls_get();
	if (!t)
		return kiln_err(ENOMEM, "out of memory");
	/* read up to WHOLE_MAX, in one read when the size is known (one byte more, to see a file
	   that grew); a file that ends by then is hashed and compressed in memory */
	struct stat st;
	size_t cap = CHUNK, len = 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < WHOLE_MAX)
		cap = (size_t)st.st_size + 1;
	grow(&t->a, &t->acap, cap);
	int r = 0;
	bool eof = false;
	while (!eof && len < WHOLE_MAX) {
		if (len == t->acap) {
			size_t ncap = t->acap * 2 < WHOLE_MAX ? t->acap * 2 : WHOLE_MAX;
			char *p = kiln_malloc(ncap);
			memcpy(p, t->a, len);
			free(t->a);
			t->a = p;
			t->acap = ncap;
		}
		ssize_t n = read_some(fd, t->a + len, t->acap - len);
		if (n < 0) {
			r = kiln_err(-(int)n, "read: %s", strerror(-(int)n));
			break;
		}
		eof = n == 0;
		len += (size_t)n;
	}
	if (r == 0 && eof) {
		*size = len;
		r = len > cas->lim.max_blob_size
			    ? kiln_err(EFBIG, "blob of %zu bytes is over the limit", len)
			    : put_mem(cas, t, t->a, len, out_hex);
	} else if (r == 0 && lseek(fd, 0, SEEK_CUR) == (off_t)len) {
		/* big and seekable: hash it first, and compress it only if the store lacks it */
		r = hash_rest(cas, t, fd, t->a, len, out_hex, size);
		if (r == 1 && lseek(fd, 0, SEEK_SET) == 0) {
			kiln_buf none = {0};
			r = put_stream(cas, fd, &none, out_hex, size);
		} else if (r == 1) {
			r = kiln_err(errno, "seek: %s", strerror(errno));
		}
	} else if (r == 0) {
		kiln_buf head = {.p = t->a, .len = len, .cap = t->acap};
		r = put_stream(cas, fd, &head, out_hex, size);
	}
	tls_trim(t);
	return r;
}

/* Where a frame is read from while verifying: memory or a file. */
typedef struct src {
	const char *mem;
	size_t len;
	int fd;
} src;

typedef int (*sink_fn)(void *ud, const void *p, size_t n);

/* A frame in memory that says its size: decompressed in one call into t->a. */
static int unzstd_whole(tls *t, const src *s, uint64_t max, sink_fn sink, void *ud, char hex[65],
			uint64_t *outlen)
{
	unsigned long long cs = ZSTD_getFrameContentSize(s->mem, s->len);
	if (cs > max)
		return kiln_err(EFBIG, "decompresses past %llu bytes", (unsigned long long)max);
	char *out = grow(&t->a, &t->acap, cs ? (size_t)cs : 1);
	size_t n = ZSTD_decompressDCtx(t->dc, out, (size_t)cs, s->mem, s->len);
	if (ZSTD_isError(n) || n != cs)
		return -EBADMSG;
	if (hash_begin(t->h) < 0)
		return -ENOMEM;
	EVP_DigestUpdate(t->h, out, n);
	hash_final(t->h, hex);
	*outlen = n;
	return sink && n ? sink(ud, out, n) : 0;
}

/* Decompresses a frame into sink, at most max bytes, and hashes what comes out. */
static int unzstd(tls *t, const src *s, uint64_t max, sink_fn sink, void *ud, char hex[65],
		  uint64_t *outlen)
{
	if (s->mem) {
		unsigned long long cs = ZSTD_getFrameContentSize(s->mem, s->len);
		if (cs != ZSTD_CONTENTSIZE_UNKNOWN && cs != ZSTD_CONTENTSIZE_ERROR &&
		    cs <= WHOLE_MAX && ZSTD_findFrameCompressedSize(s->mem, s->len) == s->len)
			return unzstd_whole(t, s, max, sink, ud, hex, outlen);
	}
	ZSTD_DCtx *dc = t->dc;
	EVP_MD_CTX *h = t->h;
	size_t outcap = ZSTD_DStreamOutSize();
	_cleanup_free_ char *out = kiln_malloc(outcap);
	_cleanup_free_ char *in = s->mem ? NULL : kiln_malloc(CHUNK);
	ZSTD_DCtx_reset(dc, ZSTD_reset_session_and_parameters);
	int r = hash_begin(h);
	/* a frame's maximum window is what the limit allows, and no more than 128 MiB */
	if (r == 0)
		ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, 27);
	uint64_t total = 0;
	size_t last = 1;
	bool fed = false;
	while (r == 0) {
		ZSTD_inBuffer ib = {0};
		if (s->mem) {
			if (fed)
				break;
			ib = (ZSTD_inBuffer){s->mem, s->len, 0};
		} else {
			ssize_t n = read_some(s->fd, in, CHUNK);
			if (n < 0) {
				r = kiln_err(-(int)n, "read: %s", strerror(-(int)n));
				break;
			}
			if (n == 0)
				break;
			ib = (ZSTD_inBuffer){in, (size_t)n, 0};
		}
		fed = true;
		while (r == 0 && ib.pos < ib.size) {
			ZSTD_outBuffer ob = {out, outcap, 0};
			last = ZSTD_decompressStream(dc, &ob, &ib);
			if (ZSTD_isError(last)) {
				r = -EBADMSG;
				break;
			}
			total += ob.pos;
			if (total > max) {
				r = kiln_err(EFBIG, "decompresses past %llu bytes",
					     (unsigned long long)max);
				break;
			}
			EVP_DigestUpdate(h, out, ob.pos);
			if (sink && ob.pos)
				r = sink(ud, out, ob.pos);
		}
	}
	if (r == 0 && (last != 0 || !fed))
		r = -EBADMSG; /* truncated, or no frame at all */
	if (r == 0) {
		hash_final(h, hex);
		*outlen = total;
	}
	ZSTD_DCtx_reset(dc, ZSTD_reset_session_and_parameters);
	return r;
}

/* Finds hex, marks it used and, for a frame in a pack or a row, reads the frame into t->b
   (*zn bytes); a file's frame is left for the caller. 1 if found, 0 if missing, -EBADMSG if
   its place cannot be read whole (*rw says which place). */
static int fetch_frame(kiln_cas *cas, tls *t, const char *hex, row *rw, size_t *zn)
{
	pthread_mutex_lock(&cas->mu);
	int r = find_locked(cas, hex, rw);
	if (r > 0 && rw->legacy) {
		sqlite3_bind_text(cas->st_data, 1, hex, 64, SQLITE_STATIC);
		if (sqlite3_step(cas->st_data) == SQLITE_ROW) {
			*zn = (size_t)sqlite3_column_bytes(cas->st_data, 0);
			grow(&t->b, &t->bcap, *zn ? *zn : 1);
			if (*zn)
				memcpy(t->b, sqlite3_column_blob(cas->st_data, 0), *zn);
		} else {
			r = -EBADMSG;
		}
		sqlite3_reset(cas->st_data);
	}
	if (r > 0 && rw->pack)
		r = pack_ready(cas, rw) < 0 ? -EIO : r;
	if (r > 0)
		touch_locked(cas, hex);
	pthread_mutex_unlock(&cas->mu);
	if (r <= 0 || !rw->pack)
		return r;
	if (rw->csize > cas->lim.small_max && rw->csize > PACK_MAX)
		return -EBADMSG; /* no pack frame is this big */
	*zn = (size_t)rw->csize;
	int fd = pack_open(cas, rw->pack);
	if (fd < 0)
		return fd == -ENOENT ? -EBADMSG : kiln_err(-fd, "cas pack: %s", strerror(-fd));
	grow(&t->b, &t->bcap, *zn ? *zn : 1);
	r = pread_all(fd, t->b, *zn, rw->off);
	close(fd);
	if (r < 0 && r != -EBADMSG)
		return kiln_err(-r, "cas pack: %s", strerror(-r));
	return r < 0 ? r : 1;
}

/* Runs the stored frame of hex through unzstd and checks the digest. A frame that is
   wrong or gone is dropped, unless its row moved meanwhile (a compaction): then the new
   place is read. Looking it up, reading a packed frame's place and marking it used take
   one lock. */
static int64_t read_verify(kiln_cas *cas, const char *hex, uint64_t max, sink_fn sink, void *ud)
{
	if (!kiln_cas_digest_valid(hex))
		return kiln_err(EINVAL, "bad digest '%.80s'", hex ? hex : "");
	tls *t = tls_get();
	if (!t)
		return kiln_err(ENOMEM, "out of memory");
	for (int attempt = 0;; attempt++) {
		row rw;
		size_t zn = 0;
		int r = fetch_frame(cas, t, hex, &rw, &zn);
		if (r == 0)
			return kiln_err(ENOENT, "blob %s is missing", hex);
		if (r < 0 && r != -EBADMSG)
			return r;
		src s = {.mem = t->b, .len = zn, .fd = -1};
		bool gone = false;
		if (r > 0 && !rw.pack && !rw.legacy) {
			_cleanup_free_ char *p = blob_path(cas, hex);
			s.fd = open(p, O_RDONLY | O_CLOEXEC);
			if (s.fd < 0 && errno != ENOENT)
				return kiln_err(errno, "%s: %s", p, strerror(errno));
			gone = s.fd < 0;
			s.mem = NULL;
			/* a frame file of known, moderate size is read whole and decompressed in
			   one call */
			struct stat st;
			if (!gone && fstat(s.fd, &st) == 0 && st.st_size > 0 &&
			    (uint64_t)st.st_size <= WHOLE_MAX) {
				size_t want = (size_t)st.st_size, got = 0;
				grow(&t->b, &t->bcap, want);
				ssize_t n = 1;
				while (got < want && (n = read_some(s.fd, t->b + got, want - got)) > 0)
					got += (size_t)n;
				close(s.fd);
				if (n < 0)
					return kiln_err(-(int)n, "%s: %s", p, strerror(-(int)n));
				s = (src){.mem = t->b, .len = got, .fd = -1};
			}
		}
		char got[65] = "";
		uint64_t n = 0;
		if (r > 0 && !gone)
			r = unzstd(t, &s, max, sink, ud, got, &n);
		if (s.fd >= 0)
			close(s.fd);
		tls_trim(t);
		/* r: 0 decompressed (got is its digest), -EBADMSG unreadable, other < 0 errors */
		bool bad = gone || r == -EBADMSG || (r == 0 && strcmp(got, hex) != 0);
		if (!bad && r < 0) {
			kiln_err_prefix("blob %s", hex);
			return r;
		}
		if (!bad)
			return (int64_t)n;
		/* wrong where the row said: drop it if the row still says so, else follow it
		   (a sink that already took bytes cannot take them again) */
		pthread_mutex_lock(&cas->mu);
		int dropped = remove_locked(cas, hex, &rw);
		pthread_mutex_unlock(&cas->mu);
		if (dropped == 0 && attempt < 3 && !(sink && n > 0))
			continue;
		if (gone)
			return kiln_err(ENOENT, "blob %s is missing", hex);
		return kiln_err(EBADMSG, "blob %s is corrupt (content does not match its name); removed",
				hex);
	}
}

static int sink_buf(void *ud, const void *p, size_t n)
{
	kiln_buf_append(ud, p, n);
	return 0;
}

int kiln_cas_get_buf(kiln_cas *cas, const char *hex, uint64_t max, char **out, size_t *len)
{
	kiln_buf b = {0};
	int64_t r = read_verify(cas, hex, max, sink_buf, &b);
	if (r < 0) {
		kiln_buf_free(&b);
		return (int)r;
	}
	if (len)
		*len = b.len;
	*out = kiln_buf_steal(&b);
	return 0;
}

static int sink_fd(void *ud, const void *p, size_t n)
{
	int r = write_all(*(int *)ud, p, n);
	return r < 0 ? kiln_err(-r, "write: %s", strerror(-r)) : 0;
}

int64_t kiln_cas_get_to_fd(kiln_cas *cas, const char *hex, int fd, uint64_t max)
{
	return read_verify(cas, hex, max, sink_fd, &fd);
}

int kiln_cas_verify(kiln_cas *cas, const char *hex)
{
	int64_t r = read_verify(cas, hex, cas->lim.max_blob_size, NULL, NULL);
	return r == -ENOENT ? 0 : r < 0 ? (int)r : 1;
}

int kiln_cas_put_compressed(kiln_cas *cas, const char *expected_hex, const void *frame,
			    size_t len)
{
	if (!kiln_cas_digest_valid(expected_hex))
		return kiln_err(EINVAL, "bad digest '%.80s'", expected_hex ? expected_hex : "");
	int r = already(cas, expected_hex);
	if (r <= 0)
		return r;
	tls *t = tls_get();
	if (!t)
		return kiln_err(ENOMEM, "out of memory");
	src s = {.mem = frame ? frame : "", .len = len, .fd = -1};
	char got[65];
	uint64_t n = 0;
	r = unzstd(t, &s, cas->lim.max_blob_size, NULL, NULL, got, &n);
	tls_trim(t);
	if (r == -EBADMSG)
		return kiln_err(EBADMSG, "blob %s: not a valid zstd frame", expected_hex);
	if (r < 0) {
		kiln_err_prefix("blob %s", expected_hex);
		return r;
	}
	if (strcmp(got, expected_hex) != 0)
		return kiln_err(EBADMSG, "blob %s: content has digest %s; refused", expected_hex,
				got);
	return store_frame(cas, expected_hex, n, frame, len);
}

int kiln_cas_read_compressed(kiln_cas *cas, const char *hex, uint64_t off, void *buf, size_t cap,
			     size_t *n, uint64_t *total)
{
	if (!kiln_cas_digest_valid(hex))
		return kiln_err(EINVAL, "bad digest '%.80s'", hex ? hex : "");
	row rw;
	*n = 0;
	pthread_mutex_lock(&cas->mu);
	int r = find_locked(cas, hex, &rw);
	if (r > 0 && rw.legacy) {
		sqlite3_bind_text(cas->st_data, 1, hex, 64, SQLITE_STATIC);
		if (sqlite3_step(cas->st_data) == SQLITE_ROW) {
			uint64_t zn = (uint64_t)sqlite3_column_bytes(cas->st_data, 0);
			const char *z = sqlite3_column_blob(cas->st_data, 0);
			*total = zn;
			if (off < zn) {
				*n = zn - off < cap ? (size_t)(zn - off) : cap;
				memcpy(buf, z + off, *n);
			}
		} else {
			r = 0;
		}
		sqlite3_reset(cas->st_data);
	}
	if (r > 0 && rw.pack && pack_ready(cas, &rw) < 0)
		r = -EIO;
	pthread_mutex_unlock(&cas->mu);
	if (r <= 0 || rw.legacy)
		return r < 0 ? r : r == 0 ? kiln_err(ENOENT, "blob %s is missing", hex) : 0;
	if (rw.pack) {
		int fd = pack_open(cas, rw.pack);
		if (fd < 0)
			return kiln_err(-fd, "blob %s: pack: %s", hex, strerror(-fd));
		*total = rw.csize;
		size_t want = off < rw.csize ? (rw.csize - off < cap ? (size_t)(rw.csize - off) : cap)
					     : 0;
		r = pread_all(fd, buf, want, rw.off + off);
		close(fd);
		if (r < 0)
			return kiln_err(r == -EBADMSG ? EIO : -r, "blob %s: pack is %s", hex,
					r == -EBADMSG ? "truncated" : strerror(-r));
		*n = want;
		return 0;
	}
	_cleanup_free_ char *p = blob_path(cas, hex);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", p, strerror(errno));
	struct stat st;
	ssize_t k = fstat(fd, &st) < 0 ? -1 : pread(fd, buf, cap, (off_t)off);
	int e = errno;
	close(fd);
	if (k < 0)
		return kiln_err(e, "%s: %s", p, strerror(e));
	*n = (size_t)k;
	*total = (uint64_t)st.st_size;
	return 0;
}

int kiln_cas_total(kiln_cas *cas, uint64_t *bytes, uint64_t *count)
{
	sqlite3_stmt *st = NULL;
	pthread_mutex_lock(&cas->mu);
	int r = prepare(cas, "SELECT COALESCE(SUM(csize),0), COUNT(*) FROM blobs", &st);
	if (r >= 0 && sqlite3_step(st) == SQLITE_ROW) {
		if (bytes)
			*bytes = (uint64_t)sqlite3_column_int64(st, 0);
		if (count)
			*count = (uint64_t)sqlite3_column_int64(st, 1);
	} else if (r >= 0) {
		r = db_err(cas, "total");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&cas->mu);
	return r;
}

typedef struct snap {
	kiln_strv hex;
	uint64_t *size, *csize;
	size_t cap;
} snap;

/* Lists blobs in the order of sql (which selects digest, size, csize). Locks. */
static int snapshot(kiln_cas *cas, const char *sql, snap *s)
{
	sqlite3_stmt *st = NULL;
	pthread_mutex_lock(&cas->mu);
	int r = prepare(cas, sql, &st), rc;
	while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (s->hex.n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 256;
			s->size = kiln_realloc(s->size, s->cap * sizeof *s->size);
			s->csize = kiln_realloc(s->csize, s->cap * sizeof *s->csize);
		}
		s->size[s->hex.n] = (uint64_t)sqlite3_column_int64(st, 1);
		s->csize[s->hex.n] = (uint64_t)sqlite3_column_int64(st, 2);
		kiln_strv_push(&s->hex, (const char *)sqlite3_column_text(st, 0));
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = db_err(cas, "list");
	sqlite3_finalize(st);
	pthread_mutex_unlock(&cas->mu);
	return r;
}

static void snap_free(snap *s)
{
	kiln_strv_free(&s->hex);
	free(s->size);
	free(s->csize);
}

int kiln_cas_foreach(kiln_cas *cas, kiln_cas_foreach_fn fn, void *ud)
{
	snap s = {0};
	int r = snapshot(cas, "SELECT digest, size, csize FROM blobs ORDER BY digest", &s);
	for (size_t i = 0; r == 0 && i < s.hex.n; i++)
		r = fn(ud, s.hex.v[i], s.size[i], s.csize[i]);
	snap_free(&s);
	return r;
}

int kiln_cas_evict(kiln_cas *cas, uint64_t max_bytes)
{
	uint64_t total = 0;
	int r = kiln_cas_total(cas, &total, NULL);
	if (r < 0 || total <= max_bytes)
		return r;
	snap s = {0};
	r = snapshot(cas, "SELECT digest, size, csize FROM blobs ORDER BY atime", &s);
	int removed = 0;
	bool began = r >= 0 && (r = kiln_cas_batch_begin(cas)) >= 0;
	for (size_t i = 0; began && r >= 0 && i < s.hex.n && total > max_bytes; i++) {
		r = kiln_cas_remove(cas, s.hex.v[i]);
		if (r > 0) {
			total -= s.csize[i];
			removed++;
		}
	}
	if (began && kiln_cas_batch_end(cas) < 0 && r >= 0)
		r = -EIO;
	snap_free(&s);
	/* the evicted frames of packs take space until their packs are rewritten */
	if (r >= 0 && removed > 0 && kiln_cas_compact(cas, NULL) < 0)
		r = -EIO;
	return r < 0 ? r : removed;
}

/* ---- compaction ---------------------------------------------------------------------------- */

typedef struct frame_ref {
	char hex[65];
	uint64_t off, len;
} frame_ref;

/* Moves the live frames of pack id (open and locked as fd) into this handle's pack, in one
   transaction; rows whose frame the pack does not hold whole are dropped. Locked. */
static int compact_one(kiln_cas *cas, int64_t id, int fd)
{
	frame_ref *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *sel = NULL;
	int r = db_exec(cas, "BEGIN IMMEDIATE"), rc = SQLITE_DONE;
	if (r >= 0)
		r = prepare(cas, "SELECT digest, off, csize FROM blobs WHERE pack=? ORDER BY off",
			    &sel);
	if (r >= 0)
		sqlite3_bind_int64(sel, 1, id);
	while (r >= 0 && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			v = kiln_realloc(v, cap * sizeof *v);
		}
		const char *hex = (const char *)sqlite3_column_text(sel, 0);
		snprintf(v[n].hex, sizeof v[n].hex, "%s", hex ? hex : "");
		v[n].off = (uint64_t)sqlite3_column_int64(sel, 1);
		v[n].len = (uint64_t)sqlite3_column_int64(sel, 2);
		n++;
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = db_err(cas, "compact");
	sqlite3_finalize(sel);
	char *buf = NULL;
	size_t bcap = 0;
	cas->batch = 1; /* remove_locked joins this transaction */
	for (size_t i = 0; r >= 0 && i < n; i++) {
		int k = v[i].len > PACK_MAX && v[i].len > cas->lim.small_max ? -EBADMSG : 0;
		if (k == 0) {
			grow(&buf, &bcap, v[i].len ? (size_t)v[i].len : 1);
			k = pread_all(fd, buf, (size_t)v[i].len, v[i].off);
		}
		if (k == -EBADMSG) { /* the pack ends before it: the blob is lost */
			row at = {.pack = id, .off = v[i].off};
			r = remove_locked(cas, v[i].hex, &at);
			continue;
		}
		if (k < 0) {
			r = kiln_err(-k, "cas compact: %s", strerror(-k));
			break;
		}
		int64_t nid;
		uint64_t noff;
		r = pack_place(cas, v[i].len, &nid, &noff);
		if (r < 0)
			break;
		sqlite3_stmt *mv = cas->st_move;
		sqlite3_bind_int64(mv, 1, nid);
		sqlite3_bind_int64(mv, 2, (sqlite3_int64)noff);
		sqlite3_bind_text(mv, 3, v[i].hex, 64, SQLITE_STATIC);
		sqlite3_bind_int64(mv, 4, id);
		sqlite3_bind_int64(mv, 5, (sqlite3_int64)v[i].off);
		r = step_done(cas, mv, "compact");
		if (r >= 0 && sqlite3_changes(cas->db) > 0)
			r = pack_put(cas, buf, (size_t)v[i].len);
	}
	cas->batch = 0;
	free(buf);
	free(v);
	if (r < 0) {
		rollback_locked(cas);
		return r;
	}
	return commit_locked(cas);
}

/* Drops files left in tmp/ by a process that died mid-write. */
static void clean_tmp(kiln_cas *cas)
{
	_cleanup_free_ char *tmp = kiln_asprintf("%s/tmp", cas->dir);
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	time_t old = time(NULL) - 6 * 3600;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (de->d_name[0] != '.' && fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && st.st_mtime < old)
			unlinkat(dfd, de->d_name, 0);
	}
	closedir(d);
}

/* The id of a pack file's name ("<16 hex digits>.pack"), or 0. */
static int64_t pack_id(const char *name)
{
	if (strlen(name) != 21 || strcmp(name + 16, ".pack") != 0)
		return 0;
	for (int i = 0; i < 16; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return 0;
	return (int64_t)(strtoull(name, NULL, 16) & INT64_MAX);
}

int kiln_cas_compact(kiln_cas *cas, uint64_t *freed)
{
	uint64_t gain = 0;
	int done = 0, r = 0;
	if (freed)
		*freed = 0;
	pthread_mutex_lock(&cas->mu);
	if (cas->batch) {
		pthread_mutex_unlock(&cas->mu);
		return 0; /* never inside a batch: it commits on its own */
	}
	kiln_strv names = {0};
	int dfd = openat(cas->packdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		r = kiln_err(errno, "%s/packs: %s", cas->dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
	} else {
		struct dirent *de;
		while ((de = readdir(d)) != NULL)
			if (pack_id(de->d_name))
				kiln_strv_push(&names, de->d_name);
		closedir(d);
	}
	for (size_t i = 0; r >= 0 && i < names.n; i++) {
		int64_t id = pack_id(names.v[i]);
		if (id == cas->wpack)
			continue;
		int fd = openat(cas->packdir, names.v[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		/* locked by a writer, or by a transaction that names it: not now */
		struct stat st;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &st) < 0 || st.st_nlink == 0) {
			close(fd);
			continue;
		}
		/* with the lock held, no row can come to name this pack */
		uint64_t live = 0, count = 0, size = (uint64_t)st.st_size;
		sqlite3_bind_int64(cas->st_live, 1, id);
		if (sqlite3_step(cas->st_live) == SQLITE_ROW) {
			live = (uint64_t)sqlite3_column_int64(cas->st_live, 0);
			count = (uint64_t)sqlite3_column_int64(cas->st_live, 1);
		} else {
			r = db_err(cas, "compact");
		}
		sqlite3_reset(cas->st_live);
		uint64_t dead = size > live ? size - live : 0;
		if (r >= 0 && count == 0) {
			unlinkat(cas->packdir, names.v[i], 0);
			gain += size;
			done++;
		} else if (r >= 0 && dead * 3 > size && dead >= DEAD_MIN) {
			r = compact_one(cas, id, fd);
			if (r >= 0) {
				unlinkat(cas->packdir, names.v[i], 0);
				gain += dead;
				done++;
			}
		}
		close(fd);
	}
	kiln_strv_free(&names);
	if (r >= 0)
		cas->dead = 0;
	/* the pack this handle wrote into is left alone; when it was rotated while compacting,
	   its predecessor is sealed and will be looked at next time */
	pthread_mutex_unlock(&cas->mu);
	clean_tmp(cas);
	if (freed)
		*freed = gain;
	return r < 0 ? r : done;
}
