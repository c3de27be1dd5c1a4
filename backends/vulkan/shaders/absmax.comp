#version 450
// Largest |x| of an f32 tensor (binding 0, strided [B][H][rows][D]) as f32
// bits, atomically into absmax[P.selector] of binding 10 (zeroed before):
// the scale of its split f16 copies (to_f16.comp). 4096 elements per
// workgroup, reduced in shared memory, one atomic per workgroup. NaN
// counts as the largest (its bits are above inf's).
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, set = 0, binding = 10) buffer Absmax { uint absmax_[]; };

DEFINE_LOAD(load_src, src)

shared uint red[256];

void main()
{
    uint D = P.head_dim, R = P.n_keys, H = P.heads, total = P.items;
    uint base = wg_id() * 4096u, m = 0u;
    for (uint k = 0u; k < 16u; k++) {
        uint e = base + k * 256u + gl_LocalInvocationID.x;
        if (e < total) {
            uint i = e % D, t = (e / D) % R, bh = e / (D * R);
            m = max(m, floatBitsToUint(load_src(elem(0u, P.off0.x, bh / H, bh % H, t, i))) &
                           0x7fffffffu);
        }
    }
    red[gl_LocalInvocationID.x] = m;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1) {
        if (gl_LocalInvocationID.x < s)
            red[gl_LocalInvocationID.x] = max(red[gl_LocalInvocationID.x],
                                              red[gl_LocalInvocationID.x + s]);
        barrier();
    }
    if (gl_LocalInvocationID.x == 0u)
        atomicMax(absmax_[P.selector], red[0]);
}
