/* Varlen batches and paged KV (docs/semantics.md section 9): validate the
 * call's sequence geometry on the host, then run every sequence as its own
 * single-sequence prefill on views of the caller's tensors (paged K/V first
 * gathered into the plan's workspace). */
#include "stem_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_BIT (1u << STEM_DTYPE_F32)
#define I32_BIT (1u << STEM_DTYPE_I32)
#define FLOAT_BITS (F32_BIT | (1u << STEM_DTYPE_F16) | (1u << STEM_DTYPE_BF16))

void stem_seqs_init(stem_seqs *seqs)
{
    if (!seqs)
        return;
    memset(seqs, 0, sizeof *seqs);
    seqs->struct_size = sizeof *seqs;
}

/* One sequence of the call, resolved. */
typedef struct seq_geom {
    int64_t q0, M;      /* packed query rows [q0, q0 + M) */
    int64_t kv0, L, N;  /* KV_PACKED rows from kv0; visible keys; prompt length */
    int64_t row_ptr;    /* first packed selection row */
    int64_t rows, nk;   /* selection rows and key blocks */
} seq_geom;

/* Host copy of a validated i32 tensor, in logical row-major order. */
static stem_status read_i32(const stem_plan *plan, const stem_tensor *t, const char *fn,
                            int32_t *out)
{
    int64_t span = 1;
    for (int i = 0; i < 4; ++i)
        span += (t->dims[i] - 1) * t->strides[i];
    int32_t *img = malloc((size_t)span * sizeof *img);
    if (!img)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    stem_status st = STEM_OK;
    if (t->buffer->host)
        memcpy(img, (const char *)t->buffer->host + t->offset, (size_t)span * sizeof *img);
    else
        st = plan->ctx->ops->buffer_read(plan->ctx, t->buffer, t->offset, img,
                                         (size_t)span * sizeof *img);
    if (st == STEM_OK) {
        int64_t k = 0;
        for (int64_t a = 0; a < t->dims[0]; ++a)
            for (int64_t b = 0; b < t->dims[1]; ++b)
                for (int64_t c = 0; c < t->dims[2]; ++c)
                    for (int64_t d = 0; d < t->dims[3]; ++d)
                        out[k++] = img[a * t->strides[0] + b * t->strides[1] +
                                       c * t->strides[2] + d * t->strides[3]];
    }
    free(img);
    return st;
}

/* A [1, 1, rows, cols] i32 geometry tensor: checked, then read to the host. */
static stem_status geometry_tensor(const stem_plan *plan, const char *fn, const char *name,
                                   const stem_tensor *t, int64_t rows, int64_t cols,
                                   int32_t **out)
{
    const int64_t dims[4] = {1, 1, rows, cols};
    stem_byte_range r;
    stem_status st = stem_check_tensor(plan, t, fn, name, dims, I32_BIT, &r);
    if (st != STEM_OK)
        return st;
    *out = malloc((size_t)(rows * cols) * sizeof **out);
    if (!*out)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    return read_i32(plan, t, fn, *out);
}

static stem_tensor view_rows(const stem_tensor *t, int64_t b, int64_t row0, int64_t rows)
{
    stem_tensor s = *t;
    s.offset += (size_t)((b * t->strides[0] + row0 * t->strides[2]) *
                         (int64_t)stem_dtype_size(t->dtype));
    s.dims[0] = 1;
    s.dims[2] = rows;
    return s;
}

/* Gathers sequence pages into the workspace at `base` and describes the
 * result: NHD-like pools (heads adjacent inside a slot) keep token-major
 * rows, any other pool becomes [Hkv, L, d]. One copy per page (per page and
 * head for the second form); rows of a page are merged when contiguous. */
