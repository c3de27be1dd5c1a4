#include "lm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lm_load(const gguf_file *f, lm_model *m, char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    char arch[32] = "";
    gguf_get_string(f, "general.architecture", arch, sizeof arch);
    if (!strcmp(arch, "llama")) {
        if (smollm2_load(f, &m->smol, err, err_len)) return -1;
        const smollm2 *s = &m->smol;
        m->arch = LM_SMOLLM2;
        m->name = "SmolLM2";
        m->n_layer = s->n_layer;
        m->d_model = s->d_model;
        m->n_head = s->n_head;
        m->n_kv_head = s->n_kv_head;
        m->head_dim = s->head_dim;
        m->n_vocab = s->n_vocab;
        m->n_attn_layers = s->n_layer;
        m->weight_types = s->weight_types;
        return 0;
    }
    if (!strcmp(arch, "gemma3")) {
        if (gemma3_load(f, &m->gem, err, err_len)) return -1;
        const gemma3 *g = &m->gem;
        m->arch = LM_GEMMA3;
        m->name = "Gemma 3";
        m->n_layer = g->n_layer;
        m->d_model = g->d_model;
        m->n_head = g->n_head;
        m->n_kv_head = g->n_kv_head;
        m->head_dim = g->head_dim;
        m->n_vocab = g->n_vocab;
        for (int l = 0; l < g->n_layer; l++) m->n_attn_layers += g->layers[l].global;
        m->weight_types = g->weight_types;
        return 0;
    }
    snprintf(err, err_len, "architecture '%s' is neither llama (SmolLM2) nor gemma3", arch);
    return -1;
}

void lm_free(lm_model *m)
{
    if (m->arch == LM_SMOLLM2) smollm2_free(&m->smol);
    if (m->arch == LM_GEMMA3) gemma3_free(&m->gem);
    memset(m, 0, sizeof *m);
}

int lm_forward(const lm_model *m, const int32_t *tokens, int64_t n, lm_attention_fn attention,
               void *user, float *hidden)
{
    if (m->arch == LM_GEMMA3) return gemma3_forward(&m->gem, tokens, n, attention, user, hidden);
    return smollm2_forward(&m->smol, tokens, n, attention, user, hidden);
}

void lm_logits(const lm_model *m, const float *hidden, int64_t rows, float *logits)
{
    if (m->arch == LM_GEMMA3) gemma3_logits(&m->gem, hidden, rows, logits);
    else smollm2_logits(&m->smol, hidden, rows, logits);
}

int lm_tokenizer_load(const gguf_file *f, lm_tokenizer **out, char *err, size_t err_len)
{
    *out = NULL;
    lm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    char model[32] = "";
    gguf_get_string(f, "tokenizer.ggml.model", model, sizeof model);
    int rc = !strcmp(model, "llama") ? spm_tokenizer_load(f, &t->spm, err, err_len)
                                     : bpe_tokenizer_load(f, &t->bpe, err, err_len);
    if (rc) {
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void lm_tokenizer_free(lm_tokenizer *t)
{
    if (!t) return;
    bpe_tokenizer_free(t->bpe);
    spm_tokenizer_free(t->spm);
    free(t);
}

int64_t lm_encode(const lm_tokenizer *t, const char *text, size_t len, int32_t *ids, int64_t cap)
{
    return t->spm ? spm_encode(t->spm, text, len, ids, cap)
                  : bpe_encode(t->bpe, text, len, ids, cap);
}

size_t lm_decode_token(const lm_tokenizer *t, int32_t id, char *out, size_t cap)
{
    return t->spm ? spm_decode_token(t->spm, id, out, cap)
                  : bpe_decode_token(t->bpe, id, out, cap);
}
