// Block scores on the GPU (docs/semantics.md sections 1-3): phase sums of Q
// and K, the value-magnitude bonus from V row norms, the causal score GEMM;
// and the XAttention block softmax mass.
#include "common.cuh"

// Qflat / Kflat rows: out[(bh*n + blk)*W + seg*d + e] = sum_{a<G} x[blk*B + a*S + ph][e],
// seg = ph (query) or S-1-ph (key). One CTA per row (grid.x = rows), threads
// over its W = S*d sums, two neighbouring columns per thread: with 16-bit
// rows of unit element stride a warp reads 128 contiguous bytes of a token
// in one 4-byte load per lane, and the G loads of a sum are independent
// (unrolled) so many are in flight. Summed in double like the reference
// (sums of G 16-bit numbers are exact in double, so the order does not
// matter), stored f32.
__device__ __forceinline__ unsigned to_tf32(float x)
{
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ float2 kt_load2(const stem_ktensor &t, long long e, bool vec)
{
    if (vec) { // e even, 4-byte aligned: one load for the pair
        const unsigned u = reinterpret_cast<const unsigned *>(t.ptr)[e >> 1];
        if (t.dtype == STEM_F16)
            return __half22float2(*reinterpret_cast<const __half2 *>(&u));
        return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
    }
    return make_float2(kt_load(t, e), kt_load(t, e + t.s[3]));
}

// The 16-byte path of stem_k_phase_sums: a unit is (phase, 8 columns);
// T adjacent lanes share a unit (T = 256 / units, at most 32), each summing
// every T-th of its G rows, then a butterfly over the T lanes. base is the
// offset of the block's first token (row `skip` and later are in range).
__device__ __forceinline__ void add8(double (&a)[8], uint4 v, bool f16)
{
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (f16) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&w[i]));
            a[2 * i] += f.x, a[2 * i + 1] += f.y;
        } else {
            a[2 * i] += __uint_as_float(w[i] << 16);
            a[2 * i + 1] += __uint_as_float(w[i] & 0xffff0000u);
        }
    }
}

template <int BATCH, bool STORE4>
__device__ __forceinline__ void phase_sums_x8(const stem_ktensor &t, long long base, int S, int D,
                                              int last, int skip, int is_key, float *out)
{
    const int units = S * (D / 8);
    int T = units >= (int)blockDim.x ? 1 : (int)blockDim.x / units;
    T = T >= 32 ? 32 : (T >= 16 ? 16 : (T >= 8 ? 8 : (T >= 4 ? 4 : (T >= 2 ? 2 : 1))));
    const int lane_in = threadIdx.x % T, per_pass = blockDim.x / T;
    const bool f16 = t.dtype == STEM_F16;
    const uint4 *src = reinterpret_cast<const uint4 *>(t.ptr);
    // Every thread runs the same number of passes (the shuffles need all lanes).
    for (int u0 = 0; u0 < units; u0 += per_pass) {
        const int u = u0 + threadIdx.x / T;
        double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int seg = 0, e = 0;
        if (u < units) {
            seg = u / (D / 8), e = (u - seg * (D / 8)) * 8;
            const int ph = is_key ? S - 1 - seg : seg;
            const int r0 = skip > ph ? ph + (skip - ph + S - 1) / S * S : ph;
            const long long step = (long long)S * T * t.s[2];
            long long off = base + (long long)(r0 + lane_in * S) * t.s[2] + e;
            if constexpr (BATCH == 0) {
#pragma unroll 4
                for (int r = r0 + lane_in * S; r < last; r += S * T, off += step)
                    add8(a, src[off >> 3], f16);
            } else {
                // The same rows in the same order; the loads of BATCH rows are
                // issued together (the loop above leaves one load per thread
                // in flight: each iteration's exit test sits between them).
                for (int r = r0 + lane_in * S; r < last; r += BATCH * S * T) {
                    uint4 x[BATCH > 0 ? BATCH : 1];
#pragma unroll
                    for (int j = 0; j < BATCH; j++)
                        if (r + j * S * T < last)
                            x[j] = src[(off + j * step) >> 3];
#pragma unroll
                    for (int j = 0; j < BATCH; j++)
                        if (r + j * S * T < last)
                            add8(a, x[j], f16);
                    off += BATCH * step;
                }
            }
        }
        for (int m = T / 2; m > 0; m >>= 1)
#pragma unroll
            for (int i = 0; i < 8; i++)
                a[i] += __shfl_xor_sync(0xffffffffu, a[i], m);
        if (u < units && lane_in == 0) {
            if constexpr (STORE4) { // 32-byte aligned: D % 8 == 0, rows of S*D floats
                float4 *o = reinterpret_cast<float4 *>(out + seg * D + e);
                o[0] = make_float4((float)a[0], (float)a[1], (float)a[2], (float)a[3]);
                o[1] = make_float4((float)a[4], (float)a[5], (float)a[6], (float)a[7]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++)
                    out[seg * D + e + i] = (float)a[i];
            }
        }
    }
}

