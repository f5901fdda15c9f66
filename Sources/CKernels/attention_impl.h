/* One vector width of the fused attention of attention.c, included once per width. The includer defines:
   VF (the vector type), W (its lanes), RV (vectors in a register tile), KR (key or value rows in a register
   tile, at most 6), ATTR (the target attribute),
   SFX(name) (the width's name suffix), RV4 (1 when RV is 4) and the operations V_LOAD(p), V_STORE(p, v),
   V_SET1(x), V_ZERO(), V_ADD, V_SUB, V_MUL, V_FMA(a, b, c) = a·b + c, V_MAX, V_EXP, V_NEGINF_TO_ZERO(v)
   (−∞ lanes become 0) and V_HSUM(v) (the sum of the lanes); V_TRANSPOSE(b) optionally. All are #undef'd at
   the end.

   Layout of one tile of MT = 4·W queries (columns) in the workspace: qt [dh][MT] the queries transposed,
   st [NB][MT] one key block's scores then probabilities, ot [dh][MT] the unnormalised output transposed,
   m / l / corr / bmax [MT] the running maximum, the running sum, the last block's rescaling factor and the
   block's maximum. Columns
   are queries, so every softmax step is element-wise across vectors (no horizontal reductions). */

#define MT (4 * W)

/* dst[c·ldd + r] = src[r·lds + c] · (cs ? cs[c] : 1) for r < nr, c < nc: W × W blocks through registers
   where the width defines V_TRANSPOSE, the edges element by element. With cs NULL values are only moved
   (bit patterns kept), so 32-bit pairs of bf16 can pass through as floats. */
ATTR static void SFX(transpose)(const float *src, int64_t lds, size_t nr, size_t nc, float *dst, int64_t ldd,
                                const float *cs) {
    size_t r0 = 0;
#ifdef V_TRANSPOSE
    for (; r0 + W <= nr; r0 += W) {
        size_t c0 = 0;
        for (; c0 + W <= nc; c0 += W) {
            VF b[W];
            for (int r = 0; r < W; r++) b[r] = V_LOAD(src + (int64_t)(r0 + r) * lds + (int64_t)c0);
            V_TRANSPOSE(b);
            for (int c = 0; c < W; c++)
                V_STORE(dst + (int64_t)(c0 + c) * ldd + (int64_t)r0, cs ? V_MUL(b[c], V_SET1(cs[c0 + c])) : b[c]);
        }
        for (; c0 < nc; c0++)
            for (size_t r = r0; r < r0 + W; r++)
                dst[(int64_t)c0 * ldd + (int64_t)r] = cs ? src[(int64_t)r * lds + (int64_t)c0] * cs[c0] : src[(int64_t)r * lds + (int64_t)c0];
    }
#endif
    for (; r0 < nr; r0++)
#pragma clang loop vectorize(disable) interleave(disable)
        for (size_t c = 0; c < nc; c++)
            dst[(int64_t)c * ldd + (int64_t)r0] = cs ? src[(int64_t)r0 * lds + (int64_t)c] * cs[c] : src[(int64_t)r0 * lds + (int64_t)c];
}

/* st[r][c] = scale · Σ_d qt[d][c] · k[r][d] for nk keys (rows of k) and nv vectors of queries; bmax[c]
   (when not NULL) becomes the maximum of itself and the new scores of column c. */
ATTR static inline __attribute__((always_inline)) void SFX(qk_tile)(const float *qt, const float *k, int64_t ldk,
                                                                   size_t dh, float scale, float *st, float *bmax,
                                                                   const int nk, const int nv) {
    VF acc[KR][RV];
    for (int r = 0; r < nk; r++)
        for (int c = 0; c < nv; c++) acc[r][c] = V_ZERO();
    for (size_t d = 0; d < dh; d++) {
        VF qv[RV];
        for (int c = 0; c < nv; c++) qv[c] = V_LOAD(qt + d * MT + c * W);
        for (int r = 0; r < nk; r++) {
            VF kb = V_SET1(k[r * ldk + (int64_t)d]);
            for (int c = 0; c < nv; c++) acc[r][c] = V_FMA(qv[c], kb, acc[r][c]);
        }
    }
    VF vs = V_SET1(scale);
    for (int r = 0; r < nk; r++)
        for (int c = 0; c < nv; c++) {
            acc[r][c] = V_MUL(acc[r][c], vs);
            V_STORE(st + r * MT + c * W, acc[r][c]);
        }
    if (bmax)
        for (int c = 0; c < nv; c++) {
            VF mx = V_LOAD(bmax + c * W);
            for (int r = 0; r < nk; r++) mx = V_MAX(mx, acc[r][c]);
            V_STORE(bmax + c * W, mx);
        }
}

