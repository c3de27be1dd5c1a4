/* Stage 1, block scores (docs/semantics.md sections 1-3).
 * STEM / STEM_PAPER / UNIFORM / DENSE: phase sums of Q and K per block
 * (phase_sum), V-norm group maxima (vgroup_max) and the value bonus per KV
 * head (value_bonus), then one causal GEMM Qflat . Kflat^T (score_gemm).
 * XATTENTION: strided softmax mass per block (xattn_score). */

/* out[(bh * n + blk) * W + seg * d + e] = sum_{a<G} x[p][e] over the
 * positions p = (row0 + blk)*B + a*S + t present in x: [x_first, n_tokens),
 * row p - x_first (queries of a chunk start at x_first = P; keys at 0);
 * seg = t (queries) or S-1-t (keys, reverse = 1); W = S * d. */
__kernel void phase_sum(TENSOR(x), int heads, int n_tokens, int n_blocks, int block, int stride,
                        int group, int reverse, __global float *out, long x_first, int row0)
{
    const int W = stride * HEAD_DIM;
    const int col = get_global_id(0), blk = get_global_id(1), bh = get_global_id(2);
    if (col >= W || blk >= n_blocks)
        return;
    const int seg = col / HEAD_DIM, e = col % HEAD_DIM;
    const int ph = reverse ? stride - 1 - seg : seg;
    const int b = bh / heads, h = bh % heads;
    float s = 0.0f;
    for (int a = 0; a < group; a++) {
        const long tok = (long)(row0 + blk) * block + (long)a * stride + ph;
        if (tok >= n_tokens)
            break;
        if (tok >= x_first)
            s += LOAD_IN(x, AT(x, b, h, tok - x_first, e));
    }
    out[((long)bh * n_blocks + blk) * W + col] = s;
}

/* gmax[bh * ng + gi] = max over the stride group gi of ||V[t]||_2 (t < N). */
__kernel void vgroup_max(TENSOR(v), int heads, int n_tokens, int stride, int ng,
                         __global float *gmax)
{
    const int gi = get_global_id(0), bh = get_global_id(2);
    if (gi >= ng)
        return;
    const int b = bh / heads, h = bh % heads;
    float mx = 0.0f;
    for (int t = 0; t < stride; t++) {
        const long tok = (long)gi * stride + t;
        if (tok >= n_tokens)
            break;
        acc_t ss = 0;
        for (int e = 0; e < HEAD_DIM; e++) {
            const float x = LOAD_IN(v, AT(v, b, h, tok, e));
            ss += (acc_t)x * x;
        }
        mx = fmax(mx, (float)sqrt(ss));
    }
    gmax[(long)bh * ng + gi] = mx;
}

