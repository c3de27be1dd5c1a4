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
    stem_cuda_mem_free(c, *p); /* ordered after queued stages that may use it */
    *p = 0;
}

void stem_cuda_plan_fini(stem_plan *plan)
{
    stem_cuda_plan *pl = plan->impl;
    if (!pl)
        return;
    stem_cuda_context *c = stem_cuda_ctx(plan->ctx);
    if (stem_cuda_enter(c, "stem_plan_destroy") == STEM_OK) {
        free_ptr(c, &pl->budget);
        free_ptr(c, &pl->qflat);
        free_ptr(c, &pl->kflat);
        free_ptr(c, &pl->gmax);
        free_ptr(c, &pl->vb);
        free_ptr(c, &pl->partial);
        free_ptr(c, &pl->sched);
    }
    free(pl);
    plan->impl = NULL;
}

static stem_status dev_alloc(stem_cuda_context *c, CUdeviceptr *p, size_t bytes, const char *what)
{
    const CUresult r = stem_cuda_mem_alloc(c, p, bytes);
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
        /* No wait: plan->budget lives as long as the plan, so the copy may
         * still be queued on the caller's stream when this returns. */
        const CUresult r =
            c->api->cuMemcpyHtoDAsync(pl->budget, plan->budget, bytes, c->stream);
        if (r)
            st = stem_cuda_fail(r, "copying the plan budget");
    }
    if (st != STEM_OK)
        stem_cuda_plan_fini(plan);
    return st;
}

/* 3xTF32 on tensor cores for 16-bit inputs (their phase sums are short
 * sums the split represents to f32 level: the whole suite passed on an
 * H200, bench/results/cuda.md); f32 inputs keep the f32 GEMM, which 3xTF32
 * misses by ~1% of the tolerance on long K. The tensor-core GEMM reads rows
 * of W = stride * head_dim floats with 16-byte loads and steps K by 8: W
 * must be a multiple of 8. */
