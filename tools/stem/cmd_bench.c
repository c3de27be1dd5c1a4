/* stem bench: Llama-8B-like layer shapes at chosen N; ms per stage,
 * density, effective GFLOP/s and error against dense. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cmds.h"
#include "convert.h"

void bench_cli_init(bench_cli *c) {
    memset(c, 0, sizeof *c);
    tool_opts_init(&c->o);
    c->shape.batch = 1;
    c->shape.hq = 32; /* Llama-3-8B: 32 query heads, 8 KV heads, head_dim 128 */
    c->shape.hkv = 8;
    c->shape.d = 128;
    c->shape.dtype = STEM_DTYPE_BF16;
    c->shape.kind = STEM_SYNTH_STRUCTURED;
    c->shape.seed = 1;
    c->n[0] = 8192;
    c->n[1] = 16384;
    c->nn = 2;
    c->warmup = c->repeat = -1;
    c->dense = 1;
}

void bench_print_opts_help(void) {
    puts("  --n LIST              token counts, comma-separated (bench 8192,16384; demo 16384)\n"
         "  --batch B --hq H --hkv H --d D   shape (1, 32, 8, 128: Llama-3-8B)\n"
         "  --dtype T             f32 | f16 | bf16 (bf16)\n"
         "  --input KIND          structured | random (structured)\n"
         "  --seed S              generator seed (1)\n"
         "  --warmup N --repeat N warm-up and timed runs; the median is reported\n"
         "  --no-dense            skip the dense run (no speedup, no error)\n"
         "  --chunk C             chunked prefill in calls of C queries (prompt_len = N) vs\n"
         "                        one-shot: time, rows equal to one-shot, output difference\n"
         "  --prefix P            the same for one prefix-cached call (queries [P, N))\n"
         "  --seq-lens LIST       one varlen call of sequences of these lengths (packed\n"
         "                        queries, KV_PACKED keys) vs separate calls; with --prefix P\n"
         "                        each sequence's queries are [P, L)\n"
         "  --page-size P         the same with K/V in shuffled pages of P tokens (KV_PAGED);\n"
         "                        without --seq-lens: --batch sequences of each N\n"
         "  --markdown | --json   output format (default: aligned text)\n"
         "  --quiet               no progress lines on stderr\n"
         "  --trace               every run's stage times on stderr (warm-ups marked)");
}

int bench_parse_opt(bench_cli *c, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    int m;
    int32_t x;
    if (!strcmp(a, "--no-dense"))
        return c->dense = 0, 1;
    if (!strcmp(a, "--markdown"))
        return c->markdown = 1, 1;
    if (!strcmp(a, "--json"))
        return c->json = 1, 1;
    if (!strcmp(a, "--quiet"))
        return c->quiet = 1, 1;
    if (!strcmp(a, "--trace"))
        return c->trace = 1, 1;
    if ((v = tool_take(argc, argv, i, "--chunk", &m)) || m)
        return v && tool_parse_i64("--chunk", v, 1, INT64_MAX, &c->chunk) == 0 ? 1 : -1;
    if ((v = tool_take(argc, argv, i, "--prefix", &m)) || m)
        return v && tool_parse_i64("--prefix", v, 1, INT64_MAX, &c->prefix) == 0 ? 1 : -1;
    if ((v = tool_take(argc, argv, i, "--seq-lens", &m)) || m)
        return v && tool_parse_i64_list("--seq-lens", v, c->seq_lens, BENCH_MAX_SEQS,
                                        &c->nseq_lens) == 0
                   ? 1
                   : -1;
    if ((v = tool_take(argc, argv, i, "--page-size", &m)) || m)
        return v && tool_parse_i32("--page-size", v, 1, 1 << 20, &c->page_size) == 0 ? 1 : -1;
    if ((v = tool_take(argc, argv, i, "--n", &m)) || m)
        return v && tool_parse_i64_list("--n", v, c->n, BENCH_MAX_N, &c->nn) == 0 ? 1 : -1;
    static const struct {
        const char *flag;
        size_t off;
    } dims[] = {{"--batch", offsetof(bench_cli, shape.batch)},
                {"--hq", offsetof(bench_cli, shape.hq)},
                {"--hkv", offsetof(bench_cli, shape.hkv)},
                {"--d", offsetof(bench_cli, shape.d)}};
    for (size_t k = 0; k < 4; k++) {
        if ((v = tool_take(argc, argv, i, dims[k].flag, &m)) || m) {
            int64_t val;
            if (!v || tool_parse_i64(dims[k].flag, v, 1, INT32_MAX, &val) != 0)
                return -1;
            memcpy((char *)c + dims[k].off, &val, sizeof val);
            c->hq_set |= k == 1;
            c->hkv_set |= k == 2;
            c->d_set |= k == 3;
            return 1;
        }
    }
    if ((v = tool_take(argc, argv, i, "--dtype", &m)) || m) {
        if (!v || tool_parse_dtype(v, &c->shape.dtype) != 0)
            return tool_error("--dtype: expected f32, f16 or bf16"), -1;
        return c->dtype_set = 1, 1;
    }
    if ((v = tool_take(argc, argv, i, "--input", &m)) || m) {
        if (v && !strcmp(v, "structured"))
            c->shape.kind = STEM_SYNTH_STRUCTURED;
        else if (v && !strcmp(v, "random"))
            c->shape.kind = STEM_SYNTH_RANDOM;
        else
            return tool_error("--input: expected structured or random"), -1;
        return 1;
    }
    if ((v = tool_take(argc, argv, i, "--seed", &m)) || m) {
        int64_t s;
        if (!v || tool_parse_i64("--seed", v, 0, INT64_MAX, &s) != 0)
            return -1;
        return c->shape.seed = (uint64_t)s, 1;
    }
    if ((v = tool_take(argc, argv, i, "--warmup", &m)) || m) {
        if (!v || tool_parse_i32("--warmup", v, 0, 10000, &x) != 0)
            return -1;
        return c->warmup = x, 1;
    }
    if ((v = tool_take(argc, argv, i, "--repeat", &m)) || m) {
        if (!v || tool_parse_i32("--repeat", v, 1, 10000, &x) != 0)
            return -1;
        return c->repeat = x, 1;
    }
    return 0;
}

