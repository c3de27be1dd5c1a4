#version 450
// Block-sparse causal attention on cooperative matrices (section 6), f16
// inputs. One workgroup = NSG subgroups of 32 = NSG * 16 query rows of one
// (head, block row I); each subgroup owns 16 rows. K and V tiles of BC keys
// are copied into shared memory 16 bytes at a time, one tile ahead through
// registers; Q stays in registers as D/16 matrices, O in D/16 f32
// accumulators and the row sums l in one more (P times a matrix of ones).
//
// The softmax runs on the accumulator's own components, in registers: the
// row and column of each component come from index matrices loaded once,
// and each row's reference max sits in a matrix M (every column of row r
// holds m[r]). P = exp2(S - M) needs no per-row reduction as long as no
// logit exceeds its row's reference by more than 2^RESCALE_LOG2 (P stays
// <= 256, fine in f16). When one does (the first keys of a row, and rarely
// later), the subgroup takes the slow step: row maxima through shared
// memory, new references (HEADROOM above the maxima), O and l rescaled by a
// per-row factor matrix, M rebuilt.
//
// One source, two extensions: built as is for VK_NV_cooperative_matrix and
// with -DKHR for VK_KHR_cooperative_matrix (attention_coop_khr). KHR has no
// conversion from an accumulator to an A matrix, so P goes through a 16x16
// f16 square in shared memory there.
//
// With -DSPLIT (attention_coop_split, attention_coop_khr_split) the inputs
// are f32 tensors as two f16 copies each, hi and lo = x - hi, scaled by a
// power of two per tensor so that the largest |x| sits just under 2^15
// (vk_convert.c): S = Qh Kh + Qh Kl + Ql Kh and O = Ph Vh + Ph Vl + Pl Vh
// with P = Ph + Pl, so logits and outputs keep about 22 bits. Ph is P rounded
// to 11 bits by integer operations (exact in f16) and Pl = f16(P - Ph), with
// no f16 value converted back: the H100 suite's outcomes with Pl = f16(P -
// f32(f16(P))) match Pl = 0 in every case checked (bench/vulkan/split_error.py
// --suite), as if the driver folded that round trip away.
//
// VARIANT (constant 6, STEM_VULKAN_ATTN_VARIANT; 0 = the kernel above, as
// measured) selects experimental changes, bit by bit:
//   1: S of the whole key tile first, as SUB independent accumulators (the
//      MMA chains of four 16-key sub-tiles interleave instead of waiting on
//      each sub-tile's vote and softmax), one slow-step vote per tile, and
//      the row and column index matrices built only for tiles that need a
//      mask (the diagonal and the last keys), not held in registers.
//   2: block rows longest first (row I of every head, from I = n - 1 down),
//      so the last workgroups to start are the short ones.
//   4: KHR: P goes through the subgroup's f32 square (as f16 bits) instead
//      of its own f16 square, 4 KiB less shared memory: 128 rows with a
//      64-key tile then fit NVIDIA's 48 KiB.
//   8: l as per-component sums of P (f32, added on the components), reduced
//      over each row once at the end, instead of the product P x ones (one
//      of the 17 products per 16 keys; a dependent chain across sub-tiles).
#extension GL_GOOGLE_include_directive : enable
#extension GL_KHR_memory_scope_semantics : require
#ifdef KHR
#extension GL_KHR_cooperative_matrix : require
#else
#extension GL_NV_cooperative_matrix : require
#endif
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_clustered : require
#extension GL_KHR_shader_subgroup_vote : require
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(constant_id = 1) const uint NSG = 8u;   // subgroups per workgroup
layout(constant_id = 2) const uint BC = 64u;   // keys per tile (16, 32 or 64)
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

