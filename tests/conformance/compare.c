/* Tolerances and comparisons against the shared reference.
 *
 * Tolerance model: an f32 sum of n terms is off by about u*sqrt(n) times the
 * sum of the terms' magnitudes (u = 2^-24); we allow a safety factor of 8 on
 * that, computed per element from the inputs. It is loose enough for any
 * summation order and tight enough that a wrong block, token or scale is
 * orders of magnitude outside. */
#include "compare.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U32 0x1.0p-24
#define SAFETY 8.0

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int diag_fail(conf_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    return 1;
}

/* ------------------------------------------------- reference, per head */

static stem_ref_problem head_problem(const stem_ref_problem *p, int64_t b, int64_t h)
{
    stem_ref_problem s = *p;
    const int64_t nd = p->n_tokens * p->head_dim, g = p->hq / p->hkv;
    s.batch = 1;
    s.hq = 1;
    s.hkv = 1;
    s.q = p->q + (b * p->hq + h) * nd;
    s.k = p->k + (b * p->hkv + h / g) * nd;
    s.v = p->v + (b * p->hkv + h / g) * nd;
    return s;
}

#ifdef _OPENMP
#define PARALLEL_HEADS _Pragma("omp parallel for schedule(dynamic, 1)")
#else
#define PARALLEL_HEADS
#endif

void conf_ref_scores(const stem_ref_problem *p, const stem_config *cfg, double *scores)
{
    const int64_t n = stem_ref_num_blocks(p->n_tokens, cfg->block_size);
    const int64_t items = p->batch * p->hq;
    PARALLEL_HEADS
    for (int64_t w = 0; w < items; ++w) {
        stem_ref_problem s = head_problem(p, w / p->hq, w % p->hq);
        stem_ref_scores(&s, cfg, scores + w * n * n);
    }
}

void conf_ref_select(const stem_ref_problem *p, const stem_config *cfg, const double *scores,
                     int32_t *index, int32_t *count)
{
    const int64_t n = stem_ref_num_blocks(p->n_tokens, cfg->block_size);
    const int64_t items = p->batch * p->hq;
    PARALLEL_HEADS
    for (int64_t w = 0; w < items; ++w) {
        stem_ref_problem s = head_problem(p, w / p->hq, w % p->hq);
        stem_ref_select(&s, cfg, scores + w * n * n, index + w * n * n, count + w * n);
    }
}

void conf_ref_attention(const stem_ref_problem *p, int32_t block_size, const int32_t *index,
                        const int32_t *count, double *out)
{
    const int64_t n = stem_ref_num_blocks(p->n_tokens, block_size);
    const int64_t items = p->batch * p->hq, nd = p->n_tokens * p->head_dim;
    PARALLEL_HEADS
    for (int64_t w = 0; w < items; ++w) {
        stem_ref_problem s = head_problem(p, w / p->hq, w % p->hq);
        stem_ref_attention(&s, block_size, index + w * n * n, count + w * n, out + w * nd);
    }
}

/* ------------------------------------------------------------- scores */

static double row_norm(const double *x, int64_t d)
{
    double s = 0.0;
    for (int64_t i = 0; i < d; ++i)
        s += x[i] * x[i];
    return sqrt(s);
}

/* Value-bonus tolerance per key block (STEM z-scored log norms, or the
 * paper's block max): log, mean and sd of f32 norms, amplified by 1/sd. */
