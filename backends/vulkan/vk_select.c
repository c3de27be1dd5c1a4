/* Vulkan backend: per-row block selection (docs/semantics.md section 5). */
#include "vk_internal.h"

#include <string.h>

stem_status stem_vk_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                           const stem_tensor *index, const stem_tensor *count)
{
    stem_vk_context *c = vk_ctx(plan->ctx);
    vk_plan *vp = (vk_plan *)plan->impl;
    vk_bind binds[VKB_COUNT_];
    vk_params p;
    memset(binds, 0, sizeof binds);
    memset(&p, 0, sizeof p);
    vk_params_plan(plan, pass, &p);
    stem_status st = vk_bind_tensor(c, scores, VKB_SCORES, binds, &p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, index, VKB_INDEX, binds, &p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, count, VKB_COUNT, binds, &p);
    const stem_tensor *ts[3] = {scores, index, count};
    if (st == STEM_OK)
        st = vk_sync_wrapped_in(c, ts, 3);
    if (st != STEM_OK)
        return st;
    vk_bind_mem(&vp->budget, VKB_BUDGET, binds);
    const uint32_t spec[VK_SPEC_COUNT] = {0, 0, 0, 0, 0, 0};
    VkPipeline pipe;
    st = vk_pipeline(c, VKK_SELECT, spec, &pipe);
    if (st != STEM_OK)
        return st;
    const uint64_t rows = (uint64_t)(pass->batch * pass->num_q_heads * pass->n_rows);
    p.dims2[2] = (uint32_t)rows;
    st = vk_begin(c);
    if (st == STEM_OK)
        st = vk_dispatch(c, pipe, binds, &p, rows);
    if (st != STEM_OK) {
        vk_abort(c);
        return st;
    }
    st = vk_submit_wait(c);
    if (st == STEM_OK)
        st = vk_sync_wrapped_out(c, ts + 1, 2);
    return st;
}
