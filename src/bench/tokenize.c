/*
 * tokenize.c: /tokenize client (vLLM, SGLang, llama.cpp and kvserve shapes).
 */
#include "tokenize.h"

#include <curl/curl.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/util.h"
#include "common/banned.h"

/* errors are one line: control characters (from the server's text) become spaces */
static char *one_line(char *s)
{
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return s;
}

static int parse_id(json_t *v, size_t i, int32_t *out, char **err)
{
	json_t *id = v;
	json_int_t x;

	if (json_is_object(v))
		id = json_object_get(v, "id");
	if (!json_is_integer(id)) {
		*err = xasprintf("tokens[%zu]: expected an integer or {\"id\": integer}", i);
		return -1;
	}
	x = json_integer_value(id);
	if (x < 0 || x > INT32_MAX) {
		*err = xasprintf("tokens[%zu]: id %lld out of range", i, (long long)x);
		return -1;
	}
	*out = (int32_t)x;
	return 0;
}

int kvb_tokenize_parse(const char *body, size_t len, int32_t **ids, size_t *n, char **err)
{
	json_error_t je;
	json_t *root, *toks, *count;
	int32_t *v = NULL;
	size_t m;
	int rc = -1;

	*ids = NULL;
	*n = 0;
	*err = NULL;
	root = json_loadb(body, len, 0, &je);
	if (!root) {
		*err = one_line(xasprintf("response: invalid JSON: %s", je.text));
		return -1;
	}
	if (!json_is_object(root)) {
		*err = xstrdup("response: expected a JSON object");
		goto out;
	}
	toks = json_object_get(root, "tokens");
	if (!json_is_array(toks)) {
		*err = xstrdup("response: tokens: missing or not an array");
		goto out;
	}
	m = json_array_size(toks);
	v = xmalloc(KV_MAX(m, (size_t)1) * sizeof(*v));
	for (size_t i = 0; i < m; i++)
		if (parse_id(json_array_get(toks, i), i, &v[i], err) < 0) {
			char *e = xasprintf("response: %s", *err);
			free(*err);
			*err = e;
			goto out;
		}
	count = json_object_get(root, "count");
	if (count && !json_is_null(count) &&
	    (!json_is_integer(count) || json_integer_value(count) != (json_int_t)m)) {
		*err = xasprintf("response: count: does not match the %zu tokens", m);
		goto out;
	}
	*ids = v;
	*n = m;
	v = NULL;
	rc = 0;
out:
	free(v);
	json_decref(root);
	if (*err)
		one_line(*err);
	return rc;
}

static size_t tok_write(char *p, size_t size, size_t nmemb, void *userp)
{
	struct kv_buf *b = userp;

	if (b->len + size * nmemb > KVB_TOKENIZE_MAX_RESPONSE)
		return 0;
	return kv_buf_append(b, p, size * nmemb) < 0 ? 0 : size * nmemb;
}

static char *tokenize_url(const char *base)
{
	size_t n = strlen(base);

	while (n && base[n - 1] == '/')
		n--;
	if (n >= 3 && !memcmp(base + n - 3, "/v1", 3))
		n -= 3;
	return xasprintf("%.*s/tokenize", (int)n, base);
}

int kvb_tokenize(const char *base_url, const char *text, const char *api_key_env,
		 double timeout_s, int32_t **ids, size_t *n, char **err)
{
	struct kv_buf b = KV_BUF_INIT(KVB_TOKENIZE_MAX_RESPONSE);
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *h = NULL;
	char *url = tokenize_url(base_url), *body = NULL, *perr = NULL;
	json_t *req;
	CURL *e;
	long code = 0;
	CURLcode cc;
	int rc = -1;

	*ids = NULL;
	*n = 0;
	*err = NULL;
	req = json_pack("{s:s,s:s,s:b,s:b}", "prompt", text, "content", text,
			"add_special_tokens", 0, "add_special", 0);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		*err = xasprintf("%s: the text cannot be encoded as JSON (invalid UTF-8?)", url);
		goto out_nocurl;
	}
	e = curl_easy_init();
	if (!e) {
		*err = xasprintf("%s: curl_easy_init failed", url);
		goto out_nocurl;
	}
	h = curl_slist_append(h, "Content-Type: application/json");
	if (api_key_env && getenv(api_key_env) && *getenv(api_key_env)) {
		char *a = xasprintf("Authorization: Bearer %s", getenv(api_key_env));
		h = curl_slist_append(h, a);
		free(a);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, tok_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000.0));
	cc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	if (cc == CURLE_WRITE_ERROR) {
		*err = xasprintf("%s: response longer than %zu bytes", url, KVB_TOKENIZE_MAX_RESPONSE);
	} else if (cc != CURLE_OK) {
		*err = xasprintf("%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
	} else if (code >= 400) {
		*err = one_line(xasprintf("%s: http %ld: %.200s", url, code, kv_buf_str(&b)));
	} else if (kvb_tokenize_parse(kv_buf_str(&b), b.len, ids, n, &perr) < 0) {
		*err = xasprintf("%s: %s", url, perr);
	} else {
		rc = 0;
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
out_nocurl:
	free(perr);
	free(body);
	free(url);
	kv_buf_release(&b);
	return rc;
}

int kvb_tokenize_cb(void *ctx, const char *text, int32_t **ids, size_t *n)
{
	const struct kvb_tokenize_target *t = ctx;
	char *err = NULL;

	if (kvb_tokenize(t->base_url, text, t->api_key_env, t->timeout_s, ids, n, &err) < 0) {
		kv_error("tokenize: %s", err);
		free(err);
		return -1;
	}
	return 0;
}