static void bonus_tolerance(const stem_ref_problem *p, const stem_config *cfg, const double *v,
                            int64_t n, double *tolvb)
{
    const int64_t N = p->n_tokens, d = p->head_dim, B = cfg->block_size, S = cfg->stride;
    const int64_t G = B / S;
    const double beta = fabs((double)cfg->beta);
    for (int64_t J = 0; J < n; ++J)
        tolvb[J] = 0.0;
    if (cfg->selector == STEM_SELECTOR_STEM_PAPER) {
        for (int64_t J = 0; J < n; ++J) {
            double mx = 0.0;
            for (int64_t t = J * B; t < N && t < J * B + B; ++t) {
                const double nv = row_norm(v + t * d, d);
                mx = nv > mx ? nv : mx;
            }
            const double lv = log(mx + 1e-6);
            const double dl = SAFETY * U32 * (sqrt((double)d) + 2.0 * fabs(lv));
            if (lv + dl > 0.0)
                tolvb[J] = beta * (dl + 4.0 * U32 * fabs(lv));
        }
        return;
    }
    if (cfg->selector != STEM_SELECTOR_STEM && cfg->selector != STEM_SELECTOR_DENSE)
        return;
    const int64_t ng = n * G, gv = N / S;
    if (gv == 0)
        return;
    double *lv = malloc((size_t)ng * sizeof *lv);
    if (!lv)
        return;
    for (int64_t gi = 0; gi < ng; ++gi) {
        double mx = 0.0;
        for (int64_t t = gi * S; t < N && t < gi * S + S; ++t) {
            const double nv = row_norm(v + t * d, d);
            mx = nv > mx ? nv : mx;
        }
        lv[gi] = log(mx + 1e-6);
    }
    double mean = 0.0, sd = 0.0;
    for (int64_t gi = 0; gi < gv; ++gi)
        mean += lv[gi];
    mean /= (double)gv;
    if (gv > 1) {
        for (int64_t gi = 0; gi < gv; ++gi)
            sd += (lv[gi] - mean) * (lv[gi] - mean);
        sd = sqrt(sd / (double)(gv - 1));
    }
    for (int64_t gi = 0; gi < ng; ++gi) {
        const double z = (lv[gi] - mean) / (sd + 1e-6);
        /* Absolute error of lv - mean over sd, plus sd's own relative error times z
         * (with sd = 0, z = (lv - mean) / 1e-6 is huge but still accurate). */
        const double dz = SAFETY * U32 *
                          ((sqrt((double)d) + 2.0 * fabs(lv[gi]) +
                            sqrt((double)gv) * (fabs(mean) + sd)) /
                               (sd + 1e-6) +
                           (sqrt((double)gv) + 2.0) * fabs(z));
        if (z + dz > 0.0)
            tolvb[gi / G] += beta / (double)G * (dz + 4.0 * U32 * fabs(z));
    }
    free(lv);
}

