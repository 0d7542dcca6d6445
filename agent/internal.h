/*
 * internal — what the agent's modules share. Threads: one polls the
 * coordinator, one ships log lines and results (the outbox), and one runs
 * each job. The outbox is the only state they share, under `mu`.
 */
#ifndef KILN_AGENT_INTERNAL_H
#define KILN_AGENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>

#include "agent/agent.h"
#include "agent/runner.h"
#include "agent/spool.h"
#include "common/util.h"
#include "kiln.pb-c.h"

typedef struct out_update {
	uint8_t *packed; /* a packed Kiln__JobUpdate */
	size_t len;
	bool last;       /* the job's final result: sent once every line is stored */
	struct out_update *next;
} out_update;

/* A running job, as the poll, job and shipper threads see it (fields under agent.mu). */
typedef struct agent_job {
	agent *a;
	uint64_t job_id, run_id;
	uint32_t attempt;
	int slot;                  /* its workspace: work/slots/<slot> */
	Kiln__JobAssignment *spec; /* owned; read-only once the job thread starts */
	agent_cancel *cancel;
	pthread_t thread;
	/* outbox */
	agent_spool *spool;   /* lines not yet stored by the coordinator */
	uint64_t base_seq;    /* sequence of the oldest line in the spool */
	uint64_t next_seq;    /* sequence the next line gets */
	out_update *updates, *updates_tail;
	bool done;            /* the job thread has finished; free once the outbox is empty */
	bool dropped;         /* the coordinator no longer wants this attempt */
	struct agent_job *next;
} agent_job;

struct agent {
	agent_config cfg;
	char *coordinator, *name, *work_dir, *token;
	kiln_strv labels;
	nng_socket sock;
	nng_dialer dialer;

	pthread_mutex_t mu;
	pthread_cond_t cv;        /* outbox changed / job finished */
	bool stopping;
	agent_job *jobs;
	int running;
	char *session, *agent_id;
	uint32_t poll_timeout_ms;

	/* prepared ahead, so a job starts without creating files (each costs ~1 ms on a slow disk) */
	bool *slot_busy;          /* work/slots/<n> in use */
	size_t nslots;
	agent_spool *spare;       /* a spool file ready for the next job */
	uint64_t spool_seq;
	char *script_dir;         /* step scripts on tmpfs, or NULL for the job's temp dir */

	pthread_t poll_thread, ship_thread;
	bool poll_started, ship_started;
	bool poll_done, ship_done; /* the thread has left its loop (under mu) */
	bool hard_stop;            /* stopping, and done waiting for jobs to deliver */
	nng_aio *inflight[8];      /* calls in progress, cancelled when the agent stops */
	size_t ninflight;
};

/* agent.c */
/* Sends req and waits for the response (timeout in ms); re-registers on UNAUTHORIZED.
   Returns 0 with *resp owned by the caller, or a negative errno. */
int agent_call(agent *a, Kiln__Request *req, int64_t timeout_ms, Kiln__Response **resp);
/* Queues a line of the job's log (any thread). */
void agent_job_line(agent_job *j, int stream, int32_t step, int64_t ts_ms, const char *text,
		    size_t len);
/* Queues a job or step update (step -1 = the job); `last` marks the job's final result. */
void agent_job_update(agent_job *j, int32_t step, Kiln__JobState state, Kiln__Conclusion concl,
		      int64_t started_ms, int64_t finished_ms, int exit_code, const char *message,
		      bool last);
/* Queues an update built by the caller (job id and attempt are filled in here). */
void agent_job_send(agent_job *j, Kiln__JobUpdate *u, bool last);

/* The slot directory of a job ("work/slots/N"); owned. */
char *agent_slot_dir(const agent *a, int slot);

/* job.c */
/* Runs the job to its end on the calling thread. */
void agent_job_run(agent_job *j);

#endif
