/*
 * logline — see logline.h. Formatting and checking run once per line of
 * output on the agent and the coordinator respectively, so neither goes
 * through printf or strtol.
 */
#include "common/logline.h"

#include <errno.h>
#include <string.h>

const char *kiln_logline_stream_name(int stream)
{
	switch (stream) {
	case KILN_LOGLINE_STDERR:
		return "stderr";
	case KILN_LOGLINE_SYSTEM:
		return "system";
	default:
		return "stdout";
	}
}

/* Writes v in decimal at p; returns the number of digits. */
static size_t put_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

static size_t put_i64(char *p, int64_t v)
{
	if (v >= 0)
		return put_u64(p, (uint64_t)v);
	p[0] = '-';
	return 1 + put_u64(p + 1, (uint64_t)0 - (uint64_t)v);
}

void kiln_logline_format(kiln_buf *b, uint64_t seq, int64_t ts_ms, int stream, int32_t step,
			 const char *text, size_t len)
{
	if (len > KILN_LOGLINE_MAX_TEXT)
		len = KILN_LOGLINE_MAX_TEXT;
	char head[KILN_LOGLINE_MAX_HEAD];
	size_t h = put_u64(head, seq);
	head[h++] = '\t';
	h += put_i64(head + h, ts_ms);
	head[h++] = '\t';
	const char *name = kiln_logline_stream_name(stream);
	memcpy(head + h, name, 6);
	h += 6;
	head[h++] = '\t';
	h += put_i64(head + h, step);
	head[h++] = '\t';
	kiln_buf_append(b, head, h);
	size_t at = b->len;
	kiln_buf_append(b, text, len);
	char *end = b->p + b->len;
	for (char *q = b->p + at; (q = memchr(q, '\n', (size_t)(end - q))); q++)
		*q = ' ';
	for (char *q = b->p + at; (q = memchr(q, '\r', (size_t)(end - q))); q++)
		*q = ' ';
	kiln_buf_append(b, "\n", 1);
}

/* Parses an unsigned decimal field ending at a tab; advances *pp past the tab. */
static bool field_u64(const char **pp, const char *end, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;
	size_t n = 0;
	while (p < end && *p >= '0' && *p <= '9') {
		if (++n > 19)
			return false;
		v = v * 10 + (uint64_t)(*p++ - '0');
	}
	if (n == 0 || p >= end || *p != '\t')
		return false;
	*pp = p + 1;
	*out = v;
	return true;
}

static bool field_i64(const char **pp, const char *end, int64_t *out)
{
	bool neg = *pp < end && **pp == '-';
	if (neg)
		(*pp)++;
	uint64_t v;
	if (!field_u64(pp, end, &v))
		return false;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

bool kiln_logline_parse(const char *p, size_t len, kiln_logline *out)
{
	const char *end = p + len;
	int64_t step;
	if (!field_u64(&p, end, &out->seq) || !field_i64(&p, end, &out->ts_ms))
		return false;
	if (end - p < 7 || p[6] != '\t' ||
	    (memcmp(p, "stdout", 6) != 0 && memcmp(p, "stderr", 6) != 0 &&
	     memcmp(p, "system", 6) != 0))
		return false;
	out->stream = p;
	out->stream_len = 6;
	p += 7;
	if (!field_i64(&p, end, &step) || step < -1 || step > INT32_MAX)
		return false;
	out->step = (int32_t)step;
	out->text = p;
	out->text_len = (size_t)(end - p);
	return out->text_len <= KILN_LOGLINE_MAX_TEXT && !memchr(p, '\r', out->text_len);
}

int64_t kiln_loglines_check(const char *buf, size_t len, uint64_t first_seq)
{
	if (len && buf[len - 1] != '\n')
		return kiln_err(EINVAL, "log batch: the last line has no newline");
	int64_t n = 0;
	for (const char *p = buf, *end = buf + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		kiln_logline l;
		if (!kiln_logline_parse(p, (size_t)(nl - p), &l))
			return kiln_err(EINVAL, "log batch: line %lld is malformed", (long long)n + 1);
		if (l.seq != first_seq + (uint64_t)n)
			return kiln_err(EINVAL, "log batch: line %lld has sequence %llu, not %llu",
					(long long)n + 1, (unsigned long long)l.seq,
					(unsigned long long)(first_seq + (uint64_t)n));
		n++;
		p = nl + 1;
	}
	return n;
}

uint64_t kiln_logline_seq(const char *p, size_t len)
{
	uint64_t v = 0;
	const char *end = p + len;
	return field_u64(&p, end, &v) ? v : 0;
}