void conf_score_tolerance(const stem_ref_problem *p, const stem_config *cfg,
                          const double *ref_scores, double *tol)
{
    const int64_t N = p->n_tokens, d = p->head_dim, B = cfg->block_size, S = cfg->stride;
    const int64_t G = B / S, n = ceil_div(N, B), g = p->hq / p->hkv, nd = N * d;
    const double scale = p->scale, norm = (double)cfg->norm;
    const int xattn = cfg->selector == STEM_SELECTOR_XATTENTION ||
                      cfg->selector == STEM_SELECTOR_XATTENTION_STRICT;
    double *qa = malloc((size_t)(n + 1) * sizeof *qa), *ka = malloc((size_t)(n + 1) * sizeof *ka);
    double *tolvb = malloc((size_t)(n + 1) * sizeof *tolvb);
    double *tn = malloc((size_t)(N + 1) * sizeof *tn), *acc = malloc((size_t)(S * d) * sizeof *acc);
    if (!qa || !ka || !tolvb || !tn || !acc) {
        free(qa), free(ka), free(tolvb), free(tn), free(acc);
        for (int64_t i = 0; i < p->batch * p->hq * n * n; ++i)
            tol[i] = INFINITY; /* cannot happen at test sizes; never a false failure */
        return;
    }
    for (int64_t b = 0; b < p->batch; ++b)
        for (int64_t h = 0; h < p->hq; ++h) {
            const double *q = p->q + (b * p->hq + h) * nd;
            const double *k = p->k + (b * p->hkv + h / g) * nd;
            const double *v = p->v + (b * p->hkv + h / g) * nd;
            const double *ref = ref_scores + (b * p->hq + h) * n * n;
            double *t = tol + (b * p->hq + h) * n * n;
            if (!xattn) {
                /* |phase sums| bound the summed products: |dot| <= ||Qabs|| ||Kabs||. */
                for (int side = 0; side < 2; ++side) {
                    const double *x = side ? k : q;
                    double *out = side ? ka : qa;
                    for (int64_t I = 0; I < n; ++I) {
                        memset(acc, 0, (size_t)(S * d) * sizeof *acc);
                        for (int64_t tok = I * B; tok < N && tok < I * B + B; ++tok)
                            for (int64_t c = 0; c < d; ++c)
                                acc[(tok % S) * d + c] += fabs(x[tok * d + c]);
                        out[I] = row_norm(acc, S * d);
                    }
                }
                bonus_tolerance(p, cfg, v, n, tolvb);
                const double f = scale / ((double)S * norm * (double)(G * G));
                const double depth = sqrt((double)(S * d + 2 * G));
                for (int64_t I = 0; I < n; ++I)
                    for (int64_t J = 0; J < n; ++J)
                        t[I * n + J] = J > I ? 0.0
                                             : SAFETY * U32 * depth * f * qa[I] * ka[J] +
                                                   tolvb[J] + 4.0 * U32 * fabs(ref[I * n + J]);
                continue;
            }
            /* XATTENTION: a softmax of logits l = A * scale / (S norm); a
             * relative error in every probability of 2 max|dl| plus the
             * normaliser's rounding. */
            double kmax = 0.0;
            for (int64_t tok = 0; tok < N; ++tok) {
                const double kn = row_norm(k + tok * d, d);
                kmax = kn > kmax ? kn : kmax;
            }
            for (int64_t tok = 0; tok < N; ++tok)
                tn[tok] = row_norm(q + tok * d, d);
            const double f = scale / ((double)S * norm);
            for (int64_t I = 0; I < n; ++I) {
                double eps = 0.0;
                for (int64_t m = I * G; m < I * G + G && m * S < N; ++m) {
                    double qs = 0.0;
                    for (int64_t tt = 0; tt < S; ++tt)
                        if (m * S + tt < N)
                            qs += tn[m * S + tt];
                    const double dl = SAFETY * U32 * sqrt((double)(S * d)) * f * qs * kmax;
                    const double e = 2.0 * dl + SAFETY * U32 * sqrt((double)(m + 1));
                    eps = e > eps ? e : eps;
                }
                for (int64_t J = 0; J < n; ++J)
                    t[I * n + J] = J > I ? 0.0
                                         : fabs(ref[I * n + J]) * (eps + 4.0 * U32) +
                                               4.0 * U32 * (double)(G * G);
            }
        }
    free(qa), free(ka), free(tolvb), free(tn), free(acc);
}

