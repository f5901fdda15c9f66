/* Row kernels of the layers between the products: normalisation with affine parameters and adaptive
   modulation (ck_norm_rows), rotary position embedding (ck_rope_row). Portable, AVX2 and AVX-512 versions
   compute the same operations in the same order element by element (no fused multiply-adds), so they
   differ only in how the row sums are accumulated. */
#include "ckernels.h"
#include "ckmath.h"
#include <math.h>

/* ---------- normalisation ---------- */

/* The element step every width shares: ((x − mean)·inv)·w + b, then ·(1 + scale) + shift, each optional
   operand skipped when NULL, every operation rounded on its own. */
static inline float norm_element(float x, float mean, float inv, const float *w, const float *b, const float *sc,
                                 const float *sf, size_t j) {
#pragma STDC FP_CONTRACT OFF
    float t = (x - mean) * inv;
    if (w) t = t * w[j];
    if (b) t = t + b[j];
    if (sc) t = t * (1.0f + sc[j]);
    if (sf) t = t + sf[j];
    return t;
}

/* mean and 1/sqrt(var + eps) from a row's sum and centred sum of squares. */
static inline void norm_moments(int mode, float sum, float squares, size_t d, float eps, float *mean, float *inv) {
    *mean = mode == CK_NORM_LAYER ? sum / (float)d : 0.0f;
    *inv = mode == CK_NORM_NONE ? 1.0f : 1.0f / sqrtf(squares / (float)d + eps);
}

static void norm_row_portable(const float *x, float *out, size_t d, int mode, float eps, const float *w,
                              const float *b, const float *sc, const float *sf) {
#pragma STDC FP_CONTRACT OFF
    float sum = 0.0f, squares = 0.0f, mean, inv;
    if (mode == CK_NORM_LAYER)
        for (size_t j = 0; j < d; j++) sum += x[j];
    float m0 = mode == CK_NORM_LAYER ? sum / (float)d : 0.0f;
    if (mode != CK_NORM_NONE)
        for (size_t j = 0; j < d; j++) { float c = x[j] - m0; squares += c * c; }
    norm_moments(mode, sum, squares, d, eps, &mean, &inv);
    for (size_t j = 0; j < d; j++) out[j] = norm_element(x[j], mean, inv, w, b, sc, sf, j);
}

/* ---------- rotary embedding ---------- */

/* One row of `heads` heads of d values: pairs (a, b) at (i, i + 1) (interleaved) or (i, i + d/2) (split
   halves) become (a·cos − b·sin, b·cos' + a·sin') with the tables' entries at the pair's two indices. */
static void rope_row_portable(const float *x, float *out, size_t heads, size_t d, const float *cs, const float *sn,
                              int split, size_t from) {
#pragma STDC FP_CONTRACT OFF
    for (size_t h = 0; h < heads; h++) {
        const float *xi = x + h * d;
        float *o = out + h * d;
        if (split) {
            size_t half = d / 2;
            for (size_t i = from / 2; i < half; i++) {
                float a = xi[i], bb = xi[i + half];
                float lo = a * cs[i] - bb * sn[i], hi = bb * cs[i + half] + a * sn[i + half];
                o[i] = lo;
                o[i + half] = hi;
            }
        } else {
            for (size_t i = from; i + 1 < d; i += 2) {
                float a = xi[i], bb = xi[i + 1];
                float lo = a * cs[i] - bb * sn[i], hi = bb * cs[i + 1] + a * sn[i + 1];
                o[i] = lo;
                o[i + 1] = hi;
            }
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)

/* ---------- AVX2 ---------- */

AVX2 static void norm_row_avx2(const float *x, float *out, size_t d, int mode, float eps, const float *w,
                               const float *b, const float *sc, const float *sf) {
    float sum = 0.0f, squares = 0.0f, mean, inv;
    size_t j;
    if (mode == CK_NORM_LAYER) {
        __m256 acc = _mm256_setzero_ps();
        for (j = 0; j + 8 <= d; j += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + j));
        sum = hsum_avx2(acc);
        for (; j < d; j++) sum += x[j];
    }
    float m0 = mode == CK_NORM_LAYER ? sum / (float)d : 0.0f;
    if (mode != CK_NORM_NONE) {
        __m256 acc = _mm256_setzero_ps(), vm = _mm256_set1_ps(m0);
        for (j = 0; j + 8 <= d; j += 8) {
            __m256 c = _mm256_sub_ps(_mm256_loadu_ps(x + j), vm);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(c, c));
        }
        squares = hsum_avx2(acc);
        for (; j < d; j++) { float c = x[j] - m0; squares += c * c; }
    }
    norm_moments(mode, sum, squares, d, eps, &mean, &inv);
    const __m256 vmean = _mm256_set1_ps(mean), vinv = _mm256_set1_ps(inv), one = _mm256_set1_ps(1.0f);
    for (j = 0; j + 8 <= d; j += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmean), vinv);
        if (w) t = _mm256_mul_ps(t, _mm256_loadu_ps(w + j));
        if (b) t = _mm256_add_ps(t, _mm256_loadu_ps(b + j));
        if (sc) t = _mm256_mul_ps(t, _mm256_add_ps(one, _mm256_loadu_ps(sc + j)));
        if (sf) t = _mm256_add_ps(t, _mm256_loadu_ps(sf + j));
        _mm256_storeu_ps(out + j, t);
    }
    for (; j < d; j++) out[j] = norm_element(x[j], mean, inv, w, b, sc, sf, j);
}

