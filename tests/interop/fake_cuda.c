/*
 * A stand-in CUDA driver (loaded through STEM_CUDA_LIBRARY) that records how
 * libstem treats the caller's CUDA state: the per-thread context stack,
 * synchronizations per stream, allocations. One "device" of compute
 * capability 9.0; device memory is host memory; kernels do nothing (results
 * are not checked through it, only the discipline around them).
 *
 * FAKE_CUDA_POOLS=0 makes the device report no memory pools (libstem then
 * uses cuMemAlloc/cuMemFree).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

#define OK 0
#define ERR_INVALID_VALUE 1
#define ERR_INVALID_CONTEXT 201

#define EXPORT __attribute__((visibility("default")))

/* What the test reads back (fake_cuda_stats). */
typedef struct fake_cuda_stats {
    long set_current;       /* cuCtxSetCurrent calls */
    long pushes, pops;
    long stream_syncs;      /* cuStreamSynchronize calls, any stream */
    long stream_syncs_on;   /* ... on the watched stream */
    long mem_alloc, mem_free, mem_alloc_async, mem_free_async;
    long launches;
    long launches_outside_ctx; /* launches with no context current */
} fake_cuda_stats;

static fake_cuda_stats g_stats;
static void *g_watched;
static int g_primary_obj, g_created_obj[4];
static int g_primary_refs;

#define STACK_MAX 32
static _Thread_local void *t_stack[STACK_MAX];
static _Thread_local int t_depth;

EXPORT void fake_cuda_reset(void *watched_stream)
{
    memset(&g_stats, 0, sizeof g_stats);
    g_watched = watched_stream;
}
EXPORT void fake_cuda_get_stats(fake_cuda_stats *out) { *out = g_stats; }
EXPORT int fake_cuda_stack_depth(void) { return t_depth; }

/* Allocations, for the pointer attributes. */
typedef struct alloc {
    CUdeviceptr p;
    size_t n;
    void *ctx; /* current context at allocation */
} alloc;
static alloc g_allocs[4096];
static int g_nallocs;

static void track(CUdeviceptr p, size_t n)
{
    void *ctx = t_depth ? t_stack[t_depth - 1] : NULL;
    for (int i = 0; i < g_nallocs; i++)
        if (!g_allocs[i].p) {
            g_allocs[i] = (alloc){p, n, ctx};
            return;
        }
    if (g_nallocs < 4096)
        g_allocs[g_nallocs++] = (alloc){p, n, ctx};
}
static void untrack(CUdeviceptr p)
{
    for (int i = 0; i < g_nallocs; i++)
        if (g_allocs[i].p == p)
            g_allocs[i].p = 0;
}
static const alloc *find(CUdeviceptr p)
{
    for (int i = 0; i < g_nallocs; i++)
        if (g_allocs[i].p && p >= g_allocs[i].p && p < g_allocs[i].p + g_allocs[i].n)
            return &g_allocs[i];
    return NULL;
}

EXPORT CUresult cuInit(unsigned f) { (void)f; return OK; }
EXPORT CUresult cuDriverGetVersion(int *v) { *v = 13000; return OK; }
EXPORT CUresult cuDeviceGetCount(int *n) { *n = 1; return OK; }
EXPORT CUresult cuDeviceGet(int *d, int ordinal)
{
    if (ordinal != 0)
        return ERR_INVALID_VALUE;
    *d = 0;
    return OK;
}
EXPORT CUresult cuDeviceGetName(char *name, int len, int d)
{
    (void)d;
    strncpy(name, "Fake CUDA device", (size_t)len);
    name[len - 1] = 0;
    return OK;
}
EXPORT CUresult cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = (size_t)1 << 34; return OK; }
EXPORT CUresult cuDeviceGetAttribute(int *v, int attr, int d)
{
    (void)d;
    switch (attr) {
    case 16: *v = 132; break;          /* SMs */
    case 75: *v = 9; break;            /* compute capability */
    case 76: *v = 0; break;
    case 97: *v = 227 * 1024; break;   /* shared memory opt-in */
    case 115: {                        /* memory pools */
        const char *e = getenv("FAKE_CUDA_POOLS");
        *v = !(e && strcmp(e, "0") == 0);
        break;
    }
    default: *v = 0;
    }
    return OK;
}
EXPORT CUresult cuDevicePrimaryCtxRetain(void **ctx, int d)
{
    (void)d;
    g_primary_refs++;
    *ctx = &g_primary_obj;
    return OK;
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; g_primary_refs--; return OK; }

