/* Shared by every kernel: storage types, widening loads, rounding stores.
 * Build-time macros (set by ocl_program.c / ocl_backend.c from the plan and
 * the device): IN_DTYPE 0 f32 | 1 f16 | 2 bf16, HEAD_DIM, BQ, SEL_CAP, SEL_LS,
 * HAS_FP64, HAS_FP16; for GPUs KT, RPT, TX, KPT; for CPU devices VW. */
#ifdef STEM_FORCE_BUILD_ERROR
#error "STEM_FORCE_BUILD_ERROR: deliberately broken build (tests)"
#endif

#if HAS_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t; /* reductions the CPU backend does in double */
#else
typedef float acc_t;
#endif

/* Q, K, V storage: f16 through vload_half (core OpenCL, no cl_khr_fp16
 * needed), bf16 as the top half of an f32 bit pattern. LOADA4_IN: elements
 * i .. i + 3 widened, i a multiple of 4 from a 4-element-aligned start. */
#if IN_DTYPE == 1
typedef half in_t;
#define LOAD_IN(p, i) vload_half((i), (p))
#define LOADA4_IN(p, i) vloada_half4(0, (p) + (i))
#elif IN_DTYPE == 2
typedef ushort in_t;
#define LOAD_IN(p, i) as_float((uint)(p)[(i)] << 16)
#define LOADA4_IN(p, i) as_float4(convert_uint4(*(__global const ushort4 *)((p) + (i))) << 16)
#else
typedef float in_t;
#define LOAD_IN(p, i) ((p)[(i)])
#define LOADA4_IN(p, i) (*(__global const float4 *)((p) + (i)))
#endif

/* Element (b, h, n, e) of a strided tensor; 64-bit index math. */
#define TENSOR(name) __global const in_t *name, long name##_off, long name##_s0, long name##_s1, \
                     long name##_s2, long name##_s3
#define AT(name, b, h, n, e) \
    (name##_off + (long)(b) * name##_s0 + (long)(h) * name##_s1 + (long)(n) * name##_s2 + \
     (long)(e) * name##_s3)

/* Same for f32 / i32 tensors ([B, H, nq, nk] scores, lists, counts). */
#define TENSOR_F32(name) __global float *name, long name##_off, long name##_s0, long name##_s1, \
                         long name##_s2, long name##_s3
#define TENSOR_I32(name) __global int *name, long name##_off, long name##_s0, long name##_s1, \
                         long name##_s2, long name##_s3

/* f32 -> bf16, round to nearest even; NaN stays a quiet NaN. */
inline ushort f32_to_bf16(float x)
{
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (ushort)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ushort)(u >> 16);
}

/* Output element i of a buffer of dtype out_dtype (0 f32, 1 f16, 2 bf16). */
inline void store_out(__global void *out, long i, int out_dtype, float x)
{
    if (out_dtype == 0)
        ((__global float *)out)[i] = x;
    else if (out_dtype == 1)
        vstore_half_rte(x, i, (__global half *)out);
    else
        ((__global ushort *)out)[i] = f32_to_bf16(x);
}
