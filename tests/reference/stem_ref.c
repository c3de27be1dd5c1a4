/*
 * The shared reference for docs/semantics.md. Every formula is written the
 * way the document states it, in double, so a reader can check it line by
 * line; speed only matters through loop order (per-row work buffers, no
 * [N/S]^2 or [N]^2 matrices).
 *
 * Where the document leaves a detail open, the choice is noted at the spot
 * (search for "Choice:").
 */
#include "stem_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static double dot(const double *a, const double *b, int64_t d)
{
    double s = 0.0;
    for (int64_t x = 0; x < d; x++)
        s += a[x] * b[x];
    return s;
}

static double l2norm(const double *a, int64_t d)
{
    return sqrt(dot(a, a, d));
}

static void *xcalloc(int64_t count, size_t size)
{
    /* The reference has no error channel: a failed allocation is a broken test host. */
    void *p = calloc((size_t)(count > 0 ? count : 1), size);
    if (!p)
        abort();
    return p;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Row pointers into the contiguous [B][H][N][d] arrays. */
static const double *q_head(const stem_ref_problem *p, int64_t b, int64_t h)
{
    return p->q + ((b * p->hq + h) * p->n_tokens) * p->head_dim;
}

static const double *kv_head(const double *base, const stem_ref_problem *p, int64_t b, int64_t kh)
{
    return base + ((b * p->hkv + kh) * p->n_tokens) * p->head_dim;
}

/* ---------------------------------------------------------- blocks, budget */

int64_t stem_ref_num_blocks(int64_t n_tokens, int32_t block_size)
{
    if (n_tokens <= 0 || block_size <= 0)
        return 0;
    return (n_tokens + block_size - 1) / block_size;
}

static int layer_forced_dense(const stem_config *cfg, int32_t layer_index)
{
    return layer_index >= 0 && layer_index < cfg->dense_layers;
}

int32_t stem_ref_k_start(const stem_config *cfg, int64_t n_tokens, int32_t layer_index,
                         int *dense)
{
    const int64_t n = stem_ref_num_blocks(n_tokens, cfg->block_size);
    int64_t k = n;
    int is_dense = 0;

    if (layer_forced_dense(cfg, layer_index) || cfg->selector == STEM_SELECTOR_DENSE) {
        is_dense = 1;
    } else if (cfg->selector == STEM_SELECTOR_STEM || cfg->selector == STEM_SELECTOR_UNIFORM) {
        /* Choice: config.k_start replaces the whole rule, dense_below included
         * (only "k >= n: dense" still applies), so small problems can run sparse. */
        if (cfg->k_start > 0)
            k = cfg->k_start;
        else if (n < cfg->dense_below_blocks)
            is_dense = 1;
        else if (n < cfg->medium_below_blocks)
            k = (int64_t)floor(cfg->medium_rate * (double)n + (double)cfg->medium_bias);
        else
            k = (int64_t)floor(cfg->large_rate * (double)n) + cfg->large_bias;
        if (k >= n)
            is_dense = 1;
    } else if (cfg->selector == STEM_SELECTOR_STEM_PAPER) {
        if (cfg->k_start > 0) {
            k = cfg->k_start;
        } else {
            double rate = n_tokens <= cfg->paper_switch_tokens ? cfg->paper_short_rate
                                                               : cfg->paper_long_rate;
            k = (int64_t)floor(rate * (double)n);
            if (k < cfg->paper_min_blocks)
                k = cfg->paper_min_blocks;
        }
        if (k >= n)
            is_dense = 1;
    }
    /* XATTENTION has no k_start: it reports n and is dense only in a dense layer. */

    if (is_dense)
        k = n;
    if (dense)
        *dense = is_dense;
    return (int32_t)k;
}

/* torch.linspace(a, z, L)[j] in double: the two halves are computed from either end. */
static double linspace_at(double a, double z, int64_t L, int64_t j)
{
    if (L == 1)
        return a;
    double step = (z - a) / (double)(L - 1);
    if (j < L / 2)
        return a + step * (double)j;
    return z - step * (double)(L - 1 - j);
}

static int32_t clamp_budget(double x, int64_t lo, int64_t hi)
{
    /* x is already floored; compare in double so huge values cannot overflow a cast. */
    if (!(x >= (double)lo))
        return (int32_t)lo;
    if (x > (double)hi)
        return (int32_t)hi;
    return (int32_t)x;
}

int stem_ref_budget(const stem_config *cfg, int64_t n_tokens, int32_t layer_index,
                    int32_t *budget)
{
    const int64_t n = stem_ref_num_blocks(n_tokens, cfg->block_size);
    int dense = 0;
    const int64_t k = stem_ref_k_start(cfg, n_tokens, layer_index, &dense);
    const double mu = (double)cfg->mu;

    if (dense || cfg->selector == STEM_SELECTOR_XATTENTION ||
        cfg->selector == STEM_SELECTOR_XATTENTION_STRICT || cfg->selector == STEM_SELECTOR_DENSE) {
        for (int64_t I = 0; I < n; I++)
            budget[I] = (int32_t)n;
        return dense;
    }

    switch (cfg->selector) {
    case STEM_SELECTOR_STEM: {
        const int64_t L = n - k;
        const double k_end = mu * (double)k;
        for (int64_t I = 0; I < n; I++) {
            if (I < k)
                budget[I] = (int32_t)k;
            else
                budget[I] = clamp_budget(floor(linspace_at((double)k, k_end, L, I - k)), 1, k);
        }
        break;
    }
    case STEM_SELECTOR_STEM_PAPER:
        /* Eq. 3 over block rows, i = I + 1, N = n. */
        for (int64_t I = 0; I < n; I++) {
            double v = (double)k - (double)k * (1.0 - mu) * (double)(I + 1) / (double)n;
            budget[I] = clamp_budget(floor(v), 1, k);
        }
        break;
    case STEM_SELECTOR_UNIFORM: {
        double u = cfg->uniform_k > 0 ? (double)cfg->uniform_k
                                      : floor((double)k * (1.0 + mu) / 2.0 + 0.5);
        for (int64_t I = 0; I < n; I++)
            budget[I] = clamp_budget(u, 1, n);
        break;
    }
    default:
        for (int64_t I = 0; I < n; I++)
            budget[I] = (int32_t)n;
        break;
    }
    return 0;
}

double stem_ref_eq4_cost(int64_t n, int32_t k_start, double mu)
{
    const double N = (double)n, k = (double)k_start;
    return N * k - k * k / 2.0 - k * (1.0 - mu) * (N - k) / 2.0;
}

/* ------------------------------------------------------------------- scores */

/*
 * One strided row of the antidiagonal sums:
 *   A[m][c] = sum_{t<S} dot(Q[m*S + S-1-t], K[c*S + t]),  c in [0, cmax)
 * Rows at or past N are zero rows, so their terms are simply skipped.
 */
static void antidiag_row(const double *Q, const double *K, int64_t N, int64_t d, int64_t S,
                         int64_t m, int64_t cmax, double *arow)
{
    for (int64_t c = 0; c < cmax; c++)
        arow[c] = 0.0;
    for (int64_t t = 0; t < S; t++) {
        const int64_t qi = m * S + S - 1 - t;
        if (qi >= N)
            continue;
        const double *qrow = Q + qi * d;
        for (int64_t c = 0; c < cmax; c++) {
            const int64_t ki = c * S + t;
            if (ki >= N)
                break; /* ki grows with c */
            arow[c] += dot(qrow, K + ki * d, d);
        }
    }
}

/* STEM value bonus (section 2): z-scored log of stride-group maxima of ||V||. */
static void value_bonus_stem(const double *V, int64_t N, int64_t d, int64_t S, int64_t G,
                             int64_t n, double beta, double *vb)
{
    const int64_t ngroups = n * G;
    double *lv = xcalloc(ngroups, sizeof(double));
    for (int64_t gi = 0; gi < ngroups; gi++) {
        double mx = 0.0; /* vn[t] = 0 past N, and norms are >= 0 */
        for (int64_t t = gi * S; t < gi * S + S; t++) {
            double vn = t < N ? l2norm(V + t * d, d) : 0.0;
            if (vn > mx)
                mx = vn;
        }
        lv[gi] = log(mx + 1e-6);
    }

    const int64_t Gv = N / S;
    if (Gv == 0) {
        for (int64_t J = 0; J < n; J++)
            vb[J] = 0.0;
        free(lv);
        return;
    }
    double mean = 0.0;
    for (int64_t gi = 0; gi < Gv; gi++)
        mean += lv[gi];
    mean /= (double)Gv;
    double sd = 0.0;
    if (Gv > 1) {
        double ss = 0.0;
        for (int64_t gi = 0; gi < Gv; gi++)
            ss += (lv[gi] - mean) * (lv[gi] - mean);
        sd = sqrt(ss / (double)(Gv - 1));
    }
    for (int64_t J = 0; J < n; J++) {
        double acc = 0.0;
        for (int64_t a = 0; a < G; a++) {
            double z = (lv[J * G + a] - mean) / (sd + 1e-6);
            acc += beta * (z > 0.0 ? z : 0.0);
        }
        vb[J] = (1.0 / (double)G) * acc;
    }
    free(lv);
}

/* STEM_PAPER value bonus: beta * max(0, log(block max of ||V|| + 1e-6)). */
static void value_bonus_paper(const double *V, int64_t N, int64_t d, int64_t Bk, int64_t n,
                              double beta, double *vb)
{
    for (int64_t J = 0; J < n; J++) {
        double mx = 0.0;
        for (int64_t t = J * Bk; t < min64(N, J * Bk + Bk); t++) {
            double vn = l2norm(V + t * d, d);
            if (vn > mx)
                mx = vn;
        }
        double lv = log(mx + 1e-6);
        vb[J] = beta * (lv > 0.0 ? lv : 0.0);
    }
}

void stem_ref_scores(const stem_ref_problem *p, const stem_config *cfg, double *scores)
{
    const int64_t N = p->n_tokens, d = p->head_dim;
    const int64_t Bk = cfg->block_size, S = cfg->stride, G = Bk / S;
    const int64_t n = stem_ref_num_blocks(N, cfg->block_size);
    const int64_t group = p->hq / p->hkv;
    const double norm = (double)cfg->norm;
    const double beta = (double)cfg->beta;
    if (n == 0)
        return;

    double *arow = xcalloc(n * G, sizeof(double));
    double *acc = xcalloc(n * n, sizeof(double));
    double *vb = xcalloc(n, sizeof(double));

    for (int64_t b = 0; b < p->batch; b++) {
        for (int64_t h = 0; h < p->hq; h++) {
            const int64_t kh = h / group;
            const double *Q = q_head(p, b, h);
            const double *K = kv_head(p->k, p, b, kh);
            const double *V = kv_head(p->v, p, b, kh);
            double *L = scores + (b * p->hq + h) * n * n;
            memset(acc, 0, (size_t)(n * n) * sizeof(double));

            if (cfg->selector == STEM_SELECTOR_XATTENTION ||
                cfg->selector == STEM_SELECTOR_XATTENTION_STRICT) {
                /* W[I][J] = sum of P[m][c] over the block's real strided rows m (m*S < N). */
                for (int64_t m = 0; m * S < N; m++) {
                    const int64_t I = m / G;
                    antidiag_row(Q, K, N, d, S, m, m + 1, arow); /* c <= m */
                    double mx = -INFINITY;
                    for (int64_t c = 0; c <= m; c++) {
                        arow[c] = arow[c] * p->scale / ((double)S * norm);
                        if (arow[c] > mx)
                            mx = arow[c];
                    }
                    double sum = 0.0;
                    for (int64_t c = 0; c <= m; c++) {
                        arow[c] = exp(arow[c] - mx);
                        sum += arow[c];
                    }
                    for (int64_t c = 0; c <= m; c++)
                        acc[I * n + c / G] += arow[c] / sum;
                }
                for (int64_t I = 0; I < n; I++)
                    for (int64_t J = 0; J < n; J++)
                        L[I * n + J] = J <= I ? acc[I * n + J] : 0.0;
                continue;
            }

            /* Routing sums: acc[I][J] = sum_{a<G, b<G} A[I*G + a][J*G + b], J <= I. */
            for (int64_t m = 0; m < n * G; m++) {
                if (m * S >= N)
                    break; /* every query row of this strided row is a zero row */
                const int64_t I = m / G;
                const int64_t cmax = (I + 1) * G;
                antidiag_row(Q, K, N, d, S, m, cmax, arow);
                for (int64_t c = 0; c < cmax; c++)
                    acc[I * n + c / G] += arow[c];
            }

            switch (cfg->selector) {
            case STEM_SELECTOR_STEM:
            case STEM_SELECTOR_DENSE: /* DENSE writes the STEM scores */
                value_bonus_stem(V, N, d, S, G, n, beta, vb);
                break;
            case STEM_SELECTOR_STEM_PAPER:
                value_bonus_paper(V, N, d, Bk, n, beta, vb);
                break;
            default: /* UNIFORM: routing only */
                for (int64_t J = 0; J < n; J++)
                    vb[J] = 0.0;
                break;
            }

            const double rscale = p->scale / ((double)S * norm * (double)(G * G));
            for (int64_t I = 0; I < n; I++)
                for (int64_t J = 0; J < n; J++)
                    L[I * n + J] = J <= I ? rscale * acc[I * n + J] + vb[J] : -INFINITY;
        }
    }
    free(arow);
    free(acc);
    free(vb);
}

/* ---------------------------------------------------------------- selection */

typedef struct cand {
    double v;
    int64_t j;
} cand;

/* Descending value, ties to the lower index; NaN sorts after everything. */
static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    const int an = isnan(a->v), bn = isnan(b->v);
    if (an != bn)
        return an ? 1 : -1;
    if (!an) {
        if (a->v > b->v)
            return -1;
        if (a->v < b->v)
            return 1;
    }
    return (a->j > b->j) - (a->j < b->j);
}

