/*
 * Fuzz target for the API's validation layer: descriptors, configuration,
 * tensors (dims, strides, offsets, dtypes, buffers) and the stage calls.
 *
 * Every input decodes into one plan and one stage call over tensors that
 * live in small, exactly sized host allocations (wrapped with
 * stem_buffer_wrap_host, so AddressSanitizer sees any access outside them).
 * Most decoded values are valid and the rest are mutated, so the fuzzer
 * reaches both the checks and the kernels behind them. Input values are
 * raw fuzz bytes too: NaN, Inf and garbage block lists included.
 *
 * Properties checked on every input (a violation aborts, which the fuzzer
 * reports as a crash):
 *  - a failing call returns a known status, sets stem_last_error(), leaves
 *    *out and every byte of every buffer as they were;
 *  - a successful call writes only bytes of the logical elements of its
 *    output tensors;
 *  - block lists written by stem_select / stem_prefill are ascending,
 *    causal, padded with -1, with a count in [0, I + 1], and keep the
 *    forced blocks; scores above the diagonal are -inf (0 for XATTENTION).
 *
 * Built two ways: with libFuzzer (clang -fsanitize=fuzzer, fuzz/CMakeLists.txt)
 * and with fuzz/replay_main.c, which replays the corpus and regressions as an
 * ordinary test under any compiler.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_api: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* ------------------------------------------------------- input decoding */

typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz;

static uint32_t u8(fz *f)
{
    if (!f->n)
        return 0;
    f->n--;
    return *f->p++;
}
static uint32_t u16(fz *f) { return u8(f) | u8(f) << 8; }
static uint32_t u32(fz *f) { return u16(f) | u16(f) << 16; }
static uint64_t u64(fz *f) { return (uint64_t)u32(f) | (uint64_t)u32(f) << 32; }
static float raw_f32(fz *f)
{
    const uint32_t b = u32(f);
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}
static double raw_f64(fz *f)
{
    const uint64_t b = u64(f);
    double x;
    memcpy(&x, &b, sizeof x);
    return x;
}
/* A signed value in about +-2^20: large enough to hit every limit check,
 * small enough that a plan the library accepts stays cheap. */
static int64_t raw_dim(fz *f) { return (int64_t)(int32_t)u32(f) / 2048; }

/* ------------------------------------------------------------- limits */

/* Problems the harness runs through the stages (anything larger is only
 * planned): keeps one input well under a millisecond of kernel time. */
#define MAX_ELEMS ((int64_t)1 << 15)  /* B * Hq * N * d */
#define MAX_BLOCKS 40                  /* nq = nk */
#define MAX_REGION ((size_t)1 << 20)   /* bytes of one tensor's allocation */

enum { T_Q, T_K, T_V, T_SCORES, T_INDEX, T_COUNT, T_OUT, T_N };

/* One tensor's host allocation, wrapped as a stem_buffer. */
typedef struct region {
    unsigned char *mem, *snap, *mark;
    size_t size;
    stem_buffer *buf;
} region;

static stem_context *shared_context(void)
{
    static stem_context *ctx;
    if (!ctx) {
        stem_context_desc cd;
        stem_context_desc_init(&cd);
        cd.num_threads = 1;
        cd.device = STEM_DEVICE_AUTO;
        CHECK(stem_context_create(&cd, &ctx) == STEM_OK, "%s", stem_last_error());
    }
    return ctx;
}

/* A failing call must leave a fresh message: set_marker() leaves one that
 * names MARKER, so a message still naming it was not written by the call. */
#define MARKER "fuzz-api-marker"
static void set_marker(void)
{
    stem_selector s;
    (void)stem_selector_from_name(MARKER, &s);
}

static void expect_failure(stem_status st, const char *what)
{
    CHECK(st >= STEM_ERR_INVALID_ARGUMENT && st <= STEM_ERR_INTERNAL, "%s: status %d", what,
          (int)st);
    CHECK(stem_last_error()[0] != '\0', "%s failed with an empty message", what);
    CHECK(!strstr(stem_last_error(), MARKER), "%s failed without setting a message", what);
}

