/* A program that embeds libstem, built three ways (find_package, pkg-config,
 * add_subdirectory; see README.md here). It runs one small prefill with the
 * DENSE selector and checks it against causal attention computed here, then
 * one with STEM and checks what must hold for a sparse selection: rows whose
 * budget covers every causal block equal dense attention, every row is a
 * convex combination of the visible values, and the plan is really sparse.
 * Prints the backend used; exits 0 only if every check passes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stem.h>

enum { HQ = 4, HKV = 2, N = 1024, D = 32, BLOCK = 16 };

#define CHECK(call)                                                                       \
    do {                                                                                  \
        stem_status st_ = (call);                                                         \
        if (st_ != STEM_OK) {                                                             \
            fprintf(stderr, "FAIL %s: %s: %s\n", #call, stem_status_name(st_),            \
                    stem_last_error());                                                   \
            return 1;                                                                     \
        }                                                                                 \
    } while (0)

static float *q, *k, *v, *out, *ref;
static double *logits;

static float uniform(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

/* Causal softmax(q k^T / sqrt(d)) v for one query head, in double. */
static void naive_row(int h, int i)
{
    const float *qi = q + ((size_t)h * N + i) * D;
    const int hk = h / (HQ / HKV);
    double m = -INFINITY, sum = 0.0;
    for (int j = 0; j <= i; ++j) {
        const float *kj = k + ((size_t)hk * N + j) * D;
        double dot = 0.0;
        for (int c = 0; c < D; ++c)
            dot += (double)qi[c] * kj[c];
        logits[j] = dot / sqrt((double)D);
        if (logits[j] > m)
            m = logits[j];
    }
    double acc[D] = {0};
    for (int j = 0; j <= i; ++j) {
        const double p = exp(logits[j] - m);
        sum += p;
        for (int c = 0; c < D; ++c)
            acc[c] += p * v[((size_t)hk * N + j) * D + c];
    }
    for (int c = 0; c < D; ++c)
        ref[((size_t)h * N + i) * D + c] = (float)(acc[c] / sum);
}

static int run(stem_context *ctx, stem_selector selector, stem_plan_info *info, int32_t *budget)
{
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.num_q_heads = HQ;
    desc.num_kv_heads = HKV;
    desc.q_len = desc.kv_len = N;
    desc.head_dim = D;
    desc.dtype = STEM_DTYPE_F32;
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.selector = selector;
    cfg.block_size = BLOCK; /* 64 blocks: enough for Stem to be sparse */

    const size_t qb = sizeof(float) * HQ * N * D, kvb = sizeof(float) * HKV * N * D;
    stem_plan *plan;
    stem_buffer *bq, *bk, *bv, *bo;
    CHECK(stem_plan_create(ctx, &desc, &cfg, &plan));
    CHECK(stem_buffer_create(ctx, qb, &bq));
    CHECK(stem_buffer_create(ctx, kvb, &bk));
    CHECK(stem_buffer_create(ctx, kvb, &bv));
    CHECK(stem_buffer_create(ctx, qb, &bo));
    CHECK(stem_buffer_write(bq, 0, q, qb));
    CHECK(stem_buffer_write(bk, 0, k, kvb));
    CHECK(stem_buffer_write(bv, 0, v, kvb));
    const stem_tensor tq = stem_tensor_bhnd(bq, 0, STEM_DTYPE_F32, 1, HQ, N, D);
    const stem_tensor tk = stem_tensor_bhnd(bk, 0, STEM_DTYPE_F32, 1, HKV, N, D);
    const stem_tensor tv = stem_tensor_bhnd(bv, 0, STEM_DTYPE_F32, 1, HKV, N, D);
    const stem_tensor to = stem_tensor_bhnd(bo, 0, STEM_DTYPE_F32, 1, HQ, N, D);
    CHECK(stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, NULL));
    CHECK(stem_synchronize(ctx));
    CHECK(stem_buffer_read(bo, 0, out, qb));
    stem_plan_info_init(info);
    CHECK(stem_plan_get_info(plan, info));
    CHECK(stem_plan_get_budget(plan, budget, (size_t)info->num_q_blocks));
    stem_buffer_destroy(bq);
    stem_buffer_destroy(bk);
    stem_buffer_destroy(bv);
    stem_buffer_destroy(bo);
    stem_plan_destroy(plan);
    return 0;
}

/* Largest |out - ref| over the query rows of blocks whose budget reaches
 * every causal block (row I keeps all of 0..I when I + 1 <= budget[I]). */
