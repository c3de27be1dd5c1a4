/* API misuse (each call must fail with its documented status, set a
 * message and write nothing) and the API surface (names, devices, defaults).
 * Run on every backend: validation is shared, but a backend that skipped it
 * would corrupt memory or return the wrong status. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "run.h"

#define MARKER "conformance-marker"

enum { T_Q, T_K, T_V, T_SCORES, T_INDEX, T_COUNT, T_OUT, T_N };
static const char *const tname[T_N] = {"q", "k", "v", "scores", "index", "count", "out"};

enum { ST_SCORE, ST_SELECT, ST_ATTENTION, ST_PREFILL, ST_N };
static const char *const stname[ST_N] = {"score", "select", "attention", "prefill"};
/* Slots each stage takes; outputs are those it writes. */
static const unsigned st_uses[ST_N] = {
    (1u << T_Q) | (1u << T_K) | (1u << T_V) | (1u << T_SCORES),
    (1u << T_SCORES) | (1u << T_INDEX) | (1u << T_COUNT),
    (1u << T_Q) | (1u << T_K) | (1u << T_V) | (1u << T_INDEX) | (1u << T_COUNT) | (1u << T_OUT),
    0x7Fu};
static const unsigned st_outputs[ST_N] = {1u << T_SCORES, (1u << T_INDEX) | (1u << T_COUNT),
                                          1u << T_OUT,
                                          (1u << T_SCORES) | (1u << T_INDEX) | (1u << T_COUNT) |
                                              (1u << T_OUT)};

/* ------------------------------------------------------------- helpers */

static void set_marker(void)
{
    stem_selector s;
    (void)stem_selector_from_name(MARKER, &s);
}

/* The status, and a fresh message for a failure. */
static void expect(stem_status got, stem_status want, const char *what)
{
    if (got != want)
        fail_msg("%s returned %s, expected %s (message: \"%s\")", what, stem_status_name(got),
                 stem_status_name(want), stem_last_error());
    if (want == STEM_OK)
        return;
    const char *msg = stem_last_error();
    if (!msg || !*msg)
        fail_msg("%s failed with an empty stem_last_error()", what);
    if (strstr(msg, MARKER))
        fail_msg("%s failed without setting stem_last_error() (still \"%s\")", what, msg);
}

/* A small valid problem: B=1, Hq=2, Hkv=1, N=40 (3 blocks of 16, the last
 * partial), d=64, f32, sparse STEM config; one buffer per tensor with a
 * generous tail so dims errors are reported as such. */
typedef struct fixture {
    stem_context *ctx;
    stem_plan *plan;
    stem_attention_desc desc;
    stem_config cfg;
    int64_t n;
    stem_buffer *buf[T_N];
    size_t size[T_N];
    stem_tensor t[T_N];
    unsigned char *snap[T_N], *rd;
} fixture;

#define FX_TAIL 4096

static void fixture_init(conf_test *T, fixture *f)
{
    conf_res *R = &T->res;
    memset(f, 0, sizeof *f);
    f->ctx = T->dev->ctx;
    stem_attention_desc_init(&f->desc);
    f->desc.batch = 1;
    f->desc.num_q_heads = 2;
    f->desc.num_kv_heads = 1;
    f->desc.q_len = f->desc.kv_len = 40;
    f->desc.head_dim = 64;
    f->desc.dtype = STEM_DTYPE_F32;
    stem_config_init(&f->cfg);
    f->cfg.block_size = 16;
    f->cfg.stride = 8;
    f->cfg.k_start = 1;
    f->cfg.sink_blocks = 0;
    f->cfg.local_blocks = 1;
    stem_status st = stem_plan_create(f->ctx, &f->desc, &f->cfg, &f->plan);
    if (st != STEM_OK)
        fail_msg("fixture: stem_plan_create returned %s: %s", stem_status_name(st),
                 stem_last_error());
    res_add_plan(R, f->plan);
    const int64_t n = f->n = 3;
    const int64_t dims[T_N][4] = {{1, 2, 40, 64}, {1, 1, 40, 64}, {1, 1, 40, 64}, {1, 2, n, n},
                                  {1, 2, n, n},   {1, 2, n, 1},   {1, 2, 40, 64}};
    const stem_dtype dt[T_N] = {STEM_DTYPE_F32, STEM_DTYPE_F32, STEM_DTYPE_F32, STEM_DTYPE_F32,
                                STEM_DTYPE_I32, STEM_DTYPE_I32, STEM_DTYPE_F32};
    size_t maxsize = 0;
    for (int i = 0; i < T_N; ++i) {
        f->t[i] = stem_tensor_bhnd(NULL, 0, dt[i], dims[i][0], dims[i][1], dims[i][2], dims[i][3]);
        f->size[i] = (size_t)(dims[i][0] * dims[i][1] * dims[i][2] * dims[i][3]) * 4 + FX_TAIL;
        maxsize = f->size[i] > maxsize ? f->size[i] : maxsize;
        st = stem_buffer_create(f->ctx, f->size[i], &f->buf[i]);
        if (st != STEM_OK)
            fail_msg("fixture: stem_buffer_create: %s", stem_last_error());
        res_add_buffer(R, f->buf[i]);
        f->t[i].buffer = f->buf[i];
        f->snap[i] = res_alloc(R, f->size[i]);
    }
    f->rd = res_alloc(R, maxsize);
    /* Contents: small inputs, finite causal scores, full lists, poisoned out. */
    for (int i = 0; i < T_N; ++i) {
        unsigned char *img = f->snap[i];
        memset(img, CONF_CANARY, f->size[i]);
        const stem_tensor *t = &f->t[i];
        for (int64_t h = 0; h < t->dims[1]; ++h)
            for (int64_t r = 0; r < t->dims[2]; ++r)
                for (int64_t c = 0; c < t->dims[3]; ++c) {
                    unsigned char *e = conf_elem(img, t, 0, h, r, c);
                    float fv = (float)((double)((h * 131 + r * 17 + c * 7 + i) % 23) / 23.0 - 0.5);
                    int32_t iv = 0;
                    if (i == T_SCORES)
                        fv = c > r ? -INFINITY : fv;
                    if (i == T_INDEX)
                        iv = c <= r ? (int32_t)c : -1;
                    if (i == T_COUNT)
                        iv = (int32_t)r + 1;
                    if (i == T_INDEX || i == T_COUNT)
                        memcpy(e, &iv, 4);
                    else
                        memcpy(e, &fv, 4);
                }
        if (i == T_OUT)
            conf_poison(img, t);
        st = stem_buffer_write(f->buf[i], 0, img, f->size[i]);
        if (st != STEM_OK)
            fail_msg("fixture: stem_buffer_write: %s", stem_last_error());
    }
}

/* Every fixture buffer must still hold what was last written. */
static void verify_unchanged(fixture *f, const char *what)
{
    for (int i = 0; i < T_N; ++i) {
        stem_status st = stem_buffer_read(f->buf[i], 0, f->rd, f->size[i]);
        if (st != STEM_OK)
            fail_msg("stem_buffer_read: %s", stem_last_error());
        if (memcmp(f->rd, f->snap[i], f->size[i]) != 0) {
            size_t at = 0;
            while (f->rd[at] == f->snap[i][at])
                ++at;
            fail_msg("%s wrote byte %zu of the %s buffer although it failed", what, at, tname[i]);
        }
    }
}

static stem_status call_stage(int stage, stem_plan *plan, const stem_tensor *const t[T_N])
{
    switch (stage) {
    case ST_SCORE: return stem_score(plan, t[T_Q], t[T_K], t[T_V], t[T_SCORES]);
    case ST_SELECT: return stem_select(plan, t[T_SCORES], t[T_INDEX], t[T_COUNT]);
    case ST_ATTENTION:
        return stem_attention(plan, t[T_Q], t[T_K], t[T_V], t[T_INDEX], t[T_COUNT], t[T_OUT]);
    default:
        return stem_prefill(plan, t[T_Q], t[T_K], t[T_V], t[T_OUT], t[T_SCORES], t[T_INDEX],
                            t[T_COUNT]);
    }
}

