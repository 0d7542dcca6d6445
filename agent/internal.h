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
	int32_t step;    /* which step (-1: the job) and what it says, to coalesce */
	int state;
	struct out_update *next;
} out_update;

/* A LogAppend on its way: the shipper starts it, nng callbacks carry it, the shipper
   settles the answer (fields under agent.mu, except while nng holds it). */
typedef struct log_flight {
	struct agent *a;
	struct agent_job *j; /* NULL: free */
	nng_ctx ctx;
	nng_aio *aio;
	bool ready;          /* ctx and aio made */
	bool receiving;      /* sent; the answer is awaited */
	bool done;           /* answered or failed */
	int rc;              /* nng's result */
	Kiln__Response *resp;
	uint64_t last_seq;   /* of the batch */
	kiln_buf buf;        /* the batch's lines */
} log_flight;

#define LOG_FLIGHTS 4

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
	kiln_buf lines;       /* lines formatted by the job's thread, not yet in the spool */
	uint64_t line_seq;    /* the number the next line gets (the job's thread) */
	int flying;           /* its log batches in flight (or answered, not yet settled) */
	bool rewind;          /* a batch was not stored: send again once none is in flight */
	out_update *updates, *updates_tail;
	bool done;            /* the job thread has finished; free once the outbox is empty */
	bool dropped;         /* the coordinator no longer wants this attempt */
	struct agent_job *next;
} agent_job;

struct agent {
	agent_config cfg;
	char *coordinator, *name, *work_dir, *token;
	char *token_file, *agent_token; /* the agent token, once the coordinator gave one (mu) */
	bool refused;                   /* the coordinator refused our token (mu) */
	kiln_strv labels;
	nng_socket sock;
	nng_dialer dialer;
	struct agent_dial *dial; /* TLS settings and the watcher that logs why dialing fails */

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
	struct kiln_cas *cas;     /* the agent's own blob store, opened on first use (agent_cas) */
	char *cas_root;           /* where it is: CAS_ROOT/cas/… */
	pthread_mutex_t cas_mu;   /* guards cas */

	pthread_t poll_thread, ship_thread;
	bool poll_started, ship_started;
	bool poll_done, ship_done; /* the thread has left its loop (under mu) */
	bool hard_stop;            /* stopping, and done waiting for jobs to deliver */
	nng_aio *inflight[16];     /* calls in progress, cancelled when the agent stops */
	log_flight flights[LOG_FLIGHTS];
	bool ship_wants_lines;     /* the shipper waits and could send: wake it for a line */
	bool need_register;        /* the coordinator forgot our session */
	bool draining;             /* agent_drain: polls say so, and take no new job (mu) */
	nng_aio *poll_aio;         /* the Poll in flight, ended when draining starts (mu) */
	size_t ninflight;
};

/* agent.c */
/* Sends req and waits for the response (timeout in ms); re-registers on UNAUTHORIZED.
   Returns 0 with *resp owned by the caller, or a negative errno. */
int agent_call(agent *a, Kiln__Request *req, int64_t timeout_ms, Kiln__Response **resp);
/* The agent's blob store, opened on first use; NULL (kiln_errmsg says why) if it cannot be. */
struct kiln_cas *agent_cas(agent *a);
/* agent_call, and an answer that is not OK with a body of kind `want` is an error
   ("the coordinator refused: …"); *resp is the caller's on success. */
int agent_call_expect(agent *a, Kiln__Request *req, int64_t timeout_ms,
		      Kiln__Response__BodyCase want, Kiln__Response **resp);
/* Queues a line of the job's log and hands it to the shipper (the job's thread). */
void agent_job_line(agent_job *j, int stream, int32_t step, int64_t ts_ms, const char *text,
		    size_t len);
/* Queues a line without waking anyone: agent_job_flush hands the lines over (the job's
   thread; one lock per read of output instead of one per line). */
void agent_job_line_buffered(agent_job *j, int stream, int32_t step, int64_t ts_ms,
			     const char *text, size_t len);
void agent_job_flush(agent_job *j);
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
