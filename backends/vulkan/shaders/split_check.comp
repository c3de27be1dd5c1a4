#version 450
// Check of the split f32 copies (STEM_VULKAN_CONVERT=split): rebuilds
// x = (hi + lo) 2^-e from to_f16.comp's hi (binding 7) and lo (binding 8)
// words and the tensor's absmax slot (binding 10) as contiguous f32 in
// binding 9, for the plain kernels; the conformance suite then checks the
// copies on any device.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 7) readonly buffer Hi { uint hi_[]; };
layout(std430, set = 0, binding = 8) readonly buffer Lo { uint lo_[]; };
layout(std430, set = 0, binding = 9) writeonly buffer Dst { float dst[]; };
layout(std430, set = 0, binding = 10) readonly buffer Absmax { uint absmax_[]; };

void main()
{
    uint w = wg_id() * 64u + gl_LocalInvocationID.x;
    if (w >= P.items)
        return;
    float back = exp2(float(-split_exp(absmax_[P.selector])));
    uint h = hi_[w], l = lo_[w];
    dst[2u * w] = (f16_to_f32(h & 0xffffu) + f16_to_f32(l & 0xffffu)) * back;
    dst[2u * w + 1u] = (f16_to_f32(h >> 16) + f16_to_f32(l >> 16)) * back;
}
