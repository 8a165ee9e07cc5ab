/* codec.c: chunk keys, CRC-32C, encodings and the blob format (codec.h). */
#include "common/util.h"
#include "offload/codec.h"

#include <math.h>
#include <openssl/evp.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define KVO_X86 1
#endif

#include "common/banned.h"

static const char *const enc_names[KVO_NENC] = { "fp32", "fp16", "bf16", "int8" };

const char *kvo_enc_name(enum kvo_enc e)
{
	return (unsigned)e < KVO_NENC ? enc_names[e] : "?";
}

int kvo_enc_parse(const char *s, enum kvo_enc *out)
{
	if (!strcmp(s, "naive")) {
		*out = KVO_ENC_FP32;
		return 0;
	}
	for (int i = 0; i < KVO_NENC; i++)
		if (!strcmp(s, enc_names[i])) {
			*out = (enum kvo_enc)i;
			return 0;
		}
	return -1;
}

size_t kvo_enc_row_bytes(enum kvo_enc e, int kv_dim)
{
	switch (e) {
	case KVO_ENC_FP32: return (size_t)kv_dim * 4;
	case KVO_ENC_FP16:
	case KVO_ENC_BF16: return (size_t)kv_dim * 2;
	case KVO_ENC_INT8: return 4 + (size_t)kv_dim;
	}
	return 0;
}

/* ---- keys ---- */

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* A field: tag byte, 8-byte length, bytes. Domain-separated and unambiguous. */
static void h_field(EVP_MD_CTX *md, uint8_t tag, const void *p, size_t n)
{
	uint8_t hdr[9];
	hdr[0] = tag;
	put_u64(hdr + 1, n);
	EVP_DigestUpdate(md, hdr, sizeof(hdr));
	if (n)
		EVP_DigestUpdate(md, p, n);
}

static void h_u64(EVP_MD_CTX *md, uint8_t tag, uint64_t v)
{
	uint8_t b[8];
	put_u64(b, v);
	h_field(md, tag, b, 8);
}

void kvo_key_seed(const struct kv_namespace *ns, enum kvo_enc enc, int chunk_size,
		  unsigned drop, struct kvo_key *out)
{
	static const char tag[] = "kvserve-offload-key-v1";
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int n = 32;
	const char *adapter = ns->adapter ? ns->adapter : "";
	const char *salt = ns->salt ? ns->salt : "";

	if (!md)
		kv_die(3, "offload: out of memory (EVP_MD_CTX_new)");
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	h_field(md, 'T', tag, sizeof(tag) - 1);
	if (!(drop & KVO_DIM_MODEL))
		h_field(md, 'M', ns->model_id, sizeof(ns->model_id));
	if (!(drop & KVO_DIM_REVISION))
		h_u64(md, 'R', ns->revision);
	if (!(drop & KVO_DIM_ADAPTER)) {
		h_field(md, 'A', adapter, strlen(adapter));
		h_u64(md, 'a', ns->adapter_seed);
	}
	if (!(drop & KVO_DIM_SALT))
		h_field(md, 'S', salt, strlen(salt));
	if (!(drop & KVO_DIM_ENCODING))
		h_u64(md, 'E', (uint64_t)enc);
	h_u64(md, 'C', (uint64_t)chunk_size);
	EVP_DigestFinal_ex(md, out->b, &n);
	EVP_MD_CTX_free(md);
}

void kvo_key_next(const struct kvo_key *prev, const int32_t *toks, int n, struct kvo_key *out)
{
	static const char tag[] = "kvserve-chunk";
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int len = 32;
	uint8_t buf[256];
	size_t fill = 0;

	if (!md)
		kv_die(3, "offload: out of memory (EVP_MD_CTX_new)");
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	h_field(md, 'T', tag, sizeof(tag) - 1);
	h_field(md, 'P', prev->b, 32);
	h_u64(md, 'N', (uint64_t)n);
	/* tokens as little-endian int32, independent of the host order */
	for (int i = 0; i < n; i++) {
		put_u32(buf + fill, (uint32_t)toks[i]);
		fill += 4;
		if (fill == sizeof(buf)) {
			EVP_DigestUpdate(md, buf, fill);
			fill = 0;
		}
	}
	if (fill)
		EVP_DigestUpdate(md, buf, fill);
	EVP_DigestFinal_ex(md, out->b, &len);
	EVP_MD_CTX_free(md);
}

