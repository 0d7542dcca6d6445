/*
 * logs — job and run logs as append-only files of lines, one file per job
 * attempt (logs/job-<job>-<attempt>.log) and one per run (logs/run-<id>.log).
 * A line's index is its offset for the API. Opening a file scans it once,
 * drops a torn last line (a crash mid-write), and keeps a sparse index of
 * byte positions so reading from an offset does not rescan the file.
 */
#include "coordinator/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_EVERY 256

struct logfile {
	int fd;
	uint64_t last_key; /* the number that starts the last line (a job log's sequence) */
	bool capped;       /* ends with the truncation marker: later lines are dropped */
	uint64_t lines;
	uint64_t bytes;
	uint64_t *index; /* byte offset of line k*INDEX_EVERY */
	size_t nindex, capindex;
};

static void index_add(logfile *f, uint64_t pos)
{
	if (f->nindex == f->capindex) {
		f->capindex = f->capindex ? f->capindex * 2 : 64;
		f->index = kiln_realloc(f->index, f->capindex * sizeof *f->index);
	}
	f->index[f->nindex++] = pos;
}

int logfile_open(const char *path, logfile **out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", path, strerror(errno));
	logfile *f = kiln_calloc(1, sizeof *f);
	f->fd = fd;
	char buf[65536];
	uint64_t pos = 0, line_start = 0;
	index_add(f, 0);
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof buf, (off_t)pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n')
				continue;
			f->lines++;
			line_start = pos + (uint64_t)i + 1;
			if (f->lines % INDEX_EVERY == 0)
				index_add(f, line_start);
		}
		pos += (uint64_t)n;
	}
	if (line_start != pos && ftruncate(fd, (off_t)line_start) < 0) {
		int e = errno;
		logfile_close(f);
		return kiln_err(e, "%s: %s", path, strerror(e));
	}
	f->bytes = line_start;
	if (f->lines) {
		/* the last line starts after the newline before the end */
		char tail[64] = "";
		uint64_t from = f->bytes > 4096 ? f->bytes - 4096 : 0;
		char *buf2 = kiln_malloc(f->bytes - from + 1);
		ssize_t n = pread(fd, buf2, (size_t)(f->bytes - from), (off_t)from);
		if (n > 0) {
			buf2[n] = '\0';
			if (n >= 1)
				buf2[n - 1] = '\0'; /* the final newline */
			char *nl = strrchr(buf2, '\n');
			snprintf(tail, sizeof tail, "%.20s", nl ? nl + 1 : buf2);
			f->capped = strstr(nl ? nl + 1 : buf2, LOGFILE_CAP_MARK) != NULL;
		}
		free(buf2);
		f->last_key = strtoull(tail, NULL, 10);
	}
	*out = f;
	return 0;
}

uint64_t logfile_last_key(const logfile *f)
{
	return f->last_key;
}

bool logfile_capped(const logfile *f)
{
	return f->capped;
}

void logfile_set_capped(logfile *f)
{
	f->capped = true;
}

void logfile_close(logfile *f)
{
	if (!f)
		return;
	close(f->fd);
	free(f->index);
	free(f);
}

uint64_t logfile_count(const logfile *f)
{
	return f->lines;
}

uint64_t logfile_bytes(const logfile *f)
{
	return f->bytes;
}

int logfile_append_lines(logfile *f, const char *buf, size_t len)
{
	if (len == 0)
		return 0;
	assert(buf[len - 1] == '\n');
	const char *q = buf;
	size_t left = len;
	while (left > 0) {
		ssize_t n = write(f->fd, q, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = kiln_err(errno, "log write: %s", strerror(errno));
			/* never leave a torn line behind */
			if (ftruncate(f->fd, (off_t)f->bytes) < 0)
				return r;
			return r;
		}
		q += n;
		left -= (size_t)n;
	}
	const char *last = buf;
	for (const char *p = buf, *end = buf + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		last = p;
		f->bytes += (uint64_t)(nl - p) + 1;
		f->lines++;
		if (f->lines % INDEX_EVERY == 0)
			index_add(f, f->bytes);
		p = nl + 1;
	}
	f->last_key = strtoull(last, NULL, 10);
	return 0;
}

int logfile_append(logfile *f, const char *line, size_t len)
{
	char stackbuf[4096];
	char *p = len + 1 <= sizeof stackbuf ? stackbuf : kiln_malloc(len + 1);
	memcpy(p, line, len);
	p[len] = '\n';
	int r = logfile_append_lines(f, p, len + 1);
	if (p != stackbuf)
		free(p);
	return r;
}

int64_t logfile_read(logfile *f, uint64_t offset, size_t max_lines, size_t max_bytes,
		     logfile_line_fn fn, void *arg)
{
	if (offset >= f->lines)
		return 0;
	uint64_t line = (offset / INDEX_EVERY) * INDEX_EVERY;
	uint64_t pos = f->index[offset / INDEX_EVERY];
	kiln_buf cur = {0};
	char buf[65536];
	int64_t got = 0;
	size_t bytes = 0;
	while (pos < f->bytes && (size_t)got < max_lines && bytes < max_bytes) {
		size_t want = sizeof buf;
		if (f->bytes - pos < want)
			want = (size_t)(f->bytes - pos);
		ssize_t n = pread(f->fd, buf, want, (off_t)pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		ssize_t start = 0;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n')
				continue;
			if (line >= offset) {
				kiln_buf_append(&cur, buf + start, (size_t)(i - start));
				fn(arg, line, cur.p, cur.len);
				bytes += cur.len;
				got++;
			}
			cur.len = 0;
			line++;
			start = i + 1;
			if ((size_t)got >= max_lines || bytes >= max_bytes)
				break;
		}
		if (line >= offset && start < n && (size_t)got < max_lines && bytes < max_bytes)
			kiln_buf_append(&cur, buf + start, (size_t)(n - start));
		pos += (uint64_t)n;
	}
	kiln_buf_free(&cur);
	return got;
}

char *coord_log_path(const coord *c, uint64_t id, uint32_t attempt)
{
	/* one flat directory (made at start): a directory per job would cost a mkdir per job */
	return attempt ? kiln_asprintf("%s/logs/job-%llu-%u.log", c->data_dir,
				       (unsigned long long)id, attempt)
		       : kiln_asprintf("%s/logs/run-%llu.log", c->data_dir, (unsigned long long)id);
}

logfile *coord_log(coord *c, uint64_t id, uint32_t attempt)
{
	for (open_log *l = c->logs; l; l = l->next)
		if (l->id == id && l->attempt == attempt)
			return l->f;
	_cleanup_free_ char *path = coord_log_path(c, id, attempt);
	logfile *f;
	if (logfile_open(path, &f) < 0) {
		kiln_log(3, "%s", kiln_errmsg());
		return NULL;
	}
	open_log *l = kiln_calloc(1, sizeof *l);
	l->id = id;
	l->attempt = attempt;
	l->f = f;
	l->next = c->logs;
	c->logs = l;
	return f;
}

void coord_log_close(coord *c, uint64_t id, uint32_t attempt)
{
	for (open_log **p = &c->logs; *p; p = &(*p)->next) {
		if ((*p)->id == id && (*p)->attempt == attempt) {
			open_log *l = *p;
			*p = l->next;
			logfile_close(l->f);
			free(l);
			return;
		}
	}
}
