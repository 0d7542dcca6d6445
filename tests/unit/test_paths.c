/* test_paths — expanding actions/cache `path:` inputs on real temporary trees: wildcards,
   `**`, hidden files, directories taken whole, exclusions and re-inclusions, `~` and absolute
   patterns sorted into their roots, symlinks matched but not followed, patterns GitHub refuses,
   the walk's limits, and a manifest built from the cover holding exactly the matches. */
#include "common/cas.h"
#include "common/manifest.h"
#include "common/paths.h"
#include "common/util.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

static void put(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = kiln_asprintf("%s/%s", dir, rel);
	_cleanup_free_ char *d = kiln_strdup(p);
	*strrchr(d, '/') = '\0';
	CHECK(kiln_mkdir_p(d, 0755) == 0);
	CHECK(kiln_write_file_atomic(p, rel, strlen(rel), 0644) == 0);
}

static void link_at(const char *dir, const char *rel, const char *target)
{
	_cleanup_free_ char *p = kiln_asprintf("%s/%s", dir, rel);
	CHECK(symlink(target, p) == 0);
}

/* "a,b,c" */
static char *joined(const kiln_strv *sv)
{
	kiln_buf b = {0};
	kiln_buf_puts(&b, "");
	for (size_t i = 0; i < sv->n; i++) {
		if (i)
			kiln_buf_puts(&b, ",");
		kiln_buf_puts(&b, sv->v[i]);
	}
	return kiln_buf_steal(&b);
}

typedef struct env {
	char *ws, *home, *abs;
} env;

static kiln_paths *expand(const env *e, const char *input)
{
	kiln_paths_opts o = KILN_PATHS_OPTS_INIT;
	o.workspace = e->ws;
	o.home = e->home;
	kiln_paths *p = NULL;
	int r = kiln_paths_expand(input, &o, &p);
	if (r < 0)
		fprintf(stderr, "expand '%s': %s\n", input, kiln_errmsg());
	return p;
}

/* Expands input and compares the matches and cover of root k. */
#define EXPECT(e, input, k, want_matches, want_cover)                                              \
	do {                                                                                       \
		_cleanup_(kiln_paths_freep) kiln_paths *p_ = expand(e, input);                     \
		CHECK(p_ != NULL);                                                                 \
		if (p_) {                                                                          \
			_cleanup_free_ char *m_ = joined(&p_->root[k].matches);                    \
			_cleanup_free_ char *c_ = joined(&p_->root[k].cover);                      \
			CHECK_STR(m_, want_matches);                                               \
			CHECK_STR(c_, want_cover);                                                 \
		}                                                                                  \
	} while (0)

static void make_tree(const env *e)
{
	put(e->ws, "a.txt");
	put(e->ws, "b.txt");
	put(e->ws, ".hidden");
	put(e->ws, "src/main.c");
	put(e->ws, "src/util.c");
	put(e->ws, "src/lib/x.c");
	put(e->ws, "src/lib/.y.c");
	put(e->ws, "node_modules/pkg/index.js");
	put(e->ws, "node_modules/.bin/tool");
	put(e->ws, "build/out.o");
	put(e->ws, "build/sub/deep.o");
	put(e->ws, "esc/a*b");
	put(e->ws, "esc/axb");
	link_at(e->ws, "link", "src");       /* a symlink to a directory: never walked */
	link_at(e->ws, "src/lib/up", ".."); /* a loop if it were followed */
	put(e->home, ".npm/_cacache/index");
	put(e->home, ".npm/y");
	put(e->home, "other/z");
	put(e->abs, "q.bin");
	put(e->abs, "r.txt");
}

