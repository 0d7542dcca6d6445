/*
 * expr_js — the bits of JavaScript that GitHub's expression evaluator leans
 * on, redone in C so that kiln agrees with it to the byte: UTF-16 string
 * order, toUpperCase/toLowerCase (tables generated from node, see
 * expr_unicode.c), Number(string), Number.prototype.toString, toFixed(15),
 * and JSON.stringify's layout and escaping. GitHub's evaluator is written in
 * TypeScript; its answers are JavaScript's answers.
 */
#include "common/expr_int.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ---- UTF-8 ---------------------------------------------------------------------------- */

bool kiln_xjs_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t need;
		uint32_t cp, min;
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i <= need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
			return false;
		i += need + 1;
	}
	return true;
}

uint32_t kiln_xjs_utf8_next(const char *str, size_t n, size_t *i)
{
	const unsigned char *s = (const unsigned char *)str;
	unsigned c = s[*i];
	size_t need;
	uint32_t cp;
	if (c < 0x80) {
		(*i)++;
		return c;
	} else if (c >= 0xc0 && c < 0xe0) {
		need = 1, cp = c & 0x1f;
	} else if (c >= 0xe0 && c < 0xf0) {
		need = 2, cp = c & 0x0f;
	} else if (c >= 0xf0 && c < 0xf8) {
		need = 3, cp = c & 0x07;
	} else {
		(*i)++;
		return 0xfffd;
	}
	if (n - *i <= need) {
		*i = n;
		return 0xfffd;
	}
	for (size_t k = 1; k <= need; k++)
		cp = (cp << 6) | (s[*i + k] & 0x3f);
	*i += need + 1;
	return cp;
}

void kiln_xjs_utf8_put(kiln_buf *b, uint32_t cp)
{
	char t[4];
	size_t n;
	if (cp < 0x80) {
		t[0] = (char)cp, n = 1;
	} else if (cp < 0x800) {
		t[0] = (char)(0xc0 | (cp >> 6)), t[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
	} else if (cp < 0x10000) {
		t[0] = (char)(0xe0 | (cp >> 12)), t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
	} else {
		t[0] = (char)(0xf0 | (cp >> 18)), t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		t[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), t[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
	}
	kiln_buf_append(b, t, n);
}

size_t kiln_xjs_utf16_len(const char *s, size_t n)
{
	size_t units = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c & 0xc0) != 0x80)
			units += c >= 0xf0 ? 2 : 1;
	}
	return units;
}

bool kiln_xjs_is_space(uint32_t cp)
{
	switch (cp) {
	case 0x09:
	case 0x0a:
	case 0x0b:
	case 0x0c:
	case 0x0d:
	case 0x20:
	case 0xa0:
	case 0x1680:
	case 0x2028:
	case 0x2029:
	case 0x202f:
	case 0x205f:
	case 0x3000:
	case 0xfeff:
		return true;
	}
	return cp >= 0x2000 && cp <= 0x200a;
}

/* ---- case mapping --------------------------------------------------------------------- */

static const struct kiln_xu_case *case_find(const struct kiln_xu_case *t, size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t[mid].cp == cp)
			return &t[mid];
		if (t[mid].cp < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool in_ranges(const struct kiln_xu_range *t, size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cp < t[mid].lo)
			hi = mid;
		else if (cp > t[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static void put_mapped(kiln_buf *out, const struct kiln_xu_case *t, size_t tn, uint32_t cp)
{
	const struct kiln_xu_case *m = case_find(t, tn, cp);
	if (!m) {
		kiln_xjs_utf8_put(out, cp);
		return;
	}
	for (uint32_t k = 0; k < m->n; k++)
		kiln_xjs_utf8_put(out, m->to[k]);
}

void kiln_xjs_upper_special(kiln_buf *out, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			char u = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
			kiln_buf_append(out, &u, 1);
			i++;
			continue;
		}
		uint32_t cp = kiln_xjs_utf8_next(s, n, &i);
		if (cp == 0x131) /* GitHub keeps the dotless i as it is */
			kiln_xjs_utf8_put(out, cp);
		else
			put_mapped(out, kiln_xu_upper, kiln_xu_upper_n, cp);
	}
	if (!out->p)
		kiln_buf_append(out, "", 0);
}

/* Unicode's Final_Sigma context, as ICU tests it: skipping case-ignorable characters, a
   cased letter comes before, and none comes after. */
static bool cased_in_direction(const char *s, size_t n, size_t pos, int dir)
{
	size_t i = pos;
	for (;;) {
		uint32_t cp;
		if (dir > 0) {
			if (i >= n)
				return false;
			cp = kiln_xjs_utf8_next(s, n, &i);
		} else {
			if (i == 0)
				return false;
			size_t j = i - 1;
			while (j > 0 && ((unsigned char)s[j] & 0xc0) == 0x80)
				j--;
			size_t k = j;
			cp = kiln_xjs_utf8_next(s, n, &k);
			i = j;
		}
		if (in_ranges(kiln_xu_case_ignorable, kiln_xu_case_ignorable_n, cp))
			continue;
		return in_ranges(kiln_xu_cased, kiln_xu_cased_n, cp);
	}
}

void kiln_xjs_lower(kiln_buf *out, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			char l = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			kiln_buf_append(out, &l, 1);
			i++;
			continue;
		}
		size_t start = i;
		uint32_t cp = kiln_xjs_utf8_next(s, n, &i);
		if (cp == 0x3a3 && cased_in_direction(s, n, start, -1) &&
		    !cased_in_direction(s, n, i, +1))
			kiln_xjs_utf8_put(out, 0x3c2);
		else
			put_mapped(out, kiln_xu_lower, kiln_xu_lower_n, cp);
	}
	if (!out->p)
		kiln_buf_append(out, "", 0);
}

