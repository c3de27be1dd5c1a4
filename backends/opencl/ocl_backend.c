/* OpenCL backend: ops table, probe, contexts, buffers, plans. */
#include "ocl_common.h"

#include <stdio.h>

static void dev_string(const stem_ocl_api *cl, cl_device_id d, cl_device_info what, char *out,
                       size_t size)
{
    out[0] = '\0';
    if (cl->clGetDeviceInfo(d, what, size, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[size - 1] = '\0';
}

static void platform_string(const stem_ocl_api *cl, cl_platform_id p, cl_platform_info what,
                            char *out, size_t size)
{
    out[0] = '\0';
    if (cl->clGetPlatformInfo(p, what, size, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[size - 1] = '\0';
}

static int dev_is_gpu(const stem_ocl_api *cl, cl_device_id d)
{
    cl_device_type type = 0;
    if (cl->clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS)
        return 0;
    return (type & CL_DEVICE_TYPE_GPU) != 0;
}

static void fill_info(const stem_ocl_api *cl, const stem_ocl_device *od, stem_device_info *info)
{
    stem_device_info_init(info);
    info->backend = STEM_BACKEND_OPENCL;
    info->is_gpu = dev_is_gpu(cl, od->device);
    dev_string(cl, od->device, CL_DEVICE_NAME, info->name, sizeof info->name);
    cl_ulong mem = 0;
    cl_uint cus = 0;
    if (cl->clGetDeviceInfo(od->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL) ==
        CL_SUCCESS)
        info->memory_bytes = mem;
    if (cl->clGetDeviceInfo(od->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL) ==
        CL_SUCCESS)
        info->compute_units = cus;
    char plat[96], drv[64], ver[64];
    cl_uint mhz = 0; /* the clock a peak rate is computed from (bench/results/opencl.md) */
    platform_string(cl, od->platform, CL_PLATFORM_NAME, plat, sizeof plat);
    dev_string(cl, od->device, CL_DRIVER_VERSION, drv, sizeof drv);
    dev_string(cl, od->device, CL_DEVICE_VERSION, ver, sizeof ver);
    if (cl->clGetDeviceInfo(od->device, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof mhz, &mhz, NULL) !=
        CL_SUCCESS)
        mhz = 0;
    snprintf(info->detail, sizeof info->detail, "platform=%s driver=%s clock=%u MHz %s", plat, drv,
             (unsigned)mhz, ver);
}

static void ocl_probe(stem_probe_result *out)
{
    memset(out, 0, sizeof *out);
    const char *why = NULL;
    const stem_ocl_api *cl = stem_ocl_api_get(&why);
    if (!cl) {
        snprintf(out->reason, sizeof out->reason, "%s", why ? why : "no OpenCL runtime");
        return;
    }
    stem_ocl_device devs[STEM_MAX_DEVICES_PER_BACKEND];
    const uint32_t n = stem_ocl_enumerate(cl, devs, STEM_MAX_DEVICES_PER_BACKEND);
    for (uint32_t i = 0; i < n; i++)
        fill_info(cl, &devs[i], &out->devices[i]);
    out->device_count = n;
    if (n == 0)
        snprintf(out->reason, sizeof out->reason, "no OpenCL platform with a device");
}

static int has_extension(const stem_ocl_api *cl, cl_device_id d, const char *ext)
{
    size_t size = 0;
    if (cl->clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS || size == 0)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    int found = 0;
    if (cl->clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, size, s, NULL) == CL_SUCCESS) {
        s[size] = '\0';
        const size_t len = strlen(ext);
        for (const char *p = strstr(s, ext); p; p = strstr(p + 1, ext))
            if ((p == s || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0')) {
                found = 1;
                break;
            }
    }
    free(s);
    return found;
}

static void query_limits(const stem_ocl_api *cl, cl_device_id d, stem_ocl_limits *lim)
{
    memset(lim, 0, sizeof *lim);
    size_t wg = 0;
    cl_ulong local = 0;
    if (cl->clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) != CL_SUCCESS)
        wg = 64;
    if (cl->clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL) != CL_SUCCESS)
        local = 16384;
    lim->max_wg = wg;
    lim->local_bytes = local;
    lim->has_fp16 = has_extension(cl, d, "cl_khr_fp16");
    lim->has_fp64 = has_extension(cl, d, "cl_khr_fp64");
    lim->is_gpu = dev_is_gpu(cl, d);
    const char *tiled = getenv("STEM_OPENCL_TILED");
    lim->tiled = lim->is_gpu || (tiled && strcmp(tiled, "1") == 0);
    cl_uint vw = 0;
    if (cl->clGetDeviceInfo(d, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof vw, &vw, NULL) !=
        CL_SUCCESS)
        vw = 4;
    lim->native_vw = (int)vw;
    cl_bool unified = CL_FALSE;
    if (cl->clGetDeviceInfo(d, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL) ==
        CL_SUCCESS)
        lim->host_unified = unified == CL_TRUE && !lim->is_gpu;
}

static void context_free(stem_ocl_context *c)
{
    if (!c)
        return;
    stem_ocl_programs_release(c);
    if (c->queue)
        c->cl->clReleaseCommandQueue(c->queue);
    if (c->context)
        c->cl->clReleaseContext(c->context);
    free(c->cache_dir);
    free(c);
}

static stem_status ocl_context_init(stem_context *ctx, uint32_t backend_index)
{
    const char *why = NULL;
    const stem_ocl_api *cl = stem_ocl_api_get(&why);
    if (!cl)
        return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE, "opencl: %s", why);
    stem_ocl_device devs[STEM_MAX_DEVICES_PER_BACKEND];
    const uint32_t n = stem_ocl_enumerate(cl, devs, STEM_MAX_DEVICES_PER_BACKEND);
    if (backend_index >= n)
        return stem_set_error(STEM_ERR_BACKEND_UNAVAILABLE, "opencl: device %u gone (%u now)",
                              (unsigned)backend_index, (unsigned)n);
    stem_ocl_context *c = calloc(1, sizeof *c);
    if (!c)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "opencl context: out of host memory");
    c->cl = cl;
    c->platform = devs[backend_index].platform;
    c->device = devs[backend_index].device;
    query_limits(cl, c->device, &c->limits);
    if (ctx->desc.cache_dir && ctx->desc.cache_dir[0]) {
        const size_t len = strlen(ctx->desc.cache_dir);
        c->cache_dir = malloc(len + 1);
        if (!c->cache_dir) {
            context_free(c);
            return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "opencl context: out of host memory");
        }
        memcpy(c->cache_dir, ctx->desc.cache_dir, len + 1);
    }
    {
        char plat[160], name[256], drv[128], ver[128];
        platform_string(cl, c->platform, CL_PLATFORM_NAME, plat, sizeof plat);
        dev_string(cl, c->device, CL_DEVICE_NAME, name, sizeof name);
        dev_string(cl, c->device, CL_DRIVER_VERSION, drv, sizeof drv);
        dev_string(cl, c->device, CL_DEVICE_VERSION, ver, sizeof ver);
        snprintf(c->device_key, sizeof c->device_key, "%s|%s|%s|%s", plat, name, drv, ver);
    }
    cl_int err = CL_SUCCESS;
    if (ctx->desc.native_queue) {
        /* The caller's queue: run on it, in the context it belongs to. */
        cl_command_queue q = (cl_command_queue)ctx->desc.native_queue;
        cl_device_id qdev = NULL;
        cl_context qctx = NULL;
        err = cl->clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL);
        if (err == CL_SUCCESS)
            err = cl->clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL);
        if (err != CL_SUCCESS) {
            context_free(c);
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "opencl: native_queue is not a command queue (%s)",
                                  stem_ocl_error_name(err));
        }
        if (qdev != c->device) {
            context_free(c);
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "opencl: native_queue belongs to another device than "
                                  "opencl device %u",
                                  (unsigned)backend_index);
        }
        cl->clRetainCommandQueue(q);
        cl->clRetainContext(qctx);
        c->queue = q;
        c->context = qctx;
    } else {
        const cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                               (cl_context_properties)c->platform, 0};
        c->context = cl->clCreateContext(props, 1, &c->device, NULL, NULL, &err);
        if (err != CL_SUCCESS) {
            c->context = NULL;
            context_free(c);
            return stem_ocl_fail(err, "clCreateContext");
        }
        c->queue = cl->clCreateCommandQueue(c->context, c->device, 0, &err);
        if (err != CL_SUCCESS) {
            c->queue = NULL;
            context_free(c);
            return stem_ocl_fail(err, "clCreateCommandQueue");
        }
    }
    ctx->impl = c;
    return STEM_OK;
}

