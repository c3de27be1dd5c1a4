#version 450
// Block-sparse causal attention, one query row per invocation (section 6).
// For CPU implementations (lavapipe): there the invocations of a SIMD
// group are different rows reading the same key, so every K and V read is
// one broadcast load instead of a per-lane gather, and q, o and the tile's
// logits are per-invocation arrays (every loop over q and o is unrolled, so
// they stay in registers instead of per-lane scratch memory). Same bindings and results as attention.comp.
#extension GL_GOOGLE_include_directive : enable
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(constant_id = 1) const uint QT = 32u;   // query rows (= invocations) per workgroup
layout(constant_id = 2) const uint KT = 16u;   // keys per tile
layout(constant_id = 4) const uint D = 128u;   // head_dim
layout(local_size_x_id = 5) in;                // QT

layout(std430, set = 0, binding = 0) readonly buffer Qb { uint qbuf[]; };
layout(std430, set = 0, binding = 1) readonly buffer Kb { uint kbuf[]; };
layout(std430, set = 0, binding = 2) readonly buffer Vb { uint vbuf[]; };
layout(std430, set = 0, binding = 4) readonly buffer Index { int index_[]; };
layout(std430, set = 0, binding = 5) readonly buffer Count { int count_[]; };
layout(std430, set = 0, binding = 6) buffer Out { uint obuf[]; };

DEFINE_LOAD(load_q, qbuf)
DEFINE_LOAD(load_k, kbuf)
DEFINE_LOAD(load_v, vbuf)

shared float Ks[KT * D];
shared float Vs[KT * D];

void store_out(uint i, float v)
{
    uint od = P.dims2.y;
    if (od == 0u) {
        obuf[i] = floatBitsToUint(v);
        return;
    }
    uint h = od == 1u ? f32_to_f16(v) : f32_to_bf16(v);
    uint sh = (i & 1u) * 16u;
    atomicAnd(obuf[i >> 1], ~(0xffffu << sh));
    atomicOr(obuf[i >> 1], h << sh);
}

void main()
{
    uint id = wg_id(), tid = gl_LocalInvocationID.x;
    if (id >= P.dims2.z)
        return;
    uint Hq = P.dims0.y, N = P.dims0.w, B = P.dims1.y, n = P.dims2.x;
    uint rt_count = B / QT;
    uint rt = id % rt_count, I = (id / rt_count) % n, bh = id / (rt_count * n);
    uint b = bh / Hq, h = bh % Hq, kh = h / P.dims2.w;
    uint q0 = I * B + rt * QT, qi = q0 + tid;
    const float NEG_INF = uintBitsToFloat(0xff800000u);

    float q[D], o[D], s[KT];
    uint qbase = elem(0u, P.off0.x, b, h, min(qi, N - 1u), 0u);
    float qmul = qi < N ? P.f0.w : 0.0;
    [[unroll]] for (uint c = 0u; c < D; c++) {
        q[c] = load_q(qbase + c * P.str[0].w) * qmul;
        o[c] = 0.0;
    }
    float m = NEG_INF, l = 0.0;

    int cnt = clamp(count_[elem(5u, P.off1.y, b, h, I, 0u)], 0, int(n));
    int prev = -1;
    for (int p = 0; p < cnt; p++) {
        int J = index_[elem(4u, P.off1.x, b, h, I, uint(p))];
        if (J <= prev || J > int(I)) // invalid entries are skipped
            continue;
        prev = J;
        for (uint kc = 0u; kc < B; kc += KT) {
            uint k0 = uint(J) * B + kc;
            if (k0 >= N || k0 > q0 + QT - 1u)
                break;
            barrier();
            for (uint e = tid; e < KT * D; e += QT) {
                uint jj = e / D, c = e % D, tok = k0 + jj;
                bool ok = tok < N;
                Ks[e] = ok ? load_k(elem(1u, P.off0.y, b, kh, tok, c)) : 0.0;
                Vs[e] = ok ? load_v(elem(2u, P.off0.z, b, kh, tok, c)) : 0.0;
            }
            barrier();
            float mx = NEG_INF;
            for (uint j = 0u; j < KT; j++) {
                float acc = 0.0;
                [[unroll]] for (uint c = 0u; c < D; c++)
                    acc += q[c] * Ks[j * D + c];
                uint tok = k0 + j;
                s[j] = tok < N && tok <= qi ? acc : NEG_INF;
                mx = max(mx, s[j]);
            }
            float m_new = max(m, mx);
            if (m_new != NEG_INF) {
                float alpha = exp2(m - m_new); // 0 on the first visible tile
                float sum = 0.0;
                [[unroll]] for (uint c = 0u; c < D; c++)
                    o[c] *= alpha;
                for (uint j = 0u; j < KT; j++) {
                    float pj = exp2(s[j] - m_new);
                    sum += pj;
                    [[unroll]] for (uint c = 0u; c < D; c++)
                        o[c] += pj * Vs[j * D + c];
                }
                l = l * alpha + sum;
                m = m_new;
            }
        }
    }
    if (qi < N) {
        float inv = l > 0.0 ? 1.0 / l : 0.0; // no visible key: 0
        uint obase = elem(6u, P.off1.z, b, h, qi, 0u);
        [[unroll]] for (uint c = 0u; c < D; c++)
            store_out(obase + c * P.str[6].w, o[c] * inv);
    }
}
