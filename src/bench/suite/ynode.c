/* YAML (libyaml document API) to a small tree with lines and used marks. */
#include "common/util.h"

#include <errno.h>

#include <yaml.h>

#include "suite/suite.h"
#include "suite/ynode.h"
#include "common/banned.h"

void ynode_free(struct ynode *n)
{
	if (!n)
		return;
	free(n->str);
	for (size_t i = 0; i < n->n; i++) {
		if (n->keys)
			free(n->keys[i]);
		ynode_free(n->kids[i]);
	}
	free(n->keys);
	free(n->key_lines);
	free(n->used);
	free(n->kids);
	free(n);
}

static bool scalar_is_null(const yaml_node_t *yn)
{
	const char *v = (const char *)yn->data.scalar.value;
	if (yn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
	       !strcmp(v, "NULL");
}

static struct ynode *convert(const char *name, yaml_document_t *doc, yaml_node_t *yn, int depth)
{
	struct ynode *n;
	char *err = NULL;

	if (depth > 64) {
		kv_error("%s:%d: nesting deeper than 64 levels", name, (int)yn->start_mark.line + 1);
		return NULL;
	}
	n = xcalloc(1, sizeof(*n));
	n->line = (int)yn->start_mark.line + 1;
	switch (yn->type) {
	case YAML_SCALAR_NODE:
		n->type = YN_SCALAR;
		n->plain_null = scalar_is_null(yn);
		n->quoted = yn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
		if (n->plain_null) {
			n->str = xstrdup("");
			break;
		}
		n->str = kvb_suite_expand((const char *)yn->data.scalar.value, &err);
		if (!n->str) {
			kv_error("%s:%d: %s", name, n->line, err);
			free(err);
			goto fail;
		}
		break;
	case YAML_SEQUENCE_NODE: {
		size_t cnt = (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
		n->type = YN_SEQ;
		n->kids = xcalloc(cnt ? cnt : 1, sizeof(*n->kids));
		for (size_t i = 0; i < cnt; i++) {
			yaml_node_t *c = yaml_document_get_node(doc, yn->data.sequence.items.start[i]);
			if (!c || !(n->kids[i] = convert(name, doc, c, depth + 1)))
				goto fail;
			n->n = i + 1;
		}
		break;
	}
	case YAML_MAPPING_NODE: {
		size_t cnt = (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
		n->type = YN_MAP;
		n->keys = xcalloc(cnt ? cnt : 1, sizeof(*n->keys));
		n->key_lines = xcalloc(cnt ? cnt : 1, sizeof(*n->key_lines));
		n->used = xcalloc(cnt ? cnt : 1, sizeof(*n->used));
		n->kids = xcalloc(cnt ? cnt : 1, sizeof(*n->kids));
		for (size_t i = 0; i < cnt; i++) {
			yaml_node_pair_t *p = &yn->data.mapping.pairs.start[i];
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			yaml_node_t *v = yaml_document_get_node(doc, p->value);
			if (!k || !v)
				goto fail;
			if (k->type != YAML_SCALAR_NODE) {
				kv_error("%s:%d: a key must be a plain word", name,
					 (int)k->start_mark.line + 1);
				goto fail;
			}
			for (size_t j = 0; j < i; j++)
				if (!strcmp(n->keys[j], (const char *)k->data.scalar.value)) {
					kv_error("%s:%d: %s: duplicate key (first on line %d)", name,
						 (int)k->start_mark.line + 1,
						 (const char *)k->data.scalar.value, n->key_lines[j]);
					goto fail;
				}
			n->keys[i] = xstrdup((const char *)k->data.scalar.value);
			n->key_lines[i] = (int)k->start_mark.line + 1;
			n->n = i + 1;
			if (!(n->kids[i] = convert(name, doc, v, depth + 1)))
				goto fail;
		}
		break;
	}
	default:
		kv_error("%s:%d: empty document", name, n->line);
		goto fail;
	}
	return n;
fail:
	ynode_free(n);
	return NULL;
}

struct ynode *ynode_load_buf(const char *name, const char *data, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	struct ynode *root = NULL;
	yaml_node_t *yr;
	bool have_doc = false, have_extra = false;

	if (!yaml_parser_initialize(&parser)) {
		kv_error("%s: cannot initialise the YAML parser", name);
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	if (!yaml_parser_load(&parser, &doc)) {
		kv_error("%s:%d: %s", name, (int)parser.problem_mark.line + 1,
			 parser.problem ? parser.problem : "invalid YAML");
		goto out;
	}
	have_doc = true;
	yr = yaml_document_get_root_node(&doc);
	if (!yr) {
		kv_error("%s:1: the file is empty", name);
		goto out;
	}
	if (!yaml_parser_load(&parser, &extra)) {
		kv_error("%s:%d: %s", name, (int)parser.problem_mark.line + 1,
			 parser.problem ? parser.problem : "invalid YAML");
		goto out;
	}
	have_extra = true;
	if (yaml_document_get_root_node(&extra)) {
		kv_error("%s:%d: only one YAML document is allowed", name,
			 (int)extra.start_mark.line + 1);
		goto out;
	}
	root = convert(name, &doc, yr, 0);
out:
	if (have_extra)
		yaml_document_delete(&extra);
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return root;
}

struct ynode *ynode_load_file(const char *path, size_t max_bytes)
{
	size_t len = 0;
	char *data = kv_read_file(path, max_bytes, &len);
	struct ynode *root;

	if (!data) {
		kv_error("%s: cannot read: %s", path, strerror(errno));
		return NULL;
	}
	root = ynode_load_buf(path, data, len);
	free(data);
	return root;
}

struct ynode *ynode_get(struct ynode *map, const char *key)
{
	if (!map || map->type != YN_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (!strcmp(map->keys[i], key)) {
			map->used[i] = true;
			return map->kids[i];
		}
	return NULL;
}

long ynode_first_unused(const struct ynode *map)
{
	if (!map || map->type != YN_MAP)
		return -1;
	for (size_t i = 0; i < map->n; i++)
		if (!map->used[i])
			return (long)i;
	return -1;
}
