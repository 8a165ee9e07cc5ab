/*
 * The process-wide table of started engine process groups, and the signal
 * and exit handlers that make sure none of them outlives kvbench.
 *
 * The table is a fixed array of sig_atomic_t so that signal handlers can read
 * it; kill() is async-signal-safe.
 */
#include "common/util.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "engines/engine.h"
#include "common/banned.h"

#define MAX_GROUPS 64

static volatile sig_atomic_t groups[MAX_GROUPS];
static volatile sig_atomic_t *cancel_flag;
static volatile sig_atomic_t caught_sig;
static volatile sig_atomic_t n_int;

void kvb_engines_track(pid_t pgid)
{
	for (int i = 0; i < MAX_GROUPS; i++)
		if (!groups[i]) {
			groups[i] = pgid;
			return;
		}
	kv_warn("more than %d engines: process group %d is not tracked for emergencies",
		MAX_GROUPS, (int)pgid);
}

void kvb_engines_untrack(pid_t pgid)
{
	for (int i = 0; i < MAX_GROUPS; i++)
		if (groups[i] == pgid)
			groups[i] = 0;
}

static bool any_alive(void)
{
	bool alive = false;
	for (int i = 0; i < MAX_GROUPS; i++) {
		pid_t g = groups[i];
		if (!g)
			continue;
		while (waitpid(-g, NULL, WNOHANG) > 0)
			;
		if (kill(-g, 0) < 0 && errno == ESRCH)
			groups[i] = 0;
		else
			alive = true;
	}
	return alive;
}

void kvb_engines_kill_all(double grace_s)
{
	uint64_t deadline;
	struct timespec ts = { 0, 20 * 1000000L };

	if (!any_alive())
		return;
	for (int i = 0; i < MAX_GROUPS; i++)
		if (groups[i])
			kill(-(pid_t)groups[i], SIGTERM);
	deadline = kv_now_ns() + (uint64_t)(grace_s * 1e9);
	while (any_alive() && kv_now_ns() < deadline)
		nanosleep(&ts, NULL);
	for (int i = 0; i < MAX_GROUPS; i++)
		if (groups[i])
			kill(-(pid_t)groups[i], SIGKILL);
	deadline = kv_now_ns() + 5000000000ull;
	while (any_alive() && kv_now_ns() < deadline)
		nanosleep(&ts, NULL);
}

static void on_stop_signal(int sig)
{
	caught_sig = sig;
	if (cancel_flag)
		*cancel_flag = 1;
	if (sig == SIGINT && ++n_int >= 2) {
		/* a second ^C: no more grace */
		for (int i = 0; i < MAX_GROUPS; i++)
			if (groups[i])
				kill(-(pid_t)groups[i], SIGKILL);
	}
}

static void on_fatal_signal(int sig)
{
	for (int i = 0; i < MAX_GROUPS; i++)
		if (groups[i])
			kill(-(pid_t)groups[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void at_exit(void)
{
	kvb_engines_kill_all(5);
}

void kvb_signals_install(volatile sig_atomic_t *flag)
{
	static bool installed;
	static const int stop_sigs[] = { SIGINT, SIGTERM, SIGHUP };
	static const int fatal_sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
	struct sigaction sa;

	cancel_flag = flag;
	if (installed)
		return;
	installed = true;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop_signal;
	for (size_t i = 0; i < KV_ARRAY_SIZE(stop_sigs); i++)
		sigaction(stop_sigs[i], &sa, NULL);
	sa.sa_handler = on_fatal_signal;
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < KV_ARRAY_SIZE(fatal_sigs); i++)
		sigaction(fatal_sigs[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	atexit(at_exit);
#ifdef PR_SET_CHILD_SUBREAPER
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
#endif
}

int kvb_signals_caught(void)
{
	return caught_sig;
}
