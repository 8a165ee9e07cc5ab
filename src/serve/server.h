/*
 * server.h: kvserve's OpenAI-compatible HTTP API on libmicrohttpd (one
 * thread per connection; handlers submit to the engine and wait on the
 * request). Endpoints, parameters and error shapes: docs/kvserve.md.
 */
#ifndef KVS_SERVER_H
#define KVS_SERVER_H

#include "common/compat.h"

struct engine;

struct server_config {
	const char *host;        /* numeric IPv4 address to bind */
	int port;                /* 0: any free port (see server_port) */
	const char *model_name;  /* served model name */
	size_t max_body;         /* request bodies beyond this get 413 */
};

struct server;

/* Starts listening. NULL with a message in err. The engine must outlive it. */
struct server *server_start(struct engine *e, const struct server_config *cfg, char *err, size_t errlen);
int server_port(const struct server *s);
/* Stops accepting new connections (existing ones go on). */
void server_quiesce(struct server *s);
/* Stops accepting, waits for the connection threads (stop the engine first
 * so that waiting handlers return), frees. */
void server_stop(struct server *s);

/*
 * Parses a /v1/completions (chat false) or /v1/chat/completions body exactly
 * as the server does, without running it: 0 when valid, else the HTTP status
 * of the error reply (message in err). For tests and the fuzzer.
 */
int server_check_request(const char *model_name, const char *body, size_t len, bool chat,
			 char *err, size_t errlen);

#endif
