/* CUDA backend: plan checks, per-plan device state and the three stages,
 * each queued asynchronously on the context's stream. */
#include "cuda_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG2E 1.4426950408889634

static stem_ktensor ktensor(const stem_tensor *t)
{
    stem_ktensor k;
    memset(&k, 0, sizeof k);
    k.ptr = (unsigned long long)(uintptr_t)t->buffer->impl + t->offset;
    for (int i = 0; i < 4; i++)
        k.s[i] = t->strides[i];
    k.dtype = (int)t->dtype;
    return k;
}

static int64_t n_blocks_of(const stem_attention_desc *d, const stem_config *cfg)
{
    return (d->kv_len + cfg->block_size - 1) / cfg->block_size; /* key blocks */
}

stem_status stem_cuda_plan_check(const stem_context *ctx, const stem_attention_desc *desc,
                                 const stem_config *cfg)
{
    const stem_cuda_context *c = stem_cuda_ctx(ctx);
    /* dtypes and head_dim (8..256, multiples of 8; tensor cores for 64 and 128):
     * declared in the ops table, checked by the core. */
    if (cfg->block_size < 1 || cfg->block_size > 128 || cfg->stride < 1 ||
        cfg->stride > cfg->block_size || cfg->block_size % cfg->stride != 0)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "block_size=%d stride=%d not supported by backend cuda; supported: "
                              "block_size up to 128, stride dividing it",
                              (int)cfg->block_size, (int)cfg->stride);
    if (desc->batch * desc->num_q_heads > 65535)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "batch x num_q_heads = %lld exceeds 65535 (one grid dimension) "
                              "on backend cuda",
                              (long long)(desc->batch * desc->num_q_heads));
    const int64_t n = n_blocks_of(desc, cfg);
    if (n * desc->batch * desc->num_q_heads > 0x7fffffff)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "cuda: batch x heads x blocks = %lld exceeds 2^31 - 1 (grid size)",
                              (long long)(n * desc->batch * desc->num_q_heads));
    if (stem_selector_is_xattention(cfg->selector) &&
        (int64_t)n * 12 > (int64_t)c->smem_optin - 1024)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "xattention scoring on backend cuda keeps a row of %lld blocks in "
                              "shared memory (12 bytes each, %d available): use fewer blocks",
                              (long long)n, c->smem_optin - 1024);
    return STEM_OK;
}

static void free_ptr(stem_cuda_context *c, CUdeviceptr *p)
{
    if (*p)
        c->api->cuMemFree(*p);
    *p = 0;
}

void stem_cuda_plan_fini(stem_plan *plan)
{
    stem_cuda_plan *pl = plan->impl;
    if (!pl)
        return;
    stem_cuda_context *c = stem_cuda_ctx(plan->ctx);
    if (stem_cuda_enter(c, "stem_plan_destroy") == STEM_OK) {
        c->api->cuStreamSynchronize(c->stream); /* queued stages may still use the scratch */
        free_ptr(c, &pl->budget);
        free_ptr(c, &pl->qflat);
        free_ptr(c, &pl->kflat);
        free_ptr(c, &pl->gmax);
        free_ptr(c, &pl->vb);
    }
    free(pl);
    plan->impl = NULL;
}

static stem_status dev_alloc(stem_cuda_context *c, CUdeviceptr *p, size_t bytes, const char *what)
{
    const CUresult r = c->api->cuMemAlloc(p, bytes ? bytes : 1);
    if (r) {
        *p = 0;
        if (r == STEM_CUDA_ERROR_OUT_OF_MEMORY)
            return stem_set_error(STEM_ERR_DEVICE_OUT_OF_MEMORY,
                                  "cuda: %s (%zu bytes): out of device memory", what, bytes);
        return stem_cuda_fail(r, what);
    }
    return STEM_OK;
}

