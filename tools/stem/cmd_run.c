/* stem run: one Stem prefill on Q, K, V from .npy files; writes the
 * output, block scores, block lists, counts and a JSON summary. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmds.h"
#include "convert.h"
#include "npy.h"
#include "run_varlen.h"
#include "tool.h"

typedef struct run_args {
    tool_opts o;
    const char *path[3]; /* q, k, v */
    const char *outdir;
    int bf16;       /* read '<u2' as bf16 */
    int has_dtype;  /* convert inputs to dtype before running */
    stem_dtype dtype;
    int has_out_dtype;
    stem_dtype out_dtype;
    int time;
    int repeat;
    int64_t prefix;     /* --prefix P / --q-len M: the call's queries are positions [P, N) */
    int64_t q_len;
    int64_t prompt_len; /* --prompt-len (0 = N) */
    run_varlen_args *varlen; /* --seq-lens / --page-size: a varlen call (NULL = off) */
} run_args;

static void help(void) {
    puts("usage: stem run q.npy k.npy v.npy [-o DIR] [options]\n"
         "Q is [H, N, d] or [B, H, N, d] (C order), K and V [.., Hkv, N, d], all the same\n"
         "dtype: '<f4' (f32), '<f2' (f16), or '<u2' read as bf16 with --bf16.\n"
         "Writes to DIR (default stem_out, created if missing):\n"
         "  out.npy       attention output, the input's rank and dtype (bf16 as '<u2')\n"
         "  scores.npy    f32 [B, Hq, nq, nk] block scores (-inf above the diagonal)\n"
         "  blocks.npy    i32 [B, Hq, nq, nk] kept key blocks, ascending, padded with -1\n"
         "  counts.npy    i32 [B, Hq, nq] kept blocks per query-block row\n"
         "  summary.json  shape, device, config, k_start, density (overall, per head)\n"
         "run options:\n"
         "  -o DIR                output directory\n"
         "  --bf16                read '<u2' inputs as bfloat16\n"
         "  --dtype T             convert inputs to f32 | f16 | bf16 before running\n"
         "  --out-dtype T         output dtype (default: the run dtype)\n"
         "  --time                time each stage (after one warm-up prefill)\n"
         "  --repeat N            timed repetitions with --time, median reported (1)\n"
         "  --prefix P            prefix-cached call: queries are positions [P, N) of q.npy,\n"
         "                        keys all N (out.npy then has N - P rows; block rows are the\n"
         "                        absolute query blocks floor(P/B) .. ceil(N/B)-1)\n"
         "  --q-len M             the same with P = N - M\n"
         "  --prompt-len L        prompt length the budget is keyed on (default N)\n"
         "  --seq-lens LIST       varlen call: batch entry b is a sequence of its first L_b\n"
         "                        tokens (one length per entry); queries packed, their last\n"
         "                        M_b (--prefix / --q-len per sequence); out.npy [T, Hq, d],\n"
         "                        scores/blocks.npy [Hq, R, W], counts.npy [Hq, R] (packed rows)\n"
         "  --page-size P         varlen call with K/V in a pool of P-token pages (KV_PAGED)");
    tool_print_common_help(stdout);
}

