/*
 * CPU backend: block-sparse causal attention, FlashAttention-2 style.
 *
 * One work item = (batch, query head, query block I). Its Q tile is widened
 * to f32 once (pre-multiplied by scale * log2(e) so the softmax runs on exp2),
 * then the listed key blocks are streamed in key tiles of up to KT keys
 * (several small blocks share a tile; a large block at large head_dim is
 * split): S = Q K^T, online softmax (running max m, sum l, rescaled
 * accumulator), O += P V. Only the diagonal block needs the per-token mask.
 */
#include "cpu_common.h"

#include <math.h>

/* Keys per tile: Q, K^T, V, S and O tiles of 128 x 128 f32 (320 KiB at
 * d = 128) stay in a 512 KiB L2; at d > 128 tiles of 64 keys keep it there. */
static int key_tile(int d)
{
    return d <= 128 ? 128 : 64;
}

typedef struct attn_scratch {
    float *q;  /* [B x d] query tile, scaled */
    float *kt; /* [d x KT] key tile, transposed */
    float *v;  /* [KT x d] value tile */
    float *s;  /* [B x KT] logits, then probabilities */
    float *o;  /* [B x d] accumulator */
    float *m;  /* [B] running max (log2 units) */
    float *l;  /* [B] running sum */
} attn_scratch;

static void scratch_free(attn_scratch *w)
{
    free(w->q);
    free(w->kt);
    free(w->v);
    free(w->s);
    free(w->o);
    free(w->m);
    free(w->l);
    memset(w, 0, sizeof *w);
}

static int scratch_alloc(attn_scratch *w, int bs, int d, int kt)
{
    memset(w, 0, sizeof *w);
    w->q = stem_cpu_alloc((size_t)bs * d * sizeof(float));
    w->kt = stem_cpu_alloc((size_t)d * kt * sizeof(float));
    w->v = stem_cpu_alloc((size_t)kt * d * sizeof(float));
    w->s = stem_cpu_alloc((size_t)bs * kt * sizeof(float));
    w->o = stem_cpu_alloc((size_t)bs * d * sizeof(float));
    w->m = stem_cpu_alloc((size_t)bs * sizeof(float));
    w->l = stem_cpu_alloc((size_t)bs * sizeof(float));
    if (!w->q || !w->kt || !w->v || !w->s || !w->o || !w->m || !w->l) {
        scratch_free(w);
        return 0;
    }
    return 1;
}

typedef struct attn_job {
    const stem_cpu_kernels *k;
    const stem_tensor *q, *kk, *v, *index, *count, *out;
    int64_t n_tokens, n_blocks;
    int bs, d, kt, group; /* block size, head_dim, keys per tile, Hq / Hkv */
    float qmul;           /* scale * log2(e) */
} attn_job;

/* One key tile: S = Q K^T over `cols` keys, mask, online softmax, O += P V.
 * Columns [diag_col, cols) hold diagonal-block keys whose offsets from the
 * block start begin at diag_key0 (diag_col < 0: no diagonal keys). */
static void process_tile(const attn_job *job, attn_scratch *w, int rows, int cols, int diag_col,
                         int diag_key0)
{
    const stem_cpu_kernels *k = job->k;
    const int d = job->d, kt = job->kt;
    k->gemm(rows, cols, d, w->q, d, w->kt, kt, w->s, kt, 0);
    for (int i = 0; i < rows; i++) {
        float *s = w->s + (ptrdiff_t)i * kt;
        if (diag_col >= 0) {
            /* key offset diag_key0 + (c - diag_col) is visible iff <= i */
            int first_masked = diag_col + (i - diag_key0) + 1;
            if (first_masked < diag_col)
                first_masked = diag_col;
            for (int c = first_masked; c < cols; c++)
                s[c] = -INFINITY;
        }
        const float mx = k->row_max(s, cols);
        const float m_new = mx > w->m[i] ? mx : w->m[i];
        if (m_new == -INFINITY) { /* nothing visible yet: contributes nothing */
            /* ... unless the logits are NaN (a NaN query): the row must
             * come out NaN, not as a row with no visible key. */
            for (int c = 0; c < cols; c++)
                if (isnan(s[c]))
                    w->l[i] = NAN;
            memset(s, 0, (size_t)cols * sizeof(float));
            continue;
        }
        const float alpha = exp2f(w->m[i] - m_new); /* 0 on the first visible tile */
        const float sum = k->exp2_sum(s, cols, m_new);
        w->l[i] = w->l[i] * alpha + sum;
        if (alpha != 1.0f)
            k->scale(w->o + (ptrdiff_t)i * d, d, alpha);
        w->m[i] = m_new;
    }
    k->gemm(rows, d, cols, w->s, kt, w->v, d, w->o, d, 1);
}

