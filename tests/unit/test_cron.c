/*
 * test_cron — five-field schedules: each field's forms (values, names, ranges,
 * steps, lists), the errors with the field and offset they name, matching,
 * and the next firing time, including the day-of-month/day-of-week rule.
 */
#include "common/cron.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <string.h>

static uint64_t bits(const int *v, size_t n)
{
	uint64_t b = 0;
	for (size_t i = 0; i < n; i++)
		b |= (uint64_t)1 << v[i];
	return b;
}
#define BITS(...) bits((const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

/* 2024-01-01 00:00:00 UTC, a Monday. */
#define JAN1_2024 1704067200LL

static void test_fields(void)
{
	kiln_cron c;
	CHECK_INT(kiln_cron_parse("* * * * *", &c, NULL), 0);
	CHECK(c.minutes == (((uint64_t)1 << 60) - 1));
	CHECK(c.hours == (((uint32_t)1 << 24) - 1));
	CHECK(c.mdays == 0xfffffffeu); /* 1..31 */
	CHECK(c.months == 0x1ffe);     /* 1..12 */
	CHECK(c.wdays == 0x7f);
	CHECK(c.mday_star && c.wday_star);

	CHECK_INT(kiln_cron_parse("*/15 9-17 * * MON-FRI", &c, NULL), 0);
	CHECK(c.minutes == BITS(0, 15, 30, 45));
	CHECK(c.hours == BITS(9, 10, 11, 12, 13, 14, 15, 16, 17));
	CHECK(c.wdays == BITS(1, 2, 3, 4, 5));
	CHECK(!c.wday_star && c.mday_star);

	/* lists, names in any case, steps over ranges, "a/n" running to the end */
	CHECK_INT(kiln_cron_parse("5/20 0,12 1-30/10 jan,JUL,Dec sun,Sat", &c, NULL), 0);
	CHECK(c.minutes == BITS(5, 25, 45));
	CHECK(c.hours == BITS(0, 12));
	CHECK(c.mdays == BITS(1, 11, 21));
	CHECK(c.months == BITS(1, 7, 12));
	CHECK(c.wdays == BITS(0, 6));
	CHECK_INT(kiln_cron_parse("0 0 * FEB-APR,oct mon-wed,5", &c, NULL), 0);
	CHECK(c.months == BITS(2, 3, 4, 10));
	CHECK(c.wdays == BITS(1, 2, 3, 5));
	CHECK_INT(kiln_cron_parse("59 23 31 12 6", &c, NULL), 0);
	CHECK(c.minutes == BITS(59));
	/* several spaces between fields are one separator, as for GitHub */
	CHECK_INT(kiln_cron_parse("0  3   * * *", &c, NULL), 0);
	CHECK(c.hours == BITS(3));
}

#define CHECK_BAD(text, off, msg)                                                                  \
	do {                                                                                       \
		kiln_cron c_;                                                                      \
		size_t off_ = 99;                                                                  \
		CHECK_INT(kiln_cron_parse((text), &c_, &off_), -EINVAL);                           \
		CHECK_INT(off_, (off));                                                            \
		CHECK_STR(kiln_errmsg(), (msg));                                                   \
	} while (0)

static void test_errors(void)
{
	CHECK_BAD("60 3 * * *", 0, "minute field '60': 60 is out of range 0-59");
	CHECK_BAD("0 24 * * *", 2, "hour field '24': 24 is out of range 0-23");
	CHECK_BAD("0 0 0 * *", 4, "day-of-month field '0': 0 is out of range 1-31");
	CHECK_BAD("0 0 32 * *", 4, "day-of-month field '32': 32 is out of range 1-31");
	CHECK_BAD("0 0 * 13 *", 6, "month field '13': 13 is out of range 1-12");
	CHECK_BAD("0 0 * * 7", 8, "day-of-week field '7': 7 is out of range 0-6");
	CHECK_BAD("0 6 * * MONDAY", 8,
	          "day-of-week field 'MONDAY': 'MONDAY' is not a number or a name");
	CHECK_BAD("0 0 * JANUARY *", 6,
	          "month field 'JANUARY': 'JANUARY' is not a number or a name");
	CHECK_BAD("0 MON * * *", 2, "hour field 'MON': 'MON' is not a number");
	CHECK_BAD("*/0 * * * *", 0, "minute field '*/0': a step must be positive");
	CHECK_BAD("*/60 * * * *", 0, "minute field '*/60': 60 is out of range 0-59");
	CHECK_BAD("*/5/2 * * * *", 0, "minute field '*/5/2': more than one '/'");
	CHECK_BAD("*/ * * * *", 0,
	          "minute field '*/': a step needs a start and a value ('*/5', '1-30/2')");
	CHECK_BAD("30-10 * * * *", 0,
	          "minute field '30-10': the range 30-10 ends before it starts");
	CHECK_BAD("1-2-3 * * * *", 0, "minute field '1-2-3': more than one '-'");
	CHECK_BAD("1,,2 * * * *", 0, "minute field '1,,2': an empty list element");
	CHECK_BAD("1, * * * *", 0, "minute field '1,': an empty list element");
	CHECK_BAD("0 0 * * FRI-MON", 8,
	          "day-of-week field 'FRI-MON': the range FRI-MON ends before it starts");
	CHECK_BAD("0 0 * * */MON", 8, "day-of-week field '*/MON': 'MON' is not a number");
	CHECK_BAD("-1 * * * *", 0, "minute field '-1': a value is missing");
	CHECK_BAD("0 0 3 * * *", 10,
	          "cron schedule '0 0 3 * * *' must have 5 fields separated by spaces (minute hour "
	          "day-of-month month day-of-week), not 6");
	CHECK_BAD("0 0 * *", 0,
	          "cron schedule '0 0 * *' must have 5 fields separated by spaces (minute hour "
	          "day-of-month month day-of-week), not 4");
	CHECK_BAD(" 0 0 * * *", 0, "cron schedule ' 0 0 * * *' must not start or end with a space");
	CHECK_BAD("0 0 * * * ", 0, "cron schedule '0 0 * * * ' must not start or end with a space");
	CHECK_BAD("0\t0 * * *", 0,
	          "cron schedule '0\t0 * * *' must have 5 fields separated by spaces (minute hour "
	          "day-of-month month day-of-week), not 4");
	kiln_cron c;
	CHECK_INT(kiln_cron_parse("", &c, NULL), -EINVAL);
	CHECK_STR(kiln_errmsg(), "empty cron schedule");
	CHECK_INT(kiln_cron_parse(NULL, &c, NULL), -EINVAL);
	CHECK_INT(kiln_cron_parse("99999999999999999999 * * * *", &c, NULL), -EINVAL);
}

