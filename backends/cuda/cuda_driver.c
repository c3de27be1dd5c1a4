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

/* Resolves `name` into *slot; 0 when missing (message in g_why when the
 * entry point is required; optional ones stay NULL). */
static int bind(void *lib, void *slot, const char *name, int required)
{
    void *sym = dlsym(lib, name);
    if (!sym) {
        if (required && !g_why[0])
            snprintf(g_why, sizeof g_why, "CUDA driver lacks %s", name);
        return !required;
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
#define BIND(field, sym, params, required)                                                  \
    if (!bind(lib, &a->field, sym, required))                                                    \
        ok = 0;
    STEM_CUDA_DRIVER_ENTRIES(BIND)
#undef BIND
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
