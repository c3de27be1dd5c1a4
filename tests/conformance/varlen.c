/* Varlen batches and paged KV (docs/semantics.md section 9), on every device
 * like the chunked cases. Ids of the chunked-prefill test plan:
 *   C5  paged = packed: the same keys in KV_PACKED and in KV_PAGED pools
 *       (page sizes 1..256, NHD and HND pages, shuffled physical pages,
 *       NaN garbage in unused slots and pages, last page partly filled):
 *       selection and outputs bitwise equal; one run against the reference;
 *   C6  varlen = separate calls: a shuffled batch mixing (M, L) shapes,
 *       M = 0 included, packed queries: each sequence's rows, outputs and lse
 *       bitwise equal to a single-sequence call with the same (P, L, N), and
 *       the batch against the shared reference (per-sequence KV_BHND keys,
 *       prompt lengths, PROVIDED statistics);
 *   C12 size edges (CPU): L = 2^20 keys in 65536 pages of 16, lists at their
 *       width bound, against the reference, canaries intact;
 *   C13 stem_selection_to_local_mask on aligned and unaligned calls;
 *   misuse of every new field: a status, a message, no byte written.
 * A backend without varlen / paged support must refuse at plan creation
 * with STEM_ERR_UNSUPPORTED and a message (checked); the case ends there. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "run.h"
#include "stem_ref.h"
#include "stem_synth.h"

#define VL_GUARD 256 /* canary bytes before and after every tensor */
#define VL_MAXB 16

static int vl_is_cpu(const conf_test *T) { return T->dev->info.backend == STEM_BACKEND_CPU; }

/* A buffer holding `bytes` at offset VL_GUARD between canaries; init NULL =
 * poison (0xFF: NaN for f32, -1 for i32). */
static stem_buffer *vl_buffer(conf_test *T, conf_res *R, size_t bytes, const void *init)
{
    stem_buffer *b = NULL;
    if (stem_buffer_create(T->dev->ctx, bytes + 2 * VL_GUARD, &b) != STEM_OK)
        fail_msg("stem_buffer_create: %s", stem_last_error());
    res_add_buffer(R, b);
    unsigned char *img = malloc(bytes + 2 * VL_GUARD);
    if (!img)
        fail_msg("out of host memory");
    memset(img, CONF_CANARY, bytes + 2 * VL_GUARD);
    if (init)
        memcpy(img + VL_GUARD, init, bytes);
    else
        memset(img + VL_GUARD, 0xFF, bytes);
    const stem_status st = stem_buffer_write(b, 0, img, bytes + 2 * VL_GUARD);
    free(img);
    if (st != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
    return b;
}

/* Reads the payload back (dst may be NULL) and checks the canaries. */
static void vl_read(stem_buffer *b, size_t bytes, void *dst, const char *what)
{
    unsigned char *img = malloc(bytes + 2 * VL_GUARD);
    if (!img)
        fail_msg("out of host memory");
    if (stem_buffer_read(b, 0, img, bytes + 2 * VL_GUARD) != STEM_OK) {
        free(img);
        fail_msg("stem_buffer_read: %s", stem_last_error());
    }
    for (size_t i = 0; i < VL_GUARD; ++i)
        if (img[i] != CONF_CANARY || img[VL_GUARD + bytes + i] != CONF_CANARY) {
            free(img);
            fail_msg("%s: canary byte overwritten next to the tensor", what);
        }
    if (dst)
        memcpy(dst, img + VL_GUARD, bytes);
    free(img);
}

/* The buffer still holds exactly what vl_buffer(init) put there. */
static void vl_untouched(stem_buffer *b, size_t bytes, const void *init, const char *what)
{
    unsigned char *img = malloc(bytes + 2 * VL_GUARD);
    if (!img)
        fail_msg("out of host memory");
    if (stem_buffer_read(b, 0, img, bytes + 2 * VL_GUARD) != STEM_OK) {
        free(img);
        fail_msg("stem_buffer_read: %s", stem_last_error());
    }
    for (size_t i = 0; i < bytes + 2 * VL_GUARD; ++i) {
        const int in = i >= VL_GUARD && i < VL_GUARD + bytes;
        const unsigned char want = !in ? CONF_CANARY
                                   : init ? ((const unsigned char *)init)[i - VL_GUARD]
                                          : 0xFF;
        if (img[i] != want) {
            free(img);
            fail_msg("%s: byte %zu written by a call that failed", what, i);
        }
    }
    free(img);
}

static stem_tensor vl_tensor(stem_buffer *buf, stem_dtype dt, int64_t d0, int64_t d1, int64_t d2,
                             int64_t d3, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    stem_tensor t;
    memset(&t, 0, sizeof t);
    t.buffer = buf;
    t.offset = VL_GUARD;
    t.dtype = dt;
    t.dims[0] = d0, t.dims[1] = d1, t.dims[2] = d2, t.dims[3] = d3;
    t.strides[0] = s0, t.strides[1] = s1, t.strides[2] = s2, t.strides[3] = s3;
    return t;
}

static stem_tensor vl_row(stem_buffer *buf, int64_t n)
{
    return vl_tensor(buf, STEM_DTYPE_I32, 1, 1, 1, n, n, n, n, 1);
}

/* ------------------------------------------------------------- the data */

/* One sequence: M queries at the end of L visible keys, prompt N (0 = L). */
typedef struct vl_seq {
    int64_t M, L, N;
} vl_seq;

/* Per-sequence full data: q [Hq][L][d], k, v [Hkv][L][d] (f32). */
typedef struct vl_batch {
    int64_t B, hq, hkv, d;
    vl_seq s[VL_MAXB];
    float *q[VL_MAXB], *k[VL_MAXB], *v[VL_MAXB];
} vl_batch;

static void vl_batch_make(conf_test *T, vl_batch *D, int64_t hq, int64_t hkv, int64_t d,
                          const vl_seq *seqs, int64_t B, uint64_t seed)
{
    memset(D, 0, sizeof *D);
    D->B = B, D->hq = hq, D->hkv = hkv, D->d = d;
    for (int64_t b = 0; b < B; ++b) {
        D->s[b] = seqs[b];
        const int64_t L = seqs[b].L > 0 ? seqs[b].L : 1;
        D->q[b] = res_alloc(&T->res, (size_t)(hq * L * d) * 4);
        D->k[b] = res_alloc(&T->res, (size_t)(hkv * L * d) * 4);
        D->v[b] = res_alloc(&T->res, (size_t)(hkv * L * d) * 4);
        stem_synth_qkv(STEM_SYNTH_STRUCTURED, seed + (uint64_t)b * 7919u, 1, hq, hkv, L, d,
                       D->q[b], D->k[b], D->v[b]);
    }
}

static int64_t vl_total_q(const vl_batch *D, int64_t *cu)
{
    int64_t t = 0;
    for (int64_t b = 0; b < D->B; ++b) {
        if (cu)
            cu[b] = t;
        t += D->s[b].M;
    }
    if (cu)
        cu[D->B] = t;
    return t;
}

/* Options of one varlen call. */
typedef struct vl_opts {
    int kv_store;          /* STEM_KV_* */
    int32_t page_size;     /* PAGED */
    int hnd;               /* PAGED: [pages][Hkv][ps][d] pages, else [pages][ps][Hkv][d] */
    int want_lse, want_vstats, with_prompts;
    int32_t vstats_mode;
    const float *vstats_in; /* [B][Hkv][2] */
    uint64_t shuffle_seed;  /* PAGED: physical page order */
} vl_opts;

/* One call's outputs, logical host copies. */
typedef struct vl_out {
    int64_t T, R, W;
    int64_t row_ptr[VL_MAXB + 1];
    float *out;            /* [Hq][T][d] */
    float *lse;            /* [Hq][T] or NULL */
    float *vstats;         /* [B][Hkv][2] or NULL */
    int32_t *index, *count; /* [Hq][R][W], [Hq][R] */
} vl_out;

static int64_t vl_rows(const vl_seq *s, int64_t bs)
{
    return s->M > 0 ? (s->L + bs - 1) / bs - (s->L - s->M) / bs : 0;
}

/* Host image of the K or V store of a call (layout per opts), with NaN
 * garbage wherever no key lives; *pages_out = pool pages (PAGED). */
typedef struct vl_store {
    float *k, *v;   /* device images */
    int64_t elems;  /* per image */
    int64_t rows;   /* BHND: Lk; PACKED: Tk; PAGED: pages */
    int32_t *table; /* PAGED [B][cols] */
    int64_t cols;
    int32_t cu_kv[VL_MAXB + 1], lens[VL_MAXB];
} vl_store;

static uint64_t vl_rand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static void vl_store_make(conf_res *R, const vl_batch *D, const vl_opts *o, vl_store *st)
{
    const int64_t H = D->hkv, d = D->d, B = D->B;
    memset(st, 0, sizeof *st);
    int64_t maxL = 0, sumL = 0;
    for (int64_t b = 0; b < B; ++b) {
        st->lens[b] = (int32_t)D->s[b].L;
        st->cu_kv[b] = (int32_t)sumL;
        sumL += D->s[b].L;
        maxL = D->s[b].L > maxL ? D->s[b].L : maxL;
    }
    st->cu_kv[B] = (int32_t)sumL;
    int64_t used = 0, ps = o->page_size;
    if (o->kv_store == STEM_KV_BHND) {
        st->rows = maxL + 5;
        st->elems = B * H * st->rows * d;
    } else if (o->kv_store == STEM_KV_PACKED) {
        st->rows = sumL + 3;
        st->elems = st->rows * H * d;
    } else {
        for (int64_t b = 0; b < B; ++b) {
            const int64_t np = (D->s[b].L + ps - 1) / ps;
            used += np;
            st->cols = np > st->cols ? np : st->cols;
        }
        st->cols += 2;
        st->rows = used + 3; /* three pages nobody uses */
        st->elems = st->rows * ps * H * d;
        st->table = res_alloc(R, (size_t)(B * st->cols) * 4);
    }
    st->k = res_alloc(R, (size_t)st->elems * 4);
    st->v = res_alloc(R, (size_t)st->elems * 4);
    memset(st->k, 0xFF, (size_t)st->elems * 4);
    memset(st->v, 0xFF, (size_t)st->elems * 4);
    int64_t *perm = NULL;
    if (o->kv_store == STEM_KV_PAGED) {
        perm = res_alloc(R, (size_t)st->rows * 8);
        for (int64_t i = 0; i < st->rows; ++i)
            perm[i] = i;
        uint64_t seed = o->shuffle_seed | 1u;
        for (int64_t i = st->rows - 1; i > 0; --i) {
            const int64_t j = (int64_t)(vl_rand(&seed) % (uint64_t)(i + 1));
            const int64_t t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
    }
    int64_t next = 0;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t L = D->s[b].L;
        if (o->kv_store == STEM_KV_PAGED)
            for (int64_t j = 0; j < st->cols; ++j)
                /* pages past the sequence's last hold junk ids: never read */
                st->table[b * st->cols + j] =
                    j < (L + ps - 1) / ps ? (int32_t)perm[next++] : (int32_t)(1000000 + j);
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < L; ++t) {
                int64_t at;
                if (o->kv_store == STEM_KV_BHND) {
                    at = ((b * H + h) * st->rows + t) * d;
                } else if (o->kv_store == STEM_KV_PACKED) {
                    at = ((st->cu_kv[b] + t) * H + h) * d;
                } else {
                    const int64_t pg = st->table[b * st->cols + t / ps], sl = t % ps;
                    at = o->hnd ? ((pg * H + h) * ps + sl) * d : ((pg * ps + sl) * H + h) * d;
                }
                memcpy(st->k + at, D->k[b] + (h * L + t) * d, (size_t)d * 4);
                memcpy(st->v + at, D->v[b] + (h * L + t) * d, (size_t)d * 4);
            }
    }
}