/* STEM / STEM_PAPER / UNIFORM row I (not dense): top-k of finite scores + forced blocks. */
static void select_topk_row(const double *row, int64_t I, int64_t k, const stem_config *cfg,
                            cand *cands, unsigned char *keep)
{
    if (I + 1 <= k) {
        for (int64_t J = 0; J <= I; J++)
            keep[J] = 1;
        return;
    }
    /* Choice: only finite scores are candidates ("the largest finite L"), so +inf
     * is never chosen either, like NaN and -inf. */
    int64_t nc = 0;
    for (int64_t J = 0; J <= I; J++) {
        if (isfinite(row[J])) {
            cands[nc].v = row[J];
            cands[nc].j = J;
            nc++;
        }
    }
    qsort(cands, (size_t)nc, sizeof(cand), cand_cmp);
    for (int64_t r = 0; r < nc && r < k; r++)
        keep[cands[r].j] = 1;
    for (int64_t J = 0; J < cfg->sink_blocks && J <= I; J++)
        keep[J] = 1;
    for (int64_t J = I - cfg->local_blocks + 1; J <= I; J++)
        if (J >= 0)
            keep[J] = 1;
}

/* XATTENTION threshold rule, row I of W (section 5). diag_only: the official
 * rule for rows that start at key block 0 (only I forced, the running mass
 * lags one block more, block 0 kept anyway); otherwise blocks 0 and I forced
 * (the strict rule, and the official rule with a query offset). */
