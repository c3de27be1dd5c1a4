/* CUDA backend: ops table, probe, contexts (modules, stream), buffers.
 *
 * Environment:
 *   STEM_CUDA_LIBRARY=path          driver library to dlopen (default libcuda.so.1)
 *   STEM_CUDA_SYNC_ALLOC=1          buffers with cuMemAlloc/cuMemFree (waits) instead of
 *                                   the device's stream-ordered pool
 *   STEM_CUDA_ATTN=sm90|sm90s|sm90p|mma|generic  that family of attention kernels first
 *                                   (cuda_variants.c); plans it cannot run take the defaults
 *   STEM_CUDA_GENERIC_ATTENTION=1   same as STEM_CUDA_ATTN=generic
 *   STEM_CUDA_SCORE_GEMM=tc|f32     the score GEMM on tensor cores (3xTF32 mma.sync) or
 *                                   f32 CUDA cores for every dtype (default: tensor
 *                                   cores for f16 / bf16 inputs, f32 cores for f32)
 *   STEM_CUDA_SCORE_SPLIT=0         no split-K score GEMM (one CTA sums all of K)
 *   STEM_CUDA_SELECT=cta            top-k selection with one 256-thread CTA per row
 *                                   (default: one warp per row)
 *   STEM_CUDA_SCORE_FUSE=0|8        0: phase sums, value maxima and value bonus as three
 *                                   kernels; 8: the fused kernel (stem_k_score_prep8)
 *                                   with 8-row load batches; default: stem_k_score_prep
 *                                   (4-row batches). Scores bitwise the same either way
 *   STEM_CUDA_PDL=1                 programmatic dependent launch of the score GEMM,
 *                                   segment sums and selection (compute capability 9.0) */
#include "cuda_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Generated from the .cu files at build time (backend.cmake). */
#define STEM_CUDA_FATBIN_DECL(id, file, arch) extern const unsigned char stem_cuda_fatbin_##file[];
STEM_CUDA_MODULES(STEM_CUDA_FATBIN_DECL)
#undef STEM_CUDA_FATBIN_DECL

static const struct {
    const unsigned char *image;
    int arch; /* 0: any device; 90: compute capability 9.0 only */
} module_table[STEM_CUDA_MOD_COUNT] = {
#define STEM_CUDA_MODULE_ROW(id, file, arch) {stem_cuda_fatbin_##file, arch},
    STEM_CUDA_MODULES(STEM_CUDA_MODULE_ROW)
#undef STEM_CUDA_MODULE_ROW
};

static const struct {
    int mod;
    const char *name;
} kernel_table[STEM_CUDA_FN_COUNT] = {
#define STEM_CUDA_KERNEL_ROW(id, mod, sym) {STEM_CUDA_MOD_##mod, sym},
    STEM_CUDA_KERNELS(STEM_CUDA_KERNEL_ROW)
#undef STEM_CUDA_KERNEL_ROW
};

/* The kernels are built for sm_80 and sm_90a (SASS) plus compute_90 PTX. */
#define MIN_CC_MAJOR 8

stem_status stem_cuda_fail(CUresult r, const char *what)
{
    if (r == STEM_CUDA_ERROR_OUT_OF_MEMORY)
        return stem_set_error(STEM_ERR_DEVICE_OUT_OF_MEMORY, "cuda: %s: %s", what,
                              stem_cuda_error_name(r));
    return stem_set_error(STEM_ERR_BACKEND_API, "cuda: %s failed: %s", what,
                          stem_cuda_error_name(r));
}

/* Every entry of the ops table below runs between push_ctx and pop_ctx,
 * so the caller's current context is back in place when a call returns
 * (cuCtxSetCurrent would replace it for good). Inside, the context is
 * already current: entering is a no-op kept where the stages state it. */
stem_status stem_cuda_enter(stem_cuda_context *c, const char *what)
{
    (void)c, (void)what;
    return STEM_OK;
}

CUresult stem_cuda_mem_alloc(stem_cuda_context *c, CUdeviceptr *p, size_t bytes)
{
    if (!bytes)
        bytes = 1;
    return c->stream_alloc ? c->api->cuMemAllocAsync(p, bytes, c->stream)
                           : c->api->cuMemAlloc(p, bytes);
}

