/*
 * CPU backend: the inner micro-kernels behind a function-pointer table, so
 * per-ISA translation units (scalar today, AVX2 / AVX-512 next) plug in
 * without touching the stage code. Every stage (score, select, attention)
 * calls only these for its hot loops.
 *
 * All matrices are f32, row-major, with explicit leading dimensions in
 * elements. Kernels accept any sizes (remainders are the kernel's job) and
 * never allocate.
 */
#ifndef STEM_CPU_KERNELS_H
#define STEM_CPU_KERNELS_H

#include <stddef.h>

typedef enum stem_cpu_isa {
    STEM_CPU_ISA_SCALAR = 0,
    STEM_CPU_ISA_AVX2 = 1,   /* AVX2 + FMA */
    STEM_CPU_ISA_AVX512 = 2, /* AVX-512 F + BW + VL */
    STEM_CPU_ISA_COUNT = 3
} stem_cpu_isa;

struct stem_cpu_kernels {
    const char *name; /* ISA these kernels were compiled for: "scalar", ... */

    /* C[i][j] (+)= sum_{p<k} A[i*lda + p] * B[p*ldb + j] for i < m, j < n.
     * accumulate = 0 overwrites C. Used for S = Q K^T (B = K transposed),
     * O += P V, and the scoring GEMMs. */
    void (*gemm)(int m, int n, int k, const float *A, ptrdiff_t lda, const float *B,
                 ptrdiff_t ldb, float *C, ptrdiff_t ldc, int accumulate);

    /* max_j x[j] (-inf for n == 0; NaN entries are ignored). */
    float (*row_max)(const float *x, int n);

    /* x[j] = 2^(x[j] - sub) in place (0 for -inf or very negative arguments);
     * returns the sum of the new values. Relative error a few ulp. */
    float (*exp2_sum)(float *x, int n, float sub);

    /* x[j] *= a. */
    void (*scale)(float *x, int n, float a);
};

typedef struct stem_cpu_kernels stem_cpu_kernels;

extern const stem_cpu_kernels stem_cpu_kernels_scalar;

/* Runtime ISA detection (cpu_isa.c). */
stem_cpu_isa stem_cpu_isa_detect(void);        /* what the CPU + OS support */
stem_cpu_isa stem_cpu_isa_cap(stem_cpu_isa isa); /* capped by STEM_CPU_MAX_ISA */
const char *stem_cpu_isa_name(stem_cpu_isa isa);
/* Best kernels not above isa (only scalar exists today). Never NULL. */
const stem_cpu_kernels *stem_cpu_kernels_for(stem_cpu_isa isa, stem_cpu_isa *used);

#endif /* STEM_CPU_KERNELS_H */
