/* Vulkan backend: block-sparse causal attention (docs/semantics.md section 6). */
#include "vk_internal.h"

#include <stdlib.h>
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

stem_status stem_vk_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                              const stem_tensor *k, const stem_tensor *v,
                              const stem_tensor *index, const stem_tensor *count,
                              const stem_tensor *out)
{
    stem_vk_context *c = vk_ctx(plan->ctx);
    const vk_plan *vp = (const vk_plan *)plan->impl;
    vk_bind binds[VKB_COUNT_];
    vk_params p;
    memset(binds, 0, sizeof binds);
    memset(&p, 0, sizeof p);
    vk_params_plan(plan, pass, &p);
    stem_status st = vk_bind_tensor(c, q, VKB_Q, binds, &p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, k, VKB_K, binds, &p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, v, VKB_V, binds, &p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, index, VKB_INDEX, binds, &p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, count, VKB_COUNT, binds, &p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, out, VKB_OUT, binds, &p);
    if (st == STEM_OK && pass->lse) { /* the scores slot is free during attention */
        st = vk_bind_tensor(c, pass->lse, VKB_SCORES, binds, &p);
        p.dims3[3] |= VKF_LSE;
    }
    const stem_tensor *ts[7] = {q, k, v, index, count, out, pass->lse};
    if (st == STEM_OK)
        st = vk_sync_wrapped_in(c, ts, 7);
    if (st != STEM_OK)
        return st;
    const uint32_t lanes = c->row_attention ? 1u : LANES;
    uint32_t spec[VK_SPEC_COUNT] = {(uint32_t)plan->desc.dtype, vp->qt, vp->kt, lanes,
                                    (uint32_t)plan->desc.head_dim, vp->qt * lanes};
    vk_kernel kernel = c->row_attention ? VKK_ATTENTION_ROWS : VKK_ATTENTION;
    uint32_t rows = vp->qt, nsg, bc;
    /* The cooperative-matrix kernel writes no lse. */
    if (!pass->lse && vk_coop_tile(c, plan, q, k, v, out, &kernel, &nsg, &bc)) {
        rows = nsg * 16;
        /* Headroom above a new reference max (log2 units): less frequent moves, but
         * smaller P in f16; 8 cost the real-model fixture its 2e-3 bound on an H200. */
        const char *hr = getenv("STEM_VULKAN_COOP_HEADROOM");
        const uint32_t headroom = hr && atoi(hr) >= 0 && atoi(hr) <= 8 ? (uint32_t)atoi(hr) : 0u;
        const uint32_t cs[VK_SPEC_COUNT] = {(uint32_t)plan->desc.dtype, nsg, bc, headroom,
                                            (uint32_t)plan->desc.head_dim, nsg * 32};
        memcpy(spec, cs, sizeof spec);
    }
    VkPipeline pipe;
    st = vk_pipeline(c, kernel, spec, &pipe);
    if (st != STEM_OK)
        return st;
    const uint64_t items = (uint64_t)(pass->batch * pass->num_q_heads *
                                      pass->n_rows) *
                           (uint64_t)(plan->cfg.block_size / (int32_t)rows);
    p.dims2[1] = (uint32_t)out->dtype;
    p.dims2[2] = (uint32_t)items;
    /* The plain kernels scale Q; the coop kernel scales the f32 logits. */
    p.f0[3] = plan->scale * 1.4426950408889634f;
    st = vk_begin(c);
    if (st == STEM_OK)
        st = vk_dispatch(c, pipe, binds, &p, items);
    if (st != STEM_OK) {
        vk_abort(c);
        return st;
    }
    st = vk_submit_wait(c);
    if (st == STEM_OK)
        st = vk_sync_wrapped_out(c, ts + 5, 2);
    return st;
}
