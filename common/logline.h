/*
 * logline — the one text form of a log line, shared by the agent (which
 * writes it into its spool and sends it as is) and the coordinator (which
 * checks it and appends it to the job's log file unchanged):
 *
 *     SEQ \t TS_MS \t STREAM \t STEP \t TEXT \n
 *
 * SEQ counts from 1 per job attempt, TS_MS is wall-clock milliseconds,
 * STREAM is "stdout", "stderr" or "system", STEP is the step index (-1 for
 * lines outside any step). TEXT never holds '\n' or '\r' (each becomes a
 * space) and is at most KILN_LOGLINE_MAX_TEXT bytes.
 */
#ifndef KILN_LOGLINE_H
#define KILN_LOGLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define KILN_LOGLINE_MAX_TEXT (1u << 20)
/* the longest header: 20 + 1 + 20 + 1 + 6 + 1 + 11 + 1 */
#define KILN_LOGLINE_MAX_HEAD 64

enum { KILN_LOGLINE_STDOUT = 1, KILN_LOGLINE_STDERR = 2, KILN_LOGLINE_SYSTEM = 3 };

/* "stdout", "stderr" or "system" (anything else is stdout). */
const char *kiln_logline_stream_name(int stream);

/* Appends one line to b; text longer than KILN_LOGLINE_MAX_TEXT is cut there. */
void kiln_logline_format(kiln_buf *b, uint64_t seq, int64_t ts_ms, int stream, int32_t step,
			 const char *text, size_t len);

/* The fields of one stored line; text is not NUL-terminated. */
typedef struct kiln_logline {
	uint64_t seq;
	int64_t ts_ms;
	const char *stream;
	size_t stream_len;
	int32_t step;
	const char *text;
	size_t text_len;
} kiln_logline;

/* Parses one line (without its '\n'); false when it is not in the form above. */
bool kiln_logline_parse(const char *p, size_t len, kiln_logline *out);

/* Checks that buf[0..len) is whole lines in the form above numbered first_seq, first_seq+1, …
   Returns the number of lines, or a negative errno with the reason in kiln_errmsg(). */
int64_t kiln_loglines_check(const char *buf, size_t len, uint64_t first_seq);

/* The sequence number that starts the line at p (0 if none). */
uint64_t kiln_logline_seq(const char *p, size_t len);

#endif
