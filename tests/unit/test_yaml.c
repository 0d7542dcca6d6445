/*
 * test_yaml — the node tree: positions, scalar styles, anchors and aliases,
 * the limits (size, depth, nodes, expanded bytes, alias bombs), duplicate
 * keys, and the shape of error messages.
 */
#include "common/util.h"
#include "common/yaml.h"
#include "tests/harness/check.h"

#include <errno.h>
#include <string.h>

static int parse(const char *text, kiln_ynode **out)
{
	return kiln_yaml_parse("t.yml", text, strlen(text), NULL, out);
}

static int parse_lim(const char *text, const kiln_yaml_limits *lim)
{
	kiln_ynode *n = NULL;
	int r = kiln_yaml_parse("t.yml", text, strlen(text), lim, &n);
	kiln_ynode_free(n);
	return r;
}

/* Expects a failure with exactly this errno and message. */
#define CHECK_FAIL(text, err, msg)                                                                 \
	do {                                                                                       \
		kiln_ynode *n_ = NULL;                                                             \
		CHECK_INT(parse((text), &n_), -(err));                                             \
		CHECK(n_ == NULL);                                                                 \
		CHECK_STR(kiln_errmsg(), (msg));                                                   \
	} while (0)

static void test_positions(void)
{
	const char *doc = "# comment\n"
	                  "name: ci\n"
	                  "jobs:\n"
	                  "  build:\n"
	                  "    steps:\n"
	                  "      - run: make\n"
	                  "      - {uses: x, with: [1, 2]}\n"
	                  "empty:\n";
	_cleanup_(kiln_ynode_freep) kiln_ynode *root = NULL;
	CHECK_INT(parse(doc, &root), 0);
	if (!root)
		return;
	CHECK_INT(root->kind, KILN_YNODE_MAPPING);
	CHECK_INT(root->line, 2);
	CHECK_INT(root->col, 1);
	CHECK_INT(root->npairs, 3);
	CHECK_STR(root->pairs[0].key->str, "name");
	CHECK_INT(root->pairs[0].key->line, 2);
	CHECK_INT(root->pairs[0].key->col, 1);
	CHECK_INT(root->pairs[0].value->line, 2);
	CHECK_INT(root->pairs[0].value->col, 7);

	const kiln_ynode *build = kiln_ynode_get(kiln_ynode_get(root, "jobs"), "build");
	CHECK(build && build->kind == KILN_YNODE_MAPPING);
	const kiln_ynode *bk = kiln_ynode_get_key(kiln_ynode_get(root, "jobs"), "build");
	CHECK(bk && bk->line == 4 && bk->col == 3);
	const kiln_ynode *steps = kiln_ynode_get(build, "steps");
	CHECK(steps && steps->kind == KILN_YNODE_SEQUENCE && steps->nitems == 2);
	if (!steps || steps->nitems != 2)
		return;
	CHECK_INT(steps->line, 6);
	CHECK_INT(steps->col, 7);
	/* A block mapping inside a sequence starts at its first key. */
	CHECK_INT(steps->items[0]->line, 6);
	CHECK_INT(steps->items[0]->col, 9);
	CHECK_STR(kiln_ynode_get(steps->items[0], "run")->str, "make");
	CHECK_INT(kiln_ynode_get(steps->items[0], "run")->col, 14);
	/* A flow mapping starts at its brace. */
	CHECK_INT(steps->items[1]->line, 7);
	CHECK_INT(steps->items[1]->col, 9);
	const kiln_ynode *with = kiln_ynode_get(steps->items[1], "with");
	CHECK(with && with->kind == KILN_YNODE_SEQUENCE && with->nitems == 2);
	CHECK_INT(with->col, 25);
	CHECK_INT(with->items[1]->col, 29);
	CHECK(kiln_ynode_is_null(kiln_ynode_get(root, "empty")));
	CHECK(kiln_ynode_get(root, "empty") != NULL);
	CHECK(kiln_ynode_get(root, "missing") == NULL);
	CHECK(kiln_ynode_get(steps, "x") == NULL); /* not a mapping */
	CHECK(kiln_ynode_get(NULL, "x") == NULL);
	CHECK_INT(root->nodes, 21);
	CHECK_INT(root->height, 6); /* root, jobs, build, steps, step, with */
}

