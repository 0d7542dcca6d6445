/*
 * coord — the coordinator as a library: the store, the core thread that owns
 * it, the nng bus agents dial, and the HTTP API. kiln-coordinator wraps it in
 * a daemon; `kiln run` links it with an agent in one process (inproc://).
 */
#ifndef KILN_COORD_H
#define KILN_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct coord coord;

typedef struct coord_config {
	const char *listen;       /* bus address: tcp://127.0.0.1:7400, inproc://x; port 0 picks one */
	const char *http;         /* HTTP address host:port, or NULL for none */
	const char *data_dir;     /* SQLite database, logs, mirrors */
	int64_t poll_timeout_ms;  /* how long a Poll is held (default 25000) */
	int64_t lost_after_ms;    /* agent lost after this long without a poll (default 15000) */
	int retries;              /* retries of a job whose agent was lost (default 1) */
	size_t max_message;       /* largest bus message accepted (default 4 MiB) */
	size_t max_body;          /* largest HTTP body accepted (default 25 MiB) */
	size_t max_log_bytes;     /* per job attempt (default 64 MiB) */
	const char *cas_dir;      /* the blob store (ROOT/cas/…); NULL = data_dir */
	const char *cache_db;     /* cache entries in a database of their own (kiln run keeps
	                             them across runs); NULL = in the store */
	const char *default_branch; /* caches of this branch are read by every run (default main) */
	uint64_t cache_quota;     /* bytes of cache entries per repository (default 10 GiB) */
	int64_t cache_max_idle_ms; /* an entry unused this long goes (default 7 days) */
	int artifact_retention_days; /* when a job asks for none (default 90) */
	int64_t gc_interval_ms;   /* a garbage-collection pass this often (default 1 day) */
	const char *public_url;   /* the coordinator's URL as users reach it, for links in commit
	                             statuses and notifications; NULL = the HTTP URL */
	const char *forge_ca;     /* CA bundle for outgoing HTTPS (default the system's) */
	int64_t forge_retry_ms;   /* first retry of a failed delivery; doubles (default 1 s) */
	int64_t forge_give_up_ms; /* a delivery failing this long is dropped (default 24 h) */
	const char *tls_cert;     /* PEM certificate (chain) for tls+tcp:// and https:// */
	const char *tls_key;      /* its PEM private key */
	const char *tls_ca;       /* when set, bus clients must present a certificate it signed */
	bool anonymous_read;      /* API reads without a token (default off) */
	int require_agent_token;  /* agents register with a token: 0 once a registration token
	                             exists (default), 1 always, -1 never (open registration) */
} coord_config;

#define COORD_CONFIG_INIT {.poll_timeout_ms = 25000, .lost_after_ms = 15000, .retries = 1}

/* Fills in the defaults of what cfg leaves 0. */
void coord_config_defaults(coord_config *cfg);
/* Opens the store in cfg->data_dir, starts the core thread, the bus and HTTP. */
int coord_start(const coord_config *cfg, coord **out);
/* Stops accepting work, finishes the core thread and closes everything; then frees. NULL is fine. */
void coord_free(coord *c);
/* The bus URL agents dial, with the real port when 0 was asked for; borrowed. */
const char *coord_bus_url(const coord *c);
/* The HTTP base URL ("http://127.0.0.1:PORT"), or NULL; borrowed. */
const char *coord_http_url(const coord *c);

typedef struct coord_gc_stats {
	uint64_t caches_idle, caches_over_quota, artifacts_expired, broken;
	uint64_t blobs_removed, bytes_removed, blobs_pending;
	uint64_t blobs_kept, bytes_kept;
} coord_gc_stats;

/* One garbage-collection pass over cfg's data (see coordinator/gc.c), beside a running
   coordinator or not: expired cache entries and artifacts go, then blobs nothing names that
   were already unreferenced grace_ms ago (0: now). */
int coord_gc(const coord_config *cfg, int64_t now_ms, int64_t grace_ms, coord_gc_stats *st);

typedef struct coord_backup_stats {
	uint64_t pages, page_size; /* of the copy */
	bool key;                  /* DATA/secret.key was copied to FILE.key */
} coord_backup_stats;

/* Copies cfg's store (DATA/kiln.db) to dest with SQLite's online backup API, consistent
   while a coordinator runs, through a temporary file and rename (0600); and DATA/secret.key
   to dest.key (0600). st may be NULL. See coordinator/backup.c. */
int coord_backup(const coord_config *cfg, const char *dest, coord_backup_stats *st);

/* Called with the answer to an API request: HTTP status, the body's content type (NULL:
   application/json) and the body, len bytes (owned by the callee; text is NUL-terminated
   too, binary bodies such as an artifact's archive may hold NULs). */
typedef void (*coord_reply_fn)(void *arg, int status, const char *content_type, char *body,
			       size_t len);

/* Serves one API request (the same handlers as HTTP /api/v1/…): path like "/api/v1/runs",
   query without '?', body JSON text or NULL. In-process callers (`kiln run`, tests) are
   trusted: no token is asked. Thread-safe; `reply` is called exactly once, from another
   thread, possibly much later (long polls). */
void coord_api(coord *c, const char *method, const char *path, const char *query,
	       const char *body, size_t body_len, coord_reply_fn reply, void *arg);

/* The same for a request that came over HTTP: headers are name/value pairs (names in any case),
   headers[2n] == NULL ends them; the request must authenticate itself. */
void coord_api_http(coord *c, const char *method, const char *path, const char *query,
		    const char *const *headers, const char *body, size_t body_len,
		    coord_reply_fn reply, void *arg);

/* Runs one API request and waits for its answer; *body is owned by the caller. */
int coord_api_sync(coord *c, const char *method, const char *path, const char *query,
		   const char *body, char **out_body);

#endif
