/* stem eval: a small LLM (SmolLM2-135M or Gemma-3-270M, GGUF) whose
 * attention layers (Gemma 3: its global ones) run through libstem, to
 * judge block selection on real activations.
 * Perplexity and KL(dense || sparse) of next-token distributions per
 * selector configuration, per-layer attention-output error, greedy
 * continuation, and dumps of logits and post-RoPE Q/K/V. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmds.h"
#include "npy.h"
#include "tool.h"

#include "../model/dequant.h"
#include "../model/gguf.h"
#include "../model/lm.h"

#define EVAL_DEFAULT_MODEL ".model/SmolLM2-135M-Instruct.Q4_1.gguf"
#define EVAL_GEMMA3_MODEL ".model/gemma-3-270m-q4_k_m.gguf"
#define EVAL_MAX_CONFIGS 64
#define EVAL_MAX_TEXTS 8

static void usage(FILE *f)
{
    fprintf(f,
            "usage: stem eval [options]\n"
            "Runs SmolLM2-135M or Gemma-3-270M (GGUF; Gemma 3: the global layers) on libstem.\n"
            "  --model PATH          GGUF file (default $STEM_MODEL, else " EVAL_DEFAULT_MODEL
            ";\n"
            "                        fetch it with scripts/get-model.sh); 'gemma3' names\n"
            "                        " EVAL_GEMMA3_MODEL " (scripts/get-model-gemma3.sh)\n"
            "  --text F[,F...]       UTF-8 texts, one window each (data/austen/prideprejudice.txt)\n"
            "  --tokens N            window length in tokens (8192)\n"
            "  --offset T            first token of each window (0)\n"
            "  --configs SPEC        ';'-separated configurations to compare with dense, each\n"
            "                        selector[:key=value...], keys: b (block), k (k_start or\n"
            "                        uniform k), tau (xattention), mu, beta, dl (dense layers),\n"
            "                        stride; e.g. 'stem:b=64;uniform:b=64:k=40;xattention:tau=0.9'\n"
            "  --layer-error SPEC    configurations whose per-layer attention-output error\n"
            "                        against dense is measured on the dense activations\n"
            "  --score-from T        first position whose prediction is scored (0; the second\n"
            "                        half of the window is also reported on its own)\n"
            "  --cache DIR           dense hidden states per window (.model/cache; '' = none)\n"
            "  --results FILE        append one TSV row per configuration and window\n"
            "  --generate K          print the greedy continuation of K tokens (dense)\n"
            "  --dump-logits FILE    write the dense logits [n, vocab] f32 (.npy) and the\n"
            "                        token ids to FILE.ids.npy\n"
            "  --dump-qkv DIR        write post-RoPE q/k/v (f16 .npy) of --dump-layers for one\n"
            "                        KV group (--dump-kv-head, --dump-q-heads of it)\n"
            "  --dump-ids FILE       write every token id of the (last) text (.npy i32), then stop\n"
            "  --dump-layers L,..    (2,14)   --dump-kv-head H (0)   --dump-q-heads N (2)\n");
    tool_print_common_help(f);
}

/* ------------------------------------------------------------ configurations */

typedef struct eval_config {
    char label[96];
    stem_config cfg;
} eval_config;

static int parse_configs(const char *spec, const stem_config *base, eval_config *out, int cap,
                         int *count)
{
    char *copy = strdup(spec);
    if (!copy) return -1;
    int n = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        if (!*item) continue;
        if (n == cap) {
            free(copy);
            return tool_error("eval: more than %d configurations", cap), -1;
        }
        eval_config *c = &out[n];
        c->cfg = *base;
        snprintf(c->label, sizeof c->label, "%s", item);
        char *save2 = NULL;
        char *tok = strtok_r(item, ":", &save2);
        if (stem_selector_from_name(tok, &c->cfg.selector) != STEM_OK) {
            free(copy);
            return tool_error("eval: unknown selector '%s'", tok), -1;
        }
        while ((tok = strtok_r(NULL, ":", &save2))) {
            char *eq = strchr(tok, '=');
            if (!eq) {
                free(copy);
                return tool_error("eval: expected key=value, got '%s'", tok), -1;
            }
            *eq = 0;
            double v = strtod(eq + 1, NULL);
            if (!strcmp(tok, "b")) c->cfg.block_size = (int32_t)v;
            else if (!strcmp(tok, "k")) {
                c->cfg.k_start = (int32_t)v;
                c->cfg.uniform_k = (int32_t)v;
            } else if (!strcmp(tok, "tau")) c->cfg.xattn_threshold = (float)v;
            else if (!strcmp(tok, "mu")) c->cfg.mu = v;
            else if (!strcmp(tok, "beta")) c->cfg.beta = (float)v;
            else if (!strcmp(tok, "dl")) c->cfg.dense_layers = (int32_t)v;
            else if (!strcmp(tok, "stride")) c->cfg.stride = (int32_t)v;
            else {
                free(copy);
                return tool_error("eval: unknown key '%s'", tok), -1;
            }
        }
        if (c->cfg.stride > c->cfg.block_size) c->cfg.stride = c->cfg.block_size;
        n++;
    }
    free(copy);
    *count = n;
    return 0;
}

