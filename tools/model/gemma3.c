#include "gemma3.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dequant.h"
#include "weights.h"

static int load_layer(const gguf_file *f, const gemma3 *m, int l, gemma3_layer *L, char *err,
                      size_t err_len)
{
    const int64_t d = m->d_model, dh = m->head_dim, dq = (int64_t)m->n_head * dh,
                  dkv = (int64_t)m->n_kv_head * dh, ff = m->d_ff;
    char n0[64], n1[64], n2[64];
    struct { float **dst; const char *fmt; int64_t len; } norms[] = {
        {&L->attn_norm, "blk.%d.attn_norm.weight", d},
        {&L->post_attn_norm, "blk.%d.post_attention_norm.weight", d},
        {&L->ffn_norm, "blk.%d.ffn_norm.weight", d},
        {&L->post_ffn_norm, "blk.%d.post_ffw_norm.weight", d},
        {&L->q_norm, "blk.%d.attn_q_norm.weight", dh},
        {&L->k_norm, "blk.%d.attn_k_norm.weight", dh},
    };
    for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++) {
        snprintf(n0, sizeof n0, norms[i].fmt, l);
        *norms[i].dst = weights_load_rows(f, n0, norms[i].len, 1, err, err_len);
        if (!*norms[i].dst) return -1;
    }
    /* Gemma keeps Q/K rows in the Hugging Face order: RoPE rotates the
     * half-split pairs (i, i + dh/2). */
    snprintf(n0, sizeof n0, "blk.%d.attn_q.weight", l);
    snprintf(n1, sizeof n1, "blk.%d.attn_k.weight", l);
    snprintf(n2, sizeof n2, "blk.%d.attn_v.weight", l);
    const char *qkv[3] = {n0, n1, n2};
    int64_t qkv_rows[3] = {dq, dkv, dkv};
    if (weights_pack_stack(f, &L->wqkv, d, qkv, qkv_rows, 3, err, err_len)) return -1;
    snprintf(n0, sizeof n0, "blk.%d.attn_output.weight", l);
    const char *o[1] = {n0};
    int64_t o_rows[1] = {d};
    if (weights_pack_stack(f, &L->wo, dq, o, o_rows, 1, err, err_len)) return -1;
    snprintf(n0, sizeof n0, "blk.%d.ffn_gate.weight", l);
    snprintf(n1, sizeof n1, "blk.%d.ffn_up.weight", l);
    const char *gu[2] = {n0, n1};
    int64_t gu_rows[2] = {ff, ff};
    if (weights_pack_stack(f, &L->w_gate_up, d, gu, gu_rows, 2, err, err_len)) return -1;
    snprintf(n0, sizeof n0, "blk.%d.ffn_down.weight", l);
    const char *dn[1] = {n0};
    int64_t dn_rows[1] = {d};
    if (weights_pack_stack(f, &L->w_down, ff, dn, dn_rows, 1, err, err_len)) return -1;
    L->global = (l + 1) % m->global_every == 0;
    L->rope_base = L->global ? m->rope_base_global : m->rope_base_local;
    return 0;
}

