#ifndef CKPRECISION_H
#define CKPRECISION_H

#include <stddef.h>
#include <stdint.h>

/* Conversions between float32 and the 16- and 8-bit weight storages, and a thin bridge to oneDNN's
   matmul. Like ckernels.h, each conversion picks the widest version the CPU runs at run time
   (AVX-512F+BW, else AVX2 (+F16C for half), else portable); the `_level` variants force a version
   (clamped to what the CPU supports) so tests can compare every path. Every version gives the same
   bits: the conversions are exact (widening) or round to nearest even (narrowing). */

/* bfloat16 bits -> float32 (exact). */
void ck_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void ck_bf16_to_f32_level(int level, const uint16_t *src, float *dst, size_t n);

/* float32 -> bfloat16 bits, round to nearest even; NaN stays NaN (quiet). */
void ck_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void ck_f32_to_bf16_level(int level, const float *src, uint16_t *dst, size_t n);

/* IEEE binary16 bits -> float32 (exact). */
void ck_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void ck_f16_to_f32_level(int level, const uint16_t *src, float *dst, size_t n);

/* float32 -> IEEE binary16 bits, round to nearest even (overflow to infinity, NaN stays NaN). */
void ck_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void ck_f32_to_f16_level(int level, const float *src, uint16_t *dst, size_t n);

/* One row of group-quantised int8 weights -> float32: dst[j] = q[j] * scales[j / group]. */
void ck_i8_to_f32(const int8_t *q, const float *scales, size_t group, float *dst, size_t n);
void ck_i8_to_f32_level(int level, const int8_t *q, const float *scales, size_t group, float *dst, size_t n);

/* The same row -> bfloat16 bits (the float32 product rounded to nearest even). */
void ck_i8_to_bf16(const int8_t *q, const float *scales, size_t group, uint16_t *dst, size_t n);

/* Symmetric int8 quantisation of one row in groups of `group` columns (the last group may be shorter):
   scale = max|w| / 127 over the group (0 for an all-zero group), q = round-half-even(w / scale) clamped
   to [-127, 127]. Non-finite inputs are the caller's to reject. */
void ck_quantize_row_i8(const float *w, size_t n, size_t group, int8_t *q, float *scales);

/* The version the conversions use on this CPU: 0 portable, 1 AVX2 (+F16C), 2 AVX-512F+BW. */
int ck_precision_level(void);

/* 1 when the CPU reports AVX512_BF16. */
int ck_cpu_has_avx512_bf16(void);

/* ---------- oneDNN matmul bridge ---------- */

/* Element types of the bridge. */
enum { CK_DNNL_F32 = 0, CK_DNNL_BF16 = 1 };

/* Return codes of ck_dnnl_matmul. */
enum { CK_DNNL_OK = 0, CK_DNNL_UNIMPLEMENTED = 1, CK_DNNL_FAILED = 2 };

/* C[m x n] (row stride ldc, float32) = A[m x k] (row stride lda, `type`) * W^T, where W is [n x k] with
   row stride ldw (PyTorch's Linear layout, `type`), plus bias[n] (float32, may be NULL); when
   `accumulate` is non-zero the product is added to C's current contents instead. Runs on oneDNN's
   own (OpenMP) threads. CK_DNNL_UNIMPLEMENTED when oneDNN has no implementation for this type on this
   CPU (bf16 without AVX512_BF16/AVX512-core, for example). */
int ck_dnnl_matmul(int type, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                   const void *w, int64_t ldw, const float *bias, float *c, int64_t ldc, int accumulate);

/* Row-major sgemm through oneDNN's float32 matmul: C = alpha * op(A) * op(B) + beta * C, op() a transpose
   when the flag is set (read through strides, nothing copied). Same return codes. */
int ck_dnnl_sgemm(int transA, int transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* Row-major C (float32) = alpha * op(A) * op(B) + beta * C with A and B of `type` (CK_DNNL_BF16: uint16_t
   bf16 values), op() a transpose read through the strides when its flag is set. Same return codes. */
int ck_dnnl_gemm(int type, int transA, int transB, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
                 int64_t lda, const void *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* ck_dnnl_gemm plus bias[n] (float32, may be NULL) added to every row of the product before beta * C:
   C = alpha * op(A) * op(B) + bias + beta * C for alpha = 1 (with another alpha, oneDNN scales the sum
   of product and bias). Same return codes. */
int ck_dnnl_gemm_bias(int type, int transA, int transB, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
                      int64_t lda, const void *b, int64_t ldb, const float *bias, float beta, float *c, int64_t ldc);

/* The number of OpenMP threads oneDNN uses for products started from the calling thread. */
void ck_dnnl_set_threads(int n);

/* Caps oneDNN at AVX2 (dnnl_set_max_cpu_isa); 1 on success, 0 when oneDNN had already fixed its ISA (it
   does at its first primitive) or refused. */
int ck_dnnl_limit_to_avx2(void);

/* oneDNN's effective ISA name for this process ("avx512_core_bf16", "avx2", ...), or "unavailable". */
const char *ck_dnnl_isa(void);

/* oneDNN's version as major*10000 + minor*100 + patch. */
int ck_dnnl_version(void);

/* Returns freed heap memory to the system where the C library can (glibc's malloc_trim); 1 when some was. */
int ck_release_free_memory(void);

#endif
