/*
 * spool — a job attempt's log lines on the agent until the coordinator has
 * stored them. Each line gets the next sequence number and is kept in the
 * stored form of common/logline.h, so a batch goes over the wire as the
 * bytes it has here. New lines collect in memory and go to the file once
 * 1 MiB of them wait unacknowledged (no syscall per line, and none at all
 * while the coordinator keeps up); the shipper takes batches in order,
 * several may be in flight, and an acknowledgement drops everything
 * through the sequence it names. Once every line is stored the file is
 * emptied again, so a healthy job's spool stays small while one that
 * outlives a coordinator outage keeps its lines on disk, not in memory.
 * Not thread-safe: the agent calls it under its lock.
 */
#ifndef KILN_AGENT_SPOOL_H
#define KILN_AGENT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

typedef struct agent_spool agent_spool;

/* Creates (or empties) the spool file at path; the first line will be number 1. */
int agent_spool_open(const char *path, agent_spool **out);
/* Removes the file and frees the spool; NULL is fine. */
void agent_spool_free(agent_spool *s);
/* Appends one line (stream: KILN_LOGLINE_*) with the next sequence number. */
int agent_spool_append(agent_spool *s, int64_t ts_ms, int stream, int32_t step, const char *text,
		       size_t len);
/* Appends lines already in the stored form, numbered from the next sequence through
   last_seq (the caller numbers them: it is the spool's only writer). */
int agent_spool_append_lines(agent_spool *s, const char *buf, size_t len, uint64_t last_seq);
/* Lines appended and not yet acknowledged. */
uint64_t agent_spool_pending(const agent_spool *s);
/* Lines appended and not yet taken for sending. */
uint64_t agent_spool_unsent(const agent_spool *s);
/* Takes the lines after the last taken one — whole lines, about max_bytes (at least one
   line) — appending their stored form to out; *first_seq and *last_seq number them.
   Returns how many, 0 when there are none, or a negative errno. */
int64_t agent_spool_take(agent_spool *s, size_t max_bytes, kiln_buf *out, uint64_t *first_seq,
			 uint64_t *last_seq);
/* The coordinator has stored every line through seq: drops them. */
int agent_spool_ack(agent_spool *s, uint64_t seq);
/* The next take starts again at the oldest line not acknowledged. */
void agent_spool_rewind(agent_spool *s);
/* Drops every pending line (the coordinator will never take them). */
void agent_spool_clear(agent_spool *s);

#endif
