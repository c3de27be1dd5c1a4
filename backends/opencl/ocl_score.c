/* OpenCL backend, stage 1: block scores (kernels/score.cl). */
#include "ocl_common.h"

#include <math.h>

#define LOG2E 1.4426950408889634

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }

static stem_status score_xattention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                                    const stem_tensor *k, const stem_tensor *scores)
{
    const stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    const stem_ocl_plan *p = plan->impl;
    const stem_attention_desc *d = &plan->desc;
    const float qcoef =
        (float)((double)plan->scale / ((double)plan->cfg.stride * plan->cfg.norm) * LOG2E);
    stem_ocl_args a;
    stem_ocl_args_begin(&a, c->cl, p->k_xattn_score);
    stem_ocl_arg_tensor(&a, q);
    stem_ocl_arg_tensor(&a, k);
    stem_ocl_arg_tensor(&a, scores);
    stem_ocl_arg_int(&a, (int32_t)pass->num_q_heads);
    stem_ocl_arg_int(&a, (int32_t)(pass->num_q_heads / pass->num_kv_heads));
    stem_ocl_arg_int(&a, (int32_t)d->q_len);
    stem_ocl_arg_int(&a, (int32_t)plan->n_blocks);
    stem_ocl_arg_int(&a, plan->cfg.stride);
    stem_ocl_arg_int(&a, plan->group);
    stem_ocl_arg_float(&a, qcoef);
    const size_t groups[3] = {1, (size_t)plan->n_blocks, (size_t)(pass->batch * pass->num_q_heads)};
    const size_t local[3] = {(size_t)p->shape.sel_ls, 1, 1};
    return stem_ocl_launch(plan, &a, "xattn_score", groups, local);
}

