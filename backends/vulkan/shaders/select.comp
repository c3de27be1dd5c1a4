#version 450
// Per-row block selection (section 5): one workgroup per (head, block row I).
// Top-k by a 4-pass radix select over order-preserving keys (value desc,
// then index asc, so the kept set is unique), then one ascending pass that
// ranks the threshold ties by index, adds the forced blocks and writes the
// list with a workgroup prefix sum. XAttention keeps block J when the mass
// J is tested on is still below tau * total: the forced mass (blocks 0 and
// I) plus the mass ranked before J; with FLAG_XATTN_DIAG (the official rule
// from key block 0) only I is forced, block 0 competes and is kept anyway,
// the first candidate is always kept, and the mass of the candidate ranked
// just before J is left out.
//
// Loop budget (llvmpipe: 65535 iterations of non-unrolled loops per
// invocation, all loops together; see vk_loop_budget). With c = ceil(n/256):
// top-k 4 * (c + 257) + c * 18 + c; XAttention c * (ceil(n/16) + 18) + 2c.
#extension GL_GOOGLE_include_directive : enable
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 3) readonly buffer Scores { float scores[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Index { int index_[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Count { int count_[]; };
layout(std430, set = 0, binding = 12) readonly buffer Budget { int budget[]; };

shared uint hist[256];
shared uint scan[256];
shared uint sh_prefix, sh_remaining;
shared float red[256];

uint gb, gh, gI;

float score_at(uint J) { return scores[elem(3u, P.off0.w, gb, gh, gI, J)]; }

bool finite_(float x) { return !isnan(x) && !isinf(x); }

// Larger float -> larger key; -0 and +0 share a key (they compare equal).
uint key_of(float x)
{
    uint u = floatBitsToUint(x == 0.0 ? 0.0 : x);
    return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}

// Inclusive prefix sum over the workgroup; *total gets the sum of all.
uint prefix_sum(uint v, out uint total)
{
    uint tid = gl_LocalInvocationID.x;
    scan[tid] = v;
    barrier();
    for (uint off = 1u; off < 256u; off <<= 1) {
        uint t = tid >= off ? scan[tid - off] : 0u;
        barrier();
        scan[tid] += t;
        barrier();
    }
    uint r = scan[tid];
    total = scan[255];
    barrier();
    return r;
}

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

float xw(uint J)
{
    float x = score_at(J);
    return isnan(x) ? 0.0 : x;
}

void main()
{
    uint id = wg_id(), tid = gl_LocalInvocationID.x;
    uint n = P.n_blocks, Hq = P.heads, nr = P.n_rows;
    uint row = id % nr, I = P.row0 + row, bh = id / nr; // absolute block of the call's row
    gb = bh / Hq;
    gh = bh % Hq;
    gI = row;
    uint sel = P.selector;
    int sink = int(P.sink_blocks), local_ = int(P.local_blocks);
    bool xattn = sel == SEL_XATTN || sel == SEL_XATTN_STRICT;
    bool diag_only = (P.flags & FLAG_XATTN_DIAG) != 0u;
    bool all_ = sel == SEL_DENSE || (P.flags & FLAG_DENSE) != 0u ||
                (!xattn && int(I) + 1 <= budget[I]);

    // Top-k threshold: key T, and how many of the entries equal to T to keep.
    uint T = 0xffffffffu, need_eq = 0u;
    bool topk = !all_ && !xattn;
    if (topk) {
        uint m = 0u;
        for (uint J = tid; J <= I; J += 256u)
            m += finite_(score_at(J)) ? 1u : 0u;
        uint total;
        prefix_sum(m, total);
        uint kk = min(uint(budget[I]), total);
        if (tid == 0u) {
            sh_prefix = 0u;
            sh_remaining = kk;
        }
        barrier();
        if (kk > 0u) {
            uint mask = 0u;
            for (int pass = 0; pass < 4; pass++) {
                uint shift = uint(24 - 8 * pass);
                hist[tid] = 0u;
                barrier();
                uint prefix = sh_prefix;
                for (uint J = tid; J <= I; J += 256u) {
                    float x = score_at(J);
                    uint key = key_of(x);
                    if (finite_(x) && (key & mask) == prefix)
                        atomicAdd(hist[(key >> shift) & 255u], 1u);
                }
                barrier();
                if (tid == 0u) {
                    uint rem = sh_remaining, cum = 0u;
                    for (int bin = 255; bin >= 0; bin--) {
                        uint hcount = hist[bin];
                        if (cum + hcount >= rem) {
                            sh_prefix = prefix | (uint(bin) << shift);
                            sh_remaining = rem - cum;
                            break;
                        }
                        cum += hcount;
                    }
                }
                barrier();
                mask |= 255u << shift;
            }
            T = sh_prefix;
            need_eq = sh_remaining;
        }
    }

    // XAttention: forced mass F and target tau * total.
    float F = 0.0, target = 0.0;
    if (xattn && !all_) {
        float s = 0.0;
        for (uint J = tid; J <= I; J += 256u)
            s += xw(J);
        target = P.tau * reduce_sum(s);
        F = diag_only || I == 0u ? xw(I) : xw(0u) + xw(I);
    }

    uint eq_carry = 0u, pos_carry = 0u;
    for (uint base = 0u; base <= I; base += 256u) {
        uint J = base + tid;
        bool in_row = J <= I;
        bool keep = false, is_eq = false;
        if (in_row) {
            if (all_) {
                keep = true;
            } else if (xattn) {
                if (J == 0u || J == I) {
                    keep = true;
                } else {
                    // 16 blocks per iteration (unrolled), in ascending j as before;
                    // (lw, lj): the candidate ranked just before J so far.
                    uint first = diag_only ? 0u : 1u;
                    float wj = xw(J), before = 0.0, lw = 0.0;
                    uint lj = 0xffffffffu;
                    for (uint j0 = first; j0 < I; j0 += 16u) {
                        [[unroll]] for (uint u = 0u; u < 16u; u++) {
                            uint j = j0 + u;
                            float wo = xw(min(j, I - 1u));
                            if (j < I && (wo > wj || (wo == wj && j < J))) {
                                before += wo;
                                if (lj == 0xffffffffu || wo < lw || (wo == lw && j > lj)) {
                                    lw = wo;
                                    lj = j;
                                }
                            }
                        }
                    }
                    if (!diag_only)
                        keep = F + before < target;
                    else
                        keep = lj == 0xffffffffu ? 0.0 < target : F + (before - lw) < target;
                }
            } else {
                float x = score_at(J);
                uint key = key_of(x);
                bool cand = finite_(x) && T != 0xffffffffu;
                is_eq = cand && key == T;
                keep = cand && key > T;
                keep = keep || int(J) < sink || int(J) >= int(I) - local_ + 1;
            }
        }
        uint chunk_eq;
        uint eq_incl = prefix_sum(is_eq ? 1u : 0u, chunk_eq);
        if (is_eq && eq_carry + eq_incl - 1u < need_eq)
            keep = true;
        eq_carry += chunk_eq;
        uint chunk_keep;
        uint pos = prefix_sum(keep ? 1u : 0u, chunk_keep);
        if (keep)
            index_[elem(4u, P.off1.x, gb, gh, row, pos_carry + pos - 1u)] = int(J);
        pos_carry += chunk_keep;
    }
    for (uint p = pos_carry + tid; p < n; p += 256u)
        index_[elem(4u, P.off1.x, gb, gh, row, p)] = -1;
    if (tid == 0u)
        count_[elem(5u, P.off1.y, gb, gh, row, 0u)] = int(pos_carry);
}