static void decode_desc(fz *f, stem_attention_desc *d)
{
    static const int64_t head_dims[8] = {8, 16, 32, 64, 128, 24, 256, 40};
    stem_attention_desc_init(d);
    const uint32_t m = u8(f);
    d->batch = 1 + u8(f) % 2;
    d->num_kv_heads = 1 + u8(f) % 2;
    d->num_q_heads = d->num_kv_heads * (1 + u8(f) % 3);
    d->q_len = d->kv_len = 1 + u16(f) % 640;
    d->head_dim = head_dims[u8(f) % 8];
    d->dtype = (stem_dtype)(u8(f) % 3);
    d->layer_index = (int32_t)(u8(f) % 6) - 2;
    if (m & 1)
        d->batch = raw_dim(f);
    if (m & 2)
        d->num_q_heads = raw_dim(f);
    if (m & 4)
        d->num_kv_heads = raw_dim(f);
    if (m & 8) {
        d->q_len = raw_dim(f);
        d->kv_len = u8(f) & 1 ? raw_dim(f) : d->q_len;
    }
    if (m & 16)
        d->head_dim = raw_dim(f);
    if (m & 32) {
        d->dtype = (stem_dtype)(u8(f) % 6);
        d->causal = (int32_t)(int8_t)u8(f);
    }
    if (m & 64)
        d->softmax_scale = raw_f32(f);
    if (m & 128)
        d->struct_size = u8(f);
}

static void decode_config(fz *f, stem_config *c)
{
    stem_config_init(c);
    const uint32_t m = u16(f);
    c->selector = (stem_selector)(u8(f) % STEM_SELECTOR_COUNT);
    c->block_size = 16 << (u8(f) % 4);
    c->stride = 1 << (u8(f) % 5);
    c->k_start = (int32_t)(u8(f) % 6);
    c->sink_blocks = (int32_t)(u8(f) % 4);
    c->local_blocks = 1 + (int32_t)(u8(f) % 3);
    c->mu = (double)u8(f) / 255.0;
    c->beta = (float)u8(f) / 64.0f;
    c->xattn_threshold = (float)(1 + u8(f)) / 256.0f;
    c->uniform_k = (int32_t)(u8(f) % 4);
    c->dense_layers = (int32_t)(u8(f) % 3);
    c->dense_below_blocks = (int32_t)(u8(f) % 8);
    c->medium_below_blocks = (int32_t)(u8(f) % 16);
    c->paper_min_blocks = (int32_t)(u8(f) % 4);
    if (m & 1)
        c->selector = (stem_selector)(int32_t)u32(f);
    if (m & 2)
        c->block_size = (int32_t)u32(f);
    if (m & 4)
        c->stride = (int32_t)u32(f);
    if (m & 8)
        c->beta = raw_f32(f);
    if (m & 16)
        c->mu = raw_f64(f);
    if (m & 32) {
        c->sink_blocks = (int32_t)u32(f);
        c->local_blocks = (int32_t)u32(f);
    }
    if (m & 64)
        c->norm = raw_f32(f);
    if (m & 128)
        c->xattn_threshold = raw_f32(f);
    if (m & 256)
        c->k_start = (int32_t)u32(f);
    if (m & 512)
        c->uniform_k = (int32_t)u32(f);
    if (m & 1024) {
        c->medium_rate = raw_f64(f);
        c->large_rate = raw_f64(f);
        c->medium_bias = (int32_t)u32(f);
        c->large_bias = (int32_t)u32(f);
    }
    if (m & 2048) {
        c->paper_short_rate = raw_f64(f);
        c->paper_long_rate = raw_f64(f);
        c->paper_switch_tokens = (int64_t)u64(f);
        c->paper_min_blocks = (int32_t)u32(f);
    }
    if (m & 4096) {
        c->dense_below_blocks = (int32_t)u32(f);
        c->medium_below_blocks = (int32_t)u32(f);
        c->dense_layers = (int32_t)u32(f);
    }
    if (m & 8192)
        c->struct_size = u8(f);
}

/* ---------------------------------------------------- tensor footprints */

static int64_t span_elems(const stem_tensor *t)
{
    int64_t hi = 0;
    for (int i = 0; i < 4; ++i)
        hi += t->strides[i] * (t->dims[i] - 1);
    return hi + 1;
}

/* Marks the bytes of every logical element of t (which the library
 * accepted, so it lies inside its buffer). */
