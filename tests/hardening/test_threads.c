/*
 * Threads: several contexts used from several threads at once give, bit for
 * bit, the results of serial runs (docs/hardening.md, thread-safety rules).
 *
 * On every device: a set of problems (every selector, f32/f16/bf16, GQA,
 * batch > 1, a caller workspace) is first run serially on one context. Then
 * THREADS threads each open their own context on the same device and run
 * every problem ROUNDS times in a rotated order, comparing scores, lists and
 * outputs with the serial ones. Meanwhile each thread also queries the
 * device list and provokes failures, checking that stem_last_error() is
 * its own (the message is thread-local).
 *
 * STEM_TEST_ONLY=cpu,opencl limits the devices (as in the conformance suite).
 *
 * Built and run under ThreadSanitizer by `make test-tsan` (OpenMP off there:
 * libgomp is not instrumented).
 */
#define _POSIX_C_SOURCE 200809L /* pthread_barrier */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_filter.h"
#include "stem.h"
#include "stem_synth.h"

#define THREADS 4
#define ROUNDS 3

typedef struct problem {
    const char *name;
    stem_selector selector;
    stem_dtype dtype;
    int64_t batch, hq, hkv, n_tokens, head_dim;
    int32_t block, k_start;
    int caller_workspace;
    /* inputs (converted to dtype) and the serial results */
    void *q, *k, *v;
    size_t q_bytes, kv_bytes, out_bytes, meta_bytes, count_bytes;
    int64_t n_blocks;
    unsigned char *out, *scores, *index, *count;
} problem;

/* name, selector, dtype, batch, Hq, Hkv, N, d, block, k_start, caller workspace */
#define PROBLEM(nm, sel, dt, b, hq_, hkv_, n, d, blk, k, ws)                                      \
    {.name = nm, .selector = sel, .dtype = dt, .batch = b, .hq = hq_, .hkv = hkv_,              \
     .n_tokens = n, .head_dim = d, .block = blk, .k_start = k, .caller_workspace = ws}
static problem problems[] = {
    PROBLEM("stem_f32_gqa", STEM_SELECTOR_STEM, STEM_DTYPE_F32, 1, 4, 2, 700, 64, 32, 4, 0),
    PROBLEM("stem_bf16_batch2", STEM_SELECTOR_STEM, STEM_DTYPE_BF16, 2, 2, 1, 400, 32, 16, 5, 1),
    PROBLEM("paper_f16", STEM_SELECTOR_STEM_PAPER, STEM_DTYPE_F16, 1, 2, 2, 600, 64, 32, 3, 0),
    PROBLEM("uniform_f32", STEM_SELECTOR_UNIFORM, STEM_DTYPE_F32, 1, 3, 1, 520, 16, 16, 6, 1),
    PROBLEM("xattention_f32", STEM_SELECTOR_XATTENTION, STEM_DTYPE_F32, 1, 2, 1, 500, 64, 32, 0, 0),
    PROBLEM("dense_bf16", STEM_SELECTOR_DENSE, STEM_DTYPE_BF16, 1, 2, 2, 300, 128, 64, 0, 0),
};
#define N_PROBLEMS ((int)(sizeof problems / sizeof problems[0]))

static int32_t device_index;

