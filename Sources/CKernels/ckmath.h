/* The exp every CKernels kernel uses (Cephes-style, about 1 ulp), one version per vector width, the
   target attributes of the vector versions and the small helpers several kernel files share. Private to
   CKernels. */
#ifndef CKMATH_H
#define CKMATH_H

#include <math.h>
#include "ckernels.h"

/* `level` clamped to 0 ... ck_level(): a version this CPU runs. */
static inline int clamp_level(int level) {
    int best = ck_level();
    return level < 0 ? 0 : (level > best ? best : level);
}

/* The polynomial of exp's remainder r (|r| ≤ ln 2 / 2), highest degree first: exp(r) ≈ 1 + r + r²·P(r).
   Every width evaluates it in this order. */
static const float exp_poly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                  4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

static inline float exp_portable(float x) {
    if (x != x) return x;
    if (x > 88.72283f) return INFINITY;
    if (x < -87.33654f) return 0.0f;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float r2 = r * r;
    float p = exp_poly[0];
    for (int c = 1; c < 6; c++) p = p * r + exp_poly[c];
    p = p * r2 + r + 1.0f;
    return ldexpf(p, (int)n);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f")))

/* The sum of the 8 lanes. */
AVX2 static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lanes i .. i+15 that exist in a row of n. */
AVX512 static inline __mmask16 tail_mask(size_t i, size_t n) {
    size_t left = n - i;
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

AVX2 static inline __m256 exp_avx2(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.72283f), lo = _mm256_set1_ps(-87.33654f);
    __m256 xc = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(exp_poly[0]);
    for (int c = 1; c < 6; c++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(exp_poly[c]));
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i half = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    res = _mm256_blendv_ps(res, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    res = _mm256_blendv_ps(res, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return res;
}

/* exp(xc) = p · 2ⁿ for a clamped argument xc: n = round(xc / ln 2) returned through *n, p the polynomial of
   the remainder (the part both AVX-512 exps share). */
AVX512 static inline __m512 exp_reduced_avx512(__m512 xc, __m512 *n_out) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(exp_poly[0]);
    for (int c = 1; c < 6; c++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(exp_poly[c]));
    *n_out = n;
    return _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
}

AVX512 static inline __m512 exp_avx512(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.72283f), lo = _mm512_set1_ps(-87.33654f);
    __m512 n, p = exp_reduced_avx512(_mm512_max_ps(_mm512_min_ps(x, hi), lo), &n);
    __m512i ni = _mm512_cvtps_epi32(n);
    __m512i half = _mm512_srai_epi32(ni, 1);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, _mm512_set1_epi32(127)), 23));
    __m512 s2 = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, half), _mm512_set1_epi32(127)), 23));
    __m512 res = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
    res = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), res, _mm512_setzero_ps());
    res = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), res, _mm512_set1_ps(INFINITY));
    res = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), res, x);
    return res;
}

/* exp(x) for x ≤ 88 or NaN, the exp_avx512 polynomial with the power of two applied by scalef (no
   overflow handling, few instructions). Below −120 (−∞ included) it is exactly 0; NaN stays NaN. */
AVX512 static inline __m512 exp_scalef_avx512(__m512 x) {
    /* NaN x: max returns x */
    __m512 n, p = exp_reduced_avx512(_mm512_max_ps(_mm512_set1_ps(-120.0f), x), &n);
    return _mm512_scalef_ps(p, n);
}

/* 1/d for finite d ≥ 1 (or NaN): the 14-bit estimate and one Newton step (about 1 ulp), cheaper than a
   division. */
AVX512 static inline __m512 reciprocal_avx512(__m512 d) {
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

/* x · σ(z) = x / (1 + exp(−z)), z ≥ −80 after clamping (so the denominator stays finite); NaN stays NaN.
   GELU-tanh is x · σ(2u) and SiLU x · σ(x). */
AVX512 static inline __m512 times_sigmoid_avx512(__m512 x, __m512 z) {
    __m512 e = exp_scalef_avx512(_mm512_min_ps(_mm512_set1_ps(80.0f), _mm512_sub_ps(_mm512_setzero_ps(), z)));
    return _mm512_mul_ps(x, reciprocal_avx512(_mm512_add_ps(_mm512_set1_ps(1.0f), e)));
}

/* The AVX2 forms: the 12-bit estimate and one Newton step; exp_avx2 for the exponential. */
AVX2 static inline __m256 reciprocal_avx2(__m256 d) {
    __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

AVX2 static inline __m256 times_sigmoid_avx2(__m256 x, __m256 z) {
    __m256 e = exp_avx2(_mm256_min_ps(_mm256_set1_ps(80.0f), _mm256_sub_ps(_mm256_setzero_ps(), z)));
    return _mm256_mul_ps(x, reciprocal_avx2(_mm256_add_ps(_mm256_set1_ps(1.0f), e)));
}
#endif

#endif
