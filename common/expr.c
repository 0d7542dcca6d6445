/*
 * expr — the lexer, parser and evaluator of GitHub Actions expressions.
 *
 * The lexer and parser follow @actions/expressions 0.3.61 (GitHub's own
 * TypeScript evaluator) step by step, down to how they count nesting depth,
 * so that kiln accepts and rejects exactly the same texts. Values during an
 * evaluation are `xval`s: scalars, or arrays and objects that point into the
 * caller's jansson values (never copied), or "filtered arrays" that `*`
 * builds. Objects are seen the way GitHub's evaluator sees them after
 * JSON.parse: integer-like keys first in numeric order, then the others in
 * order, and of keys equal but for case, only the first. Everything an
 * evaluation allocates is owned by its `xeval` and freed at the end.
 *
 * The one deliberate difference from that evaluator: in a string literal
 * every '' stands for ', as GitHub's runner and documentation have it (the
 * TypeScript lexer replaces only the first '').
 */
#include "common/expr.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "common/expr_int.h"

/* ---- tokens --------------------------------------------------------------------------- */

enum {
	T_LPAREN = 1,
	T_RPAREN,
	T_LBRACKET,
	T_RBRACKET,
	T_COMMA,
	T_DOT,
	T_BANG,
	T_NE,
	T_EQ,
	T_GT,
	T_GE,
	T_LT,
	T_LE,
	T_AND,
	T_OR,
	T_STAR,
	T_NUMBER,
	T_STRING,
	T_IDENT,
	T_TRUE,
	T_FALSE,
	T_NULL,
	T_EOF,
};

typedef struct tok {
	int type;
	size_t start, end; /* byte offsets of the lexeme */
	double num;        /* T_NUMBER */
	char *str;         /* T_STRING: the value, owned */
	size_t slen;
} tok;

typedef struct toks {
	tok *v;
	size_t n, cap;
} toks;

static void toks_free(toks *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].str);
	free(t->v);
}

/* "Unexpected symbol: 'x'. Located at position N within expression: ..." */
static int syntax_error(const char *in, size_t n, size_t pos, const char *what, const char *sym,
                        size_t symlen)
{
	size_t show = n, symshow = symlen;
	if (show > 200) { /* keep messages short; cut at a character boundary */
		show = 200;
		while (show > 0 && ((unsigned char)in[show] & 0xc0) == 0x80)
			show--;
	}
	if (symshow > 100) {
		symshow = 100;
		while (symshow > 0 && ((unsigned char)sym[symshow] & 0xc0) == 0x80)
			symshow--;
	}
	return kiln_err(-EINVAL, "%s: '%.*s'. Located at position %zu within expression: %.*s%s",
	                what, (int)symshow, sym, kiln_xjs_utf16_len(in, pos) + 1, (int)show, in,
	                show < n ? "..." : "");
}

static bool is_boundary_at(const char *in, size_t n, size_t i)
{
	unsigned char c = (unsigned char)in[i];
	switch (c) {
	case '(':
	case '[':
	case ')':
	case ']':
	case ',':
	case '.':
	case '!':
	case '>':
	case '<':
	case '=':
	case '&':
	case '|':
		return true;
	}
	if (c < 0x80)
		return kiln_xjs_is_space(c);
	size_t k = i;
	return kiln_xjs_is_space(kiln_xjs_utf8_next(in, n, &k));
}

/* Advances past one character (a whole UTF-8 sequence). */
static size_t next_char(const char *in, size_t n, size_t i)
{
	i++;
	while (i < n && ((unsigned char)in[i] & 0xc0) == 0x80)
		i++;
	return i;
}

static bool legal_identifier(const char *s, size_t n)
{
	if (n == 0)
		return false;
	char c = s[0];
	if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'))
		return false;
	for (size_t i = 1; i < n; i++) {
		c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static tok *add_tok(toks *t, int type, size_t start, size_t end)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 32;
		t->v = kiln_realloc(t->v, t->cap * sizeof *t->v);
	}
	tok *k = &t->v[t->n++];
	memset(k, 0, sizeof *k);
	k->type = type;
	k->start = start;
	k->end = end;
	return k;
}

static int prev_type(const toks *t)
{
	return t->n ? t->v[t->n - 1].type : T_EOF;
}

static int lex(const char *in, size_t n, toks *t)
{
	if (kiln_xjs_utf16_len(in, n) > KILN_EXPR_MAX_LENGTH)
		return kiln_err(-E2BIG, "Exceeded max expression length %d", KILN_EXPR_MAX_LENGTH);
	size_t i = 0;
	while (i < n) {
		size_t start = i;
		char c = in[i++];
		int two;
		switch (c) {
		case '(':
			add_tok(t, T_LPAREN, start, i);
			continue;
		case ')':
			add_tok(t, T_RPAREN, start, i);
			continue;
		case '[':
			add_tok(t, T_LBRACKET, start, i);
			continue;
		case ']':
			add_tok(t, T_RBRACKET, start, i);
			continue;
		case ',':
			add_tok(t, T_COMMA, start, i);
			continue;
		case '*':
			add_tok(t, T_STAR, start, i);
			continue;
		case ' ':
		case '\r':
		case '\t':
		case '\n':
			continue;
		case '!':
		case '<':
		case '>':
			two = i < n && in[i] == '=';
			if (two)
				i++;
			add_tok(t,
			        c == '!'   ? (two ? T_NE : T_BANG)
			        : c == '<' ? (two ? T_LE : T_LT)
			                   : (two ? T_GE : T_GT),
			        start, i);
			continue;
		case '=':
		case '&':
		case '|':
			if (i < n && in[i] == c) {
				i++;
				add_tok(t, c == '=' ? T_EQ : c == '&' ? T_AND : T_OR, start, i);
				continue;
			}
			goto identifier; /* illegal; read to a boundary and report it */
		case '.': {
			int p = prev_type(t);
			if (p == T_IDENT || p == T_RBRACKET || p == T_RPAREN || p == T_STAR) {
				add_tok(t, T_DOT, start, i);
				continue;
			}
			goto number;
		}
		case '-':
		case '+':
			goto number;
		case '\'': {
			/* a string: '' inside stands for ' */
			kiln_buf v = {0};
			for (;;) {
				if (i >= n) {
					kiln_buf_free(&v);
					return syntax_error(in, n, start, "Unexpected symbol",
					                    in + start, n - start);
				}
				if (in[i] == '\'') {
					if (i + 1 < n && in[i + 1] == '\'') {
						kiln_buf_append(&v, "'", 1);
						i += 2;
						continue;
					}
					i++;
					break;
				}
				size_t j = next_char(in, n, i);
				kiln_buf_append(&v, in + i, j - i);
				i = j;
			}
			tok *k = add_tok(t, T_STRING, start, i);
			k->slen = v.len;
			kiln_buf_append(&v, "", 0);
			k->str = kiln_buf_steal(&v);
			continue;
		}
		default:
			if (c >= '0' && c <= '9')
				goto number;
			goto identifier;
		}
	number:
		while (i < n && (!is_boundary_at(in, n, i) || in[i] == '.'))
			i = next_char(in, n, i);
		{
			double d = kiln_xjs_to_number(in + start, i - start);
			if (isnan(d))
				return syntax_error(in, n, start, "Unexpected symbol", in + start,
				                    i - start);
			add_tok(t, T_NUMBER, start, i)->num = d;
		}
		continue;
	identifier:
		i = next_char(in, n, start);
		while (i < n && !is_boundary_at(in, n, i))
			i = next_char(in, n, i);
		{
			const char *lx = in + start;
			size_t len = i - start;
			int type = T_IDENT;
			double num = 0;
			if (prev_type(t) != T_DOT) {
				if (len == 4 && memcmp(lx, "true", 4) == 0)
					type = T_TRUE;
				else if (len == 5 && memcmp(lx, "false", 5) == 0)
					type = T_FALSE;
				else if (len == 4 && memcmp(lx, "null", 4) == 0)
					type = T_NULL;
				else if (len == 3 && memcmp(lx, "NaN", 3) == 0)
					type = T_NUMBER, num = NAN;
				else if (len == 8 && memcmp(lx, "Infinity", 8) == 0)
					type = T_NUMBER, num = INFINITY;
			}
			if (!legal_identifier(lx, len))
				return syntax_error(in, n, start, "Unexpected symbol", lx, len);
			add_tok(t, type, start, i)->num = num;
		}
	}
	add_tok(t, T_EOF, n, n);
	return 0;
}

/* ---- syntax tree ---------------------------------------------------------------------- */

enum { XV_NULL, XV_BOOL, XV_NUM, XV_STR, XV_ARR, XV_OBJ };