/* Runs problem p on ctx; fills out/scores/index/count (host images). */
static int run_problem(stem_context *ctx, const problem *p, unsigned char *out,
                       unsigned char *scores, unsigned char *index, unsigned char *count,
                       char *err, size_t errlen)
{
    stem_attention_desc d;
    stem_attention_desc_init(&d);
    d.batch = p->batch;
    d.num_q_heads = p->hq;
    d.num_kv_heads = p->hkv;
    d.q_len = d.kv_len = p->n_tokens;
    d.head_dim = p->head_dim;
    d.dtype = p->dtype;
    stem_config c;
    stem_config_init(&c);
    c.selector = p->selector;
    c.block_size = p->block;
    c.k_start = p->k_start;
    c.sink_blocks = 1;
    c.local_blocks = 2;
    stem_plan *plan = NULL;
    stem_buffer *b[8] = {0};
    const size_t sizes[8] = {p->q_bytes,    p->kv_bytes,    p->kv_bytes,  p->out_bytes,
                             p->meta_bytes, p->meta_bytes, p->count_bytes, 0};
    int ok = 0;
    stem_status st = stem_plan_create(ctx, &d, &c, &plan);
    if (st != STEM_OK)
        goto done;
    for (int i = 0; i < 7; ++i)
        if ((st = stem_buffer_create(ctx, sizes[i], &b[i])) != STEM_OK)
            goto done;
    if (p->caller_workspace) {
        stem_plan_info info;
        stem_plan_info_init(&info);
        if ((st = stem_plan_get_info(plan, &info)) != STEM_OK ||
            (st = stem_buffer_create(ctx, info.workspace_bytes, &b[7])) != STEM_OK ||
            (st = stem_plan_set_workspace(plan, b[7], 0)) != STEM_OK)
            goto done;
    }
    if ((st = stem_buffer_write(b[0], 0, p->q, p->q_bytes)) != STEM_OK ||
        (st = stem_buffer_write(b[1], 0, p->k, p->kv_bytes)) != STEM_OK ||
        (st = stem_buffer_write(b[2], 0, p->v, p->kv_bytes)) != STEM_OK)
        goto done;
    const int64_t n = p->n_blocks;
    const stem_tensor tq = stem_tensor_bhnd(b[0], 0, p->dtype, p->batch, p->hq, p->n_tokens,
                                            p->head_dim);
    const stem_tensor tk = stem_tensor_bhnd(b[1], 0, p->dtype, p->batch, p->hkv, p->n_tokens,
                                            p->head_dim);
    const stem_tensor tv = stem_tensor_bhnd(b[2], 0, p->dtype, p->batch, p->hkv, p->n_tokens,
                                            p->head_dim);
    const stem_tensor to = stem_tensor_bhnd(b[3], 0, STEM_DTYPE_F32, p->batch, p->hq,
                                            p->n_tokens, p->head_dim);
    const stem_tensor ts = stem_tensor_bhnd(b[4], 0, STEM_DTYPE_F32, p->batch, p->hq, n, n);
    const stem_tensor ti = stem_tensor_bhnd(b[5], 0, STEM_DTYPE_I32, p->batch, p->hq, n, n);
    const stem_tensor tc = stem_tensor_bhnd(b[6], 0, STEM_DTYPE_I32, p->batch, p->hq, n, 1);
    /* Workspace path first (lists kept inside), then every output. */
    if ((st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, NULL)) != STEM_OK ||
        (st = stem_prefill(plan, &tq, &tk, &tv, &to, &ts, &ti, &tc)) != STEM_OK ||
        (st = stem_synchronize(ctx)) != STEM_OK)
        goto done;
    if ((st = stem_buffer_read(b[3], 0, out, p->out_bytes)) != STEM_OK ||
        (st = stem_buffer_read(b[4], 0, scores, p->meta_bytes)) != STEM_OK ||
        (st = stem_buffer_read(b[5], 0, index, p->meta_bytes)) != STEM_OK ||
        (st = stem_buffer_read(b[6], 0, count, p->count_bytes)) != STEM_OK)
        goto done;
    ok = 1;
done:
    if (!ok)
        snprintf(err, errlen, "%s: %s: %s", p->name, stem_status_name(st), stem_last_error());
    stem_plan_destroy(plan); /* before the workspace it may use */
    for (int i = 0; i < 8; ++i)
        stem_buffer_destroy(b[i]);
    return ok;
}

typedef struct worker {
    int id;
    int failures;
    char first[512];
} worker;

static void note(worker *w, const char *fmt, const char *a, const char *b)
{
    if (w->failures++ == 0)
        snprintf(w->first, sizeof w->first, fmt, a, b);
}

