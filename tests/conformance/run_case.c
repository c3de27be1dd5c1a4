/* One conformance case: inputs -> library buffers -> score, select,
 * attention, prefill (and optionally caller-made lists) -> compare each with
 * the reference, and check that nothing outside the outputs changed. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cases.h"
#include "compare.h"
#include "harness.h"
#include "run.h"
#include "stem_ref.h"
#include "stem_synth.h"

enum { T_Q, T_K, T_V, T_SCORES, T_INDEX, T_COUNT, T_OUT, T_N };
static const char *const tname[T_N] = {"q", "k", "v", "scores", "index", "count", "out"};

typedef struct bufset {
    conf_buffer b[T_N];
    int nb;
    conf_tensor t[T_N];
} bufset;

static double now_s(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHECK_OK(call, what)                                                                  \
    do {                                                                                      \
        stem_status st_ = (call);                                                             \
        if (st_ != STEM_OK)                                                                   \
            fail_msg("%s returned %s: %s", what, stem_status_name(st_), stem_last_error());   \
    } while (0)

/* --------------------------------------------------------------- buffers */

static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

/* Lays the seven tensors out in one buffer each (SEPARATE) or in an input
 * and an output buffer, with gaps (offsets) and tail canaries. */
static void plan_tensors(const conf_case *c, int64_t n, bufset *bs)
{
    const int64_t B = c->batch, Hq = c->hq, Hkv = c->hkv, N = c->n_tokens, D = c->head_dim;
    const int64_t dims[T_N][4] = {{B, Hq, N, D}, {B, Hkv, N, D}, {B, Hkv, N, D}, {B, Hq, n, n},
                                  {B, Hq, n, n}, {B, Hq, n, 1},  {B, Hq, N, D}};
    const stem_dtype dt[T_N] = {c->in_dtype,    c->in_dtype,    c->in_dtype,  STEM_DTYPE_F32,
                                STEM_DTYPE_I32, STEM_DTYPE_I32, c->out_dtype};
    const conf_layout lay[T_N] = {c->in_layout,   c->in_layout,   c->in_layout, c->meta_layout,
                                  c->meta_layout, c->meta_layout, c->out_layout};
    const int separate = c->bufmode == CONF_BUF_SEPARATE;
    size_t end[T_N] = {0};
    bs->nb = separate ? T_N : 2;
    for (int i = 0; i < T_N; ++i) {
        conf_tensor *t = &bs->t[i];
        memset(t, 0, sizeof *t);
        t->t.dtype = dt[i];
        memcpy(t->t.dims, dims[i], sizeof dims[i]);
        t->extent = conf_layout_strides(lay[i], dims[i], t->t.strides);
        t->buf = separate ? i : (i >= T_SCORES);
        const size_t es = stem_dtype_size(dt[i]);
        size_t off = end[t->buf];
        if (!separate && off)
            off = round_up(off, 256);
        if (c->offsets)
            off += round_up(32 + (size_t)(3 + 5 * i) * es, es); /* not 16-byte aligned */
        t->t.offset = off;
        end[t->buf] = off + (size_t)t->extent * es;
    }
    for (int k = 0; k < bs->nb; ++k) {
        memset(&bs->b[k], 0, sizeof bs->b[k]);
        bs->b[k].size = end[k] + ((separate && !c->offsets) ? 0 : 48);
    }
}

