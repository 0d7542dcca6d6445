/*
 * paths — the expansion described in paths.h. Each pattern becomes a list of
 * segments (literal or glob) on an absolute path; matching runs as a small
 * NFA whose state (the set of pattern positions reached so far) is a 64-bit
 * mask per pattern, advanced one path segment at a time while the walk goes
 * down, so a directory is matched in O(patterns × segments) from its
 * parent's state and a subtree that no pattern can reach is never opened.
 * The walk keeps one node per entry it looked at (parent index, root,
 * matched, whole) so that the cover for kiln_manifest_build can be taken
 * bottom-up at the end.
 */
#include "common/paths.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A pattern has at most this many segments (workspace included): one bit each in a state,
   one more for "matched in full", and the top bit for "an ancestor matched". */
#define MAX_SEGS 62
#define INHERIT (1ull << 63)

static const char *const ROOT_NAMES[KILN_PATHS_NROOTS] = {"workspace", "home", "root"};

typedef struct seg {
	char *text; /* the literal (escapes removed) or the glob as written */
	bool literal, globstar;
} seg;

typedef struct pat {
	seg s[MAX_SEGS];
	size_t n;
	bool negate, dironly;
	char *line;   /* as written, for messages */
	char *prefix; /* absolute literal prefix: where the walk for it starts */
} pat;

enum { NONE, PREFIX, FULL };
enum { T_FILE, T_DIR, T_LINK };

typedef struct node {
	char *abs;
	int32_t parent;
	uint8_t type, root;
	bool inc, whole;
} node;

typedef struct ctx {
	const kiln_paths_opts *o;
	pat *p;
	size_t np;
	node *v;
	size_t n, cap;
	char *rootdir[KILN_PATHS_NROOTS];
	uint64_t visited;
	const char *start; /* the prefix being walked, for messages */
} ctx;

static void pat_clear(pat *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->s[i].text);
	free(p->line);
	free(p->prefix);
}

int kiln_paths_segment_match(const char *pattern, const char *name)
{
	return fnmatch(pattern, name, 0) == 0;
}

static bool seg_match(const seg *s, const char *name)
{
	return s->literal ? strcmp(s->text, name) == 0 : fnmatch(s->text, name, 0) == 0;
}

/* @actions/glob's getLiteral: the segment's text if it has no wildcard ("\x" is x, "[x]" is x). */
static bool get_literal(const char *s, size_t n, kiln_buf *out)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\\' && i + 1 < n) {
			kiln_buf_append(out, &s[++i], 1);
			continue;
		}
		if (c == '*' || c == '?')
			return false;
		if (c == '[' && i + 1 < n) {
			kiln_buf set = {0};
			size_t closed = 0;
			for (size_t j = i + 1; j < n; j++) {
				if (s[j] == '\\' && j + 1 < n) {
					kiln_buf_append(&set, &s[++j], 1);
					continue;
				}
				if (s[j] == ']') {
					closed = j;
					break;
				}
				kiln_buf_append(&set, &s[j], 1);
			}
			size_t setlen = set.len;
			if (closed && setlen > 1) {
				kiln_buf_free(&set);
				return false;
			}
			if (closed && setlen == 1) {
				kiln_buf_append(out, set.p, 1);
				kiln_buf_free(&set);
				i = closed;
				continue;
			}
			kiln_buf_free(&set);
		}
		kiln_buf_append(out, &c, 1);
	}
	if (!out->p)
		kiln_buf_puts(out, "");
	return true;
}

/* Appends the components of an absolute path as literal segments. */
static int push_abs(pat *p, const char *abs)
{
	for (const char *s = abs; *s;) {
		size_t k = strcspn(s, "/");
		if (k) {
			if (p->n >= MAX_SEGS)
				return -E2BIG;
			p->s[p->n++] = (seg){.text = strndup(s, k), .literal = true};
			if (!p->s[p->n - 1].text)
				abort();
		}
		s += k;
		if (*s == '/')
			s++;
	}
	return 0;
}