/* ------------------------------------------------------------ libstem calls */

typedef struct stem_call {
    stem_context *ctx;
    int heads_q, heads_kv, head_dim;
} stem_call;

/* A buffer over host memory: wrapped in place where the backend can,
 * else a device copy (read back by finish_host_buffer when out != 0). */
typedef struct host_buffer {
    stem_buffer *buf;
    void *host;
    size_t bytes;
    int copied;
} host_buffer;

static stem_status open_host_buffer(stem_context *ctx, void *host, size_t bytes, int upload,
                                    host_buffer *hb)
{
    hb->host = host;
    hb->bytes = bytes;
    hb->copied = 0;
    stem_status st = stem_buffer_wrap_host(ctx, host, bytes, &hb->buf);
    if (st != STEM_ERR_UNSUPPORTED) return st;
    hb->copied = 1;
    st = stem_buffer_create(ctx, bytes, &hb->buf);
    if (st == STEM_OK && upload) st = stem_buffer_write(hb->buf, 0, host, bytes);
    return st;
}

static stem_status close_host_buffer(host_buffer *hb, int download, stem_status st)
{
    if (st == STEM_OK && hb->copied && download)
        st = stem_buffer_read(hb->buf, 0, hb->host, hb->bytes);
    stem_buffer_destroy(hb->buf);
    hb->buf = NULL;
    return st;
}

/* One causal attention through libstem; counts [Hq][nq] kept blocks per
 * row (may be NULL); *nq_out gets the number of query blocks. */
static stem_status run_stem(const stem_call *sc, const stem_config *cfg, int layer,
                            const float *q, const float *k, const float *v, float *out,
                            int64_t n, int32_t *counts, int64_t *nq_out)
{
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = 1;
    desc.num_q_heads = sc->heads_q;
    desc.num_kv_heads = sc->heads_kv;
    desc.q_len = desc.kv_len = n;
    desc.head_dim = sc->head_dim;
    desc.dtype = STEM_DTYPE_F32;
    desc.layer_index = layer;
    stem_plan *plan = NULL;
    stem_status st = stem_plan_create(sc->ctx, &desc, cfg, &plan);
    if (st != STEM_OK) return st;
    stem_plan_info info;
    stem_plan_info_init(&info);
    stem_plan_get_info(plan, &info);
    *nq_out = info.num_q_blocks;
    const size_t qb = (size_t)(sc->heads_q * n * sc->head_dim) * sizeof(float);
    const size_t kb = (size_t)(sc->heads_kv * n * sc->head_dim) * sizeof(float);
    const size_t cb = (size_t)(sc->heads_q * info.num_q_blocks) * sizeof(int32_t);
    int32_t *cnt = counts ? counts : malloc(cb);
    host_buffer bq = {0}, bk = {0}, bv = {0}, bo = {0}, bc = {0};
    if (!cnt) st = STEM_ERR_OUT_OF_MEMORY;
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)q, qb, 1, &bq);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)k, kb, 1, &bk);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)v, kb, 1, &bv);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, out, qb, 0, &bo);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, cnt, cb, 0, &bc);
    if (st == STEM_OK) {
        stem_tensor tq = stem_tensor_bhnd(bq.buf, 0, STEM_DTYPE_F32, 1, sc->heads_q, n,
                                          sc->head_dim);
        stem_tensor tk = stem_tensor_bhnd(bk.buf, 0, STEM_DTYPE_F32, 1, sc->heads_kv, n,
                                          sc->head_dim);
        stem_tensor tv = stem_tensor_bhnd(bv.buf, 0, STEM_DTYPE_F32, 1, sc->heads_kv, n,
                                          sc->head_dim);
        stem_tensor to = stem_tensor_bhnd(bo.buf, 0, STEM_DTYPE_F32, 1, sc->heads_q, n,
                                          sc->head_dim);
        stem_tensor tc = stem_tensor_bhnd(bc.buf, 0, STEM_DTYPE_I32, 1, sc->heads_q,
                                          info.num_q_blocks, 1);
        st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, &tc);
        if (st == STEM_OK) st = stem_synchronize(sc->ctx);
    }
    if (bq.buf) st = close_host_buffer(&bq, 0, st);
    if (bk.buf) st = close_host_buffer(&bk, 0, st);
    if (bv.buf) st = close_host_buffer(&bv, 0, st);
    if (bo.buf) st = close_host_buffer(&bo, 1, st);
    if (bc.buf) st = close_host_buffer(&bc, 1, st);
    if (!counts) free(cnt);
    stem_plan_destroy(plan);
    return st;
}

/* --------------------------------------------------------- the forward hook */

