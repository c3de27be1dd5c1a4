// Shared by every kernel: the params block, dtype codes, exact conversions.
// 16-bit tensors are read and written as 32-bit words (no 16-bit storage
// feature needed); element indices are relative to each binding's start.

layout(constant_id = 0) const uint IN_DTYPE = 0u; // 0 f32, 1 f16, 2 bf16

layout(std140, set = 0, binding = 11) uniform Params { // mirrors vk_params (vk_internal.h)
    uvec4 str[7];  // element strides: q k v scores index count out
    uvec4 off0;    // element offsets: q k v scores
    uvec4 off1;    // index count out -
    uint batch, heads, hkv, n_keys;           // heads: of the bound tensor; n_keys: N
    uint head_dim, block_size, stride, group; // group: G = B / S
    uint n_blocks, out_dtype, items, gqa;     // items: work items; gqa: Hq / Hkv
    uint selector, sink_blocks, local_blocks, flags;
    float scale, route, beta, qmul;           // route: routing coefficient; qmul: q multiplier
    float tau, f1_pad1, f1_pad2, f1_pad3;
    uint q_offset, row0, n_rows, geom_pad;    // query offset P (queries are positions [P, N)),
                                              // row0 = floor(P / B), rows of the call
} P;

#define SEL_STEM 0u
#define SEL_PAPER 1u
#define SEL_UNIFORM 2u
#define SEL_XATTN 3u
#define SEL_DENSE 4u
#define SEL_XATTN_STRICT 5u
#define FLAG_DENSE 1u
#define FLAG_REVERSE 2u
#define FLAG_BONUS 4u
#define FLAG_PHASE2 8u
#define FLAG_XATTN_DIAG 16u
#define FLAG_VSTATS_IN 32u  // vbonus: PROVIDED (mean, sd) in binding 3 (the scores slot)
#define FLAG_VSTATS_OUT 64u // vbonus: statistics used, to binding 4 (the index slot)
#define FLAG_LSE 128u       // attention: natural-log lse to binding 3 (the scores slot)

// Flattened workgroup index (dispatches are split over x and y).
uint wg_id() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// Element index of (b, h, n, i) in tensor slot s.
uint elem(uint s, uint off, uint b, uint h, uint n, uint i)
{
    return off + b * P.str[s].x + h * P.str[s].y + n * P.str[s].z + i * P.str[s].w;
}

// f16 bits -> f32, exact (subnormals included) without relying on the FPU.
float f16_to_f32(uint h)
{
    uint s = (h & 0x8000u) << 16;
    uint em = h & 0x7fffu;
    if (em < 0x400u) {
        float f = float(em) * 5.9604644775390625e-8; // 2^-24
        return s != 0u ? -f : f;
    }
    uint u = em >= 0x7c00u ? ((em << 13) | 0x7f800000u) : ((em << 13) + (112u << 23));
    return uintBitsToFloat(u | s);
}

// f32 -> f16 bits, round to nearest even, subnormals, overflow to inf.
uint f32_to_f16(float f)
{
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);
    if (ax >= 0x477ff000u)
        return sign | 0x7c00u;
    if (ax < 0x38800000u) {
        if (ax < 0x33000000u)
            return sign;
        uint e = ax >> 23;
        uint m = (ax & 0x7fffffu) | 0x800000u;
        uint shift = 126u - e;
        uint r = m >> shift;
        uint rem = m & ((1u << shift) - 1u);
        uint half_ = 1u << (shift - 1u);
        if (rem > half_ || (rem == half_ && (r & 1u) != 0u))
            r++;
        return sign | r;
    }
    uint r = (ax >> 13) - (112u << 10);
    uint rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u) != 0u))
        r++;
    return sign | r;
}

uint f32_to_bf16(float f)
{
    uint x = floatBitsToUint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (x >> 16) | 0x40u;
    return (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
}

// The power of two that brings a tensor whose largest |x| has these f32 bits
// just under 2^15 (f16 copies keep their relative precision; vk_convert.c),
// within +-60 so that products of two stay normal in f32.
int split_exp(uint absmax_bits)
{
    int e = int((absmax_bits >> 23) & 0xffu) - 127; // |x| < 2^(e + 1)
    return clamp(14 - e, -60, 60);
}

float half_word(uint w, uint i, uint dtype)
{
    uint h = (i & 1u) != 0u ? (w >> 16) : (w & 0xffffu);
    return dtype == 1u ? f16_to_f32(h) : uintBitsToFloat(h << 16);
}

// A load function over a uint[] buffer member holding IN_DTYPE elements.
#define DEFINE_LOAD(NAME, ARR) \
    float NAME(uint i) \
    { \
        if (IN_DTYPE == 0u) \
            return uintBitsToFloat(ARR[i]); \
        return half_word(ARR[i >> 1], i, IN_DTYPE); \
    }
