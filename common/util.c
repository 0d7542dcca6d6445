/*
 * util — implementation of the helpers in util.h. Nothing here knows about
 * workflows or the wire; it is the floor the other modules stand on.
 */
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

static _Thread_local char errbuf[1024];

void kiln_freep(void *p)
{
	free(*(void **)p);
}

int kiln_err(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return err > 0 ? -err : err;
}

const char *kiln_errmsg(void)
{
	return errbuf;
}

void kiln_err_prefix(const char *fmt, ...)
{
	char pre[512], old[sizeof errbuf];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	memcpy(old, errbuf, sizeof old);
	size_t n = strlen(pre);
	if (n > sizeof errbuf - 3)
		n = sizeof errbuf - 3;
	memcpy(errbuf, pre, n);
	memcpy(errbuf + n, ": ", 2);
	size_t m = strnlen(old, sizeof old);
	if (m > sizeof errbuf - n - 3)
		m = sizeof errbuf - n - 3;
	memcpy(errbuf + n + 2, old, m);
	errbuf[n + 2 + m] = '\0';
}

static void oom(void)
{
	fputs("kiln: out of memory\n", stderr);
	abort();
}

void *kiln_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *kiln_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *kiln_realloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *kiln_strdup(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		oom();
	return d;
}

char *kiln_asprintf(const char *fmt, ...)
{
	char *s;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		oom();
	return s;
}

static void buf_reserve(kiln_buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->p = kiln_realloc(b->p, cap);
	b->cap = cap;
}

void kiln_buf_append(kiln_buf *b, const void *data, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void kiln_buf_puts(kiln_buf *b, const char *s)
{
	kiln_buf_append(b, s, strlen(s));
}

void kiln_buf_printf(kiln_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *kiln_buf_steal(kiln_buf *b)
{
	char *p = b->p ? b->p : kiln_strdup("");
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

void kiln_buf_free(kiln_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void kiln_strv_push_owned(kiln_strv *sv, char *s)
{
	if (sv->n + 2 > sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 8;
		sv->v = kiln_realloc(sv->v, sv->cap * sizeof(char *));
	}
	sv->v[sv->n++] = s;
	sv->v[sv->n] = NULL;
}

void kiln_strv_push(kiln_strv *sv, const char *s)
{
	kiln_strv_push_owned(sv, kiln_strdup(s));
}

bool kiln_strv_contains(const kiln_strv *sv, const char *s)
{
	for (size_t i = 0; i < sv->n; i++)
		if (strcmp(sv->v[i], s) == 0)
			return true;
	return false;
}

void kiln_strv_free(kiln_strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

void kiln_strv_split(kiln_strv *out, const char *s, const char *seps)
{
	while (s && *s) {
		size_t n = strcspn(s, seps);
		const char *a = s, *e = s + n;
		while (a < e && (*a == ' ' || *a == '\t'))
			a++;
		while (e > a && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > a)
			kiln_strv_push_owned(out, strndup(a, (size_t)(e - a)));
		s += n;
		if (*s)
			s++;
	}
}

int64_t kiln_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t kiln_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int kiln_read_file(const char *path, size_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", path, strerror(errno));
	kiln_buf b = {0};
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			kiln_buf_free(&b);
			return kiln_err(e, "%s: %s", path, strerror(e));
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > max) {
			close(fd);
			kiln_buf_free(&b);
			return kiln_err(EFBIG, "%s: larger than the limit of %zu bytes", path, max);
		}
		kiln_buf_append(&b, chunk, (size_t)n);
	}
	close(fd);
	if (len)
		*len = b.len;
	*out = kiln_buf_steal(&b);
	return 0;
}

int kiln_write_file_atomic(const char *path, const void *data, size_t len, int mode)
{
	_cleanup_free_ char *tmp = kiln_asprintf("%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", tmp, strerror(errno));
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			unlink(tmp);
			return kiln_err(e, "%s: %s", tmp, strerror(e));
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return kiln_err(e, "%s: %s", tmp, strerror(e));
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return kiln_err(e, "%s: %s", path, strerror(e));
	}
	return 0;
}

int kiln_mkdir_p(const char *path, int mode)
{
	_cleanup_free_ char *p = kiln_strdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST)
			return kiln_err(errno, "mkdir %s: %s", p, strerror(errno));
		*s = '/';
	}
	if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST)
		return kiln_err(errno, "mkdir %s: %s", p, strerror(errno));
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	if (flag == FTW_D) /* unreadable directory: make it readable and try */
		return 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int kiln_rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : kiln_err(errno, "%s: %s", path, strerror(errno));
	if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return kiln_err(errno, "rm -rf %s: %s", path, strerror(errno));
	return 0;
}

