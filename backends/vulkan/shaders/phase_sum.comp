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
    if (gid >= P.items)
        return;
    uint H = P.heads, N = P.n_keys, d = P.head_dim, B = P.block_size, S = P.stride;
    bool keys = (P.flags & FLAG_REVERSE) != 0u;
    uint G = P.group, n = keys ? P.n_blocks : P.n_rows, W = S * d;
    uint first = keys ? 0u : P.q_offset, row0 = keys ? 0u : P.row0;
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
