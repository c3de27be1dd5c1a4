/* stem eval, shared between its files: configurations, the attention hook
 * state, the scoring sums, the arguments and the run's state.
 *   cmd_eval.c            the driver: one window per text, the result table
 *   cmd_eval_args.c       --help and argument / configuration parsing
 *   cmd_eval_hook.c       every attention layer through libstem (+ Q/K/V dumps)
 *   cmd_eval_score.c      perplexity, KL and top-1 agreement of a window
 *   cmd_eval_cache.c      the dense hidden-state cache and its keys
 *   cmd_eval_generate.c   forwards, greedy continuation, logits dumps
 *   cmd_eval_provenance.c the commit recorded with each result
 *   cmd_eval_select.c     test-only block choices on the host (oracle, variants)
 *   cmd_eval_budget.c     the equal-cost uniform partner of a Stem schedule
 *   cmd_eval_task.c       --task passkey | needle | vartrack */
#ifndef STEM_CMD_EVAL_H
#define STEM_CMD_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "stem.h"
#include "tool.h"

#include "../model/lm.h"

#define EVAL_DEFAULT_MODEL ".model/SmolLM2-135M-Instruct.Q4_1.gguf"
#define EVAL_GEMMA3_MODEL ".model/gemma-3-270m-q4_k_m.gguf"
#define EVAL_MAX_CONFIGS 64
#define EVAL_MAX_TEXTS 8
/* test-only block choices made in the tool (cmd_eval_select.c), not library selectors */
#define EVAL_HOST_ORACLE 1  /* true softmax mass per block */
#define EVAL_HOST_MAXPOOL 2 /* Stem's antidiagonal score, max- instead of mean-pooled */
#define EVAL_HOST_ROWSOFTMAX 3 /* per-strided-row softmax mass of the antidiagonal logits */
#define EVAL_HOST_ADAPTIVE 4 /* Stem's block logits (stem_score), per-row mass threshold tau */
#define EVAL_HOST_MAXPOOL_ADAPTIVE 5 /* max-pooled antidiagonal logits, per-row mass threshold */

typedef struct eval_config {
    char label[96];
    stem_config cfg;
    int oracle;       /* EVAL_HOST_*: blocks chosen on the host under cfg's budget (test only) */
    int32_t match_k;  /* > 0: uniform_k = the equal-cost partner of Stem k_start match_k */
    int64_t chunk;    /* > 0: the prompt runs as chunked prefill, calls of `chunk` queries */
} eval_config;

typedef struct stem_call {
    stem_context *ctx;
    int heads_q, heads_kv, head_dim;
} stem_call;
/* The f32 fresh-prefill description of one attention call over `rows`
 * tokens (cmd_eval_hook.c). */
void eval_call_desc(const stem_call *sc, int64_t rows, int layer, stem_attention_desc *desc);

typedef struct hook {
    stem_call sc;
    stem_config cfg;            /* the configuration every layer runs */
    int oracle;                 /* cfg's budget, blocks chosen by true attention mass */
    int64_t chunk;              /* > 0: chunked prefill in calls of `chunk` queries */
    int64_t n;
    int64_t dense_from;         /* > 0: rows >= dense_from are dense (deployment mode) */
    double kept, causal;        /* kept / causal blocks summed over layers and heads */
    stem_status status;
    /* per-layer error of other configurations on these activations */
    const eval_config *err_cfgs;
    int n_err;
    double *err;                /* [n_err][n_layer] relative L2 error */
    double *err_density;        /* [n_err][n_layer] */
    double *err_halves;         /* [n_err][n_layer][2]: rows [0, n/2) and [n/2, n) */
    int64_t err_from;           /* first row compared */
    float *scratch;             /* [Hq][n][dh] */
    /* dumps */
    const char *dump_dir;
    const int64_t *dump_layers;
    int n_dump_layers, dump_kv_head, dump_q_heads;
    int failed_dump;
} hook;

typedef struct score_sums {
    double nll_dense, nll, kl, kl_max;
    int64_t top1_same, rows;
    /* the same over the window's second half, where budgets have decayed */
    double nll_dense_late, nll_late, kl_late;
    int64_t rows_late;
} score_sums;

typedef struct eval_args {
    tool_opts o;
    const char *model, *texts, *configs, *err_configs, *cache, *results;
    const char *dump_logits, *dump_qkv, *dump_ids;
    int64_t tokens, offset, score_from, generate, dense_from;
    /* retrieval tasks (cmd_eval_task.c) */
    const char *task, *lengths, *depths;
    int64_t keys, seed, needles, key_from;
    int64_t dump_layers[16];
    int n_dump_layers;
    int32_t dump_kv_head, dump_q_heads;
} eval_args;