stem_status stem_cuda_plan_init(stem_plan *plan)
{
    stem_cuda_context *c = stem_cuda_ctx(plan->ctx);
    stem_status st = stem_cuda_enter(c, "stem_plan_create");
    if (st != STEM_OK)
        return st;
    stem_cuda_plan *pl = calloc(1, sizeof *pl);
    if (!pl)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cuda plan: out of host memory");
    plan->impl = pl;
    const size_t bytes = (size_t)plan->n_blocks * sizeof(int32_t);
    st = dev_alloc(c, &pl->budget, bytes, "plan budget");
    if (st == STEM_OK) {
        CUresult r = c->api->cuMemcpyHtoDAsync(pl->budget, plan->budget, bytes, c->stream);
        if (!r)
            r = c->api->cuStreamSynchronize(c->stream);
        if (r)
            st = stem_cuda_fail(r, "copying the plan budget");
    }
    if (st != STEM_OK)
        stem_cuda_plan_fini(plan);
    return st;
}

/* Scoring scratch, sized for the whole plan from plan->desc (a stem_prefill
 * pass uses a part of it; a later stem_score on the same plan the whole). */
static stem_status ensure_score_scratch(stem_plan *plan, stem_cuda_context *c, stem_cuda_plan *pl)
{
    if (pl->vb)
        return STEM_OK;
    const stem_attention_desc *d = &plan->desc;
    const size_t n = (size_t)plan->n_blocks, W = (size_t)plan->cfg.stride * (size_t)d->head_dim;
    const size_t bq = (size_t)d->batch * (size_t)d->num_q_heads;
    const size_t bkv = (size_t)d->batch * (size_t)d->num_kv_heads;
    stem_status st = STEM_OK;
    if (!stem_selector_is_xattention(plan->cfg.selector)) {
        st = dev_alloc(c, &pl->qflat, bq * n * W * 4, "score scratch (query phase sums)");
        if (st == STEM_OK)
            st = dev_alloc(c, &pl->kflat, bkv * n * W * 4, "score scratch (key phase sums)");
        if (st == STEM_OK)
            st = dev_alloc(c, &pl->gmax, bkv * n * (size_t)plan->group * 8,
                           "score scratch (value norms)");
    }
    if (st == STEM_OK)
        st = dev_alloc(c, &pl->vb, bkv * n * 4, "score scratch (value bonus)");
    if (st != STEM_OK) {
        free_ptr(c, &pl->qflat);
        free_ptr(c, &pl->kflat);
        free_ptr(c, &pl->gmax);
        free_ptr(c, &pl->vb);
    }
    return st;
}

static unsigned grid_for(int64_t items, unsigned threads)
{
    int64_t g = (items + threads - 1) / threads;
    return (unsigned)(g < 1 ? 1 : g > 65535 * 16 ? 65535 * 16 : g); /* grid-stride loops */
}