static void ocl_context_fini(stem_context *ctx)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    if (c && c->queue)
        c->cl->clFinish(c->queue);
    context_free(c);
    ctx->impl = NULL;
}

static stem_status ocl_buffer_alloc(stem_context *ctx, stem_buffer *buf, size_t bytes)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    cl_int err = CL_SUCCESS;
    const size_t size = bytes ? bytes : 1;
    cl_mem m = c->cl->clCreateBuffer(c->context, CL_MEM_READ_WRITE, size, NULL, &err);
    if (err != CL_SUCCESS || !m) {
        const stem_status st = stem_ocl_fail(err, "clCreateBuffer");
        return st == STEM_ERR_BACKEND_API && err == CL_INVALID_BUFFER_SIZE
                   ? STEM_ERR_DEVICE_OUT_OF_MEMORY
                   : st;
    }
    /* Zeroed so a fresh buffer reads the same on every run and backend. */
    const cl_uchar zero = 0;
    err = c->cl->clEnqueueFillBuffer(c->queue, m, &zero, 1, 0, size, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = c->cl->clFinish(c->queue); /* allocation failures surface here, not later */
    if (err != CL_SUCCESS) {
        c->cl->clReleaseMemObject(m);
        return stem_ocl_fail(err, "clEnqueueFillBuffer (zeroing a new buffer)");
    }
    buf->impl = m;
    buf->host = NULL;
    return STEM_OK;
}

