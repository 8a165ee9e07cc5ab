/* netio.c: deadline-bounded socket I/O (netio.h). */
#include "common/util.h"
#include "offload/netio.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"

#include "common/banned.h"

void kvo_put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void kvo_put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t kvo_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint64_t kvo_get_u64(const uint8_t *p)
{
	return (uint64_t)kvo_get_u32(p) | (uint64_t)kvo_get_u32(p + 4) << 32;
}

/* Waits for ev on fd until the deadline. 0 ready, -1 timeout or error. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = ev };
		int ms = -1, rc;
		if (deadline) {
			uint64_t now = kv_now_ns();
			if (now >= deadline)
				return -1;
			ms = (int)((deadline - now + 999999) / 1000000);
		}
		rc = poll(&pf, 1, ms);
		if (rc > 0)
			return 0;
		if (rc == 0)
			return -1;
		if (errno != EINTR)
			return -1;
	}
}

int kvo_read_full(int fd, void *buf, size_t n, uint64_t deadline)
{
	char *p = buf;
	while (n > 0) {
		ssize_t k;
		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -1;
		k = recv(fd, p, n, MSG_DONTWAIT);
		if (k == 0)
			return -1;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int kvo_write_full(int fd, const void *buf, size_t n, uint64_t deadline)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t k;
		if (wait_fd(fd, POLLOUT, deadline) < 0)
			return -1;
		k = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* One non-blocking connect attempt. The fd or -1. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;

	if (fd < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		int e = 0;
		socklen_t el = sizeof(e);
		if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
			close(fd);
			return -1;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int kvo_connect(const char *host, int port, uint64_t deadline)
{
	struct addrinfo hints = { 0 }, *ai = NULL, *a;
	char portstr[16];
	int fd = -1;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(host, portstr, &hints, &ai) != 0 || !ai)
		return -1;
	/* every address in turn ("localhost" may be ::1 first and 127.0.0.1 next) */
	for (a = ai; a && fd < 0; a = a->ai_next)
		fd = connect_one(a, deadline);
	freeaddrinfo(ai);
	return fd;
}
