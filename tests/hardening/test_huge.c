/*
 * Huge inputs: index arithmetic at a million tokens and beyond 2^31
 * elements, memory as the plan reports it, and requests too large for the
 * machine failing with a status.
 *
 *   test_huge [tokens]     default 131149 (1025 blocks of 128, the last
 *                          partial); `make test-huge` runs 1048653 (8193)
 *
 * On every device: B = 1, Hq = 2, Hkv = 1, d = 8, bf16 in, f32 out,
 * block 128, stride 8, k_start 4 with 2 sink + 2 local blocks (at most 8
 * blocks a row, so attention stays cheap at head_dim 8).
 *  1. On the CPU (which uses host memory in place) Q and out live in one reserved,
 *     mostly untouched virtual range with a head stride of 2^31 + 64
 *     elements, so every element of head 1 sits past 2^31 elements (2^32
 *     bytes) from the start: any 32-bit offset arithmetic reads or writes
 *     the wrong place.
 *  2. stem_prefill with the plan's own workspace: its output, and (CPU) the
 *     process's peak memory growth stays within workspace_bytes + 64 MiB.
 *  3. stem_score, stem_select, stem_attention with caller tensors: every
 *     score above the diagonal is -inf, every list well formed; sampled
 *     scores (first, middle, last rows) match a double evaluation of
 *     docs/semantics.md sections 1-3, sampled rows' lists are exactly the
 *     top-k of their scores, sampled output rows match a double attention
 *     over their lists, and the output equals stem_prefill's bit for bit.
 *  4. A plan whose workspace exceeds the memory available now (the host's
 *     MemAvailable for the CPU, the device memory elsewhere): stem_prefill
 *     returns an out-of-memory status, writes nothing, and the context
 *     still runs a small problem.
 */
#define _GNU_SOURCE /* MAP_NORESERVE */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "device_filter.h"
#include "stem.h"

#define HQ 2
#define D 8
#define BLK 128
#define STRIDE 8
#define G (BLK / STRIDE)
#define K_START 4
#define SINK 2
#define LOCAL 2
#define HEAD_STRIDE (((int64_t)1 << 31) + 64) /* elements */

static int failures;
#define FAIL(...)                                                                              \
    do {                                                                                       \
        printf("FAIL ");                                                                       \
        printf(__VA_ARGS__);                                                                   \
        printf("\n");                                                                          \
        failures++;                                                                            \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* kB value of a /proc/self/status or /proc/meminfo field; -1 if absent. */
static long long proc_kb(const char *file, const char *field)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return -1;
    char line[256];
    long long v = -1;
    const size_t len = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            v = atoll(line + len + 1);
            break;
        }
    fclose(f);
    return v;
}