static stem_tensor vl_store_tensor(stem_buffer *buf, const vl_batch *D, const vl_opts *o,
                                   const vl_store *st)
{
    const int64_t H = D->hkv, d = D->d, ps = o->page_size;
    if (o->kv_store == STEM_KV_BHND)
        return vl_tensor(buf, STEM_DTYPE_F32, D->B, H, st->rows, d, H * st->rows * d,
                         st->rows * d, d, 1);
    if (o->kv_store == STEM_KV_PACKED)
        return vl_tensor(buf, STEM_DTYPE_F32, 1, H, st->rows, d, st->rows * H * d, d, H * d, 1);
    if (o->hnd)
        return vl_tensor(buf, STEM_DTYPE_F32, st->rows, H, ps, d, H * ps * d, ps * d, d, 1);
    return vl_tensor(buf, STEM_DTYPE_F32, st->rows, H, ps, d, ps * H * d, d, H * d, 1);
}

static void vl_desc(stem_attention_desc *desc, const vl_batch *D, const vl_opts *o)
{
    stem_attention_desc_init(desc);
    int64_t maxM = 1, maxL = 1;
    for (int64_t b = 0; b < D->B; ++b) {
        maxM = D->s[b].M > maxM ? D->s[b].M : maxM;
        maxL = D->s[b].L > maxL ? D->s[b].L : maxL;
    }
    desc->batch = D->B;
    desc->num_q_heads = D->hq;
    desc->num_kv_heads = D->hkv;
    desc->head_dim = D->d;
    desc->q_len = maxM;
    desc->kv_len = maxL;
    desc->q_layout = STEM_Q_PACKED;
    desc->kv_store = o->kv_store;
    desc->page_size = o->kv_store == STEM_KV_PAGED ? o->page_size : 0;
    desc->vstats_mode = o->vstats_mode;
}

/* A plan refused as UNSUPPORTED must carry a message; the CPU backend never refuses. */
static void vl_check_refusal(const conf_test *T, const char *what)
{
    if (!stem_last_error()[0])
        fail_msg("%s: UNSUPPORTED without a message", what);
    if (vl_is_cpu(T))
        fail_msg("cpu: %s: UNSUPPORTED: %s", what, stem_last_error());
}

static stem_status vl_call_in(conf_test *T, conf_res *R, conf_res *keep, const vl_batch *D,
                              const stem_config *cfg, const vl_opts *o, vl_out *out)
{
    const int64_t B = D->B, hq = D->hq, hkv = D->hkv, d = D->d, bs = cfg->block_size;
    stem_attention_desc desc;
    vl_desc(&desc, D, o);
    stem_plan *plan = NULL;
    stem_status st = stem_plan_create(T->dev->ctx, &desc, cfg, &plan);
    if (st == STEM_ERR_UNSUPPORTED) {
        vl_check_refusal(T, "stem_plan_create(varlen)");
        return st;
    }
    if (st != STEM_OK)
        fail_msg("stem_plan_create(varlen): %s: %s", stem_status_name(st), stem_last_error());
    res_add_plan(R, plan);

    int64_t cu[VL_MAXB + 1];
    const int64_t T_ = vl_total_q(D, cu);
    out->T = T_;
    out->W = (desc.kv_len + bs - 1) / bs;
    out->R = 0;
    for (int64_t b = 0; b < B; ++b) {
        out->row_ptr[b] = out->R;
        out->R += vl_rows(&D->s[b], bs);
    }
    out->row_ptr[B] = out->R;
    const int64_t Tq = T_ > 0 ? T_ : 1, Rr = out->R > 0 ? out->R : 1, W = out->W;
    /* Queries token-major [T][Hq][d], as engines pack them. */
    float *q = res_alloc(R, (size_t)(Tq * hq * d) * 4);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < D->s[b].M; ++i)
            for (int64_t h = 0; h < hq; ++h)
                memcpy(q + ((cu[b] + i) * hq + h) * d,
                       D->q[b] + (h * D->s[b].L + D->s[b].L - D->s[b].M + i) * d, (size_t)d * 4);
    vl_store sto;
    vl_store_make(R, D, o, &sto);
    int32_t cuq[VL_MAXB + 1], prompts[VL_MAXB];
    for (int64_t b = 0; b <= B; ++b)
        cuq[b] = (int32_t)cu[b];
    for (int64_t b = 0; b < B; ++b)
        prompts[b] = (int32_t)D->s[b].N;
    const size_t qb = (size_t)(Tq * hq * d) * 4, kvb = (size_t)sto.elems * 4;
    const size_t ib = (size_t)(hq * Rr * W) * 4, cb = (size_t)(hq * Rr) * 4;
    const size_t lb = (size_t)(hq * Tq) * 4, vsb = (size_t)(B * hkv * 2) * 4;
    stem_buffer *bq = vl_buffer(T, R, qb, q), *bk = vl_buffer(T, R, kvb, sto.k),
                *bv = vl_buffer(T, R, kvb, sto.v);
    stem_buffer *bo = vl_buffer(T, R, qb, NULL), *bi = vl_buffer(T, R, ib, NULL),
                *bc = vl_buffer(T, R, cb, NULL);
    stem_buffer *bl = o->want_lse ? vl_buffer(T, R, lb, NULL) : NULL;
    stem_buffer *bvo = o->want_vstats ? vl_buffer(T, R, vsb, NULL) : NULL;
    stem_buffer *bvi = o->vstats_in ? vl_buffer(T, R, vsb, o->vstats_in) : NULL;
    stem_buffer *bcu = vl_buffer(T, R, (size_t)(B + 1) * 4, cuq);
    stem_buffer *blen = vl_buffer(T, R, (size_t)B * 4, sto.lens);
    stem_buffer *bckv = o->kv_store == STEM_KV_PACKED ? vl_buffer(T, R, (size_t)(B + 1) * 4, sto.cu_kv)
                                                      : NULL;
    stem_buffer *btab = o->kv_store == STEM_KV_PAGED
                            ? vl_buffer(T, R, (size_t)(B * sto.cols) * 4, sto.table)
                            : NULL;
    stem_buffer *bpr = o->with_prompts ? vl_buffer(T, R, (size_t)B * 4, prompts) : NULL;
    const stem_tensor tq = vl_tensor(bq, STEM_DTYPE_F32, 1, hq, T_, d, Tq * hq * d, d, hq * d, 1);
    const stem_tensor to = vl_tensor(bo, STEM_DTYPE_F32, 1, hq, T_, d, Tq * hq * d, d, hq * d, 1);
    const stem_tensor tk = vl_store_tensor(bk, D, o, &sto), tv = vl_store_tensor(bv, D, o, &sto);
    const stem_tensor ti = vl_tensor(bi, STEM_DTYPE_I32, 1, hq, out->R, W, hq * Rr * W, Rr * W, W, 1);
    const stem_tensor tc = vl_tensor(bc, STEM_DTYPE_I32, 1, hq, out->R, 1, hq * Rr, Rr, 1, 1);
    const stem_tensor tcu = vl_row(bcu, B + 1), tlen = vl_row(blen, B);
    stem_tensor tl, tvo, tvi, tckv, ttab, tpr;
    stem_seqs seqs;
    stem_seqs_init(&seqs);
    seqs.batch = (int32_t)B;
    seqs.cu_seqlens_q = &tcu;
    if (o->kv_store != STEM_KV_PACKED)
        seqs.seqlens_kv = &tlen;
    if (bckv) {
        tckv = vl_row(bckv, B + 1);
        seqs.cu_seqlens_kv = &tckv;
        seqs.seqlens_kv = &tlen; /* optional there: given, and agreeing */
    }
    if (btab) {
        ttab = vl_tensor(btab, STEM_DTYPE_I32, 1, 1, B, sto.cols, B * sto.cols, B * sto.cols,
                         sto.cols, 1);
        seqs.block_table = &ttab;
    }
    if (bpr) {
        tpr = vl_row(bpr, B);
        seqs.prompt_lens = &tpr;
    }
    stem_call_io io;
    stem_call_io_init(&io);
    io.seqs = &seqs;
    io.index = &ti;
    io.count = &tc;
    if (bl) {
        tl = vl_tensor(bl, STEM_DTYPE_F32, 1, hq, T_, 1, hq * Tq, Tq, 1, 1);
        io.lse = &tl;
    }
    if (bvo) {
        tvo = stem_tensor_bhnd(bvo, VL_GUARD, STEM_DTYPE_F32, B, hkv, 1, 2);
        io.vstats_out = &tvo;
    }
    if (bvi) {
        tvi = stem_tensor_bhnd(bvi, VL_GUARD, STEM_DTYPE_F32, B, hkv, 1, 2);
        io.vstats_in = &tvi;
    }
    st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
    if (st == STEM_OK)
        st = stem_synchronize(T->dev->ctx);
    if (st == STEM_ERR_UNSUPPORTED) {
        vl_check_refusal(T, "stem_prefill_ex(varlen)");
        vl_untouched(bo, qb, NULL, "out");
        return st;
    }
    if (st != STEM_OK)
        fail_msg("stem_prefill_ex(varlen): %s: %s", stem_status_name(st), stem_last_error());
    float *img = res_alloc(R, qb);
    vl_read(bo, qb, img, "out");
    out->out = res_alloc(keep, qb);
    for (int64_t t = 0; t < T_; ++t)
        for (int64_t h = 0; h < hq; ++h)
            memcpy(out->out + (h * T_ + t) * d, img + (t * hq + h) * d, (size_t)d * 4);
    out->index = res_alloc(keep, ib);
    out->count = res_alloc(keep, cb);
    vl_read(bi, ib, out->index, "index");
    vl_read(bc, cb, out->count, "count");
    vl_read(bq, qb, NULL, "q");
    vl_read(bk, kvb, NULL, "k");
    vl_read(bv, kvb, NULL, "v");
    out->lse = out->vstats = NULL;
    if (bl) {
        out->lse = res_alloc(keep, lb);
        vl_read(bl, lb, out->lse, "lse");
    }
    if (bvo) {
        out->vstats = res_alloc(keep, vsb);
        vl_read(bvo, vsb, out->vstats, "vstats_out");
    }
    return STEM_OK;
}

