/* Stage 3 for GPUs, the d-sliced register-tiled variant of block_attention
 * (built instead of attention.cl's when SLICE=1; STEM_OPENCL_ATTN_TILE=
 * "s,rpt,tx,kpt,bq[,ds[,vs]]"). Same arguments, grid, tile walk
 * (next_tile), masking, online softmax and NaN rules as the default kernel;
 * what differs is where the operands live:
 *
 * - One work-group per (b, h, query block I, slice of BQ rows), TY x TX
 *   items, TY = BQ / RPT. Key tiles of KT = TX * KPT keys.
 * - S = Q K^T: Q and K go through local memory in slices of DS columns of d,
 *   stored transposed (Qt[e][row], Kt[e][key]), so per column e an item
 *   reads RPT / 4 float4s of Q (4 consecutive rows) and KPT / 4 float4s of K
 *   (4 consecutive keys) and does RPT x KPT FMAs: 8 x 8 logits per item are
 *   16 FMAs per 16-byte local load (the default kernel: 8). Q is re-read
 *   (from L1 / L2) per key tile, so local memory holds only the slices.
 * - Item (ty, tx) owns rows 4 (ty + TY r4) + i and keys 4 (tx + TX k4) + i:
 *   the Q float4 is a broadcast to the TX items of a row, the K float4s of
 *   TX neighbours are consecutive (no bank conflicts).
 * - O += P V: P goes to local memory transposed (Pt[key][row]), V in slices
 *   of VS keys, row-major; the item keeps RPT rows x 4 NC columns (float4
 *   columns tx + TX c) of O in registers, the same rows as its logits, so
 *   the softmax state (m, l) never moves between items. Per key: RPT / 4 P
 *   float4s and NC V float4s for 4 RPT NC FMAs.
 * - Row maxima of a tile go through local memory (TX partials a row); row
 *   sums stay per-item partials until the end.
 * - SPF=1 (tile field pf, default): each slice's global loads are issued a
 *   slice ahead into registers (bf16 packed); SDB=1 (default): two slice
 *   buffers in turn, one barrier a slice.
 * Measured on the H100 (bench/results/opencl.md, one-buffer version): 31-35%
 * of the fp32 peak at 16K against 39.6% for the default kernel; ptxas takes
 * 207-255 registers an item and the 8 x 8 shapes spill, so it stays opt-in. */

#if defined(RPT) && SLICE
#define TY (BQ / RPT)
#define LS (TY * TX)
#define D4 (HEAD_DIM / 4)
#define NC ((D4 + TX - 1) / TX) /* float4 output columns per item */
#define R4 (RPT / 4)
#define K4 (KPT / 4)
#define BQP (BQ + 4)   /* padded Qt / Pt row (floats) */
#define KTP (KT + 4)   /* padded Kt row */
#define DPV (HEAD_DIM + 4) /* padded V row */
#define U_SL (DS * BQP + DS * KTP)
#define U_V (VS * DPV)
#define U_F (U_SL > U_V ? U_SL : U_V)
#if HEAD_DIM % (4 * TX) == 0
#define C_LIVE(c4) 1
#else
#define C_LIVE(c4) ((c4) < D4)
#endif

#ifndef SPF
#define SPF 1
#endif
/* SDB=1: two slice buffers in local memory, used in turn, so a slice needs
 * one barrier (stored, then read) instead of two; SDB=0 (through
 * STEM_OPENCL_BUILD_OPTIONS, for A/B runs) one buffer. */
#ifndef SDB
#define SDB 1
#endif
/* Raw 4-element groups held in registers between the global load and the
 * local store (bf16 stays packed: half the registers); widened on the store. */
#if IN_DTYPE == 2
typedef ushort4 raw4;
#define RAW4_VEC(p, i) (*(__global const ushort4 *)((p) + (i)))
#define RAW4_GATHER(p, i, s) \
    ((ushort4)((p)[(i)], (p)[(i) + (s)], (p)[(i) + 2 * (s)], (p)[(i) + 3 * (s)]))
#define RAW4_WIDEN(x) as_float4(convert_uint4(x) << 16)
#else
typedef float4 raw4;
#define RAW4_VEC(p, i) LOADA4_IN(p, i)
#define RAW4_GATHER(p, i, s) \
    ((float4)(LOAD_IN(p, i), LOAD_IN(p, (i) + (s)), LOAD_IN(p, (i) + 2 * (s)), \
              LOAD_IN(p, (i) + 3 * (s))))
