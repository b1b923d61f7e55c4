/* CPU matmuls: y (n, out) = x (n, in) W^T for weights in f32, f16, bf16 or int8.
 *
 * One tile kernel per weight dtype, all built the same way: a tile of up to 4 weight rows
 * by up to 4 tokens shares every load, but each (row, token) product has its own 16-lane
 * accumulator that sees the same sequence of operations whatever tile, token block,
 * column block or thread it falls in. So a row's result never depends on the batch.
 *
 *   f32   element k to lane k mod 16, fused multiply-add in increasing k (pd_cpu_dot)
 *   f16   the same, with each weight widened to f32 first (exact): f16 weights compute
 *         exactly what the f32 matmul of the widened weights computes
 *   bf16  the activations are rounded to bf16 once (pd_cpu_act_prepare); pair (2j, 2j+1)
 *         goes to lane j mod 16, its two exact products added in the order of vdpbf16ps
 *   int8  the activations are quantized per token (max |x| / 127, round to nearest even);
 *         the integer dot is exact in any order, and y = (float)dot * w_scale * x_scale
 *
 * and the 16 lanes of a float accumulator are summed pairwise (i + i+8, +4, +2, +1),
 * four rows by four tokens at a time through pd_v16_hsum16, which adds in that order. */
#include "pd/ops.h"

#include "cpu/simd_int.h"

#include <math.h>
#include <string.h>

/* Tokens processed together against one weight tile, and output rows per tile. */
#define PD_MM_NT 4
#define PD_MM_NR 4

enum { PD_MM_F32 = 0, PD_MM_F16 = 1, PD_MM_BF16 = 2, PD_MM_I8 = 3 };

/* Accumulators parked between column blocks: float lanes or int32 lanes. */
typedef union pd_cpu_mm_state {
    pd_v16_t f;
    pd_v16i_t i;
} pd_cpu_mm_state_t;

/* Per-row and per-token scales of an int8 product (NULL for the float kinds). */
typedef struct pd_cpu_mm_scales {
    const float *w;     /* (nr) row scales */
    const float *x;     /* (nt) token scales */
    const int32_t *sum; /* (nt) sums of the quantized tokens */
} pd_cpu_mm_scales_t;

/* Write tile sums s[r][t] to y, four by four through the transposing reduction. */
__attribute__((always_inline)) static inline void pd_cpu_mm_store(pd_v16_t acc[PD_MM_NR][PD_MM_NT],
                                                                  float *y, uint32_t ldy,
                                                                  uint32_t nr, uint32_t nt,
                                                                  bool accumulate)
{
    float sums[PD_MM_NR * PD_MM_NT];
    if (nr == PD_MM_NR && nt == PD_MM_NT) {
        pd_v16_t v[PD_MM_NR * PD_MM_NT];
        for (uint32_t r = 0; r < PD_MM_NR; r++)
            for (uint32_t t = 0; t < PD_MM_NT; t++)
                v[r * PD_MM_NT + t] = acc[r][t];
        pd_v16_hsum16(v, sums);
    } else {
        for (uint32_t r = 0; r < nr; r++)
            for (uint32_t t = 0; t < nt; t++)
                sums[r * PD_MM_NT + t] = pd_v16_hsum(acc[r][t]);
    }
    for (uint32_t t = 0; t < nt; t++)
        for (uint32_t r = 0; r < nr; r++) {
            float s = sums[r * PD_MM_NT + t];
            float *dst = y + (size_t)t * ldy + r;
            *dst = accumulate ? *dst + s : s;
        }
}

/* Columns k0 .. k1 - 1 of a float-kind tile: nr rows of w (nr, in) and nt tokens of x
 * (nt, in), in the element types of `kind`. A product split into column blocks parks its
 * accumulators in state between blocks, which changes no arithmetic; only the last block
 * (k1 == in) sums the lanes and writes y. */