/* Canonical absolute path: no "", "." or ".." components, no trailing '/'. */
static int normalize_abs(const char *in, const char *what, char **out)
{
	if (!in || in[0] != '/')
		return kiln_err(EINVAL, "%s '%.300s' is not an absolute path", what,
				in ? in : "(none)");
	kiln_buf b = {0};
	for (const char *s = in; *s;) {
		size_t k = strcspn(s, "/");
		if (k == 2 && s[0] == '.' && s[1] == '.') {
			char *slash = b.len ? memrchr(b.p, '/', b.len) : NULL;
			b.len = slash ? (size_t)(slash - b.p) : 0;
			if (b.p)
				b.p[b.len] = '\0';
		} else if (k && !(k == 1 && s[0] == '.')) {
			kiln_buf_append(&b, "/", 1);
			kiln_buf_append(&b, s, k);
		}
		s += k;
		if (*s == '/')
			s++;
	}
	if (!b.len)
		kiln_buf_puts(&b, "/");
	*out = kiln_buf_steal(&b);
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Parses one pattern line (trimmed, not blank, not a comment) into p. */
static int parse_pattern(ctx *c, const char *line, size_t len, pat *p)
{
	p->line = strndup(line, len);
	if (!p->line)
		abort();
	const char *s = p->line;
	while (*s == '!') {
		p->negate = !p->negate;
		s++;
		while (is_space(*s))
			s++;
	}
	if (!*s)
		return kiln_err(EINVAL, "path pattern '%.300s' is empty", p->line);
	size_t n = strlen(s);
	if (n > 1 && s[n - 1] == '/') {
		p->dironly = true;
		while (n > 1 && s[n - 1] == '/')
			n--;
	}
	int r = 0;
	const char *rest = s;
	/* the base the pattern is taken against: workspace, home or / */
	if (s[0] == '~' && (n == 1 || s[1] == '/')) {
		if (!c->rootdir[KILN_PATHS_HOME])
			return kiln_err(EINVAL, "path pattern '%.300s': no home directory for '~'",
					p->line);
		r = push_abs(p, c->rootdir[KILN_PATHS_HOME]);
		rest = s + 1;
	} else if (s[0] != '/') {
		r = push_abs(p, c->rootdir[KILN_PATHS_WORKSPACE]);
	}
	size_t restlen = n - (size_t)(rest - s);
	bool first = true;
	for (size_t i = 0; r == 0 && i < restlen;) {
		size_t k = 0;
		while (i + k < restlen && rest[i + k] != '/')
			k++;
		if (k) {
			kiln_buf lit = {0};
			bool literal = get_literal(rest + i, k, &lit);
			if (literal && strcmp(lit.p, "..") == 0)
				r = kiln_err(EINVAL, "path pattern '%.300s': '..' is not allowed",
					     p->line);
			else if (literal && strcmp(lit.p, ".") == 0 && !(first && rest == s && s[0] != '/'))
				r = kiln_err(EINVAL,
					     "path pattern '%.300s': '.' is allowed only at the start",
					     p->line);
			else if (literal && strcmp(lit.p, ".") == 0)
				; /* "./x": x in the workspace */
			else if (p->n >= MAX_SEGS)
				r = -E2BIG;
			else if (literal)
				p->s[p->n++] = (seg){.text = kiln_buf_steal(&lit), .literal = true};
			else
				p->s[p->n++] = (seg){.text = strndup(rest + i, k),
						     .globstar = k == 2 && !strncmp(rest + i, "**", 2)};
			kiln_buf_free(&lit);
			if (p->n && !p->s[p->n - 1].text)
				abort();
			first = false;
		}
		i += k + 1;
	}
	if (r == -E2BIG)
		return kiln_err(E2BIG, "path pattern '%.300s' has more than %d segments", p->line,
				MAX_SEGS);
	if (r < 0)
		return r;
	kiln_buf pre = {0};
	for (size_t i = 0; i < p->n && p->s[i].literal; i++) {
		kiln_buf_append(&pre, "/", 1);
		kiln_buf_puts(&pre, p->s[i].text);
	}
	if (!pre.len)
		kiln_buf_puts(&pre, "/");
	p->prefix = kiln_buf_steal(&pre);
	return 0;
}

/* ---- matching ----------------------------------------------------------------------------- */

static uint64_t closure(const pat *p, uint64_t st)
{
	for (size_t i = 0; i < p->n; i++)
		if ((st & (1ull << i)) && p->s[i].globstar)
			st |= 1ull << (i + 1);
	return st;
}

/* The state after the entry `name` below an entry in state st (a directory if st is not 0). */
static uint64_t advance(const pat *p, uint64_t st, const char *name)
{
	if (st & (INHERIT | (1ull << p->n)))
		return INHERIT; /* below a match: matched too */
	uint64_t nst = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (!(st & (1ull << i)))
			continue;
		if (p->s[i].globstar)
			nst |= 1ull << i;
		else if (seg_match(&p->s[i], name))
			nst |= 1ull << (i + 1);
	}
	return closure(p, nst);
}

