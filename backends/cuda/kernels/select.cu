// Per-row block selection on the GPU (docs/semantics.md section 5). One
// block of 256 threads per row. Top-k is a radix select over a total order
// (value descending, then lower block index), so the kept set is the same
// as the CPU backend's, ties included.
#include "common.cuh"

#define SEL_THREADS 256

// Order-preserving map of a finite float to an unsigned key (-0 as +0).
__device__ __forceinline__ unsigned order_key(float v)
{
    if (v == 0.0f)
        v = 0.0f;
    const unsigned u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// One radix pass: hist[digit at `shift`] counts the finite candidates J <= I
// (this thread's J = first, first + step, ..) whose higher digits equal prefix.
__device__ __forceinline__ void count_digits(const stem_ktensor &st, long long srow, long long I,
                                             int first, int step, unsigned mask, unsigned prefix,
                                             int shift, unsigned *hist)
{
    for (long long J = first; J <= I; J += step) {
        const float v = *kt_f32(st, srow + J * st.s[3]);
        if (!isfinite(v))
            continue;
        const unsigned key = order_key(v);
        if ((key & mask) == prefix)
            atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
}

// Exclusive prefix sum of x over the block (in thread order); *total gets the sum.
__device__ int block_scan(int x, int *total, int *warp_tot)
{
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int incl = x;
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o)
            incl += y;
    }
    __syncthreads();
    if (lane == 31)
        warp_tot[w] = incl;
    __syncthreads();
    int before = 0, all = 0;
    for (int i = 0; i < nw; i++) {
        before += i < w ? warp_tot[i] : 0;
        all += warp_tot[i];
    }
    *total = all;
    return before + incl - x;
}