__attribute__((always_inline)) static inline void
pd_cpu_mm_tile(int kind, const void *w, const void *x, float *y, uint32_t in, uint32_t ldy,
               uint32_t nr, uint32_t nt, bool accumulate, uint32_t k0, uint32_t k1,
               pd_cpu_mm_state_t *state)
{
    const float *wf = w, *xf = x;
    const uint16_t *wh = w, *xh = x;
    const size_t esize = kind == PD_MM_F32 ? 4 : 2;
    const uint32_t step = kind == PD_MM_BF16 ? 32 : 16;
    pd_v16_t acc[PD_MM_NR][PD_MM_NT];
    for (uint32_t r = 0; r < nr; r++)
        for (uint32_t t = 0; t < nt; t++)
            acc[r][t] = k0 == 0 ? pd_v16_zero() : state[r * PD_MM_NT + t].f;
    uint32_t k = k0;
    for (; k + step <= k1; k += step) {
        /* Small batches do enough work per weight byte to fall behind the stream from
         * memory: ask for the weights 1 KiB ahead (hints change no result). */
        if (nt > 1)
            for (uint32_t r = 0; r < nr; r++)
                __builtin_prefetch((const char *)w + ((size_t)r * in + k) * esize + 1024, 0, 0);
        else if (kind == PD_MM_BF16 && nr > 1) /* one token: the next tile's rows, as for int8 */
            for (uint32_t r = 0; r < nr; r++)
                __builtin_prefetch((const char *)w + ((size_t)(nr + r) * in + k) * esize, 0, 0);
        if (kind == PD_MM_BF16) {
            pd_vraw_t wv[PD_MM_NR];
            for (uint32_t r = 0; r < nr; r++)
                wv[r] = pd_vraw_load(wh + (size_t)r * in + k);
            for (uint32_t t = 0; t < nt; t++) {
                pd_vraw_t xv = pd_vraw_load(xh + (size_t)t * in + k);
                for (uint32_t r = 0; r < nr; r++)
                    acc[r][t] = pd_v16_dot_bf16(acc[r][t], wv[r], xv);
            }
        } else {
            pd_v16_t wv[PD_MM_NR];
            for (uint32_t r = 0; r < nr; r++)
                wv[r] = kind == PD_MM_F32 ? pd_v16_load(wf + (size_t)r * in + k)
                                          : pd_v16_load_f16(wh + (size_t)r * in + k);
            for (uint32_t t = 0; t < nt; t++) {
                pd_v16_t xv = pd_v16_load(xf + (size_t)t * in + k);
                for (uint32_t r = 0; r < nr; r++)
                    acc[r][t] = pd_v16_fma(wv[r], xv, acc[r][t]);
            }
        }
    }
    if (k < k1) {
        const uint32_t rem = k1 - k;
        for (uint32_t t = 0; t < nt; t++) {
            if (kind == PD_MM_BF16) {
                pd_vraw_t xv = pd_vraw_load16_tail(xh + (size_t)t * in + k, rem);
                for (uint32_t r = 0; r < nr; r++)
                    acc[r][t] = pd_v16_dot_bf16(
                        acc[r][t], pd_vraw_load16_tail(wh + (size_t)r * in + k, rem), xv);
            } else {
                pd_v16_t xv = pd_v16_load_tail(xf + (size_t)t * in + k, rem);
                for (uint32_t r = 0; r < nr; r++) {
                    pd_v16_t wv = kind == PD_MM_F32
                                      ? pd_v16_load_tail(wf + (size_t)r * in + k, rem)
                                      : pd_v16_load_f16_tail(wh + (size_t)r * in + k, rem);
                    acc[r][t] = pd_v16_fma(wv, xv, acc[r][t]);
                }
            }
        }
    }
    if (k1 < in) {
        for (uint32_t r = 0; r < nr; r++)
            for (uint32_t t = 0; t < nt; t++)
                state[r * PD_MM_NT + t].f = acc[r][t];
        return;
    }
    pd_cpu_mm_store(acc, y, ldy, nr, nt, accumulate);
}