typedef struct xlist xlist;
typedef struct xval {
	int k;
	bool b;
	double n;
	const char *s; /* XV_STR: UTF-8 bytes, not necessarily NUL-terminated */
	size_t len;
	json_t *j; /* XV_ARR/XV_OBJ backed by a jansson value (borrowed) */
	xlist *fa; /* XV_ARR: a filtered array that `*` built */
} xval;

struct xlist {
	xval *v;
	size_t n, cap;
};

enum { N_LIT, N_CTX, N_INDEX, N_CALL, N_NOT, N_CHAIN, N_AND, N_OR };

enum {
	F_CASE,
	F_CONTAINS,
	F_ENDSWITH,
	F_FORMAT,
	F_FROMJSON,
	F_JOIN,
	F_STARTSWITH,
	F_TOJSON,
	F_SUCCESS,
	F_FAILURE,
	F_CANCELLED,
	F_ALWAYS,
	F_HASHFILES,
};

static const struct {
	const char *name;
	size_t min, max;
	bool status;
} funcs[] = {
    [F_CASE] = {"case", 3, SIZE_MAX, false},
    [F_CONTAINS] = {"contains", 2, 2, false},
    [F_ENDSWITH] = {"endswith", 2, 2, false},
    [F_FORMAT] = {"format", 1, 255, false},
    [F_FROMJSON] = {"fromjson", 1, 1, false},
    [F_JOIN] = {"join", 1, 2, false},
    [F_STARTSWITH] = {"startswith", 2, 2, false},
    [F_TOJSON] = {"tojson", 1, 1, false},
    [F_SUCCESS] = {"success", 0, 0, true},
    [F_FAILURE] = {"failure", 0, 0, true},
    [F_CANCELLED] = {"cancelled", 0, 0, true},
    [F_ALWAYS] = {"always", 0, 0, true},
    [F_HASHFILES] = {"hashfiles", 1, KILN_EXPR_MAX_HASH_PATTERNS, false},
};

typedef struct node node;
struct node {
	int kind;
	size_t pos; /* byte offset of its token, for messages */
	xval lit;   /* N_LIT; a string's bytes are owned (litbuf) */
	char *litbuf;
	char *name;  /* N_CTX: the name; N_CALL: the function as written */
	int fn;      /* N_CALL */
	node **kids; /* N_CALL args; N_CHAIN/N_AND/N_OR operands; N_NOT [0];
	                N_INDEX [0] object, [1] index (NULL for *) */
	size_t nkids;
	int *ops; /* N_CHAIN: nkids-1 operators */
};

struct kiln_expr {
	node *root;
	char *text;
	size_t len;
};

static void node_free(node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->ops);
	free(n->name);
	free(n->litbuf);
	free(n);
}

static node *node_new(int kind, size_t pos)
{
	node *n = kiln_calloc(1, sizeof *n);
	n->kind = kind;
	n->pos = pos;
	return n;
}

static void node_push(node *n, node *kid)
{
	if ((n->nkids & (n->nkids - 1)) == 0) /* grow at powers of two */
		n->kids = kiln_realloc(n->kids, (n->nkids ? 2 * n->nkids : 1) * sizeof *n->kids);
	n->kids[n->nkids++] = kid;
}

/* ---- parser (a port of @actions/expressions' Parser) ---------------------------------- */

typedef struct parser {
	const char *in;
	size_t n;
	toks *t;
	size_t off;
	int depth;
	unsigned flags; /* KILN_EXPR_* parse flags */
} parser;

static tok *peek(parser *p)
{
	return &p->t->v[p->off];
}

static bool at_end(parser *p)
{
	return peek(p)->type == T_EOF;
}

static bool check(parser *p, int type)
{
	return !at_end(p) && peek(p)->type == type;
}

static tok *previous(parser *p)
{
	return &p->t->v[p->off - 1];
}

static bool match(parser *p, int type)
{
	if (!check(p, type))
		return false;
	p->off++;
	return true;
}

static int tok_error(parser *p, const char *what, const tok *k)
{
	if (k->type == T_EOF)
		return syntax_error(p->in, p->n, k->start, what, "EOF", 3);
	if (k->type == T_STRING)
		return syntax_error(p->in, p->n, k->start, what, k->str, k->slen);
	return syntax_error(p->in, p->n, k->start, what, p->in + k->start, k->end - k->start);
}

static int incr_depth(parser *p)
{
	if (++p->depth > KILN_EXPR_MAX_DEPTH) {
		char what[64];
		snprintf(what, sizeof what, "Exceeded max expression depth %d",
		         KILN_EXPR_MAX_DEPTH);
		return tok_error(p, what, peek(p));
	}
	return 0;
}

static int p_expression(parser *p, node **out);

static int p_primary(parser *p, node **out, bool *indexable)
{
	*indexable = false;
	tok *k = peek(p);
	node *n;
	switch (at_end(p) ? T_EOF : k->type) {
	case T_FALSE:
	case T_TRUE:
		n = node_new(N_LIT, k->start);
		n->lit.k = XV_BOOL;
		n->lit.b = k->type == T_TRUE;
		break;
	case T_NULL:
		n = node_new(N_LIT, k->start);
		n->lit.k = XV_NULL;
		break;
	case T_NUMBER:
		n = node_new(N_LIT, k->start);
		n->lit.k = XV_NUM;
		n->lit.n = k->num;
		break;
	case T_STRING:
		n = node_new(N_LIT, k->start);
		n->lit.k = XV_STR;
		n->litbuf = kiln_malloc(k->slen + 1);
		memcpy(n->litbuf, k->str, k->slen + 1);
		n->lit.s = n->litbuf;
		n->lit.len = k->slen;
		break;
	case T_LPAREN: {
		p->off++;
		node *e;
		int r = p_expression(p, &e);
		if (r < 0)
			return r;
		if (at_end(p)) {
			node_free(e);
			return tok_error(p, "Unexpected end of expression", previous(p));
		}
		if (!match(p, T_RPAREN)) {
			node_free(e);
			return tok_error(p, "Unexpected symbol", peek(p));
		}
		*indexable = true; /* a grouping */
		*out = e;
		return 0;
	}
	case T_EOF:
		return tok_error(p, "Unexpected end of expression", p->off ? previous(p) : peek(p));
	default:
		return tok_error(p, "Unexpected symbol", k);
	}
	p->off++;
	*out = n;
	return 0;
}

static int find_function(const char *name, size_t len)
{
	for (size_t f = 0; f < KILN_ARRAY_SIZE(funcs); f++)
		if (strlen(funcs[f].name) == len && strncasecmp(funcs[f].name, name, len) == 0)
			return (int)f;
	return -1;
}

static int p_call(parser *p, node **out, bool *indexable)
{
	if (!check(p, T_IDENT))
		return p_primary(p, out, indexable);
	tok *id = peek(p);
	p->off++;
	const char *name = p->in + id->start;
	size_t len = id->end - id->start;
	*indexable = true;
	if (!match(p, T_LPAREN)) {
		node *n = node_new(N_CTX, id->start);
		n->name = kiln_malloc(len + 1);
		memcpy(n->name, name, len);
		n->name[len] = '\0';
		*out = n;
		return 0;
	}
	node *n = node_new(N_CALL, id->start);
	n->name = kiln_malloc(len + 1);
	memcpy(n->name, name, len);
	n->name[len] = '\0';
	while (!match(p, T_RPAREN)) {
		node *a;
		int r = p_expression(p, &a);
		if (r < 0) {
			node_free(n);
			return r;
		}
		node_push(n, a);
		if (!check(p, T_RPAREN) && !match(p, T_COMMA)) {
			node_free(n);
			return tok_error(p, "Unexpected symbol", peek(p));
		}
	}
	int f = find_function(name, len);
	const char *err = NULL;
	if (f < 0)
		err = "Unrecognized function";
	else if (n->nkids < funcs[f].min)
		err = "Too few parameters supplied";
	else if (n->nkids > funcs[f].max &&
		 !((p->flags & KILN_EXPR_JOB_STATUS) && (f == F_SUCCESS || f == F_FAILURE)))
		err = "Too many parameters supplied";
	else if (f == F_CASE && n->nkids % 2 == 0)
		err = "Even number of parameters supplied, requires an odd number of parameters";
	if (err) {
		node_free(n);
		return tok_error(p, err, id);
	}
	n->fn = f;
	*out = n;
	return 0;
}