void stem_cuda_mem_free(stem_cuda_context *c, CUdeviceptr p)
{
    if (!p)
        return;
    if (c->stream_alloc) {
        c->api->cuMemFreeAsync(p, c->stream);
    } else {
        c->api->cuStreamSynchronize(c->stream); /* queued work may still use it */
        c->api->cuMemFree(p);
    }
}

static stem_status push_ctx(stem_cuda_context *c, const char *what)
{
    const CUresult r = c->api->cuCtxPushCurrent(c->cu);
    return r ? stem_cuda_fail(r, what) : STEM_OK;
}

static void pop_ctx(stem_cuda_context *c)
{
    CUcontext popped = NULL;
    c->api->cuCtxPopCurrent(&popped);
}

stem_status stem_cuda_launch(stem_cuda_context *c, CUfunction fn, unsigned gx, unsigned gy,
                             unsigned gz, unsigned threads, unsigned shmem, void **params,
                             const char *what)
{
    if (gx == 0 || gy == 0 || gz == 0)
        return STEM_OK;
    /* cuLaunchKernelEx (resolved when present) is for launches that need
     * attributes (clusters); none does yet. */
    const CUresult r =
        c->api->cuLaunchKernel(fn, gx, gy, gz, threads, 1, 1, shmem, c->stream, params, NULL);
    return r ? stem_cuda_fail(r, what) : STEM_OK;
}

/* CUlaunchAttribute (cuda.h): id, padding to 8 bytes, a 64-byte value union. */
typedef struct stem_cu_launch_attr {
    int id;
    char pad_[4];
    union {
        char bytes[64];
        int allowed; /* programmaticStreamSerializationAllowed */
        unsigned long long align_;
    } value;
} stem_cu_launch_attr;
_Static_assert(sizeof(stem_cu_launch_attr) == 72, "CUlaunchAttribute layout");
#define STEM_CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION 6

stem_status stem_cuda_launch_pdl(stem_cuda_context *c, CUfunction fn, unsigned gx, unsigned gy,
                                 unsigned gz, unsigned threads, unsigned shmem, void **params,
                                 const char *what)
{
    if (!c->pdl)
        return stem_cuda_launch(c, fn, gx, gy, gz, threads, shmem, params, what);
    if (gx == 0 || gy == 0 || gz == 0)
        return STEM_OK;
    stem_cu_launch_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.id = STEM_CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.allowed = 1;
    stem_cu_launch_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.grid[0] = gx, cfg.grid[1] = gy, cfg.grid[2] = gz;
    cfg.block[0] = threads, cfg.block[1] = 1, cfg.block[2] = 1;
    cfg.shared_bytes = shmem;
    cfg.stream = c->stream;
    cfg.attrs = &attr;
    cfg.num_attrs = 1;
    const CUresult r = c->api->cuLaunchKernelEx(&cfg, fn, params, NULL);
    return r ? stem_cuda_fail(r, what) : STEM_OK;
}