static void mark_footprint(region *r, const stem_tensor *t)
{
    const size_t es = stem_dtype_size(t->dtype);
    for (int64_t b = 0; b < t->dims[0]; ++b)
        for (int64_t h = 0; h < t->dims[1]; ++h)
            for (int64_t n = 0; n < t->dims[2]; ++n)
                for (int64_t i = 0; i < t->dims[3]; ++i) {
                    const size_t at = t->offset + (size_t)(b * t->strides[0] + h * t->strides[1] +
                                                           n * t->strides[2] + i * t->strides[3]) *
                                                      es;
                    CHECK(at + es <= r->size, "accepted tensor element past its buffer");
                    memset(r->mark + at, 1, es);
                }
}

static int32_t i32_at(const region *r, const stem_tensor *t, int64_t b, int64_t h, int64_t n,
                      int64_t i)
{
    int32_t v;
    memcpy(&v, r->mem + t->offset +
                   (size_t)(b * t->strides[0] + h * t->strides[1] + n * t->strides[2] +
                            i * t->strides[3]) *
                       4,
           4);
    return v;
}

static float f32_at(const region *r, const stem_tensor *t, int64_t b, int64_t h, int64_t n,
                    int64_t i)
{
    float v;
    memcpy(&v, r->mem + t->offset +
                   (size_t)(b * t->strides[0] + h * t->strides[1] + n * t->strides[2] +
                            i * t->strides[3]) *
                       4,
           4);
    return v;
}

/* Lists written by the library: well-formed, forced blocks kept. */
static void check_lists(const region *ri, const stem_tensor *ti, const region *rc,
                        const stem_tensor *tc, const stem_plan_info *info, const stem_config *c)
{
    const int64_t n = info->num_q_blocks;
    const int xattn = info->selector == STEM_SELECTOR_XATTENTION ||
                      info->selector == STEM_SELECTOR_XATTENTION_STRICT;
    for (int64_t b = 0; b < ti->dims[0]; ++b)
        for (int64_t h = 0; h < ti->dims[1]; ++h)
            for (int64_t I = 0; I < n; ++I) {
                const int32_t cnt = i32_at(rc, tc, b, h, I, 0);
                CHECK(cnt >= 1 && cnt <= I + 1, "row %lld: count %d", (long long)I, cnt);
                if (info->dense)
                    CHECK(cnt == I + 1, "dense plan, row %lld keeps %d", (long long)I, cnt);
                unsigned char keep[MAX_BLOCKS] = {0};
                int32_t prev = -1;
                for (int64_t r = 0; r < n; ++r) {
                    const int32_t v = i32_at(ri, ti, b, h, I, r);
                    if (r >= cnt) {
                        CHECK(v == -1, "row %lld: padding entry %lld = %d", (long long)I,
                              (long long)r, v);
                        continue;
                    }
                    CHECK(v > prev && v <= I, "row %lld entry %lld = %d after %d", (long long)I,
                          (long long)r, v, prev);
                    keep[v] = 1;
                    prev = v;
                }
                /* Forced blocks (docs/semantics.md section 5). */
                if (xattn) {
                    CHECK(keep[0] && keep[I], "xattention row %lld lacks block 0 or I",
                          (long long)I);
                } else {
                    for (int64_t J = 0; J <= I; ++J)
                        if (J < c->sink_blocks || J > I - c->local_blocks)
                            CHECK(keep[J], "row %lld lacks forced block %lld", (long long)I,
                                  (long long)J);
                }
            }
}

static void check_scores(const region *r, const stem_tensor *t, const stem_plan_info *info)
{
    const int xattn = info->selector == STEM_SELECTOR_XATTENTION ||
                      info->selector == STEM_SELECTOR_XATTENTION_STRICT;
    for (int64_t b = 0; b < t->dims[0]; ++b)
        for (int64_t h = 0; h < t->dims[1]; ++h)
            for (int64_t I = 0; I < t->dims[2]; ++I)
                for (int64_t J = I + 1; J < t->dims[3]; ++J) {
                    const float v = f32_at(r, t, b, h, I, J);
                    CHECK(xattn ? v == 0.0f : (isinf(v) && v < 0), "score [%lld][%lld] = %g",
                          (long long)I, (long long)J, (double)v);
                }
}

