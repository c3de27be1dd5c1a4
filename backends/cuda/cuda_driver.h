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

typedef struct stem_cuda_api {
    void *lib;
    CUresult (*cuInit)(unsigned flags);
    CUresult (*cuDriverGetVersion)(int *version);
    CUresult (*cuDeviceGetCount)(int *count);
    CUresult (*cuDeviceGet)(CUdevice *dev, int ordinal);
    CUresult (*cuDeviceGetName)(char *name, int len, CUdevice dev);
    CUresult (*cuDeviceTotalMem)(size_t *bytes, CUdevice dev);
    CUresult (*cuDeviceGetAttribute)(int *value, int attrib, CUdevice dev);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice dev);
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice dev);
    CUresult (*cuCtxSetCurrent)(CUcontext ctx);
    CUresult (*cuCtxPushCurrent)(CUcontext ctx);
    CUresult (*cuCtxPopCurrent)(CUcontext *ctx);
    CUresult (*cuPointerGetAttribute)(void *data, int attribute, CUdeviceptr ptr);
    /* Optional (CUDA 11.2+; NULL when the driver lacks them): stream-ordered
     * allocation, so creating and destroying buffers never waits. */
    CUresult (*cuMemAllocAsync)(CUdeviceptr *ptr, size_t bytes, CUstream s);
    CUresult (*cuMemFreeAsync)(CUdeviceptr ptr, CUstream s);
    CUresult (*cuStreamCreate)(CUstream *stream, unsigned flags);
    CUresult (*cuStreamDestroy)(CUstream stream);
    CUresult (*cuStreamSynchronize)(CUstream stream);
    CUresult (*cuMemAlloc)(CUdeviceptr *ptr, size_t bytes);
    CUresult (*cuMemFree)(CUdeviceptr ptr);
    CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes, CUstream s);
    CUresult (*cuMemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t bytes, CUstream s);
    CUresult (*cuMemsetD8Async)(CUdeviceptr dst, unsigned char value, size_t n, CUstream s);
    CUresult (*cuModuleLoadData)(CUmodule *mod, const void *image);
    CUresult (*cuModuleUnload)(CUmodule mod);
    CUresult (*cuModuleGetFunction)(CUfunction *fn, CUmodule mod, const char *name);
    CUresult (*cuFuncSetAttribute)(CUfunction fn, int attrib, int value);
    CUresult (*cuLaunchKernel)(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned shmem, CUstream s,
                               void **params, void **extra);
    CUresult (*cuGetErrorName)(CUresult err, const char **str);
} stem_cuda_api;

/* The process-wide table, loaded once (thread-safe); NULL with `why`
 * filled when no usable driver is there. */
const stem_cuda_api *stem_cuda_api_get(char *why, size_t why_size);

/* "CUDA_ERROR_OUT_OF_MEMORY (2)" */
const char *stem_cuda_error_name(CUresult r);

#endif /* STEM_CUDA_DRIVER_H */
