/*
 * archive — a manifest written out as one archive through libarchive: a
 * .tar.zst (pax, zstd level 3) or a .zip, entries at the archive's root with
 * their modes, symlinks as symlinks, file contents from the store (each
 * checked against its digest as it is read). `kiln download` and the
 * coordinator's artifact download both use it.
 */
#ifndef KILN_ARCHIVE_H
#define KILN_ARCHIVE_H

#include <signal.h>
#include <stdbool.h>

#include "common/cas.h"
#include "common/manifest.h"

typedef enum kiln_archive_format { KILN_ARCHIVE_TAR_ZST, KILN_ARCHIVE_ZIP } kiln_archive_format;

/* Writes m to fd. Files over 4 MiB pass through an unnamed scratch file in scratch_dir, so
   memory stays bounded. `stop` (may be NULL) is looked at between entries. Names are written
   as UTF-8 (the calling thread's locale is set to C.UTF-8 for the call and restored). */
int kiln_archive_write(kiln_cas *cas, const kiln_manifest *m, int fd, kiln_archive_format fmt,
		       const char *scratch_dir, volatile sig_atomic_t *stop);

/* An unnamed scratch file in dir (O_TMPFILE, else a file unlinked at once). */
int kiln_scratch_fd(const char *dir);

#endif