/* ------------------------------------------------------------ one input */

static const char *const stage_names[6] = {"stem_score",   "stem_select",
                                           "stem_attention", "stem_prefill",
                                           "stem_prefill(out only)", "stem_prefill(some)"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    stem_context *ctx = shared_context();
    stem_attention_desc d;
    stem_config c;
    decode_desc(&f, &d);
    decode_config(&f, &c);
    const int use_cfg = (u8(&f) & 7) != 0;

    stem_plan *const sentinel = (stem_plan *)(uintptr_t)0x5EA1u;
    stem_plan *plan = sentinel;
    set_marker();
    stem_status st = stem_plan_create(ctx, &d, use_cfg ? &c : NULL, &plan);
    if (st != STEM_OK) {
        expect_failure(st, "stem_plan_create");
        CHECK(plan == sentinel, "stem_plan_create failed but wrote *out");
        return 0;
    }
    CHECK(plan && plan != sentinel, "stem_plan_create returned OK without a plan");
    if (!use_cfg)
        stem_config_init(&c);
    stem_plan_info info;
    stem_plan_info_init(&info);
    CHECK(stem_plan_get_info(plan, &info) == STEM_OK, "%s", stem_last_error());
    /* Bottom-right queries: rows are the absolute query blocks of the last
     * q_len of kv_len keys; the budget is keyed on the prompt (kv_len here). */
    const int64_t n = info.num_q_blocks, nk = info.num_k_blocks;
    const int64_t prefix = d.kv_len - d.q_len;
    CHECK(nk == (d.kv_len + c.block_size - 1) / c.block_size, "num_k_blocks %lld", (long long)nk);
    CHECK(n == nk - prefix / c.block_size, "num_q_blocks %lld of %lld key blocks", (long long)n,
          (long long)nk);
    CHECK(info.k_end >= 0 && info.k_start >= 0 && info.k_start <= nk, "k_start %d of %lld",
          info.k_start, (long long)nk);
    if (n <= 4096) {
        int32_t budget[4096];
        CHECK(stem_plan_get_budget(plan, budget, (size_t)n) == STEM_OK, "%s", stem_last_error());
        for (int64_t i = 0; i < n; ++i)
            CHECK(budget[i] >= 1 && budget[i] <= nk, "budget[%lld] = %d", (long long)i, budget[i]);
    }
    /* The stages below are driven with fresh-prefill tensors; chunked calls
     * have their own cases in the conformance and misuse tables. */
    if (d.batch * d.num_q_heads * d.q_len * d.head_dim > MAX_ELEMS || n > MAX_BLOCKS ||
        d.q_len != d.kv_len) {
        stem_plan_destroy(plan);
        return 0;
    }

    /* Tensors: expected dims and dtypes, then layout and mutations. */
    const int64_t B = d.batch, hq = d.num_q_heads, hkv = d.num_kv_heads, N = d.q_len,
                  hd = d.head_dim;
    const int64_t dims[T_N][4] = {{B, hq, N, hd}, {B, hkv, N, hd}, {B, hkv, N, hd}, {B, hq, n, n},
                                  {B, hq, n, n},  {B, hq, n, 1},   {B, hq, N, hd}};
    const stem_dtype out_dtype = (stem_dtype)(u8(&f) % 3);
    const stem_dtype dtypes[T_N] = {d.dtype,        d.dtype,        d.dtype,  STEM_DTYPE_F32,
                                    STEM_DTYPE_I32, STEM_DTYPE_I32, out_dtype};
    region reg[T_N];
    stem_tensor t[T_N];
    int is_null[T_N] = {0};
    stem_buffer *ws = NULL;
    memset(reg, 0, sizeof reg);
    int ok = 1;
    for (int s = 0; s < T_N && ok; ++s) {
        const uint32_t layout = u8(&f), mut = u8(&f), fill = u8(&f);
        stem_tensor *x = &t[s];
        memset(x, 0, sizeof *x);
        x->dtype = dtypes[s];
        memcpy(x->dims, dims[s], sizeof x->dims);
        const int64_t *dm = dims[s];
        switch (layout & 3) {
        case 0: *x = stem_tensor_bhnd(NULL, 0, x->dtype, dm[0], dm[1], dm[2], dm[3]); break;
        case 1: *x = stem_tensor_bnhd(NULL, 0, x->dtype, dm[0], dm[1], dm[2], dm[3]); break;
        case 2: { /* padded rows, heads and batch */
            const int64_t pr = layout >> 2 & 7, ph = layout >> 5 & 7;
            x->strides[3] = 1;
            x->strides[2] = dm[3] + pr;
            x->strides[1] = dm[2] * x->strides[2] + ph;
            x->strides[0] = dm[1] * x->strides[1] + 3;
            break;
        }
        default: /* anything: overlapping, zero, negative, huge */
            for (int i = 0; i < 4; ++i)
                x->strides[i] = (int64_t)(int16_t)u16(&f);
            if (layout & 4)
                x->strides[u8(&f) % 4] = (int64_t)u64(&f);
            break;
        }
        const size_t es = stem_dtype_size(x->dtype);
        int64_t span = 0;
        for (int i = 0; i < 4; ++i)
            if (x->strides[i] < 0 || (x->strides[i] > (int64_t)(MAX_REGION / 4) && x->dims[i] > 1))
                span = -1;
        if (span == 0)
            span = span_elems(x);
        size_t need = span > 0 && (size_t)span <= MAX_REGION / 4 ? (size_t)span * es : 64;
        x->offset = (mut & 3) * es;
        int64_t sz = (int64_t)(x->offset + need) + (int8_t)u8(&f) % 8 * (int64_t)es;
        if (sz < 1 || (size_t)sz > MAX_REGION)
            sz = 64;
        region *r = &reg[s];
        r->size = (size_t)sz;
        r->mem = malloc(r->size);
        r->snap = malloc(r->size);
        r->mark = calloc(1, r->size);
        CHECK(r->mem && r->snap && r->mark, "out of memory");
        /* Contents: fuzz bytes (NaN, Inf, garbage lists) or plain values (bytes
         * 0x30-0x3f: finite f32 / f16 / bf16 of magnitude about 1). */
        for (size_t i = 0; i < r->size; ++i)
            r->mem[i] = (unsigned char)(fill & 1 ? u8(&f) : 0x30u | ((i * 37 + (size_t)s) >> 2 & 15));
        if (!(fill & 1) && (s == T_INDEX || s == T_COUNT) && span > 0 &&
            x->offset + (size_t)span * 4 <= r->size) {
            /* Full causal lists, which stem_attention accepts. */
            for (int64_t b = 0; b < dm[0]; ++b)
                for (int64_t h = 0; h < dm[1]; ++h)
                    for (int64_t I = 0; I < dm[2]; ++I)
                        for (int64_t J = 0; J < dm[3]; ++J) {
                            const int32_t v = s == T_COUNT ? (int32_t)I + 1
                                              : J <= I    ? (int32_t)J
                                                          : -1;
                            memcpy(r->mem + x->offset +
                                       (size_t)(b * x->strides[0] + h * x->strides[1] +
                                                I * x->strides[2] + J * x->strides[3]) *
                                           4,
                                   &v, 4);
                        }
        }
        st = stem_buffer_wrap_host(ctx, r->mem, r->size, &r->buf);
        if (st != STEM_OK) {
            expect_failure(st, "stem_buffer_wrap_host");
            ok = 0;
            break;
        }
        x->buffer = r->buf;
        /* Mutations past the layout. */
        if (mut & 4)
            x->dtype = (stem_dtype)(u8(&f) % 6);
        if (mut & 8)
            x->dims[u8(&f) % 4] += (int8_t)u8(&f);
        if (mut & 16)
            x->offset = u16(&f);
        if (mut & 32)
            is_null[s] = 1;
        if (mut & 64)
            x->buffer = NULL;
        if (mut & 128)
            x->buffer = reg[u8(&f) % (unsigned)(s + 1)].buf; /* maybe another tensor's */
    }
    if (ok) {
        const int stage = (int)(u8(&f) % 6);
        const uint32_t opt = u8(&f);
        if (u8(&f) == 0xA5) {
            /* A caller workspace of fuzzed size and offset. */
            const size_t wsize = (size_t)u16(&f) * 16 + 1;
            if (stem_buffer_create(ctx, wsize, &ws) == STEM_OK) {
                set_marker();
                st = stem_plan_set_workspace(plan, ws, (size_t)u8(&f) * 8);
                if (st != STEM_OK)
                    expect_failure(st, "stem_plan_set_workspace");
            }
        }
        const stem_tensor *a[T_N];
        for (int s = 0; s < T_N; ++s)
            a[s] = is_null[s] ? NULL : &t[s];
        if (stage == 4)
            a[T_SCORES] = a[T_INDEX] = a[T_COUNT] = NULL;
        if (stage == 5)
            for (int s = T_SCORES; s <= T_COUNT; ++s)
                if (opt >> s & 1)
                    a[s] = NULL;
        for (int s = 0; s < T_N; ++s)
            memcpy(reg[s].snap, reg[s].mem, reg[s].size);
        unsigned outputs = 0;
        set_marker();
        switch (stage) {
        case 0:
            st = stem_score(plan, a[T_Q], a[T_K], a[T_V], a[T_SCORES]);
            outputs = 1u << T_SCORES;
            break;
        case 1:
            st = stem_select(plan, a[T_SCORES], a[T_INDEX], a[T_COUNT]);
            outputs = 1u << T_INDEX | 1u << T_COUNT;
            break;
        case 2:
            st = stem_attention(plan, a[T_Q], a[T_K], a[T_V], a[T_INDEX], a[T_COUNT], a[T_OUT]);
            outputs = 1u << T_OUT;
            break;
        default:
            st = stem_prefill(plan, a[T_Q], a[T_K], a[T_V], a[T_OUT], a[T_SCORES], a[T_INDEX],
                              a[T_COUNT]);
            outputs = 1u << T_OUT;
            for (int s = T_SCORES; s <= T_COUNT; ++s)
                if (a[s])
                    outputs |= 1u << s;
            break;
        }
        if (st == STEM_OK)
            st = stem_synchronize(ctx);
        if (getenv("FUZZ_API_VERBOSE")) /* what an input reaches, for corpus work */
            fprintf(stderr, "fuzz_api: %s on N=%lld d=%lld %s: %s\n", stage_names[stage],
                    (long long)N, (long long)hd, stem_selector_name(info.selector),
                    stem_status_name(st));
        if (st != STEM_OK) {
            expect_failure(st, stage_names[stage]);
            for (int s = 0; s < T_N; ++s)
                CHECK(memcmp(reg[s].snap, reg[s].mem, reg[s].size) == 0,
                      "%s failed (%s) but changed the buffer of tensor %d", stage_names[stage],
                      stem_status_name(st), s);
        } else {
            /* Only output elements may change. */
            for (int s = 0; s < T_N; ++s)
                if (outputs >> s & 1) {
                    for (int r = 0; r < T_N; ++r)
                        if (reg[r].buf == t[s].buffer)
                            mark_footprint(&reg[r], &t[s]);
                }
            for (int r = 0; r < T_N; ++r)
                for (size_t i = 0; i < reg[r].size; ++i)
                    CHECK(reg[r].mark[i] || reg[r].mem[i] == reg[r].snap[i],
                          "%s wrote byte %zu of buffer %d outside its outputs",
                          stage_names[stage], i, r);
            if (outputs >> T_INDEX & 1 && outputs >> T_COUNT & 1) {
                const region *ri = NULL, *rc = NULL;
                for (int r = 0; r < T_N; ++r) {
                    if (reg[r].buf == t[T_INDEX].buffer)
                        ri = &reg[r];
                    if (reg[r].buf == t[T_COUNT].buffer)
                        rc = &reg[r];
                }
                check_lists(ri, &t[T_INDEX], rc, &t[T_COUNT], &info, &c);
            }
            if (outputs >> T_SCORES & 1) {
                for (int r = 0; r < T_N; ++r)
                    if (reg[r].buf == t[T_SCORES].buffer) {
                        check_scores(&reg[r], &t[T_SCORES], &info);
                        break;
                    }
            }
        }
    }
    stem_plan_destroy(plan);
    stem_buffer_destroy(ws); /* after the plan that may use it */
    for (int s = 0; s < T_N; ++s) {
        stem_buffer_destroy(reg[s].buf);
        free(reg[s].mem);
        free(reg[s].snap);
        free(reg[s].mark);
    }
    return 0;
}