void stem_ref_xattn_row(const double *W, int64_t I, double tau, int diag_only,
                        unsigned char *keep)
{
    cand *cands = xcalloc(I + 1, sizeof(cand));
    double *w = xcalloc(I + 1, sizeof(double));
    for (int64_t J = 0; J <= I; J++)
        w[J] = isnan(W[J]) ? 0.0 : W[J]; /* a NaN mass counts as 0 */
    keep[I] = 1;
    if (!diag_only)
        keep[0] = 1;
    const double F = diag_only || I == 0 ? w[I] : w[0] + w[I];
    double total = 0.0;
    for (int64_t J = 0; J <= I; J++)
        total += w[J];
    const double T = tau * total;

    int64_t nc = 0;
    for (int64_t J = diag_only ? 0 : 1; J < I; J++) {
        cands[nc].v = w[J];
        cands[nc].j = J;
        nc++;
    }
    qsort(cands, (size_t)nc, sizeof(cand), cand_cmp);
    /* Tested for every r as written (masses may be negative here):
     * strict:    keep o_r iff F + W(o_1) + ... + W(o_{r-1}) < T
     * diag_only: keep o_1 iff 0 < T; o_r (r >= 2) iff F + W(o_1) + ... + W(o_{r-2}) < T */
    double *cum = xcalloc(nc + 1, sizeof(double)); /* cum[q] = F + W(o_1) + ... + W(o_q) */
    cum[0] = F;
    for (int64_t q = 1; q <= nc; q++)
        cum[q] = cum[q - 1] + cands[q - 1].v;
    for (int64_t r = 1; r <= nc; r++) {
        const double before = !diag_only ? cum[r - 1] : r == 1 ? 0.0 : cum[r - 2];
        if (before < T)
            keep[cands[r - 1].j] = 1;
    }
    if (diag_only)
        keep[0] = 1;
    free(cum);
    free(cands);
    free(w);
}

