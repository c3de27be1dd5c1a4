/* Deterministic test and demo inputs: the same bytes on every platform. */
#ifndef STEM_SYNTH_H
#define STEM_SYNTH_H

#include <stdint.h>

typedef struct stem_rng {
    uint64_t state;
} stem_rng;

void stem_rng_seed(stem_rng *rng, uint64_t seed);
uint64_t stem_rng_next(stem_rng *rng);   /* splitmix64 */
double stem_rng_uniform(stem_rng *rng);  /* [0, 1) */
double stem_rng_normal(stem_rng *rng);   /* N(0, 1) */

typedef enum stem_synth_kind {
    STEM_SYNTH_RANDOM = 0,     /* i.i.d. N(0, 1) Q, K, V */
    STEM_SYNTH_STRUCTURED = 1  /* sinks, local band, vertical stripes, slash diagonals,
                                  high-norm V rows: attention with real block structure */
} stem_synth_kind;

/* q [B][Hq][N][d], k and v [B][Hkv][N][d], contiguous f32. Values are
 * O(1); structured inputs make Q.K/sqrt(d) span a few units so softmax is
 * peaked the way trained models are. */
void stem_synth_qkv(stem_synth_kind kind, uint64_t seed, int64_t batch, int64_t hq, int64_t hkv,
                    int64_t n_tokens, int64_t head_dim, float *q, float *k, float *v);

#endif
