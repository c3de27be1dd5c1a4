#version 450
// Block-sparse causal attention, one query row per invocation (section 6).
// For CPU implementations (lavapipe): there the invocations of a SIMD
// group are different rows reading the same key, so every K and V read is
// one broadcast load straight from the tensor (no shared-memory staging, no
// barrier: llvmpipe turns barriers into coroutines whose frames grow with
// everything live across them, q[] and o[] here, and its compile time with
// them). q, o and the step's logits are per-invocation arrays and every loop
// over them is unrolled, so they stay in registers.
//
// Loop budget. llvmpipe counts the iterations of every non-unrolled loop of
// an invocation in one counter and silently ends all loops at 65535. Here
// the only such loop is the one over steps of KT keys of the listed blocks:
// count * B / KT <= n * B / KT iterations per invocation; everything inside
// it is unrolled. Loading q and storing o take D iterations each. KT is 1 (vk_attention_tile): on lavapipe every buffer load
// is a per-lane loop of branches in the JIT code, and compile time grows far
// faster than the number of loads, so dense rows of up to about 65K tokens
// is the range; vk_plan_check declines longer plans there (vk_budget.c).
// Same bindings and results as attention.comp.
#extension GL_GOOGLE_include_directive : enable
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(constant_id = 1) const uint QT = 32u;   // query rows (= invocations) per workgroup
layout(constant_id = 2) const uint KT = 1u;    // keys per step (unrolled)
layout(constant_id = 4) const uint D = 128u;   // head_dim
layout(local_size_x_id = 5) in;                // QT

layout(std430, set = 0, binding = 0) readonly buffer Qb { uint qbuf[]; };
layout(std430, set = 0, binding = 1) readonly buffer Kb { uint kbuf[]; };
layout(std430, set = 0, binding = 2) readonly buffer Vb { uint vbuf[]; };
layout(std430, set = 0, binding = 4) readonly buffer Index { int index_[]; };
layout(std430, set = 0, binding = 5) readonly buffer Count { int count_[]; };
layout(std430, set = 0, binding = 6) buffer Out { uint obuf[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Lse { float lse[]; }; // FLAG_LSE

DEFINE_LOAD(load_q, qbuf)
DEFINE_LOAD(load_k, kbuf)
DEFINE_LOAD(load_v, vbuf)

void store_out(uint i, float v)
{
    uint od = P.out_dtype;
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
    if (id >= P.items)
        return;
    uint Hq = P.heads, N = P.n_keys, B = P.block_size, n = P.n_blocks;
    uint rt_count = B / QT;
    // Row `row` of the call is the absolute block I; queries are positions
    // [P, N), position p at row p - P of q and out.
    uint nr = P.n_rows, first = P.q_offset;
    uint rt = id % rt_count, row = (id / rt_count) % nr, bh = id / (rt_count * nr);
    uint I = P.row0 + row;
    uint b = bh / Hq, h = bh % Hq, kh = h / P.gqa;
    uint q0 = I * B + rt * QT, qi = q0 + tid;
    bool mine = qi < N && qi >= first;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    uint ks = P.str[1].w, vs = P.str[2].w;

    float q[D], o[D], s[KT];
    uint qbase = elem(0u, P.off0.x, b, h, mine ? qi - first : 0u, 0u);
    float qmul = mine ? P.qmul : 0.0;
    // Not unrolled (D iterations): one load site instead of D keeps the JIT
    // code small; q[] is then a stack array, read at constant indices below.
    for (uint c = 0u; c < D; c++)
        q[c] = load_q(qbase + c * P.str[0].w) * qmul;
    [[unroll]] for (uint c = 0u; c < D; c++)
        o[c] = 0.0;
    float m = NEG_INF, l = 0.0;

    int cnt = clamp(count_[elem(5u, P.off1.y, b, h, row, 0u)], 0, int(n));
    uint spb = B / KT, steps = uint(cnt) * spb;
    int prev = -1, J = 0;
    bool listed = false;
    for (uint t = 0u; t < steps; t++) {
        uint p = t / spb, kc = (t - p * spb) * KT;
        if (kc == 0u) { // first step of list entry p; invalid entries are skipped
            J = index_[elem(4u, P.off1.x, b, h, row, p)];
            listed = J > prev && J <= int(I);
            if (listed)
                prev = J;
        }
        uint k0 = uint(J) * B + kc;
        if (!listed || k0 >= N || k0 > qi) // k0 > qi: every key of the step is masked
            continue;
        float mx = NEG_INF;
        bool nan_seen = false; // max() may drop NaN: a NaN logit must still poison the row
        [[unroll]] for (uint j = 0u; j < KT; j++) {
            uint tok = k0 + j;
            uint kb = elem(1u, P.off0.y, b, kh, min(tok, N - 1u), 0u);
            float acc = 0.0;
            [[unroll]] for (uint c = 0u; c < D; c++)
                acc += q[c] * load_k(kb + c * ks);
            s[j] = tok < N && tok <= qi ? acc : NEG_INF;
            nan_seen = nan_seen || isnan(s[j]);
            mx = max(mx, s[j]);
        }
        if (nan_seen)
            l = uintBitsToFloat(0x7fc00000u);
        float m_new = max(m, mx);
        if (m_new != NEG_INF) {
            float alpha = exp2(m - m_new); // 0 on the first visible step
            float sum = 0.0;
            [[unroll]] for (uint c = 0u; c < D; c++)
                o[c] *= alpha;
            [[unroll]] for (uint j = 0u; j < KT; j++) {
                float pj = exp2(s[j] - m_new);
                sum += pj;
                uint vb = elem(2u, P.off0.z, b, kh, min(k0 + j, N - 1u), 0u);
                [[unroll]] for (uint c = 0u; c < D; c++)
                    o[c] += pj * load_v(vb + c * vs);
            }
            l = l * alpha + sum;
            m = m_new;
        }
    }
    if (mine) {
        float inv = l > 0.0 ? 1.0 / l : (isnan(l) ? l : 0.0); // no visible key: 0
        uint obase = elem(6u, P.off1.z, b, h, qi - first, 0u);
        for (uint c = 0u; c < D; c++) // not unrolled either: D iterations
            store_out(obase + c * P.str[6].w, o[c] * inv);
        if ((P.flags & FLAG_LSE) != 0u) // m, l in log2 units
            lse[elem(3u, P.off0.w, b, h, qi - first, 0u)] =
                l > 0.0 ? (m + log2(l)) * 0.69314718055994531 : (isnan(l) ? l : NEG_INF);
    }
}
