/* OpenCL backend: runtime entry points (opened with dlopen), per-context
 * and per-plan state shared by its files. */
#ifndef STEM_OCL_COMMON_H
#define STEM_OCL_COMMON_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h> /* types and constants only; nothing is linked against */

#include "stem_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Every runtime function the backend calls. The pointer types come from the
 * declarations in cl.h, so a wrong signature cannot slip in. */
#define STEM_OCL_FUNCTIONS(X)                                                                      \
    X(clGetPlatformIDs)                                                                            \
    X(clGetPlatformInfo)                                                                           \
    X(clGetDeviceIDs)                                                                              \
    X(clGetDeviceInfo)                                                                             \
    X(clCreateContext)                                                                             \
    X(clRetainContext)                                                                             \
    X(clReleaseContext)                                                                            \
    X(clCreateCommandQueue)                                                                        \
    X(clRetainCommandQueue)                                                                        \
    X(clReleaseCommandQueue)                                                                       \
    X(clGetCommandQueueInfo)                                                                       \
    X(clCreateBuffer)                                                                              \
    X(clReleaseMemObject)                                                                          \
    X(clRetainMemObject)                                                                           \
    X(clGetMemObjectInfo)                                                                          \
    X(clCreateSubBuffer)                                                                           \
    X(clEnqueueWriteBuffer)                                                                        \
    X(clEnqueueReadBuffer)                                                                         \
    X(clEnqueueFillBuffer)                                                                         \
    X(clEnqueueCopyBuffer)                                                                         \
    X(clCreateProgramWithSource)                                                                   \
    X(clCreateProgramWithBinary)                                                                   \
    X(clBuildProgram)                                                                              \
    X(clGetProgramBuildInfo)                                                                       \
    X(clGetProgramInfo)                                                                            \
    X(clRetainProgram)                                                                             \
    X(clReleaseProgram)                                                                            \
    X(clCreateKernel)                                                                              \
    X(clReleaseKernel)                                                                             \
    X(clSetKernelArg)                                                                              \
    X(clEnqueueNDRangeKernel)                                                                      \
    X(clFlush)                                                                                     \
    X(clFinish)

typedef struct stem_ocl_api {
#define STEM_OCL_FIELD(fn) __typeof__(&fn) fn;
    STEM_OCL_FUNCTIONS(STEM_OCL_FIELD)
#undef STEM_OCL_FIELD
} stem_ocl_api;

/* The loaded runtime, or NULL with a reason (ocl_loader.c). Thread-safe. */
const stem_ocl_api *stem_ocl_api_get(const char **reason);

/* One enumerated device (platform order, then device order). */
typedef struct stem_ocl_device {
    cl_platform_id platform;
    cl_device_id device;
} stem_ocl_device;

/* Enumerates every device of every platform (at most max); returns the count. */
uint32_t stem_ocl_enumerate(const stem_ocl_api *cl, stem_ocl_device *out, uint32_t max);

/* Device limits that shape the kernels. */
typedef struct stem_ocl_limits {
    size_t max_wg;         /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    uint64_t local_bytes;  /* CL_DEVICE_LOCAL_MEM_SIZE */
    int has_fp16;          /* cl_khr_fp16 */
    int has_fp64;          /* cl_khr_fp64 */
    int is_gpu;
    int host_unified;      /* a CPU device sharing host memory: wrap_host works in place */
    int tiled;             /* tiled attention kernel (block_attention): GPUs, or
                              STEM_OPENCL_TILED=1 (to test the GPU path on PoCL) */
    int native_vw;         /* CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT */
} stem_ocl_limits;

/* A built program shared by the plans of a context with the same options. */
typedef struct stem_ocl_program {
    char *options;
    cl_program program;
    struct stem_ocl_program *next;
} stem_ocl_program;

/* Per-context state (ctx->impl). */
typedef struct stem_ocl_context {
    const stem_ocl_api *cl;
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    stem_ocl_limits limits;
    char *cache_dir;           /* copy of stem_context_desc.cache_dir, or NULL */
    char device_key[768];      /* platform, device and driver: part of the cache key */
    stem_ocl_program *programs;
} stem_ocl_context;