int kiln_xjs_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i = 0, j = 0;
	while (i < an && j < bn) {
		if ((unsigned char)a[i] < 0x80 && (unsigned char)b[j] < 0x80) {
			if (a[i] != b[j])
				return (unsigned char)a[i] < (unsigned char)b[j] ? -1 : 1;
			i++, j++;
			continue;
		}
		uint32_t x = kiln_xjs_utf8_next(a, an, &i);
		uint32_t y = kiln_xjs_utf8_next(b, bn, &j);
		if (x == y)
			continue;
		/* Compare the first UTF-16 code units; supplementary characters begin with a
		   high surrogate, D800-DBFF, whose order among themselves follows the code points.
		 */
		uint32_t ux = x >= 0x10000 ? 0xd800 + ((x - 0x10000) >> 10) : x;
		uint32_t uy = y >= 0x10000 ? 0xd800 + ((y - 0x10000) >> 10) : y;
		if (ux != uy)
			return ux < uy ? -1 : 1;
		return x < y ? -1 : 1;
	}
	if (i < an)
		return 1;
	if (j < bn)
		return -1;
	return 0;
}

static bool all_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

bool kiln_xjs_equal_ci(const char *a, size_t an, const char *b, size_t bn)
{
	/* Upper-casing (expr_unicode.c's tables) keeps a string's UTF-8 length between half and
	 * three times what it was, so lengths more than 6 times apart cannot match. Checked first,
	 * so that comparing a long string with many short ones (contains() over an array) costs
	 * the short ones' length, not the long one's each time (found by tests/fuzz). */
	if (an / 8 > bn || bn / 8 > an)
		return false;
	if (all_ascii(a, an) && all_ascii(b, bn)) {
		if (an != bn)
			return false;
		for (size_t i = 0; i < an; i++) {
			unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
			if (x >= 'a' && x <= 'z')
				x -= 32;
			if (y >= 'a' && y <= 'z')
				y -= 32;
			if (x != y)
				return false;
		}
		return true;
	}
	kiln_buf ua = {0}, ub = {0};
	kiln_xjs_upper_special(&ua, a, an);
	kiln_xjs_upper_special(&ub, b, bn);
	bool eq = ua.len == ub.len && memcmp(ua.p, ub.p, ua.len) == 0;
	kiln_buf_free(&ua);
	kiln_buf_free(&ub);
	return eq;
}

/* ---- numbers -------------------------------------------------------------------------- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* strtod in the C locale, whatever the process's locale is. */
static double c_strtod(const char *s)
{
	pthread_once(&c_locale_once, c_locale_init);
	if (c_locale)
		return strtod_l(s, NULL, c_locale);
	return strtod(s, NULL);
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 99;
}

/* 0x, 0o and 0b literals: glibc rounds hexadecimal input correctly, so octal and binary
   digits are regrouped into hexadecimal first. */
