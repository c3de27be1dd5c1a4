/*
 * CPU backend: the SIMD micro-kernels, written once for any vector width.
 *
 * Included (once) by cpu_kernels_avx2.c and cpu_kernels_avx512.c, which are
 * compiled with their ISA's flags and define before the include:
 *   VF, VW           vector type of VW floats
 *   VLOAD VSTORE VSET1 VZERO VFMA(a, b, c) = a * b + c, VMUL VSUB VMAX VADD
 *   MR, NR           GEMM register block: MR rows x NR columns (NR % VW == 0)
 *   KERNELS_NAME     the table's name ("avx2"), KERNELS_TABLE its symbol
 * and optionally, for the bf16 pair GEMM:
 *   VI, VLOADI, VSET1I   integer vector of VW 32-bit lanes, load, broadcast
 *   VDOT_BF16(acc, a, b) acc + a.lo * b.lo + a.hi * b.hi per lane (bf16 halves)
 *   KERNELS_TABLE_BF16   when set, gemm_bf16 goes into this second table only
 *   GEMM_PACK_A, KC      when set, A is packed per row block and depth chunk
 *                        of KC with every element pre-broadcast to a vector
 *                        (for ISAs whose broadcast from memory costs a
 *                        shuffle: SSE2), instead of broadcast in the loop
 *   SFMA(a, b, c)        scalar a * b + c (default fmaf; plain where the
 *                        ISA has no FMA and fmaf would be a library call)
 *   KERNELS_OWN_EXP2_ONE the includer defines exp2_one (below) itself
 *   GEMM_BF16_TABLE      when set, the function the table names as gemm_bf16
 *                        (the AMX file's tile GEMM, which calls gemm_bf16_simd
 *                        for the edges the tiles do not cover)
 *   GEMM_BF16_HELD_TABLE, TILES_BEGIN_TABLE, TILES_END_TABLE
 *                        when set, the table's gemm_bf16_held, tiles_begin
 *                        and tiles_end (AMX)
 *   VNARROW_BF16(dst, v) when set, a vector narrow_bf16 (vcvtneps2bf16) for
 *                        exp2_sum_bf16 in the table that has gemm_bf16
 * and before or after it the ISA-specific helpers declared below (vexp2 and
 * friends).
 * Nothing here is reached unless the dispatcher (cpu_isa.c) found the ISA.
 */
#include "cpu_common.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define NV (NR / VW) /* vectors per register-block row */

#ifndef SFMA
#define SFMA(a, b, c) fmaf((a), (b), (c))
#endif
#if defined(__GNUC__)
#define STEM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define STEM_ALWAYS_INLINE inline
#endif

/* A operand of the register blocks: row r, depth p. */
#ifdef GEMM_PACK_A
typedef VF a_elem; /* a[p * MR + r], pre-broadcast */
#define A_BCAST(A, lda, r, p) ((void)(lda), (A)[(p) * MR + (r)])
#define A_VALUE(A, lda, r, p) ((void)(lda), (A)[(p) * MR + (r)][0])
#else
typedef float a_elem; /* A[r * lda + p], row-major */
#define A_BCAST(A, lda, r, p) VSET1((A)[(r) * (lda) + (p)])
#define A_VALUE(A, lda, r, p) ((A)[(r) * (lda) + (p)])
#endif

#include "cpu_exp2_coeffs.h"

/* Defined by the including file. vexp2: exp2_one (below) on every lane. */
static inline VF vexp2(VF t);
static inline float vhsum(VF x);
static inline float vhmax(VF x); /* no NaN lanes */
static inline VF vload_f16(const uint16_t *p);
static inline VF vload_bf16(const uint16_t *p);

/* ------------------------------------------------------------------ GEMM */

/* C[0..mr)[0..NR) (+)= A[0..mr)[0..k) * B[0..k)[0..NR): mr * NV accumulators
 * stay in registers (mr is a compile-time constant at every call); each
 * step loads NV vectors of B and broadcasts one A element per row straight
 * from memory, so A needs no packing (GEMM_PACK_A: loads it pre-broadcast). */