/* ------------------------------------------------------------ one case */

static double load_f32(const void *p, stem_dtype dt, size_t i) {
    if (dt == STEM_DTYPE_F32)
        return ((const float *)p)[i];
    float f = 0.0f;
    stem_convert((const uint16_t *)p + i, dt, &f, STEM_DTYPE_F32, 1);
    return f;
}

#define CHECK(call, what)                                                                     \
    do {                                                                                      \
        stem_status st_ = (call);                                                             \
        if (st_ != STEM_OK) {                                                                 \
            tool_fail(st_, what);                                                             \
            goto done;                                                                        \
        }                                                                                     \
    } while (0)

int bench_inputs(const bench_shape *s, float **hq, float **hk, float **hv)
{
    const int64_t qd[4] = {s->batch, s->hq, s->n, s->d}, kd[4] = {s->batch, s->hkv, s->n, s->d};
    const size_t qn = tool_mul_size(4, qd, 1), kn = tool_mul_size(4, kd, 1);
    *hq = malloc(qn * sizeof(float));
    *hk = malloc(kn * sizeof(float));
    *hv = malloc(kn * sizeof(float));
    if (!*hq || !*hk || !*hv)
        return tool_error("out of memory for inputs (%zu + 2 x %zu floats)", qn, kn);
    stem_synth_qkv(s->kind, s->seed, s->batch, s->hq, s->hkv, s->n, s->d, *hq, *hk, *hv);
    /* In place: element i of the narrower type never overtakes element i. */
    stem_convert(*hq, STEM_DTYPE_F32, *hq, s->dtype, qn);
    stem_convert(*hk, STEM_DTYPE_F32, *hk, s->dtype, kn);
    stem_convert(*hv, STEM_DTYPE_F32, *hv, s->dtype, kn);
    return 0;
}

void bench_desc(const bench_shape *s, const tool_opts *o, stem_attention_desc *desc)
{
    stem_attention_desc_init(desc);
    desc->batch = s->batch;
    desc->num_q_heads = s->hq;
    desc->num_kv_heads = s->hkv;
    desc->q_len = desc->kv_len = s->n;
    desc->head_dim = s->d;
    desc->dtype = s->dtype;
    desc->causal = 1;
    desc->softmax_scale = o->scale;
    desc->layer_index = o->layer;
}