static void run_item(const attn_job *job, attn_scratch *w, int64_t b, int64_t h, int64_t I)
{
    const int bs = job->bs, d = job->d, kt = job->kt;
    const int64_t kh = h / job->group;
    const int64_t q0 = I * bs;
    const int rows = (int)(job->n_tokens - q0 < bs ? job->n_tokens - q0 : bs);

    for (int i = 0; i < rows; i++)
        stem_cpu_load_row(job->q, b, h, q0 + i, d, w->q + (ptrdiff_t)i * d, 1, job->qmul);
    memset(w->o, 0, (size_t)rows * d * sizeof(float));
    for (int i = 0; i < rows; i++) {
        w->m[i] = -INFINITY;
        w->l[i] = 0.0f;
    }

    int64_t cnt = *stem_cpu_i32_at(job->count, b, h, I, 0);
    if (cnt < 0)
        cnt = 0;
    if (cnt > job->n_blocks)
        cnt = job->n_blocks;

    int cols = 0, diag_col = -1, diag_key0 = 0;
    int64_t prev = -1;
    for (int64_t p = 0; p < cnt; p++) {
        const int64_t J = *stem_cpu_i32_at(job->index, b, h, I, p);
        /* The core checks lists; still never read outside causal blocks. */
        if (J <= prev || J > I)
            continue;
        prev = J;
        const int64_t k0 = J * bs;
        const int kn = (int)(job->n_tokens - k0 < bs ? job->n_tokens - k0 : bs);
        for (int j = 0; j < kn;) {
            if (cols == kt) {
                process_tile(job, w, rows, cols, diag_col, diag_key0);
                cols = 0;
                diag_col = -1;
            }
            const int take = kn - j < kt - cols ? kn - j : kt - cols;
            if (J == I && diag_col < 0) {
                diag_col = cols;
                diag_key0 = j;
            }
            for (int c = 0; c < take; c++) {
                stem_cpu_load_row(job->kk, b, kh, k0 + j + c, d, w->kt + cols + c, kt, 1.0f);
                stem_cpu_load_row(job->v, b, kh, k0 + j + c, d, w->v + (ptrdiff_t)(cols + c) * d,
                                  1, 1.0f);
            }
            cols += take;
            j += take;
        }
    }
    if (cols > 0)
        process_tile(job, w, rows, cols, diag_col, diag_key0);

    for (int i = 0; i < rows; i++) {
        const float l = w->l[i];
        const float inv = l > 0.0f ? 1.0f / l : isnan(l) ? l : 0.0f; /* no visible key: 0 */
        stem_cpu_store_row(job->out, b, h, q0 + i, d, w->o + (ptrdiff_t)i * d, inv);
    }
}

stem_status stem_cpu_attention(stem_plan *plan, const stem_tensor *q, const stem_tensor *k,
                               const stem_tensor *v, const stem_tensor *index,
                               const stem_tensor *count, const stem_tensor *out)
{
    const stem_cpu_context *ctx = stem_cpu_ctx(plan);
    attn_job job;
    job.k = ctx->k;
    job.q = q;
    job.kk = k;
    job.v = v;
    job.index = index;
    job.count = count;
    job.out = out;
    job.n_tokens = plan->desc.q_len;
    job.n_blocks = plan->n_blocks;
    job.bs = plan->cfg.block_size;
    job.d = (int)plan->desc.head_dim;
    job.kt = key_tile(job.d);
    job.group = (int)(plan->desc.num_q_heads / plan->desc.num_kv_heads);
    job.qmul = plan->scale * 1.4426950408889634f;

    const int64_t n = plan->n_blocks, hq = plan->desc.num_q_heads;
    const int64_t items = plan->desc.batch * hq * n;
    const int threads = ctx->threads;

    /* Every thread's tiles up front, so running out of memory leaves the
     * output untouched. */
    attn_scratch *w = calloc((size_t)threads, sizeof *w);
    int ok = w != NULL;
    for (int t = 0; ok && t < threads; t++)
        ok = scratch_alloc(&w[t], job.bs, job.d, job.kt);
    if (!ok) {
        for (int t = 0; w && t < threads; t++)
            scratch_free(&w[t]);
        free(w);
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cpu attention: out of memory for tiles");
    }

    /* Late rows first: they hold the most keys, so dynamic scheduling ends
     * with the cheap ones and the threads finish together. */
    STEM_CPU_PRAGMA(parallel for num_threads(threads) schedule(dynamic, 1))
    for (int64_t it = 0; it < items; it++) {
        const int64_t I = n - 1 - it % n, bh = it / n;
        run_item(&job, &w[stem_cpu_thread_id()], bh / hq, bh % hq, I);
    }

    for (int t = 0; t < threads; t++)
        scratch_free(&w[t]);
    free(w);
    return STEM_OK;
}
