/* The 16-lane accumulator behind the canonical dot product (see pd/ops.h): one AVX-512
 * register, two AVX2 registers, or sixteen floats, all with the same lane semantics and
 * the same horizontal sum, so every build and every tile shape reduces in one order. */
#ifndef PD_CPU_SIMD_INT_H
#define PD_CPU_SIMD_INT_H

#include <math.h>
#include <stdint.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
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

static inline float pd_v8_hsum_(__m256 s8)
{
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
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

static inline float pd_v8_hsum_(__m256 s8)
{
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
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

#endif