// One row of phase sums (the CTA's work; 256 threads). is_key < 0: row
// counts queries and keys (the key rows follow the B*Hq*n_rows query rows).
// BATCH (0: the loop of stem_k_phase_sums) only schedules the loads, and
// STORE4 stores the same values 16 bytes at a time: every sum is the same.
template <int BATCH, bool STORE4>
__device__ __forceinline__ void phase_sums_row(const stem_kscore &p, long long row, int is_key)
{
    if (is_key < 0) {
        const long long qrows = (long long)p.batch * p.hq * p.n_rows;
        is_key = row >= qrows;
        row -= is_key ? qrows : 0;
    }
    const stem_ktensor &t = is_key ? p.k : p.q;
    const int H = is_key ? p.hkv : p.hq;
    // Queries: the call's rows (absolute blocks row0 ..) over positions >= q_offset.
    const int S = p.stride, D = p.head_dim, W = S * D, n = is_key ? p.n_blocks : p.n_rows;
    const long long blk = row % n, bh = row / n, b = bh / H, h = bh % H;
    const long long first = is_key ? 0 : p.q_offset, ablk = is_key ? blk : p.row0 + blk;
    float *out = reinterpret_cast<float *>(is_key ? p.kflat : p.qflat) + row * W;
    const int last = (int)min((long long)p.block, p.n_tokens - ablk * p.block); // real tokens
    const int skip = (int)max(0LL, min((long long)p.block, first - ablk * p.block));
    // 16-bit rows of unit stride, head_dim and strides multiples of 8, a
    // 16-byte aligned base: eight columns per 16-byte load (below).
    if (t.dtype != STEM_F32 && t.s[3] == 1 && D % 8 == 0 && t.s[2] % 8 == 0 &&
        t.s[1] % 8 == 0 && t.s[0] % 8 == 0 && t.ptr % 16 == 0) {
        phase_sums_x8<BATCH, STORE4>(t, kt_off(t, b, h, ablk * p.block - first, 0), S, D, last,
                                     skip, is_key, out);
        return;
    }
    // Pairs need an even head_dim; one 4-byte load per pair needs 16-bit
    // elements of unit stride, even row/head/batch strides and an aligned base.
    const bool pairs = D % 2 == 0;
    const bool vec = pairs && t.dtype != STEM_F32 && t.s[3] == 1 && t.s[2] % 2 == 0 &&
                     t.s[1] % 2 == 0 && t.s[0] % 2 == 0 && t.ptr % 4 == 0;
    const int per = pairs ? 2 : 1, units = W / per;
    const long long step = (long long)S * t.s[2];
    for (int u = threadIdx.x; u < units; u += blockDim.x) {
        const int w = u * per, seg = w / D, e = w - seg * D;
        const int ph = is_key ? S - 1 - seg : seg;
        const int r0 = skip > ph ? ph + (skip - ph + S - 1) / S * S : ph;
        double a0 = 0.0, a1 = 0.0;
        if (r0 < last) {
            long long off = kt_off(t, b, h, ablk * p.block + r0 - first, e);
            const int cnt = (last - r0 + S - 1) / S;
            if (pairs) {
#pragma unroll 8
                for (int a = 0; a < cnt; a++, off += step) {
                    const float2 x = kt_load2(t, off, vec);
                    a0 += x.x, a1 += x.y;
                }
            } else {
#pragma unroll 8
                for (int a = 0; a < cnt; a++, off += step)
                    a0 += kt_load(t, off);
            }
        }
        out[w] = (float)a0;
        if (pairs)
            out[w + 1] = (float)a1;
    }
}

