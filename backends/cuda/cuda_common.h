/* CUDA backend: state shared by its host files. */
#ifndef STEM_CUDA_COMMON_H
#define STEM_CUDA_COMMON_H

#include "cuda_driver.h"
#include "kernels/kernel_abi.h"
#include "stem_internal.h"

#include <stdint.h>

/* Kernel images (fatbins generated at build time, see backend.cmake). */
enum { STEM_CUDA_MOD_SCORE, STEM_CUDA_MOD_SELECT, STEM_CUDA_MOD_ATTN_GENERIC,
       STEM_CUDA_MOD_ATTN_MMA, STEM_CUDA_MOD_COUNT };

enum {
    STEM_CUDA_FN_PHASE_SUMS,
    STEM_CUDA_FN_GROUP_VMAX,
    STEM_CUDA_FN_VALUE_BONUS,
    STEM_CUDA_FN_SCORE_GEMM,
    STEM_CUDA_FN_XATTN_SCORES,
    STEM_CUDA_FN_SELECT,
    STEM_CUDA_FN_ATTN_GENERIC,
    /* tensor-core attention: + 4 * bf16 + 2 * (head_dim 128) + (block 128) */
    STEM_CUDA_FN_MMA_FIRST,
    /* head_dim 128 with Q re-read from shared memory: + 2 * bf16 + (block 128) */
    STEM_CUDA_FN_MMA_QSMEM_FIRST = STEM_CUDA_FN_MMA_FIRST + 8,
    /* block 128, 4 warps x 32 rows, 32-key tiles: + 2 * bf16 + (head_dim 128) */
    STEM_CUDA_FN_WIDE_FIRST = STEM_CUDA_FN_MMA_QSMEM_FIRST + 4,
    STEM_CUDA_FN_COUNT = STEM_CUDA_FN_WIDE_FIRST + 4
};

/* Per-context state (ctx->impl). */
typedef struct stem_cuda_context {
    const stem_cuda_api *api;
    CUdevice dev;
    CUcontext cu;      /* the device's primary context (retained) */
    CUstream stream;   /* ours, or desc.native_queue */
    int own_stream;
    int cc_major, cc_minor, sm_count, smem_optin;
    int force_generic; /* STEM_CUDA_GENERIC_ATTENTION=1: f32 CUDA-core attention only */
    int q_in_smem;     /* STEM_CUDA_ATTN_QSMEM=1: head_dim 128 re-reads Q from shared memory */
    int wide;          /* block 128 uses 4 warps x 32 rows (STEM_CUDA_ATTN_WIDE=0: 8 x 16) */
    CUmodule mod[STEM_CUDA_MOD_COUNT];
    CUfunction fn[STEM_CUDA_FN_COUNT];
} stem_cuda_context;

/* Per-plan state (plan->impl): device copies and scoring scratch. */
typedef struct stem_cuda_plan {
    CUdeviceptr budget;                    /* i32 [n] */
    CUdeviceptr qflat, kflat, gmax, vb;    /* allocated on the first score call */
} stem_cuda_plan;

static inline stem_cuda_context *stem_cuda_ctx(const stem_context *ctx)
{
    return (stem_cuda_context *)ctx->impl;
}

/* Makes the context's CUDA context current on this thread. */
stem_status stem_cuda_enter(stem_cuda_context *c, const char *what);
/* STEM_ERR_BACKEND_API (or DEVICE_OUT_OF_MEMORY) naming the call. */
stem_status stem_cuda_fail(CUresult r, const char *what);
stem_status stem_cuda_launch(stem_cuda_context *c, int fn, unsigned gx, unsigned gy, unsigned gz,
                             unsigned threads, unsigned shmem, void **params, const char *what);

/* Plans and stages (cuda_stages.c). */
stem_status stem_cuda_plan_check(const stem_context *ctx, const stem_attention_desc *desc,
                                 const stem_config *cfg);
stem_status stem_cuda_plan_init(stem_plan *plan);
void stem_cuda_plan_fini(stem_plan *plan);
stem_status stem_cuda_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                            const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores);
stem_status stem_cuda_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                             const stem_tensor *index, const stem_tensor *count);
stem_status stem_cuda_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                                const stem_tensor *k, const stem_tensor *v,
                                const stem_tensor *index, const stem_tensor *count,
                                const stem_tensor *out);

/* Dynamic shared memory of the tensor-core attention kernel: a Q tile of
 * 64 (block 64) or 128 (block 128) rows and two (K, V) tiles of 64 rows,
 * rows padded by 8 elements. */
static inline unsigned stem_cuda_mma_smem(int head_dim, int block)
{
    return (unsigned)((block + 4 * 64) * (head_dim + 8) * 2);
}

/* ... and of the wide variant: 128 Q rows, two (K, V) tiles of 32 rows. */
static inline unsigned stem_cuda_wide_smem(int head_dim)
{
    return (unsigned)((128 + 4 * 32) * (head_dim + 8) * 2);
}

#endif /* STEM_CUDA_COMMON_H */
