/* Loads the CUDA driver (libcuda.so.1, or STEM_CUDA_LIBRARY) with dlopen. */
#include "cuda_driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static stem_cuda_api g_api;
static int g_ok;
static char g_why[256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Resolves `name` into *slot; 0 when missing (message in g_why). */
static int bind(void *lib, void *slot, const char *name)
{
    void *sym = dlsym(lib, name);
    if (!sym) {
        snprintf(g_why, sizeof g_why, "CUDA driver lacks %s", name);
        return 0;
    }
    memcpy(slot, &sym, sizeof sym); /* object pointer -> function pointer, without a cast warning */
    return 1;
}

static void load_once(void)
{
    const char *path = getenv("STEM_CUDA_LIBRARY");
    if (!path || !*path)
        path = "libcuda.so.1";
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(g_why, sizeof g_why, "cannot load the CUDA driver %s: %s", path, e ? e : "?");
        return;
    }
    stem_cuda_api *a = &g_api;
    a->lib = lib;
    int ok = 1;
#define BIND(field, sym) ok = ok && bind(lib, &a->field, sym)
    BIND(cuInit, "cuInit");
    BIND(cuDriverGetVersion, "cuDriverGetVersion");
    BIND(cuDeviceGetCount, "cuDeviceGetCount");
    BIND(cuDeviceGet, "cuDeviceGet");
    BIND(cuDeviceGetName, "cuDeviceGetName");
    BIND(cuDeviceTotalMem, "cuDeviceTotalMem_v2");
    BIND(cuDeviceGetAttribute, "cuDeviceGetAttribute");
    BIND(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    BIND(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
    BIND(cuCtxSetCurrent, "cuCtxSetCurrent");
    BIND(cuCtxPushCurrent, "cuCtxPushCurrent_v2");
    BIND(cuCtxPopCurrent, "cuCtxPopCurrent_v2");
    BIND(cuPointerGetAttribute, "cuPointerGetAttribute");
    BIND(cuStreamCreate, "cuStreamCreate");
    BIND(cuStreamDestroy, "cuStreamDestroy_v2");
    BIND(cuStreamSynchronize, "cuStreamSynchronize");
    BIND(cuMemAlloc, "cuMemAlloc_v2");
    BIND(cuMemFree, "cuMemFree_v2");
    BIND(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
    BIND(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
    BIND(cuMemsetD8Async, "cuMemsetD8Async");
    BIND(cuModuleLoadData, "cuModuleLoadData");
    BIND(cuModuleUnload, "cuModuleUnload");
    BIND(cuModuleGetFunction, "cuModuleGetFunction");
    BIND(cuFuncSetAttribute, "cuFuncSetAttribute");
    BIND(cuLaunchKernel, "cuLaunchKernel");
    BIND(cuGetErrorName, "cuGetErrorName");
#undef BIND
    if (ok) {
        void *alloc_async = dlsym(lib, "cuMemAllocAsync"), *free_async = dlsym(lib, "cuMemFreeAsync");
        if (alloc_async && free_async) {
            memcpy(&a->cuMemAllocAsync, &alloc_async, sizeof alloc_async);
            memcpy(&a->cuMemFreeAsync, &free_async, sizeof free_async);
        }
    }
    if (!ok) {
        dlclose(lib);
        return;
    }
    const CUresult r = a->cuInit(0);
    if (r != 0) {
        snprintf(g_why, sizeof g_why, "cuInit failed: %s", stem_cuda_error_name(r));
        dlclose(lib);
        return;
    }
    g_ok = 1;
}

const stem_cuda_api *stem_cuda_api_get(char *why, size_t why_size)
{
    pthread_once(&g_once, load_once);
    if (!g_ok && why && why_size)
        snprintf(why, why_size, "%s", g_why);
    return g_ok ? &g_api : NULL;
}

const char *stem_cuda_error_name(CUresult r)
{
    static _Thread_local char buf[96];
    const char *name = NULL;
    if (g_api.cuGetErrorName && g_api.cuGetErrorName(r, &name) != 0)
        name = NULL;
    snprintf(buf, sizeof buf, "%s (%d)", name ? name : "CUDA error", (int)r);
    return buf;
}
