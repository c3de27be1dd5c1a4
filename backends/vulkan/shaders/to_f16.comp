#version 450
// Copies a bf16 or f32 tensor (binding 0, strided) to contiguous f16
// [B][H][rows][D] (binding 7), two elements per invocation, rounding to
// nearest even: the matrix kernels then read f16 rows. bf16 values inside
// f16's normal range convert exactly; larger ones become inf.
// SPLIT (f32 inputs): x 2^e as hi = f16(x 2^e) and lo = f16(x 2^e - hi) in
// binding 7 and binding 8, e from the tensor's largest |x| (absmax.comp,
// slot P.selector of binding 10).
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, set = 0, binding = 7) writeonly buffer Dst { uint dst[]; };
layout(std430, set = 0, binding = 8) writeonly buffer DstLo { uint dst_lo[]; };
layout(std430, set = 0, binding = 10) readonly buffer Absmax { uint absmax_[]; };
layout(constant_id = 1) const uint SPLIT = 0u;

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
    float x0 = load_src(s), x1 = load_src(s + P.str[0].w);
    if (SPLIT != 0u) {
        float sc = exp2(float(split_exp(absmax_[P.selector])));
        x0 *= sc;
        x1 *= sc;
        uint h0 = f32_to_f16(x0), h1 = f32_to_f16(x1);
        dst[w] = h0 | (h1 << 16);
        dst_lo[w] = f32_to_f16(x0 - f16_to_f32(h0)) | (f32_to_f16(x1 - f16_to_f32(h1)) << 16);
        return;
    }
    dst[w] = f32_to_f16(x0) | (f32_to_f16(x1) << 16);
}
