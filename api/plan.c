/* Plans: validate an attention description + configuration, resolve it. */
#include "stem_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* stem_prefill keeps scores + lists of at most this many bytes per pass. */
#define STEM_PREFILL_PASS_BYTES ((size_t)256 << 20)

static int is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

static stem_status bad(const char *what) { return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s", what); }

static stem_status check_desc(const stem_attention_desc *d)
{
    if (d->batch < 1 || d->num_q_heads < 1 || d->num_kv_heads < 1)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "batch=%lld, num_q_heads=%lld, num_kv_heads=%lld must all be >= 1",
                              (long long)d->batch, (long long)d->num_q_heads,
                              (long long)d->num_kv_heads);
    if (d->num_q_heads % d->num_kv_heads != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "num_q_heads=%lld is not a multiple of num_kv_heads=%lld (GQA)",
                              (long long)d->num_q_heads, (long long)d->num_kv_heads);
    if (d->q_len < 1)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "q_len=%lld must be >= 1",
                              (long long)d->q_len);
    if (d->kv_len < 1)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "kv_len=%lld must be >= 1",
                              (long long)d->kv_len);
    if (d->head_dim < 1)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "head_dim=%lld must be >= 1",
                              (long long)d->head_dim);
    if (d->dtype != STEM_DTYPE_F32 && d->dtype != STEM_DTYPE_F16 && d->dtype != STEM_DTYPE_BF16)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "dtype=%d: Q, K, V must be f32, f16 or bf16", (int)d->dtype);
    if (d->causal != 0 && d->causal != 1)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "causal=%d must be 0 or 1", d->causal);
    if (!(isfinite(d->softmax_scale) && d->softmax_scale >= 0.0f))
        return bad("softmax_scale must be finite and >= 0 (0 = 1/sqrt(head_dim))");
    if (d->layer_index < -1)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "layer_index=%d must be >= -1",
                              d->layer_index);
    /* Keep every element count and block count far from overflow. */
    const int64_t lim = (int64_t)1 << 31;
    if (d->batch >= lim || d->num_q_heads >= lim || d->q_len >= lim || d->head_dim >= lim ||
        (double)d->batch * (double)d->num_q_heads * (double)d->q_len * (double)d->head_dim >
            (double)((int64_t)1 << 60))
        return bad("tensor too large: B*Hq*N*d must stay below 2^60 and each dim below 2^31");
    if (d->causal == 0)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "causal=0: only causal prefill is supported");
    if (d->q_len > d->kv_len)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "q_len=%lld > kv_len=%lld: the queries' own keys must be among "
                              "the kv_len visible keys (bottom-right alignment)",
                              (long long)d->q_len, (long long)d->kv_len);
    if (d->kv_len >= lim)
        return bad("kv_len must stay below 2^31");
    if (d->prompt_len != 0 && (d->prompt_len < d->kv_len || d->prompt_len >= lim))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "prompt_len=%lld must be 0 (= kv_len) or in [kv_len=%lld, 2^31)",
                              (long long)d->prompt_len, (long long)d->kv_len);
    if (d->vstats_mode != STEM_VSTATS_VISIBLE && d->vstats_mode != STEM_VSTATS_PROVIDED)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "vstats_mode=%d must be STEM_VSTATS_VISIBLE (0) or "
                              "STEM_VSTATS_PROVIDED (1)",
                              (int)d->vstats_mode);
    if (d->q_layout != STEM_Q_BHND && d->q_layout != STEM_Q_PACKED)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "q_layout=%d must be STEM_Q_BHND (0) or STEM_Q_PACKED (1)",
                              (int)d->q_layout);
    if (d->kv_store != STEM_KV_BHND && d->kv_store != STEM_KV_PACKED &&
        d->kv_store != STEM_KV_PAGED)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "kv_store=%d must be STEM_KV_BHND (0), STEM_KV_PACKED (1) or "
                              "STEM_KV_PAGED (2)",
                              (int)d->kv_store);
    if (d->kv_store != STEM_KV_BHND && d->q_layout != STEM_Q_PACKED)
        return bad("kv_store PACKED or PAGED needs q_layout = STEM_Q_PACKED (a varlen plan "
                   "with per-sequence lengths in stem_seqs)");
    if (d->kv_store == STEM_KV_PAGED ? (d->page_size < 1 || d->page_size >= lim)
                                     : d->page_size != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "page_size=%d must be >= 1 with kv_store = STEM_KV_PAGED and 0 "
                              "otherwise",
                              (int)d->page_size);
    if (d->q_layout == STEM_Q_PACKED && d->prompt_len != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "prompt_len=%lld: a varlen plan (q_layout PACKED) takes prompt "
                              "lengths per sequence (stem_seqs.prompt_lens); it must be 0",
                              (long long)d->prompt_len);
    return STEM_OK;
}