int kiln_clear_dir(const char *path, int mode)
{
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? kiln_mkdir_p(path, mode)
				       : kiln_err(errno, "%s: %s", path, strerror(errno));
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *p = kiln_asprintf("%s/%s", path, de->d_name);
		if (kiln_rm_rf(p) < 0)
			r = -EIO;
	}
	closedir(d);
	return r < 0 ? kiln_err(EIO, "cannot empty %s", path) : 0;
}

int kiln_mkdtemp_in(const char *base, const char *prefix, char **out)
{
	char *p = kiln_asprintf("%s/%s.XXXXXX", base, prefix);
	if (!mkdtemp(p)) {
		int e = errno;
		free(p);
		return kiln_err(e, "mkdtemp in %s: %s", base, strerror(e));
	}
	*out = p;
	return 0;
}

int kiln_mkdtemp(const char *prefix, char **out)
{
	const char *tmp = getenv("TMPDIR");
	return kiln_mkdtemp_in(tmp && *tmp ? tmp : "/tmp", prefix, out);
}

void kiln_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int kiln_random_hex(size_t bytes, char *out)
{
	unsigned char b[64];
	if (bytes > sizeof b || RAND_bytes(b, (int)bytes) != 1)
		return kiln_err(EIO, "random bytes unavailable");
	for (size_t i = 0; i < bytes; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}

int kiln_parse_duration_ms(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s ? s : "", &end);
	if (!s || end == s || errno || v < 0)
		return kiln_err(EINVAL, "bad duration '%s'", s ? s : "");
	double mul = 1000;
	if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else if (strcmp(end, "d") == 0)
		mul = 86400000;
	else if (*end && strcmp(end, "s") != 0)
		return kiln_err(EINVAL, "bad duration '%s'", s);
	if (v * mul > 9e15)
		return kiln_err(ERANGE, "duration '%s' too large", s);
	*out = (int64_t)(v * mul);
	return 0;
}

int kiln_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s ? s : "", &end, 10);
	if (!s || end == s || errno || *s == '-')
		return kiln_err(EINVAL, "bad size '%s'", s ? s : "");
	unsigned shift = 0;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	default: break;
	}
	if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
		end += strlen(end);
	if (*end)
		return kiln_err(EINVAL, "bad size '%s'", s);
	if (shift && v > (UINT64_MAX >> shift))
		return kiln_err(ERANGE, "size '%s' too large", s);
	*out = (uint64_t)v << shift;
	return 0;
}

static const char *log_ident = "kiln";
static int log_max = KILN_LOG_INFO;

void kiln_log_setup(const char *ident, int max_level)
{
	log_ident = ident;
	__atomic_store_n(&log_max, max_level, __ATOMIC_RELAXED); /* SIGHUP changes it live */
}

void kiln_log(int prio, const char *fmt, ...)
{
	if (prio > __atomic_load_n(&log_max, __ATOMIC_RELAXED))
		return;
	char line[2048];
	int n = snprintf(line, sizeof line, "<%d>%s: ", prio, log_ident);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fputs(line, stderr);
}

int kiln_log_level_parse(const char *s, int *out)
{
	static const char *const names[] = {"emerg", "alert", "crit", "err",
					    "warning", "notice", "info", "debug"};
	for (int i = 0; i < 8; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return kiln_err(EINVAL, "bad log level '%s' (err, warning, notice, info, debug)", s);
}