static int parse_args(int argc, char **argv, run_args *a) {
    memset(a, 0, sizeof *a);
    tool_opts_init(&a->o);
    a->outdir = "stem_out";
    a->repeat = 1;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        int r = tool_parse_common(&a->o, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        int m;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return help(), -1;
        if (!strcmp(argv[i], "--bf16")) {
            a->bf16 = 1;
        } else if (!strcmp(argv[i], "--time")) {
            a->time = 1;
        } else if (((v = tool_take(argc, argv, &i, "-o", &m)) || m) ||
                   ((v = tool_take(argc, argv, &i, "--out", &m)) || m)) {
            if (!v)
                return 2;
            a->outdir = v;
        } else if ((v = tool_take(argc, argv, &i, "--dtype", &m)) || m) {
            if (!v || tool_parse_dtype(v, &a->dtype) != 0)
                return tool_error("--dtype: expected f32, f16 or bf16"), 2;
            a->has_dtype = 1;
        } else if ((v = tool_take(argc, argv, &i, "--out-dtype", &m)) || m) {
            if (!v || tool_parse_dtype(v, &a->out_dtype) != 0)
                return tool_error("--out-dtype: expected f32, f16 or bf16"), 2;
            a->has_out_dtype = 1;
        } else if ((v = tool_take(argc, argv, &i, "--prefix", &m)) || m) {
            if (!v || tool_parse_i64("--prefix", v, 0, INT64_MAX, &a->prefix) != 0)
                return 2;
        } else if ((v = tool_take(argc, argv, &i, "--q-len", &m)) || m) {
            if (!v || tool_parse_i64("--q-len", v, 1, INT64_MAX, &a->q_len) != 0)
                return 2;
        } else if ((v = tool_take(argc, argv, &i, "--prompt-len", &m)) || m) {
            if (!v || tool_parse_i64("--prompt-len", v, 1, INT64_MAX, &a->prompt_len) != 0)
                return 2;
        } else if ((v = tool_take(argc, argv, &i, "--seq-lens", &m)) || m) {
            if (!v || !(a->varlen || (a->varlen = calloc(1, sizeof *a->varlen))) ||
                tool_parse_i64_list("--seq-lens", v, a->varlen->seq_lens, RUN_MAX_SEQS,
                                    &a->varlen->nseq_lens) != 0)
                return 2;
        } else if ((v = tool_take(argc, argv, &i, "--page-size", &m)) || m) {
            if (!v || !(a->varlen || (a->varlen = calloc(1, sizeof *a->varlen))) ||
                tool_parse_i64("--page-size", v, 1, 1 << 20, &a->varlen->page_size) != 0)
                return 2;
        } else if ((v = tool_take(argc, argv, &i, "--repeat", &m)) || m) {
            int32_t n;
            if (!v || tool_parse_i32("--repeat", v, 1, 100000, &n) != 0)
                return 2;
            a->repeat = n;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return tool_error("run: unknown option '%s' (see stem run --help)", argv[i]), 2;
        } else if (npos < 3) {
            a->path[npos++] = argv[i];
        } else {
            return tool_error("run: too many arguments ('%s')", argv[i]), 2;
        }
    }
    if (npos != 3)
        return tool_error("run: need q.npy k.npy v.npy (see stem run --help)"), 2;
    return 0;
}

/* mkdir -p */
static int make_dirs(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return tool_error("%s: path too long", path);
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return tool_error("mkdir %s: %s", buf, strerror(errno));
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return tool_error("%s: not a directory", path);
    return 0;
}

static int join(char *dst, size_t n, const char *dir, const char *name) {
    int k = snprintf(dst, n, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= n)
        return tool_error("%s/%s: path too long", dir, name);
    return 0;
}

static const char *names[3] = {"q", "k", "v"};