static int p_index(parser *p, node **out)
{
	node *e = NULL;
	bool indexable;
	int r = p_call(p, &e, &indexable);
	if (r < 0)
		return r;
	int increased = 0;
	while (indexable) {
		if (match(p, T_LBRACKET)) {
			node *idx = NULL;
			if (!match(p, T_STAR)) {
				r = p_expression(p, &idx);
				if (r < 0)
					goto fail;
			}
			if (!match(p, T_RBRACKET)) {
				node_free(idx);
				r = tok_error(p, "Unexpected symbol", peek(p));
				goto fail;
			}
			r = incr_depth(p);
			if (r < 0) {
				node_free(idx);
				goto fail;
			}
			increased++;
			node *ia = node_new(N_INDEX, e->pos);
			node_push(ia, e);
			node_push(ia, idx);
			e = ia;
		} else if (match(p, T_DOT)) {
			r = incr_depth(p);
			if (r < 0)
				goto fail;
			increased++;
			node *idx = NULL;
			if (match(p, T_IDENT)) {
				tok *k = previous(p);
				idx = node_new(N_LIT, k->start);
				idx->lit.k = XV_STR;
				idx->lit.len = k->end - k->start;
				idx->litbuf = kiln_malloc(idx->lit.len + 1);
				memcpy(idx->litbuf, p->in + k->start, idx->lit.len);
				idx->litbuf[idx->lit.len] = '\0';
				idx->lit.s = idx->litbuf;
			} else if (!match(p, T_STAR)) {
				r = tok_error(p, "Unexpected symbol", peek(p));
				goto fail;
			}
			node *ia = node_new(N_INDEX, e->pos);
			node_push(ia, e);
			node_push(ia, idx);
			e = ia;
		} else {
			break;
		}
	}
	p->depth -= increased;
	*out = e;
	return 0;
fail:
	node_free(e);
	return r;
}

static int p_unary(parser *p, node **out)
{
	if (!match(p, T_BANG))
		return p_index(p, out);
	size_t pos = previous(p)->start;
	int r = incr_depth(p);
	if (r < 0)
		return r;
	node *inner;
	r = p_unary(p, &inner);
	if (r < 0)
		return r;
	node *n = node_new(N_NOT, pos);
	node_push(n, inner);
	p->depth--;
	*out = n;
	return 0;
}

/* Left-associative chains of comparisons (a < b >= c) or of equalities (a == b != c): kept
   flat, evaluated left to right exactly as the nested binary nodes of the original. */
static int p_chain(parser *p, node **out, bool equality)
{
	node *first;
	int r = equality ? p_chain(p, &first, false) : p_unary(p, &first);
	if (r < 0)
		return r;
	node *chain = NULL;
	for (;;) {
		int t = at_end(p) ? T_EOF : peek(p)->type;
		bool is_op = equality ? (t == T_EQ || t == T_NE)
		                      : (t == T_GT || t == T_GE || t == T_LT || t == T_LE);
		if (!is_op)
			break;
		p->off++;
		node *right;
		r = equality ? p_chain(p, &right, false) : p_unary(p, &right);
		if (r < 0) {
			node_free(chain ? chain : first);
			return r;
		}
		if (!chain) {
			chain = node_new(N_CHAIN, first->pos);
			node_push(chain, first);
		}
		chain->ops = kiln_realloc(chain->ops, chain->nkids * sizeof *chain->ops);
		chain->ops[chain->nkids - 1] = t;
		node_push(chain, right);
	}
	*out = chain ? chain : first;
	return 0;
}

static int p_logical(parser *p, node **out, bool is_or)
{
	node *e;
	int r = is_or ? p_logical(p, &e, false) : p_chain(p, &e, true);
	if (r < 0)
		return r;
	int op = is_or ? T_OR : T_AND;
	if (check(p, op)) {
		r = incr_depth(p);
		if (r < 0) {
			node_free(e);
			return r;
		}
		node *l = node_new(is_or ? N_OR : N_AND, e->pos);
		node_push(l, e);
		while (match(p, op)) {
			node *right;
			r = is_or ? p_logical(p, &right, false) : p_chain(p, &right, true);
			if (r < 0) {
				node_free(l);
				return r;
			}
			node_push(l, right);
		}
		p->depth--;
		e = l;
	}
	*out = e;
	return 0;
}

static int p_expression(parser *p, node **out)
{
	int r = incr_depth(p);
	if (r < 0)
		return r;
	r = p_logical(p, out, true);
	p->depth--;
	return r;
}

static int parse_nf(const char *text, size_t n, unsigned flags, kiln_expr **out)
{
	*out = NULL;
	if (!kiln_xjs_utf8_valid(text, n))
		return kiln_err(-EINVAL, "expression is not valid UTF-8");
	toks t = {0};
	int r = lex(text, n, &t);
	if (r < 0) {
		toks_free(&t);
		return r;
	}
	parser p = {.in = text, .n = n, .t = &t, .flags = flags};
	if (at_end(&p)) {
		toks_free(&t);
		return kiln_err(-EINVAL, "Expected an expression");
	}
	node *root;
	r = p_expression(&p, &root);
	if (r == 0 && !at_end(&p)) {
		r = tok_error(&p, "Unexpected symbol", peek(&p));
		node_free(root);
	}
	toks_free(&t);
	if (r < 0)
		return r;
	kiln_expr *e = kiln_calloc(1, sizeof *e);
	e->root = root;
	e->text = kiln_malloc(n + 1);
	memcpy(e->text, text, n);
	e->text[n] = '\0';
	e->len = n;
	*out = e;
	return 0;
}

static int parse_n(const char *text, size_t n, kiln_expr **out)
{
	return parse_nf(text, n, 0, out);
}

int kiln_expr_parse(const char *text, kiln_expr **out)
{
	return parse_n(text, strlen(text), out);
}

int kiln_expr_parse_n(const char *text, size_t len, kiln_expr **out)
{
	return parse_n(text, len, out);
}

void kiln_expr_free(kiln_expr *e)
{
	if (!e)
		return;
	node_free(e->root);
	free(e->text);
	free(e);
}

void kiln_expr_freep(kiln_expr **e)
{
	kiln_expr_free(*e);
}

/* ---- objects as GitHub's evaluator sees them ------------------------------------------ */

typedef struct xview_ent {
	const char *key;
	size_t klen;
	char *lkey; /* key.toLowerCase() */
	size_t llen;
	json_t *val;
} xview_ent;

typedef struct xview {
	json_t *obj;
	xview_ent *e;
	size_t n;
	size_t *slots; /* open addressing over lkey: entry index + 1, 0 = empty */
	size_t nslots;
} xview;

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static char *lower_dup(const char *s, size_t n, size_t *len)
{
	kiln_buf b = {0};
	kiln_xjs_lower(&b, s, n);
	*len = b.len;
	return kiln_buf_steal(&b);
}

/* "0".."4294967294" without leading zeros: JavaScript's array indices, which an object
   lists first, in numeric order. */
static bool array_index(const char *k, size_t n, uint64_t *v)
{
	if (n == 0 || n > 10 || (n > 1 && k[0] == '0'))
		return false;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (k[i] < '0' || k[i] > '9')
			return false;
		x = x * 10 + (uint64_t)(k[i] - '0');
	}
	*v = x;
	return x <= 4294967294ull;
}

/* Keys that GitHub's Dictionary drops: its index map is a plain object, whose prototype
   already answers to these names. */
static bool shadowed_key(const char *lkey, size_t n)
{
	return (n == 11 && memcmp(lkey, "constructor", 11) == 0) ||
	       (n == 9 && memcmp(lkey, "__proto__", 9) == 0);
}

typedef struct korder {
	const char *key;
	size_t klen;
	json_t *val;
	bool isidx;
	uint64_t idx;
	size_t pos;
} korder;

static int korder_cmp(const void *a, const void *b)
{
	const korder *x = a, *y = b;
	if (x->isidx != y->isidx)
		return x->isidx ? -1 : 1;
	if (x->isidx && x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static ssize_t view_slot(const xview *v, const char *lkey, size_t llen)
{
	size_t mask = v->nslots - 1;
	for (size_t s = hash_bytes(lkey, llen) & mask;; s = (s + 1) & mask) {
		size_t e = v->slots[s];
		if (e == 0)
			return -(ssize_t)s - 1;
		const xview_ent *x = &v->e[e - 1];
		if (x->llen == llen && memcmp(x->lkey, lkey, llen) == 0)
			return (ssize_t)e - 1;
	}
}

static xview *view_build(json_t *obj)
{
	xview *v = kiln_calloc(1, sizeof *v);
	v->obj = obj;
	size_t n = json_object_size(obj), i = 0;
	korder *ko = kiln_calloc(n ? n : 1, sizeof *ko);
	const char *key;
	size_t klen;
	json_t *val;
	json_object_keylen_foreach(obj, key, klen, val)
	{
		ko[i] = (korder){.key = key, .klen = klen, .val = val, .pos = i};
		ko[i].isidx = array_index(key, klen, &ko[i].idx);
		i++;
	}
	qsort(ko, n, sizeof *ko, korder_cmp);
	v->nslots = 8;
	while (v->nslots < 2 * n)
		v->nslots *= 2;
	v->slots = kiln_calloc(v->nslots, sizeof *v->slots);
	v->e = kiln_calloc(n ? n : 1, sizeof *v->e);
	for (i = 0; i < n; i++) {
		size_t llen;
		char *lkey = lower_dup(ko[i].key, ko[i].klen, &llen);
		ssize_t s = view_slot(v, lkey, llen);
		if (s >= 0 ||
		    shadowed_key(lkey, llen)) { /* the first of keys equal but for case wins */
			free(lkey);
			continue;
		}
		v->e[v->n] = (xview_ent){ko[i].key, ko[i].klen, lkey, llen, ko[i].val};
		v->slots[-s - 1] = ++v->n;
	}
	free(ko);
	return v;
}

static void view_free(xview *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->e[i].lkey);
	free(v->e);
	free(v->slots);
	free(v);
}

static json_t *view_get(const xview *v, const char *key, size_t klen)
{
	size_t llen;
	char small[64] = ""; /* zeroed: gcc -O2 cannot see that only klen bytes are read */
	char *lkey;
	bool ascii = klen < sizeof small;
	for (size_t i = 0; ascii && i < klen; i++)
		ascii = (unsigned char)key[i] < 0x80;
	if (ascii) {
		for (size_t i = 0; i < klen; i++)
			small[i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] + 32 : key[i]);
		lkey = small;
		llen = klen;
	} else {
		lkey = lower_dup(key, klen, &llen);
	}
	ssize_t s = view_slot(v, lkey, llen);
	if (lkey != small)
		free(lkey);
	return s >= 0 ? v->e[s].val : NULL;
}