static void test_globs(const env *e)
{
	const int W = KILN_PATHS_WORKSPACE;
	EXPECT(e, "src", W, "src,src/lib,src/lib/.y.c,src/lib/up,src/lib/x.c,src/main.c,src/util.c",
	       "src");
	EXPECT(e, "src/*.c", W, "src/main.c,src/util.c", "src/main.c,src/util.c");
	EXPECT(e, "./src/*.c", W, "src/main.c,src/util.c", "src/main.c,src/util.c");
	/* `**` at any depth, zero included; `*` matches hidden names; the symlink is not followed */
	EXPECT(e, "**/*.c", W, "src/lib/.y.c,src/lib/x.c,src/main.c,src/util.c",
	       "src/lib/.y.c,src/lib/x.c,src/main.c,src/util.c");
	EXPECT(e, "src/**", W,
	       "src,src/lib,src/lib/.y.c,src/lib/up,src/lib/x.c,src/main.c,src/util.c", "src");
	EXPECT(e, "*", W,
	       ".hidden,a.txt,b.txt,build,build/out.o,build/sub,build/sub/deep.o,esc,esc/a*b,"
	       "esc/axb,link,node_modules,node_modules/.bin,node_modules/.bin/tool,"
	       "node_modules/pkg,node_modules/pkg/index.js,src,src/lib,src/lib/.y.c,src/lib/up,"
	       "src/lib/x.c,src/main.c,src/util.c",
	       ".hidden,a.txt,b.txt,build,esc,link,node_modules,src");
	_cleanup_(kiln_paths_freep) kiln_paths *all = expand(e, "**");
	CHECK(all && all->root[W].cover.n == 1 && !strcmp(all->root[W].cover.v[0], "."));
	CHECK(all && all->root[W].matches.n == 24 && !strcmp(all->root[W].matches.v[0], "."));
	EXPECT(e, "?.txt", W, "a.txt,b.txt", "a.txt,b.txt");
	EXPECT(e, "[a].txt", W, "a.txt", "a.txt");
	EXPECT(e, "[!a].txt", W, "b.txt", "b.txt");
	EXPECT(e, "[^a-a].txt", W, "b.txt", "b.txt");
	EXPECT(e, "esc/a\\*b", W, "esc/a*b", "esc/a*b");
	EXPECT(e, "esc/a*b", W, "esc/a*b,esc/axb", "esc/a*b,esc/axb");
	/* a trailing '/' matches directories only (the symlink to a directory is not one) */
	EXPECT(e, "*/", W,
	       "build,build/out.o,build/sub,build/sub/deep.o,esc,esc/a*b,esc/axb,node_modules,"
	       "node_modules/.bin,node_modules/.bin/tool,node_modules/pkg,node_modules/pkg/index.js,"
	       "src,src/lib,src/lib/.y.c,src/lib/up,src/lib/x.c,src/main.c,src/util.c",
	       "build,esc,node_modules,src");
	EXPECT(e, "a.txt/", W, "", "");
	/* whitespace, blank lines, comments, CRLF; duplicates and overlaps listed once */
	EXPECT(e, "\n   a.txt  \r\n\n# src\n\t src/main.c\nsrc/main.c\nsrc\n", W,
	       "a.txt,src,src/lib,src/lib/.y.c,src/lib/up,src/lib/x.c,src/main.c,src/util.c",
	       "a.txt,src");
	/* a path that does not exist matches nothing, and is not an error */
	EXPECT(e, "nope/**\nnope.txt", W, "", "");
	/* an absolute pattern inside the workspace lands in the workspace root */
	_cleanup_free_ char *absws = kiln_asprintf("%s/build", e->ws);
	EXPECT(e, absws, W, "build,build/out.o,build/sub,build/sub/deep.o", "build");
}

static void test_exclusions(const env *e)
{
	const int W = KILN_PATHS_WORKSPACE;
	EXPECT(e, "src\n!src/lib", W, "src,src/main.c,src/util.c", "src/main.c,src/util.c");
	EXPECT(e, "src\n!src/lib/**", W, "src,src/main.c,src/util.c", "src/main.c,src/util.c");
	EXPECT(e, "src\n!**/.*", W, "src,src/lib,src/lib/up,src/lib/x.c,src/main.c,src/util.c",
	       "src/lib/up,src/lib/x.c,src/main.c,src/util.c");
	/* a later line adds back what an earlier exclusion removed */
	EXPECT(e, "src\n!src/lib\nsrc/lib/x.c", W, "src,src/lib/x.c,src/main.c,src/util.c",
	       "src/lib/x.c,src/main.c,src/util.c");
	/* an exclusion only removes what the lines above matched */
	EXPECT(e, "!src/main.c\nsrc/*.c", W, "src/main.c,src/util.c", "src/main.c,src/util.c");
	EXPECT(e, "!!src/main.c", W, "src/main.c", "src/main.c");
	EXPECT(e, "! src/main.c\n", W, "", "");
	EXPECT(e, "**\n!node_modules\n!build\n!esc\n!link\n!src\n!.hidden", W, ".,a.txt,b.txt",
	       "a.txt,b.txt");
}