/* Checks ranks and dtypes; returns [B, H, N, d] for each of q, k, v. */
static int check_inputs(const run_args *a, npy_array in[3], int64_t dims[3][4],
                        stem_dtype *dtype) {
    for (int t = 0; t < 3; t++) {
        const npy_array *x = &in[t];
        if (x->ndim != 3 && x->ndim != 4)
            return tool_error("%s: %s must be 3-D [H, N, d] or 4-D [B, H, N, d], got %d-D",
                              a->path[t], names[t], x->ndim);
        dims[t][0] = x->ndim == 4 ? x->shape[0] : 1;
        for (int i = 0; i < 3; i++)
            dims[t][1 + i] = x->shape[x->ndim - 3 + i];
        if (x->dtype != in[0].dtype || x->ndim != in[0].ndim)
            return tool_error("%s: q, k and v must share dtype and rank (%s %d-D vs %s %d-D)",
                              a->path[t], npy_dtype_descr(x->dtype), x->ndim,
                              npy_dtype_descr(in[0].dtype), in[0].ndim);
    }
    switch (in[0].dtype) {
    case NPY_F32: *dtype = STEM_DTYPE_F32; break;
    case NPY_F16: *dtype = STEM_DTYPE_F16; break;
    case NPY_U16:
        if (!a->bf16)
            return tool_error("%s: dtype '<u2': pass --bf16 to read it as bfloat16", a->path[0]);
        *dtype = STEM_DTYPE_BF16;
        break;
    default:
        return tool_error("%s: dtype %s is not a Q/K/V dtype (f32, f16, bf16)", a->path[0],
                          npy_dtype_descr(in[0].dtype));
    }
    for (int i = 0; i < 4; i++)
        if (dims[1][i] != dims[2][i])
            return tool_error("k and v shapes differ (dim %d: %lld vs %lld)", i,
                              (long long)dims[1][i], (long long)dims[2][i]);
    static const char *dn[4] = {"batch", "heads", "tokens", "head_dim"};
    for (int i = 0; i < 4; i++)
        if (i != 1 && dims[0][i] != dims[1][i])
            return tool_error("q and k differ in %s (%lld vs %lld)", dn[i],
                              (long long)dims[0][i], (long long)dims[1][i]);
    /* Hq % Hkv, N, d limits and the like: the library checks and explains. */
    return 0;
}

/* Replaces x->data with the same values in dtype `to`. */
static int convert_in_place(npy_array *x, stem_dtype from, stem_dtype to) {
    if (from == to)
        return 0;
    void *dst = malloc(x->count * stem_dtype_size(to) + 1);
    if (!dst)
        return tool_error("out of memory converting inputs");
    stem_convert(x->data, from, dst, to, x->count);
    free(x->data);
    x->data = dst;
    x->nbytes = x->count * stem_dtype_size(to);
    return 0;
}

static stem_status upload(stem_context *ctx, const void *data, size_t bytes, stem_buffer **out) {
    stem_status st = stem_buffer_create(ctx, bytes, out);
    if (st == STEM_OK && data && (st = stem_buffer_write(*out, 0, data, bytes)) != STEM_OK) {
        stem_buffer_destroy(*out);
        *out = NULL;
    }
    return st;
}

typedef struct run_times {
    double score, select, attention, total;
} run_times;

static stem_status timed_stages(stem_context *ctx, stem_plan *plan, const stem_tensor t[7],
                                int repeat, run_times *rt) {
    /* t: q, k, v, out, scores, index, count */
    double *ms = calloc((size_t)repeat * 4, sizeof *ms);
    if (!ms)
        return STEM_ERR_OUT_OF_MEMORY;
    stem_status st = stem_prefill(plan, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6]);
    if (st == STEM_OK)
        st = stem_synchronize(ctx);
    for (int r = 0; r < repeat && st == STEM_OK; r++) {
        double t0 = tool_now_ms();
        if ((st = stem_score(plan, &t[0], &t[1], &t[2], &t[4])) || (st = stem_synchronize(ctx)))
            break;
        double t1 = tool_now_ms();
        if ((st = stem_select(plan, &t[4], &t[5], &t[6])) || (st = stem_synchronize(ctx)))
            break;
        double t2 = tool_now_ms();
        if ((st = stem_attention(plan, &t[0], &t[1], &t[2], &t[5], &t[6], &t[3])) ||
            (st = stem_synchronize(ctx)))
            break;
        double t3 = tool_now_ms();
        ms[r] = t1 - t0;
        ms[repeat + r] = t2 - t1;
        ms[2 * repeat + r] = t3 - t2;
        ms[3 * repeat + r] = t3 - t0;
    }
    if (st == STEM_OK) {
        rt->score = tool_median(ms, repeat);
        rt->select = tool_median(ms + repeat, repeat);
        rt->attention = tool_median(ms + 2 * repeat, repeat);
        rt->total = tool_median(ms + 3 * repeat, repeat);
    }
    free(ms);
    return st;
}

