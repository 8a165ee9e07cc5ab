/*
 * disk.h: the local disk tier. One file per chunk, DIR/<key hex>.kvc, written
 * atomically (temp + fsync + rename) and checksummed. At startup the folder is
 * scanned and every well-formed file is indexed again (oldest mtime = least
 * recently used); leftover temp files are removed. A file whose checksum,
 * header or key fails at load is deleted and counted as corrupt.
 */
#ifndef KVO_DISK_H
#define KVO_DISK_H

#include "common/compat.h"
#include "offload/codec.h"

struct kvo_disk;
struct kvo_disk_stats {
	uint64_t used, budget, files, evictions, corrupt, io_errors;
};

/* NULL + *err when the folder cannot be created or read. */
struct kvo_disk *kvo_disk_open(const char *dir, uint64_t budget, char **err);
void kvo_disk_close(struct kvo_disk *d);
bool kvo_disk_contains(struct kvo_disk *d, const struct kvo_key *k);
/* 1 found (*blob malloc'ed, checksum verified), 0 not found, -1 corrupt/IO. */
int kvo_disk_get(struct kvo_disk *d, const struct kvo_key *k, uint8_t **blob, size_t *len);
/* 0 stored, -1 refused (larger than the budget) or I/O error. */
int kvo_disk_put(struct kvo_disk *d, const struct kvo_key *k, const uint8_t *blob, size_t len);
void kvo_disk_stats(struct kvo_disk *d, struct kvo_disk_stats *s);

#endif
