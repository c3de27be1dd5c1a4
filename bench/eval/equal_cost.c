/* Equal-cost uniform partners of Stem k_start values, from the plan's own
 * budgets (stem_plan_get_budget: per query block, forced blocks excluded):
 * for each (tokens, block, k_start) the uniform k whose summed budget is
 * closest to Stem's, with both sums. The same rule as `stem eval`'s
 * uniform:match=K.
 *   cc -O2 -Iapi bench/eval/equal_cost.c -Lbuild -lstem -lm -o /tmp/equal_cost
 *   LD_LIBRARY_PATH=build /tmp/equal_cost 8192:64:8,12,16,24,32,55 2048:64:8 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stem.h"

static long long budget_sum(stem_context *ctx, const stem_config *cfg, long long n)
{
    stem_attention_desc d;
    stem_attention_desc_init(&d);
    d.batch = 1;
    d.num_q_heads = d.num_kv_heads = 1;
    d.q_len = d.kv_len = n;
    d.head_dim = 64;
    d.dtype = STEM_DTYPE_F32;
    d.layer_index = -1;
    stem_plan *p = NULL;
    if (stem_plan_create(ctx, &d, cfg, &p) != STEM_OK) return -1;
    stem_plan_info info;
    stem_plan_info_init(&info);
    stem_plan_get_info(p, &info);
    int32_t *b = malloc((size_t)info.num_q_blocks * sizeof *b);
    long long s = 0;
    if (b && stem_plan_get_budget(p, b, (size_t)info.num_q_blocks) == STEM_OK)
        for (long long i = 0; i < info.num_q_blocks; i++) s += b[i] < i + 1 ? b[i] : i + 1;
    else
        s = -1;
    free(b);
    stem_plan_destroy(p);
    return s;
}

int main(int argc, char **argv)
{
    stem_context *ctx = NULL; /* plans only: any device will do */
    if (stem_context_create(NULL, &ctx) != STEM_OK) return fprintf(stderr, "no context\n"), 1;
    printf("| tokens | block | Stem k_start | Stem top-k blocks | uniform k | uniform top-k blocks "
           "| ratio | round(k(1+mu)/2) |\n|---|---|---|---|---|---|---|---|\n");
    for (int a = 1; a < argc; a++) {
        char *spec = strdup(argv[a]), *save = NULL;
        long long n = atoll(strtok_r(spec, ":", &save));
        int block = atoi(strtok_r(NULL, ":", &save));
        for (char *k = strtok_r(NULL, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
            stem_config s;
            stem_config_init(&s);
            s.block_size = block;
            s.k_start = atoi(k);
            long long target = budget_sum(ctx, &s, n), best = -1, bs = 0;
            for (int u = 1; u <= (n + block - 1) / block; u++) {
                stem_config c = s;
                c.selector = STEM_SELECTOR_UNIFORM;
                c.uniform_k = c.k_start = u;
                long long v = budget_sum(ctx, &c, n);
                if (best < 0 || llabs(v - target) < llabs(bs - target)) best = u, bs = v;
                if (v > target) break;
            }
            printf("| %lld | %d | %d | %lld | %lld | %lld | %.4f | %d |\n", n, block, s.k_start,
                   target, best, bs, (double)bs / (double)target,
                   (int)(s.k_start * (1 + s.mu) / 2 + 0.5));
        }
        free(spec);
    }
    stem_context_destroy(ctx);
    return 0;
}
