/* The persistent sm90 attention (STEM_CUDA_PERSISTENT=1) against the
 * one-CTA-per-tile kernel: two contexts on the first CUDA device, created
 * with STEM_CUDA_PERSISTENT=0 and =1 (read at context creation), run the
 * same stem_attention calls; the outputs must be bitwise equal. Cases:
 * bf16 / f16, head_dim 128 / 64, GQA, batch 2, a chunked call (unaligned
 * query offset), random lists with empty rows and rows without the
 * diagonal. Then the attention time of both at dense causal lists and at
 * density 0.1 for each N given (Llama-8B layer: Hq 32, Hkv 8, d 128, bf16).
 *
 *   gcc -O2 -std=c11 -Iapi -o BUILD/stem_cuda_persist_check \
 *       bench/cuda/stem_cuda_persist_check.c -LBUILD -lstem -lm
 *   BUILD/stem_cuda_persist_check [N ...]     (default: 8192 32768)
 *
 * Exit status 0 only when every case is bitwise equal. STEM_CUDA_ATTN picks
 * the family of both (default sm90p).
 *
 *   BUILD/stem_cuda_persist_check --d256
 *
 * instead compares the two head_dim 256 kernels: the mma.sync one
 * (STEM_CUDA_ATTN=mma, the default) against the sm90 wgmma one
 * (STEM_CUDA_ATTN=sm90p, opt-in until it has run on a GPU),
 * bf16 and f16, on the same kinds of cases; they round P at different tiles,
 * so the check is max |a - b| <= 0.02 (outputs are averages of values in
 * [-2, 2]) with NaN anywhere a failure. */
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
            exit(2);                                                                     \
        }                                                                                \
    } while (0)

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return rng_state = x;
}
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* 16-bit values in about [-2, 2]: bf16 (truncated f32) or f16 bit patterns. */
static void fill16(uint16_t *x, size_t count, int bf16)
{
    for (size_t i = 0; i < count; i++) {
        const float f = (float)((rng_unit() - 0.5) * 4.0);
        if (bf16) {
            uint32_t u;
            memcpy(&u, &f, 4);
            x[i] = (uint16_t)(u >> 16);
        } else { /* f16 of a multiple of 2^-10 in [-2, 2] */
            const int m = (int)(f * 1024.0f);
            const float g = (float)m / 1024.0f;
            CHECK(stem_convert(&g, STEM_DTYPE_F32, &x[i], STEM_DTYPE_F16, 1));
        }
    }
}

typedef struct problem {
    int64_t batch, hq, hkv, M, L, d;
    stem_dtype dtype;
    int64_t nq, nk, row0;
    uint16_t *q, *k, *v;
    int32_t *index, *count;
} problem;

/* Lists: mode 0 random density rho (some rows empty, some without the
 * diagonal), 1 every causal block, 2 density rho with the diagonal. */
static void make_lists(problem *P, int mode, double rho)
{
    for (int64_t bh = 0; bh < P->batch * P->hq; bh++)
        for (int64_t r = 0; r < P->nq; r++) {
            const int64_t I = P->row0 + r;
            int32_t *row = P->index + (bh * P->nq + r) * P->nk, c = 0;
            const double u = rng_unit();
            for (int64_t J = 0; J <= I; J++) {
                int keep = mode == 1 || (J == I && mode == 2) || rng_unit() < rho;
                if (mode == 0 && (u < 0.1 || (u < 0.2 && J == I)))
                    keep = 0; /* an empty row, or a row without its diagonal */
                if (keep)
                    row[c++] = (int32_t)J;
            }
            for (int64_t j = c; j < P->nk; j++)
                row[j] = -1;
            P->count[bh * P->nq + r] = c;
        }
}

static void alloc_problem(problem *P)
{
    const int64_t B = 128;
    P->nk = (P->L + B - 1) / B;
    P->row0 = (P->L - P->M) / B;
    P->nq = P->nk - P->row0;
    const size_t qe = (size_t)(P->batch * P->hq * P->M * P->d);
    const size_t kve = (size_t)(P->batch * P->hkv * P->L * P->d);
    P->q = malloc(qe * 2);
    P->k = malloc(kve * 2);
    P->v = malloc(kve * 2);
    P->index = malloc((size_t)(P->batch * P->hq * P->nq * P->nk) * 4);
    P->count = malloc((size_t)(P->batch * P->hq * P->nq) * 4);
    if (!P->q || !P->k || !P->v || !P->index || !P->count)
        exit(2);
    const int bf16 = P->dtype == STEM_DTYPE_BF16;
    fill16(P->q, qe, bf16);
    fill16(P->k, kve, bf16);
    fill16(P->v, kve, bf16);
}