/* Pass size; STEM_PREFILL_PASS_BYTES (bytes, > 0) overrides it so tests can
 * force many small passes on small problems. */
static size_t prefill_pass_bytes(void)
{
    const char *e = getenv("STEM_PREFILL_PASS_BYTES");
    if (e && *e) {
        char *end = NULL;
        unsigned long long v = strtoull(e, &end, 10);
        if (end && *end == '\0' && v > 0)
            return (size_t)v;
    }
    return STEM_PREFILL_PASS_BYTES;
}

/* The backend's declared limits and capabilities (ops table), one message each. */
static stem_status check_caps(const stem_context *ctx, const stem_attention_desc *d)
{
    const stem_backend_ops *ops = ctx->ops;
    if (!(ops->dtypes & (1u << (unsigned)d->dtype)))
        return stem_set_error(STEM_ERR_UNSUPPORTED, "dtype %s not supported by backend %s",
                              stem_dtype_name(d->dtype), ops->name);
    if (d->head_dim < ops->head_dim_min || d->head_dim > ops->head_dim_max ||
        d->head_dim % (ops->head_dim_step > 0 ? ops->head_dim_step : 1) != 0)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "head_dim=%lld not supported by backend %s; supported: multiples "
                              "of %d from %d to %d",
                              (long long)d->head_dim, ops->name, (int)ops->head_dim_step,
                              (int)ops->head_dim_min, (int)ops->head_dim_max);
    const unsigned caps = ops->caps;
    if (d->q_len < d->kv_len && !(caps & STEM_CAP_Q_OFFSET))
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "q_len=%lld < kv_len=%lld (chunked or prefix-cached prefill) is "
                              "not supported by backend %s yet",
                              (long long)d->q_len, (long long)d->kv_len, ctx->ops->name);
    if (d->vstats_mode == STEM_VSTATS_PROVIDED && !(caps & STEM_CAP_VSTATS))
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "vstats_mode=PROVIDED is not supported by backend %s yet",
                              ctx->ops->name);
    if (d->q_layout == STEM_Q_PACKED && !(caps & STEM_CAP_VARLEN))
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "varlen batches (q_layout PACKED) are not supported by backend "
                              "%s yet",
                              ctx->ops->name);
    if (d->kv_store == STEM_KV_PAGED && !(caps & STEM_CAP_PAGED))
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "paged KV (kv_store PAGED) is not supported by backend %s yet",
                              ctx->ops->name);
    return STEM_OK;
}

static int finite_nonneg(double v) { return isfinite(v) && v >= 0.0; }

