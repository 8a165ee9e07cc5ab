/*
 * kvbench engine start|status|stop SUITE.yaml -o DIR: manage a suite's
 * engines from CI scripts (PegaFlow's start-servers.sh start-all / status /
 * stop-all). The state lives in DIR/engines.json: pid, process group, port,
 * URL and the process start time, so that `stop` never signals a recycled
 * pid.
 */
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "commands.h"
#include "common/clock.h"
#include "common/opt.h"
#include "engines/engine.h"
#include "suite/run.h"
#include "suite/suite.h"
#include "common/banned.h"

static volatile sig_atomic_t interrupted;

/* Fields of /proc/PID/stat after the command: state (3), pgrp (5), starttime (22). */
static int proc_stat(pid_t pid, char *state, long *pgrp, unsigned long long *start)
{
	char path[64], buf[1024], *p;
	FILE *f;
	size_t n;
	int field = 3;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2;
	while (*p) {
		char *end;
		if (field == 3)
			*state = *p;
		else if (field == 5)
			*pgrp = strtol(p, &end, 10);
		else if (field == 22) {
			*start = strtoull(p, &end, 10);
			return 0;
		}
		p = strchr(p, ' ');
		if (!p)
			break;
		p++;
		field++;
	}
	return -1;
}

/* Is any non-zombie process in group pgid? (not our children: scan /proc) */
static bool group_alive(pid_t pgid)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	bool alive = false;

	if (!d)
		return !(kill(-pgid, 0) < 0 && errno == ESRCH);
	while (!alive && (de = readdir(d))) {
		int64_t pid;
		char st;
		long pg;
		unsigned long long start;
		if (kv_parse_i64(de->d_name, 1, INT32_MAX, &pid) < 0)
			continue;
		if (!proc_stat((pid_t)pid, &st, &pg, &start) && pg == pgid && st != 'Z')
			alive = true;
	}
	closedir(d);
	return alive;
}

/* Our engine still runs: the pid exists with the start time we recorded. */
static bool same_process(pid_t pid, unsigned long long start)
{
	char st;
	long pg;
	unsigned long long s;
	return pid > 0 && !proc_stat(pid, &st, &pg, &s) && s == start && st != 'Z';
}

static char *state_path(const char *dir)
{
	return xasprintf("%s/engines.json", dir);
}

