/*
 * util — the small things every kiln module leans on: cleanup attributes,
 * a thread-local error message beside negative-errno returns, a growable
 * byte buffer, string vectors, clocks and file helpers with size caps.
 */
#ifndef KILN_UTIL_H
#define KILN_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define KILN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define KILN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Frees *(void **)p; for _cleanup_free_ locals. */
void kiln_freep(void *p);
#define _cleanup_free_ _cleanup_(kiln_freep)

/* Sets the calling thread's error message; returns -err so callers can `return kiln_err(...)`. */
int kiln_err(int err, const char *fmt, ...) KILN_PRINTF(2, 3);
/* The calling thread's last error message ("" if none); borrowed. */
const char *kiln_errmsg(void);
/* Prefixes the thread's error message with "prefix: ". */
void kiln_err_prefix(const char *fmt, ...) KILN_PRINTF(1, 2);

/* Allocates and formats; never returns NULL (aborts on OOM). */
char *kiln_asprintf(const char *fmt, ...) KILN_PRINTF(1, 2);
/* strdup that aborts on OOM and maps NULL to NULL. */
char *kiln_strdup(const char *s);
/* malloc/calloc/realloc that abort on OOM. */
void *kiln_malloc(size_t n);
void *kiln_calloc(size_t n, size_t size);
void *kiln_realloc(void *p, size_t n);

/* A growable byte buffer; always NUL-terminated after any append. */
typedef struct kiln_buf {
	char *p;
	size_t len;
	size_t cap;
} kiln_buf;
void kiln_buf_append(kiln_buf *b, const void *data, size_t n);
void kiln_buf_puts(kiln_buf *b, const char *s);
void kiln_buf_printf(kiln_buf *b, const char *fmt, ...) KILN_PRINTF(2, 3);
/* Hands the contents to the caller and resets the buffer. */
char *kiln_buf_steal(kiln_buf *b);
void kiln_buf_free(kiln_buf *b);

/* A NULL-terminated vector of owned strings. */
typedef struct kiln_strv {
	char **v;
	size_t n;
	size_t cap;
} kiln_strv;
void kiln_strv_push(kiln_strv *sv, const char *s);
void kiln_strv_push_owned(kiln_strv *sv, char *s);
bool kiln_strv_contains(const kiln_strv *sv, const char *s);
void kiln_strv_free(kiln_strv *sv);
/* Splits s at each character of `seps`, dropping empty pieces and trimming spaces. */
void kiln_strv_split(kiln_strv *out, const char *s, const char *seps);

/* Wall-clock milliseconds since the epoch. */
int64_t kiln_now_ms(void);
/* Monotonic nanoseconds. */
int64_t kiln_mono_ns(void);

/* Reads a whole file of at most `max` bytes into a NUL-terminated buffer. */
int kiln_read_file(const char *path, size_t max, char **out, size_t *len);
/* Writes data to path through a temporary file and rename(). */
int kiln_write_file_atomic(const char *path, const void *data, size_t len, int mode);
/* mkdir -p. */
int kiln_mkdir_p(const char *path, int mode);
/* rm -rf; a missing path is not an error. */
int kiln_rm_rf(const char *path);
/* Empties a directory, keeping it; a missing directory is created. */
int kiln_clear_dir(const char *path, int mode);
/* Makes a fresh temporary directory under $TMPDIR (or /tmp) named prefix.XXXXXX. */
int kiln_mkdtemp(const char *prefix, char **out);
/* Makes a fresh temporary directory base/prefix.XXXXXX. */
int kiln_mkdtemp_in(const char *base, const char *prefix, char **out);
/* Hex SHA-256 of data (65 bytes with NUL). */
void kiln_sha256_hex(const void *data, size_t len, char out[65]);
/* Random hex token of `bytes` random bytes (2*bytes+1 chars). */
int kiln_random_hex(size_t bytes, char *out);

/* Log priorities, as syslog and journald number them. */
enum { KILN_LOG_ERR = 3, KILN_LOG_WARNING = 4, KILN_LOG_NOTICE = 5, KILN_LOG_INFO = 6, KILN_LOG_DEBUG = 7 };
/* Sets the name that prefixes log lines and the most verbose priority written. */
void kiln_log_setup(const char *ident, int max_level);
/* Writes "<prio>ident: message" to stderr, one line, if prio is within the level. */
void kiln_log(int prio, const char *fmt, ...) KILN_PRINTF(2, 3);
/* Parses "err", "warning", "notice", "info", "debug"; -EINVAL otherwise. */
int kiln_log_level_parse(const char *s, int *out);

/* Parses a duration: "250ms", "15s", "2m", "1h", or bare seconds; -EINVAL if malformed. */
int kiln_parse_duration_ms(const char *s, int64_t *out);
/* Parses a size: "512", "64K", "4M", "1G" (powers of 1024, optional "iB"/"B"); -EINVAL if malformed. */
int kiln_parse_size(const char *s, uint64_t *out);

#endif
