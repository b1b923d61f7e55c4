/* KV compression on the wire (pd/xfer_codec.h): int8 and fp8 e4m3 with per-head scales. */
#include "pd/xfer_codec.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/* Shapes the codec packs: the scales of one slice and one head row live on the stack. */
#define PD_XFER_CODEC_MAX_HEADS 1024u
#define PD_XFER_CODEC_MAX_DIM   1024u

pd_status_t pd_xfer_codec_parse(const char *name, pd_xfer_codec_t *codec_p)
{
    if (name == NULL)
        return PD_ERR_INVALID_PARAM;
    if (strcmp(name, "off") == 0 || strcmp(name, "none") == 0)
        *codec_p = PD_XFER_CODEC_NONE;
    else if (strcmp(name, "int8") == 0)
        *codec_p = PD_XFER_CODEC_INT8;
    else if (strcmp(name, "fp8") == 0)
        *codec_p = PD_XFER_CODEC_FP8;
    else
        return PD_ERR_INVALID_PARAM;
    return PD_OK;
}

const char *pd_xfer_codec_name(pd_xfer_codec_t codec)
{
    switch (codec) {
    case PD_XFER_CODEC_NONE:
        return "off";
    case PD_XFER_CODEC_INT8:
        return "int8";
    case PD_XFER_CODEC_FP8:
        return "fp8";
    }
    return "?";
}

size_t pd_xfer_codec_block_bytes(pd_xfer_codec_t codec, const pd_kv_layout_t *l)
{
    if (codec == PD_XFER_CODEC_NONE)
        return pd_kv_block_layer_bytes(l);
    if (l->n_kv_heads == 0 || l->n_kv_heads > PD_XFER_CODEC_MAX_HEADS || l->head_dim == 0 ||
        l->head_dim > PD_XFER_CODEC_MAX_DIM || l->block_tokens == 0)
        return 0;
    const size_t n = 2 * (size_t)l->block_tokens * l->n_kv_heads * l->head_dim;
    return 2 * (size_t)l->n_kv_heads * sizeof(float) + n;
}

uint8_t pd_fp8_e4m3_from_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    const uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    const float a = fabsf(x);
    if (!(a < 464.0f)) /* 464 and above round past 448 (and NaN): saturate */
        return sign | 0x7Eu;
    if (a < 0.015625f) {
        /* Subnormals: m * 2^-9, m = 0..7; m = 8 is the smallest normal, code 0x08. */
        return sign | (uint8_t)nearbyintf(a * 512.0f);
    }
    /* Normals: round the f32 mantissa to 3 bits, ties to even, then rebias 127 -> 7. */
    uint32_t v;
    memcpy(&v, &a, sizeof(v));
    v += 0x7FFFFu + ((v >> 20) & 1u);
    const int e = (int)(v >> 23) - 127;
    const uint32_t m = (v >> 20) & 7u;
    if (e > 8 || (e == 8 && m == 7u))
        return sign | 0x7Eu;
    return sign | (uint8_t)(((uint32_t)(e + 7) << 3) | m);
}

float pd_fp8_e4m3_to_f32(uint8_t code)
{
    const uint32_t e = (code >> 3) & 15u, m = code & 7u;
    float v;
    if (e == 15u && m == 7u)
        v = NAN;
    else if (e == 0)
        v = ldexpf((float)m, -9);
    else
        v = ldexpf(1.0f + (float)m / 8.0f, (int)e - 7);
    return (code & 0x80u) ? -v : v;
}

/* Every code's value, built once: restoring is one lookup and one multiply per value. */
static float pd_fp8__lut[256];
static pthread_once_t pd_fp8__lut_once = PTHREAD_ONCE_INIT;

static void pd_fp8__lut_build(void)
{
    for (int c = 0; c < 256; c++)
        pd_fp8__lut[c] = pd_fp8_e4m3_to_f32((uint8_t)c);
}