typedef struct hook {
    stem_call sc;
    stem_config cfg;            /* the configuration every layer runs */
    int64_t n;
    double kept, causal;        /* kept / causal blocks summed over layers and heads */
    stem_status status;
    /* per-layer error of other configurations on these activations */
    const eval_config *err_cfgs;
    int n_err;
    double *err;                /* [n_err][n_layer] relative L2 error */
    double *err_density;        /* [n_err][n_layer] */
    int64_t err_from;           /* first row compared */
    float *scratch;             /* [Hq][n][dh] */
    /* dumps */
    const char *dump_dir;
    const int64_t *dump_layers;
    int n_dump_layers, dump_kv_head, dump_q_heads;
    int failed_dump;
} hook;

static double density_of(const int32_t *counts, int hq, int64_t nq)
{
    double kept = 0.0;
    for (int64_t i = 0; i < hq * nq; i++) kept += counts[i];
    return kept / ((double)hq * (double)nq * (double)(nq + 1) / 2.0);
}

static int write_f16(const char *path, const float *src, int64_t heads, int64_t n, int64_t d)
{
    size_t count = (size_t)(heads * n * d);
    uint16_t *h = malloc(count * sizeof *h);
    char err[256];
    if (!h) return -1;
    stem_convert(src, STEM_DTYPE_F32, h, STEM_DTYPE_F16, count);
    int64_t shape[4] = {1, heads, n, d};
    int rc = npy_write_file(path, NPY_F16, 4, shape, h, err, sizeof err);
    if (rc) tool_error("%s", err);
    free(h);
    return rc;
}

static void dump_layer(hook *h, int layer, const float *q, const float *k, const float *v)
{
    for (int i = 0; i < h->n_dump_layers; i++) {
        if (h->dump_layers[i] != layer) continue;
        const int64_t n = h->n, d = h->sc.head_dim;
        const int group = h->sc.heads_q / h->sc.heads_kv;
        char path[1024];
        snprintf(path, sizeof path, "%s/layer%02d_q.npy", h->dump_dir, layer);
        h->failed_dump |= write_f16(path, q + (int64_t)h->dump_kv_head * group * n * d,
                                    h->dump_q_heads, n, d);
        snprintf(path, sizeof path, "%s/layer%02d_k.npy", h->dump_dir, layer);
        h->failed_dump |= write_f16(path, k + (int64_t)h->dump_kv_head * n * d, 1, n, d);
        snprintf(path, sizeof path, "%s/layer%02d_v.npy", h->dump_dir, layer);
        h->failed_dump |= write_f16(path, v + (int64_t)h->dump_kv_head * n * d, 1, n, d);
    }
}

static int attention_hook(void *user, int layer, const float *q, const float *k,
                          const float *v, float *out, int64_t n)
{
    hook *h = user;
    const int hq = h->sc.heads_q, d = h->sc.head_dim;
    int64_t nq = 0;
    int32_t *counts = malloc((size_t)(hq * (n + 15) / 16) * sizeof(int32_t));
    if (!counts) return -1;
    stem_status st = run_stem(&h->sc, &h->cfg, layer, q, k, v, out, n, counts, &nq);
    if (st != STEM_OK) {
        free(counts);
        h->status = st;
        return 2;
    }
    for (int64_t i = 0; i < hq * nq; i++) h->kept += counts[i];
    h->causal += (double)hq * (double)nq * (double)(nq + 1) / 2.0;
    if (h->dump_dir) dump_layer(h, layer, q, k, v);
    for (int c = 0; c < h->n_err; c++) {
        int64_t nq2 = 0;
        st = run_stem(&h->sc, &h->err_cfgs[c].cfg, layer, q, k, v, h->scratch, n, counts, &nq2);
        if (st != STEM_OK) {
            free(counts);
            h->status = st;
            return 2;
        }
        double num = 0.0, den = 0.0;
        for (int hh = 0; hh < hq; hh++)
            for (int64_t t = h->err_from; t < n; t++)
                for (int i = 0; i < d; i++) {
                    int64_t at = ((int64_t)hh * n + t) * d + i;
                    double diff = (double)h->scratch[at] - out[at];
                    num += diff * diff;
                    den += (double)out[at] * out[at];
                }
        h->err[(size_t)c * 64 + (size_t)layer] = den > 0 ? sqrt(num / den) : 0.0;
        h->err_density[(size_t)c * 64 + (size_t)layer] = density_of(counts, hq, nq2);
    }
    free(counts);
    return 0;
}

/* ------------------------------------------------------------ distributions */