static stem_status gather_pages(stem_plan *plan, const char *fn, const stem_tensor *pool,
                                const int32_t *pages, int64_t L, size_t base, stem_tensor *out)
{
    const stem_attention_desc *d = &plan->desc;
    const int64_t ps = d->page_size, H = d->num_kv_heads, hd = d->head_dim;
    const size_t es = stem_dtype_size(d->dtype);
    const int64_t npages = (L + ps - 1) / ps;
    const int token_major = H == 1 || pool->strides[1] == hd;
    const size_t per = token_major ? (size_t)npages : (size_t)(npages * H);
    stem_copy_rect *rects = malloc(per * sizeof *rects);
    if (!rects)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    size_t n = 0;
    for (int64_t j = 0; j < npages; ++j) {
        const int64_t used = L - j * ps < ps ? L - j * ps : ps;
        for (int64_t h = 0; h < (token_major ? 1 : H); ++h) {
            stem_copy_rect *r = &rects[n++];
            r->src_off = pool->offset + (size_t)(pages[j] * pool->strides[0] +
                                                 h * pool->strides[1]) * es;
            r->rows = (size_t)used;
            r->src_pitch = (size_t)pool->strides[2] * es;
            if (token_major) {
                r->dst_off = base + (size_t)(j * ps * H * hd) * es;
                r->row_bytes = r->dst_pitch = (size_t)(H * hd) * es;
            } else {
                r->dst_off = base + (size_t)((h * L + j * ps) * hd) * es;
                r->row_bytes = r->dst_pitch = (size_t)hd * es;
            }
            if (r->src_pitch == r->row_bytes) { /* whole page (or head of it) at once */
                r->row_bytes *= r->rows;
                r->src_pitch = r->dst_pitch = r->row_bytes;
                r->rows = 1;
            }
        }
    }
    stem_buffer *ws = plan->workspace;
    stem_status st = STEM_OK;
    if (plan->ctx->ops->copy_rects) {
        st = plan->ctx->ops->copy_rects(plan->ctx, ws, pool->buffer, rects, n);
    } else if (ws->host && pool->buffer->host) { /* synchronous backends (CPU) */
        for (size_t i = 0; i < n; ++i)
            for (size_t r = 0; r < rects[i].rows; ++r)
                memcpy((char *)ws->host + rects[i].dst_off + r * rects[i].dst_pitch,
                       (const char *)pool->buffer->host + rects[i].src_off +
                           r * rects[i].src_pitch,
                       rects[i].row_bytes);
    } else {
        st = stem_set_error(STEM_ERR_UNSUPPORTED, "%s: backend %s cannot copy paged K/V", fn,
                            plan->ctx->ops->name);
    }
    free(rects);
    memset(out, 0, sizeof *out);
    out->buffer = ws;
    out->offset = base;
    out->dtype = d->dtype;
    out->dims[0] = 1, out->dims[1] = H, out->dims[2] = L, out->dims[3] = hd;
    out->strides[0] = H * L * hd;
    out->strides[1] = token_major ? hd : L * hd;
    out->strides[2] = token_major ? H * hd : hd;
    out->strides[3] = 1;
    return st;
}

/* Everything a varlen call reads and checks, owned here. */
typedef struct varlen_call {
    int32_t *cu_q, *lens_kv, *cu_kv, *table, *prompts;
    seq_geom *seq;
    stem_plan **sub;
    int64_t batch, table_cols;
} varlen_call;

static void varlen_free(varlen_call *c)
{
    if (c->sub)
        for (int64_t b = 0; b < c->batch; ++b)
            stem_plan_destroy(c->sub[b]);
    free(c->cu_q), free(c->lens_kv), free(c->cu_kv), free(c->table), free(c->prompts);
    free(c->seq), free(c->sub);
}