void stem_ref_select(const stem_ref_problem *p, const stem_config *cfg, const double *scores,
                     int32_t *index, int32_t *count)
{
    const int64_t n = stem_ref_num_blocks(p->n_tokens, cfg->block_size);
    if (n == 0)
        return;
    int32_t *budget = xcalloc(n, sizeof(int32_t));
    const int dense = stem_ref_budget(cfg, p->n_tokens, p->layer_index, budget);
    unsigned char *keep = xcalloc(n, 1);
    cand *cands = xcalloc(n, sizeof(cand));
    const double tau = (double)cfg->xattn_threshold;

    for (int64_t b = 0; b < p->batch; b++) {
        for (int64_t h = 0; h < p->hq; h++) {
            const int64_t bh = b * p->hq + h;
            for (int64_t I = 0; I < n; I++) {
                const double *row = scores + (bh * n + I) * n;
                memset(keep, 0, (size_t)n);
                if (dense || cfg->selector == STEM_SELECTOR_DENSE) {
                    for (int64_t J = 0; J <= I; J++)
                        keep[J] = 1;
                } else if (cfg->selector == STEM_SELECTOR_XATTENTION ||
                           cfg->selector == STEM_SELECTOR_XATTENTION_STRICT) {
                    /* rows start at key block 0 (no query offset) */
                    stem_ref_xattn_row(row, I, tau, cfg->selector == STEM_SELECTOR_XATTENTION,
                                       keep);
                } else {
                    select_topk_row(row, I, budget[I], cfg, cands, keep);
                }
                int32_t *list = index + (bh * n + I) * n;
                int64_t c = 0;
                for (int64_t J = 0; J <= I; J++)
                    if (keep[J])
                        list[c++] = (int32_t)J;
                count[bh * n + I] = (int32_t)c;
                for (int64_t r = c; r < n; r++)
                    list[r] = -1;
            }
        }
    }
    free(budget);
    free(keep);
    free(cands);
}

