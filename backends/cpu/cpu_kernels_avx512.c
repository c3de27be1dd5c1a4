/*
 * CPU backend: AVX-512 (F, BW, VL; BF16 for the pair GEMM) kernels. Built
 * with -mavx512f -mavx512bw -mavx512vl [-mavx512bf16] -mavx2 -mfma -mf16c for
 * this file only (cpu_isa_flags.cmake); reached only through the kernel
 * table after CPUID + XGETBV said the CPU and OS support it (ZMM and opmask
 * state enabled). Definitions in cpu_kernels_avx512.h.
 */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__)
#include "cpu_kernels_avx512.h"

#define KERNELS_NAME "avx512"
#define KERNELS_TABLE stem_cpu_kernels_avx512
#ifdef VDOT_BF16
#define KERNELS_TABLE_BF16 stem_cpu_kernels_avx512_bf16
#endif

#include "cpu_kernels_simd.h"
#else
typedef int stem_cpu_kernels_avx512_unavailable;
#endif
