/*
 * CPU backend: block-sparse causal attention, FlashAttention-2 style.
 *
 * One work item = (batch, KV head, chunk of query heads of its GQA group,
 * query block I). The item walks the union of its heads' block lists once:
 * each key tile (up to KT keys) is widened to f32 once, straight into the
 * kernels' packed-panel layout, and then serves every head of the chunk that
 * listed its blocks. Converting K and V per query head instead cost as much
 * as the arithmetic at g = 4.
 *
 * Per head and tile: S = Q K^T (Q pre-multiplied by scale * log2(e) so the
 * softmax runs on exp2), online softmax (running max m, sum l, rescaled
 * accumulator), O += P V. Only the diagonal block needs the per-token mask.
 * With bf16 Q and K and a bf16 dot product (avx512_bf16 or AMX tiles), Q and
 * K stay bf16 pairs and S = Q K^T runs on it, scaled afterwards; with bf16 V
 * too, P is rounded to bf16 and O += P V runs on it as well, V packed as
 * pairs of keys (the VNNI layout of AMX's B tile). A tile only ever holds
 * blocks listed by the same set of heads, so no head computes a column it
 * did not select: time follows the kept blocks.
 *
 * Items run heaviest first (most listed blocks) under dynamic scheduling, so
 * the threads finish together.
 *
 * Issue 19 paths for bf16 Q, K, V (each with an environment switch, so one
 * process can time old against new; all but the fused softmax compute the
 * same values bit for bit, STEM_CPU_ATTN_LEGACY=1 turns all off):
 * - STEM_CPU_PREPACK (default 1): with whole tiles per block (block size a
 *   multiple of the key tile), the listed tiles of K and V are packed once
 *   per call and KV head, shared by every query block and head, instead of
 *   once per item: packing goes from O(N^2) to O(N). Since 2026-12-08 the
 *   f32 path (f32 and f16 inputs) prepacks too, in its own f32 layout.
 * - STEM_CPU_AMX_HOLD (default 1, AMX): the tile configuration is loaded
 *   once per item instead of once per GEMM call.
 * - STEM_CPU_FUSED_SOFTMAX (default 1): the logits' scale, exp2, row sum
 *   and the bf16 rounding of P in one pass (vcvtneps2bf16 on AVX512_BF16 /
 *   AMX). The scale rides in the exp2 argument's FMA, one rounding instead
 *   of two, so P differs from the unfused path's in the last bits.
 * - STEM_CPU_LAZY_RESCALE (default 1, with the fused softmax): a row whose
 *   running max exists is exponentiated against it in one pass that also
 *   finds the tile's max; only a rise of more than 2^8 rescales O. The
 *   outputs differ from the eager path's in rounding only.
 * - STEM_CPU_PIPE=rows (default 0, off: the fourth AMX call measured it
 *   slower): a head's tile runs in strips of that many rows, the tile
 *   products of the next strip's S and of the previous strip's P V issued
 *   one 32 x 32 block at a time between the softmax rows of the current
 *   strip, so the AMX unit and the vector units overlap (rows keep their
 *   order of operations: same values).
 * - bf16 output rows are rounded by the narrow_bf16 kernel instead of one
 *   library call per element (same rounding).
 * STEM_CPU_PREPACK_MB (default 256) bounds the prepacked tiles' memory.
 * STEM_CPU_KEY_TILE=keys (tuning; default 128 at d <= 128, else 64) sets the
 * key tile; a tile of several whole blocks (e.g. 256 at block 128) keeps the
 * prepacking, each tile then serving the run of adjacent blocks that the
 * same heads list (longer P V products per load and store of O, fewer
 * per-row softmax passes).
 */
#include "cpu_common.h"

#include <math.h>

/* Profiling builds only (-DSTEM_CPU_PHASE_TIMERS=1, bench/cpu/phase_build.sh):
 * TSC cycles of each attention phase per thread, printed at unload, so one
 * device call shows where a tile's time goes. Shipped builds have none of it
 * (the library never prints). */
#ifdef STEM_CPU_PHASE_TIMERS
#include <stdio.h>
#include <x86intrin.h>
enum { PH_S, PH_SOFTMAX, PH_PV, PH_ITEM, PH_PACK, PH_COUNT };
static const char *const ph_names[PH_COUNT] = {"S = Q K^T", "softmax rows", "O += P V",
                                               "whole items", "K/V prepack"};
static uint64_t ph_cycles[256][8]; /* per thread; a row of 64 bytes each */
#define PH_NOW() __rdtsc()
#define PH_ADD(ph, t0) (ph_cycles[stem_cpu_thread_id() & 255][ph] += __rdtsc() - (t0))
__attribute__((destructor)) static void ph_report(void)
{
    uint64_t tot[PH_COUNT] = {0};
    for (int t = 0; t < 256; t++)
        for (int p = 0; p < PH_COUNT; p++)
            tot[p] += ph_cycles[t][p];
    for (int p = 0; p < PH_COUNT; p++)
        fprintf(stderr, "phase %-14s %14.0f Mcycles  %5.1f%% of items\n", ph_names[p],
                tot[p] / 1e6, tot[PH_ITEM] ? 100.0 * tot[p] / tot[PH_ITEM] : 0.0);
}
#else
#define PH_NOW() 0
#define PH_ADD(ph, t0) ((void)(t0))
#endif

/* Keys per tile: Q, K, V, S and O tiles of 128 x 128 f32 (320 KiB at
 * d = 128) stay in a 512 KiB L2; at d > 128 tiles of 64 keys keep it there. */
static int key_tile(int d)
{
    return d <= 128 ? 128 : 64;
}

/* Query and output tiles of one item's heads stay within this per thread
 * (8 heads at d = 128), so large groups (MQA) are split into chunks. */
#define HEAD_STATE_BYTES ((size_t)1 << 20)
#define MAX_CHUNK_HEADS 32 /* bits of the per-block head mask */

