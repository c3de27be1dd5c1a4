/* Stage 3, block-sparse causal attention with an online softmax
 * (docs/semantics.md section 6), FlashAttention-2 style. Two kernels, one
 * built per program: block_attention (GPUs, RPT set) and row_attention (CPU
 * devices, VW set).
 *
 * block_attention, register-tiled for GPUs. One work-group per (b, h,
 * query block I, slice of BQ rows) with TY x TX work-items, TY = BQ / RPT.
 * Key blocks from the row's list are streamed in tiles of KT = TX * KPT keys
 * through local memory (K, then V in the same space). Work-item (ty, tx)
 * holds, in registers, the RPT x KPT logits of rows ty + TY * r and keys
 * tx + TX * kk, and the RPT x (4 NC)
 * outputs of those rows at columns 4 (tx + TX * c) + 0..3: every local read
 * is a float4 that feeds 4 RPT (or 4 KPT) FMAs, and each row's float4 of Q
 * or P is a broadcast to the TX items sharing it. The row max is reduced
 * through local memory once per tile; the row sum stays a per-item partial
 * until the end. K and V are read at KV head h / g (GQA, no copies). */

/* Chunked calls: rows r = 0 .. nr - 1 are the absolute query blocks row0 + r;
 * the call's queries are the positions [q_first, n_tokens), position p at
 * row p - q_first of q and out. lse (natural log of the softmax denominator)
 * is written when lse_off >= 0. */
inline void store_lse(TENSOR_F32(lse), int b, int h, long row, float m, float l)
{
    if (lse_off >= 0)
        lse[AT(lse, b, h, row, 0)] =
            l > 0.0f ? (m + log2(l)) * 0.69314718055994531f : (isnan(l) ? l : -INFINITY);
}

#ifndef SLICE
#define SLICE 0
#endif

#ifdef RPT
/* The next tile with keys to visit after (J, kt0): the rest of block J, then
 * the next valid entry of the row's list (ascending, causal; invalid entries
 * are skipped, there is no sync to report them). Returns its first key, or -1
 * past the list. Every item of the work-group walks the same tiles. */
inline long next_tile(__global const int *index, long at, long step, int cnt, int I, int block,
                      long n_tokens, long last_q, int *p, int *prev, int *J, int *kt0)
{
    for (;;) {
        if (*J >= 0) {
            *kt0 += KT;
            const long k0 = (long)*J * block + *kt0;
            if (*kt0 < block && k0 < n_tokens && k0 <= last_q)
                return k0; /* else past N, or every key masked for every row here */
        }
        int j = -1;
        while (j < 0 && *p < cnt) {
            j = index[at + (long)(*p)++ * step];
            j = j > *prev && j <= I ? j : -1;
        }
        if (j < 0)
            return -1;
        *prev = *J = j;
        *kt0 = -KT;
    }
}

#endif

#if defined(RPT) && !SLICE
#define D4 (HEAD_DIM / 4)
#define TY (BQ / RPT)
#define LS (TY * TX)
#define NC ((D4 + TX - 1) / TX) /* float4 output columns per item */
#define DP (HEAD_DIM + 4)       /* padded row: float4-aligned, spreads banks */
#define KP (KT + 4)             /* padded row of P */
/* Item ty owns rows ty + TY r: the rows a warp reads for one r are then
 * consecutive, so with the 4-float padding their float4s fall in distinct
 * banks for every RPT (rows ty RPT + r collided 2-way at RPT 4). */
#define ROW(r) (ty + TY * (r))

#ifndef KV_PREFETCH
#define KV_PREFETCH 0
#endif
/* S_UNROLL / PV_UNROLL (build options, for tuning sweeps): the unroll of the
 * Q K^T loop over d and of the P V loop over keys (default 4 and 2). Each
 * unrolled step hoists its local loads into registers, and the NVIDIA
 * compiler fills all 255 with them; less unrolling may buy occupancy. */
#define UNROLL_STR(x) #x
#define UNROLL(n) _Pragma(UNROLL_STR(unroll n))
/* Fixed-column loads: when LS float4s are whole rows, an item always loads
 * the same float4 column of rows lid / D4 + RSTEP u (no division a step). */
