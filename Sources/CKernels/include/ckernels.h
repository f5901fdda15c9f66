#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>

/* Element-wise kernels whose cost is dominated by exp(): an AVX2+FMA version is chosen at run time
   when the CPU supports it (function-level target attributes, no build flags), a portable version
   otherwise. Both use the same Cephes-style exp (about 1 ulp). */

/* Softmax of one row in place. A row whose entries are all -inf becomes all zeros. */
void ck_softmax_row(float *p, size_t n);

/* y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); x and y may alias. */
void ck_gelu_tanh(const float *x, float *y, size_t n);

/* y = x / (1 + exp(-x)); x and y may alias. */
void ck_silu(const float *x, float *y, size_t n);

/* 1 when the AVX2+FMA versions are in use. */
int ck_vectorized(void);

/* The portable versions, always available (tests compare both paths). */
void ck_softmax_row_portable(float *p, size_t n);
void ck_gelu_tanh_portable(const float *x, float *y, size_t n);
void ck_silu_portable(const float *x, float *y, size_t n);

#endif