/* -------------------------------------------- stage tensor misuse */

enum {
    MU_NULL, MU_NULLBUF, MU_NEGSTRIDE, MU_OVERLAP, MU_ZEROSTRIDE, MU_OFFSET_PAST,
    MU_EXTENT_PAST, MU_DIMS, MU_DIMS_HEADS, MU_DTYPE, MU_OTHER_CTX, MU_OVER_INPUT,
    MU_OVER_OUTPUT, MU_FLAGS, MU_RESERVED32, MU_RESERVED, MU_N
};
static const char *const muname[MU_N] = {
    "null", "null_buffer", "negative_stride", "overlapping_stride", "zero_stride",
    "offset_past_buffer", "extent_past_buffer", "dims_mismatch", "heads_mismatch",
    "wrong_dtype", "other_context", "overlaps_input", "overlaps_output", "flags_set",
    "reserved32_set", "reserved_set"};

/* Applies mutation mu to tensor slot of stage; returns 0 if not applicable. */
static int mutate(conf_test *T, fixture *f, int stage, int slot, int mu, stem_tensor *t,
                  int *is_null)
{
    const int is_out = (st_outputs[stage] >> slot) & 1;
    const size_t es = stem_dtype_size(t->dtype);
    *is_null = 0;
    switch (mu) {
    case MU_NULL:
        /* stem_prefill's scores, index and count are optional. */
        if (stage == ST_PREFILL && slot >= T_SCORES && slot <= T_COUNT)
            return 0;
        *is_null = 1;
        return 1;
    case MU_NULLBUF: t->buffer = NULL; return 1;
    case MU_NEGSTRIDE:
        t->strides[2] = -t->strides[2];
        t->offset = (size_t)(t->dims[2] - 1) * (size_t)(-t->strides[2]) * es;
        return 1;
    case MU_OVERLAP:
        if (t->dims[3] < 2)
            return 0;
        t->strides[2] = t->dims[3] - 1; /* rows overlap their neighbours */
        return 1;
    case MU_ZEROSTRIDE: t->strides[2] = 0; return 1;
    case MU_OFFSET_PAST: t->offset = stem_buffer_size(t->buffer) + es; return 1;
    case MU_EXTENT_PAST: /* the first element fits, the rest does not */
        t->offset = stem_buffer_size(t->buffer) - es;
        return 1;
    case MU_DIMS:
        if (slot == T_COUNT)
            t->dims[3] = 2;
        else
            t->dims[2] += 1;
        return 1;
    case MU_DIMS_HEADS: t->dims[1] += 1; return 1;
    case MU_DTYPE:
        t->dtype = slot == T_SCORES ? STEM_DTYPE_F16
                   : slot == T_INDEX || slot == T_COUNT ? STEM_DTYPE_F32
                   : slot == T_OUT ? STEM_DTYPE_I32
                                   : STEM_DTYPE_BF16; /* q, k, v: not the plan's f32 */
        return 1;
    case MU_OTHER_CTX: {
        stem_context_desc cd;
        stem_context_desc_init(&cd);
        cd.device = (int32_t)T->dev->global_index;
        stem_context *c2 = NULL;
        stem_buffer *b2 = NULL;
        if (stem_context_create(&cd, &c2) != STEM_OK)
            fail_msg("second context: %s", stem_last_error());
        res_add_context(&T->res, c2);
        if (stem_buffer_create(c2, stem_buffer_size(t->buffer), &b2) != STEM_OK)
            fail_msg("buffer in the second context: %s", stem_last_error());
        res_add_buffer(&T->res, b2);
        t->buffer = b2;
        return 1;
    }
    case MU_OVER_INPUT: {
        if (!is_out)
            return 0;
        const int in = stage == ST_SELECT ? T_SCORES : T_Q;
        t->buffer = f->buf[in];
        t->offset = 0;
        return 1;
    }
    case MU_OVER_OUTPUT: {
        /* Two outputs of one call on the same bytes. */
        if (!is_out || stage == ST_SCORE || stage == ST_ATTENTION)
            return 0;
        const int other = slot == T_INDEX ? T_COUNT : T_INDEX;
        t->buffer = f->buf[other];
        t->offset = 0;
        return 1;
    }
    /* Room kept for later per-tensor information must be zero today. */
    case MU_FLAGS: t->flags = 1u << (slot % 32); return 1;
    case MU_RESERVED32: t->reserved32 = 1; return 1;
    case MU_RESERVED: t->reserved[(stage + slot) % 4] = 1; return 1;
    }
    return 0;
}

static void misuse_stage(conf_test *T, const conf_misuse *m)
{
    fixture f;
    fixture_init(T, &f);
    const int stage = m->a, slot = m->b, mu = m->c;
    stem_tensor t = f.t[slot];
    int is_null = 0;
    if (!mutate(T, &f, stage, slot, mu, &t, &is_null))
        fail_msg("misuse table: mutation not applicable");
    const stem_tensor *args[T_N];
    for (int i = 0; i < T_N; ++i)
        args[i] = &f.t[i];
    args[slot] = is_null ? NULL : &t;
    set_marker();
    char what[96];
    snprintf(what, sizeof what, "stem_%s with %s %s", stname[stage], tname[slot], muname[mu]);
    expect(call_stage(stage, f.plan, args), STEM_ERR_INVALID_ARGUMENT, what);
    verify_unchanged(&f, what);
}

static void misuse_null_plan(conf_test *T, const conf_misuse *m)
{
    fixture f;
    fixture_init(T, &f);
    const stem_tensor *args[T_N];
    for (int i = 0; i < T_N; ++i)
        args[i] = &f.t[i];
    set_marker();
    char what[64];
    snprintf(what, sizeof what, "stem_%s(plan = NULL)", stname[m->a]);
    expect(call_stage(m->a, NULL, args), STEM_ERR_INVALID_ARGUMENT, what);
    verify_unchanged(&f, what);
}

/* Invalid lists for stem_attention (GPU backends may skip bad entries). */
enum { LI_DESCENDING, LI_DUPLICATE, LI_PAST_ROW, LI_NEGATIVE, LI_COUNT_BIG, LI_COUNT_NEG, LI_N };
static const char *const liname[LI_N] = {"descending", "duplicate", "entry_past_row",
                                         "negative_entry", "count_above_nk", "negative_count"};