/* Work-group sum of x over SEL_LS work-items (every item gets the total). */
inline acc_t group_sum(acc_t x, __local acc_t *red)
{
    const int lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    red[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = SEL_LS / 2; s > 0; s >>= 1) {
        if (lid < s)
            red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return red[0];
}

/* vb[bh * n + J] of one KV head (one work-group of SEL_LS items each).
 * mode 0: none (zeros), 1: STEM (z-scored log maxima), 2: STEM_PAPER.
 * STEM statistics: vin's (mean, sd) when vin_off >= 0 (PROVIDED), else over
 * the gv full groups; written to vout when vout_off >= 0. */
__kernel void value_bonus(__global const float *gmax, int ng, int n_blocks, int group, int gv,
                          int mode, float beta, __global float *vb, TENSOR_F32(vin),
                          TENSOR_F32(vout), int hkv)
{
    __local acc_t red[SEL_LS];
    const int lid = get_local_id(0), bh = get_group_id(2);
    const __global float *g = gmax + (long)bh * ng;
    __global float *out = vb + (long)bh * n_blocks;
    /* Every item reaches both reductions (no barrier under a branch). */
    acc_t s = 0;
    if (mode == 1)
        for (int i = lid; i < gv; i += SEL_LS)
            s += log((acc_t)g[i] + 1e-6);
    const acc_t mean = group_sum(s, red) / (gv > 0 ? gv : 1);
    s = 0;
    if (mode == 1)
        for (int i = lid; i < gv; i += SEL_LS) {
            const acc_t dv = log((acc_t)g[i] + 1e-6) - mean;
            s += dv * dv;
        }
    const acc_t ss = group_sum(s, red);
    acc_t sd = gv > 1 ? sqrt(ss / (gv - 1)) : 0, mu = gv > 0 ? mean : 0;
    const int provided = vin_off >= 0;
    if (provided) {
        mu = vin[AT(vin, bh / hkv, bh % hkv, 0, 0)];
        sd = vin[AT(vin, bh / hkv, bh % hkv, 0, 1)];
    }
    if (vout_off >= 0 && lid == 0) {
        vout[AT(vout, bh / hkv, bh % hkv, 0, 0)] = (float)mu;
        vout[AT(vout, bh / hkv, bh % hkv, 0, 1)] = (float)sd;
    }
    for (int J = lid; J < n_blocks; J += SEL_LS) {
        acc_t t = 0;
        if (mode == 2) {
            float mx = 0.0f;
            for (int a = 0; a < group; a++)
                mx = fmax(mx, g[J * group + a]);
            const acc_t lv = log((acc_t)mx + 1e-6);
            t = (acc_t)beta * (lv > 0 ? lv : 0);
        } else if (mode == 1 && (gv > 0 || provided)) {
            for (int a = 0; a < group; a++) {
                const acc_t z = (log((acc_t)g[J * group + a] + 1e-6) - mu) / (sd + 1e-6);
                t += (acc_t)beta * (z > 0 ? z : 0);
            }
            t /= group;
        }
        out[J] = (float)t;
    }
}

#define ST 16 /* score_gemm tile */

/* scores[b,h,r,J] = coef * dot(Qflat[r], Kflat[J]) + vb[J] for J <= I =
 * row0 + r, -inf above the diagonal (nr rows, n key blocks); 16 x 16
 * work-groups, tiles of both operands in local memory. */
__kernel void score_gemm(__global const float *qf, __global const float *kf,
                         __global const float *vb, TENSOR_F32(scores), int hq, int g, int hkv,
                         int n, int W, float coef, int nr, int row0)
{
    __local float As[ST][ST + 1], Bs[ST][ST + 1];
    const int lx = get_local_id(0), ly = get_local_id(1);
    const int tj = get_group_id(0), ti = get_group_id(1), bh = get_group_id(2);
    const int r = ti * ST + ly, I = row0 + r, J = tj * ST + lx;
    const int b = bh / hq, h = bh % hq;
    const long kvh = (long)b * hkv + h / g;
    if (tj * ST > row0 + ti * ST + ST - 1) { /* the whole tile lies above the diagonal */
        if (r < nr && J < n)
            scores[AT(scores, b, h, r, J)] = -INFINITY;
        return;
    }
    const __global float *qrow = qf + ((long)bh * nr + r) * W;
    const __global float *krow = kf + (kvh * n + tj * ST + ly) * W;
    const int krow_ok = tj * ST + ly < n;
    float acc = 0.0f;
    for (int w0 = 0; w0 < W; w0 += ST) {
        const int w = w0 + lx;
        As[ly][lx] = r < nr && w < W ? qrow[w] : 0.0f;
        Bs[ly][lx] = krow_ok && w < W ? krow[w] : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int t = 0; t < ST; t++)
            acc += As[ly][t] * Bs[lx][t];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (r < nr && J < n)
        scores[AT(scores, b, h, r, J)] = J <= I ? acc * coef + vb[kvh * n + J] : -INFINITY;
}

/* Strided logit A[m][c] * qcoef (log2 units): the S phases of query row m
 * reversed against key column c; tokens past N are zero rows. */
inline float xattn_logit(TENSOR(q), TENSOR(k), int b, int h, int kh, int n_tokens, int stride,
                         long m, long c, float qcoef)
{
    float s = 0.0f;
    for (int t = 0; t < stride; t++) {
        const long qt = m * stride + stride - 1 - t, kt = c * stride + t;
        if (qt >= n_tokens || kt >= n_tokens)
            continue;
        for (int e = 0; e < HEAD_DIM; e++)
            s += (LOAD_IN(q, AT(q, b, h, qt, e)) * qcoef) * LOAD_IN(k, AT(k, b, kh, kt, e));
    }
    return s;
}

/* XATTENTION row I of (b, h): for each real strided row m of the block, a
 * causal softmax over the strided columns and its mass per key block. One
 * work-group of SEL_LS items per row; item owns blocks J = lid + t*SEL_LS. */
__kernel void xattn_score(TENSOR(q), TENSOR(k), TENSOR_F32(scores), int hq, int g, int n_tokens,
                          int n, int stride, int group, float qcoef)
{
    __local float red_m[SEL_LS], red_s[SEL_LS];
    const int lid = get_local_id(0);
    const int I = n - 1 - (int)get_group_id(1), bh = get_group_id(2);
    const int b = bh / hq, h = bh % hq, kh = h / g;
    for (int J = lid; J < n; J += SEL_LS)
        scores[AT(scores, b, h, I, J)] = 0.0f;
    for (int a = 0; a < group; a++) {
        const long m = (long)I * group + a;
        if (m * stride >= n_tokens)
            break; /* only real strided rows contribute */
        /* Online max and sum of this item's columns c <= m. */
        float mx = -INFINITY, sm = 0.0f;
        for (int J = lid; J <= I; J += SEL_LS)
            for (int cb = 0; cb < group; cb++) {
                const long c = (long)J * group + cb;
                if (c > m)
                    break;
                const float x = xattn_logit(q, q_off, q_s0, q_s1, q_s2, q_s3, k, k_off, k_s0, k_s1,
                                            k_s2, k_s3, b, h, kh, n_tokens, stride, m, c, qcoef);
                const float nm = fmax(mx, x);
                sm = sm * exp2(mx - nm) + exp2(x - nm);
                mx = nm;
            }
        barrier(CLK_LOCAL_MEM_FENCE);
        red_m[lid] = mx;
        red_s[lid] = sm;
        barrier(CLK_LOCAL_MEM_FENCE);
        float M = -INFINITY;
        for (int t = 0; t < SEL_LS; t++)
            M = fmax(M, red_m[t]);
        float tot = 0.0f;
        for (int t = 0; t < SEL_LS; t++)
            if (red_m[t] != -INFINITY)
                tot += red_s[t] * exp2(red_m[t] - M);
        if (!(tot > 0.0f))
            continue;
        for (int J = lid; J <= I; J += SEL_LS) {
            float part = 0.0f;
            for (int cb = 0; cb < group; cb++) {
                const long c = (long)J * group + cb;
                if (c > m)
                    break;
                part += exp2(xattn_logit(q, q_off, q_s0, q_s1, q_s2, q_s3, k, k_off, k_s0, k_s1,
                                         k_s2, k_s3, b, h, kh, n_tokens, stride, m, c, qcoef) -
                             M);
            }
            scores[AT(scores, b, h, I, J)] += part / tot;
        }
    }
}
