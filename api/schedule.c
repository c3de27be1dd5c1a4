/* The per-row top-k budget (docs/semantics.md section 4), shared by all backends. */
#include "stem_internal.h"

#include <math.h>
#include <stdlib.h>

/* torch.linspace(a, z, L)[j] in double: the first half counts up from a,
 * the second half down from z, so floor() lands where the official code's does. */
static double linspace_at(double a, double z, int64_t L, int64_t j)
{
    if (L == 1)
        return a;
    double step = (z - a) / (double)(L - 1);
    return j < L / 2 ? a + step * (double)j : z - step * (double)(L - 1 - j);
}

static int32_t clamp_i32(double v, int32_t lo, int32_t hi)
{
    if (!(v >= (double)lo)) /* also catches NaN */
        return lo;
    if (v > (double)hi)
        return hi;
    return (int32_t)v;
}

/* k_start of the official rule; returns >= n when the layer runs dense. */
static int64_t official_k_start(const stem_config *c, int64_t n)
{
    if (c->k_start > 0)
        return c->k_start;
    if (n < c->dense_below_blocks)
        return n;
    if (n < c->medium_below_blocks)
        return (int64_t)floor(c->medium_rate * (double)n + (double)c->medium_bias);
    return (int64_t)floor(c->large_rate * (double)n) + c->large_bias;
}

static int64_t paper_k_start(const stem_config *c, int64_t n, int64_t n_tokens)
{
    if (c->k_start > 0)
        return c->k_start;
    double rate = n_tokens <= c->paper_switch_tokens ? c->paper_short_rate : c->paper_long_rate;
    int64_t k = (int64_t)floor(rate * (double)n);
    return k > c->paper_min_blocks ? k : c->paper_min_blocks;
}

stem_status stem_schedule_build(stem_plan *plan)
{
    const stem_config *c = &plan->cfg;
    /* Keyed on the prompt (n_prompt >= the call's key blocks), per absolute row. */
    const int64_t n = plan->n_prompt;
    int32_t *budget = malloc((size_t)n * sizeof *budget);
    if (!budget)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "stem_plan_create: out of host memory");

    int layer_dense = plan->desc.layer_index >= 0 && plan->desc.layer_index < c->dense_layers;
    int64_t k = n;
    switch (c->selector) {
    case STEM_SELECTOR_STEM:
    case STEM_SELECTOR_UNIFORM: k = official_k_start(c, n); break;
    case STEM_SELECTOR_STEM_PAPER: k = paper_k_start(c, n, plan->prompt_len); break;
    default: k = n; break;
    }
    int dense = layer_dense || c->selector == STEM_SELECTOR_DENSE || k >= n;
    if (stem_selector_is_xattention(c->selector))
        dense = layer_dense; /* its threshold rule has no dense regime */

    for (int64_t i = 0; i < n; ++i)
        budget[i] = (int32_t)n;
    if (!dense && !stem_selector_is_xattention(c->selector)) {
        const int32_t ks = (int32_t)k;
        if (c->selector == STEM_SELECTOR_STEM) {
            const int64_t L = n - ks;
            const double k_end = (double)c->mu * (double)ks;
            for (int64_t i = 0; i < n; ++i)
                budget[i] = i < ks ? ks
                                   : clamp_i32(floor(linspace_at(ks, k_end, L, i - ks)), 1, ks);
        } else if (c->selector == STEM_SELECTOR_STEM_PAPER) {
            for (int64_t i = 0; i < n; ++i)
                budget[i] = clamp_i32(
                    floor((double)ks - (double)ks * (1.0 - (double)c->mu) * (double)(i + 1) /
                                           (double)n),
                    1, ks);
        } else { /* UNIFORM: constant, the paper's equal-cost k_start (1 + mu) / 2 */
            int32_t ku = c->uniform_k > 0
                             ? c->uniform_k
                             : clamp_i32(floor((double)ks * (1.0 + (double)c->mu) / 2.0 + 0.5),
                                         1, (int32_t)n);
            for (int64_t i = 0; i < n; ++i)
                budget[i] = ku;
        }
    }
    /* Kept top-k blocks over causal blocks, forced blocks aside. */
    double kept = 0.0, causal = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        kept += (double)(budget[i] < i + 1 ? budget[i] : i + 1);
        causal += (double)(i + 1);
    }
    plan->budget = budget;
    plan->dense = dense;
    plan->k_start = (int32_t)(k < n ? k : n);
    if (dense)
        plan->k_start = (int32_t)n;
    plan->budget_density =
        stem_selector_is_xattention(c->selector) && !dense ? 0.0 : kept / causal;
    return STEM_OK;
}
