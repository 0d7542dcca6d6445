/*
 * spool — see spool.h. The lines form one stream of bytes, addressed by a
 * logical offset that only grows: [fbase, f1) is in the file (at position
 * offset - fbase), [f1, f1 + mem.len) is in memory, not yet written. `head`
 * starts the oldest line not acknowledged, `sent` the first line not yet
 * taken. Each take leaves a mark (its last sequence, the offset after it),
 * so an acknowledgement of a whole batch finds its offset without reading;
 * any other acknowledgement reads the lines from `head` on.
 */
#include "agent/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/logline.h"

#define MEM_MAX (1024u << 10)
#define MARKS 64
#define LINE_MAX_BYTES (KILN_LOGLINE_MAX_TEXT + KILN_LOGLINE_MAX_HEAD + 1)

typedef struct mark {
	uint64_t seq, off;
} mark;

struct agent_spool {
	char *path;
	int fd;
	uint64_t next_seq; /* the number the next line gets */
	uint64_t acked;    /* every line through this one is stored */
	uint64_t sent_seq; /* every line through this one was taken */
	uint64_t fbase, f1;
	kiln_buf mem;
	uint64_t head, sent;
	mark marks[MARKS];
	size_t nmarks;
};

int agent_spool_open(const char *path, agent_spool **out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return kiln_err(errno, "spool %s: %s", path, strerror(errno));
	agent_spool *s = kiln_calloc(1, sizeof *s);
	s->path = kiln_strdup(path);
	s->fd = fd;
	s->next_seq = 1;
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
	kiln_buf_free(&s->mem);
	free(s);
}

static uint64_t end_off(const agent_spool *s)
{
	return s->f1 + s->mem.len;
}

static int flush(agent_spool *s)
{
	const char *p = s->mem.p;
	size_t left = s->mem.len;
	while (left > 0) {
		ssize_t n = pwrite(s->fd, p, left, (off_t)(s->f1 - s->fbase));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kiln_err(errno, "spool %s: %s", s->path, strerror(errno));
		p += n;
		left -= (size_t)n;
		s->f1 += (uint64_t)n;
	}
	s->mem.len = 0;
	return 0;
}

int agent_spool_append(agent_spool *s, int64_t ts_ms, int stream, int32_t step, const char *text,
		       size_t len)
{
	kiln_logline_format(&s->mem, s->next_seq++, ts_ms, stream, step, text, len);
	if (s->mem.len >= MEM_MAX)
		return flush(s);
	return 0;
}

int agent_spool_append_lines(agent_spool *s, const char *buf, size_t len, uint64_t last_seq)
{
	kiln_buf_append(&s->mem, buf, len);
	s->next_seq = last_seq + 1;
	if (s->mem.len >= MEM_MAX)
		return flush(s);
	return 0;
}

uint64_t agent_spool_pending(const agent_spool *s)
{
	return s->next_seq - 1 - s->acked;
}

uint64_t agent_spool_unsent(const agent_spool *s)
{
	return s->next_seq - 1 - s->sent_seq;
}

/* Copies the stream's bytes [off, off + n) to dst. */
static int read_at(agent_spool *s, uint64_t off, char *dst, size_t n)
{
	while (n > 0 && off < s->f1) {
		size_t want = s->f1 - off < n ? (size_t)(s->f1 - off) : n;
		ssize_t r = pread(s->fd, dst, want, (off_t)(off - s->fbase));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return kiln_err(r < 0 ? errno : EIO, "spool %s: cannot read it back", s->path);
		dst += r;
		off += (uint64_t)r;
		n -= (size_t)r;
	}
	if (n > 0)
		memcpy(dst, s->mem.p + (off - s->f1), n);
	return 0;
}

