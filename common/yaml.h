/*
 * yaml — a small node tree over libyaml's event parser, for workflow and
 * configuration files. Every node keeps its 1-based line and column so that
 * later stages can say "file:line:col: message" about any value. Input is
 * untrusted: size, nesting depth, node count and scalar bytes are bounded,
 * and the bounds count alias expansions so that an alias bomb is refused.
 *
 * Only the first document of a stream is read. Mapping keys must be unique.
 * An alias shares the anchored node (nodes are reference counted), so the
 * tree is a DAG; treat it as read-only. Scalars never contain a NUL byte
 * (one is refused), so `str` is always a proper C string of length `len`.
 * Merge keys (`<<`) get no special meaning, as in GitHub Actions.
 */
#ifndef KILN_YAML_H
#define KILN_YAML_H

#include <stdbool.h>
#include <stddef.h>

typedef enum kiln_ynode_kind {
	KILN_YNODE_SCALAR = 1,
	KILN_YNODE_SEQUENCE,
	KILN_YNODE_MAPPING,
} kiln_ynode_kind;

typedef struct kiln_ynode kiln_ynode;

/* One entry of a mapping; keys are nodes too (usually scalars), with positions. */
typedef struct kiln_ypair {
	kiln_ynode *key;
	kiln_ynode *value;
} kiln_ypair;

struct kiln_ynode {
	kiln_ynode_kind kind;
	int line, col; /* 1-based start of the node (for an alias: of the anchored node) */
	char *tag;     /* explicit tag as libyaml resolves it ("tag:yaml.org,2002:str"), or NULL */
	/* KILN_YNODE_SCALAR */
	char *str;  /* the value, NUL-terminated */
	size_t len; /* strlen(str) */
	bool plain; /* unquoted, untagged: only these can be null/bool/number */
	/* KILN_YNODE_SEQUENCE */
	kiln_ynode **items;
	size_t nitems;
	/* KILN_YNODE_MAPPING, in document order */
	kiln_ypair *pairs;
	size_t npairs;
	/* Bookkeeping: references, and the subtree's expanded size. */
	unsigned refs;
	size_t nodes;    /* nodes in this subtree, aliases expanded */
	size_t bytes;    /* scalar bytes in this subtree, aliases expanded */
	unsigned height; /* collections nested in this subtree, itself included */
};

/* Bounds for kiln_yaml_parse; a zero field takes its default. */
typedef struct kiln_yaml_limits {
	size_t max_bytes;    /* input size; default 1 MiB */
	unsigned max_depth;  /* nested collections; default 64 */
	size_t max_nodes;    /* nodes, counting alias expansions; default 100000 */
	size_t max_expanded; /* scalar bytes, counting alias expansions; default 16 MiB */
} kiln_yaml_limits;

#define KILN_YAML_MAX_BYTES (1024 * 1024)
#define KILN_YAML_MAX_DEPTH 64
#define KILN_YAML_MAX_NODES 100000
#define KILN_YAML_MAX_EXPANDED (16 * 1024 * 1024)
#define KILN_YAML_LIMITS_INIT                                                                      \
	{                                                                                          \
		KILN_YAML_MAX_BYTES, KILN_YAML_MAX_DEPTH, KILN_YAML_MAX_NODES,                     \
		    KILN_YAML_MAX_EXPANDED                                                         \
	}

/* Parses the first document of text[0..len) into *out; errors are "file:line:col: message" and
 * return -EINVAL (syntax, duplicate key, bad alias), -E2BIG (a limit) or -ENODATA (no document).
 * lim NULL = defaults. */
int kiln_yaml_parse(const char *file, const char *text, size_t len, const kiln_yaml_limits *lim,
                    kiln_ynode **out);
/* Drops a reference to n and frees it when that was the last; NULL is a no-op. */
void kiln_ynode_free(kiln_ynode *n);
/* For _cleanup_(kiln_ynode_freep). */
void kiln_ynode_freep(kiln_ynode **n);

/* The value under the scalar key `key` in mapping `map`; NULL if map is NULL, not a mapping, or has
 * no such key. */
const kiln_ynode *kiln_ynode_get(const kiln_ynode *map, const char *key);
/* The key node of that entry (for positions), or NULL. */
const kiln_ynode *kiln_ynode_get_key(const kiln_ynode *map, const char *key);
/* True for NULL and for a plain scalar that YAML reads as null ("", "~", "null", "Null", "NULL").
 */
bool kiln_ynode_is_null(const kiln_ynode *n);
/* Reads a plain true/false (True, TRUE, ...) into *out; -EINVAL if n is anything else. */
int kiln_ynode_bool(const kiln_ynode *n, bool *out);
/* "null", "string", "sequence" or "mapping": for messages. */
const char *kiln_ynode_kind_name(const kiln_ynode *n);
/* Copies s into buf for quoting in a message: control characters escaped, cut to fit with "...".
 * Returns buf. */
const char *kiln_yaml_quote(char *buf, size_t size, const char *s);
/* Sets the error message "file:line:col: <fmt>" at n's position (1:1 when n is NULL); returns -err.
 */
int kiln_ynode_err(const char *file, const kiln_ynode *n, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
