/*
 * GPU memory per engine from nvidia-smi, without popen (no shell): spawned
 * with a pipe, output capped at 64 KiB, killed when it overruns its time.
 */
#define _GNU_SOURCE /* pipe2 */
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "engines/engine.h"
#include "common/banned.h"

extern char **environ;

/* Runs argv, returns its stdout (capped) or NULL. */
static char *capture(char *const argv[], double timeout_s)
{
	posix_spawn_file_actions_t fa;
	struct kv_buf out = KV_BUF_INIT(64 << 10);
	uint64_t deadline = kv_now_ns() + (uint64_t)(timeout_s * 1e9);
	int fds[2], st = 0;
	pid_t pid;
	bool ok = false, killed = false;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ)) {
		posix_spawn_file_actions_destroy(&fa);
		close(fds[0]);
		close(fds[1]);
		return NULL;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	for (;;) {
		struct pollfd p = { fds[0], POLLIN, 0 };
		uint64_t now = kv_now_ns();
		char buf[4096];
		ssize_t n;
		int r;

		if (now >= deadline) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		r = poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		n = read(fds[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (kv_buf_append(&out, buf, (size_t)n) < 0) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
	}
	close(fds[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	ok = !killed && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	if (!ok) {
		kv_buf_release(&out);
		return NULL;
	}
	return kv_buf_detach(&out, NULL);
}

int kvb_gpu_memory(pid_t pgid, double timeout_s, uint64_t *bytes)
{
	char *argv[] = { "nvidia-smi", "--query-compute-apps=pid,used_memory",
			 "--format=csv,noheader,nounits", NULL };
	char *text = capture(argv, timeout_s), *line, *save = NULL;
	uint64_t sum = 0;

	if (!text)
		return -1;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *comma = strchr(line, ','), *end;
		long pid;
		double mib;
		if (!comma)
			continue;
		*comma = '\0';
		pid = strtol(line, &end, 10);
		if (end == line || pid <= 0)
			continue;
		mib = strtod(comma + 1, &end);
		if (end == comma + 1)
			continue;
		if (getpgid((pid_t)pid) == pgid)
			sum += (uint64_t)(mib * 1024 * 1024);
	}
	free(text);
	*bytes = sum;
	return 0;
}