static void free_problem(problem *P)
{
    free(P->q), free(P->k), free(P->v), free(P->index), free(P->count);
}

typedef struct run {
    stem_buffer *q, *k, *v, *o, *idx, *cnt;
    stem_tensor tq, tk, tv, to, ti, tc;
    stem_plan *plan;
} run;

static void setup(stem_context *ctx, const problem *P, run *R)
{
    const size_t qe = (size_t)(P->batch * P->hq * P->M * P->d);
    const size_t kve = (size_t)(P->batch * P->hkv * P->L * P->d);
    const size_t ne = (size_t)(P->batch * P->hq * P->nq);
    CHECK(stem_buffer_create(ctx, qe * 2, &R->q));
    CHECK(stem_buffer_create(ctx, kve * 2, &R->k));
    CHECK(stem_buffer_create(ctx, kve * 2, &R->v));
    CHECK(stem_buffer_create(ctx, qe * 2, &R->o));
    CHECK(stem_buffer_create(ctx, ne * (size_t)P->nk * 4, &R->idx));
    CHECK(stem_buffer_create(ctx, ne * 4, &R->cnt));
    CHECK(stem_buffer_write(R->q, 0, P->q, qe * 2));
    CHECK(stem_buffer_write(R->k, 0, P->k, kve * 2));
    CHECK(stem_buffer_write(R->v, 0, P->v, kve * 2));
    R->tq = stem_tensor_bhnd(R->q, 0, P->dtype, P->batch, P->hq, P->M, P->d);
    R->tk = stem_tensor_bhnd(R->k, 0, P->dtype, P->batch, P->hkv, P->L, P->d);
    R->tv = stem_tensor_bhnd(R->v, 0, P->dtype, P->batch, P->hkv, P->L, P->d);
    R->to = stem_tensor_bhnd(R->o, 0, P->dtype, P->batch, P->hq, P->M, P->d);
    R->ti = stem_tensor_bhnd(R->idx, 0, STEM_DTYPE_I32, P->batch, P->hq, P->nq, P->nk);
    R->tc = stem_tensor_bhnd(R->cnt, 0, STEM_DTYPE_I32, P->batch, P->hq, P->nq, 1);
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = P->batch;
    desc.num_q_heads = P->hq;
    desc.num_kv_heads = P->hkv;
    desc.q_len = P->M;
    desc.kv_len = P->L;
    desc.head_dim = P->d;
    desc.dtype = P->dtype;
    stem_config cfg;
    stem_config_init(&cfg);
    CHECK(stem_plan_create(ctx, &desc, &cfg, &R->plan));
}

static void write_lists(const problem *P, run *R)
{
    const size_t ne = (size_t)(P->batch * P->hq * P->nq);
    CHECK(stem_buffer_write(R->idx, 0, P->index, ne * (size_t)P->nk * 4));
    CHECK(stem_buffer_write(R->cnt, 0, P->count, ne * 4));
}

static void teardown(run *R)
{
    stem_plan_destroy(R->plan);
    stem_buffer_destroy(R->q), stem_buffer_destroy(R->k), stem_buffer_destroy(R->v);
    stem_buffer_destroy(R->o), stem_buffer_destroy(R->idx), stem_buffer_destroy(R->cnt);
}

static double attend(stem_context *ctx, run *R)
{
    const double t0 = now_ms();
    CHECK(stem_attention(R->plan, &R->tq, &R->tk, &R->tv, &R->ti, &R->tc, &R->to));
    CHECK(stem_synchronize(ctx));
    return now_ms() - t0;
}

/* 0: bitwise; else the largest |a - b| allowed. */
static double g_tol = 0.0;