/* Resets the peak RSS (VmHWM) to the current RSS; 0 if unsupported. */
static int reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return 0;
    const int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static void *reserve(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static uint16_t to_bf16(float f)
{
    uint16_t h;
    stem_convert(&f, STEM_DTYPE_F32, &h, STEM_DTYPE_BF16, 1);
    return h;
}

static float from_bf16(uint16_t h)
{
    float f;
    stem_convert(&h, STEM_DTYPE_BF16, &f, STEM_DTYPE_F32, 1);
    return f;
}

static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Deterministic values in [-1, 1), plus a slow per-token drift so block
 * scores are not all alike. */
static float value(uint64_t tensor, int64_t row, int64_t col)
{
    const uint64_t key = (tensor * 0x1000003ull) ^ ((uint64_t)row * 64 + (uint64_t)col);
    const double u = (double)(mix(key) >> 11) * 0x1p-53;
    return (float)(2.0 * u - 1.0 + 0.5 * sin((double)row * 1e-4 * (double)(col + 1)));
}

typedef struct problem {
    int64_t n_tokens, n;
    float *q, *k, *v; /* host copies, already rounded to bf16 */
    int wrap;         /* Q and out in the reserved range (host memory used in place) */
} problem;

/* -------------------------------------------------------- references */

/* Value bonus per block (section 2, STEM). */
static double *value_bonus(const problem *p, double beta)
{
    const int64_t N = p->n_tokens, n = p->n, ng = n * G, gv = N / STRIDE;
    double *lv = malloc((size_t)ng * sizeof *lv), *vb = malloc((size_t)n * sizeof *vb);
    if (!lv || !vb)
        return NULL;
    for (int64_t gi = 0; gi < ng; ++gi) {
        double mx = 0.0;
        for (int t = 0; t < STRIDE; ++t) {
            const int64_t tok = gi * STRIDE + t;
            if (tok >= N)
                break;
            double ss = 0.0;
            for (int e = 0; e < D; ++e)
                ss += (double)p->v[tok * D + e] * p->v[tok * D + e];
            mx = fmax(mx, sqrt(ss));
        }
        lv[gi] = log(mx + 1e-6);
    }
    double mean = 0.0, sd = 0.0;
    for (int64_t gi = 0; gi < gv; ++gi)
        mean += lv[gi];
    mean /= (double)gv;
    for (int64_t gi = 0; gi < gv; ++gi)
        sd += (lv[gi] - mean) * (lv[gi] - mean);
    sd = sqrt(sd / (double)(gv - 1));
    for (int64_t J = 0; J < n; ++J) {
        double s = 0.0;
        for (int a = 0; a < G; ++a)
            s += beta * fmax(0.0, (lv[J * G + a] - mean) / (sd + 1e-6));
        vb[J] = s / G;
    }
    free(lv);
    return vb;
}

/* Routing term R[I][J] of head h (section 1, phase-sum form). */
static double routing(const problem *p, int h, int64_t I, int64_t J, double scale)
{
    double qf[STRIDE * D] = {0}, kf[STRIDE * D] = {0};
    for (int a = 0; a < G; ++a)
        for (int t = 0; t < STRIDE; ++t) {
            const int64_t qt = I * BLK + a * STRIDE + t, kt = J * BLK + a * STRIDE + t;
            for (int e = 0; e < D; ++e) {
                if (qt < p->n_tokens)
                    qf[t * D + e] += p->q[((int64_t)h * p->n_tokens + qt) * D + e];
                if (kt < p->n_tokens)
                    kf[(STRIDE - 1 - t) * D + e] += p->k[kt * D + e];
            }
        }
    double dot = 0.0;
    for (int i = 0; i < STRIDE * D; ++i)
        dot += qf[i] * kf[i];
    return dot * scale / ((double)STRIDE * G * G);
}

/* Output row of query token t, head h, over the listed blocks. */
static void attention_row(const problem *p, int h, int64_t t, const int32_t *list, int32_t cnt,
                          double scale, double *out)
{
    const float *qr = p->q + ((int64_t)h * p->n_tokens + t) * D;
    double m = -INFINITY, l = 0.0, acc[D] = {0};
    for (int32_t r = 0; r < cnt; ++r)
        for (int64_t j = (int64_t)list[r] * BLK; j < ((int64_t)list[r] + 1) * BLK; ++j) {
            if (j > t || j >= p->n_tokens)
                break;
            double s = 0.0;
            for (int e = 0; e < D; ++e)
                s += (double)qr[e] * p->k[j * D + e];
            s *= scale;
            const double m2 = fmax(m, s), a = exp(m - m2), w = exp(s - m2);
            l = l * a + w;
            for (int e = 0; e < D; ++e)
                acc[e] = acc[e] * a + w * p->v[j * D + e];
            m = m2;
        }
    for (int e = 0; e < D; ++e)
        out[e] = l > 0.0 ? acc[e] / l : 0.0;
}

/* ------------------------------------------------------------- checks */

/* Every list well formed; returns the number of bad rows. */
static int64_t check_all_lists(const problem *p, const int32_t *index, const int32_t *count,
                               const int32_t *budget)
{
    const int64_t n = p->n;
    int64_t bad = 0;
    for (int h = 0; h < HQ; ++h)
        for (int64_t I = 0; I < n; ++I) {
            const int32_t *row = index + ((int64_t)h * n + I) * n;
            const int32_t c = count[(int64_t)h * n + I];
            const int64_t most = I + 1 < budget[I] + SINK + LOCAL ? I + 1 : budget[I] + SINK + LOCAL;
            int ok = c >= 1 && c <= most;
            int32_t prev = -1;
            for (int64_t r = 0; ok && r < c; ++r) {
                ok = row[r] > prev && row[r] <= I;
                prev = row[r];
            }
            for (int64_t r = c; ok && r < n; ++r)
                ok = row[r] == -1;
            /* forced: the sink blocks lead the list, the local ones end it */
            for (int64_t J = 0; ok && J < SINK && J <= I; ++J)
                ok = row[J] == J;
            for (int64_t J = I; ok && J >= 0 && J > I - LOCAL; --J)
                ok = row[c - 1 - (I - J)] == J;
            if (!ok && bad++ < 3)
                printf("  head %d row %lld: count %d, list starts %d %d %d\n", h, (long long)I, c,
                       row[0], c > 1 ? row[1] : -9, c > 2 ? row[2] : -9);
        }
    return bad;
}

/* Exact top-k of row I from its scores (ties to the lower block), forced
 * blocks added, against the library's list. */
static int check_row_selection(const problem *p, const float *srow, const int32_t *list,
                               int32_t cnt, int64_t I, int32_t budget)
{
    const int64_t n = p->n;
    unsigned char *keep = calloc((size_t)n, 1);
    if (!keep)
        return 0;
    if (I + 1 <= budget) {
        memset(keep, 1, (size_t)I + 1);
    } else {
        /* k-th best by a threshold pass: count how many beat each candidate
         * would be O(n^2); instead sort indices by (value desc, index asc). */
        int64_t *order = malloc((size_t)(I + 1) * sizeof *order);
        if (!order) {
            free(keep);
            return 0;
        }
        int64_t m = 0;
        for (int64_t J = 0; J <= I; ++J)
            if (isfinite(srow[J]))
                order[m++] = J;
        /* partial selection sort of the top `budget` (budget is small) */
        for (int64_t r = 0; r < budget && r < m; ++r) {
            int64_t best = r;
            for (int64_t x = r + 1; x < m; ++x)
                if (srow[order[x]] > srow[order[best]] ||
                    (srow[order[x]] == srow[order[best]] && order[x] < order[best]))
                    best = x;
            const int64_t tmp = order[r];
            order[r] = order[best];
            order[best] = tmp;
            keep[order[r]] = 1;
        }
        free(order);
        for (int64_t J = 0; J < SINK && J <= I; ++J)
            keep[J] = 1;
        for (int64_t J = I - LOCAL + 1 < 0 ? 0 : I - LOCAL + 1; J <= I; ++J)
            keep[J] = 1;
    }
    int ok = 1;
    int32_t r = 0;
    for (int64_t J = 0; J <= I && ok; ++J)
        if (keep[J])
            ok = r < cnt && list[r++] == J;
    ok = ok && r == cnt;
    free(keep);
    return ok;
}

static stem_status make_buffer(stem_context *ctx, const problem *p, void *host, size_t bytes,
                               stem_buffer **out)
{
    if (p->wrap)
        return stem_buffer_wrap_host(ctx, host, bytes, out);
    return stem_buffer_create(ctx, bytes, out);
}

/* Runs parts 1-3 on one device. */
static void test_device(int32_t device, const char *name, const stem_device_info *info,
                        int64_t n_tokens)
{
    const double t0 = now();
    const int failures_before = failures;
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.device = device;
    stem_context *ctx = NULL;
    if (stem_context_create(&cd, &ctx) != STEM_OK) {
        FAIL("%s: stem_context_create: %s", name, stem_last_error());
        return;
    }
    problem p;
    memset(&p, 0, sizeof p);
    if (!info->is_gpu && info->backend != STEM_BACKEND_CPU && n_tokens > 32861) {
        printf("note %s: emulated device (runs on the CPU): %d tokens instead of %lld\n", name,
               32861, (long long)n_tokens);
        n_tokens = 32861; /* 257 blocks */
    }
    p.n_tokens = n_tokens;
    p.n = (n_tokens + BLK - 1) / BLK;
    const int64_t N = n_tokens, n = p.n;
    const double scale = 1.0 / sqrt((double)D);

    /* Inputs: host copies (f32 of the bf16 values) and bf16 images. */
    p.q = malloc((size_t)(HQ * N * D) * sizeof(float));
    p.k = malloc((size_t)(N * D) * sizeof(float));
    p.v = malloc((size_t)(N * D) * sizeof(float));
    uint16_t *kb = malloc((size_t)(N * D) * 2), *vbits = malloc((size_t)(N * D) * 2);
    if (!p.q || !p.k || !p.v || !kb || !vbits) {
        FAIL("%s: out of host memory for the inputs", name);
        return;
    }
    for (int64_t t = 0; t < N; ++t)
        for (int e = 0; e < D; ++e) {
            for (int h = 0; h < HQ; ++h) {
                const float x = from_bf16(to_bf16(value(1 + (uint64_t)h, t, e)));
                p.q[((int64_t)h * N + t) * D + e] = x;
            }
            kb[t * D + e] = to_bf16(value(7, t, e));
            vbits[t * D + e] = to_bf16(value(9, t, e) * (t % 977 == 0 ? 6.0f : 1.0f));
            p.k[t * D + e] = from_bf16(kb[t * D + e]);
            p.v[t * D + e] = from_bf16(vbits[t * D + e]);
        }

    /* Q and two outputs: in the reserved range with the 2^31 head stride
     * when host memory can be used in place, else contiguous. */
    stem_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL, *bo2 = NULL;
    const size_t q_span = (size_t)(HEAD_STRIDE + N * D) * 2;
    const size_t o_span = (size_t)(HEAD_STRIDE + N * D) * 4;
    unsigned char *qmem = NULL, *omem = NULL, *omem2 = NULL;
    {
        /* Only the CPU uses host memory in place; a GPU backend wrapping the
         * range could pin or copy all of it. */
        p.wrap = info->backend == STEM_BACKEND_CPU;
        if (p.wrap) {
            qmem = reserve(q_span);
            omem = reserve(o_span);
            omem2 = reserve(o_span);
            if (!qmem || !omem || !omem2) {
                printf("note %s: cannot reserve %zu bytes of address space; contiguous tensors\n",
                       name, 2 * o_span + q_span);
                p.wrap = 0;
            }
        }
    }
    stem_tensor tq, to, to2;
    if (p.wrap) {
        for (int h = 0; h < HQ; ++h)
            for (int64_t i = 0; i < N * D; ++i) {
                const uint16_t b = to_bf16(p.q[(int64_t)h * N * D + i]);
                memcpy(qmem + (size_t)(h * HEAD_STRIDE + i) * 2, &b, 2);
            }
        tq = stem_tensor_bhnd(NULL, 0, STEM_DTYPE_BF16, 1, HQ, N, D);
        to = stem_tensor_bhnd(NULL, 0, STEM_DTYPE_F32, 1, HQ, N, D);
        tq.strides[1] = to.strides[1] = HEAD_STRIDE;
        tq.strides[0] = to.strides[0] = HQ * HEAD_STRIDE;
        to2 = to;
        if (make_buffer(ctx, &p, qmem, q_span, &bq) != STEM_OK ||
            make_buffer(ctx, &p, omem, o_span, &bo) != STEM_OK ||
            make_buffer(ctx, &p, omem2, o_span, &bo2) != STEM_OK) {
            FAIL("%s: stem_buffer_wrap_host: %s", name, stem_last_error());
            return;
        }
    } else {
        uint16_t *qb = malloc((size_t)(HQ * N * D) * 2);
        if (!qb)
            return;
        for (int64_t i = 0; i < HQ * N * D; ++i)
            qb[i] = to_bf16(p.q[i]);
        if (stem_buffer_create(ctx, (size_t)(HQ * N * D) * 2, &bq) != STEM_OK ||
            stem_buffer_write(bq, 0, qb, (size_t)(HQ * N * D) * 2) != STEM_OK ||
            stem_buffer_create(ctx, (size_t)(HQ * N * D) * 4, &bo) != STEM_OK ||
            stem_buffer_create(ctx, (size_t)(HQ * N * D) * 4, &bo2) != STEM_OK) {
            FAIL("%s: buffers: %s", name, stem_last_error());
            return;
        }
        free(qb);
        tq = stem_tensor_bhnd(bq, 0, STEM_DTYPE_BF16, 1, HQ, N, D);
        to = stem_tensor_bhnd(bo, 0, STEM_DTYPE_F32, 1, HQ, N, D);
        to2 = to;
    }
    tq.buffer = bq;
    to.buffer = bo;
    to2.buffer = bo2;
    if (stem_buffer_create(ctx, (size_t)(N * D) * 2, &bk) != STEM_OK ||
        stem_buffer_create(ctx, (size_t)(N * D) * 2, &bv) != STEM_OK ||
        stem_buffer_write(bk, 0, kb, (size_t)(N * D) * 2) != STEM_OK ||
        stem_buffer_write(bv, 0, vbits, (size_t)(N * D) * 2) != STEM_OK) {
        FAIL("%s: K/V buffers: %s", name, stem_last_error());
        return;
    }
    free(kb);
    free(vbits);
    const stem_tensor tk = stem_tensor_bhnd(bk, 0, STEM_DTYPE_BF16, 1, 1, N, D);
    const stem_tensor tv = stem_tensor_bhnd(bv, 0, STEM_DTYPE_BF16, 1, 1, N, D);

    stem_attention_desc d;
    stem_attention_desc_init(&d);
    d.num_q_heads = HQ;
    d.num_kv_heads = 1;
    d.q_len = d.kv_len = N;
    d.head_dim = D;
    d.dtype = STEM_DTYPE_BF16;
    stem_config c;
    stem_config_init(&c);
    c.k_start = K_START;
    c.sink_blocks = SINK;
    c.local_blocks = LOCAL;
    stem_plan *plan = NULL;
    if (stem_plan_create(ctx, &d, &c, &plan) != STEM_OK) {
        FAIL("%s: stem_plan_create: %s", name, stem_last_error());
        return;
    }
    stem_plan_info pi;
    stem_plan_info_init(&pi);
    int32_t *budget = malloc((size_t)n * sizeof *budget);
    if (!budget || stem_plan_get_info(plan, &pi) != STEM_OK ||
        stem_plan_get_budget(plan, budget, (size_t)n) != STEM_OK) {
        FAIL("%s: plan info: %s", name, stem_last_error());
        return;
    }
    const size_t per_head = (size_t)n * (size_t)n * 8 + (size_t)n * 4;
    if (pi.num_q_blocks != n || pi.workspace_bytes < per_head ||
        pi.workspace_bytes > (size_t)HQ * per_head)
        FAIL("%s: plan reports %lld blocks and a %zu-byte workspace (one head: %zu)", name,
             (long long)pi.num_q_blocks, pi.workspace_bytes, per_head);

    /* 2. prefill with the plan's workspace; peak memory growth. */
    const int cpu = info->backend == STEM_BACKEND_CPU;
    if (p.wrap) /* the output pages are the caller's: touch them first */
        for (int h = 0; h < HQ; ++h)
            memset(omem2 + (size_t)(h * HEAD_STRIDE) * 4, 0, (size_t)(N * D) * 4);
    const int peak_ok = cpu && reset_peak_rss();
    const long long rss0 = proc_kb("/proc/self/status", "VmRSS");
    double t = now();
    stem_status st = stem_prefill(plan, &tq, &tk, &tv, &to2, NULL, NULL, NULL);
    if (st == STEM_OK)
        st = stem_synchronize(ctx);
    const double t_prefill = now() - t;
    const long long hwm = proc_kb("/proc/self/status", "VmHWM");
    if (st != STEM_OK) {
        FAIL("%s: stem_prefill: %s: %s", name, stem_status_name(st), stem_last_error());
        return;
    }
    if (peak_ok && rss0 > 0 && hwm > 0) {
        const double grew = (double)(hwm - rss0) * 1024.0;
        const double limit = (double)pi.workspace_bytes + 64.0 * 1048576.0;
        printf("     %s: stem_prefill %.1f s, peak memory grew %.0f MiB, plan workspace %.0f MiB\n",
               name, t_prefill, grew / 1048576.0, (double)pi.workspace_bytes / 1048576.0);
        if (grew > limit)
            FAIL("%s: stem_prefill grew peak memory by %.0f MiB, more than the plan's workspace "
                 "%.0f MiB + 64 MiB",
                 name, grew / 1048576.0, (double)pi.workspace_bytes / 1048576.0);
    } else {
        printf("     %s: stem_prefill %.1f s (peak memory not measured here)\n", name, t_prefill);
    }
    stem_plan_destroy(plan); /* releases its workspace */
    plan = NULL;
    if (stem_plan_create(ctx, &d, &c, &plan) != STEM_OK) {
        FAIL("%s: stem_plan_create: %s", name, stem_last_error());
        return;
    }

    /* 3. the stages with caller tensors. */
    const size_t nn = (size_t)n * (size_t)n;
    stem_buffer *bs = NULL, *bi = NULL, *bc = NULL;
    float *scores = malloc((size_t)HQ * nn * 4);
    int32_t *index = malloc((size_t)HQ * nn * 4), *count = malloc((size_t)(HQ * n) * 4);
    if (!scores || !index || !count || stem_buffer_create(ctx, (size_t)HQ * nn * 4, &bs) ||
        stem_buffer_create(ctx, (size_t)HQ * nn * 4, &bi) ||
        stem_buffer_create(ctx, (size_t)(HQ * n) * 4, &bc)) {
        FAIL("%s: score/list buffers (%zu bytes each): %s", name, (size_t)HQ * nn * 4,
             stem_last_error());
        return;
    }
    const stem_tensor ts = stem_tensor_bhnd(bs, 0, STEM_DTYPE_F32, 1, HQ, n, n);
    const stem_tensor ti = stem_tensor_bhnd(bi, 0, STEM_DTYPE_I32, 1, HQ, n, n);
    const stem_tensor tc = stem_tensor_bhnd(bc, 0, STEM_DTYPE_I32, 1, HQ, n, 1);
    t = now();
    st = stem_score(plan, &tq, &tk, &tv, &ts);
    const double t_score = now() - t;
    t = now();
    if (st == STEM_OK)
        st = stem_select(plan, &ts, &ti, &tc);
    const double t_select = now() - t;
    t = now();
    if (st == STEM_OK)
        st = stem_attention(plan, &tq, &tk, &tv, &ti, &tc, &to);
    if (st == STEM_OK)
        st = stem_synchronize(ctx);
    const double t_attn = now() - t;
    if (st != STEM_OK || stem_buffer_read(bs, 0, scores, (size_t)HQ * nn * 4) != STEM_OK ||
        stem_buffer_read(bi, 0, index, (size_t)HQ * nn * 4) != STEM_OK ||
        stem_buffer_read(bc, 0, count, (size_t)(HQ * n) * 4) != STEM_OK) {
        FAIL("%s: stages: %s: %s", name, stem_status_name(st), stem_last_error());
        return;
    }
    printf("     %s: N=%lld (%lld blocks): score %.1f s, select %.1f s, attention %.1f s\n", name,
           (long long)N, (long long)n, t_score, t_select, t_attn);

    int64_t bad = 0;
    for (int h = 0; h < HQ; ++h)
        for (int64_t I = 0; I < n; ++I)
            for (int64_t J = I + 1; J < n; ++J)
                bad += !(isinf(scores[((int64_t)h * n + I) * n + J]) &&
                         scores[((int64_t)h * n + I) * n + J] < 0);
    if (bad)
        FAIL("%s: %lld scores above the diagonal are not -inf", name, (long long)bad);
    bad = check_all_lists(&p, index, count, budget);
    if (bad)
        FAIL("%s: %lld block lists are malformed", name, (long long)bad);

    /* Sampled rows: first, middle and last. */
    double *vb = value_bonus(&p, c.beta);
    const int64_t rows[6] = {0, 5, n / 2, n / 2 + 1, n - 2, n - 1};
    double worst_score = 0.0, worst_out = 0.0;
    for (int h = 0; h < HQ && vb; ++h)
        for (int r = 0; r < 6; ++r) {
            const int64_t I = rows[r];
            const float *srow = scores + ((int64_t)h * n + I) * n;
            const int64_t cols[6] = {0, I > 0 ? 1 : 0, I / 3, I / 2, I > 0 ? I - 1 : 0, I};
            for (int ci = 0; ci < 6; ++ci) {
                const int64_t J = cols[ci];
                const double ref = routing(&p, h, I, J, scale) + vb[J];
                const double err = fabs(srow[J] - ref) / (1.0 + fabs(ref));
                worst_score = fmax(worst_score, err);
                if (!(err <= 1e-3))
                    FAIL("%s: score[h%d][%lld][%lld] = %.6g, reference %.6g", name, h,
                         (long long)I, (long long)J, (double)srow[J], ref);
            }
            const int32_t *list = index + ((int64_t)h * n + I) * n;
            const int32_t cnt = count[(int64_t)h * n + I];
            if (!check_row_selection(&p, srow, list, cnt, I, budget[I]))
                FAIL("%s: head %d row %lld: the list is not the top-%d of its scores", name, h,
                     (long long)I, budget[I]);
            /* first, middle and last query of the block */
            const int64_t toks[3] = {I * BLK, I * BLK + BLK / 2, I * BLK + BLK - 1};
            for (int ti2 = 0; ti2 < 3; ++ti2) {
                const int64_t tok = toks[ti2] < N ? toks[ti2] : N - 1;
                double ref[D];
                attention_row(&p, h, tok, list, cnt, scale, ref);
                for (int e = 0; e < D; ++e) {
                    float got;
                    if (p.wrap)
                        memcpy(&got, omem + (size_t)(h * HEAD_STRIDE + tok * D + e) * 4, 4);
                    else if (stem_buffer_read(bo, (size_t)((h * N + tok) * D + e) * 4, &got, 4))
                        got = NAN;
                    const double err = fabs(got - ref[e]);
                    worst_out = fmax(worst_out, err);
                    if (!(err <= 1e-3 * (1.0 + fabs(ref[e]))))
                        FAIL("%s: out[h%d][%lld][%d] = %.6g, reference %.6g", name, h,
                             (long long)tok, e, (double)got, ref[e]);
                }
            }
        }
    free(vb);
    /* stem_prefill ran the same stages: the same bits. */
    if (p.wrap) {
        for (int h = 0; h < HQ; ++h)
            if (memcmp(omem + (size_t)(h * HEAD_STRIDE) * 4, omem2 + (size_t)(h * HEAD_STRIDE) * 4,
                       (size_t)(N * D) * 4) != 0)
                FAIL("%s: head %d: stem_prefill and the three stages differ", name, h);
    } else {
        float *a = malloc((size_t)(HQ * N * D) * 4), *b = malloc((size_t)(HQ * N * D) * 4);
        if (a && b && stem_buffer_read(bo, 0, a, (size_t)(HQ * N * D) * 4) == STEM_OK &&
            stem_buffer_read(bo2, 0, b, (size_t)(HQ * N * D) * 4) == STEM_OK &&
            memcmp(a, b, (size_t)(HQ * N * D) * 4) != 0)
            FAIL("%s: stem_prefill and the three stages differ", name);
        free(a);
        free(b);
    }
    printf("%s %s: N=%lld, %s Q/out, worst score error %.2g, worst output error %.2g, %.0f s\n",
           failures > failures_before ? "FAIL" : "ok  ", name, (long long)N,
           p.wrap ? "2^31-element head stride in" : "contiguous", worst_score, worst_out,
           now() - t0);

    stem_plan_destroy(plan);
    stem_buffer_destroy(bs);
    stem_buffer_destroy(bi);
    stem_buffer_destroy(bc);
    stem_buffer_destroy(bq);
    stem_buffer_destroy(bk);
    stem_buffer_destroy(bv);
    stem_buffer_destroy(bo);
    stem_buffer_destroy(bo2);
    if (qmem)
        munmap(qmem, q_span);
    if (omem)
        munmap(omem, o_span);
    if (omem2)
        munmap(omem2, o_span);
    free(scores);
    free(index);
    free(count);
    free(budget);
    free(p.q);
    free(p.k);
    free(p.v);
    if (stem_context_destroy(ctx) != STEM_OK)
        FAIL("%s: stem_context_destroy: %s", name, stem_last_error());
}

/* 4. A workspace larger than the memory available now: the host's
 * MemAvailable for the CPU, the device's memory elsewhere. */
static void test_too_large(int32_t device, const char *name, const stem_device_info *info)
{
    const int cpu = info->backend == STEM_BACKEND_CPU;
    double avail = 0.0;
    if (cpu) {
        const long long kb = proc_kb("/proc/meminfo", "MemAvailable");
        avail = kb > 0 ? (double)kb * 1024.0 : (double)info->memory_bytes;
    } else {
        avail = (double)info->memory_bytes;
    }
    if (avail <= 0.0) {
        printf("skip %s: too-large workspace (memory size unknown)\n", name);
        return;
    }
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.device = device;
    stem_context *ctx = NULL;
    if (stem_context_create(&cd, &ctx) != STEM_OK) {
        FAIL("%s: stem_context_create: %s", name, stem_last_error());
        return;
    }
    /* One head's workspace n^2 * 8 bytes > 1.25 x available. */
    const int64_t n = (int64_t)ceil(sqrt(1.25 * avail / 8.0));
    const int64_t N = n * BLK;
    const size_t span = (size_t)(N * D) * 2, ospan = (size_t)(N * D) * 4;
    /* CPU: reserved, untouched address space used in place; elsewhere
     * ordinary buffers (a few hundred MiB). */
    unsigned char *q = NULL, *k = NULL, *v = NULL, *o = NULL;
    stem_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL;
    stem_status st = STEM_OK;
    if (cpu) {
        q = reserve(span);
        k = reserve(span);
        v = reserve(span);
        o = reserve(ospan);
        if (!q || !k || !v || !o) {
            printf("skip %s: cannot reserve address space for N=%lld\n", name, (long long)N);
            stem_context_destroy(ctx);
            return;
        }
        if ((st = stem_buffer_wrap_host(ctx, q, span, &bq)) == STEM_OK &&
            (st = stem_buffer_wrap_host(ctx, k, span, &bk)) == STEM_OK &&
            (st = stem_buffer_wrap_host(ctx, v, span, &bv)) == STEM_OK)
            st = stem_buffer_wrap_host(ctx, o, ospan, &bo);
    } else if ((st = stem_buffer_create(ctx, span, &bq)) == STEM_OK &&
               (st = stem_buffer_create(ctx, span, &bk)) == STEM_OK &&
               (st = stem_buffer_create(ctx, span, &bv)) == STEM_OK) {
        st = stem_buffer_create(ctx, ospan, &bo);
    }
    /* A pattern in the output that a failed call must leave. */
    const size_t probe_at[3] = {0, ospan / 2 & ~(size_t)3, ospan - 4};
    const uint32_t pattern = 0x7FC0BEEFu;
    for (int i = 0; i < 3 && st == STEM_OK; ++i)
        st = stem_buffer_write(bo, probe_at[i], &pattern, 4);
    stem_plan *plan = NULL;
    stem_attention_desc d;
    stem_attention_desc_init(&d);
    d.q_len = d.kv_len = N;
    d.head_dim = D;
    d.dtype = STEM_DTYPE_BF16;
    stem_config c;
    stem_config_init(&c);
    c.k_start = K_START;
    c.sink_blocks = SINK;
    c.local_blocks = LOCAL;
    stem_plan_info pi;
    stem_plan_info_init(&pi);
    const stem_status pst = st == STEM_OK ? stem_plan_create(ctx, &d, &c, &plan) : st;
    if (pst == STEM_ERR_UNSUPPORTED && info->backend != STEM_BACKEND_CPU) {
        /* A GPU backend may decline a plan past its kernels' limits (e.g.
         * key blocks per row beyond local memory) before any allocation. */
        printf("ok   %s: N=%lld declined by the backend: %s\n", name, (long long)N,
               stem_last_error());
    } else if (pst != STEM_OK || stem_plan_get_info(plan, &pi)) {
        FAIL("%s: N=%lld setup: %s", name, (long long)N, stem_last_error());
    } else {
        const stem_tensor tq = stem_tensor_bhnd(bq, 0, STEM_DTYPE_BF16, 1, 1, N, D);
        const stem_tensor tk = stem_tensor_bhnd(bk, 0, STEM_DTYPE_BF16, 1, 1, N, D);
        const stem_tensor tv = stem_tensor_bhnd(bv, 0, STEM_DTYPE_BF16, 1, 1, N, D);
        const stem_tensor to = stem_tensor_bhnd(bo, 0, STEM_DTYPE_F32, 1, 1, N, D);
        const double t = now();
        st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, NULL);
        if (st == STEM_OK)
            st = stem_synchronize(ctx);
        const double took = now() - t;
        char msg[256];
        snprintf(msg, sizeof msg, "%s", stem_last_error());
        int untouched = 1;
        for (int i = 0; i < 3; ++i) {
            uint32_t got = 0;
            untouched = untouched && stem_buffer_read(bo, probe_at[i], &got, 4) == STEM_OK &&
                        got == pattern;
        }
        if (st != STEM_ERR_OUT_OF_MEMORY && st != STEM_ERR_DEVICE_OUT_OF_MEMORY)
            FAIL("%s: stem_prefill needing a %.1f GiB workspace (%.1f GiB available) returned "
                 "%s, expected out of memory",
                 name, (double)pi.workspace_bytes / 1073741824.0, avail / 1073741824.0,
                 stem_status_name(st));
        else if (!untouched)
            FAIL("%s: stem_prefill failed but wrote the output", name);
        else
            printf("ok   %s: N=%lld needs a %.1f GiB workspace, %.1f GiB available: %s in %.2f s "
                   "(%s)\n",
                   name, (long long)N, (double)pi.workspace_bytes / 1073741824.0,
                   avail / 1073741824.0, stem_status_name(st), took, msg);
    }
    stem_plan_destroy(plan);
    stem_buffer_destroy(bq);
    stem_buffer_destroy(bk);
    stem_buffer_destroy(bv);
    stem_buffer_destroy(bo);
    if (q)
        munmap(q, span);
    if (k)
        munmap(k, span);
    if (v)
        munmap(v, span);
    if (o)
        munmap(o, ospan);
    /* The context still runs a small problem. */
    d.q_len = d.kv_len = 300;
    c.k_start = 0;
    stem_buffer *b[4] = {0};
    plan = NULL;
    st = stem_plan_create(ctx, &d, &c, &plan);
    for (int i = 0; i < 4 && st == STEM_OK; ++i)
        st = stem_buffer_create(ctx, 300 * D * 4, &b[i]);
    if (st == STEM_OK) {
        const stem_tensor sq = stem_tensor_bhnd(b[0], 0, STEM_DTYPE_BF16, 1, 1, 300, D);
        const stem_tensor sk = stem_tensor_bhnd(b[1], 0, STEM_DTYPE_BF16, 1, 1, 300, D);
        const stem_tensor sv = stem_tensor_bhnd(b[2], 0, STEM_DTYPE_BF16, 1, 1, 300, D);
        const stem_tensor so = stem_tensor_bhnd(b[3], 0, STEM_DTYPE_F32, 1, 1, 300, D);
        st = stem_prefill(plan, &sq, &sk, &sv, &so, NULL, NULL, NULL);
        if (st == STEM_OK)
            st = stem_synchronize(ctx);
    }
    if (st != STEM_OK)
        FAIL("%s: after the out-of-memory failure a small prefill returned %s: %s", name,
             stem_status_name(st), stem_last_error());
    stem_plan_destroy(plan);
    for (int i = 0; i < 4; ++i)
        stem_buffer_destroy(b[i]);
    if (stem_context_destroy(ctx) != STEM_OK)
        FAIL("%s: stem_context_destroy: %s", name, stem_last_error());
}

int main(int argc, char **argv)
{
    int64_t n_tokens = 131149;
    if (argc > 1)
        n_tokens = atoll(argv[1]);
    if (n_tokens < 2 * BLK * K_START) {
        fprintf(stderr, "usage: %s [tokens >= %d]\n", argv[0], 2 * BLK * K_START);
        return 2;
    }
    uint32_t count = 0;
    stem_device_count(&count);
    for (uint32_t i = 0; i < count; ++i) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) != STEM_OK || !hardening_device_selected(&info))
            continue;
        char name[300];
        snprintf(name, sizeof name, "%s #%u (%s)", stem_backend_name(info.backend),
                 info.backend_index, info.name);
        test_device((int32_t)i, name, &info, n_tokens);
        test_too_large((int32_t)i, name, &info);
    }
    printf("huge inputs: %s\n", failures ? "FAILED" : "passed");
    return failures != 0;
}
