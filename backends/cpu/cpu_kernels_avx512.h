/*
 * CPU backend: the AVX-512 definitions of the SIMD template (vector macros,
 * register block, exp2 and conversion helpers), shared by the AVX-512 table
 * (cpu_kernels_avx512.c) and the AMX table (cpu_kernels_amx.c), which are
 * both compiled with -mavx512f -mavx512bw -mavx512vl -mavx2 -mfma -mf16c
 * [-mavx512bf16] (cpu_isa_flags.cmake).
 *
 * Register block 8 x 32: 16 accumulators + 2 B vectors + 1 broadcast of the
 * 32 ZMM registers; 128-row tiles split into 16 whole blocks.
 * Include first, then define the table names and include cpu_kernels_simd.h.
 */
#ifndef STEM_CPU_KERNELS_AVX512_H
#define STEM_CPU_KERNELS_AVX512_H
#include <immintrin.h>
#include <stdint.h>

#include "cpu_exp2_coeffs.h"

#define VF __m512
#define VW 16
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, x) _mm512_storeu_ps((p), (x))
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO() _mm512_setzero_ps()
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VSUB(a, b) _mm512_sub_ps((a), (b))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VMAX(a, b) _mm512_max_ps((a), (b))
#define MR 8
#define NR 32
#ifdef __AVX512BF16__
/* vdpbf16ps for S = Q K^T and P V on bf16 inputs, in tables that cpu_isa.c
 * hands out only when CPUID reports AVX512_BF16; nothing else uses the
 * extension (the compiler never emits it for f32 code). */
#define VI __m512i
#define VLOADI(p) _mm512_loadu_si512((const void *)(p))
#define VSET1I(x) _mm512_set1_epi32(x)
#define VDOT_BF16(acc, a, b) _mm512_dpbf16_ps((acc), (__m512bh)(a), (__m512bh)(b))
/* vcvtneps2bf16: nearest even, NaN to quiet NaN, denormal inputs to zero
 * (exp2_sum_bf16's values are never denormal). */
#define VNARROW_BF16(dst, v)                                                            \
    _mm256_storeu_si256((__m256i *)(void *)(dst), (__m256i)_mm512_cvtneps_pbh(v))
#endif

/* 2^t = 2^f * 2^r, r = round(t), |f| <= 1/2: 2^f by the degree-5 minimax
 * polynomial, 2^r applied by vscalefps (no exponent arithmetic, no range
 * clamps). Arguments below -125 give 0, so every result is 0, NaN or
 * normal (nothing downstream meets a denormal); NaN stays NaN. Callers pass
 * arguments <= 0 (exp2_sum's contract), or up to +8 (the lazy rescaling's
 * exp2_sum_bf16_max): any t up to 127 gives 2^t. */
static inline VF vexp2(VF t)
{
    /* t >= -125, or NaN (unordered compares true) */
    const __mmask16 keep = _mm512_cmp_ps_mask(t, _mm512_set1_ps(-125.0f), _CMP_NLT_UQ);
    const __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(EXP2_Q5), f, _mm512_set1_ps(EXP2_Q4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_Q3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_Q2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2_Q1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, r);
}

static inline float vhsum(VF x)
{
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float vhmax(VF x)
{
    const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(x),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline VF vload_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}

static inline VF vload_bf16(const uint16_t *p)
{
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
#endif /* STEM_CPU_KERNELS_AVX512_H */