static stem_status vl_call(conf_test *T, conf_res *keep, const vl_batch *D,
                           const stem_config *cfg, const vl_opts *o, vl_out *out)
{
    conf_res tmp;
    memset(&tmp, 0, sizeof tmp);
    const stem_status st = vl_call_in(T, &tmp, keep, D, cfg, o, out);
    res_release(&tmp);
    return st;
}

/* One sequence as a plain single-sequence call (BHND tensors, q_len = M,
 * kv_len = L, prompt_len = N): rows [rows][nk], out [Hq][M][d], lse [Hq][M]. */
typedef struct vl_single_out {
    int64_t rows, nk;
    float *out, *lse, *vstats;
    int32_t *index, *count;
} vl_single_out;

static void vl_single_in(conf_test *T, conf_res *R, conf_res *keep, const vl_batch *D,
                         int64_t b, const stem_config *cfg, const vl_opts *o, vl_single_out *so)
{
    const vl_seq *s = &D->s[b];
    const int64_t hq = D->hq, hkv = D->hkv, d = D->d, M = s->M, L = s->L, bs = cfg->block_size;
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.num_q_heads = hq, desc.num_kv_heads = hkv, desc.head_dim = d;
    desc.q_len = M, desc.kv_len = L, desc.prompt_len = o->with_prompts ? s->N : 0;
    desc.vstats_mode = o->vstats_mode;
    /* The varlen rule: a k_start override above the prompt's blocks = all dense. */
    stem_config sc = *cfg;
    const int64_t np = ((o->with_prompts && s->N ? s->N : L) + bs - 1) / bs;
    sc.k_start = sc.k_start > np ? (int32_t)np : sc.k_start;
    stem_plan *plan = NULL;
    if (stem_plan_create(T->dev->ctx, &desc, &sc, &plan) != STEM_OK)
        fail_msg("single call plan: %s", stem_last_error());
    res_add_plan(R, plan);
    so->nk = (L + bs - 1) / bs;
    so->rows = so->nk - (L - M) / bs;
    float *q = res_alloc(R, (size_t)(hq * M * d) * 4);
    for (int64_t h = 0; h < hq; ++h)
        memcpy(q + h * M * d, D->q[b] + (h * L + L - M) * d, (size_t)(M * d) * 4);
    const size_t qb = (size_t)(hq * M * d) * 4, kb = (size_t)(hkv * L * d) * 4;
    const size_t ib = (size_t)(hq * so->rows * so->nk) * 4, cb = (size_t)(hq * so->rows) * 4;
    stem_buffer *bq = vl_buffer(T, R, qb, q), *bk = vl_buffer(T, R, kb, D->k[b]),
                *bv = vl_buffer(T, R, kb, D->v[b]), *bo = vl_buffer(T, R, qb, NULL),
                *bi = vl_buffer(T, R, ib, NULL), *bc = vl_buffer(T, R, cb, NULL),
                *bl = vl_buffer(T, R, (size_t)(hq * M) * 4, NULL),
                *bvo = vl_buffer(T, R, (size_t)hkv * 8, NULL),
                *bvi = o->vstats_in ? vl_buffer(T, R, (size_t)hkv * 8, o->vstats_in + b * hkv * 2)
                                    : NULL;
    const stem_tensor tq = stem_tensor_bhnd(bq, VL_GUARD, STEM_DTYPE_F32, 1, hq, M, d);
    const stem_tensor tk = stem_tensor_bhnd(bk, VL_GUARD, STEM_DTYPE_F32, 1, hkv, L, d);
    const stem_tensor tv = stem_tensor_bhnd(bv, VL_GUARD, STEM_DTYPE_F32, 1, hkv, L, d);
    const stem_tensor to = stem_tensor_bhnd(bo, VL_GUARD, STEM_DTYPE_F32, 1, hq, M, d);
    const stem_tensor ti = stem_tensor_bhnd(bi, VL_GUARD, STEM_DTYPE_I32, 1, hq, so->rows, so->nk);
    const stem_tensor tc = stem_tensor_bhnd(bc, VL_GUARD, STEM_DTYPE_I32, 1, hq, so->rows, 1);
    const stem_tensor tl = stem_tensor_bhnd(bl, VL_GUARD, STEM_DTYPE_F32, 1, hq, M, 1);
    const stem_tensor tvo = stem_tensor_bhnd(bvo, VL_GUARD, STEM_DTYPE_F32, 1, hkv, 1, 2);
    stem_tensor tvi;
    stem_call_io io;
    stem_call_io_init(&io);
    io.index = &ti, io.count = &tc;
    if (o->want_lse)
        io.lse = &tl;
    if (o->want_vstats)
        io.vstats_out = &tvo;
    if (bvi) {
        tvi = stem_tensor_bhnd(bvi, VL_GUARD, STEM_DTYPE_F32, 1, hkv, 1, 2);
        io.vstats_in = &tvi;
    }
    stem_status st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
    if (st == STEM_OK)
        st = stem_synchronize(T->dev->ctx);
    if (st != STEM_OK)
        fail_msg("single call (M=%lld, L=%lld): %s", (long long)M, (long long)L,
                 stem_last_error());
    so->out = res_alloc(keep, qb);
    so->index = res_alloc(keep, ib);
    so->count = res_alloc(keep, cb);
    so->lse = res_alloc(keep, (size_t)(hq * M) * 4);
    so->vstats = res_alloc(keep, (size_t)hkv * 8);
    vl_read(bo, qb, so->out, "single out");
    vl_read(bi, ib, so->index, "single index");
    vl_read(bc, cb, so->count, "single count");
    vl_read(bl, (size_t)(hq * M) * 4, o->want_lse ? so->lse : NULL, "single lse");
    vl_read(bvo, (size_t)hkv * 8, o->want_vstats ? so->vstats : NULL, "single vstats");
}

static void vl_single(conf_test *T, conf_res *keep, const vl_batch *D, int64_t b,
                      const stem_config *cfg, const vl_opts *o, vl_single_out *so)
{
    conf_res tmp;
    memset(&tmp, 0, sizeof tmp);
    vl_single_in(T, &tmp, keep, D, b, cfg, o, so);
    res_release(&tmp);
}

