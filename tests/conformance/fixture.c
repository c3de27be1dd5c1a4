/* Fixture cases: real post-RoPE Q/K/V of SmolLM2-135M (tests/fixtures/smollm2,
 * one KV group of two layers, 8K tokens, f16) instead of synthetic inputs.
 * Random Q/K make attention nearly uniform; these rows carry the sinks,
 * stripes and local bands that selection must find. Per device:
 *   - selection equals the shared reference's (up to near-ties),
 *   - the output equals the reference attention over that selection,
 *   - Stem's output stays near dense attention (a loose bound measured on
 *     this data, so a selection that drops the heavy blocks fails it).
 * The first 4096 tokens of the 8K dump are exactly a 4K window (causal). */
#include "fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "stem_ref.h"

static void fixture_dir(char *out, size_t cap)
{
    const char *env = getenv("STEM_FIXTURE_DIR");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    /* tests/conformance/fixture.c -> tests/fixtures/smollm2 */
    snprintf(out, cap, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    if (slash) *slash = 0;
    slash = strrchr(out, '/');
    if (slash) *slash = 0;
    size_t used = strlen(out);
    snprintf(out + used, cap - used, "%s", slash ? "/fixtures/smollm2" : "tests/fixtures/smollm2");
}

/* Reads a little-endian '<f2' .npy of shape [1, H, N, d]; returns the f32
 * values (malloc'ed) or NULL. */
static float *read_f16_npy(const char *path, int64_t shape[4])
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char pre[10];
    float *out = NULL;
    uint16_t *raw = NULL;
    char *hdr = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) goto done;
    size_t hl = (size_t)pre[8] | ((size_t)pre[9] << 8);
    hdr = calloc(hl + 1, 1);
    if (!hdr || fread(hdr, 1, hl, f) != hl) goto done;
    const char *sh = strstr(hdr, "'shape': (");
    if (!strstr(hdr, "'<f2'") || !strstr(hdr, "'fortran_order': False") || !sh) goto done;
    if (sscanf(sh, "'shape': (%lld, %lld, %lld, %lld)", (long long *)&shape[0],
               (long long *)&shape[1], (long long *)&shape[2], (long long *)&shape[3]) != 4)
        goto done;
    size_t count = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
    raw = malloc(count * sizeof *raw);
    out = malloc(count * sizeof *out);
    if (!raw || !out || fread(raw, 2, count, f) != count ||
        stem_convert(raw, STEM_DTYPE_F16, out, STEM_DTYPE_F32, count) != STEM_OK) {
        free(out);
        out = NULL;
    }
done:
    free(raw);
    free(hdr);
    fclose(f);
    return out;
}

typedef struct fixture_case {
    const char *name;
    int layer;
    int64_t n_tokens;
    int32_t block_size, k_start; /* k_start 0 = the official rule */
    int full_only;
    double max_dense_err;        /* bound on ||stem - dense|| / ||dense|| */
    stem_selector selector;      /* STEM unless named */
} fixture_case;

/* Dense-error bounds: 2-4x what the CPU backend gives on this data (0.0135
 * and 0.076 at 4K, layer 14; XAttention 0.049 at layer 14, strict 0.098 at
 * layer 2), so losing the heavy blocks fails them. */
static const fixture_case k_cases[] = {
    {"fixture smollm2 layer14 4K b64 rule", 14, 4096, 64, 0, 0, 0.04, STEM_SELECTOR_STEM},
    {"fixture smollm2 layer14 4K b64 k16", 14, 4096, 64, 16, 0, 0.15, STEM_SELECTOR_STEM},
    {"fixture smollm2 layer02 4K b64 k16", 2, 4096, 64, 16, 1, 0.15, STEM_SELECTOR_STEM},
    {"fixture smollm2 layer14 8K b128 rule", 14, 8192, 128, 0, 1, 0.05, STEM_SELECTOR_STEM},
    {"fixture smollm2 layer14 4K b64 xattention", 14, 4096, 64, 0, 0, 0.15,
     STEM_SELECTOR_XATTENTION},
    {"fixture smollm2 layer02 4K b64 xattention_strict", 2, 4096, 64, 0, 0, 0.3,
     STEM_SELECTOR_XATTENTION_STRICT},
};

