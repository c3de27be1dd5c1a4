/* The stages: validate every tensor against the plan, then dispatch. */
#include "stem_internal.h"

#include <stdlib.h>
#include <string.h>

/* Checks one tensor: present, right context and dtype, dims as expected,
 * strides non-negative and non-overlapping, every element inside the buffer. */
stem_status stem_check_tensor(const stem_plan *plan, const stem_tensor *t, const char *fn,
                              const char *name, const int64_t dims[4], unsigned dtype_mask,
                              stem_byte_range *range)
{
    if (!t)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, name);
    if (!t->buffer)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s.buffer is NULL", fn, name);
    if (t->flags != 0 || t->reserved32 != 0 || t->reserved[0] != 0 || t->reserved[1] != 0 ||
        t->reserved[2] != 0 || t->reserved[3] != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: %s.flags=0x%x or a reserved word is non-zero (they must be "
                              "zero: zero-initialise the tensor or use stem_tensor_bhnd/bnhd)",
                              fn, name, t->flags);
    if (t->buffer->ctx != plan->ctx)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: %s.buffer belongs to another context", fn, name);
    const size_t es = stem_dtype_size(t->dtype);
    if (es == 0 || !(dtype_mask & (1u << (unsigned)t->dtype)))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s.dtype=%s not allowed here", fn,
                              name, stem_dtype_name(t->dtype));
    for (int i = 0; i < 4; ++i) {
        if (t->dims[i] != dims[i])
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: %s.dims = [%lld, %lld, %lld, %lld], plan expects [%lld, "
                                  "%lld, %lld, %lld]",
                                  fn, name, (long long)t->dims[0], (long long)t->dims[1],
                                  (long long)t->dims[2], (long long)t->dims[3],
                                  (long long)dims[0], (long long)dims[1], (long long)dims[2],
                                  (long long)dims[3]);
        if (t->strides[i] < 0)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s.strides[%d]=%lld is negative",
                                  fn, name, i, (long long)t->strides[i]);
    }
    if (t->offset % es != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: %s.offset=%zu is not a multiple of the element size %zu", fn,
                              name, t->offset, es);
    /* Non-overlap: ordered by stride, each stride must step past everything
     * the smaller strides can reach (dims of size 1 do not matter). */
    int order[4], m = 0;
    for (int i = 0; i < 4; ++i)
        if (t->dims[i] > 1)
            order[m++] = i;
    for (int a = 1; a < m; ++a)
        for (int b = a; b > 0 && t->strides[order[b]] < t->strides[order[b - 1]]; --b) {
            int tmp = order[b];
            order[b] = order[b - 1];
            order[b - 1] = tmp;
        }
    unsigned __int128 reach = 0; /* largest element offset reachable so far */
    for (int a = 0; a < m; ++a) {
        const int i = order[a];
        if ((unsigned __int128)t->strides[i] <= reach)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: %s.strides = [%lld, %lld, %lld, %lld] make elements overlap",
                                  fn, name, (long long)t->strides[0], (long long)t->strides[1],
                                  (long long)t->strides[2], (long long)t->strides[3]);
        reach += (unsigned __int128)t->strides[i] * (unsigned __int128)(t->dims[i] - 1);
    }
    const unsigned __int128 end = (unsigned __int128)t->offset + (reach + 1) * es;
    if (end > t->buffer->size)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: %s spans bytes [%zu, %llu) past the buffer size %zu", fn, name,
                              t->offset, (unsigned long long)end, t->buffer->size);
    range->buf = t->buffer;
    range->lo = t->offset;
    range->hi = (uint64_t)end;
    return STEM_OK;
}

/* Output byte ranges must not intersect inputs or each other. */
stem_status stem_check_disjoint(const char *fn, const stem_byte_range *a, const char *an,
                                const stem_byte_range *b, const char *bn)
{
    if (a->buf == b->buf && a->lo < b->hi && b->lo < a->hi)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s overlaps %s in the same buffer",
                              fn, an, bn);
    return STEM_OK;
}

