/*
 * CPU backend: portable micro-kernels (no ISA-specific intrinsics, no -march).
 *
 * The GEMM register block and exp2 use GCC/Clang generic vectors of 4 floats:
 * the compiler lowers them to SSE2 on baseline x86-64, NEON on arm64, or
 * scalar code elsewhere. Plain-loop auto-vectorization of the same block
 * measured 25-60% slower and varied with unrelated code changes (gcc 12
 * sometimes vectorizes the k loop instead of keeping the block in registers).
 * Other compilers get the plain C loops. No -ffast-math is assumed: partial
 * sums are explicit.
 */
#include "cpu_common.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(STEM_CPU_NO_VEC)
#define STEM_CPU_VEC 1
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
/* memcpy keeps unaligned access and aliasing well defined; it compiles to movups. */
static inline v4f ld4(const float *p)
{
    v4f x;
    memcpy(&x, p, sizeof x);
    return x;
}
static inline void st4(float *p, v4f x)
{
    memcpy(p, &x, sizeof x);
}
static inline v4f splat4(float x)
{
    return (v4f){x, x, x, x};
}
#endif

#ifdef STEM_CPU_VEC
/* Register block of the GEMM: MR rows of A times NR columns of B in 12
 * accumulators, plus 2 for B and 1 for A (15 of the 16 SSE registers).
 * A is packed once per row block with every element pre-broadcast to a
 * vector, so the inner loop loads instead of shuffling: 6x8 this way
 * measured ~45% faster than 4x8 with broadcasts in the loop. */
#define MR 6
#define NR 8
#define KC 256 /* depth chunk: the packed A block is KC * MR * 16 B = 24 KiB */

/* mr is a compile-time constant at every call (block_rows), so each
 * instance keeps its accumulators in registers. */
static inline __attribute__((always_inline)) void
block_vec(const int mr, int k, const v4f *restrict a, const float *restrict B, ptrdiff_t ldb,
          float *restrict C, ptrdiff_t ldc, int accumulate)
{
    v4f acc[MR][NR / 4];
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < NR / 4; c++)
            acc[r][c] = accumulate ? ld4(C + r * ldc + 4 * c) : splat4(0.0f);
    for (int p = 0; p < k; p++) {
        const float *restrict b = B + (ptrdiff_t)p * ldb;
        v4f bv[NR / 4];
        for (int c = 0; c < NR / 4; c++)
            bv[c] = ld4(b + 4 * c);
        for (int r = 0; r < mr; r++) {
            const v4f x = a[p * MR + r];
            for (int c = 0; c < NR / 4; c++)
                acc[r][c] += x * bv[c];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < NR / 4; c++)
            st4(C + r * ldc + 4 * c, acc[r][c]);
}

/* Full-width block of 1..MR rows (row counts from powers-of-two blocks
 * leave remainders of 2 or 4: those stay vectorized too). */
static void block_rows(int mr, int k, const v4f *restrict a, const float *restrict B,
                       ptrdiff_t ldb, float *restrict C, ptrdiff_t ldc, int accumulate)
{
    switch (mr) {
    case 6: block_vec(6, k, a, B, ldb, C, ldc, accumulate); break;
    case 5: block_vec(5, k, a, B, ldb, C, ldc, accumulate); break;
    case 4: block_vec(4, k, a, B, ldb, C, ldc, accumulate); break;
    case 3: block_vec(3, k, a, B, ldb, C, ldc, accumulate); break;
    case 2: block_vec(2, k, a, B, ldb, C, ldc, accumulate); break;
    default: block_vec(1, k, a, B, ldb, C, ldc, accumulate); break;
    }
}

/* Partial-width blocks at the right edge; reads only valid columns of B. */
static void block_edge(int mr, int nr, int k, const v4f *restrict a, const float *restrict B,
                       ptrdiff_t ldb, float *restrict C, ptrdiff_t ldc, int accumulate)
{
    float acc[MR][NR];
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++)
            acc[r][c] = accumulate ? C[r * ldc + c] : 0.0f;
    for (int p = 0; p < k; p++) {
        const float *restrict b = B + (ptrdiff_t)p * ldb;
        for (int r = 0; r < mr; r++) {
            const float x = a[p * MR + r][0];
            for (int c = 0; c < nr; c++)
                acc[r][c] += x * b[c];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++)
            C[r * ldc + c] = acc[r][c];
}

/* B's column block j starts at B + j (row-major, ldb) or, when packed, at
 * panel j / NR (panel_stride apart, rows NR apart). */
