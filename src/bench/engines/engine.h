/*
 * engine.h: serving engines of a suite: turn a preset + settings into an argv
 * and environment, start it, wait until it is ready, watch it, stop it.
 *
 *   struct kvb_engine e;
 *   kvb_engine_prepare(&e, cfg, suite, "results/r1/logs", 0);   // argv, env, port
 *   kvb_engine_start(&e);                  // posix_spawn, own process group
 *   kvb_engine_wait_ready(&e, &cancel);    // polls /health (or /v1/models)
 *   ... kvb_engine_alive(&e) while tests run ...
 *   kvb_engine_stop(&e);                   // SIGTERM to the group, SIGKILL after grace
 *   kvb_engine_release(&e);
 *
 * Engines are started with posix_spawn (never a shell), in a new process
 * group whose id is the engine's pid, stdin from /dev/null, stdout and stderr
 * to LOG_DIR/NAME.stdout.log and LOG_DIR/NAME.stderr.log. Every started
 * engine is entered in a process-wide table so that kvb_engines_kill_all()
 * (called from atexit and from fatal-signal handlers) can stop it even when
 * the code that started it never gets to.
 */
#ifndef KVB_ENGINE_H
#define KVB_ENGINE_H

#include <signal.h>
#include <sys/types.h>

#include "common/compat.h"
#include "suite/suite.h"

struct kvb_engine {
	char *name;
	const struct kvb_suite_engine *cfg; /* not owned */
	char *preset;
	char **argv;          /* owned, NULL-terminated; NULL: nothing to start (url) */
	char **env_add;       /* owned "KEY=VALUE" set on top of our environment */
	char *host;
	int port;
	char *base_url;       /* "http://127.0.0.1:PORT" (no /v1) */
	char *health_path;    /* "/health" */
	char *model;          /* model name for requests; NULL: ask /v1/models */
	double startup_timeout_s;
	double stop_grace_s;
	char *log_stdout, *log_stderr; /* paths, owned */

	pid_t pid;            /* > 0 while started and not yet reaped */
	pid_t pgid;           /* process group (== first pid); kept after exit */
	bool exited;          /* the main process exited (wstatus valid) */
	bool start_failed;    /* posix_spawn failed (program not found, ...) */
	int wstatus;
	uint64_t started_ns;
	uint64_t ready_ns;
};

/*
 * Fills e from the suite's settings: preset argv, environment, port (a free
 * one when cfg->port is 0 and fixed_port is 0), log paths under log_dir.
 * Starts nothing. 0, or -1 after one error line.
 */
int kvb_engine_prepare(struct kvb_engine *e, const struct kvb_suite_engine *cfg,
		       const struct kvb_suite *s, const char *log_dir, int fixed_port);
void kvb_engine_release(struct kvb_engine *e);

/* Prints what would be run: env additions and the argv, shell-quoted. */
void kvb_engine_print(FILE *out, const struct kvb_engine *e);

/* posix_spawn in a new process group. 0, or -1 (printed: program not found...). */
int kvb_engine_start(struct kvb_engine *e);

/*
 * Guarded starts: with self_exe set (kvbench's own path), engines are
 * spawned as `self_exe __exec-engine PPID PROGRAM ARGS...`, which sets
 * PR_SET_PDEATHSIG(SIGKILL) and execs PROGRAM (same pid, same group), so an
 * engine cannot outlive a kvbench killed with SIGKILL. NULL (the default):
 * plain posix_spawnp. `kvbench run` turns it on; `kvbench engine start`
 * (engines that must outlive it) does not.
 */
#define KVB_GUARD_CMD "__exec-engine"
void kvb_engine_set_guard(const char *self_exe);
/* The __exec-engine entry point (main.c): argv = PPID PROGRAM ARGS... Returns only on error. */
int kvb_engine_guard_exec(int argc, char **argv);

enum kvb_ready {
	KVB_READY = 0,
	KVB_READY_DIED,      /* the process exited before answering */
	KVB_READY_TIMEOUT,   /* no answer within startup_timeout_s */
	KVB_READY_CANCELLED, /* *cancel became non-zero */
};
/* Polls health_path (falls back to /v1/models when it is 404) until 200. */
enum kvb_ready kvb_engine_wait_ready(struct kvb_engine *e, volatile sig_atomic_t *cancel);

/* true while the main process runs (reaps it with WNOHANG when it exited). */
bool kvb_engine_alive(struct kvb_engine *e);

/* SIGTERM to the group, wait up to stop_grace_s, then SIGKILL; reaps. */
void kvb_engine_stop(struct kvb_engine *e);

/* "exited with status 3", "killed by signal 9", "running". Static buffer. */
const char *kvb_engine_exit_text(const struct kvb_engine *e);

/* The last max_lines lines of the engine's stderr (else stdout) log, malloc'ed. */
char *kvb_engine_log_tail(const struct kvb_engine *e, int max_lines);

/* HTTP GET base_url+path: the status code, or -1 when nothing answered. */
int kvb_http_probe(const char *base_url, const char *path, double timeout_s);

/* A free TCP port on host (bind to port 0); 0 on failure. */
int kvb_free_port(const char *host);

/* Process-wide table of started process groups (for emergencies). */
void kvb_engines_track(pid_t pgid);
void kvb_engines_untrack(pid_t pgid);
/* SIGTERM every tracked group, wait up to grace_s, SIGKILL the rest. */
void kvb_engines_kill_all(double grace_s);

/*
 * Installs SIGINT/SIGTERM/SIGHUP handlers that set *flag (the second SIGINT
 * SIGKILLs every tracked group), fatal-signal handlers (SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGABRT) that SIGKILL every tracked group and re-raise, an
 * atexit handler calling kvb_engines_kill_all(), and makes this process a
 * child subreaper so that engines' own children are reaped here.
 */
void kvb_signals_install(volatile sig_atomic_t *flag);
/* The signal that set the flag (SIGINT, SIGTERM, ...), or 0. */
int kvb_signals_caught(void);

/*
 * GPU memory (bytes) used by the processes of process group pgid, from
 * nvidia-smi --query-compute-apps (spawned, bounded to timeout_s).
 * 0 with *bytes set, or -1 when there is no nvidia-smi or it failed.
 */
int kvb_gpu_memory(pid_t pgid, double timeout_s, uint64_t *bytes);

#endif