static double radix_number(const char *s, size_t n, int bits)
{
	if (n == 0)
		return NAN;
	for (size_t i = 0; i < n; i++)
		if (digit_value(s[i]) >= (1 << bits))
			return NAN;
	while (n > 1 && s[0] == '0')
		s++, n--;
	kiln_buf hex = {0};
	kiln_buf_puts(&hex, "0x");
	if (bits == 4) {
		kiln_buf_append(&hex, s, n);
	} else {
		size_t nbits = n * (size_t)bits;
		size_t pad = (4 - nbits % 4) % 4;
		unsigned acc = 0, have = 0;
		for (size_t k = 0; k < pad; k++)
			have++;
		for (size_t i = 0; i < n; i++) {
			unsigned v = (unsigned)digit_value(s[i]);
			for (int bit = bits - 1; bit >= 0; bit--) {
				acc = (acc << 1) | ((v >> bit) & 1);
				if (++have == 4) {
					kiln_buf_append(&hex, &"0123456789abcdef"[acc], 1);
					acc = 0, have = 0;
				}
			}
		}
	}
	double d = c_strtod(hex.p);
	kiln_buf_free(&hex);
	return d;
}

double kiln_xjs_to_number(const char *s, size_t n)
{
	/* trim JavaScript white space at both ends */
	size_t i = 0;
	while (i < n) {
		size_t k = i;
		if (!kiln_xjs_is_space(kiln_xjs_utf8_next(s, n, &k)))
			break;
		i = k;
	}
	size_t end = n;
	while (end > i) {
		size_t j = end - 1;
		while (j > i && ((unsigned char)s[j] & 0xc0) == 0x80)
			j--;
		size_t k = j;
		if (!kiln_xjs_is_space(kiln_xjs_utf8_next(s, end, &k)))
			break;
		end = j;
	}
	s += i;
	n = end - i;
	if (n == 0)
		return 0;
	if (n >= 2 && s[0] == '0') {
		switch (s[1]) {
		case 'x':
		case 'X':
			return radix_number(s + 2, n - 2, 4);
		case 'o':
		case 'O':
			return radix_number(s + 2, n - 2, 3);
		case 'b':
		case 'B':
			return radix_number(s + 2, n - 2, 1);
		}
	}
	size_t p = 0;
	bool neg = false;
	if (s[p] == '+' || s[p] == '-')
		neg = s[p++] == '-';
	if (n - p == 8 && memcmp(s + p, "Infinity", 8) == 0)
		return neg ? -INFINITY : INFINITY;
	size_t digits = 0;
	while (p < n && s[p] >= '0' && s[p] <= '9')
		p++, digits++;
	if (p < n && s[p] == '.') {
		p++;
		while (p < n && s[p] >= '0' && s[p] <= '9')
			p++, digits++;
	}
	if (digits == 0)
		return NAN;
	if (p < n && (s[p] == 'e' || s[p] == 'E')) {
		p++;
		if (p < n && (s[p] == '+' || s[p] == '-'))
			p++;
		size_t ed = 0;
		while (p < n && s[p] >= '0' && s[p] <= '9')
			p++, ed++;
		if (ed == 0)
			return NAN;
	}
	if (p != n)
		return NAN;
	char small[64];
	char *copy = n < sizeof small ? small : kiln_malloc(n + 1);
	memcpy(copy, s, n);
	copy[n] = '\0';
	double d = c_strtod(copy);
	if (copy != small)
		free(copy);
	return d;
}

/* Reads "%.*e" output, whatever the locale's decimal point, into digits and the decimal
   exponent of the first digit. */
static void read_e(const char *buf, char *digits, int *k, int *exp10)
{
	const char *p = buf;
	*k = 0;
	while (*p && *p != 'e' && *p != 'E') {
		if (*p >= '0' && *p <= '9')
			digits[(*k)++] = *p;
		p++;
	}
	*exp10 = (*p) ? atoi(p + 1) : 0;
}

static double digits_value(const char *digits, int k, int exp10)
{
	char buf[48];
	int m = 0;
	buf[m++] = digits[0];
	if (k > 1) {
		buf[m++] = '.';
		memcpy(buf + m, digits + 1, (size_t)k - 1);
		m += k - 1;
	}
	snprintf(buf + m, sizeof buf - (size_t)m, "e%d", exp10);
	return c_strtod(buf);
}

/* The shortest digits that read back as d (d > 0, finite): digits[0..k) and the exponent
   n such that d = 0.d1d2...dk × 10^n, as ECMAScript's Number::toString defines them. */
