#include "smollm2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dequant.h"
#include "weights.h"

int smollm2_load(const gguf_file *f, smollm2 *m, char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    char arch[32] = "";
    gguf_get_string(f, "general.architecture", arch, sizeof arch);
    if (strcmp(arch, "llama") != 0) {
        snprintf(err, err_len, "architecture '%s' is not llama", arch);
        return -1;
    }
    m->n_layer = (int)gguf_get_int(f, "llama.block_count", 0);
    m->d_model = (int)gguf_get_int(f, "llama.embedding_length", 0);
    m->n_head = (int)gguf_get_int(f, "llama.attention.head_count", 0);
    m->n_kv_head = (int)gguf_get_int(f, "llama.attention.head_count_kv", m->n_head);
    m->d_ff = (int)gguf_get_int(f, "llama.feed_forward_length", 0);
    m->n_ctx = (int)gguf_get_int(f, "llama.context_length", 0);
    m->rope_base = (float)gguf_get_float(f, "llama.rope.freq_base", 10000.0);
    m->norm_eps = (float)gguf_get_float(f, "llama.attention.layer_norm_rms_epsilon", 1e-5);
    if (m->n_layer <= 0 || m->d_model <= 0 || m->n_head <= 0 || m->n_kv_head <= 0 ||
        m->d_ff <= 0 || m->d_model % m->n_head || m->n_head % m->n_kv_head) {
        snprintf(err, err_len, "implausible llama hyper-parameters");
        return -1;
    }
    m->head_dim = m->d_model / m->n_head;
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) {
        snprintf(err, err_len, "token_embd.weight missing");
        return -1;
    }
    m->n_vocab = (int)emb->ne[1];
    const int64_t d = m->d_model, dq = (int64_t)m->n_head * m->head_dim,
                  dkv = (int64_t)m->n_kv_head * m->head_dim, ff = m->d_ff;
    weights_note_type(m->weight_types, sizeof m->weight_types, f, "blk.0.attn_q.weight");
    weights_note_type(m->weight_types, sizeof m->weight_types, f, "token_embd.weight");
    weights_note_type(m->weight_types, sizeof m->weight_types, f, "blk.0.attn_norm.weight");
    m->tok_embd = weights_load_rows(f, "token_embd.weight", d, m->n_vocab, err, err_len);
    if (!m->tok_embd) goto fail;
    if (gguf_find_tensor(f, "output.weight")) {
        const char *nm[1] = {"output.weight"};
        int64_t rows[1] = {m->n_vocab};
        if (weights_pack_stack(f, &m->lm_head, d, nm, rows, 1, err, err_len)) goto fail;
    } else if (packed_matrix_init(&m->lm_head, m->tok_embd, m->n_vocab, d)) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    m->out_norm = weights_load_rows(f, "output_norm.weight", d, 1, err, err_len);
    if (!m->out_norm) goto fail;
    m->layers = calloc((size_t)m->n_layer, sizeof *m->layers);
    if (!m->layers) goto fail;
    for (int l = 0; l < m->n_layer; l++) {
        smollm2_layer *L = &m->layers[l];
        char n0[64], n1[64], n2[64];
        snprintf(n0, sizeof n0, "blk.%d.attn_norm.weight", l);
        snprintf(n1, sizeof n1, "blk.%d.ffn_norm.weight", l);
        L->attn_norm = weights_load_rows(f, n0, d, 1, err, err_len);
        L->ffn_norm = weights_load_rows(f, n1, d, 1, err, err_len);
        if (!L->attn_norm || !L->ffn_norm) goto fail;
        /* The GGUF converter stores Q/K rows in the interleaved (adjacent
         * pair) RoPE order, so the forward rotates pairs (2i, 2i+1). */
        snprintf(n0, sizeof n0, "blk.%d.attn_q.weight", l);
        snprintf(n1, sizeof n1, "blk.%d.attn_k.weight", l);
        snprintf(n2, sizeof n2, "blk.%d.attn_v.weight", l);
        const char *qkv[3] = {n0, n1, n2};
        int64_t qkv_rows[3] = {dq, dkv, dkv};
        if (weights_pack_stack(f, &L->wqkv, d, qkv, qkv_rows, 3, err, err_len)) goto fail;
        snprintf(n0, sizeof n0, "blk.%d.attn_output.weight", l);
        const char *o[1] = {n0};
        int64_t o_rows[1] = {d};
        if (weights_pack_stack(f, &L->wo, dq, o, o_rows, 1, err, err_len)) goto fail;
        snprintf(n0, sizeof n0, "blk.%d.ffn_gate.weight", l);
        snprintf(n1, sizeof n1, "blk.%d.ffn_up.weight", l);
        const char *gu[2] = {n0, n1};
        int64_t gu_rows[2] = {ff, ff};
        if (weights_pack_stack(f, &L->w_gate_up, d, gu, gu_rows, 2, err, err_len)) goto fail;
        snprintf(n0, sizeof n0, "blk.%d.ffn_down.weight", l);
        const char *dn[1] = {n0};
        int64_t dn_rows[1] = {d};
        if (weights_pack_stack(f, &L->w_down, ff, dn, dn_rows, 1, err, err_len)) goto fail;
    }
    return 0;
fail:
    if (!err[0]) snprintf(err, err_len, "out of memory");
    smollm2_free(m);
    return -1;
}

