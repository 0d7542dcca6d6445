/*
 * agent — the build machine's side as a library: it dials the coordinator,
 * registers, keeps one long poll in flight, runs up to `capacity` jobs at
 * once and ships their log lines and results. kiln-agent wraps it in a
 * daemon; `kiln run` embeds one over inproc://.
 */
#ifndef KILN_AGENT_H
#define KILN_AGENT_H

#include <stdint.h>

typedef struct agent agent;

typedef struct agent_config {
	const char *coordinator; /* tcp://host:7400, inproc://x */
	const char *name;        /* default: the host name */
	const char *labels;      /* comma-separated; "*" takes every runs-on */
	uint32_t capacity;       /* jobs at once; default 1 */
	const char *work_dir;    /* mirrors and job workspaces */
	const char *token;       /* registration or agent token, may be NULL */
	int64_t kill_grace_ms;   /* SIGTERM → SIGKILL on cancel (default 7500) */
	const char *action_source; /* where remote actions come from: a URL or path template with
	                              {owner} and {repo}; NULL = $KILN_ACTION_SOURCE, else
	                              https://github.com/{owner}/{repo} */
	uint64_t cas_max_bytes;  /* the agent's blob store is kept under this, least recently
	                            used first (default 10 GiB) */
	const char *cas_dir;     /* where its store is (DIR/cas/…); NULL = work_dir */
} agent_config;

/* Starts the agent's threads; it registers and polls in the background. */
int agent_start(const agent_config *cfg, agent **out);
/* Cancels running jobs, flushes what it can, stops the threads and frees. NULL is fine. */
void agent_free(agent *a);
/* Number of jobs running now (for tests and status). */
int agent_running(agent *a);

#endif
