#include "ckernels.h"
#include <math.h>

/* ---------- portable versions ---------- */

static float exp_portable(float x) {
    if (x != x) return x;
    if (x > 88.72283f) return INFINITY;
    if (x < -87.33654f) return 0.0f;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    return ldexpf(p, (int)n);
}

static float tanh_portable(float u) {
    if (u != u) return u;
    if (fabsf(u) < 0.0625f) {
        float u2 = u * u;
        float q = -17.0f / 315.0f;
        q = q * u2 + 2.0f / 15.0f;
        q = q * u2 - 1.0f / 3.0f;
        q = q * u2 + 1.0f;
        return u * q;
    }
    if (u > 9.0f) u = 9.0f;
    if (u < -9.0f) u = -9.0f;
    float e = exp_portable(u + u);
    return 1.0f - 2.0f / (e + 1.0f);
}

void ck_softmax_row_portable(float *p, size_t n) {
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) if (p[i] > m) m = p[i];
    if (m == -INFINITY) { for (size_t i = 0; i < n; i++) p[i] = 0.0f; return; }
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) { p[i] = exp_portable(p[i] - m); s += p[i]; }
    float inv = 1.0f / s;
    for (size_t i = 0; i < n; i++) p[i] *= inv;
}

void ck_gelu_tanh_portable(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float inner = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        y[i] = 0.5f * v * (1.0f + tanh_portable(inner));
    }
}

void ck_silu_portable(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) { float v = x[i]; y[i] = v / (1.0f + exp_portable(-v)); }
}

/* ---------- AVX2 + FMA versions ---------- */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 exp_avx2(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.72283f), lo = _mm256_set1_ps(-87.33654f);
    __m256 xc = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
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

AVX2 static inline __m256 tanh_avx2(__m256 u) {
    const __m256 nine = _mm256_set1_ps(9.0f);
    __m256 uc = _mm256_max_ps(_mm256_min_ps(u, nine), _mm256_sub_ps(_mm256_setzero_ps(), nine));
    __m256 e = exp_avx2(_mm256_add_ps(uc, uc));
    __m256 t = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                             _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    __m256 u2 = _mm256_mul_ps(u, u);
    __m256 q = _mm256_set1_ps(-17.0f / 315.0f);
    q = _mm256_fmadd_ps(q, u2, _mm256_set1_ps(2.0f / 15.0f));
    q = _mm256_fmadd_ps(q, u2, _mm256_set1_ps(-1.0f / 3.0f));
    q = _mm256_fmadd_ps(q, u2, _mm256_set1_ps(1.0f));
    __m256 series = _mm256_mul_ps(u, q);
    __m256 absu = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
    t = _mm256_blendv_ps(t, series, _mm256_cmp_ps(absu, _mm256_set1_ps(0.0625f), _CMP_LT_OQ));
    t = _mm256_blendv_ps(t, u, _mm256_cmp_ps(u, u, _CMP_UNORD_Q));
    return t;
}

AVX2 static void softmax_avx2(float *p, size_t n) {
    size_t i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(p + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    float m = -INFINITY;
    for (int j = 0; j < 8; j++) if (lanes[j] > m) m = lanes[j];
    for (; i < n; i++) if (p[i] > m) m = p[i];
    if (m == -INFINITY) { for (i = 0; i < n; i++) p[i] = 0.0f; return; }
    vm = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(p + i), vm));
        _mm256_storeu_ps(p + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    _mm256_storeu_ps(lanes, acc);
    float s = 0.0f;
    for (int j = 0; j < 8; j++) s += lanes[j];
    for (; i < n; i++) { p[i] = exp_portable(p[i] - m); s += p[i]; }
    const float inv = 1.0f / s;
    __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, _mm256_mul_ps(_mm256_loadu_ps(p + i), vinv));
    for (; i < n; i++) p[i] *= inv;
}

AVX2 static void gelu_tanh_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    const __m256 c0 = _mm256_set1_ps(0.7978845608028654f), c1 = _mm256_set1_ps(0.044715f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 inner = _mm256_mul_ps(c0, _mm256_fmadd_ps(_mm256_mul_ps(c1, v), _mm256_mul_ps(v, v), v));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, tanh_avx2(inner))));
    }
    ck_gelu_tanh_portable(x + i, y + i, n - i);
}

AVX2 static void silu_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), v));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    ck_silu_portable(x + i, y + i, n - i);
}

static int cpu_has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int cpu_has_avx2_fma(void) { return 0; }
#endif

/* ---------- dispatch ---------- */

static int cpu_support = -1;

static int use_avx2(void) {
    int cached = __atomic_load_n(&cpu_support, __ATOMIC_RELAXED);
    if (cached < 0) {
        cached = cpu_has_avx2_fma();
        __atomic_store_n(&cpu_support, cached, __ATOMIC_RELAXED);
    }
    return cached;
}

int ck_vectorized(void) { return use_avx2(); }

void ck_softmax_row(float *p, size_t n) {
#if defined(__x86_64__) || defined(__i386__)
    if (use_avx2()) { softmax_avx2(p, n); return; }
#endif
    ck_softmax_row_portable(p, n);
}

void ck_gelu_tanh(const float *x, float *y, size_t n) {
#if defined(__x86_64__) || defined(__i386__)
    if (use_avx2()) { gelu_tanh_avx2(x, y, n); return; }
#endif
    ck_gelu_tanh_portable(x, y, n);
}

void ck_silu(const float *x, float *y, size_t n) {
#if defined(__x86_64__) || defined(__i386__)
    if (use_avx2()) { silu_avx2(x, y, n); return; }
#endif
    ck_silu_portable(x, y, n);
}