static int do_start(struct kvb_suite *s, const char *dir, const char *filter, bool quick)
{
	struct kvb_engine *eng = NULL;
	size_t n = 0;
	char *log_dir = xasprintf("%s/logs", dir), *path = state_path(dir), *text;
	json_t *st = NULL, *arr;
	int rc = KVB_EXIT_RUNTIME;
	bool ok = true;

	if (!access(path, F_OK)) {
		json_t *old = json_load_file(path, 0, NULL);
		size_t i;
		json_t *v;
		bool running = false;
		json_array_foreach(json_object_get(old, "engines"), i, v)
			running |= same_process((pid_t)json_integer_value(json_object_get(v, "pid")),
						(unsigned long long)json_integer_value(
							json_object_get(v, "starttime")));
		json_decref(old);
		if (running) {
			kv_error("%s: engines of this folder are still running (kvbench engine stop "
				 "first)", path);
			rc = KVB_EXIT_USAGE;
			goto out;
		}
	}
	if (kvb_suite_prepare_engines(s, filter, NULL, quick, log_dir, &eng, &n) < 0) {
		rc = KVB_EXIT_USAGE;
		goto out;
	}
	if (kv_mkdir_p(log_dir, 0755) < 0) {
		kv_error("%s: cannot create: %s", log_dir, strerror(errno));
		goto out;
	}
	kvb_signals_install(&interrupted);
	for (size_t i = 0; i < n && ok; i++) {
		enum kvb_ready r;
		if (kvb_engine_start(&eng[i]) < 0) {
			ok = false;
			break;
		}
		r = kvb_engine_wait_ready(&eng[i], &interrupted);
		if (r != KVB_READY) {
			char *tail = kvb_engine_log_tail(&eng[i], 10);
			kv_error("engine %s: %s; last lines of its log:\n%s", eng[i].name,
				 r == KVB_READY_DIED ? kvb_engine_exit_text(&eng[i]) :
				 r == KVB_READY_TIMEOUT ? "not ready within startup_timeout" : "interrupted",
				 tail);
			free(tail);
			ok = false;
		} else {
			printf("%s ready at %s (pid %d)\n", eng[i].name, eng[i].base_url, (int)eng[i].pid);
		}
	}
	if (!ok) {
		for (size_t i = n; i-- > 0;)
			kvb_engine_stop(&eng[i]);
		goto out;
	}
	st = json_object();
	arr = json_array();
	json_object_set_new(st, "suite", json_string(s->file));
	for (size_t i = 0; i < n; i++) {
		struct kvb_engine *e = &eng[i];
		json_t *j = json_object();
		char c;
		long pg;
		unsigned long long start = 0;
		if (e->pid > 0)
			proc_stat(e->pid, &c, &pg, &start);
		json_object_set_new(j, "name", json_string(e->name));
		json_object_set_new(j, "preset", json_string(e->preset));
		json_object_set_new(j, "pid", json_integer(e->pid));
		json_object_set_new(j, "pgid", json_integer(e->pgid));
		json_object_set_new(j, "starttime", json_integer((json_int_t)start));
		json_object_set_new(j, "port", json_integer(e->port));
		json_object_set_new(j, "url", json_string(e->base_url));
		json_object_set_new(j, "health_path", json_string(e->health_path));
		json_object_set_new(j, "stop_grace_s", json_real(e->stop_grace_s));
		json_object_set_new(j, "stdout_log", json_string(e->log_stdout));
		json_object_set_new(j, "stderr_log", json_string(e->log_stderr));
		json_array_append_new(arr, j);
	}
	json_object_set_new(st, "engines", arr);
	text = json_dumps(st, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (kv_write_file_atomic(path, text, strlen(text)) < 0) {
		kv_error("%s: cannot write: %s", path, strerror(errno));
		free(text);
		for (size_t i = n; i-- > 0;)
			kvb_engine_stop(&eng[i]);
		goto out;
	}
	free(text);
	/* hand the engines over: they outlive this process on purpose */
	for (size_t i = 0; i < n; i++)
		kvb_engines_untrack(eng[i].pgid);
	rc = KVB_EXIT_OK;
out:
	json_decref(st);
	for (size_t i = 0; i < n; i++)
		kvb_engine_release(&eng[i]);
	free(eng);
	free(log_dir);
	free(path);
	return rc;
}

static json_t *load_state(const char *dir)
{
	char *path = state_path(dir);
	json_error_t err;
	json_t *st = json_load_file(path, 0, &err);
	if (!st)
		kv_error("%s:%d: %s", path, err.line, err.text);
	else if (!json_is_array(json_object_get(st, "engines"))) {
		kv_error("%s: no \"engines\" list", path);
		json_decref(st);
		st = NULL;
	}
	free(path);
	return st;
}

static int do_status(const char *dir)
{
	json_t *st = load_state(dir), *v;
	size_t i;
	int rc = KVB_EXIT_OK;

	if (!st)
		return KVB_EXIT_USAGE;
	printf("%-20s %-8s %-6s %-10s %-7s %s\n", "ENGINE", "PID", "PORT", "STATE", "HEALTH", "URL");
	json_array_foreach(json_object_get(st, "engines"), i, v) {
		pid_t pid = (pid_t)json_integer_value(json_object_get(v, "pid"));
		unsigned long long start = (unsigned long long)json_integer_value(
			json_object_get(v, "starttime"));
		const char *url = json_string_value(json_object_get(v, "url"));
		const char *hp = json_string_value(json_object_get(v, "health_path"));
		bool proc = pid > 0;
		bool alive = !proc || same_process(pid, start);
		int code = alive && url ? kvb_http_probe(url, hp ? hp : "/health", 2) : -1;
		char hbuf[16], pbuf[16];

		snprintf(hbuf, sizeof(hbuf), "%d", code);
		snprintf(pbuf, sizeof(pbuf), "%d", (int)pid);
		printf("%-20s %-8s %-6lld %-10s %-7s %s\n",
		       json_string_value(json_object_get(v, "name")),
		       proc ? pbuf : "-",
		       (long long)json_integer_value(json_object_get(v, "port")),
		       !proc ? "external" : alive ? "running" : "dead", code < 0 ? "-" : hbuf,
		       url ? url : "");
		if (!alive || code != 200)
			rc = KVB_EXIT_RUNTIME;
	}
	json_decref(st);
	return rc;
}

static int do_stop(const char *dir)
{
	json_t *st = load_state(dir), *v;
	size_t i, n;
	int rc = KVB_EXIT_OK;
	struct timespec ts = { 0, 20 * 1000000L };

	if (!st)
		return KVB_EXIT_USAGE;
	n = json_array_size(json_object_get(st, "engines"));
	for (i = n; i-- > 0;) {
		uint64_t deadline;
		pid_t pid, pgid;
		unsigned long long start;
		double grace;
		const char *name;

		v = json_array_get(json_object_get(st, "engines"), i);
		pid = (pid_t)json_integer_value(json_object_get(v, "pid"));
		pgid = (pid_t)json_integer_value(json_object_get(v, "pgid"));
		start = (unsigned long long)json_integer_value(json_object_get(v, "starttime"));
		grace = json_number_value(json_object_get(v, "stop_grace_s"));
		name = json_string_value(json_object_get(v, "name"));
		if (pid <= 0 || pgid <= 0)
			continue;
		/* signal the group only if its leader is still the process we started,
		   or the leader is gone and the group still has members */
		if (!same_process(pid, start) && (kill(pid, 0) == 0 || !group_alive(pgid))) {
			printf("%s: not running\n", name ? name : "?");
			continue;
		}
		kill(-pgid, SIGTERM);
		deadline = kv_now_ns() + (uint64_t)(grace * 1e9);
		while (group_alive(pgid) && kv_now_ns() < deadline)
			nanosleep(&ts, NULL);
		if (group_alive(pgid)) {
			kv_warn("engine %s: still running %gs after SIGTERM, sending SIGKILL", name, grace);
			kill(-pgid, SIGKILL);
			deadline = kv_now_ns() + 10000000000ull;
			while (group_alive(pgid) && kv_now_ns() < deadline)
				nanosleep(&ts, NULL);
		}
		if (group_alive(pgid)) {
			kv_error("engine %s: process group %d survived SIGKILL", name, (int)pgid);
			rc = KVB_EXIT_RUNTIME;
		} else {
			printf("%s: stopped\n", name ? name : "?");
		}
	}
	json_decref(st);
	return rc;
}

int cmd_engine(int argc, char **argv)
{
	const char *filter = NULL, *dir = NULL, *model = NULL;
	bool quick = false;
	struct kv_opt opts[] = {
		KV_OPT_STRING('o', "output-dir", &dir, "DIR",
			      "results folder holding engines.json and logs/ (required)"),
		KV_OPT_STRING('f', "filter", &filter, "PATTERN", "start: the engines these tests need"),
		KV_OPT_BOOL(0, "quick", &quick, "start: leave baseline engines out"),
		KV_OPT_STRING('m', "model", &model, "MODEL", "start: model of every engine"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = {
		"kvbench engine", "start|status|stop SUITE.yaml -o DIR",
		"Start a suite's engines and leave them running (state in DIR/engines.json,\n"
		"logs in DIR/logs/), show their pid, port, state and health, or stop them\n"
		"(SIGTERM to each process group, SIGKILL after stop_grace).",
		"Exit codes: 0 ok, 2 usage, 3 an engine did not start / is not healthy.",
	};
	struct kvb_suite s;
	int npos, rc;

	npos = kv_opt_parse(&info, opts, argc, argv, NULL);
	if (npos < 0)
		return KVB_EXIT_USAGE;
	if (npos < 1 || (strcmp(argv[0], "start") && strcmp(argv[0], "status") &&
			 strcmp(argv[0], "stop"))) {
		kv_error("engine: expected start, status or stop (see 'kvbench engine --help')");
		return KVB_EXIT_USAGE;
	}
	if (!dir) {
		kv_error("engine %s: -o DIR is required (the folder that holds engines.json)", argv[0]);
		return KVB_EXIT_USAGE;
	}
	if (!strcmp(argv[0], "status"))
		return do_status(dir);
	if (!strcmp(argv[0], "stop"))
		return do_stop(dir);
	if (npos != 2) {
		kv_error("engine start: expected a suite file");
		return KVB_EXIT_USAGE;
	}
	if (kvb_suite_load(&s, argv[1], model) < 0)
		return KVB_EXIT_USAGE;
	rc = do_start(&s, dir, filter, quick);
	kvb_suite_release(&s);
	return rc;
}