int conf_compare_scores(const stem_ref_problem *p, const stem_config *cfg, const double *got,
                        const double *ref, const double *tol, conf_diag *d)
{
    const int64_t n = stem_ref_num_blocks(p->n_tokens, cfg->block_size);
    const int xattn = cfg->selector == STEM_SELECTOR_XATTENTION ||
                      cfg->selector == STEM_SELECTOR_XATTENTION_STRICT;
    for (int64_t w = 0; w < p->batch * p->hq; ++w)
        for (int64_t I = 0; I < n; ++I)
            for (int64_t J = 0; J < n; ++J) {
                const int64_t e = (w * n + I) * n + J;
                const double x = got[e], r = ref[e];
                if (J > I) {
                    const int ok = xattn ? x == 0.0 : (isinf(x) && x < 0);
                    if (!ok)
                        return diag_fail(d, "scores[b=%lld][h=%lld][%lld][%lld] = %.9g above the "
                                            "diagonal, expected %s",
                                         (long long)(w / p->hq), (long long)(w % p->hq),
                                         (long long)I, (long long)J, x, xattn ? "0" : "-inf");
                    continue;
                }
                if (!isfinite(x) || !isfinite(r))
                    return diag_fail(d, "scores[b=%lld][h=%lld][%lld][%lld] = %.9g (reference "
                                        "%.9g): expected a finite value",
                                     (long long)(w / p->hq), (long long)(w % p->hq), (long long)I,
                                     (long long)J, x, r);
                const double err = fabs(x - r), ratio = tol[e] > 0 ? err / tol[e] : (err > 0) * 1e30;
                if (ratio > d->worst)
                    d->worst = ratio;
                if (err > tol[e])
                    return diag_fail(d, "scores[b=%lld][h=%lld][%lld][%lld] = %.9g, reference "
                                        "%.9g, |diff| %.3g > tol %.3g",
                                     (long long)(w / p->hq), (long long)(w % p->hq), (long long)I,
                                     (long long)J, x, r, err, tol[e]);
            }
    return 0;
}

/* -------------------------------------------------------------- lists */

int conf_check_lists(const stem_ref_problem *p, int64_t n, const int32_t *index,
                     const int32_t *count, conf_diag *d)
{
    for (int64_t w = 0; w < p->batch * p->hq; ++w)
        for (int64_t I = 0; I < n; ++I) {
            const int32_t c = count[w * n + I];
            const int32_t *row = index + (w * n + I) * n;
            if (c < 1 || c > I + 1)
                return diag_fail(d, "count[b=%lld][h=%lld][%lld] = %d outside [1, %lld]",
                                 (long long)(w / p->hq), (long long)(w % p->hq), (long long)I, c,
                                 (long long)I + 1);
            for (int32_t j = 0; j < n; ++j) {
                const int ok = j < c ? row[j] >= 0 && row[j] <= I && (j == 0 || row[j] > row[j - 1])
                                     : row[j] == -1;
                if (!ok)
                    return diag_fail(d, "index[b=%lld][h=%lld][%lld][%d] = %d: %s",
                                     (long long)(w / p->hq), (long long)(w % p->hq), (long long)I,
                                     j, row[j],
                                     j < c ? "entries must be strictly ascending in [0, row]"
                                           : "entries past the count must be -1");
            }
            if (row[c - 1] != I)
                return diag_fail(d, "row [b=%lld][h=%lld][%lld] lacks its diagonal block",
                                 (long long)(w / p->hq), (long long)(w % p->hq), (long long)I);
        }
    return 0;
}

/* Scores of row I's candidates J <= I, ordered descending (ties: lower J). */
typedef struct cand {
    double s;
    int64_t j;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return x->j < y->j ? -1 : x->j > y->j;
}

static void format_row(char *buf, size_t size, const int32_t *row, int32_t c)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int32_t j = 0; j < c && at + 16 < size; ++j)
        at += (size_t)snprintf(buf + at, size - at, "%s%d", j ? "," : "", row[j]);
    if (at + 16 >= size)
        snprintf(buf + at, size - at, ",...");
}

