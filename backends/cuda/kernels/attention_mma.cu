// Block-sparse FlashAttention-2 style forward on tensor cores (mma.sync
// m16n8k16, f16/bf16 in, f32 accumulate; sm_80 and sm_90). A CTA of NW warps
// owns 16*NW query rows (16 per warp, one query block: 8 warps for block 128,
// 4 for block 64, so each K/V tile feeds as many rows as it can) of one
// (batch, head); it walks its query
// block's list and streams each kept key block in 64-key tiles through
// shared memory (cp.async, double buffered). Only the diagonal block is
// masked. K/V of the GQA head are read in place. Taken when the head_dim is
// 64 or 128, the block size 64 or 128 and Q/K/V rows are 16-byte aligned
// with unit element stride; everything else goes to stem_k_attn_generic.
#include "common.cuh"

#define BC 64  /* keys per tile */

__device__ __forceinline__ unsigned smem_addr(const void *p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    const int bytes = valid ? 16 : 0; // 0: zero-fill (rows past N)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(unsigned r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(unsigned r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

template <bool BF16>
__device__ __forceinline__ void mma16816(float c[4], const unsigned a[4], unsigned b0, unsigned b1)
{
    if (BF16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <bool BF16> __device__ __forceinline__ unsigned pack2(float lo, float hi)
{
    if (BF16) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<unsigned *>(&v);
    }
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned *>(&v);
}

// The CTA's walk over (kept block, 64-key tile) pairs; every thread computes
// the same sequence. Invalid list entries are skipped.
struct tile_walk {
    long long irow;  // index row offset
    int cnt, jj, sub, nsub, bc; // bc: keys per tile
    long long prev, J;
};

__device__ __forceinline__ bool walk_next(const stem_kattn &p, tile_walk &w, long long I,
                                          long long q0, int BR, long long *j0)
{
    for (;;) {
        if (w.J >= 0 && ++w.sub < w.nsub) {
            const long long s = w.J * p.block + (long long)w.sub * w.bc;
            if (s < p.n_tokens && s <= q0 + BR - 1) {
                *j0 = s;
                return true;
            }
            continue;
        }
        if (w.jj >= w.cnt)
            return false;
        const long long J = *kt_i32(p.index, w.irow + (w.jj++) * p.index.s[3]);
        if (J < 0 || J > I || J <= w.prev)
            continue;
        w.prev = J;
        w.J = J;
        w.sub = -1;
    }
}

// 2^x on the special-function unit (flushes results below 2^-126 to 0,
// which no softmax sum can see).
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// QREG: Q fragments stay in registers for the whole walk; otherwise they
// are re-read from shared memory per tile, which frees ~64 registers for the
// compiler to keep more fragment loads in flight.
template <int D, bool BF16, int NW, bool QREG>
__device__ __forceinline__ void attn_mma(const stem_kattn &p)
{
    constexpr int BR = 16 * NW; // query rows per CTA
    constexpr int LD = D + 8; // padded row (halves): ldmatrix without bank conflicts
    extern __shared__ __align__(16) unsigned short smem[];
    unsigned short *Qs = smem;
    unsigned short *Ks = Qs + BR * LD;          // [2][BC][LD]
    unsigned short *Vs = Ks + 2 * BC * LD;      // [2][BC][LD]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const long long tile = gridDim.x - 1 - blockIdx.x; // late (longer) rows first
    const long long q0 = tile * BR, I = q0 / p.block;
    const long long bh = blockIdx.y, b = bh / p.hq, h = bh % p.hq, kh = h / p.group;

    const unsigned short *qg = reinterpret_cast<const unsigned short *>(p.q.ptr) + b * p.q.s[0] + h * p.q.s[1];
    const unsigned short *kg = reinterpret_cast<const unsigned short *>(p.k.ptr) + b * p.k.s[0] + kh * p.k.s[1];
    const unsigned short *vg = reinterpret_cast<const unsigned short *>(p.v.ptr) + b * p.v.s[0] + kh * p.v.s[1];
    constexpr int CH = D / 8; // 16-byte chunks per row

    // Q tile -> shared -> registers (A fragments for every k16 step).
    for (int e = tid; e < BR * CH; e += NW * 32) {
        const int r = e / CH, c = (e % CH) * 8;
        const long long tok = q0 + r;
        cp_async16(Qs + r * LD + c, qg + (tok < p.n_tokens ? tok : 0) * p.q.s[2] + c, tok < p.n_tokens);
    }
    cp_async_commit();

    tile_walk w;
    w.irow = kt_off(p.index, b, h, I, 0);
    int cnt = *kt_i32(p.count, kt_off(p.count, b, h, I, 0));
    w.cnt = cnt < 0 ? 0 : (cnt > p.n_blocks ? p.n_blocks : cnt);
    w.jj = 0;
    w.sub = 0;
    w.nsub = p.block / BC;
    w.bc = BC;
    w.prev = -1;
    w.J = -1;

    auto load_kv = [&](long long j0, int buf) {
        unsigned short *kd = Ks + buf * BC * LD, *vd = Vs + buf * BC * LD;
        for (int e = tid; e < BC * CH; e += NW * 32) {
            const int r = e / CH, c = (e % CH) * 8;
            const long long tok = j0 + r;
            const bool ok = tok < p.n_tokens;
            const long long t = ok ? tok : 0;
            cp_async16(kd + r * LD + c, kg + t * p.k.s[2] + c, ok);
            cp_async16(vd + r * LD + c, vg + t * p.v.s[2] + c, ok);
        }
    };

    long long j0 = 0;
    bool have = walk_next(p, w, I, q0, BR, &j0);
    if (have)
        load_kv(j0, 0);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    const unsigned short *qrow = Qs + (warp * 16 + (lane & 15)) * LD + (lane >> 4) * 8;
    unsigned qf[QREG ? D / 16 : 1][4];
    if (QREG) {
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++)
            ldsm_x4(qf[QREG ? ks : 0], qrow + ks * 16);
    }

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;
    const long long row_lo = q0 + warp * 16 + (lane >> 2), row_hi = row_lo + 8;

    int buf = 0;
    while (have) {
        long long j1 = 0;
        const bool more = walk_next(p, w, I, q0, BR, &j1);
        if (more)
            load_kv(j1, buf ^ 1);
        cp_async_commit();
        const unsigned short *kb = Ks + buf * BC * LD, *vb = Vs + buf * BC * LD;

        // S = Q K^T (16 x 64 per warp)
        float s[BC / 8][4];
        if (QREG) {
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++) {
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
                for (int k2 = 0; k2 < D / 32; k2++) {
                    unsigned kf[4];
                    ldsm_x4(kf, kb + (nt * 8 + (lane & 7)) * LD + k2 * 32 + (lane >> 3) * 8);
                    mma16816<BF16>(s[nt], qf[QREG ? 2 * k2 : 0], kf[0], kf[1]);
                    mma16816<BF16>(s[nt], qf[QREG ? 2 * k2 + 1 : 0], kf[2], kf[3]);
                }
            }
        } else {
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++)
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int k2 = 0; k2 < D / 32; k2++) {
                unsigned qa[4], qb[4];
                ldsm_x4(qa, qrow + k2 * 32);
                ldsm_x4(qb, qrow + k2 * 32 + 16);
#pragma unroll
                for (int nt = 0; nt < BC / 8; nt++) {
                    unsigned kf[4];
                    ldsm_x4(kf, kb + (nt * 8 + (lane & 7)) * LD + k2 * 32 + (lane >> 3) * 8);
                    mma16816<BF16>(s[nt], qa, kf[0], kf[1]);
                    mma16816<BF16>(s[nt], qb, kf[2], kf[3]);
                }
            }
        }
        // Scale, mask (diagonal tile / keys past N), online softmax.
        const bool need_mask = j0 + BC - 1 > q0 || j0 + BC > p.n_tokens;
        const int key0 = (int)(j0 - q0), nvalid = (int)(p.n_tokens - q0); // tile-relative
        const int rlo = warp * 16 + (lane >> 2), rhi = rlo + 8;
        float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < BC / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = s[nt][e] * p.scale_log2;
                if (need_mask) {
                    const int key = key0 + nt * 8 + (lane & 3) * 2 + (e & 1);
                    const int row = e < 2 ? rlo : rhi;
                    if (key > row || key >= nvalid)
                        x = -INFINITY;
                }
                s[nt][e] = x;
                if (e < 2)
                    mx_lo = fmaxf(mx_lo, x);
                else
                    mx_hi = fmaxf(mx_hi, x);
            }
        mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
        mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
        mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
        mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
        const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
        const float mu_lo = mn_lo == -INFINITY ? 0.0f : mn_lo;
        const float mu_hi = mn_hi == -INFINITY ? 0.0f : mn_hi;
        const float a_lo = fast_exp2(m_lo - mu_lo), a_hi = fast_exp2(m_hi - mu_hi);
        m_lo = mn_lo;
        m_hi = mn_hi;
        float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
        for (int nt = 0; nt < BC / 8; nt++) {
            s[nt][0] = fast_exp2(s[nt][0] - mu_lo);
            s[nt][1] = fast_exp2(s[nt][1] - mu_lo);
            s[nt][2] = fast_exp2(s[nt][2] - mu_hi);
            s[nt][3] = fast_exp2(s[nt][3] - mu_hi);
            sum_lo += s[nt][0] + s[nt][1];
            sum_hi += s[nt][2] + s[nt][3];
        }
        l_lo = l_lo * a_lo + sum_lo;
        l_hi = l_hi * a_hi + sum_hi;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            o[i][0] *= a_lo;
            o[i][1] *= a_lo;
            o[i][2] *= a_hi;
            o[i][3] *= a_hi;
        }
        // O += P V, P from the S accumulators (rounded to the input type).
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            unsigned a[4];
            a[0] = pack2<BF16>(s[2 * kk][0], s[2 * kk][1]);
            a[1] = pack2<BF16>(s[2 * kk][2], s[2 * kk][3]);
            a[2] = pack2<BF16>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            a[3] = pack2<BF16>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                unsigned vf[4];
                ldsm_x4_t(vf, vb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 +
                                  (lane >> 4) * 8);
                mma16816<BF16>(o[2 * dp], a, vf[0], vf[1]);
                mma16816<BF16>(o[2 * dp + 1], a, vf[2], vf[3]);
            }
        }
        cp_async_wait<0>();
        __syncthreads(); // this buffer is free, the next one is loaded
        buf ^= 1;
        j0 = j1;
        have = more;
    }

    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
        const int col = i * 8 + (lane & 3) * 2;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const long long row = e < 2 ? row_lo : row_hi;
            const float l = e < 2 ? l_lo : l_hi;
            if (row < p.n_tokens)
                kt_store(p.out, kt_off(p.out, b, h, row, col + (e & 1)), l > 0.0f ? o[i][e] / l : (isnan(l) ? l : 0.0f));
        }
    }
}