#ifdef KHR
#define MATA coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define MATB coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define MAT32 coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define MATC16 coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define LOAD coopMatLoad
#define STORE coopMatStore
#define MULADD coopMatMulAdd
#define ROWS gl_CooperativeMatrixLayoutRowMajor
#define COLS gl_CooperativeMatrixLayoutColumnMajor
#else
#define MATA fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define MATB fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define MAT32 fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define LOAD coopMatLoadNV
#define STORE coopMatStoreNV
#define MULADD coopMatMulAddNV
#define ROWS false
#define COLS true
#endif

const uint KS = D / 8u + 1u; // K/V row in 16-byte words, padded by one (fewer bank conflicts)
const uint DC = D / 16u;     // 16-wide column chunks of head_dim
const uint SUB = BC / 16u;   // 16-key sub-tiles per tile
const uint SP = 20u;         // row stride (floats) of a subgroup's 16x16 staging square
const float RESCALE_LOG2 = 8.0;
layout(constant_id = 3) const uint HEADROOM = 0u; // log2 units put above a new reference
layout(constant_id = 6) const uint VARIANT = 0u;  // experimental changes (above)
const uint V_MULTI_S = VARIANT & 1u;
const uint V_LONGEST = (VARIANT >> 1u) & 1u;
const uint V_P_IN_S = (VARIANT >> 2u) & 1u;
const uint V_LSUM_ADD = (VARIANT >> 3u) & 1u;

shared uvec4 Ksh[BC * KS];
shared uvec4 Vsh[BC * KS];
#ifdef SPLIT
layout(std430, set = 0, binding = 7) readonly buffer Qlo { uvec4 ql8[]; };
layout(std430, set = 0, binding = 8) readonly buffer Klo { uvec4 kl8[]; };
layout(std430, set = 0, binding = 9) readonly buffer Vlo { uvec4 vl8[]; };
layout(std430, set = 0, binding = 10) readonly buffer Absmax { uint absmax_[]; }; // q k v
shared uvec4 Klsh[BC * KS];
shared uvec4 Vlsh[BC * KS];
#endif
shared float Ssh[NSG * 16u * SP]; // per subgroup: one 16x16 f32 square
shared float Rsh[NSG * 16u];      // per row: a factor or a reference
#ifdef KHR
// per subgroup: P as a 16x16 f16 square (one element with V_P_IN_S: unused)
shared float16_t Psh[NSG * 256u - V_P_IN_S * (NSG * 256u - 1u)];
// P's square: Psh, or (V_P_IN_S) the subgroup's f32 square read as f16 bits,
// 8 floats = 16 f16 a row. A statement each (if/else on a constant).
#define P_STORE(x) if (V_P_IN_S != 0u) STORE(x, Ssh, sbase, 8u, ROWS); else STORE(x, Psh, sg * 256u, 16u, ROWS)
#define P_LOAD(x) if (V_P_IN_S != 0u) LOAD(x, Ssh, sbase, 8u, ROWS); else LOAD(x, Psh, sg * 256u, 16u, ROWS)
#endif

// K and V tiles move global -> registers -> shared: the next tile's loads are
// issued before the current tile's math, so their latency hides behind it.
const uint WORDS = BC * (D / 8u);                        // 16-byte words per tile
const uint PER = (WORDS + NSG * 32u - 1u) / (NSG * 32u); // words per invocation