int bench_case(stem_context *ctx, const tool_opts *o, const bench_shape *s, int warmup, int repeat,
               int dense, int quiet, int trace, bench_result *r) {
    int rc = 1;
    const int64_t B = s->batch, Hq = s->hq, Hkv = s->hkv, N = s->n, d = s->d;
    const int64_t qd[4] = {B, Hq, N, d}, kd[4] = {B, Hkv, N, d};
    const size_t esz = stem_dtype_size(s->dtype);
    size_t qn = tool_mul_size(4, qd, 1), kn = tool_mul_size(4, kd, 1);
    float *hq = NULL, *hk = NULL, *hv = NULL;
    void *os = NULL, *odn = NULL;
    int32_t *counts = NULL;
    double *ms = NULL;
    stem_plan *plan = NULL, *dplan = NULL;
    stem_buffer *buf[8] = {0}; /* q k v out_stem out_dense scores index count */
    memset(r, 0, sizeof *r);

    if (!qn || !kn || !tool_mul_size(4, qd, sizeof(float)) || !tool_mul_size(4, kd, sizeof(float)))
        return tool_error("shape too large");
    if (!quiet)
        fprintf(stderr, "[N=%lld] generating %s input\n", (long long)N,
                s->kind == STEM_SYNTH_STRUCTURED ? "structured" : "random");
    if (bench_inputs(s, &hq, &hk, &hv))
        goto done;

    stem_attention_desc desc;
    bench_desc(s, o, &desc);
    CHECK(stem_plan_create(ctx, &desc, &o->cfg, &plan), "stem_plan_create");
    stem_plan_info_init(&r->info);
    CHECK(stem_plan_get_info(plan, &r->info), "stem_plan_get_info");
    stem_config dcfg = o->cfg;
    dcfg.selector = STEM_SELECTOR_DENSE;
    if (dense)
        CHECK(stem_plan_create(ctx, &desc, &dcfg, &dplan), "stem_plan_create (dense)");

    const int64_t nq = r->info.num_q_blocks, nk = r->info.num_k_blocks;
    const int64_t sd[4] = {B, Hq, nq, nk}, cd[3] = {B, Hq, nq};
    const size_t bytes[8] = {qn * esz, kn * esz, kn * esz, qn * esz, qn * esz,
                             tool_mul_size(4, sd, 4), tool_mul_size(4, sd, 4),
                             tool_mul_size(3, cd, 4)};
    const void *src[3] = {hq, hk, hv};
    for (int i = 0; i < 8; i++) {
        if (i == 4 && !dense)
            continue;
        CHECK(stem_buffer_create(ctx, bytes[i] ? bytes[i] : 4, &buf[i]), "stem_buffer_create");
        if (i < 3)
            CHECK(stem_buffer_write(buf[i], 0, src[i], bytes[i]), "stem_buffer_write");
    }
    free(hq);
    free(hk);
    free(hv);
    hq = hk = hv = NULL;
    const stem_tensor tq = stem_tensor_bhnd(buf[0], 0, s->dtype, B, Hq, N, d);
    const stem_tensor tk = stem_tensor_bhnd(buf[1], 0, s->dtype, B, Hkv, N, d);
    const stem_tensor tv = stem_tensor_bhnd(buf[2], 0, s->dtype, B, Hkv, N, d);
    const stem_tensor tos = stem_tensor_bhnd(buf[3], 0, s->dtype, B, Hq, N, d);
    const stem_tensor tod = stem_tensor_bhnd(buf[4], 0, s->dtype, B, Hq, N, d);
    const stem_tensor tsc = stem_tensor_bhnd(buf[5], 0, STEM_DTYPE_F32, B, Hq, nq, nk);
    const stem_tensor tix = stem_tensor_bhnd(buf[6], 0, STEM_DTYPE_I32, B, Hq, nq, nk);
    const stem_tensor tct = stem_tensor_bhnd(buf[7], 0, STEM_DTYPE_I32, B, Hq, nq, 1);

    ms = calloc((size_t)repeat * 5, sizeof *ms);
    if (!ms) {
        tool_error("out of memory");
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "[N=%lld] stem: %d warm-up + %d timed runs\n", (long long)N, warmup,
                repeat);
    for (int it = 0; it < warmup + repeat; it++) {
        CHECK(stem_synchronize(ctx), "stem_synchronize");
        double t0 = tool_now_ms();
        if (!r->info.dense) /* a dense plan's selection reads no scores (as stem_prefill) */
            CHECK(stem_score(plan, &tq, &tk, &tv, &tsc), "stem_score");
        CHECK(stem_synchronize(ctx), "stem_synchronize");
        double t1 = tool_now_ms();
        CHECK(stem_select(plan, &tsc, &tix, &tct), "stem_select");
        CHECK(stem_synchronize(ctx), "stem_synchronize");
        double t2 = tool_now_ms();
        CHECK(stem_attention(plan, &tq, &tk, &tv, &tix, &tct, &tos), "stem_attention");
        CHECK(stem_synchronize(ctx), "stem_synchronize");
        double t3 = tool_now_ms();
        if (trace)
            fprintf(stderr, "[N=%lld] stem run %d%s: score %.3f select %.3f attn %.3f ms\n",
                    (long long)N, it, it < warmup ? " (warm-up)" : "", t1 - t0, t2 - t1,
                    t3 - t2);
        if (it >= warmup) {
            int k = it - warmup;
            ms[k] = t1 - t0;
            ms[repeat + k] = t2 - t1;
            ms[2 * repeat + k] = t3 - t2;
            ms[3 * repeat + k] = t3 - t0;
        }
    }
    r->score_ms = tool_median(ms, repeat);
    r->select_ms = tool_median(ms + repeat, repeat);
    r->attn_ms = tool_median(ms + 2 * repeat, repeat);
    r->stem_ms = tool_median(ms + 3 * repeat, repeat);

    counts = malloc(bytes[7] ? bytes[7] : 4);
    if (!counts) {
        tool_error("out of memory");
        goto done;
    }
    CHECK(stem_buffer_read(buf[7], 0, counts, bytes[7]), "stem_buffer_read");
    uint64_t kept = 0, causal = 0;
    for (int64_t I = 0; I < nq; I++)
        causal += (uint64_t)(I + 1 < nk ? I + 1 : nk);
    causal *= (uint64_t)(B * Hq);
    for (size_t i = 0; i < (size_t)(B * Hq * nq); i++)
        kept += counts[i] > 0 ? (uint64_t)counts[i] : 0;
    r->density = causal ? (double)kept / (double)causal : 0.0;
    r->causal_gflop = 2.0 * (double)B * (double)Hq * (double)N * (double)N * (double)d * 1e-9;

    if (dense) {
        if (!quiet)
            fprintf(stderr, "[N=%lld] dense: %d warm-up + %d timed runs\n", (long long)N, warmup,
                    repeat);
        /* DENSE ignores the scores; its lists replace Stem's (already used). */
        CHECK(stem_select(dplan, &tsc, &tix, &tct), "stem_select (dense)");
        for (int it = 0; it < warmup + repeat; it++) {
            CHECK(stem_synchronize(ctx), "stem_synchronize");
            double t0 = tool_now_ms();
            CHECK(stem_attention(dplan, &tq, &tk, &tv, &tix, &tct, &tod), "stem_attention (dense)");
            CHECK(stem_synchronize(ctx), "stem_synchronize");
            const double t1 = tool_now_ms();
            if (trace)
                fprintf(stderr, "[N=%lld] dense run %d%s: attn %.3f ms\n", (long long)N, it,
                        it < warmup ? " (warm-up)" : "", t1 - t0);
            if (it >= warmup)
                ms[4 * repeat + it - warmup] = t1 - t0;
        }
        r->dense_ms = tool_median(ms + 4 * repeat, repeat);
        os = malloc(bytes[3]);
        odn = malloc(bytes[4]);
        if (!os || !odn) {
            tool_error("out of memory reading outputs");
            goto done;
        }
        CHECK(stem_buffer_read(buf[3], 0, os, bytes[3]), "stem_buffer_read");
        CHECK(stem_buffer_read(buf[4], 0, odn, bytes[4]), "stem_buffer_read");
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < qn; i++) {
            double a = load_f32(os, s->dtype, i), b = load_f32(odn, s->dtype, i);
            num += (a - b) * (a - b);
            den += b * b;
        }
        r->rel_err = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
        r->has_dense = 1;
    }
    rc = 0;

