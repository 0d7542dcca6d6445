/*
 * client — how the CLI talks to a coordinator: over HTTP to a remote one, or
 * by direct calls into one embedded in this process (`kiln run`). Both give
 * the same JSON from the same API handlers.
 */
#ifndef KILN_CLI_CLIENT_H
#define KILN_CLI_CLIENT_H

#include <jansson.h>

#include "coordinator/coord.h"

typedef struct kiln_client kiln_client;

/* The CA bundle that verifies an https:// server (NULL: $KILN_CA, else the system's);
   call before kiln_client_http. */
void kiln_client_set_ca(const char *file);
/* A client for the coordinator at base URL ("http://host:port" or "https://host:port"). */
int kiln_client_http(const char *base, const char *token, kiln_client **out);
/* A client for a coordinator in this process. */
int kiln_client_local(coord *c, kiln_client **out);
void kiln_client_free(kiln_client *cl);

/* Makes one API call; returns the HTTP status (<0 on transport errors, message in
   kiln_errmsg()), with the decoded JSON body in *out (owned; may be NULL). */
int kiln_client_call(kiln_client *cl, const char *method, const char *path, const char *query,
		     json_t *body, json_t **out);

#endif
