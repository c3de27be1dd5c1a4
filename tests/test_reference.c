/*
 * Checks the shared reference (tests/reference/stem_ref.c) against closed
 * forms, hand-worked cases and independently written naive loops. Inputs come
 * from a local splitmix64 so this suite does not depend on other test code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stem_ref.h"

/* ------------------------------------------------------------------ helpers */

#define EXPECT_NEAR(a, b, tol)                                                              \
    do {                                                                                    \
        const double ea_ = (a), eb_ = (b), et_ = (tol);                                     \
        if (!(fabs(ea_ - eb_) <= et_))                                                      \
            fail_msg("%s = %.17g, expected %s = %.17g (tol %.3g)", #a, ea_, #b, eb_, et_); \
    } while (0)

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(rng *r) /* [0, 1) */
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(rng *r)
{
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

/* The values stem_config_init() documents (no libstem call: the reference must not link it). */
static stem_config default_config(void)
{
    stem_config c;
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    c.selector = STEM_SELECTOR_STEM;
    c.block_size = 128;
    c.stride = 8;
    c.beta = 0.2f;
    c.mu = 0.7;
    c.sink_blocks = 4;
    c.local_blocks = 4;
    c.norm = 1.0f;
    c.dense_below_blocks = 56;
    c.medium_below_blocks = 160;
    c.medium_rate = 0.2;
    c.medium_bias = 30;
    c.large_rate = 0.1;
    c.large_bias = 30;
    c.k_start = 0;
    c.paper_short_rate = 0.2;
    c.paper_long_rate = 0.1;
    c.paper_switch_tokens = 16384;
    c.paper_min_blocks = 54;
    c.uniform_k = 0;
    c.xattn_threshold = 0.9f;
    c.dense_layers = 2;
    return c;
}

typedef struct problem {
    stem_ref_problem p;
    double *q, *k, *v;
} problem;

/* Gaussian Q, K, V with Q scaled by qscale (larger = peakier attention). */
static problem make_problem(uint64_t seed, int64_t batch, int64_t hq, int64_t hkv, int64_t N,
                            int64_t d, double qscale)
{
    problem pr;
    memset(&pr, 0, sizeof pr);
    const int64_t nq = batch * hq * N * d, nkv = batch * hkv * N * d;
    pr.q = malloc((size_t)(nq > 0 ? nq : 1) * sizeof(double));
    pr.k = malloc((size_t)(nkv > 0 ? nkv : 1) * sizeof(double));
    pr.v = malloc((size_t)(nkv > 0 ? nkv : 1) * sizeof(double));
    assert_non_null(pr.q);
    assert_non_null(pr.k);
    assert_non_null(pr.v);
    rng r = {seed};
    for (int64_t i = 0; i < nq; i++)
        pr.q[i] = qscale * rng_normal(&r);
    for (int64_t i = 0; i < nkv; i++)
        pr.k[i] = rng_normal(&r);
    for (int64_t i = 0; i < nkv; i++)
        pr.v[i] = rng_normal(&r);
    pr.p.batch = batch;
    pr.p.hq = hq;
    pr.p.hkv = hkv;
    pr.p.n_tokens = N;
    pr.p.head_dim = d;
    pr.p.scale = 1.0 / sqrt((double)d);
    pr.p.layer_index = -1;
    pr.p.q = pr.q;
    pr.p.k = pr.k;
    pr.p.v = pr.v;
    return pr;
}

static void free_problem(problem *pr)
{
    free(pr->q);
    free(pr->k);
    free(pr->v);
}

static double *qrow(problem *pr, int64_t b, int64_t h, int64_t t)
{
    return pr->q + ((b * pr->p.hq + h) * pr->p.n_tokens + t) * pr->p.head_dim;
}
static double *krow(problem *pr, int64_t b, int64_t kh, int64_t t)
{
    return pr->k + ((b * pr->p.hkv + kh) * pr->p.n_tokens + t) * pr->p.head_dim;
}
static double *vrow(problem *pr, int64_t b, int64_t kh, int64_t t)
{
    return pr->v + ((b * pr->p.hkv + kh) * pr->p.n_tokens + t) * pr->p.head_dim;
}

/* Sets V[b][kh][t] to a random direction with the given L2 norm. */
static void set_v_norm(problem *pr, rng *r, int64_t b, int64_t kh, int64_t t, double norm)
{
    double *v = vrow(pr, b, kh, t);
    const int64_t d = pr->p.head_dim;
    double s = 0.0;
    for (int64_t x = 0; x < d; x++) {
        v[x] = rng_normal(r);
        s += v[x] * v[x];
    }
    for (int64_t x = 0; x < d; x++)
        v[x] *= norm / sqrt(s);
}

static double *scores_for(problem *pr, const stem_config *cfg)
{
    const int64_t n = stem_ref_num_blocks(pr->p.n_tokens, cfg->block_size);
    double *s = malloc((size_t)(pr->p.batch * pr->p.hq * n * n) * sizeof(double));
    assert_non_null(s);
    stem_ref_scores(&pr->p, cfg, s);
    return s;
}

/* ------------------------------------------------------ schedule and budget */

static void test_num_blocks(void **state)
{
    (void)state;
    assert_int_equal(stem_ref_num_blocks(1, 128), 1);
    assert_int_equal(stem_ref_num_blocks(128, 128), 1);
    assert_int_equal(stem_ref_num_blocks(129, 128), 2);
    assert_int_equal(stem_ref_num_blocks(9000, 16), 563);
    assert_int_equal(stem_ref_num_blocks(131072, 128), 1024);
    assert_int_equal(stem_ref_num_blocks(0, 128), 0);
}

/* k_start and k_end from the official rule (stem-algorithm.md section c table). */
static void test_stem_schedule_official(void **state)
{
    (void)state;
    static const struct {
        int64_t n;
        int32_t k, k_end;
    } rows[] = {{64, 42, 29}, {128, 55, 38}, {160, 46, 32}, {256, 55, 38},
                {512, 81, 56}, {1024, 132, 92}, {56, 41, 28}, {159, 61, 42}};
    const stem_config cfg = default_config();
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        const int64_t n = rows[r].n;
        /* a partial last block gives the same n */
        for (int64_t N = n * 128 - 100; N <= n * 128; N += 100) {
            int dense = -1;
            assert_int_equal(stem_ref_k_start(&cfg, N, -1, &dense), rows[r].k);
            assert_int_equal(dense, 0);
        }
        int32_t *budget = malloc((size_t)n * sizeof(int32_t));
        assert_non_null(budget);
        assert_int_equal(stem_ref_budget(&cfg, n * 128, -1, budget), 0);
        const int32_t k = rows[r].k;
        for (int64_t I = 0; I < k; I++)
            assert_int_equal(budget[I], k);
        assert_int_equal(budget[k], k); /* the decay starts at k itself */
        assert_int_equal(budget[n - 1], rows[r].k_end);
        assert_int_equal(budget[n - 1], (int32_t)floor(0.7 * k));
        /* every decaying row is floor of the exact line, except where that line sits
         * within rounding of an integer (linspace's halves may land on either side) */
        const int64_t L = n - k;
        const double k_end = 0.7 * k;
        for (int64_t j = 0; j < L; j++) {
            const double exact = k + (k_end - k) * (double)j / (double)(L - 1);
            const int32_t b = budget[k + j];
            if (fabs(exact - nearbyint(exact)) > 1e-9)
                assert_int_equal(b, (int32_t)floor(exact));
            else
                assert_true(b == (int32_t)nearbyint(exact) || b == (int32_t)nearbyint(exact) - 1);
            if (j > 0)
                assert_true(b <= budget[k + j - 1]);
        }
        free(budget);
    }
}

/* mu is a double, as in the official code: 0.7 * 50 = 35 exactly in floor(), so k_end is 35
 * (a float 0.7f would give 34.9999994 and floor to 34). */
static void test_stem_schedule_mu_is_double(void **state)
{
    (void)state;
    const stem_config cfg = default_config();
    int32_t budget[200];
    int dense = -1;
    assert_int_equal(stem_ref_k_start(&cfg, 200 * 128, -1, &dense), 50);
    assert_int_equal(dense, 0);
    stem_ref_budget(&cfg, 200 * 128, -1, budget);
    assert_int_equal(budget[199], 35);
    assert_int_equal(budget[50], 50);
}

static void test_budget_dense_rules(void **state)
{
    (void)state;
    stem_config cfg = default_config();
    int32_t budget[300];
    int dense = -1;

    /* n < 56 blocks: dense, k_start reported as n */
    assert_int_equal(stem_ref_k_start(&cfg, 55 * 128, -1, &dense), 55);
    assert_int_equal(dense, 1);
    assert_int_equal(stem_ref_budget(&cfg, 55 * 128, -1, budget), 1);
    for (int I = 0; I < 55; I++)
        assert_int_equal(budget[I], 55);
    assert_int_equal(stem_ref_k_start(&cfg, 55 * 128 + 1, -1, &dense), 41); /* n = 56 */
    assert_int_equal(dense, 0);

    /* dense_layers = 2: layers 0 and 1 dense, 2 and unknown (-1) not */
    assert_int_equal(stem_ref_budget(&cfg, 64 * 128, 0, budget), 1);
    assert_int_equal(budget[63], 64);
    assert_int_equal(stem_ref_budget(&cfg, 64 * 128, 1, budget), 1);
    assert_int_equal(stem_ref_budget(&cfg, 64 * 128, 2, budget), 0);
    assert_int_equal(budget[63], 29);
    assert_int_equal(stem_ref_budget(&cfg, 64 * 128, -1, budget), 0);
    cfg.dense_layers = 0;
    assert_int_equal(stem_ref_budget(&cfg, 64 * 128, 0, budget), 0);
    cfg.dense_layers = 2;

    /* the dense layer rule holds for every selector */
    for (int s = 0; s < STEM_SELECTOR_COUNT; s++) {
        cfg.selector = (stem_selector)s;
        assert_int_equal(stem_ref_budget(&cfg, 64 * 128, 1, budget), 1);
    }
    /* XATTENTION and DENSE report n; only DENSE is dense outside dense layers */
    cfg.selector = STEM_SELECTOR_XATTENTION;
    assert_int_equal(stem_ref_budget(&cfg, 64 * 128, 5, budget), 0);
    assert_int_equal(budget[0], 64);
    assert_int_equal(budget[63], 64);
    cfg.selector = STEM_SELECTOR_DENSE;
    assert_int_equal(stem_ref_budget(&cfg, 64 * 128, 5, budget), 1);
    assert_int_equal(budget[10], 64);
    cfg.selector = STEM_SELECTOR_STEM;

    /* k_start override: replaces the rule, dense_below included; k >= n is dense */
    cfg.k_start = 3;
    assert_int_equal(stem_ref_k_start(&cfg, 10 * 16 * 8, -1, &dense), 3); /* n = 10 at B=128 */
    assert_int_equal(dense, 0);
    cfg.block_size = 16;
    cfg.stride = 4;
    cfg.mu = 0.5;
    assert_int_equal(stem_ref_budget(&cfg, 160, -1, budget), 0); /* n = 10 */
    /* rows 0..2: k; then linspace(3, 1.5, 7): 3, 2.75, 2.5, 2.25, 2, 1.75, 1.5 -> floor */
    static const int32_t want[10] = {3, 3, 3, 3, 2, 2, 2, 2, 1, 1};
    for (int I = 0; I < 10; I++)
        assert_int_equal(budget[I], want[I]);
    cfg.k_start = 10;
    assert_int_equal(stem_ref_budget(&cfg, 160, -1, budget), 1);
    cfg.k_start = 9;
    assert_int_equal(stem_ref_budget(&cfg, 160, -1, budget), 0);
    /* L = 1: the single decaying row keeps k */
    assert_int_equal(budget[9], 9);

    /* linspace's second half is computed from the end: the last row is k_end exactly.
     * k = 6, mu = 0.5, L = 188: 6 + step * 187 = 2.9999999999999996 would floor to 2. */
    cfg.k_start = 6;
    assert_int_equal(stem_ref_budget(&cfg, 194 * 16, -1, budget), 0);
    assert_int_equal(budget[193], 3);
    assert_int_equal(budget[6], 6);
}

/* Cost = sum_I min(budget[I], I + 1) against Eq. 4.
 * Rows I < k cost k(k+1)/2 = k^2/2 + k/2. Each decaying row costs floor(line_j) with
 * line_j - 1 < floor <= line_j, and the line sums to L k (1 + mu) / 2 exactly, which is
 * Eq. 4's remainder. So cost - Eq4 lies in (k/2 - L, k/2] (+ linspace rounding), when
 * L >= 2 and mu k >= 1 (no clamp). */
static void test_eq4_cost(void **state)
{
    (void)state;
    static const int64_t ns[] = {56, 64, 100, 128, 159, 160, 257, 512, 1000, 1024, 4096};
    static const double mus[] = {0.5, 0.6, 0.7, 0.85, 1.0};
    stem_config cfg = default_config();
    int32_t *budget = malloc(4096 * sizeof(int32_t));
    assert_non_null(budget);
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        for (size_t b = 0; b < sizeof mus / sizeof mus[0]; b++) {
            const int64_t n = ns[a];
            cfg.mu = mus[b];
            int dense = 0;
            const int32_t k = stem_ref_k_start(&cfg, n * 128, -1, &dense);
            assert_int_equal(dense, 0);
            assert_int_equal(stem_ref_budget(&cfg, n * 128, -1, budget), 0);
            double cost = 0.0;
            for (int64_t I = 0; I < n; I++)
                cost += (double)(budget[I] < I + 1 ? budget[I] : I + 1);
            const double eq4 = stem_ref_eq4_cost(n, k, (double)cfg.mu);
            const double L = (double)(n - k), diff = cost - eq4;
            if (!(diff > k / 2.0 - L - 1e-6 && diff <= k / 2.0 + 1e-6))
                fail_msg("n=%lld mu=%g k=%d: cost %g, Eq.4 %g, diff %g not in (%g, %g]",
                         (long long)n, (double)cfg.mu, k, cost, eq4, diff, k / 2.0 - L,
                         k / 2.0);
            if (cfg.mu == 1.0) /* no decay: no floor error at all */
                EXPECT_NEAR(diff, k / 2.0, 1e-9);
        }
    }
    /* Eq. 4 itself: n=64, k=42, mu=0.5: 2688 - 882 - 231 = 1575 */
    EXPECT_NEAR(stem_ref_eq4_cost(64, 42, 0.5), 1575.0, 1e-9);
    free(budget);
}

