/*
 * CPU backend: the inner micro-kernels behind a function-pointer table, so
 * per-ISA translation units (scalar, AVX2 + FMA, AVX-512) plug in without
 * touching the stage code. Every stage (score, select, attention)
 * calls only these for its hot loops.
 *
 * All matrices are f32, row-major, with explicit leading dimensions in
 * elements. Kernels accept any sizes (remainders are the kernel's job) and
 * never allocate.
 */
#ifndef STEM_CPU_KERNELS_H
#define STEM_CPU_KERNELS_H

#include "stem.h"

#include <stddef.h>
#include <stdint.h>

typedef enum stem_cpu_isa {
    STEM_CPU_ISA_SCALAR = 0,
    STEM_CPU_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    STEM_CPU_ISA_AVX512 = 2, /* AVX-512 F + BW + VL */
    STEM_CPU_ISA_AMX = 3,    /* AVX-512 + AVX512_BF16 + AMX-TILE + AMX-BF16, OS permission */
    STEM_CPU_ISA_COUNT = 4
} stem_cpu_isa;

struct stem_cpu_kernels {
    const char *name; /* "scalar", "avx2", "avx512", "avx512+bf16", "amx" */

    /* C[i][j] (+)= sum_{p<k} A[i*lda + p] * B[p*ldb + j] for i < m, j < n.
     * accumulate = 0 overwrites C. Used for S = Q K^T (B = K transposed),
     * O += P V, and the scoring GEMMs. */
    void (*gemm)(int m, int n, int k, const float *A, ptrdiff_t lda, const float *B,
                 ptrdiff_t ldb, float *C, ptrdiff_t ldc, int accumulate);

    /* Panel width of gemm_packed's B operand, in columns (a multiple of 4,
     * at most 32): scalar 8, AVX2 16, AVX-512 32. */
    int nr;

    /* gemm with B packed in panels of nr columns: column j, row p is
     * Bp[(j / nr) * panel_stride + p * nr + j % nr]. n must be a multiple of
     * nr (callers pad panels with zero columns). The attention stage widens
     * K and V straight into this layout, so the kernel streams each panel
     * contiguously. */
    void (*gemm_packed)(int m, int n, int k, const float *A, ptrdiff_t lda, const float *Bp,
                        ptrdiff_t panel_stride, float *C, ptrdiff_t ldc, int accumulate);

    /* C[i][j] (+)= sum_{p<kp} dot2(A[i*lda + p], Bp(p, j)) for i < m, j < n,
     * every uint32_t holding two bf16 (element 2p in the low half, 2p+1 in
     * the high half); Bp is packed like gemm_packed's B (panels of nr columns
     * of pairs: the VNNI layout of AMX's B tile when nr = 32), n a multiple
     * of nr. Products of two bf16 are exact in f32, so only the f32 sums
     * round, as in gemm. NULL where the CPU has no bf16 dot product
     * (avx512_bf16 vdpbf16ps, or AMX tiles). accumulate = 0 overwrites C. */
    void (*gemm_bf16)(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                      const uint32_t *Bp, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                      int accumulate);

    /* dst[j] = x[j] rounded to bf16 (nearest even; NaN stays NaN) for j < n.
     * Used for P before P V on bf16 inputs when gemm_bf16 exists. */
    void (*narrow_bf16)(const float *x, int n, uint16_t *dst);

    /* gemm_bf16 for callers that hold the tiles (between tiles_begin and
     * tiles_end on the same thread): no tile configuration per call, so
     * small products (one 32 x 32 block) cost no LDTILECFG each. NULL, as
     * are tiles_begin and tiles_end, where gemm_bf16 does not run on AMX. */
    void (*gemm_bf16_held)(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                           const uint32_t *Bp, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                           int accumulate);
    void (*tiles_begin)(void); /* load the tile configuration */
    void (*tiles_end)(void);   /* release the tiles (initial state again) */

    /* dst[j] = bf16(2^(mul * x[j] - sub)) (the logits' scale applied in
     * the same fused multiply-add as the subtraction), returns the sum of
     * the unrounded values; x itself is left undefined. mul > 0; sub is at
     * least mul times every non-NaN x[j]. Values as exp2_sum's (same error
     * bound), narrowed as narrow_bf16. One pass where the ISA converts in
     * a vector instruction. */
    float (*exp2_sum_bf16)(float *x, int n, float mul, float sub, uint16_t *dst);

    /* exp2_sum_bf16 (same values, same sum) that leaves x as it is and also
     * returns max_j x[j] (row_max's) in *xmax, for a sub that need not be
     * the row's max (the lazy rescaling of cpu_attention.c). NULL where the
     * table has no vector bf16 conversion (no bf16 P V path either). */
    float (*exp2_sum_bf16_max)(const float *x, int n, float mul, float sub, uint16_t *dst,
                               float *xmax);

    /* max_j x[j] (-inf for n == 0; NaN entries are ignored). */
    float (*row_max)(const float *x, int n);

    /* x[j] = 2^(x[j] - sub) in place (0 for -inf or very negative arguments,
     * NaN stays NaN); returns the sum of the new values. sub must be at
     * least every non-NaN x[j] (callers pass the row max), so no argument
     * is positive. Relative error a few ulp. */
    float (*exp2_sum)(float *x, int n, float sub);

    /* x[j] *= a. */
    void (*scale)(float *x, int n, float a);

    /* dst[i] = mul * src[i] for i < n, src a contiguous row of dtype
     * (f32, f16 or bf16) widened to f32 exactly before the multiply. */
    void (*widen)(const void *src, stem_dtype dtype, int n, float *dst, float mul);
};

typedef struct stem_cpu_kernels stem_cpu_kernels;

extern const stem_cpu_kernels stem_cpu_kernels_scalar;
#ifdef STEM_CPU_SIMD_KERNELS /* x86-64 builds whose compiler takes the ISA flags */
extern const stem_cpu_kernels stem_cpu_kernels_avx2;   /* cpu_kernels_avx2.c */
extern const stem_cpu_kernels stem_cpu_kernels_avx512; /* cpu_kernels_avx512.c */
/* The AVX-512 table plus gemm_bf16 (cpu_kernels_avx512.c), built where the
 * compiler takes -mavx512bf16 (STEM_CPU_AVX512_BF16). */
#ifdef STEM_CPU_AVX512_BF16
extern const stem_cpu_kernels stem_cpu_kernels_avx512_bf16;
#endif
/* The AVX-512 + bf16 kernels again with gemm_bf16 on AMX tiles
 * (cpu_kernels_amx.c), built where the compiler takes -mamx-tile -mamx-bf16
 * (STEM_CPU_AMX). */
#ifdef STEM_CPU_AMX
extern const stem_cpu_kernels stem_cpu_kernels_amx;
#endif
#endif

/* Runtime ISA detection (cpu_isa.c). */
stem_cpu_isa stem_cpu_isa_detect(void);        /* what the CPU + OS support; for AMX
                                                  * also asks Linux for the tile state */
int stem_cpu_has_avx512_bf16(void);             /* CPUID.(7,1):EAX.AVX512_BF16 */
stem_cpu_isa stem_cpu_isa_cap(stem_cpu_isa isa); /* capped by STEM_CPU_MAX_ISA */
const char *stem_cpu_isa_name(stem_cpu_isa isa);
/* Best kernels not above isa. Never NULL. */
const stem_cpu_kernels *stem_cpu_kernels_for(stem_cpu_isa isa, stem_cpu_isa *used);

#endif /* STEM_CPU_KERNELS_H */
