#include "ckernels.h"
#include "ckmath.h"
#include <math.h>

/* ---------- portable versions ---------- */

/* p := exp(p - max p); returns 1 / sum (0 for a row of only -inf, which becomes zeros). */
static float softmax_exp_portable(float *p, size_t n) {
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) if (p[i] > m) m = p[i];
    if (m == -INFINITY) { for (size_t i = 0; i < n; i++) p[i] = 0.0f; return 0.0f; }
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) { p[i] = exp_portable(p[i] - m); s += p[i]; }
    return 1.0f / s;
}

static void scale_portable(float *p, size_t n, float c) {
    for (size_t i = 0; i < n; i++) p[i] *= c;
}

void ck_softmax_row_portable(float *p, size_t n) {
    scale_portable(p, n, softmax_exp_portable(p, n));
}

/* v / (1 + exp(-z)) with -z clamped to 80 (the denominator stays finite); NaN stays NaN. */
static float times_sigmoid_portable(float v, float z) {
    float m = -z;
    if (m > 80.0f) m = 80.0f;
    return v / (1.0f + exp_portable(m));
}

/* GELU-tanh as x · σ(2u): 0.5x(1 + tanh u) = x / (1 + exp(-2u)). */
void ck_gelu_tanh_portable(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = times_sigmoid_portable(v, 2 * 0.7978845608028654f * (v + 0.044715f * v * v * v));
    }
}

/* erf(z) for z >= 0 through Numerical Recipes' erfc: 1 - t * exp(-z^2 + P(t)), t = 1 / (1 + z/2),
   P's coefficients highest degree first; about 1.2e-7 absolute. Every vector width uses these. */
static const float erfc_poly[10] = {
    0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
    -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};

static float erf_nonnegative_portable(float z) {
    float t = 1.0f / (z * 0.5f + 1.0f);
    float p = erfc_poly[0];
    for (int c = 1; c < 10; c++) p = p * t + erfc_poly[c];
    return 1.0f - t * exp_portable(p - z * z);
}

void ck_gelu_erf_portable(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (v != v) { y[i] = v; continue; }
        float u = v * 0.70710678118654752f, e = erf_nonnegative_portable(fabsf(u));
        y[i] = 0.5f * v * (1.0f + (u < 0 ? -e : e));
    }
}

void ck_silu_portable(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = times_sigmoid_portable(x[i], x[i]);
}

/* out = h + x * g, the product rounded before the sum (no fused multiply-add: diffusers' `h + x * gate`
   in float32). out may alias h. */
void ck_add_gated_portable(const float *h, const float *x, const float *g, float *out, size_t n) {
#pragma STDC FP_CONTRACT OFF
    for (size_t i = 0; i < n; i++) { float p = x[i] * g[i]; out[i] = h[i] + p; }
}

/* ---------- AVX2 + FMA versions ---------- */

#if defined(__x86_64__) || defined(__i386__)

AVX2 static float softmax_exp_avx2(float *p, size_t n) {
    size_t i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(p + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    float m = -INFINITY;
    for (int j = 0; j < 8; j++) if (lanes[j] > m) m = lanes[j];
    for (; i < n; i++) if (p[i] > m) m = p[i];
    if (m == -INFINITY) { for (i = 0; i < n; i++) p[i] = 0.0f; return 0.0f; }
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
    return 1.0f / s;
}

AVX2 static void scale_avx2(float *p, size_t n, float c) {
    size_t i = 0;
    __m256 vc = _mm256_set1_ps(c);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, _mm256_mul_ps(_mm256_loadu_ps(p + i), vc));
    for (; i < n; i++) p[i] *= c;
}

AVX2 static void softmax_avx2(float *p, size_t n) { scale_avx2(p, n, softmax_exp_avx2(p, n)); }

/* GELU-tanh as x · σ(2u) (see gelu_tanh_avx512). */
AVX2 static void gelu_tanh_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    const __m256 c0 = _mm256_set1_ps(2 * 0.7978845608028654f), c1 = _mm256_set1_ps(0.044715f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 twice = _mm256_mul_ps(c0, _mm256_fmadd_ps(_mm256_mul_ps(c1, v), _mm256_mul_ps(v, v), v));
        _mm256_storeu_ps(y + i, times_sigmoid_avx2(v, twice));
    }
    ck_gelu_tanh_portable(x + i, y + i, n - i);
}

AVX2 static void add_gated_avx2(const float *h, const float *x, const float *g, float *out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(g + i));
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(h + i), p));
    }
    ck_add_gated_portable(h + i, x + i, g + i, out + i, n - i);
}

