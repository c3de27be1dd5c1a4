// Block-sparse attention, exact f32 on CUDA cores: the path for f32 inputs
// and for any layout, block size or head_dim the tensor-core kernel does not
// take. One warp per query token; keys 32 at a time, one per lane; online
// softmax; each lane owns head_dim/32 output columns.
#include "common.cuh"

#define GEN_WARPS 4
#define GEN_MAX_D 256

extern "C" __global__ void __launch_bounds__(GEN_WARPS * 32) stem_k_attn_generic(stem_kattn p)
{
    __shared__ float qs[GEN_WARPS][GEN_MAX_D];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, D = p.head_dim;
    // Query i of the call sits at position pos = q_offset + i (keys [0, pos]).
    const long long i = (long long)blockIdx.x * GEN_WARPS + w, pos = p.q_offset + i;
    const long long bh = blockIdx.y, b = bh / p.hq, h = bh % p.hq, kh = h / p.group;
    if (pos >= p.n_tokens)
        return; // no block-wide barrier below
    const long long oq = kt_off(p.q, b, h, i, 0);
    for (int c = lane; c < D; c += 32)
        qs[w][c] = kt_load(p.q, oq + c * p.q.s[3]);
    __syncwarp();
    const long long I = pos / p.block, row = I - p.row0;
    int cnt = *kt_i32(p.count, kt_off(p.count, b, h, row, 0));
    cnt = cnt < 0 ? 0 : (cnt > p.n_blocks ? p.n_blocks : cnt);
    const long long irow = kt_off(p.index, b, h, row, 0);
    float m = -INFINITY, l = 0.0f, o[GEN_MAX_D / 32];
#pragma unroll
    for (int r = 0; r < GEN_MAX_D / 32; r++)
        o[r] = 0.0f;
    long long prev = -1;
    for (int jj = 0; jj < cnt; jj++) {
        const long long J = *kt_i32(p.index, irow + jj * p.index.s[3]);
        if (J < 0 || J > I || J <= prev)
            continue; // invalid entries are skipped (lists cannot be checked without a sync)
        prev = J;
        long long kend = J * p.block + p.block;
        kend = kend < p.n_tokens ? kend : p.n_tokens;
        if (J == I)
            kend = kend < pos + 1 ? kend : pos + 1; // causal mask inside the diagonal block
        for (long long j0 = J * p.block; j0 < kend; j0 += 32) {
            const long long j = j0 + lane;
            float s = -INFINITY;
            if (j < kend) {
                const long long ok = kt_off(p.k, b, kh, j, 0);
                float acc = 0.0f;
                for (int c = 0; c < D; c++)
                    acc = fmaf(qs[w][c], kt_load(p.k, ok + c * p.k.s[3]), acc);
                s = acc * p.scale_log2;
            }
            const float mnew = fmaxf(m, warp_max(s));
            const float alpha = exp2f(m - mnew); // m = -inf on the first tile: 0
            const float pr = j < kend ? exp2f(s - mnew) : 0.0f;
            l = l * alpha + warp_sum(pr);
#pragma unroll
            for (int r = 0; r < GEN_MAX_D / 32; r++)
                o[r] *= alpha;
            const int nk = (int)(kend - j0 < 32 ? kend - j0 : 32);
            for (int t = 0; t < nk; t++) {
                const float pt = __shfl_sync(0xffffffffu, pr, t);
                const long long ov = kt_off(p.v, b, kh, j0 + t, 0);
#pragma unroll
                for (int r = 0; r < GEN_MAX_D / 32; r++) {
                    const int c = lane + 32 * r;
                    if (c < D)
                        o[r] = fmaf(pt, kt_load(p.v, ov + c * p.v.s[3]), o[r]);
                }
            }
            m = mnew;
        }
    }
    const long long oo = kt_off(p.out, b, h, i, 0);
#pragma unroll
    for (int r = 0; r < GEN_MAX_D / 32; r++) {
        const int c = lane + 32 * r;
        if (c < D)
            kt_store(p.out, oo + c * p.out.s[3], l > 0.0f ? o[r] / l : (isnan(l) ? l : 0.0f));
    }
    if (p.has_lse && lane == 0) // m, l in log2 units
        *kt_f32(p.lse, kt_off(p.lse, b, h, i, 0)) =
            l > 0.0f ? (m + log2f(l)) * 0.69314718055994531f : (isnan(l) ? l : -INFINITY);
}
