/*
 * logs — a job attempt's log is an append-only file of lines in the form of
 * common/logline.h (logs/job-<job>-<attempt>.log); a line's index is its
 * offset for the API. Opening a file scans it once, drops a torn last line (a
 * crash mid-write), and keeps a sparse index of byte positions so reading
 * from an offset does not rescan the file. A run's log is not a copy of its
 * jobs' lines but an index over them (logs/run-<id>.idx): one fixed-size
 * record per stored batch, naming the job attempt and its lines.
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

/* Logs of at least this many lines keep their index beside them once closed
   (<log>.idx), so reading a finished log does not scan all of it again. */
#define SIDECAR_MIN_LINES 4096
#define SIDECAR_MAGIC "kiln-logidx-1\n\n\n"

typedef struct sidecar_head {
	char magic[16];
	uint64_t bytes, lines, last_key, nindex;
	uint32_t capped, reserved;
} sidecar_head;

struct logfile {
	int fd;
	char *path;
	bool dirty; /* appended to since it was opened */
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

/* Loads the index kept beside the log when it still describes the file as it is. */
static bool sidecar_load(logfile *f)
{
	_cleanup_free_ char *path = kiln_asprintf("%s.idx", f->path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	sidecar_head h;
	struct stat st;
	bool ok = read(fd, &h, sizeof h) == (ssize_t)sizeof h &&
		  memcmp(h.magic, SIDECAR_MAGIC, sizeof h.magic) == 0 && fstat(f->fd, &st) == 0 &&
		  (uint64_t)st.st_size == h.bytes && h.nindex == h.lines / INDEX_EVERY + 1;
	if (ok) {
		uint64_t *index = kiln_malloc(h.nindex * sizeof *index);
		ssize_t want = (ssize_t)(h.nindex * sizeof *index);
		ok = read(fd, index, (size_t)want) == want;
		if (ok) {
			free(f->index);
			f->index = index;
			f->nindex = f->capindex = h.nindex;
			f->bytes = h.bytes;
			f->lines = h.lines;
			f->last_key = h.last_key;
			f->capped = h.capped != 0;
		} else {
			free(index);
		}
	}
	close(fd);
	return ok;
}

/* Keeps the index beside the log (no fsync: a torn one does not match and is ignored). */
static void sidecar_save(const logfile *f)
{
	_cleanup_free_ char *path = kiln_asprintf("%s.idx", f->path);
	_cleanup_free_ char *tmp = kiln_asprintf("%s.idx.tmp", f->path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return;
	sidecar_head h = {.bytes = f->bytes, .lines = f->lines, .last_key = f->last_key,
			  .nindex = f->nindex, .capped = f->capped};
	memcpy(h.magic, SIDECAR_MAGIC, sizeof h.magic);
	ssize_t want = (ssize_t)(f->nindex * sizeof *f->index);
	bool ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h &&
		  write(fd, f->index, (size_t)want) == want;
	close(fd);
	if (!ok || rename(tmp, path) < 0)
		unlink(tmp);
}

int logfile_open(const char *path, logfile **out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", path, strerror(errno));
	logfile *f = kiln_calloc(1, sizeof *f);
	f->fd = fd;
	f->path = kiln_strdup(path);
	if (sidecar_load(f)) {
		*out = f;
		return 0;
	}
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
	if (f->dirty && f->lines >= SIDECAR_MIN_LINES)
		sidecar_save(f);
	close(f->fd);
	free(f->path);
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
	f->dirty = true;
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

/* ---- a run's index ---- */

typedef struct runlog_rec {
	uint64_t job;
	uint32_t attempt;
	uint32_t reserved;
	uint64_t first_seq;
	uint64_t count;
} runlog_rec;

struct runlog {
	int fd;
	runlog_rec *seg; /* consecutive batches of one attempt merged */
	uint64_t *before; /* lines in the run before seg[i] */
	size_t n, cap;
	uint64_t total;
};

static void runlog_add(runlog *r, const runlog_rec *rec)
{
	if (rec->count == 0)
		return;
	runlog_rec *last = r->n ? &r->seg[r->n - 1] : NULL;
	if (last && last->job == rec->job && last->attempt == rec->attempt &&
	    last->first_seq + last->count == rec->first_seq) {
		last->count += rec->count;
	} else {
		if (r->n == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 16;
			r->seg = kiln_realloc(r->seg, r->cap * sizeof *r->seg);
			r->before = kiln_realloc(r->before, r->cap * sizeof *r->before);
		}
		r->seg[r->n] = *rec;
		r->before[r->n++] = r->total;
	}
	r->total += rec->count;
}

int runlog_open(const char *path, runlog **out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return kiln_err(errno, "%s: %s", path, strerror(errno));
	runlog *r = kiln_calloc(1, sizeof *r);
	r->fd = fd;
	runlog_rec recs[256];
	off_t pos = 0;
	for (;;) {
		ssize_t n = pread(fd, recs, sizeof recs, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (size_t i = 0; i < (size_t)n / sizeof *recs; i++)
			runlog_add(r, &recs[i]);
		pos += n / (ssize_t)sizeof *recs * (ssize_t)sizeof *recs;
		if ((size_t)n % sizeof *recs)
			break;
	}
	/* a torn record (a crash mid-write) goes */
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size != pos && ftruncate(fd, pos) < 0) {
		int e = errno;
		runlog_close(r);
		return kiln_err(e, "%s: %s", path, strerror(e));
	}
	*out = r;
	return 0;
}

void runlog_close(runlog *r)
{
	if (!r)
		return;
	close(r->fd);
	free(r->seg);
	free(r->before);
	free(r);
}

uint64_t runlog_count(const runlog *r)
{
	return r->total;
}

int runlog_append(runlog *r, uint64_t job, uint32_t attempt, uint64_t first_seq, uint64_t count)
{
	runlog_rec rec = {job, attempt, 0, first_seq, count};
	ssize_t n;
	while ((n = write(r->fd, &rec, sizeof rec)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof rec)
		return kiln_err(n < 0 ? errno : EIO, "run log index: %s",
				strerror(n < 0 ? errno : EIO));
	runlog_add(r, &rec);
	return 0;
}

typedef struct runlog_reader {
	runlog_line_fn fn;
	void *arg;
	uint64_t job;
	uint32_t attempt;
	size_t bytes;
} runlog_reader;

static void runlog_line(void *arg, uint64_t index, const char *line, size_t len)
{
	runlog_reader *rd = arg;
	(void)index;
	rd->bytes += len;
	rd->fn(rd->arg, rd->job, rd->attempt, line, len);
}

int64_t runlog_read(coord *c, runlog *r, uint64_t offset, size_t max_lines, size_t max_bytes,
		    runlog_line_fn fn, void *arg)
{
	if (offset >= r->total)
		return 0;
	/* the segment holding line `offset` */
	size_t lo = 0, hi = r->n;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (r->before[mid] <= offset)
			lo = mid;
		else
			hi = mid;
	}
	/* the job logs opened for this read (segments of a few jobs alternate: each file is opened,
	   and scanned when it has no index beside it, once per read, not once per segment) */
	struct {
		uint64_t job;
		uint32_t attempt;
		logfile *f;
		bool temp;
	} open[8];
	size_t nopen = 0;
	int64_t got = 0;
	size_t bytes = 0;
	for (size_t i = lo; i < r->n && (size_t)got < max_lines && bytes < max_bytes; i++) {
		const runlog_rec *s = &r->seg[i];
		uint64_t skip = offset > r->before[i] ? offset - r->before[i] : 0;
		logfile *f = NULL;
		size_t k = 0;
		while (k < nopen && !(open[k].job == s->job && open[k].attempt == s->attempt))
			k++;
		if (k < nopen) {
			f = open[k].f;
		} else {
			bool temp = false;
			f = coord_log_peek(c, s->job, s->attempt, &temp);
			if (nopen == KILN_ARRAY_SIZE(open)) { /* the oldest goes */
				if (open[0].temp)
					logfile_close(open[0].f);
				memmove(open, open + 1, (nopen - 1) * sizeof *open);
				nopen--;
			}
			open[nopen].job = s->job;
			open[nopen].attempt = s->attempt;
			open[nopen].f = f;
			open[nopen++].temp = temp;
		}
		runlog_reader rd = {fn, arg, s->job, s->attempt, 0};
		size_t want = (size_t)(s->count - skip) < max_lines - (size_t)got
				      ? (size_t)(s->count - skip)
				      : max_lines - (size_t)got;
		/* a job log's line k holds sequence k + 1 */
		int64_t n = f ? logfile_read(f, s->first_seq - 1 + skip, want, max_bytes - bytes,
					     runlog_line, &rd)
			      : 0;
		bytes += rd.bytes;
		if (n <= 0)
			break; /* lines the index names but the job log lacks (a crash between them) */
		got += n;
		if ((size_t)n < want)
			break; /* the byte budget */
	}
	for (size_t k = 0; k < nopen; k++)
		if (open[k].temp)
			logfile_close(open[k].f);
	return got;
}

char *coord_log_path(const coord *c, uint64_t id, uint32_t attempt)
{
	/* one flat directory (made at start): a directory per job would cost a mkdir per job */
	return attempt ? kiln_asprintf("%s/logs/job-%llu-%u.log", c->data_dir,
				       (unsigned long long)id, attempt)
		       : kiln_asprintf("%s/logs/run-%llu.idx", c->data_dir, (unsigned long long)id);
}

static open_log *find_open(coord *c, uint64_t id, uint32_t attempt)
{
	for (open_log *l = c->logs; l; l = l->next)
		if (l->id == id && l->attempt == attempt)
			return l;
	return NULL;
}

static open_log *add_open(coord *c, uint64_t id, uint32_t attempt)
{
	open_log *l = kiln_calloc(1, sizeof *l);
	l->id = id;
	l->attempt = attempt;
	l->next = c->logs;
	c->logs = l;
	return l;
}

logfile *coord_log(coord *c, uint64_t id, uint32_t attempt)
{
	open_log *l = find_open(c, id, attempt);
	if (l)
		return l->f;
	_cleanup_free_ char *path = coord_log_path(c, id, attempt);
	logfile *f;
	if (logfile_open(path, &f) < 0) {
		kiln_log(3, "%s", kiln_errmsg());
		return NULL;
	}
	add_open(c, id, attempt)->f = f;
	return f;
}

runlog *coord_runlog(coord *c, uint64_t run_id)
{
	open_log *l = find_open(c, run_id, 0);
	if (l)
		return l->r;
	_cleanup_free_ char *path = coord_log_path(c, run_id, 0);
	runlog *r;
	if (runlog_open(path, &r) < 0) {
		kiln_log(3, "%s", kiln_errmsg());
		return NULL;
	}
	add_open(c, run_id, 0)->r = r;
	return r;
}

logfile *coord_log_peek(coord *c, uint64_t id, uint32_t attempt, bool *temp)
{
	*temp = false;
	open_log *l = find_open(c, id, attempt);
	if (l)
		return l->f;
	_cleanup_free_ char *path = coord_log_path(c, id, attempt);
	logfile *f = NULL;
	if (access(path, F_OK) != 0 || logfile_open(path, &f) < 0)
		return NULL;
	*temp = true;
	return f;
}

void coord_log_close(coord *c, uint64_t id, uint32_t attempt)
{
	for (open_log **p = &c->logs; *p; p = &(*p)->next) {
		if ((*p)->id == id && (*p)->attempt == attempt) {
			open_log *l = *p;
			*p = l->next;
			logfile_close(l->f);
			runlog_close(l->r);
			free(l);
			return;
		}
	}
}