/* The int8 tile: integer lanes, exact; the scales apply once at the end. */
__attribute__((always_inline)) static inline void
pd_cpu_mm_tile_i8(const int8_t *w, const int8_t *x, float *y, uint32_t in, uint32_t ldy,
                  uint32_t nr, uint32_t nt, bool accumulate, uint32_t k0, uint32_t k1,
                  pd_cpu_mm_state_t *state, const pd_cpu_mm_scales_t *sc)
{
    pd_v16i_t acc[PD_MM_NR][PD_MM_NT];
    for (uint32_t r = 0; r < nr; r++)
        for (uint32_t t = 0; t < nt; t++)
            acc[r][t] = k0 == 0 ? pd_v16i_zero() : state[r * PD_MM_NT + t].i;
    uint32_t k = k0;
    for (; k + 64 <= k1; k += 64) {
        pd_vraw_t wv[PD_MM_NR];
        for (uint32_t r = 0; r < nr; r++) {
            /* One token in a four-row tile (the last of a batch): int8 rows are short,
             * too short for the hardware prefetcher to ramp up on four streams at once,
             * so ask for the next tile's row as this one is read. Several: the weights
             * 1 KiB ahead. A one-row tile is one stream and needs no hint. Hints change
             * no result. */
            if (nt > 1)
                __builtin_prefetch(w + (size_t)r * in + k + 1024, 0, 0);
            else if (nr > 1)
                __builtin_prefetch(w + (size_t)(nr + r) * in + k, 0, 0);
            wv[r] = pd_vraw_i8_weight(pd_vraw_load(w + (size_t)r * in + k));
        }
        for (uint32_t t = 0; t < nt; t++) {
            pd_vraw_t xv = pd_vraw_load(x + (size_t)t * in + k);
            for (uint32_t r = 0; r < nr; r++)
                acc[r][t] = pd_v16i_dot_i8(acc[r][t], wv[r], xv);
        }
    }
    if (k < k1) {
        /* Zero-filled x past the end makes the biased zero weights there add nothing. */
        const uint32_t rem = k1 - k;
        pd_vraw_t wv[PD_MM_NR];
        for (uint32_t r = 0; r < nr; r++)
            wv[r] = pd_vraw_i8_weight(pd_vraw_load8_tail(w + (size_t)r * in + k, rem));
        for (uint32_t t = 0; t < nt; t++) {
            pd_vraw_t xv = pd_vraw_load8_tail(x + (size_t)t * in + k, rem);
            for (uint32_t r = 0; r < nr; r++)
                acc[r][t] = pd_v16i_dot_i8(acc[r][t], wv[r], xv);
        }
    }
    if (k1 < in) {
        for (uint32_t r = 0; r < nr; r++)
            for (uint32_t t = 0; t < nt; t++)
                state[r * PD_MM_NT + t].i = acc[r][t];
        return;
    }
    for (uint32_t t = 0; t < nt; t++)
        for (uint32_t r = 0; r < nr; r++) {
            int64_t dot = pd_v16i_hsum(acc[r][t]) - (int64_t)PD_I8_OFFSET * sc->sum[t];
            float s = ((float)dot * sc->w[r]) * sc->x[t];
            float *dst = y + (size_t)t * ldy + r;
            *dst = accumulate ? *dst + s : s;
        }
}

typedef void (*pd_cpu_mm_tile_fn)(const void *w, const void *x, float *y, uint32_t in, uint32_t ldy,
                                  bool accumulate, uint32_t k0, uint32_t k1,
                                  pd_cpu_mm_state_t *state, const pd_cpu_mm_scales_t *sc);

