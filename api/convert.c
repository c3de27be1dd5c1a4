/* Scalar f16 / bf16 conversions (round to nearest even), for host code. */
#include "stem_internal.h"

#include <string.h>

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float stem_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t stem_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float stem_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf / NaN */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* subnormal: value = mant * 2^-24 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t stem_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below the smallest normal 2^-14: subnormal or zero */
        if (a < 0x33000000u) /* < 2^-25 rounds to zero */
            return sign;
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24: value = m * 2^(e-150), result unit 2^-24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u)))
            r++;
        return (uint16_t)(sign | r);
    }
    /* normal: rebias exponent, round mantissa from 23 to 10 bits */
    uint32_t r = a - 0x38000000u; /* exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

static int is_float_dtype(stem_dtype t)
{
    return t == STEM_DTYPE_F32 || t == STEM_DTYPE_F16 || t == STEM_DTYPE_BF16;
}

static float load_as_f32(const void *src, stem_dtype t, size_t i)
{
    if (t == STEM_DTYPE_F32) {
        float f;
        memcpy(&f, (const char *)src + i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, (const char *)src + i * 2, 2);
    return t == STEM_DTYPE_F16 ? stem_f16_to_f32(h) : stem_bf16_to_f32(h);
}

static void store_from_f32(void *dst, stem_dtype t, size_t i, float f)
{
    if (t == STEM_DTYPE_F32) {
        memcpy((char *)dst + i * 4, &f, 4);
        return;
    }
    uint16_t h = t == STEM_DTYPE_F16 ? stem_f32_to_f16(f) : stem_f32_to_bf16(f);
    memcpy((char *)dst + i * 2, &h, 2);
}

stem_status stem_convert(const void *src, stem_dtype src_dtype, void *dst, stem_dtype dst_dtype,
                         size_t count)
{
    stem_enter(NULL);
    if ((!src || !dst) && count > 0)
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT, "stem_convert: %s is NULL",
                              src ? "dst" : "src");
    if (!is_float_dtype(src_dtype) || !is_float_dtype(dst_dtype))
        return stem_set_error(STEM_ERR_INVALID_ARGUMENT,
                              "stem_convert: %s -> %s: only f32, f16 and bf16 convert",
                              stem_dtype_name(src_dtype), stem_dtype_name(dst_dtype));
    /* Widening in place would overwrite elements not yet read: go backwards. */
    if (stem_dtype_size(dst_dtype) > stem_dtype_size(src_dtype))
        for (size_t i = count; i-- > 0;)
            store_from_f32(dst, dst_dtype, i, load_as_f32(src, src_dtype, i));
    else
        for (size_t i = 0; i < count; ++i)
            store_from_f32(dst, dst_dtype, i, load_as_f32(src, src_dtype, i));
    return STEM_OK;
}
