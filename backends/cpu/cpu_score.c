/*
 * CPU backend: block scores (docs/semantics.md sections 1-3).
 *
 * STEM, STEM_PAPER, UNIFORM, DENSE: the phase-sum fast path. Per KV head,
 * Kflat^T [S*d x n] (shared by its g query heads) and the value bonus vb[n];
 * per query head Qflat [n x S*d] and one causal n x n x (S*d) GEMM.
 *
 * XATTENTION: per KV head the strided keys Ks^T [S*d x n*G] (column c is
 * tokens c*S .. c*S+S-1 concatenated); per (query head, block row I) the
 * G strided query rows with reversed phase, one GEMM against the causal
 * columns, a softmax per strided row (exp2 on pre-scaled logits) and the
 * per-block probability mass.
 */
#include "cpu_common.h"

#include <math.h>

#define LOG2E 1.4426950408889634

typedef struct score_job {
    const stem_plan *plan;
    const stem_pass *pass;
    const stem_cpu_kernels *k;
    const stem_tensor *q, *kk, *v, *scores;
    int64_t n_tokens, n_blocks, hq; /* n_tokens: visible keys L; n_blocks: key blocks */
    int64_t q_offset, row0, n_rows; /* queries sit at positions q_offset..; rows from row0 */
    int bs, stride, group, d, g; /* block, S, G = B/S, head_dim, Hq/Hkv */
    int64_t width;               /* S * d */
    int threads;
} score_job;

/* ------------------------------------------------------------ value bonus */

/* Max of ||V[t]||_2 over stride group gi of KV head (b, kh); tokens past N
 * count as 0. */
static double group_vmax(const score_job *job, int64_t b, int64_t kh, int64_t gi, float *row)
{
    double mx = 0.0;
    for (int t = 0; t < job->stride; t++) {
        const int64_t tok = gi * job->stride + t;
        if (tok >= job->n_tokens)
            break;
        stem_cpu_load_row(job->v, b, kh, tok, job->d, row, 1, 1.0f);
        double ss = 0.0;
        for (int e = 0; e < job->d; e++)
            ss += (double)row[e] * row[e];
        const double nv = sqrt(ss);
        mx = nv > mx ? nv : mx;
    }
    return mx;
}

/* Statistics of the STEM bonus for KV head (b, kh): the caller's (PROVIDED)
 * or the z-score's over the groups made only of visible tokens; written to
 * vstats_out when asked for. */
static void value_stats(const score_job *job, int64_t b, int64_t kh, const double *gmax,
                        double *mean_out, double *sd_out)
{
    const stem_pass *pass = job->pass;
    const int64_t gv = job->n_tokens / job->stride;
    double mean = 0.0, sd = 0.0;
    if (pass->vstats_in) {
        mean = *stem_cpu_f32_at(pass->vstats_in, b, kh, 0, 0);
        sd = *stem_cpu_f32_at(pass->vstats_in, b, kh, 0, 1);
    } else {
        for (int64_t gi = 0; gi < gv; gi++)
            mean += log(gmax[gi] + 1e-6);
        if (gv > 0)
            mean /= (double)gv;
        if (gv > 1) {
            for (int64_t gi = 0; gi < gv; gi++) {
                const double dv = log(gmax[gi] + 1e-6) - mean;
                sd += dv * dv;
            }
            sd = sqrt(sd / (double)(gv - 1));
        }
    }
    if (pass->vstats_out) {
        *stem_cpu_f32_at(pass->vstats_out, b, kh, 0, 0) = (float)mean;
        *stem_cpu_f32_at(pass->vstats_out, b, kh, 0, 1) = (float)sd;
    }
    *mean_out = mean;
    *sd_out = sd;
}

/* vb[n] of KV head (b, kh) from its group maxima gmax[n*G] (section 2). */
static void value_bonus(const score_job *job, int64_t b, int64_t kh, const double *gmax,
                        double *vb)
{
    const stem_config *cfg = &job->plan->cfg;
    const int64_t n = job->n_blocks, N = job->n_tokens;
    const int S = job->stride, G = job->group;
    const double beta = cfg->beta;
    if (cfg->selector == STEM_SELECTOR_STEM_PAPER) {
        for (int64_t J = 0; J < n; J++) {
            double mx = 0.0;
            for (int a = 0; a < G; a++)
                mx = gmax[J * G + a] > mx ? gmax[J * G + a] : mx;
            const double lv = log(mx + 1e-6);
            vb[J] = beta * (lv > 0.0 ? lv : 0.0);
        }
        return;
    }
    /* STEM (official code): z-score of log group maxima over the groups made
     * only of visible tokens (or the caller's statistics), ReLU, beta, mean
     * over the block's G groups. */
    const int64_t gv = N / S;
    double mean, sd;
    value_stats(job, b, kh, gmax, &mean, &sd);
    const int any = job->pass->vstats_in ? 1 : gv > 0;
    for (int64_t J = 0; J < n; J++) {
        double s = 0.0;
        if (any)
            for (int a = 0; a < G; a++) {
                const double z = (log(gmax[J * G + a] + 1e-6) - mean) / (sd + 1e-6);
                s += beta * (z > 0.0 ? z : 0.0);
            }
        vb[J] = s / G;
    }
}