static void test_scalars(void)
{
	const char *doc = "a: true\n"
	                  "b: \"true\"\n"
	                  "c: !!str true\n"
	                  "d: 'it''s'\n"
	                  "e: |\n"
	                  "  line1\n"
	                  "  line2\n"
	                  "f: ~\n"
	                  "g: \"\"\n"
	                  "h: 012\n"
	                  "i: yes\n"
	                  "j: FALSE\n";
	_cleanup_(kiln_ynode_freep) kiln_ynode *root = NULL;
	CHECK_INT(parse(doc, &root), 0);
	if (!root)
		return;
	const kiln_ynode *a = kiln_ynode_get(root, "a"), *b = kiln_ynode_get(root, "b"),
	                 *c = kiln_ynode_get(root, "c");
	bool v = false;
	CHECK(a->plain && !b->plain && !c->plain);
	CHECK_STR(c->str, "true");
	CHECK_STR(c->tag, "tag:yaml.org,2002:str");
	CHECK(a->tag == NULL);
	CHECK_INT(kiln_ynode_bool(a, &v), 0);
	CHECK(v);
	CHECK_INT(kiln_ynode_bool(b, &v), -EINVAL);
	CHECK_INT(kiln_ynode_bool(c, &v), -EINVAL);
	CHECK_INT(kiln_ynode_bool(kiln_ynode_get(root, "i"), &v), -EINVAL); /* YAML 1.2 core */
	CHECK_INT(kiln_ynode_bool(kiln_ynode_get(root, "j"), &v), 0);
	CHECK(!v);
	CHECK_STR(kiln_ynode_get(root, "d")->str, "it's");
	CHECK_STR(kiln_ynode_get(root, "e")->str, "line1\nline2\n");
	CHECK_INT(kiln_ynode_get(root, "e")->len, 12);
	CHECK(kiln_ynode_is_null(kiln_ynode_get(root, "f")));
	CHECK(!kiln_ynode_is_null(kiln_ynode_get(root, "g"))); /* quoted: a string */
	CHECK_STR(kiln_ynode_get(root, "h")->str, "012");      /* as written */
	CHECK_STR(kiln_ynode_kind_name(kiln_ynode_get(root, "f")), "null");
	CHECK_STR(kiln_ynode_kind_name(a), "string");
	CHECK_STR(kiln_ynode_kind_name(root), "mapping");
}

static void test_anchors(void)
{
	const char *doc = "base: &env\n"
	                  "  A: 1\n"
	                  "  B: two\n"
	                  "one: *env\n"
	                  "list: [&s hello, *s, *env]\n"
	                  "again: &s bye\n"
	                  "late: *s\n";
	_cleanup_(kiln_ynode_freep) kiln_ynode *root = NULL;
	CHECK_INT(parse(doc, &root), 0);
	if (!root)
		return;
	const kiln_ynode *base = kiln_ynode_get(root, "base"), *one = kiln_ynode_get(root, "one");
	CHECK(base == one); /* shared, not copied */
	CHECK_INT(base->refs, 3);
	CHECK_STR(kiln_ynode_get(one, "B")->str, "two");
	/* An alias keeps the anchored node's position: a node starts at its anchor. */
	CHECK_INT(one->line, 1);
	CHECK_INT(one->col, 7);
	const kiln_ynode *list = kiln_ynode_get(root, "list");
	CHECK_INT(list->nitems, 3);
	CHECK_STR(list->items[1]->str, "hello");
	CHECK(list->items[2] == base);
	/* A redefined anchor takes the newer node. */
	CHECK_STR(kiln_ynode_get(root, "late")->str, "bye");
	/* Expanded counts: base subtree is 5 nodes, counted once more for each alias. */
	CHECK_INT(base->nodes, 5);
	CHECK_INT(list->nodes, 1 + 1 + 1 + 5);

	CHECK_FAIL("a: *nope\n", EINVAL, "t.yml:1:4: alias to unknown anchor 'nope'");
	CHECK_FAIL("a: &x [1, *x]\n", EINVAL,
	           "t.yml:1:11: alias refers to its own enclosing node 'x'");
}