/* Reads and checks the sequence geometry (nothing is written on failure). */
static stem_status read_geometry(stem_plan *plan, const char *fn, const stem_seqs *s,
                                 const stem_tensor *k, const stem_tensor *v, varlen_call *c)
{
    const stem_attention_desc *d = &plan->desc;
    const int64_t B = s->batch, bs = plan->cfg.block_size;
    if (B < 1 || B > d->batch)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: seqs->batch=%lld must be in [1, desc.batch=%lld]", fn,
                              (long long)B, (long long)d->batch);
    c->batch = B;
    if (!s->cu_seqlens_q)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: seqs->cu_seqlens_q is NULL", fn);
    const int store = d->kv_store;
    if (s->cu_seqlens_kv && store != STEM_KV_PACKED)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: seqs->cu_seqlens_kv is for kv_store PACKED only", fn);
    if (s->block_table && store != STEM_KV_PAGED)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: seqs->block_table is for kv_store PAGED only", fn);
    if (store == STEM_KV_PACKED && !s->cu_seqlens_kv)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: kv_store PACKED needs seqs->cu_seqlens_kv", fn);
    if (store != STEM_KV_PACKED && !s->seqlens_kv)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: kv_store %s needs seqs->seqlens_kv",
                              fn, store == STEM_KV_PAGED ? "PAGED" : "BHND");
    if (store == STEM_KV_PAGED && !s->block_table)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: kv_store PAGED needs seqs->block_table", fn);
    stem_status st = geometry_tensor(plan, fn, "seqs->cu_seqlens_q", s->cu_seqlens_q, 1, B + 1,
                                     &c->cu_q);
    if (st == STEM_OK && s->seqlens_kv)
        st = geometry_tensor(plan, fn, "seqs->seqlens_kv", s->seqlens_kv, 1, B, &c->lens_kv);
    if (st == STEM_OK && s->cu_seqlens_kv)
        st = geometry_tensor(plan, fn, "seqs->cu_seqlens_kv", s->cu_seqlens_kv, 1, B + 1,
                             &c->cu_kv);
    if (st == STEM_OK && s->prompt_lens)
        st = geometry_tensor(plan, fn, "seqs->prompt_lens", s->prompt_lens, 1, B, &c->prompts);
    if (st == STEM_OK && s->block_table) {
        const stem_tensor *t = s->block_table;
        c->table_cols = t->dims[3];
        if (t->dims[3] < 1)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: seqs->block_table has %lld columns", fn,
                                  (long long)t->dims[3]);
        st = geometry_tensor(plan, fn, "seqs->block_table", t, B, t->dims[3], &c->table);
    }
    if (st != STEM_OK)
        return st;
    c->seq = calloc((size_t)B, sizeof *c->seq);
    if (!c->seq)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);

    /* Query offsets, then each sequence's lengths against the plan's bounds. */
    if (c->cu_q[0] != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: cu_seqlens_q[0]=%d must be 0", fn,
                              c->cu_q[0]);
    if (c->cu_kv && c->cu_kv[0] != 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: cu_seqlens_kv[0]=%d must be 0", fn,
                              c->cu_kv[0]);
    const int64_t kv_rows = store == STEM_KV_PAGED ? 0 : k->dims[2] < v->dims[2] ? k->dims[2]
                                                                                 : v->dims[2];
    const int64_t pages = k->dims[0] < v->dims[0] ? k->dims[0] : v->dims[0];
    const int64_t ps = d->page_size;
    int64_t rows = 0;
    for (int64_t b = 0; b < B; ++b) {
        seq_geom *g = &c->seq[b];
        if (c->cu_q[b + 1] < c->cu_q[b])
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: cu_seqlens_q is not ascending: [%lld] = %d < [%lld] = %d",
                                  fn, (long long)(b + 1), c->cu_q[b + 1], (long long)b,
                                  c->cu_q[b]);
        g->q0 = c->cu_q[b];
        g->M = (int64_t)c->cu_q[b + 1] - c->cu_q[b];
        if (c->cu_kv) {
            if (c->cu_kv[b + 1] < c->cu_kv[b])
                return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                      "%s: cu_seqlens_kv is not ascending: [%lld] = %d < "
                                      "[%lld] = %d",
                                      fn, (long long)(b + 1), c->cu_kv[b + 1], (long long)b,
                                      c->cu_kv[b]);
            g->kv0 = c->cu_kv[b];
            g->L = (int64_t)c->cu_kv[b + 1] - c->cu_kv[b];
            if (c->lens_kv && c->lens_kv[b] != g->L)
                return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                      "%s: seqlens_kv[%lld] = %d disagrees with cu_seqlens_kv "
                                      "(%lld keys)",
                                      fn, (long long)b, c->lens_kv[b], (long long)g->L);
        } else {
            g->L = c->lens_kv[b];
        }
        if (g->L < 0 || g->L > d->kv_len)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: sequence %lld: %lld visible keys outside [0, desc.kv_len "
                                  "= %lld]",
                                  fn, (long long)b, (long long)g->L, (long long)d->kv_len);
        if (g->M > d->q_len)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: sequence %lld: %lld queries > desc.q_len = %lld", fn,
                                  (long long)b, (long long)g->M, (long long)d->q_len);
        if (g->M > g->L)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: sequence %lld: %lld queries > %lld visible keys (the "
                                  "queries' own keys must be visible)",
                                  fn, (long long)b, (long long)g->M, (long long)g->L);
        const int32_t np = c->prompts ? c->prompts[b] : 0;
        if (np != 0 && np < g->L)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: prompt_lens[%lld] = %d is below the visible length %lld "
                                  "(0 = the visible length)",
                                  fn, (long long)b, np, (long long)g->L);
        g->N = np != 0 ? np : g->L;
        if (store == STEM_KV_PACKED && g->kv0 + g->L > kv_rows)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: sequence %lld: keys [%lld, %lld) past the %lld rows of k/v",
                                  fn, (long long)b, (long long)g->kv0, (long long)(g->kv0 + g->L),
                                  (long long)kv_rows);
        if (store == STEM_KV_BHND && g->L > kv_rows)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "%s: seqlens_kv[%lld] = %lld past the %lld rows of k/v", fn,
                                  (long long)b, (long long)g->L, (long long)kv_rows);
        if (store == STEM_KV_PAGED && g->M > 0) {
            const int64_t used = (g->L + ps - 1) / ps;
            if (used > c->table_cols)
                return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                      "%s: sequence %lld: %lld keys need %lld pages, block_table "
                                      "has %lld columns",
                                      fn, (long long)b, (long long)g->L, (long long)used,
                                      (long long)c->table_cols);
            for (int64_t j = 0; j < used; ++j) {
                const int32_t pg = c->table[b * c->table_cols + j];
                if (pg < 0 || pg >= pages)
                    return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                          "%s: block_table[%lld][%lld] = %d outside [0, %lld) "
                                          "(pages of k/v)",
                                          fn, (long long)b, (long long)j, pg, (long long)pages);
            }
        }
        g->nk = (g->L + bs - 1) / bs;
        g->rows = g->M > 0 ? g->nk - (g->L - g->M) / bs : 0;
        g->row_ptr = rows;
        rows += g->rows;
    }
    return STEM_OK;
}

