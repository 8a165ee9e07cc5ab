/* netio.h: socket I/O with a deadline, shared by the remote client and server. */
#ifndef KVO_NETIO_H
#define KVO_NETIO_H

#include "common/compat.h"

/* Reads/writes exactly n bytes before the monotonic deadline (ns; 0 = none).
 * 0, or -1 on error, EOF or timeout. */
int kvo_read_full(int fd, void *p, size_t n, uint64_t deadline);
int kvo_write_full(int fd, const void *p, size_t n, uint64_t deadline);
/* Non-blocking connect to host:port with a deadline; the fd or -1. */
int kvo_connect(const char *host, int port, uint64_t deadline);
void kvo_put_u32(uint8_t *p, uint32_t v);
void kvo_put_u64(uint8_t *p, uint64_t v);
uint32_t kvo_get_u32(const uint8_t *p);
uint64_t kvo_get_u64(const uint8_t *p);

#endif