done:
    free(hq);
    free(hk);
    free(hv);
    free(os);
    free(odn);
    free(counts);
    free(ms);
    for (int i = 0; i < 8; i++)
        if (buf[i])
            stem_buffer_destroy(buf[i]);
    if (plan)
        stem_plan_destroy(plan);
    if (dplan)
        stem_plan_destroy(dplan);
    return rc;
}

/* ------------------------------------------------------------- output */

enum { NCOL = 12 };
static const char *col_name[NCOL] = {"N",       "k_start",  "density",    "score ms",
                                     "select ms", "attn ms", "stem ms",   "dense ms",
                                     "speedup", "stem GF/s", "dense GF/s", "rel err"};
static const int col_width[NCOL] = {7, 7, 8, 9, 9, 9, 9, 9, 7, 10, 10, 9};

static void row_cells(const bench_shape *s, const bench_result *r, char cell[NCOL][32]) {
    snprintf(cell[0], 32, "%lld", (long long)s->n);
    snprintf(cell[1], 32, "%d%s", (int)r->info.k_start, r->info.dense ? "*" : "");
    snprintf(cell[2], 32, "%.4f", r->density);
    snprintf(cell[3], 32, "%.3f", r->score_ms);
    snprintf(cell[4], 32, "%.3f", r->select_ms);
    snprintf(cell[5], 32, "%.3f", r->attn_ms);
    snprintf(cell[6], 32, "%.3f", r->stem_ms);
    /* Effective: the causal FLOPs the kept blocks stand for, per second. */
    snprintf(cell[9], 32, "%.1f", r->density * r->causal_gflop / (r->attn_ms * 1e-3));
    if (r->has_dense) {
        snprintf(cell[7], 32, "%.3f", r->dense_ms);
        snprintf(cell[8], 32, "%.2fx", r->dense_ms / r->stem_ms);
        snprintf(cell[10], 32, "%.1f", r->causal_gflop / (r->dense_ms * 1e-3));
        snprintf(cell[11], 32, "%.2e", r->rel_err);
    } else {
        for (int c = 7; c < NCOL; c++)
            if (c != 9)
                snprintf(cell[c], 32, "-");
    }
}

