#version 450
// XAttention block mass (section 3): one workgroup of WG invocations per
// (head, block row I), one dispatch. The block's real strided rows
// m = I*G + r (r < R) are handled one after another, their columns c <= m
// spread over the lanes:
//   1. per row, each lane an online max and normaliser over its columns,
//      then a tree reduction over the lanes -> (rmx[r], rtot[r]);
//   2. per chunk of WG columns, each lane the mass of its column summed over
//      the rows, then lane j < WG/G adds up the G columns of key block J.
// Logits are recomputed in 2 (cheaper than storing them); XAttention is the
// comparison selector, not the fast path.
//
// Loop budget (llvmpipe ends every loop of an invocation silently once 65535
// iterations have run in all; unrolled loops do not count). The head_dim
// loop runs D / E steps of E unrolled elements (E = 32 where it divides D:
// fewer load sites keep llvmpipe's compile time sane), so one logit costs
// L = S * (D / E + 1) iterations. Per invocation, with k = ceil((I+1)*G / WG):
//   pass 1: the R <= G rows, ceil((m+1)/WG) logits each: <= G * k * L
//           (the reductions are unrolled)
//   pass 2: k chunks of G logits and a G-column sum: k * (G * L + G)
//   + ceil(n / WG) for the zero fill.
// vk_plan_check declines plans past the budget on llvmpipe (vk_budget.c).
#extension GL_GOOGLE_include_directive : enable
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(constant_id = 1) const uint E = 32u;    // head_dim elements per unrolled step (divides D)
layout(constant_id = 4) const uint D = 128u;   // head_dim
#define WG 256u
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Qb { uint qbuf[]; };
layout(std430, set = 0, binding = 1) readonly buffer Kb { uint kbuf[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Scores { float scores[]; };

DEFINE_LOAD(load_q, qbuf)
DEFINE_LOAD(load_k, kbuf)

shared float red_m[WG], red_s[WG];
shared float row_m[128], row_t[128]; // G <= 128 (block_size <= 128)
shared float colsum[WG];

uint gb, gh, gkh;

// log2-scaled logit of strided query row m against strided key column c.
float logit(uint m, uint c)
{
    uint N = P.n_keys, S = P.stride;
    uint qs = P.str[0].w, ks = P.str[1].w;
    float acc = 0.0;
    for (uint t = 0u; t < S; t++) {
        uint qt = m * S + S - 1u - t, kt = c * S + t;
        if (qt >= N || kt >= N)
            continue;
        uint qi = elem(0u, P.off0.x, gb, gh, qt, 0u), ki = elem(1u, P.off0.y, gb, gkh, kt, 0u);
        for (uint e0 = 0u; e0 < D; e0 += E)
            [[unroll]] for (uint u = 0u; u < E; u++)
                acc += load_q(qi + (e0 + u) * qs) * load_k(ki + (e0 + u) * ks);
    }
    return acc * P.qmul;
}

void main()
{
    uint id = wg_id(), tid = gl_LocalInvocationID.x;
    if (id >= P.items)
        return;
    uint n = P.n_blocks, Hq = P.heads, N = P.n_keys, S = P.stride, G = P.group;
    uint I = id % n, bh = id / n;
    gb = bh / Hq;
    gh = bh % Hq;
    gkh = gh / P.gqa;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    uint M = (N + S - 1u) / S;          // strided rows with a real token
    uint R = min(G, M - I * G);         // real rows of this block (I*G < M)

    // 1: max and normaliser of each real row, online per lane, then reduced.
    for (uint r = 0u; r < R; r++) {
        uint m = I * G + r;
        float mx = NEG_INF, sm = 0.0;
        for (uint c = tid; c <= m; c += WG) {
            float x = logit(m, c);
            float nm = max(mx, x);
            sm = nm == NEG_INF ? 0.0 : sm * exp2(mx - nm) + exp2(x - nm);
            mx = nm;
        }
        red_m[tid] = mx;
        red_s[tid] = sm;
        barrier();
        [[unroll]] for (uint s = WG / 2u; s > 0u; s >>= 1) {
            if (tid < s) {
                float ma = red_m[tid], mb = red_m[tid + s];
                float nm = max(ma, mb);
                red_s[tid] = nm == NEG_INF ? 0.0
                                           : red_s[tid] * exp2(ma - nm) + red_s[tid + s] * exp2(mb - nm);
                red_m[tid] = nm;
            }
            barrier();
        }
        if (tid == 0u) {
            row_m[r] = red_m[0];
            row_t[r] = red_s[0];
        }
        barrier();
    }

    // 2: mass per key block J <= I, WG columns (WG / G whole blocks) at a time.
    uint ncols = I * G + R;
    for (uint base = 0u; base < ncols; base += WG) {
        uint c = base + tid;
        float cs = 0.0;
        if (c < ncols)
            for (uint r = 0u; r < R; r++) {
                uint m = I * G + r;
                float rtot = row_t[r];
                if (c > m || rtot <= 0.0) // NaN stays in (non-finite input)
                    continue;
                cs += exp2(logit(m, c) - row_m[r]) / rtot;
            }
        colsum[tid] = cs;
        barrier();
        uint J = base / G + tid;
        if (tid < WG / G && J <= I) {
            float mass = 0.0;
            for (uint a = 0u; a < G; a++)
                mass += colsum[tid * G + a];
            scores[elem(3u, P.off0.w, gb, gh, I, J)] = mass;
        }
        barrier();
    }
    for (uint J = I + 1u + tid; J < n; J += WG)
        scores[elem(3u, P.off0.w, gb, gh, I, J)] = 0.0;
}
