#version 450
// Block scores from phase sums (section 3): one 16x16 tile of
// L[r][J] = coef * dot(Qflat[r], Kflat[J]) + vb[J] (J <= I = row0 + r), -inf
// above; rows r of the call (P.n_rows), n key blocks.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, set = 0, binding = 3) writeonly buffer Scores { float scores[]; };
layout(std430, set = 0, binding = 7) readonly buffer Qf { float qflat[]; };
layout(std430, set = 0, binding = 8) readonly buffer Kf { float kflat[]; };
layout(std430, set = 0, binding = 10) readonly buffer Vb { float vb[]; };

shared float As[16][17];
shared float Bs[16][17];

void main()
{
    uint id = wg_id();
    uint n = P.n_blocks, tn = (n + 15u) / 16u, nr = P.n_rows, tr = (nr + 15u) / 16u;
    uint row0 = P.row0;
    if (id >= P.items)
        return;
    uint tj = id % tn, ti = (id / tn) % tr, bh = id / (tn * tr);
    uint Hq = P.heads, Hkv = P.hkv, g = P.gqa;
    uint b = bh / Hq, h = bh % Hq, kv = b * Hkv + h / g;
    uint W = P.stride * P.head_dim;
    uint lx = gl_LocalInvocationID.x, ly = gl_LocalInvocationID.y;
    uint r = ti * 16u + ly, I = row0 + r, J = tj * 16u + lx;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    if (tj * 16u > row0 + ti * 16u + 15u) { // whole tile above the diagonal
        if (r < nr && J < n)
            scores[elem(3u, P.off0.w, b, h, r, J)] = NEG_INF;
        return;
    }
    float acc = 0.0;
    uint arow = bh * nr + r, brow = kv * n + tj * 16u + ly;
    bool aok = r < nr, bok = tj * 16u + ly < n;
    for (uint k0 = 0u; k0 < W; k0 += 16u) {
        uint kk = k0 + lx;
        As[ly][lx] = aok && kk < W ? qflat[arow * W + kk] : 0.0;
        Bs[ly][lx] = bok && kk < W ? kflat[brow * W + kk] : 0.0;
        barrier();
        for (uint p = 0u; p < 16u; p++)
            acc += As[ly][p] * Bs[lx][p];
        barrier();
    }
    if (r < nr && J < n)
        scores[elem(3u, P.off0.w, b, h, r, J)] = J <= I ? acc * P.route + vb[kv * n + J] : NEG_INF;
}
