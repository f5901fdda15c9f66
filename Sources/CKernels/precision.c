/* Conversions between float32 and the 16- and 8-bit weight storages (see ckprecision.h). */
#include "ckprecision.h"
#include "ckernels.h"
#include <math.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ---------- portable scalar versions (the reference every vector version matches) ---------- */

static inline uint16_t bf16_from_f32(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);   /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float f32_from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (e == 0) { float v = (float)mant * 0x1p-24f; return sign ? -v : v; }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (mant << 13));
}

static inline uint16_t f16_from_f32(float f) {
    const uint32_t f32inf = 255u << 23, f16max = (127u + 16u) << 23, denormMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t u = f32_bits(f), sign = u & 0x80000000u;
    u ^= sign;
    uint16_t o;
    if (u >= f16max) {
        o = u > f32inf ? 0x7e00u : 0x7c00u;
    } else if (u < (113u << 23)) {
        /* Subnormal half (or zero): let the float adder round to nearest even at the magic point. */
        float v = bits_f32(u) + bits_f32(denormMagic);
        o = (uint16_t)(f32_bits(v) - denormMagic);
    } else {
        uint32_t odd = (u >> 13) & 1u;
        u += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
        o = (uint16_t)(u >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

static void bf16_to_f32_portable(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = bits_f32((uint32_t)s[i] << 16);
}
static void f32_to_bf16_portable(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = bf16_from_f32(s[i]);
}
static void f16_to_f32_portable(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = f32_from_f16(s[i]);
}
static void f32_to_f16_portable(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = f16_from_f32(s[i]);
}
static void i8_to_f32_portable(const int8_t *q, const float *scales, size_t group, float *d, size_t n) {
    for (size_t j0 = 0, g = 0; j0 < n; j0 += group, g++) {
        size_t end = j0 + group < n ? j0 + group : n;
        float s = scales[g];
        for (size_t j = j0; j < end; j++) d[j] = (float)q[j] * s;
    }
}

/* ---------- AVX2 (+F16C) ---------- */

#if defined(__x86_64__)
#include <immintrin.h>
#define PAVX2 __attribute__((target("avx2,fma,f16c")))
#define PAVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c")))

PAVX2 static void bf16_to_f32_avx2(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_slli_epi32(w, 16));
    }
    bf16_to_f32_portable(s + i, d + i, n - i);
}

PAVX2 static void f32_to_bf16_avx2(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x40);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(s + i);
        __m256i u = _mm256_castps_si256(x);
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias),
                                                       _mm256_and_si256(_mm256_srli_epi32(u, 16), one)), 16);
        __m256i nanv = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
        __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        r = _mm256_blendv_epi8(r, nanv, isnan);
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128((__m128i *)(d + i), _mm256_castsi256_si128(packed));
    }
    f32_to_bf16_portable(s + i, d + i, n - i);
}

PAVX2 static void f16_to_f32_avx2(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    f16_to_f32_portable(s + i, d + i, n - i);
}

PAVX2 static void f32_to_f16_avx2(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    f32_to_f16_portable(s + i, d + i, n - i);
}

PAVX2 static void i8_to_f32_avx2(const int8_t *q, const float *scales, size_t group, float *d, size_t n) {
    for (size_t j0 = 0, g = 0; j0 < n; j0 += group, g++) {
        size_t end = j0 + group < n ? j0 + group : n, j = j0;
        __m256 s = _mm256_set1_ps(scales[g]);
        for (; j + 8 <= end; j += 8) {
            __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + j)));
            _mm256_storeu_ps(d + j, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
        }
        for (; j < end; j++) d[j] = (float)q[j] * scales[g];
    }
}

/* ---------- AVX-512F ---------- */

PAVX512 static void bf16_to_f32_avx512(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + i)));
        _mm512_storeu_si512((void *)(d + i), _mm512_slli_epi32(w, 16));
    }
    bf16_to_f32_portable(s + i, d + i, n - i);
}

PAVX512 static void f32_to_bf16_avx512(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x40);
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(s + i);
        __m512i u = _mm512_castps_si512(x);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, bias),
                                                       _mm512_and_si512(_mm512_srli_epi32(u, 16), one)), 16);
        __mmask16 isnan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, isnan, _mm512_or_si512(_mm512_srli_epi32(u, 16), quiet));
        _mm256_storeu_si256((__m256i *)(d + i), _mm512_cvtepi32_epi16(r));
    }
    f32_to_bf16_portable(s + i, d + i, n - i);
}

PAVX512 static void f16_to_f32_avx512(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
    f16_to_f32_portable(s + i, d + i, n - i);
}

