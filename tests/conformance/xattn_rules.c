/* API case for XAttention's two threshold rules (docs/semantics.md section
 * 5): stem_select on hand-written block masses, run on every device like
 * the misuse cases. The case table compares with the reference only up to
 * rounding at the tau boundary; here the masses are dyadic, every running
 * sum and tau * total are exact, and each row's list is known in closed
 * form, so a backend that applies the other rule, or tests one block too
 * early or too late, fails. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "run.h"
#include "stem_ref.h"

/* 5 blocks of 16 tokens, 5 query heads (one KV head): head h's row 4 is
 * the row under test, its rows 0..3 are checked against the reference. */
enum { XR_NB = 5, XR_H = 5, XR_BLK = 16 };

typedef struct xr_row {
    double w[XR_NB];
    int32_t official[XR_NB], n_official; /* XATTENTION, rows from key block 0 */
    int32_t strict[XR_NB], n_strict;     /* XATTENTION_STRICT */
} xr_row;

/* tau 0.75 (exact in float, as is every tau here); the comments give the
 * mass each block is tested on. */
static const xr_row k_rows_75[XR_H] = {
    /* block 0 light (kept only by the redirect), T = 1.078125.
     * official: 1 first; 2 on 0.5; 3 on 1.0; 0 on 1.25 (rejected, kept).
     * strict: 1 on 0.5625; 2 on 1.0625; 3 on 1.3125 (dropped). */
    {{0.0625, 0.5, 0.25, 0.125, 0.5}, {0, 1, 2, 3, 4}, 5, {0, 1, 2, 4}, 4},
    /* block 0 heaviest, T = 1.875. official: 0 first; 1 on 0.5; 2 on 1.25;
     * 3 on 1.75 (kept). strict: 1 on 1.25; 2 on 1.75; 3 on 2.25 (dropped). */
    {{0.75, 0.5, 0.5, 0.25, 0.5}, {0, 1, 2, 3, 4}, 5, {0, 1, 2, 4}, 4},
    /* a tie at the cut goes to the lower block, T = 0.9375. official: 0
     * first; 2 on 0.25; 1 on 0.75 (kept); 3 on 1.0 (dropped). strict: 2 on
     * 0.75; 1 on 1.0 (dropped). */
    {{0.5, 0.125, 0.25, 0.125, 0.25}, {0, 1, 2, 4}, 4, {0, 2, 4}, 3},
    /* "<" at equality, T = 1.125. official: 0 first; 1 on 0.375; 2 on 0.875;
     * 3 on 1.125 (dropped). strict: 1 on 0.875; 2 on 1.125 (dropped). */
    {{0.5, 0.25, 0.25, 0.125, 0.375}, {0, 1, 2, 4}, 4, {0, 1, 4}, 3},
    /* massless block 0, T = 1.03125. official: 1 first; 2 on 0.5; 3 on 1.0
     * (kept); 0 on 1.125 (rejected, kept). strict: 1 on 0.5; 2 on 1.0; 3 on
     * 1.25 (dropped). */
    {{0.0, 0.5, 0.25, 0.125, 0.5}, {0, 1, 2, 3, 4}, 5, {0, 1, 2, 4}, 4},
};

/* tau 0.25 with negative masses (stem_select takes any scores): the running
 * mass falls, so later blocks pass after an earlier one failed. T = 0.25 *
 * -2.75 = -0.6875. strict: 1 on 0.25 (fails), 2 on -0.75 and 3 on -1.75
 * (kept). official: 0 first on 0 (fails, kept anyway); 1 on 0.125 and 2 on
 * 0.25 (fail); 3 on -0.75 (kept). */
static const xr_row k_row_negative = {
    {0.125, -1.0, -1.0, -1.0, 0.125}, {0, 3, 4}, 3, {0, 2, 3, 4}, 4};

static stem_buffer *xr_buffer(conf_test *T, size_t bytes)
{
    stem_buffer *b = NULL;
    if (stem_buffer_create(T->dev->ctx, bytes, &b) != STEM_OK)
        fail_msg("stem_buffer_create(%zu): %s", bytes, stem_last_error());
    res_add_buffer(&T->res, b);
    return b;
}

/* Selects rows[h] (row 4 of head h) under selector sel at tau and checks
 * every row: row 4 against the closed form, rows 0..3 against the reference. */