/* ---- evaluation ----------------------------------------------------------------------- */

typedef struct xeval {
	const kiln_expr_ctx *ctx;
	void **mem; /* strings and lists the evaluation made */
	size_t nmem, capmem;
	json_t **owned; /* fromJSON results */
	size_t nowned, capowned;
	size_t used;   /* bytes counted against KILN_EXPR_MAX_MEMORY */
	xview **views; /* cache, open addressing by object pointer */
	size_t nviews, capviews;
} xeval;

static void ev_free(xeval *ev)
{
	for (size_t i = 0; i < ev->nmem; i++)
		free(ev->mem[i]);
	free(ev->mem);
	for (size_t i = 0; i < ev->nowned; i++)
		json_decref(ev->owned[i]);
	free(ev->owned);
	for (size_t i = 0; i < ev->capviews; i++)
		view_free(ev->views[i]);
	free(ev->views);
}

static void ev_keep(xeval *ev, void *p)
{
	if (ev->nmem == ev->capmem) {
		ev->capmem = ev->capmem ? 2 * ev->capmem : 16;
		ev->mem = kiln_realloc(ev->mem, ev->capmem * sizeof *ev->mem);
	}
	ev->mem[ev->nmem++] = p;
}

static int ev_charge(xeval *ev, size_t bytes)
{
	ev->used += bytes;
	if (ev->used > KILN_EXPR_MAX_MEMORY)
		return kiln_err(-E2BIG, "expression evaluation needs more than %u bytes",
		                KILN_EXPR_MAX_MEMORY);
	return 0;
}

/* Makes a string value of a buffer's contents, which the evaluation then owns. */
static int ev_string(xeval *ev, kiln_buf *b, xval *out)
{
	kiln_buf_append(b, "", 0);
	size_t len = b->len;
	char *s = kiln_buf_steal(b);
	ev_keep(ev, s);
	*out = (xval){.k = XV_STR, .s = s, .len = len};
	return ev_charge(ev, len);
}

static xlist *ev_list(xeval *ev)
{
	xlist *l = kiln_calloc(1, sizeof *l);
	ev_keep(ev, l);
	return l;
}

/* Appends to a filtered array; its growth counts against the evaluation's memory. */
static int list_push(xeval *ev, xlist *l, xval v)
{
	if (l->n == l->cap) {
		/* the old array stays registered until the end; the sizes double, so that is cheap
		 */
		l->cap = l->cap ? 2 * l->cap : 8;
		int r = ev_charge(ev, l->cap * sizeof(xval));
		if (r < 0)
			return r;
		xval *nv = kiln_malloc(l->cap * sizeof *nv);
		if (l->n)
			memcpy(nv, l->v, l->n * sizeof *nv);
		ev_keep(ev, nv);
		l->v = nv;
	}
	l->v[l->n++] = v;
	return 0;
}

static xview *ev_view(xeval *ev, json_t *obj)
{
	if (ev->nviews * 2 >= ev->capviews) {
		size_t ncap = ev->capviews ? 2 * ev->capviews : 16;
		xview **nv = kiln_calloc(ncap, sizeof *nv);
		for (size_t i = 0; i < ev->capviews; i++) {
			xview *v = ev->views[i];
			if (!v)
				continue;
			size_t s = (size_t)((uintptr_t)v->obj >> 4) & (ncap - 1);
			while (nv[s])
				s = (s + 1) & (ncap - 1);
			nv[s] = v;
		}
		free(ev->views);
		ev->views = nv;
		ev->capviews = ncap;
	}
	size_t mask = ev->capviews - 1;
	size_t s = (size_t)((uintptr_t)obj >> 4) & mask;
	while (ev->views[s]) {
		if (ev->views[s]->obj == obj)
			return ev->views[s];
		s = (s + 1) & mask;
	}
	ev->views[s] = view_build(obj);
	ev->nviews++;
	return ev->views[s];
}

static xval from_json(json_t *j)
{
	xval v = {0};
	switch (json_typeof(j)) {
	case JSON_NULL:
		v.k = XV_NULL;
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v.k = XV_BOOL;
		v.b = json_is_true(j);
		break;
	case JSON_INTEGER:
		v.k = XV_NUM;
		v.n = (double)json_integer_value(j);
		break;
	case JSON_REAL:
		v.k = XV_NUM;
		v.n = json_real_value(j);
		break;
	case JSON_STRING:
		v.k = XV_STR;
		v.s = json_string_value(j);
		v.len = json_string_length(j);
		break;
	case JSON_ARRAY:
		v.k = XV_ARR;
		v.j = j;
		break;
	case JSON_OBJECT:
		v.k = XV_OBJ;
		v.j = j;
		break;
	}
	return v;
}

static bool primitive(const xval *v)
{
	return v->k <= XV_STR;
}

static size_t arr_len(const xval *v)
{
	return v->fa ? v->fa->n : json_array_size(v->j);
}

static xval arr_get(const xval *v, size_t i)
{
	return v->fa ? v->fa->v[i] : from_json(json_array_get(v->j, i));
}

/* The string form (coerceString); numbers are written into numbuf. */
static void to_str(const xval *v, char numbuf[40], const char **s, size_t *len)
{
	switch (v->k) {
	case XV_NULL:
		*s = "";
		break;
	case XV_BOOL:
		*s = v->b ? "true" : "false";
		break;
	case XV_NUM:
		kiln_xjs_number_coerce(v->n, numbuf);
		*s = numbuf;
		break;
	case XV_STR:
		*s = v->s;
		*len = v->len;
		return;
	case XV_ARR:
		*s = "Array";
		break;
	default:
		*s = "Object";
		break;
	}
	*len = strlen(*s);
}

static double to_num(const xval *v)
{
	switch (v->k) {
	case XV_NULL:
		return 0;
	case XV_BOOL:
		return v->b ? 1 : 0;
	case XV_NUM:
		return v->n;
	case XV_STR:
		return kiln_xjs_to_number(v->s, v->len);
	default:
		return NAN;
	}
}

static bool falsy(const xval *v)
{
	switch (v->k) {
	case XV_NULL:
		return true;
	case XV_BOOL:
		return !v->b;
	case XV_NUM:
		return v->n == 0 || isnan(v->n);
	case XV_STR:
		return v->len == 0;
	default:
		return false;
	}
}

static xval num_val(double d)
{
	return (xval){.k = XV_NUM, .n = d};
}

static xval bool_val(bool b)
{
	return (xval){.k = XV_BOOL, .b = b};
}

/* GitHub's coerceTypes: like JavaScript's ==, but objects are never made primitive. */
static void coerce(xval *l, xval *r)
{
	for (;;) {
		if (l->k == r->k)
			return;
		if (l->k == XV_NUM && r->k == XV_STR) {
			*r = num_val(to_num(r));
			return;
		}
		if (l->k == XV_STR && r->k == XV_NUM) {
			*l = num_val(to_num(l));
			return;
		}
		if (l->k == XV_NULL || l->k == XV_BOOL) {
			*l = num_val(to_num(l));
			continue;
		}
		if (r->k == XV_NULL || r->k == XV_BOOL) {
			*r = num_val(to_num(r));
			continue;
		}
		return;
	}
}

static bool same_ref(const xval *l, const xval *r)
{
	if (l->fa || r->fa)
		return l->fa == r->fa;
	return l->j == r->j;
}