void fetch_tile(uint k0, uint b, uint kh, out uvec4 kr[PER], out uvec4 vr[PER])
{
    uint N = P.n_keys;
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

#ifdef SPLIT
// P (>= 0) rounded to 11 significant bits on its f32 bits: exact in f16 for
// P >= 2^-14, so P - split_hi(P) is exact in f32 and no f16 value is read back.
float split_hi(float p)
{
    return uintBitsToFloat((floatBitsToUint(p) + 0x1000u) & 0xffffe000u);
}

void fetch_lo(uint k0, uint b, uint kh, out uvec4 kr[PER], out uvec4 vr[PER])
{
    uint N = P.n_keys;
    [[unroll]] for (uint i = 0u; i < PER; i++) {
        uint e = gl_LocalInvocationID.x + i * NSG * 32u;
        uint j = e / (D / 8u), w = e % (D / 8u), tok = k0 + j;
        kr[i] = uvec4(0u);
        vr[i] = uvec4(0u);
        if (e < WORDS && tok < N) {
            kr[i] = kl8[elem(1u, P.off0.y, b, kh, tok, 0u) / 8u + w];
            vr[i] = vl8[elem(2u, P.off0.z, b, kh, tok, 0u) / 8u + w];
        }
    }
}

void store_lo(uvec4 kr[PER], uvec4 vr[PER])
{
    [[unroll]] for (uint i = 0u; i < PER; i++) {
        uint e = gl_LocalInvocationID.x + i * NSG * 32u;
        uint j = e / (D / 8u), w = e % (D / 8u);
        if (e < WORDS) {
            Klsh[j * KS + w] = kr[i];
            Vlsh[j * KS + w] = vr[i];
        }
    }
}
#endif

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
    uint N = P.n_keys, B = P.block_size;
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

// A matrix whose component (r, c) is f(r, c), through the subgroup's square.
// (An out parameter, not a return value: glslang 13 loses the KHR matrix use
// of a returned matrix.)
void make_matrix(out MAT32 x, uint sbase, uint lane, uint what) // what: 0 row, 1 column, 2 Rsh[row]
{
    subgroupMemoryBarrierShared(); // Rsh as just written by this subgroup
    subgroupBarrier();
    for (uint e = lane; e < 256u; e += 32u) {
        uint r = e / 16u, c = e % 16u;
        Ssh[sbase + r * SP + c] = what == 0u ? float(r) : what == 1u ? float(c)
                                                        : Rsh[gl_SubgroupID * 16u + r];
    }
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    LOAD(x, Ssh, sbase, SP, ROWS);
    subgroupBarrier();
}

void main()
{
    uint id = wg_id();
    if (id >= P.items)
        return;
    uint Hq = P.heads, N = P.n_keys, B = P.block_size, n = P.n_blocks;
    uint QR = NSG * 16u, rt_count = B / QR;
    uint rt = id % rt_count, I = (id / rt_count) % n, bh = id / (rt_count * n);
    if (V_LONGEST != 0u && P.n_rows == n) {
        // Longest rows first: block row I of every (batch, head), I from n - 1 down.
        uint bhs = P.batch * Hq, rest = id / rt_count;
        bh = rest % bhs;
        I = n - 1u - rest / bhs;
    }
    uint b = bh / Hq, h = bh % Hq, kh = h / P.gqa;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint q0 = I * B + rt * QR;        // first row of the workgroup
    uint r0 = q0 + sg * 16u;          // first row of this subgroup
    uint wlast = q0 + QR - 1u;        // last row of the workgroup
    uint sbase = sg * 16u * SP, rbase = sg * 16u;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
#ifdef SPLIT
    // The copies hold q 2^eq, k 2^ek, v 2^ev: logits and outputs scaled back.
    const int eq = split_exp(absmax_[0]), ek = split_exp(absmax_[1]), ev = split_exp(absmax_[2]);
    const float scale = P.qmul * exp2(float(-(eq + ek)));
    const float vback = exp2(float(-ev));
#else
    const float scale = P.qmul;       // softmax scale * log2(e)
#endif

    // Q of the subgroup's 16 rows, 16 columns at a time through the (still
    // unused) K tile: 32 words per subgroup.
    MATA qa[DC];
    [[unroll]] for (uint c = 0u; c < DC; c++) {
        uint r = lane / 2u, w = lane % 2u, tok = r0 + r;
        Ksh[sg * 32u + lane] = tok < N ? q8[elem(0u, P.off0.x, b, h, tok, 0u) / 8u + c * 2u + w]
                                       : uvec4(0u);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        LOAD(qa[c], Ksh, sg * 32u, 2u, ROWS);
        subgroupBarrier();
    }
#ifdef SPLIT
    MATA qal[DC];
    [[unroll]] for (uint c = 0u; c < DC; c++) {
        uint r = lane / 2u, w = lane % 2u, tok = r0 + r;
        Ksh[sg * 32u + lane] = tok < N ? ql8[elem(0u, P.off0.x, b, h, tok, 0u) / 8u + c * 2u + w]
                                       : uvec4(0u);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        LOAD(qal[c], Ksh, sg * 32u, 2u, ROWS);
        subgroupBarrier();
    }
#endif

    // Row and column of each component, the reference matrix, O and l.
    // One matrix per declaration: glslang 13 gives the second declarator of
    // `MAT32 a, b;` a KHR matrix type with no use (Use = 0xffffffff), a type
    // no device lists, and never stores into it (colm read uninitialised).
    MAT32 rowm;
    MAT32 colm;
    if (V_MULTI_S == 0u) {
        make_matrix(rowm, sbase, lane, 0u);
        make_matrix(colm, sbase, lane, 1u);
    }
    MAT32 ref = MAT32(NEG_INF);
    MAT32 o[DC];
    [[unroll]] for (uint c = 0u; c < DC; c++)
        o[c] = MAT32(0.0);
    MAT32 lsum = MAT32(0.0);
    const MATB ones = MATB(float16_t(1.0));
    float m = NEG_INF; // lane lr's reference (lanes 2r and 2r + 1 hold row r's)
    uint lr = lane >> 1, hf = lane & 1u;

    int cnt = clamp(count_[elem(5u, P.off1.y, b, h, I, 0u)], 0, int(n));
    uvec4 kr[PER], vr[PER];
    uint k0 = next_tile(b, h, I, cnt, wlast);
    barrier(); // every subgroup has its Q before the first tile lands on it
#ifdef SPLIT
    uvec4 klr[PER], vlr[PER];
#endif
    if (k0 != NONE) {
        fetch_tile(k0, b, kh, kr, vr);
#ifdef SPLIT
        fetch_lo(k0, b, kh, klr, vlr);
#endif
    }
    while (k0 != NONE) {
        barrier(); // the previous tile is no longer read
        store_tile(kr, vr);
#ifdef SPLIT
        store_lo(klr, vlr);
#endif
        barrier();
        uint kn = next_tile(b, h, I, cnt, wlast);
        if (kn != NONE) {
            fetch_tile(kn, b, kh, kr, vr);
#ifdef SPLIT
            fetch_lo(kn, b, kh, klr, vlr);
#endif
        }
        if (V_MULTI_S == 0u) {
            [[unroll]] for (uint t = 0u; t < SUB; t++) {
                // S = Q K^T for 16 keys: K^T is K read column-major.
                MAT32 s = MAT32(0.0);
                [[unroll]] for (uint c = 0u; c < DC; c++) {
                    MATB kb;
                    LOAD(kb, Ksh, t * 16u * KS + c * 2u, KS, COLS);
                    s = MULADD(qa[c], kb, s);
#ifdef SPLIT
                    MATB kbl;
                    LOAD(kbl, Klsh, t * 16u * KS + c * 2u, KS, COLS);
                    s = MULADD(qa[c], kbl, s);
                    s = MULADD(qal[c], kb, s);
#endif
                }
                // Scaled logits; masked keys -inf. Flag a logit above its reference + 2^8.
                // Below the diagonal and before N (the subgroup's rows all see all 16
                // keys: most tiles) the mask is skipped.
                uint kt = k0 + t * 16u;
                bool high = false;
                if (kt + 15u <= r0 && kt + 16u <= N) {
                    for (int i = 0; i < s.length(); i++) {
                        float x = s[i] * scale;
                        high = high || x > ref[i] + RESCALE_LOG2;
                        s[i] = x;
                    }
                } else {
                    for (int i = 0; i < s.length(); i++) {
                        uint tok = kt + uint(colm[i]), q = r0 + uint(rowm[i]);
                        float x = tok <= q && tok < N ? s[i] * scale : NEG_INF;
                        high = high || x > ref[i] + RESCALE_LOG2;
                        s[i] = x;
                    }
                }
                if (subgroupAny(high)) {
                    // Slow step: row maxima through shared memory, new references.
                    STORE(s, Ssh, sbase, SP, ROWS);
                    subgroupMemoryBarrierShared();
                    subgroupBarrier();
                    float mx = NEG_INF;
                    [[unroll]] for (uint j = 0u; j < 8u; j++)
                        mx = max(mx, Ssh[sbase + lr * SP + hf * 8u + j]);
                    mx = subgroupClusteredMax(mx, 2u);
                    float alpha = 1.0;
                    if (mx > m + RESCALE_LOG2 || (m == NEG_INF && mx != NEG_INF)) {
                        // Headroom above the max: logits that keep growing move it less often.
                        float m_new = mx + float(HEADROOM);
                        alpha = exp2(m - m_new); // 0 while the row had no reference: O, l are 0
                        m = m_new;
                    }
                    subgroupBarrier();
                    if (hf == 0u)
                        Rsh[rbase + lr] = alpha;
                    MAT32 am;
                    make_matrix(am, sbase, lane, 2u); // alpha of each component's row
                    [[unroll]] for (uint c = 0u; c < DC; c++)
                        for (int i = 0; i < am.length(); i++)
                            o[c][i] *= am[i];
                    for (int i = 0; i < am.length(); i++)
                        lsum[i] *= am[i];
                    if (hf == 0u)
                        Rsh[rbase + lr] = m;
                    make_matrix(ref, sbase, lane, 2u);
                }
                // P = exp2(S - M) (0 for masked keys), O += P V, l += P 1.
                for (int i = 0; i < s.length(); i++)
                    s[i] = s[i] == NEG_INF ? 0.0 : exp2(s[i] - ref[i]);
#ifdef KHR
                MATA pa;
#ifdef SPLIT
                MAT32 hp = s;
                for (int i = 0; i < hp.length(); i++)
                    hp[i] = split_hi(s[i]);
                MATC16 ph = MATC16(hp);
#else
                MATC16 ph = MATC16(s);
#endif
                P_STORE(ph);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
                P_LOAD(pa);
                subgroupBarrier();
#ifdef SPLIT
                // Pl = P - Ph, through the same square.
                MAT32 pr = hp;
                for (int i = 0; i < pr.length(); i++)
                    pr[i] = s[i] - pr[i];
                MATA pl;
                MATC16 plh = MATC16(pr);
                P_STORE(plh);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
                P_LOAD(pl);
                subgroupBarrier();
#endif
#else
#ifdef SPLIT
                MAT32 pr = s;
                for (int i = 0; i < pr.length(); i++)
                    pr[i] = split_hi(s[i]);
                MATA pa = MATA(pr);
                for (int i = 0; i < pr.length(); i++)
                    pr[i] = s[i] - pr[i];
                MATA pl = MATA(pr);
#else
                MATA pa = MATA(s);
#endif
#endif
                [[unroll]] for (uint c = 0u; c < DC; c++) {
                    MATB vb;
                    LOAD(vb, Vsh, t * 16u * KS + c * 2u, KS, ROWS);
                    o[c] = MULADD(pa, vb, o[c]);
#ifdef SPLIT
                    MATB vbl;
                    LOAD(vbl, Vlsh, t * 16u * KS + c * 2u, KS, ROWS);
                    o[c] = MULADD(pa, vbl, o[c]);
                    o[c] = MULADD(pl, vb, o[c]);
#endif
                }
                if (V_LSUM_ADD != 0u) {
                    for (int i = 0; i < s.length(); i++)
                        lsum[i] += s[i];
                } else {
                    lsum = MULADD(pa, ones, lsum);
#ifdef SPLIT
                    lsum = MULADD(pl, ones, lsum);
#endif
                }
            }
        } else if (k0 <= r0 + 15u) {
            // The tile's S as SUB independent accumulators: the sub-tiles' MMA
            // chains interleave (VARIANT bit 1). A tile whose every key lies
            // after the subgroup's last row (in the diagonal block) is skipped:
            // all its P would be 0.
            MAT32 st[SUB];
            [[unroll]] for (uint t = 0u; t < SUB; t++)
                st[t] = MAT32(0.0);
            [[unroll]] for (uint c = 0u; c < DC; c++) {
                [[unroll]] for (uint t = 0u; t < SUB; t++) {
                    MATB kb;
                    LOAD(kb, Ksh, t * 16u * KS + c * 2u, KS, COLS);
                    st[t] = MULADD(qa[c], kb, st[t]);
#ifdef SPLIT
                    MATB kbl;
                    LOAD(kbl, Klsh, t * 16u * KS + c * 2u, KS, COLS);
                    st[t] = MULADD(qa[c], kbl, st[t]);
                    st[t] = MULADD(qal[c], kb, st[t]);
#endif
                }
            }
            // Scaled logits, masked keys -inf, one flag for the whole tile. The
            // index matrices are built only for a tile that needs the mask.
            bool high = false;
            if (k0 + BC - 1u <= r0 && k0 + BC <= N) {
                [[unroll]] for (uint t = 0u; t < SUB; t++)
                    for (int i = 0; i < ref.length(); i++) {
                        float x = st[t][i] * scale;
                        high = high || x > ref[i] + RESCALE_LOG2;
                        st[t][i] = x;
                    }
            } else {
                MAT32 rm;
                make_matrix(rm, sbase, lane, 0u);
                MAT32 cm;
                make_matrix(cm, sbase, lane, 1u);
                [[unroll]] for (uint t = 0u; t < SUB; t++) {
                    uint kt = k0 + t * 16u;
                    for (int i = 0; i < ref.length(); i++) {
                        uint tok = kt + uint(cm[i]), q = r0 + uint(rm[i]);
                        float x = tok <= q && tok < N ? st[t][i] * scale : NEG_INF;
                        high = high || x > ref[i] + RESCALE_LOG2;
                        st[t][i] = x;
                    }
                }
            }
            if (subgroupAny(high)) {
                // Slow step over the tile: the component-wise max of the SUB
                // matrices, then row maxima through shared memory as above.
                MAT32 sm = st[0];
                [[unroll]] for (uint t = 1u; t < SUB; t++)
                    for (int i = 0; i < ref.length(); i++)
                        sm[i] = max(sm[i], st[t][i]);
                STORE(sm, Ssh, sbase, SP, ROWS);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
                float mx = NEG_INF;
                [[unroll]] for (uint j = 0u; j < 8u; j++)
                    mx = max(mx, Ssh[sbase + lr * SP + hf * 8u + j]);
                mx = subgroupClusteredMax(mx, 2u);
                float alpha = 1.0;
                if (mx > m + RESCALE_LOG2 || (m == NEG_INF && mx != NEG_INF)) {
                    float m_new = mx + float(HEADROOM);
                    alpha = exp2(m - m_new); // 0 while the row had no reference: O, l are 0
                    m = m_new;
                }
                subgroupBarrier();
                if (hf == 0u)
                    Rsh[rbase + lr] = alpha;
                MAT32 am;
                make_matrix(am, sbase, lane, 2u); // alpha of each component's row
                [[unroll]] for (uint c = 0u; c < DC; c++)
                    for (int i = 0; i < am.length(); i++)
                        o[c][i] *= am[i];
                for (int i = 0; i < am.length(); i++)
                    lsum[i] *= am[i];
                if (hf == 0u)
                    Rsh[rbase + lr] = m;
                make_matrix(ref, sbase, lane, 2u);
            }
            // Per sub-tile: P = exp2(S - M) (0 for masked keys), O += P V, l += P 1.
            [[unroll]] for (uint t = 0u; t < SUB; t++) {
                for (int i = 0; i < ref.length(); i++)
                    st[t][i] = st[t][i] == NEG_INF ? 0.0 : exp2(st[t][i] - ref[i]);
#ifdef KHR
                MATA pa;
#ifdef SPLIT
                MAT32 hp = st[t];
                for (int i = 0; i < hp.length(); i++)
                    hp[i] = split_hi(st[t][i]);
                MATC16 ph = MATC16(hp);
#else
                MATC16 ph = MATC16(st[t]);
#endif
                P_STORE(ph);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
                P_LOAD(pa);
                subgroupBarrier();
#ifdef SPLIT
                MAT32 pr = hp;
                for (int i = 0; i < pr.length(); i++)
                    pr[i] = st[t][i] - pr[i];
                MATA pl;
                MATC16 plh = MATC16(pr);
                P_STORE(plh);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
                P_LOAD(pl);
                subgroupBarrier();
#endif
#else
#ifdef SPLIT
                MAT32 pr = st[t];
                for (int i = 0; i < pr.length(); i++)
                    pr[i] = split_hi(st[t][i]);
                MATA pa = MATA(pr);
                for (int i = 0; i < pr.length(); i++)
                    pr[i] = st[t][i] - pr[i];
                MATA pl = MATA(pr);
#else
                MATA pa = MATA(st[t]);
#endif
#endif
                [[unroll]] for (uint c = 0u; c < DC; c++) {
                    MATB vb;
                    LOAD(vb, Vsh, t * 16u * KS + c * 2u, KS, ROWS);
                    o[c] = MULADD(pa, vb, o[c]);
#ifdef SPLIT
                    MATB vbl;
                    LOAD(vbl, Vlsh, t * 16u * KS + c * 2u, KS, ROWS);
                    o[c] = MULADD(pa, vbl, o[c]);
                    o[c] = MULADD(pl, vb, o[c]);
#endif
                }
                if (V_LSUM_ADD != 0u) {
                    for (int i = 0; i < ref.length(); i++)
                        lsum[i] += st[t][i];
                } else {
                    lsum = MULADD(pa, ones, lsum);
#ifdef SPLIT
                    lsum = MULADD(pl, ones, lsum);
#endif
                }
            }
        }
        k0 = kn;
    }
    if (V_LSUM_ADD != 0u) {
        // l of each row: its components' sums added up (through the square, two
        // lanes a row), then put back on every component of the row.
        STORE(lsum, Ssh, sbase, SP, ROWS);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        float l = 0.0;
        [[unroll]] for (uint j = 0u; j < 8u; j++)
            l += Ssh[sbase + lr * SP + hf * 8u + j];
        l = subgroupClusteredAdd(l, 2u);
        subgroupBarrier();
        if (hf == 0u)
            Rsh[rbase + lr] = l;
        make_matrix(lsum, sbase, lane, 2u);
    }
    // Output: O / l (0 for a row without visible keys; NaN stays NaN), 16
    // columns at a time through the square, with bounds and dtype.
    uint od = P.out_dtype;
    [[unroll]] for (uint c = 0u; c < DC; c++) {
        for (int i = 0; i < o[c].length(); i++)
#ifdef SPLIT
            o[c][i] = lsum[i] == 0.0 ? 0.0 : o[c][i] / lsum[i] * vback;
#else
            o[c][i] = lsum[i] == 0.0 ? 0.0 : o[c][i] / lsum[i];
#endif
        STORE(o[c], Ssh, sbase, SP, ROWS);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        for (uint e = lane; e < 256u; e += 32u) {
            uint r = e / 16u, col = e % 16u, tok = r0 + r;
            if (tok < N) {
                float x = Ssh[sbase + r * SP + col];
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