// FlashAttention-2's shape for block size 128: 4 warps x 32 query rows (two
// m16 tiles per warp), so every K / V fragment read from shared memory feeds
// two MMAs; Q is re-read from shared memory per tile; KC keys per tile.
template <int D, bool BF16, int KC>
__device__ __forceinline__ void attn_mma_wide(const stem_kattn &p)
{
    constexpr int NW = 4, MT = 2, BR = 128, LD = D + 8, CH = D / 8;
    extern __shared__ __align__(16) unsigned short smem[];
    unsigned short *Qs = smem;
    unsigned short *Ks = Qs + BR * LD;     // [2][KC][LD]
    unsigned short *Vs = Ks + 2 * KC * LD; // [2][KC][LD]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const long long tile = gridDim.x - 1 - blockIdx.x;
    const long long q0 = tile * BR, I = q0 / p.block;
    const long long bh = blockIdx.y, b = bh / p.hq, h = bh % p.hq, kh = h / p.group;
    const unsigned short *qg = reinterpret_cast<const unsigned short *>(p.q.ptr) + b * p.q.s[0] + h * p.q.s[1];
    const unsigned short *kg = reinterpret_cast<const unsigned short *>(p.k.ptr) + b * p.k.s[0] + kh * p.k.s[1];
    const unsigned short *vg = reinterpret_cast<const unsigned short *>(p.v.ptr) + b * p.v.s[0] + kh * p.v.s[1];

    for (int e = tid; e < BR * CH; e += NW * 32) {
        const int r = e / CH, c = (e % CH) * 8;
        const long long tok = q0 + r;
        cp_async16(Qs + r * LD + c, qg + (tok < p.n_tokens ? tok : 0) * p.q.s[2] + c, tok < p.n_tokens);
    }
    cp_async_commit();

    tile_walk w;
    w.irow = kt_off(p.index, b, h, I, 0);
    const int cnt = *kt_i32(p.count, kt_off(p.count, b, h, I, 0));
    w.cnt = cnt < 0 ? 0 : (cnt > p.n_blocks ? p.n_blocks : cnt);
    w.jj = 0;
    w.sub = 0;
    w.nsub = p.block / KC;
    w.bc = KC;
    w.prev = -1;
    w.J = -1;

    auto load_kv = [&](long long j0, int buf) {
        unsigned short *kd = Ks + buf * KC * LD, *vd = Vs + buf * KC * LD;
        for (int e = tid; e < KC * CH; e += NW * 32) {
            const int r = e / CH, c = (e % CH) * 8;
            const long long tok = j0 + r;
            const bool ok = tok < p.n_tokens;
            const long long t = ok ? tok : 0;
            cp_async16(kd + r * LD + c, kg + t * p.k.s[2] + c, ok);
            cp_async16(vd + r * LD + c, vg + t * p.v.s[2] + c, ok);
        }
    };

    long long j0 = 0;
    bool have = walk_next(p, w, I, q0, BR, &j0);
    if (have)
        load_kv(j0, 0);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    const unsigned short *qrow = Qs + (warp * 32 + (lane & 15)) * LD + (lane >> 4) * 8;
    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < D / 8; i++)
            o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;

    int buf = 0;
    while (have) {
        long long j1 = 0;
        const bool more = walk_next(p, w, I, q0, BR, &j1);
        if (more)
            load_kv(j1, buf ^ 1);
        cp_async_commit();
        const unsigned short *kb = Ks + buf * KC * LD, *vb = Vs + buf * KC * LD;

        float s[MT][KC / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < KC / 8; nt++)
                s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
#pragma unroll
        for (int k2 = 0; k2 < D / 32; k2++) {
            unsigned qa[MT][4], qb[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                ldsm_x4(qa[mt], qrow + mt * 16 * LD + k2 * 32);
                ldsm_x4(qb[mt], qrow + mt * 16 * LD + k2 * 32 + 16);
            }
#pragma unroll
            for (int nt = 0; nt < KC / 8; nt++) {
                unsigned kf[4];
                ldsm_x4(kf, kb + (nt * 8 + (lane & 7)) * LD + k2 * 32 + (lane >> 3) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816<BF16>(s[mt][nt], qa[mt], kf[0], kf[1]);
                    mma16816<BF16>(s[mt][nt], qb[mt], kf[2], kf[3]);
                }
            }
        }
        const bool need_mask = j0 + KC - 1 > q0 || j0 + KC > p.n_tokens;
        const int key0 = (int)(j0 - q0), nvalid = (int)(p.n_tokens - q0);
        unsigned pa[MT][KC / 16][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            const int rlo = warp * 32 + mt * 16 + (lane >> 2), rhi = rlo + 8;
            float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < KC / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float x = s[mt][nt][e] * p.scale_log2;
                    if (need_mask) {
                        const int key = key0 + nt * 8 + (lane & 3) * 2 + (e & 1);
                        if (key > (e < 2 ? rlo : rhi) || key >= nvalid)
                            x = -INFINITY;
                    }
                    s[mt][nt][e] = x;
                    if (e < 2)
                        mx_lo = fmaxf(mx_lo, x);
                    else
                        mx_hi = fmaxf(mx_hi, x);
                }
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
            const float mn_lo = fmaxf(m[mt][0], mx_lo), mn_hi = fmaxf(m[mt][1], mx_hi);
            const float mu_lo = mn_lo == -INFINITY ? 0.0f : mn_lo;
            const float mu_hi = mn_hi == -INFINITY ? 0.0f : mn_hi;
            const float a_lo = fast_exp2(m[mt][0] - mu_lo), a_hi = fast_exp2(m[mt][1] - mu_hi);
            m[mt][0] = mn_lo;
            m[mt][1] = mn_hi;
            float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
            for (int nt = 0; nt < KC / 8; nt++) {
                s[mt][nt][0] = fast_exp2(s[mt][nt][0] - mu_lo);
                s[mt][nt][1] = fast_exp2(s[mt][nt][1] - mu_lo);
                s[mt][nt][2] = fast_exp2(s[mt][nt][2] - mu_hi);
                s[mt][nt][3] = fast_exp2(s[mt][nt][3] - mu_hi);
                sum_lo += s[mt][nt][0] + s[mt][nt][1];
                sum_hi += s[mt][nt][2] + s[mt][nt][3];
            }
            l[mt][0] = l[mt][0] * a_lo + sum_lo;
            l[mt][1] = l[mt][1] * a_hi + sum_hi;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                o[mt][i][0] *= a_lo;
                o[mt][i][1] *= a_lo;
                o[mt][i][2] *= a_hi;
                o[mt][i][3] *= a_hi;
            }