/* The portable erf's polynomial, 8 lanes: erf(|u|) with its sign restored. */
AVX2 static inline __m256 erf_avx2(__m256 u) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    /* |u| capped at 10 (erf is 1 in float32 from 3.9 on), so the reciprocal's input stays finite */
    __m256 z = _mm256_min_ps(_mm256_set1_ps(10.0f), _mm256_andnot_ps(sign, u));
    __m256 t = reciprocal_avx2(_mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), one));
    __m256 p = _mm256_set1_ps(erfc_poly[0]);
    for (int c = 1; c < 10; c++) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(erfc_poly[c]));
    __m256 e = _mm256_sub_ps(one, _mm256_mul_ps(t, exp_avx2(_mm256_sub_ps(p, _mm256_mul_ps(z, z)))));
    return _mm256_or_ps(e, _mm256_and_ps(sign, u));
}

AVX2 static void gelu_erf_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), r2 = _mm256_set1_ps(0.70710678118654752f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 g = _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf_avx2(_mm256_mul_ps(v, r2))));
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(g, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    }
    ck_gelu_erf_portable(x + i, y + i, n - i);
}

AVX2 static void silu_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, times_sigmoid_avx2(v, v));
    }
    ck_silu_portable(x + i, y + i, n - i);
}

/* ---------- AVX-512F versions (same polynomial, 16 lanes, masked tails) ---------- */



AVX512 static float softmax_exp_avx512(float *p, size_t n) {
    const size_t body = n & ~(size_t)15;
    const __mmask16 k = (__mmask16)((1u << (n - body)) - 1u);
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < body; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(p + i));
    vm = _mm512_mask_max_ps(vm, k, vm, _mm512_maskz_loadu_ps(k, p + body));
    float m = _mm512_reduce_max_ps(vm);
    if (m == -INFINITY) { for (size_t i = 0; i < n; i++) p[i] = 0.0f; return 0.0f; }
    vm = _mm512_set1_ps(m);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= body; i += 32) {
        __m512 e0 = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(p + i), vm));
        __m512 e1 = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(p + i + 16), vm));
        _mm512_storeu_ps(p + i, e0);
        _mm512_storeu_ps(p + i + 16, e1);
        acc0 = _mm512_add_ps(acc0, e0);
        acc1 = _mm512_add_ps(acc1, e1);
    }
    for (; i < body; i += 16) {
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(p + i), vm));
        _mm512_storeu_ps(p + i, e);
        acc0 = _mm512_add_ps(acc0, e);
    }
    __m512 et = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + body), vm));
    _mm512_mask_storeu_ps(p + body, k, et);
    acc1 = _mm512_mask_add_ps(acc1, k, acc1, et);
    return 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

AVX512 static void scale_avx512(float *p, size_t n, float c) {
    const size_t body = n & ~(size_t)15;
    const __mmask16 k = (__mmask16)((1u << (n - body)) - 1u);
    const __m512 vc = _mm512_set1_ps(c);
    for (size_t i = 0; i < body; i += 16) _mm512_storeu_ps(p + i, _mm512_mul_ps(_mm512_loadu_ps(p + i), vc));
    _mm512_mask_storeu_ps(p + body, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + body), vc));
}

AVX512 static void softmax_avx512(float *p, size_t n) { scale_avx512(p, n, softmax_exp_avx512(p, n)); }

/* GELU-tanh as x · σ(2u): 0.5x(1 + tanh u) = x / (1 + exp(−2u)), without tanh's division or the
   cancellation of 1 + tanh u for negative x. */
AVX512 static void gelu_tanh_avx512(const float *x, float *y, size_t n) {
    const __m512 c0 = _mm512_set1_ps(2 * 0.7978845608028654f), c1 = _mm512_set1_ps(0.044715f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(i, n);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __m512 twice = _mm512_mul_ps(c0, _mm512_fmadd_ps(_mm512_mul_ps(c1, v), _mm512_mul_ps(v, v), v));
        _mm512_mask_storeu_ps(y + i, k, times_sigmoid_avx512(v, twice));
    }
}

AVX512 static void add_gated_avx512(const float *h, const float *x, const float *g, float *out, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(i, n);
        __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, g + i));
        _mm512_mask_storeu_ps(out + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, h + i), p));
    }
}