stem_status stem_prefill_varlen(stem_plan *plan, const char *fn, const stem_tensor *q,
                                const stem_tensor *k, const stem_tensor *v, const stem_tensor *o,
                                const stem_call_io *io)
{
    const stem_attention_desc *d = &plan->desc;
    if (!io->seqs)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: a varlen plan (q_layout PACKED) needs io->seqs", fn);
    stem_seqs s;
    stem_seqs_init(&s);
    stem_status st = stem_struct_in(&s, sizeof s, io->seqs, STEM_MIN_SEQS, fn, "io->seqs",
                                    "stem_seqs_init");
    if (st != STEM_OK)
        return st;
    if (!q || !k || !v || !o)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                              !q ? "q" : !k ? "k" : !v ? "v" : "out");
    if (!k->buffer || !v->buffer)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s.buffer is NULL", fn,
                              !k->buffer ? "k" : "v");
    /* Option checks shared with single calls, before anything is read. */
    stem_status ost = stem_check_call_options(plan, fn, io);
    if (ost != STEM_OK)
        return ost;
    const int provided = d->vstats_mode == STEM_VSTATS_PROVIDED;
    const stem_tensor *vin = provided ? io->vstats_in : NULL;
    const stem_tensor *vout = io->vstats_out, *lse = io->lse;

    varlen_call c;
    memset(&c, 0, sizeof c);
    st = read_geometry(plan, fn, &s, k, v, &c);
    const int64_t B = c.batch, hq = d->num_q_heads, hkv = d->num_kv_heads, hd = d->head_dim;
    const int64_t bs = plan->cfg.block_size, W = (d->kv_len + bs - 1) / bs;
    const int64_t T = st == STEM_OK ? c.cu_q[B] : 0;
    const int64_t R = st == STEM_OK ? c.seq[B - 1].row_ptr + c.seq[B - 1].rows : 0;

    /* Every tensor against the call's geometry; outputs overlap nothing. */
    enum { V_Q, V_K, V_V, V_O, V_S, V_I, V_C, V_VI, V_VO, V_L, V_N };
    static const char *const names[V_N] = {"q",     "k",     "v",         "out",        "scores",
                                            "index", "count", "vstats_in", "vstats_out", "lse"};
    const stem_tensor *t[V_N] = {q, k, v, o, io->scores, io->index, io->count, vin, vout, lse};
    const int is_out[V_N] = {0, 0, 0, 1, 1, 1, 1, 0, 1, 1};
    int64_t kvd[4];
    if (d->kv_store == STEM_KV_PAGED) {
        kvd[0] = k->dims[0], kvd[1] = hkv, kvd[2] = d->page_size, kvd[3] = hd;
    } else {
        kvd[0] = d->kv_store == STEM_KV_BHND ? B : 1, kvd[1] = hkv, kvd[2] = k->dims[2],
        kvd[3] = hd;
    }
    int64_t vvd[4] = {kvd[0], kvd[1], kvd[2], kvd[3]};
    if (d->kv_store == STEM_KV_PAGED)
        vvd[0] = v->dims[0];
    else
        vvd[2] = v->dims[2];
    const int64_t dims[V_N][4] = {{1, hq, T, hd}, {kvd[0], kvd[1], kvd[2], kvd[3]},
                                  {vvd[0], vvd[1], vvd[2], vvd[3]}, {1, hq, T, hd},
                                  {1, hq, R, W}, {1, hq, R, W}, {1, hq, R, 1},
                                  {B, hkv, 1, 2}, {B, hkv, 1, 2}, {1, hq, T, 1}};
    const unsigned qkv = 1u << (unsigned)d->dtype;
    const unsigned masks[V_N] = {qkv,     qkv,     qkv,     FLOAT_BITS, F32_BIT,
                                 I32_BIT, I32_BIT, F32_BIT, F32_BIT,    F32_BIT};
    stem_byte_range r[V_N];
    for (int i = 0; st == STEM_OK && i < V_N; ++i)
        if (t[i])
            st = stem_check_tensor(plan, t[i], fn, names[i], dims[i], masks[i], &r[i]);
    for (int i = 0; st == STEM_OK && i < V_N; ++i)
        for (int j = 0; st == STEM_OK && j < V_N; ++j)
            if (i != j && t[i] && t[j] && is_out[i] && !(is_out[j] && j < i))
                st = stem_check_disjoint(fn, &r[i], names[i], &r[j], names[j]);
    if (st == STEM_OK && d->kv_store == STEM_KV_PAGED && (k->strides[3] != 1 || v->strides[3] != 1))
        st = stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                            "%s: page pools need a contiguous head_dim (k/v strides[3] = 1)", fn);
    if (st == STEM_OK && vin)
        st = stem_check_vstats_in(plan, vin, B, fn);

    /* One plan per sequence with queries, all made before anything runs so a
     * refusal (a sequence's shape this backend cannot run) writes nothing. */
    if (st == STEM_OK) {
        c.sub = calloc((size_t)B, sizeof *c.sub);
        if (!c.sub)
            st = stem_set_error(STEM_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    }
    for (int64_t b = 0; st == STEM_OK && b < B; ++b) {
        const seq_geom *g = &c.seq[b];
        if (g->M == 0)
            continue;
        stem_attention_desc sd = *d;
        sd.batch = 1;
        sd.q_len = g->M;
        sd.kv_len = g->L;
        sd.prompt_len = g->N;
        sd.q_layout = STEM_Q_BHND;
        sd.kv_store = STEM_KV_BHND;
        sd.page_size = 0;
        /* A k_start or uniform_k override above the sequence's prompt blocks
         * means "every row dense" there (as k >= n does in section 4). */
        stem_config sc = plan->cfg;
        const int64_t nb = (g->N + bs - 1) / bs;
        if (sc.k_start > nb)
            sc.k_start = (int32_t)nb;
        if (sc.uniform_k > nb)
            sc.uniform_k = (int32_t)nb;
        st = stem_plan_create_sequence(plan->ctx, &sd, &sc, &c.sub[b]);
        if (st != STEM_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", stem_last_error());
            st = stem_set_error(st, "%s: sequence %lld (%lld queries, %lld keys): %s", fn,
                                (long long)b, (long long)g->M, (long long)g->L, msg);
        }
    }
    const int need_ws = !io->scores || !io->index || !io->count || d->kv_store == STEM_KV_PAGED;
    if (st == STEM_OK && need_ws && !plan->workspace) {
        st = stem_buffer_create(plan->ctx, plan->workspace_bytes, &plan->workspace);
        if (st == STEM_OK) {
            plan->workspace_offset = 0;
            plan->workspace_owned = 1;
        }
    }

    for (int64_t b = 0; st == STEM_OK && b < B; ++b) {
        const seq_geom *g = &c.seq[b];
        stem_plan *sp = c.sub[b];
        if (!sp)
            continue;
        if (plan->workspace && sp->workspace_bytes <= plan->varlen_selection_bytes) {
            sp->workspace = plan->workspace; /* borrowed: never freed by sp */
            sp->workspace_offset = plan->workspace_offset;
            sp->workspace_owned = 0;
        }
        stem_tensor sq = view_rows(q, 0, g->q0, g->M), so = view_rows(o, 0, g->q0, g->M);
        stem_tensor sk, sv, sl, ss, si, sc, svi, svo;
        if (d->kv_store == STEM_KV_PAGED) {
            const int32_t *pages = c.table + b * c.table_cols;
            const size_t base = plan->workspace_offset + plan->varlen_kv_offset;
            st = gather_pages(plan, fn, k, pages, g->L, base, &sk);
            if (st == STEM_OK)
                st = gather_pages(plan, fn, v, pages, g->L, base + plan->varlen_kv_bytes, &sv);
            if (st != STEM_OK)
                break;
        } else if (d->kv_store == STEM_KV_PACKED) {
            sk = view_rows(k, 0, g->kv0, g->L), sv = view_rows(v, 0, g->kv0, g->L);
        } else {
            sk = view_rows(k, b, 0, g->L), sv = view_rows(v, b, 0, g->L);
        }
        stem_call_io sio;
        stem_call_io_init(&sio);
        if (lse) {
            sl = view_rows(lse, 0, g->q0, g->M);
            sio.lse = &sl;
        }
        if (io->scores) {
            ss = view_rows(io->scores, 0, g->row_ptr, g->rows);
            ss.dims[3] = g->nk;
            sio.scores = &ss;
        }
        if (io->index) {
            si = view_rows(io->index, 0, g->row_ptr, g->rows);
            si.dims[3] = g->nk;
            sio.index = &si;
        }
        if (io->count) {
            sc = view_rows(io->count, 0, g->row_ptr, g->rows);
            sio.count = &sc;
        }
        if (vin) {
            svi = view_rows(vin, b, 0, 1);
            sio.vstats_in = &svi;
        }
        if (vout) {
            svo = view_rows(vout, b, 0, 1);
            sio.vstats_out = &svo;
        }
        st = stem_prefill_run(sp, fn, &sq, &sk, &sv, &so, &sio);
    }
    varlen_free(&c);
    return st;
}

