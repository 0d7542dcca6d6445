/*
 * expr_hash — hashFiles() over a directory, computed the way GitHub's runner
 * computes it (src/Misc/expressionFunc/hashFiles with @actions/glob): the
 * patterns, one per line, are globs rooted at the directory (`**` for any
 * depth, `!` to exclude, a matching directory brings all files below it);
 * each search path (a pattern's part before its first wildcard) is walked
 * depth first, entries in byte order; every matching file's SHA-256 is fed
 * into one SHA-256, whose hex is the answer, or "" when nothing matched.
 * A first argument "--follow-symbolic-links" follows links to directories.
 */
#include "common/expr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/expr_int.h"
#include "common/util.h"

#define HASH_MAX_DEPTH 256

typedef struct pattern {
	bool negate;
	char **seg; /* relative to the root; "**" matches any number of segments */
	size_t nseg;
	size_t literal; /* leading segments without wildcards: the search path */
} pattern;

typedef struct hasher {
	pattern *pat;
	size_t npat;
	bool follow;
	EVP_MD_CTX *total;
	size_t count;
	kiln_buf path; /* the root, then the item being visited */
	size_t rootlen;
	struct stat *seen; /* directories on the current walk, when following links */
	size_t nseen;
} hasher;

static bool has_wildcard(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static void pattern_free(pattern *p)
{
	for (size_t i = 0; i < p->nseg; i++)
		free(p->seg[i]);
	free(p->seg);
}

static void pattern_push(pattern *p, const char *s, size_t n)
{
	p->seg = kiln_realloc(p->seg, (p->nseg + 1) * sizeof *p->seg);
	p->seg[p->nseg] = kiln_malloc(n + 1);
	memcpy(p->seg[p->nseg], s, n);
	p->seg[p->nseg][n] = '\0';
	p->nseg++;
}

/* Parses one line; false when it is blank, a comment, or points outside the root. */
static bool pattern_parse(const char *line, size_t n, const char *root, pattern *p)
{
	memset(p, 0, sizeof *p);
	while (n && (line[0] == ' ' || line[0] == '\t' || line[0] == '\r'))
		line++, n--;
	while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
		n--;
	if (n == 0 || line[0] == '#')
		return false;
	while (n && line[0] == '!') {
		p->negate = !p->negate;
		line++, n--;
		while (n && (line[0] == ' ' || line[0] == '\t'))
			line++, n--;
	}
	if (n == 0)
		return false;
	if (line[0] == '/') { /* absolute: must be within the root */
		size_t rl = strlen(root);
		while (rl > 1 && root[rl - 1] == '/')
			rl--;
		if (root[0] != '/' || n < rl || memcmp(line, root, rl) != 0 ||
		    (n > rl && line[rl] != '/' && rl > 1))
			return false;
		line += rl, n -= rl;
	}
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && line[j] != '/')
			j++;
		size_t len = j - i;
		if (len == 0 || (len == 1 && line[i] == '.')) {
			/* nothing */
		} else if (len == 2 && line[i] == '.' && line[i + 1] == '.') {
			if (p->nseg == 0 || strcmp(p->seg[p->nseg - 1], "**") == 0) {
				pattern_free(p);
				return false;
			}
			free(p->seg[--p->nseg]);
		} else {
			pattern_push(p, line + i, len);
		}
		i = j + 1;
	}
	while (p->literal < p->nseg && !has_wildcard(p->seg[p->literal]))
		p->literal++;
	return true;
}

/* Glob segments against path segments; "**" matches zero or more of them. */
static bool segs_match(char *const *ps, size_t np, char *const *xs, size_t nx)
{
	size_t i = 0, j = 0, star_i = SIZE_MAX, star_j = 0;
	while (j < nx) {
		if (i < np && strcmp(ps[i], "**") == 0) {
			star_i = i++;
			star_j = j;
		} else if (i < np && fnmatch(ps[i], xs[j], 0) == 0) {
			i++, j++;
		} else if (star_i != SIZE_MAX) {
			i = star_i + 1;
			j = ++star_j;
		} else {
			return false;
		}
	}
	while (i < np && strcmp(ps[i], "**") == 0)
		i++;
	return i == np;
}

/* A pattern matches a path, or any path below one it matches (implicit descendants). */
static bool pattern_match(const pattern *p, char *const *xs, size_t nx)
{
	for (size_t k = nx; k > 0; k--)
		if (segs_match(p->seg, p->nseg, xs, k))
			return true;
	return p->nseg == 0;
}

static bool matches(const hasher *h, const char *rel)
{
	char *copy = kiln_strdup(rel), *save = NULL;
	char *xs[HASH_MAX_DEPTH + 2];
	size_t nx = 0;
	for (char *t = strtok_r(copy, "/", &save); t && nx < KILN_ARRAY_SIZE(xs);
	     t = strtok_r(NULL, "/", &save))
		xs[nx++] = t;
	bool m = false;
	for (size_t i = 0; i < h->npat; i++) {
		if (h->pat[i].negate)
			m = m && !pattern_match(&h->pat[i], xs, nx);
		else
			m = m || pattern_match(&h->pat[i], xs, nx);
	}
	free(copy);
	return m;
}