static double rel_l2(const double *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : 0.0;
}

/* Runs one case; returns 1 passed, 0 failed (message printed), -1 skipped. */
static int run_fixture_case(stem_context *ctx, const fixture_case *fc, const char *dir)
{
    char path[1200];
    int64_t sq[4], sk[4], sv[4];
    snprintf(path, sizeof path, "%s/layer%02d_q.npy", dir, fc->layer);
    float *q = read_f16_npy(path, sq);
    snprintf(path, sizeof path, "%s/layer%02d_k.npy", dir, fc->layer);
    float *k = read_f16_npy(path, sk);
    snprintf(path, sizeof path, "%s/layer%02d_v.npy", dir, fc->layer);
    float *v = read_f16_npy(path, sv);
    int result = 0;
    double *dq = NULL, *dk = NULL, *dv = NULL, *scores = NULL, *ref_out = NULL, *dense_out = NULL;
    int32_t *ref_index = NULL, *ref_count = NULL, *index = NULL, *count = NULL;
    int32_t *dense_index = NULL, *dense_count = NULL;
    uint16_t *h16 = NULL;
    float *out = NULL;
    stem_buffer *buf = NULL;
    stem_plan *plan = NULL;
    if (!q || !k || !v) {
        printf("[ SKIPPED  ] %s: fixture %s/layer%02d_*.npy missing\n", fc->name, dir, fc->layer);
        result = -1;
        goto done;
    }
    const int64_t hq = sq[1], hkv = sk[1], full_n = sq[2], d = sq[3], n = fc->n_tokens;
    if (sk[2] != full_n || sv[2] != full_n || sk[3] != d || n > full_n || hq % hkv) {
        printf("[  FAILED  ] %s: fixture shapes do not fit\n", fc->name);
        goto done;
    }
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.selector = fc->selector;
    cfg.block_size = fc->block_size;
    cfg.k_start = fc->k_start;
    cfg.dense_layers = 0;
    const int64_t nb = stem_ref_num_blocks(n, cfg.block_size);
    const size_t qn = (size_t)(hq * n * d), kn = (size_t)(hkv * n * d);
    const size_t rows = (size_t)(hq * nb), lists = rows * (size_t)nb;
    dq = malloc(qn * sizeof *dq);
    dk = malloc(kn * sizeof *dk);
    dv = malloc(kn * sizeof *dv);
    h16 = malloc((qn + 2 * kn) * sizeof *h16);
    out = malloc(qn * sizeof *out);
    scores = malloc(lists * sizeof *scores);
    ref_out = malloc(qn * sizeof *ref_out);
    dense_out = malloc(qn * sizeof *dense_out);
    ref_index = malloc(lists * sizeof *ref_index);
    index = malloc(lists * sizeof *index);
    dense_index = malloc(lists * sizeof *dense_index);
    ref_count = malloc(rows * sizeof *ref_count);
    count = malloc(rows * sizeof *count);
    dense_count = malloc(rows * sizeof *dense_count);
    if (!dq || !dk || !dv || !h16 || !out || !scores || !ref_out || !dense_out || !ref_index ||
        !index || !dense_index || !ref_count || !count || !dense_count) {
        printf("[  FAILED  ] %s: out of memory\n", fc->name);
        goto done;
    }
    /* the first n tokens of each head, as f16 for the library, double for the reference */
    for (int64_t h = 0; h < hq; h++)
        for (size_t i = 0; i < (size_t)(n * d); i++)
            dq[(size_t)(h * n * d) + i] = q[(size_t)(h * full_n * d) + i];
    for (int64_t h = 0; h < hkv; h++)
        for (size_t i = 0; i < (size_t)(n * d); i++) {
            dk[(size_t)(h * n * d) + i] = k[(size_t)(h * full_n * d) + i];
            dv[(size_t)(h * n * d) + i] = v[(size_t)(h * full_n * d) + i];
        }
    float *tmp = out; /* reused as f32 staging before the run */
    for (size_t i = 0; i < qn; i++) tmp[i] = (float)dq[i];
    stem_convert(tmp, STEM_DTYPE_F32, h16, STEM_DTYPE_F16, qn);
    for (size_t i = 0; i < kn; i++) tmp[i] = (float)dk[i];
    stem_convert(tmp, STEM_DTYPE_F32, h16 + qn, STEM_DTYPE_F16, kn);
    for (size_t i = 0; i < kn; i++) tmp[i] = (float)dv[i];
    stem_convert(tmp, STEM_DTYPE_F32, h16 + qn + kn, STEM_DTYPE_F16, kn);

    stem_ref_problem p = {1, hq, hkv, n, d, 1.0 / sqrt((double)d), -1, dq, dk, dv};
    stem_ref_scores(&p, &cfg, scores);
    stem_ref_select(&p, &cfg, scores, ref_index, ref_count);
    stem_ref_attention(&p, cfg.block_size, ref_index, ref_count, ref_out);
    for (size_t r = 0; r < rows; r++) {
        int64_t row = (int64_t)(r % (size_t)nb);
        dense_count[r] = (int32_t)(row + 1);
        for (int64_t j = 0; j < nb; j++) dense_index[r * (size_t)nb + (size_t)j] =
            j <= row ? (int32_t)j : -1;
    }
    stem_ref_attention(&p, cfg.block_size, dense_index, dense_count, dense_out);

    /* the library: f16 in, f32 out, counts and lists back */
    const size_t in_bytes = (qn + 2 * kn) * 2, out_bytes = qn * 4;
    const size_t idx_bytes = lists * 4, cnt_bytes = rows * 4;
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = 1;
    desc.num_q_heads = hq;
    desc.num_kv_heads = hkv;
    desc.q_len = desc.kv_len = n;
    desc.head_dim = d;
    desc.dtype = STEM_DTYPE_F16;
    stem_status st = stem_buffer_create(ctx, in_bytes + out_bytes + idx_bytes + cnt_bytes, &buf);
    if (st == STEM_OK) st = stem_buffer_write(buf, 0, h16, in_bytes);
    if (st == STEM_OK) st = stem_plan_create(ctx, &desc, &cfg, &plan);
    if (st == STEM_OK) {
        stem_tensor tq = stem_tensor_bhnd(buf, 0, STEM_DTYPE_F16, 1, hq, n, d);
        stem_tensor tk = stem_tensor_bhnd(buf, qn * 2, STEM_DTYPE_F16, 1, hkv, n, d);
        stem_tensor tv = stem_tensor_bhnd(buf, (qn + kn) * 2, STEM_DTYPE_F16, 1, hkv, n, d);
        stem_tensor to = stem_tensor_bhnd(buf, in_bytes, STEM_DTYPE_F32, 1, hq, n, d);
        stem_tensor ti = stem_tensor_bhnd(buf, in_bytes + out_bytes, STEM_DTYPE_I32, 1, hq, nb, nb);
        stem_tensor tc = stem_tensor_bhnd(buf, in_bytes + out_bytes + idx_bytes, STEM_DTYPE_I32, 1,
                                          hq, nb, 1);
        st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, &ti, &tc);
    }
    if (st == STEM_OK) st = stem_synchronize(ctx);
    if (st == STEM_OK) st = stem_buffer_read(buf, in_bytes, out, out_bytes);
    if (st == STEM_OK) st = stem_buffer_read(buf, in_bytes + out_bytes, index, idx_bytes);
    if (st == STEM_OK) st = stem_buffer_read(buf, in_bytes + out_bytes + idx_bytes, count, cnt_bytes);
    if (st != STEM_OK) {
        printf("[  FAILED  ] %s: %s: %s\n", fc->name, stem_status_name(st), stem_last_error());
        goto done;
    }

    /* selection: a row may differ only in blocks whose reference score is
     * within a near-tie of the row's threshold (f16 inputs, f32 scoring) */
    long rows_differ = 0, bad_rows = 0;
    for (size_t r = 0; r < rows; r++) {
        const int32_t *a = index + r * (size_t)nb, *b = ref_index + r * (size_t)nb;
        if (count[r] == ref_count[r] && !memcmp(a, b, (size_t)count[r] * 4)) continue;
        rows_differ++;
        const double *s = scores + r * (size_t)nb;
        double thr = INFINITY, top = -INFINITY;
        for (int32_t j = 0; j < ref_count[r]; j++) thr = fmin(thr, s[b[j]]);
        for (int64_t j = 0; j < nb; j++) top = isfinite(s[j]) ? fmax(top, s[j]) : top;
        const double tol = 2e-3 * (1.0 + fabs(top));
        char in_a[1024] = {0}, in_b[1024] = {0};
        for (int32_t j = 0; j < count[r] && a[j] >= 0 && a[j] < 1024; j++) in_a[a[j]] = 1;
        for (int32_t j = 0; j < ref_count[r] && b[j] >= 0 && b[j] < 1024; j++) in_b[b[j]] = 1;
        for (int64_t j = 0; j < nb && j < 1024; j++)
            if (in_a[j] != in_b[j] && !(fabs(s[j] - thr) <= tol)) {
                bad_rows++;
                break;
            }
    }
    double *got = malloc(qn * sizeof *got);
    if (!got) {
        printf("[  FAILED  ] %s: out of memory\n", fc->name);
        goto done;
    }
    double max_abs = 0.0;
    for (size_t i = 0; i < qn; i++) {
        got[i] = out[i];
        max_abs = fmax(max_abs, fabs(got[i] - ref_out[i]));
    }
    /* rows that legitimately chose another near-tied block are excluded by
     * comparing the output only where the selection agrees */
    double max_abs_agree = 0.0;
    for (int64_t h = 0; h < hq; h++)
        for (int64_t t = 0; t < n; t++) {
            size_t r = (size_t)(h * nb + t / cfg.block_size);
            if (count[r] != ref_count[r] ||
                memcmp(index + r * (size_t)nb, ref_index + r * (size_t)nb, (size_t)count[r] * 4))
                continue;
            for (int64_t i = 0; i < d; i++) {
                size_t at = (size_t)((h * n + t) * d + i);
                max_abs_agree = fmax(max_abs_agree, fabs(got[at] - ref_out[at]));
            }
        }
    const double dense_err = rel_l2(got, dense_out, qn);
    double kept = 0.0;
    for (size_t r = 0; r < rows; r++) kept += count[r];
    const double density = kept / ((double)hq * (double)nb * (double)(nb + 1) / 2.0);
    free(got);
    /* XAttention on real activations: the official and strict rules must
     * really select differently here, or the case would not tell them apart. */
    long split_lag = 0, split_sink = 0;
    const int xattn = fc->selector == STEM_SELECTOR_XATTENTION ||
                      fc->selector == STEM_SELECTOR_XATTENTION_STRICT;
    if (xattn)
        conf_xattn_rule_split(&p, &cfg, nb, scores, &split_lag, &split_sink);
    if (xattn)
        printf("[   INFO   ] %s: rows where the XAttention rules differ: %ld with block 0 kept "
               "by mass, %ld with block 0 rejected by mass\n",
               fc->name, split_lag, split_sink);
    const int ok = bad_rows == 0 && max_abs_agree <= 2e-3 && dense_err <= fc->max_dense_err &&
                   (!xattn || split_lag + split_sink > 0);
    printf("[ %s ] %s: density %.3f, rows differing from the reference %ld (beyond near-ties "
           "%ld), max |out - ref| %.2e where the lists agree, ||stem - dense||/||dense|| %.4f "
           "(bound %.2f)\n",
           ok ? "      OK" : "  FAILED", fc->name, density, rows_differ, bad_rows, max_abs_agree,
           dense_err, fc->max_dense_err);
    (void)max_abs;
    result = ok;
done:
    stem_plan_destroy(plan);
    stem_buffer_destroy(buf);
    free(q); free(k); free(v); free(dq); free(dk); free(dv); free(h16); free(out);
    free(scores); free(ref_out); free(dense_out); free(ref_index); free(index);
    free(dense_index); free(ref_count); free(count); free(dense_count);
    return result;
}

void conf_run_fixture_cases(stem_context *ctx, int level, const char *filter, long *passed,
                            long *failed, long *skipped)
{
    char dir[1024];
    fixture_dir(dir, sizeof dir);
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        const fixture_case *fc = &k_cases[i];
        if (filter && !strstr(fc->name, filter)) continue;
        if (fc->full_only && !level) continue;
        int r = run_fixture_case(ctx, fc, dir);
        if (r > 0) ++*passed;
        else if (r == 0) ++*failed;
        else ++*skipped;
        fflush(stdout);
    }
}
