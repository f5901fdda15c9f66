/* Fused (flash-style) attention of one head: scores, online softmax and the probability-weighted sum of
   values computed block by block in a small workspace, never the whole score matrix. See ckernels.h. */
#include "ckernels.h"
#include "ckmath.h"
#include <stdint.h>

/* The bias and key mask of one block of scores st [nb keys][mt query columns] (keys j0 ..., queries i0 ...;
   mr real queries, cols columns in use): bias (bias_ldq 0: one row for every query) added, keys whose mask
   entry is 0 set to −∞. Shared by every version (a small part of a block's work). */
static void apply_bias_and_mask(float *st, size_t mt, size_t nb, size_t mr, size_t cols, size_t j0, size_t i0,
                                const float *bias, int64_t bias_ldq, const float *keymask) {
    if (bias && bias_ldq == 0) {
        for (size_t j = 0; j < nb; j++)
            for (size_t i = 0; i < cols; i++) st[j * mt + i] += bias[j0 + j];
    } else if (bias) {
        for (size_t i = 0; i < mr; i++) {
            const float *brow = bias + (int64_t)(i0 + i) * bias_ldq + (int64_t)j0;
            for (size_t j = 0; j < nb; j++) st[j * mt + i] += brow[j];
        }
    }
    if (keymask)
        for (size_t j = 0; j < nb; j++)
            if (keymask[j0 + j] == 0.0f)
                for (size_t i = 0; i < cols; i++) st[j * mt + i] = -INFINITY;
}

/* The start of a query tile (columns cols of mt): its output accumulator ot [dh][mt] zeroed, the running
   maxima m at −∞ and the sums l at 0. */
static void start_tile(float *ot, size_t mt, size_t dh, size_t cols, float *m, float *l) {
    for (size_t d = 0; d < dh; d++)
        for (size_t i = 0; i < cols; i++) ot[d * mt + i] = 0.0f;
    for (size_t i = 0; i < cols; i++) { m[i] = -INFINITY; l[i] = 0.0f; }
}

/* The end of a query tile: each of the mr sums l becomes 1/l (0 for a query with no key), the factor its
   output row is scaled by. */
static void invert_sums(float *l, size_t mr) {
    for (size_t i = 0; i < mr; i++) l[i] = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
}

/* ck_bf16_pairs without AVX512_BF16, element by element through ck_f32_to_bf16. */
static void bf16_pairs_portable(const float *r0, const float *r1, uint32_t *out, size_t n) {
    uint16_t a, b;
    for (size_t i = 0; i < n; i++) {
        ck_f32_to_bf16(r0 + i, &a, 1);
        if (r1) ck_f32_to_bf16(r1 + i, &b, 1); else b = 0;
        out[i] = (uint32_t)a | ((uint32_t)b << 16);
    }
}

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
#define V_HSUM(x) (x)
#include "attention_impl.h"

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
#define V_HSUM(x) hsum_avx2(x)
#define V_TRANSPOSE(b) transpose8_avx2(b)
/* An 8 × 8 block of rows b[0..7] transposed in registers. */
AVX2 static inline void transpose8_avx2(__m256 b[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(b[2 * i], b[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(b[2 * i], b[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) { /* u[4i + k], lane L: column 4L + k of rows 4i ... 4i + 3 */
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        b[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        b[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}
#include "attention_impl.h"

/* ---------- AVX-512F: 16 lanes, register tiles of 6 × 4 vectors (29 of 32 registers) ---------- */

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
#define V_EXP(x) exp_scalef_avx512(x)
#define V_NEGINF_TO_ZERO(x) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((x), _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ), \
                                                 (x), _mm512_setzero_ps())
#define V_HSUM(x) _mm512_reduce_add_ps(x)
#define V_TRANSPOSE(b) transpose16_avx512(b)
/* A 16 × 16 block of rows b[0..15] transposed in registers. */
AVX512 static inline void transpose16_avx512(__m512 b[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(b[2 * i], b[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(b[2 * i], b[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* u[4i + k], 128-bit lane L: column 4L + k of rows 4i ... 4i + 3 */
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2])));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2])));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4 * i + 1]), _mm512_castps_pd(t[4 * i + 3])));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4 * i + 1]), _mm512_castps_pd(t[4 * i + 3])));
    }
    for (int k = 0; k < 4; k++) { /* row 4L + k gathers lane L of u[k], u[4 + k], u[8 + k], u[12 + k] */
        __m512 s0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), s1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
        __m512 s2 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88), s3 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
        b[k] = _mm512_shuffle_f32x4(s0, s2, 0x88);
        b[8 + k] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
        b[4 + k] = _mm512_shuffle_f32x4(s1, s3, 0x88);
        b[12 + k] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
    }
}
#include "attention_impl.h"
#endif

