/* OpenCL backend, stage 2: per-row selection (kernels/select.cl). */
#include "ocl_common.h"

stem_status stem_ocl_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                            const stem_tensor *index, const stem_tensor *count)
{
    const stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    const stem_ocl_plan *p = plan->impl;
    const stem_config *cfg = &plan->cfg;
    /* DENSE, or any selector in a dense layer (XATTENTION included). */
    const int mode = cfg->selector == STEM_SELECTOR_DENSE || plan->dense ? 1
                     : !stem_selector_is_xattention(cfg->selector)      ? 0
                     : stem_xattn_diag_only(plan)                        ? 3
                                                                         : 2;
    stem_ocl_args a;
    stem_ocl_args_begin(&a, c->cl, p->k_select);
    stem_ocl_arg_tensor(&a, scores);
    stem_ocl_arg_tensor(&a, index);
    stem_ocl_arg_tensor(&a, count);
    stem_ocl_arg_mem(&a, p->budget);
    stem_ocl_arg_int(&a, (int32_t)pass->num_q_heads);
    stem_ocl_arg_int(&a, (int32_t)plan->n_blocks);
    stem_ocl_arg_int(&a, mode);
    stem_ocl_arg_int(&a, cfg->sink_blocks);
    stem_ocl_arg_int(&a, cfg->local_blocks);
    stem_ocl_arg_float(&a, cfg->xattn_threshold);
    stem_ocl_arg_int(&a, (int32_t)pass->row0);
    const size_t groups[3] = {1, (size_t)pass->n_rows, (size_t)(pass->batch * pass->num_q_heads)};
    const size_t local[3] = {(size_t)p->shape.sel_ls, 1, 1};
    return stem_ocl_launch(plan, &a, "select_rows", groups, local);
}
