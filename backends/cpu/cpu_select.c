/*
 * CPU backend: per-row block selection (docs/semantics.md section 5).
 *
 * Top-k uses a total order (value descending, index ascending), so the kept
 * set is unique and matches the reference whatever the algorithm: an
 * introselect (quickselect, heap fallback) picks the k best in O(n) per row.
 */
#include "cpu_common.h"

#include <math.h>

typedef struct cand {
    float v;
    int32_t j;
} cand;

/* a ranks before b: larger value, then lower index. */
static inline int before(cand a, cand b)
{
    return a.v > b.v || (a.v == b.v && a.j < b.j);
}

static inline void swap_cand(cand *a, cand *b)
{
    const cand t = *a;
    *a = *b;
    *b = t;
}

/* Heap with the worst candidate at the root (for the fallback and XAttention
 * uses the opposite orientation through `best_first`). */
static void sift_down(cand *h, int64_t n, int64_t i, int best_first)
{
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && (best_first ? before(h[c + 1], h[c]) : before(h[c], h[c + 1])))
            c++;
        if (best_first ? !before(h[c], h[i]) : !before(h[i], h[c]))
            return;
        swap_cand(&h[i], &h[c]);
        i = c;
    }
}

static void heapify(cand *h, int64_t n, int best_first)
{
    for (int64_t i = n / 2 - 1; i >= 0; i--)
        sift_down(h, n, i, best_first);
}

/* Rearranges a[0..n) so that a[0..k) are the k best (any order). */
static void select_best(cand *a, int64_t n, int64_t k)
{
    if (k <= 0 || k >= n)
        return;
    int64_t lo = 0, hi = n - 1;
    int budget = 64; /* quickselect rounds before the O(n log k) fallback */
    while (hi > lo) {
        if (budget-- == 0) {
            /* Keep the best (k - lo) of a[lo..hi] in a heap rooted at the worst. */
            const int64_t want = k - lo, len = hi - lo + 1;
            cand *h = a + lo;
            heapify(h, want, 0);
            for (int64_t i = want; i < len; i++)
                if (before(h[i], h[0])) {
                    swap_cand(&h[i], &h[0]);
                    sift_down(h, want, 0, 0);
                }
            return;
        }
        /* Median of three as pivot, moved to hi. */
        const int64_t mid = lo + (hi - lo) / 2;
        if (before(a[mid], a[lo]))
            swap_cand(&a[mid], &a[lo]);
        if (before(a[hi], a[lo]))
            swap_cand(&a[hi], &a[lo]);
        if (before(a[mid], a[hi]))
            swap_cand(&a[mid], &a[hi]);
        const cand pivot = a[hi];
        int64_t store = lo;
        for (int64_t i = lo; i < hi; i++)
            if (before(a[i], pivot))
                swap_cand(&a[i], &a[store++]);
        swap_cand(&a[store], &a[hi]);
        /* a[lo..store) rank before the pivot, a[store] is the pivot. */
        if (store == k || store + 1 == k)
            return;
        if (store > k)
            hi = store - 1;
        else
            lo = store + 1;
    }
}

typedef struct select_job {
    const stem_plan *plan;
    const stem_tensor *scores, *index, *count;
    int64_t n, hq, row0; /* key blocks, query heads, absolute block of row 0 */
} select_job;

/* XAttention threshold rule on W = scores row I; marks kept blocks.
 * diag_only (the official rule, rows from key block 0): only I is forced, a
 * candidate's test lags the running mass by one more block, and block 0 is
 * kept anyway; otherwise blocks 0 and I are forced (docs/semantics.md 5). */
static void select_xattention(const select_job *job, const float *w, int64_t I, int diag_only,
                              cand *c, uint8_t *mark)
{
    double total = 0.0;
    int negative = 0; /* then the running mass may fall again: test every candidate */
    for (int64_t J = 0; J <= I; J++) {
        total += w[J];
        negative |= w[J] < 0.0f;
    }
    const double target = (double)job->plan->cfg.xattn_threshold * total;
    mark[0] = 1; /* forced, or kept by the official rule anyway */
    mark[I] = 1;
    const double forced = diag_only || I == 0 ? w[I] : (double)w[0] + w[I];
    /* Others by W descending (ties to the lower J), popped from a heap while
     * the mass the next one is tested on is below the target (masses from
     * stem_score are >= 0, so the first failure ends the row). */
    int64_t m = 0;
    for (int64_t J = diag_only ? 0 : 1; J < I; J++)
        c[m++] = (cand){w[J], (int32_t)J};
    heapify(c, m, 1);
    double acc = forced; /* forced + every popped mass */
    double before = diag_only ? 0.0 : forced; /* what the next candidate is tested on */
    while (m > 0 && (before < target || negative)) {
        if (before < target)
            mark[c[0].j] = 1;
        before = acc; /* diag_only: lags one popped mass behind acc */
        acc += c[0].v;
        if (!diag_only)
            before = acc;
        c[0] = c[--m];
        sift_down(c, m, 0, 1);
    }
}