static STEM_ALWAYS_INLINE void
micro_block(const int mr, int k, const a_elem *restrict A, ptrdiff_t lda, const float *restrict B,
            ptrdiff_t ldb, float *restrict C, ptrdiff_t ldc, int accumulate)
{
    VF acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            acc[r][c] = accumulate ? VLOAD(C + r * ldc + c * VW) : VZERO();
    for (int p = 0; p < k; p++) {
        const float *restrict b = B + (ptrdiff_t)p * ldb;
        VF bv[NV];
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            bv[c] = VLOAD(b + c * VW);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            const VF a = A_BCAST(A, lda, r, p);
#pragma GCC unroll 4
            for (int c = 0; c < NV; c++)
                acc[r][c] = VFMA(a, bv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            VSTORE(C + r * ldc + c * VW, acc[r][c]);
}

#define MICRO_CASE(R)                                                                   \
    case R:                                                                             \
        micro_block((R) <= MR ? (R) : MR, k, A, lda, B, ldb, C, ldc, accumulate);        \
        break

/* Full-width block of 1..MR rows. */
static void block_rows(int mr, int k, const a_elem *restrict A, ptrdiff_t lda,
                       const float *restrict B, ptrdiff_t ldb, float *restrict C, ptrdiff_t ldc,
                       int accumulate)
{
    switch (mr) {
#if MR >= 12
        MICRO_CASE(12);
        MICRO_CASE(11);
        MICRO_CASE(10);
        MICRO_CASE(9);
#endif
#if MR >= 8
        MICRO_CASE(8);
        MICRO_CASE(7);
#endif
        MICRO_CASE(6);
        MICRO_CASE(5);
        MICRO_CASE(4);
        MICRO_CASE(3);
        MICRO_CASE(2);
    default: micro_block(1, k, A, lda, B, ldb, C, ldc, accumulate); break;
    }
}

/* Partial-width block at the right edge of a row-major B (never in the
 * packed layout, whose panels are whole): reads only valid columns. */
static void block_edge(int mr, int nr, int k, const a_elem *restrict A, ptrdiff_t lda,
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
            const float x = A_VALUE(A, lda, r, p);
            for (int c = 0; c < nr; c++)
                acc[r][c] = SFMA(x, b[c], acc[r][c]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++)
            C[r * ldc + c] = acc[r][c];
}

#ifdef GEMM_PACK_A
/* Depth chunks of KC outermost, then row blocks: each row block of A is
 * packed pre-broadcast (KC * MR vectors) once and serves every column block.
 * Column block j starts at B + j (row-major, ldb) or at panel j / NR
 * (packed: panel_stride apart, rows NR apart). */
static void gemm_any(int m, int n, int k, const float *A, ptrdiff_t lda, const float *B,
                     ptrdiff_t ldb, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                     int accumulate)
{
    VF a[KC * MR];
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
                    a[p * MR + r] = VSET1(r < mr ? A[(ptrdiff_t)(i + r) * lda + p0 + p] : 0.0f);
            float *c = C + (ptrdiff_t)i * ldc;
            for (int j = 0; j < n; j += NR) {
                const int nr = n - j < NR ? n - j : NR;
                const float *b = panel_stride ? B + (ptrdiff_t)(j / NR) * panel_stride : B + j;
                b += (ptrdiff_t)p0 * ldb;
                if (nr == NR)
                    block_rows(mr, kc, a, 0, b, ldb, c + j, ldc, acc);
                else
                    block_edge(mr, nr, kc, a, 0, b, ldb, c + j, ldc, acc);
            }
        }
    }
}
#else
/* Column blocks outermost: one NR-wide slice of B (k x NR, 8-16 KiB at
 * k = 128) stays in L1 while every row block of A streams past it. Column
 * block j starts at B + j (row-major, ldb) or at panel j / NR (packed:
 * panel_stride apart, rows NR apart). */
