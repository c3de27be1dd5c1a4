/* stem eval: every attention layer of the model through libstem (the
 * configuration under test, plus per-layer error of other configurations
 * and Q/K/V dumps on the dense run). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Views of the first `rows` tokens of a head-major [H][n][d] array. */
static stem_tensor prefix_view(stem_buffer *buf, stem_dtype dt, int64_t heads, int64_t rows,
                               int64_t n, int64_t d)
{
    stem_tensor t = stem_tensor_bhnd(buf, 0, dt, 1, heads, rows, d);
    t.strides[1] = n * d;
    t.strides[0] = heads * n * d;
    return t;
}

/* One causal attention through libstem over the first `rows` of n tokens
 * (the plan is keyed on rows: q_len = kv_len = rows); counts [Hq][nq] kept
 * blocks per row (may be NULL); *nq_out gets the number of query blocks.
 * With an oracle, the blocks are chosen by eval_oracle_select from the
 * true attention mass under cfg's budget and handed to stem_attention. */
void eval_call_desc(const stem_call *sc, int64_t rows, int layer, stem_attention_desc *desc)
{
    stem_attention_desc_init(desc);
    desc->batch = 1;
    desc->num_q_heads = sc->heads_q;
    desc->num_kv_heads = sc->heads_kv;
    desc->q_len = desc->kv_len = rows;
    desc->head_dim = sc->head_dim;
    desc->dtype = STEM_DTYPE_F32;
    desc->layer_index = layer;
}

/* EVAL_HOST_ADAPTIVE: Stem's block logits from stem_score (the plan's
 * scoring, bonus included), then a per-row mass threshold on the host. */
static stem_status adaptive_blocks(const stem_call *sc, stem_plan *plan, const host_buffer *bq,
                                   const host_buffer *bk, const host_buffer *bv, int64_t rows,
                                   int64_t n, int64_t nq, const stem_config *cfg, int32_t *idx,
                                   int32_t *cnt)
{
    const int64_t hq = sc->heads_q, hk = sc->heads_kv, d = sc->head_dim;
    const size_t sb = (size_t)(hq * nq * nq) * sizeof(float);
    float *scores = malloc(sb);
    if (!scores) return STEM_ERR_OUT_OF_MEMORY;
    host_buffer bs = {0};
    stem_status st = open_host_buffer(sc->ctx, scores, sb, 0, &bs);
    if (st == STEM_OK) {
        stem_tensor tq = prefix_view(bq->buf, STEM_DTYPE_F32, hq, rows, n, d);
        stem_tensor tk = prefix_view(bk->buf, STEM_DTYPE_F32, hk, rows, n, d);
        stem_tensor tv = prefix_view(bv->buf, STEM_DTYPE_F32, hk, rows, n, d);
        stem_tensor ts = stem_tensor_bhnd(bs.buf, 0, STEM_DTYPE_F32, 1, hq, nq, nq);
        st = stem_score(plan, &tq, &tk, &tv, &ts);
        if (st == STEM_OK) st = stem_synchronize(sc->ctx);
    }
    if (bs.buf) st = close_host_buffer(&bs, 1, st);
    if (st == STEM_OK)
        eval_adaptive_select(scores, (int)hq, nq, cfg->xattn_threshold, cfg->sink_blocks,
                             cfg->local_blocks, idx, cnt);
    free(scores);
    return st;
}

