#version 450
// Block-sparse causal attention on cooperative matrices (section 6), f16
// inputs. One workgroup = NSG subgroups of 32 = NSG * 16 query rows of one
// (head, block row I); each subgroup owns 16 rows. K and V tiles of BC keys
// are copied into shared memory 16 bytes at a time; Q stays in registers as
// D/16 matrices, O in D/16 f32 accumulators.
//
// One pass with a lazily moved reference max: an accumulator cannot be
// scaled per row, so each row keeps its reference m until a tile's max
// exceeds it by more than 2^RESCALE_LOG2 (P entries stay <= 256 in f16);
// only then does the subgroup take O through shared memory to rescale it.
// That happens a few times per row at most; every other tile is S = Q K^T,
// P = exp2(S - m) in f16, O += P V.
#extension GL_GOOGLE_include_directive : enable
#extension GL_KHR_memory_scope_semantics : require
#extension GL_NV_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_clustered : require
#extension GL_KHR_shader_subgroup_vote : require
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(constant_id = 1) const uint NSG = 8u;   // subgroups per workgroup
layout(constant_id = 2) const uint BC = 32u;   // keys per tile (16 or 32)
layout(constant_id = 4) const uint D = 128u;   // head_dim, a multiple of 16
layout(local_size_x_id = 5) in;                // NSG * 32

// Inputs as 16-byte words of 8 f16 (the host takes this path only when every
// row starts on 16 bytes and head_dim is contiguous).
layout(std430, set = 0, binding = 0) readonly buffer Qb { uvec4 q8[]; };
layout(std430, set = 0, binding = 1) readonly buffer Kb { uvec4 k8[]; };
layout(std430, set = 0, binding = 2) readonly buffer Vb { uvec4 v8[]; };
layout(std430, set = 0, binding = 4) readonly buffer Index { int index_[]; };
layout(std430, set = 0, binding = 5) readonly buffer Count { int count_[]; };
// The output, seen as f32 or as 16-bit words (two aliases of one binding).
layout(std430, set = 0, binding = 6) writeonly buffer Out32 { float o32[]; };
layout(std430, set = 0, binding = 6) writeonly buffer Out16 { uint16_t ob16[]; };

#define MAT16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define MAT32 fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

const uint KS = D / 8u + 1u; // K/V row in 16-byte words, padded by one (fewer bank conflicts)
const uint DC = D / 16u;     // 16-wide column chunks of head_dim
const uint SUB = BC / 16u;   // 16-key sub-tiles per tile
const uint SP = BC + 4u;     // S row stride (floats)
const uint PP = BC + 8u;     // P row stride (halves)
const float RESCALE_LOG2 = 8.0;

shared uvec4 Ksh[BC * KS];
shared uvec4 Vsh[BC * KS];
shared float Ssh[NSG * 16u * SP];     // per subgroup: S of its 16 rows (also O staging)
shared float16_t Psh[NSG * 16u * PP]; // per subgroup: P of its 16 rows (also Q staging)
shared float Rsh[NSG * 16u];          // per row: O rescale factor, then 1 / l

// K and V tiles move global -> registers -> shared: the next tile's loads are
// issued before the current tile's math, so their latency hides behind it.
const uint WORDS = BC * (D / 8u);                       // 16-byte words per tile
const uint PER = (WORDS + NSG * 32u - 1u) / (NSG * 32u); // words per invocation

void fetch_tile(uint k0, uint b, uint kh, out uvec4 kr[PER], out uvec4 vr[PER])
{
    uint N = P.dims0.w;
    [[unroll]] for (uint i = 0u; i < PER; i++) {
        uint e = gl_LocalInvocationID.x + i * NSG * 32u;
        uint j = e / (D / 8u), w = e % (D / 8u), tok = k0 + j;
        kr[i] = uvec4(0u);
        vr[i] = uvec4(0u);
        if (e < WORDS && tok < N) { // keys past N are 0
            kr[i] = k8[elem(1u, P.off0.y, b, kh, tok, 0u) / 8u + w];
            vr[i] = v8[elem(2u, P.off0.z, b, kh, tok, 0u) / 8u + w];
        }
    }
}