/* ------------------------------------------------------------ checks */

/* Two varlen calls of the same batch agree bit for bit (C5). */
static void vl_same(const vl_batch *D, const vl_out *a, const vl_out *b, const char *what)
{
    const int64_t hq = D->hq, d = D->d;
    if (memcmp(a->count, b->count, (size_t)(hq * a->R) * 4) != 0)
        fail_msg("%s: block counts differ", what);
    for (int64_t h = 0; h < hq; ++h)
        for (int64_t bb = 0; bb < D->B; ++bb)
            for (int64_t r = a->row_ptr[bb]; r < a->row_ptr[bb + 1]; ++r)
                if (memcmp(a->index + (h * a->R + r) * a->W, b->index + (h * a->R + r) * a->W,
                           (size_t)a->count[h * a->R + r] * 4) != 0)
                    fail_msg("%s: lists of head %lld row %lld differ", what, (long long)h,
                             (long long)r);
    for (int64_t i = 0; i < hq * a->T * d; ++i)
        if (memcmp(&a->out[i], &b->out[i], 4) != 0)
            fail_msg("%s: out element %lld: %.9g vs %.9g", what, (long long)i, (double)a->out[i],
                     (double)b->out[i]);
    if (a->lse && b->lse && memcmp(a->lse, b->lse, (size_t)(hq * a->T) * 4) != 0)
        fail_msg("%s: lse differs", what);
}

/* Rows well formed (C7) and padded with -1 up to the sequence's key blocks. */
static void vl_invariants(const vl_batch *D, const stem_config *cfg, const vl_out *o,
                          const char *what)
{
    const int64_t bs = cfg->block_size;
    for (int64_t h = 0; h < D->hq; ++h)
        for (int64_t b = 0; b < D->B; ++b) {
            const vl_seq *s = &D->s[b];
            const int64_t nk = (s->L + bs - 1) / bs, row0 = (s->L - s->M) / bs;
            for (int64_t r = 0; r < vl_rows(s, bs); ++r) {
                const int64_t I = row0 + r, rr = o->row_ptr[b] + r;
                const int32_t c = o->count[h * o->R + rr];
                const int32_t *list = o->index + (h * o->R + rr) * o->W;
                if (c < 1 || c > I + 1)
                    fail_msg("%s: seq %lld row %lld: count %d", what, (long long)b, (long long)I,
                             c);
                int has_diag = 0;
                for (int32_t j = 0; j < c; ++j) {
                    if (list[j] < 0 || list[j] > I || (j > 0 && list[j] <= list[j - 1]))
                        fail_msg("%s: seq %lld row %lld: entry %d = %d", what, (long long)b,
                                 (long long)I, j, list[j]);
                    has_diag |= list[j] == I;
                }
                for (int64_t j = c; j < nk; ++j)
                    if (list[j] != -1)
                        fail_msg("%s: seq %lld row %lld: padding %lld = %d", what, (long long)b,
                                 (long long)I, (long long)j, list[j]);
                if (!has_diag)
                    fail_msg("%s: seq %lld row %lld misses its diagonal", what, (long long)b,
                             (long long)I);
            }
        }
}

/* Against the shared reference: selection exact, outputs and lse within the
 * f32 allowance of the main suite (logit rounding grows with |q| max|k|,
 * the sum with the visible keys). */
static void vl_compare_ref(conf_res *R, const vl_batch *D, const stem_config *cfg,
                           const vl_opts *o, const vl_out *out, const char *what)
{
    const int64_t B = D->B, hq = D->hq, hkv = D->hkv, d = D->d, T_ = out->T;
    int64_t cu[VL_MAXB + 1], lens[VL_MAXB], prompts[VL_MAXB];
    vl_total_q(D, cu);
    for (int64_t b = 0; b < B; ++b)
        lens[b] = D->s[b].L, prompts[b] = o->with_prompts ? D->s[b].N : 0;
    /* The reference reads the call's own K/V store (garbage slots included)
     * through its literal addressing rule, in its layouts: BHND [B][Hkv][rows][d],
     * PACKED [Hkv][rows][d], PAGED [pages][Hkv][page][d]. */
    double *q = res_alloc(R, (size_t)(hq * (T_ ? T_ : 1) * d) * 8);
    for (int64_t b = 0; b < B; ++b) {
        const int64_t M = D->s[b].M, L = D->s[b].L;
        for (int64_t h = 0; h < hq; ++h)
            for (int64_t i = 0; i < M * d; ++i)
                q[(h * T_ + cu[b]) * d + i] = D->q[b][(h * L + L - M) * d + i];
    }
    vl_store st;
    vl_store_make(R, D, o, &st);
    double *k = res_alloc(R, (size_t)st.elems * 8), *v = res_alloc(R, (size_t)st.elems * 8);
    const int64_t ps = o->page_size, rows = st.rows;
    for (int64_t x = 0; x < (o->kv_store == STEM_KV_BHND ? B : rows); ++x)
        for (int64_t h = 0; h < hkv; ++h)
            for (int64_t y = 0; y < (o->kv_store == STEM_KV_BHND ? rows
                                     : o->kv_store == STEM_KV_PAGED ? ps : 1); ++y) {
                int64_t src, dst;
                if (o->kv_store == STEM_KV_BHND) { /* x = entry, y = row */
                    src = dst = ((x * hkv + h) * rows + y) * d;
                } else if (o->kv_store == STEM_KV_PACKED) { /* x = row */
                    src = (x * hkv + h) * d;
                    dst = (h * rows + x) * d;
                } else { /* x = page, y = slot */
                    src = o->hnd ? ((x * hkv + h) * ps + y) * d : ((x * ps + y) * hkv + h) * d;
                    dst = ((x * hkv + h) * ps + y) * d;
                }
                for (int64_t c = 0; c < d; ++c) {
                    k[dst + c] = st.k[src + c];
                    v[dst + c] = st.v[src + c];
                }
            }
    int64_t cukv[VL_MAXB + 1];
    for (int64_t b = 0; b <= B; ++b)
        cukv[b] = st.cu_kv[b];
    double *vs = NULL;
    if (o->vstats_in) {
        vs = res_alloc(R, (size_t)(B * hkv * 2) * 8);
        for (int64_t i = 0; i < B * hkv * 2; ++i)
            vs[i] = o->vstats_in[i];
    }
    stem_ref_seqs s;
    memset(&s, 0, sizeof s);
    s.batch = B, s.hq = hq, s.hkv = hkv, s.head_dim = d, s.scale = 1.0 / sqrt((double)d);
    s.layer_index = -1, s.cu_q = cu, s.kv_len = lens, s.prompt_len = prompts, s.q = q;
    s.kv_store = o->kv_store, s.k = k, s.v = v, s.kv_rows = rows, s.vstats = vs;
    s.cu_kv = cukv, s.page_size = ps, s.table_cols = st.cols, s.block_table = st.table;
    const int64_t Rr = out->R ? out->R : 1;
    int32_t *index = res_alloc(R, (size_t)(hq * Rr * out->W) * 4);
    int32_t *count = res_alloc(R, (size_t)(hq * Rr) * 4);
    double *ro = res_alloc(R, (size_t)(hq * (T_ ? T_ : 1) * d) * 8);
    double *rl = res_alloc(R, (size_t)(hq * (T_ ? T_ : 1)) * 8);
    double *rv = res_alloc(R, (size_t)(B * hkv * 2) * 8);
    stem_ref_seqs_prefill(&s, cfg, out->W, NULL, index, count, ro, rl, rv);
    for (int64_t i = 0; i < hq * out->R; ++i)
        if (out->count[i] != count[i] ||
            memcmp(out->index + i * out->W, index + i * out->W, (size_t)count[i] * 4) != 0)
            fail_msg("%s: selection row %lld differs from the reference (%d vs %d blocks)", what,
                     (long long)i, out->count[i], count[i]);
    const double U = 0x1.0p-24;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t M = D->s[b].M, L = D->s[b].L;
        double kmax = 0.0, vmax = 0.0;
        for (int64_t i = 0; i < hkv * L; ++i) {
            double kn = 0.0;
            for (int64_t c = 0; c < d; ++c) {
                kn += (double)D->k[b][i * d + c] * D->k[b][i * d + c];
                vmax = fabs(D->v[b][i * d + c]) > vmax ? fabs(D->v[b][i * d + c]) : vmax;
            }
            kmax = kn > kmax ? kn : kmax;
        }
        for (int64_t h = 0; h < hq; ++h)
            for (int64_t i = 0; i < M; ++i) {
                const int64_t row = h * T_ + cu[b] + i;
                double qn = 0.0;
                for (int64_t c = 0; c < d; ++c)
                    qn += q[row * d + c] * q[row * d + c];
                const double slack = 4.0 * U * sqrt((double)d) * sqrt(qn * kmax / (double)d) +
                                     8.0 * U * sqrt((double)(L - M + i) + 2.0);
                for (int64_t c = 0; c < d; ++c) {
                    const double a = out->out[row * d + c], r = ro[row * d + c];
                    if (!(fabs(a - r) <= 2e-5 * (1.0 + fabs(r)) + vmax * slack))
                        fail_msg("%s: seq %lld head %lld query %lld: out %.9g, reference %.9g",
                                 what, (long long)b, (long long)h, (long long)i, a, r);
                }
                if (out->lse && !(fabs(out->lse[row] - rl[row]) <= 2e-5 * (1.0 + fabs(rl[row])) + slack))
                    fail_msg("%s: seq %lld lse %.9g, reference %.9g", what, (long long)b,
                             (double)out->lse[row], rl[row]);
            }
        if (out->vstats && M > 0)
            for (int64_t i = b * hkv * 2; i < (b + 1) * hkv * 2; ++i)
                if (!(fabs(out->vstats[i] - rv[i]) <= 1e-5 * (1.0 + fabs(rv[i]))))
                    fail_msg("%s: seq %lld vstats %.9g, reference %.9g", what, (long long)b,
                             (double)out->vstats[i], rv[i]);
    }
}

