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

extern "C" __global__ void __launch_bounds__(256) stem_k_phase_sums(stem_kscore p, int is_key)
{
    const stem_ktensor &t = is_key ? p.k : p.q;
    const int H = is_key ? p.hkv : p.hq;
    // Queries: the call's rows (absolute blocks row0 ..) over positions >= q_offset.
    const int S = p.stride, D = p.head_dim, W = S * D, n = is_key ? p.n_blocks : p.n_rows;
    const long long row = blockIdx.x, blk = row % n, bh = row / n, b = bh / H, h = bh % H;
    const long long first = is_key ? 0 : p.q_offset, ablk = is_key ? blk : p.row0 + blk;
    float *out = reinterpret_cast<float *>(is_key ? p.kflat : p.qflat) + row * W;
    const int last = (int)min((long long)p.block, p.n_tokens - ablk * p.block); // real tokens
    const int skip = (int)max(0LL, min((long long)p.block, first - ablk * p.block));
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

// gmax[kv][gi] = max over the S tokens of stride group gi of ||V[t]||_2 (0 past N).
// One warp per group; f32 sums of squares.
extern "C" __global__ void stem_k_group_vmax(stem_kscore p)
{
    const long long ng = (long long)p.n_blocks * p.group;
    const long long total = (long long)p.batch * p.hkv * ng;
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    double *gmax = reinterpret_cast<double *>(p.gmax);
    for (long long it = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); it < total;
         it += warps) {
        const long long kv = it / ng, gi = it % ng, b = kv / p.hkv, kh = kv % p.hkv;
        const long long tok0 = gi * p.stride;
        const int len = (int)min((long long)p.stride, p.n_tokens - tok0);
        const long long base = kt_off(p.v, b, kh, tok0, 0);
        float mx = 0.0f;
        for (int ph = 0; ph < len; ph++) {
            float ss = 0.0f;
            for (int e = lane; e < p.head_dim; e += 32) {
                const float x = kt_load(p.v, base + ph * p.v.s[2] + e * p.v.s[3]);
                ss = fmaf(x, x, ss);
            }
            mx = fmaxf(mx, sqrtf(warp_sum(ss)));
        }
        if (lane == 0)
            gmax[it] = mx;
    }
}

// vb[kv][J] from the group maxima: STEM z-scores (mean / sd over the groups of
// real tokens), ReLU, beta, mean over the block's groups; STEM_PAPER the
// block's log max. One block of 256 threads per KV head; fixed-order sums.
extern "C" __global__ void stem_k_value_bonus(stem_kscore p)
{
    __shared__ double red[32];
    const long long kv = blockIdx.x, n = p.n_blocks, G = p.group, ng = n * G;
    const double *gmax = reinterpret_cast<const double *>(p.gmax) + kv * ng;
    float *vb = reinterpret_cast<float *>(p.vb) + kv * n;
    const double beta = p.beta;
    if (p.selector == 1) { // STEM_PAPER
        for (long long J = threadIdx.x; J < n; J += blockDim.x) {
            double mx = 0.0;
            for (int a = 0; a < G; a++)
                mx = fmax(mx, gmax[J * G + a]);
            const double lv = log(mx + 1e-6);
            vb[J] = (float)(beta * (lv > 0.0 ? lv : 0.0));
        }
        return;
    }
    const long long gv = p.n_tokens / p.stride;
    double s = 0.0;
    for (long long gi = threadIdx.x; gi < gv; gi += blockDim.x)
        s += log(gmax[gi] + 1e-6);
    const double mean = gv > 0 ? block_sum(s, red) / (double)gv : 0.0;
    s = 0.0;
    for (long long gi = threadIdx.x; gi < gv; gi += blockDim.x) {
        const double dv = log(gmax[gi] + 1e-6) - mean;
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
                const double z = (log(gmax[J * G + a] + 1e-6) - mu) / (sd + 1e-6);
                acc += beta * (z > 0.0 ? z : 0.0);
            }
        vb[J] = (float)(acc / (double)G);
    }
}

