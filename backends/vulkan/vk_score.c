/* Vulkan backend: block scores (docs/semantics.md sections 1-3).
 * Phase path: Qflat and Kflat phase sums, V-norm group maxima and the value
 * bonus, then one causal GEMM per head. XAttention: its own kernel. */
#include "vk_internal.h"

#include <string.h>

#define LOG2E 1.4426950408889634

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* What a score stage records: bindings, params, pipelines. */
typedef struct score_job {
    const stem_plan *plan;
    const stem_pass *pass;
    vk_bind binds[VKB_COUNT_];
    vk_params p;
    VkPipeline ps, vn, vbp, gemm, xattn;
    int bonus;
} score_job;

static stem_status record_phase(stem_vk_context *c, void *arg);

static stem_status score_phase(stem_vk_context *c, score_job *j)
{
    const stem_plan *plan = j->plan;
    const stem_pass *pass = j->pass;
    const stem_attention_desc *d = &plan->desc;
    const uint64_t n = (uint64_t)plan->n_blocks, W = (uint64_t)plan->cfg.stride * d->head_dim;
    const uint64_t nr = (uint64_t)pass->n_rows; /* query rows of the call */
    const uint64_t hq = (uint64_t)(pass->batch * pass->num_q_heads);
    const uint64_t hkv = (uint64_t)(pass->batch * pass->num_kv_heads);
    const uint64_t G = (uint64_t)plan->group;
    const int stats = pass->vstats_in || pass->vstats_out; /* STEM / DENSE only (core) */
    j->bonus = plan->cfg.selector != STEM_SELECTOR_UNIFORM && (plan->cfg.beta != 0.0f || stats);
    stem_status st = vk_scratch(c, VKS_QFLAT, hq * nr * W * 4);
    if (st == STEM_OK)
        st = vk_scratch(c, VKS_KFLAT, hkv * n * W * 4);
    if (st == STEM_OK)
        st = vk_scratch(c, VKS_GMAX, hkv * n * G * 4);
    if (st == STEM_OK)
        st = vk_scratch(c, VKS_VB, hkv * n * 4);
    const uint32_t spec[VK_SPEC_COUNT] = {(uint32_t)d->dtype, 0, 0, 0, 0, 0};
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_PHASE_SUM, spec, &j->ps);
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_VNORM, spec, &j->vn);
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_VBONUS, spec, &j->vbp);
    if (st == STEM_OK)
        st = vk_pipeline(c, VKK_SCORE_GEMM, spec, &j->gemm);
    if (st != STEM_OK)
        return st;
    vk_bind_mem(&c->scratch[VKS_QFLAT], VKB_QFLAT, j->binds);
    vk_bind_mem(&c->scratch[VKS_KFLAT], VKB_KFLAT, j->binds);
    vk_bind_mem(&c->scratch[VKS_GMAX], VKB_GMAX, j->binds);
    vk_bind_mem(&c->scratch[VKS_VB], VKB_VB, j->binds);
    return STEM_OK;
}