PAVX512 static void f32_to_f16_avx512(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(d + i), _mm512_cvtps_ph(_mm512_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    f32_to_f16_portable(s + i, d + i, n - i);
}

PAVX512 static void i8_to_f32_avx512(const int8_t *q, const float *scales, size_t group, float *d, size_t n) {
    for (size_t j0 = 0, g = 0; j0 < n; j0 += group, g++) {
        size_t end = j0 + group < n ? j0 + group : n, j = j0;
        __m512 s = _mm512_set1_ps(scales[g]);
        for (; j + 16 <= end; j += 16) {
            __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + j)));
            _mm512_storeu_ps(d + j, _mm512_mul_ps(_mm512_cvtepi32_ps(v), s));
        }
        for (; j < end; j++) d[j] = (float)q[j] * scales[g];
    }
}

static int precision_cpu_level(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))) return 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return 2;
    return 1;
}

int ck_cpu_has_avx512_bf16(void) {
    if (ck_limited_to_avx2()) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") ? 1 : 0;
}
#else
static int precision_cpu_level(void) { return 0; }
int ck_cpu_has_avx512_bf16(void) { return 0; }
#endif

/* ---------- dispatch ---------- */

static int precision_level = -1;

int ck_precision_level(void) {
    int cached = __atomic_load_n(&precision_level, __ATOMIC_RELAXED);
    if (cached < 0) {
        cached = precision_cpu_level();
        __atomic_store_n(&precision_level, cached, __ATOMIC_RELAXED);
    }
    return ck_limited_to_avx2() && cached > 1 ? 1 : cached;
}

static int clamp(int level) {
    int best = ck_precision_level();
    return level < 0 ? 0 : (level > best ? best : level);
}

#if defined(__x86_64__)
#define DISPATCH(level, name, ...) \
    switch (clamp(level)) { \
    case 2: name##_avx512(__VA_ARGS__); return; \
    case 1: name##_avx2(__VA_ARGS__); return; \
    default: name##_portable(__VA_ARGS__); return; }
#else
#define DISPATCH(level, name, ...) name##_portable(__VA_ARGS__);
#endif

void ck_bf16_to_f32_level(int level, const uint16_t *s, float *d, size_t n) { DISPATCH(level, bf16_to_f32, s, d, n) }
void ck_f32_to_bf16_level(int level, const float *s, uint16_t *d, size_t n) { DISPATCH(level, f32_to_bf16, s, d, n) }
void ck_f16_to_f32_level(int level, const uint16_t *s, float *d, size_t n) { DISPATCH(level, f16_to_f32, s, d, n) }
void ck_f32_to_f16_level(int level, const float *s, uint16_t *d, size_t n) { DISPATCH(level, f32_to_f16, s, d, n) }
void ck_i8_to_f32_level(int level, const int8_t *q, const float *sc, size_t g, float *d, size_t n) {
    DISPATCH(level, i8_to_f32, q, sc, g, d, n)
}

void ck_bf16_to_f32(const uint16_t *s, float *d, size_t n) { ck_bf16_to_f32_level(2, s, d, n); }
void ck_f32_to_bf16(const float *s, uint16_t *d, size_t n) { ck_f32_to_bf16_level(2, s, d, n); }
void ck_f16_to_f32(const uint16_t *s, float *d, size_t n) { ck_f16_to_f32_level(2, s, d, n); }
void ck_f32_to_f16(const float *s, uint16_t *d, size_t n) { ck_f32_to_f16_level(2, s, d, n); }
void ck_i8_to_f32(const int8_t *q, const float *sc, size_t g, float *d, size_t n) { ck_i8_to_f32_level(2, q, sc, g, d, n); }

void ck_i8_to_bf16(const int8_t *q, const float *scales, size_t group, uint16_t *dst, size_t n) {
    float buffer[512];
    for (size_t j0 = 0, g = 0; j0 < n; j0 += group, g++) {
        size_t end = j0 + group < n ? j0 + group : n;
        for (size_t j = j0; j < end; j += 512) {
            size_t len = j + 512 < end ? 512 : end - j;
            ck_i8_to_f32(q + j, scales + g, len, buffer, len);   /* one group-scale for this piece */
            ck_f32_to_bf16(buffer, dst + j, len);
        }
    }
}

void ck_quantize_row_i8(const float *w, size_t n, size_t group, int8_t *q, float *scales) {
    for (size_t j0 = 0, g = 0; j0 < n; j0 += group, g++) {
        size_t end = j0 + group < n ? j0 + group : n;
        float m = 0;
        for (size_t j = j0; j < end; j++) { float a = fabsf(w[j]); if (a > m) m = a; }
        float s = m / 127.0f;
        scales[g] = s;
        for (size_t j = j0; j < end; j++) {
            float v = s > 0 ? nearbyintf(w[j] / s) : 0.0f;
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            q[j] = (int8_t)v;
        }
    }
}

int ck_release_free_memory(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}