static int write_summary(const char *path, const run_args *a, const int64_t qd[4], int64_t hkv,
                         stem_dtype dtype, stem_dtype out_dtype, const stem_device_info *dev,
                         const stem_plan_info *pi, uint64_t kept, uint64_t causal,
                         const double *head_density, const int32_t *budget,
                         const run_times *rt) {
    FILE *f = fopen(path, "w");
    if (!f)
        return tool_error("%s: %s", path, strerror(errno));
    fprintf(f, "{\n  \"libstem\": \"%s\",\n  \"inputs\": {", stem_version_string());
    for (int t = 0; t < 3; t++) {
        fprintf(f, "%s\"%s\": ", t ? ", " : "", names[t]);
        tool_json_string(f, a->path[t]);
    }
    fprintf(f,
            "},\n  \"shape\": {\"batch\": %lld, \"num_q_heads\": %lld, \"num_kv_heads\": %lld, "
            "\"tokens\": %lld, \"head_dim\": %lld},\n",
            (long long)qd[0], (long long)qd[1], (long long)hkv, (long long)qd[2],
            (long long)qd[3]);
    fprintf(f, "  \"dtype\": \"%s\",\n  \"out_dtype\": \"%s\",\n", stem_dtype_name(dtype),
            stem_dtype_name(out_dtype));
    fprintf(f, "  \"backend\": \"%s\",\n  \"device\": {\"backend_index\": %u, \"name\": ",
            stem_backend_name(dev->backend), (unsigned)dev->backend_index);
    tool_json_string(f, dev->name);
    fprintf(f, ", \"detail\": ");
    tool_json_string(f, dev->detail);
    fprintf(f, ", \"is_gpu\": %s},\n  \"selector\": \"%s\",\n  \"config\": ",
            dev->is_gpu ? "true" : "false", stem_selector_name(a->o.cfg.selector));
    tool_json_config(f, &a->o, "  ");
    fprintf(f,
            ",\n  \"plan\": {\"num_q_blocks\": %lld, \"num_k_blocks\": %lld, \"dense\": %s, "
            "\"k_start\": %d, \"k_end\": %d, \"budget_density\": ",
            (long long)pi->num_q_blocks, (long long)pi->num_k_blocks,
            pi->dense ? "true" : "false", (int)pi->k_start, (int)pi->k_end);
    tool_json_number(f, pi->budget_density);
    fprintf(f, "},\n  \"budget\": [");
    for (int64_t r = 0; budget && r < pi->num_q_blocks; r++)
        fprintf(f, "%s%d", r ? ", " : "", (int)budget[r]);
    fprintf(f, "],\n  \"k_start\": %d,\n  \"kept_blocks\": %llu,\n  \"causal_blocks\": %llu,\n",
            (int)pi->k_start, (unsigned long long)kept, (unsigned long long)causal);
    fprintf(f, "  \"density\": ");
    tool_json_number(f, causal ? (double)kept / (double)causal : 0.0);
    fprintf(f, ",\n  \"density_per_head\": [");
    for (int64_t h = 0; h < qd[1]; h++) {
        fprintf(f, "%s", h ? ", " : "");
        tool_json_number(f, head_density[h]);
    }
    fprintf(f, "]");
    if (rt) {
        fprintf(f, ",\n  \"timing_ms\": {\"repeat\": %d, \"score\": ", a->repeat);
        tool_json_number(f, rt->score);
        fprintf(f, ", \"select\": ");
        tool_json_number(f, rt->select);
        fprintf(f, ", \"attention\": ");
        tool_json_number(f, rt->attention);
        fprintf(f, ", \"total\": ");
        tool_json_number(f, rt->total);
        fprintf(f, "}");
    }
    fprintf(f, ",\n  \"files\": {\"out\": \"out.npy\", \"scores\": \"scores.npy\", "
               "\"blocks\": \"blocks.npy\", \"counts\": \"counts.npy\"}\n}\n");
    if (fclose(f) != 0)
        return tool_error("%s: write error", path);
    return 0;
}