/* The portable erf's polynomial, 16 lanes: erf(|u|) with its sign restored. */
AVX512 static inline __m512 erf_avx512(__m512 u) {
    const __m512 one = _mm512_set1_ps(1.0f);
    /* |u| capped at 10 (erf is 1 in float32 from 3.9 on), so the reciprocal's input stays finite */
    __m512 z = _mm512_min_ps(_mm512_set1_ps(10.0f), _mm512_abs_ps(u));
    __m512 t = reciprocal_avx512(_mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), one));
    __m512 p = _mm512_set1_ps(erfc_poly[0]);
    for (int c = 1; c < 10; c++) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(erfc_poly[c]));
    /* P(t) − z² ≤ P(1) = 0 here, so exp needs no overflow handling (exp_scalef_avx512) */
    __m512 e = _mm512_sub_ps(one, _mm512_mul_ps(t, exp_scalef_avx512(_mm512_sub_ps(p, _mm512_mul_ps(z, z)))));
    /* the sign bit of u on |erf| */
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(e),
        _mm512_and_si512(_mm512_castps_si512(u), _mm512_set1_epi32((int)0x80000000u))));
}

AVX512 static void gelu_erf_avx512(const float *x, float *y, size_t n) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), r2 = _mm512_set1_ps(0.70710678118654752f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(i, n);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __m512 g = _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf_avx512(_mm512_mul_ps(v, r2))));
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mask_mov_ps(g, nan, v));
    }
}

AVX512 static void silu_avx512(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(i, n);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        _mm512_mask_storeu_ps(y + i, k, times_sigmoid_avx512(v, v));
    }
}

/* 0 portable, 1 AVX2+FMA, 2 AVX-512F (+ AVX2/FMA). */
static int cpu_level(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    return __builtin_cpu_supports("avx512f") ? 2 : 1;
}
#else
static int cpu_level(void) { return 0; }
#endif

/* ---------- dispatch ---------- */

static int cpu_support = -1;
static int level_cap = 2; /* 1 after ck_limit_to_avx2 */

void ck_limit_to_avx2(void) { __atomic_store_n(&level_cap, 1, __ATOMIC_RELAXED); }

int ck_limited_to_avx2(void) { return __atomic_load_n(&level_cap, __ATOMIC_RELAXED) < 2; }

int ck_level(void) {
    int cached = __atomic_load_n(&cpu_support, __ATOMIC_RELAXED);
    if (cached < 0) {
        cached = cpu_level();
        __atomic_store_n(&cpu_support, cached, __ATOMIC_RELAXED);
    }
    int cap = __atomic_load_n(&level_cap, __ATOMIC_RELAXED);
    return cached < cap ? cached : cap;
}


void ck_softmax_row_level(int level, float *p, size_t n) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: softmax_avx512(p, n); return;
    case 1: softmax_avx2(p, n); return;
#endif
    default: ck_softmax_row_portable(p, n);
    }
}

float ck_softmax_exp_row_level(int level, float *p, size_t n) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: return softmax_exp_avx512(p, n);
    case 1: return softmax_exp_avx2(p, n);
#endif
    default: return softmax_exp_portable(p, n);
    }
}

void ck_gelu_tanh_level(int level, const float *x, float *y, size_t n) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: gelu_tanh_avx512(x, y, n); return;
    case 1: gelu_tanh_avx2(x, y, n); return;
#endif
    default: ck_gelu_tanh_portable(x, y, n);
    }
}

void ck_silu_level(int level, const float *x, float *y, size_t n) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: silu_avx512(x, y, n); return;
    case 1: silu_avx2(x, y, n); return;
#endif
    default: ck_silu_portable(x, y, n);
    }
}

void ck_gelu_erf_level(int level, const float *x, float *y, size_t n) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: gelu_erf_avx512(x, y, n); return;
    case 1: gelu_erf_avx2(x, y, n); return;
#endif
    default: ck_gelu_erf_portable(x, y, n);
    }
}

void ck_gelu_erf(const float *x, float *y, size_t n) { ck_gelu_erf_level(2, x, y, n); }
void ck_softmax_row(float *p, size_t n) { ck_softmax_row_level(2, p, n); }
float ck_softmax_exp_row(float *p, size_t n) { return ck_softmax_exp_row_level(2, p, n); }
void ck_gelu_tanh(const float *x, float *y, size_t n) { ck_gelu_tanh_level(2, x, y, n); }
void ck_silu(const float *x, float *y, size_t n) { ck_silu_level(2, x, y, n); }

void ck_add_gated_level(int level, const float *h, const float *x, const float *g, float *out, size_t n) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: add_gated_avx512(h, x, g, out, n); return;
    case 1: add_gated_avx2(h, x, g, out, n); return;
#endif
    default: ck_add_gated_portable(h, x, g, out, n);
    }
}

void ck_add_gated(const float *h, const float *x, const float *g, float *out, size_t n) { ck_add_gated_level(2, h, x, g, out, n); }