/* Ordinals of the usable devices (compute capability >= 8.0), in driver order. */
static int usable_devices(const stem_cuda_api *api, int *ordinals, int max, char *why,
                          size_t why_size)
{
    int count = 0, found = 0;
    const CUresult r = api->cuDeviceGetCount(&count);
    if (r) {
        snprintf(why, why_size, "cuDeviceGetCount failed: %s", stem_cuda_error_name(r));
        return 0;
    }
    int old_major = -1, old_minor = -1;
    for (int i = 0; i < count && found < max; i++) {
        CUdevice dev;
        int major = 0, minor = 0;
        if (api->cuDeviceGet(&dev, i) ||
            api->cuDeviceGetAttribute(&major, STEM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) ||
            api->cuDeviceGetAttribute(&minor, STEM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
            continue;
        if (major < MIN_CC_MAJOR) {
            old_major = major;
            old_minor = minor;
            continue;
        }
        ordinals[found++] = i;
    }
    if (found == 0) {
        if (count == 0)
            snprintf(why, why_size, "the CUDA driver reports no device");
        else
            snprintf(why, why_size,
                     "no CUDA device of compute capability 8.0 or newer (found sm_%d%d)",
                     old_major, old_minor);
    }
    return found;
}

static void describe_device(const stem_cuda_api *api, int ordinal, uint32_t index,
                            stem_device_info *dev)
{
    CUdevice d;
    stem_device_info_init(dev);
    dev->backend = STEM_BACKEND_CUDA;
    dev->backend_index = index;
    dev->is_gpu = 1;
    if (api->cuDeviceGet(&d, ordinal))
        return;
    if (api->cuDeviceGetName(dev->name, (int)sizeof dev->name, d))
        snprintf(dev->name, sizeof dev->name, "CUDA device %d", ordinal);
    size_t mem = 0;
    if (!api->cuDeviceTotalMem(&mem, d))
        dev->memory_bytes = mem;
    int sms = 0, major = 0, minor = 0, ver = 0;
    api->cuDeviceGetAttribute(&sms, STEM_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d);
    api->cuDeviceGetAttribute(&major, STEM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d);
    api->cuDeviceGetAttribute(&minor, STEM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d);
    api->cuDriverGetVersion(&ver);
    dev->compute_units = sms > 0 ? (uint32_t)sms : 0;
    snprintf(dev->detail, sizeof dev->detail, "sm_%d%d, %d SMs, driver %d.%d, ordinal %d", major,
             minor, sms, ver / 1000, (ver % 1000) / 10, ordinal);
}

static void cuda_probe(stem_probe_result *out)
{
    memset(out, 0, sizeof *out);
    const stem_cuda_api *api = stem_cuda_api_get(out->reason, sizeof out->reason);
    if (!api)
        return;
    int ordinals[STEM_MAX_DEVICES_PER_BACKEND];
    const int n = usable_devices(api, ordinals, STEM_MAX_DEVICES_PER_BACKEND, out->reason,
                                 sizeof out->reason);
    for (int i = 0; i < n; i++)
        describe_device(api, ordinals[i], (uint32_t)i, &out->devices[i]);
    out->device_count = (uint32_t)n;
}

/* Called with c->cu pushed (when there is one); pops it. */
static void context_release(stem_cuda_context *c)
{
    const stem_cuda_api *api = c->api;
    if (c->cu) {
        if (c->stream && c->own_stream) {
            api->cuStreamSynchronize(c->stream);
            api->cuStreamDestroy(c->stream);
        }
        for (int m = 0; m < STEM_CUDA_MOD_COUNT; m++)
            if (c->mod[m])
                api->cuModuleUnload(c->mod[m]);
        pop_ctx(c);
        api->cuDevicePrimaryCtxRelease(c->dev);
    }
    free(c);
}

static stem_status cuda_context_init(stem_context *ctx, uint32_t backend_index)
{
    char why[256] = "";
    const stem_cuda_api *api = stem_cuda_api_get(why, sizeof why);
    if (!api)
        return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE, "cuda: %s", why);
    int ordinals[STEM_MAX_DEVICES_PER_BACKEND];
    const int n = usable_devices(api, ordinals, STEM_MAX_DEVICES_PER_BACKEND, why, sizeof why);
    if ((int)backend_index >= n)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "cuda: device %u of %d", backend_index, n);
    stem_cuda_context *c = calloc(1, sizeof *c);
    if (!c)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "cuda context: out of host memory");
    c->api = api;
    CUresult r = api->cuDeviceGet(&c->dev, ordinals[backend_index]);
    stem_status st = STEM_OK;
    if (r || (r = api->cuDevicePrimaryCtxRetain(&c->cu, c->dev))) {
        c->cu = NULL;
        st = stem_cuda_fail(r, "cuDevicePrimaryCtxRetain");
        goto fail;
    }
    if ((r = api->cuCtxPushCurrent(c->cu))) {
        api->cuDevicePrimaryCtxRelease(c->dev);
        c->cu = NULL;
        st = stem_cuda_fail(r, "cuCtxPushCurrent");
        goto fail;
    }
    api->cuDeviceGetAttribute(&c->cc_major, STEM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, c->dev);
    api->cuDeviceGetAttribute(&c->cc_minor, STEM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, c->dev);
    api->cuDeviceGetAttribute(&c->sm_count, STEM_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, c->dev);
    api->cuDeviceGetAttribute(&c->smem_optin,
                              STEM_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, c->dev);
    if (ctx->desc.native_queue) {
        c->stream = (CUstream)ctx->desc.native_queue;
    } else {
        if ((r = api->cuStreamCreate(&c->stream, STEM_CU_STREAM_NON_BLOCKING))) {
            c->stream = NULL;
            st = stem_cuda_fail(r, "cuStreamCreate");
            goto fail;
        }
        c->own_stream = 1;
    }
    const int cc = c->cc_major * 10 + c->cc_minor;
    for (int m = 0; m < STEM_CUDA_MOD_COUNT; m++) {
        if (module_table[m].arch && module_table[m].arch != cc)
            continue; /* an arch-specific image (sm_90a) runs on that arch only */
        if ((r = api->cuModuleLoadData(&c->mod[m], module_table[m].image))) {
            c->mod[m] = NULL;
            if (module_table[m].arch)
                continue; /* its variants stay off; the portable kernels remain */
            st = stem_set_error(STEM_ERR_KERNEL_BUILD,
                                "cuda: loading kernel image %d for sm_%d%d failed: %s", m,
                                c->cc_major, c->cc_minor, stem_cuda_error_name(r));
            goto fail;
        }
    }
    for (int f = 0; f < STEM_CUDA_FN_COUNT; f++)
        if ((r = api->cuModuleGetFunction(&c->fn[f], c->mod[kernel_table[f].mod],
                                          kernel_table[f].name))) {
            st = stem_set_error(STEM_ERR_KERNEL_BUILD, "cuda: kernel %s missing: %s",
                                kernel_table[f].name, stem_cuda_error_name(r));
            goto fail;
        }
    /* Attention variants of the loaded images; large dynamic shared memory
     * needs an opt-in per kernel; a variant the device cannot hold stays off. */
    for (int i = 0; i < stem_cuda_attn_variant_count; i++) {
        const stem_cuda_attn_variant *var = &stem_cuda_attn_variants[i];
        if (!c->mod[var->module])
            continue;
        if ((r = api->cuModuleGetFunction(&c->attn_fn[i], c->mod[var->module], var->symbol))) {
            c->attn_fn[i] = NULL;
            if (module_table[var->module].arch)
                continue;
            st = stem_set_error(STEM_ERR_KERNEL_BUILD, "cuda: kernel %s missing: %s",
                                var->symbol, stem_cuda_error_name(r));
            goto fail;
        }
        const unsigned smem = var->smem ? var->smem(var->head_dim) : 0;
        if (smem > 48 * 1024 &&
            ((int)smem > c->smem_optin ||
             api->cuFuncSetAttribute(c->attn_fn[i],
                                     STEM_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                     (int)smem)))
            c->attn_fn[i] = NULL;
    }
    if (c->smem_optin > 1024 &&
        (r = api->cuFuncSetAttribute(c->fn[STEM_CUDA_FN_XATTN_SCORES],
                                     STEM_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                     c->smem_optin - 1024))) {
        st = stem_cuda_fail(r, "cuFuncSetAttribute(xattention shared memory)");
        goto fail;
    }
    /* Stream-ordered allocation where the device has memory pools: buffer
     * creation and destruction are then queued on the stream instead of
     * waiting for the device (STEM_CUDA_SYNC_ALLOC=1: cuMemAlloc/cuMemFree). */
    int pools = 0;
    api->cuDeviceGetAttribute(&pools, STEM_CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, c->dev);
    const char *sync_alloc = getenv("STEM_CUDA_SYNC_ALLOC");
    c->stream_alloc = pools == 1 && api->cuMemAllocAsync && api->cuMemFreeAsync &&
                      !(sync_alloc && *sync_alloc && strcmp(sync_alloc, "0") != 0);
    const char *sg = getenv("STEM_CUDA_SCORE_GEMM");
    c->score_tc = !sg || !*sg ? 0 : !strcmp(sg, "tc") ? 1 : !strcmp(sg, "f32") ? -1 : 0;
    const char *split = getenv("STEM_CUDA_SCORE_SPLIT"), *sel = getenv("STEM_CUDA_SELECT");
    c->score_split = !(split && !strcmp(split, "0"));
    c->select_cta = sel && !strcmp(sel, "cta");
    const char *fuse = getenv("STEM_CUDA_SCORE_FUSE");
    c->score_fuse = !fuse || !*fuse ? 1 : !strcmp(fuse, "0") ? 0 : !strcmp(fuse, "8") ? 8 : 1;
    const char *pdl = getenv("STEM_CUDA_PDL");
    c->pdl = pdl && !strcmp(pdl, "1") && c->cc_major >= 9 && api->cuLaunchKernelEx;
    const char *fam = getenv("STEM_CUDA_ATTN");
    const char *gen = getenv("STEM_CUDA_GENERIC_ATTENTION");
    for (int i = 0; fam && i < stem_cuda_attn_variant_count; i++)
        if (!strcmp(fam, stem_cuda_attn_variants[i].family))
            c->attn_family = stem_cuda_attn_variants[i].family;
    if (gen && *gen && strcmp(gen, "0") != 0)
        c->attn_family = "generic";
    /* STEM_CUDA_PERSISTENT=1: the TMA variants run as their persistent
     * twins (<symbol>_persist), where the image has them and the device
     * holds their shared memory. */
    const char *pers = getenv("STEM_CUDA_PERSISTENT");
    c->persistent = pers && *pers && strcmp(pers, "0") != 0 ? (strcmp(pers, "2") == 0 ? 2 : 1) : 0;
    for (int i = 0; c->persistent && i < stem_cuda_attn_variant_count; i++) {
        const stem_cuda_attn_variant *var = &stem_cuda_attn_variants[i];
        char name[128];
        c->attn_persist_fn[i] = NULL;
        if (!c->attn_fn[i] || !var->tma || !var->smem ||
            snprintf(name, sizeof name, "%s_persist", var->symbol) >= (int)sizeof name)
            continue;
        const unsigned smem = stem_cuda_persist_smem(var, var->head_dim);
        CUfunction f = NULL;
        if (api->cuModuleGetFunction(&f, c->mod[var->module], name) == 0 &&
            (int)smem <= c->smem_optin &&
            api->cuFuncSetAttribute(f, STEM_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                    (int)smem) == 0)
            c->attn_persist_fn[i] = f;
    }
    pop_ctx(c);
    ctx->impl = c;
    return STEM_OK;