size_t ck_attention_workspace_floats(size_t dh) {
    const size_t mt = 64; /* the widest tile: 4 vectors of 16 lanes */
    size_t f32 = 2 * mt * dh + CK_ATTENTION_KEY_BLOCK * mt + 4 * mt;
    /* bf16: ot, st, m/l/corr/bmax, then the query pairs and the probability pairs (32-bit each) */
    size_t bf16 = mt * dh + CK_ATTENTION_KEY_BLOCK * mt + 4 * mt + mt * ((dh + 1) / 2)
                  + mt * ((CK_ATTENTION_KEY_BLOCK + 1) / 2);
    return f32 > bf16 ? f32 : bf16;
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

/* ---------- bf16 operands (AVX512_BF16): vdpbf16ps on pairs ---------- */

#if defined(__x86_64__)
#include <string.h>
#define BF16ATTR __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define BMT 64 /* queries of one tile: 4 vectors of 16 lanes */

int ck_attention_bf16_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && ck_cpu_has_avx512_bf16();
}

/* 16 pairs (bf16(x[l]), bf16(y[l])), x in the low half of each 32-bit lane; rounded to nearest even. */
BF16ATTR static inline __m512i pair_bf16(__m512 x, __m512 y) {
    static const uint16_t interleave[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                            8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(y, x); /* words 0-15: x, 16-31: y */
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(interleave), both);
}

BF16ATTR static void bf16_pairs_avx512(const float *r0, const float *r1, uint32_t *out, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(k, r0 + i);
        __m512 y = r1 ? _mm512_maskz_loadu_ps(k, r1 + i) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(out + i, k, pair_bf16(x, y));
    }
}

void ck_bf16_pairs(const float *r0, const float *r1, uint32_t *out, size_t n) {
    if (ck_attention_bf16_available()) { bf16_pairs_avx512(r0, r1, out, n); return; }
    bf16_pairs_portable(r0, r1, out, n);
}

/* st[r][c] = scale · Σ_p qtp[p][c] · k[r][2p..2p+1] for nk keys and nv vectors; bmax as in qk_tile. */
BF16ATTR static inline __attribute__((always_inline)) void qk_tile_bf16(const uint32_t *qtp, const uint16_t *k,
                                                                       int64_t ldk, size_t npairs, float scale,
                                                                       float *st, float *bmax, const int nk,
                                                                       const int nv) {
    __m512 acc[6][4];
    for (int r = 0; r < nk; r++)
        for (int c = 0; c < nv; c++) acc[r][c] = _mm512_setzero_ps();
    for (size_t p = 0; p < npairs; p++) {
        __m512bh qv[4];
        for (int c = 0; c < nv; c++) qv[c] = (__m512bh)_mm512_loadu_si512(qtp + p * BMT + c * 16);
        for (int r = 0; r < nk; r++) {
            uint32_t kk;
            memcpy(&kk, k + r * ldk + 2 * (int64_t)p, sizeof kk);
            __m512bh kb = (__m512bh)_mm512_set1_epi32((int)kk);
            for (int c = 0; c < nv; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], qv[c], kb);
        }
    }
    __m512 vs = _mm512_set1_ps(scale);
    for (int r = 0; r < nk; r++)
        for (int c = 0; c < nv; c++) {
            acc[r][c] = _mm512_mul_ps(acc[r][c], vs);
            _mm512_storeu_ps(st + r * BMT + c * 16, acc[r][c]);
        }
    if (bmax)
        for (int c = 0; c < nv; c++) {
            __m512 mx = _mm512_loadu_ps(bmax + c * 16);
            for (int r = 0; r < nk; r++) mx = _mm512_max_ps(mx, acc[r][c]);
            _mm512_storeu_ps(bmax + c * 16, mx);
        }
}

