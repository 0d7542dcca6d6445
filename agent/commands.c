/*
 * commands — see commands.h. A command starts at the beginning of the line
 * (leading blanks allowed, as GitHub's runner trims them); its name runs to
 * the first blank or "::"; properties are comma-separated key=value pairs.
 */
#include "agent/commands.h"

#include <string.h>

#include "common/util.h"

static char *unescape(const char *s, size_t n, bool prop)
{
	kiln_buf b = {0};
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			const char *e = s + i;
			char c = 0;
			if (i + 3 <= n) {
				if (strncmp(e, "%25", 3) == 0)
					c = '%';
				else if (strncmp(e, "%0D", 3) == 0 || strncmp(e, "%0d", 3) == 0)
					c = '\r';
				else if (strncmp(e, "%0A", 3) == 0 || strncmp(e, "%0a", 3) == 0)
					c = '\n';
				else if (prop && (strncmp(e, "%3A", 3) == 0 || strncmp(e, "%3a", 3) == 0))
					c = ':';
				else if (prop && (strncmp(e, "%2C", 3) == 0 || strncmp(e, "%2c", 3) == 0))
					c = ',';
			}
			if (c) {
				kiln_buf_append(&b, &c, 1);
				i += 2;
				continue;
			}
		}
		kiln_buf_append(&b, &s[i], 1);
	}
	return kiln_buf_steal(&b);
}

int agent_cmd_parse(const char *line, size_t len, agent_cmd *out)
{
	memset(out, 0, sizeof *out);
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (len - i < 4 || line[i] != ':' || line[i + 1] != ':')
		return 0;
	const char *start = line + i + 2, *end = line + len;
	const char *close = NULL;
	for (const char *p = start; p + 1 < end; p++) {
		if (p[0] == ':' && p[1] == ':') {
			close = p;
			break;
		}
	}
	if (!close || close == start)
		return 0;
	const char *sp = memchr(start, ' ', (size_t)(close - start));
	const char *name_end = sp ? sp : close;
	for (const char *p = start; p < name_end; p++) /* names are plain words: a-z, 0-9, - */
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_'))
			return 0;
	out->name = strndup(start, (size_t)(name_end - start));
	if (sp) {
		const char *p = sp + 1;
		while (p < close && out->nprops < AGENT_CMD_MAX_PROPS) {
			const char *comma = memchr(p, ',', (size_t)(close - p));
			const char *item_end = comma ? comma : close;
			const char *eq = memchr(p, '=', (size_t)(item_end - p));
			if (eq && eq > p) {
				const char *k = p, *ke = eq;
				while (k < ke && *k == ' ')
					k++;
				out->keys[out->nprops] = strndup(k, (size_t)(ke - k));
				out->values[out->nprops] = unescape(eq + 1, (size_t)(item_end - eq - 1), true);
				out->nprops++;
			}
			p = comma ? comma + 1 : close;
		}
	}
	out->message = unescape(close + 2, (size_t)(end - close - 2), false);
	return 1;
}

const char *agent_cmd_prop(const agent_cmd *c, const char *key)
{
	for (size_t i = 0; i < c->nprops; i++)
		if (strcmp(c->keys[i], key) == 0)
			return c->values[i];
	return NULL;
}

void agent_cmd_clear(agent_cmd *c)
{
	free(c->name);
	for (size_t i = 0; i < c->nprops; i++) {
		free(c->keys[i]);
		free(c->values[i]);
	}
	free(c->message);
	memset(c, 0, sizeof *c);
}
