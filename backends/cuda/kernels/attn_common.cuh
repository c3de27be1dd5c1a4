// The pieces every tensor-core attention variant shares: the geometry of a
// query tile, the walk over a row's block list, the causal mask of a score
// fragment, the online-softmax update, the P packing and the output store.
//
// Fragment layout (the same for an mma.sync m16n8k16 accumulator and for one
// warp's 16 rows of a wgmma m64nN accumulator): s[j][e] holds row
// rlo = (lane / 4) (e < 2) or rlo + 8 (e >= 2) and column 8 j + 2 (lane % 4)
// + (e & 1) of the warp's 16-row slice.
#pragma once
#include "common.cuh"

// ------------------------------------------------------------- geometry
// Query token i sits at absolute position q_offset + i and sees keys
// j <= q_offset + i, j < kv_len (chunked / prefix-cached prefill: the
// queries are the last q_len = kv_len - q_offset positions). Tiles are
// absolute query blocks, so with an unaligned offset the first tile starts
// before query 0; its rows before it are never stored.
struct attn_geom {
    long long q_len, kv_len, q_offset;
};

__device__ __forceinline__ attn_geom attn_geometry(const stem_kattn &p)
{
    attn_geom g;
    g.kv_len = p.n_tokens;
    g.q_offset = p.q_offset;
    g.q_len = p.n_tokens - p.q_offset;
    return g;
}

// ------------------------------------------------------------ list walk
// The valid entries of row I's list, in order: an entry is skipped when it
// is negative, past the row (J > I) or not above the previous kept entry
// (lists are strictly ascending; GPU backends skip rather than reject).
struct list_row {
    const int *idx;  // first entry
    long long step;  // entry stride (elements)
    int cnt;         // clamped count
};

// I is absolute; the lists hold rows row0 ...
__device__ __forceinline__ list_row list_row_of(const stem_kattn &p, long long b, long long h,
                                                long long I)
{
    list_row r;
    r.idx = kt_i32(p.index, kt_off(p.index, b, h, I - p.row0, 0));
    r.step = p.index.s[3];
    const int cnt = *kt_i32(p.count, kt_off(p.count, b, h, I - p.row0, 0));
    r.cnt = cnt < 0 ? 0 : (cnt > p.n_blocks ? p.n_blocks : cnt);
    return r;
}

// Sub-tiles of `bc` keys of each kept block (mma.sync kernels stream a
// 128-key block as several tiles); every thread computes the same sequence.
struct tile_walk {
    list_row row;
    int jj, sub, nsub, bc;
    long long prev, J;
};

__device__ __forceinline__ void walk_init(tile_walk &w, const list_row &row, int block, int bc)
{
    w.row = row;
    w.jj = 0;
    w.sub = 0;
    w.nsub = block / bc;
    w.bc = bc;
    w.prev = -1;
    w.J = -1;
}

// Next sub-tile's first key; false at the end. Sub-tiles wholly past the
// last key or above the tile's last query (q_last, absolute) are skipped.
__device__ __forceinline__ bool walk_next(tile_walk &w, const attn_geom &g, int block,
                                          long long I, long long q_last, long long *j0)
{
    for (;;) {
        if (w.J >= 0 && ++w.sub < w.nsub) {
            const long long s = w.J * block + (long long)w.sub * w.bc;
            if (s < g.kv_len && s <= q_last) {
                *j0 = s;
                return true;
            }
            continue;
        }
        if (w.jj >= w.row.cnt)
            return false;
        const long long J = w.row.idx[(w.jj++) * w.row.step];
        if (J < 0 || J > I || J <= w.prev)
            continue;
        w.prev = J;
        w.J = J;
        w.sub = -1;
    }
}

// ------------------------------------------------------- register math
// 2^x on the special-function unit (flushes results below 2^-126 to 0,
// which no softmax sum can see).
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
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

// Scales a score fragment into log2 units and masks it: key (absolute)
// = key0 + column; a key is hidden when it lies past the row's query
// position (qlo / qhi, absolute) or past kv_len.
template <int NT, bool MASK>
__device__ __forceinline__ void scale_mask(float (&s)[NT][4], float scale_log2, long long key0,
                                           long long qlo, long long qhi, long long kv_len,
                                           int lane)
{
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float x = s[nt][e] * scale_log2;
            if (MASK) {
                const long long key = key0 + nt * 8 + (lane & 3) * 2 + (e & 1);
                if (key > (e < 2 ? qlo : qhi) || key >= kv_len)
                    x = -INFINITY;
            }
            s[nt][e] = x;
        }
}

