/* test_vk_async: Vulkan stages are queued (they return before the device is
 * done); what the host does next must still see and leave the right data.
 *
 * On every Vulkan device, one context queues, without stem_synchronize:
 *  1. prefill A on Q1, then stem_buffer_write of Q2 into the same buffer
 *     (the write must wait for A's reads), then prefill B on Q2 into another
 *     output, then a third prefill whose plan and output buffer are destroyed
 *     at once (their memory must outlive the queued work);
 * and outputs A and B are read (stem_buffer_read waits) and must equal, bit
 * for bit, runs of the same problems on a second context whose every stage
 * waits (STEM_VULKAN_SYNC=1, read at context creation).
 * No Vulkan device: skipped (77), or failed when STEM_TEST_REQUIRE lists vulkan. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stem.h"

#define SKIP 77
enum { B = 1, HQ = 4, HKV = 2, N = 640, D = 64 };
#define QN ((size_t)B * HQ * N * D)
#define KN ((size_t)B * HKV * N * D)

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("FAIL: " __VA_ARGS__);                                                      \
            printf(" (%s)\n", stem_last_error());                                              \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

static stem_plan *plan_for(stem_context *ctx)
{
    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = B;
    desc.num_q_heads = HQ;
    desc.num_kv_heads = HKV;
    desc.q_len = desc.kv_len = N;
    desc.head_dim = D;
    desc.dtype = STEM_DTYPE_F32;
    stem_config cfg;
    stem_config_init(&cfg);
    cfg.block_size = 64;
    stem_plan *plan = NULL;
    return stem_plan_create(ctx, &desc, &cfg, &plan) == STEM_OK ? plan : NULL;
}

/* Prefill of plan on (q, k, v) buffers into out (lists in the plan's workspace). */
static stem_status prefill(stem_plan *plan, stem_buffer *q, stem_buffer *k, stem_buffer *v,
                           stem_buffer *out)
{
    const stem_tensor tq = stem_tensor_bhnd(q, 0, STEM_DTYPE_F32, B, HQ, N, D);
    const stem_tensor tk = stem_tensor_bhnd(k, 0, STEM_DTYPE_F32, B, HKV, N, D);
    const stem_tensor tv = stem_tensor_bhnd(v, 0, STEM_DTYPE_F32, B, HKV, N, D);
    const stem_tensor to = stem_tensor_bhnd(out, 0, STEM_DTYPE_F32, B, HQ, N, D);
    return stem_prefill(plan, &tq, &tk, &tv, &to, NULL, NULL, NULL);
}

/* Outputs of Q1 and Q2 on ctx, queued as described above (queued = 1) or one
 * problem at a time. */
static int run(stem_context *ctx, const float *q1, const float *q2, const float *k,
               const float *v, float *o1, float *o2, int queued)
{
    int ok = 0;
    stem_buffer *bq = NULL, *bk = NULL, *bv = NULL, *b1 = NULL, *b2 = NULL, *b3 = NULL;
    stem_plan *plan = plan_for(ctx), *plan3 = plan_for(ctx);
    CHECK(plan && plan3, "stem_plan_create");
    CHECK(stem_buffer_create(ctx, QN * 4, &bq) == STEM_OK &&
              stem_buffer_create(ctx, KN * 4, &bk) == STEM_OK &&
              stem_buffer_create(ctx, KN * 4, &bv) == STEM_OK &&
              stem_buffer_create(ctx, QN * 4, &b1) == STEM_OK &&
              stem_buffer_create(ctx, QN * 4, &b2) == STEM_OK &&
              stem_buffer_create(ctx, QN * 4, &b3) == STEM_OK,
          "stem_buffer_create");
    CHECK(stem_buffer_write(bq, 0, q1, QN * 4) == STEM_OK &&
              stem_buffer_write(bk, 0, k, KN * 4) == STEM_OK &&
              stem_buffer_write(bv, 0, v, KN * 4) == STEM_OK,
          "stem_buffer_write");
    CHECK(prefill(plan, bq, bk, bv, b1) == STEM_OK, "prefill A");
    if (!queued)
        CHECK(stem_buffer_read(b1, 0, o1, QN * 4) == STEM_OK, "stem_buffer_read A");
    CHECK(stem_buffer_write(bq, 0, q2, QN * 4) == STEM_OK, "stem_buffer_write Q2");
    CHECK(prefill(plan, bq, bk, bv, b2) == STEM_OK, "prefill B");
    CHECK(prefill(plan3, bq, bk, bv, b3) == STEM_OK, "prefill C");
    stem_plan_destroy(plan3); /* with C still queued */
    plan3 = NULL;
    stem_buffer_destroy(b3);
    b3 = NULL;
    if (queued)
        CHECK(stem_buffer_read(b1, 0, o1, QN * 4) == STEM_OK, "stem_buffer_read A");
    CHECK(stem_buffer_read(b2, 0, o2, QN * 4) == STEM_OK, "stem_buffer_read B");
    CHECK(stem_synchronize(ctx) == STEM_OK, "stem_synchronize");
    ok = 1;
done:
    stem_plan_destroy(plan);
    stem_plan_destroy(plan3);
    stem_buffer_destroy(bq), stem_buffer_destroy(bk), stem_buffer_destroy(bv);
    stem_buffer_destroy(b1), stem_buffer_destroy(b2), stem_buffer_destroy(b3);
    return ok;
}

