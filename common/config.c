/*
 * config — see config.h.
 */
#include "common/config.h"

#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "common/yaml.h"

#define MAX_CONFIG (1u << 20)

int kiln_config_load(const char *path, const char *const *keys, char **const *slots, size_t n,
		     const char *list_key)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r = kiln_read_file(path, MAX_CONFIG, &text, &len);
	if (r < 0)
		return r;
	_cleanup_(kiln_ynode_freep) kiln_ynode *root = NULL;
	r = kiln_yaml_parse(path, text, len, NULL, &root);
	if (r == -ENODATA) /* only comments: every default */
		return 0;
	if (r < 0)
		return r;
	if (kiln_ynode_is_null(root))
		return 0;
	if (root->kind != KILN_YNODE_MAPPING)
		return kiln_ynode_err(path, root, EINVAL, "expected a mapping of settings");
	for (size_t i = 0; i < root->npairs; i++) {
		const kiln_ynode *k = root->pairs[i].key, *v = root->pairs[i].value;
		size_t key = n;
		for (size_t j = 0; j < n && key == n; j++)
			if (k->kind == KILN_YNODE_SCALAR && strcmp(k->str, keys[j]) == 0)
				key = j;
		if (key == n)
			return kiln_ynode_err(path, k, EINVAL, "unknown setting '%s'",
					      k->kind == KILN_YNODE_SCALAR ? k->str : "?");
		if (kiln_ynode_is_null(v) || *slots[key])
			continue; /* `key:` alone keeps the default; a flag wins */
		if (list_key && strcmp(keys[key], list_key) == 0 && v->kind == KILN_YNODE_SEQUENCE) {
			kiln_buf b = {0};
			for (size_t j = 0; j < v->nitems; j++) {
				if (v->items[j]->kind != KILN_YNODE_SCALAR) {
					kiln_buf_free(&b);
					return kiln_ynode_err(path, v->items[j], EINVAL,
							      "%s: expected strings", list_key);
				}
				kiln_buf_printf(&b, "%s%s", j ? "," : "", v->items[j]->str);
			}
			*slots[key] = b.p ? kiln_buf_steal(&b) : kiln_strdup("");
			continue;
		}
		if (v->kind != KILN_YNODE_SCALAR)
			return kiln_ynode_err(path, v, EINVAL, "%s: expected a string, not a %s",
					      keys[key], kiln_ynode_kind_name(v));
		*slots[key] = kiln_strdup(v->str);
	}
	return 0;
}