typedef struct eval_state {
    lm_model model;
    lm_tokenizer *tok;
    hook h;
    char commit[64], date[32], device[512];
    uint64_t model_hash;
} eval_state;

/* cmd_eval_args.c: 0, 1 after --help, else 2 (message printed). */
int eval_parse_args(int argc, char **argv, eval_args *a);
/* ';'-separated selector[:key=value...] items over base; -1 on error (printed). */
int eval_parse_configs(const char *spec, const stem_config *base, eval_config *out, int cap,
                       int *count);

/* cmd_eval_hook.c: the model's attention callback; user is a hook. */
int eval_attention_hook(void *user, int layer, const float *q, const float *k, const float *v,
                        float *out, int64_t n);

/* cmd_eval_select.c: per head, the top budget[I] key blocks of each query
 * block I by the true softmax mass of rows [0, rows) (keys of the same
 * rows; kind EVAL_HOST_ORACLE) or by the max-pooled antidiagonal score
 * (EVAL_HOST_MAXPOOL), plus sink and local blocks; with EVAL_HOST_MAXPOOL_ADAPTIVE
 * the max-pooled logits and a per-row mass threshold tau instead of the
 * budget (as eval_adaptive_select); idx [Hq][nq][nq] ascending, -1 padded;
 * cnt [Hq][nq]. Arrays are head-major [H][n][d]. 0, or -1 out of memory. */
int eval_oracle_select(const float *q, const float *k, int hq, int hk, int d, int64_t rows,
                       int64_t n, int block, const int32_t *budget, int sink, int local,
                       int kind, int stride, double tau, int32_t *idx, int32_t *cnt);
/* Adaptive allocation on Stem's own block logits (test only): row I of each
 * head keeps the fewest key blocks whose softmax over scores[h][I][0..I]
 * reaches tau (largest first; ties: lower index), plus sink and local
 * blocks. scores [Hq][nq][nq] as stem_score writes them; idx, cnt as above. */
void eval_adaptive_select(const float *scores, int hq, int64_t nq, double tau, int sink,
                          int local, int32_t *idx, int32_t *cnt);
/* cmd_eval_budget.c: equal-cost uniform partner of Stem k_start = match_k over `rows` tokens:
 * the uniform k whose summed top-k budget (stem_plan_get_budget, forced
 * blocks excluded) is closest to Stem's (ties: the smaller). */
int eval_match_uniform(stem_context *ctx, const stem_call *sc, const stem_config *cfg,
                       int32_t match_k, int64_t rows, int32_t *k_out, double *ratio);
/* a configuration ready to run over `rows` tokens (resolves match_k) */
int eval_prepare_config(eval_state *es, eval_config *c, int64_t rows);

/* cmd_eval_task.c: --task passkey | needle | vartrack */
int eval_task(eval_state *es, const eval_args *a, eval_config *cfgs, int n_cfgs);

/* cmd_eval_score.c */
int eval_score_window(const lm_model *m, const float *hid_dense, const float *hid_sparse,
                      const int32_t *tokens, int64_t n, int64_t from, float *dense_lp,
                      int dense_lp_ready, score_sums *s);
void eval_print_row(FILE *f, const char *label, int block, double density, double ppl,
                    double ppl_dense, const score_sums *s, double sec);

/* cmd_eval_cache.c */
uint64_t eval_fnv1a(const void *p, size_t n, uint64_t h);
int eval_mkdirs(const char *path);
int eval_load_cache(const char *path, float *hid, size_t bytes);
void eval_save_cache(const char *path, const float *hid, size_t bytes);

/* cmd_eval_generate.c */
int eval_forward(eval_state *es, const stem_config *cfg, const int32_t *ids, int64_t n,
                 float *hidden, double *density);
/* the same with an eval_config (oracle flag) */
int eval_forward_config(eval_state *es, const eval_config *c, const int32_t *ids, int64_t n,
                        float *hidden, double *density);
int eval_generate(eval_state *es, const int32_t *ids, int64_t n, int64_t count);
int eval_dump_logits(eval_state *es, const char *path, const int32_t *ids, int64_t n,
                     const float *hid);

/* cmd_eval_provenance.c */
void eval_git_commit(char *out, size_t cap);

#endif
