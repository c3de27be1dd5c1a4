// Block-sparse FlashAttention-2 style forward on tensor cores (mma.sync
// m16n8k16, f16/bf16 in, f32 accumulate): the sm_80 / sm_86 / sm_89 path and
// the fallback on sm_90 when the TMA kernel's conditions do not hold. Two
// shapes of one mainloop (attn_common.cuh holds the shared pieces):
//  - block 64: 4 warps x 16 query rows, 64-key tiles, Q fragments in registers;
//  - block 128: 4 warps x 32 rows (two m16 tiles per warp, FA2's shape),
//    32-key tiles, Q re-read from shared memory;
//  - head_dim 256 (either block): one m16 tile per warp, 32-key tiles.
// K/V tiles go through shared memory (cp.async, double buffered); only the
// diagonal block is masked; K/V of the GQA head are read in place.
#include "attn_common.cuh"


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

// One mainloop, two shapes: NW warps, MT m16 tiles per warp (rows per CTA
// = 16 NW MT = one query block), KC keys per K/V tile. QREG keeps the Q
// fragments in registers (only with MT = 1: 64 registers at head_dim 128).
template <int D, bool BF16, int NW, int MT, int KC, bool QREG>
__device__ __forceinline__ void attn_mma(const stem_kattn &p)
{
    constexpr int BR = 16 * NW * MT, LD = D + 8, CH = D / 8; // LD: padded row, no bank conflicts
    extern __shared__ __align__(16) unsigned short smem[];
    unsigned short *Qs = smem;
    unsigned short *Ks = Qs + BR * LD;     // [2][KC][LD]
    unsigned short *Vs = Ks + 2 * KC * LD; // [2][KC][LD]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const attn_geom g = attn_geometry(p);
    // Tiles are absolute query blocks (BR = block), late (longer) rows
    // first; with a query offset q0 < 0 on the first tile (rows not loaded,
    // not stored).
    const long long I = g.q_offset / p.block + (gridDim.x - 1 - blockIdx.x);
    const long long qa0 = I * p.block, q0 = qa0 - g.q_offset; // absolute / call position
    const long long bh = blockIdx.y, b = bh / p.hq, h = bh % p.hq, kh = h / p.group;
    const unsigned short *qg = reinterpret_cast<const unsigned short *>(p.q.ptr) + b * p.q.s[0] + h * p.q.s[1];
    const unsigned short *kg = reinterpret_cast<const unsigned short *>(p.k.ptr) + b * p.k.s[0] + kh * p.k.s[1];
    const unsigned short *vg = reinterpret_cast<const unsigned short *>(p.v.ptr) + b * p.v.s[0] + kh * p.v.s[1];

    for (int e = tid; e < BR * CH; e += NW * 32) {
        const int r = e / CH, c = (e % CH) * 8;
        const long long tok = q0 + r;
        const bool ok = tok >= 0 && tok < g.q_len;
        cp_async16(Qs + r * LD + c, qg + (ok ? tok : 0) * p.q.s[2] + c, ok);
    }
    cp_async_commit();

    tile_walk w;
    walk_init(w, list_row_of(p, b, h, I), p.block, KC);
    auto load_kv = [&](long long j0, int buf) {
        unsigned short *kd = Ks + buf * KC * LD, *vd = Vs + buf * KC * LD;
        for (int e = tid; e < KC * CH; e += NW * 32) {
            const int r = e / CH, c = (e % CH) * 8;
            const long long tok = j0 + r;
            const bool ok = tok < g.kv_len;
            const long long t = ok ? tok : 0;
            cp_async16(kd + r * LD + c, kg + t * p.k.s[2] + c, ok);
            cp_async16(vd + r * LD + c, vg + t * p.v.s[2] + c, ok);
        }
    };

    const long long q_last = qa0 + BR - 1;
    long long j0 = 0;
    bool have = walk_next(w, g, p.block, I, q_last, &j0);
    if (have)
        load_kv(j0, 0);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    const unsigned short *qrow = Qs + (warp * 16 * MT + (lane & 15)) * LD + (lane >> 4) * 8;
    unsigned qf[QREG ? D / 16 : 1][4];
    if (QREG) {
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++)
            ldsm_x4(qf[QREG ? ks : 0], qrow + ks * 16);
    }
    float o[MT][D / 8][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < D / 8; i++)
            o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }

    int buf = 0;
    while (have) {
        long long j1 = 0;
        const bool more = walk_next(w, g, p.block, I, q_last, &j1);
        if (more)
            load_kv(j1, buf ^ 1);
        cp_async_commit();
        const unsigned short *kb = Ks + buf * KC * LD, *vb = Vs + buf * KC * LD;

        // S = Q K^T (16 MT x KC per warp)
        float s[MT][KC / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < KC / 8; nt++)
                s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
#pragma unroll
        for (int k2 = 0; k2 < D / 32; k2++) {
            unsigned qa[MT][4], qb[MT][4];
            if (!QREG) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    ldsm_x4(qa[mt], qrow + mt * 16 * LD + k2 * 32);
                    ldsm_x4(qb[mt], qrow + mt * 16 * LD + k2 * 32 + 16);
                }
            }
