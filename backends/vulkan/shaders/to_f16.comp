#version 450
// Copies a bf16 or f32 tensor (binding 0, strided) to contiguous f16
// [B][H][rows][D] (binding 7), two elements per invocation, rounding to
// nearest even: the matrix kernels then read f16 rows. bf16 values inside
// f16's normal range convert exactly; larger ones become inf.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, set = 0, binding = 7) writeonly buffer Dst { uint dst[]; };

DEFINE_LOAD(load_src, src)

void main()
{
    uint w = wg_id() * 64u + gl_LocalInvocationID.x; // output word: elements 2w, 2w + 1
    if (w >= P.items)
        return;
    uint D = P.head_dim, R = P.n_keys, H = P.heads; // D is even (head_dim % 8 == 0)
    uint e = 2u * w;
    uint i = e % D, t = (e / D) % R, bh = e / (D * R);
    uint s = elem(0u, P.off0.x, bh / H, bh % H, t, i);
    float lo = load_src(s), hi = load_src(s + P.str[0].w);
    dst[w] = f32_to_f16(lo) | (f32_to_f16(hi) << 16);
}