static int status(const pat *p, uint64_t st, int type)
{
	if (st & INHERIT)
		return FULL;
	if (st & (1ull << p->n))
		return !p->dironly || type == T_DIR ? FULL : NONE;
	return st && type == T_DIR ? PREFIX : NONE;
}

/* Is the entry matched: the last pattern that matches it says yes or no. */
static bool included(const ctx *c, const uint64_t *st, int type)
{
	bool inc = false;
	for (size_t k = 0; k < c->np; k++)
		if (status(&c->p[k], st[k], type) == FULL)
			inc = !c->p[k].negate;
	return inc;
}

/* Could anything below this directory be matched: a pattern that reaches it or below it and
   that no later exclusion of the whole directory overrides. */
static bool worth_descending(const ctx *c, const uint64_t *st)
{
	bool excluded_after = false;
	for (size_t k = c->np; k-- > 0;) {
		int s = status(&c->p[k], st[k], T_DIR);
		if (c->p[k].negate && s == FULL)
			excluded_after = true;
		else if (!c->p[k].negate && s != NONE && !excluded_after)
			return true;
	}
	return false;
}

/* ---- walking ------------------------------------------------------------------------------ */

static int root_of(const ctx *c, const char *abs)
{
	int best = KILN_PATHS_ABSOLUTE;
	size_t bestlen = 0;
	for (int r = KILN_PATHS_WORKSPACE; r <= KILN_PATHS_HOME; r++) {
		const char *d = c->rootdir[r];
		size_t n = d ? strlen(d) : 0;
		if (!d || n <= bestlen)
			continue;
		if (strcmp(d, "/") == 0 || (!strncmp(abs, d, n) && (abs[n] == '\0' || abs[n] == '/'))) {
			best = r;
			bestlen = n;
		}
	}
	return best;
}

static int32_t add_node(ctx *c, char *abs, int32_t parent, int type, bool inc)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 256;
		c->v = kiln_realloc(c->v, c->cap * sizeof *c->v);
	}
	c->v[c->n] = (node){.abs = abs, .parent = parent, .type = (uint8_t)type,
			    .root = (uint8_t)root_of(c, abs), .inc = inc, .whole = inc};
	return (int32_t)c->n++;
}

/* The parent can no longer be taken whole. */
static void not_whole(ctx *c, int32_t parent)
{
	if (parent >= 0)
		c->v[parent].whole = false;
}

static int visit(ctx *c)
{
	if (++c->visited > c->o->max_entries)
		return kiln_err(E2BIG, "path '%.300s': more than %llu entries; narrow the pattern",
				c->start, (unsigned long long)c->o->max_entries);
	return 0;
}

static int walk_dir(ctx *c, int dfd, int32_t self, const uint64_t *st, uint32_t depth);

/* Opens the directory node `self` (name in dfd) and walks it if anything below can match. */
static int maybe_descend(ctx *c, int dfd, const char *name, int32_t self, const uint64_t *st,
			 uint32_t depth)
{
	if (!worth_descending(c, st))
		return 0;
	if (depth + 2 > c->o->max_depth) /* its entries would be that deep */
		return kiln_err(E2BIG, "path '%.300s': deeper than %u levels below '%.300s'",
				c->v[self].abs, c->o->max_depth, c->start);
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)) {
		not_whole(c, self); /* replaced while we looked: leave it out */
		c->v[self].inc = false;
		return 0;
	}
	if (fd < 0)
		return kiln_err(errno, "path '%.300s': %s", c->v[self].abs, strerror(errno));
	return walk_dir(c, fd, self, st, depth + 1);
}

