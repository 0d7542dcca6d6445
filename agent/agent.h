/*
 * agent — the build machine's side as a library: it dials the coordinator,
 * registers, keeps one long poll in flight, runs up to `capacity` jobs at
 * once and ships their log lines and results. kiln-agent wraps it in a
 * daemon; `kiln run` embeds one over inproc://.
 */
#ifndef KILN_AGENT_H
#define KILN_AGENT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct agent agent;

typedef struct agent_config {
	const char *coordinator; /* tcp://host:7400, inproc://x */
	const char *name;        /* default: the host name */
	const char *labels;      /* comma-separated; "*" takes every runs-on */
	uint32_t capacity;       /* jobs at once; default 1 */
	const char *work_dir;    /* mirrors and job workspaces */
	const char *token;       /* registration token, may be NULL (open registration) */
	const char *token_file;  /* where the agent token the coordinator gives is kept (0600)
	                            and read back on start; NULL = WORK/agent.token */
	int64_t kill_grace_ms;   /* SIGTERM → SIGKILL on cancel (default 7500) */
	const char *action_source; /* where remote actions come from: a URL or path template with
	                              {owner} and {repo}; NULL = $KILN_ACTION_SOURCE, else
	                              https://github.com/{owner}/{repo} */
	uint64_t cas_max_bytes;  /* the agent's blob store is kept under this, least recently
	                            used first (default 10 GiB) */
	const char *cas_dir;     /* where its store is (DIR/cas/…); NULL = work_dir */
	const char *tls_ca;      /* tls+tcp://: the CA that signed the coordinator's certificate
	                            (default the system's bundle) */
	const char *tls_server_name; /* the name its certificate must carry (default the host
	                                dialed) */
	const char *tls_cert, *tls_key; /* a client certificate, when the coordinator asks */
} agent_config;

/* Starts the agent's threads; it registers and polls in the background. */
int agent_start(const agent_config *cfg, agent **out);
/* Cancels running jobs, flushes what it can, stops the threads and frees. NULL is fine. */
void agent_free(agent *a);
/* Number of jobs running now (for tests and status). */
int agent_running(agent *a);
/* Stops taking jobs (its polls say it is draining), cancels the running ones if `cancel`,
   and waits up to timeout_ms for every job to end and for its log lines and result to be
   delivered; returns how many jobs are not done so (agent_free cancels and drops them). */
int agent_drain(agent *a, int64_t timeout_ms, bool cancel);
/* Takes new labels (comma-separated) and capacity, registering again if they changed;
   returns 1 when they did, 0 when not, or a negative errno. */
int agent_reconfigure(agent *a, const char *labels, uint32_t capacity);
/* Registers once with cfg->token (a registration token), keeps the agent token the
   coordinator gives in cfg->token_file (default WORK/agent.token, 0600), and returns;
   retries an unreachable coordinator for timeout_ms. *agent_id (may be NULL) is owned. */
int agent_register(const agent_config *cfg, int64_t timeout_ms, char **agent_id);

#endif
