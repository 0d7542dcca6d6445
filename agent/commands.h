/*
 * commands — GitHub's workflow commands in step output:
 * "::name key=value,key=value::message", with GitHub's escapes
 * (%25 %0D %0A in the message; also %3A %2C in property values).
 */
#ifndef KILN_AGENT_COMMANDS_H
#define KILN_AGENT_COMMANDS_H

#include <stddef.h>

#define AGENT_CMD_MAX_PROPS 16

typedef struct agent_cmd {
	char *name;                           /* as written */
	char *keys[AGENT_CMD_MAX_PROPS];
	char *values[AGENT_CMD_MAX_PROPS];    /* unescaped */
	size_t nprops;
	char *message;                        /* unescaped */
} agent_cmd;

/* Parses a line; returns 1 and fills *out if it is a workflow command, 0 if not. */
int agent_cmd_parse(const char *line, size_t len, agent_cmd *out);
/* The value of property `key`, or NULL. */
const char *agent_cmd_prop(const agent_cmd *c, const char *key);
/* Frees what agent_cmd_parse filled. */
void agent_cmd_clear(agent_cmd *c);

#endif
