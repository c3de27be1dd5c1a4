/* The few CUDA driver API types and entry points the backend uses, declared
 * here (no cuda.h) and resolved with dlopen/dlsym at probe time, so libstem
 * has no link-time dependency on a driver. */
#ifndef STEM_CUDA_DRIVER_H
#define STEM_CUDA_DRIVER_H

#include <stddef.h>
#include <stdint.h>

typedef int CUresult; /* 0 = CUDA_SUCCESS */
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUevent_st *CUevent;

/* Attribute numbers from the driver API's public enums (stable ABI). */
#define STEM_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define STEM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define STEM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define STEM_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97
#define STEM_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8
#define STEM_CU_STREAM_NON_BLOCKING 0x1
#define STEM_CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED 115
#define STEM_CU_POINTER_ATTRIBUTE_CONTEXT 1
#define STEM_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL 9
#define STEM_CU_POINTER_ATTRIBUTE_RANGE_START_ADDR 11
#define STEM_CU_POINTER_ATTRIBUTE_RANGE_SIZE 12
#define STEM_CUDA_ERROR_OUT_OF_MEMORY 2
#define STEM_CUDA_ERROR_NO_DEVICE 100

/* Tensor map for the bulk tensor copy engine (TMA): an opaque 128-byte
 * value, 64-byte aligned, encoded on the host and passed to kernels by value. */
typedef struct stem_cu_tensor_map {
    _Alignas(64) uint64_t opaque[16];
} stem_cu_tensor_map;
#define STEM_CU_TENSOR_MAP_DATA_TYPE_FLOAT16 6
#define STEM_CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 9
#define STEM_CU_TENSOR_MAP_SWIZZLE_128B 3
#define STEM_CU_TENSOR_MAP_L2_PROMOTION_L2_256B 3

/* CUDA_MEMCPY2D (device to device only: the array and host fields unused). */
typedef struct stem_cu_memcpy2d {
    size_t src_x_bytes, src_y;
    int src_memory_type; /* 2 = CU_MEMORYTYPE_DEVICE */
    const void *src_host;
    CUdeviceptr src_device;
    void *src_array;
    size_t src_pitch;
    size_t dst_x_bytes, dst_y;
    int dst_memory_type;
    void *dst_host;
    CUdeviceptr dst_device;
    void *dst_array;
    size_t dst_pitch;
    size_t width_bytes, height;
} stem_cu_memcpy2d;
#define STEM_CU_MEMORYTYPE_DEVICE 2

/* cuLaunchKernelEx's configuration (no launch attributes used). */
typedef struct stem_cu_launch_config {
    unsigned grid[3], block[3];
    unsigned shared_bytes;
    CUstream stream;
    void *attrs;
    unsigned num_attrs;
} stem_cu_launch_config;

/* Every entry point: X(field, symbol, return/params, required). Optional ones
 * (required 0) are NULL when the driver lacks them; code checks before use. */