stem_status stem_ocl_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                           const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores)
{
    if (stem_selector_is_xattention(plan->cfg.selector))
        return score_xattention(plan, pass, q, k, scores);
    const stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    const stem_ocl_api *cl = c->cl;
    const stem_ocl_plan *p = plan->impl;
    const stem_attention_desc *d = &plan->desc;
    const int64_t n = pass->n_keys, nr = pass->n_rows, S = plan->cfg.stride, G = plan->group;
    const int64_t W = S * d->head_dim, ng = n * G;
    const int64_t bhq = pass->batch * pass->num_q_heads, bhkv = pass->batch * pass->num_kv_heads;
    const stem_selector sel = plan->cfg.selector;
    const int stats = pass->vstats_in || pass->vstats_out; /* STEM / DENSE only (core) */
    const int mode = sel == STEM_SELECTOR_UNIFORM || (plan->cfg.beta == 0.0f && !stats) ? 0
                     : sel == STEM_SELECTOR_STEM_PAPER                                  ? 2
                                                                                        : 1;
    const float coef =
        (float)((double)plan->scale / ((double)S * plan->cfg.norm * (double)G * (double)G));

    cl_mem qf = NULL, kf = NULL, gmax = NULL, vb = NULL;
    stem_status st = stem_ocl_scratch(plan, (size_t)bhq * nr * W * sizeof(float), &qf);
    if (st == STEM_OK)
        st = stem_ocl_scratch(plan, (size_t)bhkv * n * W * sizeof(float), &kf);
    if (st == STEM_OK)
        st = stem_ocl_scratch(plan, (size_t)bhkv * ng * sizeof(float), &gmax);
    if (st == STEM_OK)
        st = stem_ocl_scratch(plan, (size_t)bhkv * n * sizeof(float), &vb);

    stem_ocl_args a;
    const size_t ls = 64;
    for (int which = 0; which < 2 && st == STEM_OK; which++) {
        stem_ocl_args_begin(&a, cl, p->k_phase_sum);
        /* Queries: the call's rows (absolute blocks row0 ..), positions from P. */
        const int64_t blocks = which ? n : nr;
        stem_ocl_arg_tensor(&a, which ? k : q);
        stem_ocl_arg_int(&a, (int32_t)(which ? pass->num_kv_heads : pass->num_q_heads));
        stem_ocl_arg_int(&a, (int32_t)pass->kv_len);
        stem_ocl_arg_int(&a, (int32_t)blocks);
        stem_ocl_arg_int(&a, plan->cfg.block_size);
        stem_ocl_arg_int(&a, (int32_t)S);
        stem_ocl_arg_int(&a, (int32_t)G);
        stem_ocl_arg_int(&a, which);
        stem_ocl_arg_mem(&a, which ? kf : qf);
        stem_ocl_arg_long(&a, which ? 0 : pass->q_offset);
        stem_ocl_arg_int(&a, which ? 0 : (int32_t)pass->row0);
        const size_t groups[3] = {div_up((size_t)W, ls), (size_t)blocks,
                                  (size_t)(which ? bhkv : bhq)};
        const size_t local[3] = {ls, 1, 1};
        st = stem_ocl_launch(plan, &a, "phase_sum", groups, local);
    }
    if (st == STEM_OK && mode != 0) {
        stem_ocl_args_begin(&a, cl, p->k_vgroup_max);
        stem_ocl_arg_tensor(&a, v);
        stem_ocl_arg_int(&a, (int32_t)pass->num_kv_heads);
        stem_ocl_arg_int(&a, (int32_t)pass->kv_len);
        stem_ocl_arg_int(&a, (int32_t)S);
        stem_ocl_arg_int(&a, (int32_t)ng);
        stem_ocl_arg_mem(&a, gmax);
        const size_t groups[3] = {div_up((size_t)ng, ls), 1, (size_t)bhkv};
        const size_t local[3] = {ls, 1, 1};
        st = stem_ocl_launch(plan, &a, "vgroup_max", groups, local);
    }
    if (st == STEM_OK) {
        stem_ocl_args_begin(&a, cl, p->k_value_bonus);
        stem_ocl_arg_mem(&a, gmax);
        stem_ocl_arg_int(&a, (int32_t)ng);
        stem_ocl_arg_int(&a, (int32_t)n);
        stem_ocl_arg_int(&a, (int32_t)G);
        stem_ocl_arg_int(&a, (int32_t)(pass->kv_len / S)); /* groups of visible tokens only */
        stem_ocl_arg_int(&a, mode);
        stem_ocl_arg_float(&a, plan->cfg.beta);
        stem_ocl_arg_mem(&a, vb);
        stem_ocl_arg_opt_tensor(&a, pass->vstats_in, vb);
        stem_ocl_arg_opt_tensor(&a, pass->vstats_out, vb);
        stem_ocl_arg_int(&a, (int32_t)pass->num_kv_heads);
        const size_t groups[3] = {1, 1, (size_t)bhkv};
        const size_t local[3] = {(size_t)p->shape.sel_ls, 1, 1};
        st = stem_ocl_launch(plan, &a, "value_bonus", groups, local);
    }
    if (st == STEM_OK) {
        stem_ocl_args_begin(&a, cl, p->k_score_gemm);
        stem_ocl_arg_mem(&a, qf);
        stem_ocl_arg_mem(&a, kf);
        stem_ocl_arg_mem(&a, vb);
        stem_ocl_arg_tensor(&a, scores);
        stem_ocl_arg_int(&a, (int32_t)pass->num_q_heads);
        stem_ocl_arg_int(&a, (int32_t)(pass->num_q_heads / pass->num_kv_heads));
        stem_ocl_arg_int(&a, (int32_t)pass->num_kv_heads);
        stem_ocl_arg_int(&a, (int32_t)n);
        stem_ocl_arg_int(&a, (int32_t)W);
        stem_ocl_arg_float(&a, coef);
        stem_ocl_arg_int(&a, (int32_t)nr);
        stem_ocl_arg_int(&a, (int32_t)pass->row0);
        const size_t groups[3] = {div_up((size_t)n, 16), div_up((size_t)nr, 16), (size_t)bhq};
        const size_t local[3] = {16, 16, 1};
        st = stem_ocl_launch(plan, &a, "score_gemm", groups, local);
    }
    /* Released now, freed by the runtime once the kernels using them ran. */
    cl_mem tmp[] = {qf, kf, gmax, vb};
    for (int i = 0; i < 4; i++)
        if (tmp[i])
            cl->clReleaseMemObject(tmp[i]);
    return st;
}