static stem_status check_config(const stem_config *c, int64_t n_tokens)
{
    if ((unsigned)c->selector >= STEM_SELECTOR_COUNT)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "selector=%d unknown", (int)c->selector);
    if (!is_pow2(c->block_size) || c->block_size < 16 || c->block_size > 128)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "block_size=%d must be a power of two in [16, 128]", c->block_size);
    if (!is_pow2(c->stride) || c->stride > c->block_size)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stride=%d must be a power of two in [1, block_size=%d]", c->stride,
                              c->block_size);
    if (!isfinite(c->beta))
        return bad("beta must be finite");
    if (!(c->mu >= 0.0 && c->mu <= 1.0))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "mu=%g must be in [0, 1]", c->mu);
    if (c->sink_blocks < 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "sink_blocks=%d must be >= 0",
                              c->sink_blocks);
    if (c->local_blocks < 1)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "local_blocks=%d must be >= 1 (the diagonal block is always kept)",
                              c->local_blocks);
    if (!(isfinite(c->norm) && c->norm > 0.0f))
        return bad("norm must be finite and > 0");
    if (c->dense_below_blocks < 0 || c->medium_below_blocks < 0 || c->medium_bias < 0 ||
        c->large_bias < 0 || c->paper_min_blocks < 0 || c->paper_switch_tokens < 0 ||
        c->dense_layers < 0)
        return bad("dense_below_blocks, medium_below_blocks, medium_bias, large_bias, "
                   "paper_min_blocks, paper_switch_tokens and dense_layers must be >= 0");
    if (!finite_nonneg(c->medium_rate) || !finite_nonneg(c->large_rate) ||
        !finite_nonneg(c->paper_short_rate) || !finite_nonneg(c->paper_long_rate))
        return bad("medium_rate, large_rate, paper_short_rate and paper_long_rate must be "
                   "finite and >= 0");
    if (!(c->dense_above_density >= 0.0 && c->dense_above_density <= 1.0))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "dense_above_density=%g must be in [0, 1] (0 = off)",
                              c->dense_above_density);
    if (!(c->xattn_threshold > 0.0f && c->xattn_threshold <= 1.0f))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "xattn_threshold=%g must be in (0, 1]",
                              (double)c->xattn_threshold);
    const int64_t nk = (n_tokens + c->block_size - 1) / c->block_size;
    if (c->k_start < 0 || c->k_start > nk)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "k_start=%d is larger than a row (%lld key blocks) or negative",
                              c->k_start, (long long)nk);
    if (c->uniform_k < 0 || c->uniform_k > nk)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "uniform_k=%d is larger than a row (%lld key blocks) or negative",
                              c->uniform_k, (long long)nk);
    return STEM_OK;
}

/* Query heads per stem_prefill pass: a multiple of the GQA group, or a
 * divisor of it, so every pass is a well-formed (Hq', Hkv') problem. */
static int64_t heads_per_pass(int64_t hq, int64_t group, size_t per_head, size_t pass_bytes)
{
    int64_t fit = (int64_t)(pass_bytes / (per_head ? per_head : 1));
    if (fit >= hq)
        return hq;
    if (fit >= group)
        return fit / group * group;
    int64_t c = fit < 1 ? 1 : fit;
    while (group % c != 0)
        --c;
    return c;
}

/* Selection scratch any sequence of a varlen plan needs (its own plan's
 * workspace_bytes never exceeds this): rows and key blocks at most
 * ceil(kv_len / B), passes cut as stem_plan_create cuts them. */
static size_t varlen_selection_bytes(const stem_attention_desc *d, const stem_config *c)
{
    const size_t nk = (size_t)((d->kv_len + c->block_size - 1) / c->block_size);
    const size_t per_head = nk * nk * 8 + nk * 4;
    const size_t pass_bytes = prefill_pass_bytes();
    const int64_t g = d->num_q_heads / d->num_kv_heads;
    const size_t all = (size_t)d->num_q_heads * per_head;
    const size_t cut = (size_t)heads_per_pass(d->num_q_heads, g, per_head, pass_bytes) * per_head;
    const size_t most = pass_bytes > cut ? pass_bytes : cut;
    return all < most ? all : most;
}

static stem_status plan_build(stem_context *ctx, const stem_attention_desc *desc,
                              const stem_config *cfg, int log, stem_plan **out);

stem_status stem_plan_create(stem_context *ctx, const stem_attention_desc *desc,
                             const stem_config *cfg, stem_plan **out)
{
    stem_enter(ctx);
    if (!ctx || !desc || !out)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_plan_create: %s is NULL",
                              !ctx ? "ctx" : !desc ? "desc" : "out");
    return plan_build(ctx, desc, cfg, 1, out);
}

stem_status stem_plan_create_sequence(stem_context *ctx, const stem_attention_desc *desc,
                                      const stem_config *cfg, stem_plan **out)
{
    return plan_build(ctx, desc, cfg, 0, out);
}