/* log-softmax of one row in place; returns nothing */
static void log_softmax(float *x, int64_t v)
{
    float mx = x[0];
    for (int64_t i = 1; i < v; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (int64_t i = 0; i < v; i++) s += exp((double)x[i] - mx);
    float lse = mx + (float)log(s);
    for (int64_t i = 0; i < v; i++) x[i] -= lse;
}

typedef struct score_sums {
    double nll_dense, nll, kl, kl_max;
    int64_t top1_same, rows;
    /* the same over the window's second half, where budgets have decayed */
    double nll_dense_late, nll_late, kl_late;
    int64_t rows_late;
} score_sums;

enum { LOGIT_CHUNK = 128 };

/* Scores rows [from, n-1) of a window: next-token NLL of the sparse run,
 * the dense run and KL(dense || sparse). */
static int score_window(const lm_model *m, const float *hid_dense, const float *hid_sparse,
                        const int32_t *tokens, int64_t n, int64_t from, float *dense_lp,
                        int dense_lp_ready, score_sums *s)
{
    const int64_t V = m->n_vocab;
    float *ld = malloc((size_t)(LOGIT_CHUNK * V) * sizeof(float));
    float *ls = malloc((size_t)(LOGIT_CHUNK * V) * sizeof(float));
    if (!ld || !ls) {
        free(ld);
        free(ls);
        return -1;
    }
    memset(s, 0, sizeof *s);
    for (int64_t r0 = from; r0 < n - 1; r0 += LOGIT_CHUNK) {
        int64_t rows = n - 1 - r0 < LOGIT_CHUNK ? n - 1 - r0 : LOGIT_CHUNK;
        /* dense log-probabilities: computed once per window when dense_lp
         * (rows [from, n-1)) is given, then reused by every configuration */
        float *dl = dense_lp ? dense_lp + (r0 - from) * V : ld;
        if (!dense_lp || !dense_lp_ready) lm_logits(m, hid_dense + r0 * m->d_model, rows, dl);
        const int dense_raw = !dense_lp || !dense_lp_ready;
        if (hid_sparse) lm_logits(m, hid_sparse + r0 * m->d_model, rows, ls);
        double nll_d = 0, nll_s = 0, kl = 0, klmax = s->kl_max, nd_l = 0, ns_l = 0, kl_l = 0;
        int64_t same = 0, late = 0;
#pragma omp parallel for reduction(+ : nll_d, nll_s, kl, same, nd_l, ns_l, kl_l, late) \
    reduction(max : klmax)
        for (int64_t r = 0; r < rows; r++) {
            float *a = dl + r * V, *b = hid_sparse ? ls + r * V : a;
            if (dense_raw) log_softmax(a, V);
            if (hid_sparse) log_softmax(b, V);
            int32_t next = tokens[r0 + r + 1];
            nll_d -= a[next];
            nll_s -= b[next];
            double k1 = 0.0;
            int64_t am = 0, bm = 0;
            for (int64_t i = 0; i < V; i++) {
                if (b != a) k1 += exp((double)a[i]) * ((double)a[i] - b[i]);
                if (a[i] > a[am]) am = i;
                if (b[i] > b[bm]) bm = i;
            }
            kl += k1;
            if (r0 + r >= n / 2) {
                nd_l -= a[next];
                ns_l -= b[next];
                kl_l += k1;
                late++;
            }
            klmax = k1 > klmax ? k1 : klmax;
            same += am == bm;
        }
        s->nll_dense += nll_d;
        s->nll += nll_s;
        s->kl += kl;
        s->kl_max = klmax;
        s->top1_same += same;
        s->rows += rows;
        s->nll_dense_late += nd_l;
        s->nll_late += ns_l;
        s->kl_late += kl_l;
        s->rows_late += late;
    }
    free(ld);
    free(ls);
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[sz] = 0;
        *len = (size_t)sz;
    }
    return buf;
}

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

typedef struct eval_args {
    tool_opts o;
    const char *model, *texts, *configs, *err_configs, *cache, *results;
    const char *dump_logits, *dump_qkv, *dump_ids;
    int64_t tokens, offset, score_from, generate;
    int64_t dump_layers[16];
    int n_dump_layers;
    int32_t dump_kv_head, dump_q_heads;
} eval_args;

