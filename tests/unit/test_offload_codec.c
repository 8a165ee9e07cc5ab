/* Unit tests of the offload codec: chunk keys, CRC-32C, encodings, blobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>

#include "offload_fake.h"
#include "offload/codec.h"

static void chain(const struct kv_namespace *ns, enum kvo_enc e, int cs, unsigned drop,
		  const int32_t *toks, int nch, struct kvo_key *out)
{
	struct kvo_key prev;
	kvo_key_seed(ns, e, cs, drop, &prev);
	for (int i = 0; i < nch; i++) {
		kvo_key_next(&prev, toks + i * cs, cs, &out[i]);
		prev = out[i];
	}
}

static void test_keys(void **state)
{
	struct kv_namespace ns, ns2;
	int32_t toks[64], toks2[64];
	struct kvo_key a[4], b[4];
	char hex[65];
	(void)state;
	fake_ns(&ns);
	for (int i = 0; i < 64; i++)
		toks[i] = toks2[i] = i * 7 + 3;
	chain(&ns, KVO_ENC_FP32, 16, 0, toks, 4, a);
	chain(&ns, KVO_ENC_FP32, 16, 0, toks, 4, b);
	assert_memory_equal(a, b, sizeof(a));
	/* a change in chunk 1 changes keys 1..3 but not 0 (chain) */
	toks2[20] = 999;
	chain(&ns, KVO_ENC_FP32, 16, 0, toks2, 4, b);
	assert_memory_equal(&a[0], &b[0], 32);
	for (int i = 1; i < 4; i++)
		assert_memory_not_equal(&a[i], &b[i], 32);
	/* every namespace dimension, the encoding and the chunk size are in the key */
	ns2 = ns;
	ns2.salt = "s";
	chain(&ns2, KVO_ENC_FP32, 16, 0, toks, 1, b);
	assert_memory_not_equal(&a[0], &b[0], 32);
	/* ... unless a drop-key fault leaves it out */
	chain(&ns2, KVO_ENC_FP32, 16, KVO_DIM_SALT, toks, 1, b);
	chain(&ns, KVO_ENC_FP32, 16, KVO_DIM_SALT, toks, 1, a + 1);
	assert_memory_equal(&a[1], &b[0], 32);
	chain(&ns, KVO_ENC_FP32, 16, 0, toks, 1, a);
	ns2 = ns;
	ns2.adapter = "lora1";
	chain(&ns2, KVO_ENC_FP32, 16, 0, toks, 1, b);
	assert_memory_not_equal(&a[0], &b[0], 32);
	ns2 = ns;
	ns2.adapter_seed = 5;
	chain(&ns2, KVO_ENC_FP32, 16, 0, toks, 1, b);
	assert_memory_not_equal(&a[0], &b[0], 32);
	ns2 = ns;
	ns2.revision = 2;
	chain(&ns2, KVO_ENC_FP32, 16, 0, toks, 1, b);
	assert_memory_not_equal(&a[0], &b[0], 32);
	ns2 = ns;
	ns2.model_id[31] ^= 1;
	chain(&ns2, KVO_ENC_FP32, 16, 0, toks, 1, b);
	assert_memory_not_equal(&a[0], &b[0], 32);
	chain(&ns, KVO_ENC_INT8, 16, 0, toks, 1, b);
	assert_memory_not_equal(&a[0], &b[0], 32);
	chain(&ns, KVO_ENC_FP32, 8, 0, toks, 1, b);
	assert_memory_not_equal(&a[0], &b[0], 32);
	/* length prefixes: salt "ab" + adapter "" differs from salt "" + adapter "ab" */
	ns2 = ns;
	ns2.salt = "ab";
	chain(&ns2, KVO_ENC_FP32, 16, 0, toks, 1, a);
	ns2.salt = "";
	ns2.adapter = "ab";
	chain(&ns2, KVO_ENC_FP32, 16, 0, toks, 1, b);
	assert_memory_not_equal(&a[0], &b[0], 32);
	/* truncation */
	memset(a[0].b, 0xff, 32);
	kvo_key_truncate(&a[0], 12);
	assert_int_equal(a[0].b[0], 0xff);
	assert_int_equal(a[0].b[1], 0xf0);
	assert_int_equal(a[0].b[2], 0);
	kvo_key_hex(&a[0], hex);
	assert_int_equal(strlen(hex), 64);
	assert_memory_equal(hex, "fff000", 6);
}

