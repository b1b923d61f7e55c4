/* The 16-lane accumulator behind the canonical dot product (see pd/ops.h): one AVX-512
 * register, two AVX2 registers, or sixteen floats, all with the same lane semantics and
 * the same horizontal sum, so every build and every tile shape reduces in one order. */
#ifndef PD_CPU_SIMD_INT_H
#define PD_CPU_SIMD_INT_H

#include <math.h>
#include <stdint.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>

/* The sum of the 8 lanes of s8: both 16-lane vectors end their sums here. */
static inline float pd_v8_hsum_(__m256 s8)
{
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}
#endif

#if defined(__AVX512F__)

#define PD_SIMD_NAME "avx512"
typedef __m512 pd_v16_t;

static inline pd_v16_t pd_v16_zero(void)
{
    return _mm512_setzero_ps();
}

/* Load 16 floats from p (16). */
static inline pd_v16_t pd_v16_load(const float *p)
{
    return _mm512_loadu_ps(p);
}

/* Load rem < 16 floats from p (rem) into lanes 0 .. rem-1, zero elsewhere. */
static inline pd_v16_t pd_v16_load_tail(const float *p, uint32_t rem)
{
    return _mm512_maskz_loadu_ps((__mmask16)((1u << rem) - 1u), p);
}

static inline pd_v16_t pd_v16_fma(pd_v16_t a, pd_v16_t b, pd_v16_t c)
{
    return _mm512_fmadd_ps(a, b, c);
}

static inline pd_v16_t pd_v16_set1(float v)
{
    return _mm512_set1_ps(v);
}

/* Store 16 floats to p (16). */
static inline void pd_v16_store(float *p, pd_v16_t v)
{
    _mm512_storeu_ps(p, v);
}

static inline float pd_v16_hsum(pd_v16_t v)
{
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return pd_v8_hsum_(_mm256_add_ps(lo, hi));
}

/* out[i] = sum of the lanes of v[i] for 16 vectors, by a transposing tree: the sum of one
 * vector never mixes with another's, so it does not depend on the other 15. */
static inline void pd_v16_hsum16(const pd_v16_t *v, float *out)
{
    __m512 s[8], t[4], u[2];
    for (int i = 0; i < 8; i++)
        s[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * i], s[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(s[2 * i], s[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)
        u[i] = _mm512_add_ps(_mm512_unpacklo_ps(t[2 * i], t[2 * i + 1]),
                             _mm512_unpackhi_ps(t[2 * i], t[2 * i + 1]));
    __m512 r =
        _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x44), _mm512_shuffle_ps(u[0], u[1], 0xEE));
    /* lane 4k + m of r holds vector 4m + k */
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(idx, r));
}

#elif defined(__AVX2__) && defined(__FMA__)

#define PD_SIMD_NAME "avx2"
typedef struct pd_v16 {
    __m256 lo; /* lanes 0..7 */
    __m256 hi; /* lanes 8..15 */
} pd_v16_t;

static inline pd_v16_t pd_v16_zero(void)
{
    pd_v16_t v = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    return v;
}

static inline pd_v16_t pd_v16_load(const float *p)
{
    pd_v16_t v = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
    return v;
}

