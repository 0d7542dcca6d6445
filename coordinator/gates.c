/*
 * gates — what may hold a run or a job back besides its needs (core):
 *
 * Concurrency groups, per repository, as GitHub has them: at most one run (or
 * job) of a group in progress and one pending. A newcomer cancels the one
 * pending before it; with cancel-in-progress it also cancels the one in
 * progress, and otherwise waits for it. A run's group is taken when the run
 * is first advanced; a job's when it becomes ready.
 *
 * Environments: a job whose `environment:` requires an approval waits
 * (state "waiting") until someone approves or rejects it (runs.c).
 */
#include "coordinator/internal.h"

#include <string.h>

static char *run_repo(coord *c, uint64_t run_id)
{
	sqlite3_stmt *st = store_q(c, "SELECT repo FROM runs WHERE id = ?", "i", (int64_t)run_id);
	char *repo = kiln_strdup(sqlite3_step(st) == SQLITE_ROW ? col_text(st, 0) : "");
	store_done(st);
	return repo;
}

void sched_cancel_run(coord *c, uint64_t run_id, const char *why)
{
	sqlite3_stmt *st = store_q(c,
				   "SELECT id FROM jobs WHERE run_id = ? AND state != 'completed'"
				   " AND kind = 'job'",
				   "i", (int64_t)run_id);
	int64_t ids[1024];
	size_t n = 0;
	while (sqlite3_step(st) == SQLITE_ROW && n < KILN_ARRAY_SIZE(ids))
		ids[n++] = sqlite3_column_int64(st, 0);
	store_done(st);
	for (size_t i = 0; i < n; i++)
		sched_cancel_job(c, (uint64_t)ids[i], why);
	/* the run's call rows end with their jobs; those never started end now */
	store_x(c,
		"UPDATE jobs SET state = 'completed', conclusion = 'cancelled', finished_ms = ?"
		" WHERE run_id = ? AND kind = 'call' AND state = 'queued'",
		"ii", kiln_now_ms(), (int64_t)run_id);
}

bool gates_admit_run(coord *c, uint64_t run_id, kiln_strv *cancelled)
{
	sqlite3_stmt *st = store_q(c,
				   "SELECT r.concurrency, r.cancel_in_progress, g.state FROM runs r"
				   " LEFT JOIN run_gates g ON g.run_id = r.id WHERE r.id = ?",
				   "i", (int64_t)run_id);
	bool has = sqlite3_step(st) == SQLITE_ROW;
	_cleanup_free_ char *grp = has && sqlite3_column_type(st, 0) != SQLITE_NULL
					   ? kiln_strdup(col_text(st, 0))
					   : NULL;
	bool cip = has && sqlite3_column_int(st, 1);
	_cleanup_free_ char *state = has && sqlite3_column_type(st, 2) != SQLITE_NULL
					     ? kiln_strdup(col_text(st, 2))
					     : NULL;
	store_done(st);
	if (!grp || !*grp)
		return true;
	if (state)
		return strcmp(state, "waiting") != 0;
	_cleanup_free_ char *repo = run_repo(c, run_id);
	/* the others of the group: the one pending always goes; the one in progress too with
	   cancel-in-progress, else this run waits for it */
	st = store_q(c,
		     "SELECT g.run_id, g.state FROM run_gates g JOIN runs r ON r.id = g.run_id"
		     " WHERE g.repo = ? AND g.grp = ? AND r.state != 'completed'",
		     "tt", repo, grp);
	bool busy = false;
	while (sqlite3_step(st) == SQLITE_ROW) {
		bool waiting = strcmp(col_text(st, 1), "waiting") == 0;
		if (waiting || cip)
			kiln_strv_push(cancelled, col_text(st, 0));
		else
			busy = true;
	}
	store_done(st);
	_cleanup_free_ char *why = kiln_asprintf(
		"Canceling since a higher priority waiting request for '%s' exists", grp);
	for (size_t i = 0; i < cancelled->n; i++) {
		uint64_t other = strtoull(cancelled->v[i], NULL, 10);
		sched_cancel_run(c, other, why);
		store_x(c, "UPDATE run_gates SET state = 'cancelled' WHERE run_id = ?", "i",
			(int64_t)other);
	}
	store_x(c, "INSERT INTO run_gates(run_id, repo, grp, state) VALUES(?, ?, ?, ?)", "ittt",
		(int64_t)run_id, repo, grp, busy ? "waiting" : "active");
	if (busy)
		kiln_log(KILN_LOG_INFO, "run %llu waits for concurrency group %s",
			 (unsigned long long)run_id, grp);
	return !busy;
}

