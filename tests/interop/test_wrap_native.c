/*
 * Native interop: memory made by the caller through the vendor API
 * (malloc on the CPU, clCreateBuffer, vkCreateBuffer + vkAllocateMemory,
 * cuMemAlloc) is wrapped with stem_buffer_wrap_native and used in place by
 * stem_prefill; the output read back through the vendor API matches the
 * shared reference. Bytes outside the wrapped range are canaries.
 *
 * Also: misuse of stem_buffer_wrap_native gets a status and a message and
 * leaves *out alone; on CUDA (where a device exists), the caller's current
 * context survives every libstem call and the caller's stream is used.
 *
 * STEM_TEST_ONLY=cpu,opencl limits the devices and STEM_TEST_REQUIRE=cuda
 * makes a backend without a device a failure, as in the other suites.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The vendor parts need the vendor headers (nothing is linked: dlopen). */
#if defined(__has_include)
#if __has_include(<CL/cl.h>)
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#define HAVE_CL 1
#endif
#if __has_include(<vulkan/vulkan.h>)
#include <vulkan/vulkan.h>
#define HAVE_VK 1
#endif
#endif

#include "../hardening/device_filter.h"
#include "stem.h"
#include "stem_ref.h"
#include "stem_synth.h"

static int g_failures;

/* Backends this test knows (stem.h's enum is open: names past these read "unknown"). */
#define TEST_BACKENDS 4

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                        \
            printf(__VA_ARGS__);                                                               \
            printf(" (last error: %s)\n", stem_last_error());                                  \
            g_failures++;                                                                      \
            return -1;                                                                         \
        }                                                                                      \
    } while (0)

/* ------------------------------------------------------------ the problem */

enum { B = 1, HQ = 4, HKV = 2, N = 200, D = 32, BLOCK = 16 };
#define PAD 256          /* bytes before the wrapped range (canary) */
#define TAIL 64          /* bytes after it (canary) */
#define CANARY 0xA5

typedef struct layout {
    size_t q, k, v, out, index, count, bytes; /* offsets inside the wrapped range */
    int64_t nb;
} layout;

static layout make_layout(void)
{
    layout l;
    l.nb = (N + BLOCK - 1) / BLOCK;
    size_t at = 0;
    l.q = at, at += (size_t)B * HQ * N * D * 4;
    l.k = at, at += (size_t)B * HKV * N * D * 4;
    l.v = at, at += (size_t)B * HKV * N * D * 4;
    l.out = at, at += (size_t)B * HQ * N * D * 4;
    l.index = at, at += (size_t)B * HQ * l.nb * l.nb * 4;
    l.count = at, at += (size_t)B * HQ * l.nb * 4;
    l.bytes = at;
    return l;
}

/* How a backend's test reaches its native memory. */
typedef struct native_mem {
    void *handle;                                              /* for wrap_native */
    int (*write)(struct native_mem *m, size_t off, const void *src, size_t n);
    int (*read)(struct native_mem *m, size_t off, void *dst, size_t n);
    void (*destroy)(struct native_mem *m);
    void *priv[6];
} native_mem;

static void problem_config(stem_config *cfg)
{
    stem_config_init(cfg);
    cfg->block_size = BLOCK;
    cfg->stride = 4;
    cfg->dense_below_blocks = 0;
    cfg->k_start = 5; /* sparse: 13 blocks a row at most, 5 + forced kept */
}

/* Writes Q, K, V and poisons the rest through the vendor API, runs
 * stem_prefill on the wrapped range, reads back and compares. */