static int parse_args(int argc, char **argv, eval_args *a)
{
    memset(a, 0, sizeof *a);
    tool_opts_init(&a->o);
    a->model = getenv("STEM_MODEL") ? getenv("STEM_MODEL") : EVAL_DEFAULT_MODEL;
    a->texts = "data/austen/prideprejudice.txt";
    a->cache = ".model/cache";
    a->tokens = 8192;
    a->score_from = -1;
    a->dump_layers[0] = 2;
    a->dump_layers[1] = 14;
    a->n_dump_layers = 2;
    a->dump_q_heads = 2;
    for (int i = 1; i < argc; i++) {
        int r = tool_parse_common(&a->o, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        int m = 0;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 1;
        }
#define STR_OPT(name, field)                                     \
    if ((v = tool_take(argc, argv, &i, name, &m)) || m) {         \
        if (!v) return 2;                                         \
        a->field = v;                                             \
        continue;                                                 \
    }
#define I64_OPT(name, field, lo, hi)                                      \
    if ((v = tool_take(argc, argv, &i, name, &m)) || m) {                  \
        if (!v || tool_parse_i64(name, v, lo, hi, &a->field)) return 2;    \
        continue;                                                          \
    }
        STR_OPT("--model", model)
        STR_OPT("--text", texts)
        STR_OPT("--configs", configs)
        STR_OPT("--layer-error", err_configs)
        STR_OPT("--cache", cache)
        STR_OPT("--results", results)
        STR_OPT("--dump-logits", dump_logits)
        STR_OPT("--dump-qkv", dump_qkv)
        STR_OPT("--dump-ids", dump_ids)
        I64_OPT("--tokens", tokens, 2, 1 << 20)
        I64_OPT("--offset", offset, 0, INT64_MAX / 2)
        I64_OPT("--score-from", score_from, 0, 1 << 20)
        I64_OPT("--generate", generate, 0, 4096)
        if ((v = tool_take(argc, argv, &i, "--dump-layers", &m)) || m) {
            if (!v || tool_parse_i64_list("--dump-layers", v, a->dump_layers, 16,
                                          &a->n_dump_layers))
                return 2;
            continue;
        }
        if ((v = tool_take(argc, argv, &i, "--dump-kv-head", &m)) || m) {
            if (!v || tool_parse_i32("--dump-kv-head", v, 0, 1024, &a->dump_kv_head)) return 2;
            continue;
        }
        if ((v = tool_take(argc, argv, &i, "--dump-q-heads", &m)) || m) {
            if (!v || tool_parse_i32("--dump-q-heads", v, 1, 1024, &a->dump_q_heads)) return 2;
            continue;
        }
        return tool_error("eval: unknown option '%s' (see stem eval --help)", argv[i]), 2;
    }
    return 0;
}

/* ------------------------------------------------------------------- driver */

static void git_commit(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    const char *env = getenv("STEM_COMMIT");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    FILE *p = popen("git rev-parse --short=12 HEAD 2>/dev/null", "r");
    if (!p) return;
    char line[64] = "";
    if (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0]) snprintf(out, cap, "%s", line);
    }
    pclose(p);
}

typedef struct eval_state {
    lm_model model;
    lm_tokenizer *tok;
    hook h;
    char commit[64], date[32], device[512];
    uint64_t model_hash;
} eval_state;

/* One forward with every layer on cfg; fills hidden; returns 0 or prints. */
static int forward_with(eval_state *es, const stem_config *cfg, const int32_t *ids, int64_t n,
                        float *hidden, double *density)
{
    hook *h = &es->h;
    h->cfg = *cfg;
    h->n = n;
    h->kept = h->causal = 0.0;
    h->status = STEM_OK;
    int rc = lm_forward(&es->model, ids, n, attention_hook, h, hidden);
    if (rc == -1) return tool_error("eval: out of memory in the forward pass");
    if (rc) return tool_fail(h->status, "eval: attention");
    if (density) *density = h->causal > 0 ? h->kept / h->causal : 1.0;
    return 0;
}

static int generate(eval_state *es, const int32_t *ids, int64_t n, int64_t count)
{
    const lm_model *m = &es->model;
    int32_t *seq = malloc((size_t)(n + count) * sizeof *seq);
    float *hid = malloc((size_t)(n + count) * (size_t)m->d_model * sizeof(float));
    float *logits = malloc((size_t)m->n_vocab * sizeof(float));
    if (!seq || !hid || !logits) {
        free(seq); free(hid); free(logits);
        return tool_error("eval: out of memory");
    }
    memcpy(seq, ids, (size_t)n * sizeof *seq);
    stem_config dense;
    stem_config_init(&dense);
    dense.selector = STEM_SELECTOR_DENSE;
    char piece[256];
    printf("prompt: ...");
    for (int64_t i = n > 48 ? n - 48 : 0; i < n; i++) {
        lm_decode_token(es->tok, seq[i], piece, sizeof piece);
        fputs(piece, stdout);
    }
    printf("\ngreedy: ");
    int rc = 0;
    for (int64_t g = 0; g < count && !rc; g++) {
        rc = forward_with(es, &dense, seq, n + g, hid, NULL);
        if (rc) break;
        lm_logits(m, hid + (n + g - 1) * m->d_model, 1, logits);
        int32_t best = 0;
        for (int32_t i = 1; i < m->n_vocab; i++)
            if (logits[i] > logits[best]) best = i;
        seq[n + g] = best;
        lm_decode_token(es->tok, best, piece, sizeof piece);
        fputs(piece, stdout);
        fflush(stdout);
    }
    printf("\n");
    free(seq); free(hid); free(logits);
    return rc;
}