static bool equals(xval l, xval r)
{
	coerce(&l, &r);
	if (l.k != r.k)
		return false;
	switch (l.k) {
	case XV_NULL:
		return true;
	case XV_NUM:
		return !isnan(l.n) && !isnan(r.n) && l.n == r.n;
	case XV_STR:
		return kiln_xjs_equal_ci(l.s, l.len, r.s, r.len);
	case XV_BOOL:
		return l.b == r.b;
	default:
		return same_ref(&l, &r);
	}
}

static int str_order(const xval *l, const xval *r)
{
	kiln_buf a = {0}, b = {0};
	kiln_xjs_upper_special(&a, l->s, l->len);
	kiln_xjs_upper_special(&b, r->s, r->len);
	int c = kiln_xjs_cmp(a.p, a.len, b.p, b.len);
	kiln_buf_free(&a);
	kiln_buf_free(&b);
	return c;
}

/* greaterThan (dir > 0) and lessThan (dir < 0). */
static bool order(xval l, xval r, int dir)
{
	coerce(&l, &r);
	if (l.k != r.k)
		return false;
	switch (l.k) {
	case XV_NUM:
		if (isnan(l.n) || isnan(r.n))
			return false;
		return dir > 0 ? l.n > r.n : l.n < r.n;
	case XV_STR: {
		int c = str_order(&l, &r);
		return dir > 0 ? c > 0 : c < 0;
	}
	case XV_BOOL:
		return dir > 0 ? (l.b && !r.b) : (!l.b && r.b);
	default:
		return false;
	}
}

static int ev_node(xeval *ev, const node *n, xval *out);

static int ev_index(xeval *ev, const node *n, xval *out)
{
	bool star = n->kids[1] == NULL, has_str = false, has_int = false;
	const char *istr = NULL;
	size_t ilen = 0;
	double iint = 0;
	char numbuf[40];
	if (!star) {
		xval idx;
		int r = ev_node(ev, n->kids[1], &idx);
		if (r < 0)
			return r;
		if (primitive(&idx)) {
			to_str(&idx, numbuf, &istr, &ilen);
			has_str = true;
		}
		double f = to_num(&idx);
		if (isfinite(f) && f >= 0) {
			has_int = true;
			iint = floor(f);
		}
	}
	xval obj;
	int r = ev_node(ev, n->kids[0], &obj);
	if (r < 0)
		return r;
	if (obj.k == XV_ARR && obj.fa) {
		/* a filtered array: apply the index to each of its items */
		xlist *res = ev_list(ev);
		for (size_t i = 0; i < obj.fa->n; i++) {
			xval item = obj.fa->v[i];
			if (item.k == XV_OBJ) {
				xview *v = ev_view(ev, item.j);
				if (star) {
					for (size_t k = 0; k < v->n && r == 0; k++)
						r = list_push(ev, res, from_json(v->e[k].val));
				} else if (has_str) {
					json_t *j = view_get(v, istr, ilen);
					if (j)
						r = list_push(ev, res, from_json(j));
				}
			} else if (item.k == XV_ARR) {
				size_t len = arr_len(&item);
				if (star) {
					for (size_t k = 0; k < len && r == 0; k++)
						r = list_push(ev, res, arr_get(&item, k));
				} else if (has_int && iint < (double)len) {
					r = list_push(ev, res, arr_get(&item, (size_t)iint));
				}
			}
			if (r < 0)
				return r;
		}
		*out = (xval){.k = XV_ARR, .fa = res};
		return 0;
	}
	if (obj.k == XV_ARR) {
		size_t len = arr_len(&obj);
		if (star) {
			xlist *res = ev_list(ev);
			for (size_t k = 0; k < len && r == 0; k++)
				r = list_push(ev, res, arr_get(&obj, k));
			*out = (xval){.k = XV_ARR, .fa = res};
			return r;
		} else if (has_int && iint < (double)len) {
			*out = arr_get(&obj, (size_t)iint);
		} else {
			*out = (xval){.k = XV_NULL};
		}
		return 0;
	}
	if (obj.k == XV_OBJ) {
		xview *v = ev_view(ev, obj.j);
		if (star) {
			xlist *res = ev_list(ev);
			for (size_t k = 0; k < v->n && r == 0; k++)
				r = list_push(ev, res, from_json(v->e[k].val));
			*out = (xval){.k = XV_ARR, .fa = res};
			return r;
		}
		json_t *j = has_str ? view_get(v, istr, ilen) : NULL;
		*out = j ? from_json(j) : (xval){.k = XV_NULL};
		return 0;
	}
	*out = star ? (xval){.k = XV_ARR, .fa = ev_list(ev)} : (xval){.k = XV_NULL};
	return 0;
}

/* Normalizes a value into plain JSON as GitHub's replacer does (NaN and the infinities
   become null). */
static json_t *to_json(xeval *ev, const xval *v, int depth)
{
	if (depth > 4096) {
		kiln_err(-ELOOP, "value nested too deeply");
		return NULL;
	}
	switch (v->k) {
	case XV_NULL:
		return json_null();
	case XV_BOOL:
		return json_boolean(v->b);
	case XV_NUM:
		return isfinite(v->n) ? json_real(v->n) : json_null();
	case XV_STR:
		return json_stringn_nocheck(v->s, v->len);
	case XV_ARR: {
		json_t *a = json_array();
		size_t n = arr_len(v);
		for (size_t i = 0; i < n; i++) {
			xval item = arr_get(v, i);
			json_t *j = to_json(ev, &item, depth + 1);
			if (!j) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, j);
		}
		return a;
	}
	default: {
		json_t *o = json_object();
		xview *view = view_build(v->j);
		for (size_t i = 0; i < view->n; i++) {
			xval item = from_json(view->e[i].val);
			json_t *j = to_json(ev, &item, depth + 1);
			if (!j) {
				json_decref(o);
				view_free(view);
				return NULL;
			}
			json_object_setn_new_nocheck(o, view->e[i].key, view->e[i].klen, j);
		}
		view_free(view);
		return o;
	}
	}
}

static int fn_contains(xval *a, xval *out)
{
	char nb1[40], nb2[40];
	if (primitive(&a[0])) {
		if (!primitive(&a[1])) {
			*out = bool_val(false);
			return 0;
		}
		const char *ls, *rs;
		size_t ll, rl;
		to_str(&a[0], nb1, &ls, &ll);
		to_str(&a[1], nb2, &rs, &rl);
		kiln_buf lb = {0}, rb = {0};
		kiln_xjs_lower(&lb, ls, ll);
		kiln_xjs_lower(&rb, rs, rl);
		*out = bool_val(rb.len == 0 || memmem(lb.p, lb.len, rb.p, rb.len) != NULL);
		kiln_buf_free(&lb);
		kiln_buf_free(&rb);
		return 0;
	}
	if (a[0].k == XV_ARR) {
		size_t n = arr_len(&a[0]);
		/* A string meets number, boolean and null items as a number: convert it once, not
		 * once per item, which made a long string and a long array quadratic (tests/fuzz). */
		xval num = a[1];
		if (a[1].k == XV_STR)
			num = num_val(to_num(&a[1]));
		for (size_t i = 0; i < n; i++) {
			xval item = arr_get(&a[0], i);
			bool as_num = item.k == XV_NUM || item.k == XV_BOOL || item.k == XV_NULL;
			if (equals(as_num ? num : a[1], item)) {
				*out = bool_val(true);
				return 0;
			}
		}
	}
	*out = bool_val(false);
	return 0;
}

static int fn_affix(xval *a, xval *out, bool suffix)
{
	if (!primitive(&a[0]) || !primitive(&a[1])) {
		*out = bool_val(false);
		return 0;
	}
	char nb1[40], nb2[40];
	const char *ls, *rs;
	size_t ll, rl;
	to_str(&a[0], nb1, &ls, &ll);
	to_str(&a[1], nb2, &rs, &rl);
	kiln_buf lb = {0}, rb = {0};
	kiln_xjs_upper_special(&lb, ls, ll);
	kiln_xjs_upper_special(&rb, rs, rl);
	bool ok =
	    rb.len <= lb.len && memcmp(lb.p + (suffix ? lb.len - rb.len : 0), rb.p, rb.len) == 0;
	kiln_buf_free(&lb);
	kiln_buf_free(&rb);
	*out = bool_val(ok);
	return 0;
}

static size_t find_byte(const char *s, size_t n, size_t from, char c)
{
	if (from >= n)
		return SIZE_MAX;
	const char *p = memchr(s + from, c, n - from);
	return p ? (size_t)(p - s) : SIZE_MAX;
}

static int format_error(const char *what, const char *fs, size_t n)
{
	return kiln_err(-EINVAL, "The following format string %s: %.*s%s", what,
	                (int)(n > 200 ? 200 : n), fs, n > 200 ? "..." : "");
}