static inline __m256i pd_v8_mask_(int32_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

static inline pd_v16_t pd_v16_load_tail(const float *p, uint32_t rem)
{
    pd_v16_t v;
    v.lo = _mm256_maskload_ps(p, pd_v8_mask_((int32_t)rem));
    v.hi = rem > 8 ? _mm256_maskload_ps(p + 8, pd_v8_mask_((int32_t)rem - 8)) : _mm256_setzero_ps();
    return v;
}

static inline pd_v16_t pd_v16_fma(pd_v16_t a, pd_v16_t b, pd_v16_t c)
{
    pd_v16_t v = {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
    return v;
}

static inline pd_v16_t pd_v16_set1(float x)
{
    pd_v16_t v = {_mm256_set1_ps(x), _mm256_set1_ps(x)};
    return v;
}

static inline void pd_v16_store(float *p, pd_v16_t v)
{
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
}

static inline float pd_v16_hsum(pd_v16_t v)
{
    return pd_v8_hsum_(_mm256_add_ps(v.lo, v.hi));
}

/* out[i] = sum of the lanes of v[i] for 16 vectors. */
static inline void pd_v16_hsum16(const pd_v16_t *v, float *out)
{
    for (int i = 0; i < 16; i++)
        out[i] = pd_v16_hsum(v[i]);
}

#else

#define PD_SIMD_NAME "scalar"
typedef struct pd_v16 {
    float l[16];
} pd_v16_t;

static inline pd_v16_t pd_v16_zero(void)
{
    pd_v16_t v = {{0}};
    return v;
}

static inline pd_v16_t pd_v16_load(const float *p)
{
    pd_v16_t v;
    for (int i = 0; i < 16; i++)
        v.l[i] = p[i];
    return v;
}

static inline pd_v16_t pd_v16_load_tail(const float *p, uint32_t rem)
{
    pd_v16_t v = {{0}};
    for (uint32_t i = 0; i < rem; i++)
        v.l[i] = p[i];
    return v;
}

static inline pd_v16_t pd_v16_fma(pd_v16_t a, pd_v16_t b, pd_v16_t c)
{
    for (int i = 0; i < 16; i++)
        c.l[i] = fmaf(a.l[i], b.l[i], c.l[i]);
    return c;
}

static inline pd_v16_t pd_v16_set1(float x)
{
    pd_v16_t v;
    for (int i = 0; i < 16; i++)
        v.l[i] = x;
    return v;
}

static inline void pd_v16_store(float *p, pd_v16_t v)
{
    for (int i = 0; i < 16; i++)
        p[i] = v.l[i];
}

static inline float pd_v16_hsum(pd_v16_t v)
{
    float s8[8], s4[4], s2[2];
    for (int i = 0; i < 8; i++)
        s8[i] = v.l[i] + v.l[i + 8];
    for (int i = 0; i < 4; i++)
        s4[i] = s8[i] + s8[i + 4];
    for (int i = 0; i < 2; i++)
        s2[i] = s4[i] + s4[i + 2];
    return s2[0] + s2[1];
}

/* out[i] = sum of the lanes of v[i] for 16 vectors. */
static inline void pd_v16_hsum16(const pd_v16_t *v, float *out)
{
    for (int i = 0; i < 16; i++)
        out[i] = pd_v16_hsum(v[i]);
}

#endif

/* Raw 64-byte vectors for the bf16 and int8 weights, and their dot products.
 *
 * bf16: pd_v16_dot_bf16(acc, a, b) takes 32 bf16 of a and b; lane i adds the products of
 * elements 2i + 1 and then 2i, each rounded to f32 (the products themselves are exact):
 * the semantics of vdpbf16ps, which the AVX512-BF16 build uses and every other build
 * reproduces with two fused multiply-adds.
 *
 * int8: pd_v16i_dot_i8(acc, w, x) adds products of 64 signed bytes into 16 int32 lanes.
 * With VNNI (vpdpbusd multiplies unsigned by signed bytes) w is offset by 128 and the sum
 * carries an extra 128 * sum(x), which PD_I8_OFFSET tells the caller to subtract; the
 * integer result is exact either way, so every build gives the same bits. */
#if defined(__AVX512F__) && defined(__AVX512BW__)

#define PD_SIMD_RAW512 1
typedef __m512i pd_vraw_t;
typedef __m512i pd_v16i_t;

static inline pd_vraw_t pd_vraw_load(const void *p)
{
    return _mm512_loadu_si512(p);
}

/* rem < 32 16-bit elements, zero above. */
static inline pd_vraw_t pd_vraw_load16_tail(const uint16_t *p, uint32_t rem)
{
    return _mm512_maskz_loadu_epi16((__mmask32)((1u << rem) - 1u), p);
}

/* rem < 64 bytes, zero above. */
static inline pd_vraw_t pd_vraw_load8_tail(const int8_t *p, uint32_t rem)
{
    return _mm512_maskz_loadu_epi8((__mmask64)((1ull << rem) - 1ull), p);
}

static inline pd_v16_t pd_v16_dot_bf16(pd_v16_t acc, pd_vraw_t a, pd_vraw_t b)
{
#if defined(__AVX512BF16__)
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
#else
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(a, hi)),
                          _mm512_castsi512_ps(_mm512_and_si512(b, hi)), acc);
    return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(a, 16)),
                           _mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), acc);
#endif
}

/* 16 f16 at p widened to f32 (exact). */
static inline pd_v16_t pd_v16_load_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline pd_v16_t pd_v16_load_f16_tail(const uint16_t *p, uint32_t rem)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)((1u << rem) - 1u), p));
}

static inline pd_v16i_t pd_v16i_zero(void)
{
    return _mm512_setzero_si512();
}

