/*
 * yaml — builds a kiln_ynode tree from libyaml's event stream.
 *
 * The builder keeps a stack of open collections (bounded by max_depth). A
 * collection is attached to its parent only when it ends, and its anchor is
 * registered then too, so an alias can never point into a node still being
 * built: the tree has no cycles. Each node carries the expanded size of its
 * subtree (nodes, scalar bytes, height), which makes the alias-bomb check a
 * constant-time addition per alias instead of a walk.
 */
#include "common/yaml.h"
#include "common/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

typedef struct frame {
	kiln_ynode *node;
	kiln_ynode *key; /* a mapping's key still waiting for its value */
	char *anchor;
	size_t cap;
} frame;

typedef struct anchor_slot {
	char *name;
	kiln_ynode *node; /* borrowed: always reachable from the tree being built */
} anchor_slot;

typedef struct builder {
	const char *file;
	kiln_yaml_limits lim;
	frame *stack;
	size_t depth, stack_cap;
	kiln_ynode *root;
	anchor_slot *anchors;
	size_t nanchors, anchors_cap;
	size_t nodes, bytes;
} builder;

/* ---- nodes ---------------------------------------------------------------- */

void kiln_ynode_free(kiln_ynode *n)
{
	if (!n)
		return;
	if (n->refs > 1) {
		n->refs--;
		return;
	}
	switch (n->kind) {
	case KILN_YNODE_SCALAR:
		break;
	case KILN_YNODE_SEQUENCE:
		for (size_t i = 0; i < n->nitems; i++)
			kiln_ynode_free(n->items[i]);
		break;
	case KILN_YNODE_MAPPING:
		for (size_t i = 0; i < n->npairs; i++) {
			kiln_ynode_free(n->pairs[i].key);
			kiln_ynode_free(n->pairs[i].value);
		}
		break;
	}
	free(n->items);
	free(n->pairs);
	free(n->str);
	free(n->tag);
	free(n);
}

void kiln_ynode_freep(kiln_ynode **n)
{
	kiln_ynode_free(*n);
}

static kiln_ynode *node_new(kiln_ynode_kind kind, yaml_mark_t mark, const yaml_char_t *tag)
{
	kiln_ynode *n = kiln_calloc(1, sizeof *n);
	n->kind = kind;
	n->line = mark.line + 1 > INT32_MAX ? INT32_MAX : (int)(mark.line + 1);
	n->col = mark.column + 1 > INT32_MAX ? INT32_MAX : (int)(mark.column + 1);
	n->tag = kiln_strdup((const char *)tag);
	n->refs = 1;
	n->nodes = 1;
	n->height = kind == KILN_YNODE_SCALAR ? 0 : 1;
	return n;
}

const kiln_ynode *kiln_ynode_get_key(const kiln_ynode *map, const char *key)
{
	if (!map || map->kind != KILN_YNODE_MAPPING || !key)
		return NULL;
	for (size_t i = 0; i < map->npairs; i++) {
		const kiln_ynode *k = map->pairs[i].key;
		if (k->kind == KILN_YNODE_SCALAR && strcmp(k->str, key) == 0)
			return k;
	}
	return NULL;
}

const kiln_ynode *kiln_ynode_get(const kiln_ynode *map, const char *key)
{
	if (!map || map->kind != KILN_YNODE_MAPPING || !key)
		return NULL;
	for (size_t i = 0; i < map->npairs; i++) {
		const kiln_ynode *k = map->pairs[i].key;
		if (k->kind == KILN_YNODE_SCALAR && strcmp(k->str, key) == 0)
			return map->pairs[i].value;
	}
	return NULL;
}

bool kiln_ynode_is_null(const kiln_ynode *n)
{
	if (!n)
		return true;
	if (n->kind != KILN_YNODE_SCALAR || !n->plain)
		return false;
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	for (size_t i = 0; i < KILN_ARRAY_SIZE(nulls); i++)
		if (strcmp(n->str, nulls[i]) == 0)
			return true;
	return false;
}

