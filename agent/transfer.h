/*
 * transfer — blobs between the agent's own store (work/cas) and the
 * coordinator's: upload sends only what the coordinator lacks, download
 * fetches only what the agent lacks; both move zstd frames as they are
 * stored, in messages of at most 1 MiB with several in flight.
 */
#ifndef KILN_AGENT_TRANSFER_H
#define KILN_AGENT_TRANSFER_H

#include <stddef.h>
#include <stdint.h>

#include "common/cas.h"
#include "common/util.h"

struct agent;

typedef struct agent_transfer_stats {
	uint64_t blobs;  /* blobs sent or fetched */
	uint64_t bytes;  /* bytes of frames sent or fetched */
} agent_transfer_stats;

/* Sends every blob of digests that the coordinator does not have. */
int agent_blobs_upload(struct agent *a, kiln_cas *cas, const kiln_strv *digests,
		       agent_transfer_stats *st);
/* Fetches every blob of digests that cas does not have into cas. */
int agent_blobs_download(struct agent *a, kiln_cas *cas, const kiln_strv *digests,
			 agent_transfer_stats *st);

#endif
