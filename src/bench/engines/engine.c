/* Engine lifecycle: spawn in its own group, readiness, watch, stop. */
#define _GNU_SOURCE /* pipe2, posix_spawn_file_actions_addclosefrom_np */
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/clock.h"
#include "engines/engine.h"
#include "common/banned.h"

extern char **environ;

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define KV_HAVE_ADDCLOSEFROM 1
#endif

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int kvb_free_port(const char *host)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd, port = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* environ with the KEY=VALUE pairs of add replacing or adding. */
static char **make_env(char **add)
{
	size_t n = 0, na = 0, k = 0;
	char **out;

	for (char **p = environ; p && *p; p++)
		n++;
	for (char **p = add; p && *p; p++)
		na++;
	out = xcalloc(n + na + 1, sizeof(*out));
	for (char **p = environ; p && *p; p++) {
		const char *eq = strchr(*p, '=');
		size_t kl = eq ? (size_t)(eq - *p) : strlen(*p);
		bool replaced = false;
		for (char **a = add; a && *a; a++)
			if (!strncmp(*a, *p, kl) && (*a)[kl] == '=')
				replaced = true;
		if (!replaced)
			out[k++] = *p;
	}
	for (char **a = add; a && *a; a++)
		out[k++] = *a;
	out[k] = NULL;
	return out;
}

static const char *guard_exe;

void kvb_engine_set_guard(const char *self_exe)
{
	guard_exe = self_exe;
}

/* 0 when prog can be executed (searched in PATH like execvp), else an errno. */
static int program_error(const char *prog)
{
	const char *path = getenv("PATH");
	int err = ENOENT;

	if (strchr(prog, '/'))
		return access(prog, X_OK) ? errno : 0;
	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);
		char *cand = xasprintf("%.*s/%s", (int)len, len ? path : ".", prog);
		if (!access(cand, X_OK)) {
			free(cand);
			return 0;
		}
		if (errno == EACCES)
			err = EACCES;
		free(cand);
		path += len + (colon ? 1 : 0);
		if (!colon)
			break;
	}
	return err;
}

int kvb_engine_guard_exec(int argc, char **argv)
{
	int64_t ppid;

	if (argc < 2 || kv_parse_i64(argv[0], 1, INT32_MAX, &ppid) < 0) {
		kv_error("%s: expected PARENT_PID PROGRAM [ARGS...]", KVB_GUARD_CMD);
		return 127;
	}
	/* the engine dies with kvbench, even when kvbench is killed with SIGKILL */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != (pid_t)ppid)
		return 127;
	execvp(argv[1], argv + 1);
	kv_error("cannot start '%s': %s", argv[1], strerror(errno));
	return 127;
}

int kvb_engine_start(struct kvb_engine *e)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, defs;
	char **envp = NULL;
	pid_t pid;
	int rc, ret = -1;

	if (!e->argv)
		return 0; /* url: nothing to start */
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, e->log_stdout, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, e->log_stderr, O_WRONLY | O_CREAT | O_TRUNC, 0644);
#ifdef KV_HAVE_ADDCLOSEFROM
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	sigemptyset(&none);
	sigemptyset(&defs);
	sigaddset(&defs, SIGINT);
	sigaddset(&defs, SIGTERM);
	sigaddset(&defs, SIGHUP);
	sigaddset(&defs, SIGPIPE);
	sigaddset(&defs, SIGCHLD);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &defs);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	envp = make_env(e->env_add);
	if (guard_exe) {
		/* kvbench __exec-engine PPID PROGRAM ARGS...: sets PR_SET_PDEATHSIG, then execs */
		size_t n = 0;
		char ppid[24];
		char **gv;
		int err = program_error(e->argv[0]);

		if (err) {
			kv_error("engine %s: cannot start '%s': %s", e->name, e->argv[0], strerror(err));
			goto out;
		}
		while (e->argv[n])
			n++;
		snprintf(ppid, sizeof(ppid), "%d", (int)getpid());
		gv = xcalloc(n + 4, sizeof(*gv));
		gv[0] = (char *)guard_exe;
		gv[1] = (char *)KVB_GUARD_CMD;
		gv[2] = ppid;
		memcpy(gv + 3, e->argv, n * sizeof(*gv));
		rc = posix_spawn(&pid, guard_exe, &fa, &at, gv, envp);
		free(gv);
	} else {
		rc = posix_spawnp(&pid, e->argv[0], &fa, &at, e->argv, envp);
	}
	if (rc) {
		kv_error("engine %s: cannot start '%s': %s", e->name, e->argv[0], strerror(rc));
		goto out;
	}
	e->pid = pid;
	e->pgid = pid;
	e->exited = false;
	e->started_ns = kv_now_ns();
	kvb_engines_track(pid);
	ret = 0;
out:
	free(envp);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return ret;
}