stem_status stem_cuda_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                            const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores)
{
    stem_cuda_context *c = stem_cuda_ctx(plan->ctx);
    stem_cuda_plan *pl = plan->impl;
    stem_status st = stem_cuda_enter(c, "stem_score");
    if (st == STEM_OK)
        st = ensure_score_scratch(plan, c, pl);
    if (st != STEM_OK)
        return st;
    const stem_attention_desc *d = &plan->desc;
    const stem_config *cfg = &plan->cfg;
    stem_kscore p;
    memset(&p, 0, sizeof p);
    p.q = ktensor(q);
    p.k = ktensor(k);
    p.v = ktensor(v);
    p.scores = ktensor(scores);
    p.qflat = pl->qflat;
    p.kflat = pl->kflat;
    p.gmax = pl->gmax;
    p.vb = pl->vb;
    p.n_tokens = pass->kv_len;
    p.q_offset = pass->q_offset;
    p.row0 = (int)pass->row0;
    p.n_rows = (int)pass->n_rows;
    p.batch = (int)pass->batch;
    p.n_blocks = (int)plan->n_blocks;
    p.block = cfg->block_size;
    p.stride = cfg->stride;
    p.group = plan->group;
    p.hq = (int)pass->num_q_heads;
    p.hkv = (int)pass->num_kv_heads;
    p.head_dim = (int)d->head_dim;
    p.selector = (int)cfg->selector;
    p.beta = cfg->beta;
    const int64_t n = plan->n_blocks, nr = pass->n_rows, bq = pass->batch * pass->num_q_heads;
    void *args[] = {&p};
    if (stem_selector_is_xattention(cfg->selector)) {
        p.coef = (float)((double)plan->scale / ((double)cfg->stride * cfg->norm) * LOG2E);
        return stem_cuda_launch(c, STEM_CUDA_FN_XATTN_SCORES, (unsigned)n, (unsigned)bq, 1, 256,
                                (unsigned)(n * 12), args, "xattention scores");
    }
    p.coef = (float)((double)plan->scale /
                     ((double)cfg->stride * cfg->norm * plan->group * plan->group));
    p.has_vin = pass->vstats_in != NULL;
    p.has_vout = pass->vstats_out != NULL;
    if (p.has_vin)
        p.vin = ktensor(pass->vstats_in);
    if (p.has_vout)
        p.vout = ktensor(pass->vstats_out);
    p.with_bonus = cfg->selector != STEM_SELECTOR_UNIFORM &&
                   (cfg->beta != 0.0f || p.has_vin || p.has_vout);
    const int64_t bkv = pass->batch * pass->num_kv_heads;
    int is_key = 0;
    void *ps_args[] = {&p, &is_key};
    st = stem_cuda_launch(c, STEM_CUDA_FN_PHASE_SUMS, (unsigned)(bq * nr), 1, 1, 256, 0, ps_args,
                          "query phase sums");
    is_key = 1; /* the launch copied the arguments */
    if (st == STEM_OK)
        st = stem_cuda_launch(c, STEM_CUDA_FN_PHASE_SUMS, (unsigned)(bkv * n), 1, 1, 256, 0,
                              ps_args, "key phase sums");
    if (st == STEM_OK && p.with_bonus) {
        st = stem_cuda_launch(c, STEM_CUDA_FN_GROUP_VMAX, grid_for(bkv * n * plan->group * 32, 256),
                              1, 1, 256, 0, args, "value norms");
        if (st == STEM_OK)
            st = stem_cuda_launch(c, STEM_CUDA_FN_VALUE_BONUS, (unsigned)bkv, 1, 1, 256, 0, args,
                                  "value bonus");
    } else if (st == STEM_OK) {
        const CUresult r = c->api->cuMemsetD8Async(pl->vb, 0, (size_t)(bkv * n) * 4, c->stream);
        if (r)
            st = stem_cuda_fail(r, "clearing the value bonus");
    }
    const unsigned tiles = (unsigned)((n + 63) / 64), row_tiles = (unsigned)((nr + 63) / 64);
    if (st == STEM_OK)
        st = stem_cuda_launch(c, STEM_CUDA_FN_SCORE_GEMM, tiles, row_tiles, (unsigned)bq, 256, 0,
                              args, "score GEMM");
    return st;
}

stem_status stem_cuda_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                             const stem_tensor *index, const stem_tensor *count)
{
    stem_cuda_context *c = stem_cuda_ctx(plan->ctx);
    stem_cuda_plan *pl = plan->impl;
    stem_status st = stem_cuda_enter(c, "stem_select");
    if (st != STEM_OK)
        return st;
    const stem_config *cfg = &plan->cfg;
    stem_kselect p;
    memset(&p, 0, sizeof p);
    p.scores = ktensor(scores);
    p.index = ktensor(index);
    p.count = ktensor(count);
    p.budget = pl->budget;
    p.n_blocks = (int)plan->n_blocks;
    p.hq = (int)pass->num_q_heads;
    p.row0 = (int)pass->row0;
    p.mode = (cfg->selector == STEM_SELECTOR_DENSE || plan->dense) ? 1
             : !stem_selector_is_xattention(cfg->selector)           ? 0
             : stem_xattn_diag_only(plan)                             ? 3
                                                                      : 2;
    p.sink_blocks = cfg->sink_blocks;
    p.local_blocks = cfg->local_blocks;
    p.tau = cfg->xattn_threshold;
    void *args[] = {&p};
    return stem_cuda_launch(c, STEM_CUDA_FN_SELECT, (unsigned)pass->n_rows,
                            (unsigned)(pass->batch * pass->num_q_heads), 1, 256, 0, args,
                            "selection");
}

