/* stem bench --seq-lens LIST / --page-size P: one varlen call (packed
 * queries, KV_PACKED keys, or KV_PAGED pools of P-token pages in shuffled
 * order) against the same sequences as separate single-sequence calls:
 * time of both and whether the outputs agree (bit for bit where the backend
 * keeps per-sequence arithmetic independent of the call, as the CPU does). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Stores f32 value x as element i of a dtype array. */
static void put(void *p, stem_dtype dt, size_t i, float x)
{
    if (dt == STEM_DTYPE_F32)
        ((float *)p)[i] = x;
    else
        stem_convert(&x, STEM_DTYPE_F32, (uint16_t *)p + i, dt, 1);
}

static double get(const void *p, stem_dtype dt, size_t i)
{
    if (dt == STEM_DTYPE_F32)
        return ((const float *)p)[i];
    float f = 0.0f;
    stem_convert((const uint16_t *)p + i, dt, &f, STEM_DTYPE_F32, 1);
    return f;
}

int bench_varlen(stem_context *ctx, const tool_opts *o, const bench_shape *s,
                 const int64_t *lens, int nlens, int64_t prefix, int32_t page_size, int warmup,
                 int repeat, int quiet, bench_varlen_result *r)
{
    int rc = 1;
    const int nseq = nlens > 0 ? nlens : (int)s->batch;
    const int64_t Hq = s->hq, Hkv = s->hkv, d = s->d;
    const stem_dtype dt = s->dtype;
    const size_t es = stem_dtype_size(dt);
    int64_t L[BENCH_MAX_SEQS], M[BENCH_MAX_SEQS], cu[BENCH_MAX_SEQS + 1], cuk[BENCH_MAX_SEQS + 1];
    int32_t cu32[BENCH_MAX_SEQS + 1], cuk32[BENCH_MAX_SEQS + 1], len32[BENCH_MAX_SEQS];
    stem_plan *plan = NULL, *sp[BENCH_MAX_SEQS] = {0};
    stem_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL, *bcu = NULL, *bcuk = NULL,
                *blen = NULL, *btab = NULL;
    stem_buffer *sq[BENCH_MAX_SEQS] = {0}, *sk[BENCH_MAX_SEQS] = {0}, *sv[BENCH_MAX_SEQS] = {0},
                *so[BENCH_MAX_SEQS] = {0};
    float *fq = NULL, *fk = NULL, *fv = NULL;
    void *hq = NULL, *hk = NULL, *hv = NULL, *ho = NULL, *hs = NULL;
    int32_t *table = NULL;
    double *ms = NULL;
    memset(r, 0, sizeof *r);
    if (nseq < 1 || nseq > BENCH_MAX_SEQS)
        return tool_error("varlen: 1 to %d sequences", BENCH_MAX_SEQS);
    int64_t T = 0, Tk = 0, maxL = 0, maxM = 0, pages = 0, cols = 0;
    for (int b = 0; b < nseq; b++) {
        L[b] = nlens > 0 ? lens[b] : s->n;
        M[b] = prefix > 0 && prefix < L[b] ? L[b] - prefix : L[b];
        cu[b] = T, cuk[b] = Tk;
        T += M[b], Tk += L[b];
        maxL = L[b] > maxL ? L[b] : maxL;
        maxM = M[b] > maxM ? M[b] : maxM;
        if (page_size > 0) {
            const int64_t np = (L[b] + page_size - 1) / page_size;
            pages += np;
            cols = np > cols ? np : cols;
        }
        len32[b] = (int32_t)L[b];
    }
    cu[nseq] = T, cuk[nseq] = Tk;
    for (int b = 0; b <= nseq; b++)
        cu32[b] = (int32_t)cu[b], cuk32[b] = (int32_t)cuk[b];
    r->seqs = nseq;
    r->tokens = T;

    /* Inputs: per sequence, packed into token-major host images. */
    const int64_t kv_rows = page_size > 0 ? pages * page_size : Tk;
    hq = calloc((size_t)(T * Hq * d), es);
    hk = calloc((size_t)(kv_rows * Hkv * d), es);
    hv = calloc((size_t)(kv_rows * Hkv * d), es);
    ho = malloc((size_t)(T * Hq * d) * es);
    hs = malloc((size_t)(maxM * Hq * d) * es);
    fq = malloc((size_t)(Hq * maxL * d) * 4);
    fk = malloc((size_t)(Hkv * maxL * d) * 4);
    fv = malloc((size_t)(Hkv * maxL * d) * 4);
    table = calloc((size_t)(nseq * (cols ? cols : 1)), 4);
    ms = calloc((size_t)repeat * 2, sizeof *ms);
    if (!hq || !hk || !hv || !ho || !hs || !fq || !fk || !fv || !table || !ms) {
        tool_error("out of memory");
        goto done;
    }
    /* Physical pages in a shuffled order (a fixed LCG), as a cache hands them out. */
    int64_t *perm = malloc((size_t)(pages ? pages : 1) * sizeof *perm);
    if (!perm) {
        tool_error("out of memory");
        goto done;
    }
    for (int64_t i = 0; i < pages; i++)
        perm[i] = i;
    uint64_t seed = s->seed * 2654435761u + 1;
    for (int64_t i = pages - 1; i > 0; i--) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const int64_t j = (int64_t)((seed >> 33) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int64_t next = 0;
    for (int b = 0; b < nseq; b++) {
        stem_synth_qkv(s->kind, s->seed + (uint64_t)b * 7919u, 1, Hq, Hkv, L[b], d, fq, fk, fv);
        for (int64_t j = 0; page_size > 0 && j < (L[b] + page_size - 1) / page_size; j++)
            table[b * cols + j] = (int32_t)perm[next++];
        for (int64_t i = 0; i < M[b]; i++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t c = 0; c < d; c++)
                    put(hq, dt, (size_t)(((cu[b] + i) * Hq + h) * d + c),
                        fq[(h * L[b] + L[b] - M[b] + i) * d + c]);
        for (int64_t t = 0; t < L[b]; t++) {
            const int64_t row = page_size > 0
                                    ? table[b * cols + t / page_size] * page_size + t % page_size
                                    : cuk[b] + t;
            for (int64_t h = 0; h < Hkv; h++)
                for (int64_t c = 0; c < d; c++) {
                    put(hk, dt, (size_t)((row * Hkv + h) * d + c), fk[(h * L[b] + t) * d + c]);
                    put(hv, dt, (size_t)((row * Hkv + h) * d + c), fv[(h * L[b] + t) * d + c]);
                }
        }
    }
    free(perm);

    /* The varlen call's plan and buffers. */
    stem_attention_desc desc;
    bench_desc(s, o, &desc);
    desc.batch = nseq;
    desc.q_len = maxM;
    desc.kv_len = maxL;
    desc.q_layout = STEM_Q_PACKED;
    desc.kv_store = page_size > 0 ? STEM_KV_PAGED : STEM_KV_PACKED;
    desc.page_size = page_size > 0 ? page_size : 0;
    TOOL_CHECK(stem_plan_create(ctx, &desc, &o->cfg, &plan), "stem_plan_create (varlen)");
    TOOL_CHECK(stem_buffer_create(ctx, (size_t)(T * Hq * d) * es, &bq), "stem_buffer_create");
    TOOL_CHECK(stem_buffer_create(ctx, (size_t)(T * Hq * d) * es, &bo), "stem_buffer_create");
    TOOL_CHECK(stem_buffer_create(ctx, (size_t)(kv_rows * Hkv * d) * es, &bk), "stem_buffer_create");
    TOOL_CHECK(stem_buffer_create(ctx, (size_t)(kv_rows * Hkv * d) * es, &bv), "stem_buffer_create");
    TOOL_CHECK(stem_buffer_write(bq, 0, hq, (size_t)(T * Hq * d) * es), "stem_buffer_write");
    TOOL_CHECK(stem_buffer_write(bk, 0, hk, (size_t)(kv_rows * Hkv * d) * es), "stem_buffer_write");
    TOOL_CHECK(stem_buffer_write(bv, 0, hv, (size_t)(kv_rows * Hkv * d) * es), "stem_buffer_write");
    TOOL_CHECK(stem_buffer_create(ctx, sizeof cu32, &bcu), "stem_buffer_create");
    TOOL_CHECK(stem_buffer_write(bcu, 0, cu32, sizeof cu32), "stem_buffer_write");
    TOOL_CHECK(stem_buffer_create(ctx, sizeof cuk32, &bcuk), "stem_buffer_create");
    TOOL_CHECK(stem_buffer_write(bcuk, 0, cuk32, sizeof cuk32), "stem_buffer_write");
    TOOL_CHECK(stem_buffer_create(ctx, sizeof len32, &blen), "stem_buffer_create");
    TOOL_CHECK(stem_buffer_write(blen, 0, len32, sizeof len32), "stem_buffer_write");
    const size_t tb = (size_t)(nseq * (cols ? cols : 1)) * 4;
    TOOL_CHECK(stem_buffer_create(ctx, tb, &btab), "stem_buffer_create");
    TOOL_CHECK(stem_buffer_write(btab, 0, table, tb), "stem_buffer_write");
    const stem_tensor tq = tool_view(bq, dt, 1, Hq, T, d, T * Hq * d, d, Hq * d, 1);
    const stem_tensor to = tool_view(bo, dt, 1, Hq, T, d, T * Hq * d, d, Hq * d, 1);
    const stem_tensor tk =
        page_size > 0 ? tool_view(bk, dt, pages, Hkv, page_size, d, page_size * Hkv * d, d, Hkv * d, 1)
                      : tool_view(bk, dt, 1, Hkv, Tk, d, Tk * Hkv * d, d, Hkv * d, 1);
    stem_tensor tv = tk;
    tv.buffer = bv;
    const stem_tensor tcu = tool_view(bcu, STEM_DTYPE_I32, 1, 1, 1, nseq + 1, 1, 1, 1, 1);
    const stem_tensor tcuk = tool_view(bcuk, STEM_DTYPE_I32, 1, 1, 1, nseq + 1, 1, 1, 1, 1);
    const stem_tensor tlen = tool_view(blen, STEM_DTYPE_I32, 1, 1, 1, nseq, 1, 1, 1, 1);
    const stem_tensor ttab = tool_view(btab, STEM_DTYPE_I32, 1, 1, nseq, cols ? cols : 1,
                                  1, 1, cols ? cols : 1, 1);
    stem_seqs seqs;
    stem_seqs_init(&seqs);
    seqs.batch = nseq;
    seqs.cu_seqlens_q = &tcu;
    if (page_size > 0) {
        seqs.seqlens_kv = &tlen;
        seqs.block_table = &ttab;
    } else {
        seqs.cu_seqlens_kv = &tcuk;
    }
    stem_call_io io;
    stem_call_io_init(&io);
    io.seqs = &seqs;

    /* The same sequences as separate calls (views of their own buffers). */
    for (int b = 0; b < nseq; b++) {
        stem_attention_desc sd;
        bench_desc(s, o, &sd);
        sd.batch = 1;
        sd.q_len = M[b];
        sd.kv_len = L[b];
        TOOL_CHECK(stem_plan_create(ctx, &sd, &o->cfg, &sp[b]), "stem_plan_create (sequence)");
        TOOL_CHECK(stem_buffer_create(ctx, (size_t)(M[b] * Hq * d) * es, &sq[b]), "stem_buffer_create");
        TOOL_CHECK(stem_buffer_create(ctx, (size_t)(M[b] * Hq * d) * es, &so[b]), "stem_buffer_create");
        TOOL_CHECK(stem_buffer_create(ctx, (size_t)(L[b] * Hkv * d) * es, &sk[b]), "stem_buffer_create");
        TOOL_CHECK(stem_buffer_create(ctx, (size_t)(L[b] * Hkv * d) * es, &sv[b]), "stem_buffer_create");
        TOOL_CHECK(stem_buffer_write(sq[b], 0, (char *)hq + (size_t)(cu[b] * Hq * d) * es,
                                (size_t)(M[b] * Hq * d) * es),
              "stem_buffer_write");
        for (int64_t t = 0; t < L[b]; t++) { /* token-major copies of the sequence's keys */
            const int64_t row = page_size > 0
                                    ? table[b * cols + t / page_size] * page_size + t % page_size
                                    : cuk[b] + t;
            TOOL_CHECK(stem_buffer_write(sk[b], (size_t)(t * Hkv * d) * es,
                                    (char *)hk + (size_t)(row * Hkv * d) * es, (size_t)(Hkv * d) * es),
                  "stem_buffer_write");
            TOOL_CHECK(stem_buffer_write(sv[b], (size_t)(t * Hkv * d) * es,
                                    (char *)hv + (size_t)(row * Hkv * d) * es, (size_t)(Hkv * d) * es),
                  "stem_buffer_write");
        }
    }
    if (!quiet)
        fprintf(stderr, "[varlen] %d sequence(s), %lld queries: %d warm-up + %d timed runs\n", nseq,
                (long long)T, warmup, repeat);
    for (int it = 0; it < warmup + repeat; it++) {
        TOOL_CHECK(stem_synchronize(ctx), "stem_synchronize");
        const double t0 = tool_now_ms();
        for (int b = 0; b < nseq; b++) {
            const stem_tensor q = tool_view(sq[b], dt, 1, Hq, M[b], d, M[b] * Hq * d, d, Hq * d, 1);
            const stem_tensor out = tool_view(so[b], dt, 1, Hq, M[b], d, M[b] * Hq * d, d, Hq * d, 1);
            const stem_tensor k = tool_view(sk[b], dt, 1, Hkv, L[b], d, L[b] * Hkv * d, d, Hkv * d, 1);
            stem_tensor v = k;
            v.buffer = sv[b];
            TOOL_CHECK(stem_prefill(sp[b], &q, &k, &v, &out, NULL, NULL, NULL), "stem_prefill");
        }
        TOOL_CHECK(stem_synchronize(ctx), "stem_synchronize");
        const double t1 = tool_now_ms();
        TOOL_CHECK(stem_prefill_ex(plan, &tq, &tk, &tv, &to, &io), "stem_prefill_ex (varlen)");
        TOOL_CHECK(stem_synchronize(ctx), "stem_synchronize");
        const double t2 = tool_now_ms();
        if (it >= warmup) {
            ms[it - warmup] = t1 - t0;
            ms[repeat + it - warmup] = t2 - t1;
        }
    }
    r->separate_ms = tool_median(ms, repeat);
    r->varlen_ms = tool_median(ms + repeat, repeat);
    TOOL_CHECK(stem_buffer_read(bo, 0, ho, (size_t)(T * Hq * d) * es), "stem_buffer_read");
    double num = 0.0, den = 0.0;
    r->bitwise = 1;
    for (int b = 0; b < nseq; b++) {
        TOOL_CHECK(stem_buffer_read(so[b], 0, hs, (size_t)(M[b] * Hq * d) * es), "stem_buffer_read");
        const char *packed = (const char *)ho + (size_t)(cu[b] * Hq * d) * es;
        r->bitwise &= memcmp(packed, hs, (size_t)(M[b] * Hq * d) * es) == 0;
        for (size_t i = 0; i < (size_t)(M[b] * Hq * d); i++) {
            const double a = get(packed, dt, i), e = get(hs, dt, i);
            num += (a - e) * (a - e);
            den += e * e;
        }
    }
    r->rel_diff = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
    rc = 0;
done:
    free(fq), free(fk), free(fv), free(hq), free(hk), free(hv), free(ho), free(hs), free(table);
    free(ms);
    stem_buffer *all[8] = {bq, bk, bv, bo, bcu, bcuk, blen, btab};
    for (int i = 0; i < 8; i++)
        stem_buffer_destroy(all[i]);
    for (int b = 0; b < nseq; b++) {
        stem_buffer_destroy(sq[b]), stem_buffer_destroy(sk[b]), stem_buffer_destroy(sv[b]);
        stem_buffer_destroy(so[b]);
        stem_plan_destroy(sp[b]);
    }
    stem_plan_destroy(plan);
    return rc;
}
