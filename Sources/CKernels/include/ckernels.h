#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "ckprecision.h"  /* weight storages and the oneDNN bridge */

/* Element-wise kernels whose cost is dominated by exp(): the widest version the CPU supports is chosen
   at run time (AVX-512F, else AVX2+FMA, else portable; function-level target attributes, no build
   flags). All use the same Cephes-style exp (about 1 ulp); element for element they compute the same
   operations, only the softmax sum is accumulated in another order. */

/* Softmax of one row in place. A row whose entries are all -inf becomes all zeros. */
void ck_softmax_row(float *p, size_t n);

/* The unnormalised part of a softmax: p := exp(p - max p) in place; returns 1 / sum(p), to be applied
   later (e.g. to the rows of P·V). A row of only -inf becomes zeros and returns 0. */
float ck_softmax_exp_row(float *p, size_t n);

/* y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); x and y may alias. */
void ck_gelu_tanh(const float *x, float *y, size_t n);

/* y = 0.5 x (1 + erf(x / sqrt 2)), the exact GELU (erf to about 1.2e-7 absolute, Numerical Recipes'
   erfc polynomial); x and y may alias. NaN stays NaN. */
void ck_gelu_erf(const float *x, float *y, size_t n);

/* y = x / (1 + exp(-x)); x and y may alias. */
void ck_silu(const float *x, float *y, size_t n);

/* out = h + x * g element-wise, the product rounded before the sum (no fused multiply-add); out may alias
   h. The gated residual of adaLN-Zero blocks. */
void ck_add_gated(const float *h, const float *x, const float *g, float *out, size_t n);

/* Normalisations of ck_norm_rows. */
#define CK_NORM_NONE 0   /* no normalisation: mean 0, 1/σ = 1 */
#define CK_NORM_LAYER 1  /* LayerNorm: x − mean, over the centred root mean square */
#define CK_NORM_RMS 2    /* RMSNorm: x over the root mean square */

/* `count` rows of d values (row r at x + r·ldx, out + r·ldo), each: out[j] = ((x[j] − mean)·inv)·weight[j] +
   bias[j], then ·(1 + scale[j]) + shift[j], where inv = 1/sqrt(var + eps) (mode CK_NORM_LAYER or
   CK_NORM_RMS, var of the centred or plain values) and each of weight, bias, scale, shift (shared by the
   rows) is left out when NULL. Every operation is rounded on its own (no fused multiply-add), in this
   order; only the row sums differ between versions in their order. out may alias x (ldo = ldx). */
void ck_norm_rows(const float *x, int64_t ldx, float *out, int64_t ldo, size_t count, size_t d, int mode, float eps,
                  const float *weight, const float *bias, const float *scale, const float *shift);

/* Rotary position embedding of one row of `heads` heads of d values (d even), each head rotated with the
   same table rows cos, sin [d]: the pairs (a, b) at (i, i + 1) (split_halves 0, interleaved) or at
   (i, i + d/2) (split_halves 1) become (a·cos_i − b·sin_i, b·cos_j + a·sin_j), j the pair's second index,
   products rounded before the sum. out may alias x. */
void ck_rope_row(const float *x, float *out, size_t heads, size_t d, const float *cos, const float *sin,
                 int split_halves);

/* Keys per block of ck_attention_f32: one block's scores for a tile of 64 queries are 32 KB (in L1). */
#define CK_ATTENTION_KEY_BLOCK 128

/* At most this many keys, ck_attention_f32 works query by query (no tiles); ck_attention_bf16 declines. */
#define CK_ATTENTION_FEW_KEYS 16

/* Floats of workspace one ck_attention_f32 or ck_attention_bf16 call needs for head dimension dh (the same
   for every version). */
size_t ck_attention_workspace_floats(size_t dh);

/* Fused scaled-dot-product attention of one head for `rows` queries (flash-style: scores, an online
   softmax and the probability-weighted sum of values block by block in `work`, never the whole score
   matrix). Row r of q, out: q + r·ldq, out + r·ldo; key/value row j: k + j·ldk, v + j·ldv; dh values each.
   out[r] = Σ_j p_rj v_j with p_r = softmax_j(scale · q_r·k_j + bias_rj), where bias (NULL: none) holds the
   additive bias of query r at bias + r·bias_ldq (bias_ldq 0: one row for every query), and keys whose
   keymask entry is 0 (keymask NULL: none) are left out. A query with every key left out (or −∞) gets 0.
   Requires keys ≥ 1; rows, dh ≥ 0. work: ck_attention_workspace_floats(dh) floats, any alignment. */