static void print_header(int markdown) {
    if (markdown) {
        for (int c = 0; c < NCOL; c++)
            printf("| %s ", col_name[c]);
        printf("|\n");
        for (int c = 0; c < NCOL; c++)
            printf("|---:");
        printf("|\n");
    } else {
        for (int c = 0; c < NCOL; c++)
            printf("%*s%s", col_width[c], col_name[c], c + 1 < NCOL ? "  " : "\n");
    }
}

static void print_row(int markdown, char cell[NCOL][32]) {
    for (int c = 0; c < NCOL; c++) {
        if (markdown)
            printf("| %s ", cell[c]);
        else
            printf("%*s%s", col_width[c], cell[c], c + 1 < NCOL ? "  " : "\n");
    }
    if (markdown)
        printf("|\n");
    fflush(stdout);
}

static void print_preamble(const bench_cli *c, const stem_device_info *dev, int warmup,
                           int repeat, const char *date) {
    char line[600];
    tool_device_line(dev, line, sizeof line);
    /* Markdown: a heading and a bullet list, so the lines stay apart when rendered. */
    const char *p = c->markdown ? "- " : "# ";
    printf("%sstem bench, libstem %s, %s\n", c->markdown ? "### " : "# ", stem_version_string(),
           date);
    printf("%sdevice: %s\n", p, line);
    printf("%sshape: B=%lld Hq=%lld Hkv=%lld d=%lld %s, %s input (seed %llu); selector %s, "
           "block %d, stride %d\n",
           p, (long long)c->shape.batch, (long long)c->shape.hq, (long long)c->shape.hkv,
           (long long)c->shape.d, stem_dtype_name(c->shape.dtype),
           c->shape.kind == STEM_SYNTH_STRUCTURED ? "structured" : "random",
           (unsigned long long)c->shape.seed, stem_selector_name(c->o.cfg.selector),
           (int)c->o.cfg.block_size, (int)c->o.cfg.stride);
    printf("%stiming: median of %d after %d warm-up, each stage between stem_synchronize "
           "calls; dense = DENSE selector through the same attention kernel\n",
           p, repeat, warmup);
    printf("%sFLOPs: causal dense = 2*B*Hq*N^2*d; stem GF/s = density * that / attn time; "
           "speedup = dense ms / stem ms (all stages); k_start* = dense plan\n",
           p);
    if (c->markdown)
        printf("\n");
}