/* ot[r][c] = ot[r][c] · corr[c] + Σ_j st[j][c] · v[j][r] for nd output dimensions and nv vectors. */
ATTR static inline __attribute__((always_inline)) void SFX(pv_tile)(const float *st, const float *v, int64_t ldv,
                                                                   size_t nb, float *ot, const float *corr,
                                                                   const int nd, const int nv) {
    VF acc[KR][RV];
    for (int c = 0; c < nv; c++) {
        VF cr = V_LOAD(corr + c * W);
        for (int r = 0; r < nd; r++) acc[r][c] = V_MUL(V_LOAD(ot + r * MT + c * W), cr);
    }
    for (size_t j = 0; j < nb; j++) {
        VF pv[RV];
        for (int c = 0; c < nv; c++) pv[c] = V_LOAD(st + j * MT + c * W);
        for (int r = 0; r < nd; r++) {
            VF vb = V_SET1(v[(int64_t)j * ldv + r]);
            for (int c = 0; c < nv; c++) acc[r][c] = V_FMA(pv[c], vb, acc[r][c]);
        }
    }
    for (int r = 0; r < nd; r++)
        for (int c = 0; c < nv; c++) V_STORE(ot + r * MT + c * W, acc[r][c]);
}

#if RV4
#define SFX_NV_CASES(CALL, NK) case 1: CALL(NK, 1); break; case 2: CALL(NK, 2); break; case 3: CALL(NK, 3); break; default: CALL(NK, 4); break;
#else
#define SFX_NV_CASES(CALL, NK) case 1: CALL(NK, 1); break; default: CALL(NK, 2); break;
#endif
/* CALL(nk, nv) with both compile-time constants: nk = 1 ... KR rows, nv = 1 ... RV vectors. */
#if KR == 6
#define SFX_TILE_SWITCH(CALL, nk, nv) switch (nk) { \
    case 1: switch (nv) { SFX_NV_CASES(CALL, 1) } break; case 2: switch (nv) { SFX_NV_CASES(CALL, 2) } break; \
    case 3: switch (nv) { SFX_NV_CASES(CALL, 3) } break; case 4: switch (nv) { SFX_NV_CASES(CALL, 4) } break; \
    case 5: switch (nv) { SFX_NV_CASES(CALL, 5) } break; default: switch (nv) { SFX_NV_CASES(CALL, 6) } break; }
#else
#define SFX_TILE_SWITCH(CALL, nk, nv) switch (nk) { \
    case 1: switch (nv) { SFX_NV_CASES(CALL, 1) } break; case 2: switch (nv) { SFX_NV_CASES(CALL, 2) } break; \
    case 3: switch (nv) { SFX_NV_CASES(CALL, 3) } break; default: switch (nv) { SFX_NV_CASES(CALL, 4) } break; }
#endif

/* The scores of nb keys for nvt vectors of queries: tiles of KR keys, then one of the rest. With bmax,
   also each column's maximum (bmax is set to −∞ first). */
ATTR static void SFX(qk_block)(const float *qt, const float *k, int64_t ldk, size_t nb, size_t dh, float scale,
                               float *st, float *bmax, int nvt) {
    if (bmax)
        for (int i = 0; i < nvt * W; i++) bmax[i] = -INFINITY;
    for (int c0 = 0; c0 < nvt; c0 += RV) {
        int nv = nvt - c0 < RV ? nvt - c0 : RV;
        for (size_t j = 0; j < nb; j += KR) {
            int nk = nb - j < KR ? (int)(nb - j) : KR;
#define QK(NK, NV) SFX(qk_tile)(qt + c0 * W, k + (int64_t)j * ldk, ldk, dh, scale, st + j * MT + c0 * W, \
                                    bmax ? bmax + c0 * W : NULL, NK, NV)
            SFX_TILE_SWITCH(QK, nk, nv)
#undef QK
        }
    }
}

