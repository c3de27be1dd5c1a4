/*
 * How the CUDA backend treats the caller's CUDA state, checked on any
 * machine through a stand-in driver (fake_cuda.c, loaded with
 * STEM_CUDA_LIBRARY) that records every context switch and synchronization:
 *  - the caller's current context is current again after every call, and
 *    libstem never replaces it (cuCtxSetCurrent), only pushes and pops;
 *  - kernels are launched with libstem's context current;
 *  - the caller's stream (native_queue) is waited on only by
 *    stem_synchronize and stem_buffer_read/write: not by plan creation,
 *    wrapping, prefill, or destroying wrapped buffers; with memory pools
 *    not by creating or destroying libstem's own buffers and plans either;
 *  - wrapped memory is never freed; misuse of stem_buffer_wrap_native is
 *    refused with a status and a message.
 * The stand-in runs no kernel: results are the real device test's job
 * (test_wrap_native, python/tests/device_check.py).
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stem.h"

typedef struct fake_cuda_stats {
    long set_current, pushes, pops, stream_syncs, stream_syncs_on;
    long mem_alloc, mem_free, mem_alloc_async, mem_free_async;
    long launches, launches_outside_ctx;
} fake_cuda_stats;

static struct {
    void (*reset)(void *);
    void (*get)(fake_cuda_stats *);
    int (*depth)(void);
    int (*ctx_create)(void **, unsigned, int);
    int (*ctx_get)(void **);
    int (*push)(void *);
    int (*pop)(void **);
    int (*stream_create)(void **, unsigned);
    int (*mem_alloc)(unsigned long long *, size_t);
    int (*mem_free)(unsigned long long);
} F;

static int g_failures;
#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                        \
            printf(__VA_ARGS__);                                                               \
            printf(" (last error: %s)\n", stem_last_error());                                  \
            g_failures++;                                                                      \
        }                                                                                      \
    } while (0)

static fake_cuda_stats stats(void)
{
    fake_cuda_stats s;
    F.get(&s);
    return s;
}

static void *current(void)
{
    void *c = NULL;
    F.ctx_get(&c);
    return c;
}

enum { HQ = 4, HKV = 2, N = 512, D = 64 };

/* One round on a context made with the caller's stream; pools = whether the
 * stand-in device reports memory pools. */