extern "C" __global__ void __launch_bounds__(SEL_THREADS) stem_k_select(stem_kselect p)
{
    pdl_wait();
    __shared__ unsigned hist[256];
    __shared__ int warp_tot[SEL_THREADS / 32];
    __shared__ double red[SEL_THREADS / 32];
    __shared__ unsigned s_digit, s_remaining;
    const int n = p.n_blocks;
    // Block row r of the call is the absolute query block I = row0 + r.
    const long long r = blockIdx.x, I = p.row0 + r, bh = blockIdx.y, b = bh / p.hq, h = bh % p.hq;
    const stem_ktensor &st = p.scores;
    const long long srow = kt_off(st, b, h, r, 0);
    const int budget = reinterpret_cast<const int *>(p.budget)[I];
    const int all_rows = p.mode == 1 || (p.mode == 0 && I + 1 <= budget);
    const int diag_only = p.mode == 3;

    // What decides membership (besides forced blocks):
    //  top-k:  key > thr, or key == thr and among the first `take_eq` such J
    //  XAttention: F + mass of better candidates < T (mode 2, blocks 0 and I
    //  forced); mode 3 (official rule from key block 0): only I forced, the
    //  first candidate kept, the mass of the one just before J left out,
    //  block 0 kept anyway
    unsigned thr = 0, take_eq = 0;
    int take_all_finite = 0;
    double F = 0.0, T = 0.0;
    if (!all_rows && p.mode == 0) {
        int m = 0;
        for (long long J = threadIdx.x; J <= I; J += blockDim.x)
            m += isfinite(*kt_f32(st, srow + J * st.s[3])) ? 1 : 0;
        int mt;
        block_scan(m, &mt, warp_tot);
        const int kk = budget < mt ? budget : mt;
        take_all_finite = kk >= mt;
        if (!take_all_finite) {
            unsigned prefix = 0, mask = 0, remaining = (unsigned)kk;
            for (int shift = 24; shift >= 0; shift -= 8) {
                hist[threadIdx.x] = 0; // SEL_THREADS == 256 bins
                __syncthreads();
                count_digits(st, srow, I, threadIdx.x, blockDim.x, mask, prefix, shift, hist);
                __syncthreads();
                if (threadIdx.x == 0) {
                    unsigned cum = 0;
                    for (int d = 255; d >= 0; d--) {
                        if (cum + hist[d] >= remaining) {
                            s_digit = (unsigned)d;
                            s_remaining = remaining - cum;
                            break;
                        }
                        cum += hist[d];
                    }
                }
                __syncthreads();
                prefix |= s_digit << shift;
                mask |= 255u << shift;
                remaining = s_remaining;
                __syncthreads();
            }
            thr = prefix;
            take_eq = remaining;
        }
    } else if (!all_rows) { // XAttention
        double tot = 0.0;
        for (long long J = threadIdx.x; J <= I; J += blockDim.x) {
            const float v = *kt_f32(st, srow + J * st.s[3]);
            tot += isnan(v) ? 0.0 : (double)v;
        }
        tot = block_sum(tot, red);
        T = (double)p.tau * tot;
        const float w0 = *kt_f32(st, srow), wi = *kt_f32(st, srow + I * st.s[3]);
        const double m0 = isnan(w0) ? 0.0 : (double)w0, mi = isnan(wi) ? 0.0 : (double)wi;
        F = diag_only || I == 0 ? mi : m0 + mi;
    }

    // Ascending pass in chunks: decide, then place by a prefix sum.
    const stem_ktensor &it = p.index;
    const long long irow = kt_off(it, b, h, r, 0);
    int placed = 0, eq_seen = 0;
    for (long long base = 0; base <= I; base += blockDim.x) {
        const long long J = base + threadIdx.x;
        int keep = 0, eq = 0;
        float v = 0.0f;
        if (J <= I) {
            v = *kt_f32(st, srow + J * st.s[3]);
            if (all_rows) {
                keep = 1;
            } else if (p.mode == 0) {
                const bool fin = isfinite(v);
                const unsigned key = fin ? order_key(v) : 0u;
                keep = fin && (take_all_finite || key > thr);
                eq = fin && !take_all_finite && key == thr;
                keep |= J < p.sink_blocks || J >= I - p.local_blocks + 1;
            } else {
                if (J == 0 || J == I) {
                    keep = 1;
                } else {
                    const float wj = isnan(v) ? 0.0f : v;
                    double before = 0.0;
                    float lw = 0.0f; // the candidate ranked just before J so far
                    long long lk = -1;
                    for (long long K = diag_only ? 0 : 1; K < I; K++) {
                        float wk = *kt_f32(st, srow + K * st.s[3]);
                        wk = isnan(wk) ? 0.0f : wk;
                        if (wk > wj || (wk == wj && K < J)) {
                            before += wk;
                            if (lk < 0 || wk < lw || (wk == lw && K > lk)) {
                                lw = wk;
                                lk = K;
                            }
                        }
                    }
                    if (!diag_only)
                        keep = F + before < T;
                    else
                        keep = lk < 0 ? 0.0 < T : F + (before - (double)lw) < T;
                }
            }
        }
        int eq_total;
        const int eq_rank = eq_seen + block_scan(eq, &eq_total, warp_tot);
        eq_seen += eq_total;
        if (eq && (unsigned)eq_rank < take_eq)
            keep = 1;
        int kept_total;
        const int pos = placed + block_scan(keep, &kept_total, warp_tot);
        if (keep)
            *kt_i32(it, irow + pos * it.s[3]) = (int)J;
        placed += kept_total;
    }
    for (long long j = placed + threadIdx.x; j < n; j += blockDim.x)
        *kt_i32(it, irow + j * it.s[3]) = -1;
    if (threadIdx.x == 0)
        *kt_i32(p.count, kt_off(p.count, b, h, r, 0)) = placed;
}