static stem_status run_stem_rows(const stem_call *sc, const stem_config *cfg, int oracle,
                                 int layer, const float *q, const float *k, const float *v,
                                 float *out, int64_t rows, int64_t n, int32_t *counts,
                                 int64_t *nq_out)
{
    stem_attention_desc desc;
    eval_call_desc(sc, rows, layer, &desc);
    stem_plan *plan = NULL;
    stem_status st = stem_plan_create(sc->ctx, &desc, cfg, &plan);
    if (st != STEM_OK) return st;
    stem_plan_info info;
    stem_plan_info_init(&info);
    stem_plan_get_info(plan, &info);
    const int64_t nq = info.num_q_blocks;
    *nq_out = nq;
    const size_t qb = (size_t)(sc->heads_q * n * sc->head_dim) * sizeof(float);
    const size_t kb = (size_t)(sc->heads_kv * n * sc->head_dim) * sizeof(float);
    const size_t cb = (size_t)(sc->heads_q * nq) * sizeof(int32_t);
    int32_t *cnt = counts ? counts : malloc(cb);
    int32_t *idx = NULL;
    host_buffer bq = {0}, bk = {0}, bv = {0}, bo = {0}, bc = {0}, bi = {0};
    if (!cnt) st = STEM_ERR_OUT_OF_MEMORY;
    if (st == STEM_OK && oracle && !info.dense) {
        idx = malloc(cb * (size_t)nq);
        int32_t *budget = malloc((size_t)nq * sizeof *budget);
        if (!idx || !budget) st = STEM_ERR_OUT_OF_MEMORY;
        if (st == STEM_OK) st = stem_plan_get_budget(plan, budget, (size_t)nq);
        if (st == STEM_OK && oracle != EVAL_HOST_ADAPTIVE &&
            eval_oracle_select(q, k, sc->heads_q, sc->heads_kv, sc->head_dim, rows, n,
                               cfg->block_size, budget, cfg->sink_blocks, cfg->local_blocks,
                               oracle, cfg->stride, cfg->xattn_threshold, idx, cnt))
            st = STEM_ERR_OUT_OF_MEMORY;
        free(budget);
    }
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)q, qb, 1, &bq);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)k, kb, 1, &bk);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)v, kb, 1, &bv);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, out, qb, 0, &bo);
    if (st == STEM_OK && idx && oracle == EVAL_HOST_ADAPTIVE)
        st = adaptive_blocks(sc, plan, &bq, &bk, &bv, rows, n, nq, cfg, idx, cnt);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, cnt, cb, idx != NULL, &bc);
    if (st == STEM_OK && idx) st = open_host_buffer(sc->ctx, idx, cb * (size_t)nq, 1, &bi);
    if (st == STEM_OK) {
        const int64_t hq = sc->heads_q, hk = sc->heads_kv, d = sc->head_dim;
        stem_tensor tq = prefix_view(bq.buf, STEM_DTYPE_F32, hq, rows, n, d);
        stem_tensor tk = prefix_view(bk.buf, STEM_DTYPE_F32, hk, rows, n, d);
        stem_tensor tv = prefix_view(bv.buf, STEM_DTYPE_F32, hk, rows, n, d);
        stem_tensor to = prefix_view(bo.buf, STEM_DTYPE_F32, hq, rows, n, d);
        stem_tensor tc = stem_tensor_bhnd(bc.buf, 0, STEM_DTYPE_I32, 1, hq, nq, 1);
        if (idx) {
            stem_tensor ti = stem_tensor_bhnd(bi.buf, 0, STEM_DTYPE_I32, 1, hq, nq, nq);
            st = stem_attention(plan, &tq, &tk, &tv, &ti, &tc, &to);
        } else {
            st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, &tc);
        }
        if (st == STEM_OK) st = stem_synchronize(sc->ctx);
    }
    if (bq.buf) st = close_host_buffer(&bq, 0, st);
    if (bk.buf) st = close_host_buffer(&bk, 0, st);
    if (bv.buf) st = close_host_buffer(&bv, 0, st);
    if (bo.buf) st = close_host_buffer(&bo, 1, st);
    if (bc.buf) st = close_host_buffer(&bc, idx == NULL, st);
    if (bi.buf) st = close_host_buffer(&bi, 0, st);
    if (!counts) free(cnt);
    free(idx);
    stem_plan_destroy(plan);
    return st;
}

/* The first `rows` of n tokens as chunked prefill (what an engine feeding the
 * prompt in pieces computes): calls of `chunk` queries (a multiple of the
 * block size) at the bottom right of the keys seen so far, the budget keyed
 * on the whole prompt (prompt_len = rows), VISIBLE value statistics. The
 * calls' rows are disjoint absolute blocks: counts [Hq][nq] as for one call. */
