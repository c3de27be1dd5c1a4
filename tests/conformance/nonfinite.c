/* API cases for the non-finite input policy (docs/semantics.md section 7)
 * and for sizes near the limits, run on every device like the misuse cases.
 *
 * Non-finite inputs: one NaN or Inf is planted in Q, K or V of a small
 * sparse problem and every output is compared with the same problem without
 * it: entries the policy says the value reaches must be NaN (non-finite
 * for Inf), every other entry must match the clean run, and block lists
 * stay well formed and deterministic. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "run.h"
#include "stem_synth.h"

/* B = 1, Hq = 2, Hkv = 1, N = 160 (10 blocks of 16), d = 64; Q, K, V f32 or f16
 * (f16 takes a GPU's tensor-core path where there is one), output f32. */
enum { NF_HQ = 2, NF_HKV = 1, NF_N = 160, NF_D = 64, NF_BLK = 16, NF_NB = NF_N / NF_BLK };
#define NF_QN ((size_t)NF_HQ * NF_N * NF_D)
#define NF_KN ((size_t)NF_HKV * NF_N * NF_D)
#define NF_SN ((size_t)NF_HQ * NF_NB * NF_NB)

typedef struct nf_run {
    float out[NF_QN];
    float scores[NF_SN];
    int32_t index[NF_SN], count[NF_HQ * NF_NB];
} nf_run;

typedef struct nf_problem {
    stem_context *ctx;
    stem_dtype dtype; /* of Q, K, V */
    stem_plan *plan;
    stem_config cfg;
    int32_t budget[NF_NB];
    stem_buffer *bq, *bk, *bv, *bo, *bs, *bi, *bc;
    stem_tensor tq, tk, tv, to, ts, ti, tc;
} nf_problem;

static stem_buffer *nf_buffer(conf_test *T, size_t bytes)
{
    stem_buffer *b = NULL;
    if (stem_buffer_create(T->dev->ctx, bytes, &b) != STEM_OK)
        fail_msg("stem_buffer_create(%zu): %s", bytes, stem_last_error());
    res_add_buffer(&T->res, b);
    return b;
}