/* Rows the tensor-core kernel loads with 16-byte copies. */
static int mma_layout_ok(const stem_tensor *t)
{
    const uintptr_t base = (uintptr_t)t->buffer->impl + t->offset;
    return t->strides[3] == 1 && t->strides[2] % 8 == 0 && t->strides[1] % 8 == 0 &&
           t->strides[0] % 8 == 0 && base % 16 == 0;
}

stem_status stem_cuda_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                                const stem_tensor *k, const stem_tensor *v,
                                const stem_tensor *index, const stem_tensor *count,
                                const stem_tensor *out)
{
    stem_cuda_context *c = stem_cuda_ctx(plan->ctx);
    stem_status st = stem_cuda_enter(c, "stem_attention");
    if (st != STEM_OK)
        return st;
    const stem_attention_desc *d = &plan->desc;
    stem_kattn p;
    memset(&p, 0, sizeof p);
    p.q = ktensor(q);
    p.k = ktensor(k);
    p.v = ktensor(v);
    p.index = ktensor(index);
    p.count = ktensor(count);
    p.out = ktensor(out);
    p.n_tokens = pass->kv_len;
    p.q_offset = pass->q_offset;
    p.row0 = (int)pass->row0;
    p.has_lse = pass->lse != NULL;
    if (p.has_lse)
        p.lse = ktensor(pass->lse);
    p.n_blocks = (int)plan->n_blocks;
    p.block = plan->cfg.block_size;
    p.hq = (int)pass->num_q_heads;
    p.group = (int)(pass->num_q_heads / pass->num_kv_heads);
    p.head_dim = (int)d->head_dim;
    p.scale_log2 = (float)((double)plan->scale * LOG2E);
    void *args[] = {&p};
    const unsigned bq = (unsigned)(pass->batch * pass->num_q_heads);
    const int tc_dtype = d->dtype == STEM_DTYPE_BF16 || d->dtype == STEM_DTYPE_F16;
    /* Chunked calls (q_offset > 0) and lse take the generic kernel for now. */
    const int tc = !c->force_generic && pass->q_offset == 0 && !pass->lse && tc_dtype && (d->head_dim == 64 || d->head_dim == 128) &&
                   (p.block == 64 || p.block == 128) && mma_layout_ok(q) && mma_layout_ok(k) &&
                   mma_layout_ok(v);
    if (tc) {
        const int bf16 = d->dtype == STEM_DTYPE_BF16, d128 = d->head_dim == 128;
        const int b128 = p.block == 128, rows = p.block; /* one query block per CTA */
        if (c->wide && b128)
            return stem_cuda_launch(c, STEM_CUDA_FN_WIDE_FIRST + 2 * bf16 + d128,
                                    (unsigned)((d->q_len + 127) / 128), bq, 1, 128,
                                    stem_cuda_wide_smem((int)d->head_dim), args,
                                    "tensor-core attention");
        const int fn = c->q_in_smem && d128 ? STEM_CUDA_FN_MMA_QSMEM_FIRST + 2 * bf16 + b128
                                             : STEM_CUDA_FN_MMA_FIRST + 4 * bf16 + 2 * d128 + b128;
        return stem_cuda_launch(c, fn, (unsigned)((d->q_len + rows - 1) / rows), bq, 1,
                                (unsigned)(rows / 16 * 32),
                                stem_cuda_mma_smem((int)d->head_dim, p.block), args,
                                "tensor-core attention");
    }
    return stem_cuda_launch(c, STEM_CUDA_FN_ATTN_GENERIC, (unsigned)((d->q_len + 3) / 4), bq, 1,
                            128, 0, args, "attention");
}
