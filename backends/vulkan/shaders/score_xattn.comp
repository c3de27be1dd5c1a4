#version 450
// XAttention block mass (section 3): one workgroup per (head, block row I).
// Each real strided row m of the block gets its max and normaliser from
// one invocation, then each key block its mass from another; logits are
// recomputed (three times in all) instead of stored: XAttention is the
// comparison selector, not the fast path. Two dispatches: rows, then blocks.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Qb { uint qbuf[]; };
layout(std430, set = 0, binding = 1) readonly buffer Kb { uint kbuf[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Scores { float scores[]; };

DEFINE_LOAD(load_q, qbuf)
DEFINE_LOAD(load_k, kbuf)

// Per strided row: max and normaliser, written by the first dispatch and read
// by the second (a dispatch boundary, not a workgroup barrier, orders them).
layout(std430, set = 0, binding = 9) buffer Rows { float rows[]; };

uint gb, gh, gkh;

// log2-scaled logit of strided query row m against strided key column c.
float logit(uint m, uint c)
{
    uint N = P.dims0.w, d = P.dims1.x, S = P.dims1.z;
    float acc = 0.0;
    for (uint t = 0u; t < S; t++) {
        uint qt = m * S + S - 1u - t, kt = c * S + t;
        if (qt >= N || kt >= N)
            continue;
        uint qi = elem(0u, P.off0.x, gb, gh, qt, 0u), ki = elem(1u, P.off0.y, gb, gkh, kt, 0u);
        for (uint e = 0u; e < d; e++)
            acc += load_q(qi + e * P.str[0].w) * load_k(ki + e * P.str[1].w);
    }
    return acc * P.f0.w;
}

void main()
{
    uint id = wg_id(), tid = gl_LocalInvocationID.x;
    uint n = P.dims2.x, Hq = P.dims0.y, N = P.dims0.w, S = P.dims1.z, G = P.dims1.w;
    uint I = id % n, bh = id / n;
    gb = bh / Hq;
    gh = bh % Hq;
    gkh = gh / P.dims2.w;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    // 1: invocation r finds the max and the normaliser of strided row I*G + r.
    if ((P.dims3.w & FLAG_PHASE2) == 0u) {
        if (tid >= G)
            return;
        uint m = I * G + tid;
        float mx = NEG_INF, tot = 0.0;
        if (m * S < N) {
            for (uint c = 0u; c <= m; c++)
                mx = max(mx, logit(m, c));
            for (uint c = 0u; c <= m; c++)
                tot += exp2(logit(m, c) - mx);
        }
        rows[(id * G + tid) * 2u] = mx;
        rows[(id * G + tid) * 2u + 1u] = tot;
        return;
    }
    // 2: invocation per key block J sums its probability mass over the rows.
    for (uint J = tid; J < n; J += 256u) {
        float mass = 0.0;
        if (J <= I)
            for (uint r = 0u; r < G; r++) {
                uint m = I * G + r;
                if (m * S >= N)
                    break;
                float rmx = rows[(id * G + r) * 2u], rtot = rows[(id * G + r) * 2u + 1u];
                if (rtot <= 0.0)
                    continue;
                float part = 0.0;
                for (uint a = 0u; a < G && J * G + a <= m; a++)
                    part += exp2(logit(m, J * G + a) - rmx);
                mass += part / rtot;
            }
        scores[elem(3u, P.off0.w, gb, gh, I, J)] = mass;
    }
}
