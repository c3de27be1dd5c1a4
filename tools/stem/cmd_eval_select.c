/* stem eval: block choices made on the host (test only, never library
 * selectors). The ORACLE keeps the key blocks that hold the most true
 * softmax mass under the budget of the configuration it mirrors, so the
 * block estimator's quality is separated from the budget allocation; the
 * estimator variants (max pooling, XAttention's row softmax) keep Stem's
 * budget; the adaptive variants replace the budget by a per-row mass
 * threshold. No libstem calls here (tests/tool links this file alone). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_eval.h"

/* Strided antidiagonal logit of query group qa and key group c (absolute
 * group indices, `stride` rows each), scaled as Stem's; -inf when either
 * group lies wholly past the rows. */
static double group_logit(const float *qh, const float *kh, int d, int64_t rows, int stride,
                          int64_t qa, int64_t c, float scale)
{
    double s = 0.0;
    int any = 0;
    for (int t = 0; t < stride; t++) {
        const int64_t qr = qa * stride + (stride - 1 - t), kr = c * stride + t;
        if (qr >= rows || kr >= rows) continue;
        any = 1;
        const float *x = qh + qr * d, *y = kh + kr * d;
        float s8[8] = {0};
        for (int i = 0; i + 8 <= d; i += 8)
            for (int u = 0; u < 8; u++) s8[u] += x[i + u] * y[i + u];
        s += (s8[0] + s8[1] + s8[2] + s8[3]) + (s8[4] + s8[5] + s8[6] + s8[7]);
    }
    return any ? s * scale / stride : -INFINITY;
}

/* Max-pooled antidiagonal score of key block J for query block I: Stem's
 * strided antidiagonal dot products, scaled as Stem's, maxed instead of
 * averaged over the G x G group pairs, so one strong key group is not
 * diluted by its block. */
static double maxpool_score(const float *qh, const float *kh, int d, int64_t rows, int block,
                            int stride, int64_t I, int64_t J, float scale)
{
    double best = -INFINITY;
    const int G = block / stride;
    for (int a = 0; a < G; a++)
        for (int b = 0; b < G; b++) {
            const double s = group_logit(qh, kh, d, rows, stride, I * G + a, J * G + b, scale);
            if (s > best) best = s;
        }
    return best;
}

/* XAttention's estimator under Stem's budget: each strided query row of
 * block I takes a softmax over every strided key group it may see (causal:
 * groups c <= its own), and a key block's score is the probability mass its
 * groups receive, summed over the block's strided rows. A needle that one
 * row attends to strongly keeps its block even where the block's mean
 * logit is low. `lg` holds (I + 1) * block / stride logits. */
static void rowsoftmax_mass(const float *qh, const float *kh, int d, int64_t rows, int block,
                            int stride, int64_t I, float scale, double *lg, double *mass)
{
    const int G = block / stride;
    for (int64_t J = 0; J <= I; J++) mass[J] = 0.0;
    for (int a = 0; a < G; a++) {
        const int64_t qa = I * G + a;
        if (qa * stride >= rows) break;
        double mx = -INFINITY;
        for (int64_t c = 0; c <= qa; c++) {
            lg[c] = group_logit(qh, kh, d, rows, stride, qa, c, scale);
            mx = lg[c] > mx ? lg[c] : mx;
        }
        double z = 0.0;
        for (int64_t c = 0; c <= qa; c++) z += exp(lg[c] - mx);
        for (int64_t c = 0; c <= qa; c++) mass[c / G] += exp(lg[c] - mx) / z;
    }
}

/* Descending by value, ties by lower index (qsort's order is not stable). */
typedef struct scored_block {
    double p;
    int32_t j;
} scored_block;

static int by_mass_desc(const void *a, const void *b)
{
    const scored_block *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->j < y->j ? -1 : x->j > y->j;
}

/* Row I keeps the fewest key blocks whose softmax over logit[0..I] reaches
 * tau (largest first; ties: lower index), plus sink and local blocks;
 * writes the ascending list to out (-1 padded to nq), returns the count. */
static int32_t keep_by_mass(const double *logit, int64_t I, int64_t nq, double tau, int sink,
                            int local, scored_block *sb, char *keep, int32_t *out)
{
    if (I < 0) return 0;
    double mx = -INFINITY, z = 0.0;
    for (int64_t J = 0; J <= I; J++) mx = logit[J] > mx ? logit[J] : mx;
    for (int64_t J = 0; J <= I; J++) {
        sb[J].p = isfinite(mx) ? exp(logit[J] - mx) : 1.0;
        sb[J].j = (int32_t)J;
        z += sb[J].p;
    }
    qsort(sb, (size_t)(I + 1), sizeof *sb, by_mass_desc);
    memset(keep, 0, (size_t)(I + 1));
    double acc = 0.0;
    for (int64_t r = 0; r <= I && acc < tau * z; r++) {
        keep[sb[r].j] = 1;
        acc += sb[r].p;
    }
    for (int64_t J = 0; J < sink && J <= I; J++) keep[J] = 1;
    for (int64_t J = I - local + 1 > 0 ? I - local + 1 : 0; J <= I; J++) keep[J] = 1;
    int32_t c = 0;
    for (int64_t J = 0; J <= I; J++)
        if (keep[J]) out[c++] = (int32_t)J;
    for (int64_t J = c; J < nq; J++) out[J] = -1;
    return c;
}