bool kvb_engine_alive(struct kvb_engine *e)
{
	int st;
	pid_t r;

	if (!e->argv)
		return true; /* url: not ours to watch */
	if (e->pid <= 0)
		return false;
	r = waitpid(e->pid, &st, WNOHANG);
	if (r == e->pid) {
		e->exited = true;
		e->wstatus = st;
		e->pid = 0;
		return false;
	}
	if (r < 0 && errno == ECHILD) {
		e->pid = 0;
		return false;
	}
	return true;
}

const char *kvb_engine_exit_text(const struct kvb_engine *e)
{
	static char buf[64];
	if (!e->exited)
		return e->pid > 0 ? "running" : "not running";
	if (WIFEXITED(e->wstatus))
		snprintf(buf, sizeof(buf), "exited with status %d", WEXITSTATUS(e->wstatus));
	else if (WIFSIGNALED(e->wstatus))
		snprintf(buf, sizeof(buf), "killed by signal %d (%s)", WTERMSIG(e->wstatus),
			 strsignal(WTERMSIG(e->wstatus)));
	else
		snprintf(buf, sizeof(buf), "ended (status 0x%x)", e->wstatus);
	return buf;
}

static size_t discard(void *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

int kvb_http_probe(const char *base_url, const char *path, double timeout_s)
{
	CURL *c = curl_easy_init();
	char *url;
	long code = -1;
	long ms = (long)(timeout_s * 1000);

	if (!c)
		return -1;
	url = xasprintf("%s%s", base_url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1000L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms > 0 ? ms : 1000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE, 1L << 20);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	else
		code = -1;
	curl_easy_cleanup(c);
	free(url);
	return (int)code;
}

enum kvb_ready kvb_engine_wait_ready(struct kvb_engine *e, volatile sig_atomic_t *cancel)
{
	uint64_t deadline = kv_now_ns() + (uint64_t)(e->startup_timeout_s * 1e9);
	const char *path = e->health_path;
	long delay = 50;

	for (;;) {
		int code;
		if (cancel && *cancel)
			return KVB_READY_CANCELLED;
		if (!kvb_engine_alive(e))
			return KVB_READY_DIED;
		code = kvb_http_probe(e->base_url, path, 2.0);
		if (code == 200) {
			e->ready_ns = kv_now_ns();
			return KVB_READY;
		}
		if (code == 404 && strcmp(path, "/v1/models"))
			path = "/v1/models";
		if (kv_now_ns() >= deadline)
			return KVB_READY_TIMEOUT;
		sleep_ms(delay);
		if (delay < 500)
			delay *= 2;
	}
}

/* Reaps every exited member of the group; true once the group is empty. */
static bool group_gone(struct kvb_engine *e)
{
	int st;
	pid_t r;

	while ((r = waitpid(-e->pgid, &st, WNOHANG)) > 0) {
		if (r == e->pid) {
			e->exited = true;
			e->wstatus = st;
			e->pid = 0;
		}
	}
	if (r < 0 && errno == ECHILD)
		e->pid = 0; /* reaped elsewhere (kvb_engines_kill_all) */
	if (e->pid > 0)
		return false;
	return kill(-e->pgid, 0) < 0 && errno == ESRCH;
}

static bool wait_group(struct kvb_engine *e, double secs)
{
	uint64_t deadline = kv_now_ns() + (uint64_t)(secs * 1e9);
	for (;;) {
		if (group_gone(e))
			return true;
		if (kv_now_ns() >= deadline)
			return false;
		sleep_ms(20);
	}
}

void kvb_engine_stop(struct kvb_engine *e)
{
	if (!e->argv || e->pgid <= 0)
		return;
	if (!group_gone(e)) {
		kill(-e->pgid, SIGTERM);
		if (!wait_group(e, e->stop_grace_s)) {
			kv_warn("engine %s: still running %gs after SIGTERM, sending SIGKILL", e->name,
				e->stop_grace_s);
			kill(-e->pgid, SIGKILL);
			if (!wait_group(e, 10))
				kv_warn("engine %s: process group %d did not go away after SIGKILL",
					e->name, (int)e->pgid);
		}
	}
	kvb_engines_untrack(e->pgid);
}

char *kvb_engine_log_tail(const struct kvb_engine *e, int max_lines)
{
	const char *paths[2] = { e->log_stderr, e->log_stdout };

	for (int i = 0; i < 2; i++) {
		FILE *f;
		long size, start;
		char *buf, *p;
		size_t n;
		int lines = 0;

		if (!paths[i] || !(f = fopen(paths[i], "rb")))
			continue;
		fseek(f, 0, SEEK_END);
		size = ftell(f);
		if (size <= 0) {
			fclose(f);
			continue;
		}
		start = size > 8192 ? size - 8192 : 0;
		fseek(f, start, SEEK_SET);
		buf = xmalloc(8193);
		n = fread(buf, 1, 8192, f);
		fclose(f);
		buf[n] = '\0';
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		p = buf + n;
		while (p > buf) {
			if (p[-1] == '\n' && ++lines >= max_lines)
				break;
			p--;
		}
		p = xstrdup(p);
		free(buf);
		return p;
	}
	return xstrdup("(the engine wrote nothing)");
}