static int run_prefill(stem_context *ctx, native_mem *m, const char *what)
{
    const layout l = make_layout();
    const size_t total = PAD + l.bytes + TAIL;
    unsigned char *host = malloc(total);
    float *q = malloc((size_t)B * HQ * N * D * 4), *k = malloc((size_t)B * HKV * N * D * 4),
          *v = malloc((size_t)B * HKV * N * D * 4);
    CHECK(host && q && k && v, "host memory");
    stem_synth_qkv(STEM_SYNTH_STRUCTURED, 1601, B, HQ, HKV, N, D, q, k, v);
    memset(host, CANARY, total);
    memset(host + PAD, 0xFF, l.bytes); /* poison: NaN floats, -1 ints */
    memcpy(host + PAD + l.q, q, (size_t)B * HQ * N * D * 4);
    memcpy(host + PAD + l.k, k, (size_t)B * HKV * N * D * 4);
    memcpy(host + PAD + l.v, v, (size_t)B * HKV * N * D * 4);
    CHECK(m->write(m, 0, host, total) == 0, "%s: vendor write", what);

    stem_buffer *buf = NULL;
    stem_status st = stem_buffer_wrap_native(ctx, m->handle, PAD, l.bytes, &buf);
    CHECK(st == STEM_OK && buf, "%s: stem_buffer_wrap_native: %s", what, stem_status_name(st));
    CHECK(stem_buffer_size(buf) == l.bytes, "%s: size %zu", what, stem_buffer_size(buf));

    stem_attention_desc desc;
    stem_attention_desc_init(&desc);
    desc.batch = B, desc.num_q_heads = HQ, desc.num_kv_heads = HKV;
    desc.q_len = desc.kv_len = N, desc.head_dim = D, desc.dtype = STEM_DTYPE_F32;
    stem_config cfg;
    problem_config(&cfg);
    stem_plan *plan = NULL;
    st = stem_plan_create(ctx, &desc, &cfg, &plan);
    CHECK(st == STEM_OK, "%s: stem_plan_create: %s", what, stem_status_name(st));
    const stem_tensor tq = stem_tensor_bhnd(buf, l.q, STEM_DTYPE_F32, B, HQ, N, D);
    const stem_tensor tk = stem_tensor_bhnd(buf, l.k, STEM_DTYPE_F32, B, HKV, N, D);
    const stem_tensor tv = stem_tensor_bhnd(buf, l.v, STEM_DTYPE_F32, B, HKV, N, D);
    const stem_tensor to = stem_tensor_bhnd(buf, l.out, STEM_DTYPE_F32, B, HQ, N, D);
    const stem_tensor ti = stem_tensor_bhnd(buf, l.index, STEM_DTYPE_I32, B, HQ, l.nb, l.nb);
    const stem_tensor tc = stem_tensor_bhnd(buf, l.count, STEM_DTYPE_I32, B, HQ, l.nb, 1);
    st = stem_prefill(plan, &tq, &tk, &tv, &to, NULL, &ti, &tc);
    CHECK(st == STEM_OK, "%s: stem_prefill: %s", what, stem_status_name(st));
    CHECK(stem_synchronize(ctx) == STEM_OK, "%s: stem_synchronize", what);
    stem_plan_destroy(plan);
    stem_buffer_destroy(buf); /* the memory stays the caller's */

    memset(host, 0, total);
    CHECK(m->read(m, 0, host, total) == 0, "%s: vendor read", what);
    for (size_t i = 0; i < PAD; i++)
        CHECK(host[i] == CANARY, "%s: byte %zu before the wrapped range changed", what, i);
    for (size_t i = PAD + l.bytes; i < total; i++)
        CHECK(host[i] == CANARY, "%s: byte %zu after the wrapped range changed", what, i);

    /* The reference, on the library's own lists (checked against the
     * reference's budget); the lists' contents are the conformance suite's. */
    const int64_t nb = l.nb, rows = (int64_t)B * HQ * nb;
    int32_t *index = (int32_t *)(host + PAD + l.index), *count = (int32_t *)(host + PAD + l.count);
    const float *out = (const float *)(host + PAD + l.out);
    double *dq = malloc(sizeof(double) * B * HQ * N * D), *dk = malloc(sizeof(double) * B * HKV * N * D),
           *dv = malloc(sizeof(double) * B * HKV * N * D), *dout = malloc(sizeof(double) * B * HQ * N * D),
           *dscores = malloc(sizeof(double) * rows * nb);
    int32_t *rindex = malloc(sizeof(int32_t) * rows * nb), *rcount = malloc(sizeof(int32_t) * rows);
    CHECK(dq && dk && dv && dout && dscores && rindex && rcount, "host memory");
    for (size_t i = 0; i < (size_t)B * HQ * N * D; i++)
        dq[i] = q[i];
    for (size_t i = 0; i < (size_t)B * HKV * N * D; i++)
        dk[i] = k[i], dv[i] = v[i];
    stem_ref_problem p = {B, HQ, HKV, N, D, 1.0 / sqrt((double)D), -1, dq, dk, dv};
    stem_ref_scores(&p, &cfg, dscores);
    stem_ref_select(&p, &cfg, dscores, rindex, rcount);
    int64_t same_rows = 0;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t row = r % nb;
        CHECK(count[r] == rcount[r], "%s: row %lld keeps %d blocks, the reference %d", what,
              (long long)r, count[r], rcount[r]);
        int same = 1;
        for (int64_t j = 0; j < count[r]; j++) {
            const int32_t b = index[r * nb + j];
            CHECK(b >= 0 && b <= row && (j == 0 || b > index[r * nb + j - 1]),
                  "%s: row %lld: bad list entry %d", what, (long long)r, b);
            same &= b == rindex[r * nb + j];
        }
        same_rows += same;
    }
    /* Near-ties may flip a block between f32 and double scores; most rows agree. */
    CHECK(same_rows * 10 >= rows * 9, "%s: only %lld of %lld rows select the reference's blocks",
          what, (long long)same_rows, (long long)rows);
    stem_ref_attention(&p, BLOCK, index, count, dout);
    double err = 0;
    for (size_t i = 0; i < (size_t)B * HQ * N * D; i++) {
        const double e = fabs((double)out[i] - dout[i]);
        err = e > err || e != e ? e : err;
    }
    CHECK(err <= 1e-4, "%s: output differs from the reference by %g", what, err);
    printf("  %s: prefill on wrapped memory: %lld/%lld rows as the reference, max error %.2g\n",
           what, (long long)same_rows, (long long)rows, err);
    free(dq), free(dk), free(dv), free(dout), free(dscores), free(rindex), free(rcount);
    free(host), free(q), free(k), free(v);
    return 0;
}