static void test_crc32c(void **state)
{
	uint8_t buf[1000];
	(void)state;
	/* the standard check value of CRC-32C */
	assert_int_equal(kvo_crc32c(0, "123456789", 9), 0xe3069283u);
	for (int i = 0; i < 1000; i++)
		buf[i] = (uint8_t)(i * 31);
	/* incremental equals one shot */
	assert_int_equal(kvo_crc32c(kvo_crc32c(0, buf, 333), buf + 333, 667),
			 kvo_crc32c(0, buf, 1000));
}

static void test_scalar_conv(void **state)
{
	(void)state;
	assert_int_equal(kvo_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(kvo_f32_to_f16(-2.0f), 0xc000);
	assert_int_equal(kvo_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(kvo_f32_to_f16(1e6f), 0x7c00);
	assert_true(kvo_f16_to_f32(0x3555) > 0.333f && kvo_f16_to_f32(0x3555) < 0.3334f);
	assert_true(kvo_f16_to_f32(0x0001) > 5.9e-8f && kvo_f16_to_f32(0x0001) < 6.0e-8f);
	assert_int_equal(kvo_f32_to_bf16(1.0f), 0x3f80);
	assert_true(kvo_bf16_to_f32(kvo_f32_to_bf16(3.14159f)) == 3.140625f);
	for (float x = -100; x < 100; x += 0.37f) {
		assert_true(fabsf(kvo_f16_to_f32(kvo_f32_to_f16(x)) - x) <= fabsf(x) / 1024 + 1e-7f);
		assert_true(fabsf(kvo_bf16_to_f32(kvo_f32_to_bf16(x)) - x) <= fabsf(x) / 128 + 1e-7f);
	}
}

static void test_roundtrip(void **state)
{
	static const double bound[KVO_NENC] = { 0, 3.0 / 1024, 3.0 / 128, 3.0 / 127 / 2 * 1.01 };
	struct fake_kv src, dst;
	int32_t toks[40];
	struct kvo_key key;
	(void)state;
	memset(&key, 0xab, sizeof(key));
	for (int i = 0; i < 40; i++)
		toks[i] = 1000 + i;
	fake_init(&src, 3, 24, 40);
	fake_init(&dst, 3, 24, 40);
	fake_fill(&src, toks, 40, 1);
	for (int e = 0; e < KVO_NENC; e++) {
		size_t len;
		struct kvo_hdr h;
		const char *why;
		uint8_t *b = kvo_blob_encode((enum kvo_enc)e, &key, toks + 8, 16, &src.view, 8, &len);
		assert_int_equal(len, kvo_blob_size((enum kvo_enc)e, 16, 3, 24));
		assert_int_equal(kvo_blob_parse(b, len, true, &h, &why), 0);
		assert_int_equal(h.ntok, 16);
		assert_int_equal(h.encoding, e);
		assert_memory_equal(h.key.b, key.b, 32);
		if (e == KVO_ENC_FP16) { /* vector path == scalar conversion, both ways */
			const uint8_t *pl = kvo_blob_payload(b, &h);
			for (int d = 0; d < 24; d++) {
				uint16_t want = kvo_f32_to_f16(fake_k_row(&src, 0, 8)[d]), got;
				memcpy(&got, pl + 2 * d, 2);
				assert_int_equal(got, want);
			}
		}
		fake_zero(&dst);
		kvo_blob_decode(b, &h, &dst.view, 8, NULL);
		if (e == KVO_ENC_FP16) {
			const uint8_t *pl = kvo_blob_payload(b, &h);
			for (int d = 0; d < 24; d++) {
				uint16_t hv;
				memcpy(&hv, pl + 2 * d, 2);
				assert_true(fake_k_row(&dst, 0, 8)[d] == kvo_f16_to_f32(hv));
			}
		}
		if (e == KVO_ENC_FP32) {
			assert_true(fake_equal(&src, &dst, 24) == false); /* rows 0..7 not loaded */
			for (int l = 0; l < 3; l++)
				assert_memory_equal(fake_k_row(&src, l, 8), fake_k_row(&dst, l, 8),
						    16 * 24 * 4);
		}
		/* rows outside [8, 24) untouched */
		assert_true(fake_v_row(&dst, 2, 7)[0] == 0 && fake_v_row(&dst, 2, 24)[0] == 0);
		{
			double m = 0;
			for (int l = 0; l < 3; l++)
				for (int p = 8; p < 24; p++)
					for (int d = 0; d < 24; d++) {
						m = fmax(m, fabs(fake_k_row(&src, l, p)[d] - fake_k_row(&dst, l, p)[d]));
						m = fmax(m, fabs(fake_v_row(&src, l, p)[d] - fake_v_row(&dst, l, p)[d]));
					}
			if (e == KVO_ENC_FP32)
				assert_true(m == 0);
			else
				assert_true(m > 0 && m <= bound[e]);
		}
		/* one flipped payload bit fails the checksum; a short blob fails the size */
		b[len - 5] ^= 0x10;
		assert_int_equal(kvo_blob_parse(b, len, true, &h, &why), -1);
		assert_string_equal(why, "checksum mismatch");
		assert_int_equal(kvo_blob_parse(b, len, false, &h, &why), 0);
		assert_int_equal(kvo_blob_parse(b, len - 1, false, &h, &why), -1);
		b[0] ^= 1;
		assert_int_equal(kvo_blob_parse(b, len, false, &h, &why), -1);
		assert_string_equal(why, "bad magic");
		free(b);
	}
	fake_release(&src);
	fake_release(&dst);
}

static void test_decode_mods(void **state)
{
	struct fake_kv src, dst;
	int32_t toks[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	struct kvo_key key = { { 0 } };
	struct kvo_hdr h;
	const char *why;
	size_t len;
	uint8_t *b;
	(void)state;
	fake_init(&src, 2, 4, 8);
	fake_init(&dst, 2, 4, 8);
	fake_fill(&src, toks, 8, 2);
	b = kvo_blob_encode(KVO_ENC_FP32, &key, toks, 8, &src.view, 0, &len);
	assert_int_equal(kvo_blob_parse(b, len, true, &h, &why), 0);
	{
		struct kvo_decode_mods m = { .swap_kv = true };
		kvo_blob_decode(b, &h, &dst.view, 0, &m);
		assert_memory_equal(fake_k_row(&dst, 1, 3), fake_v_row(&src, 1, 3), 16);
	}
	{
		struct kvo_decode_mods m = { .pos_shift = 1 };
		fake_zero(&dst);
		kvo_blob_decode(b, &h, &dst.view, 0, &m);
		assert_memory_equal(fake_k_row(&dst, 0, 4), fake_k_row(&src, 0, 3), 16);
		assert_true(fake_k_row(&dst, 0, 0)[0] == 0);
	}
	{
		struct kvo_decode_mods m = { .layer_shift = 1 };
		fake_zero(&dst);
		kvo_blob_decode(b, &h, &dst.view, 0, &m);
		assert_memory_equal(fake_k_row(&dst, 1, 2), fake_k_row(&src, 0, 2), 16);
		assert_true(fake_k_row(&dst, 0, 2)[0] == 0);
	}
	{
		struct kvo_decode_mods m = { .lossy = true };
		kvo_blob_decode(b, &h, &dst.view, 0, &m);
		for (int d = 0; d < 4; d++)
			assert_true(fake_v_row(&dst, 1, 5)[d] == roundf(fake_v_row(&dst, 1, 5)[d]));
		assert_true(fake_maxdiff(&src, &dst, 8) > 0.2);
	}
	{
		struct kvo_decode_mods m = { .poison = true };
		kvo_blob_decode(b, &h, &dst.view, 0, &m);
		assert_true(fake_k_row(&dst, 1, 7)[3] == 0);
	}
	free(b);
	fake_release(&src);
	fake_release(&dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_scalar_conv),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_decode_mods),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