void kvo_key_truncate(struct kvo_key *k, int bits)
{
	for (int i = 0; i < 32; i++) {
		int keep = bits - 8 * i;
		if (keep >= 8)
			continue;
		k->b[i] &= keep <= 0 ? 0 : (uint8_t)(0xff00u >> keep);
	}
}

void kvo_key_hex(const struct kvo_key *k, char out[65])
{
	static const char hx[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hx[k->b[i] >> 4];
		out[2 * i + 1] = hx[k->b[i] & 15];
	}
	out[64] = 0;
}

/* ---- CRC-32C ---- */

static uint32_t crc_table[256];
static bool crc_hw, crc_ready;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int j = 0; j < 8; j++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
	__atomic_store_n(&crc_ready, true, __ATOMIC_RELEASE);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2")))
static uint32_t crc_hw_run(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = crc;
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t kvo_crc32c(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;
	uint32_t c = ~crc;

	if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE))
		crc_init(); /* idempotent: racing callers compute the same table */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	if (crc_hw)
		return ~crc_hw_run(c, p, n);
#endif
	while (n--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* ---- scalar conversions ---- */

static uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t kvo_f32_to_f16(float f)
{
	uint32_t x = f2u(f);
	uint32_t sign = (x >> 16) & 0x8000u;
	int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
	uint32_t man = x & 0x7fffffu;

	if (((x >> 23) & 0xff) == 0xff) /* inf or nan */
		return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00u);
	if (exp <= 0) {
		if (exp < -10)
			return (uint16_t)sign;
		man |= 0x800000u;
		uint32_t shift = (uint32_t)(14 - exp);
		uint32_t h = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
	uint32_t h = ((uint32_t)exp << 10) | (man >> 13);
	uint32_t rem = man & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
		h++; /* may carry into the exponent: correct rounding to inf */
	return (uint16_t)(sign | h);
}

float kvo_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;

	if (exp == 0) {
		if (!man)
			return u2f(sign);
		float f = ldexpf((float)man, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		return u2f(sign | 0x7f800000u | (man << 13));
	return u2f(sign | ((exp - 15 + 127) << 23) | (man << 13));
}

uint16_t kvo_f32_to_bf16(float f)
{
	uint32_t x = f2u(f);
	if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu))
		return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
	x += 0x7fffu + ((x >> 16) & 1); /* round to nearest even */
	return (uint16_t)(x >> 16);
}

float kvo_bf16_to_f32(uint16_t h)
{
	return u2f((uint32_t)h << 16);
}

/* ---- rows ---- */

#ifdef KVO_X86
/* F16C conversions, 8 values at a time; same rounding (nearest even) as the
 * scalar code. Chosen at run time. */
static int f16c_state; /* 0 unknown, 1 yes, -1 no */

static bool have_f16c(void)
{
	int s = __atomic_load_n(&f16c_state, __ATOMIC_RELAXED);
	if (!s) {
		unsigned a, b, c = 0, d;
		s = -1;
		/* F16C (ecx 29), AVX (ecx 28), OSXSAVE (ecx 27) and the OS saving
		 * the YMM state (XCR0 bits 1, 2) */
		if (__get_cpuid(1, &a, &b, &c, &d) && (c >> 27 & 7) == 7) {
			unsigned lo, hi;
			__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
			if ((lo & 6) == 6)
				s = 1;
		}
		__atomic_store_n(&f16c_state, s, __ATOMIC_RELAXED);
	}
	return s > 0;
}

__attribute__((target("avx,f16c")))
static int f16_dec_hw(const uint8_t *in, int n, float *y)
{
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + 2 * i))));
	return i;
}

