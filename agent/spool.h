/*
 * spool — a job attempt's log lines on the agent's disk until the
 * coordinator has stored them. Appends are buffered (no syscall per line);
 * the shipper peeks at the oldest lines, sends them, and drops what was
 * acknowledged. Once everything is acknowledged the file is emptied again,
 * so a healthy job's spool stays small while one that outlives a
 * coordinator outage keeps every line on disk instead of in memory.
 * Not thread-safe: the agent calls it under its lock.
 */
#ifndef KILN_AGENT_SPOOL_H
#define KILN_AGENT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct agent_spool agent_spool;

typedef void (*agent_spool_fn)(void *arg, int64_t ts_ms, int stream, int32_t step,
			       const char *text, size_t len);

/* Creates (or empties) the spool file at path. */
int agent_spool_open(const char *path, agent_spool **out);
/* Removes the file and frees the spool; NULL is fine. */
void agent_spool_free(agent_spool *s);
/* Appends one line (buffered). */
int agent_spool_append(agent_spool *s, int64_t ts_ms, int stream, int32_t step, const char *text,
		       size_t len);
/* Lines appended and not yet dropped. */
uint64_t agent_spool_pending(const agent_spool *s);
/* Calls fn for the oldest pending lines, at most max_lines and (roughly) max_bytes; returns
   how many, or a negative errno. */
int agent_spool_peek(agent_spool *s, size_t max_lines, size_t max_bytes, agent_spool_fn fn,
		     void *arg);
/* Drops the first n pending lines (n at most what the last peek returned). */
void agent_spool_drop(agent_spool *s, size_t n);
/* Drops every pending line. */
void agent_spool_clear(agent_spool *s);

#endif