/* STEM_PAPER: k = max(floor(rate n), 54), Eq. 3 budget floor(k - k (1 - mu) (I + 1) / n). */
static void test_paper_schedule(void **state)
{
    (void)state;
    stem_config cfg = default_config();
    cfg.selector = STEM_SELECTOR_STEM_PAPER;
    int32_t budget[1024];
    int dense = -1;

    /* N = 8192 (<= 16384): rate 0.2, floor(12.8) = 12 -> 54 */
    assert_int_equal(stem_ref_k_start(&cfg, 8192, -1, &dense), 54);
    assert_int_equal(dense, 0);
    assert_int_equal(stem_ref_budget(&cfg, 8192, -1, budget), 0);
    assert_int_equal(budget[0], 53);  /* 54 - 16.2/64 = 53.75 */
    assert_int_equal(budget[31], 45); /* 54 - 8.1 = 45.9 */
    assert_int_equal(budget[63], 37); /* 54 - 16.2 = 37.8 */

    /* N = 131072 (> 16384): rate 0.1, floor(102.4) = 102 */
    assert_int_equal(stem_ref_k_start(&cfg, 131072, -1, &dense), 102);
    stem_ref_budget(&cfg, 131072, -1, budget);
    assert_int_equal(budget[0], 101);    /* 102 - 30.6/1024 */
    assert_int_equal(budget[511], 86);   /* 102 - 15.3 = 86.7 */
    assert_int_equal(budget[1023], 71);  /* 102 - 30.6 = 71.4 */

    /* N = 16384 exactly is still "short": floor(0.2*128) = 25 -> 54 */
    assert_int_equal(stem_ref_k_start(&cfg, 16384, -1, &dense), 54);
    cfg.paper_min_blocks = 1; /* make the rate switch visible */
    assert_int_equal(stem_ref_k_start(&cfg, 16384, -1, &dense), 25);
    assert_int_equal(stem_ref_k_start(&cfg, 16385, -1, &dense), 12); /* n = 129, 0.1 n */
    cfg.paper_min_blocks = 54;
    /* N = 40000 (n = 313): floor(31.3) = 31 -> 54 */
    assert_int_equal(stem_ref_k_start(&cfg, 40000, -1, &dense), 54);
    /* no dense_below rule, only k >= n: n = 54 is dense, n = 55 is not */
    assert_int_equal(stem_ref_k_start(&cfg, 54 * 128, -1, &dense), 54);
    assert_int_equal(dense, 1);
    assert_int_equal(stem_ref_k_start(&cfg, 55 * 128, -1, &dense), 54);
    assert_int_equal(dense, 0);
    stem_ref_budget(&cfg, 55 * 128, -1, budget);
    assert_int_equal(budget[54], 37); /* 54 - 16.2 */

    /* mu = 0 with a small k: the clamp to 1 bites */
    cfg.k_start = 4;
    cfg.mu = 0.0;
    cfg.block_size = 16;
    stem_ref_budget(&cfg, 8 * 16, -1, budget); /* n = 8: floor(4 - 4 (I+1)/8) */
    static const int32_t want[8] = {3, 3, 2, 2, 1, 1, 1, 1};
    for (int I = 0; I < 8; I++)
        assert_int_equal(budget[I], want[I]);
}

/* UNIFORM: round(k (1 + mu) / 2) or uniform_k, clamped to [1, n]. */
static void test_uniform_budget(void **state)
{
    (void)state;
    stem_config cfg = default_config();
    cfg.selector = STEM_SELECTOR_UNIFORM;
    int32_t budget[1024];
    assert_int_equal(stem_ref_budget(&cfg, 64 * 128, -1, budget), 0);
    assert_int_equal(budget[0], 36); /* 42 * 0.85 = 35.7 */
    assert_int_equal(budget[63], 36);
    stem_ref_budget(&cfg, 128 * 128, -1, budget);
    assert_int_equal(budget[100], 47); /* 55 * 0.85 = 46.75 */
    stem_ref_budget(&cfg, 1024 * 128, -1, budget);
    assert_int_equal(budget[1023], 112); /* 132 * 0.85 = 112.2 */
    cfg.uniform_k = 10;
    stem_ref_budget(&cfg, 1024 * 128, -1, budget);
    assert_int_equal(budget[0], 10);
    assert_int_equal(budget[1023], 10);
    cfg.uniform_k = 2000; /* out of range for the API; the reference clamps */
    stem_ref_budget(&cfg, 1024 * 128, -1, budget);
    assert_int_equal(budget[5], 1024);
    /* short prompts are dense for UNIFORM too */
    cfg.uniform_k = 0;
    assert_int_equal(stem_ref_budget(&cfg, 40 * 128, -1, budget), 1);
    assert_int_equal(budget[3], 40);
}

/* -------------------------------------------------------------- routing term */