int cmd_run(int argc, char **argv) {
    run_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;

    npy_array in[3];
    memset(in, 0, sizeof in);
    stem_context *ctx = NULL;
    stem_plan *plan = NULL;
    stem_buffer *buf[7] = {0}; /* q, k, v, out, scores, index, count */
    void *host[4] = {0};       /* out, scores, index, count */
    double *head_density = NULL;
    int32_t *budget = NULL;
    stem_status st;
    char err[512];
    rc = 1;

    for (int t = 0; t < 3; t++) {
        if (npy_read_file(a.path[t], &in[t], err, sizeof err) != 0) {
            tool_error("%s", err);
            goto done;
        }
    }
    int64_t dims[3][4];
    stem_dtype in_dtype = STEM_DTYPE_F32;
    if (check_inputs(&a, in, dims, &in_dtype) != 0)
        goto done;
    stem_dtype dtype = a.has_dtype ? a.dtype : in_dtype;
    stem_dtype out_dtype = a.has_out_dtype ? a.out_dtype : dtype;
    for (int t = 0; t < 3; t++)
        if (convert_in_place(&in[t], in_dtype, dtype) != 0)
            goto done;

    stem_device_info dev;
    if (tool_open_context(&a.o, &ctx, &dev) != 0)
        goto done;
    if (a.varlen) { /* one varlen call over the batch entries */
        if (a.time || (a.q_len > 0 && a.prefix > 0)) {
            tool_error("--seq-lens/--page-size: no --time; give one of --prefix, --q-len");
            goto done;
        }
        a.varlen->cfg = &a.o.cfg;
        a.varlen->scale = a.o.scale;
        a.varlen->layer = a.o.layer;
        a.varlen->outdir = a.outdir;
        a.varlen->prefix = a.prefix;
        a.varlen->q_len = a.q_len;
        a.varlen->prompt_len = a.prompt_len;
        if (make_dirs(a.outdir) == 0)
            rc = run_varlen(a.varlen, ctx, &dev, in, dims, dtype, out_dtype);
        goto done;
    }
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = dims[0][0];
    desc.num_q_heads = dims[0][1];
    desc.num_kv_heads = dims[1][1];
    /* A prefix-cached call: the last M = N - P queries against all N keys. */
    const int64_t N = dims[0][2];
    if (a.q_len > 0 && a.prefix > 0) {
        tool_error("--prefix and --q-len: give one");
        goto done;
    }
    const int64_t P = a.q_len > 0 ? N - a.q_len : a.prefix, M = N - P;
    if (P < 0 || M < 1) {
        tool_error("--prefix/--q-len: need 0 <= prefix < N = %lld", (long long)N);
        goto done;
    }
    desc.q_len = M;
    desc.kv_len = N;
    desc.prompt_len = a.prompt_len;
    desc.head_dim = dims[0][3];
    desc.dtype = dtype;
    desc.causal = 1;
    desc.softmax_scale = a.o.scale;
    desc.layer_index = a.o.layer;
    if ((st = stem_plan_create(ctx, &desc, &a.o.cfg, &plan)) != STEM_OK) {
        tool_fail(st, "stem_plan_create");
        goto done;
    }
    stem_plan_info pi;
    stem_plan_info_init(&pi);
    if ((st = stem_plan_get_info(plan, &pi)) != STEM_OK) {
        tool_fail(st, "stem_plan_get_info");
        goto done;
    }

    const int64_t B = dims[0][0], Hq = dims[0][1], d = dims[0][3];
    const int64_t nq = pi.num_q_blocks, nk = pi.num_k_blocks, row0 = nk - nq;
    const int64_t out_dims[4] = {B, Hq, M, d}, blk_dims[4] = {B, Hq, nq, nk};
    const int64_t cnt_dims[3] = {B, Hq, nq};
    size_t bytes[7] = {in[0].nbytes, in[1].nbytes, in[2].nbytes,
                       tool_mul_size(4, out_dims, stem_dtype_size(out_dtype)),
                       tool_mul_size(4, blk_dims, 4), tool_mul_size(4, blk_dims, 4),
                       tool_mul_size(3, cnt_dims, 4)};
    for (int i = 3; i < 7; i++) {
        if (bytes[i] == 0 && B * Hq * N > 0) {
            tool_error("output size overflows");
            goto done;
        }
    }
    for (int i = 0; i < 7; i++) {
        if ((st = upload(ctx, i < 3 ? in[i].data : NULL, bytes[i] ? bytes[i] : 4, &buf[i])) !=
            STEM_OK) {
            tool_fail(st, "stem_buffer_create");
            goto done;
        }
        if (i < 3)
            npy_free(&in[i]); /* device has it now; halves peak host memory */
    }
    stem_tensor t[7] = {
        stem_tensor_bhnd(buf[0], 0, dtype, B, Hq, N, d), /* narrowed to [P, N) below */
        stem_tensor_bhnd(buf[1], 0, dtype, B, dims[1][1], N, d),
        stem_tensor_bhnd(buf[2], 0, dtype, B, dims[2][1], N, d),
        stem_tensor_bhnd(buf[3], 0, out_dtype, B, Hq, M, d),
        stem_tensor_bhnd(buf[4], 0, STEM_DTYPE_F32, B, Hq, nq, nk),
        stem_tensor_bhnd(buf[5], 0, STEM_DTYPE_I32, B, Hq, nq, nk),
        stem_tensor_bhnd(buf[6], 0, STEM_DTYPE_I32, B, Hq, nq, 1),
    };
    t[0].dims[2] = M; /* queries P .. N-1 of q.npy: a view, no copy */
    t[0].offset = (size_t)(P * t[0].strides[2]) * stem_dtype_size(dtype);
    run_times rt = {0, 0, 0, 0};
    if (a.time) {
        st = timed_stages(ctx, plan, t, a.repeat, &rt);
    } else {
        double t0 = tool_now_ms();
        st = stem_prefill(plan, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6]);
        if (st == STEM_OK)
            st = stem_synchronize(ctx);
        rt.total = tool_now_ms() - t0;
    }
    if (st != STEM_OK) {
        tool_fail(st, "prefill");
        goto done;
    }
    for (int i = 0; i < 4; i++) {
        host[i] = malloc(bytes[3 + i] ? bytes[3 + i] : 1);
        if (!host[i]) {
            tool_error("out of memory reading results");
            goto done;
        }
        if ((st = stem_buffer_read(buf[3 + i], 0, host[i], bytes[3 + i])) != STEM_OK) {
            tool_fail(st, "stem_buffer_read");
            goto done;
        }
    }

    /* Density: kept blocks over causal blocks (row I sees min(I+1, nk)). */
    const int32_t *counts = host[3];
    uint64_t causal_row_sum = 0, kept = 0;
    for (int64_t I = row0; I < row0 + nq; I++) /* absolute query blocks of the call */
        causal_row_sum += (uint64_t)(I + 1 < nk ? I + 1 : nk);
    head_density = calloc((size_t)Hq + 1, sizeof *head_density);
    if (!head_density) {
        tool_error("out of memory");
        goto done;
    }
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < Hq; h++) {
            uint64_t hk = 0;
            for (int64_t I = 0; I < nq; I++)
                hk += (uint64_t)(counts[(b * Hq + h) * nq + I] > 0 ? counts[(b * Hq + h) * nq + I]
                                                                   : 0);
            head_density[h] += causal_row_sum ? (double)hk / (double)(causal_row_sum * B) : 0.0;
            kept += hk;
        }
    }
    uint64_t causal = causal_row_sum * (uint64_t)B * (uint64_t)Hq;

    budget = malloc((size_t)nq * sizeof *budget);
    if (!budget || stem_plan_get_budget(plan, budget, (size_t)nq) != STEM_OK) {
        tool_error("cannot read the budget schedule");
        goto done;
    }
    if (make_dirs(a.outdir) != 0)
        goto done;
    char path[4200];
    const int out_rank = in[0].ndim; /* mirror the input: 3-D in, 3-D out */
    const npy_dtype out_npy = out_dtype == STEM_DTYPE_F32   ? NPY_F32
                              : out_dtype == STEM_DTYPE_F16 ? NPY_F16
                                                            : NPY_U16;
    if (join(path, sizeof path, a.outdir, "out.npy") ||
        npy_write_file(path, out_npy, out_rank, out_dims + (4 - out_rank), host[0], err,
                       sizeof err) ||
        join(path, sizeof path, a.outdir, "scores.npy") ||
        npy_write_file(path, NPY_F32, 4, blk_dims, host[1], err, sizeof err) ||
        join(path, sizeof path, a.outdir, "blocks.npy") ||
        npy_write_file(path, NPY_I32, 4, blk_dims, host[2], err, sizeof err) ||
        join(path, sizeof path, a.outdir, "counts.npy") ||
        npy_write_file(path, NPY_I32, 3, cnt_dims, host[3], err, sizeof err)) {
        tool_error("%s", err);
        goto done;
    }
    if (join(path, sizeof path, a.outdir, "summary.json") ||
        write_summary(path, &a, dims[0], dims[1][1], dtype, out_dtype, &dev, &pi, kept, causal,
                      head_density, budget, a.time ? &rt : NULL))
        goto done;

    char devline[600];
    tool_device_line(&dev, devline, sizeof devline);
    printf("device    %s\n", devline);
    if (P > 0)
        printf("call      queries [%lld, %lld) of %lld keys (prefix %lld), rows %lld..%lld\n",
               (long long)P, (long long)N, (long long)N, (long long)P, (long long)row0,
               (long long)(nk - 1));
    printf("shape     B=%lld Hq=%lld Hkv=%lld N=%lld d=%lld %s -> %s\n", (long long)B,
           (long long)Hq, (long long)dims[1][1], (long long)N, (long long)d,
           stem_dtype_name(dtype), stem_dtype_name(out_dtype));
    printf("selector  %s, blocks %lld x %lld, k_start %d%s\n",
           stem_selector_name(a.o.cfg.selector), (long long)nq, (long long)nk, (int)pi.k_start,
           pi.dense ? " (dense plan)" : "");
    printf("density   %.4f (%llu of %llu causal blocks)\n",
           causal ? (double)kept / (double)causal : 0.0, (unsigned long long)kept,
           (unsigned long long)causal);
    if (a.time)
        printf("time      score %.3f ms, select %.3f ms, attention %.3f ms, total %.3f ms "
               "(median of %d)\n",
               rt.score, rt.select, rt.attention, rt.total, a.repeat);
    else
        printf("time      %.3f ms (one prefill, includes first-use setup; --time for stages)\n",
               rt.total);
    printf("wrote     %s/{out,scores,blocks,counts}.npy, %s/summary.json\n", a.outdir, a.outdir);
    rc = 0;

done:
    free(a.varlen);
    for (int i = 0; i < 3; i++)
        npy_free(&in[i]);
    for (int i = 0; i < 4; i++)
        free(host[i]);
    free(head_density);
    free(budget);
    for (int i = 0; i < 7; i++)
        if (buf[i])
            stem_buffer_destroy(buf[i]);
    if (plan)
        stem_plan_destroy(plan);
    if (ctx)
        stem_context_destroy(ctx);
    return rc;
}