// Top-k and every-causal-block rows (modes 0 and 1) with one warp per row,
// SEL_THREADS / 32 rows per CTA: the same radix select as above (same keys,
// threshold and tie rule, so the same kept set), but a row of at most a few
// hundred candidates no longer waits on 256-thread barriers, and the digit
// search is a warp scan instead of one thread walking 256 bins.
extern "C" __global__ void __launch_bounds__(SEL_THREADS) stem_k_select_warp(stem_kselect p)
{
    pdl_wait();
    __shared__ unsigned hist_all[SEL_THREADS / 32][256];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const long long r = (long long)blockIdx.x * (SEL_THREADS / 32) + w;
    if (r >= p.n_rows) // no CTA-wide barriers below: whole warps may leave
        return;
    unsigned *hist = hist_all[w];
    const int n = p.n_blocks;
    const long long I = p.row0 + r, bh = blockIdx.y, b = bh / p.hq, h = bh % p.hq;
    const stem_ktensor &st = p.scores;
    const long long srow = kt_off(st, b, h, r, 0);
    const int budget = reinterpret_cast<const int *>(p.budget)[I];
    const int all_rows = p.mode == 1 || I + 1 <= budget;
    unsigned thr = 0, take_eq = 0;
    int take_all_finite = 1;
    if (!all_rows) {
        int m = 0;
        for (long long J = lane; J <= I; J += 32)
            m += isfinite(*kt_f32(st, srow + J * st.s[3])) ? 1 : 0;
        m = warp_sum(m);
        const int kk = budget < m ? budget : m;
        take_all_finite = kk >= m;
        if (!take_all_finite) {
            unsigned prefix = 0, mask = 0, remaining = (unsigned)kk;
            for (int shift = 24; shift >= 0; shift -= 8) {
                for (int d = lane; d < 256; d += 32)
                    hist[d] = 0;
                __syncwarp();
                count_digits(st, srow, I, lane, 32, mask, prefix, shift, hist);
                __syncwarp();
                // Lane l owns digits 255 - 8l .. 248 - 8l (descending); the
                // chosen digit is the first, in descending order, at which the
                // running count reaches `remaining` (as the CTA kernel's walk).
                unsigned c[8], s = 0;
#pragma unroll
                for (int j = 0; j < 8; j++)
                    s += c[j] = hist[255 - 8 * lane - j];
                unsigned incl = s;
                for (int o = 1; o < 32; o <<= 1) {
                    const unsigned y = __shfl_up_sync(0xffffffffu, incl, o);
                    if (lane >= o)
                        incl += y;
                }
                unsigned cum = incl - s, digit = 0, rem = 0;
                int found = 0;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (!found && cum + c[j] >= remaining) {
                        found = 1;
                        digit = 255u - 8u * lane - j;
                        rem = remaining - cum;
                    }
                    cum += c[j];
                }
                const unsigned hit = __ballot_sync(0xffffffffu, found);
                const int src = __ffs(hit) - 1; // remaining <= count of candidates: some lane hits
                digit = __shfl_sync(0xffffffffu, digit, src);
                rem = __shfl_sync(0xffffffffu, rem, src);
                prefix |= digit << shift;
                mask |= 255u << shift;
                remaining = rem;
                __syncwarp(); // the next pass clears hist
            }
            thr = prefix;
            take_eq = remaining;
        }
    }
    // Ascending pass, 32 candidates at a time: decide, then place by ballots.
    const stem_ktensor &it = p.index;
    const long long irow = kt_off(it, b, h, r, 0);
    const unsigned below = (1u << lane) - 1u;
    int placed = 0;
    unsigned eq_seen = 0;
    for (long long base = 0; base <= I; base += 32) {
        const long long J = base + lane;
        int keep = 0, eq = 0;
        if (J <= I) {
            if (all_rows) {
                keep = 1;
            } else {
                const float v = *kt_f32(st, srow + J * st.s[3]);
                const bool fin = isfinite(v);
                const unsigned key = fin ? order_key(v) : 0u;
                keep = fin && (take_all_finite || key > thr);
                eq = fin && !take_all_finite && key == thr;
                keep |= J < p.sink_blocks || J >= I - p.local_blocks + 1;
            }
        }
        const unsigned eqm = __ballot_sync(0xffffffffu, eq);
        if (eq && eq_seen + __popc(eqm & below) < take_eq)
            keep = 1;
        eq_seen += __popc(eqm);
        const unsigned km = __ballot_sync(0xffffffffu, keep);
        if (keep)
            *kt_i32(it, irow + (placed + __popc(km & below)) * it.s[3]) = (int)J;
        placed += __popc(km);
    }
    for (long long j = placed + lane; j < n; j += 32)
        *kt_i32(it, irow + j * it.s[3]) = -1;
    if (lane == 0)
        *kt_i32(p.count, kt_off(p.count, b, h, r, 0)) = placed;
}
