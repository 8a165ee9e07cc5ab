/* Typed access to a workload's key=value settings, with file:line errors. */
#include "common/util.h"

#include <inttypes.h>

#include "workload.h"
#include "common/banned.h"

static struct kvb_kv *find(const struct kvb_wl_params *p, const char *key)
{
	struct kvb_kv *hit = NULL;
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->kv[i].key, key))
			hit = &p->kv[i]; /* the last one wins, like repeated flags */
	if (hit)
		for (size_t i = 0; i < p->n; i++)
			if (!strcmp(p->kv[i].key, key))
				p->kv[i].used = true;
	return hit;
}

static void bad(const struct kvb_kv *kv, const char *what)
{
	if (kv->file)
		kv_error("%s:%d: %s: %s, got '%s'", kv->file, kv->line, kv->key, what, kv->value);
	else
		kv_error("--set %s: %s, got '%s'", kv->key, what, kv->value);
}

int kvb_wl_get_int(const struct kvb_wl_params *p, const char *key, int64_t def,
		   int64_t min, int64_t max, int64_t *out)
{
	struct kvb_kv *kv = find(p, key);
	char what[128];

	if (!kv) {
		*out = def;
		return 0;
	}
	if (kv_parse_i64(kv->value, min, max, out) < 0) {
		snprintf(what, sizeof(what), "expected an integer in %" PRId64 "..%" PRId64, min, max);
		bad(kv, what);
		return -1;
	}
	return 0;
}

int kvb_wl_get_double(const struct kvb_wl_params *p, const char *key, double def,
		      double min, double max, double *out)
{
	struct kvb_kv *kv = find(p, key);
	char what[128];
	double v;

	if (!kv) {
		*out = def;
		return 0;
	}
	if (kv_parse_double(kv->value, &v) < 0 || v < min || v > max) {
		snprintf(what, sizeof(what), "expected a number in %g..%g", min, max);
		bad(kv, what);
		return -1;
	}
	*out = v;
	return 0;
}

int kvb_wl_get_bool(const struct kvb_wl_params *p, const char *key, bool def, bool *out)
{
	struct kvb_kv *kv = find(p, key);

	if (!kv) {
		*out = def;
		return 0;
	}
	if (!strcmp(kv->value, "true") || !strcmp(kv->value, "1") || !strcmp(kv->value, "yes") ||
	    !strcmp(kv->value, "on")) {
		*out = true;
		return 0;
	}
	if (!strcmp(kv->value, "false") || !strcmp(kv->value, "0") || !strcmp(kv->value, "no") ||
	    !strcmp(kv->value, "off")) {
		*out = false;
		return 0;
	}
	bad(kv, "expected true or false");
	return -1;
}

int kvb_wl_get_str(const struct kvb_wl_params *p, const char *key, const char *def,
		   const char **out)
{
	struct kvb_kv *kv = find(p, key);
	*out = kv ? kv->value : def;
	return 0;
}

int kvb_wl_check_unused(const struct kvb_wl_params *p, const char *workload)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct kvb_kv *kv = &p->kv[i];
		if (kv->used)
			continue;
		if (kv->file)
			kv_error("%s:%d: %s: not a key of workload '%s' (see 'kvbench bench --workload %s --help')",
				 kv->file, kv->line, kv->key, workload, workload);
		else
			kv_error("--set %s: not a key of workload '%s' (see 'kvbench bench --workload %s --help')",
				 kv->key, workload, workload);
		return -1;
	}
	return 0;
}

const struct kvb_wl_def *kvb_wl_find(const char *name)
{
	for (const struct kvb_wl_def *const *d = kvb_workloads; *d; d++)
		if (!strcmp((*d)->name, name))
			return *d;
	return NULL;
}

void kvb_wl_help(FILE *out, const struct kvb_wl_def *def)
{
	fprintf(out, "workload %s: %s\n\nkeys (--set KEY=VALUE):\n", def->name, def->summary);
	for (const struct kvb_wl_key *k = def->keys; k && k->name; k++) {
		fprintf(out, "  %-24s %s", k->name, k->help);
		if (k->unit && *k->unit)
			fprintf(out, " (%s)", k->unit);
		if (k->def && *k->def)
			fprintf(out, " [default: %s]", k->def);
		else
			fprintf(out, " [required]");
		fputc('\n', out);
	}
}