extern "C" __global__ void __launch_bounds__(256) stem_k_phase_sums(stem_kscore p, int is_key)
{
    phase_sums_row<0, false>(p, blockIdx.x, is_key);
}

// gmax[kv][gi] = max over the S tokens of stride group gi of ||V[t]||_2 (0 past N).
// One warp per group; f32 sums of squares. 16-bit rows of unit stride (head_dim
// a power of two in 8..256, strides multiples of 8, 16-byte aligned base): L =
// head_dim / 8 lanes per token, one 16-byte load each, 32 / L tokens at a time;
// otherwise lanes over the columns, token by token.
__device__ __forceinline__ bool vmax_x8(const stem_kscore &p)
{
    const stem_ktensor &v = p.v;
    const int D = p.head_dim, L = D / 8;
    return v.dtype != STEM_F32 && v.s[3] == 1 && D % 8 == 0 && L <= 32 && (L & (L - 1)) == 0 &&
           v.s[2] % 8 == 0 && v.s[1] % 8 == 0 && v.s[0] % 8 == 0 && v.ptr % 16 == 0;
}

// The maximum of group `it` (= kv * n*G + gi), computed by one whole warp
// (every lane gets it); x8 = vmax_x8(p). PB > 0: the loads of PB passes are
// issued together, then the passes run in the same order as with PB = 0.
template <int PB>
__device__ __forceinline__ float group_vmax_warp(const stem_kscore &p, long long it, bool x8)
{
    const long long ng = (long long)p.n_blocks * p.group;
    const int lane = threadIdx.x & 31, D = p.head_dim;
    const stem_ktensor &v = p.v;
    const int L = D / 8;
    const long long kv = it / ng, gi = it % ng, b = kv / p.hkv, kh = kv % p.hkv;
    const long long tok0 = gi * p.stride;
    const int len = (int)min((long long)p.stride, p.n_tokens - tok0);
    const long long base = kt_off(v, b, kh, tok0, 0);
    float mx = 0.0f;
    if (x8) {
        const uint4 *src = reinterpret_cast<const uint4 *>(v.ptr);
        const int tp = 32 / L, sub = lane / L, e = (lane % L) * 8;
        constexpr int NB = PB > 0 ? PB : 1;
        for (int ph1 = 0; ph1 < len; ph1 += tp * NB) {
            uint4 qb[NB];
            if constexpr (PB > 0) {
#pragma unroll
                for (int j = 0; j < NB; j++)
                    if (ph1 + j * tp + sub < len)
                        qb[j] = src[(base + (ph1 + j * tp + sub) * v.s[2] + e) >> 3];
            }
#pragma unroll
            for (int j = 0; j < NB; j++) {
                const int ph0 = ph1 + j * tp;
                if (ph0 >= len) // warp-uniform: the passes of PB = 0
                    break;
                // every lane runs every pass
                const int ph = ph0 + sub;
                float ss = 0.0f;
                if (ph < len) {
                    uint4 q;
                    if constexpr (PB > 0)
                        q = qb[j];
                    else
                        q = src[(base + ph * v.s[2] + e) >> 3];
                    const unsigned w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        float2 f;
                        if (v.dtype == STEM_F16)
                            f = __half22float2(*reinterpret_cast<const __half2 *>(&w[i]));
                        else
                            f = make_float2(__uint_as_float(w[i] << 16),
                                            __uint_as_float(w[i] & 0xffff0000u));
                        ss = fmaf(f.x, f.x, ss);
                        ss = fmaf(f.y, f.y, ss);
                    }
                }
                for (int m = L / 2; m > 0; m >>= 1)
                    ss += __shfl_xor_sync(0xffffffffu, ss, m);
                if (ph < len)
                    mx = fmaxf(mx, sqrtf(ss));
            }
        }
        for (int m = L; m < 32; m <<= 1)
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, m));
    } else {
        for (int ph = 0; ph < len; ph++) {
            float ss = 0.0f;
            for (int e = lane; e < D; e += 32) {
                const float x = kt_load(v, base + ph * v.s[2] + e * v.s[3]);
                ss = fmaf(x, x, ss);
            }
            mx = fmaxf(mx, sqrtf(warp_sum(ss)));
        }
    }
    return mx;
}

