#version 450
// Block-sparse causal attention, FlashAttention-2 style (section 6), plain
// path. One workgroup = QT query rows of one (head, block row I); LANES
// invocations per row. Per key tile of KT keys from the row's listed
// blocks: K and V tiles in shared memory, S = Q K^T (each lane a few keys),
// online softmax in log2 units, O += P V (each lane D / LANES columns).
// Only the diagonal block needs the per-token mask.
#extension GL_GOOGLE_include_directive : enable
#include "common.glsl"

layout(constant_id = 1) const uint QT = 16u;    // query rows per workgroup
layout(constant_id = 2) const uint KT = 16u;    // keys per tile
layout(constant_id = 3) const uint LANES = 8u;  // invocations per row
layout(constant_id = 4) const uint D = 128u;    // head_dim
layout(local_size_x_id = 5) in;                 // QT * LANES

layout(std430, set = 0, binding = 0) readonly buffer Qb { uint qbuf[]; };
layout(std430, set = 0, binding = 1) readonly buffer Kb { uint kbuf[]; };
layout(std430, set = 0, binding = 2) readonly buffer Vb { uint vbuf[]; };
layout(std430, set = 0, binding = 4) readonly buffer Index { int index_[]; };
layout(std430, set = 0, binding = 5) readonly buffer Count { int count_[]; };
layout(std430, set = 0, binding = 6) buffer Out { uint obuf[]; };

DEFINE_LOAD(load_q, qbuf)
DEFINE_LOAD(load_k, kbuf)
DEFINE_LOAD(load_v, vbuf)

const uint KSTR = D + 1u; // padded K rows: lanes read different keys, same column
const uint DPL = D / LANES;

shared float Qs[QT * D];
shared float Ks[KT * KSTR];
shared float Vs[KT * D];
shared float Ps[QT * KT];

layout(std430, set = 0, binding = 3) writeonly buffer Lse { float lse[]; }; // FLAG_LSE

void store_out(uint i, float v)
{
    uint od = P.out_dtype;
    if (od == 0u) {
        obuf[i] = floatBitsToUint(v);
        return;
    }
    // 16-bit output: update only our half of the word (a neighbour may own the other).
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
    uint r = tid / LANES, lane = tid % LANES;
    uint q0 = I * B + rt * QT, qi = q0 + r;
    const float NEG_INF = uintBitsToFloat(0xff800000u);

    for (uint e = tid; e < QT * D; e += QT * LANES) {
        uint rr = e / D, c = e % D, tok = q0 + rr;
        Qs[e] = tok < N && tok >= first
                    ? load_q(elem(0u, P.off0.x, b, h, tok - first, c)) * P.qmul
                    : 0.0;
    }
    float o[DPL];
    for (uint t = 0u; t < DPL; t++)
        o[t] = 0.0;
    float m = NEG_INF, l = 0.0;

    int cnt = q0 + QT > first ? clamp(count_[elem(5u, P.off1.y, b, h, row, 0u)], 0, int(n)) : 0;
    int prev = -1;
    for (int p = 0; p < cnt; p++) {
        int J = index_[elem(4u, P.off1.x, b, h, row, uint(p))];
        if (J <= prev || J > int(I)) // invalid entries are skipped (no sync to report them)
            continue;
        prev = J;
        for (uint kc = 0u; kc < B; kc += KT) {
            uint k0 = uint(J) * B + kc;
            if (k0 >= N || k0 > q0 + QT - 1u)
                break;
            barrier(); // the previous tile is no longer read
            for (uint e = tid; e < KT * D; e += QT * LANES) {
                uint jj = e / D, c = e % D, tok = k0 + jj;
                bool ok = tok < N;
                Ks[jj * KSTR + c] = ok ? load_k(elem(1u, P.off0.y, b, kh, tok, c)) : 0.0;
                Vs[e] = ok ? load_v(elem(2u, P.off0.z, b, kh, tok, c)) : 0.0;
            }
            barrier();
            for (uint j = lane; j < KT; j += LANES) {
                float s = 0.0;
                for (uint c = 0u; c < D; c++)
                    s += Qs[r * D + c] * Ks[j * KSTR + c];
                uint tok = k0 + j;
                Ps[r * KT + j] = tok < N && tok <= qi ? s : NEG_INF;
            }
            barrier();
            float mx = NEG_INF;
            bool nan_seen = false; // max() may drop NaN: a NaN logit must still poison the row
            for (uint j = 0u; j < KT; j++) {
                mx = max(mx, Ps[r * KT + j]);
                nan_seen = nan_seen || isnan(Ps[r * KT + j]);
            }
            if (nan_seen)
                l = uintBitsToFloat(0x7fc00000u);
            float m_new = max(m, mx);
            barrier(); // every lane has read the raw row
            bool live = m_new != NEG_INF;
            for (uint j = lane; j < KT; j += LANES)
                Ps[r * KT + j] = live ? exp2(Ps[r * KT + j] - m_new) : 0.0;
            barrier();
            if (live) {
                float alpha = exp2(m - m_new); // 0 on the first visible tile
                float sum = 0.0;
                for (uint t = 0u; t < DPL; t++)
                    o[t] *= alpha;
                for (uint j = 0u; j < KT; j++) {
                    float pj = Ps[r * KT + j];
                    sum += pj;
                    for (uint t = 0u; t < DPL; t++)
                        o[t] += pj * Vs[j * D + lane + LANES * t];
                }
                l = l * alpha + sum;
                m = m_new;
            }
        }
    }
    if (qi < N && qi >= first) {
        float inv = l > 0.0 ? 1.0 / l : (isnan(l) ? l : 0.0); // no visible key: 0
        for (uint t = 0u; t < DPL; t++)
            store_out(elem(6u, P.off1.z, b, h, qi - first, lane + LANES * t), o[t] * inv);
        if ((P.flags & FLAG_LSE) != 0u && lane == 0u) // m, l in log2 units
            lse[elem(3u, P.off0.w, b, h, qi - first, 0u)] =
                l > 0.0 ? (m + log2(l)) * 0.69314718055994531 : (isnan(l) ? l : NEG_INF);
    }
}
