/*
 * codec.h: chunk keys and the stored-object format of the KV offload
 * connector (see docs/offload.md).
 *
 * A chunk key is SHA-256 over a hash chain: the seed hashes a domain tag,
 * every kv_namespace field (length-prefixed), the encoding and the chunk
 * size; key_i = SHA-256("kvserve-chunk" || key_{i-1} || ntok || tokens of
 * chunk i). So key_i depends on all tokens up to the chunk's end.
 *
 * A stored object ("blob") is a header, the chunk's token ids and the payload:
 * for layer l = 0..n_layers-1, for K then V, for each token a row of kv_dim
 * values in the blob's encoding. All integers little-endian.
 */
#ifndef KVO_CODEC_H
#define KVO_CODEC_H

#include "common/compat.h"
#include "kv_connector.h"

enum kvo_enc { KVO_ENC_FP32 = 0, KVO_ENC_FP16 = 1, KVO_ENC_BF16 = 2, KVO_ENC_INT8 = 3 };
#define KVO_NENC 4

const char *kvo_enc_name(enum kvo_enc e);
/* "fp32" "fp16" "bf16" "int8", and "naive" (= fp32). 0 or -1. */
int kvo_enc_parse(const char *s, enum kvo_enc *out);
/* Bytes of one encoded row of kv_dim values. int8 rows hold a float scale
 * (max |x| / 127 of the row) followed by kv_dim int8 values. */
size_t kvo_enc_row_bytes(enum kvo_enc e, int kv_dim);

struct kvo_key { uint8_t b[32]; };

/* Key dimensions that a drop-key fault can leave out of the seed. */
#define KVO_DIM_MODEL    0x01u
#define KVO_DIM_REVISION 0x02u
#define KVO_DIM_ADAPTER  0x04u
#define KVO_DIM_SALT     0x08u
#define KVO_DIM_ENCODING 0x10u

/* The seed of the chain; dims in drop are left out (0 in normal use). */
void kvo_key_seed(const struct kv_namespace *ns, enum kvo_enc enc, int chunk_size,
		  unsigned drop, struct kvo_key *out);
void kvo_key_next(const struct kvo_key *prev, const int32_t *toks, int n,
		  struct kvo_key *out);
/* Keeps the first bits bits of the key, zeroes the rest (fault truncate-key). */
void kvo_key_truncate(struct kvo_key *k, int bits);
/* 64 lowercase hex digits + NUL. */
void kvo_key_hex(const struct kvo_key *k, char out[65]);

/* CRC-32C (Castagnoli); hardware instruction when the CPU has SSE4.2. */
uint32_t kvo_crc32c(uint32_t crc, const void *p, size_t n);

#define KVO_BLOB_MAGIC 0x434f564bu /* "KVOC" */
#define KVO_BLOB_VERSION 1u
#define KVO_HDR_BYTES 72u

struct kvo_hdr {
	uint32_t magic, version, encoding;
	struct kvo_key key;
	uint32_t ntok, n_layers, kv_dim;
	uint64_t payload_len;
	uint32_t crc; /* CRC-32C of the token ids and the payload */
};

/* Total blob size for a chunk of ntok tokens. */
size_t kvo_blob_size(enum kvo_enc e, int ntok, int n_layers, int kv_dim);
/*
 * Encodes KV rows [pos, pos+ntok) of the view with their token ids into a
 * malloc'ed blob (*len bytes).
 */
uint8_t *kvo_blob_encode(enum kvo_enc e, const struct kvo_key *key, const int32_t *toks,
			 int ntok, const struct kv_seq_view *v, int pos, size_t *len);
/*
 * Parses and checks a blob: magic, version, sizes against len, encoding.
 * check_crc: also verify the checksum. 0 or -1 (*why says what failed).
 */
int kvo_blob_parse(const uint8_t *blob, size_t len, bool check_crc, struct kvo_hdr *h,
		   const char **why);
/* Token ids stored in a parsed blob (unaligned: use memcpy). */
const uint8_t *kvo_blob_tokens(const uint8_t *blob);
const uint8_t *kvo_blob_payload(const uint8_t *blob, const struct kvo_hdr *h);

/* How a blob is written into the view; the fields other than none imitate
 * layout faults (fault.h). */
struct kvo_decode_mods {
	int pos_shift;      /* row t goes to pos + t + shift (clamped to the chunk) */
	bool swap_kv;       /* K rows into V and V into K */
	int layer_shift;    /* layer l's rows into layer l + shift (in range) */
	bool poison;        /* write 0 instead of the data, report success */
	bool lossy;         /* int8 without scales: round each value, clamp ±127 */
};
/* Decodes the payload of a parsed blob into view rows [pos, pos+ntok). */
void kvo_blob_decode(const uint8_t *blob, const struct kvo_hdr *h,
		     const struct kv_seq_view *v, int pos, const struct kvo_decode_mods *m);

/* Scalar conversions (exposed for tests). */
uint16_t kvo_f32_to_f16(float f);
float kvo_f16_to_f32(uint16_t h);
uint16_t kvo_f32_to_bf16(float f);
float kvo_bf16_to_f32(uint16_t h);

#endif