static stem_status plan_build(stem_context *ctx, const stem_attention_desc *desc,
                              const stem_config *cfg, int log, stem_plan **out)
{
    /* Fields after layer_index (prompt_len, vstats_mode, ...) keep their
     * defaults for a caller whose struct_size ends before them. */
    stem_attention_desc d;
    stem_attention_desc_init(&d);
    stem_status st = stem_struct_in(&d, sizeof d, desc, STEM_MIN_ATTENTION_DESC,
                                    "stem_plan_create", "desc", "stem_attention_desc_init");
    if (st != STEM_OK)
        return st;
    stem_config c;
    stem_config_init(&c);
    if (cfg) {
        st = stem_struct_in(&c, sizeof c, cfg, STEM_MIN_CONFIG, "stem_plan_create", "cfg",
                            "stem_config_init");
        if (st != STEM_OK)
            return st;
    }
    const int varlen = d.q_layout == STEM_Q_PACKED;
    st = check_desc(&d);
    const int64_t prompt_len = d.prompt_len > 0 ? d.prompt_len : d.kv_len;
    if (st == STEM_OK)
        st = check_config(&c, prompt_len);
    if (st == STEM_OK && d.vstats_mode == STEM_VSTATS_PROVIDED &&
        c.selector != STEM_SELECTOR_STEM && c.selector != STEM_SELECTOR_DENSE)
        st = stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                            "vstats_mode=PROVIDED: value statistics exist only for the stem "
                            "selector (and dense, which writes stem scores), not %s",
                            stem_selector_name(c.selector));
    /* (A varlen plan's lengths are bounds: its sequences are checked per call.) */
    if (st == STEM_OK && stem_selector_is_xattention(c.selector) && d.q_len < d.kv_len &&
        !varlen)
        st = stem_set_error(STEM_ERR_UNSUPPORTED,
                            "selector xattention with q_len < kv_len (chunked or prefix-cached "
                            "prefill) is not defined yet");
    if (st == STEM_OK)
        st = check_caps(ctx, &d);
    if (st == STEM_OK && ctx->ops->plan_check) {
        /* A varlen plan runs one sequence at a time: the backend's limits
         * apply to its largest sequence, not to batch x the bounds. */
        stem_attention_desc chk = d;
        if (varlen) {
            chk.batch = 1;
            chk.q_layout = STEM_Q_BHND;
            chk.kv_store = STEM_KV_BHND;
            chk.page_size = 0;
        }
        st = ctx->ops->plan_check(ctx, &chk, &c);
    }
    if (st != STEM_OK)
        return st;

    stem_plan *plan = calloc(1, sizeof *plan);
    if (!plan)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "stem_plan_create: out of host memory");
    plan->ctx = ctx;
    plan->desc = d;
    plan->cfg = c;
    plan->scale = d.softmax_scale > 0.0f ? d.softmax_scale : (float)(1.0 / sqrt((double)d.head_dim));
    plan->q_offset = d.kv_len - d.q_len;
    plan->n_blocks = (d.kv_len + c.block_size - 1) / c.block_size;
    plan->row0 = plan->q_offset / c.block_size;
    plan->n_rows = plan->n_blocks - plan->row0;
    plan->prompt_len = prompt_len;
    plan->n_prompt = (prompt_len + c.block_size - 1) / c.block_size;
    plan->group = c.block_size / c.stride;
    st = stem_schedule_build(plan);
    if (st != STEM_OK) {
        free(plan);
        return st;
    }
    /* Near-dense budgets run dense: scoring and selection would cost more
     * than the few skipped blocks save. */
    if (c.dense_above_density > 0.0 && !plan->dense && !stem_selector_is_xattention(c.selector) &&
        plan->budget_density >= c.dense_above_density) {
        /* Keyed on the prompt's schedule like the budget, so every chunk of a
         * prompt decides alike. */
        plan->dense = 1;
        plan->k_start = (int32_t)plan->n_prompt;
        plan->budget_density = 1.0;
        for (int64_t i = 0; i < plan->n_prompt; ++i)
            plan->budget[i] = (int32_t)plan->n_prompt;
    }
    /* stem_prefill passes: everything at once when it fits, else one batch
     * entry and a chunk of query heads at a time. */
    const size_t per_head = (size_t)plan->n_rows * (size_t)plan->n_blocks * 8 +
                            (size_t)plan->n_rows * 4;
    const int64_t g = d.num_q_heads / d.num_kv_heads;
    const size_t pass_bytes = prefill_pass_bytes();
    if ((double)d.batch * (double)d.num_q_heads * (double)per_head <= (double)pass_bytes) {
        plan->batch_per_pass = d.batch;
        plan->heads_per_pass = d.num_q_heads;
    } else {
        plan->batch_per_pass = 1;
        plan->heads_per_pass = heads_per_pass(d.num_q_heads, g, per_head, pass_bytes);
    }
    plan->workspace_bytes =
        (size_t)plan->batch_per_pass * (size_t)plan->heads_per_pass * per_head;
    if (varlen) {
        /* Varlen: selection scratch for the largest sequence, then (paged)
         * room to gather one sequence's K and V (docs/semantics.md 9). */
        const size_t sel = (varlen_selection_bytes(&d, &c) + 255) / 256 * 256;
        const size_t kv = d.kv_store == STEM_KV_PAGED
                              ? ((size_t)d.num_kv_heads * (size_t)d.kv_len * (size_t)d.head_dim *
                                     stem_dtype_size(d.dtype) + 255) / 256 * 256
                              : 0;
        plan->varlen_selection_bytes = sel;
        plan->varlen_kv_offset = sel;
        plan->varlen_kv_bytes = kv;
        plan->workspace_bytes = sel + 2 * kv;
    }
    if (ctx->ops->plan_init) {
        st = ctx->ops->plan_init(plan);
        if (st != STEM_OK) {
            free(plan->budget);
            free(plan);
            return st;
        }
    }
    ctx->live_plans++;
    if (log)
        stem_log_plan(plan);
    *out = plan;
    return STEM_OK;
}

