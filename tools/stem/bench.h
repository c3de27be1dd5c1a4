/* The measurement shared by `stem bench` and `stem demo`: synthetic Q, K,
 * V at one shape, Stem stages timed separately, then dense through the
 * same kernels (selector DENSE), and the error of Stem against dense. */
#ifndef STEM_TOOL_BENCH_H
#define STEM_TOOL_BENCH_H

#include "stem.h"
#include "stem_synth.h"
#include "tool.h"

#define BENCH_MAX_N 32
#define BENCH_MAX_SEQS 256

typedef struct bench_shape {
    int64_t batch, hq, hkv, n, d;
    stem_dtype dtype; /* inputs and output */
    stem_synth_kind kind;
    uint64_t seed;
} bench_shape;

typedef struct bench_result {
    stem_plan_info info;
    double score_ms, select_ms, attn_ms, stem_ms; /* medians; stem_ms = median of sums */
    double dense_ms;                              /* dense attention stage, median */
    double density;                               /* kept / causal blocks */
    double rel_err;                               /* ||O_stem - O_dense|| / ||O_dense|| */
    double causal_gflop;                          /* 2*B*Hq*N^2*d / 1e9 */
    int has_dense;
} bench_result;

/* Command-line state of bench and demo (shape flags, timing, output). */
typedef struct bench_cli {
    tool_opts o;
    bench_shape shape;
    int64_t n[BENCH_MAX_N];
    int nn;
    int hq_set, hkv_set, d_set, dtype_set;
    int warmup, repeat; /* -1 = unset */
    int dense;          /* run the dense comparison */
    int markdown, json, quiet, trace;
    int64_t chunk, prefix; /* --chunk C / --prefix P: chunked mode (0 = off) */
    int64_t seq_lens[BENCH_MAX_SEQS]; /* --seq-lens: varlen mode */
    int nseq_lens;
    int32_t page_size;     /* --page-size: varlen mode with paged K/V (0 = off) */
} bench_cli;

void bench_cli_init(bench_cli *c);
/* 1 consumed, 0 not a bench option, -1 bad value (printed). */
int bench_parse_opt(bench_cli *c, int argc, char **argv, int *i);
/* Parses a whole bench/demo command line. Returns -1 to go on, else the
 * exit code (0 after --help, 2 on a bad option). */
int bench_cli_parse(bench_cli *c, int argc, char **argv, const char *cmd, void (*help)(void));
void bench_print_opts_help(void);

/* Synthetic Q, K, V of the shape (malloc'ed f32 arrays holding s->dtype
 * values in place): 0, or 1 after printing the error (the caller frees). */
int bench_inputs(const bench_shape *s, float **hq, float **hk, float **hv);
/* The fresh-prefill description of the shape (scale and layer from o). */
void bench_desc(const bench_shape *s, const tool_opts *o, stem_attention_desc *desc);

/* Runs one case on ctx. Progress goes to stderr unless quiet; with trace,
 * every run's stage times too (warm-ups included, marked). Returns 0, or 1
 * after printing the error. */
int bench_case(stem_context *ctx, const tool_opts *o, const bench_shape *s, int warmup, int repeat,
               int dense, int quiet, int trace, bench_result *r);

/* Chunked (or one prefix-cached) prefill of the same prompt against
 * one-shot (bench_chunk.c). */
typedef struct bench_chunk_result {
    int calls;
    double oneshot_ms, chunked_ms; /* medians; chunked = all calls */
    double rows_equal;             /* fraction of the calls' rows equal to one-shot rows */
    double rel_diff;               /* ||O_chunked - O_oneshot|| / ||O_oneshot|| */
} bench_chunk_result;
int bench_chunked(stem_context *ctx, const tool_opts *o, const bench_shape *s, int64_t chunk,
                  int64_t prefix, int warmup, int repeat, int quiet, bench_chunk_result *r);

/* One varlen call (packed queries; KV_PAGED pools of page_size tokens, or
 * KV_PACKED when 0) against the same sequences as separate calls
 * (bench_varlen.c). lens: nlens sequence lengths, or nlens = 0 for batch
 * sequences of s->n; prefix > 0: each sequence's queries are [prefix, L). */
typedef struct bench_varlen_result {
    int seqs;
    int64_t tokens;                /* queries of the call */
    double separate_ms, varlen_ms; /* medians */
    int bitwise;                   /* outputs equal bit for bit */
    double rel_diff;               /* ||O_varlen - O_separate|| / ||O_separate|| */
} bench_varlen_result;
int bench_varlen(stem_context *ctx, const tool_opts *o, const bench_shape *s,
                 const int64_t *lens, int nlens, int64_t prefix, int32_t page_size, int warmup,
                 int repeat, int quiet, bench_varlen_result *r);

#endif
