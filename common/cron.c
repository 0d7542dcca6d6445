/*
 * cron — parsing and matching of five-field schedules.
 *
 * The grammar is the one GitHub's own workflow parser accepts: fields split
 * at runs of spaces (no leading or trailing space), and within a field ','
 * binds loosest, then '/', then '-'. A step's base may be '*', a value, or a
 * range; a step itself must be a positive value within the field's range
 * (so "*\/60" is refused for minutes, as GitHub does). Each field becomes a
 * bit set, which makes matching a handful of mask tests.
 */
#include "common/cron.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

typedef struct field {
	const char *name;
	int min, max;
	const char *const *names; /* names[i] is value min+i... or NULL */
	int names_base;           /* value of names[0] */
	size_t nnames;
} field;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const field fields[5] = {
    {"minute", 0, 59, NULL, 0, 0},          {"hour", 0, 23, NULL, 0, 0},
    {"day-of-month", 1, 31, NULL, 0, 0},    {"month", 1, 12, month_names, 1, 12},
    {"day-of-week", 0, 6, day_names, 0, 7},
};

/* A single value: digits or (where the field has them) a three-letter name. */
static int value(const field *f, const char *s, size_t n, bool allow_name, int *out, char *why,
                 size_t whylen)
{
	if (n == 0) {
		snprintf(why, whylen, "a value is missing");
		return -EINVAL;
	}
	if (allow_name && f->names && n == 3)
		for (size_t i = 0; i < f->nnames; i++)
			if (strncasecmp(s, f->names[i], 3) == 0) {
				*out = f->names_base + (int)i;
				return 0;
			}
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			snprintf(why, whylen, "'%.*s' is not a number%s", (int)n, s,
			         f->names && allow_name ? " or a name" : "");
			return -EINVAL;
		}
		if (v < 1000)
			v = v * 10 + (s[i] - '0');
	}
	if (v < f->min || v > f->max) {
		snprintf(why, whylen, "%.*s is out of range %d-%d", (int)n, s, f->min, f->max);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static const char *memchr_c(const char *s, size_t n, char c)
{
	return memchr(s, c, n);
}

/* One element of a list: '*', a name, v, a-b, with an optional /step. */
static int element(const field *f, const char *s, size_t n, uint64_t *bits, char *why,
                   size_t whylen)
{
	int lo = f->min, hi = f->max, step = 1, r;
	const char *slash = memchr_c(s, n, '/');
	size_t base_n = slash ? (size_t)(slash - s) : n;
	if (slash) {
		size_t sn = n - base_n - 1;
		if (memchr_c(slash + 1, sn, '/')) {
			snprintf(why, whylen, "more than one '/'");
			return -EINVAL;
		}
		if (base_n == 0 || sn == 0) {
			snprintf(why, whylen, "a step needs a start and a value ('*/5', '1-30/2')");
			return -EINVAL;
		}
		if ((r = value(f, slash + 1, sn, false, &step, why, whylen)) < 0)
			return r;
		if (step <= 0) {
			snprintf(why, whylen, "a step must be positive");
			return -EINVAL;
		}
	}
	const char *dash = memchr_c(s, base_n, '-');
	if (base_n == 1 && s[0] == '*') {
		/* the whole range */
	} else if (dash) {
		size_t an = (size_t)(dash - s), bn = base_n - an - 1;
		if (memchr_c(dash + 1, bn, '-')) {
			snprintf(why, whylen, "more than one '-'");
			return -EINVAL;
		}
		if ((r = value(f, s, an, true, &lo, why, whylen)) < 0 ||
		    (r = value(f, dash + 1, bn, true, &hi, why, whylen)) < 0)
			return r;
		if (hi < lo) {
			snprintf(why, whylen, "the range %.*s ends before it starts", (int)base_n,
			         s);
			return -EINVAL;
		}
	} else {
		if ((r = value(f, s, base_n, true, &lo, why, whylen)) < 0)
			return r;
		if (!slash)
			hi = lo; /* "a/n" means a through the maximum, every n */
	}
	for (int v = lo; v <= hi; v += step)
		*bits |= (uint64_t)1 << v;
	return 0;
}

static int parse_field(const field *f, const char *s, size_t n, uint64_t *bits, char *why,
                       size_t whylen)
{
	*bits = 0;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != ',')
			continue;
		if (i == start) {
			snprintf(why, whylen, "an empty list element");
			return -EINVAL;
		}
		int r = element(f, s + start, i - start, bits, why, whylen);
		if (r < 0)
			return r;
		start = i + 1;
	}
	return 0;
}