static int hash_file(hasher *h, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return kiln_err(-errno, "hashFiles: cannot open %s: %s", path, strerror(errno));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		close(fd);
		return kiln_err(-ENOMEM, "hashFiles: cannot start SHA-256");
	}
	char buf[65536];
	int r = 0;
	for (;;) {
		ssize_t got = read(fd, buf, sizeof buf);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = kiln_err(-errno, "hashFiles: cannot read %s: %s", path,
			             strerror(errno));
			break;
		}
		if (got == 0)
			break;
		EVP_DigestUpdate(md, buf, (size_t)got);
	}
	close(fd);
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;
	EVP_DigestFinal_ex(md, digest, &dl);
	EVP_MD_CTX_free(md);
	if (r == 0) {
		EVP_DigestUpdate(h->total, digest, dl);
		h->count++;
	}
	return r;
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int visit(hasher *h, int depth)
{
	const char *path = h->path.p;
	const char *rel = h->path.len > h->rootlen ? path + h->rootlen + 1 : "";
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT
		           ? 0
		           : kiln_err(-errno, "hashFiles: %s: %s", path, strerror(errno));
	bool link = S_ISLNK(st.st_mode);
	if (link && h->follow && stat(path, &st) < 0)
		link = false; /* a broken link is listed as it is */
	if (S_ISDIR(st.st_mode) && (!link || h->follow)) {
		if (depth > HASH_MAX_DEPTH)
			return kiln_err(-ELOOP, "hashFiles: %s is nested too deeply", path);
		for (size_t i = 0; i < h->nseen; i++)
			if (h->seen[i].st_dev == st.st_dev && h->seen[i].st_ino == st.st_ino)
				return 0; /* a link back up the tree */
		struct dirent **ents = NULL;
		int n = scandir(path, &ents, NULL, name_cmp);
		if (n < 0)
			return kiln_err(-errno, "hashFiles: cannot list %s: %s", path,
			                strerror(errno));
		h->seen = kiln_realloc(h->seen, (h->nseen + 1) * sizeof *h->seen);
		h->seen[h->nseen++] = st;
		size_t len = h->path.len;
		int r = 0;
		for (int i = 0; i < n; i++) {
			const char *name = ents[i]->d_name;
			if (r == 0 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
				h->path.len = len;
				kiln_buf_puts(&h->path, "/");
				kiln_buf_puts(&h->path, name);
				r = visit(h, depth + 1);
			}
			free(ents[i]);
		}
		free(ents);
		h->nseen--;
		h->path.len = len;
		h->path.p[len] = '\0';
		return r;
	}
	if (!*rel || !matches(h, rel))
		return 0;
	struct stat target;
	if (stat(path, &target) < 0)
		return kiln_err(-errno, "hashFiles: %s: %s", path, strerror(errno));
	if (S_ISDIR(target.st_mode))
		return 0;
	return hash_file(h, path);
}

int kiln_expr_hash_files_dir(void *arg, const char *const *patterns, size_t n, char out[65])
{
	const char *root = arg ? arg : ".";
	hasher h = {0};
	out[0] = '\0';
	size_t first = 0;
	if (n > 0 && strncmp(patterns[0], "--", 2) == 0) {
		if (strcmp(patterns[0], "--follow-symbolic-links") != 0)
			return kiln_err(-EINVAL, "hashFiles: unknown option %s", patterns[0]);
		h.follow = true;
		first = 1;
	}
	for (size_t i = first; i < n; i++) {
		const char *s = patterns[i];
		while (*s) {
			const char *nl = strchr(s, '\n');
			size_t len = nl ? (size_t)(nl - s) : strlen(s);
			pattern p;
			if (pattern_parse(s, len, root, &p)) {
				h.pat = kiln_realloc(h.pat, (h.npat + 1) * sizeof *h.pat);
				h.pat[h.npat++] = p;
			}
			s += len + (nl ? 1 : 0);
		}
	}
	h.total = EVP_MD_CTX_new();
	if (!h.total || EVP_DigestInit_ex(h.total, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h.total);
		for (size_t i = 0; i < h.npat; i++)
			pattern_free(&h.pat[i]);
		free(h.pat);
		return kiln_err(-ENOMEM, "hashFiles: cannot start SHA-256");
	}
	kiln_buf_puts(&h.path, root);
	while (h.path.len > 1 && h.path.p[h.path.len - 1] == '/')
		h.path.p[--h.path.len] = '\0';
	h.rootlen = h.path.len;
	int r = 0;
	/* Search paths in the order of the patterns, skipping one below another. */
	for (size_t i = 0; i < h.npat && r == 0; i++) {
		const pattern *p = &h.pat[i];
		if (p->negate)
			continue;
		bool covered = false;
		for (size_t k = 0; k < h.npat && !covered; k++) {
			const pattern *q = &h.pat[k];
			if (q->negate || k == i)
				continue;
			bool prefix = q->literal <= p->literal;
			for (size_t s = 0; prefix && s < q->literal; s++)
				prefix = strcmp(q->seg[s], p->seg[s]) == 0;
			/* an ancestor, or the same search path listed earlier */
			covered = prefix && (q->literal < p->literal || k < i);
		}
		if (covered)
			continue;
		h.path.len = h.rootlen;
		h.path.p[h.path.len] = '\0';
		for (size_t s = 0; s < p->literal; s++) {
			kiln_buf_puts(&h.path, "/");
			kiln_buf_puts(&h.path, p->seg[s]);
		}
		r = visit(&h, 0);
	}
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;
	EVP_DigestFinal_ex(h.total, digest, &dl);
	EVP_MD_CTX_free(h.total);
	if (r == 0 && h.count > 0) {
		for (unsigned i = 0; i < dl && i < 32; i++)
			snprintf(out + 2 * i, 3, "%02x", digest[i]);
	}
	for (size_t i = 0; i < h.npat; i++)
		pattern_free(&h.pat[i]);
	free(h.pat);
	free(h.seen);
	kiln_buf_free(&h.path);
	return r;
}
