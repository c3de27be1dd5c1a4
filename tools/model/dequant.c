#include "dequant.h"

#include <math.h>
#include <string.h>

#include "gguf.h"

float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: value = man * 2^-24 */
            float v = (float)man * 5.9604644775390625e-8f;
            return sign ? -v : v;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float rd_half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return half_to_float(h);
}

/* Q4_K super-block of 256: f16 d, f16 dmin, 12 bytes packing eight 6-bit
 * (scale, min) pairs, 128 bytes of nibbles. Sub-block s of 32 elements:
 * x = d sc_s q - dmin m_s; each 32 bytes of nibbles hold sub-blocks 2i (low
 * nibbles) and 2i+1 (high nibbles). */
static void dequant_q4_k(const uint8_t *src, float *dst)
{
    const float d = rd_half(src), dmin = rd_half(src + 2);
    const uint8_t *sc = src + 4, *q = src + 16;
    for (int s = 0; s < 8; s++) {
        int scale, min;
        if (s < 4) {
            scale = sc[s] & 63;
            min = sc[s + 4] & 63;
        } else {
            scale = (sc[s + 4] & 0x0f) | (sc[s - 4] >> 6) << 4;
            min = (sc[s + 4] >> 4) | (sc[s] >> 6) << 4;
        }
        const float ds = d * (float)scale, ms = dmin * (float)min;
        const uint8_t *qs = q + (s / 2) * 32;
        for (int l = 0; l < 32; l++) {
            int v = s % 2 ? qs[l] >> 4 : qs[l] & 0x0f;
            dst[s * 32 + l] = ds * (float)v - ms;
        }
    }
}

/* Q6_K super-block of 256: 128 bytes of low nibbles, 64 bytes of 2-bit high
 * parts, 16 signed 8-bit scales (one per 16 elements), f16 d;
 * x = d scale (q - 32). Each half of 128 elements takes 64 low-nibble bytes
 * and 32 high bytes: element l + 32 i of the half draws its nibble from
 * byte l (i even) or l + 32 (i odd), low nibble for i < 2, and its high
 * bits from bits 2i..2i+1 of high byte l. */
static void dequant_q6_k(const uint8_t *src, float *dst)
{
    const uint8_t *ql = src, *qh = src + 128;
    const int8_t *sc = (const int8_t *)(src + 192);
    const float d = rd_half(src + 208);
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, dst += 128)
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
            const int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
            const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            dst[l] = d * (float)sc[is] * (float)q1;
            dst[l + 32] = d * (float)sc[is + 2] * (float)q2;
            dst[l + 64] = d * (float)sc[is + 4] * (float)q3;
            dst[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
}

uint64_t ggml_type_row_bytes(uint32_t type, uint64_t ne0)
{
    switch (type) {
    case GGML_F32: return ne0 * 4;
    case GGML_F16: return ne0 * 2;
    case GGML_Q4_0: return ne0 % 32 ? 0 : ne0 / 32 * 18;
    case GGML_Q4_1: return ne0 % 32 ? 0 : ne0 / 32 * 20;
    case GGML_Q5_0: return ne0 % 32 ? 0 : ne0 / 32 * 22;
    case GGML_Q8_0: return ne0 % 32 ? 0 : ne0 / 32 * 34;
    case GGML_Q4_K: return ne0 % 256 ? 0 : ne0 / 256 * 144;
    case GGML_Q6_K: return ne0 % 256 ? 0 : ne0 / 256 * 210;
    default: return 0;
    }
}

const char *ggml_type_name(uint32_t type)
{
    switch (type) {
    case GGML_F32: return "F32";
    case GGML_F16: return "F16";
    case GGML_Q4_0: return "Q4_0";
    case GGML_Q4_1: return "Q4_1";
    case GGML_Q5_0: return "Q5_0";
    case GGML_Q8_0: return "Q8_0";
    case GGML_Q4_K: return "Q4_K";
    case GGML_Q6_K: return "Q6_K";
    default: return "unsupported";
    }
}

int dequantize_row(uint32_t type, const uint8_t *src, float *dst, uint64_t ne0)
{
    switch (type) {
    case GGML_F32:
        memcpy(dst, src, ne0 * 4);
        return 0;
    case GGML_F16:
        for (uint64_t i = 0; i < ne0; i++) dst[i] = rd_half(src + 2 * i);
        return 0;
    case GGML_Q4_0: /* block of 32: f16 scale d, 16 bytes of nibbles; x = (q - 8) d */
        for (uint64_t b = 0; b < ne0 / 32; b++, src += 18, dst += 32) {
            float d = rd_half(src);
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)((src[2 + j] & 0x0f) - 8) * d;
                dst[j + 16] = (float)((src[2 + j] >> 4) - 8) * d;
            }
        }
        return 0;
    case GGML_Q4_1: /* block of 32: f16 scale d, f16 minimum m, nibbles; x = q d + m;
                       low nibbles are elements 0..15, high nibbles 16..31 */
        for (uint64_t b = 0; b < ne0 / 32; b++, src += 20, dst += 32) {
            float d = rd_half(src), m = rd_half(src + 2);
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)(src[4 + j] & 0x0f) * d + m;
                dst[j + 16] = (float)(src[4 + j] >> 4) * d + m;
            }
        }
        return 0;
    case GGML_Q5_0: /* block of 32: f16 scale d, 32 high bits (u32 LE), nibbles;
                       x = (q - 16) d, bit j of the high word is element j's 5th bit */
        for (uint64_t b = 0; b < ne0 / 32; b++, src += 22, dst += 32) {
            float d = rd_half(src);
            uint32_t qh = (uint32_t)src[2] | (uint32_t)src[3] << 8 | (uint32_t)src[4] << 16 |
                          (uint32_t)src[5] << 24;
            for (int j = 0; j < 16; j++) {
                int lo = (src[6 + j] & 0x0f) | (int)((qh >> j) & 1) << 4;
                int hi = (src[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
                dst[j] = (float)(lo - 16) * d;
                dst[j + 16] = (float)(hi - 16) * d;
            }
        }
        return 0;
    case GGML_Q4_K:
        for (uint64_t b = 0; b < ne0 / 256; b++, src += 144, dst += 256) dequant_q4_k(src, dst);
        return 0;
    case GGML_Q6_K:
        for (uint64_t b = 0; b < ne0 / 256; b++, src += 210, dst += 256) dequant_q6_k(src, dst);
        return 0;
    case GGML_Q8_0: /* block of 32: f16 scale d, 32 signed bytes; x = q d */
        for (uint64_t b = 0; b < ne0 / 32; b++, src += 34, dst += 32) {
            float d = rd_half(src);
            for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)src[2 + j] * d;
        }
        return 0;
    default:
        return -1;
    }
}