#pragma unroll
            for (int kk = 0; kk < KC / 16; kk++) {
                pa[mt][kk][0] = pack2<BF16>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][kk][1] = pack2<BF16>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][kk][2] = pack2<BF16>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][kk][3] = pack2<BF16>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
        }
#pragma unroll
        for (int kk = 0; kk < KC / 16; kk++)
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                unsigned vf[4];
                ldsm_x4_t(vf, vb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 +
                                  (lane >> 4) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816<BF16>(o[mt][2 * dp], pa[mt][kk], vf[0], vf[1]);
                    mma16816<BF16>(o[mt][2 * dp + 1], pa[mt][kk], vf[2], vf[3]);
                }
            }
        cp_async_wait<0>();
        __syncthreads();
        buf ^= 1;
        j0 = j1;
        have = more;
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float l_lo = l[mt][0], l_hi = l[mt][1];
        l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
        l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
        l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
        l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
        const long long row_lo = q0 + warp * 32 + mt * 16 + (lane >> 2), row_hi = row_lo + 8;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            const int col = i * 8 + (lane & 3) * 2;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const long long row = e < 2 ? row_lo : row_hi;
                const float ll = e < 2 ? l_lo : l_hi;
                if (row < p.n_tokens)
                    kt_store(p.out, kt_off(p.out, b, h, row, col + (e & 1)),
                             ll > 0.0f ? o[mt][i][e] / ll : (isnan(ll) ? ll : 0.0f));
            }
        }
    }
}

