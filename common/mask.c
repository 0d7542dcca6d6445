/*
 * mask — see mask.h. Occurrences of every value are marked in a byte map
 * first, so overlapping and adjacent secrets collapse into one "***" and no
 * fragment of a longer secret survives next to a shorter one.
 */
#include "common/mask.h"

#include <ctype.h>
#include <string.h>

#include "common/util.h"

#define MAX_VALUES 4096

struct kiln_masker {
	kiln_strv values;
};

kiln_masker *kiln_masker_new(void)
{
	return kiln_calloc(1, sizeof(kiln_masker));
}

void kiln_masker_free(kiln_masker *m)
{
	if (!m)
		return;
	kiln_strv_free(&m->values);
	free(m);
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isspace((unsigned char)s[i]))
			return false;
	return true;
}

static void add_one(kiln_masker *m, const char *s, size_t n)
{
	while (n && (s[n - 1] == '\r'))
		n--;
	if (n == 0 || blank(s, n) || m->values.n >= MAX_VALUES)
		return;
	_cleanup_free_ char *v = strndup(s, n);
	if (!kiln_strv_contains(&m->values, v))
		kiln_strv_push(&m->values, v);
}

void kiln_masker_add(kiln_masker *m, const char *value)
{
	if (!value)
		return;
	add_one(m, value, strlen(value));
	if (!strchr(value, '\n'))
		return;
	for (const char *p = value; *p;) {
		size_t n = strcspn(p, "\n");
		add_one(m, p, n);
		p += n;
		if (*p)
			p++;
	}
}

size_t kiln_masker_count(const kiln_masker *m)
{
	return m->values.n;
}

char *kiln_masker_apply(const kiln_masker *m, const char *line, size_t len, size_t *outlen)
{
	if (!m || m->values.n == 0 || len == 0)
		return NULL;
	unsigned char *hide = NULL;
	for (size_t i = 0; i < m->values.n; i++) {
		const char *v = m->values.v[i];
		size_t vn = strlen(v);
		const char *p = line, *end = line + len;
		while ((size_t)(end - p) >= vn) {
			const char *hit = memmem(p, (size_t)(end - p), v, vn);
			if (!hit)
				break;
			if (!hide)
				hide = kiln_calloc(len, 1);
			memset(hide + (hit - line), 1, vn);
			p = hit + 1;
		}
	}
	if (!hide)
		return NULL;
	kiln_buf b = {0};
	for (size_t i = 0; i < len;) {
		if (hide[i]) {
			kiln_buf_puts(&b, "***");
			while (i < len && hide[i])
				i++;
		} else {
			size_t j = i;
			while (j < len && !hide[j])
				j++;
			kiln_buf_append(&b, line + i, j - i);
			i = j;
		}
	}
	free(hide);
	*outlen = b.len;
	return kiln_buf_steal(&b);
}