static void misuse_lists(conf_test *T, const conf_misuse *m)
{
    fixture f;
    fixture_init(T, &f);
    /* Head 1, row 2 of the full lists is {0, 1, 2}. */
    int32_t *idx = (int32_t *)(void *)conf_elem(f.snap[T_INDEX], &f.t[T_INDEX], 0, 1, 2, 0);
    int32_t *cnt = (int32_t *)(void *)conf_elem(f.snap[T_COUNT], &f.t[T_COUNT], 0, 1, 2, 0);
    int32_t row[3] = {0, 1, 2}, c = 3;
    switch (m->a) {
    case LI_DESCENDING: row[0] = 1; row[1] = 0; break;
    case LI_DUPLICATE: row[1] = 0; break;
    case LI_PAST_ROW: c = 1; row[0] = 2; /* row 2 may use block 2, so use row 1 below */ break;
    case LI_NEGATIVE: row[0] = -1; break;
    case LI_COUNT_BIG: c = 4; break;
    default: c = -1; break;
    }
    if (m->a == LI_PAST_ROW) {
        /* Row 1 listing block 2: above the diagonal. */
        idx = (int32_t *)(void *)conf_elem(f.snap[T_INDEX], &f.t[T_INDEX], 0, 1, 1, 0);
        cnt = (int32_t *)(void *)conf_elem(f.snap[T_COUNT], &f.t[T_COUNT], 0, 1, 1, 0);
        row[0] = 0;
        row[1] = 2;
        c = 2;
    }
    memcpy(idx, row, sizeof row);
    memcpy(cnt, &c, sizeof c);
    for (int i = T_INDEX; i <= T_COUNT; ++i)
        if (stem_buffer_write(f.buf[i], 0, f.snap[i], f.size[i]) != STEM_OK)
            fail_msg("stem_buffer_write: %s", stem_last_error());
    const stem_tensor *args[T_N];
    for (int i = 0; i < T_N; ++i)
        args[i] = &f.t[i];
    set_marker();
    char what[96];
    snprintf(what, sizeof what, "stem_attention with a %s list", liname[m->a]);
    stem_status st = call_stage(ST_ATTENTION, f.plan, args);
    if (T->dev->info.is_gpu && st == STEM_OK) {
        /* Documented GPU behaviour: invalid entries are skipped (semantics.md §6). */
        stem_synchronize(f.ctx);
        return;
    }
    expect(st, STEM_ERR_INVALID_ARGUMENT, what);
    verify_unchanged(&f, what);
}

/* ------------------------------------------------ plan creation misuse */

typedef struct plan_mut {
    const char *name;
    stem_status want;
} plan_mut;

static const plan_mut plan_muts[] = {
    {"null_ctx", STEM_ERR_INVALID_ARGUMENT},
    {"null_desc", STEM_ERR_INVALID_ARGUMENT},
    {"null_out", STEM_ERR_INVALID_ARGUMENT},
    {"desc_struct_size_0", STEM_ERR_VERSION_MISMATCH},
    {"desc_struct_size_4", STEM_ERR_VERSION_MISMATCH},
    {"cfg_struct_size_0", STEM_ERR_VERSION_MISMATCH},
    {"cfg_struct_size_4", STEM_ERR_VERSION_MISMATCH},
    {"batch_0", STEM_ERR_INVALID_ARGUMENT},
    {"q_heads_0", STEM_ERR_INVALID_ARGUMENT},
    {"kv_heads_0", STEM_ERR_INVALID_ARGUMENT},
    {"hq3_hkv2", STEM_ERR_INVALID_ARGUMENT},
    {"hq2_hkv4", STEM_ERR_INVALID_ARGUMENT},
    {"head_dim_12", STEM_ERR_UNSUPPORTED},
    {"head_dim_1024", STEM_ERR_UNSUPPORTED},
    {"head_dim_0", STEM_ERR_INVALID_ARGUMENT},
    {"head_dim_negative", STEM_ERR_INVALID_ARGUMENT},
    {"n_0", STEM_ERR_INVALID_ARGUMENT},
    {"n_negative", STEM_ERR_INVALID_ARGUMENT},
    {"q_len_gt_kv_len", STEM_ERR_INVALID_ARGUMENT},
    {"causal_0", STEM_ERR_UNSUPPORTED},
    {"dtype_i32", STEM_ERR_INVALID_ARGUMENT},
    {"dtype_unknown", STEM_ERR_INVALID_ARGUMENT},
    {"softmax_scale_negative", STEM_ERR_INVALID_ARGUMENT},
    {"softmax_scale_nan", STEM_ERR_INVALID_ARGUMENT},
    {"selector_unknown", STEM_ERR_INVALID_ARGUMENT},
    {"block_48", STEM_ERR_INVALID_ARGUMENT},
    {"block_256", STEM_ERR_INVALID_ARGUMENT},
    {"block_8", STEM_ERR_INVALID_ARGUMENT},
    {"block_0", STEM_ERR_INVALID_ARGUMENT},
    {"stride_3", STEM_ERR_INVALID_ARGUMENT},
    {"stride_0", STEM_ERR_INVALID_ARGUMENT},
    {"stride_above_block", STEM_ERR_INVALID_ARGUMENT},
    {"k_start_above_nk", STEM_ERR_INVALID_ARGUMENT},
    {"k_start_negative", STEM_ERR_INVALID_ARGUMENT},
    {"uniform_k_above_nk", STEM_ERR_INVALID_ARGUMENT},
    {"mu_1p5", STEM_ERR_INVALID_ARGUMENT},
    {"mu_negative", STEM_ERR_INVALID_ARGUMENT},
    {"sink_blocks_negative", STEM_ERR_INVALID_ARGUMENT},
    {"local_blocks_0", STEM_ERR_INVALID_ARGUMENT},
    {"norm_0", STEM_ERR_INVALID_ARGUMENT},
    {"norm_negative", STEM_ERR_INVALID_ARGUMENT},
    {"xattn_threshold_0", STEM_ERR_INVALID_ARGUMENT},
    {"xattn_threshold_1p5", STEM_ERR_INVALID_ARGUMENT},
    {"dense_above_density_1p5", STEM_ERR_INVALID_ARGUMENT},
    {"dense_above_density_nan", STEM_ERR_INVALID_ARGUMENT},
    {"beta_nan", STEM_ERR_INVALID_ARGUMENT},
};
#define N_PLAN_MUTS ((int)(sizeof plan_muts / sizeof plan_muts[0]))

static void misuse_plan(conf_test *T, const conf_misuse *m)
{
    stem_attention_desc d;
    stem_config c;
    stem_attention_desc_init(&d);
    d.q_len = d.kv_len = 100;
    d.head_dim = 64;
    stem_config_init(&c);
    c.block_size = 32;
    c.stride = 8; /* nk = 4 */
    stem_context *ctx = T->dev->ctx;
    const stem_attention_desc *dp = &d;
    const stem_config *cp = &c;
    stem_plan *sentinel = (stem_plan *)(uintptr_t)0x5EA1u, *plan = sentinel;
    stem_plan **outp = &plan;
    switch (m->a) {
    case 0: ctx = NULL; break;
    case 1: dp = NULL; break;
    case 2: outp = NULL; break;
    case 3: d.struct_size = 0; break;
    case 4: d.struct_size = 4; break;
    case 5: c.struct_size = 0; break;
    case 6: c.struct_size = 4; break;
    case 7: d.batch = 0; break;
    case 8: d.num_q_heads = 0; break;
    case 9: d.num_kv_heads = 0; break;
    case 10: d.num_q_heads = 3; d.num_kv_heads = 2; break;
    case 11: d.num_q_heads = 2; d.num_kv_heads = 4; break;
    case 12: d.head_dim = 12; break;
    case 13: d.head_dim = 1024; break;
    case 14: d.head_dim = 0; break;
    case 15: d.head_dim = -64; break;
    case 16: d.q_len = d.kv_len = 0; break;
    case 17: d.q_len = d.kv_len = -5; break;
    case 18: d.q_len = 200; break; /* more queries than visible keys */
    case 19: d.causal = 0; break;
    case 20: d.dtype = STEM_DTYPE_I32; break;
    case 21: d.dtype = (stem_dtype)77; break;
    case 22: d.softmax_scale = -0.125f; break;
    case 23: d.softmax_scale = NAN; break;
    case 24: c.selector = (stem_selector)99; break;
    case 25: c.block_size = 48; break;
    case 26: c.block_size = 256; c.stride = 8; break;
    case 27: c.block_size = 8; c.stride = 8; break;
    case 28: c.block_size = 0; break;
    case 29: c.stride = 3; break;
    case 30: c.stride = 0; break;
    case 31: c.block_size = 16; c.stride = 32; break;
    case 32: c.k_start = 5; break;
    case 33: c.k_start = -1; break;
    case 34: c.selector = STEM_SELECTOR_UNIFORM; c.uniform_k = 5; break;
    case 35: c.mu = 1.5; break;
    case 36: c.mu = -0.1; break;
    case 37: c.sink_blocks = -1; break;
    case 38: c.local_blocks = 0; break;
    case 39: c.norm = 0.0f; break;
    case 40: c.norm = -1.0f; break;
    case 41: c.selector = STEM_SELECTOR_XATTENTION; c.xattn_threshold = 0.0f; break;
    case 42: c.selector = STEM_SELECTOR_XATTENTION; c.xattn_threshold = 1.5f; break;
    case 43: c.dense_above_density = 1.5; break;
    case 44: c.dense_above_density = NAN; break;
    default: c.beta = NAN; break;
    }
    set_marker();
    char what[96];
    snprintf(what, sizeof what, "stem_plan_create(%s)", plan_muts[m->a].name);
    stem_status st = stem_plan_create(ctx, dp, cp, outp);
    if (st == STEM_OK && plan != sentinel)
        res_add_plan(&T->res, plan);
    expect(st, plan_muts[m->a].want, what);
    if (plan != sentinel)
        fail_msg("%s failed but wrote *out", what);
}