uint64_t gates_run_done(coord *c, uint64_t run_id)
{
	sqlite3_stmt *st = store_q(c, "SELECT repo, grp FROM run_gates WHERE run_id = ?", "i",
				   (int64_t)run_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		store_done(st);
		return 0;
	}
	_cleanup_free_ char *repo = kiln_strdup(col_text(st, 0)), *grp = kiln_strdup(col_text(st, 1));
	store_done(st);
	store_x(c, "UPDATE run_gates SET state = 'done' WHERE run_id = ?", "i", (int64_t)run_id);
	/* the waiting run goes in once none of the group is in progress */
	st = store_q(c,
		     "SELECT run_id FROM run_gates WHERE repo = ? AND grp = ? AND state = 'waiting'"
		     " AND NOT EXISTS (SELECT 1 FROM run_gates a WHERE a.repo = ?1 AND a.grp = ?2"
		     " AND a.state IN ('active', 'cancelled')) ORDER BY run_id LIMIT 1",
		     "tt", repo, grp);
	uint64_t next = sqlite3_step(st) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	store_done(st);
	if (next)
		store_x(c, "UPDATE run_gates SET state = 'active' WHERE run_id = ?", "i",
			(int64_t)next);
	return next;
}

void gates_record_env(coord *c, int64_t job_id, const char *environment, const char *url)
{
	store_x(c,
		"INSERT INTO job_gates(job_id, environment, env_url) VALUES(?, ?, ?)"
		" ON CONFLICT(job_id) DO UPDATE SET environment = excluded.environment,"
		" env_url = excluded.env_url",
		"itt", job_id, environment, url);
}

bool gates_jobs(coord *c, uint64_t run_id, kiln_strv *touched)
{
	bool changed = false;
	_cleanup_free_ char *repo = run_repo(c, run_id);
	/* jobs just made ready that are in a concurrency group enter it */
	sqlite3_stmt *st = store_q(c,
				   "SELECT j.id, j.concurrency, j.cancel_in_progress FROM jobs j"
				   " LEFT JOIN job_gates g ON g.job_id = j.id WHERE j.run_id = ?"
				   " AND j.state = 'queued' AND j.ready = 1 AND j.concurrency IS NOT NULL"
				   " AND j.concurrency != '' AND coalesce(g.entered, 0) = 0",
				   "i", (int64_t)run_id);
	typedef struct entry {
		int64_t id;
		char *grp;
		bool cip;
	} entry;
	entry es[256];
	size_t n = 0;
	while (sqlite3_step(st) == SQLITE_ROW && n < KILN_ARRAY_SIZE(es)) {
		es[n].id = sqlite3_column_int64(st, 0);
		es[n].grp = kiln_strdup(col_text(st, 1));
		es[n].cip = sqlite3_column_int(st, 2) != 0;
		n++;
	}
	store_done(st);
	for (size_t i = 0; i < n; i++) {
		/* the others of the group: pending ones (ready, not running) go; running ones too
		   with cancel-in-progress */
		st = store_q(c,
			     "SELECT j.id FROM jobs j JOIN runs r ON r.id = j.run_id"
			     " WHERE r.repo = ? AND j.concurrency = ? AND j.id != ?"
			     " AND ((j.state = 'queued' AND j.ready = 1) OR (j.state = 'running' AND ?))",
			     "ttii", repo, es[i].grp, es[i].id, (int64_t)es[i].cip);
		int64_t other[256];
		size_t m = 0;
		while (sqlite3_step(st) == SQLITE_ROW && m < KILN_ARRAY_SIZE(other))
			other[m++] = sqlite3_column_int64(st, 0);
		store_done(st);
		_cleanup_free_ char *why = kiln_asprintf(
			"Canceling since a higher priority waiting request for '%s' exists", es[i].grp);
		changed |= m > 0;
		for (size_t k = 0; k < m; k++) {
			sched_cancel_job(c, (uint64_t)other[k], why);
			sqlite3_stmt *q = store_q(c, "SELECT run_id FROM jobs WHERE id = ?", "i",
						  other[k]);
			if (sqlite3_step(q) == SQLITE_ROW &&
			    (uint64_t)sqlite3_column_int64(q, 0) != run_id)
				kiln_strv_push(touched, col_text(q, 0));
			store_done(q);
		}
		store_x(c,
			"INSERT INTO job_gates(job_id, entered) VALUES(?, 1)"
			" ON CONFLICT(job_id) DO UPDATE SET entered = 1",
			"i", es[i].id);
		free(es[i].grp);
	}
	/* jobs just made ready for an environment that wants an approval wait for it */
	store_x(c,
		"UPDATE job_gates SET approval = 'waiting' WHERE approval IS NULL AND job_id IN"
		" (SELECT j.id FROM jobs j JOIN job_gates g ON g.job_id = j.id"
		"  JOIN environments e ON e.name = g.environment AND e.repo IN (?, '*')"
		"  WHERE j.run_id = ? AND j.state = 'queued' AND j.ready = 1"
		"  AND e.required_approval = 1)",
		"ti", repo, (int64_t)run_id);
	store_x(c,
		"UPDATE jobs SET state = 'waiting', ready = 0, message = 'Waiting for a review of the"
		" deployment to ' || (SELECT environment FROM job_gates WHERE job_id = jobs.id)"
		" WHERE run_id = ? AND state = 'queued' AND ready = 1 AND id IN"
		" (SELECT job_id FROM job_gates WHERE approval = 'waiting')",
		"i", (int64_t)run_id);
	return changed || sqlite3_changes(c->db) > 0;
}