/* ------------------------------------------------------- phase-sum scores */

/* Rows of the causal score GEMM per work item. */
#define PANEL 16

/* Phase sums of block `blk` of (b, h) in tensor t: out[seg(t) * d + e] =
 * sum_{a<G} x[blk*B + a*S + t][e], seg(t) = t (query) or S-1-t (key), over
 * the absolute positions present: keys [0, L), queries [P, L) (row p - P of
 * q). Summed in double (the pass is O(N d), cheap), stored as f32. */
static void phase_sum(const score_job *job, const stem_tensor *t, int64_t b, int64_t h,
                      int64_t blk, int reverse, double *acc, float *row, float *out,
                      ptrdiff_t out_step)
{
    const int64_t first = reverse ? 0 : job->q_offset, base = reverse ? 0 : job->q_offset;
    const int S = job->stride, G = job->group, d = job->d;
    const int64_t W = job->width;
    for (int64_t i = 0; i < W; i++)
        acc[i] = 0.0;
    for (int a = 0; a < G; a++)
        for (int ph = 0; ph < S; ph++) {
            const int64_t tok = blk * job->bs + (int64_t)a * S + ph;
            if (tok >= job->n_tokens)
                break;
            if (tok < first)
                continue;
            stem_cpu_load_row(t, b, h, tok - base, d, row, 1, 1.0f);
            double *seg = acc + (int64_t)(reverse ? S - 1 - ph : ph) * d;
            for (int e = 0; e < d; e++)
                seg[e] += row[e];
        }
    for (int64_t i = 0; i < W; i++)
        out[i * out_step] = (float)acc[i];
}

/* Two parallel loops in all (few barriers: on a loaded machine each one can
 * cost a scheduler time slice): (1) Kflat^T and V group maxima of every KV
 * head, (2) per (b, query head, panel of PANEL block rows) its Qflat rows,
 * the GEMM against the causal columns and the output row. */