typedef struct attn_scratch {
    float *q;        /* [gh][bs x d] query tiles, scaled */
    float *o;        /* [gh][bs x dp] accumulators */
    float *m;        /* [gh][bs] running max (log2 units) */
    float *l;        /* [gh][bs] running sum */
    float *kp;       /* key tile, panels of nr keys: [kt / nr][d][nr] */
    float *vp;       /* value tile, panels of nr dims: [dp / nr][kt][nr] */
    float *s;        /* [bs x kt] logits, then probabilities */
    float *row;      /* [d] one widened value row */
    uint32_t *heads; /* [nk] bit hh set: head hh of the item lists block J */
    uint32_t *qb;    /* bf16 dot path: [gh][bs x d/2] query tiles as bf16 pairs, unscaled */
    uint32_t *kb;    /* bf16 dot path: key tile, panels of nr keys: [kt / nr][d/2][nr] pairs */
    uint32_t *vb;    /* bf16 P V: value tile, panels of nr dims: [dp / nr][kt/2][nr] key pairs */
    uint32_t *pb;    /* bf16 P V: [bs x kt/2] probabilities as bf16 pairs of keys */
} attn_scratch;

typedef struct attn_job {
    const stem_cpu_kernels *k;
    const stem_tensor *q, *kk, *v, *index, *count, *out, *lse;
    int64_t n_tokens, n_blocks, hkv, chunks; /* n_tokens: visible keys L; n_blocks: key blocks */
    int64_t q_offset, row0, n_rows;          /* query 0 at position q_offset; rows from row0 */
    int bs, d, dp, kt, nr; /* block size, head_dim, padded to nr, keys per tile, panel width */
    int group, gh;         /* Hq / Hkv, query heads per item */
    float qmul;            /* scale * log2(e) */
    int bf16;              /* S = Q K^T by the bf16 dot product (bf16 Q and K, gemm_bf16) */
    int pv_bf16;           /* O += P V by it too, P rounded to bf16 (bf16 V as well) */
    int fused;             /* pv_bf16: exp2_sum_bf16 instead of exp2_sum + narrow_bf16 */
    int lazy;              /* fused: rescale only when the max rises by 2^8 (exp2_sum_bf16_max) */
    int hold;              /* tiles held per item: gemm_bf16_held */
    int pipe;              /* pv_bf16: rows per strip of the pipelined head, 0 = whole tile */
    int fast_store;        /* bf16 output rows contiguous: narrow_bf16 per row */
    void (*gemm_bf16)(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                      const uint32_t *Bp, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                      int accumulate); /* k->gemm_bf16, or k->gemm_bf16_held when hold */
    /* Prepacked K / V tiles (NULL: packed per item): tile g of pair bk
     * (= b * hkv + kh, bk0 <= bk < bk0 + group of the pass) at
     * packed + ((bk - pack_bk0) * pack_tiles + g) * tile_u32, K as kb, then
     * V as vb. */
    const uint32_t *packed;
    int64_t pack_bk0, pack_tiles, tile_u32;
} attn_job;

/* Key tile being filled: columns [0, cols); [diag_col, cols) hold
 * diagonal-block keys at offsets diag_key0.. from the block start. */
typedef struct tile_state {
    int cols, diag_col, diag_key0;
    int qoff;       /* in-block offset of the item's first query (partial first row) */
    uint32_t heads; /* heads that listed every block in the tile */
    const uint32_t *kb, *vb; /* bf16 paths: the key / value tile (scratch or prepacked) */
    const float *kp, *vp;    /* f32 path: the same (scratch or prepacked) */
} tile_state;

static void scratch_free(attn_scratch *w)
{
    free(w->q);
    free(w->o);
    free(w->m);
    free(w->l);
    free(w->kp);
    free(w->vp);
    free(w->s);
    free(w->row);
    free(w->heads);
    free(w->qb);
    free(w->kb);
    free(w->vb);
    free(w->pb);
    memset(w, 0, sizeof *w);
}

static int scratch_alloc(attn_scratch *w, const attn_job *job)
{
    const size_t gh = (size_t)job->gh, bs = (size_t)job->bs, d = (size_t)job->d,
                 dp = (size_t)job->dp, kt = (size_t)job->kt;
    memset(w, 0, sizeof *w);
    w->q = stem_cpu_alloc(gh * bs * d * sizeof(float));
    w->o = stem_cpu_alloc(gh * bs * dp * sizeof(float));
    w->m = stem_cpu_alloc(gh * bs * sizeof(float));
    w->l = stem_cpu_alloc(gh * bs * sizeof(float));
    w->kp = stem_cpu_alloc(kt * d * sizeof(float));
    w->vp = stem_cpu_alloc(dp * kt * sizeof(float));
    w->s = stem_cpu_alloc(bs * kt * sizeof(float));
    w->row = stem_cpu_alloc(d * sizeof(float));
    w->heads = stem_cpu_alloc((size_t)job->n_blocks * sizeof(uint32_t));
    if (job->bf16) {
        w->qb = stem_cpu_alloc(gh * bs * (d / 2) * sizeof(uint32_t));
        w->kb = stem_cpu_alloc(kt * (d / 2) * sizeof(uint32_t));
    }
    if (job->pv_bf16) {
        w->vb = stem_cpu_alloc(dp * (kt / 2) * sizeof(uint32_t));
        w->pb = stem_cpu_alloc(bs * (kt / 2) * sizeof(uint32_t));
    }
    if (!w->q || !w->o || !w->m || !w->l || !w->kp || !w->vp || !w->s || !w->row || !w->heads ||
        (job->bf16 && (!w->qb || !w->kb)) || (job->pv_bf16 && (!w->vb || !w->pb))) {
        scratch_free(w);
        return 0;
    }
    /* Pad columns (keys past a short tile, dims past d) must hold finite
     * values: zero them once, conversion never writes them. */
    memset(w->kp, 0, kt * d * sizeof(float));
    memset(w->vp, 0, dp * kt * sizeof(float));
    if (job->bf16)
        memset(w->kb, 0, kt * (d / 2) * sizeof(uint32_t));
    if (job->pv_bf16)
        memset(w->vb, 0, dp * (kt / 2) * sizeof(uint32_t));
    return 1;
}

/* How far (log2 units) a tile's max may exceed the row's running max before
 * the lazy path rescales: P values up to 2^8. */
#define LAZY_RESCALE_LOG2 8.0f

/* Softmax of row i of one head's tile (logits in w->s row i): mask, online
 * softmax update of m, l and the accumulator row, and on the bf16 P V path
 * P of the row as bf16 pairs (zero past cols) in w->pb row i. */
