/*
 * CPU backend: the AMX table. The AVX-512 (+ AVX512_BF16) kernels of the
 * SIMD template again, with gemm_bf16 on AMX tiles (TDPBF16PS: a 16 x 32 bf16
 * by 32 x 16 bf16 product into 16 x 16 f32 per instruction), which the
 * attention stage uses for S = Q K^T and O += P V on bf16 inputs. Built with
 * the AVX-512 flags plus -mavx512bf16 -mamx-tile -mamx-bf16 for this file
 * only (cpu_isa_flags.cmake); reached only after cpu_isa.c saw AMX-TILE and
 * AMX-BF16 in CPUID, the tile state enabled in XCR0, and Linux granted this
 * process the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM).
 */
/* gcc spells the AMX macros __AMX_TILE__ / __AMX_BF16__, clang __AMXTILE__ / __AMXBF16__. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512BF16__) && (defined(__AMX_TILE__) || defined(__AMXTILE__)) && \
    (defined(__AMX_BF16__) || defined(__AMXBF16__))
#include <stddef.h>

#include "cpu_kernels_avx512.h"

static void gemm_bf16_amx(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                          const uint32_t *Bp, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                          int accumulate);
static void gemm_bf16_amx_held(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                               const uint32_t *Bp, ptrdiff_t panel_stride, float *C,
                               ptrdiff_t ldc, int accumulate);
static void tiles_begin_amx(void);
static void tiles_end_amx(void);

#define KERNELS_NAME "amx"
#define KERNELS_TABLE stem_cpu_kernels_amx
#define GEMM_BF16_TABLE gemm_bf16_amx
#define GEMM_BF16_HELD_TABLE gemm_bf16_amx_held
#define TILES_BEGIN_TABLE tiles_begin_amx
#define TILES_END_TABLE tiles_end_amx

#include "cpu_kernels_simd.h"

_Static_assert(NR == 32, "a panel of the packed layout is two 16-column B tiles");

#define AMX_NR NR
/* gcc's tile intrinsics paste the tile number into the instruction text:
 * bare literals only, no parentheses. */
#define TILE_ZERO(t) _tile_zero(t)
#define TILE_LOAD(t, p, stride) _tile_loadd(t, (const void *)(p), (stride))
#define TILE_STORE(t, p, stride) _tile_stored(t, (void *)(p), (stride))
#define TILE_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#define TILE_BEGIN() _tile_loadconfig(&amx_cfg)
#define TILE_END() _tile_release()
#define AMX_EDGE gemm_bf16_simd

#include "cpu_amx_gemm.h"

static void gemm_bf16_amx(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                          const uint32_t *Bp, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                          int accumulate)
{
    amx_gemm_bf16(m, n, kp, A, lda, Bp, panel_stride, C, ldc, accumulate);
}

static void gemm_bf16_amx_held(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                               const uint32_t *Bp, ptrdiff_t panel_stride, float *C,
                               ptrdiff_t ldc, int accumulate)
{
    amx_gemm_bf16_cfg(m, n, kp, A, lda, Bp, panel_stride, C, ldc, accumulate, 0);
}

static void tiles_begin_amx(void)
{
    TILE_BEGIN();
}

static void tiles_end_amx(void)
{
    TILE_END();
}
#else
typedef int stem_cpu_kernels_amx_unavailable;
#endif
