/*
 * CPU backend: portable micro-kernels (no ISA-specific intrinsics, no -march),
 * instantiated from the SIMD template (cpu_kernels_simd.h) like the AVX2 and
 * AVX-512 tables.
 *
 * The vector type is a GCC/Clang generic vector of 4 floats: the compiler
 * lowers it to SSE2 on baseline x86-64, NEON on arm64, or scalar code
 * elsewhere. Plain-loop auto-vectorization of the same block measured
 * 25-60% slower and varied with unrelated code changes (gcc 12 sometimes
 * vectorizes the k loop instead of keeping the block in registers). Other
 * compilers get the template with a vector of one float. No FMA is assumed
 * (a * b + c, never fmaf, which would be a library call), nor -ffast-math:
 * partial sums are explicit.
 */
#include "cpu_common.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(STEM_CPU_NO_VEC)
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
/* memcpy keeps unaligned access and aliasing well defined; it compiles to movups. */
static inline v4f ld4(const float *p)
{
    v4f x;
    memcpy(&x, p, sizeof x);
    return x;
}
static inline void st4(float *p, v4f x)
{
    memcpy(p, &x, sizeof x);
}
static inline v4f splat4(float x)
{
    return (v4f){x, x, x, x};
}
/* max(a, b) as the template wants it: b when a is NaN (a > b is false). */
static inline v4f max4(v4f a, v4f b)
{
    const v4i gt = a > b;
    return (v4f)(((v4i)a & gt) | ((v4i)b & ~gt));
}

#define VF v4f
#define VW 4
#define VLOAD(p) ld4(p)
#define VSTORE(p, x) st4((p), (x))
#define VSET1(x) splat4(x)
#define VZERO() splat4(0.0f)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define VSUB(a, b) ((a) - (b))
#define VADD(a, b) ((a) + (b))
#define VMAX(a, b) max4((a), (b))
/* Register block 6 x 8: 12 accumulators, plus 2 for B and 1 for A (15 of
 * the 16 SSE registers). A is packed once per row block with every element
 * pre-broadcast, so the inner loop loads instead of shuffling: 6x8 this way
 * measured ~45% faster than 4x8 with broadcasts in the loop. */
#define MR 6
#define NR 8
#define GEMM_PACK_A 1
#define KC 256 /* depth chunk: the packed A block is KC * MR * 16 B = 24 KiB */
#else          /* plain C: a "vector" of one float */
#define VF float
#define VW 1
#define VLOAD(p) (*(p))
#define VSTORE(p, x) (*(p) = (x))
#define VSET1(x) (x)
#define VZERO() 0.0f
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define VSUB(a, b) ((a) - (b))
#define VADD(a, b) ((a) + (b))
#define VMAX(a, b) ((a) > (b) ? (a) : (b))
#define MR 4
#define NR 8
#endif
#define SFMA(a, b, c) ((a) * (b) + (c))
#define KERNELS_OWN_EXP2_ONE 1
#define KERNELS_NAME "scalar"
#define KERNELS_TABLE stem_cpu_kernels_scalar

#include "cpu_kernels_simd.h"

/* 2^f for |f| <= 1/2: degree-6 minimax polynomial (1.9e-9 relative; the f32
 * evaluation adds about 1.5 ulp). One less degree than a Taylor series of
 * the same accuracy. */
#define EXP2_M6 1.5345812004000534e-04f
#define EXP2_M5 1.3399931219124377e-03f
#define EXP2_M4 9.6184889571025130e-03f
#define EXP2_M3 5.5503287769656406e-02f
#define EXP2_M2 2.4022646890634405e-01f
#define EXP2_M1 6.9314720573726730e-01f

/* 2^t for t <= 127: t = r + f with r an integer and |f| <= 1/2, 2^r built in
 * the exponent bits. Results below 2^-126 flush to 0; NaN passes through. */
static inline float exp2_one(float t)
{
    float tc = t >= -126.0f ? t : -126.0f; /* also maps NaN, keeps the cast defined */
    tc = tc <= 127.0f ? tc : 127.0f;
    const float r = (tc + 12582912.0f) - 12582912.0f; /* round to nearest (1.5 * 2^23) */
    const float f = tc - r;
    float p = EXP2_M6;
    p = p * f + EXP2_M5;
    p = p * f + EXP2_M4;
    p = p * f + EXP2_M3;
    p = p * f + EXP2_M2;
    p = p * f + EXP2_M1;
    p = p * f + 1.0f;
    union {
        uint32_t u;
        float f;
    } s;
    s.u = (uint32_t)((int32_t)r + 127) << 23;
    const float v = p * s.f;
    return t >= -126.0f ? v : (t != t ? t : 0.0f);
}

#if VW == 4
/* exp2_one on 4 lanes for t <= 0 (exp2_sum's contract, the template's only
 * use), in as few operations as SSE2 allows: one mask both clamps and
 * zeroes. keep is true for t >= -126 and for NaN; lanes below -126 compute
 * 2^0 from t = 0 and are then zeroed, and a NaN lane stays NaN through
 * every step. */
static inline VF vexp2(VF t)
{
    const v4i keep = ~(t < splat4(-126.0f));
    const v4f tc = (v4f)((v4i)t & keep);
    const v4f r = (tc + splat4(12582912.0f)) - splat4(12582912.0f);
    const v4f f = tc - r;
    v4f p = splat4(EXP2_M6);
    p = p * f + splat4(EXP2_M5);
    p = p * f + splat4(EXP2_M4);
    p = p * f + splat4(EXP2_M3);
    p = p * f + splat4(EXP2_M2);
    p = p * f + splat4(EXP2_M1);
    p = p * f + splat4(1.0f);
    const v4i e = (__builtin_convertvector(r, v4i) + 127) << 23;
    return (v4f)((v4i)(p * (v4f)e) & keep);
}

static inline float vhsum(VF x)
{
    return (x[0] + x[2]) + (x[1] + x[3]);
}

static inline float vhmax(VF x) /* no NaN lanes */
{
    const float a = x[0] > x[2] ? x[0] : x[2], b = x[1] > x[3] ? x[1] : x[3];
    return a > b ? a : b;
}

static inline VF vload_f16(const uint16_t *p)
{
    return (v4f){stem_cpu_f16(p[0]), stem_cpu_f16(p[1]), stem_cpu_f16(p[2]), stem_cpu_f16(p[3])};
}

static inline VF vload_bf16(const uint16_t *p)
{
    const v4i w = {p[0], p[1], p[2], p[3]};
    return (v4f)(w << 16);
}
#else
static inline VF vexp2(VF t)
{
    return exp2_one(t);
}

static inline float vhsum(VF x)
{
    return x;
}

static inline float vhmax(VF x)
{
    return x;
}

static inline VF vload_f16(const uint16_t *p)
{
    return stem_cpu_f16(*p);
}

static inline VF vload_bf16(const uint16_t *p)
{
    return stem_cpu_bf16(*p);
}
#endif