int eval_oracle_select(const float *q, const float *k, int hq, int hk, int d, int64_t rows,
                       int64_t n, int block, const int32_t *budget, int sink, int local,
                       int kind, int stride, double tau, int32_t *idx, int32_t *cnt)
{
    const int g = hq / hk;
    const int64_t nq = (rows + block - 1) / block;
    const float scale = 1.0f / sqrtf((float)d);
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *p = malloc((size_t)rows * sizeof *p);
        double *mass = malloc((size_t)nq * sizeof *mass);
        double *lg = malloc((size_t)(nq * block / stride + 1) * sizeof *lg);
        char *keep = malloc((size_t)nq);
        scored_block *sb = malloc((size_t)nq * sizeof *sb);
        if (!p || !mass || !keep || !lg || !sb) failed = 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < (int64_t)hq * nq; w++) {
            if (!p || !mass || !keep || !lg || !sb) continue;
            const int64_t h = w / nq, I = nq - 1 - w % nq; /* long rows first */
            const float *kh = k + (h / g) * n * d;
            for (int64_t J = 0; J <= I; J++)
                mass[J] = kind == EVAL_HOST_MAXPOOL || kind == EVAL_HOST_MAXPOOL_ADAPTIVE
                              ? maxpool_score(q + h * n * d, kh, d, rows, block, stride, I, J,
                                              scale)
                              : 0.0;
            if (kind == EVAL_HOST_ROWSOFTMAX)
                rowsoftmax_mass(q + h * n * d, kh, d, rows, block, stride, I, scale, lg, mass);
            const int64_t t1 = (I + 1) * block < rows ? (I + 1) * block : rows;
            for (int64_t t = I * block; kind == EVAL_HOST_ORACLE && t < t1; t++) {
                const float *qr = q + (h * n + t) * d;
                float mx = -INFINITY;
                for (int64_t j = 0; j <= t; j++) {
                    const float *kr = kh + j * d;
                    float s8[8] = {0};
                    for (int i = 0; i + 8 <= d; i += 8)
                        for (int u = 0; u < 8; u++) s8[u] += qr[i + u] * kr[i + u];
                    p[j] = ((s8[0] + s8[1] + s8[2] + s8[3]) + (s8[4] + s8[5] + s8[6] + s8[7])) *
                           scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                double z = 0.0;
                for (int64_t j = 0; j <= t; j++) z += exp((double)p[j] - mx);
                for (int64_t j = 0; j <= t; j++) mass[j / block] += exp((double)p[j] - mx) / z;
            }
            int32_t *row = idx + (h * nq + I) * nq;
            if (kind == EVAL_HOST_MAXPOOL_ADAPTIVE) { /* mass threshold on the maxima */
                cnt[h * nq + I] = keep_by_mass(mass, I, nq, tau, sink, local, sb, keep, row);
                continue;
            }
            /* top budget[I] by mass (ties: lower index), then sink and local */
            memset(keep, 0, (size_t)(I + 1));
            const int64_t kb = budget[I] < I + 1 ? budget[I] : I + 1;
            for (int64_t r = 0; r < kb; r++) {
                int64_t best = -1;
                for (int64_t J = 0; J <= I; J++)
                    if (!keep[J] && (best < 0 || mass[J] > mass[best])) best = J;
                if (best < 0) break;
                keep[best] = 1;
            }
            for (int64_t J = 0; J < sink && J <= I; J++) keep[J] = 1;
            for (int64_t J = I - local + 1 > 0 ? I - local + 1 : 0; J <= I; J++) keep[J] = 1;
            int32_t c = 0;
            for (int64_t J = 0; J <= I; J++)
                if (keep[J]) row[c++] = (int32_t)J;
            for (int64_t J = c; J < nq; J++) row[J] = -1;
            cnt[h * nq + I] = c;
        }
        free(p);
        free(lg);
        free(mass);
        free(keep);
        free(sb);
    }
    return failed ? -1 : 0;
}

void eval_adaptive_select(const float *scores, int hq, int64_t nq, double tau, int sink,
                          int local, int32_t *idx, int32_t *cnt)
{
#pragma omp parallel
    {
        scored_block *sb = malloc((size_t)nq * sizeof *sb);
        double *lg = malloc((size_t)nq * sizeof *lg);
        char *keep = malloc((size_t)nq);
#pragma omp for schedule(dynamic, 8)
        for (int64_t w = 0; w < (int64_t)hq * nq; w++) {
            const int64_t h = w / nq, I = w % nq;
            const float *row = scores + (h * nq + I) * nq;
            int32_t *out = idx + (h * nq + I) * nq;
            if (!sb || !keep || !lg) { /* out of memory: keep the whole causal row */
                for (int64_t J = 0; J < nq; J++) out[J] = J <= I ? (int32_t)J : -1;
                cnt[w] = (int32_t)(I + 1);
                continue;
            }
            for (int64_t J = 0; J <= I; J++) lg[J] = row[J];
            cnt[w] = keep_by_mass(lg, I, nq, tau, sink, local, sb, keep, out);
        }
        free(sb);
        free(lg);
        free(keep);
    }
}