/* R via the phase-sum form, written here independently of the reference. */
static void check_routing_phase_sum(int32_t B, int32_t S, int64_t N, int64_t d, int64_t hq,
                                    int64_t hkv, double scale, float norm, uint64_t seed)
{
    problem pr = make_problem(seed, 2, hq, hkv, N, d, 1.0);
    pr.p.scale = scale;
    stem_config cfg = default_config();
    cfg.selector = STEM_SELECTOR_UNIFORM; /* no value bonus: scores are R */
    cfg.block_size = B;
    cfg.stride = S;
    cfg.norm = norm;
    const int64_t n = stem_ref_num_blocks(N, B), G = B / S;
    double *sc = scores_for(&pr, &cfg);
    double *qf = calloc((size_t)(n * S * d), sizeof(double));
    double *kf = calloc((size_t)(n * S * d), sizeof(double));
    assert_non_null(qf);
    assert_non_null(kf);
    double worst = 0.0, biggest = 0.0;
    for (int64_t b = 0; b < 2; b++) {
        for (int64_t h = 0; h < hq; h++) {
            const int64_t kh = h / (hq / hkv);
            memset(qf, 0, (size_t)(n * S * d) * sizeof(double));
            memset(kf, 0, (size_t)(n * S * d) * sizeof(double));
            for (int64_t I = 0; I < n; I++)
                for (int64_t t = 0; t < S; t++)
                    for (int64_t a = 0; a < G; a++) {
                        const int64_t tok = I * B + a * S + t;
                        if (tok >= N)
                            continue;
                        for (int64_t x = 0; x < d; x++) {
                            qf[(I * S + t) * d + x] += qrow(&pr, b, h, tok)[x];
                            /* K segment order is reversed */
                            kf[(I * S + (S - 1 - t)) * d + x] += krow(&pr, b, kh, tok)[x];
                        }
                    }
            for (int64_t I = 0; I < n; I++)
                for (int64_t J = 0; J < n; J++) {
                    const double got = sc[((b * hq + h) * n + I) * n + J];
                    if (J > I) {
                        assert_true(isinf(got) && got < 0);
                        continue;
                    }
                    double dp = 0.0;
                    for (int64_t x = 0; x < S * d; x++)
                        dp += qf[I * S * d + x] * kf[J * S * d + x];
                    const double want = dp * scale / ((double)G * G * S * (double)norm);
                    if (fabs(got - want) > worst)
                        worst = fabs(got - want);
                    if (fabs(want) > biggest)
                        biggest = fabs(want);
                }
        }
    }
    assert_true(biggest > 1e-3); /* the check is not vacuous */
    if (worst > 1e-12 * (1.0 + biggest))
        fail_msg("B=%d S=%d N=%lld: strided vs phase-sum routing differ by %g", B, S,
                 (long long)N, worst);
    free(qf);
    free(kf);
    free(sc);
    free_problem(&pr);
}

static void test_routing_phase_sum_s8_b128(void **state)
{
    (void)state;
    /* 300 = 2*128 + 44: partial last block, and 44 is not a multiple of S */
    check_routing_phase_sum(128, 8, 300, 16, 2, 1, 0.25, 1.0f, 11);
    check_routing_phase_sum(128, 8, 256, 8, 1, 1, 1.0 / sqrt(8.0), 1.0f, 12);
}

static void test_routing_phase_sum_s4_b16(void **state)
{
    (void)state;
    /* 87 = 5*16 + 7; GQA 4:2; non-default scale and norm */
    check_routing_phase_sum(16, 4, 87, 8, 4, 2, 0.3, 2.0f, 13);
    check_routing_phase_sum(16, 16, 40, 4, 1, 1, 0.5, 1.0f, 14); /* S = B: G = 1 */
    check_routing_phase_sum(16, 1, 45, 4, 1, 1, 0.5, 1.0f, 15);  /* S = 1: G = B */
}

/* A hand-worked R: d = 1, B = 4, S = 2, G = 2, N = 4 (one block), scale 1, norm 1.
 * A[m][c] = q[2m+1] k[2c] + q[2m] k[2c+1], R = sum of the four A / (S G^2) = sum / 8. */
static void test_routing_hand(void **state)
{
    (void)state;
    double q[4] = {1, 2, 3, 4}, k[4] = {5, 6, 7, 8}, v[4] = {0, 0, 0, 0};
    stem_ref_problem p = {1, 1, 1, 4, 1, 1.0, -1, q, k, v};
    stem_config cfg = default_config();
    cfg.selector = STEM_SELECTOR_UNIFORM;
    cfg.block_size = 4;
    cfg.stride = 2;
    double s[1];
    stem_ref_scores(&p, &cfg, s);
    /* A00 = 2*5+1*6 = 16, A01 = 2*7+1*8 = 22, A10 = 4*5+3*6 = 38, A11 = 4*7+3*8 = 52 */
    EXPECT_NEAR(s[0], (16.0 + 22.0 + 38.0 + 52.0) / 8.0, 1e-15);
}

/* ---------------------------------------------------------------- value bonus */

/* vb[J] read back as STEM (or STEM_PAPER) scores minus UNIFORM scores. */
static void bonus_from_scores(problem *pr, stem_config cfg, stem_selector sel, double *vb)
{
    const int64_t n = stem_ref_num_blocks(pr->p.n_tokens, cfg.block_size);
    cfg.selector = STEM_SELECTOR_UNIFORM;
    double *base = scores_for(pr, &cfg);
    cfg.selector = sel;
    double *with = scores_for(pr, &cfg);
    /* every (row I >= J, head) shows the same bonus for column J */
    for (int64_t J = 0; J < n; J++) {
        vb[J] = with[(n - 1) * n + J] - base[(n - 1) * n + J];
        for (int64_t bh = 0; bh < pr->p.batch * pr->p.hq; bh++)
            for (int64_t I = J; I < n; I++)
                EXPECT_NEAR(with[(bh * n + I) * n + J] - base[(bh * n + I) * n + J], vb[J],
                            1e-12);
    }
    free(base);
    free(with);
}

static void test_value_bonus_constant_norm(void **state)
{
    (void)state;
    /* N=100, B=16, S=4: partial last block and 25 full groups; also Gv = 1 (N = 5) */
    static const int64_t Ns[] = {100, 5, 64};
    for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++) {
        problem pr = make_problem(21, 1, 2, 1, Ns[c], 8, 1.0);
        rng r = {99};
        for (int64_t t = 0; t < Ns[c]; t++)
            set_v_norm(&pr, &r, 0, 0, t, 2.5);
        stem_config cfg = default_config();
        cfg.block_size = 16;
        cfg.stride = 4;
        const int64_t n = stem_ref_num_blocks(Ns[c], 16);
        double vb[16];
        bonus_from_scores(&pr, cfg, STEM_SELECTOR_STEM, vb);
        for (int64_t J = 0; J < n; J++)
            EXPECT_NEAR(vb[J], 0.0, 1e-9);
        /* DENSE writes the STEM scores */
        double *a = scores_for(&pr, &cfg);
        cfg.selector = STEM_SELECTOR_DENSE;
        double *b = scores_for(&pr, &cfg);
        for (int64_t i = 0; i < 2 * n * n; i++)
            assert_true(a[i] == b[i]);
        free(a);
        free(b);
        free_problem(&pr);
    }
}

/* One stride group holds a high-norm token; every other token has norm 1.
 * With x1 = log(10 + 1e-6), x0 = log(1 + 1e-6), D = x1 - x0 over Gv groups:
 * mean = x0 + D/Gv, sd = D/sqrt(Gv), z1 = D (Gv-1)/Gv / (sd + 1e-6), others negative. */
static void test_value_bonus_single_group(void **state)
{
    (void)state;
    static const int64_t Ns[] = {256, 250}; /* 250: partial group 31 and partial block 3 */
    for (size_t c = 0; c < 2; c++) {
        const int64_t N = Ns[c];
        problem pr = make_problem(31, 1, 2, 1, N, 8, 1.0);
        rng r = {7};
        for (int64_t t = 0; t < N; t++)
            set_v_norm(&pr, &r, 0, 0, t, 1.0);
        set_v_norm(&pr, &r, 0, 0, 13 * 8 + 5, 10.0); /* group 13 lies in block 1 */
        stem_config cfg = default_config();
        cfg.block_size = 64;
        cfg.stride = 8;
        cfg.beta = 0.25f;
        double vb[4];
        bonus_from_scores(&pr, cfg, STEM_SELECTOR_STEM, vb);
        const double Gv = (double)(N / 8);
        const double D = log(10.0 + 1e-6) - log(1.0 + 1e-6);
        const double z = D * (Gv - 1.0) / Gv / (D / sqrt(Gv) + 1e-6);
        EXPECT_NEAR(vb[0], 0.0, 1e-12);
        EXPECT_NEAR(vb[1], 0.25 * z / 8.0, 1e-12);
        EXPECT_NEAR(vb[2], 0.0, 1e-12);
        EXPECT_NEAR(vb[3], 0.0, 1e-12);
        assert_true(vb[1] > 0.1); /* z ~ 5.4 or 5.6 */
        free_problem(&pr);
    }
}

/* No group made only of real tokens (N < S): every bonus is zero, whatever the norms. */
static void test_value_bonus_no_full_group(void **state)
{
    (void)state;
    problem pr = make_problem(41, 1, 1, 1, 3, 4, 1.0);
    rng r = {3};
    set_v_norm(&pr, &r, 0, 0, 0, 0.1);
    set_v_norm(&pr, &r, 0, 0, 2, 50.0);
    stem_config cfg = default_config();
    cfg.block_size = 16;
    cfg.stride = 4;
    double vb[1];
    bonus_from_scores(&pr, cfg, STEM_SELECTOR_STEM, vb);
    assert_true(vb[0] == 0.0);
    free_problem(&pr);
}