void store_tile(uvec4 kr[PER], uvec4 vr[PER])
{
    [[unroll]] for (uint i = 0u; i < PER; i++) {
        uint e = gl_LocalInvocationID.x + i * NSG * 32u;
        uint j = e / (D / 8u), w = e % (D / 8u);
        if (e < WORDS) {
            Ksh[j * KS + w] = kr[i];
            Vsh[j * KS + w] = vr[i];
        }
    }
}

// Walk over the row's tiles: the next valid (block, key offset), as its first
// key, or NONE. Invalid list entries are skipped. Uniform over the workgroup.
const uint NONE = 0xffffffffu;
int it_p = -1, it_prev = -1;
uint it_J = 0u, it_kc = 0u;

uint next_tile(uint b, uint h, uint I, int cnt, uint wlast)
{
    uint N = P.dims0.w, B = P.dims1.y;
    if (it_p >= 0) {
        it_kc += BC;
        uint k0 = it_J * B + it_kc;
        if (it_kc < B && k0 < N && k0 <= wlast)
            return k0;
    }
    for (it_p++; it_p < cnt; it_p++) {
        int J = index_[elem(4u, P.off1.x, b, h, I, uint(it_p))];
        if (J <= it_prev || J > int(I))
            continue;
        it_prev = J;
        it_J = uint(J);
        it_kc = 0u;
        uint k0 = it_J * B;
        if (k0 < N && k0 <= wlast)
            return k0;
    }
    return NONE;
}

// O rows scaled by Rsh, 16 columns at a time through the subgroup's S region.
void scale_rows(inout MAT32 o[DC], uint sbase, uint rbase, uint lane)
{
    [[unroll]] for (uint c = 0u; c < DC; c++) {
        coopMatStoreNV(o[c], Ssh, sbase, 16u, false);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        for (uint e = lane; e < 256u; e += 32u)
            Ssh[sbase + e] *= Rsh[rbase + e / 16u];
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        coopMatLoadNV(o[c], Ssh, sbase, 16u, false);
        subgroupBarrier();
    }
}

