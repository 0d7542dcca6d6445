/*
 * spool — see spool.h. Records are a fixed header (time, stream, step,
 * length) and the text. `head` is the file offset of the oldest pending
 * record; the offsets of the records a peek returned are remembered so a
 * drop knows where the next pending record starts.
 */
#include "agent/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

#define WBUF_MAX (64u << 10)
#define MAX_TEXT (1u << 20)

typedef struct rec_hdr {
	int64_t ts_ms;
	int32_t stream;
	int32_t step;
	uint32_t len;
	uint32_t pad;
} rec_hdr;

struct agent_spool {
	char *path;
	int fd;
	uint64_t written;   /* bytes in the file */
	uint64_t head;      /* offset of the oldest pending record */
	uint64_t pending;   /* records not yet dropped (file and buffer) */
	kiln_buf wbuf;      /* appended, not yet written */
	uint64_t *peek_end; /* offset after each record of the last peek */
	size_t npeek, cappeek;
};

int agent_spool_open(const char *path, agent_spool **out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return kiln_err(errno, "spool %s: %s", path, strerror(errno));
	agent_spool *s = kiln_calloc(1, sizeof *s);
	s->path = kiln_strdup(path);
	s->fd = fd;
	*out = s;
	return 0;
}

void agent_spool_free(agent_spool *s)
{
	if (!s)
		return;
	close(s->fd);
	unlink(s->path);
	free(s->path);
	kiln_buf_free(&s->wbuf);
	free(s->peek_end);
	free(s);
}

static int flush(agent_spool *s)
{
	const char *p = s->wbuf.p;
	size_t left = s->wbuf.len;
	while (left > 0) {
		ssize_t n = pwrite(s->fd, p, left, (off_t)s->written);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kiln_err(errno, "spool %s: %s", s->path, strerror(errno));
		p += n;
		left -= (size_t)n;
		s->written += (uint64_t)n;
	}
	s->wbuf.len = 0;
	return 0;
}

int agent_spool_append(agent_spool *s, int64_t ts_ms, int stream, int32_t step, const char *text,
		       size_t len)
{
	if (len > MAX_TEXT)
		len = MAX_TEXT;
	rec_hdr h = {ts_ms, stream, step, (uint32_t)len, 0};
	kiln_buf_append(&s->wbuf, &h, sizeof h);
	kiln_buf_append(&s->wbuf, text, len);
	s->pending++;
	if (s->wbuf.len >= WBUF_MAX)
		return flush(s);
	return 0;
}

uint64_t agent_spool_pending(const agent_spool *s)
{
	return s->pending;
}

static int read_full(int fd, void *buf, size_t n, uint64_t off)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int agent_spool_peek(agent_spool *s, size_t max_lines, size_t max_bytes, agent_spool_fn fn,
		     void *arg)
{
	int r = flush(s);
	if (r < 0)
		return r;
	s->npeek = 0;
	uint64_t off = s->head;
	size_t bytes = 0;
	char *text = NULL;
	size_t textcap = 0;
	while (off < s->written && s->npeek < max_lines && s->npeek < s->pending &&
	       bytes < max_bytes) {
		rec_hdr h;
		if ((r = read_full(s->fd, &h, sizeof h, off)) < 0 || h.len > MAX_TEXT) {
			free(text);
			return kiln_err(EIO, "spool %s: corrupt record", s->path);
		}
		if (h.len + 1 > textcap) {
			textcap = h.len + 1;
			text = kiln_realloc(text, textcap);
		}
		if ((r = read_full(s->fd, text, h.len, off + sizeof h)) < 0) {
			free(text);
			return kiln_err(EIO, "spool %s: short record", s->path);
		}
		text[h.len] = '\0';
		fn(arg, h.ts_ms, h.stream, h.step, text, h.len);
		off += sizeof h + h.len;
		bytes += h.len + 16;
		if (s->npeek == s->cappeek) {
			s->cappeek = s->cappeek ? s->cappeek * 2 : 256;
			s->peek_end = kiln_realloc(s->peek_end, s->cappeek * sizeof *s->peek_end);
		}
		s->peek_end[s->npeek++] = off;
	}
	free(text);
	return (int)s->npeek;
}

void agent_spool_drop(agent_spool *s, size_t n)
{
	if (n > s->npeek)
		n = s->npeek;
	if (n == 0)
		return;
	s->head = s->peek_end[n - 1];
	s->pending -= n;
	memmove(s->peek_end, s->peek_end + n, (s->npeek - n) * sizeof *s->peek_end);
	s->npeek -= n;
	if (s->pending == 0 && s->wbuf.len == 0) {
		/* all stored: start the file over so it never grows while things are healthy */
		if (ftruncate(s->fd, 0) == 0) {
			s->written = s->head = 0;
			s->npeek = 0;
		}
	}
}

void agent_spool_clear(agent_spool *s)
{
	s->wbuf.len = 0;
	s->pending = 0;
	s->npeek = 0;
	if (ftruncate(s->fd, 0) == 0)
		s->written = s->head = 0;
	else
		s->head = s->written;
}
