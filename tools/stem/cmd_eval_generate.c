/* stem eval: forward passes on one configuration, the greedy continuation
 * and the logits dump. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_eval.h"
#include "npy.h"

/* One forward with every layer on cfg; fills hidden; returns 0 or prints. */
int eval_forward(eval_state *es, const stem_config *cfg, const int32_t *ids, int64_t n,
                 float *hidden, double *density)
{
    hook *h = &es->h;
    h->cfg = *cfg;
    h->n = n;
    h->kept = h->causal = 0.0;
    h->status = STEM_OK;
    int rc = lm_forward(&es->model, ids, n, eval_attention_hook, h, hidden);
    if (rc == -1) return tool_error("eval: out of memory in the forward pass");
    if (rc) return tool_fail(h->status, "eval: attention");
    if (density) *density = h->causal > 0 ? h->kept / h->causal : 1.0;
    return 0;
}

int eval_forward_config(eval_state *es, const eval_config *c, const int32_t *ids, int64_t n,
                        float *hidden, double *density)
{
    es->h.oracle = c->oracle;
    es->h.chunk = c->chunk;
    int rc = eval_forward(es, &c->cfg, ids, n, hidden, density);
    es->h.oracle = 0;
    es->h.chunk = 0;
    return rc;
}

int eval_generate(eval_state *es, const int32_t *ids, int64_t n, int64_t count)
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
        rc = eval_forward(es, &dense, seq, n + g, hid, NULL);
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

int eval_dump_logits(eval_state *es, const char *path, const int32_t *ids, int64_t n,
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