/* ------------------------------------------- other entry points' misuse */

enum {
    MI_DEVICE_COUNT_NULL, MI_DEVICE_INFO_NULL, MI_DEVICE_INFO_RANGE, MI_DEVICE_INFO_SIZE0,
    MI_DEVICE_INFO_SIZE4, MI_BACKEND_QUERY_NULL, MI_BACKEND_QUERY_SIZE0, MI_BACKEND_QUERY_BAD,
    MI_CONTEXT_NULL_OUT, MI_CONTEXT_SIZE0, MI_CONTEXT_SIZE4, MI_CONTEXT_DEVICE_RANGE,
    MI_CONTEXT_DEVICE_NEG, MI_CONTEXT_THREADS_NEG, MI_GET_DEVICE_NULL_CTX,
    MI_GET_DEVICE_NULL_INFO, MI_GET_DEVICE_SIZE0, MI_SYNC_NULL, MI_BUFFER_NULL_CTX,
    MI_BUFFER_ZERO, MI_BUFFER_NULL_OUT, MI_WRAP_NULL_HOST, MI_WRAP_NULL_CTX, MI_WRITE_NULL_BUF,
    MI_WRITE_NULL_SRC, MI_WRITE_PAST, MI_WRITE_OVERFLOW, MI_READ_NULL_DST, MI_READ_PAST,
    MI_READ_OVERFLOW, MI_SELECTOR_NULL_NAME, MI_SELECTOR_UNKNOWN, MI_SELECTOR_NULL_OUT,
    MI_PLAN_INFO_NULL_PLAN, MI_PLAN_INFO_NULL, MI_PLAN_INFO_SIZE0, MI_BUDGET_NULL_PLAN,
    MI_BUDGET_NULL, MI_BUDGET_SHORT, MI_WS_NULL_PLAN, MI_WS_NULL_BUF, MI_WS_SMALL,
    MI_WS_OTHER_CTX, MI_N
};
static const char *const mi_name[MI_N] = {
    "device_count_null", "device_info_null", "device_info_index_range", "device_info_size_0",
    "device_info_size_4", "backend_query_null", "backend_query_size_0",
    "backend_query_unknown_backend", "context_create_null_out", "context_desc_size_0",
    "context_desc_size_4", "context_device_range", "context_device_negative",
    "context_threads_negative", "context_get_device_null_ctx", "context_get_device_null_info",
    "context_get_device_size_0", "synchronize_null", "buffer_create_null_ctx",
    "buffer_create_zero_bytes", "buffer_create_null_out", "wrap_host_null_host",
    "wrap_host_null_ctx", "buffer_write_null_buffer", "buffer_write_null_src",
    "buffer_write_past_end", "buffer_write_offset_overflow", "buffer_read_null_dst",
    "buffer_read_past_end", "buffer_read_offset_overflow", "selector_from_name_null",
    "selector_from_name_unknown", "selector_from_name_null_out", "plan_get_info_null_plan",
    "plan_get_info_null_info", "plan_get_info_size_0", "plan_get_budget_null_plan",
    "plan_get_budget_null", "plan_get_budget_short", "plan_set_workspace_null_plan",
    "plan_set_workspace_null_buffer", "plan_set_workspace_too_small",
    "plan_set_workspace_other_context"};

/* Struct filled with a pattern: a failing query must leave every byte. */
#define PATTERN_BYTE 0x3C

static int bytes_are(const void *p, size_t from, size_t to, unsigned char v)
{
    const unsigned char *b = p;
    for (size_t i = from; i < to; ++i)
        if (b[i] != v)
            return 0;
    return 1;
}