int kiln_cron_parse(const char *text, kiln_cron *out, size_t *err_off)
{
	memset(out, 0, sizeof *out);
	if (err_off)
		*err_off = 0;
	if (!text || !*text)
		return kiln_err(EINVAL, "empty cron schedule");
	size_t tl = strlen(text);
	if (text[0] == ' ' || text[tl - 1] == ' ')
		return kiln_err(EINVAL, "cron schedule '%s' must not start or end with a space",
		                text);
	const char *p = text;
	const char *starts[6];
	size_t lens[6], nf = 0;
	while (*p) {
		if (*p == ' ') {
			p++;
			continue;
		}
		const char *b = p;
		while (*p && *p != ' ')
			p++;
		if (nf < 6) {
			starts[nf] = b;
			lens[nf] = (size_t)(p - b);
		}
		nf++;
	}
	if (nf != 5) {
		if (err_off && nf > 5)
			*err_off = (size_t)(starts[5] - text);
		return kiln_err(EINVAL,
		                "cron schedule '%s' must have 5 fields separated by spaces (minute "
		                "hour day-of-month month day-of-week), not %zu",
		                text, nf);
	}
	uint64_t bits[5];
	for (size_t i = 0; i < 5; i++) {
		char why[160];
		if (parse_field(&fields[i], starts[i], lens[i], &bits[i], why, sizeof why) < 0) {
			if (err_off)
				*err_off = (size_t)(starts[i] - text);
			return kiln_err(EINVAL, "%s field '%.*s': %s", fields[i].name, (int)lens[i],
			                starts[i], why);
		}
	}
	out->minutes = bits[0];
	out->hours = (uint32_t)bits[1];
	out->mdays = (uint32_t)bits[2];
	out->months = (uint16_t)bits[3];
	out->wdays = (uint8_t)bits[4];
	out->mday_star = starts[2][0] == '*';
	out->wday_star = starts[4][0] == '*';
	return 0;
}

static bool day_matches(const kiln_cron *c, const struct tm *tm)
{
	bool md = (c->mdays >> tm->tm_mday) & 1, wd = (c->wdays >> tm->tm_wday) & 1;
	if (c->mday_star || c->wday_star)
		return md && wd;
	return md || wd;
}

bool kiln_cron_matches(const kiln_cron *c, time_t t)
{
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		return false;
	return ((c->minutes >> tm.tm_min) & 1) && ((c->hours >> tm.tm_hour) & 1) &&
	       ((c->months >> (tm.tm_mon + 1)) & 1) && day_matches(c, &tm);
}

int64_t kiln_cron_next(const kiln_cron *c, int64_t after)
{
	/* Walk days, then hours and minutes within a matching day: at most ~1830 days. */
	int64_t t = after - (after % 60 + 60) % 60 + 60; /* the next whole minute */
	const int64_t limit = after + (int64_t)5 * 366 * 86400;
	while (t <= limit) {
		time_t tt = (time_t)t;
		struct tm tm;
		if (!gmtime_r(&tt, &tm))
			return -1;
		int64_t day_start = t - tm.tm_hour * 3600 - tm.tm_min * 60 - tm.tm_sec;
		if (!((c->months >> (tm.tm_mon + 1)) & 1) || !day_matches(c, &tm)) {
			t = day_start + 86400;
			continue;
		}
		for (int h = tm.tm_hour; h < 24; h++) {
			if (!((c->hours >> h) & 1))
				continue;
			for (int m = h == tm.tm_hour ? tm.tm_min : 0; m < 60; m++)
				if ((c->minutes >> m) & 1)
					return day_start + h * 3600 + m * 60;
		}
		t = day_start + 86400;
	}
	return -1;
}