AVX2 static void rope_row_avx2(const float *x, float *out, size_t heads, size_t d, const float *cs, const float *sn,
                               int split) {
    /* −0 in the even lanes: (a·cos) + (−(b·sin)) is a·cos − b·sin exactly. */
    const __m256 even_sign = _mm256_setr_ps(-0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f);
    size_t done = split ? (d / 2 / 8) * 16 : (d / 8) * 8;
    for (size_t h = 0; h < heads; h++) {
        const float *xi = x + h * d;
        float *o = out + h * d;
        if (split) {
            size_t half = d / 2;
            for (size_t i = 0; i + 8 <= half; i += 8) {
                __m256 a = _mm256_loadu_ps(xi + i), bb = _mm256_loadu_ps(xi + i + half);
                __m256 lo = _mm256_sub_ps(_mm256_mul_ps(a, _mm256_loadu_ps(cs + i)), _mm256_mul_ps(bb, _mm256_loadu_ps(sn + i)));
                __m256 hi = _mm256_add_ps(_mm256_mul_ps(bb, _mm256_loadu_ps(cs + i + half)),
                                          _mm256_mul_ps(a, _mm256_loadu_ps(sn + i + half)));
                _mm256_storeu_ps(o + i, lo);
                _mm256_storeu_ps(o + i + half, hi);
            }
        } else {
            for (size_t i = 0; i + 8 <= d; i += 8) {
                __m256 v = _mm256_loadu_ps(xi + i);
                __m256 swapped = _mm256_permute_ps(v, 0xB1);
                __m256 t = _mm256_xor_ps(_mm256_mul_ps(swapped, _mm256_loadu_ps(sn + i)), even_sign);
                _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(cs + i)), t));
            }
        }
    }
    if (done < d) rope_row_portable(x, out, heads, d, cs, sn, split, done);
}

/* ---------- AVX-512 ---------- */

