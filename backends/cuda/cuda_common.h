/* CUDA backend: state shared by its host files. */
#ifndef STEM_CUDA_COMMON_H
#define STEM_CUDA_COMMON_H

#include "cuda_driver.h"
#include "kernels/kernel_abi.h"
#include "stem_internal.h"

#include <stdint.h>

/* Kernel images (fatbins generated at build time, see backend.cmake):
 * X(id, file stem, arch). arch 0: SASS for sm_80 and sm_90a plus PTX, loads
 * everywhere; 90: only an sm_90a image, loaded on compute capability 9.0. */
#define STEM_CUDA_MODULES(X)                                                                       \
    X(SCORE, score, 0)                                                                             \
    X(SELECT, select, 0)                                                                           \
    X(COPY, copy, 0)                                                                               \
    X(ATTN_GENERIC, attention_generic, 0)                                                          \
    X(ATTN_MMA, attention_mma, 0)                                                                  \
    X(ATTN_SM90, attention_sm90, 90)

enum {
#define STEM_CUDA_MOD_ENUM(id, file, arch) STEM_CUDA_MOD_##id,
    STEM_CUDA_MODULES(STEM_CUDA_MOD_ENUM)
#undef STEM_CUDA_MOD_ENUM
    STEM_CUDA_MOD_COUNT
};

/* Scoring and selection kernels: X(id, module, symbol). */
#define STEM_CUDA_KERNELS(X)                                                                       \
    X(PHASE_SUMS, SCORE, "stem_k_phase_sums")                                                      \
    X(GROUP_VMAX, SCORE, "stem_k_group_vmax")                                                      \
    X(VALUE_BONUS, SCORE, "stem_k_value_bonus")                                                    \
    X(SCORE_GEMM, SCORE, "stem_k_score_gemm")                                                      \
    X(SCORE_GEMM_TC, SCORE, "stem_k_score_gemm_tc")                                                \
    X(SCORE_GEMM_TC32, SCORE, "stem_k_score_gemm_tc32")                                            \
    X(SCORE_REDUCE, SCORE, "stem_k_score_reduce")                                                  \
    X(SCORE_PREP, SCORE, "stem_k_score_prep")                                                      \
    X(SCORE_PREP8, SCORE, "stem_k_score_prep8")                                                    \
    X(XATTN_SCORES, SCORE, "stem_k_xattn_scores")                                                  \
    X(SELECT, SELECT, "stem_k_select")                                                             \
    X(SELECT_WARP, SELECT, "stem_k_select_warp")                                                   \
    X(COPY_RECTS, COPY, "stem_k_copy_rects")

enum {
#define STEM_CUDA_FN_ENUM(id, mod, sym) STEM_CUDA_FN_##id,
    STEM_CUDA_KERNELS(STEM_CUDA_FN_ENUM)
#undef STEM_CUDA_FN_ENUM
    STEM_CUDA_FN_COUNT
};

struct stem_cuda_context;

/* One attention kernel variant. The table (cuda_variants.c) is ordered by
 * preference; the first entry whose fields match the plan and whose
 * supports() accepts the tensors runs. */
typedef struct stem_cuda_attn_variant {
    const char *symbol;
    const char *family;  /* "sm90" / "sm90s" / "sm90p" (wgmma + TMA; overlapped / serial softmax /
                            overlapped + ping-pong),
                            "mma" (mma.sync), "generic" (f32) */
    int module;          /* STEM_CUDA_MOD_* */
    int dtype;           /* stem_dtype, or -1 for any */
    int head_dim;        /* 0: any */
    int block;           /* block_size, 0: any */
    int rows;            /* query rows per CTA (one query block for the tensor-core kernels) */
    int threads;
    int tma;             /* takes three tensor maps (Q, K, V) after the parameters */
    int opt_in;          /* 1: only when STEM_CUDA_ATTN names the family (not yet run
                            through the suite on a GPU; see bench/results/cuda.md) */
    unsigned (*smem)(int head_dim); /* dynamic shared memory; NULL: none */
    int (*supports)(const struct stem_cuda_context *c, const stem_tensor *q,
                    const stem_tensor *k, const stem_tensor *v);
} stem_cuda_attn_variant;

extern const stem_cuda_attn_variant stem_cuda_attn_variants[];
extern const int stem_cuda_attn_variant_count;
/* Keys per K / V tile of the sm90 kernels at this head_dim (their tensor maps' box rows). */
int stem_cuda_sm90_kv_rows(int head_dim);
#define STEM_CUDA_ATTN_VARIANT_MAX 32