static int walk_dir(ctx *c, int dfd, int32_t self, const uint64_t *st, uint32_t depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		int r = kiln_err(errno, "path '%.300s': %s", c->v[self].abs, strerror(errno));
		close(dfd);
		return r;
	}
	uint64_t *cst = kiln_calloc(c->np, sizeof *cst);
	int r = 0;
	struct dirent *de;
	errno = 0;
	while (r == 0 && (de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if ((r = visit(c)) < 0)
			break;
		int type = de->d_type == DT_DIR ? T_DIR : de->d_type == DT_LNK ? T_LINK
			   : de->d_type == DT_REG ? T_FILE : -1;
		if (de->d_type == DT_UNKNOWN) {
			struct stat sb;
			if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno == ENOENT)
					continue;
				r = kiln_err(errno, "path '%.300s/%.200s': %s", c->v[self].abs,
					     name, strerror(errno));
				break;
			}
			type = S_ISDIR(sb.st_mode) ? T_DIR : S_ISLNK(sb.st_mode) ? T_LINK
			       : S_ISREG(sb.st_mode) ? T_FILE : -1;
		}
		if (type < 0) {
			not_whole(c, self); /* fifos, sockets, devices are never matched */
			continue;
		}
		bool any = false;
		for (size_t k = 0; k < c->np; k++) {
			cst[k] = advance(&c->p[k], st[k], name);
			any |= cst[k] != 0;
		}
		bool inc = any && included(c, cst, type);
		bool down = type == T_DIR && any && worth_descending(c, cst);
		if (!inc && !down) {
			not_whole(c, self);
			continue;
		}
		const char *pa = c->v[self].abs;
		int32_t child = add_node(c, pa[1] ? kiln_asprintf("%s/%s", pa, name)
						 : kiln_asprintf("/%s", name),
					 self, type, inc);
		if (down)
			r = maybe_descend(c, dirfd(d), name, child, cst, depth);
		if (!c->v[child].whole || c->v[child].root != c->v[self].root)
			not_whole(c, self);
		errno = 0;
	}
	if (r == 0 && errno != 0)
		r = kiln_err(errno, "path '%.300s': %s", c->v[self].abs, strerror(errno));
	free(cst);
	closedir(d);
	return r;
}

