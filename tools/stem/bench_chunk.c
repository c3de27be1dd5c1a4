/* stem bench --chunk C / --prefix P: the cost of chunked (or one
 * prefix-cached) prefill against one-shot prefill of the same prompt, and
 * how far its selection and output move. Every call is a view of the same
 * device buffers (queries [P, L), keys [0, L)), prompt_len = N, VISIBLE
 * statistics: the last chunk's rows equal the one-shot rows, earlier chunks'
 * rows may differ slightly (their value statistics see fewer keys). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define CHECK(call, what)                                                                     \
    do {                                                                                      \
        stem_status st_ = (call);                                                             \
        if (st_ != STEM_OK) {                                                                 \
            tool_fail(st_, what);                                                             \
            goto done;                                                                        \
        }                                                                                     \
    } while (0)

#define MAX_CALLS 4096

static double elem(const void *p, stem_dtype dt, size_t i)
{
    if (dt == STEM_DTYPE_F32)
        return ((const float *)p)[i];
    float f = 0.0f;
    stem_convert((const uint16_t *)p + i, dt, &f, STEM_DTYPE_F32, 1);
    return f;
}

/* A view of rows [r0, r0 + rows) of a contiguous [B, H, n, d] tensor. */
static stem_tensor rows_view(stem_buffer *buf, stem_dtype dt, int64_t B, int64_t H, int64_t n,
                             int64_t d, int64_t r0, int64_t rows)
{
    stem_tensor t = stem_tensor_bhnd(buf, 0, dt, B, H, n, d);
    t.offset = (size_t)(r0 * d) * stem_dtype_size(dt);
    t.dims[2] = rows;
    return t;
}

