/* CUDA timing of one Llama-8B-shaped layer (Hq 32, Hkv 8, d 128, bf16, batch
 * 1) through the public API: dense (every causal block kept, our kernel),
 * Stem (score, select, attention each timed) and block-sparse attention at
 * fixed densities (random lists with the diagonal kept).
 *
 *   stem_cuda_bench [N ...]      (default 8192 16384 32768 65536 131072)
 *   STEM_BENCH_SHAPE=hq,hkv,d    another head shape (e.g. 8,2,256 for head_dim 256)
 *
 * Each figure is the median of wall-clock times around stage + synchronize. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stem.h"

#define CHECK(call)                                                                      \
    do {                                                                                 \
        stem_status st_ = (call);                                                        \
        if (st_ != STEM_OK) {                                                            \
            fprintf(stderr, "%s:%d %s: %s (%s)\n", __FILE__, __LINE__, #call,           \
                    stem_status_name(st_), stem_last_error());                           \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return rng_state = x;
}

/* bf16 values in about [-2, 2] (so softmax is not flat). */
static void fill_bf16(uint16_t *x, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const float f = ((float)(rng_next() >> 40) / (float)(1 << 24) - 0.5f) * 4.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        x[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

typedef struct layer {
    stem_context *ctx;
    int64_t N, hq, hkv, d, n;
    stem_buffer *q, *k, *v, *o, *s, *idx, *cnt;
    stem_tensor tq, tk, tv, to, ts, ti, tc;
} layer;

static stem_plan *make_plan(layer *L, stem_selector sel)
{
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = 1;
    desc.num_q_heads = L->hq;
    desc.num_kv_heads = L->hkv;
    desc.q_len = desc.kv_len = L->N;
    desc.head_dim = L->d;
    desc.dtype = STEM_DTYPE_BF16;
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.selector = sel;
    const char *da = getenv("STEM_BENCH_DENSE_ABOVE"); /* dense_above_density for the stem plan */
    if (da && sel == STEM_SELECTOR_STEM)
        cfg.dense_above_density = atof(da);
    stem_plan *plan = NULL;
    CHECK(stem_plan_create(L->ctx, &desc, &cfg, &plan));
    return plan;
}

/* Kept causal blocks / causal blocks, from the count tensor. */
static double density(layer *L, int32_t *counts)
{
    CHECK(stem_buffer_read(L->cnt, 0, counts, (size_t)(L->hq * L->n) * 4));
    double kept = 0;
    for (int64_t i = 0; i < L->hq * L->n; i++)
        kept += counts[i];
    return kept / ((double)L->hq * (double)L->n * (double)(L->n + 1) / 2.0);
}

/* Random lists of density ~rho (diagonal always kept), written to idx / cnt. */
static void fixed_lists(layer *L, double rho, int32_t *index, int32_t *counts)
{
    const int64_t n = L->n;
    for (int64_t h = 0; h < L->hq; h++)
        for (int64_t I = 0; I < n; I++) {
            int32_t *row = index + (h * n + I) * n, c = 0;
            for (int64_t J = 0; J <= I; J++)
                if (J == I || (double)(rng_next() >> 11) * 0x1.0p-53 < rho)
                    row[c++] = (int32_t)J;
            for (int64_t j = c; j < n; j++)
                row[j] = -1;
            counts[h * n + I] = c;
        }
    CHECK(stem_buffer_write(L->idx, 0, index, (size_t)(L->hq * n * n) * 4));
    CHECK(stem_buffer_write(L->cnt, 0, counts, (size_t)(L->hq * n) * 4));
}

static double time_attention(layer *L, stem_plan *plan, int warm, int reps)
{
    double t[64];
    for (int r = 0; r < warm + reps; r++) {
        const double t0 = now_ms();
        CHECK(stem_attention(plan, &L->tq, &L->tk, &L->tv, &L->ti, &L->tc, &L->to));
        CHECK(stem_synchronize(L->ctx));
        if (r >= warm)
            t[r - warm] = now_ms() - t0;
    }
    return median(t, reps);
}

int main(int argc, char **argv)
{
    int64_t Ns[16] = {8192, 16384, 32768, 65536, 131072};
    int nN = 5;
    if (argc > 1) {
        nN = 0;
        for (int i = 1; i < argc && nN < 16; i++)
            Ns[nN++] = atoll(argv[i]);
    }
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    uint32_t ndev = 0;
    CHECK(stem_device_count(&ndev));
    cd.device = -1;
    for (uint32_t i = 0; i < ndev; i++) {
        stem_device_info info;
        stem_device_info_init(&info);
        CHECK(stem_device_get_info(i, &info));
        if (info.backend == STEM_BACKEND_CUDA) {
            cd.device = (int32_t)i;
            printf("device: %s (%s)\n", info.name, info.detail);
            break;
        }
    }
    if (cd.device < 0) {
        fprintf(stderr, "no CUDA device\n");
        return 1;
    }
    layer L;
    memset(&L, 0, sizeof L);
    CHECK(stem_context_create(&cd, &L.ctx));
    int64_t hq = 32, hkv = 8, hd = 128;
    const char *shape = getenv("STEM_BENCH_SHAPE");
    if (shape) {
        long long a = 0, b = 0, c = 0;
        if (sscanf(shape, "%lld,%lld,%lld", &a, &b, &c) != 3 || a < 1 || b < 1 || a % b || c < 8) {
            fprintf(stderr, "STEM_BENCH_SHAPE=hq,hkv,d expected\n");
            return 1;
        }
        hq = a, hkv = b, hd = c;
        printf("shape: Hq %lld, Hkv %lld, d %lld\n", a, b, c);
    }
    printf("| N | path | density | score ms | select ms | attention ms | total ms | TFLOP/s (eff.) |\n");
    printf("|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for (int ni = 0; ni < nN; ni++) {
        L.N = Ns[ni], L.hq = hq, L.hkv = hkv, L.d = hd, L.n = (L.N + 127) / 128;
        const int64_t n = L.n;
        const size_t qe = (size_t)(L.hq * L.N * L.d), kve = (size_t)(L.hkv * L.N * L.d);
        const size_t nn = (size_t)(L.hq * n * n);
        CHECK(stem_buffer_create(L.ctx, qe * 2, &L.q));
        CHECK(stem_buffer_create(L.ctx, kve * 2, &L.k));
        CHECK(stem_buffer_create(L.ctx, kve * 2, &L.v));
        CHECK(stem_buffer_create(L.ctx, qe * 2, &L.o));
        CHECK(stem_buffer_create(L.ctx, nn * 4, &L.s));
        CHECK(stem_buffer_create(L.ctx, nn * 4, &L.idx));
        CHECK(stem_buffer_create(L.ctx, (size_t)(L.hq * n) * 4, &L.cnt));
        uint16_t *host = malloc(qe * 2);
        int32_t *index = malloc(nn * 4), *counts = malloc((size_t)(L.hq * n) * 4);
        if (!host || !index || !counts)
            return 1;
        fill_bf16(host, qe);
        CHECK(stem_buffer_write(L.q, 0, host, qe * 2));
        fill_bf16(host, kve);
        CHECK(stem_buffer_write(L.k, 0, host, kve * 2));
        fill_bf16(host, kve);
        CHECK(stem_buffer_write(L.v, 0, host, kve * 2));
        L.tq = stem_tensor_bhnd(L.q, 0, STEM_DTYPE_BF16, 1, L.hq, L.N, L.d);
        L.tk = stem_tensor_bhnd(L.k, 0, STEM_DTYPE_BF16, 1, L.hkv, L.N, L.d);
        L.tv = stem_tensor_bhnd(L.v, 0, STEM_DTYPE_BF16, 1, L.hkv, L.N, L.d);
        L.to = stem_tensor_bhnd(L.o, 0, STEM_DTYPE_BF16, 1, L.hq, L.N, L.d);
        L.ts = stem_tensor_bhnd(L.s, 0, STEM_DTYPE_F32, 1, L.hq, n, n);
        L.ti = stem_tensor_bhnd(L.idx, 0, STEM_DTYPE_I32, 1, L.hq, n, n);
        L.tc = stem_tensor_bhnd(L.cnt, 0, STEM_DTYPE_I32, 1, L.hq, n, 1);
        const int warm = L.N >= 65536 ? 1 : 2, reps = L.N >= 65536 ? 3 : 7;
        const double causal_tflop = 2.0 * L.hq * (double)L.N * (double)L.N * L.d * 1e-12;

        /* Dense: DENSE selector lists, our kernel. */
        stem_plan *dense = make_plan(&L, STEM_SELECTOR_DENSE);
        CHECK(stem_select(dense, &L.ts, &L.ti, &L.tc));
        const double rho1 = density(&L, counts);
        const double t_dense = time_attention(&L, dense, warm, reps);
        printf("| %lld | dense (all blocks) | %.4f | | | %.3f | %.3f | %.1f |\n", (long long)L.N,
               rho1, t_dense, t_dense, rho1 * causal_tflop / (t_dense * 1e-3));
        stem_plan_destroy(dense);

        /* Stem: the three stages. */
        stem_plan *plan = make_plan(&L, STEM_SELECTOR_STEM);
        stem_plan_info pinfo;
        stem_plan_info_init(&pinfo);
        CHECK(stem_plan_get_info(plan, &pinfo));
        double ts[64], tl[64], ta[64];
        for (int r = 0; r < warm + reps; r++) {
            const double t0 = now_ms();
            if (!pinfo.dense) /* a dense plan's selection reads no scores (as stem_prefill) */
                CHECK(stem_score(plan, &L.tq, &L.tk, &L.tv, &L.ts));
            CHECK(stem_synchronize(L.ctx));
            const double t1 = now_ms();
            CHECK(stem_select(plan, &L.ts, &L.ti, &L.tc));
            CHECK(stem_synchronize(L.ctx));
            const double t2 = now_ms();
            CHECK(stem_attention(plan, &L.tq, &L.tk, &L.tv, &L.ti, &L.tc, &L.to));
            CHECK(stem_synchronize(L.ctx));
            const double t3 = now_ms();
            if (r >= warm) {
                ts[r - warm] = t1 - t0;
                tl[r - warm] = t2 - t1;
                ta[r - warm] = t3 - t2;
            }
        }
        const double rho = density(&L, counts);
        const double s_ms = median(ts, reps), l_ms = median(tl, reps), a_ms = median(ta, reps);
        printf("| %lld | stem%s | %.4f | %.3f | %.3f | %.3f | %.3f | %.1f |\n", (long long)L.N,
               pinfo.dense ? " (ran dense)" : "", rho, s_ms, l_ms, a_ms, s_ms + l_ms + a_ms,
               rho * causal_tflop / (a_ms * 1e-3));

        /* Fixed densities (random lists, diagonal kept), same plan. */
        const double rhos[3] = {0.5, 0.25, 0.1};
        for (int i = 0; i < 3; i++) {
            fixed_lists(&L, rhos[i], index, counts);
            const double rr = density(&L, counts);
            const double t = time_attention(&L, plan, warm, reps);
            printf("| %lld | fixed %.2f | %.4f | | | %.3f | %.3f | %.1f |\n", (long long)L.N,
                   rhos[i], rr, t, t, rr * causal_tflop / (t * 1e-3));
        }
        fflush(stdout);
        stem_plan_destroy(plan);
        free(host);
        free(index);
        free(counts);
        stem_buffer_destroy(L.q), stem_buffer_destroy(L.k), stem_buffer_destroy(L.v);
        stem_buffer_destroy(L.o), stem_buffer_destroy(L.s), stem_buffer_destroy(L.idx);
        stem_buffer_destroy(L.cnt);
    }
    stem_context_destroy(L.ctx);
    return 0;
}