int kiln_ynode_bool(const kiln_ynode *n, bool *out)
{
	/* YAML 1.2 core schema, as GitHub reads workflows: yes/no/on/off are strings. */
	static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False",
	                                                                       "FALSE"};
	if (!n || n->kind != KILN_YNODE_SCALAR || !n->plain)
		return -EINVAL;
	for (size_t i = 0; i < KILN_ARRAY_SIZE(t); i++) {
		if (strcmp(n->str, t[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(n->str, f[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

const char *kiln_ynode_kind_name(const kiln_ynode *n)
{
	if (kiln_ynode_is_null(n))
		return "null";
	switch (n->kind) {
	case KILN_YNODE_SCALAR:
		return "string";
	case KILN_YNODE_SEQUENCE:
		return "sequence";
	case KILN_YNODE_MAPPING:
		return "mapping";
	}
	return "?";
}

const char *kiln_yaml_quote(char *buf, size_t size, const char *s)
{
	size_t o = 0;
	if (!size)
		return buf;
	if (!s)
		s = "";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char tmp[8];
		size_t k;
		if (c < 0x20 || c == 0x7f)
			k = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
		else {
			tmp[0] = (char)c;
			k = 1;
		}
		if (o + k + 4 > size) { /* room for "..." and NUL */
			if (size >= 4) {
				/* Do not cut a UTF-8 sequence in half. */
				while (o > 0 && ((unsigned char)buf[o - 1] & 0xc0) == 0x80)
					o--;
				if (o > 0 && ((unsigned char)buf[o - 1] & 0xc0) == 0xc0)
					o--;
				memcpy(buf + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(buf + o, tmp, k);
		o += k;
	}
	buf[o < size ? o : size - 1] = '\0';
	return buf;
}

int kiln_ynode_err(const char *file, const kiln_ynode *n, int err, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return kiln_err(err, "%s:%d:%d: %s", file ? file : "<input>", n ? n->line : 1,
	                n ? n->col : 1, msg);
}

/* ---- anchors: open addressing on FNV-1a, so aliases cost O(1) --------------- */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

static anchor_slot *anchor_find(anchor_slot *v, size_t cap, const char *name)
{
	size_t i = (size_t)fnv1a(name) & (cap - 1);
	while (v[i].name && strcmp(v[i].name, name) != 0)
		i = (i + 1) & (cap - 1);
	return &v[i];
}

static void anchor_set(builder *b, const char *name, kiln_ynode *n)
{
	if (2 * (b->nanchors + 1) > b->anchors_cap) {
		size_t cap = b->anchors_cap ? 2 * b->anchors_cap : 16;
		anchor_slot *v = kiln_calloc(cap, sizeof *v);
		for (size_t i = 0; i < b->anchors_cap; i++)
			if (b->anchors[i].name)
				*anchor_find(v, cap, b->anchors[i].name) = b->anchors[i];
		free(b->anchors);
		b->anchors = v;
		b->anchors_cap = cap;
	}
	anchor_slot *s = anchor_find(b->anchors, b->anchors_cap, name);
	if (!s->name) { /* a redefined anchor takes the newer node, as YAML says */
		s->name = kiln_strdup(name);
		b->nanchors++;
	}
	s->node = n;
}

static kiln_ynode *anchor_get(const builder *b, const char *name)
{
	if (!b->anchors_cap)
		return NULL;
	return anchor_find(b->anchors, b->anchors_cap, name)->node;
}

/* ---- the builder ------------------------------------------------------------ */

static void builder_free(builder *b)
{
	for (size_t i = 0; i < b->depth; i++) {
		kiln_ynode_free(b->stack[i].node);
		kiln_ynode_free(b->stack[i].key);
		free(b->stack[i].anchor);
	}
	free(b->stack);
	kiln_ynode_free(b->root);
	for (size_t i = 0; i < b->anchors_cap; i++)
		free(b->anchors[i].name);
	free(b->anchors);
}

static int err_at(const builder *b, yaml_mark_t m, int err, const char *msg, const char *arg)
{
	char q[80];
	if (arg)
		return kiln_err(err, "%s:%zu:%zu: %s '%s'", b->file, m.line + 1, m.column + 1, msg,
		                kiln_yaml_quote(q, sizeof q, arg));
	return kiln_err(err, "%s:%zu:%zu: %s", b->file, m.line + 1, m.column + 1, msg);
}

/* Counts `nodes` more nodes and `bytes` more scalar bytes against the limits. */
static int account(builder *b, yaml_mark_t m, size_t nodes, size_t bytes)
{
	b->nodes += nodes;
	b->bytes += bytes;
	if (b->nodes > b->lim.max_nodes)
		return kiln_err(
		    E2BIG,
		    "%s:%zu:%zu: document has more than %zu nodes (counting alias expansions)",
		    b->file, m.line + 1, m.column + 1, b->lim.max_nodes);
	if (b->bytes > b->lim.max_expanded)
		return kiln_err(E2BIG,
		                "%s:%zu:%zu: document has more than %zu bytes of scalars (counting "
		                "alias expansions)",
		                b->file, m.line + 1, m.column + 1, b->lim.max_expanded);
	return 0;
}

/* Attaches a finished node to the open collection, or makes it the root; takes n. */
static void attach(builder *b, kiln_ynode *n)
{
	if (b->depth == 0) {
		kiln_ynode_free(b->root); /* only one root per document; defensive */
		b->root = n;
		return;
	}
	frame *f = &b->stack[b->depth - 1];
	kiln_ynode *p = f->node;
	p->nodes += n->nodes;
	p->bytes += n->bytes;
	if (p->height < n->height + 1)
		p->height = n->height + 1;
	if (p->kind == KILN_YNODE_SEQUENCE) {
		if (p->nitems == f->cap) {
			f->cap = f->cap ? 2 * f->cap : 4;
			p->items = kiln_realloc(p->items, f->cap * sizeof *p->items);
		}
		p->items[p->nitems++] = n;
	} else if (!f->key) {
		f->key = n;
	} else {
		if (p->npairs == f->cap) {
			f->cap = f->cap ? 2 * f->cap : 4;
			p->pairs = kiln_realloc(p->pairs, f->cap * sizeof *p->pairs);
		}
		p->pairs[p->npairs].key = f->key;
		p->pairs[p->npairs].value = n;
		p->npairs++;
		f->key = NULL;
	}
}

typedef struct keyref {
	const char *s;
	size_t i;
} keyref;

static int keyref_cmp(const void *a, const void *b)
{
	const keyref *x = a, *y = b;
	int c = strcmp(x->s, y->s);
	if (c)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Refuses a mapping whose scalar keys repeat; reports the earliest repetition. O(n log n). */
static int check_dups(const builder *b, const kiln_ynode *map)
{
	if (map->npairs < 2)
		return 0;
	_cleanup_free_ keyref *v = kiln_calloc(map->npairs, sizeof *v);
	size_t n = 0;
	for (size_t i = 0; i < map->npairs; i++)
		if (map->pairs[i].key->kind == KILN_YNODE_SCALAR)
			v[n++] = (keyref){map->pairs[i].key->str, i};
	qsort(v, n, sizeof *v, keyref_cmp);
	size_t best = SIZE_MAX, first = 0;
	for (size_t i = 1; i < n; i++) {
		/* v[i-1], v[i] equal and v[i-1] the first of its run: v[i] repeats it. */
		if (strcmp(v[i - 1].s, v[i].s) == 0 &&
		    (i == 1 || strcmp(v[i - 2].s, v[i].s) != 0) && v[i].i < best) {
			best = v[i].i;
			first = v[i - 1].i;
		}
	}
	if (best == SIZE_MAX)
		return 0;
	const kiln_ynode *k = map->pairs[best].key, *k0 = map->pairs[first].key;
	char q[80];
	return kiln_ynode_err(b->file, k, EINVAL, "duplicate key '%s' (first at %d:%d)",
	                      kiln_yaml_quote(q, sizeof q, k->str), k0->line, k0->col);
}

static int on_scalar(builder *b, const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	if (memchr(v, '\0', len))
		return err_at(b, ev->start_mark, EINVAL, "NUL character in a scalar", NULL);
	int r = account(b, ev->start_mark, 1, len);
	if (r < 0)
		return r;
	kiln_ynode *n = node_new(KILN_YNODE_SCALAR, ev->start_mark, ev->data.scalar.tag);
	n->str = kiln_malloc(len + 1);
	memcpy(n->str, v, len);
	n->str[len] = '\0';
	n->len = len;
	n->bytes = len;
	n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag;
	if (ev->data.scalar.anchor)
		anchor_set(b, (const char *)ev->data.scalar.anchor, n);
	attach(b, n);
	return 0;
}

static int on_start(builder *b, const yaml_event_t *ev, kiln_ynode_kind kind)
{
	const yaml_char_t *anchor, *tag;
	if (kind == KILN_YNODE_SEQUENCE) {
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
	} else {
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
	}
	if (b->depth + 1 > b->lim.max_depth)
		return kiln_err(E2BIG, "%s:%zu:%zu: nesting deeper than %u levels", b->file,
		                ev->start_mark.line + 1, ev->start_mark.column + 1,
		                b->lim.max_depth);
	int r = account(b, ev->start_mark, 1, 0);
	if (r < 0)
		return r;
	if (b->depth == b->stack_cap) {
		b->stack_cap = b->stack_cap ? 2 * b->stack_cap : 8;
		b->stack = kiln_realloc(b->stack, b->stack_cap * sizeof *b->stack);
	}
	b->stack[b->depth++] = (frame){
	    .node = node_new(kind, ev->start_mark, tag),
	    .anchor = kiln_strdup((const char *)anchor),
	};
	return 0;
}

static int on_end(builder *b)
{
	frame f = b->stack[--b->depth];
	int r = 0;
	kiln_ynode_free(f.key); /* libyaml always pairs keys with values; defensive */
	if (f.node->kind == KILN_YNODE_MAPPING)
		r = check_dups(b, f.node);
	if (r < 0) {
		kiln_ynode_free(f.node);
		free(f.anchor);
		return r;
	}
	if (f.anchor)
		anchor_set(b, f.anchor, f.node);
	free(f.anchor);
	attach(b, f.node);
	return 0;
}

static int on_alias(builder *b, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	kiln_ynode *n = anchor_get(b, name);
	if (!n) {
		for (size_t i = 0; i < b->depth; i++)
			if (b->stack[i].anchor && strcmp(b->stack[i].anchor, name) == 0)
				return err_at(b, ev->start_mark, EINVAL,
				              "alias refers to its own enclosing node", name);
		return err_at(b, ev->start_mark, EINVAL, "alias to unknown anchor", name);
	}
	if (b->depth + n->height > b->lim.max_depth)
		return kiln_err(E2BIG, "%s:%zu:%zu: nesting deeper than %u levels (through alias)",
		                b->file, ev->start_mark.line + 1, ev->start_mark.column + 1,
		                b->lim.max_depth);
	int r = account(b, ev->start_mark, n->nodes, n->bytes);
	if (r < 0)
		return r;
	n->refs++;
	attach(b, n);
	return 0;
}

static int parser_error(const builder *b, const yaml_parser_t *p, const char *text, size_t len)
{
	const char *problem = p->problem ? p->problem : "syntax error";
	size_t line = p->problem_mark.line, col = p->problem_mark.column;
	if (p->error == YAML_MEMORY_ERROR)
		return kiln_err(ENOMEM, "%s: out of memory while parsing YAML", b->file);
	if (p->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark: count lines and characters. */
		size_t end = p->problem_offset < len ? p->problem_offset : len;
		line = col = 0;
		for (size_t i = 0; i < end; i++) {
			if (text[i] == '\n') {
				line++;
				col = 0;
			} else if (((unsigned char)text[i] & 0xc0) != 0x80) {
				col++;
			}
		}
		if (p->problem_value != -1)
			return kiln_err(EINVAL, "%s:%zu:%zu: %s (byte 0x%02x)", b->file, line + 1,
			                col + 1, problem, (unsigned)p->problem_value & 0xff);
		return kiln_err(EINVAL, "%s:%zu:%zu: %s", b->file, line + 1, col + 1, problem);
	}
	if (p->context)
		return kiln_err(EINVAL, "%s:%zu:%zu: %s (%s at %zu:%zu)", b->file, line + 1,
		                col + 1, problem, p->context, p->context_mark.line + 1,
		                p->context_mark.column + 1);
	return kiln_err(EINVAL, "%s:%zu:%zu: %s", b->file, line + 1, col + 1, problem);
}

int kiln_yaml_parse(const char *file, const char *text, size_t len, const kiln_yaml_limits *lim,
                    kiln_ynode **out)
{
	builder b = {.file = file ? file : "<input>"};
	*out = NULL;
	if (lim)
		b.lim = *lim;
	if (!b.lim.max_bytes)
		b.lim.max_bytes = KILN_YAML_MAX_BYTES;
	if (!b.lim.max_depth)
		b.lim.max_depth = KILN_YAML_MAX_DEPTH;
	if (!b.lim.max_nodes)
		b.lim.max_nodes = KILN_YAML_MAX_NODES;
	if (!b.lim.max_expanded)
		b.lim.max_expanded = KILN_YAML_MAX_EXPANDED;
	if (!text)
		len = 0;
	if (len > b.lim.max_bytes)
		return kiln_err(E2BIG, "%s:1:1: document is %zu bytes, over the limit of %zu",
		                b.file, len, b.lim.max_bytes);

	yaml_parser_t p;
	if (!yaml_parser_initialize(&p))
		return kiln_err(ENOMEM, "%s: out of memory", b.file);
	yaml_parser_set_input_string(&p, (const unsigned char *)(text ? text : ""), len);

	int r = 0;
	bool done = false;
	while (!done && r >= 0) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev)) {
			r = parser_error(&b, &p, text, len);
			break;
		}
		switch (ev.type) {
		case YAML_SCALAR_EVENT:
			r = on_scalar(&b, &ev);
			break;
		case YAML_SEQUENCE_START_EVENT:
			r = on_start(&b, &ev, KILN_YNODE_SEQUENCE);
			break;
		case YAML_MAPPING_START_EVENT:
			r = on_start(&b, &ev, KILN_YNODE_MAPPING);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			r = on_end(&b);
			break;
		case YAML_ALIAS_EVENT:
			r = on_alias(&b, &ev);
			break;
		case YAML_DOCUMENT_END_EVENT: /* the first document is the only one read */
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (r >= 0 && !b.root)
		r = kiln_err(ENODATA, "%s:1:1: empty document", b.file);
	if (r < 0) {
		builder_free(&b);
		return r;
	}
	*out = b.root;
	b.root = NULL;
	builder_free(&b);
	return 0;
}
