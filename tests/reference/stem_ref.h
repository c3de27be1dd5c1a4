/*
 * The shared reference: scalar C, double accumulation, written from the
 * literal formulas of docs/semantics.md (strided antidiagonal sums, not the
 * phase-sum shortcut; dense softmax over the expanded block mask). It links
 * no libstem code: it only borrows the stem_config struct layout.
 *
 * Arrays are contiguous, row-major:
 *   q [B][Hq][N][d], k and v [B][Hkv][N][d]  (values already rounded to the
 *   storage dtype by the caller), scores [B][Hq][n][n], index [B][Hq][n][n]
 *   (ascending, padded with -1), count [B][Hq][n], out [B][Hq][N][d].
 */
#ifndef STEM_REF_H
#define STEM_REF_H

#include <stdint.h>

#include "stem.h"

typedef struct stem_ref_problem {
    int64_t batch, hq, hkv, n_tokens, head_dim;
    double scale;        /* softmax scale (1/sqrt(d) by default) */
    int32_t layer_index; /* -1 = unknown */
    const double *q, *k, *v;
} stem_ref_problem;

/* Number of blocks n = ceil(N / B). */
int64_t stem_ref_num_blocks(int64_t n_tokens, int32_t block_size);

/* k_start for the selector in cfg (STEM, STEM_PAPER, UNIFORM use it);
 * *dense = 1 when the layer keeps every causal block. */
int32_t stem_ref_k_start(const stem_config *cfg, int64_t n_tokens, int32_t layer_index,
                         int *dense);

/* Per-row budget [n] (section 4); returns 1 when dense (budget = n everywhere).
 * XATTENTION and DENSE fill n. */
int stem_ref_budget(const stem_config *cfg, int64_t n_tokens, int32_t layer_index,
                    int32_t *budget);

/* Block scores (section 3): -inf (or 0 for XATTENTION) above the diagonal. */
void stem_ref_scores(const stem_ref_problem *p, const stem_config *cfg, double *scores);

/* Selection (section 5) from scores. */
void stem_ref_select(const stem_ref_problem *p, const stem_config *cfg, const double *scores,
                     int32_t *index, int32_t *count);

/* The XAttention threshold rule on row I of masses W[0..I] (section 5); sets
 * keep[J] for the kept J <= I (clears nothing). diag_only = 1: the official
 * rule for a row whose query chunk starts at key block 0; 0: blocks 0 and I
 * forced (XATTENTION_STRICT, or XATTENTION with a query offset). */
void stem_ref_xattn_row(const double *W, int64_t I, double tau, int diag_only,
                        unsigned char *keep);

/* Exact attention over the expanded token mask (section 6). */
void stem_ref_attention(const stem_ref_problem *p, int32_t block_size, const int32_t *index,
                        const int32_t *count, double *out);

/* ---- Chunked and prefix-cached calls (q_len <= kv_len), docs/semantics.md
 * section 8. Query i sits at absolute position P + i, P = kv_len - q_len;
 * rows are absolute query blocks row0 = floor(P / B) .. nk - 1, nk =
 * ceil(kv_len / B). Selectors STEM, STEM_PAPER, UNIFORM, DENSE.
 *   q [B][Hq][M][d], k and v [B][Hkv][L][d], scores and index
 *   [B][Hq][rows][nk], count [B][Hq][rows], out [B][Hq][M][d], lse [B][Hq][M],
 *   vstats [B][Hkv][2] (mean, sd). */
typedef struct stem_ref_call {
    int64_t batch, hq, hkv, head_dim;
    int64_t q_len, kv_len; /* M <= L */
    int64_t prompt_len;    /* N >= L: the budget's prompt */
    double scale;
    int32_t layer_index;
    const double *q, *k, *v;
    const double *vstats; /* NULL: VISIBLE statistics; else PROVIDED (mean, sd) per KV head */
} stem_ref_call;

/* Rows of the call; *row0 = floor(P / B), *nk = ceil(L / B). */
int64_t stem_ref_call_rows(const stem_ref_call *c, int32_t block_size, int64_t *row0,
                           int64_t *nk);
/* Scores of the call's rows; vstats_out (may be NULL) gets the statistics used. */
void stem_ref_call_scores(const stem_ref_call *c, const stem_config *cfg, double *scores,
                          double *vstats_out);
void stem_ref_call_select(const stem_ref_call *c, const stem_config *cfg, const double *scores,
                          int32_t *index, int32_t *count);
/* lse may be NULL: natural log of each query's softmax denominator, -inf without keys. */
void stem_ref_call_attention(const stem_ref_call *c, int32_t block_size, const int32_t *index,
                             const int32_t *count, double *out, double *lse);

/* ---- Varlen batches and paged KV (docs/semantics.md section 9): sequence b
 * is one call of the section above (M_b = cu_q[b+1] - cu_q[b] queries, L_b
 * keys, prompt N_b), its keys read through its K/V store:
 *   BHND   key t of b = k[b][kh][t]            (k [B][Hkv][kv_rows][d])
 *   PACKED key t of b = k[kh][cu_kv[b] + t]    (k [Hkv][kv_rows][d])
 *   PAGED  key t of b = k[block_table[b][t / page_size]][kh][t % page_size]
 *                                             (k [pages][Hkv][page_size][d])
 * Outputs are packed: q, out [Hq][T_q][d], lse [Hq][T_q]; selection rows of b
 * at row_ptr[b] (rows_b = ceil(L_b/B) - floor(P_b/B), 0 when M_b = 0) of
 * scores, index [Hq][R][width] (columns from ceil(L_b/B) on untouched) and
 * count [Hq][R]; vstats [B][Hkv][2]. A sequence with M_b = 0 writes nothing. */
typedef struct stem_ref_seqs {
    int64_t batch, hq, hkv, head_dim;
    double scale;
    int32_t layer_index;
    const int64_t *cu_q;       /* [B+1] */
    const int64_t *kv_len;     /* [B] */
    const int64_t *prompt_len; /* [B], 0 = L_b; NULL = every L_b */
    const double *q;
    int kv_store;              /* STEM_KV_BHND, STEM_KV_PACKED, STEM_KV_PAGED */
    const double *k, *v;
    int64_t kv_rows;           /* BHND, PACKED */
    const int64_t *cu_kv;      /* PACKED [B+1] */
    int64_t page_size, table_cols;
    const int32_t *block_table; /* PAGED [B][table_cols] */
    const double *vstats;      /* NULL: VISIBLE; else PROVIDED [B][Hkv][2] */
} stem_ref_seqs;

/* Fills row_ptr [B+1]; returns R = row_ptr[B]. */
int64_t stem_ref_seqs_rows(const stem_ref_seqs *s, int32_t block_size, int64_t *row_ptr);
/* Scores, selection (on the reference's own scores), attention; scores,
 * lse and vstats_out may be NULL. */
void stem_ref_seqs_prefill(const stem_ref_seqs *s, const stem_config *cfg, int64_t width,
                           double *scores, int32_t *index, int32_t *count, double *out,
                           double *lse, double *vstats_out);

/* Eq. 4 of the paper, in blocks: C = n k - k^2/2 - k (1 - mu) (n - k) / 2. */
double stem_ref_eq4_cost(int64_t n, int32_t k_start, double mu);

#endif /* STEM_REF_H */