static void shortest(double d, char *digits, int *k, int *n)
{
	char buf[64], cand[24];
	for (int prec = 1; prec <= 17; prec++) {
		int ck, ce;
		snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
		read_e(buf, cand, &ck, &ce);
		double v = digits_value(cand, ck, ce);
		if (v != d) {
			/* The nearest prec-digit decimal misses; the one on the other side of d may
			   still read back as d (at powers of two, whose lower gap is narrower). */
			if (v < d) {
				int i = ck - 1;
				while (i >= 0 && cand[i] == '9')
					cand[i--] = '0';
				if (i < 0) {
					memmove(cand + 1, cand, (size_t)ck - 1);
					cand[0] = '1';
					ce++;
				} else {
					cand[i]++;
				}
			} else {
				int i = ck - 1;
				while (i >= 0 && cand[i] == '0')
					cand[i--] = '9';
				cand[i]--;
				if (cand[0] == '0') {
					memmove(cand, cand + 1, (size_t)ck - 1);
					cand[ck - 1] = '9';
					ce--;
				}
			}
			if (digits_value(cand, ck, ce) != d)
				continue;
		}
		while (ck > 1 && cand[ck - 1] == '0')
			ck--;
		memcpy(digits, cand, (size_t)ck);
		*k = ck;
		*n = ce + 1;
		return;
	}
	/* unreachable: 17 digits always round-trip */
	snprintf(buf, sizeof buf, "%.16e", d);
	read_e(buf, digits, k, n);
	(*n)++;
}