static void gemm_any(int m, int n, int k, const float *A, ptrdiff_t lda, const float *B,
                     ptrdiff_t ldb, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                     int accumulate)
{
    if (k <= 0) { /* empty sum */
        for (int i = 0; i < m && !accumulate; i++)
            memset(C + (ptrdiff_t)i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    for (int j = 0; j < n; j += NR) {
        const int nr = n - j < NR ? n - j : NR;
        const float *b = panel_stride ? B + (ptrdiff_t)(j / NR) * panel_stride : B + j;
        for (int i = 0; i < m; i += MR) {
            const int mr = m - i < MR ? m - i : MR;
            const float *a = A + (ptrdiff_t)i * lda;
            float *c = C + (ptrdiff_t)i * ldc + j;
            if (nr == NR)
                block_rows(mr, k, a, lda, b, ldb, c, ldc, accumulate);
            else
                block_edge(mr, nr, k, a, lda, b, ldb, c, ldc, accumulate);
        }
    }
}
#endif

static void gemm_simd(int m, int n, int k, const float *A, ptrdiff_t lda, const float *B,
                      ptrdiff_t ldb, float *C, ptrdiff_t ldc, int accumulate)
{
    gemm_any(m, n, k, A, lda, B, ldb, 0, C, ldc, accumulate);
}

static void gemm_packed_simd(int m, int n, int k, const float *A, ptrdiff_t lda, const float *Bp,
                             ptrdiff_t panel_stride, float *C, ptrdiff_t ldc, int accumulate)
{
    gemm_any(m, n, k, A, lda, Bp, NR, panel_stride > 0 ? panel_stride : NR * (ptrdiff_t)k, C,
             ldc, accumulate);
}

/* ------------------------------------------------------- bf16 pair GEMM */

#ifdef VDOT_BF16 /* VDOT_BF16(acc, a, b): acc + dot products of bf16 pairs */
/* As micro_block, over pairs: one 32-bit broadcast of A (two bf16) per row
 * and step, NV vectors of NR pairs of B. */
static STEM_ALWAYS_INLINE void
micro_bf16(const int mr, int kp, const uint32_t *restrict A, ptrdiff_t lda,
           const uint32_t *restrict B, float *restrict C, ptrdiff_t ldc, int accumulate)
{
    VF acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            acc[r][c] = accumulate ? VLOAD(C + r * ldc + c * VW) : VZERO();
    for (int p = 0; p < kp; p++) {
        const uint32_t *restrict b = B + (ptrdiff_t)p * NR;
        VI bv[NV];
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            bv[c] = VLOADI(b + c * VW);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            const VI a = VSET1I((int)A[r * lda + p]);
#pragma GCC unroll 4
            for (int c = 0; c < NV; c++)
                acc[r][c] = VDOT_BF16(acc[r][c], a, bv[c]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NV; c++)
            VSTORE(C + r * ldc + c * VW, acc[r][c]);
}

#define MICRO_BF16_CASE(R)                                                              \
    case R:                                                                             \
        micro_bf16((R) <= MR ? (R) : MR, kp, a, lda, b, c, ldc, accumulate);             \
        break

static void gemm_bf16_simd(int m, int n, int kp, const uint32_t *A, ptrdiff_t lda,
                           const uint32_t *Bp, ptrdiff_t panel_stride, float *C, ptrdiff_t ldc,
                           int accumulate)
{
    if (panel_stride <= 0)
        panel_stride = NR * (ptrdiff_t)kp;
    for (int j = 0; j + NR <= n; j += NR) {
        const uint32_t *b = Bp + (ptrdiff_t)(j / NR) * panel_stride;
        for (int i = 0; i < m; i += MR) {
            const uint32_t *a = A + (ptrdiff_t)i * lda;
            float *c = C + (ptrdiff_t)i * ldc + j;
            switch (m - i < MR ? m - i : MR) {
#if MR >= 12
                MICRO_BF16_CASE(12);
                MICRO_BF16_CASE(11);
                MICRO_BF16_CASE(10);
                MICRO_BF16_CASE(9);
#endif
#if MR >= 8
                MICRO_BF16_CASE(8);
                MICRO_BF16_CASE(7);
#endif
                MICRO_BF16_CASE(6);
                MICRO_BF16_CASE(5);
                MICRO_BF16_CASE(4);
                MICRO_BF16_CASE(3);
                MICRO_BF16_CASE(2);
            default: micro_bf16(1, kp, a, lda, b, c, ldc, accumulate); break;
            }
        }
    }
}
#endif

/* --------------------------------------------------------------- softmax */

#ifdef KERNELS_OWN_EXP2_ONE
static inline float exp2_one(float t);
#else
/* 2^t for t <= 127 (tails): the scalar kernels' formula, with FMA. */
static inline float exp2_one(float t)
{
    float tc = t >= -126.0f ? t : -126.0f; /* also maps NaN, keeps the cast defined */
    tc = tc <= 127.0f ? tc : 127.0f;
    const float r = nearbyintf(tc);
    const float f = tc - r;
    float p = EXP2_C7;
    p = fmaf(p, f, EXP2_C6);
    p = fmaf(p, f, EXP2_C5);
    p = fmaf(p, f, EXP2_C4);
    p = fmaf(p, f, EXP2_C3);
    p = fmaf(p, f, EXP2_C2);
    p = fmaf(p, f, EXP2_C1);
    p = fmaf(p, f, 1.0f);
    const uint32_t bits = (uint32_t)((int32_t)r + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    const float v = p * s;
    return t >= -126.0f ? v : (t != t ? t : 0.0f);
}
#endif

static float row_max_simd(const float *restrict x, int n)
{
    VF m0 = VSET1(-INFINITY), m1 = m0;
    int j = 0;
    /* VMAX(x, m) returns m when x is NaN: NaN never wins. */
    for (; j + 2 * VW <= n; j += 2 * VW) {
        m0 = VMAX(VLOAD(x + j), m0);
        m1 = VMAX(VLOAD(x + j + VW), m1);
    }
    float m = vhmax(VMAX(m0, m1));
    for (; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

static float exp2_sum_simd(float *restrict x, int n, float sub)
{
    const VF vsub = VSET1(sub);
    VF s0 = VZERO(), s1 = VZERO();
    int j = 0;
    for (; j + 2 * VW <= n; j += 2 * VW) {
        const VF a = vexp2(VSUB(VLOAD(x + j), vsub));
        const VF b = vexp2(VSUB(VLOAD(x + j + VW), vsub));
        VSTORE(x + j, a);
        VSTORE(x + j + VW, b);
        s0 = VADD(s0, a);
        s1 = VADD(s1, b);
    }
    float s = vhsum(VADD(s0, s1));
    for (; j < n; j++) {
        const float v = exp2_one(x[j] - sub);
        x[j] = v;
        s += v;
    }
    return s;
}

static void scale_simd(float *restrict x, int n, float a)
{
    const VF va = VSET1(a);
    int j = 0;
    for (; j + VW <= n; j += VW)
        VSTORE(x + j, VMUL(VLOAD(x + j), va));
    for (; j < n; j++)
        x[j] *= a;
}

/* ------------------------------------------------------------ conversion */

static void widen_simd(const void *src, stem_dtype dtype, int n, float *restrict dst, float mul)
{
    const VF vm = VSET1(mul);
    int j = 0;
    switch (dtype) {
    case STEM_DTYPE_F32: {
        const float *x = (const float *)src;
        for (; j + VW <= n; j += VW)
            VSTORE(dst + j, VMUL(VLOAD(x + j), vm));
        for (; j < n; j++)
            dst[j] = mul * x[j];
        break;
    }
    case STEM_DTYPE_F16: {
        const uint16_t *x = (const uint16_t *)src;
        for (; j + VW <= n; j += VW)
            VSTORE(dst + j, VMUL(vload_f16(x + j), vm));
        for (; j < n; j++)
            dst[j] = mul * stem_cpu_f16(x[j]);
        break;
    }
    case STEM_DTYPE_BF16: {
        const uint16_t *x = (const uint16_t *)src;
        for (; j + VW <= n; j += VW)
            VSTORE(dst + j, VMUL(vload_bf16(x + j), vm));
        for (; j < n; j++)
            dst[j] = mul * stem_cpu_bf16(x[j]);
        break;
    }
    default:
        memset(dst, 0, (size_t)n * sizeof(float));
        break;
    }
}

/* Round to nearest even on the bits (the compiler vectorizes the loop with
 * the file's ISA); NaN keeps its sign and becomes a quiet NaN, never Inf. */
static void narrow_bf16_simd(const float *restrict x, int n, uint16_t *restrict dst)
{
    for (int j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, x + j, sizeof u);
        const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        dst[j] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
    }
}

/* narrow_bf16 of one value (the loop above, for tails). */
static inline uint16_t narrow_one(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
}

/* scale, exp2_sum, then narrow_bf16 of the result (unused in files whose
 * only table takes the vector version). */
#if defined(__GNUC__)
__attribute__((unused))
#endif
static float exp2_sum_bf16_plain(float *restrict x, int n, float mul, float sub,
                                 uint16_t *restrict dst)
{
    if (mul != 1.0f)
        scale_simd(x, n, mul);
    const float s = exp2_sum_simd(x, n, sub);
    narrow_bf16_simd(x, n, dst);
    return s;
}

#ifdef VNARROW_BF16 /* VNARROW_BF16(dst, v): VW values of v to bf16 at dst, as narrow_bf16 */
/* One pass: 2^(mul x - sub) with the scale in the subtraction's FMA, the
 * sum, and each vector converted while in a register; with xmax, also the
 * row's max (NaN never wins, as in row_max), x untouched either way. Bit
 * for bit narrow_bf16 on these values: they are 0, NaN or normal (vexp2
 * flushes below its normal range), so a vector conversion that treats
 * denormals as zero sees none. Inlined into the two table functions, where
 * xmax is a constant NULL or not. */
static STEM_ALWAYS_INLINE float exp2_sum_bf16_pass(const float *restrict x, int n, float mul,
                                                   float sub, uint16_t *restrict dst, float *xmax)
{
    const VF vmul = VSET1(mul), vneg = VSET1(-sub);
    VF s0 = VZERO(), s1 = VZERO(), m0 = VSET1(-INFINITY), m1 = m0;
    int j = 0;
    for (; j + 2 * VW <= n; j += 2 * VW) {
        const VF xa = VLOAD(x + j), xb = VLOAD(x + j + VW);
        if (xmax) {
            m0 = VMAX(xa, m0);
            m1 = VMAX(xb, m1);
        }
        const VF a = vexp2(VFMA(xa, vmul, vneg));
        const VF b = vexp2(VFMA(xb, vmul, vneg));
        VNARROW_BF16(dst + j, a);
        VNARROW_BF16(dst + j + VW, b);
        s0 = VADD(s0, a);
        s1 = VADD(s1, b);
    }
    float s = vhsum(VADD(s0, s1)), m = xmax ? vhmax(VMAX(m0, m1)) : 0.0f;
    for (; j < n; j++) {
        const float v = exp2_one(SFMA(x[j], mul, -sub));
        s += v;
        dst[j] = narrow_one(v);
        m = x[j] > m ? x[j] : m;
    }
    if (xmax)
        *xmax = m;
    return s;
}

static float exp2_sum_bf16_vec(float *restrict x, int n, float mul, float sub,
                               uint16_t *restrict dst)
{
    return exp2_sum_bf16_pass(x, n, mul, sub, dst, NULL);
}

/* The lazy rescaling's pass (cpu_attention.c): sub need not be the max; the
 * caller checks *xmax against it. */
static float exp2_sum_bf16_max_vec(const float *restrict x, int n, float mul, float sub,
                                   uint16_t *restrict dst, float *xmax)
{
    return exp2_sum_bf16_pass(x, n, mul, sub, dst, xmax);
}
#define EXP2_SUM_BF16_FAST exp2_sum_bf16_vec
#define EXP2_SUM_BF16_MAX exp2_sum_bf16_max_vec
#else
#define EXP2_SUM_BF16_MAX NULL
#define EXP2_SUM_BF16_FAST exp2_sum_bf16_plain
#endif

#if defined(VDOT_BF16) && !defined(GEMM_BF16_TABLE)
#define GEMM_BF16_TABLE gemm_bf16_simd
#endif

const stem_cpu_kernels KERNELS_TABLE = {
    .name = KERNELS_NAME,
    .gemm = gemm_simd,
    .nr = NR,
    .gemm_packed = gemm_packed_simd,
#if defined(VDOT_BF16) && !defined(KERNELS_TABLE_BF16)
    .gemm_bf16 = GEMM_BF16_TABLE, /* the only table of this file */
    .exp2_sum_bf16 = EXP2_SUM_BF16_FAST,
    .exp2_sum_bf16_max = EXP2_SUM_BF16_MAX,
#else
    .exp2_sum_bf16 = exp2_sum_bf16_plain,
#endif
#ifdef GEMM_BF16_HELD_TABLE
    .gemm_bf16_held = GEMM_BF16_HELD_TABLE,
    .tiles_begin = TILES_BEGIN_TABLE,
    .tiles_end = TILES_END_TABLE,
#endif
    .narrow_bf16 = narrow_bf16_simd,
    .row_max = row_max_simd,
    .exp2_sum = exp2_sum_simd,
    .scale = scale_simd,
    .widen = widen_simd,
};

#if defined(VDOT_BF16) && defined(KERNELS_TABLE_BF16)
/* The same kernels plus the bf16 dot product, for CPUs that have it. */
const stem_cpu_kernels KERNELS_TABLE_BF16 = {
    .name = KERNELS_NAME "+bf16",
    .gemm = gemm_simd,
    .nr = NR,
    .gemm_packed = gemm_packed_simd,
    .gemm_bf16 = GEMM_BF16_TABLE,
    .exp2_sum_bf16 = EXP2_SUM_BF16_FAST,
    .exp2_sum_bf16_max = EXP2_SUM_BF16_MAX,
    .narrow_bf16 = narrow_bf16_simd,
    .row_max = row_max_simd,
    .exp2_sum = exp2_sum_simd,
    .scale = scale_simd,
    .widen = widen_simd,
};
#endif