int gemma3_load(const gguf_file *f, gemma3 *m, char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    char arch[32] = "";
    gguf_get_string(f, "general.architecture", arch, sizeof arch);
    if (strcmp(arch, "gemma3") != 0) {
        snprintf(err, err_len, "architecture '%s' is not gemma3", arch);
        return -1;
    }
    m->n_layer = (int)gguf_get_int(f, "gemma3.block_count", 0);
    m->d_model = (int)gguf_get_int(f, "gemma3.embedding_length", 0);
    m->n_head = (int)gguf_get_int(f, "gemma3.attention.head_count", 0);
    m->n_kv_head = (int)gguf_get_int(f, "gemma3.attention.head_count_kv", m->n_head);
    m->head_dim = (int)gguf_get_int(f, "gemma3.attention.key_length", 0);
    m->d_ff = (int)gguf_get_int(f, "gemma3.feed_forward_length", 0);
    m->n_ctx = (int)gguf_get_int(f, "gemma3.context_length", 0);
    m->window = (int)gguf_get_int(f, "gemma3.attention.sliding_window", 0);
    /* Not in the GGUF metadata of the released converter; these are
     * Gemma 3's values (llama.cpp hard-codes them the same way): global
     * layers 5, 11, 17, ..., local RoPE base 1e4, softmax scale
     * query_pre_attn_scalar^-1/2 with query_pre_attn_scalar = head_dim for
     * every size but 27B, no final logit soft-capping. */
    m->global_every = (int)gguf_get_int(f, "gemma3.attention.sliding_window_pattern", 6);
    m->rope_base_global = (float)gguf_get_float(f, "gemma3.rope.freq_base", 1e6);
    m->rope_base_local = (float)gguf_get_float(f, "gemma3.rope.freq_base_swa", 1e4);
    m->norm_eps = (float)gguf_get_float(f, "gemma3.attention.layer_norm_rms_epsilon", 1e-6);
    m->logit_softcap = (float)gguf_get_float(f, "gemma3.final_logit_softcapping", 0.0);
    if (m->n_layer <= 0 || m->d_model <= 0 || m->n_head <= 0 || m->n_kv_head <= 0 ||
        m->head_dim <= 0 || m->head_dim % 2 || m->d_ff <= 0 || m->n_head % m->n_kv_head ||
        m->window <= 0 || m->global_every <= 0 ||
        gguf_get_int(f, "gemma3.attention.value_length", m->head_dim) != m->head_dim) {
        snprintf(err, err_len, "implausible gemma3 hyper-parameters");
        return -1;
    }
    m->attn_scale = (float)(1.0 / sqrt((double)gguf_get_float(
                                 f, "gemma3.attention.query_pre_attn_scalar", m->head_dim)));
    m->embd_scale = (float)sqrt((double)m->d_model);
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) {
        snprintf(err, err_len, "token_embd.weight missing");
        return -1;
    }
    m->n_vocab = (int)emb->ne[1];
    weights_note_type(m->weight_types, sizeof m->weight_types, f, "token_embd.weight");
    for (int l = 0; l < m->n_layer; l++) {
        static const char *kinds[] = {"attn_q", "attn_v", "attn_output", "ffn_down"};
        for (int i = 0; i < 4; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, kinds[i]);
            weights_note_type(m->weight_types, sizeof m->weight_types, f, nm);
        }
    }
    weights_note_type(m->weight_types, sizeof m->weight_types, f, "output_norm.weight");
    if (gguf_find_tensor(f, "output.weight")) {
        snprintf(err, err_len, "an untied output.weight is not supported for gemma3");
        return -1;
    }
    {
        const char *nm[1] = {"token_embd.weight"};
        int64_t rows[1] = {m->n_vocab};
        if (weights_pack_stack(f, &m->lm_head, m->d_model, nm, rows, 1, err, err_len))
            goto fail;
    }
    m->out_norm = weights_load_rows(f, "output_norm.weight", m->d_model, 1, err, err_len);
    if (!m->out_norm) goto fail;
    m->layers = calloc((size_t)m->n_layer, sizeof *m->layers);
    if (!m->layers) goto fail;
    for (int l = 0; l < m->n_layer; l++)
        if (load_layer(f, m, l, &m->layers[l], err, err_len)) goto fail;
    return 0;
fail:
    if (!err[0]) snprintf(err, err_len, "out of memory");
    gemma3_free(m);
    return -1;
}

void gemma3_free(gemma3 *m)
{
    if (m->layers)
        for (int l = 0; l < m->n_layer; l++) {
            gemma3_layer *L = &m->layers[l];
            free(L->attn_norm);
            free(L->post_attn_norm);
            free(L->ffn_norm);
            free(L->post_ffn_norm);
            free(L->q_norm);
            free(L->k_norm);
            packed_matrix_free(&L->wqkv);
            packed_matrix_free(&L->wo);
            packed_matrix_free(&L->w_gate_up);
            packed_matrix_free(&L->w_down);
        }
    free(m->layers);
    free(m->out_norm);
    packed_matrix_free(&m->lm_head);
    memset(m, 0, sizeof *m);
}

/* y = x / rms(x) * w (the GGUF weights already hold Gemma's 1 + w); y may be x */
static void rms_norm(const float *x, const float *w, float *y, int d, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < d; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / d + eps));
    for (int i = 0; i < d; i++) y[i] = x[i] * r * w[i];
}

