/*
 * backup — `kiln-coordinator backup FILE`: a consistent copy of the store
 * while the coordinator runs. SQLite's online backup API copies DATA/kiln.db
 * inside one read transaction (a snapshot: writers in WAL mode go on), into a
 * temporary file beside FILE that is checked, made self-contained (rollback
 * journal, not WAL) and renamed over FILE. DATA/secret.key goes beside it as
 * FILE.key, since the sealed secrets cannot be opened without it. Both 0600.
 */
#include "coordinator/coord.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/util.h"

static void close_db(sqlite3 **db)
{
	if (*db)
		sqlite3_close(*db);
}

/* fsync of a path (a file, or a directory after a rename in it). */
static int sync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", path, strerror(errno));
	int r = fsync(fd) < 0 ? kiln_err(errno, "fsync %s: %s", path, strerror(errno)) : 0;
	close(fd);
	return r;
}

/* Copies the open database src into the new file `path`; checks the copy. */
static int copy_db(sqlite3 *src, const char *path, uint64_t *pages)
{
	_cleanup_(close_db) sqlite3 *dst = NULL;
	if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK)
		return kiln_err(EIO, "%s: %s", path, dst ? sqlite3_errmsg(dst) : "cannot open");
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	if (!b)
		return kiln_err(EIO, "backup: %s", sqlite3_errmsg(dst));
	/* all pages in one step: one read transaction, so the copy is one moment's state; a
	   writer holding the lock only delays the start */
	int rc;
	for (int tries = 0;; tries++) {
		rc = sqlite3_backup_step(b, -1);
		if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || tries >= 600)
			break;
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
	}
	*pages = (uint64_t)sqlite3_backup_pagecount(b);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE)
		return kiln_err(EIO, "backup: %s", sqlite3_errstr(rc));
	/* a standalone file: no -wal beside it to forget when copying it around */
	char *err = NULL;
	if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, &err) != SQLITE_OK) {
		int r = kiln_err(EIO, "backup: %s", err ? err : "journal_mode");
		sqlite3_free(err);
		return r;
	}
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(dst, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK)
		return kiln_err(EIO, "backup: %s", sqlite3_errmsg(dst));
	bool ok = sqlite3_step(st) == SQLITE_ROW &&
		  strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
	sqlite3_finalize(st);
	if (!ok)
		return kiln_err(EIO, "backup: the copy does not pass quick_check");
	return 0;
}

int coord_backup(const coord_config *cfg, const char *dest, coord_backup_stats *out)
{
	_cleanup_free_ char *src_path = kiln_asprintf("%s/kiln.db", cfg->data_dir);
	struct stat sb;
	if (stat(src_path, &sb) < 0)
		return kiln_err(errno, "%s: %s", src_path, strerror(errno));
	_cleanup_(close_db) sqlite3 *src = NULL;
	if (sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK)
		return kiln_err(EIO, "%s: %s", src_path, src ? sqlite3_errmsg(src) : "cannot open");
	sqlite3_busy_timeout(src, 5000);

	_cleanup_free_ char *tmp = kiln_asprintf("%s.XXXXXX", dest);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", dest, strerror(errno));
	fchmod(fd, 0600);
	close(fd);
	uint64_t pages = 0;
	int r = copy_db(src, tmp, &pages);
	if (r == 0)
		r = sync_path(tmp, O_RDONLY);
	if (r == 0 && rename(tmp, dest) < 0)
		r = kiln_err(errno, "rename %s: %s", dest, strerror(errno));
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	_cleanup_free_ char *dcopy = kiln_strdup(dest);
	sync_path(dirname(dcopy), O_RDONLY | O_DIRECTORY);

	/* the key the sealed values need */
	_cleanup_free_ char *key_path = kiln_asprintf("%s/secret.key", cfg->data_dir);
	_cleanup_free_ char *key_dest = kiln_asprintf("%s.key", dest);
	_cleanup_free_ char *key = NULL;
	size_t len = 0;
	bool have_key = false;
	r = kiln_read_file(key_path, 4096, &key, &len);
	if (r == 0) {
		r = kiln_write_file_atomic(key_dest, key, len, 0600);
		explicit_bzero(key, len);
		if (r < 0)
			return r;
		have_key = true;
	} else if (r != -ENOENT) {
		return r;
	}
	if (out) {
		out->pages = pages;
		out->page_size = 0;
		out->key = have_key;
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(src, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW)
			out->page_size = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	return 0;
}
