/* test_vk_limits: long rows on every Vulkan device, the cases that
 * llvmpipe's loop limiter (65535 iterations of non-unrolled loops per shader
 * invocation, then every loop ends silently) used to truncate.
 *
 *  1. attention over custom lists at N = 32768, 1 head, d = 64, block 64:
 *     the last two block rows list every causal block (dense rows of up to
 *     32768 keys), the others only the diagonal; checked against attention
 *     computed here in double.
 *  2. XAttention block masses at N = 2048, d = 64, block 64, stride 8 (the
 *     old kernel looped over every column of a strided row in one
 *     invocation), checked against the CPU backend's.
 *  3. on llvmpipe, a dense plan past the budget is declined with
 *     STEM_ERR_UNSUPPORTED (never computed wrong).
 *  4. one context meets 96 shader variants (XAttention scoring for three
 *     dtypes x 32 head_dims; the pipeline table once stopped at 64), each
 *     checked against the CPU backend. llvmpipe compiles each in about a
 *     second: there 9 of them unless STEM_TEST_EMULATED=all.
 *
 * No Vulkan device: skipped (exit 77), or failed when STEM_TEST_REQUIRE
 * lists vulkan. STEM_TEST_ONLY is honoured like the other suites. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_filter.h"
#include "stem.h"

#define SKIP 77

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int required(void)
{
    const char *s = getenv("STEM_TEST_REQUIRE");
    return s && strstr(s, "vulkan") != NULL;
}

typedef struct bufs {
    stem_buffer *b[7];
} bufs;

static void bufs_free(bufs *b)
{
    for (int i = 0; i < 7; ++i)
        stem_buffer_destroy(b->b[i]);
    memset(b, 0, sizeof *b);
}

static stem_plan *make_plan(stem_context *ctx, int64_t n_tokens, int64_t d, stem_selector sel,
                            int32_t block, int32_t stride, stem_status *st)
{
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = 1;
    desc.num_q_heads = desc.num_kv_heads = 1;
    desc.q_len = desc.kv_len = n_tokens;
    desc.head_dim = d;
    desc.dtype = STEM_DTYPE_F32;
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.selector = sel;
    cfg.block_size = block;
    cfg.stride = stride;
    stem_plan *plan = NULL;
    *st = stem_plan_create(ctx, &desc, &cfg, &plan);
    return plan;
}

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("FAIL: " __VA_ARGS__);                                                      \
            printf(" (%s)\n", stem_last_error());                                              \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

/* 1: dense rows of up to N keys through stem_attention with given lists. */
static int long_rows(stem_context *ctx)
{
    const int64_t N = 32768, d = 64, B = 64, n = N / B;
    const int64_t full_from = n - 2; /* block rows listing every causal block */
    int ok = 0;
    bufs b = {{0}};
    stem_status st;
    float *q = malloc((size_t)(N * d) * 4), *k = malloc((size_t)(N * d) * 4);
    float *v = malloc((size_t)(N * d) * 4), *out = malloc((size_t)(N * d) * 4);
    int32_t *index = malloc((size_t)(n * n) * 4), *count = malloc((size_t)n * 4);
    stem_plan *plan = make_plan(ctx, N, d, STEM_SELECTOR_DENSE, (int32_t)B, 8, &st);
    CHECK(q && k && v && out && index && count, "out of host memory");
    CHECK(st == STEM_OK, "stem_plan_create(N=%lld dense) returned %s", (long long)N,
          stem_status_name(st));
    for (int64_t i = 0; i < N * d; ++i) {
        q[i] = frand();
        k[i] = frand();
        v[i] = frand();
    }
    for (int64_t I = 0; I < n; ++I) {
        int64_t c = 0;
        for (int64_t J = 0; J < n; ++J)
            index[I * n + J] = -1;
        if (I >= full_from)
            for (int64_t J = 0; J <= I; ++J)
                index[I * n + c++] = (int32_t)J;
        else
            index[I * n + c++] = (int32_t)I;
        count[I] = (int32_t)c;
    }
    const size_t sz[6] = {(size_t)(N * d) * 4, (size_t)(N * d) * 4, (size_t)(N * d) * 4,
                          (size_t)(n * n) * 4, (size_t)n * 4,       (size_t)(N * d) * 4};
    const void *src[5] = {q, k, v, index, count};
    for (int i = 0; i < 6; ++i) {
        CHECK((st = stem_buffer_create(ctx, sz[i], &b.b[i])) == STEM_OK, "stem_buffer_create");
        if (i < 5)
            CHECK((st = stem_buffer_write(b.b[i], 0, src[i], sz[i])) == STEM_OK,
                  "stem_buffer_write");
    }
    const stem_tensor tq = stem_tensor_bhnd(b.b[0], 0, STEM_DTYPE_F32, 1, 1, N, d);
    const stem_tensor tk = stem_tensor_bhnd(b.b[1], 0, STEM_DTYPE_F32, 1, 1, N, d);
    const stem_tensor tv = stem_tensor_bhnd(b.b[2], 0, STEM_DTYPE_F32, 1, 1, N, d);
    const stem_tensor ti = stem_tensor_bhnd(b.b[3], 0, STEM_DTYPE_I32, 1, 1, n, n);
    const stem_tensor tc = stem_tensor_bhnd(b.b[4], 0, STEM_DTYPE_I32, 1, 1, n, 1);
    const stem_tensor to = stem_tensor_bhnd(b.b[5], 0, STEM_DTYPE_F32, 1, 1, N, d);
    st = stem_attention(plan, &tq, &tk, &tv, &ti, &tc, &to);
    if (st == STEM_OK)
        st = stem_synchronize(ctx);
    CHECK(st == STEM_OK, "stem_attention returned %s", stem_status_name(st));
    CHECK(stem_buffer_read(b.b[5], 0, out, sz[5]) == STEM_OK, "stem_buffer_read");

    /* Reference in double: every row of the full block rows, and one row in
     * 64 elsewhere (keys of its diagonal block only). */
    const double scale = 1.0 / sqrt((double)d);
    double worst = 0.0;
    int64_t worst_row = -1;
    double *p = malloc((size_t)N * sizeof *p), acc[64];
    CHECK(p != NULL, "out of host memory");
    for (int64_t r = 0; r < N; ++r) {
        const int64_t I = r / B;
        if (I < full_from && r % 64 != 17)
            continue;
        const int64_t k0 = I >= full_from ? 0 : I * B;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t t = k0; t <= r; ++t) {
            double s = 0.0;
            for (int64_t e = 0; e < d; ++e)
                s += (double)q[r * d + e] * (double)k[t * d + e];
            p[t] = s * scale;
            if (p[t] > mx)
                mx = p[t];
        }
        for (int64_t e = 0; e < d; ++e)
            acc[e] = 0.0;
        for (int64_t t = k0; t <= r; ++t) {
            const double w = exp(p[t] - mx);
            sum += w;
            for (int64_t e = 0; e < d; ++e)
                acc[e] += w * (double)v[t * d + e];
        }
        for (int64_t e = 0; e < d; ++e) {
            const double err = fabs((double)out[r * d + e] - acc[e] / sum);
            if (err > worst) {
                worst = err;
                worst_row = r;
            }
        }
    }
    free(p);
    printf("  attention N=%lld d=%lld, rows of up to %lld keys: worst |err| %.3g (row %lld)\n",
           (long long)N, (long long)d, (long long)N, worst, (long long)worst_row);
    CHECK(worst < 1e-4, "attention differs from the double reference by %.3g at row %lld", worst,
          (long long)worst_row);
    ok = 1;