#define STEM_ATTN_WIDE(name, D, BF16, KC)                                                \
    extern "C" __global__ void __launch_bounds__(128) name(stem_kattn p)                 \
    {                                                                                    \
        attn_mma_wide<D, BF16, KC>(p);                                                   \
    }
// Block size 128 by default (STEM_CUDA_ATTN_WIDE=0 falls back to the 8-warp kernels).
STEM_ATTN_WIDE(stem_k_attn_wide_f16_d64, 64, false, 32)
STEM_ATTN_WIDE(stem_k_attn_wide_f16_d128, 128, false, 32)
STEM_ATTN_WIDE(stem_k_attn_wide_bf16_d64, 64, true, 32)
STEM_ATTN_WIDE(stem_k_attn_wide_bf16_d128, 128, true, 32)

#define STEM_ATTN_MMA(name, D, BF16, NW, QREG)                                           \
    extern "C" __global__ void __launch_bounds__(NW * 32) name(stem_kattn p)             \
    {                                                                                    \
        attn_mma<D, BF16, NW, QREG>(p);                                                  \
    }
// _b64: 4 warps (block size 64); _b128: 8 warps (block size 128).
STEM_ATTN_MMA(stem_k_attn_mma_bf16_d64_b64, 64, true, 4, true)
STEM_ATTN_MMA(stem_k_attn_mma_bf16_d128_b64, 128, true, 4, true)
STEM_ATTN_MMA(stem_k_attn_mma_f16_d64_b64, 64, false, 4, true)
STEM_ATTN_MMA(stem_k_attn_mma_f16_d128_b64, 128, false, 4, true)
STEM_ATTN_MMA(stem_k_attn_mma_bf16_d64_b128, 64, true, 8, true)
STEM_ATTN_MMA(stem_k_attn_mma_bf16_d128_b128, 128, true, 8, true)
STEM_ATTN_MMA(stem_k_attn_mma_f16_d64_b128, 64, false, 8, true)
STEM_ATTN_MMA(stem_k_attn_mma_f16_d128_b128, 128, false, 8, true)
// Variant with Q re-read from shared memory (STEM_CUDA_ATTN_QSMEM=1), head_dim 128.
STEM_ATTN_MMA(stem_k_attn_mma_f16_d128_b128_qsmem, 128, false, 8, false)
STEM_ATTN_MMA(stem_k_attn_mma_bf16_d128_b128_qsmem, 128, true, 8, false)
STEM_ATTN_MMA(stem_k_attn_mma_f16_d128_b64_qsmem, 128, false, 4, false)
STEM_ATTN_MMA(stem_k_attn_mma_bf16_d128_b64_qsmem, 128, true, 4, false)