static void test_limits(void)
{
	kiln_yaml_limits lim = {.max_bytes = 10};
	CHECK_INT(parse_lim("a: 1234567890\n", &lim), -E2BIG);
	CHECK_STR(kiln_errmsg(), "t.yml:1:1: document is 14 bytes, over the limit of 10");
	CHECK_INT(parse_lim("a: 12345\n", &lim), 0);

	/* Depth: the default is 64 nested collections. */
	kiln_buf b = {0};
	for (int i = 0; i < 64; i++)
		kiln_buf_puts(&b, "[");
	for (int i = 0; i < 64; i++)
		kiln_buf_puts(&b, "]");
	CHECK_INT(parse_lim(b.p, NULL), 0);
	kiln_buf_free(&b);
	for (int i = 0; i < 65; i++)
		kiln_buf_puts(&b, "[");
	for (int i = 0; i < 65; i++)
		kiln_buf_puts(&b, "]");
	CHECK_INT(parse_lim(b.p, NULL), -E2BIG);
	CHECK_STR(kiln_errmsg(), "t.yml:1:65: nesting deeper than 64 levels");
	kiln_buf_free(&b);
	/* A deep block document fails early, at the line that goes too deep. */
	for (int i = 0; i < 100; i++)
		kiln_buf_printf(&b, "%*sk:\n", i, "");
	CHECK_INT(parse_lim(b.p, NULL), -E2BIG);
	CHECK_STR(kiln_errmsg(), "t.yml:65:65: nesting deeper than 64 levels");
	kiln_buf_free(&b);

	lim = (kiln_yaml_limits){.max_depth = 3};
	CHECK_INT(parse_lim("a: {b: [1]}\n", &lim), 0);
	CHECK_INT(parse_lim("a: {b: [[1]]}\n", &lim), -E2BIG);
	/* Depth counts what an alias brings along. */
	CHECK_INT(parse_lim("x: &x [[1]]\ny: [*x]\n", &lim), -E2BIG);
	CHECK_STR(kiln_errmsg(), "t.yml:2:5: nesting deeper than 3 levels (through alias)");

	lim = (kiln_yaml_limits){.max_nodes = 5};
	CHECK_INT(parse_lim("[1, 2, 3, 4]\n", &lim), 0);
	CHECK_INT(parse_lim("[1, 2, 3, 4, 5]\n", &lim), -E2BIG);
	CHECK_STR(kiln_errmsg(),
	          "t.yml:1:14: document has more than 5 nodes (counting alias expansions)");
}

static void test_alias_bomb(void)
{
	/* Billion laughs: 9^9 strings from a few hundred bytes. */
	const char *bomb = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
	                   "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	                   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
	                   "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
	                   "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
	                   "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
	                   "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
	                   "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
	                   "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
	int64_t t0 = kiln_mono_ns();
	CHECK_INT(parse_lim(bomb, NULL), -E2BIG);
	CHECK(strstr(kiln_errmsg(), "t.yml:6:") == kiln_errmsg());
	CHECK(strstr(kiln_errmsg(), "more than 100000 nodes (counting alias expansions)") != NULL);
	CHECK(kiln_mono_ns() - t0 < 1000000000LL); /* refused quickly, not after expanding */

	/* Few nodes, many bytes: a big scalar aliased many times. */
	kiln_buf b = {0};
	kiln_buf_puts(&b, "big: &big ");
	for (int i = 0; i < 100000; i++)
		kiln_buf_puts(&b, "x");
	kiln_buf_puts(&b, "\nuse: [");
	for (int i = 0; i < 200; i++)
		kiln_buf_puts(&b, "*big, ");
	kiln_buf_puts(&b, "]\n");
	CHECK_INT(parse_lim(b.p, NULL), -E2BIG);
	CHECK(strstr(kiln_errmsg(), "bytes of scalars (counting alias expansions)") != NULL);
	kiln_yaml_limits lim = {.max_expanded = 64 * 1024 * 1024};
	CHECK_INT(parse_lim(b.p, &lim), 0);
	kiln_buf_free(&b);
}

