/* SmolLM2 (Llama architecture) forward pass over a whole prompt, weights
 * from a GGUF file dequantised to f32 once. Attention is delegated to a
 * callback so every layer can run through libstem. */
#ifndef STEM_MODEL_SMOLLM2_H
#define STEM_MODEL_SMOLLM2_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h"
#include "gguf.h"

typedef struct smollm2_layer {
    float *attn_norm, *ffn_norm; /* [d_model] */
    packed_matrix wqkv;          /* q, k, v rows stacked: [(Hq + 2 Hkv) dh, d_model] */
    packed_matrix wo;            /* [d_model, Hq dh] */
    packed_matrix w_gate_up;     /* gate then up rows: [2 d_ff, d_model] */
    packed_matrix w_down;        /* [d_model, d_ff] */
} smollm2_layer;

typedef struct smollm2 {
    int n_layer, d_model, n_head, n_kv_head, head_dim, d_ff, n_vocab, n_ctx;
    float rope_base, norm_eps;
    float *tok_embd;          /* [n_vocab][d_model] */
    packed_matrix lm_head;    /* tied to tok_embd */
    float *out_norm;
    smollm2_layer *layers;
    char weight_types[64];    /* e.g. "Q4_1+Q8_0+F32" for the provenance line */
} smollm2;

/* 0 on success; err gets the reason otherwise. */
int smollm2_load(const gguf_file *f, smollm2 *m, char *err, size_t err_len);
void smollm2_free(smollm2 *m);

/* Attention of one layer. q [Hq][n][dh], k and v [Hkv][n][dh] (post-RoPE,
 * contiguous f32); out [Hq][n][dh]. Returns 0, or nonzero to abort. */
typedef int (*smollm2_attention_fn)(void *user, int layer, const float *q, const float *k,
                                    const float *v, float *out, int64_t n);

/* Runs the n tokens through every layer; hidden receives the final-normed
 * states [n][d_model]. Returns 0, -1 out of memory, or the callback's code. */
int smollm2_forward(const smollm2 *m, const int32_t *tokens, int64_t n,
                    smollm2_attention_fn attention, void *user, float *hidden);
/* logits [rows][n_vocab] of final-normed states [rows][d_model] */
void smollm2_logits(const smollm2 *m, const float *hidden, int64_t rows, float *logits);

#endif
