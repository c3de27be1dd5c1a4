// The paged K/V gather (api/varlen.c builds the rectangles): one launch per
// STEM_KCOPY_RECTS pages instead of one driver copy per page. blockIdx.y is
// the rectangle; the x blocks stride over its rows x row_units units.
#include "common.cuh"

template <typename T> __device__ __forceinline__ void copy_rect(const stem_kcopy &p, int i)
{
    const stem_kcopy_rect &r = p.r[i];
    const T *src = reinterpret_cast<const T *>(p.src) + r.src_off;
    T *dst = reinterpret_cast<T *>(p.dst) + r.dst_off;
    const unsigned long long total = r.rows * r.row_units, step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long u = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; u < total;
         u += step) {
        const unsigned long long row = u / r.row_units, col = u - row * r.row_units;
        dst[row * r.dst_pitch + col] = src[row * r.src_pitch + col];
    }
}

extern "C" __global__ void __launch_bounds__(256) stem_k_copy_rects(const stem_kcopy p)
{
    const int i = blockIdx.y;
    if (i >= p.count)
        return;
    switch (p.unit) {
    case 16: copy_rect<uint4>(p, i); break;
    case 8: copy_rect<uint2>(p, i); break;
    case 4: copy_rect<unsigned>(p, i); break;
    default: copy_rect<unsigned char>(p, i); break;
    }
}
