/*
 * cron — the five-field schedules of `on: schedule: - cron: '...'`, as GitHub
 * reads them: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or
 * JAN-DEC) and day of week (0-6 or SUN-SAT), each field `*`, a value, a range
 * `a-b`, a step (`a-b/n`, `a/n`, or `*` then `/n`), or a comma-separated list of those.
 * Names are case-insensitive. Fields are separated by spaces. Times are UTC.
 *
 * As in every cron since Vixie's, when both the day of month and the day of
 * week are restricted (neither starts with `*`), a day matches if either does.
 */
#ifndef KILN_CRON_H
#define KILN_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct kiln_cron {
	uint64_t minutes; /* bit m for minute m, 0..59 */
	uint32_t hours;   /* bit h, 0..23 */
	uint32_t mdays;   /* bit d, 1..31 */
	uint16_t months;  /* bit m, 1..12 */
	uint8_t wdays;    /* bit d, 0..6 (Sunday = 0) */
	bool mday_star;   /* the day-of-month field starts with '*' */
	bool wday_star;   /* the day-of-week field starts with '*' */
} kiln_cron;

/* Parses a schedule into *out. On error returns -EINVAL with a message naming the field
 * ("minute field '61': 61 is out of range 0-59") and, when err_off is not NULL, the byte offset
 * in `text` where the offending field starts. */
int kiln_cron_parse(const char *text, kiln_cron *out, size_t *err_off);
/* Whether the schedule fires at the minute holding the UTC time `t`. */
bool kiln_cron_matches(const kiln_cron *c, time_t t);
/* The first minute strictly after `after` (UTC seconds) at which it fires, or -1 if none within
 * five years (e.g. "0 0 31 2 *"). */
int64_t kiln_cron_next(const kiln_cron *c, int64_t after);

#endif