void conf_xattn_rule_split(const stem_ref_problem *p, const stem_config *cfg, int64_t n,
                           const double *scores, long *lag, long *sink)
{
    unsigned char *a = calloc((size_t)n, 1), *b = calloc((size_t)n, 1);
    const double tau = (double)cfg->xattn_threshold;
    *lag = *sink = 0;
    for (int64_t w = 0; a && b && w < p->batch * p->hq; ++w)
        for (int64_t I = 2; I < n; ++I) {
            const double *s = scores + (w * n + I) * n;
            memset(a, 0, (size_t)n);
            memset(b, 0, (size_t)n);
            stem_ref_xattn_row(s, I, tau, 1, a);
            stem_ref_xattn_row(s, I, tau, 0, b);
            if (!memcmp(a, b, (size_t)(I + 1)))
                continue;
            /* block 0's rank among the candidates [0, I) (ties to the lower block,
             * so it is first among equals), and the mass its test sees */
            int64_t rank = 0;
            double before = 0.0, lowest = INFINITY;
            for (int64_t J = 1; J < I; ++J)
                if (s[J] > s[0]) {
                    ++rank;
                    before += s[J];
                    lowest = s[J] < lowest ? s[J] : lowest;
                }
            double total = 0.0;
            for (int64_t J = 0; J <= I; ++J)
                total += s[J];
            const double tested = rank == 0 ? 0.0 : s[I] + before - lowest;
            if (tested < tau * total)
                ++*lag;
            else
                ++*sink;
        }
    free(a);
    free(b);
}

