/* stem eval: a small LLM (SmolLM2-135M or Gemma-3-270M, GGUF) whose
 * attention layers (Gemma 3: its global ones) run through libstem, to
 * judge block selection on real activations.
 * Perplexity and KL(dense || sparse) of next-token distributions per
 * selector configuration, per-layer attention-output error, greedy
 * continuation, and dumps of logits and post-RoPE Q/K/V. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd_eval.h"
#include "cmds.h"
#include "npy.h"

#include "../model/gguf.h"

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

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ------------------------------------------------------------------- driver */

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
    if (a->dense_from >= n) {
        free(all);
        return tool_error("eval: --dense-from %lld must be below --tokens %lld",
                          (long long)a->dense_from, (long long)n);
    }
    /* deployment mode scores the first answer token (from the last prompt
     * row) and the dense-decoded rest */
    const int64_t from0 = a->score_from >= 0 ? a->score_from
                                             : (a->dense_from > 0 ? a->dense_from - 1 : 0);
    const int64_t from = from0 < n - 1 ? from0 : n - 2;
    es->h.dense_from = a->dense_from;
    const int64_t plan_rows = a->dense_from > 0 ? a->dense_from : n;
    for (int c = 0; c < n_cfgs; c++)
        if (eval_prepare_config(es, (eval_config *)&cfgs[c], plan_rows)) {
            free(all);
            return 1;
        }
    for (int c = 0; c < n_err; c++)
        if (eval_prepare_config(es, (eval_config *)&err_cfgs[c], plan_rows)) {
            free(all);
            return 1;
        }
    uint64_t ids_hash = eval_fnv1a(ids, (size_t)n * sizeof *ids, 1469598103934665603ull);
    printf("# text %s: %lld tokens; window [%lld, %lld), ids fnv64 %016llx; scored positions "
           "[%lld, %lld)%s\n",
           text_path, (long long)count, (long long)a->offset, (long long)(a->offset + n),
           (unsigned long long)ids_hash, (long long)from, (long long)(n - 1),
           a->dense_from > 0 ? "; deployment mode: prompt [0, P) sparse, rows >= P dense" : "");
    if (a->dense_from > 0) printf("# P = %lld\n", (long long)a->dense_from);
    fflush(stdout);
    int rc = 0;
    if (a->generate > 0) {
        rc = eval_generate(es, ids, n, a->generate);
        if (rc || (!a->configs && !a->dump_logits && !a->dump_qkv && !err_cfgs)) {
            free(all);
            return rc;
        }
    }
    const size_t hbytes = (size_t)n * (size_t)m->d_model * sizeof(float);
    float *hid_dense = malloc(hbytes), *hid = malloc(hbytes), *dense_lp = NULL;
    float *scratch = n_err ? malloc((size_t)n * (size_t)(m->n_head * m->head_dim) * sizeof(float))
                           : NULL;
    double *err = n_err ? calloc((size_t)n_err * 64 * 4, sizeof(double)) : NULL;
    if (!hid_dense || !hid || (n_err && (!scratch || !err))) {
        rc = tool_error("eval: out of memory");
        goto done;
    }
    char cache_path[1024] = "";
    if (a->cache && *a->cache) {
        eval_mkdirs(a->cache);
        snprintf(cache_path, sizeof cache_path, "%s/dense_%016llx_%016llx_%lld.f32", a->cache,
                 (unsigned long long)es->model_hash, (unsigned long long)ids_hash, (long long)n);
    }
    stem_config dense;
    stem_config_init(&dense);
    dense.selector = STEM_SELECTOR_DENSE;
    int need_dense_run = n_err || a->dump_qkv || !cache_path[0] ||
                         eval_load_cache(cache_path, hid_dense, hbytes) != 0;
    double t0 = tool_now_ms();
    if (need_dense_run) {
        hook *h = &es->h;
        h->err_cfgs = err_cfgs;
        h->n_err = n_err;
        h->err = err;
        h->err_density = err ? err + (size_t)n_err * 64 : NULL;
        h->err_halves = err ? err + (size_t)n_err * 64 * 2 : NULL;
        h->err_from = from;
        h->scratch = scratch;
        h->dump_dir = a->dump_qkv;
        h->dump_layers = a->dump_layers;
        h->n_dump_layers = a->n_dump_layers;
        h->dump_kv_head = a->dump_kv_head;
        h->dump_q_heads = a->dump_q_heads;
        h->failed_dump = 0;
        if (a->dump_qkv) eval_mkdirs(a->dump_qkv);
        rc = eval_forward(es, &dense, ids, n, hid_dense, NULL);
        h->n_err = 0;
        h->dump_dir = NULL;
        if (rc) goto done;
        if (h->failed_dump) {
            rc = tool_error("eval: writing the Q/K/V dump failed");
            goto done;
        }
        if (cache_path[0]) eval_save_cache(cache_path, hid_dense, hbytes);
    }
    double dense_sec = (tool_now_ms() - t0) / 1000.0;
    if (a->dump_logits && (rc = eval_dump_logits(es, a->dump_logits, ids, n, hid_dense))) goto done;
    score_sums s;
    /* may fail for long windows: then dense logits are recomputed per configuration */
    dense_lp = n_cfgs ? malloc((size_t)(n - 1 - from) * (size_t)m->n_vocab * sizeof(float))
                             : NULL;
    if (eval_score_window(m, hid_dense, NULL, ids, n, from, dense_lp, 0, &s)) {
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
                         "\tkl_2nd_half\tdense_from\tnll_sum\tnll_dense_sum\tkl_sum\trows\n");
    }
    printf("%-34s %5s %8s %9s %9s %10s %10s %9s %7s %8s\n", "config", "block", "density", "ppl",
           "ppl_dense", "kl_mean", "kl_2nd_half", "kl_max", "top1", "seconds");
    eval_print_row(stdout, need_dense_run ? "dense" : "dense (cached)", 0, 1.0, ppl_dense, ppl_dense,
              &s, dense_sec);
    for (int c = 0; c < n_cfgs && !rc; c++) {
        double density = 1.0;
        t0 = tool_now_ms();
        if ((rc = eval_forward_config(es, &cfgs[c], ids, n, hid, &density))) break;
        if (eval_score_window(m, hid_dense, hid, ids, n, from, dense_lp, 1, &s)) {
            rc = tool_error("eval: out of memory scoring");
            break;
        }
        double sec = (tool_now_ms() - t0) / 1000.0;
        double ppl = exp(s.nll / (double)s.rows);
        eval_print_row(stdout, cfgs[c].label, cfgs[c].cfg.block_size, density, ppl, ppl_dense, &s,
                  sec);
        if (res) {
            const stem_config *k = &cfgs[c].cfg;
            fprintf(res,
                    "%s\t%lld\t%lld\t%lld\t%s\t%s\t%d\t%d\t%g\t%g\t%g\t%d\t%.6f\t%.6f\t%.6f\t%.6e"
                    "\t%.6e\t%.6f\t%.1f\t%s\t%016llx\t%.6f\t%.6f\t%.6e\t%lld\t%.6f\t%.6f\t%.6e"
                    "\t%lld\n",
                    base_name(text_path), (long long)a->offset, (long long)n, (long long)from,
                    cfgs[c].label, stem_selector_name(k->selector), k->block_size, k->k_start,
                    (double)k->xattn_threshold, k->mu, (double)k->beta, k->dense_layers, density,
                    ppl, ppl_dense, s.kl / (double)s.rows, s.kl_max,
                    (double)s.top1_same / (double)s.rows, sec, es->commit,
                    (unsigned long long)es->model_hash, exp(s.nll_late / (double)s.rows_late),
                    exp(s.nll_dense_late / (double)s.rows_late), s.kl_late / (double)s.rows_late,
                    (long long)a->dense_from, s.nll, s.nll_dense, s.kl, (long long)s.rows);
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
                fprintf(lf, "text\toffset\ttokens\tconfig\tlayer\trel_l2\tdensity\tcommit"
                            "\trel_l2_1st_half\trel_l2_2nd_half\tscore_from\n");
        }
        for (int l = 0; l < m->n_layer; l++) {
            if (m->arch == LM_GEMMA3 && !m->gem.layers[l].global) continue; /* not on libstem */
            printf("%d", l);
            for (int c = 0; c < n_err; c++) {
                double e = err[(size_t)c * 64 + (size_t)l];
                double dd = err[(size_t)n_err * 64 + (size_t)c * 64 + (size_t)l];
                printf("\t%.3e [%.3f]", e, dd);
                if (lf)
                    fprintf(lf, "%s\t%lld\t%lld\t%s\t%d\t%.6e\t%.6f\t%s\t%.6e\t%.6e\t%lld\n",
                            base_name(text_path), (long long)a->offset, (long long)n,
                            err_cfgs[c].label, l, e, dd, es->commit,
                            err[(size_t)n_err * 128 + ((size_t)c * 64 + (size_t)l) * 2],
                            err[(size_t)n_err * 128 + ((size_t)c * 64 + (size_t)l) * 2 + 1],
                            (long long)from);
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
    int prc = eval_parse_args(argc, argv, &a);
    if (prc) return prc == 1 ? 0 : prc;
    static eval_state es;
    static eval_config cfgs[EVAL_MAX_CONFIGS], err_cfgs[EVAL_MAX_CONFIGS];
    int n_cfgs = 0, n_err = 0;
    if (a.configs && eval_parse_configs(a.configs, &a.o.cfg, cfgs, EVAL_MAX_CONFIGS, &n_cfgs))
        return 2;
    if (a.err_configs &&
        eval_parse_configs(a.err_configs, &a.o.cfg, err_cfgs, EVAL_MAX_CONFIGS, &n_err))
        return 2;
    gguf_file gf;
    char err[512] = "";
    if (!strcmp(a.model, "gemma3")) a.model = EVAL_GEMMA3_MODEL;
    if (gguf_open(a.model, &gf, err, sizeof err))
        return tool_error("eval: %s (get the model with scripts/get-model.sh, or pass "
                          "--model / set STEM_MODEL)",
                          err);
    es.model_hash = eval_fnv1a(gf.map, gf.size, 1469598103934665603ull);
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
    eval_git_commit(es.commit, sizeof es.commit);
    tool_utc_date(es.date, sizeof es.date);
    tool_device_line(&info, es.device, sizeof es.device);
    printf("# stem eval  %s  commit %s  device %s\n", es.date, es.commit, es.device);
    printf("# model %s (%s): %zu bytes, fnv64 %016llx, %d layers (%d on libstem), d %d, "
           "heads %d/%d x %d, vocab %d, weights %s (loaded in %.1f s)\n",
           a.model, es.model.name, gf.size, (unsigned long long)es.model_hash,
           es.model.n_layer, es.model.n_attn_layers, es.model.d_model, es.model.n_head,
           es.model.n_kv_head, es.model.head_dim,
           es.model.n_vocab, es.model.weight_types, load_sec);
    if (a.task) {
        rc = eval_task(&es, &a, cfgs, n_cfgs);
        goto out;
    }
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