void ck_attention_f32(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                      float *out, int64_t ldo, size_t rows, size_t keys, size_t dh, float scale, const float *bias,
                      int64_t bias_ldq, const float *keymask, float *work);

/* 1 when ck_attention_bf16 runs here (AVX-512F, AVX512BW and AVX512_BF16). */
int ck_attention_bf16_available(void);

/* out[i] = bf16(r0[i]) | bf16(r1[i]) << 16 for i < n (rounded to nearest even; r1 NULL: zeros): two rows of
   values as the key pairs ck_attention_bf16 reads. */
void ck_bf16_pairs(const float *r0, const float *r1, uint32_t *out, size_t n);

/* ck_attention_f32 with bf16 operands (AVX512_BF16 dot products, float32 accumulation and softmax): q and k
   are bf16 rows (uint16_t, strides ldq, ldk); the values come as key pairs — vpairs + t·ldvp holds
   ck_bf16_pairs of value rows 2t and 2t+1 (the last pair of an odd count ends in zeros) — and the softmax
   numerators are rounded to bf16 before they weight the values. dh and ldq must be even and q 4-byte
   aligned (the queries are read as 32-bit pairs). Returns 1, or 0 without computing anything when the CPU
   lacks the instructions, one of those does not hold or there are at most
   CK_ATTENTION_FEW_KEYS keys (too few for tiles to pay: take ck_attention_f32). work as for ck_attention_f32. */
int ck_attention_bf16(const uint16_t *q, int64_t ldq, const uint16_t *k, int64_t ldk, const uint32_t *vpairs,
                      int64_t ldvp, float *out, int64_t ldo, size_t rows, size_t keys, size_t dh, float scale,
                      const float *bias, int64_t bias_ldq, const float *keymask, float *work);

/* One item of a parallel loop: task(context, index). */
typedef void (*ck_task)(void *context, size_t index);

/* Runs task(context, i) for every i < n on the calling thread and up to threads − 1 workers of a
   process-wide pool (started on first use, kept for the process), and returns 1 when all have finished.
   Idle workers spin briefly (yielding the core to other runnable threads) before they sleep, so loops
   that follow each other closely start without a system call. Returns 0 without running anything when
   another loop holds the pool (a nested loop, or one started by another thread) or n ≥ 2³² − 1: the
   caller then runs the loop another way. */
int ck_pool_run(size_t n, size_t threads, ck_task task, void *context);

/* The widest version this CPU runs: 0 portable, 1 AVX2+FMA, 2 AVX-512F (at most 1 after ck_limit_to_avx2). */
int ck_level(void);

/* From now on every CKernels dispatch (and ck_precision_level, ck_cpu_has_avx512_bf16,
   ck_attention_bf16_available) answers as an AVX2+FMA CPU without AVX-512 would: for measuring and
   testing what such a CPU runs. Process-wide, one way; call it before the first kernel runs. */
void ck_limit_to_avx2(void);
/* 1 after ck_limit_to_avx2. */
int ck_limited_to_avx2(void);

/* A given version (clamped to what the CPU supports), so tests can compare every path. */
void ck_softmax_row_level(int level, float *p, size_t n);
float ck_softmax_exp_row_level(int level, float *p, size_t n);
void ck_gelu_tanh_level(int level, const float *x, float *y, size_t n);
void ck_silu_level(int level, const float *x, float *y, size_t n);
void ck_gelu_erf_level(int level, const float *x, float *y, size_t n);
void ck_attention_f32_level(int level, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                            int64_t ldv, float *out, int64_t ldo, size_t rows, size_t keys, size_t dh, float scale,
                            const float *bias, int64_t bias_ldq, const float *keymask, float *work);
void ck_add_gated_level(int level, const float *h, const float *x, const float *g, float *out, size_t n);
void ck_norm_rows_level(int level, const float *x, int64_t ldx, float *out, int64_t ldo, size_t count, size_t d,
                        int mode, float eps, const float *weight, const float *bias, const float *scale,
                        const float *shift);
void ck_rope_row_level(int level, const float *x, float *out, size_t heads, size_t d, const float *cos,
                       const float *sin, int split_halves);

/* The portable versions, always available (tests compare both paths). */
void ck_softmax_row_portable(float *p, size_t n);
void ck_gelu_tanh_portable(const float *x, float *y, size_t n);
void ck_silu_portable(const float *x, float *y, size_t n);
void ck_gelu_erf_portable(const float *x, float *y, size_t n);
void ck_add_gated_portable(const float *h, const float *x, const float *g, float *out, size_t n);

#endif