/* ot[r][c] = ot[r][c] · corr[c] + Σ_t ptp[t][c] · vp[t][r] for nd dimensions and nv vectors. */
BF16ATTR static inline __attribute__((always_inline)) void pv_tile_bf16(const uint32_t *ptp, const uint32_t *vp,
                                                                       int64_t ldvp, size_t npairs, float *ot,
                                                                       const float *corr, const int nd,
                                                                       const int nv) {
    __m512 acc[6][4];
    for (int c = 0; c < nv; c++) {
        __m512 cr = _mm512_loadu_ps(corr + c * 16);
        for (int r = 0; r < nd; r++) acc[r][c] = _mm512_mul_ps(_mm512_loadu_ps(ot + r * BMT + c * 16), cr);
    }
    for (size_t t = 0; t < npairs; t++) {
        __m512bh pv[4];
        for (int c = 0; c < nv; c++) pv[c] = (__m512bh)_mm512_loadu_si512(ptp + t * BMT + c * 16);
        for (int r = 0; r < nd; r++) {
            __m512bh vb = (__m512bh)_mm512_set1_epi32((int)vp[(int64_t)t * ldvp + r]);
            for (int c = 0; c < nv; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], pv[c], vb);
        }
    }
    for (int r = 0; r < nd; r++)
        for (int c = 0; c < nv; c++) _mm512_storeu_ps(ot + r * BMT + c * 16, acc[r][c]);
}

#define B_NV_CASES(CALL, NK) case 1: CALL(NK, 1); break; case 2: CALL(NK, 2); break; case 3: CALL(NK, 3); break; default: CALL(NK, 4); break;
#define B_TILE_SWITCH(CALL, nk, nv) switch (nk) { \
    case 1: switch (nv) { B_NV_CASES(CALL, 1) } break; case 2: switch (nv) { B_NV_CASES(CALL, 2) } break; \
    case 3: switch (nv) { B_NV_CASES(CALL, 3) } break; case 4: switch (nv) { B_NV_CASES(CALL, 4) } break; \
    case 5: switch (nv) { B_NV_CASES(CALL, 5) } break; default: switch (nv) { B_NV_CASES(CALL, 6) } break; }

BF16ATTR static void qk_block_bf16(const uint32_t *qtp, const uint16_t *k, int64_t ldk, size_t nb, size_t dh,
                                   float scale, float *st, float *bmax, int nvt) {
    if (bmax)
        for (int i = 0; i < nvt * 16; i++) bmax[i] = -INFINITY;
    for (int c0 = 0; c0 < nvt; c0 += 4) {
        int nv = nvt - c0 < 4 ? nvt - c0 : 4;
        for (size_t j = 0; j < nb; j += 6) {
            int nk = nb - j < 6 ? (int)(nb - j) : 6;
#define QKB(NK, NV) qk_tile_bf16(qtp + c0 * 16, k + (int64_t)j * ldk, ldk, dh / 2, scale, st + j * BMT + c0 * 16, \
                                 bmax ? bmax + c0 * 16 : NULL, NK, NV)
            B_TILE_SWITCH(QKB, nk, nv)
#undef QKB
        }
    }
}

BF16ATTR static void pv_block_bf16(const uint32_t *ptp, const uint32_t *vp, int64_t ldvp, size_t npairs, size_t dh,
                                   float *ot, const float *corr, int nvt) {
    for (int c0 = 0; c0 < nvt; c0 += 4) {
        int nv = nvt - c0 < 4 ? nvt - c0 : 4;
        for (size_t d = 0; d < dh; d += 6) {
            int nd = dh - d < 6 ? (int)(dh - d) : 6;
#define PVB(ND, NV) pv_tile_bf16(ptp + c0 * 16, vp + d, ldvp, npairs, ot + d * BMT + c0 * 16, corr + c0 * 16, ND, NV)
            B_TILE_SWITCH(PVB, nd, nv)
#undef PVB
        }
    }
}

#undef B_NV_CASES
#undef B_TILE_SWITCH

/* The online softmax step of attention_impl.h's softmax_block, the probabilities written as bf16 pairs of
   consecutive keys (ptp [nb/2 rounded up][BMT]; an odd block's last pair ends in 0). The sum is of the
   float32 probabilities. */
BF16ATTR static void softmax_block_bf16(const float *st, size_t nb, const float *bmax, float *m, float *l,
                                        float *corr, uint32_t *ptp, int nvt) {
    for (int c = 0; c < nvt; c++) {
        __m512 bm;
        if (bmax) {
            bm = _mm512_loadu_ps(bmax + c * 16);
        } else {
            bm = _mm512_set1_ps(-INFINITY);
            for (size_t j = 0; j < nb; j++) bm = _mm512_max_ps(bm, _mm512_loadu_ps(st + j * BMT + c * 16));
        }
        __m512 mo = _mm512_loadu_ps(m + c * 16);
        __m512 mn = _mm512_max_ps(mo, bm);
        __m512 ms = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(mn, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ), mn,
                                         _mm512_setzero_ps());
        __m512 cr = exp_scalef_avx512(_mm512_sub_ps(mo, ms));
        __m512 sum = _mm512_setzero_ps();
        for (size_t j = 0; j < nb; j += 2) {
            __m512 x = exp_scalef_avx512(_mm512_sub_ps(_mm512_loadu_ps(st + j * BMT + c * 16), ms));
            __m512 y = j + 1 < nb ? exp_scalef_avx512(_mm512_sub_ps(_mm512_loadu_ps(st + (j + 1) * BMT + c * 16), ms))
                                  : _mm512_setzero_ps();
            sum = _mm512_add_ps(sum, _mm512_add_ps(x, y));
            _mm512_storeu_si512(ptp + (j / 2) * BMT + c * 16, pair_bf16(x, y));
        }
        _mm512_storeu_ps(l + c * 16, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(l + c * 16), cr), sum));
        _mm512_storeu_ps(m + c * 16, mn);
        _mm512_storeu_ps(corr + c * 16, cr);
    }
}