/* Walks from one literal prefix. */
static int walk_prefix(ctx *c, const char *prefix)
{
	c->start = prefix;
	struct stat sb;
	if (lstat(prefix, &sb) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0; /* nothing there: no match, as with @actions/glob */
		return kiln_err(errno, "path '%.300s': %s", prefix, strerror(errno));
	}
	int type = S_ISDIR(sb.st_mode) ? T_DIR : S_ISLNK(sb.st_mode) ? T_LINK
		   : S_ISREG(sb.st_mode) ? T_FILE : -1;
	int r = visit(c);
	if (r < 0 || type < 0)
		return r;
	/* each pattern's state at the prefix: advance along its components */
	uint64_t *st = kiln_calloc(c->np, sizeof *st);
	bool any = true;
	for (size_t k = 0; k < c->np; k++)
		st[k] = closure(&c->p[k], 1);
	for (const char *s = prefix; *s;) {
		size_t n = strcspn(s, "/");
		if (n) {
			_cleanup_free_ char *comp = strndup(s, n);
			any = false;
			for (size_t k = 0; k < c->np; k++) {
				st[k] = advance(&c->p[k], st[k], comp);
				any |= st[k] != 0;
			}
		}
		s += n;
		if (*s == '/')
			s++;
	}
	bool inc = any && included(c, st, type);
	bool down = type == T_DIR && any && worth_descending(c, st);
	if (inc || down) {
		int32_t self = add_node(c, kiln_strdup(prefix), -1, type, inc);
		if (down) {
			int fd = open(prefix, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				r = kiln_err(errno, "path '%.300s': %s", prefix, strerror(errno));
			else
				r = walk_dir(c, fd, self, st, 0);
		}
	}
	free(st);
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Is a below b (or equal): "/x/y" is below "/x" and below "/". */
static bool is_below(const char *a, const char *b)
{
	size_t n = strlen(b);
	if (n == 1)
		return true;
	return !strncmp(a, b, n) && (a[n] == '\0' || a[n] == '/');
}

static const char *rel_in(const ctx *c, const node *e)
{
	const char *d = c->rootdir[e->root];
	size_t n = strlen(d);
	if (!strcmp(e->abs, d))
		return ".";
	return n == 1 ? e->abs + 1 : e->abs + n + 1;
}

int kiln_paths_expand(const char *input, const kiln_paths_opts *opts, kiln_paths **out)
{
	static const kiln_paths_opts defaults = KILN_PATHS_OPTS_INIT;
	if (!opts)
		opts = &defaults;
	ctx c = {.o = opts};
	kiln_paths *res = NULL;
	kiln_strv prefixes = {0};
	int r = 0;
	size_t inlen = input ? strlen(input) : 0;
	if (inlen > opts->max_input)
		return kiln_err(E2BIG, "path input of %zu bytes is over the limit of %u", inlen,
				opts->max_input);
	r = normalize_abs(opts->workspace, "workspace", &c.rootdir[KILN_PATHS_WORKSPACE]);
	if (r == 0 && opts->home)
		r = normalize_abs(opts->home, "home directory", &c.rootdir[KILN_PATHS_HOME]);
	c.rootdir[KILN_PATHS_ABSOLUTE] = kiln_strdup("/");
	/* the patterns, one per line */
	for (const char *s = input ? input : ""; r == 0 && *s;) {
		size_t len = strcspn(s, "\n");
		const char *a = s, *b = s + len;
		s = *b ? b + 1 : b;
		while (a < b && is_space(*a))
			a++;
		while (b > a && is_space(b[-1]))
			b--;
		if (a == b || *a == '#')
			continue;
		if (c.np >= opts->max_patterns) {
			r = kiln_err(E2BIG, "path input has more than %u patterns", opts->max_patterns);
			break;
		}
		c.p = kiln_realloc(c.p, (c.np + 1) * sizeof *c.p);
		memset(&c.p[c.np], 0, sizeof *c.p);
		r = parse_pattern(&c, a, (size_t)(b - a), &c.p[c.np++]);
		if (r == 0 && !c.p[c.np - 1].negate)
			kiln_strv_push(&prefixes, c.p[c.np - 1].prefix);
	}
	/* walk each prefix that is not below another (sorted, a parent comes first) */
	if (r == 0 && prefixes.n)
		qsort(prefixes.v, prefixes.n, sizeof *prefixes.v, cmp_str);
	kiln_strv kept = {0};
	for (size_t i = 0; r == 0 && i < prefixes.n; i++) {
		bool nested = false;
		for (size_t j = 0; j < kept.n && !nested; j++)
			nested = is_below(prefixes.v[i], kept.v[j]);
		if (nested)
			continue;
		kiln_strv_push(&kept, prefixes.v[i]);
		r = walk_prefix(&c, prefixes.v[i]);
	}
	kiln_strv_free(&kept);
	if (r == 0) {
		res = kiln_calloc(1, sizeof *res);
		for (int k = 0; k < KILN_PATHS_NROOTS; k++) {
			res->root[k].name = ROOT_NAMES[k];
			res->root[k].dir = kiln_strdup(c.rootdir[k]);
		}
		for (size_t i = 0; i < c.n; i++) {
			const node *e = &c.v[i];
			kiln_paths_root *rt = &res->root[e->root];
			if (!e->inc)
				continue;
			kiln_strv_push(&rt->matches, rel_in(&c, e));
			res->nmatches++;
			if (e->whole && (e->parent < 0 || !c.v[e->parent].whole))
				kiln_strv_push(&rt->cover, rel_in(&c, e));
		}
		for (int k = 0; k < KILN_PATHS_NROOTS; k++) {
			kiln_strv *lists[] = {&res->root[k].matches, &res->root[k].cover};
			for (size_t l = 0; l < 2; l++)
				if (lists[l]->n)
					qsort(lists[l]->v, lists[l]->n, sizeof(char *), cmp_str);
		}
	}
	for (size_t i = 0; i < c.n; i++)
		free(c.v[i].abs);
	free(c.v);
	for (size_t i = 0; i < c.np; i++)
		pat_clear(&c.p[i]);
	free(c.p);
	for (int k = 0; k < KILN_PATHS_NROOTS; k++)
		free(c.rootdir[k]);
	kiln_strv_free(&prefixes);
	if (r < 0)
		return r;
	*out = res;
	return 0;
}

void kiln_paths_free(kiln_paths *p)
{
	if (!p)
		return;
	for (int k = 0; k < KILN_PATHS_NROOTS; k++) {
		free(p->root[k].dir);
		kiln_strv_free(&p->root[k].matches);
		kiln_strv_free(&p->root[k].cover);
	}
	free(p);
}

void kiln_paths_freep(kiln_paths **p)
{
	kiln_paths_free(*p);
}