extern "C" __global__ void stem_k_group_vmax(stem_kscore p)
{
    const long long ng = (long long)p.n_blocks * p.group;
    const long long total = (long long)p.batch * p.hkv * ng;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    double *gmax = reinterpret_cast<double *>(p.gmax);
    const bool x8 = vmax_x8(p);
    for (long long it = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); it < total;
         it += warps) {
        const float mx = group_vmax_warp<0>(p, it, x8);
        if ((threadIdx.x & 31) == 0)
            gmax[it] = mx;
    }
}

// vb[kv][J] from the group maxima: STEM z-scores (mean / sd over the groups of
// real tokens), ReLU, beta, mean over the block's groups; STEM_PAPER the
// block's log max. One block of 256 threads per KV head; fixed-order sums.
// CG: the maxima are read through L2 (ld.cg; the fused kernel's last value
// CTA of a head reads maxima that other CTAs of the launch wrote).
template <bool CG> __device__ __forceinline__ double ld_gmax(const double *x)
{
    return CG ? __ldcg(x) : *x;
}

template <bool CG>
__device__ __forceinline__ void value_bonus_head(const stem_kscore &p, long long kv, double *red)
{
    const long long n = p.n_blocks, G = p.group, ng = n * G;
    const double *gmax = reinterpret_cast<const double *>(p.gmax) + kv * ng;
    float *vb = reinterpret_cast<float *>(p.vb) + kv * n;
    const double beta = p.beta;
    if (p.selector == 1) { // STEM_PAPER
        for (long long J = threadIdx.x; J < n; J += blockDim.x) {
            double mx = 0.0;
            for (int a = 0; a < G; a++)
                mx = fmax(mx, ld_gmax<CG>(gmax + J * G + a));
            const double lv = log(mx + 1e-6);
            vb[J] = (float)(beta * (lv > 0.0 ? lv : 0.0));
        }
        return;
    }
    const long long gv = p.n_tokens / p.stride;
    double s = 0.0;
    for (long long gi = threadIdx.x; gi < gv; gi += blockDim.x)
        s += log(ld_gmax<CG>(gmax + gi) + 1e-6);
    const double mean = gv > 0 ? block_sum(s, red) / (double)gv : 0.0;
    s = 0.0;
    for (long long gi = threadIdx.x; gi < gv; gi += blockDim.x) {
        const double dv = log(ld_gmax<CG>(gmax + gi) + 1e-6) - mean;
        s += dv * dv;
    }
    const double ss = block_sum(s, red);
    double sd = gv > 1 ? sqrt(ss / (double)(gv - 1)) : 0.0, mu = mean;
    const long long b = kv / p.hkv, kh = kv % p.hkv;
    if (p.has_vin) { // PROVIDED statistics
        mu = *kt_f32(p.vin, kt_off(p.vin, b, kh, 0, 0));
        sd = *kt_f32(p.vin, kt_off(p.vin, b, kh, 0, 1));
    }
    if (p.has_vout && threadIdx.x == 0) {
        *kt_f32(p.vout, kt_off(p.vout, b, kh, 0, 0)) = (float)mu;
        *kt_f32(p.vout, kt_off(p.vout, b, kh, 0, 1)) = (float)sd;
    }
    for (long long J = threadIdx.x; J < n; J += blockDim.x) {
        double acc = 0.0;
        if (gv > 0 || p.has_vin)
            for (int a = 0; a < G; a++) {
                const double z = (log(ld_gmax<CG>(gmax + J * G + a) + 1e-6) - mu) / (sd + 1e-6);
                acc += beta * (z > 0.0 ? z : 0.0);
            }
        vb[J] = (float)(acc / (double)G);
    }
}

extern "C" __global__ void stem_k_value_bonus(stem_kscore p)
{
    __shared__ double red[32];
    value_bonus_head<false>(p, blockIdx.x, red);
}