AVX512 static void norm_row_avx512(const float *x, float *out, size_t d, int mode, float eps, const float *w,
                                   const float *b, const float *sc, const float *sf) {
    float sum = 0.0f, squares = 0.0f, mean, inv;
    if (mode == CK_NORM_LAYER) {
        __m512 acc = _mm512_setzero_ps();
        for (size_t j = 0; j < d; j += 16) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tail_mask(j, d), x + j));
        sum = _mm512_reduce_add_ps(acc);
    }
    float m0 = mode == CK_NORM_LAYER ? sum / (float)d : 0.0f;
    if (mode != CK_NORM_NONE) {
        __m512 acc = _mm512_setzero_ps(), vm = _mm512_set1_ps(m0);
        for (size_t j = 0; j < d; j += 16) {
            __mmask16 k = tail_mask(j, d);
            __m512 c = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + j), vm);
            acc = _mm512_add_ps(acc, _mm512_mul_ps(c, c));
        }
        squares = _mm512_reduce_add_ps(acc);
    }
    norm_moments(mode, sum, squares, d, eps, &mean, &inv);
    const __m512 vmean = _mm512_set1_ps(mean), vinv = _mm512_set1_ps(inv), one = _mm512_set1_ps(1.0f);
    for (size_t j = 0; j < d; j += 16) {
        __mmask16 k = tail_mask(j, d);
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), vmean), vinv);
        if (w) t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(k, w + j));
        if (b) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(k, b + j));
        if (sc) t = _mm512_mul_ps(t, _mm512_add_ps(one, _mm512_maskz_loadu_ps(k, sc + j)));
        if (sf) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(k, sf + j));
        _mm512_mask_storeu_ps(out + j, k, t);
    }
}

/* Rows of at most 64 values (a head of a q/k norm) held in registers: one load of the row, the
   parameters loaded once for all rows; the same operations in the same order as norm_row_avx512. */
AVX512 static void norm_short_rows_avx512(const float *x, int64_t ldx, float *out, int64_t ldo, size_t count,
                                          size_t d, int mode, float eps, const float *w, const float *b,
                                          const float *sc, const float *sf) {
    const int nv = (int)((d + 15) / 16);
    __mmask16 k[4];
    __m512 vw[4], vb[4], vs[4], vf[4];
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < nv; i++) {
        k[i] = tail_mask((size_t)i * 16, d);
        vw[i] = w ? _mm512_maskz_loadu_ps(k[i], w + 16 * i) : one;
        vb[i] = b ? _mm512_maskz_loadu_ps(k[i], b + 16 * i) : _mm512_setzero_ps();
        vs[i] = sc ? _mm512_add_ps(one, _mm512_maskz_loadu_ps(k[i], sc + 16 * i)) : one;
        vf[i] = sf ? _mm512_maskz_loadu_ps(k[i], sf + 16 * i) : _mm512_setzero_ps();
    }
    for (size_t r = 0; r < count; r++) {
        const float *xr = x + (int64_t)r * ldx;
        float *o = out + (int64_t)r * ldo;
        __m512 v[4];
        for (int i = 0; i < nv; i++) v[i] = _mm512_maskz_loadu_ps(k[i], xr + 16 * i);
        float sum = 0.0f, squares = 0.0f, mean, inv;
        if (mode == CK_NORM_LAYER) {
            __m512 acc = _mm512_setzero_ps();
            for (int i = 0; i < nv; i++) acc = _mm512_add_ps(acc, v[i]);
            sum = _mm512_reduce_add_ps(acc);
        }
        float m0 = mode == CK_NORM_LAYER ? sum / (float)d : 0.0f;
        if (mode != CK_NORM_NONE) {
            __m512 acc = _mm512_setzero_ps(), vm = _mm512_set1_ps(m0);
            for (int i = 0; i < nv; i++) {
                __m512 c = _mm512_maskz_sub_ps(k[i], v[i], vm);
                acc = _mm512_add_ps(acc, _mm512_mul_ps(c, c));
            }
            squares = _mm512_reduce_add_ps(acc);
        }
        norm_moments(mode, sum, squares, d, eps, &mean, &inv);
        const __m512 vmean = _mm512_set1_ps(mean), vinv = _mm512_set1_ps(inv);
        for (int i = 0; i < nv; i++) {
            __m512 t = _mm512_mul_ps(_mm512_sub_ps(v[i], vmean), vinv);
            if (w) t = _mm512_mul_ps(t, vw[i]);
            if (b) t = _mm512_add_ps(t, vb[i]);
            if (sc) t = _mm512_mul_ps(t, vs[i]);
            if (sf) t = _mm512_add_ps(t, vf[i]);
            _mm512_mask_storeu_ps(o + 16 * i, k[i], t);
        }
    }
}