void smollm2_free(smollm2 *m)
{
    if (m->layers)
        for (int l = 0; l < m->n_layer; l++) {
            smollm2_layer *L = &m->layers[l];
            free(L->attn_norm);
            free(L->ffn_norm);
            packed_matrix_free(&L->wqkv);
            packed_matrix_free(&L->wo);
            packed_matrix_free(&L->w_gate_up);
            packed_matrix_free(&L->w_down);
        }
    free(m->layers);
    free(m->tok_embd);
    free(m->out_norm);
    packed_matrix_free(&m->lm_head);
    memset(m, 0, sizeof *m);
}

static void rms_norm(const float *x, const float *w, float *y, int64_t n, int d, float eps)
{
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * d;
        double ss = 0.0;
        for (int i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / d + eps));
        for (int i = 0; i < d; i++) y[t * d + i] = xr[i] * r * w[i];
    }
}

int smollm2_forward(const smollm2 *m, const int32_t *tokens, int64_t n,
                    smollm2_attention_fn attention, void *user, float *hidden)
{
    const int d = m->d_model, dh = m->head_dim, hq = m->n_head, hkv = m->n_kv_head;
    const int64_t dq = (int64_t)hq * dh, dkv = (int64_t)hkv * dh, dqkv = dq + 2 * dkv;
    const int64_t ff = m->d_ff, half = dh / 2;
    float *x = malloc((size_t)(n * d) * sizeof(float));
    float *xn = malloc((size_t)(n * d) * sizeof(float));
    float *big = malloc((size_t)(n * (2 * ff > dqkv ? 2 * ff : dqkv)) * sizeof(float));
    float *q = malloc((size_t)(n * dq) * sizeof(float));
    float *k = malloc((size_t)(n * dkv) * sizeof(float));
    float *v = malloc((size_t)(n * dkv) * sizeof(float));
    float *att = malloc((size_t)(n * dq) * sizeof(float));
    float *cs = malloc((size_t)(n * half * 2) * sizeof(float)); /* cos, sin per (t, pair) */
    int rc = -1;
    if (!x || !xn || !big || !q || !k || !v || !att || !cs) goto done;
    for (int64_t t = 0; t < n; t++) {
        int32_t id = tokens[t] >= 0 && tokens[t] < m->n_vocab ? tokens[t] : 0;
        memcpy(x + t * d, m->tok_embd + (int64_t)id * d, (size_t)d * sizeof(float));
        for (int64_t i = 0; i < half; i++) {
            double inv = pow((double)m->rope_base, -2.0 * (double)i / dh);
            double ang = (double)t * inv;
            cs[(t * half + i) * 2] = (float)cos(ang);
            cs[(t * half + i) * 2 + 1] = (float)sin(ang);
        }
    }
    for (int l = 0; l < m->n_layer; l++) {
        const smollm2_layer *L = &m->layers[l];
        rms_norm(x, L->attn_norm, xn, n, d, m->norm_eps);
        gemm_packed(xn, d, n, &L->wqkv, big, dqkv);
        /* RoPE on adjacent pairs, scattered into head-major [H][n][dh] */
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++) {
            const float *row = big + t * dqkv;
            const float *c = cs + t * half * 2;
            for (int h = 0; h < hq + hkv; h++) {
                const float *src = row + (int64_t)h * dh;
                float *dst = h < hq ? q + ((int64_t)h * n + t) * dh
                                    : k + ((int64_t)(h - hq) * n + t) * dh;
                for (int64_t i = 0; i < half; i++) {
                    float a = src[2 * i], b = src[2 * i + 1];
                    dst[2 * i] = a * c[2 * i] - b * c[2 * i + 1];
                    dst[2 * i + 1] = a * c[2 * i + 1] + b * c[2 * i];
                }
            }
            for (int h = 0; h < hkv; h++)
                memcpy(v + ((int64_t)h * n + t) * dh, row + dq + dkv + (int64_t)h * dh,
                       (size_t)dh * sizeof(float));
        }
        int arc = attention(user, l, q, k, v, att, n);
        if (arc) {
            rc = arc;
            goto done;
        }
        /* back to token-major [n][Hq dh] for the output projection */
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++)
            for (int h = 0; h < hq; h++)
                memcpy(xn + t * dq + (int64_t)h * dh, att + ((int64_t)h * n + t) * dh,
                       (size_t)dh * sizeof(float));
        gemm_packed(xn, dq, n, &L->wo, big, d);
        for (int64_t i = 0; i < n * d; i++) x[i] += big[i];
        rms_norm(x, L->ffn_norm, xn, n, d, m->norm_eps);
        gemm_packed(xn, d, n, &L->w_gate_up, big, 2 * ff);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++) {
            float *row = big + t * 2 * ff;
            for (int64_t i = 0; i < ff; i++) {
                float g = row[i];
                row[i] = g / (1.0f + expf(-g)) * row[ff + i]; /* SiLU(gate) * up */
            }
        }
        gemm_packed(big, 2 * ff, n, &L->w_down, att, d);
        for (int64_t i = 0; i < n * d; i++) x[i] += att[i];
    }
    rms_norm(x, m->out_norm, hidden, n, d, m->norm_eps);
    rc = 0;
done:
    free(x); free(xn); free(big); free(q); free(k); free(v); free(att); free(cs);
    return rc;
}

void smollm2_logits(const smollm2 *m, const float *hidden, int64_t rows, float *logits)
{
    gemm_packed(hidden, m->d_model, rows, &m->lm_head, logits, m->n_vocab);
}
