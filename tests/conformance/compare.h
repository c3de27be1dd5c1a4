/* Comparing backend outputs with the reference: tolerances, list checks,
 * and the per-head parallel calls into the (single-threaded) reference. */
#ifndef CONF_COMPARE_H
#define CONF_COMPARE_H

#include <stddef.h>
#include <stdint.h>

#include "stem.h"
#include "stem_ref.h"

/* Reference stages, split into independent (batch, head) sub-problems and
 * run on all cores when OpenMP is available. Same results as one call. */
void conf_ref_scores(const stem_ref_problem *p, const stem_config *cfg, double *scores);
void conf_ref_select(const stem_ref_problem *p, const stem_config *cfg, const double *scores,
                     int32_t *index, int32_t *count);
void conf_ref_attention(const stem_ref_problem *p, int32_t block_size, const int32_t *index,
                        const int32_t *count, double *out);

/* A failure description, filled by the checks below (first problem only). */
typedef struct conf_diag {
    char msg[1024];
    double worst;     /* largest |got - want| / tol seen */
    long rows_sparse; /* selection rows that dropped a causal block (statistics) */
    long rows_tied;   /* rows accepted with a tie-zone difference */
} conf_diag;

/* Per-element tolerance for the block scores [B][Hq][n][n], from the f32
 * accumulation depth and the magnitude of the summed terms (and the value
 * bonus statistics), given the reference scores. */
void conf_score_tolerance(const stem_ref_problem *p, const stem_config *cfg,
                          const double *ref_scores, double *tol);

/* Scores: finite values within tol; -inf (0 for XATTENTION) exactly above the
 * diagonal. Returns 0 when they match. */
int conf_compare_scores(const stem_ref_problem *p, const stem_config *cfg, const double *got,
                        const double *ref, const double *tol, conf_diag *d);

/* Lists: count in [1, I+1], entries strictly ascending in [0, I], the
 * diagonal present, -1 after the count. Returns 0 when well-formed. */
int conf_check_lists(const stem_ref_problem *p, int64_t n, const int32_t *index,
                     const int32_t *count, conf_diag *d);

/* Compares selections row by row. `scores` are the values the selection
 * was made from; with tol == NULL the two selections must be identical
 * (XATTENTION: up to the rounding of the cumulative mass), else a block may
 * differ only when its score ties the row's selection boundary within tol. */
int conf_compare_selection(const stem_ref_problem *p, const stem_config *cfg, int64_t n,
                           const int32_t *budget, int plan_dense, const double *scores,
                           const double *tol, const int32_t *want_index,
                           const int32_t *want_count, const int32_t *got_index,
                           const int32_t *got_count, conf_diag *d);

/* Rows where XAttention's two threshold rules (official from key block 0,
 * and strict) select differently on the same masses [B][Hq][n][n] at the
 * config's tau, split by block 0's own test under the official rule:
 * *lag, block 0 passes it (the difference comes from the shifted running
 * sum); *sink, it fails (block 0 is kept only because rejected positions
 * point at it, while the strict rule counts its mass from the start). */
void conf_xattn_rule_split(const stem_ref_problem *p, const stem_config *cfg, int64_t n,
                           const double *scores, long *lag, long *sink);

/* Attention output [B][Hq][N][d] against the reference computed with the
 * same lists. loose_p: allow P rounded to the input dtype before P.V (GPU
 * MMA paths; the CPU's bf16 dot-product paths for bf16 inputs): adds
 * 2^-8 (bf16) or 2^-11 (f16) times max|V| (docs/semantics.md, section 6). */
int conf_compare_attention(const stem_ref_problem *p, int32_t block_size, const int32_t *index,
                           const int32_t *count, const double *ref, const double *got,
                           stem_dtype in_dtype, stem_dtype out_dtype, int loose_p, conf_diag *d);

#endif