EXPORT CUresult cuCtxSetCurrent(void *ctx)
{
    g_stats.set_current++;
    if (t_depth == 0)
        t_stack[t_depth++] = ctx;
    else
        t_stack[t_depth - 1] = ctx;
    return OK;
}
EXPORT CUresult cuCtxPushCurrent_v2(void *ctx)
{
    if (t_depth == STACK_MAX)
        return ERR_INVALID_VALUE;
    g_stats.pushes++;
    t_stack[t_depth++] = ctx;
    return OK;
}
EXPORT CUresult cuCtxPopCurrent_v2(void **ctx)
{
    if (t_depth == 0)
        return ERR_INVALID_CONTEXT;
    g_stats.pops++;
    void *c = t_stack[--t_depth];
    if (ctx)
        *ctx = c;
    return OK;
}
EXPORT CUresult cuCtxGetCurrent(void **ctx)
{
    *ctx = t_depth ? t_stack[t_depth - 1] : NULL;
    return OK;
}
EXPORT CUresult cuCtxCreate_v2(void **ctx, unsigned flags, int d)
{
    (void)flags, (void)d;
    static int next;
    *ctx = &g_created_obj[next++ % 4];
    return cuCtxPushCurrent_v2(*ctx);
}
EXPORT CUresult cuCtxDestroy_v2(void *ctx)
{
    if (t_depth && t_stack[t_depth - 1] == ctx)
        t_depth--;
    return OK;
}

EXPORT CUresult cuPointerGetAttribute(void *data, int attr, CUdeviceptr p)
{
    const alloc *a = find(p);
    if (!a)
        return ERR_INVALID_VALUE;
    switch (attr) {
    case 1: *(void **)data = a->ctx; return OK;        /* context */
    case 9: *(int *)data = 0; return OK;               /* device ordinal */
    case 11: *(CUdeviceptr *)data = a->p; return OK;   /* range start */
    case 12: *(size_t *)data = a->n; return OK;        /* range size */
    default: return ERR_INVALID_VALUE;
    }
}

EXPORT CUresult cuStreamCreate(void **s, unsigned flags)
{
    (void)flags;
    *s = malloc(1);
    return OK;
}
EXPORT CUresult cuStreamDestroy_v2(void *s) { free(s); return OK; }
EXPORT CUresult cuStreamSynchronize(void *s)
{
    g_stats.stream_syncs++;
    if (s == g_watched)
        g_stats.stream_syncs_on++;
    return OK;
}

static CUresult alloc_mem(CUdeviceptr *p, size_t n)
{
    void *m = calloc(1, n);
    if (!m)
        return 2;
    *p = (CUdeviceptr)(uintptr_t)m;
    track(*p, n);
    return OK;
}
static void free_mem(CUdeviceptr p)
{
    untrack(p);
    free((void *)(uintptr_t)p);
}
EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) { g_stats.mem_alloc++; return alloc_mem(p, n); }
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) { g_stats.mem_free++; free_mem(p); return OK; }
EXPORT CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, void *s)
{
    (void)s;
    g_stats.mem_alloc_async++;
    return alloc_mem(p, n);
}
EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, void *s)
{
    (void)s;
    g_stats.mem_free_async++;
    free_mem(p);
    return OK;
}
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, void *st)
{
    (void)st;
    memcpy((void *)(uintptr_t)d, s, n);
    return OK;
}
EXPORT CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, void *st)
{
    (void)st;
    memcpy(d, (const void *)(uintptr_t)s, n);
    return OK;
}
EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n)
{
    memcpy((void *)(uintptr_t)d, s, n);
    return OK;
}
EXPORT CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n)
{
    memcpy(d, (const void *)(uintptr_t)s, n);
    return OK;
}
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void *st)
{
    (void)st;
    memmove((void *)(uintptr_t)d, (const void *)(uintptr_t)s, n);
    return OK;
}
/* CUDA_MEMCPY2D, device to device (the fields libstem sets). */
typedef struct fake_memcpy2d {
    size_t src_x, src_y;
    int src_type;
    const void *src_host;
    CUdeviceptr src_dev;
    void *src_array;
    size_t src_pitch, dst_x, dst_y;
    int dst_type;
    void *dst_host;
    CUdeviceptr dst_dev;
    void *dst_array;
    size_t dst_pitch, width, height;
} fake_memcpy2d;
EXPORT CUresult cuMemcpy2DAsync_v2(const fake_memcpy2d *m, void *st)
{
    (void)st;
    for (size_t r = 0; r < m->height; r++)
        memcpy((char *)(uintptr_t)m->dst_dev + r * m->dst_pitch,
               (const char *)(uintptr_t)m->src_dev + r * m->src_pitch, m->width);
    return OK;
}
EXPORT CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void *s)
{
    (void)s;
    memset((void *)(uintptr_t)d, v, n);
    return OK;
}

static int g_module, g_function;
EXPORT CUresult cuModuleLoadData(void **m, const void *image) { (void)image; *m = &g_module; return OK; }
EXPORT CUresult cuModuleUnload(void *m) { (void)m; return OK; }
EXPORT CUresult cuModuleGetFunction(void **f, void *m, const char *name)
{
    (void)m, (void)name;
    *f = &g_function;
    return OK;
}
EXPORT CUresult cuFuncSetAttribute(void *f, int a, int v) { (void)f, (void)a, (void)v; return OK; }
EXPORT CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned sh, void *s, void **p, void **e)
{
    (void)f, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)sh, (void)s,
        (void)p, (void)e;
    g_stats.launches++;
    if (t_depth == 0)
        g_stats.launches_outside_ctx++;
    return OK;
}
EXPORT CUresult cuGetErrorName(CUresult r, const char **s)
{
    *s = r == OK ? "CUDA_SUCCESS" : "CUDA_ERROR_FAKE";
    return OK;
}
