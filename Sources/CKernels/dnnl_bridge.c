/* A thin bridge to oneDNN's matmul (see ckprecision.h). oneDNN keeps its own primitive cache, so
   describing the same product again finds the compiled kernel instead of generating it anew. */
#define _GNU_SOURCE 1  /* RTLD_DEFAULT */
#include "ckprecision.h"
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <dlfcn.h>

static dnnl_engine_t engine;
static int engine_ok;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void make_engine(void) { engine_ok = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success; }

/* The general product behind both entry points: C = alpha * op(A) * op(B) + beta * C (+ bias), A and B of
   `type`, C float32; op() reads a transposed operand through its strides. */
static int ck_dnnl_gemm_any(int type, int transA, int transB, int64_t m, int64_t n, int64_t k, float alpha,
                     const void *a, int64_t lda, const void *b, int64_t ldb, const float *bias,
                     float beta, float *c, int64_t ldc) {
    pthread_once(&engine_once, make_engine);
    if (!engine_ok) return CK_DNNL_FAILED;
    dnnl_data_type_t dt = type == CK_DNNL_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md;
    dnnl_dims_t ad = {m, k}, bd = {k, n}, cd = {m, n}, biasd = {1, n};
    dnnl_dims_t as, bs, cs = {ldc, 1}, biass = {n, 1};
    as[0] = transA ? 1 : lda; as[1] = transA ? lda : 1;
    bs[0] = transB ? 1 : ldb; bs[1] = transB ? ldb : 1;
    if (dnnl_memory_desc_init_by_strides(&a_md, 2, ad, dt, as) != dnnl_success
        || dnnl_memory_desc_init_by_strides(&b_md, 2, bd, dt, bs) != dnnl_success
        || dnnl_memory_desc_init_by_strides(&c_md, 2, cd, dnnl_f32, cs) != dnnl_success
        || dnnl_memory_desc_init_by_strides(&bias_md, 2, biasd, dnnl_f32, biass) != dnnl_success)
        return CK_DNNL_FAILED;
    dnnl_matmul_desc_t desc;
    if (dnnl_matmul_desc_init(&desc, &a_md, &b_md, bias ? &bias_md : NULL, &c_md) != dnnl_success) return CK_DNNL_FAILED;

    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    int result = CK_DNNL_FAILED;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t am = NULL, bm = NULL, cm = NULL, biasm = NULL;
    dnnl_stream_t stream = NULL;

    if (dnnl_primitive_attr_create(&attr) != dnnl_success) goto done;
    if (alpha != 1.0f && dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) != dnnl_success) goto done;
    if (beta != 0.0f) {
        if (dnnl_post_ops_create(&ops) != dnnl_success || dnnl_post_ops_append_sum(ops, beta) != dnnl_success
            || dnnl_primitive_attr_set_post_ops(attr, ops) != dnnl_success)
            goto done;
    }
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL);
    if (st == dnnl_unimplemented) { result = CK_DNNL_UNIMPLEMENTED; goto done; }
    if (st != dnnl_success) goto done;
    if (dnnl_primitive_create(&prim, pd) != dnnl_success) goto done;
    if (dnnl_memory_create(&am, &a_md, engine, (void *)a) != dnnl_success
        || dnnl_memory_create(&bm, &b_md, engine, (void *)b) != dnnl_success
        || dnnl_memory_create(&cm, &c_md, engine, c) != dnnl_success)
        goto done;
    if (bias && dnnl_memory_create(&biasm, &bias_md, engine, (void *)bias) != dnnl_success) goto done;
    if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) goto done;
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_BIAS, biasm}};
    if (dnnl_primitive_execute(prim, stream, bias ? 4 : 3, args) != dnnl_success) goto done;
    if (dnnl_stream_wait(stream) != dnnl_success) goto done;
    result = CK_DNNL_OK;
done:
    if (stream) dnnl_stream_destroy(stream);
    if (biasm) dnnl_memory_destroy(biasm);
    if (cm) dnnl_memory_destroy(cm);
    if (bm) dnnl_memory_destroy(bm);
    if (am) dnnl_memory_destroy(am);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return result;
}

int ck_dnnl_matmul(int type, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                   const void *w, int64_t ldw, const float *bias, float *c, int64_t ldc, int accumulate) {
    return ck_dnnl_gemm_any(type, 0, 1, m, n, k, 1.0f, a, lda, w, ldw, bias, accumulate ? 1.0f : 0.0f, c, ldc);
}

int ck_dnnl_gemm(int type, int transA, int transB, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
                 int64_t lda, const void *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    return ck_dnnl_gemm_any(type, transA, transB, m, n, k, alpha, a, lda, b, ldb, NULL, beta, c, ldc);
}

int ck_dnnl_gemm_bias(int type, int transA, int transB, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
                      int64_t lda, const void *b, int64_t ldb, const float *bias, float beta, float *c, int64_t ldc) {
    return ck_dnnl_gemm_any(type, transA, transB, m, n, k, alpha, a, lda, b, ldb, bias, beta, c, ldc);
}

int ck_dnnl_sgemm(int transA, int transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    return ck_dnnl_gemm_any(CK_DNNL_F32, transA, transB, m, n, k, alpha, a, lda, b, ldb, NULL, beta, c, ldc);
}

/* oneDNN's OpenMP runtime is a dependency of libdnnl, not of this package: its thread setter is looked
   up at run time (absent, for a oneDNN built on another runtime, the setting is left to that runtime). */
typedef void (*set_threads_fn)(int);
static set_threads_fn set_threads;
static pthread_once_t set_threads_once = PTHREAD_ONCE_INIT;
static void find_set_threads(void) { set_threads = (set_threads_fn)dlsym(RTLD_DEFAULT, "omp_set_num_threads"); }

void ck_dnnl_set_threads(int n) {
    pthread_once(&set_threads_once, find_set_threads);
    if (set_threads) set_threads(n > 0 ? n : 1);
}

int ck_dnnl_limit_to_avx2(void) { return dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2) == dnnl_success; }

const char *ck_dnnl_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return "unknown";
    }
}

int ck_dnnl_version(void) {
    const dnnl_version_t *v = dnnl_version();
    return v ? v->major * 10000 + v->minor * 100 + v->patch : 0;
}