/* Shadows, roles, initial contents; then the library buffers. */
static void create_buffers(conf_test *T, const conf_case *c, bufset *bs, const float *qkv[3])
{
    conf_res *R = &T->res;
    for (int k = 0; k < bs->nb; ++k) {
        conf_buffer *b = &bs->b[k];
        b->shadow = res_alloc(R, b->size);
        b->read = res_alloc(R, b->size);
        b->role = res_alloc(R, b->size);
        memset(b->shadow, CONF_CANARY, b->size);
    }
    for (int i = 0; i < T_N; ++i) {
        conf_tensor *t = &bs->t[i];
        conf_buffer *b = &bs->b[t->buf];
        conf_mark_roles(b->role, &t->t, (unsigned char)(i + 1));
        if (i >= T_SCORES) {
            conf_poison(b->shadow, &t->t);
            continue;
        }
        const float *src = qkv[i];
        const int64_t *dm = t->t.dims;
        for (int64_t bb = 0; bb < dm[0]; ++bb)
            for (int64_t h = 0; h < dm[1]; ++h)
                for (int64_t tok = 0; tok < dm[2]; ++tok) {
                    const float *row = src + ((bb * dm[1] + h) * dm[2] + tok) * dm[3];
                    for (int64_t e = 0; e < dm[3]; ++e)
                        conf_store(c->in_dtype, conf_elem(b->shadow, &t->t, bb, h, tok, e), row[e]);
                }
    }
    for (int k = 0; k < bs->nb; ++k) {
        conf_buffer *b = &bs->b[k];
        stem_buffer *buf = NULL;
        if (c->bufmode == CONF_BUF_WRAP) {
            b->host = res_alloc(R, b->size);
            memcpy(b->host, b->shadow, b->size);
            /* A GPU backend may not wrap host memory: then it is an owned buffer. */
            const stem_status ws = stem_buffer_wrap_host(T->dev->ctx, b->host, b->size, &buf);
            if (ws == STEM_ERR_UNSUPPORTED) {
                CHECK_OK(stem_buffer_create(T->dev->ctx, b->size, &buf), "stem_buffer_create");
                res_add_buffer(R, buf);
                CHECK_OK(stem_buffer_write(buf, 0, b->shadow, b->size), "stem_buffer_write");
            } else {
                CHECK_OK(ws, "stem_buffer_wrap_host");
                res_add_buffer(R, buf);
            }
        } else {
            CHECK_OK(stem_buffer_create(T->dev->ctx, b->size, &buf), "stem_buffer_create");
            res_add_buffer(R, buf);
            CHECK_OK(stem_buffer_write(buf, 0, b->shadow, b->size), "stem_buffer_write");
        }
        if (stem_buffer_size(buf) != b->size)
            fail_msg("stem_buffer_size = %zu, created with %zu", stem_buffer_size(buf), b->size);
        b->buf = buf;
    }
    for (int i = 0; i < T_N; ++i)
        bs->t[i].t.buffer = bs->b[bs->t[i].buf].buf;
}

/* Reads every buffer back. Bytes of tensors in `written` may change (and
 * become the new expectation); every other byte must be as before. */
static void check_buffers(bufset *bs, unsigned written, const char *stage)
{
    for (int k = 0; k < bs->nb; ++k) {
        conf_buffer *b = &bs->b[k];
        CHECK_OK(stem_buffer_read(b->buf, 0, b->read, b->size), "stem_buffer_read");
        if (memcmp(b->read, b->shadow, b->size) == 0)
            continue;
        for (size_t i = 0; i < b->size; ++i) {
            if (b->read[i] == b->shadow[i])
                continue;
            const int role = b->role[i];
            if (role && (written & (1u << (role - 1))))
                continue;
            fail_msg("%s changed byte %zu of buffer %d (%s): 0x%02x, expected 0x%02x", stage, i,
                     k, role ? tname[role - 1] : "canary / padding", b->read[i], b->shadow[i]);
        }
    }
    for (int k = 0; k < bs->nb; ++k) {
        conf_buffer *b = &bs->b[k];
        for (size_t i = 0; i < b->size; ++i)
            if (b->role[i] && (written & (1u << (b->role[i] - 1))))
                b->shadow[i] = b->read[i];
    }
}

/* Resets the given output tensors to poison, on the device too. */
static void repoison(bufset *bs, unsigned which)
{
    unsigned dirty = 0;
    for (int i = T_SCORES; i < T_N; ++i)
        if (which & (1u << i)) {
            conf_poison(bs->b[bs->t[i].buf].shadow, &bs->t[i].t);
            dirty |= 1u << bs->t[i].buf;
        }
    for (int k = 0; k < bs->nb; ++k)
        if (dirty & (1u << k))
            CHECK_OK(stem_buffer_write(bs->b[k].buf, 0, bs->b[k].shadow, bs->b[k].size),
                     "stem_buffer_write");
}