/* ot = ot · corr + the probability-weighted sum of nb value rows, for nvt vectors of queries: tiles of KR
   output dimensions, then one of the rest. */
ATTR static void SFX(pv_block)(const float *st, const float *v, int64_t ldv, size_t nb, size_t dh, float *ot,
                               const float *corr, int nvt) {
    for (int c0 = 0; c0 < nvt; c0 += RV) {
        int nv = nvt - c0 < RV ? nvt - c0 : RV;
        for (size_t d = 0; d < dh; d += KR) {
            int nd = dh - d < KR ? (int)(dh - d) : KR;
#define PV(ND, NV) SFX(pv_tile)(st + c0 * W, v + d, ldv, nb, ot + d * MT + c0 * W, corr + c0 * W, ND, NV)
            SFX_TILE_SWITCH(PV, nd, nv)
#undef PV
        }
    }
}

#undef SFX_NV_CASES
#undef SFX_TILE_SWITCH

/* The online softmax step of one key block: the running maximum and sum of every query column are
   updated, st becomes exp(s − m), and corr = exp(m_old − m_new) rescales what ot holds. A column whose
   keys so far are all −∞ keeps m = −∞, l = 0 and probabilities 0. bmax: the block's column maxima when
   known, else NULL. */
ATTR static void SFX(softmax_block)(float *st, size_t nb, const float *bmax, float *m, float *l, float *corr,
                                    int nvt) {
    for (int c = 0; c < nvt; c++) {
        VF bm;
        if (bmax) {
            bm = V_LOAD(bmax + c * W);
        } else {
            bm = V_SET1(-INFINITY);
            for (size_t j = 0; j < nb; j++) bm = V_MAX(bm, V_LOAD(st + j * MT + c * W));
        }
        VF mo = V_LOAD(m + c * W);
        VF mn = V_MAX(mo, bm);
        VF ms = V_NEGINF_TO_ZERO(mn);
        VF cr = V_EXP(V_SUB(mo, ms));
        VF sum = V_ZERO();
        for (size_t j = 0; j < nb; j++) {
            VF p = V_EXP(V_SUB(V_LOAD(st + j * MT + c * W), ms));
            V_STORE(st + j * MT + c * W, p);
            sum = V_ADD(sum, p);
        }
        V_STORE(l + c * W, V_ADD(V_MUL(V_LOAD(l + c * W), cr), sum));
        V_STORE(m + c * W, mn);
        V_STORE(corr + c * W, cr);
    }
}

ATTR static void SFX(attention_rows)(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                                     int64_t ldv, float *out, int64_t ldo, size_t rows, size_t keys, size_t dh,
                                     float scale, const float *bias, int64_t bias_ldq, const float *keymask);

