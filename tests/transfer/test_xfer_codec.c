/* The wire codec: fp8 e4m3 conversions against the format's definition, error bounds of
 * int8 and fp8 per head, scales that stay per head, and the in-place restore a receiver
 * runs on a landed message. */
#include "pd/xfer_codec.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const pd_kv_layout_t lay = {
    .n_layers = 2, .n_kv_heads = 4, .head_dim = 32, .block_tokens = 16, .n_blocks = 8};

Test(xfer_codec, fp8_known_codes)
{
    cr_assert_eq(pd_fp8_e4m3_from_f32(0.0f), 0x00);
    cr_assert_eq(pd_fp8_e4m3_from_f32(-0.0f), 0x80);
    cr_assert_eq(pd_fp8_e4m3_from_f32(1.0f), 0x38);
    cr_assert_eq(pd_fp8_e4m3_from_f32(-2.0f), 0xC0);
    cr_assert_eq(pd_fp8_e4m3_from_f32(0.5f), 0x30);
    cr_assert_eq(pd_fp8_e4m3_from_f32(448.0f), 0x7E);
    cr_assert_eq(pd_fp8_e4m3_from_f32(1e9f), 0x7E, "saturates");
    cr_assert_eq(pd_fp8_e4m3_from_f32(-1e9f), 0xFE);
    cr_assert_eq(pd_fp8_e4m3_from_f32(ldexpf(1.0f, -9)), 0x01, "smallest subnormal");
    cr_assert_eq(pd_fp8_e4m3_from_f32(ldexpf(1.0f, -10)), 0x00, "half of it ties to even 0");
    cr_assert_eq(pd_fp8_e4m3_from_f32(ldexpf(3.0f, -10)), 0x02, "1.5 ulp ties to even 2");
    cr_assert_eq(pd_fp8_e4m3_from_f32(1.0625f), 0x38, "halfway 1 and 1.125 ties to even");
    cr_assert_eq(pd_fp8_e4m3_from_f32(1.1875f), 0x3A, "halfway 1.125 and 1.25 ties to even");
    cr_assert_eq(pd_fp8_e4m3_from_f32(ldexpf(15.0f, -10)), 0x08, "rounds up to the first normal");
    cr_assert_float_eq(pd_fp8_e4m3_to_f32(0x7E), 448.0f, 0.0f);
    cr_assert_float_eq(pd_fp8_e4m3_to_f32(0x01), ldexpf(1.0f, -9), 0.0f);
    cr_assert(isnan(pd_fp8_e4m3_to_f32(0x7F)));
    cr_assert(isnan(pd_fp8_e4m3_to_f32(0xFF)));
}

Test(xfer_codec, fp8_every_finite_code_round_trips_and_is_nearest)
{
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7F) == 0x7F)
            continue;
        float v = pd_fp8_e4m3_to_f32((uint8_t)c);
        cr_assert_eq(pd_fp8_e4m3_from_f32(v), c == 0x80 ? 0x80 : c, "code 0x%02x (%g)", c, v);
    }
    /* Any value maps to a code no farther than any other code. */
    for (int i = 0; i < 20000; i++) {
        float x = ((float)rand() / (float)RAND_MAX - 0.5f) * 900.0f;
        float got = pd_fp8_e4m3_to_f32(pd_fp8_e4m3_from_f32(x));
        for (int c = 0; c < 256; c++) {
            if ((c & 0x7F) == 0x7F)
                continue;
            cr_assert(fabsf(x - got) <= fabsf(x - pd_fp8_e4m3_to_f32((uint8_t)c)), "x %g", x);
        }
    }
}

static void fill(float *v, size_t n, unsigned seed)
{
    srand(seed);
    for (size_t i = 0; i < n; i++)
        v[i] = ((float)rand() / (float)RAND_MAX - 0.5f) * 4.0f;
}

/* Max |x| of head h's K or V values in one slice. */
static float head_amax(const float *s, size_t kv, size_t h)
{
    const size_t H = lay.n_kv_heads, D = lay.head_dim, B = lay.block_tokens;
    float a = 0;
    for (size_t t = 0; t < B; t++)
        for (size_t d = 0; d < D; d++)
            a = fmaxf(a, fabsf(s[((kv * B + t) * H + h) * D + d]));
    return a;
}