#define FLOAT_MASK ((1u << STEM_DTYPE_F32) | (1u << STEM_DTYPE_F16) | (1u << STEM_DTYPE_BF16))
#define F32_MASK (1u << STEM_DTYPE_F32)
#define I32_MASK (1u << STEM_DTYPE_I32)

enum { T_Q, T_K, T_V, T_SCORES, T_INDEX, T_COUNT, T_OUT, T_VSTATS_IN, T_VSTATS_OUT, T_LSE,
       T_COUNT_ };

static const char *const tensor_names[T_COUNT_] = {"q",   "k",         "v",          "scores",
                                                   "index", "count",   "out",        "vstats_in",
                                                   "vstats_out", "lse"};

/* Validates the tensors a stage uses (NULL entries in `use` are skipped)
 * and that outputs (from first_output on) overlap nothing else. */
static stem_status check_all(const stem_plan *plan, const char *fn,
                             const stem_tensor *const t[T_COUNT_], const int use[T_COUNT_],
                             const int is_output[T_COUNT_])
{
    const stem_attention_desc *d = &plan->desc;
    const int64_t n = plan->n_blocks, nr = plan->n_rows;
    const int64_t dims[T_COUNT_][4] = {
        {d->batch, d->num_q_heads, d->q_len, d->head_dim},
        {d->batch, d->num_kv_heads, d->kv_len, d->head_dim},
        {d->batch, d->num_kv_heads, d->kv_len, d->head_dim},
        {d->batch, d->num_q_heads, nr, n},
        {d->batch, d->num_q_heads, nr, n},
        {d->batch, d->num_q_heads, nr, 1},
        {d->batch, d->num_q_heads, d->q_len, d->head_dim},
        {d->batch, d->num_kv_heads, 1, 2},
        {d->batch, d->num_kv_heads, 1, 2},
        {d->batch, d->num_q_heads, d->q_len, 1},
    };
    const unsigned qkv_mask = 1u << (unsigned)d->dtype;
    const unsigned masks[T_COUNT_] = {qkv_mask, qkv_mask, qkv_mask, F32_MASK, I32_MASK,
                                      I32_MASK, FLOAT_MASK, F32_MASK, F32_MASK, F32_MASK};
    stem_byte_range r[T_COUNT_];
    for (int i = 0; i < T_COUNT_; ++i) {
        if (!use[i])
            continue;
        stem_status st = stem_check_tensor(plan, t[i], fn, tensor_names[i], dims[i], masks[i], &r[i]);
        if (st != STEM_OK)
            return st;
    }
    for (int i = 0; i < T_COUNT_; ++i) {
        if (!use[i] || !is_output[i])
            continue;
        for (int j = 0; j < T_COUNT_; ++j) {
            if (j == i || !use[j] || (is_output[j] && j < i))
                continue;
            stem_status st = stem_check_disjoint(fn, &r[i], tensor_names[i], &r[j], tensor_names[j]);
            if (st != STEM_OK)
                return st;
        }
    }
    return STEM_OK;
}

/* Block lists from the caller: ascending, causal, counts in range. Checked
 * where the lists are host-addressable; GPU kernels skip bad entries. */