static void round_trip(int32_t device, void *mine, void *stream, int pools)
{
    const char *mode = pools ? "with memory pools" : "without memory pools";
    const int failures_before = g_failures;
    setenv("FAKE_CUDA_POOLS", pools ? "1" : "0", 1);
    F.reset(stream);
    stem_context_desc d;
    stem_context_desc_init(&d);
    d.device = device;
    d.native_queue = stream;
    stem_context *ctx = NULL;
    stem_status st = stem_context_create(&d, &ctx);
    EXPECT(st == STEM_OK, "%s: stem_context_create: %s", mode, stem_status_name(st));
    if (st != STEM_OK)
        return;
    EXPECT(current() == mine && F.depth() == 1, "%s: context creation left another context",
           mode);

    /* The caller's memory: q, k, v and out in one allocation, in the
     * primary context (as the CUDA runtime and PyTorch allocate). */
    stem_native_handles h;
    stem_native_handles_init(&h);
    EXPECT(stem_context_get_native(ctx, &h) == STEM_OK && h.context && h.queue == stream,
           "%s: native handles", mode);
    const size_t qb = (size_t)HQ * N * D * 2, kb = (size_t)HKV * N * D * 2;
    const size_t total = 2 * qb + 2 * kb;
    unsigned long long mem = 0, other_ctx_mem = 0;
    void *popped = NULL;
    F.push(h.context);
    EXPECT(F.mem_alloc(&mem, total) == 0, "cuMemAlloc");
    F.pop(&popped);
    EXPECT(F.mem_alloc(&other_ctx_mem, 256) == 0, "cuMemAlloc"); /* in the caller's own context */

    F.reset(stream);
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.num_q_heads = HQ, desc.num_kv_heads = HKV, desc.q_len = desc.kv_len = N;
    desc.head_dim = D, desc.dtype = STEM_DTYPE_BF16;
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.block_size = 64;
    stem_plan *plan = NULL;
    st = stem_plan_create(ctx, &desc, &cfg, &plan);
    EXPECT(st == STEM_OK, "%s: stem_plan_create: %s", mode, stem_status_name(st));
    stem_buffer *buf = NULL;
    st = stem_buffer_wrap_native(ctx, (void *)(uintptr_t)mem, 0, total, &buf);
    EXPECT(st == STEM_OK, "%s: stem_buffer_wrap_native: %s", mode, stem_status_name(st));
    if (plan && buf) {
        const stem_tensor tq = stem_tensor_bhnd(buf, 0, STEM_DTYPE_BF16, 1, HQ, N, D);
        const stem_tensor tk = stem_tensor_bhnd(buf, qb, STEM_DTYPE_BF16, 1, HKV, N, D);
        const stem_tensor tv = stem_tensor_bhnd(buf, qb + kb, STEM_DTYPE_BF16, 1, HKV, N, D);
        const stem_tensor to = stem_tensor_bhnd(buf, qb + 2 * kb, STEM_DTYPE_BF16, 1, HQ, N, D);
        st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, NULL);
        EXPECT(st == STEM_OK, "%s: stem_prefill: %s", mode, stem_status_name(st));
    }
    EXPECT(current() == mine && F.depth() == 1, "%s: a call left another context current",
           mode);
    stem_buffer_destroy(buf);
    fake_cuda_stats s = stats();
    EXPECT(s.stream_syncs_on == 0,
           "%s: plan creation, wrapping, prefill or destroying a wrapped buffer waited on the "
           "caller's stream (%ld times)", mode, s.stream_syncs_on);
    EXPECT(s.launches > 0 && s.launches_outside_ctx == 0,
           "%s: %ld launches, %ld without a context current", mode, s.launches,
           s.launches_outside_ctx);
    EXPECT(s.mem_free == 0 && s.mem_free_async == 0,
           "%s: memory freed while only the caller's was released", mode);

    F.reset(stream);
    stem_plan_destroy(plan); /* frees the budget, scratch and workspace: libstem's own */
    stem_buffer *own = NULL;
    EXPECT(stem_buffer_create(ctx, 4096, &own) == STEM_OK, "stem_buffer_create");
    stem_buffer_destroy(own);
    s = stats();
    if (pools)
        EXPECT(s.stream_syncs_on == 0 && s.mem_alloc == 0 && s.mem_free == 0 &&
                   s.mem_free_async > 0,
               "%s: libstem's own memory not stream-ordered (%ld waits, %ld/%ld plain "
               "alloc/free)", mode, s.stream_syncs_on, s.mem_alloc, s.mem_free);
    else
        EXPECT(s.mem_alloc_async == 0 && s.mem_free_async == 0 && s.mem_free > 0,
               "%s: stream-ordered calls on a device without pools", mode);

    /* The waits the API promises: stem_synchronize and blocking copies. */
    F.reset(stream);
    EXPECT(stem_synchronize(ctx) == STEM_OK, "stem_synchronize");
    EXPECT(stats().stream_syncs_on == 1, "%s: stem_synchronize did not wait on the stream",
           mode);

    /* Misuse: a host pointer, a range past the allocation, NULL. */
    static char host[64];
    stem_buffer *const sentinel = (stem_buffer *)(uintptr_t)0x5EED;
    stem_buffer *out = sentinel;
    st = stem_buffer_wrap_native(ctx, host, 0, sizeof host, &out);
    EXPECT(st == STEM_ERR_INVALID_ARGUMENT && out == sentinel &&
               strstr(stem_last_error(), "not a CUDA device pointer"),
           "%s: a host pointer gave %s", mode, stem_status_name(st));
    st = stem_buffer_wrap_native(ctx, (void *)(uintptr_t)mem, 16, total, &out);
    EXPECT(st == STEM_ERR_INVALID_ARGUMENT && out == sentinel &&
               strstr(stem_last_error(), "past its allocation"),
           "%s: a range past the allocation gave %s", mode, stem_status_name(st));
    st = stem_buffer_wrap_native(ctx, (void *)(uintptr_t)other_ctx_mem, 0, 256, &out);
    EXPECT(st == STEM_ERR_INVALID_ARGUMENT && out == sentinel &&
               strstr(stem_last_error(), "another CUDA context"),
           "%s: memory of another context gave %s", mode, stem_status_name(st));
    st = stem_buffer_wrap_native(ctx, NULL, 0, 64, &out);
    EXPECT(st == STEM_ERR_INVALID_ARGUMENT && out == sentinel, "%s: NULL handle", mode);

    stem_context_destroy(ctx);
    s = stats();
    EXPECT(s.set_current == 0, "%s: cuCtxSetCurrent called %ld times", mode, s.set_current);
    EXPECT(current() == mine && F.depth() == 1, "%s: destroy left another context", mode);
    F.mem_free(mem);
    F.mem_free(other_ctx_mem);
    if (g_failures == failures_before)
        printf("  %s: no waits on the caller's stream outside stem_synchronize; the caller's "
           "context current after every call\n", mode);
}

int main(void)
{
    const char *path = getenv("STEM_CUDA_LIBRARY");
    void *fake = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!fake || !dlsym(fake, "fake_cuda_reset")) {
        printf("FAIL: STEM_CUDA_LIBRARY must name the stand-in driver (fake_cuda)\n");
        return 1;
    }
    *(void **)&F.reset = dlsym(fake, "fake_cuda_reset");
    *(void **)&F.get = dlsym(fake, "fake_cuda_get_stats");
    *(void **)&F.depth = dlsym(fake, "fake_cuda_stack_depth");
    *(void **)&F.ctx_create = dlsym(fake, "cuCtxCreate_v2");
    *(void **)&F.ctx_get = dlsym(fake, "cuCtxGetCurrent");
    *(void **)&F.push = dlsym(fake, "cuCtxPushCurrent_v2");
    *(void **)&F.pop = dlsym(fake, "cuCtxPopCurrent_v2");
    *(void **)&F.stream_create = dlsym(fake, "cuStreamCreate");
    *(void **)&F.mem_alloc = dlsym(fake, "cuMemAlloc_v2");
    *(void **)&F.mem_free = dlsym(fake, "cuMemFree_v2");

    uint32_t count = 0;
    stem_device_count(&count);
    int32_t device = -1;
    for (uint32_t i = 0; i < count && device < 0; i++) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) == STEM_OK && info.backend == STEM_BACKEND_CUDA)
            device = (int32_t)i;
    }
    if (device < 0) {
        stem_backend_info bi;
        stem_backend_info_init(&bi);
        stem_backend_query(STEM_BACKEND_CUDA, &bi);
        printf("FAIL: no CUDA device through the stand-in driver: %s\n", bi.reason);
        return 1;
    }
    void *mine = NULL, *stream = NULL;
    F.ctx_create(&mine, 0, 0); /* the caller's own context, current */
    F.stream_create(&stream, 0);
    round_trip(device, mine, stream, 1);
    round_trip(device, mine, stream, 0);
    printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "PASSED", g_failures);
    return g_failures ? 1 : 0;
}