/* Per-context state (ctx->impl). */
typedef struct stem_cuda_context {
    const stem_cuda_api *api;
    CUdevice dev;
    CUcontext cu;      /* the device's primary context (retained) */
    CUstream stream;   /* ours, or desc.native_queue */
    int own_stream;
    int stream_alloc;  /* buffers come from the device's pool, ordered on stream (no waits) */
    int cc_major, cc_minor, sm_count, smem_optin;
    int score_tc;      /* STEM_CUDA_SCORE_GEMM: 1 tc, -1 f32, 0 by dtype (tc for 16-bit) */
    int score_split;   /* STEM_CUDA_SCORE_SPLIT=0: no split-K score GEMM */
    int select_cta;    /* STEM_CUDA_SELECT=cta: top-k rows on the CTA-per-row kernel */
    int score_fuse;    /* STEM_CUDA_SCORE_FUSE: 0 separate phase-sum / value kernels, 8 the
                          fused kernel with 8-row load batches, else (default) 4-row */
    int pdl;           /* STEM_CUDA_PDL=1 (compute capability 9.0): programmatic dependent
                          launch of the score GEMM, segment sums and selection */
    const char *attn_family; /* STEM_CUDA_ATTN: that family first; NULL: table order */
    int persistent;    /* STEM_CUDA_PERSISTENT=1: the persistent twins of the TMA variants
                          (heads of a query block together), 2: the same, head-major items */
    CUmodule mod[STEM_CUDA_MOD_COUNT];
    CUfunction fn[STEM_CUDA_FN_COUNT];
    CUfunction attn_fn[STEM_CUDA_ATTN_VARIANT_MAX]; /* NULL: variant not loaded on this device */
    /* <symbol>_persist of a TMA variant (loaded when persistent); NULL: none */
    CUfunction attn_persist_fn[STEM_CUDA_ATTN_VARIANT_MAX];
} stem_cuda_context;

/* Dynamic shared memory of a TMA variant's persistent twin: one more Q tile
 * (attention_sm90.cu, sm90_smem<D, STAGES, 2>). */
static inline unsigned stem_cuda_persist_smem(const stem_cuda_attn_variant *var, int head_dim)
{
    return var->smem(head_dim) + 128u * (unsigned)head_dim * 2u;
}

/* Per-plan state (plan->impl): device copies and scoring scratch. */
typedef struct stem_cuda_plan {
    CUdeviceptr budget;                    /* i32 [n] */
    CUdeviceptr qflat, kflat, gmax, vb;    /* allocated on the first score call */
    CUdeviceptr partial;                   /* split-K segment sums, partial_bytes */
    size_t partial_bytes;
    CUdeviceptr sched;                     /* u32 work counter of the persistent attention */
} stem_cuda_plan;

static inline stem_cuda_context *stem_cuda_ctx(const stem_context *ctx)
{
    return (stem_cuda_context *)ctx->impl;
}

/* Makes the context's CUDA context current on this thread. */
stem_status stem_cuda_enter(stem_cuda_context *c, const char *what);
/* Device memory of the context: from the stream-ordered pool when the
 * device has one (creation and release queued on c->stream, no waits),
 * else cuMemAlloc/cuMemFree (the release waits for the stream first). */
CUresult stem_cuda_mem_alloc(stem_cuda_context *c, CUdeviceptr *p, size_t bytes);
void stem_cuda_mem_free(stem_cuda_context *c, CUdeviceptr p);
/* STEM_ERR_BACKEND_API (or DEVICE_OUT_OF_MEMORY) naming the call. */
stem_status stem_cuda_fail(CUresult r, const char *what);
stem_status stem_cuda_launch(stem_cuda_context *c, CUfunction fn, unsigned gx, unsigned gy,
                             unsigned gz, unsigned threads, unsigned shmem, void **params,
                             const char *what);
/* The same for a kernel that may start before the stream's previous kernel
 * ends (it waits with griddepcontrol.wait): programmatic dependent launch
 * when c->pdl, else stem_cuda_launch. */
stem_status stem_cuda_launch_pdl(stem_cuda_context *c, CUfunction fn, unsigned gx, unsigned gy,
                                 unsigned gz, unsigned threads, unsigned shmem, void **params,
                                 const char *what);

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

#endif /* STEM_CUDA_COMMON_H */