/* ---------------------------------------------------------------- attention */

void stem_ref_attention(const stem_ref_problem *p, int32_t block_size, const int32_t *index,
                        const int32_t *count, double *out)
{
    const int64_t N = p->n_tokens, d = p->head_dim, Bk = block_size;
    const int64_t n = stem_ref_num_blocks(N, block_size);
    const int64_t group = p->hq / p->hkv;
    if (n == 0)
        return;

    unsigned char *keep = xcalloc(n, 1);
    double *logit = xcalloc(N, sizeof(double));
    int64_t *key = xcalloc(N, sizeof(int64_t));
    double *acc = xcalloc(d, sizeof(double));

    for (int64_t b = 0; b < p->batch; b++) {
        for (int64_t h = 0; h < p->hq; h++) {
            const int64_t bh = b * p->hq + h;
            const int64_t kh = h / group;
            const double *Q = q_head(p, b, h);
            const double *K = kv_head(p->k, p, b, kh);
            const double *V = kv_head(p->v, p, b, kh);
            double *O = out + bh * N * d;

            for (int64_t I = 0; I < n; I++) {
                /* Choice: the list is read as a set; entries outside [0, I] are skipped
                 * (valid lists, the only ones the contract allows, are unaffected). */
                memset(keep, 0, (size_t)n);
                int64_t cnt = count[bh * n + I];
                if (cnt < 0)
                    cnt = 0;
                if (cnt > n)
                    cnt = n;
                const int32_t *list = index + (bh * n + I) * n;
                for (int64_t r = 0; r < cnt; r++)
                    if (list[r] >= 0 && list[r] <= I)
                        keep[list[r]] = 1;

                for (int64_t i = I * Bk; i < min64(N, I * Bk + Bk); i++) {
                    /* visible keys: j <= i in a kept block */
                    int64_t nv = 0;
                    double mx = -INFINITY;
                    for (int64_t J = 0; J <= I; J++) {
                        if (!keep[J])
                            continue;
                        const int64_t jend = min64(min64(N, J * Bk + Bk), i + 1);
                        for (int64_t j = J * Bk; j < jend; j++) {
                            logit[nv] = p->scale * dot(Q + i * d, K + j * d, d);
                            key[nv] = j;
                            if (logit[nv] > mx)
                                mx = logit[nv];
                            nv++;
                        }
                    }
                    double *o = O + i * d;
                    if (nv == 0) {
                        for (int64_t x = 0; x < d; x++)
                            o[x] = 0.0;
                        continue;
                    }
                    double sum = 0.0;
                    for (int64_t x = 0; x < d; x++)
                        acc[x] = 0.0;
                    for (int64_t r = 0; r < nv; r++) {
                        const double e = exp(logit[r] - mx);
                        const double *vrow = V + key[r] * d;
                        sum += e;
                        for (int64_t x = 0; x < d; x++)
                            acc[x] += e * vrow[x];
                    }
                    for (int64_t x = 0; x < d; x++)
                        o[x] = acc[x] / sum;
                }
            }
        }
    }
    free(keep);
    free(logit);
    free(key);
    free(acc);
}

/* ------------------------------------------- chunked / prefix-cached calls */

int64_t stem_ref_call_rows(const stem_ref_call *c, int32_t block_size, int64_t *row0,
                           int64_t *nk)
{
    const int64_t P = c->kv_len - c->q_len;
    const int64_t n = stem_ref_num_blocks(c->kv_len, block_size);
    const int64_t r0 = P / block_size;
    if (row0)
        *row0 = r0;
    if (nk)
        *nk = n;
    return n - r0;
}

