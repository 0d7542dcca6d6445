/*
 * manifest — a directory tree as a list of entries (path, type, mode, size,
 * digest, symlink target) whose file contents live in the CAS. Caches and
 * artifacts are manifests; a manifest is itself stored as a blob, as compact
 * JSON with the entries sorted by path, so the same tree always has the same
 * digest and an unchanged re-save adds nothing.
 *
 * Restoring treats the manifest as hostile: it is checked whole before
 * anything is written (canonical relative paths only, no "..", no absolute
 * paths, no entry below a symlink or a file, no symlink whose target leaves
 * the tree, no device files, no setuid/setgid/sticky bits, entry counts and
 * sizes within the store's limits), and every file is created with openat2
 * RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS relative to the target directory, so
 * nothing is ever written through a symlink or outside the target. Symlinks
 * are created last.
 */
#ifndef KILN_MANIFEST_H
#define KILN_MANIFEST_H

#include "common/cas.h"
#include "common/util.h"

typedef enum kiln_entry_type {
	KILN_ENTRY_FILE,
	KILN_ENTRY_DIR,
	KILN_ENTRY_SYMLINK,
} kiln_entry_type;

typedef struct kiln_manifest_entry {
	char *path; /* relative, canonical: "a/b/c" */
	kiln_entry_type type;
	uint32_t mode;  /* permission bits only (<= 0777) */
	uint64_t size;  /* files */
	char digest[65]; /* files */
	char *target;   /* symlinks */
} kiln_manifest_entry;

typedef struct kiln_manifest {
	kiln_manifest_entry *v;
	size_t n, cap;
} kiln_manifest;

/* Frees the manifest and its entries; NULL is a no-op. */
void kiln_manifest_free(kiln_manifest *m);
void kiln_manifest_freep(kiln_manifest **m);

/* Walks each of paths (relative to root; directories recursively, symlinks not followed),
   stores every file in cas using its worker threads, and returns the sorted manifest.
   Sockets, fifos and devices are skipped; setuid/setgid/sticky bits are dropped. */
int kiln_manifest_build(kiln_cas *cas, const char *root, const char *const *paths, size_t npaths,
			kiln_manifest **out);
/* Stores the manifest's JSON in cas and writes its digest to out_hex. */
int kiln_manifest_save(kiln_cas *cas, const kiln_manifest *m, char out_hex[65]);
/* Loads and checks the manifest stored as hex. */
int kiln_manifest_load(kiln_cas *cas, const char *hex, kiln_manifest **out);

/* The manifest as compact JSON (owned by the caller). */
char *kiln_manifest_to_json(const kiln_manifest *m);
/* Parses and checks JSON against lim; the error names the offending entry. */
int kiln_manifest_from_json(const char *json, size_t len, const kiln_cas_limits *lim,
			    kiln_manifest **out);
/* Sorts m by path and refuses anything a restore would refuse. */
int kiln_manifest_check(kiln_manifest *m, const kiln_cas_limits *lim);

/* Appends to out the distinct file digests of m that cas lacks. */
int kiln_manifest_find_missing(kiln_cas *cas, const kiln_manifest *m, kiln_strv *out);

/* Asked for a blob the local store lacks; must put it into cas (e.g. from the coordinator). */
typedef int (*kiln_fetch_fn)(void *ud, kiln_cas *cas, const char *hex);

/* Writes m into dir (created if missing; existing files at entry paths are replaced),
   fetching missing blobs through fetch first (may be NULL). On failure the target may hold
   part of the tree, but nothing is ever written outside it. */
int kiln_manifest_restore(kiln_cas *cas, kiln_manifest *m, const char *dir, kiln_fetch_fn fetch,
			  void *ud);

#endif
