#version 450
// Phase sums of one tensor (Q or K; docs/semantics.md section 1):
// flat[(bh * n + blk) * W + seg * d + e] = sum_{a<G} x[blk*B + a*S + t][e],
// seg = t for queries, S-1-t for keys (FLAG_REVERSE). One invocation per output.
// Queries of a chunked call: blocks row0 + blk over the positions [P, N)
// present in q (row p - P); keys: every block from 0.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, set = 0, binding = 7) writeonly buffer Flat { float flat_[]; };

DEFINE_LOAD(load_src, src)

void main()
{
    uint gid = wg_id() * 64u + gl_LocalInvocationID.x;
    if (gid >= P.dims2.z)
        return;
    uint H = P.dims0.y, N = P.dims0.w, d = P.dims1.x, B = P.dims1.y, S = P.dims1.z;
    bool keys = (P.dims3.w & FLAG_REVERSE) != 0u;
    uint G = P.dims1.w, n = keys ? P.dims2.x : P.geom.z, W = S * d;
    uint first = keys ? 0u : P.geom.x, row0 = keys ? 0u : P.geom.y;
    uint w = gid % W, blk = (gid / W) % n, bh = gid / (W * n);
    uint b = bh / H, h = bh % H, seg = w / d, e = w % d;
    uint t = keys ? S - 1u - seg : seg;
    float acc = 0.0;
    for (uint a = 0u; a < G; a++) {
        uint tok = (row0 + blk) * B + a * S + t;
        if (tok >= N)
            break;
        if (tok >= first)
            acc += load_src(elem(0u, P.off0.x, b, h, tok - first, e));
    }
    flat_[gid] = acc;
}