int conf_compare_selection(const stem_ref_problem *p, const stem_config *cfg, int64_t n,
                           const int32_t *budget, int plan_dense, const double *scores,
                           const double *tol, const int32_t *want_index,
                           const int32_t *want_count, const int32_t *got_index,
                           const int32_t *got_count, conf_diag *d)
{
    unsigned char *want = calloc((size_t)n, 1), *got = calloc((size_t)n, 1);
    cand *order = malloc((size_t)n * sizeof *order);
    int64_t *rank = malloc((size_t)n * sizeof *rank);
    double *cum = malloc((size_t)(n + 1) * sizeof *cum);
    int rc = 0;
    if (!want || !got || !order || !rank || !cum) {
        rc = diag_fail(d, "compare_selection: out of memory");
        goto done;
    }
    const stem_selector sel = cfg->selector;
    const int xattn = sel == STEM_SELECTOR_XATTENTION || sel == STEM_SELECTOR_XATTENTION_STRICT;
    /* the official rule from key block 0 (no query offset here) */
    const int diag_only = sel == STEM_SELECTOR_XATTENTION;
    for (int64_t w = 0; w < p->batch * p->hq && !rc; ++w)
        for (int64_t I = 0; I < n && !rc; ++I) {
            const int32_t *wr = want_index + (w * n + I) * n, *gr = got_index + (w * n + I) * n;
            const int32_t wc = want_count[w * n + I], gc = got_count[w * n + I];
            const double *s = scores + (w * n + I) * n;
            const double *t = tol ? tol + (w * n + I) * n : NULL;
            memset(want, 0, (size_t)n);
            memset(got, 0, (size_t)n);
            for (int32_t j = 0; j < wc; ++j)
                want[wr[j]] = 1;
            for (int32_t j = 0; j < gc; ++j)
                got[gr[j]] = 1;
            int ndiff = 0;
            double maxtol = 0.0;
            for (int64_t J = 0; J <= I; ++J)
                if (want[J] != got[J]) {
                    ++ndiff;
                    if (t && t[J] > maxtol)
                        maxtol = t[J];
                }
            d->rows_sparse += gc < I + 1;
            if (ndiff == 0)
                continue;

            const int full = plan_dense || sel == STEM_SELECTOR_DENSE ||
                             (!xattn && budget[I] >= I + 1) || (xattn && I <= 1);
            const char *why = NULL;
            int64_t bad = -1;
            if (full) {
                why = "this row keeps every causal block";
            } else if (!xattn) {
                /* Top-k of budget[I]; sink and local blocks are forced. */
                const int64_t kb = budget[I];
                int64_t m = 0;
                for (int64_t J = 0; J <= I; ++J)
                    if (isfinite(s[J]))
                        order[m++] = (cand){s[J], J};
                qsort(order, (size_t)m, sizeof *order, cand_cmp);
                const int64_t at = kb <= m ? kb - 1 : m - 1;
                const double thr = order[at].s, tthr = t ? t[order[at].j] : 0.0;
                for (int64_t J = 0; J <= I && !why; ++J) {
                    if (want[J] == got[J])
                        continue;
                    bad = J;
                    const int forced = J < cfg->sink_blocks || J >= I - cfg->local_blocks + 1;
                    if (forced)
                        why = "a forced (sink or local) block differs";
                    else if (!t)
                        why = "selection differs from the reference on the same scores";
                    else if (!(fabs(s[J] - thr) <= t[J] + maxtol + tthr))
                        why = "block does not tie the top-k threshold within tolerance";
                }
                if (!why) {
                    int64_t nonforced = 0;
                    for (int32_t j = 0; j < gc; ++j)
                        nonforced += !(gr[j] < cfg->sink_blocks ||
                                       gr[j] >= I - cfg->local_blocks + 1);
                    if (nonforced > kb || gc < (kb < I + 1 ? kb : I + 1))
                        why = "kept block count inconsistent with the row budget";
                }
            } else {
                /* XAttention: strict: forced {0, I}, others (0, I) by mass;
                 * official from block 0: forced {I}, others [0, I), block 0
                 * kept anyway, the test of the r-th lags one candidate. */
                int64_t m = 0;
                double total = 0.0, atot = 0.0;
                for (int64_t J = 0; J <= I; ++J) {
                    total += s[J];
                    atot += fabs(s[J]);
                    if (J < I && (J > 0 || diag_only))
                        order[m++] = (cand){s[J], J};
                }
                qsort(order, (size_t)m, sizeof *order, cand_cmp);
                const double T = (double)cfg->xattn_threshold * total;
                double sumtol = 0.0;
                if (t)
                    for (int64_t J = 0; J <= I; ++J)
                        sumtol += t[J];
                const double eps = 8.0 * U32 * (double)(I + 1) * atot +
                                   sumtol * (1.0 + (double)cfg->xattn_threshold);
                /* cum[r]: the mass the candidate of rank r (0-based) is tested on */
                double run = diag_only ? s[I] : s[0] + s[I];
                for (int64_t r = 0; r < m; ++r) {
                    rank[order[r].j] = r;
                    cum[r] = !diag_only ? run : r == 0 ? 0.0 : run - order[r - 1].s;
                    run += order[r].s;
                }
                int64_t kept = 0;
                while (kept < m && cum[kept] < T)
                    ++kept;
                for (int64_t J = 0; J <= I && !why; ++J) {
                    if (want[J] == got[J])
                        continue;
                    bad = J;
                    if (J == 0 || J == I) {
                        why = diag_only ? "block 0 (always kept) or the diagonal differs"
                                        : "a forced block (0 or the diagonal) differs";
                        continue;
                    }
                    const int64_t r = rank[J];
                    /* cum[r] is the mass J is tested on in the reference order. */
                    const int near_mass = fabs(cum[r] - T) <= eps;
                    int near_tie = 0;
                    if (t) {
                        if (kept > 0 && fabs(s[J] - order[kept - 1].s) <= t[J] + maxtol)
                            near_tie = 1;
                        if (kept < m && fabs(s[J] - order[kept].s) <= t[J] + maxtol)
                            near_tie = 1;
                    }
                    if (!near_mass && !near_tie)
                        why = t ? "block is neither at the tau boundary nor tied with it"
                                : "selection differs from the reference on the same scores";
                }
            }
            if (!why)
                d->rows_tied++;
            if (why) {
                char a[400], b[400];
                format_row(a, sizeof a, gr, gc);
                format_row(b, sizeof b, wr, wc);
                rc = diag_fail(d,
                               "selection [b=%lld][h=%lld] row %lld (budget %d): %s (block %lld, "
                               "score %.9g); got {%s}, want {%s}",
                               (long long)(w / p->hq), (long long)(w % p->hq), (long long)I,
                               budget[I], why, (long long)bad, bad >= 0 ? s[bad] : 0.0, a, b);
            }
        }
done:
    free(want), free(got), free(order), free(rank), free(cum);
    return rc;
}