int main(void)
{
    const char *req = getenv("STEM_TEST_REQUIRE"), *only = getenv("STEM_TEST_ONLY");
    if (only && *only && !strstr(only, "vulkan")) {
        printf("vulkan not in STEM_TEST_ONLY: skipped\n");
        return SKIP;
    }
    float *q1 = malloc(QN * 4), *q2 = malloc(QN * 4), *k = malloc(KN * 4), *v = malloc(KN * 4);
    float *a1 = malloc(QN * 4), *a2 = malloc(QN * 4), *s1 = malloc(QN * 4), *s2 = malloc(QN * 4);
    if (!q1 || !q2 || !k || !v || !a1 || !a2 || !s1 || !s2) {
        printf("FAIL: out of host memory\n");
        return 1;
    }
    for (size_t i = 0; i < QN; ++i) {
        q1[i] = 2.0f * frand();
        q2[i] = 2.0f * frand();
    }
    for (size_t i = 0; i < KN; ++i) {
        k[i] = frand();
        v[i] = frand();
    }
    uint32_t count = 0;
    stem_device_count(&count);
    int ran = 0, failed = 0;
    for (uint32_t i = 0; i < count; ++i) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) != STEM_OK || info.backend != STEM_BACKEND_VULKAN)
            continue;
        stem_context_desc cd;
        stem_context_desc_init(&cd);
        cd.device = (int32_t)i;
        stem_context *ctx = NULL, *sync = NULL;
        unsetenv("STEM_VULKAN_SYNC");
        const int made = stem_context_create(&cd, &ctx) == STEM_OK;
        setenv("STEM_VULKAN_SYNC", "1", 1);
        const int made_sync = made && stem_context_create(&cd, &sync) == STEM_OK;
        unsetenv("STEM_VULKAN_SYNC");
        if (!made || !made_sync) {
            printf("FAIL: stem_context_create on %s: %s\n", info.name, stem_last_error());
            failed++;
            stem_context_destroy(ctx);
            continue;
        }
        ran++;
        memset(a1, 0xFF, QN * 4), memset(a2, 0xFF, QN * 4);
        memset(s1, 0, QN * 4), memset(s2, 0, QN * 4);
        int ok = run(ctx, q1, q2, k, v, a1, a2, 1) && run(sync, q1, q2, k, v, s1, s2, 0);
        if (ok && (memcmp(a1, s1, QN * 4) != 0 || memcmp(a2, s2, QN * 4) != 0)) {
            printf("FAIL: %s: queued outputs differ from waited ones (A %s, B %s)\n", info.name,
                   memcmp(a1, s1, QN * 4) ? "differs" : "equal",
                   memcmp(a2, s2, QN * 4) ? "differs" : "equal");
            ok = 0;
        }
        if (ok && memcmp(s1, s2, QN * 4) == 0) {
            printf("FAIL: %s: outputs for two different Q are equal\n", info.name);
            ok = 0;
        }
        printf("%s vulkan #%u (%s): queued prefills, a write between them and a destroy with "
               "work queued\n",
               ok ? "ok  " : "FAIL", info.backend_index, info.name);
        failed += !ok;
        stem_context_destroy(ctx);
        stem_context_destroy(sync);
    }
    free(q1), free(q2), free(k), free(v), free(a1), free(a2), free(s1), free(s2);
    if (ran == 0 && failed == 0) {
        const int need = req && strstr(req, "vulkan");
        printf("no Vulkan device%s\n", need ? " (required by STEM_TEST_REQUIRE): FAIL" : ": skipped");
        return need ? 1 : SKIP;
    }
    return failed ? 1 : 0;
}