static stem_status record_phase(stem_vk_context *c, void *arg)
{
    score_job *j = (score_job *)arg;
    const stem_plan *plan = j->plan;
    const stem_pass *pass = j->pass;
    const vk_bind *binds = j->binds;
    const vk_params *p = &j->p;
    const int bonus = j->bonus;
    const stem_attention_desc *d = &plan->desc;
    const uint64_t n = (uint64_t)plan->n_blocks, W = (uint64_t)plan->cfg.stride * d->head_dim;
    const uint64_t nr = (uint64_t)pass->n_rows;
    const uint64_t hq = (uint64_t)(pass->batch * pass->num_q_heads);
    const uint64_t hkv = (uint64_t)(pass->batch * pass->num_kv_heads);
    const uint64_t G = (uint64_t)plan->group;
    /* Query phase sums: the Q tensor in slot 0. */
    vk_params pq = *p;
    pq.items = (uint32_t)(hq * nr * W);
    stem_status st = vk_dispatch(c, j->ps, binds, &pq, ceil_div(hq * nr * W, 64));
    /* Key phase sums: the K tensor moved into slot 0, reversed segments. */
    if (st == STEM_OK) {
        vk_bind kb[VKB_COUNT_];
        memcpy(kb, binds, sizeof kb);
        kb[VKB_Q] = binds[VKB_K];
        kb[VKB_QFLAT] = binds[VKB_KFLAT];
        vk_params pk = *p;
        memcpy(pk.str[0], p->str[1], sizeof pk.str[0]);
        pk.off[0] = p->off[1];
        pk.heads = (uint32_t)pass->num_kv_heads;
        pk.items = (uint32_t)(hkv * n * W);
        pk.flags |= VKF_REVERSE;
        st = vk_dispatch(c, j->ps, kb, &pk, ceil_div(hkv * n * W, 64));
    }
    vk_params pv = *p;
    pv.heads = (uint32_t)pass->num_kv_heads;
    if (bonus)
        pv.flags |= VKF_BONUS;
    if (st == STEM_OK && bonus) {
        pv.items = (uint32_t)(hkv * n * G);
        st = vk_dispatch(c, j->vn, binds, &pv, ceil_div(hkv * n * G, 64));
    }
    /* Statistics in/out ride in the scores and index slots of the bonus dispatch. */
    vk_bind sb[VKB_COUNT_];
    memcpy(sb, binds, sizeof sb);
    if (st == STEM_OK && pass->vstats_in) {
        st = vk_bind_tensor(c, pass->vstats_in, VKB_SCORES, sb, &pv);
        pv.flags |= VKF_VSTATS_IN;
    }
    if (st == STEM_OK && pass->vstats_out) {
        st = vk_bind_tensor(c, pass->vstats_out, VKB_INDEX, sb, &pv);
        pv.flags |= VKF_VSTATS_OUT;
    }
    if (st == STEM_OK)
        st = vk_dispatch(c, j->vbp, sb, &pv, hkv);
    if (st == STEM_OK) {
        const uint64_t tn = ceil_div(n, 16), tr = ceil_div(nr, 16);
        vk_params pg = *p;
        pg.items = (uint32_t)(hq * tn * tr);
        st = vk_dispatch(c, j->gemm, binds, &pg, hq * tn * tr);
    }
    return st;
}

static stem_status score_xattention(stem_vk_context *c, score_job *j)
{
    const stem_plan *plan = j->plan;
    const stem_attention_desc *d = &plan->desc;
    const uint32_t e = d->head_dim % 32 == 0 ? 32u : d->head_dim % 16 == 0 ? 16u : 8u;
    const uint32_t spec[VK_SPEC_COUNT] = {(uint32_t)d->dtype, e, 0, 0, (uint32_t)d->head_dim, 0};
    stem_status st = vk_pipeline(c, VKK_SCORE_XATTN, spec, &j->xattn);
    if (st != STEM_OK)
        return st;
    j->p.qmul =
        (float)((double)plan->scale / ((double)plan->cfg.stride * plan->cfg.norm) * LOG2E);
    j->p.items = (uint32_t)(j->pass->batch * j->pass->num_q_heads * plan->n_blocks);
    return STEM_OK;
}

/* One workgroup per block row: row statistics stay in shared memory. */
static stem_status record_xattention(stem_vk_context *c, void *arg)
{
    score_job *j = (score_job *)arg;
    return vk_dispatch(c, j->xattn, j->binds, &j->p, j->p.items);
}

stem_status stem_vk_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                          const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores)
{
    stem_vk_context *c = vk_ctx(plan->ctx);
    score_job j;
    memset(&j, 0, sizeof j);
    j.plan = plan;
    j.pass = pass;
    vk_params_plan(plan, pass, &j.p);
    stem_status st = vk_bind_tensor(c, q, VKB_Q, j.binds, &j.p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, k, VKB_K, j.binds, &j.p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, v, VKB_V, j.binds, &j.p);
    if (st == STEM_OK)
        st = vk_bind_tensor(c, scores, VKB_SCORES, j.binds, &j.p);
    const int xattn = stem_selector_is_xattention(plan->cfg.selector);
    if (st == STEM_OK)
        st = xattn ? score_xattention(c, &j) : score_phase(c, &j);
    if (st != STEM_OK)
        return st;
    /* Outputs: scores and the statistics used. */
    const stem_tensor *ts[6] = {q, k, v, pass->vstats_in, scores, pass->vstats_out};
    return vk_stage_run(c, ts, 6, (1u << 4) | (1u << 5), xattn ? record_xattention : record_phase,
                        &j);
}
