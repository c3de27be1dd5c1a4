/* Vulkan backend: per-row block selection (docs/semantics.md section 5). */
#include "vk_internal.h"

#include <string.h>

typedef struct select_job {
    vk_bind binds[VKB_COUNT_];
    vk_params p;
    VkPipeline pipe;
} select_job;

/* One workgroup per row. */
static stem_status record_select(stem_vk_context *c, void *arg)
{
    select_job *j = (select_job *)arg;
    return vk_dispatch(c, j->pipe, j->binds, &j->p, j->p.items);
}

stem_status stem_vk_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                           const stem_tensor *index, const stem_tensor *count)
{
    stem_vk_context *c = vk_ctx(plan->ctx);
    vk_plan *vp = (vk_plan *)plan->impl;
    select_job j;
    memset(&j, 0, sizeof j);
    vk_params_plan(plan, pass, &j.p);
    stem_status st = vk_bind_tensor(c, scores, VKB_SCORES, j.binds, &j.p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, index, VKB_INDEX, j.binds, &j.p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, count, VKB_COUNT, j.binds, &j.p);
    vk_bind_mem(&vp->budget, VKB_BUDGET, j.binds);
    const uint32_t spec[VK_SPEC_COUNT] = {0, 0, 0, 0, 0, 0};
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_SELECT, spec, &j.pipe);
    if (st != STEM_OK)
        return st;
    j.p.items = (uint32_t)(pass->batch * pass->num_q_heads * pass->n_rows);
    const stem_tensor *ts[3] = {scores, index, count};
    return vk_stage_run(c, ts, 3, (1u << 1) | (1u << 2), record_select, &j);
}
