#version 450
// Max of ||V[t]||_2 over each stride group of each KV head (tokens past N
// count as 0): gmax[bh * nG + gi], nG = n * G. One invocation per group.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 2) readonly buffer Vb { uint vbuf[]; };
layout(std430, set = 0, binding = 9) writeonly buffer Gmax { float gmax[]; };

DEFINE_LOAD(load_v, vbuf)

void main()
{
    uint gid = wg_id() * 64u + gl_LocalInvocationID.x;
    if (gid >= P.items)
        return;
    uint H = P.heads, N = P.n_keys, d = P.head_dim, S = P.stride;
    uint nG = P.n_blocks * P.group;
    uint gi = gid % nG, bh = gid / nG, b = bh / H, h = bh % H;
    float mx = 0.0;
    for (uint t = 0u; t < S; t++) {
        uint tok = gi * S + t;
        if (tok >= N)
            break;
        float ss = 0.0;
        for (uint e = 0u; e < d; e++) {
            float x = load_v(elem(2u, P.off0.z, b, h, tok, e));
            ss += x * x;
        }
        mx = max(mx, sqrt(ss));
    }
    gmax[gid] = mx;
}