static void softmax_row(const attn_job *job, attn_scratch *w, const tile_state *t, float *o,
                        float *m, float *l, int i)
{
    const stem_cpu_kernels *k = job->k;
    const int dp = job->dp, d = job->d, kt = job->kt, nr = job->nr;
    const int cols = t->cols, colsp = (cols + nr - 1) / nr * nr;
    float *s = w->s + (ptrdiff_t)i * kt;
    uint16_t *pr = job->pv_bf16 ? (uint16_t *)(w->pb + (ptrdiff_t)i * (kt / 2)) : NULL;
    /* Q stayed exact bf16: scale the logits instead, in the exp2 pass's FMA
     * where that pass is fused (the max of the raw row, scaled, is the max
     * of the scaled row for a positive scale), else in a pass of its own. */
    const int fold = pr && job->fused && job->bf16 && job->qmul > 0.0f;
    if (job->bf16 && !fold)
        k->scale(s, cols, job->qmul);
    if (t->diag_col >= 0) {
        /* key offset diag_key0 + (c - diag_col) is visible iff <= qoff + i */
        int first_masked = t->diag_col + (t->qoff + i - t->diag_key0) + 1;
        if (first_masked < t->diag_col)
            first_masked = t->diag_col;
        for (int c = first_masked; c < cols; c++)
            s[c] = -INFINITY;
    }
    /* Lazy rescaling (FlashAttention-4's): once the row has a running max m,
     * exponentiate against it in one pass that also finds this tile's max,
     * and keep that unless the max rose more than LAZY_RESCALE_LOG2 above m.
     * P and l are then relative to an m up to that far below the true max
     * (P <= 2^8: the same relative precision in bf16 and f32), O needs no
     * rescale, and the row costs one pass over S instead of two. m keeps its
     * value (lse = (m + log2 l) ln 2 holds for any m). */
    if (job->lazy && fold && m[i] > -INFINITY) {
        float xmax;
        const float sum = k->exp2_sum_bf16_max(s, cols, job->qmul, m[i], pr, &xmax);
        if (!(xmax * job->qmul > m[i] + LAZY_RESCALE_LOG2)) {
            if (colsp > cols)
                memset(pr + cols, 0, (size_t)(colsp - cols) * sizeof(uint16_t));
            l[i] += sum;
            return;
        }
    }
    const float mx = k->row_max(s, cols) * (fold ? job->qmul : 1.0f);
    const float m_new = mx > m[i] ? mx : m[i];
    if (m_new == -INFINITY) { /* nothing visible yet: contributes nothing */
        /* ... unless the logits are NaN (a NaN query): the row must
         * come out NaN, not as a row with no visible key. */
        for (int c = 0; c < cols; c++)
            if (isnan(s[c]))
                l[i] = NAN;
        memset(s, 0, (size_t)cols * sizeof(float));
        if (pr)
            memset(pr, 0, (size_t)colsp * sizeof(uint16_t));
        return;
    }
    const float alpha = exp2f(m[i] - m_new); /* 0 on the first visible tile */
    /* P to bf16 pairs of keys, zero past cols (the padded keys of the value
     * tile are zero too, so they add nothing). The row sums l stay those of
     * the unrounded P: |O - O~| <= u_bf16 * max|V| per component. */
    float sum;
    if (pr && job->fused) {
        sum = k->exp2_sum_bf16(s, cols, fold ? job->qmul : 1.0f, m_new, pr);
    } else {
        sum = k->exp2_sum(s, cols, m_new);
        if (pr)
            k->narrow_bf16(s, cols, pr);
    }
    if (pr && colsp > cols)
        memset(pr + cols, 0, (size_t)(colsp - cols) * sizeof(uint16_t));
    l[i] = l[i] * alpha + sum;
    if (alpha != 1.0f)
        k->scale(o + (ptrdiff_t)i * dp, d, alpha);
    m[i] = m_new;
}

/* One tile for one head: S = Q K^T over `cols` keys, mask, online softmax,
 * O += P V. */
static void tile_head(const attn_job *job, attn_scratch *w, const tile_state *t, int hh, int rows)
{
    const stem_cpu_kernels *k = job->k;
    const int d = job->d, dp = job->dp, kt = job->kt, nr = job->nr, bs = job->bs;
    const int cols = t->cols, colsp = (cols + nr - 1) / nr * nr;
    float *o = w->o + (ptrdiff_t)hh * bs * dp;
    float *m = w->m + (ptrdiff_t)hh * bs, *l = w->l + (ptrdiff_t)hh * bs;
    uint64_t t0 = PH_NOW();
    if (job->bf16)
        job->gemm_bf16(rows, colsp, d / 2, w->qb + (ptrdiff_t)hh * bs * (d / 2), d / 2, t->kb,
                       (ptrdiff_t)(d / 2) * nr, w->s, kt, 0);
    else
        k->gemm_packed(rows, colsp, d, w->q + (ptrdiff_t)hh * bs * d, d, t->kp,
                       (ptrdiff_t)d * nr, w->s, kt, 0);
    PH_ADD(PH_S, t0);
    t0 = PH_NOW();
    for (int i = 0; i < rows; i++)
        softmax_row(job, w, t, o, m, l, i);
    PH_ADD(PH_SOFTMAX, t0);
    t0 = PH_NOW();
    if (job->pv_bf16)
        job->gemm_bf16(rows, dp, colsp / 2, w->pb, kt / 2, t->vb, (ptrdiff_t)(kt / 2) * nr, o,
                       dp, 1);
    else
        k->gemm_packed(rows, dp, cols, w->s, kt, t->vp, (ptrdiff_t)kt * nr, o, dp, 1);
    PH_ADD(PH_PV, t0);
}

/* tile_head on the bf16 P V path in strips of job->pipe rows (a multiple of
 * 16, so every row falls on the same side of the tiles' 16-row blocks as in
 * one call): while strip r's softmax rows run, the 32-column blocks of strip
 * r + 1's S and of strip r - 1's O += P V go to the tile unit in between,
 * one block per few rows. Each output element sees the same operations in
 * the same order as in tile_head (S, then its row's softmax and rescale,
 * then P V), only interleaved across rows. */
