/* CPU backend: state and helpers shared by its stages. */
#ifndef STEM_CPU_COMMON_H
#define STEM_CPU_COMMON_H

#include "cpu_kernels.h"
#include "stem_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(STEM_HAVE_OPENMP) && defined(_OPENMP)
#include <omp.h>
#define STEM_CPU_OMP 1
#define STEM_CPU_PRAGMA_STR(x) #x
/* OpenMP pragmas through _Pragma so builds without OpenMP see no unknown
 * pragmas (-Wall -Werror). */
#define STEM_CPU_PRAGMA(...) _Pragma(STEM_CPU_PRAGMA_STR(omp __VA_ARGS__))
#else
#define STEM_CPU_PRAGMA(...)
#endif

/* Per-context state (ctx->impl). */
typedef struct stem_cpu_context {
    int threads;               /* team size of every parallel region */
    stem_cpu_isa detected;     /* what CPUID + XGETBV allow */
    stem_cpu_isa isa;          /* kernels in use (after STEM_CPU_MAX_ISA and availability) */
    const stem_cpu_kernels *k;
} stem_cpu_context;

static inline const stem_cpu_context *stem_cpu_ctx(const stem_plan *plan)
{
    return (const stem_cpu_context *)plan->ctx->impl;
}

/* Stages (cpu_score.c, cpu_select.c, cpu_attention.c). */
stem_status stem_cpu_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                           const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores);
stem_status stem_cpu_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                            const stem_tensor *index, const stem_tensor *count);
stem_status stem_cpu_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                               const stem_tensor *k, const stem_tensor *v,
                               const stem_tensor *index, const stem_tensor *count,
                               const stem_tensor *out);

/* Index of the calling thread in the current team (0 outside one). */
static inline int stem_cpu_thread_id(void)
{
#ifdef STEM_CPU_OMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Default team size: STEM_CPU_THREADS, else the OpenMP default (cpu_backend.c). */
int stem_cpu_default_threads(void);

/* 64-byte aligned scratch; NULL on failure (or for 0 bytes). */
static inline void *stem_cpu_alloc(size_t bytes)
{
    if (bytes == 0)
        return NULL;
    const size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes)
        return NULL;
    return aligned_alloc(64, rounded);
}

/* ----------------------------------------------------------- conversions */

static inline float stem_cpu_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Exact f16 -> f32 without the FP unit for subnormals' bits, so it stays
 * exact even when the caller runs with denormals-are-zero. */
static inline float stem_cpu_f16(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t em = h & 0x7fffu;
    if (em < 0x0400u) { /* zero or subnormal: em * 2^-24, exact in f32 */
        const float f = (float)em * 0x1p-24f;
        return sign ? -f : f;
    }
    uint32_t u = (em << 13) + (112u << 23); /* rebias exponent 15 -> 127 */
    if (em >= 0x7c00u)
        u = (em << 13) | 0x7f800000u; /* inf / NaN keep their payload */
    return stem_cpu_bits_f32(u | sign);
}

static inline float stem_cpu_bf16(uint16_t h)
{
    return stem_cpu_bits_f32((uint32_t)h << 16);
}

/* Address of element (b,h,n,0); 64-bit index math throughout. */
static inline const char *stem_cpu_row(const stem_tensor *t, int64_t b, int64_t h, int64_t n)
{
    return (const char *)stem_tensor_host_ptr(t, b, h, n, 0);
}

/* dst[i * dst_step] = mul * x[b,h,n,i] for i < d, widened to f32. */
static inline void stem_cpu_load_row(const stem_tensor *t, int64_t b, int64_t h, int64_t n,
                                     int d, float *dst, ptrdiff_t dst_step, float mul)
{
    const char *src = stem_cpu_row(t, b, h, n);
    const ptrdiff_t s = (ptrdiff_t)t->strides[3];
    switch (t->dtype) {
    case STEM_DTYPE_F32: {
        const float *x = (const float *)(const void *)src;
        if (s == 1 && dst_step == 1) {
            for (int i = 0; i < d; i++)
                dst[i] = mul * x[i];
        } else {
            for (int i = 0; i < d; i++)
                dst[i * dst_step] = mul * x[i * s];
        }
        break;
    }
    case STEM_DTYPE_F16: {
        const uint16_t *x = (const uint16_t *)(const void *)src;
        for (int i = 0; i < d; i++)
            dst[i * dst_step] = mul * stem_cpu_f16(x[i * s]);
        break;
    }
    case STEM_DTYPE_BF16: {
        const uint16_t *x = (const uint16_t *)(const void *)src;
        if (s == 1 && dst_step == 1) { /* the common layout: a loop gcc vectorizes */
            for (int i = 0; i < d; i++)
                dst[i] = mul * stem_cpu_bf16(x[i]);
        } else {
            for (int i = 0; i < d; i++)
                dst[i * dst_step] = mul * stem_cpu_bf16(x[i * s]);
        }
        break;
    }
    default:
        for (int i = 0; i < d; i++)
            dst[i * dst_step] = 0.0f;
        break;
    }
}

/* stem_cpu_load_row into a contiguous dst, through the kernels' vector
 * conversion when the row itself is contiguous (the common layout). */
static inline void stem_cpu_widen_row(const stem_cpu_kernels *k, const stem_tensor *t, int64_t b,
                                      int64_t h, int64_t n, int d, float *dst, float mul)
{
    if (t->strides[3] == 1)
        k->widen(stem_cpu_row(t, b, h, n), t->dtype, d, dst, mul);
    else
        stem_cpu_load_row(t, b, h, n, d, dst, 1, mul);
}

/* x[b,h,n,i] = src[i] * mul, rounded to the tensor's dtype (nearest even). */
static inline void stem_cpu_store_row(const stem_tensor *t, int64_t b, int64_t h, int64_t n,
                                      int d, const float *src, float mul)
{
    char *dst = (char *)stem_tensor_host_ptr(t, b, h, n, 0);
    const ptrdiff_t s = (ptrdiff_t)t->strides[3];
    switch (t->dtype) {
    case STEM_DTYPE_F32: {
        float *x = (float *)(void *)dst;
        for (int i = 0; i < d; i++)
            x[i * s] = src[i] * mul;
        break;
    }
    case STEM_DTYPE_F16: {
        uint16_t *x = (uint16_t *)(void *)dst;
        for (int i = 0; i < d; i++)
            x[i * s] = stem_f32_to_f16(src[i] * mul);
        break;
    }
    case STEM_DTYPE_BF16: {
        uint16_t *x = (uint16_t *)(void *)dst;
        for (int i = 0; i < d; i++)
            x[i * s] = stem_f32_to_bf16(src[i] * mul);
        break;
    }
    default:
        break;
    }
}

/* Element (b,h,i,j) of an f32 / i32 tensor ([B, H, nq, nk] score and list tensors). */
static inline float *stem_cpu_f32_at(const stem_tensor *t, int64_t b, int64_t h, int64_t i,
                                     int64_t j)
{
    return (float *)stem_tensor_host_ptr(t, b, h, i, j);
}
static inline int32_t *stem_cpu_i32_at(const stem_tensor *t, int64_t b, int64_t h, int64_t i,
                                       int64_t j)
{
    return (int32_t *)stem_tensor_host_ptr(t, b, h, i, j);
}

#endif /* STEM_CPU_COMMON_H */