/* STEM_PAPER: beta * max(0, log(block max ||V|| + 1e-6)). */
static void test_value_bonus_paper(void **state)
{
    (void)state;
    const int64_t N = 100; /* B = 16: 7 blocks, the last holds tokens 96..99 */
    problem pr = make_problem(51, 1, 1, 1, N, 8, 1.0);
    rng r = {5};
    for (int64_t t = 0; t < N; t++)
        set_v_norm(&pr, &r, 0, 0, t, 0.5); /* log(0.5) < 0: no bonus */
    set_v_norm(&pr, &r, 0, 0, 3, 5.0);
    set_v_norm(&pr, &r, 0, 0, 7, 2.0);
    set_v_norm(&pr, &r, 0, 0, 40, 1.5);
    set_v_norm(&pr, &r, 0, 0, 99, 3.0);
    stem_config cfg = default_config();
    cfg.block_size = 16;
    cfg.stride = 4;
    double vb[7];
    bonus_from_scores(&pr, cfg, STEM_SELECTOR_STEM_PAPER, vb);
    const double beta = (double)0.2f;
    EXPECT_NEAR(vb[0], beta * log(5.0 + 1e-6), 1e-12);
    EXPECT_NEAR(vb[1], 0.0, 1e-15);
    EXPECT_NEAR(vb[2], beta * log(1.5 + 1e-6), 1e-12);
    EXPECT_NEAR(vb[3], 0.0, 1e-15);
    EXPECT_NEAR(vb[6], beta * log(3.0 + 1e-6), 1e-12);
    free_problem(&pr);
}

/* ----------------------------------------------------------------- selection */

/* Runs selection on hand-written scores for one head. */
static void select_rows(const stem_config *cfg, int64_t N, int32_t layer, const double *sc,
                        int32_t *index, int32_t *count)
{
    stem_ref_problem p = {1, 1, 1, N, 1, 1.0, layer, NULL, NULL, NULL};
    stem_ref_select(&p, cfg, sc, index, count);
}

static void expect_list(const int32_t *index, const int32_t *count, int64_t n, int64_t I,
                        const int32_t *want, int32_t nwant)
{
    if (count[I] != nwant)
        fail_msg("row %lld: count %d, expected %d", (long long)I, count[I], nwant);
    for (int32_t r = 0; r < nwant; r++)
        if (index[I * n + r] != want[r])
            fail_msg("row %lld: entry %d is %d, expected %d", (long long)I, r,
                     index[I * n + r], want[r]);
    for (int64_t r = nwant; r < n; r++)
        assert_int_equal(index[I * n + r], -1);
}

static void test_select_topk_hand(void **state)
{
    (void)state;
    enum { n = 8 };
    stem_config cfg = default_config();
    cfg.block_size = 16;
    cfg.stride = 4;
    cfg.k_start = 3;
    cfg.mu = 1.0; /* budget 3 on every row */
    cfg.sink_blocks = 1;
    cfg.local_blocks = 1;
    double sc[n * n];
    for (int i = 0; i < n * n; i++)
        sc[i] = -INFINITY;
    const double ninf = -INFINITY, nan_ = NAN;
    /* row 7: three-way tie at 2.0 fills the budget with J = 1, 2, 4 (not 6's 0.7) */
    const double r7[8] = {0.5, 2.0, 2.0, 1.0, 2.0, -1.0, 0.7, 0.1};
    /* row 6: all equal -> the lowest three */
    const double r6[7] = {1, 1, 1, 1, 1, 1, 1};
    /* row 5: only J = 2 is finite */
    const double r5[6] = {nan_, ninf, 3.0, nan_, ninf, nan_};
    /* row 4: nothing finite -> forced only */
    const double r4[5] = {ninf, ninf, ninf, ninf, ninf};
    /* row 3: +inf is not finite: not chosen; top-3 finite are 0, 1, 2 */
    const double r3[4] = {0.1, 0.2, 0.3, INFINITY};
    memcpy(sc + 7 * n, r7, sizeof r7);
    memcpy(sc + 6 * n, r6, sizeof r6);
    memcpy(sc + 5 * n, r5, sizeof r5);
    memcpy(sc + 4 * n, r4, sizeof r4);
    memcpy(sc + 3 * n, r3, sizeof r3);
    int32_t index[n * n], count[n];
    select_rows(&cfg, n * 16, -1, sc, index, count);
    expect_list(index, count, n, 0, (const int32_t[]){0}, 1);
    expect_list(index, count, n, 2, (const int32_t[]){0, 1, 2}, 3); /* I + 1 <= budget */
    expect_list(index, count, n, 3, (const int32_t[]){0, 1, 2, 3}, 4);
    expect_list(index, count, n, 4, (const int32_t[]){0, 4}, 2);
    expect_list(index, count, n, 5, (const int32_t[]){0, 2, 5}, 3);
    expect_list(index, count, n, 6, (const int32_t[]){0, 1, 2, 6}, 4);
    expect_list(index, count, n, 7, (const int32_t[]){0, 1, 2, 4, 7}, 5);

    /* forced blocks do not take budget: k = 1, 2 sinks, 3 local */
    cfg.k_start = 1;
    cfg.sink_blocks = 2;
    cfg.local_blocks = 3;
    const double r7b[8] = {9, 0, 0, 0, 5, 0, 0, 0};
    memcpy(sc + 7 * n, r7b, sizeof r7b);
    select_rows(&cfg, n * 16, -1, sc, index, count);
    expect_list(index, count, n, 7, (const int32_t[]){0, 1, 5, 6, 7}, 5);
    expect_list(index, count, n, 1, (const int32_t[]){0, 1}, 2);
    /* row 4 is all -inf: sinks 0, 1 and window 2..4 */
    expect_list(index, count, n, 4, (const int32_t[]){0, 1, 2, 3, 4}, 5);
    /* the dense layer rule keeps every causal block */
    select_rows(&cfg, n * 16, 0, sc, index, count);
    for (int I = 0; I < n; I++) {
        assert_int_equal(count[I], I + 1);
        for (int J = 0; J <= I; J++)
            assert_int_equal(index[I * n + J], J);
    }
}

/* Random scores on a coarse grid (many ties) against an independent rank count. */
static void test_select_random_rank(void **state)
{
    (void)state;
    enum { n = 40, heads = 3 };
    stem_config cfg = default_config();
    cfg.block_size = 16;
    cfg.stride = 8;
    cfg.k_start = 12;
    cfg.mu = 0.5;
    int32_t budget[n];
    assert_int_equal(stem_ref_budget(&cfg, n * 16, -1, budget), 0);
    double *sc = malloc(heads * n * n * sizeof(double));
    int32_t *index = malloc(heads * n * n * sizeof(int32_t));
    int32_t count[heads * n];
    assert_non_null(sc);
    assert_non_null(index);
    rng r = {77};
    for (int64_t i = 0; i < heads * n * n; i++)
        sc[i] = floor(rng_normal(&r) * 2.0) / 2.0;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t I = 0; I < n; I++)
            for (int64_t J = I + 1; J < n; J++)
                sc[(h * n + I) * n + J] = -INFINITY;
    stem_ref_problem p = {1, heads, 1, n * 16, 1, 1.0, -1, NULL, NULL, NULL};
    stem_ref_select(&p, &cfg, sc, index, count);
    int saw_sparse = 0;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t I = 0; I < n; I++) {
            const double *row = sc + (h * n + I) * n;
            unsigned char want[n] = {0};
            for (int64_t J = 0; J <= I; J++) {
                int beaten = 0; /* entries ranked above J: larger, or equal and lower */
                for (int64_t J2 = 0; J2 <= I; J2++)
                    if (row[J2] > row[J] || (row[J2] == row[J] && J2 < J))
                        beaten++;
                if (beaten < budget[I] || J < 4 || J > I - 4)
                    want[J] = 1;
            }
            int32_t nwant = 0;
            int32_t list[n];
            for (int64_t J = 0; J <= I; J++)
                if (want[J])
                    list[nwant++] = (int32_t)J;
            expect_list(index + h * n * n, count + h * n, n, I, list, nwant);
            if (nwant < I + 1)
                saw_sparse = 1;
        }
    assert_true(saw_sparse);
    free(sc);
    free(index);
}