void main()
{
    uint id = wg_id();
    if (id >= P.dims2.z)
        return;
    uint Hq = P.dims0.y, N = P.dims0.w, B = P.dims1.y, n = P.dims2.x;
    uint QR = NSG * 16u, rt_count = B / QR;
    uint rt = id % rt_count, I = (id / rt_count) % n, bh = id / (rt_count * n);
    uint b = bh / Hq, h = bh % Hq, kh = h / P.dims2.w;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint q0 = I * B + rt * QR;        // first row of the workgroup
    uint r0 = q0 + sg * 16u;          // first row of this subgroup
    uint wlast = q0 + QR - 1u;        // last row of the workgroup
    uint sbase = sg * 16u * SP, pbase = sg * 16u * PP, rbase = sg * 16u;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    const float scale = P.f0.w;       // softmax scale * log2(e)

    // Q of the subgroup's 16 rows, 16 columns at a time through its P region.
    MAT16 qa[DC];
    [[unroll]] for (uint c = 0u; c < DC; c++) {
        for (uint e = lane; e < 32u; e += 32u) { // 16 rows x 2 words of 8
            uint r = e / 2u, w = e % 2u, tok = r0 + r;
            uvec4 x = uvec4(0u);
            if (tok < N)
                x = q8[elem(0u, P.off0.x, b, h, tok, 0u) / 8u + c * 2u + w];
            uint s = pbase + r * 16u + w * 8u;
            [[unroll]] for (uint i = 0u; i < 4u; i++) {
                f16vec2 two = unpackFloat2x16(x[i]);
                Psh[s + 2u * i] = two.x;
                Psh[s + 2u * i + 1u] = two.y;
            }
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        coopMatLoadNV(qa[c], Psh, pbase, 16u, false);
        subgroupBarrier();
    }

    // Softmax lanes: row lr of the subgroup, columns hf, hf + 2, ... of the tile.
    uint lr = lane >> 1, hf = lane & 1u, qi = r0 + lr;
    const uint HALF = BC / 2u;
    float m = NEG_INF, l = 0.0;
    bool bad = false; // a NaN logit: the row's output is NaN (docs/semantics.md section 7)
    MAT32 o[DC];
    [[unroll]] for (uint c = 0u; c < DC; c++)
        o[c] = MAT32(0.0);

    int cnt = clamp(count_[elem(5u, P.off1.y, b, h, I, 0u)], 0, int(n));
    uvec4 kr[PER], vr[PER];
    uint k0 = next_tile(b, h, I, cnt, wlast);
    if (k0 != NONE)
        fetch_tile(k0, b, kh, kr, vr);
    while (k0 != NONE) {
        barrier(); // the previous tile is no longer read
        store_tile(kr, vr);
        barrier();
        uint kn = next_tile(b, h, I, cnt, wlast);
        if (kn != NONE)
            fetch_tile(kn, b, kh, kr, vr);
        // S = Q K^T for this subgroup's rows: K^T is K read column-major.
        [[unroll]] for (uint t = 0u; t < SUB; t++) {
            MAT32 s = MAT32(0.0);
            [[unroll]] for (uint c = 0u; c < DC; c++) {
                MAT16 kb;
                coopMatLoadNV(kb, Ksh, t * 16u * KS + c * 2u, KS, true);
                s = coopMatMulAddNV(qa[c], kb, s);
            }
            coopMatStoreNV(s, Ssh, sbase + t * 16u, SP, false);
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        float v[HALF];
        float mx = NEG_INF;
        [[unroll]] for (uint j = 0u; j < HALF; j++) {
            uint col = hf + 2u * j, tok = k0 + col;
            float x = Ssh[sbase + lr * SP + col] * scale;
            bool vis = tok <= qi && tok < N;
            bad = bad || (vis && isnan(x));
            v[j] = vis ? x : NEG_INF;
            mx = max(mx, v[j]);
        }
        mx = subgroupClusteredMax(mx, 2u); // the same in both lanes of a row
        float alpha = 1.0;
        bool moved = false;
        if (mx != NEG_INF) {
            if (m == NEG_INF) {
                m = mx; // first visible key: O and l are still 0
            } else if (mx > m + RESCALE_LOG2) {
                alpha = exp2(m - mx);
                m = mx;
                moved = true;
            }
        }
        float sum = 0.0;
        [[unroll]] for (uint j = 0u; j < HALF; j++) {
            float pj = v[j] != NEG_INF ? exp2(v[j] - m) : 0.0;
            sum += pj;
            Psh[pbase + lr * PP + hf + 2u * j] = float16_t(pj);
        }
        sum = subgroupClusteredAdd(sum, 2u);
        l = l * alpha + sum;
        if (subgroupAny(moved)) {
            if (hf == 0u)
                Rsh[rbase + lr] = alpha;
            scale_rows(o, sbase, rbase, lane);
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        // O += P V: P rows are A, V rows (keys) are B, row-major.
        [[unroll]] for (uint t = 0u; t < SUB; t++) {
            MAT16 pa;
            coopMatLoadNV(pa, Psh, pbase + t * 16u, PP, false);
            [[unroll]] for (uint c = 0u; c < DC; c++) {
                MAT16 vb;
                coopMatLoadNV(vb, Vsh, t * 16u * KS + c * 2u, KS, false);
                o[c] = coopMatMulAddNV(pa, vb, o[c]);
            }
        }
        subgroupBarrier(); // S and P are read before the next tile rewrites them
        k0 = kn;
    }
    // Output: O / l, 16 columns at a time through the S region, with bounds and dtype.
    bad = subgroupClusteredOr(bad, 2u);
    if (hf == 0u)
        Rsh[rbase + lr] = bad ? uintBitsToFloat(0x7fc00000u) : (l > 0.0 ? 1.0 / l : 0.0);
    uint od = P.dims2.y;
    [[unroll]] for (uint c = 0u; c < DC; c++) {
        coopMatStoreNV(o[c], Ssh, sbase, 16u, false);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        for (uint e = lane; e < 256u; e += 32u) {
            uint r = e / 16u, col = e % 16u, tok = r0 + r;
            if (tok < N) {
                float x = Ssh[sbase + e] * Rsh[rbase + r];
                uint oi = elem(6u, P.off1.z, b, h, tok, c * 16u + col);
                if (od == 0u)
                    o32[oi] = x;
                else
                    ob16[oi] = uint16_t(od == 1u ? f32_to_f16(x) : f32_to_bf16(x));
            }
        }
        subgroupBarrier();
    }
}
