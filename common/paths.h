/*
 * paths — expanding the `path:` input of actions/cache and
 * actions/upload-artifact into the entries it names, as GitHub's
 * @actions/glob does:
 *
 *   - one pattern per line; blank lines, surrounding whitespace and lines
 *     starting with '#' are ignored;
 *   - `*`, `?`, `[...]` (with `!`/`^` negation and ranges) match within one
 *     path segment, hidden names included; a segment that is exactly `**`
 *     matches any number of segments, zero included; `\` escapes;
 *   - `~` or `~/...` is the home directory (given by the caller); `.` or
 *     `./...` and every other relative pattern is taken against the
 *     workspace; absolute patterns are allowed; `.` anywhere else and `..`
 *     anywhere are refused, as @actions/glob refuses them;
 *   - a pattern that matches a directory matches everything below it; a
 *     trailing `/` matches directories only;
 *   - `!pattern` removes what the lines above it matched (a later line can
 *     add it back); `!!` cancels;
 *   - symlinks are matched as themselves and never followed, neither while
 *     walking nor at the end of a pattern's literal part; fifos, sockets and
 *     devices are not matched at all.
 *
 * Where matches live: a cache may name files outside the workspace (~/.npm,
 * /opt/tool). GitHub stores such paths relative to the workspace with `../`
 * segments, which ties the cache to one directory layout and which kiln's
 * manifests refuse. kiln instead sorts each match into one of three *roots*:
 * the workspace, the home directory (what is under $HOME but not under the
 * workspace), and `/` (everything else), by the longest root that contains
 * it, and gives paths relative to that root. A cache is then saved as one
 * manifest per root that has matches, keyed by the root's name, and
 * restored into the root of the same name on the restoring machine (its
 * workspace, its $HOME), so `~/.npm` follows the home directory wherever it
 * is.
 *
 * Patterns are matched lexically against the walk, as @actions/glob does:
 * the walk starts at each pattern's literal prefix (the segments before the
 * first one with a wildcard), follows the operating system's resolution of
 * that prefix, then opens each directory below it with O_NOFOLLOW. It visits
 * at most max_entries entries and max_depth levels below a prefix; past
 * either, the expansion fails with a message naming the pattern's prefix.
 */
#ifndef KILN_PATHS_H
#define KILN_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

typedef struct kiln_paths_opts {
	const char *workspace; /* absolute; relative patterns are taken against it */
	const char *home;      /* absolute; NULL makes a `~` pattern an error */
	uint64_t max_entries;  /* entries the walk may visit, all patterns together */
	uint32_t max_depth;    /* directory levels below a pattern's literal prefix */
	uint32_t max_input;    /* bytes of input */
	uint32_t max_patterns; /* non-blank, non-comment lines */
} kiln_paths_opts;

#define KILN_PATHS_OPTS_INIT                                                                       \
	{                                                                                          \
		.max_entries = 2000000, .max_depth = 128, .max_input = 64 << 10,                   \
		.max_patterns = 1000,                                                              \
	}

typedef enum kiln_paths_root_kind {
	KILN_PATHS_WORKSPACE, /* the workspace */
	KILN_PATHS_HOME,      /* $HOME, for what is not under the workspace */
	KILN_PATHS_ABSOLUTE,  /* "/", for what is under neither */
	KILN_PATHS_NROOTS,
} kiln_paths_root_kind;

typedef struct kiln_paths_root {
	const char *name;  /* "workspace", "home", "root": the key of its manifest */
	char *dir;         /* absolute, normalised; NULL for home when none was given */
	kiln_strv matches; /* every matched file, directory and symlink, relative to dir, sorted
			      by strcmp, unique; "." is dir itself */
	kiln_strv cover;   /* the fewest paths whose recursive walks (symlinks not followed)
			      give the matches, sorted: what kiln_manifest_build(cas, dir,
			      cover.v, cover.n, ...) takes. A directory with some of its
			      contents excluded is not in it, only its matched contents are
			      (a restore recreates such a directory with the default mode). */
} kiln_paths_root;

typedef struct kiln_paths {
	kiln_paths_root root[KILN_PATHS_NROOTS]; /* indexed by kiln_paths_root_kind */
	size_t nmatches;                         /* matches in all roots together */
} kiln_paths;

/* Expands the patterns of `input` (one per line) against the file system; *out is owned by the
   caller. No match at all is not an error (nmatches is 0). -EINVAL on a bad pattern, -E2BIG past
   a limit, -errno when a directory cannot be read; the message names the pattern or path. */
int kiln_paths_expand(const char *input, const kiln_paths_opts *opts, kiln_paths **out);

/* Frees the result; NULL is a no-op. */
void kiln_paths_free(kiln_paths *p);
void kiln_paths_freep(kiln_paths **p);

/* 1 if `name` matches the one-segment glob `pattern` as the expansion matches a segment, else 0. */
int kiln_paths_segment_match(const char *pattern, const char *name);

#endif