fail:
    context_release(c);
    return st;
}

static void cuda_context_fini(stem_context *ctx)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    if (c && push_ctx(c, "stem_context_destroy") != STEM_OK)
        c->cu = NULL; /* cannot enter it: leak the driver objects rather than touch them */
    if (c)
        context_release(c);
    ctx->impl = NULL;
}

static stem_status cuda_buffer_alloc(stem_context *ctx, stem_buffer *buf, size_t bytes)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    CUdeviceptr p = 0;
    CUresult r = stem_cuda_mem_alloc(c, &p, bytes);
    if (r)
        return r == STEM_CUDA_ERROR_OUT_OF_MEMORY
                   ? stem_set_error(STEM_ERR_DEVICE_OUT_OF_MEMORY,
                                    "cuda buffer of %zu bytes: out of device memory", bytes)
                   : stem_cuda_fail(r, "cuMemAlloc");
    /* Zeroed so a fresh buffer reads the same on every run and backend;
     * queued, not waited for: all later use is ordered on the same stream. */
    if ((r = c->api->cuMemsetD8Async(p, 0, bytes, c->stream))) {
        stem_cuda_mem_free(c, p);
        return stem_cuda_fail(r, "clearing a new buffer");
    }
    buf->impl = (void *)(uintptr_t)p;
    buf->host = NULL;
    return STEM_OK;
}

