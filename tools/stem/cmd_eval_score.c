/* stem eval: scoring a window: next-token NLL (perplexity), KL(dense ||
 * sparse) and top-1 agreement, and the result row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_eval.h"

/* ------------------------------------------------------------ distributions */

/* log-softmax of one row in place; returns nothing */
static void log_softmax(float *x, int64_t v)
{
    float mx = x[0];
    for (int64_t i = 1; i < v; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (int64_t i = 0; i < v; i++) s += exp((double)x[i] - mx);
    float lse = mx + (float)log(s);
    for (int64_t i = 0; i < v; i++) x[i] -= lse;
}

enum { LOGIT_CHUNK = 128 };

/* Scores rows [from, n-1) of a window: next-token NLL of the sparse run,
 * the dense run and KL(dense || sparse). */
int eval_score_window(const lm_model *m, const float *hid_dense, const float *hid_sparse,
                      const int32_t *tokens, int64_t n, int64_t from, float *dense_lp,
                      int dense_lp_ready, score_sums *s)
{
    const int64_t V = m->n_vocab;
    float *ld = malloc((size_t)(LOGIT_CHUNK * V) * sizeof(float));
    float *ls = malloc((size_t)(LOGIT_CHUNK * V) * sizeof(float));
    if (!ld || !ls) {
        free(ld);
        free(ls);
        return -1;
    }
    memset(s, 0, sizeof *s);
    for (int64_t r0 = from; r0 < n - 1; r0 += LOGIT_CHUNK) {
        int64_t rows = n - 1 - r0 < LOGIT_CHUNK ? n - 1 - r0 : LOGIT_CHUNK;
        /* dense log-probabilities: computed once per window when dense_lp
         * (rows [from, n-1)) is given, then reused by every configuration */
        float *dl = dense_lp ? dense_lp + (r0 - from) * V : ld;
        if (!dense_lp || !dense_lp_ready) lm_logits(m, hid_dense + r0 * m->d_model, rows, dl);
        const int dense_raw = !dense_lp || !dense_lp_ready;
        if (hid_sparse) lm_logits(m, hid_sparse + r0 * m->d_model, rows, ls);
        double nll_d = 0, nll_s = 0, kl = 0, klmax = s->kl_max, nd_l = 0, ns_l = 0, kl_l = 0;
        int64_t same = 0, late = 0;
#pragma omp parallel for reduction(+ : nll_d, nll_s, kl, same, nd_l, ns_l, kl_l, late) \
    reduction(max : klmax)
        for (int64_t r = 0; r < rows; r++) {
            float *a = dl + r * V, *b = hid_sparse ? ls + r * V : a;
            if (dense_raw) log_softmax(a, V);
            if (hid_sparse) log_softmax(b, V);
            int32_t next = tokens[r0 + r + 1];
            nll_d -= a[next];
            nll_s -= b[next];
            double k1 = 0.0;
            int64_t am = 0, bm = 0;
            for (int64_t i = 0; i < V; i++) {
                if (b != a) k1 += exp((double)a[i]) * ((double)a[i] - b[i]);
                if (a[i] > a[am]) am = i;
                if (b[i] > b[bm]) bm = i;
            }
            kl += k1;
            if (r0 + r >= n / 2) {
                nd_l -= a[next];
                ns_l -= b[next];
                kl_l += k1;
                late++;
            }
            klmax = k1 > klmax ? k1 : klmax;
            same += am == bm;
        }
        s->nll_dense += nll_d;
        s->nll += nll_s;
        s->kl += kl;
        s->kl_max = klmax;
        s->top1_same += same;
        s->rows += rows;
        s->nll_dense_late += nd_l;
        s->nll_late += ns_l;
        s->kl_late += kl_l;
        s->rows_late += late;
    }
    free(ld);
    free(ls);
    return 0;
}

void eval_print_row(FILE *f, const char *label, int block, double density, double ppl,
                    double ppl_dense, const score_sums *s, double sec)
{
    fprintf(f, "%-34s %5d %8.4f %9.4f %9.4f %10.3e %10.3e %9.3e %7.4f %8.1f\n", label, block,
            density, ppl, ppl_dense, s->rows ? s->kl / (double)s->rows : 0.0,
            s->rows_late ? s->kl_late / (double)s->rows_late : 0.0, s->kl_max,
            s->rows ? (double)s->top1_same / (double)s->rows : 1.0, sec);
    fflush(f);
}