static void misuse_misc(conf_test *T, const conf_misuse *m)
{
    stem_context *ctx = T->dev->ctx;
    conf_res *R = &T->res;
    const char *what = mi_name[m->a];
    stem_status want = STEM_ERR_INVALID_ARGUMENT, st = STEM_OK;
    stem_device_info di;
    stem_backend_info bi;
    stem_context_desc cd;
    stem_context *c2 = (stem_context *)(uintptr_t)0x5EA1u;
    stem_buffer *b2 = (stem_buffer *)(uintptr_t)0x5EA1u, *buf = NULL;
    uint32_t count = 0;
    unsigned char host[64], data[64];
    memset(&di, PATTERN_BYTE, sizeof di);
    memset(&bi, PATTERN_BYTE, sizeof bi);
    memset(host, 0x11, sizeof host);
    memset(data, 0x77, sizeof data);
    stem_device_count(&count);
    stem_context_desc_init(&cd);
    cd.device = (int32_t)T->dev->global_index;
    /* A buffer with known contents for the read/write cases. */
    if (stem_buffer_create(ctx, sizeof host, &buf) != STEM_OK)
        fail_msg("stem_buffer_create: %s", stem_last_error());
    res_add_buffer(R, buf);
    if (stem_buffer_write(buf, 0, host, sizeof host) != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
    fixture f;
    const int need_plan = m->a >= MI_PLAN_INFO_NULL_PLAN;
    if (need_plan)
        fixture_init(T, &f);
    stem_plan_info pi;
    memset(&pi, PATTERN_BYTE, sizeof pi);
    int32_t budget[8];
    memset(budget, PATTERN_BYTE, sizeof budget);
    stem_selector sel = (stem_selector)42;

    set_marker();
    switch (m->a) {
    case MI_DEVICE_COUNT_NULL: st = stem_device_count(NULL); break;
    case MI_DEVICE_INFO_NULL: st = stem_device_get_info(0, NULL); break;
    case MI_DEVICE_INFO_RANGE:
        di.struct_size = sizeof di;
        st = stem_device_get_info(count, &di);
        break;
    case MI_DEVICE_INFO_SIZE0:
    case MI_DEVICE_INFO_SIZE4:
        di.struct_size = m->a == MI_DEVICE_INFO_SIZE0 ? 0 : 4;
        want = STEM_ERR_VERSION_MISMATCH;
        st = stem_device_get_info(0, &di);
        break;
    case MI_BACKEND_QUERY_NULL: st = stem_backend_query(STEM_BACKEND_CPU, NULL); break;
    case MI_BACKEND_QUERY_SIZE0:
        bi.struct_size = 0;
        want = STEM_ERR_VERSION_MISMATCH;
        st = stem_backend_query(T->dev->info.backend, &bi);
        break;
    case MI_BACKEND_QUERY_BAD:
        bi.struct_size = sizeof bi;
        st = stem_backend_query((stem_backend)99, &bi);
        break;
    case MI_CONTEXT_NULL_OUT: st = stem_context_create(&cd, NULL); break;
    case MI_CONTEXT_SIZE0: cd.struct_size = 0; want = STEM_ERR_VERSION_MISMATCH; goto create;
    case MI_CONTEXT_SIZE4: cd.struct_size = 4; want = STEM_ERR_VERSION_MISMATCH; goto create;
    case MI_CONTEXT_DEVICE_RANGE: cd.device = (int32_t)count; goto create;
    case MI_CONTEXT_DEVICE_NEG: cd.device = -5; goto create;
    case MI_CONTEXT_THREADS_NEG:
        cd.num_threads = -1;
    create:
        st = stem_context_create(&cd, &c2);
        if (st == STEM_OK && c2 != (stem_context *)(uintptr_t)0x5EA1u)
            res_add_context(R, c2);
        break;
    case MI_GET_DEVICE_NULL_CTX:
        di.struct_size = sizeof di;
        st = stem_context_get_device(NULL, &di);
        break;
    case MI_GET_DEVICE_NULL_INFO: st = stem_context_get_device(ctx, NULL); break;
    case MI_GET_DEVICE_SIZE0:
        di.struct_size = 0;
        want = STEM_ERR_VERSION_MISMATCH;
        st = stem_context_get_device(ctx, &di);
        break;
    case MI_SYNC_NULL: st = stem_synchronize(NULL); break;
    case MI_BUFFER_NULL_CTX: st = stem_buffer_create(NULL, 64, &b2); break;
    case MI_BUFFER_ZERO: st = stem_buffer_create(ctx, 0, &b2); break;
    case MI_BUFFER_NULL_OUT: st = stem_buffer_create(ctx, 64, NULL); break;
    case MI_WRAP_NULL_HOST: st = stem_buffer_wrap_host(ctx, NULL, 64, &b2); break;
    case MI_WRAP_NULL_CTX: st = stem_buffer_wrap_host(NULL, data, sizeof data, &b2); break;
    case MI_WRITE_NULL_BUF: st = stem_buffer_write(NULL, 0, data, 4); break;
    case MI_WRITE_NULL_SRC: st = stem_buffer_write(buf, 0, NULL, 4); break;
    case MI_WRITE_PAST: st = stem_buffer_write(buf, 60, data, 8); break;
    case MI_WRITE_OVERFLOW: st = stem_buffer_write(buf, SIZE_MAX - 2, data, 8); break;
    case MI_READ_NULL_DST: st = stem_buffer_read(buf, 0, NULL, 4); break;
    case MI_READ_PAST: st = stem_buffer_read(buf, 32, data, 33); break;
    case MI_READ_OVERFLOW: st = stem_buffer_read(buf, 8, data, SIZE_MAX - 4); break;
    case MI_SELECTOR_NULL_NAME: st = stem_selector_from_name(NULL, &sel); break;
    case MI_SELECTOR_UNKNOWN: st = stem_selector_from_name("stemm", &sel); break;
    case MI_SELECTOR_NULL_OUT: st = stem_selector_from_name("stem", NULL); break;
    case MI_PLAN_INFO_NULL_PLAN:
        pi.struct_size = sizeof pi;
        st = stem_plan_get_info(NULL, &pi);
        break;
    case MI_PLAN_INFO_NULL: st = stem_plan_get_info(f.plan, NULL); break;
    case MI_PLAN_INFO_SIZE0:
        pi.struct_size = 0;
        want = STEM_ERR_VERSION_MISMATCH;
        st = stem_plan_get_info(f.plan, &pi);
        break;
    case MI_BUDGET_NULL_PLAN: st = stem_plan_get_budget(NULL, budget, 8); break;
    case MI_BUDGET_NULL: st = stem_plan_get_budget(f.plan, NULL, 8); break;
    case MI_BUDGET_SHORT: st = stem_plan_get_budget(f.plan, budget, (size_t)f.n - 1); break;
    case MI_WS_NULL_PLAN: st = stem_plan_set_workspace(NULL, buf, 0); break;
    case MI_WS_NULL_BUF: st = stem_plan_set_workspace(f.plan, NULL, 0); break;
    case MI_WS_SMALL: {
        stem_plan_info info;
        stem_plan_info_init(&info);
        if (stem_plan_get_info(f.plan, &info) != STEM_OK)
            fail_msg("stem_plan_get_info: %s", stem_last_error());
        stem_buffer *ws = NULL;
        if (stem_buffer_create(ctx, info.workspace_bytes + 16, &ws) != STEM_OK)
            fail_msg("stem_buffer_create: %s", stem_last_error());
        res_add_buffer(R, ws);
        set_marker();
        st = stem_plan_set_workspace(f.plan, ws, 32);
        break;
    }
    default: {
        stem_plan_info info;
        stem_plan_info_init(&info);
        if (stem_plan_get_info(f.plan, &info) != STEM_OK)
            fail_msg("stem_plan_get_info: %s", stem_last_error());
        stem_context *other = NULL;
        stem_buffer *ws = NULL;
        if (stem_context_create(&cd, &other) != STEM_OK)
            fail_msg("second context: %s", stem_last_error());
        res_add_context(R, other);
        if (stem_buffer_create(other, info.workspace_bytes + 64, &ws) != STEM_OK)
            fail_msg("stem_buffer_create: %s", stem_last_error());
        res_add_buffer(R, ws);
        set_marker();
        st = stem_plan_set_workspace(f.plan, ws, 0);
        break;
    }
    }
    expect(st, want, what);
    /* Nothing the caller owns may have changed. */
    const size_t hs = sizeof(size_t);
    if (!bytes_are(&di, hs, sizeof di, PATTERN_BYTE) || !bytes_are(&bi, hs, sizeof bi, PATTERN_BYTE) ||
        !bytes_are(&pi, hs, sizeof pi, PATTERN_BYTE))
        fail_msg("%s failed but wrote into the caller's info struct", what);
    if (c2 != (stem_context *)(uintptr_t)0x5EA1u || b2 != (stem_buffer *)(uintptr_t)0x5EA1u)
        fail_msg("%s failed but wrote *out", what);
    if (sel != (stem_selector)42)
        fail_msg("%s failed but wrote *out", what);
    if (!bytes_are(budget, 0, sizeof budget, PATTERN_BYTE))
        fail_msg("%s failed but wrote the budget array", what);
    unsigned char back[64];
    if (stem_buffer_read(buf, 0, back, sizeof back) != STEM_OK)
        fail_msg("stem_buffer_read: %s", stem_last_error());
    if (memcmp(back, host, sizeof host) != 0)
        fail_msg("%s failed but changed the buffer", what);
    for (size_t i = 0; i < sizeof data; ++i)
        if (data[i] != 0x77)
            fail_msg("%s failed but wrote the caller's memory", what);
    if (need_plan)
        verify_unchanged(&f, what);
}

/* ------------------------------------------------------- API surface */

enum { AP_STATUS_NAMES, AP_NAMES, AP_DEVICES, AP_CONTEXT, AP_DEFAULTS, AP_TENSORS, AP_BUFFERS,
       AP_PLAN_INFO, AP_SELECT_TIES, AP_N };
static const char *const ap_name[AP_N] = {"status_names", "enum_names", "device_list",
                                          "context_device", "descriptor_defaults",
                                          "tensor_helpers", "buffer_roundtrip", "plan_info",
                                          "select_exact_ties"};

static void api_check(conf_test *T, const conf_misuse *m)
{
    stem_context *ctx = T->dev->ctx;
    conf_res *R = &T->res;
    switch (m->a) {
    case AP_STATUS_NAMES: {
        static const char *const names[] = {
            "STEM_OK", "STEM_ERR_INVALID_ARGUMENT", "STEM_ERR_UNSUPPORTED",
            "STEM_ERR_OUT_OF_MEMORY", "STEM_ERR_DEVICE_OUT_OF_MEMORY",
            "STEM_ERR_BACKEND_UNAVAILABLE", "STEM_ERR_KERNEL_BUILD", "STEM_ERR_DEVICE_LOST",
            "STEM_ERR_BACKEND_API", "STEM_ERR_VERSION_MISMATCH", "STEM_ERR_INTERNAL"};
        for (int s = 0; s <= STEM_ERR_INTERNAL; ++s) {
            const char *got = stem_status_name((stem_status)s);
            if (!got || strcmp(got, names[s]) != 0)
                fail_msg("stem_status_name(%d) = \"%s\", expected \"%s\"", s, got ? got : "(null)",
                         names[s]);
        }
        const char *unk = stem_status_name((stem_status)1234);
        if (!unk || !*unk)
            fail_msg("stem_status_name(1234) must be a non-empty string");
        char ver[32];
        snprintf(ver, sizeof ver, "%d.%d.%d", STEM_VERSION_MAJOR, STEM_VERSION_MINOR,
                 STEM_VERSION_PATCH);
        if (!stem_version_string() || strcmp(stem_version_string(), ver) != 0)
            fail_msg("stem_version_string() = \"%s\", expected \"%s\"", stem_version_string(), ver);
        if (!stem_last_error())
            fail_msg("stem_last_error() returned NULL");
        break;
    }
    case AP_NAMES: {
        static const char *const bn[] = {"cpu", "cuda", "opencl", "vulkan"};
        for (int b = 0; b < CONF_BACKENDS; ++b)
            if (strcmp(stem_backend_name((stem_backend)b), bn[b]) != 0)
                fail_msg("stem_backend_name(%d) = \"%s\"", b, stem_backend_name((stem_backend)b));
        if (strcmp(stem_backend_name((stem_backend)CONF_BACKENDS), "unknown") != 0)
            fail_msg("stem_backend_name(%d) names a backend this suite does not know",
                     CONF_BACKENDS);
        if (strcmp(stem_backend_name((stem_backend)77), "unknown") != 0)
            fail_msg("stem_backend_name(77) must be \"unknown\"");
        static const char *const sn[] = {"stem",  "stem_paper", "uniform",
                                         "xattention", "dense", "xattention_strict"};
        static const char *const upper[] = {"STEM",  "Stem_Paper", "UNIFORM",
                                            "XAttention", "Dense", "XAttention_Strict"};
        _Static_assert(STEM_SELECTOR_COUNT == 6 && STEM_SELECTOR_XATTENTION == 3 &&
                           STEM_SELECTOR_DENSE == 4 && STEM_SELECTOR_XATTENTION_STRICT == 5,
                       "selector values are ABI: new ones are appended");
        for (int s = 0; s < STEM_SELECTOR_COUNT; ++s) {
            stem_selector out = (stem_selector)99;
            if (strcmp(stem_selector_name((stem_selector)s), sn[s]) != 0)
                fail_msg("stem_selector_name(%d) = \"%s\"", s, stem_selector_name((stem_selector)s));
            if (stem_selector_from_name(sn[s], &out) != STEM_OK || out != (stem_selector)s)
                fail_msg("stem_selector_from_name(\"%s\") failed", sn[s]);
            out = (stem_selector)99;
            if (stem_selector_from_name(upper[s], &out) != STEM_OK || out != (stem_selector)s)
                fail_msg("stem_selector_from_name(\"%s\") must be case-insensitive", upper[s]);
        }
        if (!stem_selector_name((stem_selector)99))
            fail_msg("stem_selector_name(99) returned NULL");
        static const size_t ds[] = {4, 2, 2, 4};
        static const char *const dn[] = {"f32", "f16", "bf16", "i32"};
        for (int t = 0; t < 4; ++t)
            if (stem_dtype_size((stem_dtype)t) != ds[t] || strcmp(stem_dtype_name((stem_dtype)t), dn[t]))
                fail_msg("stem_dtype_size/name(%d) = %zu \"%s\"", t, stem_dtype_size((stem_dtype)t),
                         stem_dtype_name((stem_dtype)t));
        if (stem_dtype_size((stem_dtype)9) != 0 || !stem_dtype_name((stem_dtype)9))
            fail_msg("unknown dtype: size must be 0 and the name non-NULL");
        break;
    }
    case AP_DEVICES: {
        uint32_t count = 0, per[CONF_BACKENDS] = {0};
        if (stem_device_count(&count) != STEM_OK || count == 0)
            fail_msg("stem_device_count: %u devices (the CPU is always there)", count);
        for (uint32_t i = 0; i < count; ++i) {
            stem_device_info info;
            stem_device_info_init(&info);
            if (stem_device_get_info(i, &info) != STEM_OK)
                fail_msg("stem_device_get_info(%u): %s", i, stem_last_error());
            if ((unsigned)info.backend >= CONF_BACKENDS || !info.name[0] ||
                info.backend_index != per[info.backend])
                fail_msg("device %u: backend %d, index %u, name \"%s\"", i, (int)info.backend,
                         info.backend_index, info.name);
            if (info.backend == STEM_BACKEND_CPU && (info.is_gpu || i != count - 1))
                fail_msg("device %u: the CPU must come last and not be a GPU", i);
            if (info.backend == STEM_BACKEND_CPU && info.compute_units == 0)
                fail_msg("device %u: the CPU reports 0 compute units", i);
            per[info.backend]++;
        }
        for (int b = 0; b < CONF_BACKENDS; ++b) {
            stem_backend_info bi;
            stem_backend_info_init(&bi);
            if (stem_backend_query((stem_backend)b, &bi) != STEM_OK)
                fail_msg("stem_backend_query(%s): %s", stem_backend_name((stem_backend)b),
                         stem_last_error());
            if (bi.backend != (stem_backend)b || bi.device_count != per[b] ||
                !!bi.available != (per[b] > 0) || (bi.available && !bi.compiled))
                fail_msg("stem_backend_query(%s): compiled %d available %d devices %u, list has %u",
                         stem_backend_name((stem_backend)b), bi.compiled, bi.available,
                         bi.device_count, per[b]);
            if (!bi.available && !bi.reason[0])
                fail_msg("stem_backend_query(%s): unavailable without a reason",
                         stem_backend_name((stem_backend)b));
            if (bi.available && bi.reason[0])
                fail_msg("stem_backend_query(%s): available but reason \"%s\"",
                         stem_backend_name((stem_backend)b), bi.reason);
        }
        if (per[STEM_BACKEND_CPU] != 1)
            fail_msg("expected exactly one CPU device, got %u", per[STEM_BACKEND_CPU]);
        break;
    }
    case AP_CONTEXT: {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_context_get_device(ctx, &info) != STEM_OK)
            fail_msg("stem_context_get_device: %s", stem_last_error());
        if (info.backend != T->dev->info.backend ||
            info.backend_index != T->dev->info.backend_index ||
            strcmp(info.name, T->dev->info.name) != 0)
            fail_msg("stem_context_get_device: \"%s\" (%s #%u), context made on \"%s\"", info.name,
                     stem_backend_name(info.backend), info.backend_index, T->dev->info.name);
        if (stem_synchronize(ctx) != STEM_OK)
            fail_msg("stem_synchronize: %s", stem_last_error());
        /* NULL-tolerant destructors. */
        stem_context_destroy(NULL);
        stem_buffer_destroy(NULL);
        stem_plan_destroy(NULL);
        if (stem_buffer_size(NULL) != 0)
            fail_msg("stem_buffer_size(NULL) must be 0");
        /* A context with defaults and one with an explicit thread count. */
        stem_context_desc cd;
        stem_context_desc_init(&cd);
        cd.device = (int32_t)T->dev->global_index;
        cd.num_threads = 1;
        stem_context *c2 = NULL;
        if (stem_context_create(&cd, &c2) != STEM_OK)
            fail_msg("stem_context_create(num_threads = 1): %s", stem_last_error());
        res_add_context(R, c2);
        stem_context *c3 = NULL;
        if (stem_context_create(NULL, &c3) != STEM_OK)
            fail_msg("stem_context_create(NULL desc): %s", stem_last_error());
        res_add_context(R, c3);
        break;
    }
    case AP_DEFAULTS: {
        stem_config c;
        memset(&c, 0xEE, sizeof c);
        stem_config_init(&c);
        if (c.struct_size != sizeof c || c.selector != STEM_SELECTOR_STEM || c.block_size != 128 ||
            c.stride != 8 || c.beta != 0.2f || c.mu != 0.7 || c.sink_blocks != 4 ||
            c.local_blocks != 4 || c.norm != 1.0f || c.dense_below_blocks != 56 ||
            c.medium_below_blocks != 160 || c.medium_rate != 0.2 || c.medium_bias != 30 ||
            c.large_rate != 0.1 || c.large_bias != 30 || c.k_start != 0 ||
            c.paper_short_rate != 0.2 || c.paper_long_rate != 0.1 ||
            c.paper_switch_tokens != 16384 || c.paper_min_blocks != 54 || c.uniform_k != 0 ||
            c.xattn_threshold != 0.9f || c.dense_layers != 2 || c.dense_above_density != 0.0)
            fail_msg("stem_config_init does not give the documented defaults");
        stem_attention_desc d;
        memset(&d, 0xEE, sizeof d);
        stem_attention_desc_init(&d);
        if (d.struct_size != sizeof d || d.causal != 1 || d.softmax_scale != 0.0f ||
            d.layer_index != -1)
            fail_msg("stem_attention_desc_init: causal %d, softmax_scale %g, layer_index %d",
                     d.causal, (double)d.softmax_scale, d.layer_index);
        stem_context_desc cd;
        memset(&cd, 0xEE, sizeof cd);
        stem_context_desc_init(&cd);
        if (cd.struct_size != sizeof cd || cd.device != STEM_DEVICE_AUTO || cd.log != NULL)
            fail_msg("stem_context_desc_init: device %d", cd.device);
        stem_plan_info pi;
        stem_device_info di;
        stem_backend_info bi;
        stem_plan_info_init(&pi);
        stem_device_info_init(&di);
        stem_backend_info_init(&bi);
        if (pi.struct_size != sizeof pi || di.struct_size != sizeof di ||
            bi.struct_size != sizeof bi)
            fail_msg("*_info_init must set struct_size");
        /* NULL-tolerant initialisers. */
        stem_config_init(NULL);
        stem_attention_desc_init(NULL);
        stem_context_desc_init(NULL);
        stem_plan_info_init(NULL);
        stem_device_info_init(NULL);
        stem_backend_info_init(NULL);
        break;
    }
    case AP_TENSORS: {
        stem_tensor a = stem_tensor_bhnd(NULL, 12, STEM_DTYPE_F16, 2, 3, 5, 7);
        stem_tensor b = stem_tensor_bnhd(NULL, 8, STEM_DTYPE_BF16, 2, 3, 5, 7);
        const int64_t sa[4] = {105, 35, 7, 1}, sb[4] = {105, 7, 21, 1};
        for (int i = 0; i < 4; ++i)
            if (a.strides[i] != sa[i] || b.strides[i] != sb[i])
                fail_msg("stem_tensor_bhnd/bnhd strides[%d] = %lld / %lld", i,
                         (long long)a.strides[i], (long long)b.strides[i]);
        if (a.offset != 12 || a.dtype != STEM_DTYPE_F16 || a.dims[0] != 2 || a.dims[3] != 7 ||
            b.offset != 8 || b.dims[1] != 3 || b.dims[2] != 5)
            fail_msg("stem_tensor_bhnd/bnhd: wrong offset, dtype or dims");
        break;
    }
    case AP_BUFFERS: {
        unsigned char src[256], dst[256];
        for (int i = 0; i < 256; ++i)
            src[i] = (unsigned char)(i * 7 + 3);
        stem_buffer *b = NULL;
        if (stem_buffer_create(ctx, 256, &b) != STEM_OK)
            fail_msg("stem_buffer_create: %s", stem_last_error());
        res_add_buffer(R, b);
        if (stem_buffer_write(b, 0, src, 256) != STEM_OK ||
            stem_buffer_write(b, 100, src, 0) != STEM_OK ||
            stem_buffer_write(b, 256, src, 0) != STEM_OK)
            fail_msg("stem_buffer_write: %s", stem_last_error());
        memset(dst, 0, sizeof dst);
        if (stem_buffer_read(b, 0, dst, 256) != STEM_OK || memcmp(src, dst, 256) != 0)
            fail_msg("stem_buffer_read did not return what was written");
        if (stem_buffer_read(b, 200, dst, 56) != STEM_OK || memcmp(src + 200, dst, 56) != 0)
            fail_msg("stem_buffer_read at an offset");
        /* Wrapped host memory: reads see the caller's bytes. */
        unsigned char *host = res_alloc(R, 128);
        memcpy(host, src, 128);
        stem_buffer *w = NULL;
        const stem_status ws = stem_buffer_wrap_host(ctx, host, 128, &w);
        if (ws == STEM_ERR_UNSUPPORTED && T->dev->info.is_gpu)
            break; /* GPU backends may decline host memory */
        if (ws != STEM_OK)
            fail_msg("stem_buffer_wrap_host: %s", stem_last_error());
        res_add_buffer(R, w);
        if (stem_buffer_size(w) != 128 || stem_buffer_read(w, 0, dst, 128) != STEM_OK ||
            memcmp(dst, src, 128) != 0)
            fail_msg("wrapped buffer: size or contents differ");
        if (stem_buffer_write(w, 64, src + 100, 16) != STEM_OK ||
            stem_buffer_read(w, 64, dst, 16) != STEM_OK || memcmp(dst, src + 100, 16) != 0)
            fail_msg("wrapped buffer: write + read back");
        break;
    }
    case AP_SELECT_TIES: {
        /* Every score equal: each row must keep exactly the lowest budget[I]
         * indices (ties go to the lower block), plus its forced blocks. The
         * random case table cannot see this, since it accepts tie-zone swaps. */
        enum { NB = 12, BLK = 16 };
        stem_attention_desc d;
        stem_attention_desc_init(&d);
        d.q_len = d.kv_len = NB * BLK;
        d.head_dim = 64;
        stem_config c;
        stem_config_init(&c);
        c.block_size = BLK;
        c.k_start = 5;
        c.sink_blocks = 1;
        c.local_blocks = 2;
        stem_plan *plan = NULL;
        if (stem_plan_create(ctx, &d, &c, &plan) != STEM_OK)
            fail_msg("stem_plan_create: %s", stem_last_error());
        res_add_plan(R, plan);
        int32_t budget[NB];
        if (stem_plan_get_budget(plan, budget, NB) != STEM_OK)
            fail_msg("stem_plan_get_budget: %s", stem_last_error());
        float scores[NB * NB];
        for (int i = 0; i < NB; ++i)
            for (int j = 0; j < NB; ++j)
                scores[i * NB + j] = j <= i ? 0.25f : -INFINITY;
        stem_buffer *bs = NULL, *bi = NULL, *bc = NULL;
        if (stem_buffer_create(ctx, sizeof scores, &bs) != STEM_OK ||
            stem_buffer_create(ctx, NB * NB * 4, &bi) != STEM_OK ||
            stem_buffer_create(ctx, NB * 4, &bc) != STEM_OK)
            fail_msg("stem_buffer_create: %s", stem_last_error());
        res_add_buffer(R, bs);
        res_add_buffer(R, bi);
        res_add_buffer(R, bc);
        if (stem_buffer_write(bs, 0, scores, sizeof scores) != STEM_OK)
            fail_msg("stem_buffer_write: %s", stem_last_error());
        const stem_tensor ts = stem_tensor_bhnd(bs, 0, STEM_DTYPE_F32, 1, 1, NB, NB);
        const stem_tensor ti = stem_tensor_bhnd(bi, 0, STEM_DTYPE_I32, 1, 1, NB, NB);
        const stem_tensor tc = stem_tensor_bhnd(bc, 0, STEM_DTYPE_I32, 1, 1, NB, 1);
        if (stem_select(plan, &ts, &ti, &tc) != STEM_OK || stem_synchronize(ctx) != STEM_OK)
            fail_msg("stem_select: %s", stem_last_error());
        int32_t idx[NB * NB], cnt[NB];
        if (stem_buffer_read(bi, 0, idx, sizeof idx) != STEM_OK ||
            stem_buffer_read(bc, 0, cnt, sizeof cnt) != STEM_OK)
            fail_msg("stem_buffer_read: %s", stem_last_error());
        for (int i = 0; i < NB; ++i) {
            int want[NB], nw = 0;
            for (int j = 0; j <= i; ++j)
                if (j < budget[i] || j < c.sink_blocks || j > i - c.local_blocks)
                    want[nw++] = j;
            if (cnt[i] != nw)
                fail_msg("row %d: %d blocks kept, expected %d (budget %d)", i, cnt[i], nw,
                         budget[i]);
            for (int r = 0; r < nw; ++r)
                if (idx[i * NB + r] != want[r])
                    fail_msg("row %d entry %d: block %d, expected %d (ties go to the lower "
                             "block)", i, r, idx[i * NB + r], want[r]);
        }
        break;
    }
    default: {
        fixture f;
        fixture_init(T, &f);
        stem_plan_info info;
        stem_plan_info_init(&info);
        if (stem_plan_get_info(f.plan, &info) != STEM_OK)
            fail_msg("stem_plan_get_info: %s", stem_last_error());
        if (info.num_q_blocks != 3 || info.num_k_blocks != 3 || info.dense ||
            info.k_start != 1 || info.selector != STEM_SELECTOR_STEM || info.workspace_bytes == 0 ||
            !(info.budget_density > 0.0 && info.budget_density <= 1.0))
            fail_msg("stem_plan_get_info: %lld x %lld blocks, dense %d, k_start %d, workspace %zu, "
                     "density %g",
                     (long long)info.num_q_blocks, (long long)info.num_k_blocks, info.dense,
                     info.k_start, info.workspace_bytes, info.budget_density);
        int32_t budget[3];
        if (stem_plan_get_budget(f.plan, budget, 3) != STEM_OK || budget[0] != 1 ||
            budget[2] != 1 || info.k_end != 1)
            fail_msg("stem_plan_get_budget: k_start 1 must give budget 1 everywhere");
        /* dense_above_density: at or below the budget density the plan runs
         * dense (budget nk everywhere); just above it, it keeps its budget. */
        for (int above = 0; above < 2; ++above) {
            stem_config c = f.cfg;
            c.dense_above_density = info.budget_density * (above ? 1.0001 : 1.0);
            stem_plan *pl = NULL;
            if (stem_plan_create(ctx, &f.desc, &c, &pl) != STEM_OK)
                fail_msg("stem_plan_create(dense_above_density %g): %s", c.dense_above_density,
                         stem_last_error());
            stem_plan_info pi;
            stem_plan_info_init(&pi);
            int32_t b3[3] = {0, 0, 0};
            const int ok = stem_plan_get_info(pl, &pi) == STEM_OK &&
                           stem_plan_get_budget(pl, b3, 3) == STEM_OK;
            stem_plan_destroy(pl);
            if (!ok || pi.dense != !above || b3[2] != (above ? 1 : 3) ||
                pi.budget_density != (above ? info.budget_density : 1.0))
                fail_msg("dense_above_density %g (budget density %g): dense %d, budget[2] %d, "
                         "density %g",
                         c.dense_above_density, info.budget_density, pi.dense, b3[2],
                         pi.budget_density);
        }
        /* A caller workspace at a 16-byte offset is accepted. */
        stem_buffer *ws = NULL;
        if (stem_buffer_create(ctx, info.workspace_bytes + 16, &ws) != STEM_OK)
            fail_msg("stem_buffer_create: %s", stem_last_error());
        res_add_buffer(R, ws);
        if (stem_plan_set_workspace(f.plan, ws, 16) != STEM_OK)
            fail_msg("stem_plan_set_workspace: %s", stem_last_error());
        break;
    }
    }
}