AVX512 static void rope_row_avx512(const float *x, float *out, size_t heads, size_t d, const float *cs,
                                   const float *sn, int split) {
    const __m512i even_sign = _mm512_set1_epi64((long long)0x0000000080000000ULL);
    for (size_t h = 0; h < heads; h++) {
        const float *xi = x + h * d;
        float *o = out + h * d;
        if (split) {
            size_t half = d / 2;
            for (size_t i = 0; i < half; i += 16) {
                __mmask16 k = tail_mask(i, half);
                __m512 a = _mm512_maskz_loadu_ps(k, xi + i), bb = _mm512_maskz_loadu_ps(k, xi + i + half);
                __m512 lo = _mm512_sub_ps(_mm512_mul_ps(a, _mm512_maskz_loadu_ps(k, cs + i)),
                                          _mm512_mul_ps(bb, _mm512_maskz_loadu_ps(k, sn + i)));
                __m512 hi = _mm512_add_ps(_mm512_mul_ps(bb, _mm512_maskz_loadu_ps(k, cs + i + half)),
                                          _mm512_mul_ps(a, _mm512_maskz_loadu_ps(k, sn + i + half)));
                _mm512_mask_storeu_ps(o + i, k, lo);
                _mm512_mask_storeu_ps(o + i + half, k, hi);
            }
        } else {
            for (size_t i = 0; i < d; i += 16) {
                __mmask16 k = tail_mask(i, d);
                __m512 v = _mm512_maskz_loadu_ps(k, xi + i);
                __m512 swapped = _mm512_permute_ps(v, 0xB1);
                __m512 t = _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(_mm512_mul_ps(swapped, _mm512_maskz_loadu_ps(k, sn + i))), even_sign));
                _mm512_mask_storeu_ps(o + i, k, _mm512_add_ps(_mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, cs + i)), t));
            }
        }
    }
}
#endif

/* ---------- dispatch ---------- */

void ck_norm_rows_level(int level, const float *x, int64_t ldx, float *out, int64_t ldo, size_t count, size_t d,
                        int mode, float eps, const float *weight, const float *bias, const float *scale,
                        const float *shift) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2:
        if (d <= 64) {
            norm_short_rows_avx512(x, ldx, out, ldo, count, d, mode, eps, weight, bias, scale, shift);
            return;
        }
        for (size_t r = 0; r < count; r++)
            norm_row_avx512(x + (int64_t)r * ldx, out + (int64_t)r * ldo, d, mode, eps, weight, bias, scale, shift);
        return;
    case 1:
        for (size_t r = 0; r < count; r++)
            norm_row_avx2(x + (int64_t)r * ldx, out + (int64_t)r * ldo, d, mode, eps, weight, bias, scale, shift);
        return;
#endif
    default:
        for (size_t r = 0; r < count; r++)
            norm_row_portable(x + (int64_t)r * ldx, out + (int64_t)r * ldo, d, mode, eps, weight, bias, scale, shift);
    }
}

void ck_norm_rows(const float *x, int64_t ldx, float *out, int64_t ldo, size_t count, size_t d, int mode, float eps,
                  const float *weight, const float *bias, const float *scale, const float *shift) {
    ck_norm_rows_level(2, x, ldx, out, ldo, count, d, mode, eps, weight, bias, scale, shift);
}

void ck_rope_row_level(int level, const float *x, float *out, size_t heads, size_t d, const float *cos,
                       const float *sin, int split_halves) {
    switch (clamp_level(level)) {
#if defined(__x86_64__) || defined(__i386__)
    case 2: rope_row_avx512(x, out, heads, d, cos, sin, split_halves); return;
    case 1: rope_row_avx2(x, out, heads, d, cos, sin, split_halves); return;
#endif
    default: rope_row_portable(x, out, heads, d, cos, sin, split_halves, 0);
    }
}

void ck_rope_row(const float *x, float *out, size_t heads, size_t d, const float *cos, const float *sin,
                 int split_halves) {
    ck_rope_row_level(2, x, out, heads, d, cos, sin, split_halves);
}