void kiln_xjs_number_string(double d, char out[40])
{
	if (isnan(d)) {
		strcpy(out, "NaN");
		return;
	}
	if (d == 0) {
		strcpy(out, "0");
		return;
	}
	char *p = out;
	if (d < 0) {
		*p++ = '-';
		d = -d;
	}
	if (isinf(d)) {
		strcpy(p, "Infinity");
		return;
	}
	char dg[24];
	int k, n;
	shortest(d, dg, &k, &n);
	if (k <= n && n <= 21) {
		memcpy(p, dg, (size_t)k);
		p += k;
		for (int i = 0; i < n - k; i++)
			*p++ = '0';
	} else if (0 < n && n <= 21) {
		memcpy(p, dg, (size_t)n);
		p += n;
		*p++ = '.';
		memcpy(p, dg + n, (size_t)(k - n));
		p += k - n;
	} else if (-6 < n && n <= 0) {
		*p++ = '0';
		*p++ = '.';
		for (int i = 0; i < -n; i++)
			*p++ = '0';
		memcpy(p, dg, (size_t)k);
		p += k;
	} else {
		*p++ = dg[0];
		if (k > 1) {
			*p++ = '.';
			memcpy(p, dg + 1, (size_t)k - 1);
			p += k - 1;
		}
		p += sprintf(p, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
	}
	*p = '\0';
}

void kiln_xjs_number_coerce(double d, char out[40])
{
	if (d == 0 || isnan(d) || isinf(d) || fabs(d) >= 1e21 || d == trunc(d)) {
		/* toFixed leaves these as they are (or as ToString for >= 1e21) */
		kiln_xjs_number_string(d, out);
		return;
	}
	/* d.toFixed(15): the exact decimal expansion rounded half up at 15 places. */
	static const int places = 15;
	char exact[1200];
	snprintf(exact, sizeof exact, "%.1100f", fabs(d));
	char ip[32], fp[16];
	size_t il = 0;
	const char *q = exact;
	while (*q >= '0' && *q <= '9' && il < sizeof ip - 1)
		ip[il++] = *q++;
	while (*q && !(*q >= '0' && *q <= '9'))
		q++; /* the decimal point, in whatever locale */
	for (int i = 0; i < places; i++)
		fp[i] = *q ? *q++ : '0';
	bool up = *q >= '5' && *q <= '9';
	if (up) {
		int i = places - 1;
		while (i >= 0 && fp[i] == '9')
			fp[i--] = '0';
		if (i >= 0) {
			fp[i]++;
		} else {
			int j = (int)il - 1;
			while (j >= 0 && ip[j] == '9')
				ip[j--] = '0';
			if (j >= 0) {
				ip[j]++;
			} else {
				memmove(ip + 1, ip, il);
				ip[0] = '1';
				il++;
			}
		}
	}
	char fixed[64];
	snprintf(fixed, sizeof fixed, "%s%.*s.%.*s", d < 0 ? "-" : "", (int)il, ip, places, fp);
	kiln_xjs_number_string(c_strtod(fixed), out);
}

/* ---- JSON.stringify ------------------------------------------------------------------- */

void kiln_xjs_json_quote(kiln_buf *b, const char *s, size_t n)
{
	/* Built in a local chunk, appended when nearly full: appending each escape on its own
	 * made a string of quotes (what nested toJSON() builds) cost two appends and a strlen
	 * per byte, half a second for one 285-byte expression (found by tests/fuzz). */
	char chunk[4096];
	size_t k = 0;
	chunk[k++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (k > sizeof chunk - 8) { /* room for the longest escape, \u00XX */
			kiln_buf_append(b, chunk, k);
			k = 0;
		}
		unsigned char c = (unsigned char)s[i];
		char esc;
		switch (c) {
		case '"':
			esc = '"';
			break;
		case '\\':
			esc = '\\';
			break;
		case '\b':
			esc = 'b';
			break;
		case '\f':
			esc = 'f';
			break;
		case '\n':
			esc = 'n';
			break;
		case '\r':
			esc = 'r';
			break;
		case '\t':
			esc = 't';
			break;
		default:
			if (c < 0x20)
				k += (size_t)snprintf(chunk + k, sizeof chunk - k, "\\u%04x", c);
			else
				chunk[k++] = (char)c;
			continue;
		}
		chunk[k++] = '\\';
		chunk[k++] = esc;
	}
	chunk[k++] = '"';
	kiln_buf_append(b, chunk, k);
}

static void indent(kiln_buf *b, int level)
{
	kiln_buf_append(b, "\n", 1);
	for (int i = 0; i < level; i++)
		kiln_buf_append(b, "  ", 2);
}

static int json_write(kiln_buf *b, const json_t *v, bool pretty, size_t max, int level)
{
	char num[40];
	if (level > 4096)
		return kiln_err(-ELOOP, "value nested too deeply");
	if (b->len > max)
		return kiln_err(-E2BIG, "result longer than %zu bytes", max);
	switch (json_typeof(v)) {
	case JSON_NULL:
		kiln_buf_puts(b, "null");
		return 0;
	case JSON_TRUE:
		kiln_buf_puts(b, "true");
		return 0;
	case JSON_FALSE:
		kiln_buf_puts(b, "false");
		return 0;
	case JSON_INTEGER:
		kiln_xjs_number_string((double)json_integer_value(v), num);
		kiln_buf_puts(b, num);
		return 0;
	case JSON_REAL:
		if (!isfinite(json_real_value(v))) {
			kiln_buf_puts(b, "null");
			return 0;
		}
		kiln_xjs_number_string(json_real_value(v), num);
		kiln_buf_puts(b, num);
		return 0;
	case JSON_STRING:
		kiln_xjs_json_quote(b, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		if (n == 0) {
			kiln_buf_puts(b, "[]");
			return 0;
		}
		kiln_buf_append(b, "[", 1);
		for (size_t i = 0; i < n; i++) {
			if (i)
				kiln_buf_append(b, ",", 1);
			if (pretty)
				indent(b, level + 1);
			int r = json_write(b, json_array_get(v, i), pretty, max, level + 1);
			if (r < 0)
				return r;
		}
		if (pretty)
			indent(b, level);
		kiln_buf_append(b, "]", 1);
		return 0;
	}
	case JSON_OBJECT: {
		if (json_object_size(v) == 0) {
			kiln_buf_puts(b, "{}");
			return 0;
		}
		kiln_buf_append(b, "{", 1);
		const char *key;
		size_t klen;
		json_t *val;
		bool first = true;
		json_object_keylen_foreach((json_t *)v, key, klen, val)
		{
			if (!first)
				kiln_buf_append(b, ",", 1);
			first = false;
			if (pretty)
				indent(b, level + 1);
			kiln_xjs_json_quote(b, key, klen);
			kiln_buf_puts(b, pretty ? ": " : ":");
			int r = json_write(b, val, pretty, max, level + 1);
			if (r < 0)
				return r;
		}
		if (pretty)
			indent(b, level);
		kiln_buf_append(b, "}", 1);
		return 0;
	}
	}
	return kiln_err(-EINVAL, "not a JSON value");
}

int kiln_xjs_json_write(kiln_buf *b, const json_t *v, bool pretty, size_t max)
{
	int r = json_write(b, v, pretty, max, 0);
	if (r == 0 && b->len > max)
		return kiln_err(-E2BIG, "result longer than %zu bytes", max);
	return r;
}