/* Kernel shape chosen at plan time from the device limits. */
typedef struct stem_ocl_shape {
    int bq;       /* query rows per attention work-group (tiled) or, at most, work-item (CPU) */
    int kt;       /* tiled: keys per attention tile, tx * kpt */
    int rpt;      /* tiled: query rows per work-item */
    int tx;       /* tiled: work-items sharing a row (keys / columns spread over them) */
    int kpt;      /* tiled: keys per work-item per tile */
    int prefetch; /* tiled: K / V tiles read into registers a stage early (KV_PREFETCH) */
    int slice;    /* tiled: the d-sliced kernel (kernels/attention_slice.cl, SLICE=1) */
    int ds, vs;   /* slice kernel: d columns per Q / K slice, keys per V slice */
    int vw;       /* CPU kernel: float vector width */
    int sel_cap;  /* largest row (key blocks) the selection kernel holds in local memory */
    int sel_ls;   /* selection / bonus / xattention work-group size */
} stem_ocl_shape;

/* Per-plan state (plan->impl). */
typedef struct stem_ocl_plan {
    stem_ocl_shape shape;
    cl_program program; /* retained from the context's list */
    cl_kernel k_phase_sum, k_vgroup_max, k_value_bonus, k_score_gemm, k_xattn_score, k_select,
        k_attention, k_row_attention;
    cl_mem budget; /* [n_blocks] i32 */
} stem_ocl_plan;

static inline stem_ocl_context *stem_ocl_ctx(const stem_context *ctx)
{
    return (stem_ocl_context *)ctx->impl;
}

/* Readable name of an OpenCL error code ("CL_OUT_OF_RESOURCES"). */
const char *stem_ocl_error_name(cl_int err);
/* STEM_ERR_BACKEND_API (or DEVICE_OUT_OF_MEMORY for allocation codes) with
 * the call and its code in the message. */
stem_status stem_ocl_fail(cl_int err, const char *what);
/* Queued buffer-to-buffer copies (paged K/V gather, ocl_copy.c). */
stem_status stem_ocl_copy_rects(stem_context *ctx, stem_buffer *dst, const stem_buffer *src,
                                const stem_copy_rect *rects, size_t count);

/* Programs (ocl_program.c). */
stem_status stem_ocl_shape_choose(const stem_ocl_limits *lim, const stem_attention_desc *desc,
                                  const stem_config *cfg, int64_t n_blocks, stem_ocl_shape *out);
stem_status stem_ocl_program_get(stem_ocl_context *c, const char *options, cl_program *out);
void stem_ocl_programs_release(stem_ocl_context *c);

/* Stages (ocl_score.c, ocl_select.c, ocl_attention.c). */
stem_status stem_ocl_score(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                           const stem_tensor *k, const stem_tensor *v, const stem_tensor *scores);
stem_status stem_ocl_select(stem_plan *plan, const stem_pass *pass, const stem_tensor *scores,
                            const stem_tensor *index, const stem_tensor *count);
stem_status stem_ocl_attention(stem_plan *plan, const stem_pass *pass, const stem_tensor *q,
                               const stem_tensor *k, const stem_tensor *v,
                               const stem_tensor *index, const stem_tensor *count,
                               const stem_tensor *out);

/* Kernel-argument helpers (ocl_launch.c). A tensor travels as its cl_mem,
 * its offset in elements and its four strides in elements. */
typedef struct stem_ocl_args {
    const stem_ocl_api *cl;
    cl_kernel kernel;
    cl_uint next;
    cl_int err;
} stem_ocl_args;
void stem_ocl_args_begin(stem_ocl_args *a, const stem_ocl_api *cl, cl_kernel k);
void stem_ocl_arg_mem(stem_ocl_args *a, cl_mem m);
void stem_ocl_arg_tensor(stem_ocl_args *a, const stem_tensor *t);
/* An optional f32 tensor: absent (NULL) travels as `fallback` with offset -1. */
void stem_ocl_arg_opt_tensor(stem_ocl_args *a, const stem_tensor *t, cl_mem fallback);
void stem_ocl_arg_int(stem_ocl_args *a, int32_t v);
void stem_ocl_arg_long(stem_ocl_args *a, int64_t v);
void stem_ocl_arg_float(stem_ocl_args *a, float v);
/* Enqueues a 3-D range (global = groups * local per dimension). */
stem_status stem_ocl_launch(const stem_plan *plan, stem_ocl_args *a, const char *name,
                            const size_t groups[3], const size_t local[3]);
/* A device scratch buffer of bytes (released by the caller). */
stem_status stem_ocl_scratch(const stem_plan *plan, size_t bytes, cl_mem *out);

static inline cl_mem stem_ocl_mem(const stem_buffer *b)
{
    return (cl_mem)b->impl;
}

#endif /* STEM_OCL_COMMON_H */