/* Misuse: a status and a message, *out untouched. */
static int misuse(stem_context *ctx, void *handle, const char *what)
{
    stem_buffer *const sentinel = (stem_buffer *)(uintptr_t)0x5EED;
    stem_buffer *out = sentinel;
    struct {
        stem_context *ctx;
        void *handle;
        size_t offset, bytes;
        stem_buffer **out;
        const char *name;
    } cases[] = {
        {ctx, NULL, 0, 64, &out, "NULL handle"},
        {ctx, handle, 0, 0, &out, "bytes 0"},
        {NULL, handle, 0, 64, &out, "NULL context"},
        {ctx, handle, 0, 64, NULL, "NULL out"},
        {ctx, handle, SIZE_MAX - 8, 64, &out, "offset + bytes overflows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const stem_status st = stem_buffer_wrap_native(cases[i].ctx, cases[i].handle,
                                                       cases[i].offset, cases[i].bytes,
                                                       cases[i].out);
        CHECK(st == STEM_ERR_INVALID_ARGUMENT, "%s: %s gave %s", what, cases[i].name,
              stem_status_name(st));
        CHECK(stem_last_error()[0] != '\0', "%s: %s: no message", what, cases[i].name);
        CHECK(out == sentinel, "%s: %s wrote *out", what, cases[i].name);
    }
    return 0;
}

/* Misuse one backend detects itself: st expected, message, *out untouched. */
static int expect_refused(stem_context *ctx, void *handle, size_t offset, size_t bytes,
                          stem_status want, const char *what)
{
    stem_buffer *const sentinel = (stem_buffer *)(uintptr_t)0x5EED;
    stem_buffer *out = sentinel;
    const stem_status st = stem_buffer_wrap_native(ctx, handle, offset, bytes, &out);
    CHECK(st == want, "%s gave %s, want %s", what, stem_status_name(st), stem_status_name(want));
    CHECK(strstr(stem_last_error(), "wrap_native") != NULL, "%s: message '%s'", what,
          stem_last_error());
    CHECK(out == sentinel, "%s wrote *out", what);
    return 0;
}

static int native_handles_match(stem_context *ctx, stem_backend want)
{
    stem_native_handles h;
    stem_native_handles_init(&h);
    CHECK(stem_context_get_native(ctx, &h) == STEM_OK, "stem_context_get_native");
    CHECK(h.backend == want, "handles of backend %d", (int)h.backend);
    CHECK(want == STEM_BACKEND_CPU || (h.context && h.queue), "no native context/queue");
    return 0;
}

/* -------------------------------------------------------------------- CPU */

static int host_write(native_mem *m, size_t off, const void *src, size_t n)
{
    memcpy((char *)m->handle + off, src, n);
    return 0;
}
static int host_read(native_mem *m, size_t off, void *dst, size_t n)
{
    memcpy(dst, (char *)m->handle + off, n);
    return 0;
}

static int test_cpu(stem_context *ctx)
{
    const layout l = make_layout();
    native_mem m = {.write = host_write, .read = host_read};
    m.handle = malloc(PAD + l.bytes + TAIL);
    CHECK(m.handle, "malloc");
    int rc = native_handles_match(ctx, STEM_BACKEND_CPU);
    if (rc == 0)
        rc = run_prefill(ctx, &m, "cpu");
    if (rc == 0)
        rc = misuse(ctx, m.handle, "cpu");
    free(m.handle);
    return rc;
}

/* ----------------------------------------------------------------- OpenCL */
#ifdef HAVE_CL

typedef struct cl_fns {
    void *lib;
    cl_mem (*CreateBuffer)(cl_context, cl_mem_flags, size_t, void *, cl_int *);
    cl_int (*ReleaseMemObject)(cl_mem);
    cl_int (*EnqueueWriteBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, const void *,
                                 cl_uint, const cl_event *, cl_event *);
    cl_int (*EnqueueReadBuffer)(cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *,
                                cl_uint, const cl_event *, cl_event *);
    cl_context (*CreateContext)(const cl_context_properties *, cl_uint, const cl_device_id *,
                                void(CL_CALLBACK *)(const char *, const void *, size_t, void *),
                                void *, cl_int *);
    cl_int (*ReleaseContext)(cl_context);
    cl_command_queue (*CreateCommandQueue)(cl_context, cl_device_id, cl_command_queue_properties,
                                           cl_int *);
    cl_int (*ReleaseCommandQueue)(cl_command_queue);
} cl_fns;
static cl_fns g_cl;

static int cl_write(native_mem *m, size_t off, const void *src, size_t n)
{
    return g_cl.EnqueueWriteBuffer((cl_command_queue)m->priv[0], (cl_mem)m->handle, CL_TRUE, off,
                                   n, src, 0, NULL, NULL) != CL_SUCCESS;
}
static int cl_read(native_mem *m, size_t off, void *dst, size_t n)
{
    return g_cl.EnqueueReadBuffer((cl_command_queue)m->priv[0], (cl_mem)m->handle, CL_TRUE, off,
                                  n, dst, 0, NULL, NULL) != CL_SUCCESS;
}