static void print_json(const bench_cli *c, const stem_device_info *dev, int warmup, int repeat,
                       const char *date, const bench_result *res) {
    printf("{\n  \"tool\": \"stem bench\",\n  \"libstem\": \"%s\",\n  \"date\": \"%s\",\n",
           stem_version_string(), date);
    printf("  \"device\": {\"backend\": \"%s\", \"backend_index\": %u, \"is_gpu\": %s, \"name\": ",
           stem_backend_name(dev->backend), (unsigned)dev->backend_index,
           dev->is_gpu ? "true" : "false");
    tool_json_string(stdout, dev->name);
    printf(", \"detail\": ");
    tool_json_string(stdout, dev->detail);
    printf("},\n  \"shape\": {\"batch\": %lld, \"num_q_heads\": %lld, \"num_kv_heads\": %lld, "
           "\"head_dim\": %lld, \"dtype\": \"%s\", \"input\": \"%s\", \"seed\": %llu},\n",
           (long long)c->shape.batch, (long long)c->shape.hq, (long long)c->shape.hkv,
           (long long)c->shape.d, stem_dtype_name(c->shape.dtype),
           c->shape.kind == STEM_SYNTH_STRUCTURED ? "structured" : "random",
           (unsigned long long)c->shape.seed);
    printf("  \"warmup\": %d,\n  \"repeat\": %d,\n  \"config\": ", warmup, repeat);
    tool_json_config(stdout, &c->o, "  ");
    printf(",\n  \"results\": [");
    for (int i = 0; i < c->nn; i++) {
        const bench_result *r = &res[i];
        printf("%s\n    {\"n\": %lld, \"k_start\": %d, \"dense_plan\": %s, \"density\": ",
               i ? "," : "", (long long)c->n[i], (int)r->info.k_start,
               r->info.dense ? "true" : "false");
        tool_json_number(stdout, r->density);
        const double v[] = {r->score_ms, r->select_ms, r->attn_ms, r->stem_ms,
                            r->density * r->causal_gflop / (r->attn_ms * 1e-3),
                            r->causal_gflop};
        const char *k[] = {"score_ms", "select_ms", "attention_ms", "stem_ms", "stem_gflops",
                           "causal_gflop"};
        for (int j = 0; j < 6; j++) {
            printf(", \"%s\": ", k[j]);
            tool_json_number(stdout, v[j]);
        }
        if (r->has_dense) {
            printf(", \"dense_ms\": ");
            tool_json_number(stdout, r->dense_ms);
            printf(", \"dense_gflops\": ");
            tool_json_number(stdout, r->causal_gflop / (r->dense_ms * 1e-3));
            printf(", \"speedup\": ");
            tool_json_number(stdout, r->dense_ms / r->stem_ms);
            printf(", \"rel_err\": ");
            tool_json_number(stdout, r->rel_err);
        }
        printf("}");
    }
    printf("\n  ]\n}\n");
}

static void help(void) {
    puts("usage: stem bench [options]\n"
         "Per N: structured synthetic Q, K, V at a Llama-3-8B layer shape; Stem's three\n"
         "stages timed separately, dense through the same kernels, error vs dense.\n"
         "bench options:");
    bench_print_opts_help();
    tool_print_common_help(stdout);
}

int bench_cli_parse(bench_cli *c, int argc, char **argv, const char *cmd, void (*help)(void)) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return help(), 0;
        int r = tool_parse_common(&c->o, argc, argv, &i);
        if (r == 0)
            r = bench_parse_opt(c, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r == 0)
            return tool_error("%s: unknown option '%s' (see stem %s --help)", cmd, argv[i], cmd), 2;
    }
    return -1;
}

