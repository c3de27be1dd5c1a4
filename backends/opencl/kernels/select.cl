/* Stage 2, per-row block selection (docs/semantics.md section 5). One
 * work-group of SEL_LS items per row (b, h, I). The row's scores sit in
 * local memory; each block's keep flag comes from its rank in the total
 * order (score descending, then block ascending), so the kept set is unique
 * and ties go to the lower block; a scan then writes the ascending list.
 * mode 0: top-k with sink and local blocks, 1: every causal block,
 * 2: XAttention threshold rule with blocks 0 and I forced, 3: the official
 * XAttention rule for rows from key block 0 (only I forced, lagged mass). */

/* y ranks before x (at J' vs J): larger score, then lower block. */
#define RANKS_BEFORE(y, jy, x, jx) ((y) > (x) || ((y) == (x) && (jy) < (jx)))

__kernel void select_rows(TENSOR_F32(scores), TENSOR_I32(index), TENSOR_I32(count),
                          __global const int *budget, int hq, int n, int mode, int sink,
                          int local_blocks, float tau, int row0)
{
    __local float w[SEL_CAP];
    __local uchar keep[SEL_CAP];
    __local int scan[SEL_LS];
    __local acc_t red[SEL_LS];
    const int lid = get_local_id(0);
    /* Row r of the call is the absolute query block I = row0 + r. */
    const int r = get_group_id(1), I = row0 + r, bh = get_group_id(2);
    const int b = bh / hq, h = bh % hq;
    const int len = I + 1;

    for (int J = lid; J < len; J += SEL_LS) {
        float x = scores[AT(scores, b, h, r, J)];
        if (mode >= 2 && isnan(x))
            x = 0.0f; /* never orders or counts */
        w[J] = x;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* XATTENTION's row mass; reduced by every item (no barrier under a branch). */
    acc_t s = 0;
    if (mode >= 2)
        for (int J = lid; J < len; J += SEL_LS)
            s += w[J];
    red[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    acc_t row_mass = 0;
    for (int t = 0; t < SEL_LS; t++)
        row_mass += red[t];

    const int all = mode == 1 || (mode == 0 && len <= budget[I]);
    if (all) {
        for (int J = lid; J < len; J += SEL_LS)
            keep[J] = 1;
    } else if (mode == 0) {
        const int k = budget[I];
        for (int J = lid; J < len; J += SEL_LS) {
            const float x = w[J];
            int kept = 0;
            if (isfinite(x)) { /* NaN and +-inf are never chosen */
                int rank = 0;
                for (int t = 0; t < len && rank < k; t++) {
                    const float y = w[t];
                    rank += isfinite(y) && RANKS_BEFORE(y, t, x, J);
                }
                kept = rank < k;
            }
            if (J < sink || J > I - local_blocks)
                kept = 1;
            keep[J] = (uchar)kept;
        }
    } else {
        /* XAttention: a candidate is kept iff the mass it is tested on is
         * still below tau * row mass. mode 2: candidates (0, I), tested on
         * the forced mass w[0] + w[I] plus the mass of those ranked before.
         * mode 3: candidates [0, I), the first always kept, the r-th (r >= 2)
         * tested on w[I] plus the mass of those ranked before it except the
         * one just before (the lowest of them); block 0 kept anyway. */
        const int diag_only = mode == 3;
        const acc_t target = (acc_t)tau * row_mass;
        const acc_t forced = diag_only || I == 0 ? (acc_t)w[I] : (acc_t)w[0] + (acc_t)w[I];
        const int first = diag_only ? 0 : 1;
        for (int J = lid; J < len; J += SEL_LS) {
            int kept = 1;
            if (J >= first && J < I) {
                const float x = w[J];
                acc_t before = 0;
                int nb = 0, last = -1; /* last: the candidate ranked just before J */
                for (int t = first; t < I; t++) {
                    const float y = w[t];
                    if (RANKS_BEFORE(y, t, x, J)) {
                        before += y;
                        nb++;
                        if (last < 0 || RANKS_BEFORE(w[last], last, y, t))
                            last = t;
                    }
                }
                if (diag_only && nb > 0)
                    before -= w[last];
                kept = diag_only && nb == 0 ? 0 < target : forced + before < target;
                kept |= J == 0;
            }
            keep[J] = (uchar)kept;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* Contiguous chunks per item, counted, scanned, written in order. */
    const int chunk = (len + SEL_LS - 1) / SEL_LS;
    const int lo = min(lid * chunk, len), hi = min(lo + chunk, len);
    int c = 0;
    for (int J = lo; J < hi; J++)
        c += keep[J];
    scan[lid] = c;
    barrier(CLK_LOCAL_MEM_FENCE);
    int base = 0, total = 0;
    for (int t = 0; t < SEL_LS; t++) {
        base += t < lid ? scan[t] : 0;
        total += scan[t];
    }
    for (int J = lo; J < hi; J++)
        if (keep[J])
            index[AT(index, b, h, r, base++)] = J;
    for (int p = total + lid; p < n; p += SEL_LS)
        index[AT(index, b, h, r, p)] = -1;
    if (lid == 0)
        count[AT(count, b, h, r, 0)] = total;
}