__attribute__((target("avx,f16c")))
static int f16_enc_hw(const float *x, int n, uint8_t *out)
{
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(out + 2 * i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
	return i;
}
#endif

static void enc_row(enum kvo_enc e, const float *x, int n, uint8_t *out)
{
	switch (e) {
	case KVO_ENC_FP32:
		memcpy(out, x, (size_t)n * 4); /* little-endian hosts only (x86, arm) */
		break;
	case KVO_ENC_FP16: {
		int i0 = 0;
#ifdef KVO_X86
		if (have_f16c())
			i0 = f16_enc_hw(x, n, out);
#endif
		for (int i = i0; i < n; i++) {
			uint16_t h = kvo_f32_to_f16(x[i]);
			memcpy(out + 2 * i, &h, 2);
		}
		break;
	}
	case KVO_ENC_BF16:
		for (int i = 0; i < n; i++) {
			uint16_t h = kvo_f32_to_bf16(x[i]);
			memcpy(out + 2 * i, &h, 2);
		}
		break;
	case KVO_ENC_INT8: {
		float amax = 0, scale, inv;
		for (int i = 0; i < n; i++)
			amax = fmaxf(amax, fabsf(x[i]));
		scale = amax > 0 ? amax / 127.0f : 1.0f;
		inv = 1.0f / scale;
		memcpy(out, &scale, 4);
		for (int i = 0; i < n; i++) {
			float q = roundf(x[i] * inv);
			q = q > 127 ? 127 : q < -127 ? -127 : q;
			out[4 + i] = (uint8_t)(int8_t)q;
		}
		break;
	}
	}
}

static void dec_row(enum kvo_enc e, const uint8_t *in, int n, float *y, bool lossy)
{
	switch (e) {
	case KVO_ENC_FP32:
		memcpy(y, in, (size_t)n * 4);
		break;
	case KVO_ENC_FP16: {
		int i0 = 0;
#ifdef KVO_X86
		if (have_f16c())
			i0 = f16_dec_hw(in, n, y);
#endif
		for (int i = i0; i < n; i++) {
			uint16_t h;
			memcpy(&h, in + 2 * i, 2);
			y[i] = kvo_f16_to_f32(h);
		}
		break;
	}
	case KVO_ENC_BF16:
		for (int i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, in + 2 * i, 2);
			y[i] = kvo_bf16_to_f32(h);
		}
		break;
	case KVO_ENC_INT8: {
		float scale;
		memcpy(&scale, in, 4);
		if (lossy)
			scale = 1.0f;
		for (int i = 0; i < n; i++)
			y[i] = (float)(int8_t)in[4 + i] * scale;
		return;
	}
	}
	if (lossy) /* int8 without a scale: what survives of the value is its integer part */
		for (int i = 0; i < n; i++) {
			float q = roundf(y[i]);
			y[i] = q > 127 ? 127 : q < -127 ? -127 : q;
		}
}

/* ---- blobs ---- */

size_t kvo_blob_size(enum kvo_enc e, int ntok, int n_layers, int kv_dim)
{
	return KVO_HDR_BYTES + (size_t)ntok * 4 +
	       (size_t)n_layers * 2 * (size_t)ntok * kvo_enc_row_bytes(e, kv_dim);
}

/* Header layout: magic 0, version 4, encoding 8, ntok 12, n_layers 16,
 * kv_dim 20, crc 24, reserved 28, payload_len 32, key 40..72. */
uint8_t *kvo_blob_encode(enum kvo_enc e, const struct kvo_key *key, const int32_t *toks,
			 int ntok, const struct kv_seq_view *v, int pos, size_t *len)
{
	size_t rb = kvo_enc_row_bytes(e, v->kv_dim);
	size_t plen = (size_t)v->n_layers * 2 * (size_t)ntok * rb;
	size_t total = kvo_blob_size(e, ntok, v->n_layers, v->kv_dim);
	uint8_t *b = xcalloc(1, total), *p;

	put_u32(b + 0, KVO_BLOB_MAGIC);
	put_u32(b + 4, KVO_BLOB_VERSION);
	put_u32(b + 8, (uint32_t)e);
	put_u32(b + 12, (uint32_t)ntok);
	put_u32(b + 16, (uint32_t)v->n_layers);
	put_u32(b + 20, (uint32_t)v->kv_dim);
	put_u64(b + 32, plen);
	memcpy(b + 40, key->b, 32);
	p = b + KVO_HDR_BYTES;
	for (int i = 0; i < ntok; i++)
		put_u32(p + 4 * (size_t)i, (uint32_t)toks[i]);
	p += (size_t)ntok * 4;
	for (int l = 0; l < v->n_layers; l++)
		for (int kv = 0; kv < 2; kv++)
			for (int t = 0; t < ntok; t++) {
				const float *row = kv ? v->v_row(v->ctx, l, pos + t)
						      : v->k_row(v->ctx, l, pos + t);
				enc_row(e, row, v->kv_dim, p);
				p += rb;
			}
	put_u32(b + 24, kvo_crc32c(0, b + KVO_HDR_BYTES, total - KVO_HDR_BYTES));
	*len = total;
	return b;
}