static stem_status run_stem_chunks(const stem_call *sc, const stem_config *cfg, int layer,
                                   const float *q, const float *k, const float *v, float *out,
                                   int64_t rows, int64_t n, int64_t chunk, int32_t *counts,
                                   int64_t *nq_out)
{
    const int64_t hq = sc->heads_q, hk = sc->heads_kv, d = sc->head_dim, B = cfg->block_size;
    const int64_t nq = (rows + B - 1) / B;
    *nq_out = nq;
    const size_t qb = (size_t)(hq * n * d) * sizeof(float), kb = (size_t)(hk * n * d) * sizeof(float);
    int32_t *cnt = malloc((size_t)(hq * nq) * sizeof *cnt);
    host_buffer bq = {0}, bk = {0}, bv = {0}, bo = {0}, bc = {0};
    stem_status st = cnt ? STEM_OK : STEM_ERR_OUT_OF_MEMORY;
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)q, qb, 1, &bq);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)k, kb, 1, &bk);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, (void *)v, kb, 1, &bv);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, out, qb, 0, &bo);
    if (st == STEM_OK) st = open_host_buffer(sc->ctx, cnt, (size_t)(hq * nq) * sizeof *cnt, 0, &bc);
    for (int64_t P = 0; st == STEM_OK && P < rows; P += chunk) {
        const int64_t L = P + chunk < rows ? P + chunk : rows, M = L - P, r0 = P / B;
        stem_attention_desc desc;
        eval_call_desc(sc, L, layer, &desc);
        desc.q_len = M;
        desc.prompt_len = rows;
        stem_plan *plan = NULL;
        st = stem_plan_create(sc->ctx, &desc, cfg, &plan);
        if (st != STEM_OK) break;
        stem_tensor tq = prefix_view(bq.buf, STEM_DTYPE_F32, hq, M, n, d);
        stem_tensor to = prefix_view(bo.buf, STEM_DTYPE_F32, hq, M, n, d);
        tq.offset = to.offset = (size_t)(P * d) * sizeof(float);
        stem_tensor tk = prefix_view(bk.buf, STEM_DTYPE_F32, hk, L, n, d);
        stem_tensor tv = prefix_view(bv.buf, STEM_DTYPE_F32, hk, L, n, d);
        /* this call's rows r0 .. nq - 1 of every head's counts */
        stem_tensor tc = stem_tensor_bhnd(bc.buf, (size_t)r0 * sizeof(int32_t), STEM_DTYPE_I32, 1,
                                          hq, (L + B - 1) / B - r0, 1);
        tc.strides[1] = nq;
        stem_call_io io;
        stem_call_io_init(&io);
        io.count = &tc;
        st = stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io);
        if (st == STEM_OK) st = stem_synchronize(sc->ctx);
        stem_plan_destroy(plan);
    }
    if (bq.buf) st = close_host_buffer(&bq, 0, st);
    if (bk.buf) st = close_host_buffer(&bk, 0, st);
    if (bv.buf) st = close_host_buffer(&bv, 0, st);
    if (bo.buf) st = close_host_buffer(&bo, 1, st);
    if (bc.buf) st = close_host_buffer(&bc, 1, st);
    if (st == STEM_OK && counts) memcpy(counts, cnt, (size_t)(hq * nq) * sizeof *cnt);
    free(cnt);
    return st;
}

/* Dense causal attention of rows [from, n) on the host: the decode rows of
 * deployment mode (each row reads every earlier key). */