static float to_f32(uint16_t x, stem_dtype dt)
{
    float f = 0.0f;
    if (dt == STEM_DTYPE_BF16) {
        const uint32_t u = (uint32_t)x << 16;
        memcpy(&f, &u, 4);
    } else
        CHECK(stem_convert(&x, STEM_DTYPE_F16, &f, STEM_DTYPE_F32, 1));
    return f;
}

static int cmp_d(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One problem on both contexts: 1 when the outputs are bitwise equal. */
static int compare(stem_context *ctx[2], problem *P, int mode, double rho, const char *name)
{
    make_lists(P, mode, rho);
    const size_t bytes = (size_t)(P->batch * P->hq * P->M * P->d) * 2;
    uint16_t *out[2] = {malloc(bytes), malloc(bytes)};
    if (!out[0] || !out[1])
        exit(2);
    for (int c = 0; c < 2; c++) {
        run R;
        setup(ctx[c], P, &R);
        write_lists(P, &R);
        memset(out[c], 0xA5, bytes);
        CHECK(stem_buffer_write(R.o, 0, out[c], bytes)); /* a poisoned output */
        attend(ctx[c], &R);
        attend(ctx[c], &R); /* twice: the work counter must be reset between launches */
        CHECK(stem_buffer_read(R.o, 0, out[c], bytes));
        teardown(&R);
    }
    size_t diff = 0, first = 0;
    double worst = 0.0;
    for (size_t i = 0; i < bytes / 2; i++) {
        if (out[0][i] == out[1][i])
            continue;
        if (g_tol > 0) {
            const double a = to_f32(out[0][i], P->dtype), b = to_f32(out[1][i], P->dtype);
            const double e = a == a && b == b ? fabs(a - b) : INFINITY;
            worst = e > worst ? e : worst;
            if (e <= g_tol)
                continue;
        }
        if (!diff++)
            first = i;
    }
    if (g_tol > 0)
        printf("%-44s %s (max |a - b| %.3g)", name, diff ? "DIFFERENT" : "within tolerance", worst);
    else
        printf("%-44s %s", name, diff ? "DIFFERENT" : "bitwise equal");
    if (diff)
        printf(" (%zu of %zu elements, first at %zu)", diff, bytes / 2, first);
    printf("\n");
    free(out[0]), free(out[1]);
    return diff == 0;
}

static void timing(stem_context *ctx[2], int64_t N)
{
    problem P = {1, 32, 8, N, N, 128, STEM_DTYPE_BF16, 0, 0, 0, 0, 0, 0, 0, 0};
    alloc_problem(&P);
    run R[2];
    for (int c = 0; c < 2; c++)
        setup(ctx[c], &P, &R[c]);
    const double rhos[3] = {1.0, 0.1, 0.25};
    for (int m = 0; m < 3; m++) {
        make_lists(&P, m == 0 ? 1 : 2, rhos[m]);
        double med[2];
        for (int c = 0; c < 2; c++) {
            write_lists(&P, &R[c]);
            double t[9];
            const int warm = 2, reps = N >= 65536 ? 3 : 7;
            for (int r = 0; r < warm + reps; r++) {
                const double x = attend(ctx[c], &R[c]);
                if (r >= warm)
                    t[r - warm] = x;
            }
            qsort(t, (size_t)reps, sizeof t[0], cmp_d);
            med[c] = t[reps / 2];
        }
        printf("| %lld | %s | %.3f | %.3f | %.3f |\n", (long long)N,
               m == 0 ? "dense causal" : m == 1 ? "density 0.1" : "density 0.25", med[0], med[1],
               med[0] / med[1]);
    }
    for (int c = 0; c < 2; c++)
        teardown(&R[c]);
    free_problem(&P);
}

int main(int argc, char **argv)
{
    uint32_t ndev = 0;
    CHECK(stem_device_count(&ndev));
    stem_context_desc cd;
    stem_context_desc_init(&cd);
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
        return 2;
    }
    const int d256 = argc > 1 && !strcmp(argv[1], "--d256");
    stem_context *ctx[2];
    if (d256) { /* mma.sync (the default) against sm90p, both one CTA per tile */
        g_tol = 0.02;
        setenv("STEM_CUDA_ATTN", "mma", 1);
        CHECK(stem_context_create(&cd, &ctx[0]));
        setenv("STEM_CUDA_ATTN", "sm90p", 1); /* opt-in at head_dim 256 */
        CHECK(stem_context_create(&cd, &ctx[1]));
        unsetenv("STEM_CUDA_ATTN");
    } else {
        /* the persistent mode under test: STEM_CUDA_PERSISTENT if set (2:
         * head-major items), else 1 */
        const char *m = getenv("STEM_CUDA_PERSISTENT");
        const char *mode = m && !strcmp(m, "2") ? "2" : "1";
        printf("persistent mode %s\n", mode);
        setenv("STEM_CUDA_PERSISTENT", "0", 1);
        CHECK(stem_context_create(&cd, &ctx[0]));
        setenv("STEM_CUDA_PERSISTENT", mode, 1);
        CHECK(stem_context_create(&cd, &ctx[1]));
    }
    int ok = 1;
    typedef struct {
        int64_t batch, hq, hkv, M, L, d;
        stem_dtype dtype;
        int mode;
        double rho;
        const char *name;
    } check_case;
    const check_case cases[] = {
        {1, 32, 8, 4096, 4096, 128, STEM_DTYPE_BF16, 1, 1.0, "bf16 d128 4K dense causal"},
        {1, 32, 8, 4096, 4096, 128, STEM_DTYPE_BF16, 0, 0.3, "bf16 d128 4K random lists"},
        {2, 8, 2, 3000, 3000, 128, STEM_DTYPE_F16, 0, 0.5, "f16 d128 B2 3000 random lists"},
        {2, 4, 4, 2500, 2500, 64, STEM_DTYPE_BF16, 0, 0.4, "bf16 d64 B2 MHA 2500 random"},
        {1, 8, 1, 777, 4000, 128, STEM_DTYPE_BF16, 0, 0.5, "bf16 d128 chunk 777 of 4000"},
        {1, 16, 4, 1000, 5100, 64, STEM_DTYPE_F16, 2, 0.3, "f16 d64 chunk 1000 of 5100"},
        {1, 2, 1, 100, 100, 128, STEM_DTYPE_BF16, 1, 1.0, "bf16 d128 100 (fewer items than SMs)"},
    }, cases256[] = {
        {1, 8, 2, 4096, 4096, 256, STEM_DTYPE_BF16, 1, 1.0, "bf16 d256 4K dense causal"},
        {1, 8, 2, 4096, 4096, 256, STEM_DTYPE_F16, 1, 1.0, "f16 d256 4K dense causal"},
        {1, 8, 2, 4096, 4096, 256, STEM_DTYPE_BF16, 0, 0.3, "bf16 d256 4K random lists"},
        {2, 4, 1, 3000, 3000, 256, STEM_DTYPE_F16, 0, 0.5, "f16 d256 B2 3000 random lists"},
        {1, 4, 1, 777, 4000, 256, STEM_DTYPE_BF16, 0, 0.5, "bf16 d256 chunk 777 of 4000"},
        {1, 4, 4, 1000, 5100, 256, STEM_DTYPE_F16, 2, 0.3, "f16 d256 MHA chunk 1000 of 5100"},
        {1, 2, 1, 100, 100, 256, STEM_DTYPE_BF16, 1, 1.0, "bf16 d256 100 tokens"},
    };
    const size_t ncases = d256 ? sizeof cases256 / sizeof cases256[0] : sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < ncases; i++) {
        const check_case *c = d256 ? &cases256[i] : &cases[i];
        problem P = {c->batch, c->hq, c->hkv, c->M, c->L, c->d, c->dtype, 0, 0, 0, 0, 0, 0, 0, 0};
        alloc_problem(&P);
        ok &= compare(ctx, &P, c->mode, c->rho, c->name);
        free_problem(&P);
    }
    /* timings: persistent against per-tile only */
    int64_t Ns[16] = {8192, 32768};
    int nN = d256 ? 0 : 2;
    if (nN)
        printf("\n| N | lists | one CTA per tile ms | persistent ms | speed-up |\n|---:|---|---:|---:|---:|\n");
    if (argc > 1 && !d256) {
        nN = 0;
        for (int i = 1; i < argc && nN < 16; i++)
            Ns[nN++] = atoll(argv[i]);
    }
    for (int i = 0; i < nN; i++)
        timing(ctx, Ns[i]);
    stem_context_destroy(ctx[1]);
    stem_context_destroy(ctx[0]);
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