/* Logical contents of an output tensor from the last read-back, contiguous. */
static void extract_f(const bufset *bs, int i, double *dst)
{
    const conf_tensor *t = &bs->t[i];
    unsigned char *img = bs->b[t->buf].read;
    int64_t e = 0;
    for (int64_t b = 0; b < t->t.dims[0]; ++b)
        for (int64_t h = 0; h < t->t.dims[1]; ++h)
            for (int64_t r = 0; r < t->t.dims[2]; ++r)
                for (int64_t c = 0; c < t->t.dims[3]; ++c)
                    dst[e++] = conf_load(t->t.dtype, conf_elem(img, &t->t, b, h, r, c));
}

static void extract_i(const bufset *bs, int i, int32_t *dst)
{
    const conf_tensor *t = &bs->t[i];
    unsigned char *img = bs->b[t->buf].read;
    int64_t e = 0;
    for (int64_t b = 0; b < t->t.dims[0]; ++b)
        for (int64_t h = 0; h < t->t.dims[1]; ++h)
            for (int64_t r = 0; r < t->t.dims[2]; ++r)
                for (int64_t c = 0; c < t->t.dims[3]; ++c)
                    memcpy(&dst[e++], conf_elem(img, &t->t, b, h, r, c), 4);
}

/* Writes contiguous lists into the index / count tensors (shadow + device). */
static void write_lists(bufset *bs, const int32_t *index, const int32_t *count)
{
    for (int i = T_INDEX; i <= T_COUNT; ++i) {
        const conf_tensor *t = &bs->t[i];
        const int32_t *src = i == T_INDEX ? index : count;
        int64_t e = 0;
        for (int64_t b = 0; b < t->t.dims[0]; ++b)
            for (int64_t h = 0; h < t->t.dims[1]; ++h)
                for (int64_t r = 0; r < t->t.dims[2]; ++r)
                    for (int64_t c = 0; c < t->t.dims[3]; ++c)
                        memcpy(conf_elem(bs->b[t->buf].shadow, &t->t, b, h, r, c), &src[e++], 4);
    }
    for (int k = 0; k < bs->nb; ++k)
        if (k == bs->t[T_INDEX].buf || k == bs->t[T_COUNT].buf)
            CHECK_OK(stem_buffer_write(bs->b[k].buf, 0, bs->b[k].shadow, bs->b[k].size),
                     "stem_buffer_write");
}

/* ------------------------------------------------------------- the case */

#define BIT(i) (1u << (i))

static void fail_diag(const char *stage, const conf_diag *d) { fail_msg("%s: %s", stage, d->msg); }

/* Caller-made lists: empty rows, diagonal only, random subsets with and
 * without the diagonal, full rows; junk after the count must be ignored. */
static void make_custom_lists(uint64_t seed, int64_t rows, int64_t n, int32_t *index,
                              int32_t *count)
{
    stem_rng rng;
    stem_rng_seed(&rng, seed ^ 0x11575ull);
    for (int64_t w = 0; w < rows; ++w)
        for (int64_t I = 0; I < n; ++I) {
            int32_t *row = index + (w * n + I) * n;
            const unsigned mode = (unsigned)(stem_rng_next(&rng) % 8);
            int32_t c = 0;
            for (int64_t J = 0; J <= I; ++J) {
                int keep = mode == 0   ? 0
                           : mode == 1 ? J == I
                           : mode == 2 ? 1
                           : mode == 3 ? (J < I && stem_rng_next(&rng) % 3 == 0)
                                       : stem_rng_next(&rng) % 2 == 0;
                if (keep)
                    row[c++] = (int32_t)J;
            }
            for (int64_t j = c; j < n; ++j)
                row[j] = (int32_t)(j % 3 == 0 ? -1 : j % 3 == 1 ? 7777 : I + 1);
            count[w * n + I] = c;
        }
}

