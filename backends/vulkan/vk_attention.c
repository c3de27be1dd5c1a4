/* Vulkan backend: block-sparse causal attention (docs/semantics.md section 6). */
#include "vk_internal.h"

#include <string.h>

#define LANES 8u

/* Shared bytes of the attention kernel: Q tile, padded K tile, V tile, P tile. */
static uint64_t attention_shared(uint64_t qt, uint64_t kt, uint64_t d)
{
    return 4 * (qt * d + kt * (d + 1) + kt * d + qt * kt);
}

int vk_attention_tile(const stem_vk_context *c, int64_t d, int32_t block, uint32_t *qt,
                      uint32_t *kt)
{
    static const uint32_t qts[2] = {16, 8}, kts[4] = {64, 32, 16, 8};
    if (c->row_attention) {
        /* One row per invocation, K and V read in place (no shared memory,
         * no barrier): one key per step. On lavapipe every buffer load is a
         * per-lane loop of branches in the JIT code and compile time grows
         * much faster than linearly with their number, so the step is not
         * unrolled over several keys (n * B steps per row: vk_loop_budget). */
        (void)d;
        *qt = 16; /* every block size: one pipeline per dtype and d (compiles are slow) */
        *kt = 1;
        return 1;
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            if (kts[j] <= (uint32_t)block &&
                attention_shared(qts[i], kts[j], (uint64_t)d) <= c->shared_limit) {
                *qt = qts[i];
                *kt = kts[j];
                return 1;
            }
    return 0;
}

typedef struct attention_job {
    vk_bind binds[VKB_COUNT_];
    vk_params p;
    VkPipeline pipe;
    uint64_t items;
    vk_convert_job convert;
} attention_job;

static stem_status record_attention(stem_vk_context *c, void *arg)
{
    attention_job *j = (attention_job *)arg;
    stem_status st = vk_convert_record(c, &j->convert);
    return st == STEM_OK ? vk_dispatch(c, j->pipe, j->binds, &j->p, j->items) : st;
}

stem_status stem_vk_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                              const stem_tensor *k, const stem_tensor *v,
                              const stem_tensor *index, const stem_tensor *count,
                              const stem_tensor *out)
{
    stem_vk_context *c = vk_ctx(plan->ctx);
    const vk_plan *vp = (const vk_plan *)plan->impl;
    attention_job j;
    memset(&j, 0, sizeof j);
    vk_bind *binds = j.binds;
    vk_params *p = &j.p;
    vk_params_plan(plan, pass, p);
    stem_status st = vk_bind_tensor(c, q, VKB_Q, binds, p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, k, VKB_K, binds, p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, v, VKB_V, binds, p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, index, VKB_INDEX, binds, p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, count, VKB_COUNT, binds, p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, out, VKB_OUT, binds, p);
    if (st == STEM_OK && pass->lse) { /* the scores slot is free during attention */
        st = vk_bind_tensor(c, pass->lse, VKB_SCORES, binds, p);
        p->flags |= VKF_LSE;
    }
    if (st != STEM_OK)
        return st;
    const uint32_t lanes = c->row_attention ? 1u : LANES;
    uint32_t spec[VK_SPEC_COUNT] = {(uint32_t)plan->desc.dtype, vp->qt, vp->kt, lanes,
                                    (uint32_t)plan->desc.head_dim, vp->qt * lanes};
    vk_kernel kernel = c->row_attention ? VKK_ATTENTION_ROWS : VKK_ATTENTION;
    uint32_t rows = vp->qt, nsg, bc;
    /* The cooperative-matrix kernel writes no lse. It reads f16 (and bf16 where
     * the KHR path has bf16 matrices) as it is; bf16 otherwise through an f16
     * copy, f32 on request through split hi and lo copies (matrix paths only).
     * STEM_VULKAN_CONVERT=1 takes the bf16 copies on the plain kernels too (so
     * they run on any device); =split the f32 split copies, rebuilt as f32. */
    /* STEM_VULKAN_F16_COPY=1: f16 read from the copies even where the caller's
     * buffers would do. */
    const int f16_copy = plan->desc.dtype == STEM_DTYPE_F16 && c->tune.f16_copy;
    int coop = !pass->lse && !f16_copy &&
               vk_coop_tile(c, plan, q, k, v, out, 0, 0, &kernel, &nsg, &bc);
    if (!coop && vk_convert_dtype(c, plan->desc.dtype)) {
        const int split = plan->desc.dtype == STEM_DTYPE_F32;
        coop = !pass->lse && vk_coop_tile(c, plan, q, k, v, out, 1, split, &kernel, &nsg, &bc);
        const int check = !coop && split && c->convert == 2; /* STEM_VULKAN_CONVERT=split */
        if (coop || (c->convert == 1 && !split) || check) {
            const stem_tensor *qkv[3] = {q, k, v};
            st = vk_convert_prepare(c, qkv, split, check, &j.convert, binds, p);
            if (st != STEM_OK)
                return st;
            spec[0] = (uint32_t)(check ? STEM_DTYPE_F32 : STEM_DTYPE_F16);
        }
    }
    if (coop) {
        rows = nsg * 16;
        /* Headroom above a new reference max (log2 units): less frequent moves, but
         * smaller P in f16; 8 cost the real-model fixture its 2e-3 bound on an H200. */
        const uint32_t cs[VK_SPEC_COUNT] = {(uint32_t)STEM_DTYPE_F16, nsg, bc,
                                            c->tune.coop_headroom, (uint32_t)plan->desc.head_dim,
                                            nsg * 32, c->tune.attn_variant};
        memcpy(spec, cs, sizeof spec);
    }
    st = vk_pipeline(c, kernel, spec, &j.pipe);
    if (st == STEM_ERR_KERNEL_BUILD && coop) {
        /* A driver that lists the extension but cannot build the kernel: this
         * context runs that variant on the plain kernels from now on. */
        c->broken_kernels |= 1u << kernel;
        stem_log(plan->ctx, STEM_LOG_WARN, "%s; attention falls back to the plain kernels",
                 stem_last_error());
        stem_clear_error();
        return stem_vk_attention(plan, pass, q, k, v, index, count, out);
    }
    if (st != STEM_OK)
        return st;
    j.items = (uint64_t)(pass->batch * pass->num_q_heads * pass->n_rows) *
              (uint64_t)(plan->cfg.block_size / (int32_t)rows);
    p->out_dtype = (uint32_t)out->dtype;
    p->items = (uint32_t)j.items;
    /* The plain kernels scale Q; the coop kernel scales the f32 logits. */
    p->qmul = plan->scale * 1.4426950408889634f;
    const stem_tensor *ts[7] = {q, k, v, index, count, out, pass->lse};
    return vk_stage_run(c, ts, 7, (1u << 5) | (1u << 6), record_attention, &j);
}
