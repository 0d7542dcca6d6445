/*
 * mask — hides secret values in log lines before they leave the agent.
 * Every registered value is replaced by "***" wherever it appears; a
 * multi-line value is registered line by line too, because output arrives
 * a line at a time. Lines are whole when they get here (the step runner
 * joins reads of the pipe), so a value split across reads is still caught.
 */
#ifndef KILN_MASK_H
#define KILN_MASK_H

#include <stddef.h>

typedef struct kiln_masker kiln_masker;

/* A masker with no values. */
kiln_masker *kiln_masker_new(void);
/* Frees it; NULL is fine. */
void kiln_masker_free(kiln_masker *m);
/* Registers a value (and each of its lines); empty and blank values are ignored. */
void kiln_masker_add(kiln_masker *m, const char *value);
/* Number of distinct values registered. */
size_t kiln_masker_count(const kiln_masker *m);
/* Returns line with every registered value replaced by "***" (owned, NUL-terminated, *outlen
   set), or NULL when nothing in it needs masking. */
char *kiln_masker_apply(const kiln_masker *m, const char *line, size_t len, size_t *outlen);

#endif