static int test_opencl(stem_context *ctx)
{
    if (!g_cl.lib) {
        g_cl.lib = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
        CHECK(g_cl.lib, "dlopen libOpenCL.so.1");
        *(void **)&g_cl.CreateBuffer = dlsym(g_cl.lib, "clCreateBuffer");
        *(void **)&g_cl.ReleaseMemObject = dlsym(g_cl.lib, "clReleaseMemObject");
        *(void **)&g_cl.EnqueueWriteBuffer = dlsym(g_cl.lib, "clEnqueueWriteBuffer");
        *(void **)&g_cl.EnqueueReadBuffer = dlsym(g_cl.lib, "clEnqueueReadBuffer");
        *(void **)&g_cl.CreateContext = dlsym(g_cl.lib, "clCreateContext");
        *(void **)&g_cl.ReleaseContext = dlsym(g_cl.lib, "clReleaseContext");
        *(void **)&g_cl.CreateCommandQueue = dlsym(g_cl.lib, "clCreateCommandQueue");
        *(void **)&g_cl.ReleaseCommandQueue = dlsym(g_cl.lib, "clReleaseCommandQueue");
        CHECK(g_cl.CreateBuffer && g_cl.ReleaseMemObject && g_cl.EnqueueWriteBuffer &&
                  g_cl.EnqueueReadBuffer && g_cl.CreateContext && g_cl.ReleaseContext &&
                  g_cl.CreateCommandQueue && g_cl.ReleaseCommandQueue,
              "OpenCL entry points");
    }
    if (native_handles_match(ctx, STEM_BACKEND_OPENCL))
        return -1;
    stem_native_handles h;
    stem_native_handles_init(&h);
    stem_context_get_native(ctx, &h);
    const layout l = make_layout();
    cl_int err = CL_SUCCESS;
    cl_mem mem = g_cl.CreateBuffer((cl_context)h.context, CL_MEM_READ_WRITE, PAD + l.bytes + TAIL,
                                   NULL, &err);
    CHECK(err == CL_SUCCESS && mem, "clCreateBuffer: %d", (int)err);
    native_mem m = {.handle = mem, .write = cl_write, .read = cl_read};
    m.priv[0] = h.queue;
    int rc = run_prefill(ctx, &m, "opencl");
    if (rc == 0)
        rc = misuse(ctx, mem, "opencl");
    if (rc == 0)
        rc = expect_refused(ctx, mem, PAD, PAD + l.bytes + TAIL, STEM_ERR_INVALID_ARGUMENT,
                            "opencl: a range past the cl_mem");
    if (rc == 0) { /* a cl_mem of another cl_context */
        cl_device_id dev = (cl_device_id)h.device;
        cl_context other = g_cl.CreateContext(NULL, 1, &dev, NULL, NULL, &err);
        CHECK(err == CL_SUCCESS, "clCreateContext");
        cl_mem foreign = g_cl.CreateBuffer(other, CL_MEM_READ_WRITE, 4096, NULL, &err);
        CHECK(err == CL_SUCCESS, "clCreateBuffer");
        rc = expect_refused(ctx, foreign, 0, 4096, STEM_ERR_INVALID_ARGUMENT,
                            "opencl: a cl_mem of another context");
        g_cl.ReleaseMemObject(foreign);
        g_cl.ReleaseContext(other);
    }
    g_cl.ReleaseMemObject(mem); /* libstem released its reference at destroy */
    return rc;
}

/* The other direction: the caller's own cl_context and queue, handed over
 * as native_queue; libstem runs on them and takes the caller's cl_mem. */
static int test_opencl_caller_queue(uint32_t device, cl_device_id dev)
{
    const layout l = make_layout();
    cl_int err = CL_SUCCESS;
    cl_context cctx = g_cl.CreateContext(NULL, 1, &dev, NULL, NULL, &err);
    CHECK(err == CL_SUCCESS, "clCreateContext");
    cl_command_queue queue = g_cl.CreateCommandQueue(cctx, dev, 0, &err);
    CHECK(err == CL_SUCCESS, "clCreateCommandQueue");
    cl_mem mem = g_cl.CreateBuffer(cctx, CL_MEM_READ_WRITE, PAD + l.bytes + TAIL, NULL, &err);
    CHECK(err == CL_SUCCESS, "clCreateBuffer");
    stem_context_desc d;
    stem_context_desc_init(&d);
    d.device = (int32_t)device;
    d.native_queue = queue;
    stem_context *ctx = NULL;
    CHECK(stem_context_create(&d, &ctx) == STEM_OK, "stem_context_create(native_queue)");
    stem_native_handles h;
    stem_native_handles_init(&h);
    CHECK(stem_context_get_native(ctx, &h) == STEM_OK, "stem_context_get_native");
    CHECK(h.queue == (void *)queue && h.context == (void *)cctx,
          "the context does not run on the caller's queue and cl_context");
    native_mem m = {.handle = mem, .write = cl_write, .read = cl_read};
    m.priv[0] = queue;
    const int rc = run_prefill(ctx, &m, "opencl (caller's queue)");
    stem_context_destroy(ctx);
    g_cl.ReleaseMemObject(mem);
    g_cl.ReleaseCommandQueue(queue);
    g_cl.ReleaseContext(cctx);
    return rc;
}

#endif /* HAVE_CL */

/* ----------------------------------------------------------------- Vulkan */
#ifdef HAVE_VK

typedef struct vk_fns {
    void *lib;
    PFN_vkGetInstanceProcAddr GetInstanceProcAddr;
    PFN_vkGetDeviceProcAddr GetDeviceProcAddr;
    PFN_vkCreateBuffer CreateBuffer;
    PFN_vkDestroyBuffer DestroyBuffer;
    PFN_vkGetBufferMemoryRequirements GetBufferMemoryRequirements;
    PFN_vkAllocateMemory AllocateMemory;
    PFN_vkFreeMemory FreeMemory;
    PFN_vkBindBufferMemory BindBufferMemory;
    PFN_vkMapMemory MapMemory;
    PFN_vkUnmapMemory UnmapMemory;
    PFN_vkGetPhysicalDeviceMemoryProperties GetPhysicalDeviceMemoryProperties;
} vk_fns;