/* Query row of absolute position p, or NULL when p is not one of the call's queries. */
static const double *call_q(const stem_ref_call *c, int64_t b, int64_t h, int64_t p)
{
    const int64_t P = c->kv_len - c->q_len;
    if (p < P || p >= c->kv_len)
        return NULL;
    return c->q + (((b * c->hq + h) * c->q_len) + (p - P)) * c->head_dim;
}

static const double *call_kv(const stem_ref_call *c, const double *base, int64_t b, int64_t kh)
{
    return base + ((b * c->hkv + kh) * c->kv_len) * c->head_dim;
}

void stem_ref_call_scores(const stem_ref_call *c, const stem_config *cfg, double *scores,
                          double *vstats_out)
{
    const int64_t L = c->kv_len, d = c->head_dim;
    const int64_t Bk = cfg->block_size, S = cfg->stride, G = Bk / S;
    int64_t row0, n;
    const int64_t rows = stem_ref_call_rows(c, cfg->block_size, &row0, &n);
    const int64_t group = c->hq / c->hkv;
    const double norm = (double)cfg->norm, beta = (double)cfg->beta;
    if (n == 0)
        return;
    double *vb = xcalloc(n, sizeof(double));
    double *lv = xcalloc(n * G, sizeof(double));
    for (int64_t b = 0; b < c->batch; b++) {
        for (int64_t h = 0; h < c->hq; h++) {
            const int64_t kh = h / group;
            const double *K = call_kv(c, c->k, b, kh), *V = call_kv(c, c->v, b, kh);
            /* Value bonus over the visible keys [0, L) (section 2 with N = L), or
             * with the caller's statistics. */
            for (int64_t J = 0; J < n; J++)
                vb[J] = 0.0;
            if (cfg->selector == STEM_SELECTOR_STEM || cfg->selector == STEM_SELECTOR_DENSE) {
                for (int64_t gi = 0; gi < n * G; gi++) {
                    double mx = 0.0;
                    for (int64_t t = gi * S; t < gi * S + S; t++) {
                        const double vn = t < L ? l2norm(V + t * d, d) : 0.0;
                        if (vn > mx)
                            mx = vn;
                    }
                    lv[gi] = log(mx + 1e-6);
                }
                const int64_t Gv = L / S;
                double mean = 0.0, sd = 0.0;
                if (c->vstats) {
                    mean = c->vstats[(b * c->hkv + kh) * 2];
                    sd = c->vstats[(b * c->hkv + kh) * 2 + 1];
                } else if (Gv > 0) {
                    for (int64_t gi = 0; gi < Gv; gi++)
                        mean += lv[gi];
                    mean /= (double)Gv;
                    if (Gv > 1) {
                        double ss = 0.0;
                        for (int64_t gi = 0; gi < Gv; gi++)
                            ss += (lv[gi] - mean) * (lv[gi] - mean);
                        sd = sqrt(ss / (double)(Gv - 1));
                    }
                }
                if (vstats_out && h % group == 0) {
                    vstats_out[(b * c->hkv + kh) * 2] = mean;
                    vstats_out[(b * c->hkv + kh) * 2 + 1] = sd;
                }
                /* Choice: provided statistics apply even when no full group is visible. */
                if (c->vstats || Gv > 0)
                    for (int64_t J = 0; J < n; J++) {
                        double acc = 0.0;
                        for (int64_t a = 0; a < G; a++) {
                            const double z = (lv[J * G + a] - mean) / (sd + 1e-6);
                            acc += beta * (z > 0.0 ? z : 0.0);
                        }
                        vb[J] = acc / (double)G;
                    }
            } else if (cfg->selector == STEM_SELECTOR_STEM_PAPER) {
                value_bonus_paper(V, L, d, Bk, n, beta, vb);
            }
            const double rscale = c->scale / ((double)S * norm * (double)(G * G));
            for (int64_t r = 0; r < rows; r++) {
                const int64_t I = row0 + r;
                double *out = scores + ((b * c->hq + h) * rows + r) * n;
                for (int64_t J = 0; J < n; J++) {
                    if (J > I) {
                        out[J] = -INFINITY;
                        continue;
                    }
                    /* sum over a < G, b < G of A[I*G + a][J*G + b], absolute strided
                     * coordinates; absent query positions are zero rows. */
                    double acc = 0.0;
                    for (int64_t a = 0; a < G; a++) {
                        const int64_t m = I * G + a;
                        for (int64_t bb = 0; bb < G; bb++) {
                            const int64_t cc = J * G + bb;
                            for (int64_t t = 0; t < S; t++) {
                                const double *qr = call_q(c, b, h, m * S + S - 1 - t);
                                const int64_t ki = cc * S + t;
                                if (qr && ki < L)
                                    acc += dot(qr, K + ki * d, d);
                            }
                        }
                    }
                    out[J] = rscale * acc + vb[J];
                }
            }
        }
    }
    free(vb);
    free(lv);
}

