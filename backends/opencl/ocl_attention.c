/* OpenCL backend, stage 3: block-sparse attention (kernels/attention.cl). */
#include "ocl_common.h"

#include <stdio.h>

/* Bytes [offset, end) a tensor spans in its buffer. */
static size_t tensor_end(const stem_tensor *t)
{
    int64_t reach = 0;
    for (int i = 0; i < 4; i++)
        reach += t->strides[i] * (t->dims[i] - 1);
    return t->offset + (size_t)(reach + 1) * stem_dtype_size(t->dtype);
}

/* A copy of the bytes a tensor spans; base[] is indexed in elements from
 * its offset. */
static stem_status read_span(const stem_plan *plan, const stem_tensor *t, int32_t **out)
{
    const stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    const size_t bytes = tensor_end(t) - t->offset;
    *out = malloc(bytes);
    if (!*out)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "opencl attention: out of host memory");
    const cl_int err = c->cl->clEnqueueReadBuffer(c->queue, stem_ocl_mem(t->buffer), CL_TRUE,
                                                  t->offset, bytes, *out, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        free(*out);
        *out = NULL;
        return stem_ocl_fail(err, "clEnqueueReadBuffer (block lists)");
    }
    return STEM_OK;
}

/* On CPU devices (PoCL) a blocking read costs little, so block lists are
 * checked like the CPU backend does; GPU kernels skip invalid entries. */
static stem_status check_lists(const stem_plan *plan, const stem_pass *pass,
                               const stem_tensor *index, const stem_tensor *count)
{
    int32_t *ix = NULL, *cn = NULL;
    stem_status st = read_span(plan, index, &ix);
    if (st == STEM_OK)
        st = read_span(plan, count, &cn);
    const int64_t n = plan->n_blocks;
    for (int64_t b = 0; st == STEM_OK && b < pass->batch; b++)
        for (int64_t h = 0; st == STEM_OK && h < pass->num_q_heads; h++)
            for (int64_t r = 0; st == STEM_OK && r < pass->n_rows; r++) {
                const int64_t i = pass->row0 + r; /* absolute query block */
                const int32_t cnt =
                    cn[b * count->strides[0] + h * count->strides[1] + r * count->strides[2]];
                if (cnt < 0 || cnt > n) {
                    st = stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                        "stem_attention: count[%lld][%lld][%lld]=%d outside "
                                        "[0, %lld]",
                                        (long long)b, (long long)h, (long long)r, cnt,
                                        (long long)n);
                    break;
                }
                int32_t prev = -1;
                for (int32_t j = 0; j < cnt; j++) {
                    const int32_t v = ix[b * index->strides[0] + h * index->strides[1] +
                                         r * index->strides[2] + j * index->strides[3]];
                    if (v <= prev || v > i) {
                        st = stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                            "stem_attention: index[%lld][%lld][%lld][%d]=%d must "
                                            "be ascending and in [0, %lld] (causal)",
                                            (long long)b, (long long)h, (long long)r, j, v,
                                            (long long)i);
                        break;
                    }
                    prev = v;
                }
            }
    free(ix);
    free(cn);
    return st;
}

stem_status stem_ocl_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                               const stem_tensor *k, const stem_tensor *v,
                               const stem_tensor *index, const stem_tensor *count,
                               const stem_tensor *out)
{
    const stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    const stem_ocl_plan *p = plan->impl;
    if (!c->limits.is_gpu) {
        const stem_status st = check_lists(plan, pass, index, count);
        if (st != STEM_OK)
            return st;
    }
    const int out_dtype = out->dtype == STEM_DTYPE_F16 ? 1 : out->dtype == STEM_DTYPE_BF16 ? 2 : 0;
    stem_ocl_args a;
    /* CPUs: the vector kernel, one item a group; GPUs: the tiled one. */
    const int rows = !c->limits.tiled;
    stem_ocl_args_begin(&a, c->cl, rows ? p->k_row_attention : p->k_attention);
    stem_ocl_arg_tensor(&a, q);
    stem_ocl_arg_tensor(&a, k);
    stem_ocl_arg_tensor(&a, v);
    stem_ocl_arg_tensor(&a, index);
    stem_ocl_arg_tensor(&a, count);
    stem_ocl_arg_tensor(&a, out);
    stem_ocl_arg_int(&a, out_dtype);
    stem_ocl_arg_int(&a, (int32_t)pass->num_q_heads);
    stem_ocl_arg_int(&a, (int32_t)(pass->num_q_heads / pass->num_kv_heads));
    stem_ocl_arg_int(&a, (int32_t)pass->kv_len);
    stem_ocl_arg_int(&a, (int32_t)plan->n_blocks);
    stem_ocl_arg_int(&a, plan->cfg.block_size);
    stem_ocl_arg_float(&a, plan->scale * 1.4426950408889634f);
    stem_ocl_arg_opt_tensor(&a, pass->lse, stem_ocl_mem(count->buffer));
    stem_ocl_arg_long(&a, pass->q_offset);
    stem_ocl_arg_int(&a, (int32_t)pass->row0);
    stem_ocl_arg_int(&a, (int32_t)pass->n_rows);
    /* CPUs: one item a group, min(bq, block) rows an item; GPUs: bq rows a group. */
    const int bs = plan->cfg.block_size, bq = p->shape.bq < bs ? p->shape.bq : bs;
    const size_t groups[3] = {(size_t)(bs / bq), (size_t)pass->n_rows,
                              (size_t)(pass->batch * pass->num_q_heads)};
    const size_t local[3] = {rows ? 1 : (size_t)(bq / p->shape.rpt * p->shape.tx), 1, 1};
    return stem_ocl_launch(plan, &a, rows ? "row_attention" : "block_attention", groups, local);
}
