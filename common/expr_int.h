/*
 * expr_int — what the pieces of the expression engine share and nothing else
 * uses: JavaScript's string and number semantics (expr_js.c) and the Unicode
 * tables generated from node (expr_unicode.c).
 */
#ifndef KILN_EXPR_INT_H
#define KILN_EXPR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/util.h"

struct kiln_xu_case {
	uint32_t cp;
	uint32_t n;
	uint32_t to[3];
};
struct kiln_xu_range {
	uint32_t lo, hi;
};
extern const struct kiln_xu_case kiln_xu_upper[], kiln_xu_lower[];
extern const size_t kiln_xu_upper_n, kiln_xu_lower_n;
extern const struct kiln_xu_range kiln_xu_cased[], kiln_xu_case_ignorable[];
extern const size_t kiln_xu_cased_n, kiln_xu_case_ignorable_n;

/* True when s[0..n) is well-formed UTF-8 (no surrogates, no overlongs). */
bool kiln_xjs_utf8_valid(const char *s, size_t n);
/* Decodes the code point at s[*i] (valid UTF-8) and advances *i. */
uint32_t kiln_xjs_utf8_next(const char *s, size_t n, size_t *i);
/* Appends cp as UTF-8. */
void kiln_xjs_utf8_put(kiln_buf *b, uint32_t cp);
/* Length in UTF-16 code units, as JavaScript counts. */
size_t kiln_xjs_utf16_len(const char *s, size_t n);
/* JavaScript's WhiteSpace and LineTerminator (what trim() and /\s/ match). */
bool kiln_xjs_is_space(uint32_t cp);

/* s.toUpperCase(), except that U+0131 (dotless i) is kept, as GitHub's toUpperSpecial does. */
void kiln_xjs_upper_special(kiln_buf *out, const char *s, size_t n);
/* s.toLowerCase(), with the final-sigma rule. */
void kiln_xjs_lower(kiln_buf *out, const char *s, size_t n);
/* Compares as JavaScript's < and > compare strings: by UTF-16 code units. */
int kiln_xjs_cmp(const char *a, size_t an, const char *b, size_t bn);
/* GitHub's case-insensitive equality: toUpperSpecial(a) === toUpperSpecial(b). */
bool kiln_xjs_equal_ci(const char *a, size_t an, const char *b, size_t bn);

/* Number(s): JavaScript's string-to-number conversion (NaN when malformed). */
double kiln_xjs_to_number(const char *s, size_t n);
/* Number.prototype.toString(): the shortest round-tripping form ("1e+21", "0.1", "-5"). */
void kiln_xjs_number_string(double d, char out[40]);
/* GitHub's NumberData.coerceString: (+d.toFixed(15)).toString(), "0" for ±0. */
void kiln_xjs_number_coerce(double d, char out[40]);

/* Appends s as a JSON string literal the way JSON.stringify escapes it. */
void kiln_xjs_json_quote(kiln_buf *b, const char *s, size_t n);
/* Appends v as JSON.stringify(v, null, pretty ? "  " : undefined) writes it; v must be
   normalized (keys already in JavaScript's order). Fails past `max` bytes or too deep. */
int kiln_xjs_json_write(kiln_buf *b, const json_t *v, bool pretty, size_t max);

#endif