void stem_ref_call_select(const stem_ref_call *c, const stem_config *cfg, const double *scores,
                          int32_t *index, int32_t *count)
{
    int64_t row0, n;
    const int64_t rows = stem_ref_call_rows(c, cfg->block_size, &row0, &n);
    const int64_t np = stem_ref_num_blocks(c->prompt_len, cfg->block_size);
    if (n == 0)
        return;
    /* The budget of absolute row I comes from the prompt's schedule. */
    int32_t *budget = xcalloc(np, sizeof(int32_t));
    const int dense = stem_ref_budget(cfg, c->prompt_len, c->layer_index, budget);
    unsigned char *keep = xcalloc(n, 1);
    cand *cands = xcalloc(n, sizeof(cand));
    for (int64_t bh = 0; bh < c->batch * c->hq; bh++)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t I = row0 + r;
            const double *row = scores + (bh * rows + r) * n;
            memset(keep, 0, (size_t)n);
            if (dense || cfg->selector == STEM_SELECTOR_DENSE) {
                for (int64_t J = 0; J <= I; J++)
                    keep[J] = 1;
            } else {
                select_topk_row(row, I, budget[I], cfg, cands, keep);
            }
            int32_t *list = index + (bh * rows + r) * n;
            int64_t k = 0;
            for (int64_t J = 0; J <= I; J++)
                if (keep[J])
                    list[k++] = (int32_t)J;
            count[bh * rows + r] = (int32_t)k;
            for (int64_t x = k; x < n; x++)
                list[x] = -1;
        }
    free(budget);
    free(keep);
    free(cands);
}

void stem_ref_call_attention(const stem_ref_call *c, int32_t block_size, const int32_t *index,
                             const int32_t *count, double *out, double *lse)
{
    const int64_t L = c->kv_len, M = c->q_len, P = L - M, d = c->head_dim, Bk = block_size;
    int64_t row0, n;
    const int64_t rows = stem_ref_call_rows(c, block_size, &row0, &n);
    const int64_t group = c->hq / c->hkv;
    unsigned char *keep = xcalloc(n, 1);
    double *logit = xcalloc(L, sizeof(double));
    int64_t *key = xcalloc(L, sizeof(int64_t));
    double *acc = xcalloc(d, sizeof(double));
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++) {
            const int64_t bh = b * c->hq + h;
            const double *K = call_kv(c, c->k, b, h / group), *V = call_kv(c, c->v, b, h / group);
            for (int64_t i = 0; i < M; i++) {
                const int64_t p = P + i, I = p / Bk, r = I - row0;
                memset(keep, 0, (size_t)n);
                int64_t cnt = count[bh * rows + r];
                cnt = cnt < 0 ? 0 : cnt > n ? n : cnt;
                for (int64_t x = 0; x < cnt; x++) {
                    const int32_t J = index[(bh * rows + r) * n + x];
                    if (J >= 0 && J <= I)
                        keep[J] = 1;
                }
                const double *qr = call_q(c, b, h, p);
                int64_t nv = 0;
                double mx = -INFINITY;
                for (int64_t j = 0; j <= p; j++) {
                    if (!keep[j / Bk])
                        continue;
                    logit[nv] = c->scale * dot(qr, K + j * d, d);
                    key[nv] = j;
                    if (logit[nv] > mx)
                        mx = logit[nv];
                    nv++;
                }
                double *o = out + (bh * M + i) * d;
                if (nv == 0) {
                    for (int64_t x = 0; x < d; x++)
                        o[x] = 0.0;
                    if (lse)
                        lse[bh * M + i] = -INFINITY;
                    continue;
                }
                double sum = 0.0;
                for (int64_t x = 0; x < d; x++)
                    acc[x] = 0.0;
                for (int64_t t = 0; t < nv; t++) {
                    const double e = exp(logit[t] - mx);
                    sum += e;
                    for (int64_t x = 0; x < d; x++)
                        acc[x] += e * V[key[t] * d + x];
                }
                for (int64_t x = 0; x < d; x++)
                    o[x] = acc[x] / sum;
                if (lse)
                    lse[bh * M + i] = mx + log(sum);
            }
        }
    free(keep);
    free(logit);
    free(key);
    free(acc);
}

/* ---------------------------------------- varlen batches and paged KV */

int64_t stem_ref_seqs_rows(const stem_ref_seqs *s, int32_t block_size, int64_t *row_ptr)
{
    int64_t R = 0;
    for (int64_t b = 0; b < s->batch; b++) {
        row_ptr[b] = R;
        const int64_t M = s->cu_q[b + 1] - s->cu_q[b], L = s->kv_len[b];
        if (M > 0)
            R += stem_ref_num_blocks(L, block_size) - (L - M) / block_size;
    }
    row_ptr[s->batch] = R;
    return R;
}

