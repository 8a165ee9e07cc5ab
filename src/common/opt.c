#include "common/opt.h"

#include <inttypes.h>

#include "common/buf.h"
#include "common/util.h"
#include "common/banned.h"

static const char *cmd_short(const struct kv_cmd_info *info)
{
	const char *sp = strrchr(info->name, ' ');
	return sp ? sp + 1 : info->name;
}

static int usage_error(const struct kv_cmd_info *info, const char *fmt, ...) KV_PRINTF(2, 3);
static int usage_error(const struct kv_cmd_info *info, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	kv_error("%s: %s (see '%s --help')", cmd_short(info), line, info->name);
	return -1;
}

static void opt_name(char *dst, size_t n, const struct kv_opt *o)
{
	if (o->long_name)
		snprintf(dst, n, "--%s", o->long_name);
	else
		snprintf(dst, n, "-%c", o->short_name);
}

static int set_value(const struct kv_cmd_info *info, const struct kv_opt *o,
		     const char *arg, void *ctx)
{
	char name[128];
	opt_name(name, sizeof(name), o);

	switch (o->type) {
	case KV_OPT_T_INT: {
		int64_t v;
		if (kv_parse_i64(arg, o->min, o->max, &v) < 0)
			return usage_error(info, "%s: expected an integer in %" PRId64 "..%" PRId64 ", got '%s'",
					   name, o->min, o->max, arg);
		*(int64_t *)o->value = v;
		return 0;
	}
	case KV_OPT_T_DOUBLE: {
		double v;
		if (kv_parse_double(arg, &v) < 0 || v < o->dmin || v > o->dmax)
			return usage_error(info, "%s: expected a number in %g..%g, got '%s'",
					   name, o->dmin, o->dmax, arg);
		*(double *)o->value = v;
		return 0;
	}
	case KV_OPT_T_STRING:
		*(const char **)o->value = arg;
		return 0;
	case KV_OPT_T_SIZE: {
		uint64_t v;
		if (kv_parse_size(arg, &v) < 0)
			return usage_error(info, "%s: expected a size such as 4096, 64k, 1GiB or 2GB, got '%s'",
					   name, arg);
		*(uint64_t *)o->value = v;
		return 0;
	}
	case KV_OPT_T_CHOICE: {
		struct kv_buf list = KV_BUF_INIT(0);
		for (const char *const *c = o->choices; *c; c++) {
			if (!strcmp(*c, arg)) {
				*(const char **)o->value = *c;
				kv_buf_release(&list);
				return 0;
			}
			kv_buf_printf(&list, "%s%s", c == o->choices ? "" : ", ", *c);
		}
		usage_error(info, "%s: '%s' is not one of: %s", name, arg, kv_buf_str(&list));
		kv_buf_release(&list);
		return -1;
	}
	case KV_OPT_T_CALLBACK:
		return o->cb(o, arg, ctx) ? -1 : 0;
	default:
		return -1;
	}
}

static bool takes_arg(const struct kv_opt *o)
{
	if (o->type == KV_OPT_T_BOOL)
		return false;
	if (o->type == KV_OPT_T_CALLBACK && (o->flags & KV_OPT_NOARG))
		return false;
	return true;
}

int kv_opt_parse(const struct kv_cmd_info *info, const struct kv_opt *opts,
		 int argc, char **argv, void *ctx)
{
	int npos = 0;
	bool only_pos = false;

	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		const struct kv_opt *o = NULL;
		const char *val = NULL;
		bool neg = false;

		if (only_pos || a[0] != '-' || a[1] == '\0') {
			argv[npos++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			kv_opt_help(stdout, info, opts);
			exit(0);
		}
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);

			for (const struct kv_opt *p = opts; p->type != KV_OPT_T_END; p++) {
				if (!p->long_name)
					continue;
				if (strlen(p->long_name) == len && !strncmp(p->long_name, name, len)) {
					o = p;
					break;
				}
				if (p->type == KV_OPT_T_BOOL && len > 3 && !strncmp(name, "no-", 3) &&
				    strlen(p->long_name) == len - 3 &&
				    !strncmp(p->long_name, name + 3, len - 3)) {
					o = p;
					neg = true;
					break;
				}
			}
			if (!o)
				return usage_error(info, "unknown option '--%.*s'", (int)len, name);
			if (eq) {
				if (!takes_arg(o))
					return usage_error(info, "option '--%s' takes no value", o->long_name);
				val = eq + 1;
			}
		} else {
			for (const struct kv_opt *p = opts; p->type != KV_OPT_T_END; p++) {
				if (p->short_name && p->short_name == a[1]) {
					o = p;
					break;
				}
			}
			if (!o)
				return usage_error(info, "unknown option '-%c'", a[1]);
			if (a[2]) {
				if (!takes_arg(o))
					return usage_error(info, "option '-%c' takes no value", a[1]);
				val = a + 2;
			}
		}

		if (!takes_arg(o)) {
			if (o->type == KV_OPT_T_BOOL)
				*(bool *)o->value = !neg;
			else if (o->cb(o, NULL, ctx))
				return -1;
			continue;
		}
		if (!val) {
			char name[128];
			opt_name(name, sizeof(name), o);
			if (i + 1 >= argc)
				return usage_error(info, "option '%s' needs a value", name);
			val = argv[++i];
		}
		if (set_value(info, o, val, ctx) < 0)
			return -1;
	}
	argv[npos] = NULL;
	return npos;
}

