/* Vulkan backend: the loop budget of llvmpipe (lavapipe).
 *
 * llvmpipe's shader compiler (gallivm) keeps one loop-iteration counter per
 * invocation (per SIMD vector of invocations), shared by every loop of the
 * shader and started at 65535 (LP_MAX_TGSI_LOOP_ITERATIONS); when it runs
 * out every loop exits at once, silently, and the results are wrong. Loops
 * that NIR unrolls (constant trip count, spec constants included) do not
 * count. Every shader keeps its non-unrolled loops bounded; this file holds
 * the worst case per invocation of each one as a function of the plan (the
 * shader headers derive them), and a plan that would pass the budget on
 * llvmpipe is declined with STEM_ERR_UNSUPPORTED instead of computed wrong.
 *
 * Per shader, with N tokens, B block, S stride, G = B / S, n = ceil(N / B),
 * d head_dim, c(x) = ceil(x / 256):
 *   phase_sum      G                                   (<= 128)
 *   vnorm          S * (d + 1)                         (<= 32896)
 *   vbonus         3 c(N / S) + c(n) (G + 1) + 2       (~ 3 N / (256 S))
 *   score_gemm     17 * S * d / 16                     (<= 34816)
 *   score_xattn    2 G L c(n G) + ..., L = S (d / 32 + 1)  (~ 2 N B (d/32+1) / (256 S))
 *   select         top-k 4 (c(n) + 257) + 19 c(n); XAttention c(n) (ceil(n/16) + 20)
 *   attention_rows n * B + 2 d (one step per key of a dense row; d unrolled)
 *   attention      n * B / KT tiles of about KT (D / LANES + 2) + 2 D (not unrolled)
 * So on llvmpipe the row kernel (the one it uses) covers dense rows up to
 * about 65000 tokens, XAttention (d = 128) about 1.6M * S / B tokens (100K at
 * block 128, stride 8) and the selection
 * about 16K blocks per row for XAttention.
 */
#include "vk_internal.h"

#include <string.h>

#define LP_LOOP_LIMIT 65535u
/* Headroom for the few fixed iterations the formulas round away. */
#define BUDGET (LP_LOOP_LIMIT - 256u)

typedef struct budget_item {
    const char *kernel;
    uint64_t iters;
} budget_item;

static uint64_t c256(uint64_t x) { return (x + 255) / 256; }

int vk_is_llvmpipe(const stem_vk_context *c)
{
    return c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU &&
           strncmp(c->props.deviceName, "llvmpipe", 8) == 0;
}

/* score_xattn.comp (see its header): L iterations per logit, k chunks. */
static uint64_t xattn_budget(uint64_t n, uint64_t G, uint64_t S, uint64_t d)
{
    const uint64_t e = d % 32 == 0 ? 32 : d % 16 == 0 ? 16 : 8;
    const uint64_t L = S * (d / e + 1), k = c256(n * G);
    return G * k * L + k * (G * L + G) + c256(n) + G;
}

stem_status vk_loop_budget(const stem_vk_context *c, const stem_attention_desc *desc,
                           const stem_config *cfg)
{
    if (!vk_is_llvmpipe(c))
        return STEM_OK;
    const uint64_t N = (uint64_t)desc->kv_len, B = (uint64_t)cfg->block_size;
    const uint64_t S = (uint64_t)cfg->stride, d = (uint64_t)desc->head_dim;
    const uint64_t G = B / S, n = (N + B - 1) / B;
    budget_item k[4];
    int nk = 0;
    if (stem_selector_is_xattention(cfg->selector)) {
        k[nk++] = (budget_item){"score_xattn", xattn_budget(n, G, S, d)};
        k[nk++] = (budget_item){"select", c256(n) * ((n + 15) / 16 + 20)};
    } else {
        k[nk++] = (budget_item){"vbonus", 3 * c256(N / S) + c256(n) * (G + 1) + 2};
        k[nk++] = (budget_item){"select", 4 * (c256(n) + 257) + 19 * c256(n)};
    }
    uint32_t qt = 0, kt = 0;
    vk_attention_tile(c, desc->head_dim, cfg->block_size, &qt, &kt);
    if (c->row_attention) {
        k[nk++] = (budget_item){"attention_rows", n * (B / kt) + 2 * d};
    } else {
        const uint64_t lanes = 8, dpl = d / lanes;
        const uint64_t tile = kt * d / (qt * lanes) + 1 + (kt / lanes) * (d + 1) + kt + kt / lanes +
                              dpl + kt * (dpl + 1) + 1;
        k[nk++] = (budget_item){"attention", n * (B / kt) * tile + 2 * d};
    }
    for (int i = 0; i < nk; i++)
        if (k[i].iters > BUDGET)
            return stem_set_error(
                STEM_ERR_UNSUPPORTED,
                "vulkan on llvmpipe: %s would run up to %llu loop iterations in one shader "
                "invocation, past llvmpipe's limit of %u (it then ends every loop early and "
                "silently); N=%lld with block_size=%d, stride=%d, head_dim=%lld is beyond what "
                "this device computes correctly (use the cpu backend)",
                k[i].kernel, (unsigned long long)k[i].iters, LP_LOOP_LIMIT,
                (long long)desc->kv_len, cfg->block_size, cfg->stride, (long long)desc->head_dim);
    return STEM_OK;
}