/* Key (or value) t of sequence b, KV head kh, through the sequence's store. */
static const double *seq_key(const stem_ref_seqs *s, const double *base, int64_t b, int64_t kh,
                             int64_t t)
{
    const int64_t d = s->head_dim;
    switch (s->kv_store) {
    case STEM_KV_PACKED:
        return base + (kh * s->kv_rows + s->cu_kv[b] + t) * d;
    case STEM_KV_PAGED: {
        const int64_t page = s->block_table[b * s->table_cols + t / s->page_size];
        return base + ((page * s->hkv + kh) * s->page_size + t % s->page_size) * d;
    }
    default:
        return base + ((b * s->hkv + kh) * s->kv_rows + t) * d;
    }
}

void stem_ref_seqs_prefill(const stem_ref_seqs *s, const stem_config *cfg, int64_t width,
                           double *scores, int32_t *index, int32_t *count, double *out,
                           double *lse, double *vstats_out)
{
    const int64_t d = s->head_dim, T = s->cu_q[s->batch];
    int64_t *row_ptr = xcalloc(s->batch + 1, sizeof(int64_t));
    const int64_t R = stem_ref_seqs_rows(s, cfg->block_size, row_ptr);
    for (int64_t b = 0; b < s->batch; b++) {
        const int64_t q0 = s->cu_q[b], M = s->cu_q[b + 1] - q0, L = s->kv_len[b];
        if (M == 0)
            continue;
        const int64_t N = s->prompt_len && s->prompt_len[b] ? s->prompt_len[b] : L;
        double *q = xcalloc(s->hq * M * d, sizeof(double));
        double *k = xcalloc(s->hkv * L * d, sizeof(double));
        double *v = xcalloc(s->hkv * L * d, sizeof(double));
        for (int64_t h = 0; h < s->hq; h++)
            memcpy(q + h * M * d, s->q + (h * T + q0) * d, (size_t)(M * d) * sizeof(double));
        for (int64_t kh = 0; kh < s->hkv; kh++)
            for (int64_t t = 0; t < L; t++) {
                memcpy(k + (kh * L + t) * d, seq_key(s, s->k, b, kh, t), (size_t)d * sizeof(double));
                memcpy(v + (kh * L + t) * d, seq_key(s, s->v, b, kh, t), (size_t)d * sizeof(double));
            }
        stem_ref_call c = {1, s->hq, s->hkv, d, M, L, N, s->scale, s->layer_index, q, k, v,
                           s->vstats ? s->vstats + b * s->hkv * 2 : NULL};
        int64_t row0, nk;
        const int64_t rows = stem_ref_call_rows(&c, cfg->block_size, &row0, &nk);
        double *sc = xcalloc(s->hq * rows * nk, sizeof(double));
        int32_t *ix = xcalloc(s->hq * rows * nk, sizeof(int32_t));
        int32_t *cn = xcalloc(s->hq * rows, sizeof(int32_t));
        double *o = xcalloc(s->hq * M * d, sizeof(double));
        double *ls = xcalloc(s->hq * M, sizeof(double));
        double vs[2 * 64] = {0};
        double *vso = s->hkv <= 64 ? vs : xcalloc(s->hkv * 2, sizeof(double));
        stem_ref_call_scores(&c, cfg, sc, vso);
        stem_ref_call_select(&c, cfg, sc, ix, cn);
        stem_ref_call_attention(&c, cfg->block_size, ix, cn, o, ls);
        for (int64_t h = 0; h < s->hq; h++) {
            for (int64_t r = 0; r < rows; r++) {
                const int64_t dst = h * R + row_ptr[b] + r, src = h * rows + r;
                if (scores)
                    memcpy(scores + dst * width, sc + src * nk, (size_t)nk * sizeof(double));
                memcpy(index + dst * width, ix + src * nk, (size_t)nk * sizeof(int32_t));
                count[dst] = cn[src];
            }
            memcpy(out + (h * T + q0) * d, o + h * M * d, (size_t)(M * d) * sizeof(double));
            if (lse)
                memcpy(lse + h * T + q0, ls + h * M, (size_t)M * sizeof(double));
        }
        if (vstats_out)
            memcpy(vstats_out + b * s->hkv * 2, vso, (size_t)(s->hkv * 2) * sizeof(double));
        if (vso != vs)
            free(vso);
        free(q), free(k), free(v), free(sc), free(ix), free(cn), free(o), free(ls);
    }
    free(row_ptr);
}
