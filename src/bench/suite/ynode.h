/*
 * ynode.h: a YAML document as a small tree with line numbers and "used"
 * marks, so that a schema walk can report unknown keys as FILE:LINE.
 *
 * Scalars are already ${VAR}-expanded (suite.h). Aliases are resolved by
 * libyaml; merge keys (<<) are not supported (an unknown key).
 * The tree owns all its strings; ynode_free() frees a whole tree.
 */
#ifndef KVB_YNODE_H
#define KVB_YNODE_H

#include "common/compat.h"

enum ynode_type { YN_SCALAR, YN_MAP, YN_SEQ };

struct ynode {
	enum ynode_type type;
	int line;            /* 1-based */
	char *str;           /* scalar: the expanded value */
	bool plain_null;     /* scalar written as ~, null or nothing */
	bool quoted;         /* scalar was quoted */
	char **keys;         /* map: keys (n of them) */
	int *key_lines;      /* map: the line of each key */
	bool *used;          /* map: set by ynode_get() */
	struct ynode **kids; /* map values / seq items */
	size_t n;
};

/*
 * Parses a file. Returns the root, or NULL after printing one error line
 * "FILE:LINE: ..." (syntax errors, expansion errors, duplicate keys,
 * non-scalar keys, more than one document, a file over max_bytes).
 */
struct ynode *ynode_load_file(const char *path, size_t max_bytes);
/* Same on a buffer; name is used in messages. */
struct ynode *ynode_load_buf(const char *name, const char *data, size_t len);
void ynode_free(struct ynode *n);

/* Looks a key up in a map and marks it used; NULL when absent. */
struct ynode *ynode_get(struct ynode *map, const char *key);
/* Index of the first key not marked used, or -1. */
long ynode_first_unused(const struct ynode *map);

#endif