static void test_roots(const env *e)
{
	/* ~ is the home directory: matches are relative to it, in the home root */
	_cleanup_(kiln_paths_freep) kiln_paths *p = expand(e, "  ~/.npm \n~/other/z\n!~/.npm/y");
	CHECK(p != NULL);
	if (p) {
		_cleanup_free_ char *m = joined(&p->root[KILN_PATHS_HOME].matches);
		_cleanup_free_ char *c = joined(&p->root[KILN_PATHS_HOME].cover);
		CHECK_STR(m, ".npm,.npm/_cacache,.npm/_cacache/index,other/z");
		CHECK_STR(c, ".npm/_cacache,other/z");
		CHECK_STR(p->root[KILN_PATHS_HOME].dir, e->home);
		CHECK_STR(p->root[KILN_PATHS_HOME].name, "home");
		CHECK_INT(p->root[KILN_PATHS_WORKSPACE].matches.n, 0);
		CHECK_INT(p->nmatches, 4);
	}
	/* an absolute pattern elsewhere: relative to "/" */
	_cleanup_free_ char *pat = kiln_asprintf("%s/*.bin\nsrc/main.c", e->abs);
	_cleanup_free_ char *rel = kiln_asprintf("%s/q.bin", e->abs + 1);
	EXPECT(e, pat, KILN_PATHS_ABSOLUTE, rel, rel);
	EXPECT(e, pat, KILN_PATHS_WORKSPACE, "src/main.c", "src/main.c");
	/* a workspace inside the home directory: "~" covers both roots, and the home root's cover
	   leaves the workspace to the workspace root */
	env e2 = {.home = kiln_asprintf("%s", e->home)};
	e2.ws = kiln_asprintf("%s/other", e->home);
	EXPECT(&e2, "~", KILN_PATHS_HOME, ".,.npm,.npm/_cacache,.npm/_cacache/index,.npm/y",
	       ".npm");
	EXPECT(&e2, "~", KILN_PATHS_WORKSPACE, ".,z", ".");
	/* a workspace given with a trailing slash and "." components is normalised */
	env e3 = {.home = e->home, .abs = e->abs};
	e3.ws = kiln_asprintf("%s/./", e->ws);
	EXPECT(&e3, "src/*.c", KILN_PATHS_WORKSPACE, "src/main.c,src/util.c",
	       "src/main.c,src/util.c");
	free(e2.home);
	free(e2.ws);
	free(e3.ws);
}

static int expand_err(const env *e, const char *input, const kiln_paths_opts *lim)
{
	kiln_paths_opts o = KILN_PATHS_OPTS_INIT;
	if (lim)
		o = *lim;
	o.workspace = e->ws;
	o.home = e->home;
	kiln_paths *p = NULL;
	int r = kiln_paths_expand(input, &o, &p);
	kiln_paths_free(p);
	return r;
}