#define STEM_CUDA_DRIVER_ENTRIES(X)                                                              \
    X(cuInit, "cuInit", (unsigned flags), 1)                                                     \
    X(cuDriverGetVersion, "cuDriverGetVersion", (int *version), 1)                               \
    X(cuDeviceGetCount, "cuDeviceGetCount", (int *count), 1)                                     \
    X(cuDeviceGet, "cuDeviceGet", (CUdevice * dev, int ordinal), 1)                              \
    X(cuDeviceGetName, "cuDeviceGetName", (char *name, int len, CUdevice dev), 1)                \
    X(cuDeviceTotalMem, "cuDeviceTotalMem_v2", (size_t * bytes, CUdevice dev), 1)                \
    X(cuDeviceGetAttribute, "cuDeviceGetAttribute", (int *value, int attrib, CUdevice dev), 1)   \
    X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext * ctx, CUdevice dev), 1) \
    X(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (CUdevice dev), 1)             \
    X(cuCtxSetCurrent, "cuCtxSetCurrent", (CUcontext ctx), 1)                                    \
    X(cuCtxPushCurrent, "cuCtxPushCurrent_v2", (CUcontext ctx), 1)                               \
    X(cuCtxPopCurrent, "cuCtxPopCurrent_v2", (CUcontext * ctx), 1)                               \
    X(cuPointerGetAttribute, "cuPointerGetAttribute", (void *data, int attribute, CUdeviceptr ptr), 1) \
    X(cuStreamCreate, "cuStreamCreate", (CUstream * stream, unsigned flags), 1)                  \
    X(cuStreamDestroy, "cuStreamDestroy_v2", (CUstream stream), 1)                               \
    X(cuStreamSynchronize, "cuStreamSynchronize", (CUstream stream), 1)                          \
    X(cuMemAlloc, "cuMemAlloc_v2", (CUdeviceptr * ptr, size_t bytes), 1)                         \
    X(cuMemFree, "cuMemFree_v2", (CUdeviceptr ptr), 1)                                           \
    /* stream-ordered allocation (CUDA 11.2+): buffers made and freed without waits */            \
    X(cuMemAllocAsync, "cuMemAllocAsync", (CUdeviceptr * ptr, size_t bytes, CUstream s), 0)      \
    X(cuMemFreeAsync, "cuMemFreeAsync", (CUdeviceptr ptr, CUstream s), 0)                        \
    X(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2",                                                 \
      (CUdeviceptr dst, const void *src, size_t bytes, CUstream s), 1)                           \
    X(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2",                                                 \
      (void *dst, CUdeviceptr src, size_t bytes, CUstream s), 1)                                 \
    X(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2",                                                 \
      (CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s), 1)                           \
    X(cuMemcpy2DAsync, "cuMemcpy2DAsync_v2", (const stem_cu_memcpy2d *copy, CUstream s), 1)      \
    X(cuMemsetD8Async, "cuMemsetD8Async",                                                        \
      (CUdeviceptr dst, unsigned char value, size_t n, CUstream s), 1)                           \
    X(cuModuleLoadData, "cuModuleLoadData", (CUmodule * mod, const void *image), 1)              \
    X(cuModuleUnload, "cuModuleUnload", (CUmodule mod), 1)                                       \
    X(cuModuleGetFunction, "cuModuleGetFunction", (CUfunction * fn, CUmodule mod, const char *name), 1) \
    X(cuFuncSetAttribute, "cuFuncSetAttribute", (CUfunction fn, int attrib, int value), 1)       \
    X(cuLaunchKernel, "cuLaunchKernel",                                                          \
      (CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,            \
       unsigned bz, unsigned shmem, CUstream s, void **params, void **extra), 1)                 \
    X(cuGetErrorName, "cuGetErrorName", (CUresult err, const char **str), 1)                     \
    X(cuLaunchKernelEx, "cuLaunchKernelEx",                                                      \
      (const stem_cu_launch_config *config, CUfunction f, void **params, void **extra), 0)       \
    X(cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled",                                          \
      (stem_cu_tensor_map * map, int dtype, unsigned rank, void *base, const uint64_t *dims,     \
       const uint64_t *strides, const unsigned *box, const unsigned *elem_strides,               \
       int interleave, int swizzle, int l2_promotion, int oob_fill), 0)

typedef struct stem_cuda_api {
    void *lib;
#define STEM_CUDA_API_FIELD(field, sym, params, required) CUresult(*field) params;
    STEM_CUDA_DRIVER_ENTRIES(STEM_CUDA_API_FIELD)
#undef STEM_CUDA_API_FIELD
} stem_cuda_api;

/* The process-wide table, loaded once (thread-safe); NULL with `why`
 * filled when no usable driver is there. */
const stem_cuda_api *stem_cuda_api_get(char *why, size_t why_size);

/* "CUDA_ERROR_OUT_OF_MEMORY (2)" */
const char *stem_cuda_error_name(CUresult r);

#endif /* STEM_CUDA_DRIVER_H */