/* XATTENTION_STRICT (the paper-literal threshold rule) on hand-written masses. */
static void test_xattn_select_hand(void **state)
{
    (void)state;
    enum { n = 5 };
    stem_config cfg = default_config();
    cfg.selector = STEM_SELECTOR_XATTENTION_STRICT;
    cfg.block_size = 16;
    cfg.stride = 4;
    double sc[n * n] = {0};
    const double r4[5] = {0.5, 0.1, 0.3, 0.05, 1.0}; /* total 1.95, forced F = 1.5 */
    const double r3[4] = {0.2, 0.3, 0.3, 0.1};       /* total 0.9, F = 0.3 */
    sc[0] = 1.0;
    sc[1 * n + 0] = 0.7;
    sc[1 * n + 1] = 0.3;
    sc[2 * n + 0] = 0.0;
    sc[2 * n + 1] = 1.0;
    sc[2 * n + 2] = 0.0; /* F = 0 < T: the middle block is kept */
    memcpy(sc + 4 * n, r4, sizeof r4);
    memcpy(sc + 3 * n, r3, sizeof r3);
    int32_t index[n * n], count[n];

    cfg.xattn_threshold = 0.9f; /* T = 1.755: 1.5 < T keeps J=2; 1.8 stops */
    select_rows(&cfg, n * 16, -1, sc, index, count);
    expect_list(index, count, n, 0, (const int32_t[]){0}, 1);
    expect_list(index, count, n, 1, (const int32_t[]){0, 1}, 2);
    expect_list(index, count, n, 2, (const int32_t[]){0, 1, 2}, 3);
    /* row 3: T = 0.81; F = 0.3 keeps J=1 (tie with J=2 goes low), 0.6 keeps J=2, then 0.9 */
    expect_list(index, count, n, 3, (const int32_t[]){0, 1, 2, 3}, 4);
    expect_list(index, count, n, 4, (const int32_t[]){0, 2, 4}, 3);

    cfg.xattn_threshold = 0.95f; /* T = 1.8525: keeps 2 (1.5) and 1 (1.8), not 3 (1.9) */
    select_rows(&cfg, n * 16, -1, sc, index, count);
    expect_list(index, count, n, 4, (const int32_t[]){0, 1, 2, 4}, 4);

    cfg.xattn_threshold = 0.6f; /* row 3: T = 0.54: 0.3 keeps J=1; 0.6 drops J=2 */
    select_rows(&cfg, n * 16, -1, sc, index, count);
    expect_list(index, count, n, 3, (const int32_t[]){0, 1, 3}, 3);

    /* strict "<": masses in binary fractions make the running sum hit T exactly.
     * row 3 = quarters: F = 0.5 < 0.75 keeps J=1; 0.75 < 0.75 fails for J=2. */
    const double quarters[4] = {0.25, 0.25, 0.25, 0.25};
    memcpy(sc + 3 * n, quarters, sizeof quarters);
    cfg.xattn_threshold = 0.75f;
    select_rows(&cfg, n * 16, -1, sc, index, count);
    expect_list(index, count, n, 3, (const int32_t[]){0, 1, 3}, 3);
}

/* Row I of a 5-block plan through stem_ref_select, both XAttention selectors. */
static void xattn_rows(stem_selector sel, float tau, const double *row, int64_t I, int32_t *index,
                       int32_t *count)
{
    enum { n = 5 };
    double sc[n * n] = {0};
    memcpy(sc + I * n, row, (size_t)(I + 1) * sizeof(double));
    stem_config cfg = default_config();
    cfg.selector = sel;
    cfg.block_size = 16;
    cfg.stride = 4;
    cfg.xattn_threshold = tau;
    select_rows(&cfg, n * 16, -1, sc, index, count);
}

#define EXPECT_XATTN(sel, tau, row, I, ...)                                                    \
    do {                                                                                       \
        int32_t idx_[25], cnt_[5];                                                             \
        const int32_t want_[] = {__VA_ARGS__};                                                 \
        xattn_rows((sel), (tau), (row), (I), idx_, cnt_);                                      \
        expect_list(idx_, cnt_, 5, (I), want_, (int32_t)(sizeof want_ / sizeof want_[0]));    \
    } while (0)

/* The official XAttention rule (XATTENTION) against the strict one on
 * hand-written rows. Masses are dyadic and tau is exact in float, so every
 * running sum and T are exact and "<" is tested at equality too. */
static void test_xattn_official_hand(void **state)
{
    (void)state;
    const stem_selector OFF = STEM_SELECTOR_XATTENTION, STR = STEM_SELECTOR_XATTENTION_STRICT;
    /* The shifted sum keeps one more block. T = 0.875 * 1.9375 = 1.6953125.
     * official: F = W[4] = 1; order 0, 2, 1, 3; o_1 = 0 kept; 2 on F = 1;
     *   1 on F + W(0) = 1.5 (kept); 3 on 1.75 (dropped).
     * strict: F = W[0] + W[4] = 1.5; 2 on 1.5 (kept); 1 on 1.75 (dropped). */
    const double r_lag[5] = {0.5, 0.125, 0.25, 0.0625, 1.0};
    EXPECT_XATTN(OFF, 0.875f, r_lag, 4, 0, 1, 2, 4);
    EXPECT_XATTN(STR, 0.875f, r_lag, 4, 0, 2, 4);

    /* Block 0 light: its mass enters the official running sum only at its
     * rank (last here), the strict one counts it from the start.
     * T = 0.75 * 1.4375 = 1.078125. official: F = 0.5; order 1, 2, 3, 0;
     *   1 kept; 2 on 0.5; 3 on 1.0 (kept); 0 on 1.25 (rejected, kept anyway).
     * strict: F = 0.5625; 1 on 0.5625; 2 on 1.0625 (kept); 3 on 1.3125 (dropped). */
    const double r_light0[5] = {0.0625, 0.5, 0.25, 0.125, 0.5};
    EXPECT_XATTN(OFF, 0.75f, r_light0, 4, 0, 1, 2, 3, 4);
    EXPECT_XATTN(STR, 0.75f, r_light0, 4, 0, 1, 2, 4);
    /* Block 0 with no mass at all is still kept by the official rule. */
    const double r_zero0[5] = {0.0, 0.5, 0.25, 0.125, 0.5}; /* T = 1.03125 */
    EXPECT_XATTN(OFF, 0.75f, r_zero0, 4, 0, 1, 2, 3, 4);
    EXPECT_XATTN(STR, 0.75f, r_zero0, 4, 0, 1, 2, 4);
    /* Block 0 heaviest: the official count still runs one block ahead.
     * T = 0.75 * 2.5 = 1.875. official: F = 0.5; order 0, 1, 2, 3; 1 on 0.5;
     *   2 on 1.25; 3 on 1.75 (kept). strict: F = 1.25; 1 on 1.25; 2 on 1.75;
     *   3 on 2.25 (dropped). */
    const double r_heavy0[5] = {0.75, 0.5, 0.5, 0.25, 0.5};
    EXPECT_XATTN(OFF, 0.75f, r_heavy0, 4, 0, 1, 2, 3, 4);
    EXPECT_XATTN(STR, 0.75f, r_heavy0, 4, 0, 1, 2, 4);

    /* Ties at the cut go to the lower block. T = 0.75 * 1.25 = 0.9375.
     * official: F = 0.25; order 0, 2, 1, 3 (1 before 3); 1 on 0.75 (kept);
     *   3 on 1.0 (dropped). strict: F = 0.75; 2 on 0.75; 1 on 1.0 (dropped). */
    const double r_tie[5] = {0.5, 0.125, 0.25, 0.125, 0.25};
    EXPECT_XATTN(OFF, 0.75f, r_tie, 4, 0, 1, 2, 4);
    EXPECT_XATTN(STR, 0.75f, r_tie, 4, 0, 2, 4);

    /* "<" at equality. Quarters, T = 0.75: official o_3 = 2 on 0.5 (kept);
     * strict 2 on 0.75 (dropped). T = 0.5: official 2 on 0.5 (dropped), 1 on
     * 0.25; strict 1 on 0.5 (dropped). */
    const double quarters[4] = {0.25, 0.25, 0.25, 0.25};
    EXPECT_XATTN(OFF, 0.75f, quarters, 3, 0, 1, 2, 3);
    EXPECT_XATTN(STR, 0.75f, quarters, 3, 0, 1, 3);
    EXPECT_XATTN(OFF, 0.5f, quarters, 3, 0, 1, 3);
    EXPECT_XATTN(STR, 0.5f, quarters, 3, 0, 3);

    /* tau = 1 with massless blocks: official 1 on 0.5, 2 on 1.0 = T (dropped);
     * strict 1 on 1.0 (dropped). */
    const double massless[4] = {0.5, 0.0, 0.0, 0.5};
    EXPECT_XATTN(OFF, 1.0f, massless, 3, 0, 1, 3);
    EXPECT_XATTN(STR, 1.0f, massless, 3, 0, 3);

    /* The first candidate is always kept, whatever tau: here block 1. */
    const double r_first[4] = {0.125, 0.5, 0.125, 2.0};
    EXPECT_XATTN(OFF, 1e-7f, r_first, 3, 0, 1, 3);
    EXPECT_XATTN(STR, 1e-7f, r_first, 3, 0, 3);

    /* Rows 0 and 1 keep every causal block under both rules. */
    const double r01[2] = {0.25, 2.0};
    EXPECT_XATTN(OFF, 1e-7f, r01, 0, 0);
    EXPECT_XATTN(OFF, 1e-7f, r01, 1, 0, 1);
    EXPECT_XATTN(STR, 1e-7f, r01, 1, 0, 1);

    /* With a query offset (diag_only = 0) the official rule forces blocks 0
     * and I and does not lag: the strict lists. */
    unsigned char keep[5] = {0};
    stem_ref_xattn_row(r_lag, 4, 0.875, 0, keep);
    assert_memory_equal(keep, ((const unsigned char[5]){1, 0, 1, 0, 1}), 5);
    memset(keep, 0, sizeof keep);
    stem_ref_xattn_row(r_light0, 4, 0.75, 0, keep);
    assert_memory_equal(keep, ((const unsigned char[5]){1, 1, 1, 0, 1}), 5);
    memset(keep, 0, sizeof keep);
    stem_ref_xattn_row(r_light0, 4, 0.75, 1, keep);
    assert_memory_equal(keep, ((const unsigned char[5]){1, 1, 1, 1, 1}), 5);
}

/* The official tensor steps, written out for one row (independently of
 * stem_ref_xattn_row): row r of a query chunk whose first block is key
 * block `offset`, masses w[0..nk) (zero past the diagonal). */