static void tile_head_pipe(const attn_job *job, attn_scratch *w, const tile_state *t, int hh,
                           int rows)
{
    const int d = job->d, dp = job->dp, kt = job->kt, nr = job->nr, bs = job->bs;
    if (rows <= 0)
        return;
    const int sr = job->pipe, ns = (rows + sr - 1) / sr;
    const int colsp = (t->cols + nr - 1) / nr * nr;
    const int n_s = colsp / nr, n_pv = dp / nr; /* 32-column blocks of S and of O */
    const uint32_t *qb = w->qb + (ptrdiff_t)hh * bs * (d / 2);
    float *o = w->o + (ptrdiff_t)hh * bs * dp;
    float *m = w->m + (ptrdiff_t)hh * bs, *l = w->l + (ptrdiff_t)hh * bs;
    /* block u < n_s: S of strip sr_s, else O of strip sr_pv */
#define PIPE_BLOCK(strip, u, is_s)                                                              \
    do {                                                                                       \
        const int r0_ = (strip) * sr, rn_ = rows - r0_ < sr ? rows - r0_ : sr;                 \
        if (is_s)                                                                              \
            job->gemm_bf16(rn_, nr, d / 2, qb + (ptrdiff_t)r0_ * (d / 2), d / 2,              \
                           t->kb + (ptrdiff_t)(u) * (d / 2) * nr, (ptrdiff_t)(d / 2) * nr,     \
                           w->s + (ptrdiff_t)r0_ * kt + (ptrdiff_t)(u) * nr, kt, 0);          \
        else                                                                                   \
            job->gemm_bf16(rn_, nr, colsp / 2, w->pb + (ptrdiff_t)r0_ * (kt / 2), kt / 2,     \
                           t->vb + (ptrdiff_t)(u) * (kt / 2) * nr, (ptrdiff_t)(kt / 2) * nr,   \
                           o + (ptrdiff_t)r0_ * dp + (ptrdiff_t)(u) * nr, dp, 1);             \
    } while (0)
    for (int u = 0; u < n_s; u++)
        PIPE_BLOCK(0, u, 1);
    for (int r = 0; r < ns; r++) {
        const int r0 = r * sr, rn = rows - r0 < sr ? rows - r0 : sr;
        const int ps = r + 1 < ns ? n_s : 0, pv = r > 0 ? n_pv : 0, np = ps + pv;
        int i = 0;
        for (int u = 0; u < np; u++) {
            if (u < ps)
                PIPE_BLOCK(r + 1, u, 1);
            else
                PIPE_BLOCK(r - 1, u - ps, 0);
            const int until = (int)((int64_t)(u + 1) * rn / np);
            for (; i < until; i++)
                softmax_row(job, w, t, o, m, l, r0 + i);
        }
        for (; i < rn; i++)
            softmax_row(job, w, t, o, m, l, r0 + i);
    }
    for (int u = 0; u < n_pv; u++)
        PIPE_BLOCK(ns - 1, u, 0);
#undef PIPE_BLOCK
}

/* Keys [cols, colsp) of the pair-packed value tile to zero: a short tile's
 * padding must not carry an earlier tile's values (a NaN there times a zero
 * weight would still be NaN). */
static void clear_value_pad(const attn_job *job, attn_scratch *w, int cols)
{
    const int nr = job->nr, kt = job->kt;
    const int colsp = (cols + nr - 1) / nr * nr;
    if (cols == colsp)
        return;
    uint16_t *vb16 = (uint16_t *)w->vb;
    for (int pnl = 0; pnl < job->dp / nr; pnl++) {
        uint16_t *panel = vb16 + (ptrdiff_t)pnl * (kt / 2) * nr * 2;
        if (cols & 1) /* the high half of the last pair */
            for (int j = 0; j < nr; j++)
                panel[((ptrdiff_t)(cols / 2) * nr + j) * 2 + 1] = 0;
        const int p0 = (cols + 1) / 2;
        memset(panel + (ptrdiff_t)p0 * nr * 2, 0, (size_t)(colsp / 2 - p0) * nr * 2 * sizeof(uint16_t));
    }
}

static void flush_tile(const attn_job *job, attn_scratch *w, tile_state *t, int rows)
{
    if (job->pv_bf16 && t->vb == w->vb) /* prepacked tiles have zero padding */
        clear_value_pad(job, w, t->cols);
    for (int hh = 0; hh < job->gh; hh++)
        if (t->heads & (1u << hh)) {
            if (job->pipe > 0)
                tile_head_pipe(job, w, t, hh, rows);
            else
                tile_head(job, w, t, hh, rows);
        }
    t->cols = 0;
    t->diag_col = -1;
    t->heads = 0;
}

/* Two bf16 values (exact in f32, as widened from bf16) as one pair. */
static inline uint32_t bf16_pair(float lo, float hi)
{
    uint32_t a, b;
    memcpy(&a, &lo, sizeof a);
    memcpy(&b, &hi, sizeof b);
    return (a >> 16) | (b & 0xffff0000u);
}

/* Row tok of a bf16 tensor with contiguous rows, as stored; NULL otherwise. */
static const uint16_t *bf16_row(const stem_tensor *t, int64_t b, int64_t h, int64_t tok)
{
    if (t->dtype != STEM_DTYPE_BF16 || t->strides[3] != 1)
        return NULL;
    return (const uint16_t *)(const void *)stem_cpu_row(t, b, h, tok);
}

/* Value row of key c into the pair-packed tile: dimension j of key c is half
 * c % 2 of pair (c / 2, j) in panel j / nr. */
static void load_value_pairs(const attn_job *job, attn_scratch *w, uint32_t *vb, int64_t b,
                             int64_t kh, int64_t tok, int c)
{
    const int d = job->d, nr = job->nr, kt = job->kt;
    const uint16_t *x = bf16_row(job->v, b, kh, tok);
    if (!x) /* strided rows: widen (exact), the top halves are the bf16 values */
        stem_cpu_widen_row(job->k, job->v, b, kh, tok, d, w->row, 1.0f);
    uint16_t *vb16 = (uint16_t *)vb + ((ptrdiff_t)(c / 2) * nr) * 2 + (c & 1);
    for (int p = 0; p < d; p++) {
        uint16_t val;
        if (x) {
            val = x[p];
        } else {
            uint32_t u;
            memcpy(&u, w->row + p, sizeof u);
            val = (uint16_t)(u >> 16);
        }
        vb16[((ptrdiff_t)(p / nr) * (kt / 2) * nr + p % nr) * 2] = val;
    }
}

/* Values of keys tok0.. into tile columns c0 .. c0 + n - 1 of the
 * pair-packed tile: two stored rows at a time into whole 32-bit pairs (a
 * loop the compiler vectorizes) where both are at hand, else one half. */
