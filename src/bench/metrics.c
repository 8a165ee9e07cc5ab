/* /metrics over HTTP; see metrics.h. */
#include "metrics.h"

#include <curl/curl.h>

#include "common/buf.h"
#include "common/util.h"
#include "common/banned.h"

static size_t on_body(char *p, size_t size, size_t nmemb, void *userp)
{
	return kv_buf_append(userp, p, size * nmemb) < 0 ? 0 : size * nmemb;
}

int kvb_metrics_fetch(const char *base_url, double timeout_s, char **text, size_t *len,
		      char **err)
{
	struct kv_buf b = KV_BUF_INIT(KVB_METRICS_MAX_BYTES);
	char errbuf[CURL_ERROR_SIZE] = "";
	size_t n = strlen(base_url);
	char *url;
	CURL *e;
	CURLcode rc;
	long code = 0;
	int ret = -1;

	*text = NULL;
	*len = 0;
	*err = NULL;
	while (n && base_url[n - 1] == '/')
		n--;
	if (n >= 3 && !memcmp(base_url + n - 3, "/v1", 3))
		n -= 3;
	url = xasprintf("%.*s/metrics", (int)n, base_url);
	e = curl_easy_init();
	if (!e) {
		*err = xstrdup("curl_easy_init failed");
		goto out;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout_s > 0 ? timeout_s * 1000.0 : 10000.0));
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_WRITE_ERROR) { /* only our cap stops the body */
		*err = xasprintf("%s: larger than %zu MiB", url, KVB_METRICS_MAX_BYTES >> 20);
	} else if (rc != CURLE_OK) {
		*err = xasprintf("%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
	} else if (code >= 400) {
		*err = xasprintf("http %ld: %s", code, url);
	} else {
		*len = b.len;
		*text = kv_buf_detach(&b, NULL);
		ret = 0;
	}
out:
	if (e)
		curl_easy_cleanup(e);
	kv_buf_release(&b);
	free(url);
	return ret;
}

int kvb_metrics_counters(const char *base_url, double timeout_s, struct kvb_cache_counters *out,
			 char **err)
{
	struct kvb_prom p;
	char *text;
	size_t len;

	memset(out, 0, sizeof(*out));
	if (kvb_metrics_fetch(base_url, timeout_s, &text, &len, err) < 0)
		return -1;
	kvb_prom_parse(text, len, &p);
	kvb_cache_counters_from_prom(&p, out);
	kvb_prom_release(&p);
	free(text);
	return 0;
}