static stem_status ocl_buffer_wrap_host(stem_context *ctx, stem_buffer *buf, void *host,
                                        size_t bytes)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    /* In place only where device and host share memory (PoCL on the CPU);
     * a discrete GPU would need map/unmap around every stage. */
    if (!bytes)
        return ocl_buffer_alloc(ctx, buf, 0); /* nothing to share; never read */
    if (!c->limits.host_unified)
        return stem_set_error(STEM_ERR_UNSUPPORTED,
                              "opencl: stem_buffer_wrap_host needs a device sharing host memory "
                              "(this one does not); use stem_buffer_create and "
                              "stem_buffer_write");
    cl_int err = CL_SUCCESS;
    cl_mem m = c->cl->clCreateBuffer(c->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes,
                                     host, &err);
    if (err != CL_SUCCESS || !m)
        return stem_ocl_fail(err, "clCreateBuffer (CL_MEM_USE_HOST_PTR)");
    buf->impl = m;
    buf->host = NULL; /* the core reads nothing behind the runtime's back */
    return STEM_OK;
}

/* The caller's cl_mem, retained (or a sub-buffer of it at offset): the
 * runtime keeps the memory alive until both sides released it. */
static stem_status ocl_buffer_wrap_native(stem_context *ctx, stem_buffer *buf, void *handle,
                                          size_t offset, size_t bytes)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    const stem_ocl_api *cl = c->cl;
    cl_mem m = (cl_mem)handle;
    cl_context mctx = NULL;
    size_t size = 0;
    cl_mem_object_type type = 0;
    cl_int err = cl->clGetMemObjectInfo(m, CL_MEM_TYPE, sizeof type, &type, NULL);
    if (err == CL_SUCCESS)
        err = cl->clGetMemObjectInfo(m, CL_MEM_CONTEXT, sizeof mctx, &mctx, NULL);
    if (err == CL_SUCCESS)
        err = cl->clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof size, &size, NULL);
    if (err != CL_SUCCESS || type != CL_MEM_OBJECT_BUFFER)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_buffer_wrap_native: handle is not an OpenCL buffer (%s)",
                              err != CL_SUCCESS ? stem_ocl_error_name(err) : "not a buffer");
    if (mctx != c->context)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_buffer_wrap_native: the cl_mem belongs to another cl_context "
                              "than the stem context's (make it in the one "
                              "stem_context_get_native returns, or pass your queue as "
                              "native_queue)");
    if (offset > size || bytes > size - offset)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_buffer_wrap_native: [%zu, %zu + %zu) exceeds the cl_mem's "
                              "%zu bytes",
                              offset, offset, bytes, size);
    if (offset == 0) {
        err = cl->clRetainMemObject(m);
        if (err != CL_SUCCESS)
            return stem_ocl_fail(err, "clRetainMemObject");
        buf->impl = m;
    } else {
        cl_uint align_bits = 0;
        c->cl->clGetDeviceInfo(c->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits,
                               &align_bits, NULL);
        const size_t align = align_bits >= 8 ? align_bits / 8 : 1;
        if (offset % align)
            return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                                  "stem_buffer_wrap_native: offset %zu is not a multiple of this "
                                  "OpenCL device's base address alignment (%zu bytes)",
                                  offset, align);
        const cl_buffer_region region = {offset, bytes};
        cl_mem sub = cl->clCreateSubBuffer(m, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION,
                                           &region, &err);
        if (err != CL_SUCCESS || !sub)
            return stem_ocl_fail(err, "clCreateSubBuffer");
        buf->impl = sub;
    }
    buf->host = NULL;
    return STEM_OK;
}