/* ------------------------------------------------------------------ C5 */

/* a = page size, b = 1: HND pages. Two sequences (one prefix-cached with an
 * unaligned prefix, one fresh) as KV_PACKED, then as KV_PAGED. */
static void paged_vs_packed(conf_test *T, const conf_misuse *m)
{
    static const vl_seq seqs[3] = {{300, 1337, 0}, {517, 517, 0}, {1, 700, 0}};
    vl_batch D;
    vl_batch_make(T, &D, 4, 2, 32, seqs, 3, 515);
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.block_size = 64, cfg.stride = 8, cfg.k_start = 6, cfg.sink_blocks = 2;
    cfg.local_blocks = 2;
    vl_opts o;
    memset(&o, 0, sizeof o);
    o.kv_store = STEM_KV_PACKED;
    o.want_lse = 1;
    vl_out packed, paged;
    if (vl_call(T, &T->res, &D, &cfg, &o, &packed) != STEM_OK)
        return; /* refusal checked */
    vl_invariants(&D, &cfg, &packed, "packed");
    if (m->a == 16 && m->b == 1) /* once: the packed call against the reference */
        vl_compare_ref(&T->res, &D, &cfg, &o, &packed, "packed vs reference");
    o.kv_store = STEM_KV_PAGED;
    o.page_size = m->a;
    o.hnd = m->b;
    o.shuffle_seed = 977u + (uint64_t)m->a;
    if (vl_call(T, &T->res, &D, &cfg, &o, &paged) != STEM_OK)
        return;
    char what[64];
    snprintf(what, sizeof what, "paged (page %d, %s) vs packed", m->a, m->b ? "HND" : "NHD");
    vl_same(&D, &packed, &paged, what);
    if ((m->a == 16 && m->b == 1) || (m->a == 48 && m->b == 0))
        vl_compare_ref(&T->res, &D, &cfg, &o, &paged, "paged vs reference");
}

/* ------------------------------------------------------------------ C6 */

/* a = 0: VISIBLE statistics, KV_PACKED; a = 1: PROVIDED statistics, per-
 * sequence KV_BHND keys and prompt lengths above L; a = 2: KV_PAGED, page
 * 16. A shuffled batch of (M, L): each sequence = its own single call, the
 * batch = the reference. */
static void varlen_vs_single(conf_test *T, const conf_misuse *m)
{
    static const vl_seq mix[9] = {{127, 300, 0}, {0, 0, 0},      {1, 1900, 0},
                                  {1000, 1000, 0}, {17, 17, 0},  {129, 1024, 0},
                                  {1, 1, 0},      {128, 128, 0}, {300, 1900, 0}};
    vl_seq seqs[9];
    memcpy(seqs, mix, sizeof seqs);
    if (m->a == 1)
        for (int i = 0; i < 9; ++i)
            seqs[i].N = seqs[i].L + (i % 3 == 0 ? 0 : 640 + 64 * i); /* 0 where N = L */
    vl_batch D;
    vl_batch_make(T, &D, 4, 2, 16, seqs, 9, 6006 + (uint64_t)m->a);
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.block_size = 64, cfg.stride = 8, cfg.k_start = 5, cfg.sink_blocks = 2;
    cfg.local_blocks = 2;
    vl_opts o;
    memset(&o, 0, sizeof o);
    o.kv_store = m->a == 0 ? STEM_KV_PACKED : m->a == 1 ? STEM_KV_BHND : STEM_KV_PAGED;
    o.page_size = m->a == 2 ? 16 : 0;
    o.shuffle_seed = 31;
    o.want_lse = 1;
    o.want_vstats = 1;
    o.with_prompts = m->a == 1;
    float vs[9 * 2 * 2];
    if (m->a == 1) {
        for (int i = 0; i < 9 * 2; ++i) {
            vs[2 * i] = -0.5f + 0.1f * (float)(i % 5);
            vs[2 * i + 1] = 0.5f + 0.05f * (float)(i % 7);
        }
        o.vstats_mode = STEM_VSTATS_PROVIDED;
        o.vstats_in = vs;
    }
    vl_out out;
    stem_status st = vl_call(T, &T->res, &D, &cfg, &o, &out);
    if (st == STEM_ERR_UNSUPPORTED) /* refusal checked; retry without the optional outputs */
        return;
    vl_invariants(&D, &cfg, &out, "varlen");
    vl_compare_ref(&T->res, &D, &cfg, &o, &out, "varlen vs reference");
    /* Outputs of a skipped sequence: none exist; rows of the others equal
     * their own single-sequence calls bit for bit. */
    for (int64_t b = 0; b < D.B; ++b) {
        if (D.s[b].M == 0)
            continue;
        conf_res keep;
        memset(&keep, 0, sizeof keep);
        vl_single_out so;
        vl_single(T, &keep, &D, b, &cfg, &o, &so);
        char what[96];
        snprintf(what, sizeof what, "sequence %lld (M=%lld, L=%lld)", (long long)b,
                 (long long)D.s[b].M, (long long)D.s[b].L);
        int64_t cu[VL_MAXB + 1];
        vl_total_q(&D, cu);
        for (int64_t h = 0; h < D.hq; ++h) {
            for (int64_t r = 0; r < so.rows; ++r) {
                const int64_t rr = out.row_ptr[b] + r;
                const int32_t c = so.count[h * so.rows + r];
                if (out.count[h * out.R + rr] != c ||
                    memcmp(out.index + (h * out.R + rr) * out.W, so.index + (h * so.rows + r) * so.nk,
                           (size_t)c * 4) != 0)
                    fail_msg("%s: head %lld row %lld differs from the single call", what,
                             (long long)h, (long long)r);
            }
            const float *a = out.out + (h * out.T + cu[b]) * D.d;
            const float *sgl = so.out + h * D.s[b].M * D.d;
            if (memcmp(a, sgl, (size_t)(D.s[b].M * D.d) * 4) != 0)
                fail_msg("%s: head %lld outputs differ from the single call", what, (long long)h);
            if (memcmp(out.lse + h * out.T + cu[b], so.lse + h * D.s[b].M,
                       (size_t)D.s[b].M * 4) != 0)
                fail_msg("%s: head %lld lse differs from the single call", what, (long long)h);
        }
        if (memcmp(out.vstats + b * D.hkv * 2, so.vstats, (size_t)D.hkv * 8) != 0)
            fail_msg("%s: vstats_out differs from the single call", what);
        res_release(&keep);
    }
}

/* ----------------------------------------------------------------- C12 */

/* CPU: one sequence of L = 2^20 keys (65536 pages of 16, shuffled) with 100
 * queries at an unaligned offset, and a short second sequence; lists at
 * their width bound (8192 key blocks); against the reference. */
static void size_edges(conf_test *T, const conf_misuse *m)
{
    (void)m;
    if (!vl_is_cpu(T)) {
        T->status = CONF_SKIPPED;
        return;
    }
    static const vl_seq seqs[2] = {{100, (int64_t)1 << 20, 0}, {33, 200, 0}};
    vl_batch D;
    vl_batch_make(T, &D, 2, 1, 8, seqs, 2, 12);
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.stride = 16;
    vl_opts o;
    memset(&o, 0, sizeof o);
    o.kv_store = STEM_KV_PAGED;
    o.page_size = 16;
    o.shuffle_seed = 2024;
    o.want_lse = 1;
    vl_out out;
    if (vl_call(T, &T->res, &D, &cfg, &o, &out) != STEM_OK)
        return;
    if (out.W != 8192)
        fail_msg("width %lld", (long long)out.W);
    vl_invariants(&D, &cfg, &out, "2^20 keys");
    vl_compare_ref(&T->res, &D, &cfg, &o, &out, "2^20 keys vs reference");
}

/* ----------------------------------------------------------------- C13 */

/* a = prefix P: one chunked call, its lists exported as local tiles; every
 * tile = the union of the absolute rows its queries fall in (so a superset
 * of each, and exactly its row when P mod B = 0). */
