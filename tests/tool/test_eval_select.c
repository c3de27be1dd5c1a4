/* The eval tool's test-only block choices (tools/stem/cmd_eval_select.c),
 * which the accuracy study's variant rows rest on: the per-row mass
 * threshold (stem_adaptive, stem_maxpool_adaptive) must keep the fewest
 * blocks whose softmax reaches tau, plus the sink and local blocks, in
 * ascending order; the oracle must keep the blocks with the most true
 * attention mass. Checked against brute force on fresh random rows. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmd_eval.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* brute force: with logits x[0..I] and the kept set, the kept blocks other
 * than the forced ones must be the largest by logit, reach tau of the mass,
 * and one fewer of them must not */
static void check_row(const float *x, int64_t I, int64_t nq, double tau, int sink, int local,
                      const int32_t *row, int32_t c)
{
    char *keep = calloc((size_t)nq, 1);
    assert_non_null(keep);
    for (int32_t i = 0; i < c; i++) {
        assert_true(row[i] >= 0 && row[i] <= I);
        if (i) assert_true(row[i] > row[i - 1]);
        keep[row[i]] = 1;
    }
    for (int64_t J = c; J < nq; J++) assert_int_equal(row[J], -1);
    for (int64_t J = 0; J < sink && J <= I; J++) assert_true(keep[J]);
    for (int64_t J = I - local + 1 > 0 ? I - local + 1 : 0; J <= I; J++) assert_true(keep[J]);
    double mx = -INFINITY, z = 0.0, kept = 0.0, smallest = INFINITY;
    for (int64_t J = 0; J <= I; J++) mx = x[J] > mx ? x[J] : mx;
    for (int64_t J = 0; J <= I; J++) z += exp((double)x[J] - mx);
    for (int64_t J = 0; J <= I; J++)
        if (keep[J]) kept += exp((double)x[J] - mx);
    assert_true(kept >= tau * z * (1 - 1e-12));
    /* minimality over the threshold-chosen part: the kept blocks by logit
     * descending until tau is reached must all be kept, and every unkept
     * block must be no larger than the smallest of those */
    double acc = 0.0;
    char *chosen = calloc((size_t)nq, 1);
    assert_non_null(chosen);
    for (int64_t r = 0; r <= I && acc < tau * z; r++) {
        int64_t best = -1;
        for (int64_t J = 0; J <= I; J++)
            if (!chosen[J] && (best < 0 || x[J] > x[best])) best = J;
        chosen[best] = 1;
        acc += exp((double)x[best] - mx);
        smallest = x[best];
    }
    for (int64_t J = 0; J <= I; J++) {
        if (chosen[J]) assert_true(keep[J]);
        const int forced = J < sink || J > I - local;
        if (keep[J] && !chosen[J]) assert_true(forced || x[J] == smallest);
        if (!keep[J]) assert_true(x[J] <= smallest);
    }
    free(chosen);
    free(keep);
}

static void adaptive_threshold(void **state)
{
    (void)state;
    const int hq = 3;
    const int64_t nq = 40;
    float *scores = malloc((size_t)(hq * nq * nq) * sizeof *scores);
    int32_t *idx = malloc((size_t)(hq * nq * nq) * sizeof *idx);
    int32_t *cnt = malloc((size_t)(hq * nq) * sizeof *cnt);
    assert_true(scores && idx && cnt);
    const double taus[] = {0.3, 0.8, 0.9, 0.99, 1.0};
    for (int t = 0; t < 5; t++) {
        for (int64_t i = 0; i < hq * nq * nq; i++) {
            const int64_t I = (i / nq) % nq, J = i % nq;
            /* spread, a spike, or ties: the three shapes the study meets */
            const double u = urand();
            scores[i] = J > I ? -INFINITY
                        : i % 3 == 0 ? (float)(4.0 * u)
                        : i % 3 == 1 ? (float)(u < 0.05 ? 12.0 : u)
                                     : (float)((int)(3 * u));
        }
        for (int64_t i = 0; i < hq * nq * nq; i++) idx[i] = 12345; /* poison */
        for (int64_t i = 0; i < hq * nq; i++) cnt[i] = -7;
        eval_adaptive_select(scores, hq, nq, taus[t], 4, 4, idx, cnt);
        for (int h = 0; h < hq; h++)
            for (int64_t I = 0; I < nq; I++)
                check_row(scores + (h * nq + I) * nq, I, nq, taus[t], 4, 4,
                          idx + (h * nq + I) * nq, cnt[h * nq + I]);
    }
    free(scores);
    free(idx);
    free(cnt);
}

/* The oracle on one head: a needle key that every query of the last block
 * matches strongly must be kept with a budget of one top-k block. */
static void oracle_keeps_needle(void **state)
{
    (void)state;
    const int d = 16, block = 16, stride = 4;
    const int64_t n = 16 * 12, nq = 12;
    float *q = calloc((size_t)(n * d), sizeof *q), *k = calloc((size_t)(n * d), sizeof *k);
    int32_t *idx = malloc((size_t)(nq * nq) * sizeof *idx), *cnt = malloc((size_t)nq * sizeof *cnt);
    int32_t budget[12];
    assert_true(q && k && idx && cnt);
    for (int64_t i = 0; i < n * d; i++) {
        q[i] = (float)(urand() - 0.5);
        k[i] = (float)(urand() - 0.5);
    }
    const int64_t needle = 5 * 16 + 7; /* in key block 5 */
    for (int c = 0; c < d; c++) k[needle * d + c] = c == 0 ? 40.0f : 0.0f;
    for (int64_t t = 11 * 16; t < n; t++) q[t * d] = 3.0f;
    for (int i = 0; i < 12; i++) budget[i] = 1;
    for (int kind = EVAL_HOST_ORACLE; kind <= EVAL_HOST_MAXPOOL_ADAPTIVE; kind++) {
        if (kind == EVAL_HOST_ADAPTIVE) continue; /* needs stem_score: not a host choice */
        for (int64_t i = 0; i < nq * nq; i++) idx[i] = 777;
        assert_int_equal(eval_oracle_select(q, k, 1, 1, d, n, n, block, budget, 1, 1, kind,
                                            stride, 0.5, idx, cnt),
                         0);
        const int32_t *row = idx + 11 * nq;
        int found = 0;
        for (int32_t i = 0; i < cnt[11]; i++) found |= row[i] == 5;
        /* the oracle and the max-pooled choices find it; the row softmax
         * estimator sees it through its strided rows too */
        if (kind == EVAL_HOST_ORACLE || kind == EVAL_HOST_MAXPOOL ||
            kind == EVAL_HOST_MAXPOOL_ADAPTIVE)
            assert_true(found);
        for (int64_t I = 0; I < nq; I++) {
            assert_true(cnt[I] >= 1 && cnt[I] <= I + 1);
            for (int64_t J = cnt[I]; J < nq; J++) assert_int_equal(idx[I * nq + J], -1);
        }
    }
    free(q);
    free(k);
    free(idx);
    free(cnt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(adaptive_threshold),
        cmocka_unit_test(oracle_keeps_needle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
