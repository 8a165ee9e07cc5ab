/* disk.c: the local disk tier (disk.h). */
#include "common/util.h"
#include "offload/disk.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "offload/lru.h"

#include "common/banned.h"

#define DISK_MAX_OBJECT (1ull << 31)

struct kvo_disk {
	char *dir;
	struct kvo_lru *idx; /* key -> file size, no data */
	uint64_t corrupt, io_errors; /* atomic */
};

static char *path_of(const struct kvo_disk *d, const struct kvo_key *k)
{
	char hex[65];
	kvo_key_hex(k, hex);
	return xasprintf("%s/%s.kvc", d->dir, hex);
}

static void on_evict(const struct kvo_lru_ent *e, void *ctx)
{
	char *p = path_of(ctx, &e->key);
	unlink(p);
	free(p);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

struct scan_ent {
	struct kvo_key key;
	uint64_t size;
	struct timespec mtime;
};

static int by_mtime(const void *a, const void *b)
{
	const struct scan_ent *x = a, *y = b;
	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return 0;
}

struct kvo_disk *kvo_disk_open(const char *dir, uint64_t budget, char **err)
{
	struct kvo_disk *d;
	struct scan_ent *ents = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *dh;

	if (kv_mkdir_p(dir, 0755) < 0) {
		*err = xasprintf("local_disk: cannot create '%s': %s", dir, strerror(errno));
		return NULL;
	}
	dh = opendir(dir);
	if (!dh) {
		*err = xasprintf("local_disk: cannot open '%s': %s", dir, strerror(errno));
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	d->dir = xstrdup(dir);
	d->idx = kvo_lru_new(budget, on_evict, d);
	while ((de = readdir(dh))) {
		const char *nm = de->d_name;
		size_t nl = strlen(nm);
		struct kvo_key k;
		struct stat st;
		char *p;
		bool ok = nl == 68 && !strcmp(nm + 64, ".kvc");

		if (nm[0] == '.')
			continue;
		p = xasprintf("%s/%s", dir, nm);
		if (strstr(nm, ".kvc.tmp.")) { /* a write cut short by a crash */
			unlink(p);
			free(p);
			continue;
		}
		for (int i = 0; ok && i < 32; i++) {
			int hi = hexval(nm[2 * i]), lo = hexval(nm[2 * i + 1]);
			if (hi < 0 || lo < 0)
				ok = false;
			else
				k.b[i] = (uint8_t)(hi << 4 | lo);
		}
		if (ok && stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_size >= KVO_HDR_BYTES) {
			if (n == cap) {
				cap = cap ? 2 * cap : 64;
				ents = xrealloc(ents, cap * sizeof(*ents));
			}
			ents[n].key = k;
			ents[n].size = (uint64_t)st.st_size;
			ents[n].mtime = st.st_mtim;
			n++;
		}
		free(p);
	}
	closedir(dh);
	if (n)
		qsort(ents, n, sizeof(*ents), by_mtime);
	/* oldest first, so the newest end up most recently used; files over
	 * the budget are evicted (deleted) here */
	for (size_t i = 0; i < n; i++)
		if (kvo_lru_insert(d->idx, &ents[i].key, NULL, ents[i].size) < 0) {
			char *p = path_of(d, &ents[i].key);
			unlink(p);
			free(p);
		}
	free(ents);
	return d;
}

void kvo_disk_close(struct kvo_disk *d)
{
	if (!d)
		return;
	kvo_lru_free(d->idx);
	free(d->dir);
	free(d);
}

bool kvo_disk_contains(struct kvo_disk *d, const struct kvo_key *k)
{
	return kvo_lru_contains(d->idx, k);
}

int kvo_disk_get(struct kvo_disk *d, const struct kvo_key *k, uint8_t **blob, size_t *len)
{
	struct kvo_lru_ent *e = kvo_lru_get(d->idx, k);
	struct kvo_hdr h;
	const char *why;
	char *p;
	uint8_t *b;
	size_t n = 0;

	if (!e)
		return 0;
	kvo_lru_put_ref(d->idx, e);
	p = path_of(d, k);
	b = (uint8_t *)kv_read_file(p, DISK_MAX_OBJECT, &n);
	if (!b) {
		/* evicted by another thread in between, or removed by hand */
		kvo_lru_remove(d->idx, k);
		__atomic_fetch_add(&d->io_errors, 1, __ATOMIC_RELAXED);
		free(p);
		return -1;
	}
	if (kvo_blob_parse(b, n, true, &h, &why) < 0 || memcmp(h.key.b, k->b, 32)) {
		kv_warn("local_disk: dropping %s: %s", p,
			kvo_blob_parse(b, n, true, &h, &why) < 0 ? why : "key mismatch");
		kvo_lru_remove(d->idx, k);
		unlink(p);
		__atomic_fetch_add(&d->corrupt, 1, __ATOMIC_RELAXED);
		free(b);
		free(p);
		return -1;
	}
	free(p);
	*blob = b;
	*len = n;
	return 1;
}

int kvo_disk_put(struct kvo_disk *d, const struct kvo_key *k, const uint8_t *blob, size_t len)
{
	struct kvo_lru_stats st;
	char *p;
	int rc = -1;

	kvo_lru_stats(d->idx, &st);
	if (len > st.budget)
		return -1;
	p = path_of(d, k);
	/* index first, so that eviction makes room before the file exists */
	if (kvo_lru_insert(d->idx, k, NULL, len) < 0)
		goto out;
	if (kv_write_file_atomic(p, blob, len) < 0) {
		kvo_lru_remove(d->idx, k);
		__atomic_fetch_add(&d->io_errors, 1, __ATOMIC_RELAXED);
		goto out;
	}
	rc = 0;
out:
	free(p);
	return rc;
}

void kvo_disk_stats(struct kvo_disk *d, struct kvo_disk_stats *s)
{
	struct kvo_lru_stats st;
	kvo_lru_stats(d->idx, &st);
	s->used = st.used;
	s->budget = st.budget;
	s->files = st.entries;
	s->evictions = st.evictions;
	s->corrupt = __atomic_load_n(&d->corrupt, __ATOMIC_RELAXED);
	s->io_errors = __atomic_load_n(&d->io_errors, __ATOMIC_RELAXED);
}
