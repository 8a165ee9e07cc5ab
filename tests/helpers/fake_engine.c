/*
 * fake_engine: a misbehaving (or minimally behaving) engine for the engine
 * lifecycle tests. It is NOT an inference engine: it answers only GET /health
 * and GET /v1/models, so it may stand in for an engine only where a test is
 * about starting, watching and stopping processes.
 *
 *   fake_engine --port P [--mode healthy|exit|never-healthy] [--exit-code N]
 *               [--ready-after S] [--die-after S] [--ignore-term] [--child]
 *               [--max-life S] [--tag WORD]
 *
 *   healthy        /health 200 (after --ready-after seconds; 503 before)
 *   exit           writes an error line to stderr and exits with --exit-code
 *   never-healthy  listens, answers 503 forever
 *   --die-after S  exits with status 7 (after printing a line) S seconds in
 *   --ignore-term  ignores SIGTERM (the runner must escalate to SIGKILL)
 *   --child        forks a child that sleeps in the same process group
 *   --max-life S   exits on its own after S seconds (default 120), so that a
 *                  broken test can never leave it behind for long
 */
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/banned.h"

static double arg_d(const char *s)
{
	double d;
	if (kv_parse_double(s, &d) < 0)
		kv_die(2, "bad number '%s'", s);
	return d;
}

int main(int argc, char **argv)
{
	int64_t port = 0, code = 3;
	const char *mode = "healthy";
	double ready_after = 0, die_after = -1, max_life = 120;
	bool ignore_term = false, child = false;
	struct sockaddr_in sa;
	uint64_t t0 = kv_now_ns();
	int one = 1, lfd;

	kv_set_progname("fake_engine");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--port") && v) {
			if (kv_parse_i64(v, 1, 65535, &port) < 0)
				kv_die(2, "bad port");
			i++;
		} else if (!strcmp(a, "--mode") && v) {
			mode = v;
			i++;
		} else if (!strcmp(a, "--exit-code") && v) {
			if (kv_parse_i64(v, 0, 255, &code) < 0)
				kv_die(2, "bad exit code");
			i++;
		} else if (!strcmp(a, "--ready-after") && v) {
			ready_after = arg_d(v);
			i++;
		} else if (!strcmp(a, "--die-after") && v) {
			die_after = arg_d(v);
			i++;
		} else if (!strcmp(a, "--max-life") && v) {
			max_life = arg_d(v);
			i++;
		} else if (!strcmp(a, "--tag") && v) {
			i++; /* only there to be found by pgrep in tests */
		} else if (!strcmp(a, "--ignore-term")) {
			ignore_term = true;
		} else if (!strcmp(a, "--child")) {
			child = true;
		} else {
			kv_die(2, "unknown argument '%s'", a);
		}
	}
	printf("fake_engine: pid %d, mode %s, port %d\n", (int)getpid(), mode, (int)port);
	fflush(stdout);
	if (!strcmp(mode, "exit")) {
		fprintf(stderr, "fake_engine: fatal: cannot load model (simulated)\n");
		return (int)code;
	}
	if (ignore_term)
		signal(SIGTERM, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if (child) {
		pid_t c = fork();
		if (c == 0) {
			uint64_t end = kv_now_ns() + (uint64_t)(max_life * 1e9);
			while (kv_now_ns() < end)
				sleep(1);
			_exit(0);
		}
	}
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0)
		kv_die(1, "cannot listen on %d: %s", (int)port, strerror(errno));
	for (;;) {
		struct pollfd p = { lfd, POLLIN, 0 };
		double age = kv_ns_to_s(kv_now_ns() - t0);
		char req[8192];
		size_t len = 0;
		const char *status, *body;
		char resp[512];
		int cfd;

		if (die_after >= 0 && age >= die_after) {
			fprintf(stderr, "fake_engine: CUDA error: an illegal memory access (simulated crash)\n");
			return 7;
		}
		if (age >= max_life)
			return 0;
		if (poll(&p, 1, 50) <= 0)
			continue;
		cfd = accept(lfd, NULL, NULL);
		if (cfd < 0)
			continue;
		while (len < sizeof(req) - 1) {
			struct pollfd q = { cfd, POLLIN, 0 };
			ssize_t n;
			if (poll(&q, 1, 1000) <= 0)
				break;
			n = read(cfd, req + len, sizeof(req) - 1 - len);
			if (n <= 0)
				break;
			len += (size_t)n;
			req[len] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[len] = '\0';
		if (!strcmp(mode, "never-healthy") || age < ready_after) {
			status = "503 Service Unavailable";
			body = "{\"error\":\"loading\"}";
		} else if (!strncmp(req, "GET /health ", 12)) {
			status = "200 OK";
			body = "{}";
		} else if (!strncmp(req, "GET /v1/models ", 15)) {
			status = "200 OK";
			body = "{\"object\":\"list\",\"data\":[{\"id\":\"fake\",\"object\":\"model\"}]}";
		} else {
			status = "404 Not Found";
			body = "{\"error\":\"fake_engine answers only /health and /v1/models\"}";
		}
		snprintf(resp, sizeof(resp), "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status, strlen(body), body);
		if (write(cfd, resp, strlen(resp)) < 0)
			(void)0;
		close(cfd);
	}
}