static void ocl_context_native(const stem_context *ctx, stem_native_handles *h)
{
    const stem_ocl_context *c = stem_ocl_ctx(ctx);
    h->context = c->context;
    h->queue = c->queue;
    h->device = c->device;
}

static void ocl_buffer_free(stem_context *ctx, stem_buffer *buf)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    if (buf->impl)
        c->cl->clReleaseMemObject(stem_ocl_mem(buf)); /* deferred by the runtime while in use */
    buf->impl = NULL;
}

static stem_status ocl_buffer_write(stem_context *ctx, stem_buffer *buf, size_t offset,
                                    const void *src, size_t bytes)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    if (!bytes)
        return STEM_OK;
    const cl_int err = c->cl->clEnqueueWriteBuffer(c->queue, stem_ocl_mem(buf), CL_TRUE, offset,
                                                   bytes, src, 0, NULL, NULL);
    return err == CL_SUCCESS ? STEM_OK : stem_ocl_fail(err, "clEnqueueWriteBuffer");
}

static stem_status ocl_buffer_read(stem_context *ctx, stem_buffer *buf, size_t offset, void *dst,
                                   size_t bytes)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    if (!bytes)
        return STEM_OK;
    const cl_int err = c->cl->clEnqueueReadBuffer(c->queue, stem_ocl_mem(buf), CL_TRUE, offset,
                                                  bytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? STEM_OK : stem_ocl_fail(err, "clEnqueueReadBuffer");
}

static stem_status ocl_plan_check(const stem_context *ctx, const stem_attention_desc *desc,
                                  const stem_config *cfg)
{
    /* dtypes and head_dim: declared in the ops table, checked by the core */
    const int64_t n = (desc->kv_len + cfg->block_size - 1) / cfg->block_size; /* key blocks */
    stem_ocl_shape shape;
    return stem_ocl_shape_choose(&stem_ocl_ctx(ctx)->limits, desc, cfg, n, &shape);
}

static void ocl_plan_fini(stem_plan *plan)
{
    stem_ocl_plan *p = plan->impl;
    if (!p)
        return;
    const stem_ocl_api *cl = stem_ocl_ctx(plan->ctx)->cl;
    cl_kernel ks[] = {p->k_phase_sum,   p->k_vgroup_max, p->k_value_bonus, p->k_score_gemm,
                      p->k_xattn_score, p->k_select,     p->k_attention, p->k_row_attention};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        if (ks[i])
            cl->clReleaseKernel(ks[i]);
    if (p->budget)
        cl->clReleaseMemObject(p->budget);
    if (p->program)
        cl->clReleaseProgram(p->program);
    free(p);
    plan->impl = NULL;
}

static const char *dtype_macro(stem_dtype t)
{
    return t == STEM_DTYPE_F16 ? "1" : t == STEM_DTYPE_BF16 ? "2" : "0";
}