static double covered_error(const int32_t *budget, int *covered_rows)
{
    double worst = 0.0;
    *covered_rows = 0;
    for (int h = 0; h < HQ; ++h)
        for (int i = 0; i < N; ++i) {
            const int r = i / BLOCK;
            if (budget[r] < r + 1)
                continue;
            *covered_rows += h == 0;
            for (int c = 0; c < D; ++c) {
                const size_t x = ((size_t)h * N + i) * D + c;
                const double e = fabs((double)out[x] - ref[x]);
                worst = e > worst || e != e ? e : worst;
            }
        }
    return worst;
}

/* Every output lies within the range of the values its query can see. */
static int convex(void)
{
    for (int h = 0; h < HQ; ++h) {
        const int hk = h / (HQ / HKV);
        for (int c = 0; c < D; ++c) {
            float lo = INFINITY, hi = -INFINITY;
            for (int i = 0; i < N; ++i) {
                const float vi = v[((size_t)hk * N + i) * D + c];
                lo = vi < lo ? vi : lo;
                hi = vi > hi ? vi : hi;
                const float o = out[((size_t)h * N + i) * D + c];
                if (!(o >= lo - 1e-5f && o <= hi + 1e-5f))
                    return 0;
            }
        }
    }
    return 1;
}

int main(void)
{
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", STEM_VERSION_MAJOR, STEM_VERSION_MINOR,
             STEM_VERSION_PATCH);
    if (strcmp(version, stem_version_string()) != 0) {
        fprintf(stderr, "FAIL header %s, library %s\n", version, stem_version_string());
        return 1;
    }
    const size_t nq = (size_t)HQ * N * D, nkv = (size_t)HKV * N * D;
    q = malloc(nq * sizeof *q);
    k = malloc(nkv * sizeof *k);
    v = malloc(nkv * sizeof *v);
    out = malloc(nq * sizeof *out);
    ref = malloc(nq * sizeof *ref);
    logits = malloc(N * sizeof *logits);
    int32_t *budget = malloc(N * sizeof *budget);
    if (!q || !k || !v || !out || !ref || !logits || !budget)
        return 1;
    unsigned s = 7;
    for (size_t i = 0; i < nq; ++i)
        q[i] = 2.0f * uniform(&s);
    for (size_t i = 0; i < nkv; ++i) {
        k[i] = 2.0f * uniform(&s);
        v[i] = uniform(&s);
    }
    for (int h = 0; h < HQ; ++h)
        for (int i = 0; i < N; ++i)
            naive_row(h, i);

    stem_context *ctx;
    CHECK(stem_context_create(NULL, &ctx));
    stem_device_info dev;
    stem_device_info_init(&dev);
    CHECK(stem_context_get_device(ctx, &dev));
    printf("libstem %s, backend=%s, device %s\n", stem_version_string(),
           stem_backend_name(dev.backend), dev.name);
    /* f32 inputs; GPU backends may use reduced-precision math internally. */
    const double tol = dev.backend == STEM_BACKEND_CPU ? 1e-4 : 2e-2;

    int fail = 0, rows;
    stem_plan_info info;
    if (run(ctx, STEM_SELECTOR_DENSE, &info, budget))
        return 1;
    const double dense_err = covered_error(budget, &rows);
    printf("dense: max |out - naive| = %.2e over %d rows\n", dense_err, rows);
    if (!(dense_err <= tol) || rows != N) {
        fprintf(stderr, "FAIL dense attention differs from naive causal attention\n");
        fail = 1;
    }

    if (run(ctx, STEM_SELECTOR_STEM, &info, budget))
        return 1;
    const double stem_err = covered_error(budget, &rows);
    printf("stem: k_start %d, k_end %d, budget density %.3f; max |out - naive| = %.2e over "
           "the %d fully covered rows\n",
           info.k_start, info.k_end, info.budget_density, stem_err, rows);
    if (info.dense || !(info.budget_density < 1.0) || rows == N || rows < 8 * BLOCK) {
        fprintf(stderr, "FAIL the Stem plan is not sparse as expected\n");
        fail = 1;
    }
    if (!(stem_err <= tol)) {
        fprintf(stderr, "FAIL Stem differs from naive attention where it keeps every block\n");
        fail = 1;
    }
    if (!convex()) {
        fprintf(stderr, "FAIL a Stem output lies outside the range of the visible values\n");
        fail = 1;
    }
    stem_context_destroy(ctx);
    free(q); free(k); free(v); free(out); free(ref); free(logits); free(budget);
    puts(fail ? "consumer: FAILED" : "consumer: OK");
    return fail;
}
