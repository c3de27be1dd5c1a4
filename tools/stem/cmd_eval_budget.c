/* stem eval: the equal-cost uniform partner of a Stem schedule (the
 * uniform k whose summed top-k budget matches Stem's), from the plans'
 * budgets. */
#include <stdio.h>
#include <stdlib.h>

#include "cmd_eval.h"

static int budget_sum(stem_context *ctx, const stem_call *sc, const stem_config *cfg,
                      int64_t rows, int64_t *sum)
{
    stem_attention_desc desc;
    eval_call_desc(sc, rows, -1, &desc);
    stem_plan *plan = NULL;
    stem_status st = stem_plan_create(ctx, &desc, cfg, &plan);
    if (st != STEM_OK) return -1;
    stem_plan_info info;
    stem_plan_info_init(&info);
    stem_plan_get_info(plan, &info);
    int32_t *b = malloc((size_t)info.num_q_blocks * sizeof *b);
    if (b) st = stem_plan_get_budget(plan, b, (size_t)info.num_q_blocks);
    *sum = 0;
    for (int64_t i = 0; b && st == STEM_OK && i < info.num_q_blocks; i++)
        *sum += b[i] < i + 1 ? b[i] : i + 1; /* a row cannot keep more than I + 1 */
    free(b);
    stem_plan_destroy(plan);
    return b && st == STEM_OK ? 0 : -1;
}

int eval_match_uniform(stem_context *ctx, const stem_call *sc, const stem_config *cfg,
                       int32_t match_k, int64_t rows, int32_t *k_out, double *ratio)
{
    stem_config s = *cfg;
    s.selector = STEM_SELECTOR_STEM;
    s.k_start = match_k;
    int64_t target = 0, best_sum = 0, sum = 0;
    if (budget_sum(ctx, sc, &s, rows, &target)) return -1;
    const int64_t nq = (rows + cfg->block_size - 1) / cfg->block_size;
    int32_t best = 1;
    for (int32_t k = 1; k <= nq; k++) {
        stem_config u = *cfg;
        u.selector = STEM_SELECTOR_UNIFORM;
        u.uniform_k = k;
        u.k_start = k;
        if (budget_sum(ctx, sc, &u, rows, &sum)) return -1;
        if (k == 1 || llabs(sum - target) < llabs(best_sum - target)) {
            best = k;
            best_sum = sum;
        }
        if (sum > target) break;
    }
    *k_out = best;
    *ratio = target ? (double)best_sum / (double)target : 1.0;
    return 0;
}

int eval_prepare_config(eval_state *es, eval_config *c, int64_t rows)
{
    if (c->match_k <= 0) return 0;
    int32_t k = 0;
    double ratio = 1.0;
    if (eval_match_uniform(es->h.sc.ctx, &es->h.sc, &c->cfg, c->match_k, rows, &k, &ratio))
        return tool_error("eval: cannot plan the equal-cost partner of k_start %d",
                          (int)c->match_k);
    c->cfg.uniform_k = k;
    c->cfg.k_start = k;
    printf("# %s: uniform k %d is the equal-cost partner of Stem k_start %d over %lld tokens "
           "(top-k blocks %.4f x Stem's)\n",
           c->label, (int)k, (int)c->match_k, (long long)rows, ratio);
    return 0;
}