static void rms_norm_rows(const float *x, const float *w, float *y, int64_t rows, int d,
                          float eps)
{
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rows; t++) rms_norm(x + t * d, w, y + t * d, d, eps);
}

static float gelu_tanh(float x)
{
    const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

/* Exact causal sliding-window attention: row t sees keys
 * [max(0, t - window + 1), t]. q [Hq][n][dh] (prescaled), k, v [Hkv][n][dh]. */
static int window_attention(const float *q, const float *k, const float *v, float *out,
                            int64_t n, int hq, int hkv, int dh, int window, float scale)
{
    const int group = hq / hkv;
    int failed = 0;
#pragma omp parallel
    {
        float *p = malloc((size_t)window * sizeof(float));
        double *acc = malloc((size_t)dh * sizeof(double));
        if (!p || !acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for collapse(2) schedule(static)
        for (int h = 0; h < hq; h++)
            for (int64_t t = 0; t < n; t++) {
                if (!p || !acc) continue;
                const float *qr = q + ((int64_t)h * n + t) * dh;
                const float *kh = k + (int64_t)(h / group) * n * dh;
                const float *vh = v + (int64_t)(h / group) * n * dh;
                const int64_t j0 = t - window + 1 > 0 ? t - window + 1 : 0;
                float mx = -INFINITY;
                for (int64_t j = j0; j <= t; j++) {
                    const float *kr = kh + j * dh;
                    float part[8] = {0}; /* 8 partial sums: vectorises without -ffast-math */
                    int i = 0;
                    for (; i + 8 <= dh; i += 8)
                        for (int u = 0; u < 8; u++) part[u] += qr[i + u] * kr[i + u];
                    float s = 0.0f;
                    for (int u = 0; u < 8; u++) s += part[u];
                    for (; i < dh; i++) s += qr[i] * kr[i];
                    s *= scale;
                    p[j - j0] = s;
                    mx = s > mx ? s : mx;
                }
                double sum = 0.0;
                for (int i = 0; i < dh; i++) acc[i] = 0.0;
                for (int64_t j = j0; j <= t; j++) {
                    float e = expf(p[j - j0] - mx);
                    sum += e;
                    const float *vr = vh + j * dh;
                    for (int i = 0; i < dh; i++) acc[i] += (double)e * vr[i];
                }
                float *o = out + ((int64_t)h * n + t) * dh;
                for (int i = 0; i < dh; i++) o[i] = (float)(acc[i] / sum);
            }
        free(p);
        free(acc);
    }
    return failed ? -1 : 0;
}

int gemma3_forward(const gemma3 *m, const int32_t *tokens, int64_t n,
                   gemma3_attention_fn attention, void *user, float *hidden)
{
    const int d = m->d_model, dh = m->head_dim, hq = m->n_head, hkv = m->n_kv_head;
    const int64_t dq = (int64_t)hq * dh, dkv = (int64_t)hkv * dh, dqkv = dq + 2 * dkv;
    const int64_t ff = m->d_ff, half = dh / 2;
    /* libstem's default softmax scale is 1/sqrt(dh): fold the model's own into q */
    const float q_prescale = m->attn_scale * sqrtf((float)dh);
    float *x = malloc((size_t)(n * d) * sizeof(float));
    float *xn = malloc((size_t)(n * d) * sizeof(float));
    float *big = malloc((size_t)(n * (2 * ff > dqkv ? 2 * ff : dqkv)) * sizeof(float));
    float *q = malloc((size_t)(n * dq) * sizeof(float));
    float *k = malloc((size_t)(n * dkv) * sizeof(float));
    float *v = malloc((size_t)(n * dkv) * sizeof(float));
    float *att = malloc((size_t)(n * (dq > d ? dq : d)) * sizeof(float));
    /* cos, sin per (t, i) for the local and the global base */
    float *cs = malloc((size_t)(n * half * 4) * sizeof(float));
    int rc = -1;
    if (!x || !xn || !big || !q || !k || !v || !att || !cs) goto done;
    {
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++) {
            int64_t id = tokens[t] >= 0 && tokens[t] < m->n_vocab ? tokens[t] : 0;
            /* the tied embedding row, read back from the packed panels */
            const float *panel = m->lm_head.panels + (id / 16) * (int64_t)d * 16 + id % 16;
            for (int i = 0; i < d; i++) x[t * d + i] = panel[(int64_t)i * 16] * m->embd_scale;
            for (int64_t i = 0; i < half; i++)
                for (int g = 0; g < 2; g++) {
                    double base = g ? m->rope_base_global : m->rope_base_local;
                    double ang = (double)t * pow(base, -2.0 * (double)i / dh);
                    cs[((t * 2 + g) * half + i) * 2] = (float)cos(ang);
                    cs[((t * 2 + g) * half + i) * 2 + 1] = (float)sin(ang);
                }
        }
    }
    for (int l = 0; l < m->n_layer; l++) {
        const gemma3_layer *L = &m->layers[l];
        rms_norm_rows(x, L->attn_norm, xn, n, d, m->norm_eps);
        gemm_packed(xn, d, n, &L->wqkv, big, dqkv);
        /* per-head RMSNorm of q and k, RoPE on half-split pairs, scattered
         * into head-major [H][n][dh] */
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++) {
            float *row = big + t * dqkv;
            const float *c = cs + (t * 2 + L->global) * half * 2;
            for (int h = 0; h < hq + hkv; h++) {
                float *src = row + (int64_t)h * dh;
                rms_norm(src, h < hq ? L->q_norm : L->k_norm, src, dh, m->norm_eps);
                float *dst = h < hq ? q + ((int64_t)h * n + t) * dh
                                    : k + ((int64_t)(h - hq) * n + t) * dh;
                const float sc = h < hq ? q_prescale : 1.0f;
                for (int64_t i = 0; i < half; i++) {
                    float a = src[i], b = src[i + half];
                    dst[i] = (a * c[2 * i] - b * c[2 * i + 1]) * sc;
                    dst[i + half] = (b * c[2 * i] + a * c[2 * i + 1]) * sc;
                }
            }
            for (int h = 0; h < hkv; h++)
                memcpy(v + ((int64_t)h * n + t) * dh, row + dq + dkv + (int64_t)h * dh,
                       (size_t)dh * sizeof(float));
        }
        if (L->global) {
            int arc = attention(user, l, q, k, v, att, n);
            if (arc) {
                rc = arc;
                goto done;
            }
        } else if (window_attention(q, k, v, att, n, hq, hkv, dh, m->window,
                                    1.0f / sqrtf((float)dh))) {
            goto done;
        }
        /* back to token-major [n][Hq dh] for the output projection */
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++)
            for (int h = 0; h < hq; h++)
                memcpy(big + t * dq + (int64_t)h * dh, att + ((int64_t)h * n + t) * dh,
                       (size_t)dh * sizeof(float));
        gemm_packed(big, dq, n, &L->wo, att, d);
        rms_norm_rows(att, L->post_attn_norm, att, n, d, m->norm_eps);
        for (int64_t i = 0; i < n * d; i++) x[i] += att[i];
        rms_norm_rows(x, L->ffn_norm, xn, n, d, m->norm_eps);
        gemm_packed(xn, d, n, &L->w_gate_up, big, 2 * ff);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n; t++) {
            float *row = big + t * 2 * ff;
            for (int64_t i = 0; i < ff; i++) row[i] = gelu_tanh(row[i]) * row[ff + i]; /* GeGLU */
        }
        gemm_packed(big, 2 * ff, n, &L->w_down, att, d);
        rms_norm_rows(att, L->post_ffn_norm, att, n, d, m->norm_eps);
        for (int64_t i = 0; i < n * d; i++) x[i] += att[i];
    }
    rms_norm_rows(x, m->out_norm, hidden, n, d, m->norm_eps);
    rc = 0;
done:
    free(x); free(xn); free(big); free(q); free(k); free(v); free(att); free(cs);
    return rc;
}

void gemma3_logits(const gemma3 *m, const float *hidden, int64_t rows, float *logits)
{
    gemm_packed(hidden, m->d_model, rows, &m->lm_head, logits, m->n_vocab);
    if (m->logit_softcap > 0.0f) {
        const float c = m->logit_softcap;
        for (int64_t i = 0; i < rows * m->n_vocab; i++) logits[i] = c * tanhf(logits[i] / c);
    }
}