void pd_xfer_codec_pack(pd_xfer_codec_t codec, const pd_kv_layout_t *l, const float *src,
                        uint8_t *dst)
{
    const size_t H = l->n_kv_heads, D = l->head_dim, B = l->block_tokens;
    float scales[2 * PD_XFER_CODEC_MAX_HEADS];
    uint8_t *codes = dst + 2 * H * sizeof(float); /* (2, B, H, D) */
    const float qmax = codec == PD_XFER_CODEC_INT8 ? 127.0f : 448.0f;
    for (size_t kv = 0; kv < 2; kv++) {
        for (size_t h = 0; h < H; h++) {
            float amax = 0.0f;
            for (size_t t = 0; t < B; t++) {
                const float *row = src + ((kv * B + t) * H + h) * D; /* (D) */
                for (size_t d = 0; d < D; d++)
                    amax = fmaxf(amax, fabsf(row[d]));
            }
            const float scale = amax / qmax;
            const float inv = amax > 0.0f ? qmax / amax : 0.0f;
            scales[kv * H + h] = scale;
            for (size_t t = 0; t < B; t++) {
                const size_t at = ((kv * B + t) * H + h) * D;
                const float *row = src + at;
                uint8_t *out = codes + at;
                if (codec == PD_XFER_CODEC_INT8) {
                    for (size_t d = 0; d < D; d++) {
                        float q = nearbyintf(row[d] * inv);
                        q = fminf(fmaxf(q, -127.0f), 127.0f);
                        out[d] = (uint8_t)(int8_t)q;
                    }
                } else {
                    for (size_t d = 0; d < D; d++)
                        out[d] = pd_fp8_e4m3_from_f32(row[d] * inv);
                }
            }
        }
    }
    memcpy(dst, scales, 2 * H * sizeof(float));
}

/* Restore one slice from src to dst, where src may lie inside dst's range at or after
 * dst + (raw - packed): the scales are copied out first and each head row of codes is
 * read into a local buffer before its row of values is written. */
static void pd_xfer__unpack_one(pd_xfer_codec_t codec, const pd_kv_layout_t *l, const uint8_t *src,
                                float *dst)
{
    const size_t H = l->n_kv_heads, D = l->head_dim, B = l->block_tokens;
    float scales[2 * PD_XFER_CODEC_MAX_HEADS];
    uint8_t row[PD_XFER_CODEC_MAX_DIM];
    memcpy(scales, src, 2 * H * sizeof(float));
    const uint8_t *codes = src + 2 * H * sizeof(float);
    if (codec == PD_XFER_CODEC_FP8)
        pthread_once(&pd_fp8__lut_once, pd_fp8__lut_build);
    for (size_t kv = 0; kv < 2; kv++) {
        for (size_t t = 0; t < B; t++) {
            for (size_t h = 0; h < H; h++) {
                const size_t at = ((kv * B + t) * H + h) * D;
                const float scale = scales[kv * H + h];
                memcpy(row, codes + at, D);
                float *out = dst + at; /* (D) */
                if (codec == PD_XFER_CODEC_INT8) {
                    for (size_t d = 0; d < D; d++)
                        out[d] = (float)(int8_t)row[d] * scale;
                } else {
                    for (size_t d = 0; d < D; d++)
                        out[d] = pd_fp8__lut[row[d]] * scale;
                }
            }
        }
    }
}

void pd_xfer_codec_unpack(pd_xfer_codec_t codec, const pd_kv_layout_t *l, const uint8_t *src,
                          float *dst)
{
    pd_xfer__unpack_one(codec, l, src, dst);
}

void pd_xfer_codec_unpack_run(pd_xfer_codec_t codec, const pd_kv_layout_t *l, uint8_t *base,
                              size_t n_blocks)
{
    const size_t raw = pd_kv_block_layer_bytes(l);
    const size_t packed = pd_xfer_codec_block_bytes(codec, l);
    const uint8_t *src = base + n_blocks * (raw - packed);
    for (size_t j = 0; j < n_blocks; j++)
        pd_xfer__unpack_one(codec, l, src + j * packed, (float *)(void *)(base + j * raw));
}
