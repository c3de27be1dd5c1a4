/* OpenCL backend, stage 3: block-sparse attention (kernels/attention.cl). */
#include "ocl_common.h"

stem_status stem_ocl_attention(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                               const stem_tensor *v, const stem_tensor *index,
                               const stem_tensor *count, const stem_tensor *out)
{
    const stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    const stem_ocl_plan *p = plan->impl;
    const stem_attention_desc *d = &plan->desc;
    const int out_dtype = out->dtype == STEM_DTYPE_F16 ? 1 : out->dtype == STEM_DTYPE_BF16 ? 2 : 0;
    stem_ocl_args a;
    stem_ocl_args_begin(&a, c->cl, p->k_attention);
    stem_ocl_arg_tensor(&a, q);
    stem_ocl_arg_tensor(&a, k);
    stem_ocl_arg_tensor(&a, v);
    stem_ocl_arg_tensor(&a, index);
    stem_ocl_arg_tensor(&a, count);
    stem_ocl_arg_tensor(&a, out);
    stem_ocl_arg_int(&a, out_dtype);
    stem_ocl_arg_int(&a, (int32_t)d->num_q_heads);
    stem_ocl_arg_int(&a, (int32_t)(d->num_q_heads / d->num_kv_heads));
    stem_ocl_arg_int(&a, (int32_t)d->q_len);
    stem_ocl_arg_int(&a, (int32_t)plan->n_blocks);
    stem_ocl_arg_int(&a, plan->cfg.block_size);
    stem_ocl_arg_float(&a, plan->scale * 1.4426950408889634f);
    const size_t groups[3] = {(size_t)(plan->cfg.block_size / p->shape.bq),
                              (size_t)plan->n_blocks, (size_t)(d->batch * d->num_q_heads)};
    const size_t local[3] = {(size_t)(p->shape.bq * p->shape.tpr), 1, 1};
    return stem_ocl_launch(plan, &a, "block_attention", groups, local);
}