#if defined(__AVX512VNNI__)
#define PD_I8_OFFSET 128
static inline pd_v16i_t pd_v16i_dot_i8(pd_v16i_t acc, pd_vraw_t w_biased, pd_vraw_t x)
{
    return _mm512_dpbusd_epi32(acc, w_biased, x);
}
/* w as the first operand of pd_v16i_dot_i8 wants it: once per weight load. */
static inline pd_vraw_t pd_vraw_i8_weight(pd_vraw_t w)
{
    return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80));
}
#else
#define PD_I8_OFFSET 0
static inline pd_v16i_t pd_v16i_dot_i8(pd_v16i_t acc, pd_vraw_t w, pd_vraw_t x)
{
    __m512i wl = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(w));
    __m512i wh = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(w, 1));
    __m512i xl = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(x));
    __m512i xh = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(x, 1));
    return _mm512_add_epi32(acc,
                            _mm512_add_epi32(_mm512_madd_epi16(wl, xl), _mm512_madd_epi16(wh, xh)));
}
static inline pd_vraw_t pd_vraw_i8_weight(pd_vraw_t w)
{
    return w;
}
#endif

/* The exact sum of the 16 lanes. */
static inline int64_t pd_v16i_hsum(pd_v16i_t v)
{
    __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v));
    __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1));
    return (int64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
}

#else /* portable fallback: the same semantics in plain C */

typedef struct pd_vraw {
    uint8_t b[64];
} pd_vraw_t;
typedef struct pd_v16i {
    int32_t l[16];
} pd_v16i_t;

static inline pd_vraw_t pd_vraw_load(const void *p)
{
    pd_vraw_t v;
    for (int i = 0; i < 64; i++)
        v.b[i] = ((const uint8_t *)p)[i];
    return v;
}

static inline pd_vraw_t pd_vraw_load16_tail(const uint16_t *p, uint32_t rem)
{
    pd_vraw_t v = {{0}};
    for (uint32_t i = 0; i < 2 * rem; i++)
        v.b[i] = ((const uint8_t *)p)[i];
    return v;
}

static inline pd_vraw_t pd_vraw_load8_tail(const int8_t *p, uint32_t rem)
{
    pd_vraw_t v = {{0}};
    for (uint32_t i = 0; i < rem; i++)
        v.b[i] = (uint8_t)p[i];
    return v;
}

static inline float pd_raw_bf16_(const pd_vraw_t *v, int i)
{
    uint32_t bits = ((uint32_t)v->b[2 * i] | ((uint32_t)v->b[2 * i + 1] << 8)) << 16;
    float f;
    __builtin_memcpy(&f, &bits, sizeof(f));
    return f;
}

static inline pd_v16_t pd_v16_dot_bf16(pd_v16_t acc, pd_vraw_t a, pd_vraw_t b)
{
    float l[16];
    pd_v16_store(l, acc);
    for (int i = 0; i < 16; i++) {
        l[i] = fmaf(pd_raw_bf16_(&a, 2 * i + 1), pd_raw_bf16_(&b, 2 * i + 1), l[i]);
        l[i] = fmaf(pd_raw_bf16_(&a, 2 * i), pd_raw_bf16_(&b, 2 * i), l[i]);
    }
    return pd_v16_load(l);
}

float pd_f16_to_f32(uint16_t h);

static inline pd_v16_t pd_v16_load_f16_tail(const uint16_t *p, uint32_t rem)
{
    float l[16] = {0};
    for (uint32_t i = 0; i < rem; i++)
        l[i] = pd_f16_to_f32(p[i]);
    return pd_v16_load(l);
}

static inline pd_v16_t pd_v16_load_f16(const uint16_t *p)
{
    return pd_v16_load_f16_tail(p, 16);
}

static inline pd_v16i_t pd_v16i_zero(void)
{
    pd_v16i_t v = {{0}};
    return v;
}

#define PD_I8_OFFSET 0
static inline pd_v16i_t pd_v16i_dot_i8(pd_v16i_t acc, pd_vraw_t w, pd_vraw_t x)
{
    for (int i = 0; i < 64; i++)
        acc.l[i / 4] += (int32_t)(int8_t)w.b[i] * (int32_t)(int8_t)x.b[i];
    return acc;
}

static inline pd_vraw_t pd_vraw_i8_weight(pd_vraw_t w)
{
    return w;
}

static inline int64_t pd_v16i_hsum(pd_v16i_t v)
{
    int64_t s = 0;
    for (int i = 0; i < 16; i++)
        s += v.l[i];
    return s;
}

#endif

#endif
