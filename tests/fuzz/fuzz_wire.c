/*
 * fuzz_wire — what one kiln process accepts from another it does not trust:
 * a manifest's JSON (a cache or artifact a job uploaded, read back by a
 * coordinator, an agent or `kiln download`) and a batch of log lines (what an
 * agent sends in a LogAppend).
 *
 * The first byte picks the part, the rest is the input:
 *   even: kiln_manifest_from_json() with tight limits; when it accepts,
 *         kiln_manifest_check() again (idempotent), kiln_manifest_to_json()
 *         and a second from_json of that text, which must give the same
 *         entries (a manifest's digest must not depend on who wrote it);
 *   odd:  kiln_loglines_check() from sequence 1 and from 2^63, and
 *         kiln_logline_parse() of each line; an accepted batch must be whole
 *         lines numbered in a row, each parsing, and formatting what was
 *         parsed must give the line back.
 *
 * Built with libFuzzer (tests/fuzz/CMakeLists.txt) or with tests/fuzz/replay.c
 * as main() for the regression run in `make test`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cas.h"
#include "common/logline.h"
#include "common/manifest.h"
#include "common/util.h"

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_wire: %s:%d: broken contract: %s\n", __FILE__,       \
			        __LINE__, #cond);                                                  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool same_entry(const kiln_manifest_entry *a, const kiln_manifest_entry *b)
{
	return strcmp(a->path, b->path) == 0 && a->type == b->type && a->mode == b->mode &&
	       a->size == b->size && strcmp(a->digest, b->digest) == 0 &&
	       (a->target ? b->target && strcmp(a->target, b->target) == 0 : !b->target);
}

static void manifest(const uint8_t *data, size_t len)
{
	kiln_cas_limits lim = KILN_CAS_LIMITS_INIT;
	lim.max_entries = 2000;
	lim.max_depth = 16;
	lim.max_path_len = 512;
	kiln_manifest *m = NULL;
	if (kiln_manifest_from_json((const char *)data, len, &lim, &m) < 0) {
		REQUIRE(m == NULL);
		return;
	}
	REQUIRE(m && m->n <= lim.max_entries);
	REQUIRE(kiln_manifest_check(m, &lim) == 0);
	char *text = kiln_manifest_to_json(m);
	REQUIRE(text);
	kiln_manifest *again = NULL;
	REQUIRE(kiln_manifest_from_json(text, strlen(text), &lim, &again) == 0);
	REQUIRE(again->n == m->n);
	for (size_t i = 0; i < m->n; i++)
		REQUIRE(same_entry(&m->v[i], &again->v[i]));
	char *text2 = kiln_manifest_to_json(again);
	REQUIRE(strcmp(text, text2) == 0);
	free(text);
	free(text2);
	kiln_manifest_free(again);
	kiln_manifest_free(m);
}

static void loglines(const uint8_t *data, size_t len)
{
	const char *buf = (const char *)data;
	int64_t n = kiln_loglines_check(buf, len, 1);
	(void)kiln_loglines_check(buf, len, (uint64_t)1 << 63);
	/* every line alone, accepted or not */
	for (const char *p = buf, *end = buf + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		kiln_logline ll;
		if (kiln_logline_parse(p, l, &ll)) {
			REQUIRE(ll.text >= p && ll.text + ll.text_len == p + l);
			REQUIRE(ll.stream_len == 6);
			REQUIRE(!memchr(ll.text, '\r', ll.text_len));
			REQUIRE(kiln_logline_seq(p, l) == ll.seq);
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	if (n < 0)
		return;
	REQUIRE(len == 0 || buf[len - 1] == '\n');
	/* an accepted batch formats back to itself, line by line, numbered from 1 */
	kiln_buf b = {0};
	uint64_t seq = 1;
	for (const char *p = buf, *end = buf + len; p < end; seq++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		kiln_logline ll;
		REQUIRE(kiln_logline_parse(p, (size_t)(nl - p), &ll));
		REQUIRE(ll.seq == seq);
		int stream = memcmp(ll.stream, "stderr", 6) == 0   ? KILN_LOGLINE_STDERR
			     : memcmp(ll.stream, "system", 6) == 0 ? KILN_LOGLINE_SYSTEM
								   : KILN_LOGLINE_STDOUT;
		b.len = 0;
		kiln_logline_format(&b, ll.seq, ll.ts_ms, stream, ll.step, ll.text, ll.text_len);
		/* the same line, but for the spellings of numbers the check allows ("007", "-0") */
		kiln_logline again;
		REQUIRE(kiln_logline_parse(b.p, b.len - 1, &again));
		REQUIRE(again.seq == ll.seq && again.ts_ms == ll.ts_ms && again.step == ll.step);
		REQUIRE(again.text_len == ll.text_len &&
			memcmp(again.text, ll.text, ll.text_len) == 0);
		p = nl + 1;
	}
	REQUIRE((int64_t)(seq - 1) == n);
	kiln_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] % 2 == 0)
		manifest(data + 1, size - 1);
	else
		loglines(data + 1, size - 1);
	return 0;
}