static int fn_format(xeval *ev, xval *a, size_t na, xval *out)
{
	char nb[40];
	const char *fs;
	size_t n;
	to_str(&a[0], nb, &fs, &n);
	kiln_buf res = {0};
	size_t i = 0, lb = SIZE_MAX, rb = SIZE_MAX;
	bool lb_valid = false, rb_valid = false;
	while (i < n) {
		/* indexOf from i; remembered while still ahead, since each search can be long */
		if (!lb_valid || (lb != SIZE_MAX && lb < i))
			lb = find_byte(fs, n, i, '{'), lb_valid = true;
		if (!rb_valid || (rb != SIZE_MAX && rb < i))
			rb = find_byte(fs, n, i, '}'), rb_valid = true;
		if (res.len > KILN_EXPR_MAX_RESULT) {
			kiln_buf_free(&res);
			return kiln_err(-E2BIG, "format() result longer than %u bytes",
			                KILN_EXPR_MAX_RESULT);
		}
		if (lb != SIZE_MAX && (rb == SIZE_MAX || rb > lb)) {
			if (lb + 1 < n && fs[lb + 1] == '{') { /* escaped {{ */
				kiln_buf_append(&res, fs + i, lb - i + 1);
				i = lb + 2;
				continue;
			}
			if (rb != SIZE_MAX && rb > lb + 1) {
				size_t d = lb + 1, digits = 0;
				while (d < n && fs[d] >= '0' && fs[d] <= '9')
					d++, digits++;
				if (digits > 0) {
					/* parseInt of the digits; anything too long is out of range
					 * anyway */
					double idx = 0;
					for (size_t k = lb + 1; k < d; k++)
						idx = idx * 10 + (fs[k] - '0');
					if (1 + idx > (double)(na - 1)) {
						kiln_buf_free(&res);
						return format_error(
						    "references more arguments than were supplied",
						    fs, n);
					}
					kiln_buf_append(&res, fs + i, lb - i);
					char nb2[40];
					const char *as;
					size_t al;
					to_str(&a[1 + (size_t)idx], nb2, &as, &al);
					kiln_buf_append(&res, as, al);
					i = rb + 1;
					continue;
				}
			}
			kiln_buf_free(&res);
			return format_error("is invalid", fs, n);
		} else if (rb != SIZE_MAX) {
			if (rb + 1 < n && fs[rb + 1] == '}') { /* escaped }} */
				kiln_buf_append(&res, fs + i, rb - i + 1);
				i = rb + 2;
				continue;
			}
			kiln_buf_free(&res);
			return format_error("is invalid", fs, n);
		} else {
			kiln_buf_append(&res, fs + i, n - i);
			break;
		}
	}
	if (res.len > KILN_EXPR_MAX_RESULT) {
		kiln_buf_free(&res);
		return kiln_err(-E2BIG, "format() result longer than %u bytes",
		                KILN_EXPR_MAX_RESULT);
	}
	return ev_string(ev, &res, out);
}

static int fn_join(xeval *ev, xval *a, size_t na, xval *out)
{
	char nb[40];
	const char *s;
	size_t len;
	kiln_buf res = {0};
	if (primitive(&a[0])) {
		to_str(&a[0], nb, &s, &len);
		kiln_buf_append(&res, s, len);
		return ev_string(ev, &res, out);
	}
	if (a[0].k != XV_ARR)
		return ev_string(ev, &res, out);
	const char *sep = ",";
	size_t seplen = 1;
	char sb[40];
	if (na > 1 && primitive(&a[1]))
		to_str(&a[1], sb, &sep, &seplen);
	size_t n = arr_len(&a[0]);
	for (size_t i = 0; i < n; i++) {
		if (i)
			kiln_buf_append(&res, sep, seplen);
		xval item = arr_get(&a[0], i);
		to_str(&item, nb, &s, &len);
		kiln_buf_append(&res, s, len);
		if (res.len > KILN_EXPR_MAX_RESULT) {
			kiln_buf_free(&res);
			return kiln_err(-E2BIG, "join() result longer than %u bytes",
			                KILN_EXPR_MAX_RESULT);
		}
	}
	return ev_string(ev, &res, out);
}

static int fn_tojson(xeval *ev, xval *a, xval *out)
{
	json_t *j = to_json(ev, &a[0], 0);
	if (!j)
		return -ELOOP;
	kiln_buf res = {0};
	int r = kiln_xjs_json_write(&res, j, true, KILN_EXPR_MAX_RESULT);
	json_decref(j);
	if (r < 0) {
		kiln_buf_free(&res);
		kiln_err_prefix("toJSON");
		return r;
	}
	return ev_string(ev, &res, out);
}

static int fn_fromjson(xeval *ev, xval *a, xval *out)
{
	char nb[40];
	const char *s;
	size_t len;
	to_str(&a[0], nb, &s, &len);
	size_t i = 0;
	bool blank = true;
	while (i < len && blank)
		blank = kiln_xjs_is_space(kiln_xjs_utf8_next(s, len, &i));
	if (blank)
		return kiln_err(-EINVAL, "fromJSON: empty input");
	if (len > KILN_EXPR_MAX_JSON_INPUT)
		return kiln_err(-E2BIG, "fromJSON: input longer than %u bytes",
		                KILN_EXPR_MAX_JSON_INPUT);
	int r = ev_charge(ev, 2 * len);
	if (r < 0)
		return r;
	json_error_t err;
	json_t *j =
	    json_loadb(s, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &err);
	if (!j)
		return kiln_err(-EINVAL, "Error parsing JSON when evaluating fromJson: %s",
		                err.text);
	if (ev->nowned == ev->capowned) {
		ev->capowned = ev->capowned ? 2 * ev->capowned : 8;
		ev->owned = kiln_realloc(ev->owned, ev->capowned * sizeof *ev->owned);
	}
	ev->owned[ev->nowned++] = j;
	*out = from_json(j);
	return 0;
}

static int fn_hashfiles(xeval *ev, xval *a, size_t na, xval *out)
{
	if (!ev->ctx->hash_files)
		return kiln_err(-ENOTSUP, "hashFiles() is not available here");
	char **pats = kiln_calloc(na, sizeof *pats);
	for (size_t i = 0; i < na; i++) {
		char nb[40];
		const char *s;
		size_t len;
		to_str(&a[i], nb, &s, &len);
		pats[i] = kiln_malloc(len + 1);
		memcpy(pats[i], s, len);
		pats[i][len] = '\0';
	}
	char hex[65] = "";
	int r = ev->ctx->hash_files(ev->ctx->hash_arg, (const char *const *)pats, na, hex);
	for (size_t i = 0; i < na; i++)
		free(pats[i]);
	free(pats);
	if (r < 0)
		return r;
	hex[64] = '\0';
	kiln_buf b = {0};
	kiln_buf_puts(&b, hex);
	return ev_string(ev, &b, out);
}

static int ev_call(xeval *ev, const node *n, xval *out)
{
	xval small[8];
	xval *a = n->nkids <= 8 ? small : kiln_calloc(n->nkids, sizeof *a);
	int r = 0;
	for (size_t i = 0; i < n->nkids && r == 0; i++)
		r = ev_node(ev, n->kids[i], &a[i]);
	if (r == 0) {
		int st = ev->ctx->status;
		switch (n->fn) {
		case F_CASE:
			*out = a[n->nkids - 1];
			for (size_t i = 0; i + 1 < n->nkids; i += 2) {
				if (a[i].k != XV_BOOL) {
					r = kiln_err(
					    -EINVAL,
					    "case predicate must evaluate to a boolean value");
					break;
				}
				if (a[i].b) {
					*out = a[i + 1];
					break;
				}
			}
			break;
		case F_CONTAINS:
			r = fn_contains(a, out);
			break;
		case F_STARTSWITH:
		case F_ENDSWITH:
			r = fn_affix(a, out, n->fn == F_ENDSWITH);
			break;
		case F_FORMAT:
			r = fn_format(ev, a, n->nkids, out);
			break;
		case F_JOIN:
			r = fn_join(ev, a, n->nkids, out);
			break;
		case F_TOJSON:
			r = fn_tojson(ev, a, out);
			break;
		case F_FROMJSON:
			r = fn_fromjson(ev, a, out);
			break;
		case F_SUCCESS:
			*out = bool_val(st == KILN_EXPR_STATUS_SUCCESS);
			break;
		case F_FAILURE:
			*out = bool_val(st == KILN_EXPR_STATUS_FAILURE);
			break;
		case F_CANCELLED:
			*out = bool_val(st == KILN_EXPR_STATUS_CANCELLED);
			break;
		case F_ALWAYS:
			*out = bool_val(true);
			break;
		case F_HASHFILES:
			r = fn_hashfiles(ev, a, n->nkids, out);
			break;
		default:
			r = kiln_err(-EINVAL, "Unrecognized function: '%s'", n->name);
		}
	}
	if (a != small)
		free(a);
	return r;
}