static void test_errors(const env *e)
{
	CHECK_INT(expand_err(e, "../x", NULL), -EINVAL);
	CHECK(strstr(kiln_errmsg(), "'..'") != NULL);
	CHECK_INT(expand_err(e, "src/../x", NULL), -EINVAL);
	CHECK_INT(expand_err(e, "src/./x", NULL), -EINVAL);
	CHECK_INT(expand_err(e, "!", NULL), -EINVAL);
	env nohome = {.ws = e->ws};
	CHECK_INT(expand_err(&nohome, "~/.npm", NULL), -EINVAL);
	CHECK(strstr(kiln_errmsg(), "home") != NULL);
	env relws = {.ws = "relative/ws"};
	CHECK_INT(expand_err(&relws, "x", NULL), -EINVAL);
	/* "~user" is not expanded: a relative name in the workspace */
	CHECK_INT(expand_err(e, "~user/x", NULL), 0);

	kiln_paths_opts lim = KILN_PATHS_OPTS_INIT;
	lim.max_entries = 5;
	CHECK_INT(expand_err(e, "**", &lim), -E2BIG);
	CHECK(strstr(kiln_errmsg(), "more than 5 entries") != NULL);
	lim = (kiln_paths_opts)KILN_PATHS_OPTS_INIT;
	lim.max_depth = 1;
	CHECK_INT(expand_err(e, "src", &lim), -E2BIG);
	CHECK(strstr(kiln_errmsg(), "deeper than 1") != NULL);
	CHECK_INT(expand_err(e, "src/*.c", &lim), 0); /* only one level is walked */
	lim = (kiln_paths_opts)KILN_PATHS_OPTS_INIT;
	lim.max_patterns = 2;
	CHECK_INT(expand_err(e, "a\n#c\n\nb\nc", &lim), -E2BIG);
	lim = (kiln_paths_opts)KILN_PATHS_OPTS_INIT;
	lim.max_input = 4;
	CHECK_INT(expand_err(e, "a.txt", &lim), -E2BIG);
	kiln_buf deep = {0};
	for (int i = 0; i < 70; i++)
		kiln_buf_puts(&deep, "d/");
	CHECK_INT(expand_err(e, deep.p, NULL), -E2BIG);
	kiln_buf_free(&deep);
	CHECK(kiln_paths_segment_match("*.c", ".x.c") == 1);
	CHECK(kiln_paths_segment_match("[!.]*", ".x") == 0);
}

/* The cover, walked by kiln_manifest_build, gives the matches (directories with excluded
   contents aside) and nothing else. */
static void test_manifest_from_cover(const env *e, const char *dir)
{
	_cleanup_(kiln_paths_freep) kiln_paths *p = expand(e, "**\n!src/lib\n!node_modules/pkg");
	CHECK(p != NULL);
	if (!p)
		return;
	kiln_paths_root *w = &p->root[KILN_PATHS_WORKSPACE];
	_cleanup_free_ char *store = kiln_asprintf("%s/store", dir);
	_cleanup_(kiln_cas_closep) kiln_cas *cas = NULL;
	CHECK(kiln_cas_open(store, NULL, &cas) == 0);
	_cleanup_(kiln_manifest_freep) kiln_manifest *m = NULL;
	CHECK(kiln_manifest_build(cas, w->dir, (const char *const *)w->cover.v, w->cover.n, &m) ==
	      0);
	if (!m)
		return;
	size_t j = 0;
	bool same = true;
	for (size_t i = 0; i < w->matches.n; i++) {
		const char *want = w->matches.v[i];
		/* ".", "src" and "node_modules" have excluded contents: not entries themselves */
		if (!strcmp(want, ".") || !strcmp(want, "src") || !strcmp(want, "node_modules"))
			continue;
		if (j >= m->n || strcmp(m->v[j].path, want) != 0) {
			fprintf(stderr, "manifest entry %zu: %s, want %s\n", j,
				j < m->n ? m->v[j].path : "(end)", want);
			same = false;
			break;
		}
		j++;
	}
	CHECK(same && j == m->n);
}

int main(void)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(kiln_mkdtemp("kiln-test-paths", &dir) == 0);
	env e = {.ws = kiln_asprintf("%s/ws", dir), .home = kiln_asprintf("%s/home", dir),
		 .abs = kiln_asprintf("%s/elsewhere", dir)};
	make_tree(&e);
	test_globs(&e);
	test_exclusions(&e);
	test_roots(&e);
	test_errors(&e);
	test_manifest_from_cover(&e, dir);
	kiln_rm_rf(dir);
	free(e.ws);
	free(e.home);
	free(e.abs);
	return check_done();
}
