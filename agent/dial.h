/*
 * dial — how the agent reaches its coordinator: the nng dialer, with TLS for
 * a tls+tcp:// address (the CA to trust, the name to verify, optionally a
 * client certificate), and a watcher that says in the log why connecting
 * fails, since nng's dialer retries silently.
 */
#ifndef KILN_AGENT_DIAL_H
#define KILN_AGENT_DIAL_H

#include <nng/nng.h>

#include "agent/agent.h"

typedef struct agent_dial agent_dial;

/* Creates and starts sock's dialer for cfg->coordinator (non-blocking: it keeps retrying).
 *out watches a TLS connection; free it with agent_dial_free before closing sock. */
int agent_dial_start(nng_socket sock, const agent_config *cfg, nng_dialer *dialer,
                     agent_dial **out);
/* Stops the watcher. NULL is fine. */
void agent_dial_free(agent_dial *d);

#endif