// Online-softmax step for the fragment's two rows: new running max m,
// s <- 2^(s - m), running sum l <- l * alpha + rowsum (thread-local part;
// finish_rows adds the quad), alpha returned for rescaling O. A row with
// every key hidden so far keeps m = -inf and uses 0 as its reference.
template <int NT>
__device__ __forceinline__ void softmax_step(float (&s)[NT][4], float m[2], float l[2],
                                             float alpha[2])
{
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        mx[0] = fmaxf(mx[0], fmaxf(s[nt][0], s[nt][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[nt][2], s[nt][3]));
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    }
    float mu[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float mn = fmaxf(m[r], mx[r]);
        mu[r] = mn == -INFINITY ? 0.0f : mn;
        alpha[r] = fast_exp2(m[r] - mu[r]);
        m[r] = mn;
    }
    float sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        s[nt][0] = fast_exp2(s[nt][0] - mu[0]);
        s[nt][1] = fast_exp2(s[nt][1] - mu[0]);
        s[nt][2] = fast_exp2(s[nt][2] - mu[1]);
        s[nt][3] = fast_exp2(s[nt][3] - mu[1]);
        sum[0] += s[nt][0] + s[nt][1];
        sum[1] += s[nt][2] + s[nt][3];
    }
    l[0] = l[0] * alpha[0] + sum[0];
    l[1] = l[1] * alpha[1] + sum[1];
}

template <int ND> __device__ __forceinline__ void rescale_o(float (&o)[ND][4], const float alpha[2])
{
#pragma unroll
    for (int i = 0; i < ND; i++) {
        o[i][0] *= alpha[0];
        o[i][1] *= alpha[0];
        o[i][2] *= alpha[1];
        o[i][3] *= alpha[1];
    }
}

// P (the exponentials, rounded to the input type) as A fragments of the
// PV product: k-step kk takes column groups 2 kk and 2 kk + 1.
template <int NT, bool BF16>
__device__ __forceinline__ void pack_p(const float (&s)[NT][4], unsigned (&pa)[NT / 2][4])
{
#pragma unroll
    for (int kk = 0; kk < NT / 2; kk++) {
        pa[kk][0] = pack2<BF16>(s[2 * kk][0], s[2 * kk][1]);
        pa[kk][1] = pack2<BF16>(s[2 * kk][2], s[2 * kk][3]);
        pa[kk][2] = pack2<BF16>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[kk][3] = pack2<BF16>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

// Sums each row's four partial sums (the lanes of a quad).
__device__ __forceinline__ void finish_rows(float l[2])
{
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
}

// O / l to the output (rows lo, hi are query indices, 0-based in q_len;
// rows outside [0, q_len) are not written). No visible key: 0 (NaN stays NaN).
template <int ND>
__device__ __forceinline__ void store_rows(const stem_kattn &p, const attn_geom &g, long long b,
                                           long long h, long long row_lo, long long row_hi,
                                           const float (&o)[ND][4], const float l[2],
                                           const float m[2], int lane)
{
    // lse (natural log) of each row, from the running max m (log2 units of
    // the scaled scores) and the finished sum l: one lane of the quad.
    if (p.has_lse && (lane & 3) == 0)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const long long row = r ? row_hi : row_lo;
            if (row >= 0 && row < g.q_len)
                *kt_f32(p.lse, kt_off(p.lse, b, h, row, 0)) =
                    l[r] > 0.0f ? (m[r] + log2f(l[r])) * 0.69314718055994531f
                                : (isnan(l[r]) ? l[r] : -INFINITY);
        }
#pragma unroll
    for (int i = 0; i < ND; i++) {
        const int col = i * 8 + (lane & 3) * 2;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const long long row = e < 2 ? row_lo : row_hi;
            const float ll = e < 2 ? l[0] : l[1];
            if (row >= 0 && row < g.q_len)
                kt_store(p.out, kt_off(p.out, b, h, row, col + (e & 1)),
                         ll > 0.0f ? o[i][e] / ll : (isnan(ll) ? ll : 0.0f));
        }
    }
}
