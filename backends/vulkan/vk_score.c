/* Vulkan backend: block scores (docs/semantics.md sections 1-3).
 * Phase path: Qflat and Kflat phase sums, V-norm group maxima and the value
 * bonus, then one causal GEMM per head. XAttention: its own kernel. */
#include "vk_internal.h"

#include <string.h>

#define LOG2E 1.4426950408889634

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static stem_status score_phase(stem_plan *plan, const stem_pass *pass, stem_vk_context *c,
                               vk_bind *binds, vk_params *p)
{
    const stem_attention_desc *d = &plan->desc;
    const uint64_t n = (uint64_t)plan->n_blocks, W = (uint64_t)plan->cfg.stride * d->head_dim;
    const uint64_t nr = (uint64_t)pass->n_rows; /* query rows of the call */
    const uint64_t hq = (uint64_t)(pass->batch * pass->num_q_heads);
    const uint64_t hkv = (uint64_t)(pass->batch * pass->num_kv_heads);
    const uint64_t G = (uint64_t)plan->group;
    const int stats = pass->vstats_in || pass->vstats_out; /* STEM / DENSE only (core) */
    const int bonus =
        plan->cfg.selector != STEM_SELECTOR_UNIFORM && (plan->cfg.beta != 0.0f || stats);
    stem_status st = vk_scratch(c, 0, hq * nr * W * 4);
    if (st == STEM_OK)
        st = vk_scratch(c, 1, hkv * n * W * 4);
    if (st == STEM_OK)
        st = vk_scratch(c, 2, hkv * n * G * 4);
    if (st == STEM_OK)
        st = vk_scratch(c, 3, hkv * n * 4);
    const uint32_t spec[VK_SPEC_COUNT] = {(uint32_t)d->dtype, 0, 0, 0, 0, 0};
    VkPipeline ps, vn, vbp, gemm;
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_PHASE_SUM, spec, &ps);
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_VNORM, spec, &vn);
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_VBONUS, spec, &vbp);
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_SCORE_GEMM, spec, &gemm);
    if (st != STEM_OK)
        return st;
    vk_bind_mem(&c->scratch[0], VKB_QFLAT, binds);
    vk_bind_mem(&c->scratch[1], VKB_KFLAT, binds);
    vk_bind_mem(&c->scratch[2], VKB_GMAX, binds);
    vk_bind_mem(&c->scratch[3], VKB_VB, binds);

    st = vk_begin(c);
    if (st != STEM_OK)
        return st;
    /* Query phase sums: the Q tensor in slot 0. */
    vk_params pq = *p;
    pq.dims2[2] = (uint32_t)(hq * nr * W);
    st = vk_dispatch(c, ps, binds, &pq, ceil_div(hq * nr * W, 64));
    /* Key phase sums: the K tensor moved into slot 0, reversed segments. */
    if (st == STEM_OK) {
        vk_bind kb[VKB_COUNT_];
        memcpy(kb, binds, sizeof kb);
        kb[VKB_Q] = binds[VKB_K];
        kb[VKB_QFLAT] = binds[VKB_KFLAT];
        vk_params pk = *p;
        memcpy(pk.str[0], p->str[1], sizeof pk.str[0]);
        pk.off[0] = p->off[1];
        pk.dims0[1] = (uint32_t)pass->num_kv_heads;
        pk.dims2[2] = (uint32_t)(hkv * n * W);
        pk.dims3[3] |= VKF_REVERSE;
        st = vk_dispatch(c, ps, kb, &pk, ceil_div(hkv * n * W, 64));
    }
    vk_params pv = *p;
    pv.dims0[1] = (uint32_t)pass->num_kv_heads;
    if (bonus)
        pv.dims3[3] |= VKF_BONUS;
    if (st == STEM_OK && bonus) {
        pv.dims2[2] = (uint32_t)(hkv * n * G);
        st = vk_dispatch(c, vn, binds, &pv, ceil_div(hkv * n * G, 64));
    }
    /* Statistics in/out ride in the scores and index slots of the bonus dispatch. */
    vk_bind sb[VKB_COUNT_];
    memcpy(sb, binds, sizeof sb);
    if (st == STEM_OK && pass->vstats_in) {
        st = vk_bind_tensor(c, pass->vstats_in, VKB_SCORES, sb, &pv);
        pv.dims3[3] |= VKF_VSTATS_IN;
    }
    if (st == STEM_OK && pass->vstats_out) {
        st = vk_bind_tensor(c, pass->vstats_out, VKB_INDEX, sb, &pv);
        pv.dims3[3] |= VKF_VSTATS_OUT;
    }
    if (st == STEM_OK)
        st = vk_dispatch(c, vbp, sb, &pv, hkv);
    if (st == STEM_OK) {
        const uint64_t tn = ceil_div(n, 16), tr = ceil_div(nr, 16);
        vk_params pg = *p;
        pg.dims2[2] = (uint32_t)(hq * tn * tr);
        st = vk_dispatch(c, gemm, binds, &pg, hq * tn * tr);
    }
    if (st != STEM_OK) {
        vk_abort(c);
        return st;
    }
    return vk_submit_wait(c);
}

static stem_status score_xattention(stem_plan *plan, const stem_pass *pass, stem_vk_context *c,
                                    vk_bind *binds, vk_params *p)
{
    const stem_attention_desc *d = &plan->desc;
    const uint32_t e = d->head_dim % 32 == 0 ? 32u : d->head_dim % 16 == 0 ? 16u : 8u;
    const uint32_t spec[VK_SPEC_COUNT] = {(uint32_t)d->dtype, e, 0, 0, (uint32_t)d->head_dim, 0};
    VkPipeline x;
    stem_status st = vk_pipeline(c, VKK_SCORE_XATTN, spec, &x);
    if (st != STEM_OK)
        return st;
    p->f0[3] = (float)((double)plan->scale / ((double)plan->cfg.stride * plan->cfg.norm) * LOG2E);
    const uint64_t rows = (uint64_t)(pass->batch * pass->num_q_heads * plan->n_blocks);
    p->dims2[2] = (uint32_t)rows;
    /* One workgroup per block row: row statistics stay in shared memory. */
    st = vk_begin(c);
    if (st == STEM_OK)
        st = vk_dispatch(c, x, binds, p, rows);
    if (st != STEM_OK) {
        vk_abort(c);
        return st;
    }
    return vk_submit_wait(c);
}

stem_status stem_vk_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                          const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores)
{
    stem_vk_context *c = vk_ctx(plan->ctx);
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
        st = vk_bind_tensor(c, scores, VKB_SCORES, binds, &p);
    const stem_tensor *ts[6] = {q, k, v, pass->vstats_in, scores, pass->vstats_out};
    if (st == STEM_OK)
        st = vk_sync_wrapped_in(c, ts, 5);
    if (st != STEM_OK)
        return st;
    if (stem_selector_is_xattention(plan->cfg.selector))
        st = score_xattention(plan, pass, c, binds, &p);
    else
        st = score_phase(plan, pass, c, binds, &p);
    if (st == STEM_OK)
        st = vk_sync_wrapped_out(c, ts + 4, 2);
    return st;
}