int64_t agent_spool_take(agent_spool *s, size_t max_bytes, kiln_buf *out, uint64_t *first_seq,
			 uint64_t *last_seq)
{
	uint64_t avail = end_off(s) - s->sent;
	if (avail == 0)
		return 0;
	size_t want = avail < max_bytes ? (size_t)avail : max_bytes;
	size_t at = out->len;
	bool whole_line = false; /* one line longer than max_bytes: take just it */
	for (;;) {
		if (out->cap < at + want + 1) {
			out->cap = at + want + 1;
			out->p = kiln_realloc(out->p, out->cap);
		}
		int r = read_at(s, s->sent, out->p + at, want);
		if (r < 0)
			return r;
		const char *nl = whole_line ? memchr(out->p + at, '\n', want)
					    : memrchr(out->p + at, '\n', want);
		if (nl) {
			want = (size_t)(nl - (out->p + at)) + 1;
			break;
		}
		if (want == avail || want >= LINE_MAX_BYTES)
			return kiln_err(EIO, "spool %s: a line without its end", s->path);
		want = avail < LINE_MAX_BYTES ? (size_t)avail : LINE_MAX_BYTES;
		whole_line = true;
	}
	out->len = at + want;
	out->p[out->len] = '\0';
	const char *lastl = memrchr(out->p + at, '\n', want - 1);
	lastl = lastl ? lastl + 1 : out->p + at;
	uint64_t last = kiln_logline_seq(lastl, (size_t)(out->p + out->len - lastl));
	if (last <= s->sent_seq || last >= s->next_seq)
		return kiln_err(EIO, "spool %s: corrupt line numbers", s->path);
	*first_seq = s->sent_seq + 1;
	*last_seq = last;
	s->sent += want;
	s->sent_seq = last;
	if (s->nmarks == MARKS) {
		memmove(s->marks, s->marks + 1, (MARKS - 1) * sizeof *s->marks);
		s->nmarks--;
	}
	s->marks[s->nmarks++] = (mark){last, s->sent};
	return (int64_t)(last - *first_seq + 1);
}

/* The offset of the line after seq, reading lines from head on. */
static int find_after(agent_spool *s, uint64_t seq, uint64_t *off)
{
	for (size_t i = 0; i < s->nmarks; i++) {
		if (s->marks[i].seq == seq) {
			*off = s->marks[i].off;
			return 0;
		}
	}
	uint64_t pos = s->head, end = end_off(s);
	char *buf = kiln_malloc(LINE_MAX_BYTES);
	int r = 0;
	while (pos < end) {
		size_t n = end - pos < LINE_MAX_BYTES ? (size_t)(end - pos) : LINE_MAX_BYTES;
		if ((r = read_at(s, pos, buf, n)) < 0)
			break;
		const char *p = buf, *stop = buf + n, *nl;
		bool found = false;
		while (p < stop && (nl = memchr(p, '\n', (size_t)(stop - p)))) {
			if (kiln_logline_seq(p, (size_t)(nl - p)) > seq) {
				found = true;
				break;
			}
			p = nl + 1;
		}
		pos += (uint64_t)(p - buf);
		if (found || p == buf)
			break;
	}
	free(buf);
	*off = pos;
	return r;
}

/* Forgets what is acknowledged: the file once all of it is, then memory before head. */
static void compact(agent_spool *s)
{
	size_t k = 0;
	while (k < s->nmarks && s->marks[k].seq <= s->acked)
		k++;
	memmove(s->marks, s->marks + k, (s->nmarks - k) * sizeof *s->marks);
	s->nmarks -= k;
	if (s->head < s->f1)
		return;
	if (s->f1 > s->fbase && ftruncate(s->fd, 0) < 0)
		return; /* keep it; the next acknowledgement tries again */
	size_t drop = (size_t)(s->head - s->f1);
	memmove(s->mem.p, s->mem.p + drop, s->mem.len - drop);
	s->mem.len -= drop;
	s->fbase = s->f1 = s->head;
}

int agent_spool_ack(agent_spool *s, uint64_t seq)
{
	if (seq >= s->next_seq)
		seq = s->next_seq - 1;
	if (seq <= s->acked)
		return 0;
	uint64_t off;
	int r = find_after(s, seq, &off);
	if (r < 0)
		return r;
	s->acked = seq;
	s->head = off;
	if (s->sent < s->head) {
		s->sent = s->head;
		s->sent_seq = s->acked;
	}
	compact(s);
	return 0;
}

void agent_spool_rewind(agent_spool *s)
{
	s->sent = s->head;
	s->sent_seq = s->acked;
}

void agent_spool_clear(agent_spool *s)
{
	s->acked = s->sent_seq = s->next_seq - 1;
	s->head = s->sent = end_off(s);
	compact(s);
}
