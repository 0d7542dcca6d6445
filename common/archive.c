/*
 * archive — see archive.h.
 */
#include "common/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define FILE_IN_MEMORY (4u << 20) /* files up to this size go into an archive from memory */
#define COPY_CHUNK (256u << 10)

int kiln_scratch_fd(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	_cleanup_free_ char *p = kiln_asprintf("%s/scratch.XXXXXX", dir);
	fd = mkostemp(p, O_CLOEXEC);
	if (fd < 0)
		return kiln_err(errno, "scratch file in %s: %s", dir, strerror(errno));
	unlink(p);
	return fd;
}

/* Writes one file's content into the archive: from memory when small, else through the
   scratch file *scratch (made on first use). */
static int archive_file(kiln_cas *cas, const char *scratch_dir, volatile sig_atomic_t *stop,
			struct archive *a, const kiln_manifest_entry *e, int *scratch)
{
	if (e->size <= FILE_IN_MEMORY) {
		_cleanup_free_ char *buf = NULL;
		size_t len = 0;
		int r = kiln_cas_get_buf(cas, e->digest, e->size, &buf, &len);
		if (r < 0)
			return r;
		if (len != e->size)
			return kiln_err(EBADMSG, "%s: %zu bytes, the manifest says %llu", e->path,
					len, (unsigned long long)e->size);
		if (len && archive_write_data(a, buf, len) != (la_ssize_t)len)
			return kiln_err(EIO, "%s", archive_error_string(a));
		return 0;
	}
	if (*scratch < 0 && (*scratch = kiln_scratch_fd(scratch_dir)) < 0)
		return *scratch;
	int fd = *scratch;
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return kiln_err(errno, "scratch file: %s", strerror(errno));
	int64_t n = kiln_cas_get_to_fd(cas, e->digest, fd, e->size);
	if (n < 0)
		return (int)n;
	if ((uint64_t)n != e->size)
		return kiln_err(EBADMSG, "%s: %lld bytes, the manifest says %llu", e->path,
				(long long)n, (unsigned long long)e->size);
	if (lseek(fd, 0, SEEK_SET) < 0)
		return kiln_err(errno, "scratch file: %s", strerror(errno));
	_cleanup_free_ char *buf = kiln_malloc(COPY_CHUNK);
	for (uint64_t left = e->size; left;) {
		if (stop && *stop)
			return kiln_err(EINTR, "interrupted");
		ssize_t k = read(fd, buf, left < COPY_CHUNK ? left : COPY_CHUNK);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return kiln_err(k < 0 ? errno : EIO, "scratch file: %s",
					k < 0 ? strerror(errno) : "short read");
		if (archive_write_data(a, buf, (size_t)k) != k)
			return kiln_err(EIO, "%s", archive_error_string(a));
		left -= (uint64_t)k;
	}
	return 0;
}

static bool ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* Manifest paths are UTF-8 (they come from JSON), and libarchive takes names in the locale's
   charset: with this thread's LC_CTYPE a UTF-8 locale they are written as they are and marked
   UTF-8 (uselocale, not setlocale: the coordinator has many threads). */
int kiln_archive_write(kiln_cas *cas, const kiln_manifest *m, int fd, kiln_archive_format fmt,
		       const char *scratch_dir, volatile sig_atomic_t *stop)
{
	bool zip = fmt == KILN_ARCHIVE_ZIP;
	locale_t utf = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	locale_t old = utf ? uselocale(utf) : (locale_t)0;
	bool utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	struct archive *a = archive_write_new();
	int r = a ? 0 : kiln_err(ENOMEM, "out of memory");
	if (zip) {
		if (archive_write_set_format_zip(a) != ARCHIVE_OK)
			r = kiln_err(EINVAL, "zip: %s", archive_error_string(a));
	} else {
		if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
		    archive_write_add_filter_zstd(a) != ARCHIVE_OK ||
		    archive_write_set_options(a, "zstd:compression-level=3") != ARCHIVE_OK)
			r = kiln_err(EINVAL, "tar.zst: %s", archive_error_string(a));
	}
	if (r == 0 && archive_write_open_fd(a, fd) != ARCHIVE_OK)
		r = kiln_err(EIO, "%s", archive_error_string(a));
	bool opened = r == 0;
	time_t now = time(NULL);
	int scratch = -1;
	struct archive_entry *ae = archive_entry_new();
	for (size_t i = 0; r == 0 && i < m->n; i++) {
		const kiln_manifest_entry *e = &m->v[i];
		if (stop && *stop) {
			r = kiln_err(EINTR, "interrupted");
			break;
		}
		if (!utf8 && (!ascii(e->path) || (e->target && !ascii(e->target)))) {
			r = kiln_err(EILSEQ, "%s: a non-ASCII name needs a UTF-8 locale", e->path);
			break;
		}
		archive_entry_clear(ae);
		archive_entry_copy_pathname(ae, e->path);
		archive_entry_set_mtime(ae, now, 0);
		switch (e->type) {
		case KILN_ENTRY_DIR:
			archive_entry_set_filetype(ae, AE_IFDIR);
			archive_entry_set_perm(ae, e->mode & 0777);
			break;
		case KILN_ENTRY_SYMLINK:
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_perm(ae, 0777);
			archive_entry_copy_symlink(ae, e->target);
			break;
		case KILN_ENTRY_FILE:
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, e->mode & 0777);
			archive_entry_set_size(ae, (la_int64_t)e->size);
			break;
		}
		if (archive_write_header(a, ae) < ARCHIVE_WARN) {
			r = kiln_err(EIO, "%s: %s", e->path, archive_error_string(a));
			break;
		}
		if (e->type == KILN_ENTRY_FILE) {
			r = archive_file(cas, scratch_dir, stop, a, e, &scratch);
			if (r < 0)
				kiln_err_prefix("%s", e->path);
		}
	}
	archive_entry_free(ae);
	if (scratch >= 0)
		close(scratch);
	if (opened && archive_write_close(a) != ARCHIVE_OK && r == 0)
		r = kiln_err(EIO, "%s", archive_error_string(a));
	if (a)
		archive_write_free(a);
	if (utf) {
		uselocale(old);
		freelocale(utf);
	}
	return r;
}