done:
    stem_plan_destroy(plan);
    bufs_free(&b);
    free(q), free(k), free(v), free(out), free(index), free(count);
    return ok;
}

/* stem_score on ctx into host scores[n*n]. */
static int xattn_scores(stem_context *ctx, const float *q, const float *k, int64_t N, int64_t d,
                        float *scores)
{
    const int64_t B = 64, n = N / B;
    int ok = 0;
    bufs b = {{0}};
    stem_status st;
    stem_plan *plan = make_plan(ctx, N, d, STEM_SELECTOR_XATTENTION, (int32_t)B, 8, &st);
    CHECK(st == STEM_OK, "stem_plan_create(xattention) returned %s", stem_status_name(st));
    const size_t sz[4] = {(size_t)(N * d) * 4, (size_t)(N * d) * 4, (size_t)(N * d) * 4,
                          (size_t)(n * n) * 4};
    for (int i = 0; i < 4; ++i)
        CHECK((st = stem_buffer_create(ctx, sz[i], &b.b[i])) == STEM_OK, "stem_buffer_create");
    CHECK(stem_buffer_write(b.b[0], 0, q, sz[0]) == STEM_OK &&
              stem_buffer_write(b.b[1], 0, k, sz[1]) == STEM_OK &&
              stem_buffer_write(b.b[2], 0, k, sz[2]) == STEM_OK,
          "stem_buffer_write");
    const stem_tensor tq = stem_tensor_bhnd(b.b[0], 0, STEM_DTYPE_F32, 1, 1, N, d);
    const stem_tensor tk = stem_tensor_bhnd(b.b[1], 0, STEM_DTYPE_F32, 1, 1, N, d);
    const stem_tensor tv = stem_tensor_bhnd(b.b[2], 0, STEM_DTYPE_F32, 1, 1, N, d);
    const stem_tensor ts = stem_tensor_bhnd(b.b[3], 0, STEM_DTYPE_F32, 1, 1, n, n);
    st = stem_score(plan, &tq, &tk, &tv, &ts);
    if (st == STEM_OK)
        st = stem_synchronize(ctx);
    CHECK(st == STEM_OK, "stem_score returned %s", stem_status_name(st));
    CHECK(stem_buffer_read(b.b[3], 0, scores, sz[3]) == STEM_OK, "stem_buffer_read");
    ok = 1;
done:
    stem_plan_destroy(plan);
    bufs_free(&b);
    return ok;
}