#define RAW4_WIDEN(x) (x)
#endif

/* A slice's global loads, spread over the items: NQ4 float4s of Q
 * (BQ rows x DS columns), NK4 of K (KT x DS), NV4 of V (VS x HEAD_DIM). */
#define NQ4 (BQ * (DS / 4))
#define NK4 (KT * (DS / 4))
#define NV4 (VS * D4)
#define UQ ((NQ4 + LS - 1) / LS)
#define UK ((NK4 + LS - 1) / LS)
#define UV ((NV4 + LS - 1) / LS)

/* 4 elements from column e of row tok (0 outside [lo, hi) or past HEAD_DIM). */
inline raw4 raw4_at(__global const in_t *t, long base, long s2, long s3, long tok, int e,
                    long lo, long hi, int vec)
{
    if (tok < lo || tok >= hi || e >= HEAD_DIM)
        return (raw4)(0);
    const long at = base + tok * s2;
    return vec ? RAW4_VEC(t, at + e) : RAW4_GATHER(t, at + e * s3, s3);
}

/* Q columns [e0, e0 + DS) of rows q0 .. q0 + BQ - 1 and K columns of keys
 * k0 .. k0 + KT - 1, row-fastest over the items. */
inline void fetch_qk(raw4 *pq, raw4 *pk, __global const in_t *q, long qbase, long q_s2,
                     long q_s3, long q0, long q_first, __global const in_t *k, long kbase,
                     long k_s2, long k_s3, long k0, long n_tokens, int e0, int qvec, int kvec,
                     int lid)
{
#pragma unroll
    for (int u = 0; u < UQ; u++) {
        const int i = lid + LS * u;
        pq[u] = i < NQ4 ? raw4_at(q, qbase, q_s2, q_s3, q0 + i % BQ, e0 + 4 * (i / BQ), q_first,
                                  n_tokens, qvec)
                        : (raw4)(0);
    }
#pragma unroll
    for (int u = 0; u < UK; u++) {
        const int i = lid + LS * u;
        pk[u] = i < NK4 ? raw4_at(k, kbase, k_s2, k_s3, k0 + i % KT, e0 + 4 * (i / KT), 0,
                                  n_tokens, kvec)
                        : (raw4)(0);
    }
}

/* ... stored transposed: Qt[e][row] (times qmul), Kt[e][key]. Row-fastest,
 * so the scalar stores of a warp fall on consecutive words. */
inline void put_qk(__local float *U, const raw4 *pq, const raw4 *pk, float qmul, int lid)
{
#pragma unroll
    for (int u = 0; u < UQ; u++) {
        const int i = lid + LS * u;
        if (i < NQ4) {
            const float4 x = qmul * RAW4_WIDEN(pq[u]);
            __local float *d = U + 4 * (i / BQ) * BQP + i % BQ;
            d[0] = x.x;
            d[BQP] = x.y;
            d[2 * BQP] = x.z;
            d[3 * BQP] = x.w;
        }
    }
#pragma unroll
    for (int u = 0; u < UK; u++) {
        const int i = lid + LS * u;
        if (i < NK4) {
            const float4 x = RAW4_WIDEN(pk[u]);
            __local float *d = U + DS * BQP + 4 * (i / KT) * KTP + i % KT;
            d[0] = x.x;
            d[KTP] = x.y;
            d[2 * KTP] = x.z;
            d[3 * KTP] = x.w;
        }
    }
}

/* V rows k0 .. k0 + VS - 1 (0 at or past n_tokens), into Vs[VS][DPV]. */
inline void fetch_v(raw4 *pv, __global const in_t *v, long vbase, long v_s2, long v_s3, long k0,
                    long n_tokens, int vvec, int lid)
{
#pragma unroll
    for (int u = 0; u < UV; u++) {
        const int i = lid + LS * u;
        pv[u] = i < NV4 ? raw4_at(v, vbase, v_s2, v_s3, k0 + i / D4, 4 * (i % D4), 0, n_tokens,
                                  vvec)
                        : (raw4)(0);
    }
}
inline void put_v(__local float4 *U4, const raw4 *pv, int lid)
{
#pragma unroll
    for (int u = 0; u < UV; u++) {
        const int i = lid + LS * u;
        if (i < NV4)
            U4[(i / D4) * (DPV / 4) + i % D4] = RAW4_WIDEN(pv[u]);
    }
}