static stem_status check_lists(const stem_plan *plan, const stem_tensor *index,
                               const stem_tensor *count)
{
    if (!index->buffer->host || !count->buffer->host)
        return STEM_OK;
    /* Queued stages (Vulkan on a CPU device maps its memory) may still write them. */
    stem_status st = plan->ctx->ops->synchronize(plan->ctx);
    if (st != STEM_OK)
        return st;
    const int64_t n = plan->n_blocks;
    for (int64_t b = 0; b < plan->desc.batch; ++b)
        for (int64_t h = 0; h < plan->desc.num_q_heads; ++h)
            for (int64_t r = 0; r < plan->n_rows; ++r) {
                const int64_t i = plan->row0 + r; /* absolute query block */
                int32_t c;
                memcpy(&c, stem_tensor_host_ptr(count, b, h, r, 0), sizeof c);
                if (c < 0 || c > n)
                    return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                          "stem_attention: count[%lld][%lld][%lld]=%d outside "
                                          "[0, %lld]",
                                          (long long)b, (long long)h, (long long)r, c,
                                          (long long)n);
                int32_t prev = -1;
                for (int32_t j = 0; j < c; ++j) {
                    int32_t v;
                    memcpy(&v, stem_tensor_host_ptr(index, b, h, r, j), sizeof v);
                    if (v <= prev || v > i)
                        return stem_set_error(
                            STEM_ERR_INVALID_ARGUMENT,
                            "stem_attention: index[%lld][%lld][%lld][%d]=%d must be ascending "
                            "and in [0, %lld] (causal)",
                            (long long)b, (long long)h, (long long)r, j, v, (long long)i);
                    prev = v;
                }
            }
    return STEM_OK;
}

/* Varlen plans run only through stem_prefill_ex (their lengths come per call). */
static stem_status refuse_varlen(const stem_plan *plan, const char *fn)
{
    if (plan->desc.q_layout != STEM_Q_PACKED)
        return STEM_OK;
    return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                          "%s: a varlen plan (q_layout PACKED) runs through stem_prefill_ex "
                          "with io->seqs",
                          fn);
}

stem_status stem_score(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                       const stem_tensor *v, const stem_tensor *scores)
{
    stem_enter(plan ? plan->ctx : NULL);
    if (!plan)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_score: plan is NULL");
    if (refuse_varlen(plan, "stem_score") != STEM_OK)
        return STEM_ERR_INVALID_ARGUMENT;
    if (plan->desc.vstats_mode == STEM_VSTATS_PROVIDED)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_score: a vstats_mode=PROVIDED plan takes its statistics "
                              "through stem_prefill_ex");
    const stem_tensor *t[T_COUNT_] = {q, k, v, scores};
    const int use[T_COUNT_] = {1, 1, 1, 1};
    const int out[T_COUNT_] = {0, 0, 0, 1};
    stem_status st = check_all(plan, "stem_score", t, use, out);
    if (st != STEM_OK)
        return st;
    const stem_pass pass = stem_plan_whole_pass(plan);
    return plan->ctx->ops->score(plan, &pass, q, k, v, scores);
}

stem_status stem_select(stem_plan *plan, const stem_tensor *scores, const stem_tensor *index,
                        const stem_tensor *count)
{
    stem_enter(plan ? plan->ctx : NULL);
    if (!plan)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_select: plan is NULL");
    if (refuse_varlen(plan, "stem_select") != STEM_OK)
        return STEM_ERR_INVALID_ARGUMENT;
    const stem_tensor *t[T_COUNT_] = {NULL, NULL, NULL, scores, index, count};
    const int use[T_COUNT_] = {0, 0, 0, 1, 1, 1};
    const int out[T_COUNT_] = {0, 0, 0, 0, 1, 1};
    stem_status st = check_all(plan, "stem_select", t, use, out);
    if (st != STEM_OK)
        return st;
    const stem_pass pass = stem_plan_whole_pass(plan);
    return plan->ctx->ops->select(plan, &pass, scores, index, count);
}

stem_status stem_attention(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                           const stem_tensor *v, const stem_tensor *index, const stem_tensor *count,
                           const stem_tensor *o)
{
    stem_enter(plan ? plan->ctx : NULL);
    if (!plan)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_attention: plan is NULL");
    if (refuse_varlen(plan, "stem_attention") != STEM_OK)
        return STEM_ERR_INVALID_ARGUMENT;
    const stem_tensor *t[T_COUNT_] = {q, k, v, NULL, index, count, o};
    const int use[T_COUNT_] = {1, 1, 1, 0, 1, 1, 1};
    const int out[T_COUNT_] = {0, 0, 0, 0, 0, 0, 1};
    stem_status st = check_all(plan, "stem_attention", t, use, out);
    if (st == STEM_OK)
        st = check_lists(plan, index, count);
    if (st != STEM_OK)
        return st;
    const stem_pass pass = stem_plan_whole_pass(plan);
    return plan->ctx->ops->attention(plan, &pass, q, k, v, index, count, o);
}

