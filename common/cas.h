/*
 * cas — the content-addressed store shared by the coordinator and the agent.
 *
 * A blob is named by the lowercase hex SHA-256 of its content and kept as a
 * zstd frame. Where a blob lives is hidden behind this API:
 *
 *   ROOT/cas/small.db             SQLite (WAL): an index of every blob (size,
 *                                 stored size, last use, where its frame is)
 *   ROOT/cas/packs/<id>.pack      the frames of small blobs (compressed size
 *                                 <= small_max), appended back to back
 *   ROOT/cas/sha256/ab/<hex>      the frame of each bigger blob, one file
 *   ROOT/cas/tmp/                 files being written; renamed when complete
 *
 * Small blobs go to packs because on the disks kiln runs on a file creation
 * costs 0.1–1 ms, which for a tree of 50,000 small files would cost far more
 * than compressing them; a batch of puts appends its frames with one write per
 * MiB and commits one transaction of index rows. Bigger blobs are files so
 * that they can be streamed and their space is given back as soon as they are
 * evicted. A removed packed blob leaves dead bytes in its pack until the pack
 * is rewritten (kiln_cas_compact, run by evict and by close after removals):
 * a pack more than a third dead is rewritten, so the packs take at most about
 * 1.5 x the live bytes, plus each writer's current pack (< 64 MiB).
 *
 * Every read decompresses and re-hashes: a blob whose content does not match
 * its name is never served, is removed, and counts as missing from then on.
 * Because of that, writes need no fsync; a torn write is found on read.
 *
 * A store made by the first version (small frames as rows of small.db) is
 * migrated once, on its first open, in one transaction: its frames move into
 * a pack and the database is vacuumed.
 *
 * All functions are thread-safe (one mutex around the database and the pack
 * being written); compression, hashing and reading frames happen outside it.
 * Several handles, in one process or several, may use one root at once.
 */
#ifndef KILN_CAS_H
#define KILN_CAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kiln_cas kiln_cas;

/* Limits on everything the store and its manifests read from outside. */
typedef struct kiln_cas_limits {
	uint64_t small_max;         /* frames up to this many bytes go into packs */
	uint64_t max_blob_size;     /* largest uncompressed blob accepted or served */
	uint64_t max_manifest_size; /* largest manifest (uncompressed JSON) */
	uint64_t max_entries;       /* entries in one manifest */
	uint64_t max_total_size;    /* sum of file sizes in one manifest */
	uint32_t max_path_len;      /* bytes in one entry path or symlink target */
	uint32_t max_depth;         /* components in one entry path */
	int threads;                /* threads (including the caller's) for save and restore */
	int level;                  /* zstd level for new blobs */
} kiln_cas_limits;

#define KILN_CAS_LIMITS_INIT                                                                       \
	{                                                                                          \
		.small_max = 256 << 10, .max_blob_size = 16ull << 30,                              \
		.max_manifest_size = 256 << 20, .max_entries = 2000000,                            \
		.max_total_size = 256ull << 30, .max_path_len = 4096, .max_depth = 256,            \
		.threads = 2, .level = 3,                                                          \
	}

/* Hex digest of the empty blob. */
#define KILN_CAS_EMPTY_DIGEST "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Opens (creating if needed) the store under root/cas; lim may be NULL for the defaults. */
int kiln_cas_open(const char *root, const kiln_cas_limits *lim, kiln_cas **out);
/* Closes the store, committing an open batch; NULL is a no-op. */
void kiln_cas_close(kiln_cas *cas);
void kiln_cas_closep(kiln_cas **cas);
/* The limits the store was opened with; borrowed. */
const kiln_cas_limits *kiln_cas_limits_get(const kiln_cas *cas);

/* True if hex is 64 lowercase hex digits. */
bool kiln_cas_digest_valid(const char *hex);

/* Starts a batch: puts and touches until kiln_cas_batch_end share one transaction. Nests. */
int kiln_cas_batch_begin(kiln_cas *cas);
/* Ends a batch; the outermost end commits. */
int kiln_cas_batch_end(kiln_cas *cas);

/* 1 if the store holds hex, 0 if not (a big blob whose file is gone counts as missing). */
int kiln_cas_has(kiln_cas *cas, const char *hex);

/* Stores data; writes its digest to out_hex. Returns 1 if added, 0 if it was already there. */
int kiln_cas_put_buf(kiln_cas *cas, const void *data, size_t len, char out_hex[65]);
/* Stores the rest of fd (read to EOF, streamed when large); returns 1 if added, 0 if present. */
int kiln_cas_put_fd(kiln_cas *cas, int fd, char out_hex[65], uint64_t *size);
/* Stores a zstd frame received from elsewhere after checking it decompresses to content
   named expected_hex; -EBADMSG (nothing kept) if not. Returns 1 if added, 0 if present. */
int kiln_cas_put_compressed(kiln_cas *cas, const char *expected_hex, const void *frame,
			    size_t len);

/* Reads blob hex (at most max bytes) into a new NUL-terminated buffer. -ENOENT if missing,
   -EBADMSG if its content does not match its name (the blob is then removed). */
int kiln_cas_get_buf(kiln_cas *cas, const char *hex, uint64_t max, char **out, size_t *len);
/* Writes blob hex to fd, at most max bytes, verifying as it streams; returns the byte count.
   On -EBADMSG the blob is removed and what was written to fd must be discarded. */
int64_t kiln_cas_get_to_fd(kiln_cas *cas, const char *hex, int fd, uint64_t max);
/* Copies up to cap bytes of the stored frame of hex from offset off into buf, for sending
   without recompressing; sets *n and *total (the frame's size). Not verified: the receiver
   checks with kiln_cas_put_compressed. */
int kiln_cas_read_compressed(kiln_cas *cas, const char *hex, uint64_t off, void *buf, size_t cap,
			     size_t *n, uint64_t *total);

/* Decompresses and hashes hex: 1 if intact, 0 if missing, -EBADMSG (and removed) if corrupt. */
int kiln_cas_verify(kiln_cas *cas, const char *hex);
/* Marks hex as just used, for LRU eviction; 0 if missing. */
int kiln_cas_touch(kiln_cas *cas, const char *hex);
/* Removes hex; 0 if it was not there. */
int kiln_cas_remove(kiln_cas *cas, const char *hex);
/* Removes least recently used blobs until the stored bytes are at most max_bytes, then
   compacts; returns how many were removed. */
int kiln_cas_evict(kiln_cas *cas, uint64_t max_bytes);
/* Stored (compressed) bytes and blob count. */
int kiln_cas_total(kiln_cas *cas, uint64_t *bytes, uint64_t *count);

/* Rewrites the packs more than a third dead (whose writers are done with them) and deletes
   the unused ones; *freed (may be NULL) gets the bytes given back. Returns how many packs
   went; does nothing inside a batch. */
int kiln_cas_compact(kiln_cas *cas, uint64_t *freed);

/* Calls fn for every blob (a snapshot taken first, so fn may remove blobs); stops at and
   returns fn's first non-zero result. */
typedef int (*kiln_cas_foreach_fn)(void *ud, const char *hex, uint64_t size, uint64_t stored);
int kiln_cas_foreach(kiln_cas *cas, kiln_cas_foreach_fn fn, void *ud);

#endif