static stem_status cuda_buffer_wrap_host(stem_context *ctx, stem_buffer *buf, void *host,
                                         size_t bytes)
{
    (void)ctx, (void)buf, (void)host, (void)bytes;
    return stem_set_error(STEM_ERR_UNSUPPORTED,
                          "cuda backend does not wrap host memory; use stem_buffer_create");
}

/* The caller's device memory, in place. The pointer must belong to this
 * context's device; the range is checked against its allocation where the
 * driver reports one. */
static stem_status cuda_buffer_wrap_native(stem_context *ctx, stem_buffer *buf, void *handle,
                                           size_t offset, size_t bytes)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    const CUdeviceptr p = (CUdeviceptr)(uintptr_t)handle;
    int ordinal = -1;
    CUresult r = c->api->cuPointerGetAttribute(&ordinal, STEM_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                               p);
    if (r)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_buffer_wrap_native: handle is not a CUDA device pointer (%s)",
                              stem_cuda_error_name(r));
    if (ordinal != (int)c->dev)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_buffer_wrap_native: the pointer lives on CUDA device %d, the "
                              "context on device %d",
                              ordinal, (int)c->dev);
    /* Memory of another context of the device cannot be used from the
     * primary one; pool and VMM allocations report no context. */
    CUcontext owner = NULL;
    if (!c->api->cuPointerGetAttribute(&owner, STEM_CU_POINTER_ATTRIBUTE_CONTEXT, p) && owner &&
        owner != c->cu)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_buffer_wrap_native: the pointer was allocated in another CUDA "
                              "context than the device's primary context, which libstem runs in "
                              "(the CUDA runtime, PyTorch and CuPy allocate there)");
    CUdeviceptr start = 0;
    size_t size = 0;
    if (!c->api->cuPointerGetAttribute(&start, STEM_CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, p) &&
        !c->api->cuPointerGetAttribute(&size, STEM_CU_POINTER_ATTRIBUTE_RANGE_SIZE, p) &&
        size > 0) {
        const unsigned long long first = (unsigned long long)(p - start);
        if (first > size || offset > size - first || bytes > size - first - offset)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "stem_buffer_wrap_native: [%zu, %zu + %zu) from the pointer "
                                  "runs past its allocation (%zu bytes from %llu in)",
                                  offset, offset, bytes, size, first);
    }
    buf->impl = (void *)(uintptr_t)(p + offset);
    buf->host = NULL;
    buf->owned = 0;
    return STEM_OK;
}