static int score_on_tensor_cores(const stem_cuda_context *c, const stem_plan *plan)
{
    const int tc = c->score_tc ? c->score_tc > 0 : plan->desc.dtype != STEM_DTYPE_F32;
    return tc && (plan->cfg.stride * plan->desc.head_dim) % 8 == 0;
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
    /* vb, then the u32 [B*Hkv] value-CTA counters of stem_k_score_prep (zeroed
     * once here; the kernel leaves them zero). */
    if (st == STEM_OK)
        st = dev_alloc(c, &pl->vb, bkv * (n + 1) * 4, "score scratch (value bonus)");
    if (st == STEM_OK) {
        const CUresult r = c->api->cuMemsetD8Async(pl->vb + bkv * n * 4, 0, bkv * 4, c->stream);
        if (r)
            st = stem_cuda_fail(r, "clearing the value counters");
    }
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
        return stem_cuda_launch(c, c->fn[STEM_CUDA_FN_XATTN_SCORES], (unsigned)n, (unsigned)bq, 1, 256,
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
    const int tc = score_on_tensor_cores(c, plan);
    p.nsplit = 1;
    /* Query and key phase sums in one launch (key rows after the query rows);
     * by default (STEM_CUDA_SCORE_FUSE) with the value maxima and bonus in the
     * same launch, their CTAs first (stem_k_score_prep). */
    int is_key = -1;
    void *ps_args[] = {&p, &is_key};
    const int64_t vctas = p.with_bonus ? bkv * n : 0;
    const int fuse = c->score_fuse && vctas + bq * nr + bkv * n <= 0x7fffffff;
    if (fuse) {
        p.vcount = pl->vb + (CUdeviceptr)(d->batch * d->num_kv_heads * n * 4); /* plan's B*Hkv */
        st = stem_cuda_launch(c, c->fn[c->score_fuse == 8 ? STEM_CUDA_FN_SCORE_PREP8
                                                          : STEM_CUDA_FN_SCORE_PREP],
                              (unsigned)(vctas + bq * nr + bkv * n), 1, 1, 256, 0, args,
                              "phase sums and value bonus");
    } else
        st = stem_cuda_launch(c, c->fn[STEM_CUDA_FN_PHASE_SUMS], (unsigned)(bq * nr + bkv * n), 1,
                              1, 256, 0, ps_args, "phase sums");
    if (st == STEM_OK && p.with_bonus && !fuse) {
        st = stem_cuda_launch(c, c->fn[STEM_CUDA_FN_GROUP_VMAX], grid_for(bkv * n * plan->group * 32, 256),
                              1, 1, 256, 0, args, "value norms");
        if (st == STEM_OK)
            st = stem_cuda_launch(c, c->fn[STEM_CUDA_FN_VALUE_BONUS], (unsigned)bkv, 1, 1, 256, 0, args,
                                  "value bonus");
    } else if (st == STEM_OK && !p.with_bonus) {
        const CUresult r = c->api->cuMemsetD8Async(pl->vb, 0, (size_t)(bkv * n) * 4, c->stream);
        if (r)
            st = stem_cuda_fail(r, "clearing the value bonus");
    }
    if (st != STEM_OK)
        return st;
    /* The GEMM may start under the kernel before it (STEM_CUDA_PDL), not under
     * a memset or an allocation. */
    stem_status (*launch)(stem_cuda_context *, CUfunction, unsigned, unsigned, unsigned,
                                unsigned, unsigned, void **, const char *) =
        p.with_bonus ? stem_cuda_launch_pdl : stem_cuda_launch;
    if (!tc)
        return launch(c, c->fn[STEM_CUDA_FN_SCORE_GEMM], (unsigned)((n + 63) / 64),
                      (unsigned)((nr + 63) / 64), (unsigned)bq, 256, 0, args, "score GEMM");
    const unsigned t64 = (unsigned)((n + 63) / 64), r64 = (unsigned)((nr + 63) / 64);
    const unsigned t32 = (unsigned)((n + 31) / 32), r32 = (unsigned)((nr + 31) / 32);
    const int64_t grid64 = (int64_t)t64 * r64 * bq, sms = c->sm_count;
    /* Few output tiles (short prompts, chunks): one CTA per 256-column
     * segment of K and a reduction, instead of CTAs that walk all of K in
     * series while most SMs idle. The segment sums need nseg * B*Hq * rows
     * * n floats, bounded here. */
    const int64_t W = (int64_t)cfg->stride * d->head_dim, nseg = (W + 255) / 256;
    const size_t part_bytes = (size_t)nseg * (size_t)(bq * nr * n) * 4;
    if (c->score_split && nseg > 1 && grid64 < 8 * sms && bq * nseg <= 65535 &&
        part_bytes <= ((size_t)128 << 20)) {
        if (pl->partial_bytes < part_bytes) {
            free_ptr(c, &pl->partial);
            pl->partial_bytes = 0;
            st = dev_alloc(c, &pl->partial, part_bytes, "score scratch (split-K segment sums)");
            if (st != STEM_OK)
                return st;
            pl->partial_bytes = part_bytes;
            launch = stem_cuda_launch;
        }
        p.nsplit = (int)nseg;
        p.partial = pl->partial;
        /* 32 x 32 tiles where even the split 64 x 64 grid is under 4 CTAs per SM. */
        const int small = grid64 * nseg < 4 * sms;
        const unsigned z = (unsigned)(bq * nseg);
        st = small ? launch(c, c->fn[STEM_CUDA_FN_SCORE_GEMM_TC32], t32, r32, z, 128, 0, args,
                            "score GEMM (tensor cores, split K)")
                   : launch(c, c->fn[STEM_CUDA_FN_SCORE_GEMM_TC], t64, r64, z, 128, 0, args,
                            "score GEMM (tensor cores, split K)");
        if (st == STEM_OK)
            st = stem_cuda_launch_pdl(c, c->fn[STEM_CUDA_FN_SCORE_REDUCE], (unsigned)(bq * nr), 1,
                                      1, 256, 0, args, "score GEMM (segment sums)");
        return st;
    }
    /* 32x32 tiles where 64x64 ones would give fewer than 4 CTAs per SM. */
    const int small = grid64 < 4 * sms;
    return small ? launch(c, c->fn[STEM_CUDA_FN_SCORE_GEMM_TC32], t32, r32, (unsigned)bq, 128, 0,
                          args, "score GEMM (tensor cores)")
                 : launch(c, c->fn[STEM_CUDA_FN_SCORE_GEMM_TC], t64, r64, (unsigned)bq, 128, 0,
                          args, "score GEMM (tensor cores)");
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
    p.n_rows = (int)pass->n_rows;
    void *args[] = {&p};
    /* Top-k and all-causal rows: one warp per row, 8 rows per CTA. */
    if (p.mode <= 1 && !c->select_cta)
        return stem_cuda_launch_pdl(c, c->fn[STEM_CUDA_FN_SELECT_WARP],
                                    (unsigned)((pass->n_rows + 7) / 8),
                                    (unsigned)(pass->batch * pass->num_q_heads), 1, 256, 0, args,
                                    "selection");
    return stem_cuda_launch_pdl(c, c->fn[STEM_CUDA_FN_SELECT], (unsigned)pass->n_rows,
                                (unsigned)(pass->batch * pass->num_q_heads), 1, 256, 0, args,
                                "selection");
}

static int variant_fits(const stem_cuda_context *c, const stem_plan *plan, int i,
                        const stem_tensor *q, const stem_tensor *k, const stem_tensor *v, int tma)
{
    const stem_cuda_attn_variant *var = &stem_cuda_attn_variants[i];
    const stem_attention_desc *d = &plan->desc;
    return c->attn_fn[i] && (tma || !var->tma) &&
           (var->dtype < 0 || var->dtype == (int)d->dtype) &&
           (var->head_dim == 0 || var->head_dim == d->head_dim) &&
           (var->block == 0 || var->block == plan->cfg.block_size) && var->supports(c, q, k, v);
}

/* The variant to run, from index `from` on (table order): first a row of
 * the family STEM_CUDA_ATTN names, then any row that is not opt-in (the
 * generic kernel takes everything). With tma = 0 the TMA rows are passed
 * over. -1 only when no image loaded. */
static int choose_variant(const stem_cuda_context *c, const stem_plan *plan, const stem_tensor *q,
                          const stem_tensor *k, const stem_tensor *v, int from, int tma)
{
    for (int i = from; c->attn_family && i < stem_cuda_attn_variant_count; i++)
        if (!strcmp(c->attn_family, stem_cuda_attn_variants[i].family) &&
            variant_fits(c, plan, i, q, k, v, tma))
            return i;
    for (int i = from; i < stem_cuda_attn_variant_count; i++)
        if (!stem_cuda_attn_variants[i].opt_in && variant_fits(c, plan, i, q, k, v, tma))
            return i;
    return -1;
}

/* Tensor map of a [batch][heads][tokens][d] view for the sm90 kernel: dims
 * (innermost first) {64 elements, tokens, d / 64 panels, heads, batch}, box
 * {64, rows, d / 64, 1, 1}, 128-byte swizzle (one box row is one 128-byte
 * swizzle span). Size-1 dims get a harmless stride. 0 on failure. */
static int encode_tmap(const stem_cuda_context *c, stem_cu_tensor_map *map, const stem_tensor *t,
                       int64_t tokens, int64_t heads, int64_t batch, int64_t head_dim,
                       unsigned rows)
{
    const uint64_t el = 2, row = (uint64_t)t->strides[2] * el;
    const uint64_t hs = heads > 1 ? (uint64_t)t->strides[1] * el : 128;
    const uint64_t bs = batch > 1 ? (uint64_t)t->strides[0] * el : 128;
    const uint64_t dims[5] = {64, (uint64_t)tokens, (uint64_t)(head_dim / 64), (uint64_t)heads,
                              (uint64_t)batch};
    const uint64_t strides[4] = {tokens > 1 ? row : 128, 128, hs, bs};
    const unsigned box[5] = {64, rows, (unsigned)(head_dim / 64), 1, 1};
    const unsigned estr[5] = {1, 1, 1, 1, 1};
    void *base = (void *)((uintptr_t)t->buffer->impl + t->offset);
    const int dtype = t->dtype == STEM_DTYPE_BF16 ? STEM_CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                  : STEM_CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    return c->api->cuTensorMapEncodeTiled(map, dtype, 5, base, dims, strides, box, estr, 0,
                                          STEM_CU_TENSOR_MAP_SWIZZLE_128B,
                                          STEM_CU_TENSOR_MAP_L2_PROMOTION_L2_256B, 0) == 0;
}

/* Launches variant `vi`: one CTA per `rows` query rows and (batch, head) of
 * the pass. */
static stem_status launch_variant(stem_cuda_context *c, const stem_plan *plan,
                                  const stem_pass *pass, int vi, stem_kattn *p,
                                  const stem_tensor *q, const stem_tensor *k, const stem_tensor *v)
{
    const stem_cuda_attn_variant *var = &stem_cuda_attn_variants[vi];
    const stem_attention_desc *d = &plan->desc;
    const unsigned bq = (unsigned)(pass->batch * pass->num_q_heads);
    /* Tensor-core variants take one absolute query block per CTA (the
     * pass's n_rows, one more than q_len / block when the query offset is
     * unaligned); the generic kernel `rows` queries. */
    const unsigned tiles = var->rows == plan->cfg.block_size
                               ? (unsigned)pass->n_rows
                               : (unsigned)((pass->q_len + var->rows - 1) / var->rows);
    const unsigned smem = var->smem ? var->smem((int)d->head_dim) : 0;
    if (!var->tma) {
        void *args[] = {p};
        return stem_cuda_launch(c, c->attn_fn[vi], tiles, bq, 1, (unsigned)var->threads, smem,
                                args, "attention");
    }
    stem_cu_tensor_map maps[3];
    const unsigned kv_rows = (unsigned)stem_cuda_sm90_kv_rows((int)d->head_dim);
    if (!encode_tmap(c, &maps[0], q, pass->q_len, pass->num_q_heads, pass->batch, d->head_dim,
                     128) ||
        !encode_tmap(c, &maps[1], k, pass->kv_len, pass->num_kv_heads, pass->batch, d->head_dim,
                     kv_rows) ||
        !encode_tmap(c, &maps[2], v, pass->kv_len, pass->num_kv_heads, pass->batch, d->head_dim,
                     kv_rows))
        return STEM_ERR_UNSUPPORTED; /* the caller falls back to another variant */
    void *args[] = {p, &maps[0], &maps[1], &maps[2]};
    if (c->persistent && c->attn_persist_fn[vi]) {
        /* STEM_CUDA_PERSISTENT=1: at most one CTA per SM; the CTAs take the
         * tiles x bq (query block, batch x head) items, longest rows first,
         * from a device counter zeroed on the stream before each launch. */
        stem_cuda_plan *pl = plan->impl;
        if (!pl->sched) {
            const stem_status st = dev_alloc(c, &pl->sched, 4, "attention work counter");
            if (st != STEM_OK)
                return st;
        }
        const CUresult r = c->api->cuMemsetD8Async(pl->sched, 0, 4, c->stream);
        if (r)
            return stem_cuda_fail(r, "clearing the attention work counter");
        p->n_tiles = (int)tiles;
        p->bq = (int)bq;
        p->sched = (unsigned long long)pl->sched;
        p->head_major = c->persistent == 2;
        const int64_t items = (int64_t)tiles * bq;
        const int64_t grid = items < c->sm_count ? items : c->sm_count;
        return stem_cuda_launch(c, c->attn_persist_fn[vi], grid < 1 ? 1u : (unsigned)grid, 1, 1,
                                (unsigned)var->threads,
                                stem_cuda_persist_smem(var, (int)d->head_dim), args,
                                "attention (sm90, persistent)");
    }
    return stem_cuda_launch(c, c->attn_fn[vi], tiles, bq, 1, (unsigned)var->threads, smem, args,
                            "attention (sm90)");
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
    int vi = choose_variant(c, plan, q, k, v, 0, 1);
    if (vi < 0)
        return stem_set_error(STEM_ERR_BACKEND_API, "cuda: no attention kernel loaded");
    st = launch_variant(c, plan, pass, vi, &p, q, k, v);
    if (st == STEM_ERR_UNSUPPORTED) { /* the tensor maps refused this layout */
        vi = choose_variant(c, plan, q, k, v, vi + 1, 0);
        st = vi < 0 ? stem_set_error(STEM_ERR_BACKEND_API, "cuda: no attention kernel loaded")
                    : launch_variant(c, plan, pass, vi, &p, q, k, v);
    }
    return st;
}