#define FIXED_COL (LS % D4 == 0)
#define RSTEP (LS / D4)

/* Rows [0, nrow) of a [*, HEAD_DIM] tensor slice starting at token tok0,
 * widened to f32 (times mul) into dst[nrow][DP]; rows outside [lo, hi) are 0.
 * Contiguous rows whose starts are 4-element aligned load 4 elements a time. */
inline void tile_load(__local float4 *dst, int nrow, __global const in_t *t, long base, long s2,
                      long s3, long tok0, long lo, long hi, float mul, int lid)
{
    if (s3 == 1 && ((base | s2) & 3) == 0) {
#if FIXED_COL
        const int e4 = lid % D4;
        const long col = base + 4 * e4; /* base may be negative (chunked Q): stays an index */
        for (int rr = lid / D4; rr < nrow; rr += RSTEP) {
            const long tok = tok0 + rr;
            dst[rr * (DP / 4) + e4] =
                tok >= lo && tok < hi ? mul * LOADA4_IN(t, col + tok * s2) : (float4)(0.0f);
        }
#else
        for (int i = lid; i < nrow * D4; i += LS) {
            const int rr = i / D4, e4 = i % D4;
            const long tok = tok0 + rr;
            dst[rr * (DP / 4) + e4] = tok >= lo && tok < hi
                                          ? mul * LOADA4_IN(t, base + tok * s2 + 4 * e4)
                                          : (float4)(0.0f);
        }
#endif
    } else {
        __local float *d = (__local float *)dst;
        for (int i = lid; i < nrow * HEAD_DIM; i += LS) {
            const int rr = i / HEAD_DIM, e = i % HEAD_DIM;
            const long tok = tok0 + rr;
            d[rr * DP + e] = tok >= lo && tok < hi ? mul * LOAD_IN(t, base + tok * s2 + e * s3)
                                                   : 0.0f;
        }
    }
}

#if KV_PREFETCH && FIXED_COL
/* KV_PREFETCH=1: the K tile is read into registers during the previous
 * tile's P V and the V tile during this tile's Q K^T, so global latency
 * hides behind FMAs instead of stalling at the barrier (contiguous,
 * 4-aligned rows; other layouts load as without it). bf16 stays packed in
 * the registers (half of them); it widens exactly on the local store. */
#define PF_N ((KT + RSTEP - 1) / RSTEP)
#if IN_DTYPE == 2
typedef ushort4 pf_t;
#define PF_LOAD(p, i) (*(__global const ushort4 *)((p) + (i)))
#define PF_WIDEN(x) as_float4(convert_uint4(x) << 16)
#else
typedef float4 pf_t;
#define PF_LOAD(p, i) LOADA4_IN(p, i)
#define PF_WIDEN(x) (x)
#endif
inline void tile_fetch(pf_t *pre, __global const in_t *t, long base, long s2, long tok0, long hi,
                       int lid)
{
    const long col = base + 4 * (lid % D4);
#pragma unroll
    for (int u = 0; u < PF_N; u++) {
        const int rr = lid / D4 + RSTEP * u;
        const long tok = tok0 + rr;
        pre[u] = rr < KT && tok < hi ? PF_LOAD(t, col + tok * s2) : (pf_t)(0);
    }
}
inline void tile_put(__local float4 *dst, const pf_t *pre, int lid)
{
#pragma unroll
    for (int u = 0; u < PF_N; u++) {
        const int rr = lid / D4 + RSTEP * u;
        if (rr < KT)
            dst[rr * (DP / 4) + lid % D4] = PF_WIDEN(pre[u]);
    }
}
#define PREFETCH 1
#else
#define PREFETCH 0
#endif

/* Output columns 4 (tx + TX c) .. + 3 exist for every item when TX float4s
 * divide a row. */
#if HEAD_DIM % (4 * TX) == 0
#define COL_LIVE(col) 1
#else
#define COL_LIVE(col) ((col) < HEAD_DIM)
#endif