/* A view of heads [h0, h0 + nh) of batch entries [b0, b0 + nb). */
static stem_tensor slice(const stem_tensor *t, int64_t b0, int64_t nb, int64_t h0, int64_t nh)
{
    stem_tensor s = *t;
    s.offset += (size_t)((b0 * t->strides[0] + h0 * t->strides[1]) *
                         (int64_t)stem_dtype_size(t->dtype));
    s.dims[0] = nb;
    s.dims[1] = nh;
    return s;
}

stem_pass stem_plan_whole_pass(const stem_plan *plan)
{
    stem_pass p;
    memset(&p, 0, sizeof p);
    p.batch = plan->desc.batch;
    p.num_q_heads = plan->desc.num_q_heads;
    p.num_kv_heads = plan->desc.num_kv_heads;
    p.q_len = plan->desc.q_len;
    p.kv_len = plan->desc.kv_len;
    p.q_offset = plan->q_offset;
    p.row0 = plan->row0;
    p.n_rows = plan->n_rows;
    p.n_keys = plan->n_blocks;
    return p;
}

void stem_call_io_init(stem_call_io *io)
{
    if (!io)
        return;
    memset(io, 0, sizeof *io);
    io->struct_size = sizeof *io;
}

/* PROVIDED statistics must be usable: finite, std >= 0. Checked where the
 * library can read them without waiting (host-visible buffers); device
 * memory is not read back, since that would synchronise the caller's queue
 * on every chunk. */
stem_status stem_check_vstats_in(const stem_plan *plan, const stem_tensor *t, int64_t batch,
                                 const char *fn)
{
    if (!t->buffer->host)
        return STEM_OK;
    const int64_t nb = batch, nh = plan->desc.num_kv_heads;
    const int64_t span = (nb - 1) * t->strides[0] + (nh - 1) * t->strides[1] + t->strides[3] + 1;
    float *img = malloc((size_t)span * sizeof(float));
    if (!img)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    /* Queued stages (Vulkan on a CPU device maps its memory) may still write it. */
    stem_status st = plan->ctx->ops->synchronize(plan->ctx);
    if (st == STEM_OK)
        memcpy(img, (const char *)t->buffer->host + t->offset, (size_t)span * sizeof(float));
    for (int64_t b = 0; st == STEM_OK && b < nb; ++b)
        for (int64_t h = 0; st == STEM_OK && h < nh; ++h) {
            const float *ms = img + b * t->strides[0] + h * t->strides[1];
            const float mean = ms[0], sd = ms[t->strides[3]];
            if (!(mean - mean == 0.0f) || !(sd - sd == 0.0f) || sd < 0.0f)
                st = stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                    "%s: vstats_in[%lld][%lld] = (%g, %g): mean and std must "
                                    "be finite, std >= 0",
                                    fn, (long long)b, (long long)h, (double)mean, (double)sd);
        }
    free(img);
    return st;
}

static stem_status prefill(stem_plan *plan, const char *fn, const stem_tensor *q,
                           const stem_tensor *k, const stem_tensor *v, const stem_tensor *o,
                           const stem_call_io *io)
{
    const int varlen = plan->desc.q_layout == STEM_Q_PACKED;
    if (varlen)
        return stem_prefill_varlen(plan, fn, q, k, v, o, io);
    if (io->seqs)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: io->seqs is for varlen plans (q_layout PACKED) only", fn);
    return stem_prefill_run(plan, fn, q, k, v, o, io);
}