static void cuda_buffer_free(stem_context *ctx, stem_buffer *buf)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    /* Wrapped memory is the caller's: nothing to free, nothing to wait for.
     * Ours may still be read by queued work: freed in stream order, or
     * (without memory pools) after waiting for the stream. */
    if (buf->impl && buf->owned)
        stem_cuda_mem_free(c, (CUdeviceptr)(uintptr_t)buf->impl);
    buf->impl = NULL;
}

static void cuda_context_native(const stem_context *ctx, stem_native_handles *h)
{
    const stem_cuda_context *c = stem_cuda_ctx(ctx);
    h->context = c->cu;
    h->queue = c->stream;
    h->device = (void *)(intptr_t)c->dev;
}

static stem_status cuda_buffer_write(stem_context *ctx, stem_buffer *buf, size_t offset,
                                     const void *src, size_t bytes)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    stem_status st = stem_cuda_enter(c, "stem_buffer_write");
    if (st != STEM_OK || bytes == 0)
        return st;
    const CUdeviceptr dst = (CUdeviceptr)(uintptr_t)buf->impl + offset;
    CUresult r = c->api->cuMemcpyHtoDAsync(dst, src, bytes, c->stream);
    if (!r)
        r = c->api->cuStreamSynchronize(c->stream);
    return r ? stem_cuda_fail(r, "stem_buffer_write") : STEM_OK;
}

static stem_status cuda_buffer_read(stem_context *ctx, stem_buffer *buf, size_t offset, void *dst,
                                    size_t bytes)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    stem_status st = stem_cuda_enter(c, "stem_buffer_read");
    if (st != STEM_OK || bytes == 0)
        return st;
    const CUdeviceptr src = (CUdeviceptr)(uintptr_t)buf->impl + offset;
    CUresult r = c->api->cuMemcpyDtoHAsync(dst, src, bytes, c->stream);
    if (!r)
        r = c->api->cuStreamSynchronize(c->stream);
    return r ? stem_cuda_fail(r, "stem_buffer_read") : STEM_OK;
}

/* The largest unit (16, 8, 4 or 1 bytes) dividing every address, size and
 * pitch of the gather, so the kernel moves whole vectors. */
static int copy_unit(CUdeviceptr s0, CUdeviceptr d0, const stem_copy_rect *rects, size_t count)
{
    uint64_t bits = (uint64_t)s0 | (uint64_t)d0;
    for (size_t i = 0; i < count; ++i) {
        const stem_copy_rect *r = &rects[i];
        bits |= r->src_off | r->dst_off | r->row_bytes;
        if (r->rows > 1)
            bits |= r->src_pitch | r->dst_pitch;
    }
    return !(bits & 15) ? 16 : !(bits & 7) ? 8 : !(bits & 3) ? 4 : 1;
}

/* The driver-copy form of the gather (one 2-D copy per rect; single rows
 * and pitches narrower than a row, one linear copy per row), kept for
 * STEM_CUDA_GATHER=memcpy: a launch per page, slow for small pages. */
