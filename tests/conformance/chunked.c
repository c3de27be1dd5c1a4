/* Chunked and prefix-cached prefill (q_len < kv_len; docs/semantics.md
 * section 8), run on every device like the misuse cases. Cases follow the
 * ids of the chunked-prefill test plan:
 *   C1 block-aligned chunks with PROVIDED statistics = one-shot (selection
 *      exact, outputs bitwise on the CPU backend, within tolerance elsewhere);
 *   C2 VISIBLE statistics: the last chunk = one-shot, every chunk well formed;
 *   C3 unaligned chunks against the reference on each call (and, with PROVIDED
 *      statistics, inner rows = one-shot);
 *   C4 prefix-cached calls (aligned and unaligned prefix) against the shared
 *      reference: scores, selection, outputs, lse, statistics;
 *   C7 row invariants on every selection the cases produce;
 *   C8 DENSE selector with q_len < kv_len = plain bottom-right attention, and
 *      one query at every position of a short prompt;
 *   C9 the budget keyed on prompt_len (default kv_len);
 *   C10 statistics: vstats_out of the last chunk = one-shot, PROVIDED extreme
 *      statistics reach the scores as the reference says;
 *   C11 misuse of every new field: a status, a message, no byte written;
 * plus a plan reused by a multi-pass stem_prefill and then stem_score.
 * A backend without chunked support must answer STEM_ERR_UNSUPPORTED with a
 * message at plan creation (checked); the case then ends there. */
#define _POSIX_C_SOURCE 200809L /* setenv */
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

#define CK_GUARD 256 /* canary bytes before and after every tensor */

static int ck_is_cpu(const conf_test *T) { return T->dev->info.backend == STEM_BACKEND_CPU; }

/* Full-prompt inputs: q [B][Hq][N][d], k, v [B][Hkv][N][d], f32. */
typedef struct ck_data {
    int64_t batch, hq, hkv, n, d;
    stem_dtype dtype; /* of q, k, v and out on the device; q, k, v below hold its values */
    float *q, *k, *v;
} ck_data;

/* One call's outputs, host copies (NULL = not asked for). */
typedef struct ck_out {
    int64_t rows, nk, row0;
    float *out, *scores, *lse, *vstats;
    int32_t *index, *count;
} ck_out;

static void ck_data_make(conf_test *T, ck_data *D, int64_t batch, int64_t hq, int64_t hkv,
                         int64_t n, int64_t d, stem_synth_kind kind, uint64_t seed)
{
    D->batch = batch, D->hq = hq, D->hkv = hkv, D->n = n, D->d = d;
    D->q = res_alloc(&T->res, (size_t)(batch * hq * n * d) * 4);
    D->k = res_alloc(&T->res, (size_t)(batch * hkv * n * d) * 4);
    D->v = res_alloc(&T->res, (size_t)(batch * hkv * n * d) * 4);
    stem_synth_qkv(kind, seed, batch, hq, hkv, n, d, D->q, D->k, D->v);
    D->dtype = STEM_DTYPE_F32;
}

/* The same data stored as a 16-bit dtype: the values are rounded in place,
 * so the reference sees exactly what the device reads. */
static void ck_data_round(ck_data *D, stem_dtype dt)
{
    D->dtype = dt;
    const int64_t nq = D->batch * D->hq * D->n * D->d, nk = D->batch * D->hkv * D->n * D->d;
    for (int64_t i = 0; i < nq; ++i)
        D->q[i] = conf_round_to(dt, D->q[i]);
    for (int64_t i = 0; i < nk; ++i) {
        D->k[i] = conf_round_to(dt, D->k[i]);
        D->v[i] = conf_round_to(dt, D->v[i]);
    }
}

/* f32 values as the bytes of dtype dt (a new array in R). */
static void *ck_pack(conf_res *R, const float *x, int64_t count, stem_dtype dt)
{
    const size_t es = dt == STEM_DTYPE_F32 ? 4 : 2;
    unsigned char *b = res_alloc(R, (size_t)count * es);
    for (int64_t i = 0; i < count; ++i)
        conf_store(dt, b + (size_t)i * es, x[i]);
    return b;
}