static void xr_check(conf_test *T, stem_selector sel, float tau, const xr_row *rows, int heads)
{
    stem_context *ctx = T->dev->ctx;
    stem_attention_desc d;
    stem_attention_desc_init(&d);
    d.num_q_heads = heads;
    d.num_kv_heads = 1;
    d.q_len = d.kv_len = XR_NB * XR_BLK;
    d.head_dim = 64;
    stem_config c;
    stem_config_init(&c);
    c.selector = sel;
    c.block_size = XR_BLK;
    c.stride = 4;
    c.xattn_threshold = tau;
    stem_plan *plan = NULL;
    if (stem_plan_create(ctx, &d, &c, &plan) != STEM_OK)
        fail_msg("stem_plan_create: %s", stem_last_error());
    res_add_plan(&T->res, plan);

    const size_t sn = (size_t)heads * XR_NB * XR_NB;
    float *s = res_alloc(&T->res, sn * 4);
    double *sd = res_alloc(&T->res, sn * 8);
    for (int h = 0; h < heads; ++h)
        for (int I = 0; I < XR_NB; ++I)
            for (int J = 0; J < XR_NB; ++J) {
                /* rows 0..3: a few distinct dyadic masses per head */
                double x = J > I ? 0.0 : (double)((I * 3 + J * 5 + h) % 4 + 1) * 0.125;
                if (I == XR_NB - 1)
                    x = rows[h].w[J];
                s[(h * XR_NB + I) * XR_NB + J] = (float)x;
                sd[(h * XR_NB + I) * XR_NB + J] = x;
            }
    stem_buffer *bs = xr_buffer(T, sn * 4), *bi = xr_buffer(T, sn * 4);
    stem_buffer *bc = xr_buffer(T, (size_t)heads * XR_NB * 4);
    if (stem_buffer_write(bs, 0, s, sn * 4) != STEM_OK)
        fail_msg("stem_buffer_write: %s", stem_last_error());
    const stem_tensor ts = stem_tensor_bhnd(bs, 0, STEM_DTYPE_F32, 1, heads, XR_NB, XR_NB);
    const stem_tensor ti = stem_tensor_bhnd(bi, 0, STEM_DTYPE_I32, 1, heads, XR_NB, XR_NB);
    const stem_tensor tc = stem_tensor_bhnd(bc, 0, STEM_DTYPE_I32, 1, heads, XR_NB, 1);
    if (stem_select(plan, &ts, &ti, &tc) != STEM_OK || stem_synchronize(ctx) != STEM_OK)
        fail_msg("stem_select: %s", stem_last_error());
    int32_t *idx = res_alloc(&T->res, sn * 4), *cnt = res_alloc(&T->res, (size_t)heads * XR_NB * 4);
    if (stem_buffer_read(bi, 0, idx, sn * 4) != STEM_OK ||
        stem_buffer_read(bc, 0, cnt, (size_t)heads * XR_NB * 4) != STEM_OK)
        fail_msg("stem_buffer_read: %s", stem_last_error());

    const int official = sel == STEM_SELECTOR_XATTENTION;
    for (int h = 0; h < heads; ++h)
        for (int I = 0; I < XR_NB; ++I) {
            int32_t want[XR_NB], nw = 0;
            if (I == XR_NB - 1) {
                nw = official ? rows[h].n_official : rows[h].n_strict;
                memcpy(want, official ? rows[h].official : rows[h].strict, (size_t)nw * 4);
            } else {
                unsigned char keep[XR_NB] = {0};
                stem_ref_xattn_row(sd + (h * XR_NB + I) * XR_NB, I, (double)tau, official, keep);
                for (int J = 0; J <= I; ++J)
                    if (keep[J])
                        want[nw++] = J;
            }
            const int32_t *got = idx + (h * XR_NB + I) * XR_NB;
            int ok = cnt[h * XR_NB + I] == nw;
            for (int r = 0; ok && r < XR_NB; ++r)
                ok = got[r] == (r < nw ? want[r] : -1);
            if (!ok) {
                char a[64] = "", b[64] = "";
                for (int r = 0; r < XR_NB; ++r) {
                    snprintf(a + strlen(a), sizeof a - strlen(a), "%s%d", r ? "," : "", got[r]);
                    if (r < nw)
                        snprintf(b + strlen(b), sizeof b - strlen(b), "%s%d", r ? "," : "",
                                 want[r]);
                }
                fail_msg("%s tau %g, head %d row %d: got {%s} (count %d), expected {%s}",
                         stem_selector_name(sel), (double)tau, h, I, a, cnt[h * XR_NB + I], b);
            }
        }
}

static void xattn_rules_case(conf_test *T, const conf_misuse *m)
{
    (void)m;
    for (int strict = 0; strict < 2; ++strict) {
        const stem_selector sel =
            strict ? STEM_SELECTOR_XATTENTION_STRICT : STEM_SELECTOR_XATTENTION;
        xr_check(T, sel, 0.75f, k_rows_75, XR_H);
        xr_check(T, sel, 0.25f, &k_row_negative, 1);
    }
}

int conf_add_xattn_rule_cases(conf_misuse *list, int cap)
{
    if (cap < CONF_XATTN_RULE_CASES)
        return 0;
    snprintf(list[0].name, sizeof list[0].name, "api_xattention_rules");
    list[0].fn = xattn_rules_case;
    return CONF_XATTN_RULE_CASES;
}
