/* The case table.
 *
 * A covering set, not a full product: the primary axes (selector, N, heads,
 * head_dim) are looped over; every secondary axis (block, stride, dtypes,
 * layouts, offsets, buffer kind, inputs, config variant, batch, prefill
 * outputs) is drawn per case from a hash of the primary key, so each value
 * meets every other many times across the table while the total cost stays
 * bounded. The double reference dominates the run time, so large N goes with
 * few heads and many heads with small N only. */
#include "cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stem_ref.h"

static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned pick(uint64_t key, unsigned salt, unsigned n)
{
    return (unsigned)(mix64(key ^ ((uint64_t)salt * 0xD6E8FEB86659FD93ull)) % n);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Config variants that make small N actually sparse, exercise the forced
 * blocks, the dense-layer rule and the other knobs. Returns a name tag. */
static const char *apply_variant(stem_config *c, int32_t *layer_index, stem_selector sel,
                                 unsigned v, int64_t n)
{
    const int32_t k3 = (int32_t)max64(1, n / 3), k4 = (int32_t)max64(1, n / 4);
    const int32_t k2 = (int32_t)max64(1, n / 2);
    if (sel == STEM_SELECTOR_XATTENTION || sel == STEM_SELECTOR_XATTENTION_STRICT) {
        switch (v % 7) {
        case 0: return "";
        case 1: c->xattn_threshold = 0.5f; return "tau50";
        case 2: c->xattn_threshold = 0.99f; return "tau99";
        case 3: c->xattn_threshold = 1.0f; return "tau100";
        case 4: c->xattn_threshold = 0.3f; c->norm = 2.0f; return "tau30norm2";
        case 5: *layer_index = 1; return "layer1";
        default: c->xattn_threshold = 0.7f; *layer_index = 4; return "tau70layer4";
        }
    }
    if (sel == STEM_SELECTOR_DENSE) {
        switch (v % 3) {
        case 0: return "";
        case 1: c->beta = 1.0f; return "beta1";
        default: *layer_index = 0; c->stride = c->stride > 1 ? c->stride / 2 : 1; return "layer0";
        }
    }
    if (sel == STEM_SELECTOR_STEM_PAPER) {
        switch (v % 6) {
        case 0: return "";
        case 1: c->paper_min_blocks = 1; c->paper_short_rate = 0.5; return "pmin1";
        case 2: c->paper_min_blocks = 2; c->paper_switch_tokens = 0; return "plong";
        case 3: c->k_start = k3; c->sink_blocks = 1; c->local_blocks = 1; return "k3s1l1";
        case 4: c->paper_min_blocks = 1; *layer_index = 0; return "pmin1layer0";
        default:
            c->paper_min_blocks = 1; c->beta = 1.0f; c->mu = 0.5; c->paper_short_rate = 0.4;
            return "pmin1beta1mu50";
        }
    }
    /* STEM and UNIFORM share the official k_start rule. */
    const unsigned nv = sel == STEM_SELECTOR_UNIFORM ? 11 : 9;
    switch (v % nv) {
    case 0: return "";
    case 1:
        c->dense_below_blocks = 2; c->medium_below_blocks = 8; c->medium_rate = 0.5;
        c->medium_bias = 0; c->large_rate = 0.3; c->large_bias = 1;
        return "lowrule";
    case 2: c->k_start = k3; return "k3";
    case 3: c->k_start = k4; c->sink_blocks = 1; c->local_blocks = 1; return "k4s1l1";
    case 4:
        c->k_start = k2; c->sink_blocks = 0; c->local_blocks = 2; c->beta = 1.0f; c->mu = 0.5;
        return "k2s0l2beta1";
    case 5: c->k_start = k4; *layer_index = 1; return "k4layer1";
    case 6:
        c->dense_below_blocks = 2; c->medium_below_blocks = 8; c->medium_rate = 0.5;
        c->medium_bias = 0; c->large_rate = 0.3; c->large_bias = 1; *layer_index = 5;
        return "lowrulelayer5";
    case 7:
        c->k_start = k3; c->norm = 2.0f; c->mu = 1.0; c->sink_blocks = 2; c->local_blocks = 3;
        return "k3norm2mu100";
    case 8: c->k_start = k2; c->mu = 0.0; c->beta = 0.5f; return "k2mu0";
    case 9: c->k_start = k2; c->uniform_k = k3; return "uk3";
    default: c->k_start = k3; c->uniform_k = 1; c->sink_blocks = 0; c->local_blocks = 1; return "uk1";
    }
}

double conf_case_cost(const conf_case *c)
{
    const int64_t N = c->n_tokens, B = c->cfg.block_size;
    const int64_t n = (N + B - 1) / B;
    double dens = 1.0;
    if (c->cfg.selector == STEM_SELECTOR_XATTENTION ||
        c->cfg.selector == STEM_SELECTOR_XATTENTION_STRICT) {
        dens = 0.6;
    } else if (c->cfg.selector != STEM_SELECTOR_DENSE) {
        int32_t *budget = malloc((size_t)n * sizeof *budget);
        if (budget && !stem_ref_budget(&c->cfg, N, c->layer_index, budget)) {
            double kept = 0.0, causal = 0.0;
            for (int64_t I = 0; I < n; ++I) {
                int64_t k = budget[I] + c->cfg.sink_blocks + c->cfg.local_blocks;
                kept += (double)(k < I + 1 ? k : I + 1);
                causal += (double)(I + 1);
            }
            dens = kept / causal;
        }
        free(budget);
    }
    const double nn = (double)N * (double)N * (double)c->head_dim;
    double per_head = nn * dens + nn / (2.0 * (double)c->cfg.stride);
    if (c->custom_lists)
        per_head += 0.5 * nn;
    return (double)(c->batch * c->hq) * per_head;
}

typedef struct heads {
    int64_t hq, hkv;
} heads;

/* One primary combination: what the loops below enumerate. */
typedef struct primary {
    stem_selector sel;
    int64_t n_tokens, hq, hkv, d;
    unsigned variant;
} primary;

static void make_case(const primary *pr, uint64_t key, conf_case *c)
{
    static const int32_t blocks[4] = {16, 32, 64, 128};
    static const stem_dtype dtypes[3] = {STEM_DTYPE_F32, STEM_DTYPE_F16, STEM_DTYPE_BF16};
    memset(c, 0, sizeof *c);
    stem_config_init(&c->cfg);
    c->cfg.selector = pr->sel;
    c->batch = 1;
    c->hq = pr->hq;
    c->hkv = pr->hkv;
    c->n_tokens = pr->n_tokens;
    c->head_dim = pr->d;
    c->layer_index = -1;
    c->seed = mix64(key ^ 0x5EEDull);

    /* Small N: mostly small blocks, so there are rows to sparsify. */
    const unsigned bp = pick(key, 1, 20);
    const int32_t B = pr->n_tokens > 129 ? blocks[bp % 4]
                      : blocks[bp < 10 ? 0 : bp < 15 ? 1 : bp < 18 ? 2 : 3];
    c->cfg.block_size = B;
    const unsigned sr = pick(key, 2, 20);
    int32_t S = sr < 10 ? 8 : sr < 13 ? 4 : sr < 16 ? 16 : sr == 16 ? 2 : sr == 17 ? 1 : B;
    if (pr->n_tokens == 17 && pick(key, 19, 2) == 0)
        S = 16; /* one full stride group: sd = 0 in the value bonus */
    if (pr->n_tokens >= 4096 && S < 4)
        S = 4; /* the literal strided reference costs N^2 d / S */
    c->cfg.stride = S < B ? S : B;

    c->in_dtype = dtypes[pick(key, 3, 3)];
    const unsigned od = pick(key, 4, 5);
    c->out_dtype = od < 3    ? c->in_dtype
                   : od == 3 ? STEM_DTYPE_F32
                             : (c->in_dtype == STEM_DTYPE_BF16 ? STEM_DTYPE_F16 : STEM_DTYPE_BF16);
    c->in_layout = (conf_layout)pick(key, 5, CONF_LAYOUT_COUNT);
    c->out_layout = pick(key, 6, 3) == 0 ? (conf_layout)pick(key, 16, CONF_LAYOUT_COUNT)
                                         : c->in_layout;
    const unsigned ml = pick(key, 7, 5);
    c->meta_layout = ml < 2 ? CONF_BHND : ml == 2 ? CONF_BHND_PAD : ml == 3 ? CONF_BNHD : CONF_NBHD;
    c->offsets = pick(key, 8, 5) < 2;
    const unsigned bm = pick(key, 9, 10);
    c->bufmode = bm < 5 ? CONF_BUF_SEPARATE : bm < 8 ? CONF_BUF_SHARED : CONF_BUF_WRAP;
    const unsigned kd = pick(key, 10, 20);
    c->kind = kd < 11 ? STEM_SYNTH_STRUCTURED : STEM_SYNTH_RANDOM;
    c->ties = kd >= 18;
    c->small_v = pick(key, 18, 6) == 0;
    if (pr->n_tokens <= 1000 && pick(key, 11, 4) == 0)
        c->batch = 2;
    const unsigned pf = pick(key, 13, 6);
    c->prefill = pf < 3 ? CONF_PREFILL_ALL : pf < 5 ? CONF_PREFILL_OUT : CONF_PREFILL_WS;
    c->custom_lists = pick(key, 14, 6) == 0;
    const unsigned sc = pick(key, 15, 10);
    c->softmax_scale = sc == 0 ? 0.05f : sc == 1 ? 0.3f : 0.0f;

    const int64_t n = (pr->n_tokens + B - 1) / B;
    /* Most cases get a non-default variant: the defaults are dense below 56 blocks. */
    const char *tag = apply_variant(&c->cfg, &c->layer_index, pr->sel,
                                    pr->variant * 5u + pick(key, 12, 64), n);
    /* 4 sink + 4 local blocks cover every row of a short sequence: shrink
     * them in most sparse variants so top-k has something to do. */
    char tagbuf[48];
    if (*tag && n < 32 && pick(key, 17, 8) != 0 && pr->sel != STEM_SELECTOR_XATTENTION &&
        pr->sel != STEM_SELECTOR_XATTENTION_STRICT && pr->sel != STEM_SELECTOR_DENSE) {
        const int32_t lim = (int32_t)(n / 4), sink0 = c->cfg.sink_blocks;
        const int32_t local0 = c->cfg.local_blocks;
        if (c->cfg.sink_blocks > lim)
            c->cfg.sink_blocks = lim;
        if (c->cfg.local_blocks > (lim > 1 ? lim : 1))
            c->cfg.local_blocks = lim > 1 ? lim : 1;
        if (c->cfg.sink_blocks != sink0 || c->cfg.local_blocks != local0) {
            snprintf(tagbuf, sizeof tagbuf, "%s_s%dl%d", tag, c->cfg.sink_blocks,
                     c->cfg.local_blocks);
            tag = tagbuf;
        }
    }

    /* Keep the expensive ones affordable: drop the batch, then sparsify. */
    if (conf_case_cost(c) > 3e9 && c->batch > 1)
        c->batch = 1;
    if (conf_case_cost(c) > 3e9)
        c->custom_lists = 0;

    char out[16] = "", ol[16] = "", ml_s[16] = "";
    if (c->out_dtype != c->in_dtype)
        snprintf(out, sizeof out, "to%s", stem_dtype_name(c->out_dtype));
    if (c->out_layout != c->in_layout)
        snprintf(ol, sizeof ol, "_o%s", conf_layout_name(c->out_layout));
    if (c->meta_layout != CONF_BHND)
        snprintf(ml_s, sizeof ml_s, "_m%s", conf_layout_name(c->meta_layout));
    snprintf(c->name, sizeof c->name,
             "%s_d%lld_h%lldx%lld_n%lld_b%d_s%d_%s%s_%s%s%s%s%s_%s%s%s%s%s%s%s%s",
             stem_selector_name(pr->sel), (long long)pr->d, (long long)pr->hq,
             (long long)pr->hkv, (long long)pr->n_tokens, B, c->cfg.stride,
             stem_dtype_name(c->in_dtype), out, conf_layout_name(c->in_layout), ol, ml_s,
             c->offsets ? "_off" : "",
             c->bufmode == CONF_BUF_SHARED ? "_shared" : c->bufmode == CONF_BUF_WRAP ? "_wrap" : "",
             c->ties ? "ties" : c->kind == STEM_SYNTH_STRUCTURED ? "structured" : "random",
             c->small_v ? "_smallv" : "", *tag ? "_" : "", tag,
             c->batch > 1 ? "_batch2" : "",
             c->prefill == CONF_PREFILL_OUT ? "_pfout" : c->prefill == CONF_PREFILL_WS ? "_pfws" : "",
             c->custom_lists ? "_lists" : "",
             c->softmax_scale > 0 ? (c->softmax_scale < 0.1f ? "_scale05" : "_scale30") : "");
    c->cost = conf_case_cost(c);
}

/* Which (heads, head_dim, variants) each N gets; level 1 widens it. */
typedef struct combo {
    int hidx, d, variants;
} combo;

typedef struct tier {
    int64_t n_tokens;
    combo combos[10];
    int n_combos;
} tier;

static void add_combo(tier *t, int hidx, int d, int variants)
{
    t->combos[t->n_combos++] = (combo){hidx, d, variants};
}

int conf_build_cases(int level, conf_case **out)
{
    static const heads H[4] = {{1, 1}, {4, 1}, {8, 2}, {32, 8}};
    tier tiers[16];
    int nt = 0;
    const int64_t small_n[] = {1, 17, 127, 128, 129};
    for (int i = 0; i < 5; ++i) {
        tier *t = &tiers[nt++];
        *t = (tier){small_n[i], {{0, 0, 0}}, 0};
        for (int h = 0; h < 4; ++h) {
            /* Around one block boundary (127..129) there is the most to cover. */
            const int v = (level ? 2 : 0) + (small_n[i] >= 127 ? 3 : 2);
            add_combo(t, h, 64, v);
            add_combo(t, h, 128, v);
        }
        /* head_dim 256 (Gemma 3: 4 query heads on 1 KV head) */
        if (small_n[i] == 17 || small_n[i] == 129) add_combo(t, 1, 256, 1);
    }
    tier *t1k = &tiers[nt++], *t4k = &tiers[nt++], *t9k = &tiers[nt++];
    *t1k = (tier){1000, {{0, 0, 0}}, 0};
    *t4k = (tier){4096, {{0, 0, 0}}, 0};
    *t9k = (tier){9000, {{0, 0, 0}}, 0};
    for (int h = 0; h < 3; ++h) {
        add_combo(t1k, h, 64, 2);
        add_combo(t1k, h, 128, 2);
    }
    add_combo(t1k, 3, 64, level ? 2 : 1);
    add_combo(t1k, 1, 256, 1);
    add_combo(t4k, 0, 64, 1);
    add_combo(t4k, 0, 128, 1);
    add_combo(t4k, 1, 64, 1);
    add_combo(t9k, 0, 64, 1);
    if (level) {
        add_combo(t1k, 3, 128, 1);
        add_combo(t4k, 1, 128, 1);
        add_combo(t4k, 2, 128, 1);
        add_combo(t9k, 0, 128, 1);
        add_combo(t9k, 1, 64, 1);
        tier *t16k = &tiers[nt++];
        *t16k = (tier){16384, {{0, 0, 0}}, 0};
        add_combo(t16k, 0, 128, 1);
    }

    int cap = 0;
    for (int t = 0; t < nt; ++t)
        for (int c = 0; c < tiers[t].n_combos; ++c)
            cap += STEM_SELECTOR_COUNT * tiers[t].combos[c].variants;
    cap += 16;
    conf_case *cases = calloc((size_t)cap, sizeof *cases);
    if (!cases)
        return -1;
    int count = 0;
    for (int t = 0; t < nt; ++t)
        for (int s = 0; s < STEM_SELECTOR_COUNT; ++s)
            for (int c = 0; c < tiers[t].n_combos; ++c)
                for (int v = 0; v < tiers[t].combos[c].variants; ++v) {
                    /* The strict rule shares everything but selection with
                     * XATTENTION: a thinner slice of the table. */
                    if (s == STEM_SELECTOR_XATTENTION_STRICT &&
                        (tiers[t].n_tokens < 127 || tiers[t].n_tokens > 1000 || v > 0))
                        continue;
                    const heads hh = H[tiers[t].combos[c].hidx];
                    primary pr = {(stem_selector)s, tiers[t].n_tokens, hh.hq, hh.hkv,
                                  tiers[t].combos[c].d, (unsigned)v};
                    const uint64_t key =
                        mix64(((((uint64_t)tiers[t].n_tokens * 8 + (uint64_t)s) * 8 +
                                (uint64_t)tiers[t].combos[c].hidx) * 512 +
                               (uint64_t)tiers[t].combos[c].d) * 16 + (uint64_t)v + 0x51ull);
                    make_case(&pr, key, &cases[count++]);
                }
    /* The one at the far corner of the brief, named explicitly. */
    {
        primary pr = {STEM_SELECTOR_STEM, 9000, 1, 1, 128, 0};
        conf_case *c = &cases[count++];
        make_case(&pr, 0xC0FFEEull, c);
        stem_config_init(&c->cfg);
        c->cfg.block_size = 128;
        c->cfg.stride = 8;
        c->in_dtype = c->out_dtype = STEM_DTYPE_BF16;
        c->in_layout = c->out_layout = CONF_BNHD;
        c->kind = STEM_SYNTH_STRUCTURED;
        c->ties = c->small_v = 0;
        c->batch = 1;
        c->layer_index = -1;
        c->softmax_scale = 0.0f;
        c->custom_lists = 0;
        c->offsets = 0;
        c->bufmode = CONF_BUF_SEPARATE;
        c->meta_layout = CONF_BHND;
        c->prefill = CONF_PREFILL_ALL;
        c->cost = conf_case_cost(c);
        snprintf(c->name, sizeof c->name, "stem_d128_h1x1_n9000_b128_s8_bf16_bnhd_structured");
    }
    /* Cases where XAttention's official and strict rules select differently
     * in rows of both kinds (checked on the reference masses), under each
     * selector: a backend running the other rule fails them. */
    for (int kind = 0; kind < 2; ++kind)
        for (int sel = 0; sel < 2; ++sel) {
            const stem_selector xs =
                sel ? STEM_SELECTOR_XATTENTION_STRICT : STEM_SELECTOR_XATTENTION;
            primary pr = {xs, 1000, 4, 1, 64, 0};
            conf_case *c = &cases[count++];
            make_case(&pr, 0x5B117ull + (uint64_t)kind, c);
            stem_config_init(&c->cfg);
            c->cfg.selector = xs;
            c->cfg.block_size = 16;
            c->cfg.stride = 4;
            c->in_dtype = c->out_dtype = STEM_DTYPE_F32;
            c->in_layout = c->out_layout = c->meta_layout = CONF_BHND;
            c->kind = kind ? STEM_SYNTH_RANDOM : STEM_SYNTH_STRUCTURED;
            c->ties = c->small_v = 0;
            c->batch = 1;
            c->layer_index = -1;
            c->softmax_scale = 0.0f;
            c->custom_lists = 0;
            c->offsets = 0;
            c->bufmode = CONF_BUF_SEPARATE;
            c->prefill = CONF_PREFILL_ALL;
            c->xattn_split = 1;
            c->cost = conf_case_cost(c);
            snprintf(c->name, sizeof c->name, "%s_split_d64_h4x1_n1000_b16_s4_f32_bhnd_%s",
                     stem_selector_name(xs), kind ? "random" : "structured");
        }
    /* Unique names, so STEM_TEST_FILTER can always pick exactly one. */
    for (int i = 0; i < count; ++i) {
        int dup = 0;
        for (int j = 0; j < i; ++j)
            dup += strncmp(cases[i].name, cases[j].name, strlen(cases[i].name)) == 0;
        if (dup) {
            char suffix[16];
            snprintf(suffix, sizeof suffix, "_%d", dup + 1);
            strncat(cases[i].name, suffix, sizeof cases[i].name - strlen(cases[i].name) - 1);
        }
    }
    *out = cases;
    return count;
}
