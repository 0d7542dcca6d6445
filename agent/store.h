/*
 * store — the built-in actions that keep files in the content-addressed
 * store: actions/cache (and its restore and save halves),
 * actions/upload-artifact and actions/download-artifact. Files go into the
 * agent's own store (work/cas) first; only the blobs the coordinator lacks
 * are sent, and only the blobs the agent lacks are fetched, so a warm agent
 * restores without moving a byte over the network.
 */
#ifndef KILN_AGENT_STORE_H
#define KILN_AGENT_STORE_H

#include <stdbool.h>

#include <jansson.h>

#include "agent/internal.h"

typedef struct agent_store_ctx {
	agent_job *j;
	const char *ws;   /* GITHUB_WORKSPACE */
	const char *home; /* $HOME of the steps, or NULL */
	json_t *with;     /* the step's inputs, evaluated */
	json_t *outputs;  /* the step's outputs are set here */
	void (*log)(void *arg, const char *text); /* a line for the job's log */
	void *log_arg;
} agent_store_ctx;

/* actions/cache/restore, and the first half of actions/cache. For actions/cache (`post` not
   NULL), *post is set to what its post step must save ({key, path}), or NULL when the primary
   key was hit. 0, or a negative errno when the step fails (a miss with fail-on-cache-miss). */
int agent_cache_restore(const agent_store_ctx *sc, json_t **post);
/* actions/cache/save, and actions/cache's post step; a failed save is a warning, not an error. */
int agent_cache_save(const agent_store_ctx *sc);
int agent_artifact_upload(const agent_store_ctx *sc);
int agent_artifact_download(const agent_store_ctx *sc);

#endif
