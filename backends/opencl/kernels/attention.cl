/* Stage 3, block-sparse causal attention with an online softmax
 * (docs/semantics.md section 6), FlashAttention-2 style. One work-group per
 * (b, h, query block I, slice of BQ rows); TPR items per query row, each
 * holding HEAD_DIM / TPR output columns. Key blocks from the row's list are
 * streamed in tiles of KT keys through local memory: S = Q K^T, running max
 * and sum, O += P V. K and V are read at KV head h / g (GQA, no copies). */

#define ACC ((HEAD_DIM + TPR - 1) / TPR)
#define LS (BQ * TPR)

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

__kernel void block_attention(TENSOR(q), TENSOR(k), TENSOR(v), TENSOR_I32(index),
                              TENSOR_I32(count), __global void *out, long out_off, long out_s0,
                              long out_s1, long out_s2, long out_s3, int out_dtype, int hq,
                              int g, int n_tokens, int n, int block, float qmul, TENSOR_F32(lse),
                              long q_first, int row0, int nr)
{
    __local float Qs[BQ][HEAD_DIM + 1];
    __local float Ks[KT][HEAD_DIM + 1];
    __local float Vs[KT][HEAD_DIM + 1];
    __local float Ss[BQ][KT + 1];
    const int lid = get_local_id(0), r = lid / TPR, c = lid % TPR;
    const int row = nr - 1 - (int)get_group_id(1); /* late rows (most keys) first */
    const int I = row0 + row;
    const int bh = get_group_id(2), b = bh / hq, h = bh % hq, kh = h / g;
    const long q0 = (long)I * block + (long)get_group_id(0) * BQ;
    /* A slice past N or before the call's first query lists no keys to visit. */
    const int live_slice = q0 < n_tokens && q0 + BQ > q_first;
    const long qtok = q0 + r;
    const long last_q = min(q0 + BQ - 1, (long)n_tokens - 1);

    for (int i = lid; i < BQ * HEAD_DIM; i += LS) {
        const int rr = i / HEAD_DIM, e = i % HEAD_DIM;
        const long tok = q0 + rr;
        Qs[rr][e] = tok < n_tokens && tok >= q_first
                        ? qmul * LOAD_IN(q, AT(q, b, h, tok - q_first, e))
                        : 0.0f;
    }
    float acc[ACC];
    for (int i = 0; i < ACC; i++)
        acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    const int cnt = live_slice ? clamp(count[AT(count, b, h, row, 0)], 0, n) : 0;
    int prev = -1;
    for (int p = 0; p < cnt; p++) {
        const int J = index[AT(index, b, h, row, p)];
        if (J <= prev || J > I)
            continue; /* invalid entries are skipped (no sync to report them) */
        prev = J;
        for (int kt0 = 0; kt0 < block; kt0 += KT) {
            const long k0 = (long)J * block + kt0;
            if (k0 >= n_tokens || k0 > last_q)
                break; /* past N, or every key masked for every row here */
            barrier(CLK_LOCAL_MEM_FENCE); /* previous tile fully consumed */
            for (int i = lid; i < KT * HEAD_DIM; i += LS) {
                const int j = i / HEAD_DIM, e = i % HEAD_DIM;
                const long tok = k0 + j;
                const int ok = tok < n_tokens;
                Ks[j][e] = ok ? LOAD_IN(k, AT(k, b, kh, tok, e)) : 0.0f;
                Vs[j][e] = ok ? LOAD_IN(v, AT(v, b, kh, tok, e)) : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int j = c; j < KT; j += TPR) {
                float s = 0.0f;
                for (int e = 0; e < HEAD_DIM; e++)
                    s += Qs[r][e] * Ks[j][e];
                const long tok = k0 + j;
                Ss[r][j] = tok < n_tokens && tok <= qtok ? s : -INFINITY;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            float mx = -INFINITY;
            int nan_seen = 0; /* fmax drops NaN: a NaN logit must still poison the row */
            for (int j = 0; j < KT; j++) {
                mx = fmax(mx, Ss[r][j]);
                nan_seen |= isnan(Ss[r][j]);
            }
            if (nan_seen)
                l = NAN;
            const float m_new = fmax(m, mx);
            barrier(CLK_LOCAL_MEM_FENCE); /* every row max read before P overwrites S */
            const int live = m_new != -INFINITY;
            for (int j = c; j < KT; j += TPR)
                Ss[r][j] = live ? exp2(Ss[r][j] - m_new) : 0.0f;
            barrier(CLK_LOCAL_MEM_FENCE);
            if (live) {
                const float alpha = exp2(m - m_new); /* 0 on the first visible tile */
                float sum = 0.0f;
                for (int j = 0; j < KT; j++)
                    sum += Ss[r][j];
                l = l * alpha + sum;
                for (int i = 0; i < ACC; i++) {
                    const int col = c + i * TPR;
                    float o = acc[i] * alpha;
                    if (col < HEAD_DIM)
                        for (int j = 0; j < KT; j++)
                            o += Ss[r][j] * Vs[j][col];
                    acc[i] = o;
                }
                m = m_new;
            }
        }
    }
    if (qtok >= n_tokens || qtok < q_first)
        return;
    const float inv = l > 0.0f ? 1.0f / l : (isnan(l) ? l : 0.0f); /* no visible key: zero output */
    for (int i = 0; i < ACC; i++) {
        const int col = c + i * TPR;
        if (col < HEAD_DIM)
            store_out(out, AT(out, b, h, qtok - q_first, col), out_dtype, acc[i] * inv);
    }
    if (c == 0)
        store_lse(lse, lse_off, lse_s0, lse_s1, lse_s2, lse_s3, b, h, qtok - q_first, m, l);
}

/* The same stage for CPU devices (PoCL): one work-item per query row, no
 * barriers and no local memory, so the runtime can vectorize across rows
 * (neighbouring rows read the same key, a broadcast). Keys come in chunks of
 * ROW_CHUNK: logits, one rescale per chunk, then P V. */
#define ROW_CHUNK 16

__kernel void row_attention(TENSOR(q), TENSOR(k), TENSOR(v), TENSOR_I32(index),
                            TENSOR_I32(count), __global void *out, long out_off, long out_s0,
                            long out_s1, long out_s2, long out_s3, int out_dtype, int hq, int g,
                            int n_tokens, int n, int block, float qmul, TENSOR_F32(lse),
                            long q_first, int row0, int nr)
{
    const int row = nr - 1 - (int)get_group_id(1), I = row0 + row;
    const int bh = get_group_id(2), b = bh / hq, h = bh % hq, kh = h / g;
    const long qtok = (long)I * block + get_global_id(0);
    if (get_global_id(0) >= block || qtok >= n_tokens || qtok < q_first)
        return;
    float qv[HEAD_DIM], acc[HEAD_DIM], s[ROW_CHUNK];
    const long qrow = AT(q, b, h, qtok - q_first, 0);
    for (int e = 0; e < HEAD_DIM; e++) {
        qv[e] = qmul * LOAD_IN(q, qrow + e * q_s3);
        acc[e] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int cnt = clamp(count[AT(count, b, h, row, 0)], 0, n);
    int prev = -1;
    for (int p = 0; p < cnt; p++) {
        const int J = index[AT(index, b, h, row, p)];
        if (J <= prev || J > I)
            continue;
        prev = J;
        const long k_end = min((long)(J + 1) * block, min((long)n_tokens, qtok + 1));
        for (long k0 = (long)J * block; k0 < k_end; k0 += ROW_CHUNK) {
            const int kn = (int)min((long)ROW_CHUNK, k_end - k0);
            float mx = -INFINITY;
            for (int j = 0; j < kn; j++) {
                const long row = AT(k, b, kh, k0 + j, 0); /* address math once per key */
                float d = 0.0f;
                for (int e = 0; e < HEAD_DIM; e++)
                    d += qv[e] * LOAD_IN(k, row + e * k_s3);
                s[j] = d;
                mx = fmax(mx, d);
            }
            const float m_new = fmax(m, mx);
            const float alpha = exp2(m - m_new);
            l *= alpha;
            for (int e = 0; e < HEAD_DIM; e++)
                acc[e] *= alpha;
            for (int j = 0; j < kn; j++) {
                const float pj = exp2(s[j] - m_new);
                const long row = AT(v, b, kh, k0 + j, 0);
                l += pj;
                for (int e = 0; e < HEAD_DIM; e++)
                    acc[e] += pj * LOAD_IN(v, row + e * v_s3);
            }
            m = m_new;
        }
    }
    const float inv = l > 0.0f ? 1.0f / l : (isnan(l) ? l : 0.0f);
    for (int e = 0; e < HEAD_DIM; e++)
        store_out(out, AT(out, b, h, qtok - q_first, e), out_dtype, acc[e] * inv);
    store_lse(lse, lse_off, lse_s0, lse_s1, lse_s2, lse_s3, b, h, qtok - q_first, m, l);
}
