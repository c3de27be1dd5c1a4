/* The conformance case table: one list, run against every backend. */
#ifndef CONF_CASES_H
#define CONF_CASES_H

#include <stdint.h>

#include "harness.h"
#include "stem.h"
#include "stem_synth.h"

typedef enum conf_bufmode {
    CONF_BUF_SEPARATE = 0, /* one library buffer per tensor */
    CONF_BUF_SHARED,       /* q, k, v in one buffer; outputs in another */
    CONF_BUF_WRAP          /* like SHARED, over caller memory (stem_buffer_wrap_host) */
} conf_bufmode;

typedef enum conf_prefill {
    CONF_PREFILL_ALL = 0,  /* scores, index, count and out */
    CONF_PREFILL_OUT,      /* out only: the plan keeps the rest in its workspace */
    CONF_PREFILL_WS        /* out only, caller-provided workspace */
} conf_prefill;

typedef struct conf_case {
    char name[192];
    stem_config cfg;
    int64_t batch, hq, hkv, n_tokens, head_dim;
    stem_dtype in_dtype, out_dtype;
    conf_layout in_layout, out_layout; /* q/k/v, and out */
    conf_layout meta_layout;           /* scores, index, count */
    int offsets;                       /* non-zero byte offsets between tensors */
    conf_bufmode bufmode;
    stem_synth_kind kind;
    int ties;                          /* exact score ties instead of kind (see run_case.c) */
    int small_v;                       /* V scaled by 1/16: log ||V|| < 0 for the paper bonus */
    float softmax_scale;
    int32_t layer_index;
    conf_prefill prefill;
    int custom_lists;                  /* extra stem_attention run on synthetic lists */
    int xattn_split;                   /* XAttention: the reference masses must give rows where
                                          the official and strict rules differ, of both kinds
                                          (conf_xattn_rule_split) */
    uint64_t seed;
    double cost;                       /* estimated reference multiply-adds */
} conf_case;

/* Builds the table (level 1 = STEM_TEST_LEVEL=full). Returns the count;
 * *out is malloc'ed. */
int conf_build_cases(int level, conf_case **out);

/* Estimated reference cost of one case, in multiply-adds. */
double conf_case_cost(const conf_case *c);

#endif