BF16ATTR static void attention_bf16_avx512(const uint16_t *q, int64_t ldq, const uint16_t *k, int64_t ldk,
                                           const uint32_t *vp, int64_t ldvp, float *out, int64_t ldo, size_t rows,
                                           size_t keys, size_t dh, float scale, const float *bias, int64_t bias_ldq,
                                           const float *keymask, float *work) {
    const size_t npairs_d = dh / 2;
    float *ot = work, *st = ot + BMT * dh;
    float *m = st + CK_ATTENTION_KEY_BLOCK * BMT, *l = m + BMT, *corr = l + BMT, *bmax = corr + BMT;
    uint32_t *qtp = (uint32_t *)(bmax + BMT), *ptp = qtp + BMT * npairs_d;
    float *fused_max = bias || keymask ? NULL : bmax;
    for (size_t i0 = 0; i0 < rows; i0 += BMT) {
        size_t mr = rows - i0 < BMT ? rows - i0 : BMT;
        int nvt = (int)((mr + 15) / 16);
        size_t cols = (size_t)nvt * 16;
        /* The queries' bf16 pairs are 32-bit values: transposed as floats (moved, never computed on). */
        transpose_avx512((const float *)(q + (int64_t)i0 * ldq), ldq / 2, mr, npairs_d, (float *)qtp, BMT, NULL);
        for (size_t p = 0; p < npairs_d; p++)
            for (size_t i = mr; i < cols; i++) qtp[p * BMT + i] = 0;
        start_tile(ot, BMT, dh, cols, m, l);
        for (size_t j0 = 0; j0 < keys; j0 += CK_ATTENTION_KEY_BLOCK) {
            size_t nb = keys - j0 < CK_ATTENTION_KEY_BLOCK ? keys - j0 : CK_ATTENTION_KEY_BLOCK;
            qk_block_bf16(qtp, k + (int64_t)j0 * ldk, ldk, nb, dh, scale, st, fused_max, nvt);
            if (bias || keymask) apply_bias_and_mask(st, BMT, nb, mr, cols, j0, i0, bias, bias_ldq, keymask);
            softmax_block_bf16(st, nb, fused_max, m, l, corr, ptp, nvt);
            pv_block_bf16(ptp, vp + (int64_t)(j0 / 2) * ldvp, ldvp, (nb + 1) / 2, dh, ot, corr, nvt);
        }
        invert_sums(l, mr);
        transpose_avx512(ot, BMT, dh, mr, out + (int64_t)i0 * ldo, ldo, l);
    }
}

int ck_attention_bf16(const uint16_t *q, int64_t ldq, const uint16_t *k, int64_t ldk, const uint32_t *vpairs,
                      int64_t ldvp, float *out, int64_t ldo, size_t rows, size_t keys, size_t dh, float scale,
                      const float *bias, int64_t bias_ldq, const float *keymask, float *work) {
    if (dh % 2 != 0 || ldq % 2 != 0 || ((uintptr_t)q & 3) != 0 || keys <= CK_ATTENTION_FEW_KEYS
        || !ck_attention_bf16_available())
        return 0;
    attention_bf16_avx512(q, ldq, k, ldk, vpairs, ldvp, out, ldo, rows, keys, dh, scale, bias, bias_ldq, keymask, work);
    return 1;
}
#else
int ck_attention_bf16_available(void) { return 0; }
void ck_bf16_pairs(const float *r0, const float *r1, uint32_t *out, size_t n) { bf16_pairs_portable(r0, r1, out, n); }
int ck_attention_bf16(const uint16_t *q, int64_t ldq, const uint16_t *k, int64_t ldk, const uint32_t *vpairs,
                      int64_t ldvp, float *out, int64_t ldo, size_t rows, size_t keys, size_t dh, float scale,
                      const float *bias, int64_t bias_ldq, const float *keymask, float *work) {
    return 0;
}
#endif