static int ev_node(xeval *ev, const node *n, xval *out)
{
	int r;
	switch (n->kind) {
	case N_LIT:
		*out = n->lit;
		return 0;
	case N_CTX: {
		json_t *j = NULL;
		if (ev->ctx->contexts && json_is_object(ev->ctx->contexts))
			j = view_get(ev_view(ev, ev->ctx->contexts), n->name, strlen(n->name));
		if (!j)
			return kiln_err(-EINVAL, "Unrecognized named-value: '%s'", n->name);
		*out = from_json(j);
		return 0;
	}
	case N_INDEX:
		return ev_index(ev, n, out);
	case N_CALL:
		return ev_call(ev, n, out);
	case N_NOT:
		r = ev_node(ev, n->kids[0], out);
		if (r == 0)
			*out = bool_val(falsy(out));
		return r;
	case N_AND:
	case N_OR:
		for (size_t i = 0; i < n->nkids; i++) {
			r = ev_node(ev, n->kids[i], out);
			if (r < 0)
				return r;
			if (n->kind == N_AND ? falsy(out) : !falsy(out))
				break;
		}
		return 0;
	case N_CHAIN: {
		xval acc;
		r = ev_node(ev, n->kids[0], &acc);
		for (size_t i = 1; i < n->nkids && r == 0; i++) {
			xval right;
			r = ev_node(ev, n->kids[i], &right);
			if (r < 0)
				break;
			bool b;
			switch (n->ops[i - 1]) {
			case T_EQ:
				b = equals(acc, right);
				break;
			case T_NE:
				b = !equals(acc, right);
				break;
			case T_GT:
				b = order(acc, right, 1);
				break;
			case T_GE:
				b = equals(acc, right) || order(acc, right, 1);
				break;
			case T_LT:
				b = order(acc, right, -1);
				break;
			default:
				b = equals(acc, right) || order(acc, right, -1);
				break;
			}
			acc = bool_val(b);
		}
		if (r == 0)
			*out = acc;
		return r;
	}
	}
	return kiln_err(-EINVAL, "bad expression node");
}

/* GitHub's parser rejects a named value that is not among the contexts before anything is
   evaluated, however the evaluation would have gone. */
static int check_names(const node *n, json_t *contexts)
{
	if (n->kind == N_CTX) {
		const char *key;
		size_t klen;
		json_t *val;
		size_t nlen = strlen(n->name);
		if (contexts && json_is_object(contexts)) {
			json_object_keylen_foreach(contexts, key, klen, val)
			{
				size_t llen;
				char *lkey = lower_dup(key, klen, &llen);
				bool same = llen == nlen && strncasecmp(lkey, n->name, nlen) == 0;
				free(lkey);
				if (same)
					return 0;
			}
		}
		return kiln_err(-EINVAL, "Unrecognized named-value: '%s'", n->name);
	}
	for (size_t i = 0; i < n->nkids; i++) {
		if (!n->kids[i])
			continue;
		int r = check_names(n->kids[i], contexts);
		if (r < 0)
			return r;
	}
	return 0;
}

static const kiln_expr_ctx default_ctx;

static int eval_val(xeval *ev, const kiln_expr *e, xval *out)
{
	int r = check_names(e->root, ev->ctx->contexts);
	if (r < 0)
		return r;
	return ev_node(ev, e->root, out);
}

int kiln_expr_eval_ex(const kiln_expr *e, const kiln_expr_ctx *ctx, json_t **value, char **string,
                      size_t *slen)
{
	if (value)
		*value = NULL;
	if (string)
		*string = NULL;
	xeval ev = {.ctx = ctx ? ctx : &default_ctx};
	xval v;
	int r = eval_val(&ev, e, &v);
	if (r == 0 && value) {
		*value = to_json(&ev, &v, 0);
		if (!*value)
			r = -ELOOP;
	}
	if (r == 0 && string) {
		char nb[40];
		const char *s;
		size_t len;
		to_str(&v, nb, &s, &len);
		*string = kiln_malloc(len + 1);
		memcpy(*string, s, len);
		(*string)[len] = '\0';
		if (slen)
			*slen = len;
	}
	if (r < 0 && value) {
		json_decref(*value);
		*value = NULL;
	}
	ev_free(&ev);
	return r;
}

int kiln_expr_eval(const kiln_expr *e, const kiln_expr_ctx *ctx, json_t **out)
{
	return kiln_expr_eval_ex(e, ctx, out, NULL, NULL);
}

int kiln_expr_evaluate(const char *text, const kiln_expr_ctx *ctx, json_t **out)
{
	_cleanup_(kiln_expr_freep) kiln_expr *e = NULL;
	*out = NULL;
	int r = kiln_expr_parse(text, &e);
	if (r < 0)
		return r;
	return kiln_expr_eval(e, ctx, out);
}

/* ---- plain values --------------------------------------------------------------------- */

char *kiln_expr_to_string(const json_t *v)
{
	if (!v)
		return kiln_strdup("");
	xval x = from_json((json_t *)v);
	char nb[40];
	const char *s;
	size_t len;
	to_str(&x, nb, &s, &len);
	char *out = kiln_malloc(len + 1);
	memcpy(out, s, len);
	out[len] = '\0';
	return out;
}

bool kiln_expr_truthy(const json_t *v)
{
	if (!v)
		return false;
	xval x = from_json((json_t *)v);
	return !falsy(&x);
}

char *kiln_expr_to_json(const json_t *v, bool pretty)
{
	xeval ev = {.ctx = &default_ctx};
	xval x = v ? from_json((json_t *)v) : (xval){.k = XV_NULL};
	json_t *j = to_json(&ev, &x, 0);
	ev_free(&ev);
	if (!j)
		return NULL;
	kiln_buf b = {0};
	int r = kiln_xjs_json_write(&b, j, pretty, KILN_EXPR_MAX_RESULT);
	json_decref(j);
	if (r < 0) {
		kiln_buf_free(&b);
		return NULL;
	}
	kiln_buf_append(&b, "", 0);
	return kiln_buf_steal(&b);
}

/* ---- templates: ${{ }} inside text ---------------------------------------------------- */

typedef struct seg {
	bool expr;
	size_t start, len; /* for expressions: the text between ${{ and }}, trimmed */
} seg;

typedef struct segs {
	seg *v;
	size_t n, cap;
} segs;

static void segs_push(segs *s, bool expr, size_t start, size_t len)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 8;
		s->v = kiln_realloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = (seg){expr, start, len};
}

static size_t find_open(const char *t, size_t n, size_t from)
{
	for (size_t i = from; i + 3 <= n; i++)
		if (t[i] == '$' && t[i + 1] == '{' && t[i + 2] == '{')
			return i;
	return SIZE_MAX;
}

/* Trims JavaScript white space, as String.prototype.trim. */
static void js_trim(const char *t, size_t *start, size_t *len)
{
	size_t i = *start, end = *start + *len;
	while (i < end) {
		size_t k = i;
		if (!kiln_xjs_is_space(kiln_xjs_utf8_next(t, end, &k)))
			break;
		i = k;
	}
	while (end > i) {
		size_t j = end - 1;
		while (j > i && ((unsigned char)t[j] & 0xc0) == 0x80)
			j--;
		size_t k = j;
		if (!kiln_xjs_is_space(kiln_xjs_utf8_next(t, end, &k)))
			break;
		end = j;
	}
	*start = i;
	*len = end - i;
}

/* Splits text into literal and expression segments as GitHub's template reader does:
   an expression ends at the first }} outside a quoted string. */
static int split_template(const char *t, size_t n, segs *out)
{
	size_t start = find_open(t, n, 0), i = 0;
	while (i < n) {
		if (start != SIZE_MAX && i == start) {
			bool in_string = false;
			size_t end = SIZE_MAX;
			for (i += 3; i < n; i++) {
				if (t[i] == '\'') {
					in_string = !in_string;
				} else if (!in_string && t[i] == '}' && t[i - 1] == '}') {
					end = i;
					i++;
					break;
				}
			}
			if (end == SIZE_MAX)
				return kiln_err(-EINVAL,
				                "The expression is not closed. An unescaped ${{ "
				                "sequence was found, but the closing }} sequence "
				                "was not found.");
			size_t es = start + 3, el = end - 1 - es;
			js_trim(t, &es, &el);
			if (el == 0)
				return kiln_err(-EINVAL, "An expression was expected");
			segs_push(out, true, es, el);
			start = find_open(t, n, i);
		} else if (start != SIZE_MAX && i < start) {
			segs_push(out, false, i, start - i);
			i = start;
		} else {
			segs_push(out, false, i, n - i);
			break;
		}
	}
	return 0;
}