/* Host-visible memory (the test's emulated device has it): the test's
 * "vendor copies" are memcpy through a mapping. */
static int vk_write(native_mem *m, size_t off, const void *src, size_t n)
{
    memcpy((char *)m->priv[2] + off, src, n);
    return 0;
}
static int vk_read(native_mem *m, size_t off, void *dst, size_t n)
{
    memcpy(dst, (char *)m->priv[2] + off, n);
    return 0;
}

static int test_vulkan(stem_context *ctx)
{
    vk_fns f = {0};
    f.lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    CHECK(f.lib, "dlopen libvulkan.so.1");
    *(void **)&f.GetInstanceProcAddr = dlsym(f.lib, "vkGetInstanceProcAddr");
    CHECK(f.GetInstanceProcAddr, "vkGetInstanceProcAddr");
    if (native_handles_match(ctx, STEM_BACKEND_VULKAN))
        return -1;
    stem_native_handles h;
    stem_native_handles_init(&h);
    stem_context_get_native(ctx, &h);
    VkInstance inst = (VkInstance)h.instance;
    VkDevice dev = (VkDevice)h.context;
    CHECK(inst && h.device && dev, "vulkan handles");
    f.GetDeviceProcAddr = (PFN_vkGetDeviceProcAddr)f.GetInstanceProcAddr(inst, "vkGetDeviceProcAddr");
    f.GetPhysicalDeviceMemoryProperties = (PFN_vkGetPhysicalDeviceMemoryProperties)
        f.GetInstanceProcAddr(inst, "vkGetPhysicalDeviceMemoryProperties");
#define DEV(name) f.name = (PFN_vk##name)f.GetDeviceProcAddr(dev, "vk" #name)
    DEV(CreateBuffer);
    DEV(DestroyBuffer);
    DEV(GetBufferMemoryRequirements);
    DEV(AllocateMemory);
    DEV(FreeMemory);
    DEV(BindBufferMemory);
    DEV(MapMemory);
    DEV(UnmapMemory);
#undef DEV
    CHECK(f.CreateBuffer && f.AllocateMemory && f.MapMemory, "vulkan entry points");
    const layout l = make_layout();
    const VkDeviceSize size = PAD + l.bytes + TAIL;
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bi.size = size;
    bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
               VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkBuffer vb = VK_NULL_HANDLE;
    CHECK(f.CreateBuffer(dev, &bi, NULL, &vb) == VK_SUCCESS, "vkCreateBuffer");
    VkMemoryRequirements req;
    f.GetBufferMemoryRequirements(dev, vb, &req);
    VkPhysicalDeviceMemoryProperties mp;
    f.GetPhysicalDeviceMemoryProperties((VkPhysicalDevice)h.device, &mp);
    const VkMemoryPropertyFlags hv =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    int type = -1;
    for (uint32_t i = 0; i < mp.memoryTypeCount && type < 0; i++)
        if ((req.memoryTypeBits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & hv) == hv)
            type = (int)i;
    if (type < 0) {
        printf("  vulkan: no host-visible memory type; wrapped prefill skipped\n");
        f.DestroyBuffer(dev, vb, NULL);
        return 0;
    }
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = (uint32_t)type;
    VkDeviceMemory mem = VK_NULL_HANDLE;
    void *mapped = NULL;
    CHECK(f.AllocateMemory(dev, &ai, NULL, &mem) == VK_SUCCESS, "vkAllocateMemory");
    CHECK(f.BindBufferMemory(dev, vb, mem, 0) == VK_SUCCESS, "vkBindBufferMemory");
    CHECK(f.MapMemory(dev, mem, 0, VK_WHOLE_SIZE, 0, &mapped) == VK_SUCCESS, "vkMapMemory");
    native_mem m = {.handle = (void *)vb, .write = vk_write, .read = vk_read};
    m.priv[2] = mapped;
    int rc = run_prefill(ctx, &m, "vulkan");
    if (rc == 0)
        rc = misuse(ctx, (void *)vb, "vulkan");
    if (rc == 0)
        rc = expect_refused(ctx, (void *)vb, 8, 64, STEM_ERR_INVALID_ARGUMENT,
                            "vulkan: an offset not a multiple of 16");
    if (rc == 0) { /* stem_buffer_write/read reach the caller's memory at the offset */
        stem_buffer *buf = NULL;
        const uint32_t word = 0x1234ABCDu;
        uint32_t back = 0;
        CHECK(stem_buffer_wrap_native(ctx, (void *)vb, PAD, 64, &buf) == STEM_OK, "wrap");
        CHECK(stem_buffer_write(buf, 16, &word, 4) == STEM_OK, "stem_buffer_write");
        CHECK(memcmp((char *)mapped + PAD + 16, &word, 4) == 0, "write missed the memory");
        memcpy((char *)mapped + PAD + 20, &word, 4);
        CHECK(stem_buffer_read(buf, 20, &back, 4) == STEM_OK && back == word, "read");
        stem_buffer_destroy(buf);
    }
    f.UnmapMemory(dev, mem);
    f.DestroyBuffer(dev, vb, NULL); /* still the caller's after stem_buffer_destroy */
    f.FreeMemory(dev, mem, NULL);
    return rc;
}