static void local_mask_export(conf_test *T, const conf_misuse *m)
{
    const vl_seq seq = {700 - m->a, 700, 0};
    vl_batch D;
    vl_batch_make(T, &D, 2, 1, 16, &seq, 1, 1313);
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.block_size = 32, cfg.stride = 4, cfg.k_start = 4;
    vl_opts o;
    memset(&o, 0, sizeof o);
    vl_single_out so;
    vl_single(T, &T->res, &D, 0, &cfg, &o, &so);
    const int64_t M = seq.M, L = seq.L, bs = 32, P = L - M, tiles = (M + bs - 1) / bs;
    uint8_t *mask = res_alloc(&T->res, (size_t)(2 * tiles * so.nk) + 1);
    mask[2 * tiles * so.nk] = 0x5A; /* canary past the end */
    if (stem_selection_to_local_mask(M, L, 32, 2, so.index, so.count, mask) != STEM_OK)
        fail_msg("stem_selection_to_local_mask: %s", stem_last_error());
    if (mask[2 * tiles * so.nk] != 0x5A)
        fail_msg("mask written past its end");
    for (int64_t h = 0; h < 2; ++h)
        for (int64_t t = 0; t < tiles; ++t) {
            const int64_t first = (P + t * bs) / bs;
            const int64_t last = (P + (t + 1 < tiles ? (t + 1) * bs : M) - 1) / bs;
            for (int64_t J = 0; J < so.nk; ++J) {
                int want = 0;
                for (int64_t I = first; I <= last; ++I) {
                    const int64_t r = I - P / bs;
                    for (int32_t j = 0; j < so.count[h * so.rows + r]; ++j)
                        want |= so.index[(h * so.rows + r) * so.nk + j] == J;
                }
                if (mask[(h * tiles + t) * so.nk + J] != want)
                    fail_msg("P=%lld head %lld tile %lld block %lld: mask %d, rows' union %d",
                             (long long)P, (long long)h, (long long)t, (long long)J,
                             mask[(h * tiles + t) * so.nk + J], want);
            }
            if (P % bs == 0 && last != first)
                fail_msg("aligned tile spans two rows");
        }
    /* A bad list is refused before anything is written. */
    so.count[0] = (int32_t)so.nk + 1;
    memset(mask, 0x77, (size_t)(2 * tiles * so.nk));
    if (stem_selection_to_local_mask(M, L, 32, 2, so.index, so.count, mask) !=
            STEM_ERR_INVALID_ARGUMENT ||
        !stem_last_error()[0])
        fail_msg("a count past nk was not refused with a message");
    for (int64_t i = 0; i < 2 * tiles * so.nk; ++i)
        if (mask[i] != 0x77)
            fail_msg("refused export wrote the mask");
}

/* ---------------------------------------------------------------- misuse */

enum {
    VM_NO_SEQS,          /* varlen plan, io without seqs */
    VM_PREFILL,          /* varlen plan through stem_prefill */
    VM_SEQS_ON_BHND,     /* seqs given to a plain plan */
    VM_CU_UNSORTED,      /* cu_seqlens_q decreasing */
    VM_CU_FIRST,         /* cu_seqlens_q[0] != 0 */
    VM_CU_TOTAL,         /* cu_seqlens_q[B] != rows of q */
    VM_Q_OVER_KV,        /* M_b > L_b */
    VM_KV_OVER_PLAN,     /* L_b > desc.kv_len */
    VM_PROMPT_BELOW,     /* prompt_lens[b] below L_b */
    VM_PACKED_PAST,      /* cu_seqlens_kv past the rows of k */
    VM_BHND_PAST,        /* seqlens_kv past the rows of k (KV_BHND) */
    VM_PAGE_RANGE,       /* a page id >= num_pages */
    VM_PAGE_NEG,         /* a negative page id */
    VM_TABLE_NARROW,     /* too few block_table columns */
    VM_NO_TABLE,         /* PAGED without block_table */
    VM_LEN_DISAGREE,     /* seqlens_kv disagrees with cu_seqlens_kv */
    VM_BATCH_OVER,       /* seqs->batch > desc.batch */
    VM_LEN_DTYPE,        /* cu_seqlens_q in f32 */
    VM_POOL_STRIDE,      /* page pool with strides[3] != 1 */
    VM_CU_KV_ON_PAGED,   /* cu_seqlens_kv with a paged store */
    VM_PLAN_PAGED_BHND,  /* plan: PAGED with q_layout BHND */
    VM_PLAN_PAGE0,       /* plan: PAGED with page_size 0 */
    VM_PLAN_PROMPT,      /* plan: varlen with desc.prompt_len */
    VM_PLAN_LAYOUT,      /* plan: q_layout outside the enum */
    VM_N
};
static const char *const vm_name[VM_N] = {
    "no_seqs",        "prefill_without_ex", "seqs_on_plain_plan", "cu_seqlens_unsorted",
    "cu_seqlens_first", "cu_seqlens_total",  "q_over_kv",          "kv_over_plan",
    "prompt_below_visible", "packed_offsets_past_cache", "bhnd_lengths_past_cache",
    "page_out_of_range", "page_negative",   "table_too_narrow",   "paged_without_table",
    "seqlens_disagree", "batch_over_plan",  "lengths_dtype",      "pool_stride",
    "cu_seqlens_kv_on_paged", "plan_paged_with_bhnd_q", "plan_page_size_0",
    "plan_prompt_len", "plan_q_layout_unknown"};