// The scoring prologue in one launch (STEM_CUDA_SCORE_FUSE, the default;
// 256 threads): grid.x = [B*Hkv*n value CTAs when with_bonus] [B*Hq*n_rows
// query rows] [B*Hkv*n key rows]. Value CTA (kv, J) computes the G group
// maxima of key block J, one warp per group as in stem_k_group_vmax; the last
// of a head's n value CTAs to finish (a counter per head in p.vcount, zero
// between launches: that last CTA resets it) then computes the head's value
// bonus as stem_k_value_bonus. The value CTAs come first so that the bonus
// overlaps the phase sums. Every number comes from the same device code as
// in the separate kernels, in the same order: the results are bitwise the same.
template <int BATCH> __device__ __forceinline__ void score_prep(const stem_kscore &p)
{
    pdl_launch_dependents(); // the score GEMM may queue behind this grid
    const long long n = p.n_blocks, G = p.group;
    const long long vctas = p.with_bonus ? (long long)p.batch * p.hkv * n : 0;
    const long long cta = blockIdx.x;
    if (cta >= vctas) {
        phase_sums_row<BATCH, true>(p, cta - vctas, -1);
        return;
    }
    __shared__ double red[32];
    __shared__ int last;
    const long long kv = cta / n, J = cta % n;
    const bool x8 = vmax_x8(p);
    double *gmax = reinterpret_cast<double *>(p.gmax);
    for (long long a = threadIdx.x >> 5; a < G; a += blockDim.x >> 5) { // warp-uniform
        const long long it = (kv * n + J) * G + a;
        const float mx = group_vmax_warp<4>(p, it, x8);
        if ((threadIdx.x & 31) == 0) {
            gmax[it] = mx;
            __threadfence(); // this maximum is visible before the counter moves
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned *cnt = reinterpret_cast<unsigned *>(p.vcount) + kv;
        const int is_last = atomicAdd(cnt, 1u) == (unsigned)(n - 1);
        if (is_last) {
            __threadfence(); // the other CTAs' maxima are read after their counts
            *cnt = 0u;       // all n CTAs of the head have counted: ready for the next launch
        }
        last = is_last;
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    value_bonus_head<true>(p, kv, red);
}

// BATCH 4 (the default) and 8 (STEM_CUDA_SCORE_FUSE=8): rows of phase sums
// whose loads a thread issues together.
extern "C" __global__ void __launch_bounds__(256) stem_k_score_prep(stem_kscore p)
{
    score_prep<4>(p);
}
extern "C" __global__ void __launch_bounds__(256) stem_k_score_prep8(stem_kscore p)
{
    score_prep<8>(p);
}

// scores[I][J] = coef * dot(Qflat[I], Kflat[J]) + vb[J] for J <= I, -inf above.
// FP32 on CUDA cores (the conformance tolerance is f32-level, and phase sums
// of 16-bit inputs are not 16-bit numbers): 64x64 tiles, 256 threads, 4x4
// outputs each; tiles above the diagonal only write -inf.
#define SG_T 64
#define SG_K 16
extern "C" __global__ void __launch_bounds__(256) stem_k_score_gemm(stem_kscore p)
{
    pdl_wait();
    __shared__ float As[SG_K][SG_T + 4], Bs[SG_K][SG_T + 4];
    // Rows r < n_rows are the absolute blocks row0 + r; n key blocks.
    const int n = p.n_blocks, g = p.hq / p.hkv, nr = p.n_rows, row0 = p.row0;
    const long long W = (long long)p.stride * p.head_dim;
    const int J0 = blockIdx.x * SG_T, I0 = blockIdx.y * SG_T;
    const long long bh = blockIdx.z, b = bh / p.hq, h = bh % p.hq, kv = b * p.hkv + h / g;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const stem_ktensor &st = p.scores;
    if (J0 > row0 + I0 + SG_T - 1) {
        for (int e = threadIdx.x; e < SG_T * SG_T; e += blockDim.x) {
            const int r = I0 + e / SG_T, J = J0 + e % SG_T;
            if (r < nr && J < n)
                *kt_f32(st, kt_off(st, b, h, r, J)) = -INFINITY;
        }
        return;
    }
    const float *qf = reinterpret_cast<const float *>(p.qflat) + (bh * nr) * W;
    const float *kf = reinterpret_cast<const float *>(p.kflat) + (kv * n) * W;
    float acc[4][4] = {};
    for (long long k0 = 0; k0 < W; k0 += SG_K) {
        for (int e = threadIdx.x; e < SG_T * SG_K; e += blockDim.x) {
            const int r = e / SG_K, kk = e % SG_K;
            const bool kin = k0 + kk < W;
            As[kk][r] = (I0 + r < nr && kin) ? qf[(long long)(I0 + r) * W + k0 + kk] : 0.0f;
            Bs[kk][r] = (J0 + r < n && kin) ? kf[(long long)(J0 + r) * W + k0 + kk] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SG_K; kk++) {
            float a[4], bb[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                a[i] = As[kk][ty + 16 * i];
                bb[i] = Bs[kk][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] = fmaf(a[i], bb[j], acc[i][j]);
        }
        __syncthreads();
    }
    const float *vb = reinterpret_cast<const float *>(p.vb) + kv * n;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            const int r = I0 + ty + 16 * i, J = J0 + tx + 16 * j;
            if (r >= nr || J >= n)
                continue;
            *kt_f32(st, kt_off(st, b, h, r, J)) =
                J > row0 + r ? -INFINITY : p.coef * acc[i][j] + vb[J];
        }
}

// The same on tensor cores (the default for 16-bit inputs) to f32 level
// (phase sums of 16-bit inputs are not 16-bit numbers): each f32 operand is
// split into a TF32 high part and a TF32 remainder as it is staged in shared
// memory (once per element and CTA, not per warp fragment), and the product
// is hi*hi + hi*lo + lo*hi (mma.sync m16n8k8, f32 accumulate; the dropped
// lo*lo term is below f32 rounding). 4 warps, 32-wide K chunks through
// shared memory; tiles above the diagonal only write -inf.
//
// One summation order for every launch shape: K is cut into 256-column
// segments, each summed from zero, and the segment sums are added in
// order. A whole-K CTA does that itself; with nsplit > 1 each CTA sums one
// segment into `partial` and stem_k_score_reduce adds them, so the scores
// are bitwise the same whatever the tile size or split (a chunked call and
// a one-shot call pick different shapes).
#define TC_K 32
#define TC_LD (TC_K + 4) // padded rows: fragment reads are conflict-free
#define TC_SEG 256

__device__ __forceinline__ void mma_tf32(float c[4], const unsigned a[4], const unsigned b[2])
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// x = hi + lo (+ below f32 rounding of the product): hi and lo TF32 values.
__device__ __forceinline__ void split_tf32(float4 x, float *hi, float *lo)
{
    const float v[4] = {x.x, x.y, x.z, x.w};
    float h[4], l[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const unsigned u = to_tf32(v[i]);
        h[i] = __uint_as_float(u);
        l[i] = __uint_as_float(to_tf32(v[i] - h[i]));
    }
    *reinterpret_cast<float4 *>(hi) = make_float4(h[0], h[1], h[2], h[3]);
    *reinterpret_cast<float4 *>(lo) = make_float4(l[0], l[1], l[2], l[3]);
}

// TT x TT output tiles (64, or 32 where 64 leaves the SMs idle), 4 warps of
// TT/2 x TT/2: MT m16 and NT n8 fragments each. grid.z = B*Hq*nsplit.
template <int TT> __device__ __forceinline__ void score_gemm_tc(const stem_kscore &p)
{
    pdl_wait();
    pdl_launch_dependents(); // the segment sums or the selection
    constexpr int MT = TT / 32, NT = TT / 16;
    __shared__ __align__(16) float Ah[TT][TC_LD], Al[TT][TC_LD], Bh[TT][TC_LD], Bl[TT][TC_LD];
    // Rows I < nr are the absolute blocks row0 + I; n key blocks.
    const int n = p.n_blocks, g = p.hq / p.hkv, nr = p.n_rows, row0 = p.row0;
    const int W = p.stride * p.head_dim; // a multiple of 8
    const int J0 = blockIdx.x * TT, I0 = blockIdx.y * TT;
    const int nsplit = p.nsplit, split = (int)(blockIdx.z % nsplit);
    const long long bh = blockIdx.z / nsplit, b = bh / p.hq, h = bh % p.hq, kv = b * p.hkv + h / g;
    const stem_ktensor &st = p.scores;
    if (J0 > row0 + I0 + TT - 1) {
        if (nsplit > 1) // the reduction writes every score
            return;
        for (int e = threadIdx.x; e < TT * TT; e += blockDim.x) {
            const int I = I0 + e / TT, J = J0 + e % TT;
            if (I < nr && J < n)
                *kt_f32(st, kt_off(st, b, h, I, J)) = -INFINITY;
        }
        return;
    }
    const float *qf = reinterpret_cast<const float *>(p.qflat) + (bh * nr) * (long long)W;
    const float *kf = reinterpret_cast<const float *>(p.kflat) + (kv * n) * (long long)W;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = (warp >> 1) * (TT / 2), wn = (warp & 1) * (TT / 2); // this warp's sub-tile
    const int gr = lane >> 2, tc = lane & 3;
    const int nseg = (W + TC_SEG - 1) / TC_SEG;
    const int s0 = nsplit > 1 ? split : 0, s1 = nsplit > 1 ? split + 1 : nseg;
    float tot[MT][NT][4] = {};
    for (int sg = s0; sg < s1; sg++) {
        float acc[MT][NT][4] = {};
        const int kend = min(W, (sg + 1) * TC_SEG);
        for (int k0 = sg * TC_SEG; k0 < kend; k0 += TC_K) {
            for (int e = threadIdx.x; e < TT * TC_K / 4; e += blockDim.x) {
                const int r = e / (TC_K / 4), c = (e % (TC_K / 4)) * 4;
                const bool kin = k0 + c < kend; // W and c are multiples of 4
                float4 a = make_float4(0.f, 0.f, 0.f, 0.f), bv = a;
                if (kin && I0 + r < nr)
                    a = *reinterpret_cast<const float4 *>(qf + (long long)(I0 + r) * W + k0 + c);
                if (kin && J0 + r < n)
                    bv = *reinterpret_cast<const float4 *>(kf + (long long)(J0 + r) * W + k0 + c);
                split_tf32(a, &Ah[r][c], &Al[r][c]);
                split_tf32(bv, &Bh[r][c], &Bl[r][c]);
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < TC_K; kk += 8) {
                unsigned ah[MT][4], al[MT][4], bh2[NT][2], bl[NT][2];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const int r = wm + mt * 16 + gr;
                    const int rr[4] = {r, r + 8, r, r + 8}, cc[4] = {0, 0, 4, 4};
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        ah[mt][i] = __float_as_uint(Ah[rr[i]][kk + tc + cc[i]]);
                        al[mt][i] = __float_as_uint(Al[rr[i]][kk + tc + cc[i]]);
                    }
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const int c = wn + nt * 8 + gr;
#pragma unroll
                    for (int i = 0; i < 2; i++) {
                        bh2[nt][i] = __float_as_uint(Bh[c][kk + tc + 4 * i]);
                        bl[nt][i] = __float_as_uint(Bl[c][kk + tc + 4 * i]);
                    }
                }
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        mma_tf32(acc[mt][nt], al[mt], bh2[nt]);
                        mma_tf32(acc[mt][nt], ah[mt], bl[nt]);
                        mma_tf32(acc[mt][nt], ah[mt], bh2[nt]);
                    }
            }
            __syncthreads();
        }
        if (nsplit > 1) {
            float *part = reinterpret_cast<float *>(p.partial) +
                          ((long long)split * gridDim.z / nsplit + bh) * nr * (long long)n;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int I = I0 + wm + mt * 16 + gr + (e >> 1) * 8;
                        const int J = J0 + wn + nt * 8 + tc * 2 + (e & 1);
                        if (I < nr && J < n && J <= row0 + I)
                            part[(long long)I * n + J] = acc[mt][nt][e];
                    }
            return;
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    tot[mt][nt][e] += acc[mt][nt][e];
    }
    const float *vb = reinterpret_cast<const float *>(p.vb) + kv * n;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int I = I0 + wm + mt * 16 + gr + (e >> 1) * 8;
                const int J = J0 + wn + nt * 8 + tc * 2 + (e & 1);
                if (I < nr && J < n)
                    *kt_f32(st, kt_off(st, b, h, I, J)) =
                        J > row0 + I ? -INFINITY : __fmaf_rn(p.coef, tot[mt][nt][e], vb[J]);
            }
}