static pthread_barrier_t start_line;

/* All threads fail at once, many times: each must read back exactly its
 * own message (a shared buffer would show another thread's). */
static void message_storm(worker *w)
{
    pthread_barrier_wait(&start_line);
    for (int rep = 0; rep < 50000; ++rep) {
        char mine[64];
        snprintf(mine, sizeof mine, "storm-%d-%d", w->id, rep);
        stem_selector sel;
        if (stem_selector_from_name(mine, &sel) == STEM_OK || !strstr(stem_last_error(), mine)) {
            note(w, "stem_last_error() is \"%s\", expected this thread's \"%s\"",
                 stem_last_error(), mine);
            return;
        }
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    message_storm(w);
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.device = device_index;
    cd.num_threads = 1 + w->id % 2;
    stem_context *ctx = NULL;
    if (stem_context_create(&cd, &ctx) != STEM_OK) {
        note(w, "stem_context_create: %s%s", stem_last_error(), "");
        return NULL;
    }
    char marker[64], err[512];
    snprintf(marker, sizeof marker, "thread-%d-marker", w->id);
    for (int r = 0; r < ROUNDS; ++r)
        for (int i = 0; i < N_PROBLEMS; ++i) {
            const problem *p = &problems[(i + w->id + r) % N_PROBLEMS];
            unsigned char *out = malloc(p->out_bytes), *sc = malloc(p->meta_bytes),
                          *ix = malloc(p->meta_bytes), *ct = malloc(p->count_bytes);
            if (!out || !sc || !ix || !ct) {
                note(w, "out of memory%s%s", "", "");
            } else if (!run_problem(ctx, p, out, sc, ix, ct, err, sizeof err)) {
                note(w, "%s%s", err, "");
            } else if (memcmp(out, p->out, p->out_bytes) != 0 ||
                       memcmp(sc, p->scores, p->meta_bytes) != 0 ||
                       memcmp(ix, p->index, p->meta_bytes) != 0 ||
                       memcmp(ct, p->count, p->count_bytes) != 0) {
                note(w, "%s: results differ from the serial run%s", p->name, "");
            }
            free(out);
            free(sc);
            free(ix);
            free(ct);
            /* Thread-local message: while the other threads fail with their
             * own messages, this thread must read back exactly its own. */
            for (int rep = 0; rep < 200; ++rep) {
                char mine[96];
                snprintf(mine, sizeof mine, "%s-%d-%d", marker, r, rep);
                stem_selector sel;
                if (stem_selector_from_name(mine, &sel) == STEM_OK ||
                    !strstr(stem_last_error(), mine)) {
                    note(w, "stem_last_error() is \"%s\", expected this thread's \"%s\"",
                         stem_last_error(), mine);
                    break;
                }
            }
            uint32_t count = 0;
            stem_device_info info;
            stem_device_info_init(&info);
            if (stem_device_count(&count) != STEM_OK || count == 0 ||
                stem_device_get_info((uint32_t)device_index, &info) != STEM_OK)
                note(w, "device list from a thread: %s%s", stem_last_error(), "");
        }
    stem_context_destroy(ctx);
    return NULL;
}

static int prepare(problem *p)
{
    const int64_t nq = p->batch * p->hq * p->n_tokens * p->head_dim;
    const int64_t nkv = p->batch * p->hkv * p->n_tokens * p->head_dim;
    float *q = malloc((size_t)nq * 4), *k = malloc((size_t)nkv * 4), *v = malloc((size_t)nkv * 4);
    if (!q || !k || !v)
        return 0;
    stem_synth_qkv(STEM_SYNTH_STRUCTURED, 11, p->batch, p->hq, p->hkv, p->n_tokens, p->head_dim,
                   q, k, v);
    const size_t es = stem_dtype_size(p->dtype);
    p->q_bytes = (size_t)nq * es;
    p->kv_bytes = (size_t)nkv * es;
    p->q = malloc(p->q_bytes);
    p->k = malloc(p->kv_bytes);
    p->v = malloc(p->kv_bytes);
    if (!p->q || !p->k || !p->v ||
        stem_convert(q, STEM_DTYPE_F32, p->q, p->dtype, (size_t)nq) != STEM_OK ||
        stem_convert(k, STEM_DTYPE_F32, p->k, p->dtype, (size_t)nkv) != STEM_OK ||
        stem_convert(v, STEM_DTYPE_F32, p->v, p->dtype, (size_t)nkv) != STEM_OK)
        return 0;
    free(q);
    free(k);
    free(v);
    p->n_blocks = (p->n_tokens + p->block - 1) / p->block;
    p->out_bytes = (size_t)nq * 4;
    p->meta_bytes = (size_t)(p->batch * p->hq * p->n_blocks * p->n_blocks) * 4;
    p->count_bytes = (size_t)(p->batch * p->hq * p->n_blocks) * 4;
    p->out = malloc(p->out_bytes);
    p->scores = malloc(p->meta_bytes);
    p->index = malloc(p->meta_bytes);
    p->count = malloc(p->count_bytes);
    return p->out && p->scores && p->index && p->count;
}

static int test_device(const char *name)
{
    /* Serial results, one context (1 thread: a thread count must not change them). */
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.device = device_index;
    cd.num_threads = 1;
    stem_context *ctx = NULL;
    char err[512];
    if (stem_context_create(&cd, &ctx) != STEM_OK) {
        printf("FAIL %s: stem_context_create: %s\n", name, stem_last_error());
        return 1;
    }
    for (int i = 0; i < N_PROBLEMS; ++i) {
        problem *p = &problems[i];
        if (!run_problem(ctx, p, p->out, p->scores, p->index, p->count, err, sizeof err)) {
            printf("FAIL %s: serial run: %s\n", name, err);
            stem_context_destroy(ctx);
            return 1;
        }
    }
    stem_context_destroy(ctx);

    pthread_t tid[THREADS];
    worker w[THREADS];
    memset(w, 0, sizeof w);
    pthread_barrier_init(&start_line, NULL, THREADS);
    for (int i = 0; i < THREADS; ++i) {
        w[i].id = i;
        if (pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0) {
            printf("FAIL %s: pthread_create\n", name);
            return 1;
        }
    }
    int failures = 0;
    for (int i = 0; i < THREADS; ++i) {
        pthread_join(tid[i], NULL);
        if (w[i].failures) {
            printf("FAIL %s: thread %d: %d failures, first: %s\n", name, i, w[i].failures,
                   w[i].first);
            failures++;
        }
    }
    pthread_barrier_destroy(&start_line);
    if (!failures)
        printf("ok   %s: %d threads x %d rounds x %d problems agree with the serial runs\n", name,
               THREADS, ROUNDS, N_PROBLEMS);
    return failures;
}

int main(void)
{
    for (int i = 0; i < N_PROBLEMS; ++i)
        if (!prepare(&problems[i])) {
            printf("FAIL: out of memory preparing inputs\n");
            return 2;
        }
    uint32_t count = 0;
    stem_device_count(&count);
    int failures = 0;
    for (uint32_t i = 0; i < count; ++i) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) != STEM_OK || !hardening_device_selected(&info))
            continue;
        device_index = (int32_t)i;
        char name[300];
        snprintf(name, sizeof name, "%s #%u (%s)", stem_backend_name(info.backend),
                 info.backend_index, info.name);
        failures += test_device(name);
    }
    for (int i = 0; i < N_PROBLEMS; ++i) {
        problem *p = &problems[i];
        free(p->q);
        free(p->k);
        free(p->v);
        free(p->out);
        free(p->scores);
        free(p->index);
        free(p->count);
    }
    printf("threads: %s\n", failures ? "FAILED" : "passed");
    return failures != 0;
}