static void misuse_varlen(conf_test *T, const conf_misuse *m)
{
    enum { HQ = 2, HKV = 1, DH = 16, BLK = 16, PS = 16, B = 2, TQ = 40, LMAX = 100 };
    enum { NPAGES = 16, TK = 150, W = (LMAX + BLK - 1) / BLK };
    const int paged = m->a >= VM_PAGE_RANGE && m->a <= VM_NO_TABLE ? 1
                      : m->a == VM_POOL_STRIDE || m->a == VM_CU_KV_ON_PAGED ? 1 : 0;
    const int bhnd_kv = m->a == VM_BHND_PAST;
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.block_size = BLK, cfg.stride = 4;
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = B, desc.num_q_heads = HQ, desc.num_kv_heads = HKV, desc.head_dim = DH;
    desc.q_len = 30, desc.kv_len = LMAX;
    desc.q_layout = STEM_Q_PACKED;
    desc.kv_store = paged ? STEM_KV_PAGED : bhnd_kv ? STEM_KV_BHND : STEM_KV_PACKED;
    desc.page_size = paged ? PS : 0;
    switch (m->a) {
    case VM_SEQS_ON_BHND:
        desc.q_layout = STEM_Q_BHND, desc.kv_store = STEM_KV_BHND, desc.batch = 1;
        desc.q_len = TQ, desc.kv_len = LMAX;
        break;
    case VM_PLAN_PAGED_BHND:
        desc.q_layout = STEM_Q_BHND, desc.kv_store = STEM_KV_PAGED, desc.page_size = PS;
        break;
    case VM_PLAN_PAGE0: desc.kv_store = STEM_KV_PAGED, desc.page_size = 0; break;
    case VM_PLAN_PROMPT: desc.prompt_len = 4000; break;
    case VM_PLAN_LAYOUT: desc.q_layout = 9; break;
    default: break;
    }
    stem_plan *plan = NULL;
    stem_status st = stem_plan_create(T->dev->ctx, &desc, &cfg, &plan);
    if (m->a >= VM_PLAN_PAGED_BHND) {
        if (st == STEM_OK)
            res_add_plan(&T->res, plan);
        if (st != STEM_ERR_INVALID_ARGUMENT || !stem_last_error()[0])
            fail_msg("%s: stem_plan_create returned %s (%s), expected STEM_ERR_INVALID_ARGUMENT",
                     vm_name[m->a], stem_status_name(st), stem_last_error());
        return;
    }
    if (st == STEM_ERR_UNSUPPORTED) {
        vl_check_refusal(T, vm_name[m->a]);
        return;
    }
    if (st != STEM_OK)
        fail_msg("%s: stem_plan_create: %s", vm_name[m->a], stem_last_error());
    res_add_plan(&T->res, plan);
    conf_res *R = &T->res;
    /* Two sequences: (M, L) = (10, 60) and (30, 100); queries packed [40][Hq][d]. */
    int32_t cuq[3] = {0, 10, TQ}, lens[2] = {60, 100}, cukv[3] = {0, 60, 160}, prom[2] = {0, 0};
    int32_t table[B * 8];
    for (int i = 0; i < B * 8; ++i)
        table[i] = i % NPAGES;
    switch (m->a) {
    case VM_CU_UNSORTED: cuq[1] = 25, cuq[2] = 20; break;
    case VM_CU_FIRST: cuq[0] = 1; break;
    case VM_CU_TOTAL: cuq[2] = TQ - 1; break;
    case VM_Q_OVER_KV: lens[0] = 9, cukv[1] = 9, cukv[2] = 109; break;
    case VM_KV_OVER_PLAN: lens[1] = LMAX + 1, cukv[2] = 60 + LMAX + 1; break;
    case VM_PROMPT_BELOW: prom[1] = 99; break;
    case VM_PACKED_PAST: cukv[2] = TK + 1, lens[1] = TK + 1 - 60; break;
    case VM_BHND_PAST: lens[1] = LMAX; break; /* k has only 90 rows per entry */
    case VM_PAGE_RANGE: table[8 + 6] = NPAGES; break;
    case VM_PAGE_NEG: table[1] = -1; break;
    case VM_LEN_DISAGREE: lens[0] = 59; break;
    default: break;
    }
    float *q = res_alloc(R, (size_t)TQ * HQ * DH * 4);
    for (int i = 0; i < TQ * HQ * DH; ++i)
        q[i] = (float)((i * 37) % 11) * 0.1f;
    const size_t qb = (size_t)TQ * HQ * DH * 4;
    const int64_t krows = bhnd_kv ? 90 : TK;
    const size_t kb = paged ? (size_t)NPAGES * PS * HKV * DH * 4 * 2
                            : (size_t)(bhnd_kv ? B : 1) * krows * HKV * DH * 4;
    float *kv = res_alloc(R, kb);
    for (size_t i = 0; i < kb / 4; ++i)
        kv[i] = (float)(i % 13) * 0.05f;
    stem_buffer *bq = vl_buffer(T, R, qb, q), *bk = vl_buffer(T, R, kb, kv),
                *bv = vl_buffer(T, R, kb, kv), *bo = vl_buffer(T, R, qb, NULL);
    const int64_t rows = 64; /* room for any row count the cases produce */
    stem_buffer *bi = vl_buffer(T, R, (size_t)HQ * rows * W * 4, NULL),
                *bc = vl_buffer(T, R, (size_t)HQ * rows * 4, NULL),
                *bl = vl_buffer(T, R, (size_t)HQ * TQ * 4, NULL);
    stem_buffer *bcu = vl_buffer(T, R, sizeof cuq, cuq), *blen = vl_buffer(T, R, sizeof lens, lens),
                *bckv = vl_buffer(T, R, sizeof cukv, cukv), *bpr = vl_buffer(T, R, sizeof prom, prom),
                *btab = vl_buffer(T, R, sizeof table, table);
    const int narrow = m->a == VM_TABLE_NARROW;
    const stem_tensor tq = vl_tensor(bq, STEM_DTYPE_F32, 1, HQ, TQ, DH, TQ * HQ * DH, DH, HQ * DH, 1);
    const stem_tensor to = vl_tensor(bo, STEM_DTYPE_F32, 1, HQ, TQ, DH, TQ * HQ * DH, DH, HQ * DH, 1);
    stem_tensor tk, tv;
    if (paged && m->a == VM_POOL_STRIDE)
        tk = vl_tensor(bk, STEM_DTYPE_F32, NPAGES, HKV, PS, DH, PS * HKV * DH * 2, DH * 2,
                       HKV * DH * 2, 2);
    else if (paged)
        tk = vl_tensor(bk, STEM_DTYPE_F32, NPAGES, HKV, PS, DH, PS * HKV * DH, DH, HKV * DH, 1);
    else if (bhnd_kv)
        tk = vl_tensor(bk, STEM_DTYPE_F32, B, HKV, krows, DH, HKV * krows * DH, krows * DH, DH, 1);
    else
        tk = vl_tensor(bk, STEM_DTYPE_F32, 1, HKV, krows, DH, krows * HKV * DH, DH, HKV * DH, 1);
    tv = tk;
    tv.buffer = bv;
    /* Rows of the valid geometry: (10, 60) -> 4 - 3 = 1... computed like the library. */
    int64_t R_ = 0;
    for (int b = 0; b < B; ++b) {
        const int64_t M = cuq[b + 1] - cuq[b], L = lens[b];
        if (M > 0 && L >= M && L > 0)
            R_ += (L + BLK - 1) / BLK - (L - M) / BLK;
    }
    if (R_ < 1 || R_ > rows)
        R_ = 1;
    const stem_tensor ti = vl_tensor(bi, STEM_DTYPE_I32, 1, HQ, R_, W, HQ * rows * W, rows * W, W, 1);
    const stem_tensor tc = vl_tensor(bc, STEM_DTYPE_I32, 1, HQ, R_, 1, HQ * rows, rows, 1, 1);
    const stem_tensor tl = vl_tensor(bl, STEM_DTYPE_F32, 1, HQ, TQ, 1, HQ * TQ, TQ, 1, 1);
    stem_tensor tcu = vl_row(bcu, 3), tlen = vl_row(blen, 2), tckv = vl_row(bckv, 3),
                tpr = vl_row(bpr, 2);
    const stem_tensor ttab = vl_tensor(btab, STEM_DTYPE_I32, 1, 1, B, narrow ? 2 : 8, 16, 16, 8, 1);
    if (m->a == VM_LEN_DTYPE)
        tcu.dtype = STEM_DTYPE_F32;
    stem_seqs seqs;
    stem_seqs_init(&seqs);
    seqs.batch = m->a == VM_BATCH_OVER ? 3 : B;
    seqs.cu_seqlens_q = &tcu;
    seqs.prompt_lens = &tpr;
    if (paged || bhnd_kv) {
        seqs.seqlens_kv = &tlen;
    } else {
        seqs.cu_seqlens_kv = &tckv;
        if (m->a == VM_LEN_DISAGREE)
            seqs.seqlens_kv = &tlen;
    }
    if (paged && m->a != VM_NO_TABLE)
        seqs.block_table = &ttab;
    if (m->a == VM_CU_KV_ON_PAGED)
        seqs.cu_seqlens_kv = &tckv;
    stem_call_io io;
    stem_call_io_init(&io);
    io.index = &ti, io.count = &tc, io.lse = &tl;
    io.seqs = &seqs;
    switch (m->a) {
    case VM_NO_SEQS:
        io.seqs = NULL;
        st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
        break;
    case VM_PREFILL: st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, &ti, &tc); break;
    case VM_SEQS_ON_BHND: {
        const stem_tensor pq = stem_tensor_bhnd(bq, VL_GUARD, STEM_DTYPE_F32, 1, HQ, TQ, DH);
        const stem_tensor po = stem_tensor_bhnd(bo, VL_GUARD, STEM_DTYPE_F32, 1, HQ, TQ, DH);
        const stem_tensor pk = stem_tensor_bhnd(bk, VL_GUARD, STEM_DTYPE_F32, 1, HKV, LMAX, DH);
        const stem_tensor pv = stem_tensor_bhnd(bv, VL_GUARD, STEM_DTYPE_F32, 1, HKV, LMAX, DH);
        io.index = io.count = io.lse = NULL;
        st = stem_prefill_ex(plan, &pq, &pk, &pv, &po, &io);
        break;
    }
    default: st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io); break;
    }
    if (st == STEM_OK)
        (void)stem_synchronize(T->dev->ctx);
    if (st != STEM_ERR_INVALID_ARGUMENT)
        fail_msg("%s: returned %s, expected STEM_ERR_INVALID_ARGUMENT", vm_name[m->a],
                 stem_status_name(st));
    if (!stem_last_error()[0])
        fail_msg("%s: no message", vm_name[m->a]);
    vl_untouched(bo, qb, NULL, "out");
    vl_untouched(bi, (size_t)HQ * rows * W * 4, NULL, "index");
    vl_untouched(bc, (size_t)HQ * rows * 4, NULL, "count");
    vl_untouched(bl, (size_t)HQ * TQ * 4, NULL, "lse");
    vl_untouched(bk, kb, kv, "k");
    vl_untouched(btab, sizeof table, table, "block_table");
}

/* Random geometry, valid or not: the library's verdict must match the
 * documented rules (docs/semantics.md section 9), a refusal must write
 * nothing, and an accepted call must fill every query's output. */