/* 2: XAttention masses against the CPU backend's. */
static int xattn_long(stem_context *ctx, stem_context *cpu)
{
    const int64_t N = 2048, d = 64, n = N / 64;
    int ok = 0;
    float *q = malloc((size_t)(N * d) * 4), *k = malloc((size_t)(N * d) * 4);
    float *s1 = malloc((size_t)(n * n) * 4), *s2 = malloc((size_t)(n * n) * 4);
    if (!q || !k || !s1 || !s2) {
        printf("FAIL: out of host memory\n");
        goto done;
    }
    for (int64_t i = 0; i < N * d; ++i) {
        q[i] = 2.0f * frand();
        k[i] = frand();
    }
    if (!xattn_scores(ctx, q, k, N, d, s1) || !xattn_scores(cpu, q, k, N, d, s2))
        goto done;
    double worst = 0.0, row_sum_err = 0.0;
    for (int64_t I = 0; I < n; ++I) {
        double r1 = 0.0, r2 = 0.0;
        for (int64_t J = 0; J < n; ++J) {
            const double e = fabs((double)s1[I * n + J] - (double)s2[I * n + J]);
            worst = e > worst ? e : worst;
            r1 += s1[I * n + J];
            r2 += s2[I * n + J];
        }
        row_sum_err = fabs(r1 - r2) > row_sum_err ? fabs(r1 - r2) : row_sum_err;
    }
    printf("  xattention N=%lld d=%lld block 64 stride 8: worst |mass err| %.3g, worst row-sum err "
           "%.3g\n",
           (long long)N, (long long)d, worst, row_sum_err);
    if (worst > 1e-4 || !(worst == worst)) {
        printf("FAIL: XAttention masses differ from the CPU backend's by %.3g\n", worst);
        goto done;
    }
    ok = 1;
done:
    free(q), free(k), free(s1), free(s2);
    return ok;
}

/* 3: past the budget on llvmpipe: UNSUPPORTED, with a message. */
static int budget_refusal(stem_context *ctx, const stem_device_info *info)
{
    if (strncmp(info->name, "llvmpipe", 8) != 0)
        return 1;
    stem_status st;
    stem_plan *plan = make_plan(ctx, 131072, 64, STEM_SELECTOR_DENSE, 64, 8, &st);
    stem_plan_destroy(plan);
    if (st != STEM_ERR_UNSUPPORTED || !strstr(stem_last_error(), "llvmpipe")) {
        printf("FAIL: a 131072-token dense plan on llvmpipe returned %s (%s), expected "
               "UNSUPPORTED naming the loop limit\n",
               stem_status_name(st), stem_last_error());
        return 0;
    }
    printf("  131072-token dense plan declined: %s\n", stem_last_error());
    return 1;
}

/* XAttention masses of one small problem in `dtype` on ctx. */
static int xattn_small(stem_context *ctx, stem_dtype dtype, int64_t d, const float *q,
                       const float *k, float *scores)
{
    const int64_t N = 32, n = 2;
    int ok = 0;
    bufs b = {{0}};
    stem_status st;
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = desc.num_q_heads = desc.num_kv_heads = 1;
    desc.q_len = desc.kv_len = N;
    desc.head_dim = d;
    desc.dtype = dtype;
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.selector = STEM_SELECTOR_XATTENTION;
    cfg.block_size = 16;
    cfg.stride = 4;
    stem_plan *plan = NULL;
    st = stem_plan_create(ctx, &desc, &cfg, &plan);
    CHECK(st == STEM_OK, "stem_plan_create(xattention, d=%lld) returned %s", (long long)d,
          stem_status_name(st));
    const size_t es = dtype == STEM_DTYPE_F32 ? 4 : 2, sz = (size_t)(N * d) * es;
    unsigned char *tmp = malloc(2 * sz);
    CHECK(tmp, "out of host memory");
    stem_convert(q, STEM_DTYPE_F32, tmp, dtype, (size_t)(N * d));
    stem_convert(k, STEM_DTYPE_F32, tmp + sz, dtype, (size_t)(N * d));
    for (int i = 0; i < 3; ++i)
        CHECK((st = stem_buffer_create(ctx, sz, &b.b[i])) == STEM_OK, "stem_buffer_create");
    CHECK((st = stem_buffer_create(ctx, (size_t)(n * n) * 4, &b.b[3])) == STEM_OK,
          "stem_buffer_create");
    st = stem_buffer_write(b.b[0], 0, tmp, sz);
    if (st == STEM_OK)
        st = stem_buffer_write(b.b[1], 0, tmp + sz, sz);
    if (st == STEM_OK)
        st = stem_buffer_write(b.b[2], 0, tmp + sz, sz);
    free(tmp);
    CHECK(st == STEM_OK, "stem_buffer_write");
    const stem_tensor tq = stem_tensor_bhnd(b.b[0], 0, dtype, 1, 1, N, d);
    const stem_tensor tk = stem_tensor_bhnd(b.b[1], 0, dtype, 1, 1, N, d);
    const stem_tensor tv = stem_tensor_bhnd(b.b[2], 0, dtype, 1, 1, N, d);
    const stem_tensor ts = stem_tensor_bhnd(b.b[3], 0, STEM_DTYPE_F32, 1, 1, n, n);
    st = stem_score(plan, &tq, &tk, &tv, &ts);
    CHECK(st == STEM_OK, "stem_score(d=%lld, dtype %d) returned %s", (long long)d, (int)dtype,
          stem_status_name(st));
    CHECK(stem_buffer_read(b.b[3], 0, scores, (size_t)(n * n) * 4) == STEM_OK,
          "stem_buffer_read");
    ok = 1;
done:
    stem_plan_destroy(plan);
    bufs_free(&b);
    return ok;
}

