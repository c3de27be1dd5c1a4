/* One interface over the eval models, chosen by the GGUF's
 * general.architecture: SmolLM2 (llama) and Gemma 3 (gemma3), with their
 * tokenizers (byte-level BPE, SentencePiece). */
#ifndef STEM_MODEL_LM_H
#define STEM_MODEL_LM_H

#include <stddef.h>
#include <stdint.h>

#include "gemma3.h"
#include "gguf.h"
#include "smollm2.h"
#include "spm_tokenizer.h"
#include "tokenizer.h"

typedef enum lm_arch { LM_SMOLLM2 = 1, LM_GEMMA3 = 2 } lm_arch;

typedef struct lm_model {
    lm_arch arch;
    const char *name;          /* "SmolLM2", "Gemma 3" */
    int n_layer, d_model, n_head, n_kv_head, head_dim, n_vocab;
    int n_attn_layers;         /* layers whose attention goes to the callback */
    const char *weight_types;
    smollm2 smol;
    gemma3 gem;
} lm_model;

/* Attention of one layer through the caller (libstem): q [Hq][n][dh],
 * k and v [Hkv][n][dh], out [Hq][n][dh]; the softmax scale is 1/sqrt(dh).
 * Gemma 3 calls it for its global layers only (layer = the model's own
 * index), and attends within its sliding window itself elsewhere. */
typedef int (*lm_attention_fn)(void *user, int layer, const float *q, const float *k,
                               const float *v, float *out, int64_t n);

int lm_load(const gguf_file *f, lm_model *m, char *err, size_t err_len);
void lm_free(lm_model *m);
int lm_forward(const lm_model *m, const int32_t *tokens, int64_t n, lm_attention_fn attention,
               void *user, float *hidden);
void lm_logits(const lm_model *m, const float *hidden, int64_t rows, float *logits);

typedef struct lm_tokenizer {
    bpe_tokenizer *bpe;
    spm_tokenizer *spm;
} lm_tokenizer;

int lm_tokenizer_load(const gguf_file *f, lm_tokenizer **out, char *err, size_t err_len);
void lm_tokenizer_free(lm_tokenizer *t);
int64_t lm_encode(const lm_tokenizer *t, const char *text, size_t len, int32_t *ids,
                  int64_t cap);
size_t lm_decode_token(const lm_tokenizer *t, int32_t id, char *out, size_t cap);

#endif
