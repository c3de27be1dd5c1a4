/* OpenCL backend: a kernel that fails to build returns STEM_ERR_KERNEL_BUILD
 * with the build log in the message, and the disk cache of program binaries
 * is written and reused. Breaks the build on purpose through the test hook
 * STEM_OPENCL_BUILD_OPTIONS (appended to the build options).
 * Exit 77 (skipped) without an OpenCL device, unless STEM_TEST_REQUIRE
 * names opencl. */
#define _POSIX_C_SOURCE 200809L
#include "stem.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int count_cache_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d))
        if (strncmp(e->d_name, "stem-opencl-", 12) == 0)
            n++;
    closedir(d);
    return n;
}

static char plan_message[4096];

static stem_status make_plan(int32_t device, const char *cache_dir)
{
    stem_context_desc cd;
    stem_context_desc_init(&cd);
    cd.device = device;
    cd.cache_dir = cache_dir;
    stem_context *ctx = NULL;
    stem_status st = stem_context_create(&cd, &ctx);
    if (st != STEM_OK) {
        snprintf(plan_message, sizeof plan_message, "%s", stem_last_error());
        return st;
    }
    stem_attention_desc ad;
    stem_attention_desc_init(&ad);
    ad.num_q_heads = 2;
    ad.num_kv_heads = 1;
    ad.q_len = ad.kv_len = 256;
    ad.head_dim = 64;
    ad.dtype = STEM_DTYPE_F16;
    stem_plan *plan = NULL;
    st = stem_plan_create(ctx, &ad, NULL, &plan);
    /* stem_context_destroy clears stem_last_error(): keep the plan's message. */
    snprintf(plan_message, sizeof plan_message, "%s", stem_last_error());
    stem_plan_destroy(plan);
    stem_context_destroy(ctx);
    return st;
}

int main(void)
{
    const char *req = getenv("STEM_TEST_REQUIRE");
    const int required = req && strstr(req, "opencl") != NULL;
    uint32_t count = 0;
    stem_device_count(&count);
    int32_t device = -1;
    for (uint32_t i = 0; i < count && device < 0; i++) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) == STEM_OK && info.backend == STEM_BACKEND_OPENCL)
            device = (int32_t)i;
    }
    if (device < 0) {
        stem_backend_info bi;
        stem_backend_info_init(&bi);
        stem_backend_query(STEM_BACKEND_OPENCL, &bi);
        printf("opencl: no device (%s)%s\n", bi.reason, required ? "" : ": skipped");
        return required ? 1 : 77;
    }

    /* 1. A broken build: the status and the compiler's own words. */
    setenv("STEM_OPENCL_BUILD_OPTIONS", "-DSTEM_FORCE_BUILD_ERROR", 1);
    stem_status st = make_plan(device, NULL);
    unsetenv("STEM_OPENCL_BUILD_OPTIONS");
    CHECK(st == STEM_ERR_KERNEL_BUILD, "broken build gave %s, want STEM_ERR_KERNEL_BUILD",
          stem_status_name(st));
    CHECK(strstr(plan_message, "STEM_FORCE_BUILD_ERROR") != NULL &&
              strstr(plan_message, "build log") != NULL,
          "message lacks the build log: %s", plan_message);

    /* 2. An unknown option is a build failure too, not a crash. */
    setenv("STEM_OPENCL_BUILD_OPTIONS", "-no-such-option-for-stem", 1);
    st = make_plan(device, NULL);
    unsetenv("STEM_OPENCL_BUILD_OPTIONS");
    CHECK(st == STEM_ERR_KERNEL_BUILD, "bad option gave %s (%s)", stem_status_name(st),
          plan_message);

    /* 3. The disk cache: written by the first context, read by the second. */
    char dir[] = "/tmp/stem-ocl-cache-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
    st = make_plan(device, dir);
    CHECK(st == STEM_OK, "plan with cache: %s", plan_message);
    const int files = count_cache_files(dir);
    CHECK(files == 1, "%d cache files after one build, want 1", files);
    st = make_plan(device, dir);
    CHECK(st == STEM_OK, "plan from cache: %s", plan_message);
    CHECK(count_cache_files(dir) == files, "second build did not reuse the cache");
    DIR *d = opendir(dir);
    for (struct dirent *e = d ? readdir(d) : NULL; e; e = readdir(d))
        if (e->d_name[0] != '.') {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            remove(path);
        }
    if (d)
        closedir(d);
    rmdir(dir);

    printf("opencl build-error and cache checks: %s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