static void official_steps(const double *w, int64_t nk, int64_t offset, int64_t chunk, int64_t r,
                           double tau, unsigned char *keep)
{
    unsigned char forced[64] = {0};
    double other[64], vals[64], excl[64], key[64];
    int64_t order[64];
    forced[0] = 1;
    for (int64_t J = offset; J < offset + chunk; J++)
        forced[J] = J == offset + r; /* the identity over the chunk's columns */
    double total = 0.0, F = 0.0;
    for (int64_t J = 0; J < nk; J++) {
        total += w[J];
        F += forced[J] ? w[J] : 0.0;
        other[J] = forced[J] ? 0.0 : w[J];
        key[J] = forced[J] ? 100000.0 * (1.0 + w[J]) : w[J];
        order[J] = J;
    }
    /* descending sorts (insertion, stable: ties keep the lower index first) */
    for (int64_t a = 1; a < nk; a++)
        for (int64_t b = a; b > 0 && other[b] > other[b - 1]; b--) {
            const double t = other[b];
            other[b] = other[b - 1];
            other[b - 1] = t;
        }
    for (int64_t a = 1; a < nk; a++)
        for (int64_t b = a; b > 0 && key[order[b]] > key[order[b - 1]]; b--) {
            const int64_t t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    vals[0] = 0.0;
    vals[1] = F;
    for (int64_t p = 2; p < nk; p++)
        vals[p] = other[p - 2];
    excl[0] = 0.0;
    for (int64_t p = 1; p < nk; p++)
        excl[p] = excl[p - 1] + vals[p - 1];
    const double T = total * tau;
    memset(keep, 0, (size_t)nk);
    for (int64_t J = 0; J < nk; J++)
        keep[J] = forced[J];
    for (int64_t p = 0; p < nk; p++)
        keep[excl[p] < T ? order[p] : 0] = 1; /* rejected positions point at block 0 */
    for (int64_t J = offset + r + 1; J < nk; J++)
        keep[J] = 0; /* causal */
}

/* stem_ref_xattn_row against the official steps on random rows: masses
 * from a few values (ties, zeros), every row of a chunk from key block 0
 * (diag_only = 1) and of chunks with an offset (diag_only = 0). */
static void test_xattn_official_steps(void **state)
{
    (void)state;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    const double levels[6] = {0.0, 0.0625, 0.125, 0.25, 0.375, 1.0};
    const double taus[5] = {0.3, 0.5, 0.75, 0.9, 1.0};
    int64_t rows = 0, differ_strict = 0;
    for (int trial = 0; trial < 3000; trial++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        const int64_t offset = trial % 3 == 0 ? (int64_t)(rng >> 60) % 5 + 1 : 0;
        const int64_t chunk = (int64_t)((rng >> 40) % 12) + 1;
        const int64_t r = (int64_t)((rng >> 20) % (uint64_t)chunk);
        const int64_t I = offset + r, nk = offset + chunk + (int64_t)((rng >> 10) % 3);
        const double tau = (double)(float)taus[(rng >> 4) % 5];
        double w[64] = {0};
        for (int64_t J = 0; J <= I; J++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            w[J] = levels[(rng >> 33) % 6];
            if ((rng >> 50) % 7 == 0)
                w[J] = (double)((rng >> 20) % 1000) / 997.0; /* inexact sums too */
        }
        unsigned char want[64], got[64] = {0}, strict[64] = {0};
        official_steps(w, nk, offset, chunk, r, tau, want);
        stem_ref_xattn_row(w, I, tau, offset == 0, got);
        stem_ref_xattn_row(w, I, tau, 0, strict);
        int diff = 0;
        for (int64_t J = 0; J < nk; J++) {
            if (J <= I ? got[J] != want[J] : want[J] != 0)
                fail_msg("trial %d (offset %lld, I %lld, tau %g): block %lld official %d, "
                         "reference %d",
                         trial, (long long)offset, (long long)I, tau, (long long)J, want[J],
                         J <= I ? got[J] : 0);
            diff |= J <= I && strict[J] != want[J];
        }
        rows++;
        differ_strict += diff;
        if (offset > 0)
            assert_false(diff); /* with an offset the official rule is the strict one */
    }
    /* the two rules really differ on a good share of these rows */
    assert_true(differ_strict > rows / 10);
}

/* ---------------------------------------------------------------- XATTENTION */

/* W against a naive full-matrix computation; row masses = real strided rows. */
static void test_xattn_masses(void **state)
{
    (void)state;
    const int64_t N = 203, d = 8, B = 32, S = 4, G = 8;
    const int64_t n = stem_ref_num_blocks(N, B), M = (N + S - 1) / S; /* strided rows */
    problem pr = make_problem(61, 1, 2, 1, N, d, 2.0);
    pr.p.scale = 0.4;
    stem_config cfg = default_config();
    cfg.selector = STEM_SELECTOR_XATTENTION;
    cfg.block_size = (int32_t)B;
    cfg.stride = (int32_t)S;
    cfg.norm = 1.5f;
    double *sc = scores_for(&pr, &cfg);
    double *A = calloc((size_t)(M * M), sizeof(double));
    double *W = calloc((size_t)(n * n), sizeof(double));
    assert_non_null(A);
    assert_non_null(W);
    for (int64_t h = 0; h < 2; h++) {
        /* naive: the whole strided matrix, then masked softmax rows, then block sums */
        for (int64_t m = 0; m < M; m++)
            for (int64_t c = 0; c < M; c++) {
                double a = 0.0;
                for (int64_t t = 0; t < S; t++) {
                    const int64_t qi = m * S + S - 1 - t, ki = c * S + t;
                    if (qi < N && ki < N)
                        for (int64_t x = 0; x < d; x++)
                            a += qrow(&pr, 0, h, qi)[x] * krow(&pr, 0, 0, ki)[x];
                }
                A[m * M + c] = a * 0.4 / (4.0 * 1.5);
            }
        memset(W, 0, (size_t)(n * n) * sizeof(double));
        for (int64_t m = 0; m < M; m++) {
            double mx = -INFINITY, s = 0.0;
            for (int64_t c = 0; c <= m; c++)
                mx = fmax(mx, A[m * M + c]);
            for (int64_t c = 0; c <= m; c++)
                s += exp(A[m * M + c] - mx);
            for (int64_t c = 0; c <= m; c++)
                W[(m / G) * n + c / G] += exp(A[m * M + c] - mx) / s;
        }
        for (int64_t I = 0; I < n; I++) {
            double rowsum = 0.0;
            int64_t real = 0;
            for (int64_t a = 0; a < G; a++)
                if ((I * G + a) * S < N)
                    real++;
            for (int64_t J = 0; J < n; J++) {
                const double got = sc[((int64_t)h * n + I) * n + J];
                if (J > I) {
                    assert_true(got == 0.0);
                    continue;
                }
                assert_true(got > 0.0);
                EXPECT_NEAR(got, W[I * n + J], 1e-12);
                rowsum += got;
            }
            EXPECT_NEAR(rowsum, (double)real, 1e-12);
        }
    }
    /* the last block (tokens 192..202) has strided rows 48..50 */
    double last = 0.0;
    for (int64_t J = 0; J < n; J++)
        last += sc[(n - 1) * n + J];
    EXPECT_NEAR(last, 3.0, 1e-12);
    free(A);
    free(W);
    free(sc);
    free_problem(&pr);
}

static void test_xattn_threshold_extremes(void **state)
{
    (void)state;
    const int64_t N = 300;
    problem pr = make_problem(71, 1, 2, 2, N, 8, 1.0);
    stem_config cfg = default_config();
    cfg.selector = STEM_SELECTOR_XATTENTION;
    cfg.block_size = 16;
    cfg.stride = 4;
    const int64_t n = stem_ref_num_blocks(N, 16);
    double *sc = scores_for(&pr, &cfg);
    int32_t *index = malloc((size_t)(2 * n * n) * sizeof(int32_t));
    int32_t *count = malloc((size_t)(2 * n) * sizeof(int32_t));
    assert_non_null(index);
    assert_non_null(count);

    cfg.xattn_threshold = 1.0f; /* every block with mass is kept */
    stem_ref_select(&pr.p, &cfg, sc, index, count);
    for (int64_t r = 0; r < 2 * n; r++) {
        assert_int_equal(count[r], r % n + 1);
        for (int64_t J = 0; J <= r % n; J++)
            assert_int_equal(index[r * n + J], J);
    }
    cfg.xattn_threshold = 1e-7f;
    /* strict: the forced {0, I} already pass the threshold */
    cfg.selector = STEM_SELECTOR_XATTENTION_STRICT;
    stem_ref_select(&pr.p, &cfg, sc, index, count);
    for (int64_t r = 0; r < 2 * n; r++) {
        const int64_t I = r % n;
        assert_int_equal(count[r], I == 0 ? 1 : 2);
        assert_int_equal(index[r * n], 0);
        if (I > 0)
            assert_int_equal(index[r * n + 1], I);
        assert_int_equal(index[r * n + count[r]], -1);
    }
    /* official: I, block 0 and the heaviest block before I */
    cfg.selector = STEM_SELECTOR_XATTENTION;
    stem_ref_select(&pr.p, &cfg, sc, index, count);
    int64_t heaviest_not0 = 0;
    for (int64_t r = 0; r < 2 * n; r++) {
        const int64_t I = r % n;
        int64_t best = 0;
        for (int64_t J = 1; J < I; J++)
            if (sc[r * n + J] > sc[r * n + best])
                best = J;
        heaviest_not0 += I > 0 && best != 0;
        const int32_t want = I == 0 ? 1 : best == 0 ? 2 : 3;
        assert_int_equal(count[r], want);
        assert_int_equal(index[r * n], 0);
        assert_int_equal(index[r * n + count[r] - 1], I);
        if (want == 3)
            assert_int_equal(index[r * n + 1], best);
        assert_int_equal(index[r * n + count[r]], -1);
    }
    assert_true(heaviest_not0 > 0);
    /* the default 0.9 lands in between somewhere; the official rule keeps
     * a superset of the strict one (its running mass is never larger) */
    cfg.xattn_threshold = 0.9f;
    int32_t *sindex = malloc((size_t)(2 * n * n) * sizeof(int32_t));
    int32_t *scount = malloc((size_t)(2 * n) * sizeof(int32_t));
    assert_non_null(sindex);
    assert_non_null(scount);
    cfg.selector = STEM_SELECTOR_XATTENTION_STRICT;
    stem_ref_select(&pr.p, &cfg, sc, sindex, scount);
    cfg.selector = STEM_SELECTOR_XATTENTION;
    stem_ref_select(&pr.p, &cfg, sc, index, count);
    int64_t total = 0, stotal = 0, forced = 0;
    for (int64_t r = 0; r < 2 * n; r++) {
        total += count[r];
        stotal += scount[r];
        forced += r % n == 0 ? 1 : 2;
        for (int32_t a = 0, b = 0; a < scount[r]; a++) {
            while (b < count[r] && index[r * n + b] < sindex[r * n + a])
                b++;
            assert_true(b < count[r] && index[r * n + b] == sindex[r * n + a]);
        }
    }
    assert_true(stotal > forced && total > stotal && total < 2 * n * (n + 1) / 2);
    free(sindex);
    free(scount);
    free(index);
    free(count);
    free(sc);
    free_problem(&pr);
}

/* ----------------------------------------------------------------- attention */

/* Naive token-level attention with a block mask keep[I][J], written independently. */
static void naive_attention(problem *pr, int64_t B, const unsigned char *keep, double *out)
{
    const int64_t N = pr->p.n_tokens, d = pr->p.head_dim, n = stem_ref_num_blocks(N, (int32_t)B);
    double *w = malloc((size_t)N * sizeof(double));
    assert_non_null(w);
    for (int64_t b = 0; b < pr->p.batch; b++)
        for (int64_t h = 0; h < pr->p.hq; h++) {
            const int64_t kh = h / (pr->p.hq / pr->p.hkv);
            const unsigned char *kp = keep + (b * pr->p.hq + h) * n * n;
            for (int64_t i = 0; i < N; i++) {
                double *o = out + ((b * pr->p.hq + h) * N + i) * d;
                double mx = -INFINITY;
                for (int64_t j = 0; j < N; j++) {
                    w[j] = -INFINITY;
                    if (j <= i && kp[(i / B) * n + j / B]) {
                        double s = 0.0;
                        for (int64_t x = 0; x < d; x++)
                            s += qrow(pr, b, h, i)[x] * krow(pr, b, kh, j)[x];
                        w[j] = s * pr->p.scale;
                        mx = fmax(mx, w[j]);
                    }
                }
                for (int64_t x = 0; x < d; x++)
                    o[x] = 0.0;
                if (mx == -INFINITY)
                    continue;
                double z = 0.0;
                for (int64_t j = 0; j < N; j++)
                    z += w[j] == -INFINITY ? 0.0 : exp(w[j] - mx);
                for (int64_t j = 0; j < N; j++) {
                    if (w[j] == -INFINITY)
                        continue;
                    const double pj = exp(w[j] - mx) / z;
                    for (int64_t x = 0; x < d; x++)
                        o[x] += pj * vrow(pr, b, kh, j)[x];
                }
            }
        }
    free(w);
}

/* Turns keep[bh][I][J] into ascending lists padded with -1. */
static void lists_from_mask(const unsigned char *keep, int64_t rows, int64_t n, int32_t *index,
                            int32_t *count)
{
    for (int64_t r = 0; r < rows; r++) {
        const int64_t I = r % n;
        int32_t c = 0;
        for (int64_t J = 0; J <= I; J++)
            if (keep[r * n + J])
                index[r * n + c++] = (int32_t)J;
        count[r] = c;
        for (int64_t J = c; J < n; J++)
            index[r * n + J] = -1;
    }
}

typedef struct attn_case {
    int64_t batch, hq, hkv, N, d, B;
} attn_case;

/* density: probability a below-diagonal block is kept; diag: keep the diagonal. */
static double attention_vs_naive(const attn_case *c, double density, int diag, uint64_t seed)
{
    problem pr = make_problem(seed, c->batch, c->hq, c->hkv, c->N, c->d, 3.0);
    const int64_t n = stem_ref_num_blocks(c->N, (int32_t)c->B), rows = c->batch * c->hq * n;
    unsigned char *keep = calloc((size_t)(rows * n), 1);
    int32_t *index = malloc((size_t)(rows * n) * sizeof(int32_t));
    int32_t *count = malloc((size_t)rows * sizeof(int32_t));
    const int64_t outn = c->batch * c->hq * c->N * c->d;
    double *got = malloc((size_t)outn * sizeof(double)), *want = malloc((size_t)outn * sizeof(double));
    assert_true(keep && index && count && got && want);
    rng r = {seed + 1000};
    for (int64_t row = 0; row < rows; row++)
        for (int64_t J = 0; J <= row % n; J++)
            keep[row * n + J] = J == row % n ? (unsigned char)diag : rng_uniform(&r) < density;
    lists_from_mask(keep, rows, n, index, count);
    stem_ref_attention(&pr.p, (int32_t)c->B, index, count, got);
    naive_attention(&pr, c->B, keep, want);
    double worst = 0.0;
    for (int64_t i = 0; i < outn; i++)
        worst = fmax(worst, fabs(got[i] - want[i]));
    free(keep);
    free(index);
    free(count);
    free(got);
    free(want);
    free_problem(&pr);
    return worst;
}

static void test_attention_all_blocks_is_dense(void **state)
{
    (void)state;
    static const attn_case cases[] = {
        {2, 4, 2, 77, 8, 16}, {1, 2, 1, 128, 16, 32}, {1, 1, 1, 129, 4, 64}, {1, 3, 3, 17, 5, 16}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        EXPECT_NEAR(attention_vs_naive(&cases[i], 1.0, 1, 100 + i), 0.0, 1e-12);
}

static void test_attention_sparse_vs_naive(void **state)
{
    (void)state;
    static const attn_case cases[] = {{2, 4, 2, 150, 8, 16}, {1, 2, 1, 200, 16, 32}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        EXPECT_NEAR(attention_vs_naive(&cases[i], 0.4, 1, 200 + i), 0.0, 1e-12);
        /* rows without their diagonal block, some with no key at all */
        EXPECT_NEAR(attention_vs_naive(&cases[i], 0.3, 0, 300 + i), 0.0, 1e-12);
    }
}

/* Constant V rows give that row back wherever a key is visible; no key gives 0. */
static void test_attention_constant_v(void **state)
{
    (void)state;
    enum { n = 5 };
    const int64_t N = 77, d = 8, B = 16;
    problem pr = make_problem(81, 1, 2, 1, N, d, 4.0);
    double c[8];
    for (int64_t x = 0; x < d; x++)
        c[x] = 0.25 * (double)x - 0.6;
    for (int64_t t = 0; t < N; t++)
        memcpy(vrow(&pr, 0, 0, t), c, sizeof c);
    unsigned char keep[2 * n * n] = {0};
    rng r = {9};
    for (int64_t row = 0; row < 2 * n; row++)
        for (int64_t J = 0; J <= row % n; J++)
            keep[row * n + J] = rng_uniform(&r) < 0.5;
    keep[0 * n + 0] = 1;     /* head 0, row 0: diagonal */
    memset(keep + 3 * n, 0, n); /* head 0, row 3: empty list */
    keep[4 * n + 4] = 0;        /* head 0, row 4: no diagonal block */
    keep[4 * n + 1] = 1;
    int32_t index[2 * n * n], count[2 * n];
    lists_from_mask(keep, 2 * n, n, index, count);
    double *out = malloc((size_t)(2 * N * d) * sizeof(double));
    assert_non_null(out);
    stem_ref_attention(&pr.p, (int32_t)B, index, count, out);
    for (int64_t h = 0; h < 2; h++)
        for (int64_t i = 0; i < N; i++) {
            const int64_t I = i / B;
            int visible = 0; /* a kept block below the diagonal, or the diagonal itself */
            for (int64_t J = 0; J <= I; J++)
                visible |= keep[(h * n + I) * n + J];
            for (int64_t x = 0; x < d; x++)
                EXPECT_NEAR(out[(h * N + i) * d + x], visible ? c[x] : 0.0, 1e-13);
        }
    /* the empty row really is exactly zero */
    for (int64_t i = 3 * B; i < 4 * B; i++)
        for (int64_t x = 0; x < d; x++)
            assert_true(out[i * d + x] == 0.0);
    free(out);
    free_problem(&pr);
}

/* N = 1 gives V[0]; a diagonal-only list gives each block's first token its own V row. */
static void test_attention_single_key(void **state)
{
    (void)state;
    problem one = make_problem(91, 1, 2, 1, 1, 8, 1.0);
    int32_t index[2] = {0, 0}, count[2] = {1, 1};
    double out1[16];
    stem_ref_attention(&one.p, 16, index, count, out1);
    for (int64_t h = 0; h < 2; h++)
        for (int64_t x = 0; x < 8; x++)
            EXPECT_NEAR(out1[h * 8 + x], vrow(&one, 0, 0, 0)[x], 1e-15);
    free_problem(&one);

    enum { n = 4 };
    const int64_t N = 50, d = 4, B = 16;
    problem pr = make_problem(92, 1, 1, 1, N, d, 1.0);
    int32_t idx[n * n], cnt[n];
    for (int64_t I = 0; I < n; I++) {
        cnt[I] = 1;
        for (int64_t J = 0; J < n; J++)
            idx[I * n + J] = J == 0 ? (int32_t)I : -1;
    }
    double out[50 * 4];
    stem_ref_attention(&pr.p, (int32_t)B, idx, cnt, out);
    for (int64_t I = 0; I < n; I++)
        for (int64_t x = 0; x < d; x++)
            EXPECT_NEAR(out[I * B * d + x], vrow(&pr, 0, 0, I * B)[x], 1e-15);
    /* the second token of block 1 mixes exactly two keys */
    {
        const int64_t i = B + 1;
        double s0 = 0, s1 = 0;
        for (int64_t x = 0; x < d; x++) {
            s0 += qrow(&pr, 0, 0, i)[x] * krow(&pr, 0, 0, B)[x];
            s1 += qrow(&pr, 0, 0, i)[x] * krow(&pr, 0, 0, B + 1)[x];
        }
        s0 *= pr.p.scale;
        s1 *= pr.p.scale;
        const double p1 = 1.0 / (1.0 + exp(s0 - s1));
        for (int64_t x = 0; x < d; x++)
            EXPECT_NEAR(out[i * d + x],
                        (1 - p1) * vrow(&pr, 0, 0, B)[x] + p1 * vrow(&pr, 0, 0, B + 1)[x], 1e-14);
    }
    free_problem(&pr);
}

/* --------------------------------------------------------------- end to end */

/* Every selector through scores -> select -> attention: valid lists, forced blocks, finite out. */
static void test_pipeline_all_selectors(void **state)
{
    (void)state;
    const int64_t N = 300, d = 8, hq = 4, hkv = 2;
    problem pr = make_problem(111, 1, hq, hkv, N, d, 2.0);
    stem_config cfg = default_config();
    cfg.block_size = 16;
    cfg.stride = 4;
    cfg.k_start = 6;
    cfg.sink_blocks = 2;
    cfg.local_blocks = 2;
    const int64_t n = stem_ref_num_blocks(N, 16);
    int32_t *index = malloc((size_t)(hq * n * n) * sizeof(int32_t));
    int32_t *count = malloc((size_t)(hq * n) * sizeof(int32_t));
    double *out = malloc((size_t)(hq * N * d) * sizeof(double));
    assert_true(index && count && out);
    for (int s = 0; s < STEM_SELECTOR_COUNT; s++) {
        cfg.selector = (stem_selector)s;
        double *sc = scores_for(&pr, &cfg);
        for (int64_t i = 0; i < hq * n * n; i++)
            assert_false(isnan(sc[i]));
        stem_ref_select(&pr.p, &cfg, sc, index, count);
        int64_t kept = 0;
        for (int64_t r = 0; r < hq * n; r++) {
            const int64_t I = r % n;
            assert_true(count[r] >= 1 && count[r] <= I + 1);
            for (int64_t c = 1; c < count[r]; c++)
                assert_true(index[r * n + c] > index[r * n + c - 1]);
            for (int64_t c = 0; c < n; c++)
                assert_true(c < count[r] ? index[r * n + c] >= 0 && index[r * n + c] <= I
                                         : index[r * n + c] == -1);
            assert_int_equal(index[r * n], 0);                /* sink / forced 0 */
            assert_int_equal(index[r * n + count[r] - 1], I); /* diagonal */
            kept += count[r];
        }
        if (s == STEM_SELECTOR_DENSE)
            assert_int_equal(kept, hq * n * (n + 1) / 2);
        else
            assert_true(kept < hq * n * (n + 1) / 2);
        stem_ref_attention(&pr.p, 16, index, count, out);
        for (int64_t i = 0; i < hq * N * d; i++)
            assert_true(isfinite(out[i]));
        free(sc);
    }
    free(index);
    free(count);
    free(out);
    free_problem(&pr);
}

/* The chunked-call reference (stem_ref_call_*): a fresh call (P = 0) is the
 * one-shot reference; an aligned prefix call with the one-shot statistics
 * and prompt_len = N gives the one-shot rows and outputs (semantics.md 8). */
static void test_call_matches_oneshot(void **state)
{
    (void)state;
    const int64_t hq = 2, hkv = 1, N = 600, d = 16, B = 32;
    const int64_t n = (N + B - 1) / B;
    problem pr = make_problem(77, 1, hq, hkv, N, d, 2.0);
    stem_config cfg = default_config();
    cfg.block_size = (int32_t)B;
    cfg.stride = 4;
    cfg.k_start = 5;
    double *sc = calloc((size_t)(hq * n * n), sizeof(double));
    double *sc2 = calloc((size_t)(hq * n * n), sizeof(double));
    int32_t *ix = calloc((size_t)(hq * n * n), sizeof(int32_t));
    int32_t *ix2 = calloc((size_t)(hq * n * n), sizeof(int32_t));
    int32_t *ct = calloc((size_t)(hq * n), sizeof(int32_t));
    int32_t *ct2 = calloc((size_t)(hq * n), sizeof(int32_t));
    double *out = calloc((size_t)(hq * N * d), sizeof(double));
    double *out2 = calloc((size_t)(hq * N * d), sizeof(double));
    double *lse = calloc((size_t)(hq * N), sizeof(double));
    double vstats[2];
    assert_non_null(sc);
    assert_non_null(sc2);
    assert_non_null(ix);
    assert_non_null(ix2);
    assert_non_null(ct);
    assert_non_null(ct2);
    assert_non_null(out);
    assert_non_null(out2);
    assert_non_null(lse);
    stem_ref_scores(&pr.p, &cfg, sc);
    stem_ref_select(&pr.p, &cfg, sc, ix, ct);
    stem_ref_attention(&pr.p, (int32_t)B, ix, ct, out);

    stem_ref_call c = {1, hq, hkv, d, N, N, N, pr.p.scale, -1, pr.q, pr.k, pr.v, NULL};
    stem_ref_call_scores(&c, &cfg, sc2, vstats);
    for (int64_t i = 0; i < hq * n * n; i++)
        assert_true(isinf(sc[i]) ? sc2[i] == sc[i] : fabs(sc2[i] - sc[i]) <= 1e-9 * (1 + fabs(sc[i])));
    stem_ref_call_select(&c, &cfg, sc, ix2, ct2); /* same scores: same lists */
    assert_memory_equal(ix, ix2, (size_t)(hq * n * n) * sizeof(int32_t));
    assert_memory_equal(ct, ct2, (size_t)(hq * n) * sizeof(int32_t));
    stem_ref_call_attention(&c, (int32_t)B, ix, ct, out2, lse);
    for (int64_t i = 0; i < hq * N * d; i++)
        assert_true(fabs(out2[i] - out[i]) <= 1e-12);
    for (int64_t i = 0; i < hq * N; i++)
        assert_true(isfinite(lse[i]));

    /* Prefix P = 7 blocks, the one-shot statistics: rows 7.. and their outputs. */
    const int64_t P = 7 * B, M = N - P, rows = n - 7;
    double *q2 = calloc((size_t)(hq * M * d), sizeof(double));
    assert_non_null(q2);
    for (int64_t h = 0; h < hq; h++)
        memcpy(q2 + h * M * d, pr.q + (h * N + P) * d, (size_t)(M * d) * sizeof(double));
    stem_ref_call cp = {1, hq, hkv, d, M, N, N, pr.p.scale, -1, q2, pr.k, pr.v, vstats};
    stem_ref_call_scores(&cp, &cfg, sc2, NULL);
    stem_ref_call_select(&cp, &cfg, sc2, ix2, ct2);
    for (int64_t h = 0; h < hq; h++)
        for (int64_t r = 0; r < rows; r++) {
            assert_int_equal(ct2[h * rows + r], ct[h * n + 7 + r]);
            assert_memory_equal(ix2 + (h * rows + r) * n, ix + (h * n + 7 + r) * n,
                                (size_t)n * sizeof(int32_t));
        }
    stem_ref_call_attention(&cp, (int32_t)B, ix2, ct2, out2, NULL);
    for (int64_t h = 0; h < hq; h++)
        for (int64_t i = 0; i < M * d; i++)
            assert_true(fabs(out2[h * M * d + i] - out[(h * N + P) * d + i]) <= 1e-12);
    free(q2);
    free(sc);
    free(sc2);
    free(ix);
    free(ix2);
    free(ct);
    free(ct2);
    free(out);
    free(out2);
    free(lse);
    free_problem(&pr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_matches_oneshot),
        cmocka_unit_test(test_num_blocks),
        cmocka_unit_test(test_stem_schedule_official),
        cmocka_unit_test(test_stem_schedule_mu_is_double),
        cmocka_unit_test(test_budget_dense_rules),
        cmocka_unit_test(test_eq4_cost),
        cmocka_unit_test(test_paper_schedule),
        cmocka_unit_test(test_uniform_budget),
        cmocka_unit_test(test_routing_hand),
        cmocka_unit_test(test_routing_phase_sum_s8_b128),
        cmocka_unit_test(test_routing_phase_sum_s4_b16),
        cmocka_unit_test(test_value_bonus_constant_norm),
        cmocka_unit_test(test_value_bonus_single_group),
        cmocka_unit_test(test_value_bonus_no_full_group),
        cmocka_unit_test(test_value_bonus_paper),
        cmocka_unit_test(test_select_topk_hand),
        cmocka_unit_test(test_select_random_rank),
        cmocka_unit_test(test_xattn_select_hand),
        cmocka_unit_test(test_xattn_official_hand),
        cmocka_unit_test(test_xattn_official_steps),
        cmocka_unit_test(test_xattn_masses),
        cmocka_unit_test(test_xattn_threshold_extremes),
        cmocka_unit_test(test_attention_all_blocks_is_dense),
        cmocka_unit_test(test_attention_sparse_vs_naive),
        cmocka_unit_test(test_attention_constant_v),
        cmocka_unit_test(test_attention_single_key),
        cmocka_unit_test(test_pipeline_all_selectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
