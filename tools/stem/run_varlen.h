/* stem run's varlen mode (run_varlen.c). */
#ifndef STEM_TOOL_RUN_VARLEN_H
#define STEM_TOOL_RUN_VARLEN_H

#include "npy.h"
#include "stem.h"
#include "tool.h"

#define RUN_MAX_SEQS 1024

typedef struct run_varlen_args {
    const stem_config *cfg;
    float scale;
    int32_t layer;
    const char *outdir;            /* exists */
    int64_t seq_lens[RUN_MAX_SEQS]; /* --seq-lens (one per batch entry), or none: N */
    int nseq_lens;
    int64_t page_size;             /* --page-size (0: K/V stay in the inputs) */
    int64_t prefix, q_len, prompt_len;
} run_varlen_args;

/* One varlen call over the batch entries of the inputs; 0 or 1 (printed). */
int run_varlen(const run_varlen_args *a, stem_context *ctx, const stem_device_info *dev,
               const npy_array in[3], const int64_t dims[3][4], stem_dtype dtype,
               stem_dtype out_dtype);

#endif