stem_status stem_selection_to_local_mask(int64_t q_len, int64_t kv_len, int32_t block_size,
                                         int64_t heads, const int32_t *index,
                                         const int32_t *count, uint8_t *mask)
{
    stem_enter(NULL);
    const char *fn = "stem_selection_to_local_mask";
    if (!index || !count || !mask)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                              !index ? "index" : !count ? "count" : "mask");
    if (block_size < 1 || heads < 1 || q_len < 1 || q_len > kv_len || kv_len >= ((int64_t)1 << 31))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "%s: need block_size >= 1, heads >= 1, 1 <= q_len <= kv_len < 2^31 "
                              "(block_size %d, heads %lld, q_len %lld, kv_len %lld)",
                              fn, block_size, (long long)heads, (long long)q_len,
                              (long long)kv_len);
    const int64_t P = kv_len - q_len, nk = (kv_len + block_size - 1) / block_size;
    const int64_t row0 = P / block_size, rows = nk - row0;
    const int64_t tiles = (q_len + block_size - 1) / block_size;
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t r = 0; r < rows; ++r) {
            const int32_t c = count[h * rows + r];
            if (c < 0 || c > nk)
                return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                      "%s: count[%lld][%lld] = %d outside [0, %lld]", fn,
                                      (long long)h, (long long)r, c, (long long)nk);
            for (int32_t j = 0; j < c; ++j) {
                const int32_t J = index[(h * rows + r) * nk + j];
                if (J < 0 || J >= nk)
                    return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                          "%s: index[%lld][%lld][%d] = %d outside [0, %lld)", fn,
                                          (long long)h, (long long)r, j, J, (long long)nk);
            }
        }
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t t = 0; t < tiles; ++t) {
            uint8_t *m = mask + (h * tiles + t) * nk;
            memset(m, 0, (size_t)nk);
            const int64_t first = P + t * block_size;
            const int64_t last = P + (t + 1) * block_size < kv_len ? P + (t + 1) * block_size - 1
                                                                   : kv_len - 1;
            for (int64_t I = first / block_size; I <= last / block_size; ++I) {
                const int64_t r = I - row0;
                for (int32_t j = 0; j < count[h * rows + r]; ++j)
                    m[index[(h * rows + r) * nk + j]] = 1;
            }
        }
    return STEM_OK;
}