extern "C" __global__ void __launch_bounds__(128) stem_k_score_gemm_tc(stem_kscore p)
{
    score_gemm_tc<64>(p);
}
extern "C" __global__ void __launch_bounds__(128) stem_k_score_gemm_tc32(stem_kscore p)
{
    score_gemm_tc<32>(p);
}

// scores[I][J] of a split GEMM: the segment sums added in segment order from
// zero (the whole-K kernel's order), then coef * sum + vb[J]; -inf above the
// diagonal. One CTA per score row (grid.x = B*Hq*n_rows), threads over J.
extern "C" __global__ void __launch_bounds__(256) stem_k_score_reduce(stem_kscore p)
{
    pdl_wait();
    pdl_launch_dependents(); // the selection
    const int n = p.n_blocks, nr = p.n_rows, g = p.hq / p.hkv;
    const long long rowi = blockIdx.x, I = rowi % nr, bh = rowi / nr;
    const long long b = bh / p.hq, h = bh % p.hq, kv = b * p.hkv + h / g;
    const long long plane = (long long)p.batch * p.hq * nr * (long long)n;
    const float *part = reinterpret_cast<const float *>(p.partial) + rowi * n;
    const float *vb = reinterpret_cast<const float *>(p.vb) + kv * n;
    const stem_ktensor &st = p.scores;
    for (int J = threadIdx.x; J < n; J += blockDim.x) {
        float out = -INFINITY;
        if (J <= p.row0 + I) {
            float sum = 0.0f;
            for (int sg = 0; sg < p.nsplit; sg++)
                sum += part[sg * plane + J];
            out = __fmaf_rn(p.coef, sum, vb[J]);
        }
        *kt_f32(st, kt_off(st, b, h, I, J)) = out;
    }
}