void stem_plan_destroy(stem_plan *plan)
{
    if (!plan)
        return;
    stem_enter_void(plan->ctx);
    if (plan->ctx->live_plans)
        plan->ctx->live_plans--;
    if (plan->ctx->ops->plan_fini)
        plan->ctx->ops->plan_fini(plan);
    if (plan->workspace_owned)
        stem_buffer_destroy(plan->workspace);
    free(plan->budget);
    free(plan);
}

stem_status stem_plan_get_info(const stem_plan *plan, stem_plan_info *info)
{
    stem_enter(plan ? plan->ctx : NULL);
    if (!plan || !info)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_plan_get_info: %s is NULL",
                              plan ? "info" : "plan");
    stem_plan_info i;
    stem_plan_info_init(&i);
    i.num_q_blocks = plan->n_rows;
    i.num_k_blocks = plan->n_blocks;
    i.dense = plan->dense;
    i.k_start = plan->k_start;
    i.k_end = plan->budget[plan->n_prompt - 1];
    i.budget_density = plan->budget_density;
    i.workspace_bytes = plan->workspace_bytes;
    i.selector = plan->cfg.selector;
    return stem_struct_out(info, &i, sizeof i, STEM_MIN_PLAN_INFO, "stem_plan_get_info", "info",
                           "stem_plan_info_init");
}

stem_status stem_plan_get_budget(const stem_plan *plan, int32_t *budget, size_t count)
{
    stem_enter(plan ? plan->ctx : NULL);
    if (!plan || !budget)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_plan_get_budget: %s is NULL",
                              plan ? "budget" : "plan");
    if (count < (size_t)plan->n_rows)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_plan_get_budget: count=%zu < %lld query blocks", count,
                              (long long)plan->n_rows);
    memcpy(budget, plan->budget + plan->row0, (size_t)plan->n_rows * sizeof *budget);
    return STEM_OK;
}

stem_status stem_plan_set_workspace(stem_plan *plan, stem_buffer *buf, size_t offset)
{
    stem_enter(plan ? plan->ctx : NULL);
    if (!plan || !buf)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_plan_set_workspace: %s is NULL",
                              plan ? "buf" : "plan");
    if (buf->ctx != plan->ctx)
        return bad("stem_plan_set_workspace: buffer belongs to another context");
    if (offset % 16 != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_plan_set_workspace: offset=%zu must be a multiple of 16",
                              offset);
    if (offset > buf->size || buf->size - offset < plan->workspace_bytes)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_plan_set_workspace: %zu bytes from offset %zu, plan needs %zu",
                              buf->size > offset ? buf->size - offset : 0, offset,
                              plan->workspace_bytes);
    if (plan->workspace_owned)
        stem_buffer_destroy(plan->workspace);
    plan->workspace = buf;
    plan->workspace_offset = offset;
    plan->workspace_owned = 0;
    return STEM_OK;
}