int cmd_bench(int argc, char **argv) {
    bench_cli c;
    bench_cli_init(&c);
    int parsed = bench_cli_parse(&c, argc, argv, "bench", help);
    if (parsed >= 0)
        return parsed;
    int warmup = c.warmup >= 0 ? c.warmup : 1;
    int repeat = c.repeat >= 0 ? c.repeat : 3;

    stem_context *ctx = NULL;
    stem_device_info dev;
    if (tool_open_context(&c.o, &ctx, &dev) != 0)
        return 1;
    char date[64];
    tool_utc_date(date, sizeof date);
    bench_result res[BENCH_MAX_N];
    int rc = 0;
    if (c.nseq_lens > 0 || c.page_size > 0) { /* varlen mode: its own table */
        print_preamble(&c, &dev, warmup, repeat, date);
        printf("%svarlen call (%s) vs the same sequences as separate calls%s\n",
               c.markdown ? "- " : "# ",
               c.page_size > 0 ? "KV_PAGED, shuffled pages" : "KV_PACKED",
               c.prefix > 0 ? "; queries [prefix, L)" : "");
        if (c.markdown)
            printf("\n| sequences | queries | page | separate ms | varlen ms | ratio | bitwise | "
                   "rel diff |\n|---:|---:|---:|---:|---:|---:|:---:|---:|\n");
        else
            printf("%9s  %8s  %5s  %11s  %9s  %6s  %7s  %9s\n", "sequences", "queries", "page",
                   "separate ms", "varlen ms", "ratio", "bitwise", "rel diff");
        const int rows = c.nseq_lens > 0 ? 1 : c.nn;
        for (int i = 0; i < rows && rc == 0; i++) {
            bench_shape s = c.shape;
            s.n = c.n[i];
            bench_varlen_result vr;
            rc = bench_varlen(ctx, &c.o, &s, c.seq_lens, c.nseq_lens, c.prefix, c.page_size,
                              warmup, repeat, c.quiet, &vr);
            if (rc != 0)
                break;
            printf(c.markdown ? "| %d | %lld | %d | %.3f | %.3f | %.2fx | %s | %.2e |\n"
                              : "%9d  %8lld  %5d  %11.3f  %9.3f  %5.2fx  %7s  %9.2e\n",
                   vr.seqs, (long long)vr.tokens, (int)c.page_size, vr.separate_ms,
                   vr.varlen_ms, vr.varlen_ms / vr.separate_ms, vr.bitwise ? "yes" : "no",
                   vr.rel_diff);
            fflush(stdout);
        }
        stem_context_destroy(ctx);
        return rc;
    }
    if (c.chunk > 0 || c.prefix > 0) { /* chunked mode: its own table */
        print_preamble(&c, &dev, warmup, repeat, date);
        printf("%s%s %lld; prompt_len = N, VISIBLE statistics; rows equal = the calls' rows "
               "equal to one-shot rows; rel diff = output vs one-shot\n",
               c.markdown ? "- " : "# ", c.prefix > 0 ? "prefix" : "chunk",
               (long long)(c.prefix > 0 ? c.prefix : c.chunk));
        if (c.markdown)
            printf("\n| N | calls | one-shot ms | chunked ms | ratio | rows equal | rel diff |\n"
                   "|---:|---:|---:|---:|---:|---:|---:|\n");
        else
            printf("%7s  %5s  %11s  %10s  %6s  %10s  %9s\n", "N", "calls", "one-shot ms",
                   "chunked ms", "ratio", "rows equal", "rel diff");
        for (int i = 0; i < c.nn && rc == 0; i++) {
            bench_shape s = c.shape;
            s.n = c.n[i];
            bench_chunk_result cr;
            rc = bench_chunked(ctx, &c.o, &s, c.chunk, c.prefix, warmup, repeat, c.quiet, &cr);
            if (rc != 0)
                break;
            if (c.markdown)
                printf("| %lld | %d | %.3f | %.3f | %.2fx | %.4f | %.2e |\n", (long long)s.n,
                       cr.calls, cr.oneshot_ms, cr.chunked_ms, cr.chunked_ms / cr.oneshot_ms,
                       cr.rows_equal, cr.rel_diff);
            else
                printf("%7lld  %5d  %11.3f  %10.3f  %5.2fx  %10.4f  %9.2e\n", (long long)s.n,
                       cr.calls, cr.oneshot_ms, cr.chunked_ms, cr.chunked_ms / cr.oneshot_ms,
                       cr.rows_equal, cr.rel_diff);
            fflush(stdout);
        }
        stem_context_destroy(ctx);
        return rc;
    }
    if (!c.json) {
        print_preamble(&c, &dev, warmup, repeat, date);
        print_header(c.markdown);
    }
    for (int i = 0; i < c.nn && rc == 0; i++) {
        bench_shape s = c.shape;
        s.n = c.n[i];
        rc = bench_case(ctx, &c.o, &s, warmup, repeat, c.dense, c.quiet, c.trace, &res[i]);
        if (rc == 0 && !c.json) {
            char cell[NCOL][32];
            row_cells(&s, &res[i], cell);
            print_row(c.markdown, cell);
        }
    }
    if (rc == 0 && c.json)
        print_json(&c, &dev, warmup, repeat, date, res);
    stem_context_destroy(ctx);
    return rc;
}