#pragma unroll
            for (int nt = 0; nt < KC / 8; nt++) {
                unsigned kf[4];
                ldsm_x4(kf, kb + (nt * 8 + (lane & 7)) * LD + k2 * 32 + (lane >> 3) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816<BF16>(s[mt][nt], QREG ? qf[QREG ? 2 * k2 : 0] : qa[mt], kf[0], kf[1]);
                    mma16816<BF16>(s[mt][nt], QREG ? qf[QREG ? 2 * k2 + 1 : 0] : qb[mt], kf[2], kf[3]);
                }
            }
        }
        // Scale, mask (diagonal tile / keys past kv_len), online softmax, P.
        const bool need_mask = j0 + KC - 1 > qa0 || j0 + KC > g.kv_len;
        unsigned pa[MT][KC / 16][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            const long long qlo = qa0 + warp * 16 * MT + mt * 16 + (lane >> 2);
            if (need_mask)
                scale_mask<KC / 8, true>(s[mt], p.scale_log2, j0, qlo, qlo + 8, g.kv_len, lane);
            else
                scale_mask<KC / 8, false>(s[mt], p.scale_log2, j0, qlo, qlo + 8, g.kv_len, lane);
            float alpha[2];
            softmax_step<KC / 8>(s[mt], m[mt], l[mt], alpha);
            rescale_o<D / 8>(o[mt], alpha);
            pack_p<KC / 8, BF16>(s[mt], pa[mt]);
        }
        // O += P V
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
        __syncthreads(); // this buffer is free, the next one is loaded
        buf ^= 1;
        j0 = j1;
        have = more;
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        finish_rows(l[mt]);
        const long long row_lo = q0 + warp * 16 * MT + mt * 16 + (lane >> 2);
        store_rows<D / 8>(p, g, b, h, row_lo, row_lo + 8, o[mt], l[mt], m[mt], lane);
    }
}

#define STEM_ATTN_MMA(name, D, BF16, NW, MT, KC, QREG)                                   \
    extern "C" __global__ void __launch_bounds__(32 * NW) name(stem_kattn p)             \
    {                                                                                    \
        attn_mma<D, BF16, NW, MT, KC, QREG>(p);                                          \
    }
// Block 64: 4 warps x 16 rows, 64-key tiles, Q in registers.
STEM_ATTN_MMA(stem_k_attn_mma_b64_f16_d64, 64, false, 4, 1, 64, true)
STEM_ATTN_MMA(stem_k_attn_mma_b64_f16_d128, 128, false, 4, 1, 64, true)
STEM_ATTN_MMA(stem_k_attn_mma_b64_bf16_d64, 64, true, 4, 1, 64, true)
STEM_ATTN_MMA(stem_k_attn_mma_b64_bf16_d128, 128, true, 4, 1, 64, true)
// Block 128: 4 warps x 32 rows, 32-key tiles, Q from shared memory.
STEM_ATTN_MMA(stem_k_attn_mma_b128_f16_d64, 64, false, 4, 2, 32, false)
STEM_ATTN_MMA(stem_k_attn_mma_b128_f16_d128, 128, false, 4, 2, 32, false)
STEM_ATTN_MMA(stem_k_attn_mma_b128_bf16_d64, 64, true, 4, 2, 32, false)
STEM_ATTN_MMA(stem_k_attn_mma_b128_bf16_d128, 128, true, 4, 2, 32, false)
// head_dim 256: the O accumulator alone is 128 registers per thread, so each
// warp owns one m16 tile (Q from shared memory) and the K / V tiles are 32
// keys; block 128 takes 8 warps. Shared memory: 132 KB (block 128), 99 KB
// (block 64: exactly the sm_86 / sm_89 limit).
STEM_ATTN_MMA(stem_k_attn_mma_b64_f16_d256, 256, false, 4, 1, 32, false)
STEM_ATTN_MMA(stem_k_attn_mma_b64_bf16_d256, 256, true, 4, 1, 32, false)
STEM_ATTN_MMA(stem_k_attn_mma_b128_f16_d256, 256, false, 8, 1, 32, false)
STEM_ATTN_MMA(stem_k_attn_mma_b128_bf16_d256, 256, true, 8, 1, 32, false)