static void random_geometry(conf_test *T, const conf_misuse *m)
{
    (void)m;
    enum { HQ = 2, DH = 16, MB = 3, QB = 24, LB = 100, LK = 90, TK = 200, PS = 16, PAGES = 12,
           COLS = 8, TMAX = 3 * 30 };
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.block_size = 16, cfg.stride = 4, cfg.k_start = 2;
    uint64_t seed = 0x5EEDu + (uint64_t)T->dev->info.backend;
    conf_res *R = &T->res;
    stem_plan *plans[3] = {NULL, NULL, NULL};
    for (int store = 0; store < 3; ++store) {
        stem_attention_desc desc;
        stem_attention_desc_init(&desc);
        desc.batch = MB, desc.num_q_heads = HQ, desc.num_kv_heads = 1, desc.head_dim = DH;
        desc.q_len = QB, desc.kv_len = LB, desc.q_layout = STEM_Q_PACKED;
        desc.kv_store = store, desc.page_size = store == STEM_KV_PAGED ? PS : 0;
        const stem_status st = stem_plan_create(T->dev->ctx, &desc, &cfg, &plans[store]);
        if (st == STEM_ERR_UNSUPPORTED) {
            vl_check_refusal(T, "random geometry plan");
            return;
        }
        if (st != STEM_OK)
            fail_msg("random geometry plan: %s", stem_last_error());
        res_add_plan(R, plans[store]);
    }
    const size_t qb = (size_t)TMAX * HQ * DH * 4;
    const size_t kvb = (size_t)(MB * LK > TK ? MB * LK : TK) * DH * 4 > (size_t)PAGES * PS * DH * 4
                           ? (size_t)(MB * LK > TK ? MB * LK : TK) * DH * 4
                           : (size_t)PAGES * PS * DH * 4;
    float *kv = res_alloc(R, kvb), *q = res_alloc(R, qb);
    for (size_t i = 0; i < kvb / 4; ++i)
        kv[i] = (float)((int)(i % 17) - 8) * 0.125f;
    for (size_t i = 0; i < qb / 4; ++i)
        q[i] = (float)((int)(i % 13) - 6) * 0.25f;
    stem_buffer *bq = vl_buffer(T, R, qb, q), *bk = vl_buffer(T, R, kvb, kv),
                *bv = vl_buffer(T, R, kvb, kv), *bo = vl_buffer(T, R, qb, NULL),
                *bl = vl_buffer(T, R, (size_t)HQ * TMAX * 4, NULL);
    stem_buffer *bcu = vl_buffer(T, R, 16, NULL), *bcuk = vl_buffer(T, R, 16, NULL),
                *blen = vl_buffer(T, R, 16, NULL), *bpr = vl_buffer(T, R, 16, NULL),
                *btab = vl_buffer(T, R, (size_t)MB * COLS * 4, NULL);
    float *img = res_alloc(R, qb), *limg = res_alloc(R, (size_t)HQ * TMAX * 4);
    int accepted = 0, refused = 0;
    for (int it = 0; it < 150; ++it) {
        const int store = (int)(vl_rand(&seed) % 3);
        const int B = 1 + (int)(vl_rand(&seed) % MB);
        int32_t cu[MB + 1], lens[MB], cukv[MB + 1], prom[MB], table[MB * COLS];
        cu[0] = 0, cukv[0] = 0;
        for (int b = 0; b < B; ++b) {
            const int rare = vl_rand(&seed) % 8 == 0;
            const int32_t M = (int32_t)(vl_rand(&seed) % (rare ? 40 : 22));
            lens[b] = rare ? (int32_t)(vl_rand(&seed) % 140) - 5
                           : M + (int32_t)(vl_rand(&seed) % 60);
            cu[b + 1] = cu[b] + M;
            cukv[b + 1] = cukv[b] + lens[b];
            prom[b] = vl_rand(&seed) % 4 == 0 ? (int32_t)(vl_rand(&seed) % 150) : 0;
        }
        if (vl_rand(&seed) % 10 == 0)
            cu[vl_rand(&seed) % (unsigned)(B + 1)] += (int32_t)(vl_rand(&seed) % 7) - 3;
        for (int i = 0; i < MB * COLS; ++i)
            table[i] = vl_rand(&seed) % 25 == 0 ? (int32_t)(vl_rand(&seed) % 16) - 2
                                                : (int32_t)(vl_rand(&seed) % PAGES);
        const int32_t Tq = cu[B] >= 0 && cu[B] <= TMAX ? cu[B] : 1;
        /* The documented rules. */
        int valid = cu[0] == 0;
        for (int b = 0; b < B; ++b) {
            const int32_t M = cu[b + 1] - cu[b], L = lens[b];
            valid &= M >= 0 && M <= QB && L >= 0 && L <= LB && M <= L;
            valid &= prom[b] == 0 || prom[b] >= L;
            if (store == STEM_KV_BHND)
                valid &= L <= LK;
            if (store == STEM_KV_PACKED)
                valid &= cukv[b + 1] <= TK;
            if (store == STEM_KV_PAGED && M > 0 && M <= L && L >= 0 && L <= LB) {
                const int used = (L + PS - 1) / PS;
                valid &= used <= COLS;
                for (int j = 0; j < used && j < COLS; ++j)
                    valid &= table[b * COLS + j] >= 0 && table[b * COLS + j] < PAGES;
            }
        }
        valid &= Tq == cu[B];
        if (stem_buffer_write(bcu, VL_GUARD, cu, (size_t)(B + 1) * 4) != STEM_OK ||
            stem_buffer_write(bcuk, VL_GUARD, cukv, (size_t)(B + 1) * 4) != STEM_OK ||
            stem_buffer_write(blen, VL_GUARD, lens, (size_t)B * 4) != STEM_OK ||
            stem_buffer_write(bpr, VL_GUARD, prom, (size_t)B * 4) != STEM_OK ||
            stem_buffer_write(btab, VL_GUARD, table, sizeof table) != STEM_OK)
            fail_msg("stem_buffer_write: %s", stem_last_error());
        const stem_tensor tq = vl_tensor(bq, STEM_DTYPE_F32, 1, HQ, Tq, DH, Tq * HQ * DH, DH,
                                         HQ * DH, 1);
        const stem_tensor to = vl_tensor(bo, STEM_DTYPE_F32, 1, HQ, Tq, DH, Tq * HQ * DH, DH,
                                         HQ * DH, 1);
        const stem_tensor tl = vl_tensor(bl, STEM_DTYPE_F32, 1, HQ, Tq, 1, HQ * TMAX, TMAX, 1, 1);
        stem_tensor tk;
        if (store == STEM_KV_BHND)
            tk = vl_tensor(bk, STEM_DTYPE_F32, B, 1, LK, DH, LK * DH, LK * DH, DH, 1);
        else if (store == STEM_KV_PACKED)
            tk = vl_tensor(bk, STEM_DTYPE_F32, 1, 1, TK, DH, TK * DH, DH, DH, 1);
        else
            tk = vl_tensor(bk, STEM_DTYPE_F32, PAGES, 1, PS, DH, PS * DH, PS * DH, DH, 1);
        stem_tensor tv = tk;
        tv.buffer = bv;
        const stem_tensor tcu = vl_row(bcu, B + 1), tcuk = vl_row(bcuk, B + 1),
                          tlen = vl_row(blen, B), tpr = vl_row(bpr, B);
        const stem_tensor ttab = vl_tensor(btab, STEM_DTYPE_I32, 1, 1, B, COLS, MB * COLS,
                                           MB * COLS, COLS, 1);
        stem_seqs seqs;
        stem_seqs_init(&seqs);
        seqs.batch = B;
        seqs.cu_seqlens_q = &tcu;
        seqs.prompt_lens = &tpr;
        if (store == STEM_KV_PACKED)
            seqs.cu_seqlens_kv = &tcuk;
        else
            seqs.seqlens_kv = &tlen;
        if (store == STEM_KV_PAGED)
            seqs.block_table = &ttab;
        stem_call_io io;
        stem_call_io_init(&io);
        io.seqs = &seqs;
        io.lse = &tl;
        memset(img, 0xFF, qb);
        if (stem_buffer_write(bo, VL_GUARD, img, qb) != STEM_OK ||
            stem_buffer_write(bl, VL_GUARD, img, (size_t)HQ * TMAX * 4) != STEM_OK)
            fail_msg("stem_buffer_write: %s", stem_last_error());
        stem_status st = stem_prefill_ex(plans[store], &tq, &tk, &tv, &to, &io);
        if (st == STEM_OK)
            st = stem_synchronize(T->dev->ctx);
        if (st != (valid ? STEM_OK : STEM_ERR_INVALID_ARGUMENT))
            fail_msg("iteration %d (store %d, B %d): %s (%s), the rules say %s", it, store, B,
                     stem_status_name(st), stem_last_error(), valid ? "valid" : "invalid");
        if (!valid) {
            ++refused;
            if (!stem_last_error()[0])
                fail_msg("iteration %d: refused without a message", it);
            vl_untouched(bo, qb, NULL, "out");
            vl_untouched(bl, (size_t)HQ * TMAX * 4, NULL, "lse");
            continue;
        }
        ++accepted;
        vl_read(bo, qb, img, "out");
        vl_read(bl, (size_t)HQ * TMAX * 4, limg, "lse");
        for (int64_t i = 0; i < (int64_t)Tq * HQ * DH; ++i)
            if (!(img[i] - img[i] == 0.0f))
                fail_msg("iteration %d: out element %lld not written (or not finite)", it,
                         (long long)i);
        for (int64_t h = 0; h < HQ; ++h)
            for (int64_t i = 0; i < Tq; ++i)
                if (!(limg[h * TMAX + i] - limg[h * TMAX + i] == 0.0f))
                    fail_msg("iteration %d: lse [%lld][%lld] not written", it, (long long)h,
                             (long long)i);
    }
    if (accepted < 20 || refused < 20)
        fail_msg("random geometry: %d accepted, %d refused: the mix does not test both", accepted,
                 refused);
    if (conf_verbose())
        print_message("    %d accepted, %d refused\n", accepted, refused);
}

/* ------------------------------------------------------------- the list */

int conf_add_varlen_cases(conf_misuse *list, int cap)
{
    int k = 0;
    if (cap < CONF_VARLEN_CASES)
        return 0;
    static const int pages[] = {1, 8, 16, 48, 64, 128, 256};
    for (int i = 0; i < 7; ++i)
        for (int hnd = 0; hnd < 2; ++hnd) {
            snprintf(list[k].name, sizeof list[k].name, "varlen_c5_paged%d_%s_vs_packed",
                     pages[i], hnd ? "hnd" : "nhd");
            list[k].fn = paged_vs_packed;
            list[k].a = pages[i];
            list[k++].b = hnd;
        }
    static const char *const c6[3] = {"packed_visible", "bhnd_provided_prompts", "paged16"};
    for (int a = 0; a < 3; ++a) {
        snprintf(list[k].name, sizeof list[k].name, "varlen_c6_vs_single_%s", c6[a]);
        list[k].fn = varlen_vs_single;
        list[k++].a = a;
    }
    snprintf(list[k].name, sizeof list[k].name, "varlen_c12_paged_2p20_keys_cpu");
    list[k++].fn = size_edges;
    static const int prefixes[3] = {0, 64, 77};
    for (int i = 0; i < 3; ++i) {
        snprintf(list[k].name, sizeof list[k].name, "varlen_c13_local_mask_prefix%d",
                 prefixes[i]);
        list[k].fn = local_mask_export;
        list[k++].a = prefixes[i];
    }
    snprintf(list[k].name, sizeof list[k].name, "misuse_varlen_random_geometry");
    list[k++].fn = random_geometry;
    for (int a = 0; a < VM_N; ++a) {
        snprintf(list[k].name, sizeof list[k].name, "misuse_varlen_%s", vm_name[a]);
        list[k].fn = misuse_varlen;
        list[k++].a = a;
    }
    return k;
}
