#include "convert.h"

#include <math.h>
#include <string.h>
#include <strings.h>

uint16_t tool_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) /* Inf stays Inf; NaN stays a quiet NaN */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* f16 subnormal (or zero): value = m * 2^-24 */
        if (e < -10)
            return (uint16_t)sign;
        uint32_t m = man | 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++; /* a carry into the exponent is still correct (up to Inf) */
    return (uint16_t)h;
}

float tool_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, x;
    if (exp == 0) {
        float v = ldexpf((float)man, -24);
        return (h & 0x8000u) ? -v : v;
    }
    if (exp == 31)
        x = sign | 0x7f800000u | (man << 13);
    else
        x = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t tool_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float tool_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

int tool_to_f32(const void *src, stem_dtype dtype, size_t count, float *dst) {
    const uint16_t *s16 = src;
    switch (dtype) {
    case STEM_DTYPE_F32:
        memmove(dst, src, count * sizeof(float));
        return 0;
    case STEM_DTYPE_F16:
        for (size_t i = 0; i < count; i++)
            dst[i] = tool_f16_to_f32(s16[i]);
        return 0;
    case STEM_DTYPE_BF16:
        for (size_t i = 0; i < count; i++)
            dst[i] = tool_bf16_to_f32(s16[i]);
        return 0;
    default:
        return -1;
    }
}

int tool_from_f32(const float *src, stem_dtype dtype, size_t count, void *dst) {
    uint16_t *d16 = dst;
    switch (dtype) {
    case STEM_DTYPE_F32:
        memmove(dst, src, count * sizeof(float));
        return 0;
    case STEM_DTYPE_F16:
        for (size_t i = 0; i < count; i++)
            d16[i] = tool_f32_to_f16(src[i]);
        return 0;
    case STEM_DTYPE_BF16:
        for (size_t i = 0; i < count; i++)
            d16[i] = tool_f32_to_bf16(src[i]);
        return 0;
    default:
        return -1;
    }
}

int tool_parse_dtype(const char *s, stem_dtype *out) {
    if (!strcasecmp(s, "f32") || !strcasecmp(s, "float32"))
        *out = STEM_DTYPE_F32;
    else if (!strcasecmp(s, "f16") || !strcasecmp(s, "float16") || !strcasecmp(s, "half"))
        *out = STEM_DTYPE_F16;
    else if (!strcasecmp(s, "bf16") || !strcasecmp(s, "bfloat16"))
        *out = STEM_DTYPE_BF16;
    else
        return -1;
    return 0;
}