static void nf_init(conf_test *T, nf_problem *p, stem_dtype dtype)
{
    memset(p, 0, sizeof *p);
    p->ctx = T->dev->ctx;
    p->dtype = dtype;
    stem_attention_desc d;
    stem_attention_desc_init(&d);
    d.num_q_heads = NF_HQ;
    d.num_kv_heads = NF_HKV;
    d.q_len = d.kv_len = NF_N;
    d.head_dim = NF_D;
    d.dtype = dtype;
    stem_config_init(&p->cfg);
    p->cfg.block_size = NF_BLK;
    p->cfg.stride = 4;
    p->cfg.k_start = 3;
    p->cfg.sink_blocks = 1;
    p->cfg.local_blocks = 1;
    if (stem_plan_create(p->ctx, &d, &p->cfg, &p->plan) != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    res_add_plan(&T->res, p->plan);
    if (stem_plan_get_budget(p->plan, p->budget, NF_NB) != STEM_OK)
        fail_msg("stem_plan_get_budget: %s", stem_last_error());
    p->bq = nf_buffer(T, NF_QN * 4);
    p->bk = nf_buffer(T, NF_KN * 4);
    p->bv = nf_buffer(T, NF_KN * 4);
    p->bo = nf_buffer(T, NF_QN * 4);
    p->bs = nf_buffer(T, NF_SN * 4);
    p->bi = nf_buffer(T, NF_SN * 4);
    p->bc = nf_buffer(T, NF_HQ * NF_NB * 4);
    p->tq = stem_tensor_bhnd(p->bq, 0, dtype, 1, NF_HQ, NF_N, NF_D);
    p->tk = stem_tensor_bhnd(p->bk, 0, dtype, 1, NF_HKV, NF_N, NF_D);
    p->tv = stem_tensor_bhnd(p->bv, 0, dtype, 1, NF_HKV, NF_N, NF_D);
    p->to = stem_tensor_bhnd(p->bo, 0, STEM_DTYPE_F32, 1, NF_HQ, NF_N, NF_D);
    p->ts = stem_tensor_bhnd(p->bs, 0, STEM_DTYPE_F32, 1, NF_HQ, NF_NB, NF_NB);
    p->ti = stem_tensor_bhnd(p->bi, 0, STEM_DTYPE_I32, 1, NF_HQ, NF_NB, NF_NB);
    p->tc = stem_tensor_bhnd(p->bc, 0, STEM_DTYPE_I32, 1, NF_HQ, NF_NB, 1);
}

static void nf_write(stem_buffer *b, const void *src, size_t bytes)
{
    if (stem_buffer_write(b, 0, src, bytes) != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
}

/* n floats as the problem's input dtype (non-finite values stay non-finite). */
static void nf_write_input(const nf_problem *p, stem_buffer *b, const float *src, size_t n)
{
    if (p->dtype == STEM_DTYPE_F32) {
        nf_write(b, src, n * 4);
        return;
    }
    uint16_t *h = malloc(n * 2);
    if (!h)
        fail_msg("out of memory");
    for (size_t i = 0; i < n; ++i)
        h[i] = conf_f32_to_f16(src[i]);
    const stem_status st = stem_buffer_write(b, 0, h, n * 2);
    free(h);
    if (st != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
}

static void nf_read(stem_buffer *b, void *dst, size_t bytes)
{
    if (stem_buffer_read(b, 0, dst, bytes) != STEM_OK)
        fail_msg("stem_buffer_read: %s", stem_last_error());
}

static void nf_sync(const nf_problem *p, stem_status st, const char *what)
{
    if (st == STEM_OK)
        st = stem_synchronize(p->ctx);
    if (st != STEM_OK)
        fail_msg("%s returned %s on non-finite input (must run): %s", what, stem_status_name(st),
                 stem_last_error());
}

/* score, then attention over full causal lists (so the lists do not depend
 * on the scores), then prefill with every output. */
static void nf_stages(const nf_problem *p, const float *q, const float *k, const float *v,
                      nf_run *score_attn, nf_run *prefill)
{
    nf_write_input(p, p->bq, q, NF_QN);
    nf_write_input(p, p->bk, k, NF_KN);
    nf_write_input(p, p->bv, v, NF_KN);
    nf_sync(p, stem_score(p->plan, &p->tq, &p->tk, &p->tv, &p->ts), "stem_score");
    nf_read(p->bs, score_attn->scores, sizeof score_attn->scores);
    for (int h = 0; h < NF_HQ; ++h)
        for (int i = 0; i < NF_NB; ++i) {
            score_attn->count[h * NF_NB + i] = i + 1;
            for (int j = 0; j < NF_NB; ++j)
                score_attn->index[(h * NF_NB + i) * NF_NB + j] = j <= i ? j : -1;
        }
    nf_write(p->bi, score_attn->index, sizeof score_attn->index);
    nf_write(p->bc, score_attn->count, sizeof score_attn->count);
    nf_sync(p, stem_attention(p->plan, &p->tq, &p->tk, &p->tv, &p->ti, &p->tc, &p->to),
            "stem_attention");
    nf_read(p->bo, score_attn->out, sizeof score_attn->out);
    if (!prefill)
        return;
    nf_sync(p, stem_prefill(p->plan, &p->tq, &p->tk, &p->tv, &p->to, &p->ts, &p->ti, &p->tc),
            "stem_prefill");
    nf_read(p->bo, prefill->out, sizeof prefill->out);
    nf_read(p->bs, prefill->scores, sizeof prefill->scores);
    nf_read(p->bi, prefill->index, sizeof prefill->index);
    nf_read(p->bc, prefill->count, sizeof prefill->count);
}

static int close_to(float a, float b)
{
    return isfinite(a) && isfinite(b) ? fabsf(a - b) <= 1e-4f * fmaxf(1.0f, fabsf(b))
                                      : (isnan(a) && isnan(b)) || a == b;
}

/* What a planted value may reach. */
enum { REACH_NONE = 0, REACH_NAN, REACH_NONFINITE, REACH_ANY };

static void expect_entry(int reach, float got, float clean, const char *what, int h, int r, int c)
{
    switch (reach) {
    case REACH_NAN:
        if (!isnan(got))
            fail_msg("%s[h%d][%d][%d] = %g, expected NaN", what, h, r, c, (double)got);
        break;
    case REACH_NONFINITE:
        if (isfinite(got))
            fail_msg("%s[h%d][%d][%d] = %g, expected a non-finite value", what, h, r, c,
                     (double)got);
        break;
    case REACH_ANY: break;
    default:
        if (!close_to(got, clean))
            fail_msg("%s[h%d][%d][%d] = %g, the run without the non-finite input gives %g "
                     "(it must not reach here)",
                     what, h, r, c, (double)got, (double)clean);
    }
}

/* Lists from stem_select / stem_prefill: ascending, causal, padded with
 * -1, forced blocks kept, and exactly the documented top-k of the finite
 * scores (docs/semantics.md section 5) given the scores in s. */
static void expect_lists(const nf_problem *p, const float *s, const int32_t *index,
                         const int32_t *count)
{
    for (int h = 0; h < NF_HQ; ++h)
        for (int I = 0; I < NF_NB; ++I) {
            const float *row = s + (h * NF_NB + I) * NF_NB;
            int keep[NF_NB] = {0}, nkeep = 0;
            if (I + 1 <= p->budget[I]) {
                for (int J = 0; J <= I; ++J)
                    keep[J] = 1;
            } else {
                for (int r = 0; r < p->budget[I]; ++r) { /* best finite, ties to the lower J */
                    int best = -1;
                    for (int J = 0; J <= I; ++J)
                        if (!keep[J] && isfinite(row[J]) && (best < 0 || row[J] > row[best]))
                            best = J;
                    if (best < 0)
                        break;
                    keep[best] = 1;
                }
                for (int J = 0; J <= I; ++J)
                    if (J < p->cfg.sink_blocks || J > I - p->cfg.local_blocks)
                        keep[J] = 1;
            }
            for (int J = 0; J <= I; ++J)
                nkeep += keep[J];
            const int32_t *got = index + (h * NF_NB + I) * NF_NB;
            if (count[h * NF_NB + I] != nkeep)
                fail_msg("head %d row %d: %d blocks kept, expected %d", h, I,
                         count[h * NF_NB + I], nkeep);
            for (int r = 0, J = 0; r < NF_NB; ++r) {
                while (J <= I && !keep[J])
                    ++J;
                const int32_t want = r < nkeep ? J++ : -1;
                if (got[r] != want)
                    fail_msg("head %d row %d entry %d: %d, expected %d", h, I, r, got[r], want);
            }
        }
}

/* One planted value: where, what, and what it reaches. */
typedef enum { NF_Q_NAN, NF_K_NAN, NF_V_NAN, NF_K_INF, NF_Q_NEGINF, NF_CASES } nf_case;
static const char *const nf_name[NF_CASES] = {"q_nan", "k_nan", "v_nan", "k_inf", "q_neginf"};

/* Token and component of the planted value: token 70 is in block 4,
 * token 90 in block 5. Q is planted in head 1 only. */
enum { NF_QTOK = 70, NF_KTOK = 90, NF_QHEAD = 1, NF_COMP = 5 };

static void nonfinite_case(conf_test *T, const conf_misuse *m)
{
    const nf_case c = (nf_case)m->b;
    nf_problem p;
    nf_init(T, &p, m->a ? STEM_DTYPE_F16 : STEM_DTYPE_F32);
    float *q = res_alloc(&T->res, NF_QN * 4), *k = res_alloc(&T->res, NF_KN * 4),
          *v = res_alloc(&T->res, NF_KN * 4);
    stem_synth_qkv(STEM_SYNTH_STRUCTURED, 5, 1, NF_HQ, NF_HKV, NF_N, NF_D, q, k, v);
    nf_run *clean = res_alloc(&T->res, sizeof *clean), *clean_pf = res_alloc(&T->res, sizeof *clean);
    nf_run *got = res_alloc(&T->res, sizeof *got), *got_pf = res_alloc(&T->res, sizeof *got);
    nf_stages(&p, q, k, v, clean, clean_pf);
    switch (c) {
    case NF_Q_NAN: q[((size_t)NF_QHEAD * NF_N + NF_QTOK) * NF_D + NF_COMP] = NAN; break;
    case NF_Q_NEGINF: q[((size_t)NF_QHEAD * NF_N + NF_QTOK) * NF_D + NF_COMP] = -INFINITY; break;
    case NF_K_NAN: k[(size_t)NF_KTOK * NF_D + NF_COMP] = NAN; break;
    case NF_K_INF: k[(size_t)NF_KTOK * NF_D + NF_COMP] = INFINITY; break;
    default: v[(size_t)NF_KTOK * NF_D + NF_COMP] = NAN; break;
    }
    nf_stages(&p, q, k, v, got, got_pf);
    const int qblk = NF_QTOK / NF_BLK, kblk = NF_KTOK / NF_BLK;
    const int strong = c == NF_Q_NAN || c == NF_K_NAN || c == NF_V_NAN;

    /* stem_score: a Q value reaches its head's block row, a K value its
     * block column (rows at or below it) in every head of the group. A V
     * value may change the value bonus of every block (its statistics are
     * global), so only the structure is checked then. */
    for (int h = 0; h < NF_HQ; ++h)
        for (int I = 0; I < NF_NB; ++I)
            for (int J = 0; J < NF_NB; ++J) {
                const size_t at = ((size_t)h * NF_NB + I) * NF_NB + J;
                int reach = REACH_NONE;
                if (J > I)
                    reach = REACH_NONE; /* -inf in both runs */
                else if (c == NF_V_NAN)
                    reach = REACH_ANY;
                else if ((c == NF_Q_NAN || c == NF_Q_NEGINF) && h == NF_QHEAD && I == qblk)
                    reach = c == NF_Q_NAN ? REACH_NAN : REACH_NONFINITE;
                else if ((c == NF_K_NAN || c == NF_K_INF) && J == kblk)
                    reach = c == NF_K_NAN ? REACH_NAN : REACH_NONFINITE;
                expect_entry(reach, got->scores[at], clean->scores[at], "scores", h, I, J);
            }

    /* stem_attention on full causal lists: a Q value reaches its own output
     * row; a K value every later row (all components); a V value component
     * e of every later row, and may reach component e of the earlier rows
     * of its block (the diagonal block's P V product includes masked keys
     * with weight 0, and 0 * NaN is NaN). Inf may also give finite results. */
    for (int h = 0; h < NF_HQ; ++h)
        for (int t = 0; t < NF_N; ++t)
            for (int e = 0; e < NF_D; ++e) {
                const size_t at = ((size_t)h * NF_N + t) * NF_D + e;
                int reach = REACH_NONE;
                if ((c == NF_Q_NAN || c == NF_Q_NEGINF) && h == NF_QHEAD && t == NF_QTOK)
                    reach = strong ? REACH_NAN : REACH_ANY;
                else if ((c == NF_K_NAN || c == NF_K_INF) && t >= NF_KTOK)
                    reach = strong ? REACH_NAN : REACH_ANY;
                else if (c == NF_V_NAN && t >= NF_KTOK)
                    reach = e == NF_COMP ? REACH_NAN : REACH_NONE;
                else if (c == NF_V_NAN && t >= kblk * NF_BLK && e == NF_COMP)
                    reach = REACH_ANY; /* earlier queries of its block (0 * NaN) */
                expect_entry(reach, got->out[at], clean->out[at], "out", h, t, e);
            }

    /* stem_prefill: the lists are exactly the documented top-k of the
     * finite scores it wrote, twice in a row (deterministic), and rows the
     * value cannot reach keep their clean lists and outputs. */
    expect_lists(&p, got_pf->scores, got_pf->index, got_pf->count);
    nf_run *again = res_alloc(&T->res, sizeof *again);
    nf_sync(&p, stem_prefill(p.plan, &p.tq, &p.tk, &p.tv, &p.to, &p.ts, &p.ti, &p.tc),
            "stem_prefill");
    nf_read(p.bi, again->index, sizeof again->index);
    nf_read(p.bc, again->count, sizeof again->count);
    if (memcmp(again->index, got_pf->index, sizeof again->index) != 0 ||
        memcmp(again->count, got_pf->count, sizeof again->count) != 0)
        fail_msg("stem_prefill on the same non-finite input gave different lists");
    if (c != NF_V_NAN) {
        const int first_blk = c == NF_Q_NAN || c == NF_Q_NEGINF ? qblk : kblk;
        for (int h = 0; h < NF_HQ; ++h)
            for (int I = 0; I < first_blk; ++I) {
                if (got_pf->count[h * NF_NB + I] != clean_pf->count[h * NF_NB + I] ||
                    memcmp(got_pf->index + (h * NF_NB + I) * NF_NB,
                           clean_pf->index + (h * NF_NB + I) * NF_NB, NF_NB * 4) != 0)
                    fail_msg("prefill: head %d row %d (before the non-finite input) changed its "
                             "list", h, I);
                for (int t = I * NF_BLK; t < (I + 1) * NF_BLK; ++t)
                    for (int e = 0; e < NF_D; ++e) {
                        const size_t at = ((size_t)h * NF_N + t) * NF_D + e;
                        expect_entry(REACH_NONE, got_pf->out[at], clean_pf->out[at],
                                     "prefill out", h, t, e);
                    }
            }
    }
}

/* stem_select on hand-made scores: NaN, +inf and -inf in the causal part,
 * rows with fewer finite scores than the budget, a row with none. */
static void nonfinite_select(conf_test *T, const conf_misuse *m)
{
    (void)m;
    nf_problem p;
    nf_init(T, &p, STEM_DTYPE_F32);
    float *s = res_alloc(&T->res, NF_SN * 4);
    for (int h = 0; h < NF_HQ; ++h)
        for (int I = 0; I < NF_NB; ++I)
            for (int J = 0; J < NF_NB; ++J) {
                float x = J > I ? -INFINITY : (float)((I * 7 + J * 13 + h * 5) % 11) * 0.25f;
                const int pick = (I * 3 + J * 5 + h) % 7;
                if (J <= I && I >= 5) {
                    if (pick == 0)
                        x = NAN;
                    else if (pick == 1)
                        x = INFINITY;
                    else if (pick == 2)
                        x = -INFINITY;
                }
                if (J <= I && I == 8 && J > 1)
                    x = J % 2 ? NAN : INFINITY; /* two finite scores in the row */
                if (J <= I && I == 9)
                    x = NAN; /* none */
                s[(h * NF_NB + I) * NF_NB + J] = x;
            }
    nf_write(p.bs, s, NF_SN * 4);
    int32_t *idx = res_alloc(&T->res, NF_SN * 4), *cnt = res_alloc(&T->res, NF_HQ * NF_NB * 4);
    int32_t *idx2 = res_alloc(&T->res, NF_SN * 4), *cnt2 = res_alloc(&T->res, NF_HQ * NF_NB * 4);
    nf_sync(&p, stem_select(p.plan, &p.ts, &p.ti, &p.tc), "stem_select");
    nf_read(p.bi, idx, NF_SN * 4);
    nf_read(p.bc, cnt, NF_HQ * NF_NB * 4);
    expect_lists(&p, s, idx, cnt);
    nf_sync(&p, stem_select(p.plan, &p.ts, &p.ti, &p.tc), "stem_select");
    nf_read(p.bi, idx2, NF_SN * 4);
    nf_read(p.bc, cnt2, NF_HQ * NF_NB * 4);
    if (memcmp(idx, idx2, NF_SN * 4) != 0 || memcmp(cnt, cnt2, NF_HQ * NF_NB * 4) != 0)
        fail_msg("stem_select on the same non-finite scores gave different lists");
}

/* ------------------------------------------------------- size limits */

enum { HG_BUFFER, HG_PLAN_LIMITS, HG_PLAN_1M, HG_PLAN_HUGE_WORKSPACE, HG_N };
static const char *const hg_name[HG_N] = {"huge_buffer_out_of_memory", "huge_plan_limits",
                                          "plan_1m_tokens", "plan_workspace_past_2_64"};

static void huge_case(conf_test *T, const conf_misuse *m)
{
    stem_context *ctx = T->dev->ctx;
    switch (m->b) {
    case HG_BUFFER: {
        /* Far more than any machine has: a status, not a crash, and the
         * context still works. */
        const size_t sizes[3] = {(size_t)1 << 62, SIZE_MAX - 4095, (size_t)1 << 47};
        for (int i = 0; i < 3; ++i) {
            stem_buffer *b = (stem_buffer *)(uintptr_t)0x5EA1u;
            const stem_status st = stem_buffer_create(ctx, sizes[i], &b);
            if (st != STEM_ERR_OUT_OF_MEMORY && st != STEM_ERR_DEVICE_OUT_OF_MEMORY)
                fail_msg("stem_buffer_create(%zu bytes) returned %s, expected an out-of-memory "
                         "status",
                         sizes[i], stem_status_name(st));
            if (b != (stem_buffer *)(uintptr_t)0x5EA1u)
                fail_msg("stem_buffer_create failed but wrote *out");
            if (!stem_last_error()[0])
                fail_msg("stem_buffer_create failed without a message");
        }
        unsigned char x[16] = {1, 2, 3}, y[16] = {0};
        stem_buffer *b = NULL;
        if (stem_buffer_create(ctx, sizeof x, &b) != STEM_OK)
            fail_msg("after the failures stem_buffer_create: %s", stem_last_error());
        res_add_buffer(&T->res, b);
        if (stem_buffer_write(b, 0, x, sizeof x) != STEM_OK ||
            stem_buffer_read(b, 0, y, sizeof y) != STEM_OK || memcmp(x, y, sizeof x) != 0)
            fail_msg("after the failures the context does not work");
        break;
    }
    case HG_PLAN_LIMITS: {
        /* Sizes whose element counts pass 2^60, or a dim 2^31: rejected. */
        const int64_t bad[4][4] = {{1 << 20, 1 << 20, 1 << 20, 8},
                                   {1, 1, (int64_t)1 << 31, 8},
                                   {(int64_t)1 << 31, 1, 128, 8},
                                   {1, (int64_t)1 << 40, 128, 8}};
        for (int i = 0; i < 4; ++i) {
            stem_attention_desc d;
            stem_attention_desc_init(&d);
            d.batch = bad[i][0];
            d.num_q_heads = d.num_kv_heads = bad[i][1];
            d.q_len = d.kv_len = bad[i][2];
            d.head_dim = bad[i][3];
            stem_plan *plan = NULL;
            const stem_status st = stem_plan_create(ctx, &d, NULL, &plan);
            if (st == STEM_OK)
                res_add_plan(&T->res, plan);
            if (st != STEM_ERR_INVALID_ARGUMENT)
                fail_msg("stem_plan_create(B=%lld, H=%lld, N=%lld) returned %s, expected "
                         "STEM_ERR_INVALID_ARGUMENT",
                         (long long)bad[i][0], (long long)bad[i][1], (long long)bad[i][2],
                         stem_status_name(st));
        }
        break;
    }
    default: {
        /* 1M tokens with 8 heads, or 2^30 tokens with a batch of 2^12
         * (workspace past 2^64 bytes for all heads at once): the plan is
         * cheap to make and its numbers must not wrap. */
        const int huge = m->b == HG_PLAN_HUGE_WORKSPACE;
        stem_attention_desc d;
        stem_attention_desc_init(&d);
        d.batch = huge ? 1 << 12 : 1;
        d.num_q_heads = 8;
        d.num_kv_heads = 2;
        d.q_len = d.kv_len = huge ? (int64_t)1 << 30 : (int64_t)1 << 20;
        d.head_dim = 64;
        stem_plan *plan = NULL;
        const stem_status pst = stem_plan_create(ctx, &d, NULL, &plan);
        /* A GPU backend may decline sizes past its launch or local-memory
         * limits, saying so; it must not wrap or crash. */
        if (pst == STEM_ERR_UNSUPPORTED && T->dev->info.backend != STEM_BACKEND_CPU &&
            stem_last_error()[0])
            break;
        if (pst != STEM_OK)
            fail_msg("stem_plan_create(N=%lld): %s", (long long)d.q_len, stem_last_error());
        res_add_plan(&T->res, plan);
        stem_plan_info info;
        stem_plan_info_init(&info);
        if (stem_plan_get_info(plan, &info) != STEM_OK)
            fail_msg("stem_plan_get_info: %s", stem_last_error());
        const int64_t n = d.q_len / 128;
        /* One head's scores (f32) and lists (i32) at least, without wrapping. */
        const double one_head = (double)n * (double)n * 8.0;
        if (info.num_q_blocks != n || info.dense || info.k_start < 1 || info.k_start > n ||
            info.k_end < 1 || info.k_end > info.k_start || (double)info.workspace_bytes < one_head)
            fail_msg("plan at N=%lld: %lld blocks, dense %d, k_start %d, k_end %d, workspace "
                     "%zu bytes (one head needs %.0f)",
                     (long long)d.q_len, (long long)info.num_q_blocks, info.dense, info.k_start,
                     info.k_end, info.workspace_bytes, one_head);
        int32_t *budget = malloc((size_t)n * sizeof *budget);
        if (!budget)
            fail_msg("out of host memory");
        const stem_status st = stem_plan_get_budget(plan, budget, (size_t)n);
        int64_t bad_row = -1;
        for (int64_t i = 0; st == STEM_OK && i < n && bad_row < 0; ++i)
            if (budget[i] < 1 || budget[i] > info.k_start || (i > 0 && budget[i] > budget[i - 1]))
                bad_row = i;
        const int32_t last = st == STEM_OK ? budget[n - 1] : -1;
        free(budget);
        if (st != STEM_OK)
            fail_msg("stem_plan_get_budget: %s", stem_last_error());
        if (bad_row >= 0 || last != info.k_end)
            fail_msg("budget row %lld out of [1, k_start] or increasing; last %d, k_end %d",
                     (long long)bad_row, last, info.k_end);
        break;
    }
    }
}

int conf_add_hardening_cases(conf_misuse *list, int cap)
{
    int k = 0;
    if (cap < CONF_HARDENING_CASES)
        return 0;
    snprintf(list[k].name, sizeof list[k].name, "api_nonfinite_select");
    list[k++].fn = nonfinite_select;
    for (int c = 0; c < NF_CASES; ++c) {
        snprintf(list[k].name, sizeof list[k].name, "api_nonfinite_%s", nf_name[c]);
        list[k].fn = nonfinite_case;
        list[k].a = 0;
        list[k++].b = c;
    }
    for (int c = NF_Q_NAN; c <= NF_V_NAN; ++c) { /* f16 inputs: GPU tensor-core paths */
        snprintf(list[k].name, sizeof list[k].name, "api_nonfinite_%s_f16", nf_name[c]);
        list[k].fn = nonfinite_case;
        list[k].a = 1;
        list[k++].b = c;
    }
    for (int c = 0; c < HG_N; ++c) {
        snprintf(list[k].name, sizeof list[k].name, "api_%s", hg_name[c]);
        list[k].fn = huge_case;
        list[k++].b = c;
    }
    return k;
}
