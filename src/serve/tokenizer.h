/*
 * tokenizer.h: byte-level tokenizer. Token b < 256 is the byte b; then BOS,
 * EOS and the chat specials. Special tokens are recognised in prompt text
 * by their exact spelling ("<|user|>"), as Hugging Face tokenizers do.
 *
 * Chat template (docs/kvserve.md):
 *   <|bos|> then, per message, <|ROLE|> CONTENT <|end|>, then <|assistant|>
 *   when add_generation_prompt. ROLE is system, user or assistant.
 */
#ifndef KVS_TOKENIZER_H
#define KVS_TOKENIZER_H

#include "common/compat.h"
#include "common/buf.h"

enum {
	TOK_BOS = 256,
	TOK_EOS,
	TOK_SYSTEM,
	TOK_USER,
	TOK_ASSISTANT,
	TOK_END,
	TOK_VOCAB /* 262 */
};

/* Appends the tokens of text[0..len) to *toks (grown with xrealloc). */
void tok_encode(const char *text, size_t len, bool add_bos, int32_t **toks, int *n, int *cap);
/* Spelling of special token t (>= 256), or NULL. */
const char *tok_special(int32_t t);
/*
 * Appends the text of toks: bytes as they are, specials by their spelling
 * (skipped when skip_special), bytes that do not form valid UTF-8 as U+FFFD.
 * 0, or -1 when out is full or a token is out of range.
 */
int tok_decode(const int32_t *toks, int n, bool skip_special, struct kv_buf *out);

/*
 * Incremental decoding for streams: feed one token at a time; complete
 * UTF-8 characters are appended to out, an incomplete one is held back
 * (at most 3 bytes) until it completes or turns out invalid (then U+FFFD).
 * Specials are skipped. tok_stream_flush() ends the stream.
 */
struct tok_stream {
	uint8_t pend[4];
	int npend;
};
void tok_stream_feed(struct tok_stream *s, int32_t t, struct kv_buf *out);
void tok_stream_flush(struct tok_stream *s, struct kv_buf *out);

/* The string shown for one token in logprobs: valid UTF-8 always
 * ("bytes:\xNN" for a byte that is not ASCII, as vLLM shows byte tokens). */
void tok_piece(int32_t t, char *out, size_t outlen);

#endif