static int dump_logits(eval_state *es, const char *path, const int32_t *ids, int64_t n,
                       const float *hid)
{
    const lm_model *m = &es->model;
    float *logits = malloc((size_t)n * (size_t)m->n_vocab * sizeof(float));
    char err[256], ids_path[1024];
    if (!logits) return tool_error("eval: out of memory for %lld logits rows", (long long)n);
    lm_logits(m, hid, n, logits);
    int64_t shape[2] = {n, m->n_vocab};
    int rc = npy_write_file(path, NPY_F32, 2, shape, logits, err, sizeof err);
    free(logits);
    if (rc) return tool_error("%s", err);
    snprintf(ids_path, sizeof ids_path, "%s.ids.npy", path);
    rc = npy_write_file(ids_path, NPY_I32, 1, shape, ids, err, sizeof err);
    if (rc) return tool_error("%s", err);
    printf("wrote %s [%lld, %d] and %s\n", path, (long long)n, m->n_vocab, ids_path);
    return 0;
}

static int load_cache(const char *path, float *hid, size_t bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(hid, 1, bytes, f);
    int extra = fgetc(f);
    fclose(f);
    return got == bytes && extra == EOF ? 0 : -1;
}

static void save_cache(const char *path, const float *hid, size_t bytes)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    int ok = fwrite(hid, 1, bytes, f) == bytes;
    ok &= fclose(f) == 0;
    if (ok) rename(tmp, path);
    else remove(tmp);
}

static void print_row(FILE *f, const char *label, int block, double density, double ppl,
                      double ppl_dense, const score_sums *s, double sec)
{
    fprintf(f, "%-34s %5d %8.4f %9.4f %9.4f %10.3e %10.3e %9.3e %7.4f %8.1f\n", label, block,
            density, ppl, ppl_dense, s->rows ? s->kl / (double)s->rows : 0.0,
            s->rows_late ? s->kl_late / (double)s->rows_late : 0.0, s->kl_max,
            s->rows ? (double)s->top1_same / (double)s->rows : 1.0, sec);
    fflush(f);
}