static stem_status copy_rects_driver(stem_cuda_context *c, CUdeviceptr s0, CUdeviceptr d0,
                                     const stem_copy_rect *rects, size_t count)
{
    for (size_t i = 0; i < count; ++i) {
        const stem_copy_rect *r = &rects[i];
        CUresult e = 0;
        if (r->rows == 0 || r->row_bytes == 0)
            continue;
        if (r->rows > 1 && r->src_pitch >= r->row_bytes && r->dst_pitch >= r->row_bytes) {
            stem_cu_memcpy2d m;
            memset(&m, 0, sizeof m);
            m.src_memory_type = m.dst_memory_type = STEM_CU_MEMORYTYPE_DEVICE;
            m.src_device = s0 + r->src_off;
            m.dst_device = d0 + r->dst_off;
            m.src_pitch = r->src_pitch;
            m.dst_pitch = r->dst_pitch;
            m.width_bytes = r->row_bytes;
            m.height = r->rows;
            e = c->api->cuMemcpy2DAsync(&m, c->stream);
        }
        if (r->rows == 1 || r->src_pitch < r->row_bytes || r->dst_pitch < r->row_bytes || e)
            for (size_t k = 0; k < r->rows; ++k) { /* also the fallback of a refused 2-D copy */
                e = c->api->cuMemcpyDtoDAsync(d0 + r->dst_off + k * r->dst_pitch,
                                              s0 + r->src_off + k * r->src_pitch, r->row_bytes,
                                              c->stream);
                if (e)
                    return stem_cuda_fail(e, "paged K/V gather (cuMemcpyDtoDAsync)");
            }
    }
    return STEM_OK;
}

/* The core's paged K/V gather, on the stream in order with the stages (no
 * wait): the rects go to stem_k_copy_rects by value, STEM_KCOPY_RECTS per
 * launch, so a 32K-token sequence in pages of 64 is a few launches, not
 * one driver copy per page. */
static stem_status cuda_copy_rects(stem_context *ctx, stem_buffer *dst, const stem_buffer *src,
                                   const stem_copy_rect *rects, size_t count)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    stem_status st = stem_cuda_enter(c, "stem_prefill_ex (paged K/V gather)");
    if (st != STEM_OK)
        return st;
    const CUdeviceptr s0 = (CUdeviceptr)(uintptr_t)src->impl, d0 = (CUdeviceptr)(uintptr_t)dst->impl;
    const char *how = getenv("STEM_CUDA_GATHER");
    if (how && strcmp(how, "memcpy") == 0)
        return copy_rects_driver(c, s0, d0, rects, count);
    const int unit = copy_unit(s0, d0, rects, count);
    stem_kcopy p;
    for (size_t i = 0; i < count && st == STEM_OK;) {
        memset(&p, 0, sizeof p);
        p.src = (unsigned long long)s0;
        p.dst = (unsigned long long)d0;
        p.unit = unit;
        unsigned long long most = 0;
        for (; i < count && p.count < STEM_KCOPY_RECTS; ++i) {
            const stem_copy_rect *r = &rects[i];
            if (r->rows == 0 || r->row_bytes == 0)
                continue;
            stem_kcopy_rect *k = &p.r[p.count++];
            k->src_off = r->src_off / (size_t)unit;
            k->dst_off = r->dst_off / (size_t)unit;
            k->rows = r->rows;
            k->row_units = r->row_bytes / (size_t)unit;
            k->src_pitch = r->src_pitch / (size_t)unit;
            k->dst_pitch = r->dst_pitch / (size_t)unit;
            if (k->rows * k->row_units > most)
                most = k->rows * k->row_units;
        }
        /* about four units per thread, at most 256 blocks per rect */
        const unsigned long long per_block = 256ull * 4;
        const unsigned gx = (unsigned)(most / per_block + 1 > 256 ? 256 : most / per_block + 1);
        void *args[] = {&p};
        st = stem_cuda_launch(c, c->fn[STEM_CUDA_FN_COPY_RECTS], gx, (unsigned)p.count, 1, 256, 0,
                              args, "paged K/V gather (stem_k_copy_rects)");
    }
    return st;
}

static stem_status cuda_synchronize(stem_context *ctx)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    stem_status st = stem_cuda_enter(c, "stem_synchronize");
    if (st != STEM_OK)
        return st;
    const CUresult r = c->api->cuStreamSynchronize(c->stream);
    return r ? stem_cuda_fail(r, "stem_synchronize") : STEM_OK;
}

/* ------------------------------------------- entries: push, run, pop */

