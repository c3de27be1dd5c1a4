/* Gemma 3 (text) forward pass over a whole prompt, weights from a GGUF file
 * dequantised to f32 once. Global-attention layers (every 6th) delegate
 * attention to a callback so they can run through libstem; the
 * sliding-window layers run an exact windowed softmax attention here, since
 * Stem targets global attention. */
#ifndef STEM_MODEL_GEMMA3_H
#define STEM_MODEL_GEMMA3_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h"
#include "gguf.h"

typedef struct gemma3_layer {
    float *attn_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm; /* [d_model], (1 + w) */
    float *q_norm, *k_norm;      /* [head_dim], (1 + w) */
    packed_matrix wqkv;          /* q, k, v rows stacked: [(Hq + 2 Hkv) dh, d_model] */
    packed_matrix wo;            /* [d_model, Hq dh] */
    packed_matrix w_gate_up;     /* gate then up rows: [2 d_ff, d_model] */
    packed_matrix w_down;        /* [d_model, d_ff] */
    int global;                  /* full causal attention (else sliding window) */
    float rope_base;
} gemma3_layer;

typedef struct gemma3 {
    int n_layer, d_model, n_head, n_kv_head, head_dim, d_ff, n_vocab, n_ctx;
    int window;                  /* sliding window of the local layers, keys incl. self */
    int global_every;            /* layer l is global when (l + 1) % global_every == 0 */
    float rope_base_global, rope_base_local, norm_eps;
    float attn_scale;            /* softmax scale (query_pre_attn_scalar^-1/2) */
    float embd_scale;            /* sqrt(d_model) */
    float logit_softcap;         /* 0 = none */
    packed_matrix lm_head;       /* tied: the embedding rows are read back from it */
    float *out_norm;
    gemma3_layer *layers;
    char weight_types[64];
} gemma3;

/* 0 on success; err gets the reason otherwise. */
int gemma3_load(const gguf_file *f, gemma3 *m, char *err, size_t err_len);
void gemma3_free(gemma3 *m);

/* Attention of one global layer. q [Hq][n][dh], k and v [Hkv][n][dh]
 * (post-norm, post-RoPE, q prescaled so that the default 1/sqrt(dh) softmax
 * scale gives attn_scale); out [Hq][n][dh]. Returns 0, or nonzero to abort. */
typedef int (*gemma3_attention_fn)(void *user, int layer, const float *q, const float *k,
                                   const float *v, float *out, int64_t n);

/* Runs the n tokens through every layer; hidden receives the final-normed
 * states [n][d_model]. Returns 0, -1 out of memory, or the callback's code. */
int gemma3_forward(const gemma3 *m, const int32_t *tokens, int64_t n,
                   gemma3_attention_fn attention, void *user, float *hidden);
/* logits [rows][n_vocab] of final-normed states [rows][d_model] */
void gemma3_logits(const gemma3 *m, const float *hidden, int64_t rows, float *logits);

#endif