/* A caller's own instance, device and queue as native_queue (stem_vulkan_queue):
 * libstem runs on them (the wrapped-buffer prefill above, reference-checked),
 * leaves them alive, and refuses descriptions it can tell are wrong. */
static int vulkan_caller_queue(uint32_t device, uint32_t backend_index)
{
    void *lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    CHECK(lib, "dlopen libvulkan.so.1");
    PFN_vkGetInstanceProcAddr gipa;
    *(void **)&gipa = dlsym(lib, "vkGetInstanceProcAddr");
    CHECK(gipa, "vkGetInstanceProcAddr");
#define GLOBAL(name) PFN_vk##name name = (PFN_vk##name)gipa(NULL, "vk" #name)
    GLOBAL(CreateInstance);
#undef GLOBAL
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.apiVersion = VK_API_VERSION_1_1;
    VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ici.pApplicationInfo = &app;
    VkInstance inst = VK_NULL_HANDLE;
    CHECK(CreateInstance(&ici, NULL, &inst) == VK_SUCCESS, "vkCreateInstance");
#define INST(name) PFN_vk##name name = (PFN_vk##name)gipa(inst, "vk" #name)
    INST(DestroyInstance);
    INST(EnumeratePhysicalDevices);
    INST(GetPhysicalDeviceQueueFamilyProperties);
    INST(CreateDevice);
    INST(GetDeviceProcAddr);
#undef INST
    VkPhysicalDevice pds[16];
    uint32_t n = 16;
    CHECK(EnumeratePhysicalDevices(inst, &n, pds) >= 0 && backend_index < n,
          "vulkan device %u of the caller's instance", (unsigned)backend_index);
    VkPhysicalDevice pd = pds[backend_index];
    VkQueueFamilyProperties qf[16];
    uint32_t nq = 16;
    GetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    uint32_t fam = nq;
    for (uint32_t i = 0; i < nq && fam == nq; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            fam = i;
    CHECK(fam < nq, "a compute queue family");
    const float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qi.queueFamilyIndex = fam;
    qi.queueCount = 1;
    qi.pQueuePriorities = &prio;
    VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    VkDevice dev = VK_NULL_HANDLE;
    CHECK(CreateDevice(pd, &di, NULL, &dev) == VK_SUCCESS, "vkCreateDevice");
    PFN_vkGetDeviceQueue GetDeviceQueue = (PFN_vkGetDeviceQueue)GetDeviceProcAddr(dev, "vkGetDeviceQueue");
    PFN_vkDeviceWaitIdle DeviceWaitIdle = (PFN_vkDeviceWaitIdle)GetDeviceProcAddr(dev, "vkDeviceWaitIdle");
    PFN_vkDestroyDevice DestroyDevice = (PFN_vkDestroyDevice)GetDeviceProcAddr(dev, "vkDestroyDevice");
    VkQueue queue = VK_NULL_HANDLE;
    GetDeviceQueue(dev, fam, 0, &queue);

    stem_vulkan_queue vq;
    stem_vulkan_queue_init(&vq);
    vq.instance = inst;
    vq.physical_device = pd;
    vq.device = dev;
    vq.queue = queue;
    vq.queue_family = fam;
    stem_context_desc d;
    stem_context_desc_init(&d);
    d.device = (int32_t)device;
    d.native_queue = &vq;
    stem_context *ctx = NULL;
    stem_status st = stem_context_create(&d, &ctx);
    CHECK(st == STEM_OK && ctx, "stem_context_create(stem_vulkan_queue): %s", stem_last_error());
    stem_native_handles h;
    stem_native_handles_init(&h);
    CHECK(stem_context_get_native(ctx, &h) == STEM_OK && h.context == (void *)dev &&
              h.queue == (void *)queue && h.instance == (void *)inst && h.queue_family == fam,
          "stem_context_get_native gives the caller's handles");
    int rc = test_vulkan(ctx); /* buffers on the caller's device, work on its queue */
    CHECK(stem_context_destroy(ctx) == STEM_OK, "stem_context_destroy");
    CHECK(DeviceWaitIdle(dev) == VK_SUCCESS, "the caller's device outlives the context");

    /* Descriptions libstem can tell are wrong. */
    stem_vulkan_queue bad = vq;
    bad.struct_size = 0;
    d.native_queue = &bad;
    ctx = NULL;
    st = stem_context_create(&d, &ctx);
    CHECK(st == STEM_ERR_INVALID_ARGUMENT && !ctx, "struct_size 0 gave %s", stem_status_name(st));
    bad = vq;
    bad.device = NULL;
    st = stem_context_create(&d, &ctx);
    CHECK(st == STEM_ERR_INVALID_ARGUMENT && !ctx, "no device gave %s", stem_status_name(st));
    bad = vq;
    bad.queue_family = nq;
    st = stem_context_create(&d, &ctx);
    CHECK(st == STEM_ERR_INVALID_ARGUMENT && !ctx, "queue_family %u gave %s", (unsigned)nq,
          stem_status_name(st));
    CHECK(strstr(stem_last_error(), "queue_family") != NULL, "message '%s'", stem_last_error());
    CHECK(DeviceWaitIdle(dev) == VK_SUCCESS, "the caller's device after refusals");
    DestroyDevice(dev, NULL);
    DestroyInstance(inst, NULL);
    return rc;
}

#endif /* HAVE_VK */

/* ------------------------------------------------------------------- CUDA */

typedef int CUres;
typedef struct cu_fns {
    void *lib;
    CUres (*Init)(unsigned);
    CUres (*DeviceGet)(int *, int);
    CUres (*CtxCreate)(void **, unsigned, int);
    CUres (*CtxDestroy)(void *);
    CUres (*CtxGetCurrent)(void **);
    CUres (*CtxPushCurrent)(void *);
    CUres (*CtxPopCurrent)(void **);
    CUres (*StreamCreate)(void **, unsigned);
    CUres (*StreamDestroy)(void *);
    CUres (*StreamSynchronize)(void *);
    CUres (*MemAlloc)(unsigned long long *, size_t);
    CUres (*MemFree)(unsigned long long);
    CUres (*MemcpyHtoD)(unsigned long long, const void *, size_t);
    CUres (*MemcpyDtoH)(void *, unsigned long long, size_t);
} cu_fns;
static cu_fns g_cu;

static int cu_write(native_mem *m, size_t off, const void *src, size_t n)
{
    return g_cu.MemcpyHtoD((unsigned long long)(uintptr_t)m->handle + off, src, n) != 0;
}
static int cu_read(native_mem *m, size_t off, void *dst, size_t n)
{
    return g_cu.MemcpyDtoH(dst, (unsigned long long)(uintptr_t)m->handle + off, n) != 0;
}

/* Runs on a context made with a caller stream: the caller's own current
 * context (a second one, made by the test) must be current again after
 * every libstem call. */
static int test_cuda(uint32_t device)
{
    stem_device_info info;
    stem_device_info_init(&info);
    stem_device_get_info(device, &info);
    const char *driver = getenv("STEM_CUDA_LIBRARY"); /* the driver libstem uses */
    if (!driver || !*driver)
        driver = "libcuda.so.1";
    g_cu.lib = dlopen(driver, RTLD_NOW | RTLD_LOCAL);
    CHECK(g_cu.lib, "dlopen %s", driver);
#define SYM(field, name) *(void **)&g_cu.field = dlsym(g_cu.lib, name)
    SYM(Init, "cuInit");
    SYM(DeviceGet, "cuDeviceGet");
    SYM(CtxCreate, "cuCtxCreate_v2");
    SYM(CtxDestroy, "cuCtxDestroy_v2");
    SYM(CtxGetCurrent, "cuCtxGetCurrent");
    SYM(CtxPushCurrent, "cuCtxPushCurrent_v2");
    SYM(CtxPopCurrent, "cuCtxPopCurrent_v2");
    SYM(StreamCreate, "cuStreamCreate");
    SYM(StreamDestroy, "cuStreamDestroy_v2");
    SYM(StreamSynchronize, "cuStreamSynchronize");
    SYM(MemAlloc, "cuMemAlloc_v2");
    SYM(MemFree, "cuMemFree_v2");
    SYM(MemcpyHtoD, "cuMemcpyHtoD_v2");
    SYM(MemcpyDtoH, "cuMemcpyDtoH_v2");
#undef SYM
    CHECK(g_cu.Init && g_cu.MemAlloc && g_cu.CtxGetCurrent && g_cu.CtxPushCurrent,
          "CUDA entry points");
    CHECK(g_cu.Init(0) == 0, "cuInit");
    int ordinal = (int)info.backend_index;
    const char *o = strstr(info.detail, "ordinal ");
    if (o)
        ordinal = atoi(o + 8);
    int dev = 0;
    CHECK(g_cu.DeviceGet(&dev, ordinal) == 0, "cuDeviceGet");
    /* The caller's context: its own (not the primary one), current on this
     * thread. Its memory and stream are visible to the primary context
     * only through unified addressing, so the test's memory and stream
     * come from the context libstem reports. */
    void *mine = NULL, *cur = NULL;
    /* Without cuCtxCreate_v2 the caller's state is "no current context",
     * which libstem must leave as it found it just the same. */
    if (g_cu.CtxCreate)
        CHECK(g_cu.CtxCreate(&mine, 0, dev) == 0, "cuCtxCreate");
    else
        printf("  cuda: no cuCtxCreate_v2; checking that no context stays current\n");

    stem_context_desc d;
    stem_context_desc_init(&d);
    d.device = (int32_t)device;
    stem_context *probe = NULL;
    CHECK(stem_context_create(&d, &probe) == STEM_OK, "stem_context_create");
    CHECK(g_cu.CtxGetCurrent(&cur) == 0 && cur == mine, "context create changed the current context");
    stem_native_handles h;
    stem_native_handles_init(&h);
    CHECK(stem_context_get_native(probe, &h) == STEM_OK && h.context, "native handles");
    void *primary = h.context, *stream = NULL;
    CHECK(g_cu.CtxPushCurrent(primary) == 0, "push the primary context");
    /* A blocking stream: ordered after the test's copies on the legacy stream. */
    CHECK(g_cu.StreamCreate(&stream, 0) == 0, "cuStreamCreate");
    const layout l = make_layout();
    unsigned long long p = 0;
    CHECK(g_cu.MemAlloc(&p, PAD + l.bytes + TAIL) == 0, "cuMemAlloc");
    g_cu.CtxPopCurrent(&cur);
    /* The probe context keeps its hold on the primary context until the end,
     * as a framework that made the memory and the stream would: the last
     * release would destroy the primary context with them. */

    d.native_queue = stream;
    stem_context *ctx = NULL;
    CHECK(stem_context_create(&d, &ctx) == STEM_OK, "stem_context_create(native_queue)");
    native_handles_match(ctx, STEM_BACKEND_CUDA);
    stem_context_get_native(ctx, &h);
    CHECK(h.queue == stream, "the context does not run on the caller's stream");
    /* The test's copies run in the primary context too. */
    native_mem m = {.handle = (void *)(uintptr_t)p, .write = cu_write, .read = cu_read};
    /* run_prefill does vendor copies: run it with the primary context
     * pushed, then check the caller's one is back on top afterwards. */
    CHECK(g_cu.CtxPushCurrent(primary) == 0, "push");
    int rc = run_prefill(ctx, &m, "cuda");
    g_cu.CtxPopCurrent(&cur);
    CHECK(cur == primary, "libstem left another context on top during the run");
    CHECK(g_cu.CtxGetCurrent(&cur) == 0 && cur == mine, "the caller's context is not current");
    if (rc == 0)
        rc = misuse(ctx, (void *)(uintptr_t)p, "cuda");
    if (rc == 0) {
        static char host_bytes[64];
        rc = expect_refused(ctx, host_bytes, 0, 64, STEM_ERR_INVALID_ARGUMENT,
                            "cuda: a host pointer");
    }
    if (rc == 0)
        rc = expect_refused(ctx, (void *)(uintptr_t)p, PAD, PAD + l.bytes + TAIL,
                            STEM_ERR_INVALID_ARGUMENT, "cuda: a range past the allocation");
    CHECK(g_cu.CtxGetCurrent(&cur) == 0 && cur == mine, "the caller's context is not current");
    stem_context_destroy(ctx);
    CHECK(g_cu.CtxGetCurrent(&cur) == 0 && cur == mine, "destroy changed the current context");
    g_cu.CtxPushCurrent(primary);
    g_cu.MemFree(p);
    g_cu.StreamDestroy(stream);
    g_cu.CtxPopCurrent(&cur);
    stem_context_destroy(probe);
    if (mine && g_cu.CtxDestroy)
        g_cu.CtxDestroy(mine);
    if (rc == 0)
        printf("  cuda: the caller's current context and stream survived every call\n");
    return rc;
}

/* ------------------------------------------------------------------- main */

int main(void)
{
    uint32_t count = 0;
    stem_device_count(&count);
    int ran[TEST_BACKENDS] = {0};
    for (uint32_t i = 0; i < count; i++) {
        stem_device_info info;
        stem_device_info_init(&info);
        if (stem_device_get_info(i, &info) != STEM_OK || !hardening_device_selected(&info))
            continue;
        if ((int)info.backend >= TEST_BACKENDS || ran[info.backend]) /* one device per backend */
            continue;
        ran[info.backend] = 1;
        printf("%s: %s\n", stem_backend_name(info.backend), info.name);
        if (info.backend == STEM_BACKEND_CUDA) {
            test_cuda(i);
            continue;
        }
        stem_context_desc d;
        stem_context_desc_init(&d);
        d.device = (int32_t)i;
        stem_context *ctx = NULL;
        stem_status st = stem_context_create(&d, &ctx);
        if (st != STEM_OK) {
            printf("FAIL: stem_context_create on %s: %s\n", info.name, stem_last_error());
            g_failures++;
            continue;
        }
        if (info.backend == STEM_BACKEND_CPU)
            test_cpu(ctx);
#ifdef HAVE_CL
        else if (info.backend == STEM_BACKEND_OPENCL) {
            stem_native_handles h;
            stem_native_handles_init(&h);
            stem_context_get_native(ctx, &h);
            if (test_opencl(ctx) == 0)
                test_opencl_caller_queue(i, (cl_device_id)h.device);
        }
#endif
#ifdef HAVE_VK
        else if (info.backend == STEM_BACKEND_VULKAN) {
            test_vulkan(ctx);
            vulkan_caller_queue(i, info.backend_index);
        }
#endif
        else
            printf("  %s: vendor headers missing at build time: skipped\n", info.name);
        stem_context_destroy(ctx);
    }
    const char *req = getenv("STEM_TEST_REQUIRE");
    for (int b = 0; b < TEST_BACKENDS; b++) {
        if (ran[b])
            continue;
        const char *name = stem_backend_name((stem_backend)b);
        const size_t len = strlen(name);
        int required = 0;
        for (const char *p = req; p && (p = strstr(p, name)) != NULL; p += len)
            required |= (p == req || p[-1] == ',') && (p[len] == '\0' || p[len] == ',');
        if (required) {
            printf("FAIL: %s is in STEM_TEST_REQUIRE but has no device\n", name);
            g_failures++;
        } else {
            printf("%s: no device here (or not in STEM_TEST_ONLY): skipped\n", name);
        }
    }
    printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "PASSED", g_failures);
    return g_failures ? 1 : 0;
}