/* ------------------------------------------------------------ the list */

int conf_build_misuse(conf_misuse **out)
{
    int cap = ST_N * T_N * MU_N + ST_N + LI_N + N_PLAN_MUTS + MI_N + AP_N + CONF_HARDENING_CASES +
              CONF_ABI_CASES + CONF_XATTN_RULE_CASES + CONF_CHUNKED_CASES + CONF_VARLEN_CASES;
    conf_misuse *list = calloc((size_t)cap, sizeof *list);
    if (!list)
        return -1;
    int k = 0;
    for (int a = 0; a < AP_N; ++a) {
        snprintf(list[k].name, sizeof list[k].name, "api_%s", ap_name[a]);
        list[k].fn = api_check;
        list[k++].a = a;
    }
    for (int a = 0; a < MI_N; ++a) {
        snprintf(list[k].name, sizeof list[k].name, "misuse_%s", mi_name[a]);
        list[k].fn = misuse_misc;
        list[k++].a = a;
    }
    for (int a = 0; a < N_PLAN_MUTS; ++a) {
        snprintf(list[k].name, sizeof list[k].name, "misuse_plan_%s", plan_muts[a].name);
        list[k].fn = misuse_plan;
        list[k++].a = a;
    }
    for (int s = 0; s < ST_N; ++s) {
        snprintf(list[k].name, sizeof list[k].name, "misuse_%s_null_plan", stname[s]);
        list[k].fn = misuse_null_plan;
        list[k++].a = s;
    }
    /* Every tensor argument of every stage, every applicable mutation. */
    for (int s = 0; s < ST_N; ++s)
        for (int slot = 0; slot < T_N; ++slot) {
            if (!((st_uses[s] >> slot) & 1))
                continue;
            for (int mu = 0; mu < MU_N; ++mu) {
                const int is_out = (st_outputs[s] >> slot) & 1;
                if ((mu == MU_NULL && s == ST_PREFILL && slot >= T_SCORES && slot <= T_COUNT) ||
                    (mu == MU_OVER_INPUT && !is_out) ||
                    (mu == MU_OVER_OUTPUT && (!is_out || s == ST_SCORE || s == ST_ATTENTION)) ||
                    (mu == MU_OVERLAP && slot == T_COUNT))
                    continue;
                snprintf(list[k].name, sizeof list[k].name, "misuse_%s_%s_%s", stname[s],
                         tname[slot], muname[mu]);
                list[k].fn = misuse_stage;
                list[k].a = s;
                list[k].b = slot;
                list[k++].c = mu;
            }
        }
    for (int a = 0; a < LI_N; ++a) {
        snprintf(list[k].name, sizeof list[k].name, "misuse_attention_list_%s", liname[a]);
        list[k].fn = misuse_lists;
        list[k++].a = a;
    }
    k += conf_add_hardening_cases(list + k, cap - k);
    k += conf_add_abi_cases(list + k, cap - k);
    k += conf_add_xattn_rule_cases(list + k, cap - k);
    k += conf_add_chunked_cases(list + k, cap - k);
    k += conf_add_varlen_cases(list + k, cap - k);
    *out = list;
    return k;
}