static void dense_rows(const float *q, const float *k, const float *v, float *out, int hq,
                       int hk, int d, int64_t from, int64_t n)
{
    const int g = hq / hk;
    const float scale = 1.0f / sqrtf((float)d);
    const int64_t tail = n - from;
#pragma omp parallel
    {
        float *p = malloc((size_t)n * sizeof *p);
        double *acc = malloc((size_t)d * sizeof *acc);
#pragma omp for schedule(dynamic, 4)
        for (int64_t w = 0; w < (int64_t)hq * tail; w++) {
            if (!p || !acc) continue;
            const int64_t h = w / tail, t = from + w % tail;
            const float *qr = q + (h * n + t) * d;
            const float *kh = k + (h / g) * n * d, *vh = v + (h / g) * n * d;
            float mx = -INFINITY;
            for (int64_t j = 0; j <= t; j++) {
                const float *kr = kh + j * d;
                float s8[8] = {0};
                for (int i = 0; i + 8 <= d; i += 8)
                    for (int u = 0; u < 8; u++) s8[u] += qr[i + u] * kr[i + u];
                float s = (s8[0] + s8[1] + s8[2] + s8[3]) + (s8[4] + s8[5] + s8[6] + s8[7]);
                p[j] = s * scale;
                mx = p[j] > mx ? p[j] : mx;
            }
            double z = 0.0;
            for (int i = 0; i < d; i++) acc[i] = 0.0;
            for (int64_t j = 0; j <= t; j++) {
                double e = exp((double)p[j] - mx);
                z += e;
                const float *vr = vh + j * d;
                for (int i = 0; i < d; i++) acc[i] += e * vr[i];
            }
            for (int i = 0; i < d; i++) out[(h * n + t) * d + i] = (float)(acc[i] / z);
        }
        free(p);
        free(acc);
    }
}

/* One layer's attention as the evaluation runs it: all n rows through
 * libstem, or, in deployment mode (dense_from = P, 0 < P < n), the prompt
 * [0, P) through libstem with a plan keyed on P and rows [P, n) dense (sparse
 * prefill, then teacher-forced dense decode). Kept blocks are counted over
 * the libstem part. */
static stem_status run_layer(const hook *h, const stem_config *cfg, int oracle, int64_t chunk,
                             int layer, const float *q, const float *k, const float *v,
                             float *out, int64_t n, int32_t *counts, int64_t *nq_out)
{
    const stem_call *sc = &h->sc;
    const int64_t P = h->dense_from;
    const int whole = P <= 0 || P >= n || (cfg->selector == STEM_SELECTOR_DENSE && !oracle);
    const int64_t rows = whole ? n : P;
    stem_status st =
        chunk > 0 && chunk < rows
            ? run_stem_chunks(sc, cfg, layer, q, k, v, out, rows, n, chunk, counts, nq_out)
            : run_stem_rows(sc, cfg, oracle, layer, q, k, v, out, rows, n, counts, nq_out);
    if (whole)
        return st;
    if (st == STEM_OK)
        dense_rows(q, k, v, out, sc->heads_q, sc->heads_kv, sc->head_dim, P, n);
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
    stem_status st = run_layer(h, &h->cfg, h->oracle, h->chunk, layer, q, k, v, out, n, counts,
                               &nq);
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
        st = run_layer(h, &h->err_cfgs[c].cfg, h->err_cfgs[c].oracle, h->err_cfgs[c].chunk,
                       layer, q, k, v,
                       h->scratch, n, counts, &nq2);
        if (st != STEM_OK) {
            free(counts);
            h->status = st;
            return 2;
        }
        /* relative L2 over rows [err_from, n), and over each half of the window */
        double num = 0.0, den = 0.0, nh[2] = {0, 0}, dh[2] = {0, 0};
        for (int hh = 0; hh < hq; hh++)
            for (int64_t t = 0; t < n; t++) {
                double nt = 0.0, dt = 0.0;
                for (int i = 0; i < d; i++) {
                    int64_t at = ((int64_t)hh * n + t) * d + i;
                    double diff = (double)h->scratch[at] - out[at];
                    nt += diff * diff;
                    dt += (double)out[at] * out[at];
                }
                if (t >= h->err_from) num += nt, den += dt;
                nh[t >= n / 2] += nt;
                dh[t >= n / 2] += dt;
            }
        h->err[(size_t)c * 64 + (size_t)layer] = den > 0 ? sqrt(num / den) : 0.0;
        for (int half = 0; half < 2; half++)
            h->err_halves[((size_t)c * 64 + (size_t)layer) * 2 + (size_t)half] =
                dh[half] > 0 ? sqrt(nh[half] / dh[half]) : 0.0;
        h->err_density[(size_t)c * 64 + (size_t)layer] = density_of(counts, hq, nq2);
    }
    free(counts);
    return 0;
}