/* 4: many pipelines in one context, each variant's result as the CPU backend's. */
static int many_pipelines(stem_context *ctx, stem_context *cpu, const stem_device_info *info)
{
    const char *all = getenv("STEM_TEST_EMULATED");
    const int few = strncmp(info->name, "llvmpipe", 8) == 0 && !(all && strcmp(all, "all") == 0);
    static const stem_dtype dtypes[3] = {STEM_DTYPE_F32, STEM_DTYPE_F16, STEM_DTYPE_BF16};
    float q[32 * 256], k[32 * 256];
    for (int i = 0; i < 32 * 256; ++i) {
        q[i] = frand();
        k[i] = frand();
    }
    int variants = 0;
    double worst = 0.0;
    for (int t = 0; t < 3; ++t)
        for (int64_t d = 8; d <= 256; d += few ? 120 : 8) {
            float s1[4], s2[4];
            if (!xattn_small(ctx, dtypes[t], d, q, k, s1) || !xattn_small(cpu, dtypes[t], d, q, k, s2))
                return 0;
            for (int i = 0; i < 4; ++i) {
                const double e = fabs((double)s1[i] - (double)s2[i]);
                worst = e > worst || e != e ? e : worst;
            }
            variants++;
        }
    printf("  %d XAttention variants in one context: worst |mass err| %.3g\n", variants, worst);
    if (!(worst <= 1e-4)) {
        printf("FAIL: XAttention masses differ from the CPU backend's by %.3g\n", worst);
        return 0;
    }
    return 1;
}

int main(void)
{
    uint32_t count = 0;
    stem_device_count(&count);
    int32_t cpu_index = -1;
    int ran = 0, failed = 0;
    for (uint32_t i = 0; i < count; ++i) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) == STEM_OK && info.backend == STEM_BACKEND_CPU)
            cpu_index = (int32_t)i;
    }
    stem_context *cpu = NULL;
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.device = cpu_index;
    if (cpu_index < 0 || stem_context_create(&cd, &cpu) != STEM_OK) {
        printf("FAIL: no CPU context: %s\n", stem_last_error());
        return 1;
    }
    for (uint32_t i = 0; i < count; ++i) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) != STEM_OK || info.backend != STEM_BACKEND_VULKAN ||
            !hardening_device_selected(&info))
            continue;
        stem_context *ctx = NULL;
        cd.device = (int32_t)i;
        printf("vulkan #%u (%s)\n", info.backend_index, info.name);
        if (stem_context_create(&cd, &ctx) != STEM_OK) {
            printf("FAIL: stem_context_create: %s\n", stem_last_error());
            failed++;
            continue;
        }
        ran++;
        const int ok = long_rows(ctx) & xattn_long(ctx, cpu) & budget_refusal(ctx, &info) &
                       many_pipelines(ctx, cpu, &info);
        printf("%s vulkan #%u\n", ok ? "ok" : "FAIL", info.backend_index);
        failed += !ok;
        stem_context_destroy(ctx);
    }
    stem_context_destroy(cpu);
    if (ran == 0 && failed == 0) {
        printf("no Vulkan device%s\n", required() ? " (required by STEM_TEST_REQUIRE): FAIL" : ": skipped");
        return required() ? 1 : SKIP;
    }
    return failed ? 1 : 0;
}