static int eval_window(eval_state *es, const eval_args *a, const char *text_path,
                       const eval_config *cfgs, int n_cfgs, const eval_config *err_cfgs,
                       int n_err)
{
    size_t len = 0;
    char *text = read_text(text_path, &len);
    if (!text) return tool_error("eval: cannot read %s", text_path);
    int64_t cap = (int64_t)len + 16;
    int32_t *all = malloc((size_t)cap * sizeof *all);
    if (!all) {
        free(text);
        return tool_error("eval: out of memory");
    }
    int64_t count = lm_encode(es->tok, text, len, all, cap);
    free(text);
    if (count < 0) {
        free(all);
        return tool_error("eval: out of memory tokenizing");
    }
    if (a->dump_ids) {
        char e[256];
        int64_t shape[1] = {count < cap ? count : cap};
        int wrc = npy_write_file(a->dump_ids, NPY_I32, 1, shape, all, e, sizeof e);
        free(all);
        if (wrc) return tool_error("%s", e);
        printf("wrote %s: %lld token ids of %s\n", a->dump_ids, (long long)shape[0], text_path);
        return 0;
    }
    if (a->offset + a->tokens > count) {
        free(all);
        return tool_error("eval: %s has %lld tokens, the window needs %lld", text_path,
                          (long long)count, (long long)(a->offset + a->tokens));
    }
    const lm_model *m = &es->model;
    const int64_t n = a->tokens;
    const int32_t *ids = all + a->offset;
    const int64_t from = a->score_from >= 0 ? (a->score_from < n - 1 ? a->score_from : n - 2)
                                            : 0;
    uint64_t ids_hash = fnv1a(ids, (size_t)n * sizeof *ids, 1469598103934665603ull);
    printf("# text %s: %lld tokens; window [%lld, %lld), ids fnv64 %016llx; scored positions "
           "[%lld, %lld)\n",
           text_path, (long long)count, (long long)a->offset, (long long)(a->offset + n),
           (unsigned long long)ids_hash, (long long)from, (long long)(n - 1));
    fflush(stdout);
    int rc = 0;
    if (a->generate > 0) {
        rc = generate(es, ids, n, a->generate);
        if (rc || (!a->configs && !a->dump_logits && !a->dump_qkv && !err_cfgs)) {
            free(all);
            return rc;
        }
    }
    const size_t hbytes = (size_t)n * (size_t)m->d_model * sizeof(float);
    float *hid_dense = malloc(hbytes), *hid = malloc(hbytes), *dense_lp = NULL;
    float *scratch = n_err ? malloc((size_t)n * (size_t)(m->n_head * m->head_dim) * sizeof(float))
                           : NULL;
    double *err = n_err ? calloc((size_t)n_err * 64 * 2, sizeof(double)) : NULL;
    if (!hid_dense || !hid || (n_err && (!scratch || !err))) {
        rc = tool_error("eval: out of memory");
        goto done;
    }
    char cache_path[1024] = "";
    if (a->cache && *a->cache) {
        mkdirs(a->cache);
        snprintf(cache_path, sizeof cache_path, "%s/dense_%016llx_%016llx_%lld.f32", a->cache,
                 (unsigned long long)es->model_hash, (unsigned long long)ids_hash, (long long)n);
    }
    stem_config dense;
    stem_config_init(&dense);
    dense.selector = STEM_SELECTOR_DENSE;
    int need_dense_run = n_err || a->dump_qkv || !cache_path[0] ||
                         load_cache(cache_path, hid_dense, hbytes) != 0;
    double t0 = tool_now_ms();
    if (need_dense_run) {
        hook *h = &es->h;
        h->err_cfgs = err_cfgs;
        h->n_err = n_err;
        h->err = err;
        h->err_density = err ? err + (size_t)n_err * 64 : NULL;
        h->err_from = from;
        h->scratch = scratch;
        h->dump_dir = a->dump_qkv;
        h->dump_layers = a->dump_layers;
        h->n_dump_layers = a->n_dump_layers;
        h->dump_kv_head = a->dump_kv_head;
        h->dump_q_heads = a->dump_q_heads;
        h->failed_dump = 0;
        if (a->dump_qkv) mkdirs(a->dump_qkv);
        rc = forward_with(es, &dense, ids, n, hid_dense, NULL);
        h->n_err = 0;
        h->dump_dir = NULL;
        if (rc) goto done;
        if (h->failed_dump) {
            rc = tool_error("eval: writing the Q/K/V dump failed");
            goto done;
        }
        if (cache_path[0]) save_cache(cache_path, hid_dense, hbytes);
    }
    double dense_sec = (tool_now_ms() - t0) / 1000.0;
    if (a->dump_logits && (rc = dump_logits(es, a->dump_logits, ids, n, hid_dense))) goto done;
    score_sums s;
    /* may fail for long windows: then dense logits are recomputed per configuration */
    dense_lp = n_cfgs ? malloc((size_t)(n - 1 - from) * (size_t)m->n_vocab * sizeof(float))
                             : NULL;
    if (score_window(m, hid_dense, NULL, ids, n, from, dense_lp, 0, &s)) {
        rc = tool_error("eval: out of memory scoring");
        goto done;
    }
    const double ppl_dense = exp(s.nll_dense / (double)s.rows);
    FILE *res = NULL;
    if (a->results) {
        struct stat st;
        int fresh = stat(a->results, &st) != 0;
        res = fopen(a->results, "a");
        if (!res) {
            rc = tool_error("eval: cannot open %s", a->results);
            goto done;
        }
        if (fresh)
            fprintf(res, "text\toffset\ttokens\tscore_from\tconfig\tselector\tblock\tk\ttau\tmu\t"
                         "beta\tdense_layers\tdensity\tppl\tppl_dense\tkl_mean\tkl_max\ttop1_agree"
                         "\tseconds\tcommit\tmodel_fnv64\tppl_2nd_half\tppl_dense_2nd_half"
                         "\tkl_2nd_half\n");
    }
    printf("%-34s %5s %8s %9s %9s %10s %10s %9s %7s %8s\n", "config", "block", "density", "ppl",
           "ppl_dense", "kl_mean", "kl_2nd_half", "kl_max", "top1", "seconds");
    print_row(stdout, need_dense_run ? "dense" : "dense (cached)", 0, 1.0, ppl_dense, ppl_dense,
              &s, dense_sec);
    for (int c = 0; c < n_cfgs && !rc; c++) {
        double density = 1.0;
        t0 = tool_now_ms();
        if ((rc = forward_with(es, &cfgs[c].cfg, ids, n, hid, &density))) break;
        if (score_window(m, hid_dense, hid, ids, n, from, dense_lp, 1, &s)) {
            rc = tool_error("eval: out of memory scoring");
            break;
        }
        double sec = (tool_now_ms() - t0) / 1000.0;
        double ppl = exp(s.nll / (double)s.rows);
        print_row(stdout, cfgs[c].label, cfgs[c].cfg.block_size, density, ppl, ppl_dense, &s,
                  sec);
        if (res) {
            const stem_config *k = &cfgs[c].cfg;
            fprintf(res,
                    "%s\t%lld\t%lld\t%lld\t%s\t%s\t%d\t%d\t%g\t%g\t%g\t%d\t%.6f\t%.6f\t%.6f\t%.6e"
                    "\t%.6e\t%.6f\t%.1f\t%s\t%016llx\t%.6f\t%.6f\t%.6e\n",
                    base_name(text_path), (long long)a->offset, (long long)n, (long long)from,
                    cfgs[c].label, stem_selector_name(k->selector), k->block_size, k->k_start,
                    (double)k->xattn_threshold, k->mu, (double)k->beta, k->dense_layers, density,
                    ppl, ppl_dense, s.kl / (double)s.rows, s.kl_max,
                    (double)s.top1_same / (double)s.rows, sec, es->commit,
                    (unsigned long long)es->model_hash, exp(s.nll_late / (double)s.rows_late),
                    exp(s.nll_dense_late / (double)s.rows_late), s.kl_late / (double)s.rows_late);
            fflush(res);
        }
    }
    if (res) fclose(res);
    if (n_err && !rc) {
        printf("# per-layer attention-output error vs dense (relative L2 over scored rows, "
               "dense activations), density in brackets\nlayer");
        for (int c = 0; c < n_err; c++) printf("\t%s", err_cfgs[c].label);
        printf("\n");
        FILE *lf = NULL;
        if (a->results) {
            char lp[1100];
            snprintf(lp, sizeof lp, "%s.layers.tsv", a->results);
            struct stat st;
            int fresh = stat(lp, &st) != 0;
            lf = fopen(lp, "a");
            if (lf && fresh)
                fprintf(lf, "text\toffset\ttokens\tconfig\tlayer\trel_l2\tdensity\tcommit\n");
        }
        for (int l = 0; l < m->n_layer; l++) {
            if (m->arch == LM_GEMMA3 && !m->gem.layers[l].global) continue; /* not on libstem */
            printf("%d", l);
            for (int c = 0; c < n_err; c++) {
                double e = err[(size_t)c * 64 + (size_t)l];
                double dd = err[(size_t)n_err * 64 + (size_t)c * 64 + (size_t)l];
                printf("\t%.3e [%.3f]", e, dd);
                if (lf)
                    fprintf(lf, "%s\t%lld\t%lld\t%s\t%d\t%.6e\t%.6f\t%s\n", base_name(text_path),
                            (long long)a->offset, (long long)n, err_cfgs[c].label, l, e, dd,
                            es->commit);
            }
            printf("\n");
        }
        if (lf) fclose(lf);
    }
done:
    free(dense_lp);
    free(all);
    free(hid_dense);
    free(hid);
    free(scratch);
    free(err);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int prc = parse_args(argc, argv, &a);
    if (prc) return prc == 1 ? 0 : prc;
    static eval_state es;
    static eval_config cfgs[EVAL_MAX_CONFIGS], err_cfgs[EVAL_MAX_CONFIGS];
    int n_cfgs = 0, n_err = 0;
    if (a.configs && parse_configs(a.configs, &a.o.cfg, cfgs, EVAL_MAX_CONFIGS, &n_cfgs))
        return 2;
    if (a.err_configs &&
        parse_configs(a.err_configs, &a.o.cfg, err_cfgs, EVAL_MAX_CONFIGS, &n_err))
        return 2;
    gguf_file gf;
    char err[512] = "";
    if (!strcmp(a.model, "gemma3")) a.model = EVAL_GEMMA3_MODEL;
    if (gguf_open(a.model, &gf, err, sizeof err))
        return tool_error("eval: %s (get the model with scripts/get-model.sh, or pass "
                          "--model / set STEM_MODEL)",
                          err);
    es.model_hash = fnv1a(gf.map, gf.size, 1469598103934665603ull);
    double t0 = tool_now_ms();
    if (lm_load(&gf, &es.model, err, sizeof err)) {
        gguf_close(&gf);
        return tool_error("eval: %s: %s", a.model, err);
    }
    if (lm_tokenizer_load(&gf, &es.tok, err, sizeof err)) {
        lm_free(&es.model);
        gguf_close(&gf);
        return tool_error("eval: %s: %s", a.model, err);
    }
    double load_sec = (tool_now_ms() - t0) / 1000.0;
    int rc = 0;
    stem_context *ctx = NULL;
    stem_device_info info;
    if (es.model.n_layer > 64) {
        rc = tool_error("eval: more than 64 layers");
        goto out;
    }
    if ((rc = tool_open_context(&a.o, &ctx, &info))) goto out;
    es.h.sc.ctx = ctx;
    es.h.sc.heads_q = es.model.n_head;
    es.h.sc.heads_kv = es.model.n_kv_head;
    es.h.sc.head_dim = es.model.head_dim;
    git_commit(es.commit, sizeof es.commit);
    tool_utc_date(es.date, sizeof es.date);
    tool_device_line(&info, es.device, sizeof es.device);
    printf("# stem eval  %s  commit %s  device %s\n", es.date, es.commit, es.device);
    printf("# model %s (%s): %zu bytes, fnv64 %016llx, %d layers (%d on libstem), d %d, "
           "heads %d/%d x %d, vocab %d, weights %s (loaded in %.1f s)\n",
           a.model, es.model.name, gf.size, (unsigned long long)es.model_hash, es.model.n_layer,
           es.model.n_attn_layers, es.model.d_model, es.model.n_head, es.model.n_kv_head, es.model.head_dim,
           es.model.n_vocab, es.model.weight_types, load_sec);
    char *texts = strdup(a.texts);
    if (!texts) {
        rc = tool_error("eval: out of memory");
        goto out;
    }
    char *save = NULL;
    for (char *t = strtok_r(texts, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save))
        rc = eval_window(&es, &a, t, cfgs, n_cfgs, n_err ? err_cfgs : NULL, n_err);
    free(texts);
out:
    if (ctx) stem_context_destroy(ctx);
    lm_tokenizer_free(es.tok);
    lm_free(&es.model);
    gguf_close(&gf);
    return rc ? 1 : 0;
}
