/* Fused (flash-style) attention of one head: scores, online softmax and the probability-weighted sum of
   values computed block by block in a small workspace, never the whole score matrix. See ckernels.h. */
#include "ckernels.h"
#include "ckmath.h"
#include <stdint.h>

/* ---------- portable: one lane ---------- */
#define VF float
#define W 1
#define RV 4
#define RV4 1
#define KR 4
#define ATTR
#define SFX(name) name##_portable
#define V_LOAD(p) (*(p))
#define V_STORE(p, x) (*(p) = (x))
#define V_SET1(x) (x)
#define V_ZERO() 0.0f
#define V_ADD(a, b) ((a) + (b))
#define V_SUB(a, b) ((a) - (b))
#define V_MUL(a, b) ((a) * (b))
#define V_FMA(a, b, c) ((a) * (b) + (c))
#define V_MAX(a, b) ((b) > (a) ? (b) : (a))
#define V_EXP(x) exp_portable(x)
#define V_NEGINF_TO_ZERO(x) ((x) == -INFINITY ? 0.0f : (x))
#include "attention_impl.h"
#undef VF
#undef W
#undef RV
#undef RV4
#undef KR
#undef ATTR
#undef SFX
#undef V_LOAD
#undef V_STORE
#undef V_SET1
#undef V_ZERO
#undef V_ADD
#undef V_SUB
#undef V_MUL
#undef V_FMA
#undef V_MAX
#undef V_EXP
#undef V_NEGINF_TO_ZERO

#if defined(__x86_64__) || defined(__i386__)
/* ---------- AVX2 + FMA: 8 lanes, register tiles of 6 × 2 vectors (15 of 16 registers) ---------- */
#define VF __m256
#define W 8
#define RV 2
#define RV4 0
#define KR 6
#define ATTR AVX2
#define SFX(name) name##_avx2
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, x) _mm256_storeu_ps((p), (x))
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ZERO() _mm256_setzero_ps()
#define V_ADD(a, b) _mm256_add_ps((a), (b))
#define V_SUB(a, b) _mm256_sub_ps((a), (b))
#define V_MUL(a, b) _mm256_mul_ps((a), (b))
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_MAX(a, b) _mm256_max_ps((a), (b))
#define V_EXP(x) exp_avx2(x)
#define V_NEGINF_TO_ZERO(x) _mm256_blendv_ps((x), _mm256_setzero_ps(), \
                                             _mm256_cmp_ps((x), _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ))
#include "attention_impl.h"
#undef VF
#undef W
#undef RV
#undef RV4
#undef KR
#undef ATTR
#undef SFX
#undef V_LOAD
#undef V_STORE
#undef V_SET1
#undef V_ZERO
#undef V_ADD
#undef V_SUB
#undef V_MUL
#undef V_FMA
#undef V_MAX
#undef V_EXP
#undef V_NEGINF_TO_ZERO

/* ---------- AVX-512F: 16 lanes, register tiles of 6 × 4 vectors (29 of 32 registers) ---------- */

/* exp(x) for x ≤ 0 or NaN (a score minus its row's maximum): the exp_avx512 polynomial with the power of
   two applied by scalef, so no overflow handling. Below −120 (−∞ included) it is exactly 0; NaN stays NaN. */
AVX512 static inline __m512 exp_nonpositive_avx512(__m512 x) {
    __m512 xc = _mm512_max_ps(_mm512_set1_ps(-120.0f), x); /* NaN x: max returns x */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
#define VF __m512
#define W 16
#define RV 4
#define RV4 1
#define KR 6
#define ATTR AVX512
#define SFX(name) name##_avx512
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, x) _mm512_storeu_ps((p), (x))
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ZERO() _mm512_setzero_ps()
#define V_ADD(a, b) _mm512_add_ps((a), (b))
#define V_SUB(a, b) _mm512_sub_ps((a), (b))
#define V_MUL(a, b) _mm512_mul_ps((a), (b))
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_MAX(a, b) _mm512_max_ps((a), (b))
#define V_EXP(x) exp_nonpositive_avx512(x)
#define V_NEGINF_TO_ZERO(x) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((x), _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ), \
                                                 (x), _mm512_setzero_ps())
#include "attention_impl.h"
#endif

size_t ck_attention_workspace_floats(size_t dh) {
    const size_t mt = 64; /* the widest tile: 4 vectors of 16 lanes */
    return 2 * mt * dh + CK_ATTENTION_KEY_BLOCK * mt + 4 * mt;
}

void ck_attention_f32_level(int level, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                            int64_t ldv, float *out, int64_t ldo, size_t rows, size_t keys, size_t dh, float scale,
                            const float *bias, int64_t bias_ldq, const float *keymask, float *work) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: attention_avx512(q, ldq, k, ldk, v, ldv, out, ldo, rows, keys, dh, scale, bias, bias_ldq, keymask, work); return;
    case 1: attention_avx2(q, ldq, k, ldk, v, ldv, out, ldo, rows, keys, dh, scale, bias, bias_ldq, keymask, work); return;
#endif
    default: attention_portable(q, ldq, k, ldk, v, ldv, out, ldo, rows, keys, dh, scale, bias, bias_ldq, keymask, work);
    }
}

void ck_attention_f32(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                      float *out, int64_t ldo, size_t rows, size_t keys, size_t dh, float scale, const float *bias,
                      int64_t bias_ldq, const float *keymask, float *work) {
    ck_attention_f32_level(2, q, ldq, k, ldk, v, ldv, out, ldo, rows, keys, dh, scale, bias, bias_ldq, keymask, work);
}