// scores[I][J] = coef * dot(Qflat[I], Kflat[J]) + vb[J] for J <= I, -inf above.
// FP32 on CUDA cores (the conformance tolerance is f32-level, and phase sums
// of 16-bit inputs are not 16-bit numbers): 64x64 tiles, 256 threads, 4x4
// outputs each; tiles above the diagonal only write -inf.
#define SG_T 64
#define SG_K 16
extern "C" __global__ void __launch_bounds__(256) stem_k_score_gemm(stem_kscore p)
{
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

// The same on tensor cores (STEM_CUDA_SCORE_GEMM=tc until it has passed the
// suite on a GPU) with f32-level accuracy (phase sums of 16-bit inputs are
// not 16-bit numbers, and the scores' tolerance is f32-level): each f32
// operand is split into a TF32 high part and a TF32 remainder, and the
// product is hi*hi + hi*lo + lo*hi (mma.sync m16n8k8, f32 accumulate; the
// dropped lo*lo term is below f32 rounding). 64x64 output tiles, 4 warps of
// 32x32, 32-wide K chunks through shared memory; tiles above the diagonal
// only write -inf.
#define TC_T 64
#define TC_K 32
#define TC_LD (TC_K + 4) // padded rows: fragment reads are conflict-free

__device__ __forceinline__ unsigned to_tf32(float x)
{
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void mma_tf32(float c[4], const unsigned a[4], const unsigned b[2])
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

extern "C" __global__ void __launch_bounds__(128) stem_k_score_gemm_tc(stem_kscore p)
{
    __shared__ __align__(16) float As[TC_T][TC_LD], Bs[TC_T][TC_LD];
    // Rows I < nr are the absolute blocks row0 + I; n key blocks.
    const int n = p.n_blocks, g = p.hq / p.hkv, nr = p.n_rows, row0 = p.row0;
    const int W = p.stride * p.head_dim; // a multiple of 8
    const int J0 = blockIdx.x * TC_T, I0 = blockIdx.y * TC_T;
    const long long bh = blockIdx.z, b = bh / p.hq, h = bh % p.hq, kv = b * p.hkv + h / g;
    const stem_ktensor &st = p.scores;
    if (J0 > row0 + I0 + TC_T - 1) {
        for (int e = threadIdx.x; e < TC_T * TC_T; e += blockDim.x) {
            const int I = I0 + e / TC_T, J = J0 + e % TC_T;
            if (I < nr && J < n)
                *kt_f32(st, kt_off(st, b, h, I, J)) = -INFINITY;
        }
        return;
    }
    const float *qf = reinterpret_cast<const float *>(p.qflat) + (bh * nr) * (long long)W;
    const float *kf = reinterpret_cast<const float *>(p.kflat) + (kv * n) * (long long)W;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32; // this warp's 32x32 sub-tile
    const int gr = lane >> 2, tc = lane & 3;
    float acc[2][4][4] = {};
    for (int k0 = 0; k0 < W; k0 += TC_K) {
        for (int e = threadIdx.x; e < TC_T * TC_K / 4; e += blockDim.x) {
            const int r = e / (TC_K / 4), c = (e % (TC_K / 4)) * 4;
            const bool kin = k0 + c < W; // W and c are multiples of 4
            float4 av = make_float4(0.f, 0.f, 0.f, 0.f), bv = av;
            if (kin && I0 + r < nr)
                av = *reinterpret_cast<const float4 *>(qf + (long long)(I0 + r) * W + k0 + c);
            if (kin && J0 + r < n)
                bv = *reinterpret_cast<const float4 *>(kf + (long long)(J0 + r) * W + k0 + c);
            *reinterpret_cast<float4 *>(&As[r][c]) = av;
            *reinterpret_cast<float4 *>(&Bs[r][c]) = bv;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TC_K; kk += 8) {
            unsigned ah[2][4], al[2][4], bh2[4][2], bl[4][2];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                const int r = wm + mt * 16 + gr;
                const float x[4] = {As[r][kk + tc], As[r + 8][kk + tc], As[r][kk + tc + 4],
                                    As[r + 8][kk + tc + 4]};
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    ah[mt][i] = to_tf32(x[i]);
                    al[mt][i] = to_tf32(x[i] - __uint_as_float(ah[mt][i]));
                }
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                const int c = wn + nt * 8 + gr;
                const float y[2] = {Bs[c][kk + tc], Bs[c][kk + tc + 4]};
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    bh2[nt][i] = to_tf32(y[i]);
                    bl[nt][i] = to_tf32(y[i] - __uint_as_float(bh2[nt][i]));
                }
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
                    mma_tf32(acc[mt][nt], al[mt], bh2[nt]);
                    mma_tf32(acc[mt][nt], ah[mt], bl[nt]);
                    mma_tf32(acc[mt][nt], ah[mt], bh2[nt]);
                }
        }
        __syncthreads();
    }
    const float *vb = reinterpret_cast<const float *>(p.vb) + kv * n;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int I = I0 + wm + mt * 16 + gr + (e >> 1) * 8;
                const int J = J0 + wn + nt * 8 + tc * 2 + (e & 1);
                if (I < nr && J < n)
                    *kt_f32(st, kt_off(st, b, h, I, J)) =
                        J > row0 + I ? -INFINITY : p.coef * acc[mt][nt][e] + vb[J];
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