#define CUDA_ENTRY(name, fn, ctx_expr, params, args)                                           \
    static stem_status name params                                                            \
    {                                                                                          \
        stem_cuda_context *c_ = stem_cuda_ctx(ctx_expr);                                       \
        stem_status st_ = push_ctx(c_, #fn);                                                   \
        if (st_ != STEM_OK)                                                                    \
            return st_;                                                                        \
        st_ = fn args;                                                                         \
        pop_ctx(c_);                                                                           \
        return st_;                                                                            \
    }

CUDA_ENTRY(entry_buffer_alloc, cuda_buffer_alloc, ctx,
           (stem_context * ctx, stem_buffer * buf, size_t bytes), (ctx, buf, bytes))
CUDA_ENTRY(entry_buffer_wrap_native, cuda_buffer_wrap_native, ctx,
           (stem_context * ctx, stem_buffer * buf, void *h, size_t off, size_t bytes),
           (ctx, buf, h, off, bytes))
CUDA_ENTRY(entry_buffer_write, cuda_buffer_write, ctx,
           (stem_context * ctx, stem_buffer * buf, size_t off, const void *src, size_t bytes),
           (ctx, buf, off, src, bytes))
CUDA_ENTRY(entry_buffer_read, cuda_buffer_read, ctx,
           (stem_context * ctx, stem_buffer * buf, size_t off, void *dst, size_t bytes),
           (ctx, buf, off, dst, bytes))
CUDA_ENTRY(entry_synchronize, cuda_synchronize, ctx, (stem_context * ctx), (ctx))
CUDA_ENTRY(entry_copy_rects, cuda_copy_rects, ctx,
           (stem_context * ctx, stem_buffer * dst, const stem_buffer *src,
            const stem_copy_rect *rects, size_t count),
           (ctx, dst, src, rects, count))
CUDA_ENTRY(entry_plan_init, stem_cuda_plan_init, plan->ctx, (stem_plan * plan), (plan))
CUDA_ENTRY(entry_score, stem_cuda_score, plan->ctx,
           (stem_plan * plan, const stem_pass *pass, const stem_tensor *q, const stem_tensor *k,
            const stem_tensor *v, const stem_tensor *scores),
           (plan, pass, q, k, v, scores))
CUDA_ENTRY(entry_select, stem_cuda_select, plan->ctx,
           (stem_plan * plan, const stem_pass *pass, const stem_tensor *scores,
            const stem_tensor *index, const stem_tensor *count),
           (plan, pass, scores, index, count))
CUDA_ENTRY(entry_attention, stem_cuda_attention, plan->ctx,
           (stem_plan * plan, const stem_pass *pass, const stem_tensor *q, const stem_tensor *k,
            const stem_tensor *v, const stem_tensor *index, const stem_tensor *count,
            const stem_tensor *out),
           (plan, pass, q, k, v, index, count, out))
#undef CUDA_ENTRY

static void entry_buffer_free(stem_context *ctx, stem_buffer *buf)
{
    stem_cuda_context *c = stem_cuda_ctx(ctx);
    if (push_ctx(c, "stem_buffer_destroy") != STEM_OK)
        return; /* leaks rather than touching another context's memory */
    cuda_buffer_free(ctx, buf);
    pop_ctx(c);
}

static void entry_plan_fini(stem_plan *plan)
{
    stem_cuda_context *c = stem_cuda_ctx(plan->ctx);
    if (push_ctx(c, "stem_plan_destroy") != STEM_OK)
        return;
    stem_cuda_plan_fini(plan);
    pop_ctx(c);
}

const stem_backend_ops stem_cuda_backend_ops = {
    .kind = STEM_BACKEND_CUDA,
    .name = "cuda",
    .probe = cuda_probe,
    .context_init = cuda_context_init,
    .context_fini = cuda_context_fini,
    .buffer_alloc = entry_buffer_alloc,
    .buffer_wrap_host = cuda_buffer_wrap_host,
    .buffer_wrap_native = entry_buffer_wrap_native,
    .context_native = cuda_context_native,
    .buffer_free = entry_buffer_free,
    .buffer_write = entry_buffer_write,
    .buffer_read = entry_buffer_read,
    .plan_init = entry_plan_init,
    .plan_fini = entry_plan_fini,
    .plan_check = stem_cuda_plan_check,
    .score = entry_score,
    .select = entry_select,
    .attention = entry_attention,
    .synchronize = entry_synchronize,
    .copy_rects = entry_copy_rects,
    .caps = STEM_CAP_Q_OFFSET | STEM_CAP_VSTATS | STEM_CAP_LSE | STEM_CAP_VARLEN |
            STEM_CAP_PAGED,
    .dtypes = (1u << STEM_DTYPE_F32) | (1u << STEM_DTYPE_F16) | (1u << STEM_DTYPE_BF16),
    .head_dim_min = 8,
    .head_dim_max = 256,
    .head_dim_step = 8,
};
