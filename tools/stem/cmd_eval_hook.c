/* stem eval: every attention layer of the model through libstem (the
 * configuration under test, plus per-layer error of other configurations
 * and Q/K/V dumps on the dense run). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd_eval.h"
#include "npy.h"

/* ------------------------------------------------------------ libstem calls */

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

int eval_attention_hook(void *user, int layer, const float *q, const float *k,
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