static void gemm_any(int m, int n, int k, const float *A, ptrdiff_t lda, const float *B,
                     ptrdiff_t ldb, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                     int accumulate)
{
    v4f a[KC * MR];
    if (k <= 0) { /* empty sum */
        for (int i = 0; i < m && !accumulate; i++)
            memset(C + (ptrdiff_t)i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    for (int p0 = 0; p0 < k; p0 += KC) {
        const int kc = k - p0 < KC ? k - p0 : KC;
        const int acc = accumulate || p0 > 0;
        for (int i = 0; i < m; i += MR) {
            const int mr = m - i < MR ? m - i : MR;
            for (int p = 0; p < kc; p++)
                for (int r = 0; r < MR; r++)
                    a[p * MR + r] = splat4(r < mr ? A[(ptrdiff_t)(i + r) * lda + p0 + p] : 0.0f);
            float *c = C + (ptrdiff_t)i * ldc;
            for (int j = 0; j < n; j += NR) {
                const int nr = n - j < NR ? n - j : NR;
                const float *b = panel_stride ? B + (ptrdiff_t)(j / NR) * panel_stride : B + j;
                b += (ptrdiff_t)p0 * ldb;
                if (nr == NR)
                    block_rows(mr, kc, a, b, ldb, c + j, ldc, acc);
                else
                    block_edge(mr, nr, kc, a, b, ldb, c + j, ldc, acc);
            }
        }
    }
}

#else /* plain C */

#define MR 4
#define NR 8

static void block_any(int mr, int nr, int k, const float *restrict A, ptrdiff_t lda,
                      const float *restrict B, ptrdiff_t ldb, float *restrict C, ptrdiff_t ldc,
                      int accumulate)
{
    float acc[MR][NR];
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++)
            acc[r][c] = accumulate ? C[r * ldc + c] : 0.0f;
    for (int p = 0; p < k; p++) {
        const float *restrict b = B + (ptrdiff_t)p * ldb;
        for (int r = 0; r < mr; r++) {
            const float x = A[r * lda + p];
            for (int c = 0; c < nr; c++)
                acc[r][c] += x * b[c];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++)
            C[r * ldc + c] = acc[r][c];
}

static void gemm_any(int m, int n, int k, const float *A, ptrdiff_t lda, const float *B,
                     ptrdiff_t ldb, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                     int accumulate)
{
    for (int j = 0; j < n; j += NR) {
        const int nr = n - j < NR ? n - j : NR;
        const float *b = panel_stride ? B + (ptrdiff_t)(j / NR) * panel_stride : B + j;
        for (int i = 0; i < m; i += MR) {
            const int mr = m - i < MR ? m - i : MR;
            block_any(mr, nr, k, A + (ptrdiff_t)i * lda, lda, b, ldb, C + (ptrdiff_t)i * ldc + j,
                      ldc, accumulate);
        }
    }
}
#endif

static void gemm_scalar(int m, int n, int k, const float *A, ptrdiff_t lda, const float *B,
                        ptrdiff_t ldb, float *C, ptrdiff_t ldc, int accumulate)
{
    gemm_any(m, n, k, A, lda, B, ldb, 0, C, ldc, accumulate);
}

/* Panels are NR columns wide, so each register block reads one panel with
 * rows NR apart: contiguous, which the prefetcher follows. */
static void gemm_packed_scalar(int m, int n, int k, const float *A, ptrdiff_t lda,
                               const float *Bp, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                               int accumulate)
{
    gemm_any(m, n, k, A, lda, Bp, NR, panel_stride > 0 ? panel_stride : NR * (ptrdiff_t)k, C,
             ldc, accumulate);
}

static float row_max_scalar(const float *restrict x, int n)
{
    float part[8];
    for (int c = 0; c < 8; c++)
        part[c] = -INFINITY;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int c = 0; c < 8; c++)
            part[c] = x[j + c] > part[c] ? x[j + c] : part[c]; /* NaN never wins */
    float m = -INFINITY;
    for (; j < n; j++)
        m = x[j] > m ? x[j] : m;
    for (int c = 0; c < 8; c++)
        m = part[c] > m ? part[c] : m;
    return m;
}

/* 2^f for |f| <= 1/2: degree-6 minimax polynomial (1.9e-9 relative; the f32
 * evaluation adds about 1.5 ulp). One less degree than a Taylor series of
 * the same accuracy. */
#define EXP2_C6 1.5345812004000534e-04f
#define EXP2_C5 1.3399931219124377e-03f
#define EXP2_C4 9.6184889571025130e-03f
#define EXP2_C3 5.5503287769656406e-02f
#define EXP2_C2 2.4022646890634405e-01f
#define EXP2_C1 6.9314720573726730e-01f

/* 2^t for t <= 127: t = r + f with r an integer and |f| <= 1/2, 2^r built in
 * the exponent bits. Results below 2^-126 flush to 0; NaN passes through. */
static inline float exp2_one(float t)
{
    float tc = t >= -126.0f ? t : -126.0f; /* also maps NaN, keeps the cast defined */
    tc = tc <= 127.0f ? tc : 127.0f;
    const float r = (tc + 12582912.0f) - 12582912.0f; /* round to nearest (1.5 * 2^23) */
    const float f = tc - r;
    float p = EXP2_C6;
    p = p * f + EXP2_C5;
    p = p * f + EXP2_C4;
    p = p * f + EXP2_C3;
    p = p * f + EXP2_C2;
    p = p * f + EXP2_C1;
    p = p * f + 1.0f;
    union {
        uint32_t u;
        float f;
    } s;
    s.u = (uint32_t)((int32_t)r + 127) << 23;
    const float v = p * s.f;
    return t >= -126.0f ? v : (t != t ? t : 0.0f);
}

#ifdef STEM_CPU_VEC
/* exp2_one on 4 lanes for t <= 0 (exp2_sum's contract), in as few
 * operations as SSE2 allows: one mask both clamps and zeroes. keep is true
 * for t >= -126 and for NaN; lanes below -126 compute 2^0 from t = 0 and
 * are then zeroed, and a NaN lane stays NaN through every step. */
static inline v4f exp2_v4(v4f t)
{
    const v4i keep = ~(t < splat4(-126.0f));
    const v4f tc = (v4f)((v4i)t & keep);
    const v4f r = (tc + splat4(12582912.0f)) - splat4(12582912.0f);
    const v4f f = tc - r;
    v4f p = splat4(EXP2_C6);
    p = p * f + splat4(EXP2_C5);
    p = p * f + splat4(EXP2_C4);
    p = p * f + splat4(EXP2_C3);
    p = p * f + splat4(EXP2_C2);
    p = p * f + splat4(EXP2_C1);
    p = p * f + splat4(1.0f);
    const v4i e = (__builtin_convertvector(r, v4i) + 127) << 23;
    return (v4f)((v4i)(p * (v4f)e) & keep);
}
#endif

static float exp2_sum_scalar(float *restrict x, int n, float sub)
{
    int j = 0;
    float s = 0.0f;
#ifdef STEM_CPU_VEC
    v4f s0 = splat4(0.0f), s1 = splat4(0.0f);
    const v4f vsub = splat4(sub);
    for (; j + 8 <= n; j += 8) {
        const v4f a = exp2_v4(ld4(x + j) - vsub), b = exp2_v4(ld4(x + j + 4) - vsub);
        st4(x + j, a);
        st4(x + j + 4, b);
        s0 += a;
        s1 += b;
    }
    s0 += s1;
    s = (s0[0] + s0[2]) + (s0[1] + s0[3]);
#endif
    for (; j < n; j++) {
        const float v = exp2_one(x[j] - sub);
        x[j] = v;
        s += v;
    }
    return s;
}

static void scale_scalar(float *restrict x, int n, float a)
{
    for (int j = 0; j < n; j++)
        x[j] *= a;
}

static void widen_scalar(const void *src, stem_dtype dtype, int n, float *restrict dst, float mul)
{
    switch (dtype) {
    case STEM_DTYPE_F32: {
        const float *x = (const float *)src;
        for (int j = 0; j < n; j++)
            dst[j] = mul * x[j];
        break;
    }
    case STEM_DTYPE_F16: {
        const uint16_t *x = (const uint16_t *)src;
        for (int j = 0; j < n; j++)
            dst[j] = mul * stem_cpu_f16(x[j]);
        break;
    }
    case STEM_DTYPE_BF16: {
        const uint16_t *x = (const uint16_t *)src;
        for (int j = 0; j < n; j++)
            dst[j] = mul * stem_cpu_bf16(x[j]);
        break;
    }
    default:
        memset(dst, 0, (size_t)n * sizeof(float));
        break;
    }
}

/* Round to nearest even on the bits; NaN stays a (quiet) NaN. */
static void narrow_bf16_scalar(const float *restrict x, int n, uint16_t *restrict dst)
{
    for (int j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, x + j, sizeof u);
        const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        dst[j] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
    }
}

const stem_cpu_kernels stem_cpu_kernels_scalar = {
    .name = "scalar",
    .gemm = gemm_scalar,
    .nr = NR,
    .gemm_packed = gemm_packed_scalar,
    .row_max = row_max_scalar,
    .exp2_sum = exp2_sum_scalar,
    .scale = scale_scalar,
    .widen = widen_scalar,
    .narrow_bf16 = narrow_bf16_scalar,
};
