/*
 * CPU backend: AVX2 + FMA (+ F16C) kernels. Built with -mavx2 -mfma -mf16c
 * for this file only (cpu_isa_flags.cmake); reached only through the kernel
 * table after CPUID + XGETBV said the CPU and OS support it.
 *
 * Register block 6 x 16: 12 accumulators + 2 B vectors + 1 broadcast of the
 * 16 YMM registers.
 */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <stdint.h>

#define VF __m256
#define VW 8
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, x) _mm256_storeu_ps((p), (x))
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VSUB(a, b) _mm256_sub_ps((a), (b))
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VMAX(a, b) _mm256_max_ps((a), (b))
#define MR 6
#define NR 16
#define KERNELS_NAME "avx2"
#define KERNELS_TABLE stem_cpu_kernels_avx2
#ifdef STEM_CPU_BF16_EMULATION
/* Test builds only (-DSTEM_CPU_BF16_EMULATION=1): the bf16 pair GEMM with
 * two FMAs per pair, so the attention's bf16 tile layout runs through the
 * conformance suite on CPUs without AVX512_BF16. Slower than the f32 path. */
#define VI __m256i
#define VLOADI(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define VSET1I(x) _mm256_set1_epi32(x)
static inline __m256 vdot_bf16(__m256 acc, __m256i a, __m256i b)
{
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(a, 16)),
                          _mm256_castsi256_ps(_mm256_slli_epi32(b, 16)), acc);
    return _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(a, hi)),
                           _mm256_castsi256_ps(_mm256_and_si256(b, hi)), acc);
}
#define VDOT_BF16(acc, a, b) vdot_bf16((acc), (a), (b))
/* narrow_bf16's rounding on 8 lanes, so exp2_sum_bf16's vector loop runs
 * in these test builds too. */
static inline void vnarrow_bf16(uint16_t *dst, __m256 v)
{
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i nan = _mm256_cmpgt_epi32(
        _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    const __m256i w = _mm256_blendv_epi8(r, q, nan); /* every lane <= 0xffff */
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(w, w), 0x08);
    _mm_storeu_si128((__m128i *)(void *)dst, _mm256_castsi256_si128(p));
}
#define VNARROW_BF16(dst, v) vnarrow_bf16((dst), (v))
#endif

#include "cpu_kernels_simd.h"

static inline VF vexp2(VF t)
{
    const __m256 lo = _mm256_set1_ps(-126.0f);
    const __m256 keep = _mm256_cmp_ps(t, lo, _CMP_GE_OQ); /* false for NaN */
    const __m256 nan = _mm256_cmp_ps(t, t, _CMP_UNORD_Q);
    __m256 tc = _mm256_max_ps(t, lo); /* NaN lanes take -126: the cast stays defined */
    tc = _mm256_min_ps(tc, _mm256_set1_ps(127.0f));
    const __m256 r = _mm256_round_ps(tc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(tc, r);
    __m256 p = _mm256_set1_ps(EXP2_C7);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C6));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C5));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C4));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_C1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(r), _mm256_set1_epi32(127)), 23);
    const __m256 v = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_or_ps(_mm256_and_ps(v, keep), _mm256_and_ps(t, nan));
}

static inline float vhsum(VF x)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float vhmax(VF x)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline VF vload_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

static inline VF vload_bf16(const uint16_t *p)
{
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
#else
/* Built without the flags (non-x86 or a compiler without them): no table;
 * cpu_isa.c then never names it. */
typedef int stem_cpu_kernels_avx2_unavailable;
#endif