// A[m][c] * coef: strided antidiagonal dot of query row m and key column c.
__device__ float xattn_logit(const stem_kscore &p, long long b, long long h, long long kh,
                             long long m, long long c)
{
    float s = 0.0f;
    for (int t = 0; t < p.stride; t++) {
        const long long tq = m * p.stride + p.stride - 1 - t, tk = c * p.stride + t;
        if (tq >= p.n_tokens || tk >= p.n_tokens)
            continue;
        const long long oq = kt_off(p.q, b, h, tq, 0), ok = kt_off(p.k, b, kh, tk, 0);
        for (int e = 0; e < p.head_dim; e++)
            s = fmaf(kt_load(p.q, oq + e * p.q.s[3]), kt_load(p.k, ok + e * p.k.s[3]), s);
    }
    return s * p.coef;
}

// XAttention: block (bh, I) accumulates, for each real strided row m of
// block I, the block sums of softmax_{c <= m}; mass[] and part[] live in
// dynamic shared memory (n doubles + n floats).
extern "C" __global__ void __launch_bounds__(256) stem_k_xattn_scores(stem_kscore p)
{
    extern __shared__ double xs_mass[];
    __shared__ double red[32];
    __shared__ float redf[32];
    const int n = p.n_blocks, G = p.group, g = p.hq / p.hkv;
    float *part = reinterpret_cast<float *>(xs_mass + n);
    const long long I = blockIdx.x, bh = blockIdx.y, b = bh / p.hq, h = bh % p.hq, kh = h / g;
    for (int J = threadIdx.x; J < n; J += blockDim.x)
        xs_mass[J] = 0.0;
    for (int a = 0; a < G; a++) {
        const long long m = I * G + a;
        if (m * p.stride >= p.n_tokens)
            break;
        float mx = -INFINITY;
        for (long long c = threadIdx.x; c <= m; c += blockDim.x)
            mx = fmaxf(mx, xattn_logit(p, b, h, kh, m, c));
        mx = block_max(mx, redf);
        double tot = 0.0;
        for (long long J = threadIdx.x; J <= I; J += blockDim.x) {
            float s = 0.0f;
            for (long long c = J * G; c < J * G + G && c <= m; c++)
                s += exp2f(xattn_logit(p, b, h, kh, m, c) - mx);
            part[J] = s;
            tot += s;
        }
        tot = block_sum(tot, red);
        if (tot > 0.0)
            for (long long J = threadIdx.x; J <= I; J += blockDim.x)
                xs_mass[J] += part[J] / tot;
        __syncthreads();
    }
    const stem_ktensor &st = p.scores;
    for (long long J = threadIdx.x; J < n; J += blockDim.x)
        *kt_f32(st, kt_off(st, b, h, I, J)) = J <= I ? (float)xs_mass[J] : 0.0f;
}