static void test_duplicates(void)
{
	CHECK_FAIL("a: 1\nb: 2\na: 3\n", EINVAL, "t.yml:3:1: duplicate key 'a' (first at 1:1)");
	CHECK_FAIL("x:\n  k: 1\n  j: 2\n  \"k\": 3\n", EINVAL,
	           "t.yml:4:3: duplicate key 'k' (first at 2:3)");
	/* The earliest repetition is the one reported. */
	CHECK_FAIL("{b: 1, a: 1, c: 1, b: 2, a: 2}\n", EINVAL,
	           "t.yml:1:20: duplicate key 'b' (first at 1:2)");
	/* Same key in different mappings is fine. */
	_cleanup_(kiln_ynode_freep) kiln_ynode *n = NULL;
	CHECK_INT(parse("a: {k: 1}\nb: {k: 2}\n", &n), 0);
	/* Keys are quoted safely in messages. */
	CHECK_FAIL("\"a\\nb\": 1\n\"a\\nb\": 2\n", EINVAL,
	           "t.yml:2:1: duplicate key 'a\\x0ab' (first at 1:1)");
}

static void test_errors(void)
{
	kiln_ynode *n = NULL;
	CHECK_INT(parse("a: [1, 2\n", &n), -EINVAL);
	CHECK(strncmp(kiln_errmsg(), "t.yml:2:1: ", 11) == 0);
	CHECK(strstr(kiln_errmsg(), "flow sequence") != NULL);

	CHECK_INT(parse("a: b: c\n", &n), -EINVAL);
	CHECK_STR(kiln_errmsg(), "t.yml:1:5: mapping values are not allowed in this context");

	CHECK_INT(parse("a:\n  - x\n  b: 1\n", &n), -EINVAL);
	CHECK_STR(kiln_errmsg(), "t.yml:3:3: did not find expected '-' indicator "
	                         "(while parsing a block collection at 2:3)");

	CHECK_INT(parse("a: \"\\0\"\n", &n), -EINVAL);
	CHECK_STR(kiln_errmsg(), "t.yml:1:4: NUL character in a scalar");

	/* Invalid UTF-8 is a reader error: its position comes from the byte offset. */
	CHECK_INT(parse("a: ok\nb: \xff\n", &n), -EINVAL);
	CHECK(strncmp(kiln_errmsg(), "t.yml:2:4: ", 11) == 0);

	CHECK_FAIL("", ENODATA, "t.yml:1:1: empty document");
	CHECK_FAIL("# only a comment\n\n", ENODATA, "t.yml:1:1: empty document");
	CHECK_INT(kiln_yaml_parse(NULL, NULL, 0, NULL, &n), -ENODATA);
	CHECK_STR(kiln_errmsg(), "<input>:1:1: empty document");
	CHECK(n == NULL);

	/* Only the first document is read; what follows is not even parsed. */
	CHECK_INT(parse("a: 1\n---\nb: [\n", &n), 0);
	CHECK(n && kiln_ynode_get(n, "a") && !kiln_ynode_get(n, "b"));
	kiln_ynode_free(n);
	n = NULL;
	CHECK_INT(parse("---\n", &n), 0);
	CHECK(kiln_ynode_is_null(n));
	kiln_ynode_free(n);

	kiln_ynode_free(NULL);
	CHECK_INT(kiln_ynode_err("f", NULL, EIO, "x %d", 1), -EIO);
	CHECK_STR(kiln_errmsg(), "f:1:1: x 1");
}

static void test_quote(void)
{
	char buf[12];
	CHECK_STR(kiln_yaml_quote(buf, sizeof buf, "short"), "short");
	CHECK_STR(kiln_yaml_quote(buf, sizeof buf, "0123456789abcdef"), "01234567...");
	CHECK_STR(kiln_yaml_quote(buf, sizeof buf, "a\tb"), "a\\x09b");
	CHECK_STR(kiln_yaml_quote(buf, sizeof buf, "1234567\xc3\xa9xyz"), "1234567...");
	CHECK_STR(kiln_yaml_quote(buf, sizeof buf, NULL), "");
}

int main(void)
{
	test_positions();
	test_scalars();
	test_anchors();
	test_limits();
	test_alias_bomb();
	test_duplicates();
	test_errors();
	test_quote();
	return check_done();
}