stem_status stem_prefill(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                         const stem_tensor *v, const stem_tensor *o, const stem_tensor *scores,
                         const stem_tensor *index, const stem_tensor *count)
{
    stem_enter(plan ? plan->ctx : NULL);
    if (!plan)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_prefill: plan is NULL");
    if (refuse_varlen(plan, "stem_prefill") != STEM_OK)
        return STEM_ERR_INVALID_ARGUMENT;
    if (plan->desc.vstats_mode == STEM_VSTATS_PROVIDED)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_prefill: a vstats_mode=PROVIDED plan needs vstats_in "
                              "(stem_prefill_ex)");
    stem_call_io io;
    stem_call_io_init(&io);
    io.scores = scores;
    io.index = index;
    io.count = count;
    return prefill(plan, "stem_prefill", q, k, v, o, &io);
}

stem_status stem_prefill_ex(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                            const stem_tensor *v, const stem_tensor *o, const stem_call_io *io)
{
    stem_enter(plan ? plan->ctx : NULL);
    if (!plan)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_prefill_ex: plan is NULL");
    stem_call_io c;
    stem_call_io_init(&c);
    if (io) {
        const stem_status st = stem_struct_in(&c, sizeof c, io, STEM_MIN_CALL_IO,
                                              "stem_prefill_ex", "io", "stem_call_io_init");
        if (st != STEM_OK)
            return st;
    }
    return prefill(plan, "stem_prefill_ex", q, k, v, o, &c);
}

/* The per-call options both prefill paths check before anything is read:
 * PROVIDED statistics present, vstats_out only where statistics exist, and
 * the backend's capabilities. */
stem_status stem_check_call_options(const stem_plan *plan, const char *fn,
                                    const stem_call_io *io)
{
    const int provided = plan->desc.vstats_mode == STEM_VSTATS_PROVIDED;
    const stem_tensor *vin = provided ? io->vstats_in : NULL;
    const stem_tensor *vout = io->vstats_out, *lse = io->lse;
    if (provided && !vin)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: vstats_mode=PROVIDED needs io->vstats_in", fn);
    const stem_selector sel = plan->cfg.selector;
    if (vout && sel != STEM_SELECTOR_STEM && sel != STEM_SELECTOR_DENSE)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: vstats_out: value statistics exist only for the stem "
                              "selector (and dense), not %s",
                              fn, stem_selector_name(sel));
    const unsigned caps = plan->ctx->ops->caps;
    if ((vout || vin) && !(caps & STEM_CAP_VSTATS))
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "%s: value statistics in/out are not supported by backend %s yet",
                              fn, plan->ctx->ops->name);
    if (lse && !(caps & STEM_CAP_LSE))
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "%s: the lse output is not supported by backend %s yet", fn,
                              plan->ctx->ops->name);
    return STEM_OK;
}