static stem_status score_phase(const score_job *job)
{
    const stem_plan *plan = job->plan;
    const int64_t n = job->n_blocks, W = job->width, ng = n * job->group;
    const int64_t nkv = job->pass->batch * job->pass->num_kv_heads,
                  hkv = job->pass->num_kv_heads;
    const int threads = job->threads, d = job->d, g = job->g;
    const int with_bonus = (plan->cfg.selector != STEM_SELECTOR_UNIFORM && plan->cfg.beta != 0.0f) ||
                           job->pass->vstats_out != NULL;
    const float coef = (float)((double)plan->scale /
                               ((double)job->stride * plan->cfg.norm * job->group * job->group));

    float *kflat_t = stem_cpu_alloc((size_t)nkv * W * n * sizeof(float)); /* [W x n] each */
    double *gmax = stem_cpu_alloc((size_t)nkv * ng * sizeof(double));
    double *vb = stem_cpu_alloc((size_t)nkv * n * sizeof(double));
    double *acc = stem_cpu_alloc((size_t)threads * W * sizeof(double));
    float *row = stem_cpu_alloc((size_t)threads * d * sizeof(float));
    float *qflat = stem_cpu_alloc((size_t)threads * PANEL * W * sizeof(float));
    float *panel = stem_cpu_alloc((size_t)threads * PANEL * n * sizeof(float));
    stem_status st = STEM_OK;
    if (!kflat_t || !gmax || !vb || !acc || !row || !qflat || !panel) {
        st = stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cpu score: out of memory");
        goto done;
    }

    STEM_CPU_PRAGMA(parallel num_threads(threads))
    {
        const int tid = stem_cpu_thread_id();
        STEM_CPU_PRAGMA(for schedule(static) nowait)
        for (int64_t it = 0; it < nkv * n; it++) {
            const int64_t kv = it / n, J = it % n;
            phase_sum(job, job->kk, kv / hkv, kv % hkv, J, 1, acc + (ptrdiff_t)tid * W,
                      row + (ptrdiff_t)tid * d, kflat_t + kv * W * n + J, (ptrdiff_t)n);
        }
        if (with_bonus) {
            STEM_CPU_PRAGMA(for schedule(static))
            for (int64_t it = 0; it < nkv * ng; it++)
                gmax[it] = group_vmax(job, (it / ng) / hkv, (it / ng) % hkv, it % ng,
                                      row + (ptrdiff_t)tid * d);
        }
    }
    for (int64_t kv = 0; kv < nkv; kv++) {
        if (with_bonus)
            value_bonus(job, kv / hkv, kv % hkv, gmax + kv * ng, vb + kv * n);
        else
            for (int64_t J = 0; J < n; J++)
                vb[kv * n + J] = 0.0;
    }

    const int64_t nr = job->n_rows, row0 = job->row0;
    const int64_t n_panels = (nr + PANEL - 1) / PANEL;
    const int64_t items = job->pass->batch * job->hq * n_panels;
    /* Later panels have more columns: hand them out first. */
    STEM_CPU_PRAGMA(parallel for num_threads(threads) schedule(dynamic, 1))
    for (int64_t it = 0; it < items; it++) {
        const int tid = stem_cpu_thread_id();
        const int64_t pi = n_panels - 1 - it % n_panels, bh = it / n_panels;
        const int64_t b = bh / job->hq, h = bh % job->hq, kv = b * hkv + h / g;
        /* Rows i0..i1 of the call = absolute query blocks row0 + i. */
        const int64_t i0 = pi * PANEL, i1 = i0 + PANEL < nr ? i0 + PANEL : nr;
        float *qf = qflat + (ptrdiff_t)tid * PANEL * W;
        float *r = panel + (ptrdiff_t)tid * PANEL * n;
        for (int64_t i = i0; i < i1; i++)
            phase_sum(job, job->q, b, h, row0 + i, 0, acc + (ptrdiff_t)tid * W,
                      row + (ptrdiff_t)tid * d, qf + (i - i0) * W, 1);
        job->k->gemm((int)(i1 - i0), (int)(row0 + i1), (int)W, qf, W, kflat_t + kv * W * n, n, r,
                     n, 0);
        const double *vbk = vb + kv * n;
        for (int64_t i = i0; i < i1; i++) {
            const float *ri = r + (i - i0) * n;
            const int64_t I = row0 + i;
            for (int64_t J = 0; J < n; J++)
                *stem_cpu_f32_at(job->scores, b, h, i, J) =
                    J <= I ? ri[J] * coef + (float)vbk[J] : -INFINITY;
        }
    }
done:
    free(kflat_t);
    free(gmax);
    free(vb);
    free(acc);
    free(row);
    free(qflat);
    free(panel);
    return st;
}

/* ------------------------------------------------------------ XAttention */

typedef struct xattn_scratch {
    float *qs;    /* [G x W] strided query rows of block row I */
    float *a;     /* [G x C] their logits, then probabilities */
    double *mass; /* [n] W[I][*] being accumulated */
    double *part; /* [n] one strided row's mass per block */
} xattn_scratch;

/* Row I of W for query head (b, h) against Ks^T [W x C] of its KV head. */
static void xattn_row(const score_job *job, const float *ks_t, int64_t C, float qcoef, int64_t b,
                      int64_t h, int64_t I, const xattn_scratch *x)
{
    const int S = job->stride, G = job->group, d = job->d;
    const int64_t W = job->width, N = job->n_tokens, n = job->n_blocks;
    /* Strided query rows, phases reversed: segment t holds token m*S + S-1-t. */
    for (int r = 0; r < G; r++)
        for (int t = 0; t < S; t++) {
            const int64_t tok = (I * G + r) * S + (S - 1 - t);
            float *dst = x->qs + (int64_t)r * W + (int64_t)t * d;
            if (tok < N)
                stem_cpu_load_row(job->q, b, h, tok, d, dst, 1, qcoef);
            else
                memset(dst, 0, (size_t)d * sizeof(float));
        }
    const int64_t ncols = (I + 1) * G;
    job->k->gemm(G, (int)ncols, (int)W, x->qs, W, ks_t, C, x->a, ncols, 0);
    for (int64_t J = 0; J <= I; J++)
        x->mass[J] = 0.0;
    for (int r = 0; r < G; r++) {
        const int64_t m = I * G + r;
        if (m * S >= N) /* only real strided rows contribute */
            break;
        float *ar = x->a + r * ncols;
        const int len = (int)(m + 1); /* causal at strided granularity */
        const float mx = job->k->row_max(ar, len);
        job->k->exp2_sum(ar, len, mx);
        double tot = 0.0;
        for (int64_t J = 0; J <= I; J++) {
            const int64_t c0 = J * G, c1 = c0 + G < len ? c0 + G : len;
            float s = 0.0f;
            for (int64_t c = c0; c < c1; c++)
                s += ar[c];
            x->part[J] = s;
            tot += s;
        }
        if (tot > 0.0)
            for (int64_t J = 0; J <= I; J++)
                x->mass[J] += x->part[J] / tot;
    }
    for (int64_t J = 0; J < n; J++)
        *stem_cpu_f32_at(job->scores, b, h, I, J) = J <= I ? (float)x->mass[J] : 0.0f;
}