static void load_values_bf16(const attn_job *job, attn_scratch *w, uint32_t *vb, int64_t b,
                             int64_t kh, int64_t tok0, int c0, int n)
{
    const int d = job->d, nr = job->nr, kt = job->kt;
    for (int i = 0; i < n;) {
        const int c = c0 + i;
        const uint16_t *x0 = bf16_row(job->v, b, kh, tok0 + i);
        const uint16_t *x1 = i + 1 < n ? bf16_row(job->v, b, kh, tok0 + i + 1) : NULL;
        if (c % 2 == 0 && x0 && x1) {
            uint32_t *dst = vb + (ptrdiff_t)(c / 2) * nr;
            for (int p0 = 0; p0 < d; p0 += nr) {
                uint32_t *o = dst + (ptrdiff_t)(p0 / nr) * (kt / 2) * nr;
                const uint16_t *a = x0 + p0, *e = x1 + p0;
                const int take = d - p0 < nr ? d - p0 : nr;
                for (int q = 0; q < take; q++)
                    o[q] = (uint32_t)a[q] | (uint32_t)e[q] << 16;
            }
            i += 2;
        } else {
            load_value_pairs(job, w, vb, b, kh, tok0 + i, c);
            i++;
        }
    }
}

/* Widens key tok into tile column c: K into its key panel (kb, pairs of
 * dimensions, on the bf16 path; kp, stride nr, on the f32 path), V into the
 * dimension panels of vp (nr values each) unless P V runs on bf16 (then
 * load_values_bf16 packs V). */
static void load_key(const attn_job *job, attn_scratch *w, uint32_t *kb, float *kp, float *vp,
                     int64_t b, int64_t kh, int64_t tok, int c)
{
    const int d = job->d, nr = job->nr, kt = job->kt;
    if (job->bf16) {
        uint32_t *kdst = kb + (ptrdiff_t)(c / nr) * (d / 2) * nr + c % nr;
        const uint16_t *x = bf16_row(job->kk, b, kh, tok);
        if (x) { /* the stored pairs are the packed pairs */
            for (int p = 0; p < d / 2; p++)
                kdst[(ptrdiff_t)p * nr] = (uint32_t)x[2 * p] | (uint32_t)x[2 * p + 1] << 16;
        } else {
            stem_cpu_widen_row(job->k, job->kk, b, kh, tok, d, w->row, 1.0f);
            for (int p = 0; p < d / 2; p++)
                kdst[(ptrdiff_t)p * nr] = bf16_pair(w->row[2 * p], w->row[2 * p + 1]);
        }
    } else {
        stem_cpu_widen_row(job->k, job->kk, b, kh, tok, d, w->row, 1.0f);
        float *kdst = kp + (ptrdiff_t)(c / nr) * d * nr + c % nr;
        for (int p = 0; p < d; p++)
            kdst[(ptrdiff_t)p * nr] = w->row[p];
    }
    if (job->pv_bf16)
        return;
    stem_cpu_widen_row(job->k, job->v, b, kh, tok, d, w->row, 1.0f);
    float *dst = vp + (ptrdiff_t)c * nr;
    for (int p = 0; p < d; p += nr) { /* a loop, not memcpy: 32-byte pieces */
        float *o = dst + (ptrdiff_t)(p / nr) * kt * nr;
        const float *x = w->row + p;
        const int take = d - p < nr ? d - p : nr;
        for (int i = 0; i < take; i++)
            o[i] = x[i];
    }
}

/* Length of head h's list for row r, clamped to [0, nk]. */
static int64_t list_count(const attn_job *job, int64_t b, int64_t h, int64_t r)
{
    int64_t cnt = *stem_cpu_i32_at(job->count, b, h, r, 0);
    if (cnt < 0)
        cnt = 0;
    if (cnt > job->n_blocks)
        cnt = job->n_blocks;
    return cnt;
}

/* 32-bit units of a prepacked tile's K part (bf16 pairs or floats); V follows. */
static int64_t packed_k_u32(const attn_job *job)
{
    return (int64_t)job->kt * (job->bf16 ? job->d / 2 : job->d);
}

/* t's key and value tiles: keys off.. (a multiple of nr) of a prepacked tile,
 * in the job's layout (bf16 pairs or f32); the panel strides stay the whole
 * tile's. */
static void point_packed(const attn_job *job, tile_state *t, const uint32_t *tile, int off)
{
    const int d = job->d, nr = job->nr;
    const uint32_t *v = tile + packed_k_u32(job);
    if (job->bf16) {
        t->kb = tile + (ptrdiff_t)(off / nr) * (d / 2) * nr;
        t->vb = v + (ptrdiff_t)(off / 2) * nr;
    } else {
        t->kp = (const float *)(const void *)tile + (ptrdiff_t)(off / nr) * d * nr;
        t->vp = (const float *)(const void *)v + (ptrdiff_t)off * nr;
    }
}

