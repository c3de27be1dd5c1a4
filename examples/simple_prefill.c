/* The README's example, runnable: Stem prefill on host data, compared with
 * dense attention through the same library, on the best device (a GPU, else
 * the CPU). Exits non-zero on error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <stem.h>

#define CHECK(call)                                                                      \
    do {                                                                                 \
        stem_status st_ = (call);                                                        \
        if (st_ != STEM_OK) {                                                            \
            fprintf(stderr, "%s: %s: %s\n", #call, stem_status_name(st_), stem_last_error()); \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

enum { HQ = 4, HKV = 1, N = 4096, D = 64 };

/* Host data as a buffer: used in place where the device can address host
 * memory (CPU), else copied into device memory (GPUs answer UNSUPPORTED). */
static stem_status input_buffer(stem_context *ctx, void *host, size_t bytes, stem_buffer **out)
{
    stem_status st = stem_buffer_wrap_host(ctx, host, bytes, out);
    if (st != STEM_ERR_UNSUPPORTED)
        return st;
    st = stem_buffer_create(ctx, bytes, out);
    if (st == STEM_OK && (st = stem_buffer_write(*out, 0, host, bytes)) != STEM_OK)
        stem_buffer_destroy(*out);
    return st;
}

int main(void)
{
    const size_t nq = (size_t)HQ * N * D, nkv = (size_t)HKV * N * D;
    float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
    float *o_sparse = malloc(nq * sizeof *o_sparse), *o_dense = malloc(nq * sizeof *o_dense);
    if (!q || !k || !v || !o_sparse || !o_dense)
        return 1;
    /* Keys near the query direction early on (a sink) and a local band. */
    unsigned s = 1;
    for (size_t i = 0; i < nq; ++i) {
        s = s * 1103515245u + 12345u;
        q[i] = (float)((s >> 9) & 0xffff) / 65536.0f - 0.5f + 0.3f;
    }
    for (size_t i = 0; i < nkv; ++i) {
        s = s * 1103515245u + 12345u;
        const size_t tok = (i / D) % N;
        k[i] = (float)((s >> 9) & 0xffff) / 65536.0f - 0.5f + (tok < 64 ? 1.0f : 0.0f);
        v[i] = (float)((s >> 5) & 0xffff) / 65536.0f - 0.5f;
    }

    stem_context *ctx;
    CHECK(stem_context_create(NULL, &ctx)); /* best device: a GPU, else the CPU */
    stem_device_info dev;
    stem_device_info_init(&dev);
    CHECK(stem_context_get_device(ctx, &dev));

    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.num_q_heads = HQ;
    desc.num_kv_heads = HKV; /* GQA: K/V are read, never copied */
    desc.q_len = desc.kv_len = N;
    desc.head_dim = D;
    desc.dtype = STEM_DTYPE_F32;

    stem_config cfg;
    stem_config_init(&cfg);   /* the official Stem defaults ... */
    cfg.block_size = 64;      /* ... with 64-token blocks, so 4K tokens are sparse */

    stem_buffer *bq, *bk, *bv, *bo;
    CHECK(input_buffer(ctx, q, nq * sizeof *q, &bq));
    CHECK(input_buffer(ctx, k, nkv * sizeof *k, &bk));
    CHECK(input_buffer(ctx, v, nkv * sizeof *v, &bv));
    CHECK(stem_buffer_create(ctx, nq * sizeof *q, &bo));
    const stem_tensor tq = stem_tensor_bhnd(bq, 0, STEM_DTYPE_F32, 1, HQ, N, D);
    const stem_tensor tk = stem_tensor_bhnd(bk, 0, STEM_DTYPE_F32, 1, HKV, N, D);
    const stem_tensor tv = stem_tensor_bhnd(bv, 0, STEM_DTYPE_F32, 1, HKV, N, D);
    const stem_tensor to = stem_tensor_bhnd(bo, 0, STEM_DTYPE_F32, 1, HQ, N, D);

    for (int pass = 0; pass < 2; ++pass) {
        cfg.selector = pass == 0 ? STEM_SELECTOR_STEM : STEM_SELECTOR_DENSE;
        stem_plan *plan;
        CHECK(stem_plan_create(ctx, &desc, &cfg, &plan));
        CHECK(stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, NULL));
        CHECK(stem_synchronize(ctx));
        CHECK(stem_buffer_read(bo, 0, pass == 0 ? o_sparse : o_dense, nq * sizeof *q));
        if (pass == 0) {
            stem_plan_info info;
            stem_plan_info_init(&info);
            CHECK(stem_plan_get_info(plan, &info));
            printf("device %s (%s): %lld blocks per row, k_start %d, budget density %.3f\n",
                   dev.name, stem_backend_name(dev.backend), (long long)info.num_k_blocks,
                   info.k_start, info.budget_density);
        }
        stem_plan_destroy(plan);
    }
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < nq; ++i) {
        num += ((double)o_sparse[i] - o_dense[i]) * ((double)o_sparse[i] - o_dense[i]);
        den += (double)o_dense[i] * o_dense[i];
    }
    const double rel = sqrt(num / den);
    printf("relative L2 error of Stem against dense: %.3e\n", rel);

    stem_buffer_destroy(bq);
    stem_buffer_destroy(bk);
    stem_buffer_destroy(bv);
    stem_buffer_destroy(bo);
    stem_context_destroy(ctx);
    free(q); free(k); free(v); free(o_sparse); free(o_dense);
    return isfinite(rel) && rel < 0.5 ? 0 : 1;
}