stem_status stem_prefill_run(stem_plan *plan, const char *fn, const stem_tensor *q,
                             const stem_tensor *k, const stem_tensor *v, const stem_tensor *o,
                             const stem_call_io *io)
{
    const stem_tensor *scores = io->scores, *index = io->index, *count = io->count;
    stem_status st = stem_check_call_options(plan, fn, io);
    if (st != STEM_OK)
        return st;
    const stem_tensor *vin = plan->desc.vstats_mode == STEM_VSTATS_PROVIDED ? io->vstats_in
                                                                            : NULL;
    const stem_tensor *vout = io->vstats_out, *lse = io->lse;
    const stem_tensor *t[T_COUNT_] = {q, k, v, scores, index, count, o, vin, vout, lse};
    const int use[T_COUNT_] = {1, 1, 1, scores != NULL, index != NULL, count != NULL, 1,
                               vin != NULL, vout != NULL, lse != NULL};
    const int out[T_COUNT_] = {0, 0, 0, 1, 1, 1, 1, 0, 1, 1};
    st = check_all(plan, fn, t, use, out);
    if (st == STEM_OK && vin)
        st = stem_check_vstats_in(plan, vin, plan->desc.batch, fn);
    if (st != STEM_OK)
        return st;

    const stem_attention_desc *d = &plan->desc;
    const int64_t n = plan->n_blocks, nr = plan->n_rows;
    const int need_ws = !scores || !index || !count;
    if (need_ws && !plan->workspace) {
        st = stem_buffer_create(plan->ctx, plan->workspace_bytes, &plan->workspace);
        if (st != STEM_OK)
            return st;
        plan->workspace_offset = 0;
        plan->workspace_owned = 1;
    }
    const int64_t nb = plan->batch_per_pass, nh = plan->heads_per_pass;
    const int64_t g = d->num_q_heads / d->num_kv_heads;
    /* Workspace tensors for one pass: scores, index, count, each [nb, nh, ...]. */
    const size_t rn = (size_t)nr * (size_t)n;
    stem_tensor ws_s, ws_i, ws_c;
    if (need_ws) {
        const size_t base = plan->workspace_offset;
        const size_t per = (size_t)nb * (size_t)nh;
        ws_s = stem_tensor_bhnd(plan->workspace, base, STEM_DTYPE_F32, nb, nh, nr, n);
        ws_i = stem_tensor_bhnd(plan->workspace, base + per * rn * 4, STEM_DTYPE_I32, nb, nh, nr,
                                n);
        ws_c = stem_tensor_bhnd(plan->workspace, base + per * rn * 8, STEM_DTYPE_I32, nb, nh, nr,
                                1);
    }
    /* Each pass: batch entries [b0, b0 + nb) and query heads [h0, h0 + hc). */
    stem_pass pass = stem_plan_whole_pass(plan);
    for (int64_t b0 = 0; b0 < d->batch; b0 += nb) {
        for (int64_t h0 = 0; h0 < d->num_q_heads; h0 += nh) {
            const int64_t hc = nh < d->num_q_heads - h0 ? nh : d->num_q_heads - h0;
            const int64_t kv0 = h0 / g;
            const int64_t kvc = hc >= g ? hc / g : 1;
            pass.batch = nb;
            pass.num_q_heads = hc;
            pass.num_kv_heads = kvc;
            stem_tensor sq = slice(q, b0, nb, h0, hc), sk = slice(k, b0, nb, kv0, kvc),
                        sv = slice(v, b0, nb, kv0, kvc), so = slice(o, b0, nb, h0, hc);
            stem_tensor ss = scores ? slice(scores, b0, nb, h0, hc) : slice(&ws_s, 0, nb, 0, hc);
            stem_tensor si = index ? slice(index, b0, nb, h0, hc) : slice(&ws_i, 0, nb, 0, hc);
            stem_tensor sc = count ? slice(count, b0, nb, h0, hc) : slice(&ws_c, 0, nb, 0, hc);
            stem_tensor svi, svo, sl;
            if (vin)
                svi = slice(vin, b0, nb, kv0, kvc);
            if (vout)
                svo = slice(vout, b0, nb, kv0, kvc);
            if (lse)
                sl = slice(lse, b0, nb, h0, hc);
            pass.vstats_in = vin ? &svi : NULL;
            /* Statistics of a KV head shared by several passes (heads per pass
             * below the group) are the same in each: any pass may write them. */
            pass.vstats_out = vout ? &svo : NULL;
            pass.lse = lse ? &sl : NULL;
            /* A dense plan's selection reads no scores: skip them unless asked for. */
            if (scores || vout || !plan->dense)
                st = plan->ctx->ops->score(plan, &pass, &sq, &sk, &sv, &ss);
            if (st == STEM_OK)
                st = plan->ctx->ops->select(plan, &pass, &ss, &si, &sc);
            if (st == STEM_OK)
                st = plan->ctx->ops->attention(plan, &pass, &sq, &sk, &sv, &si, &sc, &so);
            if (st != STEM_OK)
                return st;
        }
    }
    return STEM_OK;
}