static void run_item(const attn_job *job, attn_scratch *w, int64_t id)
{
    const int bs = job->bs, d = job->d, dp = job->dp, kt = job->kt;
    const int64_t row = id % job->n_rows, I = job->row0 + row; /* absolute query block */
    int64_t r = id / job->n_rows;
    const int64_t chunk = r % job->chunks;
    r /= job->chunks;
    const int64_t kh = r % job->hkv, b = r / job->hkv;
    const int64_t h0 = kh * job->group + chunk * job->gh;
    const int nh = (int)(job->group - chunk * job->gh < job->gh ? job->group - chunk * job->gh
                                                                 : job->gh);
    /* The call's queries in block I: positions [p0, p1), rows p - q_offset of q. */
    const int64_t p0 = I * bs > job->q_offset ? I * bs : job->q_offset;
    const int64_t p1 = (I + 1) * bs < job->n_tokens ? (I + 1) * bs : job->n_tokens;
    const int64_t q0 = p0 - job->q_offset;
    const int rows = (int)(p1 - p0);

    /* Which heads list which blocks. */
    memset(w->heads, 0, (size_t)(I + 1) * sizeof(uint32_t));
    for (int hh = 0; hh < nh; hh++) {
        const int64_t cnt = list_count(job, b, h0 + hh, row);
        int64_t prev = -1;
        for (int64_t p = 0; p < cnt; p++) {
            const int64_t J = *stem_cpu_i32_at(job->index, b, h0 + hh, row, p);
            /* The core checks lists; still never read outside causal blocks. */
            if (J <= prev || J > I)
                continue;
            prev = J;
            w->heads[J] |= 1u << hh;
        }
    }

    for (int hh = 0; hh < nh; hh++) {
        float *q = w->q + (ptrdiff_t)hh * bs * d;
        for (int i = 0; i < rows; i++) {
            if (job->bf16) {
                uint32_t *qb = w->qb + ((ptrdiff_t)hh * bs + i) * (d / 2);
                stem_cpu_widen_row(job->k, job->q, b, h0 + hh, q0 + i, d, w->row, 1.0f);
                for (int p = 0; p < d / 2; p++)
                    qb[p] = bf16_pair(w->row[2 * p], w->row[2 * p + 1]);
            } else {
                stem_cpu_widen_row(job->k, job->q, b, h0 + hh, q0 + i, d, q + (ptrdiff_t)i * d,
                                   job->qmul);
            }
        }
        memset(w->o + (ptrdiff_t)hh * bs * dp, 0, (size_t)rows * dp * sizeof(float));
        for (int i = 0; i < rows; i++) {
            w->m[hh * bs + i] = -INFINITY;
            w->l[hh * bs + i] = 0.0f;
        }
    }

    if (job->hold)
        job->k->tiles_begin();
    tile_state t = {0, -1, 0, (int)(p0 - I * bs), 0, w->kb, w->vb, w->kp, w->vp};
    const uint32_t *base = job->packed ? job->packed + (r - job->pack_bk0) *
                                                           job->pack_tiles * job->tile_u32
                                       : NULL;
    if (job->packed && kt <= bs) {
        /* Block size a multiple of kt: every tile is kt keys of one block
         * (fewer only at the end of the keys), as the loop below builds them. */
        for (int64_t J = 0; J <= I; J++) {
            const uint32_t heads = w->heads[J];
            const int64_t k0 = J * bs;
            const int kn = (int)(job->n_tokens - k0 < bs ? job->n_tokens - k0 : bs);
            for (int j = 0; heads && j < kn; j += kt) {
                const uint32_t *tile = base + ((k0 + j) / kt) * job->tile_u32;
                t.cols = kn - j < kt ? kn - j : kt;
                t.diag_col = J == I ? 0 : -1;
                t.diag_key0 = j;
                t.heads = heads;
                point_packed(job, &t, tile, 0);
                flush_tile(job, w, &t, rows);
            }
        }
    } else if (job->packed) {
        /* kt a multiple of the block size (and the block size of the panel
         * width): a packed tile holds kt / bs blocks. Each run of adjacent
         * blocks of one tile that the same heads list is one tile_state,
         * pointing into the packed tile at the run's first key. */
        const int64_t per = kt / bs;
        for (int64_t J = 0; J <= I; J++) {
            const uint32_t heads = w->heads[J];
            if (!heads)
                continue;
            int64_t J2 = J; /* last block of the run */
            while (J2 < I && (J2 + 1) % per != 0 && w->heads[J2 + 1] == heads &&
                   (J2 + 1) * bs < job->n_tokens) /* block J2 whole, J2 + 1 in the keys */
                J2++;
            const int64_t k0 = J * bs, end = (J2 + 1) * bs;
            const int off = (int)(k0 % kt); /* a multiple of nr */
            const uint32_t *tile = base + (k0 / kt) * job->tile_u32;
            t.cols = (int)((end < job->n_tokens ? end : job->n_tokens) - k0);
            t.diag_col = J2 == I ? (int)((I - J) * bs) : -1;
            t.diag_key0 = 0;
            t.heads = heads;
            point_packed(job, &t, tile, off);
            flush_tile(job, w, &t, rows);
            J = J2;
        }
    }
    for (int64_t J = 0; !job->packed && J <= I; J++) {
        const uint32_t heads = w->heads[J];
        if (!heads)
            continue;
        if (t.cols > 0 && heads != t.heads) /* a tile serves one set of heads */
            flush_tile(job, w, &t, rows);
        t.heads = heads;
        const int64_t k0 = J * bs;
        const int kn = (int)(job->n_tokens - k0 < bs ? job->n_tokens - k0 : bs);
        for (int j = 0; j < kn;) {
            if (t.cols == kt) {
                flush_tile(job, w, &t, rows);
                t.heads = heads;
            }
            const int take = kn - j < kt - t.cols ? kn - j : kt - t.cols;
            if (J == I && t.diag_col < 0) {
                t.diag_col = t.cols;
                t.diag_key0 = j;
            }
            for (int c = 0; c < take; c++)
                load_key(job, w, w->kb, w->kp, w->vp, b, kh, k0 + j + c, t.cols + c);
            if (job->pv_bf16)
                load_values_bf16(job, w, w->vb, b, kh, k0 + j, t.cols, take);
            t.cols += take;
            j += take;
        }
    }
    if (t.cols > 0)
        flush_tile(job, w, &t, rows);
    if (job->hold)
        job->k->tiles_end();

    for (int hh = 0; hh < nh; hh++)
        for (int i = 0; i < rows; i++) {
            const float li = w->l[hh * bs + i];
            const float inv = li > 0.0f ? 1.0f / li : isnan(li) ? li : 0.0f; /* no visible key: 0 */
            const float *oi = w->o + (ptrdiff_t)hh * bs * dp + (ptrdiff_t)i * dp;
            if (job->fast_store) { /* stem_cpu_store_row's rounding, in the vector kernel */
                for (int p = 0; p < d; p++)
                    w->row[p] = oi[p] * inv;
                job->k->narrow_bf16(w->row, d,
                                    (uint16_t *)stem_tensor_host_ptr(job->out, b, h0 + hh,
                                                                     q0 + i, 0));
            } else {
                stem_cpu_store_row(job->out, b, h0 + hh, q0 + i, d, oi, inv);
            }
            if (job->lse) /* natural log of the denominator: (m + log2 l) ln 2 */
                *stem_cpu_f32_at(job->lse, b, h0 + hh, q0 + i, 0) =
                    li > 0.0f ? (w->m[hh * bs + i] + log2f(li)) * 0.69314718055994531f
                    : isnan(li) ? li
                                : -INFINITY;
        }
}

typedef struct attn_item {
    int64_t cost, id;
} attn_item;