int bench_chunked(stem_context *ctx, const tool_opts *o, const bench_shape *s, int64_t chunk,
                  int64_t prefix, int warmup, int repeat, int quiet, bench_chunk_result *r)
{
    int rc = 1;
    const int64_t B = s->batch, Hq = s->hq, Hkv = s->hkv, N = s->n, d = s->d;
    const int64_t qd[4] = {B, Hq, N, d}, kd[4] = {B, Hkv, N, d};
    const size_t esz = stem_dtype_size(s->dtype);
    const size_t qn = tool_mul_size(4, qd, 1), kn = tool_mul_size(4, kd, 1);
    const int64_t bs = o->cfg.block_size, nk = (N + bs - 1) / bs;
    float *hq = NULL, *hk = NULL, *hv = NULL;
    void *o1 = NULL, *o2 = NULL;
    int32_t *i1 = NULL, *c1 = NULL, *i2 = NULL, *c2 = NULL;
    double *ms = NULL;
    stem_plan *one = NULL, *plans[MAX_CALLS] = {0};
    int64_t P0[MAX_CALLS];
    int calls = 0;
    stem_buffer *buf[9] = {0}; /* q k v out1 out2 index1 count1 index2 count2 */
    memset(r, 0, sizeof *r);
    if (!qn || !kn)
        return tool_error("shape too large");
    if (prefix > 0) {
        if (prefix >= N)
            return tool_error("--prefix %lld must be below N = %lld", (long long)prefix,
                              (long long)N);
        P0[calls++] = prefix;
    } else {
        for (int64_t p = 0; p < N; p += chunk) {
            if (calls == MAX_CALLS)
                return tool_error("--chunk %lld: more than %d calls", (long long)chunk, MAX_CALLS);
            P0[calls++] = p;
        }
    }
    r->calls = calls;

    if (bench_inputs(s, &hq, &hk, &hv))
        goto done;

    stem_attention_desc desc;
    bench_desc(s, o, &desc);
    CHECK(stem_plan_create(ctx, &desc, &o->cfg, &one), "stem_plan_create (one-shot)");
    /* Every call's plan up front: planning is not part of the timed prefill. */
    desc.prompt_len = N;
    for (int c = 0; c < calls; c++) {
        const int64_t L = prefix > 0 ? N : (P0[c] + chunk < N ? P0[c] + chunk : N);
        desc.q_len = L - P0[c];
        desc.kv_len = L;
        CHECK(stem_plan_create(ctx, &desc, &o->cfg, &plans[c]), "stem_plan_create (chunk)");
    }

    const size_t lists = (size_t)(B * Hq) * (size_t)nk * (size_t)nk * 4;
    const size_t counts = (size_t)(B * Hq) * (size_t)nk * 4;
    const size_t bytes[9] = {qn * esz, kn * esz, kn * esz, qn * esz, qn * esz,
                             lists,    counts,   lists,    counts};
    const void *src[3] = {hq, hk, hv};
    for (int i = 0; i < 9; i++) {
        CHECK(stem_buffer_create(ctx, bytes[i], &buf[i]), "stem_buffer_create");
        if (i < 3)
            CHECK(stem_buffer_write(buf[i], 0, src[i], bytes[i]), "stem_buffer_write");
    }
    const stem_tensor tq = stem_tensor_bhnd(buf[0], 0, s->dtype, B, Hq, N, d);
    const stem_tensor tk = stem_tensor_bhnd(buf[1], 0, s->dtype, B, Hkv, N, d);
    const stem_tensor tv = stem_tensor_bhnd(buf[2], 0, s->dtype, B, Hkv, N, d);
    const stem_tensor to1 = stem_tensor_bhnd(buf[3], 0, s->dtype, B, Hq, N, d);
    const stem_tensor ti1 = stem_tensor_bhnd(buf[5], 0, STEM_DTYPE_I32, B, Hq, nk, nk);
    const stem_tensor tc1 = stem_tensor_bhnd(buf[6], 0, STEM_DTYPE_I32, B, Hq, nk, 1);

    ms = calloc((size_t)repeat * 2, sizeof *ms);
    if (!ms) {
        tool_error("out of memory");
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "[N=%lld] one-shot and %d call(s): %d warm-up + %d timed runs\n",
                (long long)N, calls, warmup, repeat);
    for (int it = 0; it < warmup + repeat; it++) {
        CHECK(stem_synchronize(ctx), "stem_synchronize");
        double t0 = tool_now_ms();
        CHECK(stem_prefill(one, &tq, &tk, &tv, &to1, NULL, &ti1, &tc1), "stem_prefill");
        CHECK(stem_synchronize(ctx), "stem_synchronize");
        double t1 = tool_now_ms();
        for (int c = 0; c < calls; c++) {
            const int64_t L = prefix > 0 ? N : (P0[c] + chunk < N ? P0[c] + chunk : N);
            const stem_tensor q = rows_view(buf[0], s->dtype, B, Hq, N, d, P0[c], L - P0[c]);
            const stem_tensor k = rows_view(buf[1], s->dtype, B, Hkv, N, d, 0, L);
            const stem_tensor v = rows_view(buf[2], s->dtype, B, Hkv, N, d, 0, L);
            const stem_tensor out = rows_view(buf[4], s->dtype, B, Hq, N, d, P0[c], L - P0[c]);
            CHECK(stem_prefill(plans[c], &q, &k, &v, &out, NULL, NULL, NULL), "stem_prefill");
        }
        CHECK(stem_synchronize(ctx), "stem_synchronize");
        double t2 = tool_now_ms();
        if (it >= warmup) {
            ms[it - warmup] = t1 - t0;
            ms[repeat + it - warmup] = t2 - t1;
        }
    }
    r->oneshot_ms = tool_median(ms, repeat);
    r->chunked_ms = tool_median(ms + repeat, repeat);

    /* Selection and output against one-shot (untimed pass with the lists). */
    i1 = malloc(lists);
    c1 = malloc(counts);
    i2 = malloc(lists);
    c2 = malloc(counts);
    o1 = malloc(bytes[3]);
    o2 = malloc(bytes[4]);
    if (!i1 || !c1 || !i2 || !c2 || !o1 || !o2) {
        tool_error("out of memory");
        goto done;
    }
    CHECK(stem_buffer_read(buf[5], 0, i1, lists), "stem_buffer_read");
    CHECK(stem_buffer_read(buf[6], 0, c1, counts), "stem_buffer_read");
    int64_t rows_total = 0, rows_equal = 0;
    for (int c = 0; c < calls; c++) {
        const int64_t L = prefix > 0 ? N : (P0[c] + chunk < N ? P0[c] + chunk : N);
        const int64_t row0 = P0[c] / bs, nkc = (L + bs - 1) / bs, rows = nkc - row0;
        const stem_tensor q = rows_view(buf[0], s->dtype, B, Hq, N, d, P0[c], L - P0[c]);
        const stem_tensor k = rows_view(buf[1], s->dtype, B, Hkv, N, d, 0, L);
        const stem_tensor v = rows_view(buf[2], s->dtype, B, Hkv, N, d, 0, L);
        const stem_tensor out = rows_view(buf[4], s->dtype, B, Hq, N, d, P0[c], L - P0[c]);
        const stem_tensor ti = stem_tensor_bhnd(buf[7], 0, STEM_DTYPE_I32, B, Hq, rows, nkc);
        const stem_tensor tc = stem_tensor_bhnd(buf[8], 0, STEM_DTYPE_I32, B, Hq, rows, 1);
        CHECK(stem_prefill(plans[c], &q, &k, &v, &out, NULL, &ti, &tc), "stem_prefill");
        CHECK(stem_buffer_read(buf[7], 0, i2, (size_t)(B * Hq * rows * nkc) * 4),
              "stem_buffer_read");
        CHECK(stem_buffer_read(buf[8], 0, c2, (size_t)(B * Hq * rows) * 4), "stem_buffer_read");
        for (int64_t bh = 0; bh < B * Hq; bh++)
            for (int64_t rr = 0; rr < rows; rr++) {
                const int64_t R = row0 + rr;
                const int32_t n2 = c2[bh * rows + rr];
                rows_total++;
                rows_equal += n2 == c1[bh * nk + R] &&
                              !memcmp(i2 + (bh * rows + rr) * nkc, i1 + (bh * nk + R) * nk,
                                      (size_t)(n2 > 0 ? n2 : 0) * 4);
            }
    }
    CHECK(stem_buffer_read(buf[3], 0, o1, bytes[3]), "stem_buffer_read");
    CHECK(stem_buffer_read(buf[4], 0, o2, bytes[4]), "stem_buffer_read");
    double num = 0.0, den = 0.0;
    const int64_t first = P0[0];
    for (int64_t bh = 0; bh < B * Hq; bh++)
        for (int64_t i = first * d; i < N * d; i++) {
            const size_t at = (size_t)(bh * N * d + i);
            const double a = elem(o2, s->dtype, at), b = elem(o1, s->dtype, at);
            num += (a - b) * (a - b);
            den += b * b;
        }
    r->rows_equal = rows_total ? (double)rows_equal / (double)rows_total : 1.0;
    r->rel_diff = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
    rc = 0;
done:
    free(hq);
    free(hk);
    free(hv);
    free(o1);
    free(o2);
    free(i1);
    free(c1);
    free(i2);
    free(c2);
    free(ms);
    for (int i = 0; i < 9; i++)
        if (buf[i])
            stem_buffer_destroy(buf[i]);
    for (int c = 0; c < calls; c++)
        if (plans[c])
            stem_plan_destroy(plans[c]);
    if (one)
        stem_plan_destroy(one);
    return rc;
}