/* Fixed-shape instances so that the accumulators live in registers. */
#define PD_MM_TILE_FN(KIND, NR, NT)                                                                \
    static void pd_cpu_mm_tile_##KIND##_##NR##x##NT(                                               \
        const void *w, const void *x, float *y, uint32_t in, uint32_t ldy, bool accumulate,        \
        uint32_t k0, uint32_t k1, pd_cpu_mm_state_t *state, const pd_cpu_mm_scales_t *sc)          \
    {                                                                                              \
        if (PD_MM_##KIND == PD_MM_I8)                                                              \
            pd_cpu_mm_tile_i8(w, x, y, in, ldy, NR, NT, accumulate, k0, k1, state, sc);            \
        else                                                                                       \
            pd_cpu_mm_tile(PD_MM_##KIND, w, x, y, in, ldy, NR, NT, accumulate, k0, k1, state);     \
    }
#define PD_MM_TILE_SET(KIND)                                                                       \
    PD_MM_TILE_FN(KIND, 4, 4)                                                                      \
    PD_MM_TILE_FN(KIND, 4, 3)                                                                      \
    PD_MM_TILE_FN(KIND, 4, 2)                                                                      \
    PD_MM_TILE_FN(KIND, 4, 1)                                                                      \
    PD_MM_TILE_FN(KIND, 1, 4)                                                                      \
    PD_MM_TILE_FN(KIND, 1, 3)                                                                      \
    PD_MM_TILE_FN(KIND, 1, 2)                                                                      \
    PD_MM_TILE_FN(KIND, 1, 1)
PD_MM_TILE_SET(F32)
PD_MM_TILE_SET(F16)
PD_MM_TILE_SET(BF16)
PD_MM_TILE_SET(I8)

#define PD_MM_TILE_ROW(KIND)                                                                       \
    {                                                                                              \
        {NULL, pd_cpu_mm_tile_##KIND##_1x1, pd_cpu_mm_tile_##KIND##_1x2,                           \
         pd_cpu_mm_tile_##KIND##_1x3, pd_cpu_mm_tile_##KIND##_1x4},                                \
        {                                                                                          \
            NULL, pd_cpu_mm_tile_##KIND##_4x1, pd_cpu_mm_tile_##KIND##_4x2,                        \
                pd_cpu_mm_tile_##KIND##_4x3, pd_cpu_mm_tile_##KIND##_4x4                           \
        }                                                                                          \
    }

/* [kind][four rows][tokens] */
static const pd_cpu_mm_tile_fn pd_cpu_mm_tiles[4][2][PD_MM_NT + 1] = {
    PD_MM_TILE_ROW(F32), PD_MM_TILE_ROW(F16), PD_MM_TILE_ROW(BF16), PD_MM_TILE_ROW(I8)};

/* Token block: ~512 KiB of x stays in L2 while the weight rows stream past it. Column
 * block: long rows are cut so that a 4-row weight tile stays in L1 across token tiles
 * (a multiple of every kind's step). */
#define PD_MM_X_BYTES (512u * 1024u)
#define PD_MM_K_BLOCK 512u
#define PD_MM_MAX_TB  1024u

/* The driver shared by all kinds: w (out, in) and x (n_tokens, in) in their element
 * types of esize and xsize bytes. */
static void pd_cpu_mm_run(int kind, const void *w, size_t esize, const void *x, size_t xsize,
                          float *y, uint32_t n_tokens, uint32_t out, uint32_t in,
                          uint32_t row_begin, uint32_t row_end, bool accumulate,
                          const float *w_scale, const float *x_scale, const int32_t *x_sum)
{
    uint32_t tb = (uint32_t)(PD_MM_X_BYTES / ((size_t)in * xsize));
    tb = tb < PD_MM_NT ? PD_MM_NT : tb > PD_MM_MAX_TB ? PD_MM_MAX_TB : tb - tb % PD_MM_NT;
    const uint32_t kb = in > 2 * PD_MM_K_BLOCK && n_tokens > PD_MM_NT ? PD_MM_K_BLOCK : in;
    /* state: (token tiles of a block, PD_MM_NR * PD_MM_NT) parked accumulators; a column
     * block is only used when rows are long, so blocks hold few tokens. */
    pd_cpu_mm_state_t
        state[(PD_MM_X_BYTES / (2 * PD_MM_K_BLOCK) / PD_MM_NT + 1) * PD_MM_NR * PD_MM_NT];
    for (uint32_t t0 = 0; t0 < n_tokens; t0 += tb) {
        uint32_t t1 = t0 + tb < n_tokens ? t0 + tb : n_tokens;
        uint32_t o = row_begin;
        /* One token (a decode step): one row at a time, so that the weights are read
         * as one sequential stream, which the hardware prefetcher follows at the full
         * read rate (four rows read side by side ran at about 65% of it). A row's
         * arithmetic is the same in every tile shape. */
        const bool one = n_tokens == 1;
        for (; o < row_end; o += (!one && row_end - o >= PD_MM_NR ? PD_MM_NR : 1)) {
            int four = !one && row_end - o >= PD_MM_NR;
            const char *wr = (const char *)w + (size_t)o * in * esize;
            for (uint32_t k0 = 0; k0 < in; k0 += kb) {
                uint32_t k1 = in - k0 <= kb ? in : k0 + kb;
                for (uint32_t t = t0; t < t1; t += PD_MM_NT) {
                    uint32_t nt = t1 - t < PD_MM_NT ? t1 - t : PD_MM_NT;
                    pd_cpu_mm_state_t *st =
                        state + (size_t)((t - t0) / PD_MM_NT) * PD_MM_NR * PD_MM_NT;
                    pd_cpu_mm_scales_t sc = {w_scale ? w_scale + o : NULL,
                                             x_scale ? x_scale + t : NULL,
                                             x_sum ? x_sum + t : NULL};
                    pd_cpu_mm_tiles[kind][four][nt](wr, (const char *)x + (size_t)t * in * xsize,
                                                    y + (size_t)t * out + o, in, out, accumulate,
                                                    k0, k1, st, &sc);
                }
                if (k1 == in)
                    break;
            }
        }
    }
}

void pd_cpu_matmul(const float *w, const float *x, float *y, uint32_t n_tokens, uint32_t out,
                   uint32_t in, uint32_t row_begin, uint32_t row_end, bool accumulate)
{
    pd_cpu_mm_run(PD_MM_F32, w, 4, x, 4, y, n_tokens, out, in, row_begin, row_end, accumulate, NULL,
                  NULL, NULL);
}

size_t pd_cpu_act_bytes(pd_dtype_t dtype, uint32_t n, uint32_t in)
{
    switch (dtype) {
    case PD_DTYPE_BF16:
        return (size_t)n * in * 2;
    case PD_DTYPE_I8:
        return (size_t)n * in + (size_t)n * (sizeof(float) + sizeof(int32_t));
    default:
        return 0;
    }
}

void pd_cpu_act_prepare(pd_dtype_t dtype, const float *x, uint32_t n, uint32_t in, void *buf,
                        pd_cpu_act_t *act)
{
    memset(act, 0, sizeof(*act));
    act->dtype = dtype;
    act->f = x;
    if (dtype == PD_DTYPE_BF16) {
        uint16_t *b = buf;
        size_t total = (size_t)n * in, i = 0;
#if defined(__AVX512BF16__)
        for (; i + 16 <= total; i += 16)
            _mm256_storeu_si256((__m256i *)(b + i),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
#endif
        for (; i < total; i++)
            b[i] = pd_cpu_bf16_round(x[i]);
        act->b = b;
    } else if (dtype == PD_DTYPE_I8) {
        int8_t *q = buf;
        float *scale = (float *)(q + (size_t)n * in);
        int32_t *sum = (int32_t *)(scale + n);
        for (uint32_t t = 0; t < n; t++)
            sum[t] = pd_cpu_quantize_act(x + (size_t)t * in, in, q + (size_t)t * in, &scale[t]);
        act->q = q;
        act->q_scale = scale;
        act->q_sum = sum;
    }
}

uint16_t pd_cpu_bf16_round(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x0040u);
#if defined(__AVX512BF16__)
    /* vcvtneps2bf16 flushes denormal inputs to zero; the scalar tail does the same so
     * that where an element falls does not change its bits. */
    if ((x & 0x7f800000u) == 0)
        x &= 0x80000000u;
#endif
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

int32_t pd_cpu_quantize_act(const float *x, uint32_t n, int8_t *q, float *scale_p)
{
    float amax = 0.0f;
    for (uint32_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    if (!(amax > 0.0f) || !isfinite(amax)) {
        memset(q, 0, n);
        *scale_p = amax > 0.0f ? NAN : 0.0f; /* a non-finite input makes the row NaN */
        return 0;
    }
    const float inv = 127.0f / amax;
    int32_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        float v = x[i] * inv;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        int32_t qi = v == v ? (int32_t)lrintf(v) : 0;
        q[i] = (int8_t)qi;
        sum += qi;
    }
    *scale_p = amax / 127.0f;
    return sum;
}

void pd_cpu_matmul_w(const pd_weight_t *w, const pd_cpu_act_t *x, float *y, uint32_t n_tokens,
                     uint32_t row_begin, uint32_t row_end, bool accumulate)
{
    const uint32_t out = w->rows, in = w->cols;
    switch (w->dtype) {
    case PD_DTYPE_F32:
        pd_cpu_mm_run(PD_MM_F32, w->data, 4, x->f, 4, y, n_tokens, out, in, row_begin, row_end,
                      accumulate, NULL, NULL, NULL);
        break;
    case PD_DTYPE_F16:
        pd_cpu_mm_run(PD_MM_F16, w->data, 2, x->f, 4, y, n_tokens, out, in, row_begin, row_end,
                      accumulate, NULL, NULL, NULL);
        break;
    case PD_DTYPE_BF16:
        pd_cpu_mm_run(PD_MM_BF16, w->data, 2, x->b, 2, y, n_tokens, out, in, row_begin, row_end,
                      accumulate, NULL, NULL, NULL);
        break;
    case PD_DTYPE_I8:
        pd_cpu_mm_run(PD_MM_I8, w->data, 1, x->q, 1, y, n_tokens, out, in, row_begin, row_end,
                      accumulate, w->scale, x->q_scale, x->q_sum);
        break;
    }
}
