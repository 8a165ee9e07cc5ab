#include "common/util.h"

#include "tokenizer.h"
#include "common/banned.h"

static const char *const specials[] = {
	"<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
};

const char *tok_special(int32_t t)
{
	if (t < 256 || t >= TOK_VOCAB)
		return NULL;
	return specials[t - 256];
}

static void push(int32_t **toks, int *n, int *cap, int32_t t)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*toks = xrealloc(*toks, (size_t)*cap * sizeof(int32_t));
	}
	(*toks)[(*n)++] = t;
}

void tok_encode(const char *text, size_t len, bool add_bos, int32_t **toks, int *n, int *cap)
{
	if (add_bos)
		push(toks, n, cap, TOK_BOS);
	for (size_t i = 0; i < len;) {
		if (text[i] == '<' && i + 1 < len && text[i + 1] == '|') {
			size_t k;
			for (k = 0; k < KV_ARRAY_SIZE(specials); k++) {
				size_t sl = strlen(specials[k]);
				if (sl <= len - i && !memcmp(text + i, specials[k], sl))
					break;
			}
			if (k < KV_ARRAY_SIZE(specials)) {
				push(toks, n, cap, 256 + (int32_t)k);
				i += strlen(specials[k]);
				continue;
			}
		}
		push(toks, n, cap, (uint8_t)text[i]);
		i++;
	}
}

/* Length of the UTF-8 sequence that starts with byte c, 0 if c cannot start one. */
static int utf8_len(uint8_t c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef)
		return 3;
	if (c >= 0xf0 && c <= 0xf4)
		return 4;
	return 0;
}

/* Whether p[0..n) (n = utf8_len(p[0])) is a valid sequence so far (k bytes known). */
static bool utf8_ok(const uint8_t *p, int k)
{
	for (int i = 1; i < k; i++)
		if ((p[i] & 0xc0) != 0x80)
			return false;
	if (k >= 2) {
		if (p[0] == 0xe0 && p[1] < 0xa0)
			return false;
		if (p[0] == 0xed && p[1] > 0x9f)
			return false;
		if (p[0] == 0xf0 && p[1] < 0x90)
			return false;
		if (p[0] == 0xf4 && p[1] > 0x8f)
			return false;
	}
	return true;
}

static const char fffd[] = "\xef\xbf\xbd";

void tok_stream_feed(struct tok_stream *s, int32_t t, struct kv_buf *out)
{
	if (t < 0 || t >= 256)
		return;
	uint8_t c = (uint8_t)t;
	for (;;) {
		if (s->npend == 0) {
			int l = utf8_len(c);
			if (l == 1) {
				kv_buf_putc(out, (char)c);
			} else if (l == 0) {
				kv_buf_puts(out, fffd);
			} else {
				s->pend[s->npend++] = c;
			}
			return;
		}
		s->pend[s->npend] = c;
		if (!utf8_ok(s->pend, s->npend + 1)) {
			/* the pending bytes are invalid; c starts afresh */
			for (int i = 0; i < s->npend; i++)
				kv_buf_puts(out, fffd);
			s->npend = 0;
			continue;
		}
		s->npend++;
		if (s->npend == utf8_len(s->pend[0])) {
			kv_buf_append(out, s->pend, (size_t)s->npend);
			s->npend = 0;
		}
		return;
	}
}

void tok_stream_flush(struct tok_stream *s, struct kv_buf *out)
{
	for (int i = 0; i < s->npend; i++)
		kv_buf_puts(out, fffd);
	s->npend = 0;
}

int tok_decode(const int32_t *toks, int n, bool skip_special, struct kv_buf *out)
{
	struct tok_stream s = { { 0 }, 0 };
	for (int i = 0; i < n; i++) {
		if (toks[i] < 0 || toks[i] >= TOK_VOCAB)
			return -1;
		if (toks[i] >= 256) {
			tok_stream_flush(&s, out);
			if (!skip_special && kv_buf_puts(out, tok_special(toks[i])) < 0)
				return -1;
			continue;
		}
		tok_stream_feed(&s, toks[i], out);
		if (out->max && out->len + 4 > out->max)
			return -1;
	}
	tok_stream_flush(&s, out);
	return 0;
}

void tok_piece(int32_t t, char *out, size_t outlen)
{
	if (t >= 256 && t < TOK_VOCAB)
		snprintf(out, outlen, "%s", tok_special(t));
	else if (t >= 0 && t < 0x80)
		snprintf(out, outlen, "%c", (char)t);
	else if (t >= 0x80 && t < 256)
		snprintf(out, outlen, "bytes:\\x%02x", (unsigned)t);
	else
		snprintf(out, outlen, "<invalid>");
}
