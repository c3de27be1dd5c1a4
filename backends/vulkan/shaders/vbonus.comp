#version 450
// Value bonus vb[bh * n + J] of one KV head per workgroup (section 2):
// STEM z-scores the log group maxima over the Gv = floor(N / S) groups made
// of real tokens; STEM_PAPER takes log of the block max; otherwise 0.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 9) readonly buffer Gmax { float gmax[]; };
layout(std430, set = 0, binding = 10) writeonly buffer Vb { float vb[]; };
layout(std430, set = 0, binding = 3) readonly buffer Vin { float vin[]; };   // FLAG_VSTATS_IN
layout(std430, set = 0, binding = 4) writeonly buffer Vout { float vout[]; }; // FLAG_VSTATS_OUT

shared float red[256];

float reduce_sum(float x)
{
    uint tid = gl_LocalInvocationID.x;
    red[tid] = x;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1) {
        if (tid < s)
            red[tid] += red[tid + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main()
{
    uint bh = wg_id(), tid = gl_LocalInvocationID.x;
    uint N = P.n_keys, S = P.stride, G = P.group, n = P.n_blocks;
    uint nG = n * G;
    float beta = P.beta;
    if ((P.flags & FLAG_BONUS) == 0u) {
        for (uint J = tid; J < n; J += 256u)
            vb[bh * n + J] = 0.0;
        return;
    }
    if (P.selector == SEL_PAPER) {
        for (uint J = tid; J < n; J += 256u) {
            float mx = 0.0;
            for (uint a = 0u; a < G; a++)
                mx = max(mx, gmax[bh * nG + J * G + a]);
            vb[bh * n + J] = beta * max(log(mx + 1e-6), 0.0);
        }
        return;
    }
    uint gv = N / S;
    float s = 0.0;
    for (uint gi = tid; gi < gv; gi += 256u)
        s += log(gmax[bh * nG + gi] + 1e-6);
    float tot = reduce_sum(s); // every invocation reaches the barriers
    float mean = gv > 0u ? tot / float(gv) : 0.0;
    s = 0.0;
    for (uint gi = tid; gi < gv; gi += 256u) {
        float dv = log(gmax[bh * nG + gi] + 1e-6) - mean;
        s += dv * dv;
    }
    float ss = reduce_sum(s);
    float sd = gv > 1u ? sqrt(ss / float(gv - 1u)) : 0.0;
    // (b, KV head) of this workgroup: heads holds Hkv here.
    uint b = bh / P.heads, kh = bh % P.heads;
    bool provided = (P.flags & FLAG_VSTATS_IN) != 0u;
    if (provided) {
        mean = vin[elem(3u, P.off0.w, b, kh, 0u, 0u)];
        sd = vin[elem(3u, P.off0.w, b, kh, 0u, 1u)];
    }
    if ((P.flags & FLAG_VSTATS_OUT) != 0u && tid == 0u) {
        vout[elem(4u, P.off1.x, b, kh, 0u, 0u)] = mean;
        vout[elem(4u, P.off1.x, b, kh, 0u, 1u)] = sd;
    }
    for (uint J = tid; J < n; J += 256u) {
        float acc = 0.0;
        if (gv > 0u || provided)
            for (uint a = 0u; a < G; a++) {
                float z = (log(gmax[bh * nG + J * G + a] + 1e-6) - mean) / (sd + 1e-6);
                acc += beta * max(z, 0.0);
            }
        vb[bh * n + J] = acc / float(G);
    }
}