/* ----------------------------------------------------------- attention */

int conf_compare_attention(const stem_ref_problem *p, int32_t block_size, const int32_t *index,
                           const int32_t *count, const double *ref, const double *got,
                           stem_dtype in_dtype, stem_dtype out_dtype, int loose_p, conf_diag *d)
{
    const int64_t N = p->n_tokens, D = p->head_dim, n = ceil_div(N, block_size);
    const int64_t g = p->hq / p->hkv, nd = N * D;
    const double u_out = out_dtype == STEM_DTYPE_F16    ? 0x1.0p-11
                         : out_dtype == STEM_DTYPE_BF16 ? 0x1.0p-8
                                                        : U32;
    const double abs_out = out_dtype == STEM_DTYPE_F16 ? 0x1.0p-24 : 0.0; /* f16 subnormals */
    const double u_p = loose_p && in_dtype != STEM_DTYPE_F32
                           ? (in_dtype == STEM_DTYPE_F16 ? 0x1.0p-11 : 0x1.0p-8)
                           : 0.0;
    for (int64_t b = 0; b < p->batch; ++b)
        for (int64_t h = 0; h < p->hq; ++h) {
            const int64_t w = b * p->hq + h;
            const double *q = p->q + w * nd;
            const double *k = p->k + (b * p->hkv + h / g) * nd;
            const double *v = p->v + (b * p->hkv + h / g) * nd;
            double kmax = 0.0, vmax = 0.0;
            for (int64_t t = 0; t < N; ++t) {
                const double kn = row_norm(k + t * D, D);
                kmax = kn > kmax ? kn : kmax;
                for (int64_t c = 0; c < D; ++c)
                    vmax = fabs(v[t * D + c]) > vmax ? fabs(v[t * D + c]) : vmax;
            }
            for (int64_t i = 0; i < N; ++i) {
                const int64_t I = i / block_size;
                const int32_t c = count[w * n + I];
                const int32_t *row = index + (w * n + I) * n;
                int64_t vis = 0;
                for (int32_t j = 0; j < c; ++j) {
                    const int64_t J = row[j];
                    if (J < I)
                        vis += (J * block_size + block_size < N ? block_size : N - J * block_size);
                    else if (J == I)
                        vis += i - I * block_size + 1;
                }
                const double L = p->scale * row_norm(q + i * D, D) * kmax;
                const double base = vmax * (4.0 * U32 * sqrt((double)D) * L +
                                            SAFETY * U32 * sqrt((double)vis + 1.0) + u_p);
                for (int64_t col = 0; col < D; ++col) {
                    const int64_t e = w * nd + i * D + col;
                    const double x = got[e], r = ref[e];
                    if (!isfinite(x))
                        return diag_fail(d, "out[b=%lld][h=%lld][%lld][%lld] = %g is not finite",
                                         (long long)b, (long long)h, (long long)i,
                                         (long long)col, x);
                    if (vis == 0) {
                        if (x != 0.0)
                            return diag_fail(d, "out[b=%lld][h=%lld][%lld][%lld] = %g: a query "
                                                "with no visible key must give 0",
                                             (long long)b, (long long)h, (long long)i,
                                             (long long)col, x);
                        continue;
                    }
                    const double tl = 2.0 * u_out * fabs(r) + abs_out + base;
                    const double err = fabs(x - r);
                    if (err / tl > d->worst)
                        d->worst = err / tl;
                    if (err > tl)
                        return diag_fail(d, "out[b=%lld][h=%lld][%lld][%lld] = %.9g, reference "
                                            "%.9g, |diff| %.3g > tol %.3g (%lld visible keys)",
                                         (long long)b, (long long)h, (long long)i,
                                         (long long)col, x, r, err, tl, (long long)vis);
                }
            }
        }
    return 0;
}
