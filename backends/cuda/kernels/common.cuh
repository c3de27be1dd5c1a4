// Device helpers shared by the kernels: strided element access with dtype
// widening / rounding, block reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

extern "C" {
#include "kernel_abi.h"
}

#define STEM_F32 0
#define STEM_F16 1
#define STEM_BF16 2

__device__ __forceinline__ long long kt_off(const stem_ktensor &t, long long b, long long h,
                                            long long n, long long i)
{
    return b * t.s[0] + h * t.s[1] + n * t.s[2] + i * t.s[3];
}

// Element widened to f32 (exact for f16 / bf16).
__device__ __forceinline__ float kt_load(const stem_ktensor &t, long long e)
{
    if (t.dtype == STEM_F32)
        return reinterpret_cast<const float *>(t.ptr)[e];
    const unsigned short u = reinterpret_cast<const unsigned short *>(t.ptr)[e];
    if (t.dtype == STEM_F16)
        return __half2float(__ushort_as_half(u));
    return __uint_as_float((unsigned)u << 16);
}

// Stores x rounded to nearest even in the tensor's dtype.
__device__ __forceinline__ void kt_store(const stem_ktensor &t, long long e, float x)
{
    if (t.dtype == STEM_F32)
        reinterpret_cast<float *>(t.ptr)[e] = x;
    else if (t.dtype == STEM_F16)
        reinterpret_cast<__half *>(t.ptr)[e] = __float2half_rn(x);
    else
        reinterpret_cast<__nv_bfloat16 *>(t.ptr)[e] = __float2bfloat16_rn(x);
}

__device__ __forceinline__ float *kt_f32(const stem_ktensor &t, long long e)
{
    return reinterpret_cast<float *>(t.ptr) + e;
}

__device__ __forceinline__ int *kt_i32(const stem_ktensor &t, long long e)
{
    return reinterpret_cast<int *>(t.ptr) + e;
}

template <typename T> __device__ __forceinline__ T warp_sum(T x)
{
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x)
{
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// Block-wide sum in a fixed order (deterministic); every thread gets it.
// `red` holds blockDim.x / 32 elements; blockDim.x is a multiple of 32.
template <typename T> __device__ T block_sum(T x, T *red)
{
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    x = warp_sum(x);
    __syncthreads();
    if (lane == 0)
        red[w] = x;
    __syncthreads();
    T s = 0;
    for (int i = 0; i < nw; i++)
        s += red[i];
    return s;
}

__device__ __forceinline__ float block_max(float x, float *red)
{
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    x = warp_max(x);
    __syncthreads();
    if (lane == 0)
        red[w] = x;
    __syncthreads();
    float m = -INFINITY;
    for (int i = 0; i < nw; i++)
        m = fmaxf(m, red[i]);
    return m;
}

// Programmatic dependent launch (STEM_CUDA_PDL=1, compute capability 9.0):
// a kernel launched with it may start while the stream's previous kernel
// runs, so it waits for that grid (complete, memory visible) before it
// touches memory; a kernel lets its successor start launching early. Both are
// no-ops without PDL and on sm_80.
__device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