/* The default as text, or NULL when there is nothing worth showing. */
static char *default_text(const struct kv_opt *o)
{
	switch (o->type) {
	case KV_OPT_T_BOOL:
		return *(bool *)o->value ? xstrdup("on") : NULL;
	case KV_OPT_T_INT:
		return xasprintf("%" PRId64, *(int64_t *)o->value);
	case KV_OPT_T_DOUBLE:
		return xasprintf("%g", *(double *)o->value);
	case KV_OPT_T_SIZE: {
		uint64_t v = *(uint64_t *)o->value;
		static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
		int u = 0;
		double d = (double)v;
		while (d >= 1024 && u < 4 && (uint64_t)d % 1024 == 0) {
			d /= 1024;
			u++;
		}
		return v ? xasprintf("%g %s", d, units[u]) : xstrdup("0");
	}
	case KV_OPT_T_STRING:
	case KV_OPT_T_CHOICE: {
		const char *s = *(const char **)o->value;
		return s && *s ? xstrdup(s) : NULL;
	}
	default:
		return NULL;
	}
}

static char *arg_text(const struct kv_opt *o)
{
	if (!takes_arg(o))
		return xstrdup("");
	if (o->type == KV_OPT_T_CHOICE) {
		struct kv_buf b = KV_BUF_INIT(0);
		for (const char *const *c = o->choices; *c; c++)
			kv_buf_printf(&b, "%s%s", c == o->choices ? "" : "|", *c);
		return kv_buf_detach(&b, NULL);
	}
	return xstrdup(o->argh ? o->argh : "VALUE");
}

void kv_opt_help(FILE *out, const struct kv_cmd_info *info, const struct kv_opt *opts)
{
	fprintf(out, "usage: %s %s\n\n", info->name, info->usage ? info->usage : "[options]");
	if (info->description)
		fprintf(out, "%s\n", info->description);
	for (const struct kv_opt *o = opts; o->type != KV_OPT_T_END; o++) {
		char left[160], *arg, *def;
		int n = 0;

		if (o->flags & KV_OPT_HIDDEN)
			continue;
		if (o->type == KV_OPT_T_GROUP) {
			fprintf(out, "\n%s:\n", o->help);
			continue;
		}
		arg = arg_text(o);
		if (o->short_name)
			n = snprintf(left, sizeof(left), "  -%c, ", o->short_name);
		else
			n = snprintf(left, sizeof(left), "      ");
		if (o->long_name)
			snprintf(left + n, sizeof(left) - (size_t)n, "--%s%s%s%s",
				 o->type == KV_OPT_T_BOOL ? "[no-]" : "", o->long_name,
				 *arg ? " " : "", arg);
		else if (*arg)
			snprintf(left + n - 2, sizeof(left) - (size_t)n + 2, " %s", arg);
		def = default_text(o);
		if (strlen(left) > 30)
			fprintf(out, "%s\n%32s", left, "");
		else
			fprintf(out, "%-32s", left);
		fprintf(out, "%s", o->help ? o->help : "");
		if (def)
			fprintf(out, " [default: %s]", def);
		fputc('\n', out);
		free(arg);
		free(def);
	}
	if (info->epilog)
		fprintf(out, "\n%s\n", info->epilog);
	fprintf(out, "\n");
}

/* Takes a malloc'ed string; returns it with '|' escaped for a Markdown table cell. */
static char *md_escape(char *s)
{
	struct kv_buf b = KV_BUF_INIT(0);
	for (const char *p = s; *p; p++) {
		if (*p == '|')
			kv_buf_putc(&b, '\\');
		kv_buf_putc(&b, *p);
	}
	free(s);
	return kv_buf_detach(&b, NULL);
}

void kv_opt_markdown(FILE *out, const struct kv_cmd_info *info, const struct kv_opt *opts)
{
	fprintf(out, "### `%s %s`\n\n", info->name, info->usage ? info->usage : "[options]");
	if (info->description)
		fprintf(out, "%s\n\n", info->description);
	fprintf(out, "| option | argument | default | meaning |\n|---|---|---|---|\n");
	for (const struct kv_opt *o = opts; o->type != KV_OPT_T_END; o++) {
		char *arg, *def;
		if (o->type == KV_OPT_T_GROUP || (o->flags & KV_OPT_HIDDEN))
			continue;
		arg = md_escape(arg_text(o));
		def = default_text(o);
		fprintf(out, "| `%s%s%s%s%s` | %s | %s | %s |\n",
			o->short_name ? "-" : "", o->short_name ? (char[]){ o->short_name, 0 } : "",
			o->short_name && o->long_name ? ", " : "",
			o->long_name ? "--" : "", o->long_name ? o->long_name : "",
			*arg ? arg : "", def ? def : "", o->help ? o->help : "");
		free(arg);
		free(def);
	}
	fprintf(out, "\n");
}