static stem_status ocl_plan_init(stem_plan *plan)
{
    stem_ocl_context *c = stem_ocl_ctx(plan->ctx);
    const stem_ocl_api *cl = c->cl;
    stem_ocl_plan *p = calloc(1, sizeof *p);
    if (!p)
        return stem_set_error(STEM_ERR_OUT_OF_MEMORY, "opencl plan: out of host memory");
    plan->impl = p;
    stem_status st = stem_ocl_shape_choose(&c->limits, &plan->desc, &plan->cfg, plan->n_blocks,
                                           &p->shape);
    if (st != STEM_OK) {
        ocl_plan_fini(plan);
        return st;
    }
    /* Only what sizes local arrays or selects code paths is a -D; the rest
     * are kernel arguments, so plans share programs. */
    char options[512], attn[128];
    const char *extra = getenv("STEM_OPENCL_BUILD_OPTIONS"); /* tests, tuning */
    if (c->limits.tiled)
        snprintf(attn, sizeof attn, "-DBQ=%d -DKT=%d -DRPT=%d -DTX=%d -DKPT=%d%s", p->shape.bq,
                 p->shape.kt, p->shape.rpt, p->shape.tx, p->shape.kpt,
                 p->shape.slice ? "" : p->shape.prefetch ? " -DKV_PREFETCH=1" : "");
    if (c->limits.tiled && p->shape.slice) /* the d-sliced kernel (attention_slice.cl) */
        snprintf(attn + strlen(attn), sizeof attn - strlen(attn),
                 " -DSLICE=1 -DDS=%d -DVS=%d -DSPF=%d", p->shape.ds, p->shape.vs,
                 p->shape.prefetch);
    else if (!c->limits.tiled)
        snprintf(attn, sizeof attn, "-DBQ=%d -DVW=%d", p->shape.bq, p->shape.vw);
    snprintf(options, sizeof options,
             "-cl-std=CL1.2 -DIN_DTYPE=%s -DHEAD_DIM=%d %s "
             "-DSEL_CAP=%d -DSEL_LS=%d -DHAS_FP64=%d -DHAS_FP16=%d %s",
             dtype_macro(plan->desc.dtype), (int)plan->desc.head_dim, attn, p->shape.sel_cap,
             p->shape.sel_ls, c->limits.has_fp64, c->limits.has_fp16, extra ? extra : "");
    st = stem_ocl_program_get(c, options, &p->program);
    if (st != STEM_OK) {
        ocl_plan_fini(plan);
        return st;
    }
    struct {
        cl_kernel *k;
        const char *name;
    } kernels[] = {{&p->k_phase_sum, "phase_sum"},       {&p->k_vgroup_max, "vgroup_max"},
                   {&p->k_value_bonus, "value_bonus"},   {&p->k_score_gemm, "score_gemm"},
                   {&p->k_xattn_score, "xattn_score"},   {&p->k_select, "select_rows"},
                   {&p->k_attention, "block_attention"}, {&p->k_row_attention, "row_attention"}};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++) {
        /* The program holds one of the two attention kernels. */
        if (kernels[i].k == (c->limits.tiled ? &p->k_row_attention : &p->k_attention))
            continue;
        cl_int err = CL_SUCCESS;
        *kernels[i].k = cl->clCreateKernel(p->program, kernels[i].name, &err);
        if (err != CL_SUCCESS) {
            *kernels[i].k = NULL;
            ocl_plan_fini(plan);
            return stem_ocl_fail(err, kernels[i].name);
        }
    }
    cl_int err = CL_SUCCESS;
    const size_t bytes = (size_t)plan->n_blocks * sizeof(int32_t);
    p->budget = cl->clCreateBuffer(c->context, CL_MEM_READ_ONLY, bytes, NULL, &err);
    if (err == CL_SUCCESS)
        err = cl->clEnqueueWriteBuffer(c->queue, p->budget, CL_TRUE, 0, bytes, plan->budget, 0,
                                       NULL, NULL);
    if (err != CL_SUCCESS) {
        if (!p->budget || err != CL_SUCCESS)
            st = stem_ocl_fail(err, "budget upload");
        ocl_plan_fini(plan);
        return st;
    }
    return STEM_OK;
}

static stem_status ocl_synchronize(stem_context *ctx)
{
    stem_ocl_context *c = stem_ocl_ctx(ctx);
    const cl_int err = c->cl->clFinish(c->queue);
    return err == CL_SUCCESS ? STEM_OK : stem_ocl_fail(err, "clFinish");
}

const stem_backend_ops stem_opencl_backend_ops = {
    .kind = STEM_BACKEND_OPENCL,
    .name = "opencl",
    .probe = ocl_probe,
    .context_init = ocl_context_init,
    .context_fini = ocl_context_fini,
    .buffer_alloc = ocl_buffer_alloc,
    .buffer_wrap_host = ocl_buffer_wrap_host,
    .buffer_wrap_native = ocl_buffer_wrap_native,
    .context_native = ocl_context_native,
    .buffer_free = ocl_buffer_free,
    .buffer_write = ocl_buffer_write,
    .buffer_read = ocl_buffer_read,
    .plan_init = ocl_plan_init,
    .plan_fini = ocl_plan_fini,
    .plan_check = ocl_plan_check,
    .score = stem_ocl_score,
    .select = stem_ocl_select,
    .attention = stem_ocl_attention,
    .synchronize = ocl_synchronize,
    .caps = STEM_CAP_Q_OFFSET | STEM_CAP_VSTATS | STEM_CAP_LSE | STEM_CAP_VARLEN | STEM_CAP_PAGED,
    .copy_rects = stem_ocl_copy_rects,
    .dtypes = (1u << STEM_DTYPE_F32) | (1u << STEM_DTYPE_F16) | (1u << STEM_DTYPE_BF16),
    .head_dim_min = 8,
    .head_dim_max = 256,
    .head_dim_step = 8,
};
