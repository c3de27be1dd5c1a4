/* CPU backend: coefficients of the SIMD kernels' exp2 (cpu_kernels_simd.h and
 * the per-ISA vexp2 helpers that it calls). */
#ifndef STEM_CPU_EXP2_COEFFS_H
#define STEM_CPU_EXP2_COEFFS_H

/* 2^f for |f| <= 1/2: degree-7 Taylor series (truncation 5e-9 relative),
 * the scalar kernels' coefficients. */
#define EXP2_C7 1.525273380405984e-05f
#define EXP2_C6 1.5403530393381608e-04f
#define EXP2_C5 1.3333558146428443e-03f
#define EXP2_C4 9.618129107628477e-03f
#define EXP2_C3 5.550410866482158e-02f
#define EXP2_C2 2.402265069591007e-01f
#define EXP2_C1 6.931471805599453e-01f

/* 2^f for |f| <= 1/2 as 1 + f (Q1 + f (Q2 + f (Q3 + f (Q4 + f Q5)))):
 * degree-5 minimax of the relative error (bench/cpu/exp2_minimax.py),
 * 1.6e-7 relative in f32 Horner with FMA, the AVX-512 kernels' vexp2,
 * where two fewer FMAs and vscalefps halve the instructions per vector. */
#define EXP2_Q5 1.326472848e-03f
#define EXP2_Q4 9.671512991e-03f
#define EXP2_Q3 5.550733581e-02f
#define EXP2_Q2 2.402224243e-01f
#define EXP2_Q1 6.931470037e-01f

#endif /* STEM_CPU_EXP2_COEFFS_H */