/* Heaviest first; equal costs in id order, so the order is reproducible. */
static int item_cmp(const void *pa, const void *pb)
{
    const attn_item *a = pa, *b = pb;
    if (a->cost != b->cost)
        return a->cost > b->cost ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Query heads per item: the whole group when tiles are whole blocks (block
 * size >= key tile), since then no head ever waits on columns it did not
 * list; with smaller blocks only when every head lists the same blocks
 * (dense), else one head per item keeps tiles full. Bounded by the per-thread
 * tile budget. Depends on the shape only, never on the thread count, so
 * results do not change with it. */
static int heads_per_item(const stem_plan *plan, int group, int bs, int d, int dp, int kt)
{
    if (bs < kt && !plan->dense)
        return 1;
    const size_t per_head = (size_t)bs * (size_t)(d + dp) * sizeof(float);
    int64_t gh = (int64_t)(HEAD_STATE_BYTES / per_head);
    if (gh < 1)
        gh = 1;
    if (gh > MAX_CHUNK_HEADS)
        gh = MAX_CHUNK_HEADS;
    if (gh > group)
        gh = group;
    /* Equal chunks: 8 heads over a group of 12 become 6 + 6, not 8 + 4. */
    const int64_t chunks = (group + gh - 1) / gh;
    return (int)((group + chunks - 1) / chunks);
}

/* Integer environment switch; dflt when unset or not a number. */
static int env_int(const char *name, int dflt)
{
    const char *e = getenv(name);
    if (!e || !*e)
        return dflt;
    char *end = NULL;
    const long v = strtol(e, &end, 10);
    if (!end || *end || v < -1000000 || v > 1000000)
        return dflt;
    return (int)v;
}

/* Prepacked K and V stay within this many MiB (STEM_CPU_PREPACK_MB; 128 MiB
 * at 32K keys, 8 KV heads, d 128); more KV heads run in groups that each
 * pack, then attend. */
#define PREPACK_MB 256

/* need[g] = 1 for each key tile g of pair (b, kh) that some head of its
 * group lists for some row, filtered as run_item filters the lists. */
static void mark_tiles(const attn_job *job, uint8_t *need, int64_t b, int64_t kh)
{
    const int bs = job->bs, kt = job->kt;
    for (int64_t h = kh * job->group; h < (kh + 1) * job->group; h++)
        for (int64_t row = 0; row < job->n_rows; row++) {
            const int64_t I = job->row0 + row, cnt = list_count(job, b, h, row);
            int64_t prev = -1;
            for (int64_t p = 0; p < cnt; p++) {
                const int64_t J = *stem_cpu_i32_at(job->index, b, h, row, p);
                if (J <= prev || J > I)
                    continue;
                prev = J;
                const int64_t k0 = J * bs;
                const int64_t kn = job->n_tokens - k0 < bs ? job->n_tokens - k0 : bs;
                for (int64_t j = 0; j < kn; j += kt)
                    need[(k0 + j) / kt] = 1;
            }
        }
}

/* Key tile g of pair (b, kh) into dst, in the layouts run_item's own tiles
 * have, padding zero: bf16 path K as kb, then V as vb; f32 path K as kp,
 * then V as vp. */
static void pack_tile(const attn_job *job, attn_scratch *w, uint32_t *dst, int64_t b, int64_t kh,
                      int64_t g)
{
    const int d = job->d, kt = job->kt;
    const int64_t k0 = g * kt, k_u32 = packed_k_u32(job);
    const int cols = (int)(job->n_tokens - k0 < kt ? job->n_tokens - k0 : kt);
    uint32_t *v = dst + k_u32;
    if (cols < kt)
        memset(dst, 0, (size_t)job->tile_u32 * sizeof(uint32_t));
    else if (job->dp > d) /* dimensions past d */
        memset(v, 0, (size_t)(job->tile_u32 - k_u32) * sizeof(uint32_t));
    float *kp = (float *)(void *)dst, *vp = (float *)(void *)v; /* the f32 layout */
    for (int c = 0; c < cols; c++)
        load_key(job, w, dst, kp, vp, b, kh, k0 + c, c);
    if (job->pv_bf16)
        load_values_bf16(job, w, v, b, kh, k0, 0, cols);
}

stem_status stem_cpu_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                               const stem_tensor *k, const stem_tensor *v,
                               const stem_tensor *index, const stem_tensor *count,
                               const stem_tensor *out)
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
    job.lse = pass->lse;
    job.n_tokens = pass->kv_len;
    job.n_blocks = pass->n_keys;
    job.q_offset = pass->q_offset;
    job.row0 = pass->row0;
    job.n_rows = pass->n_rows;
    job.hkv = pass->num_kv_heads;
    job.bs = plan->cfg.block_size;
    job.d = (int)plan->desc.head_dim;
    job.nr = ctx->k->nr;
    job.dp = (job.d + job.nr - 1) / job.nr * job.nr;
    const int kt_env = env_int("STEM_CPU_KEY_TILE", 0);
    job.kt = kt_env >= 16 && kt_env <= 512 ? kt_env : key_tile(job.d);
    job.kt = (job.kt + job.nr - 1) / job.nr * job.nr;
    job.group = (int)(pass->num_q_heads / pass->num_kv_heads); /* heads per KV head in the pass */
    job.gh = heads_per_item(plan, job.group, job.bs, job.d, job.dp, job.kt);
    job.chunks = (job.group + job.gh - 1) / job.gh;
    job.qmul = plan->scale * 1.4426950408889634f;
    /* bf16 products are exact in f32, so the dot product keeps S as exact
     * as the f32 path. P rounded to bf16 for P V moves each output
     * component by at most 2^-8 max|V| (docs/semantics.md, section 6), the
     * tolerance bf16 inputs have on every backend. */
    job.bf16 = ctx->k->gemm_bf16 != NULL && q->dtype == STEM_DTYPE_BF16 &&
               k->dtype == STEM_DTYPE_BF16 && job.d % 2 == 0;
    job.pv_bf16 = job.bf16 && v->dtype == STEM_DTYPE_BF16;
    /* The issue-19 paths (header comment); the fused softmax and the lazy
     * rescaling change values in rounding only, the others not at all. */
    const int legacy = env_int("STEM_CPU_ATTN_LEGACY", 0) != 0;
    job.fused = job.pv_bf16 && !legacy && env_int("STEM_CPU_FUSED_SOFTMAX", 1) != 0;
    job.lazy = job.fused && ctx->k->exp2_sum_bf16_max && env_int("STEM_CPU_LAZY_RESCALE", 1) != 0;
    job.hold = job.bf16 && !legacy && ctx->k->gemm_bf16_held && ctx->k->tiles_begin &&
               ctx->k->tiles_end && env_int("STEM_CPU_AMX_HOLD", 1) != 0;
    job.gemm_bf16 = job.hold ? ctx->k->gemm_bf16_held : ctx->k->gemm_bf16;
    job.pipe = job.pv_bf16 && !legacy ? env_int("STEM_CPU_PIPE", 0) : 0;
    job.pipe = job.pipe > 0 ? (job.pipe + 15) / 16 * 16 : 0; /* whole 16-row tile blocks */
    job.fast_store = !legacy && out->dtype == STEM_DTYPE_BF16 && out->strides[3] == 1;
    job.packed = NULL;
    job.pack_bk0 = 0;
    job.pack_tiles = 0;
    /* A prepacked tile in 32-bit units: bf16 pairs, or (f32 path) floats. */
    job.tile_u32 = packed_k_u32(&job) + (int64_t)job.dp * (job.bf16 ? job.kt / 2 : job.kt);
    /* Tiles of whole blocks; several blocks a tile only when asked for
     * (STEM_CPU_KEY_TILE), so the default tiles stay those measured. */
    const int whole_blocks = job.bs % job.kt == 0 ||
                             (kt_env && job.kt % job.bs == 0 && job.bs % job.nr == 0);
    /* bf16 S and P V, or both in f32 (f32 and f16 inputs); not the mixed
     * path (bf16 S, f32 P V), whose tiles hold bf16 K and f32 V. */
    const int prepack = (job.pv_bf16 || !job.bf16) && !legacy && whole_blocks &&
                        env_int("STEM_CPU_PREPACK", 1) != 0;

    const int64_t n = pass->n_rows;
    const int64_t items = pass->batch * job.hkv * job.chunks * n;
    const int threads = ctx->threads;

    /* Every thread's tiles and the item order up front, so running out of
     * memory leaves the output untouched. */
    if (items <= 0)
        return STEM_OK;
    attn_item *order = malloc((size_t)items * sizeof *order);
    attn_scratch *w = calloc((size_t)threads, sizeof *w);
    int ok = order != NULL && w != NULL;
    for (int t = 0; ok && t < threads; t++)
        ok = scratch_alloc(&w[t], &job);
    if (!ok) {
        for (int t = 0; w && t < threads; t++)
            scratch_free(&w[t]);
        free(w);
        free(order);
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cpu attention: out of memory for tiles");
    }

    /* Prepacking: tiles that the pass's rows can see, pairs per group
     * within PREPACK_BYTES. Without the memory it falls back to packing per
     * item (same values), never to an error. */
    const int64_t n_bk = pass->batch * job.hkv;
    int64_t per_group = n_bk;
    uint32_t *packed = NULL;
    uint8_t *need = NULL;
    if (prepack) {
        const int64_t last = (job.row0 + n) * job.bs; /* keys the last row's block ends at */
        const int64_t kv_end = last < job.n_tokens ? last : job.n_tokens;
        job.pack_tiles = (kv_end + job.kt - 1) / job.kt;
        const int64_t bytes = job.pack_tiles * job.tile_u32 * (int64_t)sizeof(uint32_t);
        if (bytes > 0) {
            int mb = env_int("STEM_CPU_PREPACK_MB", PREPACK_MB);
            mb = mb < 0 ? 0 : mb;
            per_group = ((int64_t)mb << 20) / bytes;
            if (per_group < 1)
                per_group = 1;
            if (per_group > n_bk)
                per_group = n_bk;
            if ((uint64_t)per_group * (uint64_t)bytes <= (uint64_t)SIZE_MAX / 2) {
                packed = stem_cpu_alloc((size_t)(per_group * bytes));
                need = malloc((size_t)(per_group * job.pack_tiles));
            }
        }
        if (!packed || !need) {
            free(packed);
            free(need);
            packed = NULL;
            need = NULL;
            per_group = n_bk;
        }
    }

    /* Cost of an item ~ blocks its heads listed (each a tile of GEMMs). */
    for (int64_t it = 0; it < items; it++) {
        const int64_t row = it % n, I = job.row0 + row, r = it / n;
        const int64_t chunk = r % job.chunks, bk = r / job.chunks; /* bk = b * Hkv + kh */
        const int64_t b = bk / job.hkv, h0 = (bk % job.hkv) * job.group + chunk * job.gh;
        const int64_t nh = job.group - chunk * job.gh < job.gh ? job.group - chunk * job.gh
                                                               : job.gh;
        int64_t cost = 0;
        for (int64_t h = h0; h < h0 + nh; h++) {
            const int64_t c = list_count(&job, b, h, row);
            cost += c < I + 1 ? c : I + 1;
        }
        order[it].cost = cost;
        order[it].id = it;
    }

    /* Item ids run b, kh, chunk, row from the slowest: a group of pairs is
     * one range of ids, sorted on its own (one group: the whole order). */
    const int64_t per_bk = job.chunks * n;
    for (int64_t g0 = 0; g0 < n_bk; g0 += per_group) {
        const int64_t g1 = g0 + per_group < n_bk ? g0 + per_group : n_bk;
        const int64_t lo = g0 * per_bk, hi = g1 * per_bk;
        qsort(order + lo, (size_t)(hi - lo), sizeof *order, item_cmp);
        if (packed) {
            const int64_t nt = job.pack_tiles;
            memset(need, 0, (size_t)((g1 - g0) * nt));
            STEM_CPU_PRAGMA(parallel for num_threads(threads) schedule(dynamic, 1))
            for (int64_t bk = g0; bk < g1; bk++)
                mark_tiles(&job, need + (bk - g0) * nt, bk / job.hkv, bk % job.hkv);
            STEM_CPU_PRAGMA(parallel for num_threads(threads) schedule(dynamic, 4))
            for (int64_t x = 0; x < (g1 - g0) * nt; x++)
                if (need[x]) {
                    const int64_t bk = g0 + x / nt;
                    const uint64_t t0 = PH_NOW();
                    pack_tile(&job, &w[stem_cpu_thread_id()], packed + x * job.tile_u32,
                              bk / job.hkv, bk % job.hkv, x % nt);
                    PH_ADD(PH_PACK, t0);
                }
            job.packed = packed;
            job.pack_bk0 = g0;
        }
        STEM_CPU_PRAGMA(parallel for num_threads(threads) schedule(dynamic, 1))
        for (int64_t it = lo; it < hi; it++) {
            const uint64_t t0 = PH_NOW();
            run_item(&job, &w[stem_cpu_thread_id()], order[it].id);
            PH_ADD(PH_ITEM, t0);
        }
    }
    free(packed);
    free(need);

    for (int t = 0; t < threads; t++)
        scratch_free(&w[t]);
    free(w);
    free(order);
    return STEM_OK;
}