/* Largest and sum of the TX floats of a Red row (TX is 4..32). */
inline float red_max(__local const float4 *red, int row)
{
    float4 m = red[row * (TX / 4)];
#pragma unroll
    for (int t = 1; t < TX / 4; t++)
        m = fmax(m, red[row * (TX / 4) + t]);
    return fmax(fmax(m.x, m.y), fmax(m.z, m.w));
}
inline float red_sum(__local const float4 *red, int row)
{
    float4 s = red[row * (TX / 4)];
    for (int t = 1; t < TX / 4; t++)
        s += red[row * (TX / 4) + t];
    return (s.x + s.y) + (s.z + s.w);
}

__kernel __attribute__((reqd_work_group_size(LS, 1, 1))) void
block_attention(TENSOR(q), TENSOR(k), TENSOR(v), TENSOR_I32(index), TENSOR_I32(count),
                __global void *out, long out_off, long out_s0, long out_s1, long out_s2,
                long out_s3, int out_dtype, int hq, int g, int n_tokens, int n, int block,
                float qmul, TENSOR_F32(lse), long q_first, int row0, int nr)
{
    /* float4 arrays: 16-byte aligned, so each float4 read is one vector load */
    __local float4 Qs[BQ * DP / 4];
    __local float4 KVs[KT * DP / 4];
    __local float4 Ps[BQ * KP / 4];
    __local float4 Red[BQ * TX / 4];
    __local float *const red = (__local float *)Red;
    const int lid = get_local_id(0), tx = lid % TX, ty = lid / TX;
    const int row = nr - 1 - (int)get_group_id(1); /* late rows (most keys) first */
    const int I = row0 + row;
    const int bh = get_group_id(2), b = bh / hq, h = bh % hq, kh = h / g;
    const long q0 = (long)I * block + (long)get_group_id(0) * BQ;
    /* A slice past N or before the call's first query lists no keys to visit. */
    const int live_slice = q0 < n_tokens && q0 + BQ > q_first;
    const long last_q = min(q0 + BQ - 1, (long)n_tokens - 1);

    /* Q rows q0 .. q0 + BQ - 1 are rows q0 - q_first .. of the call's q. */
    tile_load(Qs, BQ, q, AT(q, b, h, 0, 0) - q_first * q_s2, q_s2, q_s3, q0, q_first, n_tokens,
              qmul, lid);
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
    const long kbase = AT(k, b, kh, 0, 0), vbase = AT(v, b, kh, 0, 0);

    const int cnt = live_slice ? clamp(count[AT(count, b, h, row, 0)], 0, n) : 0;
    const long ix_at = AT(index, b, h, row, 0);
    int p = 0, prev = -1, J = -1, kt0 = 0;
    long k0 = next_tile(index, ix_at, index_s3, cnt, I, block, n_tokens, last_q, &p, &prev, &J,
                        &kt0);
#if PREFETCH
    const int pf = k_s3 == 1 && v_s3 == 1 && ((kbase | k_s2 | vbase | v_s2) & 3) == 0;
    pf_t pre[PF_N];
    if (pf && k0 >= 0)
        tile_fetch(pre, k, kbase, k_s2, k0, n_tokens, lid);
#endif
    while (k0 >= 0) {
        barrier(CLK_LOCAL_MEM_FENCE); /* previous tile's P V done with KVs, Ps */
#if PREFETCH
        if (pf)
            tile_put(KVs, pre, lid);
        else
#endif
            tile_load(KVs, KT, k, kbase, k_s2, k_s3, k0, 0, n_tokens, 1.0f, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
#if PREFETCH
        if (pf)
            tile_fetch(pre, v, vbase, v_s2, k0, n_tokens, lid); /* lands during Q K^T */
#endif

        float s[RPT][KPT];
#pragma unroll
        for (int r = 0; r < RPT; r++)
#pragma unroll
            for (int kk = 0; kk < KPT; kk++)
                s[r][kk] = 0.0f;
#ifdef S_UNROLL
        UNROLL(S_UNROLL)
#else
#pragma unroll 4
#endif
        for (int e4 = 0; e4 < D4; e4++) {
            float4 qv[RPT], kv[KPT];
#pragma unroll
            for (int r = 0; r < RPT; r++)
                qv[r] = Qs[ROW(r) * (DP / 4) + e4];
#pragma unroll
            for (int kk = 0; kk < KPT; kk++)
                kv[kk] = KVs[(tx + TX * kk) * (DP / 4) + e4];
#pragma unroll
            for (int r = 0; r < RPT; r++)
#pragma unroll
                for (int kk = 0; kk < KPT; kk++) {
                    float t = s[r][kk];
                    t = fma(qv[r].x, kv[kk].x, t);
                    t = fma(qv[r].y, kv[kk].y, t);
                    t = fma(qv[r].z, kv[kk].z, t);
                    s[r][kk] = fma(qv[r].w, kv[kk].w, t);
                }
        }
        /* Masks only where a key can be past N or after a row: tiles that
         * reach the slice's first row or the end (uniform branch). */
        const int edge = k0 + KT > q0 || k0 + KT > n_tokens;
#pragma unroll
        for (int r = 0; r < RPT; r++) {
            const long qtok = q0 + ROW(r);
            float mx = -INFINITY;
            int nan_seen = 0; /* fmax drops NaN: a NaN logit must still poison the row */
#pragma unroll
            for (int kk = 0; kk < KPT; kk++) {
                const long tok = k0 + tx + TX * kk;
                if (edge && (tok >= n_tokens || tok > qtok))
                    s[r][kk] = -INFINITY;
                nan_seen |= isnan(s[r][kk]);
                mx = fmax(mx, s[r][kk]);
            }
            if (nan_seen)
                l[r] = NAN;
            red[ROW(r) * TX + tx] = mx;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* partial maxima written; K no longer read */
#if PREFETCH
        if (pf)
            tile_put(KVs, pre, lid);
        else
#endif
            tile_load(KVs, KT, v, vbase, v_s2, v_s3, k0, 0, n_tokens, 1.0f, lid);
#pragma unroll
        for (int r = 0; r < RPT; r++) {
            const float m_new = fmax(m[r], red_max(Red, ROW(r)));
            const int live = m_new != -INFINITY;
            const float alpha = live ? exp2(m[r] - m_new) : 1.0f; /* 0 on the first tile */
            float sum = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KPT; kk++) {
                const float pv = live ? exp2(s[r][kk] - m_new) : 0.0f;
                sum += pv;
                ((__local float *)Ps)[ROW(r) * KP + tx + TX * kk] = pv;
            }
            l[r] = l[r] * alpha + sum;
#pragma unroll
            for (int c = 0; c < NC; c++)
                acc[r][c] *= alpha;
            m[r] = m_new;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* V and P in place */
        const long k_next = next_tile(index, ix_at, index_s3, cnt, I, block, n_tokens, last_q,
                                      &p, &prev, &J, &kt0);
#if PREFETCH
        if (pf && k_next >= 0)
            tile_fetch(pre, k, kbase, k_s2, k_next, n_tokens, lid); /* lands during P V */
#endif

#ifdef PV_UNROLL
        UNROLL(PV_UNROLL)
#else
#pragma unroll 2
#endif
        for (int j4 = 0; j4 < KT / 4; j4++) {
            float4 pv[RPT];
#pragma unroll
            for (int r = 0; r < RPT; r++)
                pv[r] = Ps[ROW(r) * (KP / 4) + j4];
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const int c4 = tx + TX * c; /* float4 column */
                if (COL_LIVE(4 * c4)) {
                    const float4 v0 = KVs[(4 * j4 + 0) * (DP / 4) + c4];
                    const float4 v1 = KVs[(4 * j4 + 1) * (DP / 4) + c4];
                    const float4 v2 = KVs[(4 * j4 + 2) * (DP / 4) + c4];
                    const float4 v3 = KVs[(4 * j4 + 3) * (DP / 4) + c4];
#pragma unroll
                    for (int r = 0; r < RPT; r++) {
                        float4 o = acc[r][c];
                        o = fma((float4)(pv[r].x), v0, o);
                        o = fma((float4)(pv[r].y), v1, o);
                        o = fma((float4)(pv[r].z), v2, o);
                        acc[r][c] = fma((float4)(pv[r].w), v3, o);
                    }
                }
            }
        }
        k0 = k_next;
    }
    /* Row sums: the TX items' shares, added once. */
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (int r = 0; r < RPT; r++)
        red[ROW(r) * TX + tx] = l[r];
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (int r = 0; r < RPT; r++) {
        const long qtok = q0 + ROW(r);
        if (qtok >= n_tokens || qtok < q_first)
            continue;
        const float lsum = red_sum(Red, ROW(r));
        const float inv =
            lsum > 0.0f ? 1.0f / lsum : (isnan(lsum) ? lsum : 0.0f); /* no visible key: 0 */
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const int col = 4 * (tx + TX * c);
            if (COL_LIVE(col)) {
                const float4 o = acc[r][c] * inv;
                const long at = AT(out, b, h, qtok - q_first, col);
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
#endif /* RPT && !SLICE */
/* SLICE=1: block_attention of kernels/attention_slice.cl instead. */

/* The same stage for CPU devices (PoCL), written like a CPU kernel: one
 * work-item per work-group and per (b, h, query block I, slice of
 * min(BQ, block) rows), explicit VW-wide vectors (the device's native float
 * width) so the code does not depend on the runtime vectorizing across
 * work-items. Per tile of
 * CKT keys: K packed transposed and V widened into private arrays, then for
 * each CR rows a register block of logits (CR x CKT), the online softmax with
 * a vector exp2, and a register block of P V (CR x 2 VW columns at a time).
 * K is packed once per tile for all the item's rows (up to a whole block). */
#ifdef VW
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define floatV CAT(float, VW)
#define intV CAT(int, VW)
#define vloadV CAT(vload, VW)
#define vstoreV CAT(vstore, VW)
#define CR (VW == 16 ? 8 : 4) /* rows per register block: 2 CR accumulators (of 32 / 16 regs) */
#define CKT (2 * VW)          /* keys per tile */

/* VW contiguous elements from element i, widened. */
#if IN_DTYPE == 1
#define LOADV_IN(p, i) CAT(vload_half, VW)(0, (p) + (i))
#elif IN_DTYPE == 2
#define LOADV_IN(p, i) CAT(as_float, VW)(CAT(convert_uint, VW)(vloadV(0, (p) + (i))) << 16)
#else
#define LOADV_IN(p, i) vloadV(0, (p) + (i))
#endif

#if VW == 4
#define IOTA ((intV)(0, 1, 2, 3))
#elif VW == 8
#define IOTA ((intV)(0, 1, 2, 3, 4, 5, 6, 7))
#else
#define IOTA ((intV)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#endif

/* 2^x for x <= 0 (and -inf, NaN) on every lane: 2^n times a degree-7 Taylor
 * series of 2^f, |f| <= 1/2 (truncation 5e-9 relative); below -126 gives 0. */
inline floatV exp2v(floatV x)
{
    const floatV xc = fmax(x, (floatV)(-127.0f)); /* NaN lanes are restored below */
    const floatV n = rint(xc), f = xc - n;
    floatV p = (floatV)(1.525273380405984e-05f);
    p = fma(p, f, (floatV)(1.5403530393381608e-04f));
    p = fma(p, f, (floatV)(1.3333558146428443e-03f));
    p = fma(p, f, (floatV)(9.618129107628477e-03f));
    p = fma(p, f, (floatV)(5.550410866482158e-02f));
    p = fma(p, f, (floatV)(2.402265069591007e-01f));
    p = fma(p, f, (floatV)(6.931471805599453e-01f));
    p = fma(p, f, (floatV)(1.0f));
    const intV e = (CAT(convert_int, VW)(n) + 127) << 23;
    const floatV r = p * CAT(as_float, VW)(e);
    return select(select(r, (floatV)(0.0f), xc < -126.0f), x, isnan(x));
}

inline float hmax(floatV x)
{
#if VW == 16
    const float8 a = fmax(x.lo, x.hi);
    const float4 b = fmax(a.lo, a.hi);
#elif VW == 8
    const float4 b = fmax(x.lo, x.hi);
#else
    const float4 b = x;
#endif
    const float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

inline float hsum(floatV x)
{
#if VW == 16
    const float8 a = x.lo + x.hi;
    const float4 b = a.lo + a.hi;
#elif VW == 8
    const float4 b = x.lo + x.hi;
#else
    const float4 b = x;
#endif
    const float2 c = b.lo + b.hi;
    return c.x + c.y;
}

__kernel void row_attention(TENSOR(q), TENSOR(k), TENSOR(v), TENSOR_I32(index),
                            TENSOR_I32(count), __global void *out, long out_off, long out_s0,
                            long out_s1, long out_s2, long out_s3, int out_dtype, int hq, int g,
                            int n_tokens, int n, int block, float qmul, TENSOR_F32(lse),
                            long q_first, int row0, int nr)
{
    const int row = nr - 1 - (int)get_group_id(1), I = row0 + row;
    const int bh = get_group_id(2), b = bh / hq, h = bh % hq, kh = h / g;
    const int bq = min(block, BQ); /* rows of this item */
    const long q0 = (long)I * block + (long)get_group_id(0) * bq;
    if (q0 >= n_tokens || q0 + bq <= q_first)
        return;
    const long last_q = min(q0 + bq - 1, (long)n_tokens - 1);
    float Qp[BQ * HEAD_DIM], Op[BQ * HEAD_DIM]; /* row-major, scaled Q; output sums */
    float Kt[HEAD_DIM * CKT], Vp[CKT * HEAD_DIM], Sp[CR * CKT];
    float m[BQ], l[BQ];
    for (int r = 0; r < bq; r++) {
        const long tok = q0 + r;
        const int ok = tok >= q_first && tok < n_tokens;
        const long at = ok ? AT(q, b, h, tok - q_first, 0) : 0;
        for (int e = 0; e < HEAD_DIM; e++) {
            Qp[r * HEAD_DIM + e] = ok ? qmul * LOAD_IN(q, at + e * q_s3) : 0.0f;
            Op[r * HEAD_DIM + e] = 0.0f;
        }
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const int cnt = clamp(count[AT(count, b, h, row, 0)], 0, n);
    int prev = -1;
    for (int p = 0; p < cnt; p++) {
        const int J = index[AT(index, b, h, row, p)];
        if (J <= prev || J > I)
            continue;
        prev = J;
        const long k_end = min((long)(J + 1) * block, min((long)n_tokens, last_q + 1));
        for (long k0 = (long)J * block; k0 < k_end; k0 += CKT) {
            const int kn = (int)min((long)CKT, k_end - k0);
            for (int j = 0; j < CKT; j++) {
                const int ok = j < kn;
                const long ka = ok ? AT(k, b, kh, k0 + j, 0) : 0;
                const long va = ok ? AT(v, b, kh, k0 + j, 0) : 0;
                if (ok && k_s3 == 1 && v_s3 == 1) { /* contiguous rows: VW elements a load */
                    for (int e = 0; e < HEAD_DIM; e += VW) {
                        float t[VW];
                        vstoreV(LOADV_IN(k, ka + e), 0, t);
                        for (int i = 0; i < VW; i++)
                            Kt[(e + i) * CKT + j] = t[i];
                        vstoreV(LOADV_IN(v, va + e), 0, Vp + j * HEAD_DIM + e);
                    }
                } else {
                    for (int e = 0; e < HEAD_DIM; e++) {
                        Kt[e * CKT + j] = ok ? LOAD_IN(k, ka + e * k_s3) : 0.0f;
                        Vp[j * HEAD_DIM + e] = ok ? LOAD_IN(v, va + e * v_s3) : 0.0f;
                    }
                }
            }
            const intV key0 = (intV)((int)(k0 - q0)) + IOTA; /* key - q0, lanes 0..VW-1 */
            for (int r0 = 0; r0 < bq; r0 += CR) {
                if (q0 + r0 + CR - 1 < k0)
                    continue; /* every key of the tile is after these rows */
                floatV s0[CR], s1[CR];
#pragma unroll
                for (int r = 0; r < CR; r++)
                    s0[r] = s1[r] = (floatV)(0.0f);
#pragma unroll 4
                for (int e = 0; e < HEAD_DIM; e++) {
                    const floatV k0v = vloadV(0, Kt + e * CKT), k1v = vloadV(0, Kt + e * CKT + VW);
#pragma unroll
                    for (int r = 0; r < CR; r++) {
                        const floatV qe = (floatV)(Qp[(r0 + r) * HEAD_DIM + e]);
                        s0[r] = fma(qe, k0v, s0[r]);
                        s1[r] = fma(qe, k1v, s1[r]);
                    }
                }
#pragma unroll
                for (int r = 0; r < CR; r++) {
                    const int rr = r0 + r;
                    /* Masked: keys after the row's token or not in the tile. */
                    const intV lim = (intV)(min(rr, (int)(k0 - q0) + kn - 1));
                    s0[r] = select(s0[r], (floatV)(-INFINITY), key0 > lim);
                    s1[r] = select(s1[r], (floatV)(-INFINITY), key0 + (intV)(VW) > lim);
                    if (any(isnan(s0[r])) || any(isnan(s1[r])))
                        l[rr] = NAN; /* fmax drops NaN: it must still poison the row */
                    const float m_new = fmax(m[rr], hmax(fmax(s0[r], s1[r])));
                    floatV p0 = (floatV)(0.0f), p1 = (floatV)(0.0f);
                    if (m_new != -INFINITY) {
                        const float alpha = exp2(m[rr] - m_new);
                        p0 = exp2v(s0[r] - (floatV)(m_new));
                        p1 = exp2v(s1[r] - (floatV)(m_new));
                        l[rr] = l[rr] * alpha + hsum(p0 + p1);
                        if (alpha != 1.0f)
                            for (int e = 0; e < HEAD_DIM; e += VW)
                                vstoreV(alpha * vloadV(0, Op + rr * HEAD_DIM + e), 0,
                                        Op + rr * HEAD_DIM + e);
                        m[rr] = m_new;
                    }
                    vstoreV(p0, 0, Sp + r * CKT);
                    vstoreV(p1, 0, Sp + r * CKT + VW);
                }
                for (int c = 0; c < HEAD_DIM; c += 2 * VW) {
                    floatV o0[CR], o1[CR];
#pragma unroll
                    for (int r = 0; r < CR; r++) {
                        o0[r] = vloadV(0, Op + (r0 + r) * HEAD_DIM + c);
                        o1[r] = vloadV(0, Op + (r0 + r) * HEAD_DIM + c + VW);
                    }
#pragma unroll 4
                    for (int j = 0; j < CKT; j++) {
                        const floatV v0 = vloadV(0, Vp + j * HEAD_DIM + c);
                        const floatV v1 = vloadV(0, Vp + j * HEAD_DIM + c + VW);
#pragma unroll
                        for (int r = 0; r < CR; r++) {
                            const floatV pj = (floatV)(Sp[r * CKT + j]);
                            o0[r] = fma(pj, v0, o0[r]);
                            o1[r] = fma(pj, v1, o1[r]);
                        }
                    }
#pragma unroll
                    for (int r = 0; r < CR; r++) {
                        vstoreV(o0[r], 0, Op + (r0 + r) * HEAD_DIM + c);
                        vstoreV(o1[r], 0, Op + (r0 + r) * HEAD_DIM + c + VW);
                    }
                }
            }
        }
    }
    for (int r = 0; r < bq; r++) {
        const long tok = q0 + r;
        if (tok < q_first || tok >= n_tokens)
            continue;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : (isnan(l[r]) ? l[r] : 0.0f);
        for (int e = 0; e < HEAD_DIM; e++)
            store_out(out, AT(out, b, h, tok - q_first, e), out_dtype, Op[r * HEAD_DIM + e] * inv);
        store_lse(lse, lse_off, lse_s0, lse_s1, lse_s2, lse_s3, b, h, tok - q_first, m[r], l[r]);
    }
}
#endif /* VW */