static void check_bounds(pd_xfer_codec_t codec)
{
    const size_t raw = pd_kv_block_layer_bytes(&lay), n = raw / sizeof(float);
    const size_t packed = pd_xfer_codec_block_bytes(codec, &lay);
    cr_assert_eq(packed, 2 * lay.n_kv_heads * sizeof(float) + n);
    float *src = malloc(raw), *out = malloc(raw);
    uint8_t *buf = malloc(packed);
    fill(src, n, 5);
    /* One head far larger than the rest: its scale must not spoil the others. */
    for (size_t t = 0; t < lay.block_tokens; t++)
        for (size_t d = 0; d < lay.head_dim; d++)
            src[((0 * lay.block_tokens + t) * lay.n_kv_heads + 2) * lay.head_dim + d] *= 1000.0f;
    pd_xfer_codec_pack(codec, &lay, src, buf);
    pd_xfer_codec_unpack(codec, &lay, buf, out);
    const size_t H = lay.n_kv_heads, D = lay.head_dim, B = lay.block_tokens;
    for (size_t kv = 0; kv < 2; kv++) {
        for (size_t h = 0; h < H; h++) {
            const float amax = head_amax(src, kv, h);
            for (size_t t = 0; t < B; t++) {
                for (size_t d = 0; d < D; d++) {
                    size_t i = ((kv * B + t) * H + h) * D + d;
                    float err = fabsf(out[i] - src[i]);
                    /* int8: half a step of amax / 127. fp8: 2^-4 relative for normals,
                     * half the subnormal step (2^-10 * scale) below them. */
                    float bound =
                        codec == PD_XFER_CODEC_INT8
                            ? 0.5f * amax / 127.0f * 1.0001f
                            : fmaxf(fabsf(src[i]) * 0.0625f, ldexpf(1.0f, -10) * amax / 448.0f) *
                                  1.0001f;
                    cr_assert(err <= bound, "%s kv %zu head %zu: |%g - %g| > %g",
                              pd_xfer_codec_name(codec), kv, h, out[i], src[i], bound);
                }
            }
        }
    }
    free(src);
    free(out);
    free(buf);
}

Test(xfer_codec, int8_error_is_half_a_step_per_head)
{
    check_bounds(PD_XFER_CODEC_INT8);
}

Test(xfer_codec, fp8_error_is_within_its_precision_per_head)
{
    check_bounds(PD_XFER_CODEC_FP8);
}

Test(xfer_codec, zero_head_restores_to_zero)
{
    const size_t raw = pd_kv_block_layer_bytes(&lay);
    float *src = calloc(1, raw), *out = malloc(raw);
    uint8_t *buf = malloc(pd_xfer_codec_block_bytes(PD_XFER_CODEC_FP8, &lay));
    memset(out, 0x55, raw);
    pd_xfer_codec_pack(PD_XFER_CODEC_FP8, &lay, src, buf);
    pd_xfer_codec_unpack(PD_XFER_CODEC_FP8, &lay, buf, out);
    for (size_t i = 0; i < raw / sizeof(float); i++)
        cr_assert_eq(out[i], 0.0f);
    free(src);
    free(out);
    free(buf);
}

/* A receiver lands k packed slices at the tail of their raw range and restores them in
 * place: the result equals restoring each from a separate buffer. */
static void check_in_place(pd_xfer_codec_t codec, size_t k)
{
    const size_t raw = pd_kv_block_layer_bytes(&lay), n = raw / sizeof(float);
    const size_t packed = pd_xfer_codec_block_bytes(codec, &lay);
    float *src = malloc(k * raw), *want = malloc(k * raw);
    uint8_t *buf = malloc(k * packed), *region = malloc(k * raw);
    fill(src, k * n, 9);
    for (size_t j = 0; j < k; j++) {
        pd_xfer_codec_pack(codec, &lay, src + j * n, buf + j * packed);
        pd_xfer_codec_unpack(codec, &lay, buf + j * packed, want + j * n);
    }
    memset(region, 0xAB, k * raw);
    memcpy(region + k * (raw - packed), buf, k * packed);
    pd_xfer_codec_unpack_run(codec, &lay, region, k);
    cr_assert_eq(memcmp(region, want, k * raw), 0, "%s, %zu slices", pd_xfer_codec_name(codec), k);
    free(src);
    free(want);
    free(buf);
    free(region);
}

Test(xfer_codec, in_place_restore_equals_separate_restore)
{
    for (size_t k = 1; k <= 5; k++) {
        check_in_place(PD_XFER_CODEC_INT8, k);
        check_in_place(PD_XFER_CODEC_FP8, k);
    }
}

Test(xfer_codec, names_and_unsupported_shapes)
{
    pd_xfer_codec_t c;
    cr_assert_eq(pd_xfer_codec_parse("int8", &c), PD_OK);
    cr_assert_eq(c, PD_XFER_CODEC_INT8);
    cr_assert_eq(pd_xfer_codec_parse("fp8", &c), PD_OK);
    cr_assert_eq(c, PD_XFER_CODEC_FP8);
    cr_assert_eq(pd_xfer_codec_parse("off", &c), PD_OK);
    cr_assert_eq(c, PD_XFER_CODEC_NONE);
    cr_assert_eq(pd_xfer_codec_parse("int4", &c), PD_ERR_INVALID_PARAM);
    cr_assert_str_eq(pd_xfer_codec_name(PD_XFER_CODEC_FP8), "fp8");
    pd_kv_layout_t big = lay;
    big.head_dim = 4096;
    cr_assert_eq(pd_xfer_codec_block_bytes(PD_XFER_CODEC_INT8, &big), 0);
    cr_assert_eq(pd_xfer_codec_block_bytes(PD_XFER_CODEC_NONE, &big),
                 pd_kv_block_layer_bytes(&big));
}