/* A buffer holding `bytes` at offset CK_GUARD between canaries. */
static stem_buffer *ck_buffer(conf_test *T, conf_res *R, size_t bytes, const void *init)
{
    stem_buffer *b = NULL;
    if (stem_buffer_create(T->dev->ctx, bytes + 2 * CK_GUARD, &b) != STEM_OK)
        fail_msg("stem_buffer_create: %s", stem_last_error());
    res_add_buffer(R, b);
    unsigned char *img = res_alloc(R, bytes + 2 * CK_GUARD);
    memset(img, CONF_CANARY, bytes + 2 * CK_GUARD);
    if (init)
        memcpy(img + CK_GUARD, init, bytes);
    else
        memset(img + CK_GUARD, 0xFF, bytes); /* poison: NaN for f32, -1 for i32 */
    if (stem_buffer_write(b, 0, img, bytes + 2 * CK_GUARD) != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
    return b;
}

/* Reads the payload back and checks the canaries around it. */
static void ck_read(conf_res *R, stem_buffer *b, size_t bytes, void *dst, const char *what)
{
    unsigned char *img = res_alloc(R, bytes + 2 * CK_GUARD);
    if (stem_buffer_read(b, 0, img, bytes + 2 * CK_GUARD) != STEM_OK)
        fail_msg("stem_buffer_read: %s", stem_last_error());
    for (size_t i = 0; i < CK_GUARD; ++i)
        if (img[i] != CONF_CANARY || img[CK_GUARD + bytes + i] != CONF_CANARY)
            fail_msg("%s: canary byte overwritten next to the tensor", what);
    if (dst)
        memcpy(dst, img + CK_GUARD, bytes);
}

/* Checks that a buffer still holds exactly what ck_buffer(init = NULL) put there. */
static void ck_untouched(conf_res *R, stem_buffer *b, size_t bytes, const char *what)
{
    unsigned char *img = res_alloc(R, bytes + 2 * CK_GUARD);
    if (stem_buffer_read(b, 0, img, bytes + 2 * CK_GUARD) != STEM_OK)
        fail_msg("stem_buffer_read: %s", stem_last_error());
    for (size_t i = 0; i < bytes + 2 * CK_GUARD; ++i) {
        const int in = i >= CK_GUARD && i < CK_GUARD + bytes;
        if (img[i] != (in ? 0xFF : CONF_CANARY))
            fail_msg("%s: byte %zu written by a call that failed", what, i);
    }
}

typedef struct ck_call_spec {
    int64_t P, L, prompt_len; /* queries at [P, L); prompt_len 0 = default */
    int32_t vstats_mode;
    const float *vstats_in; /* [B][Hkv][2] for PROVIDED */
    int want_scores, want_lse, want_vstats;
} ck_call_spec;

/* Plans and runs one stem_prefill_ex call on the device. Returns the plan's
 * status when plan creation fails with UNSUPPORTED (checked to carry a
 * message); fails the test on any other error. */
static stem_status ck_call_in(conf_test *T, conf_res *R, conf_res *keep, const ck_data *D,
                              const stem_config *cfg, const ck_call_spec *s, ck_out *o);

/* Temporaries (plan, buffers, images) live in a per-call set released on
 * return, so loops of calls stay within the harness's limits; outputs go to
 * `keep`. (A failing assertion leaks the call's set: the test fails anyway.) */
static stem_status ck_call(conf_test *T, conf_res *keep, const ck_data *D,
                           const stem_config *cfg, const ck_call_spec *s, ck_out *o)
{
    conf_res tmp;
    memset(&tmp, 0, sizeof tmp);
    const stem_status st = ck_call_in(T, &tmp, keep, D, cfg, s, o);
    res_release(&tmp);
    return st;
}

static stem_status ck_call_in(conf_test *T, conf_res *R, conf_res *keep, const ck_data *D,
                              const stem_config *cfg, const ck_call_spec *s, ck_out *o)
{
    const int64_t B = D->batch, hq = D->hq, hkv = D->hkv, d = D->d;
    const int64_t M = s->L - s->P, L = s->L;
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = B;
    desc.num_q_heads = hq;
    desc.num_kv_heads = hkv;
    desc.q_len = M;
    desc.kv_len = L;
    desc.head_dim = d;
    desc.dtype = D->dtype;
    desc.prompt_len = s->prompt_len;
    desc.vstats_mode = s->vstats_mode;
    stem_plan *plan = NULL;
    stem_status st = stem_plan_create(T->dev->ctx, &desc, cfg, &plan);
    if (st == STEM_ERR_UNSUPPORTED) {
        if (!stem_last_error()[0])
            fail_msg("UNSUPPORTED without a message");
        if (ck_is_cpu(T)) /* the CPU backend runs every chunked shape */
            fail_msg("cpu: stem_plan_create: UNSUPPORTED: %s", stem_last_error());
        return st;
    }
    if (st != STEM_OK)
        fail_msg("stem_plan_create(P=%lld, L=%lld): %s: %s", (long long)s->P, (long long)L,
                 stem_status_name(st), stem_last_error());
    res_add_plan(R, plan);
    stem_plan_info info;
    stem_plan_info_init(&info);
    if (stem_plan_get_info(plan, &info) != STEM_OK)
        fail_msg("stem_plan_get_info: %s", stem_last_error());
    const int64_t bs = cfg->block_size;
    o->nk = (L + bs - 1) / bs;
    o->row0 = s->P / bs;
    o->rows = o->nk - o->row0;
    if (info.num_q_blocks != o->rows || info.num_k_blocks != o->nk)
        fail_msg("plan info rows %lld / keys %lld, expected %lld / %lld",
                 (long long)info.num_q_blocks, (long long)info.num_k_blocks, (long long)o->rows,
                 (long long)o->nk);

    /* Inputs: this call's queries (positions P..L-1) and all L keys. */
    float *q = res_alloc(R, (size_t)(B * hq * M * d) * 4);
    float *k = res_alloc(R, (size_t)(B * hkv * L * d) * 4);
    float *v = res_alloc(R, (size_t)(B * hkv * L * d) * 4);
    for (int64_t bh = 0; bh < B * hq; ++bh)
        memcpy(q + bh * M * d, D->q + (bh * D->n + s->P) * d, (size_t)(M * d) * 4);
    for (int64_t bh = 0; bh < B * hkv; ++bh) {
        memcpy(k + bh * L * d, D->k + bh * D->n * d, (size_t)(L * d) * 4);
        memcpy(v + bh * L * d, D->v + bh * D->n * d, (size_t)(L * d) * 4);
    }
    const stem_dtype dt = D->dtype;
    const size_t es = dt == STEM_DTYPE_F32 ? 4 : 2;
    const size_t qb = (size_t)(B * hq * M * d) * es, kb = (size_t)(B * hkv * L * d) * es;
    const size_t sb = (size_t)(B * hq * o->rows * o->nk) * 4, cb = (size_t)(B * hq * o->rows) * 4;
    const size_t lb = (size_t)(B * hq * M) * 4, vsb = (size_t)(B * hkv * 2) * 4;
    stem_buffer *bq = ck_buffer(T, R, qb, ck_pack(R, q, B * hq * M * d, dt)),
                *bk = ck_buffer(T, R, kb, ck_pack(R, k, B * hkv * L * d, dt)),
                *bv = ck_buffer(T, R, kb, ck_pack(R, v, B * hkv * L * d, dt));
    stem_buffer *bo = ck_buffer(T, R, qb, NULL), *bi = ck_buffer(T, R, sb, NULL),
                *bc = ck_buffer(T, R, cb, NULL);
    stem_buffer *bs_ = s->want_scores ? ck_buffer(T, R, sb, NULL) : NULL;
    stem_buffer *bl = s->want_lse ? ck_buffer(T, R, lb, NULL) : NULL;
    stem_buffer *bvo = s->want_vstats ? ck_buffer(T, R, vsb, NULL) : NULL;
    stem_buffer *bvi = s->vstats_in ? ck_buffer(T, R, vsb, s->vstats_in) : NULL;
    const stem_tensor tq = stem_tensor_bhnd(bq, CK_GUARD, dt, B, hq, M, d);
    const stem_tensor tk = stem_tensor_bhnd(bk, CK_GUARD, dt, B, hkv, L, d);
    const stem_tensor tv = stem_tensor_bhnd(bv, CK_GUARD, dt, B, hkv, L, d);
    const stem_tensor to = stem_tensor_bhnd(bo, CK_GUARD, dt, B, hq, M, d);
    const stem_tensor ti = stem_tensor_bhnd(bi, CK_GUARD, STEM_DTYPE_I32, B, hq, o->rows, o->nk);
    const stem_tensor tc = stem_tensor_bhnd(bc, CK_GUARD, STEM_DTYPE_I32, B, hq, o->rows, 1);
    stem_tensor ts, tl, tvo, tvi;
    stem_call_io io;
    stem_call_io_init(&io);
    io.index = &ti;
    io.count = &tc;
    if (bs_) {
        ts = stem_tensor_bhnd(bs_, CK_GUARD, STEM_DTYPE_F32, B, hq, o->rows, o->nk);
        io.scores = &ts;
    }
    if (bl) {
        tl = stem_tensor_bhnd(bl, CK_GUARD, STEM_DTYPE_F32, B, hq, M, 1);
        io.lse = &tl;
    }
    if (bvo) {
        tvo = stem_tensor_bhnd(bvo, CK_GUARD, STEM_DTYPE_F32, B, hkv, 1, 2);
        io.vstats_out = &tvo;
    }
    if (bvi) {
        tvi = stem_tensor_bhnd(bvi, CK_GUARD, STEM_DTYPE_F32, B, hkv, 1, 2);
        io.vstats_in = &tvi;
    }
    st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
    if (st == STEM_ERR_UNSUPPORTED && !s->vstats_in && (io.lse || io.vstats_out) &&
        !ck_is_cpu(T)) {
        /* A backend without lse / statistics outputs: refused with a message and
         * nothing written; the rest of the call is still checked without them. */
        if (!stem_last_error()[0])
            fail_msg("UNSUPPORTED without a message");
        ck_untouched(R, bo, qb, "out");
        io.lse = io.vstats_out = NULL;
        bl = bvo = NULL;
        st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
    }
    if (st == STEM_OK)
        st = stem_synchronize(T->dev->ctx);
    if (st == STEM_ERR_UNSUPPORTED) {
        if (!stem_last_error()[0])
            fail_msg("UNSUPPORTED without a message");
        if (ck_is_cpu(T))
            fail_msg("cpu: stem_prefill_ex: UNSUPPORTED: %s", stem_last_error());
        ck_untouched(R, bo, qb, "out");
        return st;
    }
    if (st != STEM_OK)
        fail_msg("stem_prefill_ex(P=%lld, L=%lld): %s: %s", (long long)s->P, (long long)L,
                 stem_status_name(st), stem_last_error());
    o->out = res_alloc(keep, (size_t)(B * hq * M * d) * 4);
    o->index = res_alloc(keep, sb);
    o->count = res_alloc(keep, cb);
    unsigned char *ob = res_alloc(R, qb);
    ck_read(R, bo, qb, ob, "out");
    for (int64_t i = 0; i < B * hq * M * d; ++i)
        o->out[i] = (float)conf_load(dt, ob + (size_t)i * es);
    ck_read(R, bi, sb, o->index, "index");
    ck_read(R, bc, cb, o->count, "count");
    ck_read(R, bq, qb, NULL, "q");
    o->scores = o->lse = o->vstats = NULL;
    if (bs_) {
        o->scores = res_alloc(keep, sb);
        ck_read(R, bs_, sb, o->scores, "scores");
    }
    if (bl) {
        o->lse = res_alloc(keep, lb);
        ck_read(R, bl, lb, o->lse, "lse");
    }
    if (bvo) {
        o->vstats = res_alloc(keep, vsb);
        ck_read(R, bvo, vsb, o->vstats, "vstats_out");
    }
    return STEM_OK;
}

/* C7: every row well formed: ascending, unique, causal, diagonal, sinks and
 * the local window present, -1 padding, count within [1, I + 1]. */
static void ck_invariants(const ck_data *D, const stem_config *cfg, const ck_out *o,
                          const char *what)
{
    const int dense = cfg->selector == STEM_SELECTOR_DENSE;
    for (int64_t bh = 0; bh < D->batch * D->hq; ++bh)
        for (int64_t r = 0; r < o->rows; ++r) {
            const int64_t I = o->row0 + r;
            const int32_t c = o->count[bh * o->rows + r];
            const int32_t *list = o->index + (bh * o->rows + r) * o->nk;
            if (c < 1 || c > I + 1)
                fail_msg("%s: row %lld (block %lld): count %d", what, (long long)r, (long long)I,
                         c);
            unsigned char *seen = calloc((size_t)(I + 1), 1);
            for (int32_t j = 0; j < c; ++j) {
                if (list[j] < 0 || list[j] > I || (j > 0 && list[j] <= list[j - 1])) {
                    free(seen);
                    fail_msg("%s: row %lld: entry %d = %d not ascending in [0, %lld]", what,
                             (long long)r, j, list[j], (long long)I);
                }
                seen[list[j]] = 1;
            }
            for (int64_t j = c; j < o->nk; ++j)
                if (list[j] != -1) {
                    free(seen);
                    fail_msg("%s: row %lld: padding entry %lld = %d", what, (long long)r,
                             (long long)j, list[j]);
                }
            int ok = seen[I];
            for (int64_t J = 0; J < cfg->sink_blocks && J <= I; ++J)
                ok &= seen[J] | dense;
            for (int64_t J = I - cfg->local_blocks + 1; J <= I; ++J)
                if (J >= 0)
                    ok &= seen[J];
            free(seen);
            if (!ok)
                fail_msg("%s: row %lld (block %lld) misses its diagonal, sink or local blocks",
                         what, (long long)r, (long long)I);
        }
}

/* Row r of a chunk = row row0 + r of the one-shot call. */
static void ck_same_rows(const ck_data *D, const ck_out *one, const ck_out *ch, const char *what)
{
    for (int64_t bh = 0; bh < D->batch * D->hq; ++bh)
        for (int64_t r = 0; r < ch->rows; ++r) {
            const int64_t R = ch->row0 + r;
            const int32_t c = ch->count[bh * ch->rows + r];
            if (c != one->count[bh * one->rows + R])
                fail_msg("%s: row %lld of head %lld: %d blocks, one-shot %d", what, (long long)R,
                         (long long)bh, c, one->count[bh * one->rows + R]);
            if (memcmp(ch->index + (bh * ch->rows + r) * ch->nk,
                       one->index + (bh * one->rows + R) * one->nk, (size_t)c * 4) != 0)
                fail_msg("%s: row %lld of head %lld: blocks differ from one-shot", what,
                         (long long)R, (long long)bh);
        }
}

/* Outputs of queries [P, L) equal the one-shot outputs: bitwise on the CPU
 * backend (per-row arithmetic independent of the call's shape), else within
 * an f32 accumulation-order tolerance. */
static void ck_same_out(const conf_test *T, const ck_data *D, const ck_out *one, const ck_out *ch,
                        int64_t P, int64_t L, const char *what)
{
    const int64_t M = L - P, d = D->d, N = D->n;
    double worst = 0.0;
    for (int64_t bh = 0; bh < D->batch * D->hq; ++bh)
        for (int64_t i = 0; i < M * d; ++i) {
            const float a = ch->out[bh * M * d + i], b = one->out[bh * N * d + P * d + i];
            const double e = fabs((double)a - (double)b);
            if (!(e <= 2e-5 * (1.0 + fabs((double)b))) || (ck_is_cpu(T) && memcmp(&a, &b, 4)))
                fail_msg("%s: out[%lld][%lld] = %.9g, one-shot %.9g", what, (long long)bh,
                         (long long)(P + i / d), (double)a, (double)b);
            worst = e > worst ? e : worst;
        }
    if (conf_verbose())
        print_message("    %s: largest output difference %.3g\n", what, worst);
}

static void ck_config(stem_config *cfg, int32_t block, int32_t stride)
{
    stem_config_init(cfg);
    cfg->block_size = block;
    cfg->stride = stride;
}

/* ------------------------------------------------------------ C1, C2, C10 */

enum { CK_N1 = 9000, CK_C1 = 2048 };

/* One-shot, then chunks of CK_C1 (block-aligned) with prompt_len = N. */
static void chunked_vs_oneshot(conf_test *T, const conf_misuse *m)
{
    const int provided = m->a;
    ck_data D;
    ck_data_make(T, &D, 1, 2, 1, CK_N1, 32, STEM_SYNTH_STRUCTURED, 1501);
    stem_config cfg;
    ck_config(&cfg, 128, 8); /* 71 blocks: k_start 44, rows 44.. decay */
    ck_out one;
    ck_call_spec s = {0, CK_N1, 0, STEM_VSTATS_VISIBLE, NULL, 0, 1, 1};
    if (ck_call(T, &T->res, &D, &cfg, &s, &one) != STEM_OK)
        return; /* no lse / statistics on this backend (refusal checked) */
    ck_invariants(&D, &cfg, &one, "one-shot");
    for (int64_t P = 0; P < CK_N1; P += CK_C1) {
        const int64_t L = P + CK_C1 < CK_N1 ? P + CK_C1 : CK_N1;
        ck_call_spec c = {P, L, CK_N1, provided ? STEM_VSTATS_PROVIDED : STEM_VSTATS_VISIBLE,
                          provided ? one.vstats : NULL, 0, 1, 1};
        ck_out ch;
        conf_res keep; /* this chunk's outputs */
        memset(&keep, 0, sizeof keep);
        const stem_status st = ck_call(T, &keep, &D, &cfg, &c, &ch);
        if (st == STEM_ERR_UNSUPPORTED) {
            res_release(&keep);
            return; /* the backend declares no chunked support (refusal checked) */
        }
        char what[96];
        snprintf(what, sizeof what, "chunk [%lld, %lld)", (long long)P, (long long)L);
        ck_invariants(&D, &cfg, &ch, what);
        if (provided || L == CK_N1) {
            ck_same_rows(&D, &one, &ch, what);
            ck_same_out(T, &D, &one, &ch, P, L, what);
        }
        if (!ch.vstats || !one.vstats) {
            /* no statistics output on this backend */
        } else if (provided) { /* PROVIDED statistics come back verbatim */
            if (memcmp(ch.vstats, one.vstats, (size_t)(D.batch * D.hkv * 2) * 4) != 0)
                fail_msg("%s: vstats_out differs from the provided statistics", what);
        } else if (L == CK_N1) { /* C10: the last chunk sees every key */
            for (int64_t i = 0; i < D.batch * D.hkv * 2; ++i)
                if (!(fabs(ch.vstats[i] - one.vstats[i]) <= 1e-5 * (1.0 + fabs(one.vstats[i]))))
                    fail_msg("last chunk vstats_out[%lld] = %g, one-shot %g", (long long)i,
                             (double)ch.vstats[i], (double)one.vstats[i]);
        }
        /* lse of the chunk = one-shot lse where the selection is the same. */
        if ((provided || L == CK_N1) && ch.lse && one.lse)
            for (int64_t bh = 0; bh < D.batch * D.hq; ++bh)
                for (int64_t i = 0; i < L - P; ++i) {
                    const double a = ch.lse[bh * (L - P) + i], b = one.lse[bh * CK_N1 + P + i];
                    if (!(fabs(a - b) <= 1e-5 * (1.0 + fabs(b))))
                        fail_msg("%s: lse[%lld] = %.9g, one-shot %.9g", what, (long long)(P + i),
                                 a, b);
                }
        res_release(&keep);
    }
}

/* --------------------------------------------------- C4 vs the reference */

/* Reference run of one call, on double copies of the inputs. */
typedef struct ck_ref {
    double *scores, *out, *lse, *vstats;
    int32_t *index, *count;
} ck_ref;

static void ck_reference(conf_res *R, const ck_data *D, const stem_config *cfg, int64_t P,
                         int64_t L, int64_t prompt_len, const float *vstats_in, ck_ref *r)
{
    const int64_t B = D->batch, M = L - P, d = D->d;
    double *q = res_alloc(R, (size_t)(B * D->hq * M * d) * 8);
    double *k = res_alloc(R, (size_t)(B * D->hkv * L * d) * 8);
    double *v = res_alloc(R, (size_t)(B * D->hkv * L * d) * 8);
    for (int64_t bh = 0; bh < B * D->hq; ++bh)
        for (int64_t i = 0; i < M * d; ++i)
            q[bh * M * d + i] = D->q[(bh * D->n + P) * d + i];
    for (int64_t bh = 0; bh < B * D->hkv; ++bh)
        for (int64_t i = 0; i < L * d; ++i) {
            k[bh * L * d + i] = D->k[bh * D->n * d + i];
            v[bh * L * d + i] = D->v[bh * D->n * d + i];
        }
    double *vs = NULL;
    if (vstats_in) {
        vs = res_alloc(R, (size_t)(B * D->hkv * 2) * 8);
        for (int64_t i = 0; i < B * D->hkv * 2; ++i)
            vs[i] = vstats_in[i];
    }
    stem_ref_call c = {B,   D->hq, D->hkv, d, M, L, prompt_len > 0 ? prompt_len : L,
                       1.0 / sqrt((double)d), -1, q, k, v, vs};
    int64_t row0, nk;
    const int64_t rows = stem_ref_call_rows(&c, cfg->block_size, &row0, &nk);
    r->scores = res_alloc(R, (size_t)(B * D->hq * rows * nk) * 8);
    r->index = res_alloc(R, (size_t)(B * D->hq * rows * nk) * 4);
    r->count = res_alloc(R, (size_t)(B * D->hq * rows) * 4);
    r->out = res_alloc(R, (size_t)(B * D->hq * M * d) * 8);
    r->lse = res_alloc(R, (size_t)(B * D->hq * M) * 8);
    r->vstats = res_alloc(R, (size_t)(B * D->hkv * 2) * 8);
    stem_ref_call_scores(&c, cfg, r->scores, r->vstats);
    /* Select on the reference's own scores; where the device's scores order a
     * near-tie differently the comparison below reports it with both values. */
    stem_ref_call_select(&c, cfg, r->scores, r->index, r->count);
    stem_ref_call_attention(&c, cfg->block_size, r->index, r->count, r->out, r->lse);
}

/* Rounding allowance of one f32 output row (the main suite's bound in
 * compare.c): the logits' f32 error grows with scale * |q| * max |k|, the sum
 * with the visible keys. Query i of a call [P, L) over block lists o. */
static double ck_row_slack(const ck_data *D, const ck_out *o, int64_t bs, int64_t b, int64_t h,
                           int64_t P, int64_t L, int64_t i, double *vmax_out)
{
    const int64_t d = D->d, kh = h / (D->hq / D->hkv), pos = P + i, I = pos / bs;
    const float *q = D->q + ((b * D->hq + h) * D->n + pos) * d;
    double qn = 0.0, kmax = 0.0, vmax = 0.0;
    for (int64_t c = 0; c < d; ++c)
        qn += (double)q[c] * q[c];
    for (int64_t t = 0; t < L; ++t) {
        const float *k = D->k + ((b * D->hkv + kh) * D->n + t) * d;
        const float *v = D->v + ((b * D->hkv + kh) * D->n + t) * d;
        double kn = 0.0;
        for (int64_t c = 0; c < d; ++c) {
            kn += (double)k[c] * k[c];
            vmax = fabs(v[c]) > vmax ? fabs(v[c]) : vmax;
        }
        kmax = kn > kmax ? kn : kmax;
    }
    const int64_t w = b * D->hq + h, rr = I - o->row0;
    int64_t vis = 0;
    for (int32_t j = 0; j < o->count[w * o->rows + rr]; ++j) {
        const int64_t J = o->index[(w * o->rows + rr) * o->nk + j];
        vis += J < I ? (J * bs + bs < L ? bs : L - J * bs) : (J == I ? pos - I * bs + 1 : 0);
    }
    const double U = 0x1.0p-24, logit = sqrt(qn * kmax / (double)d); /* scale = 1/sqrt(d) */
    *vmax_out = vmax;
    return 4.0 * U * sqrt((double)d) * logit + 8.0 * U * sqrt((double)vis + 1.0);
}

static void ck_compare_ref(const conf_test *T, const ck_data *D, const ck_out *o, const ck_ref *r,
                           int64_t bs, int64_t P, int64_t L, const char *what)
{
    (void)T;
    const int64_t n = D->batch * D->hq, M = L - P;
    if (o->scores)
        for (int64_t i = 0; i < n * o->rows * o->nk; ++i) {
            const double a = o->scores[i], b = r->scores[i];
            if (isinf(b) ? a != b : !(fabs(a - b) <= 2e-4 * (1.0 + fabs(b))))
                fail_msg("%s: score %lld = %.9g, reference %.9g", what, (long long)i, a, b);
        }
    for (int64_t i = 0; i < n * o->rows; ++i) {
        if (o->count[i] != r->count[i] ||
            memcmp(o->index + i * o->nk, r->index + i * o->nk, (size_t)o->count[i] * 4) != 0)
            fail_msg("%s: selection row %lld (head-row %lld) differs from the reference "
                     "(%d vs %d blocks)",
                     what, (long long)(o->row0 + i % o->rows), (long long)i, o->count[i],
                     r->count[i]);
    }
    for (int64_t bh = 0; bh < n; ++bh)
        for (int64_t i = 0; i < M; ++i) {
            double vmax;
            const double slack = ck_row_slack(D, o, bs, bh / D->hq, bh % D->hq, P, L, i, &vmax);
            /* 16-bit data: the output's own rounding, and P rounded to the
             * input type before P V (the tensor-core kernels). */
            const double u16 = D->dtype == STEM_DTYPE_F32 ? 0.0 : conf_unit_roundoff(D->dtype);
            for (int64_t c = 0; c < D->d; ++c) {
                const int64_t e = (bh * M + i) * D->d + c;
                const double tol =
                    (2e-5 + 2.0 * u16) * (1.0 + fabs(r->out[e])) + vmax * (slack + u16);
                if (!(fabs(o->out[e] - r->out[e]) <= tol))
                    fail_msg("%s: out %lld = %.9g, reference %.9g (allowance %.3g)", what,
                             (long long)e, (double)o->out[e], r->out[e], tol);
            }
            if (o->lse && !(fabs(o->lse[bh * M + i] - r->lse[bh * M + i]) <=
                            2e-5 * (1.0 + fabs(r->lse[bh * M + i])) + slack))
                fail_msg("%s: lse %lld = %.9g, reference %.9g", what, (long long)(bh * M + i),
                         (double)o->lse[bh * M + i], r->lse[bh * M + i]);
        }
    if (o->vstats)
        for (int64_t i = 0; i < D->batch * D->hkv * 2; ++i)
            if (!(fabs(o->vstats[i] - r->vstats[i]) <= 1e-5 * (1.0 + fabs(r->vstats[i]))))
                fail_msg("%s: vstats %lld = %.9g, reference %.9g", what, (long long)i,
                         (double)o->vstats[i], r->vstats[i]);
}

/* C4 (and C9 with prompt_len): one prefix-cached call against the reference.
 * a = prefix length P, b = prompt_len (0 = kv_len). */
static void prefix_vs_reference(conf_test *T, const conf_misuse *m)
{
    enum { N = 1500 };
    ck_data D;
    ck_data_make(T, &D, 2, 4, 2, N, 32, STEM_SYNTH_STRUCTURED, 77 + (uint64_t)m->a);
    stem_config cfg;
    ck_config(&cfg, 64, 8); /* 24 key blocks */
    cfg.k_start = 6;
    cfg.sink_blocks = 2;
    cfg.local_blocks = 2;
    const int64_t P = m->a, prompt = m->b;
    ck_call_spec s = {P, N, prompt, STEM_VSTATS_VISIBLE, NULL, 1, 1, 1};
    ck_out o;
    if (ck_call(T, &T->res, &D, &cfg, &s, &o) != STEM_OK)
        return; /* refusal checked */
    ck_ref r;
    ck_reference(&T->res, &D, &cfg, P, N, prompt, NULL, &r);
    char what[96];
    snprintf(what, sizeof what, "prefix %lld, prompt_len %lld", (long long)P, (long long)prompt);
    ck_invariants(&D, &cfg, &o, what);
    ck_compare_ref(T, &D, &o, &r, cfg.block_size, P, N, what);
    /* C9: the plan's budget rows are the prompt's schedule at absolute rows. */
    int32_t ref_budget[64], budget[64];
    stem_ref_budget(&cfg, prompt > 0 ? prompt : N, -1, ref_budget);
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = 2, desc.num_q_heads = 4, desc.num_kv_heads = 2, desc.head_dim = 32;
    desc.q_len = N - P, desc.kv_len = N, desc.prompt_len = prompt;
    stem_plan *plan = NULL;
    if (stem_plan_create(T->dev->ctx, &desc, &cfg, &plan) != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    res_add_plan(&T->res, plan);
    if (stem_plan_get_budget(plan, budget, 64) != STEM_OK)
        fail_msg("stem_plan_get_budget: %s", stem_last_error());
    for (int64_t r0 = 0; r0 < o.rows; ++r0)
        if (budget[r0] != ref_budget[o.row0 + r0])
            fail_msg("budget of row %lld = %d, reference %d", (long long)(o.row0 + r0),
                     budget[r0], ref_budget[o.row0 + r0]);
}

/* C3: unaligned chunks (P mod B != 0, P mod S != 0): every call against the
 * reference on the same call; with PROVIDED statistics (a = 1, pinned to the
 * one-shot ones) every row lying wholly inside a call also equals one-shot. */
/* C3 shapes (b): f32 on every backend's exact path, and 16-bit shapes the
 * tensor-core kernels take (block 64 / 128, head_dim 64 / 128). */
static const struct {
    stem_dtype dtype;
    int d, block;
    const char *name;
} ck_c3_shapes[] = {{STEM_DTYPE_F32, 32, 64, ""},
                    {STEM_DTYPE_BF16, 128, 128, "_bf16_d128_b128"},
                    {STEM_DTYPE_F16, 64, 128, "_f16_d64_b128"},
                    {STEM_DTYPE_BF16, 64, 64, "_bf16_d64_b64"}};

static void unaligned_chunks(conf_test *T, const conf_misuse *m)
{
    enum { N = 1500, C = 501 };
    const int provided = m->a, bsz = ck_c3_shapes[m->b].block;
    ck_data D;
    ck_data_make(T, &D, 1, 2, 1, N, ck_c3_shapes[m->b].d, STEM_SYNTH_STRUCTURED, 4001);
    if (ck_c3_shapes[m->b].dtype != STEM_DTYPE_F32)
        ck_data_round(&D, ck_c3_shapes[m->b].dtype);
    stem_config cfg;
    ck_config(&cfg, bsz, 8);
    cfg.k_start = 6;
    cfg.sink_blocks = 2;
    cfg.local_blocks = 2;
    ck_out one;
    ck_call_spec s1 = {0, N, 0, STEM_VSTATS_VISIBLE, NULL, 0, 0, provided};
    if (ck_call(T, &T->res, &D, &cfg, &s1, &one) != STEM_OK)
        return;
    if (provided && !one.vstats)
        return; /* no statistics output on this backend (refusal checked) */
    for (int64_t P = 0; P < N; P += C) {
        const int64_t L = P + C < N ? P + C : N;
        ck_call_spec c = {P, L, N, provided ? STEM_VSTATS_PROVIDED : STEM_VSTATS_VISIBLE,
                          provided ? one.vstats : NULL, 1, 1, 0};
        conf_res keep;
        memset(&keep, 0, sizeof keep);
        ck_out o;
        if (ck_call(T, &keep, &D, &cfg, &c, &o) != STEM_OK) {
            res_release(&keep);
            return; /* refusal checked */
        }
        ck_ref r;
        ck_reference(&keep, &D, &cfg, P, L, N, provided ? one.vstats : NULL, &r);
        char what[96];
        snprintf(what, sizeof what, "chunk [%lld, %lld)", (long long)P, (long long)L);
        ck_invariants(&D, &cfg, &o, what);
        ck_compare_ref(T, &D, &o, &r, cfg.block_size, P, L, what);
        if (provided) /* rows wholly inside [P, L) */
            for (int64_t bh = 0; bh < D.batch * D.hq; ++bh)
                for (int64_t rr = 0; rr < o.rows; ++rr) {
                    const int64_t I = o.row0 + rr;
                    if (I * bsz < P || (I + 1) * bsz > L)
                        continue;
                    const int32_t cnt = o.count[bh * o.rows + rr];
                    if (cnt != one.count[bh * one.rows + I] ||
                        memcmp(o.index + (bh * o.rows + rr) * o.nk,
                               one.index + (bh * one.rows + I) * one.nk, (size_t)cnt * 4))
                        fail_msg("%s: inner row %lld differs from one-shot", what,
                                 (long long)I);
                }
        res_release(&keep);
    }
}

/* C10: extreme PROVIDED statistics reach the scores as the reference says. */
static void provided_extreme(conf_test *T, const conf_misuse *m)
{
    (void)m;
    enum { N = 700, P = 300 };
    ck_data D;
    ck_data_make(T, &D, 1, 2, 1, N, 16, STEM_SYNTH_RANDOM, 5);
    stem_config cfg;
    ck_config(&cfg, 32, 4);
    cfg.k_start = 4;
    cfg.beta = 1.0f;
    const float vs[2] = {-5.0f, 0.25f}; /* every group far above the mean: large bonus */
    ck_call_spec s = {P, N, 0, STEM_VSTATS_PROVIDED, vs, 1, 1, 1};
    ck_out o;
    if (ck_call(T, &T->res, &D, &cfg, &s, &o) != STEM_OK)
        return;
    ck_ref r;
    ck_reference(&T->res, &D, &cfg, P, N, 0, vs, &r);
    ck_invariants(&D, &cfg, &o, "provided statistics");
    ck_compare_ref(T, &D, &o, &r, cfg.block_size, P, N, "provided statistics");
}

/* ------------------------------------------------------------------- C8 */

/* DENSE with q_len < kv_len = plain bottom-right attention (the reference
 * with every causal block); a = 1: one query at every position of a
 * 300-token prompt (decode-like calls). */
static void dense_bottom_right(conf_test *T, const conf_misuse *m)
{
    ck_data D;
    ck_data_make(T, &D, 1, 2, 1, 300, 16, STEM_SYNTH_RANDOM, 9);
    stem_config cfg;
    ck_config(&cfg, 16, 4);
    cfg.selector = STEM_SELECTOR_DENSE;
    const int64_t step = m->a ? 1 : 300;
    for (int64_t P = m->a ? 0 : 123; P < 300; P += step) {
        const int64_t L = m->a ? P + 1 : 300;
        ck_call_spec s = {P, L, 0, STEM_VSTATS_VISIBLE, NULL, 0, 1, 0};
        ck_out o;
        conf_res keep; /* this call's outputs and reference */
        memset(&keep, 0, sizeof keep);
        if (ck_call(T, &keep, &D, &cfg, &s, &o) != STEM_OK) {
            res_release(&keep);
            return; /* refusal checked */
        }
        ck_ref r;
        ck_reference(&keep, &D, &cfg, P, L, 0, NULL, &r);
        char what[64];
        snprintf(what, sizeof what, "dense P=%lld L=%lld", (long long)P, (long long)L);
        ck_invariants(&D, &cfg, &o, what);
        ck_compare_ref(T, &D, &o, &r, cfg.block_size, P, L, what);
        res_release(&keep);
    }
}

/* -------------------------------------- plan reuse across prefill passes */

/* A plan whose stem_prefill runs in several passes (STEM_PREFILL_PASS_BYTES
 * forces passes of a few heads), then a whole-plan stem_score on the same
 * plan: backend scratch must be sized for the plan, not the first pass. */
static void plan_reuse_passes(conf_test *T, const conf_misuse *m)
{
    (void)m;
    enum { HQ = 8, HKV = 2, N = 640, DH = 16, BLK = 32 };
    enum { NB = N / BLK };
    ck_data D;
    ck_data_make(T, &D, 1, HQ, HKV, N, DH, STEM_SYNTH_STRUCTURED, 31);
    stem_config cfg;
    ck_config(&cfg, BLK, 8);
    cfg.k_start = 5;
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.num_q_heads = HQ, desc.num_kv_heads = HKV, desc.q_len = desc.kv_len = N;
    desc.head_dim = DH;
    /* One head's scores + lists: NB * NB * 8 + NB * 4 bytes; allow 3 heads a pass. */
    char bytes[32];
    snprintf(bytes, sizeof bytes, "%d", (NB * NB * 8 + NB * 4) * 3);
    setenv("STEM_PREFILL_PASS_BYTES", bytes, 1);
    stem_plan *plan = NULL;
    const stem_status pst = stem_plan_create(T->dev->ctx, &desc, &cfg, &plan);
    unsetenv("STEM_PREFILL_PASS_BYTES");
    if (pst != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    res_add_plan(&T->res, plan);
    const size_t qb = (size_t)HQ * N * DH * 4, kb = (size_t)HKV * N * DH * 4;
    const size_t sb = (size_t)HQ * NB * NB * 4;
    conf_res *R = &T->res;
    stem_buffer *bq = ck_buffer(T, R, qb, D.q), *bk = ck_buffer(T, R, kb, D.k),
                *bv = ck_buffer(T, R, kb, D.v);
    stem_buffer *bo = ck_buffer(T, R, qb, NULL), *bs = ck_buffer(T, R, sb, NULL),
                *bs2 = ck_buffer(T, R, sb, NULL);
    const stem_tensor tq = stem_tensor_bhnd(bq, CK_GUARD, STEM_DTYPE_F32, 1, HQ, N, DH);
    const stem_tensor tk = stem_tensor_bhnd(bk, CK_GUARD, STEM_DTYPE_F32, 1, HKV, N, DH);
    const stem_tensor tv = stem_tensor_bhnd(bv, CK_GUARD, STEM_DTYPE_F32, 1, HKV, N, DH);
    const stem_tensor to = stem_tensor_bhnd(bo, CK_GUARD, STEM_DTYPE_F32, 1, HQ, N, DH);
    const stem_tensor ts = stem_tensor_bhnd(bs, CK_GUARD, STEM_DTYPE_F32, 1, HQ, NB, NB);
    const stem_tensor ts2 = stem_tensor_bhnd(bs2, CK_GUARD, STEM_DTYPE_F32, 1, HQ, NB, NB);
    stem_status st = stem_prefill(plan, &tq, &tk, &tv, &to, &ts, NULL, NULL);
    if (st == STEM_OK)
        st = stem_score(plan, &tq, &tk, &tv, &ts2);
    if (st == STEM_OK)
        st = stem_synchronize(T->dev->ctx);
    if (st != STEM_OK)
        fail_msg("prefill then score: %s: %s", stem_status_name(st), stem_last_error());
    float *s1 = res_alloc(&T->res, sb), *s2 = res_alloc(&T->res, sb);
    ck_read(R, bs, sb, s1, "prefill scores");
    ck_read(R, bs2, sb, s2, "score after prefill");
    ck_read(R, bo, qb, NULL, "out");
    /* Both against the reference scores. */
    ck_ref r;
    ck_reference(R, &D, &cfg, 0, N, 0, NULL, &r);
    for (size_t i = 0; i < (size_t)HQ * NB * NB; ++i) {
        const double b = r.scores[i];
        if (isinf(b) ? (s1[i] != b || s2[i] != b)
                     : !(fabs(s1[i] - b) <= 2e-4 * (1.0 + fabs(b)) &&
                         fabs(s2[i] - b) <= 2e-4 * (1.0 + fabs(b))))
            fail_msg("score %zu: prefill %.9g, stem_score %.9g, reference %.9g", i,
                     (double)s1[i], (double)s2[i], b);
    }
}

/* ------------------------------------------------------------------ C11 */

enum {
    MS_PROMPT_BELOW, /* prompt_len < kv_len */
    MS_Q_OVER_KV,    /* q_len > kv_len */
    MS_BAD_VSTATS,   /* vstats_mode outside the enum */
    MS_PROVIDED_SEL, /* PROVIDED with a selector without statistics */
    MS_XATTN_OFFSET, /* XATTENTION with q_len < kv_len: UNSUPPORTED */
    MS_PROVIDED_NOIO,  /* PROVIDED plan through stem_prefill */
    MS_PROVIDED_NULL,  /* PROVIDED without vstats_in */
    MS_VSTATS_NAN,     /* non-finite mean */
    MS_VSTATS_NEGSTD,  /* negative std */
    MS_VSTATS_DIMS,    /* vstats_out of the wrong shape */
    MS_LSE_DTYPE,      /* lse in f16 */
    MS_LSE_OVERLAP,    /* lse overlapping out */
    MS_ROWS_DIMS,      /* index with one-shot rows on a chunked plan */
    MS_N
};
static const char *const ms_name[MS_N] = {
    "prompt_below_kv", "q_len_over_kv_len", "vstats_mode_unknown", "vstats_provided_uniform",
    "xattention_offset", "provided_without_io", "provided_null_vstats", "vstats_nan",
    "vstats_negative_std", "vstats_out_dims", "lse_dtype", "lse_overlap", "rows_dims"};

static void misuse_chunked(conf_test *T, const conf_misuse *m)
{
    enum { N = 200, P = 72, M = N - P, HQ = 2, DH = 16, BLK = 16 };
    enum { NK = (N + BLK - 1) / BLK, ROWS = NK - P / BLK };
    stem_config cfg;
    ck_config(&cfg, BLK, 4);
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.num_q_heads = HQ, desc.num_kv_heads = 1, desc.head_dim = DH;
    desc.q_len = M, desc.kv_len = N;
    stem_status want = STEM_ERR_INVALID_ARGUMENT;
    switch (m->a) {
    case MS_PROMPT_BELOW: desc.prompt_len = N - 1; break;
    case MS_Q_OVER_KV: desc.q_len = N + 1; break;
    case MS_BAD_VSTATS: desc.vstats_mode = 7; break;
    case MS_PROVIDED_SEL:
        desc.vstats_mode = STEM_VSTATS_PROVIDED;
        cfg.selector = STEM_SELECTOR_UNIFORM;
        break;
    case MS_XATTN_OFFSET:
        cfg.selector = STEM_SELECTOR_XATTENTION;
        want = STEM_ERR_UNSUPPORTED;
        break;
    default: break;
    }
    if (m->a >= MS_PROVIDED_NOIO && m->a <= MS_VSTATS_NEGSTD)
        desc.vstats_mode = STEM_VSTATS_PROVIDED;
    stem_plan *plan = NULL;
    stem_status st = stem_plan_create(T->dev->ctx, &desc, &cfg, &plan);
    if (m->a <= MS_XATTN_OFFSET) {
        if (st == STEM_OK)
            res_add_plan(&T->res, plan);
        if (st != want && !(want == STEM_ERR_INVALID_ARGUMENT && st == STEM_ERR_UNSUPPORTED &&
                            m->a == MS_PROVIDED_SEL))
            fail_msg("%s: stem_plan_create returned %s, expected %s", ms_name[m->a],
                     stem_status_name(st), stem_status_name(want));
        if (!stem_last_error()[0])
            fail_msg("%s: no message", ms_name[m->a]);
        return;
    }
    if (st == STEM_ERR_UNSUPPORTED) { /* a backend without chunked support */
        if (!stem_last_error()[0])
            fail_msg("UNSUPPORTED without a message");
        return;
    }
    if (st != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    res_add_plan(&T->res, plan);
    float *q = res_alloc(&T->res, (size_t)HQ * M * DH * 4);
    float *kv = res_alloc(&T->res, (size_t)N * DH * 4);
    stem_buffer *bq = ck_buffer(T, &T->res, (size_t)HQ * M * DH * 4, q);
    stem_buffer *bk = ck_buffer(T, &T->res, (size_t)N * DH * 4, kv), *bv = ck_buffer(T, &T->res, (size_t)N * DH * 4, kv);
    stem_buffer *bo = ck_buffer(T, &T->res, (size_t)HQ * M * DH * 4 * 2, NULL);
    stem_buffer *bi = ck_buffer(T, &T->res, (size_t)HQ * NK * NK * 4, NULL);
    stem_buffer *bc = ck_buffer(T, &T->res, (size_t)HQ * NK * 4, NULL);
    stem_buffer *bx = ck_buffer(T, &T->res, 64, NULL);
    const float bad_vs[2][2] = {{NAN, 1.0f}, {0.0f, -1.0f}};
    stem_buffer *bvs = ck_buffer(T, &T->res, 8, m->a == MS_VSTATS_NAN ? bad_vs[0] : bad_vs[1]);
    const stem_tensor tq = stem_tensor_bhnd(bq, CK_GUARD, STEM_DTYPE_F32, 1, HQ, M, DH);
    const stem_tensor tk = stem_tensor_bhnd(bk, CK_GUARD, STEM_DTYPE_F32, 1, 1, N, DH);
    const stem_tensor tv = stem_tensor_bhnd(bv, CK_GUARD, STEM_DTYPE_F32, 1, 1, N, DH);
    const stem_tensor to = stem_tensor_bhnd(bo, CK_GUARD, STEM_DTYPE_F32, 1, HQ, M, DH);
    stem_tensor ti = stem_tensor_bhnd(bi, CK_GUARD, STEM_DTYPE_I32, 1, HQ, ROWS, NK);
    const stem_tensor tc = stem_tensor_bhnd(bc, CK_GUARD, STEM_DTYPE_I32, 1, HQ, ROWS, 1);
    const stem_tensor tvs = stem_tensor_bhnd(bvs, CK_GUARD, STEM_DTYPE_F32, 1, 1, 1, 2);
    stem_tensor tx;
    stem_call_io io;
    stem_call_io_init(&io);
    io.index = &ti;
    io.count = &tc;
    switch (m->a) {
    case MS_PROVIDED_NOIO: st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, &ti, &tc); break;
    case MS_PROVIDED_NULL: st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io); break;
    case MS_VSTATS_NAN:
    case MS_VSTATS_NEGSTD:
        io.vstats_in = &tvs;
        st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
        break;
    case MS_VSTATS_DIMS:
        tx = stem_tensor_bhnd(bx, CK_GUARD, STEM_DTYPE_F32, 1, 1, 2, 2);
        io.vstats_out = &tx;
        st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
        break;
    case MS_LSE_DTYPE:
        tx = stem_tensor_bhnd(bx, CK_GUARD, STEM_DTYPE_F16, 1, HQ, M, 1);
        io.lse = &tx;
        st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
        break;
    case MS_LSE_OVERLAP:
        tx = stem_tensor_bhnd(bo, CK_GUARD + 64, STEM_DTYPE_F32, 1, HQ, M, 1);
        io.lse = &tx;
        st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
        break;
    case MS_ROWS_DIMS:
        ti = stem_tensor_bhnd(bi, CK_GUARD, STEM_DTYPE_I32, 1, HQ, NK, NK);
        st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
        break;
    default: break;
    }
    if (st == STEM_ERR_UNSUPPORTED && (m->a == MS_LSE_DTYPE || m->a == MS_LSE_OVERLAP ||
                                       m->a == MS_VSTATS_DIMS))
        ; /* a backend without lse / statistics may refuse before checking shapes */
    else if (st == STEM_OK && (m->a == MS_VSTATS_NAN || m->a == MS_VSTATS_NEGSTD) &&
             !ck_is_cpu(T)) {
        /* Device memory is not read back to check the values (that would
         * synchronise the caller's queue): the call runs, and must end
         * cleanly with well-formed lists (NaN statistics give NaN bonuses,
         * non-finite scores, the forced blocks only). */
        if (stem_synchronize(T->dev->ctx) != STEM_OK)
            fail_msg("%s: stem_synchronize: %s", ms_name[m->a], stem_last_error());
        int32_t cnt[HQ * NK]; /* the buffer's size; the call's rows come first */
        ck_read(&T->res, bc, sizeof cnt, cnt, "count");
        for (int i = 0; i < HQ * ROWS; ++i)
            if (cnt[i] < 1 || cnt[i] > NK)
                fail_msg("%s: count[%d] = %d", ms_name[m->a], i, cnt[i]);
        return;
    } else if (st != STEM_ERR_INVALID_ARGUMENT)
        fail_msg("%s: returned %s, expected STEM_ERR_INVALID_ARGUMENT", ms_name[m->a],
                 stem_status_name(st));
    if (!stem_last_error()[0])
        fail_msg("%s: no message", ms_name[m->a]);
    ck_untouched(&T->res, bo, (size_t)HQ * M * DH * 4 * 2, "out");
    ck_untouched(&T->res, bi, (size_t)HQ * NK * NK * 4, "index");
    ck_untouched(&T->res, bc, (size_t)HQ * NK * 4, "count");
    ck_untouched(&T->res, bx, 64, "lse / vstats_out");
}

/* ------------------------------------------------------------- the list */

int conf_add_chunked_cases(conf_misuse *list, int cap)
{
    int k = 0;
    if (cap < CONF_CHUNKED_CASES)
        return 0;
    static const int prefixes[][2] = {{0, 0}, {128, 0}, {640, 0}, {677, 0}, {677, 4000}};
    snprintf(list[k].name, sizeof list[k].name, "chunked_c1_aligned_provided_n%d", CK_N1);
    list[k].fn = chunked_vs_oneshot;
    list[k++].a = 1;
    snprintf(list[k].name, sizeof list[k].name, "chunked_c2_aligned_visible_n%d", CK_N1);
    list[k].fn = chunked_vs_oneshot;
    list[k++].a = 0;
    for (int i = 0; i < 5; ++i) {
        snprintf(list[k].name, sizeof list[k].name, "chunked_c4_prefix%d_prompt%d",
                 prefixes[i][0], prefixes[i][1]);
        list[k].fn = prefix_vs_reference;
        list[k].a = prefixes[i][0];
        list[k++].b = prefixes[i][1];
    }
    for (int i = 0; i < (int)(sizeof ck_c3_shapes / sizeof ck_c3_shapes[0]); ++i)
        for (int pr = 0; pr < 2; ++pr) {
            snprintf(list[k].name, sizeof list[k].name, "chunked_c3_unaligned_%s%s",
                     pr ? "provided" : "visible", ck_c3_shapes[i].name);
            list[k].fn = unaligned_chunks;
            list[k].a = pr;
            list[k++].b = i;
        }
    snprintf(list[k].name, sizeof list[k].name, "chunked_c8_dense_bottom_right");
    list[k].fn = dense_bottom_right;
    list[k++].a = 0;
    snprintf(list[k].name, sizeof list[k].name, "chunked_c8_dense_single_query_every_position");
    list[k].fn = dense_bottom_right;
    list[k++].a = 1;
    snprintf(list[k].name, sizeof list[k].name, "chunked_c10_provided_extreme_vstats");
    list[k++].fn = provided_extreme;
    snprintf(list[k].name, sizeof list[k].name, "api_plan_reuse_prefill_passes_then_score");
    list[k++].fn = plan_reuse_passes;
    for (int a = 0; a < MS_N; ++a) {
        snprintf(list[k].name, sizeof list[k].name, "misuse_chunked_%s", ms_name[a]);
        list[k].fn = misuse_chunked;
        list[k++].a = a;
    }
    return k;
}
