/* stem run --seq-lens LIST / --page-size P: the batch entries of q.npy,
 * k.npy, v.npy as one varlen call. Sequence b is the first L_b tokens of
 * entry b; its queries are the last M_b of them (--prefix P: M_b = L_b - P,
 * --q-len M: M_b = min(M, L_b); M_b = 0 skips it). Queries go packed
 * token-major [T, Hq, d]; keys stay in the input (KV_BHND, seqlens_kv) or,
 * with --page-size, are laid into a pool of P-token pages (NHD, sequence
 * after sequence) read through a block table (KV_PAGED). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "npy.h"
#include "run_varlen.h"

static int write_npy(const char *dir, const char *name, npy_dtype dt, int ndim,
                     const int64_t *shape, const void *data)
{
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (npy_write_file(path, dt, ndim, shape, data, err, sizeof err) != 0)
        return tool_error("%s", err);
    return 0;
}

int run_varlen(const run_varlen_args *a, stem_context *ctx, const stem_device_info *dev,
               const npy_array in[3], const int64_t dims[3][4], stem_dtype dtype,
               stem_dtype out_dtype)
{
    int rc = 1;
    const int64_t B = dims[0][0], Hq = dims[0][1], Hkv = dims[1][1], N = dims[0][2],
                  d = dims[0][3];
    const size_t es = stem_dtype_size(dtype), oes = stem_dtype_size(out_dtype);
    const int64_t ps = a->page_size, bs = a->cfg->block_size;
    int64_t *L = calloc((size_t)B, sizeof *L), *M = calloc((size_t)B, sizeof *M);
    int32_t *cu = calloc((size_t)B + 1, 4), *lens = calloc((size_t)B, 4),
            *prompts = calloc((size_t)B, 4), *row_ptr = calloc((size_t)B + 1, 4);
    int32_t *table = NULL, *index = NULL, *count = NULL;
    float *scores = NULL;
    void *q = NULL, *pk = NULL, *pv = NULL, *out = NULL;
    stem_plan *plan = NULL;
    stem_buffer *buf[11] = {0}; /* q k v out cu lens prompts table scores index count */
    if (!L || !M || !cu || !lens || !prompts || !row_ptr) {
        tool_error("out of memory");
        goto done;
    }
    if (a->nseq_lens > 0 && a->nseq_lens != B) {
        tool_error("--seq-lens: %d lengths for %lld batch entries", a->nseq_lens, (long long)B);
        goto done;
    }
    int64_t T = 0, maxM = 1, maxL = 1, R = 0, pages = 0, cols = 1;
    for (int64_t b = 0; b < B; b++) {
        L[b] = a->nseq_lens > 0 ? a->seq_lens[b] : N;
        if (L[b] < 1 || L[b] > N) {
            tool_error("--seq-lens: length %lld outside [1, N = %lld]", (long long)L[b],
                       (long long)N);
            goto done;
        }
        M[b] = a->q_len > 0 ? (a->q_len < L[b] ? a->q_len : L[b])
                            : (L[b] > a->prefix ? L[b] - a->prefix : 0);
        cu[b] = (int32_t)T;
        T += M[b];
        lens[b] = (int32_t)L[b];
        prompts[b] = (int32_t)a->prompt_len; /* 0 = L_b; below L_b: the library refuses */
        row_ptr[b] = (int32_t)R;
        R += M[b] > 0 ? (L[b] + bs - 1) / bs - (L[b] - M[b]) / bs : 0;
        maxM = M[b] > maxM ? M[b] : maxM;
        maxL = L[b] > maxL ? L[b] : maxL;
        if (ps > 0) {
            pages += (L[b] + ps - 1) / ps;
            cols = (L[b] + ps - 1) / ps > cols ? (L[b] + ps - 1) / ps : cols;
        }
    }
    cu[B] = (int32_t)T;
    row_ptr[B] = (int32_t)R;
    const int64_t W = (maxL + bs - 1) / bs, Tq = T > 0 ? T : 1, Rr = R > 0 ? R : 1;

    /* Packed queries; paged pools when asked for. */
    q = malloc((size_t)(Tq * Hq * d) * es);
    out = malloc((size_t)(Tq * Hq * d) * oes);
    scores = malloc((size_t)(Hq * Rr * W) * 4);
    index = malloc((size_t)(Hq * Rr * W) * 4);
    count = malloc((size_t)(Hq * Rr) * 4);
    if (!q || !out || !scores || !index || !count) {
        tool_error("out of memory");
        goto done;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < M[b]; i++)
            for (int64_t h = 0; h < Hq; h++)
                memcpy((char *)q + (size_t)(((cu[b] + i) * Hq + h) * d) * es,
                       (const char *)in[0].data +
                           (size_t)(((b * Hq + h) * N + L[b] - M[b] + i) * d) * es,
                       (size_t)d * es);
    if (ps > 0) {
        pk = calloc((size_t)(pages * ps * Hkv * d), es);
        pv = calloc((size_t)(pages * ps * Hkv * d), es);
        table = calloc((size_t)(B * cols), 4);
        if (!pk || !pv || !table) {
            tool_error("out of memory");
            goto done;
        }
        int64_t next = 0;
        for (int64_t b = 0; b < B; b++) {
            for (int64_t j = 0; j < (L[b] + ps - 1) / ps; j++)
                table[b * cols + j] = (int32_t)next++;
            for (int64_t t = 0; t < L[b]; t++)
                for (int64_t h = 0; h < Hkv; h++) {
                    const size_t dst = (size_t)(((table[b * cols + t / ps] * ps + t % ps) * Hkv +
                                                 h) * d) * es;
                    const size_t src = (size_t)(((b * Hkv + h) * N + t) * d) * es;
                    memcpy((char *)pk + dst, (const char *)in[1].data + src, (size_t)d * es);
                    memcpy((char *)pv + dst, (const char *)in[2].data + src, (size_t)d * es);
                }
        }
    }

    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = B;
    desc.num_q_heads = Hq;
    desc.num_kv_heads = Hkv;
    desc.q_len = maxM;
    desc.kv_len = maxL;
    desc.head_dim = d;
    desc.dtype = dtype;
    desc.softmax_scale = a->scale;
    desc.layer_index = a->layer;
    desc.q_layout = STEM_Q_PACKED;
    desc.kv_store = ps > 0 ? STEM_KV_PAGED : STEM_KV_BHND;
    desc.page_size = (int32_t)ps;
    TOOL_CHECK(stem_plan_create(ctx, &desc, a->cfg, &plan), "stem_plan_create");
    const size_t kvbytes = ps > 0 ? (size_t)(pages * ps * Hkv * d) * es : in[1].nbytes;
    const size_t bytes[11] = {(size_t)(Tq * Hq * d) * es, kvbytes, kvbytes,
                              (size_t)(Tq * Hq * d) * oes, (size_t)(B + 1) * 4, (size_t)B * 4,
                              (size_t)B * 4, (size_t)(B * cols) * 4, (size_t)(Hq * Rr * W) * 4,
                              (size_t)(Hq * Rr * W) * 4, (size_t)(Hq * Rr) * 4};
    const void *src[8] = {q,    ps > 0 ? pk : in[1].data, ps > 0 ? pv : in[2].data, NULL, cu,
                          lens, prompts, table};
    for (int i = 0; i < 11; i++) {
        if (i == 7 && ps == 0)
            continue;
        TOOL_CHECK(stem_buffer_create(ctx, bytes[i], &buf[i]), "stem_buffer_create");
        if (i < 8 && src[i])
            TOOL_CHECK(stem_buffer_write(buf[i], 0, src[i], bytes[i]), "stem_buffer_write");
    }
    const stem_tensor tq = tool_view(buf[0], dtype, 1, Hq, T, d, Tq * Hq * d, d, Hq * d, 1);
    const stem_tensor to = tool_view(buf[3], out_dtype, 1, Hq, T, d, Tq * Hq * d, d, Hq * d, 1);
    const stem_tensor tk = ps > 0 ? tool_view(buf[1], dtype, pages, Hkv, ps, d, ps * Hkv * d, d,
                                         Hkv * d, 1)
                                  : stem_tensor_bhnd(buf[1], 0, dtype, B, Hkv, N, d);
    stem_tensor tv = tk;
    tv.buffer = buf[2];
    const stem_tensor tcu = tool_view(buf[4], STEM_DTYPE_I32, 1, 1, 1, B + 1, 1, 1, 1, 1);
    const stem_tensor tlen = tool_view(buf[5], STEM_DTYPE_I32, 1, 1, 1, B, 1, 1, 1, 1);
    const stem_tensor tpr = tool_view(buf[6], STEM_DTYPE_I32, 1, 1, 1, B, 1, 1, 1, 1);
    stem_tensor ttab;
    const stem_tensor ts = tool_view(buf[8], STEM_DTYPE_F32, 1, Hq, R, W, Hq * Rr * W, Rr * W, W, 1);
    const stem_tensor ti = tool_view(buf[9], STEM_DTYPE_I32, 1, Hq, R, W, Hq * Rr * W, Rr * W, W, 1);
    const stem_tensor tc = tool_view(buf[10], STEM_DTYPE_I32, 1, Hq, R, 1, Hq * Rr, Rr, 1, 1);
    stem_seqs seqs;
    stem_seqs_init(&seqs);
    seqs.batch = (int32_t)B;
    seqs.cu_seqlens_q = &tcu;
    seqs.seqlens_kv = &tlen;
    seqs.prompt_lens = &tpr;
    if (ps > 0) {
        ttab = tool_view(buf[7], STEM_DTYPE_I32, 1, 1, B, cols, 1, 1, cols, 1);
        seqs.block_table = &ttab;
    }
    stem_call_io io;
    stem_call_io_init(&io);
    io.seqs = &seqs;
    io.scores = &ts;
    io.index = &ti;
    io.count = &tc;
    /* Columns past a sequence's own key blocks are left as they are: -1 here. */
    memset(index, 0xFF, bytes[9]);
    TOOL_CHECK(stem_buffer_write(buf[9], 0, index, bytes[9]), "stem_buffer_write");
    const double t0 = tool_now_ms();
    TOOL_CHECK(stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io), "stem_prefill_ex");
    TOOL_CHECK(stem_synchronize(ctx), "stem_synchronize");
    const double ms = tool_now_ms() - t0;
    TOOL_CHECK(stem_buffer_read(buf[3], 0, out, bytes[3]), "stem_buffer_read");
    TOOL_CHECK(stem_buffer_read(buf[8], 0, scores, bytes[8]), "stem_buffer_read");
    TOOL_CHECK(stem_buffer_read(buf[9], 0, index, bytes[9]), "stem_buffer_read");
    TOOL_CHECK(stem_buffer_read(buf[10], 0, count, bytes[10]), "stem_buffer_read");

    const int64_t od[3] = {T, Hq, d}, ld[3] = {Hq, R, W}, cd[2] = {Hq, R};
    const npy_dtype on = out_dtype == STEM_DTYPE_F32   ? NPY_F32
                         : out_dtype == STEM_DTYPE_F16 ? NPY_F16
                                                       : NPY_U16;
    if (write_npy(a->outdir, "out.npy", on, 3, od, out) ||
        write_npy(a->outdir, "scores.npy", NPY_F32, 3, ld, scores) ||
        write_npy(a->outdir, "blocks.npy", NPY_I32, 3, ld, index) ||
        write_npy(a->outdir, "counts.npy", NPY_I32, 2, cd, count))
        goto done;
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", a->outdir);
    FILE *f = fopen(path, "w");
    if (!f) {
        tool_error("%s: %s", path, strerror(errno));
        goto done;
    }
    fprintf(f, "{\n  \"libstem\": \"%s\",\n  \"backend\": \"%s\",\n  \"device\": ",
            stem_version_string(), stem_backend_name(dev->backend));
    tool_json_string(f, dev->name);
    fprintf(f, ",\n  \"varlen\": {\"kv_store\": \"%s\", \"page_size\": %lld, \"queries\": %lld, "
               "\"rows\": %lld, \"width\": %lld},\n  \"sequences\": [",
            ps > 0 ? "paged" : "bhnd", (long long)ps, (long long)T, (long long)R, (long long)W);
    for (int64_t b = 0; b < B; b++)
        fprintf(f, "%s\n    {\"q_len\": %lld, \"kv_len\": %lld, \"prompt_len\": %lld, "
                   "\"first_query\": %d, \"first_row\": %d, \"rows\": %d}",
                b ? "," : "", (long long)M[b], (long long)L[b],
                (long long)(a->prompt_len > 0 ? a->prompt_len : L[b]), cu[b], row_ptr[b],
                row_ptr[b + 1] - row_ptr[b]);
    fprintf(f, "\n  ],\n  \"time_ms\": ");
    tool_json_number(f, ms);
    fprintf(f, ",\n  \"files\": {\"out\": \"out.npy [T, Hq, d]\", \"scores\": \"scores.npy [Hq, "
               "R, W]\", \"blocks\": \"blocks.npy [Hq, R, W]\", \"counts\": \"counts.npy [Hq, "
               "R]\"}\n}\n");
    if (fclose(f) != 0) {
        tool_error("%s: write error", path);
        goto done;
    }
    char devline[600];
    tool_device_line(dev, devline, sizeof devline);
    printf("device    %s\n", devline);
    printf("varlen    %lld sequences, %lld queries, K/V %s\n", (long long)B, (long long)T,
           ps > 0 ? "paged" : "per-sequence rows of k.npy/v.npy");
    for (int64_t b = 0; b < B; b++)
        printf("  seq %lld  queries [%lld, %lld) of %lld keys, rows %d..%d of the packed lists\n",
               (long long)b, (long long)(L[b] - M[b]), (long long)L[b], (long long)L[b],
               row_ptr[b], row_ptr[b + 1] - 1);
    printf("time      %.3f ms (one call, includes first-use setup)\n", ms);
    printf("wrote     %s/{out,scores,blocks,counts}.npy, %s/summary.json\n", a->outdir,
           a->outdir);
    rc = 0;
done:
    free(L), free(M), free(cu), free(lens), free(prompts), free(row_ptr), free(table);
    free(index), free(count), free(scores), free(q), free(pk), free(pv), free(out);
    for (int i = 0; i < 11; i++)
        stem_buffer_destroy(buf[i]);
    stem_plan_destroy(plan);
    return rc;
}