ATTR static void SFX(attention)(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                                int64_t ldv, float *out, int64_t ldo, size_t rows, size_t keys, size_t dh,
                                float scale, const float *bias, int64_t bias_ldq, const float *keymask,
                                float *work) {
    if (keys <= CK_ATTENTION_FEW_KEYS) {
        SFX(attention_rows)(q, ldq, k, ldk, v, ldv, out, ldo, rows, keys, dh, scale, bias, bias_ldq, keymask);
        return;
    }
    float *qt = work, *ot = qt + MT * dh, *st = ot + MT * dh;
    float *m = st + CK_ATTENTION_KEY_BLOCK * MT, *l = m + MT, *corr = l + MT, *bmax = corr + MT;
    /* The block maxima come with the scores unless a bias or mask changes the scores afterwards. */
    float *fused_max = bias || keymask ? NULL : bmax;
    for (size_t i0 = 0; i0 < rows; i0 += MT) {
        size_t mr = rows - i0 < MT ? rows - i0 : MT;
        int nvt = (int)((mr + W - 1) / W);
        size_t cols = (size_t)nvt * W; /* the columns in use: mr queries and the padding of the last vector */
        SFX(transpose)(q + (int64_t)i0 * ldq, ldq, mr, dh, qt, MT, NULL);
        for (size_t d = 0; d < dh; d++)
            for (size_t i = mr; i < cols; i++) qt[d * MT + i] = 0.0f;
        start_tile(ot, MT, dh, cols, m, l);
        for (size_t j0 = 0; j0 < keys; j0 += CK_ATTENTION_KEY_BLOCK) {
            size_t nb = keys - j0 < CK_ATTENTION_KEY_BLOCK ? keys - j0 : CK_ATTENTION_KEY_BLOCK;
            SFX(qk_block)(qt, k + (int64_t)j0 * ldk, ldk, nb, dh, scale, st, fused_max, nvt);
            if (bias || keymask) apply_bias_and_mask(st, MT, nb, mr, cols, j0, i0, bias, bias_ldq, keymask);
            SFX(softmax_block)(st, nb, fused_max, m, l, corr, nvt);
            SFX(pv_block)(st, v + (int64_t)j0 * ldv, ldv, nb, dh, ot, corr, nvt);
        }
        invert_sums(l, mr);
        SFX(transpose)(ot, MT, dh, mr, out + (int64_t)i0 * ldo, ldo, l);
    }
}

/* Few keys (at most CK_ATTENTION_FEW_KEYS): query by query, each score a dot product vectorised over the
   head dimension and the output a sum of value rows — no tiles to fill and empty (temporal attention
   over a few frames is thousands of such heads). Same results as the tiled path up to summation order. */
ATTR static void SFX(attention_rows)(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                                     int64_t ldv, float *out, int64_t ldo, size_t rows, size_t keys, size_t dh,
                                     float scale, const float *bias, int64_t bias_ldq, const float *keymask) {
    float s[CK_ATTENTION_FEW_KEYS + W];
    for (size_t i = 0; i < rows; i++) {
        const float *qrow = q + (int64_t)i * ldq;
        float *orow = out + (int64_t)i * ldo;
        float mx = -INFINITY;
        for (size_t j = 0; j < keys; j++) {
            const float *krow = k + (int64_t)j * ldk;
            VF acc = V_ZERO();
            size_t d = 0;
            for (; d + W <= dh; d += W) acc = V_FMA(V_LOAD(qrow + d), V_LOAD(krow + d), acc);
            float dot = V_HSUM(acc);
            for (; d < dh; d++) dot += qrow[d] * krow[d];
            float sc = scale * dot;
            if (bias) sc += bias[(int64_t)i * bias_ldq + (int64_t)j];
            if (keymask && keymask[j] == 0.0f) sc = -INFINITY;
            s[j] = sc;
            if (sc > mx) mx = sc;
        }
        float sum = 0.0f;
        if (mx == -INFINITY) {
            for (size_t d = 0; d < dh; d++) orow[d] = 0.0f;
            continue;
        }
        for (size_t j = keys; j < keys + W; j++) s[j] = -INFINITY; /* the last vector's padding: exp gives 0 */
        VF vm = V_SET1(mx);
        for (size_t j = 0; j < keys; j += W) V_STORE(s + j, V_EXP(V_SUB(V_LOAD(s + j), vm)));
        for (size_t j = 0; j < keys; j++) sum += s[j];
        const float inv = 1.0f / sum;
        size_t d = 0;
        for (; d + W <= dh; d += W) {
            VF o = V_ZERO();
            for (size_t j = 0; j < keys; j++) o = V_FMA(V_SET1(s[j]), V_LOAD(v + (int64_t)j * ldv + d), o);
            V_STORE(orow + d, V_MUL(o, V_SET1(inv)));
        }
        for (; d < dh; d++) {
            float o = 0.0f;
            for (size_t j = 0; j < keys; j++) o += s[j] * v[(int64_t)j * ldv + d];
            orow[d] = o * inv;
        }
    }
}

#undef MT
/* The template's parameters, undone so the next width can define its own. */
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
#undef V_HSUM
#undef V_TRANSPOSE
