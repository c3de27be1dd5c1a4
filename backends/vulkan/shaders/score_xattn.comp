#version 450
// XAttention block mass (section 3): one workgroup per (head, block row I).
// For each real strided row m of the block, the logits of every causal
// strided column are computed three times (max, sum, mass) instead of being
// stored: XAttention is the comparison selector, not the fast path.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Qb { uint qbuf[]; };
layout(std430, set = 0, binding = 1) readonly buffer Kb { uint kbuf[]; };
layout(std430, set = 0, binding = 3) buffer Scores { float scores[]; };

DEFINE_LOAD(load_q, qbuf)
DEFINE_LOAD(load_k, kbuf)

shared float red[256];

float reduce(float x, bool is_max)
{
    uint tid = gl_LocalInvocationID.x;
    red[tid] = x;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1) {
        if (tid < s)
            red[tid] = is_max ? max(red[tid], red[tid + s]) : red[tid] + red[tid + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

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
    for (uint J = tid; J < n; J += 256u)
        scores[elem(3u, P.off0.w, gb, gh, I, J)] = 0.0;
    barrier();
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    for (uint r = 0u; r < G; r++) {
        uint m = I * G + r;
        if (m * S >= N)
            break;
        float mx = NEG_INF;
        for (uint J = tid; J <= I; J += 256u)
            for (uint a = 0u; a < G && J * G + a <= m; a++)
                mx = max(mx, logit(m, J * G + a));
        mx = reduce(mx, true);
        float tot = 0.0;
        for (uint J = tid; J <= I; J += 256u)
            for (uint a = 0u; a < G && J * G + a <= m; a++)
                tot += exp2(logit(m, J * G + a) - mx);
        tot = reduce(tot, false);
        if (tot > 0.0)
            for (uint J = tid; J <= I; J += 256u) {
                float part = 0.0;
                for (uint a = 0u; a < G && J * G + a <= m; a++)
                    part += exp2(logit(m, J * G + a) - mx);
                scores[elem(3u, P.off0.w, gb, gh, I, J)] += part / tot;
            }
    }
}