/* Inputs whose block scores tie exactly: K and V repeat with the block
 * period, so every full key block has the same routing term and value
 * bonus; all values are multiples of 1/8 in [-1, 1], so every phase sum and
 * dot product is exact in f32 whatever the summation order. Selection must
 * then break the ties towards the lower block index, bit for bit. */
static void synth_ties(uint64_t seed, int64_t batch, int64_t hq, int64_t hkv, int64_t n_tokens,
                       int64_t d, int64_t block, float *q, float *k, float *v)
{
    stem_rng rng;
    stem_rng_seed(&rng, seed ^ 0x71E5ull);
    for (int64_t i = 0; i < batch * hq * n_tokens * d; ++i)
        q[i] = (float)((int)(stem_rng_next(&rng) % 17) - 8) / 8.0f;
    for (int64_t bh = 0; bh < batch * hkv; ++bh)
        for (int64_t t = 0; t < n_tokens; ++t)
            for (int64_t c = 0; c < d; ++c) {
                const int64_t e = (bh * n_tokens + t) * d + c;
                if (t < block) {
                    k[e] = (float)((int)(stem_rng_next(&rng) % 17) - 8) / 8.0f;
                    v[e] = (float)((int)(stem_rng_next(&rng) % 17) - 8) / 8.0f;
                } else {
                    k[e] = k[e - block * d];
                    v[e] = v[e - block * d];
                }
            }
}