static void test_matching(void)
{
	kiln_cron c;
	/* Mondays to Fridays at 09:30 */
	CHECK_INT(kiln_cron_parse("30 9 * * 1-5", &c, NULL), 0);
	CHECK(kiln_cron_matches(&c, JAN1_2024 + 9 * 3600 + 30 * 60));      /* Mon 09:30 */
	CHECK(kiln_cron_matches(&c, JAN1_2024 + 9 * 3600 + 30 * 60 + 59)); /* within the minute */
	CHECK(!kiln_cron_matches(&c, JAN1_2024 + 9 * 3600 + 31 * 60));
	CHECK(!kiln_cron_matches(&c, JAN1_2024 - 86400 + 9 * 3600 + 30 * 60)); /* Sunday */
	CHECK_INT(kiln_cron_next(&c, JAN1_2024), JAN1_2024 + 9 * 3600 + 30 * 60);
	/* strictly after: from 09:30:00 itself, the next is Tuesday's */
	CHECK_INT(kiln_cron_next(&c, JAN1_2024 + 9 * 3600 + 30 * 60),
	          JAN1_2024 + 86400 + 9 * 3600 + 30 * 60);
	/* Friday 5 Jan 09:31 -> Monday 8 Jan 09:30 */
	CHECK_INT(kiln_cron_next(&c, JAN1_2024 + 4 * 86400 + 9 * 3600 + 31 * 60),
	          JAN1_2024 + 7 * 86400 + 9 * 3600 + 30 * 60);

	/* Both day fields restricted: either one matches (the 13th, or any Friday). */
	CHECK_INT(kiln_cron_parse("0 0 13 * 5", &c, NULL), 0);
	CHECK_INT(kiln_cron_next(&c, JAN1_2024), JAN1_2024 + 4 * 86400); /* Fri 5 Jan */
	CHECK(kiln_cron_matches(&c, JAN1_2024 + 12 * 86400));            /* Sat 13 Jan */
	/* One restricted, the other '*': only the restricted one counts. */
	CHECK_INT(kiln_cron_parse("0 0 13 * *", &c, NULL), 0);
	CHECK(!kiln_cron_matches(&c, JAN1_2024 + 4 * 86400));
	CHECK_INT(kiln_cron_parse("0 0 */2 * 5", &c, NULL), 0); /* '*' first: an AND */
	CHECK(!c.mday_star || !c.wday_star);

	/* 29 February: the next leap year; 31 February: never. */
	CHECK_INT(kiln_cron_parse("0 12 29 2 *", &c, NULL), 0);
	CHECK_INT(kiln_cron_next(&c, 1677628800LL /* 2023-03-01 */),
	          1709208000LL /* 2024-02-29 12:00 */);
	CHECK_INT(kiln_cron_parse("0 0 31 2 *", &c, NULL), 0);
	CHECK_INT(kiln_cron_next(&c, JAN1_2024), -1);

	/* every 15 minutes, from a time between two firings */
	CHECK_INT(kiln_cron_parse("*/15 * * * *", &c, NULL), 0);
	CHECK_INT(kiln_cron_next(&c, JAN1_2024 + 7 * 60 + 3), JAN1_2024 + 15 * 60);
	/* the last minute of the year */
	CHECK_INT(kiln_cron_parse("59 23 31 12 *", &c, NULL), 0);
	CHECK_INT(kiln_cron_next(&c, JAN1_2024), 1735689540LL); /* 2024-12-31 23:59 */
}

int main(void)
{
	test_fields();
	test_errors();
	test_matching();
	return check_done();
}