/* Per KV head (Ks^T is as large as K in f32, so one at a time): one loop
 * builds Ks^T, one covers every (query head of the group, block row). */
static stem_status score_xattention(const score_job *job)
{
    const stem_plan *plan = job->plan;
    const int64_t n = job->n_blocks, W = job->width, N = job->n_tokens;
    const int threads = job->threads, d = job->d, g = job->g, S = job->stride, G = job->group;
    const int64_t C = n * G; /* strided columns (padded to whole blocks) */
    const float qcoef = (float)((double)plan->scale / ((double)S * plan->cfg.norm) * LOG2E);

    float *ks_t = stem_cpu_alloc((size_t)W * C * sizeof(float));           /* [W x C] */
    float *qs = stem_cpu_alloc((size_t)threads * G * W * sizeof(float));   /* [G x W] each */
    float *abuf = stem_cpu_alloc((size_t)threads * G * C * sizeof(float)); /* [G x C] each */
    double *mass = stem_cpu_alloc((size_t)threads * 2 * n * sizeof(double));
    stem_status st = STEM_OK;
    if (!ks_t || !qs || !abuf || !mass) {
        st = stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cpu score: out of memory");
        goto done;
    }

    for (int64_t b = 0; b < job->pass->batch; b++)
        for (int64_t kh = 0; kh < job->pass->num_kv_heads; kh++) {
            STEM_CPU_PRAGMA(parallel for num_threads(threads) schedule(static))
            for (int64_t c = 0; c < C; c++)
                for (int t = 0; t < S; t++) {
                    const int64_t tok = c * S + t;
                    float *dst = ks_t + (int64_t)t * d * C + c;
                    if (tok < N)
                        stem_cpu_load_row(job->kk, b, kh, tok, d, dst, (ptrdiff_t)C, 1.0f);
                    else
                        for (int e = 0; e < d; e++)
                            dst[(int64_t)e * C] = 0.0f;
                }
            /* Late rows hold the most columns: hand them out first. */
            STEM_CPU_PRAGMA(parallel for num_threads(threads) schedule(dynamic, 1))
            for (int64_t it = 0; it < (int64_t)g * n; it++) {
                const int tid = stem_cpu_thread_id();
                const xattn_scratch x = {qs + (ptrdiff_t)tid * G * W, abuf + (ptrdiff_t)tid * G * C,
                                         mass + (ptrdiff_t)tid * 2 * n,
                                         mass + (ptrdiff_t)tid * 2 * n + n};
                xattn_row(job, ks_t, C, qcoef, b, kh * g + it / n, n - 1 - it % n, &x);
            }
        }
done:
    free(ks_t);
    free(qs);
    free(abuf);
    free(mass);
    return st;
}

stem_status stem_cpu_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                           const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores)
{
    const stem_cpu_context *ctx = stem_cpu_ctx(plan);
    score_job job;
    job.plan = plan;
    job.pass = pass;
    job.q_offset = pass->q_offset;
    job.row0 = pass->row0;
    job.n_rows = pass->n_rows;
    job.k = ctx->k;
    job.q = q;
    job.kk = k;
    job.v = v;
    job.scores = scores;
    job.n_tokens = pass->kv_len;
    job.n_blocks = pass->n_keys;
    job.hq = pass->num_q_heads;
    job.bs = plan->cfg.block_size;
    job.stride = plan->cfg.stride;
    job.group = plan->group;
    job.d = (int)plan->desc.head_dim;
    job.g = (int)(pass->num_q_heads / pass->num_kv_heads); /* heads per KV head in the pass */
    job.width = (int64_t)job.stride * job.d;
    job.threads = ctx->threads;
    if (stem_selector_is_xattention(plan->cfg.selector))
        return score_xattention(&job);
    return score_phase(&job);
}