void conf_run_case(conf_test *T)
{
    const conf_case *c = T->c;
    conf_res *R = &T->res;
    const double t0 = now_s();
    double t_ref = 0.0;
    const int64_t B = c->batch, Hq = c->hq, Hkv = c->hkv, N = c->n_tokens, D = c->head_dim;
    const int32_t bs_ = c->cfg.block_size;
    const int64_t n = (N + bs_ - 1) / bs_;
    const int64_t nq_el = B * Hq * N * D, nkv_el = B * Hkv * N * D;
    const int64_t rows = B * Hq, nn = rows * n * n;
    /* P may be rounded to the input dtype before P V (docs/semantics.md,
     * section 6): on GPUs, and on the CPU for bf16 inputs. */
    const int loose_p = T->dev->info.is_gpu || c->in_dtype == STEM_DTYPE_BF16;
    stem_config cfg = c->cfg;

    /* Inputs, rounded to the storage dtype; the reference sees the rounded values. */
    float *qf = res_alloc(R, (size_t)nq_el * 4), *kf = res_alloc(R, (size_t)nkv_el * 4);
    float *vf = res_alloc(R, (size_t)nkv_el * 4);
    if (c->ties)
        synth_ties(c->seed, B, Hq, Hkv, N, D, bs_, qf, kf, vf);
    else
        stem_synth_qkv(c->kind, c->seed, B, Hq, Hkv, N, D, qf, kf, vf);
    if (c->small_v)
        for (int64_t i = 0; i < nkv_el; ++i)
            vf[i] *= 0.0625f; /* exact: a power of two */
    double *qd = res_alloc(R, (size_t)nq_el * 8), *kd = res_alloc(R, (size_t)nkv_el * 8);
    double *vd = res_alloc(R, (size_t)nkv_el * 8);
    for (int64_t i = 0; i < nq_el; ++i)
        qd[i] = qf[i] = conf_round_to(c->in_dtype, qf[i]);
    for (int64_t i = 0; i < nkv_el; ++i) {
        kd[i] = kf[i] = conf_round_to(c->in_dtype, kf[i]);
        vd[i] = vf[i] = conf_round_to(c->in_dtype, vf[i]);
    }
    stem_ref_problem p;
    memset(&p, 0, sizeof p);
    p.batch = B;
    p.hq = Hq;
    p.hkv = Hkv;
    p.n_tokens = N;
    p.head_dim = D;
    p.scale = c->softmax_scale > 0.0f ? (double)c->softmax_scale : 1.0 / sqrt((double)D);
    p.layer_index = c->layer_index;
    p.q = qd;
    p.k = kd;
    p.v = vd;

    /* The plan and its schedule. */
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = B;
    desc.num_q_heads = Hq;
    desc.num_kv_heads = Hkv;
    desc.q_len = desc.kv_len = N;
    desc.head_dim = D;
    desc.dtype = c->in_dtype;
    desc.softmax_scale = c->softmax_scale;
    desc.layer_index = c->layer_index;
    stem_plan *plan = NULL;
    CHECK_OK(stem_plan_create(T->dev->ctx, &desc, &cfg, &plan), "stem_plan_create");
    res_add_plan(R, plan);
    stem_plan_info info;
    stem_plan_info_init(&info);
    CHECK_OK(stem_plan_get_info(plan, &info), "stem_plan_get_info");
    int32_t *budget = res_alloc(R, (size_t)n * 4), *ref_budget = res_alloc(R, (size_t)n * 4);
    const int ref_dense = stem_ref_budget(&cfg, N, c->layer_index, ref_budget);
    CHECK_OK(stem_plan_get_budget(plan, budget, (size_t)n), "stem_plan_get_budget");
    if (info.num_q_blocks != n || info.num_k_blocks != n)
        fail_msg("plan info: %lld x %lld blocks, expected %lld", (long long)info.num_q_blocks,
                 (long long)info.num_k_blocks, (long long)n);
    if (!!info.dense != !!ref_dense)
        fail_msg("plan info: dense = %d, reference says %d", info.dense, ref_dense);
    if (info.selector != cfg.selector)
        fail_msg("plan info: selector %d, expected %d", (int)info.selector, (int)cfg.selector);
    for (int64_t I = 0; I < n; ++I)
        if (budget[I] != ref_budget[I])
            fail_msg("stem_plan_get_budget: row %lld budget %d, reference %d", (long long)I,
                     budget[I], ref_budget[I]);
    if (info.k_end != budget[n - 1])
        fail_msg("plan info: k_end = %d, last row budget %d", info.k_end, budget[n - 1]);
    if (info.dense && info.k_start != n)
        fail_msg("plan info: dense plan with k_start = %d, expected nk = %lld", info.k_start,
                 (long long)n);
    if (!info.dense && cfg.selector != STEM_SELECTOR_XATTENTION &&
        cfg.selector != STEM_SELECTOR_XATTENTION_STRICT) {
        int dd = 0;
        const int32_t ks = stem_ref_k_start(&cfg, N, c->layer_index, &dd);
        if (info.k_start != ks)
            fail_msg("plan info: k_start = %d, reference %d", info.k_start, ks);
    }
    if (c->prefill == CONF_PREFILL_WS) {
        stem_buffer *ws = NULL;
        CHECK_OK(stem_buffer_create(T->dev->ctx, info.workspace_bytes + 64, &ws),
                 "stem_buffer_create(workspace)");
        res_add_buffer(R, ws);
        CHECK_OK(stem_plan_set_workspace(plan, ws, 64), "stem_plan_set_workspace");
    }

    /* Buffers: inputs written, outputs poisoned, canaries around everything. */
    bufset *bs = res_alloc(R, sizeof *bs);
    plan_tensors(c, n, bs);
    const float *qkv[3] = {qf, kf, vf};
    create_buffers(T, c, bs, qkv);
    const stem_tensor *tq = &bs->t[T_Q].t, *tk = &bs->t[T_K].t, *tv = &bs->t[T_V].t;
    const stem_tensor *ts = &bs->t[T_SCORES].t, *ti = &bs->t[T_INDEX].t;
    const stem_tensor *tc = &bs->t[T_COUNT].t, *to = &bs->t[T_OUT].t;
    conf_diag dg_s = {"", 0.0, 0, 0}, dg_a = {"", 0.0, 0, 0}, dg = {"", 0.0, 0, 0}, dg_l = {"", 0.0, 0, 0};

    /* 1. scores */
    CHECK_OK(stem_score(plan, tq, tk, tv, ts), "stem_score");
    CHECK_OK(stem_synchronize(T->dev->ctx), "stem_synchronize");
    check_buffers(bs, BIT(T_SCORES), "stem_score");
    double *got_s = res_alloc(R, (size_t)nn * 8), *ref_s = res_alloc(R, (size_t)nn * 8);
    double *tol_s = res_alloc(R, (size_t)nn * 8);
    extract_f(bs, T_SCORES, got_s);
    double tr = now_s();
    conf_ref_scores(&p, &cfg, ref_s);
    t_ref += now_s() - tr;
    conf_score_tolerance(&p, &cfg, ref_s, tol_s);
    if (conf_compare_scores(&p, &cfg, got_s, ref_s, tol_s, &dg_s))
        fail_diag("stem_score", &dg_s);

    /* 2. selection: exact on the backend's own scores, tie-tolerant on the reference's. */
    CHECK_OK(stem_select(plan, ts, ti, tc), "stem_select");
    CHECK_OK(stem_synchronize(T->dev->ctx), "stem_synchronize");
    check_buffers(bs, BIT(T_INDEX) | BIT(T_COUNT), "stem_select");
    int32_t *got_i = res_alloc(R, (size_t)nn * 4), *got_c = res_alloc(R, (size_t)(rows * n) * 4);
    int32_t *want_i = res_alloc(R, (size_t)nn * 4), *want_c = res_alloc(R, (size_t)(rows * n) * 4);
    extract_i(bs, T_INDEX, got_i);
    extract_i(bs, T_COUNT, got_c);
    if (conf_check_lists(&p, n, got_i, got_c, &dg))
        fail_diag("stem_select", &dg);
    tr = now_s();
    conf_ref_select(&p, &cfg, got_s, want_i, want_c);
    t_ref += now_s() - tr;
    if (conf_compare_selection(&p, &cfg, n, budget, info.dense, got_s, NULL, want_i, want_c,
                               got_i, got_c, &dg))
        fail_diag("stem_select (vs reference selection on the backend's scores)", &dg);
    tr = now_s();
    conf_ref_select(&p, &cfg, ref_s, want_i, want_c);
    t_ref += now_s() - tr;
    if (conf_compare_selection(&p, &cfg, n, budget, info.dense, ref_s, tol_s, want_i, want_c,
                               got_i, got_c, &dg_l))
        fail_diag("stem_select (vs reference selection on reference scores)", &dg_l);

    long split_lag = -1, split_sink = -1;
    if (cfg.selector == STEM_SELECTOR_XATTENTION || cfg.selector == STEM_SELECTOR_XATTENTION_STRICT) {
        conf_xattn_rule_split(&p, &cfg, n, ref_s, &split_lag, &split_sink);
        if (c->xattn_split && !info.dense && (split_lag == 0 || split_sink == 0))
            fail_msg("the reference masses do not separate the XAttention rules: %ld rows differ "
                     "with block 0 kept by mass, %ld with block 0 rejected by mass (want both > 0)",
                     split_lag, split_sink);
    }

    /* 3. attention over the backend's lists, so tie choices do not matter. */
    CHECK_OK(stem_attention(plan, tq, tk, tv, ti, tc, to), "stem_attention");
    CHECK_OK(stem_synchronize(T->dev->ctx), "stem_synchronize");
    check_buffers(bs, BIT(T_OUT), "stem_attention");
    double *got_o = res_alloc(R, (size_t)nq_el * 8), *ref_o = res_alloc(R, (size_t)nq_el * 8);
    extract_f(bs, T_OUT, got_o);
    tr = now_s();
    conf_ref_attention(&p, bs_, got_i, got_c, ref_o);
    t_ref += now_s() - tr;
    if (conf_compare_attention(&p, bs_, got_i, got_c, ref_o, got_o, c->in_dtype, c->out_dtype,
                               loose_p, &dg_a))
        fail_diag("stem_attention", &dg_a);

    /* 4. prefill into freshly poisoned outputs. */
    const int all = c->prefill == CONF_PREFILL_ALL;
    repoison(bs, BIT(T_SCORES) | BIT(T_INDEX) | BIT(T_COUNT) | BIT(T_OUT));
    CHECK_OK(stem_prefill(plan, tq, tk, tv, to, all ? ts : NULL, all ? ti : NULL, all ? tc : NULL),
             "stem_prefill");
    CHECK_OK(stem_synchronize(T->dev->ctx), "stem_synchronize");
    check_buffers(bs, BIT(T_OUT) | (all ? BIT(T_SCORES) | BIT(T_INDEX) | BIT(T_COUNT) : 0),
                  "stem_prefill");
    double *pf_o = res_alloc(R, (size_t)nq_el * 8);
    extract_f(bs, T_OUT, pf_o);
    const int32_t *pf_i = got_i, *pf_c = got_c;
    if (all) {
        double *pf_s = res_alloc(R, (size_t)nn * 8);
        int32_t *li = res_alloc(R, (size_t)nn * 4), *lc = res_alloc(R, (size_t)(rows * n) * 4);
        extract_f(bs, T_SCORES, pf_s);
        extract_i(bs, T_INDEX, li);
        extract_i(bs, T_COUNT, lc);
        if (conf_compare_scores(&p, &cfg, pf_s, ref_s, tol_s, &dg))
            fail_diag("stem_prefill scores", &dg);
        if (conf_check_lists(&p, n, li, lc, &dg))
            fail_diag("stem_prefill lists", &dg);
        if (memcmp(li, got_i, (size_t)nn * 4) != 0 || memcmp(lc, got_c, (size_t)(rows * n) * 4) != 0) {
            /* Allowed only if the scores differ too; then judge them on their own. */
            if (memcmp(pf_s, got_s, (size_t)nn * 8) == 0)
                fail_msg("stem_prefill: lists differ from stem_select on identical scores");
            conf_ref_select(&p, &cfg, pf_s, want_i, want_c);
            if (conf_compare_selection(&p, &cfg, n, budget, info.dense, pf_s, NULL, want_i,
                                       want_c, li, lc, &dg))
                fail_diag("stem_prefill selection (on its own scores)", &dg);
            conf_ref_attention(&p, bs_, li, lc, ref_o);
            pf_i = li;
            pf_c = lc;
        }
    }
    if (conf_compare_attention(&p, bs_, pf_i, pf_c, ref_o, pf_o, c->in_dtype, c->out_dtype,
                               loose_p, &dg))
        fail_diag("stem_prefill out", &dg);

    /* 5. caller-made lists through stem_attention. */
    if (c->custom_lists) {
        make_custom_lists(c->seed, rows, n, want_i, want_c);
        write_lists(bs, want_i, want_c);
        repoison(bs, BIT(T_OUT));
        CHECK_OK(stem_attention(plan, tq, tk, tv, ti, tc, to), "stem_attention(custom lists)");
        CHECK_OK(stem_synchronize(T->dev->ctx), "stem_synchronize");
        check_buffers(bs, BIT(T_OUT), "stem_attention(custom lists)");
        extract_f(bs, T_OUT, got_o);
        tr = now_s();
        conf_ref_attention(&p, bs_, want_i, want_c, ref_o);
        t_ref += now_s() - tr;
        if (conf_compare_attention(&p, bs_, want_i, want_c, ref_o, got_o, c->in_dtype,
                                   c->out_dtype, loose_p, &dg))
            fail_diag("stem_attention(custom lists)", &dg);
    }

    T->seconds = now_s() - t0;
    char split[96] = "";
    if (split_lag >= 0)
        snprintf(split, sizeof split, "; XAttention rules differ in %ld + %ld rows",
                 split_lag, split_sink);
    if (conf_verbose())
        print_message("[   INFO   ] %s: %.3f s (reference %.3f s, est %.2g MAC), worst err/tol: "
                      "scores %.3g, attention %.3g; sparse rows %ld of %lld, tie-zone rows %ld%s\n",
                      c->name, T->seconds, t_ref, c->cost, dg_s.worst, dg_a.worst, dg_l.rows_sparse,
                      (long long)(rows * n), dg_l.rows_tied, split);
}