static int eval_text_string(const char *text, size_t len, const kiln_expr_ctx *ctx, kiln_buf *out)
{
	_cleanup_(kiln_expr_freep) kiln_expr *e = NULL;
	int r = parse_n(text, len, &e);
	if (r < 0)
		return r;
	xeval ev = {.ctx = ctx ? ctx : &default_ctx};
	xval v;
	r = eval_val(&ev, e, &v);
	if (r == 0) {
		char nb[40];
		const char *s;
		size_t slen;
		to_str(&v, nb, &s, &slen);
		kiln_buf_append(out, s, slen);
	}
	ev_free(&ev);
	return r;
}

int kiln_expr_interpolate(const char *text, const kiln_expr_ctx *ctx, char **out)
{
	*out = NULL;
	size_t n = strlen(text);
	segs s = {0};
	kiln_buf b = {0};
	int r = split_template(text, n, &s);
	for (size_t i = 0; i < s.n && r == 0; i++) {
		if (s.v[i].expr)
			r = eval_text_string(text + s.v[i].start, s.v[i].len, ctx, &b);
		else
			kiln_buf_append(&b, text + s.v[i].start, s.v[i].len);
		if (r == 0 && b.len > KILN_EXPR_MAX_MEMORY)
			r = kiln_err(-E2BIG, "interpolated text longer than %u bytes",
			             KILN_EXPR_MAX_MEMORY);
	}
	free(s.v);
	if (r < 0) {
		kiln_buf_free(&b);
		return r;
	}
	kiln_buf_append(&b, "", 0);
	*out = kiln_buf_steal(&b);
	return 0;
}

static bool calls_status(const node *n)
{
	if (!n)
		return false;
	if (n->kind == N_CALL && funcs[n->fn].status)
		return true;
	for (size_t i = 0; i < n->nkids; i++)
		if (calls_status(n->kids[i]))
			return true;
	return false;
}

/* The template reader's getExpressionString: the value of an expression that is nothing but
   a string literal, else false. */
static bool string_literal_value(const char *t, size_t n, kiln_buf *out)
{
	bool in_string = false;
	for (size_t i = 0; i < n; i++) {
		if (t[i] == '\'') {
			in_string = !in_string;
			if (in_string && i != 0)
				kiln_buf_append(out, "'", 1);
		} else if (!in_string) {
			return false;
		} else {
			kiln_buf_append(out, t + i, 1);
		}
	}
	kiln_buf_append(out, "", 0);
	return true;
}

int kiln_expr_condition(const char *cond, const kiln_expr_ctx *ctx, bool *out)
{
	return kiln_expr_condition_ex(cond, ctx, 0, out);
}

int kiln_expr_condition_ex(const char *cond, const kiln_expr_ctx *ctx, unsigned flags, bool *out)
{
	*out = false;
	size_t n = strlen(cond);
	kiln_buf text = {0};
	int r = 0;
	if (find_open(cond, n, 0) != SIZE_MAX) {
		segs s = {0};
		r = split_template(cond, n, &s);
		if (r == 0 && s.n == 1 && s.v[0].expr) {
			/* the whole value is one expression */
			const char *et = cond + s.v[0].start;
			size_t el = s.v[0].len;
			kiln_expr *probe = NULL;
			r = parse_nf(et, el, flags, &probe);
			kiln_expr_free(probe);
			kiln_buf lit = {0};
			if (r == 0 && string_literal_value(et, el, &lit)) {
				size_t ls = 0, ll = lit.len;
				js_trim(lit.p, &ls, &ll);
				kiln_buf_append(&text, lit.p + ls, ll);
			} else {
				kiln_buf_append(&text, et, el);
			}
			kiln_buf_free(&lit);
		} else if (r == 0) {
			/* text around expressions: GitHub makes it format('...', a, b) */
			kiln_buf fmt = {0}, args = {0};
			size_t argi = 0;
			for (size_t i = 0; i < s.n; i++) {
				const char *p = cond + s.v[i].start;
				if (s.v[i].expr) {
					kiln_buf_printf(&fmt, "{%zu}", argi++);
					kiln_buf_puts(&args, ", ");
					kiln_buf_append(&args, p, s.v[i].len);
					continue;
				}
				for (size_t k = 0; k < s.v[i].len; k++) {
					if (p[k] == '\'')
						kiln_buf_puts(&fmt, "''");
					else if (p[k] == '{')
						kiln_buf_puts(&fmt, "{{");
					else if (p[k] == '}')
						kiln_buf_puts(&fmt, "}}");
					else
						kiln_buf_append(&fmt, p + k, 1);
				}
			}
			kiln_buf_printf(&text, "format('%s'%s)", fmt.p ? fmt.p : "",
			                args.p ? args.p : "");
			kiln_buf_free(&fmt);
			kiln_buf_free(&args);
		}
		free(s.v);
	} else {
		size_t st = 0, len = n;
		js_trim(cond, &st, &len);
		kiln_buf_append(&text, cond + st, len);
	}
	kiln_buf_append(&text, "", 0);
	if (r < 0) {
		kiln_buf_free(&text);
		return r;
	}
	_cleanup_(kiln_expr_freep) kiln_expr *e = NULL;
	if (text.len == 0) {
		r = parse_n("success()", 9, &e);
	} else {
		r = parse_nf(text.p, text.len, flags, &e);
		if (r == 0 && !calls_status(e->root)) {
			/* GitHub's implicit success() && (...) */
			kiln_buf w = {0};
			kiln_buf_printf(&w, "success() && (%s)", text.p);
			kiln_expr_free(e);
			e = NULL;
			r = parse_nf(w.p, w.len, flags, &e);
			kiln_buf_free(&w);
		}
	}
	kiln_buf_free(&text);
	if (r < 0)
		return r;
	xeval ev = {.ctx = ctx ? ctx : &default_ctx};
	xval v;
	r = eval_val(&ev, e, &v);
	if (r == 0)
		*out = !falsy(&v);
	ev_free(&ev);
	return r;
}

/* ---- lint ----------------------------------------------------------------------------- */

static bool allowed_has(const char *const *allowed, const char *name, bool function)
{
	size_t nlen = strlen(name);
	for (size_t i = 0; allowed[i]; i++) {
		const char *a = allowed[i];
		const char *paren = strchr(a, '(');
		if (function != (paren != NULL))
			continue;
		size_t alen = paren ? (size_t)(paren - a) : strlen(a);
		if (alen == nlen && strncasecmp(a, name, nlen) == 0)
			return true;
	}
	return false;
}

static int check_node(const kiln_expr *e, const node *n, const char *const *allowed,
                      bool functions_listed)
{
	if (!n)
		return 0;
	if (n->kind == N_CTX && allowed && !allowed_has(allowed, n->name, false))
		return syntax_error(e->text, e->len, n->pos, "Unrecognized named-value", n->name,
		                    strlen(n->name));
	if (n->kind == N_CALL && functions_listed &&
	    (funcs[n->fn].status || n->fn == F_HASHFILES) && !allowed_has(allowed, n->name, true))
		return syntax_error(e->text, e->len, n->pos, "Unrecognized function", n->name,
		                    strlen(n->name));
	for (size_t i = 0; i < n->nkids; i++) {
		int r = check_node(e, n->kids[i], allowed, functions_listed);
		if (r < 0)
			return r;
	}
	return 0;
}

static int check_one(const char *text, size_t len, const char *const *allowed)
{
	/* where GitHub's schema lets success()/failure() name jobs ("success(0,MAX)") */
	unsigned flags = 0;
	for (size_t i = 0; allowed && allowed[i]; i++)
		if ((strncmp(allowed[i], "success(", 8) == 0 || strncmp(allowed[i], "failure(", 8) == 0) &&
		    strstr(allowed[i], "MAX"))
			flags |= KILN_EXPR_JOB_STATUS;
	_cleanup_(kiln_expr_freep) kiln_expr *e = NULL;
	int r = parse_nf(text, len, flags, &e);
	if (r < 0)
		return r;
	bool functions_listed = false;
	for (size_t i = 0; allowed && allowed[i]; i++)
		functions_listed |= strchr(allowed[i], '(') != NULL;
	return check_node(e, e->root, allowed, functions_listed);
}

int kiln_expr_check(const char *text, const char *const *allowed_contexts)
{
	size_t n = strlen(text);
	if (find_open(text, n, 0) == SIZE_MAX) {
		size_t st = 0, len = n;
		js_trim(text, &st, &len);
		return check_one(text + st, len, allowed_contexts);
	}
	segs s = {0};
	int r = split_template(text, n, &s);
	for (size_t i = 0; i < s.n && r == 0; i++)
		if (s.v[i].expr)
			r = check_one(text + s.v[i].start, s.v[i].len, allowed_contexts);
	free(s.v);
	return r;
}
