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

uint64_t ggml_type_row_bytes(uint32_t type, uint64_t ne0)
{
    switch (type) {
    case GGML_F32: return ne0 * 4;
    case GGML_F16: return ne0 * 2;
    case GGML_Q4_0: return ne0 % 32 ? 0 : ne0 / 32 * 18;
    case GGML_Q4_1: return ne0 % 32 ? 0 : ne0 / 32 * 20;
    case GGML_Q8_0: return ne0 % 32 ? 0 : ne0 / 32 * 34;
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
    case GGML_Q8_0: return "Q8_0";
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