__kernel __attribute__((reqd_work_group_size(LS, 1, 1))) void
block_attention(TENSOR(q), TENSOR(k), TENSOR(v), TENSOR_I32(index), TENSOR_I32(count),
                __global void *out, long out_off, long out_s0, long out_s1, long out_s2,
                long out_s3, int out_dtype, int hq, int g, int n_tokens, int n, int block,
                float qmul, TENSOR_F32(lse), long q_first, int row0, int nr)
{
    __local float4 U4[(1 + SDB) * U_F / 4]; /* Qt and Kt slices, or a V slice (x 2: SDB) */
    __local float4 P4[KT * BQP / 4]; /* Pt[key][row] */
    __local float red[BQ * TX];
#define UBUF(sl_) (U4 + (SDB ? ((sl_) & 1) * (U_F / 4) : 0))
    int sl = 0; /* slices stored so far: picks the buffer */
    const int lid = get_local_id(0), tx = lid % TX, ty = lid / TX;
    const int row = nr - 1 - (int)get_group_id(1); /* late rows (most keys) first */
    const int I = row0 + row;
    const int bh = get_group_id(2), b = bh / hq, h = bh % hq, kh = h / g;
    const long q0 = (long)I * block + (long)get_group_id(0) * BQ;
    const int live_slice = q0 < n_tokens && q0 + BQ > q_first;
    const long last_q = min(q0 + BQ - 1, (long)n_tokens - 1);

    /* Q row p of the call's q is position p + q_first. */
    const long qbase = AT(q, b, h, 0, 0) - q_first * q_s2;
    const long kbase = AT(k, b, kh, 0, 0), vbase = AT(v, b, kh, 0, 0);
    const int qvec = q_s3 == 1 && ((qbase | q_s2) & 3) == 0;
    const int kvec = k_s3 == 1 && ((kbase | k_s2) & 3) == 0;
    const int vvec = v_s3 == 1 && ((vbase | v_s2) & 3) == 0;

    /* acc[4 r4 + i][c]: row 4 (ty + TY r4) + i, float4 column tx + TX c. */
    float4 acc[RPT][NC];
    float m[RPT], l[RPT]; /* l: this item's share of the row sum */
#pragma unroll
    for (int r = 0; r < RPT; r++) {
#pragma unroll
        for (int c = 0; c < NC; c++)
            acc[r][c] = (float4)(0.0f);
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }

    const int cnt = live_slice ? clamp(count[AT(count, b, h, row, 0)], 0, n) : 0;
    const long ix_at = AT(index, b, h, row, 0);
    int p = 0, prev = -1, J = -1, kt0 = 0;
    long k0 = next_tile(index, ix_at, index_s3, cnt, I, block, n_tokens, last_q, &p, &prev, &J,
                        &kt0);
    /* Pipeline (SPF=1): each slice's global loads are issued into registers
     * before the previous slice's FMAs and stored to local memory after
     * them, so their latency hides behind the arithmetic. SPF=0 loads each
     * slice just before storing it. */
    raw4 pq[UQ], pk[UK], pv[UV];
#define FETCH_QK(e0_, k0_) \
    fetch_qk(pq, pk, q, qbase, q_s2, q_s3, q0, q_first, k, kbase, k_s2, k_s3, (k0_), n_tokens, \
             (e0_), qvec, kvec, lid)
#define FETCH_V(j0_) fetch_v(pv, v, vbase, v_s2, v_s3, k0 + (j0_), n_tokens, vvec, lid)
#if SPF
    if (k0 >= 0)
        FETCH_QK(0, k0);
#endif
    while (k0 >= 0) {
        /* s[4 r4 + i][k4]: row 4 (ty + TY r4) + i, keys 4 (tx + TX k4) + 0..3 */
        float4 s[RPT][K4];
#pragma unroll
        for (int r = 0; r < RPT; r++)
#pragma unroll
            for (int k4 = 0; k4 < K4; k4++)
                s[r][k4] = (float4)(0.0f);
        for (int e0 = 0; e0 < HEAD_DIM; e0 += DS) {
#if !SPF
            FETCH_QK(e0, k0);
#endif
            __local float4 *const B4 = UBUF(sl++);
#if !SDB
            barrier(CLK_LOCAL_MEM_FENCE); /* U no longer read (previous slice or P V) */
#endif
            put_qk((__local float *)B4, pq, pk, qmul, lid);
            barrier(CLK_LOCAL_MEM_FENCE);
            __local const float4 *const Qt4 = B4, *const Kt4 = B4 + DS * BQP / 4;
#if SPF
            if (e0 + DS < HEAD_DIM)
                FETCH_QK(e0 + DS, k0);
            else
                FETCH_V(0);
#endif
#pragma unroll 4
            for (int e = 0; e < DS; e++) {
                float4 qv[R4], kv[K4];
#pragma unroll
                for (int r4 = 0; r4 < R4; r4++)
                    qv[r4] = Qt4[e * (BQP / 4) + ty + TY * r4];
#pragma unroll
                for (int k4 = 0; k4 < K4; k4++)
                    kv[k4] = Kt4[e * (KTP / 4) + tx + TX * k4];
#pragma unroll
                for (int r4 = 0; r4 < R4; r4++)
#pragma unroll
                    for (int k4 = 0; k4 < K4; k4++) {
                        s[4 * r4 + 0][k4] = fma((float4)(qv[r4].x), kv[k4], s[4 * r4 + 0][k4]);
                        s[4 * r4 + 1][k4] = fma((float4)(qv[r4].y), kv[k4], s[4 * r4 + 1][k4]);
                        s[4 * r4 + 2][k4] = fma((float4)(qv[r4].z), kv[k4], s[4 * r4 + 2][k4]);
                        s[4 * r4 + 3][k4] = fma((float4)(qv[r4].w), kv[k4], s[4 * r4 + 3][k4]);
                    }
            }
        }
        /* Masks only on tiles that reach the slice's first row or N. */
        const int edge = k0 + KT > q0 || k0 + KT > n_tokens;
#pragma unroll
        for (int r = 0; r < RPT; r++) {
            const int rl = 4 * (ty + TY * (r / 4)) + r % 4;
            const long qtok = q0 + rl;
            float4 mx4 = (float4)(-INFINITY);
            int nan_seen = 0; /* fmax drops NaN: a NaN logit must still poison the row */
#pragma unroll
            for (int k4 = 0; k4 < K4; k4++) {
                float4 x = s[r][k4];
                if (edge) {
                    const long key = k0 + 4 * (tx + TX * k4);
                    x.x = key + 0 >= n_tokens || key + 0 > qtok ? -INFINITY : x.x;
                    x.y = key + 1 >= n_tokens || key + 1 > qtok ? -INFINITY : x.y;
                    x.z = key + 2 >= n_tokens || key + 2 > qtok ? -INFINITY : x.z;
                    x.w = key + 3 >= n_tokens || key + 3 > qtok ? -INFINITY : x.w;
                    s[r][k4] = x;
                }
                nan_seen |= any(isnan(x));
                mx4 = fmax(mx4, x);
            }
            if (nan_seen)
                l[r] = NAN;
            red[rl * TX + tx] = fmax(fmax(mx4.x, mx4.y), fmax(mx4.z, mx4.w));
        }
#if !SPF
        FETCH_V(0);
#endif
#if SDB
        put_v(UBUF(sl), pv, lid); /* the other buffer: no wait for the Qt, Kt readers */
        barrier(CLK_LOCAL_MEM_FENCE); /* partial maxima written */
#else
        barrier(CLK_LOCAL_MEM_FENCE); /* partial maxima written; Qt, Kt no longer read */
        put_v(UBUF(sl), pv, lid);
#endif
#pragma unroll
        for (int r = 0; r < RPT; r++) {
            const int rl = 4 * (ty + TY * (r / 4)) + r % 4;
            float mt = red[rl * TX];
            for (int t = 1; t < TX; t++)
                mt = fmax(mt, red[rl * TX + t]);
            const float m_new = fmax(m[r], mt);
            const int live = m_new != -INFINITY;
            const float alpha = live ? exp2(m[r] - m_new) : 1.0f; /* 0 on the first tile */
            float4 sum4 = (float4)(0.0f);
#pragma unroll
            for (int k4 = 0; k4 < K4; k4++) {
                const float4 pe = live ? exp2(s[r][k4] - (float4)(m_new)) : (float4)(0.0f);
                sum4 += pe;
                s[r][k4] = pe;
            }
            l[r] = l[r] * alpha + ((sum4.x + sum4.y) + (sum4.z + sum4.w));
#pragma unroll
            for (int c = 0; c < NC; c++)
                acc[r][c] *= alpha;
            m[r] = m_new;
        }
        /* Pt[key][4 (ty + TY r4) + 0..3]: one float4 per key and row group. */
#pragma unroll
        for (int r4 = 0; r4 < R4; r4++)
#pragma unroll
            for (int k4 = 0; k4 < K4; k4++) {
                const int kb = 4 * (tx + TX * k4), at = ty + TY * r4;
                const float4 a = s[4 * r4 + 0][k4], bb = s[4 * r4 + 1][k4],
                             cc = s[4 * r4 + 2][k4], dd = s[4 * r4 + 3][k4];
                P4[(kb + 0) * (BQP / 4) + at] = (float4)(a.x, bb.x, cc.x, dd.x);
                P4[(kb + 1) * (BQP / 4) + at] = (float4)(a.y, bb.y, cc.y, dd.y);
                P4[(kb + 2) * (BQP / 4) + at] = (float4)(a.z, bb.z, cc.z, dd.z);
                P4[(kb + 3) * (BQP / 4) + at] = (float4)(a.w, bb.w, cc.w, dd.w);
            }
        long k_next = -1;
        for (int j0 = 0; j0 < KT; j0 += VS) {
            __local float4 *const B4 = UBUF(sl++);
            if (j0 > 0) {
#if !SPF
                FETCH_V(j0);
#endif
#if !SDB
                barrier(CLK_LOCAL_MEM_FENCE); /* previous V slice read */
#endif
                put_v(B4, pv, lid);
            }
            barrier(CLK_LOCAL_MEM_FENCE); /* V slice (and, first, P) in place */
            if (j0 + VS < KT) {
#if SPF
                FETCH_V(j0 + VS);
#endif
            } else {
                k_next = next_tile(index, ix_at, index_s3, cnt, I, block, n_tokens, last_q, &p,
                                   &prev, &J, &kt0);
#if SPF
                if (k_next >= 0)
                    FETCH_QK(0, k_next);
#endif
            }
            __local const float4 *const V4 = B4;
#pragma unroll 2
            for (int jj = 0; jj < VS; jj++) {
                float4 pr[R4];
#pragma unroll
                for (int r4 = 0; r4 < R4; r4++)
                    pr[r4] = P4[(j0 + jj) * (BQP / 4) + ty + TY * r4];
#pragma unroll
                for (int c = 0; c < NC; c++) {
                    const int c4 = tx + TX * c;
                    if (C_LIVE(c4)) {
                        const float4 vv = V4[jj * (DPV / 4) + c4];
#pragma unroll
                        for (int r4 = 0; r4 < R4; r4++) {
                            acc[4 * r4 + 0][c] = fma((float4)(pr[r4].x), vv, acc[4 * r4 + 0][c]);
                            acc[4 * r4 + 1][c] = fma((float4)(pr[r4].y), vv, acc[4 * r4 + 1][c]);
                            acc[4 * r4 + 2][c] = fma((float4)(pr[r4].z), vv, acc[4 * r4 + 2][c]);
                            acc[4 * r4 + 3][c] = fma((float4)(pr[r4].w), vv, acc[4 * r4 + 3][c]);
                        }
                    }
                }
            }
        }
        k0 = k_next;
    }
#undef FETCH_QK
#undef FETCH_V
#undef UBUF
    /* Row sums: the TX items' shares, added once. */
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (int r = 0; r < RPT; r++)
        red[(4 * (ty + TY * (r / 4)) + r % 4) * TX + tx] = l[r];
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const int rl = 4 * (ty + TY * (r / 4)) + r % 4;
        const long qtok = q0 + rl;
        if (qtok >= n_tokens || qtok < q_first)
            continue;
        float lsum = red[rl * TX];
        for (int t = 1; t < TX; t++)
            lsum += red[rl * TX + t];
        const float inv =
            lsum > 0.0f ? 1.0f / lsum : (isnan(lsum) ? lsum : 0.0f); /* no visible key: 0 */
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const int c4 = tx + TX * c;
            if (C_LIVE(c4)) {
                const float4 o = acc[r][c] * inv;
                const long at = AT(out, b, h, qtok - q_first, 4 * c4);
                store_out(out, at, out_dtype, o.x);
                store_out(out, at + out_s3, out_dtype, o.y);
                store_out(out, at + 2 * out_s3, out_dtype, o.z);
                store_out(out, at + 3 * out_s3, out_dtype, o.w);
            }
        }
        if (tx == 0)
            store_lse(lse, lse_off, lse_s0, lse_s1, lse_s2, lse_s3, b, h, qtok - q_first, m[r],
                      lsum);
    }
}
#endif /* RPT && SLICE */