/* Row r of the call = absolute query block I = row0 + r. */
static void select_row(const select_job *job, int64_t b, int64_t h, int64_t r, float *w, cand *c,
                       uint8_t *mark)
{
    const stem_plan *plan = job->plan;
    const stem_config *cfg = &plan->cfg;
    const int64_t n = job->n, I = job->row0 + r;
    for (int64_t J = 0; J <= I; J++) {
        const float x = *stem_cpu_f32_at(job->scores, b, h, r, J);
        w[J] = x;
        mark[J] = 0;
    }
    if (cfg->selector == STEM_SELECTOR_DENSE || plan->dense) {
        /* also XATTENTION in a dense model layer */
        memset(mark, 1, (size_t)(I + 1));
    } else if (stem_selector_is_xattention(cfg->selector)) {
        for (int64_t J = 0; J <= I; J++)
            if (isnan(w[J]))
                w[J] = 0.0f; /* never orders or counts */
        select_xattention(job, w, I, stem_xattn_diag_only(plan), c, mark);
    } else if (I + 1 <= plan->budget[I]) {
        memset(mark, 1, (size_t)(I + 1));
    } else {
        int64_t m = 0;
        for (int64_t J = 0; J <= I; J++)
            if (isfinite(w[J])) /* NaN and -inf never chosen */
                c[m++] = (cand){w[J], (int32_t)J};
        const int64_t kk = plan->budget[I] < m ? plan->budget[I] : m;
        select_best(c, m, kk);
        for (int64_t r = 0; r < kk; r++)
            mark[c[r].j] = 1;
        for (int64_t J = 0; J < cfg->sink_blocks && J <= I; J++)
            mark[J] = 1;
        for (int64_t J = I - cfg->local_blocks + 1; J <= I; J++)
            if (J >= 0)
                mark[J] = 1;
    }
    int32_t cnt = 0;
    for (int64_t J = 0; J <= I; J++)
        if (mark[J])
            *stem_cpu_i32_at(job->index, b, h, r, cnt++) = (int32_t)J;
    for (int64_t p = cnt; p < n; p++)
        *stem_cpu_i32_at(job->index, b, h, r, p) = -1;
    *stem_cpu_i32_at(job->count, b, h, r, 0) = cnt;
}

stem_status stem_cpu_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                            const stem_tensor *index, const stem_tensor *count)
{
    const stem_cpu_context *ctx = stem_cpu_ctx(plan);
    select_job job = {plan, scores, index, count, pass->n_keys, pass->num_q_heads, pass->row0};
    const int64_t n = pass->n_keys, nr = pass->n_rows, rows = pass->batch * job.hq * nr;
    const int threads = ctx->threads;
    float *w = stem_cpu_alloc((size_t)threads * n * sizeof(float));
    cand *c = stem_cpu_alloc((size_t)threads * n * sizeof(cand));
    uint8_t *mark = stem_cpu_alloc((size_t)threads * n);
    if (!w || !c || !mark) {
        free(w);
        free(c);
        free(mark);
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cpu select: out of memory");
    }
    STEM_CPU_PRAGMA(parallel for num_threads(threads) schedule(dynamic, 16))
    for (int64_t it = 0; it < rows; it++) {
        const int tid = stem_cpu_thread_id();
        const int64_t r = it % nr, bh = it / nr;
        select_row(&job, bh / job.hq, bh % job.hq, r, w + (ptrdiff_t)tid * n,
                   c + (ptrdiff_t)tid * n, mark + (ptrdiff_t)tid * n);
    }
    free(w);
    free(c);
    free(mark);
    return STEM_OK;
}