int kvo_blob_parse(const uint8_t *b, size_t len, bool check_crc, struct kvo_hdr *h,
		   const char **why)
{
	if (len < KVO_HDR_BYTES) {
		*why = "short header";
		return -1;
	}
	h->magic = get_u32(b);
	h->version = get_u32(b + 4);
	h->encoding = get_u32(b + 8);
	h->ntok = get_u32(b + 12);
	h->n_layers = get_u32(b + 16);
	h->kv_dim = get_u32(b + 20);
	h->crc = get_u32(b + 24);
	h->payload_len = get_u64(b + 32);
	memcpy(h->key.b, b + 40, 32);
	if (h->magic != KVO_BLOB_MAGIC) {
		*why = "bad magic";
		return -1;
	}
	if (h->version != KVO_BLOB_VERSION) {
		*why = "unknown version";
		return -1;
	}
	if (h->encoding >= KVO_NENC) {
		*why = "unknown encoding";
		return -1;
	}
	if (h->ntok == 0 || h->ntok > (1u << 20) || h->n_layers == 0 || h->n_layers > 4096 ||
	    h->kv_dim == 0 || h->kv_dim > (1u << 20)) {
		*why = "shape out of range";
		return -1;
	}
	if (h->payload_len != (uint64_t)h->n_layers * 2 * h->ntok *
				      kvo_enc_row_bytes(h->encoding, (int)h->kv_dim) ||
	    len != KVO_HDR_BYTES + (size_t)h->ntok * 4 + h->payload_len) {
		*why = "size mismatch";
		return -1;
	}
	if (check_crc && kvo_crc32c(0, b + KVO_HDR_BYTES, len - KVO_HDR_BYTES) != h->crc) {
		*why = "checksum mismatch";
		return -1;
	}
	return 0;
}

const uint8_t *kvo_blob_tokens(const uint8_t *blob)
{
	return blob + KVO_HDR_BYTES;
}

const uint8_t *kvo_blob_payload(const uint8_t *blob, const struct kvo_hdr *h)
{
	return blob + KVO_HDR_BYTES + (size_t)h->ntok * 4;
}

void kvo_blob_decode(const uint8_t *blob, const struct kvo_hdr *h,
		     const struct kv_seq_view *v, int pos, const struct kvo_decode_mods *m)
{
	static const struct kvo_decode_mods none;
	enum kvo_enc e = (enum kvo_enc)h->encoding;
	size_t rb = kvo_enc_row_bytes(e, (int)h->kv_dim);
	const uint8_t *p = kvo_blob_payload(blob, h);
	int ntok = (int)h->ntok;

	if (!m)
		m = &none;
	for (int l = 0; l < (int)h->n_layers; l++) {
		int dl = l + m->layer_shift;
		if (dl < 0 || dl >= v->n_layers) {
			p += 2 * (size_t)ntok * rb;
			continue;
		}
		for (int kv = 0; kv < 2; kv++) {
			bool to_v = m->swap_kv ? !kv : kv;
			for (int t = 0; t < ntok; t++, p += rb) {
				int dt = t + m->pos_shift;
				float *row;
				if (dt < 0 || dt >= ntok)
					continue;
				row = to_v ? v->v_row(v->ctx, dl, pos + dt)
					   : v->k_row(v->ctx, dl, pos + dt);
				if (m->poison)
					memset(row, 0, (size_t)v->kv_dim * sizeof(float));
				else
					dec_row(e, p, v->kv_dim, row, m->lossy);
			}
		}
	}
}
